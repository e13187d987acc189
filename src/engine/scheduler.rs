//! The arrival scheduler: a dedicated OS thread that releases each arrival
//! at its due time and hands it to a worker.
//!
//! It runs on its own thread, not on the async runtime, so its wake-ups are
//! not delayed by busy workers and can use fine-grained sleeps (the thread's
//! timer slack is lowered to 1 µs). A wake-up costs tens of microseconds of
//! a core, so it wakes at most once per dispatch quantum and releases
//! together the arrivals that fell due meanwhile. Each arrival carries its
//! due time; the difference to the actual dispatch is recorded as scheduler
//! lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::worker::{RunContext, Spawner, open_worker};
use parking_lot::Mutex;

use crate::load::{ArrivalSchedule, RateCurve};
use crate::metrics::{Phase, Recorder};
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

/// How arrivals are served: the instances' limits and the dispatch batching.
pub(crate) struct Pool {
    /// Workers already started before the clock.
    pub started: usize,
    /// Most workers that may exist; more arrivals than this in flight are
    /// dropped or queued per `saturation`.
    pub max: usize,
    /// Whether new workers may be started on demand.
    pub elastic: bool,
    pub saturation: Saturation,
    /// Shortest time between two wake-ups (see [`LoadModel::Open`]).
    ///
    /// [`LoadModel::Open`]: super::LoadModel::Open
    pub dispatch_quantum_ns: u64,
    /// Arrivals reached later than this are missed, not sent (see
    /// [`LoadModel::Open`]).
    ///
    /// [`LoadModel::Open`]: super::LoadModel::Open
    pub max_lag_ns: u64,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Longest single sleep, so a stop is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// A change of the target rate while a run is going: from `at_secs` on the
/// run clock the rate follows `tail`, even if that instant is past (the
/// arrivals already released count against the new curve).
#[derive(Debug, Clone)]
pub struct CurveUpdate {
    /// When the new rate takes over, seconds since the run started.
    pub at_secs: f64,
    /// The rate from then on (its time 0 is `at_secs`).
    pub tail: RateCurve,
}

/// Changes a running open-model load. Cheap to clone; the scheduler checks
/// it between arrivals and while sleeping.
#[derive(Clone, Default)]
pub struct LoadControl {
    inner: Arc<ControlInner>,
}

#[derive(Default)]
struct ControlInner {
    pending: AtomicBool,
    updates: Mutex<Vec<CurveUpdate>>,
    /// Hold dispatching when this far behind the schedule (ns; 0 = never).
    stall_guard_ns: AtomicU64,
    held: AtomicBool,
    released: AtomicBool,
    hold_requested: AtomicBool,
    /// The curve the scheduler follows since it last applied updates
    /// (`None` until it first does): what the run's target rate is now.
    following: Mutex<Option<Arc<RateCurve>>>,
}

impl LoadControl {
    /// A control with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to follow `tail` from `at_secs`. Updates not applied
    /// yet are applied in the order given, each spliced over the last, so a
    /// peer catching up on several epochs follows every one of them.
    pub fn update(&self, at_secs: f64, tail: RateCurve) {
        self.inner
            .updates
            .lock()
            .push(CurveUpdate { at_secs, tail });
        self.inner.pending.store(true, Ordering::Release);
    }

    /// Makes the scheduler stop dispatching, instead of catching up, when
    /// it finds itself more than `guard` behind its schedule (the process
    /// was frozen, say). It stays held until a rate update arrives or
    /// [`release`](Self::release) is called: a cluster peer uses this to
    /// confirm its share with the leader before sending what it owes.
    pub fn hold_when_behind(&self, guard: Duration) {
        self.inner
            .stall_guard_ns
            .store(guard.as_nanos() as u64, Ordering::Release);
    }

    /// Makes the scheduler hold now, as after a stall, until an update or
    /// [`release`](Self::release): a cluster peer cut off from the quorum
    /// stops sending its share this way.
    pub fn hold_now(&self) {
        self.inner.hold_requested.store(true, Ordering::Release);
    }

    /// Whether the scheduler is holding after a stall.
    pub fn is_held(&self) -> bool {
        self.inner.held.load(Ordering::Acquire)
    }

    /// Lets a held scheduler go on (it then sends the arrivals it owes).
    pub fn release(&self) {
        self.inner.released.store(true, Ordering::Release);
    }

    /// The curve the scheduler follows after the updates it applied, or
    /// `None` if it applied none (it follows the run's own curve).
    pub fn following(&self) -> Option<Arc<RateCurve>> {
        self.inner.following.lock().clone()
    }

    fn publish_following(&self, curve: &RateCurve) {
        *self.inner.following.lock() = Some(Arc::new(curve.clone()));
    }

    fn stall_guard_ns(&self) -> Option<u64> {
        Some(self.inner.stall_guard_ns.load(Ordering::Acquire)).filter(|g| *g > 0)
    }

    fn is_pending(&self) -> bool {
        self.inner.pending.load(Ordering::Acquire)
    }

    fn take(&self) -> Vec<CurveUpdate> {
        if !self.is_pending() {
            return Vec::new();
        }
        self.inner.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.inner.updates.lock())
    }
}

/// Waits while held after a stall: until an update (true: apply it) or a
/// release (false: dispatch), or the run stops or its curve ends while
/// still held (None: a hold never outlives the run, and what it kept back
/// is counted as dropped by the caller).
fn hold<F: TaskFactory>(
    ctx: &RunContext<F>,
    control: &LoadControl,
    curve_end_s: f64,
) -> Option<bool> {
    control.inner.released.store(false, Ordering::Release);
    control.inner.held.store(true, Ordering::Release);
    let end_ns = (curve_end_s * NANOS_PER_SEC as f64) as u64;
    let outcome = loop {
        if ctx.stop.is_stopped() || ctx.clock.now_ns() > end_ns {
            break None;
        }
        if control.is_pending() {
            break Some(true);
        }
        if control.inner.released.swap(false, Ordering::AcqRel) {
            break Some(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    control.inner.held.store(false, Ordering::Release);
    outcome
}

/// Counts the arrivals a hold kept back until the run ended as dropped.
fn drop_held<F: TaskFactory>(ctx: &RunContext<F>, rec: &Recorder, schedule: &ArrivalSchedule) {
    if ctx.stop.is_stopped() {
        return;
    }
    let now_ns = ctx.clock.now_ns();
    let left = schedule
        .total_arrivals()
        .saturating_sub(schedule.next_index());
    tracing::warn!("the run ended while held: {left} arrivals it kept back are counted as dropped");
    rec.record_dropped(now_ns / NANOS_PER_SEC, Phase::Main, left);
}

/// What a sleep ended with.
enum Woke {
    Due,
    Stopped,
    Updated,
    HoldRequested,
}

/// Runs the schedule to its end or until the run stops, applying rate
/// updates as they come. Dropping `arrivals` (the only sender) at the end
/// closes the channel, which lets workers drain and exit; `receiver` is
/// cloned for workers started on demand. Returns the curve finally followed
/// and how many arrivals it planned.
pub(crate) fn run_scheduler<F: TaskFactory>(
    ctx: Arc<RunContext<F>>,
    mut schedule: ArrivalSchedule,
    arrivals: async_channel::Sender<u64>,
    receiver: async_channel::Receiver<u64>,
    spawner: Arc<Spawner>,
    pool: Pool,
    control: LoadControl,
) -> (RateCurve, u64) {
    lower_timer_slack();
    let rec = ctx.hub.recorder();
    let mut workers = pool.started;
    let mut max_workers = pool.max;
    // A hold is armed while on schedule; after a hold ends, what is owed is
    // sent before the next stall can hold again.
    let mut hold_armed = true;
    // When the scheduler last woke from a sleep: it sleeps again until the
    // next arrival is due, but no sooner than a quantum after this, and
    // then releases everything due by then at once.
    let mut woke_ns = 0u64;
    // Whether the scheduler is in a stretch of missed arrivals (logged once
    // per stretch).
    let mut missing = false;
    loop {
        let updates = control.take();
        if !updates.is_empty() {
            for update in updates {
                apply_update(&mut schedule, update);
            }
            control.publish_following(schedule.curve());
            hold_armed = false;
        }
        // After the last arrival the run still lasts until the curve ends
        // (it may end with a stretch at rate 0), and may still be updated.
        let due_s = schedule.peek().unwrap_or(schedule.curve().duration());
        let due_ns = (due_s * NANOS_PER_SEC as f64) as u64;
        let must_sleep = ctx.clock.now_ns() < due_ns;
        let wake_ns = if must_sleep {
            due_ns.max(woke_ns + pool.dispatch_quantum_ns)
        } else {
            due_ns
        };
        match sleep_until(&ctx, wake_ns, &control) {
            Woke::Stopped => break,
            Woke::Updated => continue,
            Woke::HoldRequested => match hold(&ctx, &control, schedule.curve().duration()) {
                None => {
                    drop_held(&ctx, &rec, &schedule);
                    break;
                }
                Some(true) => continue,
                // Released: send what is owed without holding again.
                Some(false) => {
                    hold_armed = false;
                    continue;
                }
            },
            Woke::Due if must_sleep => woke_ns = ctx.clock.now_ns(),
            Woke::Due => {}
        }
        if let Some(guard) = control.stall_guard_ns() {
            let behind = ctx.clock.now_ns().saturating_sub(due_ns);
            if behind > guard && hold_armed {
                match hold(&ctx, &control, schedule.curve().duration()) {
                    None => {
                        drop_held(&ctx, &rec, &schedule);
                        break;
                    }
                    Some(true) => continue,
                    Some(false) => hold_armed = false,
                }
            } else if behind <= guard {
                hold_armed = true;
            }
        }
        let now_ns = ctx.clock.now_ns();
        if now_ns.saturating_sub(due_ns) > pool.max_lag_ns {
            let missed = skip_missed(&ctx, &rec, &mut schedule, now_ns, pool.max_lag_ns);
            if missed > 0 {
                if !missing {
                    tracing::warn!(
                        "the scheduler is {:.3}s behind its schedule (more than the {:?} max lag): arrivals it reaches later than that are counted as missed, not sent",
                        (now_ns - due_ns) as f64 / NANOS_PER_SEC as f64,
                        Duration::from_nanos(pool.max_lag_ns),
                    );
                }
                missing = true;
                continue;
            }
        } else {
            missing = false;
        }
        if schedule.next().is_none() {
            break;
        }
        let busy = ctx.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let mut dropped = false;
        if busy > workers as u64 {
            let grown = pool.elastic
                && workers < max_workers
                && match spawner.spawn(&ctx, open_worker(Arc::clone(&ctx), receiver.clone(), None))
                {
                    Ok(()) => true,
                    Err(e) => {
                        // The machine holds no more: stay at this many.
                        tracing::warn!("cannot start more than {workers} workers: {e}");
                        max_workers = workers;
                        false
                    }
                };
            if grown {
                workers += 1;
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
    let planned = schedule.total_arrivals();
    (schedule.curve().clone(), planned)
}

/// Skips the arrivals due more than `max_lag_ns` before `now_ns` and counts
/// them as missed, in the phase each was due in. Returns how many.
fn skip_missed<F: TaskFactory>(
    ctx: &RunContext<F>,
    rec: &Recorder,
    schedule: &mut ArrivalSchedule,
    now_ns: u64,
    max_lag_ns: u64,
) -> u64 {
    let first = schedule.next_index();
    let warmup_ends = schedule.due_before(ctx.warmup_ns as f64 / NANOS_PER_SEC as f64);
    let cut_s = (now_ns - max_lag_ns) as f64 / NANOS_PER_SEC as f64;
    let missed = schedule.skip_due_before(cut_s);
    let in_warmup = warmup_ends.saturating_sub(first).min(missed);
    let window = now_ns / NANOS_PER_SEC;
    rec.record_missed(window, Phase::Warmup, in_warmup);
    rec.record_missed(window, Phase::Main, missed - in_warmup);
    missed
}

/// Splices the update into the schedule's curve at its time, even when
/// that is already past. The schedule keeps its count of released arrivals
/// and the next one is due when the new curve's integral reaches it, so the
/// run's total is the new curve's integral exactly: an update that arrives
/// late after a cut pauses until the new curve catches up with what was
/// sent (never more than was sent too early), and one after a rise sends
/// what the rise owed at once (late, measured from when it was due). The
/// run still ends when the new curve says.
///
/// The splice point may lie in the past. That is the case of a peer that
/// was frozen while the cluster moved its share elsewhere: arrivals it owed
/// before the new epoch are still sent (late, measured from when they were
/// due), but none after it, so the load is never run twice.
fn apply_update(schedule: &mut ArrivalSchedule, update: CurveUpdate) {
    match schedule.curve().splice(update.at_secs, &update.tail) {
        Ok(curve) => schedule.replace_curve(curve),
        Err(e) => tracing::warn!("rate update ignored: {e}"),
    }
}

/// Sleeps until the run clock reads `due_ns`, waking early for a stop or
/// a rate update.
fn sleep_until<F: TaskFactory>(ctx: &RunContext<F>, due_ns: u64, control: &LoadControl) -> Woke {
    loop {
        if ctx.stop.is_stopped() {
            return Woke::Stopped;
        }
        if control.is_pending() {
            return Woke::Updated;
        }
        if control.inner.hold_requested.swap(false, Ordering::AcqRel) {
            return Woke::HoldRequested;
        }
        let now = ctx.clock.now_ns();
        if now >= due_ns {
            return Woke::Due;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn release_until(schedule: &mut ArrivalSchedule, until_s: f64) {
        while schedule.peek().is_some_and(|due| due <= until_s) {
            schedule.next();
        }
    }

    #[test]
    fn a_late_update_keeps_its_place_in_time_and_the_integral() {
        // An update meant for 3 s (20/s until the end at 10 s) arrives when
        // arrivals up to 5 s are out: 20 are owed at once.
        let mut rise = ArrivalSchedule::new(RateCurve::constant(10.0, 10.0).unwrap());
        release_until(&mut rise, 5.0);
        let update = CurveUpdate {
            at_secs: 3.0,
            tail: RateCurve::constant(20.0, 7.0).unwrap(),
        };
        apply_update(&mut rise, update);
        assert!((rise.curve().duration() - 10.0).abs() < 1e-9);
        assert_eq!(rise.total_arrivals(), 30 + 140);
        assert!(rise.peek().unwrap() < 5.0, "what the rise owed is due");
        // A cut to 5/s meant for 3 s: 10 were sent too early, so the next
        // arrival waits until the new curve has caught up (at 7 s).
        let mut cut = ArrivalSchedule::new(RateCurve::constant(10.0, 10.0).unwrap());
        release_until(&mut cut, 5.0);
        let update = CurveUpdate {
            at_secs: 3.0,
            tail: RateCurve::constant(5.0, 7.0).unwrap(),
        };
        apply_update(&mut cut, update);
        assert_eq!(cut.total_arrivals(), 30 + 35);
        let next = cut.peek().unwrap();
        assert!((next - 7.1).abs() < 1e-9, "next due at {next}");
    }

    #[test]
    fn an_update_in_the_future_of_a_frozen_schedule_leaves_what_is_owed() {
        let mut schedule = ArrivalSchedule::new(RateCurve::constant(10.0, 10.0).unwrap());
        release_until(&mut schedule, 2.0);
        // Frozen since 2 s; from 4 s on its share is 0.
        let update = CurveUpdate {
            at_secs: 4.0,
            tail: RateCurve::constant(0.0, 6.0).unwrap(),
        };
        apply_update(&mut schedule, update);
        assert!((schedule.curve().duration() - 10.0).abs() < 1e-9);
        assert_eq!(schedule.total_arrivals(), 40, "2-4 s is still owed");
    }
}
