//! The canonical entry encoding: frozen by golden files, round-trips, and never panics
//! on hostile bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use femtoclaw_ledger::{CallFault, DecodeError, ENCODING_VERSION, Entry, MAX_VALUE_DEPTH, Value};
use proptest::prelude::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v3")
}

// Verifies: FC-EXEC-0719, FC-MEM-2301, FC-MEM-2302, FC-MEM-2304, FC-MEM-2326, FC-ABI-4901, FC-ABI-4911
/// Regenerate with `FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-ledger --test encoding`.
/// Version 3 is frozen: blessing changed bytes is a format change and needs a version bump.
#[test]
fn version_3_encoding_matches_golden_files() {
    let bless = std::env::var_os("FEMTOCLAW_BLESS").is_some();
    let mut kinds = Vec::new();
    for (name, entry) in common::one_of_each() {
        let bytes = entry.encode();
        assert_eq!(bytes[0], 3, "version byte first");
        let path = golden_dir().join(format!("{name}.bin"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("missing golden file {}: {e}", path.display()));
        assert_eq!(bytes, golden, "encoding of `{name}` changed");
        assert_eq!(
            Entry::decode(&golden).unwrap(),
            entry,
            "golden `{name}` decodes"
        );
        kinds.push(bytes[1]);
    }
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "one golden file per kind"
    );
}

// Verifies: FC-MEM-2305, FC-MEM-2326
/// The blob reference (value tag 0x17), added within version 1 and kept in version 2, frozen like the entry kinds:
/// a host call whose result is a blob. Blessed with the other golden files.
#[test]
fn blob_references_match_their_golden_file() {
    let entry = Entry::HostCall {
        invocation: 7,
        seq: 2,
        interface: "femtoclaw:host/http@0.1.0".into(),
        function: "send".into(),
        params: Value::Tuple(vec![Value::String("GET".into())]),
        result: Value::Tuple(vec![Value::Blob {
            sha256: [0xab; 32],
            len: 70_000,
        }]),
        fuel_remaining: 99,
    };
    let bytes = entry.encode();
    let path = golden_dir().join("blob-value.bin");
    if std::env::var_os("FEMTOCLAW_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("missing golden file {}: {e}", path.display()));
    assert_eq!(bytes, golden, "encoding of a blob reference changed");
    assert_eq!(Entry::decode(&golden).unwrap(), entry);
    // The result ends with the blob (tag, digest, length u64 LE); the fuel left follows.
    let tail = &golden[golden.len() - 49..golden.len() - 8];
    assert_eq!(tail[0], 0x17);
    assert_eq!(&tail[1..33], &[0xab; 32]);
    assert_eq!(&tail[33..], &70_000u64.to_le_bytes());
}

// Verifies: FC-MEM-2307, FC-MEM-2326
/// A host call that trapped records its fault where the result tuple would be, in the entry
/// encoding (no new tag): frozen like the entry kinds. Blessed with the other golden files.
#[test]
fn call_faults_match_their_golden_file_and_are_told_from_results() {
    let fault = CallFault::Trap("log message of 17408 bytes exceeds the limit of 16384".into());
    let entry = Entry::HostCall {
        invocation: 3,
        seq: 0,
        interface: "femtoclaw:host/log@0.1.0".into(),
        function: "log".into(),
        params: Value::Tuple(vec![Value::Enum("info".into()), Value::String("x".into())]),
        result: fault.to_value(),
        fuel_remaining: 41,
    };
    let bytes = entry.encode();
    let path = golden_dir().join("host-call-fault.bin");
    if std::env::var_os("FEMTOCLAW_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("missing golden file {}: {e}", path.display()));
    assert_eq!(bytes, golden, "encoding of a call fault changed");
    let Entry::HostCall { result, .. } = Entry::decode(&golden).unwrap() else {
        panic!("not a host call");
    };
    assert_eq!(CallFault::from_value(&result), Some(fault));
    let limit = CallFault::Limit("recorded-bytes limit".into());
    assert_eq!(CallFault::from_value(&limit.to_value()), Some(limit));
    // What a call returns is a tuple: never a fault, whatever it holds.
    for returned in [
        Value::Tuple(vec![]),
        Value::Tuple(vec![CallFault::Trap("m".into()).to_value()]),
        Value::Variant {
            case: "other".into(),
            payload: Some(Box::new(Value::String("m".into()))),
        },
        Value::Variant {
            case: "trap".into(),
            payload: None,
        },
    ] {
        assert_eq!(CallFault::from_value(&returned), None, "{returned:?}");
    }
}

// Verifies: FC-MEM-2302
#[test]
fn golden_trap_bytes_are_the_documented_layout() {
    // Spelled out by hand from docs/ledger-format.md: version, kind, u64 LE, strings with
    // u32 LE lengths, u64 LE.
    let e = Entry::Trap {
        invocation: 2,
        kind: "trap".into(),
        message: "x".into(),
        fuel_consumed: 3,
    };
    let mut want = vec![ENCODING_VERSION, 4];
    want.extend_from_slice(&2u64.to_le_bytes());
    want.extend_from_slice(&4u32.to_le_bytes());
    want.extend_from_slice(b"trap");
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(b"x");
    want.extend_from_slice(&3u64.to_le_bytes());
    assert_eq!(e.encode(), want);
}

// Verifies: FC-MEM-2312, FC-MEM-2313, FC-ABI-4903, FC-ABI-4907, FC-UPG-3404
#[test]
fn decode_refuses_other_versions_and_trailing_bytes() {
    let mut bytes = common::call(1, 2).encode();
    bytes.push(0);
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::TrailingBytes { .. })
    ));
    bytes.pop();
    bytes[0] = 4;
    assert_eq!(
        Entry::decode(&bytes),
        Err(DecodeError::UnsupportedVersion { version: 4 })
    );
    assert!(Entry::decode(&[]).is_err());
}

// Verifies: FC-MEM-2312, FC-ABI-4902, FC-ABI-4907, FC-ABI-4911, FC-UPG-3404
/// Entries of earlier versions (kept in `tests/golden/v1/` and `v2/`, frozen when each was
/// current) are refused by their version, never misread as this one.
#[test]
fn earlier_versions_are_refused_by_version() {
    for (version, count) in [(1u8, 10), (2, 11)] {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/v{version}"));
        let mut seen = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            assert_eq!(
                Entry::decode(&bytes),
                Err(DecodeError::UnsupportedVersion { version })
            );
            seen += 1;
        }
        assert_eq!(seen, count, "golden files of version {version}");
    }
}

// Verifies: FC-EXEC-0715, FC-MEM-2314
#[test]
fn decode_refuses_non_canonical_bool_and_bad_char() {
    let e = Entry::Decision {
        invocation: 0,
        action: "a".into(),
        resource: "r".into(),
        allowed: true,
        policy_ids: vec![],
        policy_digest: [0; 32],
    };
    let mut bytes = e.encode();
    // version, kind, u64, (4+1), (4+1) → the bool is at 2 + 8 + 5 + 5.
    assert_eq!(bytes[20], 1);
    bytes[20] = 2;
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::BadTag { what: "bool", .. })
    ));

    let e = Entry::InvocationEnd {
        invocation: 0,
        result: Some(Value::Char('a')),
        fuel_consumed: 0,
        stdout: vec![],
        stderr: vec![],
    };
    let mut bytes = e.encode();
    // version, kind, u64, option tag, value tag, then the u32 char.
    bytes[12..16].copy_from_slice(&0xD800u32.to_le_bytes());
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::BadChar { .. })
    ));
}

// Verifies: FC-EXEC-0714, FC-MEM-2316, FC-CRYPTO-3509
#[test]
fn deeply_nested_values_are_refused_without_overflowing_the_stack() {
    // Hand-made: an option nested far deeper than the limit.
    let mut bytes = vec![ENCODING_VERSION, 5];
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.push(1); // Some(result)
    for _ in 0..100_000 {
        bytes.extend_from_slice(&[0x13, 1]); // option, Some
    }
    bytes.push(0x01);
    bytes.push(1);
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::TooDeep { .. })
    ));
    // Right at the limit it decodes.
    let mut v = Value::Bool(true);
    for _ in 0..MAX_VALUE_DEPTH - 2 {
        v = Value::Option(Some(Box::new(v)));
    }
    let e = Entry::InvocationEnd {
        invocation: 0,
        result: Some(v),
        fuel_consumed: 0,
        stdout: vec![],
        stderr: vec![],
    };
    assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
}

// Verifies: FC-EXEC-0714, FC-MEM-2317, FC-CRYPTO-3509
#[test]
fn huge_counts_do_not_allocate() {
    // A list claiming 4 billion items in a 20-byte input is refused at once.
    let mut bytes = vec![ENCODING_VERSION, 5];
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.push(1);
    bytes.push(0x0e);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::TooLong { .. })
    ));
}

// Verifies: FC-EXEC-0716, FC-MEM-2310
#[test]
fn json_form_is_readable() {
    let (_, e) = common::one_of_each().remove(5);
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["type"], "policy-change");
    assert_eq!(json["policy_digest"], "55".repeat(32));
    let back: Entry = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
    for (_, e) in common::one_of_each() {
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&s).unwrap(), e);
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i8>().prop_map(Value::S8),
        any::<i16>().prop_map(Value::S16),
        any::<i32>().prop_map(Value::S32),
        any::<i64>().prop_map(Value::S64),
        any::<u8>().prop_map(Value::U8),
        any::<u16>().prop_map(Value::U16),
        any::<u32>().prop_map(Value::U32),
        any::<u64>().prop_map(Value::U64),
        any::<u32>().prop_map(Value::F32),
        any::<u64>().prop_map(Value::F64),
        any::<char>().prop_map(Value::Char),
        ".{0,12}".prop_map(Value::String),
        "[a-z-]{1,8}".prop_map(Value::Enum),
        proptest::collection::vec("[a-z]{1,6}", 0..4).prop_map(Value::Flags),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Value::Bytes),
        (any::<[u8; 32]>(), any::<u64>()).prop_map(|(sha256, len)| Value::Blob { sha256, len }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Tuple),
            proptest::collection::vec(("[a-z]{1,6}", inner.clone()), 0..5).prop_map(Value::Record),
            ("[a-z]{1,6}", proptest::option::of(inner.clone())).prop_map(|(case, p)| {
                Value::Variant {
                    case,
                    payload: p.map(Box::new),
                }
            }),
            proptest::option::of(inner.clone()).prop_map(|v| Value::Option(v.map(Box::new))),
            (any::<bool>(), proptest::option::of(inner)).prop_map(|(ok, v)| {
                let v = v.map(Box::new);
                Value::Result(if ok { Ok(v) } else { Err(v) })
            }),
        ]
    })
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (
            any::<u64>(),
            ".{0,8}",
            any::<[u8; 32]>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::collection::vec(("[a-z]{1,5}", arb_value()), 0..4),
            proptest::option::of(any::<[u8; 16]>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(invocation, s, d, pd, args, trace_id, approval)| {
                Entry::InvocationStart {
                    invocation,
                    principal: s.clone(),
                    groups: vec![s.clone()],
                    capability: s.clone(),
                    version: "1.0.0".into(),
                    component_sha256: d,
                    manifest_sha256: pd.unwrap_or(d),
                    wit_world: s.clone(),
                    engine_digest: d,
                    wasmtime_version: "48.0.8".into(),
                    fuel_budget: invocation ^ 7,
                    policy_digest: pd,
                    function: s,
                    args,
                    trace_id,
                    approval,
                }
            }),
        (
            any::<u64>(),
            any::<u32>(),
            arb_value(),
            arb_value(),
            any::<u64>()
        )
            .prop_map(|(invocation, seq, params, result, fuel_remaining)| {
                Entry::HostCall {
                    invocation,
                    seq,
                    interface: "i".into(),
                    function: "f".into(),
                    params,
                    result,
                    fuel_remaining,
                }
            }),
        (
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(".{0,5}", 0..4),
            any::<[u8; 32]>()
        )
            .prop_map(|(invocation, allowed, policy_ids, policy_digest)| {
                Entry::Decision {
                    invocation,
                    action: "a".into(),
                    resource: "r".into(),
                    allowed,
                    policy_ids,
                    policy_digest,
                }
            }),
        (any::<u64>(), ".{0,10}", any::<u64>()).prop_map(|(invocation, message, f)| {
            Entry::Trap {
                invocation,
                kind: "trap".into(),
                message,
                fuel_consumed: f,
            }
        }),
        (
            any::<u64>(),
            proptest::option::of(arb_value()),
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(invocation, result, out)| Entry::InvocationEnd {
                invocation,
                result,
                fuel_consumed: 5,
                stdout: out.clone(),
                stderr: out,
            }),
        (any::<[u8; 32]>(), ".{0,10}").prop_map(|(policy_digest, source)| {
            Entry::PolicyChange {
                policy_digest,
                source,
            }
        }),
        (proptest::option::of(any::<[u8; 4]>()), ".{0,10}").prop_map(|(old_key_id, k)| {
            Entry::KeyChange {
                name: "n".into(),
                old_key_id,
                new_verifier_key: k,
            }
        }),
        (
            ".{0,8}",
            proptest::collection::vec(".{0,6}", 0..3),
            proptest::option::of(any::<u64>()),
            any::<[u8; 32]>(),
        )
            .prop_map(|(name, groups, expires, token_sha256)| Entry::TokenChange {
                action: "revoke".into(),
                name,
                principal: "agent:a".into(),
                groups,
                expires,
                token_sha256,
            }),
        (
            any::<u64>(),
            ".{0,8}",
            any::<[u8; 32]>(),
            ".{0,8}",
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(request, text, fingerprint, by, expires)| Entry::Approval {
                    request,
                    action: "deny".into(),
                    fingerprint,
                    by,
                    reason: text,
                    at: request ^ 3,
                    expires,
                }
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // Verifies: FC-EXEC-0720, FC-MEM-2303
    #[test]
    fn every_entry_round_trips_and_encodes_deterministically(e in arb_entry()) {
        let a = e.encode();
        let b = e.clone().encode();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(Entry::decode(&a).unwrap(), e);
    }

    // Verifies: FC-EXEC-0720, FC-MEM-2311
    #[test]
    fn encoded_len_is_the_length_of_the_canonical_encoding(v in arb_value()) {
        let call = |params: Value| Entry::HostCall {
            invocation: 1,
            seq: 0,
            interface: "i".into(),
            function: "f".into(),
            params,
            result: Value::Tuple(vec![]),
            fuel_remaining: 0,
        };
        // A bool encodes in 2 bytes: the rest of the entry is what the two encodings share.
        let around = call(Value::Bool(true)).encode().len() - 2;
        prop_assert_eq!(v.encoded_len(), (call(v.clone()).encode().len() - around) as u64);
    }

    // Verifies: FC-MEM-2318, FC-CRYPTO-3509
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Entry::decode(&bytes);
        let mut v = vec![ENCODING_VERSION];
        v.extend_from_slice(&bytes);
        let _ = Entry::decode(&v);
    }

    // Verifies: FC-MEM-2315, FC-MEM-2318, FC-CRYPTO-3509
    #[test]
    fn mutated_encodings_never_panic_and_reencode_canonically(
        e in arb_entry(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = e.encode();
        for (i, x) in flips {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        if let Ok(d) = Entry::decode(&bytes) {
            // Whatever decodes has exactly this encoding: one encoding per entry.
            prop_assert_eq!(d.encode(), bytes.clone());
        }
        let n = bytes.len();
        let _ = Entry::decode(&bytes[..cut % n]);
    }
}

// Verifies: FC-EXEC-0721, FC-MEM-2309
/// `args_digest` is the SHA-256 of exactly the bytes of a start's `args` field, and the
/// approval fingerprint commits to every part of the call (a changed part changes it).
#[test]
fn the_args_digest_is_of_the_starts_args_bytes_and_the_fingerprint_covers_the_call() {
    use sha2::Digest as _;
    let (_, start) = common::one_of_each().remove(0);
    let Entry::InvocationStart { args, .. } = &start else {
        panic!("the first sample is a start")
    };
    let bare = |with: Vec<(String, Value)>| {
        let mut entry = start.clone();
        if let Entry::InvocationStart {
            args,
            trace_id,
            approval,
            ..
        } = &mut entry
        {
            (*args, *trace_id, *approval) = (with, None, None);
        }
        entry
    };
    // With no arguments the start ends: count (4 bytes), no trace id, no approval.
    let head = bare(Vec::new()).encode().len() - 6;
    let full = bare(args.clone()).encode();
    let args_bytes = &full[head..full.len() - 2];
    assert_eq!(
        femtoclaw_ledger::args_digest(args),
        <[u8; 32]>::from(sha2::Sha256::digest(args_bytes))
    );
    let digest = femtoclaw_ledger::args_digest(args);
    let base = femtoclaw_ledger::approval_fingerprint("p", "c", "1", "f", &digest);
    for other in [
        femtoclaw_ledger::approval_fingerprint("q", "c", "1", "f", &digest),
        femtoclaw_ledger::approval_fingerprint("p", "d", "1", "f", &digest),
        femtoclaw_ledger::approval_fingerprint("p", "c", "2", "f", &digest),
        femtoclaw_ledger::approval_fingerprint("p", "c", "1", "g", &digest),
        femtoclaw_ledger::approval_fingerprint("p", "c", "1", "f", &[0; 32]),
        // Lengths are part of it: moving a byte between parts changes it.
        femtoclaw_ledger::approval_fingerprint("pc", "", "1", "f", &digest),
    ] {
        assert_ne!(other, base);
    }
}
