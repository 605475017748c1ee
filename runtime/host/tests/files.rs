//! Files end to end, through the embedded `files` capability: its manifest requests `/data`
//! (read and write); the policy decides, per operation and concrete path, and every operation
//! is in the ledger. Each hostile case must be refused, recorded, and leave the host alone.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::PathBuf;

mod common;

use common::{Host, code, stderr, stdout};
use serde_json::{Value as Json, json};

/// The local operator may invoke and link everything; `extra` decides the paths.
fn host(extra: &str) -> Host {
    Host::with_policy(&format!(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource);\n\
         {extra}"
    ))
}

/// `fs.read` and `fs.write` on everything the manifest requests.
const READ_WRITE: &str = "@id(\"test:fs\")\npermit (principal, action in [FemtoClaw::Action::\"fs.read\", FemtoClaw::Action::\"fs.write\"], resource);\n";

/// `fs.read` only.
const READ_ONLY: &str = "@id(\"test:fs-read\")\npermit (principal, action == FemtoClaw::Action::\"fs.read\", resource);\n";

/// The host directory behind the guest's `/data` (the default mount).
fn data_dir(host: &Host) -> PathBuf {
    let dir = host.data.path().join("files/files/data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Invokes `files.<function>` with `args`; the invocation itself must succeed.
fn invoke(host: &Host, function: &str, args: Json) -> Json {
    let args = args.to_string();
    let out = host.run(&["invoke", "files", function, "--args", &args]);
    assert_eq!(code(&out), 0, "{function} {args}: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

/// The `err` text of a refused call.
fn refused(answer: &Json) -> &str {
    answer["err"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a refusal, got {answer}"))
}

/// The ledger's decision entries on `action` for `resource`.
fn decisions(host: &Host, action: &str, resource: &str) -> Vec<Json> {
    host.entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "decision" && e["action"] == action && e["resource"] == resource)
        .collect()
}

/// The ledger's host calls of `function` (`[method]descriptor.read`, …).
fn host_calls(host: &Host, function: &str) -> Vec<Json> {
    host.entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "host-call" && e["function"] == function)
        .collect()
}

/// The error code of a recorded `result<_, error-code>`.
fn error_code(call: &Json) -> Option<&str> {
    call["result"]["tuple"][0]["result"]["Err"]["enum"].as_str()
}

// Verifies: FC-EXT-5307, FC-SEC-2101, FC-SEC-2103, FC-SEC-2107
#[test]
fn granted_paths_are_written_read_and_listed_on_the_host() {
    let host = host(READ_WRITE);
    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/notes.txt", "text": "hello"}),
    );
    assert_eq!(answer, json!({"ok": 5}));
    let dir = data_dir(&host);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "hello"
    );

    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/from-host.txt"), "from the host").unwrap();
    let answer = invoke(
        &host,
        "read-file",
        json!({"path": "/data/sub/from-host.txt"}),
    );
    assert_eq!(answer, json!({"ok": "from the host"}));
    let answer = invoke(&host, "list-dir", json!({"dir": "/data"}));
    assert_eq!(
        answer,
        json!({"ok": [{"name": "notes.txt", "kind": "file"}, {"name": "sub", "kind": "directory"}]})
    );

    // Each operation was decided on its concrete path, and the read's bytes are recorded.
    assert!(!decisions(&host, "fs.write", "/data/notes.txt").is_empty());
    assert!(!decisions(&host, "fs.read", "/data/sub/from-host.txt").is_empty());
    let reads = host_calls(&host, "[method]descriptor.read");
    let recorded = reads
        .iter()
        .filter_map(|c| c["result"]["tuple"][0]["result"]["Ok"]["tuple"][0]["bytes"].as_str())
        .collect::<Vec<_>>();
    assert!(recorded.contains(&"ZnJvbSB0aGUgaG9zdA=="), "{reads:?}");
}

// Verifies: FC-SEC-2104, FC-SEC-2105
#[test]
fn mounts_toml_maps_a_guest_path_to_an_operator_directory() {
    let host = host(READ_WRITE);
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(
        host.data.path().join("mounts.toml"),
        format!("[files]\n\"/data\" = {:?}\n", shared.path()),
    )
    .unwrap();
    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/mapped.txt", "text": "mapped"}),
    );
    assert_eq!(answer, json!({"ok": 6}));
    assert_eq!(
        std::fs::read_to_string(shared.path().join("mapped.txt")).unwrap(),
        "mapped"
    );
    assert!(!host.data.path().join("files").exists());

    // A mapping to a directory that does not exist stops the invocation, naming it.
    std::fs::write(
        host.data.path().join("mounts.toml"),
        "\"/data\" = \"missing-dir\"\n",
    )
    .unwrap();
    let out = host.run(&[
        "invoke",
        "files",
        "list-dir",
        "--args",
        r#"{"dir":"/data"}"#,
    ]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("missing-dir"), "{}", stderr(&out));
}

// Verifies: FC-CAP-1219, FC-POL-1715, FC-SEC-2103, FC-SEC-2115
#[test]
fn an_ungranted_path_is_denied_with_the_decision_in_the_ledger() {
    let host = host(&format!(
        "{READ_WRITE}@id(\"test:private\")\nforbid (principal, action, resource is FemtoClaw::Path) when {{ resource.path like \"/data/private*\" }};\n"
    ));
    let dir = data_dir(&host);
    std::fs::create_dir(dir.join("private")).unwrap();
    std::fs::write(dir.join("private/key.txt"), "secret").unwrap();

    let answer = invoke(&host, "read-file", json!({"path": "/data/private/key.txt"}));
    assert!(
        refused(&answer).contains("denied by the policy"),
        "{answer}"
    );
    let denied = decisions(&host, "fs.read", "/data/private/key.txt");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["allowed"], json!(false));
    assert_eq!(denied[0]["policy_ids"], json!(["test:private"]));

    // A path the manifest never requested is denied too, and recorded.
    let answer = invoke(&host, "read-file", json!({"path": "/etc/passwd"}));
    assert!(
        refused(&answer).contains("denied by the policy"),
        "{answer}"
    );
    let denied = decisions(&host, "fs.read", "/etc/passwd");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["allowed"], json!(false));
}

// Verifies: FC-POL-1609, FC-SEC-2101, FC-CONF-2903
#[test]
fn the_default_policy_grants_no_path() {
    let host = Host::new();
    let answer = invoke(&host, "read-file", json!({"path": "/data/notes.txt"}));
    assert!(
        refused(&answer).contains("no directory is granted"),
        "{answer}"
    );
    let listed = host_calls(&host, "get-directories");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["result"], json!({"tuple": [{"list": []}]}));
    assert!(!host.data.path().join("files").exists());
}

// Verifies: FC-POL-1609, FC-SEC-1309, FC-SEC-2102
#[test]
fn a_read_only_preopen_refuses_writes() {
    let host = host(READ_ONLY);
    let dir = data_dir(&host);
    std::fs::write(dir.join("notes.txt"), "original").unwrap();

    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/notes.txt", "text": "changed"}),
    );
    assert!(
        refused(&answer).contains("denied by the policy"),
        "{answer}"
    );
    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/new.txt", "text": "new"}),
    );
    assert!(
        refused(&answer).contains("denied by the policy"),
        "{answer}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "original"
    );
    assert!(!dir.join("new.txt").exists());
    let denied = decisions(&host, "fs.write", "/data/notes.txt");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["allowed"], json!(false));

    // Reading still works.
    let answer = invoke(&host, "read-file", json!({"path": "/data/notes.txt"}));
    assert_eq!(answer, json!({"ok": "original"}));
}

// Verifies: FC-CAP-1219, FC-SEC-2108, FC-SEC-2115
#[test]
fn paths_that_leave_the_preopen_are_refused_and_recorded() {
    let host = host(READ_WRITE);
    let dir = data_dir(&host);
    // Beside the preopen, on the host: what an escape would reach.
    let outside = dir.parent().unwrap().join("outside.txt");
    std::fs::write(&outside, "outside").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", dir.join("relative-link")).unwrap();
    std::os::unix::fs::symlink(dir.parent().unwrap(), dir.join("dir-link")).unwrap();

    for (function, args) in [
        ("read-file", json!({"path": "/data/../outside.txt"})),
        ("read-file", json!({"path": "/data/sub/../../outside.txt"})),
        ("read-file", json!({"path": "/data//etc/passwd"})),
        ("read-file", json!({"path": "/data/link"})),
        ("read-file", json!({"path": "/data/relative-link"})),
        ("read-file", json!({"path": "/data/dir-link/outside.txt"})),
        ("list-dir", json!({"dir": "/data/dir-link"})),
        (
            "write-file",
            json!({"path": "/data/../outside.txt", "text": "escaped"}),
        ),
        (
            "write-file",
            json!({"path": "/data/link", "text": "escaped"}),
        ),
    ] {
        let answer = invoke(&host, function, args.clone());
        assert!(answer.get("err").is_some(), "{function} {args}: {answer}");
        assert!(
            !answer.to_string().contains("outside\""),
            "{function} {args}: {answer}"
        );
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside");

    // Every attempt reached the host as an `open-at` and was recorded with its refusal.
    let opens = host_calls(&host, "[method]descriptor.open-at");
    assert_eq!(opens.len(), 9, "{opens:?}");
    for open in &opens {
        let code = error_code(open);
        assert!(
            matches!(code, Some("not-permitted" | "access" | "no-entry" | "loop")),
            "{open}"
        );
    }
    // The escapes by `..` and the absolute path were put to the policy and recorded.
    assert!(!decisions(&host, "fs.read", "/outside.txt").is_empty());
    assert!(!decisions(&host, "fs.write", "/outside.txt").is_empty());
    assert!(!decisions(&host, "fs.read", "/etc/passwd").is_empty());
}

// Verifies: FC-SEC-2106
#[test]
fn oversized_reads_are_capped_per_call() {
    let host = host(READ_WRITE);
    let dir = data_dir(&host);
    let size = (5 << 20) / 2;
    std::fs::write(dir.join("big.txt"), "x".repeat(size)).unwrap();

    let answer = invoke(&host, "read-file", json!({"path": "/data/big.txt"}));
    assert_eq!(answer["ok"].as_str().map(str::len), Some(size));

    // The guest asks for 4 MiB at a time; no recorded read answers more than the cap, and
    // together they are the file.
    let cap = femtoclaw_sandbox::MAX_READ_BYTES;
    let reads = host_calls(&host, "[method]descriptor.read");
    assert!(reads.len() >= 3, "{} reads", reads.len());
    let mut total = 0;
    for read in &reads {
        let asked = read["params"]["tuple"][1]["u64"].as_u64().unwrap();
        assert!(asked > cap, "the guest asks for more than the cap");
        // Large reads are recorded by digest, beside the ledger.
        let data = &read["result"]["tuple"][0]["result"]["Ok"]["tuple"][0];
        let len = match data.get("blob") {
            Some(blob) => blob["len"].as_u64().unwrap(),
            None => base64_len(data["bytes"].as_str().unwrap()),
        };
        assert!(len <= cap, "a read answered {len} bytes");
        total += len;
    }
    assert_eq!(total, size as u64);
}

/// The length of the bytes a padded base64 text encodes.
fn base64_len(text: &str) -> u64 {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3 - padding) as u64
}

// Verifies: FC-CAP-1210, FC-SEC-2107
#[test]
fn replay_answers_reads_and_writes_from_the_ledger_and_touches_no_file() {
    let host = host(READ_WRITE);
    invoke(
        &host,
        "write-file",
        json!({"path": "/data/notes.txt", "text": "recorded"}),
    );
    let answer = invoke(&host, "read-file", json!({"path": "/data/notes.txt"}));
    assert_eq!(answer, json!({"ok": "recorded"}));
    invoke(&host, "list-dir", json!({"dir": "/data"}));

    // The file changes after the recording; replay must neither see nor undo that.
    let file = data_dir(&host).join("notes.txt");
    std::fs::write(&file, "changed on disk").unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(data_dir(&host).join("extra.txt"), "new").unwrap();

    let report = replay(&host);
    assert_eq!(report["identical"], json!(3), "{report}");

    // The replayed write wrote nothing; the replayed read and list answered the recorded
    // content and entries (they are identical to the recording, not to the disk).
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "changed on disk");
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified
    );
}

/// The std-files test guest's manifest: it asks for `/data`, read and write.
const STD_FILES_MANIFEST: &str = "name = \"std-files\"\nversion = \"1.0.0\"\nfuel = 50000000\n\n\
    [requests]\npaths = [{ path = \"/data\", write = true }]\n";

/// Invokes `std-files.<function>` with `args`.
fn invoke_std(host: &Host, function: &str, args: Json) -> Json {
    let args = args.to_string();
    let function = format!("fs-{function}");
    let out = host.run(&["invoke", "std-files", &function, "--args", &args]);
    assert_eq!(code(&out), 0, "{function} {args}: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

// Verifies: FC-CAP-1225, FC-SEC-2106, FC-SEC-2107, FC-SEC-2111, FC-SEC-2118
#[test]
fn rust_std_fs_reads_lists_and_changes_directories_but_writes_only_through_descriptor_write() {
    let host = host(READ_WRITE);
    host.add(
        femtoclaw_tests::FEMTOCLAW_GUEST_STD_FILES,
        STD_FILES_MANIFEST,
    );
    let dir = host.data.path().join("files/std-files/data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "from the host").unwrap();

    // Reads go through `read-via-stream`: the bytes are recorded and answered as a stream.
    let answer = invoke_std(&host, "read", json!({"path": "/data/a.txt"}));
    assert_eq!(answer, json!({"ok": "from the host"}));
    let streams = host_calls(&host, "[method]descriptor.read-via-stream");
    assert_eq!(
        streams[0]["result"]["tuple"][0]["result"]["Ok"]["bytes"],
        json!("ZnJvbSB0aGUgaG9zdA==")
    );
    assert_eq!(
        invoke_std(&host, "size", json!({"path": "/data/a.txt"})),
        json!({"ok": 13})
    );
    assert_eq!(
        invoke_std(&host, "mkdir", json!({"path": "/data/d"})),
        json!({"ok": null})
    );
    assert!(dir.join("d").is_dir());
    let answer = invoke_std(
        &host,
        "rename",
        json!({"source": "/data/a.txt", "target": "/data/d/b.txt"}),
    );
    assert_eq!(answer, json!({"ok": null}));
    assert_eq!(
        invoke_std(&host, "list", json!({"dir": "/data/d"})),
        json!({"ok": ["b.txt"]})
    );
    assert_eq!(
        invoke_std(&host, "remove", json!({"path": "/data/d/b.txt"})),
        json!({"ok": null})
    );
    assert!(!dir.join("d/b.txt").exists());

    // `std::fs::write` writes through a stream, which would bypass the gate: refused.
    let answer = invoke_std(&host, "write", json!({"path": "/data/w.txt", "text": "x"}));
    assert!(answer.get("err").is_some(), "{answer}");
    assert_eq!(std::fs::read(dir.join("w.txt")).unwrap_or_default(), b"");
    let refused = host_calls(&host, "[method]descriptor.write-via-stream");
    assert_eq!(error_code(&refused[0]), Some("unsupported"));

    // A file past the cap is refused whole rather than cut.
    let cap = usize::try_from(femtoclaw_sandbox::MAX_READ_BYTES).unwrap();
    std::fs::write(dir.join("big.txt"), "x".repeat(cap + 1)).unwrap();
    let answer = invoke_std(&host, "read", json!({"path": "/data/big.txt"}));
    assert!(answer.get("err").is_some(), "{answer}");
    let streams = host_calls(&host, "[method]descriptor.read-via-stream");
    assert_eq!(error_code(streams.last().unwrap()), Some("file-too-large"));

    // Every one of these replays from the ledger alone: streams rebuilt from recorded bytes,
    // metadata and entries answered as recorded.
    std::fs::remove_dir_all(&dir).unwrap();
    let report = replay(&host);
    assert_eq!(report["identical"], json!(8), "{report}");
    assert!(!dir.exists());
}

/// Exports `host`'s ledger and replays it on the same data directory; the report.
fn replay(host: &Host) -> Json {
    host.replay_on(host.data.path(), &host.export())
}

// Verifies: FC-SEC-2109, FC-CRYPTO-3504, FC-CRYPTO-3517
#[test]
fn a_symlink_inside_the_preopen_cannot_reach_a_path_the_policy_withholds() {
    let host = host(&format!(
        "{READ_WRITE}@id(\"test:private\")\nforbid (principal, action, resource is FemtoClaw::Path) when {{ resource.path like \"/data/private*\" }};\n"
    ));
    let dir = data_dir(&host);
    std::fs::create_dir(dir.join("private")).unwrap();
    std::fs::write(dir.join("private/key.txt"), "secret").unwrap();
    std::fs::write(dir.join("public.txt"), "hello").unwrap();
    // Links made by someone on the host, all staying inside the preopen.
    std::os::unix::fs::symlink("private/key.txt", dir.join("alias.txt")).unwrap();
    std::os::unix::fs::symlink("private", dir.join("door")).unwrap();
    std::os::unix::fs::symlink("public.txt", dir.join("fine.txt")).unwrap();

    for path in ["/data/alias.txt", "/data/door/key.txt"] {
        let answer = invoke(&host, "read-file", json!({ "path": path }));
        assert!(
            refused(&answer).contains("denied by the policy"),
            "{path}: {answer}"
        );
    }
    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/door/new.txt", "text": "x"}),
    );
    assert!(refused(&answer).contains("denied"), "{answer}");
    assert!(!dir.join("private/new.txt").exists());
    // The link's target is what the policy was asked about, and refused.
    let denied = decisions(&host, "fs.read", "/data/private/key.txt");
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied.iter().all(|d| d["allowed"] == json!(false)));
    assert!(!decisions(&host, "fs.write", "/data/private/new.txt").is_empty());

    // A link to a granted path works, and the file's bytes are what it reads.
    let answer = invoke(&host, "read-file", json!({"path": "/data/fine.txt"}));
    assert_eq!(answer, json!({"ok": "hello"}));
}

// Verifies: FC-SEC-2109, FC-SEC-2110, FC-CRYPTO-3504, FC-CRYPTO-3517
#[test]
fn a_dot_dot_after_a_symlink_and_a_dangling_link_reach_nothing_the_policy_withholds() {
    let host = host(&format!(
        "{READ_WRITE}@id(\"test:secret\")\nforbid (principal, action, resource is FemtoClaw::Path) when {{ resource.path like \"/data/secret*\" }};\n"
    ));
    let dir = data_dir(&host);
    std::fs::create_dir_all(dir.join("secret/inner")).unwrap();
    std::fs::write(dir.join("secret/x"), "forbidden").unwrap();
    std::fs::write(dir.join("x"), "public").unwrap();
    // `pub/..` is `secret` to the operating system, though `/data` to a lexical reading.
    std::os::unix::fs::symlink("secret/inner", dir.join("pub")).unwrap();
    let answer = invoke(&host, "read-file", json!({ "path": "/data/pub/../x" }));
    assert!(refused(&answer).contains("denied"), "{answer}");
    assert!(!answer.to_string().contains("forbidden"), "{answer}");
    assert!(
        !decisions(&host, "fs.read", "/data/secret/x").is_empty(),
        "the policy was asked about the path the open would reach"
    );
    // A dangling link opened with create would make its target.
    std::os::unix::fs::symlink("secret/new.txt", dir.join("trap.txt")).unwrap();
    let answer = invoke(
        &host,
        "write-file",
        json!({ "path": "/data/trap.txt", "text": "x" }),
    );
    assert!(
        refused(&answer).contains("denied") || refused(&answer).contains("not permitted"),
        "{answer}"
    );
    assert!(!dir.join("secret/new.txt").exists());
    // Plain paths still work.
    let answer = invoke(&host, "read-file", json!({ "path": "/data/x" }));
    assert_eq!(answer, json!({"ok": "public"}));
}

// Verifies: FC-SEC-2103
#[test]
fn a_file_under_a_read_rule_cannot_be_overwritten_or_truncated() {
    // Everything may be written, but `/data/sealed.txt` not read: opening it to write (create
    // and truncate) needs both, so the write is refused and the file keeps its bytes.
    let host = host(&format!(
        "{READ_WRITE}@id(\"test:sealed\")\nforbid (principal, action == FemtoClaw::Action::\"fs.read\", resource is FemtoClaw::Path) when {{ resource.path == \"/data/sealed.txt\" }};\n"
    ));
    let dir = data_dir(&host);
    std::fs::write(dir.join("sealed.txt"), "sealed").unwrap();
    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/sealed.txt", "text": "overwritten"}),
    );
    assert!(
        refused(&answer).contains("denied by the policy"),
        "{answer}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sealed.txt")).unwrap(),
        "sealed"
    );
    let read = decisions(&host, "fs.read", "/data/sealed.txt");
    assert!(
        read.iter().any(|d| d["allowed"] == json!(false)),
        "the open's read was decided, and refused: {read:?}"
    );
    // A file beside it, under no read rule, is written.
    let answer = invoke(
        &host,
        "write-file",
        json!({"path": "/data/open.txt", "text": "written"}),
    );
    assert_eq!(answer, json!({"ok": 7}));
    assert_eq!(
        std::fs::read_to_string(dir.join("open.txt")).unwrap(),
        "written"
    );
}

// Verifies: FC-SEC-2112
#[test]
fn data_under_a_read_rule_cannot_be_renamed_out_from_under_it() {
    // Everything may be written, but nothing under `/data/sealed` read. (Rust's std looks at
    // the source before it renames, so this holds end to end; the gate's own rule for
    // `rename-at`, read and write on the source, stands behind it.)
    let host = host(&format!(
        "{READ_WRITE}@id(\"test:sealed\")\nforbid (principal, action == FemtoClaw::Action::\"fs.read\", resource is FemtoClaw::Path) when {{ resource.path like \"/data/sealed*\" }};\n"
    ));
    host.add(
        femtoclaw_tests::FEMTOCLAW_GUEST_STD_FILES,
        STD_FILES_MANIFEST,
    );
    let dir = host.data.path().join("files/std-files/data");
    std::fs::create_dir_all(dir.join("sealed")).unwrap();
    std::fs::write(dir.join("sealed/s.txt"), "sealed").unwrap();
    let answer = invoke_std(
        &host,
        "rename",
        json!({"source": "/data/sealed/s.txt", "target": "/data/open.txt"}),
    );
    assert!(answer["err"].is_string(), "{answer}");
    assert!(dir.join("sealed/s.txt").exists() && !dir.join("open.txt").exists());
    assert!(
        decisions(&host, "fs.read", "/data/sealed/s.txt")
            .iter()
            .any(|d| d["allowed"] == json!(false)),
        "the source's read was decided, and refused"
    );
}
