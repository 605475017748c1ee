//! The durable ledger: appends, reads, reopen, torn-tail recovery, reindex, proofs,
//! group commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use femtoclaw_ledger::{
    Checkpoint, Entry, Ledger, LedgerError, LedgerOptions, LedgerWriter, VerifyOptions,
    merkle::verify_consistency, verify_dir, verify_export_file, verify_proof,
};

fn opts() -> LedgerOptions {
    LedgerOptions::with_key(common::fixed_key())
}

fn open(dir: &Path) -> Ledger {
    let (l, r) = Ledger::open(dir, opts()).unwrap();
    assert_eq!(r.truncated_bytes, 0, "clean open");
    l
}

fn fill(l: &mut Ledger, batches: u64, per_batch: u32) {
    for _ in 0..batches {
        let inv = l.next_invocation();
        l.append_batch((0..per_batch).map(|s| common::call(inv, s)).collect())
            .unwrap();
    }
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

// Verifies: FC-MEM-2401, FC-MEM-2402, FC-MEM-2428, FC-MEM-2409, FC-FORMAL-5002
#[test]
fn appended_entries_read_back_after_reopen_with_one_checkpoint_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    let all: Vec<Entry> = common::one_of_each().into_iter().map(|(_, e)| e).collect();
    let n = all.len() as u64;
    let r = l.append_batch(all.clone()).unwrap();
    assert_eq!(r.indexes(), 0..n);
    assert_eq!(r.tree_size, n);
    assert_eq!(r.root, l.root());
    let cp = Checkpoint::open(&r.checkpoint, &common::fixed_key().verifier()).unwrap();
    assert_eq!(
        (cp.size, cp.root, cp.origin.as_str()),
        (n, r.root, "femtoclaw.local/ledger")
    );
    let r2 = l.append_batch(vec![common::call(9, 0)]).unwrap();
    assert_eq!(r2.indexes(), n..n + 1);
    assert_eq!(l.checkpoint_sizes(), vec![n, n + 1]);
    drop(l);

    let l = open(dir.path());
    assert_eq!(l.len(), n + 1);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(&l.get(i as u64).unwrap(), e);
    }
    let page = l.iter(n - 1, 10).unwrap();
    assert_eq!(
        page.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![n - 1, n]
    );
    assert_eq!(l.checkpoints().unwrap().len(), 2);
    assert_eq!(l.latest_checkpoint().unwrap(), r2.checkpoint);
    assert!(matches!(l.get(n + 1), Err(LedgerError::NoSuchEntry { .. })));
    // Invocation numbers keep increasing across reopen.
    let mut l = l;
    assert!(l.next_invocation() >= 10);
}

// Verifies: FC-MEM-2408, FC-MEM-4402
#[test]
fn invocation_index_lists_an_invocations_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    l.append_batch(vec![
        common::call(1, 0),
        common::call(2, 0),
        common::call(1, 1),
    ])
    .unwrap();
    l.append_batch(vec![common::call(2, 1)]).unwrap();
    assert_eq!(l.invocation_entries(1).unwrap(), vec![0, 2]);
    assert_eq!(l.invocation_entries(2).unwrap(), vec![1, 3]);
    assert!(l.invocation_entries(3).unwrap().is_empty());
}

// Verifies: FC-MEM-2407, FC-OPS-5705
#[test]
fn reindex_rebuilds_the_index_equal_to_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 20, 3);
    l.append_batch(vec![common::one_of_each().remove(5).1])
        .unwrap();
    let before = l.index_snapshot().unwrap();
    assert!(before.len() > 60);
    assert_eq!(l.reindex().unwrap(), 61);
    assert_eq!(l.index_snapshot().unwrap(), before);
    // Deleting the index entirely: reopen rebuilds it from the segments.
    drop(l);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let (l, rec) = Ledger::open(dir.path(), opts()).unwrap();
    assert_eq!(rec.reindexed, 61);
    assert_eq!(l.index_snapshot().unwrap(), before);
}

// Verifies: FC-MEM-2405
#[test]
fn segments_rotate_and_everything_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.segment_size = 4096;
    let (mut l, _) = Ledger::open(dir.path(), o.clone()).unwrap();
    fill(&mut l, 40, 5);
    let segs = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .count();
    assert!(segs > 5, "rotated into {segs} segments");
    let root = l.root();
    drop(l);
    let (l, rec) = Ledger::open(dir.path(), o).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!((l.len(), l.root()), (200, root));
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    let rep = verify_dir(dir.path(), &vk).unwrap();
    assert_eq!((rep.entries, rep.checkpoints), (200, 40));
    let export = dir.path().join("x.export");
    l.export(&export).unwrap();
    let rep = verify_export_file(&export, &vk).unwrap();
    assert_eq!((rep.entries, rep.checkpoints, rep.root), (200, 40, root));
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn append_garbage(dir: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(last_segment(dir))
        .unwrap();
    f.write_all(bytes).unwrap();
}

// Verifies: FC-MEM-2413, FC-MEM-2416, FC-MEM-2419, FC-OPS-5701, FC-OPS-5712, FC-FORMAL-5215
#[test]
fn torn_tail_is_cut_reported_and_earlier_entries_survive() {
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        ("garbage", Box::new(|d| append_garbage(d, &[0xAB; 37]))),
        (
            "partial header",
            Box::new(|d| append_garbage(d, &[10, 0, 0])),
        ),
        (
            "record longer than the file",
            Box::new(|d| {
                let mut rec = 500u32.to_le_bytes().to_vec();
                rec.extend_from_slice(&[0u8; 9]);
                rec.extend_from_slice(b"only a few bytes");
                append_garbage(d, &rec);
            }),
        ),
        (
            "last batch cut in its middle",
            Box::new(|d| {
                let p = last_segment(d);
                let len = std::fs::metadata(&p).unwrap().len();
                let f = OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(len - 100).unwrap();
            }),
        ),
        (
            "last batch with a hole but its commit record landed",
            Box::new(|d| {
                let p = last_segment(d);
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len();
                b[n - 260..n - 240].fill(0);
                std::fs::write(&p, b).unwrap();
            }),
        ),
    ];
    for (name, damage) in cases {
        let unacknowledged = name.starts_with("last batch");
        let dir = tempfile::tempdir().unwrap();
        let mut l = open(dir.path());
        fill(&mut l, 5, 4);
        let root_at_16 = l.tree().root_at(16).unwrap();
        let root_at_20 = l.root();
        drop(l);
        if unacknowledged {
            // With the index present, cutting an acknowledged batch is refused...
            let probe = tempfile::tempdir().unwrap();
            copy_dir(dir.path(), probe.path());
            damage(probe.path());
            assert!(matches!(
                Ledger::open(probe.path(), opts()),
                Err(LedgerError::AcknowledgedEntriesLost {
                    committed: 20,
                    found: 16
                })
            ));
            // ...so model a batch that was never acknowledged: the derived index never
            // saw it (it is updated only after the fdatasync).
            std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        }
        damage(dir.path());
        // A read-only verification reports the torn tail without failing.
        let vk = VerifyOptions::with_key(common::fixed_key().verifier());
        let rep = verify_dir(dir.path(), &vk).unwrap();
        assert!(rep.torn_tail_bytes > 0, "{name}");

        let (l, rec) = Ledger::open(dir.path(), opts()).unwrap();
        assert!(rec.truncated_bytes > 0, "{name}: {rec:?}");
        assert!(rec.reason.is_some(), "{name}");
        if unacknowledged {
            // The unacknowledged last batch is gone; the rest is intact.
            assert_eq!((l.len(), l.root()), (16, root_at_16), "{name}");
        } else {
            assert_eq!((l.len(), l.root()), (20, root_at_20), "{name}");
        }
        for i in 0..l.len() {
            l.get(i).unwrap();
        }
        drop(l);
        // The cut is durable and clean; appending continues.
        let (mut l, rec) = Ledger::open(dir.path(), opts()).unwrap();
        assert_eq!(rec.truncated_bytes, 0, "{name}");
        fill(&mut l, 1, 2);
        drop(l);
        let rep = verify_dir(dir.path(), &vk).unwrap();
        assert_eq!(rep.torn_tail_bytes, 0);
    }
}

// Verifies: FC-MEM-2413, FC-MEM-2419, FC-MEM-2425, FC-MEM-4403, FC-OPS-5702, FC-OPS-5712
#[test]
fn entries_without_a_commit_record_are_not_kept() {
    // A batch whose entries reached the disk but whose commit record did not was never
    // acknowledged: recovery cuts it whole.
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 2, 3);
    drop(l);
    let p = last_segment(dir.path());
    let bytes = std::fs::read(&p).unwrap();
    // Find the last commit record's start: copy the segment, drop it, and re-append only
    // its entries (the second batch's entries without their commit).
    let (l, _) = Ledger::open(dir.path(), opts()).unwrap();
    let cps = l.checkpoints().unwrap();
    let last_note = cps.last().unwrap().as_bytes().to_vec();
    drop(l);
    let commit_len = 13 + last_note.len();
    std::fs::write(&p, &bytes[..bytes.len() - commit_len]).unwrap();
    // Had the batch been acknowledged, the index would say so and opening would refuse.
    assert!(matches!(
        Ledger::open(dir.path(), opts()),
        Err(LedgerError::AcknowledgedEntriesLost {
            committed: 6,
            found: 3
        })
    ));
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let (l, rec) = Ledger::open(dir.path(), opts()).unwrap();
    assert_eq!(l.len(), 3);
    assert_eq!(rec.truncated_entries, 3);
}

// Verifies: FC-MEM-2412, FC-OPS-5708, FC-FORMAL-5215, FC-CRYPTO-3510
#[test]
fn damage_before_the_tail_is_refused_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 5, 4);
    drop(l);
    let p = last_segment(dir.path());
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[16 + 13 + 5] ^= 0x40; // inside the first entry
    std::fs::write(&p, &bytes).unwrap();
    // Valid commit records follow the damage: this is not a torn tail. Opening refuses
    // to cut, even without the index's memory of what was acknowledged.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    assert!(matches!(
        Ledger::open(dir.path(), opts()),
        Err(LedgerError::Corrupt {
            segment: 0,
            index: 0,
            ..
        })
    ));
    // And read-only verification names the damage.
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    assert!(matches!(
        verify_dir(dir.path(), &vk),
        Err(femtoclaw_ledger::VerifyError::CorruptSegment {
            segment: 0,
            index: 0,
            ..
        })
    ));
}

// Verifies: FC-MEM-2412, FC-OPS-5708, FC-CRYPTO-3510
#[test]
fn damage_in_an_earlier_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.segment_size = 2048;
    let (mut l, _) = Ledger::open(dir.path(), o.clone()).unwrap();
    fill(&mut l, 20, 4);
    drop(l);
    let first = dir.path().join("segments/00000000.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&first, &bytes).unwrap();
    assert!(matches!(
        Ledger::open(dir.path(), o),
        Err(LedgerError::Corrupt { segment: 0, .. })
    ));
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    assert!(matches!(
        verify_dir(dir.path(), &vk),
        Err(femtoclaw_ledger::VerifyError::CorruptSegment { segment: 0, .. })
    ));
}

// Verifies: FC-CRYPTO-3608, FC-CRYPTO-3613
#[test]
fn prove_output_verifies_with_the_pinned_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 7, 3);
    let vk = common::fixed_key().verifier();
    for i in 0..l.len() {
        let text = l.prove(i).unwrap();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        let v = verify_proof(&text, &vk).unwrap();
        assert_eq!(v.index, i);
        assert_eq!(v.entry, l.get(i).unwrap());
        assert_eq!(v.checkpoint.size, 21);
        // Claiming another index fails.
        let moved = text.replace(
            &format!("\nindex {i}\n"),
            &format!("\nindex {}\n", (i + 1) % 21),
        );
        assert!(verify_proof(&moved, &vk).is_err());
    }
    assert!(verify_proof(&l.prove(0).unwrap(), &common::other_key().verifier()).is_err());
    // Changing the entry bytes (the extra line) breaks the proof.
    let text = l.prove(3).unwrap();
    let extra_line = text.lines().nth(1).unwrap().to_owned();
    let other = l.prove(4).unwrap();
    let other_extra = other.lines().nth(1).unwrap();
    assert!(verify_proof(&text.replace(&extra_line, other_extra), &vk).is_err());
    assert!(l.prove(21).is_err());
}

// Verifies: FC-CRYPTO-3604
#[test]
fn consistency_proofs_between_checkpoints_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 9, 2);
    let vk = common::fixed_key().verifier();
    let cps: Vec<Checkpoint> = l
        .checkpoints()
        .unwrap()
        .iter()
        .map(|n| Checkpoint::open(n, &vk).unwrap())
        .collect();
    for w in cps.windows(2) {
        let p = l.consistency_proof(w[0].size, w[1].size).unwrap();
        verify_consistency(w[0].size, w[1].size, &p, &w[0].root, &w[1].root).unwrap();
    }
}

// Verifies: FC-MEM-2402, FC-MEM-2428, FC-MEM-2404, FC-MEM-4401, FC-PERF-5808
#[test]
fn group_commit_serves_many_threads_and_every_receipt_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let w = Arc::new(LedgerWriter::new(open(dir.path())));
    let mut handles = Vec::new();
    for t in 0..8u32 {
        let w = Arc::clone(&w);
        handles.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..25 {
                let inv = w.next_invocation();
                let r = w
                    .append(vec![common::call(inv, t), common::call(inv, t + 100)])
                    .unwrap();
                assert_eq!(r.leaf_hashes.len(), 2);
                got.push((inv, r));
            }
            got
        }));
    }
    let receipts: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let w = Arc::try_unwrap(w).unwrap();
    let l = w.shutdown().unwrap();
    assert_eq!(l.len(), 400);
    let batches = l.checkpoint_sizes().len();
    assert!(batches <= 200, "{batches} batches for 200 appends");
    let mut seen = std::collections::HashSet::new();
    for (inv, r) in &receipts {
        for (k, i) in r.indexes().enumerate() {
            assert!(seen.insert(i), "index {i} given twice");
            assert_eq!(l.get(i).unwrap().invocation(), Some(*inv));
            assert_eq!(l.tree().leaf(i).unwrap(), r.leaf_hashes[k]);
        }
        assert!(r.tree_size > r.indexes().end - 1);
    }
    drop(l);
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    assert_eq!(verify_dir(dir.path(), &vk).unwrap().entries, 400);
}

// Verifies: FC-CRYPTO-3622, FC-CRYPTO-3614
#[test]
fn unsigned_ledger_verifies_only_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, _) = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    fill(&mut l, 3, 2);
    let rep = verify_dir(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(!rep.signatures_checked);
    assert_eq!(rep.entries, 6);
    assert_eq!(
        rep.unchecked_signed, 0,
        "bare checkpoints carry no signature"
    );
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    assert!(matches!(
        verify_dir(dir.path(), &vk),
        Err(femtoclaw_ledger::VerifyError::UnknownKey { checkpoint: 0, .. })
    ));
}

// Verifies: FC-CRYPTO-3622
#[test]
fn signed_checkpoints_verified_without_a_key_are_counted_as_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 3, 2);
    drop(l);
    let rep = verify_dir(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(!rep.signatures_checked);
    assert!(rep.checkpoints > 0);
    assert_eq!(rep.unchecked_signed, rep.checkpoints);
    let vk = VerifyOptions::with_key(common::fixed_key().verifier());
    let rep = verify_dir(dir.path(), &vk).unwrap();
    assert!(rep.signatures_checked);
    assert_eq!(rep.unchecked_signed, 0);
}

/// A rotation as the host makes it: the key change is signed under the key it retires, and the
/// new key signs from the next batch on.
fn rotate(l: &mut Ledger, new: &femtoclaw_ledger::SigningKey) {
    l.append_batch(vec![Entry::KeyChange {
        name: new.name().into(),
        old_key_id: Some(common::fixed_key().key_id()),
        new_verifier_key: new.verifier().to_string(),
    }])
    .unwrap();
    l.set_signing_key(Some(new.clone()));
}

fn second_key() -> femtoclaw_ledger::SigningKey {
    femtoclaw_ledger::SigningKey::from_seed("femtoclaw.test/ledger2", [5; 32]).unwrap()
}

fn both_keys() -> VerifyOptions {
    VerifyOptions {
        keys: vec![common::fixed_key().verifier(), second_key().verifier()],
        ..VerifyOptions::default()
    }
}

// Verifies: FC-CRYPTO-3617
#[test]
fn key_rotation_verifies_with_both_keys_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 2, 2);
    rotate(&mut l, &second_key());
    fill(&mut l, 2, 2);
    let old_only = VerifyOptions::with_key(common::fixed_key().verifier());
    assert!(matches!(
        verify_dir(dir.path(), &old_only),
        Err(femtoclaw_ledger::VerifyError::UnknownKey { checkpoint: 3, .. })
    ));
    let new_only = VerifyOptions::with_key(second_key().verifier());
    assert!(matches!(
        verify_dir(dir.path(), &new_only),
        Err(femtoclaw_ledger::VerifyError::UnknownKey { checkpoint: 0, .. })
    ));
    assert_eq!(verify_dir(dir.path(), &both_keys()).unwrap().checkpoints, 5);
}

// Verifies: FC-CRYPTO-3617, FC-FORMAL-5209
/// After a recorded rotation the old key is retired: a checkpoint it signs later is refused,
/// though the verifier pins it (it signed the history before the rotation).
#[test]
fn a_retired_key_signs_nothing_after_its_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    fill(&mut l, 2, 2);
    rotate(&mut l, &second_key());
    fill(&mut l, 1, 2);
    // Whoever kept the old key signs on with it.
    l.set_signing_key(Some(common::fixed_key()));
    fill(&mut l, 1, 2);
    match verify_dir(dir.path(), &both_keys()) {
        Err(femtoclaw_ledger::VerifyError::NotKeyInForce {
            checkpoint: 4,
            index,
            key,
            ..
        }) => {
            assert_eq!(index, 4);
            assert_eq!(key, second_key().verifier().to_string());
        }
        other => panic!("a retired key's checkpoint was accepted: {other:?}"),
    }
}

// Verifies: FC-CRYPTO-3617, FC-FORMAL-5007
/// The ledger's first entry names its first key; another pinned key signs nothing before a
/// rotation hands over to it.
#[test]
fn the_first_key_change_names_the_key_in_force_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(dir.path());
    l.append_batch(vec![Entry::KeyChange {
        name: common::fixed_key().name().into(),
        old_key_id: None,
        new_verifier_key: common::fixed_key().verifier().to_string(),
    }])
    .unwrap();
    l.set_signing_key(Some(second_key()));
    fill(&mut l, 1, 2);
    assert!(matches!(
        verify_dir(dir.path(), &both_keys()),
        Err(femtoclaw_ledger::VerifyError::NotKeyInForce {
            checkpoint: 1,
            index: 0,
            ..
        })
    ));
}

// Verifies: FC-CORE-0316, FC-MEM-2408, FC-MEM-2417, FC-MEM-4402, FC-OPS-5704, FC-FORMAL-5017
/// An invocation written ahead of an effect has a start and no end until it finishes; opening
/// the ledger names every such invocation (the host stopped during it), and no other.
#[test]
fn open_names_the_invocations_that_started_and_never_ended() {
    let dir = tempfile::tempdir().unwrap();
    let all = common::one_of_each();
    let start = |n: u64| match all[0].1.clone() {
        Entry::InvocationStart {
            principal,
            groups,
            capability,
            version,
            component_sha256,
            manifest_sha256,
            wit_world,
            engine_digest,
            wasmtime_version,
            fuel_budget,
            policy_digest,
            function,
            args,
            ..
        } => Entry::InvocationStart {
            invocation: n,
            principal,
            groups,
            capability,
            version,
            component_sha256,
            manifest_sha256,
            wit_world,
            engine_digest,
            wasmtime_version,
            fuel_budget,
            policy_digest,
            function,
            args,
            trace_id: None,
            approval: None,
        },
        _ => unreachable!("the first sample is a start"),
    };
    let end = |n: u64| Entry::InvocationEnd {
        invocation: n,
        result: None,
        fuel_consumed: 1,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut l = open(dir.path());
    // 1 ends in its own batch, 2 and 3 start and interleave, 2 ends, 3 never does.
    l.append_batch(vec![start(1), common::call(1, 0), end(1)])
        .unwrap();
    l.append_batch(vec![start(2), common::call(2, 0)]).unwrap();
    l.append_batch(vec![start(3), common::call(3, 0)]).unwrap();
    l.append_batch(vec![common::call(2, 1), end(2)]).unwrap();
    drop(l);
    let (l, recovery) = Ledger::open(dir.path(), opts()).unwrap();
    assert_eq!(recovery.unfinished, [3]);
    // The index finds an invocation's entries wherever they landed.
    assert_eq!(l.invocation_entries(2).unwrap(), [3, 4, 7, 8]);
    let mut l = l;
    l.append_batch(vec![end(3)]).unwrap();
    drop(l);
    let (_, recovery) = Ledger::open(dir.path(), opts()).unwrap();
    assert!(recovery.unfinished.is_empty(), "{:?}", recovery.unfinished);
}

// Verifies: FC-MEM-2414, FC-OPS-5709
/// With a head record outside the directory, a ledger restored to an earlier state (index and
/// all) is refused by name; without one, it opens.
#[test]
fn a_head_record_refuses_a_ledger_that_went_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let head = outside.path().join("head");
    let with_head = || LedgerOptions {
        head: Some(head.clone()),
        ..opts()
    };
    let (mut l, _) = Ledger::open(dir.path(), with_head()).unwrap();
    fill(&mut l, 1, 2);
    drop(l);
    let backup = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    };
    copy(dir.path(), &backup.path().join("ledger"));
    let (mut l, _) = Ledger::open(dir.path(), with_head()).unwrap();
    fill(&mut l, 1, 2);
    drop(l);
    std::fs::remove_dir_all(dir.path()).unwrap();
    copy(&backup.path().join("ledger"), dir.path());

    match Ledger::open(dir.path(), with_head()) {
        Err(femtoclaw_ledger::LedgerError::WentBackwards { size, found, .. }) => {
            assert_eq!((size, found), (4, 2));
        }
        other => panic!("a rolled-back ledger opened: {:?}", other.map(|(l, _)| l)),
    }
    assert!(Ledger::open(dir.path(), opts()).is_ok());
}

/// The peak resident memory of this process, in KiB (Linux's `VmHWM`).
#[cfg(target_os = "linux")]
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Indexing an invocation of many host calls, or reindexing a long ledger, holds a bounded amount
/// of memory: the index is written in bounded batches with a bounded cache. Measured in a child
/// process of its own, so that no other test's memory counts.
// Verifies: FC-EXEC-0612
#[cfg(target_os = "linux")]
#[test]
fn indexing_many_entries_keeps_memory_bounded() {
    const NAME: &str = "indexing_many_entries_keeps_memory_bounded";
    const CHILD: &str = "FEMTOCLAW_TEST_INDEX_MEMORY_DIR";
    const ENTRIES: u32 = 60_000;
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        let mut l = open(dir);
        let inv = l.next_invocation();
        let entries: Vec<Entry> = (0..ENTRIES).map(|s| common::call(inv, s)).collect();
        let before = peak_rss_kib();
        l.append_batch(entries).unwrap();
        l.flush_index().unwrap();
        let appended = peak_rss_kib() - before;
        l.reindex().unwrap();
        let reindexed = peak_rss_kib() - before;
        println!("peak growth KiB: append {appended} reindex {reindexed}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("peak growth KiB:"))
        .map(|(_, figures)| figures)
        .unwrap();
    let figures: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // The entries themselves are some 10 MiB; the index of 60 000 entries, written in one sled
    // batch with sled's default cache, held several hundred.
    for kib in figures {
        assert!(
            kib < 96 * 1024,
            "indexing {ENTRIES} entries grew the peak by {kib} KiB: {line}"
        );
    }
}

/// The access mode (`O_ACCMODE` bits of `flags:` in `/proc/self/fdinfo`) of every descriptor
/// this process holds open on a segment of `dir`, by segment file name.
#[cfg(target_os = "linux")]
fn segment_modes(dir: &Path) -> Vec<(String, u32)> {
    let segments = dir.join("segments").canonicalize().unwrap();
    let mut modes = Vec::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if target.parent() != Some(segments.as_path()) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        modes.push((name, flags & 3));
    }
    modes.sort();
    modes
}

// Verifies: FC-MEM-4410
#[cfg(target_os = "linux")]
#[test]
fn sealed_segments_are_held_read_only_after_a_rotation_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.segment_size = 4096;
    let (mut l, _) = Ledger::open(dir.path(), o.clone()).unwrap();
    fill(&mut l, 20, 5);
    let check = |modes: Vec<(String, u32)>| {
        let last = modes.iter().map(|m| m.0.clone()).max().unwrap();
        assert!(modes.len() > 2, "{modes:?}");
        for (name, mode) in &modes {
            if *name == last {
                assert_eq!(*mode, 2, "the last segment is open read-write: {modes:?}");
            } else {
                assert_eq!(
                    *mode, 0,
                    "sealed segment {name} is open for writing: {modes:?}"
                );
            }
        }
    };
    // Rotated while open.
    check(segment_modes(dir.path()));
    drop(l);
    // Reopened.
    let (l, _) = Ledger::open(dir.path(), o).unwrap();
    check(segment_modes(dir.path()));
    drop(l);
}
