//! Replay end to end: an honest ledger replays identically with no side effect; a changed
//! component diverges at the right place with the right class; a ledger re-signed with a changed
//! host result diverges at that call; a ledger changed without re-signing is an integrity
//! failure, never a divergence; a missing component cannot be replayed.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{
    HOARD_MANIFEST, Host, MISBEHAVE_MANIFEST, OPEN_POLICY, code, command, s, stderr, stdout,
};

use femtoclaw_ledger::{Entry, Ledger, LedgerOptions, Value};
use femtoclaw_tests::{
    FEMTOCLAW_GUEST_HOARD, FEMTOCLAW_GUEST_MISBEHAVE, FEMTOCLAW_GUEST_MISBEHAVE_CHANGED,
};
use serde_json::{Value as Json, json};

/// A host that ran a few invocations of every kind, and exported them with components.
fn recorded() -> (Host, PathBuf) {
    let host = Host::with_policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource);\n\
         permit (principal, action == FemtoClaw::Action::\"config.read\", resource) when { resource.name == \"region\" };\n",
    );
    std::fs::create_dir_all(host.data.path().join("config")).unwrap();
    std::fs::write(
        host.data.path().join("config/misbehave.toml"),
        "region = \"eu\"\ntoken = \"s3cret\"\n",
    )
    .unwrap();
    host.add(
        FEMTOCLAW_GUEST_MISBEHAVE,
        &format!("{MISBEHAVE_MANIFEST}config = [\"region\", \"token\"]\n"),
    );
    for args in [
        &[
            "invoke",
            "misbehave",
            "divide",
            "--args",
            r#"{"a":9,"b":3}"#,
        ][..],
        &["invoke", "misbehave", "sense"],
        &["invoke", "misbehave", "chatter", "--args", r#"{"lines":2}"#],
        &[
            "invoke",
            "misbehave",
            "read-config",
            "--args",
            r#"{"keys":["region","token"]}"#,
        ],
        &["invoke", "misbehave", "spin"],
        &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
        &[
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"{"name":"Ada"}"#,
            "--principal",
            "agent:bot",
        ],
    ] {
        let out = host.run(args);
        assert!(
            [0, 4, 7].contains(&code(&out)),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let export = host.export();
    (host, export)
}

/// Replays `export` from an empty data directory (no catalog, no ledger: the export alone must
/// do), pinning `host`'s key.
fn replay(host: &Host, export: &Path, extra: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let key = host.key();
    let mut args = vec!["replay", s(export), "--key", &key, "--json"];
    args.extend_from_slice(extra);
    command(empty.path(), &args).output().unwrap()
}

/// Rewrites `host`'s exported ledger through `edit` into a new export signed with the host's
/// own key (what a forger holding the key could do).
fn resign(host: &Host, export: &Path, edit: impl Fn(&mut Vec<Entry>)) -> PathBuf {
    let bytes = std::fs::read(export).unwrap();
    let parsed = femtoclaw_ledger::parse_export(&bytes).unwrap();
    let mut entries: Vec<Entry> = parsed
        .entries
        .iter()
        .map(|b| Entry::decode(b).unwrap())
        .collect();
    edit(&mut entries);
    let key = femtoclaw_ledger::load_key(&host.data.path().join("keys")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut ledger, _) = Ledger::open(dir.path(), LedgerOptions::with_key(key)).unwrap();
    ledger.append_batch(entries).unwrap();
    let plain = host.files.path().join("resigned-plain.export");
    ledger.export(&plain).unwrap();
    let plain = std::fs::read(&plain).unwrap();
    let resigned = femtoclaw_ledger::parse_export(&plain).unwrap();
    let components: Vec<([u8; 32], Vec<u8>)> = parsed
        .components
        .iter()
        .map(|(h, b)| (*h, b.to_vec()))
        .collect();
    let mut out = Vec::new();
    femtoclaw_ledger::write_export(
        &mut out,
        &resigned.entries,
        &resigned.checkpoints,
        &components,
        &resigned
            .blobs
            .iter()
            .map(|(h, b)| (*h, b.to_vec()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    host.file("resigned.export", &out)
}

fn report(out: &Output) -> Json {
    serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(out), stderr(out)))
}

/// The JSON report of a what-if replay of `export` under `policy`, pinning the host's key; the
/// replay must succeed.
fn what_if(host: &Host, export: &std::path::Path, policy: &std::path::Path) -> Json {
    let key = host.key();
    let out = host.run(&[
        "replay",
        s(export),
        "--key",
        &key,
        "--what-if-policy",
        s(policy),
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    report(&out)
}

// Verifies: FC-CORE-0317, FC-EXEC-0507, FC-EXEC-0508, FC-EXT-5503, FC-CRYPTO-3806, FC-CRYPTO-3808, FC-CRYPTO-3809, FC-CRYPTO-3817, FC-FORMAL-5014, FC-FORMAL-5206
#[test]
fn an_honest_ledger_replays_identically_with_no_side_effect() {
    let (host, export) = recorded();
    let before = std::fs::read(host.data.path().join("config/misbehave.toml")).unwrap();
    let entries_before = stdout(&host.run(&["log", "show", "--limit", "100000"]))
        .lines()
        .count();

    let out = replay(&host, &export, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r["identical"], json!(6), "{r}");
    assert_eq!(r["divergent"], json!(0));
    assert_eq!(r["refused"], json!(1));

    // Replaying against the host's own data directory records nothing there either.
    let key = host.key();
    let out = host.run(&["replay", s(&export), "--key", &key]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&host.run(&["log", "show", "--limit", "100000"]))
            .lines()
            .count(),
        entries_before
    );
    assert_eq!(
        std::fs::read(host.data.path().join("config/misbehave.toml")).unwrap(),
        before
    );
}

// Verifies: FC-EXEC-0511, FC-EXEC-0613, FC-CRYPTO-3807, FC-OBS-2706
#[test]
fn host_calls_that_trap_are_recorded_and_their_ledger_replays_identically() {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_HOARD, HOARD_MANIFEST);
    for (function, args, cap) in [
        (
            "log-big",
            r#"{"bytes":17408}"#,
            "log message of 17408 bytes exceeds the limit",
        ),
        (
            "random-big",
            r#"{"len":2097152}"#,
            "random request of 2097152 bytes exceeds the limit",
        ),
    ] {
        let out = host.run(&["invoke", "hoard", function, "--args", args]);
        assert_eq!(code(&out), 5, "{function}: {}", stderr(&out));
        assert!(stderr(&out).contains(cap), "{function}: {}", stderr(&out));
    }
    // The honest ledger replays identically: each failed call is answered with its fault.
    let export = host.export();
    let elsewhere = tempfile::tempdir().unwrap();
    let report = host.replay_on(elsewhere.path(), &export);
    assert_eq!(report["identical"], json!(2), "{report}");
    // Each failed call is in the ledger, with its parameters and its fault.
    let calls: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "host-call")
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (call, cap) in calls
        .iter()
        .zip(["log message of 17408", "random request of 2097152"])
    {
        let fault = &call["result"]["variant"];
        assert_eq!(fault["case"], "trap", "{call}");
        assert!(
            fault["payload"]["string"].as_str().unwrap().contains(cap),
            "{call}"
        );
    }
}

// Verifies: FC-CORE-0119, FC-EXEC-0509, FC-EXEC-0510, FC-EXEC-0517, FC-CRYPTO-3305, FC-CRYPTO-3809, FC-CRYPTO-3813, FC-CRYPTO-3817, FC-CRYPTO-3818, FC-FORMAL-5206, FC-FORMAL-5217
#[test]
fn a_changed_component_diverges_with_result_and_fuel_at_the_right_call() {
    let (host, export) = recorded();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("misbehave.wasm"),
        FEMTOCLAW_GUEST_MISBEHAVE_CHANGED,
    )
    .unwrap();
    let out = replay(&host, &export, &["--components", s(dir.path())]);
    assert_eq!(code(&out), 9, "{}", stderr(&out));
    let r = report(&out);
    // The same verdicts as JUnit XML, for CI systems.
    let xml_path = host.files.path().join("replay.xml");
    let out = replay(
        &host,
        &export,
        &["--components", s(dir.path()), "--junit", s(&xml_path)],
    );
    assert_eq!(code(&out), 9);
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    assert!(
        xml.contains(r#"<testsuite name="femtoclaw-replay" tests="7" failures="3" skipped="1">"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<failure type="RESULT""#), "{xml}");
    assert!(xml.contains(r#"<failure type="FUEL""#), "{xml}");
    let by_function = |f: &str| -> Json {
        r["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["function"] == f)
            .unwrap()
            .clone()
    };
    let divide = by_function("divide");
    assert_eq!(divide["status"], json!("divergent"));
    assert!(divide["replaced_component"].is_string());
    assert_eq!(divide["divergence"]["class"], json!("RESULT"));
    assert_eq!(divide["divergence"]["what"], json!("result"));
    let sense = by_function("sense");
    assert_eq!(sense["divergence"]["class"], json!("FUEL"), "{sense}");
    assert_eq!(sense["divergence"]["seq"], json!(0));
    // hello did not change: still identical.
    assert_eq!(by_function("greet")["status"], json!("identical"));
}

// Verifies: FC-EXEC-0509, FC-EXEC-0516, FC-CRYPTO-3812, FC-CRYPTO-3501
#[test]
fn a_resigned_ledger_with_a_changed_host_result_diverges_at_that_call() {
    let (host, export) = recorded();
    // The random bytes `sense` got: change them, keep everything else, sign with the right key.
    let forged = resign(&host, &export, |entries| {
        for e in entries.iter_mut() {
            if let Entry::HostCall {
                function, result, ..
            } = e
                && function == "get-random-bytes"
            {
                *result = Value::Tuple(vec![Value::Bytes(vec![0; 16])]);
            }
        }
    });
    let out = replay(&host, &forged, &[]);
    assert_eq!(code(&out), 9, "{}", stderr(&out));
    let r = report(&out);
    let sense = r["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["function"] == "sense")
        .unwrap();
    assert_eq!(sense["divergence"]["class"], json!("RESULT"), "{sense}");
    assert_eq!(r["divergent"], json!(1));

    // A changed fuel count at a call is located at that call.
    let forged = resign(&host, &export, |entries| {
        if let Some(Entry::HostCall { fuel_remaining, .. }) = entries.iter_mut().find(
            |e| matches!(e, Entry::HostCall { function, .. } if function == "get-random-bytes"),
        ) {
            *fuel_remaining += 1;
        }
    });
    let out = replay(&host, &forged, &[]);
    assert_eq!(code(&out), 9, "{}", stderr(&out));
    let r = report(&out);
    let sense = r["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["function"] == "sense")
        .unwrap();
    assert_eq!(sense["divergence"]["class"], json!("FUEL"), "{sense}");
    assert!(
        sense["divergence"]["call"]
            .as_str()
            .unwrap()
            .ends_with("#get-random-bytes")
    );
}

// Verifies: FC-CORE-0119, FC-EXEC-0515, FC-CRYPTO-3811, FC-CRYPTO-3819, FC-FORMAL-5217, FC-CRYPTO-3508, FC-CRYPTO-3518
#[test]
fn a_ledger_changed_without_resigning_is_integrity_not_divergence() {
    let (host, export) = recorded();
    let mut bytes = std::fs::read(&export).unwrap();
    let at = bytes.len() / 4;
    bytes[at] ^= 1;
    let tampered = host.file("tampered.export", &bytes);
    let out = replay(&host, &tampered, &[]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ledger verification failed"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

// Verifies: FC-CORE-0119, FC-CAP-1115, FC-CRYPTO-3304, FC-CRYPTO-3305, FC-CRYPTO-3809, FC-CRYPTO-3821
#[test]
fn a_missing_component_cannot_be_replayed_and_says_which() {
    let (host, _) = recorded();
    let plain = host.files.path().join("plain.export");
    assert_eq!(code(&host.run(&["log", "export", s(&plain)])), 0);
    let out = replay(&host, &plain, &[]);
    assert_eq!(code(&out), 10, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("component of `misbehave`"),
        "{}",
        stderr(&out)
    );
    // With --components holding the recorded bytes it replays, whatever the file's name.
    for name in ["anything.wasm", "whatever.bin", "no-extension"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
        let out = replay(&host, &plain, &["--components", s(dir.path())]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
    }
}

// Verifies: FC-POL-1418, FC-CRYPTO-3810
#[test]
fn what_if_lists_every_decision_another_policy_would_change() {
    let (host, export) = recorded();
    let policy = host.file(
        "what-if.cedar",
        b"permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
          permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource);\n\
          @id(\"all-config\")\npermit (principal, action == FemtoClaw::Action::\"config.read\", resource);\n\
          @id(\"no-divide\")\nforbid (principal, action == FemtoClaw::Action::\"invoke\", resource)\n\
          when { context has function && context.function == \"divide\" };\n",
    );
    let r = what_if(&host, &export, &policy);
    let changed = r["changed"].as_array().unwrap();
    let find = |action: &str, resource: &str| {
        changed
            .iter()
            .find(|c| c["action"] == action && c["resource"] == resource)
            .unwrap_or_else(|| panic!("no change for {action} {resource}: {changed:?}"))
    };
    let divide = find("invoke", "misbehave@1.0.0");
    assert_eq!(divide["change"], json!("allow→deny"));
    assert_eq!(divide["policy_ids"], json!(["no-divide"]));
    let token = find("config.read", "token");
    assert_eq!(token["change"], json!("deny→allow"));
    assert_eq!(token["policy_ids"], json!(["all-config"]));
    // The `hello` invocation by agent:bot stays denied; the region read stays allowed.
    assert!(!changed.iter().any(|c| c["resource"] == "region"));
    assert_eq!(changed.len(), 2, "{changed:?}");
}

// Verifies: FC-SEC-5606, FC-CRYPTO-3810
/// The principal's groups are recorded with its invocation, so what-if asks with them: the
/// policy that allowed an invocation by group membership, asked again, changes nothing.
#[test]
fn what_if_asks_with_the_recorded_groups() {
    let by_group = "permit (principal in FemtoClaw::Group::\"ops\", action, resource);\n";
    let host = Host::with_policy(by_group);
    let out = host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"ops"}"#,
        "--principal",
        "agent:bot",
        "--group",
        "ops",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = host
        .entries()
        .into_iter()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .unwrap();
    assert_eq!(start["entry"]["groups"], json!(["ops"]));
    let export = host.files.path().join("groups.export");
    assert_eq!(code(&host.run(&["log", "export", s(&export)])), 0);
    let policy = host.file("same.cedar", by_group.as_bytes());
    let r = what_if(&host, &export, &policy);
    assert_eq!(r["changed"], json!([]), "{r}");
}

// Verifies: FC-CRYPTO-3810
/// What-if replay reports the decisions another policy would put in a person's hands
/// (`allow→approval`) and the pending ones it would let through (`approval→allow`).
#[test]
fn what_if_reports_the_calls_that_would_need_or_no_longer_need_approval() {
    const LINK: &str = "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource);\n";
    let host = Host::with_policy(&format!(
        "@id(\"greet-freely\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"hello\");\n\
         @id(\"stats-with-approval\")\n@approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"textstats\");\n{LINK}"
    ));
    let ran = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&ran), 0, "{}", stderr(&ran));
    let waits = host.run(&[
        "invoke",
        "textstats",
        "analyze",
        "--args",
        r#"{"text":"a","top":1}"#,
    ]);
    assert_eq!(code(&waits), 13, "{}", stderr(&waits));
    let export = host.export();
    let policy = host.file(
        "swapped.cedar",
        format!(
            "@id(\"greet-with-approval\")\n@approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"hello\");\n\
             @id(\"stats-freely\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"textstats\");\n{LINK}"
        )
        .as_bytes(),
    );
    let r = what_if(&host, &export, &policy);
    let changes: Vec<(&str, &str, &str)> = r["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap(),
                c["resource"].as_str().unwrap(),
                c["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("invoke", "hello@0.1.0", "allow→approval"),
            ("approval", "textstats@0.1.0.analyze", "approval→allow"),
        ],
        "{r}"
    );
}
