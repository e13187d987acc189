//! The export pipeline: each exporter on its own task behind a bounded
//! queue, fed from the engine's once-a-second sweep, flushed at the end.
//!
//! The run only ever *offers* a window: if an exporter's queue is full (it
//! is slow, or stuck on an unreachable receiver) the window is counted as
//! not delivered and the run goes on. At the end the final windows and the
//! report are queued and each exporter gets until the flush timeout to
//! finish; one that does not is abandoned, and what it still held is
//! counted too. Every exporter's tally ends up in the report
//! ([`ExportOutcome`]).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::exporter::{Delivery, ExportError, ExportWindow, Exporter, RunInfo};
use super::report::Report;
use crate::engine::trace::Tracing;
use crate::engine::{ClosedWindow, RunObserver};
use crate::metrics::{Aggregator, WindowReport};

/// Default number of windows an exporter may fall behind by before the
/// newest are not delivered to it: two minutes of a run.
pub const DEFAULT_QUEUE: usize = 120;
/// Default time exporters get at the end to deliver what they hold.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What one exporter delivered of a run, as the report states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportOutcome {
    /// The exporter's name (`otlp`, `prometheus`, ...).
    pub exporter: String,
    /// The generator it ran on (a cluster's merged report lists each
    /// peer's exporters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Windows the run closed.
    pub windows: u64,
    /// Windows the exporter took in without an error.
    pub delivered: u64,
    /// Windows it failed on, could not keep up with, or had not got to when
    /// the flush timed out.
    pub not_delivered: u64,
    /// Whether it took in the final report.
    pub report_delivered: bool,
    /// The last reason something was not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExportOutcome {
    /// Whether everything reached the exporter.
    pub fn is_complete(&self) -> bool {
        self.not_delivered == 0 && self.report_delivered && self.error.is_none()
    }

    /// One line for the summary: "otlp: 3 windows not delivered:
    /// connection refused", or what was delivered.
    pub fn describe(&self) -> String {
        let name = match &self.peer {
            Some(peer) => format!("{} on {peer}", self.exporter),
            None => self.exporter.clone(),
        };
        if self.is_complete() {
            return format!(
                "{name}: {} windows and the report delivered",
                self.delivered
            );
        }
        let mut missing = Vec::new();
        if self.not_delivered > 0 {
            missing.push(format!(
                "{} of {} windows not delivered",
                self.not_delivered, self.windows
            ));
        }
        if !self.report_delivered {
            missing.push("the report not delivered".to_owned());
        }
        if missing.is_empty() {
            missing.push("delivered, with an error".to_owned());
        }
        let why = self.error.as_deref().unwrap_or("unknown error");
        format!("{name}: {}: {why}", missing.join(", "))
    }
}

/// An exporter's running tally, shared by the pipeline and its task.
#[derive(Debug, Default)]
struct Tally {
    /// Windows offered.
    windows: u64,
    /// Windows the exporter's task has dealt with (well or not).
    settled: u64,
    /// Windows whose figures were lost: not queued, or lost by a failure.
    lost: u64,
    report_delivered: bool,
    error: Option<String>,
}

impl Tally {
    /// Counts `error`, which lost `default_lost` windows unless it says.
    fn fail(&mut self, what: &str, error: ExportError, default_lost: u64) {
        tracing::debug!("exporter could not deliver {what}: {error}");
        self.lost += error.lost_windows.unwrap_or(default_lost);
        self.error = Some(error.message);
    }
}

/// One exporter's queue and task.
struct Lane {
    name: String,
    queue: mpsc::Sender<Delivery>,
    tally: Arc<Mutex<Tally>>,
    task: JoinHandle<()>,
}

/// A run's exporters, each on its own task behind a bounded queue.
pub struct ExportPipeline {
    lanes: Vec<Lane>,
    flush_timeout: Duration,
    tracing: Option<Tracing>,
}

impl ExportPipeline {
    /// Starts `exporters` (name, exporter) on tasks of the current runtime,
    /// each with a queue of `queue` windows, and tells them `run` starts.
    pub fn start(
        exporters: Vec<(String, Box<dyn Exporter>)>,
        run: RunInfo,
        queue: usize,
        flush_timeout: Duration,
    ) -> Self {
        let run = Arc::new(run);
        let mut tracing = None;
        let lanes = exporters
            .into_iter()
            .map(|(name, mut exporter)| {
                match exporter.tracing(&run) {
                    // One exporter takes the engine's spans (the first that
                    // asks); the others' tracing is not started.
                    Ok(Some(t)) if tracing.is_none() => tracing = Some(t),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{name}: the run is not traced: {e:#}"),
                }
                // Room for the start, the windows, and the report.
                let (tx, rx) = mpsc::channel(queue.max(1) + 2);
                let tally = Arc::new(Mutex::new(Tally::default()));
                let task = tokio::spawn(serve(exporter, rx, Arc::clone(&tally)));
                let _ = tx.try_send(Delivery::Start(Arc::clone(&run)));
                Lane {
                    name,
                    queue: tx,
                    tally,
                    task,
                }
            })
            .collect();
        Self {
            lanes,
            flush_timeout,
            tracing,
        }
    }

    /// A pipeline with no exporters.
    pub fn none() -> Self {
        Self {
            lanes: Vec::new(),
            flush_timeout: Duration::ZERO,
            tracing: None,
        }
    }

    /// How the engine traces the run, if an exporter takes its spans.
    pub fn tracing(&self) -> Option<Tracing> {
        self.tracing.clone()
    }

    /// Whether it has no exporters.
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Queues `window` for every exporter that has room; one that has none
    /// is counted as not having it delivered. Never waits.
    pub fn offer(&self, window: Arc<ExportWindow>) {
        for lane in &self.lanes {
            lane.tally.lock().windows += 1;
            if lane
                .queue
                .try_send(Delivery::Window(Arc::clone(&window)))
                .is_err()
            {
                let mut tally = lane.tally.lock();
                tally.lost += 1;
                tally.settled += 1;
                tally.error = Some(format!(
                    "its queue of windows was full (the exporter is {} windows behind)",
                    lane.queue.max_capacity()
                ));
            }
        }
    }

    /// Hands every exporter the final `report` and waits, at most the flush
    /// timeout for all of them together, until each has dealt with all it
    /// was given; returns what each delivered.
    pub async fn finish(self, report: &Report) -> Vec<ExportOutcome> {
        let report = Arc::new(report.clone());
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(self.flush_timeout)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        let timeout = self.flush_timeout;
        // Every lane is finished at once, so one stuck exporter (its queue
        // full, its task hung) costs the others nothing.
        let lanes = self
            .lanes
            .into_iter()
            .map(|lane| finish_lane(lane, Arc::clone(&report), deadline, timeout));
        futures_util::future::join_all(lanes).await
    }
}

/// Hands `lane` the report and waits until its task is done, or the
/// deadline; what it delivered.
async fn finish_lane(
    lane: Lane,
    report: Arc<Report>,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> ExportOutcome {
    let Lane {
        name,
        queue,
        tally,
        mut task,
    } = lane;
    let sent = tokio::time::timeout_at(deadline, queue.send(Delivery::Finish(report))).await;
    let queued = matches!(sent, Ok(Ok(())));
    drop(queue);
    let finished = tokio::time::timeout_at(deadline, &mut task).await.is_ok();
    if !finished {
        task.abort();
    }
    let mut tally = tally.lock();
    // What the task never got to is lost with it.
    let unsettled = tally.windows.saturating_sub(tally.settled);
    if !finished || !queued {
        tally.error = Some(format!(
            "it had not finished when the flush timeout of {timeout:?} ran out"
        ));
    }
    let not_delivered = (tally.lost + unsettled).min(tally.windows);
    ExportOutcome {
        exporter: name,
        peer: None,
        windows: tally.windows,
        delivered: tally.windows - not_delivered,
        not_delivered,
        report_delivered: tally.report_delivered,
        error: tally.error.clone(),
    }
}

/// An exporter's task: takes what is queued for it, in order, until the
/// pipeline closes the queue.
async fn serve(
    mut exporter: Box<dyn Exporter>,
    mut queue: mpsc::Receiver<Delivery>,
    tally: Arc<Mutex<Tally>>,
) {
    while let Some(delivery) = queue.recv().await {
        match delivery {
            Delivery::Start(run) => {
                if let Err(e) = exporter.start(&run).await {
                    tally.lock().fail("the start of the run", e, 0);
                }
            }
            Delivery::Window(window) => {
                let result = exporter.window(&window).await;
                let mut tally = tally.lock();
                tally.settled += 1;
                if let Err(e) = result {
                    tally.fail("a window", e, 1);
                }
            }
            Delivery::Finish(report) => {
                let result = exporter.finish(&report).await;
                let mut tally = tally.lock();
                match result {
                    Ok(()) => tally.report_delivered = true,
                    Err(e) => tally.fail("the report", e, 0),
                }
            }
        }
    }
}

/// Feeds a pipeline from a run, passing everything on to the observer it
/// wraps (the console, a peer's activity).
pub struct ExportObserver<'a> {
    inner: &'a mut dyn RunObserver,
    pipeline: &'a ExportPipeline,
}

impl<'a> ExportObserver<'a> {
    /// `inner`, with every closed window also offered to `pipeline`.
    pub fn new(inner: &'a mut dyn RunObserver, pipeline: &'a ExportPipeline) -> Self {
        Self { inner, pipeline }
    }
}

impl RunObserver for ExportObserver<'_> {
    fn on_window(
        &mut self,
        window: &WindowReport,
        target_rate: Option<f64>,
        totals: &Aggregator,
    ) -> Option<String> {
        self.inner.on_window(window, target_rate, totals)
    }

    fn progress_interval(&self) -> Option<Duration> {
        self.inner.progress_interval()
    }

    fn on_progress(&mut self, preview: &Aggregator, elapsed_s: f64) {
        self.inner.on_progress(preview, elapsed_s);
    }

    fn on_closed(&mut self, window: &ClosedWindow<'_>) {
        self.inner.on_closed(window);
        if self.pipeline.is_empty() {
            return;
        }
        self.pipeline.offer(Arc::new(ExportWindow {
            summary: window.report.clone(),
            start: window.start,
            stats: window.stats.clone(),
            target_rate: window.target_rate,
            in_flight: window.in_flight,
            rss_bytes: crate::metrics::cpu::current_rss_bytes(),
            events: window.events.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::WindowStats;

    /// Counts what it is given; fails or stalls on request.
    struct Probe {
        seen: Arc<Mutex<Vec<u64>>>,
        fail_every: Option<u64>,
        stall: bool,
    }

    #[async_trait::async_trait]
    impl Exporter for Probe {
        async fn window(&mut self, window: &ExportWindow) -> Result<(), ExportError> {
            if self.stall {
                std::future::pending::<()>().await;
            }
            let second = window.summary.second;
            if self.fail_every.is_some_and(|n| second.is_multiple_of(n)) {
                return Err(ExportError::new("connection refused"));
            }
            self.seen.lock().push(second);
            Ok(())
        }
    }

    fn window(second: u64) -> Arc<ExportWindow> {
        let hub = crate::metrics::MetricsHub::new(1);
        let mut agg = Aggregator::new(hub, 0.0);
        let summary = agg.collect(second + 1).last().cloned().unwrap();
        Arc::new(ExportWindow {
            summary,
            start: std::time::SystemTime::now(),
            stats: WindowStats::new(second),
            target_rate: None,
            in_flight: 0,
            rss_bytes: 0,
            events: Default::default(),
        })
    }

    fn run_info() -> RunInfo {
        RunInfo {
            test_id: "t1".into(),
            peer: "p1".into(),
            task: "noop".into(),
            labels: Default::default(),
            curve: None,
            warmup_secs: 0.0,
            starts_at: std::time::SystemTime::now(),
        }
    }

    fn report() -> Report {
        let agg = Aggregator::new(crate::metrics::MetricsHub::new(1), 0.0);
        Report::snapshot("noop", &agg, 0.0, 1.0)
    }

    #[tokio::test]
    async fn failures_and_stalls_are_counted_never_waited_for() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // The stuck one first: it must not take the others' flush time.
        let exporters: Vec<(String, Box<dyn Exporter>)> = vec![
            (
                "stuck".into(),
                Box::new(Probe {
                    seen: Arc::default(),
                    fail_every: None,
                    stall: true,
                }),
            ),
            (
                "flaky".into(),
                Box::new(Probe {
                    seen: Arc::clone(&seen),
                    fail_every: Some(3),
                    stall: false,
                }),
            ),
        ];
        let pipeline = ExportPipeline::start(exporters, run_info(), 4, Duration::from_millis(300));
        let began = std::time::Instant::now();
        for second in 0..10 {
            pipeline.offer(window(second));
            tokio::task::yield_now().await;
        }
        assert!(
            began.elapsed() < Duration::from_millis(100),
            "offer never waits"
        );
        let outcomes = pipeline.finish(&report()).await;
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "the flush is bounded"
        );
        let flaky = &outcomes[1];
        assert_eq!(
            (flaky.windows, flaky.delivered, flaky.not_delivered),
            (10, 6, 4)
        );
        assert!(flaky.report_delivered);
        assert_eq!(*seen.lock(), vec![1, 2, 4, 5, 7, 8]);
        assert!(
            flaky
                .describe()
                .contains("4 of 10 windows not delivered: connection refused")
        );
        let stuck = &outcomes[0];
        assert_eq!(
            (stuck.windows, stuck.delivered, stuck.not_delivered),
            (10, 0, 10)
        );
        assert!(!stuck.report_delivered);
        assert!(
            stuck.describe().contains("flush timeout"),
            "{}",
            stuck.describe()
        );
    }

    #[tokio::test]
    async fn a_healthy_exporter_gets_everything_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            seen: Arc::clone(&seen),
            fail_every: None,
            stall: false,
        };
        let pipeline = ExportPipeline::start(
            vec![("probe".into(), Box::new(probe))],
            run_info(),
            DEFAULT_QUEUE,
            DEFAULT_FLUSH_TIMEOUT,
        );
        for second in 0..50 {
            pipeline.offer(window(second));
        }
        let outcomes = pipeline.finish(&report()).await;
        assert!(outcomes[0].is_complete(), "{:?}", outcomes[0]);
        assert_eq!(*seen.lock(), (0..50).collect::<Vec<_>>());
    }
}
