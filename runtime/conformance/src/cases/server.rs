//! Cases of the server area: the HTTP API (specification 8), MCP over streamable HTTP and stdio
//! (specification 9), what a client sees of tracing and metrics (specification 26), deployment
//! (specification 29: serve, health, stop, the lock), the ecosystem surfaces (specification 55)
//! and the admission model (specification 58).
//!
//! A case that needs a server configured its own way starts one from the binary (`Own`) with a
//! `femtoclaw.toml` and policy of its own in the data directory; it does not apply to a server
//! given by `--url`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::{GREET, OPEN, published_key, server};
use crate::target::{Host, Response, Server, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "http.auth.challenge-and-metadata",
        verifies: &["FC-PROTO-0823"],
        run: auth_challenge_and_metadata,
    },
    Case {
        name: "http.routes.unknown-is-404",
        verifies: &["FC-PROTO-0816"],
        run: unknown_routes,
    },
    Case {
        name: "http.problems.documents-and-bad-requests",
        verifies: &["FC-PROTO-0833", "FC-PROTO-0834"],
        run: problem_documents,
    },
    Case {
        name: "http.ledger.entries-pages",
        verifies: &["FC-PROTO-0808"],
        run: ledger_entries_pages,
    },
    Case {
        name: "http.ledger.proof",
        verifies: &["FC-PROTO-0810"],
        run: ledger_proof,
    },
    Case {
        name: "http.ledger.consistency",
        verifies: &["FC-PROTO-0811", "FC-PROTO-0840"],
        run: ledger_consistency,
    },
    Case {
        name: "http.invoke.concurrent-receipts",
        verifies: &["FC-PROTO-0805"],
        run: concurrent_receipts,
    },
    Case {
        name: "http.openapi.every-operation-served",
        verifies: &["FC-PROTO-0815", "FC-EXT-5506"],
        run: openapi_every_operation_served,
    },
    Case {
        name: "http.traceparent.recorded-in-start",
        verifies: &["FC-OBS-2606", "FC-OBS-2618"],
        run: traceparent_recorded,
    },
    Case {
        name: "mcp.stateless-2026-07-28",
        verifies: &["FC-PROTO-0913"],
        run: mcp_stateless,
    },
    Case {
        name: "mcp.protocol-version-checked",
        verifies: &["FC-PROTO-0925"],
        run: mcp_protocol_version,
    },
    Case {
        name: "mcp.bad-arguments-and-unoffered-tools",
        verifies: &["FC-PROTO-0926", "FC-PROTO-0921"],
        run: mcp_bad_arguments,
    },
    Case {
        name: "mcp.tools-list-schemas",
        verifies: &["FC-PROTO-0905", "FC-PROTO-0906", "FC-PROTO-0915"],
        run: mcp_tools_list_schemas,
    },
    Case {
        name: "http.capabilities.listed-for-the-principal",
        verifies: &["FC-PROTO-0806"],
        run: capabilities_listed,
    },
    Case {
        name: "http.admin-channel.commands-through-the-server",
        verifies: &["FC-PROTO-0817", "FC-PROTO-0824", "FC-CONF-2914"],
        run: admin_channel,
    },
    Case {
        name: "http.lifecycle.killed-server-taken-over",
        verifies: &["FC-PROTO-0804", "FC-PROTO-0818", "FC-CONF-2911"],
        run: killed_server_successor,
    },
    Case {
        name: "http.lifecycle.second-writer-refused",
        verifies: &["FC-PROTO-0828", "FC-CONF-2910"],
        run: second_serve_refused,
    },
    Case {
        name: "http.lifecycle.listens-where-configured",
        verifies: &["FC-CONF-2901"],
        run: serve_listens_where_configured,
    },
    Case {
        name: "http.lifecycle.graceful-stop",
        verifies: &["FC-PROTO-0820", "FC-CONF-2905", "FC-CONF-2915"],
        run: graceful_stop,
    },
    Case {
        name: "http.limits.body-size",
        verifies: &["FC-PROTO-0835", "FC-PERF-5812", "FC-PROTO-0919"],
        run: body_limits,
    },
    Case {
        name: "http.limits.deadlines",
        verifies: &[
            "FC-PROTO-0821",
            "FC-PROTO-0836",
            "FC-PROTO-0839",
            "FC-PERF-5803",
        ],
        run: deadlines,
    },
    Case {
        name: "http.limits.admission-per-principal-and-concurrency",
        verifies: &[
            "FC-PROTO-0831",
            "FC-PROTO-0837",
            "FC-PROTO-0920",
            "FC-PERF-5802",
            "FC-PERF-5804",
            "FC-PERF-5805",
            "FC-PERF-5815",
        ],
        run: admission,
    },
    Case {
        name: "http.limits.admission-queue",
        verifies: &["FC-PERF-5801"],
        run: admission_queue,
    },
    Case {
        name: "http.limits.quota",
        verifies: &["FC-PROTO-0838"],
        run: quota,
    },
    Case {
        name: "http.approvals.asked-listed-decided",
        verifies: &[
            "FC-PROTO-0812",
            "FC-PROTO-0813",
            "FC-PROTO-0814",
            "FC-PROTO-0841",
        ],
        run: approvals,
    },
    Case {
        name: "http.auth.principal-from-token",
        verifies: &["FC-PROTO-0825"],
        run: principal_from_token,
    },
    Case {
        name: "http.admin-channel.private-files",
        verifies: &["FC-PROTO-0826", "FC-CONF-2912"],
        run: private_files,
    },
    Case {
        name: "http.ledger.entries-clamped",
        verifies: &["FC-PROTO-0809", "FC-PERF-5813"],
        run: entries_clamped,
    },
    Case {
        name: "http.metrics.group-commits-and-recovery-reported",
        verifies: &["FC-MEM-2418", "FC-OPS-3921"],
        run: group_commits_and_recovery_reported,
    },
    Case {
        name: "http.metrics.prometheus-text",
        verifies: &[
            "FC-PROTO-0830",
            "FC-OBS-2608",
            "FC-OBS-2609",
            "FC-OBS-2610",
            "FC-OBS-2615",
            "FC-OBS-2616",
            "FC-EXT-5508",
        ],
        run: metrics,
    },
    Case {
        name: "mcp.tools-per-principal-and-version",
        verifies: &[
            "FC-PROTO-0901",
            "FC-PROTO-0903",
            "FC-PROTO-0904",
            "FC-PROTO-0907",
        ],
        run: mcp_tools_per_principal,
    },
    Case {
        name: "mcp.tool-names",
        verifies: &["FC-PROTO-0902"],
        run: mcp_tool_names,
    },
    Case {
        name: "mcp.tool-name-collision-refused-at-install",
        verifies: &["FC-PROTO-0916"],
        run: mcp_tool_name_collision,
    },
    Case {
        name: "mcp.tools-allow-and-deny",
        verifies: &["FC-PROTO-0908", "FC-PROTO-0909"],
        run: mcp_tools_allow_deny,
    },
    Case {
        name: "mcp.origin-checked",
        verifies: &["FC-PROTO-0918"],
        run: mcp_origin,
    },
    Case {
        name: "mcp.list-changed",
        verifies: &["FC-PROTO-0910"],
        run: mcp_list_changed,
    },
    Case {
        name: "mcp.cancelled",
        verifies: &["FC-PROTO-0911"],
        run: mcp_cancelled,
    },
    Case {
        name: "mcp.tool-errors",
        verifies: &["FC-PROTO-0924"],
        run: mcp_tool_errors,
    },
    Case {
        name: "cli.mcp-stdio",
        verifies: &["FC-PROTO-0914", "FC-PROTO-0929"],
        run: mcp_stdio,
    },
    Case {
        name: "cli.invoke-remote",
        verifies: &["FC-PROTO-0819"],
        run: invoke_remote,
    },
    Case {
        name: "cli.fresh-data-directory",
        verifies: &["FC-CONF-2902", "FC-CONF-2904", "FC-CONF-2918"],
        run: fresh_data_directory,
    },
    Case {
        name: "cli.default-policy-reaches-nothing",
        verifies: &["FC-CONF-2903"],
        run: default_policy_reaches_nothing,
    },
    Case {
        name: "cli.policy-precedence-and-live-change",
        verifies: &["FC-CONF-2908"],
        run: policy_precedence,
    },
    Case {
        name: "cli.serve-start-errors",
        verifies: &["FC-CONF-2916", "FC-CONF-2917"],
        run: start_errors,
    },
    Case {
        name: "http.problems.every-code-and-status",
        verifies: &["FC-PROTO-0842"],
        run: problem_codes,
    },
    Case {
        name: "http.ledger.verifies-after-hostile-requests",
        verifies: &["FC-PROTO-0843"],
        run: hostile_requests_leave_ledger_verifying,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers

/// The call every server offers, as JSON.
fn greet() -> Json {
    serde_json::from_str(GREET).unwrap_or(Json::Null)
}

/// `hello.greet` of `name`.
pub(super) fn greet_of(name: &str) -> Json {
    json!({ "capability": "hello", "function": "greet", "args": { "name": name } })
}

/// The server at `url`, driven with `token`.
pub(super) fn client(url: &str, token: &str) -> Result<Server, Failure> {
    Target::Server {
        url: url.to_owned(),
        token: token.to_owned(),
    }
    .server(None)
}

/// The same server seen with another token.
pub(super) fn with_token(server: &Server, token: &str) -> Result<Server, Failure> {
    client(&server.url, token)
}

/// A request without a JSON body helper: method, path, token, raw body and extra headers.
pub(super) fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Response, Failure> {
    let mut request = Server::client().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request
        .send()
        .map_err(|e| Failure::Failed(format!("{path}: no answer: {e}")))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .map_err(|e| Failure::Failed(format!("{path}: cannot read the body: {e}")))?;
    Ok(Response {
        status,
        headers,
        text,
    })
}

/// Fails unless the answer is a problem document of `status` and `code`; the document.
pub(super) fn problem(
    response: &Response,
    status: u16,
    code: &str,
    what: &str,
) -> Result<Json, Failure> {
    response.expect(status, what)?;
    ensure!(
        response
            .header("content-type")
            .starts_with("application/problem+json"),
        "{what}: HTTP {status} is not application/problem+json but {:?}",
        response.header("content-type")
    );
    let body = response.json()?;
    ensure!(
        body["code"] == code,
        "{what}: the problem's code is {} where {code} is required: {}",
        body["code"],
        excerpt(&response.text)
    );
    Ok(body)
}

/// Invokes over `POST /v1/invoke`; the answer.
pub(super) fn invoke(server: &Server, body: &Json) -> Result<Response, Failure> {
    server.post("/v1/invoke", body)
}

/// A successful invocation's receipt.
fn receipt(server: &Server, body: &Json) -> Result<Json, Failure> {
    let response = invoke(server, body)?;
    response.expect(200, &format!("POST /v1/invoke {body}"))?;
    Ok(response.json()?["receipt"].clone())
}

/// The ledger's entries from `from` on, over `GET /v1/ledger/entries`, every page.
fn entries_from(server: &Server, mut from: u64) -> Result<Vec<Json>, Failure> {
    let mut all = Vec::new();
    loop {
        let path = format!("/v1/ledger/entries?from={from}&limit=1000");
        let response = server.get(&path)?;
        response.expect(200, &path)?;
        let page = response.json()?["entries"]
            .as_array()
            .cloned()
            .ok_or_else(|| Failure::Failed(format!("{path}: no entries array")))?;
        if page.is_empty() {
            return Ok(all);
        }
        from += page.len() as u64;
        all.extend(page);
    }
}

/// The entry at `index`, over the API.
fn entry_at(server: &Server, index: u64) -> Result<Json, Failure> {
    let path = format!("/v1/ledger/entries?from={index}&limit=1");
    let response = server.get(&path)?;
    response.expect(200, &path)?;
    let body = response.json()?;
    let entry = &body["entries"][0];
    ensure!(
        entry["index"] == json!(index),
        "{path} did not answer entry {index}: {}",
        excerpt(&response.text)
    );
    Ok(entry["entry"].clone())
}

/// The latest checkpoint note the server serves.
fn checkpoint_note(server: &Server) -> Result<String, Failure> {
    let response = server.get("/v1/ledger/checkpoint")?;
    response.expect(200, "GET /v1/ledger/checkpoint")?;
    Ok(response.text)
}

/// A checkpoint note's size and root: verified with the published key when the suite holds
/// the server's data directory, else read from its body.
fn checkpoint_of(server: &Server, note: &str) -> Result<(u64, [u8; 32]), Failure> {
    if let Some(host) = &server.host {
        let key = published_key(host)?;
        let checkpoint = crypto::checkpoint(note, &key)
            .map_err(|e| Failure::Failed(format!("the served checkpoint: {e}")))?;
        return Ok((checkpoint.size, checkpoint.root));
    }
    use base64::Engine as _;
    let lines: Vec<&str> = note.lines().collect();
    let size = lines.get(1).and_then(|s| s.parse().ok());
    let root = lines.get(2).and_then(|r| {
        base64::engine::general_purpose::STANDARD
            .decode(r)
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
    });
    match (size, root) {
        (Some(size), Some(root)) => Ok((size, root)),
        _ => Err(Failure::Failed(format!(
            "the checkpoint is not origin, size and root: {}",
            excerpt(note)
        ))),
    }
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

/// RFC 9162 §2.1.4.2: whether `proof` shows the tree of `first` leaves (root `first_root`) is
/// a prefix of the tree of `second` leaves (root `second_root`).
fn consistent(
    first: u64,
    second: u64,
    proof: &[[u8; 32]],
    first_root: [u8; 32],
    second_root: [u8; 32],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second {
        return false;
    }
    let mut path = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_root);
    }
    let Some((&start, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = sha(&[&[0x01], c, &fr]);
            sr = sha(&[&[0x01], c, &sr]);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = sha(&[&[0x01], &sr, c]);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == first_root && sr == second_root
}

/// One MCP JSON-RPC exchange over streamable HTTP, with extra headers.
fn mcp_with(
    server: &Server,
    session: Option<&str>,
    version: &str,
    headers: &[(&str, &str)],
    message: &Json,
) -> Result<Response, Failure> {
    let mut all: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", version),
    ];
    if let Some(session) = session {
        all.push(("mcp-session-id", session));
    }
    all.extend_from_slice(headers);
    send(
        server,
        reqwest::Method::POST,
        "/mcp",
        Some(&server.token),
        Some(&message.to_string()),
        &all,
    )
}

/// One MCP exchange at version 2025-11-25.
fn mcp(server: &Server, session: Option<&str>, message: &Json) -> Result<Response, Failure> {
    mcp_with(server, session, "2025-11-25", &[], message)
}

/// An initialized MCP session's id.
fn mcp_session(server: &Server) -> Result<String, Failure> {
    let initialize = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
        }
    });
    let response = mcp(server, None, &initialize)?;
    response.expect(200, "MCP initialize")?;
    let session = response.header("mcp-session-id").to_owned();
    ensure!(!session.is_empty(), "initialize answered no Mcp-Session-Id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    mcp(server, Some(&session), &initialized)?.expect(202, "notifications/initialized")?;
    Ok(session)
}

/// `tools/list` on a session: the tools.
fn mcp_tools(server: &Server, session: &str) -> Result<Vec<Json>, Failure> {
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let response = mcp(server, Some(session), &list)?;
    response.expect(200, "MCP tools/list")?;
    let answer = response.json()?;
    answer["result"]["tools"]
        .as_array()
        .cloned()
        .ok_or_else(|| Failure::Failed(format!("tools/list answered no tools: {answer}")))
}

/// The tools' names.
fn names(tools: &[Json]) -> Vec<String> {
    tools
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// `tools/call` on a session: the JSON-RPC answer.
fn mcp_call(server: &Server, session: &str, name: &str, arguments: &Json) -> Result<Json, Failure> {
    let call = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": name, "arguments": arguments }
    });
    let response = mcp(server, Some(session), &call)?;
    response.expect(200, &format!("MCP tools/call {name}"))?;
    response.json()
}

/// The tree size the server's latest checkpoint covers.
fn tree_size(server: &Server) -> Result<u64, Failure> {
    let note = checkpoint_note(server)?;
    Ok(checkpoint_of(server, &note)?.0)
}

// ---------------------------------------------------------------------------------------------
// A server of the case's own

/// A server the case started from the binary on a data directory it configured.
struct Own {
    server: Server,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Own {
    fn host(&self) -> Result<&Host, Failure> {
        self.server
            .host
            .as_ref()
            .ok_or_else(|| Failure::Failed("the server's data directory is gone".into()))
    }

    /// A token of `principal` named `name` (through the running server).
    fn token(&self, principal: &str, name: &str) -> Result<String, Failure> {
        Ok(self
            .host()?
            .ok(&["token", "create", "--principal", principal, "--name", name])?
            .trim()
            .to_owned())
    }

    /// The server as seen with the token of `principal`, made now.
    fn as_principal(&self, principal: &str, name: &str) -> Result<Server, Failure> {
        with_token(&self.server, &self.token(principal, name)?)
    }

    /// Waits at most `within` for the process to exit; its code.
    fn wait(&mut self, within: Duration) -> Result<Option<i32>, Failure> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| Failure::Failed(format!("cannot wait for serve: {e}")))?
            {
                return Ok(Some(status.code().unwrap_or(-1)));
            }
            if started.elapsed() > within {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drains a pipe into a shared string, in a thread of its own.
fn drain(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Ok(mut text) = sink.lock() {
                text.push_str(&line);
            }
            line.clear();
        }
    });
    text
}

/// A fresh data directory with `policy` (none: the default policy), the suite's guest when
/// `guest`, and `config` as its `femtoclaw.toml`.
fn own_host(
    target: &Target,
    policy: Option<&str>,
    config: &str,
    guest: bool,
) -> Result<Host, Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case needs a server configured of its own".into(),
        ));
    }
    let host = target.host()?;
    if let Some(policy) = policy {
        host.policy(policy)?;
    }
    if guest {
        host.install()?;
    }
    std::fs::write(host.data.path().join("femtoclaw.toml"), config)
        .map_err(|e| Failure::Failed(format!("cannot write femtoclaw.toml: {e}")))?;
    Ok(host)
}

/// Starts `serve --listen 127.0.0.1:0` (plus `args`) on `host`, with a token of `user:local`.
fn start(host: Host, args: &[&str], env: &[(&str, &str)]) -> Result<Own, Failure> {
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "user:local",
            "--name",
            &fresh_name(),
        ])?
        .trim()
        .to_owned();
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut command = host.command(&all);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot start serve: {e}")))?;
    let stderr = drain(
        child
            .stderr
            .take()
            .ok_or_else(|| Failure::Failed("no stderr pipe".into()))?,
    );
    let mut reader = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| Failure::Failed("no stdout pipe".into()))?,
    );
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Failure::Failed(format!(
            "serve must first print `listening on URL`; it printed {:?}, stderr {}",
            line.trim(),
            excerpt(&stderr.lock().map(|s| s.clone()).unwrap_or_default())
        )));
    };
    let stdout = drain(reader);
    let mut server = client(&url, &token)?;
    server.host = Some(host);
    Ok(Own {
        server,
        child,
        stdout,
        stderr,
    })
}

/// A server of the case's own: `policy`, the guest when `guest`, `config`.
fn own(target: &Target, policy: Option<&str>, config: &str, guest: bool) -> Result<Own, Failure> {
    start(own_host(target, policy, config, guest)?, &[], &[])
}

/// A raw HTTP/1.1 exchange over TCP: sends `head` (and `body`), reads the answer for at most
/// `within`.
fn raw(server: &Server, head: &str, body: &[u8], within: Duration) -> Result<String, Failure> {
    let address = server
        .url
        .strip_prefix("http://")
        .unwrap_or(&server.url)
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address)
        .map_err(|e| Failure::Failed(format!("cannot connect to {address}: {e}")))?;
    let _ = stream.set_read_timeout(Some(within));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| Failure::Failed(format!("cannot send to {address}: {e}")))?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < within {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some(at) = text.find("\r\n\r\n") {
                    let length = text[..at]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|n| n.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if answer.len() >= at + 4 + length {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Cases against any server

fn auth_challenge_and_metadata(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let base = server.url.trim_end_matches('/').to_owned();
    let challenge = format!(
        "Bearer realm=\"femtoclaw\", resource_metadata=\"{base}/.well-known/oauth-protected-resource\""
    );
    for (method, path) in [
        (reqwest::Method::GET, "/v1/capabilities"),
        (reqwest::Method::POST, "/v1/invoke"),
        (reqwest::Method::GET, "/v1/ledger/checkpoint"),
        (reqwest::Method::GET, "/metrics"),
    ] {
        let response = send(&server, method, path, None, None, &[])?;
        problem(&response, 401, "unauthenticated", path)?;
        ensure!(
            response.header("www-authenticate") == challenge,
            "{path}: the 401 challenge is {:?} where {challenge:?} is required",
            response.header("www-authenticate")
        );
    }
    for (path, resource) in [
        ("/.well-known/oauth-protected-resource", base.clone()),
        (
            "/.well-known/oauth-protected-resource/mcp",
            format!("{base}/mcp"),
        ),
    ] {
        let response = server.request(reqwest::Method::GET, path, None, None)?;
        response.expect(200, path)?;
        let metadata = response.json()?;
        ensure!(
            metadata["resource"] == json!(resource),
            "{path}: resource is {} where {resource:?} is required",
            metadata["resource"]
        );
        ensure!(
            metadata["bearer_methods_supported"] == json!(["header"]),
            "{path}: bearer_methods_supported is {} where [\"header\"] is required",
            metadata["bearer_methods_supported"]
        );
    }
    Ok(())
}

fn unknown_routes(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    for (method, path, token) in [
        (reqwest::Method::GET, "/no-such-route", None),
        (
            reqwest::Method::GET,
            "/v1/no-such-route",
            Some(server.token.as_str()),
        ),
        (
            reqwest::Method::POST,
            "/v1/no-such-route",
            Some(server.token.as_str()),
        ),
        (reqwest::Method::DELETE, "/v2/invoke", None),
        (
            reqwest::Method::PUT,
            "/v1/ledger/nothing/here",
            Some(server.token.as_str()),
        ),
    ] {
        let what = format!("{method} {path}");
        let response = send(&server, method, path, token, None, &[])?;
        problem(&response, 404, "unknown", &what)?;
    }
    Ok(())
}

fn problem_documents(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let token = Some(server.token.as_str());
    let post = reqwest::Method::POST;
    let json_type = [("content-type", "application/json")];
    let cases: [(&str, &str, u16, &str); 7] = [
        ("a body that is not JSON", "{not json", 400, "bad-arguments"),
        (
            "a capability that is a number",
            r#"{"capability":7,"function":"greet"}"#,
            400,
            "bad-arguments",
        ),
        (
            "args that are a list",
            r#"{"capability":"hello","function":"greet","args":[1]}"#,
            400,
            "bad-arguments",
        ),
        (
            "an unknown member",
            r#"{"capability":"hello","function":"greet","args":{"name":"Ada"},"principal":"user:root"}"#,
            400,
            "bad-arguments",
        ),
        (
            "an argument of the wrong type",
            r#"{"capability":"hello","function":"greet","args":{"name":3}}"#,
            400,
            "bad-arguments",
        ),
        (
            "an argument the function does not take",
            r#"{"capability":"hello","function":"greet","args":{"name":"Ada","age":3}}"#,
            400,
            "bad-arguments",
        ),
        (
            "an unknown capability",
            r#"{"capability":"no-such-capability","function":"greet"}"#,
            404,
            "unknown",
        ),
    ];
    for (what, body, status, code) in cases {
        let response = send(
            &server,
            post.clone(),
            "/v1/invoke",
            token,
            Some(body),
            &json_type,
        )?;
        let document = problem(&response, status, code, what)?;
        check_problem_members(&document, status, code, what)?;
    }
    let response = send(
        &server,
        reqwest::Method::GET,
        "/v1/capabilities",
        None,
        None,
        &[],
    )?;
    let document = problem(&response, 401, "unauthenticated", "no token")?;
    check_problem_members(&document, 401, "unauthenticated", "no token")?;
    Ok(())
}

/// `type`, `title` (the reason phrase), `status` and a one-line `detail`.
fn check_problem_members(
    document: &Json,
    status: u16,
    code: &str,
    what: &str,
) -> Result<(), Failure> {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    ensure!(
        document["type"] == json!(format!("urn:femtoclaw:problem:{code}")),
        "{what}: type is {} where urn:femtoclaw:problem:{code} is required",
        document["type"]
    );
    ensure!(
        document["title"] == json!(reason),
        "{what}: title is {} where the reason phrase {reason:?} is required",
        document["title"]
    );
    ensure!(
        document["status"] == json!(status),
        "{what}: status member is {} where {status} is required",
        document["status"]
    );
    ensure!(
        document["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty() && !d.contains('\n')),
        "{what}: detail is not one line: {}",
        document["detail"]
    );
    Ok(())
}

fn ledger_entries_pages(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    for name in ["one", "two", "three"] {
        receipt(&server, &greet_of(name))?;
    }
    let size = tree_size(&server)?;
    ensure!(size >= 6, "three invocations left a tree of {size} entries");
    let from = size - 6;
    for limit in [1u64, 4, 6] {
        let path = format!("/v1/ledger/entries?from={from}&limit={limit}");
        let response = server.get(&path)?;
        response.expect(200, &path)?;
        let body = response.json()?;
        let page = body["entries"]
            .as_array()
            .ok_or_else(|| Failure::Failed(format!("{path}: no entries array: {body}")))?;
        ensure!(
            page.len() as u64 == limit,
            "{path} answered {} entries",
            page.len()
        );
        for (i, e) in page.iter().enumerate() {
            ensure!(
                e["index"] == json!(from + i as u64) && e["entry"]["type"].is_string(),
                "{path}: item {i} is not {{index: {}, entry}}: {e}",
                from + i as u64
            );
        }
    }
    // From the last entry on: only what there is.
    let path = format!("/v1/ledger/entries?from={}&limit=50", size - 1);
    let response = server.get(&path)?;
    response.expect(200, &path)?;
    let page = response.json()?["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        page.first().is_some_and(|e| e["index"] == json!(size - 1)),
        "{path} does not begin at index {}: {}",
        size - 1,
        excerpt(&response.text)
    );
    // The pages agree with one another.
    let whole = entries_from(&server, from)?;
    let first = server
        .get(&format!("/v1/ledger/entries?from={from}&limit=6"))?
        .json()?;
    ensure!(
        whole.len() >= 6
            && first["entries"]
                .as_array()
                .is_some_and(|p| p[..] == whole[..6]),
        "two reads of the same entries differ"
    );
    Ok(())
}

fn ledger_proof(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let receipt = receipt(&server, &greet_of("proof"))?;
    let last = receipt["entries"][1]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("the receipt has no last entry: {receipt}")))?;
    let path = format!("/v1/ledger/proof/{last}");
    let response = server.get(&path)?;
    response.expect(200, &path)?;
    ensure!(
        response.text.starts_with("c2sp.org/tlog-proof@v1\n"),
        "{path} does not begin `c2sp.org/tlog-proof@v1`: {}",
        excerpt(&response.text)
    );
    ensure!(
        response.text.contains(&format!("\nindex {last}\n")),
        "{path} is not a proof of index {last}: {}",
        excerpt(&response.text)
    );
    if let Some(host) = &server.host {
        let key = published_key(host)?;
        let (index, _, _) = crypto::proof(&response.text, &key)
            .map_err(|e| Failure::Failed(format!("{path}: {e}")))?;
        ensure!(index == last, "{path} proves index {index}");
    }
    let beyond = format!("/v1/ledger/proof/{}", tree_size(&server)? + 1000);
    problem(&server.get(&beyond)?, 404, "unknown", &beyond)?;
    Ok(())
}

fn ledger_consistency(target: &Target) -> Result<(), Failure> {
    use base64::Engine as _;
    let server = server(target)?;
    receipt(&server, &greet_of("before"))?;
    let old = checkpoint_note(&server)?;
    let (old_size, old_root) = checkpoint_of(&server, &old)?;
    for name in ["after", "and after"] {
        receipt(&server, &greet_of(name))?;
    }
    let path = format!("/v1/ledger/consistency?from={old_size}");
    let response = server.get(&path)?;
    response.expect(200, &path)?;
    let body = response.json()?;
    let note = body["checkpoint"]
        .as_str()
        .ok_or_else(|| Failure::Failed(format!("{path}: no checkpoint member: {body}")))?;
    let (new_size, new_root) = checkpoint_of(&server, note)?;
    ensure!(
        body["from"] == json!(old_size) && body["to"] == json!(new_size),
        "{path}: from and to are {} and {} where {old_size} and the checkpoint's {new_size} are required",
        body["from"],
        body["to"]
    );
    ensure!(
        new_size > old_size,
        "the checkpoint did not grow after two invocations"
    );
    let latest = checkpoint_note(&server)?;
    ensure!(
        checkpoint_of(&server, &latest)?.0 == new_size,
        "`to` is not the latest checkpoint's size"
    );
    let hashes: Vec<[u8; 32]> = body["hashes"]
        .as_array()
        .ok_or_else(|| Failure::Failed(format!("{path}: no hashes: {body}")))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| Failure::Failed(format!("{path}: {h} is not a base64 hash")))
        })
        .collect::<Result<_, _>>()?;
    ensure!(
        consistent(old_size, new_size, &hashes, old_root, new_root),
        "{path}: the proof does not lead from the old checkpoint's root to the new one's"
    );
    let beyond = new_size + 100;
    for query in [
        "from=0".to_owned(),
        format!("from={}&to={}", old_size + 1, old_size),
        format!("from=1&to={beyond}"),
        "from=one".to_owned(),
        "from=1&to=two".to_owned(),
        String::new(),
    ] {
        let path = format!("/v1/ledger/consistency?{query}");
        problem(&server.get(&path)?, 400, "bad-arguments", &path)?;
    }
    Ok(())
}

fn concurrent_receipts(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let (url, token) = (server.url.clone(), server.token.clone());
    // As many as one principal may run at once by default (server.per_principal).
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || -> Result<Json, Failure> {
                let server = client(&url, &token)?;
                receipt(&server, &greet_of(&format!("caller {i}")))
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for thread in threads {
        receipts.push(
            thread
                .join()
                .map_err(|_| Failure::Failed("a client thread panicked".into()))??,
        );
    }
    let mut numbers = std::collections::HashSet::new();
    for receipt in &receipts {
        let n = receipt["invocation"]
            .as_u64()
            .ok_or_else(|| Failure::Failed(format!("a receipt has no invocation: {receipt}")))?;
        ensure!(
            numbers.insert(n),
            "two concurrent invocations got the same invocation number {n}"
        );
        let last = receipt["entries"][1]
            .as_u64()
            .ok_or_else(|| Failure::Failed(format!("a receipt has no last entry: {receipt}")))?;
        let end = entry_at(&server, last)?;
        ensure!(
            end["type"] == "invocation-end" && end["invocation"] == json!(n),
            "receipt of invocation {n}: entry {last} is not its invocation-end: {end}"
        );
    }
    Ok(())
}

fn openapi_every_operation_served(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let response = server.request(reqwest::Method::GET, "/v1/openapi.json", None, None)?;
    response.expect(200, "GET /v1/openapi.json")?;
    let document = response.json()?;
    validate_openapi(&document)?;
    let global = document.get("security").cloned().unwrap_or(json!([]));
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut served = 0;
    for (path, item) in &paths {
        for method in methods {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let security = operation.get("security").unwrap_or(&global);
            let secured = security
                .as_array()
                .is_some_and(|s| !s.is_empty() && !s.iter().any(|r| r == &json!({})));
            let concrete = path.replace("{index}", "0").replace("{id}", "0");
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|e| Failure::Failed(format!("{method}: {e}")))?;
            let what = format!("{method} {path} without a token");
            let response = send(&server, method, &concrete, None, None, &[])?;
            if secured {
                problem(&response, 401, "unauthenticated", &what)?;
            } else {
                response.expect(200, &what)?;
            }
            served += 1;
        }
    }
    ensure!(served > 0, "the OpenAPI document describes no operation");
    Ok(())
}

/// The structural rules of OpenAPI 3.1.0 a validator checks: version, info, paths that begin
/// with `/`, operations with responses keyed by status codes, path parameters declared, and
/// every local `$ref` resolving.
fn validate_openapi(document: &Json) -> Result<(), Failure> {
    ensure!(
        document["openapi"] == "3.1.0",
        "openapi is {} where 3.1.0 is required",
        document["openapi"]
    );
    ensure!(
        document["info"]["title"].is_string() && document["info"]["version"].is_string(),
        "info has no title and version: {}",
        document["info"]
    );
    let paths = document["paths"]
        .as_object()
        .ok_or_else(|| Failure::Failed("the document has no paths object".into()))?;
    for (path, item) in paths {
        ensure!(path.starts_with('/'), "path {path:?} does not begin with /");
        let item = item
            .as_object()
            .ok_or_else(|| Failure::Failed(format!("{path} is not a path item")))?;
        for (method, operation) in item {
            if method == "parameters" || method == "summary" || method == "description" {
                continue;
            }
            ensure!(
                [
                    "get", "put", "post", "delete", "options", "head", "patch", "trace"
                ]
                .contains(&method.as_str()),
                "{path}: {method:?} is not an HTTP method of OpenAPI"
            );
            let responses = operation["responses"]
                .as_object()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| Failure::Failed(format!("{method} {path} has no responses")))?;
            for (status, answer) in responses {
                ensure!(
                    status == "default"
                        || (status.len() == 3
                            && status.chars().all(|c| c.is_ascii_digit() || c == 'X')),
                    "{method} {path}: response key {status:?} is not a status code"
                );
                ensure!(
                    answer["description"].is_string() || answer["$ref"].is_string(),
                    "{method} {path}: response {status} has no description"
                );
            }
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(
                    item.get("parameters")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten(),
                )
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    ensure!(
                        declared.contains(&name),
                        "{method} {path}: the path parameter {name} is not declared"
                    );
                }
            }
        }
    }
    let mut refs = Vec::new();
    collect_refs(document, &mut refs);
    for reference in refs {
        if let Some(pointer) = reference.strip_prefix('#') {
            ensure!(
                document.pointer(pointer).is_some(),
                "$ref {reference} does not resolve"
            );
        }
    }
    Ok(())
}

fn collect_refs(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Json::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// The trace id the invocation start of a call with these `traceparent` headers recorded.
fn recorded_trace(server: &Server, traceparents: &[String]) -> Result<Json, Failure> {
    let mut request = Server::client()
        .post(format!("{}/v1/invoke", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(greet().to_string());
    for value in traceparents {
        request = request.header("traceparent", value.as_str());
    }
    let response = request
        .send()
        .map_err(|e| Failure::Failed(format!("/v1/invoke: no answer: {e}")))?;
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    ensure!(
        status == 200,
        "a call with traceparent {traceparents:?} got HTTP {status}: {}",
        excerpt(&text)
    );
    let body: Json = serde_json::from_str(&text)
        .map_err(|e| Failure::Failed(format!("the answer is not JSON ({e})")))?;
    let first = body["receipt"]["entries"][0]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("the answer has no receipt: {body}")))?;
    let start = entry_at(server, first)?;
    ensure!(
        start["type"] == "invocation-start",
        "the receipt's first entry is not an invocation start: {start}"
    );
    Ok(start["trace_id"].clone())
}

fn traceparent_recorded(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let valid = format!("00-{TRACE}-{PARENT}-01");
    let accepted = [
        (vec![valid.clone()], "a valid traceparent"),
        (
            vec![format!(" \t{valid} ")],
            "a valid traceparent between spaces and tabs",
        ),
        (
            vec![format!("01-{TRACE}-{PARENT}-00-more")],
            "a later version continued after a `-`",
        ),
    ];
    for (headers, what) in accepted {
        let seen = recorded_trace(&server, &headers)?;
        ensure!(
            seen == json!(TRACE),
            "{what}: the invocation start recorded trace_id {seen} where \"{TRACE}\" is required"
        );
    }
    let upper = TRACE.to_ascii_uppercase();
    let refused = [
        (vec![], "no traceparent"),
        (vec![format!("00-{upper}-{PARENT}-01")], "upper-case hex"),
        (vec![format!("ff-{TRACE}-{PARENT}-01")], "version ff"),
        (
            vec![format!("00-{TRACE}-{PARENT}-01-")],
            "version 00 longer than 55",
        ),
        (
            vec![format!("01-{TRACE}-{PARENT}-01x")],
            "a later version continued without `-`",
        ),
        (
            vec![format!("00-{}-{PARENT}-01", "0".repeat(32))],
            "an all-zero trace id",
        ),
        (
            vec![format!("00-{TRACE}-{}-01", "0".repeat(16))],
            "an all-zero parent id",
        ),
        (
            vec![format!("00-{TRACE}-{PARENT}-1")],
            "a short flags field",
        ),
        (vec![format!("0-{TRACE}-{PARENT}-01")], "a short version"),
        (
            vec![valid.clone(), valid.clone()],
            "two traceparent headers",
        ),
    ];
    for (headers, what) in refused {
        let seen = recorded_trace(&server, &headers)?;
        ensure!(
            seen.is_null(),
            "{what} ({headers:?}): the invocation start recorded trace_id {seen} where null is required"
        );
    }
    Ok(())
}

/// The `_meta` of a stateless 2026-07-28 request.
fn stateless_meta() -> Json {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "femtoclaw-conformance", "version": "1" },
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

fn mcp_stateless(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let discover = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": { "_meta": stateless_meta() }
    });
    let response = mcp_with(
        &server,
        None,
        "2026-07-28",
        &[("mcp-method", "server/discover")],
        &discover,
    )?;
    response.expect(200, "stateless server/discover")?;
    let answer = response.json()?;
    ensure!(
        answer["result"]["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2026-07-28"))),
        "server/discover does not list 2026-07-28 among supportedVersions: {answer}"
    );
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "hello.greet", "arguments": { "name": "Ada" }, "_meta": stateless_meta() }
    });
    let response = mcp_with(
        &server,
        None,
        "2026-07-28",
        &[("mcp-method", "tools/call"), ("mcp-name", "hello.greet")],
        &call,
    )?;
    response.expect(200, "stateless tools/call hello.greet")?;
    let answer = response.json()?;
    let result = &answer["result"];
    ensure!(
        result["isError"] != json!(true) && result["structuredContent"]["result"] == "Hello, Ada!",
        "the stateless call did not return the greeting: {answer}"
    );
    let receipt = &result["_meta"]["femtoclaw/receipt"];
    let last = receipt["entries"][1]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("the stateless call has no receipt: {answer}")))?;
    let end = entry_at(&server, last)?;
    ensure!(
        end["type"] == "invocation-end" && end["invocation"] == receipt["invocation"],
        "the stateless call's receipt does not name its invocation-end: {end}"
    );
    Ok(())
}

fn mcp_protocol_version(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let before = tree_size(&server)?;
    let initialize = |version: &str| {
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
            }
        })
    };
    let response = mcp_with(&server, None, "2099-01-01", &[], &initialize("2025-11-25"))?;
    response.expect(400, "an unknown MCP-Protocol-Version")?;
    let response = mcp_with(&server, None, "2025-06-18", &[], &initialize("2025-11-25"))?;
    response.expect(400, "an MCP-Protocol-Version disagreeing with initialize")?;
    ensure!(
        response.text.contains("does not match"),
        "the refusal of a disagreeing version does not say `does not match`: {}",
        excerpt(&response.text)
    );
    // A stateless call whose header disagrees with its `_meta` version runs nothing.
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "hello.greet", "arguments": { "name": "Ada" }, "_meta": stateless_meta() }
    });
    let response = mcp_with(
        &server,
        None,
        "2025-11-25",
        &[("mcp-method", "tools/call"), ("mcp-name", "hello.greet")],
        &call,
    )?;
    response.expect(
        400,
        "a call whose MCP-Protocol-Version disagrees with its _meta",
    )?;
    let response = mcp_with(
        &server,
        None,
        "1999-12-31",
        &[("mcp-method", "tools/call"), ("mcp-name", "hello.greet")],
        &call,
    )?;
    response.expect(400, "a call with an unknown MCP-Protocol-Version")?;
    let after = tree_size(&server)?;
    ensure!(
        after == before,
        "refused MCP requests ran something: the ledger grew from {before} to {after} entries"
    );
    Ok(())
}

fn mcp_bad_arguments(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let session = mcp_session(&server)?;
    let answer = mcp_call(&server, &session, "hello.greet", &json!({ "name": 3 }))?;
    ensure!(
        answer["error"]["code"] == json!(-32602) && answer.get("result").is_none(),
        "arguments that do not fit must be a JSON-RPC invalid_params error: {answer}"
    );
    let before = tree_size(&server)?;
    let answer = mcp_call(&server, &session, "no-such-capability.greet", &json!({}))?;
    ensure!(
        answer.get("error").is_some() && answer.get("result").is_none(),
        "a tool that is not offered must be a JSON-RPC error: {answer}"
    );
    let answer = mcp_call(&server, &session, "hello.no-such-function", &json!({}))?;
    ensure!(
        answer.get("error").is_some() && answer.get("result").is_none(),
        "a function that is not offered must be a JSON-RPC error: {answer}"
    );
    let after = tree_size(&server)?;
    ensure!(
        after == before,
        "a call of a tool not offered ran something: the ledger grew from {before} to {after}"
    );
    Ok(())
}

/// Whether a schema holds `anyOf`, `const` or a list-valued `type` anywhere.
fn unportable(schema: &Json) -> Option<String> {
    match schema {
        Json::Object(map) => {
            for (key, value) in map {
                if key == "anyOf" || key == "const" || (key == "type" && value.is_array()) {
                    return Some(format!("{key}: {value}"));
                }
                if let Some(found) = unportable(value) {
                    return Some(found);
                }
            }
            None
        }
        Json::Array(items) => items.iter().find_map(unportable),
        _ => None,
    }
}

fn mcp_tools_list_schemas(target: &Target) -> Result<(), Failure> {
    let server = server(target)?;
    let session = mcp_session(&server)?;
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let response = mcp(&server, Some(&session), &list)?;
    response.expect(200, "MCP tools/list")?;
    let answer = response.json()?;
    ensure!(
        answer["result"]["ttlMs"] == json!(5000),
        "tools/list answered ttlMs {} where 5000 is required",
        answer["result"]["ttlMs"]
    );
    ensure!(
        answer["result"].get("nextCursor").is_none_or(Json::is_null),
        "tools/list is not answered complete: it has a nextCursor"
    );
    let tools = answer["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(!tools.is_empty(), "tools/list offers nothing to user:local");
    for tool in &tools {
        let name = tool["name"].as_str().unwrap_or("?");
        if let Some(found) = unportable(&tool["inputSchema"]) {
            return Err(Failure::Failed(format!(
                "{name}: the inputSchema holds {found}"
            )));
        }
        let output = &tool["outputSchema"];
        ensure!(
            output["type"] == "object"
                && output["required"] == json!(["result"])
                && output["properties"]
                    .as_object()
                    .is_some_and(|p| p.len() == 1 && p.contains_key("result")),
            "{name}: the outputSchema is not an object with the single required property result: {output}"
        );
    }
    // `fetch.get`'s `headers` is an option: left out of `required`.
    if let Some(get) = tools.iter().find(|t| t["name"] == "fetch.get") {
        let schema = &get["inputSchema"];
        ensure!(
            schema["properties"].get("headers").is_some()
                && !schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("headers"))),
            "fetch.get: the optional parameter headers is not a property left out of required: {schema}"
        );
    } else {
        return Err(Failure::Failed(
            "tools/list does not offer fetch.get, whose optional parameter the case checks".into(),
        ));
    }
    let greet = tools
        .iter()
        .find(|t| t["name"] == "hello.greet")
        .ok_or_else(|| Failure::Failed("tools/list does not offer hello.greet".into()))?;
    let answer = mcp_call(&server, &session, "hello.greet", &json!({ "name": "Ada" }))?;
    let structured = &answer["result"]["structuredContent"];
    ensure!(
        structured.as_object().is_some_and(|o| o.len() == 1)
            && structured["result"] == "Hello, Ada!",
        "structuredContent is not {{\"result\": \"Hello, Ada!\"}}: {answer}"
    );
    ensure!(
        valid(
            &structured["result"],
            &greet["outputSchema"]["properties"]["result"]
        ),
        "the result {} is not valid against the outputSchema {}",
        structured["result"],
        greet["outputSchema"]
    );
    Ok(())
}

/// A small JSON Schema check: `type`, `enum`, `properties`, `required`, `items`, `oneOf`.
fn valid(value: &Json, schema: &Json) -> bool {
    if let Some(kind) = schema["type"].as_str() {
        let fits = match kind {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !fits {
            return false;
        }
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(value)
    {
        return false;
    }
    if let Some(one_of) = schema["oneOf"].as_array()
        && one_of.iter().filter(|s| valid(value, s)).count() != 1
    {
        return false;
    }
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object())
    {
        for (key, v) in object {
            match properties.get(key) {
                Some(s) if !valid(v, s) => return false,
                None if schema["additionalProperties"] == json!(false) => return false,
                _ => {}
            }
        }
    }
    if let (Some(required), Some(object)) = (schema["required"].as_array(), value.as_object())
        && !required
            .iter()
            .all(|r| r.as_str().is_some_and(|r| object.contains_key(r)))
    {
        return false;
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array())
        && !list.iter().all(|v| valid(v, items))
    {
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Cases that start servers of their own

/// Everyone may do anything.
const ANYONE: &str = "permit (principal, action, resource);\n";

fn capabilities_listed(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}permit (principal == FemtoClaw::Agent::\"greeter\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"hello\");\n"
    );
    let own = own(target, Some(&policy), "", true)?;
    let installed: Vec<String> =
        serde_json::from_str::<Json>(&own.host()?.ok(&["capability", "list", "--json"])?)
            .map_err(|e| Failure::Failed(format!("capability list --json is not JSON: {e}")))?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["manifest"]["name"].as_str().map(str::to_owned))
            .collect();
    let listed = |server: &Server| -> Result<Json, Failure> {
        let response = server.get("/v1/capabilities")?;
        response.expect(200, "GET /v1/capabilities")?;
        response.json()
    };
    let body = listed(&own.server)?;
    ensure!(
        body["principal"] == "FemtoClaw::User::\"local\"",
        "the listing names principal {} where FemtoClaw::User::\"local\" is required",
        body["principal"]
    );
    let capabilities = body["capabilities"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<String> = capabilities
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    let mut want = installed.clone();
    want.sort();
    want.dedup();
    ensure!(
        names == want,
        "user:local may invoke every capability; /v1/capabilities lists {names:?} where {want:?} are installed"
    );
    for capability in &capabilities {
        let name = capability["name"].as_str().unwrap_or("?");
        for member in ["name", "version", "description", "publisher"] {
            ensure!(
                capability[member].is_string(),
                "{name}: no string {member}: {capability}"
            );
        }
        ensure!(
            capability["sha256"]
                .as_str()
                .is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())),
            "{name}: sha256 is not 64 hex digits: {}",
            capability["sha256"]
        );
        let functions = capability["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(!functions.is_empty(), "{name}: no functions listed");
        for function in &functions {
            ensure!(
                function["name"].is_string()
                    && function["description"].is_string()
                    && function["args_schema"].is_object()
                    && function["result_schema"].is_object(),
                "{name}: a function lacks name, description, args_schema or result_schema: {function}"
            );
        }
    }
    let conformance = capabilities
        .iter()
        .find(|c| c["name"] == "conformance")
        .ok_or_else(|| Failure::Failed("the installed guest is not listed".into()))?;
    let echo = conformance["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "echo"))
        .ok_or_else(|| Failure::Failed("conformance.echo is not listed".into()))?;
    ensure!(
        echo["description"] == "Returns `text` unchanged.",
        "conformance.echo's description is {} where its WIT doc comment \"Returns `text` unchanged.\" is required",
        echo["description"]
    );
    ensure!(
        echo["args_schema"]["properties"]["text"]["type"] == "string"
            && echo["result_schema"]["type"] == "string",
        "conformance.echo's schemas are not a string argument text and a string result: {echo}"
    );
    let greeter = listed(&own.as_principal("agent:greeter", "greeter")?)?;
    let only: Vec<&str> = greeter["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(
        only == ["hello"],
        "agent:greeter may invoke only hello; /v1/capabilities lists {only:?}"
    );
    let nobody = listed(&own.as_principal("agent:nobody", "nobody")?)?;
    ensure!(
        nobody["capabilities"] == json!([]),
        "agent:nobody may invoke nothing; /v1/capabilities lists {}",
        nobody["capabilities"]
    );
    Ok(())
}

fn admin_channel(target: &Target) -> Result<(), Failure> {
    let own = own(target, Some(OPEN), "", false)?;
    let host = own.host()?;
    // Reading commands run beside the server.
    host.ok(&["capability", "list"])?;
    let old_key = host.ok(&["key", "show"])?;
    // A token made now works on the next request; revoked, it is refused on the next.
    let token = own.token("agent:visitor", "visitor")?;
    let visitor = with_token(&own.server, &token)?;
    visitor.get("/v1/capabilities")?.expect(
        200,
        "a token made through the running server, on its next request",
    )?;
    host.ok(&["token", "revoke", "visitor"])?;
    problem(
        &visitor.get("/v1/capabilities")?,
        401,
        "unauthenticated",
        "a token revoked through the running server, on its next request",
    )?;
    let tokens = host.ok(&["token", "list", "--json"])?;
    ensure!(!tokens.contains(&token), "token list --json shows a token");
    // A capability added now is offered on the next request; removed, it is gone.
    host.install()?;
    let listed = |server: &Server| -> Result<bool, Failure> {
        Ok(server.get("/v1/capabilities")?.json()?["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "conformance")))
    };
    ensure!(
        listed(&own.server)?,
        "a capability added through the running server is not listed on the next request"
    );
    let echo = json!({ "capability": "conformance", "function": "echo", "args": { "text": "hi" } });
    invoke(&own.server, &echo)?.expect(200, "the capability added through the running server")?;
    // An invocation from the command line is the server's.
    let run = host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--json",
    ])?;
    run.expect(0, "invoke while the server holds the data directory")?;
    let report = run.json()?;
    let number = report["receipt"]["invocation"].clone();
    let indexes = report["receipt"]["indexes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = indexes
        .last()
        .and_then(Json::as_u64)
        .ok_or_else(|| Failure::Failed(format!("invoke --json has no receipt: {report}")))?;
    let end = entry_at(&own.server, last)?;
    ensure!(
        end["type"] == "invocation-end" && end["invocation"] == number,
        "the command line's invocation is not in the server's ledger at {last}: {end}"
    );
    host.ok(&["capability", "remove", "conformance"])?;
    ensure!(
        !listed(&own.server)?,
        "a capability removed through the running server is still listed"
    );
    // Secrets and approvals through the server.
    let run = host.secret_set("conformance-secret", b"s3cret\n")?;
    run.expect(0, "secret set while the server runs")?;
    ensure!(
        host.ok(&["secret", "list"])?.contains("conformance-secret"),
        "secret list does not show the secret set through the running server"
    );
    host.ok(&["secret", "remove", "conformance-secret"])?;
    ensure!(
        !host.ok(&["secret", "list"])?.contains("conformance-secret"),
        "secret list still shows the secret removed through the running server"
    );
    let approvals = host.ok(&["approval", "list", "--json"])?;
    ensure!(
        serde_json::from_str::<Json>(&approvals).is_ok_and(|a| a.is_array()),
        "approval list --json is not a JSON array: {}",
        excerpt(&approvals)
    );
    // A key generated now signs the server's next checkpoint.
    host.ok(&["key", "generate"])?;
    let new_key = host.ok(&["key", "show"])?;
    ensure!(
        new_key != old_key,
        "key generate did not change the published key"
    );
    receipt(&own.server, &greet())?;
    let key =
        crypto::Key::parse(&new_key).map_err(|e| Failure::Failed(format!("key show: {e}")))?;
    let note = checkpoint_note(&own.server)?;
    crypto::checkpoint(&note, &key).map_err(|e| {
        Failure::Failed(format!(
            "the checkpoint after key generate is not signed by the new key: {e}"
        ))
    })?;
    Ok(())
}

/// A name for the next token of `user:local`, unique within the run.
fn fresh_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "local-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn killed_server_successor(target: &Target) -> Result<(), Failure> {
    let mut own = own(target, None, "", false)?;
    let mut receipts = Vec::new();
    for name in ["one", "two", "three"] {
        receipts.push(receipt(&own.server, &greet_of(name))?);
    }
    let _ = own.child.kill();
    let _ = own.child.wait();
    let host = own
        .server
        .host
        .take()
        .ok_or_else(|| Failure::Failed("the server's data directory is gone".into()))?;
    drop(own);
    // No server listens on the admin channel: the command does the work itself.
    let token = host.ok(&[
        "token",
        "create",
        "--principal",
        "user:local",
        "--name",
        "after",
    ])?;
    // The next server takes over at once, every acknowledged invocation in its ledger.
    let started = Instant::now();
    let next = start(host, &[], &[])?;
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the next server took {:?} to take over a killed one's data directory",
        started.elapsed()
    );
    with_token(&next.server, token.trim())?
        .get("/v1/capabilities")?
        .expect(200, "the token made while no server ran")?;
    for receipt in &receipts {
        let last = receipt["entries"][1].as_u64().unwrap_or(u64::MAX);
        let end = entry_at(&next.server, last)?;
        ensure!(
            end["type"] == "invocation-end" && end["invocation"] == receipt["invocation"],
            "after the crash, entry {last} of an acknowledged receipt is not its invocation-end: {end}"
        );
    }
    receipt(&next.server, &greet())?;
    next.host()?
        .run(&["log", "verify"])?
        .expect(0, "log verify after taking over a killed server's ledger")?;
    Ok(())
}

/// Runs `args` on `host`, killing it after `within`: the run, or `None` when it did not end.
fn run_bounded(
    host: &Host,
    args: &[&str],
    within: Duration,
) -> Result<Option<crate::target::Run>, Failure> {
    let mut child = host
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot run {}: {e}", args.join(" "))))?;
    let started = Instant::now();
    loop {
        if child.try_wait().ok().flatten().is_some() {
            let out = child
                .wait_with_output()
                .map_err(|e| Failure::Failed(format!("{e}")))?;
            return Ok(Some(crate::target::Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }));
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn second_serve_refused(target: &Target) -> Result<(), Failure> {
    let own = own(target, None, "", false)?;
    receipt(&own.server, &greet())?;
    let host = own.host()?;
    let holder = format!(
        "pid {} (femtoclaw-host serve on {})",
        own.child.id(),
        own.server.url
    );
    let lock = std::fs::read_to_string(host.data.path().join("lock"))
        .map_err(|e| Failure::Failed(format!("cannot read the lock file: {e}")))?;
    ensure!(
        lock == format!("{holder}\n"),
        "the lock file holds {lock:?} where {holder:?} and a line break are required"
    );
    let before = checkpoint_note(&own.server)?;
    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["log", "show", "--json"][..],
    ] {
        let started = Instant::now();
        let run = run_bounded(host, args, Duration::from_secs(10))?.ok_or_else(|| {
            Failure::Failed(format!(
                "`{}` on a data directory a server holds did not fail: it was still running after 10 s",
                args.join(" ")
            ))
        })?;
        ensure!(
            run.code != 0,
            "`{}` on a held data directory exited 0",
            args.join(" ")
        );
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "`{}` took {:?} to fail on a held data directory",
            args.join(" "),
            started.elapsed()
        );
        ensure!(
            run.stderr.contains(&holder),
            "`{}` does not name the holder {holder:?}: {}",
            args.join(" "),
            excerpt(&run.stderr)
        );
    }
    let after = checkpoint_note(&own.server)?;
    ensure!(
        after == before,
        "the refused writers changed the ledger's checkpoint"
    );
    host.run(&["log", "verify"])?
        .expect(0, "log verify after the refused writers")?;
    Ok(())
}

/// A free loopback port (bound and released).
fn free_port() -> Result<u16, Failure> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Failed(format!("cannot bind a loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Failure::Failed(format!("{e}")))
}

/// Starts `serve` with exactly `args` (no `--listen` unless given) on `host`.
fn start_exact(host: Host, args: &[&str]) -> Result<Own, Failure> {
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "user:local",
            "--name",
            &fresh_name(),
        ])?
        .trim()
        .to_owned();
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut child = host
        .command(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot start serve: {e}")))?;
    let stderr = drain(
        child
            .stderr
            .take()
            .ok_or_else(|| Failure::Failed("no stderr pipe".into()))?,
    );
    let mut reader = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| Failure::Failed("no stdout pipe".into()))?,
    );
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let stdout = drain(reader);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or("")
        .to_owned();
    let mut server = client(&url, &token)?;
    server.host = Some(host);
    let own = Own {
        server,
        child,
        stdout,
        stderr,
    };
    ensure!(
        !url.is_empty(),
        "serve must first print `listening on URL`; it printed {:?}, stderr {}",
        line.trim(),
        excerpt(&own.stderr())
    );
    Ok(own)
}

fn serve_listens_where_configured(target: &Target) -> Result<(), Failure> {
    let port = free_port()?;
    let host = own_host(
        target,
        None,
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
        false,
    )?;
    let own = start_exact(host, &[])?;
    ensure!(
        own.server.url == format!("http://127.0.0.1:{port}"),
        "with server.listen = 127.0.0.1:{port}, serve printed `listening on {}`",
        own.server.url
    );
    // Accepting requests once the line is printed.
    own.server
        .request(reqwest::Method::GET, "/healthz", None, None)?
        .expect(200, "GET /healthz at once after `listening on`")?;
    drop(own);
    // `--listen` overrides the key; port 0 picks a free port, and the line names it.
    let other = free_port()?;
    let host = own_host(
        target,
        None,
        &format!("[server]\nlisten = \"127.0.0.1:{other}\"\n"),
        false,
    )?;
    let own = start_exact(host, &["--listen", "127.0.0.1:0"])?;
    let bound = own
        .server
        .url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    ensure!(
        bound != 0 && bound != other,
        "with --listen 127.0.0.1:0 over server.listen = 127.0.0.1:{other}, serve printed `listening on {}`",
        own.server.url
    );
    own.server
        .request(reqwest::Method::GET, "/readyz", None, None)?
        .expect(200, "GET /readyz at the printed address")?;
    Ok(())
}

/// A fuel budget no deadline of these cases outlasts, and the operator's ceiling that allows it.
const SPIN_FUEL: u64 = 1_000_000_000_000_000;
const SPIN_LIMITS: &str = "[limits]\nmax_fuel = 1000000000000000\n";

/// `conformance.spin` with a fuel budget no deadline outlasts, and `deadline_ms`.
fn spin(deadline_ms: Option<u64>) -> Json {
    let mut body = json!({
        "capability": "conformance", "function": "spin", "args": {}, "fuel": SPIN_FUEL
    });
    if let Some(ms) = deadline_ms {
        body["deadline_ms"] = json!(ms);
    }
    body
}

fn echo_of(text: &str) -> Json {
    json!({ "capability": "conformance", "function": "echo", "args": { "text": text } })
}

/// A request in a thread of its own: its answer (status, body text) and when it came.
type Pending = std::thread::JoinHandle<(Answer, Instant)>;

fn in_thread(server: &Server, body: Json) -> Pending {
    let (url, token) = (server.url.clone(), server.token.clone());
    std::thread::spawn(move || {
        let result = Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let status = r.status().as_u16();
                r.text().map(|t| (status, t)).map_err(|e| e.to_string())
            });
        (result, Instant::now())
    })
}

/// An answer (status and body) or why none came.
type Answer = Result<(u16, String), String>;

fn joined(pending: Pending) -> Result<(Answer, Instant), Failure> {
    pending
        .join()
        .map_err(|_| Failure::Failed("a client thread panicked".into()))
}

fn graceful_stop(target: &Target) -> Result<(), Failure> {
    let host = own_host(
        target,
        Some(OPEN),
        &format!("[server]\nshutdown_grace_ms = 1500\n{SPIN_LIMITS}"),
        true,
    )?;
    let mut own = start(host, &[], &[("FEMTOCLAW_LOG", "info")])?;
    receipt(&own.server, &echo_of("warm"))?;
    let finishing = in_thread(&own.server, spin(Some(600)));
    let cut_off = in_thread(&own.server, spin(Some(20_000)));
    std::thread::sleep(Duration::from_millis(250));
    let signalled = Instant::now();
    let pid = own.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| Failure::Failed(format!("cannot send SIGTERM: {e}")))?;
    std::thread::sleep(Duration::from_millis(150));
    let late = send(
        &own.server,
        reqwest::Method::GET,
        "/healthz",
        None,
        None,
        &[],
    );
    ensure!(
        late.is_err(),
        "a request after SIGTERM was served: HTTP {}",
        late.map(|r| r.status).unwrap_or(0)
    );
    let code = own.wait(Duration::from_secs(10))?;
    let exited = signalled.elapsed();
    ensure!(
        code == Some(0),
        "after SIGTERM serve exited {code:?} where 0 is required (within 10 s)"
    );
    ensure!(
        exited >= Duration::from_millis(1400) && exited < Duration::from_millis(1500 + 4500),
        "with a request still running, serve exited {exited:?} after SIGTERM where server.shutdown_grace_ms = 1500 ms (and at most 3 s of telemetry flush) is required"
    );
    let (answer, _) = joined(finishing)?;
    match answer {
        Ok((422, text)) if text.contains("\"deadline\"") => {}
        other => {
            return Err(Failure::Failed(format!(
                "a request in flight that ends within the grace must be answered (422 deadline); it got {other:?}"
            )));
        }
    }
    let (answer, _) = joined(cut_off)?;
    ensure!(
        answer.is_err(),
        "a request cut off at the end of the grace was answered: {answer:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    let (stdout, stderr) = (own.stdout(), own.stderr());
    ensure!(
        stdout.lines().any(|l| l.trim() == "stopped"),
        "serve did not print `stopped` on stdout: {}",
        excerpt(&stdout)
    );
    for line in [
        "stopping: finishing the requests in flight",
        "stopped with requests still in flight (server.shutdown_grace_ms)",
    ] {
        ensure!(
            stderr.contains(line),
            "serve did not log {line:?}: {}",
            excerpt(&stderr)
        );
    }
    Ok(())
}

fn body_limits(target: &Target) -> Result<(), Failure> {
    let own = own(target, None, "[server]\nmax_body_bytes = 2048\n", false)?;
    let before = tree_size(&own.server)?;
    let big = greet_of(&"x".repeat(4000)).to_string();
    // Declared.
    let response = send(
        &own.server,
        reqwest::Method::POST,
        "/v1/invoke",
        Some(&own.server.token),
        Some(&big),
        &[("content-type", "application/json")],
    )?;
    problem(
        &response,
        413,
        "too-large",
        "a declared body over max_body_bytes",
    )?;
    // Read: chunked, no length.
    let response = Server::client()
        .post(format!("{}/v1/invoke", own.server.url))
        .bearer_auth(&own.server.token)
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            big.clone().into_bytes(),
        )))
        .send()
        .map_err(|e| Failure::Failed(format!("/v1/invoke: no answer: {e}")))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().unwrap_or_default();
    ensure!(
        status == 413
            && content_type.starts_with("application/problem+json")
            && text.contains("\"too-large\""),
        "a chunked body over max_body_bytes got HTTP {status} {content_type}: {}",
        excerpt(&text)
    );
    // Declared, and never sent: refused on /mcp before the body is read.
    {
        let path = "/mcp";
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100000\r\n\r\n",
            own.server.token
        );
        let answer = raw(&own.server, &head, b"{", Duration::from_secs(5))?;
        ensure!(
            answer.starts_with("HTTP/1.1 413"),
            "{path}: a declared length of 100000 over max_body_bytes = 2048, body not sent, got {:?} where 413 before the body is read is required",
            excerpt(&answer)
        );
    }
    // The server keeps serving; nothing of the refused bodies was worked on.
    let after = tree_size(&own.server)?;
    ensure!(
        after == before,
        "refused bodies reached the invocation path: the ledger grew from {before} to {after}"
    );
    receipt(&own.server, &greet())?;
    Ok(())
}

fn deadlines(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(OPEN),
        &format!("[server]\nrequest_timeout_ms = 1000\n{SPIN_LIMITS}"),
        true,
    )?;
    receipt(&own.server, &echo_of("warm"))?;
    // A shorter deadline asked for.
    let started = Instant::now();
    let response = invoke(&own.server, &spin(Some(200)))?;
    let took = started.elapsed();
    problem(&response, 422, "deadline", "spin with deadline_ms 200")?;
    ensure!(
        took < Duration::from_millis(900),
        "deadline_ms 200 took {took:?}: not shorter than the request's 1000 ms"
    );
    // A longer one asked for: capped at what is left of the request's time.
    let started = Instant::now();
    let response = invoke(&own.server, &spin(Some(20_000)))?;
    let took = started.elapsed();
    problem(&response, 422, "deadline", "spin with deadline_ms 20000")?;
    ensure!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(3000),
        "with server.request_timeout_ms = 1000, a call asking 20000 ms ended after {took:?}"
    );
    // A policy refusal.
    let nobody = with_token(&own.server, &own.token("agent:nobody", "nobody")?)?;
    problem(
        &invoke(&nobody, &greet())?,
        403,
        "denied",
        "a call no policy permits",
    )?;
    drop(own);
    // The operator's deadline bounds a call that asks none.
    let own = self::own(
        target,
        Some(OPEN),
        "[limits]\ndeadline_ms = 300\nmax_fuel = 1000000000000000\n",
        true,
    )?;
    receipt(&own.server, &echo_of("warm"))?;
    let started = Instant::now();
    let response = invoke(&own.server, &spin(None))?;
    let took = started.elapsed();
    problem(
        &response,
        422,
        "deadline",
        "spin under limits.deadline_ms = 300",
    )?;
    ensure!(
        took < Duration::from_millis(2500),
        "with limits.deadline_ms = 300 a call ran {took:?}"
    );
    let response = invoke(&own.server, &spin(Some(20_000)))?;
    problem(
        &response,
        422,
        "deadline",
        "spin asking 20000 ms under limits.deadline_ms = 300",
    )?;
    Ok(())
}

/// The refused invocations (a `limit` trap) among `entries`, with their messages.
fn limit_traps(entries: &[Json]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["entry"]["type"] == "trap" && e["entry"]["kind"] == "limit")
        .map(|e| e["entry"].to_string())
        .collect()
}

fn busy(response: &Response, key: &str, what: &str) -> Result<(), Failure> {
    let document = problem(response, 429, "busy", what)?;
    ensure!(
        response.header("retry-after") == "1",
        "{what}: Retry-After is {:?} where 1 is required",
        response.header("retry-after")
    );
    ensure!(
        document["detail"].as_str().is_some_and(|d| d.contains(key)),
        "{what}: the refusal does not name {key}: {}",
        document["detail"]
    );
    Ok(())
}

fn admission(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(ANYONE),
        &format!("[server]\nconcurrency = 2\nqueue = 0\nper_principal = 1\n{SPIN_LIMITS}"),
        true,
    )?;
    receipt(&own.server, &echo_of("warm"))?;
    let b = own.as_principal("agent:b", "b")?;
    let c = own.as_principal("agent:c", "c")?;
    let mark = tree_size(&own.server)?;
    let first = in_thread(&own.server, spin(Some(3000)));
    std::thread::sleep(Duration::from_millis(300));
    // One principal beyond its place.
    let started = Instant::now();
    let response = invoke(&own.server, &greet())?;
    ensure!(
        started.elapsed() < Duration::from_millis(2000),
        "the busy refusal was not at once: {:?}",
        started.elapsed()
    );
    busy(
        &response,
        "server.per_principal",
        "a second call of user:local",
    )?;
    let traps = limit_traps(&entries_from(&own.server, mark)?);
    ensure!(
        traps.iter().any(|t| t.contains("server.per_principal")),
        "the refusal at server.per_principal was answered before it was recorded as a limit trap naming the key: {traps:?}"
    );
    // The same turn over MCP.
    let session = mcp_session(&own.server)?;
    let answer = mcp_call(
        &own.server,
        &session,
        "hello.greet",
        &json!({ "name": "Ada" }),
    )?;
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    ensure!(
        answer["result"]["isError"] == json!(true)
            && text.starts_with("busy: ")
            && text.contains("server.per_principal"),
        "an MCP call beyond server.per_principal must be a tool error `busy: …` naming the limit: {answer}"
    );
    // Every running place taken, no queue.
    let second = in_thread(&b, spin(Some(3000)));
    std::thread::sleep(Duration::from_millis(300));
    let response = invoke(&c, &greet())?;
    busy(
        &response,
        "server.queue",
        "a call beyond server.concurrency with no queue",
    )?;
    let traps = limit_traps(&entries_from(&own.server, mark)?);
    ensure!(
        traps
            .iter()
            .filter(|t| t.contains("server.per_principal"))
            .count()
            == 2
            && traps.iter().any(|t| t.contains("server.queue")),
        "the ledger does not hold the three refusals (two at server.per_principal, over HTTP and MCP; one at server.queue) as limit traps: {traps:?}"
    );
    for pending in [first, second] {
        let (answer, _) = joined(pending)?;
        ensure!(
            matches!(answer, Ok((422, _))),
            "a running spin did not end at its deadline: {answer:?}"
        );
    }
    // The server keeps serving within its limits.
    receipt(&c, &greet())?;
    receipt(&own.server, &greet())?;
    let session = mcp_session(&own.server)?;
    let answer = mcp_call(
        &own.server,
        &session,
        "hello.greet",
        &json!({ "name": "Ada" }),
    )?;
    ensure!(
        answer["result"]["isError"] == json!(false),
        "an MCP call within the limits after refusals failed: {answer}"
    );
    Ok(())
}

fn admission_queue(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(OPEN),
        &format!("[server]\nconcurrency = 1\nqueue = 1\nper_principal = 4\n{SPIN_LIMITS}"),
        true,
    )?;
    receipt(&own.server, &echo_of("warm"))?;
    let mark = tree_size(&own.server)?;
    let running = in_thread(&own.server, spin(Some(1200)));
    std::thread::sleep(Duration::from_millis(300));
    let waiting = in_thread(&own.server, echo_of("queued"));
    std::thread::sleep(Duration::from_millis(300));
    let response = invoke(&own.server, &echo_of("one too many"))?;
    busy(
        &response,
        "server.queue",
        "a call beyond server.concurrency + server.queue",
    )?;
    let traps = limit_traps(&entries_from(&own.server, mark)?);
    ensure!(
        traps.iter().any(|t| t.contains("server.queue")),
        "the refusal at server.queue was not recorded as a limit trap naming the key before it was answered: {traps:?}"
    );
    let (first, first_at) = joined(running)?;
    let (second, second_at) = joined(waiting)?;
    ensure!(
        matches!(first, Ok((422, _))),
        "the running spin did not end at its deadline: {first:?}"
    );
    ensure!(
        matches!(&second, Ok((200, text)) if text.contains("queued")),
        "the queued call was not run once a place was free: {second:?}"
    );
    ensure!(
        second_at >= first_at,
        "the queued call was answered before the running one ended: more than server.concurrency = 1 ran at once"
    );
    receipt(&own.server, &echo_of("after"))?;
    Ok(())
}

fn quota(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(ANYONE),
        "[[quotas.rules]]\nprincipal = \"agent:bot\"\ncapability = \"hello\"\ninvocations = 2\nper_ms = 3600000\n",
        false,
    )?;
    let bot = own.as_principal("agent:bot", "bot")?;
    receipt(&bot, &greet_of("one"))?;
    receipt(&bot, &greet_of("two"))?;
    let response = invoke(&bot, &greet_of("three"))?;
    let document = problem(
        &response,
        429,
        "over-quota",
        "a third call under a quota of 2 per hour",
    )?;
    let retry = response.header("retry-after");
    let detail = document["detail"].as_str().unwrap_or("");
    ensure!(
        detail.contains("quotas.rules[0]"),
        "the over-quota detail does not name the rule quotas.rules[0]: {detail}"
    );
    // The wait the detail states, in ms, rounded up to whole seconds.
    let wait_ms = detail
        .split("retry in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let seconds = retry.parse::<u64>().ok();
    match (wait_ms, seconds) {
        (Some(ms), Some(s)) if s >= 1 && (s == ms.div_ceil(1000) || s == ms.div_ceil(1000) + 1) => {
        }
        (None, Some(s)) if (1..=3600).contains(&s) => {}
        _ => {
            return Err(Failure::Failed(format!(
                "Retry-After is {retry:?} where the quota's wait ({detail}) in whole seconds, rounded up, is required"
            )));
        }
    }
    // Other principals are served meanwhile.
    receipt(&own.server, &greet_of("local"))?;
    receipt(
        &own.as_principal("agent:other", "other")?,
        &greet_of("other"),
    )?;
    Ok(())
}

/// The policy of the approval case: `agent:bot` may greet only with a person's approval;
/// `user:ops` and `agent:bot` may approve, `agent:other` may not.
const APPROVALS: &str = r#"@id("bot-greets-with-approval")
@approval("required")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("link-anything")
permit (principal, action == FemtoClaw::Action::"link", resource);
@id("ops-approves")
permit (principal == FemtoClaw::User::"ops", action == FemtoClaw::Action::"approve", resource);
@id("bot-approves")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"approve", resource);
"#;

fn decide(server: &Server, id: &str, decision: &str) -> Result<Response, Failure> {
    server.post(
        &format!("/v1/approvals/{id}"),
        &json!({ "decision": decision, "reason": "conformance" }),
    )
}

fn approval_ids(server: &Server) -> Result<Vec<String>, Failure> {
    let response = server.get("/v1/approvals")?;
    response.expect(200, "GET /v1/approvals")?;
    let body = response.json()?;
    Ok(body
        .as_array()
        .ok_or_else(|| Failure::Failed(format!("GET /v1/approvals is not an array: {body}")))?
        .iter()
        .map(|a| a["id"].to_string())
        .collect())
}

fn approvals(target: &Target) -> Result<(), Failure> {
    let own = own(target, Some(APPROVALS), "", false)?;
    let bot = own.as_principal("agent:bot", "bot")?;
    let ops = own.as_principal("user:ops", "ops")?;
    let other = own.as_principal("agent:other", "other")?;
    let ask = || -> Result<String, Failure> {
        let response = invoke(&bot, &greet_of("Ada"))?;
        let document = problem(
            &response,
            202,
            "approval-pending",
            "an approval-required call",
        )?;
        let id = document["approval"]
            .as_u64()
            .ok_or_else(|| Failure::Failed(format!("the 202 names no approval: {document}")))?;
        ensure!(
            response.header("location") == format!("/v1/approvals/{id}"),
            "the 202 carries Location {:?} where /v1/approvals/{id} is required",
            response.header("location")
        );
        Ok(id.to_string())
    };
    let id = ask()?;
    let again = ask()?;
    ensure!(
        again == id,
        "an identical call while pending named approval {again} where {id} is required"
    );
    // Visible to who asked and who may decide; to nobody else.
    ensure!(
        approval_ids(&bot)? == [id.clone()],
        "the asker does not see exactly its approval"
    );
    ensure!(
        approval_ids(&ops)? == [id.clone()],
        "the approver does not see exactly the approval it may decide"
    );
    ensure!(
        approval_ids(&other)?.is_empty(),
        "agent:other sees approvals it neither asked for nor may decide"
    );
    let path = format!("/v1/approvals/{id}");
    bot.get(&path)?
        .expect(200, "GET the asker's own approval")?;
    problem(
        &other.get(&path)?,
        404,
        "unknown",
        "GET another principal's approval",
    )?;
    // Nobody decides their own, nor one the policy does not let them approve.
    problem(
        &decide(&bot, &id, "grant")?,
        403,
        "denied",
        "the asker granting its own approval",
    )?;
    problem(
        &decide(&other, &id, "grant")?,
        403,
        "denied",
        "a principal the policy does not let approve",
    )?;
    let response = decide(&ops, &id, "grant")?;
    response.expect(200, "the approver's grant")?;
    let decided = response.json()?;
    ensure!(
        decided["id"].as_u64().map(|n| n.to_string()).as_deref() == Some(id.as_str())
            && decided["state"] == "granted"
            && decided["decided_by"].to_string().contains("ops"),
        "the grant did not answer the decided approval: {decided}"
    );
    problem(
        &decide(&ops, &id, "deny")?,
        400,
        "bad-arguments",
        "deciding an approval already decided",
    )?;
    problem(
        &decide(&ops, "999999", "grant")?,
        404,
        "unknown",
        "deciding an unknown approval",
    )?;
    // The grant was recorded: the identical call now runs.
    receipt(&bot, &greet_of("Ada"))?;
    Ok(())
}

fn principal_from_token(target: &Target) -> Result<(), Failure> {
    let own = own(target, None, "", false)?;
    let bot = own.as_principal("agent:bot", "bot")?;
    let listing = bot.get("/v1/capabilities")?.json()?;
    ensure!(
        listing["principal"] == "FemtoClaw::Agent::\"bot\"",
        "agent:bot's token lists capabilities for {}",
        listing["principal"]
    );
    let mark = tree_size(&own.server)?;
    // A body cannot choose the principal.
    let claimed = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" }, "principal": "user:local" });
    problem(
        &invoke(&bot, &claimed)?,
        400,
        "bad-arguments",
        "a body naming a principal",
    )?;
    // The default policy lets only user:local invoke: the token's principal is refused.
    problem(
        &invoke(&bot, &greet())?,
        403,
        "denied",
        "agent:bot under the default policy",
    )?;
    let starts: Vec<Json> = entries_from(&own.server, mark)?
        .into_iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .collect();
    ensure!(
        !starts.is_empty()
            && starts
                .iter()
                .all(|s| s["entry"]["principal"] == "FemtoClaw::Agent::\"bot\""),
        "the invocations of agent:bot's token are not recorded as agent:bot's: {starts:?}"
    );
    // A forged token reaches nothing.
    let before = tree_size(&own.server)?;
    let forged = with_token(&own.server, "fct_forged-conformance-token")?;
    problem(
        &invoke(&forged, &greet())?,
        401,
        "unauthenticated",
        "a forged token",
    )?;
    let session = mcp(
        &forged,
        None,
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "hello.greet", "arguments": { "name": "Ada" } } }),
    )?;
    session.expect(401, "an MCP call with a forged token")?;
    ensure!(
        tree_size(&own.server)? == before,
        "a forged token's requests reached the invocation path: the ledger grew"
    );
    Ok(())
}

fn private_files(target: &Target) -> Result<(), Failure> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let own = own(target, None, "", false)?;
    let data = own.host()?.data.path().to_owned();
    let socket = std::fs::metadata(data.join("admin.sock"))
        .map_err(|e| Failure::Failed(format!("no admin.sock while the server runs: {e}")))?;
    ensure!(
        socket.file_type().is_socket(),
        "<data dir>/admin.sock is not a Unix socket"
    );
    let mode = socket.permissions().mode() & 0o777;
    ensure!(
        mode == 0o600,
        "admin.sock has mode {mode:o} where 600 is required"
    );
    own.host()?
        .secret_set("conformance-secret", b"s3cret\n")?
        .expect(0, "secret set")?;
    let dir = std::fs::metadata(data.join("secrets"))
        .map_err(|e| Failure::Failed(format!("no secrets/ after secret set: {e}")))?;
    let mode = dir.permissions().mode() & 0o777;
    ensure!(
        mode == 0o700,
        "secrets/ has mode {mode:o} where 700 is required"
    );
    let files: Vec<_> = std::fs::read_dir(data.join("secrets"))
        .map_err(|e| Failure::Failed(format!("cannot list secrets/: {e}")))?
        .filter_map(Result::ok)
        .collect();
    ensure!(!files.is_empty(), "secret set left no file in secrets/");
    for file in files {
        let mode = file
            .metadata()
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        ensure!(
            mode == 0o600,
            "{} has mode {mode:o} where 600 is required",
            file.path().display()
        );
    }
    Ok(())
}

fn entries_clamped(target: &Target) -> Result<(), Failure> {
    let own = own(target, None, "", false)?;
    // Enough invocations for more than 1000 entries, four clients at a time.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (url, token) = (own.server.url.clone(), own.server.token.clone());
            std::thread::spawn(move || -> Result<(), Failure> {
                let server = client(&url, &token)?;
                let mut n = 0;
                while tree_size(&server)? <= 1010 && n < 400 {
                    receipt(&server, &greet_of(&format!("{t}-{n}")))?;
                    n += 1;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| Failure::Failed("a client thread panicked".into()))??;
    }
    let size = tree_size(&own.server)?;
    ensure!(size > 1000, "the ledger holds only {size} entries");
    for (query, want) in [
        ("", 100usize),
        ("?limit=5000", 1000),
        ("?from=0&limit=1001", 1000),
    ] {
        let path = format!("/v1/ledger/entries{query}");
        let response = own.server.get(&path)?;
        response.expect(200, &path)?;
        let page = response.json()?["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(
            page.len() == want && page[0]["index"] == json!(0),
            "{path} answered {} entries from {} where {want} from 0 are required",
            page.len(),
            page.first()
                .map(|e| e["index"].clone())
                .unwrap_or(Json::Null)
        );
    }
    Ok(())
}

/// One sample of a Prometheus text exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus text format 0.0.4: `# HELP`/`# TYPE` comments and `name{labels} value`
/// lines; the types by family, and the samples.
fn prometheus(
    text: &str,
) -> Result<(std::collections::HashMap<String, String>, Vec<Sample>), Failure> {
    let mut types = std::collections::HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Failure::Failed(format!("a malformed TYPE line: {line}")));
            };
            ensure!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{name}: unknown metric type {kind}"
            );
            ensure!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} has two TYPE lines"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| Failure::Failed(format!("a sample line without a value: {line}")))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| {
                Failure::Failed(format!("a sample value that is not a number: {line}"))
            })?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| Failure::Failed(format!("unclosed labels: {line}")))?;
                let mut labels = Vec::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest
                        .split_once("=\"")
                        .ok_or_else(|| Failure::Failed(format!("a malformed label: {line}")))?;
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let mut end = None;
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, e)) = chars.next() {
                                    value.push(match e {
                                        'n' => '\n',
                                        other => other,
                                    });
                                }
                            }
                            '"' => {
                                end = Some(i);
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    let end = end.ok_or_else(|| {
                        Failure::Failed(format!("an unclosed label value: {line}"))
                    })?;
                    labels.push((key.trim_start_matches(',').to_owned(), value));
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_owned(), labels)
            }
        };
        ensure!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name:?} is not a Prometheus metric name"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok((types, samples))
}

fn sum(samples: &[Sample], name: &str, filter: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && filter(s))
        .map(|s| s.value)
        .sum()
}

/// The policy of the metrics case: user:local anything; agent:bot under a quota; agent:asker
/// only with approval; agent:nobody nothing.
const METRICS_POLICY: &str = r#"@id("local")
permit (principal == FemtoClaw::User::"local", action, resource);
@id("bot")
permit (principal == FemtoClaw::Agent::"bot", action, resource);
@id("asker")
@approval("required")
permit (principal == FemtoClaw::Agent::"asker", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("link")
permit (principal, action == FemtoClaw::Action::"link", resource);
"#;

/// The value of the sample `name` (with no labels but `labels`) of a scrape, or 0.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(n, v)| s.label(n) == Some(v))
        })
        .map_or(0.0, |s| s.value)
}

fn group_commits_and_recovery_reported(target: &Target) -> Result<(), Failure> {
    // Every group commit reported: how many, their appends, entries, duration, sync time,
    // the tree's size, and whether each was made durable.
    let own = own(target, Some(OPEN), "", true)?;
    for name in ["one", "two", "three"] {
        receipt(&own.server, &greet_of(name))?;
    }
    let entries = own.server.get("/v1/ledger/entries?from=0&limit=1000")?;
    entries.expect(200, "GET /v1/ledger/entries")?;
    let tree_size = entries.json()?["entries"].as_array().map_or(0, Vec::len) as f64;
    let response = own.server.get("/metrics")?;
    response.expect(200, "GET /metrics")?;
    let (_, samples) = prometheus(&response.text)?;
    let commits = sample(
        &samples,
        "femtoclaw_ledger_commits_total",
        &[("durable", "true")],
    );
    let count = |family: &str| sample(&samples, &format!("{family}_count"), &[]);
    let sum = |family: &str| sample(&samples, &format!("{family}_sum"), &[]);
    ensure!(
        commits >= 3.0
            && sample(
                &samples,
                "femtoclaw_ledger_commits_total",
                &[("durable", "false")]
            ) == 0.0,
        "three invocations must be reported as at least 3 durable group commits and none not durable: {commits}"
    );
    for family in [
        "femtoclaw_ledger_commit_appends",
        "femtoclaw_ledger_commit_entries",
        "femtoclaw_ledger_commit_duration_seconds",
        "femtoclaw_ledger_commit_sync_seconds",
    ] {
        ensure!(
            count(family) == commits,
            "{family} must count every group commit: {} where {commits} were made",
            count(family)
        );
    }
    ensure!(
        sum("femtoclaw_ledger_commit_appends") >= commits
            && sum("femtoclaw_ledger_commit_entries") >= sum("femtoclaw_ledger_commit_appends")
            && sum("femtoclaw_ledger_commit_sync_seconds")
                <= sum("femtoclaw_ledger_commit_duration_seconds"),
        "each commit coalesces at least one append of at least one entry, and its sync time is part of its duration: appends {}, entries {}, sync {} s, duration {} s",
        sum("femtoclaw_ledger_commit_appends"),
        sum("femtoclaw_ledger_commit_entries"),
        sum("femtoclaw_ledger_commit_sync_seconds"),
        sum("femtoclaw_ledger_commit_duration_seconds")
    );
    ensure!(
        sample(&samples, "femtoclaw_ledger_tree_size", &[]) == tree_size,
        "femtoclaw_ledger_tree_size must be the ledger's {tree_size} entries: {}",
        sample(&samples, "femtoclaw_ledger_tree_size", &[])
    );
    drop(own);
    // A warning when opening the ledger cut a torn tail, and one naming the invocations the
    // host stopped during.
    let host = super::guest_host(target, OPEN)?;
    super::authority::killed_during_a_call(&host)?;
    let segments = host.data.path().join("ledger").join("segments");
    let last = std::fs::read_dir(&segments)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).max())
        .ok_or_else(|| Failure::Failed("no segment".into()))?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .map_err(|e| Failure::Failed(format!("cannot open {}: {e}", last.display())))?;
    file.write_all(b"torn")
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", last.display())))?;
    drop(file);
    let run = host.invoke("add", &json!({ "a": 1, "b": 2 }), &[])?;
    run.expect(
        0,
        "an invocation after the host was killed and its ledger torn",
    )?;
    ensure!(
        !run.stderr.contains('\u{1b}'),
        "log lines written to a pipe must carry no terminal escapes: {:?}",
        excerpt(&run.stderr)
    );
    let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("WARN")).collect();
    ensure!(
        warnings
            .iter()
            .any(|l| l.contains("tail") && l.contains('4'))
            && warnings
                .iter()
                .any(|l| l.contains("interrupted") && l.contains("[0]")),
        "opening the ledger must warn that it cut a torn tail of 4 bytes and that invocation 0 was interrupted: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn metrics(target: &Target) -> Result<(), Failure> {
    let scrape_port = free_port()?;
    let scrape = format!("127.0.0.1:{scrape_port}");
    let own = own(
        target,
        Some(METRICS_POLICY),
        &format!(
            "[[quotas.rules]]\nprincipal = \"agent:bot\"\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\n\n[telemetry]\nmetrics_listen = \"{scrape}\"\n"
        ),
        true,
    )?;
    let bot = own.as_principal("agent:bot", "bot")?;
    let asker = own.as_principal("agent:asker", "asker")?;
    let nobody = own.as_principal("agent:nobody", "nobody")?;
    receipt(&own.server, &greet_of("one"))?;
    receipt(&own.server, &greet_of("two"))?;
    receipt(
        &own.server,
        &json!({ "capability": "conformance", "function": "note", "args": { "message": "logged" } }),
    )?;
    problem(
        &invoke(
            &own.server,
            &json!({ "capability": "conformance", "function": "divide", "args": { "a": 1, "b": 0 } }),
        )?,
        422,
        "trapped",
        "divide by zero",
    )?;
    problem(&invoke(&nobody, &greet())?, 403, "denied", "agent:nobody")?;
    receipt(&bot, &greet_of("bot"))?;
    problem(
        &invoke(&bot, &greet_of("bot again"))?,
        429,
        "over-quota",
        "agent:bot over its quota",
    )?;
    problem(
        &invoke(&asker, &greet())?,
        202,
        "approval-pending",
        "agent:asker",
    )?;

    // On the API address only with a token.
    let response = send(
        &own.server,
        reqwest::Method::GET,
        "/metrics",
        None,
        None,
        &[],
    )?;
    problem(
        &response,
        401,
        "unauthenticated",
        "GET /metrics without a token",
    )?;
    let response = send(
        &own.server,
        reqwest::Method::GET,
        "/metrics",
        Some("fct_forged-conformance-token"),
        None,
        &[],
    )?;
    problem(
        &response,
        401,
        "unauthenticated",
        "GET /metrics with a forged token",
    )?;
    let response = nobody.get("/metrics")?;
    response.expect(200, "GET /metrics with a valid token of any principal")?;
    ensure!(
        response.header("content-type") == "text/plain; version=0.0.4; charset=utf-8",
        "/metrics is served as {:?} where text/plain; version=0.0.4; charset=utf-8 is required",
        response.header("content-type")
    );
    let text = response.text.clone();
    // On the scrape address without one: the same metrics.
    let scraped = Server::client()
        .get(format!("http://{scrape}/metrics"))
        .send()
        .map_err(|e| {
            Failure::Failed(format!("telemetry.metrics_listen {scrape}: no answer: {e}"))
        })?;
    ensure!(
        scraped.status().as_u16() == 200,
        "GET /metrics on telemetry.metrics_listen without a token got HTTP {}",
        scraped.status()
    );
    let scraped = scraped.text().unwrap_or_default();
    let (types, samples) = prometheus(&text)?;
    let (scraped_types, scraped_samples) = prometheus(&scraped)?;
    let series = |samples: &[Sample]| -> Vec<(String, Vec<(String, String)>)> {
        let mut all: Vec<_> = samples
            .iter()
            .map(|s| (s.name.clone(), s.labels.clone()))
            .collect();
        all.sort();
        all
    };
    ensure!(
        types == scraped_types && series(&samples) == series(&scraped_samples),
        "the scrape listener does not serve the same metrics as the API's /metrics"
    );
    // Names, instruments and labels of the metrics table.
    let table: [(&str, &str, &[&str]); 14] = [
        (
            "femtoclaw_invocations_total",
            "counter",
            &["capability", "outcome"],
        ),
        (
            "femtoclaw_invocation_duration_seconds",
            "histogram",
            &["capability"],
        ),
        ("femtoclaw_invocation_fuel", "histogram", &["capability"]),
        (
            "femtoclaw_host_calls_total",
            "counter",
            &["interface", "decision"],
        ),
        ("femtoclaw_denials_total", "counter", &["action"]),
        ("femtoclaw_ledger_commits_total", "counter", &["durable"]),
        ("femtoclaw_ledger_commit_appends", "histogram", &[]),
        ("femtoclaw_ledger_commit_duration_seconds", "histogram", &[]),
        ("femtoclaw_ledger_commit_sync_seconds", "histogram", &[]),
        ("femtoclaw_ledger_commit_entries", "histogram", &[]),
        ("femtoclaw_ledger_tree_size", "gauge", &[]),
        ("femtoclaw_queue_depth", "gauge", &[]),
        ("femtoclaw_quota_refusals_total", "counter", &["limit"]),
        ("femtoclaw_approvals_pending", "gauge", &[]),
    ];
    for (family, kind, labels) in table {
        // Nothing waited for a turn in this case: the queue gauge may not have been set yet.
        if family == "femtoclaw_queue_depth" && !types.contains_key(family) {
            continue;
        }
        let typed = types.get(family).map(String::as_str);
        ensure!(
            typed == Some(kind),
            "{family} is typed {typed:?} where {kind} is required"
        );
        let own_samples: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.name == family
                    || (kind == "histogram"
                        && [
                            format!("{family}_bucket"),
                            format!("{family}_sum"),
                            format!("{family}_count"),
                        ]
                        .contains(&s.name))
            })
            .collect();
        ensure!(!own_samples.is_empty(), "{family} has no samples");
        for sample in own_samples {
            let mut names: Vec<&str> = sample
                .labels
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| *n != "le")
                .collect();
            names.sort();
            let mut want = labels.to_vec();
            want.sort();
            ensure!(
                names == want,
                "{}: labels {names:?} where {want:?} are required",
                sample.name
            );
        }
    }
    let bounds = |family: &str| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            if let Some(le) = s.label("le")
                && !seen.iter().any(|b| b == le)
            {
                seen.push(le.to_owned());
            }
        }
        seen
    };
    let as_numbers = |bounds: Vec<String>| -> Vec<f64> {
        bounds
            .iter()
            .filter_map(|b| b.parse::<f64>().ok())
            .filter(|b| b.is_finite())
            .collect()
    };
    let duration = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ];
    ensure!(
        as_numbers(bounds("femtoclaw_invocation_duration_seconds")) == duration,
        "femtoclaw_invocation_duration_seconds has bounds {:?}",
        bounds("femtoclaw_invocation_duration_seconds")
    );
    let fuel: Vec<f64> = (3..=10).map(|e| 10f64.powi(e)).collect();
    ensure!(
        as_numbers(bounds("femtoclaw_invocation_fuel")) == fuel,
        "femtoclaw_invocation_fuel has bounds {:?} where 10^3 … 10^10 are required",
        bounds("femtoclaw_invocation_fuel")
    );
    let entries: Vec<f64> = (0..=12).map(|e| 2f64.powi(e)).collect();
    ensure!(
        as_numbers(bounds("femtoclaw_ledger_commit_entries")) == entries,
        "femtoclaw_ledger_commit_entries has bounds {:?} where 1, 2, 4 … 4096 are required",
        bounds("femtoclaw_ledger_commit_entries")
    );
    // No principal in any label.
    for sample in &samples {
        for (name, value) in &sample.labels {
            ensure!(
                name != "principal"
                    && !value.contains("User::")
                    && !value.contains("Agent::")
                    && !["bot", "asker", "nobody", "local"]
                        .iter()
                        .any(|p| value.contains(p)),
                "{} has a label naming a principal: {name}={value:?}",
                sample.name
            );
        }
    }
    // Counts consistent with the ledger.
    let ledger = entries_from(&own.server, 0)?;
    let starts: Vec<&Json> = ledger
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .collect();
    let count = |capability: &str, outcome: &str| {
        sum(&samples, "femtoclaw_invocations_total", |s| {
            s.label("capability") == Some(capability) && s.label("outcome") == Some(outcome)
        })
    };
    let expected = [
        ("hello", "ok", 3.0),
        ("hello", "denied", 1.0),
        ("hello", "over-quota", 1.0),
        ("hello", "approval-pending", 1.0),
        ("conformance", "ok", 1.0),
        ("conformance", "trapped", 1.0),
    ];
    for (capability, outcome, want) in expected {
        let seen = count(capability, outcome);
        ensure!(
            seen == want,
            "femtoclaw_invocations_total{{capability=\"{capability}\",outcome=\"{outcome}\"}} is {seen} where {want} is required"
        );
    }
    let total = sum(&samples, "femtoclaw_invocations_total", |_| true);
    for capability in ["hello", "conformance"] {
        let recorded = starts
            .iter()
            .filter(|s| s["entry"]["capability"] == capability)
            .count() as f64;
        let counted = sum(&samples, "femtoclaw_invocations_total", |s| {
            s.label("capability") == Some(capability)
        });
        ensure!(
            counted == recorded,
            "femtoclaw_invocations_total counts {counted} invocations of {capability} where the ledger holds {recorded} starts"
        );
    }
    ensure!(
        total == starts.len() as f64,
        "femtoclaw_invocations_total sums to {total} where the ledger holds {} invocation starts",
        starts.len()
    );
    // Fuel observed for each invocation that ran, none for those refused before running.
    for (capability, ran) in [("hello", 3.0), ("conformance", 2.0)] {
        let observed = sum(&samples, "femtoclaw_invocation_fuel_count", |s| {
            s.label("capability") == Some(capability)
        });
        ensure!(
            observed == ran,
            "femtoclaw_invocation_fuel_count{{capability=\"{capability}\"}} is {observed} where the {ran} invocations that ran are required"
        );
    }
    let consumed: f64 = ledger
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-end")
        .filter_map(|e| e["entry"]["fuel_consumed"].as_u64())
        .map(|f| f as f64)
        .sum();
    let fuel_sum = sum(&samples, "femtoclaw_invocation_fuel_sum", |_| true);
    ensure!(
        fuel_sum == consumed,
        "femtoclaw_invocation_fuel_sum is {fuel_sum} where the ledger's ends consumed {consumed}"
    );
    let refusals = sum(&samples, "femtoclaw_quota_refusals_total", |_| true);
    ensure!(
        refusals == 1.0,
        "femtoclaw_quota_refusals_total is {refusals} after one quota refusal"
    );
    let pending = sum(&samples, "femtoclaw_approvals_pending", |_| true);
    ensure!(
        pending == 1.0,
        "femtoclaw_approvals_pending is {pending} with one approval pending"
    );
    Ok(())
}

/// Installs the suite's guest with its manifest changed by `edit`.
fn install_edited(
    host: &Host,
    name: &str,
    edit: impl Fn(&str) -> String,
) -> Result<crate::target::Run, Failure> {
    let wasm = host.file(&format!("{name}.wasm"), crate::GUEST)?;
    let manifest = host.file(
        &format!("{name}.toml"),
        edit(crate::GUEST_MANIFEST).as_bytes(),
    )?;
    host.run(&[
        "capability",
        "add",
        &wasm.to_string_lossy(),
        "--manifest",
        &manifest.to_string_lossy(),
    ])
}

/// The guest's functions, as tools.
const GUEST_TOOLS: [&str; 7] = [
    "conformance.echo",
    "conformance.add",
    "conformance.divide",
    "conformance.spin",
    "conformance.note",
    "conformance.remember",
    "conformance.recall",
];

fn mcp_tools_per_principal(target: &Target) -> Result<(), Failure> {
    let policy = "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"conformance\");\n\
        permit (principal, action == FemtoClaw::Action::\"link\", resource);\n\
        permit (principal, action == FemtoClaw::Action::\"kv.read\", resource);\n";
    let own = own(target, Some(policy), "", true)?;
    install_edited(own.host()?, "newer", |m| {
        m.replace("version = \"1.0.0\"", "version = \"1.1.0\"")
    })?
    .expect(0, "capability add of version 1.1.0")?;
    let session = mcp_session(&own.server)?;
    let tools = mcp_tools(&own.server, &session)?;
    let mut offered = names(&tools);
    offered.sort();
    let mut want: Vec<String> = GUEST_TOOLS.iter().map(|t| (*t).to_owned()).collect();
    want.sort();
    ensure!(
        offered == want,
        "user:local may invoke only conformance (installed as 1.0.0 and 1.1.0): tools/list offers {offered:?} where each of {want:?} once is required"
    );
    let echo = tools
        .iter()
        .find(|t| t["name"] == "conformance.echo")
        .cloned()
        .unwrap_or(Json::Null);
    ensure!(
        echo["description"] == "Returns `text` unchanged.",
        "conformance.echo's description is {} where its WIT doc comment is required",
        echo["description"]
    );
    let answer = mcp_call(
        &own.server,
        &session,
        "conformance.echo",
        &json!({ "text": "which" }),
    )?;
    ensure!(
        answer["result"]["structuredContent"]["result"] == "which",
        "conformance.echo did not echo: {answer}"
    );
    let receipt = &answer["result"]["_meta"]["femtoclaw/receipt"];
    let (first, last) = (
        receipt["entries"][0].as_u64().unwrap_or(u64::MAX),
        receipt["entries"][1].as_u64().unwrap_or(u64::MAX),
    );
    let start = entry_at(&own.server, first)?;
    ensure!(
        start["type"] == "invocation-start" && start["version"] == "1.1.0",
        "the call of conformance.echo did not run the highest version 1.1.0: {start}"
    );
    let end = entry_at(&own.server, last)?;
    ensure!(
        end["type"] == "invocation-end" && end["invocation"] == receipt["invocation"],
        "the receipt in _meta does not name its invocation-end: {end}"
    );
    own.host()?
        .run(&["log", "verify"])?
        .expect(0, "log verify of the ledger the receipt names")?;
    let nobody = own.as_principal("agent:nobody", "nobody")?;
    let session = mcp_session(&nobody)?;
    let tools = mcp_tools(&nobody, &session)?;
    ensure!(
        tools.is_empty(),
        "agent:nobody may invoke nothing; tools/list offers {:?}",
        names(&tools)
    );
    Ok(())
}

/// `capability add` of `wasm` as `name` 1.0.0 (with no requests).
fn add_built(host: &Host, name: &str, wasm: &[u8]) -> Result<crate::target::Run, Failure> {
    let manifest = format!("name = \"{name}\"\nversion = \"1.0.0\"\nfuel = 1000000\n");
    super::execution::add(host, &format!("{name}.wasm"), wasm, Some(&manifest))
}

/// `tools/list` over stdio: the names offered.
fn stdio_tool_names(host: &Host) -> Result<Vec<String>, Failure> {
    let mut session = StdioMcp::start(host, &[], &[])?;
    session.initialize()?;
    let answer = session.ask(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))?;
    let tools = answer["result"]["tools"]
        .as_array()
        .ok_or_else(|| Failure::Failed(format!("tools/list answered no tools: {answer}")))?;
    Ok(names(tools))
}

/// `name@version` of each capability `capability list --json` lists.
fn installed(host: &Host) -> Result<Vec<String>, Failure> {
    let list: Json = serde_json::from_str(&host.ok(&["capability", "list", "--json"])?)
        .map_err(|e| Failure::Failed(format!("capability list --json is not JSON: {e}")))?;
    Ok(list
        .as_array()
        .map(|all| {
            all.iter()
                .map(|c| {
                    let field = |key: &str| c["manifest"][key].as_str().unwrap_or("?").to_owned();
                    format!("{}@{}", field("name"), field("version"))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `names`, each over 40 characters cut short with its length.
fn shown(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|name| match name.char_indices().nth(20) {
            Some((at, _)) if name.len() > 40 => {
                format!("{}…({} characters)", &name[..at], name.len())
            }
            _ => name.clone(),
        })
        .collect()
}

/// A capability `tools` of the suite's own world: a function of the world, a function of an
/// exported interface of a versioned package, a static function of a resource (whose name holds
/// `[` and `]`) and functions whose tool names are 128 and 129 characters long.
fn mcp_tool_names(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"tools\");\n",
    )?;
    let longest = "a".repeat(128 - "tools.".len());
    let over = "b".repeat(129 - "tools.".len());
    let wit = format!(
        "package femtoclaw-conformance:tools@0.1.0;\n\n\
         interface api {{\n    resource counter {{\n        start: static func() -> u32;\n    }}\n    run: func() -> u32;\n}}\n\n\
         world tools {{\n    export top: func() -> u32;\n    export api;\n    export {longest}: func();\n    export {over}: func();\n}}\n"
    );
    let wasm = crate::world::exporting(&[&wit], "tools").map_err(super::failed)?;
    add_built(&host, "tools", &wasm)?.expect(0, "capability add of the tool-name component")?;
    // The host has every function; the case is about which of them it offers.
    let inspected: Json = serde_json::from_str(&host.ok(&["capability", "inspect", "tools"])?)
        .map_err(|e| Failure::Failed(format!("capability inspect is not JSON: {e}")))?;
    let functions: Vec<&str> = inspected["functions"]
        .as_array()
        .map(|all| all.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        ["[static]counter.start", over.as_str()]
            .iter()
            .all(|want| functions.iter().any(|f| f.ends_with(want))),
        "capability inspect tools does not list the functions `[static]counter.start` and `bbb…` ({} characters): {:?}",
        over.len(),
        shown(
            &functions
                .iter()
                .map(|f| (*f).to_owned())
                .collect::<Vec<_>>()
        )
    );
    let mut offered = stdio_tool_names(&host)?;
    offered.sort();
    let mut want = vec![
        "tools.top".to_owned(),
        "tools.api.run".to_owned(),
        format!("tools.{longest}"),
    ];
    want.sort();
    ensure!(
        offered == want,
        "tools/list offers {:?} where exactly {:?} is required (`tools.bbb…` is 129 characters, `tools.api.[static]counter.start` holds `[` and `]`)",
        shown(&offered),
        shown(&want)
    );
    Ok(())
}

/// A capability exporting the interfaces `api` of two packages, each with a function `run`: both
/// would be the tool `clash.api.run`.
fn mcp_tool_name_collision(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let other = "package femtoclaw-conformance:other;\n\ninterface api {\n    run: func();\n}\n";
    let clash = "package femtoclaw-conformance:clash;\n\ninterface api {\n    run: func();\n}\n\n\
        world clash {\n    export api;\n    export femtoclaw-conformance:other/api;\n}\n";
    let wasm = crate::world::exporting(&[other, clash], "clash").map_err(super::failed)?;
    let before = installed(&host)?;
    let run = add_built(&host, "clash", &wasm)?;
    let named = [
        "clash.api.run",
        "femtoclaw-conformance:clash/api#run",
        "femtoclaw-conformance:other/api#run",
    ];
    ensure!(
        run.code == 2 && named.iter().all(|n| run.stderr.contains(n)),
        "capability add of a component two of whose functions would be the tool `clash.api.run` must be refused (exit 2) naming the tool and both functions {named:?}: exit {}: {}",
        run.code,
        excerpt(&run.stderr)
    );
    let after = installed(&host)?;
    ensure!(
        after == before,
        "the refused capability changed capability list: {before:?} before, {after:?} after"
    );
    host.run(&["capability", "inspect", "clash"])?
        .expect(3, "capability inspect of the refused capability")?;
    Ok(())
}

fn mcp_tools_allow_deny(target: &Target) -> Result<(), Failure> {
    let own = self::own(
        target,
        None,
        "[mcp]\ntools_deny = [\"hello.greet\"]\n",
        false,
    )?;
    let session = mcp_session(&own.server)?;
    let offered = names(&mcp_tools(&own.server, &session)?);
    ensure!(
        !offered.iter().any(|t| t == "hello.greet")
            && offered.iter().any(|t| t == "textstats.analyze"),
        "with mcp.tools_deny = [\"hello.greet\"], tools/list offers {offered:?}"
    );
    drop(own);
    let own = self::own(
        target,
        None,
        "[mcp]\ntools_allow = [\"hello.greet\", \"textstats.analyze\"]\n",
        false,
    )?;
    let session = mcp_session(&own.server)?;
    let mut offered = names(&mcp_tools(&own.server, &session)?);
    offered.sort();
    ensure!(
        offered == ["hello.greet", "textstats.analyze"],
        "with mcp.tools_allow = [hello.greet, textstats.analyze], tools/list offers {offered:?}"
    );
    drop(own);
    let own = self::own(
        target,
        None,
        "[mcp]\ntools_allow = [\"hello.greet\", \"textstats.analyze\"]\ntools_deny = [\"hello.greet\"]\n",
        false,
    )?;
    let session = mcp_session(&own.server)?;
    let offered = names(&mcp_tools(&own.server, &session)?);
    ensure!(
        offered == ["textstats.analyze"],
        "a name both allowed and denied must not be offered: tools/list offers {offered:?}"
    );
    Ok(())
}

fn mcp_origin(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        None,
        "[mcp]\nallowed_origins = [\"http://good.example\"]\n",
        false,
    )?;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
        }
    });
    let response = mcp_with(
        &own.server,
        None,
        "2025-11-25",
        &[("origin", "http://evil.example")],
        &initialize,
    )?;
    response.expect(
        403,
        "an MCP request from an Origin not in mcp.allowed_origins",
    )?;
    let response = mcp_with(
        &own.server,
        None,
        "2025-11-25",
        &[("origin", "http://good.example")],
        &initialize,
    )?;
    response.expect(200, "an MCP request from an Origin in mcp.allowed_origins")?;
    ensure!(
        response.json()?["result"]["protocolVersion"].is_string(),
        "the allowed Origin's initialize was not answered"
    );
    Ok(())
}

/// The messages of a session's server-sent event stream (`GET /mcp`), as they come.
fn mcp_events(server: &Server, session: &str) -> Result<std::sync::mpsc::Receiver<Json>, Failure> {
    let response = Server::client()
        .get(format!("{}/mcp", server.url))
        .bearer_auth(&server.token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .map_err(|e| Failure::Failed(format!("GET /mcp: no answer: {e}")))?;
    ensure!(
        response.status().as_u16() == 200,
        "GET /mcp (the session's event stream) got HTTP {}",
        response.status()
    );
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(response);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(data) = line.trim().strip_prefix("data:")
                && let Ok(message) = serde_json::from_str::<Json>(data.trim())
                && sender.send(message).is_err()
            {
                return;
            }
            line.clear();
        }
    });
    Ok(receiver)
}

/// Waits at most `within` for a `notifications/tools/list_changed`.
pub(super) fn list_changed(events: &std::sync::mpsc::Receiver<Json>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(m) if m["method"] == "notifications/tools/list_changed" => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn mcp_list_changed(target: &Target) -> Result<(), Failure> {
    let own = own(target, Some(OPEN), "", false)?;
    let session = mcp_session(&own.server)?;
    let events = mcp_events(&own.server, &session)?;
    ensure!(
        !names(&mcp_tools(&own.server, &session)?)
            .iter()
            .any(|t| t == "conformance.echo"),
        "conformance.echo is offered before it is installed"
    );
    own.host()?.install()?;
    ensure!(
        list_changed(&events, Duration::from_secs(3)),
        "no notifications/tools/list_changed within 3 s of installing a capability"
    );
    ensure!(
        names(&mcp_tools(&own.server, &session)?)
            .iter()
            .any(|t| t == "conformance.echo"),
        "after list_changed, tools/list does not offer the installed capability"
    );
    // The policy in force changes: only hello may be invoked now.
    own.host()?.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"hello\");\n\
         permit (principal, action == FemtoClaw::Action::\"link\", resource);\n",
    )?;
    ensure!(
        list_changed(&events, Duration::from_secs(4)),
        "no notifications/tools/list_changed within 4 s of a policy change"
    );
    let offered = names(&mcp_tools(&own.server, &session)?);
    ensure!(
        offered == ["hello.greet"],
        "after the policy change, tools/list offers {offered:?} where only hello.greet is required"
    );
    Ok(())
}

fn mcp_cancelled(target: &Target) -> Result<(), Failure> {
    let host = own_host(
        target,
        Some(OPEN),
        "[limits]\nmax_fuel = 1000000000000000\ndeadline_ms = 10000\n",
        false,
    )?;
    install_edited(&host, "endless", |m| {
        m.replace("fuel = 50_000_000", "fuel = 1_000_000_000_000_000")
    })?
    .expect(0, "capability add of the guest with an endless fuel budget")?;
    let own = start(host, &[], &[])?;
    let session = mcp_session(&own.server)?;
    let warm = mcp_call(
        &own.server,
        &session,
        "conformance.echo",
        &json!({ "text": "warm" }),
    )?;
    ensure!(
        warm["result"]["isError"] == json!(false),
        "echo failed: {warm}"
    );
    let mark = tree_size(&own.server)?;
    let (url, token, id) = (
        own.server.url.clone(),
        own.server.token.clone(),
        session.clone(),
    );
    let started = Instant::now();
    let call = std::thread::spawn(move || {
        let server = client(&url, &token)?;
        let call = json!({
            "jsonrpc": "2.0", "id": 41, "method": "tools/call",
            "params": { "name": "conformance.spin", "arguments": {} }
        });
        mcp(&server, Some(&id), &call).map(|r| r.text)
    });
    std::thread::sleep(Duration::from_millis(600));
    let cancel = json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": 41, "reason": "conformance" }
    });
    let response = mcp(&own.server, Some(&session), &cancel)?;
    ensure!(
        response.status == 202 || response.status == 200,
        "notifications/cancelled got HTTP {}",
        response.status
    );
    let _ = call.join();
    // The invocation ends, recorded as cancelled, well before its 10 s deadline.
    let mut trapped = false;
    while started.elapsed() < Duration::from_secs(6) && !trapped {
        trapped = entries_from(&own.server, mark)?
            .iter()
            .any(|e| e["entry"]["type"] == "trap" && e["entry"]["kind"] == "cancelled");
        if !trapped {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    ensure!(
        trapped,
        "a cancelled call was not recorded as a trap of kind cancelled within 6 s"
    );
    let ended = entries_from(&own.server, mark)?
        .iter()
        .any(|e| e["entry"]["type"] == "invocation-end");
    ensure!(ended, "the cancelled invocation has no end");
    let after = mcp_call(
        &own.server,
        &session,
        "conformance.echo",
        &json!({ "text": "after" }),
    )?;
    ensure!(
        after["result"]["structuredContent"]["result"] == "after",
        "the session did not serve a call after the cancellation: {after}"
    );
    Ok(())
}

fn mcp_tool_errors(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(OPEN),
        "[[quotas.rules]]\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\n",
        true,
    )?;
    let session = mcp_session(&own.server)?;
    let first = mcp_call(
        &own.server,
        &session,
        "hello.greet",
        &json!({ "name": "Ada" }),
    )?;
    ensure!(
        first["result"]["isError"] == json!(false),
        "hello.greet failed: {first}"
    );
    for (name, args, code) in [
        ("conformance.divide", json!({ "a": 1, "b": 0 }), "trapped"),
        ("conformance.spin", json!({}), "fuel-exhausted"),
        ("hello.greet", json!({ "name": "Ada" }), "over-quota"),
    ] {
        let answer = mcp_call(&own.server, &session, name, &args)?;
        let result = &answer["result"];
        let content = result["content"].as_array().cloned().unwrap_or_default();
        let text = content
            .first()
            .and_then(|c| c["text"].as_str())
            .unwrap_or("");
        ensure!(
            answer.get("error").is_none()
                && result["isError"] == json!(true)
                && content.len() == 1
                && content[0]["type"] == "text"
                && text.starts_with(&format!("{code}: "))
                && text.len() > code.len() + 2
                && !text.contains('\n'),
            "{name}: a failed invocation must be a tool result with isError and one text line `{code}: …`: {answer}"
        );
    }
    Ok(())
}

/// A `femtoclaw-host mcp` process over stdio: send a line, read the answer with an id.
struct StdioMcp {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl StdioMcp {
    fn start(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<StdioMcp, Failure> {
        let mut all = vec!["mcp"];
        all.extend_from_slice(args);
        let mut command = host.command(&all);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Failure::Failed(format!("cannot start mcp: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::Failed("no stdout pipe".into()))?;
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if sender.send(line.clone()).is_err() {
                    return;
                }
                line.clear();
            }
        });
        Ok(StdioMcp {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    fn send(&mut self, message: &Json) -> Result<(), Failure> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| Failure::Failed("mcp's stdin is closed".into()))?;
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .map_err(|e| Failure::Failed(format!("cannot write to mcp: {e}")))
    }

    /// Sends a request and waits (10 s at most) for the answer with its id.
    fn ask(&mut self, message: &Json) -> Result<Json, Failure> {
        self.send(message)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| Failure::Failed(format!("mcp did not answer {message}")))?;
            self.seen.push(line.clone());
            if let Ok(answer) = serde_json::from_str::<Json>(&line)
                && answer["id"] == message["id"]
            {
                return Ok(answer);
            }
        }
        Err(Failure::Failed(format!("mcp did not answer {message}")))
    }

    /// Initializes the session.
    fn initialize(&mut self) -> Result<(), Failure> {
        let answer = self.ask(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
            }
        }))?;
        ensure!(
            answer["result"]["protocolVersion"].is_string(),
            "mcp over stdio did not answer initialize: {answer}"
        );
        self.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
    }

    /// Closes stdin and waits (10 s at most) for the exit; every line stdout carried.
    fn close(mut self) -> Result<Vec<String>, Failure> {
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        Ok(std::mem::take(&mut self.seen))
    }
}

impl Drop for StdioMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Over stdio: the principal of the invocation `hello.greet` made in a session with `args`.
fn stdio_principal(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<String, Failure> {
    let mut session = StdioMcp::start(host, args, env)?;
    session.initialize()?;
    let answer = session.ask(&json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "hello.greet", "arguments": { "name": "Ada" } }
    }))?;
    ensure!(
        answer["result"]["structuredContent"]["result"] == "Hello, Ada!",
        "mcp over stdio ({args:?}) did not greet: {answer}"
    );
    let first = answer["result"]["_meta"]["femtoclaw/receipt"]["entries"][0]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("the stdio call has no receipt: {answer}")))?;
    let lines = session.close()?;
    for line in &lines {
        let message: Json = serde_json::from_str(line.trim_end_matches('\n')).map_err(|e| {
            Failure::Failed(format!(
                "mcp's stdout carried a line that is not JSON ({e}): {line:?}"
            ))
        })?;
        ensure!(
            line.ends_with('\n') && message["jsonrpc"] == "2.0",
            "mcp's stdout carried a line that is not a newline-delimited JSON-RPC message: {line:?}"
        );
    }
    let entries = host.entries()?;
    let start = entries
        .iter()
        .find(|e| e["index"] == json!(first))
        .ok_or_else(|| Failure::Failed(format!("no entry {first} in the ledger")))?;
    Ok(start["entry"]["principal"]
        .as_str()
        .unwrap_or("")
        .to_owned())
}

fn mcp_stdio(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(ANYONE)?;
    let bot = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "agent:bot",
            "--name",
            "bot",
        ])?
        .trim()
        .to_owned();
    let env = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "agent:env",
            "--name",
            "env",
        ])?
        .trim()
        .to_owned();
    for (args, variables, want) in [
        (vec![], vec![], "FemtoClaw::User::\"local\""),
        (
            vec!["--token", bot.as_str()],
            vec![],
            "FemtoClaw::Agent::\"bot\"",
        ),
        (
            vec![],
            vec![("FEMTOCLAW_TOKEN", env.as_str())],
            "FemtoClaw::Agent::\"env\"",
        ),
    ] {
        let principal = stdio_principal(&host, &args, &variables)?;
        ensure!(
            principal == want,
            "mcp over stdio (args {args:?}, token in the environment: {}) recorded principal {principal} where {want} is required",
            !variables.is_empty()
        );
    }
    let run = run_bounded(
        &host,
        &["mcp", "--token", "fct_forged-conformance-token"],
        Duration::from_secs(10),
    )?
    .ok_or_else(|| Failure::Failed("mcp with a forged --token did not end".into()))?;
    run.expect(7, "mcp with a --token that does not authenticate")?;
    ensure!(
        run.stderr.contains("--token: "),
        "the refusal does not begin `--token: `: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn invoke_remote(target: &Target) -> Result<(), Failure> {
    let cli = target.host()?;
    let own = own(target, None, "", false)?;
    let local = cli.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    local.expect(0, "a local invoke")?;
    let url = own.server.url.clone();
    let token = own.server.token.clone();
    let remote = |args: &[&str], token: &str| -> Result<crate::target::Run, Failure> {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--remote", &url, "--token", token]);
        cli.run(&all)
    };
    let run = remote(
        &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
        &token,
    )?;
    run.expect(0, "invoke --remote")?;
    ensure!(
        run.stdout == local.stdout,
        "invoke --remote printed {:?} where the local invoke's {:?} is required",
        run.stdout,
        local.stdout
    );
    remote(&["invoke", "no-such-capability", "greet"], &token)?
        .expect(3, "invoke --remote of an unknown capability")?;
    remote(
        &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
        "fct_forged-conformance-token",
    )?
    .expect(7, "invoke --remote with a forged token")?;
    let bot = own.token("agent:bot", "bot")?;
    remote(
        &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
        &bot,
    )?
    .expect(7, "invoke --remote of a call the policy denies")?;
    Ok(())
}

fn fresh_data_directory(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"world"}"#])?;
    run.expect(0, "the README's first command on a fresh data directory")?;
    ensure!(
        run.json()? == json!("Hello, world!"),
        "the README's first command printed {} where the JSON \"Hello, world!\" is required",
        excerpt(&run.stdout)
    );
    // The embedded capabilities cannot be removed, nor their names taken.
    host.run(&["capability", "remove", "hello"])?
        .expect(2, "capability remove of the embedded hello")?;
    let taken = install_edited(&host, "impostor", |m| {
        m.replace("name = \"conformance\"", "name = \"hello\"")
    })?;
    ensure!(
        taken.code != 0,
        "a capability named hello was installed over the embedded one"
    );
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"world"}"#])?
        .expect(0, "the embedded hello after the refusals")?;
    // Served with no configuration and no policy: the embedded capabilities, the local
    // operator only.
    let own = start(host, &[], &[])?;
    let listing = own.server.get("/v1/capabilities")?.json()?;
    let mut names: Vec<String> = listing["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["publisher"] == "femtoclaw")
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    ensure!(
        names == ["fetch", "files", "hello", "memory", "textstats"],
        "a fresh server offers user:local the first-party {names:?} where fetch, files, hello, memory and textstats are required"
    );
    receipt(&own.server, &greet())?;
    let bot = own.as_principal("agent:bot", "bot")?;
    problem(
        &invoke(&bot, &greet())?,
        403,
        "denied",
        "another principal under the default policy",
    )?;
    let user = own.as_principal("user:someone", "someone")?;
    problem(
        &invoke(&user, &greet())?,
        403,
        "denied",
        "another user under the default policy",
    )?;
    Ok(())
}

fn default_policy_reaches_nothing(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // A loopback peer that counts the connections it is offered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Failed(format!("cannot bind a loopback peer: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    listener.set_nonblocking(true).ok();
    let args = json!({ "url": format!("http://127.0.0.1:{port}/") }).to_string();
    let run = host.run(&["invoke", "fetch", "get", "--args", &args])?;
    run.expect(
        0,
        "fetch.get under the default policy (linked, its result an error)",
    )?;
    let result = run.json()?;
    ensure!(
        result["err"].as_str().is_some_and(|e| e.contains("denied")),
        "fetch.get of a loopback URL under the default policy gave {result} where a denied error is required"
    );
    ensure!(
        listener.accept().is_err(),
        "fetch under the default policy connected to the loopback peer"
    );
    let secret = host.file("private.txt", b"not for capabilities")?;
    let args = json!({ "path": secret.to_string_lossy() }).to_string();
    let run = host.run(&["invoke", "files", "read-file", "--args", &args])?;
    ensure!(
        !run.stdout.contains("not for capabilities"),
        "files.read-file under the default policy read a host file: {}",
        excerpt(&run.stdout)
    );
    let result = run.json().unwrap_or(Json::Null);
    ensure!(
        run.code != 0 || result["err"].is_string(),
        "files.read-file under the default policy did not fail: exit {}, {}",
        run.code,
        excerpt(&run.stdout)
    );
    Ok(())
}

fn policy_precedence(target: &Target) -> Result<(), Failure> {
    let deny = OPEN.replace("User::\"local\"", "User::\"someone-else\"");
    let host = super::guest_host(target, &deny)?;
    let echo = json!({ "text": "x" });
    host.invoke("echo", &echo, &[])?.expect(
        7,
        "the data directory's policy that permits someone else only",
    )?;
    let file = host.file("open.cedar", OPEN.as_bytes())?;
    host.invoke("echo", &echo, &["--policy", &file.to_string_lossy()])?
        .expect(0, "--policy over the data directory's policy")?;
    // Changed while a server runs: in force on the next request.
    let own = start(host, &[], &[])?;
    problem(
        &invoke(&own.server, &echo_of("x"))?,
        403,
        "denied",
        "before the policy change",
    )?;
    own.host()?.policy(OPEN)?;
    let started = Instant::now();
    loop {
        let response = invoke(&own.server, &echo_of("x"))?;
        if response.status == 200 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(3),
            "a changed policy file was not in force 3 s later: HTTP {}",
            response.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(own);
    Ok(())
}

fn start_errors(target: &Target) -> Result<(), Failure> {
    drop(target.host()?);
    // A configuration error: exit 2 before anything is bound.
    let host = own_host(target, None, "[server]\nconcurrency = 0\n", false)?;
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let run = run_bounded(
        &host,
        &["serve", "--listen", &address],
        Duration::from_secs(10),
    )?
    .ok_or_else(|| Failure::Failed("serve with server.concurrency = 0 kept running".into()))?;
    run.expect(2, "serve with server.concurrency = 0")?;
    ensure!(
        run.stderr.contains("server.concurrency"),
        "the configuration error does not name server.concurrency: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        !run.stdout.contains("listening on") && !host.data.path().join("admin.sock").exists(),
        "serve bound something before refusing its configuration"
    );
    // An address in use: exit 1, `cannot listen on ADDR: REASON`.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Failed(format!("cannot bind: {e}")))?;
    let address = taken
        .local_addr()
        .map_err(|e| Failure::Failed(format!("{e}")))?
        .to_string();
    let host = own_host(target, None, "", false)?;
    let run = run_bounded(
        &host,
        &["serve", "--listen", &address],
        Duration::from_secs(10),
    )?
    .ok_or_else(|| Failure::Failed("serve on an address in use kept running".into()))?;
    run.expect(1, "serve on an address in use")?;
    ensure!(
        run.stderr
            .contains(&format!("cannot listen on {address}: ")),
        "the failure does not say `cannot listen on {address}: REASON`: {}",
        excerpt(&run.stderr)
    );
    let host = own_host(
        target,
        None,
        &format!("[telemetry]\nmetrics_listen = \"{address}\"\n"),
        false,
    )?;
    let run = run_bounded(
        &host,
        &["serve", "--listen", "127.0.0.1:0"],
        Duration::from_secs(10),
    )?
    .ok_or_else(|| Failure::Failed("serve with a metrics address in use kept running".into()))?;
    run.expect(1, "serve with telemetry.metrics_listen in use")?;
    ensure!(
        run.stderr.contains("telemetry.metrics_listen") && run.stderr.contains(&address),
        "the failure does not name telemetry.metrics_listen and {address}: {}",
        excerpt(&run.stderr)
    );
    drop(taken);
    Ok(())
}

fn problem_codes(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(
            APPROVALS
                .replace(
                    "@id(\"link-anything\")",
                    &format!("@id(\"local\")\n{OPEN}@id(\"link-anything\")"),
                )
                .as_str(),
        ),
        &format!(
            "[server]\nmax_body_bytes = 4096\nper_principal = 1\n{SPIN_LIMITS}\n[[quotas.rules]]\nprincipal = \"user:local\"\ncapability = \"textstats\"\ninvocations = 1\nper_ms = 3600000\n"
        ),
        true,
    )?;
    let token = Some(own.server.token.as_str());
    let json_type = [("content-type", "application/json")];
    let post = |body: &str, token: Option<&str>| {
        send(
            &own.server,
            reqwest::Method::POST,
            "/v1/invoke",
            token,
            Some(body),
            &json_type,
        )
    };
    problem(&post("{", token)?, 400, "bad-arguments", "malformed JSON")?;
    problem(
        &post(&greet().to_string(), None)?,
        401,
        "unauthenticated",
        "no token",
    )?;
    let nobody = own.token("agent:nobody", "nobody")?;
    problem(
        &post(&greet().to_string(), Some(&nobody))?,
        403,
        "denied",
        "a call no policy permits",
    )?;
    problem(
        &post(
            r#"{"capability":"no-such-capability","function":"f"}"#,
            token,
        )?,
        404,
        "unknown",
        "an unknown capability",
    )?;
    problem(
        &post(&greet_of(&"x".repeat(8000)).to_string(), token)?,
        413,
        "too-large",
        "a body over max_body_bytes",
    )?;
    receipt(&own.server, &echo_of("warm"))?;
    problem(
        &invoke(&own.server, &spin(Some(200)))?,
        422,
        "deadline",
        "a call past its deadline",
    )?;
    let running = in_thread(&own.server, spin(Some(1200)));
    std::thread::sleep(Duration::from_millis(300));
    problem(
        &invoke(&own.server, &greet())?,
        429,
        "busy",
        "beyond server.per_principal",
    )?;
    let _ = joined(running)?;
    let stats = json!({ "capability": "textstats", "function": "analyze", "args": { "text": "a b", "top": 1 } });
    receipt(&own.server, &stats)?;
    problem(
        &invoke(&own.server, &stats)?,
        429,
        "over-quota",
        "beyond a quota",
    )?;
    let bot = own.as_principal("agent:bot", "bot")?;
    problem(
        &invoke(&bot, &greet())?,
        202,
        "approval-pending",
        "an approval-required call",
    )?;
    Ok(())
}

fn hostile_requests_leave_ledger_verifying(target: &Target) -> Result<(), Failure> {
    let own = own(
        target,
        Some(OPEN),
        &format!("[server]\nmax_body_bytes = 4096\nper_principal = 1\n{SPIN_LIMITS}"),
        true,
    )?;
    let token = Some(own.server.token.as_str());
    let json_type = [("content-type", "application/json")];
    for body in [
        "{",
        "null",
        "[]",
        r#"{"capability":"conformance","function":"add","args":{"a":"x","b":1}}"#,
        r#"{"capability":"conformance","function":"add","args":{"a":1,"b":2},"extra":1}"#,
        r#"{"capability":"conformance","function":"divide","args":{"a":1,"b":0}}"#,
        r#"{"capability":"conformance","function":"spin","args":{},"fuel":1000}"#,
        r#"{"capability":"conformance","function":"echo","args":{"text":"\u0000\ud800"}}"#,
    ] {
        let _ = send(
            &own.server,
            reqwest::Method::POST,
            "/v1/invoke",
            token,
            Some(body),
            &json_type,
        )?;
    }
    let _ = send(
        &own.server,
        reqwest::Method::POST,
        "/v1/invoke",
        token,
        Some(&"x".repeat(10_000)),
        &json_type,
    )?;
    let _ = send(
        &own.server,
        reqwest::Method::POST,
        "/v1/invoke",
        Some("fct_forged"),
        Some("{}"),
        &json_type,
    )?;
    let running = in_thread(&own.server, spin(Some(800)));
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let _ = invoke(&own.server, &echo_of("busy"))?;
    }
    let _ = joined(running)?;
    for query in ["from=0", "from=x", "from=99999", ""] {
        let _ = own.server.get(&format!("/v1/ledger/consistency?{query}"))?;
    }
    let _ = own.server.get("/v1/ledger/proof/99999999")?;
    let _ = own.server.get("/v1/ledger/entries?from=-1&limit=x")?;
    let _ = raw(
        &own.server,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999\r\n\r\n",
        b"{",
        Duration::from_secs(3),
    )?;
    receipt(&own.server, &echo_of("still serving"))?;
    let run = own.host()?.run(&["log", "verify"])?;
    run.expect(0, "log verify of the ledger after hostile requests")?;
    Ok(())
}
