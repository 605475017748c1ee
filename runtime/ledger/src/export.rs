//! The self-contained export file (format v1, documented in `docs/ledger-format.md`).
//!
//! ```text
//! magic    "FCLEDGER" (8 bytes)
//! version  0x01
//! 0x01 entries      count u64 LE, then count × (len u32 LE, canonical entry bytes)
//! 0x02 checkpoints  count u64 LE, then count × (len u32 LE, signed note bytes)
//! 0x03 components   (optional) count u64 LE, then count × (sha256 [32], len u64 LE, bytes)
//! 0x04 blobs        (optional) the same shape: the large bytes entries refer to by digest
//! 0xff end
//! ```

use std::io::Write;
use std::path::Path;

use crate::verify::VerifyError;

/// First bytes of an export file.
pub const EXPORT_MAGIC: [u8; 8] = *b"FCLEDGER";
/// Export format version written by this build.
pub const EXPORT_VERSION: u8 = 1;

const SECTION_ENTRIES: u8 = 0x01;
const SECTION_CHECKPOINTS: u8 = 0x02;
const SECTION_COMPONENTS: u8 = 0x03;
const SECTION_BLOBS: u8 = 0x04;
const SECTION_END: u8 = 0xff;

/// Bytes named by their SHA-256 (a component or a blob), as an export carries them.
pub type Digested<'a> = ([u8; 32], &'a [u8]);

/// Owned bytes named by their SHA-256.
pub type DigestedBytes = ([u8; 32], Vec<u8>);

/// A parsed export; slices borrow from the file's bytes.
#[derive(Debug, Clone, Default)]
pub struct Export<'a> {
    /// Canonical entry bytes, by index.
    pub entries: Vec<&'a [u8]>,
    /// Checkpoint notes, oldest first, byte-exact.
    pub checkpoints: Vec<&'a [u8]>,
    /// Components (sha256, bytes), when the export carries them.
    pub components: Vec<([u8; 32], &'a [u8])>,
    /// Blobs (sha256, bytes) the entries refer to.
    pub blobs: Vec<([u8; 32], &'a [u8])>,
}

impl Export<'_> {
    /// The blob with digest `sha256`, if the export carries it.
    pub fn blob(&self, sha256: &[u8; 32]) -> Option<&[u8]> {
        self.blobs
            .iter()
            .find(|(s, _)| s == sha256)
            .map(|(_, b)| *b)
    }
}

/// Writes an export to any writer.
pub fn write_export<W: Write>(
    mut w: W,
    entries: &[impl AsRef<[u8]>],
    checkpoints: &[impl AsRef<[u8]>],
    components: &[([u8; 32], Vec<u8>)],
    blobs: &[([u8; 32], Vec<u8>)],
) -> std::io::Result<()> {
    let too_long = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "record too long");
    w.write_all(&EXPORT_MAGIC)?;
    w.write_all(&[EXPORT_VERSION])?;
    for (tag, items) in [
        (
            SECTION_ENTRIES,
            entries.iter().map(AsRef::as_ref).collect::<Vec<&[u8]>>(),
        ),
        (
            SECTION_CHECKPOINTS,
            checkpoints
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&[u8]>>(),
        ),
    ] {
        w.write_all(&[tag])?;
        w.write_all(&(items.len() as u64).to_le_bytes())?;
        for it in items {
            let len = u32::try_from(it.len()).map_err(|_| too_long())?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(it)?;
        }
    }
    for (tag, items) in [(SECTION_COMPONENTS, components), (SECTION_BLOBS, blobs)] {
        if items.is_empty() {
            continue;
        }
        w.write_all(&[tag])?;
        w.write_all(&(items.len() as u64).to_le_bytes())?;
        for (sha, bytes) in items {
            w.write_all(sha)?;
            w.write_all(&(bytes.len() as u64).to_le_bytes())?;
            w.write_all(bytes)?;
        }
    }
    w.write_all(&[SECTION_END])?;
    w.flush()
}

/// Writes an export file and syncs it.
pub(crate) fn write_export_file(
    path: &Path,
    entries: &[Vec<u8>],
    checkpoints: &[String],
    components: &[([u8; 32], Vec<u8>)],
    blobs: &[([u8; 32], Vec<u8>)],
) -> std::io::Result<()> {
    let f = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(f);
    write_export(&mut w, entries, checkpoints, components, blobs)?;
    let f = w
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    f.sync_all()
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    }
}

/// A section of `(sha256, len u64, bytes)` items.
fn digest_items<'a>(
    c: &mut Cursor<'a>,
    what: &'static str,
    total: usize,
) -> Result<Vec<Digested<'a>>, VerifyError> {
    let count = c.u64().ok_or(VerifyError::Truncated { what, index: 0 })?;
    // Each item takes at least 40 bytes: refuse impossible counts up front.
    if count > (total as u64) / 40 {
        return Err(VerifyError::Truncated { what, index: 0 });
    }
    let mut out = Vec::with_capacity(count as usize);
    for index in 0..count {
        let sha: [u8; 32] = c
            .take(32)
            .and_then(|s| s.try_into().ok())
            .ok_or(VerifyError::Truncated { what, index })?;
        let len = c.u64().ok_or(VerifyError::Truncated { what, index })?;
        let item = usize::try_from(len)
            .ok()
            .and_then(|len| c.take(len))
            .ok_or(VerifyError::Truncated { what, index })?;
        out.push((sha, item));
    }
    Ok(out)
}

/// Parses the framing of an export. Never panics; names the first item that is cut.
pub fn parse_export(bytes: &[u8]) -> Result<Export<'_>, VerifyError> {
    let mut c = Cursor { b: bytes, pos: 0 };
    if c.take(8) != Some(&EXPORT_MAGIC[..]) {
        return Err(VerifyError::BadHeader);
    }
    match c.u8() {
        Some(EXPORT_VERSION) => {}
        Some(v) => return Err(VerifyError::UnsupportedVersion { version: v }),
        None => return Err(VerifyError::BadHeader),
    }
    let mut out = Export::default();
    let mut expected = [SECTION_ENTRIES, SECTION_CHECKPOINTS].into_iter();
    loop {
        let offset = c.pos as u64;
        let Some(tag) = c.u8() else {
            return Err(VerifyError::Truncated {
                what: "section",
                index: 0,
            });
        };
        // Entries and checkpoints are mandatory and come first, in that order.
        if let Some(want) = expected.next()
            && tag != want
        {
            return Err(VerifyError::BadSection { tag, offset });
        }
        match tag {
            SECTION_ENTRIES | SECTION_CHECKPOINTS => {
                let what = if tag == SECTION_ENTRIES {
                    "entry"
                } else {
                    "checkpoint"
                };
                let count = c.u64().ok_or(VerifyError::Truncated { what, index: 0 })?;
                // Each item takes at least 4 bytes: refuse impossible counts up front.
                if count > (bytes.len() as u64) / 4 {
                    return Err(VerifyError::Truncated { what, index: 0 });
                }
                let mut items = Vec::with_capacity(count as usize);
                for index in 0..count {
                    let len = c.u32().ok_or(VerifyError::Truncated { what, index })?;
                    let item = c
                        .take(len as usize)
                        .ok_or(VerifyError::Truncated { what, index })?;
                    items.push(item);
                }
                if tag == SECTION_ENTRIES {
                    out.entries = items;
                } else {
                    out.checkpoints = items;
                }
            }
            SECTION_COMPONENTS if out.components.is_empty() && out.blobs.is_empty() => {
                out.components = digest_items(&mut c, "component", bytes.len())?;
            }
            SECTION_BLOBS if out.blobs.is_empty() => {
                out.blobs = digest_items(&mut c, "blob", bytes.len())?;
            }
            SECTION_END => {
                if c.pos != bytes.len() {
                    return Err(VerifyError::TrailingBytes {
                        offset: c.pos as u64,
                    });
                }
                return Ok(out);
            }
            other => {
                return Err(VerifyError::BadSection { tag: other, offset });
            }
        }
    }
}
