//! The FemtoClaw SDK: what a capability author depends on.
//!
//! A capability is a Rust library compiled to a wasm32-wasip2 component. Its tools are plain typed
//! WIT functions: the host turns an agent's JSON arguments into WIT values and the result back,
//! so a capability never serializes JSON by hand. The SDK gives it:
//!
//! - the bindings of the host contract (`femtoclaw:host`, generated from the repository's `wit/`,
//!   the same files the host reads), re-exported as [`bindings`];
//! - a logging helper ([`log`]) whose messages reach the invocation's outcome;
//! - with the `files` feature, file access in one line (`files::read`, `files::write`,
//!   `files::list`) within the directories the operator's policy grants;
//! - [`wit_bindgen`], so the capability generates its own exports with the same version.
//!
//! # Example
//!
//! ```ignore
//! // src/lib.rs of a capability crate (crate-type = ["cdylib"])
//! femtoclaw_sdk::generate!({
//!     inline: r#"
//!         package example:hello;
//!         world hello {
//!             include femtoclaw:host/capability@0.1.0;
//!             export greet: func(name: string) -> string;
//!         }
//!     "#,
//!     path: "../../wit",
//! });
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn greet(name: String) -> String {
//!         femtoclaw_sdk::log::info(&format!("greeting {name}"));
//!         format!("Hello, {name}!")
//!     }
//! }
//!
//! export!(Hello);
//! ```

pub use wit_bindgen;

/// Bindings of the `femtoclaw:host` interfaces a capability imports.
pub mod bindings {
    wit_bindgen::generate!({
        world: "femtoclaw:host/capability@0.1.0",
        path: "../wit",
        generate_all,
    });

    pub use femtoclaw::host::keyvalue_prefix;
    pub use femtoclaw::host::log;
    pub use wasi::keyvalue::store as keyvalue;
}

/// Generates a capability's bindings: `wit_bindgen::generate!` with the host interfaces mapped
/// to this SDK's bindings, so the capability and the SDK's helpers share one set of types.
///
/// Give the capability's own `inline` WIT (a world that includes
/// `femtoclaw:host/capability@0.1.0`) and the `path` of the `wit/` directory; for a world
/// that imports more than the capability world, call [`wit_bindgen::generate!`] directly.
#[macro_export]
macro_rules! generate {
    ({ $($key:ident : $value:literal),* $(,)? }) => {
        $crate::wit_bindgen::generate!({
            $($key: $value,)*
            with: {
                "femtoclaw:host/log@0.1.0": ::femtoclaw_sdk::bindings::log,
                "wasi:keyvalue/store@0.2.0-draft2": ::femtoclaw_sdk::bindings::keyvalue,
                "femtoclaw:host/keyvalue-prefix@0.1.0": ::femtoclaw_sdk::bindings::keyvalue_prefix,
            },
            runtime_path: "femtoclaw_sdk::wit_bindgen::rt",
        });
    };
}

/// Key-value state (`wasi:keyvalue`): buckets are namespaces the operator's policy grants, by
/// name, to read or to write. Writes take effect when the invocation returns (a trap discards
/// them); the invocation reads its own writes.
///
/// ```ignore
/// femtoclaw_sdk::kv::set("notes", "today", b"buy milk")?;
/// let value = femtoclaw_sdk::kv::get("notes", "today")?;
/// let keys = femtoclaw_sdk::kv::keys("notes", "to")?;
/// ```
pub mod kv {
    pub use crate::bindings::keyvalue::{Bucket, Error, KeyResponse, open};
    use crate::bindings::keyvalue_prefix::list_keys_with_prefix;

    /// The value of `key` in bucket `namespace`.
    pub fn get(namespace: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        open(namespace)?.get(key)
    }

    /// Sets `key` in bucket `namespace` to `value`.
    pub fn set(namespace: &str, key: &str, value: &[u8]) -> Result<(), Error> {
        open(namespace)?.set(key, value)
    }

    /// Removes `key` from bucket `namespace`.
    pub fn delete(namespace: &str, key: &str) -> Result<(), Error> {
        open(namespace)?.delete(key)
    }

    /// Every key of bucket `namespace` starting with `prefix`, in byte order.
    pub fn keys(namespace: &str, prefix: &str) -> Result<Vec<String>, Error> {
        keys_of(&open(namespace)?, prefix, usize::MAX)
    }

    /// Up to `limit` keys of `bucket` starting with `prefix`, in byte order, following cursors.
    pub fn keys_of(bucket: &Bucket, prefix: &str, limit: usize) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = list_keys_with_prefix(bucket, prefix, cursor.as_deref())?;
            keys.extend(page.keys);
            if keys.len() >= limit {
                keys.truncate(limit);
                return Ok(keys);
            }
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }
}

/// Log messages to the host. They are captured with the invocation's outcome, never printed by
/// the host on its own output.
pub mod log {
    use crate::bindings::log::{Level, log};

    /// Logs `message` at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    /// Logs `message` at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs `message` at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs `message` at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs `message` at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Bindings of `wasi:filesystem`, which [`files`] uses.
#[cfg(feature = "files")]
mod filesystem {
    wit_bindgen::generate!({
        inline: "
            package femtoclaw:sdk-files;
            world files {
                import wasi:filesystem/types@0.2.12;
                import wasi:filesystem/preopens@0.2.12;
            }
        ",
        path: "../wit",
        world: "femtoclaw:sdk-files/files",
        generate_all,
    });

    pub use wasi::filesystem::{preopens, types};
}

#[cfg(feature = "files")]
pub mod files;
