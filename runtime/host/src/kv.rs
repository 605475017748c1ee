//! The host's key-value store (`<data dir>/kv`): a view of the ledger. Each invocation's writes
//! are applied once its entries are durable; opening the store applies whatever the ledger holds
//! beyond what the store has seen (a host stopped between the two), and `log reindex` rebuilds
//! it from the ledger alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use femtoclaw_ledger::Entry;
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

/// The writes of the invocations that end at entry `from` or later, and the ledger's size.
/// An invocation written ahead of an effect can have begun before `from`: its earlier entries
/// are read too, through the index.
fn ledger_writes(records: &Records, from: u64) -> Result<(Vec<KvWrite>, u64), Failure> {
    records.with_ledger(|ledger| {
        let size = ledger.len();
        let entries = ledger
            .iter(
                from,
                usize::try_from(size - from.min(size)).unwrap_or(usize::MAX),
            )
            .map_err(failed)?;
        let started: BTreeSet<u64> = entries
            .iter()
            .filter_map(|(_, e)| match e {
                Entry::InvocationStart { invocation, .. } => Some(*invocation),
                _ => None,
            })
            .collect();
        let mut earlier = Vec::new();
        for (_, entry) in &entries {
            if let Entry::InvocationEnd { invocation, .. } = entry
                && !started.contains(invocation)
            {
                for index in ledger.invocation_entries(*invocation).map_err(failed)? {
                    if index < from {
                        earlier.push(ledger.get(index).map_err(failed)?);
                    }
                }
            }
        }
        let mut all: Vec<Entry> = earlier
            .into_iter()
            .chain(entries.into_iter().map(|(_, e)| e))
            .collect();
        // A value of 16 KiB or more is recorded as a blob beside the ledger: put it back, or
        // the rebuilt store would lack it.
        for entry in &mut all {
            if matches!(entry, Entry::HostCall { .. }) && !entry.blob_refs().is_empty() {
                entry
                    .internalize(&mut |sha| ledger.blobs().get(sha).ok().flatten())
                    .map_err(|sha| {
                        failed(format!(
                            "the key-value store cannot be brought up to date: blob {} of the ledger is missing or damaged",
                            hex::encode(sha)
                        ))
                    })?;
            }
        }
        Ok((kv::ledger_writes(&all), size))
    })
}

/// Opens the store and brings it up to date with the ledger. A store whose files are damaged
/// is set aside whole (`kv.damaged-N`, nothing deleted) and rebuilt from the ledger, as a lost
/// one is.
pub fn open(data_dir: &Path, records: &Records) -> Result<KvStore, Failure> {
    let dir = dir(data_dir);
    let store = match KvStore::open(&dir) {
        Err(e) if e.is_damaged() => {
            let aside = set_aside(&dir)?;
            tracing::warn!(
                error = %e,
                aside = %aside.display(),
                "key-value store damaged: set aside, rebuilding it from the ledger"
            );
            KvStore::open(&dir).map_err(failed)?
        }
        opened => opened.map_err(failed)?,
    };
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

/// Moves a damaged store to the first free `kv.damaged-N` beside it; the new path.
fn set_aside(dir: &Path) -> Result<PathBuf, Failure> {
    for n in 1u32.. {
        let aside = dir.with_file_name(format!("kv.damaged-{n}"));
        if !aside.exists() {
            std::fs::rename(dir, &aside).map_err(|e| {
                failed(format!(
                    "cannot set the damaged key-value store {} aside: {e}",
                    dir.display()
                ))
            })?;
            return Ok(aside);
        }
    }
    Err(failed(
        "no free name to set the damaged key-value store aside",
    ))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use femtoclaw_ledger::Value;

    use super::*;

    /// An invocation's entries: `open("notes")` → handle 3, then `set(3, key, "v")`.
    fn kv_calls(invocation: u64, key: &str) -> Vec<Entry> {
        let call = |seq, function: &str, params, result| Entry::HostCall {
            invocation,
            seq,
            interface: "wasi:keyvalue/store@0.2.0-draft2".into(),
            function: function.into(),
            params: Value::Tuple(params),
            result: Value::Tuple(vec![result]),
            fuel_remaining: 1,
        };
        vec![
            call(
                0,
                "open",
                vec![Value::String("notes".into())],
                Value::Result(Ok(Some(Box::new(Value::U32(3))))),
            ),
            call(
                1,
                "[method]bucket.set",
                vec![
                    Value::U32(3),
                    Value::String(key.into()),
                    Value::Bytes(b"v".to_vec()),
                ],
                Value::Result(Ok(Some(Box::new(Value::Tuple(Vec::new()))))),
            ),
        ]
    }

    fn end(invocation: u64) -> Entry {
        Entry::InvocationEnd {
            invocation,
            result: None,
            fuel_consumed: 1,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    // Verifies: FC-MEM-2503, FC-MEM-2504
    /// Invocation 1 writes a key, then is written ahead of an effect; invocation 2 writes and
    /// ends (the store applies it: the applied point moves past 1's first entries); 1 ends. A
    /// catch-up from that point still finds 1's write, though it was recorded before it.
    #[test]
    fn a_catch_up_finds_the_writes_of_an_invocation_that_began_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path(), femtoclaw_ledger::DEFAULT_ORIGIN).unwrap();
        records.append(kv_calls(1, "early")).unwrap();
        let mut second = kv_calls(2, "second");
        second.push(end(2));
        let applied = records.append(second).unwrap().tree_size;
        records.append(vec![end(1)]).unwrap();
        let (writes, _) = ledger_writes(&records, applied).unwrap();
        let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["early"]);
        let (writes, _) = ledger_writes(&records, 0).unwrap();
        let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["second", "early"], "in the order of their ends");
    }
}
