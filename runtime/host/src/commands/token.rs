//! `token create | list | revoke`: the bearer tokens principals present to the server.

use femtoclaw_host::{Failure, tokens};
use serde_json::json;

use super::{Global, out, print_json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a token for a principal and print it, once: only its SHA-256 is kept.
    Create {
        /// The principal the token stands for: `agent:ID` or `user:ID`.
        #[arg(long)]
        principal: String,
        /// A group the principal is in (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The token's name, to list and revoke it by (default: the principal's id).
        #[arg(long)]
        name: Option<String>,
        /// How long it is accepted: a number and a unit, s, m, h or d (`30d`); default: until
        /// revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List the tokens: names, principals, groups, creation and expiry, never the token.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: the next request presenting it is refused.
    Revoke {
        /// The token's name.
        name: String,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        let store = tokens::Store::new(&global.data_dir);
        match self {
            Command::Create {
                principal,
                groups,
                name,
                expires,
            } => {
                let ttl = expires.as_deref().map(tokens::parse_ttl).transpose()?;
                let name = name.unwrap_or_else(|| {
                    principal
                        .split_once(':')
                        .map_or(principal.as_str(), |(_, id)| id)
                        .to_owned()
                });
                let (_, token) = store.create(&name, &principal, &groups, ttl)?;
                out(&token);
            }
            Command::List { json } => {
                let tokens = store.list()?;
                if json {
                    print_json(&json!(
                        tokens
                            .iter()
                            .map(|t| json!({
                                "name": t.name,
                                "principal": t.principal,
                                "groups": t.groups,
                                "created": t.created,
                                "expires": t.expires,
                            }))
                            .collect::<Vec<_>>()
                    ));
                    return Ok(());
                }
                for t in tokens {
                    out(&format!(
                        "{:<20} {:<24} groups={:<16} created={} expires={}",
                        t.name,
                        t.principal,
                        t.groups.join(","),
                        t.created,
                        t.expires.map_or("never".to_owned(), |e| e.to_string())
                    ));
                }
            }
            Command::Revoke { name } => {
                store.revoke(&name)?;
                out(&format!("token `{name}` revoked"));
            }
        }
        Ok(())
    }
}
