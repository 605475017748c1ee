//! `secret set | list | remove`: they touch only `<data dir>/secrets`.

use femtoclaw_host::admin::Request;
use femtoclaw_host::{Failure, secrets};

use super::{Global, out};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Store a secret; its value is read from stdin (one final line break is dropped) and never
    /// printed.
    Set {
        /// The secret's name, as capabilities and policies refer to it.
        name: String,
    },
    /// List the names of the stored secrets (never their values).
    List,
    /// Remove a secret.
    Remove {
        /// The secret's name.
        name: String,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        match self {
            Command::Set { name } => {
                let value = secrets::read_value(std::io::stdin().lock())?;
                global.operate(&Request::SecretSet {
                    name: name.clone(),
                    value,
                })?;
                out(&format!("secret `{name}` stored"));
            }
            Command::List => {
                let names = global.operate(&Request::SecretList)?;
                for name in names.as_array().into_iter().flatten() {
                    out(name.as_str().unwrap_or_default());
                }
            }
            Command::Remove { name } => {
                global.operate(&Request::SecretRemove { name: name.clone() })?;
                out(&format!("secret `{name}` removed"));
            }
        }
        Ok(())
    }
}
