//! Host interfaces. Each module has the same shape: the WIT it implements and an
//! `add_to_linker` that declares every function through the [gate](crate::gate::Gate).

pub(crate) mod config;
pub(crate) mod files;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod linking;
pub(crate) mod log;
pub(crate) mod sockets;
pub(crate) mod wasi;

use wasmtime::component::Linker;

use crate::gate::{Linked, Registry};
use crate::state::State;

/// The linker of every host interface, and what it links: one registration line each.
pub(crate) fn link(engine: &wasmtime::Engine) -> wasmtime::Result<(Linker<State>, Vec<Linked>)> {
    let mut registry = Registry::new(engine);
    linking::add_to_linker(&mut registry)?;
    wasi::add_to_linker(&mut registry)?;
    files::add_to_linker(&mut registry)?;
    sockets::add_to_linker(&mut registry)?;
    log::add_to_linker(&mut registry)?;
    config::add_to_linker(&mut registry)?;
    kv::add_to_linker(&mut registry)?;
    http::add_to_linker(&mut registry)?;
    Ok(registry.finish())
}
