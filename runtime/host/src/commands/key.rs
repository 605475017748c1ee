//! `key generate | show`: the ledger's signing key.

use femtoclaw_host::Failure;
use femtoclaw_host::admin::Request;
use femtoclaw_host::records::Records;

use super::{Global, out};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate a signing key: the first one on a fresh data directory, else a rotation
    /// (recorded in the ledger, signed by the old key).
    Generate {
        /// The key name (the note signer name).
        #[arg(long, default_value = femtoclaw_ledger::DEFAULT_ORIGIN)]
        name: String,
    },
    /// Print the verifier key: `<name>+<key id>+<base64 public key>`.
    Show {
        /// Every verifier key of the ledger's history, oldest first, one per line (ready to
        /// pass as repeated `--key` to `log verify` and `replay`).
        #[arg(long)]
        all: bool,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        match self {
            Command::Generate { name } => {
                // On a fresh data directory this makes the first key, not a rotation of one the
                // host would make on opening (no server holds a directory without a ledger).
                if Records::first_key(&global.data_dir, &name)? {
                    out(&global.open(true)?.records()?.verifier().to_string());
                    return Ok(());
                }
                let rotated = global.operate(&Request::KeyGenerate { name })?;
                out(rotated["verifier"].as_str().unwrap_or_default());
            }
            Command::Show { all } => {
                // On a fresh data directory the first key is made, and recorded as any opening
                // of the ledger would; else it is read without the ledger, beside a server.
                if Records::first_key(&global.data_dir, femtoclaw_ledger::DEFAULT_ORIGIN)? {
                    global.open(true)?;
                }
                for key in Records::verifiers(&global.data_dir, all)? {
                    out(&key);
                }
            }
        }
        Ok(())
    }
}
