//! Host interfaces. Each module has the same shape: the WIT it implements and an
//! `add_to_linker` that declares every function through the [gate](crate::gate::Gate).

pub(crate) mod config;
pub(crate) mod files;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod log;
pub(crate) mod wasi;
