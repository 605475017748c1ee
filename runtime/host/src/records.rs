//! The ledger of this host: opened (and recovered) at start, signing with the operator's key,
//! appended to through the group-committing writer so that an answer is sent only once its
//! entries are durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use femtoclaw_ledger::{
    DEFAULT_ORIGIN, Entry, KeyError, Ledger, LedgerError, LedgerOptions, LedgerWriter, Receipt,
    SigningKey, VerifierKey,
};
use femtoclaw_sandbox::record;

use crate::exit::{Code, Failure};

/// The ledger directory under the data directory.
pub fn ledger_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

/// The host's own record of the ledger's latest checkpoint, outside the ledger directory and its
/// derived index: the host refuses to open a ledger that went back behind it, and `log verify`
/// pins it.
pub fn head_record(data_dir: &Path) -> PathBuf {
    data_dir.join("latest-checkpoint")
}

/// The signing-key directory under the data directory.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// The host's key for authenticating its compile cache, `<data dir>/keys/cache.key` (32 random
/// bytes, mode 0600), made on first use: kept with the signing key, apart from the cache it
/// guards, so that whoever can write the cache cannot forge its files.
pub fn cache_key(data_dir: &Path) -> Result<[u8; 32], Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = keys_dir(data_dir).join("cache.key");
    let failed = |e: std::io::Error| ledger_failure(format!("`{}`: {e}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| ledger_failure(format!("`{}` is not a 32-byte key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0; 32];
            getrandom::fill(&mut key)
                .map_err(|e| ledger_failure(format!("no randomness for the cache key: {e}")))?;
            // Written whole to a file of this process's own, synced, then linked into place:
            // another command starting at the same time, or a kill mid-write, never sees a
            // short key, and a key already in place is never replaced.
            let dir = keys_dir(data_dir);
            std::fs::create_dir_all(&dir).map_err(failed)?;
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let temporary = dir.join(format!(".cache.key.{}.{n}", std::process::id()));
            let _ = std::fs::remove_file(&temporary);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(failed)?;
            let linked = file
                .write_all(&key)
                .and_then(|()| file.sync_all())
                .and_then(|()| std::fs::hard_link(&temporary, &path));
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Ok(()) => {
                    std::fs::File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .map_err(failed)?;
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => cache_key(data_dir),
                Err(e) => Err(failed(e)),
            }
        }
        Err(e) => Err(failed(e)),
    }
}

/// The verifier keys given with `--key`, pinned for a verification.
pub fn pinned(keys: &[String]) -> Result<femtoclaw_ledger::VerifyOptions, Failure> {
    let keys = keys
        .iter()
        .map(|k| VerifierKey::parse(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(Code::InvalidArgs, format!("--key: {e}")))?;
    Ok(femtoclaw_ledger::VerifyOptions {
        keys,
        ..femtoclaw_ledger::VerifyOptions::default()
    })
}

/// A failed verification: an integrity failure (exit 8), never anything else.
pub fn integrity(e: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Integrity, format!("ledger verification failed: {e}"))
}

fn ledger_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Other, format!("ledger: {e}"))
}

/// Where a rotation keeps the new signing key until the ledger records the change to it.
const STAGED_KEY_FILE: &str = "ledger-signing.next";

/// The staged key in the key file's place, the directory synced.
fn install_staged(keys_dir: &Path) -> Result<(), Failure> {
    std::fs::rename(
        keys_dir.join(STAGED_KEY_FILE),
        keys_dir.join(femtoclaw_ledger::KEY_FILE_NAME),
    )
    .and_then(|()| std::fs::File::open(keys_dir)?.sync_all())
    .map_err(ledger_failure)
}

/// Settles a rotation a stop interrupted, before anything is signed: the staged key becomes
/// the signing key when the ledger's last key change names it (the change is durable, the key
/// file not yet replaced), and is removed when none does (the change never became durable).
fn settle_rotation(keys_dir: &Path, ledger_dir: &Path) -> Result<(), Failure> {
    let staged = keys_dir.join(STAGED_KEY_FILE);
    if !staged.exists() {
        return Ok(());
    }
    let named = match SigningKey::read_from_file(&staged) {
        Ok(next) => {
            let recorded = femtoclaw_ledger::recorded_keys(ledger_dir).map_err(integrity)?;
            recorded.last() == Some(&next.verifier().to_string())
        }
        // Cut short while it was written: the change cannot name it.
        Err(_) => false,
    };
    if named {
        tracing::warn!("completing a key rotation the host stopped during");
        install_staged(keys_dir)
    } else {
        std::fs::remove_file(&staged).map_err(ledger_failure)
    }
}

/// The entry that records a key change from `old` (none for the ledger's first key) to `new`.
fn key_change(old: Option<&SigningKey>, new: &SigningKey) -> Entry {
    Entry::KeyChange {
        name: new.name().to_owned(),
        old_key_id: old.map(SigningKey::key_id),
        new_verifier_key: new.verifier().to_string(),
    }
}

/// The host's ledger and its signing key.
pub struct Records {
    /// Shared with the journals of running invocations, which write ahead through it.
    writer: Arc<LedgerWriter>,
    /// The key that signs new checkpoints; changed only by [`Records::rotate`].
    key: std::sync::Mutex<SigningKey>,
    keys_dir: PathBuf,
    /// The digest of the policy set the ledger last recorded (`<data dir>/policy-digest`,
    /// derived: if it is lost, one redundant policy-change entry is recorded).
    last_policy: std::sync::Mutex<Option<[u8; 32]>>,
    last_policy_file: PathBuf,
}

impl Records {
    /// Opens the ledger in `data_dir`, cutting (and reporting) a torn tail, and ends every
    /// invocation the host stopped during (see [`Records::end_interrupted`]). The first open
    /// generates the signing key and records it.
    pub fn open(data_dir: &Path, origin: &str) -> Result<Self, Failure> {
        let keys_dir = keys_dir(data_dir);
        settle_rotation(&keys_dir, &ledger_dir(data_dir))?;
        let (key, fresh) = match femtoclaw_ledger::load_key(&keys_dir) {
            Ok(key) => (key, false),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let key = femtoclaw_ledger::generate_key(&keys_dir, DEFAULT_ORIGIN)
                    .map_err(ledger_failure)?;
                (key, true)
            }
            Err(e) => return Err(ledger_failure(e)),
        };
        let options = LedgerOptions {
            origin: origin.to_owned(),
            head: Some(head_record(data_dir)),
            ..LedgerOptions::with_key(key.clone())
        };
        let (ledger, recovery) =
            Ledger::open(&ledger_dir(data_dir), options).map_err(|e| match e {
                LedgerError::WentBackwards { .. }
                | LedgerError::NotTheRecordedLedger { .. }
                | LedgerError::AcknowledgedEntriesLost { .. }
                | LedgerError::Corrupt { .. } => {
                    Failure::new(Code::Integrity, format!("ledger: {e}"))
                }
                e => ledger_failure(e),
            })?;
        // The origin names the log in every checkpoint: a ledger is continued under its own.
        let recorded = ledger
            .latest_checkpoint()
            .and_then(|note| femtoclaw_ledger::Checkpoint::parse_unverified(note).ok())
            .map(|checkpoint| checkpoint.origin);
        if let Some(recorded) = recorded.filter(|recorded| recorded != origin) {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!(
                    "the ledger's checkpoints name the origin `{recorded}`, the configuration `{origin}` (ledger.origin): a ledger keeps its origin"
                ),
            ));
        }
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                bytes = recovery.truncated_bytes,
                entries = recovery.truncated_entries,
                reason = recovery.reason.as_deref().unwrap_or("torn tail"),
                "ledger recovery cut an unacknowledged tail"
            );
        }
        let last_policy_file = data_dir.join("policy-digest");
        let last_policy = std::fs::read_to_string(&last_policy_file)
            .ok()
            .and_then(|hex_digest| hex::decode(hex_digest.trim()).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
        let writer = LedgerWriter::new(ledger);
        writer.observe(crate::telemetry::ledger_committed);
        let records = Self {
            writer: Arc::new(writer),
            key: std::sync::Mutex::new(key),
            keys_dir,
            last_policy: std::sync::Mutex::new(last_policy),
            last_policy_file,
        };
        // The first key is recorded with the first entry, whoever made it (this open, or
        // `key generate` on a fresh data directory).
        if fresh || records.with_ledger(|l| l.is_empty()) {
            let first = key_change(None, &records.current_key());
            records.append(vec![first])?;
        }
        records.end_interrupted(&recovery.unfinished)?;
        Ok(records)
    }

    /// Makes the first signing key, named `name`, when the data directory has neither a key
    /// nor a ledger yet; `false` (and nothing done) otherwise, when `key generate` rotates.
    pub fn first_key(data_dir: &Path, name: &str) -> Result<bool, Failure> {
        let keys_dir = keys_dir(data_dir);
        if keys_dir.join(femtoclaw_ledger::KEY_FILE_NAME).exists() || ledger_dir(data_dir).exists()
        {
            return Ok(false);
        }
        femtoclaw_ledger::generate_key(&keys_dir, name).map_err(ledger_failure)?;
        Ok(true)
    }

    /// The verifier key of `data_dir`'s current signing key and, with `history`, every verifier
    /// key of its ledger's history, oldest first, as its key changes record them (the current
    /// key last). Read-only: it works beside a running server.
    pub fn verifiers(data_dir: &Path, history: bool) -> Result<Vec<String>, Failure> {
        if history {
            return femtoclaw_ledger::recorded_keys(&ledger_dir(data_dir)).map_err(ledger_failure);
        }
        let key = femtoclaw_ledger::load_key(&keys_dir(data_dir)).map_err(ledger_failure)?;
        Ok(vec![key.verifier().to_string()])
    }

    /// Records how each `unfinished` invocation (a start without an end: the host stopped
    /// after writing it ahead of an effect) ended: interrupted, with the fuel its last recorded
    /// call shows consumed. One signed batch, before anything else is appended.
    fn end_interrupted(&self, unfinished: &[u64]) -> Result<(), Failure> {
        if unfinished.is_empty() {
            return Ok(());
        }
        let mut entries = Vec::new();
        for &invocation in unfinished {
            let recorded = self
                .with_ledger(|l| {
                    l.invocation_entries(invocation)?
                        .into_iter()
                        .map(|index| l.get(index))
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(ledger_failure)?;
            let mut budget = 0;
            let mut left = None::<u64>;
            for entry in recorded {
                match entry {
                    Entry::InvocationStart { fuel_budget, .. } => budget = fuel_budget,
                    Entry::HostCall { fuel_remaining, .. }
                    | Entry::HostCallIntent { fuel_remaining, .. } => {
                        left = Some(left.map_or(fuel_remaining, |l| l.min(fuel_remaining)));
                    }
                    _ => {}
                }
            }
            let consumed = left.map_or(0, |left| budget.saturating_sub(left));
            entries.extend(record::interrupted(invocation, consumed));
        }
        tracing::warn!(
            invocations = ?unfinished,
            "the host stopped during these invocations; recorded as interrupted"
        );
        self.append(entries).map(drop)
    }

    /// Where running invocations write ahead of their effects: this ledger's group-committing
    /// writer, whose fsync they share.
    pub fn sink(&self) -> Arc<dyn record::Sink> {
        Arc::clone(&self.writer) as Arc<dyn record::Sink>
    }

    fn current_key(&self) -> std::sync::MutexGuard<'_, SigningKey> {
        self.key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh invocation number.
    pub fn next_invocation(&self) -> u64 {
        self.writer.next_invocation()
    }

    /// Appends `entries` durably (fsync'd, with a signed checkpoint) and returns the receipt.
    pub fn append(&self, entries: Vec<Entry>) -> Result<Receipt, Failure> {
        self.writer.append(entries).map_err(ledger_failure)
    }

    /// Records a policy change when `digest` is not the policy the ledger last recorded, so
    /// that every decision after it can be traced to the policy that made it.
    pub fn note_policy(&self, digest: [u8; 32], source: &str) -> Result<(), Failure> {
        let mut last = self
            .last_policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == Some(digest) {
            return Ok(());
        }
        self.append(vec![Entry::PolicyChange {
            policy_digest: digest,
            source: source.to_owned(),
        }])?;
        *last = Some(digest);
        // Derived state: a failure to remember costs one redundant entry next time, nothing more.
        let _ = std::fs::write(&self.last_policy_file, hex::encode(digest));
        Ok(())
    }

    /// The verifier key of the current signing key.
    pub fn verifier(&self) -> VerifierKey {
        self.current_key().verifier()
    }

    /// Rotates the signing key: the change is recorded (and signed) under the old key, then
    /// the new key signs every later checkpoint. Appends from other threads wait meanwhile, so
    /// that none lands between the change and the handover, signed by a key no longer in
    /// force.
    pub fn rotate(&self, name: &str) -> Result<VerifierKey, Failure> {
        let mut key = self.current_key();
        let new = SigningKey::generate(name).map_err(ledger_failure)?;
        let change = key_change(Some(&key), &new);
        self.writer.with_ledger(|l| {
            // The new key is durable before the change names it, and takes the key file's
            // place after: a stop between the two is settled when the ledger is next opened.
            std::fs::create_dir_all(&self.keys_dir).map_err(ledger_failure)?;
            let staged = self.keys_dir.join(STAGED_KEY_FILE);
            new.write_to_file(&staged).map_err(ledger_failure)?;
            l.append_batch(vec![change]).map_err(ledger_failure)?;
            install_staged(&self.keys_dir)?;
            l.set_signing_key(Some(new.clone()));
            Ok::<_, Failure>(())
        })?;
        *key = new;
        Ok(key.verifier())
    }

    /// Runs `f` on the ledger (for reads, export, proofs, reindex).
    pub fn with_ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        self.writer.with_ledger(f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    /// Commands starting together on a fresh data directory all get the one key: none reads a
    /// key another is still writing, and none replaces it.
    #[test]
    fn the_cache_key_made_concurrently_is_one_whole_key() {
        for _ in 0..20 {
            let data = tempfile::tempdir().unwrap();
            let start = std::sync::Barrier::new(16);
            let keys: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..16)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            super::cache_key(data.path())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let first = keys[0].as_ref().map(|k| *k).map_err(|e| e.message.clone());
            for key in &keys {
                assert_eq!(
                    key.as_ref().map(|k| *k).map_err(|e| e.message.clone()),
                    first,
                    "every command must get the same whole key"
                );
            }
            assert!(first.is_ok(), "{first:?}");
            let left: Vec<_> = std::fs::read_dir(super::keys_dir(data.path()))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                left,
                ["cache.key"],
                "temporary files must not be left behind"
            );
        }
    }
}
