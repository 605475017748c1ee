//! Benchmarks live in the bench targets of this package (see `Cargo.toml`); this library holds
//! what their raw baselines share.

use femtoclaw_ledger::{Entry, Value};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The store data of a raw wasmtime baseline: a default (empty) WASI context, nothing else.
pub struct RawWasi {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl Default for RawWasi {
    fn default() -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for RawWasi {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A typical host-call entry (a key-value read of 64 bytes), for the ledger benchmarks.
pub fn sample_entry(invocation: u64, seq: u32) -> Entry {
    Entry::HostCall {
        invocation,
        seq,
        interface: "femtoclaw:host/kv@0.1.0".into(),
        function: "get".into(),
        params: Value::Tuple(vec![Value::String(format!(
            "namespace/key-{invocation}-{seq}"
        ))]),
        result: Value::Result(Ok(Some(Box::new(Value::Bytes(vec![7; 64]))))),
        fuel_remaining: 1_000_000 - u64::from(seq),
    }
}
