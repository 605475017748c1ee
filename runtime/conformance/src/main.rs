//! `femtoclaw-conformance`: the compliance test suite on its own, to run against any runtime's
//! binary (`--binary`) or server (`--url`).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "femtoclaw-conformance", version, about)]
struct Cli {
    #[command(flatten)]
    args: femtoclaw_conformance::cli::Args,
}

fn main() -> std::process::ExitCode {
    Cli::parse().args.run(None)
}
