//! Raft RPCs over the peer endpoint: one bidirectional stream of kind
//! [`crate::cluster::endpoint::StreamKind::Raft`] per call, bincode-encoded, on the same admitted QUIC
//! connections as gossip. A Raft node's address is its peer's endpoint
//! address.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::{Raft, TypeConfig};
use crate::cluster::endpoint::{Network, StreamKind};

type NodeId = u64;

#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The request could not be decoded.
    Malformed(String),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("Raft messages serialise")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    // No length in a message may claim more than a stream can carry.
    let config =
        bincode::config::standard().with_limit::<{ crate::cluster::endpoint::MAX_MESSAGE }>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

/// Whether `bytes` decode as a Raft RPC request (for the fuzz harnesses).
pub fn decodes_as_request(bytes: &[u8]) -> bool {
    decode::<Request>(bytes).is_ok()
}

/// Whether `bytes` decode as a Raft RPC reply (for the fuzz harnesses).
pub fn decodes_as_reply(bytes: &[u8]) -> bool {
    decode::<Reply>(bytes).is_ok()
}

/// A few valid encoded requests and replies (a vote, an append carrying a
/// plan, a refusal), for the fuzz harnesses to start from.
pub fn samples() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use crate::cluster::consensus::Command;
    use crate::cluster::run::plan::{Candidate, Equal, Plan, TestDefinition};
    use crate::load::RatePoint;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    let vote = Vote::new_committed(3, 7);
    let log_id = LogId::new(CommittedLeaderId::new(3, 7), 12);
    let peers = [Candidate {
        id: "p1".into(),
        weight: 1.0,
        cores: 2,
        cpu_percent: 0.0,
    }];
    let definition = TestDefinition {
        settings: r#"{"task":"noop","tps":100.0}"#.into(),
        curve: vec![
            RatePoint {
                at: 0.0,
                rate: 100.0,
            },
            RatePoint {
                at: 10.0,
                rate: 100.0,
            },
        ],
        drain_ms: 5_000,
    };
    let entries = Plan::first("t1", 1_000, &Equal, &peers, definition)
        .map(|plan| Entry {
            log_id,
            payload: EntryPayload::Normal(Command::set_plan(&plan)),
        })
        .into_iter()
        .collect();
    let requests = vec![
        encode(&Request::Vote(VoteRequest::new(vote, Some(log_id)))),
        encode(&Request::Append(AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id),
            entries,
            leader_commit: Some(log_id),
        })),
    ];
    let replies = vec![
        encode(&Reply::Vote(Ok(VoteResponse::new(
            vote,
            Some(log_id),
            true,
        )))),
        encode(&Reply::Append(Ok(AppendEntriesResponse::Success))),
        encode(&Reply::Malformed("bad request".into())),
    ];
    (requests, replies)
}

/// The most a snapshot of the cluster's state may hold. The state is a
/// few plans and leases (kilobytes); the bound is far above it.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

/// Refuses a snapshot chunk that would end past [`MAX_SNAPSHOT_BYTES`]:
/// openraft writes a chunk at its offset into a buffer in memory, so a
/// chunk of one byte at offset 2^60 would have it allocate 2^60 bytes.
fn chunk_fits(rpc: &InstallSnapshotRequest<TypeConfig>) -> Result<(), String> {
    let end = rpc.offset.checked_add(rpc.data.len() as u64);
    match end {
        Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
        _ => Err(format!(
            "a snapshot chunk of {} bytes at offset {} ends past the {MAX_SNAPSHOT_BYTES} bytes a snapshot may hold",
            rpc.data.len(),
            rpc.offset
        )),
    }
}

/// Answers Raft RPCs arriving at `network` with `raft`.
pub fn serve(network: &Network, raft: Raft) {
    network.serve_requests(
        StreamKind::Raft,
        std::sync::Arc::new(move |body: Bytes| {
            let raft = raft.clone();
            Box::pin(async move {
                let reply = match decode::<Request>(&body) {
                    Ok(Request::Append(rpc)) => Reply::Append(raft.append_entries(rpc).await),
                    Ok(Request::Vote(rpc)) => Reply::Vote(raft.vote(rpc).await),
                    Ok(Request::Snapshot(rpc)) => match chunk_fits(&rpc) {
                        Ok(()) => Reply::Snapshot(raft.install_snapshot(rpc).await),
                        Err(e) => Reply::Malformed(e),
                    },
                    Err(e) => Reply::Malformed(e),
                };
                encode(&reply)
            })
        }),
    );
}

/// Makes Raft clients that talk over the peer endpoint.
#[derive(Clone)]
pub struct QuicRaftNetwork {
    network: Network,
}

impl QuicRaftNetwork {
    /// Raft traffic over `network`.
    pub fn new(network: Network) -> Self {
        Self { network }
    }
}

/// A Raft client for one target node.
pub struct QuicRaftClient {
    network: Network,
    target: NodeId,
    addr: Result<SocketAddr, String>,
}

impl RaftNetworkFactory<TypeConfig> for QuicRaftNetwork {
    type Network = QuicRaftClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        QuicRaftClient {
            network: self.network.clone(),
            target,
            addr: node
                .addr
                .parse()
                .map_err(|e| format!("bad node address '{}': {e}", node.addr)),
        }
    }
}

fn unreachable(message: impl Into<String>) -> Unreachable {
    Unreachable::new(&std::io::Error::other(message.into()))
}

impl QuicRaftClient {
    async fn call(&self, request: &Request, ttl: Duration) -> Result<Reply, Unreachable> {
        let addr = self.addr.as_ref().map_err(|e| unreachable(e.clone()))?;
        let answer = self
            .network
            .request(*addr, StreamKind::Raft, &encode(request), ttl)
            .await
            .map_err(|e| unreachable(format!("{e:#}")))?;
        match decode::<Reply>(&answer) {
            Ok(Reply::Malformed(e)) => Err(unreachable(format!(
                "peer could not decode our request: {e}"
            ))),
            Ok(reply) => Ok(reply),
            Err(e) => Err(unreachable(format!("undecodable Raft reply: {e}"))),
        }
    }

    fn mismatched<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(
            "mismatched Raft reply",
        )))
    }
}

impl RaftNetwork<TypeConfig> for QuicRaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Request::Append(rpc), option.hard_ttl()).await? {
            Reply::Append(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(Self::mismatched()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(&Request::Snapshot(rpc), option.hard_ttl())
            .await?
        {
            Reply::Snapshot(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(Self::mismatched()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await? {
            Reply::Vote(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(Self::mismatched()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership, Vote};

    fn chunk(offset: u64, bytes: usize) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: Vote::new_committed(u64::MAX, 7),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 7), 12)),
                last_membership: StoredMembership::default(),
                snapshot_id: "s1".into(),
            },
            offset,
            data: vec![0; bytes],
            done: false,
        }
    }

    #[test]
    fn a_snapshot_chunk_past_the_bound_is_refused() {
        assert!(chunk_fits(&chunk(0, 1000)).is_ok());
        assert!(chunk_fits(&chunk(MAX_SNAPSHOT_BYTES - 10, 10)).is_ok());
        let far = chunk_fits(&chunk(1 << 60, 1)).unwrap_err();
        assert!(far.contains("offset 1152921504606846976"), "{far}");
        assert!(chunk_fits(&chunk(u64::MAX, 1)).is_err(), "no overflow");
        assert!(chunk_fits(&chunk(MAX_SNAPSHOT_BYTES - 10, 11)).is_err());
    }
}
