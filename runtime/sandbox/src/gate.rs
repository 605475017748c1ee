//! The gate: the one path every host call takes.
//!
//! A host interface never writes its own authorization or recording code: it declares its
//! functions with [`Gate::define`] (calls that touch no scope, such as clocks) or
//! [`Gate::define_scoped`] (calls on a host, path, namespace, secret or config key). The gate
//! reads the fuel left at the call, asks the policy about the concrete scope, performs the call
//! or answers `denied` as a WIT error the guest sees, and records
//! `{interface, function, params, result, fuel remaining, decisions}` in the invocation's
//! host-call log, the log the ledger persists.

use std::sync::Arc;

use femtoclaw_ledger::Value;
use femtoclaw_policy::{CallAction, CallChecker, Decision, Scope};
use wasmtime::component::{ComponentNamedList, Lift, Linker, Lower};

use crate::replay::{Divergence, Replay};
use crate::state::State;
use crate::values;

/// The linker being built, and the names of every function defined through the gate: the
/// functions that replay answers from the ledger.
pub(crate) struct Registry {
    pub(crate) linker: Linker<State>,
    pub(crate) gated: Vec<(&'static str, &'static str)>,
}

/// One policy decision the gate took for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The call action (`config.read`, `kv.write`, …).
    pub action: CallAction,
    /// The concrete scope, canonical (`config:region`).
    pub resource: String,
    /// The decision, with its determining policy ids and the policy-set digest.
    pub decision: Arc<Decision>,
}

/// One host call as the gate saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCall {
    /// WIT interface, with its package and version (`wasi:clocks/wall-clock@0.2.12`).
    pub interface: &'static str,
    /// Function name within the interface.
    pub function: &'static str,
    /// Parameters, as a tuple.
    pub params: Value,
    /// Result, as a tuple.
    pub result: Value,
    /// Fuel left in the store when the guest made the call.
    pub fuel_remaining: u64,
    /// The policy decisions the call needed, in the order taken (empty for unscoped calls).
    pub decisions: Vec<Authorized>,
}

/// A value a host call takes or returns, in the ledger's canonical form.
pub trait Recorded {
    /// The canonical value.
    fn to_value(&self) -> Value;
}

impl Recorded for u64 {
    fn to_value(&self) -> Value {
        Value::U64(*self)
    }
}

impl Recorded for u32 {
    fn to_value(&self) -> Value {
        Value::U32(*self)
    }
}

impl Recorded for String {
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
}

impl Recorded for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

macro_rules! recorded_tuple {
    ($($name:ident)*) => {
        impl<$($name: Recorded),*> Recorded for ($($name,)*) {
            #[allow(non_snake_case, reason = "tuple fields named by their type parameter")]
            fn to_value(&self) -> Value {
                let ($($name,)*) = self;
                Value::Tuple(vec![$($name.to_value()),*])
            }
        }
    };
}

recorded_tuple!();
recorded_tuple!(A);
recorded_tuple!(A B);

/// The per-invocation side of the gate: who may do what, the log of host calls made so far,
/// and, in replay, the recorded calls that answer them.
#[derive(Debug)]
pub struct Gate {
    authority: Arc<CallChecker>,
    calls: Vec<HostCall>,
    pub(crate) replay: Option<Replay>,
}

/// What a scoped call sees of the gate: ask about a scope, with every answer kept for the record.
pub struct Authority<'a> {
    checker: &'a CallChecker,
    decisions: Vec<Authorized>,
}

impl Authority<'_> {
    /// Asks whether this call may `action` on `scope`; the decision is recorded either way.
    pub fn check(&mut self, action: CallAction, scope: &Scope) -> Result<(), Denied> {
        let decision = self.checker.check(action, scope);
        let allowed = decision.allowed;
        self.decisions.push(Authorized {
            action,
            resource: scope.canonical(),
            decision,
        });
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                action,
                resource: scope.canonical(),
            })
        }
    }
}

/// A call the policy refused: the guest gets this as a WIT error, never a trap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("denied: `{}` on `{resource}` is not granted to this capability", action.as_str())]
pub struct Denied {
    /// The action.
    pub action: CallAction,
    /// The scope, canonical.
    pub resource: String,
}

impl Gate {
    /// A gate that authorizes scoped calls with `authority`.
    pub fn new(authority: Arc<CallChecker>) -> Self {
        Self {
            authority,
            calls: Vec::new(),
            replay: None,
        }
    }

    /// The host calls recorded so far, in call order.
    pub fn calls(&self) -> &[HostCall] {
        &self.calls
    }

    /// Takes the recorded calls, leaving the log empty.
    pub fn take_calls(&mut self) -> Vec<HostCall> {
        std::mem::take(&mut self.calls)
    }

    /// Defines `interface#function` so that every call passes the gate: a call that touches no
    /// scope (clocks, random, logging).
    ///
    /// `perform` runs the call on the store's state; it may fail, which traps the guest (a host
    /// fault or a limit, never a policy denial: those are WIT errors the guest sees).
    pub(crate) fn define<P, R>(
        registry: &mut Registry,
        interface: &'static str,
        function: &'static str,
        perform: impl Fn(&mut State, &P) -> wasmtime::Result<R> + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: ComponentNamedList + Lift + Recorded + 'static,
        R: ComponentNamedList + Lower + Recorded + 'static,
    {
        Self::define_scoped(registry, interface, function, move |state, _, params| {
            perform(state, params)
        })
    }

    /// Like [`Gate::define`], for a call that touches scopes: `perform` gets an [`Authority`]
    /// to ask about each scope before touching it, and the decisions are recorded with the call.
    pub(crate) fn define_scoped<P, R>(
        registry: &mut Registry,
        interface: &'static str,
        function: &'static str,
        perform: impl Fn(&mut State, &mut Authority<'_>, &P) -> wasmtime::Result<R>
        + Send
        + Sync
        + 'static,
    ) -> wasmtime::Result<()>
    where
        P: ComponentNamedList + Lift + Recorded + 'static,
        R: ComponentNamedList + Lower + Recorded + 'static,
    {
        registry.gated.push((interface, function));
        registry
            .linker
            .instance(interface)?
            .func_wrap(function, move |mut store, params: P| {
                let fuel_remaining = store.get_fuel()?;
                let state = store.data_mut();
                // A second handle on the checker leaves `state` free for `perform`.
                let checker = Arc::clone(&state.gate.authority);
                let mut authority = Authority {
                    checker: &checker,
                    decisions: Vec::new(),
                };
                let result = perform(state, &mut authority, &params)?;
                state.gate.calls.push(HostCall {
                    interface,
                    function,
                    params: params.to_value(),
                    result: result.to_value(),
                    fuel_remaining,
                    decisions: authority.decisions,
                });
                Ok(result)
            })
    }

    /// Redefines `interface#function` in `linker` to answer from the ledger: the call must be
    /// the next recorded one, with the same parameters and the same fuel left; its recorded
    /// result is returned and nothing is performed. A mismatch stops the run with the
    /// [`Divergence`] that says where and how.
    pub(crate) fn define_replay(
        linker: &mut Linker<State>,
        interface: &'static str,
        function: &'static str,
    ) -> wasmtime::Result<()> {
        linker
            .instance(interface)?
            .func_new(function, move |mut store, ty, params, results| {
                let fuel_remaining = store.get_fuel()?;
                let state = store.data_mut();
                let actual = Value::Tuple(
                    params
                        .iter()
                        .zip(ty.params())
                        .map(|(v, (_, t))| values::val_to_value(v, &t))
                        .collect(),
                );
                let seq = state.gate.calls.len();
                let replay =
                    state.gate.replay.as_mut().ok_or_else(|| {
                        wasmtime::format_err!("replay linker used outside replay")
                    })?;
                let expected = replay.expect(seq, interface, function, &actual, fuel_remaining)?;
                let recorded = match &expected.result {
                    Value::Tuple(values) if values.len() == results.len() => values,
                    other => {
                        return Err(Divergence::Unanswerable {
                            seq,
                            call: format!("{interface}#{function}"),
                            recorded: format!("{other:?}"),
                        }
                        .into());
                    }
                };
                for ((slot, value), t) in results.iter_mut().zip(recorded).zip(ty.results()) {
                    *slot = values::value_to_val(value, &t).ok_or_else(|| {
                        Divergence::Unanswerable {
                            seq,
                            call: format!("{interface}#{function}"),
                            recorded: format!("{value:?}"),
                        }
                    })?;
                }
                let result = expected.result.clone();
                state.gate.calls.push(HostCall {
                    interface,
                    function,
                    params: actual,
                    result,
                    fuel_remaining,
                    decisions: Vec::new(),
                });
                Ok(())
            })
    }
}
