//! `wasi:keyvalue/store` and `femtoclaw:host/keyvalue-prefix`: key-value buckets, one per
//! namespace the policy grants.
//!
//! Opening a bucket and every read (`get`, `exists`, listings) is `kv.read` on the namespace;
//! `set` and `delete` are `kv.write`. A denied call answers `access-denied` and its decision is
//! recorded. Reads are recorded with what they returned; writes with what they wrote, which is
//! how the host applies them after the invocation (see [`store`]).

pub mod store;

use std::sync::Arc;

use femtoclaw_policy::{CallAction, Scope};
use wasmtime::component::Resource;

use self::store::{KvStore, Session, check_namespace};
use super::HostInterface;
use crate::gate::{Authority, Gate, Registry, recorded_record, recorded_variant};
use crate::state::State;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package femtoclaw:kv-host;
            world kv-host {
                import wasi:keyvalue/store@0.2.0-draft2;
                import femtoclaw:host/keyvalue-prefix@0.1.0;
            }
        ",
        world: "femtoclaw:kv-host/kv-host",
    });
}

pub use bindings::wasi::keyvalue::store::{Error, KeyResponse};

/// The store interface, as components import it.
pub const INTERFACE: &str = "wasi:keyvalue/store@0.2.0-draft2";
/// The functions whose recorded calls the host derives key-value writes from
/// ([`store::writes`]).
pub(crate) const OPEN: &str = "open";
pub(crate) const SET: &str = "[method]bucket.set";
pub(crate) const DELETE: &str = "[method]bucket.delete";

/// The prefix-listing interface.
pub const PREFIX_INTERFACE: &str = "femtoclaw:host/keyvalue-prefix@0.1.0";

/// An open bucket: the namespace it names.
pub(crate) struct Bucket {
    namespace: String,
}

recorded_variant!(Error {
    NoSuchStore => "no-such-store",
    AccessDenied => "access-denied",
    Other(String) => "other",
});

recorded_record!(KeyResponse {
    keys: "keys",
    cursor: "cursor",
});

/// The namespace of `bucket`, after asking the policy for `action` on it.
fn authorized(
    state: &State,
    authority: &mut Authority<'_>,
    bucket: &Resource<Bucket>,
    action: CallAction,
) -> wasmtime::Result<Result<String, Error>> {
    let namespace = state.table.get(bucket)?.namespace.clone();
    Ok(authority
        .check(action, &Scope::KvNamespace(namespace.clone()))
        .map(|()| namespace)
        .map_err(|_| Error::AccessDenied))
}

/// The interface: buckets over the host's store, each read and write through the gate; the
/// writes of one invocation are kept in its session until the host applies them.
pub(crate) struct KeyValue;

impl HostInterface for KeyValue {
    type Context = Option<Arc<KvStore>>;
    type State = Session;

    fn state(context: Option<Arc<KvStore>>) -> Session {
        Session::new(context)
    }

    fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
        add_to_linker(registry)
    }
}

fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::resource::<Bucket>(registry, INTERFACE, "bucket")?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        OPEN,
        |state, authority, (identifier,): &(String,)| {
            let opened = check_namespace(identifier)
                .and_then(|()| state.host.kv.check_open())
                .and_then(|()| {
                    authority
                        .check(CallAction::KvRead, &Scope::KvNamespace(identifier.clone()))
                        .map_err(|_| Error::AccessDenied)
                });
            Ok((match opened {
                Ok(()) => Ok(state.table.push(Bucket {
                    namespace: identifier.clone(),
                })?),
                Err(e) => Err(e),
            },))
        },
    )?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        "[method]bucket.get",
        |state, authority, (bucket, key): &(Resource<Bucket>, String)| {
            let namespace = authorized(state, authority, bucket, CallAction::KvRead)?;
            Ok((namespace.and_then(|ns| state.host.kv.get(&ns, key)),))
        },
    )?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        "[method]bucket.exists",
        |state, authority, (bucket, key): &(Resource<Bucket>, String)| {
            let namespace = authorized(state, authority, bucket, CallAction::KvRead)?;
            Ok((namespace.and_then(|ns| state.host.kv.get(&ns, key).map(|v| v.is_some())),))
        },
    )?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        SET,
        |state, authority, (bucket, key, value): &(Resource<Bucket>, String, Vec<u8>)| {
            let namespace = authorized(state, authority, bucket, CallAction::KvWrite)?;
            Ok((namespace.and_then(|ns| state.host.kv.put(&ns, key, Some(value.clone()))),))
        },
    )?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        DELETE,
        |state, authority, (bucket, key): &(Resource<Bucket>, String)| {
            let namespace = authorized(state, authority, bucket, CallAction::KvWrite)?;
            Ok((namespace.and_then(|ns| state.host.kv.put(&ns, key, None)),))
        },
    )?;
    Gate::define_scoped(
        registry,
        INTERFACE,
        "[method]bucket.list-keys",
        |state, authority, (bucket, cursor): &(Resource<Bucket>, Option<String>)| {
            let namespace = authorized(state, authority, bucket, CallAction::KvRead)?;
            Ok((namespace.and_then(|ns| state.host.kv.list(&ns, "", cursor.as_deref())),))
        },
    )?;
    Gate::define_scoped(
        registry,
        PREFIX_INTERFACE,
        "list-keys-with-prefix",
        |state,
         authority,
         (bucket, prefix, cursor): &(Resource<Bucket>, String, Option<String>)| {
            let namespace = authorized(state, authority, bucket, CallAction::KvRead)?;
            Ok((namespace.and_then(|ns| state.host.kv.list(&ns, prefix, cursor.as_deref())),))
        },
    )
}
