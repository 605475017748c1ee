//! Benchmarks live in the bench targets of this package (see `Cargo.toml`); this library holds
//! what their raw baselines share.

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
