//! `replay`: re-execute an exported ledger offline, or ask another policy what it would decide.

use std::path::PathBuf;

use femtoclaw_host::{Code, Failure, authority, replay};
use serde_json::json;

use super::{Global, out, print_json};

/// Verify an exported ledger, then re-execute its invocations offline.
#[derive(Debug, clap::Args)]
pub struct Replay {
    /// The exported ledger.
    export: PathBuf,
    /// A verifier key to pin (repeat for rotated keys).
    #[arg(long, required = true)]
    key: Vec<String>,
    /// A directory of components: by recorded sha256, or `<capability>.wasm` to replay the
    /// recording against another build of that capability.
    #[arg(long)]
    components: Option<PathBuf>,
    /// First invocation number.
    #[arg(long)]
    from: Option<u64>,
    /// Last invocation number.
    #[arg(long)]
    to: Option<u64>,
    /// What-if: instead of re-executing, ask this policy (a `.cedar` file or directory)
    /// every recorded decision and list those it would take the other way.
    #[arg(long = "what-if-policy", alias = "policy-what-if")]
    what_if: Option<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Replay {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        // Replay reads an export; the data directory's ledger is left alone.
        let host = global.open(false)?;
        let options = replay::Options {
            export: &self.export,
            keys: &self.key,
            components: self.components.as_deref(),
            from: self.from,
            to: self.to,
        };
        if let Some(path) = self.what_if {
            let policy = authority::Source::Path(path).load()?;
            let changed = replay::what_if(&host, &policy, &options)?;
            if self.json {
                print_json(&json!({ "policy_digest": policy.digest_hex(), "changed": changed }));
                return Ok(());
            }
            for c in &changed {
                out(&format!(
                    "invocation {} {} `{}`: {} ({})",
                    c.invocation,
                    c.action,
                    c.resource,
                    c.change,
                    if c.policy_ids.is_empty() {
                        "default deny".to_owned()
                    } else {
                        c.policy_ids.join(", ")
                    }
                ));
            }
            out(&format!("{} decisions would change", changed.len()));
            return Ok(());
        }
        let reports = replay::replay(&host, &options)?;
        if let Some(path) = self.junit {
            std::fs::write(&path, replay::junit(&reports)).map_err(|e| {
                Failure::new(Code::Other, format!("--junit `{}`: {e}", path.display()))
            })?;
        }
        replay::finish(&reports, self.json, out)
    }
}
