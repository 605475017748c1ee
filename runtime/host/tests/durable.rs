//! No effect without a record, and no invocation without an end: a host call that changes the
//! world is durable before it is performed, so a host killed during it leaves its intent, and
//! the next start records the invocation as interrupted; the wall-clock watchdog ends guest
//! code and blocking host calls at the invocation's deadline (exit 11). Run as a user runs
//! the host, against a loopback server this test runs and stops.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::io::Read as _;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Host, MISBEHAVE_MANIFEST, OPEN_POLICY, code, stderr, stdout};
use femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE;
use serde_json::{Value as Json, json};

/// Invoke and link anything, request any origin, connect to loopback.
const POLICY: &str = r#"
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource);
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"link", resource);
permit (principal, action == FemtoClaw::Action::"http.request", resource);
permit (principal, action == FemtoClaw::Action::"net.connect", resource)
when { resource.address.isLoopback() };
"#;

/// A loopback server that reads each request's head and never answers: it holds the
/// connection until the client closes it. It counts requests, reports each one on a channel,
/// and stops when dropped or after a minute, whichever comes first.
struct Silent {
    port: u16,
    hits: Arc<AtomicUsize>,
    arrived: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, arrived) = mpsc::channel();
        let (h, st) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut held = Vec::new();
            while !st.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match stream.read(&mut byte) {
                                Ok(1) => head.push(byte[0]),
                                _ => break,
                            }
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                        // Never answered; closed when the server stops.
                        held.push(stream);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Self {
            port,
            hits,
            arrived,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host with the fetch component installed as `webfetch`, requesting `http://127.0.0.1:port`.
fn fetch_host(port: u16) -> Host {
    let host = Host::with_policy(POLICY);
    let manifest = format!(
        "name = \"webfetch\"\nversion = \"1.0.0\"\npublisher = \"test\"\nfuel = 500000000\n\n\
         [requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\n\
         http = [\"http://127.0.0.1:{port}\"]\n"
    );
    host.add(
        femtoclaw_capabilities::find("fetch").unwrap().component,
        &manifest,
    );
    host
}

/// The entries of invocation `n`, in ledger order.
fn of_invocation(entries: &[Json], n: &Json) -> Vec<Json> {
    entries
        .iter()
        .map(|e| e["entry"].clone())
        .filter(|e| &e["invocation"] == n)
        .collect()
}

/// Replays the host's own export: exit 0, and the JSON report.
fn replay(host: &Host) -> Json {
    let export = host.export();
    host.replay_on(host.data.path(), &export)
}

// Verifies: FC-CORE-0208, FC-CORE-0219, FC-CORE-0314, FC-CORE-0315, FC-CORE-0317, FC-EXEC-0513, FC-SEC-1310, FC-MEM-2410, FC-MEM-2420, FC-CONF-2906, FC-OPS-5704, FC-DIST-4101, FC-FORMAL-5012, FC-FORMAL-5017
#[test]
fn a_host_killed_during_a_request_leaves_its_intent_and_the_next_start_records_the_interruption() {
    let server = Silent::start();
    let host = fetch_host(server.port);
    let url = format!("http://127.0.0.1:{}/orders", server.port);
    let args = json!({ "url": url, "content-type": "application/json", "body": "{\"buy\":1}" });
    let mut child = host
        .command(&["invoke", "webfetch", "post", "--args", &args.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The request reached the server, which holds the response: the host is waiting in the
    // call. Kill it there (SIGKILL: nothing of the host runs after this).
    let head = server.arrived.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    let head = head.expect("the request never reached the server");
    assert!(head.starts_with("POST /orders "), "{head}");

    // Any command on the data directory opens the ledger, and with it records the interruption.
    let entries = host.entries();
    let start = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "invocation-start" && e["capability"] == "webfetch")
        .expect("the start was written ahead of the request");
    let mine = of_invocation(&entries, &start["invocation"]);
    let kinds: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "invocation-start",
            "decision",         // invoke
            "decision",         // http.request on the origin
            "decision",         // net.connect on 127.0.0.1
            "host-call-intent", // the request, durable before it was sent
            "trap",             // recorded on the next open
            "invocation-end",
        ],
        "{mine:#?}"
    );
    let intent = &mine[4];
    assert_eq!(intent["interface"], json!("femtoclaw:host/http@0.1.0"));
    assert_eq!(intent["function"], json!("send"));
    assert!(intent["params"].to_string().contains(&url), "{intent}");
    assert_eq!(mine[5]["kind"], json!("interrupted"));
    assert!(
        mine[5]["message"]
            .as_str()
            .unwrap()
            .contains("host stopped"),
        "{}",
        mine[5]
    );
    assert_eq!(mine[6]["result"], Json::Null);

    // Recorded once: a second start adds nothing.
    assert_eq!(host.entries().len(), entries.len());
    let verify = host.run(&["log", "verify", "--key", &host.key()]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
    // Replay reports the interruption as its own outcome: neither divergence nor tampering.
    let report = replay(&host);
    assert_eq!(report["interrupted"], json!(1), "{report}");
    assert_eq!(report["invocations"][0]["status"], json!("interrupted"));
    assert_eq!(server.hits(), 1, "the server saw exactly one request");
}

// Verifies: FC-CORE-0114, FC-CORE-0120, FC-EXEC-0513, FC-EXEC-0607, FC-CRYPTO-3808, FC-CRYPTO-3503, FC-CRYPTO-3518
#[test]
fn a_guest_spinning_with_fuel_to_spare_exits_11_at_the_operators_deadline_and_asks_no_more() {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST);
    host.configure("[limits]\ndeadline_ms = 300\n");
    let spin = |extra: &[&str]| {
        let mut args = vec!["invoke", "misbehave", "spin", "--fuel", "10000000000"];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let out = host.run(&args);
        assert!(started.elapsed() < Duration::from_secs(60), "within bounds");
        out
    };
    // The operator's deadline; a request for more is held to it; a request for less is kept.
    for (extra, deadline) in [
        (&[][..], 300),
        (&["--deadline-ms", "600000"][..], 300),
        (&["--deadline-ms", "100"][..], 100),
    ] {
        let out = spin(extra);
        assert_eq!(code(&out), 11, "{extra:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim(),
            format!(
                "error: deadline exceeded: the invocation ran past its deadline of {deadline} ms"
            ),
            "{extra:?}"
        );
    }
    let traps: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "trap")
        .collect();
    assert_eq!(traps.len(), 3);
    assert!(traps.iter().all(|t| t["kind"] == "deadline"), "{traps:?}");
    // An ending imposed from outside: replay reports it and does not re-execute it.
    let report = replay(&host);
    assert_eq!(report["interrupted"], json!(3), "{report}");
    assert_eq!(report["identical"], json!(0), "{report}");

    let out = host.run(&["invoke", "misbehave", "spin", "--deadline-ms", "0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

// Verifies: FC-CORE-0306, FC-CORE-0314, FC-EXEC-0513, FC-EXEC-0608
#[test]
fn a_request_that_would_outlast_the_deadline_ends_the_invocation_with_exit_11() {
    let server = Silent::start();
    let host = fetch_host(server.port);
    host.configure("[limits]\ndeadline_ms = 1000\n");
    let url = format!("http://127.0.0.1:{}/never", server.port);
    let started = Instant::now();
    // The request asks for 20 s, the host allows 30 s: the invocation's second is what binds.
    let args = json!({ "method": "GET", "url": url, "timeout-ms": 20000 });
    let out = host.run(&["invoke", "webfetch", "request", "--args", &args.to_string()]);
    assert!(started.elapsed() < Duration::from_secs(15), "within bounds");
    assert_eq!(code(&out), 11, "{} {}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("deadline of 1000 ms"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.hits(), 1);
    let entries = host.entries();
    let trap = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "trap")
        .unwrap();
    assert_eq!(trap["kind"], json!("deadline"));
    // The request was written ahead, and recorded with what it came back with (every host
    // call is recorded); the invocation's end is the deadline, not a result.
    let mine = of_invocation(&entries, &trap["invocation"]);
    assert!(mine.iter().any(|e| e["type"] == "host-call-intent"));
    assert!(mine.iter().any(|e| e["type"] == "host-call"));
    assert!(
        !mine
            .iter()
            .any(|e| e["type"] == "invocation-end" && !e["result"].is_null())
    );
    assert_eq!(replay(&host)["interrupted"], json!(1));
}
