//! Keeping Raft's membership in step with gossip's.
//!
//! Gossip says who is alive; Raft needs a small, stable set of voters. Each
//! peer (and each simulated one) runs [`Coordination::run`]; its decisions
//! come from the pure [`decide`]:
//!
//! - **Bootstrap.** While no live peer belongs to a Raft cluster, the peer
//!   with the smallest Raft id initialises one with itself once the
//!   membership it sees has been stable for [`settle_time`]; if some live
//!   peers were given no seed but themselves (founders), the smallest of
//!   those. Others wait to be added; a peer given seeds never founds a
//!   cluster alone, however long it waits for them. (Two sides of a partition that both
//!   start empty could each bootstrap; seeds make that unlikely, and it is
//!   documented.)
//! - **Leader duties.** Live peers missing from Raft are added as learners,
//!   all of them in one membership change (a change lists every member, so
//!   adding n peers one by one would write n entries of up to n nodes);
//!   peers gossip declares dead (or forgot) are removed; voters are kept at
//!   5, 3 or 1 (the largest that fits the peers present), existing voters
//!   first, then live learners by id, the leader always included unless
//!   it is leaving. A leaving member gets no seat (a leaving leader seats
//!   others and steps down) and stays a learner until gossip declares it
//!   gone, so it still applies the epoch that hands its share over. A voter
//!   only suspected (silent for a moment, say on a starved box) keeps its
//!   seat until gossip declares it dead: replacing voters on every
//!   suspicion churns the voter set, and a false suspicion followed by the
//!   leader's death could leave too few caught-up voters for a quorum.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use openraft::BasicNode;
use openraft::ChangeMembers;
// Tokio's clock (the same as std's unless paused, as the simulation does).
use tokio::time::Instant;

use std::sync::Arc;

use chitchat::Chitchat;

use crate::cluster::consensus::Raft;
use crate::cluster::consensus::store::StateMachine;
use crate::cluster::membership::gossip_changed;
use crate::cluster::membership::state::{RAFT_CLUSTER, RAFT_ROLE, RaftRole};
use crate::cluster::status::{ClusterStatus, Liveness, StatusSource};

/// The least time the live set must stay unchanged before a bootstrap.
pub const SETTLE: Duration = Duration::from_secs(1);
/// ... and in gossip intervals: with slow gossip a partial view can stay
/// unchanged for a second, and two peers that each saw themselves as the
/// smallest id bootstrapped two clusters (found by the simulation at 1000
/// peers with 1 s gossip).
pub const SETTLE_INTERVALS: u32 = 8;

/// How long the live set must stay unchanged before a bootstrap, for a
/// peer gossiping every `gossip_interval`.
pub fn settle_time(gossip_interval: Duration) -> Duration {
    SETTLE.max(gossip_interval * SETTLE_INTERVALS)
}
/// How often the coordinator looks.
pub const TICK: Duration = Duration::from_millis(300);

/// What gossip says, in Raft ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// This peer's Raft id.
    pub me: u64,
    /// Alive peers (this one included) and their endpoint addresses.
    pub alive: BTreeMap<u64, SocketAddr>,
    /// Peers that are alive or only suspect: not to be removed.
    pub present: BTreeSet<u64>,
    /// Whether another live peer already belongs to a Raft cluster.
    pub others_in_raft: bool,
    /// Live peers (this one included) that were given no seed but
    /// themselves: when there are any, one of them founds the cluster.
    pub founders: BTreeSet<u64>,
    /// Live peers that belong to another Raft cluster (formed apart, in a
    /// partition at bootstrap), or to one not gossiped yet: never added,
    /// since openraft cannot take a member of another cluster.
    pub foreign: BTreeSet<u64>,
    /// Members that never vote (orchestrators): learners for good, so
    /// they hold the plan, but never counted for or given a voter's seat,
    /// and never founders.
    pub observers: BTreeSet<u64>,
    /// Members that announced they are leaving (this peer too, if it
    /// is): given no seat, and removed, before they go.
    pub leaving: BTreeSet<u64>,
}

/// What this peer's Raft says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftView {
    /// Whether it belongs to a cluster (has any voter configured).
    pub initialized: bool,
    /// Whether it leads.
    pub is_leader: bool,
    /// Current voters.
    pub voters: BTreeSet<u64>,
    /// Current learners.
    pub learners: BTreeSet<u64>,
}

/// One step to take.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a cluster with this peer as its only voter.
    Initialize,
    /// Add these live peers as learners, in one membership change.
    AddLearners(BTreeMap<u64, SocketAddr>),
    /// Make exactly these the voters (demoted ones stay learners).
    SetVoters(BTreeSet<u64>),
    /// Drop these from the membership entirely.
    Remove(BTreeSet<u64>),
}

/// Voters wanted for `alive` live peers.
pub fn voter_target(alive: usize) -> usize {
    match alive {
        0..=2 => 1,
        3 | 4 => 3,
        _ => 5,
    }
}

/// The actions that bring Raft's membership in line with gossip.
pub fn decide(observed: &Observed, raft: &RaftView, settled: bool) -> Vec<Action> {
    if !raft.initialized {
        // A peer pointed at seeds waits for them when it can see one that
        // was not: two peers starting together may not yet see each other
        // both ways, and the one that was told of the other must not found
        // a second cluster meanwhile.
        let may_found = |id: &&u64| !observed.observers.contains(id);
        let founders: Vec<u64> = observed
            .founders
            .iter()
            .filter(may_found)
            .copied()
            .collect();
        let candidates: Vec<u64> = if founders.is_empty() {
            observed.alive.keys().filter(may_found).copied().collect()
        } else {
            founders
        };
        let smallest = candidates.first() == Some(&observed.me);
        // A peer pointed at seeds that sees no one yet waits for them: on a
        // loaded box the first exchange with a seed can take longer than
        // the settle time, and founding a cluster alone then left the seed
        // and this peer in two clusters for good.
        // An orchestrator seen counts as a seed reached (a lone peer may be
        // pointed at one): through it gossip shows every other member
        // within the settle time, so a second founder is seen before this
        // one initialises.
        let waits_for_seeds =
            observed.alive.len() <= 1 && !observed.founders.contains(&observed.me);
        return if settled && smallest && !observed.others_in_raft && !waits_for_seeds {
            vec![Action::Initialize]
        } else {
            Vec::new()
        };
    }
    if !raft.is_leader {
        return Vec::new();
    }
    let members: BTreeSet<u64> = raft.voters.union(&raft.learners).copied().collect();
    let mut actions = Vec::new();
    let newcomers: BTreeMap<u64, SocketAddr> = observed
        .alive
        .iter()
        .filter(|(id, _)| !members.contains(id) && !observed.foreign.contains(id))
        .filter(|(id, _)| !observed.leaving.contains(id))
        .map(|(id, addr)| (*id, *addr))
        .collect();
    if !newcomers.is_empty() {
        actions.push(Action::AddLearners(newcomers));
    }
    let may_vote = |id: &&u64| !observed.observers.contains(id) && !observed.leaving.contains(id);
    let target = voter_target(observed.present.iter().filter(may_vote).count());
    // A leaving leader seats others and steps down once that is committed
    // (openraft's way); the last peer keeps its own seat.
    let mut voters: BTreeSet<u64> = BTreeSet::new();
    if may_vote(&&observed.me) {
        voters.insert(observed.me);
    }
    let seated = raft
        .voters
        .iter()
        .filter(|id| observed.present.contains(id))
        .filter(may_vote);
    let promotable = raft
        .learners
        .iter()
        .filter(|id| observed.alive.contains_key(id))
        .filter(may_vote);
    let candidates = seated.chain(promotable);
    for id in candidates {
        if voters.len() >= target {
            break;
        }
        voters.insert(*id);
    }
    if voters.is_empty() {
        voters.insert(observed.me);
    }
    if voters != raft.voters {
        actions.push(Action::SetVoters(voters.clone()));
    }
    // A leaving member only loses its seat: removed from the membership,
    // it would no longer be sent the epoch that hands its share over
    // (openraft stops replicating to it as soon as the change is
    // appended). It goes once gossip declares it dead, after it exited.
    let gone: BTreeSet<u64> = members
        .difference(&observed.present)
        .filter(|id| !voters.contains(id))
        .copied()
        .collect();
    if !gone.is_empty() {
        actions.push(Action::Remove(gone));
    }
    actions
}

/// What gossip's picture `status` says, in Raft ids, for peer `me`
/// reachable at `my_addr` (always counted alive and present).
pub fn observed(status: &ClusterStatus, me: u64, my_addr: SocketAddr) -> Observed {
    let mut observed = Observed {
        me,
        ..Observed::default()
    };
    let my_cluster = status
        .members
        .iter()
        .find(|m| m.info.raft_id == me)
        .map_or(0, |m| m.info.raft_cluster);
    for m in &status.members {
        let addr = m.address;
        if m.info.raft_id == 0 {
            continue;
        }
        if !m.info.role.takes_load() {
            observed.observers.insert(m.info.raft_id);
        }
        if m.state == Liveness::Alive {
            observed.alive.insert(m.info.raft_id, addr);
            if m.info.founder {
                observed.founders.insert(m.info.raft_id);
            }
            let in_raft = m.info.raft_role.is_member();
            if m.info.raft_id != me && in_raft {
                observed.others_in_raft = true;
                let cluster = m.info.raft_cluster;
                if cluster != my_cluster || cluster == 0 {
                    observed.foreign.insert(m.info.raft_id);
                }
            }
        }
        if m.state != Liveness::Dead {
            observed.present.insert(m.info.raft_id);
        }
        if m.info.leaving {
            observed.leaving.insert(m.info.raft_id);
        }
    }
    observed.alive.insert(me, my_addr);
    observed.present.insert(me);
    observed
}

/// One coordinator tick for peer `me`: reads gossip's `status` and Raft,
/// carries out what [`decide`] says, and returns the Raft role to gossip
/// (under [`crate::cluster::membership::state::RAFT_ROLE`]).
pub async fn tick_once(
    status: &ClusterStatus,
    raft: &Raft,
    me: u64,
    my_addr: SocketAddr,
    settling: &mut Settling,
) -> RaftRole {
    let observed = observed(status, me, my_addr);
    let my_cluster = status
        .members
        .iter()
        .find(|m| m.info.raft_id == me)
        .map_or(0, |m| m.info.raft_cluster);
    for id in observed.foreign.difference(&settling.foreign_seen) {
        // A cluster not gossiped yet (0) is a moment of start-up, not news.
        if let Some(m) = status
            .members
            .iter()
            .find(|m| m.info.raft_id == *id && m.info.raft_cluster != 0 && my_cluster != 0)
        {
            tracing::warn!(
                "peer {} is in Raft cluster {} and this one is in {my_cluster}: not adding it \
                 (two clusters formed apart, in a partition at bootstrap; restart the peers of \
                 the smaller one)",
                m.id,
                m.info.raft_cluster,
            );
        }
    }
    settling.foreign_seen = observed.foreign.clone();
    let settled = settling.observe(observed.alive.keys().copied().collect());
    let actions = decide(&observed, &view(raft, me), settled);
    apply(raft, me, my_addr, actions).await;
    role(&view(raft, me), me)
}

/// What the coordinator loop works with.
pub struct Coordination {
    /// This peer's Raft handle.
    pub raft: Raft,
    /// Its Raft id.
    pub me: u64,
    /// Its endpoint address, as others reach it.
    pub address: SocketAddr,
    /// Its applied Raft state (for the Raft cluster's identity).
    pub machine: StateMachine,
    /// Its gossip, where it publishes its Raft role and cluster.
    pub chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    /// Its picture of the cluster.
    pub status: Arc<dyn StatusSource>,
    /// How long the live set must stay unchanged before a bootstrap.
    pub settle: Duration,
}

impl Coordination {
    /// Every [`TICK`]: keeps Raft's membership in step with gossip and
    /// gossips this peer's Raft role and Raft cluster. An initialised
    /// follower decides nothing ([`decide`] has no action for it), so its
    /// tick builds no picture of the cluster (at 1000 simulated peers that
    /// picture is the costliest thing a tick does).
    pub async fn run(self) {
        let mut settling = Settling::new(self.settle);
        let mut gossiped_role = RaftRole::None;
        let mut gossiped_cluster = 0;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            // Its Raft cluster, so leaders tell a stale member of their
            // own cluster from a foreign one.
            let cluster = self.machine.state().founded_by;
            gossip_changed(&self.chitchat, RAFT_CLUSTER, &mut gossiped_cluster, cluster).await;
            let raft_view = view(&self.raft, self.me);
            let role = if raft_view.initialized && !raft_view.is_leader {
                role(&raft_view, self.me)
            } else {
                let Some(status) = self.status.status().await else {
                    continue;
                };
                tick_once(&status, &self.raft, self.me, self.address, &mut settling).await
            };
            gossip_changed(&self.chitchat, RAFT_ROLE, &mut gossiped_role, role).await;
        }
    }
}

/// Reads this peer's Raft state.
pub fn view(raft: &Raft, me: u64) -> RaftView {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    RaftView {
        initialized: !voters.is_empty(),
        is_leader: metrics.current_leader == Some(me),
        voters,
        learners,
    }
}

/// This peer's role in Raft, as gossiped: leader, voter, learner or none.
pub fn role(view: &RaftView, me: u64) -> RaftRole {
    if view.is_leader {
        RaftRole::Leader
    } else if view.voters.contains(&me) {
        RaftRole::Voter
    } else if view.learners.contains(&me) {
        RaftRole::Learner
    } else {
        RaftRole::None
    }
}

/// Carries out `actions` on `raft`, logging what fails (the next tick
/// retries from a fresh view).
pub async fn apply(raft: &Raft, me: u64, my_addr: SocketAddr, actions: Vec<Action>) {
    for action in actions {
        let result = match &action {
            Action::Initialize => raft
                .initialize(BTreeMap::from([(
                    me,
                    BasicNode {
                        addr: my_addr.to_string(),
                    },
                )]))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Action::AddLearners(peers) => {
                let nodes = peers
                    .iter()
                    .map(|(id, addr)| {
                        let node = BasicNode {
                            addr: addr.to_string(),
                        };
                        (*id, node)
                    })
                    .collect();
                raft.change_membership(ChangeMembers::AddNodes(nodes), true)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Action::SetVoters(voters) => raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Action::Remove(ids) => raft
                .change_membership(ChangeMembers::RemoveNodes(ids.clone()), false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => tracing::info!("raft membership: {action:?}"),
            Err(e) => {
                tracing::debug!("raft membership {action:?} not done yet: {e}");
                return;
            }
        }
    }
}

/// Tracks whether the live set has been stable for long enough.
pub struct Settling {
    settle: Duration,
    last: BTreeSet<u64>,
    since: Option<Instant>,
    /// Foreign peers already warned about.
    foreign_seen: BTreeSet<u64>,
}

impl Settling {
    /// A tracker that calls the live set settled after `settle` unchanged
    /// (see [`settle_time`]).
    pub fn new(settle: Duration) -> Self {
        Self {
            settle,
            last: BTreeSet::new(),
            since: None,
            foreign_seen: BTreeSet::new(),
        }
    }

    /// Records the current live set; true once it has not changed for the
    /// settle time.
    pub fn observe(&mut self, alive: BTreeSet<u64>) -> bool {
        if alive != self.last || self.since.is_none() {
            self.last = alive;
            self.since = Some(Instant::now());
        }
        self.since.is_some_and(|s| s.elapsed() >= self.settle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u64) -> SocketAddr {
        format!("127.0.0.1:{}", 7000 + i).parse().unwrap()
    }

    fn observed(me: u64, alive: &[u64], present: &[u64]) -> Observed {
        Observed {
            me,
            alive: alive.iter().map(|&i| (i, addr(i))).collect(),
            present: present.iter().copied().collect(),
            others_in_raft: false,
            founders: BTreeSet::new(),
            foreign: BTreeSet::new(),
            observers: BTreeSet::new(),
            leaving: BTreeSet::new(),
        }
    }

    /// An orchestrator (an observer) is added as a learner like anyone, but
    /// is never given a voter's seat, never counted for the number of
    /// seats, and never founds the Raft cluster.
    #[test]
    fn an_observer_learns_but_never_votes_or_founds() {
        let mut seen = observed(1, &[1, 2, 3, 4], &[1, 2, 3, 4]);
        seen.observers.insert(2);
        let raft = RaftView {
            initialized: true,
            is_leader: true,
            voters: BTreeSet::from([1]),
            learners: BTreeSet::from([2, 3, 4]),
        };
        assert_eq!(
            decide(&seen, &raft, true),
            vec![Action::SetVoters(BTreeSet::from([1, 3, 4]))],
            "three peers take the three seats; the observer stays a learner"
        );
        let mut two = observed(1, &[1, 2, 3], &[1, 2, 3]);
        two.observers.insert(2);
        let raft = RaftView {
            voters: BTreeSet::from([1]),
            learners: BTreeSet::from([2, 3]),
            ..raft
        };
        assert!(
            decide(&two, &raft, true).is_empty(),
            "two peers and an observer: one voter, as for two peers"
        );

        let fresh = RaftView::default();
        let mut smallest = observed(2, &[2, 5], &[2, 5]);
        smallest.observers.insert(2);
        assert!(
            decide(&smallest, &fresh, true).is_empty(),
            "an observer never founds"
        );
        let mut peer = observed(5, &[2, 5], &[2, 5]);
        peer.observers.insert(2);
        assert_eq!(
            decide(&peer, &fresh, true),
            vec![Action::Initialize],
            "the smallest peer founds it, even if the observer was its seed"
        );
    }

    /// A member of another Raft cluster (two formed apart during a
    /// partition at bootstrap) is never added: openraft panics on a peer
    /// added to a second cluster. A fresh peer still is.
    #[test]
    fn a_member_of_another_raft_cluster_is_not_added() {
        use crate::cluster::status::fixtures::{member, status};
        let mut me = member("a", 1, Liveness::Alive);
        me.info.raft_cluster = 1;
        me.info.raft_role = RaftRole::Leader;
        let mut foreign = member("b", 2, Liveness::Alive);
        foreign.info.raft_cluster = 2;
        foreign.info.raft_role = RaftRole::Leader;
        let fresh = member("c", 3, Liveness::Alive);
        let view = status(vec![me, foreign, fresh]);
        let seen = super::observed(&view, 1, addr(1));
        assert_eq!(seen.foreign, BTreeSet::from([2]));
        let actions = decide(&seen, &leader_view(&[1], &[]), true);
        let Some(Action::AddLearners(added)) = actions.first() else {
            panic!("the fresh peer is added: {actions:?}");
        };
        assert_eq!(added.keys().copied().collect::<Vec<_>>(), [3]);
    }

    fn leader_view(voters: &[u64], learners: &[u64]) -> RaftView {
        RaftView {
            initialized: true,
            is_leader: true,
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
        }
    }

    #[test]
    fn only_the_smallest_settled_peer_bootstraps() {
        let empty = RaftView::default();
        assert_eq!(
            decide(&observed(1, &[1, 2, 3], &[1, 2, 3]), &empty, true),
            vec![Action::Initialize]
        );
        assert!(decide(&observed(2, &[1, 2, 3], &[1, 2, 3]), &empty, true).is_empty());
        assert!(decide(&observed(1, &[1, 2, 3], &[1, 2, 3]), &empty, false).is_empty());
        let mut joined_late = observed(1, &[1, 2, 3], &[1, 2, 3]);
        joined_late.others_in_raft = true;
        assert!(
            decide(&joined_late, &empty, true).is_empty(),
            "never a second cluster"
        );
    }

    /// A peer given seeds, alone so far: it waits for them however long it
    /// has been alone; a founder alone founds its cluster.
    #[test]
    fn a_peer_pointed_at_seeds_never_founds_a_cluster_alone() {
        let empty = RaftView::default();
        assert!(decide(&observed(1, &[1], &[1]), &empty, true).is_empty());
        let mut founder = observed(1, &[1], &[1]);
        founder.founders = BTreeSet::from([1]);
        assert_eq!(decide(&founder, &empty, true), vec![Action::Initialize]);
    }

    /// Peer 1 was pointed at seed 3, which was given none: 1 waits even
    /// while it sees itself as the smallest, and 3 founds the cluster. A
    /// founder that is gone leaves the choice to the smallest again.
    #[test]
    fn a_founder_bootstraps_before_peers_pointed_at_seeds() {
        let empty = RaftView::default();
        let with_founder = |me: u64| {
            let mut obs = observed(me, &[1, 2, 3], &[1, 2, 3]);
            obs.founders = BTreeSet::from([3]);
            obs
        };
        assert!(decide(&with_founder(1), &empty, true).is_empty());
        assert_eq!(
            decide(&with_founder(3), &empty, true),
            vec![Action::Initialize]
        );
        assert_eq!(
            decide(&observed(1, &[1, 2], &[1, 2]), &empty, true),
            vec![Action::Initialize]
        );
    }

    #[test]
    fn the_leader_adds_learners_and_promotes_up_to_the_target() {
        let obs = observed(1, &[1, 2, 3, 4], &[1, 2, 3, 4]);
        let actions = decide(&obs, &leader_view(&[1], &[2, 3]), true);
        assert!(actions.contains(&Action::AddLearners(BTreeMap::from([(4, addr(4))]))));
        assert!(actions.contains(&Action::SetVoters(BTreeSet::from([1, 2, 3]))));
        let many = observed(1, &[1, 2, 3, 4, 5, 6], &[1, 2, 3, 4, 5, 6]);
        let actions = decide(&many, &leader_view(&[1], &[]), true);
        assert_eq!(
            actions,
            vec![Action::AddLearners((2..=6).map(|i| (i, addr(i))).collect())],
            "every newcomer in one change; promoted once they are learners"
        );
    }

    #[test]
    fn dead_peers_are_dropped_and_voters_replaced() {
        // 5 voters, peer 5 died: 4 alive, so 3 voters; 5 is removed.
        let obs = observed(1, &[1, 2, 3, 4], &[1, 2, 3, 4]);
        let actions = decide(&obs, &leader_view(&[1, 2, 3, 4, 5], &[]), true);
        assert_eq!(
            actions,
            vec![
                Action::SetVoters(BTreeSet::from([1, 2, 3])),
                Action::Remove(BTreeSet::from([5]))
            ]
        );
        // A suspect peer is kept.
        let obs = observed(1, &[1, 2, 3], &[1, 2, 3, 4]);
        let actions = decide(&obs, &leader_view(&[1, 2, 3], &[4]), true);
        assert!(actions.is_empty(), "{actions:?}");
        // A suspect voter keeps its seat; a suspect learner is not promoted.
        let obs = observed(1, &[1, 3, 4], &[1, 2, 3, 4]);
        let actions = decide(&obs, &leader_view(&[1, 2, 3], &[4]), true);
        assert!(actions.is_empty(), "{actions:?}");
        let obs = observed(1, &[1, 2, 3], &[1, 2, 3, 4, 5]);
        let actions = decide(&obs, &leader_view(&[1, 2, 3], &[4, 5]), true);
        assert!(
            actions.is_empty(),
            "5 present, but 4 and 5 are suspect: {actions:?}"
        );
        // Once it is declared dead, a live learner replaces it.
        let obs = observed(1, &[1, 3, 4], &[1, 3, 4]);
        let actions = decide(&obs, &leader_view(&[1, 2, 3], &[4]), true);
        assert_eq!(
            actions,
            vec![
                Action::SetVoters(BTreeSet::from([1, 3, 4])),
                Action::Remove(BTreeSet::from([2]))
            ]
        );
    }

    #[test]
    fn leaving_members_give_up_their_seats_and_go() {
        // Voter 3 of 1, 2, 3 (with learners 4, 5) is leaving: 4 takes its
        // seat; 3 stays a learner, so it still applies its hand-over.
        let mut obs = observed(1, &[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5]);
        obs.leaving.insert(3);
        let actions = decide(&obs, &leader_view(&[1, 2, 3], &[4, 5]), true);
        assert_eq!(actions, vec![Action::SetVoters(BTreeSet::from([1, 2, 4]))]);
        // Gone after it exited, it is removed like any dead member.
        let mut obs = observed(1, &[1, 2, 4, 5], &[1, 2, 4, 5]);
        obs.leaving.insert(3);
        let actions = decide(&obs, &leader_view(&[1, 2, 4], &[3, 5]), true);
        assert_eq!(actions, vec![Action::Remove(BTreeSet::from([3]))]);
        // The leader itself is leaving: it seats others and stays a member
        // (it steps down; the next leader removes it).
        let mut obs = observed(1, &[1, 2, 3, 4], &[1, 2, 3, 4]);
        obs.leaving.insert(1);
        let actions = decide(&obs, &leader_view(&[1, 2, 3], &[4]), true);
        assert_eq!(actions, vec![Action::SetVoters(BTreeSet::from([2, 3, 4]))]);
        // A leaving newcomer is not added; the last peer keeps its seat.
        let mut obs = observed(1, &[1, 2], &[1, 2]);
        obs.leaving.extend([1, 2]);
        assert!(decide(&obs, &leader_view(&[1], &[]), true).is_empty());
    }

    #[test]
    fn followers_do_nothing_and_roles_are_named() {
        let mut view = leader_view(&[1, 2, 3], &[4]);
        view.is_leader = false;
        assert!(decide(&observed(2, &[1, 2, 3, 4], &[1, 2, 3, 4]), &view, true).is_empty());
        assert_eq!(role(&view, 2), RaftRole::Voter);
        assert_eq!(role(&view, 4), RaftRole::Learner);
        assert_eq!(role(&view, 9), RaftRole::None);
        assert_eq!(voter_target(7), 5);
    }
}
