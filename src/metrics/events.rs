//! Named event counters a task bumps besides its results: the http task's
//! reconnects, a user task's cache misses. They are not executions (no
//! latency, never an error); a run reports how much each grew while it
//! went, and a cluster's report adds its peers' counts.
//!
//! Counters are process-wide, looked up by name once (a task keeps the
//! [`EventCounter`] handle) and bumped with one relaxed atomic add. A run
//! takes a [`snapshot`] when it starts and reports [`grown_since`] it at
//! the end; runs of one process that overlap would see each other's
//! events, which a peer (one test at a time) and `vajra-peer run` never do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

/// Most distinct counter names; a name past this shares the overflow
/// counter, so a task that makes names from data cannot grow memory.
pub const MAX_EVENT_COUNTERS: usize = 64;
/// The counter that names past [`MAX_EVENT_COUNTERS`] count into.
pub const OVERFLOW_COUNTER: &str = "other_events";
/// The counter of arrivals dispatched whose execution did nothing
/// ([`TaskResult::NotRun`](crate::task::TaskResult::NotRun)): not
/// executions, so not in any latency or error figure.
pub const NOT_RUN: &str = "not_run";

static COUNTERS: LazyLock<Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>> =
    LazyLock::new(Default::default);

/// A handle on one named counter.
#[derive(Clone, Debug)]
pub struct EventCounter(Arc<AtomicU64>);

impl EventCounter {
    /// The counter called `name`, created at zero on first use.
    pub fn named(name: &'static str) -> Self {
        let mut counters = COUNTERS.lock();
        let name = if counters.contains_key(name) || counters.len() < MAX_EVENT_COUNTERS - 1 {
            name
        } else {
            OVERFLOW_COUNTER
        };
        Self(Arc::clone(counters.entry(name).or_default()))
    }

    /// Counts `n` events.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Every counter's value now.
pub fn snapshot() -> BTreeMap<&'static str, u64> {
    COUNTERS
        .lock()
        .iter()
        .map(|(name, value)| (*name, value.load(Ordering::Relaxed)))
        .collect()
}

/// How much each counter grew since `before` (counters that did not grow
/// are left out).
pub fn grown_since(before: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    snapshot()
        .into_iter()
        .filter_map(|(name, now)| {
            let grown = now - before.get(name).copied().unwrap_or(0);
            (grown > 0).then(|| (name.to_owned(), grown))
        })
        .collect()
}

/// The counters' growth, handed out a window at a time: each
/// [`Growth::take`] gives what grew since the one before (or since
/// [`Growth::start`]), so the windows' growths add up to the run's.
#[derive(Debug)]
pub struct Growth {
    last: BTreeMap<&'static str, u64>,
}

impl Growth {
    /// Starts counting from every counter's value now.
    pub fn start() -> Self {
        Self::since(snapshot())
    }

    /// Starts counting from `baseline` (a [`snapshot`]).
    pub fn since(baseline: BTreeMap<&'static str, u64>) -> Self {
        Self { last: baseline }
    }

    /// What grew since the last take (counters that did not grow are left
    /// out).
    pub fn take(&mut self) -> BTreeMap<&'static str, u64> {
        let now = snapshot();
        let grown = now
            .iter()
            .filter_map(|(name, value)| {
                let grown = value - self.last.get(name).copied().unwrap_or(0);
                (grown > 0).then_some((*name, grown))
            })
            .collect();
        self.last = now;
        grown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_handed_out_once_window_by_window() {
        let counter = EventCounter::named("test.windows");
        counter.add(5);
        let mut growth = Growth::start();
        counter.add(2);
        assert_eq!(growth.take().get("test.windows"), Some(&2));
        assert_eq!(growth.take().get("test.windows"), None, "taken once");
        counter.add(3);
        EventCounter::named("test.windows.new").add(4);
        let third = growth.take();
        assert_eq!(third.get("test.windows"), Some(&3));
        assert_eq!(third.get("test.windows.new"), Some(&4));
    }

    #[test]
    fn a_run_sees_what_grew_while_it_went() {
        let counter = EventCounter::named("test.grows");
        counter.add(5);
        let before = snapshot();
        counter.add(2);
        EventCounter::named("test.grows").add(1);
        let grown = grown_since(&before);
        assert_eq!(grown.get("test.grows"), Some(&3));
        assert!(!grown.contains_key("test.never"));
    }
}
