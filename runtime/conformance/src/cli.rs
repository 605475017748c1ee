//! The command line of the suite, shared by `femtoclaw-host conformance` and the standalone
//! `femtoclaw-conformance` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use femtoclaw_spec::Suite;

use crate::{Format, Options, Target, check_cases};

/// Run the FemtoClaw compliance test suite against a runtime: one line per requirement of the
/// specification suite (pass, fail, not-applicable, planned) and a summary. Exit 0 when the
/// target conforms, 1 when it does not (or the suite cannot run), 2 for bad arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runtime binary to drive through its command line and the servers it starts.
    #[arg(long, conflicts_with = "url")]
    pub binary: Option<PathBuf>,
    /// A running server to drive through its HTTP API and MCP instead (command-line cases are
    /// then not applicable).
    #[arg(long, requires = "token")]
    pub url: Option<String>,
    /// The bearer token for `--url`: a principal the server lets invoke `hello`.
    #[arg(long, env = "FEMTOCLAW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How to print the report: text, json or junit.
    #[arg(long, default_value = "text")]
    pub format: Format,
    /// Run only the cases whose name contains this (repeatable: any of them).
    #[arg(long)]
    pub only: Vec<String>,
}

impl Args {
    /// Runs the suite; `default_binary` is the target when neither `--binary` nor `--url` is
    /// given.
    pub fn run(self, default_binary: Option<PathBuf>) -> ExitCode {
        let suite = match Suite::embedded() {
            Ok(suite) => suite,
            Err(errors) => {
                for e in errors {
                    eprintln!("error: the embedded specification suite is malformed: {e}");
                }
                return ExitCode::from(1);
            }
        };
        if let Err(problems) = check_cases(&suite, &crate::cases()) {
            for p in problems {
                eprintln!("error: the case table is unsound: {p}");
            }
            return ExitCode::from(1);
        }
        let target = match (self.url, self.token, self.binary.or(default_binary)) {
            (Some(url), Some(token), _) => Target::Server { url, token },
            (None, _, Some(binary)) => Target::Binary(binary),
            _ => {
                eprintln!("error: name the target: --binary PATH, or --url URL --token TOKEN");
                return ExitCode::from(2);
            }
        };
        let options = Options {
            target,
            only: self.only,
        };
        // A case that panics is reported as failed with its message; the default hook's
        // backtrace would only bury the report.
        std::panic::set_hook(Box::new(|_| {}));
        let report = crate::run(&suite, &options, |outcome| {
            let verdict = match &outcome.result {
                Ok(()) => "pass".to_owned(),
                Err(crate::Failure::Failed(why)) => format!("FAIL: {why}"),
                Err(crate::Failure::NotApplicable(why)) => format!("not applicable: {why}"),
            };
            eprintln!("{} ({:.1} s) {verdict}", outcome.case.name, outcome.seconds);
        });
        print!("{}", report.render(self.format));
        if report.conforms() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}
