//! Cases of observable behaviour across areas: replay's exit codes and classes against a
//! changed component, `log verify` of altered exports and of live ledgers behind what was seen,
//! torn tails, invocations ended as interrupted when a killed server's ledger is next opened,
//! the key-value store and its rebuild, and the configuration's layers. Every check reads only
//! what the target prints, serves or writes in the formats the specifications define.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::{OPEN, failed, guest_host, plain_text, read, s, snapshot, write};
use crate::format::{Cursor, Export, parse_export};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.behaviour.replay-exit-codes-and-changed-component",
        verifies: &[
            "FC-CORE-0119",
            "FC-FORMAL-5206",
            "FC-FORMAL-5217",
            "FC-EXEC-0517",
        ],
        run: replay_exit_codes_and_changed_component,
    },
    Case {
        name: "cli.behaviour.verify-export-alterations",
        verifies: &["FC-FORMAL-5202", "FC-FORMAL-5203"],
        run: verify_export_alterations,
    },
    Case {
        name: "cli.behaviour.live-ledger-pins-tails-and-damage",
        verifies: &[
            "FC-FORMAL-5204",
            "FC-FORMAL-5210",
            "FC-FORMAL-5212",
            "FC-FORMAL-5215",
        ],
        run: live_ledger_pins_tails_and_damage,
    },
    Case {
        name: "cli.behaviour.interrupted-invocations-ended-on-open",
        verifies: &["FC-CORE-0315", "FC-CORE-0316"],
        run: interrupted_invocations_ended_on_open,
    },
    Case {
        name: "cli.behaviour.config-loading-never-panics",
        verifies: &["FC-CONF-2817"],
        run: config_loading_never_panics,
    },
    Case {
        name: "cli.behaviour.kv-set-list-delete",
        verifies: &["FC-MEM-2501"],
        run: kv_set_list_delete,
    },
    Case {
        name: "cli.behaviour.approval-audit",
        verifies: &["FC-FORMAL-5205", "FC-OBS-2712", "FC-EXEC-0721"],
        run: approval_audit,
    },
    Case {
        name: "cli.behaviour.call-returning-after-deadline",
        verifies: &["FC-CORE-0306"],
        run: call_returning_after_deadline,
    },
    Case {
        name: "cli.behaviour.kv-store-opened-only-when-imported",
        verifies: &["FC-MEM-2507"],
        run: kv_store_opened_only_when_imported,
    },
    Case {
        name: "cli.behaviour.written-ahead-then-final-batch",
        verifies: &["FC-CORE-0305"],
        run: written_ahead_then_final_batch,
    },
    Case {
        name: "cli.behaviour.outcomes-traps-and-replay-classes",
        verifies: &["FC-CORE-0314", "FC-CORE-0317", "FC-EXEC-0513"],
        run: trap_kinds_and_interruptions_in_replay,
    },
    Case {
        name: "cli.behaviour.replay-of-changed-recordings",
        verifies: &["FC-EXEC-0509", "FC-EXEC-0510", "FC-EXEC-0516"],
        run: replay_of_changed_recordings,
    },
    Case {
        name: "cli.behaviour.hostile-values-refused",
        verifies: &["FC-EXEC-0714", "FC-EXEC-0715"],
        run: hostile_values_refused,
    },
    Case {
        name: "cli.behaviour.cut-off-at-the-grace",
        verifies: &["FC-CONF-2906"],
        run: cut_off_at_the_grace,
    },
    Case {
        name: "cli.behaviour.replay-refuses-another-engine",
        verifies: &["FC-EXEC-0518"],
        run: replay_refuses_another_engine,
    },
    Case {
        name: "cli.behaviour.manifest-keys",
        verifies: &["FC-CAP-1119"],
        run: manifest_keys,
    },
    Case {
        name: "cli.behaviour.only-pinned-keys-in-force",
        verifies: &["FC-FORMAL-5209"],
        run: only_pinned_keys_in_force,
    },
    Case {
        name: "cli.behaviour.unconfigured-server-binds-loopback",
        verifies: &["FC-CONF-2913"],
        run: unconfigured_server_binds_loopback,
    },
    Case {
        name: "cli.behaviour.concurrent-writes-in-ledger-order",
        verifies: &["FC-MEM-2509"],
        run: concurrent_writes_in_ledger_order,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `invoke conformance FUNCTION --args ARGS`, which must exit `code`.
fn call(host: &Host, function: &str, args: Json, code: i32) -> Result<Run, Failure> {
    let run = host.invoke(function, &args, &[])?;
    run.expect(code, &format!("invoke conformance {function} {args}"))?;
    Ok(run)
}

/// Exports the host's ledger (with `extra` flags); the file's path.
fn export(host: &Host, name: &str, extra: &[&str]) -> Result<PathBuf, Failure> {
    let path = host.files.path().join(name);
    let _ = std::fs::remove_file(&path);
    let file = s(&path);
    let mut args = vec!["log", "export", file.as_str()];
    args.extend_from_slice(extra);
    host.ok(&args)?;
    Ok(path)
}

/// The verifier key `key show` prints.
fn key_text(host: &Host) -> Result<String, Failure> {
    Ok(host.ok(&["key", "show"])?.trim().to_owned())
}

/// `log verify FILE --key KEY`.
fn verify_file(host: &Host, file: &Path, key: &str) -> Result<Run, Failure> {
    host.run(&["log", "verify", &s(file), "--key", key])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first segment of a data directory's ledger (specification 24).
fn segment(host: &Host) -> PathBuf {
    host.data.path().join("ledger/segments/00000000.seg")
}

// ---------------------------------------------------------------------------------------------
// Replay.

/// The guest with the key-value namespace it opens changed (`conformance` to `conformancf`,
/// same length): another build of the capability that behaves the same except at that call.
fn guest_with_other_namespace() -> Vec<u8> {
    let mut bytes = crate::GUEST.to_vec();
    let (from, to) = (b"conformance", b"conformancf");
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], from) {
        bytes[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
    }
    bytes
}

fn replay_exit_codes_and_changed_component(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "same" }), 0)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?
    .expect(7, "a call the policy denies")?;
    host.invoke(
        "spin",
        &json!({}),
        &["--fuel", "10000000000", "--deadline-ms", "200"],
    )?
    .expect(11, "spin past its deadline")?;
    call(&host, "add", json!({ "a": 2, "b": 3 }), 0)?;
    let key = key_text(&host)?;
    let bare = export(&host, "bare.export", &[])?;
    let full = export(&host, "full.export", &["--with-components"])?;
    let elsewhere = target.host()?;
    let replay = |file: &Path, extra: &[&str]| {
        let f = s(file);
        let mut args = vec!["replay", f.as_str(), "--key", key.as_str(), "--json"];
        args.extend_from_slice(extra);
        elsewhere.run(&args)
    };
    // The honest export with its components: every invocation classified, exit 0.
    let run = replay(&full, &[])?;
    run.expect(0, "replay of an honest export with its components")?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        statuses
            == [
                "identical",
                "identical",
                "refused",
                "interrupted",
                "identical"
            ],
        "replay must report identical (echo), identical (remember), refused (denied), interrupted (deadline), identical (add): {statuses:?}"
    );
    // Exit 10: a recorded component that is nowhere.
    let run = replay(&bare, &[])?;
    run.expect(
        10,
        "replay of an export without its components on a fresh data directory",
    )?;
    ensure!(
        run.stdout.trim().is_empty() || !run.stdout.contains("\"divergent\": 1"),
        "a replay that cannot run reported a divergence: {}",
        excerpt(&run.stdout)
    );
    // Exit 9: another build of the capability whose one changed call is the key-value open.
    let rebuilt = guest_with_other_namespace();
    ensure!(
        rebuilt != crate::GUEST,
        "the suite's guest does not hold its namespace `conformance`"
    );
    let dir = elsewhere.files.path().join("rebuilt");
    std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
    write(&dir.join("conformance.wasm"), &rebuilt)?;
    let run = replay(&bare, &["--components", &s(&dir)])?;
    run.expect(
        9,
        "replay against a build of the capability that opens another namespace",
    )?;
    ensure!(
        !run.stderr.contains("verification failed"),
        "a divergence was reported as a verification failure: {}",
        excerpt(&run.stderr)
    );
    let report = run.json()?;
    let invocations = report["invocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let status = |i: usize| invocations.get(i).and_then(|r| r["status"].as_str());
    ensure!(
        invocations.len() == 5
            && status(0) == Some("identical")
            && status(1) == Some("divergent")
            && status(2) == Some("refused")
            && status(3) == Some("interrupted")
            && status(4) == Some("identical"),
        "against the changed build, echo and add must stay identical, remember diverge, the refused and interrupted ones keep their status: {}",
        excerpt(&run.stdout)
    );
    ensure!(
        report["identical"] == json!(2)
            && report["divergent"] == json!(1)
            && report["refused"] == json!(1)
            && report["interrupted"] == json!(1),
        "the report's counts are not 2 identical, 1 divergent, 1 refused, 1 interrupted: {}",
        excerpt(&run.stdout)
    );
    let divergence = &invocations[1]["divergence"];
    ensure!(
        divergence["class"] == "ARGS"
            && divergence["seq"] == json!(0)
            && divergence["call"]
                .as_str()
                .is_some_and(|c| c.contains("open")),
        "remember's first divergence must be class ARGS at host call 0 (the namespace's open): {divergence}"
    );
    // Exit 8: the export changed by one byte, never replayed nor reported as a divergence.
    let mut bytes = read(&bare)?;
    let at = find(&bytes, b"same").ok_or_else(|| failed("the export does not hold `same`"))?;
    bytes[at] = b'S';
    let forged = elsewhere.file("forged.export", &bytes)?;
    for extra in [&[][..], &["--components", &s(&dir)][..]] {
        let run = replay(&forged, extra)?;
        run.expect(8, "replay of an export with one byte changed")?;
        ensure!(
            !run.stdout.contains("divergent") && !run.stderr.contains("diverged"),
            "a verification failure was reported as a replay: {} {}",
            excerpt(&run.stdout),
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Verification of exports.

fn verify_export_alterations(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for text in ["one", "two", "six"] {
        call(&host, "echo", json!({ "text": text }), 0)?;
    }
    let key = key_text(&host)?;
    let file = export(&host, "honest.export", &[])?;
    let honest = parse_export(&file)?;
    let sizes = honest.sizes();
    let n = honest.entries.len() as u64;
    ensure!(
        sizes.len() >= 3 && sizes.last() == Some(&n) && sizes.windows(2).all(|w| w[0] < w[1]),
        "the export's checkpoints must grow to its {n} entries, one per batch: {sizes:?}"
    );
    let elsewhere = target.host()?;
    let run = verify_file(&elsewhere, &file, &key)?;
    run.expect(0, "log verify of the honest export")?;
    // An entry changed (one byte of `two`, still decodable): the first checkpoint covering it,
    // with its tree size and the range from the checkpoint before.
    let at_two = honest
        .entries
        .iter()
        .position(|e| find(e, b"two").is_some())
        .ok_or_else(|| failed("no entry of the export holds `two`"))?;
    let c = sizes
        .iter()
        .position(|s| *s > at_two as u64)
        .ok_or_else(|| failed("no checkpoint covers the changed entry"))?;
    let from = if c == 0 { 0 } else { sizes[c - 1] };
    let mut changed = honest.clone();
    let entry = &mut changed.entries[at_two];
    let i = find(entry, b"two").unwrap_or(0);
    entry[i] = b'T';
    let check = |what: &str, export: &Export, needles: &[String]| -> Result<(), Failure> {
        let file = host.file("altered.export", &export.write())?;
        let run = verify_file(&elsewhere, &file, &key)?;
        run.expect(8, &format!("log verify of an export with {what}"))?;
        ensure!(
            run.stderr.contains("ledger verification failed")
                && needles.iter().all(|n| run.stderr.contains(n.as_str())),
            "log verify of an export with {what} must fail saying {needles:?}: {}",
            excerpt(&run.stderr)
        );
        Ok(())
    };
    let size = sizes[c];
    check(
        "an entry changed",
        &changed,
        &[format!(
            "checkpoint {c} (tree size {size}) does not match the entries: an entry in {from}..{size}"
        )],
    )?;
    // Deleted and swapped in the middle: the checkpoint covering them no longer matches.
    let mut deleted = honest.clone();
    deleted.entries.remove(at_two);
    check(
        "an entry deleted",
        &deleted,
        &[format!("checkpoint {c} (tree size {size}) does not match")],
    )?;
    let mut swapped = honest.clone();
    swapped.entries.swap(at_two, at_two + 1);
    check(
        "two entries swapped",
        &swapped,
        &[format!("checkpoint {c} (tree size {size}) does not match")],
    )?;
    // Cut off: the last entries gone, the last checkpoint claims more than the log holds.
    let last = sizes.len() - 1;
    let mut cut = honest.clone();
    cut.entries.truncate(n as usize - 2);
    check(
        "its last two entries cut off",
        &cut,
        &[format!(
            "entries missing after checkpoint {last}: it covers {n} entries, the log has {}",
            n - 2
        )],
    )?;
    // Entries after the last checkpoint: covered by none.
    let mut uncovered = honest.clone();
    uncovered.checkpoints.pop();
    check(
        "its last checkpoint removed",
        &uncovered,
        &[format!(
            "entries {}..{n} are covered by no checkpoint",
            sizes[last - 1]
        )],
    )?;
    // Checkpoints reordered.
    let mut reordered = honest.clone();
    reordered.checkpoints.swap(last - 1, last);
    check(
        "its last two checkpoints reordered",
        &reordered,
        &[format!(
            "checkpoint {last} (tree size {}) is older than checkpoint {}",
            sizes[last - 1],
            last - 1
        )],
    )?;
    // A checkpoint of another origin, signed by the same key: a second host with this host's
    // key file and another `ledger.origin`.
    let other = target.host()?;
    other.policy(OPEN)?;
    let keys = other.data.path().join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| failed(e.to_string()))?;
    write(
        &keys.join("ledger-signing.key"),
        &read(&host.data.path().join("keys/ledger-signing.key"))?,
    )?;
    write(
        &other.data.path().join("femtoclaw.toml"),
        b"[ledger]\norigin = \"elsewhere.example/ledger\"\n",
    )?;
    other.ok(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    ensure!(
        key_text(&other)? == key,
        "a data directory given this host's key file does not show the same key"
    );
    let theirs = parse_export(&export(&other, "other.export", &[])?)?;
    let foreign = theirs
        .checkpoints
        .first()
        .cloned()
        .ok_or_else(|| failed("the other host's export holds no checkpoint"))?;
    ensure!(
        String::from_utf8_lossy(&foreign).starts_with("elsewhere.example/ledger\n"),
        "the other host's checkpoint does not carry its configured origin: {}",
        String::from_utf8_lossy(&foreign)
    );
    let mut mixed = honest.clone();
    mixed.checkpoints[1] = foreign;
    check(
        "a checkpoint of another origin",
        &mixed,
        &[
            "checkpoint 1 has origin `elsewhere.example/ledger`".to_owned(),
            "expected `".to_owned(),
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Live ledgers: pins, head record, torn tails, damage.

/// Copies the ledger's segments aside.
fn backup(host: &Host, name: &str) -> Result<PathBuf, Failure> {
    let to = host.files.path().join(name);
    std::fs::create_dir_all(&to).map_err(|e| failed(e.to_string()))?;
    for (path, bytes) in snapshot(&host.data.path().join("ledger/segments")) {
        write(&to.join(path.file_name().unwrap_or_default()), &bytes)?;
    }
    Ok(to)
}

/// Puts back the segments of a backup (the derived index dropped: it is rebuilt).
fn restore(host: &Host, from: &Path) -> Result<(), Failure> {
    let segments = host.data.path().join("ledger/segments");
    let _ = std::fs::remove_dir_all(&segments);
    let _ = std::fs::remove_dir_all(host.data.path().join("ledger/index"));
    std::fs::create_dir_all(&segments).map_err(|e| failed(e.to_string()))?;
    for (path, bytes) in snapshot(from) {
        write(&segments.join(path.file_name().unwrap_or_default()), &bytes)?;
    }
    Ok(())
}

fn live_ledger_pins_tails_and_damage(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let old = backup(&host, "old")?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let count = host.entries()?.len();
    let pinned = host.ok(&["log", "checkpoint"])?;
    let pinned_file = host.file("pinned.checkpoint", pinned.as_bytes())?;
    let head = host.data.path().join("latest-checkpoint");
    let honest = read(&segment(&host))?;
    let whole = snapshot(host.data.path());

    // A torn tail: `log verify` reports it, verifies what is committed and writes nothing.
    let tail = b"torn-tail-bytes!".to_vec();
    write(&segment(&host), &[honest.clone(), tail.clone()].concat())?;
    let before = snapshot(host.data.path());
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify of a ledger with a torn tail")?;
    let said = format!("{}{}", run.stdout, run.stderr);
    ensure!(
        said.contains(&format!("{} bytes never acknowledged", tail.len())),
        "log verify must report the torn tail of {} bytes as never acknowledged: {}",
        tail.len(),
        excerpt(&said)
    );
    ensure!(
        run.stdout.contains(&format!("ok: {count} entries")),
        "log verify must still verify the {count} committed entries: {}",
        excerpt(&run.stdout)
    );
    ensure!(
        snapshot(host.data.path()) == before,
        "log verify wrote to the data directory of a ledger with a torn tail"
    );
    // The next open cuts it, reports it and keeps every committed entry.
    let run = host.invoke("echo", &json!({ "text": "after" }), &[])?;
    run.expect(0, "the call after a torn tail")?;
    let logged = plain_text(&run.stderr);
    ensure!(
        logged.contains(&format!("bytes={}", tail.len())),
        "opening a ledger with a torn tail must report the {} bytes it cut: {}",
        tail.len(),
        excerpt(&logged)
    );
    let now = read(&segment(&host))?;
    ensure!(
        now.starts_with(&honest) && find(&now, &tail).is_none(),
        "the open did not cut the torn tail, or changed what was committed"
    );
    ensure!(
        host.entries()?.len() == count + 3,
        "after the cut and one call the ledger does not hold its {count} entries and 3 more"
    );
    // Back to before the cut (the head record too).
    for (path, bytes) in &whole {
        write(path, bytes)?;
    }
    let _ = std::fs::remove_dir_all(host.data.path().join("ledger/index"));
    host.run(&["log", "verify"])?
        .expect(0, "log verify of the restored ledger")?;

    // Damage before the last commit: refused as corruption, nothing cut.
    let mut damaged = honest.clone();
    let at = find(&damaged, b"one").ok_or_else(|| failed("the segment does not hold `one`"))?;
    damaged[at] = b'O';
    write(&segment(&host), &damaged)?;
    let run = host.invoke("echo", &json!({ "text": "three" }), &[])?;
    ensure!(
        run.code != 0 && run.stderr.contains("corrupt"),
        "a call on a ledger damaged before its last commit must be refused as corruption: exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    ensure!(
        read(&segment(&host))? == damaged,
        "opening a ledger damaged before its last commit changed the segment"
    );
    write(&segment(&host), &honest)?;
    let _ = std::fs::remove_dir_all(host.data.path().join("ledger/index"));

    // Behind the head record: `log verify` fails, the open is refused with exit 8, unchanged.
    restore(&host, &old)?;
    let run = host.run(&["log", "verify"])?;
    run.expect(8, "log verify of a ledger behind its head record")?;
    ensure!(
        run.stderr.contains("the log went backwards"),
        "log verify of a ledger behind its head record must say `the log went backwards`: {}",
        excerpt(&run.stderr)
    );
    let segments = host.data.path().join("ledger/segments");
    let before = snapshot(&segments);
    let run = host.invoke("echo", &json!({ "text": "three" }), &[])?;
    run.expect(8, "a call on a ledger behind its head record")?;
    ensure!(
        snapshot(&segments) == before,
        "the refused open of a ledger behind its head record appended to it"
    );
    // Without the head record, a pinned later checkpoint: the log went backwards.
    let recorded_head = read(&head)?;
    std::fs::remove_file(&head).map_err(|e| failed(e.to_string()))?;
    let pin = s(&pinned_file);
    let run = host.run(&["log", "verify", "--checkpoint", &pin])?;
    run.expect(8, "log verify of a ledger behind a pinned checkpoint")?;
    ensure!(
        run.stderr.contains("the log went backwards"),
        "log verify behind a pinned checkpoint must say `the log went backwards`: {}",
        excerpt(&run.stderr)
    );
    // A fork: another history to the same size as the pinned checkpoint.
    call(&host, "echo", json!({ "text": "fork" }), 0)?;
    let run = host.run(&["log", "verify", "--checkpoint", &pin])?;
    run.expect(8, "log verify of a fork of a pinned checkpoint")?;
    ensure!(
        run.stderr.contains("not consistent with pinned checkpoint"),
        "log verify of a fork must say `not consistent with pinned checkpoint`: {}",
        excerpt(&run.stderr)
    );
    // The head record of the other history: not the ledger it names; verify and open refuse.
    write(&head, &recorded_head)?;
    let run = host.run(&["log", "verify"])?;
    run.expect(
        8,
        "log verify of a ledger that is not the one its head record names",
    )?;
    let before = snapshot(&segments);
    let run = host.invoke("echo", &json!({ "text": "more" }), &[])?;
    run.expect(
        8,
        "a call on a ledger that is not the one its head record names",
    )?;
    ensure!(
        snapshot(&segments) == before,
        "the refused open of another ledger appended to it"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Invocations a killed server left without an end.

/// How often `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// The entries (`log show --json`) of invocation `n`, in order.
fn of_invocation(entries: &[Json], n: u64) -> Vec<&Json> {
    entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["invocation"] == json!(n))
        .collect()
}

/// The tree sizes of the checkpoints of an export of `host`.
fn checkpoint_sizes(host: &Host, name: &str) -> Result<Vec<u64>, Failure> {
    Ok(parse_export(&export(host, name, &[])?)?.sizes())
}

fn interrupted_invocations_ended_on_open(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case kills a server it started itself".into(),
        ));
    }
    // The capability's /data holds two FIFOs: opening one for writing blocks until a reader
    // comes, after the intent was written ahead.
    let host = host_with_fifos(target, &["alpha", "beta"])?;
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let result = (|| {
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
            .ok_or_else(|| {
                failed(format!(
                    "serve printed {:?}, not `listening on URL`",
                    line.trim()
                ))
            })?;
        let post = |body: Json| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                crate::target::Server::client()
                    .post(format!("{url}/v1/invoke"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .map(|r| r.status().as_u16())
            })
        };
        let write_to = |name: &str| {
            json!({
                "capability": "files",
                "function": "write-file",
                "args": { "path": format!("/data/{name}"), "text": "hi" },
            })
        };
        let written_ahead = |count: usize| -> Result<(), Failure> {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if occurrences(&read(&segment(&host)).unwrap_or_default(), b"open-at") >= count {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(failed(format!(
                "the effectful open of call {count} was not written ahead within 15 s"
            )))
        };
        let alpha = post(write_to("alpha"));
        written_ahead(1)?;
        let greet = post(json!({"capability":"hello","function":"greet","args":{"name":"Ada"}}))
            .join()
            .map_err(|_| failed("the greeting's thread panicked"))?;
        ensure!(
            matches!(greet, Ok(200)),
            "a greeting while another invocation waits: {greet:?}, not HTTP 200"
        );
        let beta = post(write_to("beta"));
        written_ahead(2)?;
        std::thread::sleep(Duration::from_millis(300));
        Ok((alpha, beta))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let (alpha, beta) = result?;
    let _ = alpha.join();
    let _ = beta.join();

    // The next open ends both, naming exactly them, in one batch before anything else.
    let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    run.expect(0, "the first call after the server was killed")?;
    let logged = plain_text(&run.stderr);
    ensure!(
        logged.contains("interrupted") && logged.contains("[0, 2]"),
        "opening must name exactly the invocations that never ended, [0, 2] (invocation 1 ended between them): {}",
        excerpt(&logged)
    );
    let entries = host.entries()?;
    let sizes = checkpoint_sizes(&host, "after.export")?;
    let mut batch = Vec::new();
    for n in [0u64, 2] {
        let own = of_invocation(&entries, n);
        let traps: Vec<&&Json> = own.iter().filter(|e| e["type"] == "trap").collect();
        ensure!(
            traps.len() == 1
                && traps[0]["kind"] == "interrupted"
                && traps[0]["message"].as_str().is_some_and(
                    |m| m.contains(&format!("host stopped before invocation {n} ended"))
                ),
            "invocation {n} must be ended by one trap of kind `interrupted` saying `host stopped before invocation {n} ended`: {traps:?}"
        );
        let last = own.last().copied().unwrap_or(&Json::Null);
        ensure!(
            last["type"] == "invocation-end"
                && last["result"].is_null()
                && own.iter().filter(|e| e["type"] == "invocation-end").count() == 1,
            "invocation {n} must end with one invocation-end whose result is null: {last}"
        );
        for e in [traps[0], &last] {
            let at = entries
                .iter()
                .position(|x| &x["entry"] == *e)
                .ok_or_else(|| failed("an entry of log show is not in log show"))?;
            batch.push(at as u64);
        }
    }
    let hello = of_invocation(&entries, 1);
    ensure!(
        hello.last().is_some_and(|e| e["type"] == "invocation-end")
            && hello.iter().all(|e| e["type"] != "trap"),
        "invocation 1, which ended, was touched: {hello:?}"
    );
    batch.sort_unstable();
    let first = batch[0];
    ensure!(
        batch == [first, first + 1, first + 2, first + 3],
        "the two interruptions' traps and ends are not one run of entries: at {batch:?}"
    );
    ensure!(
        sizes.contains(&first) && sizes.contains(&(first + 4)),
        "the traps and ends of the interrupted invocations (entries {first}..{}) are not one signed batch: checkpoints at {sizes:?}",
        first + 4
    );
    let new: Vec<u64> = entries
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .filter_map(|e| e["entry"]["invocation"].as_u64())
        .collect();
    ensure!(
        new == [0, 1, 2, 3],
        "the invocations started are {new:?}, not 0, 1, 2 and the new 3"
    );
    ensure!(
        entries[..first as usize]
            .iter()
            .all(|e| e["entry"]["invocation"] != json!(3))
            && entries[first as usize + 4..]
                .iter()
                .all(|e| e["entry"]["invocation"] == json!(3)
                    || e["entry"]["type"] == "policy-change"),
        "the interruptions were not recorded before anything else was appended"
    );
    // Opening again adds nothing for them.
    let count = entries.len();
    let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    run.expect(0, "the second call after the server was killed")?;
    ensure!(
        !plain_text(&run.stderr).contains("interrupted"),
        "the second open reported interrupted invocations again: {}",
        excerpt(&run.stderr)
    );
    let again = host.entries()?;
    ensure!(
        again.len() > count
            && again[count..]
                .iter()
                .all(|e| e["entry"]["invocation"] == json!(4)),
        "opening the ledger again appended more than the new invocation's entries: {:?}",
        super::kinds(&again[count..])
    );
    host.run(&["log", "verify"])?
        .expect(0, "log verify after the interruptions")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Configuration.

/// A small deterministic generator, so that a failure names an input that can be rerun.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn config_loading_never_panics(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let path = host.data.path().join("femtoclaw.toml");
    let deep_arrays = format!(
        "[limits]\nmax_fuel = {}{}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let deep_tables = format!(
        "[limits]\nmax_fuel = {}1{}\n",
        "{a = ".repeat(5_000),
        "}".repeat(5_000)
    );
    let mut texts: Vec<(String, Vec<u8>)> = vec![
        ("arrays nested 20000 deep".into(), deep_arrays.into_bytes()),
        (
            "inline tables nested 5000 deep".into(),
            deep_tables.into_bytes(),
        ),
        (
            "an integer past u64".into(),
            b"[limits]\nmax_fuel = 99999999999999999999999999\n".to_vec(),
        ),
        (
            "a negative integer".into(),
            b"[limits]\nmax_fuel = -1\n".to_vec(),
        ),
        (
            "a float".into(),
            b"[limits]\ndeadline_ms = 1e308\n".to_vec(),
        ),
        (
            "a date".into(),
            b"[limits]\ndeadline_ms = 1979-05-27T07:32:00Z\n".to_vec(),
        ),
        ("a NUL".into(), b"[limits]\nmax_fuel = \"\0\"\n".to_vec()),
        (
            "a byte-order mark".into(),
            b"\xef\xbb\xbf[limits]\nmax_fuel = 5\n".to_vec(),
        ),
        (
            "an unterminated string".into(),
            b"[ledger]\norigin = \"abc\n".to_vec(),
        ),
        ("an unterminated section".into(), b"[limits\n".to_vec()),
        (
            "a duplicate section".into(),
            b"[limits]\n[limits]\n".to_vec(),
        ),
        (
            "a dotted key into an integer".into(),
            b"[limits]\nmax_fuel = 5\nmax_fuel.x = 1\n".to_vec(),
        ),
        (
            "an array of tables for a section".into(),
            b"[[limits]]\nmax_fuel = 5\n".to_vec(),
        ),
        (
            "a section that is a string".into(),
            b"limits = \"x\"\n".to_vec(),
        ),
        (
            "a huge string".into(),
            format!("[ledger]\norigin = \"{}\"\n", "x".repeat(1 << 20)).into_bytes(),
        ),
        (
            "a control character in the origin".into(),
            b"[ledger]\norigin = \"a\\u0007b\"\n".to_vec(),
        ),
        (
            "a key of 100000 characters".into(),
            format!("[limits]\n{} = 1\n", "k".repeat(100_000)).into_bytes(),
        ),
        (
            "lone carriage returns".into(),
            b"[limits]\rmax_fuel = 5\r".to_vec(),
        ),
        (
            "a quotas rule list of nonsense".into(),
            b"[quotas]\nrules = [1, \"x\", {}, [[]]]\n".to_vec(),
        ),
    ];
    let mut random = Lcg(0x5eed);
    let alphabet = b"[]{}=\"'.,#\n\\ aZ09_-+:tfe\t\x7f";
    for i in 0..12 {
        let len = 1 + (random.next() % 400) as usize;
        let text: Vec<u8> = (0..len)
            .map(|_| alphabet[(random.next() as usize) % alphabet.len()])
            .collect();
        texts.push((format!("random text {i} (seed 0x5eed)"), text));
    }
    let panicked = |run: &Run| run.code == 101 || run.stderr.contains("panicked");
    // Inputs no conforming loader accepts, so that a target which loads everything fails.
    const REFUSED: [&str; 6] = [
        "an integer past u64",
        "a negative integer",
        "an unterminated string",
        "an unterminated section",
        "a duplicate section",
        "a section that is a string",
    ];
    // And a file it must load, shown with its value.
    write(&path, b"[limits]\nmax_fuel = 5\n")?;
    let shown = host.ok(&["config", "show"])?;
    ensure!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("max_fuel = 5")),
        "config show of a file setting limits.max_fuel = 5 does not show it: {}",
        excerpt(&shown)
    );
    for (what, text) in &texts {
        write(&path, text)?;
        let run = host.run(&["config", "show"])?;
        ensure!(
            run.code != 0 || !REFUSED.contains(&what.as_str()),
            "config show of a file with {what} must be refused, yet it exited 0"
        );
        ensure!(
            !panicked(&run),
            "config show of a file with {what} panicked: exit {}, {}",
            run.code,
            excerpt(&run.stderr)
        );
        if run.code != 0 {
            let named_line = run.stderr.lines().any(|l| {
                l.contains("femtoclaw.toml")
                    && l.split("line ")
                        .skip(1)
                        .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit() && c != '0'))
            });
            ensure!(
                run.code == 2 && named_line,
                "a file with {what} must be loaded or refused with exit 2 naming the file and a line (from 1): exit {}, {}",
                run.code,
                excerpt(&run.stderr)
            );
        }
    }
    let _ = std::fs::remove_file(&path);
    // Variables: each value loaded or refused naming the variable.
    let deep = "[".repeat(20_000);
    let long = "9".repeat(100_000);
    let values: [&str; 9] = [
        "",
        " ",
        "-1",
        "1e9",
        &long,
        &deep,
        "{",
        "\u{7}",
        "[{ capability = 1 }]",
    ];
    for var in [
        "FEMTOCLAW_LIMITS_MAX_FUEL",
        "FEMTOCLAW_SERVER_LISTEN",
        "FEMTOCLAW_QUOTAS_RULES",
        "FEMTOCLAW_LEDGER_ORIGIN",
        "FEMTOCLAW_MCP_TOOLS_ALLOW",
    ] {
        for value in values {
            let mut command = host.command(&["config", "show"]);
            command.env(var, value);
            let out = command.output().map_err(|e| failed(e.to_string()))?;
            let run = Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::new(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            let shown: String = value.chars().take(20).collect();
            ensure!(
                !panicked(&run),
                "config show with {var}={shown:?}… panicked: exit {}, {}",
                run.code,
                excerpt(&run.stderr)
            );
            ensure!(
                run.code != 0 || !(var == "FEMTOCLAW_LIMITS_MAX_FUEL" && value == "-1"),
                "config show with {var}=-1 must be refused, yet it exited 0"
            );
            ensure!(
                run.code == 0 || (run.code == 2 && run.stderr.contains(var)),
                "config show with {var}={shown:?}… must load or be refused with exit 2 naming the variable: exit {}, {}",
                run.code,
                excerpt(&run.stderr)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Key-value state.

/// `invoke memory FUNCTION --args ARGS --json`: the result.
fn memory(host: &Host, function: &str, args: Json) -> Result<Json, Failure> {
    let args = args.to_string();
    let run = host.run(&["invoke", "memory", function, "--args", &args, "--json"])?;
    run.expect(0, &format!("invoke memory {function} {args}"))?;
    Ok(run.json()?["result"].clone())
}

fn kv_set_list_delete(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for (key, text) in [("n/b", "2"), ("n/a", "1"), ("m/x", "other"), ("n/c", "3")] {
        memory(&host, "put", json!({ "key": key, "text": text }))?;
    }
    let got = memory(&host, "get", json!({ "key": "n/a" }))?;
    ensure!(
        got == json!({ "ok": "1" }),
        "a later invocation must read what an earlier one set: get n/a gave {got}"
    );
    let listed = memory(&host, "list", json!({ "prefix": "n/", "limit": 10 }))?;
    ensure!(
        listed == json!({ "ok": ["n/a", "n/b", "n/c"] }),
        "list of prefix n/ must give n/a, n/b, n/c in key order: {listed}"
    );
    let deleted = memory(&host, "delete", json!({ "key": "n/b" }))?;
    let again = memory(&host, "delete", json!({ "key": "n/b" }))?;
    ensure!(
        deleted == json!({ "ok": true }) && again == json!({ "ok": false }),
        "delete must report whether the key existed (true, then false): {deleted}, {again}"
    );
    let gone = memory(&host, "get", json!({ "key": "n/b" }))?;
    let listed = memory(&host, "list", json!({ "prefix": "n/", "limit": 10 }))?;
    ensure!(
        gone == json!({ "ok": null }) && listed == json!({ "ok": ["n/a", "n/c"] }),
        "a deleted key must be gone from get and list: {gone}, {listed}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The approval audit, over exports re-signed with the host's own key.

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 6962's Merkle tree hash of the entries.
pub(super) fn merkle_root(leaves: &[Vec<u8>]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(&[]),
        1 => sha256(&[&[0x00], &leaves[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let (l, r) = (merkle_root(&leaves[..k]), merkle_root(&leaves[k..]));
            sha256(&[&[0x01], &l, &r])
        }
    }
}

/// The signer of a data directory: its key file `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>`.
pub(super) struct Signer {
    pub(super) name: String,
    pub(super) id: [u8; 4],
    pub(super) key: ed25519_dalek::SigningKey,
}

impl Signer {
    pub(super) fn of(host: &Host) -> Result<Signer, Failure> {
        use base64::Engine as _;
        let path = host.data.path().join("keys/ledger-signing.key");
        let text =
            String::from_utf8(read(&path)?).map_err(|_| failed("the key file is not UTF-8"))?;
        let bad = || failed("the key file is not PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>");
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(_), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| bad())?;
        let [0x01, seed @ ..] = raw.as_slice() else {
            return Err(bad());
        };
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad())?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let digest = sha256(&[
            name.as_bytes(),
            &[0x0a, 0x01],
            key.verifying_key().as_bytes(),
        ]);
        Ok(Signer {
            name: name.to_owned(),
            id: [digest[0], digest[1], digest[2], digest[3]],
            key,
        })
    }

    /// `model` (a checkpoint note of the ledger) for `size` entries with `root`, signed.
    fn checkpoint(&self, model: &[u8], size: usize, root: &[u8; 32]) -> Vec<u8> {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = String::from_utf8_lossy(model);
        let body_end = text.find("\n\n").map_or(text.len(), |i| i + 1);
        let mut lines = text[..body_end].lines();
        let origin = lines.next().unwrap_or("");
        let (_, _) = (lines.next(), lines.next());
        let mut body = format!("{origin}\n{size}\n{}\n", b64.encode(root));
        for extra in lines {
            body.push_str(extra);
            body.push('\n');
        }
        let signature = self.key.sign(body.as_bytes());
        let signed = [&self.id[..], &signature.to_bytes()[..]].concat();
        format!("{body}\n\u{2014} {} {}\n", self.name, b64.encode(signed)).into_bytes()
    }

    /// `entries` with one checkpoint over all of them, signed.
    pub(super) fn export(&self, honest: &Export, entries: Vec<Vec<u8>>) -> Export {
        let root = merkle_root(&entries);
        let model = honest.checkpoints.last().cloned().unwrap_or_default();
        Export {
            checkpoints: vec![self.checkpoint(&model, entries.len(), &root)],
            entries,
            components: honest.components.clone(),
            blobs: honest.blobs.clone(),
        }
    }
}

/// The id in `… approval N …` of a pending call's message.
fn pending_id(run: &Run) -> Option<u64> {
    run.stderr
        .split("approval ")
        .skip(1)
        .find_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
}

/// Anything, but every invocation only once a person approves the call.
const APPROVE: &str = "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"invoke\" };\n\
    @approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n";

fn approval_audit(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, APPROVE)?;
    let add = json!({ "a": 20, "b": 22 });
    let asked = call(&host, "add", add.clone(), 13)?;
    let granted = pending_id(&asked)
        .ok_or_else(|| failed(format!("no approval id: {}", excerpt(&asked.stderr))))?;
    let other = call(&host, "add", json!({ "a": 1, "b": 1 }), 13)?;
    let denied = pending_id(&other).ok_or_else(|| failed("no approval id for the other call"))?;
    host.ok(&[
        "approval",
        "grant",
        &granted.to_string(),
        "--reason",
        "checked",
    ])?;
    host.ok(&["approval", "deny", &denied.to_string(), "--reason", "no"])?;
    call(&host, "add", add, 0)?;
    let key = key_text(&host)?;
    let honest = parse_export(&export(&host, "honest.export", &[])?)?;
    let shown = host.entries()?;
    ensure!(
        shown.len() == honest.entries.len(),
        "log show lists {} entries, the export holds {}",
        shown.len(),
        honest.entries.len()
    );
    let at = |what: &str, f: &dyn Fn(&Json) -> bool| {
        shown
            .iter()
            .position(|e| f(&e["entry"]))
            .ok_or_else(|| failed(format!("the ledger holds no {what}")))
    };
    let ask = at("request of the granted approval", &|e| {
        e["type"] == "approval" && e["action"] == "request" && e["request"] == json!(granted)
    })?;
    let grant = at("grant", &|e| {
        e["type"] == "approval" && e["action"] == "grant"
    })?;
    let spend = at("start that spends the grant", &|e| {
        e["type"] == "invocation-start" && e["approval"] == json!(granted)
    })?;
    let deny = at("denial", &|e| {
        e["type"] == "approval" && e["action"] == "deny"
    })?;
    ensure!(
        ask < grant && deny < spend && grant < spend,
        "the ledger does not record request, grant and denial before the spending start: {ask}, {grant}, {deny}, {spend}"
    );
    let signer = Signer::of(&host)?;
    let elsewhere = target.host()?;
    let verify = |entries: Vec<Vec<u8>>| -> Result<Run, Failure> {
        let file = elsewhere.file("audited.export", &signer.export(&honest, entries).write())?;
        verify_file(&elsewhere, &file, &key)
    };
    // The suite's re-signing is sound: the honest entries under one new checkpoint verify.
    ensure!(
        merkle_root(&honest.entries).to_vec() == {
            use base64::Engine as _;
            let note = String::from_utf8_lossy(honest.checkpoints.last().map_or(&[][..], |c| c));
            base64::engine::general_purpose::STANDARD
                .decode(note.lines().nth(2).unwrap_or(""))
                .unwrap_or_default()
        },
        "the RFC 6962 root of the export's entries is not its last checkpoint's root"
    );
    verify(honest.entries.clone())?.expect(
        0,
        "log verify of the honest entries re-signed by the host's key",
    )?;
    let e = &honest.entries;
    let with = |edit: &dyn Fn(&mut Vec<Vec<u8>>)| {
        let mut v = e.clone();
        edit(&mut v);
        v
    };
    // The start ends with its approval: Some (0x01) and the id, little-endian.
    let mut spent_denied = e[spend].clone();
    let n = spent_denied.len();
    ensure!(
        n > 9 && spent_denied[n - 9] == 0x01 && spent_denied[n - 8..] == granted.to_le_bytes(),
        "the spending start's bytes do not end with its approval {granted}"
    );
    spent_denied[n - 8..].copy_from_slice(&denied.to_le_bytes());
    // Its argument a = 20 (s64: 0x05 and 20 little-endian) changed to 21: another call.
    let mut other_call = e[spend].clone();
    let a = find(&other_call, &[0x05, 20, 0, 0, 0, 0, 0, 0, 0])
        .ok_or_else(|| failed("the spending start does not hold a = 20 as s64"))?;
    other_call[a + 1] = 21;
    let cases: Vec<(&str, Vec<Vec<u8>>, usize, String)> = vec![
        (
            "an approval asked for twice",
            with(&|v| v.insert(ask + 1, e[ask].clone())),
            ask + 1,
            format!("approval {granted} is asked for twice"),
        ),
        (
            "an approval decided twice",
            with(&|v| v.insert(grant + 1, e[grant].clone())),
            grant + 1,
            format!("approval {granted} is decided twice"),
        ),
        (
            "a decision of an approval never asked for",
            with(&|v| {
                v.remove(ask);
            }),
            grant - 1,
            format!("approval {granted} is decided (grant) but was never asked for"),
        ),
        (
            "an approval spent that was never asked for",
            with(&|v| {
                v.remove(grant);
                v.remove(ask);
            }),
            spend - 2,
            format!("spends approval {granted}, which was never asked for"),
        ),
        (
            "an approval spent that was never granted",
            with(&|v| {
                v.remove(grant);
            }),
            spend - 1,
            format!("spends approval {granted}, which was not granted"),
        ),
        (
            "an approval spent that was denied",
            with(&|v| v[spend] = spent_denied.clone()),
            spend,
            format!("spends approval {denied}, which was not granted"),
        ),
        (
            "an approval spent twice",
            with(&|v| v.insert(spend + 1, e[spend].clone())),
            spend + 1,
            format!("spends approval {granted}, already spent"),
        ),
        (
            "an approval spent for another call",
            with(&|v| v[spend] = other_call.clone()),
            spend,
            format!("spends approval {granted}, granted for another call"),
        ),
    ];
    // The grant's fingerprint covers SHA-256 of exactly the start's `args` bytes: a u32 count,
    // then each name and value (`a`, `b`: s64).
    let start = &shown[spend]["entry"];
    let (args, function) = start_args(
        &e[spend],
        !start["trace_id"].is_null(),
        !start["approval"].is_null(),
    )
    .map_err(failed)?;
    let mut expected = 2u32.to_le_bytes().to_vec();
    for (name, value) in [("a", 20i64), ("b", 22)] {
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(name.as_bytes());
        expected.push(0x05);
        expected.extend_from_slice(&value.to_le_bytes());
    }
    ensure!(
        function == "add" && args == expected.as_slice(),
        "the spending start's args field is not count 2, a = 20, b = 22 as s64: {args:02x?}"
    );
    let mut f = b"femtoclaw-approval-v1".to_vec();
    for name in ["principal", "capability", "version", "function"] {
        let v = start[name].as_str().unwrap_or("");
        f.extend_from_slice(&(v.len() as u32).to_le_bytes());
        f.extend_from_slice(v.as_bytes());
    }
    f.extend_from_slice(&sha256(&[args]));
    let fingerprint: String = sha256(&[&f]).iter().map(|b| format!("{b:02x}")).collect();
    ensure!(
        shown[grant]["entry"]["fingerprint"] == json!(fingerprint),
        "the grant's fingerprint {} is not SHA-256 over the call with SHA-256 of the start's args bytes, {fingerprint}",
        shown[grant]["entry"]["fingerprint"]
    );
    for (what, entries, index, rule) in cases {
        let run = verify(entries)?;
        run.expect(8, &format!("log verify of a signed ledger with {what}"))?;
        let named = format!("entry {index}: ");
        ensure!(
            run.stderr.contains(&named) && run.stderr.contains(&rule),
            "log verify of a signed ledger with {what} must fail at {named:?} saying {rule:?}: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A host call that returns after the deadline.

/// A fresh host under the open policy whose capabilities' `/data` is `<data dir>/shared`,
/// holding the FIFOs `names`.
fn host_with_fifos(target: &Target, names: &[&str]) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(e.to_string()))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    for name in names {
        let made = std::process::Command::new("mkfifo")
            .arg(shared.join(name))
            .status()
            .map_err(|e| Failure::NotApplicable(format!("mkfifo is not available: {e}")))?;
        if !made.success() {
            return Err(Failure::NotApplicable("mkfifo failed".into()));
        }
    }
    Ok(host)
}

fn call_returning_after_deadline(target: &Target) -> Result<(), Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let host = host_with_fifos(target, &["slow"])?;
    let fifo = host.data.path().join("shared/slow");
    // Opening the FIFO to read blocks until a writer comes: the call returns when the case
    // writes, 3 s after the start, past the 1 s deadline.
    let mut reader = host
        .command(&[
            "invoke",
            "files",
            "read-file",
            "--args",
            r#"{"path":"/data/slow"}"#,
            "--deadline-ms",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start the call: {e}")))?;
    // Once the host waits in the FIFO's open (Linux shows it as `wait_for_partner`), 2.5 s more
    // take the call past its deadline whatever the load; without that view, 6 s.
    let pid = reader.id();
    let waiting = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.flatten().any(|t| {
                    std::fs::read_to_string(t.path().join("wchan"))
                        .is_ok_and(|w| w.trim() == "wait_for_partner")
                })
            })
            .unwrap_or(false)
    };
    let started = Instant::now();
    while !waiting() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(if waiting() {
        Duration::from_millis(2500)
    } else {
        Duration::from_secs(6)
    });
    // Non-blocking, so that the case never waits for a reader that is not there.
    let started = Instant::now();
    let mut wrote = false;
    while started.elapsed() < Duration::from_secs(10) {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(&fifo)
        {
            Ok(mut f) => {
                let _ = f.write_all(b"late");
                wrote = true;
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = reader.try_wait().map_err(|e| failed(e.to_string()))? {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = reader.kill();
            let _ = reader.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(wrote, "the call never opened the FIFO for reading");
    let status = status.ok_or_else(|| failed("the call did not end within 30 s of its answer"))?;
    ensure!(
        status.code() == Some(11),
        "a call whose host call returned past the deadline must exit 11 (deadline): exit {:?}",
        status.code()
    );
    let entries = host.entries()?;
    let n = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64())
        .ok_or_else(|| failed("no invocation recorded"))?;
    let own = of_invocation(&entries, n);
    let open = own
        .iter()
        .rposition(|e| {
            e["type"] == "host-call"
                && e["function"]
                    .as_str()
                    .is_some_and(|f| f.contains("open-at"))
        })
        .ok_or_else(|| {
            failed(format!(
                "the late open-at is not recorded: {:?}",
                super::kinds(&entries)
            ))
        })?;
    let result = own[open]["result"].to_string();
    ensure!(
        result.contains("Ok") && !result.contains("Err"),
        "the late open-at must be recorded with what it returned (a descriptor): {result}"
    );
    let rest: Vec<&str> = own[open + 1..]
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    ensure!(
        rest == ["trap", "invocation-end"]
            && own[open + 1]["kind"] == "deadline"
            && own[open + 2]["result"].is_null(),
        "the late call must be followed by a trap of kind deadline and an invocation-end without result: {rest:?}, {} {}",
        own.get(open + 1).map_or(Json::Null, |e| (*e).clone()),
        own.get(open + 2).map_or(Json::Null, |e| (*e).clone())
    );
    Ok(())
}

/// The bytes of an encoded `invocation-start`'s `args` field (specification 23's field order),
/// and its function name.
fn start_args(raw: &[u8], trace: bool, approval: bool) -> Result<(&[u8], String), String> {
    let mut c = Cursor { bytes: raw, at: 0 };
    if c.take(2)? != [0x03, 0x01] {
        return Err("not an invocation-start of encoding version 3".into());
    }
    c.u64()?;
    let string = |c: &mut Cursor<'_>| -> Result<String, String> {
        let len = c.u32()? as usize;
        Ok(String::from_utf8_lossy(c.take(len)?).into_owned())
    };
    string(&mut c)?; // principal
    for _ in 0..c.u32()? {
        string(&mut c)?; // groups
    }
    string(&mut c)?; // capability
    string(&mut c)?; // version
    c.take(64)?; // component and manifest digests
    string(&mut c)?; // wit world
    c.take(32)?; // engine digest
    string(&mut c)?; // wasmtime version
    c.u64()?; // fuel budget
    if c.u8()? == 1 {
        c.take(32)?; // policy digest
    }
    let function = string(&mut c)?;
    let from = c.at;
    // The tail: the trace id and the approval, options (Some: 0x01 and 16 or 8 bytes).
    let tail = if trace { 17 } else { 1 } + if approval { 9 } else { 1 };
    let to = raw
        .len()
        .checked_sub(tail)
        .filter(|t| *t >= from)
        .ok_or("the start is shorter than its fields")?;
    Ok((&raw[from..to], function))
}

fn kv_store_opened_only_when_imported(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let store = host.data.path().join("kv");
    // Neither a capability without a key-value import nor a command that does not use the
    // store opens (creates) it.
    host.ok(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    host.ok(&[
        "invoke",
        "textstats",
        "digest",
        "--args",
        r#"{"text":"x","algorithm":"sha256"}"#,
    ])?;
    host.ok(&["log", "verify"])?;
    host.ok(&["log", "show", "--json"])?;
    ensure!(
        !store.exists(),
        "the key-value store was opened for invocations whose components import no key-value interface"
    );
    // A component that imports one: the store is there (so that its absence above means
    // something).
    memory(&host, "put", json!({ "key": "k", "text": "v" }))?;
    ensure!(
        store.is_dir(),
        "an invocation of a component importing wasi:keyvalue did not open the store at kv/"
    );
    Ok(())
}

fn written_ahead_then_final_batch(target: &Target) -> Result<(), Failure> {
    let host = host_with_fifos(target, &[])?;
    host.ok(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    let before = host.entries()?.len();
    host.ok(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/note.txt","text":"hi"}"#,
    ])?;
    let entries = host.entries()?;
    let sizes = checkpoint_sizes(&host, "batches.export")?;
    let own: Vec<&Json> = entries[before..].iter().map(|e| &e["entry"]).collect();
    let n = own.first().and_then(|e| e["invocation"].as_u64());
    let types: Vec<&str> = own.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure!(
        own.iter()
            .all(|e| e["invocation"].as_u64() == n && n.is_some()),
        "the invocation's entries are not all its own: {types:?}"
    );
    ensure!(
        types.first() == Some(&"invocation-start")
            && types.get(1) == Some(&"decision")
            && types.last() == Some(&"invocation-end")
            && types.iter().filter(|t| **t == "invocation-start").count() == 1
            && types.iter().filter(|t| **t == "invocation-end").count() == 1,
        "the sequence must open with one start and its invoke decision and close with one end: {types:?}"
    );
    // Host calls numbered from 0 without a gap or a repeat; one intent per effectful call.
    let seqs: Vec<u64> = own
        .iter()
        .filter(|e| e["type"] == "host-call")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    ensure!(
        !seqs.is_empty() && seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
        "the host calls' seqs are {seqs:?}, not 0, 1, … without a gap or a repeat"
    );
    let intents: Vec<usize> = (0..own.len())
        .filter(|i| own[*i]["type"] == "host-call-intent")
        .collect();
    ensure!(
        !intents.is_empty(),
        "write-file's effectful open was not written ahead: {types:?}"
    );
    for &i in &intents {
        let intent = own[i];
        let calls: Vec<usize> = (0..own.len())
            .filter(|j| own[*j]["type"] == "host-call" && own[*j]["seq"] == intent["seq"])
            .collect();
        ensure!(
            calls.len() == 1
                && calls[0] > i
                && own[calls[0]]["function"] == intent["function"]
                && own[calls[0]]["params"] == intent["params"],
            "the intent of call {} is not followed by exactly one host-call of the same call: {types:?}",
            intent["seq"]
        );
        ensure!(
            own[i - 1]["type"] == "decision" && own[i - 1]["allowed"] == json!(true),
            "the intent of call {} does not follow the decision that allowed it: {types:?}",
            intent["seq"]
        );
        // Written ahead: a batch (a checkpoint) ends with the intent; the final batch follows.
        let at = (before + i + 1) as u64;
        ensure!(
            sizes.contains(&at),
            "no batch ends with the intent of call {} (entry {}): checkpoints at {sizes:?}",
            intent["seq"],
            at - 1
        );
    }
    ensure!(
        sizes.last() == Some(&(entries.len() as u64)),
        "the final batch does not end the ledger: checkpoints at {sizes:?}, {} entries",
        entries.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Every trap kind, and replay of the interrupted ones.

/// One MCP JSON-RPC message over streamable HTTP at version 2025-11-25: status, session header.
fn mcp_post(
    url: &str,
    token: &str,
    session: Option<&str>,
    message: &Json,
) -> Result<(u16, String), Failure> {
    let mut request = crate::target::Server::client()
        .post(format!("{url}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(message.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request
        .send()
        .map_err(|e| failed(format!("/mcp: no answer: {e}")))?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok((response.status().as_u16(), session))
}

/// Waits up to `within` for `needle` to be in the ledger's first segment `count` times.
fn wait_in_segment(host: &Host, needle: &[u8], count: usize, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if occurrences(&read(&segment(host)).unwrap_or_default(), needle) >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The trap of the last invocation (`log show --json`).
fn last_trap(host: &Host) -> Result<Json, Failure> {
    let entries = host.entries()?;
    let n = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64());
    Ok(entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "trap" && e["invocation"].as_u64() == n)
        .cloned()
        .unwrap_or(Json::Null))
}

fn trap_kinds_and_interruptions_in_replay(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case kills a server it started itself".into(),
        ));
    }
    let host = host_with_fifos(target, &["pipe"])?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        b"[limits]\nmax_fuel = 1000000000000000\ndeadline_ms = 60000\n\n\
          [[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\n",
    )?;
    let wasm = host.file("endless.wasm", crate::GUEST)?;
    let manifest = host.file(
        "endless.toml",
        crate::GUEST_MANIFEST
            .replace("fuel = 50_000_000", "fuel = 1_000_000_000_000_000")
            .as_bytes(),
    )?;
    host.ok(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?;
    // fuel-exhausted, consuming the whole budget.
    host.invoke("spin", &json!({}), &["--fuel", "5000000"])?
        .expect(4, "spin on a budget of 5000000")?;
    let trap = last_trap(&host)?;
    ensure!(
        trap["kind"] == "fuel-exhausted" && trap["fuel_consumed"] == json!(5_000_000),
        "fuel exhaustion must be a trap of kind fuel-exhausted consuming the whole budget 5000000: {trap}"
    );
    // limit, naming the quota rule.
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.ok(&greet)?;
    host.run(&greet)?.expect(12, "a call over its quota")?;
    let trap = last_trap(&host)?;
    ensure!(
        trap["kind"] == "limit"
            && trap["message"]
                .as_str()
                .is_some_and(|m| m.contains("quotas.rules[0]")),
        "a quota refusal must be a trap of kind limit naming quotas.rules[0]: {trap}"
    );
    // deadline.
    host.invoke("spin", &json!({}), &["--deadline-ms", "500"])?
        .expect(11, "spin past a 500 ms deadline")?;
    let trap = last_trap(&host)?;
    ensure!(
        trap["kind"] == "deadline",
        "an invocation past its deadline must be a trap of kind deadline: {trap}"
    );
    // cancelled (over MCP), then interrupted (the server killed during an effect).
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let served = (|| {
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
            .ok_or_else(|| failed(format!("serve printed {:?}", line.trim())))?;
        let initialize = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
            }
        });
        let (status, session) = mcp_post(&url, &token, None, &initialize)?;
        ensure!(
            status == 200 && !session.is_empty(),
            "MCP initialize: HTTP {status}, session {session:?}"
        );
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        mcp_post(&url, &token, Some(&session), &initialized)?;
        let spin = {
            let (url, token, session) = (url.clone(), token.clone(), session.clone());
            std::thread::spawn(move || {
                let call = json!({
                    "jsonrpc": "2.0", "id": 41, "method": "tools/call",
                    "params": { "name": "conformance.spin", "arguments": {} }
                });
                mcp_post(&url, &token, Some(&session), &call)
            })
        };
        // Withdrawn until recorded as cancelled: a notification that comes before the server
        // runs the call is not for a call in flight, so it is sent again.
        let cancel = json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": 41, "reason": "conformance" }
        });
        let started = Instant::now();
        let mut cancelled = false;
        while !cancelled && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(500));
            mcp_post(&url, &token, Some(&session), &cancel)?;
            cancelled = wait_in_segment(&host, b"cancelled", 1, Duration::from_millis(500));
        }
        let _ = spin.join();
        ensure!(
            cancelled,
            "a withdrawn MCP call was not recorded as cancelled within 20 s"
        );
        let write = {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                crate::target::Server::client()
                    .post(format!("{url}/v1/invoke"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(
                        json!({
                            "capability": "files",
                            "function": "write-file",
                            "args": { "path": "/data/pipe", "text": "hi" },
                        })
                        .to_string(),
                    )
                    .send()
                    .map(|r| r.status().as_u16())
            })
        };
        ensure!(
            wait_in_segment(&host, b"open-at", 1, Duration::from_secs(15)),
            "the effectful open was not written ahead within 15 s"
        );
        std::thread::sleep(Duration::from_millis(300));
        Ok(write)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let write = served?;
    let _ = write.join();
    call(&host, "echo", json!({ "text": "after" }), 0)?;
    // A trap; refused by the invoke decision; refused at link; pending a person's approval.
    call(&host, "divide", json!({ "a": 1, "b": 0 }), 5)?;
    host.invoke(
        "echo",
        &json!({ "text": "x" }),
        &["--principal", "agent:bot"],
    )?
    .expect(7, "a call the policy does not permit")?;
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource) when { resource.baseline };\n",
    )?;
    call(&host, "echo", json!({ "text": "x" }), 7)?;
    host.policy(APPROVE)?;
    call(&host, "add", json!({ "a": 1, "b": 2 }), 13)?;
    let entries = host.entries()?;
    outcome_sequences(&entries)?;
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "trap")
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        kinds
            == [
                "fuel-exhausted",
                "limit",
                "deadline",
                "cancelled",
                "interrupted",
                "trap"
            ],
        "the traps recorded are {kinds:?}, not fuel-exhausted, limit, deadline, cancelled, interrupted, trap"
    );
    // Replay: the three interruptions reported interrupted, not re-executed (the cancelled spin
    // had a budget of 10^15), counted neither identical nor divergent.
    let key = key_text(&host)?;
    let file = export(&host, "all.export", &["--with-components"])?;
    let elsewhere = target.host()?;
    let run = elsewhere.run(&["replay", &s(&file), "--key", &key, "--json"])?;
    run.expect(0, "replay of the export")?;
    let report = run.json()?;
    let rows: Vec<(String, String)> = report["invocations"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|i| {
                    (
                        i["function"].as_str().unwrap_or("?").to_owned(),
                        i["status"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected = [
        "identical",
        "identical",
        "refused",
        "interrupted",
        "interrupted",
        "interrupted",
        "identical",
        "identical",
        "refused",
        "refused",
        "refused",
    ];
    ensure!(
        rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>() == expected,
        "replay must classify fuel-exhausted, returned, quota-refused, deadline, cancelled, interrupted, returned, trapped, invoke-refused, link-refused and pending invocations as {expected:?}: {rows:?}"
    );
    ensure!(
        report["interrupted"] == json!(3)
            && report["identical"] == json!(rows.iter().filter(|r| r.1 == "identical").count())
            && report["divergent"] == json!(0),
        "the interruptions must count as interrupted, neither identical nor divergent: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Replay of validly signed recordings whose calls or endings were changed.

/// `bytes` with the first `from` replaced by `to` (same length), or `None`.
fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let at = find(bytes, from)?;
    let mut out = bytes.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    Some(out)
}

fn replay_of_changed_recordings(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(
        &host,
        "remember",
        json!({ "key": "kkkkk", "value": "vvvvv" }),
        0,
    )?;
    call(&host, "recall", json!({ "key": "kkkkk" }), 0)?;
    call(&host, "echo", json!({ "text": "same" }), 0)?;
    let key = key_text(&host)?;
    let honest = parse_export(&export(&host, "honest.export", &["--with-components"])?)?;
    let shown = host.entries()?;
    ensure!(
        shown.len() == honest.entries.len(),
        "log show lists {} entries, the export holds {}",
        shown.len(),
        honest.entries.len()
    );
    let start_of = |function: &str| {
        shown
            .iter()
            .find(|e| {
                e["entry"]["type"] == "invocation-start" && e["entry"]["function"] == function
            })
            .and_then(|e| e["entry"]["invocation"].as_u64())
            .ok_or_else(|| failed(format!("no start of {function}")))
    };
    let (recall, echo) = (start_of("recall")?, start_of("echo")?);
    let get = shown
        .iter()
        .position(|e| {
            e["entry"]["type"] == "host-call"
                && e["entry"]["invocation"] == json!(recall)
                && e["entry"]["function"]
                    .as_str()
                    .is_some_and(|f| f.ends_with(".get"))
        })
        .ok_or_else(|| failed("recall made no recorded get call"))?;
    let seq = shown[get]["entry"]["seq"].as_u64().unwrap_or(u64::MAX);
    let function = shown[get]["entry"]["function"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let end = shown
        .iter()
        .position(|e| {
            e["entry"]["type"] == "invocation-end" && e["entry"]["invocation"] == json!(echo)
        })
        .ok_or_else(|| failed("echo has no end"))?;
    let signer = Signer::of(&host)?;
    let elsewhere = target.host()?;
    let replay = |entries: Vec<Vec<u8>>| -> Result<(Run, Json), Failure> {
        let file = elsewhere.file("changed.export", &signer.export(&honest, entries).write())?;
        let run = elsewhere.run(&["replay", &s(&file), "--key", &key, "--json"])?;
        let report = run.json().unwrap_or(Json::Null);
        Ok((run, report))
    };
    let (run, _) = replay(honest.entries.clone())?;
    run.expect(
        0,
        "replay of the honest entries re-signed by the host's key",
    )?;
    let e = &honest.entries;
    let edit =
        |index: usize, bytes: Option<Vec<u8>>, what: &str| -> Result<Vec<Vec<u8>>, Failure> {
            let bytes = bytes.ok_or_else(|| {
                failed(format!(
                    "cannot make {what}: the bytes are not in entry {index}"
                ))
            })?;
            let mut v = e.clone();
            v[index] = bytes;
            Ok(v)
        };
    let mut fuel = e[get].clone();
    let n = fuel.len();
    let left = u64::from_le_bytes(fuel[n - 8..].try_into().unwrap_or([0; 8]));
    ensure!(
        shown[get]["entry"]["fuel_remaining"] == json!(left),
        "the recorded get call's bytes do not end with its fuel_remaining {left}"
    );
    fuel[n - 8..].copy_from_slice(&(left + 1).to_le_bytes());
    let changed_function = format!("{}x", &function[..function.len() - 1]);
    let calls: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "its fuel left changed",
            edit(get, Some(fuel), "the fuel change")?,
            "FUEL",
        ),
        (
            "its parameters changed",
            edit(
                get,
                replaced(&e[get], b"kkkkk", b"kkkkj"),
                "the parameter change",
            )?,
            "ARGS",
        ),
        (
            "its function changed",
            edit(
                get,
                replaced(&e[get], function.as_bytes(), changed_function.as_bytes()),
                "the function change",
            )?,
            "ORDER",
        ),
    ];
    for (what, entries, class) in calls {
        let (run, report) = replay(entries)?;
        run.expect(
            9,
            &format!("replay of a signed recording whose get call had {what}"),
        )?;
        let row = &report["invocations"][recall as usize];
        let d = &row["divergence"];
        ensure!(
            row["status"] == "divergent"
                && d["class"] == class
                && d["seq"] == json!(seq)
                && d.to_string().contains(&function),
            "a get call with {what} must diverge with class {class} at host call {seq} naming {function}: {row}"
        );
        let others: Vec<&Json> = report["invocations"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|i| i["invocation"] != json!(recall))
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            others.iter().all(|i| i["status"] == "identical"),
            "the unchanged invocations must stay identical: {}",
            excerpt(&run.stdout)
        );
    }
    // The host's answer changed: the component returns another result.
    let (run, report) = replay(edit(
        get,
        replaced(&e[get], b"vvvvv", b"wwwww"),
        "the answer change",
    )?)?;
    run.expect(
        9,
        "replay of a signed recording whose get call answered otherwise",
    )?;
    let row = &report["invocations"][recall as usize];
    ensure!(
        row["divergence"]["class"] == "RESULT"
            && row["divergence"]["what"] == "result"
            && row["last_matching"].to_string().contains(&function),
        "a changed host answer must diverge with class RESULT (result) after the call {function}: {row}"
    );
    // The ending compared as bytes: result, fuel consumed, stdout, stderr, the ending itself.
    let mut consumed = e[end].clone();
    let n = consumed.len();
    ensure!(
        consumed[n - 8..] == [0; 8],
        "echo's end does not end with an empty stdout and stderr"
    );
    let total = u64::from_le_bytes(consumed[n - 16..n - 8].try_into().unwrap_or([0; 8]));
    consumed[n - 16..n - 8].copy_from_slice(&(total + 1).to_le_bytes());
    let mut stdout = e[end][..n - 8].to_vec();
    stdout.extend_from_slice(&[1, 0, 0, 0, b'x', 0, 0, 0, 0]);
    let mut stderr = e[end][..n - 8].to_vec();
    stderr.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0, b'x']);
    let endings: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "result",
            edit(
                end,
                replaced(&e[end], b"same", b"sane"),
                "the result change",
            )?,
            "result",
        ),
        (
            "fuel consumed",
            edit(end, Some(consumed), "")?,
            "fuel consumed",
        ),
        ("stdout", edit(end, Some(stdout), "")?, "stdout"),
        ("stderr", edit(end, Some(stderr), "")?, "stderr"),
    ];
    for (what, entries, named) in endings {
        let (run, report) = replay(entries)?;
        run.expect(
            9,
            &format!("replay of a signed recording whose {what} was changed"),
        )?;
        let row = &report["invocations"][echo as usize];
        ensure!(
            row["divergence"]["class"] == "RESULT" && row["divergence"]["what"] == named,
            "a recorded {what} changed must diverge with class RESULT naming {named:?}: {row}"
        );
    }
    // A trap recorded where the component returns: the ending differs.
    let mut trap = vec![0x03, 0x04];
    trap.extend_from_slice(&echo.to_le_bytes());
    for text in ["trap", "recorded, not replayed"] {
        trap.extend_from_slice(&(text.len() as u32).to_le_bytes());
        trap.extend_from_slice(text.as_bytes());
    }
    trap.extend_from_slice(&total.to_le_bytes());
    let mut entries = e.clone();
    entries.insert(end, trap);
    let (run, report) = replay(entries)?;
    run.expect(
        9,
        "replay of a signed recording with a trap where the component returned",
    )?;
    let row = &report["invocations"][echo as usize];
    ensure!(
        row["divergence"]["class"] == "TRAP",
        "a recorded trap where the component returns must diverge with class TRAP: {row}"
    );
    Ok(())
}

/// The entry types of invocation `n` and the entries.
fn sequence(entries: &[Json], n: u64) -> (Vec<String>, Vec<&Json>) {
    let own = of_invocation(entries, n);
    (
        own.iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
            .collect(),
        own,
    )
}

/// Checks each invocation of [`outcomes_traps_and_replay_classes`] against the outcome table of
/// specification 3.
fn outcome_sequences(entries: &[Json]) -> Result<(), Failure> {
    let calls_then = |types: &[String], ending: &[&str]| {
        types.len() >= 2 + ending.len()
            && types[0] == "invocation-start"
            && types[1] == "decision"
            && types[types.len() - ending.len()..] == *ending
            && types[2..types.len() - ending.len()]
                .iter()
                .all(|t| t == "decision" || t == "host-call" || t == "host-call-intent")
    };
    let ended_without = |own: &[&Json], fuel_zero: bool| {
        own.last().is_some_and(|e| {
            e["type"] == "invocation-end"
                && e["result"].is_null()
                && (!fuel_zero || e["fuel_consumed"] == json!(0))
        })
    };
    let no_args = |own: &[&Json]| own[0]["args"] == json!([]);
    let invoke_ok = |own: &[&Json], allowed: bool| {
        own[1]["action"] == "invoke" && own[1]["allowed"] == json!(allowed)
    };
    for (n, what) in [(1u64, "returned"), (6, "returned")] {
        let (types, own) = sequence(entries, n);
        ensure!(
            calls_then(&types, &["invocation-end"])
                && invoke_ok(&own, true)
                && own.last().is_some_and(|e| !e["result"].is_null()),
            "invocation {n} ({what}) must be start, invoke allowed, its calls, an end with a result: {types:?}"
        );
    }
    for (n, kind) in [
        (0u64, "fuel-exhausted"),
        (7, "trap"),
        (3, "deadline"),
        (4, "cancelled"),
    ] {
        let (types, own) = sequence(entries, n);
        ensure!(
            calls_then(&types, &["trap", "invocation-end"])
                && invoke_ok(&own, true)
                && own[own.len() - 2]["kind"] == kind
                && ended_without(&own, false),
            "invocation {n} ({kind}) must be start, invoke allowed, its calls, a trap {kind}, an end without result: {types:?}"
        );
    }
    let (types, own) = sequence(entries, 8);
    ensure!(
        types == ["invocation-start", "decision", "invocation-end"]
            && no_args(&own)
            && invoke_ok(&own, false)
            && ended_without(&own, true)
            && own[2]["stdout"] == ""
            && own[2]["stderr"] == "",
        "invocation 8 (refused) must be start without args, invoke denied, an end without result, fuel or output: {types:?} {:?}",
        own.first()
    );
    let (types, own) = sequence(entries, 9);
    ensure!(
        types.len() >= 3
            && types[0] == "invocation-start"
            && types[types.len() - 1] == "invocation-end"
            && types[1..types.len() - 1].iter().all(|t| t == "decision")
            && own[1..own.len() - 1]
                .iter()
                .all(|d| d["action"] == "link" && d["allowed"] == json!(false))
            && own[1..own.len() - 1]
                .iter()
                .any(|d| d["resource"] == "femtoclaw:host/log@0.1.0")
            && no_args(&own)
            && ended_without(&own, true),
        "invocation 9 (refused at link) must be start without args, one denied link decision per refused import, an end without result or fuel: {types:?}"
    );
    let (types, own) = sequence(entries, 10);
    let request = entries.iter().map(|e| &e["entry"]).position(|e| {
        e["type"] == "approval" && e["request"] == json!(10) && e["action"] == "request"
    });
    let end_at = entries.iter().position(|e| {
        e["entry"]["type"] == "invocation-end" && e["entry"]["invocation"] == json!(10)
    });
    ensure!(
        types == ["invocation-start", "decision", "decision", "invocation-end"]
            && own[0]["args"] != json!([])
            && invoke_ok(&own, true)
            && own[2]["action"] == "approval"
            && own[2]["allowed"] == json!(false)
            && own[2]["resource"] == "conformance@1.0.0.add"
            && own[2]["policy_ids"] == own[1]["policy_ids"]
            && own[2]["policy_digest"] == own[1]["policy_digest"]
            && ended_without(&own, true)
            && request.is_some()
            && request > end_at,
        "invocation 10 (pending) must be start with args, invoke allowed, approval denied on conformance@1.0.0.add with the invoke decision's policy ids and digest, an end without result or fuel, then an approval request: {types:?} {own:?}"
    );
    let (types, own) = sequence(entries, 2);
    ensure!(
        types == ["invocation-start", "trap", "invocation-end"]
            && no_args(&own)
            && own[1]["kind"] == "limit"
            && own[1]["fuel_consumed"] == json!(0)
            && ended_without(&own, true),
        "invocation 2 (over its quota) must be start without args, a trap limit with fuel 0, an end without result or fuel: {types:?}"
    );
    let (types, own) = sequence(entries, 5);
    let intent_at = types.iter().rposition(|t| t == "host-call-intent");
    let budget = own[0]["fuel_budget"].as_u64().unwrap_or(0);
    let least = own
        .iter()
        .filter_map(|e| e["fuel_remaining"].as_u64())
        .min()
        .unwrap_or(budget);
    ensure!(
        intent_at.is_some_and(|i| types[i + 1..] == ["trap", "invocation-end"])
            && own[own.len() - 2]["kind"] == "interrupted"
            && own[own.len() - 2]["message"]
                == "host stopped before invocation 5 ended; recorded when the ledger was next opened"
            && ended_without(&own, false)
            && own[own.len() - 1]["fuel_consumed"] == json!(budget - least),
        "invocation 5 (interrupted) must be what was written ahead, ending with an intent, then a trap interrupted with the table's message and an end without result consuming budget minus the least fuel left ({}): {types:?} {:?}",
        budget - least,
        own.last()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding hostile values in a validly signed ledger.

/// A `host-call` entry of invocation 0 whose parameters are the encoded value `params`.
fn host_call_entry(params: &[u8]) -> Vec<u8> {
    let mut e = vec![0x03, 0x02];
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&7u32.to_le_bytes());
    for text in ["femtoclaw:host/log@0.1.0", "log"] {
        e.extend_from_slice(&(text.len() as u32).to_le_bytes());
        e.extend_from_slice(text.as_bytes());
    }
    e.extend_from_slice(params);
    e.extend_from_slice(&[0x01, 0x01]); // result: bool true
    e.extend_from_slice(&1000u64.to_le_bytes());
    e
}

/// `depth` lists, one inside the other, around `inner`.
fn nested(depth: usize, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * 5 + inner.len());
    for _ in 0..depth {
        v.push(0x0e);
        v.extend_from_slice(&1u32.to_le_bytes());
    }
    v.extend_from_slice(inner);
    v
}

fn hostile_values_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "x" }), 0)?;
    let key = key_text(&host)?;
    let honest = parse_export(&export(&host, "honest.export", &[])?)?;
    let signer = Signer::of(&host)?;
    let elsewhere = target.host()?;
    let at = honest.entries.len();
    let verify = |params: &[u8]| -> Result<Run, Failure> {
        let mut entries = honest.entries.clone();
        entries.push(host_call_entry(params));
        let file = elsewhere.file("values.export", &signer.export(&honest, entries).write())?;
        verify_file(&elsewhere, &file, &key)
    };
    // The crafted entry is sound when its value is: lists nested 100 deep, a bool, a char.
    let fine = [nested(100, &[0x01, 0x01]), vec![0x0c, b'A', 0, 0, 0]];
    for value in &fine {
        verify(value)?.expect(
            0,
            "log verify of a signed ledger with a well-formed crafted entry",
        )?;
    }
    let big = u32::MAX.to_le_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("lists nested 128 deep", nested(128, &[0x01, 0x01])),
        ("lists nested 200000 deep", nested(200_000, &[0x01, 0x01])),
        (
            "a list claiming 2^32 - 1 items",
            [&[0x0e][..], &big, &[0x01, 0x01]].concat(),
        ),
        (
            "a string claiming 2^32 - 1 bytes",
            [&[0x0d][..], &big, b"abc"].concat(),
        ),
        (
            "a record claiming 2^32 - 1 fields",
            [&[0x0f][..], &big].concat(),
        ),
        ("a bool byte 2", vec![0x01, 0x02]),
        ("a bool byte 255", vec![0x01, 0xff]),
        (
            "a char that is a surrogate (U+D800)",
            [&[0x0c][..], &0xd800u32.to_le_bytes()].concat(),
        ),
        (
            "a char past U+10FFFF",
            [&[0x0c][..], &0x11_0000u32.to_le_bytes()].concat(),
        ),
    ];
    for (what, value) in cases {
        let started = Instant::now();
        let run = verify(&value)?;
        ensure!(
            run.code == 8 && run.stderr.contains(&format!("entry {at} is malformed")),
            "log verify of a signed ledger whose entry {at} holds {what} must fail with exit 8 and `entry {at} is malformed`: exit {}, {}",
            run.code,
            excerpt(&run.stderr)
        );
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "log verify took {:?} to refuse {what}",
            started.elapsed()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Requests cut off at the end of a graceful stop's grace.

fn cut_off_at_the_grace(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case stops a server it started itself".into(),
        ));
    }
    let host = host_with_fifos(target, &["pipe"])?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        b"[limits]\nmax_fuel = 1000000000000000\ndeadline_ms = 600000\n\n\
          [server]\nshutdown_grace_ms = 1500\nrequest_timeout_ms = 600000\n",
    )?;
    let wasm = host.file("endless.wasm", crate::GUEST)?;
    let manifest = host.file(
        "endless.toml",
        crate::GUEST_MANIFEST
            .replace("fuel = 50_000_000", "fuel = 1_000_000_000_000_000")
            .as_bytes(),
    )?;
    host.ok(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?;
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let before = host.entries()?.len();
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let served = (|| {
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
            .ok_or_else(|| failed(format!("serve printed {:?}", line.trim())))?;
        let post = |body: Json| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                crate::target::Server::client()
                    .post(format!("{url}/v1/invoke"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .map(|r| r.status().as_u16())
            })
        };
        // One invocation that never writes ahead (a loop), one blocked after its write-ahead.
        let spin = post(json!({ "capability": "conformance", "function": "spin", "args": {} }));
        let blocked = post(json!({
            "capability": "files",
            "function": "write-file",
            "args": { "path": "/data/pipe", "text": "hi" },
        }));
        ensure!(
            wait_in_segment(&host, b"open-at", 1, Duration::from_secs(15)),
            "the effectful open was not written ahead within 15 s"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(|e| failed(format!("cannot send SIGTERM: {e}")))?;
        ensure!(signalled.success(), "cannot send SIGTERM to the server");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| failed(e.to_string()))? {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(30) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ensure!(
            status.is_some(),
            "the server did not stop within 30 s of SIGTERM with a grace of 1.5 s"
        );
        let answers = [spin.join(), blocked.join()];
        for (what, answer) in ["the loop", "the blocked write"].iter().zip(answers) {
            let answer = answer.map_err(|_| failed("a request's thread panicked"))?;
            ensure!(
                answer.is_err(),
                "a request cut off at the end of the grace ({what}) was answered: {answer:?}"
            );
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    served?;
    // The next open ends the written-ahead one as interrupted; the other left nothing.
    call(&host, "echo", json!({ "text": "after" }), 0)?;
    let entries = host.entries()?;
    let starts: Vec<&Json> = entries[before..]
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "invocation-start")
        .collect();
    let functions: Vec<&str> = starts
        .iter()
        .filter_map(|e| e["function"].as_str())
        .collect();
    ensure!(
        functions == ["write-file", "echo"],
        "after the stop the ledger must hold the written-ahead write-file and the new echo only, nothing of the loop: {functions:?}"
    );
    let n = starts[0]["invocation"].as_u64().unwrap_or(u64::MAX);
    let (types, own) = sequence(&entries, n);
    ensure!(
        types.ends_with(&["trap".to_owned(), "invocation-end".to_owned()])
            && own[own.len() - 2]["kind"] == "interrupted"
            && own[own.len() - 1]["result"].is_null(),
        "the written-ahead invocation cut off at the grace must be ended as interrupted on the next open: {types:?}"
    );
    Ok(())
}

/// Lowercase hex of 32 bytes written as text, as bytes.
fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| {
            (0..text.len() / 2)
                .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

fn replay_refuses_another_engine(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "x" }), 0)?;
    let key = key_text(&host)?;
    let honest = parse_export(&export(&host, "honest.export", &["--with-components"])?)?;
    let shown = host.entries()?;
    let at = shown
        .iter()
        .position(|e| e["entry"]["type"] == "invocation-start" && e["entry"]["function"] == "echo")
        .ok_or_else(|| failed("no start of echo"))?;
    let start = &shown[at]["entry"];
    let version = start["wasmtime_version"].as_str().unwrap_or("").to_owned();
    let digest = start["engine_digest"].as_str().unwrap_or("").to_owned();
    let digest_bytes = unhex(&digest).filter(|d| d.len() == 32).ok_or_else(|| {
        failed(format!(
            "the start's engine_digest {digest:?} is not 32 bytes of hex"
        ))
    })?;
    let signer = Signer::of(&host)?;
    let elsewhere = target.host()?;
    let other_version = format!("{}x", &version[..version.len().saturating_sub(1)]);
    let mut other_digest = digest_bytes.clone();
    other_digest[0] ^= 0xff;
    let other_digest_hex: String = other_digest.iter().map(|b| format!("{b:02x}")).collect();
    for (what, from, to, recorded, current) in [
        (
            "wasmtime version",
            version.as_bytes().to_vec(),
            other_version.as_bytes().to_vec(),
            other_version.clone(),
            version.clone(),
        ),
        (
            "engine digest",
            digest_bytes.clone(),
            other_digest,
            other_digest_hex.clone(),
            digest.clone(),
        ),
    ] {
        let changed = replaced(&honest.entries[at], &from, &to)
            .ok_or_else(|| failed(format!("the start's bytes do not hold its {what}")))?;
        let mut entries = honest.entries.clone();
        entries[at] = changed;
        let file = elsewhere.file("engine.export", &signer.export(&honest, entries).write())?;
        let run = elsewhere.run(&["replay", &s(&file), "--key", &key, "--json"])?;
        run.expect(
            10,
            &format!("replay of a recording made with another {what}"),
        )?;
        ensure!(
            run.stderr.contains("cannot replay")
                && run.stderr.contains(&recorded)
                && run.stderr.contains(&current),
            "the refusal of a recording with another {what} must say `cannot replay` and name both {recorded} and {current}: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Manifest keys.

/// `capability add` of the suite's guest with `manifest`.
fn add_with(host: &Host, name: &str, manifest: &str) -> Result<Run, Failure> {
    let wasm = host.file(&format!("{name}.wasm"), crate::GUEST)?;
    let file = host.file(&format!("{name}.toml"), manifest.as_bytes())?;
    host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&file)])
}

fn manifest_keys(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    // Every key of the specification, each at its default (kv and paths items with `write`
    // omitted and given).
    let every = "name = \"every-key\"\nversion = \"1.0.0\"\ndescription = \"\"\npublisher = \"\"\n\
        fuel = 100_000_000\n\n[requests]\n\
        imports = [\"femtoclaw:host/log@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]\n\
        http = []\npaths = [{ path = \"/data\" }, { path = \"/tmp\", write = false }]\n\
        kv = [{ namespace = \"conformance\" }, { namespace = \"other\", write = false }]\n\
        secrets = []\nconfig = []\n";
    add_with(&host, "every", every)?
        .expect(0, "capability add with every manifest key at its default")?;
    // Only the required keys: the defaults are what inspect shows.
    add_with(
        &host,
        "least",
        "name = \"least-keys\"\nversion = \"1.0.0\"\n",
    )?
    .expect(0, "capability add with only name and version")?;
    let shown = host.ok(&["capability", "inspect", "least-keys"])?;
    let shown: Json = serde_json::from_str(&shown).map_err(|e| {
        failed(format!(
            "capability inspect is not JSON ({e}): {}",
            excerpt(&shown)
        ))
    })?;
    ensure!(
        shown["description"] == ""
            && shown["publisher"] == ""
            && shown["fuel"] == json!(100_000_000u64),
        "a manifest without description, publisher and fuel must have \"\", \"\" and 100000000: {}",
        excerpt(&shown.to_string())
    );
    let installed = |host: &Host| -> Result<String, Failure> { host.ok(&["capability", "list"]) };
    let before = installed(&host)?;
    // Any other key, at the top, in [requests], in an item, or a table: refused, nothing installed.
    for (what, manifest, needle) in [
        (
            "a top-level key",
            "name = \"odd\"\nversion = \"1.0.0\"\nauthor = \"x\"\n",
            "author",
        ),
        (
            "a table",
            "name = \"odd\"\nversion = \"1.0.0\"\n[extra]\nx = 1\n",
            "extra",
        ),
        (
            "a key of [requests]",
            "name = \"odd\"\nversion = \"1.0.0\"\n[requests]\nfiles = []\n",
            "files",
        ),
        (
            "a key of a kv item",
            "name = \"odd\"\nversion = \"1.0.0\"\n[requests]\nkv = [{ namespace = \"n\", writable = true }]\n",
            "writable",
        ),
        (
            "a key of a paths item",
            "name = \"odd\"\nversion = \"1.0.0\"\n[requests]\npaths = [{ path = \"/data\", mode = \"rw\" }]\n",
            "mode",
        ),
    ] {
        let run = add_with(&host, "odd", manifest)?;
        run.expect(2, &format!("capability add of a manifest with {what}"))?;
        ensure!(
            run.stderr.contains(needle),
            "the refusal of a manifest with {what} does not name `{needle}`: {}",
            excerpt(&run.stderr)
        );
    }
    ensure!(
        installed(&host)? == before,
        "a refused manifest installed something"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Only pinned keys, and only the key in force.

impl Signer {
    /// The same checkpoint body, signed by this key alone.
    fn resign(&self, note: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let text = String::from_utf8_lossy(note);
        let body = &text[..text.find("\n\n").map_or(text.len(), |i| i + 1)];
        let signature = self.key.sign(body.as_bytes());
        let signed = [&self.id[..], &signature.to_bytes()[..]].concat();
        format!(
            "{body}\n\u{2014} {} {}\n",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(signed)
        )
        .into_bytes()
    }
}

fn only_pinned_keys_in_force(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let name = "conformance.example/log";
    let first = host
        .ok(&["key", "generate", "--name", name])?
        .trim()
        .to_owned();
    host.install()?;
    call(&host, "echo", json!({ "text": "before" }), 0)?;
    let retired = Signer::of(&host)?;
    let second = host
        .ok(&["key", "generate", "--name", name])?
        .trim()
        .to_owned();
    ensure!(first != second, "key generate did not rotate the key");
    call(&host, "echo", json!({ "text": "after" }), 0)?;
    let honest = parse_export(&export(&host, "rotated.export", &[])?)?;
    let stranger_host = target.host()?;
    stranger_host.ok(&["key", "generate", "--name", name])?;
    let stranger = Signer::of(&stranger_host)?;
    let elsewhere = target.host()?;
    let verify = |export: &Export| -> Result<Run, Failure> {
        let file = elsewhere.file("keys.export", &export.write())?;
        elsewhere.run(&[
            "log",
            "verify",
            &s(&file),
            "--key",
            &first,
            "--key",
            &second,
        ])
    };
    verify(&honest)?.expect(0, "log verify of the rotated export with both keys pinned")?;
    let last = honest.checkpoints.len() - 1;
    for (what, signer, needle) in [
        (
            "the retired key after its rotation",
            &retired,
            "is not signed by the key in force",
        ),
        (
            "a key never pinned",
            &stranger,
            "not signed by a pinned key",
        ),
    ] {
        let mut forged = honest.clone();
        forged.checkpoints[last] = signer.resign(&honest.checkpoints[last]);
        let run = verify(&forged)?;
        run.expect(8, &format!("log verify of a checkpoint signed by {what}"))?;
        ensure!(
            run.stderr.contains(needle) && run.stderr.contains(&format!("checkpoint {last}")),
            "a checkpoint signed by {what} must fail at checkpoint {last} saying `{needle}`: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Where an unconfigured server listens.

fn unconfigured_server_binds_loopback(target: &Target) -> Result<(), Failure> {
    if std::net::TcpListener::bind("127.0.0.1:8420").is_err() {
        return Err(Failure::NotApplicable(
            "port 8420 of 127.0.0.1 is in use on this machine".into(),
        ));
    }
    let host = target.host()?;
    host.policy(OPEN)?;
    let mut child = host
        .command(&["serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let answered = line.trim() == "listening on http://127.0.0.1:8420"
        && std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], 8420)),
            Duration::from_secs(5),
        )
        .is_ok();
    let _ = child.kill();
    let out = child.wait_with_output().ok();
    if line.trim().is_empty() {
        let err = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        if err.contains("in use") {
            return Err(Failure::NotApplicable(
                "port 8420 was taken by another process meanwhile".into(),
            ));
        }
        return Err(failed(format!(
            "serve without configuration printed nothing: {}",
            excerpt(&err)
        )));
    }
    ensure!(
        answered,
        "serve without configuration must listen on 127.0.0.1:8420 (loopback only): it printed {:?}",
        line.trim()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Concurrent writes applied in ledger order.

fn concurrent_writes_in_ledger_order(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case reads the data directory of a server it started itself".into(),
        ));
    }
    let host = target.host()?;
    host.policy(OPEN)?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        b"[server]\nconcurrency = 16\nper_principal = 16\n",
    )?;
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let served = (|| {
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
            .ok_or_else(|| failed(format!("serve printed {:?}", line.trim())))?;
        let post = |body: Json| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let response = crate::target::Server::client()
                    .post(format!("{url}/v1/invoke"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let text = response.text().map_err(|e| e.to_string())?;
                Ok::<(u16, String), String>((status, text))
            })
        };
        let writers: Vec<_> = (0..8)
            .map(|i| {
                post(json!({
                    "capability": "memory", "function": "put",
                    "args": { "key": "k", "text": format!("v{i}") },
                }))
            })
            .collect();
        for w in writers {
            let answer = w.join().map_err(|_| failed("a writer's thread panicked"))?;
            ensure!(
                matches!(answer, Ok((200, _))),
                "a concurrent put was not answered 200: {answer:?}"
            );
        }
        let (status, text) =
            post(json!({ "capability": "memory", "function": "get", "args": { "key": "k" } }))
                .join()
                .map_err(|_| failed("the reader's thread panicked"))?
                .map_err(failed)?;
        ensure!(
            status == 200,
            "get after the puts: HTTP {status}: {}",
            excerpt(&text)
        );
        let body: Json = serde_json::from_str(&text).map_err(|e| failed(e.to_string()))?;
        Ok(body["result"]["ok"].as_str().unwrap_or("").to_owned())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let live = served?;
    // The put that ended last in the ledger is the value the live store holds.
    let entries = host.entries()?;
    let text_of = |n: &Json| {
        entries
            .iter()
            .map(|e| &e["entry"])
            .find(|e| {
                e["type"] == "invocation-start" && &e["invocation"] == n && e["function"] == "put"
            })
            .and_then(|e| {
                e["args"]
                    .as_array()?
                    .iter()
                    .find(|a| a[0] == "text")
                    .and_then(|a| a[1]["string"].as_str().map(str::to_owned))
            })
    };
    let last = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "invocation-end")
        .filter_map(|e| text_of(&e["invocation"]))
        .next_back()
        .ok_or_else(|| failed("no put is recorded"))?;
    ensure!(
        live == last,
        "the live store holds {live:?} where the put that ended last in the ledger wrote {last:?}"
    );
    host.ok(&["log", "reindex"])?;
    let rebuilt = memory(&host, "get", json!({ "key": "k" }))?;
    ensure!(
        rebuilt == json!({ "ok": last }),
        "the store rebuilt from the ledger holds {rebuilt} where the live one held {live:?}"
    );
    Ok(())
}
