//! `femtoclaw-host`: the execution authority for agents' tools. The command line is clap plus
//! one module per command group in `commands/`; everything they do is the `femtoclaw_host`
//! library.
//!
//! ```text
//! femtoclaw-host invoke hello greet --args '{"name":"Ada"}'
//! femtoclaw-host capability add tool.wasm --manifest capability.toml
//! femtoclaw-host capability list
//! femtoclaw-host capability inspect hello
//! printf %s "$TOKEN" | femtoclaw-host secret set api-token
//! ```

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use femtoclaw_host::Failure;

use commands::{
    Global, approval, capability, config, invoke, key, kv, log, mcp, policy, replay, secret, serve,
    token,
};

/// The execution authority for agents' tools: runs WebAssembly capabilities under a fuel budget
/// in a deterministic sandbox, and records every invocation in a signed ledger.
#[derive(Debug, Parser)]
#[command(name = "femtoclaw-host", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install, list and inspect capabilities.
    #[command(subcommand)]
    Capability(capability::Command),
    /// Check policies and explain decisions.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Read, verify, export and prove the ledger.
    #[command(subcommand)]
    Log(log::Command),
    /// Manage the ledger's signing key.
    #[command(subcommand)]
    Key(key::Command),
    /// Read the key-value store (a view of the ledger; capabilities write it).
    #[command(subcommand)]
    Kv(kv::Command),
    /// Store secrets capabilities may use (never see): values in, names out.
    #[command(subcommand)]
    Secret(secret::Command),
    /// Decide the calls a policy lets run only once a person approves them.
    #[command(subcommand)]
    Approval(approval::Command),
    /// Make, list and revoke the bearer tokens principals present to the server.
    #[command(subcommand)]
    Token(token::Command),
    /// Serve the authenticated HTTP/JSON API until SIGTERM or SIGINT (default
    /// `127.0.0.1:8420`); prints where it listens.
    Serve(serve::Serve),
    /// Serve MCP over stdio: every capability function the principal may invoke is a tool,
    /// each call authorized, sandboxed and recorded, its receipt in the result's `_meta`.
    Mcp(mcp::Mcp),
    /// Show the effective configuration and check configuration files.
    #[command(subcommand)]
    Config(config::Command),
    /// Verify an exported ledger, then re-execute its invocations offline, answering every
    /// host call from the ledger. Exit 0 identical, 8 integrity, 9 divergence, 10 cannot replay;
    /// an invocation interrupted when recorded (the host stopped, or its deadline passed) is
    /// reported as such and not re-executed.
    Replay(replay::Replay),
    /// Invoke one function of a capability and print its result as JSON.
    Invoke(invoke::Invoke),
    /// Run the compliance test suite against this binary (default), another runtime's binary
    /// or a running server: one line per requirement of the specification suite and a
    /// summary; exit 0 only when the target conforms.
    Conformance(femtoclaw_conformance::cli::Args),
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let global = &cli.global;
    match cli.command {
        Command::Capability(command) => command.run(global),
        Command::Policy(command) => command.run(global),
        Command::Log(command) => command.run(global),
        Command::Key(command) => command.run(global),
        Command::Kv(command) => command.run(global),
        Command::Secret(command) => command.run(global),
        Command::Config(command) => command.run(global),
        Command::Token(command) => command.run(global),
        Command::Approval(command) => command.run(global),
        Command::Serve(command) => command.run(global),
        Command::Mcp(command) => command.run(global),
        Command::Replay(command) => command.run(global),
        Command::Invoke(command) => command.run(global),
        // The suite drives a binary (this one unless told otherwise) as any client would, and
        // reports with exit codes of its own.
        Command::Conformance(args) => return Ok(args.run(std::env::current_exe().ok())),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The serving commands install their telemetry (logs included) once their configuration
    // is read; the others log alone.
    if !matches!(cli.command, Command::Serve(_) | Command::Mcp(_)) {
        femtoclaw_host::telemetry::install_logging();
    }
    match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code as u8)
        }
    }
}
