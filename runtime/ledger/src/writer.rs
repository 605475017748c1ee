//! Group commit for many threads: appends that arrive while a batch is being made
//! durable are coalesced into the next batch (one write, one fdatasync, one signed
//! checkpoint). Each caller returns only once its own entries are durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::entry::Entry;
use crate::store::{Ledger, LedgerError, Receipt};

/// Most entries coalesced into one batch.
const MAX_GROUP_ENTRIES: usize = 4096;

struct Request {
    entries: Vec<Entry>,
    reply: SyncSender<Result<Receipt, LedgerError>>,
}

struct Shared {
    ledger: Mutex<Ledger>,
    next_invocation: AtomicU64,
    /// Told of every group commit (telemetry), once set.
    observer: std::sync::OnceLock<Observer>,
}

/// What is told of every group commit.
type Observer = Box<dyn Fn(&Commit) + Send + Sync>;

/// One group commit, as a [`LedgerWriter::observe`]r sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The appends coalesced into it.
    pub appends: usize,
    /// Their entries.
    pub entries: usize,
    /// From the batch's start to its entries durable and its checkpoint signed.
    pub duration: Duration,
    /// Of which writing and fdatasync.
    pub sync: Duration,
    /// The tree's size after it.
    pub tree_size: u64,
    /// Whether it was made durable (an error is answered to every append in it).
    pub durable: bool,
}

fn lock(m: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    // A panic while holding the lock cannot leave a half-written batch acknowledged:
    // acknowledgements are sent only after a successful append.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A shareable (`Send + Sync`) front to a [`Ledger`] that group-commits concurrent
/// appends on a dedicated thread.
pub struct LedgerWriter {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter").finish_non_exhaustive()
    }
}

impl LedgerWriter {
    /// Starts the writer thread.
    pub fn new(ledger: Ledger) -> Self {
        let next = ledger.peek_next_invocation();
        let shared = Arc::new(Shared {
            ledger: Mutex::new(ledger),
            next_invocation: AtomicU64::new(next),
            observer: std::sync::OnceLock::new(),
        });
        let (tx, rx) = mpsc::channel::<Request>();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("femtoclaw-ledger-writer".to_owned())
            .spawn(move || run(&s, &rx))
            .ok();
        Self {
            shared,
            tx: Mutex::new(thread.as_ref().map(|_| tx)),
            thread: Mutex::new(thread),
        }
    }

    /// Appends entries durably, sharing the fdatasync and checkpoint with whatever other
    /// threads append at the same time. The receipt names this call's own indexes and
    /// the checkpoint of the batch that made them durable.
    pub fn append(&self, entries: Vec<Entry>) -> Result<Receipt, LedgerError> {
        let (reply, rx) = mpsc::sync_channel(1);
        {
            let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = tx.as_ref().ok_or(LedgerError::WriterStopped)?;
            tx.send(Request { entries, reply })
                .map_err(|_| LedgerError::WriterStopped)?;
        }
        rx.recv().map_err(|_| LedgerError::WriterStopped)?
    }

    /// Tells `observer` of every group commit from now on (the first observer set stays).
    pub fn observe(&self, observer: impl Fn(&Commit) + Send + Sync + 'static) {
        let _ = self.shared.observer.set(Box::new(observer));
    }

    /// A new invocation number, unique across threads.
    pub fn next_invocation(&self) -> u64 {
        self.shared.next_invocation.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` with the ledger (for reads: `get`, `iter`, `prove`, `export`...). Blocks
    /// while a batch is being written.
    pub fn with_ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut lock(&self.shared.ledger))
    }

    /// Stops the writer thread after the appends already queued, and hands the ledger
    /// back.
    pub fn shutdown(self) -> Result<Ledger, LedgerError> {
        self.stop();
        let shared = Arc::clone(&self.shared);
        drop(self);
        Arc::try_unwrap(shared)
            .map(|s| {
                s.ledger
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
            })
            .map_err(|_| LedgerError::WriterStopped)
    }

    fn stop(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, rx: &Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut total = group.iter().map(|r| r.entries.len()).sum::<usize>();
        while total < MAX_GROUP_ENTRIES {
            match rx.try_recv() {
                Ok(r) => {
                    total += r.entries.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let mut all = Vec::with_capacity(total);
        let mut counts = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for r in group {
            counts.push(r.entries.len());
            all.extend(r.entries);
            replies.push(r.reply);
        }
        let span = tracing::info_span!(
            "femtoclaw.ledger.commit",
            femtoclaw.ledger.batch.appends = i64::try_from(counts.len()).unwrap_or(i64::MAX),
            femtoclaw.ledger.batch.entries = i64::try_from(total).unwrap_or(i64::MAX),
            femtoclaw.ledger.fsync_ms = tracing::field::Empty,
            femtoclaw.ledger.tree_size = tracing::field::Empty,
        );
        let started = Instant::now();
        let (result, sync, tree_size) = span.in_scope(|| {
            let mut ledger = lock(&shared.ledger);
            let r = ledger.append_batch(all);
            // Keep handed-out invocation numbers ahead of recorded ones.
            let recorded = ledger.peek_next_invocation();
            shared
                .next_invocation
                .fetch_max(recorded, Ordering::Relaxed);
            (r, ledger.last_sync_time(), ledger.len())
        });
        span.record("femtoclaw.ledger.fsync_ms", sync.as_secs_f64() * 1e3);
        span.record(
            "femtoclaw.ledger.tree_size",
            i64::try_from(tree_size).unwrap_or(i64::MAX),
        );
        drop(span);
        if let Some(observer) = shared.observer.get() {
            observer(&Commit {
                appends: counts.len(),
                entries: total,
                duration: started.elapsed(),
                sync,
                tree_size,
                durable: result.is_ok(),
            });
        }
        match result {
            Ok(receipt) => {
                let mut offset = 0usize;
                for (n, reply) in counts.into_iter().zip(replies) {
                    let hashes = receipt
                        .leaf_hashes
                        .get(offset..offset + n)
                        .map(<[_]>::to_vec)
                        .unwrap_or_default();
                    let mine = Receipt {
                        first_index: receipt.first_index + offset as u64,
                        leaf_hashes: hashes,
                        tree_size: receipt.tree_size,
                        root: receipt.root,
                        checkpoint: receipt.checkpoint.clone(),
                    };
                    offset += n;
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
