//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use femtoclaw_ledger::{Entry, SigningKey, Value};

/// A fixed key (seed 0x07 repeated) so that golden outputs are stable.
pub fn fixed_key() -> SigningKey {
    SigningKey::from_seed("femtoclaw.test/ledger", [7u8; 32]).unwrap()
}

/// A different fixed key.
pub fn other_key() -> SigningKey {
    SigningKey::from_seed("femtoclaw.test/ledger", [9u8; 32]).unwrap()
}

/// One entry of every kind, exercising every value kind.
pub fn one_of_each() -> Vec<(&'static str, Entry)> {
    let rich = Value::Record(vec![
        ("b".into(), Value::Bool(true)),
        ("s8".into(), Value::S8(-8)),
        ("s16".into(), Value::S16(-16_000)),
        ("s32".into(), Value::S32(-2_000_000_000)),
        ("s64".into(), Value::S64(i64::MIN)),
        ("u8".into(), Value::U8(255)),
        ("u16".into(), Value::U16(65_535)),
        ("u32".into(), Value::U32(4_000_000_000)),
        ("u64".into(), Value::U64(u64::MAX)),
        ("f32".into(), Value::f32(1.5)),
        ("f64".into(), Value::F64(0x7ff8_0000_0000_0001)), // a NaN with payload
        ("c".into(), Value::Char('λ')),
        ("str".into(), Value::String("héllo\nworld".into())),
        ("list".into(), Value::List(vec![Value::U8(1), Value::U8(2)])),
        (
            "tuple".into(),
            Value::Tuple(vec![Value::String("a".into()), Value::S32(3)]),
        ),
        (
            "variant".into(),
            Value::Variant {
                case: "some-case".into(),
                payload: Some(Box::new(Value::U32(9))),
            },
        ),
        (
            "variant-empty".into(),
            Value::Variant {
                case: "none".into(),
                payload: None,
            },
        ),
        ("enum".into(), Value::Enum("green".into())),
        (
            "option".into(),
            Value::Option(Some(Box::new(Value::Option(None)))),
        ),
        (
            "ok".into(),
            Value::Result(Ok(Some(Box::new(Value::String("fine".into()))))),
        ),
        ("err".into(), Value::Result(Err(None))),
        (
            "flags".into(),
            Value::Flags(vec!["read".into(), "write".into()]),
        ),
        ("bytes".into(), Value::Bytes(vec![0, 1, 2, 0xff])),
    ]);
    vec![
        (
            "invocation-start",
            Entry::InvocationStart {
                invocation: 1,
                principal: "agent:alice".into(),
                groups: vec!["ops".into()],
                capability: "textstats".into(),
                version: "0.1.0".into(),
                component_sha256: [0x11; 32],
                manifest_sha256: [0x12; 32],
                wit_world: "femtoclaw:host/capability@0.1.0".into(),
                engine_digest: [0x22; 32],
                wasmtime_version: "48.0.8".into(),
                fuel_budget: 10_000_000,
                policy_digest: Some([0x33; 32]),
                function: "count-words".into(),
                args: vec![
                    ("text".into(), Value::String("one two three".into())),
                    ("options".into(), rich.clone()),
                ],
                trace_id: Some([0x4b; 16]),
                approval: Some(7),
            },
        ),
        (
            "host-call",
            Entry::HostCall {
                invocation: 1,
                seq: 0,
                interface: "wasi:clocks/wall-clock@0.2.0".into(),
                function: "now".into(),
                params: Value::Tuple(vec![]),
                result: Value::Record(vec![
                    ("seconds".into(), Value::U64(1_700_000_000)),
                    ("nanoseconds".into(), Value::U32(5)),
                ]),
                fuel_remaining: 9_999_000,
            },
        ),
        (
            "decision",
            Entry::Decision {
                invocation: 1,
                action: "http.get".into(),
                resource: "https://example.com/".into(),
                allowed: false,
                policy_ids: vec!["policy0".into(), "deny-net".into()],
                policy_digest: [0x44; 32],
            },
        ),
        (
            "trap",
            Entry::Trap {
                invocation: 1,
                kind: "fuel-exhausted".into(),
                message: "all fuel consumed by WebAssembly".into(),
                fuel_consumed: 10_000_000,
            },
        ),
        (
            "invocation-end",
            Entry::InvocationEnd {
                invocation: 1,
                result: Some(rich),
                fuel_consumed: 1234,
                stdout: b"out\n".to_vec(),
                stderr: vec![],
            },
        ),
        (
            "policy-change",
            Entry::PolicyChange {
                policy_digest: [0x55; 32],
                source: "policy/default.cedar".into(),
            },
        ),
        (
            "key-change",
            Entry::KeyChange {
                name: "femtoclaw.test/ledger".into(),
                old_key_id: Some([0xde, 0xad, 0xbe, 0xef]),
                new_verifier_key: fixed_key().verifier().to_string(),
            },
        ),
        (
            "host-call-intent",
            Entry::HostCallIntent {
                invocation: 1,
                seq: 3,
                interface: "femtoclaw:host/http@0.1.0".into(),
                function: "send".into(),
                params: Value::Tuple(vec![Value::Record(vec![
                    ("method".into(), Value::String("POST".into())),
                    ("body".into(), Value::Bytes(b"{}".to_vec())),
                ])]),
                fuel_remaining: 9_990_000,
            },
        ),
        (
            "token-change",
            Entry::TokenChange {
                action: "create".into(),
                name: "deploy-bot".into(),
                principal: "agent:deploy".into(),
                groups: vec!["ops".into(), "ci".into()],
                expires: Some(1_800_000_000),
                token_sha256: [0x66; 32],
            },
        ),
        (
            "approval",
            Entry::Approval {
                request: 7,
                action: "grant".into(),
                fingerprint: [0x77; 32],
                by: "user:ops".into(),
                reason: "checked the recipient".into(),
                at: 1_800_000_000,
                expires: Some(1_800_003_600),
            },
        ),
    ]
}

/// A small host-call entry for invocation `inv`.
pub fn call(inv: u64, seq: u32) -> Entry {
    Entry::HostCall {
        invocation: inv,
        seq,
        interface: "femtoclaw:host/kv@0.1.0".into(),
        function: "get".into(),
        params: Value::Tuple(vec![Value::String(format!("key-{inv}-{seq}"))]),
        result: Value::Result(Ok(Some(Box::new(Value::Bytes(vec![seq as u8; 16]))))),
        fuel_remaining: 1_000_000 - u64::from(seq),
    }
}
