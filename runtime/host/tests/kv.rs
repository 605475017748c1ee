//! Key-value state end to end: the memory capability under the default policy, namespaces as
//! the policy grants them (a denial is answered and recorded), writes applied only for an
//! invocation that returned, the store rebuilt from the ledger equal to the live one, and replay
//! answering reads from the ledger without touching the store.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{Host, MISBEHAVE_MANIFEST, code, command, s, stderr, stdout};
use femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE;
use serde_json::{Value as Json, json};

/// The misbehave guest, asking for `notes` (read and write) and `ro` (read).
fn kv_manifest() -> String {
    format!(
        "{MISBEHAVE_MANIFEST}kv = [{{ namespace = \"notes\", write = true }}, \
         {{ namespace = \"ro\", write = true }}]\n"
    )
}

/// Invoke and link anything; `notes` read and write; `ro` read only.
const KV_POLICY: &str = "\
    permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
    permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource);\n\
    @id(\"notes\")\n\
    permit (principal, action in [FemtoClaw::Action::\"kv.read\", FemtoClaw::Action::\"kv.write\"], resource)\n\
    when { resource.name == \"notes\" || resource.name == \"memory\" };\n\
    @id(\"ro\")\n\
    permit (principal, action == FemtoClaw::Action::\"kv.read\", resource) when { resource.name == \"ro\" };\n";

fn invoke(host: &Host, cap: &str, function: &str, args: Json) -> Json {
    let out = host.run(&["invoke", cap, function, "--args", &args.to_string()]);
    assert_eq!(code(&out), 0, "{function} {args}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The store as `kv list --json` prints it.
fn dump(host: &Host) -> Vec<Json> {
    let out = host.run(&["kv", "list", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kv_host() -> Host {
    let host = Host::with_policy(KV_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, &kv_manifest());
    host
}

/// Decisions recorded for `action`, as `(resource, allowed)`.
fn decisions(host: &Host, action: &str) -> Vec<(String, bool)> {
    host.entries()
        .iter()
        .map(|e| &e["entry"])
        .filter(|d| d["type"] == "decision" && d["action"] == action)
        .map(|d| {
            (
                d["resource"].as_str().unwrap().to_owned(),
                d["allowed"].as_bool().unwrap(),
            )
        })
        .collect()
}

// Verifies: FC-CAP-1206, FC-CAP-1222, FC-EXT-5303, FC-MEM-2501, FC-MEM-2510
#[test]
fn memory_keeps_notes_across_invocations_under_the_default_policy() {
    let host = Host::new();
    for (key, text) in [("todo/1", "milk"), ("todo/2", "bread"), ("done/1", "eggs")] {
        let r = invoke(&host, "memory", "put", json!({"key": key, "text": text}));
        assert_eq!(r, json!({"ok": null}));
    }
    assert_eq!(
        invoke(&host, "memory", "get", json!({"key": "todo/2"})),
        json!({"ok": "bread"})
    );
    assert_eq!(
        invoke(&host, "memory", "get", json!({"key": "nope"})),
        json!({"ok": null})
    );
    assert_eq!(
        invoke(
            &host,
            "memory",
            "list",
            json!({"prefix": "todo/", "limit": 10})
        ),
        json!({"ok": ["todo/1", "todo/2"]})
    );
    assert_eq!(
        invoke(&host, "memory", "list", json!({"prefix": "", "limit": 2})),
        json!({"ok": ["done/1", "todo/1"]})
    );
    assert_eq!(
        invoke(&host, "memory", "delete", json!({"key": "todo/1"})),
        json!({"ok": true})
    );
    assert_eq!(
        invoke(&host, "memory", "delete", json!({"key": "todo/1"})),
        json!({"ok": false})
    );
    let keys: Vec<Json> = dump(&host).iter().map(|p| p["key"].clone()).collect();
    assert_eq!(keys, [json!("done/1"), json!("todo/2")]);
    // Every read and write went through the gate and was authorized on the namespace.
    assert!(
        decisions(&host, "kv.write")
            .iter()
            .all(|(r, allowed)| r == "memory" && *allowed)
    );
    assert!(!decisions(&host, "kv.read").is_empty());
}

// Verifies: FC-CAP-1215, FC-CAP-1222, FC-EXT-5316, FC-SEC-1306, FC-SEC-1309, FC-POL-1715, FC-MEM-2510, FC-MEM-2511
#[test]
fn an_ungranted_namespace_is_denied_answered_and_recorded() {
    let host = kv_host();
    // `ro` may be read but not written; `other` is not in the manifest at all.
    let r = invoke(
        &host,
        "misbehave",
        "kv-set",
        json!({"namespace": "ro", "key": "k", "value": "v", "trap": false}),
    );
    assert!(
        r["err"].as_str().unwrap().to_lowercase().contains("access"),
        "{r}"
    );
    let r = invoke(
        &host,
        "misbehave",
        "kv-get",
        json!({"namespace": "other", "key": "k"}),
    );
    assert!(
        r["err"].as_str().unwrap().to_lowercase().contains("access"),
        "{r}"
    );
    assert!(decisions(&host, "kv.write").contains(&("ro".to_owned(), false)));
    assert!(decisions(&host, "kv.read").contains(&("other".to_owned(), false)));
    assert!(dump(&host).is_empty());

    // The default policy grants no namespace to a third-party capability.
    let host = Host::new();
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, &kv_manifest());
    let out = host.run(&[
        "invoke",
        "misbehave",
        "kv-get",
        "--args",
        r#"{"namespace":"notes","key":"k"}"#,
    ]);
    assert_ne!(
        code(&out),
        0,
        "default policy let a third party run: {}",
        stdout(&out)
    );
}

// Verifies: FC-CORE-0211, FC-CAP-1207, FC-MEM-2502, FC-FORMAL-5010
#[test]
fn writes_apply_only_when_the_invocation_returns() {
    let host = kv_host();
    invoke(
        &host,
        "misbehave",
        "kv-set",
        json!({"namespace": "notes", "key": "kept", "value": "1", "trap": false}),
    );
    let out = host.run(&[
        "invoke",
        "misbehave",
        "kv-set",
        "--args",
        r#"{"namespace":"notes","key":"lost","value":"2","trap":true}"#,
    ]);
    assert_eq!(code(&out), 5, "a trap: {}", stderr(&out));
    let keys: Vec<Json> = dump(&host).iter().map(|p| p["key"].clone()).collect();
    assert_eq!(keys, [json!("kept")]);
    // The trapped write is in the ledger all the same.
    let recorded_sets = host
        .entries()
        .iter()
        .map(|e| &e["entry"])
        .filter(|c| c["type"] == "host-call" && c["function"] == "[method]bucket.set")
        .count();
    assert_eq!(recorded_sets, 2);
}

// Verifies: FC-CAP-1208, FC-MEM-2505, FC-OPS-3908, FC-OPS-5705
#[test]
fn reindex_rebuilds_the_live_state_exactly() {
    let host = kv_host();
    for (key, value, trap) in [
        ("a", "1", false),
        ("b", "2", false),
        ("a", "3", false),
        ("c", "4", true),
        ("d", "5", false),
    ] {
        let args = json!({"namespace": "notes", "key": key, "value": value, "trap": trap});
        host.run(&["invoke", "misbehave", "kv-set", "--args", &args.to_string()]);
    }
    invoke(&host, "memory", "put", json!({"key": "x", "text": "y"}));
    invoke(&host, "memory", "delete", json!({"key": "x"}));
    invoke(&host, "memory", "put", json!({"key": "z", "text": "zz"}));
    let live = dump(&host);
    assert_eq!(live.len(), 4, "{live:?}");

    let out = host.run(&["log", "reindex"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("4 pairs"), "{}", stdout(&out));
    assert_eq!(dump(&host), live);

    // A lost store is caught up from the ledger when the host opens.
    std::fs::remove_dir_all(host.data.path().join("kv")).unwrap();
    assert_eq!(dump(&host), live);

    // So is a store corrupted by hand: reindex restores the ledger's view.
    let out = host.run(&[
        "invoke",
        "misbehave",
        "kv-set",
        "--args",
        r#"{"namespace":"notes","key":"a","value":"9","trap":false}"#,
    ]);
    assert_eq!(code(&out), 0);
    let live = dump(&host);
    host.run(&["log", "reindex"]);
    assert_eq!(dump(&host), live);
}

// Verifies: FC-OPS-5705
#[test]
fn a_damaged_store_is_set_aside_and_rebuilt_from_the_ledger() {
    let host = kv_host();
    invoke(&host, "memory", "put", json!({"key": "a", "text": "1"}));
    invoke(&host, "memory", "put", json!({"key": "b", "text": "2"}));
    let live = dump(&host);
    assert_eq!(live.len(), 2, "{live:?}");
    // Every byte of every file of the store flipped.
    let kv = host.data.path().join("kv");
    let mut damaged = Vec::new();
    for entry in walk(&kv) {
        let bytes: Vec<u8> = std::fs::read(&entry).unwrap().iter().map(|b| !b).collect();
        std::fs::write(&entry, &bytes).unwrap();
        damaged.push((entry.strip_prefix(&kv).unwrap().to_owned(), bytes));
    }
    assert!(!damaged.is_empty());
    // The next invocation reads the ledger's view; the damaged files are kept, unchanged.
    let got = invoke(&host, "memory", "get", json!({"key": "a"}));
    assert_eq!(got, json!({"ok": "1"}), "{got}");
    assert_eq!(dump(&host), live);
    let aside = host.data.path().join("kv.damaged-1");
    for (relative, bytes) in &damaged {
        assert_eq!(
            &std::fs::read(aside.join(relative)).unwrap(),
            bytes,
            "{relative:?}"
        );
    }
    // Damaged again, `log reindex` rebuilds it too, setting it aside beside the first.
    for entry in walk(&kv) {
        let bytes: Vec<u8> = std::fs::read(&entry).unwrap().iter().map(|b| !b).collect();
        std::fs::write(&entry, bytes).unwrap();
    }
    let out = host.run(&["log", "reindex"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("2 pairs"), "{}", stdout(&out));
    assert!(host.data.path().join("kv.damaged-2").is_dir());
    assert_eq!(dump(&host), live);
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

// Verifies: FC-EXEC-0508, FC-CAP-1210, FC-MEM-2518
#[test]
fn replay_answers_reads_from_the_ledger_and_leaves_the_store_alone() {
    let host = kv_host();
    invoke(
        &host,
        "misbehave",
        "kv-set",
        json!({"namespace": "notes", "key": "k", "value": "recorded", "trap": false}),
    );
    let r = invoke(
        &host,
        "misbehave",
        "kv-get",
        json!({"namespace": "notes", "key": "k"}),
    );
    assert_eq!(r, json!({"ok": "recorded"}));
    let export = host.export();

    // The store moves on after the export.
    invoke(
        &host,
        "misbehave",
        "kv-set",
        json!({"namespace": "notes", "key": "k", "value": "later", "trap": false}),
    );
    let before = dump(&host);
    let store_files = snapshot(&host.data.path().join("kv"));

    let empty = tempfile::tempdir().unwrap();
    for data in [host.data.path(), empty.path()] {
        assert_eq!(host.replay_on(data, &export)["identical"], json!(2));
    }
    assert_eq!(snapshot(&host.data.path().join("kv")), store_files);
    assert!(!empty.path().join("kv").exists());
    assert_eq!(dump(&host), before);
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

// Verifies: FC-CRYPTO-3804, FC-MEM-2508, FC-OBS-2706, FC-MEM-2505, FC-ABI-4910
#[test]
fn large_values_are_kept_beside_the_ledger_and_travel_with_the_export() {
    let host = kv_host();
    let big = "x".repeat(femtoclaw_ledger::BLOB_THRESHOLD + 10);
    invoke(
        &host,
        "misbehave",
        "kv-set",
        json!({"namespace": "notes", "key": "big", "value": big, "trap": false}),
    );
    let got = invoke(
        &host,
        "misbehave",
        "kv-get",
        json!({"namespace": "notes", "key": "big"}),
    );
    assert_eq!(got, json!({"ok": big}));
    // The ledger shows the bytes by digest; the blob is beside it.
    let refs: Vec<Json> = host
        .entries()
        .iter()
        .map(|e| e["entry"].to_string())
        .filter(|e| e.contains("\"blob\""))
        .map(Json::String)
        .collect();
    assert_eq!(refs.len(), 2, "the set's value and the get's result");
    let blobs: Vec<std::path::PathBuf> = std::fs::read_dir(host.data.path().join("ledger/blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 1);
    let out = host.run(&["log", "verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("1 blobs match"), "{}", stdout(&out));

    let export = host.export();
    let empty = tempfile::tempdir().unwrap();
    host.replay_on(empty.path(), &export);
    let key = host.key();

    // Without the blob the export still verifies, but cannot be replayed, and says why.
    let bytes = std::fs::read(&export).unwrap();
    let parsed = femtoclaw_ledger::parse_export(&bytes).unwrap();
    let components: Vec<_> = parsed
        .components
        .iter()
        .map(|(h, b)| (*h, b.to_vec()))
        .collect();
    let mut stripped = Vec::new();
    femtoclaw_ledger::write_export(
        &mut stripped,
        &parsed.entries,
        &parsed.checkpoints,
        &components,
        &[],
    )
    .unwrap();
    let stripped_path = host.file("stripped.export", &stripped);
    let out = host.run(&["log", "verify", s(&stripped_path), "--key", &key]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = command(empty.path(), &["replay", s(&stripped_path), "--key", &key])
        .output()
        .unwrap();
    assert_eq!(code(&out), 10, "{}", stderr(&out));
    assert!(stderr(&out).contains("blob"), "{}", stderr(&out));

    // A blob changed beside the live ledger is an integrity failure of `log verify`, named.
    let original = std::fs::read(&blobs[0]).unwrap();
    let mut changed = original.clone();
    changed[0] ^= 1;
    std::fs::write(&blobs[0], &changed).unwrap();
    let out = host.run(&["log", "verify"]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    let name = blobs[0].file_name().unwrap().to_str().unwrap();
    assert!(stderr(&out).contains(name), "{}", stderr(&out));
    std::fs::remove_file(&blobs[0]).unwrap();
    assert_eq!(code(&host.run(&["log", "verify"])), 8);
    std::fs::write(&blobs[0], &original).unwrap();
    assert_eq!(code(&host.run(&["log", "verify"])), 0);

    // A store rebuilt from the ledger, by `log reindex` or after it was lost, holds the large
    // value again, put back from its blob.
    let out = host.run(&["log", "reindex"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("1 pairs"), "{}", stdout(&out));
    std::fs::remove_dir_all(host.data.path().join("kv")).unwrap();
    let got = invoke(
        &host,
        "misbehave",
        "kv-get",
        json!({"namespace": "notes", "key": "big"}),
    );
    assert_eq!(got, json!({"ok": big}));
    // Without its blob, the rebuild fails naming it rather than dropping the value.
    std::fs::remove_file(&blobs[0]).unwrap();
    let out = host.run(&["log", "reindex"]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    assert!(stderr(&out).contains(name), "{}", stderr(&out));
}

// Verifies: FC-MEM-2507
#[test]
fn the_store_is_opened_only_for_an_invocation_or_command_that_uses_it() {
    let host = Host::new();
    let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let store = host.data.path().join("kv");
    assert!(!store.exists(), "hello imports no key-value interface");
    let put = json!({"key": "k", "text": "v"});
    invoke(&host, "memory", "put", put);
    assert!(store.exists(), "memory does");
    let out = host.run(&["kv", "list", "memory"]);
    assert_eq!(stdout(&out).trim(), "memory/k = \"v\"", "{}", stderr(&out));
}

// Verifies: FC-MEM-2513
#[test]
fn kv_list_escapes_control_characters_in_guest_written_keys() {
    let host = Host::new();
    invoke(
        &host,
        "memory",
        "put",
        json!({"key": "\u{1b}[2Jowned\r", "text": "v"}),
    );
    let out = stdout(&host.run(&["kv", "list", "memory"]));
    assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
    assert!(out.contains(r"\u{1b}[2Jowned\r"), "{out:?}");
}
