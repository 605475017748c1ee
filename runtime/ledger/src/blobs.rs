//! Large bytes kept beside the ledger: `<ledger dir>/blobs/<sha256 hex>`, written durably
//! before the entry that refers to them. The entry commits to the digest, so the bytes verify
//! against the ledger; a blob that does not match its name is never returned.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::store::{LedgerError, io_err as io};

/// The blob directory of a ledger.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The blobs of the ledger in `ledger_dir`.
    pub fn new(ledger_dir: &Path) -> Self {
        Self {
            dir: ledger_dir.join("blobs"),
        }
    }

    fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    /// Stores `bytes` under `sha256` (their digest) durably; storing the same bytes again does
    /// nothing.
    pub fn put(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<(), LedgerError> {
        let path = self.path(sha256);
        if self.get(sha256)?.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            hex::encode(sha256),
            std::process::id()
        ));
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))
    }

    /// The bytes stored under `sha256`, when present and matching their digest.
    pub fn get(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, LedgerError> {
        let path = self.path(sha256);
        match std::fs::read(&path) {
            Ok(bytes) if crate::sha256(&bytes) == *sha256 => Ok(Some(bytes)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }
}
