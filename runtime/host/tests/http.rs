//! HTTP egress end to end, against a server on 127.0.0.1 that this test runs and stops: granted
//! origins answer; an ungranted origin, a redirect to one, a name or literal resolving to
//! loopback without `net.connect`, the metadata address and `::1` are denied with the decision
//! in the ledger; caps and timeouts hold; a secret's value reaches the server and nothing else;
//! replay answers from the ledger without a single request.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Host, code, command, s, stderr, stdout};
use serde_json::{Value as Json, json};

/// The secret the tests store; it must never come back out of the host.
const SECRET: &str = "tok-7f3a9c-never-echo-me";

/// Invoke and link anything; reach `127.0.0.1`, `localhost`, `::1` and the metadata address
/// by origin; use secret `api-token`. No address is granted: see [`LOOPBACK`].
const POLICY: &str = r#"
@id("test:invoke")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource);
@id("test:link")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"link", resource);
@id("test:local-origins")
permit (principal, action == FemtoClaw::Action::"http.request", resource)
when { ["127.0.0.1", "localhost", "::1", "169.254.169.254"].contains(resource.host) };
@id("test:api-token")
permit (principal, action == FemtoClaw::Action::"secret.use", resource)
when { resource.name == "api-token" };
"#;

/// Grants loopback addresses explicitly.
const LOOPBACK: &str = r#"
@id("test:loopback")
permit (principal, action == FemtoClaw::Action::"net.connect", resource)
when { resource.address.isLoopback() };
"#;

/// A small HTTP/1.1 server on a loopback address, for one test. It counts requests, keeps their
/// heads, and stops when dropped or after two minutes, whichever comes first.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(bind: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, r, st) = (hits.clone(), heads.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !st.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, r) = (h.clone(), r.clone());
                        std::thread::spawn(move || serve(stream, &h, &r));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            port,
            hits,
            heads,
            stop,
            thread: Some(thread),
        })
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, hits: &AtomicUsize, heads: &Mutex<Vec<String>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    hits.fetch_add(1, Ordering::SeqCst);
    heads.lock().unwrap().push(head.clone());
    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let auth = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("authorization:")
                .then(|| l[14..].trim().to_owned())
        })
        .unwrap_or_else(|| "none".to_owned());
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
    };
    match target
        .split_once('?')
        .map_or((target.as_str(), ""), |(p, q)| (p, q))
    {
        ("/ok", _) => respond(&mut stream, "200 OK", "", b"hello from the test server"),
        ("/echo", _) => respond(
            &mut stream,
            "200 OK",
            &format!("X-Echo-Authorization: {auth}\r\n"),
            head.as_bytes(),
        ),
        ("/redirect", to) => respond(
            &mut stream,
            "302 Found",
            &format!("Location: {}\r\n", to.strip_prefix("to=").unwrap_or("/ok")),
            b"",
        ),
        ("/loop", _) => respond(&mut stream, "302 Found", "Location: /loop\r\n", b""),
        ("/echo-encoded", _) => {
            let (headers, body) = encoded_echo(token(&auth), &head);
            respond(&mut stream, "200 OK", &headers, body.as_bytes());
        }
        ("/echo-reversed", _) => {
            let reversed: String = token(&auth).chars().rev().collect();
            respond(&mut stream, "200 OK", "", reversed.as_bytes());
        }
        ("/redirect-secret", _) => {
            let origin = head
                .lines()
                .find_map(|l| l.strip_prefix("host: "))
                .unwrap_or("127.0.0.1");
            let (host, port) = origin.rsplit_once(':').unwrap_or((origin, "80"));
            let location = if host == "127.0.0.1" {
                format!("http://{origin}/ok?t={}", token(&auth))
            } else {
                format!("http://{}.localhost:{port}/ok", token(&auth))
            };
            respond(
                &mut stream,
                "302 Found",
                &format!("Location: {location}\r\n"),
                b"",
            );
        }
        ("/big", _) => respond(&mut stream, "200 OK", "", &[b'x'; 100_000]),
        ("/stream", _) => {
            // No Content-Length: the body ends when the connection closes.
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(&[b'y'; 100_000]);
        }
        ("/slow", _) => std::thread::sleep(Duration::from_secs(2)),
        _ => respond(&mut stream, "404 Not Found", "", b"no such page"),
    }
}

/// The last word of an `authorization` value: the secret, whatever its prefix.
fn token(auth: &str) -> &str {
    auth.rsplit(' ').next().unwrap_or_default()
}

/// Every byte of `text` as `%HH`, upper-case hex.
fn percent(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Every character of `text` as a JSON `\uXXXX` escape.
fn json_escapes(text: &str) -> String {
    text.chars()
        .map(|c| format!("\\u{:04x}", u32::from(c)))
        .collect()
}

/// A response that echoes `token` URL-, JSON- and base64-encoded and as hex, in headers and
/// in the body, with the whole request `head` base64'd.
fn encoded_echo(token: &str, head: &str) -> (String, String) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let basic = STANDARD.encode(format!("user:{token}"));
    let headers = format!(
        "X-Echo-Percent: {}\r\nX-Echo-Json: {}\r\nX-Echo-Basic: Basic {basic}\r\n",
        percent(token).to_lowercase(),
        json_escapes(token),
    );
    let body = format!(
        "{{\"percent\": \"{}\", \"json\": {}, \"basic\": \"{basic}\", \
         \"url-safe\": \"{}\", \"head\": \"{}\", \"hex\": \"{}\"}}",
        percent(token),
        serde_json::to_string(token).unwrap(),
        URL_SAFE_NO_PAD.encode(token),
        STANDARD.encode(head),
        hex::encode_upper(token),
    );
    (headers, body)
}

/// The forms of [`SECRET`] the host must never let out, each long enough that finding it
/// means the secret leaked: base64 ones without the characters at their edges, which also
/// depend on what is around the secret.
fn secret_forms() -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut forms = vec![
        ("literal", SECRET.to_owned()),
        ("percent", percent(SECRET)),
        ("percent, lower-case", percent(SECRET).to_lowercase()),
        ("json escapes", json_escapes(SECRET)),
        ("hex", hex::encode(SECRET)),
        ("hex, upper-case", hex::encode_upper(SECRET)),
    ];
    for prefix in ["", "u", "us"] {
        for (name, encoded) in [
            ("base64", STANDARD.encode(format!("{prefix}{SECRET}"))),
            (
                "base64, url-safe",
                URL_SAFE_NO_PAD.encode(format!("{prefix}{SECRET}")),
            ),
        ] {
            forms.push((name, encoded[4..encoded.len() - 4].to_owned()));
        }
    }
    forms
}

/// Asserts `bytes`, `what` the test looks at, holds no form of [`SECRET`].
fn assert_no_secret(what: &str, bytes: &[u8]) {
    for (form, needle) in secret_forms() {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{what} holds the secret ({form}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Asserts the ledger, exported and shown, holds no form of [`SECRET`].
fn assert_ledger_has_no_secret(host: &Host) {
    let export = host.export();
    assert_no_secret("the export", &std::fs::read(&export).unwrap());
    let shown = host.run(&["log", "show", "--limit", "1000", "--json"]);
    assert_eq!(code(&shown), 0, "{}", stderr(&shown));
    assert_no_secret("`log show`", stdout(&shown).as_bytes());
}

/// A host with `policy` and the first-party fetch component installed as `webfetch`
/// (publisher `test`), requesting the test origins on `port` (and `port6` on `::1`).
fn host(policy: &str, port: u16, port6: u16) -> Host {
    let host = Host::with_policy(policy);
    let manifest = format!(
        "name = \"webfetch\"\nversion = \"1.0.0\"\npublisher = \"test\"\nfuel = 500000000\n\n\
         [requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\n\
         http = [\"http://127.0.0.1:{port}\", \"http://localhost:{port}\", \"http://forbidden.invalid:{port}\", \
         \"http://169.254.169.254\", \"http://[::1]:{port6}\"]\nsecrets = [\"api-token\"]\n"
    );
    host.add(
        femtoclaw_capabilities::find("fetch").unwrap().component,
        &manifest,
    );
    host
}

/// Invokes `webfetch`'s `function` with `args`; returns the whole `--json` report.
fn fetch(host: &Host, function: &str, args: &Json) -> Json {
    let out = host.run(&[
        "invoke",
        "webfetch",
        function,
        "--args",
        &args.to_string(),
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The error text of a report whose result must be an error.
fn error(report: &Json) -> String {
    report["result"]["err"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {report}"))
        .to_owned()
}

/// The decisions of the ledger, as `(action, resource, allowed)`.
fn decisions(host: &Host) -> Vec<(String, String, bool)> {
    host.entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == json!("decision"))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["resource"].as_str().unwrap().to_owned(),
                e["allowed"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn local_server() -> Server {
    Server::start("127.0.0.1:0").unwrap()
}

// Verifies: FC-CAP-1209, FC-SEC-1305, FC-SEC-2009, FC-SEC-2020
#[test]
fn a_granted_origin_and_address_answers_and_the_exchange_is_recorded() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    let url = format!("http://127.0.0.1:{}/ok", server.port);
    let report = fetch(&host, "get", &json!({ "url": url }));
    let ok = &report["result"]["ok"];
    assert_eq!(ok["status"], json!(200), "{report}");
    assert_eq!(ok["text"], json!("hello from the test server"));
    assert_eq!(server.hits(), 1);
    let decided = decisions(&host);
    assert!(decided.contains(&(
        "http.request".into(),
        format!("http://127.0.0.1:{}", server.port),
        true
    )));
    assert!(decided.contains(&("net.connect".into(), "127.0.0.1".into(), true)));
    // The host call is in the ledger with its request and its response.
    let call = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .find(|e| e["type"] == json!("host-call") && e["function"] == json!("send"))
        .unwrap();
    assert_eq!(call["interface"], json!("femtoclaw:host/http@0.1.0"));
    assert!(call["params"].to_string().contains(&url), "{call}");
    assert!(call["result"].to_string().contains("200"), "{call}");
}

// Verifies: FC-CAP-1216, FC-CAP-1222, FC-EXT-5316, FC-SEC-1309, FC-POL-1715, FC-SEC-2001, FC-SEC-2020
#[test]
fn an_ungranted_origin_is_denied_with_the_decision_in_the_ledger_and_no_request() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    // Requested by the manifest, not permitted by the policy.
    let report = fetch(
        &host,
        "get",
        &json!({ "url": format!("http://forbidden.invalid:{}/ok", server.port) }),
    );
    let err = error(&report);
    assert!(
        err.starts_with(&format!(
            "denied: `http.request` on `http://forbidden.invalid:{}`",
            server.port
        )),
        "{err}"
    );
    // Not even requested by the manifest.
    let report = fetch(
        &host,
        "get",
        &json!({ "url": format!("http://127.0.0.1:{}/ok", server.port + 1) }),
    );
    assert!(error(&report).starts_with("denied"), "{report}");
    assert_eq!(server.hits(), 0);
    let denied: Vec<_> = decisions(&host).into_iter().filter(|d| !d.2).collect();
    assert_eq!(
        denied,
        [
            (
                "http.request".to_owned(),
                format!("http://forbidden.invalid:{}", server.port),
                false
            ),
            (
                "http.request".to_owned(),
                format!("http://127.0.0.1:{}", server.port + 1),
                false
            ),
        ]
    );
    // `log show` names the action and resource; the export holds the same decision.
    let shown = stdout(&host.run(&["log", "show", "--limit", "1000"]));
    assert!(shown.contains("forbidden.invalid"), "{shown}");
}

// Verifies: FC-SEC-2001, FC-SEC-2010, FC-CONF-2903
#[test]
fn the_default_policy_links_fetch_but_grants_no_host() {
    let host = Host::new();
    let out = host.run(&[
        "invoke",
        "fetch",
        "get",
        "--args",
        r#"{"url":"https://example.com/"}"#,
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        error(&report),
        "denied: `http.request` on `https://example.com:443` is not granted to this capability"
    );
    assert_eq!(
        decisions(&host)
            .into_iter()
            .filter(|d| d.0 == "http.request")
            .collect::<Vec<_>>(),
        [(
            "http.request".to_owned(),
            "https://example.com:443".to_owned(),
            false
        )]
    );
}

// Verifies: FC-POL-1710, FC-SEC-2004, FC-SEC-2005, FC-CRYPTO-3507
#[test]
fn a_redirect_to_an_ungranted_origin_is_denied_at_that_hop() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    let url = format!(
        "http://127.0.0.1:{p}/redirect?to=http://forbidden.invalid:{p}/ok",
        p = server.port
    );
    let report = fetch(&host, "get", &json!({ "url": url }));
    assert!(
        error(&report).starts_with("denied: `http.request` on `http://forbidden.invalid"),
        "{report}"
    );
    assert_eq!(server.hits(), 1, "only the first hop reached the server");
    // A same-origin redirect is followed; with `max-redirects` 0 it comes back as is.
    let url = format!("http://127.0.0.1:{}/redirect?to=/ok", server.port);
    let report = fetch(&host, "get", &json!({ "url": url }));
    assert_eq!(
        report["result"]["ok"]["text"],
        json!("hello from the test server")
    );
    let report = fetch(
        &host,
        "request",
        &json!({ "method": "GET", "url": url, "max-redirects": 0 }),
    );
    assert_eq!(report["result"]["ok"]["status"], json!(302), "{report}");
}

// Verifies: FC-SEC-2005, FC-CRYPTO-3506
#[test]
fn a_redirect_loop_stops_at_the_requested_hop_count() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    let report = fetch(
        &host,
        "request",
        &json!({ "method": "GET", "url": format!("http://127.0.0.1:{}/loop", server.port), "max-redirects": 3 }),
    );
    assert!(
        error(&report).starts_with("too many redirects: "),
        "{report}"
    );
    assert_eq!(server.hits(), 4, "the first request and three redirects");
}

// Verifies: FC-POL-1707, FC-POL-1717, FC-SEC-2002, FC-SEC-2011, FC-CRYPTO-3507, FC-CRYPTO-3517
#[test]
fn loopback_names_and_literals_are_refused_without_an_address_grant() {
    let server = local_server();
    let host = host(POLICY, server.port, 1);
    for url in [
        format!("http://localhost:{}/ok", server.port),
        format!("http://127.0.0.1:{}/ok", server.port),
    ] {
        let report = fetch(&host, "get", &json!({ "url": url }));
        let err = error(&report);
        assert!(err.starts_with("denied: "), "{url}: {err}");
        assert!(err.contains("127.0.0.1 (loopback)"), "{url}: {err}");
    }
    assert_eq!(server.hits(), 0);
    assert!(decisions(&host).contains(&("net.connect".into(), "127.0.0.1".into(), false)));
    // Granting loopback explicitly makes the same name work.
    host.set_policy(&format!("{POLICY}{LOOPBACK}"));
    let report = fetch(
        &host,
        "get",
        &json!({ "url": format!("http://localhost:{}/ok", server.port) }),
    );
    assert_eq!(report["result"]["ok"]["status"], json!(200), "{report}");
    assert_eq!(server.hits(), 1);
}

// Verifies: FC-POL-1713, FC-POL-1717, FC-SEC-2002, FC-SEC-2012
#[test]
fn the_metadata_address_is_refused_before_any_connection() {
    // Origin granted by manifest and policy, loopback granted too: the metadata service is
    // still refused, at once (no connection attempt, so no timeout).
    let host = host(&format!("{POLICY}{LOOPBACK}"), 1, 1);
    let started = Instant::now();
    let report = fetch(
        &host,
        "request",
        &json!({ "method": "GET", "url": "http://169.254.169.254/latest/meta-data/", "timeout-ms": 20000 }),
    );
    let err = error(&report);
    assert!(err.starts_with("denied: "), "{err}");
    assert!(err.contains("169.254.169.254 (metadata)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(decisions(&host).contains(&("net.connect".into(), "169.254.169.254".into(), false)));
}

// Verifies: FC-SEC-2011
#[test]
fn ipv6_loopback_is_refused_without_an_address_grant() {
    let Ok(server) = Server::start("[::1]:0") else {
        println!(
            "skipped: cannot bind [::1] here (no IPv6 loopback); AddressKind unit tests cover ::1"
        );
        return;
    };
    let host = host(POLICY, 1, server.port);
    let url = format!("http://[::1]:{}/ok", server.port);
    let report = fetch(&host, "get", &json!({ "url": url }));
    assert!(error(&report).contains("::1 (loopback)"), "{report}");
    assert_eq!(server.hits(), 0);
    host.set_policy(&format!("{POLICY}{LOOPBACK}"));
    let report = fetch(&host, "get", &json!({ "url": url }));
    assert_eq!(report["result"]["ok"]["status"], json!(200), "{report}");
}

// Verifies: FC-SEC-2022, FC-CRYPTO-3501, FC-CRYPTO-3506, FC-CRYPTO-3518
#[test]
fn oversized_responses_are_refused_whatever_the_server_declares() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    for path in ["/big", "/stream"] {
        let url = format!("http://127.0.0.1:{}{path}", server.port);
        let report = fetch(
            &host,
            "request",
            &json!({ "method": "GET", "url": url, "max-response-bytes": 1000 }),
        );
        let err = error(&report);
        assert!(
            err.starts_with("too large: the response body is larger than the cap of 1000 bytes"),
            "{path}: {err}"
        );
        // Under the host's own cap (4 MiB) the same body is fine.
        let report = fetch(&host, "get", &json!({ "url": url }));
        assert_eq!(
            report["result"]["ok"]["text"].as_str().unwrap().len(),
            100_000
        );
    }
}

// Verifies: FC-SEC-2023, FC-CRYPTO-3506
#[test]
fn a_server_that_never_answers_times_out() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    let started = Instant::now();
    let report = fetch(
        &host,
        "request",
        &json!({ "method": "GET", "url": format!("http://127.0.0.1:{}/slow", server.port), "timeout-ms": 300 }),
    );
    assert!(error(&report).starts_with("timeout: "), "{report}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// `secret set NAME` with `value` on its stdin.
fn secret_set(host: &Host, name: &str, value: &str) -> std::process::Output {
    let mut child = command(host.data.path(), &["secret", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Stores [`SECRET`] as `api-token` through the CLI; checks the command never prints it.
fn store_secret(host: &Host) {
    let out = secret_set(host, "api-token", &format!("{SECRET}\n"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET));
}

// Verifies: FC-SEC-2201, FC-SEC-2202, FC-SEC-2203, FC-SEC-2208, FC-CONF-2912, FC-CRYPTO-3512
#[test]
fn secrets_are_stored_privately_and_listed_by_name_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let host = Host::new();
    store_secret(&host);
    let dir = host.data.path().join("secrets");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("api-token")), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("api-token")).unwrap(),
        SECRET
    );
    let list = host.run(&["secret", "list"]);
    assert_eq!(stdout(&list), "api-token\n");
    let bad = host.run(&["secret", "remove", "../keys"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    let removed = host.run(&["secret", "remove", "api-token"]);
    assert_eq!(code(&removed), 0, "{}", stderr(&removed));
    assert_eq!(stdout(&host.run(&["secret", "list"])), "");
    assert_eq!(code(&host.run(&["secret", "remove", "api-token"])), 3);
}

// Verifies: FC-SEC-2215
#[test]
fn secret_set_refuses_a_value_too_long_to_scrub_and_stores_nothing() {
    let host = Host::new();
    let set = |name: &str, value: &str| secret_set(&host, name, value);
    let out = set("big", &"x".repeat(8193));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "the value of secret `big` is 8193 bytes long, more than the 8192 bytes the host can scrub"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!host.data.path().join("secrets").join("big").exists());
    assert_eq!(stdout(&host.run(&["secret", "list"])), "");
    let out = set("edge", &"x".repeat(8192));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&host.run(&["secret", "list"])), "edge\n");
}

// Verifies: FC-CAP-1217, FC-EXT-5304, FC-EXT-5313, FC-SEC-2014, FC-SEC-2201, FC-SEC-2204, FC-SEC-2206, FC-SEC-2209
#[test]
fn a_secret_reaches_the_server_and_never_the_guest_or_the_ledger() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    store_secret(&host);
    let secret_header =
        json!([{ "name": "authorization", "secret": "api-token", "prefix": "Bearer " }]);
    // The echo server sends the header back in a response header and in the body.
    let out = host.run(&[
        "invoke",
        "webfetch",
        "request",
        "--args",
        &json!({
            "method": "GET",
            "url": format!("http://127.0.0.1:{}/echo", server.port),
            "secret-headers": secret_header,
        })
        .to_string(),
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        server.heads()[0].contains(&format!("authorization: Bearer {SECRET}")),
        "{:?}",
        server.heads()
    );
    let guest_sees = stdout(&out);
    assert!(!guest_sees.contains(SECRET), "{guest_sees}");
    assert!(guest_sees.contains("Bearer [redacted]"), "{guest_sees}");

    // A cross-origin redirect drops the secret header.
    let url = format!(
        "http://127.0.0.1:{p}/redirect?to=http://localhost:{p}/echo",
        p = server.port
    );
    let report = fetch(
        &host,
        "request",
        &json!({ "method": "GET", "url": url, "secret-headers": secret_header }),
    );
    assert_eq!(report["result"]["ok"]["status"], json!(200), "{report}");
    assert!(
        !server.heads()[2]
            .to_ascii_lowercase()
            .contains("authorization")
    );

    // The ledger names the secret and never holds its value.
    let decided = decisions(&host);
    let to = format!("api-token@http://127.0.0.1:{}", server.port);
    assert!(
        decided.contains(&("secret.use".into(), to, true)),
        "{decided:?}"
    );
    let export = host.files.path().join("ledger.export");
    let out = host.run(&["log", "export", s(&export)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let bytes = std::fs::read(&export).unwrap();
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the export holds the secret"
    );
    assert!(bytes.windows(9).any(|w| w == b"api-token"));
    let shown = stdout(&host.run(&["log", "show", "--limit", "1000", "--json"]));
    assert!(!shown.contains(SECRET));
}

// Verifies: FC-SEC-1309, FC-POL-1716, FC-SEC-2204
#[test]
fn an_ungranted_secret_is_denied_and_nothing_is_sent() {
    let server = local_server();
    let host = host(
        &format!("{POLICY}{LOOPBACK}").replace(
            "resource.name == \"api-token\"",
            "resource.name == \"other-token\"",
        ),
        server.port,
        1,
    );
    store_secret(&host);
    let report = fetch(
        &host,
        "request",
        &json!({
            "method": "GET",
            "url": format!("http://127.0.0.1:{}/echo", server.port),
            "secret-headers": [{ "name": "authorization", "secret": "api-token", "prefix": "" }],
        }),
    );
    let to = format!("api-token@http://127.0.0.1:{}", server.port);
    assert_eq!(
        error(&report),
        format!("denied: `secret.use` on `{to}` is not granted to this capability")
    );
    assert_eq!(server.hits(), 0);
    assert!(decisions(&host).contains(&("secret.use".into(), to, false)));
}

// Verifies: FC-CAP-1210, FC-SEC-2009
#[test]
fn replay_answers_http_from_the_ledger_without_any_request() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    let url = format!("http://127.0.0.1:{}/ok", server.port);
    fetch(&host, "get", &json!({ "url": url }));
    fetch(
        &host,
        "get",
        &json!({ "url": format!("http://forbidden.invalid:{}/", server.port) }),
    );
    // A body large enough to be recorded by digest, beside the ledger.
    let big = fetch(
        &host,
        "get",
        &json!({ "url": format!("http://127.0.0.1:{}/big", server.port) }),
    );
    assert_eq!(big["result"]["ok"]["text"].as_str().unwrap().len(), 100_000);
    assert_eq!(server.hits(), 2);
    let empty = tempfile::tempdir().unwrap();
    let report = host.replay_on(empty.path(), &host.export());
    assert_eq!(report["identical"], json!(3), "{report}");
    assert_eq!(server.hits(), 2, "replay sent a request");
}

// Verifies: FC-SEC-2008, FC-CRYPTO-3506
#[test]
fn https_speaks_tls_and_a_failed_handshake_is_an_error_not_a_crash() {
    // A loopback listener that takes one connection, keeps the first bytes the host sends and
    // answers plain text: the host must have started a TLS handshake, and must fail it cleanly.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok((mut stream, _)) = listener.accept() {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut hello = [0u8; 5];
                let read = stream.read_exact(&mut hello).ok().map(|()| hello);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls");
                return read;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    });
    let host = Host::with_policy(&format!(
        "{POLICY}{LOOPBACK}\n@id(\"test:https\")\npermit (principal, action == FemtoClaw::Action::\"http.request\", resource)\n\
         when {{ resource.scheme == \"https\" && resource.host == \"127.0.0.1\" }};\n"
    ));
    let manifest = format!(
        "name = \"webfetch\"\nversion = \"1.0.0\"\npublisher = \"test\"\nfuel = 500000000\n\n\
         [requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\n\
         http = [\"https://127.0.0.1:{port}\"]\n"
    );
    host.add(
        femtoclaw_capabilities::find("fetch").unwrap().component,
        &manifest,
    );
    let url = format!("https://127.0.0.1:{port}/ok");
    let report = fetch(&host, "get", &json!({ "url": url }));
    let err = error(&report);
    assert!(!err.starts_with("timeout"), "{err}");
    // A TLS record of type handshake (0x16), version 3.x: a ClientHello.
    let hello = first.join().unwrap().expect("the host connected");
    assert_eq!(hello[0], 0x16, "{hello:?}");
    assert_eq!(hello[1], 3, "{hello:?}");
    let decided = decisions(&host);
    assert!(decided.contains(&(
        "http.request".into(),
        format!("https://127.0.0.1:{port}"),
        true
    )));
    assert!(decided.contains(&("net.connect".into(), "127.0.0.1".into(), true)));
}

// Verifies: FC-SEC-2026
#[test]
fn the_operator_sets_the_caps_in_the_http_section_and_a_bad_one_is_named() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    let url = format!("http://127.0.0.1:{}/ok", server.port);
    host.configure("[http]\nmax_response_bytes = 10\n");
    let err = error(&fetch(&host, "get", &json!({ "url": url })));
    assert!(err.starts_with("too large"), "{err}");
    assert!(err.contains("10"), "{err}");

    // Nothing the operator wrote is ignored silently: each bad setting is refused, named
    // with its file and line.
    for (text, named) in [
        ("[http]\nmax_respons_bytes = 10\n", "http.max_respons_bytes"),
        ("[http]\ntimeout_ms = 0\n", "http.timeout_ms"),
    ] {
        host.configure(text);
        let args = json!({ "url": url }).to_string();
        let out = host.run(&["invoke", "webfetch", "get", "--args", &args]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("femtoclaw.toml` line 2") && err.contains(named),
            "{err}"
        );
    }
}

// Verifies: FC-SEC-2016, FC-SEC-2017
#[test]
fn the_host_owns_host_framing_hop_by_hop_and_encoding_headers() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    store_secret(&host);
    let url = format!("http://127.0.0.1:{}/echo", server.port);
    for (headers, secret_headers, named) in [
        (
            json!([{ "name": "Host", "value": "internal.example" }]),
            json!([]),
            "Host",
        ),
        (
            json!([{ "name": "accept-encoding", "value": "gzip" }]),
            json!([]),
            "accept-encoding",
        ),
        (
            json!([{ "name": "Content-Length", "value": "0" }]),
            json!([]),
            "Content-Length",
        ),
        (
            json!([{ "name": "transfer-encoding", "value": "chunked" }]),
            json!([]),
            "transfer-encoding",
        ),
        (
            json!([{ "name": "connection", "value": "close" }]),
            json!([]),
            "connection",
        ),
        // A secret must never become a host name.
        (
            json!([]),
            json!([{ "name": "host", "secret": "api-token", "prefix": "" }]),
            "host",
        ),
    ] {
        let args = json!({
            "method": "GET", "url": url, "headers": headers, "secret-headers": secret_headers,
        });
        let report = fetch(&host, "request", &args);
        let err = report["result"]["err"].as_str().unwrap_or_default();
        assert!(
            err.contains(&format!("header `{named}` is set by the host")),
            "{named}: {report}"
        );
    }
    assert_eq!(server.hits(), 0, "no refused request was sent");
    assert!(
        !decisions(&host)
            .iter()
            .any(|(action, _, _)| action == "secret.use"),
        "no secret was decided on for a header the host owns"
    );

    // What the host sends: the authorized URL's host, and identity encoding.
    let report = fetch(&host, "get", &json!({ "url": url }));
    assert_eq!(report["result"]["ok"]["status"], json!(200), "{report}");
    let head = server.heads()[0].to_lowercase();
    assert!(
        head.contains(&format!("host: 127.0.0.1:{}", server.port)),
        "{head}"
    );
    assert!(head.contains("accept-encoding: identity"), "{head}");
}

// Verifies: FC-SEC-2209, FC-SEC-2210, FC-SEC-2220, FC-CRYPTO-3505
#[test]
fn a_secret_echoed_url_json_and_base64_encoded_reaches_neither_the_guest_nor_the_ledger() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    store_secret(&host);
    let report = fetch(
        &host,
        "request",
        &json!({
            "method": "GET",
            "url": format!("http://127.0.0.1:{}/echo-encoded", server.port),
            "secret-headers": [{ "name": "authorization", "secret": "api-token", "prefix": "Bearer " }],
        }),
    );
    // The server did echo every form of it.
    let (headers, body) = encoded_echo(SECRET, &server.heads()[0]);
    let sent: Vec<_> = secret_forms()
        .into_iter()
        .filter(|(_, f)| headers.contains(f.as_str()) || body.contains(f.as_str()))
        .map(|(name, _)| name)
        .collect();
    for form in [
        "literal",
        "percent",
        "percent, lower-case",
        "json escapes",
        "hex, upper-case",
        "base64",
        "base64, url-safe",
    ] {
        assert!(sent.contains(&form), "{form} was not sent: {sent:?}");
    }
    let response = &report["result"]["ok"];
    let text = response["text"].as_str().unwrap();
    assert_no_secret("the response body", text.as_bytes());
    assert!(
        text.starts_with(r#"{"percent": "[redacted]", "json": "[redacted]""#),
        "{text}"
    );
    let headers = response["headers"].as_array().unwrap();
    for name in ["x-echo-percent", "x-echo-json", "x-echo-basic"] {
        let value = headers
            .iter()
            .find(|h| h["name"] == json!(name))
            .and_then(|h| h["value"].as_str())
            .unwrap_or_else(|| panic!("no `{name}` in {headers:?}"));
        assert_no_secret(name, value.as_bytes());
        assert!(value.contains("[redacted]"), "{name}: {value}");
    }
    assert_no_secret("what the guest saw", report.to_string().as_bytes());
    assert_ledger_has_no_secret(&host);
}

// Verifies: FC-SEC-2210, FC-SEC-2212, FC-CRYPTO-3505, FC-CRYPTO-3517
#[test]
fn a_redirect_that_names_a_secret_is_recorded_and_answered_scrubbed() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    store_secret(&host);
    let request = |origin: &str| {
        fetch(
            &host,
            "request",
            &json!({
                "method": "GET",
                "url": format!("http://{origin}:{}/redirect-secret", server.port),
                "secret-headers": [{ "name": "authorization", "secret": "api-token", "prefix": "" }],
            }),
        )
    };
    // Within the origin, to a URL that holds the secret: the answered URL is scrubbed.
    let report = request("127.0.0.1");
    assert_eq!(
        report["result"]["ok"]["url"],
        json!(format!("http://127.0.0.1:{}/ok?t=[redacted]", server.port)),
        "{report}"
    );
    // To a host named after the secret: that hop's decision and the error are scrubbed.
    let report = request("localhost");
    let denied = format!("http://[redacted].localhost:{}", server.port);
    assert_eq!(
        error(&report),
        format!("denied: `http.request` on `{denied}` is not granted to this capability")
    );
    assert!(decisions(&host).contains(&("http.request".into(), denied, false)));
    assert_ledger_has_no_secret(&host);
}

// Verifies: FC-SEC-2209, FC-SEC-2211, FC-CRYPTO-3505
#[test]
fn a_secret_the_guest_unscrambled_is_scrubbed_from_its_log_and_output() {
    let server = local_server();
    let host = host(&format!("{POLICY}{LOOPBACK}"), server.port, 1);
    host.add(
        femtoclaw_tests::FEMTOCLAW_GUEST_UNSCRAMBLED,
        &format!(
            "name = \"unscrambled\"\nversion = \"1.0.0\"\npublisher = \"test\"\n\n[requests]\n\
             imports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\n\
             http = [\"http://127.0.0.1:{}\"]\nsecrets = [\"api-token\"]\n",
            server.port
        ),
    );
    store_secret(&host);
    let url = format!("http://127.0.0.1:{}/echo-reversed", server.port);
    let out = host.run(&[
        "invoke",
        "unscrambled",
        "leak",
        "--args",
        &json!({ "url": url, "secret": "api-token" }).to_string(),
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    // The guest did get hold of it: the response carried it reversed, which is not scrubbed.
    assert_eq!(report["result"]["ok"], json!(SECRET.len()), "{report}");
    assert_eq!(
        report["stdout"],
        json!("the secret is [redacted]\n"),
        "{report}"
    );
    assert_eq!(
        report["stderr"],
        json!("the secret is [redacted]\n"),
        "{report}"
    );
    assert_no_secret("the report", report.to_string().as_bytes());
    let shown = stdout(&host.run(&["log", "show", "--limit", "1000"]));
    assert!(shown.contains("the secret is [redacted]"), "{shown}");
    assert_ledger_has_no_secret(&host);
}

// Verifies: FC-SEC-1317, FC-POL-1714, FC-POL-1716, FC-SEC-2205
#[test]
fn a_secret_scoped_to_one_origin_is_sent_there_and_denied_anywhere_else() {
    let server = local_server();
    let scoped = POLICY.replace(
        "when { resource.name == \"api-token\" };",
        &format!(
            "when {{ resource.name == \"api-token\" && context.destination.host == \"127.0.0.1\" \
             && context.destination.port == {} }};",
            server.port
        ),
    );
    assert_ne!(scoped, POLICY);
    let host = host(&format!("{scoped}{LOOPBACK}"), server.port, 1);
    store_secret(&host);
    let send = |origin: &str| {
        fetch(
            &host,
            "request",
            &json!({
                "method": "GET",
                "url": format!("http://{origin}/ok"),
                "secret-headers": [{ "name": "authorization", "secret": "api-token", "prefix": "" }],
            }),
        )
    };
    let here = format!("127.0.0.1:{}", server.port);
    let report = send(&here);
    assert_eq!(report["result"]["ok"]["status"], json!(200), "{report}");
    assert_eq!(server.hits(), 1);
    // Another name for the same server, and another port: denied before anything is sent.
    for elsewhere in [
        format!("localhost:{}", server.port),
        "127.0.0.1:1".to_owned(),
    ] {
        let report = send(&elsewhere);
        let to = format!("api-token@http://{elsewhere}");
        assert_eq!(
            error(&report),
            format!("denied: `secret.use` on `{to}` is not granted to this capability")
        );
        assert!(decisions(&host).contains(&("secret.use".into(), to, false)));
    }
    assert_eq!(server.hits(), 1);
    let to = format!("api-token@http://{here}");
    assert!(decisions(&host).contains(&("secret.use".into(), to, true)));
}
