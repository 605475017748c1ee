//! Files in the directories granted to the capability, in one line each.
//!
//! A capability sees a directory only when its manifest requests the path
//! (`[requests] paths = [{ path = "/data", write = true }]`) and the operator's policy grants
//! `fs.read` (and, to change files, `fs.write`) on it. Every operation is checked against the
//! policy with its concrete path and recorded by the host; a refusal is an [`Error`], never a
//! trap.
//!
//! ```ignore
//! let notes = femtoclaw_sdk::files::read_to_string("/data/notes.txt")?;
//! femtoclaw_sdk::files::write("/data/notes.txt", format!("{notes}\nmore").as_bytes())?;
//! for entry in femtoclaw_sdk::files::list("/data")? {
//!     femtoclaw_sdk::log::info(&entry.name);
//! }
//! ```
//!
//! Paths are handed to the host as given below the granted directory they start with: the host,
//! not this module, refuses `..` that leaves it, absolute paths and symbolic links that point
//! outside.

use crate::filesystem::preopens;
use crate::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

/// Bytes asked of the host per read; the host answers at most its own cap (1 MiB) per call,
/// and [`read`] asks again until the end of the file.
const CHUNK: u64 = 4 << 20;

/// A file operation the host refused or that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The path the operation was on.
    pub path: String,
    /// The `wasi:filesystem` error code (`access`, `not-permitted`, `no-entry`, …), or
    /// `not-granted` when no directory is granted to the capability at all.
    pub code: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.code.as_str() {
            "access" => "denied by the policy",
            "not-permitted" => "not permitted: outside the granted directories, or read-only",
            "not-granted" => "no directory is granted to this capability",
            "no-entry" => "no such file or directory",
            "file-too-large" => "too large to read in one call",
            "illegal-byte-sequence" => "not valid UTF-8",
            "is-directory" => "is a directory",
            "not-directory" => "not a directory",
            other => other,
        };
        write!(f, "`{}`: {what}", self.path)
    }
}

impl std::error::Error for Error {}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name.
    pub name: String,
    /// `file`, `directory`, `symbolic-link` or `other`.
    pub kind: &'static str,
}

/// The whole content of the file at `path`.
pub fn read(path: &str) -> Result<Vec<u8>, Error> {
    let fail = failure(path);
    let file = open(path, OpenFlags::empty(), DescriptorFlags::READ)?;
    let mut bytes = Vec::new();
    loop {
        let (chunk, end) = file.read(CHUNK, bytes.len() as u64).map_err(&fail)?;
        bytes.extend_from_slice(&chunk);
        if end || chunk.is_empty() {
            return Ok(bytes);
        }
    }
}

/// The whole content of the file at `path`, as UTF-8 text.
pub fn read_to_string(path: &str) -> Result<String, Error> {
    String::from_utf8(read(path)?).map_err(|_| failure(path)(ErrorCode::IllegalByteSequence))
}

/// Replaces the content of the file at `path` (created when missing) with `bytes`.
pub fn write(path: &str, bytes: &[u8]) -> Result<(), Error> {
    let fail = failure(path);
    let file = open(
        path,
        OpenFlags::CREATE | OpenFlags::TRUNCATE,
        DescriptorFlags::WRITE,
    )?;
    let mut done = 0;
    while done < bytes.len() {
        let rest = bytes.get(done..).unwrap_or_default();
        let written = file.write(rest, done as u64).map_err(&fail)?;
        if written == 0 {
            return Err(fail(ErrorCode::Io));
        }
        done += usize::try_from(written).unwrap_or(usize::MAX);
    }
    Ok(())
}

/// The entries of the directory at `dir`, sorted by name.
pub fn list(dir: &str) -> Result<Vec<Entry>, Error> {
    let fail = failure(dir);
    let dir_fd = open(dir, OpenFlags::DIRECTORY, DescriptorFlags::READ)?;
    let stream = dir_fd.read_directory().map_err(&fail)?;
    let mut entries = Vec::new();
    while let Some(entry) = stream.read_directory_entry().map_err(&fail)? {
        let kind = match entry.type_ {
            DescriptorType::RegularFile => "file",
            DescriptorType::Directory => "directory",
            DescriptorType::SymbolicLink => "symbolic-link",
            _ => "other",
        };
        entries.push(Entry {
            name: entry.name,
            kind,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Opens `path` below the granted directory it starts with (the longest such). A path under
/// none is handed, as it is, to the first granted directory, whose host refuses it and records
/// the policy's decision.
fn open(path: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, Error> {
    let dirs = preopens::get_directories();
    let below = |base: &str| -> Option<String> {
        if base == "/" {
            return path.strip_prefix('/').map(str::to_owned);
        }
        let rest = path.strip_prefix(base)?;
        match rest.strip_prefix('/') {
            Some(rest) => Some(rest.to_owned()),
            None if rest.is_empty() => Some(".".to_owned()),
            None => None,
        }
    };
    let best = dirs
        .iter()
        .filter_map(|(dir, base)| below(base).map(|rest| (dir, base.len(), rest)))
        .max_by_key(|(_, len, _)| *len);
    let (dir, relative) = match (best, dirs.first()) {
        (Some((dir, _, rest)), _) => (dir, rest),
        (None, Some((dir, _))) => (dir, path.to_owned()),
        (None, None) => {
            return Err(Error {
                path: path.to_owned(),
                code: "not-granted".to_owned(),
            });
        }
    };
    dir.open_at(PathFlags::SYMLINK_FOLLOW, &relative, open, flags)
        .map_err(failure(path))
}

/// Turns a `wasi:filesystem` error code on `path` into an [`Error`].
fn failure(path: &str) -> impl Fn(ErrorCode) -> Error + '_ {
    move |code| Error {
        path: path.to_owned(),
        code: code.name().to_owned(),
    }
}
