//! Running this peer's share of the cluster's test.
//!
//! The runner follows the Raft state machine. A new plan that gives this
//! peer a share starts the standalone engine on the share's rate curve at
//! the plan's wall-clock start; a later epoch of the same test splices the
//! new share into the running schedule at the epoch's start (no burst, no
//! gap); a stop interrupts it. When the engine ends, the peer keeps the
//! report for whoever asks (`start --wait` merges them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::plan::Plan;
use super::raft::ClusterState;
use super::state::Digest;
use super::status::{ClusterStatus, Liveness};
use crate::config::{self, RunArgs};
use crate::engine::{EngineConfig, LoadControl, LoadModel, RunObserver, StopSignal};
use crate::export::Report;
use crate::load::RateCurve;
use crate::load::profile::CompiledProfile;
use crate::metrics::{Aggregator, Phase, WindowReport};
use crate::task::TaskRegistry;

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
    /// A copy of its report with the series' first `skip` windows left
    /// out (they are not copied at all: a long test's series is most of a
    /// report, and clients poll every 200 ms); `Err` if the run failed.
    pub fn report_after(&mut self, skip: usize) -> Result<Report, String> {
        match self {
            PeerResult::Running(report) | PeerResult::Finished(report) => {
                let series = std::mem::take(&mut report.series);
                let mut copy = (**report).clone();
                copy.series = series.get(skip..).unwrap_or_default().to_vec();
                report.series = series;
                Ok(copy)
            }
            PeerResult::Failed(e) => Err(e.clone()),
        }
    }

    /// Whether the run is over (finished or failed).
    pub fn is_over(&self) -> bool {
        !matches!(self, Self::Running(_))
    }
}

/// This peer's results, by test id.
pub type Results = Arc<Mutex<BTreeMap<String, PeerResult>>>;

fn is_over(results: &Results, test_id: &str) -> bool {
    results.lock().get(test_id).is_some_and(PeerResult::is_over)
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

struct Running {
    test_id: String,
    epoch: u64,
    /// The definition's rate curve (origin at the test's start).
    base_curve: RateCurve,
    control: LoadControl,
    stop: StopSignal,
    /// Whether this peer last saw itself cut off from the Raft quorum.
    cut_off: bool,
}

/// How long a peer that looks cut off waits for a leader to confirm its
/// epoch before it holds its share.
pub const CONFIRM_WITHIN: Duration = Duration::from_millis(500);

/// What the runner reads to tell whether this peer is cut off.
#[derive(Clone)]
pub struct QuorumView {
    /// The peer's current view of the cluster.
    pub status: Arc<dyn Fn() -> Option<ClusterStatus> + Send + Sync>,
    /// Its Raft membership's voter ids.
    pub voters: Arc<dyn Fn() -> BTreeSet<u64> + Send + Sync>,
}

/// Whether this peer is on the minority side of a partition: gossip has
/// declared at least half of the Raft voters (`voters`, Raft ids from this
/// peer's membership config) dead (it is never dead to itself). The majority side re-splits this peer's share once it sees
/// this peer dead or fails to probe it; this side's failure detector
/// declares the others dead about as soon and stops its share, so the
/// cluster rate stays near its target instead of doubling. Suspicion alone
/// is not enough: on a loaded box peers are briefly suspect now and then,
/// and holding on it would stall load all over the cluster.
pub fn cut_off(status: &ClusterStatus, voters: &BTreeSet<u64>) -> bool {
    let members = status
        .members
        .iter()
        .map(|m| (m.info.raft_id, m.state == Liveness::Dead));
    cut_off_among(members, voters)
}

/// [`cut_off`] from each known member's Raft id and whether it is dead
/// (the simulation reads these straight from chitchat: building the whole
/// status of 1000 members on every check is what it cannot afford).
pub fn cut_off_among(members: impl Iterator<Item = (u64, bool)>, voters: &BTreeSet<u64>) -> bool {
    let (mut known, mut dead) = (0, 0);
    for (_, is_dead) in members.filter(|(id, _)| voters.contains(id)) {
        known += 1;
        dead += usize::from(is_dead);
    }
    known > 0 && dead * 2 >= known
}

/// How far behind its schedule a share may fall (a frozen process) before
/// it holds and confirms the current epoch with the leader.
pub const STALL_GUARD: Duration = Duration::from_millis(750);

/// Asks the leader for its committed plan: `Some(plan or none)` if it
/// answered.
pub type LeaderPlan = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Option<Plan>>> + Send>>
        + Send
        + Sync,
>;

/// This incarnation of a peer: its name and generation (its start, Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incarnation {
    /// The peer's name (node id).
    pub name: String,
    /// When this process started, Unix ms (chitchat's generation).
    pub generation: u64,
}

/// Follows `state` and runs this peer's (`me`) shares until the channel
/// closes. A share that stalls (the process was frozen) holds until
/// `leader_plan` confirms the epoch, so what moved to other peers meanwhile
/// is never run twice. An epoch that began before this incarnation started
/// was planned for an earlier one (the peer was restarted under its old
/// name): it is not run here; the leader re-splits it and gives this
/// incarnation a share of its own.
pub async fn run(
    me: Incarnation,
    registry: Arc<TaskRegistry>,
    mut state: watch::Receiver<ClusterState>,
    results: Results,
    activity: SharedActivity,
    leader_plan: LeaderPlan,
    view: QuorumView,
) {
    let mut running: Option<Running> = None;
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let mut cluster = state.borrow_and_update().clone();
    loop {
        follow(&me, &registry, &cluster, &mut running, &results, &activity);
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                cluster = state.borrow_and_update().clone();
            }
            _ = check.tick() => {
                if let Some(r) = running.as_mut() {
                    // Once per cut, and only if no leader confirms the
                    // epoch soon: gossip alone also looks cut on a starved
                    // box, and holding there would stall the cluster.
                    let cut = (view.status)().is_some_and(|s| cut_off(&s, &(view.voters)()));
                    if cut && !r.cut_off && !r.control.is_held() {
                        let confirmed = tokio::time::timeout(CONFIRM_WITHIN, leader_plan())
                            .await
                            .is_ok_and(|answer| answer.is_some());
                        if !confirmed {
                            tracing::warn!("cut off from the Raft quorum: holding this peer's share");
                            r.control.hold_now();
                        }
                    }
                    r.cut_off = cut;
                }
                if let Some(r) = running.as_ref().filter(|r| r.control.is_held()) {
                    match leader_plan().await {
                        // The leader's plan goes first; the local Raft
                        // state will catch up with the same epoch.
                        Some(Some(plan)) if plan.test_id == r.test_id && plan.epoch > r.epoch => {
                            tracing::info!("held share: the leader is at epoch {}", plan.epoch);
                            cluster = ClusterState { plan: Some(plan), ..cluster };
                        }
                        Some(Some(plan)) if plan.test_id == r.test_id => {
                            tracing::info!("held share released: epoch {} confirmed", r.epoch);
                            r.control.release();
                        }
                        Some(_) => {
                            tracing::info!("held share stopped: the leader runs no such test");
                            r.stop.stop_on_command();
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

fn follow(
    me: &Incarnation,
    registry: &Arc<TaskRegistry>,
    cluster: &ClusterState,
    running: &mut Option<Running>,
    results: &Results,
    activity: &SharedActivity,
) {
    if running
        .as_ref()
        .is_some_and(|r| is_over(results, &r.test_id))
    {
        *running = None;
    }
    let name = me.name.as_str();
    match (&cluster.plan, running.as_mut()) {
        (Some(plan), None)
            if plan.shares.contains_key(name)
                && plan.start_unix_ms >= me.generation
                && !results.lock().contains_key(&plan.test_id) =>
        {
            match start(name, registry, plan, results, activity) {
                Ok(r) => {
                    tracing::info!(
                        "running test {} at epoch {}: share {:.4}",
                        plan.test_id,
                        plan.epoch,
                        plan.shares[name]
                    );
                    *running = Some(r);
                }
                Err(e) => {
                    tracing::warn!("cannot run test {}: {e}", plan.test_id);
                    results
                        .lock()
                        .insert(plan.test_id.clone(), PeerResult::Failed(e));
                }
            }
        }
        (Some(plan), Some(r)) if plan.test_id == r.test_id && plan.epoch > r.epoch => {
            resplit(name, plan, r, activity);
        }
        (Some(plan), Some(r)) if plan.test_id != r.test_id => {
            r.stop.stop_on_command();
            *running = None;
        }
        (None, Some(r)) => {
            r.stop.stop_on_command();
            *running = None;
        }
        _ => {}
    }
}

fn start(
    me: &str,
    registry: &Arc<TaskRegistry>,
    plan: &super::plan::Plan,
    results: &Results,
    activity: &SharedActivity,
) -> Result<Running, String> {
    let args: RunArgs =
        serde_json::from_str(&plan.definition).map_err(|e| format!("bad test definition: {e}"))?;
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
    let share = plan.shares[me];
    // Every peer's run clock starts at the test's start, so its windows
    // are the test's seconds and merge second by second. A peer that joins
    // at a later epoch runs nothing until that epoch's start, then its
    // share of the rest of the curve.
    let offset = plan.epoch_offset_secs();
    let effective = plan
        .cluster_curve(&profile.curve)
        .map_err(|e| e.to_string())?;
    let mut curve = effective.scaled(share).map_err(|e| e.to_string())?;
    if offset > 0.0 {
        let rest = effective.after(offset).and_then(|c| c.scaled(share));
        curve = RateCurve::constant(0.0, offset)
            .and_then(|idle| idle.splice(offset, &rest?))
            .map_err(|e| e.to_string())?;
    }
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
    let runnable = registry
        .build(&settings.task)
        .map_err(|e| format!("{e:#}"))?;
    let (control, stop) = (LoadControl::new(), StopSignal::new());
    control.hold_when_behind(STALL_GUARD);
    let task = {
        let (control, stop) = (control.clone(), stop.clone());
        let (results, activity) = (Arc::clone(results), Arc::clone(activity));
        let test_id = plan.test_id.clone();
        let label = format!("running {} (epoch {})", plan.test_id, plan.epoch);
        async move {
            activity.lock().status = label;
            let mut observer = ActivityObserver {
                activity: Arc::clone(&activity),
                results: Arc::clone(&results),
                test_id: test_id.clone(),
                task: settings.task.name.clone(),
                warmup_secs,
            };
            let outcome = runnable
                .run_controlled(engine, &mut observer, stop, control)
                .await;
            let result = match outcome {
                Ok(o) => PeerResult::Finished(Box::new(Report::build(
                    &settings.task.name,
                    &o,
                    &settings.thresholds,
                    settings.reliable_lag,
                ))),
                Err(e) => PeerResult::Failed(e.to_string()),
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
    Ok(Running {
        test_id: plan.test_id.clone(),
        epoch: plan.epoch,
        base_curve: profile.curve,
        control,
        stop,
        cut_off: false,
    })
}

/// Switches the running engine to this peer's share of each epoch after
/// the one it runs, in turn from each epoch's start on: a peer that missed
/// epochs (frozen, cut off) must not jump to the latest, or it would owe
/// its old share across epochs where others carried it.
fn resplit(me: &str, plan: &super::plan::Plan, running: &mut Running, activity: &SharedActivity) {
    let cluster_curve = match plan.cluster_curve(&running.base_curve) {
        Ok(curve) => curve,
        Err(e) => return tracing::warn!("cannot follow epoch {}: {e}", plan.epoch),
    };
    let changes = plan.share_changes_after(me, running.epoch);
    if changes.first().is_some_and(|c| c.epoch > running.epoch + 1) {
        tracing::warn!(
            "epochs {}..{} are no longer kept; following from epoch {}",
            running.epoch + 1,
            changes[0].epoch,
            changes[0].epoch
        );
    }
    for change in changes {
        let tail = cluster_curve
            .after(change.at_secs)
            .and_then(|rest| rest.scaled(change.share));
        match tail {
            Ok(tail) => {
                tracing::info!(
                    "following epoch {}: share {:.4}",
                    change.epoch,
                    change.share
                );
                running.control.update(change.at_secs, tail);
                running.epoch = change.epoch;
            }
            Err(e) => return tracing::warn!("cannot follow epoch {}: {e}", change.epoch),
        }
    }
    activity.lock().status = format!("running {} (epoch {})", plan.test_id, plan.epoch);
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
    use crate::cluster::status::fixtures::{member, status};

    #[test]
    fn only_a_side_without_a_majority_of_voters_is_cut_off() {
        use Liveness::*;
        let three = BTreeSet::from([1, 2, 3]);
        let alone = status(vec![
            member("a", 1, Alive),
            member("b", 2, Dead),
            member("c", 3, Dead),
            member("d", 4, Alive),
        ]);
        assert!(cut_off(&alone, &three), "1 of 3 voters alive");
        let slow = status(vec![
            member("a", 1, Alive),
            member("b", 2, Suspect),
            member("c", 3, Suspect),
        ]);
        assert!(
            !cut_off(&slow, &three),
            "suspicion alone does not hold the share"
        );
        let majority = status(vec![
            member("a", 1, Alive),
            member("b", 2, Dead),
            member("c", 3, Alive),
        ]);
        assert!(!cut_off(&majority, &three), "the leader died: 2 of 3 agree");
        // Two live peers keep one voter; the dead former voters gossip
        // stale roles but are out of the Raft membership.
        let shrunk = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Dead),
            member("d", 4, Dead),
        ]);
        assert!(!cut_off(&shrunk, &BTreeSet::from([1])));
        let even = status(vec![member("a", 1, Alive), member("b", 2, Dead)]);
        assert!(
            cut_off(&even, &BTreeSet::from([1, 2])),
            "half is no majority"
        );
        assert!(!cut_off(&alone, &BTreeSet::new()), "no Raft voters yet");
    }
}
