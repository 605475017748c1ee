//! Inclusion proofs in the C2SP `tlog-proof@v1` text form:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 canonical entry bytes>
//! index <N>
//! <base64 hash>            (zero or more, from the leaf's sibling up)
//!
//! <signed checkpoint note, verbatim>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use crate::entry::Entry;
use crate::error::DecodeError;
use crate::merkle::{Hash, ProofError, leaf_hash, verify_inclusion};
use crate::note::{Checkpoint, NoteError, VerifierKey};

/// First line of a proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a proof text does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofTextError {
    /// The text does not follow the `tlog-proof@v1` grammar.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof carries no `extra` line, so the leaf cannot be recomputed.
    #[error("proof has no `extra` line with the entry bytes")]
    MissingExtra,
    /// The checkpoint does not open with the pinned key(s).
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
    /// The proven bytes are not a ledger entry.
    #[error("proven bytes are not an entry: {0}")]
    Entry(#[from] DecodeError),
}

/// A proof that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// Leaf index.
    pub index: u64,
    /// The entry.
    pub entry: Entry,
    /// Its canonical bytes.
    pub entry_bytes: Vec<u8>,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The checkpoint it is included in.
    pub checkpoint: Checkpoint,
}

/// Formats a proof.
pub fn format_proof(
    index: u64,
    entry_bytes: &[u8],
    proof: &[Hash],
    checkpoint_note: &str,
) -> String {
    let mut s = String::with_capacity(128 + entry_bytes.len() * 2 + proof.len() * 46);
    s.push_str(TLOG_PROOF_HEADER);
    s.push('\n');
    s.push_str("extra ");
    s.push_str(&STANDARD.encode(entry_bytes));
    s.push('\n');
    s.push_str(&format!("index {index}\n"));
    for h in proof {
        s.push_str(&STANDARD.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(checkpoint_note);
    s
}

/// Verifies a proof against one pinned key.
pub fn verify_proof(text: &str, key: &VerifierKey) -> Result<VerifiedProof, ProofTextError> {
    verify_proof_with_keys(text, std::slice::from_ref(key))
}

/// Verifies a proof: the checkpoint must be signed by one of the pinned keys, and the
/// `extra` bytes must be the leaf at `index` of the checkpointed tree.
pub fn verify_proof_with_keys(
    text: &str,
    keys: &[VerifierKey],
) -> Result<VerifiedProof, ProofTextError> {
    let (head, note) = text.split_once("\n\n").ok_or(ProofTextError::Malformed(
        "no blank line before the checkpoint",
    ))?;
    let mut lines = head.split('\n');
    if lines.next() != Some(TLOG_PROOF_HEADER) {
        return Err(ProofTextError::Malformed(
            "missing c2sp.org/tlog-proof@v1 header",
        ));
    }
    let mut line = lines
        .next()
        .ok_or(ProofTextError::Malformed("no index line"))?;
    let mut extra = None;
    if let Some(b64) = line.strip_prefix("extra ") {
        extra = Some(
            STANDARD
                .decode(b64)
                .map_err(|_| ProofTextError::Malformed("extra is not base64"))?,
        );
        line = lines
            .next()
            .ok_or(ProofTextError::Malformed("no index line"))?;
    }
    let idx = line
        .strip_prefix("index ")
        .ok_or(ProofTextError::Malformed("no index line"))?;
    if idx.is_empty()
        || !idx.bytes().all(|b| b.is_ascii_digit())
        || (idx.len() > 1 && idx.starts_with('0'))
    {
        return Err(ProofTextError::Malformed("bad index"));
    }
    let index: u64 = idx
        .parse()
        .map_err(|_| ProofTextError::Malformed("bad index"))?;
    let mut proof: Vec<Hash> = Vec::new();
    for l in lines {
        let h = STANDARD
            .decode(l)
            .ok()
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or(ProofTextError::Malformed("bad proof hash"))?;
        proof.push(h);
    }
    let entry_bytes = extra.ok_or(ProofTextError::MissingExtra)?;

    let mut last_err = None;
    let mut checkpoint = None;
    for k in keys {
        match Checkpoint::open(note, k) {
            Ok(cp) => {
                checkpoint = Some(cp);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let checkpoint = match (checkpoint, last_err) {
        (Some(cp), _) => cp,
        (None, Some(e)) => return Err(e.into()),
        (None, None) => return Err(NoteError::UnknownKey(String::new()).into()),
    };
    let leaf = leaf_hash(&entry_bytes);
    verify_inclusion(index, checkpoint.size, &leaf, &proof, &checkpoint.root)?;
    let entry = Entry::decode(&entry_bytes)?;
    Ok(VerifiedProof {
        index,
        entry,
        entry_bytes,
        leaf_hash: leaf,
        checkpoint,
    })
}
