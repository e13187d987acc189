//! Writes finished runs to the store, never holding up the test that
//! produced them: while the store is away (locked, unreachable), runs wait
//! in a bounded queue and are written, oldest first, when it returns.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::store::{RecordedRun, Store, StoreError};

/// Most runs kept waiting for the store; past it (or past
/// [`MAX_WAITING_BYTES`]) the oldest is given up, with a warning naming it
/// (its report is still in the peers' memory).
pub const MAX_WAITING: usize = 64;
/// Most bytes of reports kept waiting for the store.
pub const MAX_WAITING_BYTES: usize = 256 * 1024 * 1024;

/// What became of a run handed to [`Recorder::record`].
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Written now.
    Written,
    /// Already in the store: left as it was.
    AlreadyThere,
    /// The store is away: it waits in the queue.
    Waiting(String),
    /// The store refused it for good (it is not queued).
    Refused(String),
}

/// The store and the runs waiting for it.
pub struct Recorder {
    store: Arc<dyn Store>,
    waiting: Mutex<VecDeque<RecordedRun>>,
    given_up: Mutex<Vec<String>>,
}

impl Recorder {
    /// A recorder writing to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            waiting: Mutex::default(),
            given_up: Mutex::default(),
        }
    }

    /// The store it writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether run `id` is recorded or waiting to be.
    pub async fn knows(&self, id: &str) -> Result<bool, StoreError> {
        if self.waiting.lock().iter().any(|r| r.summary.id == id) {
            return Ok(true);
        }
        self.store.contains(id).await
    }

    /// Runs waiting for the store, oldest first.
    pub fn waiting(&self) -> Vec<String> {
        self.waiting
            .lock()
            .iter()
            .map(|r| r.summary.id.clone())
            .collect()
    }

    /// Runs given up because the queue was full.
    pub fn given_up(&self) -> Vec<String> {
        self.given_up.lock().clone()
    }

    /// Writes `run` after those waiting, or queues it while the store is
    /// away.
    pub async fn record(&self, run: RecordedRun) -> Recorded {
        self.flush().await;
        if !self.waiting.lock().is_empty() {
            let why = "the store is away; runs before it are waiting".to_owned();
            self.enqueue(run);
            return Recorded::Waiting(why);
        }
        match self.store.record(&run).await {
            Ok(true) => Recorded::Written,
            Ok(false) => Recorded::AlreadyThere,
            Err(e) if e.is_transient() => {
                let why = e.to_string();
                self.enqueue(run);
                Recorded::Waiting(why)
            }
            Err(e) => Recorded::Refused(e.to_string()),
        }
    }

    /// Writes what waits, oldest first, until the store is away again;
    /// how many were written.
    pub async fn flush(&self) -> usize {
        let mut written = 0;
        loop {
            let Some(next) = self.waiting.lock().front().cloned() else {
                return written;
            };
            match self.store.record(&next).await {
                Ok(_) => {
                    written += 1;
                    self.waiting.lock().pop_front();
                }
                Err(e) if e.is_transient() => return written,
                Err(e) => {
                    tracing::warn!("history: run {} not recorded: {e}", next.summary.id);
                    self.waiting.lock().pop_front();
                }
            }
        }
    }

    fn enqueue(&self, run: RecordedRun) {
        let mut waiting = self.waiting.lock();
        if waiting.iter().any(|r| r.summary.id == run.summary.id) {
            return;
        }
        waiting.push_back(run);
        let bytes = |w: &VecDeque<RecordedRun>| w.iter().map(|r| r.report.len()).sum::<usize>();
        while (waiting.len() > MAX_WAITING || bytes(&waiting) > MAX_WAITING_BYTES)
            && waiting.len() > 1
            && let Some(oldest) = waiting.pop_front()
        {
            tracing::warn!(
                "history: the store has been away for {MAX_WAITING} runs; run {} is not recorded",
                oldest.summary.id
            );
            self.given_up.lock().push(oldest.summary.id);
        }
    }
}
