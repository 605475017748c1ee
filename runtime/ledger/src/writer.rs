//! Group commit for many threads: appends that arrive while a batch is being made
//! durable are coalesced into the next batch (one write, one fdatasync, one signed
//! checkpoint). Each caller returns only once its own entries are durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

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
        let result = {
            let mut ledger = lock(&shared.ledger);
            let r = ledger.append_batch(all);
            // Keep handed-out invocation numbers ahead of recorded ones.
            let recorded = ledger.peek_next_invocation();
            shared
                .next_invocation
                .fetch_max(recorded, Ordering::Relaxed);
            r
        };
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
