//! The simulated network's faults: partitions (two sides), one-way cuts,
//! isolated (frozen) peers, message loss and delay. Every decision is drawn
//! from one RNG seeded by the run's seed; gossip and Raft traffic both ask
//! [`Net::verdict`] for every message.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::Mutex;

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is lost.
    Drop,
    /// It arrives after this delay.
    Deliver(Duration),
}

/// Counts of what the network did.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages dropped by a partition, cut or isolation.
    pub blocked: u64,
    /// Messages dropped at random (loss).
    pub lost: u64,
}

struct Inner {
    rng: fastrand::Rng,
    minority: HashSet<SocketAddr>,
    cuts: HashSet<(SocketAddr, SocketAddr)>,
    isolated: HashSet<SocketAddr>,
    loss: f64,
    delay_ms: (u64, u64),
    stats: NetStats,
}

/// The network's state, shared by every simulated link.
pub struct Net {
    inner: Mutex<Inner>,
}

impl Net {
    /// A healthy network drawing its random decisions from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rng: fastrand::Rng::with_seed(seed),
                minority: HashSet::new(),
                cuts: HashSet::new(),
                isolated: HashSet::new(),
                loss: 0.0,
                delay_ms: (0, 0),
                stats: NetStats::default(),
            }),
        }
    }

    /// Whether a message from `from` to `to` can pass at all (no loss).
    pub fn connected(&self, from: SocketAddr, to: SocketAddr) -> bool {
        let inner = self.inner.lock();
        connected(&inner, from, to)
    }

    /// Decides the fate of one message from `from` to `to`.
    pub fn verdict(&self, from: SocketAddr, to: SocketAddr) -> Verdict {
        let mut inner = self.inner.lock();
        if !connected(&inner, from, to) {
            inner.stats.blocked += 1;
            return Verdict::Drop;
        }
        if inner.loss > 0.0 && inner.rng.f64() < inner.loss {
            inner.stats.lost += 1;
            return Verdict::Drop;
        }
        inner.stats.delivered += 1;
        let (lo, hi) = inner.delay_ms;
        let ms = if hi > lo { inner.rng.u64(lo..=hi) } else { lo };
        Verdict::Deliver(Duration::from_millis(ms))
    }

    /// Splits the network: `minority` on one side, everyone else on the
    /// other. Replaces any previous partition.
    pub fn partition(&self, minority: &[SocketAddr]) {
        self.inner.lock().minority = minority.iter().copied().collect();
    }

    /// Ends the partition.
    pub fn heal(&self) {
        self.inner.lock().minority.clear();
    }

    /// Drops every message from `from` to `to` (one way only).
    pub fn cut(&self, from: SocketAddr, to: SocketAddr) {
        self.inner.lock().cuts.insert((from, to));
    }

    /// Restores `from` → `to`.
    pub fn uncut(&self, from: SocketAddr, to: SocketAddr) {
        self.inner.lock().cuts.remove(&(from, to));
    }

    /// Cuts `addr` off entirely (a frozen process sends and reads nothing).
    pub fn isolate(&self, addr: SocketAddr) {
        self.inner.lock().isolated.insert(addr);
    }

    /// Reconnects an isolated `addr`.
    pub fn reconnect(&self, addr: SocketAddr) {
        self.inner.lock().isolated.remove(&addr);
    }

    /// Whether `addr` is isolated.
    pub fn is_isolated(&self, addr: SocketAddr) -> bool {
        self.inner.lock().isolated.contains(&addr)
    }

    /// Sets random loss (0..1) and a uniform delay range in milliseconds.
    pub fn set_conditions(&self, loss: f64, delay_ms: (u64, u64)) {
        let mut inner = self.inner.lock();
        inner.loss = loss;
        inner.delay_ms = delay_ms;
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.inner.lock().stats
    }
}

fn connected(inner: &Inner, from: SocketAddr, to: SocketAddr) -> bool {
    !(inner.isolated.contains(&from)
        || inner.isolated.contains(&to)
        || inner.minority.contains(&from) != inner.minority.contains(&to)
        || inner.cuts.contains(&(from, to)))
}

/// Distinct addresses for simulated peers: 10.x.y.1:7700.
pub fn peer_addr(index: usize) -> SocketAddr {
    let (hi, lo) = ((index / 250) as u8, (index % 250) as u8);
    SocketAddr::from(([10, hi, lo, 1], 7700))
}
