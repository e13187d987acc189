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
//! The time spent spinning is not load. A spin over which no execution
//! finished is counted as idle in [`crate::metrics::cpu`], so the
//! self-check's CPU figure stays the work done and does not flag a
//! spinning generator as saturated.

use std::time::{Duration, Instant};

use crate::metrics::cpu;

/// Spinning that finds nothing for this long stops for a [`PAUSE`].
pub const PATIENCE: Duration = Duration::from_micros(200);
/// How long spinning stops when there is nothing to do.
pub const PAUSE: Duration = Duration::from_millis(10);

/// Spins until `until` says to stop. `progress` counts the work done (the
/// executions finished): a spin over which it did not move found nothing
/// to do, and its time is counted idle. Spins that find nothing for
/// [`PATIENCE`] pause for [`PAUSE`].
pub async fn spin(until: impl Fn() -> bool, progress: impl Fn() -> u64) {
    let mut spins = Spins::new(Instant::now(), progress());
    while !until() {
        tokio::task::yield_now().await;
        let paused = match spins.spun(Instant::now(), progress()) {
            Spun::Work => false,
            Spun::Idle { spun, pause } => {
                cpu::add_idle_spin(spun);
                if pause {
                    tokio::time::sleep(PAUSE).await;
                }
                pause
            }
        };
        spins.resume(Instant::now(), paused);
    }
}

/// What spinning has seen so far (the clock is the caller's, so the
/// accounting is tested without one).
#[derive(Debug)]
struct Spins {
    /// When the current spin began.
    began: Instant,
    /// Since when the spins found nothing.
    idle_since: Instant,
    /// The progress count at the last spin that saw it move.
    seen: u64,
}

/// What one spin was.
#[derive(Debug, PartialEq, Eq)]
enum Spun {
    /// Work was done during it.
    Work,
    /// Nothing was: `spun` is idle time, and `pause` says the spins have
    /// found nothing for [`PATIENCE`].
    Idle { spun: Duration, pause: bool },
}

impl Spins {
    fn new(now: Instant, progress: u64) -> Self {
        Self {
            began: now,
            idle_since: now,
            seen: progress,
        }
    }

    /// The spin that ended at `now`, with the progress count then.
    fn spun(&mut self, now: Instant, progress: u64) -> Spun {
        if progress != self.seen {
            self.seen = progress;
            self.idle_since = now;
            return Spun::Work;
        }
        Spun::Idle {
            spun: now - self.began,
            pause: now - self.idle_since >= PATIENCE,
        }
    }

    /// The next spin begins at `now`, after a pause if `paused`.
    fn resume(&mut self, now: Instant, paused: bool) {
        self.began = now;
        if paused {
            self.idle_since = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn spinning_with_nothing_to_do_is_idle_and_pauses() {
        let before = (cpu::idle_spin(), cpu::process_cpu_time());
        let start = Instant::now();
        spin(|| start.elapsed() >= Duration::from_millis(300), || 0).await;
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

    /// Progress on every fourth spin: the three spins before it found
    /// nothing and are idle, the one that saw it is work; nothing for
    /// PATIENCE pauses, and the pause starts the patience again.
    #[test]
    fn spins_that_see_no_progress_are_idle_and_long_idleness_pauses() {
        let micro = Duration::from_micros(1);
        let t0 = Instant::now();
        let mut spins = Spins::new(t0, 0);
        let (mut idle, mut now) = (Duration::ZERO, t0);
        for spin in 1..=400u64 {
            now += micro;
            match spins.spun(now, spin / 4) {
                Spun::Work => {}
                Spun::Idle { spun, pause } => {
                    assert!(!pause, "progress every 4 µs never waits 200 µs");
                    idle += spun;
                }
            }
            spins.resume(now, false);
        }
        assert_eq!(idle, micro * 300, "three spins in four were idle");

        let mut pauses = Vec::new();
        for spin in 1..=450u32 {
            now += micro;
            if let Spun::Idle { pause: true, .. } = spins.spun(now, 100) {
                pauses.push(spin);
            }
            let paused = pauses.last() == Some(&spin);
            spins.resume(now, paused);
        }
        assert_eq!(pauses, [200, 400], "a pause after each 200 µs of nothing");
    }
}
