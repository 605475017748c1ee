//! B7: host overhead on a realistic guest. `textstats` runs `analyze` (counts and the 10 most
//! frequent words) and `digest` (SHA-256) on 1 MiB of text, three ways, interleaved in one run:
//!
//! - host: the host's execution path around the sandbox — authorize the invocation, build the
//!   policy context (the call checker of the default policy for the manifest's requests),
//!   `Sandbox::invoke` (JSON → WIT, fresh store with fuel and limits, the gate for its one log
//!   call, WIT → JSON), then `record::ran` (the ledger entries; appending them is B4/B5's);
//! - raw wasmtime with fuel: `Store` + `InstancePre` + typed call of the same component, the log
//!   import a no-op, on an engine with the same code-deciding settings;
//! - raw wasmtime without fuel: the same, fuel off (what fuel itself costs; reported only).
//!
//! Goal: host / raw-with-fuel p50 ≤ 1.02.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail loudly"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use femtoclaw_benches::{RawWasi, raw_config};
use femtoclaw_ledger::Entry;
use femtoclaw_policy::{CapabilityRef, GrantCache, PolicySet, Principal};
use femtoclaw_sandbox::catalog::Manifest;
use femtoclaw_sandbox::record::{self, Start};
use femtoclaw_sandbox::{Context, Prepared, Sandbox, SandboxConfig};
use serde_json::{Value as Json, json};
use wasmtime::component::{Component, ComponentType, InstancePre, Lift, Linker, Lower};
use wasmtime::{Engine, Store};

const TEXT_BYTES: usize = 1 << 20;
const TOP: u32 = 10;
const SAMPLES: usize = 40;

#[derive(ComponentType, Lift, Debug, PartialEq)]
#[component(record)]
struct WordCount {
    word: String,
    count: u32,
}

#[derive(ComponentType, Lift, Debug, PartialEq)]
#[component(record)]
struct Stats {
    bytes: u32,
    characters: u32,
    words: u32,
    lines: u32,
    sentences: u32,
    #[component(name = "average-word-length")]
    average_word_length: f64,
    #[component(name = "top-words")]
    top_words: Vec<WordCount>,
}

#[derive(ComponentType, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum Algorithm {
    #[component(name = "sha256")]
    Sha256,
    #[expect(
        dead_code,
        reason = "the WIT enum's other case; the benchmark digests with SHA-256"
    )]
    #[component(name = "fnv1a64")]
    Fnv1a64,
}

/// What a raw call returns.
enum RawResult {
    Stats(Stats),
    Digest(String),
}

impl RawResult {
    /// The result as the host's JSON.
    fn json(&self) -> Json {
        match self {
            RawResult::Stats(s) => json!({
                "bytes": s.bytes, "characters": s.characters, "words": s.words,
                "lines": s.lines, "sentences": s.sentences,
                "average-word-length": s.average_word_length,
                "top-words": s.top_words.iter()
                    .map(|w| json!({ "word": w.word, "count": w.count }))
                    .collect::<Vec<_>>(),
            }),
            RawResult::Digest(d) => json!(d),
        }
    }
}

/// 1 MiB of English-like ASCII text: words of varied length and frequency, commas, sentences
/// ending in `.`, `!` or `?`, lines of about 70 characters, blank lines between paragraphs.
/// Deterministic (a fixed xorshift seed), so every run analyzes the same text.
fn text() -> String {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "it",
        "that",
        "was",
        "for",
        "on",
        "are",
        "with",
        "as",
        "his",
        "they",
        "be",
        "at",
        "one",
        "have",
        "this",
        "from",
        "or",
        "had",
        "by",
        "word",
        "but",
        "what",
        "some",
        "we",
        "can",
        "out",
        "other",
        "were",
        "all",
        "there",
        "when",
        "up",
        "use",
        "your",
        "how",
        "said",
        "an",
        "each",
        "she",
        "which",
        "do",
        "their",
        "time",
        "if",
        "will",
        "way",
        "about",
        "many",
        "then",
        "them",
        "write",
        "would",
        "like",
        "so",
        "these",
        "her",
        "long",
        "make",
        "thing",
        "see",
        "him",
        "two",
        "has",
        "look",
        "more",
        "day",
        "could",
        "go",
        "come",
        "did",
        "number",
        "sound",
        "no",
        "most",
        "people",
        "my",
        "over",
        "know",
        "water",
        "than",
        "call",
        "first",
        "who",
        "may",
        "down",
        "side",
        "been",
        "now",
        "find",
        "capability",
        "ledger",
        "invocation",
        "deterministic",
        "authority",
        "policy",
        "component",
        "well-known",
        "don't",
        "Merkle",
        "Ed25519",
        "runtime",
        "agent's",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut text = String::with_capacity(TEXT_BYTES + 64);
    let (mut line, mut sentence, mut paragraph) = (0, 0, 0);
    while text.len() < TEXT_BYTES {
        // Skewed toward the front of the list, as word frequencies are.
        let word = WORDS[next(WORDS.len()).min(next(WORDS.len()))];
        if sentence == 0 {
            let mut chars = word.chars();
            let first = chars.next().unwrap_or(' ').to_ascii_uppercase();
            text.push(first);
            text.push_str(chars.as_str());
        } else {
            text.push_str(word);
        }
        line += word.len() + 1;
        sentence += 1;
        if sentence > 6 && next(8) == 0 {
            text.push(['.', '.', '.', '!', '?'][next(5)]);
            sentence = 0;
            paragraph += 1;
        } else if next(10) == 0 {
            text.push(',');
        }
        if paragraph > 5 && sentence == 0 && next(3) == 0 {
            text.push_str("\n\n");
            (line, paragraph) = (0, 0);
        } else if line > 70 {
            text.push('\n');
            line = 0;
        } else {
            text.push(' ');
        }
    }
    text.truncate(TEXT_BYTES);
    text
}

/// A function and its arguments, for every path.
struct Workload {
    function: &'static str,
    args: Json,
}

struct Raw {
    engine: Engine,
    pre: InstancePre<RawWasi>,
    fuel: bool,
}

impl Raw {
    /// Raw wasmtime with fuel on or off and, like the host's engine, epoch checks in the
    /// compiled code (`epoch`; never reached here: the deadline is the end of time).
    fn new(component: &[u8], fuel: bool, epoch: bool) -> Self {
        let engine = Engine::new(&raw_config(fuel, epoch)).unwrap();
        let component = Component::new(&engine, component).unwrap();
        let mut linker: Linker<RawWasi> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        linker
            .instance(femtoclaw_sandbox::LOG_INTERFACE)
            .unwrap()
            .func_new("log", |_, _, _, _| Ok(()))
            .unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        Self { engine, pre, fuel }
    }

    fn store(&self, fuel: u64) -> Store<RawWasi> {
        let mut store = Store::new(&self.engine, RawWasi::default());
        store.set_epoch_deadline(u64::MAX);
        if self.fuel {
            store.set_fuel(fuel).unwrap();
        }
        store
    }

    fn analyze(&self, text: &str, fuel: u64) -> Stats {
        let mut store = self.store(fuel);
        let instance = self.pre.instantiate(&mut store).unwrap();
        let f = instance
            .get_typed_func::<(&str, u32), (Stats,)>(&mut store, "analyze")
            .unwrap();
        f.call(&mut store, (text, TOP)).unwrap().0
    }

    fn digest(&self, text: &str, fuel: u64) -> String {
        let mut store = self.store(fuel);
        let instance = self.pre.instantiate(&mut store).unwrap();
        let f = instance
            .get_typed_func::<(&str, Algorithm), (String,)>(&mut store, "digest")
            .unwrap();
        f.call(&mut store, (text, Algorithm::Sha256)).unwrap().0
    }
}

struct Setup {
    text: String,
    sandbox: Sandbox,
    prepared: Arc<Prepared>,
    manifest: Manifest,
    policy: PolicySet,
    grants: GrantCache,
    principal: Principal,
    cap: CapabilityRef,
    fuel_on: Raw,
    fuel_off: Raw,
    fuel_epoch: Raw,
}

impl Setup {
    fn new() -> Self {
        let textstats = femtoclaw_capabilities::find("textstats").expect("textstats is embedded");
        let manifest = Manifest::parse(textstats.manifest, "textstats/capability.toml").unwrap();
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let prepared = sandbox.prepare(textstats.component).unwrap();
        let sha256: String = prepared.digest.iter().map(|b| format!("{b:02x}")).collect();
        let cap = CapabilityRef::new(
            manifest.name.clone(),
            manifest.version.clone(),
            sha256,
            manifest.publisher.clone(),
        );
        Self {
            text: text(),
            sandbox,
            prepared,
            policy: PolicySet::default_policy().unwrap(),
            grants: GrantCache::default(),
            principal: Principal::local(),
            cap,
            fuel_on: Raw::new(textstats.component, true, false),
            fuel_off: Raw::new(textstats.component, false, false),
            fuel_epoch: Raw::new(textstats.component, true, true),
            manifest,
        }
    }

    fn workloads(&self) -> [Workload; 2] {
        [
            Workload {
                function: "analyze",
                args: json!({ "text": self.text, "top": TOP }),
            },
            Workload {
                function: "digest",
                args: json!({ "text": self.text, "algorithm": "sha256" }),
            },
        ]
    }

    /// The host's path: authorize, context, invoke, ledger entries.
    fn host(&self, w: &Workload) -> (Json, Vec<Entry>) {
        let invoke =
            self.policy
                .authorize_invoke_function(&self.principal, &self.cap, Some(w.function));
        assert!(
            invoke.allowed,
            "the default policy refuses textstats: {invoke}"
        );
        let context = Context::new(Arc::new(self.policy.call_checker(
            &self.principal,
            &self.cap,
            &self.manifest.requests,
        )));
        let imports = || self.prepared.imports.iter().map(String::as_str);
        let link = self
            .grants
            .get_or_grant(
                &self.policy,
                &self.principal,
                &self.cap,
                &self.manifest.requests,
                imports(),
            )
            .authorize_link(imports())
            .unwrap();
        let outcome = self
            .sandbox
            .invoke(
                &self.prepared,
                w.function,
                &w.args,
                self.manifest.fuel,
                &link,
                context,
            )
            .unwrap();
        let start = Start {
            invocation: 1,
            principal: self.principal.to_string(),
            groups: Vec::new(),
            capability: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            component_sha256: self.prepared.digest,
            manifest_sha256: [0; 32],
            engine_digest: self.sandbox.engine_digest(),
            fuel_budget: self.manifest.fuel,
            policy_digest: self.policy.digest(),
            function: w.function.to_owned(),
            trace_id: None,
            approval: None,
        };
        let entries = record::ran(&start, &invoke, &outcome);
        (outcome.result.expect("textstats ran"), entries)
    }

    /// The same call in raw wasmtime.
    fn raw(&self, raw: &Raw, w: &Workload) -> RawResult {
        match w.function {
            "analyze" => RawResult::Stats(raw.analyze(&self.text, self.manifest.fuel)),
            "digest" => RawResult::Digest(raw.digest(&self.text, self.manifest.fuel)),
            other => unreachable!("no workload `{other}`"),
        }
    }
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Interleaved samples of the three paths (so machine noise hits each alike), then p50s.
fn report(s: &Setup, w: &Workload) {
    let (mut host, mut fuel, mut nofuel, mut epoch) = (vec![], vec![], vec![], vec![]);
    for _ in 0..SAMPLES {
        host.push(time(|| drop(black_box(s.host(w)))));
        fuel.push(time(|| drop(black_box(s.raw(&s.fuel_on, w)))));
        nofuel.push(time(|| drop(black_box(s.raw(&s.fuel_off, w)))));
        epoch.push(time(|| drop(black_box(s.raw(&s.fuel_epoch, w)))));
    }
    let (host, fuel, nofuel, epoch) = (p50(host), p50(fuel), p50(nofuel), p50(epoch));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "B7 textstats.{} on {} KiB of text ({SAMPLES} interleaved samples, p50)",
        w.function,
        TEXT_BYTES >> 10
    );
    println!("  raw wasmtime, fuel off   {nofuel:>10.2?}");
    println!(
        "  raw wasmtime, fuel on    {fuel:>10.2?}   fuel costs {:.3}x",
        ratio(fuel, nofuel)
    );
    println!("  femtoclaw host path      {host:>10.2?}");
    println!(
        "  ratio host / raw+fuel    {:>10.3}x   (goal: <= 1.02x)",
        ratio(host, fuel)
    );
    println!(
        "  ratio host / raw-fuel    {:>10.3}x   (report)",
        ratio(host, nofuel)
    );
    println!(
        "  raw, fuel + epoch checks {epoch:>10.2?}   the watchdog's checks cost {:.3}x; \
         host / raw+fuel+epoch {:.3}x",
        ratio(epoch, fuel),
        ratio(host, epoch)
    );
}

fn bench(c: &mut Criterion) {
    let s = Setup::new();
    for w in s.workloads() {
        let (result, entries) = s.host(&w);
        assert_eq!(
            result,
            s.raw(&s.fuel_on, &w).json(),
            "{}: host and raw differ",
            w.function
        );
        assert_eq!(
            result,
            s.raw(&s.fuel_off, &w).json(),
            "{}: fuel changed the result",
            w.function
        );
        assert_eq!(
            result,
            s.raw(&s.fuel_epoch, &w).json(),
            "{}: epoch checks changed the result",
            w.function
        );
        let host_calls = entries
            .iter()
            .filter(|e| matches!(e, Entry::HostCall { .. }))
            .count();
        // `analyze` logs once (a gated, recorded call); `digest` makes no host call.
        assert_eq!(
            host_calls,
            usize::from(w.function == "analyze"),
            "{}",
            w.function
        );
        let mut group = c.benchmark_group(format!("b7_textstats_{}_1mib", w.function));
        group.bench_function("raw_wasmtime_fuel_off", |b| {
            b.iter(|| black_box(s.raw(&s.fuel_off, &w)))
        });
        group.bench_function("raw_wasmtime_fuel_on", |b| {
            b.iter(|| black_box(s.raw(&s.fuel_on, &w)))
        });
        group.bench_function("femtoclaw_host_path", |b| b.iter(|| black_box(s.host(&w))));
        group.finish();
    }
    for w in s.workloads() {
        report(&s, &w);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
