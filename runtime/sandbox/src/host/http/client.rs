//! Performing one request: authorize the origin, the secrets and the resolved address of every
//! hop, then exchange the whole message through reqwest's async client (rustls), pinned to that
//! address. The exchange runs on the tokio runtime the invocation runs under (the server's: the
//! invocation's thread waits while the server's I/O driver does the work), or, outside any
//! runtime (the command line), on one small runtime the process keeps for egress: never a
//! thread per request.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use femtoclaw_policy::{AddressKind, CallAction, Scope};
use reqwest::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::{Egress, Error, Header, Request, Response};
use crate::gate::{Authority, Denied};
use crate::scrub::Scrubber;

/// Headers that carry credentials: like secret headers, dropped once a redirect leaves the
/// origin.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Sends `request` on behalf of a guest, within `left`, the invocation's time left. Nothing
/// returned, and so nothing recorded, holds the value of a secret the invocation used, even
/// where the server echoed it (in the forms [`crate::scrub`] lists).
pub(super) fn send(
    egress: &Egress,
    authority: &mut Authority<'_>,
    request: &Request,
    left: Duration,
) -> Result<Response, Error> {
    let result = exchange(egress, authority, request, left);
    let secrets = authority.secrets();
    if secrets.is_empty() {
        return result;
    }
    match result {
        Ok(mut response) => {
            for header in &mut response.headers {
                header.value = secrets.text(&header.value);
            }
            response.body = secrets.vec(std::mem::take(&mut response.body));
            response.url = secrets.text(&response.url);
            Ok(response)
        }
        Err(error) => Err(scrub_error(error, secrets)),
    }
}

/// The caps of one request: the host's, or smaller where the request asks.
struct Caps {
    max_response_bytes: u64,
    max_redirects: u32,
    deadline: Instant,
}

fn exchange(
    egress: &Egress,
    authority: &mut Authority<'_>,
    request: &Request,
    left: Duration,
) -> Result<Response, Error> {
    let limits = egress.limits;
    let mut method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| invalid(format!("`{}` is not an HTTP method", request.method)))?;
    let body_len = u64::try_from(request.body.len()).unwrap_or(u64::MAX);
    if body_len > limits.max_request_bytes {
        return Err(Error::TooLarge(format!(
            "the request body of {body_len} bytes is larger than the host's cap of {} bytes",
            limits.max_request_bytes
        )));
    }
    let timeout = request
        .timeout_ms
        .map_or(limits.timeout, |ms| {
            Duration::from_millis(u64::from(ms)).min(limits.timeout)
        })
        .min(left);
    let caps = Caps {
        max_response_bytes: request
            .max_response_bytes
            .map_or(limits.max_response_bytes, |m| {
                m.min(limits.max_response_bytes)
            }),
        max_redirects: request.max_redirects.min(limits.max_redirects),
        deadline: Instant::now() + timeout,
    };

    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    for h in &request.headers {
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| invalid(format!("header `{}` has an invalid value", h.name)))?;
        headers.append(header_name(&h.name)?, value);
    }
    let mut url = Url::parse(&request.url)
        .map_err(|e| invalid(format!("`{}` is not an absolute URL: {e}", request.url)))?;
    let mut secret_headers = Vec::new();
    // Every name is checked before any secret is decided on.
    let names = request
        .secret_headers
        .iter()
        .map(|sh| header_name(&sh.name))
        .collect::<Result<Vec<_>, _>>()?;
    // A secret goes to the first origin only (a redirect elsewhere drops it): that origin is
    // its destination, decided once for every hop that carries it.
    let destination = origin(&url)?;
    for (sh, name) in request.secret_headers.iter().zip(names) {
        authority
            .check_to(
                CallAction::SecretUse,
                &Scope::Secret(sh.secret.clone()),
                &destination,
            )
            .map_err(denied)?;
        let value = egress
            .secrets
            .secret(&sh.secret)
            .map_err(|e| invalid(format!("secret `{}` cannot be read: {e}", sh.secret)))?
            .ok_or_else(|| invalid(format!("there is no secret named `{}`", sh.secret)))?;
        let mut header = HeaderValue::from_str(&format!("{}{}", sh.prefix, value.expose()))
            .map_err(|_| {
                invalid(format!(
                    "secret header `{}`: the prefix and the secret's value do not make a valid header value",
                    sh.name
                ))
            })?;
        header.set_sensitive(true);
        authority
            .secrets()
            .add(value.expose())
            .map_err(|e| invalid(format!("secret `{}`: {e}", sh.secret)))?;
        secret_headers.push((name, header));
    }

    let mut body = request.body.clone();
    let mut hops = 0;
    loop {
        let remaining = caps.deadline.saturating_duration_since(Instant::now());
        let targets = authorize(authority, &url, remaining)?;
        let remaining = caps.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Timeout(format!(
                "the request ran out of its {} ms",
                timeout.as_millis()
            )));
        }
        let mut all = headers.clone();
        for (name, value) in &secret_headers {
            all.append(name.clone(), value.clone());
        }
        authority
            .before_effect()
            .map_err(|e| Error::Connection(format!("`{url}` was not requested: {e}")))?;
        let request = client(&url, &targets, remaining)?
            .request(method.clone(), url.clone())
            .headers(all)
            .body(body.clone());
        // Sent from within the runtime, whose timers the request's timeout needs.
        let response = on_runtime(async { request.send().await })?.map_err(|e| classify(&e))?;
        let status = response.status();
        let location = response.headers().get(LOCATION).cloned();
        match location {
            Some(location) if status.is_redirection() && caps.max_redirects > 0 => {
                if hops == caps.max_redirects {
                    return Err(Error::TooManyRedirects(format!(
                        "`{url}` redirects again after {hops} redirects, the most this request follows"
                    )));
                }
                hops += 1;
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| {
                        Error::Protocol(format!("`{url}` redirects to an invalid location"))
                    })?;
                if next.origin() != url.origin() {
                    secret_headers.clear();
                    for name in CREDENTIAL_HEADERS {
                        headers.remove(name);
                    }
                }
                if status == StatusCode::SEE_OTHER && method != Method::HEAD
                    || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                        && method == Method::POST
                {
                    method = Method::GET;
                    body.clear();
                    headers.remove(reqwest::header::CONTENT_TYPE);
                    headers.remove(reqwest::header::CONTENT_LENGTH);
                }
                url = next;
            }
            _ => return on_runtime(read(response, &caps))?,
        }
    }
}

/// The origin of `url`, as the scope `http.request` decides (and `secret.use`'s destination).
fn origin(url: &Url) -> Result<Scope, Error> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(invalid(format!(
            "`{url}`: only `http` and `https` URLs can be requested"
        )));
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(invalid(format!("`{url}` names no host")));
    };
    Scope::http(&format!("{scheme}://{host}:{port}")).map_err(|e| invalid(format!("`{url}`: {e}")))
}

/// Authorizes one hop: its origin, then every address its host resolves to. Returns the
/// addresses that may be connected to (public, or granted by `net.connect`), in resolver order.
fn authorize(
    authority: &mut Authority<'_>,
    url: &Url,
    within: Duration,
) -> Result<Vec<SocketAddr>, Error> {
    let scope = origin(url)?;
    authority
        .check(CallAction::HttpRequest, &scope)
        .map_err(denied)?;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(invalid(format!("`{url}` names no host")));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let candidates: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => lookup(bare, port, within)?,
    };
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for ip in &candidates {
        let kind = AddressKind::of(*ip);
        if kind.is_public()
            || authority
                .check(CallAction::NetConnect, &Scope::Address(*ip))
                .is_ok()
        {
            allowed.push(SocketAddr::new(*ip, port));
        } else {
            refused.push(format!("{} ({kind})", ip.to_canonical()));
        }
    }
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    if refused.is_empty() {
        return Err(Error::Dns(format!("`{bare}` resolves to no address")));
    }
    Err(Error::Denied(format!(
        "denied: `{bare}` resolves only to addresses `net.connect` is not granted on: {}",
        refused.join(", ")
    )))
}

/// The addresses `host` resolves to, each once, in the resolver's order, looked up by the
/// host's resolver pool within `within` (the request's time left).
fn lookup(host: &str, port: u16, within: Duration) -> Result<Vec<IpAddr>, Error> {
    static POOL: OnceLock<Resolver> = OnceLock::new();
    POOL.get_or_init(|| Resolver::new(RESOLVER_THREADS, system_lookup))
        .lookup(host, port, within)
}

/// Threads of the resolver pool: what lookups in flight at once may hold, whatever the guests.
const RESOLVER_THREADS: usize = 4;

/// How the pool resolves one name (the system resolver; a stand-in in tests).
type Resolve = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Vec::from_iter)
}

/// A lookup waiting for a thread of the pool.
struct Job {
    host: String,
    port: u16,
    /// When the asker stops waiting: a job picked up later is dropped unresolved.
    until: Instant,
    /// Set by the thread that picks the job up.
    started: Arc<AtomicBool>,
    reply: mpsc::Sender<std::io::Result<Vec<SocketAddr>>>,
}

/// The system resolver blocks for as long as it likes and cannot be cancelled, so lookups run
/// on a fixed, small pool of threads fed by one queue: a lookup that outlives its asker's time
/// ties up one of those threads, never a new one, and a job whose asker has stopped waiting is
/// dropped unresolved. When every thread is busy a lookup waits at most its time left.
struct Resolver {
    jobs: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

impl Resolver {
    fn new(threads: usize, resolve: Resolve) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name("femtoclaw-dns".into())
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { return };
                        if Instant::now() >= job.until {
                            continue;
                        }
                        job.started.store(true, Ordering::SeqCst);
                        let _ = job.reply.send(resolve(&job.host, job.port));
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        Self {
            jobs: Mutex::new(tx),
            threads: started,
        }
    }

    fn lookup(&self, host: &str, port: u16, within: Duration) -> Result<Vec<IpAddr>, Error> {
        let ms = within.as_millis();
        let (reply, answer) = mpsc::channel();
        let started = Arc::new(AtomicBool::new(false));
        let job = Job {
            host: host.to_owned(),
            port,
            until: Instant::now()
                .checked_add(within)
                .unwrap_or_else(Instant::now),
            started: Arc::clone(&started),
            reply,
        };
        let queued = self.threads > 0
            && self
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(job)
                .is_ok();
        if !queued {
            return Err(Error::Dns(format!(
                "cannot look `{host}` up: the host has no resolver thread"
            )));
        }
        let resolved = match answer.recv_timeout(within) {
            Ok(resolved) => {
                resolved.map_err(|e| Error::Dns(format!("`{host}` does not resolve: {e}")))?
            }
            Err(_) if !started.load(Ordering::SeqCst) => {
                return Err(Error::Timeout(format!(
                    "cannot look `{host}` up: all {} of the host's resolver threads stayed busy \
                     for the {ms} ms the request had left",
                    self.threads
                )));
            }
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "looking `{host}` up took longer than the {ms} ms the request had left"
                )));
            }
        };
        let mut found: Vec<IpAddr> = Vec::new();
        for addr in resolved {
            if !found.contains(&addr.ip()) {
                found.push(addr.ip());
            }
        }
        Ok(found)
    }
}

/// A client for one hop: no proxy, no redirects of its own, and no name lookup of its own: the
/// URL's host is pinned to the addresses the host authorized (tried in order).
fn client(url: &Url, targets: &[SocketAddr], timeout: Duration) -> Result<Client, Error> {
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .dns_resolver(Arc::new(NoLookup))
        .user_agent(concat!("femtoclaw-host/", env!("CARGO_PKG_VERSION")));
    if let Some(domain) = url.domain() {
        builder = builder.resolve_to_addrs(domain, targets);
    }
    builder
        .build()
        .map_err(|e| Error::Connection(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// Runs `future` to completion from this (blocking) thread: on the runtime the thread belongs
/// to, or on the process's egress runtime when it belongs to none. What needs the runtime
/// (timers, sockets) must be made inside `future`, as it is polled.
fn on_runtime<F: std::future::Future>(future: F) -> Result<F::Output, Error> {
    static EGRESS: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return Ok(handle.block_on(future));
    }
    let runtime = EGRESS.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("femtoclaw-egress")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => Err(Error::Connection(format!(
            "no runtime for the host's HTTP client: {e}"
        ))),
    }
}

/// Reads the whole body, refusing one larger than the cap.
async fn read(mut response: reqwest::Response, caps: &Caps) -> Result<Response, Error> {
    let cap = caps.max_response_bytes;
    let too_large = || {
        Error::TooLarge(format!(
            "the response body is larger than the cap of {cap} bytes"
        ))
    };
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(too_large());
    }
    let status = response.status().as_u16();
    let url = response.url().to_string();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(format!("reading the response body of `{url}` timed out"))
            } else {
                Error::Connection(format!(
                    "reading the response body of `{url}`: {}",
                    chain(&e)
                ))
            }
        })?;
        let Some(chunk) = chunk else { break };
        body.extend_from_slice(&chunk);
        // Refused as soon as it is over the cap: a body that never ends is not read to its end.
        if u64::try_from(body.len()).unwrap_or(u64::MAX) > cap {
            return Err(too_large());
        }
    }
    Ok(Response {
        status,
        headers,
        body,
        url,
    })
}

/// A name resolver that resolves nothing: every connection goes to an address the host
/// authorized (pinned with `ClientBuilder::resolve`), never to a second lookup's answer.
#[derive(Debug)]
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let message = format!("`{}` was not resolved by the host", name.as_str());
        Box::pin(std::future::ready(Err(message.into())))
    }
}

/// Headers the host owns: `host` comes from the authorized URL (a guest-chosen one could route
/// a secret-bearing request to another virtual host behind the same front end), framing and
/// hop-by-hop headers from the host's own HTTP client, and `accept-encoding` is `identity`, so
/// that what comes back is scrubbed of secrets as it is, never compressed past the scrubber.
const HOST_OWNED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "accept-encoding",
];

/// A header name a guest may set (as a plain or a secret header).
fn header_name(name: &str) -> Result<HeaderName, Error> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
    if HOST_OWNED.contains(&header.as_str()) {
        return Err(invalid(format!(
            "header `{name}` is set by the host, never by a capability"
        )));
    }
    Ok(header)
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest(message)
}

fn denied(denied: Denied) -> Error {
    Error::Denied(denied.to_string())
}

/// Sorts a transport error into the WIT error cases.
fn classify(error: &reqwest::Error) -> Error {
    let message = chain(error);
    if error.is_timeout() {
        Error::Timeout(message)
    } else if error.is_connect() {
        Error::Connection(message)
    } else {
        Error::Protocol(message)
    }
}

/// An error with its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// `error` with its message scrubbed of `secrets`.
fn scrub_error(error: Error, secrets: &Scrubber) -> Error {
    let s = |t: String| secrets.text(&t);
    match error {
        Error::Denied(t) => Error::Denied(s(t)),
        Error::InvalidRequest(t) => Error::InvalidRequest(s(t)),
        Error::Dns(t) => Error::Dns(s(t)),
        Error::Connection(t) => Error::Connection(s(t)),
        Error::Timeout(t) => Error::Timeout(s(t)),
        Error::TooLarge(t) => Error::TooLarge(s(t)),
        Error::TooManyRedirects(t) => Error::TooManyRedirects(s(t)),
        Error::Protocol(t) => Error::Protocol(s(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-SEC-2025
    #[test]
    fn lookups_answer_within_the_time_left_or_say_why_not() {
        let found = lookup("localhost", 80, Duration::from_secs(10));
        assert!(
            found
                .as_ref()
                .is_ok_and(|ips| ips.iter().all(IpAddr::is_loopback)),
            "{found:?}"
        );
        let missing = lookup("no-such-host.invalid", 80, Duration::from_secs(10));
        assert!(
            matches!(&missing, Err(Error::Dns(m) | Error::Timeout(m)) if m.contains("no-such-host.invalid")),
            "{missing:?}"
        );
    }

    /// Held by a test: every lookup of `stuck.test` blocks until it is released, like a system
    /// resolver stuck on a slow name server.
    static STUCK: Mutex<()> = Mutex::new(());
    /// Lookups of `free.test` the stand-in resolver performed.
    static FREE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn stand_in(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if host == "stuck.test" {
            drop(STUCK.lock());
        } else {
            FREE.fetch_add(1, Ordering::SeqCst);
        }
        Ok(vec![SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)])
    }

    // Verifies: FC-SEC-2024
    #[test]
    fn a_lookup_waits_for_a_busy_pool_at_most_its_time_left_and_the_pool_never_grows() {
        let pool = Resolver::new(2, stand_in);
        let held = STUCK.lock().unwrap();
        // Two lookups occupy both threads and run out of time while the resolver is stuck.
        for _ in 0..2 {
            let slow = pool.lookup("stuck.test", 80, Duration::from_millis(500));
            assert!(
                matches!(&slow, Err(Error::Timeout(m)) if m.starts_with("looking `stuck.test` up took longer than the 500 ms")),
                "{slow:?}"
            );
        }
        // Every thread is busy: the next lookup waits its time left, then says why it failed.
        let queued = pool.lookup("free.test", 80, Duration::from_millis(50));
        assert!(
            matches!(&queued, Err(Error::Timeout(m)) if m == "cannot look `free.test` up: all 2 of the host's resolver threads stayed busy for the 50 ms the request had left"),
            "{queued:?}"
        );
        drop(held);
        // Released, the pool serves again; the job whose asker gave up was dropped, not
        // resolved late; no thread was added.
        let ok = pool.lookup("free.test", 80, Duration::from_secs(10));
        assert_eq!(ok.unwrap(), [IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(FREE.load(Ordering::SeqCst), 1);
        assert_eq!(pool.threads, 2);
    }
}
