//! Telemetry end to end: spans and metrics exported over OTLP (HTTP and gRPC) to a receiver on
//! loopback,
//! a caller's `traceparent` continued and recorded, `/metrics` scraped, and receivers that are
//! down or never answer costing the invocations nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use super::*;

/// The caller's trace: its trace id and the span its request comes from.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const MCP_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const MCP_PARENT_ID: &str = "b7ad6b7169203331";
const STDIO_TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";

/// How a test receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// At once, 200.
    Promptly,
    /// Never (it holds every request open).
    Never,
}

/// An OTLP/HTTP receiver on a loopback port: what it was sent, decoded.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<Vec<Metric>>>,
    requests: Arc<Mutex<usize>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(answer: Answer) -> Self {
        use axum::body::Bytes;
        use axum::routing::post;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (got_spans, got_metrics) = (Arc::clone(&spans), Arc::clone(&metrics));
        let (traces_seen, metrics_seen) = (Arc::clone(&requests), Arc::clone(&requests));
        let held = move || async move {
            if answer == Answer::Never {
                std::future::pending::<()>().await;
            }
        };
        let router = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |body: Bytes| async move {
                    *traces_seen.lock().unwrap() += 1;
                    held().await;
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut spans = got_spans.lock().unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans);
                        }
                    }
                    ""
                }),
            )
            .route(
                "/v1/metrics",
                post(move |body: Bytes| async move {
                    *metrics_seen.lock().unwrap() += 1;
                    held().await;
                    let request = ExportMetricsServiceRequest::decode(body).unwrap();
                    let mut metrics = got_metrics.lock().unwrap();
                    for resource in request.resource_metrics {
                        for scope in resource.scope_metrics {
                            metrics.extend(scope.metrics);
                        }
                    }
                    ""
                }),
            );
        runtime.spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            spans,
            metrics,
            requests,
            _runtime: runtime,
        }
    }

    /// An OTLP/gRPC receiver (the collector's trace and metrics services, on tonic).
    fn start_grpc() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let collect = Collect {
            spans: Arc::new(Mutex::new(Vec::new())),
            metrics: Arc::new(Mutex::new(Vec::new())),
            requests: Arc::new(Mutex::new(0)),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Self {
            url,
            spans: Arc::clone(&collect.spans),
            metrics: Arc::clone(&collect.metrics),
            requests: Arc::clone(&collect.requests),
            _runtime: runtime,
        };
        receiver._runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collect.clone()))
                .add_service(MetricsServiceServer::new(collect))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        receiver
    }

    /// Waits (bounded: 30 s) until the spans received satisfy `done`, and returns them.
    fn spans_until(&self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        for _ in 0..300 {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let names: Vec<String> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {:?}", s.name, s.attributes))
            .collect();
        panic!("the spans expected did not arrive within 30 s; got {names:?}");
    }

    /// Waits (bounded: 30 s) until the metrics received satisfy `done`, and returns them.
    fn metrics_until(&self, done: impl Fn(&[Metric]) -> bool) -> Vec<Metric> {
        for _ in 0..300 {
            let metrics = self.metrics.lock().unwrap().clone();
            if done(&metrics) {
                return metrics;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let names: Vec<String> = self
            .metrics
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        panic!("the metrics expected did not arrive within 30 s; got {names:?}");
    }
}

/// What the gRPC receiver was sent.
#[derive(Clone)]
struct Collect {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<Vec<Metric>>>,
    requests: Arc<Mutex<usize>>,
}

#[tonic::async_trait]
impl TraceService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        *self.requests.lock().unwrap() += 1;
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        *self.requests.lock().unwrap() += 1;
        let mut metrics = self.metrics.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                metrics.extend(scope.metrics);
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// A server on `host` exporting to `endpoint` every 100 ms (spans) and 200 ms (metrics).
fn exporting_server(host: &Host, endpoint: &str) -> Server {
    exporting_server_over(host, endpoint, "http/protobuf")
}

/// [`exporting_server`] over `protocol`.
fn exporting_server_over(host: &Host, endpoint: &str, protocol: &str) -> Server {
    host.configure(&format!(
        "[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_protocol = \"{protocol}\"\nservice_name = \"femtoclaw-test\"\n"
    ));
    Server::start_with(
        host,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ],
    )
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(&span.attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(&span.attributes, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// The invocation start entries in `host`'s ledger, by invocation number, read over the API.
fn starts(server: &Server, token: &str) -> Vec<Json> {
    let page: Json =
        serde_json::from_str(&client_get(server, token, "/v1/ledger/entries?limit=1000")).unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "invocation-start")
        .collect()
}

// Verifies: FC-PROTO-0829, FC-PROTO-0922, FC-EXT-5507, FC-SEC-1315, FC-OBS-2603, FC-OBS-2604, FC-OBS-2605, FC-OBS-2607, FC-OBS-2611, FC-OBS-2618, FC-OBS-2619, FC-OBS-2623
/// An API invocation with `traceparent` and an MCP call with its own become spans of the
/// callers' traces (request → invoke → host call), with their attributes, exported to a real
/// OTLP/HTTP receiver; each invocation's start entry records its caller's trace id; a malformed
/// `traceparent` is served as a new trace, recording none; the metrics arrive too.
#[test]
fn spans_and_metrics_reach_an_otlp_receiver_in_the_callers_trace() {
    let receiver = Receiver::start(Answer::Promptly);
    let host = Host::new();
    let operator = token(&host, "user:local", "operator");
    let server = exporting_server(&host, &receiver.url);

    // The API, with the caller's traceparent: a memory write makes host calls.
    let put =
        json!({ "capability": "memory", "function": "put", "args": { "key": "k", "text": "v" } });
    let response = client()
        .post(format!("{}/v1/invoke", server.url))
        .bearer_auth(&operator)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .header("content-type", "application/json")
        .body(put.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let traced: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
    let traced_invocation = traced["receipt"]["invocation"].as_u64().unwrap();

    // A malformed traceparent is ignored: the request is served, as a trace of its own.
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
    let response = client()
        .post(format!("{}/v1/invoke", server.url))
        .bearer_auth(&operator)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01-extra"))
        .header("content-type", "application/json")
        .body(greet.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let untraced: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
    let untraced_invocation = untraced["receipt"]["invocation"].as_u64().unwrap();

    // MCP over streamable HTTP, with the caller's traceparent header.
    let calls = host.file(
        "calls.json",
        json!([{ "name": "hello.greet", "arguments": { "name": "Grace" } }])
            .to_string()
            .as_bytes(),
    );
    let out = mcp_client(&calls)
        .args([
            "--http",
            &format!("{}/mcp", server.url),
            "--token",
            &operator,
        ])
        .args([
            "--header",
            &format!("traceparent: 00-{MCP_TRACE_ID}-{MCP_PARENT_ID}-01"),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let answer: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let mcp_invocation = answer["calls"][0]["meta"]["femtoclaw/receipt"]["invocation"]
        .as_u64()
        .unwrap();

    // The ledger: each start holds its caller's trace id, and the malformed one none.
    let recorded: HashMap<u64, Json> = starts(&server, &operator)
        .into_iter()
        .map(|s| (s["invocation"].as_u64().unwrap(), s["trace_id"].clone()))
        .collect();
    assert_eq!(recorded[&traced_invocation], json!(TRACE_ID));
    assert_eq!(recorded[&untraced_invocation], Json::Null);
    assert_eq!(recorded[&mcp_invocation], json!(MCP_TRACE_ID));

    let invoke_of = |spans: &[Span], invocation: u64| {
        spans
            .iter()
            .find(|s| {
                s.name == "femtoclaw.invoke"
                    && int(s, "femtoclaw.invocation") == i64::try_from(invocation).ok()
            })
            .cloned()
    };
    let spans = receiver.spans_until(|spans| {
        [traced_invocation, untraced_invocation, mcp_invocation]
            .iter()
            .all(|&i| invoke_of(spans, i).is_some())
            && spans.iter().any(|s| s.name == "femtoclaw.host_call")
            && spans.iter().any(|s| s.name == "femtoclaw.ledger.commit")
    });
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let parent_of = |span: &Span| {
        *by_id
            .get(&span.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of {} did not arrive", span.name))
    };

    // The API invocation: invoke ← request ← the caller's span, all in the caller's trace.
    let invoke = invoke_of(&spans, traced_invocation).unwrap();
    assert_eq!(hex::encode(&invoke.trace_id), TRACE_ID);
    assert_eq!(text(&invoke, "femtoclaw.capability"), Some("memory"));
    assert_eq!(text(&invoke, "femtoclaw.capability.version"), Some("0.1.0"));
    assert_eq!(text(&invoke, "femtoclaw.function"), Some("put"));
    assert_eq!(
        text(&invoke, "femtoclaw.principal"),
        Some("FemtoClaw::User::\"local\"")
    );
    assert_eq!(text(&invoke, "femtoclaw.outcome"), Some("ok"));
    assert_eq!(int(&invoke, "femtoclaw.fuel.budget"), Some(200_000_000));
    let consumed = int(&invoke, "femtoclaw.fuel.consumed").unwrap();
    assert_eq!(
        u64::try_from(consumed).unwrap(),
        traced["fuel"]["consumed"].as_u64().unwrap()
    );
    let request = parent_of(&invoke);
    assert_eq!(request.name, "femtoclaw.request");
    assert_eq!(
        hex::encode(&request.parent_span_id),
        PARENT_ID,
        "the caller's span"
    );
    assert_eq!(text(request, "http.request.method"), Some("POST"));
    assert_eq!(text(request, "http.route"), Some("/v1/invoke"));
    assert_eq!(int(request, "http.response.status_code"), Some(200));
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "femtoclaw.host_call" && s.parent_span_id == invoke.span_id)
        .collect();
    assert!(
        !calls.is_empty(),
        "the memory write's host calls are the invocation's children"
    );
    assert!(calls.iter().all(|c| c.trace_id == invoke.trace_id));
    assert!(
        calls
            .iter()
            .any(|c| text(c, "femtoclaw.host_call.decision") == Some("allow")
                && text(c, "femtoclaw.host_call.interface")
                    .is_some_and(|i| i.starts_with("wasi:keyvalue/store"))
                && int(c, "femtoclaw.host_call.fuel_left").is_some_and(|f| f > 0)),
        "{calls:?}"
    );

    // The malformed traceparent: a new trace, whose request span has no parent.
    let invoke = invoke_of(&spans, untraced_invocation).unwrap();
    assert_ne!(hex::encode(&invoke.trace_id), TRACE_ID);
    let request = parent_of(&invoke);
    assert_eq!(request.name, "femtoclaw.request");
    assert!(request.parent_span_id.is_empty(), "a root span");

    // MCP: invoke ← the MCP request span ← the caller's span.
    let invoke = invoke_of(&spans, mcp_invocation).unwrap();
    assert_eq!(hex::encode(&invoke.trace_id), MCP_TRACE_ID);
    let request = parent_of(&invoke);
    assert_eq!(request.name, "femtoclaw.request");
    assert_eq!(hex::encode(&request.parent_span_id), MCP_PARENT_ID);
    assert_eq!(text(request, "mcp.method.name"), Some("tools/call"));
    assert_eq!(text(request, "gen_ai.tool.name"), Some("hello.greet"));

    // The ledger's group commits.
    let commit = spans
        .iter()
        .find(|s| s.name == "femtoclaw.ledger.commit")
        .unwrap();
    assert!(int(commit, "femtoclaw.ledger.batch.entries").is_some_and(|n| n > 0));
    assert!(int(commit, "femtoclaw.ledger.tree_size").is_some_and(|n| n > 0));
    assert!(
        commit
            .attributes
            .iter()
            .any(|kv| kv.key == "femtoclaw.ledger.fsync_ms")
    );

    // Metrics: the invocations counted by capability and outcome (cumulative sums).
    let invocations = |metrics: &[Metric], capability: &str| -> i64 {
        metrics
            .iter()
            .rev()
            .find(|m| m.name == "femtoclaw.invocations")
            .and_then(|m| match &m.data {
                Some(metric::Data::Sum(sum)) => Some(sum.data_points.clone()),
                _ => None,
            })
            .unwrap_or_default()
            .iter()
            .filter(|p| {
                matches!(attribute(&p.attributes, "capability"),
                    Some(any_value::Value::StringValue(c)) if c == capability)
                    && matches!(attribute(&p.attributes, "outcome"),
                        Some(any_value::Value::StringValue(o)) if o == "ok")
            })
            .map(|p| match p.value {
                Some(number_data_point::Value::AsInt(n)) => n,
                _ => 0,
            })
            .sum()
    };
    let metrics = receiver.metrics_until(|m| invocations(m, "hello") == 2);
    assert_eq!(invocations(&metrics, "memory"), 1);
    for name in [
        "femtoclaw.invocation.duration",
        "femtoclaw.invocation.fuel",
        "femtoclaw.host_calls",
        "femtoclaw.ledger.commit.duration",
        "femtoclaw.ledger.commit.entries",
        "femtoclaw.ledger.tree_size",
    ] {
        assert!(metrics.iter().any(|m| m.name == name), "{name} arrives");
    }
    still_serving_then_verified(server, &host);

    // MCP over stdio, the trace context in the request's `_meta`: the process exports its
    // spans before it exits.
    let calls = host.file(
        "meta-calls.json",
        json!([{
            "name": "hello.greet",
            "arguments": { "name": "Lin" },
            "meta": { "traceparent": format!("00-{STDIO_TRACE_ID}-{MCP_PARENT_ID}-01") },
        }])
        .to_string()
        .as_bytes(),
    );
    let out = mcp_stdio_client(&host, &calls)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let answer: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let stdio_invocation = answer["calls"][0]["meta"]["femtoclaw/receipt"]["invocation"]
        .as_u64()
        .unwrap();
    let start = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .find(|e| e["type"] == "invocation-start" && e["invocation"] == stdio_invocation)
        .unwrap();
    assert_eq!(start["trace_id"], json!(STDIO_TRACE_ID));
    let spans = receiver.spans_until(|spans| invoke_of(spans, stdio_invocation).is_some());
    let invoke = invoke_of(&spans, stdio_invocation).unwrap();
    assert_eq!(hex::encode(&invoke.trace_id), STDIO_TRACE_ID);
    let request = spans
        .iter()
        .find(|s| s.span_id == invoke.parent_span_id)
        .unwrap();
    assert_eq!(text(request, "mcp.method.name"), Some("tools/call"));
    assert_eq!(hex::encode(&request.parent_span_id), MCP_PARENT_ID);
}

// Verifies: FC-EXT-5507, FC-OBS-2603, FC-OBS-2607, FC-OBS-2623
/// The same export over OTLP/gRPC (`telemetry.otlp_protocol = "grpc"`): the invocation's span
/// arrives in the caller's trace, a child of the request, and the metrics arrive.
#[test]
fn spans_and_metrics_reach_an_otlp_grpc_receiver() {
    let receiver = Receiver::start_grpc();
    let host = Host::new();
    let operator = token(&host, "user:local", "operator");
    let server = exporting_server_over(&host, &receiver.url, "grpc");
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
    let response = client()
        .post(format!("{}/v1/invoke", server.url))
        .bearer_auth(&operator)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .header("content-type", "application/json")
        .body(greet.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
    let invocation = i64::try_from(answer["receipt"]["invocation"].as_u64().unwrap()).unwrap();
    let is_invoke = |s: &Span| {
        s.name == "femtoclaw.invoke" && int(s, "femtoclaw.invocation") == Some(invocation)
    };
    let spans = receiver.spans_until(|spans| {
        spans.iter().any(is_invoke) && spans.iter().any(|s| s.name == "femtoclaw.request")
    });
    let invoke = spans.iter().find(|s| is_invoke(s)).unwrap();
    assert_eq!(hex::encode(&invoke.trace_id), TRACE_ID);
    assert_eq!(text(invoke, "femtoclaw.capability"), Some("hello"));
    let request = spans
        .iter()
        .find(|s| s.span_id == invoke.parent_span_id)
        .unwrap();
    assert_eq!(request.name, "femtoclaw.request");
    assert_eq!(hex::encode(&request.parent_span_id), PARENT_ID);
    receiver.metrics_until(|metrics| metrics.iter().any(|m| m.name == "femtoclaw.invocations"));
    still_serving_then_verified(server, &host);
}

// Verifies: FC-PROTO-0830, FC-EXT-5508, FC-SEC-1315, FC-SEC-1811, FC-OBS-2601, FC-OBS-2608, FC-OBS-2609, FC-OBS-2615, FC-MEM-2418
/// `/metrics` takes any valid token (none: 401) and counts exactly the invocations the ledger
/// holds, by capability and outcome; `telemetry.metrics_listen` serves the same without one.
#[test]
fn metrics_are_scraped_with_a_token_and_count_the_ledgers_invocations() {
    let host = Host::new();
    let scrape_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    host.configure(&format!(
        "[telemetry]\nmetrics_listen = \"127.0.0.1:{scrape_port}\"\n"
    ));
    let operator = token(&host, "user:local", "operator");
    let stranger = token(&host, "user:eve", "stranger");
    let server = Server::start(&host);
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
    for _ in 0..3 {
        let (status, _, body) = invoke(&server, Some(&operator), &greet, "");
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = invoke(&server, Some(&stranger), &greet, "");
    assert_eq!(status, 403, "{body}");
    let put =
        json!({ "capability": "memory", "function": "put", "args": { "key": "k", "text": "v" } });
    let (status, _, body) = invoke(&server, Some(&operator), &put, "");
    assert_eq!(status, 200, "{body}");

    let unauthenticated = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let scraped = client()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&stranger)
        .send()
        .unwrap();
    assert_eq!(scraped.status().as_u16(), 200);
    assert!(
        scraped
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = scraped.text().unwrap();
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no `{series}` in\n{text}"))
            .parse()
            .unwrap()
    };

    // Every invocation start in the ledger is counted once, under its outcome.
    let mut recorded: HashMap<String, f64> = HashMap::new();
    for start in starts(&server, &operator) {
        *recorded
            .entry(start["capability"].as_str().unwrap().to_owned())
            .or_default() += 1.0;
    }
    assert_eq!(recorded["hello"], 4.0);
    let counted = |capability: &str, outcome: &str| {
        value(
            &text,
            &format!(
                "femtoclaw_invocations_total{{capability=\"{capability}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(counted("hello", "ok"), 3.0);
    assert_eq!(counted("hello", "denied"), 1.0);
    assert_eq!(
        counted("hello", "ok") + counted("hello", "denied"),
        recorded["hello"]
    );
    assert_eq!(counted("memory", "ok"), recorded["memory"]);
    assert_eq!(
        value(&text, "femtoclaw_denials_total{action=\"invoke\"}"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "femtoclaw_invocation_duration_seconds_count{capability=\"hello\"}"
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            "femtoclaw_invocation_fuel_count{capability=\"hello\"}"
        ),
        3.0,
        "a refused invocation consumed no fuel"
    );
    assert!(
        text.contains(
            "femtoclaw_host_calls_total{decision=\"allow\",interface=\"wasi:keyvalue/store@"
        ),
        "{text}"
    );
    // Every group commit counted, with its appends, sync time and durability.
    let commits = value(&text, "femtoclaw_ledger_commit_entries_count");
    assert!(commits >= 5.0);
    assert_eq!(
        value(&text, "femtoclaw_ledger_commits_total{durable=\"true\"}"),
        commits,
        "{text}"
    );
    assert_eq!(
        value(&text, "femtoclaw_ledger_commit_appends_count"),
        commits
    );
    assert!(value(&text, "femtoclaw_ledger_commit_appends_sum") >= commits);
    assert_eq!(
        value(&text, "femtoclaw_ledger_commit_sync_seconds_count"),
        commits
    );
    let tree_size = value(&text, "femtoclaw_ledger_tree_size");
    let checkpoint = client_get(&server, &operator, "/v1/ledger/checkpoint");
    let size = femtoclaw_ledger::Checkpoint::parse_unverified(&checkpoint)
        .unwrap()
        .size;
    assert!(
        tree_size >= 1.0 && tree_size <= size as f64,
        "{tree_size} ≤ {size}"
    );

    // The separate address needs no token and serves the same series.
    let open = client()
        .get(format!("http://127.0.0.1:{scrape_port}/metrics"))
        .send()
        .unwrap();
    assert_eq!(open.status().as_u16(), 200);
    let open = open.text().unwrap();
    assert_eq!(
        value(
            &open,
            "femtoclaw_invocations_total{capability=\"hello\",outcome=\"ok\"}"
        ),
        3.0
    );
    still_serving_then_verified(server, &host);
}

// Verifies: FC-EXT-5516, FC-OBS-2620
/// Export is batched in the background: with a receiver that never answers, or none at all,
/// every invocation is answered (each within the client's 5 s, under the exporter's own 10 s
/// timeout, so an export in the invocation's path would fail this), and the server still stops
/// within its bound.
#[test]
fn a_receiver_that_is_down_or_never_answers_delays_no_invocation() {
    let hanging = Receiver::start(Answer::Never);
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for endpoint in [hanging.url.clone(), down] {
        let host = Host::new();
        let operator = token(&host, "user:local", "operator");
        let server = exporting_server(&host, &endpoint);
        let greet =
            json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
        for _ in 0..20 {
            let response = quick
                .post(format!("{}/v1/invoke", server.url))
                .bearer_auth(&operator)
                .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
                .header("content-type", "application/json")
                .body(greet.to_string())
                .send()
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            std::thread::sleep(Duration::from_millis(50));
        }
        still_serving_then_verified(server, &host);
    }
    assert!(
        *hanging.requests.lock().unwrap() > 0,
        "the hanging receiver was sent exports (and held them)"
    );
}
