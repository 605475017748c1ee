//! `femtoclaw-host serve` end to end, over loopback: authentication, the invocation path with
//! its receipt and proof, problem responses, one process per data directory, concurrent
//! clients, and a graceful stop.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
#[path = "serve/conformance.rs"]
mod conformance;
#[path = "serve/telemetry.rs"]
mod telemetry;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Host, MISBEHAVE_MANIFEST, OPEN_POLICY, code, s, stderr, stdout};
use femtoclaw_tests::{
    FEMTOCLAW_EXAMPLE_WORD_COUNT, FEMTOCLAW_GUEST_MISBEHAVE, WORD_COUNT_MANIFEST,
};
use serde_json::{Value as Json, json};

/// A policy that lets every principal do anything: the tests of limits that are not policy.
const EVERYONE_POLICY: &str = "permit (principal, action, resource);\n";

/// A running server on a loopback port the system picked.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(host: &Host) -> Self {
        Self::start_with(host, &[])
    }

    /// A server with these environment variables set.
    fn start_with(host: &Host, env: &[(&str, &str)]) -> Self {
        Self::start_args(host, &["serve", "--listen", "127.0.0.1:0"], env)
    }

    /// A server started by the command `args`, with these environment variables set.
    fn start_args(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = host
            .command(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the server said {line:?}"))
            .to_owned();
        Self { child, url }
    }

    /// SIGTERM, then the exit code (bounded: the test fails rather than hangs).
    fn stop(mut self) -> i32 {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signalling a child process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().unwrap();
        panic!("the server did not stop within 10 s of SIGTERM");
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn token(host: &Host, principal: &str, name: &str) -> String {
    let out = host.run(&["token", "create", "--principal", principal, "--name", name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn invoke(
    server: &Server,
    token: Option<&str>,
    body: &Json,
    query: &str,
) -> (u16, Option<String>, Json) {
    let mut request = client()
        .post(format!("{}/v1/invoke{query}", server.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().unwrap();
    (
        status,
        kind,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

// Verifies: FC-CORE-0109, FC-CORE-0111, FC-PROTO-0802, FC-PROTO-0803, FC-PROTO-0806, FC-PROTO-0807, FC-PROTO-0811, FC-PROTO-0819, FC-PROTO-0822, FC-PROTO-0824, FC-PROTO-0825, FC-PROTO-0828, FC-PROTO-0832, FC-PROTO-0834, FC-PROTO-0835, FC-PROTO-0840, FC-PROTO-0842, FC-PROTO-0843, FC-SEC-5601, FC-SEC-1804, FC-SEC-1805, FC-SEC-1811, FC-SEC-1822, FC-SEC-1823, FC-CONF-2901, FC-CONF-2910, FC-OPS-3904, FC-PERF-5812, FC-DIST-4101, FC-DIST-4201, FC-DIST-4301, FC-CRYPTO-3501, FC-CRYPTO-3513
/// On a fresh data directory, a created token and a POST invoke `hello.greet` and return a
/// receipt whose proof verifies against `/v1/ledger/checkpoint` with the pinned key alone; no
/// token gets 401; bad requests get their problems and leave the server serving.
#[test]
fn an_authenticated_invoke_returns_a_receipt_whose_proof_verifies() {
    let host = Host::new();
    host.configure("[server]\nmax_body_bytes = 4096\n");
    let operator = token(&host, "user:local", "operator");
    let key = host.key();
    let server = Server::start(&host);
    let http = client();

    let health = http.get(format!("{}/healthz", server.url)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
    let (status, kind, body) = invoke(&server, None, &greet, "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(kind.as_deref(), Some("application/problem+json"));
    assert_eq!(body["code"], "unauthenticated");
    let (status, _, _) = invoke(&server, Some("fct_forged"), &greet, "");
    assert_eq!(status, 401);

    let (status, _, body) = invoke(&server, Some(&operator), &greet, "?proof=true");
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].to_string().contains("Ada"), "{body}");
    assert!(body["fuel"]["consumed"].as_u64().unwrap() > 0);
    let receipt = &body["receipt"];
    let [first, last] =
        [&receipt["entries"][0], &receipt["entries"][1]].map(|v| v.as_u64().unwrap());
    assert!(first < last && last < receipt["tree_size"].as_u64().unwrap());
    let proof = receipt["proof"].as_str().unwrap();
    let checkpoint = http
        .get(format!("{}/v1/ledger/checkpoint", server.url))
        .bearer_auth(&operator)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(checkpoint, receipt["checkpoint"].as_str().unwrap());
    assert!(proof.contains(checkpoint.trim_end()), "{proof}");
    let proof_file = host.file("proof.txt", proof.as_bytes());

    // Problems: malformed, wrong types, unknown names, too large.
    for (body, status, code) in [
        (json!("{not json"), 400, "bad-arguments"),
        (
            json!({ "capability": 7, "function": "greet" }),
            400,
            "bad-arguments",
        ),
        (
            json!({ "capability": "nope", "function": "greet" }),
            404,
            "unknown",
        ),
        (
            json!({ "capability": "hello", "function": "greet", "args": { "name": 3 } }),
            400,
            "bad-arguments",
        ),
        (
            json!({ "capability": "hello", "function": "greet", "args": { "name": "x".repeat(5000) } }),
            413,
            "too-large",
        ),
    ] {
        let (got, kind, problem) = invoke(&server, Some(&operator), &body, "");
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{problem}"
        );
        assert_eq!(kind.as_deref(), Some("application/problem+json"));
    }

    // A later checkpoint extends the earlier one: the consistency proof between them verifies,
    // and a tampered one does not; sizes the tree lacks are refused.
    let earlier = femtoclaw_ledger::Checkpoint::parse_unverified(&checkpoint).unwrap();
    let (status, _, _) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(status, 200);
    let consistency = |query: &str| {
        let response = http
            .get(format!("{}/v1/ledger/consistency?{query}", server.url))
            .bearer_auth(&operator)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str::<Json>(&response.text().unwrap()).unwrap(),
        )
    };
    let (status, answer) = consistency(&format!("from={}", earlier.size));
    assert_eq!(status, 200, "{answer}");
    let later =
        femtoclaw_ledger::Checkpoint::parse_unverified(answer["checkpoint"].as_str().unwrap())
            .unwrap();
    assert!(
        later.size > earlier.size && answer["to"] == later.size,
        "{answer}"
    );
    let mut hashes: Vec<Vec<u8>> = answer["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
        })
        .collect();
    let check = |hashes: &[Vec<u8>]| {
        femtoclaw_ledger::merkle::verify_consistency(
            earlier.size,
            later.size,
            hashes,
            &earlier.root,
            &later.root,
        )
    };
    check(&hashes).unwrap();
    hashes[0][0] ^= 1;
    assert!(check(&hashes).is_err(), "a tampered proof verifies");
    for query in [
        "from=0",
        &format!("from={}", later.size + 1),
        "from=1&to=999999",
        "from=abc",
        "to=3",
    ] {
        let (status, problem) = consistency(query);
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("bad-arguments")),
            "{query}: {problem}"
        );
    }

    // One process per data directory: a second server is refused at once, naming the server.
    let second = host.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_ne!(code(&second), 0);
    let says = stderr(&second);
    assert!(
        says.contains("is in use by pid") && says.contains(&server.url),
        "{says}"
    );

    // The capabilities this principal may invoke; a revoked token is refused from then on.
    let listed: Json = serde_json::from_str(
        &http
            .get(format!("{}/v1/capabilities", server.url))
            .bearer_auth(&operator)
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let hello = listed["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hello")
        .unwrap();
    assert!(hello["functions"][0]["args_schema"].is_object(), "{hello}");
    // Described by the doc comment of its WIT, which the SDK keeps in the component.
    assert_eq!(
        hello["functions"][0]["description"], "Greets `name`.",
        "{hello}"
    );
    // The CLI calls the server with the same result and exit codes as a local invoke.
    let remote = |token: &str, capability: &str| {
        host.run(&[
            "invoke",
            capability,
            "greet",
            "--args",
            r#"{"name":"Grace"}"#,
            "--remote",
            &server.url,
            "--token",
            token,
        ])
    };
    let out = remote(&operator, "hello");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#""Hello, Grace!""#);
    assert_eq!(code(&remote(&operator, "nope")), 3);
    assert_eq!(code(&remote("fct_forged", "hello")), 7);

    let out = host.run(&["token", "revoke", "operator"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (status, _, _) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(status, 401);

    assert_eq!(server.stop(), 0);
    // Stopped: the ledger verifies, and so does the proof, with the pinned key alone.
    let verified = host.run(&["log", "verify-proof", s(&proof_file), "--key", &key]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-CORE-0107, FC-CORE-0108, FC-CORE-0123, FC-PROTO-0817, FC-PROTO-0818, FC-PROTO-0824, FC-PROTO-0826, FC-PROTO-0836, FC-CAP-1104, FC-CAP-1105, FC-EXT-5504, FC-POL-1410, FC-POL-1508, FC-SEC-5601, FC-SEC-1802, FC-SEC-1805, FC-SEC-1812, FC-SEC-1819, FC-EXT-5404, FC-EXT-5410, FC-CRYPTO-3704, FC-CONF-2904, FC-CONF-2907, FC-CONF-2908, FC-CONF-2911, FC-CONF-2912, FC-CONF-2914, FC-OPS-3901, FC-OPS-3902, FC-OPS-3903, FC-OPS-3904, FC-OPS-3905, FC-OPS-3906, FC-OPS-3907, FC-OPS-3910, FC-OPS-3912, FC-OPS-3918, FC-OPS-3920, FC-OBS-2713, FC-OBS-2714, FC-CRYPTO-3512, FC-CRYPTO-3513, FC-CRYPTO-3516
/// While a server holds the data directory, the operator's writing commands reach it over its
/// admin channel (a socket of mode 0600) and take effect on its next request: a token made,
/// used and revoked, both recorded in the ledger with its digest and never the token; a
/// capability added, invoked and removed; an invocation from the command line; a key rotation
/// (the ledger verifies with both keys); a secret. Once the server is killed, leaving its
/// socket behind, the commands write the directory themselves again.
#[test]
fn the_operators_writing_commands_reach_the_running_server() {
    use std::os::unix::fs::PermissionsExt as _;
    let host = Host::with_policy(OPEN_POLICY);
    let server = Server::start(&host);
    let socket = host.data.path().join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let http = client();
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });

    // Tokens: made through the server, accepted at once, listed, revoked at once.
    let operator = token(&host, "user:local", "operator");
    let (status, _, body) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(status, 200, "{body}");
    let listed = host.run(&["token", "list", "--json"]);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    let listed: Json = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(listed[0]["name"], "operator", "{listed}");
    assert!(!listed.to_string().contains(&operator));

    // A capability added while serving is offered and runs; removed, it is gone.
    let wasm = host.file("word_count.wasm", FEMTOCLAW_EXAMPLE_WORD_COUNT);
    let manifest = host.file("word-count.toml", WORD_COUNT_MANIFEST.as_bytes());
    let out = host.run(&["capability", "add", s(&wasm), "--manifest", s(&manifest)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let count = json!({ "capability": "word-count", "function": "count", "args": { "text": "to be or not" } });
    let (status, _, body) = invoke(&server, Some(&operator), &count, "");
    assert_eq!(
        (status, &body["result"]),
        (200, &json!({ "words": 4, "longest": "not" })),
        "{body}"
    );
    let listed = host.run(&["capability", "list"]);
    assert!(
        stdout(&listed).contains("word-count"),
        "{}",
        stderr(&listed)
    );
    let out = host.run(&["capability", "remove", "word-count"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (status, _, body) = invoke(&server, Some(&operator), &count, "");
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown")),
        "{body}"
    );
    let out = host.run(&["capability", "remove", "hello"]);
    assert_eq!(
        code(&out),
        2,
        "an embedded capability stays: {}",
        stderr(&out)
    );

    // Egress from an invocation in the server runs on the server's own runtime: here a fetch,
    // installed while serving to reach this very server, reads its health check.
    let port = server.url.rsplit(':').next().unwrap();
    let manifest = host.file(
        "webfetch.toml",
        format!(
            "name = \"webfetch\"\nversion = \"1.0.0\"\npublisher = \"test\"\nfuel = 500000000\n\n\
             [requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\n\
             http = [\"http://127.0.0.1:{port}\"]\n"
        )
        .as_bytes(),
    );
    let fetch = host.file(
        "fetch.wasm",
        femtoclaw_capabilities::find("fetch").unwrap().component,
    );
    let out = host.run(&["capability", "add", s(&fetch), "--manifest", s(&manifest)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let get = json!({ "capability": "webfetch", "function": "get", "args": { "url": format!("{}/healthz", server.url) } });
    let (status, _, body) = invoke(&server, Some(&operator), &get, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["ok"]["status"], 200, "{body}");
    assert_eq!(body["result"]["ok"]["text"], "ok\n", "{body}");

    // An invocation from the command line runs in the server, recorded in its ledger.
    let out = host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Lin"}"#,
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cli: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cli["result"], "Hello, Lin!", "{cli}");
    let denied = host.run(&["invoke", "hello", "greet", "--principal", "agent:nobody"]);
    assert_eq!(
        code(&denied),
        7,
        "the server's refusal, with its exit code: {}",
        stderr(&denied)
    );

    // A key rotation: later checkpoints are signed by the new key.
    let old_key = host.key();
    let out = host.run(&["key", "generate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let new_key = stdout(&out).trim().to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(host.key(), new_key);
    let (status, _, body) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(status, 200, "{body}");

    // A secret, from stdin.
    let mut set = host
        .command(&["secret", "set", "api-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut set.stdin.take().unwrap(), b"s3cret\n").unwrap();
    let out = set.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&host.run(&["secret", "list"])).trim(), "api-token");

    // A changed policy takes effect on the next request, recorded before its first decision.
    host.set_policy(&format!(
        "{OPEN_POLICY}forbid (principal, action == FemtoClaw::Action::\"invoke\", resource) when {{ resource.name == \"hello\" }};\n"
    ));
    let (status, _, problem) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("denied")),
        "{problem}"
    );
    host.set_policy(OPEN_POLICY);
    let (status, _, body) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(status, 200, "{body}");

    let out = host.run(&["token", "revoke", "operator"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (status, _, _) = invoke(&server, Some(&operator), &greet, "");
    assert_eq!(status, 401);
    let health = http.get(format!("{}/healthz", server.url)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // Killed, the server leaves its socket; the commands no longer find it and work alone.
    let Server { mut child, .. } = server;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(socket.exists());
    let after = host.run(&["token", "create", "--principal", "agent:late"]);
    assert_eq!(code(&after), 0, "{}", stderr(&after));

    let changes: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "token-change")
        .collect();
    let said: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        said,
        [
            ("create", "operator"),
            ("revoke", "operator"),
            ("create", "late")
        ]
    );
    assert_eq!(changes[0]["principal"], "user:local");
    let ledger = host
        .entries()
        .iter()
        .map(Json::to_string)
        .collect::<String>();
    assert!(
        !ledger.contains(&operator[4..]),
        "the token itself is never recorded"
    );
    // Every decision names the policy the ledger last recorded as changed.
    let mut in_force = None;
    for entry in host.entries().iter().map(|e| &e["entry"]) {
        if entry["type"] == "policy-change" {
            in_force = Some(entry["policy_digest"].clone());
        } else if entry["type"] == "decision" {
            assert_eq!(Some(&entry["policy_digest"]), in_force.as_ref(), "{entry}");
        }
    }
    let verified = host.run(&["log", "verify", "--key", &old_key, "--key", &new_key]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
    let cli_end = cli["receipt"]["indexes"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_u64()
        .unwrap();
    assert_eq!(
        host.entries()[cli_end as usize]["entry"]["type"],
        "invocation-end"
    );
}

// Verifies: FC-CONF-2807
#[test]
fn listen_given_twice_keeps_the_last() {
    // A first value that cannot be bound: a server that kept it would not start.
    let host = Host::new();
    let server = Server::start_args(
        &host,
        &["serve", "--listen", "nowhere", "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let health = client()
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(server.stop(), 0);
}

// Verifies: FC-PROTO-0805, FC-PERF-5806
/// Many clients at once (bounded: 8 threads × 4 invocations) each get a correct receipt of
/// their own; the appends share group commits; the ledger verifies afterwards.
#[test]
fn concurrent_clients_all_get_their_own_receipts() {
    let host = Host::new();
    host.configure("[server]\nconcurrency = 4\nper_principal = 8\nqueue = 64\n");
    let operator = token(&host, "user:local", "operator");
    let server = Server::start(&host);
    let results: Vec<(String, Json)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (server, operator) = (&server, &operator);
                scope.spawn(move || {
                    (0..4)
                        .map(|i| {
                            let name = format!("client-{t}-{i}");
                            let body = json!({ "capability": "hello", "function": "greet", "args": { "name": name } });
                            let (status, _, answer) = invoke(server, Some(operator), &body, "");
                            assert_eq!(status, 200, "{answer}");
                            (name, answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut invocations: Vec<u64> = results
        .iter()
        .map(|(name, answer)| {
            assert!(answer["result"].to_string().contains(name), "{answer}");
            answer["receipt"]["invocation"].as_u64().unwrap()
        })
        .collect();
    invocations.sort_unstable();
    invocations.dedup();
    assert_eq!(invocations.len(), 32, "every invocation has its own number");
    assert_eq!(server.stop(), 0);
    let entries = host.entries();
    for (name, answer) in &results {
        let last = answer["receipt"]["entries"][1].as_u64().unwrap() as usize;
        let end = &entries[last]["entry"];
        assert_eq!(end["type"], "invocation-end");
        assert!(end.to_string().contains(name), "{end}");
        assert_eq!(end["invocation"], answer["receipt"]["invocation"], "{end}");
    }
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-CORE-0209, FC-PROTO-0804, FC-CONF-2911, FC-OPS-3910, FC-OPS-5703
/// A server killed with SIGKILL under load and restarted holds every invocation whose receipt a
/// client received, in each of 20 trials (bounded: 3 clients, a kill within 1.3 s).
#[test]
fn a_server_killed_under_load_keeps_every_invocation_it_answered() {
    let host = Host::new();
    let operator = token(&host, "user:local", "operator");
    let mut acknowledged: Vec<(String, usize)> = Vec::new();
    for trial in 0..20u64 {
        let Server { mut child, url } = Server::start(&host);
        let answered = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for c in 0..3 {
                let (url, operator, answered) = (&url, &operator, &answered);
                scope.spawn(move || {
                    for i in 0.. {
                        let name = format!("trial-{trial}-client-{c}-{i}");
                        let body = json!({ "capability": "hello", "function": "greet", "args": { "name": name } });
                        let sent = client()
                            .post(format!("{url}/v1/invoke"))
                            .bearer_auth(operator)
                            .body(body.to_string())
                            .send();
                        let Ok(response) = sent else { break };
                        if response.status().as_u16() != 200 {
                            break;
                        }
                        let Ok(answer) = response.text() else { break };
                        let answer: Json = serde_json::from_str(&answer).unwrap();
                        let last = answer["receipt"]["entries"][1].as_u64().unwrap();
                        answered.lock().unwrap().push((name, last as usize));
                    }
                });
            }
            // Past the first answers (a restarted server prepares the component again), then at
            // a different moment of the load each trial.
            std::thread::sleep(Duration::from_millis(600 + trial * 97 % 700));
            child.kill().unwrap();
            child.wait().unwrap();
        });
        acknowledged.extend(answered.into_inner().unwrap());
    }
    assert!(
        acknowledged.len() >= 20,
        "too few answers to test: {}",
        acknowledged.len()
    );
    let entries = host.entries();
    for (name, last) in &acknowledged {
        let end = &entries[*last]["entry"];
        assert_eq!(end["type"], "invocation-end", "{name}: {end}");
        assert!(end.to_string().contains(name.as_str()), "{name}: {end}");
    }
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-PROTO-0801, FC-PROTO-0815, FC-PROTO-0816, FC-PROTO-0822, FC-EXT-5506, FC-CONF-2907
/// `GET /v1/openapi.json` is served without a token, every route it names is served (a request
/// without a token is refused, not unknown), and the document validates as OpenAPI 3.1 with an
/// independent validator.
#[test]
fn the_openapi_document_names_every_route_served_and_validates() {
    let host = Host::new();
    let server = Server::start(&host);
    let http = client();
    let response = http
        .get(format!("{}/v1/openapi.json", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let document: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 8, "{paths:?}");
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                server.url,
                path.replace("{index}", "0").replace("{id}", "0")
            );
            let response = match method.as_str() {
                "get" => http.get(&url),
                "post" => http.post(&url).body("{}"),
                other => panic!("unexpected method {other}"),
            }
            .send()
            .unwrap();
            let status = response.status().as_u16();
            let secured = operations[method].get("security").is_some();
            assert_eq!(status, if secured { 401 } else { 200 }, "{method} {path}");
        }
    }
    let unknown = http
        .get(format!("{}/v1/nothing", server.url))
        .send()
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(server.stop(), 0);

    let file = host.file("openapi.json", document.to_string().as_bytes());
    let python = common::python();
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator", s(&file)])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (tests/run installs the validator)"));
    assert!(
        out.status.success(),
        "{python} -m openapi_spec_validator (tests/run installs it): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Verifies: FC-CORE-0211, FC-PROTO-0808
/// Key-value writes through the server at once keep the store in ledger order: in each of 20
/// rounds, 4 clients put the same key at the same moment (their appends share group commits),
/// and the value read back is the one the ledger's last write of that key holds. Each client
/// reads its own writes, and rebuilding the store from the ledger alone changes nothing.
#[test]
fn concurrent_key_value_writes_keep_the_ledger_order() {
    use base64::Engine as _;
    let host = Host::new();
    host.configure("[server]\nconcurrency = 4\nper_principal = 8\n");
    let operator = token(&host, "user:local", "operator");
    let server = Server::start(&host);
    let call = |function: &str, args: Json| {
        let body = json!({ "capability": "memory", "function": function, "args": args });
        let (status, _, answer) = invoke(&server, Some(&operator), &body, "");
        assert_eq!(status, 200, "{answer}");
        answer["result"].clone()
    };
    let mut from = 0;
    for round in 0..20 {
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for c in 0..4 {
                let (call, barrier) = (&call, &barrier);
                scope.spawn(move || {
                    let mine = format!("round-{round}-client-{c}");
                    call("put", json!({ "key": format!("own-{c}"), "text": mine }));
                    barrier.wait();
                    call("put", json!({ "key": "shared", "text": mine }));
                    let read = call("get", json!({ "key": format!("own-{c}") }));
                    assert_eq!(
                        read,
                        json!({ "ok": mine }),
                        "client {c} reads its own write"
                    );
                });
            }
        });
        let read = call("get", json!({ "key": "shared" }));
        let page: Json = serde_json::from_str(
            &client()
                .get(format!(
                    "{}/v1/ledger/entries?from={from}&limit=1000",
                    server.url
                ))
                .bearer_auth(&operator)
                .send()
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        let entries = page["entries"].as_array().unwrap();
        from = entries.last().unwrap()["index"].as_u64().unwrap() + 1;
        let last_write = entries
            .iter()
            .rev()
            .map(|e| &e["entry"])
            .filter(|e| e["function"] == "[method]bucket.set")
            .find(|e| e["params"]["tuple"][1]["string"] == "shared")
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(last_write["params"]["tuple"][2]["bytes"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            read,
            json!({ "ok": String::from_utf8(bytes).unwrap() }),
            "round {round}: the store holds another write than the ledger's last"
        );
    }
    assert_eq!(server.stop(), 0);
    let live = stdout(&host.run(&["kv", "list", "memory"]));
    let out = host.run(&["log", "reindex"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&host.run(&["kv", "list", "memory"])), live);
}

// Verifies: FC-PROTO-0831, FC-PROTO-0836, FC-PROTO-0837, FC-PROTO-0842, FC-PROTO-0843, FC-PROTO-0920, FC-SEC-5604, FC-SEC-1809, FC-PERF-5801, FC-PERF-5802, FC-PERF-5804, FC-PERF-5805, FC-PERF-5815
/// Beyond `server.per_principal` running invocations of one principal, and beyond
/// `server.concurrency` plus `server.queue` in all, a request gets 429 `busy` with `Retry-After`
/// at once (an MCP call over HTTP, an `isError` result naming the limit), each refusal is
/// recorded, and the server keeps serving. Bounded: the spin that holds the places ends at its
/// 20 s deadline.
#[test]
fn requests_over_the_limits_get_429_with_retry_after() {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST);
    host.configure(
        "[server]\nconcurrency = 1\nqueue = 0\nper_principal = 1\n\n[limits]\ndeadline_ms = 20000\nmax_fuel = 1000000000000\n",
    );
    let first = token(&host, "user:local", "first");
    let second = token(&host, "agent:other", "second");
    let server = Server::start(&host);
    let spin =
        json!({ "capability": "misbehave", "function": "spin", "fuel": 1_000_000_000_000u64 });
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "x" } });
    std::thread::scope(|scope| {
        let spinning = scope.spawn(|| invoke(&server, Some(&first), &spin, ""));
        // Until the spin runs, nothing is busy; it runs until its 20 s deadline (its fuel would last
        // far longer).
        std::thread::sleep(Duration::from_millis(500));
        for token in [&first, &second] {
            let response = client()
                .post(format!("{}/v1/invoke", server.url))
                .bearer_auth(token)
                .body(greet.to_string())
                .send()
                .unwrap();
            assert_eq!(response.status().as_u16(), 429);
            assert_eq!(response.headers()["retry-after"], "1");
            let problem: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
            assert_eq!(problem["code"], "busy", "{problem}");
        }
        // An MCP call over HTTP takes the same turns: refused, as a result the model can read.
        let calls = host.file(
            "calls.json",
            json!([{ "name": "hello.greet", "arguments": { "name": "x" } }])
                .to_string()
                .as_bytes(),
        );
        let mcp = mcp_client(&calls)
            .args(["--http", &format!("{}/mcp", server.url), "--token", &first])
            .output()
            .unwrap();
        assert_eq!(code(&mcp), 0, "{}", stderr(&mcp));
        let answer: Json = serde_json::from_str(&stdout(&mcp)).unwrap();
        let call = &answer["calls"][0];
        assert_eq!(call["isError"], true, "{call}");
        assert!(
            call["content"][0]
                .as_str()
                .unwrap()
                .contains("server.per_principal"),
            "{call}"
        );
        let (status, _, problem) = spinning.join().unwrap();
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("deadline")),
            "{problem}"
        );
    });
    let (status, _, answer) = invoke(&server, Some(&second), &greet, "");
    assert_eq!(
        status, 403,
        "the default-deny policy still decides: {answer}"
    );
    let (status, _, answer) = invoke(&server, Some(&first), &greet, "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.stop(), 0);

    // Each refusal is a refused invocation in the ledger, naming the limit it met.
    let entries: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .collect();
    let refused: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["type"] == "trap" && e["kind"] == "limit")
        .map(|trap| {
            let start = entries
                .iter()
                .find(|e| e["type"] == "invocation-start" && e["invocation"] == trap["invocation"])
                .unwrap();
            (
                start["principal"].as_str().unwrap(),
                trap["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    for local in [refused[0], refused[2]] {
        assert!(
            local.0.contains("User::\"local\"") && local.1.contains("server.per_principal"),
            "{refused:?}"
        );
    }
    assert!(
        refused[1].0.contains("Agent::\"other\"") && refused[1].1.contains("server.queue"),
        "{refused:?}"
    );
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-PROTO-0838, FC-PROTO-0842, FC-PROTO-0923, FC-PROTO-0924, FC-SEC-5604, FC-SEC-1809, FC-OPS-4003, FC-OPS-4004, FC-OPS-4018, FC-OPS-4019, FC-OPS-4022
/// A rate of 3 invocations an hour for `agent:bot` holds across 8 parallel requests: exactly 3
/// are served, the others get 429 with `Retry-After` and code `over-quota` naming the rule, an
/// MCP call gets an `isError` result saying so, and another principal is served throughout. Each
/// refusal is a refused invocation in the ledger, which verifies.
#[test]
fn a_principal_over_its_rate_limit_gets_429_and_a_recorded_refusal_while_others_are_served() {
    let host = Host::with_policy(EVERYONE_POLICY);
    host.configure(
        "[server]\nconcurrency = 8\nper_principal = 8\n\n\
         [[quotas.rules]]\nprincipal = \"agent:bot\"\ncapability = \"hello\"\ninvocations = 3\nper_ms = 3600000\n",
    );
    let bot = token(&host, "agent:bot", "bot");
    let other = token(&host, "agent:other", "other");
    let server = Server::start(&host);
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "x" } });
    let (bots, others) = std::thread::scope(|scope| {
        let bots: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let response = client()
                        .post(format!("{}/v1/invoke", server.url))
                        .bearer_auth(&bot)
                        .body(greet.to_string())
                        .send()
                        .unwrap();
                    let status = response.status().as_u16();
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                    let body: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
                    (status, retry, body)
                })
            })
            .collect();
        let others: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| invoke(&server, Some(&other), &greet, "").0))
            .collect();
        (
            bots.into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>(),
            others
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(others, [200, 200, 200], "another principal is served");
    let served = bots.iter().filter(|(status, ..)| *status == 200).count();
    assert_eq!(served, 3, "{bots:?}");
    for (status, retry, body) in bots.iter().filter(|(status, ..)| *status != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["code"], "over-quota", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("is limited to 3 invocations per 3600000 ms (quotas.rules[0])"),
            "{body}"
        );
        // The next place comes 20 minutes after the first three.
        let retry = retry.expect("Retry-After");
        assert!((1000..=1200).contains(&retry), "Retry-After {retry}");
    }
    let calls = host.file(
        "calls.json",
        json!([{ "name": "hello.greet", "arguments": { "name": "x" } }])
            .to_string()
            .as_bytes(),
    );
    let mcp = mcp_client(&calls)
        .args(["--http", &format!("{}/mcp", server.url), "--token", &bot])
        .output()
        .unwrap();
    assert_eq!(code(&mcp), 0, "{}", stderr(&mcp));
    let answer: Json = serde_json::from_str(&stdout(&mcp)).unwrap();
    let call = &answer["calls"][0];
    assert_eq!(call["isError"], true, "{call}");
    assert!(
        call["content"][0]
            .as_str()
            .unwrap()
            .starts_with("over-quota: over quota: `hello` for `agent:bot`"),
        "{call}"
    );
    assert_eq!(invoke(&server, Some(&other), &greet, "").0, 200);
    still_serving_then_verified(server, &host);

    let entries: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .collect();
    let principal_of = |invocation: &Json| {
        entries
            .iter()
            .find(|e| e["type"] == "invocation-start" && e["invocation"] == *invocation)
            .map(|start| start["principal"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let refused: Vec<String> = entries
        .iter()
        .filter(|e| e["type"] == "trap" && e["kind"] == "limit")
        .map(|trap| {
            assert!(
                trap["message"]
                    .as_str()
                    .unwrap()
                    .contains("(quotas.rules[0])"),
                "{trap}"
            );
            principal_of(&trap["invocation"])
        })
        .collect();
    assert_eq!(refused.len(), 6, "5 over HTTP and 1 over MCP: {refused:?}");
    assert!(
        refused.iter().all(|p| p.contains("Agent::\"bot\"")),
        "{refused:?}"
    );
    let ran: Vec<String> = entries
        .iter()
        .filter(|e| e["type"] == "invocation-end" && !e["result"].is_null())
        .map(|end| principal_of(&end["invocation"]))
        .collect();
    assert_eq!(
        ran.iter().filter(|p| p.contains("\"bot\"")).count(),
        3,
        "{ran:?}"
    );
    assert_eq!(
        ran.iter().filter(|p| p.contains("\"other\"")).count(),
        4,
        "{ran:?}"
    );
}

/// The policy of the approval tests: `agent:bot` may greet only with a person's approval;
/// `user:ops` and `agent:bot` may approve, `agent:other` may not.
const APPROVAL_POLICY: &str = r#"
@id("bot-greets-with-approval")
@approval("required")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("link-anything")
permit (principal, action == FemtoClaw::Action::"link", resource);
@id("ops-approves")
permit (principal == FemtoClaw::User::"ops", action == FemtoClaw::Action::"approve", resource);
@id("bot-approves")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"approve", resource);
"#;

fn decide(server: &Server, token: &str, id: u64, decision: &str, reason: &str) -> (u16, Json) {
    let response = client()
        .post(format!("{}/v1/approvals/{id}", server.url))
        .bearer_auth(token)
        .body(json!({ "decision": decision, "reason": reason }).to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().unwrap()).unwrap(),
    )
}

// Verifies: FC-CORE-0123, FC-CORE-0307, FC-CORE-0308, FC-CORE-0312, FC-PROTO-0812, FC-PROTO-0813, FC-PROTO-0814, FC-PROTO-0825, FC-PROTO-0841, FC-PROTO-0842, FC-PROTO-0924, FC-EXT-5504, FC-SEC-5605, FC-OPS-4009, FC-OPS-4010, FC-OPS-4011, FC-OPS-4013, FC-OPS-4014, FC-OPS-4015, FC-OPS-4016, FC-OPS-4020, FC-OPS-4023, FC-OPS-4025, FC-OBS-2715, FC-CRYPTO-3501, FC-CRYPTO-3514, FC-CRYPTO-3516
/// An `@approval("required")` call is answered 202 with the approval's `Location` and recorded
/// as pending; `approval grant` (through the running server) lets the identical call run once,
/// with its start naming the approval; other arguments, or the same call again, need a new
/// approval; nobody decides their own call or one the policy does not let them approve; a
/// denial over the API is recorded; an MCP call gets `isError` naming the id; with
/// `approvals.wait_ms` a caller waits and runs once a person grants. Every decision is a
/// ledger entry, the grant's fingerprint is the one an auditor recomputes from the start that
/// spent it, and the ledger verifies and replays.
#[test]
fn an_approval_required_call_waits_for_a_grant_runs_once_and_every_decision_is_recorded() {
    let host = Host::with_policy(APPROVAL_POLICY);
    let bot = token(&host, "agent:bot", "bot");
    let ops = token(&host, "user:ops", "ops");
    let other = token(&host, "agent:other", "other");
    let server = Server::start(&host);
    let greet = |name: &str| json!({ "capability": "hello", "function": "greet", "args": { "name": name } });
    let pending = |name: &str| -> u64 {
        let response = client()
            .post(format!("{}/v1/invoke", server.url))
            .bearer_auth(&bot)
            .body(greet(name).to_string())
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let body: Json = serde_json::from_str(&response.text().unwrap()).unwrap();
        assert_eq!(body["code"], "approval-pending", "{body}");
        let id = body["approval"].as_u64().unwrap();
        assert_eq!(location, format!("/v1/approvals/{id}"));
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("approval grant {id}"))
        );
        id
    };
    let ada = pending("Ada");
    // A second identical call while it is pending waits for the same approval.
    assert_eq!(pending("Ada"), ada);
    let seen: Json = serde_json::from_str(&client_get(&server, &bot, "/v1/approvals")).unwrap();
    assert_eq!(seen.as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen[0]["state"], "pending");
    assert_eq!(seen[0]["args"], json!({ "name": "Ada" }));
    let hidden = client()
        .get(format!("{}/v1/approvals/{ada}", server.url))
        .bearer_auth(&other)
        .send()
        .unwrap();
    assert_eq!(
        hidden.status().as_u16(),
        404,
        "not one of its own, nor one it may decide"
    );
    let (status, refused) = decide(&server, &other, ada, "grant", "sure");
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("may not approve"),
        "{refused}"
    );
    let (status, refused) = decide(&server, &bot, ada, "grant", "mine");
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("decide their own call"),
        "{refused}"
    );

    // The operator lists and grants through the running server.
    let listed = host.run(&["approval", "list", "--json"]);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    let listed: Json = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(listed[0]["id"], ada);
    let granted = host.run(&[
        "approval",
        "grant",
        &ada.to_string(),
        "--reason",
        "checked the name",
    ]);
    assert_eq!(code(&granted), 0, "{}", stderr(&granted));
    assert_eq!(stdout(&granted).trim(), format!("approval {ada} granted"));
    let again = host.run(&["approval", "grant", &ada.to_string()]);
    assert_eq!(code(&again), 2, "already decided: {}", stderr(&again));

    // The grant is bound to the exact call: other arguments need their own.
    let bob = pending("Bob");
    assert_ne!(bob, ada);
    let (status, _, ran) = invoke(&server, Some(&bot), &greet("Ada"), "");
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["result"], "Hello, Ada!");
    let spent_by = ran["receipt"]["invocation"].as_u64().unwrap();
    // Single use: the same call again asks anew.
    let twice = pending("Ada");
    assert!(twice != ada && twice != bob);
    let (status, denied) = decide(&server, &ops, twice, "deny", "once is enough");
    assert_eq!(status, 200, "{denied}");
    assert_eq!(
        (denied["state"].as_str(), denied["decided_by"].as_str()),
        (Some("denied"), Some("FemtoClaw::User::\"ops\""))
    );
    assert_eq!(
        decide(&server, &ops, twice, "grant", "").0,
        400,
        "already decided"
    );
    let (status, _) = decide(&server, &ops, 999_999, "grant", "");
    assert_eq!(status, 404);

    // MCP: a result the model can act on, naming the approval.
    let calls = host.file(
        "calls.json",
        json!([{ "name": "hello.greet", "arguments": { "name": "Ada" } }])
            .to_string()
            .as_bytes(),
    );
    let mcp = mcp_client(&calls)
        .args(["--http", &format!("{}/mcp", server.url), "--token", &bot])
        .output()
        .unwrap();
    assert_eq!(code(&mcp), 0, "{}", stderr(&mcp));
    let answer: Json = serde_json::from_str(&stdout(&mcp)).unwrap();
    let call = &answer["calls"][0];
    assert_eq!(call["isError"], true, "{call}");
    let line = call["content"][0].as_str().unwrap();
    assert!(
        line.starts_with("approval-pending: approval required"),
        "{call}"
    );
    let by_mcp = pending("Ada");
    assert!(
        line.contains(&format!("pending as approval {by_mcp}")),
        "{line}"
    );
    assert_eq!(server.stop(), 0);

    // A caller that may wait runs as soon as a person grants.
    host.configure("[approvals]\nwait_ms = 30000\n");
    let server = Server::start(&host);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| invoke(&server, Some(&bot), &greet("Cy"), ""));
        let id = (0..200)
            .find_map(|_| {
                let seen: Json =
                    serde_json::from_str(&client_get(&server, &ops, "/v1/approvals")).unwrap();
                let found = seen
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["args"] == json!({ "name": "Cy" }) && a["state"] == "pending");
                if found.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                found.map(|a| a["id"].as_u64().unwrap())
            })
            .expect("the waiting call is pending");
        assert_eq!(decide(&server, &ops, id, "grant", "go").0, 200);
        let (status, _, ran) = waiting.join().unwrap();
        assert_eq!(
            (status, &ran["result"]),
            (200, &json!("Hello, Cy!")),
            "{ran}"
        );
    });
    still_serving_then_verified(server, &host);

    // The ledger: every request and decision, and the start that spent the grant names it.
    let entries: Vec<femtoclaw_ledger::Entry> = host
        .entries()
        .into_iter()
        .map(|e| serde_json::from_value(e["entry"].clone()).unwrap())
        .collect();
    let steps: Vec<(u64, &str, &str)> = entries
        .iter()
        .filter_map(|e| match e {
            femtoclaw_ledger::Entry::Approval {
                request,
                action,
                by,
                ..
            } => Some((*request, action.as_str(), by.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps[..6],
        [
            (ada, "request", "FemtoClaw::Agent::\"bot\""),
            (ada, "grant", "FemtoClaw::User::\"local\""),
            (bob, "request", "FemtoClaw::Agent::\"bot\""),
            (twice, "request", "FemtoClaw::Agent::\"bot\""),
            (twice, "deny", "FemtoClaw::User::\"ops\""),
            (by_mcp, "request", "FemtoClaw::Agent::\"bot\""),
        ],
        "{steps:?}"
    );
    assert_eq!(
        steps.len(),
        8,
        "and the waiting call's request and grant: {steps:?}"
    );
    let grant_fingerprint = entries
        .iter()
        .find_map(|e| match e {
            femtoclaw_ledger::Entry::Approval {
                request,
                action,
                fingerprint,
                ..
            } if *request == ada && action == "grant" => Some(*fingerprint),
            _ => None,
        })
        .unwrap();
    let spender = entries
        .iter()
        .find(|e| matches!(e, femtoclaw_ledger::Entry::InvocationStart { invocation, .. } if *invocation == spent_by))
        .unwrap();
    let femtoclaw_ledger::Entry::InvocationStart {
        principal,
        capability,
        version,
        function,
        args,
        approval,
        ..
    } = spender
    else {
        unreachable!()
    };
    assert_eq!(*approval, Some(ada));
    assert_eq!(
        femtoclaw_ledger::approval_fingerprint(
            principal,
            capability,
            version,
            function,
            &femtoclaw_ledger::args_digest(args)
        ),
        grant_fingerprint,
        "an auditor recomputes the approved call from the start that spent it"
    );
    let spent: Vec<u64> = entries
        .iter()
        .filter_map(|e| match e {
            femtoclaw_ledger::Entry::InvocationStart {
                approval: Some(id), ..
            } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(spent.len(), 2, "each grant spent once: {spent:?}");
    assert_eq!(spent[0], ada);
    // Replay takes the recorded approval as given: the approved runs replay, the pending ones
    // (nothing ran) are reported refused.
    let report = host.replay_on(host.data.path(), &host.export());
    assert_eq!(report["identical"], json!(2), "{report}");
}

// Verifies: FC-PROTO-0820, FC-PROTO-0839, FC-CONF-2905, FC-CONF-2906, FC-PERF-5803, FC-DIST-4302
/// Every request has a deadline: an invocation gets what is left of `server.request_timeout_ms`
/// (far below the operator's invocation deadline here) and ends at it. A stopping server gives
/// the invocations in flight `server.shutdown_grace_ms`, then exits 0 without them; the one cut
/// off (it had no effect to write ahead) was never answered nor recorded, and the ledger
/// verifies.
#[test]
fn every_request_has_a_deadline_and_a_stop_waits_only_the_grace() {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST);
    host.configure(
        "[server]\nrequest_timeout_ms = 300\n\n[limits]\ndeadline_ms = 600000\nmax_fuel = 1000000000000\n",
    );
    let operator = token(&host, "user:local", "operator");
    let spin =
        json!({ "capability": "misbehave", "function": "spin", "fuel": 1_000_000_000_000u64 });
    let server = Server::start(&host);
    let (status, _, problem) = invoke(&server, Some(&operator), &spin, "");
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("deadline")),
        "{problem}"
    );
    assert_eq!(server.stop(), 0);

    host.configure(
        "[server]\nshutdown_grace_ms = 300\n\n[limits]\ndeadline_ms = 600000\nmax_fuel = 1000000000000\n",
    );
    let server = Server::start(&host);
    std::thread::scope(|scope| {
        let spinning = scope.spawn(|| {
            client()
                .post(format!("{}/v1/invoke", server.url))
                .bearer_auth(&operator)
                .body(spin.to_string())
                .send()
                .map(|r| r.status().as_u16())
        });
        // Until it runs, the spin is not in flight; once it is, it would run for minutes.
        std::thread::sleep(Duration::from_millis(500));
        let stopped = Server {
            child: server.child,
            url: server.url.clone(),
        }
        .stop();
        assert_eq!(stopped, 0);
        assert!(
            spinning.join().unwrap().is_err(),
            "the cut-off request gets no answer"
        );
    });
    let entries: Vec<Json> = host
        .entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .collect();
    let spins = entries
        .iter()
        .filter(|e| e["type"] == "invocation-start" && e["function"] == "spin")
        .count();
    assert_eq!(spins, 1, "only the spin that met its deadline is recorded");
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-PROTO-0901, FC-PROTO-0903, FC-PROTO-0904, FC-PROTO-0905, FC-PROTO-0906, FC-PROTO-0907, FC-PROTO-0914, FC-PROTO-0921, FC-PROTO-0928, FC-CAP-1103, FC-EXT-5510, FC-PROTO-0929, FC-SEC-1810, FC-EXT-5402
/// MCP over stdio, with the official Python SDK (`mcp` 2.x, `tests/interop/mcp_client.py`): the
/// tools are the capability functions the session's principal may invoke, named
/// `<capability>.<function>` and described by their WIT doc comments; a call's
/// `structuredContent` holds its result (the SDK checks it against the `outputSchema`), and the
/// receipt in `_meta["femtoclaw/receipt"]` names the invocation's entries in the ledger, which
/// verifies. A token's principal that may invoke nothing sees no tools.
#[test]
fn an_mcp_client_over_stdio_lists_the_principals_tools_and_gets_receipts() {
    let host = Host::with_policy(OPEN_POLICY);
    // Two versions of one capability: one tool, the highest version's.
    for version in ["0.1.0", "0.2.0"] {
        host.add(
            FEMTOCLAW_EXAMPLE_WORD_COUNT,
            &WORD_COUNT_MANIFEST
                .replace("version = \"0.1.0\"", &format!("version = \"{version}\"")),
        );
    }
    let calls = host.file(
        "calls.json",
        json!([
            { "name": "hello.greet", "arguments": { "name": "Ada" } },
            { "name": "word-count.count", "arguments": { "text": "one two" } },
            { "name": "textstats.analyze", "arguments": { "text": "to be or not to be", "top": 2 } },
        ])
        .to_string()
        .as_bytes(),
    );
    let run = |token: Option<&str>, calls: &std::path::Path| {
        let mut command = mcp_stdio_client(&host, calls);
        if let Some(token) = token {
            command.env("FEMTOCLAW_TOKEN", token);
        }
        command.output().unwrap()
    };
    let session = |token: Option<&str>, calls: &std::path::Path| {
        let out = run(token, calls);
        assert_eq!(
            code(&out),
            0,
            "{} -m mcp client (tests/run installs mcp): {}{}",
            common::python(),
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_str::<Json>(&stdout(&out)).unwrap()
    };

    let answer = session(None, &calls);
    let tools: Vec<&str> = answer["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"hello.greet") && tools.contains(&"textstats.analyze"),
        "{tools:?}"
    );
    let hello = answer["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hello.greet")
        .unwrap();
    assert_eq!(hello["description"], "Greets `name`.");
    assert_eq!(hello["inputSchema"]["required"], json!(["name"]), "{hello}");
    // Every input schema keeps to what the big model vendors accept.
    fn portable(schema: &Json) -> bool {
        match schema {
            Json::Object(map) => map.iter().all(|(key, value)| {
                key != "anyOf"
                    && key != "const"
                    && !(key == "type" && value.is_array())
                    && portable(value)
            }),
            Json::Array(items) => items.iter().all(portable),
            _ => true,
        }
    }
    for tool in answer["tools"].as_array().unwrap() {
        assert!(portable(&tool["inputSchema"]), "{tool}");
    }
    let fetch = answer["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "fetch.get")
        .unwrap();
    assert_eq!(
        fetch["inputSchema"]["required"],
        json!(["url"]),
        "an option is left out: {fetch}"
    );
    assert_eq!(
        tools.iter().filter(|t| **t == "word-count.count").count(),
        1,
        "{tools:?}"
    );
    let [greet, count, analyze] = [
        &answer["calls"][0],
        &answer["calls"][1],
        &answer["calls"][2],
    ];
    assert_eq!(count["structuredContent"]["result"]["words"], 2, "{count}");
    assert_eq!(greet["isError"], false, "{greet}");
    assert_eq!(
        greet["structuredContent"],
        json!({ "result": "Hello, Ada!" })
    );
    assert_eq!(
        analyze["structuredContent"]["result"]["words"], 6,
        "{analyze}"
    );

    let entries = host.entries();
    for call in [greet, count, analyze] {
        let receipt = &call["meta"]["femtoclaw/receipt"];
        let last = receipt["entries"][1].as_u64().unwrap() as usize;
        let end = &entries[last]["entry"];
        assert_eq!(end["type"], "invocation-end", "{receipt}");
        assert_eq!(end["invocation"], receipt["invocation"], "{receipt}");
    }
    let first = count["meta"]["femtoclaw/receipt"]["entries"][0]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(
        entries[first]["entry"]["version"], "0.2.0",
        "{}",
        entries[first]
    );
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));

    let nobody = token(&host, "agent:nobody", "nobody");
    let answer = session(Some(&nobody), &host.file("none.json", b"[]"));
    assert_eq!(answer["tools"], json!([]), "{answer}");
    // Calling a tool it does not see is a JSON-RPC error, not a run.
    let refused = run(Some(&nobody), &calls);
    assert_ne!(code(&refused), 0);
    assert!(
        stderr(&refused).contains("there is no tool `hello.greet`"),
        "{}",
        stderr(&refused)
    );
}

// Verifies: FC-PROTO-0810, FC-PROTO-0823, FC-PROTO-0835, FC-PROTO-0908, FC-PROTO-0912, FC-PROTO-0913, FC-PROTO-0917, FC-PROTO-0918, FC-PROTO-0919, FC-PROTO-0925, FC-PROTO-0928, FC-SEC-1805, FC-SEC-1811, FC-SEC-1822, FC-SEC-1825, FC-CRYPTO-3513
/// MCP over streamable HTTP at `/mcp` on `serve`, with the official Python SDK: the same tools,
/// results and receipts as over stdio, for the principal of the request's bearer token. Hostile
/// requests are refused as the specification says and the server keeps serving: no token or a
/// revoked one gets 401 with `WWW-Authenticate` naming the RFC 9728 metadata (which is served),
/// a browser `Origin` gets 403, a body over `server.max_body_bytes` gets 413.
#[test]
fn an_mcp_client_over_streamable_http_is_authenticated_and_gets_receipts() {
    let host = Host::new();
    host.configure(
        "[server]\nmax_body_bytes = 1048576\n\n[mcp]\ntools_deny = [\"textstats.digest\"]\nallowed_origins = [\"http://app.example:3000\"]\n",
    );
    let operator = token(&host, "user:local", "operator");
    let server = Server::start(&host);
    let calls = host.file(
        "calls.json",
        json!([{ "name": "hello.greet", "arguments": { "name": "Ada" } }])
            .to_string()
            .as_bytes(),
    );
    let mcp = format!("{}/mcp", server.url);
    let run = |extra: &[&str]| {
        mcp_client(&calls)
            .args(["--http", &mcp])
            .args(extra)
            .output()
            .unwrap()
    };

    let out = run(&["--token", &operator]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let answer: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        answer["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "hello.greet" && t["description"] == "Greets `name`."),
        "{answer}"
    );
    let names: Vec<&str> = answer["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"textstats.analyze") && !names.contains(&"textstats.digest"),
        "mcp.tools_deny withholds a tool: {names:?}"
    );
    let greet = &answer["calls"][0];
    assert_eq!(
        greet["structuredContent"],
        json!({ "result": "Hello, Ada!" })
    );
    let receipt = &greet["meta"]["femtoclaw/receipt"];
    let last = receipt["entries"][1].as_u64().unwrap();
    let proof = client_get(&server, &operator, &format!("/v1/ledger/proof/{last}"));
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1"), "{proof}");

    // Hostile requests.
    let refused = run(&[]);
    assert_eq!(code(&refused), 1);
    let said = stderr(&refused);
    assert!(said.contains("http-status: 401"), "{said}");
    assert!(
        said.contains("resource_metadata=\"http://127.0.0.1:")
            && said.contains("/.well-known/oauth-protected-resource\""),
        "{said}"
    );
    let metadata: Json = serde_json::from_str(&client_get(
        &server,
        "",
        "/.well-known/oauth-protected-resource/mcp",
    ))
    .unwrap();
    assert_eq!(metadata["resource"], mcp.as_str(), "{metadata}");
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
    let refused = run(&[
        "--token",
        &operator,
        "--header",
        "Origin: http://evil.example",
    ]);
    assert!(
        stderr(&refused).contains("http-status: 403"),
        "{}",
        stderr(&refused)
    );
    let allowed = run(&[
        "--token",
        &operator,
        "--header",
        "Origin: http://app.example:3000",
    ]);
    assert_eq!(code(&allowed), 0, "an allowed origin: {}", stderr(&allowed));
    // An `MCP-Protocol-Version` header that disagrees with the body, or names no version, is a
    // 400 before anything runs.
    let post = |version: &str, session: Option<&str>, body: Json| {
        let mut request = client()
            .post(&mcp)
            .bearer_auth(&operator)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().unwrap()
    };
    let initialize = |version: &str| {
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": { "name": "hostile", "version": "1" } } })
    };
    let refused = post("2025-06-18", None, initialize("2025-11-25"));
    assert_eq!(refused.status().as_u16(), 400);
    assert!(refused.text().unwrap().contains("does not match"));
    let session = post("2025-11-25", None, initialize("2025-11-25"));
    assert_eq!(session.status().as_u16(), 200);
    let session = session.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(
        post("2025-11-25", Some(&session), initialized)
            .status()
            .as_u16(),
        202
    );
    let list = |meta: Json| json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "_meta": meta } });
    let refused = post(
        "2025-11-25",
        Some(&session),
        list(json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28" })),
    );
    assert_eq!(refused.status().as_u16(), 400);
    assert!(refused.text().unwrap().contains("does not match"));
    let refused = post("1999-01-01", Some(&session), list(json!({})));
    assert_eq!(refused.status().as_u16(), 400);
    let listed = post("2025-11-25", Some(&session), list(json!({})));
    assert_eq!(listed.status().as_u16(), 200);
    assert!(listed.text().unwrap().contains("hello.greet"));
    // Spec 2026-07-28, without a session: each request carries its version, client and
    // capabilities in `_meta`, and the `Mcp-Method` (and for a call `Mcp-Name`) header.
    let stateless = |id: u64, method: &str, mut params: Json| {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "stateless", "version": "1" },
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let mut request = client()
            .post(&mcp)
            .bearer_auth(&operator)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = params["name"].as_str() {
            request = request.header("mcp-name", name);
        }
        let answer = request.body(body.to_string()).send().unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{method}");
        let text = answer.text().unwrap();
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .find(|l| l.contains("\"jsonrpc\""))
            .unwrap_or_else(|| panic!("{method}: {text}"));
        serde_json::from_str::<Json>(data).unwrap()["result"].clone()
    };
    let discovered = stateless(3, "server/discover", json!({}));
    assert!(
        discovered["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{discovered}"
    );
    let called = stateless(
        4,
        "tools/call",
        json!({ "name": "hello.greet", "arguments": { "name": "Bo" } }),
    );
    assert_eq!(
        called["structuredContent"],
        json!({ "result": "Hello, Bo!" }),
        "{called}"
    );
    assert!(
        called["_meta"]["femtoclaw/receipt"]["entries"][1].is_u64(),
        "{called}"
    );
    // A 10 MB body is refused from its length, before it is read.
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {operator}\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             content-length: {}\r\n\r\n{{",
            10 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = String::new();
    BufReader::new(&stream).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let out = host.run(&["token", "revoke", "operator"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let refused = run(&["--token", &operator]);
    assert!(
        stderr(&refused).contains("http-status: 401"),
        "{}",
        stderr(&refused)
    );
    still_serving_then_verified(server, &host);
}

// Verifies: FC-CORE-0314, FC-PROTO-0911
/// An MCP client (the official SDK, over stdio) that gives up on a long call sends
/// `notifications/cancelled`: the invocation ends at the sandbox's next tick, recorded as
/// cancelled (an interruption replay reports, not a result), and the session goes on serving.
#[test]
fn an_mcp_call_the_client_cancels_ends_recorded_as_cancelled() {
    let host = Host::with_policy(OPEN_POLICY);
    host.configure("[limits]\ndeadline_ms = 120000\nmax_fuel = 1000000000000000\n");
    let spinner = MISBEHAVE_MANIFEST.replace("fuel = 5000000\n", "fuel = 1000000000000000\n");
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, &spinner);
    let calls = host.file(
        "calls.json",
        json!([
            { "name": "misbehave.spin", "arguments": {}, "timeout": 1.0 },
            { "name": "hello.greet", "arguments": { "name": "Ada" } },
        ])
        .to_string()
        .as_bytes(),
    );
    let out = mcp_stdio_client(&host, &calls).output().unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let answer: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["calls"][0]["cancelled"], true, "{answer}");
    assert_eq!(
        answer["calls"][1]["structuredContent"],
        json!({ "result": "Hello, Ada!" })
    );

    // The spin, with fuel for minutes more and a deadline two minutes away, ended then.
    let entries = host.entries();
    let trap = entries
        .iter()
        .find(|e| e["entry"]["type"] == "trap")
        .expect("the cancelled invocation's trap is recorded");
    assert_eq!(trap["entry"]["kind"], "cancelled", "{trap}");
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

// Verifies: FC-PROTO-0910, FC-EXT-5405
/// A capability installed while `serve` runs reaches a connected MCP client at once: the
/// server sends `notifications/tools/list_changed`, and the list the client then asks for
/// offers the new capability's function. So does a change of the policy.
#[test]
fn an_mcp_client_is_told_when_the_tool_list_changes() {
    let host = Host::with_policy(OPEN_POLICY);
    let operator = token(&host, "user:local", "operator");
    let server = Server::start(&host);
    let calls = host.file("calls.json", b"[]");
    let mcp = format!("{}/mcp", server.url);
    // The tool names a client listed before and after the change `change` makes.
    let around = |change: &dyn Fn()| -> (Vec<String>, Vec<String>) {
        let mut client = mcp_client(&calls)
            .args(["--http", &mcp, "--token", &operator, "--await-list-changed"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut answer = BufReader::new(client.stdout.take().unwrap());
        let mut line = String::new();
        answer.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "waiting");
        change();
        let out = client.wait_with_output().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut answer, &mut rest).unwrap();
        assert_eq!(code(&out), 0, "{rest}{}", stderr(&out));
        let report: Json = serde_json::from_str(&rest).unwrap();
        let names = |key: &str| {
            report[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect()
        };
        (names("tools"), names("tools_after"))
    };
    let count = "word-count.count".to_owned();

    let (before, after) = around(&|| {
        let wasm = host.file("word_count.wasm", FEMTOCLAW_EXAMPLE_WORD_COUNT);
        let manifest = host.file("word-count.toml", WORD_COUNT_MANIFEST.as_bytes());
        let out = host.run(&["capability", "add", s(&wasm), "--manifest", s(&manifest)]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    });
    assert!(
        !before.contains(&count) && after.contains(&count),
        "{after:?}"
    );

    let (before, after) = around(&|| {
        host.set_policy(&format!(
            "{OPEN_POLICY}forbid (principal, action == FemtoClaw::Action::\"invoke\", resource) when {{ resource.name == \"word-count\" }};\n"
        ));
    });
    assert!(
        before.contains(&count) && !after.contains(&count),
        "{after:?}"
    );
    assert!(after.contains(&"hello.greet".to_owned()), "{after:?}");
    assert_eq!(server.stop(), 0);
}

// Verifies: FC-PROTO-0927, FC-EXT-5510
/// The official MCP conformance suite (`@modelcontextprotocol/conformance`, which `tests/run`
/// installs with the Node.js it needs) against `/mcp`, through a loopback proxy that adds the
/// bearer token the suite cannot send: every scenario passes but those
/// `tests/interop/mcp-conformance-baseline.yml` lists (with their reasons), and the suite fails
/// if one of those passes. The server is still serving afterwards, its ledger verifies.
#[test]
fn the_mcp_conformance_suite_passes_but_for_the_listed_scenarios() {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: run the test suite with tests/run"))
    };
    let (node, suite) = (var("MCP_CONFORMANCE_NODE"), var("MCP_CONFORMANCE_SUITE"));
    let proxy_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = Host::new();
    // The suite's DNS-rebinding scenario sends the proxy's own origin as the valid one.
    host.configure(&format!(
        "[mcp]\nallowed_origins = [\"http://127.0.0.1:{proxy_port}\"]\n"
    ));
    let operator = token(&host, "user:local", "operator");
    let server = Server::start(&host);
    let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop");
    let out = std::process::Command::new(common::python())
        .arg(format!("{interop}/mcp_conformance.py"))
        .args(["--node", &node, "--suite", &suite, "--token", &operator])
        .args(["--url", &format!("{}/mcp", server.url)])
        .args([
            "--baseline",
            &format!("{interop}/mcp-conformance-baseline.yml"),
        ])
        .args(["--listen", &proxy_port.to_string()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("server-initialize: 1 passed, 0 failed")
            && stdout(&out).contains("dns-rebinding-protection: 2 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
    still_serving_then_verified(server, &host);
}

/// The independent MCP client (`tests/interop/mcp_client.py`, on the official Python SDK that
/// `tests/run` installs) making the calls in `calls`; the caller adds the transport.
fn mcp_client(calls: &std::path::Path) -> std::process::Command {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/mcp_client.py"
    );
    let mut command = std::process::Command::new(common::python());
    command.args([script, "--calls", s(calls)]);
    command
}

/// The independent MCP client over stdio, launching `femtoclaw-host mcp` on `host`'s data
/// directory (no policy or token from the environment) for the calls in `calls`.
fn mcp_stdio_client(host: &Host, calls: &std::path::Path) -> std::process::Command {
    let mut command = mcp_client(calls);
    command
        .args(["--stdio", "--"])
        .arg(env!("CARGO_BIN_EXE_femtoclaw-host"))
        .args(["--data-dir", s(host.data.path()), "mcp"])
        .env_remove("FEMTOCLAW_POLICY")
        .env_remove("FEMTOCLAW_TOKEN");
    command
}

/// After hostile requests: `server` still answers, stops cleanly, and `host`'s ledger verifies.
fn still_serving_then_verified(server: Server, host: &Host) {
    let health = client()
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(server.stop(), 0);
    let verified = host.run(&["log", "verify"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

/// `GET path` on `server` with `token` (none when empty): the body.
fn client_get(server: &Server, token: &str, path: &str) -> String {
    let mut request = client().get(format!("{}{path}", server.url));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    request.send().unwrap().text().unwrap()
}
