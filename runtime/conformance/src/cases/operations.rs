//! Cases of operations: the telemetry a collector receives (specification 26, over a real
//! OTLP/HTTP receiver of the suite's own whose protobuf the suite decodes itself), the
//! operator's admin channel and log output (specification 39), what is kept apart per principal
//! (specification 56), recovery from a killed writer (specification 57) and the server's
//! admission and metrics (specification 58).
//!
//! Every case here starts servers of its own from the binary, with a configuration and policy
//! of its own; none applies to a server given by `--url`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::server::{client, greet_of, invoke, problem, send, with_token};
use super::{OPEN, hex};
use crate::target::{Host, Response, Server, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "http.telemetry.spans-in-the-callers-trace",
        verifies: &[
            "FC-OBS-2604",
            "FC-OBS-2605",
            "FC-OBS-2607",
            "FC-OBS-2612",
            "FC-OBS-2619",
            "FC-PROTO-0829",
            "FC-PROTO-0922",
        ],
        run: spans_in_the_callers_trace,
    },
    Case {
        name: "http.telemetry.endpoint-resolution",
        verifies: &["FC-OBS-2602"],
        run: endpoint_resolution,
    },
    Case {
        name: "http.telemetry.off-without-endpoint",
        verifies: &["FC-OBS-2601"],
        run: off_without_endpoint,
    },
    Case {
        name: "http.telemetry.receiver-down-or-hanging",
        verifies: &["FC-OBS-2620", "FC-OBS-2621"],
        run: receiver_down_or_hanging,
    },
    Case {
        name: "cli.telemetry.mcp-stdio-exports-before-exit",
        verifies: &["FC-OBS-2611"],
        run: mcp_stdio_exports_before_exit,
    },
    Case {
        name: "http.telemetry.lossy-not-blocking",
        verifies: &["FC-OBS-2622"],
        run: lossy_not_blocking,
    },
    Case {
        name: "http.telemetry.otlp-http-and-grpc",
        verifies: &["FC-OBS-2603", "FC-OBS-2623"],
        run: otlp_http_and_grpc,
    },
    Case {
        name: "http.tenancy.grants-per-principal-kind-and-groups",
        verifies: &["FC-SEC-5602"],
        run: grants_per_principal,
    },
    Case {
        name: "http.tenancy.quotas-and-running-per-principal",
        verifies: &["FC-SEC-5603", "FC-SEC-5604"],
        run: quotas_and_running_per_principal,
    },
    Case {
        name: "http.tenancy.approvals-and-lists-per-principal",
        verifies: &["FC-SEC-5605", "FC-SEC-5607"],
        run: approvals_and_lists_per_principal,
    },
    Case {
        name: "http.recovery.killed-during-concurrent-appends",
        verifies: &["FC-OPS-5703", "FC-OPS-5714", "FC-PERF-5808"],
        run: killed_during_concurrent_appends,
    },
    Case {
        name: "http.ledger.concurrent-appends-share-commits",
        verifies: &["FC-PERF-5806"],
        run: concurrent_appends_share_commits,
    },
    Case {
        name: "cli.ops.stale-admin-socket",
        verifies: &["FC-OPS-3902"],
        run: stale_admin_socket,
    },
    Case {
        name: "http.ops.admin-requests-refused",
        verifies: &["FC-OPS-3917"],
        run: admin_refusals,
    },
    Case {
        name: "http.ops.admin-channel-owner-only",
        verifies: &["FC-OPS-3911", "FC-PROTO-0827"],
        run: admin_channel_owner_only,
    },
    Case {
        name: "http.ops.log-events",
        verifies: &["FC-OPS-3916"],
        run: log_events,
    },
    Case {
        name: "cli.ops.logs-on-stderr",
        verifies: &["FC-OPS-3915"],
        run: logs_on_stderr,
    },
    Case {
        name: "http.ops.policy-change-while-serving",
        verifies: &["FC-OPS-3907"],
        run: policy_change_while_serving,
    },
    Case {
        name: "http.ops.same-answer-through-the-server",
        verifies: &["FC-OPS-3901"],
        run: same_answer_through_the_server,
    },
    Case {
        name: "http.ops.admin-invoke-takes-its-turn",
        verifies: &["FC-OPS-3909"],
        run: admin_invoke_takes_its_turn,
    },
    Case {
        name: "http.metrics.queue-depth-and-commits",
        verifies: &["FC-PERF-5814"],
        run: queue_and_commit_metrics,
    },
    Case {
        name: "mcp.recorded-like-the-api",
        verifies: &["FC-PROTO-0923"],
        run: mcp_recorded_like_the_api,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers (the few the other area modules keep private, copied)

/// A successful invocation's answer.
fn answered(server: &Server, body: &Json, headers: &[(&str, &str)]) -> Result<Json, Failure> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let response = send(
        server,
        reqwest::Method::POST,
        "/v1/invoke",
        Some(&server.token),
        Some(&body.to_string()),
        &all,
    )?;
    response.expect(200, &format!("POST /v1/invoke {body}"))?;
    response.json()
}

fn receipt(server: &Server, body: &Json) -> Result<Json, Failure> {
    Ok(answered(server, body, &[])?["receipt"].clone())
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

/// The invocation start of invocation `number` among `entries`.
fn start_of(entries: &[Json], number: u64) -> Result<Json, Failure> {
    entries
        .iter()
        .map(|e| e["entry"].clone())
        .find(|e| e["type"] == "invocation-start" && e["invocation"] == json!(number))
        .ok_or_else(|| Failure::Failed(format!("the ledger holds no start of invocation {number}")))
}

/// A server the case started from the binary on a data directory it configured.
struct Own {
    server: Server,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Own {
    fn host(&self) -> Result<&Host, Failure> {
        self.server
            .host
            .as_ref()
            .ok_or_else(|| Failure::Failed("the server's data directory is gone".into()))
    }

    fn token(&self, principal: &str, name: &str, groups: &[&str]) -> Result<String, Failure> {
        let mut args = vec!["token", "create", "--principal", principal, "--name", name];
        for group in groups {
            args.extend_from_slice(&["--group", group]);
        }
        Ok(self.host()?.ok(&args)?.trim().to_owned())
    }

    fn as_principal(
        &self,
        principal: &str,
        name: &str,
        groups: &[&str],
    ) -> Result<Server, Failure> {
        with_token(&self.server, &self.token(principal, name, groups)?)
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

    /// Sends SIGTERM.
    fn terminate(&self) -> Result<(), Failure> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| Failure::Failed(format!("cannot send SIGTERM: {e}")))?;
        Ok(())
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Kills the server; its data directory.
    fn kill(mut self) -> Result<Host, Failure> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.server
            .host
            .take()
            .ok_or_else(|| Failure::Failed("the server's data directory is gone".into()))
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

/// A fresh data directory with `policy`, the suite's guest when `guest`, and `config` as its
/// `femtoclaw.toml`.
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

fn fresh_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("operations-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The OpenTelemetry variables a case sets itself: removed from what the suite inherited.
const OTEL_VARIABLES: [&str; 8] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_METRIC_EXPORT_INTERVAL",
];

/// `command` with the inherited OpenTelemetry variables removed and `env` set.
fn with_env(mut command: std::process::Command, env: &[(&str, &str)]) -> std::process::Command {
    for name in OTEL_VARIABLES {
        command.env_remove(name);
    }
    command.env_remove("FEMTOCLAW_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Starts `serve --listen 127.0.0.1:0` on `host` with `env`, with a token of `user:local`.
fn start(host: Host, env: &[(&str, &str)]) -> Result<Own, Failure> {
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
    let mut child = with_env(host.command(&["serve", "--listen", "127.0.0.1:0"]), env)
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
        std::thread::sleep(Duration::from_millis(50));
        return Err(Failure::Failed(format!(
            "serve must first print `listening on URL`; it printed {:?}, stderr {}",
            line.trim(),
            excerpt(&stderr.lock().map(|s| s.clone()).unwrap_or_default())
        )));
    };
    let _stdout = drain(reader);
    let mut server = client(&url, &token)?;
    server.host = Some(host);
    Ok(Own {
        server,
        child,
        stderr,
    })
}

/// Runs `args` on `host` with `env`, killing it after `within`: the run, or `None`.
fn run_bounded(
    host: &Host,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> Result<Option<crate::target::Run>, Failure> {
    let mut child = with_env(host.command(args), env)
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

/// One MCP JSON-RPC exchange over streamable HTTP at version 2025-11-25, with extra headers.
fn mcp(
    server: &Server,
    session: Option<&str>,
    headers: &[(&str, &str)],
    message: &Json,
) -> Result<Response, Failure> {
    let mut all: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-11-25"),
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

fn initialize_message() -> Json {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
        }
    })
}

/// An initialized MCP session's id.
fn mcp_session(server: &Server) -> Result<String, Failure> {
    let response = mcp(server, None, &[], &initialize_message())?;
    response.expect(200, "MCP initialize")?;
    let session = response.header("mcp-session-id").to_owned();
    ensure!(!session.is_empty(), "initialize answered no Mcp-Session-Id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    mcp(server, Some(&session), &[], &initialized)?.expect(202, "notifications/initialized")?;
    Ok(session)
}

/// `tools/call` of `name` on a session, with `meta` as its `_meta` (when not null) and extra
/// headers: the JSON-RPC answer.
fn mcp_call(
    server: &Server,
    session: &str,
    id: u64,
    name: &str,
    arguments: &Json,
    meta: &Json,
    headers: &[(&str, &str)],
) -> Result<Json, Failure> {
    let mut params = json!({ "name": name, "arguments": arguments });
    if !meta.is_null() {
        params["_meta"] = meta.clone();
    }
    let call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params });
    let response = mcp(server, Some(session), headers, &call)?;
    response.expect(200, &format!("MCP tools/call {name}"))?;
    response.json()
}

/// The invocation number of an MCP call's receipt.
fn mcp_invocation(answer: &Json) -> Result<u64, Failure> {
    answer["result"]["_meta"]["femtoclaw/receipt"]["invocation"]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("the MCP call answered no receipt: {answer}")))
}

/// Polls `check` every 100 ms for at most `within`; whether it held.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check() {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol Buffers, decoded by the suite itself (the OTLP messages of opentelemetry-proto)

/// One field's value on the wire.
#[derive(Clone, Debug)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

/// A decoded message: its fields in order.
#[derive(Clone, Debug, Default)]
struct Message(Vec<(u64, Wire)>);

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl Message {
    fn decode(bytes: &[u8]) -> Option<Message> {
        let mut fields = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let key = varint(bytes, &mut at)?;
            let (number, kind) = (key >> 3, key & 7);
            let value = match kind {
                0 => Wire::Varint(varint(bytes, &mut at)?),
                1 => {
                    let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
                    at += 8;
                    Wire::Fixed64(u64::from_le_bytes(raw))
                }
                2 => {
                    let length = usize::try_from(varint(bytes, &mut at)?).ok()?;
                    let raw = bytes.get(at..at.checked_add(length)?)?.to_vec();
                    at += length;
                    Wire::Bytes(raw)
                }
                5 => {
                    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
                    at += 4;
                    Wire::Fixed32(u32::from_le_bytes(raw))
                }
                _ => return None,
            };
            fields.push((number, value));
        }
        Some(Message(fields))
    }

    fn all_bytes(&self, number: u64) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| *n == number)
            .filter_map(|(_, v)| match v {
                Wire::Bytes(b) => Some(b.as_slice()),
                _ => None,
            })
            .collect()
    }

    fn bytes(&self, number: u64) -> Vec<u8> {
        self.all_bytes(number)
            .last()
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    fn string(&self, number: u64) -> String {
        String::from_utf8_lossy(&self.bytes(number)).into_owned()
    }

    fn messages(&self, number: u64) -> Vec<Message> {
        self.all_bytes(number)
            .into_iter()
            .filter_map(Message::decode)
            .collect()
    }

    fn message(&self, number: u64) -> Message {
        self.messages(number).pop().unwrap_or_default()
    }

    fn number(&self, number: u64) -> Option<u64> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .and_then(|(_, v)| match v {
                Wire::Varint(x) | Wire::Fixed64(x) => Some(*x),
                Wire::Fixed32(x) => Some(u64::from(*x)),
                Wire::Bytes(_) => None,
            })
    }
}

/// An OTLP `AnyValue`.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Any {
    Text(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Other,
}

/// `KeyValue`s (key 1, `AnyValue` 2: string 1, bool 2, int 3, double 4).
fn attributes(messages: &[Message]) -> Vec<(String, Any)> {
    messages
        .iter()
        .map(|kv| {
            let value = kv.message(2);
            let any = match value.0.last() {
                Some((1, Wire::Bytes(b))) => Any::Text(String::from_utf8_lossy(b).into_owned()),
                Some((2, Wire::Varint(b))) => Any::Bool(*b != 0),
                #[allow(clippy::cast_possible_wrap)]
                Some((3, Wire::Varint(i))) => Any::Int(*i as i64),
                Some((4, Wire::Fixed64(d))) => Any::Double(f64::from_bits(*d)),
                _ => Any::Other,
            };
            (kv.string(1), any)
        })
        .collect()
}

/// One exported span, with the resource it came with.
#[derive(Clone, Debug)]
pub(super) struct Span {
    trace: String,
    id: String,
    parent: String,
    pub(super) name: String,
    kind: u64,
    attributes: Vec<(String, Any)>,
    /// `Status.code`: 2 is `ERROR`.
    status: u64,
    resource: Vec<(String, Any)>,
}

impl Span {
    pub(super) fn attribute(&self, key: &str) -> Option<&Any> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub(super) fn text(&self, key: &str) -> Option<&str> {
        match self.attribute(key) {
            Some(Any::Text(s)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn int(&self, key: &str) -> Option<i64> {
        match self.attribute(key) {
            Some(Any::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// Whether the span is marked as an error (`otel.status_code = error`).
    fn error(&self) -> bool {
        self.status == 2 || self.text("otel.status_code") == Some("error")
    }
}

/// The spans of an `ExportTraceServiceRequest` (resource_spans 1: resource 1 (attributes 1),
/// scope_spans 2: spans 2), or `None` when it is not one.
fn decode_spans(body: &[u8]) -> Option<Vec<Span>> {
    let request = Message::decode(body)?;
    let mut spans = Vec::new();
    for resource_spans in request.messages(1) {
        let resource = attributes(&resource_spans.message(1).messages(1));
        for scope in resource_spans.messages(2) {
            for span in scope.messages(2) {
                spans.push(Span {
                    trace: hex(&span.bytes(1)),
                    id: hex(&span.bytes(2)),
                    parent: hex(&span.bytes(4)),
                    name: span.string(5),
                    kind: span.number(6).unwrap_or(0),
                    attributes: attributes(&span.messages(9)),
                    status: span.message(15).number(3).unwrap_or(0),
                    resource: resource.clone(),
                });
            }
        }
    }
    Some(spans)
}

/// The metric names of an `ExportMetricsServiceRequest` (resource_metrics 1: scope_metrics 2:
/// metrics 2: name 1).
fn decode_metric_names(body: &[u8]) -> Option<Vec<String>> {
    let request = Message::decode(body)?;
    let mut names = Vec::new();
    for resource in request.messages(1) {
        for scope in resource.messages(2) {
            for metric in scope.messages(2) {
                names.push(metric.string(1));
            }
        }
    }
    Some(names)
}

// ---------------------------------------------------------------------------------------------
// An OTLP/HTTP receiver on loopback

/// What a receiver was sent: one request.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// How a receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// At once, 200 with an empty protobuf body.
    Promptly,
    /// Never: it reads the request and holds the connection open.
    Never,
    /// OTLP over gRPC: plaintext HTTP/2 with prior knowledge, every export answered OK.
    Grpc,
    /// The first request held like [`Answer::Never`], every later one answered at once.
    HoldFirst,
}

/// Held export requests: when each came, and when the exporter gave up on it.
type Held = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

/// A loopback OTLP/HTTP receiver: every request it was sent, and for held connections when
/// they came and when the exporter gave up on them.
pub(super) struct Receiver {
    pub(super) url: String,
    requests: Arc<Mutex<Vec<Received>>>,
    held: Held,
    connections: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub(super) fn start(answer: Answer) -> Result<Receiver, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Failure::Failed(format!("cannot bind a loopback receiver: {e}")))?;
        Self::on(listener, answer)
    }

    fn on(listener: TcpListener, answer: Answer) -> Result<Receiver, Failure> {
        let address = listener
            .local_addr()
            .map_err(|e| Failure::Failed(format!("{e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Failure::Failed(format!("{e}")))?;
        let receiver = Receiver {
            url: format!("http://{address}"),
            requests: Arc::default(),
            held: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let (requests, held, connections, stop) = (
            Arc::clone(&receiver.requests),
            Arc::clone(&receiver.held),
            Arc::clone(&receiver.connections),
            Arc::clone(&receiver.stop),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Ok(mut n) = connections.lock() {
                            *n += 1;
                        }
                        let (requests, held, stop) =
                            (Arc::clone(&requests), Arc::clone(&held), Arc::clone(&stop));
                        std::thread::spawn(move || {
                            serve_otlp(stream, answer, &requests, &held, &stop)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(receiver)
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn connections(&self) -> usize {
        self.connections.lock().map(|n| *n).unwrap_or(0)
    }

    /// Every span it was sent to `path`.
    pub(super) fn spans(&self, path: &str) -> Vec<Span> {
        self.requests()
            .iter()
            .filter(|r| r.path == path)
            .filter_map(|r| decode_spans(&r.body))
            .flatten()
            .collect()
    }

    /// The paths it was sent requests to, with their methods.
    fn paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one connection: HTTP/1.1 requests with a `Content-Length` or chunked body.
fn serve_otlp(
    mut stream: TcpStream,
    answer: Answer,
    requests: &Mutex<Vec<Received>>,
    held: &Mutex<Vec<(Instant, Option<Instant>)>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if answer == Answer::Grpc {
        serve_grpc(stream, requests, stop);
        return;
    }
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    let started = Instant::now();
    // Reads until `done(buffer)` says how much a complete request is, or the peer closes.
    let mut fill = |buffer: &mut Vec<u8>, stream: &mut TcpStream| -> bool {
        match stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
            }
            Err(_) => false,
        }
    };
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if !fill(&mut buffer, &mut stream) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.lines();
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_owned();
        let path = request_line.next().unwrap_or("").to_owned();
        let mut length = 0usize;
        let mut chunked = false;
        let mut content_type = String::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "content-type" => value.clone_into(&mut content_type),
                _ => {}
            }
        }
        buffer.drain(..head_end + 4);
        let body = if method == "PRI" {
            // An HTTP/2 connection preface: gRPC, which this receiver does not speak.
            if let Ok(mut r) = requests.lock() {
                r.push(Received {
                    method,
                    path,
                    content_type,
                    body: Vec::new(),
                });
            }
            return;
        } else if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    if !fill(&mut buffer, &mut stream) {
                        return;
                    }
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&buffer[..line_end])
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                buffer.drain(..line_end + 2);
                while buffer.len() < size + 2 {
                    if !fill(&mut buffer, &mut stream) {
                        return;
                    }
                }
                body.extend_from_slice(&buffer[..size]);
                buffer.drain(..size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            while buffer.len() < length {
                if !fill(&mut buffer, &mut stream) {
                    return;
                }
            }
            buffer.drain(..length).collect()
        };
        if let Ok(mut r) = requests.lock() {
            r.push(Received {
                method,
                path,
                content_type,
                body,
            });
        }
        let hold = match answer {
            Answer::Never => true,
            Answer::HoldFirst => held.lock().is_ok_and(|h| h.is_empty()),
            _ => false,
        };
        if hold {
            let came = Instant::now();
            let slot = held.lock().map(|mut h| {
                h.push((came, None));
                h.len() - 1
            });
            // Held until the exporter gives up (closes) or the receiver stops.
            let mut byte = [0u8; 1];
            loop {
                match stream.read(&mut byte) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if stop.load(Ordering::Relaxed) || came.elapsed() > Duration::from_secs(60)
                        {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            if let (Ok(slot), Ok(mut h)) = (slot, held.lock())
                && let Some(entry) = h.get_mut(slot)
            {
                entry.1 = Some(Instant::now());
            }
            return;
        }
        let reply =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(reply).is_err() {
            return;
        }
    }
}

/// Serves one HTTP/2 connection of an OTLP gRPC exporter: every unary call's message is
/// recorded (as `GRPC traces` or `GRPC metrics`, by what it decodes as) and answered with an
/// empty export response and `grpc-status: 0`.
fn serve_grpc(mut stream: TcpStream, requests: &Mutex<Vec<Received>>, stop: &AtomicBool) {
    let started = Instant::now();
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut fill = |buffer: &mut Vec<u8>, stream: &mut TcpStream, want: usize| -> bool {
        while buffer.len() < want {
            match stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120)
                    {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    let frame = |kind: u8, flags: u8, stream_id: u32, payload: &[u8]| -> Vec<u8> {
        let length = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
        let mut out = vec![length[1], length[2], length[3], kind, flags];
        out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    };
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if !fill(&mut buffer, &mut stream, PREFACE.len()) || &buffer[..PREFACE.len()] != PREFACE {
        return;
    }
    buffer.drain(..PREFACE.len());
    if stream.write_all(&frame(4, 0, 0, &[])).is_err() {
        return;
    }
    let mut bodies: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    loop {
        if !fill(&mut buffer, &mut stream, 9) {
            return;
        }
        let length =
            (usize::from(buffer[0]) << 16) | (usize::from(buffer[1]) << 8) | usize::from(buffer[2]);
        let (kind, flags) = (buffer[3], buffer[4]);
        let id = u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & 0x7fff_ffff;
        if !fill(&mut buffer, &mut stream, 9 + length) {
            return;
        }
        let mut payload: Vec<u8> = buffer[9..9 + length].to_vec();
        buffer.drain(..9 + length);
        let mut reply = Vec::new();
        let mut ended = false;
        match kind {
            // DATA (padded: a pad length first, padding last).
            0 => {
                if flags & 0x8 != 0 && !payload.is_empty() {
                    let pad = usize::from(payload[0]);
                    payload = payload[1..payload.len().saturating_sub(pad)].to_vec();
                }
                let n = u32::try_from(payload.len()).unwrap_or(0);
                bodies.entry(id).or_default().extend_from_slice(&payload);
                if n > 0 {
                    reply.extend(frame(8, 0, 0, &n.to_be_bytes()));
                    reply.extend(frame(8, 0, id, &n.to_be_bytes()));
                }
                ended = flags & 0x1 != 0;
            }
            // HEADERS: a call begins (or ends without data).
            1 => {
                bodies.entry(id).or_default();
                ended = flags & 0x1 != 0;
            }
            // SETTINGS: acknowledged.
            4 if flags & 0x1 == 0 => reply.extend(frame(4, 1, 0, &[])),
            // PING: answered.
            6 if flags & 0x1 == 0 => reply.extend(frame(6, 1, 0, &payload)),
            // GOAWAY.
            7 => return,
            _ => {}
        }
        if ended {
            let body = bodies.remove(&id).unwrap_or_default();
            // A gRPC message: compressed flag, length, the protobuf.
            let message = if body.len() >= 5 && body[0] == 0 {
                body[5..].to_vec()
            } else {
                body.clone()
            };
            let spans = decode_spans(&message).is_some_and(|s| {
                !s.is_empty() && s.iter().all(|s| s.trace.len() == 32 && s.id.len() == 16)
            });
            if let Ok(mut r) = requests.lock() {
                r.push(Received {
                    method: "GRPC".into(),
                    path: if spans { "traces" } else { "metrics" }.into(),
                    content_type: if body.first() == Some(&0) {
                        "application/grpc"
                    } else {
                        ""
                    }
                    .into(),
                    body: message,
                });
            }
            // :status 200 (static 8), content-type application/grpc (name: static 31).
            let mut headers = vec![0x88, 0x0f, 0x10, 16];
            headers.extend_from_slice(b"application/grpc");
            reply.extend(frame(1, 0x4, id, &headers));
            reply.extend(frame(0, 0, id, &[0, 0, 0, 0, 0]));
            let mut trailers = vec![0x00, 11];
            trailers.extend_from_slice(b"grpc-status");
            trailers.extend_from_slice(&[1, b'0']);
            reply.extend(frame(1, 0x5, id, &trailers));
        }
        if !reply.is_empty() && stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// The telemetry section exporting to `endpoint` under the service name the cases check.
pub(super) fn telemetry_config(endpoint: &str) -> String {
    format!(
        "[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"femtoclaw-conformance\"\n"
    )
}

/// Exports every 100 ms (spans) and 300 ms (metrics).
pub(super) const QUICK_EXPORT: [(&str, &str); 2] = [
    ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
];

/// The caller's traces of the telemetry cases: trace id and parent span id.
const TRACE: (&str, &str) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
const MCP_META_TRACE: (&str, &str) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
const MCP_HEADER_TRACE: (&str, &str) = ("6e0c63257de34c926f9efcd03927272e", "e457b5a2e4d86bd1");
const STDIO_TRACE: (&str, &str) = ("5b8efff798038103d269b633813fc60c", "53995c3f42cd8ad8");

fn traceparent((trace, parent): (&str, &str)) -> String {
    format!("00-{trace}-{parent}-01")
}

// ---------------------------------------------------------------------------------------------
// Telemetry

fn spans_in_the_callers_trace(target: &Target) -> Result<(), Failure> {
    let receiver = Receiver::start(Answer::Promptly)?;
    let host = own_host(target, Some(OPEN), &telemetry_config(&receiver.url), true)?;
    let version = host.ok(&["--version"])?;
    let own = start(host, &QUICK_EXPORT)?;
    let server = &own.server;

    // The API: a call with host calls in the caller's trace, a malformed traceparent, a trap.
    let remember = json!({ "capability": "conformance", "function": "remember", "args": { "key": "k", "value": "v" } });
    let traced = answered(server, &remember, &[("traceparent", &traceparent(TRACE))])?;
    let api = traced["receipt"]["invocation"]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("no receipt: {traced}")))?;
    let malformed = format!("{}-extra", traceparent(TRACE));
    let untraced = answered(server, &greet_of("Ada"), &[("traceparent", &malformed)])?;
    let rooted = untraced["receipt"]["invocation"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let trap =
        json!({ "capability": "conformance", "function": "divide", "args": { "a": 1, "b": 0 } });
    let trapped = invoke(server, &trap)?;
    ensure!(
        trapped.status != 200,
        "a division by zero answered 200: {}",
        excerpt(&trapped.text)
    );

    // MCP over streamable HTTP: `_meta.traceparent` over the header, else the header, and a
    // malformed `_meta.traceparent` with no header.
    let session = mcp_session(server)?;
    let header = traceparent(MCP_HEADER_TRACE);
    let by_meta = mcp_invocation(&mcp_call(
        server,
        &session,
        11,
        "hello.greet",
        &json!({ "name": "Grace" }),
        &json!({ "traceparent": traceparent(MCP_META_TRACE) }),
        &[("traceparent", &header)],
    )?)?;
    let by_header = mcp_invocation(&mcp_call(
        server,
        &session,
        12,
        "hello.greet",
        &json!({ "name": "Lin" }),
        &Json::Null,
        &[("traceparent", &header)],
    )?)?;
    let mcp_rooted = mcp_invocation(&mcp_call(
        server,
        &session,
        13,
        "hello.greet",
        &json!({ "name": "Kay" }),
        &json!({ "traceparent": format!("00-{}-{}-01", TRACE.0.to_ascii_uppercase(), TRACE.1) }),
        &[],
    )?)?;

    // An MCP call whose tool fails, and one the protocol refuses.
    mcp_call(
        server,
        &session,
        14,
        "conformance.divide",
        &json!({ "a": 1, "b": 0 }),
        &Json::Null,
        &[],
    )?;
    let _ = mcp(
        server,
        Some(&session),
        &[],
        &json!({ "jsonrpc": "2.0", "id": 15, "method": "tools/call",
                 "params": { "name": "conformance.no-such-function", "arguments": {} } }),
    )?;

    // The ledger: each start holds its caller's trace id, a malformed one none.
    let entries = entries_from(server, 0)?;
    for (number, want, what) in [
        (api, json!(TRACE.0), "the API call with a valid traceparent"),
        (
            rooted,
            Json::Null,
            "the API call with a malformed traceparent",
        ),
        (
            by_meta,
            json!(MCP_META_TRACE.0),
            "the MCP call with _meta.traceparent and a header",
        ),
        (
            by_header,
            json!(MCP_HEADER_TRACE.0),
            "the MCP call with a traceparent header only",
        ),
        (
            mcp_rooted,
            Json::Null,
            "the MCP call with a malformed _meta.traceparent",
        ),
    ] {
        let start = start_of(&entries, number)?;
        ensure!(
            start["trace_id"] == want,
            "{what}: its invocation start records trace_id {} where {want} is required",
            start["trace_id"]
        );
    }

    // The spans, as the receiver decoded them.
    let numbers = [api, rooted, by_meta, by_header, mcp_rooted];
    let invoke_of = |spans: &[Span], number: u64| {
        spans
            .iter()
            .find(|s| {
                s.name == "femtoclaw.invoke"
                    && s.int("femtoclaw.invocation") == i64::try_from(number).ok()
            })
            .cloned()
    };
    let mut spans = Vec::new();
    let complete = eventually(Duration::from_secs(15), || {
        spans = receiver.spans("/v1/traces");
        numbers.iter().all(|&n| invoke_of(&spans, n).is_some())
            && spans.iter().any(|s| s.name == "femtoclaw.host_call")
            && spans
                .iter()
                .filter(|s| s.name == "femtoclaw.ledger.commit")
                .count()
                >= 3
            && spans
                .iter()
                .any(|s| s.name == "femtoclaw.invoke" && s.error())
            && ["conformance.divide", "conformance.no-such-function"]
                .iter()
                .all(|tool| {
                    spans.iter().any(|s| {
                        s.name == "femtoclaw.request" && s.text("gen_ai.tool.name") == Some(tool)
                    })
                })
    });
    ensure!(
        complete,
        "within 15 s the receiver at /v1/traces did not get the invoke spans of invocations {numbers:?}, a host call, an error and three commits; it got {} spans: {:?} (requests {:?})",
        spans.len(),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
        receiver.paths()
    );
    let by_id = |id: &str| spans.iter().find(|s| s.id == id);
    let request_of = |invoke: &Span, what: &str| -> Result<Span, Failure> {
        let request = by_id(&invoke.parent).cloned().ok_or_else(|| {
            Failure::Failed(format!(
                "{what}: the parent {:?} of its femtoclaw.invoke span was not exported",
                invoke.parent
            ))
        })?;
        ensure!(
            request.name == "femtoclaw.request" && request.trace == invoke.trace,
            "{what}: the femtoclaw.invoke span's parent is {} in trace {} where femtoclaw.request in {} is required",
            request.name,
            request.trace,
            invoke.trace
        );
        Ok(request)
    };

    // The API call: invoke ← request ← the caller's span, with the span table's attributes.
    let what = "the API call with a valid traceparent";
    let span = invoke_of(&spans, api).unwrap_or_else(|| spans[0].clone());
    ensure!(
        span.trace == TRACE.0,
        "{what}: its invoke span is in trace {} where the caller's {} is required",
        span.trace,
        TRACE.0
    );
    let budget = traced["fuel"]["budget"].as_i64();
    let consumed = traced["fuel"]["consumed"].as_i64();
    for (key, want) in [
        ("femtoclaw.capability", Any::Text("conformance".into())),
        ("femtoclaw.capability.version", Any::Text("1.0.0".into())),
        ("femtoclaw.function", Any::Text("remember".into())),
        (
            "femtoclaw.principal",
            Any::Text("FemtoClaw::User::\"local\"".into()),
        ),
        ("femtoclaw.outcome", Any::Text("ok".into())),
        (
            "femtoclaw.invocation",
            Any::Int(i64::try_from(api).unwrap_or(-1)),
        ),
        ("femtoclaw.fuel.budget", budget.map_or(Any::Other, Any::Int)),
        (
            "femtoclaw.fuel.consumed",
            consumed.map_or(Any::Other, Any::Int),
        ),
    ] {
        ensure!(
            span.attribute(key) == Some(&want),
            "{what}: femtoclaw.invoke carries {key} = {:?} where {want:?} is required",
            span.attribute(key)
        );
    }
    ensure!(
        !span.error(),
        "{what}: a successful invocation's span is marked an error"
    );
    let request = request_of(&span, what)?;
    ensure!(
        request.parent == TRACE.1,
        "{what}: femtoclaw.request's parent is {:?} where the caller's span {} is required",
        request.parent,
        TRACE.1
    );
    ensure!(
        request.kind == 2,
        "{what}: femtoclaw.request is of kind {} where SERVER (2) is required",
        request.kind
    );
    for (key, want) in [
        ("http.request.method", Any::Text("POST".into())),
        ("http.route", Any::Text("/v1/invoke".into())),
        ("http.response.status_code", Any::Int(200)),
    ] {
        ensure!(
            request.attribute(key) == Some(&want),
            "{what}: femtoclaw.request carries {key} = {:?} where {want:?} is required",
            request.attribute(key)
        );
    }
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "femtoclaw.host_call" && s.parent == span.id)
        .collect();
    ensure!(
        !calls.is_empty(),
        "{what}: a remember made host calls, but no femtoclaw.host_call span is a child of its invoke span"
    );
    for call in &calls {
        ensure!(
            call.trace == span.trace,
            "{what}: a host call span is in trace {} where its invocation's {} is required",
            call.trace,
            span.trace
        );
        ensure!(
            call.text("femtoclaw.host_call.interface").is_some()
                && call.text("femtoclaw.host_call.function").is_some()
                && call
                    .text("femtoclaw.host_call.decision")
                    .is_some_and(|d| ["allow", "deny", "none"].contains(&d))
                && call.int("femtoclaw.host_call.fuel_left").is_some(),
            "{what}: a femtoclaw.host_call lacks its interface, function, decision (allow, deny, none) or integer fuel_left: {:?}",
            call.attributes
        );
    }
    ensure!(
        calls.iter().any(|c| c
            .text("femtoclaw.host_call.interface")
            .is_some_and(|i| i.starts_with("wasi:keyvalue/store"))
            && c.text("femtoclaw.host_call.decision") == Some("allow")
            && c.int("femtoclaw.host_call.fuel_left")
                .is_some_and(|f| f > 0)),
        "{what}: no host call span is the allowed wasi:keyvalue/store write with fuel left: {:?}",
        calls.iter().map(|c| &c.attributes).collect::<Vec<_>>()
    );

    // A trapped invocation: its outcome, an error.
    let failed = spans
        .iter()
        .find(|s| s.name == "femtoclaw.invoke" && s.text("femtoclaw.function") == Some("divide"))
        .ok_or_else(|| Failure::Failed("the trapped divide has no femtoclaw.invoke span".into()))?;
    ensure!(
        failed.text("femtoclaw.outcome") == Some("trapped") && failed.error(),
        "the trapped divide's span carries outcome {:?} and error {} where trapped and an error status are required",
        failed.text("femtoclaw.outcome"),
        failed.error()
    );

    // A malformed traceparent: a new trace, whose request span is a root.
    for (number, what) in [
        (rooted, "the API call with a malformed traceparent"),
        (
            mcp_rooted,
            "the MCP call with a malformed _meta.traceparent",
        ),
    ] {
        let span = invoke_of(&spans, number).unwrap_or_else(|| spans[0].clone());
        ensure!(
            ![TRACE.0, MCP_META_TRACE.0, MCP_HEADER_TRACE.0].contains(&span.trace.as_str())
                && span.trace.len() == 32,
            "{what}: its invoke span is in trace {:?}, not a new trace",
            span.trace
        );
        let start = start_of(&entries, number)?;
        ensure!(
            start["trace_id"].is_null(),
            "{what}: a trace id was recorded"
        );
        let request = request_of(&span, what)?;
        ensure!(
            request.parent.is_empty(),
            "{what}: femtoclaw.request has parent {:?} where a root span is required",
            request.parent
        );
    }

    // MCP: invoke ← the MCP request span ← the caller's span.
    for (number, (trace, parent), what) in [
        (
            by_meta,
            MCP_META_TRACE,
            "the MCP call with _meta.traceparent (and another header)",
        ),
        (
            by_header,
            MCP_HEADER_TRACE,
            "the MCP call with a traceparent header",
        ),
    ] {
        let span = invoke_of(&spans, number).unwrap_or_else(|| spans[0].clone());
        ensure!(
            span.trace == trace,
            "{what}: its invoke span is in trace {} where {trace} is required",
            span.trace
        );
        let start = start_of(&entries, number)?;
        ensure!(
            start["trace_id"] == json!(span.trace),
            "{what}: the start's trace_id {} does not lead back to the span's trace {}",
            start["trace_id"],
            span.trace
        );
        let request = request_of(&span, what)?;
        ensure!(
            request.parent == parent,
            "{what}: the MCP femtoclaw.request's parent is {:?} where the caller's span {parent} is required",
            request.parent
        );
        for (key, want) in [
            ("mcp.method.name", "tools/call"),
            ("gen_ai.tool.name", "hello.greet"),
            ("gen_ai.operation.name", "execute_tool"),
            ("mcp.session.id", session.as_str()),
        ] {
            ensure!(
                request.text(key) == Some(want),
                "{what}: the MCP femtoclaw.request carries {key} = {:?} where {want:?} is required",
                request.text(key)
            );
        }
        ensure!(
            request.attribute("jsonrpc.request.id").is_some(),
            "{what}: the MCP femtoclaw.request carries no jsonrpc.request.id"
        );
    }

    // A failed MCP call's request span names how it failed; a successful one does not.
    for (tool, want) in [
        ("conformance.divide", Some("tool_error")),
        ("conformance.no-such-function", Some("jsonrpc_error")),
        ("hello.greet", None),
    ] {
        for request in spans
            .iter()
            .filter(|s| s.name == "femtoclaw.request" && s.text("gen_ai.tool.name") == Some(tool))
        {
            ensure!(
                request.text("error.type") == want && request.error() == want.is_some(),
                "the MCP request span of {tool} carries error.type {:?} (error status {}) where {want:?} is required",
                request.text("error.type"),
                request.error()
            );
        }
    }

    // The group commits: each a root span of its own, with its entry count, fsync time and
    // tree size, one after another with no commit missing between.
    let mut commits: Vec<(i64, i64)> = Vec::new();
    for commit in spans.iter().filter(|s| s.name == "femtoclaw.ledger.commit") {
        ensure!(
            commit.parent.is_empty(),
            "a femtoclaw.ledger.commit span has a parent ({}): it must be a trace of its own",
            commit.parent
        );
        let entries = commit.int("femtoclaw.ledger.batch.entries");
        let size = commit.int("femtoclaw.ledger.tree_size");
        let fsync = commit.attribute("femtoclaw.ledger.fsync_ms");
        match (entries, size, fsync) {
            (Some(n), Some(size), Some(Any::Int(_) | Any::Double(_))) if n > 0 && size >= n => {
                commits.push((size, n));
            }
            _ => {
                return Err(Failure::Failed(format!(
                    "a femtoclaw.ledger.commit span lacks a positive batch.entries, its tree_size or a numeric fsync_ms: {:?}",
                    commit.attributes
                )));
            }
        }
    }
    commits.sort_unstable();
    for pair in commits.windows(2) {
        let ((before, _), (after, n)) = (pair[0], pair[1]);
        ensure!(
            after - before == n,
            "the commit spans go from tree size {before} to {after} with a batch of {n} entries: a group commit has no span of its own ({commits:?})"
        );
    }
    let size = entries.len() as i64;
    ensure!(
        commits.iter().all(|(s, _)| *s <= size + 20),
        "a commit span's tree size exceeds the ledger's: {commits:?} (ledger {size})"
    );

    // The resource, and only `femtoclaw.` spans.
    let version = version.split_whitespace().last().unwrap_or("").to_owned();
    for span in &spans {
        ensure!(
            span.name.starts_with("femtoclaw."),
            "a span named {:?} was exported: only femtoclaw. spans may be",
            span.name
        );
        let attribute = |key: &str| span.resource.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        ensure!(
            attribute("service.name") == Some(&Any::Text("femtoclaw-conformance".into())),
            "the exported resource's service.name is {:?} where telemetry.service_name's femtoclaw-conformance is required",
            attribute("service.name")
        );
        ensure!(
            attribute("service.version") == Some(&Any::Text(version.clone())),
            "the exported resource's service.version is {:?} where the host's version {version:?} is required",
            attribute("service.version")
        );
    }
    Ok(())
}

fn endpoint_resolution(target: &Target) -> Result<(), Failure> {
    let (a, b, c) = (
        Receiver::start(Answer::Promptly)?,
        Receiver::start(Answer::Promptly)?,
        Receiver::start(Answer::Promptly)?,
    );
    // Each scenario: configuration, variables, and per receiver the requests it must get
    // (method and path) and must not.
    struct Scenario<'a> {
        what: &'a str,
        config: String,
        env: Vec<(&'static str, String)>,
        /// (receiver, path) that must receive an export.
        want: Vec<(&'a Receiver, &'a str)>,
        /// Receivers that must receive nothing.
        none: Vec<&'a Receiver>,
        /// (receiver, path) that must receive nothing.
        never: Vec<(&'a Receiver, &'a str)>,
    }
    let scenarios = [
        Scenario {
            what: "telemetry.otlp_endpoint (with a trailing /) over both variables",
            config: format!(
                "[telemetry]\notlp_endpoint = \"{}/\"\notlp_protocol = \"http/protobuf\"\n",
                a.url
            ),
            env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", b.url.clone()),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    format!("{}/custom/spans", c.url),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "no-such-protocol".into()),
            ],
            want: vec![(&a, "/v1/traces"), (&a, "/v1/metrics")],
            none: vec![&b, &c],
            never: vec![],
        },
        Scenario {
            what: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given over OTEL_EXPORTER_OTLP_ENDPOINT",
            config: String::new(),
            env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/base", b.url)),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    format!("{}/custom/spans", c.url),
                ),
            ],
            want: vec![(&c, "/custom/spans"), (&b, "/base/v1/metrics")],
            none: vec![&a],
            never: vec![(&b, "/base/v1/traces"), (&c, "/custom/spans/v1/metrics")],
        },
        Scenario {
            what: "OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/<signal>, an empty signal variable unset",
            config: "[telemetry]\notlp_endpoint = \"\"\n".into(),
            env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/base/", b.url)),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "  ".into()),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                    "http/protobuf".into(),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ],
            want: vec![(&b, "/base/v1/metrics")],
            none: vec![&a, &c],
            never: vec![(&b, "/base/v1/traces")],
        },
    ];
    for scenario in &scenarios {
        let host = own_host(target, None, &scenario.config, false)?;
        let mut env: Vec<(&str, &str)> = QUICK_EXPORT.to_vec();
        env.extend(scenario.env.iter().map(|(k, v)| (*k, v.as_str())));
        let before: Vec<usize> = [&a, &b, &c].iter().map(|r| r.requests().len()).collect();
        let before_of = |r: &Receiver| {
            [&a, &b, &c]
                .iter()
                .position(|x| std::ptr::eq(*x, r))
                .map_or(0, |i| before[i])
        };
        let own = start(host, &env)?;
        receipt(&own.server, &greet_of("Ada"))?;
        let what = scenario.what;
        let arrived = |r: &Receiver, path: &str| {
            r.requests()
                .iter()
                .any(|q| q.method == "POST" && q.path == path)
        };
        let all = eventually(Duration::from_secs(10), || {
            scenario.want.iter().all(|(r, path)| arrived(r, path))
        });
        ensure!(
            all,
            "{what}: within 10 s the exports {:?} did not all arrive; the receivers got {:?}, {:?} and {:?}",
            scenario
                .want
                .iter()
                .map(|(r, p)| format!("{}{p}", r.url))
                .collect::<Vec<_>>(),
            a.paths(),
            b.paths(),
            c.paths()
        );
        for (r, path) in &scenario.want {
            let request = r
                .requests()
                .into_iter()
                .find(|q| q.path == *path)
                .ok_or_else(|| Failure::Failed(format!("{what}: no request to {path}")))?;
            ensure!(
                request.content_type == "application/x-protobuf",
                "{what}: the export to {path} is of content type {:?} where http/protobuf's application/x-protobuf is required",
                request.content_type
            );
            let decoded = if path.ends_with("metrics") {
                decode_metric_names(&request.body).is_some_and(|n| !n.is_empty())
            } else {
                decode_spans(&request.body).is_some_and(|s| !s.is_empty())
            };
            ensure!(
                decoded,
                "{what}: the export to {path} is not a protobuf export request with data"
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        for (i, r) in [&a, &b, &c].iter().enumerate() {
            if scenario.none.iter().any(|n| std::ptr::eq(*n, *r)) {
                ensure!(
                    r.requests().len() == before[i],
                    "{what}: {} was sent {:?}, which the resolution does not lead to",
                    r.url,
                    &r.paths()[before[i]..]
                );
            }
        }
        for (r, path) in &scenario.never {
            ensure!(
                !r.requests()
                    .iter()
                    .skip(before_of(r))
                    .any(|q| q.path == *path),
                "{what}: an export was posted to {}{path}, where the resolution does not lead",
                r.url
            );
        }
        drop(own);
    }
    // The general protocol `grpc` of the last scenario sent the traces over HTTP/2.
    ensure!(
        b.requests()
            .iter()
            .any(|q| q.method == "PRI" && !q.path.contains("v1")),
        "with OTEL_EXPORTER_OTLP_PROTOCOL = grpc and only the metrics' protocol http/protobuf, the traces were not exported over gRPC to the general endpoint as given: {:?}",
        b.paths()
    );
    ensure!(
        !b.requests().iter().any(|q| q.path == "/base/v1/traces"),
        "with the traces' protocol grpc, traces were posted over HTTP to /base/v1/traces"
    );
    // A protocol variable naming another protocol fails the start.
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc-web"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "udp"),
    ] {
        let host = own_host(target, None, &telemetry_config(&a.url), false)?;
        let run = run_bounded(
            &host,
            &["serve", "--listen", "127.0.0.1:0"],
            &[(variable, value)],
            Duration::from_secs(15),
        )?
        .ok_or_else(|| {
            Failure::Failed(format!(
                "serve with {variable} = {value} kept running: the start must fail"
            ))
        })?;
        run.expect(2, &format!("serve with {variable} = {value}"))?;
        ensure!(
            run.stderr.contains(variable) && run.stderr.contains(value),
            "the refusal of {variable} = {value} does not name the variable and the value: {}",
            excerpt(&run.stderr)
        );
        ensure!(
            !run.stdout.contains("listening on"),
            "serve with {variable} = {value} listened before refusing"
        );
    }
    Ok(())
}

fn off_without_endpoint(target: &Target) -> Result<(), Failure> {
    // The OTLP default ports, on loopback: where an exporter left at its defaults would send.
    let mut guards = Vec::new();
    for address in [
        "127.0.0.1:4318",
        "127.0.0.1:4317",
        "[::1]:4318",
        "[::1]:4317",
    ] {
        match TcpListener::bind(address) {
            Ok(listener) => guards.push(Receiver::on(listener, Answer::Promptly)?),
            Err(e) if address.starts_with('[') => {
                let _ = e;
            }
            Err(e) => {
                return Err(Failure::NotApplicable(format!(
                    "the OTLP default port {address} is taken ({e}): the case cannot watch it"
                )));
            }
        }
    }
    let host = own_host(
        target,
        None,
        "[telemetry]\notlp_endpoint = \"\"\nservice_name = \"femtoclaw-conformance\"\n",
        false,
    )?;
    let own = start(
        host,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ],
    )?;
    for name in ["one", "two", "three"] {
        receipt(&own.server, &greet_of(name))?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let metrics = own.server.get("/metrics")?;
    metrics.expect(200, "GET /metrics with a token")?;
    let series = "femtoclaw_invocations_total{capability=\"hello\",outcome=\"ok\"}";
    let count = metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok());
    ensure!(
        count == Some(3.0),
        "with no endpoint, /metrics shows {series} = {count:?} where 3 is required"
    );
    for receiver in &guards {
        ensure!(
            receiver.connections() == 0,
            "with no endpoint configured (the key and the variables empty), the host connected to the OTLP default {}: {:?}",
            receiver.url,
            receiver.paths()
        );
    }
    Ok(())
}

fn receiver_down_or_hanging(target: &Target) -> Result<(), Failure> {
    let hanging = Receiver::start(Answer::Never)?;
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Failure::Failed(format!("cannot bind: {e}")))?;
        format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| Failure::Failed(format!("{e}")))?
        )
    };
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Failure::Failed(format!("no HTTP client: {e}")))?;
    for (endpoint, what) in [
        (hanging.url.clone(), "a receiver that never answers"),
        (down, "a receiver that refuses connections"),
    ] {
        let host = own_host(target, None, &telemetry_config(&endpoint), false)?;
        let mut own = start(host, &QUICK_EXPORT)?;
        let started = Instant::now();
        let mut n = 0;
        // Invocations while exports are held or refused, for at least 12 s when held (past the
        // 10 s an export request may take).
        while n < 10 || (what.contains("never") && started.elapsed() < Duration::from_secs(12)) {
            let response = quick
                .post(format!("{}/v1/invoke", own.server.url))
                .bearer_auth(&own.server.token)
                .header("traceparent", traceparent(TRACE))
                .header("content-type", "application/json")
                .body(greet_of("Ada").to_string())
                .send()
                .map_err(|e| {
                    Failure::Failed(format!(
                        "with {what}, invocation {n} was not answered within 5 s: {e}"
                    ))
                })?;
            ensure!(
                response.status().as_u16() == 200,
                "with {what}, invocation {n} answered HTTP {}",
                response.status()
            );
            n += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        if what.contains("never") {
            let held = hanging.held.lock().map(|h| h.clone()).unwrap_or_default();
            ensure!(
                !held.is_empty(),
                "the receiver that never answers was sent no export in {:?}",
                started.elapsed()
            );
            let given_up: Vec<Duration> = held
                .iter()
                .filter_map(|(came, closed)| closed.map(|c| c.duration_since(*came)))
                .collect();
            ensure!(
                given_up
                    .iter()
                    .any(|d| *d >= Duration::from_secs(8) && *d <= Duration::from_secs(14)),
                "an export request held by the receiver was not given up after about 10 s (held {:?}, given up after {given_up:?})",
                held.len()
            );
        }
        let signalled = Instant::now();
        own.terminate()?;
        let code = own.wait(Duration::from_secs(20))?;
        let took = signalled.elapsed();
        ensure!(
            code == Some(0),
            "with {what}, serve did not stop on SIGTERM within 20 s (exit {code:?})"
        );
        ensure!(
            took < Duration::from_secs(8),
            "with {what} and no request in flight, serve took {took:?} to stop where at most 3 s of waiting for the last export is allowed"
        );
        let _ = own.stderr();
    }
    Ok(())
}

fn mcp_stdio_exports_before_exit(target: &Target) -> Result<(), Failure> {
    let receiver = Receiver::start(Answer::Promptly)?;
    let host = target.host()?;
    std::fs::write(
        host.data.path().join("femtoclaw.toml"),
        telemetry_config(&receiver.url),
    )
    .map_err(|e| Failure::Failed(format!("cannot write femtoclaw.toml: {e}")))?;
    // Batches only every minute: the spans can only come from the flush before the exit.
    let mut child = with_env(
        host.command(&["mcp"]),
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|e| Failure::Failed(format!("cannot start mcp: {e}")))?;
    let stdout = drain(
        child
            .stdout
            .take()
            .ok_or_else(|| Failure::Failed("no stdout pipe".into()))?,
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .ok_or_else(|| Failure::Failed("no stderr pipe".into()))?,
    );
    let call = json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {
            "name": "hello.greet",
            "arguments": { "name": "Ada" },
            "_meta": { "traceparent": traceparent(STDIO_TRACE) }
        }
    });
    let answer_of = |id: u64| -> Option<Json> {
        stdout.lock().ok().and_then(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Json>(l).ok())
                .find(|m| m["id"] == json!(id))
        })
    };
    let result = (|| -> Result<Json, Failure> {
        let stdin = child
            .stdin
            .as_mut()
            .ok_or_else(|| Failure::Failed("no stdin pipe".into()))?;
        let write = |stdin: &mut std::process::ChildStdin, m: &Json| {
            writeln!(stdin, "{m}")
                .and_then(|()| stdin.flush())
                .map_err(|e| Failure::Failed(format!("cannot write to mcp: {e}")))
        };
        write(stdin, &initialize_message())?;
        ensure!(
            eventually(Duration::from_secs(10), || answer_of(0).is_some()),
            "mcp over stdio did not answer initialize: {}",
            excerpt(&stderr.lock().map(|s| s.clone()).unwrap_or_default())
        );
        write(
            stdin,
            &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        )?;
        write(stdin, &call)?;
        ensure!(
            eventually(Duration::from_secs(10), || answer_of(5).is_some()),
            "mcp over stdio did not answer the tools/call"
        );
        answer_of(5).ok_or_else(|| Failure::Failed("no answer".into()))
    })();
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let number = mcp_invocation(&answer)?;
    ensure!(
        receiver.spans("/v1/traces").is_empty(),
        "spans were exported before the process exited, though batched only every minute"
    );
    drop(child.stdin.take());
    let started = Instant::now();
    let exited = eventually(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    let took = started.elapsed();
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    ensure!(
        exited,
        "mcp over stdio did not exit within 10 s of its stdin closing"
    );
    // What the receiver holds once the process is gone (read in full by its thread).
    std::thread::sleep(Duration::from_millis(300));
    let spans = receiver.spans("/v1/traces");
    let invoke = spans
        .iter()
        .find(|s| {
            s.name == "femtoclaw.invoke"
                && s.int("femtoclaw.invocation") == i64::try_from(number).ok()
        })
        .ok_or_else(|| {
            Failure::Failed(format!(
                "mcp over stdio exited ({took:?} after stdin closed) without exporting the femtoclaw.invoke span of invocation {number}: the receiver got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            ))
        })?;
    ensure!(
        invoke.trace == STDIO_TRACE.0,
        "the stdio call's invoke span is in trace {} where its _meta.traceparent's {} is required",
        invoke.trace,
        STDIO_TRACE.0
    );
    let request = spans
        .iter()
        .find(|s| s.id == invoke.parent)
        .ok_or_else(|| Failure::Failed("the stdio call's request span was not exported".into()))?;
    ensure!(
        request.name == "femtoclaw.request"
            && request.parent == STDIO_TRACE.1
            && request.text("mcp.method.name") == Some("tools/call"),
        "the stdio call's invoke span's parent is {} (parent {:?}, method {:?}) where the tools/call femtoclaw.request, a child of the caller's span {}, is required",
        request.name,
        request.parent,
        request.text("mcp.method.name"),
        STDIO_TRACE.1
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// What is kept apart per principal

/// Invoke for anyone; link the baseline for anyone, everything for the group `ops` and for
/// the user `kim`.
const GRANTS: &str = r#"permit (principal, action == FemtoClaw::Action::"invoke", resource);
permit (principal, action == FemtoClaw::Action::"link", resource) when { resource.baseline };
permit (principal in FemtoClaw::Group::"ops", action == FemtoClaw::Action::"link", resource);
permit (principal == FemtoClaw::User::"kim", action == FemtoClaw::Action::"link", resource);
"#;

fn echo_of(text: &str) -> Json {
    json!({ "capability": "conformance", "function": "echo", "args": { "text": text } })
}

fn grants_per_principal(target: &Target) -> Result<(), Failure> {
    let own = {
        let host = own_host(target, Some(GRANTS), "", true)?;
        start(host, &[])?
    };
    let a_ops = own.as_principal("agent:a", "a-ops", &["ops"])?;
    let a = own.as_principal("agent:a", "a", &[])?;
    let a_other = own.as_principal("agent:a", "a-dev", &["dev"])?;
    let b = own.as_principal("agent:b", "b", &[])?;
    let b_ops = own.as_principal("agent:b", "b-ops", &["ops"])?;
    let kim = own.as_principal("user:kim", "kim", &[])?;
    let agent_kim = own.as_principal("agent:kim", "agent-kim", &[])?;
    let granted = |server: &Server, what: &str| -> Result<(), Failure> {
        let response = invoke(server, &echo_of(what))?;
        response.expect(200, &format!("{what}, whom the policy lets link the guest"))?;
        ensure!(
            response.json()?["result"] == json!(what),
            "{what}: the echo answered {}",
            excerpt(&response.text)
        );
        Ok(())
    };
    let refused = |server: &Server, what: &str| -> Result<(), Failure> {
        let response = invoke(server, &echo_of(what))?;
        let document = problem(
            &response,
            403,
            "denied",
            &format!(
                "{what}, whom the policy does not let link femtoclaw:host/log (a grant made for another must not serve it)"
            ),
        )?;
        ensure!(
            document["detail"]
                .as_str()
                .is_some_and(|d| d.contains("femtoclaw:host/log")),
            "{what}: the refusal does not name the ungranted import femtoclaw:host/log: {document}"
        );
        Ok(())
    };
    // Each principal after another has been granted, twice over, so a cached grant would show.
    for _ in 0..2 {
        granted(&a_ops, "agent:a in ops")?;
        refused(&a, "agent:a in no group")?;
        refused(&a_other, "agent:a in dev")?;
        refused(&b, "agent:b in no group")?;
        granted(&b_ops, "agent:b in ops")?;
        granted(&kim, "user:kim")?;
        refused(&agent_kim, "agent:kim (the same id, another kind)")?;
    }
    // The record names each principal and its groups.
    let entries = entries_from(&own.server, 0)?;
    let starts: Vec<&Json> = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "invocation-start")
        .collect();
    ensure!(
        starts.len() == 14,
        "14 invocations left {} invocation starts",
        starts.len()
    );
    Ok(())
}

/// Quotas for the members of `ops` (one each per hour) and of `pool` (one for all, shared),
/// and one running invocation per principal.
const TENANT_QUOTAS: &str = "[server]\nper_principal = 1\n\n[limits]\nmax_fuel = 1000000000000000\n\n[[quotas.rules]]\nprincipal = \"group:ops\"\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\n\n[[quotas.rules]]\nprincipal = \"group:pool\"\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\nshared = true\n";

/// The principal of the invocation whose start is at `entries[i]`, and whether a limit trap
/// naming `key` follows it within that invocation.
fn refusals_recorded(entries: &[Json], principal: &str, key: &str) -> usize {
    let mut count = 0;
    let mut current: Option<(u64, bool)> = None;
    for entry in entries.iter().map(|e| &e["entry"]) {
        if entry["type"] == "invocation-start" {
            current = entry["invocation"]
                .as_u64()
                .map(|n| (n, entry["principal"].as_str() == Some(principal)));
        }
        if entry["type"] == "trap"
            && entry["kind"] == "limit"
            && entry["message"].as_str().is_some_and(|m| m.contains(key))
            && current.is_some_and(|(n, mine)| mine && entry["invocation"] == json!(n))
        {
            count += 1;
        }
    }
    count
}

fn quotas_and_running_per_principal(target: &Target) -> Result<(), Failure> {
    let own = {
        let host = own_host(
            target,
            Some(
                super::OPEN
                    .replace("principal == FemtoClaw::User::\"local\"", "principal")
                    .as_str(),
            ),
            TENANT_QUOTAS,
            true,
        )?;
        start(host, &[])?
    };
    let member =
        |name: &str, group: &str| own.as_principal(&format!("agent:{name}"), name, &[group]);
    let (a, c) = (member("a", "ops")?, member("c", "ops")?);
    let (d, e) = (member("d", "pool")?, member("e", "pool")?);
    let b = own.as_principal("agent:b", "b", &[])?;
    let over = |server: &Server, what: &str| -> Result<(), Failure> {
        let response = invoke(server, &greet_of(what))?;
        let document = problem(&response, 429, "over-quota", what)?;
        ensure!(
            document["detail"]
                .as_str()
                .is_some_and(|d| d.contains("quotas.rules[")),
            "{what}: the refusal does not name its rule: {document}"
        );
        Ok(())
    };
    // A rule for group:ops gives each member an allowance of its own.
    receipt(&a, &greet_of("a, first"))?;
    over(&a, "agent:a (ops) past its allowance of one")?;
    receipt(&c, &greet_of("c, first"))?;
    over(&c, "agent:c (ops) past its own allowance of one")?;
    // A principal the rules do not cover is served meanwhile.
    for i in 0..3 {
        receipt(&b, &greet_of(&format!("b {i}")))?;
    }
    // A shared rule: one allowance for every member of pool.
    receipt(&d, &greet_of("d, first"))?;
    over(&e, "agent:e (pool) after agent:d used the shared allowance")?;
    // One running invocation per principal: a second is refused, another principal served.
    receipt(&b, &echo_of("warm"))?;
    let (url, token) = (b.url.clone(), b.token.clone());
    let running = std::thread::spawn(move || {
        Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({ "capability": "conformance", "function": "spin", "args": {},
                        "fuel": 1_000_000_000_000_000u64, "deadline_ms": 5000 })
                .to_string(),
            )
            .send()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    });
    // The spin asks first.
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = None;
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(4) && !running.is_finished() {
        let response = invoke(&b, &greet_of("b, while spinning"))?;
        if response.status == 429 {
            refused = Some(response);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(refused) = refused else {
        let spun = running.join();
        return Err(Failure::Failed(format!(
            "agent:b was never refused a second call while its spin ran under server.per_principal = 1 (the spin answered {spun:?} after {:?})",
            asked.elapsed()
        )));
    };
    let document = problem(&refused, 429, "busy", "agent:b's second running invocation")?;
    ensure!(
        document["detail"]
            .as_str()
            .is_some_and(|d| d.contains("server.per_principal")),
        "the refusal does not name server.per_principal: {document}"
    );
    let other = own.as_principal("agent:f", "f", &[])?;
    let response = invoke(&other, &greet_of("f, while b spins"))?;
    response.expect(200, "agent:f while agent:b is at server.per_principal")?;
    let spun = running
        .join()
        .map_err(|_| Failure::Failed("the spinning client panicked".into()))?;
    ensure!(
        spun == Ok(422),
        "agent:b's spin did not end at its deadline (422): {spun:?}"
    );
    // Every refusal recorded, for its principal.
    let entries = entries_from(&own.server, 0)?;
    for (principal, key, want) in [
        ("FemtoClaw::Agent::\"a\"", "quotas.rules[0]", 1),
        ("FemtoClaw::Agent::\"c\"", "quotas.rules[0]", 1),
        ("FemtoClaw::Agent::\"e\"", "quotas.rules[1]", 1),
        ("FemtoClaw::Agent::\"b\"", "server.per_principal", 1),
    ] {
        let seen = refusals_recorded(&entries, principal, key);
        ensure!(
            seen >= want,
            "the refusal of {principal} at {key} is not recorded as a limit trap of its invocation ({seen} found)"
        );
    }
    ensure!(
        refusals_recorded(&entries, "FemtoClaw::Agent::\"b\"", "quotas.rules") == 0
            && refusals_recorded(&entries, "FemtoClaw::Agent::\"d\"", "quotas.rules") == 0,
        "a principal within its allowance was recorded refused at a quota"
    );
    Ok(())
}

/// `agent:bot` greets only with approval; `user:ops` may approve; `agent:echoer` may invoke
/// only `conformance.echo`.
const SEPARATE: &str = r#"@approval("required")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
permit (principal, action == FemtoClaw::Action::"link", resource);
permit (principal == FemtoClaw::User::"ops", action == FemtoClaw::Action::"approve", resource);
permit (principal == FemtoClaw::Agent::"echoer", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"conformance") when { context has function && context.function == "echo" };
permit (principal == FemtoClaw::User::"local", action, resource);
"#;

fn approvals_and_lists_per_principal(target: &Target) -> Result<(), Failure> {
    let own = {
        let host = own_host(target, Some(SEPARATE), "", true)?;
        start(host, &[])?
    };
    let bot = own.as_principal("agent:bot", "bot", &[])?;
    let ops = own.as_principal("user:ops", "ops", &[])?;
    let other = own.as_principal("agent:other", "other", &[])?;
    let echoer = own.as_principal("agent:echoer", "echoer", &[])?;
    let response = invoke(&bot, &greet_of("Ada"))?;
    let document = problem(&response, 202, "approval-pending", "agent:bot's call")?;
    let id = document["approval"]
        .as_u64()
        .ok_or_else(|| Failure::Failed(format!("the 202 names no approval: {document}")))?;
    let listed = |server: &Server| -> Result<Vec<u64>, Failure> {
        let response = server.get("/v1/approvals")?;
        response.expect(200, "GET /v1/approvals")?;
        Ok(response
            .json()?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_u64())
            .collect())
    };
    let path = format!("/v1/approvals/{id}");
    for (server, who, sees) in [
        (&bot, "the asker", true),
        (&ops, "a principal the policy lets approve", true),
        (&other, "another principal", false),
        (&echoer, "a principal that may invoke something else", false),
    ] {
        let list = listed(server)?;
        ensure!(
            list.contains(&id) == sees,
            "{who}: GET /v1/approvals lists {list:?}, which {} approval {id}",
            if sees { "must hold" } else { "must not hold" }
        );
        let response = server.get(&path)?;
        if sees {
            response.expect(200, &format!("{who}: GET {path}"))?;
        } else {
            problem(&response, 404, "unknown", &format!("{who}: GET {path}"))?;
        }
    }
    problem(
        &decide(&bot, id, "grant")?,
        403,
        "denied",
        "agent:bot granting its own call",
    )?;
    problem(
        &decide(&bot, id, "deny")?,
        403,
        "denied",
        "agent:bot denying its own call",
    )?;
    ensure!(
        listed(&ops)?.contains(&id),
        "the approval is gone after the asker's refused decisions"
    );
    decide(&ops, id, "grant")?.expect(200, "user:ops granting agent:bot's call")?;
    receipt(&bot, &greet_of("Ada"))?;

    // Lists: only what the principal may invoke.
    let capabilities = |server: &Server| -> Result<Vec<String>, Failure> {
        let response = server.get("/v1/capabilities")?;
        response.expect(200, "GET /v1/capabilities")?;
        let mut out = Vec::new();
        for capability in response.json()?["capabilities"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for function in capability["functions"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}.{}",
                    capability["name"].as_str().unwrap_or("?"),
                    function["name"].as_str().unwrap_or("?")
                ));
            }
        }
        out.sort();
        Ok(out)
    };
    let tools = |server: &Server| -> Result<Vec<String>, Failure> {
        let session = mcp_session(server)?;
        let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
        let response = mcp(server, Some(&session), &[], &list)?;
        response.expect(200, "MCP tools/list")?;
        let mut out: Vec<String> = response.json()?["result"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    };
    let only_echo = vec!["conformance.echo".to_owned()];
    ensure!(
        capabilities(&echoer)? == only_echo,
        "agent:echoer may invoke conformance.echo only; /v1/capabilities offers {:?}",
        capabilities(&echoer)?
    );
    ensure!(
        tools(&echoer)? == only_echo,
        "agent:echoer may invoke conformance.echo only; tools/list offers {:?}",
        tools(&echoer)?
    );
    ensure!(
        capabilities(&other)?.is_empty() && tools(&other)?.is_empty(),
        "agent:other may invoke nothing; it is offered {:?} and tools {:?}",
        capabilities(&other)?,
        tools(&other)?
    );
    let all = capabilities(&own.server)?;
    ensure!(
        all.contains(&"conformance.spin".to_owned()) && all.contains(&"hello.greet".to_owned()),
        "user:local may invoke everything; /v1/capabilities offers {all:?}"
    );
    Ok(())
}

fn decide(server: &Server, id: u64, decision: &str) -> Result<Response, Failure> {
    server.post(
        &format!("/v1/approvals/{id}"),
        &json!({ "decision": decision, "reason": "conformance" }),
    )
}

// ---------------------------------------------------------------------------------------------
// Recovery from a killed writer

fn killed_during_concurrent_appends(target: &Target) -> Result<(), Failure> {
    let mut host = own_host(target, None, "[server]\nper_principal = 8\n", false)?;
    let mut receipts: Vec<(u64, u64)> = Vec::new();
    // A host (the command line) killed at several moments of an invocation.
    let mut killed = 0;
    for after in [20u64, 80, 200, 400, 800, 1500] {
        let mut child = with_env(
            host.command(&[
                "invoke",
                "hello",
                "greet",
                "--args",
                r#"{"name":"Ada"}"#,
                "--json",
            ]),
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot run invoke: {e}")))?;
        std::thread::sleep(Duration::from_millis(after));
        let ran_out = child.try_wait().ok().flatten().is_some();
        let _ = child.kill();
        let out = child
            .wait_with_output()
            .map_err(|e| Failure::Failed(format!("invoke: {e}")))?;
        if !ran_out {
            killed += 1;
        }
        if out.status.success() {
            let report: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
            let receipt = &report["receipt"];
            if let (Some(n), Some(last)) = (
                receipt["invocation"].as_u64(),
                receipt["indexes"]
                    .as_array()
                    .and_then(|i| i.last())
                    .and_then(Json::as_u64),
            ) {
                receipts.push((n, last));
            }
        }
    }
    ensure!(killed > 0, "no invoke was still running when killed");
    let whole: Json = serde_json::from_str(&host.ok(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--json",
    ])?)
    .map_err(|e| Failure::Failed(format!("invoke --json is not JSON: {e}")))?;
    match (
        whole["receipt"]["invocation"].as_u64(),
        whole["receipt"]["indexes"]
            .as_array()
            .and_then(|i| i.last())
            .and_then(Json::as_u64),
    ) {
        (Some(n), Some(last)) => receipts.push((n, last)),
        _ => {
            return Err(Failure::Failed(format!(
                "invoke --json reports no receipt (invocation, indexes): {whole}"
            )));
        }
    }
    host.run(&["log", "verify"])?.expect(
        0,
        "log verify after killing the command line during invocations",
    )?;
    for (trial, after) in [900u64, 1300, 1700].into_iter().enumerate() {
        let own = start(host, &[])?;
        receipts.push({
            let warm = receipt(&own.server, &greet_of("warm"))?;
            (
                warm["invocation"].as_u64().unwrap_or(u64::MAX),
                warm["entries"][1].as_u64().unwrap_or(u64::MAX),
            )
        });
        let (url, token) = (own.server.url.clone(), own.server.token.clone());
        let threads: Vec<_> = (0..5)
            .map(|t| {
                let (url, token) = (url.clone(), token.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap_or_else(|_| reqwest::blocking::Client::new());
                    for i in 0..10_000 {
                        let answer = client
                            .post(format!("{url}/v1/invoke"))
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(
                                greet_of(&format!("trial {trial} thread {t} call {i}")).to_string(),
                            )
                            .send()
                            .and_then(|r| Ok((r.status().as_u16(), r.text()?)));
                        match answer {
                            Ok((200, text)) => {
                                let body: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                                let receipt = &body["receipt"];
                                if let (Some(n), Some(last)) = (
                                    receipt["invocation"].as_u64(),
                                    receipt["entries"][1].as_u64(),
                                ) {
                                    got.push((n, last));
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(after));
        host = own.kill()?;
        let mut answered = 0;
        for thread in threads {
            let got = thread
                .join()
                .map_err(|_| Failure::Failed("a client thread panicked".into()))?;
            answered += got.len();
            receipts.extend(got);
        }
        ensure!(
            answered > 0,
            "trial {trial}: no concurrent invocation was answered in {after} ms before the kill"
        );
        // The next opening holds every acknowledged invocation, and verifies.
        let run = host.run(&["log", "verify"])?;
        run.expect(0, &format!("log verify after SIGKILL in trial {trial}"))?;
        let entries = host.entries()?;
        let by_index: std::collections::HashMap<u64, &Json> = entries
            .iter()
            .filter_map(|e| e["index"].as_u64().map(|i| (i, &e["entry"])))
            .collect();
        for (number, last) in &receipts {
            let end = by_index.get(last);
            ensure!(
                end.is_some_and(
                    |e| e["type"] == "invocation-end" && e["invocation"] == json!(number)
                ),
                "trial {trial}: acknowledged invocation {number} is not in the ledger after SIGKILL: entry {last} is {:?}",
                end
            );
        }
    }
    let mut numbers: Vec<u64> = receipts.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    let before = numbers.len();
    numbers.dedup();
    ensure!(
        numbers.len() == before,
        "two acknowledged invocations share an invocation number"
    );
    // And it serves on.
    let own = start(host, &[])?;
    receipt(&own.server, &greet_of("after three kills"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The operator's admin channel and log output

/// One request on a server's admin channel (`POST /admin` over `<data dir>/admin.sock`): the
/// status and the body.
fn admin(host: &Host, body: &str) -> Result<(u16, String), Failure> {
    let path = host.data.path().join("admin.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|e| Failure::Failed(format!("cannot connect to {}: {e}", path.display())))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    write!(
        stream,
        "POST /admin HTTP/1.1\r\nHost: femtoclaw-admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| Failure::Failed(format!("cannot write to the admin channel: {e}")))?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            Failure::Failed(format!(
                "the admin channel answered no HTTP status: {}",
                excerpt(&text)
            ))
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn token_names(host: &Host) -> Result<Vec<String>, Failure> {
    let listing = host.ok(&["token", "list", "--json"])?;
    let listing: Json = serde_json::from_str(&listing).map_err(|e| {
        Failure::Failed(format!(
            "token list --json is not JSON ({e}): {}",
            excerpt(&listing)
        ))
    })?;
    Ok(listing
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect())
}

fn stale_admin_socket(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // A socket a killed server left: bound, then nobody accepting on it.
    let path = host.data.path().join("admin.sock");
    drop(
        std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| Failure::Failed(format!("cannot bind {}: {e}", path.display())))?,
    );
    ensure!(path.exists(), "the stale admin socket is not there");
    let token = host.ok(&[
        "token",
        "create",
        "--principal",
        "user:local",
        "--name",
        "made-beside-a-stale-socket",
    ])?;
    ensure!(
        token_names(&host)?.contains(&"made-beside-a-stale-socket".to_owned()),
        "token create beside a stale admin socket did not make the token"
    );
    host.install()?;
    host.policy(OPEN)?;
    let run = host.run(&[
        "invoke",
        "conformance",
        "echo",
        "--args",
        r#"{"text":"here"}"#,
    ])?;
    run.expect(0, "invoke beside a stale admin socket")?;
    ensure!(
        run.stdout.trim() == "\"here\"",
        "invoke beside a stale admin socket printed {:?} where \"here\" is required",
        run.stdout.trim()
    );
    let entries = host.entries()?;
    ensure!(
        entries
            .iter()
            .any(|e| e["entry"]["type"] == "invocation-end"),
        "the invocation performed beside a stale admin socket is not in the ledger"
    );
    // The token made there is one a server then accepts.
    let own = start(host, &[])?;
    with_token(&own.server, token.trim())?
        .get("/v1/capabilities")?
        .expect(
            200,
            "the token made beside a stale admin socket, at a server",
        )?;
    Ok(())
}

fn admin_refusals(target: &Target) -> Result<(), Failure> {
    let host = own_host(target, Some(OPEN), "", false)?;
    let own = start(host, &[])?;
    let host = own.host()?;
    let (status, body) = admin(host, r#"{"op":"token-list"}"#)?;
    ensure!(
        status == 200,
        "a token-list on the admin channel answered {status}: {}",
        excerpt(&body)
    );
    for (what, request) in [
        ("an unknown op", json!({ "op": "token-steal" })),
        (
            "a token-create with an unknown field",
            json!({ "op": "token-create", "name": "intruder", "principal": "user:local", "groups": [], "expires_in": null, "admin": true }),
        ),
        (
            "a token-revoke with an unknown field",
            json!({ "op": "token-revoke", "name": "intruder", "force": true }),
        ),
        ("no op", json!({ "name": "intruder" })),
    ] {
        let (status, body) = admin(host, &request.to_string())?;
        ensure!(
            status == 400 && body.contains("bad-arguments"),
            "{what} on the admin channel answered {status} {} where 400 bad-arguments is required",
            excerpt(&body)
        );
    }
    ensure!(
        !token_names(host)?.contains(&"intruder".to_owned()),
        "a refused admin request was performed: the token intruder exists"
    );
    // The same request without the unknown field is performed.
    let (status, body) = admin(
        host,
        &json!({ "op": "token-create", "name": "intruder", "principal": "agent:x", "groups": [], "expires_in": null }).to_string(),
    )?;
    ensure!(
        status == 200 && token_names(host)?.contains(&"intruder".to_owned()),
        "a valid token-create on the admin channel answered {status} {}",
        excerpt(&body)
    );
    Ok(())
}

/// Whether the suite runs as root (it can then act as another user).
fn root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    tempfile::NamedTempFile::new()
        .ok()
        .and_then(|f| f.as_file().metadata().ok())
        .is_some_and(|m| m.uid() == 0)
}

/// The uid and gid of the other user the admin-channel cases connect as.
const NOBODY: u32 = 65534;

/// The target's command `args` on `host`'s data directory, run as [`NOBODY`]. The binary is
/// reached through a link in a directory of its own that user may enter, since the target's
/// own directory may be closed to it (a home directory); the directory is kept while the
/// command runs.
fn as_nobody(
    host: &Host,
    binary: &std::path::Path,
    args: &[&str],
) -> Result<(tempfile::TempDir, std::process::Command), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().map_err(|e| Failure::Failed(format!("no temp dir: {e}")))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Failure::Failed(format!("cannot chmod {}: {e}", dir.path().display())))?;
    let linked = dir.path().join("femtoclaw-host");
    std::fs::hard_link(binary, &linked)
        .or_else(|_| std::fs::copy(binary, &linked).map(|_| ()))
        .map_err(|e| {
            Failure::Failed(format!(
                "cannot put {} where uid {NOBODY} may run it: {e}",
                binary.display()
            ))
        })?;
    let command = host.command(args);
    let mut linked_command = std::process::Command::new(&linked);
    linked_command.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => linked_command.env(key, value),
            None => linked_command.env_remove(key),
        };
    }
    linked_command
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdin(Stdio::null());
    Ok((dir, linked_command))
}

fn admin_channel_owner_only(target: &Target) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    if !root() {
        drop(target.host()?);
        return Err(Failure::NotApplicable(
            "the suite does not run as root: it cannot connect as another user".into(),
        ));
    }
    let host = own_host(target, Some(OPEN), "", false)?;
    let own = start(host, &[])?;
    let host = own.host()?;
    // Whatever the file's mode: the kernel's peer credentials decide.
    let socket = host.data.path().join("admin.sock");
    let open = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Failure::Failed(format!("cannot chmod {}: {e}", path.display())))
    };
    open(host.data.path(), 0o755)?;
    open(&socket, 0o777)?;
    let binary = match target {
        Target::Binary(binary) => binary.clone(),
        Target::Server { .. } => return Err(Failure::NotApplicable("a server".into())),
    };
    let (_linked, mut command) = as_nobody(
        host,
        &binary,
        &[
            "token",
            "create",
            "--principal",
            "user:local",
            "--name",
            "intruder",
        ],
    )?;
    let run = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            Failure::Failed(format!(
                "cannot run {} as uid {NOBODY}: {e}",
                binary.display()
            ))
        })?;
    ensure!(
        !token_names(host)?.contains(&"intruder".to_owned()),
        "a command of uid 65534 made a token through the server's admin channel (exit {}): {}",
        run.status.code().unwrap_or(-1),
        excerpt(&String::from_utf8_lossy(&run.stdout))
    );
    ensure!(
        run.status.code() != Some(0),
        "token create as uid 65534 exited 0"
    );
    let logged = eventually(Duration::from_secs(3), || {
        own.stderr()
            .contains("admin channel: refused a connection of another user")
    });
    ensure!(
        logged && own.stderr().contains("65534"),
        "the server did not log `admin channel: refused a connection of another user` with uid 65534: {}",
        excerpt(&own.stderr())
    );
    // The owner is still served.
    host.ok(&[
        "token",
        "create",
        "--principal",
        "agent:y",
        "--name",
        "owner",
    ])?;
    ensure!(
        token_names(host)?.contains(&"owner".to_owned()),
        "the socket's owner was not served after the refusal"
    );
    Ok(())
}

fn logs_on_stderr(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    let quiet = run_bounded(&host, &greet, &[], Duration::from_secs(60))?
        .ok_or_else(|| Failure::Failed("invoke did not end".into()))?;
    let loud = run_bounded(
        &host,
        &greet,
        &[("FEMTOCLAW_LOG", "trace")],
        Duration::from_secs(60),
    )?
    .ok_or_else(|| Failure::Failed("invoke did not end".into()))?;
    quiet.expect(0, "invoke")?;
    loud.expect(0, "invoke with FEMTOCLAW_LOG=trace")?;
    ensure!(
        loud.stdout == quiet.stdout,
        "with FEMTOCLAW_LOG=trace stdout is {:?} where the command's output alone, {:?}, is required",
        excerpt(&loud.stdout),
        quiet.stdout
    );
    // serve: an info line at a stop, only when the filter lets it through, and on stderr.
    let line = "stopping: finishing the requests in flight";
    for (env, shown) in [
        (vec![("FEMTOCLAW_LOG", "info")], true),
        (vec![], false),
        (vec![("FEMTOCLAW_LOG", "error")], false),
    ] {
        let host = own_host(target, None, "", false)?;
        let token = host.ok(&["token", "create", "--principal", "user:local"])?;
        let mut child = with_env(host.command(&["serve", "--listen", "127.0.0.1:0"]), &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Failed(format!("cannot start serve: {e}")))?;
        let stdout = drain(
            child
                .stdout
                .take()
                .ok_or_else(|| Failure::Failed("no stdout".into()))?,
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .ok_or_else(|| Failure::Failed("no stderr".into()))?,
        );
        let url = {
            let mut url = String::new();
            eventually(Duration::from_secs(20), || {
                url = stdout
                    .lock()
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .next()
                            .and_then(|l| l.strip_prefix("listening on "))
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                !url.is_empty()
            });
            url
        };
        if url.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::Failed(
                "serve did not print `listening on URL`".into(),
            ));
        }
        receipt(&client(&url, token.trim())?, &greet_of("Ada"))?;
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(|e| Failure::Failed(format!("cannot send SIGTERM: {e}")))?;
        let exited = eventually(Duration::from_secs(15), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(200));
        let (out, err) = (
            stdout.lock().map(|s| s.clone()).unwrap_or_default(),
            stderr.lock().map(|s| s.clone()).unwrap_or_default(),
        );
        ensure!(exited, "serve did not stop on SIGTERM");
        ensure!(
            !out.contains(line),
            "the log line {line:?} went to stdout: {}",
            excerpt(&out)
        );
        ensure!(
            out.lines()
                .all(|l| l.starts_with("listening on ") || l.trim() == "stopped"),
            "serve's stdout holds more than its output (`listening on`, `stopped`): {}",
            excerpt(&out)
        );
        ensure!(
            err.contains(line) == shown,
            "with FEMTOCLAW_LOG {:?}, the info line {line:?} {} on stderr: {}",
            env.first().map(|(_, v)| *v).unwrap_or("unset (warn)"),
            if shown { "is missing" } else { "appears" },
            excerpt(&err)
        );
    }
    // mcp over stdio: with every log line let through, stdout carries the protocol only.
    let host = target.host()?;
    let mut child = with_env(host.command(&["mcp"]), &[("FEMTOCLAW_LOG", "trace")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot start mcp: {e}")))?;
    let stdout = drain(
        child
            .stdout
            .take()
            .ok_or_else(|| Failure::Failed("no stdout".into()))?,
    );
    let _stderr = drain(
        child
            .stderr
            .take()
            .ok_or_else(|| Failure::Failed("no stderr".into()))?,
    );
    if let Some(mut stdin) = child.stdin.take() {
        let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "hello.greet", "arguments": { "name": "Ada" } } });
        let _ = writeln!(
            stdin,
            "{}\n{}\n{call}",
            initialize_message(),
            json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
        );
        let _ = stdin.flush();
        eventually(Duration::from_secs(15), || {
            stdout.lock().is_ok_and(|s| s.contains("\"id\":2"))
        });
    }
    let exited = eventually(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    let out = stdout.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(
        out.contains("\"id\":2"),
        "mcp over stdio did not answer the call: {}",
        excerpt(&out)
    );
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        ensure!(
            serde_json::from_str::<Json>(line).is_ok_and(|m| m["jsonrpc"] == "2.0"),
            "with FEMTOCLAW_LOG=trace, mcp's stdout holds a line that is not a JSON-RPC message: {}",
            excerpt(line)
        );
    }
    Ok(())
}

fn policy_change_while_serving(target: &Target) -> Result<(), Failure> {
    let host = own_host(target, Some(OPEN), "", false)?;
    let own = start(host, &[])?;
    let host = own.host()?;
    let bot = own.as_principal("agent:bot", "bot", &[])?;
    problem(
        &invoke(&bot, &greet_of("bot"))?,
        403,
        "denied",
        "agent:bot before the change",
    )?;
    let file = host.data.path().join("policy").join("conformance.cedar");
    let changed =
        format!("{OPEN}permit (principal == FemtoClaw::Agent::\"bot\", action, resource);\n");
    std::fs::write(&file, &changed)
        .map_err(|e| Failure::Failed(format!("cannot write the policy: {e}")))?;
    let digest = {
        let run = host.run(&["policy", "check", &file.to_string_lossy()])?;
        run.expect(0, "policy check of the changed policy")?;
        let last = run
            .stdout
            .trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .to_owned();
        last.rsplit("digest ").next().unwrap_or("").to_owned()
    };
    ensure!(digest.len() == 64, "policy check printed no digest");
    let answer = invoke(&bot, &greet_of("bot"))?;
    answer.expect(
        200,
        "agent:bot on the next request after the policy permits it (no restart, no signal)",
    )?;
    let entries = entries_from(&own.server, 0)?;
    let changes: Vec<(usize, &Json)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e["entry"]["type"] == "policy-change")
        .map(|(i, e)| (i, &e["entry"]))
        .collect();
    let new = changes
        .iter()
        .find(|(_, c)| c["policy_digest"] == json!(digest))
        .ok_or_else(|| {
            Failure::Failed(format!(
                "no policy-change entry records the new digest {digest}: {changes:?}"
            ))
        })?;
    ensure!(
        new.1["source"].as_str().is_some_and(|s| !s.is_empty()),
        "the policy-change entry names no source: {}",
        new.1
    );
    let first_decision = entries.iter().position(|e| {
        e["entry"]["type"] == "decision" && e["entry"]["policy_digest"] == json!(digest)
    });
    ensure!(
        first_decision.is_some_and(|d| d > new.0),
        "the policy-change entry (at {}) does not precede the first decision under {digest} ({first_decision:?})",
        new.0
    );
    // A comment: not a change.
    let before = changes.len();
    std::fs::write(&file, format!("// only a comment was added\n{changed}"))
        .map_err(|e| Failure::Failed(format!("cannot write the policy: {e}")))?;
    receipt(&bot, &greet_of("bot again"))?;
    receipt(&own.server, &greet_of("local"))?;
    let after = entries_from(&own.server, 0)?
        .iter()
        .filter(|e| e["entry"]["type"] == "policy-change")
        .count();
    ensure!(
        after == before,
        "an edit adding only a comment was recorded as {} more policy-change entries",
        after - before
    );
    Ok(())
}

/// What may differ between two runs of one command on two data directories: a token or a key
/// made at random, a time.
fn normalized(args: &[&str], stdout: &str) -> String {
    match args {
        ["token", "create", ..] => stdout.trim().split('_').next().unwrap_or("").to_owned(),
        ["key", "generate", ..] => stdout
            .lines()
            .map(|l| l.split('+').next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        ["token", "list", ..] => serde_json::from_str::<Json>(stdout)
            .map(|list| {
                json!(
                    list.as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("same-")))
                        .map(|t| {
                            let mut t = t.clone();
                            if let Some(t) = t.as_object_mut() {
                                t.remove("created");
                            }
                            t
                        })
                        .collect::<Vec<_>>()
                )
                .to_string()
            })
            .unwrap_or_else(|_| stdout.to_owned()),
        _ => stdout.to_owned(),
    }
}

fn same_answer_through_the_server(target: &Target) -> Result<(), Failure> {
    let alone = own_host(target, Some(OPEN), "", true)?;
    let held = start(own_host(target, Some(OPEN), "", true)?, &[])?;
    let wasm = alone.file("again.wasm", crate::GUEST)?;
    let manifest = alone.file("again.toml", crate::GUEST_MANIFEST.as_bytes())?;
    let (wasm, manifest) = (
        wasm.to_string_lossy().into_owned(),
        manifest.to_string_lossy().into_owned(),
    );
    let commands: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "invoke",
                "conformance",
                "echo",
                "--args",
                r#"{"text":"same"}"#,
            ],
            "",
        ),
        (
            vec![
                "invoke",
                "conformance",
                "add",
                "--args",
                r#"{"a":40,"b":2}"#,
            ],
            "",
        ),
        (
            vec![
                "invoke",
                "conformance",
                "divide",
                "--args",
                r#"{"a":1,"b":0}"#,
            ],
            "",
        ),
        (
            vec![
                "invoke",
                "conformance",
                "add",
                "--args",
                r#"{"a":"x","b":1}"#,
            ],
            "",
        ),
        (
            vec!["invoke", "conformance", "spin", "--fuel", "1000000"],
            "",
        ),
        (vec!["invoke", "no-such-capability", "f"], ""),
        (vec!["invoke", "conformance", "no-such-function"], ""),
        (
            vec![
                "invoke",
                "hello",
                "greet",
                "--args",
                r#"{"name":"Ada"}"#,
                "--principal",
                "agent:nobody",
            ],
            "",
        ),
        (
            vec![
                "token",
                "create",
                "--principal",
                "agent:x",
                "--name",
                "same-x",
                "--group",
                "ops",
            ],
            "",
        ),
        (
            vec![
                "token",
                "create",
                "--principal",
                "agent:x",
                "--name",
                "same-x",
            ],
            "",
        ),
        (vec!["token", "list", "--json"], ""),
        (vec!["token", "revoke", "same-x"], ""),
        (vec!["token", "revoke", "no-such-token"], ""),
        (
            vec!["capability", "add", &wasm, "--manifest", &manifest],
            "",
        ),
        (vec!["capability", "remove", "no-such-capability"], ""),
        (vec!["capability", "remove", "hello"], ""),
        (vec!["approval", "list", "--json"], ""),
        (vec!["approval", "grant", "999"], ""),
        (vec!["approval", "deny", "999"], ""),
        (vec!["secret", "set", "same-secret"], "s3cret\n"),
        (vec!["secret", "list"], ""),
        (vec!["secret", "remove", "same-secret"], ""),
        (vec!["secret", "remove", "no-such-secret"], ""),
        (vec!["key", "generate"], ""),
        (vec!["capability", "remove", "conformance"], ""),
    ];
    let held_host = held.host()?;
    for (args, input) in &commands {
        let here = alone.run_with_input(args, input.as_bytes())?;
        let there = held_host.run_with_input(args, input.as_bytes())?;
        let what = args.join(" ");
        ensure!(
            here.code == there.code,
            "`{what}` exits {} through the server where it exits {} without one; stderr {}",
            there.code,
            here.code,
            excerpt(&there.stderr)
        );
        ensure!(
            normalized(args, &here.stdout) == normalized(args, &there.stdout),
            "`{what}` prints {:?} through the server where it prints {:?} without one",
            excerpt(&there.stdout),
            excerpt(&here.stdout)
        );
        ensure!(
            here.stderr.trim() == there.stderr.trim()
                || args[0] == "key"
                || args[0] == "token" && args[1] == "create",
            "`{what}` says {:?} through the server where it says {:?} without one",
            excerpt(&there.stderr),
            excerpt(&here.stderr)
        );
    }
    // The server did the work: its own ledger holds the command line's invocations.
    let entries = entries_from(&held.server, 0)?;
    ensure!(
        entries
            .iter()
            .any(|e| e["entry"]["type"] == "invocation-start" && e["entry"]["function"] == "echo"),
        "the server's ledger does not hold the command line's invocation"
    );
    Ok(())
}

fn admin_invoke_takes_its_turn(target: &Target) -> Result<(), Failure> {
    let host = own_host(
        target,
        Some(OPEN),
        "[server]\nconcurrency = 1\nqueue = 0\nper_principal = 4\nrequest_timeout_ms = 2500\n\n[limits]\nmax_fuel = 1000000000000000\ndeadline_ms = 600000\n",
        true,
    )?;
    let own = start(host, &[])?;
    let host = own.host()?;
    receipt(&own.server, &echo_of("warm"))?;
    // The request time left bounds a deadline asked far beyond it.
    let started = Instant::now();
    let run = run_bounded(
        host,
        &["invoke", "conformance", "spin", "--fuel", "1000000000000000", "--deadline-ms", "120000"],
        &[],
        Duration::from_secs(60),
    )?
    .ok_or_else(|| {
        Failure::Failed("an invoke with --deadline-ms 120000 through the server ran past 60 s: server.request_timeout_ms = 2500 did not bound it".into())
    })?;
    let took = started.elapsed();
    run.expect(
        11,
        "a spin through the admin channel, past server.request_timeout_ms",
    )?;
    ensure!(
        took < Duration::from_secs(20),
        "a spin asked 120 s through the admin channel took {took:?}: the request time left (2.5 s) must bound it"
    );
    // It waits for a turn like an API invocation: the only place is taken.
    let (url, token) = (own.server.url.clone(), own.server.token.clone());
    let running = std::thread::spawn(move || {
        Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({ "capability": "conformance", "function": "spin", "args": {},
                        "fuel": 1_000_000_000_000_000u64, "deadline_ms": 2400 })
                .to_string(),
            )
            .send()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    });
    // The spin asks first.
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = None;
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_millis(1500) && !running.is_finished() {
        let run = host.run(&[
            "invoke",
            "conformance",
            "echo",
            "--args",
            r#"{"text":"cli"}"#,
        ])?;
        if run.code != 0 {
            refused = Some(run);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let spun = running
        .join()
        .map_err(|_| Failure::Failed("the spinning client panicked".into()))?;
    let refused = refused.ok_or_else(|| {
        Failure::Failed("an invoke through the admin channel ran while the server's one place (server.concurrency = 1, server.queue = 0) was taken".into())
    })?;
    ensure!(
        refused.code == 2 && refused.stderr.contains("server.queue"),
        "an invoke through the admin channel beyond the server's limits exited {} ({}) where busy (exit 2) naming server.queue is required",
        refused.code,
        excerpt(&refused.stderr)
    );
    ensure!(
        spun == Ok(422),
        "the API spin did not end at its deadline: {spun:?}"
    );
    Ok(())
}

fn queue_and_commit_metrics(target: &Target) -> Result<(), Failure> {
    let host = own_host(
        target,
        Some(OPEN),
        "[server]\nconcurrency = 1\nqueue = 4\nper_principal = 4\n\n[limits]\nmax_fuel = 1000000000000000\n",
        true,
    )?;
    let own = start(host, &[])?;
    receipt(&own.server, &echo_of("warm"))?;
    let series = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let scrape = || -> Result<String, Failure> {
        let response = own.server.get("/metrics")?;
        response.expect(200, "GET /metrics")?;
        Ok(response.text)
    };
    let idle = scrape()?;
    ensure!(
        matches!(series(&idle, "femtoclaw_queue_depth"), None | Some(0.0)),
        "with nothing waiting yet, femtoclaw_queue_depth is {:?} where 0 (or no sample yet) is required",
        series(&idle, "femtoclaw_queue_depth")
    );
    for name in [
        "femtoclaw_ledger_commit_entries_count",
        "femtoclaw_ledger_commit_duration_seconds_count",
    ] {
        ensure!(
            series(&idle, name).is_some_and(|n| n >= 1.0),
            "after an invocation {name} is {:?} where at least 1 group commit is required",
            series(&idle, name)
        );
    }
    ensure!(
        idle.contains("femtoclaw_ledger_commit_entries_bucket{le=\"1\"}")
            && idle.contains("femtoclaw_ledger_commit_duration_seconds_bucket{le="),
        "the commit histograms have no buckets: {}",
        excerpt(&idle)
    );
    // One running, two waiting for a turn.
    let spin = |ms: u64| {
        let (url, token) = (own.server.url.clone(), own.server.token.clone());
        std::thread::spawn(move || {
            Server::client()
                .post(format!("{url}/v1/invoke"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(
                    json!({ "capability": "conformance", "function": "spin", "args": {},
                            "fuel": 1_000_000_000_000_000u64, "deadline_ms": ms })
                    .to_string(),
                )
                .send()
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })
    };
    let running = spin(3000);
    std::thread::sleep(Duration::from_millis(400));
    let waiting = [spin(300), spin(300)];
    let mut depth = None;
    let seen = eventually(Duration::from_secs(2), || {
        depth = scrape()
            .ok()
            .and_then(|t| series(&t, "femtoclaw_queue_depth"));
        depth == Some(2.0)
    });
    for thread in waiting {
        let _ = thread.join();
    }
    let _ = running.join();
    ensure!(
        seen,
        "with one invocation running and two waiting for a turn, femtoclaw_queue_depth is {depth:?} where 2 is required"
    );
    let after = scrape()?;
    ensure!(
        series(&after, "femtoclaw_queue_depth") == Some(0.0),
        "once the waiting invocations ran, femtoclaw_queue_depth is {:?} where 0 is required",
        series(&after, "femtoclaw_queue_depth")
    );
    Ok(())
}

/// The entries of invocation `n`, their fields but the ones an invocation's own number,
/// time, trace and digests of arguments make differ.
fn shape(entries: &[Json], n: u64) -> Vec<Json> {
    entries
        .iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["invocation"] == json!(n))
        .map(|mut e| {
            if let Some(e) = e.as_object_mut() {
                for key in [
                    "invocation",
                    "time",
                    "trace_id",
                    "started",
                    "ended",
                    "duration_ms",
                    "elapsed_ms",
                    "fuel_consumed",
                ] {
                    e.remove(key);
                }
            }
            e
        })
        .collect()
}

fn mcp_recorded_like_the_api(target: &Target) -> Result<(), Failure> {
    let host = own_host(
        target,
        Some(OPEN),
        "[server]\nper_principal = 1\n\n[limits]\nmax_fuel = 1000000000000000\n\n[[quotas.rules]]\nprincipal = \"user:local\"\ncapability = \"textstats\"\ninvocations = 1\nper_ms = 3600000\n",
        true,
    )?;
    let own = start(host, &[])?;
    let server = &own.server;
    let session = mcp_session(server)?;
    let number = |answer: &Json| answer["receipt"]["invocation"].as_u64().unwrap_or(u64::MAX);
    // A result, and a trap.
    let api_echo = number(&answered(server, &echo_of("same"), &[])?);
    let mcp_echo = mcp_invocation(&mcp_call(
        server,
        &session,
        21,
        "conformance.echo",
        &json!({ "text": "same" }),
        &Json::Null,
        &[],
    )?)?;
    let trap =
        json!({ "capability": "conformance", "function": "divide", "args": { "a": 1, "b": 0 } });
    let before = entries_from(server, 0)?.len() as u64;
    invoke(server, &trap)?;
    let api_trap = entries_from(server, before)?
        .iter()
        .find_map(|e| {
            (e["entry"]["type"] == "invocation-start")
                .then(|| e["entry"]["invocation"].as_u64())
                .flatten()
        })
        .unwrap_or(u64::MAX);
    let before = entries_from(server, 0)?.len() as u64;
    let answer = mcp_call(
        server,
        &session,
        22,
        "conformance.divide",
        &json!({ "a": 1, "b": 0 }),
        &Json::Null,
        &[],
    )?;
    ensure!(
        answer["result"]["isError"] == true || answer["error"].is_object(),
        "a trapping MCP call did not answer an error: {answer}"
    );
    let since = entries_from(server, before)?;
    let mcp_trap = since
        .iter()
        .find_map(|e| {
            (e["entry"]["type"] == "invocation-start")
                .then(|| e["entry"]["invocation"].as_u64())
                .flatten()
        })
        .ok_or_else(|| Failure::Failed("the trapping MCP call left no invocation start".into()))?;
    // A quota refusal: the API's and MCP's.
    let stats = |text: &str| json!({ "capability": "textstats", "function": "analyze", "args": { "text": text, "top": 1 } });
    receipt(server, &stats("a b"))?;
    let before = entries_from(server, 0)?.len() as u64;
    problem(
        &invoke(server, &stats("a b"))?,
        429,
        "over-quota",
        "the API call over the quota",
    )?;
    let api_quota = entries_from(server, before)?;
    let before = entries_from(server, 0)?.len() as u64;
    let answer = mcp_call(
        server,
        &session,
        23,
        "textstats.analyze",
        &json!({ "text": "a b", "top": 1 }),
        &Json::Null,
        &[],
    )?;
    ensure!(
        answer["result"]["isError"] == true || answer["error"].is_object(),
        "an MCP call over the quota did not answer an error: {answer}"
    );
    let mcp_quota = entries_from(server, before)?;
    let entries = entries_from(server, 0)?;
    for (api, mcp, what) in [
        (api_echo, mcp_echo, "an echo"),
        (api_trap, mcp_trap, "a trapping divide"),
    ] {
        let (a, m) = (shape(&entries, api), shape(&entries, mcp));
        ensure!(
            !a.is_empty() && a == m,
            "{what} over MCP is recorded as {m:?} where the API's record {a:?} is required"
        );
    }
    let kinds = |entries: &[Json]| -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let e = &e["entry"];
                format!(
                    "{} {}",
                    e["type"].as_str().unwrap_or("?"),
                    e["kind"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    ensure!(
        kinds(&api_quota) == kinds(&mcp_quota)
            && mcp_quota.iter().any(|e| e["entry"]["type"] == "trap"
                && e["entry"]["kind"] == "limit"
                && e["entry"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("quotas.rules[0]"))),
        "the MCP call over the quota is recorded as {:?} where the API's refusal {:?}, a limit trap naming quotas.rules[0], is required",
        kinds(&mcp_quota),
        kinds(&api_quota)
    );
    // A refusal at a limit: one running invocation per principal (server.per_principal = 1).
    let (url, token) = (server.url.clone(), server.token.clone());
    let running = std::thread::spawn(move || {
        Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({ "capability": "conformance", "function": "spin", "args": {},
                        "fuel": 1_000_000_000_000_000u64, "deadline_ms": 3000 })
                .to_string(),
            )
            .send()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    });
    // The spin asks first.
    std::thread::sleep(Duration::from_millis(500));
    let mut api_busy = None;
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_millis(2000) {
        let before = entries_from(server, 0)?.len() as u64;
        if invoke(server, &echo_of("busy"))?.status == 429 {
            api_busy = Some(entries_from(server, before)?);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the echo's own entries (the spin's may fall in the same window).
    let echo_only = |entries: Vec<Json>| -> Vec<Json> {
        let number = entries
            .iter()
            .find(|e| e["entry"]["type"] == "invocation-start" && e["entry"]["function"] == "echo")
            .map(|e| e["entry"]["invocation"].clone());
        entries
            .into_iter()
            .filter(|e| {
                number
                    .as_ref()
                    .is_some_and(|n| e["entry"]["invocation"] == *n)
            })
            .collect()
    };
    let api_busy = api_busy.map(echo_only).ok_or_else(|| {
        Failure::Failed(
            "the API call was never refused while a spin ran under server.per_principal = 1".into(),
        )
    })?;
    let before = entries_from(server, 0)?.len() as u64;
    let answer = mcp_call(
        server,
        &session,
        24,
        "conformance.echo",
        &json!({ "text": "busy" }),
        &Json::Null,
        &[],
    )?;
    let mcp_busy = echo_only(entries_from(server, before)?);
    let spun = running
        .join()
        .map_err(|_| Failure::Failed("the spinning client panicked".into()))?;
    ensure!(
        spun == Ok(422),
        "the spin did not end at its deadline: {spun:?}"
    );
    ensure!(
        answer["result"]["isError"] == true || answer["error"].is_object(),
        "an MCP call beyond server.per_principal did not answer an error: {answer}"
    );
    ensure!(
        !api_busy.is_empty()
            && kinds(&api_busy) == kinds(&mcp_busy)
            && mcp_busy.iter().any(|e| e["entry"]["type"] == "trap"
                && e["entry"]["kind"] == "limit"
                && e["entry"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("server.per_principal"))),
        "the MCP call beyond server.per_principal is recorded as {:?} where the API's refusal {:?}, a limit trap naming server.per_principal, is required",
        kinds(&mcp_busy),
        kinds(&api_busy)
    );
    Ok(())
}

fn otlp_http_and_grpc(target: &Target) -> Result<(), Failure> {
    for (answer, protocol, traces, metrics) in [
        (
            Answer::Promptly,
            "http/protobuf",
            "/v1/traces",
            "/v1/metrics",
        ),
        (Answer::Grpc, "grpc", "traces", "metrics"),
    ] {
        let receiver = Receiver::start(answer)?;
        let config = format!(
            "[telemetry]\notlp_endpoint = \"{}\"\notlp_protocol = \"{protocol}\"\nservice_name = \"femtoclaw-conformance\"\n",
            receiver.url
        );
        let host = own_host(target, None, &config, false)?;
        let own = start(host, &QUICK_EXPORT)?;
        let answer = answered(
            &own.server,
            &greet_of("Ada"),
            &[("traceparent", &traceparent(TRACE))],
        )?;
        let number = answer["receipt"]["invocation"]
            .as_u64()
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| Failure::Failed(format!("no receipt: {answer}")))?;
        let mut spans = Vec::new();
        let mut names = Vec::new();
        let arrived = eventually(Duration::from_secs(15), || {
            spans = receiver.spans(traces);
            names = receiver
                .requests()
                .iter()
                .filter(|r| r.path == metrics)
                .filter_map(|r| decode_metric_names(&r.body))
                .flatten()
                .collect();
            spans.iter().any(|s| {
                s.name == "femtoclaw.invoke" && s.int("femtoclaw.invocation") == Some(number)
            }) && names.iter().any(|n| n == "femtoclaw.invocations")
        });
        ensure!(
            arrived,
            "over {protocol}, within 15 s the receiver did not decode the femtoclaw.invoke span of invocation {number} and the femtoclaw.invocations metric: spans {:?}, metrics {names:?}, requests {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
            receiver.paths()
        );
        let invoke = spans
            .iter()
            .find(|s| s.name == "femtoclaw.invoke" && s.int("femtoclaw.invocation") == Some(number))
            .cloned()
            .unwrap_or_else(|| spans[0].clone());
        ensure!(
            invoke.trace == TRACE.0 && invoke.text("femtoclaw.capability") == Some("hello"),
            "over {protocol}, the invoke span is in trace {} for capability {:?} where {} and hello are required",
            invoke.trace,
            invoke.text("femtoclaw.capability"),
            TRACE.0
        );
        let request = spans.iter().find(|s| s.id == invoke.parent);
        ensure!(
            request.is_some_and(|r| r.name == "femtoclaw.request" && r.parent == TRACE.1),
            "over {protocol}, the invoke span's parent is not the request span, a child of the caller's span: {:?}",
            request.map(|r| (&r.name, &r.parent))
        );
        let wanted_type = if protocol == "grpc" {
            "application/grpc"
        } else {
            "application/x-protobuf"
        };
        ensure!(
            receiver
                .requests()
                .iter()
                .filter(|r| r.path == traces || r.path == metrics)
                .all(|r| r.content_type == wanted_type),
            "over {protocol}, an export was not {wanted_type}"
        );
        receipt(&own.server, &greet_of("still serving"))?;
    }
    Ok(())
}

fn log_events(target: &Target) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    if !root() {
        drop(target.host()?);
        return Err(Failure::NotApplicable(
            "the suite does not run as root: it cannot connect to the admin channel as another user".into(),
        ));
    }
    let host = own_host(
        target,
        Some(OPEN),
        "[server]\nshutdown_grace_ms = 1000\n\n[limits]\nmax_fuel = 1000000000000000\n\n[[quotas.rules]]\nprincipal = \"user:local\"\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\n",
        true,
    )?;
    let mut own = start(host, &[("FEMTOCLAW_LOG", "info")])?;
    let logged = |own: &Own, line: &str, also: &[&str]| -> Result<(), Failure> {
        let found = eventually(Duration::from_secs(5), || {
            own.stderr()
                .lines()
                .any(|l| l.contains(line) && also.iter().all(|a| l.contains(a)))
        });
        ensure!(
            found,
            "the server did not log {line:?} with {also:?}: {}",
            excerpt(&own.stderr())
        );
        Ok(())
    };
    // A quota refusal, with its principal.
    receipt(&own.server, &greet_of("one"))?;
    problem(
        &invoke(&own.server, &greet_of("two"))?,
        429,
        "over-quota",
        "the second greet",
    )?;
    logged(&own, "refused at a quota", &["local", "quotas.rules"])?;
    // A refused admin connection.
    let data = own.host()?.data.path().to_owned();
    for (path, mode) in [(data.clone(), 0o755), (data.join("admin.sock"), 0o777)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Failure::Failed(format!("cannot chmod {}: {e}", path.display())))?;
    }
    let Target::Binary(binary) = target else {
        return Err(Failure::NotApplicable("a server".into()));
    };
    let (_linked, mut command) = as_nobody(own.host()?, binary, &["token", "list"])?;
    let ran = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
    ensure!(
        ran.is_ok(),
        "cannot run {} as uid {NOBODY}: {ran:?}",
        binary.display()
    );
    logged(
        &own,
        "admin channel: refused a connection of another user",
        &["65534"],
    )?;
    // A stop, and a grace passed with a request unfinished.
    let (url, token) = (own.server.url.clone(), own.server.token.clone());
    let spinning = std::thread::spawn(move || {
        Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({ "capability": "conformance", "function": "spin", "args": {},
                        "fuel": 1_000_000_000_000_000u64, "deadline_ms": 60000 })
                .to_string(),
            )
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(500));
    own.terminate()?;
    let code = own.wait(Duration::from_secs(20))?;
    let _ = spinning.join();
    ensure!(code.is_some(), "serve did not stop within 20 s of SIGTERM");
    logged(&own, "stopping: finishing the requests in flight", &[])?;
    logged(
        &own,
        "stopped with requests still in flight (server.shutdown_grace_ms)",
        &[],
    )?;
    // A ledger tail cut on recovery, at the next start (at the default level).
    let host = own.kill()?;
    let segment = host.data.path().join("ledger/segments/00000000.seg");
    let mut bytes = std::fs::read(&segment)
        .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", segment.display())))?;
    bytes.extend_from_slice(b"garbage!garbage!");
    std::fs::write(&segment, bytes)
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", segment.display())))?;
    let run = run_bounded(
        &host,
        &[
            "token",
            "create",
            "--principal",
            "agent:z",
            "--name",
            "after-the-cut",
        ],
        &[],
        Duration::from_secs(60),
    )?
    .ok_or_else(|| Failure::Failed("token create after the torn tail did not end".into()))?;
    run.expect(0, "token create on a ledger with a torn tail")?;
    ensure!(
        run.stderr
            .lines()
            .any(|l| l.contains("ledger recovery cut an unacknowledged tail") && l.contains("16")),
        "the next open did not log `ledger recovery cut an unacknowledged tail` with its 16 bytes at the default level: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn concurrent_appends_share_commits(target: &Target) -> Result<(), Failure> {
    let receiver = Receiver::start(Answer::Promptly)?;
    let host = own_host(
        target,
        None,
        &format!(
            "[server]\nper_principal = 8\n\n{}",
            telemetry_config(&receiver.url)
        ),
        false,
    )?;
    let own = start(host, &QUICK_EXPORT)?;
    let (url, token) = (own.server.url.clone(), own.server.token.clone());
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || -> Result<Vec<Json>, Failure> {
                let server = client(&url, &token)?;
                (0..12)
                    .map(|i| receipt(&server, &greet_of(&format!("thread {t} call {i}"))))
                    .collect()
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for thread in threads {
        receipts.extend(
            thread
                .join()
                .map_err(|_| Failure::Failed("a client thread panicked".into()))??,
        );
    }
    let entries = entries_from(&own.server, 0)?;
    let of_index = |i: u64| {
        entries
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .map(|e| &e["entry"])
    };
    let mut numbers = std::collections::HashSet::new();
    for receipt in &receipts {
        let n = receipt["invocation"]
            .as_u64()
            .ok_or_else(|| Failure::Failed(format!("a receipt has no invocation: {receipt}")))?;
        ensure!(
            numbers.insert(n),
            "two concurrent invocations got the same invocation number {n}"
        );
        let (first, last) = (
            receipt["entries"][0].as_u64().unwrap_or(u64::MAX),
            receipt["entries"][1].as_u64().unwrap_or(u64::MAX),
        );
        ensure!(
            of_index(first)
                .is_some_and(|e| e["type"] == "invocation-start" && e["invocation"] == json!(n))
                && of_index(last)
                    .is_some_and(|e| e["type"] == "invocation-end" && e["invocation"] == json!(n)),
            "the receipt of invocation {n} names entries {first} and {last}, which are not its start and end"
        );
    }
    // The group commits, as the exported commit spans say: some batch holds entries of more
    // than one invocation.
    let mut shared = None;
    let mut seen = 0;
    eventually(Duration::from_secs(10), || {
        let commits: Vec<(i64, i64)> = receiver
            .spans("/v1/traces")
            .iter()
            .filter(|s| s.name == "femtoclaw.ledger.commit")
            .filter_map(|s| {
                Some((
                    s.int("femtoclaw.ledger.tree_size")?,
                    s.int("femtoclaw.ledger.batch.entries")?,
                ))
            })
            .collect();
        seen = commits.len();
        shared = commits.into_iter().find(|&(size, n)| {
            let invocations: std::collections::HashSet<String> = (size - n..size)
                .filter_map(|i| of_index(u64::try_from(i).ok()?))
                .filter_map(|e| e["invocation"].as_u64().map(|n| n.to_string()))
                .collect();
            invocations.len() >= 2
        });
        shared.is_some()
    });
    ensure!(
        shared.is_some(),
        "72 invocations from 6 concurrent clients shared no group commit: none of {seen} exported femtoclaw.ledger.commit spans covers entries of two invocations"
    );
    let host = own.kill()?;
    host.run(&["log", "verify"])?
        .expect(0, "log verify after concurrent invocations")?;
    Ok(())
}

fn lossy_not_blocking(target: &Target) -> Result<(), Failure> {
    let receiver = Receiver::start(Answer::HoldFirst)?;
    let host = own_host(
        target,
        None,
        &format!(
            "[server]\nper_principal = 8\n\n{}",
            telemetry_config(&receiver.url)
        ),
        false,
    )?;
    let own = start(
        host,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16"),
        ],
    )?;
    receipt(&own.server, &greet_of("first"))?;
    let stuck = eventually(Duration::from_secs(10), || {
        receiver.held.lock().is_ok_and(|h| !h.is_empty())
    });
    ensure!(
        stuck,
        "the host exported no span to the receiver within 10 s"
    );
    // While the exporter is stuck on its first export, many more spans than its queue holds.
    let (url, token) = (own.server.url.clone(), own.server.token.clone());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || -> Result<usize, Failure> {
                let quick = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| Failure::Failed(format!("no HTTP client: {e}")))?;
                for i in 0..30 {
                    let response = quick
                        .post(format!("{url}/v1/invoke"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(greet_of(&format!("{t} {i}")).to_string())
                        .send()
                        .map_err(|e| Failure::Failed(format!("with the span queue full, an invocation was not answered within 5 s: {e}")))?;
                    ensure!(
                        response.status().as_u16() == 200,
                        "with the span queue full, an invocation answered HTTP {}",
                        response.status()
                    );
                }
                Ok(30)
            })
        })
        .collect();
    let mut made = 1;
    for thread in threads {
        made += thread
            .join()
            .map_err(|_| Failure::Failed("a client thread panicked".into()))??;
    }
    // Once the held export is given up, export goes on, without what did not fit.
    let given_up = eventually(Duration::from_secs(20), || {
        receiver
            .held
            .lock()
            .is_ok_and(|h| h.iter().all(|(_, closed)| closed.is_some()))
    });
    ensure!(given_up, "the exporter never gave up its held export");
    let invocations = || -> std::collections::HashSet<i64> {
        receiver
            .spans("/v1/traces")
            .iter()
            .filter(|s| s.name == "femtoclaw.invoke")
            .filter_map(|s| s.int("femtoclaw.invocation"))
            .collect()
    };
    let resumed = eventually(Duration::from_secs(10), || !invocations().is_empty());
    std::thread::sleep(Duration::from_secs(2));
    let exported = invocations().len();
    ensure!(
        resumed,
        "after the held export was given up, no invocation span was exported"
    );
    ensure!(
        exported < made,
        "all {made} invocations' spans were exported though the span queue (OTEL_BSP_MAX_QUEUE_SIZE = 64) was full while the exporter was stuck: nothing was dropped"
    );
    receipt(&own.server, &greet_of("still serving"))?;
    Ok(())
}
