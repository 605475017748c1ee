//! The cases. Each starts from nothing (a fresh data directory, or a fresh server), drives the
//! target through a public surface and checks what specification 31 lists for it. One module
//! per area; [`all`] is every case, in the order they run.

mod access;
mod authority;
mod behaviour;
mod compliance;
mod core;
mod distribution;
mod execution;
mod integrity;
mod ledger;
mod operations;
mod sandbox;
mod security;
mod server;

use serde_json::Value as Json;

use crate::target::{Host, Server};
use crate::{Case, Failure, Target, crypto};

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

/// A server under the default policy: one of the suite's own, or the target.
pub(crate) fn server(target: &Target) -> Result<Server, Failure> {
    target.server(None)
}
