//! Virtual time: tokio's paused clock, read in milliseconds.
//!
//! The simulation runs on a current-thread runtime started paused, so time
//! only moves when every task waits; chitchat, openraft and the coordinator
//! all read this same clock.

use tokio::time::Instant;

/// The Unix time (ms) the simulated cluster pretends to start at; plans
/// carry Unix milliseconds.
pub const UNIX_ORIGIN_MS: u64 = 1_700_000_000_000;

/// Reads virtual time relative to the start of a run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Virtual milliseconds since the run started.
    pub fn ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Virtual Unix milliseconds, as plans count time.
    pub fn unix_ms(&self) -> u64 {
        UNIX_ORIGIN_MS + self.ms()
    }
}
