//! What one invocation puts in the ledger: the entries, in order, built from its [`Outcome`].
//!
//! ```text
//! InvocationStart                      who, what (component sha256), engine digest, wasmtime
//!                                      version, WIT world, fuel budget, policy digest, args
//! Decision  invoke                     the invocation's authorization
//! Decision* HostCall                   per host call: its decisions, then the call with params,
//!                                      result and the fuel left at the call
//! Trap?                                fuel exhaustion, a limit or a trap
//! InvocationEnd                        result, fuel consumed, captured output
//! ```
//!
//! An invocation refused by the policy records its start, the refusing decisions and an end
//! without a result: the refusal is kept, and nothing else happened.

use femtoclaw_ledger::{Entry, Value};
use femtoclaw_policy::Decision;

use crate::{Outcome, WIT_WORLD, engine};

/// The facts of an invocation known before it runs.
#[derive(Debug, Clone)]
pub struct Start {
    /// Ledger-assigned invocation number.
    pub invocation: u64,
    /// The principal, as the policy names it.
    pub principal: String,
    /// Capability name.
    pub capability: String,
    /// Capability version.
    pub version: String,
    /// SHA-256 of the component.
    pub component_sha256: [u8; 32],
    /// The sandbox's engine digest.
    pub engine_digest: [u8; 32],
    /// Fuel budget.
    pub fuel_budget: u64,
    /// Digest of the policy set in force.
    pub policy_digest: [u8; 32],
    /// The function called.
    pub function: String,
}

impl Start {
    fn entry(&self, args: Vec<(String, Value)>) -> Entry {
        Entry::InvocationStart {
            invocation: self.invocation,
            principal: self.principal.clone(),
            capability: self.capability.clone(),
            version: self.version.clone(),
            component_sha256: self.component_sha256,
            wit_world: WIT_WORLD.to_owned(),
            engine_digest: self.engine_digest,
            wasmtime_version: engine::WASMTIME_VERSION.to_owned(),
            fuel_budget: self.fuel_budget,
            policy_digest: Some(self.policy_digest),
            function: self.function.clone(),
            args,
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

/// The entries of an invocation that ran (successfully or not).
pub fn ran(start: &Start, invoke: &Decision, outcome: &Outcome) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(4 + 2 * outcome.host_calls.len());
    entries.push(start.entry(outcome.args.clone()));
    let capability = format!("{}@{}", start.capability, start.version);
    entries.push(start.decision("invoke", &capability, invoke));
    for (seq, call) in outcome.host_calls.iter().enumerate() {
        for d in &call.decisions {
            entries.push(start.decision(d.action.as_str(), &d.resource, &d.decision));
        }
        entries.push(Entry::HostCall {
            invocation: start.invocation,
            seq: u32::try_from(seq).unwrap_or(u32::MAX),
            interface: call.interface.to_owned(),
            function: call.function.to_owned(),
            params: call.params.clone(),
            result: call.result.clone(),
            fuel_remaining: call.fuel_remaining,
        });
    }
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
