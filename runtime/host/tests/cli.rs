//! The `femtoclaw-host` command line, run as a user would: exit codes, output, installation.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{HOARD_MANIFEST, Host, MISBEHAVE_MANIFEST, OPEN_POLICY, code, s, stderr, stdout};

use femtoclaw_tests::{
    FEMTOCLAW_EXAMPLE_WORD_COUNT, FEMTOCLAW_GUEST_HOARD, FEMTOCLAW_GUEST_MISBEHAVE,
    WORD_COUNT_MANIFEST,
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

// Verifies: FC-CORE-0101, FC-EXEC-0407
#[test]
fn invoke_hello_greet_prints_the_json_result() {
    let host = Host::with_policy(OPEN_POLICY);
    let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"Hello, Ada!\"\n");
}

// Verifies: FC-MEM-2418, FC-OPS-3921
#[test]
fn a_warning_written_to_a_pipe_is_plain_text() {
    let host = Host::with_policy(OPEN_POLICY);
    let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let segment = host.data.path().join("ledger/segments/00000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(b"torn");
    std::fs::write(&segment, bytes).unwrap();
    let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let warned = stderr(&out);
    assert!(
        warned.contains(" WARN ") && warned.contains("cut an unacknowledged tail"),
        "{warned}"
    );
    assert!(!warned.contains('\u{1b}'), "terminal escapes in {warned:?}");
}

// Verifies: FC-CORE-0102, FC-EXEC-0602, FC-EXT-5305, FC-EXT-5501
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

// Verifies: FC-CORE-0114, FC-CORE-0117, FC-EXEC-0501, FC-EXEC-0601, FC-EXEC-0602, FC-CRYPTO-3518
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

// Verifies: FC-CORE-0116, FC-CORE-0123, FC-EXEC-0604, FC-EXEC-0610, FC-EXEC-0611, FC-EXEC-0718, FC-CAP-1117, FC-SEC-1911, FC-SEC-1912, FC-SEC-1917, FC-SEC-1921, FC-CRYPTO-3518
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

// Verifies: FC-CORE-0104, FC-CORE-0105, FC-CAP-1005, FC-CAP-1009, FC-CAP-1010, FC-CAP-1015, FC-CAP-1018, FC-CAP-1101, FC-CAP-1106, FC-EXT-5301, FC-EXT-5302, FC-EXT-5504, FC-SEC-1918, FC-CRYPTO-3301, FC-EXT-5401
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
        inspect["functions"][0]["description"],
        "Counts the whitespace-separated words of `text`."
    );
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

// Verifies: FC-CORE-0104, FC-CAP-1102, FC-CRYPTO-3301, FC-EXT-5403
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

// Verifies: FC-CORE-0106, FC-CORE-0212, FC-CAP-1112, FC-CRYPTO-3302, FC-CRYPTO-3316, FC-CRYPTO-3511
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

// Verifies: FC-CORE-0106, FC-CORE-0212, FC-CORE-0302, FC-CAP-1113, FC-CAP-1115, FC-CRYPTO-3303, FC-CRYPTO-3304, FC-CRYPTO-3316, FC-CRYPTO-3511
/// The manifest is part of the identity: raising the fuel budget (or widening the requests,
/// or claiming a publisher) in the installed `capability.toml` is refused like a changed
/// component, and the digest of the manifest that ran is recorded with every invocation.
#[test]
fn a_manifest_changed_after_add_is_refused_and_the_one_that_ran_is_recorded() {
    let host = with_misbehave();
    let manifest = host
        .data
        .path()
        .join("capabilities/misbehave/1.0.0/capability.toml");
    let installed = std::fs::read(&manifest).unwrap();
    let divide = [
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ];
    let out = host.run(&divide);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = host
        .entries()
        .into_iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .unwrap();
    let digest = hex::encode(femtoclaw_sandbox::catalog::sha256(&installed));
    assert_eq!(start["entry"]["manifest_sha256"], json!(digest));

    let mut changed = String::from_utf8(installed.clone()).unwrap();
    changed.push_str("\n# a comment is a change too\n");
    std::fs::write(&manifest, changed).unwrap();
    let out = host.run(&divide);
    assert_ne!(code(&out), 0);
    let says = stderr(&out);
    assert!(says.contains("manifest"), "{says}");
    assert!(says.contains("was changed after it was added"), "{says}");
    assert!(says.contains("capability.toml"), "{says}");
    std::fs::write(&manifest, &installed).unwrap();
    assert_eq!(code(&host.run(&divide)), 0);
}

// Verifies: FC-EXEC-0414, FC-CAP-1001, FC-CAP-1109, FC-CAP-1110, FC-CRYPTO-3309, FC-EXT-5407, FC-EXT-5409, FC-CONF-2904
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

// Verifies: FC-EXEC-0603, FC-CAP-1114, FC-CAP-1116, FC-EXT-5408
#[test]
fn the_operators_max_fuel_is_a_ceiling_no_manifest_and_no_fuel_flag_exceeds() {
    let host = Host::with_policy(OPEN_POLICY);
    host.configure("[limits]\nmax_fuel = 6000000\n");
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST);

    // A manifest asking for more is refused at install, naming both numbers.
    let wasm = host.file("greedy.wasm", FEMTOCLAW_GUEST_MISBEHAVE);
    let manifest = host.file(
        "greedy.toml",
        MISBEHAVE_MANIFEST
            .replace("\"misbehave\"", "\"greedy\"")
            .replace("fuel = 5000000", "fuel = 7000000")
            .as_bytes(),
    );
    let out = host.run(&["capability", "add", s(&wasm), "--manifest", s(&manifest)]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fuel budget of 7000000")
            && stderr(&out).contains("max_fuel of 6000000"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&host.run(&["capability", "list"])).contains("greedy"));

    // `--fuel` above it is refused, naming both numbers; at it, the invocation runs.
    let divide = |fuel: &str| {
        host.run(&[
            "invoke",
            "misbehave",
            "divide",
            "--args",
            r#"{"a":4,"b":2}"#,
            "--fuel",
            fuel,
        ])
    };
    let out = divide("6000001");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fuel budget of 6000001 (--fuel)")
            && stderr(&out).contains("max_fuel of 6000000"),
        "{}",
        stderr(&out)
    );
    let out = divide("6000000");
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A ceiling lowered under an installed manifest refuses its invocations, named.
    host.configure("[limits]\nmax_fuel = 4000000\n");
    let out = host.run(&[
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fuel budget of 5000000 (the manifest of `misbehave`)")
            && stderr(&out).contains("max_fuel of 4000000"),
        "{}",
        stderr(&out)
    );
}

/// Runs `cmd` to its end: its exit code, its stderr, and its own peak resident set in bytes,
/// as the kernel accounts for this one child when `wait4` reaps it.
#[cfg(target_os = "linux")]
fn run_measuring_peak_rss(
    mut cmd: std::process::Command,
    stderr_file: &std::path::Path,
) -> (i32, String, u64) {
    let file = std::fs::File::create(stderr_file).unwrap();
    #[allow(
        clippy::zombie_processes,
        reason = "reaped below by wait4, which reads the child's own resource usage"
    )]
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct, which `wait4` fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; `status` and `usage` are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status),
        "the host did not exit: status {status}"
    );
    let peak = u64::try_from(usage.ru_maxrss).unwrap() * 1024; // KiB on Linux
    let err = std::fs::read_to_string(stderr_file).unwrap();
    (libc::WEXITSTATUS(status), err, peak)
}

// Verifies: FC-EXEC-0606, FC-EXEC-0612, FC-SEC-1913, FC-CRYPTO-3503
#[cfg(target_os = "linux")]
#[test]
fn a_guest_hoarding_host_bytes_ends_at_the_recorded_bytes_cap_and_the_host_stays_small() {
    const CAP: u64 = 8 << 20;
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_HOARD, HOARD_MANIFEST);
    host.configure(&format!("[limits]\nmax_recorded_bytes = {CAP}\n"));
    let hoard = |turns: u32| {
        let args = format!(r#"{{"turns":{turns},"len":1048576}}"#);
        let cmd = host.command(&["invoke", "hoard", "hoard-random", "--args", &args]);
        run_measuring_peak_rss(cmd, &host.files.path().join("stderr"))
    };
    // The same host, one turn: start-up, engine, ledger and one 1 MiB call.
    let (one, err, baseline) = hoard(1);
    assert_eq!(one, 0, "{err}");
    // A thousand turns would hold a GiB: the cap ends it, named, as a limit.
    let (thousand, err, peak) = hoard(1000);
    assert_eq!(thousand, 6, "{err}");
    assert!(
        err.contains("recorded-bytes limit of 8388608 bytes exceeded"),
        "{err}"
    );
    // The host holds what it records a few times over (the calls, their entries, the encoded
    // batch), so its peak grows with the cap, never with the guest's loop.
    assert!(
        peak < baseline + 3 * CAP,
        "peak RSS {} MiB with a cap of {} MiB; one turn peaks at {} MiB",
        peak >> 20,
        CAP >> 20,
        baseline >> 20
    );
    eprintln!(
        "peak RSS: one turn {} KiB, capped hoard {} KiB",
        baseline >> 10,
        peak >> 10
    );
}

// Verifies: FC-OBS-2701, FC-OBS-2702
/// `log show` prints what guests wrote with every character a terminal could act on escaped:
/// C1 controls (`U+009B` opens an escape sequence on some terminals), DEL, bidirectional
/// overrides; `--json` keeps the text exact.
#[test]
fn log_show_escapes_control_characters_in_guest_written_text() {
    let host = Host::new();
    let name = "a\u{9b}31mb\u{7f}c\u{202e}d\u{1b}[2J";
    let args = json!({ "name": name }).to_string();
    let out = host.run(&["invoke", "hello", "greet", "--args", &args]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shown = stdout(&host.run(&["log", "show"]));
    for raw in ['\u{9b}', '\u{7f}', '\u{202e}', '\u{1b}'] {
        assert!(
            !shown.contains(raw),
            "{raw:?} reached the terminal: {shown:?}"
        );
    }
    assert!(
        shown.contains(r"a\u009b31mb\u007fc\u202ed\u001b[2J"),
        "{shown}"
    );
    // Each line is still JSON after the index, and says the same.
    let line = shown
        .lines()
        .find(|l| l.contains("invocation-start"))
        .unwrap();
    let entry: Json = serde_json::from_str(line.trim_start().split_once("  ").unwrap().1).unwrap();
    assert_eq!(entry["args"][0][1]["string"], json!(name), "{entry}");
    let exact = stdout(&host.run(&["log", "show", "--json"]));
    assert!(exact.contains('\u{9b}'));
}

// Verifies: FC-EXEC-0617, FC-EXEC-0619, FC-EXT-5505, FC-CONF-2809, FC-CONF-2816, FC-CONF-2820, FC-CONF-2824, FC-CONF-2825, FC-UPG-3401
/// One configuration file, `<data dir>/femtoclaw.toml`, under environment overrides: `config
/// show` names the source of every value, bad settings are refused naming file, key and line,
/// and the files of earlier versions are refused rather than silently ignored.
#[test]
fn the_configuration_is_one_file_under_environment_overrides_each_value_with_its_source() {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST);
    let shown = stdout(&host.run(&["config", "show"]));
    assert!(
        shown.contains("listen = \"127.0.0.1:8420\"  # default"),
        "{shown}"
    );

    host.configure("[limits]\nmax_fuel = 6000000\n");
    let file = host.data.path().join("femtoclaw.toml");
    let with_env = |args: &[&str]| {
        host.command(args)
            .env("FEMTOCLAW_LIMITS_MAX_FUEL", "1000")
            .output()
            .unwrap()
    };
    let shown = stdout(&with_env(&["config", "show"]));
    assert!(
        shown.contains("max_fuel = 1000  # env FEMTOCLAW_LIMITS_MAX_FUEL"),
        "{shown}"
    );
    let shown = stdout(&host.run(&["config", "show"]));
    assert!(
        shown.contains(&format!("max_fuel = 6000000  # file {}:2", file.display())),
        "{shown}"
    );
    // The environment wins over the file, and takes effect: the manifest's 5 000 000 is over it.
    let divide = [
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ];
    let out = with_env(&divide);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("max_fuel of 1000"),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&host.run(&divide)), 0);

    // A bad setting is refused, named, by `config check` and by every command.
    host.configure("[limits]\nmax_fuel = 6000000\n\n[server]\nconcurency = 3\n");
    for out in [host.run(&["config", "check"]), host.run(&divide)] {
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let says = stderr(&out);
        assert!(
            says.contains(&format!("`{}` line 5", file.display()))
                && says.contains("server.concurency"),
            "{says}"
        );
    }
    let ok = host.file("ok.toml", b"[server]\nlisten = \"[::1]:9000\"\n");
    let out = host.run(&["config", "check", s(&ok)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = host.run(&[
        "--config",
        s(&host.files.path().join("absent.toml")),
        "config",
        "show",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("absent.toml"), "{}", stderr(&out));

    // A file of an earlier version is refused, not ignored.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(host.data.path().join("limits.toml"), "max_fuel = 1\n").unwrap();
    let out = host.run(&divide);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("limits.toml` is no longer read")
            && stderr(&out).contains("[limits]"),
        "{}",
        stderr(&out)
    );
}

// Verifies: FC-CORE-0103
/// Arguments too large for a command line come from a file (`--args @FILE`) or stdin
/// (`--args -`); a file that cannot be read or is not JSON is named.
#[test]
fn arguments_come_from_a_file_or_stdin() {
    let host = Host::new();
    let name = "x".repeat(300_000);
    let file = host.file("args.json", json!({ "name": name }).to_string().as_bytes());
    let arg = format!("@{}", file.display());
    let out = host.run(&["invoke", "hello", "greet", "--args", &arg]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&name));

    let mut child = host
        .command(&["invoke", "hello", "greet", "--args", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        br#"{"name":"from stdin"}"#,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("from stdin"), "{}", stdout(&out));

    let missing = format!("@{}", host.files.path().join("absent.json").display());
    let out = host.run(&["invoke", "hello", "greet", "--args", &missing]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("absent.json"), "{}", stderr(&out));
    let bad = host.file("bad.json", b"{nope");
    let out = host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        &format!("@{}", bad.display()),
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("bad.json") && stderr(&out).contains("is not JSON"),
        "{}",
        stderr(&out)
    );
}

// Verifies: FC-CORE-0121, FC-CORE-0217, FC-CORE-0314, FC-EXEC-0616, FC-OPS-4008, FC-OPS-4019, FC-OPS-4022
/// A rate of one invocation an hour holds across `invoke` processes: the second is refused with
/// exit 12 before it runs, naming the rule and when to retry, and recorded as refused.
#[test]
fn an_invocation_over_a_quota_exits_12_and_is_recorded_across_processes() {
    let host = Host::with_policy(OPEN_POLICY);
    host.configure("[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\n");
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    let first = host.run(&greet);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let second = host.run(&greet);
    assert_eq!(code(&second), 12, "{}", stderr(&second));
    assert!(
        stderr(&second).contains(
            "over quota: `hello` for `user:local` is limited to 1 invocations per 3600000 ms (quotas.rules[0]); retry in"
        ),
        "{}",
        stderr(&second)
    );
    // Another capability is not covered.
    let other = host.run(&[
        "invoke",
        "textstats",
        "analyze",
        "--args",
        r#"{"text":"a b","top":1}"#,
    ]);
    assert_eq!(code(&other), 0, "{}", stderr(&other));
    let traps: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "trap")
        .collect();
    assert_eq!(traps.len(), 1, "{traps:?}");
    assert_eq!(traps[0]["kind"], "limit");
    assert!(
        traps[0]["message"]
            .as_str()
            .unwrap()
            .contains("quotas.rules[0]")
    );
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-CORE-0122, FC-CORE-0307, FC-CORE-0312, FC-OPS-4009, FC-OPS-4011, FC-OPS-4014, FC-OPS-4023, FC-OPS-4025
/// From the command line alone: an `@approval("required")` call exits 13 naming its pending
/// approval, `approval grant` lets the identical call run once, the next needs a new approval,
/// and `approval deny` refuses it; the ledger verifies.
#[test]
fn an_approval_required_invoke_exits_13_until_granted_then_runs_once() {
    let host = Host::with_policy(
        "@approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource);\n",
    );
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    let pending = |out: &std::process::Output| -> String {
        assert_eq!(code(out), 13, "{}", stderr(out));
        let err = stderr(out);
        let id = err
            .split("pending as approval ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no approval id in {err}"))
            .to_owned();
        assert!(
            err.contains(&format!("femtoclaw-host approval grant {id}")),
            "{err}"
        );
        id
    };
    let first = pending(&host.run(&greet));
    let listed = host.run(&["approval", "list"]);
    assert!(stdout(&listed).contains("pending"), "{}", stdout(&listed));
    assert!(
        stdout(&listed).contains("hello@0.1.0.greet {\"name\":\"Ada\"}"),
        "{}",
        stdout(&listed)
    );
    let granted = host.run(&["approval", "grant", &first, "--reason", "fine"]);
    assert_eq!(code(&granted), 0, "{}", stderr(&granted));
    let ran = host.run(&greet);
    assert_eq!(code(&ran), 0, "{}", stderr(&ran));
    assert!(stdout(&ran).contains("Hello, Ada!"));
    let second = pending(&host.run(&greet));
    assert_ne!(second, first);
    let denied = host.run(&["approval", "deny", &second, "--reason", "no"]);
    assert_eq!(stdout(&denied).trim(), format!("approval {second} denied"));
    let unknown = host.run(&["approval", "grant", "424242"]);
    assert_eq!(code(&unknown), 3, "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("there is no approval 424242"));
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}
