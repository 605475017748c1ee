//! Replay: re-execute a recorded invocation and prove its result, host calls and fuel came
//! from the recorded component.
//!
//! Every gated host call is answered from the recording by the gate itself (see
//! [`Gate`](crate::gate::Gate)): nothing is performed, no clock or randomness is
//! read. The replayed run must make the same calls, in the same order, with the same
//! parameters and the same fuel left at each; then end the same way with the same result and
//! output. The first difference is a [`Divergence`], classified.

use femtoclaw_ledger::Value;
use serde::Serialize;

use crate::Outcome;

/// One host call as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedCall {
    /// Interface, with package and version.
    pub interface: String,
    /// Function.
    pub function: String,
    /// Parameters (a tuple).
    pub params: Value,
    /// Result (a tuple).
    pub result: Value,
    /// Fuel left at the call.
    pub fuel_remaining: u64,
}

/// How a recorded invocation ended, and the calls it made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Host calls, in order.
    pub calls: Vec<RecordedCall>,
    /// `(kind, message)` of the trap, if it trapped.
    pub trap: Option<(String, String)>,
    /// The result, if it returned one.
    pub result: Option<Value>,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// Where and how a replay left the recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "class", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Divergence {
    /// A different import was called at `seq`.
    #[error("ORDER at host call {seq}: expected `{expected}`, the component called `{actual}`")]
    Order {
        /// Position in the host-call sequence.
        seq: usize,
        /// Recorded call.
        expected: String,
        /// Replayed call.
        actual: String,
    },
    /// The same import with other parameters.
    #[error("ARGS at host call {seq} `{call}`: expected {expected}, got {actual}")]
    Args {
        /// Position.
        seq: usize,
        /// The call.
        call: String,
        /// Recorded parameters.
        expected: String,
        /// Replayed parameters.
        actual: String,
    },
    /// The same call with a different amount of fuel left.
    #[error("FUEL at host call {seq} `{call}`: expected {expected} fuel left, got {actual}")]
    Fuel {
        /// Position.
        seq: usize,
        /// The call.
        call: String,
        /// Recorded fuel left.
        expected: u64,
        /// Replayed fuel left.
        actual: u64,
    },
    /// A call beyond the recorded ones.
    #[error("EXTRA host call {seq} `{call}`: the recording has no more calls")]
    Extra {
        /// Position.
        seq: usize,
        /// The call.
        call: String,
    },
    /// Recorded calls the replay never made.
    #[error("MISSING host call {seq} `{call}`: the replay ended without making it")]
    Missing {
        /// Position of the first call not made.
        seq: usize,
        /// The call.
        call: String,
    },
    /// A recorded answer that does not fit the replayed import's type.
    #[error(
        "ORDER at host call {seq} `{call}`: the recorded answer {recorded} does not fit its type"
    )]
    Unanswerable {
        /// Position.
        seq: usize,
        /// The call.
        call: String,
        /// The recorded result.
        recorded: String,
    },
    /// It trapped where the recording did not, or the other way round, or differently.
    #[error("TRAP: expected {expected}, got {actual}")]
    Trap {
        /// Recorded ending.
        expected: String,
        /// Replayed ending.
        actual: String,
    },
    /// A different result, fuel total or output.
    #[error("RESULT: {what} differs: expected {expected}, got {actual}")]
    Result {
        /// What differs: `result`, `fuel consumed`, `stdout` or `stderr`.
        what: &'static str,
        /// Recorded.
        expected: String,
        /// Replayed.
        actual: String,
    },
}

impl Divergence {
    /// The class: ORDER, ARGS, FUEL, EXTRA, MISSING, TRAP or RESULT.
    pub fn class(&self) -> &'static str {
        match self {
            Divergence::Order { .. } | Divergence::Unanswerable { .. } => "ORDER",
            Divergence::Args { .. } => "ARGS",
            Divergence::Fuel { .. } => "FUEL",
            Divergence::Extra { .. } => "EXTRA",
            Divergence::Missing { .. } => "MISSING",
            Divergence::Trap { .. } => "TRAP",
            Divergence::Result { .. } => "RESULT",
        }
    }
}

/// The recorded calls a replay answers from (held by the gate during a replay).
#[derive(Debug)]
pub(crate) struct Replay {
    calls: Vec<RecordedCall>,
}

impl Replay {
    pub(crate) fn new(calls: Vec<RecordedCall>) -> Self {
        Self { calls }
    }

    /// The recorded call at `seq`, if the replayed one matches it.
    pub(crate) fn expect(
        &self,
        seq: usize,
        interface: &str,
        function: &str,
        params: &Value,
        fuel_remaining: u64,
    ) -> Result<&RecordedCall, Divergence> {
        let call = || format!("{interface}#{function}");
        let Some(expected) = self.calls.get(seq) else {
            return Err(Divergence::Extra { seq, call: call() });
        };
        if expected.interface != interface || expected.function != function {
            return Err(Divergence::Order {
                seq,
                expected: format!("{}#{}", expected.interface, expected.function),
                actual: call(),
            });
        }
        if &expected.params != params {
            return Err(Divergence::Args {
                seq,
                call: call(),
                expected: format!("{:?}", expected.params),
                actual: format!("{params:?}"),
            });
        }
        if expected.fuel_remaining != fuel_remaining {
            return Err(Divergence::Fuel {
                seq,
                call: call(),
                expected: expected.fuel_remaining,
                actual: fuel_remaining,
            });
        }
        Ok(expected)
    }
}

impl Recorded {
    /// What the ledger holds of `outcome`, as replay reads it: a recording made in memory.
    pub fn of(outcome: &Outcome) -> Self {
        Self {
            calls: outcome
                .host_calls
                .iter()
                .map(|c| RecordedCall {
                    interface: c.interface.to_owned(),
                    function: c.function.to_owned(),
                    params: c.params.clone(),
                    result: c.result.clone(),
                    fuel_remaining: c.fuel_remaining,
                })
                .collect(),
            trap: outcome
                .result
                .as_ref()
                .err()
                .map(|f| (f.kind().to_owned(), f.to_string())),
            result: outcome.result_value.clone(),
            fuel_consumed: outcome.fuel_consumed,
            stdout: outcome.stdout.clone(),
            stderr: outcome.stderr.clone(),
        }
    }

    /// Whether the recording ended by an interruption from outside the component: the host
    /// stopped during it, its wall-clock deadline passed, or its caller withdrew it. Such an ending depends on when,
    /// not on what the component computes, so it is reported and never re-executed.
    pub fn interrupted(&self) -> bool {
        self.trap.as_ref().is_some_and(|(kind, _)| {
            [
                crate::record::INTERRUPTED,
                crate::record::DEADLINE,
                crate::record::CANCELLED,
            ]
            .contains(&kind.as_str())
        })
    }

    /// The first difference between this recording and a replayed run that made every call
    /// it was asked for (calls themselves were checked as they happened).
    pub fn compare(&self, outcome: &Outcome) -> Option<Divergence> {
        if let Some(missing) = self.calls.get(outcome.host_calls.len()) {
            return Some(Divergence::Missing {
                seq: outcome.host_calls.len(),
                call: format!("{}#{}", missing.interface, missing.function),
            });
        }
        let ending = |trap: Option<(&str, &str)>| match trap {
            Some((kind, message)) => format!("{kind} ({message})"),
            None => "a return".to_owned(),
        };
        let replayed = outcome.result.as_ref().err();
        let expected_trap = self.trap.as_ref().map(|(k, m)| (k.as_str(), m.as_str()));
        let replayed_msg = replayed.map(ToString::to_string);
        let actual_trap = replayed.map(|f| f.kind()).zip(replayed_msg.as_deref());
        if expected_trap != actual_trap {
            return Some(Divergence::Trap {
                expected: ending(expected_trap),
                actual: ending(actual_trap),
            });
        }
        let differs = |what, expected: String, actual: String| {
            (expected != actual).then_some(Divergence::Result {
                what,
                expected,
                actual,
            })
        };
        differs(
            "result",
            format!("{:?}", self.result),
            format!("{:?}", outcome.result_value),
        )
        .or_else(|| {
            differs(
                "fuel consumed",
                self.fuel_consumed.to_string(),
                outcome.fuel_consumed.to_string(),
            )
        })
        // Output is compared as bytes (two different invalid UTF-8 sequences are different
        // output), and shown escaped.
        .or_else(|| {
            (self.stdout != outcome.stdout).then(|| Divergence::Result {
                what: "stdout",
                expected: self.stdout.escape_ascii().to_string(),
                actual: outcome.stdout.escape_ascii().to_string(),
            })
        })
        .or_else(|| {
            (self.stderr != outcome.stderr).then(|| Divergence::Result {
                what: "stderr",
                expected: self.stderr.escape_ascii().to_string(),
                actual: outcome.stderr.escape_ascii().to_string(),
            })
        })
    }
}
