//! Cases of the ledger area: the entries' encoding as exports and proofs carry it, the segment
//! files of a data directory, blobs, `log show`, proofs and their notes, the export format,
//! verification with pinned keys and checkpoints, keys and their rotation, recovery of a
//! damaged ledger, the derived index and key-value store, replay, the configuration, quotas
//! and approvals. Every check reads only what the target prints or writes for its operator.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::{
    OPEN, failed, guest_host, hex, kinds, plain_text, published_key, read, s, sha256, snapshot,
    write,
};
use crate::format::{Cursor, Enc, Export, KINDS, b64, encode, parse_export};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.ledger.entry-encoding",
        verifies: &[
            "FC-MEM-2301",
            "FC-MEM-2302",
            "FC-MEM-2303",
            "FC-MEM-2308",
            "FC-MEM-2310",
            "FC-MEM-2323",
        ],
        run: entry_encoding,
    },
    Case {
        name: "cli.ledger.segment-records",
        verifies: &["FC-MEM-2401", "FC-MEM-2425", "FC-MEM-2427"],
        run: segment_records,
    },
    Case {
        name: "cli.ledger.blobs",
        verifies: &[
            "FC-MEM-2305",
            "FC-MEM-2306",
            "FC-MEM-2406",
            "FC-MEM-2508",
            "FC-CRYPTO-3804",
        ],
        run: blobs,
    },
    Case {
        name: "cli.ledger.show",
        verifies: &["FC-OBS-2701", "FC-OBS-2702"],
        run: show,
    },
    Case {
        name: "cli.ledger.invocation-start-names-everything",
        verifies: &["FC-OBS-2703", "FC-OBS-2704", "FC-ABI-4909"],
        run: invocation_start_names_everything,
    },
    Case {
        name: "cli.ledger.proof-pins-key-index-and-entry",
        verifies: &["FC-OBS-2705", "FC-CRYPTO-3613", "FC-CRYPTO-3805"],
        run: proof_pins_key_index_and_entry,
    },
    Case {
        name: "cli.ledger.proof-note-grammar",
        verifies: &["FC-CRYPTO-3609", "FC-CRYPTO-3610"],
        run: proof_note_grammar,
    },
    Case {
        name: "cli.ledger.export-format",
        verifies: &[
            "FC-OBS-2706",
            "FC-CRYPTO-3627",
            "FC-CRYPTO-3626",
            "FC-ABI-4904",
        ],
        run: export_format,
    },
    Case {
        name: "cli.ledger.export-damage-refused",
        verifies: &["FC-OBS-2717", "FC-CRYPTO-3616"],
        run: export_damage_refused,
    },
    Case {
        name: "cli.ledger.root-mismatch-names-batch",
        verifies: &["FC-CRYPTO-3615", "FC-CRYPTO-3819"],
        run: root_mismatch_names_batch,
    },
    Case {
        name: "cli.ledger.verify-trusts-no-logged-key",
        verifies: &["FC-CRYPTO-3614", "FC-CRYPTO-3801", "FC-OBS-2710"],
        run: verify_trusts_no_logged_key,
    },
    Case {
        name: "cli.key.rotation",
        verifies: &[
            "FC-CRYPTO-3607",
            "FC-CRYPTO-3701",
            "FC-CRYPTO-3702",
            "FC-CRYPTO-3703",
            "FC-CRYPTO-3705",
            "FC-CRYPTO-3714",
            "FC-CRYPTO-3718",
            "FC-CRYPTO-3802",
        ],
        run: key_rotation,
    },
    Case {
        name: "cli.key.file-and-names",
        verifies: &["FC-CRYPTO-3707", "FC-CRYPTO-3716"],
        run: key_file_and_names,
    },
    Case {
        name: "cli.ledger.torn-tail",
        verifies: &[
            "FC-OPS-5701",
            "FC-OPS-5702",
            "FC-OPS-5711",
            "FC-MEM-2416",
            "FC-MEM-2419",
            "FC-OBS-2716",
        ],
        run: torn_tail,
    },
    Case {
        name: "cli.ledger.committed-damage-refused",
        verifies: &["FC-MEM-2412", "FC-OPS-5708"],
        run: committed_damage_refused,
    },
    Case {
        name: "cli.ledger.acknowledged-entries-lost",
        verifies: &["FC-MEM-2413", "FC-OPS-5712"],
        run: acknowledged_entries_lost,
    },
    Case {
        name: "cli.ledger.rollback-and-fork-refused",
        verifies: &[
            "FC-MEM-2414",
            "FC-OPS-5709",
            "FC-OPS-5710",
            "FC-OBS-2711",
            "FC-CRYPTO-3803",
            "FC-CRYPTO-3618",
            "FC-CRYPTO-3819",
        ],
        run: rollback_and_fork_refused,
    },
    Case {
        name: "cli.ledger.one-holder",
        verifies: &["FC-MEM-2415"],
        run: one_holder,
    },
    Case {
        name: "cli.ledger.reindex",
        verifies: &["FC-MEM-2407", "FC-OPS-3908", "FC-MEM-2423"],
        run: reindex,
    },
    Case {
        name: "cli.quota.rules",
        verifies: &[
            "FC-OPS-4002",
            "FC-OPS-4006",
            "FC-OPS-4007",
            "FC-OPS-4008",
            "FC-OPS-4018",
            "FC-OPS-4019",
        ],
        run: quota_rules,
    },
    Case {
        name: "cli.quota.rate",
        verifies: &["FC-OPS-4004"],
        run: quota_rate_and_concurrency,
    },
    Case {
        name: "http.quota.refusals",
        verifies: &["FC-OPS-4005", "FC-OPS-4022"],
        run: http_quota_refusals,
    },
    Case {
        name: "cli.quota.allowance-per-principal-or-shared",
        verifies: &["FC-OPS-4003"],
        run: quota_allowance_per_principal_or_shared,
    },
    Case {
        name: "cli.quota.bad-rules-refused",
        verifies: &["FC-OPS-4001"],
        run: quota_bad_rules_refused,
    },
    Case {
        name: "cli.approval.lifecycle",
        verifies: &[
            "FC-OPS-4010",
            "FC-OPS-4011",
            "FC-OPS-4014",
            "FC-OPS-4020",
            "FC-OPS-4023",
            "FC-OPS-4025",
            "FC-OBS-2715",
            "FC-MEM-2309",
        ],
        run: approval_lifecycle,
    },
    Case {
        name: "cli.approval.grant-expires",
        verifies: &["FC-OPS-4012"],
        run: approval_grant_expires,
    },
    Case {
        name: "cli.config.defaults-and-show",
        verifies: &[
            "FC-CONF-2801",
            "FC-CONF-2802",
            "FC-CONF-2808",
            "FC-CONF-2825",
        ],
        run: config_defaults_and_show,
    },
    Case {
        name: "cli.config.environment",
        verifies: &["FC-CONF-2804", "FC-CONF-2806", "FC-CONF-2823"],
        run: config_environment,
    },
    Case {
        name: "cli.config.refusals",
        verifies: &[
            "FC-CONF-2803",
            "FC-CONF-2809",
            "FC-CONF-2813",
            "FC-CONF-2814",
            "FC-CONF-2815",
            "FC-CONF-2818",
            "FC-CONF-2819",
            "FC-CONF-2820",
            "FC-CONF-2821",
            "FC-CONF-2822",
        ],
        run: config_refusals,
    },
    Case {
        name: "cli.config.refused-before-any-work",
        verifies: &[
            "FC-CONF-2816",
            "FC-CONF-2824",
            "FC-CONF-2812",
            "FC-CRYPTO-3717",
        ],
        run: config_refused_before_any_work,
    },
    Case {
        name: "cli.kv.ungranted-namespace",
        verifies: &["FC-MEM-2511", "FC-MEM-2515"],
        run: kv_ungranted_namespace,
    },
    Case {
        name: "cli.kv.list",
        verifies: &["FC-MEM-2513", "FC-MEM-2516"],
        run: kv_list,
    },
    Case {
        name: "cli.replay.components-and-refusals",
        verifies: &[
            "FC-CRYPTO-3808",
            "FC-CRYPTO-3809",
            "FC-CRYPTO-3811",
            "FC-CRYPTO-3821",
            "FC-MEM-2518",
        ],
        run: replay_components_and_refusals,
    },
    Case {
        name: "cli.ledger.killed-during-effect",
        verifies: &[
            "FC-MEM-2409",
            "FC-MEM-2410",
            "FC-MEM-2417",
            "FC-MEM-2420",
            "FC-OPS-5704",
        ],
        run: killed_during_effect,
    },
    Case {
        name: "cli.ops.tokens-recorded-not-kept",
        verifies: &["FC-OPS-3912", "FC-OBS-2713", "FC-OBS-2714"],
        run: tokens_recorded_not_kept,
    },
    Case {
        name: "cli.ops.embedded-capability-stays",
        verifies: &["FC-OPS-3918"],
        run: embedded_capability_stays,
    },
    Case {
        name: "http.ops.commands-through-the-server",
        verifies: &[
            "FC-OPS-3903",
            "FC-OPS-3904",
            "FC-OPS-3905",
            "FC-OPS-3906",
            "FC-OPS-3910",
            "FC-OPS-3920",
            "FC-CRYPTO-3704",
            "FC-CRYPTO-3715",
        ],
        run: commands_through_the_server,
    },
    Case {
        name: "cli.ledger.failures-name-first-bad-position",
        verifies: &[
            "FC-CRYPTO-3623",
            "FC-CRYPTO-3624",
            "FC-MEM-2312",
            "FC-MEM-2313",
            "FC-MEM-2325",
            "FC-ABI-4903",
        ],
        run: failures_name_first_bad_position,
    },
    Case {
        name: "cli.ledger.failed-write-undone",
        verifies: &["FC-MEM-2422"],
        run: failed_write_undone,
    },
    Case {
        name: "cli.ledger.write-ahead-failure-performs-nothing",
        verifies: &[
            "FC-CORE-0218",
            "FC-SEC-1311",
            "FC-MEM-2421",
            "FC-FORMAL-5018",
        ],
        run: write_ahead_failure_performs_nothing,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `invoke conformance FUNCTION --args ARGS`, which must exit `code`.
fn call(host: &Host, function: &str, args: Json, code: i32) -> Result<Run, Failure> {
    let run = host.invoke(function, &args, &[])?;
    run.expect(code, &format!("invoke conformance {function} {args}"))?;
    Ok(run)
}

/// Writes `<data dir>/femtoclaw.toml`.
fn config(host: &Host, text: &str) -> Result<(), Failure> {
    write(&host.data.path().join("femtoclaw.toml"), text.as_bytes())
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

/// A segment's first index and its records: kind, check, payload.
type Records = (u64, Vec<(u8, [u8; 8], Vec<u8>)>);

/// `log verify FILE` with the keys given; the run.
pub(super) fn verify_file(host: &Host, file: &Path, keys: &[&str]) -> Result<Run, Failure> {
    let file = s(file);
    let mut args = vec!["log", "verify", file.as_str()];
    for key in keys {
        args.extend_from_slice(&["--key", key]);
    }
    host.run(&args)
}

/// A host whose ledger holds every kind of entry: key and policy changes, invocations with
/// host calls, a trap, an effectful call written ahead, a token change and approval steps.
fn every_kind_host(target: &Target) -> Result<Host, Failure> {
    // Anything, but `hello` only once a person approves the call.
    let policy = "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"invoke\" && resource is FemtoClaw::Capability && resource.name == \"hello\" };\n\
        @approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"hello\" };\n";
    let host = guest_host(target, policy)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    call(&host, "recall", json!({ "key": "k" }), 0)?;
    call(&host, "divide", json!({ "a": 1, "b": 0 }), 5)?;
    // An effectful call, written ahead of its effect.
    host.ok(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/note.txt","text":"hi"}"#,
    ])?;
    host.ok(&[
        "token",
        "create",
        "--principal",
        "user:someone",
        "--group",
        "ops",
    ])
    .or_else(|_| host.ok(&["token", "create", "--principal", "user:someone"]))?;
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.run(&greet)?
        .expect(13, "a call that needs an approval")?;
    host.ok(&["approval", "grant", "0", "--reason", "fine"])
        .or_else(|_| {
            // The approval's id is the number `approval list` shows.
            let list = host.ok(&["approval", "list", "--json"])?;
            let id = serde_json::from_str::<Json>(&list)
                .ok()
                .and_then(|l| l[0]["id"].as_u64())
                .ok_or_else(|| failed(format!("approval list --json: {}", excerpt(&list))))?;
            host.ok(&["approval", "grant", &id.to_string(), "--reason", "fine"])
        })?;
    host.run(&greet)?.expect(0, "the approved call")?;
    Ok(host)
}

// ---------------------------------------------------------------------------------------------
// Cases.

fn entry_encoding(target: &Target) -> Result<(), Failure> {
    let host = every_kind_host(target)?;
    let entries = host.entries()?;
    let file = export(&host, "all.export", &[])?;
    let exported = parse_export(&file)?;
    ensure!(
        exported.entries.len() == entries.len(),
        "the export holds {} entries; log show {}",
        exported.entries.len(),
        entries.len()
    );
    let mut seen = std::collections::BTreeSet::new();
    for (i, (shown, bytes)) in entries.iter().zip(&exported.entries).enumerate() {
        let entry = &shown["entry"];
        ensure!(
            bytes.first() == Some(&0x03),
            "entry {i} begins with {:?} where the version byte 0x03 is required",
            bytes.first()
        );
        let kind = entry["type"].as_str().unwrap_or("?");
        let number = KINDS.iter().position(|k| *k == kind).map(|n| n as u8 + 1);
        ensure!(
            number.is_some() && bytes.get(1).copied() == number,
            "entry {i} ({kind}) has kind byte {:?} where the kind table gives {number:?}",
            bytes.get(1)
        );
        seen.insert(kind.to_owned());
        let ours =
            encode(entry).map_err(|e| failed(format!("entry {i} as log show prints it: {e}")))?;
        ensure!(
            &ours == bytes,
            "entry {i} ({kind}): the exported bytes are not the canonical encoding of the entry log show prints\n  exported  {}\n  canonical {}",
            excerpt(&hex(bytes)),
            excerpt(&hex(&ours))
        );
    }
    ensure!(
        seen.len() == KINDS.len(),
        "the ledger was to hold every entry kind; it holds {seen:?}"
    );
    // The proof of an entry carries the same bytes, and its leaf hash is SHA-256(0x00 ‖ bytes):
    // the independent verifier computes the leaf that way and reaches the signed root.
    let key = published_key(&host)?;
    for i in [0, entries.len() / 2, entries.len() - 1] {
        let proof = host.ok(&["log", "prove", &i.to_string()])?;
        let again = host.ok(&["log", "prove", &i.to_string()])?;
        let (_, bytes, _) =
            crypto::proof(&proof, &key).map_err(|e| failed(format!("log prove {i}: {e}")))?;
        ensure!(
            bytes == exported.entries[i],
            "the proof of entry {i} carries other bytes than the export"
        );
        let (_, twice, _) =
            crypto::proof(&again, &key).map_err(|e| failed(format!("log prove {i}: {e}")))?;
        ensure!(
            twice == bytes,
            "entry {i} was encoded to other bytes the second time"
        );
    }
    Ok(())
}

/// A segment's records: (kind, check, payload).
fn records(bytes: &[u8]) -> Result<Records, String> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(8)? != b"FCLSEG\0\x01" {
        return Err("the segment does not begin with FCLSEG 0x00 0x01".into());
    }
    let first = c.u64()?;
    let mut out = Vec::new();
    while c.at < bytes.len() {
        let len = c.u32()? as usize;
        if len > 64 << 20 {
            return Err(format!("a record of {len} bytes at {}", c.at - 4));
        }
        let kind = c.u8()?;
        let check: [u8; 8] = c.take(8)?.try_into().unwrap_or([0; 8]);
        out.push((kind, check, c.take(len)?.to_vec()));
    }
    Ok((first, out))
}

fn segment(host: &Host) -> PathBuf {
    host.data.path().join("ledger/segments/00000000.seg")
}

fn segment_records(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    let file = export(&host, "segments.export", &[])?;
    let exported = parse_export(&file)?;
    let path = segment(&host);
    let (first, records) =
        records(&read(&path)?).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    ensure!(
        first == 0,
        "segment 00000000 names first index {first}, not 0"
    );
    let mut entries = Vec::new();
    let mut commits = Vec::new();
    let mut pending = 0;
    for (i, (kind, check, payload)) in records.iter().enumerate() {
        let prefix = match kind {
            0x00 => 0x00u8,
            0x02 => 0x02,
            other => return Err(failed(format!("record {i} has kind {other:#04x}"))),
        };
        let mut h = Sha256::new();
        h.update([prefix]);
        h.update(payload);
        let digest: [u8; 32] = h.finalize().into();
        ensure!(
            check[..] == digest[..8],
            "record {i}'s check is not SHA-256({prefix:#04x} ‖ payload)[..8]"
        );
        if *kind == 0x00 {
            entries.push(payload.clone());
            pending += 1;
        } else {
            ensure!(pending > 0, "commit record {i} closes an empty batch");
            commits.push((entries.len(), String::from_utf8_lossy(payload).into_owned()));
            pending = 0;
        }
    }
    ensure!(
        pending == 0,
        "the segment ends with entries no commit record closes"
    );
    ensure!(
        entries == exported.entries,
        "the segment's entry records are not the ledger's entries as exported"
    );
    let key = published_key(&host)?;
    for (size, note) in &commits {
        let checkpoint = crypto::checkpoint(note, &key)
            .map_err(|e| failed(format!("the commit record after {size} entries: {e}")))?;
        ensure!(
            checkpoint.size == *size as u64,
            "the commit record after {size} entries carries a checkpoint of size {}",
            checkpoint.size
        );
    }
    let latest = host.ok(&["log", "checkpoint"])?;
    ensure!(
        commits.last().map(|(_, n)| n.as_str()) == Some(latest.as_str()),
        "the last commit record is not byte for byte the checkpoint log checkpoint prints"
    );
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify")?;
    ensure!(
        run.stdout.starts_with(&format!(
            "ok: {} entries, {} checkpoints verified",
            entries.len(),
            commits.len()
        )),
        "reopening must give {} entries and one checkpoint per batch ({}): {}",
        entries.len(),
        commits.len(),
        excerpt(&run.stdout)
    );
    Ok(())
}

fn blobs(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let big = "b".repeat(16384);
    let small = "s".repeat(16383);
    call(&host, "remember", json!({ "key": "big", "value": big }), 0)?;
    call(
        &host,
        "remember",
        json!({ "key": "small", "value": small }),
        0,
    )?;
    let digest = hex(&sha256(big.as_bytes()));
    let entries = host.entries()?;
    let sets: Vec<&Json> = entries
        .iter()
        .filter(|e| {
            e["entry"]["type"] == "host-call" && e["entry"]["function"] == "[method]bucket.set"
        })
        .collect();
    ensure!(
        sets.len() == 2,
        "two set calls were to be recorded: {:?}",
        kinds(&entries)
    );
    let blob = &sets[0]["entry"]["params"]["tuple"][2];
    ensure!(
        blob["blob"]["sha256"] == json!(digest) && blob["blob"]["len"] == json!(16384),
        "a 16384-byte value must be recorded as a blob reference by its SHA-256 and length: {blob}"
    );
    let inline = &sets[1]["entry"]["params"]["tuple"][2];
    ensure!(
        inline["bytes"].as_str().map(|b| b64(b).map(|v| v.len())) == Some(Ok(16383)),
        "a 16383-byte value must stay inline: {}",
        excerpt(&inline.to_string())
    );
    // The encoding: tag 0x17, the digest, the length as a u64.
    let file = export(&host, "blobs.export", &[])?;
    let exported = parse_export(&file)?;
    let index = sets[0]["index"].as_u64().unwrap_or(0) as usize;
    let mut reference = vec![0x17];
    reference.extend_from_slice(&sha256(big.as_bytes()));
    reference.extend_from_slice(&16384u64.to_le_bytes());
    ensure!(
        exported.entries[index]
            .windows(reference.len())
            .any(|w| w == reference),
        "the set call's encoding holds no blob reference 0x17 ‖ SHA-256 ‖ u64 length"
    );
    let blobs = exported.blobs.clone().unwrap_or_default();
    ensure!(
        blobs.len() == 1 && blobs[0].0 == sha256(big.as_bytes()) && blobs[0].1 == big.as_bytes(),
        "the export must carry the one blob the entries refer to"
    );
    // Beside the ledger, by digest.
    let path = host.data.path().join("ledger/blobs").join(&digest);
    ensure!(
        read(&path)? == big.as_bytes(),
        "{} does not hold the value's bytes",
        path.display()
    );
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify")?;
    ensure!(
        run.stdout.contains("1 blob"),
        "log verify does not report the one blob it checked: {}",
        excerpt(&run.stdout)
    );
    // Read back whole, by a later invocation.
    let run = call(&host, "recall", json!({ "key": "big" }), 0)?;
    ensure!(
        run.json()?.to_string().contains(&big),
        "the 16 KiB value did not read back whole"
    );
    // A blob whose bytes no longer match its digest is never returned, and verification fails.
    let mut damaged = big.clone().into_bytes();
    damaged[100] = b'X';
    write(&path, &damaged)?;
    host.run(&["log", "verify"])?.expect(
        8,
        "log verify with a blob whose bytes do not match its digest",
    )?;
    let run = host.invoke("recall", &json!({ "key": "big" }), &[])?;
    ensure!(
        !run.stdout.contains("bbbbbbbbbbX"),
        "a blob whose bytes do not match its digest was returned"
    );
    std::fs::remove_file(&path).map_err(|e| failed(e.to_string()))?;
    host.run(&["log", "verify"])?
        .expect(8, "log verify with a blob missing")?;
    Ok(())
}

fn show(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // Control characters (C0 and C1) and bidirectional overrides a guest returned.
    let hostile = "a\u{1b}[31mb\u{202e}c\u{7}d\u{85}e\u{2066}f";
    call(&host, "echo", json!({ "text": hostile }), 0)?;
    // Then invocation only, no import linked: each call is refused at link, after its start
    // and one decision per import are recorded (many entries, quickly).
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n",
    )?;
    while host.entries()?.len() < 105 {
        host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
            .expect(7, "hello.greet refused at link")?;
    }
    let all = host.entries()?;
    let default = host.ok(&["log", "show", "--json"])?;
    let lines: Vec<&str> = default.lines().collect();
    ensure!(
        lines.len() == 100,
        "log show --json printed {} lines where the default limit is 100",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        let j: Json = serde_json::from_str(line).map_err(|e| failed(format!("line {i}: {e}")))?;
        ensure!(
            j.as_object().map(|o| o.len()) == Some(2)
                && j["index"] == json!(i)
                && j["entry"] == all[i]["entry"],
            "line {i} of log show --json is not {{\"index\": {i}, \"entry\": …}}: {}",
            excerpt(line)
        );
    }
    let from = host.ok(&["log", "show", "--json", "--from", "7", "--limit", "3"])?;
    let indexes: Vec<u64> = from
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter_map(|j| j["index"].as_u64())
        .collect();
    ensure!(
        indexes == [7, 8, 9],
        "log show --json --from 7 --limit 3 printed indexes {indexes:?}"
    );
    // Without --json: six right-aligned columns, two spaces, the JSON with controls escaped.
    let plain = host.run(&["log", "show", "--limit", "1000"])?;
    plain.expect(0, "log show")?;
    let lines: Vec<&str> = plain.stdout.lines().collect();
    ensure!(
        lines.len() == all.len(),
        "log show printed {} lines for {} entries",
        lines.len(),
        all.len()
    );
    for (i, line) in lines.iter().enumerate() {
        ensure!(
            line.len() > 8 && line[..6] == format!("{i:>6}") && &line[6..8] == "  ",
            "line {i} does not begin with the index right-aligned in six columns and two spaces: {}",
            excerpt(line)
        );
        ensure!(
            !line.chars().any(|c| c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)),
            "line {i} holds a raw control character or bidirectional override"
        );
        let j: Json = serde_json::from_str(&line[8..]).map_err(|e| {
            failed(format!(
                "line {i} of log show is not JSON after the index: {e}"
            ))
        })?;
        ensure!(
            j == all[i]["entry"],
            "line {i} of log show does not parse as the same entry as log show --json"
        );
    }
    ensure!(
        ["\\u001b", "\\u202e", "\\u0007", "\\u0085", "\\u2066"]
            .iter()
            .all(|e| plain.stdout.contains(e)),
        "the controls and overrides are not shown as \\u001b, \\u202e, \\u0007, \\u0085, \\u2066"
    );
    Ok(())
}

fn invocation_start_names_everything(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke(
        "add",
        &json!({ "a": 1, "b": 2 }),
        &["--group", "ops", "--fuel", "7000000"],
    )?
    .expect(0, "add in group ops")?;
    host.invoke("spin", &json!({}), &["--fuel", "200000"])?
        .expect(4, "spin")?;
    std::fs::remove_dir_all(host.data.path().join("policy")).map_err(|e| failed(e.to_string()))?;
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?
    .expect(7, "hello.greet as agent:bot under the default policy")?;
    let list: Json = serde_json::from_str(&host.ok(&["capability", "list", "--json"])?)
        .map_err(|e| failed(format!("capability list --json: {e}")))?;
    let manifest = list
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|c| c["sha256"] == json!(hex(&sha256(crate::GUEST))))
        })
        .map(|c| c["manifest_sha256"].clone())
        .ok_or_else(|| {
            failed(format!(
                "capability list --json does not list the guest: {list}"
            ))
        })?;
    let entries = host.entries()?;
    let start = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "invocation-start")
        .ok_or_else(|| failed("no invocation start"))?;
    let component = hex(&sha256(crate::GUEST));
    for (name, want) in [
        ("principal", json!("FemtoClaw::User::\"local\"")),
        ("groups", json!(["ops"])),
        ("capability", json!("conformance")),
        ("version", json!("1.0.0")),
        ("component_sha256", json!(component)),
        ("manifest_sha256", manifest),
        ("function", json!("add")),
        ("fuel_budget", json!(7_000_000)),
    ] {
        ensure!(
            start[name] == want,
            "the invocation start's {name} is {} where {want} is required",
            start[name]
        );
    }
    ensure!(
        start["args"].to_string().contains("\"a\"") && start["args"].to_string().contains("\"b\""),
        "the start does not record the arguments a and b: {}",
        start["args"]
    );
    for name in ["wit_world", "wasmtime_version"] {
        ensure!(
            start[name].as_str().is_some_and(|v| !v.is_empty()),
            "the start names no {name}: {start}"
        );
    }
    ensure!(
        start["wasmtime_version"].as_str().is_some_and(
            |v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
        ),
        "the start's wasmtime version is not an exact version: {}",
        start["wasmtime_version"]
    );
    for name in ["engine_digest", "policy_digest"] {
        ensure!(
            start[name].as_str().is_some_and(|v| v.len() == 64),
            "the start names no {name}: {start}"
        );
    }
    // Every entry of an invocation carries its number.
    for e in &entries {
        let e = &e["entry"];
        let own = [
            "invocation-start",
            "host-call",
            "host-call-intent",
            "decision",
            "trap",
            "invocation-end",
        ];
        if own.contains(&e["type"].as_str().unwrap_or("")) {
            ensure!(
                e["invocation"].is_u64(),
                "an entry of an invocation carries no invocation number: {e}"
            );
        }
    }
    let trap = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "trap");
    ensure!(
        trap.is_some_and(|t| t["kind"] == "fuel-exhausted" && t["fuel_consumed"] == json!(200_000)),
        "the fuel exhaustion is not recorded as a fuel-exhausted trap with the fuel consumed: {trap:?}"
    );
    ensure!(
        entries
            .iter()
            .map(|e| &e["entry"])
            .any(|e| e["type"] == "decision"
                && e["action"] == "invoke"
                && e["resource"] == "hello@0.1.0"
                && e["allowed"] == json!(false)),
        "the denial of hello.greet is not recorded as a decision invoke on hello@0.1.0, allowed false"
    );
    Ok(())
}

fn proof_pins_key_index_and_entry(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let key = key_text(&host)?;
    let other = target.host()?;
    other.ok(&["key", "generate"])?;
    let other_key = key_text(&other)?;
    let checkpoint = host.ok(&["log", "checkpoint"])?;
    ensure!(
        checkpoint.ends_with('\n') && checkpoint.contains("\n\n\u{2014} "),
        "log checkpoint does not print a signed note: {}",
        excerpt(&checkpoint)
    );
    ensure!(
        read(&host.data.path().join("latest-checkpoint"))
            .map(|b| b == checkpoint.as_bytes())
            .unwrap_or(true),
        "log checkpoint is not byte for byte the latest checkpoint"
    );
    let proof = host.ok(&["log", "prove", "4"])?;
    ensure!(
        proof.ends_with(&checkpoint),
        "the proof does not carry the latest checkpoint verbatim"
    );
    let proof_file = host.file("honest.proof", proof.as_bytes())?;
    let verify =
        |file: &Path, key: &str| host.run(&["log", "verify-proof", &s(file), "--key", key]);
    verify(&proof_file, &key)?.expect(0, "log verify-proof of an honest proof")?;
    // Verifying needs the proof and the key alone: another data directory.
    other
        .run(&["log", "verify-proof", &s(&proof_file), "--key", &key])?
        .expect(0, "log verify-proof on another data directory")?;
    verify(&proof_file, &other_key)?.expect(8, "log verify-proof with another key")?;
    // Another index.
    let moved = proof.replacen("\nindex 4\n", "\nindex 3\n", 1);
    ensure!(
        moved != proof,
        "the proof has no `index 4` line: {}",
        excerpt(&proof)
    );
    let moved_file = host.file("moved.proof", moved.as_bytes())?;
    verify(&moved_file, &key)?.expect(8, "log verify-proof of a proof whose index was changed")?;
    let parsed = crypto::Key::parse(&key).map_err(failed)?;
    ensure!(
        crypto::proof(&moved, &parsed).is_err(),
        "a proof whose index was changed still verifies independently"
    );
    // Other entry bytes: the entry of index 3 in the proof of index 4.
    let three = host.ok(&["log", "prove", "3"])?;
    let extra3 = three
        .lines()
        .find(|l| l.starts_with("extra "))
        .unwrap_or("");
    let extra4 = proof
        .lines()
        .find(|l| l.starts_with("extra "))
        .unwrap_or("");
    let swapped = proof.replacen(extra4, extra3, 1);
    let swapped_file = host.file("swapped.proof", swapped.as_bytes())?;
    verify(&swapped_file, &key)?.expect(8, "log verify-proof of a proof carrying another entry")?;
    Ok(())
}

fn proof_note_grammar(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let key = key_text(&host)?;
    let proof = host.ok(&["log", "prove", "2"])?;
    let note_at = proof.find("\n\n").map(|i| i + 2).unwrap_or(0);
    let (head, note) = proof.split_at(note_at);
    let signature = note
        .lines()
        .find(|l| l.starts_with('\u{2014}'))
        .unwrap_or("")
        .to_owned();
    let name = key.split('+').next().unwrap_or("");
    let foreign = "\u{2014} someone.else/log AAAAAJ7OS1Yz3tqkXNxGdCsRK8b5sGN/gpqyxn8fAhY1zDUGyTYqPxcwk+7R9uaAGRAiB0k8MLnp3ckSQvDVUB+XPjSpzQM=";
    let other_id = {
        // A signature with the pinned key's name and id whose bytes do not verify.
        let encoded = signature.rsplit(' ').next().unwrap_or("");
        let mut raw = b64(encoded).map_err(failed)?;
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        format!("\u{2014} {name} {}", STANDARD.encode(raw))
    };
    let many: String = (0..101).map(|_| format!("{foreign}\n")).collect();
    let cases: Vec<(String, i32, &str)> = vec![
        (format!("{head}{note}"), 0, "the honest proof"),
        (
            format!("{head}{note}{foreign}\n"),
            0,
            "a further signature by another key",
        ),
        (
            format!("{head}{}", note.replacen(&signature, &other_id, 1)),
            8,
            "a signature by the pinned key's name and id that does not verify",
        ),
        (
            format!("{head}{}", note.replacen(&format!("{signature}\n"), "", 1)),
            8,
            "no signature",
        ),
        (
            format!("{head}{}", note.trim_end_matches('\n')),
            8,
            "no final newline",
        ),
        (
            format!("{head}{note}not a signature\n"),
            8,
            "a line that is not a signature",
        ),
        (format!("{head}{note}{many}"), 8, "more than 100 signatures"),
        (
            format!("{head}{}", note.replacen("\n\n", "\n", 1)),
            8,
            "no blank line before the signatures",
        ),
        (
            format!("{head}{}", note.replacen('\n', "\u{7}\n", 1)),
            8,
            "a control character in the note",
        ),
    ];
    for (i, (text, code, what)) in cases.iter().enumerate() {
        let file = host.file(&format!("note{i}.proof"), text.as_bytes())?;
        host.run(&["log", "verify-proof", &s(&file), "--key", &key])?
            .expect(*code, &format!("log verify-proof of a proof with {what}"))?;
    }
    Ok(())
}

fn export_format(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(
        &host,
        "remember",
        json!({ "key": "big", "value": "x".repeat(20000) }),
        0,
    )?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let key = key_text(&host)?;
    let plain = export(&host, "plain.export", &[])?;
    let full = export(&host, "full.export", &["--with-components"])?;
    let bytes = read(&full)?;
    ensure!(
        bytes.starts_with(b"FCLEDGER\x01\x01"),
        "the export does not begin with FCLEDGER, version 0x01 and the entries section"
    );
    let parsed = parse_export(&full)?;
    ensure!(
        parsed.write() == bytes,
        "the export is not framed as specification 36's table: written again it differs"
    );
    let entries = host.entries()?;
    ensure!(
        parsed.entries.len() == entries.len(),
        "the export holds {} entries; the ledger {}",
        parsed.entries.len(),
        entries.len()
    );
    let run = host.run(&["log", "verify"])?;
    let checkpoints = run
        .stdout
        .split(" entries, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    ensure!(
        checkpoints == Some(parsed.checkpoints.len()),
        "the export holds {} checkpoints; log verify counted {checkpoints:?}",
        parsed.checkpoints.len()
    );
    ensure!(
        parsed.checkpoints.last().map(|c| c.as_slice())
            == Some(host.ok(&["log", "checkpoint"])?.as_bytes()),
        "the export's last checkpoint is not the latest, byte for byte"
    );
    let components = parsed.components.clone().unwrap_or_default();
    ensure!(
        components.len() == 1
            && components[0].0 == sha256(crate::GUEST)
            && components[0].1 == crate::GUEST,
        "--with-components must add the component the invocations ran, by its SHA-256"
    );
    ensure!(
        parse_export(&plain)?
            .components
            .is_none_or(|c| c.is_empty()),
        "an export without --with-components carries components"
    );
    ensure!(
        parsed.blobs.as_ref().is_some_and(|b| b.len() == 1),
        "the export does not carry the blob its entries refer to"
    );
    // Verified on another data directory, with the key alone.
    let elsewhere = target.host()?;
    for file in [&plain, &full] {
        let run = verify_file(&elsewhere, file, &[&key])?;
        run.expect(0, "log verify of an export on another data directory")?;
        ensure!(
            run.stdout
                .starts_with(&format!("ok: {} entries, ", entries.len())),
            "log verify of the export does not say ok: {} entries: {}",
            entries.len(),
            excerpt(&run.stdout)
        );
    }
    // Without its components or blobs sections an export still verifies; a component or blob
    // whose bytes do not match its digest does not.
    let mut bare = parsed.clone();
    bare.components = None;
    bare.blobs = None;
    let bare_file = host.file("bare.export", &bare.write())?;
    verify_file(&elsewhere, &bare_file, &[&key])?
        .expect(0, "an export without components and blobs")?;
    let mut forged = parsed.clone();
    if let Some(c) = forged.components.as_mut() {
        c[0].1[1000] ^= 0x01;
    }
    let forged_file = host.file("component.export", &forged.write())?;
    verify_file(&elsewhere, &forged_file, &[&key])?
        .expect(8, "an export whose component does not match its SHA-256")?;
    let mut forged = parsed.clone();
    if let Some(b) = forged.blobs.as_mut() {
        b[0].1[10] ^= 0x01;
    }
    let forged_file = host.file("blob.export", &forged.write())?;
    verify_file(&elsewhere, &forged_file, &[&key])?
        .expect(8, "an export whose blob does not match its SHA-256")?;
    // A changed magic or version byte.
    for (at, what) in [(0, "magic"), (8, "version byte")] {
        let mut changed = bytes.clone();
        changed[at] ^= 0x02;
        let file = host.file("header.export", &changed)?;
        verify_file(&elsewhere, &file, &[&key])?
            .expect(8, &format!("an export with its {what} changed"))?;
    }
    Ok(())
}

fn export_damage_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "x" }), 0)?;
    let key = key_text(&host)?;
    let file = export(&host, "small.export", &["--with-components"])?;
    let bytes = read(&file)?;
    let parsed = parse_export(&file)?;
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    // Cut at bytes all along the file, the component's bytes included.
    let step = (bytes.len() / 40).max(1);
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        damaged.push((format!("cut at byte {cut}"), bytes[..cut].to_vec()));
    }
    // One bit flipped in every section.
    let component_at = bytes.len() - crate::GUEST.len() / 2;
    for at in [
        3,
        8,
        9,
        12,
        20,
        40,
        100,
        200,
        400,
        bytes.len() / 3,
        component_at,
        bytes.len() - 1,
    ] {
        for bit in [0, 7] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            damaged.push((format!("bit {bit} of byte {at} flipped"), flipped));
        }
    }
    // Sections out of order, an unknown section, bytes after the end marker.
    let mut w = parsed.write();
    w.push(0x00);
    damaged.push(("a byte after the end marker".into(), w));
    let mut unknown = parsed.clone();
    unknown.components = None;
    let mut w = unknown.write();
    w.pop();
    w.extend_from_slice(&[0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    damaged.push(("an unknown section 0x07".into(), w));
    let entries_section = {
        let mut e = Enc(Vec::new());
        e.u8(0x01);
        e.u64(parsed.entries.len() as u64);
        for entry in &parsed.entries {
            e.bytes(entry);
        }
        e.0
    };
    let mut swapped = Enc(b"FCLEDGER\x01".to_vec());
    swapped.u8(0x02);
    swapped.u64(parsed.checkpoints.len() as u64);
    for c in &parsed.checkpoints {
        swapped.bytes(c);
    }
    swapped.0.extend_from_slice(&entries_section);
    swapped.u8(0xff);
    damaged.push((
        "the checkpoints section before the entries".into(),
        swapped.0,
    ));
    let elsewhere = target.host()?;
    for (what, bytes) in damaged {
        let file = host.file("damaged.export", &bytes)?;
        let run = verify_file(&elsewhere, &file, &[&key])?;
        ensure!(
            run.code == 8,
            "log verify of an export with {what}: exit {} where 8 (integrity) is required; stderr: {}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn root_mismatch_names_batch(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    call(&host, "echo", json!({ "text": "six" }), 0)?;
    let key = key_text(&host)?;
    let file = export(&host, "honest.export", &[])?;
    let parsed = parse_export(&file)?;
    let sizes: Vec<u64> = parsed
        .checkpoints
        .iter()
        .filter_map(|c| {
            String::from_utf8_lossy(c)
                .lines()
                .nth(1)
                .and_then(|n| n.parse().ok())
        })
        .collect();
    // The entry `echo two` started: alter it, remove it, repeat it, swap it with its neighbour.
    let target_index = host
        .entries()?
        .iter()
        .position(|e| {
            e["entry"]["type"] == "invocation-start" && e["entry"]["invocation"] == json!(1)
        })
        .ok_or_else(|| failed("no start of invocation 1"))?;
    let first_covering = *sizes
        .iter()
        .find(|s| **s > target_index as u64)
        .ok_or_else(|| failed("no checkpoint covers the entry"))?;
    let previous = sizes
        .iter()
        .filter(|s| **s <= target_index as u64)
        .max()
        .copied()
        .unwrap_or(0);
    let mut altered = parsed.clone();
    let entry = &mut altered.entries[target_index];
    let at = entry
        .windows(4)
        .position(|w| w == b"echo")
        .unwrap_or(entry.len() - 1);
    entry[at] = b'E';
    let mut removed = parsed.clone();
    removed.entries.remove(target_index);
    let mut added = parsed.clone();
    added
        .entries
        .insert(target_index, parsed.entries[target_index].clone());
    let mut reordered = parsed.clone();
    reordered.entries.swap(target_index, target_index + 1);
    let elsewhere = target.host()?;
    for (what, export) in [
        ("altered", altered),
        ("removed", removed),
        ("added", added),
        ("reordered", reordered),
    ] {
        let file = host.file("changed.export", &export.write())?;
        let run = verify_file(&elsewhere, &file, &[&key])?;
        run.expect(8, &format!("log verify of an export with an entry {what}"))?;
        let range = format!("{previous}..{first_covering}");
        ensure!(
            run.stderr.contains("ledger verification failed") && run.stderr.contains(&range),
            "an entry {what}: the failure must say `ledger verification failed` and name the batch {range} whose root no longer matches: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn verify_trusts_no_logged_key(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let key = key_text(&host)?;
    let other = target.host()?;
    other.ok(&["key", "generate"])?;
    let other_key = key_text(&other)?;
    let file = export(&host, "ledger.export", &[])?;
    let entries = host.entries()?.len();
    let run = verify_file(&other, &file, &[&key])?;
    run.expect(0, "log verify of an export with its signer's key")?;
    ensure!(
        run.stdout.starts_with(&format!("ok: {entries} entries, "))
            && run.stdout.contains(" checkpoints verified"),
        "log verify does not print `ok: {entries} entries, M checkpoints verified`: {}",
        excerpt(&run.stdout)
    );
    // The export carries its key in its first key change; verification must not trust it.
    for run in [
        verify_file(&other, &file, &[&other_key])?,
        host.run(&["log", "verify", "--key", &other_key])?,
    ] {
        run.expect(8, "log verify with a key other than the signer's")?;
        ensure!(
            run.stderr.contains("not signed by a pinned key"),
            "the failure does not say the checkpoint is signed by an unknown key: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn key_rotation(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let first = host.ok(&["key", "generate", "--name", "conformance.example/log"])?;
    let first = first.trim().to_owned();
    let parsed = crypto::Key::parse(&first)
        .map_err(|e| failed(format!("key generate printed {first:?}: {e}")))?;
    ensure!(
        parsed.name == "conformance.example/log",
        "the key is named {}, not conformance.example/log",
        parsed.name
    );
    ensure!(
        key_text(&host)? == first,
        "key show does not print the key key generate made"
    );
    host.install()?;
    call(&host, "echo", json!({ "text": "before" }), 0)?;
    host.run(&["log", "verify", "--key", &first])?
        .expect(0, "log verify with the first key alone")?;
    let before = host.entries()?.len();
    let second = host.ok(&["key", "generate", "--name", "conformance.example/log"])?;
    let second = second.trim().to_owned();
    crypto::Key::parse(&second).map_err(|e| failed(format!("the rotated key {second:?}: {e}")))?;
    ensure!(second != first, "a rotation printed the same key");
    ensure!(
        key_text(&host)? == second,
        "key show does not print the new key after a rotation"
    );
    call(&host, "echo", json!({ "text": "after" }), 0)?;
    let entries = host.entries()?;
    let changes: Vec<&Json> = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "key-change")
        .collect();
    ensure!(
        changes.len() == 2,
        "one rotation must leave two key changes; the ledger holds {}",
        changes.len()
    );
    ensure!(
        changes[0]["old_key_id"].is_null() && changes[0]["new_verifier_key"] == json!(first),
        "the first key change must name the first key with no old key id: {}",
        changes[0]
    );
    let first_id = first.split('+').nth(1).unwrap_or("");
    ensure!(
        changes[1]["old_key_id"] == json!(first_id)
            && changes[1]["new_verifier_key"] == json!(second),
        "the rotation's key change must name the old key id {first_id} and the new key: {}",
        changes[1]
    );
    // The rotation is signed under the old key; later checkpoints under the new one.
    let at = entries
        .iter()
        .position(|e| e["entry"] == *changes[1])
        .unwrap_or(before);
    let old = crypto::Key::parse(&first).map_err(failed)?;
    let new = crypto::Key::parse(&second).map_err(failed)?;
    let proof = host.ok(&["log", "prove", &at.to_string()])?;
    crypto::proof(&proof, &new)
        .map_err(|e| failed(format!("the latest checkpoint by the new key: {e}")))?;
    let file = export(&host, "rotated.export", &[])?;
    let parsed = parse_export(&file)?;
    for note in &parsed.checkpoints {
        let note = String::from_utf8_lossy(note);
        let size: usize = note
            .lines()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let key = if size <= at + 1 { &old } else { &new };
        crypto::checkpoint(&note, key).map_err(|e| {
            failed(format!(
                "the checkpoint of size {size} is not signed by the key in force (rotation at {at}): {e}"
            ))
        })?;
    }
    let all = host.ok(&["key", "show", "--all"])?;
    ensure!(
        all.lines().collect::<Vec<_>>() == [first.as_str(), second.as_str()],
        "key show --all must print the first and the new key, oldest first: {}",
        excerpt(&all)
    );
    let elsewhere = target.host()?;
    verify_file(&elsewhere, &file, &[&first, &second])?
        .expect(0, "log verify pinning both keys")?;
    verify_file(&elsewhere, &file, &[&second])?
        .expect(8, "log verify pinning the new key alone")?;
    host.run(&["log", "verify"])?
        .expect(0, "log verify without --key of a rotated ledger")?;
    Ok(())
}

fn key_file_and_names(target: &Target) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    for bad in ["", "a+b", "a b", "a\tb", "a\u{7}b"] {
        let host = target.host()?;
        let run = host.run(&["key", "generate", "--name", bad])?;
        ensure!(run.code != 0, "key generate --name {bad:?} was accepted");
        let left: Vec<_> = std::fs::read_dir(host.data.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        ensure!(
            !host.data.path().join("keys/ledger-signing.key").exists()
                && !host.data.path().join("ledger").exists(),
            "key generate --name {bad:?} wrote to the data directory: {left:?}"
        );
    }
    let host = target.host()?;
    let printed = host.ok(&["key", "generate"])?;
    let path = host.data.path().join("keys/ledger-signing.key");
    let mode = std::fs::metadata(&path)
        .map_err(|e| failed(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    ensure!(
        mode & 0o777 == 0o600,
        "the key file has mode {:o}, not 600",
        mode & 0o777
    );
    ensure!(
        key_text(&host)? == printed.trim(),
        "the key file does not load back as the key key generate printed"
    );
    Ok(())
}

/// The first entry record of a segment, header and payload.
fn first_entry_record(segment: &[u8]) -> Vec<u8> {
    let len = u32::from_le_bytes(segment[16..20].try_into().unwrap_or([0; 4])) as usize;
    segment[16..(16 + 13 + len).min(segment.len())].to_vec()
}

fn torn_tail(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "kept" }), 0)?;
    let path = segment(&host);
    let honest = read(&path)?;
    let count = host.entries()?.len();
    let record = first_entry_record(&honest);
    let mut big_header = Vec::new();
    big_header.extend_from_slice(&1000u32.to_le_bytes());
    big_header.extend_from_slice(&[0; 9]);
    big_header.extend_from_slice(b"short");
    let tails: Vec<(&str, Vec<u8>, usize)> = vec![
        ("garbage", b"garbage!garbage!".to_vec(), 0),
        ("a partial record header", vec![0x10, 0, 0], 0),
        ("a record longer than the file", big_header, 0),
        ("an entry without a commit record", record.clone(), 1),
        (
            "two entries without a commit record",
            [record.clone(), record].concat(),
            2,
        ),
    ];
    for (what, tail, entries) in tails {
        write(&path, &[honest.clone(), tail.clone()].concat())?;
        let before = snapshot(host.data.path());
        // Read-only verification reports the tail, fails nothing and changes nothing.
        let run = host.run(&["log", "verify"])?;
        run.expect(0, &format!("log verify of a ledger ending in {what}"))?;
        let said = format!("{run:?}");
        ensure!(
            said.contains(&format!("{} bytes", tail.len())),
            "log verify does not report the torn tail of {} bytes ({what}): {}",
            tail.len(),
            excerpt(&said)
        );
        ensure!(
            snapshot(host.data.path()) == before,
            "log verify changed a file of a ledger ending in {what}"
        );
        // The next open cuts it, says so at warn, keeps every committed entry, and goes on.
        let run = host.invoke("echo", &json!({ "text": "after" }), &[])?;
        run.expect(0, &format!("the call after a tail of {what}"))?;
        let logged = plain_text(&run.stderr);
        ensure!(
            logged.contains("WARN")
                && logged.contains(&format!("bytes={}", tail.len()))
                && logged.contains(&format!("entries={entries}"))
                && logged.contains("reason"),
            "the cut of {what} is not logged at warn with bytes={}, entries={entries} and the reason: {}",
            tail.len(),
            excerpt(&logged)
        );
        let now = host.entries()?;
        ensure!(
            now.len() == count + 3,
            "after cutting {what} and one call the ledger holds {} entries, not {}",
            now.len(),
            count + 3
        );
        host.run(&["log", "verify"])?
            .expect(0, &format!("log verify after cutting {what}"))?;
        write(&path, &honest)?;
        // Back to the honest ledger: the head record has moved on; accept that (operator).
        let _ = std::fs::remove_file(host.data.path().join("latest-checkpoint"));
        let _ = std::fs::remove_dir_all(host.data.path().join("ledger/index"));
    }
    Ok(())
}

fn committed_damage_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let path = segment(&host);
    let mut bytes = read(&path)?;
    let at = bytes
        .windows(3)
        .position(|w| w == b"one")
        .ok_or_else(|| failed("the segment does not hold the recorded text"))?;
    bytes[at] = b'O';
    write(&path, &bytes)?;
    let run = host.invoke("echo", &json!({ "text": "three" }), &[])?;
    ensure!(
        run.code != 0,
        "a call on a ledger damaged before its last batch succeeded"
    );
    ensure!(
        run.stderr.contains("corrupt")
            && run.stderr.contains("00000000")
            && run.stderr.contains("byte")
            && run.stderr.contains("entry"),
        "the refusal does not name the corruption, the segment, the byte offset and the entry: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        read(&path)? == bytes,
        "opening a ledger damaged before its last batch changed (cut) the segment"
    );
    Ok(())
}

fn acknowledged_entries_lost(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let path = segment(&host);
    let short = read(&path)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    // The segment cut back to an earlier commit: a valid ledger, shorter than the index knows.
    write(&path, &short)?;
    let _ = std::fs::remove_file(host.data.path().join("latest-checkpoint"));
    let run = host.invoke("echo", &json!({ "text": "three" }), &[])?;
    ensure!(
        run.code != 0,
        "a ledger holding fewer entries than its index records as committed was opened"
    );
    ensure!(
        run.stderr.contains("lost") || run.stderr.contains("fewer"),
        "the refusal does not say acknowledged entries were lost: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

/// Copies a data directory's ledger (its segments) aside: a backup.
fn backup(host: &Host, name: &str) -> Result<PathBuf, Failure> {
    let to = host.files.path().join(name);
    std::fs::create_dir_all(&to).map_err(|e| failed(e.to_string()))?;
    for (path, bytes) in snapshot(&host.data.path().join("ledger/segments")) {
        write(&to.join(path.file_name().unwrap_or_default()), &bytes)?;
    }
    Ok(to)
}

/// Restores the segments of a backup and drops the derived index.
fn restore(host: &Host, from: &Path) -> Result<(), Failure> {
    let segments = host.data.path().join("ledger/segments");
    let _ = std::fs::remove_dir_all(&segments);
    let _ = std::fs::remove_dir_all(host.data.path().join("ledger/index"));
    std::fs::create_dir_all(&segments).map_err(|e| failed(e.to_string()))?;
    for (path, bytes) in snapshot(from) {
        write(&segments.join(path.file_name().unwrap_or_default()), &bytes)?;
    }
    Ok(())
}

fn rollback_and_fork_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let old = backup(&host, "old")?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let pinned = host.ok(&["log", "checkpoint"])?;
    let pinned_file = host.file("pinned.checkpoint", pinned.as_bytes())?;
    let head = host.data.path().join("latest-checkpoint");
    let recorded = read(&head)?;
    // Restored to an earlier state: refused on open naming the head record, exit 8, unchanged.
    restore(&host, &old)?;
    let before = snapshot(&host.data.path().join("ledger/segments"));
    let run = host.invoke("echo", &json!({ "text": "three" }), &[])?;
    run.expect(8, "a call on a ledger restored behind the head record")?;
    ensure!(
        run.stderr.contains("latest-checkpoint") && run.stderr.contains("backwards"),
        "the refusal does not say the ledger went backwards, naming the head record: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        snapshot(&host.data.path().join("ledger/segments")) == before,
        "the refused open wrote to the ledger"
    );
    let run = host.run(&["log", "verify"])?;
    run.expect(8, "log verify of a ledger behind the head record")?;
    ensure!(
        run.stderr.contains("ledger verification failed"),
        "the failure does not say `ledger verification failed`: {}",
        excerpt(&run.stderr)
    );
    // The operator accepts the loss by removing the head record; a pinned checkpoint still
    // catches the rollback.
    std::fs::remove_file(&head).map_err(|e| failed(e.to_string()))?;
    let pin = s(&pinned_file);
    let run = host.run(&["log", "verify", "--checkpoint", &pin])?;
    run.expect(
        8,
        "log verify of a rolled-back ledger with a later checkpoint pinned",
    )?;
    ensure!(
        run.stderr.contains("backwards"),
        "the failure does not say the log went backwards (RolledBack): {}",
        excerpt(&run.stderr)
    );
    // Forked: another history to the same size.
    call(&host, "echo", json!({ "text": "fork" }), 0)?;
    let run = host.run(&["log", "verify", "--checkpoint", &pin])?;
    run.expect(
        8,
        "log verify of a forked ledger with the other branch's checkpoint pinned",
    )?;
    ensure!(
        run.stderr.contains("not consistent with pinned checkpoint"),
        "the failure does not say the log is not consistent with the pinned checkpoint: {}",
        excerpt(&run.stderr)
    );
    // The head record of the other branch: another root at its size, refused on open.
    write(&head, &recorded)?;
    let before = snapshot(&host.data.path().join("ledger/segments"));
    let run = host.invoke("echo", &json!({ "text": "more" }), &[])?;
    run.expect(
        8,
        "a call on a ledger that is not the one the head record records",
    )?;
    ensure!(
        run.stderr.contains("latest-checkpoint"),
        "the refusal does not name the head record: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        snapshot(&host.data.path().join("ledger/segments")) == before,
        "the refused open wrote to the ledger"
    );
    std::fs::remove_file(&head).map_err(|e| failed(e.to_string()))?;
    // A pinned checkpoint signed by no pinned key.
    let other = target.host()?;
    other.ok(&["key", "generate"])?;
    let other_key = key_text(&other)?;
    let own = host.ok(&["log", "checkpoint"])?;
    let own_file = host.file("own.checkpoint", own.as_bytes())?;
    let key = key_text(&host)?;
    host.run(&[
        "log",
        "verify",
        "--checkpoint",
        &s(&own_file),
        "--key",
        &key,
    ])?
    .expect(0, "log verify with its own latest checkpoint pinned")?;
    let foreign = other.ok(&["log", "checkpoint"]).unwrap_or_default();
    if !foreign.is_empty() {
        let foreign_file = host.file("foreign.checkpoint", foreign.as_bytes())?;
        host.run(&[
            "log",
            "verify",
            "--checkpoint",
            &s(&foreign_file),
            "--key",
            &key,
        ])?
        .expect(
            8,
            "log verify with a pinned checkpoint no pinned key signed",
        )?;
    }
    let _ = other_key;
    Ok(())
}

fn one_holder(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "warm" }), 0)?;
    let mut spin = host
        .command(&[
            "invoke",
            "conformance",
            "spin",
            "--fuel",
            "10000000000",
            "--deadline-ms",
            "3000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start the spinning call: {e}")))?;
    let pid = spin.id();
    // Wait until the spinning call holds the directory (its start is recorded).
    let started = std::time::Instant::now();
    let result = (|| {
        while started.elapsed() < std::time::Duration::from_secs(2) {
            let lock = std::fs::read_to_string(host.data.path().join("lock")).unwrap_or_default();
            if lock.contains(&pid.to_string()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let asked = std::time::Instant::now();
        let run = host.invoke("echo", &json!({ "text": "second" }), &[])?;
        ensure!(
            run.code != 0,
            "a second process used the data directory while another held its ledger"
        );
        ensure!(
            asked.elapsed() < std::time::Duration::from_millis(1500),
            "the second process was not refused at once (it waited {:?})",
            asked.elapsed()
        );
        ensure!(
            run.stderr.contains(&format!("pid {pid}")) && run.stderr.contains("spin"),
            "the refusal does not name the holder's pid {pid} and activity: {}",
            excerpt(&run.stderr)
        );
        Ok(())
    })();
    let _ = spin.kill();
    let _ = spin.wait();
    result?;
    // The holder ended: the directory is free again.
    call(&host, "echo", json!({ "text": "free" }), 0)?;
    Ok(())
}

fn reindex(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "remember", json!({ "key": "a", "value": "1" }), 0)?;
    call(&host, "remember", json!({ "key": "b", "value": "2" }), 0)?;
    call(&host, "remember", json!({ "key": "a", "value": "3" }), 0)?;
    let shown = host.ok(&["log", "show", "--json", "--limit", "1000"])?;
    let kv = host.ok(&["kv", "list", "--json"])?;
    ensure!(
        kv.contains("\"a\"") && kv.contains("\"b\""),
        "kv list --json does not list a and b: {}",
        excerpt(&kv)
    );
    let run = host.run(&["log", "reindex"])?;
    run.expect(0, "log reindex")?;
    ensure!(
        host.ok(&["log", "show", "--json", "--limit", "1000"])? == shown
            && host.ok(&["kv", "list", "--json"])? == kv,
        "after log reindex the ledger's entries or the key-value store differ"
    );
    // Lost: rebuilt on the next open.
    for dir in ["ledger/index", "kv"] {
        std::fs::remove_dir_all(host.data.path().join(dir))
            .map_err(|e| failed(format!("cannot remove {dir}: {e}")))?;
    }
    ensure!(
        host.ok(&["log", "show", "--json", "--limit", "1000"])? == shown,
        "the entries differ after the index was deleted"
    );
    let run = call(&host, "recall", json!({ "key": "a" }), 0)?;
    ensure!(
        run.stdout.contains('3'),
        "after the store was lost a call recalled {} where \"3\" was stored",
        run.stdout.trim()
    );
    // A damaged index is rebuilt rather than failing the open.
    let shown = host.ok(&["log", "show", "--json", "--limit", "1000"])?;
    for (path, bytes) in snapshot(&host.data.path().join("ledger/index")) {
        let garbage: Vec<u8> = bytes.iter().map(|b| b ^ 0x5a).collect();
        write(&path, &garbage)?;
    }
    let run = host.run(&["log", "show", "--json", "--limit", "1000"])?;
    run.expect(0, "log show with a damaged index")?;
    ensure!(
        run.stdout == shown,
        "the entries differ after the index was damaged"
    );
    call(&host, "echo", json!({ "text": "on" }), 0)?;
    Ok(())
}

/// The entries of invocation `n`.
fn invocation(entries: &[Json], n: u64) -> Vec<Json> {
    entries
        .iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["invocation"] == json!(n))
        .collect()
}

fn last_invocation(entries: &[Json]) -> Vec<Json> {
    let n = entries
        .iter()
        .filter_map(|e| e["entry"]["invocation"].as_u64())
        .max()
        .unwrap_or(0);
    invocation(entries, n)
}

fn quota_rules(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let rules = |n: u32| {
        format!(
            "[[quotas.rules]]\ncapability = \"conformance\"\ninvocations = {n}\n\n\
             [[quotas.rules]]\nprincipal = \"user:local\"\nfuel = 120000000\n\n\
             [[quotas.rules]]\nprincipal = \"group:ops\"\ncapability = \"hello\"\ninvocations = 1\n\n\
             [[quotas.rules]]\nprincipal = \"agent:someone\"\ninvocations = 1\n"
        )
    };
    config(&host, &rules(2))?;
    // A budget larger than the fuel allowance: refused by rule 1, without a retry time, and
    // taking nothing from rule 0's allowance.
    let run = host.invoke("echo", &json!({ "text": "x" }), &["--fuel", "200000000"])?;
    run.expect(12, "a budget over the fuel allowance")?;
    ensure!(
        run.stderr.contains("quotas.rules[1]") && !run.stderr.contains("retry"),
        "the refusal must name quotas.rules[1] and give no retry time: {}",
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    let refused = last_invocation(&entries);
    let types: Vec<&str> = refused.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure!(
        types.first() == Some(&"invocation-start")
            && types.contains(&"trap")
            && types.last() == Some(&"invocation-end")
            && !types.iter().any(|t| t.starts_with("host-call")),
        "a quota refusal must be recorded as a start, a trap and an end, with no host call: {types:?}"
    );
    let trap = refused
        .iter()
        .find(|e| e["type"] == "trap")
        .cloned()
        .unwrap_or_default();
    ensure!(
        trap["kind"] == "limit"
            && trap["message"]
                .as_str()
                .is_some_and(|m| m.contains("quotas.rules[1]")),
        "the refusal's trap is not of kind limit naming quotas.rules[1]: {trap}"
    );
    ensure!(
        refused.last().is_some_and(|e| e["result"].is_null()),
        "the refused invocation's end carries a result"
    );
    // 50,000,000 budgets against 120,000,000 per minute: the unconsumed part comes back, so
    // more than two run. Rule 0 admits two, in separate processes.
    call(&host, "echo", json!({ "text": "1" }), 0)?;
    call(&host, "echo", json!({ "text": "2" }), 0)?;
    let run = host.invoke("echo", &json!({ "text": "3" }), &[])?;
    run.expect(12, "a third call where two per minute are allowed")?;
    ensure!(
        run.stderr.contains("quotas.rules[0]") && run.stderr.contains("conformance"),
        "the refusal does not name the first refusing rule quotas.rules[0] and the capability: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        host.data.path().join("quotas.json").exists(),
        "no <data dir>/quotas.json keeps the arrival times"
    );
    // A changed rule starts with a fresh allowance.
    config(&host, &rules(3))?;
    call(&host, "echo", json!({ "text": "4" }), 0)?;
    // Groups: rule 2 covers hello for members of ops only.
    let hello = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    let grouped = [&hello[..], &["--group", "ops"]].concat();
    host.run(&grouped)?.expect(0, "hello.greet in group ops")?;
    let run = host.run(&grouped)?;
    run.expect(12, "a second hello.greet in group ops")?;
    ensure!(
        run.stderr.contains("quotas.rules[2]"),
        "not refused by quotas.rules[2]: {}",
        excerpt(&run.stderr)
    );
    host.run(&hello)?
        .expect(0, "hello.greet outside group ops")?;
    // Rule 3 names another principal: it does not cover user:local.
    host.run(&hello)?
        .expect(0, "hello.greet again outside group ops")?;
    // Authorized first: a call the policy denies is denied (7), not refused for quota, even
    // where its allowance is spent.
    let agent = [&hello[..], &["--principal", "agent:someone"]].concat();
    host.run(&agent)?.expect(7, "a denied call under a quota")?;
    host.run(&agent)?
        .expect(7, "a second denied call under a quota")?;
    Ok(())
}

fn quota_rate_and_concurrency(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // Two per 4 s: a burst of two (the default, = invocations), then one every 2 s.
    config(
        &host,
        "[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 2\nper_ms = 4000\n",
    )?;
    let hello = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.run(&hello)?
        .expect(0, "the first call of a burst of 2")?;
    host.run(&hello)?
        .expect(0, "the second call of a burst of 2")?;
    let run = host.run(&hello)?;
    let refused = std::time::Instant::now();
    run.expect(12, "a third call at once")?;
    let retry: Option<u64> = run
        .stderr
        .split(" ms")
        .filter_map(|p| p.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .filter(|n| *n > 0 && *n <= 2000)
        .last();
    let Some(retry) = retry else {
        return Err(failed(format!(
            "the refusal gives no retry time within per/n = 2000 ms: {}",
            excerpt(&run.stderr)
        )));
    };
    // One every per/n: once the retry time passed, one more call, and only one.
    let wait = std::time::Duration::from_millis(retry + 150);
    while refused.elapsed() < wait {
        std::thread::sleep((wait - refused.elapsed()).min(std::time::Duration::from_millis(500)));
    }
    host.run(&hello)?
        .expect(0, "a call once the retry time passed")?;
    host.run(&hello)?
        .expect(12, "a second call in the same interval")?;
    Ok(())
}

fn quota_allowance_per_principal_or_shared(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy("permit (principal, action, resource);\n")?;
    let as_ = |who: &str| {
        host.run(&[
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"{"name":"Ada"}"#,
            "--principal",
            who,
        ])
    };
    config(
        &host,
        "[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\n",
    )?;
    as_("user:a")?.expect(0, "user:a's first call")?;
    as_("user:b")?.expect(
        0,
        "user:b's first call: each principal has its own allowance",
    )?;
    as_("user:a")?.expect(12, "user:a's second call")?;
    config(
        &host,
        "[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\nshared = true\n",
    )?;
    as_("user:c")?.expect(0, "the first call under a shared rule")?;
    let run = as_("user:d")?;
    run.expect(
        12,
        "another principal under a shared rule whose allowance is spent",
    )?;
    ensure!(
        run.stderr.contains("everyone it covers together"),
        "a shared rule's refusal does not say `everyone it covers together`: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn quota_bad_rules_refused(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    for (rule, what) in [
        ("principal = \"bogus\"\ninvocations = 1", "principal"),
        ("capability = \"\"\ninvocations = 1", "capability"),
        ("invocations = 0", "invocations"),
        ("burst = 2\nfuel = 10", "burst"),
        ("invocations = 1\nper_ms = 0", "per_ms"),
        ("concurrent = 0", "concurrent"),
        ("fuel = 0", "fuel"),
        ("invocations = 1\nspeed = 3", "speed"),
        ("shared = 1\ninvocations = 1", "shared"),
    ] {
        let text = format!("[[quotas.rules]]\ninvocations = 5\n\n[[quotas.rules]]\n{rule}\n");
        let text = if rule.starts_with("invocations") || rule.contains("\ninvocations") {
            text.replacen(
                "[[quotas.rules]]\ninvocations = 5\n\n",
                "[[quotas.rules]]\nconcurrent = 5\n\n",
                1,
            )
        } else {
            text
        };
        let file = host.file("rules.toml", text.as_bytes())?;
        let run = host.run(&["config", "check", &s(&file)])?;
        run.expect(2, &format!("config check of a rule with a bad {what}"))?;
        ensure!(
            run.stderr.contains("quotas.rules")
                && run.stderr.contains("rule 1")
                && run.stderr.contains(what),
            "the refusal of a bad {what} does not name quotas.rules, rule 1 and {what}: {}",
            excerpt(&run.stderr)
        );
    }
    // Defaults, and the environment's inline TOML.
    let run = host
        .command(&["config", "show"])
        .env(
            "FEMTOCLAW_QUOTAS_RULES",
            "[{ capability = \"hello\", invocations = 3 }]",
        )
        .output()
        .map_err(|e| failed(e.to_string()))?;
    let shown = String::from_utf8_lossy(&run.stdout);
    ensure!(
        shown.contains("principal = \"*\"")
            && shown.contains("capability = \"hello\"")
            && shown.contains("invocations = 3")
            && shown.contains("per_ms = 60000")
            && shown.contains("env FEMTOCLAW_QUOTAS_RULES"),
        "FEMTOCLAW_QUOTAS_RULES is not read with the rule defaults (principal *, per_ms 60000): {}",
        excerpt(&shown)
    );
    let run = host
        .command(&["config", "show"])
        .env(
            "FEMTOCLAW_QUOTAS_RULES",
            "[{ capability = \"hello\", invocations = 0 }]",
        )
        .output()
        .map_err(|e| failed(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(
        run.status.code() == Some(2)
            && stderr.contains("quotas.rules")
            && stderr.contains("rule 0"),
        "a bad rule in FEMTOCLAW_QUOTAS_RULES is not refused naming quotas.rules and rule 0: {}",
        excerpt(&stderr)
    );
    Ok(())
}

/// Anything, but every invocation only once a person approves the call.
const APPROVE: &str = "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"invoke\" };\n\
    @approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n";

fn approval_list(host: &Host) -> Result<Vec<Json>, Failure> {
    let out = host.ok(&["approval", "list", "--json"])?;
    serde_json::from_str::<Json>(&out)
        .ok()
        .and_then(|l| l.as_array().cloned())
        .ok_or_else(|| failed(format!("approval list --json: {}", excerpt(&out))))
}

/// The id in `pending as approval N`.
fn pending_id(run: &Run) -> Option<u64> {
    run.stderr
        .split("approval ")
        .skip(1)
        .find_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
}

fn approval_lifecycle(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, APPROVE)?;
    let add = json!({ "a": 20, "b": 22 });
    let first = call(&host, "add", add.clone(), 13)?;
    let id = pending_id(&first)
        .ok_or_else(|| failed(format!("no approval id: {}", excerpt(&first.stderr))))?;
    let again = call(&host, "add", add.clone(), 13)?;
    ensure!(
        pending_id(&again) == Some(id),
        "the identical call while pending got another approval: {}",
        excerpt(&again.stderr)
    );
    let requests = |host: &Host| -> Result<usize, Failure> {
        Ok(host
            .entries()?
            .iter()
            .filter(|e| e["entry"]["type"] == "approval" && e["entry"]["action"] == "request")
            .count())
    };
    ensure!(
        requests(&host)? == 1,
        "the identical call recorded a second request"
    );
    let list = host.ok(&["approval", "list"])?;
    ensure!(
        list.lines().any(|l| l.contains(&id.to_string())
            && l.contains("pending")
            && l.contains("FemtoClaw::User::\"local\"")
            && l.contains("conformance@1.0.0.add")
            && l.contains("\"a\":20")),
        "approval list does not show the approval's id, state, principal, CAP@VER.FN and arguments: {}",
        excerpt(&list)
    );
    let granted = host.ok(&["approval", "grant", &id.to_string(), "--reason", "checked"])?;
    ensure!(
        granted.trim() == format!("approval {id} granted"),
        "approval grant printed {:?}",
        granted.trim()
    );
    // Another call (other arguments) needs its own approval.
    let other = call(&host, "add", json!({ "a": 1, "b": 1 }), 13)?;
    let other_id = pending_id(&other).ok_or_else(|| failed("no approval id for the other call"))?;
    ensure!(
        other_id != id,
        "a call with other arguments was given the same approval"
    );
    // The identical call spends the grant, once.
    let run = call(&host, "add", add.clone(), 0)?;
    ensure!(
        run.json()? == json!(42),
        "the approved call returned {}",
        run.stdout.trim()
    );
    let entries = host.entries()?;
    let start = entries
        .iter()
        .map(|e| &e["entry"])
        .rfind(|e| e["type"] == "invocation-start")
        .cloned()
        .unwrap_or_default();
    ensure!(
        start["approval"] == json!(id),
        "the start of the call that spent approval {id} names approval {}",
        start["approval"]
    );
    let third = call(&host, "add", add.clone(), 13)?;
    ensure!(
        pending_id(&third).is_some_and(|n| n != id),
        "the same call after its grant was spent did not need a new approval: {}",
        excerpt(&third.stderr)
    );
    // The grant's fingerprint, recomputed from the start entry alone.
    let mut args = Enc(Vec::new());
    args.args(&start).map_err(failed)?;
    let args_digest = sha256(&args.0);
    let mut f = Enc(b"femtoclaw-approval-v1".to_vec());
    for name in ["principal", "capability", "version", "function"] {
        f.bytes(start[name].as_str().unwrap_or("").as_bytes());
    }
    f.0.extend_from_slice(&args_digest);
    let fingerprint = hex(&sha256(&f.0));
    let steps: Vec<Json> = entries
        .iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "approval" && e["request"] == json!(id))
        .collect();
    let grant = steps
        .iter()
        .find(|e| e["action"] == "grant")
        .cloned()
        .unwrap_or_default();
    ensure!(
        grant["fingerprint"] == json!(fingerprint),
        "the grant's fingerprint {} is not the one recomputed from the start that spent it, {fingerprint}",
        grant["fingerprint"]
    );
    ensure!(
        grant["reason"] == "checked"
            && grant["at"].as_u64().is_some_and(|t| t > 0)
            && grant["by"].as_str().is_some_and(|b| b.contains("local")),
        "the grant entry does not record the decider, the reason and the time: {grant}"
    );
    ensure!(
        steps.first().is_some_and(|e| e["action"] == "request"),
        "the approval's first step is not a request: {steps:?}"
    );
    // Deny, decide again, unknown id.
    let denied = host.ok(&["approval", "deny", &other_id.to_string(), "--reason", "no"])?;
    ensure!(
        denied.trim() == format!("approval {other_id} denied"),
        "approval deny printed {:?}",
        denied.trim()
    );
    let entries = host.entries()?;
    ensure!(
        entries.iter().any(|e| e["entry"]["type"] == "approval"
            && e["entry"]["action"] == "deny"
            && e["entry"]["request"] == json!(other_id)
            && e["entry"]["reason"] == "no"),
        "the denial is not recorded as an approval entry deny with its reason"
    );
    let run = host.run(&["approval", "grant", &id.to_string()])?;
    run.expect(2, "granting an approval already used")?;
    ensure!(
        run.stderr
            .contains(&format!("approval {id} is already decided (used)")),
        "the refusal does not say `approval {id} is already decided (used)`: {}",
        excerpt(&run.stderr)
    );
    let run = host.run(&["approval", "deny", &other_id.to_string()])?;
    run.expect(2, "denying an approval already denied")?;
    ensure!(
        run.stderr
            .contains(&format!("approval {other_id} is already decided (denied)")),
        "the refusal does not say `approval {other_id} is already decided (denied)`: {}",
        excerpt(&run.stderr)
    );
    let run = host.run(&["approval", "grant", "999999"])?;
    run.expect(3, "granting an unknown approval")?;
    ensure!(
        run.stderr.contains("there is no approval 999999"),
        "the refusal does not say `there is no approval 999999`: {}",
        excerpt(&run.stderr)
    );
    // Quota refusals beside the approvals: the ledger verifies, its approval audit included.
    config(
        &host,
        "[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\n",
    )?;
    let _ = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    let _ = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    ensure!(
        approval_list(&host)?.iter().any(|a| a["state"] == "used"),
        "approval list --json does not list the spent grant as used in a later process"
    );
    host.run(&["log", "verify"])?.expect(
        0,
        "log verify of a ledger holding approvals and quota refusals",
    )?;
    Ok(())
}

fn approval_grant_expires(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, APPROVE)?;
    config(&host, "[approvals]\ngrant_ttl_ms = 1\n")?;
    let add = json!({ "a": 1, "b": 2 });
    let run = call(&host, "add", add.clone(), 13)?;
    let id = pending_id(&run).ok_or_else(|| failed("no approval id"))?;
    host.ok(&["approval", "grant", &id.to_string()])?;
    // Past the TTL, and past the next whole second (the runtime keeps grant times in seconds).
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    let run = call(&host, "add", add.clone(), 13)?;
    ensure!(
        pending_id(&run).is_some_and(|n| n != id),
        "a call after its grant expired did not need a new approval: {}",
        excerpt(&run.stderr)
    );
    let list = approval_list(&host)?;
    ensure!(
        list.iter()
            .any(|a| a["id"] == json!(id) && a["state"] == "expired"),
        "the expired grant is not listed as expired: {list:?}"
    );
    Ok(())
}

/// A server the case started on a data directory of its own, with its own policy and
/// configuration and the suite's guest installed; stopped when dropped.
struct OwnServer {
    url: String,
    token: String,
    child: std::process::Child,
    host: Host,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnServer {
    fn start(target: &Target, policy: &str, config_text: &str) -> Result<OwnServer, Failure> {
        use std::io::BufRead as _;
        let host = guest_host(target, policy)?;
        config(&host, config_text)?;
        let token = host
            .ok(&["token", "create", "--principal", "user:local"])?
            .trim()
            .to_owned();
        let mut child = host
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| failed(format!("cannot start serve: {e}")))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.as_mut() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        }
        let url = line.trim().strip_prefix("listening on ").map(str::to_owned);
        let server = OwnServer {
            url: url.clone().unwrap_or_default(),
            token,
            child,
            host,
        };
        ensure!(
            url.is_some(),
            "serve --listen 127.0.0.1:0 must first print `listening on URL`; it printed {:?}",
            line.trim()
        );
        Ok(server)
    }

    /// POST JSON with the server's token: status, headers, body.
    fn post(
        &self,
        path: &str,
        body: &Json,
        session: Option<&str>,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), Failure> {
        let mut request = crate::target::Server::client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        let response = request
            .send()
            .map_err(|e| failed(format!("{path}: no answer: {e}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .map_err(|e| failed(format!("{path}: cannot read the body: {e}")))?;
        Ok((status, headers, text))
    }

    /// An MCP session: initialized; its id.
    fn mcp_session(&self) -> Result<String, Failure> {
        let initialize = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
            }
        });
        let (status, headers, text) = self.post("/mcp", &initialize, None)?;
        ensure!(
            status == 200,
            "MCP initialize: HTTP {status}: {}",
            excerpt(&text)
        );
        let session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        self.post("/mcp", &initialized, Some(&session))?;
        Ok(session)
    }

    /// An MCP tools/call: the JSON-RPC result.
    fn mcp_call(&self, session: &str, tool: &str, arguments: Json) -> Result<Json, Failure> {
        let call = json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": tool, "arguments": arguments }
        });
        let (status, _, text) = self.post("/mcp", &call, Some(session))?;
        ensure!(
            status == 200,
            "MCP tools/call {tool}: HTTP {status}: {}",
            excerpt(&text)
        );
        let answer = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Json>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .or_else(|| serde_json::from_str(text.trim()).ok())
            .ok_or_else(|| failed(format!("MCP tools/call answered {}", excerpt(&text))))?;
        Ok(answer["result"].clone())
    }
}

fn http_quota_refusals(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case needs a server with a configuration of its own".into(),
        ));
    }
    let server = OwnServer::start(
        target,
        OPEN,
        "[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\n\n\
         [[quotas.rules]]\ncapability = \"conformance\"\nconcurrent = 1\n",
    )?;
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
    let (status, _, text) = server.post("/v1/invoke", &greet, None)?;
    ensure!(
        status == 200,
        "the first hello.greet: HTTP {status}: {}",
        excerpt(&text)
    );
    // Over the rate: 429 over-quota, Retry-After in whole seconds rounded up.
    let (status, headers, text) = server.post("/v1/invoke", &greet, None)?;
    ensure!(
        status == 429,
        "a call over its quota answered HTTP {status}, not 429: {}",
        excerpt(&text)
    );
    let problem: Json = serde_json::from_str(&text).unwrap_or_default();
    ensure!(
        problem["code"] == "over-quota",
        "the 429's problem code is not over-quota: {text}"
    );
    let detail = problem.to_string();
    let retry_ms: Option<u64> = detail
        .split(" ms")
        .filter_map(|p| p.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .filter(|n| *n > 1000)
        .find(|n| *n <= 60000);
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    ensure!(
        retry_after.is_some_and(|s| s >= 1 && retry_ms.is_none_or(|ms| s == ms.div_ceil(1000))),
        "Retry-After ({retry_after:?}) is not the retry time ({retry_ms:?} ms) in whole seconds rounded up"
    );
    ensure!(
        detail.contains("hello")
            && detail.contains("user:local")
            && detail.contains("quotas.rules[0]")
            && detail.contains("1 invocation"),
        "the refusal does not name the capability, the principal, the limit and the rule: {detail}"
    );
    // MCP: a tool error `over-quota: over quota: …`.
    let session = server.mcp_session()?;
    let result = server.mcp_call(&session, "hello.greet", json!({ "name": "Ada" }))?;
    let text = result["content"][0]["text"].as_str().unwrap_or("");
    ensure!(
        result["isError"] == json!(true) && text.starts_with("over-quota: over quota:"),
        "the MCP refusal is not an isError result beginning `over-quota: over quota:`: {result}"
    );
    // The command line, through the server: exit 12 with the message.
    let run = server
        .host
        .run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    run.expect(12, "invoke over its quota through the server")?;
    ensure!(
        run.stderr.contains("over quota") && run.stderr.contains("quotas.rules[0]"),
        "the command's refusal does not give the message: {}",
        excerpt(&run.stderr)
    );
    // Concurrency: while one conformance call runs, a second is refused; once it ended, not.
    let url = server.url.clone();
    let token = server.token.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let spinning = std::thread::spawn(move || {
        let answer = crate::target::Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({ "capability": "conformance", "function": "spin", "args": {}, "fuel": 10_000_000_000u64, "deadline_ms": 1500 })
                    .to_string(),
            )
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()));
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    });
    // Ask while the spinning call runs, until it is refused or the spinning call ended.
    let echo = json!({ "capability": "conformance", "function": "echo", "args": { "text": "x" } });
    let mut refused = None;
    let mut last = (0, String::new());
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (status, _, text) = server.post("/v1/invoke", &echo, None)?;
        if status == 429 {
            refused = Some(text);
            break;
        }
        last = (status, text);
    }
    let spun = spinning.join().ok().and_then(|r| r.ok());
    ensure!(
        spun.as_ref().is_some_and(|(s, _)| *s != 429),
        "the spinning call itself was refused: {spun:?}"
    );
    ensure!(
        refused
            .as_ref()
            .is_some_and(|t| t.contains("quotas.rules[1]")),
        "no call was refused by quotas.rules[1] while one ran under concurrent = 1 (the last answered HTTP {}: {}; the running one {spun:?})",
        last.0,
        excerpt(&last.1)
    );
    let (status, _, text) = server.post("/v1/invoke", &echo, None)?;
    ensure!(
        status == 200,
        "a call after the running one ended answered HTTP {status}: the place was not given back: {}",
        excerpt(&text)
    );
    Ok(())
}

/// Specification 28's keys, in schema order, with their embedded defaults as `show` writes them.
const DEFAULTS: &[(&str, &[(&str, &str)])] = &[
    (
        "server",
        &[
            ("listen", "\"127.0.0.1:8420\""),
            ("concurrency", "4"),
            ("queue", "64"),
            ("per_principal", "4"),
            ("max_body_bytes", "1048576"),
            ("request_timeout_ms", "60000"),
            ("shutdown_grace_ms", "30000"),
        ],
    ),
    (
        "limits",
        &[
            ("max_fuel", "10000000000"),
            ("deadline_ms", "30000"),
            ("max_recorded_bytes", "67108864"),
            ("memory_bytes", "67108864"),
        ],
    ),
    ("engine", &[("disabled_cpu_features", "[]")]),
    ("quotas", &[("rules", "[]")]),
    (
        "approvals",
        &[("wait_ms", "0"), ("grant_ttl_ms", "3600000")],
    ),
    ("ledger", &[("origin", "\"femtoclaw.local/ledger\"")]),
    (
        "mcp",
        &[
            ("tools_allow", "[]"),
            ("tools_deny", "[]"),
            ("allowed_origins", "[]"),
        ],
    ),
    (
        "http",
        &[
            ("max_request_bytes", "1048576"),
            ("max_response_bytes", "4194304"),
            ("timeout_ms", "30000"),
            ("max_redirects", "10"),
        ],
    ),
    (
        "telemetry",
        &[
            ("otlp_endpoint", "\"\""),
            ("otlp_protocol", "\"\""),
            ("service_name", "\"femtoclaw-host\""),
            ("metrics_listen", "\"\""),
        ],
    ),
];

/// `config show`'s lines as (section, key, value, source), in order.
pub(super) fn shown_config(text: &str) -> Result<Vec<(String, String, String, String)>, Failure> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (pair, source) = line.split_once("  # ").ok_or_else(|| {
            failed(format!(
                "config show: {line:?} is not `KEY = VALUE  # SOURCE`"
            ))
        })?;
        let (key, value) = pair.split_once(" = ").ok_or_else(|| {
            failed(format!(
                "config show: {line:?} is not `KEY = VALUE  # SOURCE`"
            ))
        })?;
        out.push((
            section.clone(),
            key.to_owned(),
            value.to_owned(),
            source.to_owned(),
        ));
    }
    Ok(out)
}

fn expected_defaults() -> Vec<(String, String, String, String)> {
    DEFAULTS
        .iter()
        .flat_map(|(section, keys)| {
            keys.iter().map(move |(k, v)| {
                (
                    (*section).to_owned(),
                    (*k).to_owned(),
                    (*v).to_owned(),
                    "default".to_owned(),
                )
            })
        })
        .collect()
}

fn config_defaults_and_show(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let fresh = host.ok(&["config", "show"])?;
    ensure!(
        fresh
            .lines()
            .any(|l| l == "listen = \"127.0.0.1:8420\"  # default"),
        "config show on a fresh data directory does not print `listen = \"127.0.0.1:8420\"  # default`"
    );
    ensure!(
        shown_config(&fresh)? == expected_defaults(),
        "config show on a fresh data directory is not every key of specification 28, in schema order, with its default: {}",
        excerpt(&fresh)
    );
    // Empty, or only comments and empty sections: the defaults again.
    for text in ["", "# nothing\n\n[server]\n# still nothing\n[limits]\n"] {
        config(&host, text)?;
        let shown = host.ok(&["config", "show"])?;
        ensure!(
            shown_config(&shown)? == expected_defaults(),
            "a config file holding {text:?} does not give exactly the defaults, each from `default`: {}",
            excerpt(&shown)
        );
    }
    // The default file is read; a key set in it shows its file and line; others keep defaults.
    config(&host, "# comment\n[limits]\n\nmax_fuel = 7000000\n")?;
    let shown = shown_config(&host.ok(&["config", "show"])?)?;
    let file = host.data.path().join("femtoclaw.toml");
    for (section, key, value, source) in &shown {
        if key == "max_fuel" {
            ensure!(
                value == "7000000" && *source == format!("file {}:4", file.display()),
                "max_fuel set on line 4 of the file shows as {value} from {source}"
            );
        } else {
            ensure!(
                source == "default",
                "{section}.{key} shows source {source} though the file does not set it"
            );
        }
    }
    // --config names another file; the output of show is itself a config file that loads to
    // the same configuration, a path with a control character included.
    let other = host.file(
        "other\u{7}name.toml",
        b"[server]\nconcurrency = 9\n[mcp]\ntools_deny = [\"a\\\"b\", \"c\"]\n",
    )?;
    let run = host.run(&["--config", &s(&other), "config", "show"])?;
    run.expect(0, "config show --config FILE")?;
    let first = shown_config(&run.stdout)?;
    ensure!(
        first
            .iter()
            .any(|(_, k, v, _)| k == "concurrency" && v == "9"),
        "the file --config names was not read: {}",
        excerpt(&run.stdout)
    );
    let again = host.file("again.toml", run.stdout.as_bytes())?;
    let run = host.run(&["--config", &s(&again), "config", "show"])?;
    run.expect(0, "config show of config show's own output")?;
    let second = shown_config(&run.stdout)?;
    let values = |v: &[(String, String, String, String)]| {
        v.iter()
            .map(|(s, k, v, _)| (s.clone(), k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    ensure!(
        values(&first) == values(&second),
        "config show's output, loaded as a config file, does not give the same configuration"
    );
    // An override in the environment is shown with its variable and takes effect.
    let run = host
        .command(&["config", "show"])
        .env("FEMTOCLAW_LIMITS_MAX_FUEL", "1000")
        .output()
        .map_err(|e| failed(e.to_string()))?;
    ensure!(
        String::from_utf8_lossy(&run.stdout)
            .lines()
            .any(|l| l == "max_fuel = 1000  # env FEMTOCLAW_LIMITS_MAX_FUEL"),
        "config show does not print `max_fuel = 1000  # env FEMTOCLAW_LIMITS_MAX_FUEL`"
    );
    std::fs::remove_file(&file).map_err(|e| failed(e.to_string()))?;
    host.policy(OPEN)?;
    host.install()?;
    let run = host
        .command(&["invoke", "conformance", "echo", "--args", r#"{"text":"x"}"#])
        .env("FEMTOCLAW_LIMITS_MAX_FUEL", "1000")
        .output()
        .map_err(|e| failed(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(
        run.status.code() == Some(2) && stderr.contains("1000"),
        "with FEMTOCLAW_LIMITS_MAX_FUEL=1000 a call budgeted 50,000,000 was not refused naming 1000: {}",
        excerpt(&stderr)
    );
    Ok(())
}

/// `config show` (or `config check`) under environment variables: exit code, stdout, stderr.
fn with_env(
    host: &Host,
    args: &[&str],
    vars: &[(&str, &str)],
) -> Result<(i32, String, String), Failure> {
    let mut command = host.command(args);
    for (k, v) in vars {
        command.env(k, v);
    }
    let out = command.output().map_err(|e| failed(e.to_string()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn config_environment(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    config(
        &host,
        "[limits]\nmax_fuel = 5000\n[mcp]\ntools_allow = [\"x\"]\n",
    )?;
    let (code, out, err) = with_env(
        &host,
        &["config", "show"],
        &[
            ("FEMTOCLAW_LIMITS_MAX_FUEL", "6000"),
            ("FEMTOCLAW_LIMITS_DEADLINE_MS", "1234"),
            ("FEMTOCLAW_MCP_TOOLS_ALLOW", " a, b,,c "),
            (
                "FEMTOCLAW_QUOTAS_RULES",
                "[{ capability = \"hello\", concurrent = 2 }]",
            ),
            ("FEMTOCLAW_LEDGER_ORIGIN", "env.example/log"),
        ],
    )?;
    ensure!(
        code == 0,
        "config show under valid variables exited {code}: {}",
        excerpt(&err)
    );
    for line in [
        "max_fuel = 6000  # env FEMTOCLAW_LIMITS_MAX_FUEL",
        "deadline_ms = 1234  # env FEMTOCLAW_LIMITS_DEADLINE_MS",
        "tools_allow = [\"a\", \"b\", \"c\"]  # env FEMTOCLAW_MCP_TOOLS_ALLOW",
        "origin = \"env.example/log\"  # env FEMTOCLAW_LEDGER_ORIGIN",
    ] {
        ensure!(
            out.lines().any(|l| l == line),
            "config show does not print `{line}`: {}",
            excerpt(&out)
        );
    }
    ensure!(
        out.lines().any(|l| l.starts_with("rules = [{")
            && l.contains("concurrent = 2")
            && l.ends_with("# env FEMTOCLAW_QUOTAS_RULES")),
        "FEMTOCLAW_QUOTAS_RULES is not read as inline TOML: {}",
        excerpt(&out)
    );
    // Variables that name no section, and lower-case ones, change nothing.
    let (code, out, _) = with_env(
        &host,
        &["config", "show"],
        &[
            ("FEMTOCLAW_TOKEN", "fct_x"),
            ("FEMTOCLAW_POLICY", "/nowhere"),
            ("FEMTOCLAW_NOSECTION_KEY", "1"),
            ("femtoclaw_limits_max_fuel", "3"),
            ("FEMTOCLAW_limits_max_fuel", "4"),
        ],
    )?;
    let plain = host.ok(&["config", "show"])?;
    ensure!(
        code == 0 && out == plain,
        "variables that are not FEMTOCLAW_<SECTION>_ changed the configuration (exit {code})"
    );
    // Not plain digits.
    for bad in ["+3", "3_000", "0x10", " 3", "-1"] {
        let (code, _, err) = with_env(
            &host,
            &["config", "show"],
            &[("FEMTOCLAW_LIMITS_MAX_FUEL", bad)],
        )?;
        ensure!(
            code == 2
                && err.contains("FEMTOCLAW_LIMITS_MAX_FUEL")
                && err.contains("limits.max_fuel"),
            "FEMTOCLAW_LIMITS_MAX_FUEL={bad:?} was not refused naming the variable and the key (exit {code}): {}",
            excerpt(&err)
        );
    }
    // The first bad variable by name is reported.
    let (code, _, err) = with_env(
        &host,
        &["config", "show"],
        &[
            ("FEMTOCLAW_SERVER_QUEUE", "x"),
            ("FEMTOCLAW_LIMITS_MAX_FUEL", "y"),
        ],
    )?;
    ensure!(
        code == 2
            && err.contains("FEMTOCLAW_LIMITS_MAX_FUEL")
            && !err.contains("FEMTOCLAW_SERVER_QUEUE"),
        "of two bad variables the first by name (FEMTOCLAW_LIMITS_MAX_FUEL) must be reported: {}",
        excerpt(&err)
    );
    // An error in the file is reported though a variable overrides that key; the first error in
    // the file is the one reported.
    config(&host, "[limits]\nmax_fuel = 0\n[server]\nqueue = \"x\"\n")?;
    let (code, _, err) = with_env(
        &host,
        &["config", "show"],
        &[("FEMTOCLAW_LIMITS_MAX_FUEL", "9")],
    )?;
    ensure!(
        code == 2 && err.contains("line 2") && err.contains("limits.max_fuel"),
        "the file's first error (limits.max_fuel, line 2) was not reported though a variable overrides it: {}",
        excerpt(&err)
    );
    Ok(())
}

fn config_refusals(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let valid = host.file(
        "valid.toml",
        b"limits.max_fuel = 7\n[server]\nlisten = \"[::1]:9000\"\n[http]\nmax_redirects = 0\n[telemetry]\notlp_endpoint = \"https://collector.example:4318\"\notlp_protocol = \"grpc\"\nmetrics_listen = \"127.0.0.1:9100\"\n[mcp]\ntools_deny = { }\n",
    );
    let _ = valid;
    let valid = host.file(
        "valid.toml",
        b"limits.max_fuel = 7\n[server]\nlisten = \"[::1]:9000\"\n[http]\nmax_redirects = 0\n[telemetry]\notlp_endpoint = \"https://collector.example:4318\"\notlp_protocol = \"grpc\"\nmetrics_listen = \"127.0.0.1:9100\"\n",
    )?;
    // Checking reads no environment.
    let (code, out, err) = with_env(
        &host,
        &["config", "check", &s(&valid)],
        &[("FEMTOCLAW_LIMITS_MAX_FUEL", "+3")],
    )?;
    ensure!(
        code == 0 && out.starts_with("ok:"),
        "config check of a valid file (with a bad variable in the environment) exited {code}: {}{}",
        excerpt(&out),
        excerpt(&err)
    );
    // Dotted keys and inline tables are the same keys as table headers.
    let dotted = host.file(
        "dotted.toml",
        b"server = { concurrency = 3 }\nlimits.deadline_ms = 9\n",
    )?;
    let run = host.run(&["--config", &s(&dotted), "config", "show"])?;
    run.expect(0, "config show of dotted keys and an inline table")?;
    ensure!(
        run.stdout.contains("concurrency = 3  # file")
            && run.stdout.contains("deadline_ms = 9  # file"),
        "dotted keys and inline tables are not read as the keys: {}",
        excerpt(&run.stdout)
    );
    // (file text, line, what the error must name)
    let bad: &[(&str, u32, &[&str])] = &[
        (
            "[bogus]\n",
            1,
            &[
                "unknown section",
                "[bogus]",
                "server, limits, engine, quotas, approvals, ledger, mcp, http, telemetry",
            ],
        ),
        ("toplevel = 1\n", 1, &["unknown section"]),
        (
            "[limits]\n\ndeadline = 5\n",
            3,
            &[
                "unknown key",
                "limits.deadline",
                "max_fuel, deadline_ms, max_recorded_bytes, memory_bytes",
            ],
        ),
        ("[server]\nconcurrency = 0\n", 2, &["server.concurrency"]),
        (
            "[server]\nper_principal = 0\n",
            2,
            &["server.per_principal"],
        ),
        (
            "[server]\nmax_body_bytes = 0\n",
            2,
            &["server.max_body_bytes"],
        ),
        (
            "[server]\nrequest_timeout_ms = 0\n",
            2,
            &["server.request_timeout_ms"],
        ),
        (
            "[server]\nshutdown_grace_ms = 0\n",
            2,
            &["server.shutdown_grace_ms"],
        ),
        ("[limits]\nmax_fuel = 0\n", 2, &["limits.max_fuel"]),
        ("[limits]\ndeadline_ms = 0\n", 2, &["limits.deadline_ms"]),
        (
            "[limits]\nmax_recorded_bytes = 0\n",
            2,
            &["limits.max_recorded_bytes"],
        ),
        (
            "[limits]\nmemory_bytes = 65535\n",
            2,
            &["limits.memory_bytes"],
        ),
        ("[http]\ntimeout_ms = 0\n", 2, &["http.timeout_ms"]),
        ("[server]\nqueue = -1\n", 2, &["server.queue"]),
        (
            "[http]\nmax_redirects = 4294967296\n",
            2,
            &["http.max_redirects"],
        ),
        (
            "[server]\nlisten = \"localhost:8420\"\n",
            2,
            &["server.listen"],
        ),
        (
            "[telemetry]\nmetrics_listen = \"localhost:9100\"\n",
            2,
            &["telemetry.metrics_listen"],
        ),
        ("[ledger]\norigin = \"\"\n", 2, &["ledger.origin"]),
        ("[ledger]\norigin = \"a b\"\n", 2, &["ledger.origin"]),
        ("[ledger]\norigin = \"a\\u0007b\"\n", 2, &["ledger.origin"]),
        (
            "[telemetry]\notlp_endpoint = \"ftp://x\"\n",
            2,
            &["telemetry.otlp_endpoint"],
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://\"\n",
            2,
            &["telemetry.otlp_endpoint"],
        ),
        (
            "[telemetry]\notlp_protocol = \"http/json\"\n",
            2,
            &["telemetry.otlp_protocol"],
        ),
        ("[limits]\nmax_fuel = \"x\"\n", 2, &["limits.max_fuel"]),
        ("server = 1\n", 1, &["server", "must be a table"]),
        ("[[http]]\n", 1, &["http", "must be a table"]),
        ("[mcp]\ntools_allow = [\"a\", 3]\n", 2, &["mcp.tools_allow"]),
        (
            "[limits]\nmax_fuel = 1\nmax_fuel = 2\n",
            3,
            &["duplicate key"],
        ),
        ("[limits\n", 1, &[]),
        (
            "[server]\nqueue = 1\n[limits]\nmax_fuel = 0\ndeadline_ms = 0\n",
            4,
            &["limits.max_fuel"],
        ),
    ];
    for (i, (text, line, names)) in bad.iter().enumerate() {
        let file = host.file(&format!("bad{i}.toml"), text.as_bytes())?;
        let run = host.run(&["config", "check", &s(&file)])?;
        ensure!(
            run.code == 2,
            "config check of {text:?} exited {} where 2 is required",
            run.code
        );
        let want = format!("`{}` line {line}", file.display());
        ensure!(
            run.stderr.contains(&want) && names.iter().all(|n| run.stderr.contains(n)),
            "the refusal of {text:?} must name {want} and {names:?}: {}",
            excerpt(&run.stderr)
        );
    }
    // A given file that does not exist, or is not UTF-8.
    let missing = host.files.path().join("missing.toml");
    let run = host.run(&["--config", &s(&missing), "config", "show"])?;
    run.expect(2, "--config naming a file that does not exist")?;
    ensure!(
        run.stderr.contains(&s(&missing)),
        "the refusal does not name the missing file: {}",
        excerpt(&run.stderr)
    );
    let binary = host.file("binary.toml", b"\xff\xfe[limits]\n")?;
    let run = host.run(&["config", "check", &s(&binary)])?;
    run.expect(2, "a config file that is not UTF-8")?;
    ensure!(
        run.stderr.contains(&s(&binary)),
        "the refusal does not name the unreadable file: {}",
        excerpt(&run.stderr)
    );
    // A misspelt variable of a known section.
    let (code, _, err) = with_env(
        &host,
        &["config", "show"],
        &[("FEMTOCLAW_LIMITS_MAXFUEL", "3")],
    )?;
    ensure!(
        code == 2
            && err.contains("FEMTOCLAW_LIMITS_MAXFUEL")
            && err.contains("max_fuel, deadline_ms, max_recorded_bytes, memory_bytes"),
        "a misspelt FEMTOCLAW_LIMITS_MAXFUEL was not refused listing the keys of [limits]: {}",
        excerpt(&err)
    );
    Ok(())
}

fn config_refused_before_any_work(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    config(&host, "[limits]\nmax_fuel = 0\n")?;
    let before = snapshot(host.data.path());
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    run.expect(2, "invoke under an invalid configuration")?;
    ensure!(
        snapshot(host.data.path()) == before,
        "invoke under an invalid configuration changed the data directory before refusing"
    );
    for args in [&["log", "show"][..], &["kv", "list"], &["approval", "list"]] {
        host.run(args)?.expect(
            2,
            &format!("{} under an invalid configuration", args.join(" ")),
        )?;
    }
    std::fs::remove_file(host.data.path().join("femtoclaw.toml"))
        .map_err(|e| failed(e.to_string()))?;
    // Files of earlier versions.
    for (name, section) in [("limits.toml", "[limits]"), ("http.toml", "[http]")] {
        let old = host.data.path().join(name);
        write(&old, b"")?;
        for args in [&["config", "show"][..], &["log", "show"]] {
            let run = host.run(args)?;
            run.expect(2, &format!("{} beside {name}", args.join(" ")))?;
            ensure!(
                run.stderr.contains(&s(&old))
                    && run.stderr.contains(section)
                    && run.stderr.contains("femtoclaw.toml"),
                "the refusal does not name {name} and the {section} section of femtoclaw.toml: {}",
                excerpt(&run.stderr)
            );
        }
        std::fs::remove_file(&old).map_err(|e| failed(e.to_string()))?;
    }
    // A ledger keeps its origin.
    call(&host, "echo", json!({ "text": "x" }), 0)?;
    config(&host, "[ledger]\norigin = \"other.example/log\"\n")?;
    let before = snapshot(&host.data.path().join("ledger/segments"));
    let run = host.invoke("echo", &json!({ "text": "y" }), &[])?;
    run.expect(2, "a call with ledger.origin other than the ledger's")?;
    ensure!(
        run.stderr.contains("femtoclaw.local/ledger") && run.stderr.contains("other.example/log"),
        "the refusal does not name both origins: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        snapshot(&host.data.path().join("ledger/segments")) == before,
        "the refused call wrote to the ledger"
    );
    Ok(())
}

fn kv_ungranted_namespace(target: &Target) -> Result<(), Failure> {
    let host = guest_host(
        target,
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"kv.read\" || action == FemtoClaw::Action::\"kv.write\" };\n",
    )?;
    let run = call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    ensure!(
        run.stdout.to_lowercase().contains("accessdenied") || run.stdout.contains("access-denied"),
        "a write to an ungranted namespace was not answered access-denied: {}",
        run.stdout.trim()
    );
    let entries = host.entries()?;
    ensure!(
        entries.iter().any(|e| e["entry"]["type"] == "decision"
            && e["entry"]["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("kv."))
            && e["entry"]["resource"] == "conformance"
            && e["entry"]["allowed"] == json!(false)),
        "the refused key-value access is not recorded as a denied kv decision"
    );
    // Recorded as the variant by its case name.
    ensure!(
        entries.iter().any(|e| e["entry"]["type"] == "host-call"
            && e["entry"]["result"]
                .to_string()
                .contains(r#"{"variant":{"case":"access-denied""#)),
        "the host call's error is not recorded as the variant access-denied"
    );
    let listed = host.ok(&["kv", "list", "--json"])?;
    ensure!(
        listed.trim().is_empty() || listed.trim() == "[]",
        "a refused write stored something: {}",
        excerpt(&listed)
    );
    // The default policy grants the installed capability nothing.
    std::fs::remove_dir_all(host.data.path().join("policy")).map_err(|e| failed(e.to_string()))?;
    host.invoke("remember", &json!({ "key": "k", "value": "v" }), &[])?
        .expect(7, "a third-party capability under the default policy")?;
    let listed = host.ok(&["kv", "list", "--json"])?;
    ensure!(
        listed.trim().is_empty() || listed.trim() == "[]",
        "the default policy let a third-party capability store: {}",
        excerpt(&listed)
    );
    Ok(())
}

fn kv_list(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let key = "k\u{1b}[2J\u{7}";
    call(
        &host,
        "remember",
        json!({ "key": key, "value": "v\u{1b}x" }),
        0,
    )?;
    call(
        &host,
        "remember",
        json!({ "key": "plain", "value": "\u{0}\u{1}" }),
        0,
    )?;
    let run = host.run(&["kv", "list"])?;
    run.expect(0, "kv list")?;
    ensure!(
        !run.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "kv list printed a raw control character of a guest-written key: {:?}",
        run.stdout
    );
    ensure!(
        run.stdout.contains("conformance/"),
        "kv list does not show the namespace: {}",
        excerpt(&run.stdout)
    );
    let json_out = host.ok(&["kv", "list", "--json"])?;
    let pairs: Vec<Json> = json_out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let found = pairs.iter().find(|p| p["key"] == json!(key));
    ensure!(
        found.is_some_and(|p| p["namespace"] == "conformance"
            && p["value"].as_str().map(b64) == Some(Ok(b"v\x1bx".to_vec()))),
        "kv list --json does not print one object per pair with namespace, key and base64 value: {}",
        excerpt(&json_out)
    );
    ensure!(
        pairs.len() == 2,
        "kv list --json printed {} objects for two pairs",
        pairs.len()
    );
    Ok(())
}

/// The guest with a custom section appended: other bytes, the same behaviour.
fn rebuilt_guest() -> Vec<u8> {
    let name = b"conformance-rebuild";
    let payload = b"same code, other bytes";
    let mut out = crate::GUEST.to_vec();
    out.push(0x00);
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

fn replay_components_and_refusals(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    call(&host, "recall", json!({ "key": "k" }), 0)?;
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?
    .expect(7, "a denied call")?;
    host.invoke(
        "spin",
        &json!({}),
        &["--fuel", "10000000000", "--deadline-ms", "200"],
    )?
    .expect(11, "spin past its deadline")?;
    let key = key_text(&host)?;
    let bare = export(&host, "bare.export", &[])?;
    let elsewhere = target.host()?;
    let replay = |file: &Path, extra: &[&str]| {
        let f = s(file);
        let mut args = vec!["replay", f.as_str(), "--key", key.as_str(), "--json"];
        args.extend_from_slice(extra);
        elsewhere.run(&args)
    };
    // No component anywhere: exit 10 naming the capability and the digest.
    let run = replay(&bare, &[])?;
    run.expect(
        10,
        "replay of an export without its components on an empty data directory",
    )?;
    let digest = hex(&sha256(crate::GUEST));
    ensure!(
        run.stderr.contains("conformance") && run.stderr.contains(&digest),
        "the refusal does not name the capability and its digest {digest}: {}",
        excerpt(&run.stderr)
    );
    // Components supplied by SHA-256 (any file name), then a rebuild named <capability>.wasm.
    let by_sha = host.files.path().join("by-sha");
    std::fs::create_dir_all(&by_sha).map_err(|e| failed(e.to_string()))?;
    write(&by_sha.join("whatever.wasm"), crate::GUEST)?;
    let run = replay(&bare, &["--components", &s(&by_sha)])?;
    run.expect(0, "replay with the component supplied by SHA-256")?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        statuses == ["identical", "identical", "refused", "interrupted"],
        "replay must report identical, identical, refused (not re-executed), interrupted (its deadline passed when recorded): {statuses:?}"
    );
    ensure!(
        report["interrupted"] == json!(1) && report["refused"] == json!(1),
        "the report does not count one refused and one interrupted: {report}"
    );
    let by_name = host.files.path().join("by-name");
    std::fs::create_dir_all(&by_name).map_err(|e| failed(e.to_string()))?;
    let rebuilt = rebuilt_guest();
    write(&by_name.join("conformance.wasm"), &rebuilt)?;
    let run = replay(&bare, &["--components", &s(&by_name)])?;
    run.expect(0, "replay against a rebuild named conformance.wasm")?;
    let report = run.json()?;
    let rebuilt_digest = hex(&sha256(&rebuilt));
    ensure!(
        report["invocations"][0]["replaced_component"] == json!(rebuilt_digest)
            && report["invocations"][0]["status"] == "identical",
        "the rebuild is not reported as replaced_component {rebuilt_digest}: {}",
        excerpt(&run.stdout)
    );
    // With its components, the export alone suffices; the data directory's store is neither
    // read nor created.
    let full = export(&host, "full.export", &["--with-components"])?;
    replay(&full, &[])?.expect(0, "replay of an export with its components")?;
    ensure!(
        !elsewhere.data.path().join("kv").exists()
            && !elsewhere.data.path().join("ledger").exists(),
        "replay created a key-value store or a ledger in the data directory it ran on"
    );
    // A byte changed without re-signing: integrity (8), never divergence (9).
    let mut bytes = read(&full)?;
    let at = bytes
        .windows(b"remember".len())
        .position(|w| w == b"remember")
        .ok_or_else(|| failed("the export does not hold the recorded function"))?;
    bytes[at] = b'R';
    let forged = host.file("forged.export", &bytes)?;
    let run = replay(&forged, &[])?;
    run.expect(8, "replay of an export changed without re-signing")?;
    ensure!(
        run.stdout.trim().is_empty(),
        "replay of a forged export printed a report"
    );
    Ok(())
}

fn killed_during_effect(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "before" }), 0)?;
    // The capability's /data is <data dir>/shared, holding a FIFO: opening it for writing
    // blocks until a reader comes, after the intent was written ahead.
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(e.to_string()))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    let made = std::process::Command::new("mkfifo")
        .arg(shared.join("pipe"))
        .status()
        .map_err(|e| Failure::NotApplicable(format!("mkfifo is not available: {e}")))?;
    if !made.success() {
        return Err(Failure::NotApplicable("mkfifo failed".into()));
    }
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
    let started = std::time::Instant::now();
    let mut intent = false;
    while started.elapsed() < std::time::Duration::from_secs(5) {
        let seg = read(&segment(&host)).unwrap_or_default();
        if seg.windows(b"open-at".len()).any(|w| w == b"open-at") {
            intent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = writer.kill();
    let _ = writer.wait();
    ensure!(
        intent,
        "the effectful open was not written ahead within 5 s"
    );
    // The next open ends the invocation as interrupted, once, before any new one, naming it.
    let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    run.expect(0, "the next call")?;
    let logged = plain_text(&run.stderr);
    ensure!(
        logged.contains("interrupted") && logged.contains("[1]"),
        "opening does not name the invocation that never ended (1): {}",
        excerpt(&logged)
    );
    call(&host, "echo", json!({ "text": "again" }), 0)?;
    let entries = host.entries()?;
    let own = invocation(&entries, 1);
    let types: Vec<&str> = own.iter().filter_map(|e| e["type"].as_str()).collect();
    // Written ahead: the start, its invoke decision, the call's decision and intent.
    ensure!(
        types.starts_with(&["invocation-start", "decision"]) && types.contains(&"host-call-intent"),
        "the killed invocation's start, decision and intent were not durable: {types:?}"
    );
    let intents: Vec<&Json> = own
        .iter()
        .filter(|e| e["type"] == "host-call-intent")
        .collect();
    ensure!(
        intents.len() == 1
            && intents[0]["function"]
                .as_str()
                .is_some_and(|f| f.contains("open-at")),
        "only the effectful call (open-at) is to be written ahead; the intents are {intents:?}"
    );
    let traps: Vec<&Json> = own.iter().filter(|e| e["type"] == "trap").collect();
    ensure!(
        traps.len() == 1 && traps[0]["kind"] == "interrupted",
        "the invocation must be ended by one interrupted trap: {types:?}"
    );
    ensure!(
        types.last() == Some(&"invocation-end")
            && types.iter().filter(|t| **t == "invocation-end").count() == 1
            && own.last().is_some_and(|e| e["result"].is_null()),
        "the invocation must be ended once, without a result: {types:?}"
    );
    // Before any new invocation; numbers keep growing.
    let end_at = entries.iter().position(|e| {
        e["entry"]["type"] == "invocation-end" && e["entry"]["invocation"] == json!(1)
    });
    let next_at = entries.iter().position(|e| {
        e["entry"]["type"] == "invocation-start" && e["entry"]["invocation"] == json!(2)
    });
    ensure!(
        end_at.is_some() && next_at.is_some() && end_at < next_at,
        "the interrupted invocation is not ended before the next one starts"
    );
    let numbers: Vec<u64> = entries
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .filter_map(|e| e["entry"]["invocation"].as_u64())
        .collect();
    ensure!(
        numbers == [0, 1, 2, 3],
        "invocation numbers across reopening are {numbers:?}, not 0, 1, 2, 3"
    );
    host.run(&["log", "verify"])?
        .expect(0, "log verify after the interruption")?;
    Ok(())
}

fn tokens_recorded_not_kept(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "agent:helper",
            "--name",
            "helper",
            "--group",
            "ops",
        ])
        .or_else(|_| {
            host.ok(&[
                "token",
                "create",
                "--principal",
                "agent:helper",
                "--group",
                "ops",
            ])
        })?
        .trim()
        .to_owned();
    ensure!(!token.is_empty(), "token create printed no token");
    call(&host, "echo", json!({ "text": "between" }), 0)?;
    let list = host.ok(&["token", "list"])?;
    let name = list
        .lines()
        .find(|l| l.contains("agent:helper"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| {
            failed(format!(
                "token list does not list agent:helper: {}",
                excerpt(&list)
            ))
        })?
        .to_owned();
    host.ok(&["token", "revoke", &name])?;
    ensure!(!list.contains(&token), "token list shows the token itself");
    let entries = host.entries()?;
    let changes: Vec<(usize, &Json)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e["entry"]["type"] == "token-change")
        .map(|(i, e)| (i, &e["entry"]))
        .collect();
    let digest = hex(&sha256(token.as_bytes()));
    ensure!(
        changes.len() == 2
            && changes[0].1["action"] == "create"
            && changes[1].1["action"] == "revoke"
            && changes.iter().all(|(_, c)| c["name"] == json!(name)
                && c["principal"] == "agent:helper"
                && c["groups"] == json!(["ops"])
                && c["token_sha256"] == json!(digest)),
        "creation and revocation must be token-change entries naming the token, its principal and groups and its SHA-256 {digest}: {changes:?}"
    );
    let echo_at = entries
        .iter()
        .position(|e| e["entry"]["type"] == "invocation-start")
        .unwrap_or(0);
    ensure!(
        changes[0].0 < echo_at && echo_at < changes[1].0,
        "the token changes are not in ledger order with the invocation between them"
    );
    // The token itself appears nowhere in the ledger, nor in an export of it.
    let file = export(&host, "tokens.export", &[])?;
    for (what, bytes) in [
        ("the export", read(&file)?),
        ("the segment", read(&segment(&host))?),
    ] {
        ensure!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{what} holds the bearer token"
        );
    }
    Ok(())
}

fn embedded_capability_stays(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let run = host.run(&["capability", "remove", "hello"])?;
    run.expect(2, "capability remove of an embedded capability")?;
    let list = host.ok(&["capability", "list"])?;
    ensure!(
        list.lines().any(|l| l.starts_with("hello ")),
        "hello is no longer listed after a refused removal"
    );
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet after a refused removal")?;
    Ok(())
}

impl OwnServer {
    fn get(&self, path: &str, token: &str) -> Result<(u16, String), Failure> {
        let response = crate::target::Server::client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .map_err(|e| failed(format!("{path}: no answer: {e}")))?;
        let status = response.status().as_u16();
        Ok((status, response.text().unwrap_or_default()))
    }

    /// Stops the server with SIGTERM and waits for it.
    fn terminate(&mut self) -> Result<(), Failure> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| failed(format!("cannot send SIGTERM: {e}")))?;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(failed("the server did not stop within 10 s of SIGTERM"))
    }
}

fn commands_through_the_server(target: &Target) -> Result<(), Failure> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case needs a server on a data directory of its own".into(),
        ));
    }
    let mut server = OwnServer::start(target, OPEN, "")?;
    let host = &server.host;
    let socket = host.data.path().join("admin.sock");
    let meta =
        std::fs::metadata(&socket).map_err(|e| failed(format!("{}: {e}", socket.display())))?;
    ensure!(
        meta.file_type().is_socket() && meta.permissions().mode() & 0o777 == 0o600,
        "the admin socket is not a socket of mode 600 (mode {:o})",
        meta.permissions().mode() & 0o777
    );
    let old_key = key_text(host)?;
    // Invocations through the server keep their answers and exit codes.
    let run = host.invoke("echo", &json!({ "text": "via" }), &[])?;
    run.expect(0, "invoke through the server")?;
    ensure!(
        run.json()? == json!("via"),
        "invoke through the server printed {}",
        run.stdout.trim()
    );
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?
    .expect(7, "a denied invoke through the server")?;
    // Tokens: accepted from the next request, refused once revoked.
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "user:second",
            "--name",
            "second",
        ])?
        .trim()
        .to_owned();
    let (status, _) = server.get("/v1/ledger/checkpoint", &token)?;
    ensure!(
        status == 200,
        "a token created through the server got HTTP {status} on its next request"
    );
    host.ok(&["token", "revoke", "second"])?;
    let (status, _) = server.get("/v1/ledger/checkpoint", &token)?;
    ensure!(
        status == 401,
        "a token revoked through the server got HTTP {status}, not 401"
    );
    // Capabilities: offered once added, unknown once removed.
    let echo = json!({ "capability": "conformance", "function": "echo", "args": { "text": "x" } });
    host.ok(&["capability", "remove", "conformance"])?;
    let (status, _, _) = server.post("/v1/invoke", &echo, None)?;
    ensure!(
        status == 404,
        "a capability removed through the server answered HTTP {status}, not 404"
    );
    host.install()?;
    let (status, _, text) = server.post("/v1/invoke", &echo, None)?;
    ensure!(
        status == 200,
        "a capability added through the server answered HTTP {status}: {}",
        excerpt(&text)
    );
    // A key generated through the server signs from then on; key show reads it beside the server.
    let new_key = host.ok(&["key", "generate"])?.trim().to_owned();
    ensure!(
        new_key != old_key,
        "key generate through the server printed the old key"
    );
    ensure!(
        key_text(host)? == new_key,
        "key show beside the server does not print the new key"
    );
    let (status, _, _) = server.post("/v1/invoke", &echo, None)?;
    ensure!(
        status == 200,
        "a call after the rotation answered HTTP {status}"
    );
    let (_, note) = server.get("/v1/ledger/checkpoint", &server.token)?;
    let new = crypto::Key::parse(&new_key).map_err(failed)?;
    crypto::checkpoint(&note, &new).map_err(|e| {
        failed(format!(
            "the checkpoint after a rotation through the server: {e}"
        ))
    })?;
    // Stopped normally, the server removes its socket; the ledger verifies with both keys.
    server.terminate()?;
    let host = &server.host;
    ensure!(
        !socket.exists(),
        "a server that stopped normally left its admin socket"
    );
    host.run(&["log", "verify", "--key", &old_key, "--key", &new_key])?
        .expect(0, "log verify with the old and the new key pinned")?;
    host.run(&["log", "verify"])?
        .expect(0, "log verify against the keys the ledger records")?;
    // Without a server the same commands run on the host itself.
    host.invoke("echo", &json!({ "text": "alone" }), &[])?
        .expect(0, "invoke with no server")?;
    Ok(())
}

fn failures_name_first_bad_position(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let key = key_text(&host)?;
    let file = export(&host, "honest.export", &[])?;
    let parsed = parse_export(&file)?;
    let n = parsed.entries.len();
    let last_size = n;
    let last_checkpoint = parsed.checkpoints.len() - 1;
    let mut cases: Vec<(String, Export, Vec<String>)> = Vec::new();
    for version in [1u8, 2, 4] {
        let mut e = parsed.clone();
        e.entries[3][0] = version;
        cases.push((
            format!("entry 3 of encoding version {version}"),
            e,
            vec![
                "entry 3".into(),
                format!("unsupported encoding version `{version}`"),
            ],
        ));
    }
    let mut e = parsed.clone();
    e.entries[3].push(0);
    cases.push((
        "a byte after entry 3".into(),
        e,
        vec!["entry 3".into(), "trailing".into()],
    ));
    let mut e = parsed.clone();
    e.entries[3][1] = 11;
    cases.push((
        "entry 3 of kind 11".into(),
        e,
        vec!["entry 3".into(), "tag `11`".into(), "byte 1".into()],
    ));
    let mut e = parsed.clone();
    e.entries.pop();
    cases.push((
        "the last entry missing".into(),
        e,
        vec![
            format!("checkpoint {last_checkpoint}"),
            format!("{last_size}"),
            format!("{}", n - 1),
        ],
    ));
    let mut e = parsed.clone();
    e.entries.push(parsed.entries[n - 1].clone());
    cases.push((
        "an entry no checkpoint covers".into(),
        e,
        vec![format!("{n}")],
    ));
    let mut e = parsed.clone();
    {
        let note = &mut e.checkpoints[1];
        let at = note.len() - 5;
        note[at] = if note[at] == b'A' { b'B' } else { b'A' };
    }
    let size1 = String::from_utf8_lossy(&parsed.checkpoints[1])
        .lines()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    cases.push((
        "checkpoint 1's signature changed".into(),
        e,
        vec!["checkpoint 1".into(), format!("tree size {size1}")],
    ));
    let elsewhere = target.host()?;
    for (what, export, names) in cases {
        let file = host.file("bad.export", &export.write())?;
        let run = verify_file(&elsewhere, &file, &[&key])?;
        run.expect(8, &format!("log verify of an export with {what}"))?;
        ensure!(
            names.iter().all(|name| run.stderr.contains(name.as_str())),
            "the failure for {what} must name {names:?}: {}",
            excerpt(&run.stderr)
        );
        let message = run.stderr.trim().trim_start_matches("error: ");
        ensure!(
            message.starts_with(|c: char| c.is_lowercase()) && !message.ends_with('.'),
            "the message for {what} does not start in lower case and end without a period: {message}"
        );
    }
    Ok(())
}

/// `files.write-file` of `/data/NAME.txt` with `len` bytes of text: the arguments file.
fn write_file_args(host: &Host, name: &str, len: usize) -> Result<String, Failure> {
    let args = json!({ "path": format!("/data/{name}.txt"), "text": "x".repeat(len) });
    let file = host.file(&format!("{name}.json"), args.to_string().as_bytes())?;
    Ok(format!("@{}", s(&file)))
}

/// The segment may not grow (the host runs with a file-size limit of its present size): the
/// write-ahead of a file write cannot be made durable, so the write is not performed, the
/// invocation ends as a trap naming the call and the ledger's error, and the ledger keeps every
/// entry it had, verifies, and takes the same write once the limit is gone.
fn failed_write_undone(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for name in ["a", "b"] {
        let args = write_file_args(&host, name, 400_000)?;
        host.ok(&["invoke", "files", "write-file", "--args", &args])?;
    }
    let before = std::fs::read(segment(&host))
        .map_err(|e| failed(format!("{}: {e}", segment(&host).display())))?;
    // Room for part of the next batch: its write is cut short, and must be undone.
    let limit = before.len() as u64 + 64;
    let args = write_file_args(&host, "late", 1_000)?;
    let invoke = ["invoke", "files", "write-file", "--args", &args];
    let run = host.run_command(host.command_with_file_limit(limit, &invoke), &invoke)?;
    ensure!(
        run.code != 0 && run.stderr.contains("File too large"),
        "an invocation whose batch is cut short by the file-size limit must fail naming the ledger's error: exit {}, stderr {}",
        run.code,
        excerpt(&run.stderr)
    );
    // Before anything opens the ledger again: the segment is what it was, byte for byte,
    // and a read-only verification finds no tail to cut.
    let after = std::fs::read(segment(&host))
        .map_err(|e| failed(format!("{}: {e}", segment(&host).display())))?;
    ensure!(
        after == before,
        "the batch written in part must be cut back before the error is returned: the segment was {} bytes, is {} after the failure",
        before.len(),
        after.len()
    );
    let verified = host.run(&["log", "verify"])?;
    verified.expect(0, "log verify after a batch write failed")?;
    ensure!(
        !verified.stdout.contains("never acknowledged"),
        "log verify must find no unacknowledged tail after an undone batch: {}",
        excerpt(&verified.stdout)
    );
    host.ok(&invoke)?;
    host.run(&["log", "verify"])?
        .expect(0, "log verify after the write went through")?;
    Ok(())
}

fn write_ahead_failure_performs_nothing(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    // Some megabytes of recorded text: the segment is larger than any file the next
    // invocation needs to write or map, so only the ledger's append meets the limit.
    for name in ["a", "b", "c", "d", "e"] {
        let args = write_file_args(&host, name, 400_000)?;
        host.ok(&["invoke", "files", "write-file", "--args", &args])?;
    }
    let before = host.entries()?;
    let limit = std::fs::metadata(segment(&host))
        .map_err(|e| failed(format!("{}: {e}", segment(&host).display())))?
        .len();
    let data = super::access::default_data(&host);

    let args = write_file_args(&host, "late", 10)?;
    let invoke = ["invoke", "files", "write-file", "--args", &args];
    let run = host.run_command(host.command_with_file_limit(limit, &invoke), &invoke)?;
    ensure!(
        run.code != 0 && run.stdout.is_empty(),
        "an invocation whose write-ahead cannot be made durable must fail and print no result: exit {}, stdout {}",
        run.code,
        excerpt(&run.stdout)
    );
    ensure!(
        !data.join("late.txt").exists(),
        "the file write was performed although its write-ahead could not be made durable"
    );
    ensure!(
        run.stderr.contains("durable")
            && run.stderr.contains("descriptor.open-at")
            && run.stderr.contains("File too large"),
        "the failure must name the call that could not be made durable and the ledger's error (the segment is too large): {}",
        excerpt(&run.stderr)
    );

    // Nothing already accepted is lost, and the same write goes through without the limit.
    let after = host.entries()?;
    ensure!(
        after.len() >= before.len() && after[..before.len()] == before[..],
        "the entries recorded before the failure changed: {} entries before, {} after",
        before.len(),
        after.len()
    );
    host.run(&["log", "verify"])?
        .expect(0, "log verify after a failed write-ahead")?;
    host.ok(&invoke)?;
    ensure!(
        data.join("late.txt").exists(),
        "with the ledger writable again, the same write must be performed"
    );
    host.run(&["log", "verify"])?
        .expect(0, "log verify after the write went through")?;
    Ok(())
}
