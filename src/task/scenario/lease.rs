//! A feeder's records shared by a cluster: each peer draws from ranges the
//! leader leased it, so no two peers are ever handed the same record.
//!
//! The leader hands out consecutive ranges of a feeder's positions through
//! its replicated log ([`RecordLeases`] is the seam; the cluster implements
//! it with a control request). A peer asks for about a second of its own
//! draws at a time, and asks for the next range when half of what it holds
//! is left, so an iteration rarely waits. Positions count up from 0; a
//! `sequential` feeder that recycles takes them modulo the record count,
//! so the cluster walks the file in order, a range per peer, and starts
//! over; a `unique` one (or one that stops or fails) is given positions
//! below the count only.
//!
//! A peer lost mid-test takes what it held and had not used with it (at
//! most about one and a half leases, a second and a half of its rate):
//! nobody knows how far it got, so those records are never leased again.
//! That keeps `unique` to at most once, whoever dies.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Hands out disjoint ranges of a feeder's positions across a cluster.
pub trait RecordLeases: Send + Sync {
    /// The next `count` positions of feeder `feeder` (of `total` records)
    /// nobody was leased before: a shorter or empty range when fewer are
    /// left (`wrap` false), any range when the feeder recycles (`wrap`).
    /// `Err` when the leader could not be reached for a while.
    fn lease(
        &self,
        feeder: &str,
        total: u64,
        wrap: bool,
        count: u64,
    ) -> BoxFuture<'_, Result<Range<u64>, String>>;
}

/// Fewest positions asked for at once.
pub const MIN_LEASE: u64 = 8;
/// Most positions asked for at once (the leader refuses more).
pub const MAX_LEASE: u64 = 4_096;
/// How many seconds of a peer's draws one lease should cover.
const LEASE_SECS: f64 = 1.0;

/// What a leased draw gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leased {
    /// This record (a row index).
    Record(usize),
    /// The leader has no position left to lease.
    Exhausted,
    /// No lease could be had: why.
    Unavailable(String),
}

/// One feeder's leased positions on this peer.
pub struct LeasedCursor {
    source: Arc<dyn RecordLeases>,
    feeder: String,
    rows: u64,
    wrap: bool,
    state: Mutex<Holding>,
    arrived: Notify,
}

impl std::fmt::Debug for LeasedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedCursor")
            .field("feeder", &self.feeder)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// What a peer holds of one feeder.
struct Holding {
    /// Leased, not yet drawn, oldest first.
    ranges: VecDeque<Range<u64>>,
    /// A lease request is on its way.
    fetching: bool,
    /// The leader said none is left.
    exhausted: bool,
    /// Why the last request failed (cleared by the next lease).
    failure: Option<String>,
    /// Positions the next request asks for.
    size: u64,
    /// When the last lease was asked for, and positions drawn since.
    asked_at: Option<Instant>,
    drawn_since: u64,
}

impl Holding {
    fn held(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    fn take(&mut self) -> Option<u64> {
        while let Some(front) = self.ranges.front_mut() {
            if front.start < front.end {
                let position = front.start;
                front.start += 1;
                self.drawn_since += 1;
                return Some(position);
            }
            self.ranges.pop_front();
        }
        None
    }

    /// Whether to ask for the next lease now: half of one is left.
    fn wants_more(&self) -> bool {
        !self.fetching && !self.exhausted && self.held() * 2 <= self.size
    }

    /// The size of the next lease: a second of the draws seen since the
    /// last one was asked for.
    fn resize(&mut self, now: Instant) {
        if let Some(asked) = self.asked_at {
            let secs = now.duration_since(asked).as_secs_f64().max(1e-3);
            let per_sec = self.drawn_since as f64 / secs;
            self.size = ((per_sec * LEASE_SECS) as u64).clamp(MIN_LEASE, MAX_LEASE);
        }
        self.asked_at = Some(now);
        self.drawn_since = 0;
    }
}

impl LeasedCursor {
    /// A cursor over `rows` records of `feeder`, leased from `source`.
    pub fn new(source: Arc<dyn RecordLeases>, feeder: &str, rows: usize, wrap: bool) -> Arc<Self> {
        Arc::new(Self {
            source,
            feeder: feeder.to_owned(),
            rows: rows as u64,
            wrap,
            state: Mutex::new(Holding {
                ranges: VecDeque::new(),
                fetching: false,
                exhausted: false,
                failure: None,
                size: MIN_LEASE * 2,
                asked_at: None,
                drawn_since: 0,
            }),
            arrived: Notify::new(),
        })
    }

    /// The next record, waiting for a lease when none is held.
    pub async fn draw(self: &Arc<Self>) -> Leased {
        let mut failed_before = false;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            {
                let mut holding = self.state.lock();
                if let Some(position) = holding.take() {
                    if holding.wants_more() {
                        self.ask(&mut holding);
                    }
                    return Leased::Record((position % self.rows) as usize);
                }
                if holding.exhausted {
                    return Leased::Exhausted;
                }
                if failed_before && let Some(why) = holding.failure.clone() {
                    return Leased::Unavailable(why);
                }
                if !holding.fetching {
                    self.ask(&mut holding);
                }
                // Registered before the lock is let go, so the answer's
                // wake-up cannot slip between the check and the wait.
                arrived.as_mut().enable();
            }
            arrived.await;
            failed_before = true;
        }
    }

    /// Sends a lease request in the background (the lock is held).
    fn ask(self: &Arc<Self>, holding: &mut Holding) {
        holding.fetching = true;
        holding.resize(Instant::now());
        let count = holding.size;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let answer = this
                .source
                .lease(&this.feeder, this.rows, this.wrap, count)
                .await;
            {
                let mut holding = this.state.lock();
                holding.fetching = false;
                match answer {
                    Ok(range) if range.start < range.end => {
                        holding.ranges.push_back(range);
                        holding.failure = None;
                    }
                    Ok(_) => holding.exhausted = true,
                    Err(why) => holding.failure = Some(why),
                }
            }
            this.arrived.notify_waiters();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A leader in memory: consecutive ranges of `total`, counted.
    #[derive(Default)]
    struct Desk {
        next: AtomicU64,
        asked: AtomicU64,
    }

    impl RecordLeases for Desk {
        fn lease(
            &self,
            _feeder: &str,
            total: u64,
            wrap: bool,
            count: u64,
        ) -> BoxFuture<'_, Result<Range<u64>, String>> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                tokio::task::yield_now().await;
                let start = self.next.fetch_add(count, Ordering::Relaxed);
                let end = if wrap {
                    start + count
                } else {
                    (start + count).min(total)
                };
                Ok(start.min(end)..end)
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_peers_drawing_at_once_never_share_a_record() {
        let desk: Arc<dyn RecordLeases> = Arc::new(Desk::default());
        let peers = [
            LeasedCursor::new(Arc::clone(&desk), "users", 1_000, false),
            LeasedCursor::new(Arc::clone(&desk), "users", 1_000, false),
        ];
        let mut draws = Vec::new();
        for peer in &peers {
            for _ in 0..8 {
                let peer = Arc::clone(peer);
                draws.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Leased::Record(row) = peer.draw().await {
                        got.push(row);
                    }
                    got
                }));
            }
        }
        let mut all = Vec::new();
        for draw in draws {
            all.extend(draw.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..1_000).collect::<Vec<_>>(), "each record once");
    }

    #[tokio::test]
    async fn a_recycling_feeder_walks_the_file_and_starts_over() {
        let desk: Arc<dyn RecordLeases> = Arc::new(Desk::default());
        let cursor = LeasedCursor::new(desk, "users", 5, true);
        let mut rows = Vec::new();
        for _ in 0..12 {
            match cursor.draw().await {
                Leased::Record(row) => rows.push(row),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(rows, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]);
    }

    struct Down;

    impl RecordLeases for Down {
        fn lease(
            &self,
            _: &str,
            _: u64,
            _: bool,
            _: u64,
        ) -> BoxFuture<'_, Result<Range<u64>, String>> {
            Box::pin(async { Err("no leader".to_owned()) })
        }
    }

    #[tokio::test]
    async fn without_a_leader_a_draw_says_why_and_the_next_one_asks_again() {
        let cursor = LeasedCursor::new(Arc::new(Down), "users", 5, false);
        assert_eq!(cursor.draw().await, Leased::Unavailable("no leader".into()));
        assert_eq!(cursor.draw().await, Leased::Unavailable("no leader".into()));
    }
}
