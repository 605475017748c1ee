//! The FemtoClaw host's configuration: one TOML file, one typed schema, and the source of
//! every value.
//!
//! - [`Config`]: the typed configuration, a struct per section ([`Server`], [`Limits`],
//!   [`Ledger`], [`Http`]); [`Config::default`] holds the embedded default of every key.
//! - [`Config::load`]: the defaults, then `<data dir>/femtoclaw.toml` (or the file given with
//!   `--config`, see [`ConfigFile`]), then `FEMTOCLAW_<SECTION>_<KEY>` environment variables,
//!   then flags ([`Overrides`]): flag > environment > file > default.
//! - [`Effective`]: the loaded configuration with the [`Source`] of each key;
//!   [`Effective::show`] writes it as a config file with each source as a comment.
//! - [`check`]: validates a file. Unknown sections and keys and bad values are refused, naming
//!   the file, the key and the line ([`ConfigError`]).
//! - [`reference()`]: the Markdown table of every key, made from the same schema.
//!
//! Every key is described once, in `src/config.rs`: its doc comment, type, default and rule.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use femtoclaw_config::{Config, ConfigFile, Overrides, Source, key};
//!
//! # fn main() -> Result<(), femtoclaw_config::ConfigError> {
//! let file = Config::parse(Path::new("/data/femtoclaw.toml"), "[limits]\nmax_fuel = 5000\n")?;
//! assert_eq!(file.config().limits.max_fuel, 5000);
//! assert_eq!(
//!     file.source(key::limits::max_fuel),
//!     &Source::File { path: "/data/femtoclaw.toml".into(), line: 2 },
//! );
//!
//! let effective = Config::load(
//!     &ConfigFile::in_data_dir(Path::new("/nonexistent")), // no file: every default
//!     [("FEMTOCLAW_LIMITS_DEADLINE_MS", "100"), ("FEMTOCLAW_TOKEN", "not config")],
//!     &Overrides::new().with(key::server::listen, "--listen", "127.0.0.1:9000"),
//! )?;
//! assert_eq!(effective.config().limits.deadline.as_millis(), 100);
//! assert!(effective.show().contains("listen = \"127.0.0.1:9000\"  # flag --listen"));
//!
//! let err = Config::parse(Path::new("/data/femtoclaw.toml"), "[server]\nconcurrency = 0\n")
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "`/data/femtoclaw.toml` line 2: `server.concurrency` must be at least 1, not `0`",
//! );
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod load;
mod quota;
mod schema;
mod show;
mod value;

pub use config::{Approvals, Config, Http, Ledger, Limits, Quotas, Server, Telemetry, key};
pub use error::ConfigError;
pub use load::{ConfigFile, Effective, FILE_NAME, Overrides, Source, check};
pub use quota::QuotaRule;
pub use schema::Key;
pub use show::{REFERENCE_END, REFERENCE_START, reference, splice_reference};
pub use value::ValueError;

#[cfg(test)]
mod tests;
