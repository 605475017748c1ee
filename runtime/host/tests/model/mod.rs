//! The ledger as a state machine, checked against the running host (specifications 50 and 52).
//!
//! proptest generates short sequences of operations — an invocation that returns, traps or runs
//! out of fuel, host calls the policy grants and ones it denies (a `forbid`, and a namespace the
//! manifest never asked for), an invocation the policy refuses, a policy change, a key-value
//! write and read, `log verify` (of the ledger and of a tampered export) and a replay — and runs
//! each on a real `femtoclaw-host` over its command line. A small pure model predicts what every
//! step must leave behind: the exit code and the result, the exact list of ledger entries (kind,
//! invocation, decisions, host calls, traps, ends), the sizes of the signed checkpoints, the
//! key-value state the guest reads back, and what verification and replay report. After every
//! step the host's ledger is exported and compared with the model, and the invariants of the
//! execution model are checked on it directly: the ledger only grows (every earlier entry byte
//! for byte), every invocation's entries lie between its one start and its one end, host calls
//! are numbered in order, every checkpoint's root is the Merkle root of that many leaves, the
//! last checkpoint covers every entry, and the same call with the same inputs consumes the same
//! fuel.

use std::collections::BTreeMap;

use femtoclaw_ledger::{Checkpoint, Entry, merkle, parse_export};
use femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value as Json, json};

use crate::common::{Host, MISBEHAVE_MANIFEST, code, command, s, stderr, stdout};

/// The local operator may do anything, but never read the `secret` namespace (a forbid that
/// overrides the permit).
const POLICY: &str = "permit (principal == FemtoClaw::User::\"local\", action, resource);\n\
    forbid (principal, action == FemtoClaw::Action::\"kv.read\", resource) \
    when { resource.name == \"secret\" };\n";

/// The fuel budget the manifest gives the misbehave guest, and hello's.
const BUDGET: u64 = 5_000_000;
const HELLO_BUDGET: u64 = 10_000_000;

/// The fuel `Spin` is given (`invoke --fuel`): it runs out of it.
const SPIN_FUEL: u64 = 100_000;

const LOCAL: &str = "FemtoClaw::User::\"local\"";
const BOT: &str = "FemtoClaw::Agent::\"bot\"";
const KV: &str = "wasi:keyvalue/store@0.2.0-draft2";

/// The misbehave guest asking for the namespaces `notes` and `secret` (not `other`).
fn manifest() -> String {
    format!(
        "{MISBEHAVE_MANIFEST}kv = [{{ namespace = \"notes\", write = true }}, \
         {{ namespace = \"secret\", write = true }}]\n"
    )
}

/// One step.
#[derive(Debug, Clone)]
enum Op {
    /// `divide(a, b)`: `a / b`, or a trap when `b` is 0.
    Divide { a: u32, b: u32 },
    /// `spin()` with [`SPIN_FUEL`]: fuel exhausted.
    Spin,
    /// `chatter(lines)`: one granted, recorded `log` host call.
    Chatter { lines: u32 },
    /// `kv-set("notes", k<key>, v<value>, trap)`: granted read and write; with `trap` the guest
    /// aborts after the write, which is then never applied.
    KvSet { key: u8, value: u8, trap: bool },
    /// `kv-get("notes", k<key>)`: what the last applied write left.
    KvGet { key: u8 },
    /// `kv-get` of a namespace the host call may not open: `secret` (requested, but a forbid
    /// overrides the permit) or `other` (never requested: default deny).
    KvDenied { forbidden: bool },
    /// `hello.greet` as `agent:bot`, whom no policy permits: refused before it runs.
    InvokeDenied,
    /// A new policy (one more permit for another principal): the next invocation records it.
    ChangePolicy,
    /// `log verify --key` and `log checkpoint`.
    Verify,
    /// `log verify --key` of an export with one byte flipped in entry `at` (modulo the length).
    VerifyTampered { at: u8 },
    /// `log export --with-components`, then `replay --key` on a fresh data directory.
    Replay,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..100, 0u32..3).prop_map(|(a, b)| Op::Divide { a, b }),
        1 => Just(Op::Spin),
        2 => (0u32..3).prop_map(|lines| Op::Chatter { lines }),
        3 => (0u8..3, 0u8..4, proptest::bool::weighted(0.3))
            .prop_map(|(key, value, trap)| Op::KvSet { key, value, trap }),
        3 => (0u8..3).prop_map(|key| Op::KvGet { key }),
        2 => any::<bool>().prop_map(|forbidden| Op::KvDenied { forbidden }),
        2 => Just(Op::InvokeDenied),
        1 => Just(Op::ChangePolicy),
        2 => Just(Op::Verify),
        1 => any::<u8>().prop_map(|at| Op::VerifyTampered { at }),
        1 => Just(Op::Replay),
    ]
}

/// One ledger entry, as much of it as the model predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    KeyChange,
    PolicyChange,
    Start {
        inv: u64,
        principal: String,
        capability: String,
        function: String,
        fuel_budget: u64,
    },
    Decision {
        inv: u64,
        action: String,
        resource: String,
        allowed: bool,
        policy_ids: Vec<String>,
    },
    HostCall {
        inv: u64,
        seq: u64,
        interface: String,
        function: String,
    },
    Trap {
        inv: u64,
        kind: String,
    },
    End {
        inv: u64,
        result: Json,
    },
    /// Any kind the model never predicts (a write-ahead intent, an approval…).
    Other(String),
}

/// What a step must answer.
#[derive(Debug, PartialEq)]
struct Answer {
    code: i32,
    /// The `result` of `invoke --json`, when it succeeded.
    result: Option<Json>,
}

/// The pure model: the ledger as a list of records and its checkpoints as sizes.
#[derive(Debug, Default)]
struct Model {
    recs: Vec<Rec>,
    checkpoints: Vec<u64>,
    next_invocation: u64,
    /// `notes`, as the guest reads it back.
    notes: BTreeMap<String, String>,
    /// A policy written but not yet recorded (recorded by the next invocation, in a batch of
    /// its own).
    policy_pending: bool,
    policy_version: usize,
    /// Invocations that ran (replay re-executes them) and that the policy refused.
    ran: u64,
    refused: u64,
}

impl Model {
    /// A fresh host: its first open records its key, in a checkpoint of its own.
    fn new() -> Self {
        Self {
            recs: vec![Rec::KeyChange],
            checkpoints: vec![1],
            // The policy in the data directory is recorded before the first decision.
            policy_pending: true,
            ..Self::default()
        }
    }

    fn len(&self) -> u64 {
        self.recs.len() as u64
    }

    /// One durable append: a signed checkpoint of the tree as it now is.
    fn commit(&mut self) {
        self.checkpoints.push(self.len());
    }

    /// Before an invocation's start: the policy in force, if it changed.
    fn note_policy(&mut self) {
        if std::mem::take(&mut self.policy_pending) {
            self.recs.push(Rec::PolicyChange);
            self.commit();
        }
    }

    fn start(&mut self, principal: &str, capability: &str, function: &str, budget: u64) -> u64 {
        self.note_policy();
        let inv = self.next_invocation;
        self.next_invocation += 1;
        self.recs.push(Rec::Start {
            inv,
            principal: principal.to_owned(),
            capability: capability.to_owned(),
            function: function.to_owned(),
            fuel_budget: budget,
        });
        inv
    }

    fn decision(&mut self, inv: u64, action: &str, resource: &str, allowed: bool, ids: &[&str]) {
        self.recs.push(Rec::Decision {
            inv,
            action: action.to_owned(),
            resource: resource.to_owned(),
            allowed,
            policy_ids: ids.iter().map(|&i| i.to_owned()).collect(),
        });
    }

    /// The permit that lets the local operator do anything.
    fn allowed(&mut self, inv: u64, action: &str, resource: &str) {
        self.decision(inv, action, resource, true, &["test.cedar:0"]);
    }

    fn call(&mut self, inv: u64, seq: u64, interface: &str, function: &str) {
        self.recs.push(Rec::HostCall {
            inv,
            seq,
            interface: interface.to_owned(),
            function: function.to_owned(),
        });
    }

    fn end(&mut self, inv: u64, trap: Option<&str>, result: Json) {
        if let Some(kind) = trap {
            self.recs.push(Rec::Trap {
                inv,
                kind: kind.to_owned(),
            });
        }
        self.recs.push(Rec::End { inv, result });
        self.commit();
    }

    /// A misbehave invocation the policy lets run: start and the invoke decision.
    fn run(&mut self, function: &str, budget: u64) -> u64 {
        let inv = self.start(LOCAL, "misbehave", function, budget);
        self.allowed(inv, "invoke", "misbehave@1.0.0");
        self.ran += 1;
        inv
    }

    /// The step's transition: what it appends and what it answers.
    fn step(&mut self, op: &Op) -> Answer {
        let ok = |result: Json| Answer {
            code: 0,
            result: Some(result),
        };
        let failed = |code: i32| Answer { code, result: None };
        match *op {
            Op::Divide { a, b } => {
                let inv = self.run("divide", BUDGET);
                match a.checked_div(b) {
                    None => {
                        self.end(inv, Some("trap"), Json::Null);
                        failed(5)
                    }
                    Some(q) => {
                        self.end(inv, None, json!({ "u32": q }));
                        ok(json!(q))
                    }
                }
            }
            Op::Spin => {
                let inv = self.run("spin", SPIN_FUEL);
                self.end(inv, Some("fuel-exhausted"), Json::Null);
                failed(4)
            }
            Op::Chatter { lines } => {
                let inv = self.run("chatter", BUDGET);
                self.call(inv, 0, "femtoclaw:host/log@0.1.0", "log");
                self.end(inv, None, json!({"u32": lines}));
                ok(json!(lines))
            }
            Op::KvSet { key, value, trap } => {
                let inv = self.run("kv-set", BUDGET);
                self.allowed(inv, "kv.read", "notes");
                self.call(inv, 0, KV, "open");
                self.allowed(inv, "kv.write", "notes");
                self.call(inv, 1, KV, "[method]bucket.set");
                if trap {
                    // The guest aborts after the write: recorded, never applied.
                    self.end(inv, Some("trap"), Json::Null);
                    failed(5)
                } else {
                    self.notes.insert(format!("k{key}"), format!("v{value}"));
                    self.end(inv, None, json!({"result": {"Ok": null}}));
                    ok(json!({"ok": null}))
                }
            }
            Op::KvGet { key } => {
                let inv = self.run("kv-get", BUDGET);
                self.allowed(inv, "kv.read", "notes");
                self.call(inv, 0, KV, "open");
                self.allowed(inv, "kv.read", "notes");
                self.call(inv, 1, KV, "[method]bucket.get");
                let value = self.notes.get(&format!("k{key}")).cloned();
                let recorded = value.as_ref().map(|v| json!({"string": v}));
                self.end(inv, None, json!({"result": {"Ok": {"option": recorded}}}));
                ok(json!({ "ok": value }))
            }
            Op::KvDenied { forbidden } => {
                let inv = self.run("kv-get", BUDGET);
                if forbidden {
                    // Requested and permitted, but the forbid overrides the permit.
                    self.decision(inv, "kv.read", "secret", false, &["test.cedar:1"]);
                } else {
                    // Not requested: nothing is granted, whatever the policy permits.
                    self.decision(inv, "kv.read", "other", false, &[]);
                }
                self.call(inv, 0, KV, "open");
                self.end(
                    inv,
                    None,
                    json!({"result": {"Err": {"string": "Error::AccessDenied"}}}),
                );
                ok(json!({"err": "Error::AccessDenied"}))
            }
            Op::InvokeDenied => {
                let inv = self.start(BOT, "hello", "greet", HELLO_BUDGET);
                self.decision(inv, "invoke", "hello@0.1.0", false, &[]);
                self.refused += 1;
                self.end(inv, None, Json::Null);
                failed(7)
            }
            Op::ChangePolicy => {
                self.policy_version += 1;
                self.policy_pending = true;
                failed(0)
            }
            Op::Verify | Op::Replay => failed(0),
            Op::VerifyTampered { .. } => failed(8),
        }
    }
}

/// The policy of version `n`: [`POLICY`] and `n` more permits for principals who never call.
fn policy(n: usize) -> String {
    let mut text = POLICY.to_owned();
    for i in 0..n {
        text.push_str(&format!(
            "permit (principal == FemtoClaw::User::\"nobody{i}\", action, resource);\n"
        ));
    }
    text
}

/// A JSON field as a string.
fn text(v: &Json, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

/// What the model can say of an entry the host recorded.
fn observe(entry: &Entry) -> Rec {
    let v = serde_json::to_value(entry).unwrap();
    let inv = v["invocation"].as_u64().unwrap_or(u64::MAX);
    match v["type"].as_str().unwrap() {
        "key-change" => Rec::KeyChange,
        "policy-change" => Rec::PolicyChange,
        "invocation-start" => Rec::Start {
            inv,
            principal: text(&v, "principal"),
            capability: text(&v, "capability"),
            function: text(&v, "function"),
            fuel_budget: v["fuel_budget"].as_u64().unwrap(),
        },
        "decision" => Rec::Decision {
            inv,
            action: text(&v, "action"),
            resource: text(&v, "resource"),
            allowed: v["allowed"].as_bool().unwrap(),
            policy_ids: v["policy_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect(),
        },
        "host-call" => Rec::HostCall {
            inv,
            seq: v["seq"].as_u64().unwrap(),
            interface: text(&v, "interface"),
            function: text(&v, "function"),
        },
        "trap" => Rec::Trap {
            inv,
            kind: text(&v, "kind"),
        },
        "invocation-end" => Rec::End {
            inv,
            result: v["result"].clone(),
        },
        other => Rec::Other(other.to_owned()),
    }
}

/// What the host's ledger is after a step, read from `log export`.
struct Observed {
    /// The export file it was read from.
    path: std::path::PathBuf,
    /// Canonical entry bytes.
    leaves: Vec<Vec<u8>>,
    entries: Vec<Entry>,
    /// Checkpoint notes, oldest first.
    notes: Vec<String>,
}

fn export(host: &Host) -> Observed {
    let path = host.files.path().join("model.export");
    let out = host.run(&["log", "export", s(&path)]);
    assert_eq!(code(&out), 0, "log export: {}", stderr(&out));
    let bytes = std::fs::read(&path).unwrap();
    let parsed = parse_export(&bytes).unwrap();
    Observed {
        path: path.clone(),
        leaves: parsed.entries.iter().map(|e| e.to_vec()).collect(),
        entries: parsed
            .entries
            .iter()
            .map(|e| Entry::decode(e).unwrap())
            .collect(),
        notes: parsed
            .checkpoints
            .iter()
            .map(|n| String::from_utf8(n.to_vec()).unwrap())
            .collect(),
    }
}

/// The offset in an export file of entry `index`'s bytes.
fn entry_offset(leaves: &[Vec<u8>], index: usize) -> usize {
    // magic (8), version (1), section tag (1), count (8), then (len u32, bytes) per entry.
    18 + leaves[..index].iter().map(|l| 4 + l.len()).sum::<usize>() + 4
}

/// Runs `op` on the host; its answer.
fn perform(host: &Host, model: &Model, key: &str, op: &Op, before: &Observed) -> Answer {
    let invoke = |function: &str, args: Json, extra: &[&str]| {
        let args = args.to_string();
        let mut argv = vec![
            "invoke",
            "misbehave",
            function,
            "--args",
            args.as_str(),
            "--json",
        ];
        argv.extend_from_slice(extra);
        let out = host.run(&argv);
        let code = code(&out);
        let result = (code == 0).then(|| {
            let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
            report["result"].clone()
        });
        Answer { code, result }
    };
    let kv_get = |namespace: &str, key: String| {
        invoke("kv-get", json!({"namespace": namespace, "key": key}), &[])
    };
    match *op {
        Op::Divide { a, b } => invoke("divide", json!({"a": a, "b": b}), &[]),
        Op::Spin => invoke("spin", json!({}), &["--fuel", &SPIN_FUEL.to_string()]),
        Op::Chatter { lines } => invoke("chatter", json!({ "lines": lines }), &[]),
        Op::KvSet { key, value, trap } => invoke(
            "kv-set",
            json!({"namespace": "notes", "key": format!("k{key}"),
                   "value": format!("v{value}"), "trap": trap}),
            &[],
        ),
        Op::KvGet { key } => kv_get("notes", format!("k{key}")),
        Op::KvDenied { forbidden } => {
            kv_get(if forbidden { "secret" } else { "other" }, "k0".into())
        }
        Op::InvokeDenied => {
            let out = host.run(&[
                "invoke",
                "hello",
                "greet",
                "--args",
                r#"{"name":"x"}"#,
                "--principal",
                "agent:bot",
            ]);
            Answer {
                code: code(&out),
                result: None,
            }
        }
        Op::ChangePolicy => {
            host.set_policy(&policy(model.policy_version + 1));
            Answer {
                code: 0,
                result: None,
            }
        }
        Op::Verify => {
            let out = host.run(&["log", "verify", "--key", key]);
            assert_eq!(code(&out), 0, "log verify: {}", stderr(&out));
            let says = stdout(&out);
            assert_eq!(
                says.lines().next(),
                Some(
                    format!(
                        "ok: {} entries, {} checkpoints verified",
                        model.len(),
                        model.checkpoints.len()
                    )
                    .as_str()
                ),
                "{says}"
            );
            // The live checkpoint is the last one the ledger holds, byte for byte.
            let note = stdout(&host.run(&["log", "checkpoint"]));
            assert_eq!(Some(&note), before.notes.last());
            Answer {
                code: 0,
                result: None,
            }
        }
        Op::VerifyTampered { at } => {
            let mut bytes = std::fs::read(&before.path).unwrap();
            let index = usize::from(at) % before.leaves.len();
            let offset = entry_offset(&before.leaves, index) + before.leaves[index].len() / 2;
            bytes[offset] ^= 0x01;
            let tampered = host.file("tampered.export", &bytes);
            let out = host.run(&["log", "verify", "--key", key, s(&tampered)]);
            assert!(
                stderr(&out).contains("ledger verification failed"),
                "{}",
                stderr(&out)
            );
            Answer {
                code: code(&out),
                result: None,
            }
        }
        Op::Replay => {
            let path = host.files.path().join("replay.export");
            let out = host.run(&["log", "export", "--with-components", s(&path)]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            let elsewhere = tempfile::tempdir().unwrap();
            let out = command(
                elsewhere.path(),
                &["replay", s(&path), "--key", key, "--json"],
            )
            .output()
            .unwrap();
            assert_eq!(code(&out), 0, "replay: {} {}", stdout(&out), stderr(&out));
            let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
            assert_eq!(report["identical"], json!(model.ran), "{report}");
            assert_eq!(report["refused"], json!(model.refused), "{report}");
            assert_eq!(report["divergent"], json!(0), "{report}");
            assert_eq!(report["interrupted"], json!(0), "{report}");
            Answer {
                code: 0,
                result: None,
            }
        }
    }
}

/// The invariants of the execution model, on the ledger as the host left it, and its
/// agreement with the model.
fn check(model: &Model, before: &Observed, now: &Observed, fuel: &mut BTreeMap<String, u64>) {
    // Append-only: every entry there before is there still, byte for byte.
    assert!(now.leaves.len() >= before.leaves.len());
    assert_eq!(now.leaves[..before.leaves.len()], before.leaves[..]);

    // The entries are the model's.
    let recs: Vec<Rec> = now.entries.iter().map(observe).collect();
    assert_eq!(recs, model.recs);

    // Checkpoints: one per append, sizes increasing, the last covering every entry, each
    // root the Merkle root of that many leaves.
    let leaves: Vec<merkle::Hash> = now.leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    let checkpoints: Vec<Checkpoint> = now
        .notes
        .iter()
        .map(|n| Checkpoint::parse_unverified(n).unwrap())
        .collect();
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    assert_eq!(sizes, model.checkpoints);
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&(now.leaves.len() as u64)));
    for c in &checkpoints {
        assert_eq!(
            c.root,
            merkle::root_from_leaf_hashes(&leaves[..c.size as usize]),
            "checkpoint of size {}",
            c.size
        );
    }

    // Every invocation: one start, then its entries, then one end, with nothing of another
    // invocation in between; host calls numbered from 0; fuel consumed within the budget, the
    // same in its trap and its end.
    let mut open: Option<(u64, u64, u64)> = None; // (invocation, budget, next seq)
    let mut ended = std::collections::BTreeSet::new();
    for entry in &now.entries {
        let v = serde_json::to_value(entry).unwrap();
        let kind = v["type"].as_str().unwrap();
        let inv = entry.invocation();
        match (kind, open) {
            ("invocation-start", None) => {
                let inv = inv.unwrap();
                assert!(!ended.contains(&inv), "invocation {inv} started twice");
                open = Some((inv, v["fuel_budget"].as_u64().unwrap(), 0));
            }
            ("invocation-end", Some((i, budget, _))) => {
                assert_eq!(inv, Some(i));
                assert!(v["fuel_consumed"].as_u64().unwrap() <= budget);
                ended.insert(i);
                open = None;
            }
            ("host-call", Some((i, budget, seq))) => {
                assert_eq!(inv, Some(i));
                assert_eq!(v["seq"].as_u64(), Some(seq));
                assert!(v["fuel_remaining"].as_u64().unwrap() <= budget);
                open = Some((i, budget, seq + 1));
            }
            ("trap", Some((i, budget, _))) => {
                assert_eq!(inv, Some(i));
                assert!(v["fuel_consumed"].as_u64().unwrap() <= budget);
            }
            (_, Some((i, _, _))) => assert_eq!(inv, Some(i), "{v}"),
            (_, None) => assert_eq!(inv, None, "an invocation's entry outside it: {v}"),
        }
    }
    assert!(open.is_none(), "an invocation without an end: {open:?}");

    // Determinism: the same function with the same arguments and answers consumes the same
    // fuel every time (running out of it consumes exactly the budget).
    let mut starts = BTreeMap::new();
    for entry in &now.entries {
        let v = serde_json::to_value(entry).unwrap();
        match v["type"].as_str().unwrap() {
            "invocation-start" => {
                starts.insert(v["invocation"].as_u64().unwrap(), v.clone());
            }
            "trap" if v["kind"] == "fuel-exhausted" => {
                let start = &starts[&v["invocation"].as_u64().unwrap()];
                assert_eq!(v["fuel_consumed"], start["fuel_budget"]);
            }
            "invocation-end" => {
                let start = &starts[&v["invocation"].as_u64().unwrap()];
                let key = format!(
                    "{} {} {} -> {}",
                    start["capability"], start["function"], start["args"], v["result"]
                );
                let consumed = v["fuel_consumed"].as_u64().unwrap();
                let first = *fuel.entry(key.clone()).or_insert(consumed);
                assert_eq!(consumed, first, "{key}");
            }
            _ => {}
        }
    }
}

/// One generated sequence, on a fresh host.
fn run_sequence(ops: &[Op]) {
    let host = Host::with_policy(&policy(0));
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, &manifest());
    let key = host.key();
    let mut model = Model::new();
    let mut fuel = BTreeMap::new();
    let mut before = export(&host);
    check(
        &model,
        &Observed {
            path: before.path.clone(),
            leaves: Vec::new(),
            entries: Vec::new(),
            notes: Vec::new(),
        },
        &before,
        &mut fuel,
    );
    for (n, op) in ops.iter().chain([&Op::Verify]).enumerate() {
        let got = perform(&host, &model, &key, op, &before);
        let want = model.step(op);
        assert_eq!(got, want, "step {n}: {op:?}");
        let now = export(&host);
        check(&model, &before, &now, &mut fuel);
        before = now;
    }
}

// Verifies: FC-FORMAL-5001, FC-FORMAL-5002, FC-FORMAL-5003, FC-FORMAL-5004, FC-FORMAL-5005, FC-FORMAL-5006, FC-FORMAL-5007, FC-FORMAL-5008, FC-FORMAL-5009, FC-FORMAL-5010, FC-FORMAL-5014, FC-FORMAL-5015, FC-FORMAL-5016, FC-FORMAL-5019, FC-FORMAL-5020, FC-FORMAL-5108, FC-FORMAL-5201, FC-FORMAL-5206, FC-FORMAL-5216
#[test]
fn model_the_ledger_state_machine_agrees_with_the_running_host() {
    let mut runner = TestRunner::new(Config {
        cases: 16,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..=8), |ops| {
            run_sequence(&ops);
            Ok(())
        })
        .unwrap();
}
