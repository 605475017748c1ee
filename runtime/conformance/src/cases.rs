//! The cases. Each starts from nothing (a fresh data directory, or a fresh server), drives the
//! target through a public surface and checks what specification 31 lists for it.

use serde_json::{Value as Json, json};

use crate::target::{Host, Server, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

/// A policy under which the local operator may do anything.
const OPEN: &str = "permit (principal == FemtoClaw::User::\"local\", action, resource);\n";

/// Every case, in the order they run.
pub const CASES: &[Case] = &[
    Case {
        name: "cli.allowed-call-returns-its-result",
        verifies: &[],
        run: allowed_call_returns_its_result,
    },
    Case {
        name: "cli.no-permit-means-denied",
        verifies: &[],
        run: no_permit_means_denied,
    },
    Case {
        name: "cli.forbid-overrides-permit",
        verifies: &[],
        run: forbid_overrides_permit,
    },
    Case {
        name: "cli.ungranted-import-refused-at-link",
        verifies: &[],
        run: ungranted_import_refused_at_link,
    },
    Case {
        name: "cli.fuel-exhaustion",
        verifies: &[],
        run: fuel_exhaustion,
    },
    Case {
        name: "cli.trap",
        verifies: &[],
        run: trap,
    },
    Case {
        name: "cli.deadline",
        verifies: &[],
        run: deadline,
    },
    Case {
        name: "cli.unknown-capability-or-function",
        verifies: &[],
        run: unknown_capability_or_function,
    },
    Case {
        name: "cli.ill-typed-arguments",
        verifies: &[],
        run: ill_typed_arguments,
    },
    Case {
        name: "cli.every-invocation-recorded",
        verifies: &[],
        run: every_invocation_recorded,
    },
    Case {
        name: "cli.key-value-state-recorded",
        verifies: &[],
        run: key_value_state_recorded,
    },
    Case {
        name: "cli.checkpoint-signed-by-published-key",
        verifies: &[],
        run: checkpoint_signed_by_published_key,
    },
    Case {
        name: "cli.inclusion-proof-verifies-independently",
        verifies: &[],
        run: inclusion_proof_verifies_independently,
    },
    Case {
        name: "cli.tampered-ledger-fails-verification",
        verifies: &[],
        run: tampered_ledger_fails_verification,
    },
    Case {
        name: "cli.export-replays",
        verifies: &[],
        run: export_replays,
    },
    Case {
        name: "http.health",
        verifies: &[],
        run: http_health,
    },
    Case {
        name: "http.unauthenticated-refused",
        verifies: &[],
        run: http_unauthenticated_refused,
    },
    Case {
        name: "http.invoke-returns-receipt",
        verifies: &[],
        run: http_invoke_returns_receipt,
    },
    Case {
        name: "http.problems",
        verifies: &[],
        run: http_problems,
    },
    Case {
        name: "http.openapi",
        verifies: &[],
        run: http_openapi,
    },
    Case {
        name: "mcp.session-lists-and-calls-tools",
        verifies: &[],
        run: mcp_session_lists_and_calls_tools,
    },
    Case {
        name: "mcp.unauthenticated-refused",
        verifies: &[],
        run: mcp_unauthenticated_refused,
    },
];

/// A fresh host with the suite's guest installed under `policy`.
fn guest_host(target: &Target, policy: &str) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(policy)?;
    host.install()?;
    Ok(host)
}

fn allowed_call_returns_its_result(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = host.invoke("echo", &json!({ "text": "conformance ✓" }), &[])?;
    run.expect(0, "invoke echo")?;
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
    Ok(())
}

fn forbid_overrides_permit(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}forbid (principal, action == FemtoClaw::Action::\"invoke\", resource is FemtoClaw::Capability) when {{ resource.name == \"conformance\" }};\n"
    );
    let host = guest_host(target, &policy)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(7, "a call a forbid matches, though a permit matches too")?;
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
    host.invoke("spin", &json!({}), &["--fuel", "1000000"])?
        .expect(4, "an endless loop on 1,000,000 fuel")?;
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
    .expect(11, "an endless loop past a 300 ms deadline")?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a 300 ms deadline took {:?} to end the call",
        started.elapsed()
    );
    Ok(())
}

fn unknown_capability_or_function(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.run(&["invoke", "no-such-capability", "echo"])?
        .expect(3, "an unknown capability")?;
    host.invoke("no-such-function", &json!({}), &[])?
        .expect(3, "an unknown function")?;
    Ok(())
}

fn ill_typed_arguments(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for (args, what) in [
        (json!({ "a": "two", "b": 1 }), "a string for s64"),
        (json!({ "a": 1 }), "a missing argument"),
        (json!({ "a": 1, "b": 2, "c": 3 }), "an unknown argument"),
        (json!({ "a": 1.5, "b": 2 }), "a fraction for s64"),
    ] {
        let run = host.invoke("add", &args, &[])?;
        run.expect(2, what)?;
        ensure!(
            !run.stderr.trim().is_empty(),
            "{what}: refused without a message"
        );
    }
    Ok(())
}

/// The entries' types, in order.
fn kinds(entries: &[Json]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap_or("?").to_owned())
        .collect()
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
    host.run(&["log", "verify"])?
        .expect(0, "log verify after the three invocations")?;
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
    Ok(())
}

/// The host's verifier key, parsed.
fn published_key(host: &Host) -> Result<crypto::Key, Failure> {
    let text = host.ok(&["key", "show"])?;
    crypto::Key::parse(&text).map_err(|e| Failure::Failed(format!("key show: {e}")))
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
    Ok(())
}

/// The HTTP cases' server: one of the suite's own under the default policy, or the target.
fn server(target: &Target) -> Result<Server, Failure> {
    target.server(None)
}

fn http_health(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    for path in ["/healthz", "/readyz"] {
        server
            .request(reqwest::Method::GET, path, None, None)?
            .expect(200, path)?;
    }
    Ok(())
}

const GREET: &str = r#"{"capability":"hello","function":"greet","args":{"name":"Ada"}}"#;

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
    let receipt = &body["receipt"];
    let proof = receipt["proof"]
        .as_str()
        .ok_or_else(|| Failure::Failed(format!("the receipt has no proof: {receipt}")))?;
    let checkpoint = server.get("/v1/ledger/checkpoint")?;
    checkpoint.expect(200, "GET /v1/ledger/checkpoint")?;
    ensure!(
        proof.contains(checkpoint.text.trim_end()),
        "the receipt's proof is not against the checkpoint the server serves"
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
    let response = server.get("/v1/openapi.json")?;
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
        .header("mcp-protocol-version", "2025-06-18")
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
            "protocolVersion": "2025-06-18",
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
    let session = (!session.is_empty()).then_some(session.as_str());
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = mcp(&server, session, &initialized)?;
    ensure!(
        response.status == 202 || response.status == 200,
        "notifications/initialized: HTTP {}",
        response.status
    );
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
    Ok(())
}
