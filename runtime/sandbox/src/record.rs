//! What one invocation puts in the ledger: the entries, in order, built from its [`Outcome`].
//!
//! ```text
//! InvocationStart                      who, what (component sha256), engine digest, wasmtime
//!                                      version, WIT world, fuel budget, policy digest, args
//! Decision  invoke                     the invocation's authorization
//! Decision* HostCall                   per host call: its decisions, then the call with params,
//!                                      result and the fuel left at the call
//! Trap?                                fuel exhaustion, a limit, a trap or the deadline
//! InvocationEnd                        result, fuel consumed, captured output
//! ```
//!
//! An invocation refused by the policy records its start, the refusing decisions and an end
//! without a result: the refusal is kept, and nothing else happened.
//!
//! **Write-ahead.** A host call that changes the world (an HTTP request, a file write…) calls
//! [`Authority::before_effect`](crate::gate::Authority::before_effect) once authorized: the
//! invocation's [`Journal`] then makes every entry so far durable, ending with the call's
//! decisions and a `HostCallIntent` (its parameters), before the call is performed. Those
//! entries are a prefix of what [`ran`] lists; the host appends the rest when the invocation
//! ends. An invocation without such calls writes nothing ahead: one durable append at its end.
//! If the host stops in between, the next open finds a start without an end and records
//! [`interrupted`].

use std::ops::Range;
use std::sync::Arc;

use femtoclaw_ledger::{Entry, LedgerWriter, Value};
use femtoclaw_policy::Decision;

use crate::gate::{Authorized, HostCall};
use crate::{Outcome, WIT_WORLD, engine};

/// The trap kind of an invocation the host stopped during (a crash, `kill -9`): recorded when
/// the ledger is next opened.
pub const INTERRUPTED: &str = "interrupted";

/// The trap kind of an invocation that ran past its wall-clock deadline.
pub const DEADLINE: &str = "deadline";

/// The trap kind of an invocation its caller withdrew while it ran.
pub const CANCELLED: &str = "cancelled";

/// The decision action of an approval a policy requires (`@approval("required")`): not
/// allowed while it is pending.
pub const APPROVAL: &str = "approval";

/// The trap kind of an invocation that ran into a limit, or was refused at one before it ran.
pub const LIMIT: &str = "limit";

/// The facts of an invocation known before it runs.
#[derive(Debug, Clone)]
pub struct Start {
    /// Ledger-assigned invocation number.
    pub invocation: u64,
    /// The principal, as the policy names it.
    pub principal: String,
    /// The groups it is in.
    pub groups: Vec<String>,
    /// Capability name.
    pub capability: String,
    /// Capability version.
    pub version: String,
    /// SHA-256 of the component.
    pub component_sha256: [u8; 32],
    /// SHA-256 of the capability's manifest.
    pub manifest_sha256: [u8; 32],
    /// The sandbox's engine digest.
    pub engine_digest: [u8; 32],
    /// Fuel budget.
    pub fuel_budget: u64,
    /// Digest of the policy set in force.
    pub policy_digest: [u8; 32],
    /// The function called.
    pub function: String,
    /// The caller's W3C trace id, when it sent a `traceparent`.
    pub trace_id: Option<[u8; 16]>,
    /// The invocation whose granted approval this one spends.
    pub approval: Option<u64>,
}

impl Start {
    fn entry(&self, args: Vec<(String, Value)>) -> Entry {
        Entry::InvocationStart {
            invocation: self.invocation,
            principal: self.principal.clone(),
            groups: self.groups.clone(),
            capability: self.capability.clone(),
            version: self.version.clone(),
            component_sha256: self.component_sha256,
            manifest_sha256: self.manifest_sha256,
            wit_world: WIT_WORLD.to_owned(),
            engine_digest: self.engine_digest,
            wasmtime_version: engine::WASMTIME_VERSION.to_owned(),
            fuel_budget: self.fuel_budget,
            policy_digest: Some(self.policy_digest),
            function: self.function.clone(),
            args,
            trace_id: self.trace_id,
            approval: self.approval,
        }
    }

    fn decision(&self, action: &str, resource: &str, decision: &Decision) -> Entry {
        Entry::Decision {
            invocation: self.invocation,
            action: action.to_owned(),
            resource: resource.to_owned(),
            allowed: decision.allowed,
            policy_ids: decision.policy_ids.clone(),
            policy_digest: decision.policy_digest,
        }
    }
}

/// One host call's facts, finished or still being performed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// Position in the invocation.
    pub(crate) seq: usize,
    pub(crate) interface: &'static str,
    pub(crate) function: &'static str,
    pub(crate) params: &'a Value,
    pub(crate) fuel_remaining: u64,
    /// The decisions taken so far.
    pub(crate) decisions: &'a [Authorized],
    /// How many of `decisions` came before the intent, when the call was written ahead.
    pub(crate) intent: Option<usize>,
    /// The result, once the call is done.
    pub(crate) result: Option<&'a Value>,
}

impl HostCall {
    pub(crate) fn as_call(&self, seq: usize) -> Call<'_> {
        Call {
            seq,
            interface: self.interface,
            function: self.function,
            params: &self.params,
            fuel_remaining: self.fuel_remaining,
            decisions: &self.decisions,
            intent: self.intent,
            result: Some(&self.result),
        }
    }
}

impl Start {
    /// The entries of `call`: its decisions, its intent where it was written ahead (after the
    /// decisions that allowed it), then the call itself once it has a result.
    fn call_entries(&self, call: Call<'_>, entries: &mut Vec<Entry>) {
        let seq = u32::try_from(call.seq).unwrap_or(u32::MAX);
        for (i, d) in call.decisions.iter().enumerate() {
            if call.intent == Some(i) {
                entries.push(self.intent(seq, call));
            }
            entries.push(self.decision(d.action.as_str(), &d.resource, &d.decision));
        }
        if call.intent == Some(call.decisions.len()) {
            entries.push(self.intent(seq, call));
        }
        if let Some(result) = call.result {
            entries.push(Entry::HostCall {
                invocation: self.invocation,
                seq,
                interface: call.interface.to_owned(),
                function: call.function.to_owned(),
                params: call.params.clone(),
                result: result.clone(),
                fuel_remaining: call.fuel_remaining,
            });
        }
    }

    fn intent(&self, seq: u32, call: Call<'_>) -> Entry {
        Entry::HostCallIntent {
            invocation: self.invocation,
            seq,
            interface: call.interface.to_owned(),
            function: call.function.to_owned(),
            params: call.params.clone(),
            fuel_remaining: call.fuel_remaining,
        }
    }

    /// The invocation's first two entries: its start and the decision that let it run.
    fn opening(&self, invoke: &Decision, args: Vec<(String, Value)>) -> [Entry; 2] {
        let capability = format!("{}@{}", self.capability, self.version);
        [
            self.entry(args),
            self.decision("invoke", &capability, invoke),
        ]
    }
}

/// The entries of an invocation that ran (successfully or not) that are not in the ledger yet:
/// all of them but those written ahead of an effect ([`Outcome::written_ahead`]).
pub fn ran(start: &Start, invoke: &Decision, outcome: &Outcome) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(4 + 2 * outcome.host_calls.len());
    entries.extend(start.opening(invoke, outcome.args.clone()));
    for (seq, call) in outcome.host_calls.iter().enumerate() {
        start.call_entries(call.as_call(seq), &mut entries);
    }
    entries.drain(..outcome.written_ahead.len().min(entries.len()));
    if let Err(failure) = &outcome.result {
        entries.push(Entry::Trap {
            invocation: start.invocation,
            kind: failure.kind().to_owned(),
            message: failure.to_string(),
            fuel_consumed: outcome.fuel_consumed,
        });
    }
    entries.push(Entry::InvocationEnd {
        invocation: start.invocation,
        result: outcome.result_value.clone(),
        fuel_consumed: outcome.fuel_consumed,
        stdout: outcome.stdout.clone(),
        stderr: outcome.stderr.clone(),
    });
    entries
}

/// The entries of an invocation the policy refused before any guest code ran: `refusals` are
/// the `(action, resource, decision)` that refused it.
pub fn refused(start: &Start, refusals: &[(&str, &str, &Decision)]) -> Vec<Entry> {
    let mut entries = vec![start.entry(Vec::new())];
    entries.extend(
        refusals
            .iter()
            .map(|(action, resource, decision)| start.decision(action, resource, decision)),
    );
    entries.push(Entry::InvocationEnd {
        invocation: start.invocation,
        result: None,
        fuel_consumed: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
    });
    entries
}

/// The entries of an invocation the policy allows only once a person approves it, with none
/// granted yet: its start with its arguments, the `invoke` decision that allowed it, an
/// `approval` decision not (yet) allowed, by the same policies, its end, and `request`, the
/// approval entry that asks for it (none when an identical call already asked). Nothing ran.
pub fn pending(
    start: &Start,
    invoke: &Decision,
    args: Vec<(String, Value)>,
    request: Option<Entry>,
) -> Vec<Entry> {
    let mut entries = Vec::from(start.opening(invoke, args));
    entries.push(Entry::Decision {
        invocation: start.invocation,
        action: APPROVAL.to_owned(),
        resource: format!("{}@{}.{}", start.capability, start.version, start.function),
        allowed: false,
        policy_ids: invoke.policy_ids.clone(),
        policy_digest: invoke.policy_digest,
    });
    entries.push(Entry::InvocationEnd {
        invocation: start.invocation,
        result: None,
        fuel_consumed: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
    });
    entries.extend(request);
    entries
}

/// The entries of an invocation refused before anything was decided or ran, because the host
/// was at one of its limits: `message` names the limit (`server.per_principal`).
pub fn over_limit(start: &Start, message: &str) -> Vec<Entry> {
    vec![
        start.entry(Vec::new()),
        Entry::Trap {
            invocation: start.invocation,
            kind: LIMIT.to_owned(),
            message: message.to_owned(),
            fuel_consumed: 0,
        },
        Entry::InvocationEnd {
            invocation: start.invocation,
            result: None,
            fuel_consumed: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
    ]
}

/// The entries that end an invocation the host stopped during: an `interrupted` trap and an
/// end without a result. `fuel_consumed` is what its last recorded call shows.
pub fn interrupted(invocation: u64, fuel_consumed: u64) -> Vec<Entry> {
    vec![
        Entry::Trap {
            invocation,
            kind: INTERRUPTED.to_owned(),
            message: format!(
                "host stopped before invocation {invocation} ended; recorded when the ledger was next opened"
            ),
            fuel_consumed,
        },
        Entry::InvocationEnd {
            invocation,
            result: None,
            fuel_consumed,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
    ]
}

/// Where a [`Journal`] makes entries durable: the host's ledger.
pub trait Sink: Send + Sync {
    /// Appends `entries` durably (fsync'd) and returns their ledger indexes.
    fn append(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Range<u64>, Box<dyn std::error::Error + Send + Sync>>;
}

/// The group-committing writer: concurrent invocations writing ahead share its fsync.
impl Sink for LedgerWriter {
    fn append(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Range<u64>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(LedgerWriter::append(self, entries)?.indexes())
    }
}

/// An invocation's write-ahead journal: what it needs to write its entries before an effect,
/// and how far it has written. The host gives one to every invocation it records
/// ([`crate::Context::journal`]).
#[derive(Clone)]
pub struct Journal {
    start: Start,
    invoke: Decision,
    sink: Arc<dyn Sink>,
    /// The arguments, held here during the run (the start entry carries them).
    pub(crate) args: Vec<(String, Value)>,
    /// Ledger indexes of the entries written so far.
    pub(crate) written: Vec<u64>,
    /// Calls whose entries are all written, and how many entries of the next one are.
    calls: usize,
    within: usize,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("invocation", &self.start.invocation)
            .field("written", &self.written.len())
            .finish_non_exhaustive()
    }
}

/// The entries before an effect could not be made durable: the call is not performed, and the
/// gate traps the invocation.
#[derive(Debug, thiserror::Error)]
#[error("cannot make host call {seq} `{call}` durable before performing it")]
pub struct WriteAheadError {
    /// The call's position in the invocation.
    pub seq: usize,
    /// `interface#function`.
    pub call: String,
    /// Why the ledger refused.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Journal {
    /// A journal for the invocation `start`, which `invoke` allowed, writing to `sink`.
    pub fn new(start: Start, invoke: Decision, sink: Arc<dyn Sink>) -> Self {
        Self {
            start,
            invoke,
            sink,
            args: Vec::new(),
            written: Vec::new(),
            calls: 0,
            within: 0,
        }
    }

    /// Makes durable every entry not yet written up to `pending`, the call about to perform
    /// its effect: the start (first time), the calls `done` since the last write, and
    /// `pending`'s decisions and intent.
    pub(crate) fn write_ahead(
        &mut self,
        done: &[HostCall],
        pending: Call<'_>,
    ) -> Result<(), WriteAheadError> {
        let mut entries = Vec::new();
        if self.written.is_empty() {
            entries.extend(self.start.opening(&self.invoke, self.args.clone()));
        }
        let mut within = self.within;
        for (seq, call) in done.iter().enumerate().skip(self.calls) {
            let mut these = Vec::new();
            self.start.call_entries(call.as_call(seq), &mut these);
            entries.extend(these.into_iter().skip(within));
            within = 0;
        }
        let mut these = Vec::new();
        self.start.call_entries(pending, &mut these);
        let count = these.len();
        entries.extend(these.into_iter().skip(within));
        let indexes = self
            .sink
            .append(entries)
            .map_err(|source| WriteAheadError {
                seq: pending.seq,
                call: format!("{}#{}", pending.interface, pending.function),
                source,
            })?;
        self.written.extend(indexes);
        self.calls = pending.seq;
        self.within = count;
        Ok(())
    }
}
