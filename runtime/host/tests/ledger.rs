//! The ledger end to end: every invocation and host call recorded before the answer, signed
//! checkpoints verifiable with a pinned key, tampering located, key rotation, and nothing
//! acknowledged lost when the host is killed.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::process::Stdio;

mod common;
mod model;

use common::{Host, MISBEHAVE_MANIFEST, OPEN_POLICY, code, s, stderr, stdout};
use std::time::{Duration, Instant};

use femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE;
use serde_json::{Value as Json, json};

/// A host that lets the local operator run anything, with the misbehave guest installed.
fn misbehave_host() -> Host {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST);
    host
}

// Verifies: FC-CORE-0102, FC-CORE-0301, FC-CORE-0302, FC-CORE-0303, FC-CORE-0304, FC-CORE-0313, FC-EXEC-0401, FC-EXEC-0503, FC-CAP-1115, FC-CAP-1204, FC-EXT-5502, FC-SEC-1303, FC-OBS-2701, FC-OBS-2703, FC-UPG-3406, FC-ABI-4701, FC-ABI-4705, FC-FORMAL-5004
#[test]
fn every_invocation_and_host_call_is_recorded_and_the_receipt_points_at_it() {
    let host = misbehave_host();
    let out = host.run(&["invoke", "misbehave", "sense", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let indexes: Vec<u64> = report["receipt"]["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    let entries = host.entries();
    let mine: Vec<&Json> = indexes
        .iter()
        .map(|&i| &entries[i as usize]["entry"])
        .collect();
    let kinds: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"invocation-start"));
    assert_eq!(kinds.last(), Some(&"invocation-end"));
    assert!(kinds.contains(&"decision"));
    let invocation = &mine[0]["invocation"];
    assert!(mine.iter().all(|e| &e["invocation"] == invocation));

    let start = mine[0];
    assert_eq!(start["capability"], json!("misbehave"));
    assert_eq!(start["function"], json!("sense"));
    assert_eq!(start["wasmtime_version"], json!("48.0.8"));
    assert_eq!(start["wit_world"], json!("femtoclaw:host/capability@0.1.0"));
    assert_eq!(start["fuel_budget"], json!(5_000_000));
    assert!(start["policy_digest"].is_string());

    let calls: Vec<&&Json> = mine.iter().filter(|e| e["type"] == "host-call").collect();
    let names: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{}#{}",
                c["interface"].as_str().unwrap(),
                c["function"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        names.contains(&"wasi:clocks/wall-clock@0.2.12#now".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"wasi:clocks/monotonic-clock@0.2.12#now".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"wasi:random/random@0.2.12#get-random-bytes".to_owned()),
        "{names:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c["fuel_remaining"].as_u64().unwrap() < 5_000_000)
    );
    let seqs: Vec<u64> = calls.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..calls.len() as u64).collect::<Vec<_>>());

    let end = mine.last().unwrap();
    assert_eq!(end["fuel_consumed"], report["fuel"]["consumed"]);
}

// Verifies: FC-CORE-0202, FC-CORE-0311, FC-CORE-0314, FC-EXEC-0601, FC-EXEC-0616, FC-POL-1418, FC-OBS-2704, FC-FORMAL-5005, FC-CRYPTO-3503
#[test]
fn refused_and_failed_invocations_are_recorded_too() {
    let host = misbehave_host();
    assert_eq!(code(&host.run(&["invoke", "misbehave", "spin"])), 4);
    assert_eq!(
        code(&host.run(&[
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"{"name":"x"}"#,
            "--principal",
            "agent:bot"
        ])),
        7
    );
    let entries = host.entries();
    let trap = entries
        .iter()
        .find(|e| e["entry"]["type"] == "trap")
        .expect("trap recorded");
    assert_eq!(trap["entry"]["kind"], json!("fuel-exhausted"));
    assert_eq!(trap["entry"]["fuel_consumed"], json!(5_000_000));
    let denied = entries
        .iter()
        .find(|e| e["entry"]["type"] == "decision" && e["entry"]["allowed"] == json!(false))
        .expect("denial recorded");
    assert_eq!(denied["entry"]["action"], json!("invoke"));
    assert_eq!(denied["entry"]["resource"], json!("hello@0.1.0"));
}

// Verifies: FC-CRYPTO-3801, FC-CRYPTO-3819, FC-OBS-2706, FC-OBS-2707, FC-OBS-2710, FC-FORMAL-5019, FC-FORMAL-5202, FC-FORMAL-5209, FC-CRYPTO-3508
#[test]
fn verify_passes_with_the_pinned_key_and_fails_with_another_or_a_tampered_export() {
    let host = misbehave_host();
    for i in 0..3 {
        let out = host.run(&[
            "invoke",
            "misbehave",
            "divide",
            "--args",
            &format!(r#"{{"a":{i},"b":1}}"#),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let key = host.key();
    let ok = host.run(&["log", "verify", "--key", &key]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: "), "{}", stdout(&ok));

    let export = host.files.path().join("ledger.export");
    assert_eq!(code(&host.run(&["log", "export", s(&export)])), 0);
    assert_eq!(
        code(&host.run(&["log", "verify", "--key", &key, s(&export)])),
        0
    );

    // Another key (a fresh host's) is not trusted.
    let stranger = Host::new().key();
    let out = host.run(&["log", "verify", "--key", &stranger, s(&export)]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));

    // A flipped byte in the middle of the entries is an integrity failure with its place.
    let mut bytes = std::fs::read(&export).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x40;
    let tampered = host.file("tampered.export", &bytes);
    let out = host.run(&["log", "verify", "--key", &key, s(&tampered)]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ledger verification failed"),
        "{}",
        stderr(&out)
    );
}

// Verifies: FC-CRYPTO-3605, FC-CRYPTO-3613, FC-CRYPTO-3805, FC-OBS-2705
#[test]
fn checkpoint_and_inclusion_proof_verify_against_the_key() {
    let host = misbehave_host();
    assert_eq!(
        code(&host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"x"}"#])),
        0
    );
    let note = stdout(&host.run(&["log", "checkpoint"]));
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], "femtoclaw.local/ledger");
    assert!(
        lines[3].is_empty() && lines[4].starts_with("— femtoclaw.local/ledger "),
        "{note}"
    );
    let size: u64 = lines[1].parse().unwrap();
    let proof = host.file(
        "proof.txt",
        &host.run(&["log", "prove", &(size - 1).to_string()]).stdout,
    );
    let out = host.run(&["log", "verify-proof", s(&proof), "--key", &host.key()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = host.run(&[
        "log",
        "verify-proof",
        s(&proof),
        "--key",
        &Host::new().key(),
    ]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
}

// Verifies: FC-CRYPTO-3802, FC-CRYPTO-3702, FC-CRYPTO-3703, FC-CRYPTO-3714, FC-CRYPTO-3718, FC-OPS-3906, FC-CRYPTO-3516
#[test]
fn key_rotation_is_recorded_and_both_keys_verify_their_checkpoints() {
    let host = misbehave_host();
    let old = host.key();
    let out = host.run(&["key", "generate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let new = stdout(&out).trim().to_owned();
    assert_ne!(old, new);
    assert_eq!(host.key(), new);
    assert_eq!(
        code(&host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"x"}"#])),
        0
    );
    let changes: Vec<Json> = host
        .entries()
        .into_iter()
        .filter(|e| e["entry"]["type"] == "key-change")
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1]["entry"]["new_verifier_key"], json!(new));
    assert!(changes[1]["entry"]["old_key_id"].is_string());
    // Checkpoints before the rotation are signed by the old key, after it by the new one.
    assert_eq!(
        code(&host.run(&["log", "verify", "--key", &old, "--key", &new])),
        0
    );
    assert_eq!(code(&host.run(&["log", "verify", "--key", &new])), 8);
    // Without --key, the keys the ledger records are pinned, each in force from its change.
    let recorded = host.run(&["log", "verify"]);
    assert_eq!(code(&recorded), 0, "{}", stderr(&recorded));
}

// Verifies: FC-CORE-0209, FC-MEM-2403, FC-OPS-5703, FC-FORMAL-5013
#[test]
fn nothing_acknowledged_is_lost_when_the_host_is_killed() {
    let host = misbehave_host();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acknowledged: Vec<(u64, Vec<u64>)> = Vec::new();
    let mut killed = 0;
    for round in 0..24u64 {
        if Instant::now() > deadline {
            break;
        }
        let mut child = host
            .command(&[
                "invoke",
                "misbehave",
                "divide",
                "--args",
                &format!(r#"{{"a":{round},"b":1}}"#),
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every other process is killed at a varying point of its life.
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(5 + (round * 7) % 60));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            let report: Json = serde_json::from_slice(&out.stdout).unwrap();
            let indexes = report["receipt"]["indexes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap())
                .collect();
            acknowledged.push((report["result"].as_u64().unwrap(), indexes));
        }
    }
    assert!(
        acknowledged.len() >= 10,
        "{} acknowledged",
        acknowledged.len()
    );
    assert!(killed > 0, "no process was killed mid-run");

    let verify = host.run(&["log", "verify", "--key", &host.key()]);
    assert_eq!(code(&verify), 0, "killed {killed}: {}", stderr(&verify));
    let entries = host.entries();
    for (result, indexes) in acknowledged {
        let end = &entries[*indexes.last().unwrap() as usize]["entry"];
        assert_eq!(end["type"], json!("invocation-end"));
        assert_eq!(end["result"], json!({"u32": result}), "{end}");
    }
}

// Verifies: FC-CORE-0309, FC-EXEC-0520, FC-FORMAL-5009
#[test]
fn recording_the_same_inputs_twice_gives_identical_entries_but_for_clock_and_random_values() {
    let host = misbehave_host();
    let invocation = |args: &[&str]| -> Vec<Json> {
        let out = host.run(args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
        let entries = host.entries();
        report["receipt"]["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let mut e = entries[i.as_u64().unwrap() as usize]["entry"].clone();
                e.as_object_mut().unwrap().remove("invocation");
                e
            })
            .collect()
    };
    let chatter = [
        "invoke",
        "misbehave",
        "chatter",
        "--args",
        r#"{"lines":2}"#,
        "--json",
    ];
    assert_eq!(invocation(&chatter), invocation(&chatter));

    let sense = ["invoke", "misbehave", "sense", "--json"];
    let (first, second) = (invocation(&sense), invocation(&sense));
    assert_eq!(first.len(), second.len());
    let mut differing = 0;
    for (a, b) in first.iter().zip(&second) {
        if a["type"] == "host-call" {
            // Same call, same parameters, same fuel left; only the world's answer may differ.
            for field in ["interface", "function", "params", "fuel_remaining", "seq"] {
                assert_eq!(a[field], b[field], "{field}: {a} vs {b}");
            }
            differing += usize::from(a["result"] != b["result"]);
        } else if a["type"] == "invocation-end" {
            assert_eq!(a["fuel_consumed"], b["fuel_consumed"]);
        } else {
            assert_eq!(a, b);
        }
    }
    assert!(
        differing > 0,
        "fresh randomness should differ between the two recordings"
    );
}

// Verifies: FC-EXT-5509, FC-CRYPTO-3608, FC-CRYPTO-3613, FC-OBS-2718
#[test]
fn inclusion_proofs_verify_with_an_independent_implementation() {
    let verifier = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/verify_tlog_proof.py");
    let interpreter = common::python();
    let available = std::process::Command::new(&interpreter)
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        available,
        "{interpreter} with the `cryptography` package is needed for this test (tests/run installs it)"
    );
    let host = misbehave_host();
    for lines in 1..=3 {
        let args = format!(r#"{{"lines":{lines}}}"#);
        assert_eq!(
            code(&host.run(&["invoke", "misbehave", "chatter", "--args", &args])),
            0
        );
    }
    let key = host.key();
    let size = host.entries().len();
    let python = |proof: &std::path::Path| {
        std::process::Command::new(&interpreter)
            .args([s(&verifier), s(proof), &key])
            .output()
            .unwrap()
    };
    for index in 0..size {
        let proof = host.file(
            "proof.txt",
            &host.run(&["log", "prove", &index.to_string()]).stdout,
        );
        let out = python(&proof);
        assert_eq!(code(&out), 0, "entry {index}: {}", stderr(&out));
        assert!(stdout(&out).starts_with(&format!("ok: entry {index} is in the tree")));
    }
    // The independent verifier also rejects a proof moved to another index.
    let text = stdout(&host.run(&["log", "prove", "1"]));
    let moved = host.file(
        "moved.txt",
        text.replace("index 1\n", "index 2\n").as_bytes(),
    );
    assert_eq!(code(&python(&moved)), 1);
}

// Verifies: FC-CORE-0210, FC-POL-1513, FC-OPS-3907, FC-UPG-3407, FC-FORMAL-5006, FC-CRYPTO-3516
#[test]
fn a_policy_change_is_recorded_before_the_first_decision_it_makes() {
    let host = misbehave_host();
    let divide = [
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ];
    assert_eq!(code(&host.run(&divide)), 0);
    assert_eq!(code(&host.run(&divide)), 0);
    // A comment is not a policy change (the digest covers policies, not layout)...
    host.set_policy(&format!("{OPEN_POLICY}// edited\n"));
    assert_eq!(code(&host.run(&divide)), 0);
    // ...a new policy is.
    host.set_policy(&format!(
        "{OPEN_POLICY}permit (principal == FemtoClaw::User::\"ada\", action, resource);\n"
    ));
    assert_eq!(code(&host.run(&divide)), 0);
    let entries = host.entries();
    let changes: Vec<&Json> = entries
        .iter()
        .filter(|e| e["entry"]["type"] == "policy-change")
        .collect();
    assert_eq!(
        changes.len(),
        2,
        "one per distinct policy, not per invocation"
    );
    let digest_of_decision_after = |change: &Json| {
        let at = change["index"].as_u64().unwrap() as usize;
        entries[at..]
            .iter()
            .find(|e| e["entry"]["type"] == "decision")
            .map(|e| e["entry"]["policy_digest"].clone())
            .unwrap()
    };
    for change in changes {
        assert_eq!(
            change["entry"]["policy_digest"],
            digest_of_decision_after(change)
        );
        assert!(
            change["entry"]["source"]
                .as_str()
                .unwrap()
                .ends_with("policy")
        );
    }
}

// Verifies: FC-CRYPTO-3802, FC-CRYPTO-3701, FC-CRYPTO-3705
#[test]
fn the_first_key_generate_makes_the_first_key_and_show_all_lists_the_history() {
    let host = Host::new();
    let out = host.run(&["key", "generate", "--name", "example.com/log"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = stdout(&out).trim().to_owned();
    assert!(first.starts_with("example.com/log+"), "{first}");
    assert_eq!(host.key(), first);
    let verified = host.run(&["log", "verify", "--key", &first]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
    let all = stdout(&host.run(&["key", "show", "--all"]));
    assert_eq!(all.lines().collect::<Vec<_>>(), [first.as_str()]);

    // The next one rotates: both are the history, oldest first, and verify the ledger.
    let second = stdout(&host.run(&["key", "generate"])).trim().to_owned();
    assert_ne!(second, first);
    let all = stdout(&host.run(&["key", "show", "--all"]));
    assert_eq!(
        all.lines().collect::<Vec<_>>(),
        [first.as_str(), second.as_str()]
    );
    let mut args = vec!["log", "verify"];
    for key in all.lines() {
        args.extend(["--key", key]);
    }
    let verified = host.run(&args);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-CRYPTO-3618, FC-CRYPTO-3803, FC-CRYPTO-4507, FC-OBS-2711, FC-OPS-5710, FC-FORMAL-5204, FC-CRYPTO-3501, FC-CRYPTO-3515
#[test]
fn a_pinned_checkpoint_catches_a_ledger_rolled_back_or_forked_since() {
    let greet = |host: &Host, name: &str| {
        let args = format!(r#"{{"name":"{name}"}}"#);
        let out = host.run(&["invoke", "hello", "greet", "--args", &args]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    let checkpoint = |host: &Host, file: &str| {
        let note = host.run(&["log", "checkpoint"]).stdout;
        host.file(file, &note)
    };
    let host = Host::new();
    greet(&host, "Ada");
    let early = host.files.path().join("early.export");
    assert_eq!(code(&host.run(&["log", "export", s(&early)])), 0);
    greet(&host, "Grace");
    let late = checkpoint(&host, "late.note");
    let key = host.key();
    let verify = |target: Option<&std::path::Path>, note: &std::path::Path| {
        let mut args = vec!["log", "verify", "--key", &key, "--checkpoint", s(note)];
        args.extend(target.map(s));
        host.run(&args)
    };

    // The live ledger holds what was seen; the earlier state of it does not.
    let ok = verify(None, &late);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let rolled_back = verify(Some(&early), &late);
    assert_eq!(code(&rolled_back), 8, "{}", stderr(&rolled_back));
    assert!(
        stderr(&rolled_back).contains("the log went backwards"),
        "{}",
        stderr(&rolled_back)
    );

    // Another ledger signed with the same key, which went another way after the first entries.
    let fork = Host::new();
    std::fs::create_dir_all(fork.data.path().join("keys")).unwrap();
    for file in std::fs::read_dir(host.data.path().join("keys")).unwrap() {
        let file = file.unwrap();
        std::fs::copy(
            file.path(),
            fork.data.path().join("keys").join(file.file_name()),
        )
        .unwrap();
    }
    greet(&fork, "Mallory");
    let forked = checkpoint(&fork, "fork.note");
    let out = verify(None, &forked);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not consistent with pinned checkpoint 0"),
        "{}",
        stderr(&out)
    );

    // A checkpoint no pinned key signed proves nothing.
    let stranger = Host::new();
    greet(&stranger, "Eve");
    let unsigned = checkpoint(&stranger, "stranger.note");
    let out = verify(None, &unsigned);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pinned checkpoint 0 does not verify"),
        "{}",
        stderr(&out)
    );
}

/// The segment file of a fresh host's ledger (one segment).
fn segment(host: &Host) -> std::path::PathBuf {
    host.data.path().join("ledger/segments/00000000.seg")
}

fn greet(host: &Host, name: &str) {
    let args = format!(r#"{{"name":"{name}"}}"#);
    let out = host.run(&["invoke", "hello", "greet", "--args", &args]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

// Verifies: FC-MEM-2414, FC-CRYPTO-3803, FC-OBS-2711, FC-OPS-5709, FC-OPS-5710, FC-FORMAL-5204, FC-FORMAL-5210, FC-CRYPTO-3510, FC-CRYPTO-3515
/// The segment cut back to an earlier commit and the derived index deleted: a ledger that
/// verifies on its own. The host's own record of its latest checkpoint, kept outside both,
/// catches it: the host refuses to open it, and `log verify` fails, naming what went backwards.
#[test]
fn a_ledger_rolled_back_behind_the_hosts_own_record_is_refused() {
    let host = Host::new();
    greet(&host, "Ada");
    let earlier = std::fs::metadata(segment(&host)).unwrap().len();
    greet(&host, "Grace");
    let entries = host.entries().len();

    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&host))
        .unwrap();
    file.set_len(earlier).unwrap();
    drop(file);
    std::fs::remove_dir_all(host.data.path().join("ledger/index")).unwrap();

    let verify = host.run(&["log", "verify"]);
    assert_eq!(code(&verify), 8, "{}", stderr(&verify));
    assert!(
        stderr(&verify).contains("the log went backwards"),
        "{}",
        stderr(&verify)
    );
    let invoke = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Eve"}"#]);
    assert_eq!(code(&invoke), 8, "{}", stderr(&invoke));
    let says = stderr(&invoke);
    assert!(says.contains("the ledger went backwards"), "{says}");
    assert!(
        says.contains(&format!("checkpoint of {entries} entries")),
        "{says}"
    );
    assert!(says.contains("latest-checkpoint"), "{says}");
    // Nothing was written to the rolled-back ledger.
    assert_eq!(std::fs::metadata(segment(&host)).unwrap().len(), earlier);
}

// Verifies: FC-MEM-2414, FC-OPS-5709, FC-FORMAL-5210, FC-CRYPTO-3510, FC-CRYPTO-3515
/// Another ledger put in the place of this host's (same key, same size or more, other
/// entries) is not the one its record names.
#[test]
fn a_ledger_replaced_by_another_is_refused() {
    let host = Host::new();
    greet(&host, "Ada");
    let other = Host::new();
    for file in std::fs::read_dir(host.data.path().join("keys")).unwrap() {
        let file = file.unwrap();
        std::fs::create_dir_all(other.data.path().join("keys")).unwrap();
        std::fs::copy(
            file.path(),
            other.data.path().join("keys").join(file.file_name()),
        )
        .unwrap();
    }
    greet(&other, "Mallory");
    greet(&other, "Mallory");
    std::fs::remove_dir_all(host.data.path().join("ledger")).unwrap();
    let copy = std::process::Command::new("cp")
        .args([
            "-r",
            s(&other.data.path().join("ledger")),
            s(host.data.path()),
        ])
        .status()
        .unwrap();
    assert!(copy.success());
    let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Eve"}"#]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not the one"), "{}", stderr(&out));
}

// Verifies: FC-MEM-2416, FC-CRYPTO-3819, FC-OBS-2716, FC-OPS-5710, FC-FORMAL-5008, FC-FORMAL-5212
/// `log verify` writes nothing: a torn tail is reported and left as it is, and no invocation
/// the host stopped during is ended by it (only the host, when it next opens the ledger, does).
#[test]
fn log_verify_reads_only_and_reports_a_torn_tail() {
    let host = Host::new();
    greet(&host, "Ada");
    let entries = host.entries().len();
    let mut torn = std::fs::read(segment(&host)).unwrap();
    torn.extend_from_slice(&[0x5a; 37]);
    std::fs::write(segment(&host), &torn).unwrap();
    let head = std::fs::read(host.data.path().join("latest-checkpoint")).unwrap();

    let out = host.run(&["log", "verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ends in 37 bytes never acknowledged"),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(segment(&host)).unwrap(), torn);
    assert_eq!(
        std::fs::read(host.data.path().join("latest-checkpoint")).unwrap(),
        head
    );
    // The host's next open cuts the tail; the entries are the same.
    assert_eq!(host.entries().len(), entries);
    assert!(std::fs::read(segment(&host)).unwrap().len() < torn.len());
}

/// An export of a ledger the library wrote with `key` (bare checkpoints without one): two
/// batches of host calls.
fn library_export(host: &Host, name: &str, key: Option<femtoclaw_ledger::SigningKey>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let opts = match key {
        Some(key) => femtoclaw_ledger::LedgerOptions::with_key(key),
        None => femtoclaw_ledger::LedgerOptions::default(),
    };
    let (mut ledger, _) = femtoclaw_ledger::Ledger::open(dir.path(), opts).unwrap();
    for b in 0..2 {
        let call = |seq| femtoclaw_ledger::Entry::HostCall {
            invocation: b,
            seq,
            interface: "i".into(),
            function: "f".into(),
            params: femtoclaw_ledger::Value::U8(1),
            result: femtoclaw_ledger::Value::Bool(true),
            fuel_remaining: 9,
        };
        ledger.append_batch(vec![call(0), call(1)]).unwrap();
    }
    let path = host.files.path().join(name);
    ledger.export(&path).unwrap();
    s(&path).to_owned()
}

// Verifies: FC-CRYPTO-3622
#[test]
fn an_unsigned_export_verifies_without_a_key_saying_so_and_a_signed_one_is_refused() {
    let host = Host::new();
    let unsigned = library_export(&host, "unsigned.export", None);
    let out = host.run(&["log", "verify", &unsigned]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "ok: 4 entries, 2 checkpoints verified; signatures not checked: the checkpoints are unsigned"
    );

    // Against a pinned key, the first (bare) checkpoint is signed by nobody.
    let key = femtoclaw_ledger::SigningKey::from_seed("femtoclaw.test/cli", [3; 32]).unwrap();
    let pinned = key.verifier().to_string();
    let out = host.run(&["log", "verify", "--key", &pinned, &unsigned]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("checkpoint 0 (tree size 2) is not signed by a pinned key"),
        "{}",
        stderr(&out)
    );

    // Signatures nobody checked are never called verified.
    let signed = library_export(&host, "signed.export", Some(key));
    let out = host.run(&["log", "verify", &signed]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no key to verify with: pass --key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        code(&host.run(&["log", "verify", "--key", &pinned, &signed])),
        0
    );
}

// Verifies: FC-CRYPTO-3712
#[test]
fn a_rotation_stopped_between_its_steps_is_settled_when_the_ledger_opens() {
    let greet = |host: &Host| {
        let out = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    let verifies = |host: &Host| {
        let out = host.run(&["log", "verify"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    let keys = |host: &Host| host.data.path().join("keys");
    // Stopped after the key change was durable, before the new key took the key file's
    // place: the next open installs it.
    let host = Host::with_policy(OPEN_POLICY);
    greet(&host);
    let old = std::fs::read(keys(&host).join("ledger-signing.key")).unwrap();
    let rotated = host.run(&["key", "generate"]);
    assert_eq!(code(&rotated), 0, "{}", stderr(&rotated));
    let new = std::fs::read(keys(&host).join("ledger-signing.key")).unwrap();
    std::fs::write(keys(&host).join("ledger-signing.next"), &new).unwrap();
    std::fs::write(keys(&host).join("ledger-signing.key"), &old).unwrap();
    greet(&host);
    assert_eq!(
        std::fs::read(keys(&host).join("ledger-signing.key")).unwrap(),
        new
    );
    assert!(!keys(&host).join("ledger-signing.next").exists());
    verifies(&host);
    // Stopped before the key change: the staged key is dropped, the old one stays.
    let host = Host::with_policy(OPEN_POLICY);
    greet(&host);
    let old = std::fs::read(keys(&host).join("ledger-signing.key")).unwrap();
    let other = Host::with_policy(OPEN_POLICY);
    greet(&other);
    std::fs::copy(
        keys(&other).join("ledger-signing.key"),
        keys(&host).join("ledger-signing.next"),
    )
    .unwrap();
    greet(&host);
    assert_eq!(
        std::fs::read(keys(&host).join("ledger-signing.key")).unwrap(),
        old
    );
    assert!(!keys(&host).join("ledger-signing.next").exists());
    verifies(&host);
}
