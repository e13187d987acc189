//! Wall-clock time as the cluster's loops read it. Plans are stamped in
//! Unix milliseconds, so every decision that compares a plan with "now"
//! reads this seam: peers read the system clock, the simulation its
//! virtual one.

use std::sync::Arc;
use std::time::SystemTime;

/// A source of wall-clock time.
pub trait WallClock: Send + Sync {
    /// Now, Unix milliseconds.
    fn unix_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_ms(&self) -> u64 {
        unix_now_ms()
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn WallClock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Now by the system clock, Unix milliseconds (0 before 1970).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
