//! The arrival scheduler: a dedicated OS thread that releases each arrival
//! at its due time and hands it to a worker.
//!
//! It runs on its own thread, not on the async runtime, so its wake-ups are
//! not delayed by busy workers and can use fine-grained sleeps (the thread's
//! timer slack is lowered to 1 µs). Each arrival carries its due time; the
//! difference to the actual dispatch is recorded as scheduler lag.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::worker::{RunContext, Spawner, open_worker};
use crate::load::ArrivalSchedule;
use crate::metrics::Phase;
use crate::task::TaskFactory;

/// What to do with an arrival when every allowed instance is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Saturation {
    /// Drop it and count it as dropped (the open model's honest answer).
    Drop,
    /// Queue it until an instance is free; its latency, measured from the
    /// due time, includes the wait.
    Wait,
}

impl std::str::FromStr for Saturation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop" => Ok(Self::Drop),
            "wait" => Ok(Self::Wait),
            other => Err(format!(
                "unknown saturation policy '{other}' (expected drop or wait)"
            )),
        }
    }
}

/// Limits on the instances that serve arrivals.
pub(crate) struct Pool {
    /// Workers already started before the clock.
    pub started: usize,
    /// Most workers that may exist; more arrivals than this in flight are
    /// dropped or queued per `saturation`.
    pub max: usize,
    /// Whether new workers may be started on demand.
    pub elastic: bool,
    pub saturation: Saturation,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Longest single sleep, so a stop is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Runs the schedule to its end or until the run stops. Dropping `arrivals`
/// (the only sender) at the end closes the channel, which lets workers drain
/// and exit; `receiver` is cloned for workers started on demand.
pub(crate) fn run_scheduler<F: TaskFactory>(
    ctx: Arc<RunContext<F>>,
    schedule: ArrivalSchedule,
    arrivals: async_channel::Sender<u64>,
    receiver: async_channel::Receiver<u64>,
    spawner: Arc<Spawner>,
    pool: Pool,
) {
    lower_timer_slack();
    let rec = ctx.hub.recorder();
    let mut workers = pool.started;
    let end_ns = (schedule.curve().duration() * NANOS_PER_SEC as f64) as u64;
    for due_s in schedule {
        let due_ns = (due_s * NANOS_PER_SEC as f64) as u64;
        if !sleep_until(&ctx, due_ns) {
            break;
        }
        let now_ns = ctx.clock.now_ns();
        let busy = ctx.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let mut dropped = false;
        if busy > workers as u64 {
            if pool.elastic && workers < pool.max {
                workers += 1;
                spawner.spawn(&ctx, open_worker(Arc::clone(&ctx), receiver.clone(), None));
            } else if pool.saturation == Saturation::Drop {
                ctx.in_flight.fetch_sub(1, Ordering::AcqRel);
                dropped = true;
            }
        }
        if !dropped && arrivals.try_send(due_ns).is_err() {
            ctx.in_flight.fetch_sub(1, Ordering::AcqRel);
            break;
        }
        let phase = if due_ns < ctx.warmup_ns {
            Phase::Warmup
        } else {
            Phase::Main
        };
        rec.record_dispatch(
            now_ns / NANOS_PER_SEC,
            phase,
            now_ns - due_ns.min(now_ns),
            dropped,
        );
    }
    // A curve may end with a stretch at rate 0: the run still lasts until
    // the curve ends.
    sleep_until(&ctx, end_ns);
}

/// Sleeps until the run clock reads `due_ns`; false if the run stopped first.
fn sleep_until<F: TaskFactory>(ctx: &RunContext<F>, due_ns: u64) -> bool {
    loop {
        if ctx.stop.is_stopped() {
            return false;
        }
        let now = ctx.clock.now_ns();
        if now >= due_ns {
            return true;
        }
        std::thread::sleep(Duration::from_nanos(due_ns - now).min(MAX_SLEEP));
    }
}

/// Asks Linux to wake this thread within 1 µs of the requested time instead
/// of the default 50 µs slack, so sub-millisecond schedules stay precise.
fn lower_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the
    // calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
}
