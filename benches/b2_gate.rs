//! B2: one host call through the gate (authorize against the policy, perform, record in
//! memory) against the same import linked raw, measured in the same run. The guest calls
//! `wasi:config/store#get` N times; the per-call cost is the difference between N calls and
//! none, so fixed per-invocation costs cancel out. Goal: ≤ 5×.
//!
//! Also measures replay of a recorded invocation against the original run (goal ≤ 1.2×).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use femtoclaw_benches::RawWasi;
use femtoclaw_policy::{CapabilityRef, PolicySet, Principal, Requests};
use femtoclaw_sandbox::replay::Recorded;
use femtoclaw_sandbox::{Context, HostContext, Prepared, Sandbox, SandboxConfig, state::Limits};
use serde_json::json;
use wasmtime::Store;
use wasmtime::component::{ComponentType, InstancePre, Lift, Linker, Lower};

const CALLS: usize = 256;
const FUEL: u64 = 1_000_000_000;
const SAMPLES: usize = 400;

#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum ConfigError {
    #[component(name = "upstream")]
    Upstream(String),
    #[component(name = "io")]
    Io(String),
}

struct Setup {
    sandbox: Sandbox,
    prepared: Arc<Prepared>,
    context: Context,
    link: femtoclaw_policy::LinkGrant,
    engine: wasmtime::Engine,
    raw: InstancePre<RawWasi>,
}

fn setup() -> Setup {
    let guest = femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE;
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let prepared = sandbox.prepare(guest).unwrap();
    let policy = PolicySet::from_str(
        "bench.cedar",
        "permit (principal, action == FemtoClaw::Action::\"config.read\", resource);",
    )
    .unwrap();
    let requests: Requests = toml::from_str("config = [\"region\"]").unwrap();
    let cap = CapabilityRef::new("misbehave", "1.0.0", "", "bench");
    let context = Context {
        host: HostContext {
            config: [("region".to_owned(), "eu".to_owned())]
                .into_iter()
                .collect(),
            ..HostContext::default()
        },
        ..Context::new(Arc::new(policy.call_checker(
            &Principal::local(),
            &cap,
            &requests,
        )))
    };

    let (engine, _) = femtoclaw_sandbox::engine::build(&Limits::default()).unwrap();
    let component = wasmtime::component::Component::new(&engine, guest).unwrap();
    let mut linker: Linker<RawWasi> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    linker
        .instance("wasi:config/store@0.2.0-draft")
        .unwrap()
        .func_wrap("get", |_, (_key,): (String,)| {
            Ok((Ok::<_, ConfigError>(Some("eu".to_owned())),))
        })
        .unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let raw = linker.instantiate_pre(&component).unwrap();
    Setup {
        sandbox,
        link: femtoclaw_tests::grant_all(&prepared),
        prepared,
        context,
        engine,
        raw,
    }
}

fn keys(n: usize) -> Vec<String> {
    vec!["region".to_owned(); n]
}

fn gated(s: &Setup, n: usize) -> femtoclaw_sandbox::Outcome {
    let outcome = s
        .sandbox
        .invoke(
            &s.prepared,
            "read-config",
            &json!({ "keys": keys(n) }),
            FUEL,
            &s.link,
            s.context.clone(),
        )
        .unwrap();
    assert!(outcome.result.is_ok());
    outcome
}

fn raw(s: &Setup, n: usize) -> Vec<String> {
    let mut store = Store::new(&s.engine, RawWasi::default());
    // The same engine as the host's: its code checks the epoch, which never stops this store.
    store.set_epoch_deadline(u64::MAX);
    store.set_fuel(FUEL).unwrap();
    let instance = s.raw.instantiate(&mut store).unwrap();
    let f = instance
        .get_typed_func::<(Vec<String>,), (Vec<String>,)>(&mut store, "read-config")
        .unwrap();
    f.call(&mut store, (keys(n),)).unwrap().0
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// p50 of `f`, sampled interleaved with the others by the caller.
fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let s = setup();
    assert_eq!(gated(&s, 3).result.unwrap(), json!(raw(&s, 3)));

    // B2: interleave all four so noise hits each alike.
    let (mut g0, mut gn, mut r0, mut rn) = (vec![], vec![], vec![], vec![]);
    for _ in 0..SAMPLES {
        g0.push(time(|| drop(black_box(gated(&s, 0)))));
        gn.push(time(|| drop(black_box(gated(&s, CALLS)))));
        r0.push(time(|| drop(black_box(raw(&s, 0)))));
        rn.push(time(|| drop(black_box(raw(&s, CALLS)))));
    }
    let per_call =
        |n: Duration, zero: Duration| n.saturating_sub(zero).as_secs_f64() / CALLS as f64;
    let gate = per_call(p50(gn), p50(g0));
    let raw_call = per_call(p50(rn), p50(r0));
    println!(
        "B2 host call wasi:config/store#get ({CALLS} calls per invocation, {SAMPLES} interleaved samples, p50)"
    );
    println!(
        "  raw import                 {:>8.0} ns/call",
        raw_call * 1e9
    );
    println!("  gate (authorize + record)  {:>8.0} ns/call", gate * 1e9);
    println!(
        "  ratio                      {:>8.2}x   (goal: <= 5x)",
        gate / raw_call
    );

    // Replay of a recorded invocation against running it, same run.
    let original = gated(&s, CALLS);
    let recorded = Recorded::of(&original);
    let replay = || {
        let (_, divergence) = s
            .sandbox
            .replay(&s.prepared, "read-config", &original.args, FUEL, &recorded)
            .unwrap();
        assert!(divergence.is_none(), "{divergence:?}");
    };
    replay();
    let (mut live, mut replayed) = (vec![], vec![]);
    for _ in 0..SAMPLES {
        live.push(time(|| drop(black_box(gated(&s, CALLS)))));
        replayed.push(time(replay));
    }
    let (live, replayed) = (p50(live), p50(replayed));
    println!("Replay of a {CALLS}-host-call invocation ({SAMPLES} interleaved samples, p50)");
    println!("  original  {live:>10.2?}");
    println!("  replay    {replayed:>10.2?}");
    println!(
        "  ratio     {:>10.2}x   (goal: <= 1.2x)",
        replayed.as_secs_f64() / live.as_secs_f64()
    );
}
