//! The cases. Each starts from nothing (a fresh data directory, or a fresh server), drives the
//! target through a public surface and checks what specification 31 lists for it. One module
//! per area; [`all`] is every case, in the order they run.

mod access;
mod authority;
mod behaviour;
mod compliance;
mod core;
mod decisions;
mod distribution;
mod durability;
mod egress;
mod engine;
mod execution;
mod integrity;
mod ledger;
mod linking;
mod model;
mod operations;
mod peer;
mod sandbox;
mod security;
mod server;
mod state;
mod values;

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use sha2::{Digest as _, Sha256};

use crate::target::{Host, Server, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

/// Every case, in the order they run.
pub fn all() -> Vec<Case> {
    [
        core::CASES,
        execution::CASES,
        security::CASES,
        ledger::CASES,
        server::CASES,
        compliance::CASES,
        access::CASES,
        operations::CASES,
        behaviour::CASES,
        distribution::CASES,
        integrity::CASES,
        authority::CASES,
        sandbox::CASES,
        values::CASES,
        linking::CASES,
        egress::CASES,
        decisions::CASES,
        engine::CASES,
        state::CASES,
        durability::CASES,
        model::CASES,
    ]
    .concat()
}

/// A policy under which the local operator may do anything.
pub(crate) const OPEN: &str =
    "permit (principal == FemtoClaw::User::\"local\", action, resource);\n";

/// The first-party call every server offers: `hello.greet` of Ada.
pub(crate) const GREET: &str = r#"{"capability":"hello","function":"greet","args":{"name":"Ada"}}"#;

/// A fresh host with the suite's guest installed under `policy`.
pub(crate) fn guest_host(target: &Target, policy: &str) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(policy)?;
    host.install()?;
    Ok(host)
}

/// The entries' types, in order.
pub(crate) fn kinds(entries: &[Json]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The host's verifier key, parsed.
pub(crate) fn published_key(host: &Host) -> Result<crypto::Key, Failure> {
    let text = host.ok(&["key", "show"])?;
    crypto::Key::parse(&text).map_err(|e| Failure::Failed(format!("key show: {e}")))
}

/// Sets secret `name` to `value` (given on stdin with a final newline); fails unless it exits 0.
pub(crate) fn set_secret(host: &Host, name: &str, value: &str) -> Result<(), Failure> {
    host.secret_set(name, format!("{value}\n").as_bytes())?
        .expect(0, &format!("secret set {name}"))?;
    Ok(())
}

/// A server under the default policy: one of the suite's own, or the target.
pub(crate) fn server(target: &Target) -> Result<Server, Failure> {
    target.server(None)
}

/// The file's bytes, for comparing a directory before and after.
pub(super) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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

/// Text without its ANSI escape sequences (a log line's colours).
pub(super) fn plain_text(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))
}

pub(super) fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

/// The bytes of a recorded `list<u8>`, however `log show` writes it (an array of numbers, hex
/// or base64).
pub(super) fn recorded_bytes(value: &Json) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut walk = vec![value];
    while let Some(v) = walk.pop() {
        match v {
            Json::Array(items) => {
                if !items.is_empty() && items.iter().all(|i| i.as_u64().is_some_and(|n| n < 256)) {
                    found.push(
                        items
                            .iter()
                            .filter_map(Json::as_u64)
                            .map(|n| n as u8)
                            .collect(),
                    );
                }
                walk.extend(items);
            }
            Json::Object(map) => walk.extend(map.values()),
            Json::String(s) => {
                if s.len() % 2 == 0 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    found.push(
                        (0..s.len())
                            .step_by(2)
                            .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
                            .collect(),
                    );
                }
                use base64::Engine as _;
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
                    found.push(bytes);
                }
            }
            _ => {}
        }
    }
    found
}

/// Exports the ledger and replays it on a fresh data directory: fails unless every invocation
/// replays identical; how many did.
pub(super) fn replays(target: &Target, host: &Host) -> Result<usize, Failure> {
    replays_under(target, host, None)
}

/// [`replays`], the replaying host run with one more environment variable.
pub(super) fn replays_under(
    target: &Target,
    host: &Host,
    variable: Option<(&str, &str)>,
) -> Result<usize, Failure> {
    let file = host.files.path().join("replayed.export");
    host.ok(&["log", "export", &s(&file), "--with-components"])?;
    let key = host.ok(&["key", "show"])?;
    let elsewhere = target.host()?;
    let file = s(&file);
    let argv = ["replay", &file, "--key", key.trim(), "--json"];
    let mut command = elsewhere.command(&argv);
    if let Some((name, value)) = variable {
        command.env(name, value);
    }
    let run = elsewhere.run_command(command, &argv)?;
    run.expect(0, "replay of the export on a data directory of its own")?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == "identical"),
        "every invocation must replay identical from the ledger alone: {}",
        excerpt(&run.stdout)
    );
    Ok(statuses.len())
}

/// Writes a file, creating its parent.
pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, bytes).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

/// `invoke CAPABILITY FUNCTION --args ARGS` that must exit 0: its printed result.
pub(super) fn call(
    host: &Host,
    capability: &str,
    function: &str,
    args: &Json,
) -> Result<Json, Failure> {
    let text = args.to_string();
    let run = host.run(&["invoke", capability, function, "--args", &text])?;
    run.expect(0, &format!("invoke {capability} {function} {text}"))?;
    run.json()
}

/// The `err` text of a result, or "".
pub(super) fn err(result: &Json) -> String {
    result["err"].as_str().unwrap_or("").to_owned()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
