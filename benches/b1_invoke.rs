//! B1: warm invoke of `hello.greet` against a raw wasmtime baseline measured in the same run
//! (`Store` + `InstancePre` + typed call of the same component on an engine with the same
//! configuration), twice:
//!
//! - through the sandbox alone (JSON args → WIT → call → JSON, fresh store, fuel, limits,
//!   captured output, the gate);
//! - through the host's whole in-process path, [`femtoclaw_host::Host::invoke`]: authorize under
//!   the policy, check the link grants, run, record, and append to a ledger held in memory (a
//!   data directory on tmpfs), signed checkpoint and receipt included.
//!
//! Goal: p50 ratio ≤ 1.25 for each.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use femtoclaw_benches::RawWasi;
use femtoclaw_sandbox::{Context, Sandbox, SandboxConfig, state::Limits};
use serde_json::json;
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

const FUEL: u64 = 10_000_000;

struct Setup {
    /// The whole path: a host on a data directory in memory, `hello` resolved once.
    host: femtoclaw_host::Host,
    resolved: femtoclaw_host::Resolved,
    _memory: tempfile::TempDir,
    sandbox: Sandbox,
    context: Context,
    link: femtoclaw_policy::LinkGrant,
    prepared: std::sync::Arc<femtoclaw_sandbox::Prepared>,
    engine: wasmtime::Engine,
    raw_pre: InstancePre<RawWasi>,
}

fn setup() -> Setup {
    let hello = femtoclaw_capabilities::find("hello").expect("hello is embedded");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let prepared = sandbox.prepare(hello.component).expect("prepare");

    let (engine, _) = femtoclaw_sandbox::engine::build(&Limits::default()).expect("engine");
    let component = wasmtime::component::Component::new(&engine, hello.component).expect("compile");
    let mut linker: Linker<RawWasi> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    linker
        .define_unknown_imports_as_traps(&component)
        .expect("stubs");
    let raw_pre = linker.instantiate_pre(&component).expect("pre");
    let memory = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir (/dev/shm)");
    let source = femtoclaw_host::authority::Source::locate(None, memory.path());
    let host = femtoclaw_host::Host::open(
        memory.path(),
        source,
        true,
        femtoclaw_config::Config::default(),
    )
    .expect("host");
    let resolved = host.resolve("hello").expect("resolve");
    Setup {
        host,
        resolved,
        _memory: memory,
        sandbox,
        context: Context::deny_all().expect("context"),
        link: femtoclaw_tests::grant_all(&prepared),
        prepared,
        engine,
        raw_pre,
    }
}

fn sandbox_invoke(s: &Setup) -> String {
    let outcome = s
        .sandbox
        .invoke(
            &s.prepared,
            "greet",
            &json!({"name": "world"}),
            FUEL,
            &s.link,
            s.context.clone(),
        )
        .expect("invoke");
    match outcome.result {
        Ok(serde_json::Value::String(greeting)) => greeting,
        other => panic!("unexpected {other:?}"),
    }
}

fn host_invoke(s: &Setup) -> String {
    let invoked = s
        .host
        .invoke(
            &femtoclaw_policy::Principal::local(),
            &s.resolved,
            "greet",
            &json!({"name": "world"}),
            femtoclaw_host::Bounds {
                fuel: Some(FUEL),
                ..Default::default()
            },
        )
        .expect("invoke");
    match invoked.outcome.result {
        Ok(serde_json::Value::String(greeting)) => greeting,
        other => panic!("unexpected {other:?}"),
    }
}

fn raw_invoke(s: &Setup) -> String {
    let mut store = Store::new(&s.engine, RawWasi::default());
    // The same engine as the host's: its code checks the epoch, which never stops this store.
    store.set_epoch_deadline(u64::MAX);
    store.set_fuel(FUEL).expect("fuel");
    let instance = s.raw_pre.instantiate(&mut store).expect("instantiate");
    let greet = instance
        .get_typed_func::<(&str,), (String,)>(&mut store, "greet")
        .expect("greet");
    greet.call(&mut store, ("world",)).expect("call").0
}

fn bench(c: &mut Criterion) {
    let s = setup();
    assert_eq!(sandbox_invoke(&s), raw_invoke(&s));
    assert_eq!(host_invoke(&s), raw_invoke(&s));
    let mut group = c.benchmark_group("b1_warm_invoke_hello_greet");
    group.bench_function("raw_wasmtime", |b| b.iter(|| black_box(raw_invoke(&s))));
    group.bench_function("femtoclaw_sandbox", |b| {
        b.iter(|| black_box(sandbox_invoke(&s)))
    });
    group.bench_function("femtoclaw_host_whole_path", |b| {
        b.iter(|| black_box(host_invoke(&s)))
    });
    group.finish();
    report(&s);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

/// One way to invoke `hello.greet`.
type Run = fn(&Setup) -> String;

/// `SAMPLES` timings of each run. The runs alternate in blocks of `block` samples, so that
/// machine noise hits them alike; the host's whole path leaves work on its ledger's writer
/// thread (the fsync and signature of its batch) that would land on a sample interleaved right
/// after it, so it is measured in blocks.
fn sample(s: &Setup, runs: &[Run], block: usize) -> Vec<Vec<Duration>> {
    const SAMPLES: usize = 3000;
    let mut samples = vec![Vec::with_capacity(SAMPLES); runs.len()];
    for _ in 0..SAMPLES / block {
        for (run, times) in runs.iter().zip(&mut samples) {
            for _ in 0..block {
                let t = Instant::now();
                black_box(run(s));
                times.push(t.elapsed());
            }
        }
    }
    for times in &mut samples {
        times.sort();
    }
    samples
}

/// p50/p99 of each run and their ratios to the raw baseline's, printed.
fn report(s: &Setup) {
    println!("B1 warm invoke hello.greet (3000 samples each)");
    let line = |name: &str, times: &[Duration], raw: &[Duration]| {
        let (p50, p99) = (percentile(times, 0.5), percentile(times, 0.99));
        let (r50, r99) = (percentile(raw, 0.5), percentile(raw, 0.99));
        println!(
            "  {name} p50 {p50:>10.2?}  p99 {p99:>10.2?}  vs raw p50 {r50:>10.2?}: ratio p50 {:.3}x  p99 {:.3}x  (goal: p50 <= 1.25x)",
            p50.as_secs_f64() / r50.as_secs_f64(),
            p99.as_secs_f64() / r99.as_secs_f64()
        );
    };
    let sandbox = sample(s, &[raw_invoke, sandbox_invoke], 1);
    line("femtoclaw sandbox (interleaved)", &sandbox[1], &sandbox[0]);
    let host = sample(s, &[raw_invoke, host_invoke], 100);
    line("host whole path (blocks of 100)", &host[1], &host[0]);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
