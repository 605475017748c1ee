//! The model-based case of specifications 50 and 52: the ledger as a state machine, checked
//! against the target over its command line alone.
//!
//! A small xorshift generator, from a fixed list of seeds, makes short sequences of the
//! operations of specification 52 the suite's guest can perform: an invocation that returns
//! (`divide`), one that traps (`divide` by 0), one that runs out of fuel (`spin`), one that
//! makes a recorded host call (`note`), a key-value write and read (`remember`, `recall`), a
//! write the policy forbids, a write followed by a trap, the `open` of a namespace the manifest
//! never asked for, an invocation the policy refuses, one of a function the guest does not
//! export, a policy change, and `log verify` of an export with one byte flipped. The suite's
//! own model predicts, from the rules of specification 50 alone, what every step leaves behind:
//! the exit code and the `invoke --json` result, the entries of the ledger, the checkpoints'
//! sizes, the key-value state the guest reads back, the summary of `log verify` and the report
//! of `replay`. After every step the case reads every observable of specification 50's table
//! and compares it with the model: `log show --json`, the entry and checkpoint sections of
//! `log export` (the entries being the shown ones encoded canonically, every checkpoint signed
//! by the published key, its root the RFC 6962 root of that many entries, both sections only
//! ever growing), `log checkpoint` (the last checkpoint, byte for byte), `log verify --key`,
//! and `replay --key --json` of the export on a data directory of its own.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::{OPEN, failed, guest_host, published_key, s};
use crate::format::{Export, encode, parse_export};
use crate::target::{Host, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

pub const CASES: &[Case] = &[Case {
    name: "cli.model.state-machine",
    verifies: &["FC-FORMAL-5020", "FC-FORMAL-5201"],
    run: state_machine,
}];

/// The seeds of the generated sequences, and each one's length: together they reach every
/// operation, a value read back, a write the policy forbade and one of a trapped invocation
/// each read back unapplied, and a policy recorded again after another (the case checks that
/// they still do).
const SEEDS: [u64; 6] = [
    0x35e2_aa2e_7e47_aca0,
    0xdde6_e5fd_29f0_5400,
    0x8e3e_8662_7196_5954,
    0xb1e3_5812_ebae_e1ac,
    0x6121_b2fc_41eb_6dbd,
    0xd43e_d846_24e2_46b7,
];
const STEPS: usize = 6;

/// The policy that forbids every key-value write besides [`OPEN`] (its id `conformance.cedar:1`).
const NO_WRITES: &str = "permit (principal == FemtoClaw::User::\"local\", action, resource);\n\
    forbid (principal, action == FemtoClaw::Action::\"kv.write\", resource);\n";

/// The guest's fuel budget (its manifest), and the budget `spin` is given and runs out of.
const BUDGET: u64 = 50_000_000;
const SPIN_FUEL: u64 = 100_000;

const LOCAL: &str = "FemtoClaw::User::\"local\"";
const BOT: &str = "FemtoClaw::Agent::\"bot\"";
const RESOURCE: &str = "conformance@1.0.0";
const KV: &str = "wasi:keyvalue/store@0.2.0-draft2";
const NAMESPACE: &str = "conformance";
const ALLOWED: &str = "conformance.cedar:0";
const FORBIDDEN: &str = "conformance.cedar:1";

/// xorshift64: the same sequences on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One step.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `divide(a, b)`: returns `a / b`, or traps when `b` is 0.
    Divide { a: u32, b: u32 },
    /// `spin()` with `--fuel` [`SPIN_FUEL`]: runs out of fuel.
    Spin,
    /// `note(message)` of `len` bytes: one recorded `log` host call.
    Note { len: u32 },
    /// `remember(k<key>, v<value>)`: a key-value write, applied when the policy in force
    /// permits it.
    Remember { key: u8, value: u8 },
    /// `recall(k<key>)`: the value the last applied write left.
    Recall { key: u8 },
    /// `echo` as `agent:bot`, whom no policy permits: refused before it runs.
    Refused,
    /// A function the guest does not export: refused before its start.
    Unknown,
    /// The policy in the data directory changes to the other of [`OPEN`] and [`NO_WRITES`].
    TogglePolicy,
    /// `log verify --key` of the export with one byte flipped in entry `at` (modulo its length).
    Tampered { at: u64 },
    /// `echo` of the probe `kv:set=k<key>=v<value> trap`: the write is recorded, then the guest
    /// traps, and the write is never applied.
    WriteThenTrap { key: u8, value: u8 },
    /// `echo` of the probe `kv:open=…` of namespace `other`, which the manifest never asked for:
    /// its `open` is refused whatever the policy permits.
    Unrequested,
}

impl Op {
    fn generate(rng: &mut Xorshift) -> Op {
        // Weights: the invocations most, the refusals and the policy change less.
        match rng.below(24) {
            0..=3 => Op::Divide {
                a: rng.below(100) as u32,
                b: rng.below(3) as u32,
            },
            4 => Op::Spin,
            5..=6 => Op::Note {
                len: rng.below(4) as u32,
            },
            7..=9 => Op::Remember {
                key: rng.below(3) as u8,
                value: rng.below(4) as u8,
            },
            10..=12 => Op::Recall {
                key: rng.below(3) as u8,
            },
            13..=14 => Op::Refused,
            15 => Op::Unknown,
            16..=18 => Op::TogglePolicy,
            19 => Op::Tampered { at: rng.next() },
            20..=21 => Op::WriteThenTrap {
                key: rng.below(3) as u8,
                value: rng.below(4) as u8,
            },
            _ => Op::Unrequested,
        }
    }

    /// What the operation exercises in `model`'s state, for the coverage check.
    fn label(&self, model: &Model) -> &'static str {
        match self {
            Op::Divide { b: 0, .. } => "divide-trap",
            Op::Divide { .. } => "divide",
            Op::Spin => "spin",
            Op::Note { .. } => "note",
            Op::Remember { .. } if model.policy == 1 => "remember-forbidden",
            Op::Remember { .. } => "remember",
            Op::Recall { key } => match model.unapplied.get(&format!("k{key}")) {
                Some(why) => why,
                None if model.kv.contains_key(&format!("k{key}")) => "recall-applied",
                None => "recall",
            },
            Op::Refused => "refused",
            Op::Unknown => "unknown",
            Op::TogglePolicy => "policy",
            Op::Tampered { .. } => "tampered",
            Op::WriteThenTrap { .. } => "write-then-trap",
            Op::Unrequested => "unrequested",
        }
    }
}

/// One ledger entry, as much of it as the model predicts. Invocations are numbered by order
/// of their start (the host may leave numbers unused: specification 50 bounds `N` from below).
#[derive(Debug, Clone, PartialEq)]
enum Rec {
    KeyChange,
    /// The policy of the given version of the model's (0: [`OPEN`], 1: [`NO_WRITES`]).
    PolicyChange(usize),
    Start {
        inv: usize,
        principal: String,
        function: String,
        budget: u64,
    },
    Decision {
        inv: usize,
        action: String,
        resource: String,
        allowed: bool,
        ids: Vec<String>,
    },
    HostCall {
        inv: usize,
        seq: u64,
        interface: String,
        function: String,
    },
    Trap {
        inv: usize,
        kind: String,
    },
    /// `fuel`: the fuel consumed, when the model knows it (0 for a refusal, the budget when
    /// it ran out); otherwise only equal for equal calls, checked apart.
    End {
        inv: usize,
        result: Json,
        fuel: Option<u64>,
    },
    /// A kind the model never predicts.
    Other(String),
}

/// What an operation must answer.
#[derive(Debug, PartialEq)]
struct Answer {
    code: i32,
    /// `invoke --json`'s `result`, when it exited 0.
    result: Option<Json>,
}

/// The suite's model of one data directory (specification 50's `S`, as much as is observable).
struct Model {
    recs: Vec<Rec>,
    /// Checkpoint sizes, one per batch.
    sizes: Vec<u64>,
    invocations: usize,
    /// The policy in the data directory, and the one last recorded.
    policy: usize,
    recorded: Option<usize>,
    /// Namespace `conformance`, as the guest reads it back.
    kv: BTreeMap<String, String>,
    /// Keys whose last write was never applied, and why (for the coverage check).
    unapplied: BTreeMap<String, &'static str>,
    /// Per invocation, in order: its function and the status replay must give it.
    replay: Vec<(String, &'static str)>,
}

impl Model {
    /// After the first open (FirstOpen): the key in a batch of its own.
    fn new() -> Self {
        Model {
            recs: vec![Rec::KeyChange],
            sizes: vec![1],
            invocations: 0,
            policy: 0,
            recorded: None,
            kv: BTreeMap::new(),
            unapplied: BTreeMap::new(),
            replay: Vec::new(),
        }
    }

    fn len(&self) -> u64 {
        self.recs.len() as u64
    }

    /// Append(B): one checkpoint of the tree after the batch.
    fn commit(&mut self) {
        self.sizes.push(self.len());
    }

    /// NotePolicy: before a start, the policy in force when it differs from the last recorded,
    /// in a batch of its own.
    fn note_policy(&mut self) {
        if self.recorded != Some(self.policy) {
            self.recorded = Some(self.policy);
            self.recs.push(Rec::PolicyChange(self.policy));
            self.commit();
        }
    }

    fn start(&mut self, principal: &str, function: &str, budget: u64) -> usize {
        self.note_policy();
        let inv = self.invocations;
        self.invocations += 1;
        self.recs.push(Rec::Start {
            inv,
            principal: principal.to_owned(),
            function: function.to_owned(),
            budget,
        });
        inv
    }

    fn decision(&mut self, inv: usize, action: &str, resource: &str, allowed: bool) {
        let id = if allowed { ALLOWED } else { FORBIDDEN };
        let ids = if !allowed && action == "invoke" {
            Vec::new()
        } else {
            vec![id.to_owned()]
        };
        self.recs.push(Rec::Decision {
            inv,
            action: action.to_owned(),
            resource: resource.to_owned(),
            allowed,
            ids,
        });
    }

    fn call(&mut self, inv: usize, seq: u64, interface: &str, function: &str) {
        self.recs.push(Rec::HostCall {
            inv,
            seq,
            interface: interface.to_owned(),
            function: function.to_owned(),
        });
    }

    fn end(&mut self, inv: usize, trap: Option<&str>, result: Json, fuel: Option<u64>) {
        if let Some(kind) = trap {
            self.recs.push(Rec::Trap {
                inv,
                kind: kind.to_owned(),
            });
        }
        self.recs.push(Rec::End { inv, result, fuel });
        self.commit();
    }

    /// Run(n): start and the allowing `invoke` decision; replay re-executes it.
    fn run(&mut self, function: &str, budget: u64) -> usize {
        let inv = self.start(LOCAL, function, budget);
        self.decision(inv, "invoke", RESOURCE, true);
        self.replay.push((function.to_owned(), "identical"));
        inv
    }

    /// The namespace's `open`: a `kv.read` the policy always permits, then the call.
    fn open(&mut self, inv: usize) {
        self.decision(inv, "kv.read", NAMESPACE, true);
        self.call(inv, 0, KV, "open");
    }

    /// The transition of `op`: what it appends, and what it answers.
    fn step(&mut self, op: Op) -> Answer {
        let ok = |result: Json| Answer {
            code: 0,
            result: Some(result),
        };
        let code = |code: i32| Answer { code, result: None };
        match op {
            Op::Divide { a, b } => {
                let inv = self.run("divide", BUDGET);
                match a.checked_div(b) {
                    None => {
                        self.end(inv, Some("trap"), Json::Null, None);
                        code(5)
                    }
                    Some(q) => {
                        self.end(inv, None, json!({ "u32": q }), None);
                        ok(json!(q))
                    }
                }
            }
            Op::Spin => {
                let inv = self.run("spin", SPIN_FUEL);
                self.end(inv, Some("fuel-exhausted"), Json::Null, Some(SPIN_FUEL));
                code(4)
            }
            Op::Note { len } => {
                let inv = self.run("note", BUDGET);
                self.call(inv, 0, "femtoclaw:host/log@0.1.0", "log");
                self.end(inv, None, json!({ "u32": len }), None);
                ok(json!(len))
            }
            Op::Remember { key, value } => {
                let inv = self.run("remember", BUDGET);
                self.open(inv);
                let permitted = self.policy == 0;
                self.decision(inv, "kv.write", NAMESPACE, permitted);
                self.call(inv, 1, KV, "[method]bucket.set");
                if permitted {
                    // Applied when the invocation returns (I13).
                    self.unapplied.remove(&format!("k{key}"));
                    self.kv.insert(format!("k{key}"), format!("v{value}"));
                    self.end(inv, None, json!({ "result": { "Ok": null } }), None);
                    ok(json!({ "ok": null }))
                } else {
                    self.unapplied
                        .insert(format!("k{key}"), "recall-after-forbidden");
                    let denied =
                        json!({ "result": { "Err": { "string": "Error::AccessDenied" } } });
                    self.end(inv, None, denied, None);
                    ok(json!({ "err": "Error::AccessDenied" }))
                }
            }
            Op::Recall { key } => {
                let inv = self.run("recall", BUDGET);
                self.open(inv);
                self.decision(inv, "kv.read", NAMESPACE, true);
                self.call(inv, 1, KV, "[method]bucket.get");
                let value = self.kv.get(&format!("k{key}")).cloned();
                let recorded = value.as_ref().map(|v| json!({ "string": v }));
                let result = json!({ "result": { "Ok": { "option": recorded } } });
                self.end(inv, None, result, None);
                ok(json!({ "ok": value }))
            }
            Op::Refused => {
                // RefuseInvoke: start, the denying decision, an end without result, fuel 0.
                let inv = self.start(BOT, "echo", BUDGET);
                self.decision(inv, "invoke", RESOURCE, false);
                self.end(inv, None, Json::Null, Some(0));
                self.replay.push(("echo".to_owned(), "refused"));
                code(7)
            }
            // Refused before its start (exit 3), once the policy in force is recorded: nothing
            // but a NotePolicy that was due.
            Op::Unknown => {
                self.note_policy();
                code(3)
            }
            Op::TogglePolicy => {
                // Nothing now: the next start records it, if it differs from the last recorded.
                self.policy = 1 - self.policy;
                code(0)
            }
            // An observation: S' = S.
            Op::Tampered { .. } => code(8),
            Op::WriteThenTrap { key, .. } => {
                let inv = self.run("echo", BUDGET);
                self.open(inv);
                self.decision(inv, "kv.write", NAMESPACE, self.policy == 0);
                self.call(inv, 1, KV, "[method]bucket.set");
                // Recorded, never applied (I13).
                self.unapplied
                    .insert(format!("k{key}"), "recall-after-trap");
                self.end(inv, Some("trap"), Json::Null, None);
                code(5)
            }
            Op::Unrequested => {
                let inv = self.run("echo", BUDGET);
                self.open(inv);
                // Nothing granted: denied by no policy.
                self.recs.push(Rec::Decision {
                    inv,
                    action: "kv.read".to_owned(),
                    resource: "other".to_owned(),
                    allowed: false,
                    ids: Vec::new(),
                });
                self.call(inv, 1, KV, "open");
                let said = "err Error::AccessDenied";
                self.end(inv, None, json!({ "string": said }), None);
                ok(json!(said))
            }
        }
    }
}

/// The arguments and extra flags of an operation's invocation.
fn invocation(op: Op) -> Option<(&'static str, Json, Vec<&'static str>)> {
    let kv = |key: u8| format!("k{key}");
    Some(match op {
        Op::Divide { a, b } => ("divide", json!({ "a": a, "b": b }), vec![]),
        Op::Spin => ("spin", json!({}), vec!["--fuel", "100000"]),
        Op::Note { len } => (
            "note",
            json!({ "message": "m".repeat(len as usize) }),
            vec![],
        ),
        Op::Remember { key, value } => (
            "remember",
            json!({ "key": kv(key), "value": format!("v{value}") }),
            vec![],
        ),
        Op::Recall { key } => ("recall", json!({ "key": kv(key) }), vec![]),
        Op::Refused => (
            "echo",
            json!({ "text": "x" }),
            vec!["--principal", "agent:bot"],
        ),
        Op::Unknown => ("no-such-function", json!({}), vec![]),
        Op::WriteThenTrap { key, value } => (
            "echo",
            json!({ "text": format!("\u{1}probe:kv:set={}=v{value} trap", kv(key)) }),
            vec![],
        ),
        // `other`, in hex.
        Op::Unrequested => (
            "echo",
            json!({ "text": "\u{1}probe:kv:open=6f74686572" }),
            vec![],
        ),
        Op::TogglePolicy | Op::Tampered { .. } => return None,
    })
}

/// One sequence on a fresh data directory.
struct Sequence<'a> {
    target: &'a Target,
    host: Host,
    key: crypto::Key,
    key_text: String,
    model: Model,
    /// The digest each policy version was first recorded with.
    digests: BTreeMap<usize, String>,
    /// Fuel consumed by each (function, arguments, result) seen: equal calls consume equal fuel.
    fuel: BTreeMap<String, u64>,
    /// The export of the last step.
    before: Option<Export>,
    /// The step, for messages.
    at: String,
}

impl<'a> Sequence<'a> {
    fn new(target: &'a Target, seed: u64) -> Result<Self, Failure> {
        let host = guest_host(target, OPEN)?;
        let key = published_key(&host)?;
        let key_text = host.ok(&["key", "show"])?.trim().to_owned();
        Ok(Sequence {
            target,
            host,
            key,
            key_text,
            model: Model::new(),
            digests: BTreeMap::new(),
            fuel: BTreeMap::new(),
            before: None,
            at: format!("seed {seed:#x}, after the first open"),
        })
    }

    fn fail(&self, message: String) -> Failure {
        failed(format!("{}: {message}", self.at))
    }

    /// Runs `op` on the target; its answer.
    fn perform(&mut self, op: Op) -> Result<Answer, Failure> {
        if let Some((function, args, extra)) = invocation(op) {
            let mut flags = vec!["--json"];
            flags.extend(extra);
            let run = self.host.invoke(function, &args, &flags)?;
            let result = if run.code == 0 {
                let report = run.json()?;
                self.receipt(&report["receipt"])?;
                Some(report["result"].clone())
            } else {
                None
            };
            return Ok(Answer {
                code: run.code,
                result,
            });
        }
        match op {
            Op::TogglePolicy => {
                let next = 1 - self.model.policy;
                self.host.policy(if next == 0 { OPEN } else { NO_WRITES })?;
                Ok(Answer {
                    code: 0,
                    result: None,
                })
            }
            Op::Tampered { at } => {
                let Some(before) = &self.before else {
                    return Err(self.fail("no export to tamper with".into()));
                };
                let mut export = Export {
                    entries: before.entries.clone(),
                    checkpoints: before.checkpoints.clone(),
                    components: None,
                    blobs: None,
                };
                let index = (at % export.entries.len() as u64) as usize;
                let entry = &mut export.entries[index];
                let middle = entry.len() / 2;
                entry[middle] ^= 0x01;
                let path = self.host.file("tampered.export", &export.write())?;
                let file = s(&path);
                let run = self
                    .host
                    .run(&["log", "verify", "--key", &self.key_text, &file])?;
                ensure!(
                    run.code != 0 && run.stderr.contains("ledger verification failed"),
                    "{}: `log verify` of the export with a byte of entry {index} flipped must \
                     fail with `ledger verification failed`; it exited {}: {} {}",
                    self.at,
                    run.code,
                    excerpt(&run.stdout),
                    excerpt(&run.stderr)
                );
                Ok(Answer {
                    code: run.code,
                    result: None,
                })
            }
            _ => Err(self.fail(format!("{op:?} is not an operation of its own"))),
        }
    }

    /// An answer's receipt names the entries the invocation appended and the tree after them
    /// (I8: answered only once covered).
    fn receipt(&self, receipt: &Json) -> Result<(), Failure> {
        // The model has not stepped yet: the invocation's entries follow its current length,
        // after a policy change of its own when one is pending.
        let skip = u64::from(self.model.recorded != Some(self.model.policy));
        let first = self.model.len() + skip;
        let size = receipt["tree_size"].as_u64();
        let indexes: Vec<u64> = receipt["indexes"]
            .as_array()
            .map(|a| a.iter().filter_map(Json::as_u64).collect())
            .unwrap_or_default();
        let last = indexes.last().copied();
        ensure!(
            size.is_some()
                && last.is_some_and(|l| Some(l + 1) == size)
                && indexes.first() == Some(&first)
                && indexes.windows(2).all(|w| w[1] == w[0] + 1),
            "{}: the receipt must name the invocation's entries {first}.. and the tree just after \
             them: {receipt}",
            self.at
        );
        Ok(())
    }

    /// Reads every observable and compares it with the model.
    fn observe(&mut self) -> Result<(), Failure> {
        let at = self.at.clone();
        let shown: Vec<Json> = self
            .host
            .entries()?
            .into_iter()
            .map(|e| e["entry"].clone())
            .collect();
        let recs = self.records(&shown)?;
        let want = &self.model.recs;
        if let Some(i) =
            (0..want.len().max(recs.len())).find(|&i| !agrees(want.get(i), recs.get(i)))
        {
            return Err(failed(format!(
                "{at}: the ledger must hold the model's {} entries; entry {i} is {} where the \
                 model has {} (log show --json)",
                want.len(),
                recs.get(i)
                    .map_or("missing".to_owned(), |r| format!("{r:?}")),
                want.get(i).map_or("none".to_owned(), |r| format!("{r:?}"))
            )));
        }
        // Equal calls, equal fuel (I12); running out of fuel consumes exactly the budget.
        self.same_fuel(&shown)?;

        // The export: E byte for byte (the shown entries, encoded canonically), and C.
        let path = self.host.files.path().join("model.export");
        let file = s(&path);
        self.host
            .ok(&["log", "export", "--with-components", &file])?;
        let export = parse_export(&path)?;
        ensure!(
            export.entries.len() as u64 == self.model.len(),
            "{at}: the export must hold {} entries; it holds {}",
            self.model.len(),
            export.entries.len()
        );
        for (i, entry) in shown.iter().enumerate() {
            let ours = encode(entry).map_err(|m| failed(format!("{at}: entry {i}: {m}")))?;
            ensure!(
                export.entries.get(i) == Some(&ours),
                "{at}: exported entry {i} is not the one `log show` prints, encoded canonically"
            );
        }
        // Append-only (I1): every entry and checkpoint of the last step, unchanged, in order.
        if let Some(before) = &self.before {
            ensure!(
                export.entries.starts_with(&before.entries),
                "{at}: the entries of the previous step must remain byte for byte, in order"
            );
            ensure!(
                export.checkpoints.starts_with(&before.checkpoints),
                "{at}: the checkpoints of the previous step must remain, in order"
            );
        }
        // C: one checkpoint per batch of the model's, signed, its root MTH of its entries.
        let mut origin = None;
        let mut sizes = Vec::new();
        for (i, note) in export.checkpoints.iter().enumerate() {
            let cp = crypto::checkpoint(&String::from_utf8_lossy(note), &self.key)
                .map_err(|e| failed(format!("{at}: exported checkpoint {i}: {e}")))?;
            ensure!(
                origin.get_or_insert_with(|| cp.origin.clone()) == &cp.origin,
                "{at}: checkpoint {i} names origin {} after {origin:?}",
                cp.origin
            );
            let size = (cp.size as usize).min(export.entries.len());
            let root = super::behaviour::merkle_root(&export.entries[..size]);
            ensure!(
                cp.root == root,
                "{at}: checkpoint {i} (size {}) must have the RFC 6962 root of the first {} \
                 entries: {} where {} is",
                cp.size,
                cp.size,
                super::hex(&cp.root),
                super::hex(&root)
            );
            sizes.push(cp.size);
        }
        ensure!(
            sizes == self.model.sizes,
            "{at}: the checkpoint sizes must be the model's batch boundaries {:?}; they are {sizes:?}",
            self.model.sizes
        );
        // `log checkpoint`: the last one, byte for byte.
        let last = self.host.ok(&["log", "checkpoint"])?;
        ensure!(
            export.checkpoints.last().map(|c| c.as_slice()) == Some(last.as_bytes()),
            "{at}: `log checkpoint` must print the last checkpoint byte for byte; it printed {}",
            excerpt(&last)
        );
        // `log verify --key`: the summary of E and C.
        let says = self.host.ok(&["log", "verify", "--key", &self.key_text])?;
        let summary = format!(
            "ok: {} entries, {} checkpoints verified",
            self.model.len(),
            self.model.sizes.len()
        );
        ensure!(
            says.lines().next() == Some(summary.as_str()),
            "{at}: `log verify --key` must report `{summary}`; it printed {}",
            excerpt(&says)
        );
        self.replay(&file)?;
        self.before = Some(export);
        Ok(())
    }

    /// `replay --key --json` of the export on a data directory of its own: every invocation
    /// that ran identical, every refused one refused, nothing divergent or interrupted.
    fn replay(&self, file: &str) -> Result<(), Failure> {
        let at = &self.at;
        let elsewhere = self.target.host()?;
        let run = elsewhere.run(&["replay", file, "--key", &self.key_text, "--json"])?;
        run.expect(0, &format!("{at}: replay of the export"))?;
        let report = run.json()?;
        let ran = self
            .model
            .replay
            .iter()
            .filter(|r| r.1 == "identical")
            .count();
        let refused = self.model.replay.len() - ran;
        let want: Vec<(String, String)> = self
            .model
            .replay
            .iter()
            .map(|(f, st)| (f.clone(), (*st).to_owned()))
            .collect();
        let got: Vec<(String, String)> = report["invocations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        let t = |k: &str| i[k].as_str().unwrap_or("?").to_owned();
                        (t("function"), t("status"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            report["identical"] == json!(ran)
                && report["refused"] == json!(refused)
                && report["divergent"] == json!(0)
                && report["interrupted"] == json!(0)
                && got == want,
            "{at}: replay must report identical {ran}, refused {refused}, divergent 0, \
             interrupted 0, per invocation {want:?}; it reported {}",
            excerpt(&run.stdout)
        );
        Ok(())
    }

    /// The shown entries as the model's records: invocation numbers strictly increasing from
    /// one start to the next, each mapped to its start's place; every decision naming the
    /// digest of the last policy change (I9), and each policy version recorded with one digest.
    fn records(&mut self, shown: &[Json]) -> Result<Vec<Rec>, Failure> {
        let at = self.at.clone();
        let mut numbers: BTreeMap<u64, usize> = BTreeMap::new();
        let mut last_number = None;
        let mut digest: Option<String> = None;
        let mut versions = 0..;
        let mut recs = Vec::new();
        for (i, e) in shown.iter().enumerate() {
            let t = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            let kind = t("type");
            let number = e["invocation"].as_u64();
            let inv = match (kind.as_str(), number) {
                ("invocation-start", Some(n)) => {
                    ensure!(
                        last_number.is_none_or(|l| n > l),
                        "{at}: entry {i} starts invocation {n} after {last_number:?}: numbers \
                         must grow"
                    );
                    last_number = Some(n);
                    let place = numbers.len();
                    numbers.insert(n, place);
                    place
                }
                (_, Some(n)) => *numbers.get(&n).ok_or_else(|| {
                    failed(format!(
                        "{at}: entry {i} ({kind}) names invocation {n}, which never started"
                    ))
                })?,
                (_, None) => usize::MAX,
            };
            let rec = match kind.as_str() {
                "key-change" => Rec::KeyChange,
                "policy-change" => {
                    let d = t("policy_digest");
                    ensure!(
                        digest.as_ref() != Some(&d),
                        "{at}: entry {i} records the policy digest already in force"
                    );
                    digest = Some(d.clone());
                    // Which of the model's policies: by the order the model recorded them.
                    let version = self
                        .model
                        .recs
                        .iter()
                        .filter_map(|r| match r {
                            Rec::PolicyChange(v) => Some(*v),
                            _ => None,
                        })
                        .nth(versions.next().unwrap_or(0))
                        .unwrap_or(usize::MAX);
                    let known = self.digests.entry(version).or_insert_with(|| d.clone());
                    ensure!(
                        *known == d,
                        "{at}: entry {i} records the policy of version {version} with digest {d}; \
                         it was recorded before as {known}"
                    );
                    Rec::PolicyChange(version)
                }
                "invocation-start" => Rec::Start {
                    inv,
                    principal: t("principal"),
                    function: t("function"),
                    budget: e["fuel_budget"].as_u64().unwrap_or(u64::MAX),
                },
                "decision" => {
                    let Some(allowed) = e["allowed"].as_bool() else {
                        return Err(failed(format!(
                            "{at}: entry {i}, a decision, has no `allowed`"
                        )));
                    };
                    ensure!(
                        digest.as_deref() == e["policy_digest"].as_str(),
                        "{at}: entry {i}, a decision, must carry the digest of the last \
                         policy change {digest:?}: {e}"
                    );
                    Rec::Decision {
                        inv,
                        action: t("action"),
                        resource: t("resource"),
                        allowed,
                        ids: e["policy_ids"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|i| i.as_str().unwrap_or("?").to_owned())
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                }
                "host-call" => Rec::HostCall {
                    inv,
                    seq: e["seq"].as_u64().unwrap_or(u64::MAX),
                    interface: t("interface"),
                    function: t("function"),
                },
                "trap" => Rec::Trap {
                    inv,
                    kind: t("kind"),
                },
                "invocation-end" => Rec::End {
                    inv,
                    result: e["result"].clone(),
                    fuel: e["fuel_consumed"].as_u64(),
                },
                other => Rec::Other(other.to_owned()),
            };
            recs.push(rec);
        }
        Ok(recs)
    }

    /// I12 on the shown entries: every end of the same function with the same arguments and
    /// result consumed the same fuel as the first one seen in the sequence, within its budget,
    /// and a `fuel-exhausted` trap consumed exactly the budget.
    fn same_fuel(&mut self, shown: &[Json]) -> Result<(), Failure> {
        let mut starts: BTreeMap<u64, &Json> = BTreeMap::new();
        for e in shown {
            let Some(n) = e["invocation"].as_u64() else {
                continue;
            };
            match e["type"].as_str() {
                Some("invocation-start") => {
                    starts.insert(n, e);
                }
                Some("trap") if e["kind"] == "fuel-exhausted" => {
                    let budget = starts.get(&n).map(|s| s["fuel_budget"].clone());
                    ensure!(
                        budget.as_ref() == Some(&e["fuel_consumed"]),
                        "{}: invocation {n} ran out of fuel having consumed {} of its budget \
                         {budget:?}: it must consume exactly the budget",
                        self.at,
                        e["fuel_consumed"]
                    );
                }
                Some("invocation-end") => {
                    let Some(start) = starts.get(&n) else {
                        continue;
                    };
                    let consumed = e["fuel_consumed"].as_u64().unwrap_or(u64::MAX);
                    let budget = start["fuel_budget"].as_u64().unwrap_or(0);
                    ensure!(
                        consumed <= budget,
                        "{}: invocation {n} consumed {consumed} of a budget of {budget}",
                        self.at
                    );
                    let call = format!(
                        "{} {} {} -> {}",
                        start["principal"], start["function"], start["args"], e["result"]
                    );
                    let first = *self.fuel.entry(call.clone()).or_insert(consumed);
                    ensure!(
                        consumed == first,
                        "{}: `{call}` consumed {consumed} fuel, where the same call consumed \
                         {first} before",
                        self.at
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether the target's record agrees with the model's: equal, the fuel of an end compared
/// only where the model knows it.
fn agrees(want: Option<&Rec>, got: Option<&Rec>) -> bool {
    match (want, got) {
        (
            Some(Rec::End {
                inv: wi,
                result: wr,
                fuel: wf,
            }),
            Some(Rec::End {
                inv: gi,
                result: gr,
                fuel: gf,
            }),
        ) => wi == gi && wr == gr && (wf.is_none() || wf == gf),
        (Some(w), Some(g)) => w == g,
        _ => false,
    }
}

/// The sequences, each on a fresh data directory: after the first open and after every step,
/// every observable equals the model's.
fn state_machine(target: &Target) -> Result<(), Failure> {
    let mut covered = std::collections::BTreeSet::new();
    for seed in SEEDS {
        let mut rng = Xorshift(seed);
        let mut sequence = Sequence::new(target, seed)?;
        sequence.observe()?;
        for n in 0..STEPS {
            let op = Op::generate(&mut rng);
            covered.insert(op.label(&sequence.model));
            sequence.at = format!("seed {seed:#x}, step {n} ({op:?})");
            let got = sequence.perform(op)?;
            let want = sequence.model.step(op);
            ensure!(
                got == want,
                "{}: the answer must be the model's {want:?}; it was {got:?}",
                sequence.at
            );
            sequence.observe()?;
        }
        let changes = sequence
            .model
            .recs
            .iter()
            .filter(|r| matches!(r, Rec::PolicyChange(_)))
            .count();
        if changes >= 3 {
            covered.insert("policy-recorded-again");
        }
    }
    // The seeds are fixed: that they reach every operation is a property of this list.
    let all = [
        "divide",
        "divide-trap",
        "spin",
        "note",
        "remember",
        "remember-forbidden",
        "recall",
        "recall-applied",
        "recall-after-forbidden",
        "recall-after-trap",
        "refused",
        "unknown",
        "policy",
        "tampered",
        "write-then-trap",
        "unrequested",
        "policy-recorded-again",
    ];
    let missing: Vec<&str> = all.into_iter().filter(|k| !covered.contains(k)).collect();
    ensure!(
        missing.is_empty(),
        "the generated sequences must perform every operation; none performs {missing:?}"
    );
    Ok(())
}
