//! The `femtoclaw-host` command line, run as a user would: exit codes, output, installation.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{Host, MISBEHAVE_MANIFEST, OPEN_POLICY, code, s, stderr, stdout};

use femtoclaw_tests::{
    FEMTOCLAW_EXAMPLE_WORD_COUNT, FEMTOCLAW_GUEST_MISBEHAVE, WORD_COUNT_MANIFEST,
};
use serde_json::{Value as Json, json};

/// A host whose policy lets the local operator run anything, with the misbehave guest
/// installed (budget 3 000 000).
fn with_misbehave() -> Host {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(
        FEMTOCLAW_GUEST_MISBEHAVE,
        &MISBEHAVE_MANIFEST.replace("fuel = 5000000", "fuel = 3000000"),
    );
    host
}

#[test]
fn invoke_hello_greet_prints_the_json_result() {
    let host = Host::with_policy(OPEN_POLICY);
    let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"Hello, Ada!\"\n");
}

#[test]
fn invoke_json_reports_result_fuel_output_and_logs() {
    let host = with_misbehave();
    let out = host.run(&[
        "invoke",
        "misbehave",
        "chatter",
        "--args",
        r#"{"lines":2}"#,
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["result"], json!(2));
    assert_eq!(report["fuel"]["budget"], json!(3_000_000));
    assert!(report["fuel"]["consumed"].as_u64().unwrap() > 0);
    assert_eq!(report["stdout"], json!("line 0\nline 1\n"));
    assert_eq!(report["stderr"], json!("done\n"));
    assert_eq!(
        report["logs"],
        json!([{"level": "info", "message": "wrote 2 lines"}])
    );
}

#[test]
fn installed_endless_loop_exits_4_with_the_same_fuel_every_time() {
    let host = with_misbehave();
    let first = host.run(&["invoke", "misbehave", "spin"]);
    let second = host.run(&["invoke", "misbehave", "spin", "--fuel", "3000000"]);
    for out in [&first, &second] {
        assert_eq!(code(out), 4, "{}", stderr(out));
        assert!(stderr(out).contains("fuel exhausted"), "{}", stderr(out));
        assert!(stderr(out).contains("3000000"), "{}", stderr(out));
        assert_eq!(stderr(out).lines().count(), 1);
        assert!(stdout(out).is_empty());
    }
    assert_eq!(stderr(&first), stderr(&second));
}

#[test]
fn exit_codes_name_each_kind_of_failure() {
    let host = with_misbehave();
    let cases: [(&[&str], i32, &str); 8] = [
        (
            &["invoke", "hello", "greet", "--args", "{not json"],
            2,
            "--args is not JSON",
        ),
        (
            &["invoke", "hello", "greet", "--args", r#"{"name":1}"#],
            2,
            "argument `name`: expected a string",
        ),
        (&["invoke", "nope", "greet"], 3, "unknown capability `nope`"),
        (&["invoke", "hello", "wave"], 3, "unknown function `wave`"),
        (
            &[
                "invoke",
                "misbehave",
                "divide",
                "--args",
                r#"{"a":1,"b":0}"#,
            ],
            5,
            "guest trapped",
        ),
        (
            &[
                "invoke",
                "misbehave",
                "recurse",
                "--args",
                r#"{"depth":100000000}"#,
                "--fuel",
                "10000000000",
            ],
            6,
            "stack",
        ),
        (
            &["invoke", "misbehave", "grow", "--fuel", "10000000000"],
            6,
            "memory limit",
        ),
        (
            &["invoke", "misbehave", "spin", "--fuel", "0"],
            2,
            "fuel budget must be greater than 0",
        ),
    ];
    for (args, expected, message) in cases {
        let out = host.run(args);
        assert_eq!(code(&out), expected, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn add_list_and_inspect_an_sdk_capability() {
    let host = Host::with_policy(OPEN_POLICY);
    let wasm = host.file("word_count.wasm", FEMTOCLAW_EXAMPLE_WORD_COUNT);
    let manifest = host.file("word-count.toml", WORD_COUNT_MANIFEST.as_bytes());
    let out = host.run(&["capability", "add", s(&wasm), "--manifest", s(&manifest)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("word-count 0.1.0 sha256:"),
        "{}",
        stdout(&out)
    );

    let out = host.run(&[
        "invoke",
        "word-count",
        "count",
        "--args",
        r#"{"text":"to be or not"}"#,
    ]);
    assert_eq!(stdout(&out).trim(), r#"{"words":4,"longest":"not"}"#);

    let list: Json =
        serde_json::from_str(&stdout(&host.run(&["capability", "list", "--json"]))).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manifest"]["name"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = femtoclaw_capabilities::ALL.iter().map(|c| c.name).collect();
    expected.push("word-count");
    assert_eq!(names, expected);

    let inspect: Json =
        serde_json::from_str(&stdout(&host.run(&["capability", "inspect", "word-count"]))).unwrap();
    assert_eq!(inspect["functions"][0]["name"], "count");
    assert_eq!(
        inspect["functions"][0]["params"],
        json!([{"name": "text", "type": "string"}])
    );
    assert_eq!(
        inspect["functions"][0]["args_schema"]["required"],
        json!(["text"])
    );
    assert!(
        inspect["imports"]
            .as_array()
            .unwrap()
            .contains(&json!("femtoclaw:host/log@0.1.0"))
    );
}

#[test]
fn add_without_manifest_takes_the_file_stem_and_version_0_0_0() {
    let host = Host::with_policy(OPEN_POLICY);
    let wasm = host.file("Word_Count.wasm", FEMTOCLAW_EXAMPLE_WORD_COUNT);
    let out = host.run(&["capability", "add", s(&wasm)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("word-count 0.0.0 sha256:"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_component_changed_after_add_is_refused_by_name() {
    let host = with_misbehave();
    let installed = host
        .data
        .path()
        .join("capabilities/misbehave/1.0.0/component.wasm");
    let mut bytes = std::fs::read(&installed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&installed, bytes).unwrap();
    let out = host.run(&[
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("was changed after it was added"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("component.wasm"), "{}", stderr(&out));
}

#[test]
fn bad_packages_are_refused_with_what_is_wrong() {
    let host = Host::with_policy(OPEN_POLICY);
    let wasm = host.file("ok.wasm", FEMTOCLAW_GUEST_MISBEHAVE);
    let not_wasm = host.file("notes.wasm", b"hello");
    let traversal = host.file("evil.toml", b"name = \"../../etc\"\nversion = \"1.0.0\"\n");
    let reserved = host.file("hello.toml", b"name = \"hello\"\nversion = \"9.0.0\"\n");
    let unknown_key = host.file(
        "typo.toml",
        b"name = \"x\"\nversion = \"1.0.0\"\nfule = 5\n",
    );
    let cases = [
        (
            vec!["capability", "add", s(&not_wasm)],
            "is not a WebAssembly component",
        ),
        (
            vec!["capability", "add", s(&wasm), "--manifest", s(&traversal)],
            "invalid capability name `../../etc`",
        ),
        (
            vec!["capability", "add", s(&wasm), "--manifest", s(&reserved)],
            "first-party capability",
        ),
        (
            vec!["capability", "add", s(&wasm), "--manifest", s(&unknown_key)],
            "unknown field `fule`",
        ),
    ];
    for (args, message) in cases {
        let out = host.run(&args);
        assert_ne!(code(&out), 0, "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert!(!host.data.path().join("etc").exists());
}
