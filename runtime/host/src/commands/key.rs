//! `key generate | show`: the ledger's signing key.

use femtoclaw_host::Failure;
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
                // host would make on opening.
                let first = Records::first_key(&global.data_dir, &name)?;
                let mut host = global.open(true)?;
                let verifier = if first {
                    host.records()?.verifier()
                } else {
                    host.records_mut()?.rotate(&name)?
                };
                out(&verifier.to_string());
            }
            Command::Show { all: false } => {
                out(&global.open(true)?.records()?.verifier().to_string());
            }
            Command::Show { all: true } => {
                for key in global.open(true)?.records()?.key_history()? {
                    out(&key);
                }
            }
        }
        Ok(())
    }
}
