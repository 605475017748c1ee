//! The FemtoClaw compliance test suite (specification 31).
//!
//! Black box: every case drives the target only through its public surfaces — the command line
//! of a binary, the HTTP API and MCP of a running server, the ledgers it exports — with a guest
//! component of the suite's own ([`GUEST`]), and checks what a conforming runtime must show. Each
//! case names the requirements of the specification suite it verifies; the [`Report`] gives one
//! line per requirement: pass, fail, not applicable (the target lacks the surface the case needs,
//! or no case covers it) or planned.
//!
//! ```text
//! femtoclaw-host conformance                        # the host itself
//! femtoclaw-host conformance --binary ./other-host  # another implementation's binary
//! femtoclaw-host conformance --url http://127.0.0.1:8420 --token "$TOKEN" --format junit
//! ```

mod cases;
pub mod cli;
mod crypto;
mod format;
mod report;
mod target;
mod unobservable;
pub mod world;

use femtoclaw_spec::Suite;

pub use report::{Format, Outcome, Report, Verdict};
pub use target::Target;
pub use unobservable::UNOBSERVABLE;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The suite's own guest component, installed on the target as capability `conformance`.
pub const GUEST: &[u8] = FEMTOCLAW_CONFORMANCE_GUEST;

/// The test guest the golden ledger of the sources (`tests/golden/`) was recorded with.
pub(crate) const MISBEHAVE: &[u8] = FEMTOCLAW_GUEST_MISBEHAVE;

/// The test guest whose Rust `std::net` calls (`tcp-connect`, `udp-bind`, `lookup`) import
/// `wasi:sockets`.
pub(crate) const NET: &[u8] = FEMTOCLAW_GUEST_NET;

/// The guest's manifest.
pub const GUEST_MANIFEST: &str = include_str!("../capability.toml");

/// A component that takes and returns every WIT value type (`tests/guests/types`), installed
/// by the value cases as capability `types`.
pub const TYPES_GUEST: &[u8] = FEMTOCLAW_GUEST_TYPES;

/// The suite's second guest: every helper of the Rust SDK, run on demand (`run(helper, arg)`);
/// the cases install it under manifests of their own.
pub const SDK_GUEST: &[u8] = FEMTOCLAW_CONFORMANCE_SDK_GUEST;

/// Every case of the suite, in the order they run.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// One black-box case: a name, the requirements it verifies, and what it does.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    /// Requirement identifiers of the specification suite.
    pub verifies: &'static [&'static str],
    pub run: fn(&Target) -> Result<(), Failure>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("verifies", &self.verifies)
            .finish()
    }
}

/// Why a case did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The target does not offer the surface the case needs (a server has no command line).
    NotApplicable(String),
    /// The target did something a conforming runtime does not.
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

/// Fails the case with a message unless `cond` holds.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::Failure::Failed(format!($($message)+)));
        }
    };
}

/// What to run the suite against, and which cases.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    /// Only the cases whose name contains one of these (all cases when empty).
    pub only: Vec<String>,
}

/// A case table's soundness ([`cases`] is checked before every run): every identifier a case
/// names is an implemented requirement of `suite`, every case verifies something, and no case
/// name is used twice. A broken table is the suite's fault, not the target's.
pub fn check_cases(suite: &Suite, cases: &[Case]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for case in cases {
        if !names.insert(case.name) {
            problems.push(format!("case {} is defined twice", case.name));
        }
        if case.verifies.is_empty() {
            problems.push(format!("case {} verifies nothing", case.name));
        }
        for id in case.verifies {
            match suite.requirement(id) {
                None => problems.push(format!(
                    "case {} names {id}, which is not a requirement of the suite",
                    case.name
                )),
                Some(r) if r.status == femtoclaw_spec::Status::Planned => problems.push(format!(
                    "case {} verifies {id}, which is planned",
                    case.name
                )),
                Some(_) => {}
            }
        }
    }
    if let Err(more) = check_unobservable(suite, cases, UNOBSERVABLE) {
        problems.extend(more);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A table of requirements no black-box case can observe ([`UNOBSERVABLE`]): each entry an
/// implemented requirement of `suite` that no case of `cases` verifies, given once, with a reason.
pub fn check_unobservable(
    suite: &Suite,
    cases: &[Case],
    table: &[(&str, &str)],
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (id, why) in table {
        if !seen.insert(id) {
            problems.push(format!("{id} is listed twice as not observable"));
        }
        if why.trim().is_empty() {
            problems.push(format!("{id} is listed as not observable without a reason"));
        }
        match suite.requirement(id) {
            None => problems.push(format!(
                "{id}, listed as not observable, is not a requirement of the suite"
            )),
            Some(r) if r.status == femtoclaw_spec::Status::Planned => {
                problems.push(format!("{id}, listed as not observable, is planned"));
            }
            Some(_) => {}
        }
        if let Some(case) = cases.iter().find(|c| c.verifies.contains(id)) {
            problems.push(format!(
                "{id} is listed as not observable, yet case {} verifies it",
                case.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The longest a case may take; one that takes longer fails and the run goes on.
pub const CASE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs one case on a thread of its own, so that a case that panics or never ends fails alone
/// instead of taking the whole run with it.
fn contained(case: Case, target: &Target) -> Result<(), Failure> {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = target.clone();
    let spawned = std::thread::Builder::new()
        .name(case.name.to_owned())
        .spawn(move || {
            let result = std::panic::catch_unwind(|| (case.run)(&target));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(Failure::Failed(format!("cannot start the case: {e}")));
    }
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Failure::Failed(format!(
                "the case itself failed: {message}"
            )))
        }
        Err(_) => Err(Failure::Failed(format!(
            "the case did not finish within {} s",
            CASE_LIMIT.as_secs()
        ))),
    }
}

/// Runs the cases against the target, in order, each on its own fresh state, and reports per
/// requirement of `suite`. `progress` hears each case's outcome as it ends.
pub fn run(suite: &Suite, options: &Options, mut progress: impl FnMut(&Outcome)) -> Report {
    let mut outcomes = Vec::new();
    for case in cases() {
        if !options.only.is_empty() && !options.only.iter().any(|o| case.name.contains(o.as_str()))
        {
            continue;
        }
        let started = std::time::Instant::now();
        let result = contained(case, &options.target);
        let outcome = Outcome {
            case,
            result,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress(&outcome);
        outcomes.push(outcome);
    }
    Report::new(suite, &options.target, outcomes)
}
