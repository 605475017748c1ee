//! `femtoclaw:host/http`: outgoing HTTP, one whole request in and one whole response out.
//!
//! Every request passes the gate like any host call. Before a byte leaves the host:
//!
//! - the origin (scheme, host, port) is a scope: `http.request` on [`Scope::HttpHost`], granted
//!   only when the manifest asks for it and the policy permits it;
//! - every secret header is a scope: `secret.use` on [`Scope::Secret`], decided with the origin
//!   the secret is sent to (its destination); the host puts the value in the header, the guest
//!   and the ledger see only the secret's name, and what comes back is scrubbed of every
//!   secret the invocation used (see [`crate::scrub`]);
//! - the host resolves the name itself and decides every non-public address it would connect to
//!   (`net.connect` on [`Scope::Address`]: loopback, private, link-local, metadata, …), then
//!   connects only to the addresses it checked, never looking the name up a second time;
//! - each redirect hop is authorized again, and secret headers are dropped once a hop leaves
//!   the first origin.
//!
//! Bodies are capped both ways and the whole exchange has a deadline (the host's cap, the
//! invocation's time left, or less if the guest asks); the guest may ask for smaller caps,
//! never larger. Every hop is written ahead before it is sent (see
//! [`Authority::before_effect`](crate::gate::Authority::before_effect)). The request and the response are the call's recorded params and
//! result (bodies of 16 KiB or more by digest, beside the ledger), so replay answers from the
//! ledger without any network.
//!
//! [`Scope::HttpHost`]: femtoclaw_policy::Scope::HttpHost
//! [`Scope::Secret`]: femtoclaw_policy::Scope::Secret
//! [`Scope::Address`]: femtoclaw_policy::Scope::Address

mod client;
mod recorded;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::HostInterface;
use crate::gate::{Gate, Registry};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package femtoclaw:http-host;
            world http-host { import femtoclaw:host/http@0.1.0; }
        ",
        world: "femtoclaw:http-host/http-host",
    });
}

use bindings::femtoclaw::host::http::{Error, Header, Request, Response, SecretHeader};

/// The interface, with its package and version.
pub const INTERFACE: &str = "femtoclaw:host/http@0.1.0";

/// The value of a secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a secret's value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that puts it in a header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Where the host finds secrets by name (the operator's secret store).
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The value of the secret `name`; `Ok(None)` when there is none. An error says why the
    /// store could not answer, without the value.
    fn secret(&self, name: &str) -> Result<Option<SecretValue>, String>;
}

/// A store without secrets.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _name: &str) -> Result<Option<SecretValue>, String> {
        Ok(None)
    }
}

/// The host's caps on every HTTP request; a request may ask for less, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body, in bytes.
    pub max_request_bytes: u64,
    /// Largest response body, in bytes.
    pub max_response_bytes: u64,
    /// Time allowed for one request, redirects included.
    pub timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
            timeout: Duration::from_secs(30),
            max_redirects: 10,
        }
    }
}

/// What an invocation's HTTP requests may use: the secret store and the host's caps.
#[derive(Debug, Clone)]
pub struct Egress {
    /// Where secret headers get their values.
    pub secrets: Arc<dyn SecretSource>,
    /// The host's caps.
    pub limits: HttpLimits,
}

impl Default for Egress {
    fn default() -> Self {
        Self {
            secrets: Arc::new(NoSecrets),
            limits: HttpLimits::default(),
        }
    }
}

/// The interface: whole requests out through the gate, under the host's egress.
pub(crate) struct Http;

impl HostInterface for Http {
    type Context = Egress;
    type State = Egress;

    fn state(context: Egress) -> Egress {
        context
    }

    fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
        add_to_linker(registry)
    }
}

fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::define_scoped(
        registry,
        INTERFACE,
        "send",
        |state, authority, (request,): &(Request,)| {
            let left = state.deadline.left();
            Ok((client::send(&state.host.http, authority, request, left),))
        },
    )
}
