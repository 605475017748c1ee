//! B3: cold start of an installed capability from the compile cache, as whole processes, against
//! a raw wasmtime process measured in the same run. Goal: p50 ratio ≤ 1.2.
//!
//! - ours: `femtoclaw-host --data-dir D invoke hello greet --args '{"name":"world"}'` on a data
//!   directory where `hello` (embedded, so installed) has run once, so its compile cache is warm:
//!   the figure holds the CLI's whole start-up (catalog, engine and pooling allocator, linker,
//!   policy, the ledger and its index; the key-value store is opened only for a capability that
//!   imports it), the cache load, the run, the durable ledger append
//!   and the exit.
//! - raw: `raw-run` (a `[[bin]]` of this package) on the very `.cwasm` the host's cache holds:
//!   engine with the same code-deciding settings, deserialize, wasmtime-wasi linked, instantiate,
//!   call `greet`, print.
//!
//! The host binary is the release build in the same target directory as this benchmark
//! (`<target>/release/femtoclaw-host`, found beside the benchmark's own executable), or the path
//! in `FEMTOCLAW_HOST_BIN`. Cargo does not build another package's binary for a benchmark, so
//! build it first; the benchmark stops, naming the command, when it is missing:
//!
//! ```text
//! cargo build --release -p femtoclaw-host && cargo bench -p femtoclaw-benches --bench b3_cold_start
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};

const RAW_RUN: &str = env!("CARGO_BIN_EXE_raw-run");
const SAMPLES: usize = 40;

/// The release `femtoclaw-host`, or a panic that says how to build it.
fn host_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FEMTOCLAW_HOST_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FEMTOCLAW_HOST_BIN `{}` is not a file",
            path.display()
        );
        return path;
    }
    // <target>/release/deps/b3_cold_start-<hash> → <target>/release/femtoclaw-host
    let exe = std::env::current_exe().expect("own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("benchmark runs from <target>/<profile>/deps")
        .join("femtoclaw-host");
    assert!(
        path.is_file(),
        "no release host binary at `{}`: build it first with \
         `cargo build --release -p femtoclaw-host` (same CARGO_TARGET_DIR), \
         or set FEMTOCLAW_HOST_BIN",
        path.display()
    );
    path
}

struct Setup {
    host: PathBuf,
    data_dir: tempfile::TempDir,
    cwasm: PathBuf,
}

impl Setup {
    fn ours(&self) -> Command {
        let mut cmd = Command::new(&self.host);
        cmd.arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["invoke", "hello", "greet", "--args", r#"{"name":"world"}"#])
            .env_remove("FEMTOCLAW_POLICY")
            .env_remove("FEMTOCLAW_LOG");
        cmd
    }

    fn raw(&self) -> Command {
        let mut cmd = Command::new(RAW_RUN);
        cmd.arg(&self.cwasm).args(["greet", "world"]);
        cmd
    }
}

/// Runs `cmd` to completion and returns its stdout, or panics with its stderr.
fn output(mut cmd: Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// One whole process, output discarded; panics if it fails.
fn run(mut cmd: Command) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success(), "{cmd:?} failed ({status})");
}

fn setup() -> Setup {
    let host = host_binary();
    let data_dir = tempfile::tempdir().expect("data dir");
    let mut s = Setup {
        host,
        data_dir,
        cwasm: PathBuf::new(),
    };
    // The first run creates the key and the ledger and fills the compile cache.
    assert_eq!(output(s.ours()), r#""Hello, world!""#);
    let cache = s.data_dir.path().join("cache");
    let cached: Vec<PathBuf> = std::fs::read_dir(&cache)
        .expect("compile cache")
        .map(|e| e.expect("cache entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    let [cwasm] = cached.as_slice() else {
        panic!(
            "expected one .cwasm in `{}`, found {cached:?}",
            cache.display()
        );
    };
    s.cwasm = cwasm.clone();
    // Warm means warm: a second run loads the cache and does not rewrite it.
    let written = std::fs::metadata(&s.cwasm).unwrap().modified().unwrap();
    assert_eq!(output(s.ours()), r#""Hello, world!""#);
    assert_eq!(
        std::fs::metadata(&s.cwasm).unwrap().modified().unwrap(),
        written,
        "the host recompiled instead of loading its cache"
    );
    assert_eq!(output(s.raw()), "Hello, world!");
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn time(cmd: Command) -> Duration {
    let t = Instant::now();
    run(cmd);
    t.elapsed()
}

/// Interleaved samples of both (so machine noise hits both alike), then p50/p90 and ratios.
fn report(s: &Setup) {
    let (mut raw, mut ours) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..SAMPLES {
        raw.push(time(s.raw()));
        ours.push(time(s.ours()));
    }
    raw.sort();
    ours.sort();
    let (r50, r90) = (percentile(&raw, 0.5), percentile(&raw, 0.9));
    let (o50, o90) = (percentile(&ours, 0.5), percentile(&ours, 0.9));
    println!(
        "B3 cold start hello.greet, whole process, warm compile cache ({SAMPLES} interleaved samples)"
    );
    println!("  raw wasmtime (raw-run)   p50 {r50:>10.2?}  p90 {r90:>10.2?}");
    println!("  femtoclaw-host invoke    p50 {o50:>10.2?}  p90 {o90:>10.2?}");
    println!(
        "  ratio                    p50 {:.3}x      p90 {:.3}x   (goal: p50 <= 1.2x)",
        o50.as_secs_f64() / r50.as_secs_f64(),
        o90.as_secs_f64() / r90.as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("b3_cold_start_hello_greet");
    group.bench_function("raw_wasmtime_process", |b| b.iter(|| run(s.raw())));
    group.bench_function("femtoclaw_host_process", |b| b.iter(|| run(s.ours())));
    group.finish();
    report(&s);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
