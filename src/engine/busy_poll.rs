//! Busy polling for the closed model (on unless `--no-busy-poll`): each
//! runtime worker keeps polling for I/O instead of sleeping between
//! responses.
//!
//! A generator that is idle between responses sleeps in `epoll_wait`, and
//! the target's next response must wake it. That wakeup runs on the
//! target's side of loopback (and costs an interrupt across cores in a
//! VM): measured against a saturated nginx over TLS, it was the 2–4 % by
//! which vajra got less than wrk, which never sleeps at full load (see
//! docs/benchmarks.md, HTTPS). A task that only yields keeps the runtime
//! awake: with it queued, the runtime polls epoll without blocking and runs
//! whatever became ready.
//!
//! It spins only while there is work: after [`PATIENCE`] of spins that
//! found nothing (a slow target, a light load), it sleeps for [`PAUSE`]
//! before it spins again, so a closed model waiting on a slow server costs
//! about 2 % of a core, not all of it.
//!
//! The time spent spinning is not load. A spin that comes straight back
//! (about the cost of one non-blocking poll) is counted as idle in
//! [`crate::metrics::cpu`], so the self-check's CPU figure stays the work
//! done and does not flag a spinning generator as saturated.

use std::time::{Duration, Instant};

use crate::metrics::cpu;

/// A spin no longer than this many times the fastest one seen found
/// nothing to do (work in between makes it far longer).
const IDLE_FACTOR: u32 = 2;
/// Spinning that finds nothing for this long stops for a [`PAUSE`].
pub const PATIENCE: Duration = Duration::from_micros(200);
/// How long spinning stops when there is nothing to do.
pub const PAUSE: Duration = Duration::from_millis(10);

/// Spins until `until` says to stop, counting the spins that found
/// nothing to do as idle time, and pausing when they go on for
/// [`PATIENCE`].
pub async fn spin(until: impl Fn() -> bool) {
    let mut fastest = Duration::MAX;
    let mut last = Instant::now();
    let mut idle_since = last;
    while !until() {
        tokio::task::yield_now().await;
        let now = Instant::now();
        let spun = now - last;
        fastest = fastest.min(spun);
        if spun <= fastest.saturating_mul(IDLE_FACTOR) {
            cpu::add_idle_spin(spun);
            if now - idle_since >= PATIENCE {
                tokio::time::sleep(PAUSE).await;
                idle_since = Instant::now();
            }
        } else {
            idle_since = now;
        }
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn spinning_with_nothing_to_do_is_idle_and_pauses() {
        let before = (cpu::idle_spin(), cpu::process_cpu_time());
        let start = Instant::now();
        spin(|| start.elapsed() >= Duration::from_millis(300)).await;
        let idle = cpu::idle_spin() - before.0;
        let used = cpu::process_cpu_time() - before.1;
        assert!(idle > Duration::ZERO, "its spins were counted idle");
        // Spinning throughout would use 300 ms; pausing after each 200 µs
        // of nothing uses about 2 % of it.
        assert!(
            used < Duration::from_millis(100),
            "300 ms with nothing to do used {used:?} of CPU"
        );
    }
}
