//! Crash safety: a writer killed with SIGKILL during a sustained stream of appends loses
//! nothing it acknowledged, and the ledger verifies after reopening.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use femtoclaw_ledger::{Ledger, LedgerOptions, LedgerWriter, VerifyOptions, verify_dir};

const CHILD_ENV: &str = "FEMTOCLAW_LEDGER_CRASH_CHILD_DIR";

/// The child: four threads append batches through the group-commit writer forever and
/// print `ack <first index> <count> <invocation>` after each durable append.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // Only runs when re-invoked by the parent test.
    };
    let (ledger, _) = Ledger::open(
        Path::new(&dir),
        LedgerOptions::with_key(common::fixed_key()),
    )
    .unwrap();
    let w = Arc::new(LedgerWriter::new(ledger));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                for n in 0u32.. {
                    let inv = w.next_invocation();
                    let count = 1 + (n + t) % 4;
                    let r = w
                        .append((0..count).map(|s| common::call(inv, s)).collect())
                        .unwrap();
                    println!("ack {} {} {}", r.first_index, count, inv);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn run_and_kill(dir: &Path, after_first_ack: Duration) -> Vec<(u64, u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    let start = Instant::now();
    let mut first_ack: Option<Instant> = None;
    loop {
        if let Some(t) = first_ack
            && t.elapsed() >= after_first_ack
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child never acknowledged"
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(5))
            && let Some(rest) = line.strip_prefix("ack ")
        {
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            acks.push((v[0], v[1], v[2]));
            first_ack.get_or_insert_with(Instant::now);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    // Lines printed before the kill are acknowledgements too.
    while let Ok(line) = rx.try_recv() {
        if let Some(rest) = line.strip_prefix("ack ") {
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            acks.push((v[0], v[1], v[2]));
        }
    }
    acks
}

// Verifies: FC-MEM-2403, FC-OPS-5714, FC-FORMAL-5013
#[test]
fn sigkilled_writer_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    let mut total_acked = 0;
    for round in 0..3 {
        let acks = run_and_kill(dir.path(), Duration::from_millis(300));
        assert!(!acks.is_empty(), "round {round}: no acknowledgements");
        total_acked += acks.len();

        let (l, recovery) =
            Ledger::open(dir.path(), LedgerOptions::with_key(common::fixed_key())).unwrap();
        for &(first, count, inv) in &acks {
            for (seq, i) in (first..first + count).enumerate() {
                assert!(
                    i < l.len(),
                    "round {round}: acknowledged entry {i} lost ({recovery:?})"
                );
                assert_eq!(
                    l.get(i).unwrap(),
                    common::call(inv, seq as u32),
                    "round {round}: entry {i}"
                );
            }
        }
        drop(l);
        let rep = verify_dir(dir.path(), &vk).unwrap();
        assert_eq!(rep.torn_tail_bytes, 0);
    }
    assert!(total_acked > 3);
}
