//! Measurements taken from the peers' own views: when the cluster formed,
//! how long each kill took to be detected everywhere and re-split, and when
//! membership and plan agreed again once the faults stopped.

use std::collections::{BTreeSet, HashSet};

use chitchat::ChitchatId;
use openraft::ServerState;
use vajra::cluster::consensus::coordinator::voter_target;

use crate::world::World;

/// A kill whose consequences are being timed.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The killed incarnation.
    pub id: ChitchatId,
    /// When it was killed (virtual ms).
    pub at_ms: u64,
    /// Detection time, once every running peer sees it dead.
    pub detected_ms: Option<u64>,
    /// Whether it held a share (so a re-split is due).
    pub held_share: bool,
    /// Re-split time, once every running peer's plan leaves it out.
    pub resplit_ms: Option<u64>,
    /// The peer came back before its re-split: not timed.
    pub cancelled: bool,
}

impl Pending {
    /// Whether nothing more is to be timed.
    pub fn done(&self) -> bool {
        self.detected_ms.is_some()
            && (!self.held_share || self.cancelled || self.resplit_ms.is_some())
    }
}

/// Updates `pending` at `now_ms`.
pub async fn poll(world: &World, pending: &mut [Pending], now_ms: u64) {
    for p in pending.iter_mut().filter(|p| !p.done()) {
        if p.detected_ms.is_none() && all_see_dead(world, &p.id).await {
            p.detected_ms = Some(now_ms - p.at_ms);
        }
        if p.held_share
            && !p.cancelled
            && p.resplit_ms.is_none()
            && all_dropped(world, &p.id.node_id)
        {
            p.resplit_ms = Some(now_ms - p.at_ms);
        }
    }
}

/// Whether every running, awake peer sees `id` dead (or never heard of it).
async fn all_see_dead(world: &World, id: &ChitchatId) -> bool {
    for peer in world.peers.values().filter(|p| !p.is_frozen()) {
        let chitchat = peer.chitchat();
        let chitchat = chitchat.lock().await;
        let known = chitchat.node_state(id).is_some();
        if known && !chitchat.dead_nodes().any(|d| d == id) {
            return false;
        }
    }
    true
}

/// Whether every running, awake peer's plan gives `name` no share.
fn all_dropped(world: &World, name: &str) -> bool {
    world.peers.values().filter(|p| !p.is_frozen()).all(|p| {
        p.node
            .machine
            .state()
            .plan
            .is_none_or(|plan| !plan.shares.contains_key(name))
    })
}

/// Whether every running peer sees exactly the running peers alive.
pub async fn gossip_agrees(world: &World) -> bool {
    let running: HashSet<&ChitchatId> = world.peers.values().map(|p| &p.chitchat_id).collect();
    for peer in world.peers.values() {
        let chitchat = peer.chitchat();
        let chitchat = chitchat.lock().await;
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        if live != running {
            return false;
        }
    }
    true
}

/// Whether one leader is known to all, its Raft membership is exactly the
/// running peers with the wanted number of voters.
pub fn raft_agrees(world: &World) -> bool {
    let Some(leader) = world.leader() else {
        return false;
    };
    let leader_id = world.peers[&leader].raft_id;
    let all_follow = world
        .peers
        .values()
        .all(|p| p.node.raft.metrics().borrow().current_leader == Some(leader_id));
    let metrics = world.peers[&leader].node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let members: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    let running: BTreeSet<u64> = world.peers.values().map(|p| p.raft_id).collect();
    let voters = membership.voter_ids().count();
    all_follow
        && metrics.state == ServerState::Leader
        && members == running
        && voters == voter_target(running.len())
}

/// Whether every running peer applied the same plan, with a share for
/// exactly the running peers (or no plan at all).
pub fn plans_agree(world: &World) -> bool {
    let names: BTreeSet<&str> = world.peers.values().map(|p| p.name.as_str()).collect();
    let plans: Vec<_> = world
        .peers
        .values()
        .map(|p| p.node.machine.state().plan)
        .collect();
    let Some(first) = plans.first() else {
        return true;
    };
    plans.iter().all(|p| p == first)
        && first.as_ref().is_none_or(|plan| {
            plan.shares
                .keys()
                .map(String::as_str)
                .collect::<BTreeSet<_>>()
                == names
        })
}
