//! Host interfaces. Each has the same shape, in its own module: the WIT it implements, an
//! `add_to_linker` that declares every function through the [gate](crate::gate::Gate), and,
//! for an interface with per-invocation input, a [`HostInterface`] that owns its part of the
//! [`Context`](crate::Context) and of the store's state. Adding an interface touches its own
//! module and one line of [`host_interfaces!`] below.

pub(crate) mod config;
pub(crate) mod files;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod linking;
pub(crate) mod log;
pub(crate) mod sockets;
pub(crate) mod wasi;

use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtxBuilder;

use crate::gate::{Linked, Registry};
use crate::state::State;

/// An interface with per-invocation input from the host (config values, the key-value store,
/// egress, preopened directories) and state of its own in the store.
pub(crate) trait HostInterface {
    /// What the host supplies for one invocation.
    type Context;
    /// What one invocation holds.
    type State;

    /// Hands the WASI context what the interface needs of it (preopened directories, say).
    fn configure(_context: &Self::Context, _wasi: &mut WasiCtxBuilder) {}

    /// The state of one invocation.
    fn state(context: Self::Context) -> Self::State;

    /// Declares every function of the interface through the gate.
    fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()>;
}

/// The interfaces the host links, once each: those without per-invocation input by module
/// (`module::add_to_linker`), then those with it as `field: Interface => Context` (a
/// [`HostInterface`] and its context type), which gives [`HostContext`] and [`HostState`]
/// their fields.
macro_rules! host_interfaces {
    (
        plain: [$($plain:ident),* $(,)?],
        with_context: {
            $($(#[doc = $doc:literal])* $field:ident: $iface:ty => $context:ty),* $(,)?
        }
    ) => {
        /// What the host supplies the interfaces of one invocation, one field per interface.
        #[derive(Debug, Clone, Default)]
        pub struct HostContext {
            $($(#[doc = $doc])* pub $field: $context,)*
        }

        /// What the interfaces of one invocation hold.
        pub(crate) struct HostState {
            $(pub(crate) $field: <$iface as HostInterface>::State,)*
        }

        impl HostState {
            /// The state of one invocation, configuring `wasi` on the way.
            pub(crate) fn new(context: HostContext, wasi: &mut WasiCtxBuilder) -> Self {
                $(<$iface as HostInterface>::configure(&context.$field, wasi);)*
                Self {
                    $($field: <$iface as HostInterface>::state(context.$field),)*
                }
            }
        }

        /// The linker of every host interface, and what it links.
        pub(crate) fn link(
            engine: &wasmtime::Engine,
        ) -> wasmtime::Result<(Linker<State>, Vec<Linked>)> {
            let mut registry = Registry::new(engine);
            $($plain::add_to_linker(&mut registry)?;)*
            $(<$iface as HostInterface>::add_to_linker(&mut registry)?;)*
            Ok(registry.finish())
        }
    };
}

host_interfaces! {
    plain: [linking, wasi, sockets, log],
    with_context: {
        /// The capability's `wasi:config/store` values.
        config: config::ConfigStore => config::Config,
        /// What its HTTP requests may use: the secret store and the host's caps.
        http: http::Http => http::Egress,
        /// The key-value store `wasi:keyvalue` reads (writes wait for the host to apply them);
        /// `None` answers every `open` with an error.
        kv: kv::KeyValue => Option<std::sync::Arc<kv::store::KvStore>>,
        /// The directories the capability sees through `wasi:filesystem` (granted paths only).
        preopens: files::Filesystem => Vec<files::Preopen>,
    }
}
