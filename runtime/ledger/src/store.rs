//! The durable ledger: segments on disk, the Merkle tree in memory, a sled index of what
//! is derived.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::entry::Entry;
use crate::error::DecodeError;
use crate::indexer::{BatchJob, Indexer, Writes};
use crate::merkle::{Hash, MerkleTree, ProofError};
use crate::note::{Checkpoint, NoteError, SigningKey};
use crate::segment::{
    self, Corruption, Event, Loc, ReplayError, SEGMENT_HEADER_LEN, segment_header, segment_path,
    sync_dir,
};

/// Origin line used when none is configured.
pub const DEFAULT_ORIGIN: &str = "femtoclaw.local/ledger";

/// Segment size at which a new segment is started, by default.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// Why a ledger operation failed.
#[derive(Debug, Clone, Error)]
pub enum LedgerError {
    /// An I/O operation failed.
    #[error("{op} `{path}`: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: String,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// Committed data is damaged (not a torn tail): the ledger refuses to open.
    #[error("segment {segment:08} is corrupt at byte {offset} (entry {index}): {reason}")]
    Corrupt {
        /// Segment number.
        segment: u32,
        /// Byte offset in the segment.
        offset: u64,
        /// Index of the first entry that cannot be read.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// Recovery would drop entries that the index records as acknowledged.
    #[error("acknowledged entries lost: {committed} were committed, {found} are readable")]
    AcknowledgedEntriesLost {
        /// Entries the index records as committed.
        committed: u64,
        /// Entries readable from the segments.
        found: u64,
    },
    /// The ledger holds fewer entries than the latest checkpoint recorded outside it: it was
    /// rolled back (a segment cut, an older copy restored).
    #[error(
        "the ledger went backwards: `{head}` records a checkpoint of {size} entries, the ledger holds {found}; restore the ledger, or remove `{head}` to accept the loss"
    )]
    WentBackwards {
        /// The head record.
        head: String,
        /// Entries its checkpoint covers.
        size: u64,
        /// Entries the ledger holds.
        found: u64,
    },
    /// The ledger's root at the size of the checkpoint recorded outside it is another: the
    /// ledger was rewritten or replaced.
    #[error(
        "the ledger is not the one `{head}` records: its root at tree size {size} differs (rewritten or replaced)"
    )]
    NotTheRecordedLedger {
        /// The head record.
        head: String,
        /// Entries its checkpoint covers.
        size: u64,
    },
    /// The head record is not a checkpoint note.
    #[error("`{head}` is not a checkpoint note: {source}")]
    BadHead {
        /// The head record.
        head: String,
        /// Why.
        source: NoteError,
    },
    /// The sled index failed.
    #[error("index: {0}")]
    Index(String),
    /// An entry cannot be encoded or is too large.
    #[error("entry {position} of the batch is too large to record")]
    EntryTooLarge {
        /// Position in the batch.
        position: usize,
    },
    /// A stored entry does not decode.
    #[error("entry {index} does not decode: {source}")]
    Decode {
        /// Entry index.
        index: u64,
        /// Why.
        source: DecodeError,
    },
    /// No entry has this index.
    #[error("no entry {index} (the ledger has {len})")]
    NoSuchEntry {
        /// Index asked for.
        index: u64,
        /// Entries in the ledger.
        len: u64,
    },
    /// No checkpoint covers what was asked.
    #[error("no checkpoint covers entry {index}")]
    NotCheckpointed {
        /// Index asked for.
        index: u64,
    },
    /// A proof cannot be made.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// A checkpoint cannot be signed or read.
    #[error("checkpoint: {0}")]
    Note(#[from] NoteError),
    /// An earlier write failed and could not be undone; reopen the ledger.
    #[error("ledger is unusable after a failed write; reopen it")]
    Poisoned,
    /// The group-commit writer has stopped.
    #[error("ledger writer has stopped")]
    WriterStopped,
}

/// Largest batch buffer kept for the next batch.
const MAX_SCRATCH: usize = 4 << 20;

/// The most memory the index's page cache holds: the index grows with the ledger, the host's
/// memory must not (sled's own default is 1 GiB).
pub const INDEX_CACHE_BYTES: u64 = 16 << 20;

fn open_index(dir: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(INDEX_CACHE_BYTES)
        .open()
}

pub(crate) fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> LedgerError + use<> {
    let path = path.display().to_string();
    move |e| LedgerError::Io {
        op,
        path,
        source: Arc::new(e),
    }
}

impl From<Corruption> for LedgerError {
    fn from(c: Corruption) -> Self {
        LedgerError::Corrupt {
            segment: c.segment,
            offset: c.offset,
            index: c.index,
            reason: c.reason,
        }
    }
}

/// How a ledger is opened.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Checkpoint origin line.
    pub origin: String,
    /// Key that signs one checkpoint per batch; without one, checkpoints are unsigned
    /// and the ledger cannot be verified against a key.
    pub signing_key: Option<SigningKey>,
    /// Size at which a new segment is started.
    pub segment_size: u64,
    /// Where the ledger keeps a copy of its latest checkpoint note, outside its directory
    /// and its derived index (rewritten after every commit, not synced: it may lag, never
    /// lead). Opening refuses a ledger that holds fewer entries than that checkpoint, or
    /// another root at its size.
    pub head: Option<PathBuf>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            origin: DEFAULT_ORIGIN.to_owned(),
            signing_key: None,
            segment_size: DEFAULT_SEGMENT_SIZE,
            head: None,
        }
    }
}

impl LedgerOptions {
    /// Default options with a signing key.
    pub fn with_key(key: SigningKey) -> Self {
        Self {
            signing_key: Some(key),
            ..Self::default()
        }
    }
}

/// One key and value of the sled index.
pub type IndexPair = (Vec<u8>, Vec<u8>);

/// What opening the ledger found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the tail of the last segment (torn or never acknowledged).
    pub truncated_bytes: u64,
    /// Complete entry records cut because no commit record followed them.
    pub truncated_entries: u64,
    /// Segment that was cut, if any.
    pub segment: Option<u32>,
    /// Why the tail was cut.
    pub reason: Option<String>,
    /// Entries (re)indexed into sled because the index lagged behind the segments.
    pub reindexed: u64,
    /// Whether the sled index was unreadable and rebuilt from scratch.
    pub index_rebuilt: bool,
    /// Invocations with a start and no end, in number order: the host stopped while they
    /// ran, after their entries were written ahead of an effect. The host records how each
    /// ended (see `femtoclaw-sandbox`'s `record::interrupted`).
    pub unfinished: Vec<u64>,
}

/// What a durable append produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Leaf index of the first entry appended.
    pub first_index: u64,
    /// Leaf hashes of the entries appended, in order (their indexes are consecutive
    /// from `first_index`).
    pub leaf_hashes: Vec<Hash>,
    /// Tree size after the batch.
    pub tree_size: u64,
    /// Root after the batch.
    pub root: Hash,
    /// The checkpoint note for the batch (signed when a key is configured).
    pub checkpoint: String,
}

impl Receipt {
    /// Leaf indexes of the entries appended.
    pub fn indexes(&self) -> std::ops::Range<u64> {
        self.first_index..self.first_index + self.leaf_hashes.len() as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct CommitInfo {
    size: u64,
    loc: Loc,
}

/// An open ledger directory. One writer at a time (see [`crate::LedgerWriter`] for a
/// shared, group-committing front).
pub struct Ledger {
    dir: PathBuf,
    opts: LedgerOptions,
    /// One handle per segment; the last is the active one, opened for writing.
    files: Vec<File>,
    active_len: u64,
    active_first: u64,
    locations: Vec<Loc>,
    tree: MerkleTree,
    commits: Vec<CommitInfo>,
    latest_note: Option<String>,
    index: sled::Db,
    indexer: Indexer,
    next_invocation: u64,
    poisoned: bool,
    /// Large bytes of entries, by digest.
    blobs: crate::BlobStore,
    /// The buffer a batch is encoded into, kept between batches so that a batch does
    /// not allocate (and fault in) a fresh one.
    scratch: Vec<u8>,
    /// How long the last batch took to write and fdatasync.
    last_sync: std::time::Duration,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.dir)
            .field("len", &self.len())
            .field("segments", &self.files.len())
            .finish_non_exhaustive()
    }
}

pub(crate) mod key {
    pub(crate) const META_INDEXED: &[u8] = b"m:indexed";
    pub(crate) const META_COMMITTED: &[u8] = b"m:committed";
    pub(crate) const META_NEXT_INVOCATION: &[u8] = b"m:next-invocation";
    pub(crate) const META_LATEST_CHECKPOINT: &[u8] = b"m:latest-checkpoint";

    pub(crate) fn entry(index: u64) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = b'i';
        k[1..].copy_from_slice(&index.to_be_bytes());
        k
    }

    pub(crate) fn invocation(inv: u64, index: u64) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[0] = b'v';
        k[1..9].copy_from_slice(&inv.to_be_bytes());
        k[9..].copy_from_slice(&index.to_be_bytes());
        k
    }

    pub(crate) fn invocation_prefix(inv: u64) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = b'v';
        k[1..].copy_from_slice(&inv.to_be_bytes());
        k
    }

    pub(crate) fn checkpoint(size: u64) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = b'c';
        k[1..].copy_from_slice(&size.to_be_bytes());
        k
    }
}

fn sled_err(e: sled::Error) -> LedgerError {
    LedgerError::Index(e.to_string())
}

/// Refuses a ledger (its tree of `committed` entries) that went back behind, or away from, the
/// checkpoint recorded in `head`; a missing head record is the first open.
fn check_head(head: &Path, tree: &MerkleTree, committed: u64) -> Result<(), LedgerError> {
    let text = match std::fs::read_to_string(head) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", head)(e)),
    };
    let shown = head.display().to_string();
    let cp = Checkpoint::parse_unverified(&text).map_err(|source| LedgerError::BadHead {
        head: shown.clone(),
        source,
    })?;
    match tree.root_at(cp.size) {
        Some(root) if root == cp.root => Ok(()),
        Some(_) => Err(LedgerError::NotTheRecordedLedger {
            head: shown,
            size: cp.size,
        }),
        None => Err(LedgerError::WentBackwards {
            head: shown,
            size: cp.size,
            found: committed,
        }),
    }
}

fn read_u64(db: &sled::Db, k: &[u8]) -> Result<Option<u64>, LedgerError> {
    Ok(db
        .get(k)
        .map_err(sled_err)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_le_bytes))
}

impl Ledger {
    /// How long the last batch appended took to write and fdatasync (telemetry).
    pub fn last_sync_time(&self) -> std::time::Duration {
        self.last_sync
    }

    /// Opens (or creates) the ledger in `dir`: replays the segments, verifies every
    /// record checksum, cuts a torn or unacknowledged tail (reported in [`Recovery`]),
    /// rebuilds the Merkle tree and brings the sled index up to date.
    pub fn open(dir: &Path, opts: LedgerOptions) -> Result<(Ledger, Recovery), LedgerError> {
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(io_err("create", &seg_dir))?;
        let mut recovery = Recovery::default();

        let mut locations = Vec::new();
        let mut tree = MerkleTree::new();
        let mut commits = Vec::new();
        let mut latest_note: Option<String> = None;
        let mut unfinished = std::collections::BTreeSet::new();
        let tail = segment::replay::<LedgerError>(dir, |ev| {
            match ev {
                Event::Entry { loc, leaf, payload } => {
                    locations.push(loc);
                    tree.push(leaf);
                    match Entry::peek_boundary(payload) {
                        Some((true, invocation)) => unfinished.insert(invocation),
                        Some((false, invocation)) => unfinished.remove(&invocation),
                        None => false,
                    };
                }
                Event::Commit { size, loc, note } => {
                    // The commit must describe the tree it closes.
                    let text = std::str::from_utf8(note).map_err(|_| LedgerError::Corrupt {
                        segment: loc.segment,
                        offset: loc.offset,
                        index: size,
                        reason: "checkpoint is not utf-8".to_owned(),
                    })?;
                    let cp = Checkpoint::parse_unverified(text)?;
                    if cp.size != size || Some(cp.root) != tree.root_at(size) {
                        return Err(LedgerError::Corrupt {
                            segment: loc.segment,
                            offset: loc.offset,
                            index: size,
                            reason: "checkpoint does not match the entries before it".to_owned(),
                        });
                    }
                    commits.push(CommitInfo { size, loc });
                    latest_note = Some(text.to_owned());
                }
            }
            Ok(())
        })
        .map_err(|e| match e {
            ReplayError::Io(e) => LedgerError::Io {
                op: "read",
                path: seg_dir.display().to_string(),
                source: Arc::new(e),
            },
            ReplayError::Corrupt(c) => c.into(),
            ReplayError::Sink(e) => e,
        })?;

        // The index: derived, rebuilt when unreadable.
        let index_dir = dir.join("index");
        let index = match open_index(&index_dir) {
            Ok(db) => db,
            Err(_) => {
                recovery.index_rebuilt = true;
                std::fs::remove_dir_all(&index_dir).map_err(io_err("remove", &index_dir))?;
                open_index(&index_dir).map_err(sled_err)?
            }
        };
        recovery.unfinished = unfinished.into_iter().collect();
        if let Some(head) = &opts.head {
            check_head(head, &tree, tail.size)?;
        }
        let committed = read_u64(&index, key::META_COMMITTED)?.unwrap_or(0);
        if committed > tail.size {
            return Err(LedgerError::AcknowledgedEntriesLost {
                committed,
                found: tail.size,
            });
        }

        // Cut the tail.
        let mut files = Vec::new();
        let numbers = segment::list_segments(dir).map_err(io_err("list", &seg_dir))?;
        for &n in &numbers {
            let p = segment_path(dir, n);
            let is_last = Some(n) == tail.segment;
            if is_last && tail.keep_len < tail.file_len {
                recovery.truncated_bytes = tail.file_len - tail.keep_len;
                recovery.truncated_entries = tail.uncommitted_entries;
                recovery.segment = Some(n);
                recovery.reason.clone_from(&tail.reason);
                if tail.keep_len < SEGMENT_HEADER_LEN {
                    std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
                    sync_dir(&seg_dir).map_err(io_err("sync", &seg_dir))?;
                    continue;
                }
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .map_err(io_err("open", &p))?;
                f.set_len(tail.keep_len).map_err(io_err("truncate", &p))?;
                f.sync_all().map_err(io_err("sync", &p))?;
                files.push(f);
                continue;
            }
            let f = OpenOptions::new()
                .read(true)
                .write(is_last)
                .open(&p)
                .map_err(io_err("open", &p))?;
            files.push(f);
        }

        let mut ledger = Ledger {
            dir: dir.to_path_buf(),
            opts,
            files,
            active_len: 0,
            active_first: 0,
            locations,
            tree,
            commits,
            latest_note,
            indexer: Indexer::new(index.clone()),
            index,
            next_invocation: 0,
            poisoned: false,
            blobs: crate::BlobStore::new(dir),
            scratch: Vec::new(),
            last_sync: std::time::Duration::ZERO,
        };
        ledger.open_active()?;

        // Bring the index up to date.
        let indexed = read_u64(&ledger.index, key::META_INDEXED)?.unwrap_or(0);
        let stored_next = read_u64(&ledger.index, key::META_NEXT_INVOCATION)?.unwrap_or(0);
        ledger.next_invocation = stored_next;
        if indexed > ledger.len() {
            ledger.reindex()?;
            recovery.reindexed = ledger.len();
        } else if indexed < ledger.len() {
            ledger.index_range(indexed, ledger.len())?;
            recovery.reindexed = ledger.len() - indexed;
        }
        if let Some(note) = &ledger.latest_note {
            ledger.write_head(note);
        }
        Ok((ledger, recovery))
    }

    /// Rewrites the head record (when configured) with `note`. A record that could not be
    /// written lags behind until the next commit writes it: the check it serves is weaker
    /// meanwhile, never wrong.
    fn write_head(&self, note: &str) {
        let Some(head) = &self.opts.head else {
            return;
        };
        let tmp = head.with_extension("tmp");
        if std::fs::write(&tmp, note).is_ok() {
            let _ = std::fs::rename(&tmp, head);
        }
    }

    /// Makes sure the last segment is open for writing (creating segment 0 if none).
    fn open_active(&mut self) -> Result<(), LedgerError> {
        if self.files.is_empty() {
            return self.start_segment(0, 0);
        }
        let number = self.files.len() - 1;
        let p = segment_path(&self.dir, number as u32);
        // Reopen the last segment for writing (it may have been opened read-only).
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        self.active_len = f.metadata().map_err(io_err("stat", &p))?.len();
        let mut hdr = [0u8; 16];
        f.read_exact_at(&mut hdr, 0).map_err(io_err("read", &p))?;
        self.active_first = u64::from_le_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]);
        if let Some(last) = self.files.last_mut() {
            *last = f;
        }
        Ok(())
    }

    fn start_segment(&mut self, number: u32, first_index: u64) -> Result<(), LedgerError> {
        // The segment this one seals is only read from now on: its handle is replaced by a
        // read-only one before anything else changes.
        if let Some(sealed) = number.checked_sub(1)
            && !self.files.is_empty()
        {
            let p = segment_path(&self.dir, sealed);
            let f = File::open(&p).map_err(io_err("open", &p))?;
            if let Some(last) = self.files.last_mut() {
                *last = f;
            }
        }
        let p = segment_path(&self.dir, number);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(io_err("create", &p))?;
        f.write_all_at(&segment_header(first_index), 0)
            .map_err(io_err("write", &p))?;
        f.sync_all().map_err(io_err("sync", &p))?;
        let seg_dir = self.dir.join("segments");
        sync_dir(&seg_dir).map_err(io_err("sync", &seg_dir))?;
        self.files.push(f);
        self.active_len = SEGMENT_HEADER_LEN;
        self.active_first = first_index;
        Ok(())
    }

    /// The directory the ledger lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &LedgerOptions {
        &self.opts
    }

    /// Replaces (or removes) the checkpoint signing key for later batches. Record the
    /// rotation with an [`Entry::KeyChange`].
    pub fn set_signing_key(&mut self, key: Option<SigningKey>) {
        self.opts.signing_key = key;
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.locations.len() as u64
    }

    /// Whether the ledger holds no entry.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The Merkle tree over all entries.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// A new invocation number (greater than any recorded or handed out before).
    pub fn next_invocation(&mut self) -> u64 {
        let n = self.next_invocation;
        self.next_invocation += 1;
        n
    }

    /// The next invocation number that [`Ledger::next_invocation`] would hand out.
    pub fn peek_next_invocation(&self) -> u64 {
        self.next_invocation
    }

    /// Appends a batch durably: writes every entry and one checkpoint for the batch,
    /// fdatasyncs once, and only then updates the tree and the index. When this returns
    /// `Ok`, the entries survive a crash.
    ///
    /// Bytes of at least [`crate::BLOB_THRESHOLD`] in the entries' values are stored durably
    /// beside the ledger first, and the entries refer to them by digest.
    pub fn append_batch(&mut self, mut entries: Vec<Entry>) -> Result<Receipt, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        for entry in &mut entries {
            for (sha256, bytes) in entry.externalize(crate::BLOB_THRESHOLD) {
                self.blobs.put(&sha256, &bytes)?;
            }
        }
        let first_index = self.len();
        if entries.is_empty() {
            return Ok(Receipt {
                first_index,
                leaf_hashes: Vec::new(),
                tree_size: first_index,
                root: self.root(),
                checkpoint: self.latest_note.clone().unwrap_or_default(),
            });
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.reserve(entries.len() * 256 + 256);
        let mut leaves = Vec::with_capacity(entries.len());
        let mut offsets = Vec::with_capacity(entries.len());
        let mut invocations = Vec::with_capacity(entries.len());
        for (position, e) in entries.iter().enumerate() {
            let (at, len, leaf) =
                segment::push_entry(&mut buf, e).ok_or(LedgerError::EntryTooLarge { position })?;
            offsets.push((at, len));
            leaves.push(leaf);
            invocations.push(e.invocation());
        }
        // Tentatively grow the tree to sign the checkpoint for the batch.
        for l in &leaves {
            self.tree.push(*l);
        }
        let size = self.tree.len();
        let root = self.tree.root();
        let result = self.write_batch(&mut buf, &offsets, size, root);
        if buf.capacity() <= MAX_SCRATCH {
            self.scratch = buf;
        }
        let (note, entry_locs, commit_loc) = match result {
            Ok(v) => v,
            Err(e) => {
                self.tree.truncate(first_index);
                return Err(e);
            }
        };
        self.locations.extend_from_slice(&entry_locs);
        self.commits.push(CommitInfo {
            size,
            loc: commit_loc,
        });
        for inv in invocations.iter().flatten() {
            if *inv >= self.next_invocation {
                self.next_invocation = inv + 1;
            }
        }
        self.index_batch(BatchJob {
            first_index,
            locs: entry_locs,
            invocations,
            size,
            commit_loc,
            next_invocation: self.next_invocation,
            note: note.clone(),
        })?;
        self.write_head(&note);
        self.latest_note = Some(note.clone());
        Ok(Receipt {
            first_index,
            leaf_hashes: leaves,
            tree_size: size,
            root,
            checkpoint: note,
        })
    }

    /// Signs, writes and syncs; on failure, cuts the file back to where it was.
    fn write_batch(
        &mut self,
        buf: &mut Vec<u8>,
        offsets: &[(usize, u32)],
        size: u64,
        root: Hash,
    ) -> Result<(String, Vec<Loc>, Loc), LedgerError> {
        let cp = Checkpoint {
            origin: self.opts.origin.clone(),
            size,
            root,
        };
        let note = match &self.opts.signing_key {
            Some(k) => k.sign_checkpoint(&cp)?,
            None => cp.to_text(),
        };
        let commit_at = segment::push_commit_record(buf, note.as_bytes());

        // Rotate before the batch if it would overflow the segment; a batch never spans
        // two segments.
        if self.active_len > SEGMENT_HEADER_LEN
            && self.active_len + buf.len() as u64 > self.opts.segment_size
        {
            let number = self.files.len() as u32;
            let first = self.len();
            self.start_segment(number, first)?;
        }
        let number = (self.files.len() - 1) as u32;
        let p = segment_path(&self.dir, number);
        let base = self.active_len;
        let Some(file) = self.files.last() else {
            return Err(LedgerError::Poisoned);
        };
        let syncing = std::time::Instant::now();
        let written = file.write_all_at(buf, base).and_then(|()| file.sync_data());
        self.last_sync = syncing.elapsed();
        if let Err(e) = written {
            // Undo: nothing of this batch may stay on disk after an error is returned.
            if file.set_len(base).and_then(|()| file.sync_data()).is_err() {
                self.poisoned = true;
            }
            return Err(io_err("append", &p)(e));
        }
        self.active_len = base + buf.len() as u64;
        let locs = offsets
            .iter()
            .map(|&(at, len)| Loc {
                segment: number,
                offset: base + at as u64,
                len,
            })
            .collect();
        let commit_loc = Loc {
            segment: number,
            offset: base + commit_at as u64,
            len: note.len() as u32,
        };
        Ok((note, locs, commit_loc))
    }

    fn index_batch(&mut self, job: BatchJob) -> Result<(), LedgerError> {
        if let Err(job) = self.indexer.submit(job) {
            let mut writes = Writes::default();
            writes.add(&job);
            writes.apply(&self.index).map_err(sled_err)?;
        }
        Ok(())
    }

    /// Waits for the background indexer; reports a failure it met.
    fn sync_index(&self) -> Result<(), LedgerError> {
        self.indexer.sync().map_err(LedgerError::Index)
    }

    /// Indexes entries `[from, to)` and the commits after `from` (used on open).
    fn index_range(&mut self, from: u64, to: u64) -> Result<(), LedgerError> {
        let mut b = Writes::default();
        let mut next_inv = self.next_invocation;
        for index in from..to {
            let loc = self.loc(index)?;
            b.insert(&key::entry(index), &loc.to_bytes());
            if let Some(inv) = self.get(index)?.invocation() {
                b.insert(&key::invocation(inv, index), &[]);
                next_inv = next_inv.max(inv + 1);
            }
        }
        for c in self.commits.iter().filter(|c| c.size > from) {
            b.insert(&key::checkpoint(c.size), &c.loc.to_bytes());
        }
        self.next_invocation = next_inv;
        b.insert(key::META_INDEXED, &to.to_le_bytes());
        b.insert(key::META_COMMITTED, &to.to_le_bytes());
        b.insert(key::META_NEXT_INVOCATION, &next_inv.to_le_bytes());
        if let Some(n) = &self.latest_note {
            b.insert(key::META_LATEST_CHECKPOINT, n.as_bytes());
        }
        b.apply(&self.index).map_err(sled_err)?;
        self.index.flush().map_err(sled_err)?;
        Ok(())
    }

    /// Rebuilds the sled index from the segments alone. Returns the number of entries
    /// indexed.
    pub fn reindex(&mut self) -> Result<u64, LedgerError> {
        self.sync_index()?;
        self.index.clear().map_err(sled_err)?;
        self.next_invocation = 0;
        self.index_range(0, self.len())?;
        Ok(self.len())
    }

    /// Every key and value of the sled index, in key order (for diagnostics and tests).
    pub fn index_snapshot(&self) -> Result<Vec<IndexPair>, LedgerError> {
        self.sync_index()?;
        self.index
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sled_err))
            .collect()
    }

    /// Flushes the sled index to disk (it is derived: losing it never loses an entry).
    pub fn flush_index(&self) -> Result<(), LedgerError> {
        self.sync_index()?;
        self.index.flush().map(|_| ()).map_err(sled_err)
    }

    fn loc(&self, index: u64) -> Result<Loc, LedgerError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.locations.get(i))
            .copied()
            .ok_or(LedgerError::NoSuchEntry {
                index,
                len: self.len(),
            })
    }

    fn read_loc(&self, loc: Loc) -> Result<Vec<u8>, LedgerError> {
        let p = segment_path(&self.dir, loc.segment);
        let f = self
            .files
            .get(loc.segment as usize)
            .ok_or_else(|| LedgerError::Corrupt {
                segment: loc.segment,
                offset: loc.offset,
                index: 0,
                reason: "segment missing".to_owned(),
            })?;
        let mut buf = vec![0u8; loc.len as usize];
        f.read_exact_at(&mut buf, loc.offset)
            .map_err(io_err("read", &p))?;
        Ok(buf)
    }

    /// The canonical bytes of entry `index`.
    pub fn get_bytes(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        self.read_loc(self.loc(index)?)
    }

    /// Entry `index`.
    pub fn get(&self, index: u64) -> Result<Entry, LedgerError> {
        let bytes = self.get_bytes(index)?;
        Entry::decode(&bytes).map_err(|source| LedgerError::Decode { index, source })
    }

    /// Up to `limit` entries from `from` on, with their indexes.
    pub fn iter(&self, from: u64, limit: usize) -> Result<Vec<(u64, Entry)>, LedgerError> {
        let end = from.saturating_add(limit as u64).min(self.len());
        (from..end).map(|i| Ok((i, self.get(i)?))).collect()
    }

    /// Indexes of the entries recorded for an invocation, in order (from the index).
    pub fn invocation_entries(&self, invocation: u64) -> Result<Vec<u64>, LedgerError> {
        self.sync_index()?;
        self.index
            .scan_prefix(key::invocation_prefix(invocation))
            .keys()
            .map(|k| {
                let k = k.map_err(sled_err)?;
                let b = k
                    .get(9..17)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .ok_or_else(|| LedgerError::Index("malformed invocation key".to_owned()))?;
                Ok(u64::from_be_bytes(b))
            })
            .collect()
    }

    /// The latest checkpoint note, byte-exact (signed when a key was configured).
    pub fn latest_checkpoint(&self) -> Option<&str> {
        self.latest_note.as_deref()
    }

    /// Every checkpoint note, oldest first, byte-exact.
    pub fn checkpoints(&self) -> Result<Vec<String>, LedgerError> {
        self.commits
            .iter()
            .map(|c| {
                let b = self.read_loc(c.loc)?;
                String::from_utf8(b).map_err(|_| LedgerError::Corrupt {
                    segment: c.loc.segment,
                    offset: c.loc.offset,
                    index: c.size,
                    reason: "checkpoint is not utf-8".to_owned(),
                })
            })
            .collect()
    }

    /// Tree sizes at which checkpoints were made, oldest first.
    pub fn checkpoint_sizes(&self) -> Vec<u64> {
        self.commits.iter().map(|c| c.size).collect()
    }

    /// Inclusion proof for entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        Ok(self.tree.inclusion_proof(index, size)?)
    }

    /// Consistency proof between the trees of `size1` and `size2` entries.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, LedgerError> {
        Ok(self.tree.consistency_proof(size1, size2)?)
    }

    /// An inclusion proof for entry `index` against the latest checkpoint, in the C2SP
    /// `tlog-proof@v1` text form, with the entry's bytes as the `extra` line.
    pub fn prove(&self, index: u64) -> Result<String, LedgerError> {
        let note = self
            .latest_note
            .as_deref()
            .ok_or(LedgerError::NotCheckpointed { index })?;
        let size = self.commits.last().map_or(0, |c| c.size);
        if index >= size {
            return Err(LedgerError::NotCheckpointed { index });
        }
        let bytes = self.get_bytes(index)?;
        let proof = self.tree.inclusion_proof(index, size)?;
        Ok(crate::proof::format_proof(index, &bytes, &proof, note))
    }

    /// Writes a self-contained export (entries and checkpoints) to `path`; see
    /// `docs/ledger-format.md`.
    pub fn export(&self, path: &Path) -> Result<(), LedgerError> {
        let mut entries: Vec<Vec<u8>> = Vec::with_capacity(self.locations.len());
        let mut current: Option<(u32, Vec<u8>)> = None;
        for &loc in &self.locations {
            if current.as_ref().map(|c| c.0) != Some(loc.segment) {
                let p = segment_path(&self.dir, loc.segment);
                let bytes = std::fs::read(&p).map_err(io_err("read", &p))?;
                current = Some((loc.segment, bytes));
            }
            let bytes = current
                .as_ref()
                .and_then(|(_, b)| {
                    let start = usize::try_from(loc.offset).ok()?;
                    b.get(start..start + loc.len as usize)
                })
                .ok_or_else(|| LedgerError::Corrupt {
                    segment: loc.segment,
                    offset: loc.offset,
                    index: 0,
                    reason: "record beyond the end of the segment".to_owned(),
                })?;
            entries.push(bytes.to_vec());
        }
        let checkpoints = self.checkpoints()?;
        let blobs = self.blobs_of(&entries)?;
        crate::export::write_export_file(path, &entries, &checkpoints, &[], &blobs)
            .map_err(io_err("export", path))
    }

    /// The blobs stored beside this ledger.
    pub fn blobs(&self) -> &crate::BlobStore {
        &self.blobs
    }

    /// The blobs the canonical entries `entries` refer to, each once, in first-use order; a
    /// missing or damaged one is an error naming it and the first entry referring to it.
    pub fn blobs_of(
        &self,
        entries: &[impl AsRef<[u8]>],
    ) -> Result<Vec<crate::DigestedBytes>, LedgerError> {
        let mut out = Vec::new();
        self.each_blob(entries.iter().map(AsRef::as_ref), |sha, bytes| {
            out.push((sha, bytes));
        })?;
        Ok(out)
    }

    /// Calls `f` with each blob `entries` refer to, once each, in first-use order.
    fn each_blob<'a>(
        &self,
        entries: impl Iterator<Item = &'a [u8]>,
        mut f: impl FnMut([u8; 32], Vec<u8>),
    ) -> Result<(), LedgerError> {
        let mut seen = std::collections::HashSet::new();
        for (index, bytes) in entries.enumerate() {
            let entry = Entry::decode(bytes).map_err(|source| LedgerError::Decode {
                index: index as u64,
                source,
            })?;
            for sha in entry.blob_refs() {
                if seen.insert(sha) {
                    let blob = self.blobs.get(&sha)?.ok_or_else(|| LedgerError::Corrupt {
                        segment: 0,
                        offset: 0,
                        index: index as u64,
                        reason: format!("blob {} is missing or damaged", hex::encode(sha)),
                    })?;
                    f(sha, blob);
                }
            }
        }
        Ok(())
    }
}
