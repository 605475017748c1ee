//! The deterministic wasmtime engine, its digest and its compile-cache key.
//!
//! The digest, recorded with every invocation, covers what decides execution: the wasmtime
//! version, every determinism setting, the limits and the target architecture. It leaves out
//! the host CPU's features: code compiled for a CPU with AVX2 and for one without computes the
//! same results and the same fuel, so a ledger recorded on one replays on the other. Compiled
//! code depends on those features, so the compile cache keys on wasmtime's full compatibility
//! hash instead ([`cache_key`]).

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::state::Limits;

/// The exact wasmtime version linked in; fuel accounting can change between versions.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// A SHA-256 of everything that decides how a component executes: the wasmtime version, every
/// determinism setting, the limits and the target architecture ([`settings`]).
pub type EngineDigest = [u8; 32];

/// The engine settings, as `key=value` lines. They are part of the engine digest, and shown by
/// `femtoclaw-host` so an operator can see them.
pub fn settings(limits: &Limits) -> Vec<(&'static str, String)> {
    vec![
        ("wasmtime", WASMTIME_VERSION.to_owned()),
        ("consume_fuel", "true".to_owned()),
        ("cranelift_nan_canonicalization", "true".to_owned()),
        ("relaxed_simd_deterministic", "true".to_owned()),
        ("wasm_threads", "false".to_owned()),
        ("shared_memory", "false".to_owned()),
        ("concurrency_support", "false".to_owned()),
        ("wasm_component_model_async", "false".to_owned()),
        ("epoch_interruption", "true".to_owned()),
        ("max_wasm_stack", limits.max_wasm_stack.to_string()),
        ("memory_bytes", limits.memory_bytes.to_string()),
        ("table_elements", limits.table_elements.to_string()),
        ("instances", limits.instances.to_string()),
        ("tables", limits.tables.to_string()),
        ("memories", limits.memories.to_string()),
        ("output_bytes", limits.output_bytes.to_string()),
        ("target_arch", std::env::consts::ARCH.to_owned()),
    ]
}

/// Builds the engine: fuel, NaN canonicalization, deterministic relaxed SIMD, no threads or
/// shared memory, no component-model concurrency, a fixed stack, the pooling allocator, and
/// epoch interruption for the wall-clock watchdog (it stops guest code past its deadline and
/// consumes no fuel: see [`crate::watchdog`]); code for every feature of the host CPU.
pub fn build(limits: &Limits) -> wasmtime::Result<(Engine, EngineDigest)> {
    build_with(limits, Pool::default(), &[])
}

/// How many invocations may run at once on one engine: the pooling allocator reserves slots
/// for that many instances, each up to the [`Limits`]. It decides capacity, never behaviour,
/// so it is not part of the engine digest. One invocation more than the pool holds fails to
/// instantiate, naming the pool; the server keeps to its `server.concurrency`, which sizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Invocations running at once.
    pub invocations: u32,
}

impl Default for Pool {
    fn default() -> Self {
        Self { invocations: 16 }
    }
}

impl Pool {
    /// The allocator's slots: every running invocation may use its limits in full.
    fn config(self, limits: &Limits) -> PoolingAllocationConfig {
        let per = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let all = |n: usize| self.invocations.saturating_mul(per(n));
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(self.invocations)
            .total_core_instances(all(limits.instances))
            .total_memories(all(limits.memories))
            .total_tables(all(limits.tables))
            .max_memories_per_component(per(limits.memories))
            .max_tables_per_component(per(limits.tables))
            .max_core_instances_per_component(per(limits.instances))
            .max_memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements);
        pool
    }
}

/// [`build`], with the CPU features named in `disabled_cpu_features` (Cranelift ISA flags such
/// as `has_avx2`) left unused by the compiled code, as on a CPU without them: the engine
/// digest is the same, the [`cache_key`] differs.
pub fn build_with(
    limits: &Limits,
    pool: Pool,
    disabled_cpu_features: &[String],
) -> wasmtime::Result<(Engine, EngineDigest)> {
    let pool = pool.config(limits);

    // Wasm threads and component-model async are compiled out (wasmtime features off).
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .shared_memory(false)
        .concurrency_support(false)
        .epoch_interruption(true)
        .max_wasm_stack(limits.max_wasm_stack)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    for feature in disabled_cpu_features {
        if !feature.starts_with("has_") {
            wasmtime::bail!("`{feature}` is not a CPU feature flag (`has_…`)");
        }
        // SAFETY: only CPU feature flags, and only turned off: the compiled code then uses a
        // subset of the host's instructions. An unknown flag fails `Engine::new`.
        unsafe {
            config.cranelift_flag_set(feature, "false");
        }
    }
    let engine = Engine::new(&config)?;

    let mut sha = Sha256::new();
    for (key, value) in settings(limits) {
        sha.update(format!("{key}={value}\n"));
    }
    Ok((engine, sha.finalize().into()))
}

/// Whether `flag` is a CPU feature flag (`has_…`) of the compiler for this machine: an engine
/// with it turned off builds.
pub fn is_cpu_feature(flag: &str) -> bool {
    if !flag.starts_with("has_") {
        return false;
    }
    let mut config = Config::new();
    // SAFETY: a flag only turned off, on an engine only built to see that it builds.
    unsafe {
        config.cranelift_flag_set(flag, "false");
    }
    Engine::new(&config).is_ok()
}

/// The key of `engine`'s compiled code in the compile cache: the engine digest's settings and
/// wasmtime's compatibility hash of the configuration, which covers the CPU features the code
/// may use.
pub fn cache_key(engine: &Engine, digest: &EngineDigest) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update(digest);
    engine
        .precompile_compatibility_hash()
        .hash(&mut ShaHasher(&mut sha));
    sha.finalize().into()
}

/// Feeds `Hash` output into a SHA-256 (std's hashers are not stable across releases).
struct ShaHasher<'a>(&'a mut Sha256);

impl Hasher for ShaHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}
