//! Tampering with an export is always detected, located, and never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use femtoclaw_ledger::{
    Export, Ledger, LedgerOptions, VerifyError, VerifyOptions, parse_export, verify_export,
    write_export,
};

/// A small export: 3 batches (2 + 3 + 1 entries), 3 checkpoints.
fn small_export() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, _) =
        Ledger::open(dir.path(), LedgerOptions::with_key(common::fixed_key())).unwrap();
    l.append_batch(vec![common::call(0, 0), common::call(0, 1)])
        .unwrap();
    l.append_batch(vec![
        common::call(1, 0),
        common::one_of_each().remove(3).1,
        common::call(1, 1),
    ])
    .unwrap();
    l.append_batch(vec![common::call(2, 0)]).unwrap();
    let p = dir.path().join("small.export");
    l.export(&p).unwrap();
    std::fs::read(p).unwrap()
}

fn key() -> VerifyOptions {
    VerifyOptions::with_key(common::fixed_key().verifier())
}

fn rebuild(entries: Vec<Vec<u8>>, checkpoints: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    write_export(&mut out, &entries, &checkpoints, &[], &[]).unwrap();
    out
}

fn parts(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let Export {
        entries,
        checkpoints,
        ..
    } = parse_export(bytes).unwrap();
    (
        entries.iter().map(|e| e.to_vec()).collect(),
        checkpoints.iter().map(|c| c.to_vec()).collect(),
    )
}

// Verifies: FC-CRYPTO-3627
#[test]
fn untouched_export_verifies() {
    let bytes = small_export();
    let r = verify_export(&bytes, &key()).unwrap();
    assert_eq!((r.entries, r.checkpoints), (6, 3));
    assert!(r.signatures_checked);
    // The same bytes re-framed by hand are identical: the format is what the docs say.
    let (e, c) = parts(&bytes);
    assert_eq!(rebuild(e, c), bytes);
}

// Verifies: FC-CRYPTO-3616, FC-ABI-4904, FC-OBS-2717, FC-UPG-3405, FC-CRYPTO-3501, FC-CRYPTO-3508, FC-CRYPTO-3509
#[test]
fn flipping_any_byte_is_detected() {
    let bytes = small_export();
    for i in 0..bytes.len() {
        // One flip per byte, walking the bit position along.
        let bit = 1u8 << (i % 8);
        let mut m = bytes.clone();
        m[i] ^= bit;
        let r = verify_export(&m, &key());
        assert!(r.is_err(), "flip {bit:#x} at byte {i} went undetected");
    }
}

// Verifies: FC-CRYPTO-3615, FC-FORMAL-5202
#[test]
fn a_changed_entry_is_located_to_its_batch() {
    let bytes = small_export();
    let (mut e, c) = parts(&bytes);
    // Change a string inside entry 3 (second batch, sizes 2..5), keeping it decodable.
    let pos = e[3].iter().position(|&b| b == b'f').unwrap();
    e[3][pos] = b'g';
    let err = verify_export(&rebuild(e, c), &key()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::RootMismatch {
            checkpoint: 1,
            size: 5,
            from: 2
        }
    );
    assert!(err.to_string().contains("2..5"), "{err}");
}

// Verifies: FC-CRYPTO-3623
#[test]
fn a_malformed_entry_is_named_by_index() {
    let bytes = small_export();
    let (mut e, c) = parts(&bytes);
    e[4].push(0);
    assert!(matches!(
        verify_export(&rebuild(e, c), &key()),
        Err(VerifyError::BadRecord { index: 4, .. })
    ));
}

// Verifies: FC-CRYPTO-3616, FC-CRYPTO-3623, FC-OBS-2717, FC-FORMAL-5203, FC-CRYPTO-3509
#[test]
fn truncation_is_detected() {
    let bytes = small_export();
    for cut in 0..bytes.len() {
        assert!(
            verify_export(&bytes[..cut], &key()).is_err(),
            "cut at {cut}"
        );
    }
    // Dropping the last batch's entry but keeping its checkpoint: entries are missing.
    let (mut e, c) = parts(&bytes);
    e.pop();
    assert_eq!(
        verify_export(&rebuild(e, c), &key()),
        Err(VerifyError::MissingEntries {
            checkpoint: 2,
            size: 6,
            entries: 5
        })
    );
}

// Verifies: FC-CRYPTO-3615, FC-CRYPTO-3623, FC-FORMAL-5203
#[test]
fn deleting_or_swapping_entries_is_detected() {
    let bytes = small_export();
    let (e, c) = parts(&bytes);
    let mut deleted = e.clone();
    deleted.remove(1);
    assert!(matches!(
        verify_export(&rebuild(deleted, c.clone()), &key()),
        Err(VerifyError::RootMismatch { checkpoint: 0, .. })
    ));
    let mut swapped = e.clone();
    swapped.swap(2, 4);
    assert_eq!(
        verify_export(&rebuild(swapped, c.clone()), &key()),
        Err(VerifyError::RootMismatch {
            checkpoint: 1,
            size: 5,
            from: 2
        })
    );
    // An entry added after the last checkpoint is covered by nothing.
    let mut added = e;
    added.push(common::call(7, 7).encode());
    assert_eq!(
        verify_export(&rebuild(added, c), &key()),
        Err(VerifyError::Uncovered {
            from: 6,
            entries: 7
        })
    );
}

// Verifies: FC-CRYPTO-3614, FC-CRYPTO-3623, FC-OBS-2710, FC-FORMAL-5209
#[test]
fn replaced_signatures_and_other_keys_are_detected() {
    let bytes = small_export();
    let (e, c) = parts(&bytes);
    // Replace checkpoint 1's signature with checkpoint 0's (same key, wrong text).
    let sig_of = |note: &[u8]| {
        let s = std::str::from_utf8(note).unwrap();
        s[s.rfind("\n\n").unwrap() + 2..].to_owned()
    };
    let text_of = |note: &[u8]| {
        let s = std::str::from_utf8(note).unwrap();
        s[..s.rfind("\n\n").unwrap() + 2].to_owned()
    };
    let mut c2 = c.clone();
    c2[1] = format!("{}{}", text_of(&c[1]), sig_of(&c[0])).into_bytes();
    assert_eq!(
        verify_export(&rebuild(e.clone(), c2), &key()),
        Err(VerifyError::BadSignature {
            checkpoint: 1,
            size: 5
        })
    );
    // Re-sign checkpoint 2 with another key of the same name.
    let other = common::other_key();
    let mut c3 = c.clone();
    let text = text_of(&c[2]);
    c3[2] = other
        .sign_note(&text[..text.len() - 1])
        .unwrap()
        .into_bytes();
    assert_eq!(
        verify_export(&rebuild(e.clone(), c3), &key()),
        Err(VerifyError::UnknownKey {
            checkpoint: 2,
            size: 6
        })
    );
    // A whole log re-signed by another key does not verify against the pinned key,
    // however consistent it is.
    let dir = tempfile::tempdir().unwrap();
    let (mut l, _) = Ledger::open(dir.path(), LedgerOptions::with_key(other)).unwrap();
    l.append_batch(vec![common::call(0, 0)]).unwrap();
    let p = dir.path().join("x");
    l.export(&p).unwrap();
    assert!(matches!(
        verify_export(&std::fs::read(p).unwrap(), &key()),
        Err(VerifyError::UnknownKey { checkpoint: 0, .. })
    ));
}

// Verifies: FC-CRYPTO-3619, FC-FORMAL-5203
#[test]
fn reordered_checkpoints_and_foreign_origins_are_detected() {
    let bytes = small_export();
    let (e, c) = parts(&bytes);
    let mut rev = c.clone();
    rev.swap(0, 1);
    assert!(verify_export(&rebuild(e.clone(), rev), &key()).is_err());
    let opts = VerifyOptions {
        keys: key().keys,
        origin: Some("example.com/other".into()),
        ..VerifyOptions::default()
    };
    assert!(matches!(
        verify_export(&bytes, &opts),
        Err(VerifyError::OriginMismatch { checkpoint: 0, .. })
    ));
}

// Verifies: FC-CRYPTO-3626, FC-OBS-2717
#[test]
fn components_section_is_checked_and_optional() {
    let bytes = small_export();
    let (e, c) = parts(&bytes);
    use sha2::Digest as _;
    let comp = b"\0asm component bytes".to_vec();
    let sha: [u8; 32] = sha2::Sha256::digest(&comp).into();
    let mut out = Vec::new();
    write_export(&mut out, &e, &c, &[(sha, comp.clone())], &[]).unwrap();
    assert_eq!(verify_export(&out, &key()).unwrap().entries, 6);
    assert_eq!(parse_export(&out).unwrap().components.len(), 1);
    let mut bad = Vec::new();
    write_export(&mut bad, &e, &c, &[([0; 32], comp)], &[]).unwrap();
    assert_eq!(
        verify_export(&bad, &key()),
        Err(VerifyError::ComponentDigest { index: 0 })
    );
}

// Verifies: FC-CRYPTO-3624
#[test]
fn error_messages_are_lowercase_without_final_period() {
    let samples = [
        VerifyError::BadHeader,
        VerifyError::RootMismatch {
            checkpoint: 1,
            size: 5,
            from: 2,
        },
        VerifyError::UnknownKey {
            checkpoint: 0,
            size: 1,
        },
        VerifyError::Uncovered {
            from: 1,
            entries: 2,
        },
    ];
    for e in samples {
        let s = e.to_string();
        assert!(s.chars().next().unwrap().is_lowercase(), "{s}");
        assert!(!s.ends_with('.'), "{s}");
    }
}

// Verifies: FC-CRYPTO-3620, FC-OPS-4025, FC-OBS-2712, FC-FORMAL-5205
/// The approval audit: a log whose invocation spends an approval granted for exactly its call
/// verifies; one that spends an approval never granted, granted for another call, or twice, or
/// that decides an approval twice, fails at that entry, signed checkpoints or not.
#[test]
fn an_approval_spent_without_its_grant_fails_verification_at_the_entry() {
    use femtoclaw_ledger::{Entry, Value, approval_fingerprint, args_digest};
    let start = |number: u64, name: &str, spends: Option<u64>| {
        let mut entry = common::one_of_each().remove(0).1;
        if let Entry::InvocationStart {
            invocation,
            args,
            trace_id,
            approval,
            ..
        } = &mut entry
        {
            *invocation = number;
            *args = vec![("name".into(), Value::String(name.into()))];
            (*trace_id, *approval) = (None, spends);
        }
        entry
    };
    let fingerprint_of = |entry: &Entry| match entry {
        Entry::InvocationStart {
            principal,
            capability,
            version,
            function,
            args,
            ..
        } => approval_fingerprint(principal, capability, version, function, &args_digest(args)),
        _ => unreachable!(),
    };
    let step = |request: u64, action: &str, fingerprint: [u8; 32]| Entry::Approval {
        request,
        action: action.into(),
        fingerprint,
        by: "FemtoClaw::User::\"ops\"".into(),
        reason: String::new(),
        at: 1_800_000_000,
        expires: Some(1_800_003_600),
    };
    let ada = fingerprint_of(&start(0, "Ada", None));
    let verdict = |entries: Vec<Entry>| {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, _) =
            Ledger::open(dir.path(), LedgerOptions::with_key(common::fixed_key())).unwrap();
        for entry in entries {
            l.append_batch(vec![entry]).unwrap();
        }
        drop(l);
        femtoclaw_ledger::verify_dir(dir.path(), &key())
    };
    // Honest: asked (by the pending invocation 1), granted, spent once by invocation 2.
    let honest = vec![
        start(1, "Ada", None),
        step(1, "request", ada),
        step(1, "grant", ada),
        start(2, "Ada", Some(1)),
    ];
    verdict(honest.clone()).unwrap();
    let fails_at = |entries: Vec<Entry>, index: u64, says: &str| match verdict(entries) {
        Err(VerifyError::Approval { index: at, reason }) => {
            assert_eq!(at, index, "{reason}");
            assert!(reason.contains(says), "{reason}");
        }
        other => panic!("expected an approval failure at {index}, got {other:?}"),
    };
    fails_at(
        vec![start(2, "Ada", Some(1))],
        0,
        "spends approval 1, which was never asked for",
    );
    fails_at(
        vec![
            start(1, "Ada", None),
            step(1, "request", ada),
            start(2, "Ada", Some(1)),
        ],
        2,
        "which was not granted",
    );
    fails_at(
        vec![
            start(1, "Ada", None),
            step(1, "request", ada),
            step(1, "deny", ada),
            start(2, "Ada", Some(1)),
        ],
        3,
        "which was not granted",
    );
    fails_at(
        [honest.clone(), vec![start(3, "Ada", Some(1))]].concat(),
        4,
        "already spent",
    );
    fails_at(
        vec![
            start(1, "Ada", None),
            step(1, "request", ada),
            step(1, "grant", ada),
            start(2, "Bob", Some(1)),
        ],
        3,
        "granted for another call",
    );
    fails_at(
        vec![
            start(1, "Ada", None),
            step(1, "request", ada),
            step(1, "grant", [9; 32]),
        ],
        2,
        "for another call than the one asked",
    );
    fails_at(
        [honest[..3].to_vec(), vec![step(1, "grant", ada)]].concat(),
        3,
        "decided twice",
    );
}
