//! The host's key-value store (`<data dir>/kv`): a view of the ledger. Each invocation's writes
//! are applied once its entries are durable; opening the store applies whatever the ledger holds
//! beyond what the store has seen (a host stopped between the two), and `log reindex` rebuilds
//! it from the ledger alone.

use std::path::{Path, PathBuf};

use femtoclaw_sandbox::kv::{self, KvPair, KvStore, KvWrite};

use crate::exit::{Code, Failure};
use crate::records::Records;

/// The store's directory under the data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("kv")
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Other, e.to_string())
}

/// The writes the ledger holds from entry `from` on, and the ledger's size.
fn ledger_writes(records: &Records, from: u64) -> Result<(Vec<KvWrite>, u64), Failure> {
    records.with_ledger(|ledger| {
        let size = ledger.len();
        let entries = ledger
            .iter(
                from,
                usize::try_from(size - from.min(size)).unwrap_or(usize::MAX),
            )
            .map_err(failed)?;
        Ok((kv::ledger_writes(entries.iter().map(|(_, e)| e)), size))
    })
}

/// Opens the store and brings it up to date with the ledger.
pub fn open(data_dir: &Path, records: &Records) -> Result<KvStore, Failure> {
    let store = KvStore::open(&dir(data_dir)).map_err(failed)?;
    let applied = store.applied().map_err(failed)?;
    let (writes, size) = ledger_writes(records, applied)?;
    if size > applied {
        tracing::info!(
            from = applied,
            to = size,
            "key-value store catching up with the ledger"
        );
        store.apply(&writes, size).map_err(failed)?;
    }
    Ok(store)
}

/// Rebuilds the store from the whole ledger; returns the number of pairs it then holds.
pub fn rebuild(store: &KvStore, records: &Records) -> Result<usize, Failure> {
    let (writes, size) = ledger_writes(records, 0)?;
    store.rebuild(&writes, size).map_err(failed)?;
    Ok(pairs(store)?.len())
}

/// Every stored pair.
pub fn pairs(store: &KvStore) -> Result<Vec<KvPair>, Failure> {
    store.pairs().map_err(failed)
}
