//! Running this peer's share of the cluster's test.
//!
//! The runner follows the Raft state machine. A new plan that gives this
//! peer a share starts it (a [`Share`], on the standalone engine) on the
//! share's rate curve at the plan's wall-clock start; a later epoch of the
//! same test splices the new share into the running schedule at the
//! epoch's start (no burst, no gap); a stop interrupts it. A share that
//! stalls (the process was frozen) or finds this peer cut off from the
//! quorum holds until the leader confirms its epoch. The simulation drives
//! this same loop, with its own [`ShareEngine`] and [`Quorum`].

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::cluster::consensus::ClusterState;
use crate::cluster::run::plan::Plan;
use crate::cluster::run::share::{Share, ShareEngine};
use crate::cluster::status::{ClusterStatus, Liveness};
use crate::load::RateCurve;

pub use crate::cluster::run::share::STALL_GUARD;

/// How long a peer that looks cut off waits for a leader to confirm its
/// epoch before it holds its share.
pub const CONFIRM_WITHIN: Duration = Duration::from_millis(500);
/// How often the runner checks whether its share holds or is cut off.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What the runner asks of the cluster around it.
pub trait Quorum: Send + Sync {
    /// Whether this peer is cut off from the Raft quorum (see [`cut_off`]).
    fn cut_off(&self) -> BoxFuture<'_, bool>;
    /// The plan the leader has committed, asked through this peer and
    /// confirmed by a quorum: `Some(plan or none)` if a leader answered.
    fn leader_plan(&self) -> BoxFuture<'_, Option<Option<Plan>>>;
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

/// This incarnation of a peer: its name and generation (its start, Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incarnation {
    /// The peer's name (node id).
    pub name: String,
    /// When this process started, Unix ms (chitchat's generation).
    pub generation: u64,
}

/// The share this incarnation runs.
struct Running {
    test_id: String,
    epoch: u64,
    share: Box<dyn Share>,
    /// Whether this peer last saw itself cut off from the Raft quorum.
    cut_off: bool,
    /// Whether an epoch handed its share over (it is leaving): its run
    /// ends at that epoch's start, and no later epoch concerns it.
    departed: bool,
}

/// Follows `state` and runs this incarnation's shares, started by
/// `engine`, until the channel closes. A share that holds (stalled, or cut
/// off with no leader confirming its epoch within [`CONFIRM_WITHIN`]) asks
/// the leader through `quorum` until it confirms the epoch, so what moved
/// to other peers meanwhile is never run twice. An epoch that began before
/// this incarnation started was planned for an earlier one (the peer was
/// restarted under its old name): it is not run here; the leader re-splits
/// it and gives this incarnation a share of its own.
pub async fn run(
    me: Incarnation,
    engine: Arc<dyn ShareEngine>,
    mut state: watch::Receiver<ClusterState>,
    quorum: Arc<dyn Quorum>,
) {
    let mut running: Option<Running> = None;
    let mut started: HashSet<String> = HashSet::new();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cluster = state.borrow_and_update().clone();
    loop {
        follow(&me, engine.as_ref(), &cluster, &mut running, &mut started);
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                cluster = state.borrow_and_update().clone();
            }
            _ = check.tick() => {
                if let Some(r) = running.as_mut()
                    && let Some(plan) = check_share(r, quorum.as_ref()).await
                {
                    cluster = ClusterState {
                        plan: Some(plan),
                        ..cluster
                    };
                }
            }
        }
    }
}

/// The runner's periodic check of its share: hold it if this peer is
/// newly cut off and no leader confirms its epoch soon; while it holds,
/// ask the leader, and release it, stop it, or return the leader's newer
/// plan to follow.
async fn check_share(r: &mut Running, quorum: &dyn Quorum) -> Option<Plan> {
    // Once per cut, and only if no leader confirms the epoch soon: gossip
    // alone also looks cut on a starved box, and holding there would stall
    // the cluster.
    let cut = quorum.cut_off().await;
    if cut && !r.cut_off && !r.share.is_held() {
        let confirmed = tokio::time::timeout(CONFIRM_WITHIN, quorum.leader_plan())
            .await
            .is_ok_and(|answer| answer.is_some());
        if !confirmed {
            tracing::warn!("cut off from the Raft quorum: holding this peer's share");
            r.share.hold_now();
        }
    }
    r.cut_off = cut;
    if !r.share.is_held() {
        return None;
    }
    match quorum.leader_plan().await {
        // The leader's plan goes first; the local Raft state will catch up
        // with the same epoch.
        Some(Some(plan)) if plan.test_id == r.test_id && plan.epoch > r.epoch => {
            tracing::info!("held share: the leader is at epoch {}", plan.epoch);
            Some(plan)
        }
        Some(Some(plan)) if plan.test_id == r.test_id => {
            tracing::info!("held share released: epoch {} confirmed", r.epoch);
            r.share.release();
            None
        }
        Some(_) => {
            tracing::info!("held share stopped: the leader runs no such test");
            r.share.stop();
            None
        }
        None => None,
    }
}

fn follow(
    me: &Incarnation,
    engine: &dyn ShareEngine,
    cluster: &ClusterState,
    running: &mut Option<Running>,
    started: &mut HashSet<String>,
) {
    if running.as_ref().is_some_and(|r| r.share.is_over()) {
        *running = None;
    }
    let name = me.name.as_str();
    match (&cluster.plan, running.as_mut()) {
        (Some(plan), None)
            if plan.shares.contains_key(name)
                && plan.start_unix_ms >= me.generation
                && !started.contains(&plan.test_id) =>
        {
            started.insert(plan.test_id.clone());
            let started = match share_curve(plan, name) {
                Ok(curve) => engine.start(plan, curve),
                Err(e) => {
                    engine.refuse(plan, e.clone());
                    Err(e)
                }
            };
            match started {
                Ok(share) => {
                    tracing::info!(
                        "running test {} at epoch {}: share {:.4}",
                        plan.test_id,
                        plan.epoch,
                        plan.shares[name]
                    );
                    *running = Some(Running {
                        test_id: plan.test_id.clone(),
                        epoch: plan.epoch,
                        share,
                        cut_off: false,
                        departed: false,
                    });
                }
                Err(e) => tracing::warn!("cannot run test {}: {e}", plan.test_id),
            }
        }
        (Some(plan), Some(r))
            if plan.test_id == r.test_id && plan.epoch > r.epoch && !r.departed =>
        {
            resplit(name, plan, r);
        }
        (Some(plan), Some(r)) if plan.test_id != r.test_id => {
            r.share.stop();
            *running = None;
        }
        (None, Some(r)) => {
            r.share.stop();
            *running = None;
        }
        _ => {}
    }
}

/// `me`'s share of `plan` on a run clock whose origin is the test's start:
/// a peer that joins at a later epoch runs nothing until that epoch's
/// start, then its share of the rest of the curve.
fn share_curve(plan: &Plan, me: &str) -> Result<RateCurve, String> {
    let share = plan.shares[me];
    let offset = plan.epoch_offset_secs();
    let effective = plan
        .base_curve()
        .and_then(|base| plan.cluster_curve(&base))
        .map_err(|e| e.to_string())?;
    let curve = effective.scaled(share).map_err(|e| e.to_string())?;
    if offset <= 0.0 {
        return Ok(curve);
    }
    let rest = effective.after(offset).and_then(|c| c.scaled(share));
    RateCurve::constant(0.0, offset)
        .and_then(|idle| idle.splice(offset, &rest?))
        .map_err(|e| e.to_string())
}

/// Switches the running share to this peer's share of each epoch after
/// the one it runs, in turn from each epoch's start on: a peer that missed
/// epochs (frozen, cut off) must not jump to the latest, or it would owe
/// its old share across epochs where others carried it. An epoch that
/// names this peer departed (it is leaving) ends its run at its start.
fn resplit(me: &str, plan: &Plan, running: &mut Running) {
    let cluster_curve = match plan.base_curve().and_then(|b| plan.cluster_curve(&b)) {
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
        if change.share == 0.0 && plan.departed_at(me, change.epoch) {
            // This peer left: its run ends where the epoch that handed its
            // share to the others starts, and no later epoch may give it
            // a curve again (even one at rate zero would keep it running).
            tracing::info!("leaving: the run ends at epoch {}", change.epoch);
            // Zero seconds at rate zero: a valid curve, which ends there.
            let Ok(ended) = RateCurve::constant(0.0, 0.0) else {
                return;
            };
            running.share.follow(plan, &change, ended);
            running.epoch = change.epoch;
            running.departed = true;
            return;
        }
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
                running.share.follow(plan, &change, tail);
                running.epoch = change.epoch;
            }
            Err(e) => return tracing::warn!("cannot follow epoch {}: {e}", change.epoch),
        }
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
