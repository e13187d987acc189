//! The simulated cluster: which peers run, and the operations a scenario
//! performs on it (start, kill, freeze, restart, join, start a test,
//! update its rate). Client commands go to the current leader, as
//! `vajra-peer start` and `update` are forwarded to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use vajra::cluster::consensus::{self, Command};
use vajra::cluster::run::control::{RateChange, first_epoch, next_epoch};
use vajra::cluster::run::plan::{Equal, Plan, TestDefinition};

use crate::net::peer_addr;
use crate::peer::{Shared, SimPeer};
use crate::raft_net::Member;

/// Name of peer number `index`.
pub fn peer_name(index: usize) -> String {
    format!("p{index:04}")
}

/// The cluster being simulated.
pub struct World {
    /// What peers share.
    pub shared: Arc<Shared>,
    /// Running incarnations, by peer index.
    pub peers: BTreeMap<usize, SimPeer>,
    /// Killed peers that may restart, with when they died (virtual ms).
    pub down: BTreeMap<usize, u64>,
    next_index: usize,
}

impl World {
    /// An empty cluster.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            peers: BTreeMap::new(),
            down: BTreeMap::new(),
            next_index: 0,
        }
    }

    /// Starts a new peer; returns its index.
    pub async fn join(&mut self) -> anyhow::Result<usize> {
        let index = self.next_index;
        self.next_index += 1;
        self.start(index).await?;
        Ok(index)
    }

    async fn start(&mut self, index: usize) -> anyhow::Result<()> {
        let peer = SimPeer::start(&peer_name(index), peer_addr(index), &self.shared).await?;
        self.peers.insert(index, peer);
        Ok(())
    }

    /// Kills peer `index`; false if it was not running.
    pub async fn kill(&mut self, index: usize) -> bool {
        let Some(peer) = self.peers.remove(&index) else {
            return false;
        };
        peer.kill(&self.shared).await;
        self.down.insert(index, self.shared.clock.ms());
        true
    }

    /// Restarts a killed peer under a new generation.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.down.remove(&index);
        self.start(index).await
    }

    /// Freezes (or wakes) peer `index`.
    pub fn set_frozen(&self, index: usize, frozen: bool) {
        if let Some(peer) = self.peers.get(&index) {
            peer.set_frozen(frozen, &self.shared.net);
        }
    }

    /// Addresses of the given peers.
    pub fn addrs(&self, indexes: &[usize]) -> Vec<SocketAddr> {
        indexes
            .iter()
            .filter_map(|i| self.peers.get(i).map(|p| p.addr))
            .collect()
    }

    /// The index of the peer that leads the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.is_frozen())
            .filter_map(|(i, p)| {
                let m = p.node.raft.metrics().borrow().clone();
                (m.state == ServerState::Leader).then_some((m.current_term, *i))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn leader_member(&self) -> Option<(usize, Member)> {
        let index = self.leader()?;
        let member = self.shared.registry.get(self.peers[&index].raft_id)?;
        Some((index, member))
    }

    /// Starts a test as `vajra-peer start` does: the leader splits the rate
    /// equally over the members it sees alive and commits epoch 1.
    pub async fn start_test(&self, definition: TestDefinition) -> anyhow::Result<Plan> {
        let (index, member) = self
            .leader_member()
            .ok_or_else(|| anyhow::anyhow!("no leader"))?;
        let status = self.peers[&index].status().await;
        let plan = first_epoch(&status, &Equal, definition, self.shared.clock.unix_ms())?;
        commit(&member, Command::set_plan(&plan)).await?;
        Ok(plan)
    }

    /// Changes the running test's rate as `vajra-peer update` does.
    pub async fn update_rate(&self, tps: f64) -> anyhow::Result<Plan> {
        let (_, member) = self
            .leader_member()
            .ok_or_else(|| anyhow::anyhow!("no leader"))?;
        let plan = member
            .machine
            .state()
            .plan
            .ok_or_else(|| anyhow::anyhow!("no test running"))?;
        let (next, _) = next_epoch(
            &plan,
            &RateChange::Constant(tps),
            self.shared.clock.unix_ms(),
        )
        .map_err(anyhow::Error::msg)?;
        commit(&member, Command::set_plan(&next)).await?;
        Ok(next)
    }
}

/// How long a client waits for a commit: a leader cut off in a minority
/// never commits, and a client gives up on it (then retries).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(2);

async fn commit(member: &Member, command: Command) -> anyhow::Result<()> {
    consensus::commit(&member.raft, command, COMMIT_TIMEOUT).await?;
    Ok(())
}
