//! `policy check | explain`.

use std::path::PathBuf;

use femtoclaw_host::{Failure, authority};

use super::{Global, PrincipalArgs, internal, out, print_json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a policy file or directory against the schema; list its policies and ids.
    Check {
        /// A `.cedar` file or a directory of them.
        path: PathBuf,
    },
    /// Explain whether a principal may invoke a capability, which imports would link and which
    /// scopes are granted.
    Explain {
        #[command(flatten)]
        who: PrincipalArgs,
        /// `name` or `name@version`.
        #[arg(long)]
        capability: String,
        /// The function to be invoked.
        #[arg(long)]
        function: Option<String>,
        /// An IP address to explain `net.connect` on, as the gate decides it before connecting
        /// (repeatable).
        #[arg(long = "address")]
        addresses: Vec<std::net::IpAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        match self {
            Command::Check { path } => check(path),
            Command::Explain {
                who,
                capability,
                function,
                addresses,
                json,
            } => {
                let principal = who.principal()?;
                let host = global.open(false)?;
                let resolved = host.resolve(&capability)?;
                let policy = host.authority.policy()?;
                let cap = authority::capability_ref(&resolved.entry);
                let requests = &resolved.entry.manifest.requests;
                let mut explanation = policy.explain_component(
                    &principal,
                    &cap,
                    requests,
                    resolved.prepared.imports.iter().map(String::as_str),
                    function.as_deref(),
                );
                explanation.addresses = addresses
                    .into_iter()
                    .map(|a| policy.explain_address(&principal, &cap, requests, a))
                    .collect();
                if json {
                    print_json(&serde_json::to_value(&explanation).map_err(internal)?);
                } else {
                    out(explanation.to_string().trim_end());
                }
                Ok(())
            }
        }
    }
}

/// `policy check`: validate, then list every policy with its id, effect and place.
fn check(path: PathBuf) -> Result<(), Failure> {
    let policy = authority::Source::Path(path).load()?;
    for p in policy.policies() {
        out(&format!(
            "{:<40} {:<7} {}:{}",
            p.id,
            format!("{:?}", p.effect).to_lowercase(),
            p.file,
            p.line
        ));
    }
    for warning in policy.warnings() {
        eprintln!("warning: {warning}");
    }
    out(&format!(
        "{} policies, digest {}",
        policy.policies().len(),
        policy.digest_hex()
    ));
    Ok(())
}
