//! The cases of specification 31's table: invocation outcomes, policy, the ledger and its
//! proofs, replay, and the server's HTTP API and MCP.

use serde_json::{Value as Json, json};

use super::{GREET, OPEN, guest_host, kinds, published_key, server};
use crate::target::{Server, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.allowed-call-returns-its-result",
        verifies: &["FC-CORE-0101"],
        run: allowed_call_returns_its_result,
    },
    Case {
        name: "cli.no-permit-means-denied",
        verifies: &[
            "FC-CORE-0112",
            "FC-CORE-0114",
            "FC-CORE-0201",
            "FC-CORE-0214",
        ],
        run: no_permit_means_denied,
    },
    Case {
        name: "cli.forbid-overrides-permit",
        verifies: &["FC-POL-1402"],
        run: forbid_overrides_permit,
    },
    Case {
        name: "cli.ungranted-import-refused-at-link",
        verifies: &["FC-POL-1605", "FC-CORE-0203", "FC-CORE-0118"],
        run: ungranted_import_refused_at_link,
    },
    Case {
        name: "cli.fuel-exhaustion",
        verifies: &["FC-CORE-0117", "FC-EXEC-0601"],
        run: fuel_exhaustion,
    },
    Case {
        name: "cli.trap",
        verifies: &["FC-CORE-0116"],
        run: trap,
    },
    Case {
        name: "cli.deadline",
        verifies: &["FC-CORE-0120", "FC-EXEC-0410"],
        run: deadline,
    },
    Case {
        name: "cli.unknown-capability-or-function",
        verifies: &["FC-CORE-0116", "FC-CAP-1117"],
        run: unknown_capability_or_function,
    },
    Case {
        name: "cli.ill-typed-arguments",
        verifies: &["FC-CORE-0116", "FC-EXEC-0707", "FC-EXEC-0718"],
        run: ill_typed_arguments,
    },
    Case {
        name: "cli.every-invocation-recorded",
        verifies: &["FC-CORE-0301", "FC-OBS-2707"],
        run: every_invocation_recorded,
    },
    Case {
        name: "cli.key-value-state-recorded",
        verifies: &["FC-CAP-1206", "FC-MEM-2510"],
        run: key_value_state_recorded,
    },
    Case {
        name: "cli.checkpoint-signed-by-published-key",
        verifies: &["FC-CRYPTO-3605", "FC-COMP-3109"],
        run: checkpoint_signed_by_published_key,
    },
    Case {
        name: "cli.inclusion-proof-verifies-independently",
        verifies: &[
            "FC-CRYPTO-3608",
            "FC-CRYPTO-3805",
            "FC-OBS-2718",
            "FC-EXT-5509",
            "FC-COMP-3109",
        ],
        run: inclusion_proof_verifies_independently,
    },
    Case {
        name: "cli.tampered-ledger-fails-verification",
        verifies: &["FC-OBS-2706", "FC-OBS-2710"],
        run: tampered_ledger_fails_verification,
    },
    Case {
        name: "cli.export-replays",
        verifies: &["FC-CRYPTO-3806", "FC-EXT-5503"],
        run: export_replays,
    },
    Case {
        name: "http.health",
        verifies: &["FC-CONF-2907", "FC-PROTO-0801"],
        run: http_health,
    },
    Case {
        name: "http.unauthenticated-refused",
        verifies: &["FC-SEC-1822", "FC-PROTO-0822"],
        run: http_unauthenticated_refused,
    },
    Case {
        name: "http.invoke-returns-receipt",
        verifies: &["FC-PROTO-0802", "FC-PROTO-0803", "FC-PROTO-0807"],
        run: http_invoke_returns_receipt,
    },
    Case {
        name: "http.problems",
        verifies: &["FC-PROTO-0832"],
        run: http_problems,
    },
    Case {
        name: "http.openapi",
        verifies: &["FC-PROTO-0801"],
        run: http_openapi,
    },
    Case {
        name: "mcp.session-lists-and-calls-tools",
        verifies: &["FC-PROTO-0912"],
        run: mcp_session_lists_and_calls_tools,
    },
    Case {
        name: "mcp.unauthenticated-refused",
        verifies: &["FC-PROTO-0917"],
        run: mcp_unauthenticated_refused,
    },
];

fn allowed_call_returns_its_result(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = host.invoke("echo", &json!({ "text": "conformance ✓" }), &[])?;
    run.expect(0, "invoke echo")?;
    ensure!(
        run.stdout.trim_end().lines().count() == 1,
        "the result is not one line of JSON: {}",
        excerpt(&run.stdout)
    );
    ensure!(
        run.json()? == json!("conformance ✓"),
        "echo printed {} where the JSON string \"conformance ✓\" is required",
        excerpt(&run.stdout)
    );
    let run = host.invoke("add", &json!({ "a": -2, "b": 44 }), &["--json"])?;
    run.expect(0, "invoke add --json")?;
    let report = run.json()?;
    ensure!(report["result"] == json!(42), "add -2 44 gave {report}");
    ensure!(
        report["fuel"]["consumed"].as_u64().is_some_and(|f| f > 0),
        "--json reports no fuel consumed: {report}"
    );
    Ok(())
}

fn no_permit_means_denied(target: &Target) -> Result<(), Failure> {
    // Only another principal is permitted anything: the local operator's call matches nothing.
    let host = guest_host(
        target,
        &OPEN.replace("User::\"local\"", "User::\"someone-else\""),
    )?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    run.expect(7, "a call no policy permits")?;
    ensure!(
        run.stdout.trim().is_empty(),
        "a denied call printed a result: {}",
        excerpt(&run.stdout)
    );
    one_error_line(&run)?;
    ensure!(
        run.stderr.contains("User::\"local\"") && run.stderr.contains("conformance@1.0.0"),
        "the denial does not name the principal and conformance@1.0.0: {}",
        excerpt(&run.stderr)
    );
    // The default policy runs first-party capabilities only: removing the policy file leaves
    // the installed one denied, and `hello` allowed.
    std::fs::remove_dir_all(host.data.path().join("policy"))
        .map_err(|e| Failure::Failed(format!("cannot remove the policy: {e}")))?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(7, "an installed capability under the default policy")?;
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet under the default policy")?;
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?
    .expect(7, "another principal under the default policy")?;
    Ok(())
}

fn forbid_overrides_permit(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}forbid (principal, action == FemtoClaw::Action::\"invoke\", resource is FemtoClaw::Capability) when {{ resource.name == \"conformance\" }};\n"
    );
    let host = guest_host(target, &policy)?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    run.expect(7, "a call a forbid matches, though a permit matches too")?;
    ensure!(
        run.stderr.contains("forbidden"),
        "the denial does not say it was forbidden: {}",
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    ensure!(
        entries.iter().any(|e| {
            let e = &e["entry"];
            e["type"] == "decision"
                && e["action"] == "invoke"
                && e["allowed"] == json!(false)
                && e["policy_ids"]
                    .as_array()
                    .is_some_and(|ids| !ids.is_empty())
        }),
        "no recorded invoke decision is denied naming the forbidding policy"
    );
    Ok(())
}

fn ungranted_import_refused_at_link(target: &Target) -> Result<(), Failure> {
    // Invocation is permitted, linking only the WASI baseline: `femtoclaw:host/log`, which the
    // manifest requests, is not granted, so the component must not be instantiated at all.
    let policy = "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
        permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource) when { resource.baseline };\n";
    let host = guest_host(target, policy)?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    run.expect(7, "a component with an ungranted import")?;
    ensure!(
        run.stderr.contains("femtoclaw:host/log@0.1.0"),
        "the refusal does not name the ungranted import femtoclaw:host/log@0.1.0: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        run.stdout.trim().is_empty(),
        "a refused component printed a result"
    );
    Ok(())
}

fn fuel_exhaustion(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = host.invoke("spin", &json!({}), &["--fuel", "1000000"])?;
    run.expect(4, "an endless loop on 1,000,000 fuel")?;
    ensure!(
        run.stderr.contains("1000000"),
        "the failure does not name the budget: {}",
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    let trapped = entries.iter().any(|e| {
        e["entry"]["type"] == "trap"
            && e["entry"]["kind"] == "fuel-exhausted"
            && e["entry"]["fuel_consumed"] == json!(1_000_000)
    });
    let ended = entries.iter().any(|e| {
        e["entry"]["type"] == "invocation-end" && e["entry"]["fuel_consumed"] == json!(1_000_000)
    });
    ensure!(
        trapped && ended,
        "the ledger does not record a fuel-exhausted trap and an end consuming the whole budget"
    );
    Ok(())
}

fn trap(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("divide", &json!({ "a": 1, "b": 0 }), &[])?
        .expect(5, "a division by zero")?;
    let run = host.invoke("divide", &json!({ "a": 84, "b": 2 }), &[])?;
    run.expect(0, "the next call after a trap")?;
    ensure!(
        run.json()? == json!(42),
        "84 / 2 gave {}",
        run.stdout.trim()
    );
    Ok(())
}

fn deadline(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let started = std::time::Instant::now();
    host.invoke(
        "spin",
        &json!({}),
        &["--fuel", "10000000000", "--deadline-ms", "300"],
    )?
    .expect(11, "an endless loop past a 300 ms deadline")
    .and_then(|run| {
        ensure!(
            run.stderr.contains("deadline"),
            "the failure does not name the deadline: {}",
            excerpt(&run.stderr)
        );
        Ok(run)
    })?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a 300 ms deadline took {:?} to end the call",
        started.elapsed()
    );
    Ok(())
}

fn unknown_capability_or_function(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = host.run(&["invoke", "no-such-capability", "echo"])?;
    run.expect(3, "an unknown capability")?;
    ensure!(
        run.stderr
            .contains("unknown capability `no-such-capability`"),
        "the failure does not say unknown capability `no-such-capability`: {}",
        excerpt(&run.stderr)
    );
    host.invoke("no-such-function", &json!({}), &[])?
        .expect(3, "an unknown function")?;
    Ok(())
}

fn ill_typed_arguments(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for (args, what, names) in [
        (json!({ "a": "two", "b": 1 }), "a string for s64", "`a`"),
        (json!({ "a": 1 }), "a missing argument", "`b`"),
        (
            json!({ "a": 1, "b": 2, "c": 3 }),
            "an unknown argument",
            "`c`",
        ),
        (json!({ "a": 1.5, "b": 2 }), "a fraction for s64", "`a`"),
        (
            json!({ "a": 1, "b": 9_223_372_036_854_775_808u64 }),
            "2^63 for s64",
            "`b`",
        ),
    ] {
        let run = host.invoke("add", &args, &[])?;
        run.expect(2, what)?;
        ensure!(
            run.stderr.contains(names),
            "{what}: the refusal does not name {names}: {}",
            excerpt(&run.stderr)
        );
    }
    // Refused before any guest code ran: no invocation of `add` ran to an end.
    let entries = host.entries()?;
    ensure!(
        !entries
            .iter()
            .any(|e| e["entry"]["type"] == "invocation-end"),
        "an ill-typed call reached the guest: the ledger holds an invocation end"
    );
    Ok(())
}

fn every_invocation_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "one" }), &[])?
        .expect(0, "echo")?;
    host.invoke("divide", &json!({ "a": 1, "b": 0 }), &[])?
        .expect(5, "divide by zero")?;
    host.invoke("spin", &json!({}), &["--fuel", "100000"])?
        .expect(4, "spin")?;
    let entries = host.entries()?;
    let kinds = kinds(&entries);
    let starts = kinds.iter().filter(|k| *k == "invocation-start").count();
    let ends = kinds.iter().filter(|k| *k == "invocation-end").count();
    ensure!(
        starts == 3 && ends == 3,
        "three invocations (a result, a trap, fuel exhaustion) must leave three starts and three ends; the ledger holds {kinds:?}"
    );
    for (i, entry) in entries.iter().enumerate() {
        ensure!(
            entry["index"].as_u64() == Some(i as u64),
            "entry {i} has index {}",
            entry["index"]
        );
    }
    // Each invocation's entries carry its number, from its start to its end.
    for n in 0..3u64 {
        let own: Vec<&str> = entries
            .iter()
            .filter(|e| e["entry"]["invocation"] == json!(n))
            .filter_map(|e| e["entry"]["type"].as_str())
            .collect();
        ensure!(
            own.first() == Some(&"invocation-start") && own.last() == Some(&"invocation-end"),
            "invocation {n}'s entries do not run from its start to its end: {own:?}"
        );
    }
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify after the three invocations")?;
    ensure!(
        run.stdout
            .starts_with(&format!("ok: {} entries, ", entries.len())),
        "log verify does not say `ok: {} entries, …`: {}",
        entries.len(),
        excerpt(&run.stdout)
    );
    Ok(())
}

fn key_value_state_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("remember", &json!({ "key": "k", "value": "v1" }), &[])?
        .expect(0, "remember")?;
    let run = host.invoke("recall", &json!({ "key": "k" }), &[])?;
    run.expect(0, "recall")?;
    let value = run.json()?;
    ensure!(
        value.to_string().contains("v1"),
        "a later invocation recalled {value} where \"v1\" was stored"
    );
    let entries = host.entries()?;
    ensure!(
        entries
            .iter()
            .any(|e| e["entry"]["type"] == "host-call" && e.to_string().contains("keyvalue")),
        "the key-value write and read are not recorded as host calls: {:?}",
        kinds(&entries)
    );
    for action in ["kv.write", "kv.read"] {
        ensure!(
            entries.iter().any(|e| e["entry"]["type"] == "decision"
                && e["entry"]["action"] == action
                && e["entry"]["allowed"] == json!(true)),
            "no recorded {action} decision"
        );
    }
    Ok(())
}

fn checkpoint_signed_by_published_key(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "signed" }), &[])?
        .expect(0, "echo")?;
    let key = published_key(&host)?;
    let note = host.ok(&["log", "checkpoint"])?;
    let checkpoint = crypto::checkpoint(&note, &key)
        .map_err(|e| Failure::Failed(format!("log checkpoint: {e}")))?;
    let entries = host.entries()?;
    ensure!(
        checkpoint.size == entries.len() as u64,
        "the checkpoint covers {} entries; the ledger holds {}",
        checkpoint.size,
        entries.len()
    );
    ensure!(
        !checkpoint.origin.is_empty(),
        "the checkpoint has no origin line"
    );
    // One flipped byte of the signed body must break the signature.
    let forged = note.replacen(&format!("\n{}\n", checkpoint.size), "\n999999\n", 1);
    ensure!(
        crypto::checkpoint(&forged, &key).is_err(),
        "a checkpoint with its size changed still verified"
    );
    Ok(())
}

fn inclusion_proof_verifies_independently(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "proved" }), &[])?
        .expect(0, "echo")?;
    let key = published_key(&host)?;
    let entries = host.entries()?;
    ensure!(!entries.is_empty(), "the ledger is empty after a call");
    let last = entries.len() - 1;
    let proof = host.ok(&["log", "prove", &last.to_string()])?;
    let (index, _entry, _checkpoint) =
        crypto::proof(&proof, &key).map_err(|e| Failure::Failed(format!("log prove: {e}")))?;
    ensure!(
        index == last as u64,
        "the proof of {last} is of index {index}"
    );
    // The target's own checker must refuse a proof whose entry was changed.
    let tampered = tamper_extra(&proof)?;
    let file = host.file("tampered.proof", tampered.as_bytes())?;
    let key_text = host.ok(&["key", "show"])?;
    let honest = host.file("honest.proof", proof.as_bytes())?;
    host.run(&[
        "log",
        "verify-proof",
        &honest.to_string_lossy(),
        "--key",
        key_text.trim(),
    ])?
    .expect(0, "log verify-proof of the proof log prove printed")?;
    host.run(&[
        "log",
        "verify-proof",
        &file.to_string_lossy(),
        "--key",
        key_text.trim(),
    ])?
    .expect(8, "log verify-proof of a proof whose entry was changed")?;
    Ok(())
}

/// The proof with one bit of its entry (`extra`) flipped.
fn tamper_extra(proof: &str) -> Result<String, Failure> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    let mut changed = false;
    for line in proof.split_inclusive('\n') {
        if let (false, Some(extra)) = (changed, line.strip_prefix("extra ")) {
            let mut bytes = engine
                .decode(extra.trim_end())
                .map_err(|e| Failure::Failed(format!("extra is not base64: {e}")))?;
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            out.push_str(&format!("extra {}\n", engine.encode(bytes)));
            changed = true;
        } else {
            out.push_str(line);
        }
    }
    ensure!(changed, "the proof has no extra line");
    Ok(out)
}

fn tampered_ledger_fails_verification(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "tamper with me" }), &[])?
        .expect(0, "echo")?;
    let export = host.files.path().join("ledger.export");
    host.ok(&["log", "export", &export.to_string_lossy()])?;
    host.ok(&["log", "verify", &export.to_string_lossy()])?;
    let mut bytes = std::fs::read(&export)
        .map_err(|e| Failure::Failed(format!("cannot read the export: {e}")))?;
    // The recorded argument, in the middle of the file: change it in place, length kept.
    let at = find(&bytes, b"tamper with me")
        .ok_or_else(|| Failure::Failed("the export does not hold the recorded argument".into()))?;
    bytes[at] = b'T';
    let forged = host.file("forged.export", &bytes)?;
    host.run(&["log", "verify", &forged.to_string_lossy()])?
        .expect(8, "log verify of an export with one recorded byte changed")?;
    Ok(())
}

/// A failed command prints exactly one line on stderr, beginning `error: `, and nothing else.
fn one_error_line(run: &crate::target::Run) -> Result<(), Failure> {
    ensure!(
        run.stderr.lines().count() == 1 && run.stderr.starts_with("error: "),
        "the failure is not one stderr line beginning `error: `: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn export_replays(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "again" }), &[])?
        .expect(0, "echo")?;
    host.invoke("add", &json!({ "a": 1, "b": 2 }), &[])?
        .expect(0, "add")?;
    host.invoke("divide", &json!({ "a": 1, "b": 0 }), &[])?
        .expect(5, "divide by zero")?;
    let export = host.files.path().join("replay.export");
    host.ok(&[
        "log",
        "export",
        &export.to_string_lossy(),
        "--with-components",
    ])?;
    let key = host.ok(&["key", "show"])?;
    // Replay on another, empty data directory: the export alone suffices.
    let elsewhere = target.host()?;
    let run = elsewhere.run(&[
        "replay",
        &export.to_string_lossy(),
        "--key",
        key.trim(),
        "--json",
    ])?;
    run.expect(0, "replay of an export with its components")?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        statuses == ["identical"; 3] && report["identical"] == json!(3),
        "replaying three invocations must report three identical; it reported {}",
        excerpt(&run.stdout)
    );
    ensure!(
        !elsewhere.data.path().join("ledger").exists(),
        "replay wrote a ledger in the data directory it ran on"
    );
    Ok(())
}

fn http_health(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = server.request(reqwest::Method::GET, path, None, None)?;
        response.expect(200, path)?;
        ensure!(
            response.text.trim() == body,
            "{path} answered {:?}, not {body:?}",
            excerpt(&response.text)
        );
    }
    Ok(())
}

fn greet() -> Json {
    serde_json::from_str(GREET).unwrap_or(Json::Null)
}

fn http_unauthenticated_refused(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    for (token, what) in [
        (None, "no token"),
        (Some("fct_forged-token"), "a forged token"),
    ] {
        let response =
            server.request(reqwest::Method::POST, "/v1/invoke", token, Some(&greet()))?;
        response.expect(401, what)?;
        ensure!(
            response
                .header("content-type")
                .starts_with("application/problem+json"),
            "{what}: the 401 is not application/problem+json"
        );
        ensure!(
            response.json()?["code"] == "unauthenticated",
            "{what}: the problem's code is not unauthenticated: {}",
            response.text
        );
        ensure!(
            response
                .header("www-authenticate")
                .starts_with("Bearer realm=\"femtoclaw\""),
            "{what}: no `WWW-Authenticate: Bearer realm=\"femtoclaw\"` challenge"
        );
    }
    Ok(())
}

fn http_invoke_returns_receipt(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let response = server.post("/v1/invoke?proof=true", &greet())?;
    response.expect(200, "POST /v1/invoke hello.greet")?;
    let body = response.json()?;
    ensure!(
        body["result"].to_string().contains("Ada"),
        "the result does not greet Ada: {body}"
    );
    ensure!(
        body["fuel"]["budget"].as_u64().is_some()
            && body["fuel"]["consumed"].as_u64().is_some_and(|f| f > 0),
        "the answer has no fuel budget and consumption: {body}"
    );
    let receipt = &body["receipt"];
    ensure!(
        receipt["invocation"].is_u64()
            && receipt["entries"].as_array().is_some_and(|e| e.len() == 2),
        "the receipt has no invocation number and first and last entries: {receipt}"
    );
    let proof = receipt["proof"]
        .as_str()
        .ok_or_else(|| Failure::Failed(format!("the receipt has no proof: {receipt}")))?;
    let checkpoint = server.get("/v1/ledger/checkpoint")?;
    checkpoint.expect(200, "GET /v1/ledger/checkpoint")?;
    ensure!(
        proof.contains(checkpoint.text.trim_end()),
        "the receipt's proof is not against the checkpoint the server serves"
    );
    ensure!(
        receipt["checkpoint"].as_str() == Some(checkpoint.text.as_str()),
        "the receipt's checkpoint is not byte for byte the one the server serves"
    );
    // With the server's data directory in hand, check the signature with its published key.
    if let Some(host) = &server.host {
        let key = published_key(host)?;
        let (index, _, verified) = crypto::proof(proof, &key)
            .map_err(|e| Failure::Failed(format!("the receipt's proof: {e}")))?;
        let entries = receipt["entries"].to_string();
        ensure!(
            entries.contains(&index.to_string()),
            "the proof is of entry {index}, not one of the receipt's {entries}"
        );
        ensure!(
            receipt["tree_size"].as_u64() == Some(verified.size),
            "the receipt's tree size {} is not its checkpoint's {}",
            receipt["tree_size"],
            verified.size
        );
    }
    Ok(())
}

fn http_problems(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let unknown = json!({ "capability": "no-such-capability", "function": "greet" });
    let ill_typed = json!({ "capability": "hello", "function": "greet", "args": { "name": 3 } });
    for (path, body, status, code) in [
        ("/v1/invoke", Some(&unknown), 404, "unknown"),
        ("/v1/invoke", Some(&ill_typed), 400, "bad-arguments"),
        ("/v1/no-such-route", None, 404, ""),
    ] {
        let method = if body.is_some() {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let response = server.request(method, path, Some(&server.token), body)?;
        response.expect(status, path)?;
        ensure!(
            response
                .header("content-type")
                .starts_with("application/problem+json"),
            "{path}: HTTP {status} is not application/problem+json"
        );
        if !code.is_empty() {
            ensure!(
                response.json()?["code"] == code,
                "{path}: the problem's code is not {code}: {}",
                response.text
            );
        }
    }
    Ok(())
}

fn http_openapi(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let response = server.request(reqwest::Method::GET, "/v1/openapi.json", None, None)?;
    response.expect(200, "GET /v1/openapi.json")?;
    let document = response.json()?;
    ensure!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "the document is not OpenAPI 3"
    );
    for path in ["/v1/invoke", "/v1/ledger/checkpoint"] {
        ensure!(
            document["paths"].get(path).is_some(),
            "the OpenAPI document does not describe {path}"
        );
    }
    Ok(())
}

/// One MCP JSON-RPC exchange over streamable HTTP.
fn mcp(
    server: &Server,
    session: Option<&str>,
    message: &Json,
) -> Result<crate::target::Response, Failure> {
    let mut request = Server::client()
        .post(format!("{}/mcp", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(message.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request
        .send()
        .map_err(|e| Failure::Failed(format!("/mcp: no answer: {e}")))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .map_err(|e| Failure::Failed(format!("/mcp: cannot read the body: {e}")))?;
    Ok(crate::target::Response {
        status,
        headers,
        text,
    })
}

fn mcp_session_lists_and_calls_tools(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
        }
    });
    let response = mcp(&server, None, &initialize)?;
    response.expect(200, "MCP initialize")?;
    let answer = response.json()?;
    ensure!(
        answer["result"]["protocolVersion"].is_string()
            && answer["result"]["capabilities"]["tools"].is_object(),
        "initialize does not answer a protocol version and the tools capability: {answer}"
    );
    let session = response.header("mcp-session-id").to_owned();
    ensure!(!session.is_empty(), "initialize answered no Mcp-Session-Id");
    let session = Some(session.as_str());
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    mcp(&server, session, &initialized)?.expect(202, "notifications/initialized")?;
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let response = mcp(&server, session, &list)?;
    response.expect(200, "MCP tools/list")?;
    let answer = response.json()?;
    let tools = answer["result"]["tools"]
        .as_array()
        .ok_or_else(|| Failure::Failed(format!("tools/list has no tools: {answer}")))?;
    let greet = tools
        .iter()
        .find(|t| t["name"] == "hello.greet")
        .ok_or_else(|| Failure::Failed("tools/list does not offer hello.greet".into()))?;
    ensure!(
        greet["inputSchema"]["type"] == "object",
        "hello.greet has no object input schema: {greet}"
    );
    let call = json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "hello.greet", "arguments": { "name": "Ada" } }
    });
    let response = mcp(&server, session, &call)?;
    response.expect(200, "MCP tools/call hello.greet")?;
    let answer = response.json()?;
    ensure!(
        answer["result"]["isError"] != json!(true) && answer["result"].to_string().contains("Ada"),
        "tools/call hello.greet did not greet Ada: {answer}"
    );
    Ok(())
}

fn mcp_unauthenticated_refused(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let response = Server::client()
        .post(format!("{}/mcp", server.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }).to_string())
        .send()
        .map_err(|e| Failure::Failed(format!("/mcp: no answer: {e}")))?;
    ensure!(
        response.status().as_u16() == 401,
        "an MCP request without a token got HTTP {}",
        response.status()
    );
    ensure!(
        response
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Bearer"))),
        "the 401 has no WWW-Authenticate: Bearer challenge"
    );
    ensure!(
        response
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("resource_metadata=\""))),
        "the challenge does not name the protected-resource metadata"
    );
    Ok(())
}
