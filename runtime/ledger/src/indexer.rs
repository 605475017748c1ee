//! Keeps the sled index of derived state up to date on a background thread, off the
//! durable append path. The index may lag the segments (even across a crash); opening
//! the ledger catches it up, and every read through [`crate::Ledger`] waits for it first.

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::segment::Loc;

pub(crate) struct BatchJob {
    pub(crate) first_index: u64,
    pub(crate) locs: Vec<Loc>,
    pub(crate) invocations: Vec<Option<u64>>,
    pub(crate) size: u64,
    pub(crate) commit_loc: Loc,
    pub(crate) next_invocation: u64,
    pub(crate) note: String,
}

enum Job {
    Batch(BatchJob),
    Sync(SyncSender<()>),
}

pub(crate) struct Indexer {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
}

/// Index writes in order, applied in sled batches of at most [`KEYS_PER_BATCH`] keys. Sled keeps
/// every node version a batch makes until the batch ends, so one batch for an invocation of
/// thousands of host calls, or for a reindex, would hold memory in proportion to its entries.
/// Each job's marks come after its entries, so a stop between two batches leaves the marks
/// behind the entries, never ahead of them: opening catches up from the marks.
#[derive(Default)]
pub(crate) struct Writes(Vec<(Vec<u8>, Vec<u8>)>);

/// The most keys one sled batch writes.
const KEYS_PER_BATCH: usize = 256;

impl Writes {
    pub(crate) fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.0.push((key.to_vec(), value.to_vec()));
    }

    /// A job's keys: its entries (and their invocations), then the marks; a later job's marks
    /// replace an earlier one's.
    pub(crate) fn add(&mut self, job: &BatchJob) {
        use crate::store::key;
        for (i, (loc, inv)) in job.locs.iter().zip(&job.invocations).enumerate() {
            let index = job.first_index + i as u64;
            self.insert(&key::entry(index), &loc.to_bytes());
            if let Some(inv) = inv {
                self.insert(&key::invocation(*inv, index), &[]);
            }
        }
        self.insert(&key::checkpoint(job.size), &job.commit_loc.to_bytes());
        self.insert(key::META_INDEXED, &job.size.to_le_bytes());
        self.insert(key::META_COMMITTED, &job.size.to_le_bytes());
        self.insert(
            key::META_NEXT_INVOCATION,
            &job.next_invocation.to_le_bytes(),
        );
        self.insert(key::META_LATEST_CHECKPOINT, job.note.as_bytes());
    }

    /// Applies the writes in order, a bounded batch at a time.
    pub(crate) fn apply(self, db: &sled::Db) -> sled::Result<()> {
        for chunk in self.0.chunks(KEYS_PER_BATCH) {
            let mut batch = sled::Batch::default();
            for (key, value) in chunk {
                batch.insert(&key[..], &value[..]);
            }
            db.apply_batch(batch)?;
        }
        Ok(())
    }
}

/// Most queued jobs merged into one application.
const MAX_COALESCED_JOBS: usize = 64;

impl Indexer {
    pub(crate) fn new(db: sled::Db) -> Self {
        // Bounded: if sled falls behind, appends wait rather than queue without limit.
        let (tx, rx) = mpsc::sync_channel::<Job>(1024);
        let error = Arc::new(Mutex::new(None));
        let err = Arc::clone(&error);
        let thread = std::thread::Builder::new()
            .name("femtoclaw-ledger-index".to_owned())
            .spawn(move || {
                let apply = |writes: Writes| {
                    if let Err(e) = writes.apply(&db) {
                        *err.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                    }
                };
                let mut pending: Option<Job> = None;
                loop {
                    let job = match pending.take() {
                        Some(j) => j,
                        None => match rx.recv() {
                            Ok(j) => j,
                            Err(_) => break,
                        },
                    };
                    match job {
                        Job::Batch(first) => {
                            // Merge the jobs already queued behind this one (applied in
                            // order; a sync waits for them).
                            let mut writes = Writes::default();
                            writes.add(&first);
                            for _ in 1..MAX_COALESCED_JOBS {
                                match rx.try_recv() {
                                    Ok(Job::Batch(next)) => writes.add(&next),
                                    Ok(other) => {
                                        pending = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            apply(writes);
                        }
                        Job::Sync(reply) => {
                            let _ = reply.send(());
                        }
                    }
                }
            })
            .ok();
        Self {
            tx: thread.as_ref().map(|_| tx),
            thread,
            error,
        }
    }

    /// Queues a batch; applied in order. Returns false when there is no indexer thread
    /// (the caller then applies it itself).
    pub(crate) fn submit(&self, job: BatchJob) -> Result<(), BatchJob> {
        match &self.tx {
            Some(tx) => tx.send(Job::Batch(job)).map_err(|e| match e.0 {
                Job::Batch(b) => b,
                Job::Sync(_) => unreachable_job(),
            }),
            None => Err(job),
        }
    }

    /// Waits until every queued batch is applied; reports the first failure, if any.
    pub(crate) fn sync(&self) -> Result<(), String> {
        if let Some(tx) = &self.tx {
            let (reply, rx) = mpsc::sync_channel(1);
            if tx.send(Job::Sync(reply)).is_ok() {
                let _ = rx.recv();
            }
        }
        match self
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn unreachable_job() -> BatchJob {
    BatchJob {
        first_index: 0,
        locs: Vec::new(),
        invocations: Vec::new(),
        size: 0,
        commit_loc: Loc {
            segment: 0,
            offset: 0,
            len: 0,
        },
        next_invocation: 0,
        note: String::new(),
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
