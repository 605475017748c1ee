//! Large recorded bytes live beside the ledger, by digest: not in the segments, in the export,
//! verified by their digest, and put back for replay.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use femtoclaw_ledger::{
    BLOB_THRESHOLD, Entry, Ledger, LedgerOptions, Value, VerifyError, VerifyOptions, parse_export,
    verify_export, write_export,
};

fn big_call(inv: u64, fill: u8, len: usize) -> Entry {
    Entry::HostCall {
        invocation: inv,
        seq: 0,
        interface: "femtoclaw:host/http@0.1.0".into(),
        function: "send".into(),
        params: Value::Tuple(vec![Value::Bytes(b"small".to_vec())]),
        result: Value::Tuple(vec![Value::Result(Ok(Some(Box::new(Value::Record(
            vec![("body".into(), Value::Bytes(vec![fill; len]))],
        )))))]),
        fuel_remaining: 7,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// Verifies: FC-MEM-2306, FC-MEM-2324, FC-CRYPTO-3626
#[test]
fn large_bytes_are_stored_by_digest_exported_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, _) =
        Ledger::open(dir.path(), LedgerOptions::with_key(common::fixed_key())).unwrap();
    let original = big_call(0, 0xab, BLOB_THRESHOLD + 1);
    l.append_batch(vec![
        original.clone(),
        big_call(1, 0x01, BLOB_THRESHOLD - 1),
    ])
    .unwrap();

    // The segment holds a reference; the bytes are in the blob directory.
    let marker = vec![0xab; 4096];
    for seg in std::fs::read_dir(dir.path().join("segments")).unwrap() {
        let bytes = std::fs::read(seg.unwrap().path()).unwrap();
        assert!(!contains(&bytes, &marker));
    }
    let stored = l.get(0).unwrap();
    assert_eq!(stored.blob_refs().len(), 1);
    assert!(matches!(
        &stored,
        Entry::HostCall { result, .. } if format!("{result:?}").contains("Blob")
    ));
    // Below the threshold stays inline.
    assert!(l.get(1).unwrap().blob_refs().is_empty());
    let sha = stored.blob_refs()[0];
    assert_eq!(
        l.blobs().get(&sha).unwrap().unwrap().len(),
        BLOB_THRESHOLD + 1
    );

    // The export carries the blob; it verifies and puts the bytes back.
    let path = dir.path().join("export");
    l.export(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let key = common::fixed_key().verifier();
    let opts = VerifyOptions {
        keys: vec![key],
        ..VerifyOptions::default()
    };
    verify_export(&bytes, &opts).unwrap();
    let export = parse_export(&bytes).unwrap();
    assert_eq!(export.blobs.len(), 1);
    let mut back = Entry::decode(export.entries[0]).unwrap();
    back.internalize(&mut |s| export.blob(s).map(<[u8]>::to_vec))
        .unwrap();
    assert_eq!(back, original);

    // A changed byte of the blob is an integrity failure.
    let mut tampered = bytes.clone();
    let at = tampered.len() - 2;
    tampered[at] ^= 1;
    assert!(matches!(
        verify_export(&tampered, &opts),
        Err(VerifyError::BlobDigest { index: 0 })
    ));

    // An export without the blob still verifies (the leaves commit to the digest), but the
    // bytes cannot be put back.
    let entries: Vec<&[u8]> = export.entries.clone();
    let mut stripped = Vec::new();
    write_export(&mut stripped, &entries, &export.checkpoints, &[], &[]).unwrap();
    verify_export(&stripped, &opts).unwrap();
    let mut entry = Entry::decode(entries[0]).unwrap();
    assert_eq!(entry.internalize(&mut |_| None), Err(sha));
    // Nor can bytes of another digest stand in for them.
    assert_eq!(
        entry.internalize(&mut |_| Some(vec![0xab; BLOB_THRESHOLD])),
        Err(sha)
    );
}

// Verifies: FC-MEM-2406
#[test]
fn a_damaged_blob_file_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, _) = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    l.append_batch(vec![big_call(0, 7, BLOB_THRESHOLD)])
        .unwrap();
    let sha = l.get(0).unwrap().blob_refs()[0];
    let file = dir.path().join("blobs").join(hex::encode(sha));
    std::fs::write(&file, b"not the bytes").unwrap();
    assert_eq!(l.blobs().get(&sha).unwrap(), None);
    let err = l.export(&dir.path().join("export")).unwrap_err();
    assert!(err.to_string().contains(&hex::encode(sha)), "{err}");
}
