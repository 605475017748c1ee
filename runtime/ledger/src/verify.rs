//! Offline verification with no trust in the log: recompute every leaf hash and root,
//! check every checkpoint's signature against PINNED keys, check that consecutive
//! checkpoints are consistent, and name the first bad position.

use std::path::Path;

use thiserror::Error;

use crate::entry::Entry;
use crate::error::DecodeError;
use crate::export::parse_export;
use crate::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency};
use crate::note::{Checkpoint, NoteError, VerifierKey};
use crate::segment::{self, Event, ReplayError};

/// What the verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Pinned keys: every checkpoint must carry a valid signature by one of them. With
    /// no key, signatures are not checked (structure and roots still are) and the report
    /// says so.
    pub keys: Vec<VerifierKey>,
    /// Expected origin line; when unset, every checkpoint must have the first one's.
    pub origin: Option<String>,
}

impl VerifyOptions {
    /// Options pinning one key.
    pub fn with_key(key: VerifierKey) -> Self {
        Self {
            keys: vec![key],
            origin: None,
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Root of the whole log.
    pub root: Hash,
    /// Origin of the checkpoints (empty when there are none).
    pub origin: String,
    /// Whether checkpoint signatures were checked against pinned keys.
    pub signatures_checked: bool,
    /// Directory only: bytes of an unacknowledged torn tail, not verified.
    pub torn_tail_bytes: u64,
    /// Directory only: complete entries after the last commit (never acknowledged),
    /// not verified.
    pub uncommitted_entries: u64,
}

/// Why verification failed, naming the first bad position.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The file does not start with the export magic.
    #[error("not a ledger export (bad header)")]
    BadHeader,
    /// The export version is unknown.
    #[error("unsupported export version `{version}`")]
    UnsupportedVersion {
        /// Version byte found.
        version: u8,
    },
    /// The file ends inside an item.
    #[error("export is truncated at {what} {index}")]
    Truncated {
        /// `entry`, `checkpoint`, `component` or `section`.
        what: &'static str,
        /// Index of the item that is cut.
        index: u64,
    },
    /// A section tag is unknown or out of order.
    #[error("unexpected section `{tag}` at byte {offset}")]
    BadSection {
        /// Tag found.
        tag: u8,
        /// Where.
        offset: u64,
    },
    /// Bytes follow the end marker.
    #[error("trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Where they start.
        offset: u64,
    },
    /// An entry's bytes are not a canonical entry.
    #[error("entry {index} is malformed: {source}")]
    BadRecord {
        /// Entry index.
        index: u64,
        /// Why.
        source: DecodeError,
    },
    /// A segment record is damaged (directory verification).
    #[error("segment {segment:08} is corrupt at byte {offset} (entry {index}): {reason}")]
    CorruptSegment {
        /// Segment number.
        segment: u32,
        /// Byte offset.
        offset: u64,
        /// Index the next entry would have had.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint is not a well-formed signed checkpoint note.
    #[error("checkpoint {checkpoint} is malformed: {source}")]
    BadCheckpoint {
        /// Checkpoint position (0 = oldest).
        checkpoint: u64,
        /// Why.
        source: NoteError,
    },
    /// A checkpoint carries a signature line by a pinned key that does not verify.
    #[error("checkpoint {checkpoint} (tree size {size}) has an invalid signature")]
    BadSignature {
        /// Checkpoint position.
        checkpoint: u64,
        /// Tree size it claims.
        size: u64,
    },
    /// A checkpoint is not signed by any pinned key.
    #[error("checkpoint {checkpoint} (tree size {size}) is not signed by a pinned key")]
    UnknownKey {
        /// Checkpoint position.
        checkpoint: u64,
        /// Tree size it claims.
        size: u64,
    },
    /// A checkpoint's origin is not the expected one.
    #[error("checkpoint {checkpoint} has origin `{found}`, expected `{expected}`")]
    OriginMismatch {
        /// Checkpoint position.
        checkpoint: u64,
        /// Origin found.
        found: String,
        /// Origin expected.
        expected: String,
    },
    /// A checkpoint's root is not the root recomputed from the entries: an entry in
    /// `from..size` (or the checkpoint) was altered, removed, added or reordered.
    #[error(
        "checkpoint {checkpoint} (tree size {size}) does not match the entries: an entry in {from}..{size} or the checkpoint was altered"
    )]
    RootMismatch {
        /// Checkpoint position.
        checkpoint: u64,
        /// Tree size it claims.
        size: u64,
        /// Size of the previous verified checkpoint.
        from: u64,
    },
    /// Checkpoint sizes go backwards.
    #[error("checkpoint {checkpoint} (tree size {size}) is older than checkpoint {previous}")]
    NotMonotonic {
        /// Checkpoint position.
        checkpoint: u64,
        /// Tree size it claims.
        size: u64,
        /// The checkpoint before it.
        previous: u64,
    },
    /// Consecutive checkpoints are not consistent.
    #[error("checkpoints {previous} and {checkpoint} are not consistent")]
    Inconsistent {
        /// Checkpoint position.
        checkpoint: u64,
        /// The checkpoint before it.
        previous: u64,
    },
    /// A checkpoint claims more entries than the log holds.
    #[error(
        "entries missing after checkpoint {checkpoint}: it covers {size} entries, the log has {entries}"
    )]
    MissingEntries {
        /// Checkpoint position.
        checkpoint: u64,
        /// Tree size it claims.
        size: u64,
        /// Entries present.
        entries: u64,
    },
    /// Entries from `from` on are covered by no checkpoint.
    #[error("entries {from}..{entries} are covered by no checkpoint")]
    Uncovered {
        /// First uncovered entry.
        from: u64,
        /// Entries present.
        entries: u64,
    },
    /// A component's bytes do not hash to its recorded digest.
    #[error("component {index} does not match its sha256")]
    ComponentDigest {
        /// Component position.
        index: u64,
    },
    /// The directory or file could not be read.
    #[error("cannot read `{path}`: {message}")]
    Io {
        /// Path.
        path: String,
        /// Error text.
        message: String,
    },
}

/// The streaming verifier: feed entries and checkpoints in log order.
struct Verifier<'o> {
    opts: &'o VerifyOptions,
    tree: MerkleTree,
    checkpoints: u64,
    last: Option<(u64, u64, Hash)>, // (position, size, root)
    origin: Option<String>,
}

impl<'o> Verifier<'o> {
    fn new(opts: &'o VerifyOptions) -> Self {
        Self {
            opts,
            tree: MerkleTree::new(),
            checkpoints: 0,
            last: None,
            origin: opts.origin.clone(),
        }
    }

    fn entry(&mut self, bytes: &[u8], known_leaf: Option<Hash>) -> Result<(), VerifyError> {
        let index = self.tree.len();
        Entry::decode(bytes).map_err(|source| VerifyError::BadRecord { index, source })?;
        self.tree
            .push(known_leaf.unwrap_or_else(|| leaf_hash(bytes)));
        Ok(())
    }

    /// The size a checkpoint claims, without trusting it (to order the stream).
    fn claimed_size(position: u64, note: &[u8]) -> Result<u64, VerifyError> {
        let text = std::str::from_utf8(note).map_err(|_| VerifyError::BadCheckpoint {
            checkpoint: position,
            source: NoteError::Malformed("not utf-8"),
        })?;
        Checkpoint::parse_unverified(text)
            .map(|c| c.size)
            .map_err(|source| VerifyError::BadCheckpoint {
                checkpoint: position,
                source,
            })
    }

    fn checkpoint(&mut self, note: &[u8]) -> Result<(), VerifyError> {
        let position = self.checkpoints;
        let text = std::str::from_utf8(note).map_err(|_| VerifyError::BadCheckpoint {
            checkpoint: position,
            source: NoteError::Malformed("not utf-8"),
        })?;
        let claimed = Self::claimed_size(position, note)?;
        if !self.opts.keys.is_empty()
            && crate::note::split_note(text).is_err()
            && Checkpoint::parse_text(text).is_ok()
        {
            // A bare checkpoint: signed by nobody.
            return Err(VerifyError::UnknownKey {
                checkpoint: position,
                size: claimed,
            });
        }
        let cp = if self.opts.keys.is_empty() {
            Checkpoint::parse_unverified(text).map_err(|source| VerifyError::BadCheckpoint {
                checkpoint: position,
                source,
            })?
        } else {
            let mut found: Option<Checkpoint> = None;
            let mut bad_sig = false;
            for k in &self.opts.keys {
                match Checkpoint::open(text, k) {
                    Ok(cp) => {
                        found = Some(cp);
                        break;
                    }
                    Err(NoteError::BadSignature(_)) => bad_sig = true,
                    Err(NoteError::UnknownKey(_)) => {}
                    Err(source) => {
                        return Err(VerifyError::BadCheckpoint {
                            checkpoint: position,
                            source,
                        });
                    }
                }
            }
            match found {
                Some(cp) => cp,
                None if bad_sig => {
                    return Err(VerifyError::BadSignature {
                        checkpoint: position,
                        size: claimed,
                    });
                }
                None => {
                    return Err(VerifyError::UnknownKey {
                        checkpoint: position,
                        size: claimed,
                    });
                }
            }
        };
        match &self.origin {
            Some(o) if *o != cp.origin => {
                return Err(VerifyError::OriginMismatch {
                    checkpoint: position,
                    found: cp.origin,
                    expected: o.clone(),
                });
            }
            Some(_) => {}
            None => self.origin = Some(cp.origin.clone()),
        }
        if let Some((prev, prev_size, _)) = self.last
            && cp.size < prev_size
        {
            return Err(VerifyError::NotMonotonic {
                checkpoint: position,
                size: cp.size,
                previous: prev,
            });
        }
        let Some(root) = self.tree.root_at(cp.size) else {
            return Err(VerifyError::MissingEntries {
                checkpoint: position,
                size: cp.size,
                entries: self.tree.len(),
            });
        };
        let from = self.last.map_or(0, |l| l.1);
        if root != cp.root {
            return Err(VerifyError::RootMismatch {
                checkpoint: position,
                size: cp.size,
                from,
            });
        }
        if let Some((prev, prev_size, prev_root)) = self.last
            && prev_size > 0
        {
            let proof = self
                .tree
                .consistency_proof(prev_size, cp.size)
                .map_err(|_| VerifyError::Inconsistent {
                    checkpoint: position,
                    previous: prev,
                })?;
            verify_consistency(prev_size, cp.size, &proof, &prev_root, &cp.root).map_err(|_| {
                VerifyError::Inconsistent {
                    checkpoint: position,
                    previous: prev,
                }
            })?;
        }
        self.last = Some((position, cp.size, cp.root));
        self.checkpoints += 1;
        Ok(())
    }

    fn finish(self) -> Result<VerifyReport, VerifyError> {
        let entries = self.tree.len();
        let covered = self.last.map_or(0, |l| l.1);
        if covered < entries {
            return Err(VerifyError::Uncovered {
                from: covered,
                entries,
            });
        }
        Ok(VerifyReport {
            entries,
            checkpoints: self.checkpoints,
            root: self.tree.root(),
            origin: self.origin.unwrap_or_default(),
            signatures_checked: !self.opts.keys.is_empty(),
            torn_tail_bytes: 0,
            uncommitted_entries: 0,
        })
    }
}

/// Verifies an export held in memory.
pub fn verify_export(bytes: &[u8], opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let export = parse_export(bytes)?;
    let mut v = Verifier::new(opts);
    let mut next_cp = 0usize;
    let n = export.entries.len();
    for i in 0..=n {
        // Check every checkpoint that closes a tree of `i` entries or fewer before
        // reading entry `i`, so that the first bad position is reported.
        while let Some(note) = export.checkpoints.get(next_cp) {
            let claimed = Verifier::claimed_size(next_cp as u64, note)?;
            if claimed > i as u64 {
                break;
            }
            v.checkpoint(note)?;
            next_cp += 1;
        }
        if let Some(bytes) = export.entries.get(i) {
            v.entry(bytes, None)?;
        }
    }
    if let Some(note) = export.checkpoints.get(next_cp) {
        v.checkpoint(note)?;
    }
    for (index, (sha, bytes)) in export.components.iter().enumerate() {
        use sha2::Digest as _;
        if sha2::Sha256::digest(bytes).as_slice() != sha {
            return Err(VerifyError::ComponentDigest {
                index: index as u64,
            });
        }
    }
    v.finish()
}

/// Verifies an export file.
pub fn verify_export_file(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let bytes = std::fs::read(path).map_err(|e| VerifyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    verify_export(&bytes, opts)
}

/// Verifies a ledger directory read-only (its segments; the index is not consulted). A
/// torn or unacknowledged tail of the last segment is reported, not verified; damage
/// anywhere else is an error.
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let mut v = Verifier::new(opts);
    let tail = segment::replay(dir, |ev| match ev {
        Event::Entry { payload, leaf, .. } => v.entry(payload, Some(leaf)),
        Event::Commit { note, .. } => v.checkpoint(note),
    })
    .map_err(|e| match e {
        ReplayError::Io(e) => VerifyError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        },
        ReplayError::Corrupt(c) => VerifyError::CorruptSegment {
            segment: c.segment,
            offset: c.offset,
            index: c.index,
            reason: c.reason,
        },
        ReplayError::Sink(e) => e,
    })?;
    let mut report = v.finish()?;
    report.torn_tail_bytes = tail.file_len.saturating_sub(tail.keep_len);
    report.uncommitted_entries = tail.uncommitted_entries;
    Ok(report)
}
