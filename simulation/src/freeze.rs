//! Freezing a simulated peer as SIGSTOP freezes a process: its loops are
//! not polled while it is frozen (their timers run on and fire late, all
//! at once, when it wakes), and the span of its last freeze is kept for
//! the engine model, which holds a share that fell behind.

use std::future::Future;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::Clock;

/// One peer's freezes.
pub struct Freezer {
    frozen: watch::Sender<bool>,
    last: Mutex<Option<Span>>,
    clock: Clock,
}

/// A freeze, in virtual Unix ms: from, and until (while it lasts, none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// When it froze.
    pub from_ms: u64,
    /// When it woke, once it did.
    pub until_ms: Option<u64>,
}

impl Freezer {
    /// A peer that is not frozen.
    pub fn new(clock: Clock) -> Self {
        Self {
            frozen: watch::Sender::new(false),
            last: Mutex::new(None),
            clock,
        }
    }

    /// Freezes or wakes it.
    pub fn set(&self, frozen: bool) {
        if frozen == self.is_frozen() {
            return;
        }
        let now = self.clock.unix_ms();
        let mut last = self.last.lock();
        *last = if frozen {
            Some(Span {
                from_ms: now,
                until_ms: None,
            })
        } else {
            last.map(|span| Span {
                until_ms: Some(now),
                ..span
            })
        };
        self.frozen.send_replace(frozen);
    }

    /// Whether it is frozen now.
    pub fn is_frozen(&self) -> bool {
        *self.frozen.borrow()
    }

    /// Its last freeze, if it was ever frozen.
    pub fn last(&self) -> Option<Span> {
        *self.last.lock()
    }

    /// Runs `task` while the peer is awake: it is not polled while frozen.
    pub fn freezable<F>(&self, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut frozen = self.frozen.subscribe();
        async move {
            let mut task = std::pin::pin!(task);
            loop {
                while *frozen.borrow_and_update() {
                    if frozen.changed().await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    () = &mut task => return,
                    changed = frozen.wait_for(|f| *f) => if changed.is_err() { return },
                }
            }
        }
    }
}
