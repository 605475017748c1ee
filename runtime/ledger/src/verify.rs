//! Offline verification with no trust in the log: recompute every leaf hash and root,
//! check every checkpoint's signature against PINNED keys, check that consecutive
//! checkpoints are consistent, and name the first bad position.

use std::path::Path;
use std::sync::mpsc;

use thiserror::Error;

use crate::entry::Entry;
use crate::error::DecodeError;
use crate::export::{Export, parse_export};
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
    /// Checkpoints seen before (signed notes, opened with the pinned keys when there are
    /// any): the log must hold each one, at least as many entries and the same root at its
    /// size, so that a log rolled back or forked since is caught.
    pub checkpoints: Vec<String>,
}

impl VerifyOptions {
    /// Options pinning one key.
    pub fn with_key(key: VerifierKey) -> Self {
        Self {
            keys: vec![key],
            ..Self::default()
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
    /// Checkpoints that carry signatures nobody checked (no key was pinned): 0 when
    /// signatures were checked or every checkpoint is bare, so that a caller can refuse to
    /// call a signed log verified without a key.
    pub unchecked_signed: u64,
    /// Directory only: bytes of an unacknowledged torn tail, not verified.
    pub torn_tail_bytes: u64,
    /// Directory only: complete entries after the last commit (never acknowledged),
    /// not verified.
    pub uncommitted_entries: u64,
}

/// Why verification failed, naming the first bad position.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// A human approval breaks the rules: asked twice, decided twice or for another call, or
    /// an invocation spends one that was not granted for it, or was spent before.
    #[error("entry {index}: {reason}")]
    Approval {
        /// The entry's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
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
    /// A checkpoint is not signed by the key in force at its position. The log hands over from
    /// key to key with the key changes it records (each signed under the key it retires), so a
    /// retired key, even a pinned one, signs nothing after its rotation.
    #[error(
        "checkpoint {checkpoint} (tree size {size}) is not signed by the key in force there, `{key}` (named by entry {index}); a retired key signs nothing after its rotation"
    )]
    NotKeyInForce {
        /// Checkpoint position.
        checkpoint: u64,
        /// Tree size it claims.
        size: u64,
        /// The key in force, in C2SP vkey form.
        key: String,
        /// The key change that put it in force.
        index: u64,
    },
    /// A key change hands over to a verifier key that does not parse.
    #[error("entry {index} hands over to a verifier key that does not parse: {reason}")]
    BadKeyChange {
        /// Entry index.
        index: u64,
        /// Why.
        reason: String,
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
    /// A pinned checkpoint does not parse, or is not signed by a pinned key.
    #[error("pinned checkpoint {pinned} does not verify: {source}")]
    BadPinned {
        /// Its position among the pinned checkpoints.
        pinned: usize,
        /// Why.
        source: NoteError,
    },
    /// The log is smaller than a checkpoint seen before: it went backwards.
    #[error(
        "the log went backwards: it has {entries} entries, pinned checkpoint {pinned} covers {size}"
    )]
    RolledBack {
        /// Its position among the pinned checkpoints.
        pinned: usize,
        /// Tree size it covers.
        size: u64,
        /// Entries present.
        entries: u64,
    },
    /// The log's root at a pinned checkpoint's size is another: it was rewritten or forked.
    #[error(
        "the log is not consistent with pinned checkpoint {pinned}: its root at tree size {size} differs"
    )]
    NotConsistentWithPinned {
        /// Its position among the pinned checkpoints.
        pinned: usize,
        /// Tree size it covers.
        size: u64,
    },
    /// A component's bytes do not hash to its recorded digest.
    #[error("component {index} does not match its sha256")]
    ComponentDigest {
        /// Component position.
        index: u64,
    },
    /// A blob's bytes do not hash to the digest entries refer to it by.
    #[error("blob {index} does not match its sha256")]
    BlobDigest {
        /// Blob position.
        index: u64,
    },
    /// A blob the entries refer to is not beside the ledger, or holds other bytes.
    #[error("blob {sha256} (referred to by entry {index}) is missing or does not match its sha256")]
    MissingBlob {
        /// The blob's digest, hex.
        sha256: String,
        /// The first entry referring to it.
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
    /// Checkpoints carrying signatures that were not checked (no key pinned).
    unchecked_signed: u64,
    last: Option<(u64, u64, Hash)>, // (position, size, root)
    origin: Option<String>,
    /// The key changes seen so far (only when keys are pinned), in log order.
    handovers: Vec<Handover>,
    /// The human approvals seen so far.
    audit: crate::audit::Audit,
}

/// A key change of the log: the entry's index, whether it names the ledger's first key (it
/// replaces none), and the key it hands over to.
struct Handover {
    index: u64,
    first: bool,
    key: VerifierKey,
}

/// A checkpoint opened by [`open_checkpoint`], with the pinned keys whose signatures on it
/// verify (positions in [`VerifyOptions::keys`]; none when no key is pinned), and whether it
/// carries signature lines at all (a bare checkpoint carries none).
struct Opened {
    checkpoint: Checkpoint,
    signers: Vec<usize>,
    signed: bool,
}

impl<'o> Verifier<'o> {
    fn new(opts: &'o VerifyOptions) -> Self {
        Self {
            opts,
            tree: MerkleTree::new(),
            checkpoints: 0,
            unchecked_signed: 0,
            last: None,
            origin: opts.origin.clone(),
            handovers: Vec::new(),
            audit: crate::audit::Audit::default(),
        }
    }

    /// The key in force for the next checkpoint: the one the last key change committed by an
    /// earlier checkpoint hands over to; before any is, the ledger's first key, named by the
    /// key change it starts with. `None` when the log names no key (then any pinned key signs).
    fn in_force(&self) -> Option<&Handover> {
        let committed = self.last.map_or(0, |l| l.1);
        self.handovers
            .iter()
            .rev()
            .find(|h| h.index < committed)
            .or_else(|| self.handovers.first().filter(|h| h.first))
    }

    fn entry(&mut self, bytes: &[u8], known_leaf: Option<Hash>) -> Result<(), VerifyError> {
        let index = self.tree.len();
        // The same verdict as a full decode, without building the entry.
        let audited =
            Entry::validate(bytes).map_err(|source| VerifyError::BadRecord { index, source })?;
        if audited {
            let entry =
                Entry::decode(bytes).map_err(|source| VerifyError::BadRecord { index, source })?;
            self.audit
                .entry(&entry)
                .map_err(|reason| VerifyError::Approval { index, reason })?;
        }
        if !self.opts.keys.is_empty()
            && let Some(change) = Entry::peek_key_change(bytes)
        {
            let change = change.map_err(|source| VerifyError::BadRecord { index, source })?;
            let key = VerifierKey::parse(&change.key).map_err(|e| VerifyError::BadKeyChange {
                index,
                reason: e.to_string(),
            })?;
            self.handovers.push(Handover {
                index,
                first: change.first,
                key,
            });
        }
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
        let opened = open_checkpoint(self.opts, self.checkpoints, note);
        self.opened_checkpoint(opened)
    }

    /// The checks that need the log so far, on a checkpoint whose note was opened by
    /// [`open_checkpoint`] (given its result, so that opening can run elsewhere).
    fn opened_checkpoint(
        &mut self,
        opened: Result<Opened, VerifyError>,
    ) -> Result<(), VerifyError> {
        let position = self.checkpoints;
        let Opened {
            checkpoint: cp,
            signers,
            signed,
        } = opened?;
        if let Some(handover) = self.in_force()
            && !signers.iter().any(|&i| self.opts.keys[i] == handover.key)
        {
            return Err(VerifyError::NotKeyInForce {
                checkpoint: position,
                size: cp.size,
                key: handover.key.to_string(),
                index: handover.index,
            });
        }
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
        if signed && self.opts.keys.is_empty() {
            self.unchecked_signed += 1;
        }
        Ok(())
    }

    fn finish(self) -> Result<VerifyReport, VerifyError> {
        let entries = self.tree.len();
        for (pinned, note) in self.opts.checkpoints.iter().enumerate() {
            let cp = open_pinned(self.opts, note)
                .map_err(|source| VerifyError::BadPinned { pinned, source })?;
            match self.tree.root_at(cp.size) {
                None => {
                    return Err(VerifyError::RolledBack {
                        pinned,
                        size: cp.size,
                        entries,
                    });
                }
                Some(root) if root != cp.root => {
                    return Err(VerifyError::NotConsistentWithPinned {
                        pinned,
                        size: cp.size,
                    });
                }
                Some(_) => {}
            }
        }
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
            unchecked_signed: self.unchecked_signed,
            torn_tail_bytes: 0,
            uncommitted_entries: 0,
        })
    }
}

/// Parses a checkpoint note and checks its signature against the pinned keys: all that
/// depends on the note alone, so it can run apart from (and in parallel with) the
/// entries. Every note is checked on its own, with a strict Ed25519 verification.
fn open_checkpoint(
    opts: &VerifyOptions,
    position: u64,
    note: &[u8],
) -> Result<Opened, VerifyError> {
    let text = std::str::from_utf8(note).map_err(|_| VerifyError::BadCheckpoint {
        checkpoint: position,
        source: NoteError::Malformed("not utf-8"),
    })?;
    let claimed = Verifier::claimed_size(position, note)?;
    if !opts.keys.is_empty()
        && crate::note::split_note(text).is_err()
        && Checkpoint::parse_text(text).is_ok()
    {
        // A bare checkpoint: signed by nobody.
        return Err(VerifyError::UnknownKey {
            checkpoint: position,
            size: claimed,
        });
    }
    if opts.keys.is_empty() {
        return Checkpoint::parse_unverified(text)
            .map(|checkpoint| Opened {
                checkpoint,
                signers: Vec::new(),
                // It parsed: either a signed note or the bare text (which holds no blank line).
                signed: crate::note::split_note(text).is_ok(),
            })
            .map_err(|source| VerifyError::BadCheckpoint {
                checkpoint: position,
                source,
            });
    }
    let mut bad_sig = false;
    let mut opened = None;
    let mut signers = Vec::new();
    for (i, k) in opts.keys.iter().enumerate() {
        match Checkpoint::open(text, k) {
            Ok(cp) => {
                opened.get_or_insert(cp);
                signers.push(i);
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
    match opened {
        Some(checkpoint) => Ok(Opened {
            checkpoint,
            signers,
            signed: true,
        }),
        None if bad_sig => Err(VerifyError::BadSignature {
            checkpoint: position,
            size: claimed,
        }),
        None => Err(VerifyError::UnknownKey {
            checkpoint: position,
            size: claimed,
        }),
    }
}

/// A pinned checkpoint, opened with a pinned key (any of them), or parsed when none is pinned.
fn open_pinned(opts: &VerifyOptions, note: &str) -> Result<Checkpoint, NoteError> {
    if opts.keys.is_empty() {
        return Checkpoint::parse_unverified(note);
    }
    let mut last = NoteError::Malformed("no pinned key");
    for key in &opts.keys {
        match Checkpoint::open(note, key) {
            Ok(cp) => return Ok(cp),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Fewest checkpoints for which opening them on a second thread pays for the thread.
const PARALLEL_MIN_CHECKPOINTS: usize = 2;

/// Verifies an export held in memory.
pub fn verify_export(bytes: &[u8], opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let export = parse_export(bytes)?;
    let notes = export.checkpoints.as_slice();
    if opts.keys.is_empty() || notes.len() < PARALLEL_MIN_CHECKPOINTS {
        return verify_parsed(&export, opts, |position, note| {
            open_checkpoint(opts, position, note)
        });
    }
    // Signature checks (the costly part of a checkpoint) run on a second thread, in log
    // order, while this one hashes entries; results are consumed in the same order as
    // the sequential verifier would compute them, so the verdict and the first bad
    // position are the same. The helper stops as soon as nobody listens.
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Result<Opened, VerifyError>>();
        let helper = std::thread::Builder::new()
            .name("femtoclaw-verify-checkpoints".to_owned())
            .spawn_scoped(s, move || {
                for (position, note) in notes.iter().enumerate() {
                    if tx
                        .send(open_checkpoint(opts, position as u64, note))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        let result = if helper.is_ok() {
            verify_parsed(&export, opts, |position, note| {
                // The helper sends one result per note, in order; if it is gone, do the
                // work here.
                rx.recv()
                    .unwrap_or_else(|_| open_checkpoint(opts, position, note))
            })
        } else {
            verify_parsed(&export, opts, |position, note| {
                open_checkpoint(opts, position, note)
            })
        };
        drop(rx);
        result
    })
}

/// The sequential verification of a parsed export; `open` gives the opened checkpoint
/// at each position, asked for once per position, in increasing order.
fn verify_parsed(
    export: &Export<'_>,
    opts: &VerifyOptions,
    mut open: impl FnMut(u64, &[u8]) -> Result<Opened, VerifyError>,
) -> Result<VerifyReport, VerifyError> {
    let mut v = Verifier::new(opts);
    let mut next_cp = 0usize;
    // The size claimed by checkpoint `next_cp`, parsed once.
    let mut claimed: Option<u64> = None;
    let n = export.entries.len();
    for i in 0..=n {
        // Check every checkpoint that closes a tree of `i` entries or fewer before
        // reading entry `i`, so that the first bad position is reported.
        while let Some(note) = export.checkpoints.get(next_cp) {
            let size = match claimed {
                Some(size) => size,
                None => *claimed.insert(Verifier::claimed_size(next_cp as u64, note)?),
            };
            if size > i as u64 {
                break;
            }
            v.opened_checkpoint(open(next_cp as u64, note))?;
            next_cp += 1;
            claimed = None;
        }
        if let Some(bytes) = export.entries.get(i) {
            v.entry(bytes, None)?;
        }
    }
    if let Some(note) = export.checkpoints.get(next_cp) {
        v.opened_checkpoint(open(next_cp as u64, note))?;
    }
    for (index, (sha, bytes)) in export.components.iter().enumerate() {
        if crate::sha256(bytes) != *sha {
            return Err(VerifyError::ComponentDigest {
                index: index as u64,
            });
        }
    }
    for (index, (sha, bytes)) in export.blobs.iter().enumerate() {
        if crate::sha256(bytes) != *sha {
            return Err(VerifyError::BlobDigest {
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
/// torn or unacknowledged tail of the last segment is reported, not verified (nor cut); damage
/// anywhere else is an error.
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let mut v = Verifier::new(opts);
    let tail = replay_dir(dir, |ev| match ev {
        Event::Entry { payload, leaf, .. } => v.entry(payload, Some(leaf)),
        Event::Commit { note, .. } => v.checkpoint(note),
    })?;
    let mut report = v.finish()?;
    report.torn_tail_bytes = tail.file_len.saturating_sub(tail.keep_len);
    report.uncommitted_entries = tail.uncommitted_entries;
    Ok(report)
}

/// The verifier keys the key changes of a ledger directory hand over to, oldest first, read
/// only: what a verifier that trusts the ledger's own history pins (the first key on first
/// use, every later one handed over under the key before it).
pub fn recorded_keys(dir: &Path) -> Result<Vec<String>, VerifyError> {
    let mut keys = Vec::new();
    let mut index = 0;
    replay_dir(dir, |ev| {
        if let Event::Entry { payload, .. } = ev {
            if let Some(change) = Entry::peek_key_change(payload) {
                let change = change.map_err(|source| VerifyError::BadRecord { index, source })?;
                keys.push(change.key);
            }
            index += 1;
        }
        Ok(())
    })?;
    Ok(keys)
}

/// Checks, read-only, that every blob the committed entries of a ledger directory refer to is
/// beside them with the bytes its digest names; returns how many there are.
pub fn verify_dir_blobs(dir: &Path) -> Result<u64, VerifyError> {
    let blobs = crate::BlobStore::new(dir);
    let mut seen = std::collections::HashSet::new();
    let mut index = 0;
    replay_dir(dir, |ev| {
        if let Event::Entry { payload, .. } = ev {
            let entry = Entry::decode(payload)
                .map_err(|source| VerifyError::BadRecord { index, source })?;
            for sha in entry.blob_refs() {
                if !seen.insert(sha) {
                    continue;
                }
                let missing = || VerifyError::MissingBlob {
                    sha256: hex::encode(sha),
                    index,
                };
                blobs
                    .get(&sha)
                    .map_err(|_| missing())?
                    .ok_or_else(missing)?;
            }
            index += 1;
        }
        Ok(())
    })?;
    Ok(seen.len() as u64)
}

/// Reads the segments of `dir` without writing anything, feeding `sink` the committed records.
fn replay_dir(
    dir: &Path,
    sink: impl FnMut(Event<'_>) -> Result<(), VerifyError>,
) -> Result<segment::Tail, VerifyError> {
    segment::replay(dir, sink).map_err(|e| match e {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ledger, LedgerOptions, SigningKey, Value};

    fn key() -> SigningKey {
        SigningKey::from_seed("femtoclaw.test/ledger", [7u8; 32]).unwrap()
    }

    /// An export with enough checkpoints for the parallel path.
    fn export() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, _) = Ledger::open(dir.path(), LedgerOptions::with_key(key())).unwrap();
        for b in 0..3 {
            let entries = (0..=(b % 2) as u32)
                .map(|seq| Entry::HostCall {
                    invocation: b,
                    seq,
                    interface: "i".into(),
                    function: "f".into(),
                    params: Value::U8(1),
                    result: Value::Bool(true),
                    fuel_remaining: 9,
                })
                .collect();
            l.append_batch(entries).unwrap();
        }
        let p = dir.path().join("x.export");
        l.export(&p).unwrap();
        std::fs::read(p).unwrap()
    }

    fn sequential(bytes: &[u8], opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
        let export = parse_export(bytes)?;
        verify_parsed(&export, opts, |position, note| {
            open_checkpoint(opts, position, note)
        })
    }

    // Verifies: FC-CRYPTO-3625
    #[test]
    fn parallel_checkpoint_checks_give_the_sequential_verdict_for_every_flipped_byte() {
        let bytes = export();
        let opts = VerifyOptions::with_key(key().verifier());
        let report = verify_export(&bytes, &opts).unwrap();
        assert!(report.checkpoints as usize >= PARALLEL_MIN_CHECKPOINTS);
        assert_eq!(Ok(report), sequential(&bytes, &opts));
        for i in 0..bytes.len() {
            let mut m = bytes.clone();
            m[i] ^= 1 << (i % 8);
            let got = verify_export(&m, &opts);
            assert!(got.is_err(), "flip at byte {i} went undetected");
            assert_eq!(got, sequential(&m, &opts), "flip at byte {i}");
        }
    }
}
