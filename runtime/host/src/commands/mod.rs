//! The commands, one module per group, each its arguments (clap) and what it runs on the host
//! library; and what they share: the global options, the principal options, printing.

pub mod approval;
pub mod capability;
pub mod config;
pub mod invoke;
pub mod key;
pub mod kv;
pub mod log;
pub mod mcp;
pub mod policy;
pub mod replay;
pub mod secret;
pub mod serve;
pub mod token;

use std::path::PathBuf;

use femtoclaw_config::{Effective, Overrides};
use femtoclaw_host::admin::{self, Request};
use femtoclaw_host::{Code, Failure, Host, authority, settings};
use serde_json::Value as Json;

/// The options every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Where capabilities, the compile cache, the ledger, keys and secrets live.
    #[arg(
        long,
        global = true,
        env = "FEMTOCLAW_DATA_DIR",
        default_value = "./femtoclaw-data"
    )]
    pub data_dir: PathBuf,

    /// The policy: a `.cedar` file or a directory of them (default: `<data dir>/policy` if it
    /// exists, else the embedded default policy). Re-read when it changes.
    #[arg(long, global = true, env = "FEMTOCLAW_POLICY")]
    pub policy: Option<PathBuf>,

    /// The configuration file (default: `<data dir>/femtoclaw.toml` if it exists). Every
    /// setting may also be set as `FEMTOCLAW_<SECTION>_<KEY>`; see `config show`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

impl Global {
    /// The effective configuration, with `flags` over the environment, the file and the
    /// defaults.
    pub fn config(&self, flags: &Overrides) -> Result<Effective, Failure> {
        settings::load(&self.data_dir, self.config.as_deref(), flags)
    }

    /// Opens the host on the data directory; `ledger` opens (or creates) its ledger too.
    pub fn open(&self, ledger: bool) -> Result<Host, Failure> {
        let config = self.config(&Overrides::new())?.into_config();
        let source = authority::Source::locate(self.policy.as_deref(), &self.data_dir);
        Host::open(&self.data_dir, source, ledger, config)
    }

    /// Performs one of the operator's writing commands: through the server that holds the
    /// data directory, over its admin channel, or here on a host opened for it when none
    /// does. The answer is the same either way.
    pub fn operate(&self, request: &Request) -> Result<Json, Failure> {
        match admin::send(&self.data_dir, request)? {
            Some(answer) => Ok(answer),
            None => admin::perform(&self.open(true)?, request.clone()),
        }
    }
}

/// Who is asking.
#[derive(Debug, clap::Args)]
pub struct PrincipalArgs {
    /// The principal: `user:ID`, `agent:ID`, or a bare ID (a user).
    #[arg(long, default_value = "local")]
    pub principal: String,
    /// A group the principal belongs to (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
}

impl PrincipalArgs {
    /// The principal as the policy names it.
    pub fn principal(&self) -> Result<femtoclaw_policy::Principal, Failure> {
        authority::principal(&self.principal, &self.groups)
    }
}

/// Prints pretty JSON on stdout.
pub fn print_json(value: &Json) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out(&text),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Prints one line on stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn out(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints bytes on stdout as they are (a signed note, a proof: byte-exact).
pub fn out_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(bytes);
}

/// A failure that is nobody's fault but the host's.
pub fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Other, e)
}
