//! `raw-run`: the raw baseline of B3 (cold start), a whole process that does only what wasmtime
//! needs to run a precompiled component: build an engine with the host's code-deciding settings
//! ([`femtoclaw_benches::raw_config`], fuel on), deserialize the `.cwasm`, link wasmtime-wasi,
//! instantiate, call one `func(string) -> string` export and print its result.
//!
//! ```text
//! raw-run <component.cwasm> <function> <argument>
//! ```

use std::process::ExitCode;

use femtoclaw_benches::{RawWasi, raw_config};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

/// The fuel of the call, as `hello`'s manifest gives it.
const FUEL: u64 = 10_000_000;

fn run(cwasm: &str, function: &str, argument: &str) -> wasmtime::Result<String> {
    let engine = Engine::new(&raw_config(true, true))?;
    // SAFETY: the file is a `Component::serialize` output of a compatible engine (the host's
    // compile cache); wasmtime checks its header and compatibility hash before using it.
    let component = unsafe { Component::deserialize_file(&engine, cwasm)? };
    let mut linker: Linker<RawWasi> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    linker.define_unknown_imports_as_traps(&component)?;
    let mut store = Store::new(&engine, RawWasi::default());
    // The host's code checks the epoch (its wall-clock watchdog); this one never stops it.
    store.set_epoch_deadline(u64::MAX);
    store.set_fuel(FUEL)?;
    let instance = linker.instantiate(&mut store, &component)?;
    let func = instance.get_typed_func::<(&str,), (String,)>(&mut store, function)?;
    Ok(func.call(&mut store, (argument,))?.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cwasm, function, argument] = args.as_slice() else {
        eprintln!("usage: raw-run <component.cwasm> <function> <argument>");
        return ExitCode::from(2);
    };
    match run(cwasm, function, argument) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
