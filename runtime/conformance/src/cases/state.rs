//! Cases of capability state (specification 25) as a view of the ledger: writes applied only
//! once an invocation returned, derived from its recorded calls, paged listings read through an
//! invocation's pending writes, the limits, catch-up from the applied mark, and the store's
//! rebuild from the ledger when it is lost, damaged or reindexed. Every check reads what the
//! target prints (`invoke`, `kv list --json`, `log show --json`) or the store on disk in the
//! layout specification 25 defines.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{OPEN, failed, guest_host};
use crate::format::b64;
use crate::target::{Host, Run, Server, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.state.store-rebuilt-from-ledger",
        verifies: &["FC-MEM-2505", "FC-OPS-5705", "FC-ABI-4910"],
        run: store_rebuilt_from_ledger,
    },
    Case {
        name: "cli.state.writes-applied-at-return-in-order-of-ends",
        verifies: &["FC-MEM-2502", "FC-MEM-2503"],
        run: writes_applied_at_return_in_order_of_ends,
    },
    Case {
        name: "cli.state.listing-pages-merge-pending-writes",
        verifies: &["FC-MEM-2506"],
        run: listing_pages_merge_pending_writes,
    },
    Case {
        name: "cli.state.limits-refused-keeping-nothing",
        verifies: &["FC-MEM-2512"],
        run: limits_refused_keeping_nothing,
    },
    Case {
        name: "cli.state.catch-up-from-applied-mark",
        verifies: &["FC-MEM-2504", "FC-MEM-2517"],
        run: catch_up_from_applied_mark,
    },
    Case {
        name: "cli.state.checkpoint-bodies-parsed-strictly",
        verifies: &["FC-CRYPTO-3612"],
        run: checkpoint_bodies_parsed_strictly,
    },
    Case {
        name: "cli.state.checkpoints-once-per-batch-over-the-tree",
        verifies: &["FC-PERF-3213", "FC-CRYPTO-3601"],
        run: checkpoints_once_per_batch_over_the_tree,
    },
    Case {
        name: "cli.state.entry-versions-current-read-earlier-refused",
        verifies: &["FC-ABI-4901", "FC-ABI-4902"],
        run: entry_versions_current_read_earlier_refused,
    },
    Case {
        name: "cli.state.blob-bytes-put-back-checked",
        verifies: &["FC-MEM-2324"],
        run: blob_bytes_put_back_checked,
    },
    Case {
        name: "cli.state.catch-up-across-an-invocations-batches",
        verifies: &["FC-MEM-2504", "FC-MEM-2408", "FC-ABI-4910"],
        run: catch_up_across_an_invocations_batches,
    },
    Case {
        name: "cli.state.segments-rotate-between-batches",
        verifies: &["FC-MEM-2405"],
        run: segments_rotate_between_batches,
    },
    Case {
        name: "http.state.sealed-segments-read-only",
        verifies: &["FC-MEM-4410"],
        run: sealed_segments_read_only,
    },
    Case {
        name: "cli.state.concurrent-appends-coalesced",
        verifies: &["FC-MEM-2404"],
        run: concurrent_appends_coalesced,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The store as `kv list --json` prints it: (namespace, key) → value.
type Pairs = BTreeMap<(String, String), Vec<u8>>;

/// `echo` of the guest's `kv` probe running `ops` (plus `extra` flags); the run and, when it
/// returned, its result text.
fn kv_probe(host: &Host, ops: &str, extra: &[&str]) -> Result<(Run, Option<String>), Failure> {
    let text = format!("\u{1}probe:kv:{ops}");
    let mut flags = vec!["--json"];
    flags.extend_from_slice(extra);
    let run = host.invoke("echo", &json!({ "text": text }), &flags)?;
    let result = if run.code == 0 {
        let out = run.json()?;
        Some(
            out["result"]
                .as_str()
                .ok_or_else(|| failed(format!("echo gave no text: {}", out["result"])))?
                .to_owned(),
        )
    } else {
        None
    };
    Ok((run, result))
}

/// The `kv` probe, which must return; its result lines.
fn kv_ok(host: &Host, ops: &str) -> Result<Vec<String>, Failure> {
    let (run, result) = kv_probe(host, ops, &[])?;
    let Some(result) = result else {
        return Err(failed(format!(
            "the kv probe `{}` exited {}: {}",
            excerpt(ops),
            run.code,
            excerpt(&run.stderr)
        )));
    };
    Ok(result.split('\n').map(str::to_owned).collect())
}

/// The store, as `kv list --json` prints it.
fn stored(host: &Host) -> Result<Pairs, Failure> {
    let out = host.ok(&["kv", "list", "--json"])?;
    let mut pairs = Pairs::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let j: Json = serde_json::from_str(line)
            .map_err(|e| failed(format!("kv list --json: a line is not JSON ({e}): {line}")))?;
        let (Some(ns), Some(key), Some(value)) = (
            j["namespace"].as_str(),
            j["key"].as_str(),
            j["value"].as_str(),
        ) else {
            return Err(failed(format!(
                "kv list --json: a line lacks namespace, key or value: {line}"
            )));
        };
        let value = b64(value).map_err(|e| failed(format!("kv list --json: {e}")))?;
        pairs.insert((ns.to_owned(), key.to_owned()), value);
    }
    Ok(pairs)
}

/// Pairs of namespace `conformance` as text, for messages and comparisons.
fn texts(pairs: &Pairs) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter(|((ns, _), _)| ns == "conformance")
        .map(|((_, k), v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One derived write: the pair's value, or `None` for a delete.
type Write = ((String, String), Option<Vec<u8>>);

/// The writes specification 25 derives from the recorded calls of `entries`: per invocation, in
/// call order, an `open` answered `ok(handle)` binds the handle; a `set` or `delete` answered
/// `ok` on a bound handle is a write; the writes of each invocation are applied at its
/// `invocation-end`, in the order of the ends, unless a `trap` of it came first.
fn derive(entries: &[Json]) -> Result<Pairs, Failure> {
    #[derive(Default)]
    struct Inv {
        handles: BTreeMap<u64, String>,
        writes: Vec<Write>,
        trapped: bool,
    }
    let ok = |e: &Json| e["result"]["tuple"][0]["result"].get("Ok").cloned();
    let mut open: BTreeMap<u64, Inv> = BTreeMap::new();
    let mut store = Pairs::new();
    for e in entries.iter().map(|e| &e["entry"]) {
        let Some(n) = e["invocation"].as_u64() else {
            continue;
        };
        match e["type"].as_str().unwrap_or("") {
            "trap" => open.entry(n).or_default().trapped = true,
            "invocation-end" => {
                if let Some(inv) = open.remove(&n)
                    && !inv.trapped
                {
                    for (k, v) in inv.writes {
                        match v {
                            Some(v) => store.insert(k, v),
                            None => store.remove(&k),
                        };
                    }
                }
            }
            "host-call" if e["interface"] == "wasi:keyvalue/store@0.2.0-draft2" => {
                let inv = open.entry(n).or_default();
                let params = &e["params"]["tuple"];
                let Some(result) = ok(e) else { continue };
                let bound = params[0]["u32"]
                    .as_u64()
                    .and_then(|h| inv.handles.get(&h).cloned());
                let key = params[1]["string"].as_str().map(str::to_owned);
                match e["function"].as_str().unwrap_or("") {
                    "open" => {
                        if let (Some(h), Some(ns)) =
                            (result["u32"].as_u64(), params[0]["string"].as_str())
                        {
                            inv.handles.insert(h, ns.to_owned());
                        }
                    }
                    "[method]bucket.set" => {
                        if let (Some(ns), Some(key)) = (bound, key) {
                            let value = params[2]["bytes"].as_str().ok_or_else(|| {
                                failed(format!("a recorded set holds no bytes: {e}"))
                            })?;
                            let value = b64(value).map_err(failed)?;
                            inv.writes.push(((ns, key), Some(value)));
                        }
                    }
                    "[method]bucket.delete" => {
                        if let (Some(ns), Some(key)) = (bound, key) {
                            inv.writes.push(((ns, key), None));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(store)
}

// ---------------------------------------------------------------------------------------------
// The store rebuilt from the ledger.

fn store_rebuilt_from_ledger(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    kv_ok(&host, "set=a=1 set=b=2 set=c=3")?;
    kv_ok(&host, "del=b set=a=10 set=d=4")?;
    let (run, _) = kv_probe(&host, "set=z=trapped del=c trap", &[])?;
    ensure!(
        run.code != 0,
        "an invocation that traps must not succeed: exit 0"
    );
    host.ok(&[
        "invoke",
        "memory",
        "put",
        "--args",
        r#"{"key":"note","text":"kept"}"#,
    ])?;
    let live = stored(&host)?;
    let want = expected(&[("a", "10"), ("c", "3"), ("d", "4")]);
    ensure!(
        texts(&live) == want,
        "the live store must hold {want:?} in namespace conformance after the writes; it holds {:?}",
        texts(&live)
    );
    ensure!(
        live.get(&("memory".to_owned(), "note".to_owned())) == Some(&b"kept".to_vec()),
        "the live store must hold memory/note = kept: {live:?}"
    );
    let entries = host.entries()?;

    // Reindex: the store and the index rebuilt from the segments alone, equal to what they were.
    let out = host.ok(&["log", "reindex"])?;
    let after = stored(&host)?;
    ensure!(
        after == live,
        "`log reindex` must rebuild the store equal to the live state: {:?} where it was {:?} \
         (reindex printed {})",
        texts(&after),
        texts(&live),
        excerpt(&out)
    );
    ensure!(
        host.entries()? == entries,
        "`log reindex` must rebuild the index equal to what it was: `log show --json` differs"
    );

    // A store lost: the next open rebuilds it from the ledger.
    let kv = host.data.path().join("kv");
    ensure!(
        kv.is_dir(),
        "the store must live in <data dir>/kv (specification 25)"
    );
    std::fs::remove_dir_all(&kv).map_err(|e| failed(format!("cannot remove the store: {e}")))?;
    let after = stored(&host)?;
    ensure!(
        after == live,
        "a lost store must come back equal to the ledger's view on the next open: {:?} where it \
         was {:?}",
        texts(&after),
        texts(&live)
    );

    // A store damaged (every file of it overwritten): rebuilt, not read.
    damage(&kv)?;
    let after = stored(&host)?;
    ensure!(
        after == live,
        "a damaged store must come back equal to the ledger's view on the next open: {:?} \
         where it was {:?}",
        texts(&after),
        texts(&live)
    );
    // And the invocation that follows reads and writes the rebuilt store.
    let lines = kv_ok(&host, "get=a set=e=5")?;
    ensure!(
        lines.first().map(String::as_str) == Some("some 10"),
        "after the rebuild an invocation must read a = 10: {lines:?}"
    );
    damage(&kv)?;
    host.ok(&["log", "reindex"])?;
    let after = texts(&stored(&host)?);
    let want = expected(&[("a", "10"), ("c", "3"), ("d", "4"), ("e", "5")]);
    ensure!(
        after == want,
        "`log reindex` over a damaged store must rebuild it from the ledger: {after:?} where \
         {want:?} is the ledger's view"
    );
    Ok(())
}

/// Overwrites every file of the store directory with bytes no store format reads.
fn damage(dir: &Path) -> Result<(), Failure> {
    let mut stack = vec![dir.to_owned()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        let read =
            std::fs::read_dir(&d).map_err(|e| failed(format!("cannot read the store: {e}")))?;
        for e in read.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let junk = vec![0xa5u8; len.clamp(64, 1 << 16) as usize];
                super::write(&path, &junk)?;
                n += 1;
            }
        }
    }
    ensure!(n > 0, "the store directory holds no file to damage");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writes applied once an invocation returned, derived from its recorded calls.

/// The text of a kv probe as `POST /v1/invoke` takes it.
fn probe_body(ops: &str, fuel: u64) -> Json {
    json!({
        "capability": "conformance",
        "function": "echo",
        "args": { "text": format!("\u{1}probe:kv:{ops}") },
        "fuel": fuel,
    })
}

/// The ledger index of the first entry of `kind` of invocation `n`.
fn index_of(entries: &[Json], n: u64, kind: &str) -> Option<u64> {
    entries
        .iter()
        .find(|e| e["entry"]["type"] == kind && e["entry"]["invocation"] == n)
        .and_then(|e| e["index"].as_u64())
}

fn writes_applied_at_return_in_order_of_ends(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case reads the data directory of a server it started itself".into(),
        ));
    }
    // Invocations that trap, run out of fuel or pass their deadline after writing: their calls
    // stay recorded, their writes are never applied.
    let host = guest_host(target, OPEN)?;
    kv_ok(&host, "set=base=0")?;
    for (ops, extra, what) in [
        ("set=t1=trapped del=base trap", &[][..], "a trap"),
        (
            "set=t2=out-of-fuel del=base spin",
            &["--fuel", "2000000"][..],
            "fuel",
        ),
        (
            "set=t3=late del=base spin",
            &["--deadline-ms", "300"][..],
            "the deadline",
        ),
    ] {
        let (run, _) = kv_probe(&host, ops, extra)?;
        ensure!(
            run.code != 0,
            "an invocation that ends at {what} after writing must fail: exit 0"
        );
    }
    let entries = host.entries()?;
    let recorded_sets = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| {
            e["type"] == "host-call"
                && e["function"] == "[method]bucket.set"
                && e["result"]["tuple"][0]["result"].get("Ok").is_some()
                && ["t1", "t2", "t3"]
                    .contains(&e["params"]["tuple"][1]["string"].as_str().unwrap_or(""))
        })
        .count();
    ensure!(
        recorded_sets == 3,
        "the successful sets of the invocations that then trapped must stay recorded: {recorded_sets} \
         of 3 are in the ledger"
    );
    let live = texts(&stored(&host)?);
    ensure!(
        live == expected(&[("base", "0")]),
        "the writes of invocations that trapped must not be applied: the store holds {live:?} \
         where only base = 0 was written by an invocation that returned"
    );
    let read = kv_ok(&host, "get=t1 get=t2 get=t3 get=base")?;
    ensure!(
        read == ["none", "none", "none", "some 0"],
        "a later invocation must see none of the trapped writes: {read:?}"
    );

    // Concurrent invocations under a server: A writes p and runs long; B reads p while A runs;
    // C writes p after A began and ends before A. Nothing of A is visible before it returned,
    // and the writes land in the order of the ends: p = A's value.
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let server = Server::start(host, token)?;
    let post = |body: Json| invoke_in_background(&server, body);
    let answer = |name: &str, handle: std::thread::JoinHandle<Result<(u16, String), String>>| {
        let got = handle.join().map_err(|_| failed("a thread panicked"))?;
        match got {
            Ok((200, text)) => serde_json::from_str::<Json>(&text)
                .map_err(|e| failed(format!("invocation {name}: {e}: {text}"))),
            other => Err(failed(format!(
                "invocation {name} was not answered 200: {other:?}"
            ))),
        }
    };
    // The receipt's invocation and last index.
    let span = |body: &Json| {
        (
            body["receipt"]["invocation"].as_u64().unwrap_or(0),
            body["receipt"]["entries"][1].as_u64().unwrap_or(0),
        )
    };
    let mut burn = 50_000_000u64;
    let (b_text, key) = loop {
        let a = post(probe_body(
            &format!("set=p{burn}=A burn={burn}"),
            9_000_000_000,
        ));
        std::thread::sleep(Duration::from_millis(100));
        let b = answer("B", post(probe_body(&format!("get=p{burn}"), 1_000_000)))?;
        let c = answer("C", post(probe_body(&format!("set=p{burn}=C"), 1_000_000)))?;
        let a = answer("A", a)?;
        let ((na, a1), (_, b1), (nc, c1)) = (span(&a), span(&b), span(&c));
        // A was numbered first and ended last.
        if na < nc && b1 < a1 && c1 < a1 {
            break (
                b["result"].as_str().unwrap_or("").to_owned(),
                format!("p{burn}"),
            );
        }
        // A target too fast for this burn: a longer one.
        ensure!(
            burn < 500_000_000,
            "B and C never ended while A still ran: A (invocation {na}) ending at {a1}, B at \
             {b1}, C (invocation {nc}) at {c1}"
        );
        burn *= 3;
    };
    let mut server = server;
    let host = server
        .host
        .take()
        .ok_or_else(|| failed("no data directory"))?;
    drop(server);
    let entries = host.entries()?;
    ensure!(
        b_text == "none",
        "an invocation that ended before A returned must not see A's write: it read {b_text:?}"
    );
    let live = stored(&host)?;
    let want = derive(&entries)?;
    ensure!(
        texts(&live).get(&key).map(String::as_str) == Some("A"),
        "{key} must hold the value of the invocation that ended last (A, which began first and \
         has the lower invocation number), as the writes land in the order of the ends: the \
         store holds {:?}",
        texts(&live).get(&key)
    );
    ensure!(
        live == want,
        "the store must hold exactly the writes derived from the recorded calls: {:?} where \
         the ledger's calls give {:?}",
        texts(&live),
        texts(&want)
    );
    host.ok(&["log", "reindex"])?;
    let rebuilt = stored(&host)?;
    ensure!(
        rebuilt == want,
        "the store rebuilt from the ledger must hold exactly the derived writes: {:?} where \
         {:?}",
        texts(&rebuilt),
        texts(&want)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Listings.

/// The pages of a `list` result line.
fn pages(line: &str) -> Vec<Vec<String>> {
    line.split('|')
        .map(|p| {
            p.split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn check_pages(line: &str, want: &[String], what: &str) -> Result<(), Failure> {
    ensure!(
        !line.starts_with("err") && !line.contains("|err"),
        "{what}: a listing failed: {}",
        excerpt(line)
    );
    let pages = pages(line);
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    ensure!(
        sizes.iter().all(|n| *n <= 100),
        "{what}: every page must hold at most 100 keys; the pages held {sizes:?}"
    );
    let all: Vec<String> = pages.concat();
    ensure!(
        all == want,
        "{what}: the pages, followed by their cursors, must give the {} keys in key order ({:?} … \
         {:?}); they gave {} keys: {}",
        want.len(),
        want.first(),
        want.last(),
        all.len(),
        excerpt(&all.join(","))
    );
    Ok(())
}

fn listing_pages_merge_pending_writes(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let mut keys: Vec<String> = (0..150).map(|i| format!("s/{i:03}")).collect();
    let ops: Vec<String> = keys.iter().map(|k| format!("set={k}=v")).collect();
    let lines = kv_ok(&host, &format!("{} list", ops.join(" ")))?;
    check_pages(
        lines.last().map_or("", String::as_str),
        &keys,
        "a listing of 150 keys the invocation itself set",
    )?;
    // Stored keys, with pending deletes and writes before, inside and after them.
    let lines = kv_ok(
        &host,
        "del=s/005 del=s/120 set=s/0505=v set=a=v set=t=v set=s/010=w list",
    )?;
    keys.retain(|k| k != "s/005" && k != "s/120");
    keys.extend(["s/0505", "a", "t"].map(str::to_owned));
    keys.sort();
    check_pages(
        lines.last().map_or("", String::as_str),
        &keys,
        "a listing of stored keys merged with the invocation's pending writes and deletes",
    )?;
    ensure!(
        pages(lines.last().map_or("", String::as_str)).len() >= 2,
        "151 keys cannot fit one page of at most 100"
    );
    let lines = kv_ok(&host, "list")?;
    check_pages(
        lines.last().map_or("", String::as_str),
        &keys,
        "a later invocation's listing of the stored keys",
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Limits.

fn hexed(bytes: &[u8]) -> String {
    super::hex(bytes)
}

fn limits_refused_keeping_nothing(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let ok_key = "k".repeat(1024);
    let long_key = "k".repeat(1025);
    let ops = format!(
        "longkey=1024 longkey=1025 big=v1=1048576 big=v2=1048577 open= open={} open={} \
         open={} list",
        hexed(&[b'n'; 129]),
        hexed(b"bad\x01name"),
        hexed(b"bad\nname"),
    );
    let lines = kv_ok(&host, &ops)?;
    ensure!(
        lines.len() == 9,
        "the probe must give one line per operation: {}",
        excerpt(&lines.join(" / "))
    );
    let refused = |i: usize, what: &str| -> Result<(), Failure> {
        ensure!(
            lines[i].starts_with("err"),
            "{what} must be refused: {}",
            excerpt(&lines[i])
        );
        Ok(())
    };
    ensure!(
        lines[0] == "ok",
        "a key of 1024 bytes is within the limit: {}",
        excerpt(&lines[0])
    );
    refused(1, "a key of 1025 bytes")?;
    ensure!(
        lines[2] == "ok",
        "a value of 1 MiB is within the limit: {}",
        excerpt(&lines[2])
    );
    refused(3, "a value of 1 MiB + 1 byte")?;
    refused(4, "an empty namespace")?;
    refused(5, "a namespace of 129 bytes")?;
    refused(6, "a namespace holding a control character (0x01)")?;
    refused(7, "a namespace holding a control character (newline)")?;
    let listed: Vec<String> = pages(&lines[8]).concat();
    ensure!(
        listed == [ok_key.clone(), "v1".to_owned()],
        "the invocation's own listing must hold the accepted writes only (a 1024-byte key and \
         v1): {}",
        excerpt(&listed.join(","))
    );
    let store = texts(&stored(&host)?);
    ensure!(
        store.keys().cloned().collect::<Vec<_>>() == [ok_key.clone(), "v1".to_owned()]
            && !store.contains_key(&long_key),
        "the store must keep the accepted writes and nothing of the refused ones: it holds {}",
        excerpt(&store.keys().cloned().collect::<Vec<_>>().join(","))
    );
    ensure!(
        store.get("v1").map(String::len) == Some(1 << 20),
        "v1 must hold its 1 MiB"
    );

    // One invocation writing past 16 MiB (keys and values): 1 MiB values under 3-byte keys,
    // the 16th reaching 16 MiB + 48 bytes.
    let ops: Vec<String> = (0..17).map(|i| format!("big=f{i:02}=1048576")).collect();
    let (run, result) = kv_probe(
        &host,
        &format!("{} list", ops.join(" ")),
        &["--fuel", "5000000000"],
    )?;
    let Some(result) = result else {
        return Err(failed(format!(
            "an invocation whose write is refused must still return: exit {}: {}",
            run.code,
            excerpt(&run.stderr)
        )));
    };
    let lines: Vec<&str> = result.split('\n').collect();
    ensure!(
        lines.len() == 18,
        "the probe must give one line per operation: {}",
        excerpt(&result)
    );
    ensure!(
        lines[..15].iter().all(|l| *l == "ok"),
        "fifteen writes of 1 MiB are within 16 MiB: {}",
        excerpt(&lines[..15].join(" / "))
    );
    ensure!(
        lines[15].starts_with("err") && lines[16].starts_with("err"),
        "the writes that would take the invocation past 16 MiB must be refused: {} / {}",
        excerpt(lines[15]),
        excerpt(lines[16])
    );
    let listed: Vec<String> = pages(lines[17]).concat();
    ensure!(
        !listed.iter().any(|k| k == "f15" || k == "f16"),
        "the invocation's listing must hold nothing of the refused writes: {}",
        excerpt(&listed.join(","))
    );
    let store = texts(&stored(&host)?);
    ensure!(
        !store.contains_key("f15") && !store.contains_key("f16"),
        "the store must keep nothing of the refused writes: it holds {}",
        excerpt(&store.keys().cloned().collect::<Vec<_>>().join(","))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Catch-up from the applied mark.

/// The applied mark's key in the store (specification 25).
const APPLIED: &[u8] = b"\xffapplied";

/// Opens the store `<data dir>/kv` as specification 25 lays it out (a sled database).
fn open_store(host: &Host) -> Result<sled::Db, Failure> {
    sled::Config::new()
        .path(host.data.path().join("kv"))
        .open()
        .map_err(|e| {
            failed(format!(
                "<data dir>/kv is not the sled store specification 25 defines: {e}"
            ))
        })
}

/// Puts the store back to `pairs` (namespace `conformance`) with the applied mark at `mark`,
/// as a host leaves it when applying failed after the append.
fn set_store(host: &Host, pairs: &[(&str, &str)], mark: u64) -> Result<(), Failure> {
    let db = open_store(host)?;
    let err = |e: sled::Error| failed(format!("cannot write the store: {e}"));
    db.clear().map_err(err)?;
    for (k, v) in pairs {
        let mut key = b"conformance\0".to_vec();
        key.extend_from_slice(k.as_bytes());
        db.insert(key, v.as_bytes()).map_err(err)?;
    }
    db.insert(APPLIED, &mark.to_be_bytes()).map_err(err)?;
    db.flush().map_err(err)?;
    Ok(())
}

fn catch_up_from_applied_mark(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    kv_ok(&host, "set=a=1 set=b=2")?;
    kv_ok(&host, "set=c=3 del=a")?;
    let live = texts(&stored(&host)?);
    let want = expected(&[("b", "2"), ("c", "3")]);
    ensure!(
        live == want,
        "the live store must hold {want:?}: it holds {live:?}"
    );
    let entries = host.entries()?;
    let size = entries.len() as u64;
    {
        let db = open_store(&host)?;
        let mark = db
            .get(APPLIED)
            .map_err(|e| failed(format!("cannot read the store: {e}")))?;
        ensure!(
            mark.as_deref() == Some(&size.to_be_bytes()[..]),
            "the store's applied mark (0xFF \"applied\") must be the ledger size {size} as a \
             big-endian u64: it is {mark:?}"
        );
    }
    // The second invocation: its start, its `open`, its end.
    let last = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64())
        .ok_or_else(|| failed("no invocation is recorded"))?;
    let start = index_of(&entries, last, "invocation-start");
    let opened = entries
        .iter()
        .find(|e| {
            e["entry"]["type"] == "host-call"
                && e["entry"]["invocation"] == last
                && e["entry"]["function"] == "open"
        })
        .and_then(|e| e["index"].as_u64());
    let end = index_of(&entries, last, "invocation-end");
    let (Some(start), Some(opened), Some(end)) = (start, opened, end) else {
        return Err(failed("the second invocation lacks its start, open or end"));
    };
    let before = [("a", "1"), ("b", "2")];
    for (mark, what) in [
        (
            start,
            "the store behind by a whole invocation (applying it failed after the append)",
        ),
        (
            opened + 1,
            "the applied mark past the invocation's start and its `open`, before its writes",
        ),
        (
            end,
            "the applied mark past every call of the invocation, at its end",
        ),
    ] {
        set_store(&host, &before, mark)?;
        let got = texts(&stored(&host)?);
        ensure!(
            got == want,
            "with {what} (mark {mark} of {size}), the next open must catch the store up from the \
             ledger to {want:?}: it holds {got:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checkpoints.

/// `body` signed as a note by the host's own key.
fn signed_note(signer: &super::behaviour::Signer, body: &str) -> String {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    let signature = signer.key.sign(body.as_bytes());
    let signed = [&signer.id[..], &signature.to_bytes()[..]].concat();
    format!(
        "{body}\n\u{2014} {} {}\n",
        signer.name,
        base64::engine::general_purpose::STANDARD.encode(signed)
    )
}

fn checkpoint_bodies_parsed_strictly(target: &Target) -> Result<(), Failure> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let host = guest_host(target, OPEN)?;
    kv_ok(&host, "set=a=1")?;
    let key = super::published_key(&host)?;
    let note = host.ok(&["log", "checkpoint"])?;
    let cp = crate::crypto::checkpoint(&note, &key)
        .map_err(|e| failed(format!("log checkpoint: {e}")))?;
    let signer = super::behaviour::Signer::of(&host)?;
    let key_text = host.ok(&["key", "show"])?.trim().to_owned();
    let (origin, size, root) = (cp.origin.clone(), cp.size, b64.encode(cp.root));
    let pin = |name: &str, body: &str| -> Result<Run, Failure> {
        let path = host.file(name, signed_note(&signer, body).as_bytes())?;
        host.run(&[
            "log",
            "verify",
            "--key",
            &key_text,
            "--checkpoint",
            &super::s(&path),
        ])
    };
    // The same checkpoint, signed again by the suite: held by the log, so accepted.
    let honest = pin("honest.note", &format!("{origin}\n{size}\n{root}\n"))?;
    ensure!(
        honest.code == 0,
        "the ledger's own checkpoint, signed again with its key, must verify as pinned: exit \
         {}: {}",
        honest.code,
        excerpt(&format!("{}{}", honest.stdout, honest.stderr))
    );
    let short = b64.encode(&cp.root[..31]);
    let long = b64.encode([&cp.root[..], &[0u8][..]].concat());
    for (name, body, what) in [
        (
            "plus.note",
            format!("{origin}\n+{size}\n{root}\n"),
            "a tree size with a sign",
        ),
        (
            "zero.note",
            format!("{origin}\n0{size}\n{root}\n"),
            "a tree size with a leading zero",
        ),
        (
            "empty-origin.note",
            format!("\n{size}\n{root}\n"),
            "an empty origin",
        ),
        (
            "short-root.note",
            format!("{origin}\n{size}\n{short}\n"),
            "a root of 31 bytes",
        ),
        (
            "long-root.note",
            format!("{origin}\n{size}\n{long}\n"),
            "a root of 33 bytes",
        ),
        (
            "text-root.note",
            format!("{origin}\n{size}\nnot base64!\n"),
            "a root that is not base64",
        ),
    ] {
        let run = pin(name, &body)?;
        ensure!(
            run.code != 0,
            "a pinned checkpoint with {what} must be refused ({body:?}); `log verify` exited 0: {}",
            excerpt(&run.stdout)
        );
    }
    Ok(())
}

fn checkpoints_once_per_batch_over_the_tree(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let mut roots = Vec::new();
    let receipt = |run: &Run| -> Result<Json, Failure> { Ok(run.json()?["receipt"].clone()) };
    for text in ["one", "two", "\u{1}probe:logs:3", "three"] {
        let run = host.invoke("echo", &json!({ "text": text }), &["--json"])?;
        run.expect(0, "invoke conformance echo")?;
        roots.push(receipt(&run)?);
    }
    // One invocation of many entries: 60 recorded log calls.
    let run = host.invoke(
        "echo",
        &json!({ "text": "\u{1}probe:logs:60" }),
        &["--json"],
    )?;
    run.expect(0, "invoke conformance echo (60 log calls)")?;
    let many = receipt(&run)?;
    roots.push(many.clone());
    kv_ok(&host, "set=a=1")?;
    let path = host.files.path().join("ledger.fcl");
    host.ok(&["log", "export", &super::s(&path)])?;
    let export = crate::format::parse_export(&path)?;
    let key = super::published_key(&host)?;
    let n = export.entries.len();
    // The root at every size a checkpoint or a receipt names: RFC 6962 over the entries' bytes.
    let mut sizes = Vec::new();
    for (i, note) in export.checkpoints.iter().enumerate() {
        let cp = crate::crypto::checkpoint(&String::from_utf8_lossy(note), &key)
            .map_err(|e| failed(format!("checkpoint {i} of the export: {e}")))?;
        ensure!(
            cp.size as usize <= n,
            "checkpoint {i} claims {} entries of {n}",
            cp.size
        );
        let want = super::behaviour::merkle_root(&export.entries[..cp.size as usize]);
        ensure!(
            cp.root == want,
            "checkpoint {i}'s root at size {} must be RFC 6962's MTH of the first {} entries: \
             {} where {} is",
            cp.size,
            cp.size,
            super::hex(&cp.root),
            super::hex(&want)
        );
        sizes.push(cp.size);
    }
    for r in &roots {
        let (Some(size), Some(root)) = (r["tree_size"].as_u64(), r["root"].as_str()) else {
            return Err(failed(format!("a receipt lacks tree_size or root: {r}")));
        };
        let want = super::hex(&super::behaviour::merkle_root(
            &export.entries[..(size as usize).min(n)],
        ));
        ensure!(
            root == want,
            "the receipt's root at size {size} must be RFC 6962's MTH: {root} where {want} is"
        );
    }
    ensure!(
        sizes.windows(2).all(|w| w[0] < w[1]) && sizes.last() == Some(&(n as u64)),
        "checkpoints must name increasing sizes up to the ledger's {n}: {sizes:?}"
    );
    // Checkpoints once per batch: the 60-call invocation's entries are one written-ahead start
    // and one final batch, so at most two checkpoints end inside its entries.
    let indexes: Vec<u64> = many["indexes"]
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_u64).collect())
        .unwrap_or_default();
    let (Some(first), Some(last)) = (indexes.first(), indexes.last()) else {
        return Err(failed(format!("the receipt names no indexes: {many}")));
    };
    ensure!(
        last - first > 50,
        "60 log calls must record over 50 entries: the receipt names {first}..{last}"
    );
    let inside = sizes
        .iter()
        .filter(|s| **s > *first && **s <= last + 1)
        .count();
    ensure!(
        inside <= 2,
        "the invocation's {} entries were appended in at most two batches, so at most two \
         checkpoints may end inside them; {inside} do: checkpoints are not signed once per batch",
        last - first + 1
    );
    ensure!(
        sizes.len() < n / 4,
        "{} checkpoints over {n} entries: checkpoints must be signed once per batch, not once \
         per entry",
        sizes.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Encoding versions: the golden files of specification 30.

macro_rules! golden {
    ($v:literal, $($name:literal),+ $(,)?) => {
        &[$(($name, include_bytes!(concat!(
            "../../../ledger/tests/golden/", $v, "/", $name, ".bin"
        )) as &[u8])),+]
    };
}

/// Golden files: each name and its bytes (one entry).
type Golden = &'static [(&'static str, &'static [u8])];

/// Version 3's golden files (the current encoding), each one entry.
const GOLDEN_V3: Golden = golden!(
    "v3",
    "blob-value",
    "decision",
    "host-call-fault",
    "host-call-intent",
    "host-call",
    "invocation-end",
    "invocation-start",
    "policy-change",
    "token-change",
    "trap",
);

/// The earlier versions' golden files, which a current reader refuses by their version.
const GOLDEN_EARLIER: &[(&str, Golden)] = &[
    (
        "v1",
        golden!(
            "v1",
            "blob-value",
            "decision",
            "host-call-fault",
            "host-call-intent",
            "host-call",
            "invocation-end",
            "invocation-start",
            "key-change",
            "policy-change",
            "trap",
        ),
    ),
    (
        "v2",
        golden!(
            "v2",
            "blob-value",
            "decision",
            "host-call-fault",
            "host-call-intent",
            "host-call",
            "invocation-end",
            "invocation-start",
            "key-change",
            "policy-change",
            "token-change",
            "trap",
        ),
    ),
];

fn entry_versions_current_read_earlier_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    kv_ok(&host, "set=a=1 get=a del=a")?;
    let (run, _) = kv_probe(&host, "trap", &[])?;
    ensure!(run.code != 0, "a trapping invocation must fail");
    let path = host.files.path().join("honest.fcl");
    host.ok(&["log", "export", &super::s(&path)])?;
    let honest = crate::format::parse_export(&path)?;
    for (i, e) in honest.entries.iter().enumerate() {
        ensure!(
            e.first() == Some(&3),
            "entry {i} must be written with encoding version 3 as its first byte: it begins \
             with {:?}",
            e.first()
        );
    }
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let signer = super::behaviour::Signer::of(&host)?;
    let verify = |name: &str, entries: Vec<Vec<u8>>| -> Result<Run, Failure> {
        let export = signer.export(&honest, entries);
        let path = host.file(name, &export.write())?;
        host.run(&["log", "verify", &super::s(&path), "--key", &key])
    };
    // Each current golden file, alone in a log signed by the host's key, is read as it is.
    let mut bad = Vec::new();
    for (name, bytes) in GOLDEN_V3 {
        let run = verify(&format!("v3-{name}.fcl"), vec![bytes.to_vec()])?;
        // The sample start spends approval 7, asked for nowhere in a log of it alone: read as
        // its sample, it is refused for that, not for its bytes.
        let spends =
            *name == "invocation-start" && run.code == 8 && run.stderr.contains("approval 7");
        if run.code != 0 && !spends {
            bad.push(format!(
                "{name}: exit {}: {}",
                run.code,
                excerpt(&run.stderr)
            ));
        }
    }
    ensure!(
        bad.is_empty(),
        "a log of one of version 3's golden entries must verify (the entry decodes and \
         encodes back to the same bytes): {}",
        bad.join("; ")
    );
    // Each earlier golden file is refused, by its version.
    for (version, files) in GOLDEN_EARLIER {
        for (name, bytes) in *files {
            let run = verify(&format!("{version}-{name}.fcl"), vec![bytes.to_vec()])?;
            let said = format!("{}{}", run.stdout, run.stderr);
            ensure!(
                run.code == 8 && said.to_lowercase().contains("version"),
                "a log of {version}'s golden {name} entry must be refused by its version (exit 8 \
                 naming the version): exit {}: {}",
                run.code,
                excerpt(&said)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Blob bytes put back.

fn blob_bytes_put_back_checked(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // A value of 20000 bytes: recorded by digest, its bytes beside the ledger.
    kv_ok(&host, "big=blob=20000 set=small=1")?;
    let value = vec![b'x'; 20000];
    let digest = super::hex(&super::sha256(&value));
    let path = host.data.path().join("ledger/blobs").join(&digest);
    let bytes = super::read(&path)?;
    ensure!(
        bytes == value,
        "the blob file named by the value's SHA-256 must hold the value's bytes"
    );
    let mut flipped = bytes.clone();
    flipped[100] ^= 0x01;
    let mut longer = bytes.clone();
    longer.push(b'x');
    for (what, damaged) in [
        ("bytes whose SHA-256 differs", Some(flipped)),
        (
            "bytes shorter than the reference",
            Some(bytes[..10000].to_vec()),
        ),
        ("bytes longer than the reference", Some(longer)),
        ("no bytes (the blob missing)", None),
    ] {
        match &damaged {
            Some(d) => super::write(&path, d)?,
            None => std::fs::remove_file(&path)
                .map_err(|e| failed(format!("cannot remove the blob: {e}")))?,
        }
        let run = host.run(&["log", "reindex"])?;
        ensure!(
            run.code != 0,
            "rebuilding the store from the ledger must fail when the blob of a value holds {what}: \
             `log reindex` exited 0: {}",
            excerpt(&run.stdout)
        );
        ensure!(
            run.stderr.contains(&digest),
            "the failure to put back a blob holding {what} must name its digest {digest}: {}",
            excerpt(&run.stderr)
        );
        // A store lost meanwhile cannot come back without the bytes either.
        let kv = host.data.path().join("kv");
        let _ = std::fs::remove_dir_all(&kv);
        let run = host.run(&["kv", "list", "--json"])?;
        ensure!(
            run.code != 0 && run.stderr.contains(&digest),
            "opening a lost store whose ledger's blob holds {what} must fail naming the digest \
             {digest}: exit {}: {}",
            run.code,
            excerpt(&run.stderr)
        );
        super::write(&path, &bytes)?;
    }
    host.ok(&["log", "reindex"])?;
    let store = stored(&host)?;
    ensure!(
        store.get(&("conformance".to_owned(), "blob".to_owned())) == Some(&value),
        "with the blob's bytes back, the rebuilt store must hold the value whole"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// An invocation whose batches another invocation's entries separate.

fn catch_up_across_an_invocations_batches(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case reads the data directory of a server it started itself".into(),
        ));
    }
    let host = guest_host(target, OPEN)?;
    // The guest again as `writer`, whose manifest also requests /data writable (<data
    // dir>/shared): its file write is an effectful call, its intent appended before it runs.
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(format!("cannot create shared: {e}")))?;
    super::write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    let manifest = crate::GUEST_MANIFEST.replace("name = \"conformance\"", "name = \"writer\"")
        + "paths = [{ path = \"/data\", write = true }]\n";
    let wasm = host.file("writer.wasm", crate::GUEST)?;
    let manifest = host.file("writer.toml", manifest.as_bytes())?;
    host.ok(&[
        "capability",
        "add",
        &super::s(&wasm),
        "--manifest",
        &super::s(&manifest),
    ])?;
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let server = Server::start(host, token)?;
    let post = |body: Json| invoke_in_background(&server, body);
    let mut burn = 50_000_000u64;
    let mut keys = Vec::new();
    let mut done = false;
    for _ in 0..4 {
        // A: writes, a file write (its entries so far appended), a long run, more writes.
        let mut a_body = probe_body(
            &format!("set=a{burn}=A file set=a{burn}-after=A2 burn={burn}"),
            9_000_000_000,
        );
        a_body["capability"] = json!("writer");
        let a = post(a_body);
        std::thread::sleep(Duration::from_millis(150));
        let b = post(probe_body(&format!("set=b{burn}=B"), 1_000_000));
        let b = b.join().map_err(|_| failed("a thread panicked"))?;
        let a = a.join().map_err(|_| failed("a thread panicked"))?;
        for (name, answer) in [("A", &a), ("B", &b)] {
            ensure!(
                matches!(answer, Ok((200, _))),
                "invocation {name} was not answered 200: {answer:?}"
            );
        }
        keys.push(burn);
        let last = |answer: &Result<(u16, String), String>| {
            answer
                .as_ref()
                .ok()
                .and_then(|(_, t)| serde_json::from_str::<Json>(t).ok())
                .and_then(|j| j["receipt"]["entries"][1].as_u64())
                .unwrap_or(0)
        };
        if last(&b) < last(&a) {
            done = true;
            break;
        }
        burn *= 2;
    }
    let mut server = server;
    let host = server
        .host
        .take()
        .ok_or_else(|| failed("no data directory"))?;
    drop(server);
    ensure!(done, "B never ended while A still ran");
    let burn = *keys.last().unwrap_or(&0);
    let entries = host.entries()?;
    let starts: Vec<(u64, String)> = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "invocation-start")
        .filter_map(|e| {
            let text = e["args"].as_array()?.iter().find(|a| a[0] == "text")?[1]["string"]
                .as_str()?
                .to_owned();
            Some((e["invocation"].as_u64()?, text))
        })
        .collect();
    let number = |ops: &str| {
        starts
            .iter()
            .find(|(_, t)| t.ends_with(ops))
            .map(|(n, _)| *n)
    };
    let (Some(na), Some(nb)) = (
        number(&format!(
            "set=a{burn}=A file set=a{burn}-after=A2 burn={burn}"
        )),
        number(&format!("set=b{burn}=B")),
    ) else {
        return Err(failed(
            "the two concurrent invocations are not both recorded",
        ));
    };
    let own = |n: u64| -> Vec<u64> {
        entries
            .iter()
            .filter(|e| e["entry"]["invocation"] == n)
            .filter_map(|e| e["index"].as_u64())
            .collect()
    };
    let (a_at, b_at) = (own(na), own(nb));
    let (Some(b_first), Some(b_last), Some(a_last)) = (b_at.first(), b_at.last(), a_at.last())
    else {
        return Err(failed("an invocation has no entries"));
    };
    let a_set = entries
        .iter()
        .find(|e| {
            e["entry"]["invocation"] == na
                && e["entry"]["type"] == "host-call"
                && e["entry"]["function"] == "[method]bucket.set"
        })
        .and_then(|e| e["index"].as_u64())
        .unwrap_or(u64::MAX);
    ensure!(
        a_set < *b_first && b_last < a_last,
        "the case needs A's first writes appended before B and A ending after B (A's file \
         write appends its entries so far before it runs): A's first set at {a_set}, B at \
         {b_first}..{b_last}, A ending at {a_last}"
    );
    let live = texts(&stored(&host)?);
    let (ka, ka2, kb) = (
        format!("a{burn}"),
        format!("a{burn}-after"),
        format!("b{burn}"),
    );
    ensure!(
        live.get(&ka).map(String::as_str) == Some("A")
            && live.get(&ka2).map(String::as_str) == Some("A2")
            && live.get(&kb).map(String::as_str) == Some("B"),
        "the live store must hold A's and B's writes: {live:?}"
    );
    // The store as a host left it after applying B, A still running: B applied, the mark past B.
    let mut before: Vec<(String, String)> = live
        .iter()
        .filter(|(k, _)| **k != ka && **k != ka2)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    before.sort();
    let pairs: Vec<(&str, &str)> = before
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    set_store(&host, &pairs, b_last + 1)?;
    let got = texts(&stored(&host)?);
    ensure!(
        got == live,
        "with the applied mark past B's end, inside A (whose first batch, with its open and \
         first set, came before B), the next open must apply A's writes, read through the index \
         from both of A's batches: the store holds {got:?} where the ledger's view is {live:?}"
    );
    host.ok(&["log", "reindex"])?;
    let rebuilt = texts(&stored(&host)?);
    ensure!(
        rebuilt == live,
        "`log reindex` must rebuild {live:?}: {rebuilt:?}"
    );
    // The same catch-up with the derived index unusable (every file overwritten) or lost: it
    // is rebuilt from the segments, not read.
    let index = host.data.path().join("ledger/index");
    for lost in [false, true] {
        if lost {
            let _ = std::fs::remove_dir_all(&index);
        } else {
            damage(&index)?;
        }
        set_store(&host, &pairs, b_last + 1)?;
        let got = texts(&stored(&host)?);
        ensure!(
            got == live,
            "with the index {}, catching up from the mark inside A must still apply A's writes \
             (the index rebuilt from the segments): the store holds {got:?} where the ledger's \
             view is {live:?}",
            if lost { "lost" } else { "damaged" }
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Segment rotation (specification 24's segment format).

/// The default segment size.
const SEGMENT_SIZE: u64 = 64 << 20;

/// One segment file: its first index and its records (kind, payload length).
fn segment_records(bytes: &[u8]) -> Result<(u64, Vec<(u8, usize)>), String> {
    let mut c = crate::format::Cursor { bytes, at: 0 };
    if c.take(8)? != b"FCLSEG\x00\x01" {
        return Err("the segment does not begin with FCLSEG 00 01".into());
    }
    let first = c.u64()?;
    let mut records = Vec::new();
    while c.at < bytes.len() {
        let len = c.u32()? as usize;
        let kind = c.u8()?;
        c.take(8)?;
        c.take(len)?;
        records.push((kind, len));
    }
    Ok((first, records))
}

fn segments_rotate_between_batches(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // Invocations of 16 MiB of entries each (an 8 MiB text in, the same out), five of them:
    // past one 64 MiB segment.
    let mut last = Json::Null;
    for i in 0..5 {
        let text = format!("{i:02}{}", "r".repeat((8 << 20) - 2));
        let args = host.file("big.json", json!({ "text": text }).to_string().as_bytes())?;
        let arg = format!("@{}", super::s(&args));
        // Only the last answer is read (its receipt): JSON of 8 MiB is slow to parse.
        let mut args = vec!["invoke", "conformance", "echo", "--args", &arg];
        if i == 4 {
            args.push("--json");
        }
        let run = host.run(&args)?;
        run.expect(0, "invoke conformance echo of 8 MiB")?;
        if i == 4 {
            last = run.json()?["receipt"].clone();
        }
    }
    let dir = host.data.path().join("ledger/segments");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| failed(format!("cannot read {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    ensure!(
        names.len() >= 2,
        "over 80 MiB of entries must fill more than one segment of 64 MiB: the ledger holds \
         {names:?}"
    );
    let mut entries = 0u64;
    let mut previous: Option<u64> = None;
    for (k, name) in names.iter().enumerate() {
        ensure!(
            *name == format!("{k:08}.seg"),
            "segments must be numbered contiguously from 0: {names:?}"
        );
        let bytes = super::read(&dir.join(name))?;
        let (first, records) =
            segment_records(&bytes).map_err(|e| failed(format!("{name}: {e}")))?;
        ensure!(
            first == entries,
            "{name}'s header must name the number of entries before it ({entries}): it names \
             {first}"
        );
        ensure!(
            records.last().map(|r| r.0) == Some(0x02),
            "{name} must end with a commit record: a batch never spans two segments"
        );
        // The first batch of this segment, in bytes.
        let first_batch: u64 = records
            .iter()
            .position(|r| r.0 == 0x02)
            .map(|end| records[..=end].iter().map(|r| 13 + r.1 as u64).sum())
            .unwrap_or(0);
        if let Some(size) = previous {
            ensure!(
                size + first_batch > SEGMENT_SIZE,
                "a new segment must be started only when the next batch would pass the segment \
                 size: the previous one holds {size} bytes and {name}'s first batch {first_batch}"
            );
        }
        let batches = records.iter().filter(|r| r.0 == 0x02).count();
        ensure!(
            bytes.len() as u64 <= SEGMENT_SIZE || batches == 1,
            "{name} holds {} bytes in {batches} batches: past the segment size with more than one \
             batch",
            bytes.len()
        );
        entries += records.iter().filter(|r| r.0 == 0x00).count() as u64;
        previous = Some(bytes.len() as u64);
    }
    // Reopened: the same entries and root, and it verifies.
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let run = host.run(&["log", "verify", "--key", &key])?;
    ensure!(
        run.code == 0,
        "the rotated ledger must reopen and verify: exit {}: {}",
        run.code,
        excerpt(&run.stderr)
    );
    let note = host.ok(&["log", "checkpoint"])?;
    let cp = crate::crypto::checkpoint(&note, &super::published_key(&host)?)
        .map_err(|e| failed(format!("log checkpoint: {e}")))?;
    ensure!(
        Some(cp.size) == last["tree_size"].as_u64()
            && Some(super::hex(&cp.root).as_str()) == last["root"].as_str()
            && cp.size == entries,
        "the reopened ledger must hold the same {entries} entries and root as the last receipt \
         named ({last}): its checkpoint names {} entries with root {}",
        cp.size,
        super::hex(&cp.root)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sealed segments held read-only (specification 44).

/// The access mode (`flags & O_ACCMODE`, 0 read-only) of every descriptor process `pid` holds
/// open on a file of `segments`, by file name, sorted; `None` without a Linux `/proc`.
fn segment_descriptors(pid: u32, segments: &Path) -> Result<Option<Vec<(String, u32)>>, Failure> {
    let fds = Path::new("/proc").join(pid.to_string()).join("fd");
    let Ok(listing) = std::fs::read_dir(&fds) else {
        return Ok(None);
    };
    let segments = segments
        .canonicalize()
        .map_err(|e| failed(format!("{}: {e}", segments.display())))?;
    let mut modes = Vec::new();
    for fd in listing.flatten() {
        let Ok(file) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if file.parent() != Some(segments.as_path()) {
            continue;
        }
        let info_path = fds.with_file_name("fdinfo").join(fd.file_name());
        let Ok(info) = std::fs::read_to_string(&info_path) else {
            // Closed since it was listed.
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .ok_or_else(|| {
                failed(format!(
                    "{} names no octal flags: {info:?}",
                    info_path.display()
                ))
            })?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        modes.push((name, flags & 3));
    }
    modes.sort();
    Ok(Some(modes))
}

/// Checks that the server holds no sealed segment of `segments` open for writing, and the
/// last one (of `count`) open for writing.
fn only_last_segment_writable(
    server: &Server,
    segments: &Path,
    count: usize,
    when: &str,
) -> Result<(), Failure> {
    let pid = server
        .pid()
        .ok_or_else(|| failed("the suite started the server, but has no process id for it"))?;
    let Some(modes) = segment_descriptors(pid, segments)? else {
        return Err(Failure::NotApplicable(
            "the case reads a server's open files from /proc/<pid>/fd and fdinfo, which this system has not".into(),
        ));
    };
    let last = format!("{:08}.seg", count - 1);
    for (name, mode) in &modes {
        ensure!(
            *name == last || *mode == 0,
            "{when}, the server holds sealed segment {name} open for writing (access mode {mode}; only the last segment, {last}, may be): {modes:?}"
        );
    }
    ensure!(
        modes.iter().any(|(name, mode)| *name == last && *mode != 0),
        "{when}, the server must hold the last segment {last} open for writing: it holds {modes:?}"
    );
    Ok(())
}

/// The segment files of a ledger, sorted.
fn segment_names(segments: &Path) -> Result<Vec<String>, Failure> {
    let mut names: Vec<String> = std::fs::read_dir(segments)
        .map_err(|e| failed(format!("cannot read {}: {e}", segments.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn sealed_segments_read_only(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case reads the open files of a server it started itself".into(),
        ));
    }
    if !Path::new("/proc/self/fdinfo").is_dir() {
        return Err(Failure::NotApplicable(
            "the case reads a server's open files from /proc/<pid>/fd and fdinfo, which this system has not".into(),
        ));
    }
    let host = guest_host(target, OPEN)?;
    // Requests of 8 MiB: each invocation records 16 MiB (the text in, the same out).
    super::write(
        &host.data.path().join("femtoclaw.toml"),
        b"[server]\nmax_body_bytes = 16777216\n",
    )?;
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let segments = host.data.path().join("ledger/segments");
    let mut server = Server::start(host, token.clone())?;
    only_last_segment_writable(&server, &segments, 1, "before any rotation")?;
    // Five of them: past one 64 MiB segment, rotated while the server runs.
    for i in 0..5 {
        let text = format!("{i:02}{}", "s".repeat((8 << 20) - 2));
        let body =
            json!({ "capability": "conformance", "function": "echo", "args": { "text": text } });
        let response = Server::client()
            .post(format!("{}/v1/invoke", server.url))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| failed(format!("POST /v1/invoke of 8 MiB: {e}")))?;
        ensure!(
            response.status().as_u16() == 200,
            "POST /v1/invoke of an 8 MiB echo must answer 200: {}",
            response.status()
        );
    }
    let names = segment_names(&segments)?;
    ensure!(
        names.len() >= 2,
        "over 80 MiB of entries must fill more than one segment of 64 MiB: the ledger holds {names:?}"
    );
    only_last_segment_writable(
        &server,
        &segments,
        names.len(),
        "after a rotation while serving",
    )?;
    // Restarted on the rotated ledger: the sealed segments are opened read-only.
    let host = server
        .host
        .take()
        .ok_or_else(|| failed("the suite started the server, but holds no data directory"))?;
    drop(server);
    let server = Server::start(host, token)?;
    only_last_segment_writable(
        &server,
        &segments,
        names.len(),
        "after reopening the rotated ledger",
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Concurrent appends coalesced into shared batches.

fn concurrent_appends_coalesced(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case reads the data directory of a server it started itself".into(),
        ));
    }
    // Under the default policy the suite's guest may not be invoked: each call is one quick
    // append (its start, the denial, its end), so many of them arrive at the writer together.
    let host = target.host()?;
    host.install()?;
    super::write(
        &host.data.path().join("femtoclaw.toml"),
        b"[server]\nconcurrency = 32\nper_principal = 32\nqueue = 256\n",
    )?;
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let server = Server::start(host, token)?;
    let body = json!({ "capability": "conformance", "function": "echo", "args": { "text": "x" } });
    let mut shared = false;
    let mut rounds = 0;
    let mut server = server;
    while !shared && rounds < 5 {
        rounds += 1;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (url, token, body) = (server.url.clone(), server.token.clone(), body.clone());
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    Server::client()
                        .post(format!("{url}/v1/invoke"))
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            let status = t.join().map_err(|_| failed("a thread panicked"))?;
            ensure!(
                status == Ok(403),
                "an invocation the default policy denies must be answered 403: {status:?}"
            );
        }
        // The checkpoints (one per batch) so far: whether a batch held several appends.
        let host = server
            .host
            .take()
            .ok_or_else(|| failed("no data directory"))?;
        drop(server);
        let (intervals, entries) = batches(&host)?;
        shared = intervals.iter().any(|(from, to)| {
            let mut owners: Vec<u64> = entries[*from as usize..*to as usize]
                .iter()
                .filter_map(|e| e["entry"]["invocation"].as_u64())
                .collect();
            owners.dedup();
            owners.len() >= 2
        });
        // Every append holds exactly its entries: each invocation's start, decision and end
        // are consecutive, in one batch.
        let mut seen = std::collections::BTreeSet::new();
        let mut at = 0;
        while at < entries.len() {
            let e = &entries[at]["entry"];
            let Some(n) = e["invocation"]
                .as_u64()
                .filter(|_| e["type"] == "invocation-start")
            else {
                at += 1;
                continue;
            };
            ensure!(seen.insert(n), "invocation {n} starts twice");
            let kinds: Vec<&str> = entries[at..(at + 3).min(entries.len())]
                .iter()
                .filter(|x| x["entry"]["invocation"] == n)
                .filter_map(|x| x["entry"]["type"].as_str())
                .collect();
            ensure!(
                kinds == ["invocation-start", "decision", "invocation-end"],
                "the append of denied invocation {n} must hold exactly its start, decision and \
                 end at consecutive indexes from {at}: {kinds:?}"
            );
            let (from, to) = (at as u64, at as u64 + 3);
            ensure!(
                intervals.iter().any(|(a, b)| *a <= from && to <= *b),
                "invocation {n}'s append ({from}..{to}) must lie in one batch: the batches are \
                 {intervals:?}"
            );
            at += 3;
        }
        if !shared && rounds < 5 {
            let token = host
                .ok(&[
                    "token",
                    "create",
                    "--principal",
                    "user:local",
                    "--name",
                    &format!("r{rounds}"),
                ])?
                .trim()
                .to_owned();
            server = Server::start(host, token)?;
        } else {
            ensure!(
                shared,
                "32 appends arriving together, {rounds} times, were never coalesced: every batch \
                 (checkpoint) holds one invocation's entries"
            );
            return Ok(());
        }
    }
    Ok(())
}

/// A range of ledger indexes, end excluded.
type Span = (u64, u64);

/// The batches of a data directory's ledger (each checkpoint of its export ends one), as
/// index ranges, and its entries.
fn batches(host: &Host) -> Result<(Vec<Span>, Vec<Json>), Failure> {
    let path = host.files.path().join("batches.fcl");
    let _ = std::fs::remove_file(&path);
    host.ok(&["log", "export", &super::s(&path)])?;
    let export = crate::format::parse_export(&path)?;
    let mut intervals = Vec::new();
    let mut from = 0;
    for size in export.sizes() {
        intervals.push((from, size));
        from = size;
    }
    Ok((intervals, host.entries()?))
}

/// `POST /v1/invoke` of `body` on a thread of its own: the status and the body's text.
fn invoke_in_background(
    server: &Server,
    body: Json,
) -> std::thread::JoinHandle<Result<(u16, String), String>> {
    let (url, token) = (server.url.clone(), server.token.clone());
    std::thread::spawn(move || {
        let response = Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| e.to_string())?;
        Ok((status, text))
    })
}
