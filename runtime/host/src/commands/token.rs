//! `token create | list | revoke`: the bearer tokens principals present to the server.

use femtoclaw_host::admin::Request;
use femtoclaw_host::{Failure, tokens};

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
                let made = global.operate(&Request::TokenCreate {
                    name,
                    principal,
                    groups,
                    expires_in: ttl.map(|ttl| ttl.as_secs()),
                })?;
                out(made["token"].as_str().unwrap_or_default());
            }
            Command::List { json } => {
                let tokens = global.operate(&Request::TokenList)?;
                if json {
                    print_json(&tokens);
                    return Ok(());
                }
                for t in tokens.as_array().into_iter().flatten() {
                    let groups: Vec<&str> = t["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.as_str())
                        .collect();
                    out(&format!(
                        "{:<20} {:<24} groups={:<16} created={} expires={}",
                        t["name"].as_str().unwrap_or_default(),
                        t["principal"].as_str().unwrap_or_default(),
                        groups.join(","),
                        t["created"],
                        t["expires"]
                            .as_u64()
                            .map_or("never".to_owned(), |e| e.to_string())
                    ));
                }
            }
            Command::Revoke { name } => {
                global.operate(&Request::TokenRevoke { name: name.clone() })?;
                out(&format!("token `{name}` revoked"));
            }
        }
        Ok(())
    }
}
