//! `femtoclaw-host`: the execution authority for agents' tools.
//!
//! ```text
//! femtoclaw-host invoke hello greet --args '{"name":"Ada"}'
//! femtoclaw-host capability add tool.wasm --manifest capability.toml
//! femtoclaw-host capability list
//! femtoclaw-host capability inspect hello
//! printf %s "$TOKEN" | femtoclaw-host secret set api-token
//! ```

mod authority;
mod cli;
mod exit;
mod host;
mod kv;
mod mounts;
mod records;
mod replay;
mod secrets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEMTOCLAW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code as u8)
        }
    }
}
