//! `capability add | remove | list | inspect`.

use std::path::{Path, PathBuf};

use femtoclaw_host::admin::Request;
use femtoclaw_host::{Code, Failure};
use serde_json::{Value as Json, json};

use super::{Global, PrincipalArgs, internal, out, print_json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Install a component (with its manifest).
    Add {
        /// The component (`.wasm`, wasm32-wasip2).
        component: PathBuf,
        /// Its `capability.toml`; without it the name is the file stem and the version `0.0.0`.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Uninstall a capability (an embedded one cannot be); invocations already running finish
    /// with the component they loaded.
    Remove {
        /// `name@version`, or `name` for its highest installed version.
        capability: String,
    },
    /// List the capabilities this host can run.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a capability's functions, parameters, JSON Schemas, imports, and what it requests
    /// versus what the policy grants a principal (JSON).
    Inspect {
        /// `name` or `name@version`.
        capability: String,
        #[command(flatten)]
        who: PrincipalArgs,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        let installed = |answer: Json| {
            out(&format!(
                "{} {} sha256:{}",
                answer["name"].as_str().unwrap_or_default(),
                answer["version"].as_str().unwrap_or_default(),
                answer["sha256"].as_str().unwrap_or_default()
            ));
        };
        match self {
            Command::Add {
                component,
                manifest,
            } => {
                // Whoever performs it (the server, perhaps) reads the files by absolute path.
                let request = Request::CapabilityAdd {
                    component: absolute(&component)?,
                    manifest: manifest.as_deref().map(absolute).transpose()?,
                };
                installed(global.operate(&request)?);
            }
            Command::Remove { capability } => {
                installed(global.operate(&Request::CapabilityRemove { capability })?);
            }
            // Reading needs no ledger: it works beside a running server.
            Command::List { json } => {
                let entries = global.open(false)?.catalog.list()?;
                if json {
                    print_json(&serde_json::to_value(&entries).map_err(internal)?);
                    return Ok(());
                }
                for e in entries {
                    out(&format!(
                        "{:<16} {:<10} {:<9} sha256:{}  {}",
                        e.manifest.name,
                        e.manifest.version,
                        serde_json::to_value(e.source)
                            .ok()
                            .and_then(|s| s.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        e.sha256,
                        e.manifest.description
                    ));
                }
            }
            Command::Inspect { capability, who } => {
                let host = global.open(false)?;
                let principal = who.principal()?;
                let resolved = host.resolve(&capability)?;
                let policy = host.authority.policy()?;
                let grant = host.authority.grant(
                    &policy,
                    &principal,
                    &resolved.entry,
                    &resolved.prepared.imports,
                );
                let functions: Vec<Json> = resolved
                    .prepared
                    .functions
                    .iter()
                    .map(|f| {
                        json!({
                            "name": f.name,
                            "description": f.doc,
                            "params": f.params.iter().map(|(n, t)| json!({
                                "name": n,
                                "type": femtoclaw_sandbox::values::type_name(t),
                            })).collect::<Vec<_>>(),
                            "args_schema": f.args_schema(),
                            "result_schema": f.result_schema(),
                            "unsupported": f.unsupported().map(|u| u.to_string()),
                        })
                    })
                    .collect();
                let m = &resolved.entry.manifest;
                print_json(&json!({
                    "name": m.name,
                    "version": m.version,
                    "description": m.description,
                    "publisher": m.publisher,
                    "fuel": m.fuel,
                    "sha256": resolved.entry.sha256,
                    "manifest_sha256": resolved.entry.manifest_sha256,
                    "source": resolved.entry.source,
                    "functions": functions,
                    "imports": resolved.prepared.imports,
                    "requested": m.requests,
                    "granted": {
                        "principal": principal.to_string(),
                        "policy_digest": policy.digest_hex(),
                        "imports": grant.imports,
                        "refused_imports": grant
                            .refused(resolved.prepared.imports.iter().map(String::as_str))
                            .into_iter()
                            .map(|(i, d)| json!({ "import": i, "decision": d }))
                            .collect::<Vec<_>>(),
                        "scopes": grant.scopes,
                        "denied_scopes": grant.denied_scopes.iter().map(|(a, s, d)| json!({
                            "action": a.as_str(), "scope": s, "decision": d,
                        })).collect::<Vec<_>>(),
                    },
                }));
            }
        }
        Ok(())
    }
}

/// `path` made absolute against the current directory.
fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path)
        .map_err(|e| Failure::new(Code::InvalidArgs, format!("`{}`: {e}", path.display())))
}
