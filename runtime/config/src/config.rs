//! The schema: every section and key of `femtoclaw.toml`, its type, its default and what it
//! accepts. This list is the one place a key is described; the structs, the defaults, the
//! environment variables, `show` and the reference are all made from it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::schema::schema;
use crate::value::Rule;

schema! {
    /// The host's configuration: the value of every key, after defaults, the file, the
    /// environment and flags. [`Config::default`] is the embedded default of every key.
    pub struct Config;

    /// The server: where it listens and how much work it takes on.
    [server] Server {
        /// The socket address the HTTP API and MCP listen on.
        listen: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8420);
        /// The most invocations running at once (the sandbox pools room for as many).
        concurrency: usize = 4, Rule::AtLeast(1);
        /// The most invocations waiting for a turn beyond those running.
        queue: usize = 64;
        /// The most invocations of one principal running at once.
        per_principal: usize = 4, Rule::AtLeast(1);
        /// The largest request body the server reads, in bytes.
        max_body_bytes: usize = 1 << 20, Rule::AtLeast(1);
        /// The longest a request may take, waiting for a turn included.
        request_timeout as request_timeout_ms: Duration = Duration::from_secs(60), Rule::AtLeast(1);
        /// How long a stopping server lets running invocations finish.
        shutdown_grace as shutdown_grace_ms: Duration = Duration::from_secs(30), Rule::AtLeast(1);
    }

    /// The ceilings on every invocation.
    [limits] Limits {
        /// The largest fuel budget of one invocation: no manifest and no `--fuel` may ask for more.
        max_fuel: u64 = 10_000_000_000, Rule::AtLeast(1);
        /// The wall-clock deadline of one invocation; a request may ask for less, never more.
        deadline as deadline_ms: Duration = Duration::from_secs(30), Rule::AtLeast(1);
        /// The most bytes of host-call parameters and results one invocation may record.
        max_recorded_bytes: u64 = 64 << 20, Rule::AtLeast(1);
        /// The largest linear memory of one instance, in bytes.
        memory_bytes: usize = 64 << 20, Rule::AtLeast(64 << 10);
    }

    /// The compiler of capability code.
    [engine] Engine {
        /// CPU features the compiled code leaves unused, as on a CPU without them (Cranelift
        /// flags: `has_avx2`, `has_sse41`, … on x86-64; `has_lse`, … on AArch64), so that code
        /// compiled here behaves as code compiled on an older machine; recordings replay the
        /// same either way. An unknown flag stops the host naming it.
        disabled_cpu_features: Vec<String> = Vec::new(), Rule::CpuFeatures;
    }

    /// Quotas and rate limits, per principal and per capability (see the README's "Limits").
    [quotas] Quotas {
        /// The rules (`[[quotas.rules]]` tables: `principal`, `capability`, `shared`,
        /// `invocations`, `burst`, `per_ms`, `concurrent`, `fuel`); an invocation over any rule
        /// that covers it is refused before it runs.
        rules: Vec<crate::QuotaRule> = Vec::new();
    }

    /// Human approvals of the calls a policy marks `@approval("required")`.
    [approvals] Approvals {
        /// How long a caller waits for a person to decide before it is answered "pending" with
        /// the approval's id (0: answered at once).
        wait as wait_ms: Duration = Duration::ZERO;
        /// How long a grant may be used after it is given.
        grant_ttl as grant_ttl_ms: Duration = Duration::from_secs(3600), Rule::AtLeast(1);
    }

    /// The ledger.
    [ledger] Ledger {
        /// The origin line of the ledger's signed checkpoints.
        origin: String = "femtoclaw.local/ledger".to_owned(), Rule::Origin;
    }

    /// MCP: which capability functions are offered as tools, and to which browser origins.
    [mcp] Mcp {
        /// The only tools offered (`hello.greet`, …); empty: every tool the principal may invoke.
        tools_allow: Vec<String> = Vec::new();
        /// Tools never offered, whatever `tools_allow` says.
        tools_deny: Vec<String> = Vec::new();
        /// Browser origins `/mcp` accepts (`https://app.example.com`); a request with any other
        /// `Origin` header is refused (403), and with none listed, every one is.
        allowed_origins: Vec<String> = Vec::new();
    }

    /// The caps on a capability's HTTP requests; a request may ask for less, never more.
    [http] Http {
        /// The largest request body, in bytes.
        max_request_bytes: u64 = 1 << 20;
        /// The largest response body, in bytes.
        max_response_bytes: u64 = 4 << 20;
        /// The time allowed for one request, name lookup and redirects included.
        timeout as timeout_ms: Duration = Duration::from_secs(30), Rule::AtLeast(1);
        /// The most redirects one request follows.
        max_redirects: u32 = 10;
    }

    /// Telemetry: OpenTelemetry traces and metrics over OTLP, and Prometheus text. Off unless
    /// an endpoint is given here or in the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variables.
    [telemetry] Telemetry {
        /// The OTLP receiver's base URL (`http://127.0.0.1:4318`; `/v1/traces` and `/v1/metrics`
        /// are added over HTTP); empty: `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`, or off.
        otlp_endpoint: String = String::new(), Rule::EmptyOrUrl;
        /// The OTLP protocol; empty: `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL`, or
        /// `http/protobuf`.
        otlp_protocol: String = String::new(), Rule::OneOf(&["", "http/protobuf", "grpc"]);
        /// The `service.name` of the spans and metrics exported.
        service_name: String = "femtoclaw-host".to_owned();
        /// A second address serving `GET /metrics` without a token (for a scraper on a
        /// private network); empty: none (the API's `/metrics` takes any valid token).
        metrics_listen: String = String::new(), Rule::EmptyOrSocketAddr;
    }
}
