//! The operator's writing commands as requests: `invoke`, `token create | list | revoke`,
//! `capability add | remove`, `key generate`, `secret set | list | remove`,
//! `approval list | grant | deny`.
//!
//! One process writes a data directory. When no server holds it, the command line performs a
//! request on a host it opens itself; when a server does, the command line sends the request to
//! that server over its local admin channel, `<data dir>/admin.sock`: a Unix socket of mode
//! 0600 on which the server accepts connections of its own user only (the local operator).
//! Either way [`perform`] does the work, so a command means the same thing in both cases, and
//! a change made through the server (a capability added, a token revoked) takes effect on its
//! next request.
//!
//! ```no_run
//! # fn main() -> Result<(), femtoclaw_host::Failure> {
//! use femtoclaw_host::admin::{self, Request};
//! let request = Request::TokenList;
//! match admin::send(std::path::Path::new("femtoclaw-data"), &request)? {
//!     Some(answer) => println!("the server answered {answer}"),
//!     None => println!("no server holds the data directory: perform it here"),
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use femtoclaw_ledger::Value;
use femtoclaw_sandbox::LOG_INTERFACE;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::exit::{Code, Failure};
use crate::host::{Bounds, Host, Invoked};
use crate::{secrets, tokens};

/// The admin channel of the server holding `data_dir`.
pub fn socket(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// The route requests are posted to on the admin channel.
pub const ROUTE: &str = "/admin";

/// One writing command of the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Invoke a function as `principal` (the local operator may act as any principal).
    Invoke {
        principal: String,
        #[serde(default)]
        groups: Vec<String>,
        capability: String,
        function: String,
        args: Json,
        fuel: Option<u64>,
        deadline_ms: Option<u64>,
    },
    /// Make a bearer token (see [`tokens`]).
    TokenCreate {
        name: String,
        principal: String,
        #[serde(default)]
        groups: Vec<String>,
        /// Seconds it is accepted for; none: until revoked.
        expires_in: Option<u64>,
    },
    /// The tokens, never the tokens themselves.
    TokenList,
    /// Revoke a token.
    TokenRevoke { name: String },
    /// Install a component (absolute paths, read by whoever performs the request).
    CapabilityAdd {
        component: PathBuf,
        manifest: Option<PathBuf>,
    },
    /// Uninstall a capability.
    CapabilityRemove { capability: String },
    /// The approvals asked for (see [`crate::approvals`]).
    ApprovalList,
    /// Grant (`grant`) or deny a pending approval as the local operator.
    ApprovalDecide {
        id: u64,
        grant: bool,
        reason: Option<String>,
    },
    /// Rotate the ledger's signing key.
    KeyGenerate { name: String },
    /// Store a secret.
    SecretSet { name: String, value: String },
    /// The names of the stored secrets.
    SecretList,
    /// Remove a secret.
    SecretRemove { name: String },
}

/// Performs `request` on `host`, which must have its ledger open; the answer is what the
/// command prints (as JSON, or from it).
pub fn perform(host: &Host, request: Request) -> Result<Json, Failure> {
    let records = host.records()?;
    let tokens = tokens::Store::new(&host.data_dir);
    let secrets = secrets::Store::new(&host.data_dir);
    Ok(match request {
        Request::Invoke {
            principal,
            groups,
            capability,
            function,
            args,
            fuel,
            deadline_ms,
        } => {
            let principal = crate::authority::principal(&principal, &groups)?;
            let resolved = host.resolve(&capability)?;
            let invoked = host.invoke(
                &principal,
                &resolved,
                &function,
                &args,
                Bounds {
                    fuel,
                    deadline: deadline_ms.map(Duration::from_millis),
                    ..Bounds::default()
                },
            )?;
            invocation(&resolved, &function, &invoked)?
        }
        Request::TokenCreate {
            name,
            principal,
            groups,
            expires_in,
        } => {
            let ttl = expires_in.map(Duration::from_secs);
            let (kept, token) = tokens.create(records, &name, &principal, &groups, ttl)?;
            json!({ "name": kept.name, "token": token })
        }
        Request::TokenList => json!(
            tokens
                .list()?
                .iter()
                .map(|t| json!({
                    "name": t.name,
                    "principal": t.principal,
                    "groups": t.groups,
                    "created": t.created,
                    "expires": t.expires,
                }))
                .collect::<Vec<_>>()
        ),
        Request::TokenRevoke { name } => {
            tokens.revoke(records, &name)?;
            json!({ "revoked": name })
        }
        Request::CapabilityAdd {
            component,
            manifest,
        } => {
            let max_fuel = host.config.limits.max_fuel;
            let entry = host
                .catalog
                .add(&component, manifest.as_deref(), max_fuel)?;
            // Compiled now, so a component that cannot run is refused at install time.
            let spec = format!("{}@{}", entry.manifest.name, entry.manifest.version);
            let refusal = match host.resolve(&spec) {
                Err(refused) => Some(refused),
                Ok(resolved) => {
                    let functions = resolved.prepared.functions.iter();
                    crate::mcp::colliding_tool(
                        &entry.manifest.name,
                        functions.map(|f| f.name.as_str()),
                    )
                    .map(|(tool, first, second)| {
                        Failure::new(
                            Code::InvalidArgs,
                            format!(
                                "capability {spec}: two of its functions, `{first}` and `{second}`, would be the MCP tool `{tool}` (exported interfaces with the same short name)"
                            ),
                        )
                    })
                }
            };
            if let Some(refused) = refusal {
                let _ = host.catalog.remove(&spec);
                return Err(refused);
            }
            json!({ "name": entry.manifest.name, "version": entry.manifest.version, "sha256": entry.sha256 })
        }
        Request::CapabilityRemove { capability } => {
            let entry = host.catalog.remove(&capability)?;
            json!({ "name": entry.manifest.name, "version": entry.manifest.version, "sha256": entry.sha256 })
        }
        Request::KeyGenerate { name } => json!({ "verifier": records.rotate(&name)?.to_string() }),
        Request::ApprovalList => json!(host.approvals.list()),
        Request::ApprovalDecide { id, grant, reason } => json!(host.approvals.decide(
            records,
            id,
            grant,
            &femtoclaw_policy::Principal::local().to_string(),
            reason,
            host.config.approvals.grant_ttl,
        )?),
        Request::SecretSet { name, value } => {
            secrets.set(&name, &value)?;
            json!({ "stored": name })
        }
        Request::SecretList => json!(secrets.list()?),
        Request::SecretRemove { name } => {
            secrets.remove(&name)?;
            json!({ "removed": name })
        }
    })
}

/// What `invoke --json` prints of an invocation that ran: the result, fuel, captured output,
/// logs and the receipt.
fn invocation(
    resolved: &crate::host::Resolved,
    function: &str,
    invoked: &Invoked,
) -> Result<Json, Failure> {
    let Invoked {
        outcome,
        receipt,
        invocation,
    } = invoked;
    let result = outcome.result.as_ref().map_err(Failure::from)?;
    Ok(json!({
        "capability": resolved.entry.manifest.name,
        "version": resolved.entry.manifest.version,
        "sha256": resolved.entry.sha256,
        "function": function,
        "result": result,
        "fuel": { "budget": outcome.fuel_budget, "consumed": outcome.fuel_consumed },
        "stdout": String::from_utf8_lossy(&outcome.stdout),
        "stderr": String::from_utf8_lossy(&outcome.stderr),
        "output_truncated": outcome.output_truncated,
        "logs": logs(&outcome.host_calls),
        "host_calls": outcome.host_calls.len(),
        "receipt": {
            "invocation": invocation,
            "indexes": outcome
                .written_ahead
                .iter()
                .copied()
                .chain(receipt.indexes())
                .collect::<Vec<_>>(),
            "tree_size": receipt.tree_size,
            "root": hex::encode(receipt.root),
        },
    }))
}

/// The log lines among the host calls.
fn logs(calls: &[femtoclaw_sandbox::HostCall]) -> Vec<Json> {
    calls
        .iter()
        .filter(|c| c.interface == LOG_INTERFACE)
        .filter_map(|c| match &c.params {
            Value::Tuple(p) => match p.as_slice() {
                [Value::Enum(level), Value::String(message)] => {
                    Some(json!({ "level": level, "message": message }))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Sends `request` to the server holding `data_dir`, over its admin channel: its answer, or
/// the failure it answered with (the same code as the failure would have here); `None` when
/// no server listens there (no socket, or one a stopped server left), and the caller may
/// perform the request itself.
pub fn send(data_dir: &Path, request: &Request) -> Result<Option<Json>, Failure> {
    let socket = socket(data_dir);
    if !socket.exists() {
        return Ok(None);
    }
    let failed = |e: &dyn std::fmt::Display| {
        Failure::new(
            Code::Other,
            format!("the server's admin channel `{}`: {e}", socket.display()),
        )
    };
    let client = reqwest::blocking::Client::builder()
        .unix_socket(socket.clone())
        // An invocation takes as long as its deadline allows: the server bounds it, not us.
        .timeout(None)
        .build()
        .map_err(|e| failed(&e))?;
    let body = serde_json::to_vec(request).map_err(|e| failed(&e))?;
    let response = match client
        .post(format!("http://femtoclaw-admin{ROUTE}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
    {
        Ok(response) => response,
        // Nobody listens: the socket of a server that is gone. Nothing was sent.
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(failed(&e)),
    };
    let status = response.status();
    let text = response.text().map_err(|e| failed(&e))?;
    let answer: Json = serde_json::from_str(&text)
        .map_err(|e| failed(&format!("the answer (status {status}) is not JSON: {e}")))?;
    if status.is_success() {
        return Ok(Some(answer));
    }
    let code = answer["code"]
        .as_str()
        .and_then(Code::from_name)
        .unwrap_or(Code::Other);
    Err(Failure::new(
        code,
        answer["detail"].as_str().unwrap_or(&text).to_owned(),
    ))
}

/// The admin channel's listener: a Unix socket of mode 0600 that accepts connections of the
/// server's own user only, whatever the file's mode (the kernel's peer credentials say who
/// connects).
#[derive(Debug)]
pub struct Listener {
    listener: tokio::net::UnixListener,
    uid: u32,
    path: PathBuf,
}

impl Listener {
    /// Binds `<data dir>/admin.sock`, replacing one a stopped server left: the caller holds the
    /// data directory's lock, so no other server listens there.
    pub fn bind(data_dir: &Path) -> Result<Self, Failure> {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let path = socket(data_dir);
        let failed = |e: std::io::Error| {
            Failure::new(
                Code::Other,
                format!(
                    "cannot listen on the admin channel `{}`: {e}",
                    path.display()
                ),
            )
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path).map_err(failed)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
        let uid = std::fs::metadata(&path).map_err(failed)?.uid();
        Ok(Self {
            listener,
            uid,
            path,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl axum::serve::Listener for Listener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            match stream.peer_cred() {
                Ok(peer) if peer.uid() == self.uid => return (stream, addr),
                Ok(peer) => tracing::warn!(
                    uid = peer.uid(),
                    "admin channel: refused a connection of another user"
                ),
                Err(e) => tracing::warn!("admin channel: no peer credentials: {e}"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
