//! `mcp`: the host as an MCP server over stdio (see the library's `mcp` module).

use std::sync::Arc;

use femtoclaw_host::{Code, Failure, tokens};

use super::Global;

/// Serve MCP over stdin and stdout: every capability function the principal may invoke is a
/// tool. Logs go to stderr; stdout carries the protocol alone.
#[derive(Debug, clap::Args)]
pub struct Mcp {
    /// The bearer token whose principal the session acts for (default: the local operator).
    #[arg(long, env = "FEMTOCLAW_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Mcp {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        let principal = match &self.token {
            Some(token) => tokens::Store::new(&global.data_dir)
                .authenticate(token.trim())
                .map_err(|refused| Failure::new(Code::Denied, format!("--token: {refused}")))?
                .principal()?,
            None => femtoclaw_policy::Principal::local(),
        };
        let host = Arc::new(global.open(true)?);
        let telemetry = femtoclaw_host::telemetry::Telemetry::install(&host.config.telemetry)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("femtoclaw-mcp")
            .build()
            .map_err(|e| Failure::new(Code::Other, format!("cannot start the MCP server: {e}")))?;
        let served = runtime.block_on(femtoclaw_host::mcp::serve_stdio(host, principal));
        // A pending read of stdin cannot be cancelled: do not wait for it.
        runtime.shutdown_background();
        telemetry.shutdown();
        served
    }
}
