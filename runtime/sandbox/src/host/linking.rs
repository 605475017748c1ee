//! What the host links, fail closed: every function a guest can import is defined through the
//! gate or is one of the reviewed deterministic functions below; anything else is absent, and a
//! component importing it is refused before any guest code runs.
//!
//! The table is the one place an ungated function can come from. Each entry is answered by
//! wasmtime-wasi from the invocation's virtualized context and needs no record, for the reason
//! given. A wasmtime upgrade that adds a function to one of these interfaces does not link it
//! unnoticed: the structural test (`tests/tests/linking.rs`) probes every function of the
//! `host` world in `wit/` and fails on one that links but is neither gated nor listed here.

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliCtxView, WasiCliView as _};
use wasmtime_wasi::p2::bindings::{cli, sync::io};

use crate::gate::Registry;
use crate::state::State;

const STREAMS: &str = "wasi:io/streams@0.2.12";
const IN_MEMORY: &str = "streams are in memory: the captured stdout and stderr (recorded with the end), an empty stdin, file reads answered from recorded bytes";
const ALWAYS_READY: &str =
    "pollables come only from in-memory streams, which are always ready (timers are not linked)";
const NO_TERMINAL: &str = "the invocation has no terminal: always none";

/// The reviewed deterministic functions: `(interface, function, why it needs no record)`.
pub const DETERMINISTIC: &[(&str, &str, &str)] = &[
    (
        "wasi:io/error@0.2.12",
        "[method]error.to-debug-string",
        "describes an error value the guest already holds",
    ),
    (
        "wasi:io/poll@0.2.12",
        "[method]pollable.ready",
        ALWAYS_READY,
    ),
    (
        "wasi:io/poll@0.2.12",
        "[method]pollable.block",
        ALWAYS_READY,
    ),
    ("wasi:io/poll@0.2.12", "poll", ALWAYS_READY),
    (STREAMS, "[method]input-stream.read", IN_MEMORY),
    (STREAMS, "[method]input-stream.blocking-read", IN_MEMORY),
    (STREAMS, "[method]input-stream.skip", IN_MEMORY),
    (STREAMS, "[method]input-stream.blocking-skip", IN_MEMORY),
    (STREAMS, "[method]input-stream.subscribe", IN_MEMORY),
    (STREAMS, "[method]output-stream.check-write", IN_MEMORY),
    (STREAMS, "[method]output-stream.write", IN_MEMORY),
    (
        STREAMS,
        "[method]output-stream.blocking-write-and-flush",
        IN_MEMORY,
    ),
    (STREAMS, "[method]output-stream.flush", IN_MEMORY),
    (STREAMS, "[method]output-stream.blocking-flush", IN_MEMORY),
    (STREAMS, "[method]output-stream.subscribe", IN_MEMORY),
    (STREAMS, "[method]output-stream.write-zeroes", IN_MEMORY),
    (
        STREAMS,
        "[method]output-stream.blocking-write-zeroes-and-flush",
        IN_MEMORY,
    ),
    (STREAMS, "[method]output-stream.splice", IN_MEMORY),
    (STREAMS, "[method]output-stream.blocking-splice", IN_MEMORY),
    (
        "wasi:cli/environment@0.2.12",
        "get-environment",
        "the context has no environment: always empty",
    ),
    (
        "wasi:cli/environment@0.2.12",
        "get-arguments",
        "the context has no arguments: always empty",
    ),
    (
        "wasi:cli/environment@0.2.12",
        "initial-cwd",
        "the context has no working directory: always none",
    ),
    (
        "wasi:cli/exit@0.2.12",
        "exit",
        "ends the invocation with a trap, which is recorded",
    ),
    ("wasi:cli/stdin@0.2.12", "get-stdin", "an empty stream"),
    (
        "wasi:cli/stdout@0.2.12",
        "get-stdout",
        "the captured output, recorded with the end",
    ),
    (
        "wasi:cli/stderr@0.2.12",
        "get-stderr",
        "the captured output, recorded with the end",
    ),
    (
        "wasi:cli/terminal-stdin@0.2.12",
        "get-terminal-stdin",
        NO_TERMINAL,
    ),
    (
        "wasi:cli/terminal-stdout@0.2.12",
        "get-terminal-stdout",
        NO_TERMINAL,
    ),
    (
        "wasi:cli/terminal-stderr@0.2.12",
        "get-terminal-stderr",
        NO_TERMINAL,
    ),
    (
        "wasi:filesystem/types@0.2.12",
        "filesystem-error-code",
        "inspects a stream error the guest already holds",
    ),
];

const TERMINAL_INPUT: &str = "wasi:cli/terminal-input@0.2.12";
const TERMINAL_OUTPUT: &str = "wasi:cli/terminal-output@0.2.12";

/// Interfaces that define resource types and no function (linked for their types).
pub(crate) const TYPES_ONLY: &[&str] = &[TERMINAL_INPUT, TERMINAL_OUTPUT];

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(state: &mut State) -> &mut ResourceTable {
    &mut state.table
}

fn cli_view(state: &mut State) -> WasiCliCtxView<'_> {
    state.cli()
}

/// Links the deterministic interfaces wasmtime-wasi answers whole.
pub(crate) fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    registry.deterministic("wasi:io/error@0.2.12", |l| {
        io::error::add_to_linker::<State, Io>(l, table)
    })?;
    registry.deterministic("wasi:io/poll@0.2.12", |l| {
        io::poll::add_to_linker::<State, Io>(l, table)
    })?;
    registry.deterministic(STREAMS, |l| {
        io::streams::add_to_linker::<State, Io>(l, table)
    })?;
    registry.deterministic("wasi:cli/environment@0.2.12", |l| {
        cli::environment::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/exit@0.2.12", |l| {
        cli::exit::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/stdin@0.2.12", |l| {
        cli::stdin::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/stdout@0.2.12", |l| {
        cli::stdout::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/stderr@0.2.12", |l| {
        cli::stderr::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/terminal-stdin@0.2.12", |l| {
        cli::terminal_stdin::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/terminal-stdout@0.2.12", |l| {
        cli::terminal_stdout::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic("wasi:cli/terminal-stderr@0.2.12", |l| {
        cli::terminal_stderr::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic(TERMINAL_INPUT, |l| {
        cli::terminal_input::add_to_linker::<State, WasiCli>(l, cli_view)
    })?;
    registry.deterministic(TERMINAL_OUTPUT, |l| {
        cli::terminal_output::add_to_linker::<State, WasiCli>(l, cli_view)
    })
}
