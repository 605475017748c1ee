//! The WASI 0.2 interfaces whose answers come from the outside world: clocks and randomness.
//!
//! Every function passes the gate and is recorded: the same invocation replayed gets the same
//! answers. Timers (`subscribe-instant`, `subscribe-duration`) would make execution depend on
//! wall-clock time, so they trap with a clear message (the trap is recorded like any answer).

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::p2::bindings::sync::clocks::wall_clock::Datetime;

use crate::gate::{Gate, Registry, recorded_record};

const WALL_CLOCK: &str = "wasi:clocks/wall-clock@0.2.12";
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
const RANDOM: &str = "wasi:random/random@0.2.12";
const INSECURE: &str = "wasi:random/insecure@0.2.12";
const INSECURE_SEED: &str = "wasi:random/insecure-seed@0.2.12";

/// Largest random buffer one call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

recorded_record!(Datetime {
    seconds: "seconds",
    nanoseconds: "nanoseconds",
});

fn random_bytes(len: u64) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_RANDOM_BYTES {
        wasmtime::bail!("random request of {len} bytes exceeds the limit of {MAX_RANDOM_BYTES}");
    }
    let mut buf = vec![0; usize::try_from(len)?];
    getrandom::fill(&mut buf).map_err(|e| wasmtime::format_err!("host randomness failed: {e}"))?;
    Ok(buf)
}

fn random_u64() -> wasmtime::Result<u64> {
    let bytes = random_bytes(8)?;
    let mut word = [0; 8];
    word.copy_from_slice(&bytes);
    Ok(u64::from_le_bytes(word))
}

fn nanos_u64(nanos: u128) -> u64 {
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

pub(crate) fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::define(registry, WALL_CLOCK, "now", |_, (): &()| {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok((Datetime {
            seconds: since.as_secs(),
            nanoseconds: since.subsec_nanos(),
        },))
    })?;
    Gate::define(registry, WALL_CLOCK, "resolution", |_, (): &()| {
        Ok((Datetime {
            seconds: 0,
            nanoseconds: 1,
        },))
    })?;
    Gate::define(registry, MONOTONIC_CLOCK, "now", |_, (): &()| {
        Ok((nanos_u64(EPOCH.elapsed().as_nanos()),))
    })?;
    Gate::define(registry, MONOTONIC_CLOCK, "resolution", |_, (): &()| {
        Ok((1u64,))
    })?;
    for timer in ["subscribe-instant", "subscribe-duration"] {
        Gate::define_dynamic(registry, MONOTONIC_CLOCK, timer, move |_, _, _, _| {
            wasmtime::bail!(
                "`{MONOTONIC_CLOCK}#{timer}` is not available: timers would make execution depend on wall-clock time"
            )
        })?;
    }
    Gate::define(
        registry,
        RANDOM,
        "get-random-bytes",
        |_, (len,): &(u64,)| Ok((random_bytes(*len)?,)),
    )?;
    Gate::define(registry, RANDOM, "get-random-u64", |_, (): &()| {
        Ok((random_u64()?,))
    })?;
    Gate::define(
        registry,
        INSECURE,
        "get-insecure-random-bytes",
        |_, (len,): &(u64,)| Ok((random_bytes(*len)?,)),
    )?;
    Gate::define(
        registry,
        INSECURE,
        "get-insecure-random-u64",
        |_, (): &()| Ok((random_u64()?,)),
    )?;
    Gate::define(registry, INSECURE_SEED, "insecure-seed", |_, (): &()| {
        Ok(((random_u64()?, random_u64()?),))
    })?;
    Ok(())
}
