//! The FemtoClaw SDK: what a capability author depends on.
//!
//! A capability is a Rust library compiled to a wasm32-wasip2 component. Its tools are plain typed
//! WIT functions: the host turns an agent's JSON arguments into WIT values and the result back,
//! so a capability never serializes JSON by hand. The SDK gives it:
//!
//! - the bindings of the host contract (`femtoclaw:host`, generated from the repository's `wit/`,
//!   the same files the host reads), re-exported as [`bindings`];
//! - a logging helper ([`log`]) whose messages reach the invocation's outcome;
//! - outgoing HTTP ([`http`]): `femtoclaw_sdk::http::get(url)`, authorized and recorded by the
//!   host;
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

pub use femtoclaw_sdk_macros::docs;
pub use wit_bindgen;

/// Bindings of the `femtoclaw:host` interfaces a capability imports.
pub mod bindings {
    wit_bindgen::generate!({
        world: "femtoclaw:host/capability@0.1.0",
        path: "../wit",
        generate_all,
    });

    pub use femtoclaw::host::http;
    pub use femtoclaw::host::keyvalue_prefix;
    pub use femtoclaw::host::log;
    pub use wasi::config::store as config;
    pub use wasi::keyvalue::store as keyvalue;
}

/// Generates a capability's bindings: `wit_bindgen::generate!` with the host interfaces mapped
/// to this SDK's bindings, so the capability and the SDK's helpers share one set of types. The
/// doc comments of the exported functions go into the component too ([`docs!`]): the host
/// describes each function with them.
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
                "femtoclaw:host/http@0.1.0": ::femtoclaw_sdk::bindings::http,
                "wasi:config/store@0.2.0-draft": ::femtoclaw_sdk::bindings::config,
            },
            runtime_path: "femtoclaw_sdk::wit_bindgen::rt",
        });
        $crate::docs!({ $($key: $value,)* });
    };
}

/// The operator's configuration values for this capability (`wasi:config/store`): each key the
/// manifest requests (`config = ["region"]`) and the policy grants (`config.read`). A refused
/// key answers `Error::Upstream("denied: …")`.
///
/// ```ignore
/// let region = femtoclaw_sdk::config::get("region")?.unwrap_or_else(|| "eu".into());
/// ```
pub mod config {
    pub use crate::bindings::config::Error;

    /// The value of `key`, or `None` when the operator set none.
    pub fn get(key: &str) -> Result<Option<String>, Error> {
        crate::bindings::config::get(key)
    }

    /// Every granted key with its value.
    pub fn get_all() -> Result<Vec<(String, String)>, Error> {
        crate::bindings::config::get_all()
    }
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

/// Outgoing HTTP through the host: one whole request, one whole response.
///
/// The host decides every request (the origin, each redirect hop, every non-public address the
/// name resolves to, every secret used), caps the bodies and the time, and records the
/// exchange. A refusal is an [`Error::Denied`] the capability can report, never a trap.
///
/// ```ignore
/// let page = femtoclaw_sdk::http::get("https://example.com/")?;
/// assert_eq!(page.status, 200);
/// let text = page.text();
///
/// // A secret the operator stored (`femtoclaw-host secret set api-token`) as a header: the host
/// // fills in the value; the capability never sees it.
/// let request = femtoclaw_sdk::http::Request::get("https://api.example.com/v1/me")
///     .secret_header("authorization", "api-token", "Bearer ");
/// let me = femtoclaw_sdk::http::send(&request)?;
/// ```
pub mod http {
    pub use crate::bindings::http::{Error, Header, Request, Response, SecretHeader, send};

    /// Redirects followed by [`Request::new`] unless changed (each hop is authorized again).
    pub const DEFAULT_MAX_REDIRECTS: u32 = 5;

    /// `GET url`, following up to [`DEFAULT_MAX_REDIRECTS`] redirects.
    pub fn get(url: &str) -> Result<Response, Error> {
        send(&Request::get(url))
    }

    /// `POST url` with `body` of type `content_type`.
    pub fn post(
        url: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Response, Error> {
        send(
            &Request::new("POST", url)
                .header("content-type", content_type)
                .body(body),
        )
    }

    impl Request {
        /// A `method` request to `url` with no headers and no body, following up to
        /// [`DEFAULT_MAX_REDIRECTS`] redirects, under the host's caps.
        pub fn new(method: &str, url: &str) -> Self {
            Self {
                method: method.to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                secret_headers: Vec::new(),
                body: Vec::new(),
                max_redirects: DEFAULT_MAX_REDIRECTS,
                max_response_bytes: None,
                timeout_ms: None,
            }
        }

        /// A `GET` request.
        pub fn get(url: &str) -> Self {
            Self::new("GET", url)
        }

        /// Adds a header.
        #[must_use]
        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push(Header {
                name: name.to_owned(),
                value: value.to_owned(),
            });
            self
        }

        /// Adds a header whose value the host makes from `prefix` and the secret `secret`.
        #[must_use]
        pub fn secret_header(mut self, name: &str, secret: &str, prefix: &str) -> Self {
            self.secret_headers.push(SecretHeader {
                name: name.to_owned(),
                secret: secret.to_owned(),
                prefix: prefix.to_owned(),
            });
            self
        }

        /// Sets the body.
        #[must_use]
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        /// Follows at most `n` redirects; 0 returns a redirect as the response.
        #[must_use]
        pub fn max_redirects(mut self, n: u32) -> Self {
            self.max_redirects = n;
            self
        }

        /// Refuses a response body larger than `bytes` (the host's cap still applies).
        #[must_use]
        pub fn max_response_bytes(mut self, bytes: u64) -> Self {
            self.max_response_bytes = Some(bytes);
            self
        }

        /// Gives up after `ms` milliseconds (the host's timeout still applies).
        #[must_use]
        pub fn timeout_ms(mut self, ms: u32) -> Self {
            self.timeout_ms = Some(ms);
            self
        }
    }

    impl Response {
        /// The body as text (invalid UTF-8 replaced).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The first value of header `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str())
        }
    }

    impl Error {
        /// The error as one line: its kind and the host's message.
        pub fn message(&self) -> String {
            let (kind, text) = match self {
                Self::Denied(t) => return t.clone(),
                Self::InvalidRequest(t) => ("invalid request", t),
                Self::Dns(t) => ("dns", t),
                Self::Connection(t) => ("connection", t),
                Self::Timeout(t) => ("timeout", t),
                Self::TooLarge(t) => ("too large", t),
                Self::TooManyRedirects(t) => ("too many redirects", t),
                Self::Protocol(t) => ("protocol", t),
            };
            format!("{kind}: {text}")
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
