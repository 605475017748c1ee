//! `config show | check`: the effective configuration, and a file checked against the schema.

use std::path::PathBuf;

use femtoclaw_config::Overrides;
use femtoclaw_host::{Failure, settings};

use super::{Global, out};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the effective configuration, as a configuration file with the source of each value
    /// (default, file and line, environment variable, flag) as a comment.
    Show,
    /// Check a configuration file against the schema: unknown sections and keys and bad values
    /// are refused, naming the file, the key and the line (exit 2).
    Check {
        /// The file (default: the one `--config` names, else `<data dir>/femtoclaw.toml`).
        file: Option<PathBuf>,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        match self {
            Command::Show => {
                out(global.config(&Overrides::new())?.show().trim_end());
            }
            Command::Check { file } => {
                let file = file
                    .or_else(|| global.config.clone())
                    .unwrap_or_else(|| global.data_dir.join(femtoclaw_config::FILE_NAME));
                femtoclaw_config::check(&file).map_err(settings::invalid)?;
                out(&format!(
                    "ok: `{}` is a valid configuration",
                    file.display()
                ));
            }
        }
        Ok(())
    }
}
