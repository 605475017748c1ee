//! FemtoClaw authorization: a default-deny [Cedar](https://www.cedarpolicy.com) policy over
//! principals, capabilities, imports and scopes.
//!
//! This crate is pure: it never runs a component and does not depend on wasmtime. The host asks
//! it three questions, each a function of (request, policy set, entities) returning a
//! [`Decision`] that carries the determining policy ids and the policy-set digest for the ledger:
//!
//! - **invoke**: may this principal invoke this capability? ([`PolicySet::authorize_invoke`])
//! - **link**: may this capability, run for this principal, link this WIT import? Decided for
//!   every import before any guest code runs ([`PolicySet::check_link`],
//!   [`PolicySet::grant_for_component`], cached in a [`GrantCache`]).
//! - **call**: may this host call touch this host, path, namespace, secret or config key?
//!   ([`PolicySet::check_call`], the one question the gate asks).
//!
//! A capability never gets more than its manifest requests ([`Requests`]) and never more than
//! the policy grants: the effective [`Grant`] is manifest ∩ policy. Without a policy that
//! permits it, everything is denied; a `forbid` beats any `permit`.
//!
//! Policies are validated at load against the schema shipped here ([`SCHEMA`], namespace
//! `FemtoClaw`); an error names the file, line, column and Cedar's message. When the operator
//! gives no policy, [`PolicySet::default_policy`] ([`DEFAULT_POLICY`]) applies.
//!
//! ```
//! use femtoclaw_policy::{CallAction, CapabilityRef, PolicySet, Principal, Requests, Scope};
//!
//! let policy = PolicySet::from_str("ops.cedar", r#"
//!     @id("local-may-invoke-fetch")
//!     permit (principal == FemtoClaw::User::"local",
//!             action == FemtoClaw::Action::"invoke",
//!             resource == FemtoClaw::Capability::"fetch");
//!
//!     @id("fetch-may-reach-example")
//!     permit (principal, action == FemtoClaw::Action::"http.request", resource)
//!     when { context.capability.name == "fetch" && resource.host like "*.example.com" };
//! "#)?;
//!
//! let local = Principal::local();
//! let fetch = CapabilityRef::new("fetch", "0.1.0", "ab12…", "acme");
//! assert!(policy.authorize_invoke(&local, &fetch).allowed);
//!
//! // The manifest asks for one origin; the gate checks each concrete call.
//! let requests = Requests { http: vec!["https://api.example.com".into()], ..Requests::default() };
//! let call = |url: &str| {
//!     let scope = Scope::http(url).unwrap();
//!     policy.check_call(&local, &fetch, &requests, CallAction::HttpRequest, &scope)
//! };
//! let ok = call("https://api.example.com");
//! assert!(ok.allowed);
//! assert_eq!(ok.policy_ids, ["fetch-may-reach-example"]);
//! // The policy would allow this host, but the manifest did not ask for it.
//! assert_eq!(call("https://www.example.com").reason.to_string(), "not requested by manifest");
//! # Ok::<(), femtoclaw_policy::PolicyError>(())
//! ```

mod address;
mod authorize;
mod baseline;
mod decision;
mod error;
mod explain;
mod grant;
mod model;
mod requests;
mod set;

pub use address::AddressKind;
pub use baseline::{VIRTUALIZED_BASELINE, is_virtualized_baseline};
pub use decision::{Decision, Reason};
pub use error::{PolicyError, Problem, Problems, RequestsError};
pub use explain::{AddressExplanation, Explanation, ImportExplanation, ScopeExplanation};
pub use grant::{CallChecker, Grant, GrantCache, GrantKey, LinkGrant, PathGrant};
pub use model::{
    CallAction, CapabilityRef, InterfaceName, Principal, PrincipalKind, Scope, path_covers,
};
pub use requests::{KvRequest, PathRequest, RequestedScope, Requests, ScopeEntry};
pub use set::{Effect, PolicyInfo, PolicySet};

/// The Cedar schema every policy is validated against (namespace `FemtoClaw`).
pub const SCHEMA: &str = include_str!("../schema/femtoclaw.cedarschema");

/// The default policy, used when the operator gives none: the local operator may invoke
/// first-party capabilities, which may link host logging and the virtualized WASI baseline and
/// use the key-value namespace named after themselves. No network, files, secrets or config.
pub const DEFAULT_POLICY: &str = include_str!("../default/default.cedar");
