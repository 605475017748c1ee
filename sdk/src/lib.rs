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
//! femtoclaw_sdk::wit_bindgen::generate!({
//!     inline: r#"
//!         package example:hello;
//!         world hello {
//!             include femtoclaw:host/capability@0.1.0;
//!             export greet: func(name: string) -> string;
//!         }
//!     "#,
//!     path: "../../wit",
//!     with: { "femtoclaw:host/log@0.1.0": femtoclaw_sdk::bindings::log },
//!     runtime_path: "femtoclaw_sdk::wit_bindgen::rt",
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

    pub use femtoclaw::host::log;
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
