//! `femtoclaw:host/log`: structured logging from a capability. Messages are recorded by the gate
//! (they are host calls like any other) and returned with the outcome, scrubbed of the secrets
//! the invocation used (see [`crate::scrub`]).

use crate::gate::{Gate, Recorded, Registry};
use femtoclaw_ledger::Value;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "femtoclaw:host/capability",
    });
}

pub use bindings::femtoclaw::host::log::Level;

/// The interface's name, as components import it.
pub const INTERFACE: &str = "femtoclaw:host/log@0.1.0";

/// Longest message kept; a longer one is cut (and says so).
const MAX_MESSAGE: usize = 16 << 10;

impl Level {
    /// The level's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Recorded for Level {
    fn to_value(&self) -> Value {
        Value::Enum(self.name().to_owned())
    }
    fn from_value(value: &Value) -> Option<Self> {
        let Value::Enum(name) = value else {
            return None;
        };
        [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ]
        .into_iter()
        .find(|l| l.name() == name)
    }
}

pub(crate) fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::wrap(
        registry,
        INTERFACE,
        "log",
        |mut store, (level, message): (Level, String)| {
            // Recorded, and so returned, scrubbed of every secret the invocation used.
            let message = store.data().gate.secrets.text(&message);
            let len = message.len();
            Gate::pass(&mut store, INTERFACE, "log", &(level, message), |_, _| {
                if len > MAX_MESSAGE {
                    wasmtime::bail!(
                        "log message of {len} bytes exceeds the limit of {MAX_MESSAGE}"
                    );
                }
                Ok(())
            })
        },
    )
}
