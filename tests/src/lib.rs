//! Integration and conformance tests for FemtoClaw, and the guest components they run.
//!
//! The guests under `tests/guests/` and the SDK example under `examples/` are compiled to
//! wasm32-wasip2 by this crate's build script; nothing here is a committed binary.
//!
//! ```
//! assert_eq!(&femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE[..4], b"\0asm");
//! ```

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The SDK example's manifest.
pub const WORD_COUNT_MANIFEST: &str = include_str!("../../examples/word-count/capability.toml");

/// A link grant for every import of `prepared`, from a policy that permits everything and a
/// manifest that requests every import: for tests of the sandbox below the policy.
pub fn grant_all(prepared: &femtoclaw_sandbox::Prepared) -> femtoclaw_policy::LinkGrant {
    use femtoclaw_policy::{CapabilityRef, PolicySet, Principal, Requests};
    let policy = PolicySet::from_str("open", "permit (principal, action, resource);\n")
        .unwrap_or_else(|e| panic!("the open policy: {e}"));
    let requests = Requests {
        imports: prepared.imports.clone(),
        ..Requests::default()
    };
    let cap = CapabilityRef::new("test", "0.0.0", "", "test");
    let imports = || prepared.imports.iter().map(String::as_str);
    policy
        .grant_for_component(&Principal::local(), &cap, &requests, imports())
        .authorize_link(imports())
        .unwrap_or_else(|refused| panic!("the open policy refused {refused:?}"))
}
