//! Workers: each owns one task instance and runs it, one execution at a time.
//!
//! The same worker loops run either as tokio tasks (the `async` strategy) or
//! each on a dedicated OS thread that drives it with `Handle::block_on` (the
//! `blocking` strategy), so CPU-heavy tasks never starve the runtime.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};

use super::clock::RunClock;
use super::stop::StopSignal;
use super::trace::{SpanRecord, Tracing};
use crate::metrics::events::{self, EventCounter};
use crate::metrics::{MetricsHub, Phase, Recorder, Tag};
use crate::task::trace::{self, TraceParent};
use crate::task::{Context, Task, TaskError, TaskFactory, TaskResult};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// State shared by the scheduler, the workers and the engine.
pub(crate) struct RunContext<F: TaskFactory> {
    pub factory: F,
    pub clock: RunClock,
    pub hub: Arc<MetricsHub>,
    pub stop: StopSignal,
    /// Intended start times below this are warmup.
    pub warmup_ns: u64,
    /// Arrivals dispatched and not yet finished (open model only).
    pub in_flight: AtomicU64,
    /// Executions finished by the closed model's workers: the progress a
    /// busy-polling spinner tells work from idling by.
    pub closed_done: AtomicU64,
    /// Workers whose loop has not returned yet.
    pub live_workers: AtomicUsize,
    /// Signalled each time a worker exits.
    pub worker_exited: Notify,
    /// Each worker's flag saying it is inside an execution, so the drain
    /// can count executions, not workers, that never finished.
    busy: Mutex<Vec<Arc<BusyFlag>>>,
    next_instance: AtomicUsize,
    /// First fatal error (task setup), reported as the run's error.
    pub fatal: Mutex<Option<String>>,
    /// Where spans go, if the run is traced.
    pub tracing: Option<Tracing>,
    /// Counts executions that did nothing ([`TaskResult::NotRun`]).
    not_run: EventCounter,
}

impl<F: TaskFactory> RunContext<F> {
    pub fn new(
        factory: F,
        hub: Arc<MetricsHub>,
        stop: StopSignal,
        warmup_ns: u64,
        tracing: Option<Tracing>,
    ) -> Self {
        Self {
            factory,
            clock: RunClock::new(),
            hub,
            stop,
            warmup_ns,
            in_flight: AtomicU64::new(0),
            closed_done: AtomicU64::new(0),
            live_workers: AtomicUsize::new(0),
            worker_exited: Notify::new(),
            busy: Mutex::new(Vec::new()),
            next_instance: AtomicUsize::new(0),
            fatal: Mutex::new(None),
            tracing,
            not_run: EventCounter::named(events::NOT_RUN),
        }
    }

    /// Task instances created so far.
    pub fn instances(&self) -> usize {
        self.next_instance.load(Ordering::Relaxed)
    }

    /// A new worker's busy flag, registered so [`executing`](Self::executing)
    /// sees it.
    fn busy_flag(&self) -> Arc<BusyFlag> {
        let flag = Arc::new(BusyFlag::default());
        self.busy.lock().push(Arc::clone(&flag));
        flag
    }

    /// Executions started and not finished yet.
    pub fn executing(&self) -> u64 {
        let flags = self.busy.lock();
        flags.iter().filter(|f| f.0.load(Ordering::Acquire)).count() as u64
    }

    /// Records a fatal error and stops the run.
    fn fail(&self, message: String) {
        self.fatal.lock().get_or_insert_with(|| message.clone());
        self.stop.abort(message);
    }

    /// Creates and sets up a new task instance (its number and itself),
    /// failing the run if it can't.
    async fn new_instance(&self) -> Option<(usize, F::Task)> {
        let id = self.next_instance.fetch_add(1, Ordering::Relaxed);
        let began = SystemTime::now();
        let task = self.set_up(id).await;
        let error = task.is_none().then(|| {
            (
                "setup".to_owned(),
                self.fatal.lock().clone().unwrap_or_default(),
            )
        });
        self.report_span("setup", id, began, None, error);
        task.map(|task| (id, task))
    }

    /// Records a span of instance `instance` from `began` until now, if the
    /// run is traced.
    fn report_span(
        &self,
        name: &'static str,
        instance: usize,
        began: SystemTime,
        tag: Option<&'static str>,
        error: Option<(String, String)>,
    ) {
        if let Some(tracing) = &self.tracing {
            tracing.sink.record(SpanRecord {
                name,
                span_id: Tracing::new_span_id(),
                start: began,
                end: SystemTime::now(),
                instance,
                tag,
                error,
            });
        }
    }

    /// Releases instance `instance`, in a span of its own when traced.
    async fn clean_up(&self, instance: usize, task: &mut F::Task) {
        let began = SystemTime::now();
        let error = cleanup(task).await;
        self.report_span(
            "cleanup",
            instance,
            began,
            None,
            error.map(|e| ("cleanup".into(), e)),
        );
    }

    async fn set_up(&self, id: usize) -> Option<F::Task> {
        let mut task = match self.factory.create(id) {
            Ok(task) => task,
            Err(e) => {
                self.fail(format!("creating task instance {id} failed: {e:#}"));
                return None;
            }
        };
        match AssertUnwindSafe(task.setup()).catch_unwind().await {
            Ok(Ok(())) => Some(task),
            Ok(Err(e)) => {
                self.fail(format!("task setup failed (instance {id}): {e:#}"));
                None
            }
            Err(panic) => {
                self.fail(format!(
                    "task setup panicked (instance {id}): {}",
                    panic_message(&panic)
                ));
                None
            }
        }
    }

    fn phase_of(&self, intended_ns: u64) -> Phase {
        if intended_ns < self.warmup_ns {
            Phase::Warmup
        } else {
            Phase::Main
        }
    }

    /// Runs execution number `iteration` of an instance, due at
    /// `intended_ns` and started at `start_ns`, and records it. Returns
    /// false if the task panicked (the instance must then be replaced).
    #[inline]
    async fn execute(
        &self,
        (instance, task, iteration): (usize, &mut F::Task, u64),
        intended_ns: u64,
        start_ns: u64,
        rec: &Recorder,
        busy: &BusyFlag,
    ) -> bool {
        let traced = self.tracing.as_ref().filter(|t| t.sample());
        let phase = self.phase_of(intended_ns);
        let origin = self.clock.origin().unwrap_or_else(Instant::now);
        let at = |ns| origin + Duration::from_nanos(ns);
        let mut cx = Context::new(
            (instance, iteration),
            phase,
            (at(intended_ns), at(start_ns)),
            (rec, origin),
            &self.stop,
        );
        busy.0.store(true, Ordering::Relaxed);
        let result = match traced {
            None => AssertUnwindSafe(task.execute(&mut cx)).catch_unwind().await,
            Some(tracing) => {
                let span = TraceParent {
                    trace_id: tracing.parent.trace_id,
                    span_id: Tracing::new_span_id(),
                };
                let began = SystemTime::now();
                let result =
                    trace::within(span, AssertUnwindSafe(task.execute(&mut cx)).catch_unwind())
                        .await;
                let (tag, error) = match &result {
                    Ok(TaskResult::Failure { tag, error }) => (
                        *tag,
                        Some((error.kind().to_owned(), error.message().to_owned())),
                    ),
                    Ok(r) => (r.tag(), None),
                    Err(_) => (
                        None,
                        Some(("panic".to_owned(), "the task panicked".to_owned())),
                    ),
                };
                // An execution not run did nothing: no span for it.
                if !matches!(result, Ok(TaskResult::NotRun)) {
                    tracing.sink.record(SpanRecord {
                        name: "execute",
                        span_id: span.span_id,
                        start: began,
                        end: SystemTime::now(),
                        instance,
                        tag,
                        error,
                    });
                }
                result
            }
        };
        busy.0.store(false, Ordering::Release);
        let end_ns = self.clock.now_ns();
        let latency = end_ns.saturating_sub(intended_ns);
        let service = end_ns.saturating_sub(start_ns);
        let window = end_ns / NANOS_PER_SEC;
        match result {
            Ok(TaskResult::Success { tag }) => {
                let key = (phase, tag.map(Tag::Execution));
                rec.record_execution(window, key, latency, service, None);
                true
            }
            Ok(TaskResult::Failure { tag, error }) => {
                let key = (phase, tag.map(Tag::Execution));
                rec.record_execution(window, key, latency, service, Some(&error));
                true
            }
            Ok(TaskResult::NotRun) => {
                self.not_run.add(1);
                true
            }
            Err(panic) => {
                let error = TaskError::new("panic", panic_message(&panic));
                rec.record_execution(window, (phase, None), latency, service, Some(&error));
                false
            }
        }
    }

    fn worker_started(&self) {
        self.live_workers.fetch_add(1, Ordering::AcqRel);
    }

    fn worker_done(&self) {
        self.live_workers.fetch_sub(1, Ordering::AcqRel);
        self.worker_exited.notify_waiters();
    }
}

/// Set by a worker while it is inside an execution. Only its worker writes
/// it (no contention on the hot path); its own cache line keeps workers'
/// flags from false-sharing.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct BusyFlag(AtomicBool);

/// Tells the engine a prespawned worker is ready (or could not start).
pub(crate) type ReadySender = mpsc::UnboundedSender<bool>;

/// Open-model worker: takes due arrivals from the channel until it closes.
pub(crate) async fn open_worker<F: TaskFactory>(
    ctx: Arc<RunContext<F>>,
    arrivals: async_channel::Receiver<u64>,
    ready: Option<ReadySender>,
) {
    let Some((mut instance, mut task)) = ctx.new_instance().await else {
        if let Some(ready) = ready {
            let _ = ready.send(false);
        }
        ctx.worker_done();
        return;
    };
    if let Some(ready) = ready {
        let _ = ready.send(true);
    }
    let rec = ctx.hub.recorder();
    let busy = ctx.busy_flag();
    let mut iteration = 0;
    while let Ok(intended_ns) = arrivals.recv().await {
        if ctx.stop.is_stopped() {
            // Interrupted: arrivals still queued are not started, but counted.
            let window = ctx.clock.now_ns() / NANOS_PER_SEC;
            rec.record_dropped(window, ctx.phase_of(intended_ns), 1);
        } else {
            let start_ns = ctx.clock.now_ns();
            let run = (instance, &mut task, iteration);
            iteration += 1;
            if !ctx.execute(run, intended_ns, start_ns, &rec, &busy).await {
                match ctx.new_instance().await {
                    Some(fresh) => ((instance, task), iteration) = (fresh, 0),
                    None => {
                        ctx.in_flight.fetch_sub(1, Ordering::AcqRel);
                        break;
                    }
                }
            }
        }
        ctx.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
    ctx.clean_up(instance, &mut task).await;
    ctx.worker_done();
}

/// Closed-model worker: executes back to back from `go` until `deadline_ns`.
pub(crate) async fn closed_worker<F: TaskFactory>(
    ctx: Arc<RunContext<F>>,
    mut go: watch::Receiver<bool>,
    ready: ReadySender,
    deadline_ns: u64,
) {
    let Some((mut instance, mut task)) = ctx.new_instance().await else {
        let _ = ready.send(false);
        ctx.worker_done();
        return;
    };
    let _ = ready.send(true);
    let started = go.wait_for(|go| *go).await.is_ok();
    let rec = ctx.hub.recorder();
    let busy = ctx.busy_flag();
    let mut iteration = 0;
    while started && !ctx.stop.is_stopped() {
        let start_ns = ctx.clock.now_ns();
        if start_ns >= deadline_ns {
            break;
        }
        let run = (instance, &mut task, iteration);
        iteration += 1;
        let kept = ctx.execute(run, start_ns, start_ns, &rec, &busy).await;
        ctx.closed_done.fetch_add(1, Ordering::Relaxed);
        if !kept {
            match ctx.new_instance().await {
                Some(fresh) => ((instance, task), iteration) = (fresh, 0),
                None => break,
            }
        }
        // A task that never awaits would otherwise hold its runtime thread.
        tokio::task::consume_budget().await;
    }
    ctx.clean_up(instance, &mut task).await;
    ctx.worker_done();
}

/// Runs `task`'s cleanup; what went wrong, if anything (also logged).
async fn cleanup<T: Task>(task: &mut T) -> Option<String> {
    match AssertUnwindSafe(task.cleanup()).catch_unwind().await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!("task cleanup failed: {e:#}");
            Some(format!("{e:#}"))
        }
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::warn!("task cleanup panicked: {message}");
            Some(message)
        }
    }
}

/// Starts workers with the run's thread strategy and tracks them.
pub(crate) struct Spawner {
    handle: tokio::runtime::Handle,
    blocking: bool,
    aborts: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Spawner {
    pub fn new(handle: tokio::runtime::Handle, blocking: bool) -> Self {
        Self {
            handle,
            blocking,
            aborts: Mutex::new(Vec::new()),
        }
    }

    /// Runs `worker` as a tokio task, or on its own OS thread when blocking;
    /// an error if the OS refuses the thread (too many threads or too little
    /// memory for their stacks).
    pub fn spawn<F, Fut>(&self, ctx: &RunContext<F>, worker: Fut) -> std::io::Result<()>
    where
        F: TaskFactory,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        ctx.worker_started();
        if self.blocking {
            let handle = self.handle.clone();
            let spawned = std::thread::Builder::new()
                .name("vajra-blocking".into())
                .spawn(move || handle.block_on(worker));
            if let Err(e) = spawned {
                ctx.worker_done();
                return Err(e);
            }
        } else {
            let task = self.handle.spawn(worker);
            self.aborts.lock().push(task.abort_handle());
        }
        Ok(())
    }

    /// Starts a busy-polling task for each runtime worker thread (none for
    /// the blocking strategy), spinning
    /// until the run stops or reaches `deadline_ns` (not counted as
    /// workers: they hold no instance).
    pub fn spin_until<F: TaskFactory>(&self, ctx: &Arc<RunContext<F>>, deadline_ns: u64) {
        if self.blocking {
            // The work is on threads of its own: a spinner would only
            // take a core from them.
            return;
        }
        for _ in 0..self.handle.metrics().num_workers() {
            let ctx = Arc::clone(ctx);
            let task = self.handle.spawn(async move {
                let done = || ctx.stop.is_stopped() || ctx.clock.now_ns() >= deadline_ns;
                let progress = || ctx.closed_done.load(Ordering::Relaxed);
                super::busy_poll::spin(done, progress).await;
            });
            self.aborts.lock().push(task.abort_handle());
        }
    }

    /// Cancels workers still running (after the drain timeout). Threads of
    /// the blocking strategy cannot be cancelled and are left to finish.
    pub fn abort_all(&self) {
        for task in self.aborts.lock().drain(..) {
            task.abort();
        }
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
