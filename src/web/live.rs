//! What the web API pushes to browsers: every second, a [`LiveFrame`] with
//! this node's picture of the cluster and, while a test runs, its exact
//! merged figures and the cluster's seconds closed since the last frame.
//!
//! One watcher task per serving node follows every test the replicated
//! state shows (whoever started it) with a [`Follow`], the same code
//! `start --wait` uses; when a test is over its merged report joins this
//! node's recent results. Browsers subscribe to the frames; a browser that
//! falls behind gets a fresh snapshot instead of the frames it missed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::cluster::run::control::Controller;
use crate::cluster::run::figures::TestFigures;
use crate::cluster::run::follow::{Follow, Followed, origin_of};
use crate::cluster::status::{ClusterStatus, TestPhase, TestStatus};
use crate::cluster::wall::unix_now_ms;
use crate::export::Report;
use crate::load::{RateCurve, RatePoint};
use crate::metrics::WindowReport;

/// How often frames are sent.
pub const FRAME_INTERVAL: Duration = Duration::from_secs(1);
/// Finished tests whose reports a node keeps (run history that outlives
/// the process is the orchestrator's).
pub const KEPT_RESULTS: usize = 20;
/// Frames a subscriber may fall behind before it is sent a snapshot.
const FRAME_BACKLOG: usize = 16;
/// Most corners of the rate curve a frame carries.
const DRAWN_CORNERS: usize = 1_000;
/// Most seconds kept for snapshots (4 hours); older ones are folded.
const KEPT_POINTS: usize = 14_400;
/// Tests followed to their end (or given up on) that are not followed
/// again while their plan lingers in the state.
const REMEMBERED: usize = 64;

/// Three percentiles of one second, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One second of a test, the whole cluster's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LivePoint {
    /// Second of the test (from its start, warmup included).
    pub second: u64,
    /// The planned rate over that second.
    pub target: f64,
    /// Completed executions per second.
    pub achieved: f64,
    /// Arrivals sent.
    pub dispatched: u64,
    /// Arrivals dropped at the in-flight limit.
    pub dropped: u64,
    /// Arrivals missed (the generator was too late for them).
    pub missed: u64,
    /// Failed executions.
    pub failure: u64,
    /// Latency from the intended start.
    pub latency: Quantiles,
    /// Service time from the actual start.
    pub service: Quantiles,
}

impl LivePoint {
    fn of(window: &WindowReport, curve: Option<&RateCurve>) -> Self {
        let from = window.second as f64;
        let length = window.duration_s.max(1e-9);
        let q = |s: &crate::metrics::LatencySummary| Quantiles {
            p50: s.p50_us,
            p90: s.p90_us,
            p99: s.p99_us,
        };
        Self {
            second: window.second,
            target: curve.map_or(0.0, |c| c.count_between(from, from + length) / length),
            achieved: window.rate,
            dispatched: window.dispatched,
            dropped: window.dropped,
            missed: window.missed,
            failure: window.failure,
            latency: q(&window.latency),
            service: q(&window.service),
        }
    }
}

/// The running (or just finished) test in a frame.
#[derive(Debug, Clone, Serialize)]
pub struct LiveTest {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub phase: TestPhase,
    /// The current epoch.
    pub epoch: u64,
    /// Seconds since its start (negative before it).
    pub elapsed_secs: f64,
    /// Length of its rate curve, seconds.
    pub duration_secs: f64,
    /// The cluster's target rate now.
    pub target_rate: f64,
    /// The corners of the cluster's rate curve, rate updates applied.
    pub curve: Vec<RatePoint>,
    /// Each peer's fraction of the rate in the current epoch.
    pub shares: BTreeMap<String, f64>,
    /// The exact merged figures so far (as `status` shows them).
    pub totals: Option<TestFigures>,
    /// Seconds closed since the previous frame (every one in a snapshot).
    pub points: Vec<LivePoint>,
    /// Re-splits, lost and rejoined peers.
    pub events: Vec<String>,
}

/// One push to the browsers.
#[derive(Debug, Clone, Serialize)]
pub struct LiveFrame {
    /// Grows by one each frame.
    pub seq: u64,
    /// Whether `test.points` holds the whole test so far.
    pub snapshot: bool,
    /// This node's picture of the cluster.
    pub cluster: Arc<ClusterStatus>,
    /// The test being followed, if any.
    pub test: Option<LiveTest>,
    /// Results this node holds, newest first.
    pub results: Vec<ResultSummary>,
}

/// A line of the results list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultSummary {
    /// Test id.
    pub id: String,
    /// RFC 3339 start.
    pub started_at: String,
    /// How it ended.
    pub outcome: crate::export::Outcome,
    /// Executions completed in the measured phase.
    pub completed: u64,
    /// Of which failed.
    pub failure: u64,
    /// Latency p99, µs.
    pub p99_us: f64,
    /// Whether every threshold passed.
    pub thresholds_passed: bool,
}

/// A finished test's merged report.
#[derive(Debug, Clone)]
pub struct FinishedTest {
    /// Test id.
    pub id: String,
    /// Its merged report.
    pub report: Arc<Report>,
    /// The cluster's mean target rate over the measured phase.
    pub target_rate: Option<f64>,
}

impl FinishedTest {
    fn summary(&self) -> ResultSummary {
        let r = &self.report;
        ResultSummary {
            id: self.id.clone(),
            started_at: r.started_at.clone(),
            outcome: r.outcome,
            completed: r.main.completed,
            failure: r.main.failure,
            p99_us: r.main.latency.p99_us,
            thresholds_passed: r.thresholds_passed(),
        }
    }
}

/// What the watcher shares with the API.
#[derive(Default)]
struct Shared {
    /// The last frame, its points left out.
    last: Option<Arc<LiveFrame>>,
    /// Every closed second of the test followed.
    points: Vec<LivePoint>,
    /// Finished tests, newest first.
    results: VecDeque<FinishedTest>,
}

/// The live figures and recent results of a serving node.
pub struct Live {
    shared: Mutex<Shared>,
    frames: broadcast::Sender<Arc<LiveFrame>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            shared: Mutex::default(),
            frames: broadcast::channel(FRAME_BACKLOG).0,
        }
    }
}

impl Live {
    /// Frames from now on, and a snapshot to begin with.
    pub fn subscribe(&self) -> (Option<LiveFrame>, broadcast::Receiver<Arc<LiveFrame>>) {
        let receiver = self.frames.subscribe();
        (self.snapshot(), receiver)
    }

    /// The last frame with every point of its test.
    pub fn snapshot(&self) -> Option<LiveFrame> {
        let shared = self.shared.lock();
        let mut frame = (**shared.last.as_ref()?).clone();
        frame.snapshot = true;
        if let Some(test) = &mut frame.test {
            test.points = shared.points.clone();
        }
        Some(frame)
    }

    /// The finished test `id`, if this node holds it.
    pub fn result(&self, id: &str) -> Option<FinishedTest> {
        let shared = self.shared.lock();
        shared.results.iter().find(|r| r.id == id).cloned()
    }

    /// The results this node holds, newest first.
    pub fn results(&self) -> Vec<ResultSummary> {
        let shared = self.shared.lock();
        shared.results.iter().map(FinishedTest::summary).collect()
    }

    /// Forgets the finished test `id`; whether it was held.
    pub fn delete(&self, id: &str) -> bool {
        let mut shared = self.shared.lock();
        let before = shared.results.len();
        shared.results.retain(|r| r.id != id);
        shared.results.len() != before
    }

    fn keep(&self, finished: FinishedTest) {
        let mut shared = self.shared.lock();
        shared.results.retain(|r| r.id != finished.id);
        shared.results.push_front(finished);
        shared.results.truncate(KEPT_RESULTS);
    }

    fn publish(&self, mut frame: LiveFrame, new_points: &[LivePoint], new_test: bool) {
        let frame = {
            let mut shared = self.shared.lock();
            if new_test {
                shared.points.clear();
            }
            shared.points.extend_from_slice(new_points);
            fold_oldest(&mut shared.points);
            frame.results = shared.results.iter().map(FinishedTest::summary).collect();
            let frame = Arc::new(frame);
            let mut kept = (*frame).clone();
            if let Some(test) = &mut kept.test {
                test.points.clear();
            }
            shared.last = Some(Arc::new(kept));
            frame
        };
        // Nobody listening is fine.
        let _ = self.frames.send(frame);
    }
}

/// A test the watcher follows.
struct Watched {
    follow: Follow,
    /// The next second to merge.
    next_second: u64,
}

/// Follows the cluster's tests and publishes a frame every
/// [`FRAME_INTERVAL`] until the runtime stops.
pub async fn watch(
    live: Arc<Live>,
    controller: Arc<Controller>,
    status: watch::Receiver<Arc<ClusterStatus>>,
) {
    let mut following: Vec<Watched> = Vec::new();
    // Tests followed to their end: never followed again (a deleted
    // result's plan may linger in the state a moment).
    let mut done: VecDeque<String> = VecDeque::new();
    let mut shown: Option<String> = None;
    // The last test stays on show, its points kept, until another starts.
    let mut last_test: Option<LiveTest> = None;
    let mut seq = 0;
    let mut tick = tokio::time::interval(FRAME_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cluster = status.borrow().clone();
        let mut started = false;
        if let Some(plan) = controller.machine.state().plan
            && !following.iter().any(|f| f.follow.test_id() == plan.test_id)
            && !done.contains(&plan.test_id)
        {
            let peers = cluster
                .members
                .iter()
                .map(|m| (m.id.clone(), m.address))
                .collect();
            match Follow::new(&plan, peers, origin_of(plan.test_start_unix_ms)) {
                Ok(follow) => {
                    started = true;
                    following.push(Watched {
                        follow,
                        next_second: 0,
                    });
                }
                Err(e) => {
                    tracing::warn!("cannot follow test {}: {e}", plan.test_id);
                    remember(&mut done, plan.test_id.clone());
                }
            }
        }
        for followed in &mut following {
            let over = cluster.test.as_ref().is_some_and(|t| {
                t.id == followed.follow.test_id()
                    && matches!(t.phase, TestPhase::Completed | TestPhase::Stopped)
            });
            if over {
                followed.follow.closed();
            }
            followed.follow.poll(controller.as_ref()).await;
        }
        // The newest test is the one shown.
        let mut frame_test = None;
        let mut new_points = Vec::new();
        if let Some(current) = following.last_mut() {
            let (test, points) = live_test(current, &cluster);
            frame_test = Some(test);
            new_points = points;
        } else if let Some(last) = &mut last_test {
            if let Some(now) = cluster.test.as_ref().filter(|t| t.id == last.id) {
                last.phase = now.phase;
            }
            last.target_rate = 0.0;
            frame_test = Some(last.clone());
        }
        last_test = frame_test.clone().map(|mut t| {
            t.points.clear();
            t
        });
        let new_test = started || frame_test.as_ref().map(|t: &LiveTest| &t.id) != shown.as_ref();
        shown = frame_test.as_ref().map(|t| t.id.clone());
        let mut still = Vec::new();
        for followed in following.drain(..) {
            if followed.follow.is_done() || followed.follow.overdue().is_some() {
                let id = followed.follow.test_id().to_owned();
                remember(&mut done, id.clone());
                match followed.follow.finish() {
                    Ok(done) => live.keep(finished(id, done)),
                    Err(e) => tracing::warn!("test {id}: {e}"),
                }
            } else {
                still.push(followed);
            }
        }
        following = still;
        seq += 1;
        let frame = LiveFrame {
            seq,
            snapshot: false,
            cluster,
            test: frame_test,
            results: Vec::new(),
        };
        live.publish(frame, &new_points, new_test);
    }
}

fn remember(done: &mut VecDeque<String>, id: String) {
    done.push_back(id);
    if done.len() > REMEMBERED {
        done.pop_front();
    }
}

fn finished(id: String, done: Followed) -> FinishedTest {
    FinishedTest {
        id,
        report: Arc::new(done.report),
        target_rate: done.target_rate,
    }
}

/// Corners of `curve` enough to draw it: all of them up to
/// [`DRAWN_CORNERS`], else the rate at that many even instants (a frame a
/// second to every browser must stay small whatever the pattern).
fn drawn_curve(curve: &RateCurve) -> Vec<RatePoint> {
    let corners = curve.points();
    if corners.len() <= DRAWN_CORNERS {
        return corners.to_vec();
    }
    let length = curve.duration();
    (0..DRAWN_CORNERS)
        .map(|i| {
            let at = length * i as f64 / (DRAWN_CORNERS - 1) as f64;
            RatePoint {
                at,
                rate: curve.rate_at(at),
            }
        })
        .collect()
}

/// Folds the older half of `points` in pairs once there are more than
/// [`KEPT_POINTS`]: counts add, rates average, percentiles keep the higher
/// (a slow second stays visible).
fn fold_oldest(points: &mut Vec<LivePoint>) {
    if points.len() <= KEPT_POINTS {
        return;
    }
    let half = points.len() / 2;
    let folded: Vec<LivePoint> = points[..half]
        .chunks(2)
        .map(|pair| {
            let (a, b) = (&pair[0], pair.last().unwrap_or(&pair[0]));
            let worse = |x: &Quantiles, y: &Quantiles| Quantiles {
                p50: x.p50.max(y.p50),
                p90: x.p90.max(y.p90),
                p99: x.p99.max(y.p99),
            };
            LivePoint {
                second: a.second,
                target: (a.target + b.target) / 2.0,
                achieved: (a.achieved + b.achieved) / 2.0,
                dispatched: a.dispatched + b.dispatched,
                dropped: a.dropped + b.dropped,
                missed: a.missed + b.missed,
                failure: a.failure + b.failure,
                latency: worse(&a.latency, &b.latency),
                service: worse(&a.service, &b.service),
            }
        })
        .collect();
    points.splice(..half, folded);
}

/// The frame's view of `current`, and its newly closed seconds.
fn live_test(current: &mut Watched, cluster: &ClusterStatus) -> (LiveTest, Vec<LivePoint>) {
    let follow = &mut current.follow;
    // What the frame needs of the plan (not a copy of its definition).
    let (test_id, epoch, start_ms, shares, events) = {
        let plan = follow.plan();
        (
            plan.test_id.clone(),
            plan.epoch,
            plan.test_start_unix_ms,
            Arc::clone(&plan.shares),
            plan.epoch_events(),
        )
    };
    let curve = follow.cluster_curve();
    let elapsed_secs = (unix_now_ms() as f64 - start_ms as f64) / 1_000.0;
    let points: Vec<LivePoint> = follow
        .closed_from(current.next_second)
        .iter()
        .map(|w| LivePoint::of(w, curve.as_ref()))
        .collect();
    if let Some(last) = points.last() {
        current.next_second = last.second + 1;
    }
    let holders: Vec<String> = shares.keys().cloned().collect();
    let totals = TestFigures::merge(&test_id, follow.summaries(), &holders).ok();
    let phase = match cluster.test.as_ref().filter(|t| t.id == test_id) {
        Some(TestStatus { phase, .. }) => *phase,
        // The plan is gone from the state: the test is over (its last
        // reports may still be on their way).
        None => TestPhase::Stopping,
    };
    let test = LiveTest {
        id: test_id,
        phase,
        epoch,
        elapsed_secs,
        duration_secs: curve.as_ref().map_or(0.0, RateCurve::duration),
        target_rate: curve.as_ref().map_or(0.0, |c| {
            if phase != TestPhase::Running || elapsed_secs < 0.0 || elapsed_secs > c.duration() {
                0.0
            } else {
                c.rate_at(elapsed_secs)
            }
        }),
        curve: curve.as_ref().map(drawn_curve).unwrap_or_default(),
        shares: shares.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        totals,
        points: points.clone(),
        events,
    };
    (test, points)
}
