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
