//! Cases of the authority area: decisions against an independent model of the decision
//! function, the default policy's grants, the forms a decision takes, live tokens, approvals
//! decided by policy, every change of authority in the ledger, and the hostile inputs of the
//! threat model (planted links, tampered exports, unprovided imports, private files).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::server::{greet_of, problem};
use super::{OPEN, failed, guest_host};
use crate::target::{Host, Response, Run, Server, excerpt};
use crate::{Case, Failure, GUEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.authz.decisions-follow-an-independent-model",
        verifies: &[
            "FC-FORMAL-5101",
            "FC-FORMAL-5102",
            "FC-FORMAL-5103",
            "FC-FORMAL-5104",
            "FC-FORMAL-5105",
            "FC-FORMAL-5106",
            "FC-FORMAL-5109",
        ],
        run: decisions_follow_a_model,
    },
    Case {
        name: "cli.authz.default-policy-grants-only-its-table",
        verifies: &["FC-POL-1510", "FC-FORMAL-5116"],
        run: default_policy_grants_only_its_table,
    },
    Case {
        name: "http.authz.only-live-tokens-act",
        verifies: &["FC-CRYPTO-3513", "FC-SEC-1809", "FC-SEC-1823"],
        run: only_live_tokens_act,
    },
    Case {
        name: "http.authz.approvals-decided-by-policy",
        verifies: &[
            "FC-CRYPTO-3514",
            "FC-OPS-4009",
            "FC-OPS-4015",
            "FC-OPS-4016",
            "FC-POL-1412",
            "FC-POL-1413",
        ],
        run: approvals_decided_by_policy,
    },
    Case {
        name: "cli.authz.fresh-instance-per-invocation",
        verifies: &["FC-CRYPTO-3502"],
        run: fresh_instance_per_invocation,
    },
    Case {
        name: "cli.authz.hostile-exports",
        verifies: &["FC-CRYPTO-3508", "FC-CRYPTO-3509"],
        run: hostile_exports,
    },
    Case {
        name: "cli.authz.authority-changes-recorded",
        verifies: &["FC-CRYPTO-3516"],
        run: authority_changes_recorded,
    },
    Case {
        name: "cli.authz.planted-links-reach-nothing",
        verifies: &["FC-CRYPTO-3504"],
        run: planted_links_reach_nothing,
    },
    Case {
        name: "cli.authz.unprovided-imports-refused-at-add",
        verifies: &["FC-POL-1607", "FC-CORE-0205"],
        run: unprovided_imports_refused_at_add,
    },
    Case {
        name: "http.authz.operator-only-files",
        verifies: &["FC-CRYPTO-3512"],
        run: operator_only_files,
    },
    Case {
        name: "cli.authz.hostile-servers",
        verifies: &["FC-CRYPTO-3506", "FC-CRYPTO-3507", "FC-CRYPTO-3517"],
        run: hostile_servers,
    },
    Case {
        name: "http.authz.approval-wait",
        verifies: &["FC-OPS-4013"],
        run: approval_wait,
    },
    Case {
        name: "cli.authz.approval-state-fails-closed",
        verifies: &["FC-OPS-4017"],
        run: approval_state_fails_closed,
    },
    Case {
        name: "cli.authz.call-time-origins-and-secrets",
        verifies: &["FC-POL-1703", "FC-POL-1714", "FC-POL-1716"],
        run: call_time_origins_and_secrets,
    },
    Case {
        name: "cli.authz.stdio-mcp-principal",
        verifies: &["FC-SEC-1810"],
        run: stdio_mcp_principal,
    },
    Case {
        name: "cli.authz.malformed-scopes-refused",
        verifies: &["FC-POL-1718"],
        run: malformed_scopes_refused,
    },
    Case {
        name: "http.authz.listings-offer-only-invokable-functions",
        verifies: &["FC-POL-1414"],
        run: listings_offer_only_invokable,
    },
    Case {
        name: "cli.authz.hostile-input-failure-classes",
        verifies: &["FC-CRYPTO-3518"],
        run: hostile_input_failure_classes,
    },
    Case {
        name: "cli.authz.ledger-swaps-refused",
        verifies: &["FC-CRYPTO-3510", "FC-CRYPTO-3515"],
        run: ledger_swaps_refused,
    },
    Case {
        name: "cli.authz.unverified-code-never-runs",
        verifies: &["FC-CRYPTO-3511"],
        run: unverified_code_never_runs,
    },
    Case {
        name: "cli.authz.interrupted-invocation-recorded-once",
        verifies: &["FC-CORE-0219", "FC-CORE-0208"],
        run: interrupted_invocation_recorded_once,
    },
    Case {
        name: "cli.authz.first-party-publisher-never-declared",
        verifies: &["FC-POL-1416"],
        run: first_party_publisher_never_declared,
    },
    Case {
        name: "cli.authz.run-time-decisions-recorded",
        verifies: &["FC-FORMAL-5108"],
        run: run_time_decisions_recorded,
    },
    Case {
        name: "cli.authz.grants-follow-manifest-and-policy",
        verifies: &[
            "FC-FORMAL-5107",
            "FC-POL-1612",
            "FC-POL-1620",
            "FC-POL-1604",
            "FC-POL-1606",
            "FC-CORE-0204",
        ],
        run: grants_follow_manifest_and_policy,
    },
    Case {
        name: "cli.authz.address-kinds",
        verifies: &["FC-POL-1708"],
        run: address_kinds,
    },
    Case {
        name: "cli.authz.erring-policies-reported-and-skipped",
        verifies: &["FC-FORMAL-5111"],
        run: erring_policies_reported_and_skipped,
    },
    Case {
        name: "cli.authz.preopens-only-granted-paths",
        verifies: &["FC-POL-1609"],
        run: preopens_only_granted_paths,
    },
    Case {
        name: "cli.authz.checks-in-order",
        verifies: &["FC-CORE-0220"],
        run: checks_in_order,
    },
    Case {
        name: "http.authz.acknowledged-survives-a-kill",
        verifies: &["FC-CORE-0209"],
        run: acknowledged_survives_a_kill,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Writes a file, creating its parent.
fn write(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `policy check PATH`: the digest it ends with.
fn digest_of(host: &Host, path: &Path) -> Result<String, Failure> {
    let run = host.run(&["policy", "check", &lossy(path)])?;
    run.expect(0, &format!("policy check {}", path.display()))?;
    let last = run.stdout.trim_end().lines().last().unwrap_or("");
    let digest = last.rsplit("digest ").next().unwrap_or("");
    ensure!(
        last.contains(" policies, digest ") && is_hex64(digest),
        "policy check does not end with `<n> policies, digest <hex>`: {}",
        excerpt(&run.stdout)
    );
    Ok(digest.to_owned())
}

/// `policy explain --json` with `args`.
fn explain(host: &Host, args: &[&str]) -> Result<Json, Failure> {
    let mut all = vec!["policy", "explain", "--json"];
    all.extend_from_slice(args);
    let run = host.run(&all)?;
    run.expect(0, &all.join(" "))?;
    run.json()
}

/// Installs the suite's guest as capability `name` (version 1.0.0) under `requests`.
fn probe(host: &Host, name: &str, publisher: &str, requests: &str) -> Result<Run, Failure> {
    let wasm = host.file(&format!("{name}.wasm"), GUEST)?;
    let manifest = format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\npublisher = \"{publisher}\"\nfuel = 50_000_000\n\n[requests]\n{requests}\n"
    );
    let manifest = host.file(&format!("{name}.toml"), manifest.as_bytes())?;
    host.run(&[
        "capability",
        "add",
        &lossy(&wasm),
        "--manifest",
        &lossy(&manifest),
    ])
}

/// The guest's own requests.
const GUEST_REQUESTS: &str = "imports = [\"femtoclaw:host/log@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]\nkv = [{ namespace = \"conformance\", write = true }]";

/// The item of an explanation's list whose `key` is `value` (and whose action is `action`).
fn item<'a>(list: &'a Json, key: &str, value: &str, action: Option<&str>) -> Option<&'a Json> {
    list.as_array()?
        .iter()
        .find(|i| i[key] == value && action.is_none_or(|a| i["action"] == a))
}

/// The entries' `entry` members.
fn bodies(entries: &[Json]) -> Vec<&Json> {
    entries.iter().map(|e| &e["entry"]).collect()
}

/// A server of the case's own, started from the binary.
struct Served {
    child: Child,
    url: String,
    /// A token of `user:local`.
    token: String,
    host: Host,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// A token of `principal` named `name`, with `groups`.
    fn token(&self, principal: &str, name: &str, groups: &[&str]) -> Result<String, Failure> {
        let mut args = vec!["token", "create", "--principal", principal, "--name", name];
        for g in groups {
            args.extend_from_slice(&["--group", g]);
        }
        Ok(self.host.ok(&args)?.trim().to_owned())
    }

    /// One request with `token` (none: `None`) and a JSON body.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Json>,
        headers: &[(&str, &str)],
    ) -> Result<Response, Failure> {
        let mut request = Server::client().request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .map_err(|e| failed(format!("{path}: no answer: {e}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .map_err(|e| failed(format!("{path}: cannot read the body: {e}")))?;
        Ok(Response {
            status,
            headers,
            text,
        })
    }

    fn get(&self, path: &str, token: &str) -> Result<Response, Failure> {
        self.request(reqwest::Method::GET, path, Some(token), None, &[])
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Json) -> Result<Response, Failure> {
        self.request(reqwest::Method::POST, path, token, Some(body), &[])
    }

    /// One MCP message to `/mcp`.
    fn mcp(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        message: &Json,
    ) -> Result<Response, Failure> {
        let mut headers = vec![
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
        }
        self.request(
            reqwest::Method::POST,
            "/mcp",
            token,
            Some(message),
            &headers,
        )
    }

    /// An initialized MCP session of `token`.
    fn mcp_session(&self, token: &str) -> Result<String, Failure> {
        let response = self.mcp(Some(token), None, &initialize())?;
        response.expect(200, "MCP initialize")?;
        let session = response.header("mcp-session-id").to_owned();
        ensure!(
            !session.is_empty(),
            "MCP initialize answered no Mcp-Session-Id"
        );
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        self.mcp(Some(token), Some(&session), &initialized)?
            .expect(202, "MCP notifications/initialized")?;
        Ok(session)
    }

    /// `tools/call` of `name` on a session of `token`: the JSON-RPC answer.
    fn mcp_call(&self, token: &str, name: &str, arguments: &Json) -> Result<Json, Failure> {
        let session = self.mcp_session(token)?;
        let call = json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": { "name": name, "arguments": arguments }
        });
        let response = self.mcp(Some(token), Some(&session), &call)?;
        response.expect(200, &format!("MCP tools/call {name}"))?;
        response.json()
    }

    /// The server's ledger entries, over `GET /v1/ledger/entries`.
    fn entries(&self) -> Result<Vec<Json>, Failure> {
        let mut all = Vec::new();
        loop {
            let path = format!("/v1/ledger/entries?from={}&limit=1000", all.len());
            let response = self.get(&path, &self.token)?;
            response.expect(200, &path)?;
            let page = response.json()?["entries"]
                .as_array()
                .cloned()
                .ok_or_else(|| failed(format!("{path}: no entries array")))?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }
}

fn initialize() -> Json {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
        }
    })
}

/// Starts `serve --listen 127.0.0.1:0` on a fresh data directory with `policy` (none: the
/// default), `config` as its `femtoclaw.toml`, and the suite's guest when `guest`.
fn serve(
    target: &Target,
    policy: Option<&str>,
    config: &str,
    guest: bool,
) -> Result<Served, Failure> {
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
    write(&host.data.path().join("femtoclaw.toml"), config)?;
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "user:local",
            "--name",
            "local",
        ])?
        .trim()
        .to_owned();
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed(format!(
            "serve must first print `listening on URL`; it printed {:?}",
            line.trim()
        )));
    };
    Ok(Served {
        child,
        url,
        token,
        host,
    })
}

/// A small deterministic generator (xorshift64*), so that a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Specification 51: decisions against an independent model.

/// The principals the model asks about.
const PRINCIPALS: [&str; 3] = ["user:ada", "agent:x", "agent:y"];
/// The capabilities (the suite's guest installed twice).
const CAPABILITIES: [&str; 2] = ["alpha", "beta"];

/// One generated rule.
#[derive(Clone, Debug)]
struct Rule {
    id: String,
    permit: bool,
    /// 0 any, 1 `User::"ada"`, 2 `Agent::"x"`, 3 any agent.
    principal: usize,
    /// 0 any, 1 invoke, 2 link.
    action: usize,
    /// 0 any, 1 `Capability::"alpha"`.
    resource: usize,
}

impl Rule {
    fn generate(rng: &mut Rng, id: String, permit: bool) -> Self {
        let action = rng.below(3);
        // A rule on capability `alpha` cannot be about linking (an interface).
        let resource = if action == 2 { 0 } else { rng.below(2) };
        Rule {
            id,
            permit,
            principal: rng.below(4),
            action,
            resource,
        }
    }

    fn text(&self) -> String {
        let principal = match self.principal {
            1 => "principal == FemtoClaw::User::\"ada\"",
            2 => "principal == FemtoClaw::Agent::\"x\"",
            3 => "principal is FemtoClaw::Agent",
            _ => "principal",
        };
        let action = match self.action {
            1 => "action == FemtoClaw::Action::\"invoke\"",
            2 => "action == FemtoClaw::Action::\"link\"",
            _ => "action",
        };
        let resource = if self.resource == 1 {
            "resource == FemtoClaw::Capability::\"alpha\""
        } else {
            "resource"
        };
        format!(
            "@id(\"{}\")\n{} ({principal}, {action}, {resource});\n",
            self.id,
            if self.permit { "permit" } else { "forbid" }
        )
    }

    /// Whether the rule applies to (principal, invoke or link, capability).
    fn applies(&self, principal: &str, link: bool, capability: &str) -> bool {
        let p = match self.principal {
            1 => principal == "user:ada",
            2 => principal == "agent:x",
            3 => principal.starts_with("agent:"),
            _ => true,
        };
        let a = match self.action {
            1 => !link,
            2 => link,
            _ => true,
        };
        let r = self.resource == 0 || (!link && capability == "alpha");
        p && a && r
    }
}

/// The model's decision: (allowed, reason, policy ids).
fn model(rules: &[Rule], principal: &str, link: bool, capability: &str) -> (bool, String, Json) {
    let ids = |permit: bool| -> Vec<String> {
        let mut ids: Vec<String> = rules
            .iter()
            .filter(|r| r.permit == permit && r.applies(principal, link, capability))
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    };
    let forbids = ids(false);
    let permits = ids(true);
    if !forbids.is_empty() {
        (false, "forbidden".into(), json!(forbids))
    } else if !permits.is_empty() {
        (true, "permitted".into(), json!(permits))
    } else {
        (false, "no_permit".into(), json!([]))
    }
}

/// The engine's decisions for every (principal, capability) and invoke or link, under the
/// policy now written; each checked to carry `digest`.
fn engine(host: &Host, digest: &str) -> Result<Vec<(String, bool, String, Json)>, Failure> {
    let mut out = Vec::new();
    for principal in PRINCIPALS {
        for capability in CAPABILITIES {
            let e = explain(
                host,
                &[
                    "--capability",
                    capability,
                    "--principal",
                    principal,
                    "--function",
                    "echo",
                ],
            )?;
            let link = item(&e["imports"], "interface", "femtoclaw:host/log@0.1.0", None)
                .ok_or_else(|| failed(format!("the explanation lists no log import: {e}")))?;
            // Every decision carries the digest of the set that made it, not-requested
            // imports included.
            let mut all: Vec<&Json> = vec![&e["invoke"]];
            all.extend(
                e["imports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| &i["decision"]),
            );
            all.extend(
                e["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| &s["decision"]),
            );
            ensure!(
                e["policy_digest"] == digest && all.iter().all(|d| d["policy_digest"] == digest),
                "every decision of the explanation must carry the digest {digest} of the set in force: {}",
                excerpt(&e.to_string())
            );
            for (link, decision) in [(false, &e["invoke"]), (true, &link["decision"])] {
                out.push((
                    format!(
                        "{} of {capability} by {principal}",
                        if link { "link of log" } else { "invoke" }
                    ),
                    decision["allowed"] == true,
                    decision["reason"].as_str().unwrap_or("?").to_owned(),
                    decision["policy_ids"].clone(),
                ));
            }
        }
    }
    Ok(out)
}

/// The model's decisions, in [`engine`]'s order.
fn modelled(rules: &[Rule]) -> Vec<(bool, String, Json)> {
    let mut out = Vec::new();
    for principal in PRINCIPALS {
        for capability in CAPABILITIES {
            for link in [false, true] {
                out.push(model(rules, principal, link, capability));
            }
        }
    }
    out
}

fn decisions_follow_a_model(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    for name in CAPABILITIES {
        probe(&host, name, "acme", GUEST_REQUESTS)?
            .expect(0, &format!("capability add of the guest as {name}"))?;
    }
    let dir = host.data.path().join("policy");
    let file = dir.join("conformance.cedar");
    let mut rng = Rng(0x5eed_c0de_f00d_2026);
    // Ids whose sorted order is not the order they are written in.
    let names = ["m", "c", "x", "a", "q", "f", "z", "k", "b"];
    let mut sets: Vec<Vec<Rule>> = Vec::new();
    for round in 0..3 {
        let n = 2 + rng.below(4);
        let set: Vec<Rule> = (0..n)
            .map(|i| {
                let id = format!("{}{round}{i}", names[rng.below(names.len())]);
                let permit = round == 0 || rng.below(3) != 0;
                Rule::generate(&mut rng, id, permit)
            })
            .collect();
        sets.push(set);
    }
    // A set of forbids only denies everything (round 0 is permits only; make set 1 forbids).
    for rule in &mut sets[1] {
        rule.permit = false;
    }
    let run = |rules: &[Rule],
               what: &str,
               split: bool|
     -> Result<Vec<(bool, String, Json)>, Failure> {
        let _ = std::fs::remove_dir_all(&dir);
        if split {
            // The same rules, reversed, over two files.
            let mut reversed: Vec<&Rule> = rules.iter().collect();
            reversed.reverse();
            let half = reversed.len() / 2;
            let text = |part: &[&Rule]| part.iter().map(|r| r.text()).collect::<String>();
            write(&dir.join("b.cedar"), &text(&reversed[..half]))?;
            write(
                &dir.join("a.cedar"),
                &format!("// reordered\n{}", text(&reversed[half..])),
            )?;
        } else {
            write(&file, &rules.iter().map(Rule::text).collect::<String>())?;
        }
        let digest = digest_of(&host, &dir)?;
        let got = engine(&host, &digest)?;
        let want = modelled(rules);
        for ((label, allowed, reason, ids), (m_allowed, m_reason, m_ids)) in got.iter().zip(&want) {
            ensure!(
                *allowed == *m_allowed && reason == m_reason && ids == m_ids,
                "{what}: the {label} must be allowed={m_allowed}, reason {m_reason}, policy ids {m_ids} (one permit applying and no forbid allows; a forbid denies naming the forbids; no permit denies naming none); the runtime decided allowed={allowed}, reason {reason}, policy ids {ids} under\n{}",
                rules.iter().map(Rule::text).collect::<String>()
            );
        }
        Ok(want)
    };
    for (n, set) in sets.iter().enumerate() {
        let base = run(set, &format!("set {n}"), false)?;
        let base_digest = digest_of(&host, &dir)?;
        if set.iter().all(|r| !r.permit) {
            ensure!(
                base.iter().all(|(allowed, _, _)| !allowed),
                "set {n}: a set without permits allowed something"
            );
        }
        // The same set in another order and other files: the same decisions and digest.
        let reordered = run(set, &format!("set {n} reordered"), true)?;
        let reordered_digest = digest_of(&host, &dir)?;
        ensure!(
            reordered == base && reordered_digest == base_digest,
            "set {n}: written in another order, the set has digest {reordered_digest} where {base_digest} is required"
        );
        // One more permit allows no less; one more forbid allows no more.
        for permit in [true, false] {
            let mut bigger = set.clone();
            bigger.push(Rule::generate(&mut rng, format!("added{n}"), permit));
            let what = format!(
                "set {n} with one more {}",
                if permit { "permit" } else { "forbid" }
            );
            let after = run(&bigger, &what, false)?;
            let after_digest = digest_of(&host, &dir)?;
            ensure!(
                after_digest != base_digest,
                "{what}: the digest did not change ({base_digest})"
            );
            for ((before, _, _), (now, _, _)) in base.iter().zip(&after) {
                ensure!(
                    if permit {
                        !before || *now
                    } else {
                        *before || !now
                    },
                    "{what}: a decision went from allowed={before} to allowed={now}"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 15 and 51: the default policy.

fn default_policy_grants_only_its_table(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let requests = "imports = [\"femtoclaw:host/log@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\", \"wasi:sockets/tcp@0.2.0\"]\nkv = [{ namespace = \"memory\", write = true }, { namespace = \"probe\", write = true }]\nhttp = [\"https://api.example.com\"]\npaths = [{ path = \"/data\", write = true }]\nsecrets = [\"token\"]\nconfig = [\"region\"]";
    probe(&host, "probe", "acme", requests)?.expect(0, "capability add of the guest as probe")?;
    let mut ids: Vec<String> = Vec::new();
    let mut collect = |e: &Json| {
        let mut all: Vec<&Json> = vec![&e["invoke"]];
        for list in ["imports", "scopes"] {
            all.extend(
                e[list]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| &i["decision"]),
            );
        }
        for d in all {
            ids.extend(
                d["policy_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.as_str().map(str::to_owned)),
            );
        }
    };
    let no_permit = |e: &Json, what: &str, d: &Json| -> Result<(), Failure> {
        ensure!(
            d["allowed"] == false && d["reason"] == "no_permit" && d["policy_ids"] == json!([]),
            "under the default policy, {what} must be denied with reason no_permit and no policy ids: {d} (in {e})"
        );
        Ok(())
    };
    let scope = |e: &Json, action: &str, scope: &str| -> Result<Json, Failure> {
        item(&e["scopes"], "scope", scope, Some(action))
            .map(|s| s["decision"].clone())
            .ok_or_else(|| failed(format!("the explanation lists no {action} {scope}: {e}")))
    };
    // The first-party capabilities: what the table grants, and nothing else.
    let hello = explain(&host, &["--capability", "hello", "--function", "greet"])?;
    collect(&hello);
    ensure!(
        hello["invoke"]["allowed"] == true
            && hello["invoke"]["policy_ids"] == json!(["default:invoke-first-party"]),
        "the local operator's hello.greet must be permitted by `default:invoke-first-party` alone: {}",
        hello["invoke"]
    );
    let memory = explain(&host, &["--capability", "memory"])?;
    collect(&memory);
    for action in ["kv.read", "kv.write"] {
        let d = scope(&memory, action, "memory")?;
        ensure!(
            d["allowed"] == true && d["policy_ids"] == json!(["default:own-kv-namespace"]),
            "memory's {action} on its own namespace must be permitted by `default:own-kv-namespace`: {d}"
        );
    }
    for import in memory["imports"].as_array().into_iter().flatten() {
        ensure!(
            import["linked"] == true
                && import["decision"]["policy_ids"] == json!(["default:link-host-and-baseline"]),
            "memory's import {} must link by `default:link-host-and-baseline`: {import}",
            import["interface"]
        );
    }
    let fetch = explain(&host, &["--capability", "fetch"])?;
    collect(&fetch);
    for origin in ["https://*", "http://*"] {
        no_permit(
            &fetch,
            &format!("fetch's http.request on {origin}"),
            &scope(&fetch, "http.request", origin)?,
        )?;
    }
    let files = explain(&host, &["--capability", "files"])?;
    collect(&files);
    for action in ["fs.read", "fs.write"] {
        no_permit(
            &files,
            &format!("files' {action} on /data"),
            &scope(&files, action, "/data")?,
        )?;
    }
    // A third-party capability: not invoked, nothing linked, no scope granted.
    let e = explain(&host, &["--capability", "probe", "--function", "echo"])?;
    collect(&e);
    no_permit(
        &e,
        "the local operator's invocation of a third-party capability",
        &e["invoke"],
    )?;
    for import in e["imports"].as_array().into_iter().flatten() {
        ensure!(
            import["linked"] == false,
            "under the default policy a third-party capability must link nothing; {} links: {import}",
            import["interface"]
        );
    }
    for (action, s) in [
        ("http.request", "https://api.example.com"),
        ("fs.read", "/data"),
        ("fs.write", "/data"),
        ("secret.use", "token"),
        ("config.read", "region"),
        ("kv.read", "memory"),
        ("kv.write", "memory"),
        ("kv.read", "probe"),
        ("kv.write", "probe"),
    ] {
        no_permit(
            &e,
            &format!("the local operator's {action} on {s}"),
            &scope(&e, action, s)?,
        )?;
    }
    // Any other principal: nothing.
    for principal in ["agent:local", "user:ada"] {
        let e = explain(&host, &["--capability", "memory", "--principal", principal])?;
        collect(&e);
        no_permit(
            &e,
            &format!("{principal}'s invocation of memory"),
            &e["invoke"],
        )?;
        for s in e["scopes"].as_array().into_iter().flatten() {
            no_permit(
                &e,
                &format!("{principal}'s {} {}", s["action"], s["scope"]),
                &s["decision"],
            )?;
        }
    }
    ensure!(
        !ids.is_empty() && ids.iter().all(|id| id.starts_with("default:")),
        "every id of the default policy must begin `default:`; the decisions named {ids:?}"
    );
    // Loaded without a warning.
    let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    run.expect(0, "hello.greet under the default policy")?;
    ensure!(
        !run.stderr.to_lowercase().contains("warning"),
        "the default policy loaded with a warning: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 18 and 35: tokens.

/// Permits the group `greeters` to greet; links anything.
const GREETERS: &str = r#"@id("greeters-greet")
permit (principal in FemtoClaw::Group::"greeters", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("link-anything")
permit (principal, action == FemtoClaw::Action::"link", resource);
"#;

fn only_live_tokens_act(target: &Target) -> Result<(), Failure> {
    let served = serve(target, Some(GREETERS), "", false)?;
    let member = served.token("agent:bot", "bot-greeter", &["greeters"])?;
    let outsider = served.token("agent:bot", "bot-alone", &[])?;
    ensure!(
        member.starts_with("fct_") && outsider.starts_with("fct_"),
        "token create must print a `fct_` token: {member:?}, {outsider:?}"
    );
    // The token's principal and groups: the member greets, the same principal without the
    // group is refused.
    let response = served.post("/v1/invoke", Some(&member), &greet_of("Ada"))?;
    response.expect(
        200,
        "hello.greet with a token of agent:bot in group greeters",
    )?;
    problem(
        &served.post("/v1/invoke", Some(&outsider), &greet_of("Ada"))?,
        403,
        "denied",
        "hello.greet with a token of agent:bot in no group",
    )?;
    let answer = served.mcp_call(&member, "hello.greet", &json!({ "name": "Mcp" }))?;
    ensure!(
        answer["result"]["isError"] != true && answer["result"].is_object(),
        "tools/call hello.greet with the member's token did not succeed: {answer}"
    );
    let starts: Vec<Json> = bodies(&served.entries()?)
        .into_iter()
        .filter(|e| e["type"] == "invocation-start")
        .cloned()
        .collect();
    ensure!(
        starts.len() == 3
            && starts
                .iter()
                .all(|s| s["principal"] == "FemtoClaw::Agent::\"bot\""),
        "the three invocations of agent:bot's tokens (API, API, MCP) must each start naming FemtoClaw::Agent::\"bot\": {starts:?}"
    );
    // No token, a made-up token and a revoked token act for nobody, on the API and on /mcp.
    served
        .host
        .ok(&["token", "revoke", "bot-greeter"])
        .map_err(|e| failed(format!("token revoke: {e:?}")))?;
    let before = served.entries()?.len();
    let made_up = "fct_conformanceMadeUpToken0000000000000000000";
    for (what, token) in [
        ("no token", None),
        ("a made-up fct_ token", Some(made_up)),
        ("a revoked token", Some(member.as_str())),
    ] {
        problem(
            &served.post("/v1/invoke", token, &greet_of("Ada"))?,
            401,
            "unauthenticated",
            &format!("POST /v1/invoke with {what}"),
        )?;
        let response = served.mcp(token, None, &initialize())?;
        response.expect(401, &format!("MCP initialize with {what}"))?;
        let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "hello.greet", "arguments": { "name": "Ada" } } });
        served
            .mcp(token, None, &call)?
            .expect(401, &format!("MCP tools/call with {what}"))?;
    }
    let after = served.entries()?;
    ensure!(
        after.len() == before,
        "requests without a live token reached the invocation path: the ledger grew from {before} to {} entries",
        after.len()
    );
    // invoke --remote with a token the server refuses: exit 7.
    let cli = target.host()?;
    for (what, token) in [
        ("a revoked token", member.as_str()),
        ("a made-up token", made_up),
    ] {
        let run = cli.run(&[
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"{"name":"Ada"}"#,
            "--remote",
            &served.url,
            "--token",
            token,
        ])?;
        run.expect(7, &format!("invoke --remote with {what}"))?;
        ensure!(
            run.stdout.trim().is_empty(),
            "invoke --remote with {what} printed a result: {}",
            excerpt(&run.stdout)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 14, 35 and 40: approvals.

/// `agent:bot` greets only with approval (one permit marked, one not); `agent:carl`'s marked
/// permit is beaten by a forbid; `user:ops` may approve greet, `user:eve` only another
/// function, `agent:bot` anything.
const APPROVALS: &str = r#"@id("bot-greets-with-approval")
@approval("required")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("bot-greets-plainly")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("carl-greets-with-approval")
@approval("required")
permit (principal == FemtoClaw::Agent::"carl", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");
@id("carl-forbidden")
forbid (principal == FemtoClaw::Agent::"carl", action == FemtoClaw::Action::"invoke", resource);
@id("link-anything")
permit (principal, action == FemtoClaw::Action::"link", resource);
@id("ops-approves-greet")
permit (principal == FemtoClaw::User::"ops", action == FemtoClaw::Action::"approve", resource == FemtoClaw::Capability::"hello") when { context has function && context.function == "greet" };
@id("eve-approves-other")
permit (principal == FemtoClaw::User::"eve", action == FemtoClaw::Action::"approve", resource == FemtoClaw::Capability::"hello") when { context has function && context.function == "other" };
@id("bot-approves")
permit (principal == FemtoClaw::Agent::"bot", action == FemtoClaw::Action::"approve", resource);
"#;

/// The ids `GET /v1/approvals` lists for `token`.
fn listed(served: &Served, token: &str) -> Result<Vec<String>, Failure> {
    let response = served.get("/v1/approvals", token)?;
    response.expect(200, "GET /v1/approvals")?;
    let body = response.json()?;
    Ok(body
        .as_array()
        .ok_or_else(|| failed(format!("GET /v1/approvals is not an array: {body}")))?
        .iter()
        .map(|a| a["id"].to_string())
        .collect())
}

/// The approval id of a pending HTTP answer, checked: 202, `Location`.
fn pending(response: &Response, what: &str) -> Result<String, Failure> {
    let document = problem(response, 202, "approval-pending", what)?;
    let id = document["approval"]
        .as_u64()
        .ok_or_else(|| failed(format!("{what}: the 202 names no approval: {document}")))?;
    ensure!(
        response.header("location") == format!("/v1/approvals/{id}"),
        "{what}: the 202 carries Location {:?} where /v1/approvals/{id} is required",
        response.header("location")
    );
    Ok(id.to_string())
}

/// The id in `pending as approval N`.
fn pending_id(text: &str) -> Option<String> {
    text.split("pending as approval ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

fn approvals_decided_by_policy(target: &Target) -> Result<(), Failure> {
    let served = serve(target, Some(APPROVALS), "", false)?;
    let bot = served.token("agent:bot", "bot", &[])?;
    let carl = served.token("agent:carl", "carl", &[])?;
    let ops = served.token("user:ops", "ops", &[])?;
    let eve = served.token("user:eve", "eve", &[])?;
    let other = served.token("agent:other", "other", &[])?;
    // Pending although a second, unmarked permit also determines the decision.
    let id = pending(
        &served.post("/v1/invoke", Some(&bot), &greet_of("Ada"))?,
        "agent:bot's greet under a marked and an unmarked permit",
    )?;
    // A denied decision never needs approval.
    problem(
        &served.post("/v1/invoke", Some(&carl), &greet_of("Ada"))?,
        403,
        "denied",
        "agent:carl's greet, marked for approval but forbidden",
    )?;
    // Over MCP the pending call is an error result naming its approval.
    let answer = served.mcp_call(&bot, "hello.greet", &json!({ "name": "Mcp" }))?;
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    let mcp_id = pending_id(text);
    ensure!(
        answer["result"]["isError"] == true && mcp_id.as_ref().is_some_and(|m| *m != id),
        "tools/call of an approval-required call must be an isError result naming a new approval: {answer}"
    );
    let entries = served.entries()?;
    let all = bodies(&entries);
    let requests = all
        .iter()
        .filter(|e| e["type"] == "approval" && e["action"] == "request")
        .count();
    ensure!(
        requests == 2,
        "the two pending calls must be recorded as two approval requests; {requests} are: {all:?}"
    );
    ensure!(
        !all.iter()
            .any(|e| e["type"] == "invocation-end" && !e["result"].is_null()),
        "a call pending approval ran: an invocation ended with a result: {all:?}"
    );
    // Visible only to who asked and who may decide.
    let mut seen = listed(&served, &bot)?;
    seen.sort();
    let mut both = vec![id.clone(), mcp_id.clone().unwrap_or_default()];
    both.sort();
    ensure!(
        seen == both,
        "the asker must see exactly its approvals {both:?}; it sees {seen:?}"
    );
    let mut seen = listed(&served, &ops)?;
    seen.sort();
    ensure!(
        seen == both,
        "user:ops, who may approve greet, must see {both:?}; it sees {seen:?}"
    );
    for (who, token) in [
        ("agent:other", &other),
        ("user:eve", &eve),
        ("agent:carl", &carl),
    ] {
        let seen = listed(&served, token)?;
        ensure!(
            seen.is_empty(),
            "{who}, who neither asked nor may decide, sees approvals {seen:?}"
        );
        problem(
            &served.get(&format!("/v1/approvals/{id}"), token)?,
            404,
            "unknown",
            &format!("GET of another's approval by {who}"),
        )?;
    }
    served
        .get(&format!("/v1/approvals/{id}"), &bot)?
        .expect(200, "GET of its own approval by the asker")?;
    served
        .get(&format!("/v1/approvals/{id}"), &ops)?
        .expect(200, "GET of an approval by who may decide it")?;
    // Deciding: the asker never (though the policy lets it approve), a principal whose
    // approve permit is for another function never, the permitted approver yes.
    let decide = |token: &str| {
        served.post(
            &format!("/v1/approvals/{id}"),
            Some(token),
            &json!({ "decision": "grant", "reason": "conformance" }),
        )
    };
    for (who, token) in [
        ("the asker, agent:bot", &bot),
        ("user:eve, permitted to approve only another function", &eve),
        ("agent:other, not permitted to approve", &other),
    ] {
        problem(&decide(token)?, 403, "denied", &format!("a grant by {who}"))?;
    }
    let entries = served.entries()?;
    ensure!(
        !bodies(&entries)
            .iter()
            .any(|e| e["type"] == "approval" && e["action"] == "grant"),
        "a refused decision was recorded as a grant"
    );
    decide(&ops)?.expect(200, "the grant by user:ops")?;
    // The grant covers exactly the call: other arguments wait, the identical call runs.
    pending(
        &served.post("/v1/invoke", Some(&bot), &greet_of("Bob"))?,
        "the same function with other arguments after the grant",
    )?;
    served
        .post("/v1/invoke", Some(&bot), &greet_of("Ada"))?
        .expect(200, "the granted call")?;
    // On the command line: exit 13 naming the approval, nothing run.
    let cli = target.host()?;
    cli.policy(APPROVALS)?;
    let run = cli.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?;
    run.expect(13, "an approval-required call on the command line")?;
    ensure!(
        pending_id(&run.stderr).is_some() && run.stdout.trim().is_empty(),
        "the pending call must print no result and name its approval: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 35: hostile guests, hostile ledger files, a malicious operator.

/// `invoke conformance FUNCTION --json`: (exit, result, fuel consumed).
fn report(host: &Host, function: &str, args: &Json) -> Result<(i32, Json, Json), Failure> {
    let run = host.invoke(function, args, &["--json"])?;
    if run.code != 0 {
        return Ok((run.code, Json::Null, Json::Null));
    }
    let report = run.json()?;
    Ok((
        run.code,
        report["result"].clone(),
        report["fuel"]["consumed"].clone(),
    ))
}

fn fresh_instance_per_invocation(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let probes = [
        ("add", json!({ "a": 20, "b": 22 })),
        ("echo", json!({ "text": "short" })),
        ("recall", json!({ "key": "never-written" })),
    ];
    let mut first = Vec::new();
    for (function, args) in &probes {
        let (code, result, fuel) = report(&host, function, args)?;
        ensure!(
            code == 0 && fuel.as_u64().is_some_and(|f| f > 0),
            "{function} {args} made first: exit {code}, fuel {fuel}"
        );
        first.push((result, fuel));
    }
    // Other invocations of the same component: a large allocation, state written, a trap, a
    // guest stopped by its fuel, a log line.
    let big = "x".repeat(60_000);
    host.invoke("echo", &json!({ "text": big }), &[])?
        .expect(0, "echo of 60 000 characters")?;
    host.invoke("remember", &json!({ "key": "k", "value": "v" }), &[])?
        .expect(0, "remember")?;
    host.invoke("divide", &json!({ "a": 1, "b": 0 }), &[])?
        .expect(5, "divide by zero")?;
    host.invoke("spin", &json!({}), &["--fuel", "1000000"])?
        .expect(4, "spin on 1 000 000 fuel")?;
    host.invoke("note", &json!({ "message": "between" }), &[])?
        .expect(0, "note")?;
    for ((function, args), (result, fuel)) in probes.iter().zip(&first) {
        let (code, again, again_fuel) = report(&host, function, args)?;
        ensure!(
            code == 0 && again == *result && again_fuel == *fuel,
            "{function} {args} after other invocations of the component must give result {result} and consume {fuel} fuel as when made first; it exited {code} with result {again} and fuel {again_fuel}"
        );
    }
    Ok(())
}

/// Writes an export: the magic, version 1, the entries and checkpoints sections, the end.
fn export_bytes(entries: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
    let mut out = b"FCLEDGER\x01\x01".to_vec();
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out.extend_from_slice(tail);
    out
}

/// An `invocation-start` entry whose first argument is `value` (already encoded).
fn start_entry_with(value: &[u8]) -> Vec<u8> {
    let mut e = vec![0x03, 0x01];
    let s = |e: &mut Vec<u8>, t: &[u8]| {
        e.extend_from_slice(&(t.len() as u32).to_le_bytes());
        e.extend_from_slice(t);
    };
    e.extend_from_slice(&0u64.to_le_bytes());
    s(&mut e, b"FemtoClaw::User::\"local\"");
    e.extend_from_slice(&0u32.to_le_bytes());
    s(&mut e, b"conformance");
    s(&mut e, b"1.0.0");
    e.extend_from_slice(&[0x11; 64]);
    s(&mut e, b"femtoclaw:conformance/conformance@1.0.0");
    e.extend_from_slice(&[0x22; 32]);
    s(&mut e, b"0");
    e.extend_from_slice(&1000u64.to_le_bytes());
    e.push(0);
    s(&mut e, b"echo");
    e.extend_from_slice(&1u32.to_le_bytes());
    s(&mut e, b"text");
    e.extend_from_slice(value);
    e.extend_from_slice(&[0, 0]);
    e
}

fn hostile_exports(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "recorded" }), &[])?
        .expect(0, "echo")?;
    host.invoke("remember", &json!({ "key": "k", "value": "v" }), &[])?
        .expect(0, "remember")?;
    host.invoke("divide", &json!({ "a": 1, "b": 0 }), &[])?
        .expect(5, "divide by zero")?;
    let export = host.files.path().join("honest.export");
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let honest =
        std::fs::read(&export).map_err(|e| failed(format!("cannot read the export: {e}")))?;
    let replayer = target.host()?;
    let check = |bytes: &[u8], what: &str, replay: bool| -> Result<(), Failure> {
        let file = host.files.path().join("hostile.export");
        std::fs::write(&file, bytes).map_err(|e| failed(format!("cannot write {what}: {e}")))?;
        let started = Instant::now();
        let run = host.run(&["log", "verify", &lossy(&file), "--key", &key])?;
        ensure!(
            run.code == 8 && started.elapsed() < Duration::from_secs(60),
            "log verify of {what} must exit 8 (integrity); it exited {} after {:.1} s: {}",
            run.code,
            started.elapsed().as_secs_f64(),
            excerpt(&run.stderr)
        );
        if replay {
            let run = replayer.run(&["replay", &lossy(&file), "--key", &key, "--json"])?;
            let said = format!("{}{}", run.stdout, run.stderr).to_lowercase();
            ensure!(
                run.code == 8 && !said.contains("diverge") && !said.contains("identical"),
                "replay of {what} must exit 8 (integrity) before re-executing anything, never report a divergence; it exited {}: {}",
                run.code,
                excerpt(&said)
            );
        }
        Ok(())
    };
    // Honest: verifies and replays.
    host.run(&["log", "verify", &lossy(&export), "--key", &key])?
        .expect(0, "log verify of the honest export")?;
    // One byte changed anywhere: integrity, never divergence.
    let n = honest.len();
    let mut positions: Vec<usize> = (0..12).map(|i| i * n / 12).collect();
    positions.extend_from_slice(&[8, 9, 10, n / 3 + 1, n - 2, n - 1]);
    positions.sort_unstable();
    positions.dedup();
    for at in positions {
        let mut bytes = honest.clone();
        bytes[at] ^= 0x01;
        check(
            &bytes,
            &format!("the export with byte {at} of {n} changed"),
            true,
        )?;
    }
    // Whatever the bytes: no crash, no allocation for what is not there, an integrity failure.
    let mut rng = Rng(0x0bad_5eed_1234_5678);
    let random: Vec<u8> = (0..65_536).map(|_| rng.next() as u8).collect();
    check(&random, "64 KiB of random bytes", false)?;
    let mut prefixed = b"FCLEDGER\x01".to_vec();
    prefixed.extend_from_slice(&random[..4096]);
    check(&prefixed, "the magic followed by random bytes", false)?;
    check(&[], "an empty file", false)?;
    for cut in [9, 10, 18, n / 4, n / 2, n - 1] {
        check(
            &honest[..cut],
            &format!("the export cut to {cut} of {n} bytes"),
            false,
        )?;
    }
    let mut mutated = honest.clone();
    for _ in 0..64 {
        let at = rng.below(n);
        mutated[at] = rng.next() as u8;
    }
    check(&mutated, "the export with 64 random bytes changed", false)?;
    let mut huge = b"FCLEDGER\x01\x01".to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    check(&huge, "an entries section declaring 2^64-1 entries", false)?;
    let mut long = b"FCLEDGER\x01\x01".to_vec();
    long.extend_from_slice(&1u64.to_le_bytes());
    long.extend_from_slice(&u32::MAX.to_le_bytes());
    long.extend_from_slice(&[0x03; 16]);
    check(&long, "an entry declaring 4 GiB it does not hold", false)?;
    let mut components = export_bytes(&[], &[0x02]);
    components.extend_from_slice(&0u64.to_le_bytes());
    components.push(0x03);
    components.extend_from_slice(&1u64.to_le_bytes());
    components.extend_from_slice(&[0x33; 32]);
    components.extend_from_slice(&u64::MAX.to_le_bytes());
    check(&components, "a component declaring 2^64-1 bytes", false)?;
    // Entries nested without bound, and counts the entry cannot hold.
    let mut nested = Vec::new();
    for _ in 0..200_000 {
        nested.push(0x0e);
        nested.extend_from_slice(&1u32.to_le_bytes());
    }
    nested.extend_from_slice(&[0x01, 0x01]);
    let mut tail = vec![0x02];
    tail.extend_from_slice(&0u64.to_le_bytes());
    tail.push(0xff);
    check(
        &export_bytes(&[start_entry_with(&nested)], &tail),
        "an entry whose argument nests 200 000 lists",
        false,
    )?;
    let mut counted = vec![0x0e];
    counted.extend_from_slice(&u32::MAX.to_le_bytes());
    check(
        &export_bytes(&[start_entry_with(&counted)], &tail),
        "an entry whose argument declares a list of 2^32-1 items",
        false,
    )?;
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The position of the first entry matching `f`.
fn position(entries: &[Json], f: impl Fn(&Json) -> bool) -> Option<usize> {
    entries.iter().position(|e| f(&e["entry"]))
}

/// Whether `e[key]` is the id `id` (a number or a string).
fn names(e: &Json, key: &str, id: &str) -> bool {
    e[key].as_u64().map(|n| n.to_string()).as_deref() == Some(id) || e[key] == id
}

/// The id in a pending refusal's `pending as approval N`.
fn pending_of(run: &Run, what: &str) -> Result<String, Failure> {
    run.expect(13, what)?;
    pending_id(&run.stderr).ok_or_else(|| {
        failed(format!(
            "{what}: no approval id in {}",
            excerpt(&run.stderr)
        ))
    })
}

fn authority_changes_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.ok(&greet)?;
    // The first key.
    let first_key = host.ok(&["key", "show"])?.trim().to_owned();
    let entries = host.entries()?;
    let generated = position(&entries, |e| {
        e["type"] == "key-change"
            && e["old_key_id"].is_null()
            && e["new_verifier_key"] == first_key.as_str()
    });
    let first_start = position(&entries, |e| e["type"] == "invocation-start");
    ensure!(
        generated.is_some() && generated < first_start,
        "the ledger's first key {first_key} must be a key-change entry without old_key_id before the first invocation: {:?}",
        bodies(&entries)
    );
    // A rotation.
    host.ok(&["key", "generate"])?;
    let second_key = host.ok(&["key", "show"])?.trim().to_owned();
    ensure!(
        second_key != first_key,
        "key generate did not rotate the key"
    );
    let entries = host.entries()?;
    ensure!(
        position(&entries, |e| {
            e["type"] == "key-change"
                && !e["old_key_id"].is_null()
                && e["new_verifier_key"] == second_key.as_str()
        })
        .is_some(),
        "the rotation to {second_key} is not a key-change entry naming the old key: {:?}",
        bodies(&entries)
    );
    // Tokens made and revoked.
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "agent:bot",
            "--name",
            "bot",
            "--group",
            "ops",
        ])?
        .trim()
        .to_owned();
    host.ok(&["token", "revoke", "bot"])?;
    let entries = host.entries()?;
    let digest = sha256_hex(token.as_bytes());
    for action in ["create", "revoke"] {
        ensure!(
            position(&entries, |e| {
                e["type"] == "token-change"
                    && e["action"] == action
                    && e["name"] == "bot"
                    && e["principal"] == "agent:bot"
                    && e["groups"] == json!(["ops"])
                    && e["token_sha256"] == digest.as_str()
            })
            .is_some(),
            "token {action} of `bot` is not a token-change entry naming it, its principal, groups and SHA-256 {digest}: {:?}",
            bodies(&entries)
        );
    }
    // A policy with a new digest, before its first decision.
    let approve = format!(
        "{OPEN}@approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"hello\");\n"
    );
    host.policy(&approve)?;
    let policy_digest = digest_of(&host, &host.data.path().join("policy"))?;
    let asked = pending_of(&host.run(&greet)?, "hello.greet marked for approval")?;
    let entries = host.entries()?;
    let changed = position(&entries, |e| {
        e["type"] == "policy-change" && e["policy_digest"] == policy_digest.as_str()
    });
    let decided = position(&entries, |e| {
        e["type"] == "decision" && e["policy_digest"] == policy_digest.as_str()
    });
    ensure!(
        changed.is_some() && decided.is_some() && changed < decided,
        "the policy with digest {policy_digest} must be a policy-change entry before its first decision: {:?}",
        bodies(&entries)
    );
    // Approvals granted (before the call that spends it) and denied.
    host.ok(&["approval", "grant", &asked, "--reason", "conformance"])?;
    host.ok(&greet)?;
    let denied = pending_of(
        &host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Bob"}"#])?,
        "hello.greet of Bob",
    )?;
    host.ok(&["approval", "deny", &denied, "--reason", "conformance"])?;
    let entries = host.entries()?;
    let grant = position(&entries, |e| {
        e["type"] == "approval" && e["action"] == "grant" && names(e, "request", &asked)
    });
    let spent = position(&entries, |e| {
        e["type"] == "invocation-start" && names(e, "approval", &asked)
    });
    ensure!(
        grant.is_some() && spent.is_some() && grant < spent,
        "the grant of approval {asked} must be an approval entry before the invocation that spends it: {:?}",
        bodies(&entries)
    );
    ensure!(
        position(&entries, |e| e["type"] == "approval"
            && e["action"] == "deny"
            && names(e, "request", &denied))
        .is_some(),
        "the denial of approval {denied} is not an approval entry: {:?}",
        bodies(&entries)
    );
    Ok(())
}

fn planted_links_reach_nothing(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(&format!(
        "{OPEN}@id(\"hide-secret\")\nforbid (principal, action, resource is FemtoClaw::Path) when {{ resource.path like \"/data/secret*\" }};\n"
    ))?;
    let call = |function: &str, args: Json| -> Result<Json, Failure> {
        let text = args.to_string();
        let run = host.run(&["invoke", "files", function, "--args", &text])?;
        run.expect(0, &format!("files.{function} {text}"))?;
        run.json()
    };
    // Let the host make the preopen, then plant links in it as another user might.
    let wrote = call(
        "write-file",
        json!({ "path": "/data/public.txt", "text": "public" }),
    )?;
    ensure!(
        wrote["ok"].is_number(),
        "write-file /data/public.txt: {wrote}"
    );
    let dir = host.data.path().join("files").join("files").join("data");
    ensure!(
        dir.join("public.txt").exists(),
        "files' /data is not <data dir>/files/files/data"
    );
    let io = |e: std::io::Error| failed(format!("cannot plant the links: {e}"));
    std::fs::create_dir_all(dir.join("secret/inner")).map_err(io)?;
    std::fs::write(dir.join("secret/key.txt"), "TOP-SECRET-KEY").map_err(io)?;
    std::fs::write(dir.join("secret/x"), "TOP-SECRET-X").map_err(io)?;
    std::fs::write(dir.join("x"), "public x").map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink("secret/key.txt", dir.join("alias.txt")).map_err(io)?;
        symlink("secret", dir.join("door")).map_err(io)?;
        symlink("secret/inner", dir.join("pub")).map_err(io)?;
        symlink("secret/new.txt", dir.join("trap.txt")).map_err(io)?;
        symlink("public.txt", dir.join("fine.txt")).map_err(io)?;
    }
    for (path, real) in [
        ("/data/alias.txt", "/data/secret/key.txt"),
        ("/data/door/key.txt", "/data/secret/key.txt"),
        ("/data/pub/../x", "/data/secret/x"),
    ] {
        let read = call("read-file", json!({ "path": path }))?;
        ensure!(
            read["err"].as_str().is_some_and(|e| e.contains("denied"))
                && !read.to_string().contains("TOP-SECRET"),
            "read-file {path} (reaching {real} through a planted link) must be denied and read nothing: {read}"
        );
    }
    for (path, made) in [
        ("/data/door/new.txt", "secret/new.txt"),
        ("/data/trap.txt", "secret/new.txt"),
    ] {
        let wrote = call("write-file", json!({ "path": path, "text": "x" }))?;
        ensure!(
            wrote["err"].is_string() && !dir.join(made).exists(),
            "write-file {path} (creating {made} through a planted link) must be refused and create nothing: {wrote}"
        );
    }
    ensure!(
        std::fs::read_to_string(dir.join("secret/key.txt"))
            .ok()
            .as_deref()
            == Some("TOP-SECRET-KEY"),
        "a withheld file was changed through a link"
    );
    // The policy was asked about the path the open would reach.
    let entries = host.entries()?;
    for (action, resource) in [
        ("fs.read", "/data/secret/key.txt"),
        ("fs.read", "/data/secret/x"),
    ] {
        let asked: Vec<&Json> = bodies(&entries)
            .into_iter()
            .filter(|e| {
                e["type"] == "decision" && e["action"] == action && e["resource"] == resource
            })
            .collect();
        ensure!(
            !asked.is_empty()
                && asked
                    .iter()
                    .all(|d| d["allowed"] == false && d["policy_ids"] == json!(["hide-secret"])),
            "the policy must be asked about {resource} (the link's target) and refuse it by `hide-secret`: {asked:?}"
        );
    }
    // A link to a granted file works.
    let read = call("read-file", json!({ "path": "/data/fine.txt" }))?;
    ensure!(
        read["ok"] == "public",
        "read-file through a link to a granted file: {read}"
    );
    Ok(())
}

/// The guest with every occurrence of `from` replaced by `to` (of the same length).
fn renamed(wasm: &[u8], swaps: &[(&str, &str)]) -> Result<Vec<u8>, Failure> {
    let mut out = wasm.to_vec();
    for (from, to) in swaps {
        let (from, to) = (from.as_bytes(), to.as_bytes());
        ensure!(from.len() == to.len(), "a swap must keep the length");
        let mut found = 0;
        let mut at = 0;
        while let Some(p) = out[at..].windows(from.len()).position(|w| w == from) {
            out[at + p..at + p + to.len()].copy_from_slice(to);
            at += p + to.len();
            found += 1;
        }
        ensure!(
            found > 0,
            "the suite's guest holds no `{}`",
            String::from_utf8_lossy(from)
        );
    }
    Ok(out)
}

fn unprovided_imports_refused_at_add(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    // An interface at a version the host does not provide, and a function of a provided
    // interface that the host does not provide.
    let changed = renamed(
        GUEST,
        &[
            ("femtoclaw:host/log@0.1.0", "femtoclaw:host/log@9.1.0"),
            ("[method]bucket.set", "[method]bucket.sat"),
        ],
    )?;
    let wasm = host.file("unprovided.wasm", &changed)?;
    let manifest = host.file(
        "unprovided.toml",
        b"name = \"unprovided\"\nversion = \"1.0.0\"\nfuel = 50_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@9.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]\nkv = [{ namespace = \"conformance\", write = true }]\n",
    )?;
    let run = host.run(&[
        "capability",
        "add",
        &lossy(&wasm),
        "--manifest",
        &lossy(&manifest),
    ])?;
    run.expect(
        7,
        "capability add of a component importing what the host does not provide",
    )?;
    for import in ["femtoclaw:host/log@9.1.0", "[method]bucket.sat"] {
        ensure!(
            run.stderr.contains(import),
            "the refusal must name every unprovided import, {import} included: {}",
            excerpt(&run.stderr)
        );
    }
    ensure!(
        !run.stderr.contains("bucket.get") && !run.stderr.contains("femtoclaw:host/log@0.1.0"),
        "the refusal names a provided import as unprovided: {}",
        excerpt(&run.stderr)
    );
    let listed = host.ok(&["capability", "list"])?;
    ensure!(
        !listed.contains("unprovided"),
        "the refused component was installed: {}",
        excerpt(&listed)
    );
    host.run(&["invoke", "unprovided", "echo", "--args", r#"{"text":"x"}"#])?
        .expect(3, "invoking the refused component")?;
    // The unchanged guest installs: the refusal was about the imports alone.
    host.install()?;
    Ok(())
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Result<u32, Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .map_err(|e| failed(format!("{}: {e}", path.display())))
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Result<u32, Failure> {
    Err(Failure::NotApplicable(
        "file modes are a Unix notion".into(),
    ))
}

fn operator_only_files(target: &Target) -> Result<(), Failure> {
    let served = serve(target, None, "", false)?;
    let data = served.host.data.path().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let socket = data.join("admin.sock");
        let meta = std::fs::symlink_metadata(&socket)
            .map_err(|e| failed(format!("no admin.sock while the server runs: {e}")))?;
        ensure!(
            meta.file_type().is_socket(),
            "<data dir>/admin.sock is not a socket"
        );
    }
    let socket = mode_of(&data.join("admin.sock"))?;
    ensure!(
        socket == 0o600,
        "admin.sock has mode {socket:o} where 600 is required"
    );
    // Secrets set through the running server.
    for (name, value) in [
        ("first-secret", &b"s3cret-one"[..]),
        ("second-secret", &b"s3cret-two"[..]),
    ] {
        served
            .host
            .secret_set(name, value)?
            .expect(0, &format!("secret set {name}"))?;
    }
    let dir = data.join("secrets");
    let mode = mode_of(&dir)?;
    ensure!(
        mode == 0o700,
        "secrets/ has mode {mode:o} where 700 is required"
    );
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| failed(format!("cannot list secrets/: {e}")))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    ensure!(
        files.len() >= 2,
        "two secrets left {} files in secrets/",
        files.len()
    );
    let all_600 = |files: &[std::path::PathBuf]| -> Result<(), Failure> {
        for file in files {
            let mode = mode_of(file)?;
            ensure!(
                mode == 0o600,
                "{} has mode {mode:o} where 600 is required",
                file.display()
            );
        }
        Ok(())
    };
    // The server's signing key.
    all_600(&files)?;
    all_600(&[data.join("keys").join("ledger-signing.key")])?;
    drop(served);
    // A key generated, then rotated, on the command line.
    let host = target.host()?;
    host.ok(&["key", "generate"])?;
    host.ok(&["key", "generate"])?;
    let keys: Vec<std::path::PathBuf> = std::fs::read_dir(host.data.path().join("keys"))
        .map_err(|e| failed(format!("cannot list keys/: {e}")))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n == "ledger-signing.key"))
        .collect();
    ensure!(
        !keys.is_empty(),
        "key generate left no keys/ledger-signing.key"
    );
    all_600(&keys)?;
    Ok(())
}

/// How a hostile peer answers.
#[derive(Clone)]
enum Answer {
    /// These bytes, then close.
    Bytes(String),
    /// Nothing, holding the connection until stopped.
    Silence,
}

/// A peer on `listener`: answers every connection by `answer`; the requests it saw.
fn hostile_peer(
    listener: std::net::TcpListener,
    answer: Answer,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let _ = listener.set_nonblocking(true);
        let until = Instant::now() + Duration::from_secs(60);
        let mut held = Vec::new();
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = vec![0u8; 65536];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        // A TLS client hello has no blank line: one read is all of it.
                        if got.first() == Some(&0x16) {
                            break;
                        }
                    }
                    seen.push(got);
                    match &answer {
                        Answer::Bytes(bytes) => {
                            let _ = stream.write_all(bytes.as_bytes());
                        }
                        Answer::Silence => held.push(stream),
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        seen
    })
}

/// Runs `f` while a hostile peer listens on `address`; what `f` returned and what the peer saw.
fn with_peer<T>(
    address: &str,
    answer: Answer,
    f: impl FnOnce() -> Result<T, Failure>,
) -> Result<(T, Vec<Vec<u8>>), Failure> {
    let listener = std::net::TcpListener::bind(address).map_err(|e| {
        Failure::NotApplicable(format!(
            "cannot listen on {address} (the manifest of fetch covers only the default ports): {e}"
        ))
    })?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer = hostile_peer(listener, answer, stop.clone());
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = peer
        .join()
        .map_err(|_| failed("the peer thread panicked"))?;
    Ok((out?, seen))
}

fn hostile_servers(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // Two loopback addresses of the case's own: the peer's, and one the policy withholds.
    let x = 2 + (std::process::id() % 100) * 2;
    let ours = format!("127.0.0.{x}");
    let withheld = format!("127.0.0.{}", x + 1);
    host.policy(&format!(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless {{ action == FemtoClaw::Action::\"net.connect\" }};\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"net.connect\", resource) when {{ resource.address == ip(\"{ours}\") || resource.address == ip(\"{withheld}\") }};\n\
         @id(\"withheld-origin\")\nforbid (principal, action == FemtoClaw::Action::\"http.request\", resource == FemtoClaw::HttpHost::\"http://{withheld}:80\");\n\
         @id(\"withheld-path\")\nforbid (principal, action, resource is FemtoClaw::Path) when {{ resource.path like \"/data/secret*\" }};\n"
    ))?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        "[http]\nmax_response_bytes = 64\ntimeout_ms = 3000\n",
    )?;
    let fetch = |function: &str, args: Json| -> Result<Json, Failure> {
        let text = args.to_string();
        let run = host.run(&["invoke", "fetch", function, "--args", &text])?;
        run.expect(
            0,
            &format!("fetch.{function} {text}, which must end the call only, not the invocation"),
        )?;
        run.json()
    };
    let get = |url: &str| fetch("get", json!({ "url": url }));
    let erred = |got: &Json, what: &str| -> Result<(), Failure> {
        ensure!(
            got["err"].is_string() && got.get("ok").is_none(),
            "{what} must be an error value the guest receives: {got}"
        );
        Ok(())
    };
    let address = format!("{ours}:80");
    let url = format!("http://{ours}/");
    // A server that answers well, first.
    let (good, _) = with_peer(
        &address,
        Answer::Bytes("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()),
        || get(&url),
    )?;
    ensure!(
        good["ok"].is_object() || good["ok"].is_string(),
        "a good loopback server was not reached: {good}"
    );
    // More than the cap, declared and streamed.
    let big = "y".repeat(4096);
    for (answer, what) in [
        (
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{big}",
                big.len()
            ),
            "a body declared over the cap",
        ),
        (
            format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{big}"),
            "a body streamed over the cap",
        ),
    ] {
        let (got, _) = with_peer(&address, Answer::Bytes(answer), || get(&url))?;
        erred(&got, what)?;
        ensure!(
            !got.to_string().contains("yyyyyyyy"),
            "{what}: the guest received the body: {got}"
        );
    }
    // Never answering.
    let started = Instant::now();
    let (got, _) = with_peer(&address, Answer::Silence, || get(&url))?;
    erred(&got, "a server that never answers")?;
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "a server that never answers held the call {:.0} s past http.timeout_ms 3000",
        started.elapsed().as_secs_f64()
    );
    // Redirecting without end.
    let (got, seen) = with_peer(
        &address,
        Answer::Bytes("HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()),
        || fetch("request", json!({ "method": "GET", "url": url, "max-redirects": 1000 })),
    )?;
    erred(&got, "a redirect loop")?;
    ensure!(
        seen.len() <= 64,
        "a redirect loop was followed {} times",
        seen.len()
    );
    // A TLS handshake answered with plain text.
    let (got, _) = with_peer(
        &format!("{ours}:443"),
        Answer::Bytes("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno".into()),
        || get(&format!("https://{ours}/")),
    )?;
    erred(&got, "a failed TLS handshake")?;
    // A redirect to an origin the policy withholds: refused at that hop, nothing sent there.
    let (outcome, seen_withheld) = with_peer(
        &format!("{withheld}:80"),
        Answer::Bytes("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into()),
        || {
            with_peer(
                &address,
                Answer::Bytes(format!(
                    "HTTP/1.1 302 Found\r\nlocation: http://{withheld}/stolen\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )),
                || get(&format!("http://{ours}/moved")),
            )
        },
    )?;
    let (moved, seen_ours) = outcome;
    erred(&moved, "a redirect to a withheld origin")?;
    ensure!(
        seen_ours.len() == 1 && seen_withheld.is_empty(),
        "a redirect to the withheld http://{withheld}:80 must be refused at that hop with nothing sent there; the first server saw {} requests, the withheld one {}",
        seen_ours.len(),
        seen_withheld.len()
    );
    // A name that resolves to loopback (127.0.0.1, not permitted): refused before connecting.
    let local = std::net::TcpListener::bind("127.0.0.1:80").map_err(|e| {
        Failure::NotApplicable(format!(
            "cannot listen on 127.0.0.1:80 to watch for a connection: {e}"
        ))
    })?;
    let _ = local.set_nonblocking(true);
    let named = get("http://localhost/")?;
    erred(&named, "a name resolving to loopback")?;
    ensure!(
        matches!(local.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "http://localhost/ (resolving to loopback, which the policy withholds) was connected to"
    );
    drop(local);
    // A planted link to a withheld path.
    let wrote = host.run(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/public.txt","text":"p"}"#,
    ])?;
    wrote.expect(0, "files.write-file /data/public.txt")?;
    let dir = host.data.path().join("files").join("files").join("data");
    let io = |e: std::io::Error| failed(format!("cannot plant a link: {e}"));
    std::fs::create_dir_all(dir.join("secret")).map_err(io)?;
    std::fs::write(dir.join("secret/key.txt"), "k").map_err(io)?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("secret/key.txt", dir.join("alias.txt")).map_err(io)?;
    host.run(&[
        "invoke",
        "files",
        "read-file",
        "--args",
        r#"{"path":"/data/alias.txt"}"#,
    ])?
    .expect(0, "files.read-file through a planted link")?;
    // The host is still itself, and the ledger names what each attempt would have reached.
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet after the hostile servers")?;
    let entries = host.entries()?;
    let refused = |action: &str, resource: &str| {
        bodies(&entries).iter().any(|e| {
            e["type"] == "decision"
                && e["action"] == action
                && e["resource"] == resource
                && e["allowed"] == false
        })
    };
    for (action, resource, what) in [
        (
            "http.request",
            format!("http://{withheld}:80"),
            "the redirect hop's origin",
        ),
        (
            "net.connect",
            "127.0.0.1".to_owned(),
            "the address localhost resolved to",
        ),
        (
            "fs.read",
            "/data/secret/key.txt".to_owned(),
            "the planted link's target",
        ),
    ] {
        ensure!(
            refused(action, &resource),
            "the ledger must hold a refused {action} decision on {resource} ({what})"
        );
    }
    ensure!(
        !bodies(&entries).iter().any(|e| e["type"] == "trap"),
        "a hostile server's answer trapped an invocation: {:?}",
        bodies(&entries)
            .iter()
            .filter(|e| e["type"] == "trap")
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// An HTTP answer (status, body) or why none came.
type HttpAnswer = Result<(u16, String), String>;

/// Components of an export: each SHA-256 and its bytes.
type Components = Vec<([u8; 32], Vec<u8>)>;

/// A POST in a thread of its own: (status, body) or why none came, and when it came.
fn post_in_thread(
    url: String,
    token: String,
    body: Json,
) -> std::thread::JoinHandle<(HttpAnswer, Instant)> {
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

fn approval_wait(target: &Target) -> Result<(), Failure> {
    let served = serve(
        target,
        Some(APPROVALS),
        "[approvals]\nwait_ms = 25000\n",
        false,
    )?;
    let bot = served.token("agent:bot", "bot", &[])?;
    let ops = served.token("user:ops", "ops", &[])?;
    // A caller waits, and runs as soon as the approval is granted.
    let asked = Instant::now();
    let waiting = post_in_thread(served.url.clone(), bot.clone(), greet_of("Ada"));
    let mut id = None;
    while id.is_none() && asked.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        id = listed(&served, &ops)?.into_iter().next();
    }
    let id =
        id.ok_or_else(|| failed("no approval was asked for within 20 s of the waiting call"))?;
    let granted = Instant::now();
    served
        .post(
            &format!("/v1/approvals/{id}"),
            Some(&ops),
            &json!({ "decision": "grant", "reason": "conformance" }),
        )?
        .expect(200, "the grant by user:ops")?;
    let (answer, at) = waiting
        .join()
        .map_err(|_| failed("a client thread panicked"))?;
    let (status, body) =
        answer.map_err(|e| failed(format!("the waiting call got no answer: {e}")))?;
    ensure!(
        status == 200,
        "the waiting call must run once granted; it answered {status}: {}",
        excerpt(&body)
    );
    ensure!(
        at.duration_since(granted) < Duration::from_secs(15),
        "the waiting call answered {:.1} s after the grant, not as soon as it was given",
        at.duration_since(granted).as_secs_f64()
    );
    // Never past its deadline: a call with a 3 s deadline is answered pending by then.
    let started = Instant::now();
    let mut body = greet_of("Bob");
    body["deadline_ms"] = json!(3000);
    let response = served.post("/v1/invoke", Some(&bot), &body)?;
    let elapsed = started.elapsed();
    pending(&response, "a waiting call with a 3 s deadline")?;
    ensure!(
        elapsed < Duration::from_secs(20),
        "a waiting call with a 3 s deadline was answered after {:.1} s, past its deadline (wait_ms 25000)",
        elapsed.as_secs_f64()
    );
    ensure!(
        elapsed >= Duration::from_secs(2),
        "a waiting call with a 3 s deadline was answered after {:.1} s: it did not wait",
        elapsed.as_secs_f64()
    );
    Ok(())
}

fn approval_state_fails_closed(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(&format!(
        "{}@approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"hello\");\n",
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"invoke\" };\n"
    ))?;
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    let id = pending_of(&host.run(&greet)?, "hello.greet marked for approval")?;
    host.ok(&["approval", "grant", &id, "--reason", "conformance"])?;
    let file = host.data.path().join("approvals.json");
    let kept = std::fs::read(&file)
        .map_err(|e| failed(format!("no approvals.json after a grant: {e}")))?;
    // Damaged: refused, naming the file; the grant is not spent.
    let before = host.entries()?.len();
    let cut = kept.len() / 2;
    std::fs::write(&file, &kept[..cut])
        .map_err(|e| failed(format!("cannot damage approvals.json: {e}")))?;
    for args in [&greet[..], &["approval", "list"][..]] {
        let run = host.run(args)?;
        ensure!(
            run.code != 0 && run.stderr.contains("approvals.json") && run.stdout.trim().is_empty(),
            "`{}` with a damaged approvals.json must refuse to open, naming the file; it exited {}: {}",
            args.join(" "),
            run.code,
            excerpt(&format!("{}{}", run.stdout, run.stderr))
        );
    }
    // Restored: nothing was recorded meanwhile, the grant is still there and is spent once.
    std::fs::write(&file, &kept)
        .map_err(|e| failed(format!("cannot restore approvals.json: {e}")))?;
    ensure!(
        host.entries()?.len() == before,
        "an invocation was recorded with approvals.json damaged"
    );
    let run = host.run(&greet)?;
    run.expect(0, "the granted call once approvals.json is restored")?;
    // Lost: fail closed, the call asks again.
    let again = pending_of(
        &host.run(&greet)?,
        "hello.greet again, after its grant was spent",
    )?;
    host.ok(&["approval", "grant", &again, "--reason", "conformance"])?;
    std::fs::remove_file(&file)
        .map_err(|e| failed(format!("cannot remove approvals.json: {e}")))?;
    let run = host.run(&greet)?;
    run.expect(
        13,
        "the call whose unspent grant was lost with approvals.json",
    )?;
    ensure!(
        run.stdout.trim().is_empty(),
        "the call whose grant was lost printed a result: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

/// The components section of an export: (SHA-256, bytes) each.
fn export_components(bytes: &[u8]) -> Result<Components, String> {
    crate::format::Export::parse(bytes)?
        .components
        .ok_or_else(|| "the export has no components section".to_owned())
}

fn call_time_origins_and_secrets(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // The first-party fetch component, as its invocation recorded it, installed under a
    // manifest of the case's own.
    host.run(&[
        "invoke",
        "fetch",
        "get",
        "--args",
        r#"{"url":"https://example.com/"}"#,
    ])?
    .expect(0, "fetch.get under the default policy")?;
    let export = host.files.path().join("fetch.export");
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    let bytes =
        std::fs::read(&export).map_err(|e| failed(format!("cannot read the export: {e}")))?;
    let starts = host.entries()?;
    let digest = bodies(&starts)
        .iter()
        .find(|e| e["type"] == "invocation-start" && e["capability"] == "fetch")
        .and_then(|e| e["component_sha256"].as_str().map(str::to_owned))
        .ok_or_else(|| failed("the fetch invocation names no component digest"))?;
    let components = export_components(&bytes)
        .map_err(|e| failed(format!("log export --with-components: {e}")))?;
    let wasm = components
        .into_iter()
        .find(|(d, _)| d.iter().map(|b| format!("{b:02x}")).collect::<String>() == digest)
        .map(|(_, w)| w)
        .ok_or_else(|| failed(format!("the export holds no component {digest}")))?;
    let x = 2 + (std::process::id() % 100) * 2 + 1;
    let ip = format!("127.0.0.{x}");
    let first = std::net::TcpListener::bind(format!("{ip}:0"))
        .map_err(|e| failed(format!("cannot listen on {ip}: {e}")))?;
    let second = std::net::TcpListener::bind(format!("{ip}:0"))
        .map_err(|e| failed(format!("cannot listen on {ip}: {e}")))?;
    let p1 = first.local_addr().map(|a| a.port()).unwrap_or(0);
    let p2 = second.local_addr().map(|a| a.port()).unwrap_or(0);
    let manifest = format!(
        "name = \"myfetch\"\nversion = \"1.0.0\"\npublisher = \"acme\"\nfuel = 500_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\nhttp = [\"http://*.example.test\", \"http://{ip}:{p1}\", \"http://{ip}:{p2}\", \"https://{ip}:{p1}\", \"http://localhost:{p1}\"]\nsecrets = [\"tok\"]\n"
    );
    let wasm_file = host.file("myfetch.wasm", &wasm)?;
    let manifest_file = host.file("myfetch.toml", manifest.as_bytes())?;
    host.run(&[
        "capability",
        "add",
        &lossy(&wasm_file),
        "--manifest",
        &lossy(&manifest_file),
    ])?
    .expect(0, "capability add of the fetch component as myfetch")?;
    host.policy(&format!(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless {{ action == FemtoClaw::Action::\"net.connect\" || action == FemtoClaw::Action::\"secret.use\" }};\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"net.connect\", resource) when {{ resource.address == ip(\"{ip}\") }};\n\
         @id(\"tok-to-first\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"secret.use\", resource) when {{ context.destination == FemtoClaw::HttpHost::\"http://{ip}:{p1}\" }};\n"
    ))?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        "[http]\ntimeout_ms = 3000\n",
    )?;
    host.secret_set("tok", b"CONFORMANCE-SECRET-VALUE")?
        .expect(0, "secret set tok")?;
    let call = |url: &str, secret: bool| -> Result<Json, Failure> {
        let mut args = json!({ "method": "GET", "url": url });
        if secret {
            args["secret-headers"] =
                json!([{ "name": "authorization", "secret": "tok", "prefix": "Bearer " }]);
        }
        let text = args.to_string();
        let run = host.run(&["invoke", "myfetch", "request", "--args", &text])?;
        run.expect(0, &format!("myfetch.request {text}"))?;
        run.json()
    };
    // `*.d` covers every proper subdomain of d, and neither d nor a host ending in its letters;
    // scheme and port must match.
    for (url, origin, covered) in [
        ("http://a.example.test/", "http://a.example.test:80", true),
        (
            "http://deep.a.example.test/",
            "http://deep.a.example.test:80",
            true,
        ),
        ("http://example.test/", "http://example.test:80", false),
        (
            "http://badexample.test/",
            "http://badexample.test:80",
            false,
        ),
        (
            "http://a.example.test:8080/",
            "http://a.example.test:8080",
            false,
        ),
        (
            "https://a.example.test/",
            "https://a.example.test:443",
            false,
        ),
    ] {
        let got = call(url, false)?;
        let entries = host.entries()?;
        let decided: Vec<&Json> = bodies(&entries)
            .into_iter()
            .filter(|e| {
                e["type"] == "decision" && e["action"] == "http.request" && e["resource"] == origin
            })
            .collect();
        ensure!(
            decided.len() == 1 && decided[0]["allowed"] == covered,
            "under a policy permitting every http.request, {url} must be {} by the manifest entry http://*.example.test: one http.request decision on {origin} allowed={covered}; recorded {decided:?} (the call answered {got})",
            if covered { "covered" } else { "not covered" }
        );
        if !covered {
            ensure!(
                got["err"].as_str().is_some_and(|e| e.contains(origin))
                    && decided[0]["policy_ids"] == json!([]),
                "{url}, not covered by the manifest, must be refused naming {origin}, by no policy: {got}, {decided:?}"
            );
        }
    }
    // The secret goes only where its decision allowed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned();
    let one = hostile_peer(first, Answer::Bytes(ok.clone()), stop.clone());
    let two = hostile_peer(second, Answer::Bytes(ok), stop.clone());
    let allowed = call(&format!("http://{ip}:{p1}/"), true)?;
    let other_port = call(&format!("http://{ip}:{p2}/"), true)?;
    let other_scheme = call(&format!("https://{ip}:{p1}/"), true)?;
    let other_name = call(&format!("http://localhost:{p1}/"), true)?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen_one = one.join().map_err(|_| failed("the peer thread panicked"))?;
    let seen_two = two.join().map_err(|_| failed("the peer thread panicked"))?;
    ensure!(
        allowed["ok"].is_object()
            && seen_one.len() == 1
            && String::from_utf8_lossy(&seen_one[0]).contains("Bearer CONFORMANCE-SECRET-VALUE"),
        "the request to http://{ip}:{p1} must be sent with the secret; it answered {allowed} and the server saw {} requests",
        seen_one.len()
    );
    for (got, what) in [
        (&other_port, "another port"),
        (&other_scheme, "another scheme"),
        (&other_name, "another name of the same server"),
    ] {
        ensure!(
            got["err"].is_string(),
            "a request with the secret to {what} must be denied: {got}"
        );
    }
    ensure!(
        seen_two.is_empty(),
        "the request with the secret to another port was sent: the server there saw {} requests",
        seen_two.len()
    );
    let entries = host.entries()?;
    let secret = |resource: &str| -> Vec<Json> {
        bodies(&entries)
            .into_iter()
            .filter(|e| {
                e["type"] == "decision" && e["action"] == "secret.use" && e["resource"] == resource
            })
            .cloned()
            .collect()
    };
    let granted = secret(&format!("tok@http://{ip}:{p1}"));
    ensure!(
        granted.len() == 1
            && granted[0]["allowed"] == true
            && granted[0]["policy_ids"] == json!(["tok-to-first"]),
        "the secret sent to http://{ip}:{p1} must be one secret.use decision on `tok@http://{ip}:{p1}` allowed by `tok-to-first`: {granted:?}"
    );
    for origin in [
        format!("http://{ip}:{p2}"),
        format!("https://{ip}:{p1}"),
        format!("http://localhost:{p1}"),
    ] {
        let refused = secret(&format!("tok@{origin}"));
        ensure!(
            refused.len() == 1 && refused[0]["allowed"] == false,
            "the secret asked for {origin} must be one refused secret.use decision on `tok@{origin}`: {refused:?}"
        );
    }
    let all = serde_json::to_string(&entries).unwrap_or_default();
    ensure!(
        !all.contains("CONFORMANCE-SECRET-VALUE"),
        "the secret's value is in the ledger"
    );
    Ok(())
}

/// Over stdio MCP with `args` and `env`: the principal the `hello.greet` call was recorded for.
fn stdio_greet(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<String, Failure> {
    use std::io::Write as _;
    let mut all = vec!["mcp"];
    all.extend_from_slice(args);
    let mut command = host.command(&all);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start mcp: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| failed("no stdout pipe"))?;
    let (sender, lines) = std::sync::mpsc::channel::<String>();
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
    let mut stdin = child.stdin.take().ok_or_else(|| failed("no stdin pipe"))?;
    let mut ask = |message: Json| -> Result<Json, Failure> {
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .map_err(|e| failed(format!("cannot write to mcp: {e}")))?;
        if message.get("id").is_none() {
            return Ok(Json::Null);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = lines
                .recv_timeout(left)
                .map_err(|_| failed(format!("mcp over stdio did not answer {message}")))?;
            if let Ok(answer) = serde_json::from_str::<Json>(&line)
                && answer["id"] == message["id"]
            {
                return Ok(answer);
            }
        }
        Err(failed(format!("mcp over stdio did not answer {message}")))
    };
    let result = (|| {
        ask(initialize())?;
        ask(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))?;
        ask(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": "hello.greet", "arguments": { "name": "Ada" } }
        }))
    })();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let answer = result?;
    let first = answer["result"]["_meta"]["femtoclaw/receipt"]["entries"][0]
        .as_u64()
        .ok_or_else(|| {
            failed(format!(
                "the stdio call ({args:?}) did not run with a receipt: {answer}"
            ))
        })?;
    let entries = host.entries()?;
    let start = entries
        .iter()
        .find(|e| e["index"] == json!(first))
        .ok_or_else(|| failed(format!("no entry {first} in the ledger")))?;
    ensure!(
        start["entry"]["type"] == "invocation-start",
        "the receipt's first entry is not a start: {start}"
    );
    Ok(start["entry"]["principal"]
        .as_str()
        .unwrap_or("")
        .to_owned())
}

fn stdio_mcp_principal(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy("permit (principal, action, resource);\n")?;
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
            "user:env",
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
            "FemtoClaw::User::\"env\"",
        ),
    ] {
        let principal = stdio_greet(&host, &args, &variables)?;
        ensure!(
            principal == want,
            "mcp over stdio (args {args:?}, FEMTOCLAW_TOKEN set: {}) acted for {principal} where {want} is required",
            !variables.is_empty()
        );
    }
    Ok(())
}

fn malformed_scopes_refused(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let imports = GUEST_REQUESTS.lines().next().unwrap_or("");
    for (n, (entry, requests, names)) in [
        (
            "ftp://a.example.com",
            "http = [\"ftp://a.example.com\"]",
            ["malformed http origin `ftp://a.example.com`", "scheme"],
        ),
        (
            "https://a.*.example.com",
            "http = [\"https://a.*.example.com\"]",
            [
                "malformed http origin `https://a.*.example.com`",
                "wildcard",
            ],
        ),
        (
            "https://*x.example.com",
            "http = [\"https://*x.example.com\"]",
            ["malformed http origin `https://*x.example.com`", "wildcard"],
        ),
        (
            "http://a.example.com:70000",
            "http = [\"http://a.example.com:70000\"]",
            ["malformed http origin `http://a.example.com:70000`", "port"],
        ),
        (
            "http://a.example.com:0",
            "http = [\"http://a.example.com:0\"]",
            ["malformed http origin `http://a.example.com:0`", "port"],
        ),
        (
            "/data/../../etc",
            "paths = [{ path = \"/data/../../etc\" }]",
            ["malformed path `/data/../../etc`", "climbs above the root"],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("bad{n}");
        let run = probe(&host, &name, "acme", &format!("{imports}\n{requests}"))?;
        ensure!(
            run.code != 0 && names.iter().all(|w| run.stderr.contains(w)),
            "capability add of a manifest with the entry {entry:?} must be refused naming the entry and the rule it breaks ({names:?}); it exited {}: {}",
            run.code,
            excerpt(&run.stderr)
        );
        host.run(&["invoke", &name, "echo", "--args", r#"{"text":"x"}"#])?
            .expect(3, &format!("invoking {name}, refused at install"))?;
    }
    // The same manifest with well-formed entries installs.
    probe(
        &host,
        "good",
        "acme",
        &format!("{imports}\nhttp = [\"https://*.example.com\", \"http://a.example.com:8080\"]\npaths = [{{ path = \"/data/./x/../y\" }}]"),
    )?
    .expect(0, "capability add of well-formed origins and paths")?;
    Ok(())
}

fn listings_offer_only_invokable(target: &Target) -> Result<(), Failure> {
    let policy = "permit (principal == FemtoClaw::Agent::\"bot\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"conformance\") when { context has function && (context.function == \"echo\" || context.function == \"add\") };\n\
        forbid (principal == FemtoClaw::Agent::\"bot\", action == FemtoClaw::Action::\"invoke\", resource) when { context has function && context.function == \"add\" };\n\
        permit (principal, action == FemtoClaw::Action::\"link\", resource);\n";
    let served = serve(target, Some(policy), "", true)?;
    let bot = served.token("agent:bot", "bot", &[])?;
    let response = served.get("/v1/capabilities", &bot)?;
    response.expect(200, "GET /v1/capabilities as agent:bot")?;
    let body = response.json()?;
    let offered: Vec<String> = body["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let name = c["name"].as_str().unwrap_or("?").to_owned();
            c["functions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |f| f["name"].as_str().map(|n| format!("{name}.{n}")))
                .collect::<Vec<_>>()
        })
        .collect();
    ensure!(
        offered == ["conformance.echo"],
        "agent:bot may invoke conformance.echo alone (add is forbidden, the rest not permitted); /v1/capabilities offers {offered:?}"
    );
    let session = served.mcp_session(&bot)?;
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let response = served.mcp(Some(&bot), Some(&session), &list)?;
    response.expect(200, "MCP tools/list as agent:bot")?;
    let answer = response.json()?;
    let tools: Vec<String> = answer["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        tools == ["conformance.echo"],
        "agent:bot may invoke conformance.echo alone; tools/list offers {tools:?}"
    );
    Ok(())
}

fn hostile_input_failure_classes(target: &Target) -> Result<(), Failure> {
    let host = guest_host(
        target,
        &format!(
            "{OPEN}@id(\"no-writes\")\nforbid (principal, action == FemtoClaw::Action::\"kv.write\", resource);\n"
        ),
    )?;
    // A misbehaving guest: its invocation ends with its failure kind, recorded.
    let big = host.file(
        "big-args.json",
        json!({ "text": "m".repeat(300_000) })
            .to_string()
            .as_bytes(),
    )?;
    let big = format!("@{}", lossy(&big));
    write(
        &host.data.path().join("femtoclaw.toml"),
        &format!(
            "[limits]\nmemory_bytes = {}\nmax_fuel = 1000000000000000\n",
            18 * 65_536
        ),
    )?;
    for (args, code, kind, what) in [
        (
            vec!["spin", "--args", "{}", "--fuel", "1000000"],
            4,
            "fuel-exhausted",
            "a loop on 1 000 000 fuel",
        ),
        (
            vec!["divide", "--args", r#"{"a":1,"b":0}"#],
            5,
            "",
            "a division by zero",
        ),
        (
            vec!["echo", "--args", big.as_str()],
            6,
            "limit",
            "memory growth past limits.memory_bytes",
        ),
        (
            vec![
                "spin",
                "--args",
                "{}",
                "--fuel",
                "1000000000000000",
                "--deadline-ms",
                "1500",
            ],
            11,
            "deadline",
            "a loop past its deadline",
        ),
    ] {
        let mut all = vec!["invoke", "conformance"];
        all.extend_from_slice(&args);
        let run = host.run(&all)?;
        run.expect(code, what)?;
        let entries = host.entries()?;
        let last = bodies(&entries)
            .into_iter()
            .rev()
            .take_while(|e| e["type"] != "invocation-start")
            .find(|e| e["type"] == "trap")
            .cloned();
        ensure!(
            last.as_ref()
                .is_some_and(|t| kind.is_empty() || t["kind"] == kind),
            "{what}: the invocation must be recorded with a trap{}: {last:?}",
            if kind.is_empty() {
                String::new()
            } else {
                format!(" of kind `{kind}`")
            }
        );
        host.run(&[
            "invoke",
            "conformance",
            "add",
            "--args",
            r#"{"a":20,"b":22}"#,
        ])?
        .expect(0, &format!("the next invocation after {what}"))?;
    }
    std::fs::remove_file(host.data.path().join("femtoclaw.toml"))
        .map_err(|e| failed(format!("cannot remove femtoclaw.toml: {e}")))?;
    // A refused call: an error value the guest receives, the invocation goes on.
    let run = host.invoke("remember", &json!({ "key": "k", "value": "v" }), &[])?;
    run.expect(0, "a refused key-value write")?;
    let result = run.json()?;
    ensure!(
        result["err"].is_string(),
        "a refused call must be an error value the guest receives: {result}"
    );
    // A misbehaving server's answer: an error value.
    let x = 2 + (std::process::id() % 100) * 2;
    let ip = format!("127.0.0.{x}");
    host.policy(&format!(
        "{OPEN}permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"net.connect\", resource) when {{ resource.address == ip(\"{ip}\") }};\n"
    ))?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        "[http]\nmax_response_bytes = 16\n",
    )?;
    let (got, _) = with_peer(
        &format!("{ip}:80"),
        Answer::Bytes(format!(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{}",
            "z".repeat(4096)
        )),
        || {
            let run = host.run(&[
                "invoke",
                "fetch",
                "get",
                "--args",
                &json!({ "url": format!("http://{ip}/") }).to_string(),
            ])?;
            run.expect(0, "fetch.get of a body over the cap")?;
            run.json()
        },
    )?;
    ensure!(
        got["err"].is_string(),
        "a misbehaving server's answer must be an error value the guest receives: {got}"
    );
    // A tampered ledger: exit 8.
    let export = host.files.path().join("t.export");
    host.ok(&["log", "export", &lossy(&export)])?;
    let mut bytes =
        std::fs::read(&export).map_err(|e| failed(format!("cannot read the export: {e}")))?;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&export, &bytes).map_err(|e| failed(format!("cannot write the export: {e}")))?;
    host.run(&["log", "verify", &lossy(&export)])?
        .expect(8, "log verify of a tampered export")?;
    Ok(())
}

/// Every file under `dir` with its bytes, sorted.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Replaces `host`'s segments by `segments` (file name and bytes) and drops the derived index.
fn put_segments(host: &Host, segments: &[(std::path::PathBuf, Vec<u8>)]) -> Result<(), Failure> {
    let dir = host.data.path().join("ledger/segments");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(host.data.path().join("ledger/index"));
    std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
    for (path, bytes) in segments {
        std::fs::write(dir.join(path.file_name().unwrap_or_default()), bytes)
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

fn ledger_swaps_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let segments = host.data.path().join("ledger/segments");
    let echo = |host: &Host, text: &str, code: i32| -> Result<Run, Failure> {
        let run = host.invoke("echo", &json!({ "text": text }), &[])?;
        run.expect(code, &format!("echo {text}"))?;
        Ok(run)
    };
    echo(&host, "one-conformance", 0)?;
    let old = snapshot(&segments);
    echo(&host, "two", 0)?;
    let pinned = host.ok(&["log", "checkpoint"])?;
    let pinned = host.file("pinned.checkpoint", pinned.as_bytes())?;
    let pin = lossy(&pinned);
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let head = host.data.path().join("latest-checkpoint");
    let recorded = std::fs::read(&head).map_err(|e| failed(format!("no head record: {e}")))?;
    let current = snapshot(&segments);
    let refused_unchanged = |what: &str, code: Option<i32>| -> Result<(), Failure> {
        let before = snapshot(&segments);
        let run = host.invoke("echo", &json!({ "text": "after" }), &[])?;
        match code {
            Some(code) => {
                run.expect(code, what)?;
            }
            None => ensure!(
                run.code != 0,
                "{what}: the host continued the ledger (exit 0)"
            ),
        }
        ensure!(
            snapshot(&segments) == before,
            "{what}: the refused host wrote to the ledger"
        );
        Ok(())
    };
    // Damaged before its tail.
    let (name, bytes) = current
        .iter()
        .find(|(_, b)| b.windows(15).any(|w| w == b"one-conformance"))
        .cloned()
        .ok_or_else(|| failed("no segment holds the recorded text"))?;
    let mut damaged = bytes.clone();
    let at = damaged
        .windows(15)
        .position(|w| w == b"one-conformance")
        .unwrap_or(0);
    damaged[at] ^= 0x20;
    std::fs::write(&name, &damaged).map_err(|e| failed(e.to_string()))?;
    refused_unchanged("a ledger damaged before its tail", None)?;
    std::fs::write(&name, &bytes).map_err(|e| failed(e.to_string()))?;
    // Rolled back behind the head record: the host refuses with 8; a verifier that pinned a
    // later checkpoint refuses with 8.
    put_segments(&host, &old)?;
    refused_unchanged("a ledger rolled back behind its head record", Some(8))?;
    std::fs::remove_file(&head).map_err(|e| failed(e.to_string()))?;
    host.run(&["log", "verify", "--checkpoint", &pin, "--key", &key])?
        .expect(
            8,
            "log verify of a ledger rolled back behind the pinned checkpoint",
        )?;
    // Replaced by another ledger signed with the same key, longer than the original.
    let other = target.host()?;
    let keys = other.data.path().join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| failed(e.to_string()))?;
    std::fs::copy(
        host.data.path().join("keys/ledger-signing.key"),
        keys.join("ledger-signing.key"),
    )
    .map_err(|e| failed(format!("cannot copy the signing key: {e}")))?;
    other.policy(OPEN)?;
    other.install()?;
    for text in ["x", "y", "z"] {
        echo(&other, text, 0)?;
    }
    ensure!(
        other.ok(&["key", "show"])?.trim() == key,
        "the other ledger is not signed with the same key"
    );
    let forged = snapshot(&other.data.path().join("ledger/segments"));
    std::fs::write(&head, &recorded).map_err(|e| failed(e.to_string()))?;
    put_segments(&host, &forged)?;
    refused_unchanged(
        "a ledger replaced by another signed with the same key",
        Some(8),
    )?;
    std::fs::remove_file(&head).map_err(|e| failed(e.to_string()))?;
    host.run(&["log", "verify", "--key", &key])?.expect(
        0,
        "log verify of the other ledger without a pinned checkpoint",
    )?;
    host.run(&["log", "verify", "--checkpoint", &pin, "--key", &key])?
        .expect(
            8,
            "log verify of a ledger forked from the pinned checkpoint",
        )?;
    // The original, restored with its head record, is continued.
    put_segments(&host, &current)?;
    std::fs::write(&head, &recorded).map_err(|e| failed(e.to_string()))?;
    echo(&host, "three", 0)?;
    host.run(&["log", "verify", "--checkpoint", &pin, "--key", &key])?
        .expect(
            0,
            "log verify of the original ledger with its checkpoint pinned",
        )?;
    Ok(())
}

/// The compile-cache files of the component with SHA-256 `sha`.
fn cached(host: &Host, sha: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(host.data.path().join("cache"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{sha}-")) && n.ends_with(".cwasm"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn unverified_code_never_runs(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let echo =
        |text: &str| -> Result<Run, Failure> { host.invoke("echo", &json!({ "text": text }), &[]) };
    echo("before")?.expect(0, "echo")?;
    let dir = host.data.path().join("capabilities/conformance/1.0.0");
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| failed(format!("cannot read {}: {e}", p.display())))
    };
    let put = |p: &Path, b: &[u8]| {
        std::fs::write(p, b).map_err(|e| failed(format!("cannot write {}: {e}", p.display())))
    };
    // A component or manifest changed after install, into something that would load.
    let component = dir.join("component.wasm");
    let manifest = dir.join("capability.toml");
    let original = read(&component)?;
    let mut other = original.clone();
    other.extend_from_slice(&[0, 5, 4, b'e', b'v', b'i', b'l']);
    let original_manifest = read(&manifest)?;
    let raised = String::from_utf8_lossy(&original_manifest)
        .replace("fuel = 50000000", "fuel = 90000000")
        .replace("fuel = 50_000_000", "fuel = 90_000_000");
    ensure!(
        raised.as_bytes() != original_manifest.as_slice(),
        "the installed manifest does not state the guest's fuel: {}",
        excerpt(&String::from_utf8_lossy(&original_manifest))
    );
    for (path, bytes, what) in [
        (
            &component,
            other.clone(),
            "a component changed after install (a valid component)",
        ),
        (
            &manifest,
            raised.into_bytes(),
            "a manifest changed after install (its fuel raised)",
        ),
    ] {
        let kept = read(path)?;
        put(path, &bytes)?;
        let run = echo("changed")?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty() && run.stderr.contains("changed"),
            "{what} must be refused at load, saying it was changed; it exited {}: {}",
            run.code,
            excerpt(&format!("{}{}", run.stdout, run.stderr))
        );
        put(path, &kept)?;
    }
    echo("restored")?.expect(0, "echo with the package restored")?;
    // Compile-cache files not authenticated under this host's cache key: recompiled, never
    // loaded.
    let sha = sha256_hex(GUEST);
    let files = cached(&host, &sha);
    ensure!(
        files.len() == 1,
        "the guest's call left {} cache files for it",
        files.len()
    );
    let file = files[0].clone();
    let elsewhere = guest_host(target, OPEN)?;
    elsewhere
        .invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "echo on another data directory")?;
    elsewhere
        .run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet on another data directory")?;
    let foreign = cached(&elsewhere, &sha);
    ensure!(
        foreign.len() == 1,
        "the other data directory cached no code for the guest"
    );
    let foreign_guest = read(&foreign[0])?;
    let hello = std::fs::read_dir(elsewhere.data.path().join("cache"))
        .map_err(|e| failed(format!("cannot list the cache: {e}")))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p != &foreign[0] && p.extension().is_some_and(|x| x == "cwasm"))
        .ok_or_else(|| failed("hello.greet left no cache file"))?;
    let hello = read(&hello)?;
    for (planted, what) in [
        (
            foreign_guest,
            "the guest's code compiled and authenticated by another host",
        ),
        (
            hello,
            "another component's code, authenticated by another host",
        ),
    ] {
        put(&file, &planted)?;
        let run = echo("planted")?;
        run.expect(0, &format!("echo with {what} planted in the cache"))?;
        ensure!(
            run.json()? == json!("planted"),
            "with {what} planted in the cache, echo answered {}",
            excerpt(&run.stdout)
        );
        ensure!(
            read(&file)? != planted,
            "{what}, planted in the cache, was kept: it was loaded, not recompiled"
        );
    }
    Ok(())
}

/// Kills the host during an invocation whose call's intent is durable: `files` writing to a
/// FIFO under its `/data`, which blocks until a reader comes, and none does.
pub(super) fn killed_during_a_call(host: &Host) -> Result<(), Failure> {
    // files' /data is <data dir>/shared, holding a FIFO: opening it for writing blocks (after
    // the call's intent is durable) until a reader comes, which never does.
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(e.to_string()))?;
    write(
        &host.data.path().join("mounts.toml"),
        "\"/data\" = \"shared\"\n",
    )?;
    let made = std::process::Command::new("mkfifo")
        .arg(shared.join("pipe"))
        .status()
        .map_err(|e| Failure::NotApplicable(format!("mkfifo is not available: {e}")))?;
    if !made.success() {
        return Err(Failure::NotApplicable("mkfifo failed".into()));
    }
    let mut child = host
        .command(&[
            "invoke",
            "files",
            "write-file",
            "--args",
            r#"{"path":"/data/pipe","text":"hi"}"#,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start the blocking call: {e}")))?;
    let started = Instant::now();
    let segments = host.data.path().join("ledger/segments");
    let written = || {
        snapshot(&segments)
            .iter()
            .any(|(_, b)| b.windows(7).any(|w| w == b"open-at"))
    };
    while !written() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let still = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    ensure!(
        still,
        "the blocked call ended by itself before it was killed"
    );
    Ok(())
}

fn interrupted_invocation_recorded_once(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "before" }), &[])?
        .expect(0, "echo")?;
    let before = host.entries()?.len();
    killed_during_a_call(&host)?;
    // The next open records it once; later opens add nothing for it.
    host.invoke("echo", &json!({ "text": "after" }), &[])?
        .expect(0, "echo after the host was killed during an invocation")?;
    host.invoke("echo", &json!({ "text": "again" }), &[])?
        .expect(0, "echo again")?;
    let entries = host.entries()?;
    let fresh = bodies(&entries[before.min(entries.len())..])
        .into_iter()
        .cloned()
        .collect::<Vec<Json>>();
    let spin = fresh
        .iter()
        .find(|e| e["type"] == "invocation-start" && e["capability"] == "files")
        .and_then(|e| e["invocation"].as_u64())
        .ok_or_else(|| {
            failed(format!(
                "the killed invocation's start was not recorded: {fresh:?}"
            ))
        })?;
    let its: Vec<&Json> = fresh
        .iter()
        .filter(|e| e["invocation"] == json!(spin))
        .collect();
    let traps: Vec<&&Json> = its.iter().filter(|e| e["type"] == "trap").collect();
    let ends: Vec<&&Json> = its
        .iter()
        .filter(|e| e["type"] == "invocation-end")
        .collect();
    ensure!(
        traps.len() == 1
            && traps[0]["kind"] == "interrupted"
            && ends.len() == 1
            && ends[0]["result"].is_null(),
        "the invocation the host stopped during must be recorded once with a trap of kind `interrupted` and an invocation-end without result: {its:?}"
    );
    // The effect under way when the host was killed (opening the FIFO to write) was performed
    // only once the start, the calls before it, its decision and its intent were durable.
    let at = |f: &dyn Fn(&Json) -> bool| its.iter().position(|e| f(e));
    let start = at(&|e| e["type"] == "invocation-start");
    let before = at(&|e| e["type"] == "host-call" && e["seq"] == 0);
    let decision = at(&|e| {
        e["type"] == "decision"
            && e["action"] == "fs.write"
            && e["resource"] == "/data/pipe"
            && e["allowed"] == true
    });
    let intent = at(&|e| {
        e["type"] == "host-call-intent"
            && e["function"]
                .as_str()
                .is_some_and(|f| f.contains("open-at"))
    });
    let trap = at(&|e| e["type"] == "trap");
    ensure!(
        start.is_some()
            && start < before
            && before < decision
            && decision < intent
            && intent < trap,
        "the call blocked in its effect must find durable, in order, the start, the calls before it, its fs.write decision and its host-call-intent: {its:?}"
    );
    let trap_at = fresh
        .iter()
        .position(|e| e["type"] == "trap" && e["invocation"] == json!(spin));
    let next = fresh.iter().position(|e| {
        e["type"] == "invocation-start" && e["invocation"].as_u64().is_some_and(|n| n > spin)
    });
    ensure!(
        trap_at.is_some() && next.is_some() && trap_at < next,
        "the interruption must be recorded when the ledger is next opened, before the next invocation: {fresh:?}"
    );
    Ok(())
}

fn first_party_publisher_never_declared(target: &Target) -> Result<(), Failure> {
    // The default policy: a capability that passed as first-party would run.
    let host = target.host()?;
    for (n, claimed) in ["femtoclaw", "FemtoClaw", " femtoclaw", "FEMTOCLAW\t"]
        .iter()
        .enumerate()
    {
        let name = format!("claim{n}");
        let run = probe(&host, &name, claimed, GUEST_REQUESTS)?;
        ensure!(
            run.code != 0 && run.stderr.contains("reserved"),
            "capability add of a manifest claiming publisher {claimed:?} must be refused as reserved; it exited {}: {}",
            run.code,
            excerpt(&run.stderr)
        );
        host.run(&["invoke", &name, "echo", "--args", r#"{"text":"x"}"#])?
            .expect(3, &format!("invoking {name}, refused at install"))?;
    }
    // Installed as another publisher, then its stored manifest (and the digest kept beside it)
    // rewritten to claim the reserved one: refused when loaded.
    probe(&host, "sly", "acme", GUEST_REQUESTS)?.expect(0, "capability add as publisher acme")?;
    let dir = host.data.path().join("capabilities/sly/1.0.0");
    let stored = std::fs::read_to_string(dir.join("capability.toml"))
        .map_err(|e| failed(format!("the package has no capability.toml: {e}")))?;
    let forged: String = stored
        .lines()
        .map(|l| {
            if l.starts_with("publisher") {
                "publisher = \"Femtoclaw \""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    ensure!(
        forged != stored,
        "the stored manifest names no publisher: {}",
        excerpt(&stored)
    );
    std::fs::write(dir.join("capability.toml"), &forged)
        .and_then(|()| {
            std::fs::write(
                dir.join("manifest.sha256"),
                format!("{}\n", sha256_hex(forged.as_bytes())),
            )
        })
        .map_err(|e| failed(format!("cannot rewrite the package: {e}")))?;
    let run = host.run(&["invoke", "sly", "echo", "--args", r#"{"text":"x"}"#])?;
    ensure!(
        run.code != 0 && run.stdout.trim().is_empty() && run.stderr.contains("reserved"),
        "an installed manifest rewritten to claim the reserved publisher must be refused at load; it exited {}: {}",
        run.code,
        excerpt(&format!("{}{}", run.stdout, run.stderr))
    );
    Ok(())
}

fn run_time_decisions_recorded(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let imports = GUEST_REQUESTS.lines().next().unwrap_or("");
    // The manifest requests another namespace only; the policy permits everything.
    probe(
        &host,
        "unasked",
        "acme",
        &format!("{imports}\nkv = [{{ namespace = \"elsewhere\", write = true }}]"),
    )?
    .expect(0, "capability add of the guest as unasked")?;
    probe(&host, "asked", "acme", GUEST_REQUESTS)?
        .expect(0, "capability add of the guest as asked")?;
    host.policy(
        "@id(\"anything\")\npermit (principal, action, resource);\n@id(\"no-writes-for-asked\")\nforbid (principal, action == FemtoClaw::Action::\"kv.write\", resource) when { context.capability.name == \"asked\" };\n"
    )?;
    let call = |capability: &str, function: &str, args: Json| -> Result<Json, Failure> {
        let text = args.to_string();
        let run = host.run(&["invoke", capability, function, "--args", &text])?;
        run.expect(0, &format!("{capability}.{function} {text}"))?;
        run.json()
    };
    let unasked_write = call("unasked", "remember", json!({ "key": "k", "value": "v" }))?;
    let unasked_read = call("unasked", "recall", json!({ "key": "k" }))?;
    let asked_write = call("asked", "remember", json!({ "key": "k", "value": "v" }))?;
    let asked_read = call("asked", "recall", json!({ "key": "k" }))?;
    for (got, what) in [
        (
            &unasked_write,
            "a write to a namespace the manifest does not request",
        ),
        (
            &unasked_read,
            "a read of a namespace the manifest does not request",
        ),
        (
            &asked_write,
            "a requested and permitted write a forbid applies to",
        ),
    ] {
        ensure!(got["err"].is_string(), "{what} must be denied: {got}");
    }
    ensure!(
        asked_read == json!({ "ok": null }),
        "a requested, permitted read must be allowed (and find nothing): {asked_read}"
    );
    let entries = host.entries()?;
    let decided = |capability: &str, action: &str| -> Vec<Json> {
        let starts: Vec<u64> = bodies(&entries)
            .iter()
            .filter(|e| e["type"] == "invocation-start" && e["capability"] == capability)
            .filter_map(|e| e["invocation"].as_u64())
            .collect();
        bodies(&entries)
            .into_iter()
            .filter(|e| {
                e["type"] == "decision"
                    && e["action"] == action
                    && e["resource"] == "conformance"
                    && e["invocation"]
                        .as_u64()
                        .is_some_and(|n| starts.contains(&n))
            })
            .cloned()
            .collect()
    };
    // (Opening the namespace is its read: both calls stop there.)
    let d = decided("unasked", "kv.read");
    ensure!(
        d.len() >= 2
            && d.iter()
                .all(|d| d["allowed"] == false && d["policy_ids"] == json!([])),
        "each call on the unrequested namespace `conformance` must be recorded denied with no policy ids under a policy permitting everything: {d:?}"
    );
    ensure!(
        decided("unasked", "kv.write")
            .iter()
            .all(|d| d["allowed"] == false),
        "a write to the unrequested namespace was allowed"
    );
    let d = decided("asked", "kv.write");
    ensure!(
        !d.is_empty() && d.iter().all(|d| d["allowed"] == false && d["policy_ids"] == json!(["no-writes-for-asked"])),
        "the forbidden write must be recorded denied with the forbid's id: {d:?}"
    );
    let d = decided("asked", "kv.read");
    ensure!(
        !d.is_empty()
            && d.iter()
                .all(|d| d["allowed"] == true && d["policy_ids"] == json!(["anything"])),
        "the permitted read must be recorded allowed by `anything`: {d:?}"
    );
    Ok(())
}

/// The resources a generated grant rule may name: (action, resource entity, key the model
/// matches on).
const GRANT_TARGETS: [(&str, &str, &str); 7] = [
    (
        "link",
        "FemtoClaw::Interface::\"femtoclaw:host/log@0.1.0\"",
        "link femtoclaw:host/log@0.1.0",
    ),
    (
        "link",
        "FemtoClaw::Interface::\"wasi:keyvalue/store@0.2.0-draft2\"",
        "link wasi:keyvalue/store@0.2.0-draft2",
    ),
    (
        "link",
        "FemtoClaw::Interface::\"wasi:io/streams@0.2.6\"",
        "link wasi:io/streams@0.2.6",
    ),
    ("kv.read", "FemtoClaw::KvNamespace::\"a\"", "kv.read a"),
    ("kv.write", "FemtoClaw::KvNamespace::\"a\"", "kv.write a"),
    ("kv.write", "FemtoClaw::KvNamespace::\"b\"", "kv.write b"),
    (
        "config.read",
        "FemtoClaw::ConfigKey::\"k1\"",
        "config.read k1",
    ),
];

/// One generated rule: permit or forbid of a target, of every resource of an action, of
/// every baseline interface, or of everything.
#[derive(Clone, Debug)]
enum GrantRule {
    Target(bool, usize),
    Action(bool, &'static str),
    Baseline(bool),
    All(bool),
}

impl GrantRule {
    fn text(&self, id: usize) -> String {
        let (permit, body) = match self {
            GrantRule::Target(p, t) => (*p, format!("principal, action == FemtoClaw::Action::\"{}\", resource == {})", GRANT_TARGETS[*t].0, GRANT_TARGETS[*t].1)),
            GrantRule::Action(p, a) => (*p, format!("principal, action == FemtoClaw::Action::\"{a}\", resource)")),
            GrantRule::Baseline(p) => (*p, "principal, action == FemtoClaw::Action::\"link\", resource) when { resource.baseline }".to_owned()),
            GrantRule::All(p) => (*p, "principal, action, resource)".to_owned()),
        };
        format!(
            "@id(\"g{id}\")\n{} ({body};\n",
            if permit { "permit" } else { "forbid" }
        )
    }

    fn permit(&self) -> bool {
        match self {
            GrantRule::Target(p, _)
            | GrantRule::Action(p, _)
            | GrantRule::Baseline(p)
            | GrantRule::All(p) => *p,
        }
    }

    /// Whether the rule applies to `action` on `name` (`baseline`: an interface of the baseline).
    fn applies(&self, action: &str, name: &str, baseline: bool) -> bool {
        match self {
            GrantRule::Target(_, t) => GRANT_TARGETS[*t].2 == format!("{action} {name}"),
            GrantRule::Action(_, a) => *a == action,
            GrantRule::Baseline(_) => action == "link" && baseline,
            GrantRule::All(_) => true,
        }
    }
}

fn policy_allows(rules: &[GrantRule], action: &str, name: &str, baseline: bool) -> bool {
    let applying = |permit: bool| {
        rules
            .iter()
            .any(|r| r.permit() == permit && r.applies(action, name, baseline))
    };
    applying(true) && !applying(false)
}

fn grants_follow_manifest_and_policy(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let mut rng = Rng(0x6a7a_17c0_ffee_0042);
    let all_imports = [
        "femtoclaw:host/log@0.1.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "femtoclaw:host/keyvalue-prefix@0.1.0",
    ];
    let actions = ["link", "kv.read", "kv.write", "config.read"];
    let (mut ran, mut refused_at_link) = (0, 0);
    for round in 0..8 {
        // A generated manifest.
        let imports: Vec<&str> = all_imports
            .iter()
            .copied()
            .filter(|_| rng.below(3) != 0)
            .collect();
        let mut kv = Vec::new();
        for ns in ["a", "b"] {
            match rng.below(3) {
                0 => {}
                1 => kv.push((ns, false)),
                _ => kv.push((ns, true)),
            }
        }
        let config: Vec<&str> = ["k1", "k2"]
            .into_iter()
            .filter(|_| rng.below(2) == 0)
            .collect();
        let requests = format!(
            "imports = [{}]\nkv = [{}]\nconfig = [{}]",
            imports
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", "),
            kv.iter()
                .map(|(n, w)| format!("{{ namespace = \"{n}\", write = {w} }}"))
                .collect::<Vec<_>>()
                .join(", "),
            config
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let name = format!("grant{round}");
        probe(&host, &name, "acme", &requests)?
            .expect(0, &format!("capability add of {name} with {requests:?}"))?;
        // A generated policy (the local operator may always invoke).
        let n = 2 + rng.below(5);
        let rules: Vec<GrantRule> = (0..n)
            .map(|_| {
                let permit = rng.below(4) != 0;
                match rng.below(6) {
                    0..=2 => GrantRule::Target(permit, rng.below(GRANT_TARGETS.len())),
                    3 => GrantRule::Action(permit, actions[rng.below(actions.len())]),
                    4 => GrantRule::Baseline(permit),
                    _ => GrantRule::All(permit),
                }
            })
            .collect();
        let text = format!(
            "@id(\"invoke\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource);\n{}",
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| r.text(i))
                .collect::<String>()
        );
        host.policy(&text)?;
        let e = explain(&host, &["--capability", &name, "--function", "echo"])?;
        let context = || format!("manifest {requests:?} under\n{text}");
        // Imports: the manifest's and the component's, each linked exactly when requested (or
        // baseline) and permitted.
        let listed: Vec<&Json> = e["imports"].as_array().into_iter().flatten().collect();
        for want in &imports {
            ensure!(
                listed.iter().any(|i| i["interface"] == *want),
                "the grant does not decide the manifest's import {want}: {}",
                context()
            );
        }
        let mut would_run = true;
        let mut unlinked: Vec<String> = Vec::new();
        for i in &listed {
            let interface = i["interface"].as_str().unwrap_or("?");
            let baseline = i["baseline"] == true;
            ensure!(
                baseline == is_baseline(interface),
                "{interface} is reported baseline={baseline}: {}",
                context()
            );
            let requested = imports.contains(&interface);
            let linked =
                (requested || baseline) && policy_allows(&rules, "link", interface, baseline);
            ensure!(
                i["linked"] == linked,
                "{interface} (requested: {requested}, baseline: {baseline}) must {}be linked; the runtime says linked={}: {}",
                if linked { "" } else { "not " },
                i["linked"],
                context()
            );
            if !requested && !baseline {
                ensure!(
                    i["decision"]["reason"] == "not_requested"
                        && i["decision"]["policy_ids"] == json!([]),
                    "{interface}, imported by the component but not requested, must be refused as not_requested: {i}\n{}",
                    context()
                );
            }
            if interface != "femtoclaw:host/keyvalue-prefix@0.1.0" {
                would_run &= linked;
                if !linked {
                    unlinked.push(interface.to_owned());
                }
            }
        }
        // Scope entries: exactly the manifest's, each granted exactly when permitted.
        let mut expected: Vec<(String, String)> = Vec::new();
        for (ns, w) in &kv {
            expected.push(("kv.read".into(), (*ns).into()));
            if *w {
                expected.push(("kv.write".into(), (*ns).into()));
            }
        }
        for k in &config {
            expected.push(("config.read".into(), (*k).into()));
        }
        expected.sort();
        let mut got: Vec<(String, String)> = e["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["action"].as_str().unwrap_or("?").to_owned(),
                    s["scope"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        got.sort();
        ensure!(
            got == expected,
            "the scope entries decided must be exactly the manifest's {expected:?}; the runtime decided {got:?}: {}",
            context()
        );
        for s in e["scopes"].as_array().into_iter().flatten() {
            let (action, scope) = (
                s["action"].as_str().unwrap_or("?"),
                s["scope"].as_str().unwrap_or("?"),
            );
            let granted = policy_allows(&rules, action, scope, false);
            ensure!(
                s["granted"] == granted,
                "{action} {scope} must {}be granted; the runtime says granted={}: {}",
                if granted { "" } else { "not " },
                s["granted"],
                context()
            );
        }
        // And the host links what the grant says: the invocation runs exactly when every
        // import of the component is linked.
        let run = host.run(&["invoke", &name, "echo", "--args", r#"{"text":"x"}"#])?;
        ensure!(
            (run.code == 0) == would_run && (run.code == 0 || run.code == 7),
            "with every import of the component linked: {would_run}, the invocation must {}; it exited {}: {}\n{}",
            if would_run {
                "run"
            } else {
                "be refused with exit 7"
            },
            run.code,
            excerpt(&run.stderr),
            context()
        );
        let invoked = !rules.iter().any(|r| matches!(r, GrantRule::All(false)));
        ensure!(
            e["invoke"]["allowed"] == invoked,
            "the invoke decision must be allowed={invoked}: {}\n{}",
            e["invoke"],
            context()
        );
        if run.code == 0 {
            ran += 1;
        } else if invoked {
            refused_at_link += 1;
        }
        for interface in unlinked.iter().filter(|_| invoked) {
            ensure!(
                run.stderr.contains(&format!("`{interface}`")),
                "the refusal must name every import the grant does not cover, {interface} included: {}",
                excerpt(&run.stderr)
            );
        }
    }
    ensure!(
        ran > 0 && refused_at_link > 0,
        "the generated cases must include a call that runs and one refused at link ({ran}, {refused_at_link})"
    );
    Ok(())
}

fn address_kinds(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"net.connect\" };\n",
    )?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        "[http]\ntimeout_ms = 2000\n",
    )?;
    // (URL host, the address as the host names it, its kind; None: public).
    let table: [(&str, &str, Option<&str>); 14] = [
        ("127.0.0.9", "127.0.0.9", Some("loopback")),
        ("[::ffff:127.0.0.1]", "127.0.0.1", Some("loopback")),
        ("[::ffff:0:10.1.2.3]", "::ffff:0:a01:203", Some("private")),
        ("[::127.0.0.1]", "::7f00:1", Some("loopback")),
        (
            "[64:ff9b::a9fe:a9fe]",
            "64:ff9b::a9fe:a9fe",
            Some("metadata"),
        ),
        ("[64:ff9b::c0a8:1]", "64:ff9b::c0a8:1", Some("private")),
        ("[2002:c0a8:0101::1]", "2002:c0a8:101::1", Some("private")),
        ("[64:ff9b:1::7f00:1]", "64:ff9b:1::7f00:1", Some("loopback")),
        (
            "[64:ff9b:1::808:808]",
            "64:ff9b:1::808:808",
            Some("reserved"),
        ),
        (
            "[2001:0:1:2::80ff:fffe]",
            "2001:0:1:2::80ff:fffe",
            Some("loopback"),
        ),
        (
            "[2001:0:1:2::f7f7:f7f7]",
            "2001:0:1:2::f7f7:f7f7",
            Some("reserved"),
        ),
        ("100.64.0.1", "100.64.0.1", Some("private")),
        ("[fd00:ec2::254]", "fd00:ec2::254", Some("metadata")),
        ("[64:ff9b::808:808]", "64:ff9b::808:808", None),
    ];
    let fetch = |url_host: &str| -> Result<Json, Failure> {
        let args = json!({ "url": format!("http://{url_host}/") }).to_string();
        let run = host.run(&["invoke", "fetch", "get", "--args", &args])?;
        run.expect(0, &format!("fetch.get http://{url_host}/"))?;
        run.json()
    };
    for (url_host, address, kind) in table {
        let got = fetch(url_host)?;
        let text = got["err"].as_str().unwrap_or("");
        match kind {
            Some(kind) => ensure!(
                text.contains(&format!("{address} ({kind})")),
                "http://{url_host}/ must be refused naming {address} ({kind}): {got}"
            ),
            None => ensure!(
                !text.contains("is not granted on"),
                "http://{url_host}/ reaches a public address (an IPv4 one through NAT64); it was refused as non-public: {got}"
            ),
        }
    }
    let entries = host.entries()?;
    for (_, address, kind) in table {
        let asked = bodies(&entries).iter().any(|e| {
            e["type"] == "decision" && e["action"] == "net.connect" && e["resource"] == address
        });
        ensure!(
            asked == kind.is_some(),
            "{address} ({}) must {}be decided as net.connect",
            kind.unwrap_or("public"),
            if kind.is_some() { "" } else { "not " }
        );
    }
    // The policy sees the kind: permitting loopback lets the embedded loopback addresses pass.
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"net.connect\" };\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"net.connect\", resource) when { resource.kind == \"loopback\" };\n",
    )?;
    for (url_host, address) in [
        ("[::127.0.0.1]", "::7f00:1"),
        ("[2001:0:1:2::80ff:fffe]", "2001:0:1:2::80ff:fffe"),
    ] {
        let got = fetch(url_host)?;
        ensure!(
            !got["err"]
                .as_str()
                .unwrap_or("")
                .contains("is not granted on"),
            "with net.connect permitted on loopback, http://{url_host}/ must not be refused by the policy: {got}"
        );
        let entries = host.entries()?;
        ensure!(
            bodies(&entries).iter().any(|e| e["type"] == "decision"
                && e["action"] == "net.connect"
                && e["resource"] == address
                && e["allowed"] == true),
            "the net.connect of {address} under a policy permitting loopback must be recorded allowed"
        );
    }
    Ok(())
}

fn erring_policies_reported_and_skipped(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(
        "@id(\"works\")\npermit (principal == FemtoClaw::User::\"local\", action, resource);\n\
         @id(\"erring-forbid\")\nforbid (principal, action, resource) when { 9223372036854775807 + 1 > 0 };\n\
         @id(\"erring-permit\")\npermit (principal == FemtoClaw::Agent::\"x\", action, resource) when { 9223372036854775807 * 2 > 0 };\n",
    )?;
    let errors = |d: &Json| -> Vec<String> {
        d["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect()
    };
    let local = explain(&host, &["--capability", "hello", "--function", "greet"])?;
    let d = &local["invoke"];
    let e = errors(d);
    ensure!(
        d["allowed"] == true
            && d["reason"] == "permitted"
            && d["policy_ids"] == json!(["works"])
            && e.iter().any(|m| m.contains("erring-forbid"))
            && !e.iter().any(|m| m.contains("erring-permit")),
        "a forbid that fails to evaluate must be reported in errors by its id and not apply (allowed by `works` alone): {d}"
    );
    let agent = explain(
        &host,
        &[
            "--capability",
            "hello",
            "--function",
            "greet",
            "--principal",
            "agent:x",
        ],
    )?;
    let d = &agent["invoke"];
    let e = errors(d);
    ensure!(
        d["allowed"] == false
            && d["reason"] == "no_permit"
            && d["policy_ids"] == json!([])
            && e.iter().any(|m| m.contains("erring-permit"))
            && e.iter().any(|m| m.contains("erring-forbid")),
        "a permit that fails to evaluate must be reported in errors by its id and not apply (no permit): {d}"
    );
    // The invocation runs past the erring forbid, its decision naming `works` alone.
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet past a forbid that fails to evaluate")?;
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:x",
    ])?
    .expect(
        7,
        "hello.greet of agent:x, permitted only by a policy that fails to evaluate",
    )?;
    let entries = host.entries()?;
    let invokes: Vec<&Json> = bodies(&entries)
        .into_iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "invoke")
        .collect();
    ensure!(
        invokes.len() == 2
            && invokes[0]["allowed"] == true
            && invokes[0]["policy_ids"] == json!(["works"])
            && invokes[1]["allowed"] == false
            && invokes[1]["policy_ids"] == json!([]),
        "the recorded invoke decisions must treat the erring policies as not applying: {invokes:?}"
    );
    Ok(())
}

fn preopens_only_granted_paths(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let call = |function: &str, args: Json| -> Result<Json, Failure> {
        let text = args.to_string();
        let run = host.run(&["invoke", "files", function, "--args", &text])?;
        run.expect(0, &format!("files.{function} {text}"))?;
        run.json()
    };
    let listed = || call("list-dir", json!({ "dir": "/data" }));
    let dir = host.data.path().join("files/files/data");
    // The default policy: no directory at all.
    let got = listed()?;
    ensure!(
        got["err"]
            .as_str()
            .is_some_and(|e| e.contains("no directory is granted")),
        "under the default policy files must be handed no directory: {got}"
    );
    // fs.read granted, fs.write not: the directory, read-only.
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"fs.write\" };\n",
    )?;
    let _ = listed()?;
    std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
    std::fs::write(dir.join("seen.txt"), "seen").map_err(|e| failed(e.to_string()))?;
    let read = call("read-file", json!({ "path": "/data/seen.txt" }))?;
    ensure!(
        read["ok"] == "seen",
        "a read-only grant must let files read /data/seen.txt: {read}"
    );
    let wrote = call(
        "write-file",
        json!({ "path": "/data/new.txt", "text": "x" }),
    )?;
    ensure!(
        wrote["err"].is_string() && !dir.join("new.txt").exists(),
        "without fs.write the directory must be read-only: write-file answered {wrote}"
    );
    let wrote = call(
        "write-file",
        json!({ "path": "/data/seen.txt", "text": "changed" }),
    )?;
    ensure!(
        wrote["err"].is_string()
            && std::fs::read_to_string(dir.join("seen.txt"))
                .ok()
                .as_deref()
                == Some("seen"),
        "without fs.write an existing file must not be overwritten: {wrote}"
    );
    // fs.write granted too: writable.
    host.policy("permit (principal == FemtoClaw::User::\"local\", action, resource);\n")?;
    let wrote = call(
        "write-file",
        json!({ "path": "/data/new.txt", "text": "x" }),
    )?;
    ensure!(
        wrote["ok"].is_number() && dir.join("new.txt").exists(),
        "with fs.write granted, write-file must create the file: {wrote}"
    );
    // Only the granted path: a path outside it is not there.
    let outside = call("read-file", json!({ "path": "/etc/hostname" }))?;
    ensure!(
        outside["err"].is_string(),
        "a path outside the granted one was read: {outside}"
    );
    Ok(())
}

fn checks_in_order(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // The guest twice: `full` with its manifest, `nolog` without the log import.
    probe(&host, "full", "acme", GUEST_REQUESTS)?
        .expect(0, "capability add of the guest as full")?;
    let kv_only = "imports = [\"wasi:keyvalue/store@0.2.0-draft2\"]\nkv = [{ namespace = \"conformance\", write = true }]";
    probe(&host, "nolog", "acme", kv_only)?.expect(0, "capability add of the guest as nolog")?;
    let config = host.data.path().join("femtoclaw.toml");
    let since = |n: usize| -> Result<Vec<Json>, Failure> {
        Ok(host
            .entries()?
            .into_iter()
            .skip(n)
            .map(|e| e["entry"].clone())
            .collect())
    };
    let types = |entries: &[Json]| -> Vec<String> {
        entries
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let echo = |capability: &str, extra: &[&str]| -> Result<Run, Failure> {
        let mut all = vec!["invoke", capability, "echo", "--args", r#"{"text":"x"}"#];
        all.extend_from_slice(extra);
        host.run(&all)
    };
    host.policy(OPEN)?;
    echo("full", &[])?.expect(0, "echo under a permit-all policy")?;
    // 1 before 5: a changed package is refused before the invoke decision is asked.
    host.policy("forbid (principal, action, resource);\npermit (principal, action, resource);\n")?;
    let n = host.entries()?.len();
    let component = host
        .data
        .path()
        .join("capabilities/full/1.0.0/component.wasm");
    let kept = std::fs::read(&component).map_err(|e| failed(e.to_string()))?;
    let mut changed = kept.clone();
    changed.extend_from_slice(&[0, 3, 1, b'x', 0]);
    std::fs::write(&component, &changed).map_err(|e| failed(e.to_string()))?;
    let run = echo("full", &[])?;
    ensure!(
        run.code == 1 && run.stderr.contains("changed"),
        "a changed package under a policy that forbids everything must be refused as changed (exit 1) before the invoke decision; it exited {}: {}",
        run.code,
        excerpt(&run.stderr)
    );
    let after = since(n)?;
    ensure!(
        !after
            .iter()
            .any(|e| e["type"] == "decision" || e["type"] == "invocation-start"),
        "a package refused as changed was decided on: {:?}",
        types(&after)
    );
    std::fs::write(&component, &kept).map_err(|e| failed(e.to_string()))?;
    // 4 before 5: a fuel budget over the ceiling is refused before the invoke decision.
    let n = host.entries()?.len();
    write(&config, "[limits]\nmax_fuel = 1000000\n")?;
    echo("full", &["--fuel", "2000000"])?.expect(
        2,
        "a budget over limits.max_fuel under a policy that forbids everything",
    )?;
    let after = since(n)?;
    ensure!(
        !after
            .iter()
            .any(|e| e["type"] == "decision" || e["type"] == "invocation-start"),
        "a budget over the ceiling was decided on: {:?}",
        types(&after)
    );
    let _ = std::fs::remove_file(&config);
    // 5 before 6: an invocation denied is not linked.
    let n = host.entries()?.len();
    let run = echo("nolog", &[])?;
    run.expect(
        7,
        "a forbidden invocation of a component whose log import is not requested",
    )?;
    ensure!(
        run.stderr.contains("may not invoke")
            && !run.stderr.contains("imports what is not granted"),
        "the invoke refusal must come first: {}",
        excerpt(&run.stderr)
    );
    let after = since(n)?;
    ensure!(
        types(&after) == ["invocation-start", "decision", "invocation-end"]
            && after[1]["action"] == "invoke",
        "a refused invocation must record only its start, the invoke decision and its end, no link decision: {:?}",
        types(&after)
    );
    // 6 before 7: a call refused at link asks for no approval.
    host.policy(
        "permit (principal, action, resource) unless { action == FemtoClaw::Action::\"invoke\" };\n\
         @approval(\"required\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource);\n",
    )?;
    let n = host.entries()?.len();
    echo("nolog", &[])?.expect(
        7,
        "a call needing approval whose log import is not requested",
    )?;
    let after = since(n)?;
    ensure!(
        !after.iter().any(|e| e["type"] == "approval"),
        "a call refused at link asked for an approval: {:?}",
        types(&after)
    );
    // 7 before 8: a pending call draws on no quota; 8 before 9: a refused one makes no call.
    write(
        &config,
        "[[quotas.rules]]\ncapability = \"full\"\ninvocations = 1\nper_ms = 3600000\n",
    )?;
    let n = host.entries()?.len();
    echo("full", &[])?.expect(13, "a call needing approval under a quota of one")?;
    echo("full", &[])?.expect(13, "the same call again, still pending")?;
    let after = since(n)?;
    ensure!(
        !after.iter().any(|e| e["type"] == "trap"),
        "a pending call was counted by the quota (a limit trap was recorded): {:?}",
        types(&after)
    );
    host.policy(OPEN)?;
    let remember = |code: i32, what: &str| -> Result<Vec<Json>, Failure> {
        let n = host.entries()?.len();
        host.run(&[
            "invoke",
            "full",
            "remember",
            "--args",
            r#"{"key":"k","value":"v"}"#,
        ])?
        .expect(code, what)?;
        since(n)
    };
    remember(0, "the one call the quota admits")?;
    let after = remember(12, "a call past the quota")?;
    ensure!(
        !after.iter().any(|e| e["type"] == "host-call"
            || e["type"] == "host-call-intent"
            || (e["type"] == "decision" && e["action"] != "invoke" && e["action"] != "link")),
        "a call refused by the quota made or decided host calls: {:?}",
        types(&after)
    );
    Ok(())
}

fn acknowledged_survives_a_kill(target: &Target) -> Result<(), Failure> {
    let mut served = serve(target, Some(OPEN), "", true)?;
    for round in 0..3 {
        let text = format!("acknowledged-{round}");
        let body =
            json!({ "capability": "conformance", "function": "echo", "args": { "text": text } });
        let response = served.post("/v1/invoke", Some(&served.token), &body)?;
        response.expect(200, &format!("echo {text}"))?;
        // Killed the moment it answered.
        let _ = served.child.kill();
        let _ = served.child.wait();
        let entries = served.host.entries()?;
        let found = bodies(&entries)
            .iter()
            .any(|e| e["type"] == "invocation-end" && e["result"] == json!({ "string": text }));
        ensure!(
            found,
            "the acknowledged invocation echoing {text:?} is not in the ledger, with its result, after the host was killed"
        );
        // Started again on the same data directory.
        let mut child = served
            .host
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| failed(format!("cannot start serve again: {e}")))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.as_mut() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let url = line.trim().strip_prefix("listening on ").map(str::to_owned);
        served.child = child;
        served.url =
            url.ok_or_else(|| failed(format!("serve after a kill printed {:?}", line.trim())))?;
    }
    Ok(())
}

/// Whether `interface` is in the virtualized baseline of specification 16: one of its table's
/// `package/name`s at a version `0.2.<digits>`.
fn is_baseline(interface: &str) -> bool {
    const BASELINE: &[&str] = &[
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
        "wasi:clocks/monotonic-clock",
        "wasi:clocks/wall-clock",
        "wasi:random/random",
        "wasi:random/insecure",
        "wasi:random/insecure-seed",
        "wasi:filesystem/types",
        "wasi:filesystem/preopens",
    ];
    interface.split_once('@').is_some_and(|(name, version)| {
        BASELINE.contains(&name)
            && version
                .strip_prefix("0.2.")
                .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
    })
}
