//! The engine: runs one task under one load model on this process and
//! returns the aggregated results.
//!
//! Data path: the load profile's curve becomes an [`ArrivalSchedule`]; the
//! [`scheduler`] thread releases each arrival at its due time into a channel;
//! [`worker`]s (one task instance each) execute it and record the result in
//! their metrics shard; the aggregator sweeps closed one-second windows into
//! the series and running totals, which the observer sees live and the
//! [`RunOutcome`] carries to the reports.
//!
//! - [`clock`]: the run's monotonic clock.
//! - [`registry`]: tasks by name, type-erased once for the engine.
//! - [`scheduler`]: the arrival scheduler thread and saturation policy.
//! - [`stop`]: the stop signal (Ctrl-C, aborts).
//! - [`trace`]: spans of setups, cleanups and sampled executions.
//! - [`worker`]: the worker loops and the instrumented execution.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

pub mod busy_poll;
pub mod clock;
pub mod registry;
pub mod scheduler;
pub mod stop;
pub mod trace;
pub mod worker;

pub use registry::{RunnableTask, TaskRegistry, UnknownTask};
pub use scheduler::{CurveUpdate, LoadControl, Saturation};
pub use stop::{StopCause, StopSignal};

use crate::load::profile::CompiledProfile;
use crate::load::{ArrivalSchedule, RateCurve};
use crate::metrics::stats::WindowStats;
use crate::metrics::{Aggregator, MetricsHub, WindowReport};
use crate::task::{Task, TaskFactory, ThreadStrategy};
use scheduler::{Pool, run_scheduler};
use worker::{RunContext, Spawner, closed_worker, open_worker};

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// How long after a second ends its window is swept, so results timed just
/// before the boundary have been recorded.
const SWEEP_GRACE: Duration = Duration::from_millis(30);

/// How arrivals are generated.
#[derive(Debug, Clone)]
pub enum LoadModel {
    /// Open model: arrivals follow the rate curve regardless of how fast
    /// they complete. Instances are started on demand up to `max_in_flight`;
    /// beyond that `saturation` decides.
    Open {
        /// Target rate over time, warmup included.
        profile: CompiledProfile,
        /// Instances started (and set up) before the clock starts.
        preallocate: usize,
        /// Most executions in flight at once.
        max_in_flight: usize,
        /// What happens to an arrival when `max_in_flight` are busy.
        saturation: Saturation,
        /// Shortest time between two wake-ups of the arrival scheduler:
        /// arrivals falling due closer together are released together, each
        /// at most this late (its latency still counts from its due time).
        /// Zero wakes for every arrival.
        dispatch_quantum: Duration,
        /// Latest an arrival may leave after its due time. The scheduler
        /// does not send what it reaches later than this (it was stalled,
        /// frozen, or cannot keep up): such arrivals are counted as missed,
        /// so a generator-side stall is never recorded as the target's
        /// latency and an overloaded run still ends on time.
        max_lag: Duration,
    },
    /// Closed model: `concurrency` instances execute back to back.
    Closed {
        /// Number of instances.
        concurrency: usize,
        /// Warmup time, excluded from the main statistics.
        warmup: Duration,
        /// Main phase length (after the warmup).
        duration: Duration,
        /// Keep each runtime worker polling for I/O while there is work,
        /// instead of sleeping ([`busy_poll`]; not with blocking threads).
        busy_poll: bool,
    },
}

/// Everything the engine needs besides the task factory.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How arrivals are generated.
    pub load: LoadModel,
    /// Overrides the task's own thread strategy.
    pub thread_strategy: Option<ThreadStrategy>,
    /// OS threads for the blocking strategy (0: one per core).
    pub blocking_threads: usize,
    /// How long in-flight work may finish after the load ends.
    pub drain_timeout: Duration,
    /// Wall-clock instant the run clock starts at (after instances are set
    /// up), so peers of a cluster start together and count the same
    /// seconds; `None` starts at once. An instant already past starts the
    /// clock that far along: the arrivals due since then are owed (a peer
    /// joining a running test gives itself a curve at rate 0 until then).
    pub start_at: Option<SystemTime>,
    /// Where spans go, if the run is traced.
    pub tracing: Option<trace::Tracing>,
}

/// A window the aggregator closed, with everything measured in it: what
/// [`RunObserver::on_closed`] receives.
pub struct ClosedWindow<'a> {
    /// The window's summary, as the report's series holds it.
    pub report: &'a WindowReport,
    /// Its statistics per operation key (phase and tag): counts, error
    /// kinds, both latency histograms, and the scheduler lag.
    pub stats: &'a WindowStats,
    /// Wall-clock time the window starts at.
    pub start: SystemTime,
    /// Arrivals per second the run's curve planned for the window, after
    /// any rate update (paced runs).
    pub target_rate: Option<f64>,
    /// Executions in flight when it was closed.
    pub in_flight: u64,
    /// How much each event counter grew since the window before was
    /// announced (so the windows' growths add up to the report's
    /// `counters`); of windows closed together, the last carries it.
    pub events: &'a BTreeMap<&'static str, u64>,
}

/// Receives each second's results while the run is going.
pub trait RunObserver: Send {
    /// Called once per closed window with the run's totals so far. Return
    /// `Some(reason)` to abort the run.
    fn on_window(
        &mut self,
        window: &WindowReport,
        target_rate: Option<f64>,
        totals: &Aggregator,
    ) -> Option<String>;

    /// How often the observer wants [`RunObserver::on_progress`] between
    /// windows; `None` (the default) never calls it.
    fn progress_interval(&self) -> Option<Duration> {
        None
    }

    /// Called every [`RunObserver::progress_interval`] with a preview of
    /// the totals, open windows included, `elapsed_s` into the run.
    fn on_progress(&mut self, _preview: &Aggregator, _elapsed_s: f64) {}

    /// Called once for every window closed, including the last ones the
    /// run closes as it ends (which [`RunObserver::on_window`] never
    /// sees): what exporters are fed from. The default ignores it.
    fn on_closed(&mut self, _window: &ClosedWindow<'_>) {}
}

/// An observer that watches nothing.
pub struct NoObserver;

impl RunObserver for NoObserver {
    fn on_window(&mut self, _: &WindowReport, _: Option<f64>, _: &Aggregator) -> Option<String> {
        None
    }
}

/// Why the run could not produce results.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A task instance could not be created or set up.
    #[error("{0}")]
    Setup(String),
    /// The configuration cannot be run.
    #[error("invalid run: {0}")]
    Invalid(String),
}

/// How the run ended and everything it measured.
pub struct RunOutcome {
    /// Series and cumulative statistics.
    pub metrics: Aggregator,
    /// Wall-clock time the run started (for reports).
    pub started_at: SystemTime,
    /// Seconds from start until the load stopped (drain excluded).
    pub load_secs: f64,
    /// Seconds until everything finished, drain included.
    pub total_secs: f64,
    /// Seconds of warmup at the start.
    pub warmup_secs: f64,
    /// Set if the run stopped before its profile ended.
    pub stop: Option<StopCause>,
    /// Executions still running when the drain timeout expired.
    pub unfinished: u64,
    /// Task instances used.
    pub instances: usize,
    /// Target curve of a paced run.
    pub curve: Option<RateCurve>,
    /// Arrivals the schedule holds in total (paced runs).
    pub planned: Option<u64>,
    /// Thread strategy the run used.
    pub thread_strategy: ThreadStrategy,
    /// How much each named event counter grew during the run
    /// ([`crate::metrics::events`]).
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// Runs `factory`'s task under `config` on the current tokio runtime.
pub async fn run<F: TaskFactory>(
    factory: F,
    config: EngineConfig,
    observer: &mut dyn RunObserver,
    stop: StopSignal,
) -> Result<RunOutcome, EngineError> {
    run_controlled(factory, config, observer, stop, LoadControl::new()).await
}

/// Like [`run`], with a handle that can change an open-model run's rate
/// while it goes (ignored by closed-model runs).
pub async fn run_controlled<F: TaskFactory>(
    factory: F,
    config: EngineConfig,
    observer: &mut dyn RunObserver,
    stop: StopSignal,
    control: LoadControl,
) -> Result<RunOutcome, EngineError> {
    let strategy = config
        .thread_strategy
        .unwrap_or(<F::Task as Task>::THREAD_STRATEGY);
    let handle = tokio::runtime::Handle::current();
    let blocking = strategy == ThreadStrategy::Blocking;
    let blocking_threads = if config.blocking_threads == 0 {
        crate::metrics::cpu::available_cores()
    } else {
        config.blocking_threads
    };
    let shards =
        2 * handle.metrics().num_workers() + 1 + if blocking { blocking_threads } else { 0 };
    let hub = MetricsHub::new(shards);
    let warmup_secs = match &config.load {
        LoadModel::Open { profile, .. } => profile.warmup_secs,
        LoadModel::Closed { warmup, .. } => warmup.as_secs_f64(),
    };
    let warmup_ns = (warmup_secs * NANOS_PER_SEC as f64) as u64;
    let ctx = Arc::new(RunContext::new(
        factory,
        Arc::clone(&hub),
        stop.clone(),
        warmup_ns,
        config.tracing.clone(),
    ));
    let spawner = Arc::new(Spawner::new(handle, blocking));
    let mut aggregator = Aggregator::new(hub, warmup_secs);
    // One baseline for the report's counters and the windows' growths, so
    // events of the setup land in the first window.
    let counters_before = crate::metrics::events::snapshot();
    let growth = crate::metrics::events::Growth::since(counters_before.clone());
    let following = control.clone();

    let started = match &config.load {
        LoadModel::Open {
            profile,
            preallocate,
            max_in_flight,
            saturation,
            dispatch_quantum,
            max_lag,
        } => {
            let max = if blocking {
                blocking_threads.min(*max_in_flight)
            } else {
                *max_in_flight
            };
            let pool = Pool {
                started: if blocking {
                    max
                } else {
                    (*preallocate).clamp(1, max.max(1))
                },
                max: max.max(1),
                elastic: !blocking,
                saturation: *saturation,
                dispatch_quantum_ns: dispatch_quantum.as_nanos() as u64,
                max_lag_ns: u64::try_from(max_lag.as_nanos()).unwrap_or(u64::MAX),
            };
            start_open(&ctx, &spawner, profile, pool, control, config.start_at).await?
        }
        LoadModel::Closed {
            concurrency,
            warmup,
            duration,
            busy_poll,
        } => {
            let deadline_ns = (*warmup + *duration).as_nanos() as u64;
            let closed = (*concurrency, deadline_ns, *busy_poll);
            start_closed(&ctx, &spawner, closed, config.start_at).await?
        }
    };
    let started_at = SystemTime::now();
    let curve = started.curve.clone();

    let mut closing = Closing {
        target: TargetRate {
            initial: curve.clone(),
            control: following,
        },
        growth,
    };
    sweep_until_load_ends(
        &ctx,
        &mut aggregator,
        observer,
        &mut closing,
        started.load_done,
    )
    .await;
    let load_secs = ctx.clock.now_ns() as f64 / NANOS_PER_SEC as f64;
    let unfinished = drain(&ctx, &spawner, config.drain_timeout, started.queue.as_ref()).await;
    let total_secs = ctx.clock.now_ns() as f64 / NANOS_PER_SEC as f64;
    if let Some(fatal) = ctx.fatal.lock().clone() {
        return Err(EngineError::Setup(fatal));
    }
    aggregator.finish(total_secs);
    announce_closed(&ctx, &aggregator, observer, &mut closing);
    // The scheduler leaves the curve it finally followed (after updates).
    let (curve, planned) = match started.followed.lock().take() {
        Some((curve, planned)) => (Some(curve), Some(planned)),
        None => (curve, started.planned),
    };
    Ok(RunOutcome {
        metrics: aggregator,
        started_at,
        load_secs,
        total_secs,
        warmup_secs,
        stop: stop.cause(),
        unfinished,
        instances: ctx.instances(),
        planned,
        curve,
        thread_strategy: strategy,
        counters: crate::metrics::events::grown_since(&counters_before),
    })
}

/// What starting the load produced.
struct Started {
    /// Resolves when no more arrivals will come.
    load_done: LoadDone,
    curve: Option<RateCurve>,
    planned: Option<u64>,
    /// Filled by the scheduler when it ends: the curve it followed (updates
    /// included) and the arrivals that curve planned.
    followed: Arc<parking_lot::Mutex<Option<(RateCurve, u64)>>>,
    /// The arrivals waiting for a worker (open model).
    queue: Option<async_channel::Receiver<u64>>,
}

enum LoadDone {
    /// The scheduler thread says so.
    Scheduler(tokio::sync::oneshot::Receiver<()>),
    /// All closed-model workers have exited.
    Workers,
}

async fn start_open<F: TaskFactory>(
    ctx: &Arc<RunContext<F>>,
    spawner: &Arc<Spawner>,
    profile: &CompiledProfile,
    pool: Pool,
    control: LoadControl,
    start_at: Option<SystemTime>,
) -> Result<Started, EngineError> {
    let (tx, rx) = async_channel::unbounded();
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    for _ in 0..pool.started {
        spawner
            .spawn(
                ctx,
                open_worker(Arc::clone(ctx), rx.clone(), Some(ready_tx.clone())),
            )
            .map_err(worker_thread_error)?;
    }
    wait_ready(ctx, ready_rx, pool.started).await?;
    start_clock(ctx, start_at).await;
    let schedule = ArrivalSchedule::new(profile.curve.clone());
    let planned = schedule.total_arrivals();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (ctx2, spawner2) = (Arc::clone(ctx), Arc::clone(spawner));
    let followed = Arc::new(parking_lot::Mutex::new(None));
    let slot = Arc::clone(&followed);
    let queue = rx.clone();
    std::thread::Builder::new()
        .name("vajra-scheduler".into())
        .spawn(move || {
            *slot.lock() = Some(run_scheduler(
                ctx2, schedule, tx, rx, spawner2, pool, control,
            ));
            let _ = done_tx.send(());
        })
        .map_err(|e| EngineError::Invalid(format!("cannot start the scheduler thread: {e}")))?;
    Ok(Started {
        load_done: LoadDone::Scheduler(done_rx),
        curve: Some(profile.curve.clone()),
        planned: Some(planned),
        followed,
        queue: Some(queue),
    })
}

async fn start_closed<F: TaskFactory>(
    ctx: &Arc<RunContext<F>>,
    spawner: &Arc<Spawner>,
    (concurrency, deadline_ns, busy_poll): (usize, u64, bool),
    start_at: Option<SystemTime>,
) -> Result<Started, EngineError> {
    if concurrency == 0 {
        return Err(EngineError::Invalid(
            "concurrency must be at least 1".into(),
        ));
    }
    let (go_tx, go_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    for _ in 0..concurrency {
        // On an error the workers already started see `go` dropped and end.
        spawner
            .spawn(
                ctx,
                closed_worker(
                    Arc::clone(ctx),
                    go_rx.clone(),
                    ready_tx.clone(),
                    deadline_ns,
                ),
            )
            .map_err(worker_thread_error)?;
    }
    let ready = wait_ready(ctx, ready_rx, concurrency).await;
    start_clock(ctx, start_at).await;
    if busy_poll && ready.is_ok() {
        spawner.spin_until(ctx, deadline_ns);
    }
    let _ = go_tx.send(true);
    ready?;
    Ok(Started {
        load_done: LoadDone::Workers,
        curve: None,
        planned: None,
        followed: Arc::default(),
        queue: None,
    })
}

/// The setup error of a worker thread the OS would not start.
fn worker_thread_error(e: std::io::Error) -> EngineError {
    EngineError::Setup(format!(
        "cannot start a worker thread: {e} (ask for fewer instances or blocking threads)"
    ))
}

/// Starts the run clock at `start_at`: sleeps until then if it is ahead,
/// or backdates the clock's origin if it is past.
async fn start_clock<F: TaskFactory>(ctx: &RunContext<F>, start_at: Option<SystemTime>) {
    let Some(at) = start_at else {
        ctx.clock.start();
        return;
    };
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            tokio::time::sleep(wait).await;
            ctx.clock.start();
        }
        Err(past) => {
            let now = std::time::Instant::now();
            ctx.clock
                .start_from(now.checked_sub(past.duration()).unwrap_or(now));
        }
    }
}

/// Waits until `expected` workers have set up; fails on the first that can't.
async fn wait_ready<F: TaskFactory>(
    ctx: &RunContext<F>,
    mut ready: mpsc::UnboundedReceiver<bool>,
    expected: usize,
) -> Result<(), EngineError> {
    for _ in 0..expected {
        match ready.recv().await {
            Some(true) => {}
            _ => {
                let fatal = ctx.fatal.lock().clone();
                return Err(EngineError::Setup(
                    fatal.unwrap_or_else(|| "task setup failed".into()),
                ));
            }
        }
    }
    Ok(())
}

/// What each closed window is told besides its statistics.
struct Closing {
    /// The rate it was planned at.
    target: TargetRate,
    /// The event counters' growth since the window before.
    growth: crate::metrics::events::Growth,
}

/// The run's target rate as it is now: its own curve, or the one the
/// scheduler follows after rate updates.
struct TargetRate {
    initial: Option<RateCurve>,
    control: LoadControl,
}

impl TargetRate {
    /// Arrivals planned for the window starting at `second`, per second.
    fn of_window(&self, second: u64) -> Option<f64> {
        let (from, to) = (second as f64, second as f64 + 1.0);
        match self.control.following() {
            Some(curve) => Some(curve.count_between(from, to)),
            None => self.initial.as_ref().map(|c| c.count_between(from, to)),
        }
    }
}

/// Tells `observer` about each window the aggregator's last sweep closed;
/// returns their reports with their target rates.
fn announce_closed<F: TaskFactory>(
    ctx: &Arc<RunContext<F>>,
    aggregator: &Aggregator,
    observer: &mut dyn RunObserver,
    closing: &mut Closing,
) -> Vec<(WindowReport, Option<f64>)> {
    let origin_wall = ctx.clock.origin_wall();
    let in_flight = ctx.executing();
    let closed: Vec<_> = aggregator.last_closed().collect();
    // With no window closed, the growth waits for the next one.
    let none = BTreeMap::new();
    let events = if closed.is_empty() {
        BTreeMap::new()
    } else {
        closing.growth.take()
    };
    let mut announced = Vec::new();
    let last = closed.len().saturating_sub(1);
    for (i, (report, stats)) in closed.into_iter().enumerate() {
        let target_rate = closing.target.of_window(report.second);
        observer.on_closed(&ClosedWindow {
            report,
            stats,
            start: origin_wall + Duration::from_secs(report.second),
            target_rate,
            in_flight,
            events: if i == last { &events } else { &none },
        });
        announced.push((report.clone(), target_rate));
    }
    announced
}

/// Sweeps a window after each second until the load is over or stopped.
async fn sweep_until_load_ends<F: TaskFactory>(
    ctx: &Arc<RunContext<F>>,
    aggregator: &mut Aggregator,
    observer: &mut dyn RunObserver,
    closing: &mut Closing,
    load_done: LoadDone,
) {
    let origin = ctx.clock.origin().expect("clock started before sweeping");
    let mut scheduler_done = match load_done {
        LoadDone::Scheduler(rx) => Some(rx),
        LoadDone::Workers => None,
    };
    let mut next_second = 1u64;
    let progress_every = observer.progress_interval();
    let mut next_progress = progress_every.map(|every| origin + every);
    loop {
        let sweep_at = origin + Duration::from_secs(next_second) + SWEEP_GRACE;
        let wake_at = next_progress.map_or(sweep_at, |p| p.min(sweep_at));
        let finished = tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at)) => false,
            _ = ctx.stop.stopped() => true,
            _ = wait_load_done(ctx, scheduler_done.as_mut()) => true,
        };
        if finished {
            return;
        }
        if wake_at < sweep_at {
            let now = std::time::Instant::now();
            observer.on_progress(&aggregator.preview(), (now - origin).as_secs_f64());
            next_progress = progress_every.map(|every| now + every);
            continue;
        }
        aggregator.collect(next_second);
        for (window, target_rate) in announce_closed(ctx, aggregator, observer, closing) {
            if let Some(reason) = observer.on_window(&window, target_rate, aggregator) {
                ctx.stop.abort(reason);
            }
        }
        next_second += 1;
    }
}

async fn wait_load_done<F: TaskFactory>(
    ctx: &RunContext<F>,
    scheduler: Option<&mut tokio::sync::oneshot::Receiver<()>>,
) {
    match scheduler {
        Some(rx) => {
            let _ = rx.await;
        }
        None => wait_workers_exit(ctx).await,
    }
}

async fn wait_workers_exit<F: TaskFactory>(ctx: &RunContext<F>) {
    loop {
        let exited = ctx.worker_exited.notified();
        if ctx.live_workers.load(Ordering::Acquire) == 0 {
            return;
        }
        exited.await;
    }
}

/// Lets in-flight work finish for up to `timeout`, then cancels what is
/// left. Returns how many executions never finished.
async fn drain<F: TaskFactory>(
    ctx: &Arc<RunContext<F>>,
    spawner: &Spawner,
    timeout: Duration,
    queue: Option<&async_channel::Receiver<u64>>,
) -> u64 {
    if tokio::time::timeout(timeout, wait_workers_exit(ctx))
        .await
        .is_ok()
    {
        return 0;
    }
    // Workers still exiting (a slow cleanup, say) are no executions left
    // unfinished: only those inside an execution are.
    let unfinished = ctx.executing();
    // Arrivals still queued for a worker will never start: dropped.
    let queued = queue.map_or(0, |q| q.len() as u64);
    if queued > 0 {
        let window = ctx.clock.now_ns() / NANOS_PER_SEC;
        ctx.hub
            .recorder()
            .record_dropped(window, crate::metrics::Phase::Main, queued);
    }
    spawner.abort_all();
    if unfinished > 0 || queued > 0 {
        tracing::warn!(
            "{unfinished} executions still running after the {timeout:?} drain timeout were abandoned ({queued} queued arrivals dropped)"
        );
    }
    unfinished
}
