//! The run clock: monotonic nanoseconds since the run's start.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// Nanoseconds since the run started; zero until [`start`](Self::start).
#[derive(Debug, Default)]
pub struct RunClock {
    origin: OnceLock<Instant>,
    /// The wall-clock time of `origin`, taken once when it is set.
    origin_wall: OnceLock<SystemTime>,
}

impl RunClock {
    /// A clock that has not started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the clock now (later calls keep the first origin).
    pub fn start(&self) -> Instant {
        self.start_from(Instant::now())
    }

    /// Starts the clock as if it had started at `origin` (later calls keep
    /// the first origin).
    pub fn start_from(&self, origin: Instant) -> Instant {
        let origin = *self.origin.get_or_init(|| origin);
        self.origin_wall
            .get_or_init(|| SystemTime::now() - origin.elapsed());
        origin
    }

    /// The wall-clock time the clock started at (now, if it has not).
    pub fn origin_wall(&self) -> SystemTime {
        self.origin_wall
            .get()
            .copied()
            .unwrap_or_else(SystemTime::now)
    }

    /// The instant the clock started, if it has.
    pub fn origin(&self) -> Option<Instant> {
        self.origin.get().copied()
    }

    /// Nanoseconds elapsed since the start.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.origin
            .get()
            .map_or(0, |o| o.elapsed().as_nanos() as u64)
    }
}
