//! The hot path: sharded recorders that workers write results into.
//!
//! There is no global lock. The hub holds a fixed set of shards, each a small
//! mutex-protected set of open one-second windows. Every worker is bound to
//! one shard for life, so a lock is only ever contended by the aggregator's
//! once-a-second sweep (or, rarely, by another worker sharing the shard).
//! The aggregator takes whole closed windows out of every shard and merges
//! them; a result that arrives for a window already taken is folded into the
//! oldest open one, so nothing is ever lost or counted twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::histogram::{new_histogram, record};
use super::stats::{OpKey, Phase, WindowStats};
use crate::task::TaskError;

/// Keeps each shard on its own cache lines so shards never false-share.
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Default)]
struct Shard {
    open: Vec<WindowStats>,
    /// Windows below this index were taken by the aggregator.
    closed_before: u64,
}

impl Shard {
    #[inline]
    fn window(&mut self, index: u64) -> &mut WindowStats {
        let index = index.max(self.closed_before);
        let pos = match self.open.iter().rposition(|w| w.index == index) {
            Some(pos) => pos,
            None => {
                self.open.push(WindowStats::new(index));
                self.open.len() - 1
            }
        };
        &mut self.open[pos]
    }

    fn take_before(&mut self, before: u64) -> Vec<WindowStats> {
        self.closed_before = self.closed_before.max(before);
        let (taken, kept) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|w| w.index < before);
        self.open = kept;
        taken
    }
}

/// The set of shards of one run.
pub struct MetricsHub {
    shards: Box<[Padded<Mutex<Shard>>]>,
    next_shard: AtomicUsize,
}

impl MetricsHub {
    /// A hub with `shards` shards (at least one).
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..shards.max(1))
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            next_shard: AtomicUsize::new(0),
        })
    }

    /// A recorder bound to the next shard, round robin.
    pub fn recorder(self: &Arc<Self>) -> Recorder {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        Recorder {
            hub: Arc::clone(self),
            shard,
        }
    }

    /// Takes every window with an index below `before` out of all shards.
    pub fn take_closed(&self, before: u64) -> Vec<WindowStats> {
        self.shards
            .iter()
            .flat_map(|s| s.0.lock().take_before(before))
            .collect()
    }

    /// Copies of every window not taken yet, left in place: what a live
    /// preview adds to the closed windows.
    pub fn peek_open(&self) -> Vec<WindowStats> {
        self.shards
            .iter()
            .flat_map(|s| s.0.lock().open.clone())
            .collect()
    }

    /// Takes every window, open or not (at the end of a run).
    pub fn take_all(&self) -> Vec<WindowStats> {
        self.take_closed(u64::MAX)
    }
}

/// A worker's handle for recording results into its shard.
#[derive(Clone)]
pub struct Recorder {
    hub: Arc<MetricsHub>,
    shard: usize,
}

impl Recorder {
    /// Records one finished execution in second `window` of the run.
    #[inline]
    pub fn record_execution(
        &self,
        window: u64,
        key: OpKey,
        latency_ns: u64,
        service_ns: u64,
        error: Option<&TaskError>,
    ) {
        let mut shard = self.hub.shards[self.shard].0.lock();
        shard
            .window(window)
            .op(key)
            .record(latency_ns, service_ns, error);
    }

    /// Records one arrival leaving the scheduler `lag_ns` after it was due,
    /// either handed to a worker or dropped.
    pub fn record_dispatch(&self, window: u64, phase: Phase, lag_ns: u64, dropped: bool) {
        let mut shard = self.hub.shards[self.shard].0.lock();
        let w = shard.window(window);
        record(w.lag.get_or_insert_with(new_histogram), lag_ns);
        let op = w.op((phase, None));
        if dropped {
            op.dropped += 1;
        } else {
            op.dispatched += 1;
        }
    }

    /// Counts `n` arrivals the scheduler reached later than the run's
    /// `max_lag` and did not send.
    pub fn record_missed(&self, window: u64, phase: Phase, n: u64) {
        if n > 0 {
            let mut shard = self.hub.shards[self.shard].0.lock();
            shard.window(window).op((phase, None)).missed += n;
        }
    }

    /// Counts `n` arrivals dropped without dispatch (queued when a run is
    /// interrupted, for instance).
    pub fn record_dropped(&self, window: u64, phase: Phase, n: u64) {
        if n > 0 {
            let mut shard = self.hub.shards[self.shard].0.lock();
            shard.window(window).op((phase, None)).dropped += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_results_fold_into_the_oldest_open_window() {
        let hub = MetricsHub::new(2);
        let rec = hub.recorder();
        rec.record_execution(0, (Phase::Main, None), 10_000, 5_000, None);
        let first = hub.take_closed(1);
        assert_eq!(first.len(), 1);
        // A straggler for second 0 after it was taken lands in second 1.
        rec.record_execution(0, (Phase::Main, None), 10_000, 5_000, None);
        let rest = hub.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].index, 1);
        assert_eq!(rest[0].total().success, 1);
    }

    #[test]
    fn concurrent_recorders_lose_nothing() {
        let hub = MetricsHub::new(3);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rec = hub.recorder();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        rec.record_execution(i / 2_500, (Phase::Main, None), i, i, None);
                    }
                })
            })
            .collect();
        let mut taken = 0;
        for _ in 0..50 {
            taken += hub
                .take_closed(2)
                .iter()
                .map(|w| w.total().success)
                .sum::<u64>();
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        taken += hub
            .take_all()
            .iter()
            .map(|w| w.total().success)
            .sum::<u64>();
        assert_eq!(taken, 40_000);
    }
}
