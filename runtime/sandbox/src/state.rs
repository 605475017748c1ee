//! What one invocation's `Store` holds: virtualized WASI, resource limits, the gate's log and the
//! captured output.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capture::Capture;
use crate::gate::Gate;
use crate::host::HostState;
use crate::watchdog::Deadline;

/// Resource limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest size of any one linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest number of elements of any one table.
    pub table_elements: usize,
    /// Most core instances a component may create.
    pub instances: usize,
    /// Most tables.
    pub tables: usize,
    /// Most memories.
    pub memories: usize,
    /// Largest guest stack, in bytes (an engine setting: recorded in the engine digest).
    pub max_wasm_stack: usize,
    /// Bytes of stdout and of stderr kept per invocation.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
            tables: 32,
            memories: 8,
            max_wasm_stack: 512 << 10,
            output_bytes: 1 << 20,
        }
    }
}

/// Which limit a guest ran into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A memory would have grown past the limit.
    #[error("memory limit of {limit} bytes exceeded (growing to {desired} bytes)")]
    Memory {
        /// Requested size.
        desired: usize,
        /// The limit.
        limit: usize,
    },
    /// A table would have grown past the limit.
    #[error("table limit of {limit} elements exceeded (growing to {desired} elements)")]
    Table {
        /// Requested size.
        desired: usize,
        /// The limit.
        limit: usize,
    },
    /// A host call would have recorded more than the invocation may.
    #[error(
        "recorded-bytes limit of {limit} bytes exceeded: the host calls would record {total} bytes"
    )]
    RecordedBytes {
        /// The invocation's host-call bytes with this call's.
        total: u64,
        /// The cap (`max_recorded_bytes`).
        limit: u64,
    },
}

pub(crate) struct Limiter(pub(crate) Limits);

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.0.memory_bytes {
            return Err(LimitError::Memory {
                desired,
                limit: self.0.memory_bytes,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.0.table_elements {
            return Err(LimitError::Table {
                desired,
                limit: self.0.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.0.instances
    }

    fn tables(&self) -> usize {
        self.0.tables
    }

    fn memories(&self) -> usize {
        self.0.memories
    }
}

/// The data of one invocation's `Store`.
pub struct State {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) gate: Gate,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    pub(crate) host: HostState,
    pub(crate) deadline: Deadline,
    pub(crate) cancel: crate::watchdog::Cancel,
}

impl State {
    /// Fresh state: no environment, arguments or network; only the context's preopens; output
    /// captured.
    pub(crate) fn new(limits: Limits, context: crate::Context) -> Self {
        let stdout = Capture::new(limits.output_bytes);
        let stderr = Capture::new(limits.output_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_blocking_current_thread(true);
        let host = HostState::new(context.host, &mut wasi);
        let wasi = wasi.build();
        let mut gate = Gate::new(context.authority, context.max_recorded_bytes);
        gate.journal = context.journal;
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter(limits),
            gate,
            stdout,
            stderr,
            host,
            deadline: Deadline::from_now(context.deadline),
            cancel: context.cancel,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
