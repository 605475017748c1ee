//! B4 — durable, signed invocations per second through the HTTP API, with concurrent loopback
//! clients, against the same server whose ledger lives in memory (a data directory on tmpfs,
//! where fsync costs nothing), measured in the same run; and the p50/p99 latency of one HTTP
//! invoke against one in-process `Host::invoke` of the same capability.
//!
//! Goals (ARCHITECTURE §7 and the serve issue): throughput ≥ 0.8× the in-memory ledger's. The
//! summary printed at the end comes from an interleaved loop (disk and memory alternate, so both
//! see the same machine weather).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark may stop on a broken set-up

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use femtoclaw_host::{Host, authority, serve, tokens};
use serde_json::json;

/// Concurrent loopback clients.
const CLIENTS: usize = 4;

/// A server on a loopback port, running on its own runtime until the process ends.
struct Served {
    url: String,
    token: String,
}

fn open(data_dir: &Path) -> Host {
    let source = authority::Source::locate(None, data_dir);
    Host::open(data_dir, source, true, femtoclaw_config::Config::default()).expect("host")
}

fn start(data_dir: &Path) -> Served {
    let host = open(data_dir);
    let (_, token) = tokens::Store::new(data_dir)
        .create(
            host.records().expect("ledger"),
            "bench",
            "user:local",
            &[],
            None,
        )
        .expect("token");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listeners = runtime
        .block_on(serve::Listeners::bind(
            &host,
            "127.0.0.1:0".parse().unwrap(),
        ))
        .expect("bind");
    let url = format!("http://{}", listeners.api.local_addr().unwrap());
    std::thread::spawn(move || runtime.block_on(serve::serve(host, listeners)));
    Served { url, token }
}

fn greet_body(i: usize) -> String {
    json!({ "capability": "hello", "function": "greet", "args": { "name": format!("bench-{i}") } })
        .to_string()
}

fn invoke(client: &reqwest::blocking::Client, served: &Served, i: usize) {
    let response = client
        .post(format!("{}/v1/invoke", served.url))
        .bearer_auth(&served.token)
        .body(greet_body(i))
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 200, "{:?}", response.text());
    response.bytes().expect("body");
}

/// `n` invocations spread over [`CLIENTS`] threads, each with its own keep-alive client.
fn burst(served: &Served, n: usize) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in (c..n).step_by(CLIENTS) {
                    invoke(&client, served, i);
                }
            });
        }
    });
    started.elapsed()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let disk_dir = tempfile::tempdir_in(std::env::temp_dir()).expect("disk dir");
    let memory_dir = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir (/dev/shm)");
    let disk = start(disk_dir.path());
    let memory = start(memory_dir.path());
    // Warm both: the component is prepared once per server.
    burst(&disk, CLIENTS);
    burst(&memory, CLIENTS);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .configure_from_args();
    {
        let mut g = c.benchmark_group("b4_http_invoke");
        g.bench_function("durable_ledger", |b| {
            b.iter_custom(|iters| burst(&disk, iters as usize))
        });
        g.bench_function("in_memory_ledger", |b| {
            b.iter_custom(|iters| burst(&memory, iters as usize))
        });
        g.finish();
    }

    // Throughput, interleaved.
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 96;
    let (mut disk_time, mut memory_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        disk_time += burst(&disk, PER_ROUND);
        memory_time += burst(&memory, PER_ROUND);
    }
    let per_second = |t: Duration| (ROUNDS * PER_ROUND) as f64 / t.as_secs_f64();
    let (disk_rate, memory_rate) = (per_second(disk_time), per_second(memory_time));

    // Latency of one invocation: over HTTP (durable) against in-process (durable, same disk).
    let inproc_dir = tempfile::tempdir_in(std::env::temp_dir()).expect("in-process dir");
    let host = open(inproc_dir.path());
    let resolved = host.resolve("hello").expect("hello");
    let principal = authority::principal("user:local", &[]).unwrap();
    let client = reqwest::blocking::Client::new();
    let (mut http, mut inproc) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let started = Instant::now();
        invoke(&client, &disk, i);
        http.push(started.elapsed());
        let args = json!({ "name": format!("bench-{i}") });
        let started = Instant::now();
        let outcome = host
            .invoke(&principal, &resolved, "greet", &args, Default::default())
            .expect("invoke")
            .outcome;
        outcome.result.expect("result");
        inproc.push(started.elapsed());
    }
    let (h50, h99) = (percentile(&mut http, 0.5), percentile(&mut http, 0.99));
    let (i50, i99) = (percentile(&mut inproc, 0.5), percentile(&mut inproc, 0.99));

    println!("\nB4 summary ({CLIENTS} concurrent loopback clients, hello.greet):");
    println!(
        "  throughput: durable ledger {disk_rate:.0}/s, in-memory ledger {memory_rate:.0}/s, ratio {:.2}× (goal ≥ 0.8×)",
        disk_rate / memory_rate
    );
    println!(
        "  one invoke: HTTP p50 {h50:?} p99 {h99:?}; in-process p50 {i50:?} p99 {i99:?}; p50 ratio {:.2}×",
        h50.as_secs_f64() / i50.as_secs_f64()
    );
}
