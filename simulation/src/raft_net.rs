//! An in-memory Raft network: openraft's RPCs are handed straight to the
//! target node's `Raft` handle, with [`Net`]'s faults applied to the request
//! and to the reply. A lost request or reply, or an unreachable target,
//! surfaces as openraft's `Unreachable` once the RPC's time-to-live is up,
//! as a QUIC request that gets no answer would.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use vajra::cluster::consensus::store::StateMachine;
use vajra::cluster::consensus::{Raft, TypeConfig};

use crate::net::{Net, Verdict};

type NodeId = u64;

/// A running Raft member as the network reaches it.
#[derive(Clone)]
pub struct Member {
    /// Its Raft handle.
    pub raft: Raft,
    /// Its applied state.
    pub machine: StateMachine,
    /// Its peer's address.
    pub addr: SocketAddr,
}

/// The Raft members that are running, by node id.
#[derive(Default)]
pub struct Registry {
    members: Mutex<HashMap<NodeId, Member>>,
}

impl Registry {
    /// Makes `id` reachable.
    pub fn insert(&self, id: NodeId, member: Member) {
        self.members.lock().insert(id, member);
    }

    /// Makes `id` unreachable (its process is gone).
    pub fn remove(&self, id: NodeId) {
        self.members.lock().remove(&id);
    }

    /// The member `id`, if running.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        self.members.lock().get(&id).cloned()
    }

    /// Every running member.
    pub fn all(&self) -> Vec<(NodeId, Member)> {
        let mut all: Vec<_> = self
            .members
            .lock()
            .iter()
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

/// Makes Raft clients for the node at `from`.
#[derive(Clone)]
pub struct SimRaftNetwork {
    from: SocketAddr,
    registry: Arc<Registry>,
    net: Arc<Net>,
}

impl SimRaftNetwork {
    /// Raft traffic of the peer at `from`.
    pub fn new(from: SocketAddr, registry: Arc<Registry>, net: Arc<Net>) -> Self {
        Self {
            from,
            registry,
            net,
        }
    }
}

/// A Raft client for one target.
pub struct SimRaftClient {
    link: SimRaftNetwork,
    target: NodeId,
    to: Option<SocketAddr>,
}

impl RaftNetworkFactory<TypeConfig> for SimRaftNetwork {
    type Network = SimRaftClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        SimRaftClient {
            link: self.clone(),
            target,
            to: node.addr.parse().ok(),
        }
    }
}

fn unreachable(message: &str) -> Unreachable {
    Unreachable::new(&std::io::Error::other(message.to_owned()))
}

impl SimRaftClient {
    /// Carries one request to the target and its reply back, or fails after
    /// `ttl` when either is lost.
    async fn exchange<T, F, Fut>(&self, ttl: Duration, call: F) -> Result<T, Unreachable>
    where
        F: FnOnce(Raft) -> Fut,
        Fut: Future<Output = T>,
    {
        let (from, target, net) = (self.link.from, self.target, &self.link.net);
        let to = self.to.ok_or_else(|| unreachable("bad node address"))?;
        let trip = async {
            hop(net, from, to).await;
            let member = match self.link.registry.get(target) {
                Some(m) => m,
                None => std::future::pending().await,
            };
            let reply = call(member.raft).await;
            hop(net, to, from).await;
            reply
        };
        tokio::time::timeout(ttl, trip)
            .await
            .map_err(|_| unreachable("no answer within the RPC's time to live"))
    }
}

/// One message's trip: waits its delay, or forever if it is lost.
async fn hop(net: &Net, from: SocketAddr, to: SocketAddr) {
    match net.verdict(from, to) {
        Verdict::Drop => std::future::pending().await,
        Verdict::Deliver(delay) => tokio::time::sleep(delay).await,
    }
}

impl RaftNetwork<TypeConfig> for SimRaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.exchange(option.hard_ttl(), |raft| async move {
            raft.append_entries(rpc).await
        })
        .await?
        .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.exchange(option.hard_ttl(), |raft| async move {
            raft.install_snapshot(rpc).await
        })
        .await?
        .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.exchange(
            option.hard_ttl(),
            |raft| async move { raft.vote(rpc).await },
        )
        .await?
        .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}
