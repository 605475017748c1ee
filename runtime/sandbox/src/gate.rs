//! The gate: the one path every host call takes.
//!
//! A host interface never writes its own authorization or recording code: it declares its
//! functions with [`Gate::define`] (calls that touch no scope, such as clocks) or
//! [`Gate::define_scoped`] (calls on a host, path, namespace, secret or config key). The gate
//! reads the fuel left at the call, asks the policy about the concrete scope, performs the call
//! or answers `denied` as a WIT error the guest sees, and records
//! `{interface, function, params, result, fuel remaining, decisions}` in the invocation's
//! host-call log, the log the ledger persists. A call that fails is recorded too, with its
//! [`CallFault`] in place of the result. A call that changes the world asks the gate to write
//! the invocation's entries ahead of it ([`Authority::before_effect`]). Host work is bounded
//! here: each call is charged [`FUEL_PER_RECORDED_BYTE`] for every byte it records, the bytes
//! one invocation records are capped (`max_recorded_bytes`), and every call ends with a look at
//! the invocation's wall-clock deadline.

use std::sync::Arc;

use femtoclaw_ledger::{CallFault, Value};
use femtoclaw_policy::{CallAction, CallChecker, Decision, Scope};
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{ComponentNamedList, Lift, Linker, Lower, Resource, ResourceType, Val};
use wasmtime::{StoreContextMut, Trap};

use crate::record::{Call, Journal, WriteAheadError};
use crate::replay::{Divergence, Replay};
use crate::scrub::Scrubber;
use crate::state::{LimitError, State};

/// Fuel charged per byte a host call records (its parameters and result, in the ledger's
/// canonical encoding), on top of the guest instructions that led to it: host work is
/// bounded by the same budget as guest work.
pub const FUEL_PER_RECORDED_BYTE: u64 = 1;

/// The most bytes of host-call parameters and results one invocation records unless the
/// operator sets another cap; past it, the invocation ends with a limit.
pub const MAX_RECORDED_BYTES: u64 = 64 << 20;

/// The linker being built. It is private: every function a guest can import is defined through
/// the gate ([`Gate::define`], [`Gate::define_scoped`], [`Gate::wrap`]) or is one of the
/// reviewed [`DETERMINISTIC`](crate::host::linking::DETERMINISTIC) functions, and each is noted
/// here with how it is answered. Nothing is shadowed: a function defined twice is an error.
pub(crate) struct Registry {
    linker: Linker<State>,
    linked: Vec<Linked>,
}

/// How the host answers one function a guest can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Through the gate: authorized, performed or replayed, recorded.
    Gated,
    /// By wasmtime-wasi, unrecorded: deterministic, and reviewed (the reason says why it needs
    /// no record).
    Deterministic(&'static str),
}

/// One function the host links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    /// WIT interface, with package and version.
    pub interface: &'static str,
    /// Function name within the interface.
    pub function: &'static str,
    /// How it is answered.
    pub answer: Answer,
}

impl Registry {
    pub(crate) fn new(engine: &wasmtime::Engine) -> Self {
        Self {
            linker: Linker::new(engine),
            linked: Vec::new(),
        }
    }

    /// The linker and what it links.
    pub(crate) fn finish(self) -> (Linker<State>, Vec<Linked>) {
        (self.linker, self.linked)
    }

    fn note(
        &mut self,
        interface: &'static str,
        function: &'static str,
        answer: Answer,
    ) -> wasmtime::Result<()> {
        if self
            .linked
            .iter()
            .any(|l| l.interface == interface && l.function == function)
        {
            wasmtime::bail!("`{interface}#{function}` is defined twice");
        }
        self.linked.push(Linked {
            interface,
            function,
            answer,
        });
        Ok(())
    }

    /// Links wasmtime-wasi's implementation of `interface` with `add`: only for an interface
    /// every function of which is in the reviewed table, or one of resource types only (the
    /// structural test checks that `add` links nothing else).
    pub(crate) fn deterministic(
        &mut self,
        interface: &'static str,
        add: impl FnOnce(&mut Linker<State>) -> wasmtime::Result<()>,
    ) -> wasmtime::Result<()> {
        let reviewed: Vec<_> = crate::host::linking::DETERMINISTIC
            .iter()
            .filter(|(i, _, _)| *i == interface)
            .collect();
        if reviewed.is_empty() && !crate::host::linking::TYPES_ONLY.contains(&interface) {
            wasmtime::bail!("`{interface}` has no reviewed deterministic function");
        }
        add(&mut self.linker)?;
        for (interface, function, reason) in reviewed {
            self.note(interface, function, Answer::Deterministic(reason))?;
        }
        Ok(())
    }

    /// Defines one reviewed deterministic function of an interface the gate otherwise answers.
    pub(crate) fn deterministic_func<P, R>(
        &mut self,
        interface: &'static str,
        function: &'static str,
        func: impl Fn(StoreContextMut<'_, State>, P) -> wasmtime::Result<R> + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: ComponentNamedList + Lift + 'static,
        R: ComponentNamedList + Lower + 'static,
    {
        let Some((_, _, reason)) = crate::host::linking::DETERMINISTIC
            .iter()
            .find(|(i, f, _)| *i == interface && *f == function)
        else {
            wasmtime::bail!("`{interface}#{function}` is not a reviewed deterministic function");
        };
        self.linker.instance(interface)?.func_wrap(function, func)?;
        self.note(interface, function, Answer::Deterministic(reason))
    }
}

/// One policy decision the gate took for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The call action (`config.read`, `kv.write`, …).
    pub action: CallAction,
    /// The concrete scope, canonical (`config:region`); with its destination for an action
    /// decided with one (`api-token@https://api.example.com:443`, see [`Authority::check_to`]).
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

/// Dynamic values of a [`Gate::define_dynamic`] function: recorded by their WIT types, and in
/// replay answered from the recorded value.
pub(crate) struct Dynamic {
    value: Value,
    vals: Option<Vec<Val>>,
}

impl Dynamic {
    fn params(ty: &ComponentFunc, params: &[Val]) -> Self {
        let value = Value::Tuple(
            params
                .iter()
                .zip(ty.params())
                .map(|(v, (_, t))| crate::values::val_to_value(v, &t))
                .collect(),
        );
        Self { value, vals: None }
    }

    fn results(ty: &ComponentFunc, vals: Vec<Val>) -> Self {
        let value = Value::Tuple(
            vals.iter()
                .zip(ty.results())
                .map(|(v, t)| crate::values::val_to_value(v, &t))
                .collect(),
        );
        Self {
            value,
            vals: Some(vals),
        }
    }

    /// Writes the answer into the call's results: the values performed, or in replay the
    /// recorded ones converted back by the function's result types.
    fn store(self, ty: &ComponentFunc, results: &mut [Val]) -> wasmtime::Result<()> {
        let vals = match self.vals {
            Some(vals) => vals,
            None => {
                let Value::Tuple(items) = &self.value else {
                    wasmtime::bail!("recorded answer {:?} is not a tuple", self.value);
                };
                items
                    .iter()
                    .zip(ty.results())
                    .map(|(v, t)| crate::values::value_to_val(v, &t))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        wasmtime::format_err!("recorded answer {:?} does not fit", self.value)
                    })?
            }
        };
        if vals.len() != results.len() {
            wasmtime::bail!(
                "answer has {} values; the function returns {}",
                vals.len(),
                results.len()
            );
        }
        for (slot, val) in results.iter_mut().zip(vals) {
            *slot = val;
        }
        Ok(())
    }
}

impl Recorded for Dynamic {
    fn to_value(&self) -> Value {
        self.value.clone()
    }
    fn from_value(value: &Value) -> Option<Self> {
        Some(Self {
            value: value.clone(),
            vals: None,
        })
    }
}

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
    /// Bytes of parameters and results recorded so far.
    recorded_bytes: u64,
    /// The cap on `recorded_bytes` (a replay answers from the recording, which kept any fault
    /// the cap caused, and never checks it).
    max_recorded_bytes: u64,
    pub(crate) journal: Option<Journal>,
    pub(crate) replay: Option<Replay>,
    /// The secrets the invocation used so far: scrubbed from what the gate records of each
    /// call after, and from the invocation's output.
    pub(crate) secrets: Scrubber,
}

/// What a scoped call sees of the gate: ask about a scope, with every answer kept for the record,
/// and write the invocation ahead of an effect.
pub struct Authority<'a> {
    checker: &'a CallChecker,
    secrets: &'a mut Scrubber,
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

    /// Asks whether this call may `action` on `scope`; the decision is recorded either way,
    /// its resource scrubbed of the secrets used so far (a redirect may name one).
    pub fn check(&mut self, action: CallAction, scope: &Scope) -> Result<(), Denied> {
        let decision = self.checker.check(action, scope);
        self.decided(action, &scope.canonical(), decision)
    }

    /// Like [`Authority::check`], for an action decided with the destination of its effect
    /// (`secret.use`, with the HTTP origin the secret is sent to). The recorded resource is
    /// `scope@destination` (`api-token@https://api.example.com:443`): an origin holds no `@`,
    /// so the text after the last one is the destination.
    pub fn check_to(
        &mut self,
        action: CallAction,
        scope: &Scope,
        destination: &Scope,
    ) -> Result<(), Denied> {
        let decision = self.checker.check_to(action, scope, destination);
        self.decided(action, &format!("{scope}@{destination}"), decision)
    }

    fn decided(
        &mut self,
        action: CallAction,
        resource: &str,
        decision: Arc<Decision>,
    ) -> Result<(), Denied> {
        let allowed = decision.allowed;
        let resource = self.secrets.text(resource);
        self.decisions.push(Authorized {
            action,
            resource: resource.clone(),
            decision,
        });
        if allowed {
            Ok(())
        } else {
            Err(Denied { action, resource })
        }
    }

    /// The secrets the invocation used so far. A call adds each secret it uses before the
    /// value leaves the host, and scrubs what it returns of them; the gate scrubs decisions,
    /// log messages and output.
    pub(crate) fn secrets(&mut self) -> &mut Scrubber {
        self.secrets
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
    /// A gate that authorizes scoped calls with `authority` and records at most
    /// `max_recorded_bytes` of their parameters and results.
    pub fn new(authority: Arc<CallChecker>, max_recorded_bytes: u64) -> Self {
        Self {
            authority,
            calls: Vec::new(),
            recorded_bytes: 0,
            max_recorded_bytes,
            journal: None,
            replay: None,
            secrets: Scrubber::default(),
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
    /// fault or a limit, never a policy denial: those are WIT errors the guest sees). A failed
    /// call is recorded like any other, with its [`CallFault`] in place of the result.
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
        Self::wrap(
            registry,
            interface,
            function,
            move |mut store, params: P| {
                Self::pass(
                    &mut store,
                    interface,
                    function,
                    &params,
                    |state, authority| perform(state, authority, &params),
                )
            },
        )
    }

    /// Defines `interface#function` with a body that passes the gate itself, through
    /// [`Gate::pass`]: for a host function whose WIT result is built from what the gate
    /// records (an in-memory stream over recorded bytes, say).
    pub(crate) fn wrap<P, R>(
        registry: &mut Registry,
        interface: &'static str,
        function: &'static str,
        body: impl Fn(StoreContextMut<'_, State>, P) -> wasmtime::Result<R> + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: ComponentNamedList + Lift + 'static,
        R: ComponentNamedList + Lower + 'static,
    {
        registry
            .linker
            .instance(interface)?
            .func_wrap(function, body)?;
        registry.note(interface, function, Answer::Gated)
    }

    /// Defines `interface#function` with dynamic values: every call passes the gate, its
    /// parameters and results recorded by their WIT types. For interfaces answered uniformly
    /// (sockets, which the host refuses call by call).
    pub(crate) fn define_dynamic(
        registry: &mut Registry,
        interface: &'static str,
        function: &'static str,
        perform: impl Fn(
            &mut State,
            &mut Authority<'_>,
            &ComponentFunc,
            &[Val],
        ) -> wasmtime::Result<Vec<Val>>
        + Send
        + Sync
        + 'static,
    ) -> wasmtime::Result<()> {
        registry.linker.instance(interface)?.func_new(
            function,
            move |mut store, ty, params, results| {
                let answer = Self::pass(
                    &mut store,
                    interface,
                    function,
                    &Dynamic::params(&ty, params),
                    |state, authority| {
                        perform(state, authority, &ty, params)
                            .map(|vals| Dynamic::results(&ty, vals))
                    },
                )?;
                // A handle the guest lent to the call (`borrow<network>`, say) is given back
                // before the call returns, as the component model requires of a host function.
                for param in params {
                    if let Val::Resource(handle) = param
                        && !handle.owned()
                    {
                        handle.resource_drop(&mut store)?;
                    }
                }
                answer.store(&ty, results)
            },
        )?;
        registry.note(interface, function, Answer::Gated)
    }

    /// Passes one call through the gate: the body of every [`Gate::define_scoped`] function,
    /// and the way in for a host function whose WIT result is built from what the gate
    /// records (an in-memory stream over recorded bytes, say), so that replay builds it from
    /// the ledger the same way.
    ///
    /// Every call is recorded, the ones that fail too (with their [`CallFault`]); a call that
    /// would take the invocation's recorded bytes past its cap is not performed, or its result
    /// not kept, and ends the invocation with [`CallFault::Limit`]. Then the recorded bytes are
    /// charged, [`FUEL_PER_RECORDED_BYTE`] each.
    pub(crate) fn pass<P: Recorded, R: Recorded>(
        store: &mut StoreContextMut<'_, State>,
        interface: &'static str,
        function: &'static str,
        params: &P,
        perform: impl FnOnce(&mut State, &mut Authority<'_>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let fuel_remaining = store.get_fuel()?;
        let span = tracing::info_span!(
            "femtoclaw.host_call",
            femtoclaw.host_call.interface = interface,
            femtoclaw.host_call.function = function,
            femtoclaw.host_call.fuel_left = i64::try_from(fuel_remaining).unwrap_or(i64::MAX),
            femtoclaw.host_call.decision = tracing::field::Empty,
        );
        let _in_call = span.enter();
        let state = store.data_mut();
        let recorded_params = params.to_value();
        let params_len = recorded_params.encoded_len();
        let seq = state.gate.calls.len();
        let (answer, recorded_result, decisions, intent) = match &state.gate.replay {
            // Replay: the next recorded call must be this one; its result (or fault) answers.
            Some(replay) => {
                let expected =
                    replay.expect(seq, interface, function, &recorded_params, fuel_remaining)?;
                let answer = match CallFault::from_value(&expected.result) {
                    Some(fault) => Err(fault),
                    None => Ok(R::from_value(&expected.result).ok_or_else(|| {
                        Divergence::Unanswerable {
                            seq,
                            call: format!("{interface}#{function}"),
                            recorded: format!("{:?}", expected.result),
                        }
                    })?),
                };
                (answer, expected.result.clone(), Vec::new(), None)
            }
            None => {
                // A second handle on the checker, and the log and journal lent out for the
                // call, leave `state` free for `perform`.
                let checker = Arc::clone(&state.gate.authority);
                let within = state.gate.within_cap(params_len);
                let done = std::mem::take(&mut state.gate.calls);
                let mut journal = state.gate.journal.take();
                let mut secrets = std::mem::take(&mut state.gate.secrets);
                let mut authority = Authority {
                    checker: &checker,
                    secrets: &mut secrets,
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
                let performed =
                    within.and_then(|()| perform(state, &mut authority).map_err(|e| fault(&e)));
                let Authority {
                    decisions,
                    intent,
                    failed,
                    ..
                } = authority;
                state.gate.calls = done;
                state.gate.journal = journal;
                state.gate.secrets = secrets;
                if let Some(failed) = failed {
                    return Err(failed.into());
                }
                let answer = performed.and_then(|result| {
                    let value = result.to_value();
                    state
                        .gate
                        .within_cap(params_len + value.encoded_len())
                        .map(|()| (result, value))
                });
                match answer {
                    Ok((result, value)) => (Ok(result), value, decisions, intent),
                    Err(fault) => (Err(fault.clone()), fault.to_value(), decisions, intent),
                }
            }
        };
        if !span.is_disabled() {
            span.record("femtoclaw.host_call.decision", decision_of(&decisions));
        }
        let recorded_len = params_len + recorded_result.encoded_len();
        state.gate.recorded_bytes = state.gate.recorded_bytes.saturating_add(recorded_len);
        state.gate.calls.push(HostCall {
            interface,
            function,
            params: recorded_params,
            result: recorded_result,
            fuel_remaining,
            decisions,
            intent,
        });
        // A call that returns past the deadline (it blocked) ends the invocation, recorded.
        let in_time = state.deadline.check();
        // Host work is paid for like guest work, from what was recorded: replay, answering
        // from the recording, charges the same.
        let charge = recorded_len.saturating_mul(FUEL_PER_RECORDED_BYTE);
        let left = store.get_fuel()?;
        store.set_fuel(left.saturating_sub(charge))?;
        in_time?;
        match answer {
            Err(fault) => Err(fault.into()),
            Ok(_) if charge > left => Err(Trap::OutOfFuel.into()),
            Ok(result) => Ok(result),
        }
    }

    /// Whether a call that would record `call_len` more bytes stays within the invocation's
    /// cap; past it, the call's [`CallFault::Limit`].
    fn within_cap(&self, call_len: u64) -> Result<(), CallFault> {
        let total = self.recorded_bytes.saturating_add(call_len);
        if total > self.max_recorded_bytes {
            return Err(CallFault::Limit(
                LimitError::RecordedBytes {
                    limit: self.max_recorded_bytes,
                    total,
                }
                .to_string(),
            ));
        }
        Ok(())
    }
}

/// A call's decisions in one word: `deny` if the policy denied any, `allow` if it allowed
/// every one, `none` for a call no decision scopes.
pub fn decision_of(decisions: &[Authorized]) -> &'static str {
    if decisions.is_empty() {
        "none"
    } else if decisions.iter().all(|d| d.decision.allowed) {
        "allow"
    } else {
        "deny"
    }
}

/// The fault a failed `perform` is recorded as: a limit stays a limit, anything else traps
/// with the full message.
fn fault(error: &wasmtime::Error) -> CallFault {
    match error.downcast_ref::<LimitError>() {
        Some(limit) => CallFault::Limit(limit.to_string()),
        None => CallFault::Trap(format!("{error:#}")),
    }
}
