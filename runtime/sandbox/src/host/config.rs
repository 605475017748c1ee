//! `wasi:config/store`: per-capability configuration values from the operator.
//!
//! Every key is a scope (`config.read` on `ConfigKey`): a key the policy (and the manifest) does
//! not grant reads as `upstream("denied: …")`, and `get-all` returns only the granted keys.

use std::collections::BTreeMap;

use femtoclaw_policy::{CallAction, Scope};

use super::HostInterface;
use crate::gate::{Gate, Registry, recorded_variant};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package femtoclaw:config-host;
            world config-host { import wasi:config/store@0.2.0-draft; }
        ",
        world: "femtoclaw:config-host/config-host",
    });
}

use bindings::wasi::config::store::Error;

const INTERFACE: &str = "wasi:config/store@0.2.0-draft";

/// Configuration values of one capability, by key.
pub type Config = BTreeMap<String, String>;

recorded_variant!(Error {
    Upstream(String) => "upstream",
    Io(String) => "io",
});

/// The interface: the operator's values in, read key by key through the gate.
pub(crate) struct ConfigStore;

impl HostInterface for ConfigStore {
    type Context = Config;
    type State = Config;

    fn state(context: Config) -> Config {
        context
    }

    fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
        add_to_linker(registry)
    }
}

fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::define_scoped(
        registry,
        INTERFACE,
        "get",
        |state, authority, (key,): &(String,)| {
            let answer =
                match authority.check(CallAction::ConfigRead, &Scope::ConfigKey(key.clone())) {
                    Ok(()) => Ok(state.host.config.get(key).cloned()),
                    Err(denied) => Err(Error::Upstream(denied.to_string())),
                };
            Ok((answer,))
        },
    )?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        "get-all",
        |state, authority, (): &()| {
            let granted: Vec<(String, String)> = state
                .host
                .config
                .iter()
                .filter(|(key, _)| {
                    authority
                        .check(CallAction::ConfigRead, &Scope::ConfigKey((*key).clone()))
                        .is_ok()
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok((Ok::<_, Error>(granted),))
        },
    )
}
