//! A directory only the host's user may read: files of mode 0600 in a directory of mode 0700,
//! each written durably (through a temporary file, synced, renamed into place). The secret store
//! and the token store keep their files in one.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::exit::{Code, Failure};

/// A private directory (created on the first write).
#[derive(Debug, Clone)]
pub struct PrivateDir {
    dir: PathBuf,
}

/// Whether a write may replace a file of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it.
    Yes,
    /// Refuse: the name is taken.
    No,
}

impl PrivateDir {
    /// The directory at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Writes `bytes` as `file`, mode 0600, durably; with [`Replace::No`], `Ok(false)` (and
    /// nothing written) when `file` exists.
    pub fn write(&self, file: &str, bytes: &[u8], replace: Replace) -> Result<bool, Failure> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io(&self.dir, &e))?;
        // An existing directory keeps its mode: make it private again.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io(&self.dir, &e))?;
        let path = self.dir.join(file);
        if replace == Replace::No && path.exists() {
            return Ok(false);
        }
        let tmp = self.dir.join(format!(".{file}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            out.set_permissions(fs::Permissions::from_mode(0o600))?;
            out.write_all(bytes)?;
            out.sync_all()?;
            match replace {
                Replace::Yes => fs::rename(&tmp, &path),
                // A hard link fails if the name was taken meanwhile: never replaced.
                Replace::No => fs::hard_link(&tmp, &path).and_then(|()| fs::remove_file(&tmp)),
            }
        };
        match write() {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Ok(false);
                }
                Err(io(&path, &e))
            }
        }
    }

    /// The text of `file`; `None` when there is none.
    pub fn read(&self, file: &str) -> Result<Option<String>, Failure> {
        let path = self.dir.join(file);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, &e)),
        }
    }

    /// The names of the files in it, sorted, temporary files left out; none before the first
    /// write.
    pub fn files(&self) -> Result<Vec<String>, Failure> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.dir, &e))?;
            if let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes `file`; `Ok(false)` when there is none.
    pub fn remove(&self, file: &str) -> Result<bool, Failure> {
        let path = self.dir.join(file);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path, &e)),
        }
    }
}

/// Checks a name that becomes a file name in a private directory: 1 to `max` ASCII letters,
/// digits, `-`, `_` or `.`, not starting with `.`; the error names `what` it is.
pub fn check_name(name: &str, what: &str, max: usize) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= max
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            Code::InvalidArgs,
            format!(
                "`{name}` is not a {what} name: use 1 to {max} ASCII letters, digits, `-`, `_` or `.`, not starting with `.`"
            ),
        ))
    }
}

fn io(path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(Code::Other, format!("`{}`: {e}", path.display()))
}
