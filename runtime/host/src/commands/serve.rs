//! `serve`: the host as a daemon (see the library's `serve` module).

use femtoclaw_config::{Overrides, key};
use femtoclaw_host::{Code, Failure, Host, authority};

use super::{Global, out};

/// Serve the HTTP API until SIGTERM or SIGINT.
#[derive(Debug, clap::Args)]
pub struct Serve {
    /// The address to listen on (default: `server.listen`, `127.0.0.1:8420`; port 0 picks one).
    /// Given more than once, the last counts.
    #[arg(long, overrides_with = "listen")]
    listen: Option<String>,
}

impl Serve {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        let mut flags = Overrides::new();
        if let Some(listen) = &self.listen {
            flags.set(key::server::listen, "--listen", listen.clone());
        }
        let config = global.config(&flags)?.into_config();
        let telemetry = femtoclaw_host::telemetry::Telemetry::install(&config.telemetry)?;
        let listen = config.server.listen;
        let source = authority::Source::locate(global.policy.as_deref(), &global.data_dir);
        let host = Host::open(&global.data_dir, source, true, config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("femtoclaw-serve")
            .build()
            .map_err(|e| Failure::new(Code::Other, format!("cannot start the server: {e}")))?;
        let served = runtime.block_on(async move {
            let listeners = femtoclaw_host::serve::Listeners::bind(&host, listen).await?;
            let addr = listeners
                .api
                .local_addr()
                .map_err(|e| Failure::new(Code::Other, format!("cannot listen: {e}")))?;
            host.announce(&format!("femtoclaw-host serve on http://{addr}"))?;
            out(&format!("listening on http://{addr}"));
            femtoclaw_host::serve::serve(host, listeners).await
        });
        // Invocations still running past the grace are not waited for: the ledger records
        // them as interrupted when it is next opened.
        runtime.shutdown_background();
        telemetry.shutdown();
        served?;
        out("stopped");
        Ok(())
    }
}
