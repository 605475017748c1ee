//! The key-value store behind `wasi:keyvalue`: a view of the ledger.
//!
//! An invocation's writes are recorded by the gate as host calls and held in its [`Session`]
//! (read back by the invocation itself) until it ends. The host applies them, with
//! [`KvStore::apply`], only once their ledger entries are durable, and only for an invocation
//! that returned: a trapped or refused invocation changes nothing. [`writes`] derives the writes
//! from recorded host calls, so the live path and a rebuild from the ledger
//! ([`KvStore::rebuild`]) apply exactly the same changes.
//!
//! On disk it is one sled tree: `namespace NUL key → value`, plus the ledger size up to which
//! writes are applied, so a host that stopped between the ledger append and the apply catches up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use femtoclaw_ledger::{Entry, Value};

use crate::gate::Recorded;
use crate::host::kv::{DELETE, Error, INTERFACE, KeyResponse, OPEN, PREFIX_INTERFACE, SET};

/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most bytes (keys and values) one invocation may write.
pub const MAX_INVOCATION_WRITE_BYTES: usize = 16 << 20;
/// Keys per `list-keys` page.
pub const PAGE_KEYS: usize = 100;

/// The ledger size up to which writes are applied (0xFF never starts a UTF-8 namespace).
const APPLIED: &[u8] = b"\xffapplied";

/// A key-value store failure.
#[derive(Debug, thiserror::Error)]
#[error("key-value store `{}`: {message}", path.display())]
pub struct KvError {
    path: PathBuf,
    message: String,
    /// The store's files are damaged (corrupt, or not a store this version reads).
    damaged: bool,
}

impl KvError {
    /// Whether the store could not be opened because its files are damaged, rather than for a
    /// reason outside them (another process holds it, an I/O error).
    pub fn is_damaged(&self) -> bool {
        self.damaged
    }
}

/// One write an invocation made: `value` `None` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// The namespace (bucket identifier).
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The new value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// One stored pair, for listings and comparisons.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KvPair {
    /// The namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
}

/// The store: one sled tree in its own directory.
#[derive(Debug)]
pub struct KvStore {
    path: PathBuf,
    db: sled::Db,
}

fn data_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + 1 + key.len());
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

impl KvStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, KvError> {
        let db = sled::Config::new().path(dir).open().map_err(|e| KvError {
            path: dir.to_owned(),
            message: e.to_string(),
            damaged: matches!(
                e,
                sled::Error::Corruption { .. }
                    | sled::Error::Unsupported(_)
                    | sled::Error::ReportableBug(_)
            ),
        })?;
        Ok(Self {
            path: dir.to_owned(),
            db,
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> KvError {
        KvError {
            path: self.path.clone(),
            message: e.to_string(),
            damaged: false,
        }
    }

    /// The value of `key` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.db
            .get(data_key(namespace, key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.fail(e))
    }

    /// Up to `limit` keys of `namespace` starting with `prefix` and after `after`, in order.
    pub fn keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        let scan = data_key(namespace, prefix);
        let mut keys = Vec::new();
        for item in self.db.scan_prefix(&scan) {
            let (k, _) = item.map_err(|e| self.fail(e))?;
            let key = String::from_utf8_lossy(&k[namespace.len() + 1..]).into_owned();
            if after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            keys.push(key);
            if keys.len() == limit {
                break;
            }
        }
        Ok(keys)
    }

    /// Every stored pair, ordered by namespace and key.
    pub fn pairs(&self) -> Result<Vec<KvPair>, KvError> {
        let mut out = Vec::new();
        for item in self.db.iter() {
            let (k, v) = item.map_err(|e| self.fail(e))?;
            if k.as_ref() == APPLIED {
                continue;
            }
            let Some(split) = k.iter().position(|b| *b == 0) else {
                return Err(self.fail("a stored key has no namespace separator"));
            };
            out.push(KvPair {
                namespace: String::from_utf8_lossy(&k[..split]).into_owned(),
                key: String::from_utf8_lossy(&k[split + 1..]).into_owned(),
                value: v.to_vec(),
            });
        }
        Ok(out)
    }

    /// The ledger size up to which writes are applied.
    pub fn applied(&self) -> Result<u64, KvError> {
        let stored = self.db.get(APPLIED).map_err(|e| self.fail(e))?;
        Ok(stored
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Applies `writes` in order, atomically, and notes the ledger as applied up to
    /// `ledger_size` (never moving the mark back).
    pub fn apply(&self, writes: &[KvWrite], ledger_size: u64) -> Result<(), KvError> {
        let mut batch = sled::Batch::default();
        for w in writes {
            let k = data_key(&w.namespace, &w.key);
            match &w.value {
                Some(v) => batch.insert(k, v.as_slice()),
                None => batch.remove(k),
            }
        }
        batch.insert(APPLIED, &ledger_size.max(self.applied()?).to_be_bytes());
        self.db.apply_batch(batch).map_err(|e| self.fail(e))
    }

    /// Forgets everything, then applies `writes` (in ledger order): the state the
    /// ledger of size `ledger_size` implies.
    pub fn rebuild(&self, writes: &[KvWrite], ledger_size: u64) -> Result<(), KvError> {
        self.db.clear().map_err(|e| self.fail(e))?;
        self.apply(writes, ledger_size)?;
        self.db.flush().map(drop).map_err(|e| self.fail(e))
    }
}

/// One recorded host call, as [`writes`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct CallView<'a> {
    /// Interface with version.
    pub interface: &'a str,
    /// Function.
    pub function: &'a str,
    /// Parameters (a tuple).
    pub params: &'a Value,
    /// Result (a tuple).
    pub result: &'a Value,
}

impl<'a> From<&'a crate::HostCall> for CallView<'a> {
    fn from(call: &'a crate::HostCall) -> Self {
        Self {
            interface: call.interface,
            function: call.function,
            params: &call.params,
            result: &call.result,
        }
    }
}

/// Whether a component with `imports` uses the key-value store (imports one of its
/// interfaces, at any version): the host opens the store only for one that does.
pub fn imported<'a>(imports: impl IntoIterator<Item = &'a str>) -> bool {
    let name = |i: &'a str| i.split_once('@').map_or(i, |(name, _)| name);
    imports.into_iter().any(|i| {
        [INTERFACE, PREFIX_INTERFACE]
            .iter()
            .any(|k| name(k) == name(i))
    })
}

/// The key-value writes one invocation's recorded host calls made, in call order: every
/// successful `set` and `delete`, on the bucket its `open` named. Calls that are not
/// key-value writes are skipped.
pub fn writes<'a>(calls: impl IntoIterator<Item = CallView<'a>>) -> Vec<KvWrite> {
    let mut buckets: BTreeMap<u32, String> = BTreeMap::new();
    let mut out = Vec::new();
    for call in calls {
        if call.interface != INTERFACE {
            continue;
        }
        match call.function {
            OPEN => {
                if let (Some((namespace,)), Some((Ok(rep),))) = (
                    <(String,)>::from_value(call.params),
                    <(Result<u32, Error>,)>::from_value(call.result),
                ) {
                    buckets.insert(rep, namespace);
                }
            }
            SET => {
                if let (Some((rep, key, value)), Some((Ok(()),))) = (
                    <(u32, String, Vec<u8>)>::from_value(call.params),
                    <(Result<(), Error>,)>::from_value(call.result),
                ) && let Some(namespace) = buckets.get(&rep)
                {
                    out.push(KvWrite {
                        namespace: namespace.clone(),
                        key,
                        value: Some(value),
                    });
                }
            }
            DELETE => {
                if let (Some((rep, key)), Some((Ok(()),))) = (
                    <(u32, String)>::from_value(call.params),
                    <(Result<(), Error>,)>::from_value(call.result),
                ) && let Some(namespace) = buckets.get(&rep)
                {
                    out.push(KvWrite {
                        namespace: namespace.clone(),
                        key,
                        value: None,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// One invocation's view of the store: the store, read through its own pending writes.
#[derive(Debug, Default)]
pub(crate) struct Session {
    store: Option<Arc<KvStore>>,
    pending: BTreeMap<(String, String), Option<Vec<u8>>>,
    pending_bytes: usize,
}

impl Session {
    pub(crate) fn new(store: Option<Arc<KvStore>>) -> Self {
        Self {
            store,
            ..Self::default()
        }
    }

    fn store(&self) -> Result<&KvStore, Error> {
        self.store
            .as_deref()
            .ok_or_else(|| Error::Other("no key-value store is configured".into()))
    }

    pub(crate) fn check_open(&self) -> Result<(), Error> {
        self.store().map(drop)
    }

    pub(crate) fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        check_key(key)?;
        if let Some(pending) = self.pending.get(&(namespace.to_owned(), key.to_owned())) {
            return Ok(pending.clone());
        }
        self.store()?
            .get(namespace, key)
            .map_err(|e| Error::Other(e.to_string()))
    }

    pub(crate) fn put(
        &mut self,
        namespace: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        check_key(key)?;
        self.store()?;
        let len = value.as_ref().map_or(0, Vec::len);
        if len > MAX_VALUE_BYTES {
            return Err(Error::Other(format!(
                "a value of {len} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes"
            )));
        }
        let total = self.pending_bytes + key.len() + len;
        if total > MAX_INVOCATION_WRITE_BYTES {
            return Err(Error::Other(format!(
                "this invocation's writes would reach {total} bytes, over the limit of {MAX_INVOCATION_WRITE_BYTES}"
            )));
        }
        self.pending_bytes = total;
        self.pending
            .insert((namespace.to_owned(), key.to_owned()), value);
        Ok(())
    }

    /// A page of keys of `namespace` with `prefix`, after `cursor`, pending writes included.
    pub(crate) fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<KeyResponse, Error> {
        if prefix.len() > MAX_KEY_BYTES {
            return Err(Error::Other(format!(
                "a prefix of {} bytes exceeds the key limit of {MAX_KEY_BYTES} bytes",
                prefix.len()
            )));
        }
        let ns_pending = self
            .pending
            .iter()
            .filter(|((n, k), _)| n == namespace && k.starts_with(prefix))
            .filter(|((_, k), _)| cursor.is_none_or(|c| k.as_str() > c));
        let deletes = ns_pending.clone().filter(|(_, v)| v.is_none()).count();
        // Enough stored keys that deletes cannot leave the page short while more remain.
        let limit = PAGE_KEYS + 1 + deletes;
        let stored = self
            .store()?
            .keys(namespace, prefix, cursor, limit)
            .map_err(|e| Error::Other(e.to_string()))?;
        let bound = (stored.len() == limit).then(|| stored[limit - 1].clone());
        let mut keys: BTreeSet<String> = stored.into_iter().collect();
        for ((_, key), value) in ns_pending {
            if bound.as_ref().is_some_and(|b| key > b) {
                continue;
            }
            if value.is_some() {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        let mut keys: Vec<String> = keys.into_iter().collect();
        let cursor = if keys.len() > PAGE_KEYS {
            keys.truncate(PAGE_KEYS);
            keys.last().cloned()
        } else {
            bound
        };
        Ok(KeyResponse { keys, cursor })
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Other(format!(
            "a key of {} bytes exceeds the limit of {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Whether `namespace` is a well-formed namespace name; the error says why not.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), Error> {
    if namespace.is_empty()
        || namespace.len() > MAX_NAMESPACE_BYTES
        || namespace.chars().any(char::is_control)
    {
        return Err(Error::Other(format!(
            "`{namespace}` is not a namespace name: 1 to {MAX_NAMESPACE_BYTES} bytes, no control characters"
        )));
    }
    Ok(())
}

/// The key-value writes a run of ledger entries implies: those of every invocation that ends
/// in it and did not trap, in the order of their ends. `entries` must hold every entry of each
/// invocation that ends in it (one written ahead of an effect may have begun before the batch
/// [`KvStore::applied`] names).
pub fn ledger_writes<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<KvWrite> {
    let mut calls: BTreeMap<u64, Vec<CallView<'a>>> = BTreeMap::new();
    let mut trapped = BTreeSet::new();
    let mut out = Vec::new();
    for entry in entries {
        match entry {
            Entry::HostCall {
                invocation,
                interface,
                function,
                params,
                result,
                ..
            } => calls.entry(*invocation).or_default().push(CallView {
                interface,
                function,
                params,
                result,
            }),
            Entry::Trap { invocation, .. } => {
                trapped.insert(*invocation);
            }
            Entry::InvocationEnd { invocation, .. } => {
                let made = calls.remove(invocation).unwrap_or_default();
                if !trapped.remove(invocation) {
                    out.extend(writes(made));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn store(keys: impl IntoIterator<Item = String>) -> (tempfile::TempDir, Arc<KvStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::open(&dir.path().join("kv")).unwrap();
        let writes: Vec<KvWrite> = keys
            .into_iter()
            .map(|key| KvWrite {
                namespace: "n".into(),
                key,
                value: Some(b"v".to_vec()),
            })
            .collect();
        store.apply(&writes, 7).unwrap();
        (dir, Arc::new(store))
    }

    /// Every key, following cursors.
    fn all(session: &Session, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = session.list("n", prefix, cursor.as_deref()).unwrap();
            assert!(page.keys.len() <= PAGE_KEYS);
            keys.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return keys,
            }
        }
    }

    // Verifies: FC-MEM-2506
    #[test]
    fn pages_merge_pending_writes_with_the_store_in_order() {
        let (_dir, store) = store((0..250).map(|i| format!("k{i:03}")));
        assert_eq!(store.applied().unwrap(), 7);
        let mut session = Session::new(Some(store));
        for i in (0..250).step_by(3) {
            session.put("n", &format!("k{i:03}"), None).unwrap();
        }
        session.put("n", "k0995", Some(b"x".to_vec())).unwrap();
        session.put("n", "zz", Some(b"x".to_vec())).unwrap();
        session.put("other", "k000", Some(b"x".to_vec())).unwrap();
        let mut expected: Vec<String> = (0..250)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("k{i:03}"))
            .collect();
        expected.push("k0995".into());
        expected.push("zz".into());
        expected.sort();
        assert_eq!(all(&session, ""), expected);
        let k1: Vec<String> = expected
            .iter()
            .filter(|k| k.starts_with("k1"))
            .cloned()
            .collect();
        assert_eq!(all(&session, "k1"), k1);
        assert_eq!(session.get("n", "k000").unwrap(), None);
        assert_eq!(session.get("n", "k001").unwrap(), Some(b"v".to_vec()));
        assert_eq!(session.get("n", "zz").unwrap(), Some(b"x".to_vec()));
    }

    // Verifies: FC-MEM-2512
    #[test]
    fn oversized_keys_values_and_invocations_are_refused_and_keep_nothing() {
        let (_dir, store) = store([]);
        let mut session = Session::new(Some(store));
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(
            matches!(session.put("n", &long_key, None), Err(Error::Other(m)) if m.contains("key of 1025 bytes"))
        );
        let big = vec![0; MAX_VALUE_BYTES + 1];
        assert!(
            matches!(session.put("n", "k", Some(big)), Err(Error::Other(m)) if m.contains("exceeds the limit"))
        );
        for i in 0..16 {
            session
                .put("n", &format!("k{i}"), Some(vec![0; MAX_VALUE_BYTES - 64]))
                .unwrap();
        }
        let over = session.put("n", "last", Some(vec![0; MAX_VALUE_BYTES - 64]));
        assert!(matches!(over, Err(Error::Other(m)) if m.contains("this invocation's writes")));
        assert_eq!(session.get("n", "last").unwrap(), None);
        assert!(check_namespace("").is_err());
        assert!(check_namespace("a\nb").is_err());
        assert!(check_namespace(&"n".repeat(MAX_NAMESPACE_BYTES + 1)).is_err());
        assert!(check_namespace("memory").is_ok());
    }

    // Verifies: FC-MEM-2515
    #[test]
    fn variants_are_recorded_by_case_name_with_their_payload() {
        for error in [
            Error::NoSuchStore,
            Error::AccessDenied,
            Error::Other("disk".into()),
        ] {
            let value = error.to_value();
            assert_eq!(Error::from_value(&value).map(|e| e.to_value()), Some(value));
        }
        assert_eq!(
            Error::Other("x".into()).to_value(),
            Value::Variant {
                case: "other".into(),
                payload: Some(Box::new(Value::String("x".into()))),
            }
        );
        // A case with a payload it does not carry, or without the one it does, does not fit.
        let wrong = |case: &str, payload: Option<Value>| Value::Variant {
            case: case.into(),
            payload: payload.map(Box::new),
        };
        assert!(Error::from_value(&wrong("access-denied", Some(Value::U32(1)))).is_none());
        assert!(Error::from_value(&wrong("other", None)).is_none());
        assert!(Error::from_value(&wrong("other", Some(Value::U32(1)))).is_none());
        assert!(Error::from_value(&wrong("unknown", None)).is_none());
    }

    // Verifies: FC-MEM-2503
    #[test]
    fn ledger_writes_skip_trapped_invocations_and_other_buckets() {
        let open = |inv: u64, ns: &str, rep: u32| Entry::HostCall {
            invocation: inv,
            seq: 0,
            interface: INTERFACE.into(),
            function: "open".into(),
            params: (ns.to_owned(),).to_value(),
            result: (Ok::<u32, Error>(rep),).to_value(),
            fuel_remaining: 0,
        };
        let set = |inv: u64, rep: u32, key: &str, ok: bool| Entry::HostCall {
            invocation: inv,
            seq: 1,
            interface: INTERFACE.into(),
            function: "[method]bucket.set".into(),
            params: (rep, key.to_owned(), b"v".to_vec()).to_value(),
            result: (if ok { Ok(()) } else { Err(Error::AccessDenied) },).to_value(),
            fuel_remaining: 0,
        };
        let end = |inv: u64| Entry::InvocationEnd {
            invocation: inv,
            result: None,
            fuel_consumed: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        let trap = |inv: u64| Entry::Trap {
            invocation: inv,
            kind: "trap".into(),
            message: String::new(),
            fuel_consumed: 0,
        };
        let entries = [
            open(1, "a", 3),
            open(2, "b", 3),
            set(1, 3, "one", true),
            set(2, 3, "two", true),
            set(1, 3, "denied", false),
            set(1, 9, "unopened", true),
            end(1),
            trap(2),
            end(2),
        ];
        let writes = ledger_writes(&entries);
        assert_eq!(
            writes,
            [KvWrite {
                namespace: "a".into(),
                key: "one".into(),
                value: Some(b"v".to_vec()),
            }]
        );
    }
}
