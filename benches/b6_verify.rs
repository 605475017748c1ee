//! B6 — offline verification of an export vs raw SHA-256 leaf hashing + Merkle root of
//! the same entry bytes, measured in the same run (goal ≥ 0.6× per core).
//!
//! Verification also decodes every entry, checks every checkpoint signature (Ed25519)
//! against the pinned key, compares roots and checks consistency between consecutive
//! checkpoints, so its cost depends on how many checkpoints there are (one per group
//! commit batch). Two shapes are measured: 128 and 16 entries per batch.
//!
//! Verification opens checkpoint signatures on a second thread while the first hashes
//! entries, so the ratio printed is wall-clock with up to two threads against a
//! one-thread baseline. For the per-core ratio, pin the run to one CPU
//! (`taskset -c 0 target/release/deps/b6_verify-* --bench`).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark may stop on a broken set-up

use femtoclaw_benches::sample_entry;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use femtoclaw_ledger::merkle::{leaf_hash, root_from_leaf_hashes};
use femtoclaw_ledger::{
    Ledger, LedgerOptions, SigningKey, VerifyOptions, parse_export, verify_export,
};

const ENTRIES: usize = 10_000;
const SHAPES: [usize; 2] = [128, 16];

fn build_export(per_batch: usize, key: &SigningKey) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut l, _) = Ledger::open(dir.path(), LedgerOptions::with_key(key.clone())).expect("open");
    let mut i = 0;
    while i < ENTRIES {
        let n = per_batch.min(ENTRIES - i);
        l.append_batch((0..n).map(|s| sample_entry(i as u64, s as u32)).collect())
            .expect("append");
        i += n;
    }
    let p = dir.path().join("bench.export");
    l.export(&p).expect("export");
    std::fs::read(p).expect("read export")
}

fn raw(entries: &[&[u8]]) -> [u8; 32] {
    let leaves: Vec<[u8; 32]> = entries.iter().map(|e| leaf_hash(e)).collect();
    root_from_leaf_hashes(&leaves)
}

fn p50(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let key = SigningKey::from_seed("bench.femtoclaw/ledger", [1; 32]).expect("key");
    let opts = VerifyOptions::with_key(key.verifier());
    let exports: Vec<(usize, Vec<u8>)> =
        SHAPES.iter().map(|&s| (s, build_export(s, &key))).collect();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    {
        let mut g = c.benchmark_group("b6_verify_10k");
        for (shape, bytes) in &exports {
            let parsed = parse_export(bytes).expect("parse");
            g.bench_with_input(BenchmarkId::new("verify_export", shape), shape, |b, _| {
                b.iter(|| verify_export(bytes, &opts).expect("verify"))
            });
            g.bench_with_input(
                BenchmarkId::new("raw_sha256_merkle", shape),
                shape,
                |b, _| b.iter(|| raw(&parsed.entries)),
            );
        }
        g.finish();
    }

    println!("\nB6 summary ({ENTRIES} entries; ratio = raw time / verify time, goal ≥ 0.6)");
    for (shape, bytes) in &exports {
        let parsed = parse_export(bytes).expect("parse");
        let report = verify_export(bytes, &opts).expect("verify");
        assert_eq!(raw(&parsed.entries), report.root, "same root both ways");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..30 {
            let t = Instant::now();
            verify_export(bytes, &opts).expect("verify");
            ours.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(raw(&parsed.entries));
            theirs.push(t.elapsed());
        }
        let (o, r) = (p50(&mut ours), p50(&mut theirs));
        println!(
            "  {shape:>3} entries/checkpoint ({} checkpoints, {} KiB): verify p50 {:.2} ms ({:.0} entries/s), raw p50 {:.2} ms ({:.0} entries/s), ratio {:.2}×",
            report.checkpoints,
            bytes.len() / 1024,
            o.as_secs_f64() * 1e3,
            ENTRIES as f64 / o.as_secs_f64(),
            r.as_secs_f64() * 1e3,
            ENTRIES as f64 / r.as_secs_f64(),
            r.as_secs_f64() / o.as_secs_f64()
        );
    }
    c.final_summary();
}
