//! Cases of the ledger's integrity: the Merkle tree and the checkpoints a ledger commits, the
//! batches each transition of the formal execution model appends, signatures and keys checked
//! strictly, the decoder's refusals, human approvals, key hand-overs, replay's divergences and
//! consistency proofs. Exports are forged here the way an attacker holding a copy of the data
//! directory could: entries changed, the tree recomputed and the checkpoints signed again with
//! the key file's seed (specification 37 defines the file), so that only the property under test
//! stands between the forgery and acceptance.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::ledger::verify_file;
use super::{OPEN, failed, guest_host, hex, kinds, published_key, read, s, sha256, write};
use crate::format::{Cursor, Export, encode, parse_export};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.integrity.checkpoints-are-the-tree",
        verifies: &[
            "FC-FORMAL-5001",
            "FC-FORMAL-5002",
            "FC-FORMAL-5003",
            "FC-FORMAL-5007",
            "FC-FORMAL-5008",
            "FC-FORMAL-5015",
            "FC-FORMAL-5016",
            "FC-FORMAL-5019",
            "FC-CRYPTO-3606",
            "FC-CRYPTO-3706",
            "FC-DIST-4202",
            "FC-MEM-4403",
        ],
        run: checkpoints_are_the_tree,
    },
    Case {
        name: "cli.integrity.invocation-batches",
        verifies: &[
            "FC-FORMAL-5004",
            "FC-FORMAL-5005",
            "FC-FORMAL-5006",
            "FC-FORMAL-5009",
            "FC-MEM-2411",
        ],
        run: invocation_batches,
    },
    Case {
        name: "cli.integrity.signatures-and-keys",
        verifies: &[
            "FC-CRYPTO-4501",
            "FC-CRYPTO-4502",
            "FC-ABI-4906",
            "FC-CRYPTO-3621",
            "FC-CRYPTO-3611",
            "FC-CRYPTO-3709",
        ],
        run: signatures_and_keys,
    },
    Case {
        name: "cli.integrity.decoder-refusals",
        verifies: &[
            "FC-MEM-2314",
            "FC-MEM-2316",
            "FC-MEM-2317",
            "FC-MEM-2318",
            "FC-MEM-2322",
            "FC-ABI-4907",
        ],
        run: decoder_refusals,
    },
    Case {
        name: "cli.integrity.key-hand-over-and-origin",
        verifies: &["FC-CRYPTO-3617", "FC-CRYPTO-3619"],
        run: key_hand_over_and_origin,
    },
    Case {
        name: "cli.integrity.replay-divergences",
        verifies: &[
            "FC-FORMAL-5014",
            "FC-CRYPTO-3812",
            "FC-CRYPTO-3817",
            "FC-CRYPTO-3818",
            "FC-CRYPTO-3820",
            "FC-CRYPTO-3822",
            "FC-CRYPTO-3823",
        ],
        run: replay_divergences,
    },
    Case {
        name: "http.integrity.consistency-proofs",
        verifies: &["FC-DIST-4201", "FC-CRYPTO-3604"],
        run: consistency_proofs,
    },
    Case {
        name: "cli.integrity.approval-forgeries",
        verifies: &["FC-CRYPTO-3620"],
        run: approval_forgeries,
    },
    Case {
        name: "cli.integrity.kv-writes-of-returned-invocations",
        verifies: &["FC-FORMAL-5010"],
        run: kv_writes_of_returned_invocations,
    },
    Case {
        name: "cli.integrity.interrupted-invocations-ended",
        verifies: &["FC-FORMAL-5017", "FC-MEM-4402"],
        run: interrupted_invocations_ended,
    },
    Case {
        name: "cli.integrity.acknowledged-entries-survive-a-kill",
        verifies: &["FC-MEM-2403", "FC-FORMAL-5013", "FC-MEM-4401"],
        run: acknowledged_entries_survive_a_kill,
    },
    Case {
        name: "cli.integrity.inclusion-probes",
        verifies: &["FC-CRYPTO-3602"],
        run: inclusion_probes,
    },
    Case {
        name: "cli.integrity.pinned-checkpoint-seen-before",
        verifies: &["FC-CRYPTO-4507"],
        run: pinned_checkpoint_seen_before,
    },
    Case {
        name: "cli.integrity.unsigned-checkpoints",
        verifies: &["FC-CRYPTO-3622"],
        run: unsigned_checkpoints,
    },
    Case {
        name: "cli.integrity.host-call-faults",
        verifies: &["FC-MEM-2307", "FC-CRYPTO-3807"],
        run: host_call_faults,
    },
    Case {
        name: "cli.integrity.value-encoding",
        verifies: &["FC-MEM-2304"],
        run: value_encoding,
    },
    Case {
        name: "cli.integrity.what-if-policy",
        verifies: &["FC-CRYPTO-3810"],
        run: what_if_policy,
    },
    Case {
        name: "cli.integrity.effect-after-write-ahead",
        verifies: &["FC-FORMAL-5012"],
        run: effect_after_write_ahead,
    },
    Case {
        name: "cli.integrity.commits-traced",
        verifies: &["FC-MEM-4413"],
        run: commits_traced,
    },
    Case {
        name: "cli.integrity.validator-agrees-with-decoder",
        verifies: &["FC-MEM-2319", "FC-MEM-2315"],
        run: validator_agrees_with_decoder,
    },
];

// ---------------------------------------------------------------------------------------------
// Cases.

fn checkpoints_are_the_tree(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    call(&host, "divide", json!({ "a": 1, "b": 0 }), 5)?;
    let key = key_text(&host)?;
    let pinned = published_key(&host)?;
    let first_path = export(&host, "first.export", &[])?;
    let first = parse_export(&first_path)?;
    let first_segment = read(&segment(&host))?;

    // The key file's seed is the key `key show` publishes, and it signs exactly the
    // checkpoints the host wrote: Ed25519 is deterministic, so a conforming signer (Go's
    // sumdb/note among them) gives these bytes and no others.
    let signer = signer(&host)?;
    let file_text = String::from_utf8_lossy(&read(&key_file(&host))?).into_owned();
    ensure!(
        file_text.trim_end_matches('\n') == signer.private_text(),
        "the key file does not read back to the same private text: {:?}",
        excerpt(&file_text)
    );
    ensure!(
        signer.verifier() == key,
        "the key file's seed gives the verifier key {} where key show prints {key}",
        signer.verifier()
    );

    let check = |export: &Export, what: &str| -> Result<(), Failure> {
        let leaves: Vec<[u8; 32]> = export.entries.iter().map(|e| leaf(e)).collect();
        let mut last = 0;
        for (i, note) in export.checkpoints.iter().enumerate() {
            let note = String::from_utf8_lossy(note);
            let c = crypto::checkpoint(&note, &pinned)
                .map_err(|e| failed(format!("{what}: checkpoint {i}: {e}")))?;
            ensure!(
                c.size > last && c.size as usize <= leaves.len(),
                "{what}: checkpoint {i} has size {} after {last} (of {} entries): sizes must strictly increase",
                c.size,
                leaves.len()
            );
            last = c.size;
            ensure!(
                c.root == mth(&leaves[..c.size as usize]),
                "{what}: checkpoint {i}'s root is not the RFC 6962 tree hash of the first {} entries",
                c.size
            );
            let split = note.find("\n\n").map_or(note.len(), |at| at + 1);
            let (text, lines) = (&note[..split], &note[split..]);
            ensure!(
                lines == format!("\n{}", signer.line(text)),
                "{what}: checkpoint {i}'s signature is not the Ed25519 signature of its text by the key file's key: {lines:?}"
            );
        }
        ensure!(
            last as usize == leaves.len(),
            "{what}: the last checkpoint covers {last} of {} entries",
            leaves.len()
        );
        Ok(())
    };
    check(&first, "the first export")?;

    // One checkpoint per batch, as the segment's commit records close them: the export's
    // sections are the segment's entries and commit records, in order.
    let recs = records(&first_segment).map_err(failed)?;
    let seg_entries: Vec<Vec<u8>> = recs
        .iter()
        .filter(|(k, _)| *k == 0x00)
        .map(|(_, p)| p.clone())
        .collect();
    let seg_commits: Vec<Vec<u8>> = recs
        .iter()
        .filter(|(k, _)| *k == 0x02)
        .map(|(_, p)| p.clone())
        .collect();
    ensure!(
        seg_entries == first.entries,
        "the export's entry section is not the segment's entries in order ({} exported, {} in the segment)",
        first.entries.len(),
        seg_entries.len()
    );
    ensure!(
        seg_commits == first.checkpoints,
        "the export's checkpoint section is not the segment's commit records in order ({} exported, {} batches)",
        first.checkpoints.len(),
        seg_commits.len()
    );
    let shown = host.entries()?;
    ensure!(
        shown.len() == first.entries.len(),
        "log show lists {} entries; the export holds {}",
        shown.len(),
        first.entries.len()
    );
    // The first entry is the first key's change, alone in its batch.
    let (_, first_size, _) = body(&String::from_utf8_lossy(&first.checkpoints[0]))?;
    ensure!(
        shown[0]["entry"]["type"] == "key-change"
            && shown[0]["entry"]["old_key_id"].is_null()
            && first.entries[0].get(1) == Some(&7)
            && first_size == 1,
        "the ledger must begin with a key-change without an old key id, in a batch of its own (first checkpoint size {first_size}): {}",
        excerpt(&shown[0].to_string())
    );

    // log verify --key and log checkpoint report the state.
    let run = host.run(&["log", "verify", "--key", &key])?;
    run.expect(0, "log verify --key")?;
    let expected = format!(
        "ok: {} entries, {} checkpoints verified",
        first.entries.len(),
        first.checkpoints.len()
    );
    ensure!(
        run.stdout.lines().next() == Some(expected.as_str()),
        "log verify --key printed {:?} where {expected:?} is required",
        excerpt(&run.stdout)
    );
    let latest = host.ok(&["log", "checkpoint"])?;
    ensure!(
        first.checkpoints.last().map(|c| c.as_slice()) == Some(latest.as_bytes()),
        "log checkpoint does not print the last checkpoint byte for byte: {latest:?}"
    );

    // Another party verifies the export offline with the pinned key alone.
    let other = target.host()?;
    let run = verify_file(&other, &first_path, &[&key])?;
    run.expect(0, "log verify of the export on an empty data directory")?;
    ensure!(
        run.stdout.starts_with(&expected),
        "the export verified offline printed {:?} where {expected:?} is required",
        excerpt(&run.stdout)
    );

    // Observations leave the state as it was.
    let components = export(&host, "components.export", &["--with-components"])?;
    let before = state(&host)?;
    host.ok(&["log", "verify", "--key", &key])?;
    host.ok(&["log", "verify"])?;
    export(&host, "again.export", &[])?;
    host.ok(&["log", "checkpoint"])?;
    host.ok(&["log", "show", "--json"])?;
    host.ok(&["log", "prove", "2"])?;
    other.install()?;
    other
        .run(&["replay", &s(&components), "--key", &key])?
        .expect(0, "replay of the export on another data directory")?;
    ensure!(
        state(&host)? == before,
        "an observation (log verify, export, checkpoint, show, prove, or a replay elsewhere) changed the ledger, its head record, policy digest or keys"
    );
    ensure!(
        read(&components).is_ok()
            && parse_export(&host.files.path().join("again.export"))? == first,
        "a second export of the same state differs from the first"
    );

    // Appends only extend: the earlier entries and checkpoints stay byte for byte.
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    call(&host, "recall", json!({ "key": "k" }), 0)?;
    let second = parse_export(&export(&host, "second.export", &[])?)?;
    check(&second, "the second export")?;
    ensure!(
        second.entries.len() > first.entries.len()
            && second.entries.starts_with(&first.entries)
            && second.checkpoints.len() > first.checkpoints.len()
            && second.checkpoints.starts_with(&first.checkpoints),
        "the earlier entries and checkpoints are not a prefix of the later export's"
    );
    let second_segment = read(&segment(&host))?;
    ensure!(
        second_segment.starts_with(&first_segment),
        "the segment was rewritten, not appended to"
    );

    // An entry record no commit record closes is never delivered.
    let count = second.entries.len();
    let mut torn = second_segment.clone();
    torn.extend_from_slice(&record(0x00, &second.entries[count - 1]));
    write(&segment(&host), &torn)?;
    let shown = host.entries()?;
    ensure!(
        shown.len() == count,
        "log show delivered {} entries; {count} are committed and one more has no commit record",
        shown.len()
    );
    write(&segment(&host), &second_segment)?;

    // A changed byte of a committed entry, with its record check made good again, fails
    // verification of the state.
    let recs = records(&second_segment).map_err(failed)?;
    let mut at = 16;
    let mut target_at = None;
    let mut seen = 0;
    for (kind, payload) in &recs {
        if *kind == 0x00 {
            seen += 1;
            if seen == 3 {
                target_at = Some((at, payload.clone()));
            }
        }
        at += 13 + payload.len();
    }
    let Some((offset, mut payload)) = target_at else {
        return Err(failed("the segment holds fewer than three entries"));
    };
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    let mut damaged = second_segment[..offset].to_vec();
    damaged.extend_from_slice(&record(0x00, &payload));
    damaged.extend_from_slice(&second_segment[offset + 13 + payload.len()..]);
    write(&segment(&host), &damaged)?;
    let run = host.run(&["log", "verify", "--key", &key])?;
    write(&segment(&host), &second_segment)?;
    run.expect(8, "log verify with a changed byte in committed entry 2")?;
    ensure!(
        run.stderr.contains("ledger verification failed"),
        "log verify of a changed entry must say `ledger verification failed`: {}",
        excerpt(&run.stderr)
    );
    host.run(&["log", "verify", "--key", &key])?
        .expect(0, "log verify once the byte is restored")?;
    Ok(())
}

fn consistency_proofs(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case compares proofs with the server's export".into(),
        ));
    }
    let server = target.server(Some(OPEN))?;
    let greet: Json = serde_json::from_str(super::GREET).map_err(|e| failed(e.to_string()))?;
    for _ in 0..6 {
        server
            .post("/v1/invoke", &greet)?
            .expect(200, "POST /v1/invoke")?;
    }
    let host = server
        .host
        .as_ref()
        .ok_or_else(|| failed("the server has no data directory"))?;
    let pinned = published_key(host)?;
    let entries = server.get("/v1/ledger/entries?from=0&limit=1000")?;
    entries.expect(200, "GET /v1/ledger/entries")?;
    let checkpoint = server.get("/v1/ledger/checkpoint")?;
    checkpoint.expect(200, "GET /v1/ledger/checkpoint")?;
    let latest = crypto::checkpoint(&checkpoint.text, &pinned)
        .map_err(|e| failed(format!("the served checkpoint: {e}")))?;
    let n = latest.size;
    // The leaves, from the entries as proofs carry them.
    let mut leaves = Vec::new();
    for i in 0..n {
        let proof = server.get(&format!("/v1/ledger/proof/{i}"))?;
        proof.expect(200, &format!("GET /v1/ledger/proof/{i}"))?;
        let (_, bytes, c) = crypto::proof(&proof.text, &pinned)
            .map_err(|e| failed(format!("the proof of entry {i}: {e}")))?;
        ensure!(
            c.size == n,
            "the proof of entry {i} is against size {}",
            c.size
        );
        leaves.push(leaf(&bytes));
    }
    ensure!(
        mth(&leaves) == latest.root,
        "the served checkpoint's root is not the RFC 6962 tree hash of its {n} entries"
    );
    let hashes = |answer: &Json| -> Result<Vec<[u8; 32]>, Failure> {
        answer["hashes"]
            .as_array()
            .ok_or_else(|| failed(format!("no `hashes` list: {answer}")))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|h| STANDARD.decode(h).ok())
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .ok_or_else(|| failed(format!("{h} is not a base64 hash")))
            })
            .collect()
    };
    // From every size to the latest (the answer then carries the latest checkpoint), and
    // between every pair of sizes: each proof verifies against the roots computed here.
    for m in 1..=n {
        let answer = server.get(&format!("/v1/ledger/consistency?from={m}"))?;
        answer.expect(200, &format!("GET /v1/ledger/consistency?from={m}"))?;
        let body = answer.json()?;
        ensure!(
            body["from"] == m && body["to"] == n && body["checkpoint"] == json!(checkpoint.text),
            "the consistency answer from {m} without `to` must run to {n} and carry the latest checkpoint: {}",
            excerpt(&answer.text)
        );
        let proof = hashes(&body)?;
        ensure!(
            consistent(m, n, &mth(&leaves[..m as usize]), &latest.root, &proof),
            "the consistency proof from {m} to {n} does not verify against the RFC 6962 roots"
        );
        for to in m..n {
            let answer = server.get(&format!("/v1/ledger/consistency?from={m}&to={to}"))?;
            answer.expect(200, &format!("GET /v1/ledger/consistency?from={m}&to={to}"))?;
            let proof = hashes(&answer.json()?)?;
            ensure!(
                consistent(
                    m,
                    to,
                    &mth(&leaves[..m as usize]),
                    &mth(&leaves[..to as usize]),
                    &proof
                ),
                "the consistency proof from {m} to {to} does not verify"
            );
            if m == 1 && to > 1 {
                let mut bad = proof.clone();
                if let Some(h) = bad.first_mut() {
                    h[0] ^= 1;
                    ensure!(
                        !consistent(
                            m,
                            to,
                            &mth(&leaves[..1]),
                            &mth(&leaves[..to as usize]),
                            &bad
                        ),
                        "the suite's own consistency check accepts a changed hash"
                    );
                }
            }
        }
    }
    for query in [
        "from=0".to_owned(),
        "from=3&to=2".to_owned(),
        format!("from=1&to={}", n + 1),
        format!("from={}", n + 1),
        "from=x".to_owned(),
        "from=1&to=two".to_owned(),
        "from=-1".to_owned(),
    ] {
        let answer = server.get(&format!("/v1/ledger/consistency?{query}"))?;
        answer.expect(400, &format!("GET /v1/ledger/consistency?{query}"))?;
        let body = answer.json()?;
        ensure!(
            body["code"] == "bad-arguments"
                && answer
                    .header("content-type")
                    .starts_with("application/problem+json"),
            "GET /v1/ledger/consistency?{query} must be a problem with code bad-arguments: {}",
            excerpt(&answer.text)
        );
    }
    Ok(())
}

/// The batches of an export: each checkpoint closes the entries after the previous one.
fn batches(export: &Export) -> Result<Vec<std::ops::Range<u64>>, Failure> {
    let (sizes, _) = sizes_and_origin(export)?;
    let mut out = Vec::new();
    let mut from = 0;
    for n in sizes {
        out.push(from..n);
        from = n;
    }
    Ok(out)
}

fn batch_of(batches: &[std::ops::Range<u64>], index: u64) -> Option<&std::ops::Range<u64>> {
    batches.iter().find(|b| b.contains(&index))
}

/// The invocation number `invoke --json` reports, or the newest invocation-start's.
fn last_invocation(entries: &[Json]) -> Option<u64> {
    entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64())
}

fn invocation_batches(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let forbid = "permit (principal == FemtoClaw::User::\"local\", action, resource);\n\
        forbid (principal, action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"conformance\" };\n";
    // (name, what ran, expected exit)
    let mut runs: Vec<(&str, u64, i32)> = Vec::new();
    let mut step = |host: &Host, name: &'static str, f: &str, args: Json, extra: &[&str], code| {
        call_with(host, f, args, extra, code)?;
        let n = last_invocation(&host.entries()?)
            .ok_or_else(|| failed("no invocation-start after an invocation"))?;
        runs.push((name, n, code));
        Ok::<(), Failure>(())
    };
    step(&host, "echo", "echo", json!({ "text": "same" }), &[], 0)?;
    step(
        &host,
        "echo again",
        "echo",
        json!({ "text": "same" }),
        &[],
        0,
    )?;
    step(
        &host,
        "remember",
        "remember",
        json!({ "key": "k", "value": "v" }),
        &[],
        0,
    )?;
    step(
        &host,
        "remember again",
        "remember",
        json!({ "key": "k", "value": "v" }),
        &[],
        0,
    )?;
    step(&host, "divide", "divide", json!({ "a": 1, "b": 0 }), &[], 5)?;
    step(&host, "spin", "spin", json!({}), &["--fuel", "1000000"], 4)?;
    host.ok(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/note.txt","text":"hi"}"#,
    ])?;
    let effectful = last_invocation(&host.entries()?).ok_or_else(|| failed("no write-file"))?;
    host.policy(forbid)?;
    step(&host, "refused", "echo", json!({ "text": "no" }), &[], 7)?;
    step(
        &host,
        "refused again",
        "echo",
        json!({ "text": "no" }),
        &[],
        7,
    )?;
    host.policy(OPEN)?;
    step(
        &host,
        "echo after",
        "echo",
        json!({ "text": "back" }),
        &[],
        0,
    )?;

    let entries = host.entries()?;
    let exported = parse_export(&export(&host, "batches.export", &[])?)?;
    let batches = batches(&exported)?;
    let kind = |i: u64| entries[i as usize]["entry"]["type"].as_str().unwrap_or("?");

    // Policy changes: each in a batch of its own, just before the first invocation it decides,
    // and only when the digest changes.
    let changes: Vec<u64> = (0..entries.len() as u64)
        .filter(|i| kind(*i) == "policy-change")
        .collect();
    ensure!(
        changes.len() == 3,
        "the policy was set, changed once and changed back: three policy-change entries are required; the ledger holds {} ({:?})",
        changes.len(),
        kinds(&entries)
    );
    for &i in &changes {
        ensure!(
            batch_of(&batches, i) == Some(&(i..i + 1)),
            "policy-change {i} is not in a batch of its own ({:?})",
            batch_of(&batches, i)
        );
        ensure!(
            (i as usize + 1) < entries.len() && kind(i + 1) == "invocation-start",
            "policy-change {i} is not followed by the start of the invocation it decides"
        );
        let digest = &entries[i as usize]["entry"]["policy_digest"];
        let next = (i + 1..entries.len() as u64).find(|j| kind(*j) == "decision");
        ensure!(
            next.is_some_and(|j| &entries[j as usize]["entry"]["policy_digest"] == digest),
            "the first decision after policy-change {i} does not carry its digest"
        );
    }
    let digests: Vec<&Json> = changes
        .iter()
        .map(|i| &entries[*i as usize]["entry"]["policy_digest"])
        .collect();
    ensure!(
        digests[0] != digests[1] && digests[1] != digests[2],
        "consecutive policy-change entries record the same digest: {digests:?}"
    );

    for &(name, n, code) in &runs {
        let own = of_invocation(&entries, n);
        let types: Vec<&str> = own
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap_or("?"))
            .collect();
        let first = own.first().map(|(i, _)| *i).unwrap_or(0);
        let last = own.last().map(|(i, _)| *i).unwrap_or(0);
        ensure!(
            types.first() == Some(&"invocation-start") && types.last() == Some(&"invocation-end"),
            "invocation {n} ({name}) does not begin with its start and end with its end: {types:?}"
        );
        ensure!(
            types.iter().filter(|t| **t == "invocation-start").count() == 1
                && types.iter().filter(|t| **t == "invocation-end").count() == 1,
            "invocation {n} ({name}) has more than one start or end: {types:?}"
        );
        // No effectful call: one batch, exactly its entries.
        ensure!(
            batch_of(&batches, first) == Some(&(first..last + 1))
                && own.len() as u64 == last + 1 - first,
            "invocation {n} ({name}) made no effectful call and must be appended as one batch of its own entries {first}..={last}; the batch is {:?}",
            batch_of(&batches, first)
        );
        let start = own[0].1;
        let decision = own.get(1).map(|(_, e)| *e).unwrap_or(&Json::Null);
        let end = own[own.len() - 1].1;
        if code == 7 {
            ensure!(
                types == ["invocation-start", "decision", "invocation-end"]
                    && decision["action"] == "invoke"
                    && decision["allowed"] == false
                    && start["args"].as_array().is_some_and(Vec::is_empty)
                    && end["result"].is_null()
                    && end["fuel_consumed"] == 0,
                "a refused invocation ({name}) must append its start without arguments, its denying invoke decision and an end without result or fuel: {}",
                excerpt(&json!(own.iter().map(|(_, e)| e).collect::<Vec<_>>()).to_string())
            );
            continue;
        }
        ensure!(
            decision["type"] == "decision"
                && decision["action"] == "invoke"
                && decision["allowed"] == true
                && start["args"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty() || name == "spin"),
            "invocation {n} ({name}) must begin with its start (with its arguments) and its allowing invoke decision: {types:?}"
        );
        let trapped = code != 0;
        let body = &types[2..types.len() - 1];
        let (calls, tail) = match body.last() {
            Some(&"trap") => (&body[..body.len() - 1], true),
            _ => (body, false),
        };
        ensure!(
            tail == trapped,
            "invocation {n} ({name}, exit {code}) {} a trap entry before its end: {types:?}",
            if trapped { "lacks" } else { "has" }
        );
        let mut seq = 0;
        for (j, t) in calls.iter().enumerate() {
            match *t {
                "decision" => {}
                "host-call" => {
                    let e = own[2 + j].1;
                    ensure!(
                        e["seq"] == seq,
                        "invocation {n} ({name}): host call {j} has seq {} where {seq} is next",
                        e["seq"]
                    );
                    seq += 1;
                }
                other => {
                    return Err(failed(format!(
                        "invocation {n} ({name}): `{other}` among its decisions and host calls: {types:?}"
                    )));
                }
            }
        }
        ensure!(
            calls.last().is_none_or(|t| *t != "decision"),
            "invocation {n} ({name}): a decision with no host call after it: {types:?}"
        );
    }

    // The same call with the same answers consumes the same fuel; fuel exhaustion consumes
    // exactly the budget.
    let fuel = |n: u64| {
        of_invocation(&entries, n)
            .last()
            .map(|(_, e)| e["fuel_consumed"].clone())
            .unwrap_or(Json::Null)
    };
    for pair in [[0, 1], [2, 3]] {
        let (a, b) = (runs[pair[0]].1, runs[pair[1]].1);
        ensure!(
            fuel(a) == fuel(b) && fuel(a).as_u64().is_some_and(|f| f > 0),
            "the same call consumed {} and then {} fuel ({})",
            fuel(a),
            fuel(b),
            runs[pair[0]].0
        );
    }
    let spin = of_invocation(&entries, runs[5].1);
    let trap = spin
        .iter()
        .find(|(_, e)| e["type"] == "trap")
        .map(|(_, e)| *e);
    ensure!(
        trap.is_some_and(|t| t["fuel_consumed"] == 1_000_000) && fuel(runs[5].1) == 1_000_000,
        "an invocation out of fuel on a budget of 1000000 must record exactly 1000000 consumed: trap {:?}, end {}",
        trap,
        fuel(runs[5].1)
    );

    // The effectful call: written ahead through its intent, the rest after, no gap, no repeat.
    let own = of_invocation(&entries, effectful);
    let types: Vec<&str> = own
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap_or("?"))
        .collect();
    let intents: Vec<usize> = (0..own.len())
        .filter(|k| types[*k] == "host-call-intent")
        .collect();
    ensure!(
        !intents.is_empty(),
        "files.write-file wrote nothing ahead: {types:?}"
    );
    let (first, last) = (own[0].0, own[own.len() - 1].0);
    ensure!(
        own.len() as u64 == last + 1 - first
            && types.iter().filter(|t| **t == "invocation-start").count() == 1,
        "the effectful invocation's entries {first}..={last} are not its own, once each: {types:?}"
    );
    let mut from = first;
    for &k in &intents {
        let intent = own[k].0;
        ensure!(
            batch_of(&batches, intent) == Some(&(from..intent + 1)),
            "the write-ahead of host call {} must be the batch {from}..={intent} ending with its intent; it is {:?}",
            own[k].1["seq"],
            batch_of(&batches, intent)
        );
        let next = own.get(k + 1).map(|(_, e)| *e).unwrap_or(&Json::Null);
        ensure!(
            next["type"] == "host-call" && next["seq"] == own[k].1["seq"],
            "after the write-ahead of host call {}, the next entry must be that host call, repeating nothing: {types:?}",
            own[k].1["seq"]
        );
        from = intent + 1;
    }
    ensure!(
        batch_of(&batches, last) == Some(&(from..last + 1)),
        "the entries appended when the effectful invocation ended must continue its write-ahead at {from} through its end {last}: {:?}",
        batch_of(&batches, last)
    );
    Ok(())
}

/// A proof of `log prove` with its checkpoint note replaced by `note`.
fn with_note(proof: &str, note: &str) -> String {
    let head = proof.split_once("\n\n").map_or(proof, |(h, _)| h);
    format!("{head}\n\n{note}")
}

/// `log verify-proof` of `proof` written to a file, pinning `key`.
fn verify_proof(host: &Host, proof: &str, key: &str) -> Result<Run, Failure> {
    let path = host.file("forged.proof", proof.as_bytes())?;
    host.run(&["log", "verify-proof", &s(&path), "--key", key])
}

/// A character of the same alphabet other than `c`.
fn other_char(c: char) -> char {
    match c {
        '0'..='8' | 'a'..='y' | 'A'..='Y' => char::from(c as u8 + 1),
        '9' => '0',
        'z' => 'a',
        'Z' => 'A',
        '+' => '/',
        '/' => '+',
        '.' => '-',
        _ => 'x',
    }
}

fn signatures_and_keys(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let key = key_text(&host)?;
    let real = signer(&host)?;
    let proof = host.ok(&["log", "prove", "2"])?;
    let note = proof
        .split_once("\n\n")
        .map(|(_, n)| n.to_owned())
        .ok_or_else(|| failed("log prove printed no checkpoint"))?;
    let (origin, size, root) = body(&note)?;
    let text = format!("{origin}\n{size}\n{}\n", STANDARD.encode(root));
    let accepts = |note: &str, what: &str| -> Result<(), Failure> {
        let run = verify_proof(&host, &with_note(&proof, note), &key)?;
        ensure!(
            run.code == 0,
            "{what} must be accepted: exit {}, {}",
            run.code,
            excerpt(&run.stderr)
        );
        Ok(())
    };
    let refuses = |note: &str, what: &str| -> Result<(), Failure> {
        let run = verify_proof(&host, &with_note(&proof, note), &key)?;
        ensure!(
            run.code == 8 && !run.stdout.contains("ok:"),
            "{what} must be refused (exit 8): exit {}, {}",
            run.code,
            excerpt(&format!("{} {}", run.stdout, run.stderr))
        );
        Ok(())
    };
    accepts(
        &format!("{text}\n{}", real.line(&text)),
        "the checkpoint signed again",
    )?;

    // Extension lines after the root are accepted and ignored.
    let extended = format!("{text}an extension line\nanother one\n");
    accepts(
        &format!("{extended}\n{}", real.line(&extended)),
        "a checkpoint with extension lines",
    )?;

    // Lines of other keys are ignored; the pinned key's line opens the note.
    let others: Vec<Signer> = (0..100u8)
        .map(|i| Signer::from_seed(&format!("witness{i}.example"), [i.wrapping_add(1); 32]))
        .collect();
    let cosigned = format!(
        "{text}\n{}{}{}",
        others[0].line(&text),
        real.line(&text),
        others[1].line(&text)
    );
    accepts(&cosigned, "a checkpoint cosigned by two other keys")?;
    // A bad line by an unpinned key is ignored too.
    let mut bad = others[2].line(&text);
    bad.replace_range(bad.len() - 3..bad.len() - 1, "AA");
    accepts(
        &format!("{text}\n{bad}{}", real.line(&text)),
        "a checkpoint with a bad signature by an unpinned key",
    )?;
    // More than 100 signature lines are refused.
    let many: String = others.iter().map(|o| o.line(&text)).collect();
    refuses(
        &format!("{text}\n{many}{}", real.line(&text)),
        "a note with 101 signature lines",
    )?;

    // Strict Ed25519: a signature whose S is not reduced (S + L), and a small-order key with
    // the signature (identity, 0) that a cofactorless, non-strict verifier accepts.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let signature = real.key.sign(text.as_bytes()).to_bytes();
    let mut high = signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(high[32 + i]) + u16::from(L[i]) + carry;
        high[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    let mut raw = real.id.to_vec();
    raw.extend_from_slice(&high);
    refuses(
        &format!("{text}\n\u{2014} {} {}\n", real.name, STANDARD.encode(&raw)),
        "a signature with a non-canonical S (S + L)",
    )?;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak_name = "weak.example";
    let weak_id = key_id(weak_name, 0x01, &identity);
    let mut weak_key = vec![0x01];
    weak_key.extend_from_slice(&identity);
    let weak = format!(
        "{weak_name}+{}+{}",
        hex(&weak_id),
        STANDARD.encode(&weak_key)
    );
    let mut raw = weak_id.to_vec();
    raw.extend_from_slice(&identity);
    raw.extend_from_slice(&[0u8; 32]);
    let run = verify_proof(
        &host,
        &with_note(
            &proof,
            &format!("{text}\n\u{2014} {weak_name} {}\n", STANDARD.encode(&raw)),
        ),
        &weak,
    )?;
    ensure!(
        refused(&run) && !run.stdout.contains("ok:"),
        "a checkpoint signed (identity, 0) under the small-order key {weak} was accepted: exit {}, {}",
        run.code,
        excerpt(&run.stdout)
    );

    // A verifier key with any character changed, another algorithm byte, or a key id that
    // does not match, is refused.
    let good = with_note(&proof, &note);
    for (i, c) in key.char_indices() {
        if c == '+' {
            continue;
        }
        let mut changed = key.clone();
        changed.replace_range(i..i + c.len_utf8(), &other_char(c).to_string());
        let run = verify_proof(&host, &good, &changed)?;
        ensure!(
            refused(&run) && !run.stdout.contains("ok:"),
            "the verifier key with character {i} changed ({changed}) was accepted: exit {}",
            run.code
        );
    }
    let mut raw = vec![0x02];
    raw.extend_from_slice(real.key.verifying_key().as_bytes());
    for algorithm in [0x01, 0x02] {
        let other_alg = format!(
            "{}+{}+{}",
            real.name,
            hex(&key_id(
                &real.name,
                algorithm,
                real.key.verifying_key().as_bytes()
            )),
            STANDARD.encode(&raw)
        );
        let run = verify_proof(&host, &good, &other_alg)?;
        ensure!(
            refused(&run) && !run.stdout.contains("ok:"),
            "a verifier key with algorithm byte 0x02 ({other_alg}) was accepted: exit {}",
            run.code
        );
    }
    let run = verify_proof(&host, &good, &key)?;
    run.expect(0, "log verify-proof with the published key")?;

    // A signer key text with any character changed is refused when read.
    let path = key_file(&host);
    let original = read(&path)?;
    let file_text = String::from_utf8_lossy(&original).into_owned();
    let text_len = file_text.trim_end_matches('\n').len();
    let mut accepted = Vec::new();
    for (i, c) in file_text[..text_len].char_indices() {
        if c == '+' {
            continue;
        }
        let mut changed = file_text.clone();
        changed.replace_range(i..i + c.len_utf8(), &other_char(c).to_string());
        write(&path, changed.as_bytes())?;
        let run = host.run(&["key", "show"])?;
        if !refused(&run) {
            accepted.push(format!("{i} (exit {}: {})", run.code, run.stdout.trim()));
        }
    }
    let mut raw = vec![0x02];
    raw.extend_from_slice(real.key.as_bytes());
    let other_alg = format!(
        "PRIVATE+KEY+{}+{}+{}\n",
        real.name,
        hex(&real.id),
        STANDARD.encode(&raw)
    );
    write(&path, other_alg.as_bytes())?;
    let alg_run = host.run(&["key", "show"])?;
    write(&path, &original)?;
    ensure!(
        accepted.is_empty(),
        "key show accepted the key file with a character changed at {}",
        accepted.join(", ")
    );
    ensure!(
        refused(&alg_run),
        "key show accepted a key file with algorithm byte 0x02: {}",
        alg_run.stdout.trim()
    );
    ensure!(
        key_text(&host)? == key,
        "the restored key file no longer gives the published key"
    );
    Ok(())
}

/// The host's ledger exported, with its signer, checkpoint sizes and origin.
struct Forge {
    host: Host,
    key: String,
    signer: Signer,
    export: Export,
    sizes: Vec<u64>,
    origin: String,
}

impl Forge {
    fn new(host: Host, extra: &[&str]) -> Result<Forge, Failure> {
        let key = key_text(&host)?;
        let signer = signer(&host)?;
        let export = parse_export(&export(&host, "original.export", extra)?)?;
        let (sizes, origin) = sizes_and_origin(&export)?;
        Ok(Forge {
            host,
            key,
            signer,
            export,
            sizes,
            origin,
        })
    }

    /// Writes the export with `entries`, checkpoints at the original sizes (and one covering
    /// every entry) signed again by the host's key; the file.
    fn write(&self, name: &str, entries: Vec<Vec<u8>>) -> Result<PathBuf, Failure> {
        let n = entries.len() as u64;
        let mut sizes: Vec<u64> = self.sizes.iter().copied().filter(|s| *s < n).collect();
        sizes.push(n);
        let forged = forged(&self.export, entries, &sizes, &self.origin, &|_| {
            &self.signer
        });
        let path = self.host.files.path().join(name);
        write(&path, &forged.write())?;
        Ok(path)
    }

    /// `log verify` of the entries forged into an export, pinning the host's key.
    fn verify(&self, entries: Vec<Vec<u8>>) -> Result<Run, Failure> {
        let path = self.write("forged.export", entries)?;
        verify_file(&self.host, &path, &[&self.key])
    }

    /// The export's entries with `extra` appended.
    fn plus(&self, extra: Vec<u8>) -> Vec<Vec<u8>> {
        let mut entries = self.export.entries.clone();
        entries.push(extra);
        entries
    }
}

/// An `invocation-end` of invocation 999 whose result is the value `value`.
fn end_with(value: &[u8]) -> Vec<u8> {
    let mut e = vec![0x03, 0x05];
    e.extend_from_slice(&999u64.to_le_bytes());
    e.push(0x01);
    e.extend_from_slice(value);
    e.extend_from_slice(&7u64.to_le_bytes());
    e.extend_from_slice(&[0; 8]);
    e
}

/// A small deterministic generator, so that a failure can be reproduced.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn decoder_refusals(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "decode me" }), 0)?;
    let forge = Forge::new(host, &[])?;
    let n = forge.export.entries.len();
    let baseline = forge.verify(forge.export.entries.clone())?;
    baseline.expect(0, "log verify of the export signed again unchanged")?;
    let accepted = forge.verify(forge.plus(end_with(&[0x01, 0x01])))?;
    accepted.expect(0, "log verify of an appended well-formed invocation-end")?;

    // (what, value bytes or whole entry, what the refusal must say)
    // The result is an option's payload, one level below the entry field: 127 lists put the
    // innermost value at depth 128, 126 at depth 127.
    let mut deep = vec![];
    for _ in 0..127 {
        deep.extend_from_slice(&[0x0e, 1, 0, 0, 0]);
    }
    deep.extend_from_slice(&[0x01, 0x01]);
    let mut shallow = vec![];
    for _ in 0..126 {
        shallow.extend_from_slice(&[0x0e, 1, 0, 0, 0]);
    }
    shallow.extend_from_slice(&[0x01, 0x01]);
    let mut abyss = vec![];
    for _ in 0..100_000 {
        abyss.extend_from_slice(&[0x0e, 1, 0, 0, 0]);
    }
    abyss.extend_from_slice(&[0x01, 0x01]);
    let accepted = forge.verify(forge.plus(end_with(&shallow)))?;
    accepted.expect(0, "log verify of a result nested 127 levels deep")?;

    let mut option_tag = end_with(&[0x01, 0x01]);
    option_tag[10] = 0x02;
    let mut later_version = forge.export.entries[n - 1].clone();
    later_version[0] = 0x04;
    let mut earlier_version = forge.export.entries[n - 1].clone();
    earlier_version[0] = 0x02;
    let mut trailing = end_with(&[0x01, 0x01]);
    trailing.push(0x00);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "a bool tag 0x02",
            end_with(&[0x01, 0x02]),
            vec!["invalid bool tag `2` at byte 12"],
        ),
        (
            "an option tag 0x02",
            option_tag,
            vec!["invalid option tag `2` at byte 10"],
        ),
        (
            "a char U+D800",
            end_with(&[0x0c, 0x00, 0xd8, 0x00, 0x00]),
            vec!["char at byte 1", "not a unicode scalar value"],
        ),
        (
            "a char 0x110000",
            end_with(&[0x0c, 0x00, 0x00, 0x11, 0x00]),
            vec!["char at byte 1", "not a unicode scalar value"],
        ),
        (
            "a string length past the end",
            end_with(&[0x0d, 0xf0, 0xff, 0xff, 0xff, b'a']),
            vec!["length at byte 12 exceeds the input"],
        ),
        (
            "a list count past the end",
            end_with(&[0x0e, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01]),
            vec!["length at byte 12 exceeds the input"],
        ),
        (
            "a result nested 128 levels deep",
            end_with(&deep),
            vec!["value nesting at byte", "exceeds the limit"],
        ),
        (
            "a result nested 100000 levels deep",
            end_with(&abyss),
            vec!["value nesting at byte", "exceeds the limit"],
        ),
        (
            "an entry of encoding version 4",
            later_version,
            vec!["unsupported encoding version `4`"],
        ),
        (
            "an entry of encoding version 2",
            earlier_version,
            vec!["unsupported encoding version `2`"],
        ),
        ("a trailing byte", trailing, vec!["trailing bytes at byte"]),
    ];
    for (what, entry, says) in cases {
        let run = forge.verify(forge.plus(entry))?;
        run.expect(8, &format!("log verify of an export holding {what}"))?;
        let named = format!("entry {n} is malformed");
        ensure!(
            run.stderr.contains(&named) && says.iter().all(|s| run.stderr.contains(s)),
            "log verify of {what} must name {named:?} and say {says:?}: {}",
            excerpt(&run.stderr)
        );
    }

    // Mutated, truncated and arbitrary entries are refused or accepted, never a crash.
    let mut rng = Lcg(0x5eed);
    let mut outcomes = [0usize; 2];
    for round in 0..60 {
        let mut entries = forge.export.entries.clone();
        let at = 1 + rng.below(n - 1);
        let mut bytes = entries[at].clone();
        match round % 4 {
            0 => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len())),
            2 => {
                let i = 2 + rng.below(bytes.len() - 2);
                bytes[i] = rng.next() as u8;
                bytes[i.saturating_sub(1)] = rng.next() as u8;
            }
            _ => {
                let len = rng.below(64);
                bytes = (0..len).map(|_| rng.next() as u8).collect();
                if !bytes.is_empty() {
                    bytes[0] = 0x03;
                }
            }
        }
        entries[at] = bytes;
        let run = forge.verify(entries)?;
        ensure!(
            run.code == 0 || run.code == 8,
            "log verify of an export whose entry {at} was mutated (round {round}) exited {} (a crash, not a verdict): {}",
            run.code,
            excerpt(&run.stderr)
        );
        outcomes[usize::from(run.code == 8)] += 1;
    }
    ensure!(
        outcomes[1] > 30,
        "of 60 mutated entries only {} were refused",
        outcomes[1]
    );
    // Raw damage to the export file itself.
    let original = forge.export.write();
    for round in 0..30 {
        let mut bytes = original.clone();
        if round % 2 == 0 {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        } else {
            bytes.truncate(rng.below(bytes.len()));
        }
        let path = forge.host.files.path().join("damaged.export");
        write(&path, &bytes)?;
        let run = verify_file(&forge.host, &path, &[&forge.key])?;
        ensure!(
            run.code == 0 || run.code == 8,
            "log verify of an export damaged in round {round} exited {} (a crash, not a verdict): {}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn approval_forgeries(target: &Target) -> Result<(), Failure> {
    let policy = "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"invoke\" && resource is FemtoClaw::Capability && resource.name == \"hello\" };\n\
        @approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"hello\" };\n";
    let host = guest_host(target, policy)?;
    let greet = |name: &str, code: i32| -> Result<(), Failure> {
        let args = json!({ "name": name }).to_string();
        host.run(&["invoke", "hello", "greet", "--args", &args])?
            .expect(code, &format!("hello.greet of {name}"))?;
        Ok(())
    };
    greet("Ada", 13)?;
    greet("Bob", 13)?;
    let requests = |host: &Host| -> Result<Vec<(usize, Json)>, Failure> {
        Ok(host
            .entries()?
            .iter()
            .enumerate()
            .filter(|(_, e)| e["entry"]["type"] == "approval")
            .map(|(i, e)| (i, e["entry"].clone()))
            .collect())
    };
    let asked = requests(&host)?;
    ensure!(
        asked.len() == 2,
        "two calls pending approval must record two approval entries: {asked:?}"
    );
    let (ada, bob) = (asked[0].1["request"].clone(), asked[1].1["request"].clone());
    let ada_id = ada.as_u64().ok_or_else(|| failed("no request id"))?;
    host.ok(&["approval", "grant", &ada_id.to_string(), "--reason", "fine"])?;
    call(&host, "echo", json!({ "text": "between" }), 0)?;
    greet("Ada", 0)?;
    greet("Ada", 13)?;
    let forge = Forge::new(host, &[])?;
    let entries: Vec<Json> = forge
        .host
        .entries()?
        .iter()
        .map(|e| e["entry"].clone())
        .collect();
    let starts: Vec<usize> = (0..entries.len())
        .filter(|i| entries[*i]["type"] == "invocation-start")
        .collect();
    let echo = *starts
        .iter()
        .find(|i| entries[**i]["capability"] == "conformance")
        .ok_or_else(|| failed("no echo"))?;
    let spent = *starts
        .iter()
        .find(|i| entries[**i]["approval"] == ada)
        .ok_or_else(|| failed("no invocation spent the granted approval"))?;
    let again = *starts
        .last()
        .filter(|i| **i > spent)
        .ok_or_else(|| failed("no greeting after the spent one"))?;
    let grant = (0..entries.len())
        .find(|i| {
            entries[*i]["type"] == "approval" && entries[*i]["request"] == ada && *i > asked[1].0
        })
        .ok_or_else(|| failed("no grant recorded"))?;
    let verify = |what: &str, forged: Vec<Json>, at: usize| -> Result<(), Failure> {
        let bytes = forged
            .iter()
            .map(|e| encode(e).map_err(|m| failed(format!("{what}: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let run = forge.verify(bytes)?;
        run.expect(8, &format!("log verify of a ledger in which {what}"))?;
        ensure!(
            run.stderr.contains(&format!("entry {at}:")),
            "log verify of a ledger in which {what} must fail at entry {at}: {}",
            excerpt(&run.stderr)
        );
        Ok(())
    };
    let honest = entries
        .iter()
        .map(|e| encode(e).map_err(failed))
        .collect::<Result<Vec<_>, _>>()?;
    ensure!(
        honest == forge.export.entries,
        "the entries log show prints do not encode to the exported bytes"
    );
    forge
        .verify(honest)?
        .expect(0, "log verify of the ledger signed again")?;
    let with = |i: usize, approval: &Json| {
        let mut all = entries.clone();
        all[i]["approval"] = approval.clone();
        all
    };
    verify(
        "an invocation spends an approval never asked for",
        with(echo, &json!(ada_id + 1000)),
        echo,
    )?;
    verify(
        "an invocation spends an approval not granted",
        with(echo, &bob),
        echo,
    )?;
    verify(
        "an invocation spends an approval granted for another call",
        with(echo, &ada),
        echo,
    )?;
    verify(
        "an invocation spends an approval already spent",
        with(again, &ada),
        again,
    )?;
    let mut twice = entries.clone();
    twice.insert(grant + 1, entries[grant].clone());
    verify("an approval is decided twice", twice, grant + 1)?;
    let mut other = entries.clone();
    other[grant]["fingerprint"] = json!(hex(&[0x42; 32]));
    verify("an approval is decided for another call", other, grant)?;
    Ok(())
}

/// `log verify` of the export's entries with checkpoints at `sizes` signed as `sign` says.
fn resign_verify<'a>(
    forge: &Forge,
    name: &str,
    sizes: &[u64],
    sign: &dyn Fn(u64) -> &'a Signer,
    keys: &[&str],
) -> Result<Run, Failure> {
    let export = forged(
        &forge.export,
        forge.export.entries.clone(),
        sizes,
        &forge.origin,
        sign,
    );
    let path = forge.host.files.path().join(name);
    write(&path, &export.write())?;
    verify_file(&forge.host, &path, keys)
}

fn key_hand_over_and_origin(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "before" }), 0)?;
    let old = signer(&host)?;
    let old_key = key_text(&host)?;
    host.ok(&["key", "generate"])?;
    call(&host, "echo", json!({ "text": "after" }), 0)?;
    let new = signer(&host)?;
    let new_key = key_text(&host)?;
    ensure!(new_key != old_key, "key generate did not rotate the key");
    let forge = Forge::new(host, &[])?;
    let entries = forge.host.entries()?;
    let Some(change) = entries
        .iter()
        .rposition(|e| e["entry"]["type"] == "key-change")
        .filter(|i| *i > 0)
    else {
        return Err(failed("the rotation recorded no second key-change"));
    };
    let change = change as u64;
    let keys = [old_key.as_str(), new_key.as_str()];
    let sizes = forge.sizes.clone();
    let honest = |n: u64| if n <= change + 1 { &old } else { &new };
    resign_verify(&forge, "honest.export", &sizes, &honest, &keys)?.expect(
        0,
        "log verify of the export signed again by the keys in force",
    )?;

    // The retired key signs a checkpoint after the key change: refused, though pinned.
    let last = *sizes.last().unwrap_or(&0);
    let run = resign_verify(
        &forge,
        "retired.export",
        &sizes,
        &|n| if n == last { &old } else { honest(n) },
        &keys,
    )?;
    run.expect(
        8,
        "a checkpoint after the rotation signed by the retired key",
    )?;
    ensure!(
        run.stderr.contains("not signed by the key in force"),
        "a checkpoint signed by the retired key must be refused as not signed by the key in force: {}",
        excerpt(&run.stderr)
    );
    // The first key change binds the first checkpoints to its key: the later key, though
    // pinned, does not sign them.
    let run = resign_verify(
        &forge,
        "early.export",
        &sizes,
        &|n| if n == sizes[0] { &new } else { honest(n) },
        &keys,
    )?;
    run.expect(8, "the first checkpoint signed by the later key")?;
    ensure!(
        run.stderr.contains("not signed by the key in force"),
        "the first checkpoint signed by a key the first key change does not name must be refused as not signed by the key in force: {}",
        excerpt(&run.stderr)
    );

    // Another origin, at the first checkpoint or a later one, and checkpoints out of order.
    for (what, at) in [("the last", sizes.len() - 1), ("a middle", sizes.len() / 2)] {
        let mut export = forged(
            &forge.export,
            forge.export.entries.clone(),
            &sizes,
            &forge.origin,
            &honest,
        );
        let leaves: Vec<[u8; 32]> = export.entries.iter().map(|e| leaf(e)).collect();
        let n = sizes[at];
        export.checkpoints[at] = honest(n)
            .checkpoint("other.example/ledger", n, &mth(&leaves[..n as usize]))
            .into_bytes();
        let path = forge.host.files.path().join("origin.export");
        write_bytes(&path, &export.write())?;
        let run = verify_file(&forge.host, &path, &keys)?;
        run.expect(8, &format!("{what} checkpoint with another origin"))?;
        ensure!(
            run.stderr.contains("origin `other.example/ledger`"),
            "{what} checkpoint's other origin must be named: {}",
            excerpt(&run.stderr)
        );
    }
    let mut export = forged(
        &forge.export,
        forge.export.entries.clone(),
        &sizes,
        &forge.origin,
        &honest,
    );
    // Two checkpoints before the rotation, signed by the key in force there, swapped.
    ensure!(
        sizes.len() >= 3 && sizes[2] <= change,
        "the ledger has fewer than three checkpoints before its rotation"
    );
    export.checkpoints.swap(1, 2);
    let path = forge.host.files.path().join("order.export");
    write_bytes(&path, &export.write())?;
    let run = verify_file(&forge.host, &path, &keys)?;
    run.expect(8, "checkpoints out of order")?;
    ensure!(
        run.stderr.contains("older than checkpoint"),
        "checkpoints out of order must be refused as going backwards: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

/// `replay EXPORT --key K --json` (plus `extra`): the run and its report.
fn replay_json(
    host: &Host,
    file: &Path,
    key: &str,
    extra: &[&str],
) -> Result<(Run, Json), Failure> {
    let file = s(file);
    let mut args = vec!["replay", file.as_str(), "--key", key, "--json"];
    args.extend_from_slice(extra);
    let run = host.run(&args)?;
    let report = run.json().unwrap_or(Json::Null);
    Ok((run, report))
}

/// The report of the invocation that ran `function`.
fn report_of<'a>(report: &'a Json, function: &str) -> &'a Json {
    report["invocations"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["function"] == function))
        .unwrap_or(&Json::Null)
}

fn replay_divergences(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    call(&host, "recall", json!({ "key": "k" }), 0)?;
    call(&host, "echo", json!({ "text": "hi" }), 0)?;
    call(&host, "divide", json!({ "a": 1, "b": 0 }), 5)?;
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action, resource);\n\
         forbid (principal, action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"conformance\" };\n",
    )?;
    call(&host, "echo", json!({ "text": "no" }), 7)?;
    host.policy(OPEN)?;
    let big = "b".repeat(20000);
    call(&host, "remember", json!({ "key": "big", "value": big }), 0)?;
    let forge = Forge::new(host, &["--with-components"])?;
    let shown = forge.host.entries()?;
    let json_entries: Vec<Json> = shown.iter().map(|e| e["entry"].clone()).collect();
    for (i, e) in json_entries.iter().enumerate() {
        let ours = encode(e).map_err(|m| failed(format!("entry {i}: {m}")))?;
        ensure!(
            ours == forge.export.entries[i],
            "entry {i} as log show prints it does not encode to its exported bytes"
        );
    }
    let other = target.host()?;
    let key = forge.key.clone();
    let replay = |name: &str, entries: &[Json], blobs: bool| -> Result<(Run, Json), Failure> {
        let bytes = entries
            .iter()
            .map(|e| encode(e).map_err(|m| failed(format!("a forged entry: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let n = bytes.len() as u64;
        let mut sizes: Vec<u64> = forge.sizes.iter().copied().filter(|s| *s < n).collect();
        sizes.push(n);
        let mut export = forged(&forge.export, bytes, &sizes, &forge.origin, &|_| {
            &forge.signer
        });
        if !blobs {
            export.blobs = None;
        }
        let path = other.files.path().join(name);
        write(&path, &export.write())?;
        replay_json(&other, &path, &key, &[])
    };
    let start_of = |function: &str, nth: usize| -> Option<u64> {
        json_entries
            .iter()
            .filter(|e| e["type"] == "invocation-start" && e["function"] == function)
            .nth(nth)
            .and_then(|e| e["invocation"].as_u64())
    };
    let (Some(recall), Some(echo), Some(remember)) = (
        start_of("recall", 0),
        start_of("echo", 0),
        start_of("remember", 0),
    ) else {
        return Err(failed("the recorded invocations are not in the ledger"));
    };
    let calls_of = |n: u64| -> Vec<usize> {
        json_entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e["type"] == "host-call" && e["invocation"] == n)
            .map(|(i, _)| i)
            .collect()
    };
    let recall_calls = calls_of(recall);
    let get = *recall_calls
        .iter()
        .find(|i| {
            json_entries[**i]["function"]
                .as_str()
                .is_some_and(|f| f.contains("get"))
        })
        .ok_or_else(|| failed("recall made no get call"))?;
    let get_seq = json_entries[get]["seq"].as_u64().unwrap_or(0) as usize;

    // Unchanged: every invocation that ran replays identically, the refused one is reported.
    let (run, report) = replay("same.export", &json_entries, true)?;
    run.expect(0, "replay of the recording signed again unchanged")?;
    ensure!(
        report["identical"] == 5
            && report["divergent"] == 0
            && report["refused"] == 1
            && report["interrupted"] == 0
            && report["invocations"].as_array().map(Vec::len) == Some(6),
        "replay --json of 5 invocations that ran and 1 refused must count 5 identical, 0 divergent, 1 refused, 0 interrupted and list 6: {}",
        excerpt(&run.stdout)
    );
    let statuses: Vec<&Json> = report["invocations"]
        .as_array()
        .map(|a| a.iter().map(|i| &i["status"]).collect())
        .unwrap_or_default();
    ensure!(
        statuses.iter().filter(|s| **s == "identical").count() == 5
            && statuses.iter().filter(|s| **s == "refused").count() == 1,
        "the per-invocation statuses are not 5 identical and 1 refused: {statuses:?}"
    );
    let junit = other.files.path().join("replay.xml");
    let file = other.files.path().join("same.export");
    other
        .run(&["replay", &s(&file), "--key", &key, "--junit", &s(&junit)])?
        .expect(0, "replay --junit")?;

    // Each forgery, and what replay must say.
    let divergent =
        |name: &str, entries: Vec<Json>, function: &str, class: &str| -> Result<Json, Failure> {
            let (run, report) = replay(name, &entries, true)?;
            run.expect(9, &format!("replay of {name}"))?;
            let r = report_of(&report, function);
            ensure!(
                r["status"] == "divergent" && r["divergence"]["class"] == class,
                "replay of {name}: {function} must diverge with class {class}: {}",
                excerpt(&r.to_string())
            );
            ensure!(
                report["divergent"] == 1 && report["identical"] == 4,
                "replay of {name}: the other invocations must stay identical: {}",
                excerpt(&run.stdout)
            );
            Ok(r.clone())
        };
    let changed = |i: usize, f: &dyn Fn(&mut Json)| {
        let mut all = json_entries.clone();
        f(&mut all[i]);
        all
    };
    // The host's answer changed: the component returns what it was told, not what it returned.
    let answer = json_entries[get]["result"].to_string();
    let w = STANDARD.encode("w");
    let v = STANDARD.encode("v");
    ensure!(
        answer.contains(&format!("\"{v}\"")) || answer.contains("\"v\""),
        "the recorded get answer does not hold the value: {answer}"
    );
    let other_answer: Json = serde_json::from_str(
        &answer
            .replace(&format!("\"{v}\""), &format!("\"{w}\""))
            .replace("\"v\"", "\"w\""),
    )
    .map_err(|e| failed(e.to_string()))?;
    let r = divergent(
        "result.export",
        changed(get, &|e| e["result"] = other_answer.clone()),
        "recall",
        "RESULT",
    )?;
    ensure!(
        r["divergence"]["what"] == "result",
        "a changed host answer must diverge in the result: {r}"
    );
    // The fuel left at a call changed.
    let r = divergent(
        "fuel.export",
        changed(get, &|e| {
            e["fuel_remaining"] = json!(e["fuel_remaining"].as_u64().unwrap_or(0) + 1);
        }),
        "recall",
        "FUEL",
    )?;
    ensure!(
        r["divergence"]["seq"] == get_seq
            && r["divergence"]["call"]
                .as_str()
                .is_some_and(|c| c.ends_with(json_entries[get]["function"].as_str().unwrap_or("?"))),
        "a changed fuel count must diverge at that call (seq {get_seq}, {}): {r}",
        json_entries[get]["function"]
    );
    let matched = r["last_matching"].as_array().cloned().unwrap_or_default();
    ensure!(
        matched.len() == get_seq.min(3),
        "the divergence at host call {get_seq} must name the {} calls that matched before it: {r}",
        get_seq.min(3)
    );
    // Another import, other parameters.
    divergent(
        "order.export",
        changed(get, &|e| e["function"] = json!("[method]bucket.exists")),
        "recall",
        "ORDER",
    )?;
    let params = json_entries[get]["params"].to_string();
    ensure!(
        params.contains("\"k\""),
        "the get call's parameters do not hold the key: {params}"
    );
    let other_params: Json = serde_json::from_str(&params.replace("\"k\"", "\"j\""))
        .map_err(|e| failed(e.to_string()))?;
    divergent(
        "args.export",
        changed(get, &|e| e["params"] = other_params.clone()),
        "recall",
        "ARGS",
    )?;
    // A call the recording lacks, and a recorded call never made.
    let last_call = *recall_calls.last().unwrap_or(&get);
    let mut fewer = json_entries.clone();
    fewer.remove(last_call);
    divergent("extra.export", fewer, "recall", "EXTRA")?;
    let mut more = json_entries.clone();
    let mut again = json_entries[last_call].clone();
    again["seq"] = json!(again["seq"].as_u64().unwrap_or(0) + 1);
    more.insert(last_call + 1, again);
    divergent("missing.export", more, "recall", "MISSING")?;
    // Another ending: echo recorded as a trap.
    let echo_end = json_entries
        .iter()
        .position(|e| e["type"] == "invocation-end" && e["invocation"] == echo)
        .ok_or_else(|| failed("echo has no end"))?;
    let mut trapped = json_entries.clone();
    let fuel = trapped[echo_end]["fuel_consumed"].clone();
    trapped[echo_end]["result"] = Json::Null;
    trapped.insert(
        echo_end,
        json!({ "type": "trap", "invocation": echo, "kind": "trap", "message": "unreachable", "fuel_consumed": fuel }),
    );
    divergent("trap.export", trapped, "echo", "TRAP")?;
    // Output recorded that the component never wrote.
    let r = divergent(
        "stdout.export",
        changed(echo_end, &|e| {
            e["stdout"] = json!(STANDARD.encode([0xff, 0xfe, b'x']))
        }),
        "echo",
        "RESULT",
    )?;
    ensure!(
        r["divergence"]["what"] == "stdout",
        "recorded stdout the replay did not write must diverge in stdout: {r}"
    );

    // The JUnit suite of the unchanged replay: one test case per invocation, the refused one
    // skipped; and of a divergent one, the failure typed by its class.
    let xml = String::from_utf8_lossy(&read(&junit)?).into_owned();
    ensure!(
        xml.contains("<testsuite")
            && xml.matches("<testcase").count() == 6
            && xml.matches("<skipped").count() == 1
            && !xml.contains("<failure"),
        "replay --junit of 6 invocations (1 refused) must hold 6 test cases, 1 skipped, no failure: {}",
        excerpt(&xml)
    );
    let junit = other.files.path().join("fuel.xml");
    let file = other.files.path().join("fuel.export");
    other
        .run(&["replay", &s(&file), "--key", &key, "--junit", &s(&junit)])?
        .expect(9, "replay --junit of a divergent recording")?;
    let xml = String::from_utf8_lossy(&read(&junit)?).into_owned();
    ensure!(
        xml.matches("<testcase").count() == 6
            && xml.matches("<failure").count() == 1
            && xml.contains("<failure type=\"FUEL\"")
            && xml.matches("<skipped").count() == 1,
        "replay --junit of a recording diverging by fuel must hold 6 test cases, one failure of type FUEL, 1 skipped: {}",
        excerpt(&xml)
    );

    // Unreplayable: another wasmtime version, another engine digest, a blob left out.
    let start = json_entries
        .iter()
        .position(|e| e["type"] == "invocation-start" && e["invocation"] == remember)
        .ok_or_else(|| failed("remember has no start"))?;
    for (what, entries) in [
        (
            "another wasmtime version",
            changed(start, &|e| e["wasmtime_version"] = json!("0.0.1")),
        ),
        (
            "another engine digest",
            changed(start, &|e| e["engine_digest"] = json!(hex(&[0x42; 32]))),
        ),
    ] {
        let (run, _) = replay("unreplayable.export", &entries, true)?;
        run.expect(10, &format!("replay of an invocation recorded with {what}"))?;
    }
    let (run, _) = replay("blobless.export", &json_entries, false)?;
    run.expect(
        10,
        "replay of an export without the blob its entries refer to",
    )?;
    ensure!(
        run.stderr.contains(&hex(&sha256(big.as_bytes()))),
        "replay of an export without its blob must name the blob's digest: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn interrupted_invocations_ended(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(e.to_string()))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    for pipe in ["one", "two"] {
        let made = std::process::Command::new("mkfifo")
            .arg(shared.join(pipe))
            .status()
            .map_err(|e| Failure::NotApplicable(format!("mkfifo is not available: {e}")))?;
        if !made.success() {
            return Err(Failure::NotApplicable("mkfifo failed".into()));
        }
    }
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet")?;
    let before = host.entries()?.len();
    let (mut child, url, token) = serve(&host)?;
    let calls: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|pipe| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let body = json!({
                    "capability": "files",
                    "function": "write-file",
                    "args": { "path": format!("/data/{pipe}"), "text": "hi" },
                });
                let _ = crate::target::Server::client()
                    .post(format!("{url}/v1/invoke"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send();
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut intents = 0;
    while started.elapsed() < std::time::Duration::from_secs(15) {
        let seg = read(&segment(&host)).unwrap_or_default();
        intents = seg
            .windows(b"open-at".len())
            .filter(|w| *w == b"open-at")
            .count();
        if intents >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    for c in calls {
        let _ = c.join();
    }
    ensure!(
        intents >= 2,
        "two effectful opens were not written ahead within 15 s ({intents} seen)"
    );
    // The next command opens the ledger: the recovery batch comes before anything else.
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet after the kill")?;
    let entries = host.entries()?;
    let exported = parse_export(&export(&host, "recovered.export", &[])?)?;
    let batches = batches(&exported)?;
    let open: Vec<u64> = {
        let mut started: Vec<u64> = entries[before..]
            .iter()
            .filter(|e| e["entry"]["type"] == "invocation-start")
            .filter_map(|e| e["entry"]["invocation"].as_u64())
            .collect();
        started.retain(|n| {
            of_invocation(&entries, *n)
                .iter()
                .any(|(_, e)| e["type"] == "host-call-intent")
        });
        started
    };
    ensure!(
        open.len() == 2,
        "two invocations were to be open when the server was killed: {open:?}"
    );
    // The recovery batch follows the last entry the open invocations wrote ahead.
    let first_after = entries
        .iter()
        .rposition(|e| {
            e["entry"]["type"] == "host-call-intent"
                && e["entry"]["invocation"]
                    .as_u64()
                    .is_some_and(|n| open.contains(&n))
        })
        .map(|p| p as u64 + 1)
        .ok_or_else(|| failed("no intent of the open invocations"))?;
    let batch = batch_of(&batches, first_after)
        .cloned()
        .ok_or_else(|| failed("no batch after the kill"))?;
    ensure!(
        batch.start == first_after && batch.end - batch.start == 4,
        "recovery must append one batch of a trap and an end for each of the two open invocations, before any other entry; the batch is {batch:?} from {first_after}: {:?}",
        kinds(&entries[first_after as usize..])
    );
    let recovery: Vec<&Json> = entries[batch.start as usize..batch.end as usize]
        .iter()
        .map(|e| &e["entry"])
        .collect();
    for n in &open {
        let traps = recovery
            .iter()
            .filter(|e| e["type"] == "trap" && e["invocation"] == *n && e["kind"] == "interrupted")
            .count();
        let ends = recovery
            .iter()
            .filter(|e| {
                e["type"] == "invocation-end" && e["invocation"] == *n && e["result"].is_null()
            })
            .count();
        ensure!(
            traps == 1 && ends == 1,
            "open invocation {n} must be ended by one interrupted trap and one end without result in the recovery batch: {}",
            excerpt(&json!(recovery).to_string())
        );
    }
    // The two invocations' batches interleave, and each one's entries are found in order.
    let spans: Vec<(u64, u64)> = open
        .iter()
        .map(|n| {
            let own = of_invocation(&entries, *n);
            (own[0].0, own[own.len() - 1].0)
        })
        .collect();
    ensure!(
        spans[0].0 < spans[1].1 && spans[1].0 < spans[0].1,
        "the two concurrent invocations' entries do not interleave: {spans:?}"
    );
    for n in &open {
        let own = of_invocation(&entries, *n);
        let types: Vec<&str> = own
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap_or("?"))
            .collect();
        let seqs: Vec<u64> = own
            .iter()
            .filter(|(_, e)| e["type"] == "host-call" || e["type"] == "host-call-intent")
            .filter_map(|(_, e)| e["seq"].as_u64())
            .collect();
        ensure!(
            types.first() == Some(&"invocation-start")
                && types.ends_with(&["trap", "invocation-end"])
                && seqs.windows(2).all(|w| w[0] <= w[1])
                && seqs.first() == Some(&0),
            "invocation {n}'s entries are not found in order (start, its calls by seq from 0, trap, end): {types:?} {seqs:?}"
        );
    }
    let next = entries.get(batch.end as usize).map(|e| &e["entry"]["type"]);
    ensure!(
        next.is_some_and(|t| t == "invocation-start" || t == "policy-change"),
        "the next invocation must follow the recovery batch: {next:?}"
    );
    Ok(())
}

fn kv_writes_of_returned_invocations(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "remember", json!({ "key": "k", "value": "one" }), 0)?;
    let entries = host.entries()?;
    let n = last_invocation(&entries).ok_or_else(|| failed("no invocation"))?;
    let own = of_invocation(&entries, n);
    let budget = own[0].1["fuel_budget"].as_u64().unwrap_or(0);
    let total = own[own.len() - 1].1["fuel_consumed"].as_u64().unwrap_or(0);
    let set = own
        .iter()
        .find(|(_, e)| {
            e["type"] == "host-call" && e["function"].as_str().is_some_and(|f| f.contains("set"))
        })
        .map(|(_, e)| *e)
        .ok_or_else(|| failed("remember recorded no set call"))?;
    let before = budget - set["fuel_remaining"].as_u64().unwrap_or(budget);
    let after = total.saturating_sub(before);
    if after < 2 {
        return Err(Failure::NotApplicable(format!(
            "remember consumes {after} fuel after its set call: no budget runs out between the write and the return"
        )));
    }
    // A budget that lasts through the set call and runs out before the return.
    let fuel = (before + after / 2).to_string();
    call_with(
        &host,
        "remember",
        json!({ "key": "k", "value": "two" }),
        &["--fuel", &fuel],
        4,
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries).ok_or_else(|| failed("no invocation"))?;
    let own = of_invocation(&entries, n);
    let wrote = own.iter().any(|(_, e)| {
        e["type"] == "host-call"
            && e["function"].as_str().is_some_and(|f| f.contains("set"))
            && e["params"].to_string().contains(&STANDARD.encode("two"))
    });
    ensure!(
        wrote && own.iter().any(|(_, e)| e["type"] == "trap"),
        "the invocation on {fuel} fuel was to make its set call of `two` and then run out of fuel: {:?}",
        own.iter()
            .map(|(_, e)| e["type"].clone())
            .collect::<Vec<_>>()
    );
    let recalled = |host: &Host| -> Result<String, Failure> {
        Ok(call(host, "recall", json!({ "key": "k" }), 0)?.stdout)
    };
    let seen = recalled(&host)?;
    ensure!(
        seen.contains("one") && !seen.contains("two"),
        "after a returned write of `one` and a trapped write of `two`, recall must read `one`: {}",
        excerpt(&seen)
    );
    host.ok(&["log", "reindex"])?;
    let seen = recalled(&host)?;
    ensure!(
        seen.contains("one") && !seen.contains("two"),
        "after log reindex, recall must still read `one`, never the trapped write: {}",
        excerpt(&seen)
    );
    call(
        &host,
        "remember",
        json!({ "key": "k", "value": "three" }),
        0,
    )?;
    let seen = recalled(&host)?;
    ensure!(
        seen.contains("three"),
        "a later returned write of `three` must be read back: {}",
        excerpt(&seen)
    );
    Ok(())
}

/// `serve --listen 127.0.0.1:0` on the host's data directory: the process, its URL and a
/// token of `user:local`.
fn serve(host: &Host) -> Result<(std::process::Child, String, String), Failure> {
    let token = host.ok(&["token", "create", "--principal", "user:local"])?;
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        use std::io::BufRead as _;
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    match line.trim().strip_prefix("listening on ") {
        Some(url) => Ok((child, url.to_owned(), token.trim().to_owned())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failed(format!(
                "serve must first print `listening on URL`: {line:?}"
            )))
        }
    }
}

fn acknowledged_entries_survive_a_kill(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let (mut child, url, token) = serve(&host)?;
    // A first call, so the component is compiled before the clock starts.
    let first = crate::target::Server::client()
        .post(format!("{url}/v1/invoke"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(super::GREET)
        .send()
        .map(|a| a.status().as_u16());
    if first.as_ref().ok() != Some(&200) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed(format!(
            "the first POST /v1/invoke of hello.greet: {first:?}"
        )));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, token, stop) = (url.clone(), token.clone(), stop.clone());
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut receipts = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let body = json!({
                        "capability": "hello",
                        "function": "greet",
                        "args": { "name": format!("worker {w} call {i}") },
                    });
                    let answer = crate::target::Server::client()
                        .post(format!("{url}/v1/invoke"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send();
                    let Ok(answer) = answer else { break };
                    if answer.status().as_u16() == 200
                        && let Ok(text) = answer.text()
                        && let Ok(json) = serde_json::from_str::<Json>(&text)
                    {
                        receipts.push(json["receipt"].clone());
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                receipts
            })
        })
        .collect();
    // Killed while the workers are still asking, at no moment of the server's choosing.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(20)
        && (started.elapsed() < std::time::Duration::from_secs(2)
            || answered.load(std::sync::atomic::Ordering::SeqCst) < 12)
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let receipts: Vec<Json> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    ensure!(
        receipts.len() >= 4,
        "the server answered only {} invocations in 20 s",
        receipts.len()
    );
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify after the server was killed")?;
    let entries = host.entries()?;
    let exported = parse_export(&export(&host, "after-kill.export", &[])?)?;
    let leaves: Vec<[u8; 32]> = exported.entries.iter().map(|e| leaf(e)).collect();
    let mut taken = std::collections::BTreeMap::new();
    for r in &receipts {
        let (Some(n), Some(first), Some(last), Some(size)) = (
            r["invocation"].as_u64(),
            r["entries"][0].as_u64(),
            r["entries"][1].as_u64(),
            r["tree_size"].as_u64(),
        ) else {
            return Err(failed(format!(
                "a receipt without invocation, entries or tree_size: {r}"
            )));
        };
        let at = |i: u64| entries.get(i as usize).map(|e| &e["entry"]);
        ensure!(
            at(first).is_some_and(|e| e["type"] == "invocation-start" && e["invocation"] == n)
                && at(last).is_some_and(|e| e["type"] == "invocation-end" && e["invocation"] == n),
            "the receipt of invocation {n} names entries {first}..={last}; after the kill they are not its start and end ({} entries survive)",
            entries.len()
        );
        ensure!(
            last < size && size as usize <= leaves.len(),
            "the receipt of invocation {n} names tree size {size} for entries up to {last}; {} survive",
            leaves.len()
        );
        ensure!(
            r["root"] == json!(hex(&mth(&leaves[..size as usize]))),
            "the receipt of invocation {n} names a root that is not the tree hash of the first {size} surviving entries"
        );
        for i in first..=last {
            if let Some(other) = taken.insert(i, n) {
                return Err(failed(format!(
                    "position {i} was given to invocation {other} and to invocation {n}"
                )));
            }
        }
    }
    Ok(())
}

fn inclusion_probes(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for text in ["one", "two", "three"] {
        call(&host, "echo", json!({ "text": text }), 0)?;
    }
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    let key = key_text(&host)?;
    let pinned = published_key(&host)?;
    let real = signer(&host)?;
    let n = host.entries()?.len() as u64;
    let mut probes = 0;
    for index in [0, 1, n / 2, n - 1] {
        let proof = host.ok(&["log", "prove", &index.to_string()])?;
        crypto::proof(&proof, &pinned).map_err(|e| failed(format!("log prove {index}: {e}")))?;
        let (head, note) = proof
            .split_once("\n\n")
            .ok_or_else(|| failed("the proof has no checkpoint"))?;
        let (origin, size, root) = body(note)?;
        let lines: Vec<String> = head.lines().map(str::to_owned).collect();
        let (fixed, path) = lines.split_at(3.min(lines.len()));
        ensure!(
            fixed.len() == 3
                && fixed[1].starts_with("extra ")
                && fixed[2] == format!("index {index}"),
            "log prove {index} does not print the header, extra and index lines: {}",
            excerpt(head)
        );
        let assemble = |fixed: &[String], path: &[String], note: &str| {
            let mut text = fixed.join("\n");
            for h in path {
                text.push('\n');
                text.push_str(h);
            }
            format!("{text}\n\n{note}")
        };
        let run = verify_proof(&host, &assemble(fixed, path, note), &key)?;
        run.expect(0, &format!("log verify-proof of entry {index} as proved"))?;
        let flip = |h: &str| {
            let mut raw = STANDARD.decode(h).unwrap_or_default();
            if let Some(b) = raw.first_mut() {
                *b ^= 0x01;
            }
            STANDARD.encode(raw)
        };
        let mut wrong: Vec<(String, String)> = Vec::new();
        let with_index = |i: u64| {
            let mut f = fixed.to_vec();
            f[2] = format!("index {i}");
            f
        };
        for i in [index + 1, index.wrapping_sub(1), index ^ 1, size, size + 1] {
            if i != index && i < u64::MAX {
                wrong.push((format!("index {i}"), assemble(&with_index(i), path, note)));
            }
        }
        let mut extra = fixed.to_vec();
        extra[1] = format!("extra {}", flip(&fixed[1]["extra ".len()..]));
        wrong.push(("another leaf".into(), assemble(&extra, path, note)));
        let zero = STANDARD.encode([0u8; 32]);
        let mut longer = path.to_vec();
        longer.push(zero.clone());
        wrong.push(("a hash appended".into(), assemble(fixed, &longer, note)));
        let mut longer = path.to_vec();
        longer.insert(0, zero);
        wrong.push(("a hash prepended".into(), assemble(fixed, &longer, note)));
        if !path.is_empty() {
            wrong.push((
                "the first hash left out".into(),
                assemble(fixed, &path[1..], note),
            ));
            wrong.push((
                "the last hash left out".into(),
                assemble(fixed, &path[..path.len() - 1], note),
            ));
            wrong.push(("no path".into(), assemble(fixed, &[], note)));
            for j in 0..path.len() {
                let mut changed = path.to_vec();
                changed[j] = flip(&path[j]);
                wrong.push((format!("hash {j} changed"), assemble(fixed, &changed, note)));
            }
        }
        if path.len() >= 2 {
            let mut swapped = path.to_vec();
            swapped.swap(0, 1);
            wrong.push((
                "the first two hashes swapped".into(),
                assemble(fixed, &swapped, note),
            ));
        }
        // The same path against a checkpoint, signed by the pinned key, of another size or root.
        for other in [size + 1, size - 1, size * 2] {
            if other > index && other != size {
                wrong.push((
                    format!("a checkpoint of size {other}"),
                    assemble(fixed, path, &real.checkpoint(&origin, other, &root)),
                ));
            }
        }
        let mut other_root = root;
        other_root[31] ^= 0x01;
        wrong.push((
            "a checkpoint of another root".into(),
            assemble(fixed, path, &real.checkpoint(&origin, size, &other_root)),
        ));
        // The verdict must be RFC 9162's, as the suite's own verifier computes it: a path can
        // be valid for another size too (leaf 0 of 18 and of 19 entries has the same path).
        for (what, text) in wrong {
            let expected = crypto::proof(&text, &pinned).is_ok();
            let run = verify_proof(&host, &text, &key)?;
            let accepted = run.code == 0 && run.stdout.contains("ok:");
            ensure!(
                accepted == expected && (accepted || run.code == 8),
                "log verify-proof of entry {index} with {what} must be {} as RFC 9162 says: exit {}, {}",
                if expected {
                    "accepted"
                } else {
                    "refused (exit 8)"
                },
                run.code,
                excerpt(&format!("{} {}", run.stdout, run.stderr))
            );
            probes += usize::from(!expected);
        }
    }
    ensure!(probes > 30, "only {probes} probes were to be refused");
    Ok(())
}

fn pinned_checkpoint_seen_before(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let old = export(&host, "old.export", &[])?;
    let seen = host.file(
        "seen.checkpoint",
        host.ok(&["log", "checkpoint"])?.as_bytes(),
    )?;
    call(&host, "echo", json!({ "text": "three" }), 0)?;
    let latest = host.file(
        "latest.checkpoint",
        host.ok(&["log", "checkpoint"])?.as_bytes(),
    )?;
    let forge = Forge::new(host, &[])?;
    let now = forge.host.files.path().join("original.export");
    let key = forge.key.as_str();
    let with = |file: &Path, checkpoint: &Path| -> Result<Run, Failure> {
        forge.host.run(&[
            "log",
            "verify",
            &s(file),
            "--key",
            key,
            "--checkpoint",
            &s(checkpoint),
        ])
    };
    with(&now, &seen)?.expect(0, "log verify of the log holding a checkpoint seen before")?;
    with(&now, &latest)?.expect(0, "log verify of the log holding its latest checkpoint")?;
    with(&old, &latest)?.expect(
        8,
        "log verify of an earlier export (rolled back) against a later checkpoint seen before",
    )?;
    // A fork: two entries before the seen checkpoint's size swapped, every checkpoint signed
    // again by the pinned key. It verifies alone, not against the checkpoint seen before.
    let (_, size, _) = body(&String::from_utf8_lossy(&read(&seen)?))?;
    let mut entries = forge.export.entries.clone();
    let at = (size as usize) - 1;
    entries.swap(at - 1, at);
    let forked = forge.write("forked.export", entries)?;
    verify_file(&forge.host, &forked, &[key])?.expect(
        0,
        "log verify of the forked export signed again, with no checkpoint pinned",
    )?;
    with(&forked, &seen)?.expect(
        8,
        "log verify of a fork holding another root at the size of a checkpoint seen before",
    )?;
    Ok(())
}

/// A checkpoint note without its signatures: the bare checkpoint text.
fn bare(note: &[u8]) -> Result<Vec<u8>, Failure> {
    let text = String::from_utf8_lossy(note);
    let (body, _) = text.split_once("\n\n").ok_or_else(|| {
        failed(format!(
            "a checkpoint is not a signed note: {}",
            excerpt(&text)
        ))
    })?;
    Ok(format!("{body}\n").into_bytes())
}

fn unsigned_checkpoints(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let key = key_text(&host)?;
    let honest = parse_export(&export(&host, "honest.export", &[])?)?;
    let (sizes, _) = sizes_and_origin(&honest)?;
    ensure!(
        sizes.len() >= 2,
        "the export holds {} checkpoints; two invocations commit at least two",
        sizes.len()
    );
    let unsigned = Export {
        checkpoints: honest
            .checkpoints
            .iter()
            .map(|c| bare(c))
            .collect::<Result<_, _>>()?,
        ..honest.clone()
    };
    // Verified where no ledger records a key, so that none is pinned unless given.
    let elsewhere = target.host()?;
    let file = elsewhere.file("unsigned.export", &unsigned.write())?;
    let run = verify_file(&elsewhere, &file, &[])?;
    run.expect(
        0,
        "log verify without a key of an export whose checkpoints are bare",
    )?;
    let expected = format!(
        "ok: {} entries, {} checkpoints verified; signatures not checked: the checkpoints are unsigned",
        unsigned.entries.len(),
        sizes.len()
    );
    ensure!(
        run.stdout.trim_end() == expected,
        "log verify without a key of an unsigned export must print {expected:?}, saying that no signature was checked; it printed {}",
        excerpt(&run.stdout)
    );
    // Against a pinned key, the first bare checkpoint is signed by nobody.
    let run = verify_file(&elsewhere, &file, &[&key])?;
    run.expect(
        8,
        "log verify --key of an export whose checkpoints are bare",
    )?;
    let unknown = format!(
        "checkpoint 0 (tree size {}) is not signed by a pinned key",
        sizes[0]
    );
    ensure!(
        run.stderr.contains(&unknown),
        "log verify --key of an unsigned export must fail naming checkpoint 0 as {unknown:?}: {}",
        excerpt(&run.stderr)
    );
    // Without signatures the entries are still checked against the roots.
    let mut altered = unsigned.clone();
    let last = altered.entries.len() - 1;
    if let Some(byte) = altered.entries[last].last_mut() {
        *byte ^= 0x01;
    }
    let path = elsewhere.file("altered.export", &altered.write())?;
    verify_file(&elsewhere, &path, &[])?.expect(
        8,
        "log verify without a key of an unsigned export with its last entry altered",
    )?;
    // Signatures nobody checked are never called verified: a signed export, or one with a
    // single signed checkpoint among bare ones, is refused without a key.
    let mut mixed = unsigned.clone();
    mixed.checkpoints[sizes.len() - 1] = honest.checkpoints[sizes.len() - 1].clone();
    for (name, export) in [("signed.export", &honest), ("mixed.export", &mixed)] {
        let path = elsewhere.file(name, &export.write())?;
        let run = verify_file(&elsewhere, &path, &[])?;
        run.expect(
            2,
            &format!("log verify without a key of {name}, which holds signed checkpoints"),
        )?;
        ensure!(
            !run.stdout.contains("ok"),
            "log verify without a key of {name} must not report it verified: {}",
            excerpt(&run.stdout)
        );
        let code = if name == "signed.export" { 0 } else { 8 };
        verify_file(&elsewhere, &path, &[&key])?
            .expect(code, &format!("log verify --key of {name}"))?;
    }
    Ok(())
}

fn host_call_faults(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        b"[limits]\nmax_recorded_bytes = 2000\n",
    )?;
    call(&host, "echo", json!({ "text": "fine" }), 0)?;
    let value = "z".repeat(3000);
    let run = host.invoke("remember", &json!({ "key": "k", "value": value }), &[])?;
    ensure!(
        run.code != 0,
        "a set call past the 2000 recorded bytes cap returned"
    );
    let forge = Forge::new(host, &["--with-components"])?;
    let entries: Vec<Json> = forge
        .host
        .entries()?
        .iter()
        .map(|e| e["entry"].clone())
        .collect();
    let set = entries
        .iter()
        .position(|e| {
            e["type"] == "host-call" && e["function"].as_str().is_some_and(|f| f.ends_with("set"))
        })
        .ok_or_else(|| failed("the set call past the cap was not recorded"))?;
    let result = &entries[set]["result"];
    let message = result["variant"]["payload"]["string"]
        .as_str()
        .unwrap_or("");
    ensure!(
        (result["variant"]["case"] == "limit" || result["variant"]["case"] == "trap")
            && message.contains("limit")
            && result["variant"].as_object().map(|o| o.len()) == Some(2),
        "a host call that did not return must record the variant limit(message) or trap(message) as its result: {result}"
    );
    // The honest recording of the failed call replays identically: the fault answers it.
    let other = target.host()?;
    let replay = |name: &str, entries: &[Json]| -> Result<(Run, Json), Failure> {
        let bytes = entries
            .iter()
            .map(|e| encode(e).map_err(|m| failed(format!("{name}: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let path = forge.write(name, bytes)?;
        replay_json(&other, &path, &forge.key, &[])
    };
    let (run, report) = replay("honest.export", &entries)?;
    run.expect(0, "replay of the recording of a call that hit its limit")?;
    ensure!(
        report["identical"] == 2 && report["divergent"] == 0,
        "the recording of a failed host call must replay identically (on a host without the cap): {}",
        excerpt(&run.stdout)
    );
    // What is not a fault is not taken for one: it does not fit the call's type.
    let limit = result["variant"].clone();
    for (what, forged) in [
        (
            "a tuple holding the fault",
            json!({ "tuple": [ { "variant": limit } ] }),
        ),
        (
            "a limit without its message",
            json!({ "variant": { "case": "limit", "payload": null } }),
        ),
        (
            "a variant of another case",
            json!({ "variant": { "case": "oops", "payload": { "string": message } } }),
        ),
        (
            "a trap whose payload is no string",
            json!({ "variant": { "case": "trap", "payload": { "u32": 7 } } }),
        ),
    ] {
        let mut all = entries.clone();
        all[set]["result"] = forged;
        let (run, report) = replay("not-a-fault.export", &all)?;
        run.expect(9, &format!("replay of a set call answered by {what}"))?;
        let r = report_of(&report, "remember");
        // (The JSON report names this class UNANSWERABLE; its text, and specification 38, ORDER.)
        ensure!(
            r["divergence"]["class"] == "ORDER" || r["divergence"]["class"] == "UNANSWERABLE",
            "a set call answered by {what} must not be taken for a fault: the answer does not fit its type (ORDER): {}",
            excerpt(&r.to_string())
        );
    }
    Ok(())
}

/// A value's canonical bytes, built here from the value table for what a case expects.
struct Bytes(Vec<u8>);

impl Bytes {
    fn tag(mut self, t: u8) -> Self {
        self.0.push(t);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn text(self, t: &str) -> Self {
        let mut b = self.u32(t.len() as u32);
        b.0.extend_from_slice(t.as_bytes());
        b
    }
    fn val_u32(self, v: u32) -> Self {
        self.tag(0x08).u32(v)
    }
    fn flags(self, names: &[&str]) -> Self {
        let mut b = self.tag(0x15).u32(names.len() as u32);
        for n in names {
            b = b.text(n);
        }
        b
    }
}

fn value_encoding(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let out = host.ok(&[
        "invoke",
        "textstats",
        "analyze",
        "--args",
        r#"{"text":"ab cd efg. Hi","top":2}"#,
    ])?;
    let stats: Json = serde_json::from_str(&out).map_err(|e| failed(format!("analyze: {e}")))?;
    let n = |k: &str| stats[k].as_u64().map(|v| v as u32).unwrap_or(u32::MAX);
    let average = stats["average-word-length"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        average == 2.25 && stats["top-words"].as_array().map(Vec::len) == Some(2),
        "textstats.analyze of \"ab cd efg. Hi\" must give an average word length of 2.25 and two top words: {out}"
    );
    // result: option tag, then the record `stats` with its fields in the order WIT declares.
    let mut b = Bytes(vec![0x01]).tag(0x0f).u32(7);
    for field in ["bytes", "characters", "words", "lines", "sentences"] {
        b = b.text(field).val_u32(n(field));
    }
    b = b.text("average-word-length").tag(0x0b);
    b.0.extend_from_slice(&average.to_bits().to_le_bytes());
    b = b.text("top-words").tag(0x0e).u32(2);
    for w in stats["top-words"].as_array().cloned().unwrap_or_default() {
        b = b
            .tag(0x0f)
            .u32(2)
            .text("word")
            .tag(0x0d)
            .text(w["word"].as_str().unwrap_or(""))
            .text("count")
            .val_u32(w["count"].as_u64().unwrap_or(0) as u32);
    }
    let expected_result = b.0;
    host.ok(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/x.txt","text":"hi"}"#,
    ])?;
    let entries = host.entries()?;
    let exported = parse_export(&export(&host, "values.export", &[])?)?;
    let end = entries
        .iter()
        .position(|e| {
            e["entry"]["type"] == "invocation-end" && e["entry"]["result"].get("record").is_some()
        })
        .ok_or_else(|| failed("the analyze invocation's end holds no record"))?;
    let bytes = &exported.entries[end];
    ensure!(
        bytes.len() > 10 && bytes[10..].starts_with(&expected_result),
        "the recorded result of textstats.analyze is not the record's canonical encoding (fields in WIT order, the f64 as its IEEE 754 bits):\n  recorded {}\n  expected {}",
        excerpt(&hex(&bytes[10.min(bytes.len())..])),
        excerpt(&hex(&expected_result))
    );
    // open-at's parameters: a tuple in WIT order, each flags value in declaration order.
    let open = entries
        .iter()
        .position(|e| {
            e["entry"]["type"] == "host-call-intent"
                && e["entry"]["function"] == "[method]descriptor.open-at"
        })
        .ok_or_else(|| failed("write-file wrote no open-at ahead"))?;
    let handle = entries[open]["entry"]["params"]["tuple"][0]["u32"]
        .as_u64()
        .unwrap_or(0) as u32;
    let expected_params = Bytes(vec![])
        .tag(0x10)
        .u32(5)
        .val_u32(handle)
        .flags(&["symlink-follow"])
        .tag(0x0d)
        .text("x.txt")
        .flags(&["create", "truncate"])
        .flags(&["write"])
        .0;
    ensure!(
        exported.entries[open]
            .windows(expected_params.len())
            .any(|w| w == expected_params),
        "the recorded parameters of open-at are not the tuple (descriptor, path-flags, path, open-flags, descriptor-flags) with its flags in declaration order: {}",
        excerpt(&entries[open].to_string())
    );
    Ok(())
}

fn what_if_policy(target: &Target) -> Result<(), Failure> {
    let everyone = "permit (principal, action, resource);\n";
    let host = target.host()?;
    host.policy(everyone)?;
    let greet = |name: &str, who: &[&str], code: i32| -> Result<u64, Failure> {
        let args = json!({ "name": name }).to_string();
        let mut all = vec!["invoke", "hello", "greet", "--args", &args];
        all.extend_from_slice(who);
        host.run(&all)?
            .expect(code, &format!("hello.greet of {name}"))?;
        last_invocation(&host.entries()?).ok_or_else(|| failed("no invocation recorded"))
    };
    let local = greet("Ada", &[], 0)?;
    let ops = greet("Bob", &["--principal", "user:bob", "--group", "ops"], 0)?;
    let carol = greet("Carol", &["--principal", "user:carol"], 0)?;
    host.policy(
        "permit (principal, action, resource) unless { action == FemtoClaw::Action::\"invoke\" && resource is FemtoClaw::Capability && resource.name == \"hello\" };\n\
         @approval(\"required\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"hello\" };\n",
    )?;
    let pending = greet("Dave", &[], 13)?;
    let key = key_text(&host)?;
    let file = export(&host, "what-if.export", &[])?;
    let other = target.host()?;
    let ask = |name: &str, policy: &str| -> Result<Vec<Json>, Failure> {
        let path = other.file(name, policy.as_bytes())?;
        let run = other.run(&[
            "replay",
            &s(&file),
            "--key",
            &key,
            "--what-if-policy",
            &s(&path),
            "--json",
        ])?;
        run.expect(0, &format!("replay --what-if-policy {name}"))?;
        Ok(run.json()?["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    };
    let of = |changed: &[Json], n: u64| -> Vec<Json> {
        changed
            .iter()
            .filter(|c| c["invocation"] == n)
            .cloned()
            .collect()
    };
    let invoke_change = |changed: &[Json], n: u64| -> Option<Json> {
        of(changed, n)
            .into_iter()
            .find(|c| c["action"].as_str().is_some_and(|a| a.contains("invoke")))
    };
    // Asked with the recorded principal and groups: only the ops member stays allowed.
    let changed = ask(
        "ops-only.cedar",
        "@id(\"ops-only\")\npermit (principal in FemtoClaw::Group::\"ops\", action, resource);\n",
    )?;
    for (who, n) in [("the local user", local), ("carol", carol)] {
        let c = invoke_change(&changed, n);
        ensure!(
            c.as_ref().is_some_and(|c| c["change"]
                .as_str()
                .is_some_and(|t| t.starts_with("allow") && t.ends_with("deny"))),
            "under a policy permitting only group ops, {who}'s recorded invoke (invocation {n}) must be listed allow→deny: {}",
            excerpt(&json!(changed).to_string())
        );
    }
    ensure!(
        of(&changed, ops).is_empty(),
        "bob, recorded in group ops, is still permitted: nothing of invocation {ops} may be listed: {}",
        excerpt(&json!(of(&changed, ops)).to_string())
    );
    // The policy ids deciding now; approvals no longer needed.
    let changed = ask(
        "no-carol.cedar",
        "@id(\"all\")\npermit (principal, action, resource);\n@id(\"no-carol\")\nforbid (principal == FemtoClaw::User::\"carol\", action, resource);\n",
    )?;
    let c = invoke_change(&changed, carol);
    ensure!(
        c.as_ref()
            .is_some_and(|c| c["policy_ids"] == json!(["no-carol"])
                && c["change"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("allow") && t.ends_with("deny"))),
        "carol's recorded invoke must be listed allow→deny with the deciding policy id no-carol: {}",
        excerpt(&json!(changed).to_string())
    );
    ensure!(
        of(&changed, local).is_empty() && of(&changed, ops).is_empty(),
        "decisions the policy takes the same way must not be listed: {}",
        excerpt(&json!(changed).to_string())
    );
    let c = of(&changed, pending);
    ensure!(
        c.iter().any(|c| c["change"]
            .as_str()
            .is_some_and(|t| t.starts_with("approval") && t.ends_with("allow"))),
        "the call recorded as pending approval (invocation {pending}) would no longer need one: it must be listed approval→allow: {}",
        excerpt(&json!(changed).to_string())
    );
    // Approvals newly needed.
    let changed = ask(
        "ask.cedar",
        "permit (principal, action, resource) unless { action == FemtoClaw::Action::\"invoke\" && resource is FemtoClaw::Capability && resource.name == \"hello\" };\n\
         @id(\"ask\")\n@approval(\"required\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"hello\" };\n",
    )?;
    for n in [local, ops, carol] {
        let c = invoke_change(&changed, n);
        ensure!(
            c.as_ref().is_some_and(|c| c["change"]
                .as_str()
                .is_some_and(|t| t.starts_with("allow") && t.ends_with("approval"))),
            "under a policy asking for approval of hello, invocation {n}'s recorded invoke must be listed allow→approval: {}",
            excerpt(&json!(changed).to_string())
        );
    }
    ensure!(
        of(&changed, pending).is_empty(),
        "the call recorded as pending approval still needs one: nothing of invocation {pending} may be listed: {}",
        excerpt(&json!(of(&changed, pending)).to_string())
    );
    Ok(())
}

fn effect_after_write_ahead(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(e.to_string()))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    let pipe = shared.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .map_err(|e| Failure::NotApplicable(format!("mkfifo is not available: {e}")))?;
    if !made.success() {
        return Err(Failure::NotApplicable("mkfifo failed".into()));
    }
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet")?;
    // Opening the FIFO for reading returns once the host opens it for writing: the effect.
    // The segment is read at that moment: the open's intent must already be there, closed
    // by a commit record (durable, under a checkpoint).
    let seg = segment(&host);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let pipe = pipe.clone();
        std::thread::spawn(move || {
            let opened = std::fs::File::open(&pipe);
            let seen = std::fs::read(&seg).unwrap_or_default();
            let _ = tx.send(seen);
            if let Ok(mut f) = opened {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut f, &mut sink);
            }
        })
    };
    let mut writer = host
        .command(&[
            "invoke",
            "files",
            "write-file",
            "--args",
            r#"{"path":"/data/pipe","text":"hi"}"#,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start the call: {e}")))?;
    let seen = rx.recv_timeout(std::time::Duration::from_secs(60));
    if seen.is_err() {
        // Unblock the reader ourselves.
        let _ = std::fs::OpenOptions::new().write(true).open(&pipe);
    }
    let _ = reader.join();
    let status = writer.wait().map_err(|e| failed(e.to_string()))?;
    let Ok(seen) = seen else {
        return Err(failed(
            "the host did not open the file for writing within 60 s",
        ));
    };
    ensure!(
        status.success(),
        "the write to the FIFO did not succeed: {status}"
    );
    let recs = records(&seen).map_err(failed)?;
    let intent = recs.iter().position(|(kind, payload)| {
        *kind == 0x00
            && payload.get(1) == Some(&8)
            && payload.windows(b"open-at".len()).any(|w| w == b"open-at")
    });
    let Some(intent) = intent else {
        return Err(failed(
            "when the host opened the file, the segment held no host-call-intent of the open",
        ));
    };
    ensure!(
        recs[intent..].iter().any(|(kind, _)| *kind == 0x02),
        "when the host opened the file, the open's intent was not yet closed by a commit record"
    );
    // Its record as done comes after that commit: what the segment held when the open was
    // seen is a moment later than the open itself, so the done record may already be there
    // then; in the ledger it follows the intent's commit.
    let all = records(&std::fs::read(segment(&host)).unwrap_or_default()).map_err(failed)?;
    let is_open = |kind: u8, payload: &[u8], entry: u8| {
        kind == 0x00
            && payload.get(1) == Some(&entry)
            && payload.windows(b"open-at".len()).any(|w| w == b"open-at")
    };
    let intent_at = all.iter().position(|(k, p)| is_open(*k, p, 8));
    let done_at = all.iter().position(|(k, p)| is_open(*k, p, 2));
    ensure!(
        matches!((intent_at, done_at), (Some(i), Some(d))
            if all[i..d].iter().any(|(kind, _)| *kind == 0x02)),
        "the open must be recorded as done after its intent's commit record: intent at {intent_at:?}, done at {done_at:?}"
    );
    Ok(())
}

/// A loopback OTLP receiver: every request body it is sent, answered 200.
/// What a loopback receiver was sent.
type Received = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn collector() -> Result<(String, Received), Failure> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot listen on loopback: {e}")))?;
    let addr = listener.local_addr().map_err(|e| failed(e.to_string()))?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut bytes = Vec::new();
            let mut buf = [0u8; 65536];
            // Headers, then as much body as Content-Length says.
            let mut want = None;
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
                if want.is_none()
                    && let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n")
                {
                    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    want = Some(end + 4 + len);
                }
                if want.is_some_and(|w| bytes.len() >= w) {
                    break;
                }
            }
            if let Ok(mut s) = store.lock() {
                s.extend_from_slice(&bytes);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    Ok((format!("http://{addr}"), seen))
}

fn commits_traced(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let (endpoint, seen) = collector()?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_protocol = \"http/protobuf\"\n")
            .as_bytes(),
    )?;
    let (mut child, url, token) = serve(&host)?;
    let answer = crate::target::Server::client()
        .post(format!("{url}/v1/invoke"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(super::GREET)
        .send()
        .map(|a| a.status().as_u16());
    let names = [
        "femtoclaw.ledger.commit",
        "femtoclaw.ledger.batch.appends",
        "femtoclaw.ledger.batch.entries",
        "femtoclaw.ledger.fsync_ms",
        "femtoclaw.ledger.tree_size",
    ];
    let has = |bytes: &[u8], name: &str| bytes.windows(name.len()).any(|w| w == name.as_bytes());
    let started = std::time::Instant::now();
    let mut all = false;
    while started.elapsed() < std::time::Duration::from_secs(25) {
        let bytes = seen.lock().map(|s| s.clone()).unwrap_or_default();
        if names.iter().all(|n| has(&bytes, n)) {
            all = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    ensure!(
        answer.as_ref().ok() == Some(&200),
        "POST /v1/invoke of hello.greet: {answer:?}"
    );
    let bytes = seen.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(
        all,
        "within 25 s the OTLP receiver was sent no span {} with {}; it saw {} bytes, holding {:?}",
        names[0],
        names[1..].join(", "),
        bytes.len(),
        names.iter().filter(|n| has(&bytes, n)).collect::<Vec<_>>()
    );
    Ok(())
}

fn validator_agrees_with_decoder(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let real = signer(&host)?;
    let exported = parse_export(&export(&host, "before.export", &[])?)?;
    let (_, origin) = sizes_and_origin(&exported)?;
    let n = exported.entries.len();
    let seg_path = segment(&host);
    let head_path = host.data.path().join("latest-checkpoint");
    let original = read(&seg_path)?;
    let head = read(&head_path)?;
    let mut nested = vec![];
    for _ in 0..126 {
        nested.extend_from_slice(&[0x0e, 1, 0, 0, 0]);
    }
    nested.extend_from_slice(&[0x01, 0x01]);
    let mut deep = vec![0x0e, 1, 0, 0, 0];
    deep.extend_from_slice(&nested);
    let mut option_tag = end_with(&[0x01, 0x01]);
    option_tag[10] = 0x02;
    let mut later = exported.entries[n - 1].clone();
    later[0] = 0x04;
    let mut trailing = end_with(&[0x01, 0x01]);
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("a bool", end_with(&[0x01, 0x01]), None),
        ("a result nested 127 deep", end_with(&nested), None),
        (
            "a bool tag 0x02",
            end_with(&[0x01, 0x02]),
            Some("invalid bool tag `2` at byte 12"),
        ),
        (
            "an option tag 0x02",
            option_tag,
            Some("invalid option tag `2` at byte 10"),
        ),
        (
            "a char U+D800",
            end_with(&[0x0c, 0x00, 0xd8, 0x00, 0x00]),
            Some("not a unicode scalar value"),
        ),
        (
            "a string past the end",
            end_with(&[0x0d, 0xf0, 0xff, 0xff, 0xff, b'a']),
            Some("length at byte 12 exceeds the input"),
        ),
        (
            "a result nested 128 deep",
            end_with(&deep),
            Some("exceeds the limit"),
        ),
        ("version 4", later, Some("unsupported encoding version `4`")),
        ("a trailing byte", trailing, Some("trailing bytes at byte")),
    ];
    let mut leaves: Vec<[u8; 32]> = exported.entries.iter().map(|e| leaf(e)).collect();
    leaves.push([0; 32]);
    for (what, entry, refusal) in cases {
        leaves[n] = leaf(&entry);
        let note = real.checkpoint(&origin, n as u64 + 1, &mth(&leaves));
        let mut seg = original.clone();
        seg.extend_from_slice(&record(0x00, &entry));
        seg.extend_from_slice(&record(0x02, note.as_bytes()));
        write(&seg_path, &seg)?;
        write(&head_path, note.as_bytes())?;
        let verify = host.run(&["log", "verify"])?;
        let show = host.run(&["log", "show", "--json", "--from", &n.to_string()])?;
        write(&seg_path, &original)?;
        write(&head_path, &head)?;
        match refusal {
            None => {
                verify.expect(
                    0,
                    &format!("log verify of a committed entry holding {what}"),
                )?;
                show.expect(0, &format!("log show of a committed entry holding {what}"))?;
                // (Deeper than this suite's JSON reader goes: only the verdicts are compared.)
                if what.contains("nested") {
                    ensure!(
                        show.stdout.starts_with(&format!("{{\"index\":{n}")),
                        "log show does not list the entry holding {what}"
                    );
                    continue;
                }
                let line: Json = serde_json::from_str(show.stdout.lines().next().unwrap_or(""))
                    .map_err(|e| failed(format!("log show of {what}: {e}")))?;
                let again = encode(&line["entry"]).map_err(failed)?;
                ensure!(
                    again == entry,
                    "the entry holding {what} that the decoder accepted does not encode back to its bytes:\n  stored  {}\n  again   {}",
                    excerpt(&hex(&entry)),
                    excerpt(&hex(&again))
                );
            }
            Some(says) => {
                ensure!(
                    verify.code == 8 && verify.stderr.contains(says),
                    "log verify (the validator) of a committed entry holding {what} must refuse it saying {says:?}: exit {}, {}",
                    verify.code,
                    excerpt(&verify.stderr)
                );
                ensure!(
                    refused(&show) && show.stderr.contains(says),
                    "log show (the decoder) of a committed entry holding {what} must refuse it as the validator does, saying {says:?}: exit {}, {}",
                    show.code,
                    excerpt(&format!("{} {}", show.stdout, show.stderr))
                );
            }
        }
    }
    host.run(&["log", "verify"])?
        .expect(0, "log verify once the segment is restored")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `invoke conformance FUNCTION --args ARGS` plus `extra`, which must exit `code`.
fn call_with(
    host: &Host,
    function: &str,
    args: Json,
    extra: &[&str],
    code: i32,
) -> Result<Run, Failure> {
    let run = host.invoke(function, &args, extra)?;
    run.expect(code, &format!("invoke conformance {function} {args}"))?;
    Ok(run)
}

fn call(host: &Host, function: &str, args: Json, code: i32) -> Result<Run, Failure> {
    call_with(host, function, args, &[], code)
}

/// Exports the host's ledger (with `extra` flags); the file's path.
fn export(host: &Host, name: &str, extra: &[&str]) -> Result<PathBuf, Failure> {
    let path = host.files.path().join(name);
    let file = s(&path);
    let mut args = vec!["log", "export", file.as_str()];
    args.extend_from_slice(extra);
    host.ok(&args)?;
    Ok(path)
}

/// The verifier key `key show` prints.
fn key_text(host: &Host) -> Result<String, Failure> {
    Ok(host.ok(&["key", "show"])?.trim().to_owned())
}

/// Whether a run was a refusal rather than a crash: a Rust panic exits 101, a signal -1.
fn refused(run: &Run) -> bool {
    run.code != 0 && run.code != 101 && run.code != -1
}

// The RFC 6962 tree, computed here from the entries' bytes.

fn leaf(entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH(D[0..n]) of RFC 6962 §2.1 over leaf hashes.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.4.2: whether `proof` shows the tree of size `m` with root `old` to be a
/// prefix of the tree of size `n` with root `new`.
fn consistent(m: u64, n: u64, old: &[u8; 32], new: &[u8; 32], proof: &[[u8; 32]]) -> bool {
    if m == 0 || m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && old == new;
    }
    let mut path: Vec<[u8; 32]> = Vec::new();
    if m.is_power_of_two() {
        path.push(*old);
    }
    path.extend_from_slice(proof);
    let Some(first) = path.first() else {
        return false;
    };
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *old && sr == *new
}

// Signing keys: `PRIVATE+KEY+<name>+<8 hex id>+<base64(0x01 ‖ seed)>` (specification 37).

struct Signer {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::SigningKey,
}

fn key_id(name: &str, algorithm: u8, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, algorithm]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Signer {
    fn from_seed(name: &str, seed: [u8; 32]) -> Signer {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = key_id(name, 0x01, key.verifying_key().as_bytes());
        Signer {
            name: name.to_owned(),
            id,
            key,
        }
    }

    fn parse(text: &str) -> Result<Signer, String> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or("the key file does not begin PRIVATE+KEY+")?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "the key file is not PRIVATE+KEY+name+id+key: {text:?}"
            ));
        };
        let raw = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the key file's key is not base64: {e}"))?;
        let [0x01, seed @ ..] = raw.as_slice() else {
            return Err("the key file's key is not an Ed25519 (0x01) seed".into());
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| "the key file's seed is not 32 bytes".to_owned())?;
        let signer = Signer::from_seed(name, seed);
        if hex(&signer.id) != id {
            return Err(format!(
                "the key file's id {id} is not the seed's {}",
                hex(&signer.id)
            ));
        }
        Ok(signer)
    }

    /// The key file's text for this key (without its final newline).
    fn private_text(&self) -> String {
        let mut raw = vec![0x01];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex(&self.id),
            STANDARD.encode(raw)
        )
    }

    /// The verifier key text `name+id+base64(0x01 ‖ public)`.
    fn verifier(&self) -> String {
        let mut raw = vec![0x01];
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{}+{}", self.name, hex(&self.id), STANDARD.encode(raw))
    }

    /// A signature line of a signed note over `text`.
    fn line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut raw = self.id.to_vec();
        raw.extend_from_slice(&signature.to_bytes());
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(raw))
    }

    /// A checkpoint note signed by this key alone.
    fn checkpoint(&self, origin: &str, size: u64, root: &[u8; 32]) -> String {
        let body = format!("{origin}\n{size}\n{}\n", STANDARD.encode(root));
        format!("{body}\n{}", self.line(&body))
    }
}

/// The host's signing key, read from its key file.
fn signer(host: &Host) -> Result<Signer, Failure> {
    let path = key_file(host);
    let text = String::from_utf8(read(&path)?)
        .map_err(|_| failed(format!("{} is not UTF-8", path.display())))?;
    Signer::parse(&text).map_err(|e| failed(format!("{}: {e}", path.display())))
}

fn key_file(host: &Host) -> PathBuf {
    host.data.path().join("keys/ledger-signing.key")
}

/// A checkpoint note's body lines: origin, size, root.
fn body(note: &str) -> Result<(String, u64, [u8; 32]), Failure> {
    let lines: Vec<&str> = note.split('\n').collect();
    let [origin, size, root, ..] = lines.as_slice() else {
        return Err(failed(format!("not a checkpoint: {}", excerpt(note))));
    };
    let size = size
        .parse()
        .map_err(|_| failed(format!("checkpoint size {size:?}")))?;
    let root: [u8; 32] = STANDARD
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| failed(format!("checkpoint root {root:?}")))?;
    Ok(((*origin).to_owned(), size, root))
}

/// The export with `entries` in place of its own, and checkpoints at `sizes` over them, each
/// signed by the key `sign` picks for its size.
fn forged<'a>(
    original: &Export,
    entries: Vec<Vec<u8>>,
    sizes: &[u64],
    origin: &str,
    sign: &dyn Fn(u64) -> &'a Signer,
) -> Export {
    let leaves: Vec<[u8; 32]> = entries.iter().map(|e| leaf(e)).collect();
    let checkpoints = sizes
        .iter()
        .map(|&n| {
            let root = mth(&leaves[..n as usize]);
            sign(n).checkpoint(origin, n, &root).into_bytes()
        })
        .collect();
    Export {
        entries,
        checkpoints,
        components: original.components.clone(),
        blobs: original.blobs.clone(),
    }
}

/// The sizes of an export's checkpoints and their origin.
fn sizes_and_origin(export: &Export) -> Result<(Vec<u64>, String), Failure> {
    let mut sizes = Vec::new();
    let mut origin = String::new();
    for c in &export.checkpoints {
        let (o, n, _) = body(&String::from_utf8_lossy(c))?;
        sizes.push(n);
        origin = o;
    }
    Ok((sizes, origin))
}

/// A segment's records: (kind, payload), after its 16-byte header.
fn records(bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(8)? != b"FCLSEG\0\x01" {
        return Err("the segment does not begin with FCLSEG 0x00 0x01".into());
    }
    let _first = c.u64()?;
    let mut out = Vec::new();
    while c.at < bytes.len() {
        let len = c.u32()? as usize;
        let kind = c.u8()?;
        c.take(8)?;
        out.push((kind, c.take(len)?.to_vec()));
    }
    Ok(out)
}

/// A segment record: length, kind, SHA-256(kind ‖ payload)[..8], payload.
fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.push(kind);
    let mut h = Sha256::new();
    h.update([kind]);
    h.update(payload);
    out.extend_from_slice(&h.finalize()[..8]);
    out.extend_from_slice(payload);
    out
}

fn segment(host: &Host) -> PathBuf {
    host.data.path().join("ledger/segments/00000000.seg")
}

/// The abstract state's files: the segments, the head record, the policy digest and the keys.
fn state(host: &Host) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let data = host.data.path();
    let mut out = Vec::new();
    for dir in ["ledger/segments", "keys"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(data.join(dir))
            .map_err(|e| failed(format!("cannot list {dir}: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for path in names {
            out.push((s(&path), read(&path)?));
        }
    }
    for name in ["latest-checkpoint", "policy-digest"] {
        let path = data.join(name);
        out.push((name.to_owned(), std::fs::read(&path).unwrap_or_default()));
    }
    Ok(out)
}

/// Entries of one invocation, in ledger order, with their indexes.
fn of_invocation(entries: &[Json], n: u64) -> Vec<(u64, &Json)> {
    entries
        .iter()
        .filter(|e| e["entry"]["invocation"].as_u64() == Some(n))
        .map(|e| (e["index"].as_u64().unwrap_or(u64::MAX), &e["entry"]))
        .collect()
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    write(path, bytes)
}
