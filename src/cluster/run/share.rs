//! A peer's share of a test, as something that runs it: the [`Share`] seam
//! the runner drives, and its implementation on the standalone engine,
//! which keeps each test's report for whoever asks (`start --wait` merges
//! them) and publishes the peer's activity for gossip. The simulation
//! implements the same seam with a ledger of what each peer would send.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::cluster::membership::state::Digest;
use crate::cluster::run::control::Controller;
use crate::cluster::run::leases::TestLeases;
use crate::cluster::run::plan::{Plan, ShareChange};
use crate::config::{self, RunArgs};
use crate::engine::TaskRegistry;
use crate::engine::{EngineConfig, LoadControl, LoadModel, RunObserver, StopSignal};
use crate::export::registry::Exports;
use crate::export::{ExportObserver, ExportPipeline, Report, RunInfo};
use crate::load::RateCurve;
use crate::load::profile::CompiledProfile;
use crate::metrics::{Aggregator, Phase, WindowReport};
use crate::task::TaskOptions;
use crate::task::scenario::lease::RecordLeases;

/// How far behind its schedule a share may fall (a frozen process) before
/// it holds and confirms the current epoch with the leader.
pub const STALL_GUARD: Duration = Duration::from_millis(750);

/// One test's share running on this peer, as the runner steers it.
pub trait Share: Send {
    /// Follows `change` (an epoch of `plan` after the one it runs) from
    /// `change.at_secs` on the run clock, at the rate `tail` (whose time 0
    /// is then).
    fn follow(&mut self, plan: &Plan, change: &ShareChange, tail: RateCurve);
    /// Stops sending now, until the next [`follow`](Self::follow) or
    /// [`release`](Self::release) (the peer is cut off from the quorum).
    fn hold_now(&mut self);
    /// Whether it holds: once it acted on [`hold_now`](Self::hold_now) (the
    /// engine's scheduler does within a few milliseconds, unless its curve
    /// is over), or on its own after falling more than [`STALL_GUARD`]
    /// behind (a frozen process).
    fn is_held(&mut self) -> bool;
    /// Goes on after a hold, sending what it owes.
    fn release(&mut self);
    /// Stops for good (the test was stopped, or ended).
    fn stop(&mut self);
    /// Whether its run is over (it finished or failed).
    fn is_over(&self) -> bool;
}

/// What starts shares.
pub trait ShareEngine: Send + Sync {
    /// Starts this peer's share of `plan`: `curve` on a run clock whose
    /// origin is the test's start (idle until this epoch's start).
    fn start(&self, plan: &Plan, curve: RateCurve) -> Result<Box<dyn Share>, String>;

    /// Records that this peer cannot run its share of `plan`, and why, for
    /// whoever asks for its result.
    fn refuse(&self, plan: &Plan, error: String) {
        let _ = (plan, error);
    }
}

/// What this peer has to say about a test.
#[derive(Debug, Clone)]
pub enum PeerResult {
    /// Still running: its figures so far (outcome "running").
    Running(Box<Report>),
    /// Finished: its final report.
    Finished(Box<Report>),
    /// Its run could not be carried out.
    Failed(String),
}

impl PeerResult {
    /// A page of its report: the series from window `skip` on, as much as
    /// one answer carries (see [`page_of`]); `Err` if the run failed.
    pub fn page_after(&mut self, skip: usize) -> Result<Page, String> {
        match self {
            PeerResult::Running(report) | PeerResult::Finished(report) => {
                Ok(page_of(report, skip, PAGE_BYTES))
            }
            PeerResult::Failed(e) => Err(e.clone()),
        }
    }

    /// Its report, whole (`None` if the run failed).
    pub fn report(&self) -> Option<&Report> {
        match self {
            PeerResult::Running(report) | PeerResult::Finished(report) => Some(report),
            PeerResult::Failed(_) => None,
        }
    }

    /// Whether the run is over (finished or failed).
    pub fn is_over(&self) -> bool {
        !matches!(self, Self::Running(_))
    }
}

/// This peer's results, by test id.
pub type Results = Arc<Mutex<BTreeMap<String, PeerResult>>>;

/// Most bytes of series (as JSON) one answer carries: a message is at most
/// [`MAX_MESSAGE`](crate::cluster::endpoint::MAX_MESSAGE), and a window
/// with its two histograms takes a kilobyte or more, so the series of a
/// long test comes in several answers.
pub const PAGE_BYTES: usize = 512 * 1024;

/// A report with part of its series.
#[derive(Debug, Clone)]
pub struct Page {
    /// The report, its series cut to the page's windows.
    pub report: Report,
    /// Whether the series goes on past this page (ask again from its end).
    pub more: bool,
}

/// A copy of `report` whose series holds the windows from `skip` on, as
/// many as fit in `budget` bytes of JSON (one at least, so every page
/// moves on). The windows before `skip` are not copied at all: a long
/// test's series is most of a report, and clients poll every 200 ms.
pub fn page_of(report: &mut Report, skip: usize, budget: usize) -> Page {
    let series = std::mem::take(&mut report.series);
    let rest = series.get(skip..).unwrap_or_default();
    let mut used = 0;
    let fit = rest
        .iter()
        .take_while(|window| {
            used += json_len(window);
            used <= budget
        })
        .count()
        .max(1)
        .min(rest.len());
    let more = fit < rest.len();
    let mut copy = report.clone();
    copy.series = rest[..fit].to_vec();
    report.series = series;
    Page { report: copy, more }
}

/// How many bytes `value` takes as JSON.
fn json_len(value: &impl serde::Serialize) -> usize {
    /// Counts what is written, keeps none of it.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // A window always serialises; were it not to, it counts as nothing.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// What this peer is doing, for gossip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    /// "idle", "running T (epoch E)" or "finished T".
    pub status: String,
    /// Rate this peer is asked for now.
    pub target_rate: f64,
    /// Rate it achieved in the last second.
    pub achieved_rate: f64,
    /// Figures of its test so far, for gossip.
    pub digest: Digest,
}

/// Shared activity, read by the gossip refresher.
pub type SharedActivity = Arc<Mutex<Activity>>;

/// Shares run by the standalone engine with the tasks in `registry`.
pub struct EngineShares {
    /// Tasks this peer can run.
    pub registry: Arc<TaskRegistry>,
    /// This peer's exporters, fed each share it runs.
    pub exports: Arc<Exports>,
    /// This peer's node name, as exporters label it.
    pub peer: String,
    /// Where each test's report goes.
    pub results: Results,
    /// What this peer is doing, for gossip.
    pub activity: SharedActivity,
    /// Its control handler, which leases feeder records from the leader
    /// (`None` where no cluster is: a feeder that needs leases is refused).
    pub control: Option<Arc<Controller>>,
}

impl ShareEngine for EngineShares {
    fn start(&self, plan: &Plan, curve: RateCurve) -> Result<Box<dyn Share>, String> {
        let started = self.start_engine(plan, curve);
        if let Err(e) = &started {
            self.refuse(plan, e.clone());
        }
        started
    }

    fn refuse(&self, plan: &Plan, error: String) {
        self.results
            .lock()
            .insert(plan.test_id.clone(), PeerResult::Failed(error));
    }
}

impl EngineShares {
    /// Has a scenario's `sequential` and `unique` feeders draw from records
    /// the leader leases this peer, so no two peers get the same record.
    fn lease_feeders(&self, plan: &Plan, options: &TaskOptions) -> Result<(), String> {
        let Some(scenarios) = options.scenario.as_ref().filter(|s| s.needs_leases()) else {
            return Ok(());
        };
        let Some(control) = &self.control else {
            return Err("this peer cannot lease feeder records: it has no control handler".into());
        };
        let leases: Arc<dyn RecordLeases> =
            Arc::new(TestLeases::new(Arc::clone(control), &plan.test_id));
        scenarios.lease_feeders(&leases);
        Ok(())
    }

    fn start_engine(&self, plan: &Plan, curve: RateCurve) -> Result<Box<dyn Share>, String> {
        let args: RunArgs = config::definition::parse_definition(&plan.definition.settings)
            .map_err(|e| format!("bad test definition: {e}"))?;
        let settings = config::definition::resolve_definition(args).map_err(|e| e.to_string())?;
        let LoadModel::Open {
            profile,
            preallocate,
            max_in_flight,
            saturation,
            dispatch_quantum,
            max_lag,
        } = settings.engine.load.clone()
        else {
            return Err("a distributed test needs a target rate".into());
        };
        // The run clock starts at the test's start for every peer, so windows
        // are the test's seconds and merge second by second.
        let warmup_secs = profile.warmup_secs;
        let engine = EngineConfig {
            load: LoadModel::Open {
                profile: CompiledProfile { curve, warmup_secs },
                preallocate,
                max_in_flight,
                saturation,
                dispatch_quantum,
                max_lag,
            },
            start_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(plan.test_start_unix_ms)),
            ..settings.engine.clone()
        };
        // `${vajra.peer}` in a scenario names this peer.
        let options = TaskOptions {
            peer: Some(self.peer.clone()),
            ..settings.task.clone()
        };
        self.lease_feeders(plan, &options)?;
        let runnable = self
            .registry
            .build(&options)
            .map_err(|e| format!("{e:#}"))?;
        let pipeline = self.start_exports(plan, &settings.task.name, &engine);
        let engine = EngineConfig {
            tracing: pipeline.tracing(),
            ..engine
        };
        let (control, stop) = (LoadControl::new(), StopSignal::new());
        control.hold_when_behind(STALL_GUARD);
        let task = {
            let (control, stop) = (control.clone(), stop.clone());
            let (results, activity) = (Arc::clone(&self.results), Arc::clone(&self.activity));
            let test_id = plan.test_id.clone();
            let label = format!("running {} (epoch {})", plan.test_id, plan.epoch);
            async move {
                activity.lock().status = label;
                let mut activity_observer = ActivityObserver {
                    activity: Arc::clone(&activity),
                    results: Arc::clone(&results),
                    test_id: test_id.clone(),
                    task: settings.task.name.clone(),
                    warmup_secs,
                };
                let mut observer = ExportObserver::new(&mut activity_observer, &pipeline);
                let outcome = runnable
                    .run_controlled(engine, &mut observer, stop, control)
                    .await;
                let result = match outcome {
                    Ok(o) => {
                        let mut report = Report::build(
                            &settings.task.name,
                            &o,
                            &settings.thresholds,
                            settings.reliable_lag,
                        );
                        report.exports = pipeline.finish(&report).await;
                        PeerResult::Finished(Box::new(report))
                    }
                    Err(e) => {
                        let failed = Report::failed(&settings.task.name, &e.to_string());
                        pipeline.finish(&failed).await;
                        PeerResult::Failed(e.to_string())
                    }
                };
                let main = match &result {
                    PeerResult::Failed(e) => {
                        tracing::warn!("test {test_id} failed here: {e}");
                        None
                    }
                    PeerResult::Finished(report) | PeerResult::Running(report) => {
                        tracing::info!("test {test_id} finished here");
                        Some(report.main.clone())
                    }
                };
                results.lock().insert(test_id.clone(), result);
                let mut activity = activity.lock();
                let last = activity.digest;
                let digest = main.map_or(last, |main| Digest::of(&main, last.version + 1));
                *activity = Activity {
                    status: format!("finished {test_id}"),
                    digest,
                    ..Activity::default()
                };
            }
        };
        tokio::spawn(task);
        Ok(Box::new(EngineShare {
            test_id: plan.test_id.clone(),
            control,
            stop,
            results: Arc::clone(&self.results),
            activity: Arc::clone(&self.activity),
        }))
    }
}

impl EngineShares {
    /// This peer's exporters for its share of `plan`; none (with a
    /// warning) if they cannot be built: an exporter never stops a test.
    fn start_exports(&self, plan: &Plan, task: &str, engine: &EngineConfig) -> ExportPipeline {
        let (curve, warmup_secs) = match &engine.load {
            LoadModel::Open { profile, .. } => (Some(profile.curve.clone()), profile.warmup_secs),
            LoadModel::Closed { warmup, .. } => (None, warmup.as_secs_f64()),
        };
        let run = RunInfo {
            test_id: plan.test_id.clone(),
            peer: self.peer.clone(),
            task: task.to_owned(),
            labels: self.exports.settings.labels.clone(),
            curve,
            warmup_secs,
            starts_at: engine.start_at.unwrap_or_else(SystemTime::now),
        };
        self.exports.start(run).unwrap_or_else(|e| {
            tracing::warn!("test {}: running without exporters: {e:#}", plan.test_id);
            ExportPipeline::none()
        })
    }
}

/// A share the standalone engine runs.
struct EngineShare {
    test_id: String,
    control: LoadControl,
    stop: StopSignal,
    results: Results,
    activity: SharedActivity,
}

/// A share the runner lets go of (the peer shuts down, or it followed the
/// plan away) stops: an engine nobody steers must not run on.
impl Drop for EngineShare {
    fn drop(&mut self) {
        self.stop.stop_on_command();
    }
}

impl Share for EngineShare {
    fn follow(&mut self, plan: &Plan, change: &ShareChange, tail: RateCurve) {
        self.control.update(change.at_secs, tail);
        self.activity.lock().status = format!("running {} (epoch {})", plan.test_id, change.epoch);
    }

    fn hold_now(&mut self) {
        self.control.hold_now();
    }

    fn is_held(&mut self) -> bool {
        self.control.is_held()
    }

    fn release(&mut self) {
        self.control.release();
    }

    fn stop(&mut self) {
        self.stop.stop_on_command();
    }

    fn is_over(&self) -> bool {
        self.results
            .lock()
            .get(&self.test_id)
            .is_some_and(PeerResult::is_over)
    }
}

/// Publishes the run's rates for gossip and its figures so far for
/// `start --wait` (which keeps the last ones of a peer that dies).
struct ActivityObserver {
    activity: SharedActivity,
    results: Results,
    test_id: String,
    task: String,
    warmup_secs: f64,
}

/// How often a running share refreshes its figures so far: a peer that
/// dies takes at most this much unreported work with it.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

impl ActivityObserver {
    fn publish(&self, totals: &Aggregator, elapsed_s: f64) {
        let snapshot = Report::snapshot(&self.task, totals, self.warmup_secs, elapsed_s);
        self.results.lock().insert(
            self.test_id.clone(),
            PeerResult::Running(Box::new(snapshot)),
        );
    }
}

impl RunObserver for ActivityObserver {
    fn progress_interval(&self) -> Option<Duration> {
        Some(PROGRESS_EVERY)
    }

    fn on_progress(&mut self, preview: &Aggregator, elapsed_s: f64) {
        self.publish(preview, elapsed_s);
    }

    fn on_window(
        &mut self,
        window: &WindowReport,
        target: Option<f64>,
        totals: &Aggregator,
    ) -> Option<String> {
        {
            let mut activity = self.activity.lock();
            activity.target_rate = target.unwrap_or(0.0);
            activity.achieved_rate = window.rate;
            let main = totals.phase_total(Phase::Main);
            activity.digest = Digest {
                version: activity.digest.version + 1,
                completed: main.completed(),
                failures: main.failure,
                p50_us: main.latency.value_at_quantile(0.5) as f64 / 1_000.0,
                p99_us: main.latency.value_at_quantile(0.99) as f64 / 1_000.0,
            };
        }
        self.publish(&totals.preview(), (window.second + 1) as f64);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::endpoint::MAX_MESSAGE;
    use crate::metrics::{MetricsHub, Phase};

    /// A final report of `seconds` windows of 3000 executions each, their
    /// latencies spread from 0.1 ms to 50 ms as a real service's are.
    fn spread_report(seconds: u64) -> Report {
        let hub = MetricsHub::new(1);
        let recorder = hub.recorder();
        let mut x: u64 = 12_345;
        for second in 0..seconds {
            for _ in 0..3_000 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let f = (x >> 11) as f64 / (1u64 << 53) as f64;
                let ns = (100_000.0 * 500f64.powf(f)) as u64;
                recorder.record_execution(second, (Phase::Main, None), ns, ns - ns / 10, None);
            }
        }
        let mut totals = Aggregator::new(hub, 0.0);
        totals.collect(seconds);
        Report::snapshot("t", &totals.preview(), 0.0, seconds as f64)
    }

    /// Seven minutes of a real service's windows do not fit one message;
    /// a page of them does, and the pages give back every window in order.
    #[test]
    fn a_long_series_comes_in_pages_that_each_fit_a_message() {
        let mut report = spread_report(420);
        let whole = serde_json::to_vec(&report).unwrap().len();
        eprintln!("420 windows: {whole} bytes, {} a window", whole / 420);
        assert!(whole > MAX_MESSAGE, "{whole} bytes fit one message");
        let mut seconds = Vec::new();
        let mut pages = 0;
        loop {
            let page = page_of(&mut report, seconds.len(), PAGE_BYTES);
            let bytes = serde_json::to_vec(&page.report).unwrap().len();
            assert!(bytes < MAX_MESSAGE, "a page of {bytes} bytes");
            seconds.extend(page.report.series.iter().map(|w| w.second));
            pages += 1;
            if !page.more {
                break;
            }
        }
        assert!(pages >= 2);
        assert_eq!(seconds, (0..420).collect::<Vec<u64>>());
    }
}
