//! The gate: the one path every host call takes.
//!
//! A host interface never writes its own authorization or recording code: it declares its
//! functions with [`Gate::define`] (calls that touch no scope, such as clocks) or
//! [`Gate::define_scoped`] (calls on a host, path, namespace, secret or config key). The gate
//! reads the fuel left at the call, asks the policy about the concrete scope, performs the call
//! or answers `denied` as a WIT error the guest sees, and records
//! `{interface, function, params, result, fuel remaining, decisions}` in the invocation's
//! host-call log, the log the ledger persists. A call that changes the world asks the gate to
//! write the invocation's entries ahead of it ([`Authority::before_effect`]); every call ends
//! with a look at the invocation's wall-clock deadline.

use std::sync::Arc;

use femtoclaw_ledger::Value;
use femtoclaw_policy::{CallAction, CallChecker, Decision, Scope};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentNamedList, Lift, Linker, Lower, Resource, ResourceType};

use crate::record::{Call, Journal, WriteAheadError};
use crate::replay::{Divergence, Replay};
use crate::state::State;

/// The linker being built, through which every host interface declares its functions.
pub(crate) struct Registry {
    pub(crate) linker: Linker<State>,
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
    /// For a call written ahead of its effect, how many of `decisions` came before its intent
    /// (the others were taken after, for a redirect, say); `None` for a call written only
    /// with the rest of the invocation.
    pub intent: Option<usize>,
}

/// A value a host call takes or returns, in the ledger's canonical form, and back: the gate
/// records the one and, in replay, answers with the other.
pub trait Recorded: Sized {
    /// The canonical value.
    fn to_value(&self) -> Value;
    /// The value a recorded [`Value`] stands for; `None` when it does not fit the type.
    fn from_value(value: &Value) -> Option<Self>;
}

macro_rules! recorded_scalar {
    ($($ty:ty => $case:ident),*) => {$(
        impl Recorded for $ty {
            fn to_value(&self) -> Value {
                Value::$case(self.clone())
            }
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    Value::$case(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    )*};
}

recorded_scalar!(bool => Bool, u64 => U64, u32 => U32, u16 => U16, String => String, Vec<u8> => Bytes);

impl<T: Recorded> Recorded for Option<T> {
    fn to_value(&self) -> Value {
        Value::Option(self.as_ref().map(|v| Box::new(v.to_value())))
    }
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Option(None) => Some(None),
            Value::Option(Some(v)) => T::from_value(v).map(Some),
            _ => None,
        }
    }
}

impl<T: Recorded, E: Recorded> Recorded for Result<T, E> {
    fn to_value(&self) -> Value {
        Value::Result(match self {
            Ok(v) => Ok(Some(Box::new(v.to_value()))),
            Err(e) => Err(Some(Box::new(e.to_value()))),
        })
    }
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Result(Ok(Some(v))) => T::from_value(v).map(Ok),
            Value::Result(Err(Some(e))) => E::from_value(e).map(Err),
            _ => None,
        }
    }
}

/// A list of anything but bytes (`list<u8>` is [`Value::Bytes`], above).
impl<T: Recorded> Recorded for Vec<T> {
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(Recorded::to_value).collect())
    }
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::List(items) => items.iter().map(T::from_value).collect(),
            _ => None,
        }
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
            #[allow(non_snake_case, unused_mut, unused_variables, reason = "generated per arity")]
            fn from_value(value: &Value) -> Option<Self> {
                let Value::Tuple(items) = value else { return None };
                let mut items = items.iter();
                let tuple = ($($name::from_value(items.next()?)?,)*);
                items.next().is_none().then_some(tuple)
            }
        }
    };
}

recorded_tuple!();
recorded_tuple!(A);
recorded_tuple!(A B);
recorded_tuple!(A B C);
recorded_tuple!(A B C D);
recorded_tuple!(A B C D E);

/// Implements [`Recorded`] for a WIT enum: each case by its WIT name.
macro_rules! recorded_enum {
    ($ty:ty { $($case:ident => $name:literal),* $(,)? }) => {
        impl $crate::gate::Recorded for $ty {
            fn to_value(&self) -> ::femtoclaw_ledger::Value {
                ::femtoclaw_ledger::Value::Enum(match self { $(Self::$case => $name),* }.to_owned())
            }
            fn from_value(value: &::femtoclaw_ledger::Value) -> Option<Self> {
                let ::femtoclaw_ledger::Value::Enum(name) = value else { return None };
                match name.as_str() {
                    $($name => Some(Self::$case),)*
                    _ => None,
                }
            }
        }
    };
}

/// Implements [`Recorded`] for WIT flags: the names of the flags set, in declaration order.
macro_rules! recorded_flags {
    ($ty:ty { $($flag:ident => $name:literal),* $(,)? }) => {
        impl $crate::gate::Recorded for $ty {
            fn to_value(&self) -> ::femtoclaw_ledger::Value {
                ::femtoclaw_ledger::Value::Flags(
                    [$((Self::$flag, $name)),*]
                        .into_iter()
                        .filter(|(flag, _)| self.contains(*flag))
                        .map(|(_, name)| name.to_owned())
                        .collect(),
                )
            }
            fn from_value(value: &::femtoclaw_ledger::Value) -> Option<Self> {
                let ::femtoclaw_ledger::Value::Flags(names) = value else { return None };
                names.iter().try_fold(Self::empty(), |set, name| match name.as_str() {
                    $($name => Some(set | Self::$flag),)*
                    _ => None,
                })
            }
        }
    };
}

/// Implements [`Recorded`] for a WIT record: each field under its WIT name, in declaration
/// order; a recorded value with other fields, or in another order, does not fit.
macro_rules! recorded_record {
    ($ty:ty { $($field:ident: $name:literal),* $(,)? }) => {
        impl $crate::gate::Recorded for $ty {
            fn to_value(&self) -> ::femtoclaw_ledger::Value {
                ::femtoclaw_ledger::Value::Record(vec![
                    $(($name.to_owned(), $crate::gate::Recorded::to_value(&self.$field)),)*
                ])
            }
            fn from_value(value: &::femtoclaw_ledger::Value) -> Option<Self> {
                let ::femtoclaw_ledger::Value::Record(fields) = value else { return None };
                let mut fields = fields.iter();
                $(
                    let $field = match fields.next()? {
                        (name, value) if name == $name => $crate::gate::Recorded::from_value(value)?,
                        _ => return None,
                    };
                )*
                fields.next().is_none().then_some(Self { $($field),* })
            }
        }
    };
}

/// Implements [`Recorded`] for a WIT variant: the case by its WIT name, with its payload when
/// the case carries one (`Case(Type) => "case"`).
macro_rules! recorded_variant {
    ($ty:ty { $($case:ident $(($payload:ty))? => $name:literal),* $(,)? }) => {
        impl $crate::gate::Recorded for $ty {
            fn to_value(&self) -> ::femtoclaw_ledger::Value {
                let (case, payload): (&str, Option<::femtoclaw_ledger::Value>) = match self {
                    $(recorded_variant!(@pattern $case $(, payload $payload)?) =>
                        ($name, recorded_variant!(@record $(payload $payload)?)),)*
                };
                ::femtoclaw_ledger::Value::Variant {
                    case: case.to_owned(),
                    payload: payload.map(Box::new),
                }
            }
            fn from_value(value: &::femtoclaw_ledger::Value) -> Option<Self> {
                let ::femtoclaw_ledger::Value::Variant { case, payload } = value else {
                    return None;
                };
                match case.as_str() {
                    $($name => recorded_variant!(@answer Self::$case, payload $(, $payload)?),)*
                    _ => None,
                }
            }
        }
    };
    (@pattern $case:ident) => { Self::$case };
    (@pattern $case:ident, $bind:ident $payload:ty) => { Self::$case($bind) };
    (@record) => { None };
    (@record $bind:ident $payload:ty) => { Some($crate::gate::Recorded::to_value($bind)) };
    (@answer $make:path, $payload:ident) => { $payload.is_none().then_some($make) };
    (@answer $make:path, $payload:ident, $ty:ty) => {
        $payload
            .as_deref()
            .and_then(<$ty as $crate::gate::Recorded>::from_value)
            .map($make)
    };
}

pub(crate) use {recorded_enum, recorded_flags, recorded_record, recorded_variant};

/// A resource handle is recorded as its table index. In replay the index answers as a fresh
/// own handle: the host never touches it (every call on it is answered from the ledger) and
/// [`Gate::resource`] lets its drop find no table entry.
impl<T: 'static> Recorded for Resource<T> {
    fn to_value(&self) -> Value {
        Value::U32(self.rep())
    }
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::U32(rep) => Some(Resource::new_own(*rep)),
            _ => None,
        }
    }
}

/// The per-invocation side of the gate: who may do what, the log of host calls made so far,
/// the journal that writes them ahead of an effect, and, in replay, the recorded calls that
/// answer them.
#[derive(Debug)]
pub struct Gate {
    authority: Arc<CallChecker>,
    calls: Vec<HostCall>,
    pub(crate) journal: Option<Journal>,
    pub(crate) replay: Option<Replay>,
}

/// What a scoped call sees of the gate: ask about a scope, with every answer kept for the record,
/// and write the invocation ahead of an effect.
pub struct Authority<'a> {
    checker: &'a CallChecker,
    decisions: Vec<Authorized>,
    ahead: Option<Ahead<'a>>,
    intent: Option<usize>,
    failed: Option<WriteAheadError>,
}

/// What writing ahead needs: the journal, the calls before this one, and this one's facts.
struct Ahead<'a> {
    journal: &'a mut Journal,
    done: &'a [HostCall],
    interface: &'static str,
    function: &'static str,
    params: &'a Value,
    fuel_remaining: u64,
}

/// The entries before an effect could not be made durable: the interface answers without
/// performing it, and the gate traps the call whatever the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call could not be recorded before its effect")]
pub struct NotDurable;

impl Authority<'_> {
    /// Called by a call that is about to change the world, once it is authorized and right
    /// before it acts (for an HTTP request, before each hop is sent): makes the invocation's
    /// entries durable up to this call's decisions and intent. `Err` means the call must not
    /// act; the gate then traps it. Without a journal (nothing records the invocation, or a
    /// replay, which performs nothing) there is nothing to write.
    pub fn before_effect(&mut self) -> Result<(), NotDurable> {
        if self.failed.is_some() {
            return Err(NotDurable);
        }
        let Some(ahead) = &mut self.ahead else {
            return Ok(());
        };
        let intent = *self.intent.get_or_insert(self.decisions.len());
        let pending = Call {
            seq: ahead.done.len(),
            interface: ahead.interface,
            function: ahead.function,
            params: ahead.params,
            fuel_remaining: ahead.fuel_remaining,
            decisions: &self.decisions,
            intent: Some(intent),
            result: None,
        };
        ahead.journal.write_ahead(ahead.done, pending).map_err(|e| {
            self.failed = Some(e);
            NotDurable
        })
    }

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
            journal: None,
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

    /// Defines the host resource type `interface#name`, backed by `T` entries of the store's
    /// resource table. Its drop deletes the entry when there is one: in replay, handles are
    /// answered from the ledger and have none.
    pub(crate) fn resource<T: Send + 'static>(
        registry: &mut Registry,
        interface: &'static str,
        name: &'static str,
    ) -> wasmtime::Result<()> {
        registry.linker.instance(interface)?.resource(
            name,
            ResourceType::host::<T>(),
            |mut store, rep| {
                // Absent in replay, where the index may even name an entry of another type
                // (the table holds fewer entries): only an entry of this type is deleted.
                let table = &mut store.data_mut().table;
                if table.get(&Resource::<T>::new_borrow(rep)).is_ok() {
                    table.delete(Resource::<T>::new_own(rep))?;
                }
                Ok(())
            },
        )
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
        registry
            .linker
            .instance(interface)?
            .func_wrap(function, move |mut store, params: P| {
                Self::pass(
                    &mut store,
                    interface,
                    function,
                    &params,
                    |state, authority| perform(state, authority, &params),
                )
            })
    }

    /// Passes one call through the gate: the body of every [`Gate::define_scoped`] function,
    /// and the way in for a host function whose WIT result is built from what the gate
    /// records (an in-memory stream over recorded bytes, say), so that replay builds it from
    /// the ledger the same way.
    pub(crate) fn pass<P: Recorded, R: Recorded>(
        store: &mut StoreContextMut<'_, State>,
        interface: &'static str,
        function: &'static str,
        params: &P,
        perform: impl FnOnce(&mut State, &mut Authority<'_>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let fuel_remaining = store.get_fuel()?;
        let state = store.data_mut();
        let recorded_params = params.to_value();
        let seq = state.gate.calls.len();
        let (result, recorded_result, decisions, intent) = match &state.gate.replay {
            // Replay: the next recorded call must be this one; its result answers.
            Some(replay) => {
                let expected =
                    replay.expect(seq, interface, function, &recorded_params, fuel_remaining)?;
                let result =
                    R::from_value(&expected.result).ok_or_else(|| Divergence::Unanswerable {
                        seq,
                        call: format!("{interface}#{function}"),
                        recorded: format!("{:?}", expected.result),
                    })?;
                (result, expected.result.clone(), Vec::new(), None)
            }
            None => {
                // A second handle on the checker, and the log and journal lent out for the
                // call, leave `state` free for `perform`.
                let checker = Arc::clone(&state.gate.authority);
                let done = std::mem::take(&mut state.gate.calls);
                let mut journal = state.gate.journal.take();
                let mut authority = Authority {
                    checker: &checker,
                    decisions: Vec::new(),
                    ahead: journal.as_mut().map(|journal| Ahead {
                        journal,
                        done: &done,
                        interface,
                        function,
                        params: &recorded_params,
                        fuel_remaining,
                    }),
                    intent: None,
                    failed: None,
                };
                let result = perform(state, &mut authority);
                let Authority {
                    decisions,
                    intent,
                    failed,
                    ..
                } = authority;
                state.gate.calls = done;
                state.gate.journal = journal;
                if let Some(failed) = failed {
                    return Err(failed.into());
                }
                let result = result?;
                let value = result.to_value();
                (result, value, decisions, intent)
            }
        };
        // A call that returns past the deadline (it blocked) ends the invocation.
        state.deadline.check()?;
        state.gate.calls.push(HostCall {
            interface,
            function,
            params: recorded_params,
            result: recorded_result,
            fuel_remaining,
            decisions,
            intent,
        });
        Ok(result)
    }
}
