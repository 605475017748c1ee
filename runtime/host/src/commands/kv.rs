//! `kv list`: the key-value store, a view of the ledger.

use base64::Engine as _;
use femtoclaw_host::{Failure, Host, kv};
use serde_json::json;

use super::{Global, out};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List stored pairs, by namespace and key. Values print as text when they are UTF-8.
    List {
        /// Only this namespace.
        namespace: Option<String>,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Print JSON: one object per pair, values base64.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        match self {
            Command::List {
                namespace,
                prefix,
                json,
            } => list(&global.open(true)?, namespace.as_deref(), &prefix, json),
        }
    }
}

/// `kv list`: the stored pairs, filtered.
fn list(host: &Host, namespace: Option<&str>, prefix: &str, json: bool) -> Result<(), Failure> {
    let pairs = kv::pairs(&*host.kv()?)?;
    let selected = pairs
        .iter()
        .filter(|p| namespace.is_none_or(|n| p.namespace == n) && p.key.starts_with(prefix));
    for pair in selected {
        if json {
            out(&json!({
                "namespace": pair.namespace,
                "key": pair.key,
                "value": base64::engine::general_purpose::STANDARD.encode(&pair.value),
            })
            .to_string());
        } else {
            let value = std::str::from_utf8(&pair.value).map_or_else(
                |_| format!("<{} bytes>", pair.value.len()),
                |text| format!("{text:?}"),
            );
            // Guest-written names are shown escaped: no control character reaches the terminal.
            out(&format!(
                "{}/{} = {value}",
                pair.namespace.escape_debug(),
                pair.key.escape_debug()
            ));
        }
    }
    Ok(())
}
