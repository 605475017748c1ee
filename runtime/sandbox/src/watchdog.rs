//! The wall-clock watchdog: every invocation has a deadline.
//!
//! Fuel bounds what a guest computes, not how long it takes: a host call may block. Guest code
//! is stopped with wasmtime's epoch interruption: one ticker thread per engine advances the
//! epoch every [`TICK`], and at each tick a running store checks its deadline. A blocking host
//! call gets the time left as its own bound (HTTP, name lookups), and the gate checks the
//! deadline again when a call returns. Running past it ends the invocation with
//! [`DeadlineExceeded`], an interruption from outside the component that replay reports and
//! does not re-execute. Epoch checks consume no fuel: fuel counts are the same with them.
//!
//! The same tick sees a [`Cancel`]: a caller that withdraws its invocation (an MCP client's
//! `notifications/cancelled`) ends it with [`Cancelled`], recorded like a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, UpdateDeadline};

/// How often the epoch advances, and so how late past its deadline guest code can be stopped.
pub const TICK: Duration = Duration::from_millis(10);

/// The deadline of an invocation when nobody asks for another: the operator's default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// An invocation ran past its wall-clock deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline exceeded: the invocation ran past its deadline of {} ms", .deadline.as_millis())]
pub struct DeadlineExceeded {
    /// The deadline it had.
    pub deadline: Duration,
}

/// A caller's withdrawal of an invocation: set once from any thread, seen by the running
/// store at its next tick. The default is never set.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Withdraws the invocation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// `Err` once withdrawn.
    pub(crate) fn check(&self) -> Result<(), Cancelled> {
        if self.0.load(Ordering::Relaxed) {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The caller withdrew an invocation while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled: the caller withdrew the invocation while it ran")]
pub struct Cancelled;

/// When one invocation must be done; `None` in replay, which fuel alone bounds (a replay is
/// compared with its recording, and a wall-clock stop would read as a divergence).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<(Instant, Duration)>);

impl Deadline {
    /// A deadline `of` from now.
    pub(crate) fn from_now(of: Duration) -> Self {
        Self(Instant::now().checked_add(of).map(|at| (at, of)))
    }

    /// No deadline.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// The time left (`Duration::MAX` without a deadline).
    pub(crate) fn left(&self) -> Duration {
        self.0.map_or(Duration::MAX, |(at, _)| {
            at.saturating_duration_since(Instant::now())
        })
    }

    /// `Err` once the deadline has passed.
    pub(crate) fn check(&self) -> Result<(), DeadlineExceeded> {
        match self.0 {
            Some((at, deadline)) if Instant::now() >= at => Err(DeadlineExceeded { deadline }),
            _ => Ok(()),
        }
    }

    /// What a store does at each epoch tick: stop past the deadline, else run on to the next.
    pub(crate) fn on_tick(&self) -> wasmtime::Result<UpdateDeadline> {
        self.check()?;
        Ok(UpdateDeadline::Continue(1))
    }
}

/// Starts the thread that advances `engine`'s epoch every [`TICK`]; it ends once the engine
/// is dropped.
pub(crate) fn start_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("femtoclaw-epoch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map(drop)
}
