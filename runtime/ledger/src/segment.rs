//! Segment files: the write-ahead log that is the ledger's truth.
//!
//! A segment is `segments/NNNNNNNN.seg`: a 16-byte header (`FCLSEG\0\x01` then the index
//! of its first entry, u64 LE) followed by records. A record is
//!
//! ```text
//! len   u32 LE   payload length
//! kind  u8       0x00 entry, 0x02 commit
//! check [u8; 8]  SHA-256(kind ‖ payload)[..8]  (for an entry: the leaf hash's prefix)
//! payload
//! ```
//!
//! Every batch is its entries followed by one commit record whose payload is the
//! checkpoint note for the tree after the batch (signed when a key is configured). A batch
//! never spans two segments. Entries that no commit record follows were never
//! acknowledged: recovery cuts them with any torn record.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::merkle::{Hash, leaf_hash};

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"FCLSEG\0\x01";
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
pub(crate) const RECORD_HEADER_LEN: usize = 13;
/// Largest record payload accepted (an entry or a checkpoint note).
pub const MAX_RECORD_LEN: usize = 64 << 20;

pub(crate) const KIND_ENTRY: u8 = 0x00;
pub(crate) const KIND_COMMIT: u8 = 0x02;

/// Where a record's payload lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl Loc {
    pub(crate) fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.segment.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

pub(crate) fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join("segments").join(format!("{number:08}.seg"))
}

pub(crate) fn segment_header(first_index: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&first_index.to_le_bytes());
    h
}

pub(crate) fn commit_check(payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([KIND_COMMIT]);
    h.update(payload);
    h.finalize().into()
}

/// Encodes `entry` as an entry record at the end of `buf`, in place. Returns the
/// payload's offset and length within `buf` and the leaf hash, or `None` when the entry
/// is too large (then `buf` is left as it was).
pub(crate) fn push_entry(buf: &mut Vec<u8>, entry: &crate::Entry) -> Option<(usize, u32, Hash)> {
    let hdr = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    let start = buf.len();
    let (b, overflow) = entry.encode_append(std::mem::take(buf));
    *buf = b;
    let len = buf.len() - start;
    if overflow || len > MAX_RECORD_LEN {
        buf.truncate(hdr);
        return None;
    }
    let leaf = leaf_hash(buf.get(start..)?);
    let len32 = u32::try_from(len).ok()?;
    let h = buf.get_mut(hdr..start)?;
    h[..4].copy_from_slice(&len32.to_le_bytes());
    h[4] = KIND_ENTRY;
    h[5..13].copy_from_slice(&leaf[..8]);
    Some((start, len32, leaf))
}

/// Appends a commit record to `buf`; returns the payload's offset within `buf`.
pub(crate) fn push_commit_record(buf: &mut Vec<u8>, note: &[u8]) -> usize {
    let check = commit_check(note);
    push_record(buf, KIND_COMMIT, note, &check)
}

fn push_record(buf: &mut Vec<u8>, kind: u8, payload: &[u8], check: &Hash) -> usize {
    // Callers bound payloads by MAX_RECORD_LEN, which fits in a u32.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(&check[..8]);
    let at = buf.len();
    buf.extend_from_slice(payload);
    at
}

/// The segment files present, by number, in order.
pub(crate) fn list_segments(dir: &Path) -> std::io::Result<Vec<u32>> {
    let seg_dir = dir.join("segments");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&seg_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() == 8
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = stem.parse::<u32>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// One event of a replay, in log order. Entries are delivered only once the commit
/// record of their batch has been read.
pub(crate) enum Event<'a> {
    Entry {
        loc: Loc,
        payload: &'a [u8],
        leaf: Hash,
    },
    Commit {
        /// Number of entries in the log after this commit.
        size: u64,
        loc: Loc,
        note: &'a [u8],
    },
}

/// How the last segment ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    /// The last segment's number, if there is one.
    pub(crate) segment: Option<u32>,
    /// Bytes of the last segment that hold committed data (header included); 0 when the
    /// file holds no valid header.
    pub(crate) keep_len: u64,
    /// The last segment's length on disk.
    pub(crate) file_len: u64,
    /// Complete entry records after the last commit (never acknowledged).
    pub(crate) uncommitted_entries: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub(crate) reason: Option<String>,
    /// Entries committed in total.
    pub(crate) size: u64,
}

/// Corruption that is not a torn tail: acknowledged data is damaged.
#[derive(Debug, Clone)]
pub(crate) struct Corruption {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    /// Index the next entry would have had.
    pub(crate) index: u64,
    pub(crate) reason: String,
}

pub(crate) enum ReplayError<E> {
    Io(std::io::Error),
    Corrupt(Corruption),
    Sink(E),
}

/// Reads every segment in order and feeds committed records to `sink`.
pub(crate) fn replay<E>(
    dir: &Path,
    mut sink: impl FnMut(Event<'_>) -> Result<(), E>,
) -> Result<Tail, ReplayError<E>> {
    let numbers = list_segments(dir).map_err(ReplayError::Io)?;
    let mut tail = Tail::default();
    let mut size: u64 = 0;
    for (pos, &number) in numbers.iter().enumerate() {
        let is_last = pos + 1 == numbers.len();
        if u32::try_from(pos).ok() != Some(number) {
            return Err(ReplayError::Corrupt(Corruption {
                segment: number,
                offset: 0,
                index: size,
                reason: format!("segment numbers are not contiguous (expected {pos:08})"),
            }));
        }
        let bytes = std::fs::read(segment_path(dir, number)).map_err(ReplayError::Io)?;
        let file_len = bytes.len() as u64;
        let corrupt = |offset: u64, reason: String, index: u64| {
            ReplayError::Corrupt(Corruption {
                segment: number,
                offset,
                index,
                reason,
            })
        };
        // Header.
        let header_ok = bytes.get(..8) == Some(&SEGMENT_MAGIC[..]);
        let first = bytes
            .get(8..16)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes);
        match (header_ok, first) {
            (true, Some(first)) if first == size => {}
            (true, Some(first)) => {
                return Err(corrupt(
                    8,
                    format!("segment starts at entry {first}, expected {size}"),
                    size,
                ));
            }
            _ if is_last => {
                tail = Tail {
                    segment: Some(number),
                    keep_len: 0,
                    file_len,
                    uncommitted_entries: 0,
                    reason: Some("segment header is incomplete or invalid".to_owned()),
                    size,
                };
                return Ok(tail);
            }
            _ => return Err(corrupt(0, "segment header is invalid".to_owned(), size)),
        }
        // Records.
        let mut off = SEGMENT_HEADER_LEN as usize;
        let mut committed_end = off;
        let mut pending: Vec<(Loc, &[u8], Hash)> = Vec::new();
        let mut stop: Option<String> = None;
        while off < bytes.len() {
            let Some(hdr) = bytes.get(off..off + RECORD_HEADER_LEN) else {
                stop = Some("incomplete record header".to_owned());
                break;
            };
            let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
            let kind = hdr[4];
            let check = &hdr[5..13];
            if len > MAX_RECORD_LEN {
                stop = Some(format!("record length {len} is too large"));
                break;
            }
            let start = off + RECORD_HEADER_LEN;
            let Some(payload) = bytes.get(start..start + len) else {
                stop = Some("incomplete record".to_owned());
                break;
            };
            let loc = Loc {
                segment: number,
                offset: start as u64,
                // len ≤ MAX_RECORD_LEN, which fits.
                len: len as u32,
            };
            match kind {
                KIND_ENTRY => {
                    let leaf = leaf_hash(payload);
                    if &leaf[..8] != check {
                        stop = Some("entry record checksum mismatch".to_owned());
                        break;
                    }
                    pending.push((loc, payload, leaf));
                }
                KIND_COMMIT => {
                    if &commit_check(payload)[..8] != check {
                        stop = Some("commit record checksum mismatch".to_owned());
                        break;
                    }
                    for (loc, payload, leaf) in pending.drain(..) {
                        sink(Event::Entry { loc, payload, leaf }).map_err(ReplayError::Sink)?;
                        size += 1;
                    }
                    sink(Event::Commit {
                        size,
                        loc,
                        note: payload,
                    })
                    .map_err(ReplayError::Sink)?;
                    committed_end = start + len;
                }
                other => {
                    stop = Some(format!("unknown record kind `{other}`"));
                    break;
                }
            }
            off = start + len;
        }
        if !is_last {
            if let Some(reason) = stop {
                return Err(corrupt(off as u64, reason, size));
            }
            if !pending.is_empty() {
                return Err(corrupt(
                    committed_end as u64,
                    "entries without a commit record before the next segment".to_owned(),
                    size,
                ));
            }
            continue;
        }
        // A crash can only tear the last batch (its pages may reach the disk in any
        // order, so even its commit record may have landed). If more than one commit
        // record follows the damage, earlier, committed batches were altered: that is
        // corruption, not a torn tail. (An acknowledged last batch that rots is caught
        // by the index's record of what was committed.)
        if stop.is_some()
            && let Some(first) = find_commit_after(&bytes, off + 1)
            && let Some(at) = find_commit_after(&bytes, first + 1)
        {
            return Err(corrupt(
                off as u64,
                format!(
                    "{} (a valid commit record follows at byte {at})",
                    stop.unwrap_or_default()
                ),
                size,
            ));
        }
        let reason = match (stop, pending.is_empty()) {
            (Some(r), _) => Some(r),
            (None, false) => Some("entries without a commit record".to_owned()),
            (None, true) => None,
        };
        tail = Tail {
            segment: Some(number),
            keep_len: committed_end as u64,
            file_len,
            uncommitted_entries: pending.len() as u64,
            reason,
            size,
        };
    }
    tail.size = size;
    Ok(tail)
}

/// The offset of the first well-formed commit record at or after `from`, if any.
fn find_commit_after(bytes: &[u8], from: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last).find(|&off| {
        let Some(hdr) = bytes.get(off..off + RECORD_HEADER_LEN) else {
            return false;
        };
        if hdr[4] != KIND_COMMIT {
            return false;
        }
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        let start = off + RECORD_HEADER_LEN;
        len > 0
            && len <= MAX_RECORD_LEN
            && bytes
                .get(start..start + len)
                .is_some_and(|p| commit_check(p)[..8] == hdr[5..13])
    })
}

/// fsync a directory so that a created, renamed or removed file's entry is durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
