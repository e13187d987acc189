//! A run's stop signal: Ctrl-C, a failed threshold, or a fatal task error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

const RUNNING: u8 = 0;
const INTERRUPTED: u8 = 1;
const ABORTED: u8 = 2;
const STOPPED: u8 = 3;

/// Why a run stopped before its load profile ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// The user asked (Ctrl-C): drain in-flight work and report.
    Interrupted,
    /// The run decided to stop itself (threshold failed, task setup failed).
    Aborted(String),
    /// A command stopped it (`vajra-peer stop` on a cluster's test): drain
    /// and report, as for an interruption, but nobody pressed Ctrl-C here.
    Stopped,
}

/// Shared, cheaply clonable stop flag that async code can also wait on.
#[derive(Clone, Default)]
pub struct StopSignal {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: AtomicU8,
    reason: Mutex<Option<String>>,
    notify: Notify,
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the run as interrupted by the user (first cause wins).
    pub fn interrupt(&self) {
        self.fire(INTERRUPTED, None);
    }

    /// Stops the run on a command from elsewhere (first cause wins).
    pub fn stop_on_command(&self) {
        self.fire(STOPPED, None);
    }

    /// Stops the run, recording why (first cause wins).
    pub fn abort(&self, reason: impl Into<String>) {
        self.fire(ABORTED, Some(reason.into()));
    }

    fn fire(&self, state: u8, reason: Option<String>) {
        if self
            .inner
            .state
            .compare_exchange(RUNNING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            *self.inner.reason.lock() = reason;
            self.inner.notify.notify_waiters();
        }
    }

    /// Whether the run has been told to stop.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) != RUNNING
    }

    /// Why the run stopped, if it did.
    pub fn cause(&self) -> Option<StopCause> {
        match self.inner.state.load(Ordering::Acquire) {
            INTERRUPTED => Some(StopCause::Interrupted),
            STOPPED => Some(StopCause::Stopped),
            ABORTED => Some(StopCause::Aborted(
                self.inner.reason.lock().clone().unwrap_or_default(),
            )),
            _ => None,
        }
    }

    /// Resolves once the signal fires.
    pub async fn stopped(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

impl crate::task::context::StopRun for StopSignal {
    fn stop_run(&self, reason: String) {
        self.abort(reason);
    }
}
