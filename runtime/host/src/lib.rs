//! The FemtoClaw host as a library: the one orchestration of an invocation — authorize,
//! resolve, check link grants, run, record, apply — that the command line, the server and the
//! tests call in-process.
//!
//! ```text
//! Host::open(data dir, policy source, ledger?)
//!   └─ resolve("hello")            catalog: component + manifest, both digests checked
//!   └─ invoke(principal, …)        policy → link grant → sandbox → ledger (write-ahead) → answer
//! ```
//!
//! [`Host`] owns the capability catalog, the sandbox, the policy authority and the ledger
//! ([`records::Records`]) of one data directory; [`Failure`] is every refusal, with the exit
//! code class it maps to.

pub mod admin;
pub mod approvals;
pub mod authority;
pub mod exit;
pub mod host;
pub mod kv;
pub mod lock;
pub mod mcp;
pub mod mounts;
pub mod private;
pub mod quotas;
pub mod records;
pub mod replay;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod telemetry;
pub mod tokens;

pub use exit::{Code, Failure};
pub use host::{Bounds, Host, Invoked, Resolved};
