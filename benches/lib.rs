//! Benchmarks live in the bench targets of this package (see `Cargo.toml`); this library holds
//! what their raw baselines share.

use femtoclaw_ledger::{Entry, Value};
use wasmtime::Config;
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

/// The engine configuration of a raw baseline that runs the host's compiled code: every setting
/// that decides the machine code as `femtoclaw_sandbox::engine::build` has it (fuel as asked,
/// NaN canonicalization, deterministic relaxed SIMD, no shared memory, no component-model
/// concurrency, the same stack), with wasmtime's default (on-demand) instance allocator. A
/// setting that drifts from the host's makes wasmtime refuse the host's `.cwasm`, by name.
pub fn raw_config(consume_fuel: bool, epoch_interruption: bool) -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(consume_fuel)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .shared_memory(false)
        .concurrency_support(false)
        .epoch_interruption(epoch_interruption)
        .max_wasm_stack(512 << 10);
    config
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
