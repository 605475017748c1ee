//! `femtoclaw-host serve`: the host as a daemon, an authenticated HTTP/JSON API over the same
//! orchestration as the command line.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `ok` while the process serves (no token needed) |
//! | `GET /readyz` | `ready` once the host is open (no token needed) |
//! | `GET /v1/capabilities` | the capabilities and functions this principal may invoke, with schemas |
//! | `POST /v1/invoke[?proof=true]` | `{capability, function, args, fuel?}` → result, fuel, output, receipt |
//! | `GET /v1/ledger/checkpoint` | the latest signed checkpoint note, byte-exact |
//! | `GET /v1/ledger/entries?from=&limit=` | entries as JSON |
//! | `GET /v1/ledger/proof/{index}` | an inclusion proof (C2SP tlog-proof), as `log prove` prints it |
//! | `GET /v1/ledger/consistency?from=&to=` | a consistency proof (RFC 9162) between two tree sizes |
//! | `GET /v1/openapi.json` | the OpenAPI 3.1 document of this API (no token needed) |
//! | `GET /metrics` | the metrics, as Prometheus text (any valid token; see [`crate::telemetry`]) |
//!
//! Every route but the health checks needs `Authorization: Bearer <token>` (see
//! [`crate::tokens`]); the principal and its groups come from the token. The local operator's
//! writing commands reach the server over its admin channel (see [`crate::admin`]). Failures are
//! `application/problem+json` (RFC 9457) with a stable `code` per outcome. Invocations run on
//! blocking threads, at most `server.concurrency` at once and `server.per_principal` per
//! principal, with at most `server.queue` waiting; beyond that a request gets 429 with
//! `Retry-After`. An answer is sent only once the invocation's entries are durable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use femtoclaw_policy::Principal;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;

use crate::exit::{Code, Failure};
use crate::host::{Bounds, Host};
use crate::{admin, tokens};

/// The server's state: the host, who checks its bearer credentials, and the gates invocations
/// pass.
struct App {
    host: Arc<Host>,
    authenticator: Arc<dyn tokens::Authenticator>,
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    per_principal: usize,
    by_principal: Mutex<HashMap<String, usize>>,
    /// The longest a request may take, waiting for its turn included (`server.request_timeout_ms`).
    request_timeout: Duration,
}

/// Where a server listens: its API's address and its admin channel.
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP API.
    pub api: tokio::net::TcpListener,
    /// The local operator's admin channel, `<data dir>/admin.sock`.
    pub admin: admin::Listener,
}

impl Listeners {
    /// Binds `addr` (`:0` picks a port: the address bound is the listener's) and `host`'s admin
    /// channel, which needs its data directory's lock: `host` must have its ledger open.
    pub async fn bind(host: &Host, addr: SocketAddr) -> Result<Self, Failure> {
        host.records()?;
        let admin = admin::Listener::bind(&host.data_dir)?;
        let api = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::new(Code::Other, format!("cannot listen on {addr}: {e}")))?;
        Ok(Self { api, admin })
    }
}

/// Serves `host` on `listeners` until SIGTERM or SIGINT; then lets the requests in flight
/// finish and returns.
pub async fn serve(host: Host, listeners: Listeners) -> Result<(), Failure> {
    let Listeners {
        api: listener,
        admin: admin_listener,
    } = listeners;
    let server = &host.config.server;
    let max_body = server.max_body_bytes;
    let grace = server.shutdown_grace;
    let app = Arc::new(App {
        authenticator: Arc::new(tokens::Store::new(&host.data_dir)),
        running: Arc::new(Semaphore::new(server.concurrency)),
        waiting: AtomicUsize::new(0),
        queue: server.queue,
        per_principal: server.per_principal,
        by_principal: Mutex::default(),
        request_timeout: server.request_timeout,
        host: Arc::new(host),
    });
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/v1/openapi.json", get(|| async { axum::Json(openapi()) }))
        .route("/v1/capabilities", get(capabilities))
        .route("/v1/invoke", post(invoke))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}", get(approval).post(decide))
        .route("/v1/ledger/checkpoint", get(checkpoint))
        .route("/v1/ledger/entries", get(entries))
        .route("/v1/ledger/proof/{index}", get(proof))
        .route("/v1/ledger/consistency", get(consistency))
        .route("/metrics", get(metrics))
        .route_service(
            "/mcp",
            crate::mcp::http_service(Arc::clone(&app.host), mcp_turns(&app)),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(|headers: HeaderMap| async move { resource_metadata(&headers, "") }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(|headers: HeaderMap| async move { resource_metadata(&headers, "/mcp") }),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            gate_mcp,
        ))
        .layer(axum::middleware::from_fn(traced))
        .with_state(Arc::clone(&app));
    let scrape = metrics_listener(&app.host.config.telemetry.metrics_listen).await?;
    let admin_router = Router::new()
        .route(admin::ROUTE, post(operate))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let api = axum::serve(listener, router).with_graceful_shutdown(stopped(stopping.clone()));
    let operator =
        axum::serve(admin_listener, admin_router).with_graceful_shutdown(stopped(stopping.clone()));
    let signalled = async move {
        stop_signal().await;
        let _ = stop.send(true);
        Ok(())
    };
    let serving = |e: std::io::Error| Failure::new(Code::Other, format!("serving: {e}"));
    let scrape_stopping = stopping.clone();
    let scraped = async move {
        match scrape {
            Some(listener) => {
                let router = Router::new().route("/metrics", get(|| async { prometheus_text() }));
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped(scrape_stopping))
                    .await
                    .map_err(serving)
            }
            None => Ok(()),
        }
    };
    let served = async {
        tokio::try_join!(
            signalled,
            async { api.await.map_err(serving) },
            async { operator.await.map_err(serving) },
            scraped,
        )
    };
    // Once stopping, the requests in flight have `server.shutdown_grace_ms` to finish; an
    // invocation cut off then is never answered, and one that had written ahead of an effect
    // is recorded as interrupted when the ledger is next opened.
    let overdue = async {
        stopped(stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = served => served.map(drop),
        () = overdue => {
            tracing::warn!(?grace, "stopped with requests still in flight (server.shutdown_grace_ms)");
            Ok(())
        }
    }
}

/// Binds `telemetry.metrics_listen`, when it names an address: `/metrics` without a token.
async fn metrics_listener(listen: &str) -> Result<Option<tokio::net::TcpListener>, Failure> {
    if listen.is_empty() {
        return Ok(None);
    }
    let bound = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Failure::new(
            Code::Other,
            format!("cannot listen on `{listen}` (telemetry.metrics_listen): {e}"),
        )
    })?;
    Ok(Some(bound))
}

/// `GET /metrics` on the API: the metrics for any valid token.
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    authenticate(&app, &headers)?;
    Ok(prometheus_text())
}

/// The metrics in the Prometheus text format (version 0.0.4).
fn prometheus_text() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render().unwrap_or_default(),
    )
        .into_response()
}

/// Every API request runs in a `femtoclaw.request` span, a child of the caller's
/// `traceparent` when it sends a valid one. MCP requests get theirs per call (see
/// [`crate::mcp`]), where the JSON-RPC method is known.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let Some(route) = route.filter(|route| route.as_str() != "/mcp") else {
        return next.run(request).await;
    };
    let parent = crate::telemetry::TraceParent::from_headers(request.headers());
    let span = crate::telemetry::http_request_span(request.method().as_str(), &route, parent);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

async fn no_route() -> Problem {
    problem(StatusCode::NOT_FOUND, "unknown", "no such route")
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping: finishing the requests in flight");
}

/// An RFC 9457 problem: `code` is stable, `detail` says what was wrong.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// A header the status calls for (`WWW-Authenticate` on 401, `Retry-After` on 429,
    /// `Location` on 202).
    header: Option<Box<(header::HeaderName, HeaderValue)>>,
    /// The pending approval a 202 answer waits for (an extension member, `approval`).
    approval: Option<u64>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("urn:femtoclaw:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        let mut body = body;
        if let Some(id) = self.approval {
            body["approval"] = json!(id);
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if let Some((name, value)) = self.header.map(|h| *h) {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

fn problem(status: StatusCode, code: &'static str, detail: impl std::fmt::Display) -> Problem {
    Problem {
        status,
        code,
        detail: detail.to_string(),
        header: None,
        approval: None,
    }
}

impl From<Failure> for Problem {
    /// A failure of the host, with the status its class maps to.
    fn from(failure: Failure) -> Self {
        let status = StatusCode::from_u16(failure.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Retry-After is in whole seconds: round up, so a retry then is admitted.
        let retry_after = failure.retry_after.map(|after| {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            (header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))
        });
        // A pending approval is found where `Location` says.
        let location = failure.approval.and_then(|id| {
            HeaderValue::from_str(&format!("/v1/approvals/{id}"))
                .ok()
                .map(|at| (header::LOCATION, at))
        });
        Problem {
            header: retry_after.or(location).map(Box::new),
            approval: failure.approval,
            ..problem(status, failure.code.name(), failure.message)
        }
    }
}

/// The principal of the token a request presents, or the 401 it gets, whose
/// `WWW-Authenticate` names the protected-resource metadata (RFC 9728).
fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, Problem> {
    let challenge = format!(
        "Bearer realm=\"femtoclaw\", resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        base_url(headers)
    );
    let unauthorized = |detail: String| Problem {
        header: Some(Box::new((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"femtoclaw\"")),
        ))),
        ..problem(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("this route needs `Authorization: Bearer <token>`".into()))?;
    let principal = app
        .authenticator
        .principal_of(presented.trim())
        .map_err(|refused| unauthorized(refused.to_string()))?;
    Ok(principal?)
}

/// The base URL a request reached the server by, from its `Host` header.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// RFC 9728 protected-resource metadata: the host is its own authorization server (its
/// tokens are its own, made by `token create`), and takes bearer tokens in the header.
fn resource_metadata(headers: &HeaderMap, path: &str) -> Response {
    let base = base_url(headers);
    axum::Json(json!({
        "resource": format!("{base}{path}"),
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "resource_name": "FemtoClaw host",
    }))
    .into_response()
}

/// The turns MCP calls take: the same as `POST /v1/invoke`'s, refusals recorded alike.
fn mcp_turns(app: &Arc<App>) -> crate::mcp::Turns {
    let app = Arc::clone(app);
    Arc::new(move |principal, tool| {
        let app = Arc::clone(&app);
        Box::pin(async move {
            let asked = Asked {
                principal,
                capability: tool.capability,
                function: tool.function,
                fuel: None,
            };
            match turn(&app, &asked).await {
                Ok((turn, left)) => Ok((Box::new(turn) as crate::mcp::TurnGuard, left)),
                Err(refused) => Err(refused.detail),
            }
        })
    })
}

/// `/mcp` takes the same bearer tokens as the API: the request's principal goes into its
/// extensions, where the MCP server finds it; without a valid token, 401; a body declared over
/// `server.max_body_bytes`, 413.
async fn gate_mcp(
    State(app): State<Arc<App>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path() != "/mcp" {
        return next.run(request).await;
    }
    // A body its length says is over the cap is refused before it is read (the MCP service
    // caps what it reads of one without a length).
    let max = app.host.config.server.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX)) {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the body is larger than {max} bytes (server.max_body_bytes)"),
        )
        .into_response();
    }
    match authenticate(&app, request.headers()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// `POST /v1/invoke`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeRequest {
    capability: String,
    function: String,
    #[serde(default = "empty_object")]
    args: Json,
    fuel: Option<u64>,
    /// A deadline shorter than the operator's, in milliseconds.
    deadline_ms: Option<u64>,
}

fn empty_object() -> Json {
    json!({})
}

#[derive(Debug, Deserialize)]
struct InvokeQuery {
    #[serde(default)]
    proof: bool,
}

async fn invoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<InvokeQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let principal = authenticate(&app, &headers)?;
    let query = parsed_query(query)?;
    let request: InvokeRequest = parse(body, "an invocation")?;
    let asked = Asked {
        principal,
        capability: request.capability.clone(),
        function: request.function.clone(),
        fuel: request.fuel,
    };
    let (_turn, left) = turn(&app, &asked).await?;
    let deadline = request
        .deadline_ms
        .map_or(left, |asked| left.min(Duration::from_millis(asked)));
    let trace_id = crate::telemetry::TraceParent::from_headers(&headers).map(|p| p.trace_id);
    let worker = Arc::clone(&app);
    let body = blocking(move || {
        let bounds = Bounds {
            fuel: request.fuel,
            deadline: Some(deadline),
            trace_id,
            ..Bounds::default()
        };
        run(&worker, &asked.principal, &request, query.proof, bounds)
    })
    .await?;
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// Who asks to invoke what: enough to record a refusal.
#[derive(Clone)]
struct Asked {
    principal: Principal,
    capability: String,
    function: String,
    fuel: Option<u64>,
}

/// An invocation's turn, and the time left of its request's `server.request_timeout_ms` once
/// it has one. Refused at a limit (the principal's or the queue's, or the request's time
/// spent waiting), the invocation is recorded as refused, naming the limit, before the 429
/// (or 503) is answered.
async fn turn(app: &Arc<App>, asked: &Asked) -> Result<(Turn, Duration), Problem> {
    let started = Instant::now();
    let refused = match tokio::time::timeout(app.request_timeout, Turn::take(app, &asked.principal))
        .await
    {
        Ok(Ok(turn)) => return Ok((turn, app.request_timeout.saturating_sub(started.elapsed()))),
        Ok(Err(refused)) => refused,
        Err(_) => Problem {
            header: Some(Box::new((
                header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            ))),
            ..problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "no turn within the request's {} ms (server.request_timeout_ms)",
                    app.request_timeout.as_millis()
                ),
            )
        },
    };
    if refused.code == "busy" {
        let (worker, asked, limit) = (Arc::clone(app), asked.clone(), refused.detail.clone());
        blocking(move || {
            let resolved = worker.host.resolve(&asked.capability)?;
            worker.host.refuse_over_limit(
                &asked.principal,
                &resolved,
                &asked.function,
                asked.fuel,
                &limit,
            )
        })
        .await?;
    }
    Err(refused)
}

/// A request body as `T`, or the problem it gets: 413 over the cap, 400 when it is not `what`.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, Problem> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-large"
        } else {
            Code::InvalidArgs.name()
        };
        problem(status, code, rejection.body_text())
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgs.name(),
            format!("the request body is not {what}: {e}"),
        )
    })
}

/// A request's query, or the 400 problem it gets.
fn parsed_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    query.map(|Query(query)| query).map_err(|rejection| {
        problem(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgs.name(),
            rejection.body_text(),
        )
    })
}

/// `POST /admin` on the admin channel: one of the local operator's writing commands. An
/// invocation takes its turn like any other.
async fn operate(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let mut request: admin::Request = parse(body, "an admin request")?;
    let mut _turn = None;
    if let admin::Request::Invoke {
        principal,
        groups,
        capability,
        function,
        fuel,
        deadline_ms,
        ..
    } = &mut request
    {
        let asked = Asked {
            principal: crate::authority::principal(principal, groups)?,
            capability: capability.clone(),
            function: function.clone(),
            fuel: *fuel,
        };
        let (turn, left) = turn(&app, &asked).await?;
        let left = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        *deadline_ms = Some(deadline_ms.map_or(left, |asked| asked.min(left)));
        _turn = Some(turn);
    }
    let worker = Arc::clone(&app);
    let answer = blocking(move || admin::perform(&worker.host, request)).await?;
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// Runs `f` on a blocking thread, in the caller's span: host work (a component, the ledger)
/// never holds up the threads that serve requests.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Problem> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Other.name(),
            format!("the host's thread failed: {e}"),
        )),
    }
}

/// One invocation, on a blocking thread: the same path as `femtoclaw-host invoke`.
fn run(
    app: &App,
    principal: &Principal,
    request: &InvokeRequest,
    with_proof: bool,
    bounds: Bounds,
) -> Result<Json, Failure> {
    let host = &app.host;
    let resolved = host.resolve(&request.capability)?;
    let invoked = host.invoke(
        principal,
        &resolved,
        &request.function,
        &request.args,
        bounds,
    )?;
    let outcome = &invoked.outcome;
    let result = outcome.result.as_ref().map_err(Failure::from)?;
    let records = host.records()?;
    let ledger_failure =
        |e: femtoclaw_ledger::LedgerError| Failure::new(Code::Other, format!("ledger: {e}"));
    let mut receipt = invoked.receipt_json();
    let last = invoked.last_entry();
    if with_proof {
        receipt["proof"] = json!(
            records
                .with_ledger(|l| l.prove(last))
                .map_err(ledger_failure)?
        );
    }
    let mut body = json!({
        "result": result,
        "fuel": { "budget": outcome.fuel_budget, "consumed": outcome.fuel_consumed },
        "receipt": receipt,
    });
    if !outcome.stdout.is_empty() || !outcome.stderr.is_empty() {
        body["output"] = json!({
            "stdout": String::from_utf8_lossy(&outcome.stdout),
            "stderr": String::from_utf8_lossy(&outcome.stderr),
            "truncated": outcome.output_truncated,
        });
    }
    Ok(body)
}

/// An invocation's turn: one of its principal's places and a place among the running (queued
/// for, within the queue's bound). Dropping it gives both back.
struct Turn {
    _place: PrincipalPlace,
    _running: tokio::sync::OwnedSemaphorePermit,
}

impl Turn {
    async fn take(app: &Arc<App>, principal: &Principal) -> Result<Turn, Problem> {
        let busy = |detail: String| Problem {
            header: Some(Box::new((
                header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            ))),
            ..problem(StatusCode::TOO_MANY_REQUESTS, "busy", detail)
        };
        let place = PrincipalPlace::take(app, principal.to_string()).ok_or_else(|| {
            busy(format!(
                "`{principal}` has {} invocations running, the most one principal may (server.per_principal)",
                app.per_principal
            ))
        })?;
        let running = match Arc::clone(&app.running).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let waiting = app.waiting.fetch_add(1, Ordering::SeqCst);
                if waiting >= app.queue {
                    app.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy(format!(
                        "{} invocations are waiting, the most the server queues (server.queue)",
                        app.queue
                    )));
                }
                crate::telemetry::set_queue_depth(waiting + 1);
                let permit = Arc::clone(&app.running).acquire_owned().await;
                let left = app.waiting.fetch_sub(1, Ordering::SeqCst);
                crate::telemetry::set_queue_depth(left.saturating_sub(1));
                permit.map_err(|_| {
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "stopping",
                        "the server is stopping",
                    )
                })?
            }
        };
        Ok(Turn {
            _place: place,
            _running: running,
        })
    }
}

/// One running invocation of a principal, given back when dropped.
struct PrincipalPlace {
    app: Arc<App>,
    name: String,
}

impl PrincipalPlace {
    /// A place for `name`, unless it has `server.per_principal` already.
    fn take(app: &Arc<App>, name: String) -> Option<Self> {
        let mut by = app
            .by_principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = by.entry(name.clone()).or_insert(0);
        if *count >= app.per_principal {
            return None;
        }
        *count += 1;
        drop(by);
        Some(Self {
            app: Arc::clone(app),
            name,
        })
    }
}

impl Drop for PrincipalPlace {
    fn drop(&mut self) {
        let mut by = self
            .app
            .by_principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = by.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                by.remove(&self.name);
            }
        }
    }
}

/// `GET /v1/approvals`: the approvals this principal asked for or may decide.
async fn approvals(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    let principal = authenticate(&app, &headers)?;
    let worker = Arc::clone(&app);
    let seen = blocking(move || {
        let host = &worker.host;
        let all = host.approvals.list();
        Ok(all
            .into_iter()
            .filter(|a| a.principal == principal.to_string() || may_decide(host, &principal, a))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(axum::Json(json!(seen)).into_response())
}

/// `GET /v1/approvals/{id}`: one approval, to whoever asked for it or may decide it.
async fn approval(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Response, Problem> {
    let principal = authenticate(&app, &headers)?;
    let worker = Arc::clone(&app);
    let one = blocking(move || {
        let host = &worker.host;
        let approval = host.approvals.get(id)?;
        if approval.principal == principal.to_string() || may_decide(host, &principal, &approval) {
            Ok(approval)
        } else {
            Err(Failure::new(
                Code::Unknown,
                format!("there is no approval {id}"),
            ))
        }
    })
    .await?;
    Ok(axum::Json(json!(one)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// `grant` or `deny`.
    decision: String,
    reason: Option<String>,
}

/// `POST /v1/approvals/{id}` `{"decision": "grant" | "deny", "reason": …}`: a principal the
/// policy lets `approve` the capability decides a pending approval, never its own; the
/// decision is recorded before it is answered.
async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let principal = authenticate(&app, &headers)?;
    let asked: Decision = parse(body, "an approval decision")?;
    let grant = match asked.decision.as_str() {
        "grant" => true,
        "deny" => false,
        other => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgs.name(),
                format!("decision `{other}`: say `grant` or `deny`"),
            ));
        }
    };
    let worker = Arc::clone(&app);
    let decided = blocking(move || {
        let host = &worker.host;
        let approval = host.approvals.get(id)?;
        if approval.principal == principal.to_string() {
            return Err(Failure::new(
                Code::Denied,
                format!("denied: `{principal}` asked for approval {id}, and nobody may decide their own call"),
            ));
        }
        if !may_decide(host, &principal, &approval) {
            return Err(Failure::new(
                Code::Denied,
                format!(
                    "denied: `{principal}` may not approve calls to `{}.{}` (action `approve`)",
                    approval.capability, approval.function
                ),
            ));
        }
        host.approvals.decide(
            host.records()?,
            id,
            grant,
            &principal.to_string(),
            asked.reason,
            host.config.approvals.grant_ttl,
        )
    })
    .await?;
    Ok(axum::Json(json!(decided)).into_response())
}

/// Whether the policy in force lets `principal` decide `approval` (action `approve` on its
/// capability and function). A capability no longer installed cannot be decided.
fn may_decide(host: &Host, principal: &Principal, approval: &crate::approvals::Approval) -> bool {
    let spec = format!("{}@{}", approval.capability, approval.version);
    let (Ok(policy), Ok(found)) = (host.authority.policy(), host.catalog.find(&spec)) else {
        return false;
    };
    policy
        .authorize_approve(
            principal,
            &crate::authority::capability_ref(&found),
            &approval.function,
        )
        .allowed
}

/// `GET /v1/capabilities`: what this principal may invoke, function by function.
async fn capabilities(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let principal = authenticate(&app, &headers)?;
    let worker = Arc::clone(&app);
    let body = blocking(move || list(&worker.host, &principal)).await?;
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

fn list(host: &Host, principal: &Principal) -> Result<Json, Failure> {
    let capabilities: Vec<Json> = host
        .invocable(principal, None)?
        .into_iter()
        .map(|(resolved, functions)| {
            let m = &resolved.entry.manifest;
            json!({
                "name": m.name,
                "version": m.version,
                "description": m.description,
                "publisher": m.publisher,
                "sha256": resolved.entry.sha256,
                "functions": functions.iter().map(|f| json!({
                    "name": f.name,
                    "description": f.doc,
                    "args_schema": f.args_schema(),
                    "result_schema": f.result_schema(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({ "principal": principal.to_string(), "capabilities": capabilities }))
}

/// `GET /v1/ledger/checkpoint`: the latest signed note, byte-exact.
async fn checkpoint(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    authenticate(&app, &headers)?;
    let note = app
        .host
        .records()?
        .with_ledger(|l| l.latest_checkpoint().map(str::to_owned))
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                "unknown",
                "the ledger has no checkpoint yet",
            )
        })?;
    Ok(text(note))
}

#[derive(Debug, Deserialize)]
struct EntriesQuery {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// The most entries one page holds.
const MAX_PAGE: usize = 1000;

/// `GET /v1/ledger/entries?from=&limit=`.
async fn entries(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    authenticate(&app, &headers)?;
    let query = parsed_query(query)?;
    let limit = query.limit.min(MAX_PAGE);
    let page = app
        .host
        .records()?
        .with_ledger(|l| l.iter(query.from, limit))
        .map_err(|e| Failure::new(Code::Other, format!("ledger: {e}")))?;
    let entries: Vec<Json> = page
        .into_iter()
        .map(|(index, entry)| json!({ "index": index, "entry": entry }))
        .collect();
    Ok((StatusCode::OK, axum::Json(json!({ "entries": entries }))).into_response())
}

/// `GET /v1/ledger/proof/{index}`: the C2SP tlog-proof of one entry.
async fn proof(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<u64>,
) -> Result<Response, Problem> {
    authenticate(&app, &headers)?;
    let proof = app
        .host
        .records()?
        .with_ledger(|l| l.prove(index))
        .map_err(|e| Failure::new(Code::Unknown, format!("no proof of entry {index}: {e}")))?;
    Ok(text(proof))
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

/// `GET /v1/ledger/consistency?from=&to=`: the RFC 9162 consistency proof that the tree of `to`
/// entries (default: the latest checkpoint's, whose note is then part of the answer) extends
/// the tree of `from` entries; hashes in base64, as in a C2SP tlog-proof.
async fn consistency(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    use base64::Engine as _;
    authenticate(&app, &headers)?;
    let query = parsed_query(query)?;
    let answer = app.host.records()?.with_ledger(|l| {
        let latest = l.latest_checkpoint().map(str::to_owned);
        let (to, checkpoint) = match (query.to, &latest) {
            (Some(to), _) => (to, None),
            (None, Some(note)) => {
                let size = femtoclaw_ledger::Checkpoint::parse_unverified(note)
                    .map(|c| c.size)
                    .map_err(|e| Failure::new(Code::Other, format!("the latest checkpoint: {e}")))?;
                (size, latest)
            }
            (None, None) => {
                return Err(Failure::new(Code::Unknown, "the ledger has no checkpoint yet"));
            }
        };
        let from = query.from;
        if from == 0 || from > to || to > l.len() {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!(
                    "no consistency proof from {from} to {to} entries: give 0 < from <= to <= {} (the tree's size)",
                    l.len()
                ),
            ));
        }
        let hashes = l
            .consistency_proof(from, to)
            .map_err(|e| Failure::new(Code::Other, format!("ledger: {e}")))?;
        let hashes: Vec<String> = hashes
            .iter()
            .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
            .collect();
        let mut answer = json!({ "from": from, "to": to, "hashes": hashes });
        if let Some(note) = checkpoint {
            answer["checkpoint"] = json!(note);
        }
        Ok(answer)
    })?;
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

fn text(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The OpenAPI 3.1 document of the API, made from the same request and answer shapes the
/// handlers use; a test checks that every route it names is served, and CI validates it.
pub fn openapi() -> Json {
    let problem = json!({ "$ref": "#/components/responses/Problem" });
    let approval_schema = json!({
        "type": "object",
        "required": ["id", "state", "fingerprint", "principal", "capability", "version", "function", "args", "asked"],
        "properties": {
            "id": { "type": "integer", "minimum": 0, "description": "The invocation that asked, recorded as pending" },
            "state": { "type": "string", "enum": ["pending", "granted", "denied", "used", "expired"] },
            "fingerprint": { "type": "string", "description": "SHA-256 (hex) of principal, capability, version, function and arguments" },
            "principal": { "type": "string" },
            "capability": { "type": "string" },
            "version": { "type": "string" },
            "function": { "type": "string" },
            "args": { "type": "object" },
            "asked": { "type": "integer" },
            "decided_by": { "type": ["string", "null"] },
            "decided": { "type": ["integer", "null"] },
            "reason": { "type": ["string", "null"] },
            "expires": { "type": ["integer", "null"] },
            "used_by": { "type": ["integer", "null"] },
        },
    });
    let text = |description: &str| json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } });
    let object = |description: &str, schema: Json| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let authed = |operation: Json| {
        let mut operation = operation;
        operation["security"] = json!([{ "bearer": [] }]);
        operation["responses"]["401"] = problem.clone();
        operation
    };
    let receipt = json!({
        "type": "object",
        "required": ["invocation", "entries", "tree_size", "root", "checkpoint"],
        "properties": {
            "invocation": { "type": "integer", "minimum": 0 },
            "entries": { "type": "array", "items": { "type": "integer", "minimum": 0 }, "minItems": 2, "maxItems": 2 },
            "tree_size": { "type": "integer", "minimum": 1 },
            "root": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
            "checkpoint": { "type": "string" },
            "proof": { "type": "string", "description": "C2SP tlog-proof of the end entry, with ?proof=true" },
        },
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "FemtoClaw host API",
            "version": "1",
            "description": "The execution authority for agents' tools: every invocation authorized, sandboxed and recorded in a signed ledger before it is answered.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": text("The process serves.") } } },
            "/readyz": { "get": { "summary": "Readiness", "responses": { "200": text("The host is open.") } } },
            "/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": object("The OpenAPI document.", json!({ "type": "object" })) } } },
            "/v1/capabilities": { "get": authed(json!({
                "summary": "The capabilities and functions this principal may invoke",
                "responses": { "200": object("Capabilities, each with its functions' argument and result JSON Schemas.", json!({
                    "type": "object",
                    "properties": {
                        "principal": { "type": "string" },
                        "capabilities": { "type": "array", "items": { "type": "object" } },
                    },
                })) },
            })) },
            "/v1/invoke": { "post": authed(json!({
                "summary": "Invoke one function of a capability",
                "parameters": [{ "name": "proof", "in": "query", "required": false, "schema": { "type": "boolean" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["capability", "function"],
                    "properties": {
                        "capability": { "type": "string", "description": "`name` or `name@version`" },
                        "function": { "type": "string" },
                        "args": { "type": "object", "description": "Arguments keyed by parameter name" },
                        "fuel": { "type": "integer", "minimum": 1 },
                        "deadline_ms": { "type": "integer", "minimum": 1, "description": "A deadline shorter than the operator's" },
                    },
                } } } },
                "responses": {
                    "200": object("The result, sent once the invocation's entries are durable.", json!({
                        "type": "object",
                        "required": ["result", "fuel", "receipt"],
                        "properties": {
                            "result": {},
                            "fuel": { "type": "object", "properties": {
                                "budget": { "type": "integer", "minimum": 0 },
                                "consumed": { "type": "integer", "minimum": 0 },
                            } },
                            "output": { "type": "object", "properties": {
                                "stdout": { "type": "string" },
                                "stderr": { "type": "string" },
                                "truncated": { "type": "boolean" },
                            } },
                            "receipt": receipt,
                        },
                    })),
                    "202": {
                        "description": "The policy requires a person's approval of this call (`@approval(\"required\")`) and none is granted: a problem with code `approval-pending` and the approval's id, found at `Location`. Call again once it is granted.",
                        "headers": { "Location": { "schema": { "type": "string" } } },
                        "content": { "application/problem+json": { "schema": {
                            "type": "object",
                            "required": ["code", "approval"],
                            "properties": { "code": { "type": "string" }, "approval": { "type": "integer", "minimum": 0 } },
                        } } },
                    },
                    "400": problem, "403": problem, "404": problem, "413": problem,
                    "422": problem, "429": problem, "500": problem, "503": problem,
                },
            })) },
            "/v1/approvals": { "get": authed(json!({
                "summary": "The approvals this principal asked for or may decide",
                "responses": { "200": object("Approvals, oldest first.", json!({ "type": "array", "items": approval_schema })) },
            })) },
            "/v1/approvals/{id}": {
                "get": authed(json!({
                    "summary": "One approval",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } }],
                    "responses": { "200": object("The approval.", approval_schema.clone()), "404": problem },
                })),
                "post": authed(json!({
                    "summary": "Grant or deny a pending approval (action `approve`; never one's own)",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["decision"],
                        "properties": {
                            "decision": { "type": "string", "enum": ["grant", "deny"] },
                            "reason": { "type": "string" },
                        },
                    } } } },
                    "responses": {
                        "200": object("The decided approval, once its ledger entry is durable.", approval_schema.clone()),
                        "400": problem, "403": problem, "404": problem,
                    },
                })),
            },
            "/v1/ledger/checkpoint": { "get": authed(json!({
                "summary": "The latest signed checkpoint note, byte-exact",
                "responses": { "200": text("A C2SP signed note."), "404": problem },
            })) },
            "/v1/ledger/entries": { "get": authed(json!({
                "summary": "Ledger entries",
                "parameters": [
                    { "name": "from", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0, "maximum": MAX_PAGE } },
                ],
                "responses": { "200": object("At most `limit` entries from `from`.", json!({
                    "type": "object",
                    "properties": { "entries": { "type": "array", "items": { "type": "object" } } },
                })) },
            })) },
            "/v1/ledger/consistency": { "get": authed(json!({
                "summary": "A consistency proof (RFC 9162) between two tree sizes",
                "parameters": [
                    { "name": "from", "in": "query", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                    { "name": "to", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1 }, "description": "Default: the latest checkpoint's size" },
                ],
                "responses": {
                    "200": object("The proof that the tree of `to` entries extends the tree of `from` entries.", json!({
                        "type": "object",
                        "required": ["from", "to", "hashes"],
                        "properties": {
                            "from": { "type": "integer" },
                            "to": { "type": "integer" },
                            "hashes": { "type": "array", "items": { "type": "string", "contentEncoding": "base64" } },
                            "checkpoint": { "type": "string", "description": "The signed checkpoint of `to`, when `to` was not given" },
                        },
                    })),
                    "400": problem, "404": problem,
                },
            })) },
            "/metrics": { "get": authed(json!({
                "summary": "The metrics, as Prometheus text",
                "responses": { "200": text("The Prometheus text format, version 0.0.4.") },
            })) },
            "/v1/ledger/proof/{index}": { "get": authed(json!({
                "summary": "The inclusion proof of one entry",
                "parameters": [{ "name": "index", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } }],
                "responses": { "200": text("A C2SP tlog-proof, the entry as its extra line."), "404": problem },
            })) },
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": { "Problem": {
                "description": "An RFC 9457 problem with a stable `code`.",
                "content": { "application/problem+json": { "schema": {
                    "type": "object",
                    "required": ["type", "title", "status", "code", "detail"],
                    "properties": {
                        "type": { "type": "string" },
                        "title": { "type": "string" },
                        "status": { "type": "integer" },
                        "code": { "type": "string", "enum": [
                            "bad-arguments", "unauthenticated", "denied", "unknown", "too-large",
                            "fuel-exhausted", "trapped", "limit", "deadline", "busy", "over-quota",
                            "approval-pending", "stopping",
                            "other", "integrity", "divergence", "cannot-replay",
                        ] },
                        "detail": { "type": "string" },
                    },
                } } },
            } },
        },
    })
}
