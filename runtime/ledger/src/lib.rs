//! The FemtoClaw ledger: every invocation and host call, recorded durably in an
//! append-only log that anyone can verify offline.
//!
//! - [`Entry`] and [`Value`]: what is recorded, with one canonical, versioned binary
//!   encoding ([`Entry::encode`], [`Entry::decode`]) frozen by golden files.
//! - [`Ledger`]: segment files with checksummed records, group commit with one
//!   fdatasync and one signed checkpoint per batch, torn-tail recovery, a sled index of
//!   derived state ([`Ledger::reindex`]). [`LedgerWriter`] coalesces concurrent appends.
//! - [`merkle`]: the RFC 6962 tree, inclusion and consistency proofs.
//! - [`SigningKey`], [`VerifierKey`], [`Checkpoint`]: C2SP `signed-note` and
//!   `tlog-checkpoint` with Ed25519.
//! - [`verify_export`], [`verify_dir`]: verification with a pinned key, naming the
//!   first bad position; [`verify_proof`]: C2SP `tlog-proof` inclusion proofs.
//!
//! This crate does not depend on wasmtime: an auditor's verifier links only it.
//!
//! # Example
//!
//! ```
//! use femtoclaw_ledger::{Entry, Ledger, LedgerOptions, SigningKey, Value, VerifyOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let key = SigningKey::generate("femtoclaw.local/ledger")?;
//! let (mut ledger, _recovery) = Ledger::open(dir.path(), LedgerOptions::with_key(key.clone()))?;
//!
//! let invocation = ledger.next_invocation();
//! let receipt = ledger.append_batch(vec![Entry::Trap {
//!     invocation,
//!     kind: "fuel-exhausted".into(),
//!     message: "out of fuel".into(),
//!     fuel_consumed: 1_000,
//! }])?;
//! assert_eq!(receipt.indexes(), 0..1);
//! assert_eq!(ledger.get(0)?.invocation(), Some(invocation));
//!
//! // Anyone holding the verifier key can check an export offline.
//! let export = dir.path().join("ledger.export");
//! ledger.export(&export)?;
//! let report = femtoclaw_ledger::verify_export_file(&export, &VerifyOptions::with_key(key.verifier()))?;
//! assert_eq!(report.entries, 1);
//!
//! // And an inclusion proof for one entry.
//! let proof = ledger.prove(0)?;
//! let verified = femtoclaw_ledger::verify_proof(&proof, &key.verifier())?;
//! assert_eq!(verified.index, 0);
//! # let _ = Value::Bool(true);
//! # Ok(())
//! # }
//! ```

mod audit;
mod blobs;
mod codec;
mod entry;
mod error;
mod export;
mod indexer;
pub mod merkle;
mod note;
mod proof;
mod segment;
mod serde_util;
mod store;
mod value;
mod verify;
mod writer;

pub use blobs::BlobStore;
pub use entry::{CallFault, ENCODING_VERSION, Entry, approval_fingerprint, args_digest};
pub use error::{DecodeError, EncodeError};
pub use export::{
    Digested, DigestedBytes, EXPORT_MAGIC, EXPORT_VERSION, Export, parse_export, write_export,
};
pub use merkle::{Hash, MerkleTree, ProofError};
pub use note::{
    Checkpoint, KEY_FILE_NAME, KeyError, NoteError, SigningKey, VerifierKey, generate_key, load_key,
};
pub use proof::{
    ProofTextError, TLOG_PROOF_HEADER, VerifiedProof, format_proof, verify_proof,
    verify_proof_with_keys,
};
pub use segment::MAX_RECORD_LEN;
pub use store::{
    DEFAULT_ORIGIN, DEFAULT_SEGMENT_SIZE, IndexPair, Ledger, LedgerError, LedgerOptions, Receipt,
    Recovery,
};
pub use value::{BLOB_THRESHOLD, MAX_VALUE_DEPTH, Value};

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
pub use verify::{
    VerifyError, VerifyOptions, VerifyReport, recorded_keys, verify_dir, verify_dir_blobs,
    verify_export, verify_export_file,
};
pub use writer::{Commit, LedgerWriter};
