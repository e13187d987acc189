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
    let mut last = Instant::now();
    let mut idle_since = last;
    let mut seen = progress();
    while !until() {
        tokio::task::yield_now().await;
        let now = Instant::now();
        let done = progress();
        if done == seen {
            cpu::add_idle_spin(now - last);
            if now - idle_since >= PATIENCE {
                tokio::time::sleep(PAUSE).await;
                idle_since = Instant::now();
            }
        } else {
            seen = done;
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

    /// Messages from another thread every 50 µs or so keep the spinner
    /// spinning most of the time; handling them is little work, so most of
    /// the CPU it uses is counted idle, and the CPU figure is the work.
    #[tokio::test(flavor = "current_thread")]
    async fn steady_light_work_keeps_it_spinning_and_its_spins_idle() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let sender = std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(300) {
                if tx.send(()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&count);
        let received = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            counted.load(std::sync::atomic::Ordering::Relaxed)
        });
        let before = (cpu::idle_spin(), cpu::process_cpu_time());
        let start = Instant::now();
        let progress = || count.load(std::sync::atomic::Ordering::Relaxed);
        spin(|| start.elapsed() >= Duration::from_millis(300), progress).await;
        let idle = cpu::idle_spin() - before.0;
        let used = cpu::process_cpu_time() - before.1;
        sender.join().unwrap();
        assert!(received.await.unwrap() > 100);
        // Without the accounting the spinning would all be work.
        assert!(
            idle * 2 >= used,
            "of {used:?} of CPU beside light work, only {idle:?} counted idle"
        );
    }
}
