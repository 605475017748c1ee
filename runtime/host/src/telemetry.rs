//! Telemetry: the host's `tracing` spans exported as OpenTelemetry traces, and its metrics
//! exported over OTLP (`http/protobuf` or `grpc`) and served as Prometheus text at `/metrics`. Off by default: without an
//! endpoint (`telemetry.otlp_endpoint`, or the standard `OTEL_EXPORTER_OTLP_*ENDPOINT`
//! variables) no span is recorded, and the metrics are kept only for a scrape.
//!
//! ```text
//! femtoclaw.request         an API request (http.*) or an MCP call (mcp.*, gen_ai.*, jsonrpc.*)
//! └─ femtoclaw.invoke       one invocation (femtoclaw.capability, …, femtoclaw.outcome)
//!    └─ femtoclaw.host_call one call through the gate (femtoclaw.host_call.*)
//! femtoclaw.ledger.commit   one group commit (femtoclaw.ledger.*), a trace of its own
//! ```
//!
//! A caller's W3C `traceparent` ([`TraceParent`]) makes its request span a child of the
//! caller's span, and its trace id is recorded in the invocation's start entry. The spans are
//! made where the work happens (`serve`, `mcp`, `host`, the sandbox's gate, the ledger's
//! writer); this module installs their export and holds the metrics: [`Telemetry::install`]
//! in the processes that serve, the recording functions ([`invoked`], [`quota_refused`],
//! [`set_pending_approvals`], …) everywhere, doing nothing in a process that installed none.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::exit::{Code, Failure};

/// The longest a stopping process waits for the last spans and metrics to be exported.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// The longest one export request may take (a receiver that is slow or down costs the
/// background exporter this, never an invocation).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The installed export: the tracer and meter providers, shut down (bounded) when dropped.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.tracer.is_some())
            .finish_non_exhaustive()
    }
}

/// Installs the log output alone (`FEMTOCLAW_LOG`, default `warn`, to stderr): what every
/// command but the serving ones does.
pub fn install_logging() {
    let _ = tracing_subscriber::registry().with(log_layer()).try_init();
}

/// Where `FEMTOCLAW_LOG` sends log lines: stderr (stdout is a protocol's, for `mcp`), with
/// colours only when stderr is a terminal, so that a file or a journal holds plain text.
fn log_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("FEMTOCLAW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter)
}

/// The OTLP protocols the host exports with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: `POST <endpoint>/v1/traces` and `/v1/metrics`.
    HttpProtobuf,
    /// `grpc`: the OTLP services over HTTP/2 (tonic).
    Grpc,
}

/// Where one signal (`TRACES` or `METRICS`) is exported, as the configuration and the standard
/// variables say: `None` when no endpoint is given (export off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The full endpoint URL.
    pub endpoint: String,
    pub protocol: Protocol,
}

impl Export {
    /// The export of `signal` (`TRACES` or `METRICS`) under `config` and the environment
    /// `var`: the key `telemetry.otlp_endpoint` first, else `OTEL_EXPORTER_OTLP_<signal>_ENDPOINT`
    /// (as given), else `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/<signal>` over HTTP); the
    /// protocol likewise from `telemetry.otlp_protocol` or the `_PROTOCOL` variables.
    pub fn resolve(
        config: &femtoclaw_config::Telemetry,
        signal: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, Failure> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let specific = |what: &str| format!("OTEL_EXPORTER_OTLP_{signal}_{what}");
        let (protocol, protocol_from) = if config.otlp_protocol.is_empty() {
            let name = [
                specific("PROTOCOL"),
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            ]
            .into_iter()
            .find(|name| var(name).is_some());
            match name {
                Some(name) => (var(&name).unwrap_or_default(), name),
                None => ("http/protobuf".to_owned(), String::new()),
            }
        } else {
            (
                config.otlp_protocol.clone(),
                "telemetry.otlp_protocol".to_owned(),
            )
        };
        let protocol = match protocol.trim() {
            "http/protobuf" => Protocol::HttpProtobuf,
            "grpc" => Protocol::Grpc,
            other => {
                return Err(Failure::new(
                    Code::InvalidArgs,
                    format!(
                        "{protocol_from}: `{}` is not an OTLP protocol the host exports with (`http/protobuf` or `grpc`)",
                        other.escape_debug()
                    ),
                ));
            }
        };
        let path = format!("/v1/{}", signal.to_ascii_lowercase());
        let with_path = |base: &str| match protocol {
            Protocol::HttpProtobuf => format!("{}{path}", base.trim_end_matches('/')),
            Protocol::Grpc => base.to_owned(),
        };
        let endpoint = if !config.otlp_endpoint.is_empty() {
            with_path(&config.otlp_endpoint)
        } else if let Some(given) = var(&specific("ENDPOINT")) {
            given
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            with_path(&base)
        } else {
            return Ok(None);
        };
        Ok(Some(Self { endpoint, protocol }))
    }
}

impl Telemetry {
    /// Installs the log output, the span export (when an endpoint is configured) and the
    /// metrics (served at `/metrics`, and exported when an endpoint is configured). Call it
    /// once, outside an async runtime, before serving.
    pub fn install(config: &femtoclaw_config::Telemetry) -> Result<Self, Failure> {
        let env = |name: &str| std::env::var(name).ok();
        let traces = Export::resolve(config, "TRACES", env)?;
        let metrics = Export::resolve(config, "METRICS", env)?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Failure::new(Code::Other, format!("telemetry: {what}: {e}"))
        };

        let tracer = match &traces {
            Some(export) => {
                let exporter = span_exporter(export).map_err(|e| failed("traces", &e))?;
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource.clone())
                        .build(),
                )
            }
            None => None,
        };
        let otel = tracer.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("femtoclaw-host"))
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_level(false)
                .with_target(false)
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    meta.is_span() && meta.name().starts_with("femtoclaw.")
                }))
        });
        let _ = tracing_subscriber::registry()
            .with(log_layer())
            .with(otel)
            .try_init();

        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .map_err(|e| failed("metrics", &e))?;
        let mut meters = SdkMeterProvider::builder()
            .with_reader(prometheus)
            .with_resource(resource);
        if let Some(export) = &metrics {
            let exporter = metric_exporter(export).map_err(|e| failed("metrics", &e))?;
            meters = meters.with_reader(PeriodicReader::builder(exporter).build());
        }
        let meters = meters.build();
        let _ = METRICS.set(Metrics::new(&meters, registry));
        Ok(Self {
            tracer,
            meters: Some(meters),
        })
    }

    /// Exports what is left, waiting at most [`SHUTDOWN_WAIT`] (a receiver that is down does
    /// not hold up a stop).
    pub fn shutdown(mut self) {
        let (tracer, meters) = (self.tracer.take(), self.meters.take());
        let (done, finished) = std::sync::mpsc::channel();
        let flushing = std::thread::Builder::new()
            .name("femtoclaw-telemetry-stop".to_owned())
            .spawn(move || {
                if let Some(tracer) = tracer {
                    let _ = tracer.shutdown_with_timeout(SHUTDOWN_WAIT);
                }
                if let Some(meters) = meters {
                    let _ = meters.shutdown();
                }
                let _ = done.send(());
            });
        if flushing.is_ok() {
            let _ = finished.recv_timeout(SHUTDOWN_WAIT);
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if self.tracer.is_some() || self.meters.is_some() {
            Self {
                tracer: self.tracer.take(),
                meters: self.meters.take(),
            }
            .shutdown();
        }
    }
}

fn span_exporter(
    export: &Export,
) -> Result<Exporter<opentelemetry_otlp::SpanExporter>, opentelemetry_otlp::ExporterBuildError> {
    match export.protocol {
        Protocol::HttpProtobuf => Ok(Exporter::direct(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&export.endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .with_http_client(BlockingHttp::new()?)
                .build()?,
        )),
        Protocol::Grpc => Exporter::in_runtime(|| {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&export.endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        }),
    }
}

fn metric_exporter(
    export: &Export,
) -> Result<Exporter<opentelemetry_otlp::MetricExporter>, opentelemetry_otlp::ExporterBuildError> {
    match export.protocol {
        Protocol::HttpProtobuf => Ok(Exporter::direct(
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&export.endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .with_http_client(BlockingHttp::new()?)
                .build()?,
        )),
        Protocol::Grpc => Exporter::in_runtime(|| {
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&export.endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        }),
    }
}

/// An OTLP exporter, and for gRPC the runtime it exports on: tonic needs a Tokio reactor,
/// which the SDK's background threads (the batch span processor, the periodic metric reader)
/// lack, so each export is driven to its end on a small runtime of its own.
#[derive(Debug)]
struct Exporter<E> {
    inner: E,
    runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl<E> Exporter<E> {
    fn direct(inner: E) -> Self {
        Self {
            inner,
            runtime: None,
        }
    }

    /// Builds the exporter within a runtime of one worker, which its exports then run on.
    fn in_runtime(
        build: impl FnOnce() -> Result<E, opentelemetry_otlp::ExporterBuildError>,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("femtoclaw-otlp-grpc")
            .enable_all()
            .build()
            .map_err(|e| opentelemetry_otlp::ExporterBuildError::InternalFailure(e.to_string()))?;
        let inner = {
            let _in_runtime = runtime.enter();
            build()?
        };
        Ok(Self {
            inner,
            runtime: Some(Arc::new(runtime)),
        })
    }

    /// Drives `exporting` on the exporter's runtime, if it has one.
    async fn drive<T>(&self, exporting: impl Future<Output = T>) -> T {
        match &self.runtime {
            Some(runtime) => runtime.block_on(exporting),
            None => exporting.await,
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Exporter<E>
{
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        self.drive(self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for Exporter<E>
{
    fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> impl Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        self.drive(self.inner.export(metrics))
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

/// The OTLP/HTTP exporters' client: the workspace's blocking reqwest, on the exporters'
/// background threads.
#[derive(Debug)]
struct BlockingHttp(reqwest::blocking::Client);

impl BlockingHttp {
    /// Built on a thread of its own: a blocking client may not be made (or dropped) on an
    /// async runtime's thread.
    fn new() -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let built = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .join();
        match built {
            Ok(Ok(client)) => Ok(Self(client)),
            Ok(Err(e)) => Err(opentelemetry_otlp::ExporterBuildError::InternalFailure(
                e.to_string(),
            )),
            Err(_) => Err(opentelemetry_otlp::ExporterBuildError::InternalFailure(
                "the thread making the HTTP client failed".to_owned(),
            )),
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingHttp {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut answer = opentelemetry_http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response.bytes()?;
        Ok(answer.body(body)?)
    }
}

/// A caller's W3C trace context (`traceparent`, version 00 and later): the caller's trace and
/// span, which the request's span continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for one that is malformed (which the caller's
    /// request then ignores: a new trace, no trace id recorded).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim_matches([' ', '\t']);
        let bytes = text.as_bytes();
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = lower_hex::<1>(&text[..2])?[0];
        // Version ff is invalid; 00 is exactly this long; a later version may add fields.
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        let trace_id = lower_hex::<16>(&text[3..35])?;
        let parent_id = lower_hex::<8>(&text[36..52])?;
        let flags = lower_hex::<1>(&text[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The `traceparent` of a request's headers: `None` when there is none, more than one, or
    /// a malformed one.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<Self> {
        let mut values = headers.get_all("traceparent").iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(value.to_str().ok()?)
    }

    /// Makes `span` a child of this caller's span (when spans are exported).
    pub fn adopt(self, span: &tracing::Span) {
        let context = opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(self.trace_id),
            opentelemetry::trace::SpanId::from_bytes(self.parent_id),
            opentelemetry::trace::TraceFlags::new(self.flags & 1),
            true,
            opentelemetry::trace::TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
    }
}

/// `text` as `N` bytes of lowercase hex (as W3C trace context requires), or `None`.
fn lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The span of one API request, a child of the caller's `traceparent` when it has one
/// (OpenTelemetry HTTP server conventions).
pub fn http_request_span(method: &str, route: &str, parent: Option<TraceParent>) -> tracing::Span {
    let span = tracing::info_span!(
        "femtoclaw.request",
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        parent.adopt(&span);
    }
    span
}

/// The span of one MCP request (OpenTelemetry MCP conventions: `mcp.method.name`,
/// `gen_ai.tool.name`, …), a child of the caller's trace context when it sent one.
pub fn mcp_request_span(
    method: &str,
    tool: &str,
    request_id: &str,
    session: Option<&str>,
    parent: Option<TraceParent>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "femtoclaw.request",
        otel.kind = "server",
        mcp.method.name = method,
        gen_ai.tool.name = tool,
        gen_ai.operation.name = "execute_tool",
        jsonrpc.request.id = request_id,
        mcp.session.id = session,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        parent.adopt(&span);
    }
    span
}

/// `n` as a span attribute: OpenTelemetry integers are signed (an unsigned one would be
/// exported as text).
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The host's metrics, made once [`Telemetry::install`] has a meter provider.
struct Metrics {
    registry: prometheus::Registry,
    invocations: Counter<u64>,
    duration: Histogram<f64>,
    fuel: Histogram<u64>,
    host_calls: Counter<u64>,
    denials: Counter<u64>,
    commits: Counter<u64>,
    commit_appends: Histogram<u64>,
    commit_duration: Histogram<f64>,
    commit_sync: Histogram<f64>,
    commit_entries: Histogram<u64>,
    tree_size: Gauge<u64>,
    queue_depth: Gauge<u64>,
    quota_refusals: Counter<u64>,
    approvals_pending: Gauge<u64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    fn new(provider: &SdkMeterProvider, registry: prometheus::Registry) -> Self {
        let meter = provider.meter("femtoclaw-host");
        let seconds = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ];
        let fuel = (3..=10).map(|e| 10f64.powi(e)).collect();
        let entries: Vec<f64> = (0..=12).map(|e| f64::from(1u32 << e)).collect();
        Self {
            registry,
            invocations: meter
                .u64_counter("femtoclaw.invocations")
                .with_description("Invocations, by capability and outcome")
                .build(),
            duration: meter
                .f64_histogram("femtoclaw.invocation.duration")
                .with_unit("s")
                .with_description("How long an invocation took, recorded entries durable included")
                .with_boundaries(seconds.clone())
                .build(),
            fuel: meter
                .u64_histogram("femtoclaw.invocation.fuel")
                .with_description("Fuel an invocation consumed")
                .with_boundaries(fuel)
                .build(),
            host_calls: meter
                .u64_counter("femtoclaw.host_calls")
                .with_description("Host calls through the gate, by interface and decision")
                .build(),
            denials: meter
                .u64_counter("femtoclaw.denials")
                .with_description("Policy denials, by action")
                .build(),
            commits: meter
                .u64_counter("femtoclaw.ledger.commits")
                .with_description("Group commits, by whether they were made durable")
                .build(),
            commit_appends: meter
                .u64_histogram("femtoclaw.ledger.commit.appends")
                .with_description("Appends coalesced into one group commit")
                .with_boundaries(entries.clone())
                .build(),
            commit_duration: meter
                .f64_histogram("femtoclaw.ledger.commit.duration")
                .with_unit("s")
                .with_description("How long a group commit took to be durable and signed")
                .with_boundaries(seconds.clone())
                .build(),
            commit_sync: meter
                .f64_histogram("femtoclaw.ledger.commit.sync")
                .with_unit("s")
                .with_description("Of a group commit's time, its writing and fdatasync")
                .with_boundaries(seconds)
                .build(),
            commit_entries: meter
                .u64_histogram("femtoclaw.ledger.commit.entries")
                .with_description("Entries per group commit")
                .with_boundaries(entries)
                .build(),
            tree_size: meter
                .u64_gauge("femtoclaw.ledger.tree_size")
                .with_description("Entries in the ledger")
                .build(),
            queue_depth: meter
                .u64_gauge("femtoclaw.queue.depth")
                .with_description("Invocations waiting for a turn")
                .build(),
            quota_refusals: meter
                .u64_counter("femtoclaw.quota.refusals")
                .with_description("Invocations refused at a quota or rate limit, by limit")
                .build(),
            approvals_pending: meter
                .u64_gauge("femtoclaw.approvals.pending")
                .with_description("Approvals requested and not yet granted or denied")
                .build(),
        }
    }
}

/// The metrics as Prometheus text (`None` in a process that installed none).
pub fn render() -> Option<String> {
    use prometheus::Encoder as _;
    let metrics = METRICS.get()?;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&metrics.registry.gather(), &mut text)
        .ok()?;
    String::from_utf8(text).ok()
}

/// Counts an invocation of `capability` (`name`) that ended as `outcome` (`ok`, or its
/// problem code: `denied`, `trapped`, `fuel-exhausted`, …), with how long it took and the fuel
/// it consumed (none for one refused before it ran).
pub fn invoked(capability: &str, outcome: &str, took: Duration, fuel: Option<u64>) {
    let Some(m) = METRICS.get() else { return };
    let capability = KeyValue::new("capability", capability.to_owned());
    m.invocations.add(
        1,
        &[
            capability.clone(),
            KeyValue::new("outcome", outcome.to_owned()),
        ],
    );
    m.duration
        .record(took.as_secs_f64(), std::slice::from_ref(&capability));
    if let Some(fuel) = fuel {
        m.fuel.record(fuel, &[capability]);
    }
}

/// Counts a host call to `interface` the gate decided as `decision` (`allow`, `deny`, or
/// `none` for a call no policy decision scopes).
pub fn host_call(interface: &str, decision: &str) {
    let Some(m) = METRICS.get() else { return };
    m.host_calls.add(
        1,
        &[
            KeyValue::new("interface", interface.to_owned()),
            KeyValue::new("decision", decision.to_owned()),
        ],
    );
}

/// Counts a policy denial of `action` (`invoke`, `link`, `http.request`, `kv.write`, …).
pub fn denied(action: &str) {
    let Some(m) = METRICS.get() else { return };
    m.denials
        .add(1, &[KeyValue::new("action", action.to_owned())]);
}

/// Records one group commit of the ledger.
pub fn ledger_committed(commit: &femtoclaw_ledger::Commit) {
    let Some(m) = METRICS.get() else { return };
    m.commits
        .add(1, &[KeyValue::new("durable", commit.durable.to_string())]);
    m.commit_appends
        .record(u64::try_from(commit.appends).unwrap_or(u64::MAX), &[]);
    m.commit_duration.record(commit.duration.as_secs_f64(), &[]);
    m.commit_sync.record(commit.sync.as_secs_f64(), &[]);
    m.commit_entries
        .record(u64::try_from(commit.entries).unwrap_or(u64::MAX), &[]);
    m.tree_size.record(commit.tree_size, &[]);
}

/// Sets how many invocations wait for a turn.
pub fn set_queue_depth(n: usize) {
    let Some(m) = METRICS.get() else { return };
    m.queue_depth
        .record(u64::try_from(n).unwrap_or(u64::MAX), &[]);
}

/// Counts an invocation refused at the quota or rate limit `limit` (the limit's name, such as
/// `per_principal_rate`) for `principal`: the counter `femtoclaw_quota_refusals_total{limit}`.
/// The principal is not a label (one series per principal would grow without bound); it goes
/// to the log at `info`.
pub fn quota_refused(limit: &str, principal: &str) {
    tracing::info!(limit, principal, "refused at a quota");
    let Some(m) = METRICS.get() else { return };
    m.quota_refusals
        .add(1, &[KeyValue::new("limit", limit.to_owned())]);
}

/// Sets how many approvals are pending (requested, neither granted nor denied): the gauge
/// `femtoclaw_approvals_pending`.
pub fn set_pending_approvals(n: u64) {
    let Some(m) = METRICS.get() else { return };
    m.approvals_pending.record(n, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // Verifies: FC-OBS-2606
    #[test]
    fn a_w3c_traceparent_is_parsed_and_a_malformed_one_is_not() {
        let parsed = TraceParent::parse(VALID).unwrap();
        assert_eq!(
            hex::encode(parsed.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(parsed.parent_id), "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 1);
        // A later version may carry more fields after a dash.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let mut headers = axum::http::HeaderMap::new();
        headers.append("traceparent", VALID.parse().unwrap());
        assert_eq!(TraceParent::from_headers(&headers), Some(parsed));
        headers.append("traceparent", VALID.parse().unwrap());
        assert_eq!(TraceParent::from_headers(&headers), None, "two are none");
    }

    // Verifies: FC-OBS-2601, FC-OBS-2602
    #[test]
    fn the_endpoint_comes_from_the_key_then_the_standard_variables() {
        let config = femtoclaw_config::Config::default().telemetry;
        let none = |_: &str| None;
        assert_eq!(Export::resolve(&config, "TRACES", none).unwrap(), None);
        let base = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://collector:4318/".to_owned())
        };
        assert_eq!(
            Export::resolve(&config, "TRACES", base).unwrap(),
            Some(Export {
                endpoint: "http://collector:4318/v1/traces".to_owned(),
                protocol: Protocol::HttpProtobuf
            })
        );
        let specific = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" => Some("http://m:9/in".to_owned()),
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL" => Some("grpc".to_owned()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".to_owned()),
            _ => None,
        };
        assert_eq!(
            Export::resolve(&config, "METRICS", specific).unwrap(),
            Some(Export {
                endpoint: "http://m:9/in".to_owned(),
                protocol: Protocol::Grpc
            })
        );
        let mut keyed = config.clone();
        keyed.otlp_endpoint = "http://127.0.0.1:4318".to_owned();
        assert_eq!(
            Export::resolve(&keyed, "METRICS", specific)
                .unwrap()
                .unwrap()
                .endpoint,
            "http://127.0.0.1:4318",
            "the key wins over the variables (over gRPC, as given)"
        );
        let json =
            |name: &str| (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".to_owned());
        let refused = Export::resolve(&keyed, "TRACES", json).unwrap_err();
        assert!(
            refused.message.contains("OTEL_EXPORTER_OTLP_PROTOCOL")
                && refused.message.contains("http/json"),
            "{}",
            refused.message
        );
    }

    // Verifies: FC-OBS-2610, FC-OBS-2616
    /// The two recording functions quotas and approvals call land in the Prometheus text.
    #[test]
    fn quota_refusals_and_pending_approvals_are_served_as_prometheus_text() {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .unwrap();
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        assert!(METRICS.set(Metrics::new(&provider, registry)).is_ok());
        quota_refused("per_principal_rate", "user:ada");
        quota_refused("per_principal_rate", "user:bob");
        quota_refused("daily_fuel", "user:ada");
        set_pending_approvals(3);
        set_pending_approvals(2);
        let text = render().unwrap();
        assert!(
            text.contains("femtoclaw_quota_refusals_total{limit=\"per_principal_rate\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("femtoclaw_quota_refusals_total{limit=\"daily_fuel\"} 1"),
            "{text}"
        );
        assert!(text.contains("femtoclaw_approvals_pending 2"), "{text}");
        assert!(!text.contains("user:ada"), "no principal label: {text}");
    }
}
