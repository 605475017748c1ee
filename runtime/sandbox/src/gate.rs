//! The gate: the one path every host call takes.
//!
//! A host interface never writes its own recording (or, later, authorization) code: it declares
//! its functions with [`Gate::define`], giving the interface name, the function name and what
//! performing the call means. The gate reads the fuel left at the call, performs it, and records
//! `{interface, function, params, result, fuel remaining}` in the invocation's host-call log, the
//! log the ledger persists.

use femtoclaw_ledger::Value;
use wasmtime::component::{ComponentNamedList, Lift, Linker, Lower};

use crate::state::State;

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

/// The per-invocation side of the gate: the log of host calls made so far.
#[derive(Debug, Default)]
pub struct Gate {
    calls: Vec<HostCall>,
}

impl Gate {
    /// The host calls recorded so far, in call order.
    pub fn calls(&self) -> &[HostCall] {
        &self.calls
    }

    /// Takes the recorded calls, leaving the log empty.
    pub fn take_calls(&mut self) -> Vec<HostCall> {
        std::mem::take(&mut self.calls)
    }

    /// Defines `interface#function` in `linker` so that every call passes the gate.
    ///
    /// `perform` runs the call on the store's state; it may fail, which traps the guest (a host
    /// fault or a limit, never a policy denial: those are WIT errors the guest sees).
    pub(crate) fn define<P, R>(
        linker: &mut Linker<State>,
        interface: &'static str,
        function: &'static str,
        perform: impl Fn(&mut State, &P) -> wasmtime::Result<R> + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: ComponentNamedList + Lift + Recorded + 'static,
        R: ComponentNamedList + Lower + Recorded + 'static,
    {
        linker
            .instance(interface)?
            .func_wrap(function, move |mut store, params: P| {
                let fuel_remaining = store.get_fuel()?;
                let state = store.data_mut();
                let result = perform(state, &params)?;
                state.gate.calls.push(HostCall {
                    interface,
                    function,
                    params: params.to_value(),
                    result: result.to_value(),
                    fuel_remaining,
                });
                Ok(result)
            })
    }
}
