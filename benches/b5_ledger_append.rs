//! B5 — durable ledger append with group commit vs a raw `write` + `fdatasync` loop of
//! the same bytes at the same batch size, measured in the same run.
//!
//! Goals (ARCHITECTURE §7): throughput ≥ 0.8× raw at equal batch size; single-record
//! durable latency ≤ 1.1× raw fdatasync p50. The summary printed at the end gives p50
//! figures and ratios from an interleaved timing loop (ours and raw alternate, so both
//! see the same disk weather).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark may stop on a broken set-up

use femtoclaw_benches::sample_entry;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion};
use femtoclaw_ledger::{Entry, Ledger, LedgerOptions, SigningKey};

const BATCHES: [usize; 3] = [1, 16, 128];

fn batch(n: usize) -> Vec<Entry> {
    (0..n).map(|i| sample_entry(1, i as u32)).collect()
}

/// The raw baseline's bytes for a batch: each entry's canonical bytes behind a u32
/// length, exactly what a minimal log would write.
fn raw_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for e in batch(n) {
        let b = e.encode();
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

struct Raw {
    file: File,
}

impl Raw {
    fn new(dir: &Path) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("raw.log"))
            .expect("raw log");
        Self { file }
    }
    fn append(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).expect("write");
        self.file.sync_data().expect("fdatasync");
    }
}

fn open_ledger(dir: &Path) -> Ledger {
    let key = SigningKey::from_seed("bench.femtoclaw/ledger", [1; 32]).expect("key");
    Ledger::open(dir, LedgerOptions::with_key(key))
        .expect("open")
        .0
}

fn p50(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let base = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();

    {
        let mut g = c.benchmark_group("b5_append");
        for &n in &BATCHES {
            let dir = tempfile::tempdir_in(base.path()).expect("dir");
            let mut ledger = open_ledger(dir.path());
            let entries = batch(n);
            g.bench_with_input(BenchmarkId::new("ledger", n), &n, |b, _| {
                b.iter_batched(
                    || entries.clone(),
                    |e| ledger.append_batch(e).expect("append"),
                    BatchSize::SmallInput,
                )
            });
            let mut raw = Raw::new(dir.path());
            let bytes = raw_bytes(n);
            g.bench_with_input(BenchmarkId::new("raw_write_fdatasync", n), &n, |b, _| {
                b.iter(|| raw.append(&bytes))
            });
        }
        g.finish();
    }

    // Summary: interleaved loop, p50 per batch, throughput ratio.
    println!("\nB5 summary (p50 per durable batch; ratio = raw time / ledger time, goal ≥ 0.8)");
    let rounds = 200;
    let mut single = (Duration::ZERO, Duration::ZERO);
    for &n in &BATCHES {
        let dir = tempfile::tempdir_in(base.path()).expect("dir");
        let mut ledger = open_ledger(dir.path());
        let mut raw = Raw::new(dir.path());
        let entries = batch(n);
        let bytes = raw_bytes(n);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let e = entries.clone();
            let t = Instant::now();
            ledger.append_batch(e).expect("append");
            ours.push(t.elapsed());
            let t = Instant::now();
            raw.append(&bytes);
            theirs.push(t.elapsed());
        }
        let (o, r) = (p50(&mut ours), p50(&mut theirs));
        let ratio = r.as_secs_f64() / o.as_secs_f64();
        println!(
            "  batch {n:>3}: ledger p50 {:>9.1} µs ({:>8.0} entries/s), raw p50 {:>9.1} µs ({:>8.0} entries/s), throughput ratio {ratio:.2}×",
            o.as_secs_f64() * 1e6,
            n as f64 / o.as_secs_f64(),
            r.as_secs_f64() * 1e6,
            n as f64 / r.as_secs_f64(),
        );
        if n == 1 {
            single = (o, r);
        }
    }
    let (o, r) = single;
    println!(
        "  single-record durable latency: ledger p50 {:.1} µs vs raw fdatasync p50 {:.1} µs → {:.2}× (goal ≤ 1.1)",
        o.as_secs_f64() * 1e6,
        r.as_secs_f64() * 1e6,
        o.as_secs_f64() / r.as_secs_f64()
    );
    c.final_summary();
}
