//! Consensus (Raft): the replicated log the leader commits load plans through.
//!
//! - [`store`]: the in-memory log and the state machine (the current plan).
//! - [`rpc`]: Raft RPCs over the peer endpoint's QUIC streams.
//! - [`runtime`]: tokio, with election timeouts a replaying harness can seed.
//! - [`coordinator`]: keeps Raft's membership in step with gossip.
//!
//! Logs are kept in memory on purpose: a restarted peer comes back under a
//! new Raft node id (derived from its name and generation), so an empty log
//! is never mistaken for a voter that forgot what it acknowledged.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::endpoint::Network;
use crate::cluster::run::plan::Plan;
use crate::task::scenario::feeder::MAX_FEEDER_NAME;
use crate::task::scenario::lease::MAX_LEASE;

pub mod coordinator;
/// Raft RPCs over the peer endpoint.
pub mod rpc;
pub mod runtime;
pub mod store;

/// Leader heartbeat, in milliseconds.
pub const HEARTBEAT_MS: u64 = 100;
/// Election timeout range, in milliseconds: a follower that hears no
/// leader for this long starts an election (so a dead leader is replaced
/// within about half a second on a LAN). Three heartbeats at least: a
/// needless election costs a term, never load, since runners follow
/// committed plans and not the leader.
pub const ELECTION_TIMEOUT_MS: (u64, u64) = (350, 700);
/// Entries after which a peer snapshots its state machine (the cluster
/// state, a few KB) and compacts its log: logs live in memory, and every
/// plan and membership change is an entry (a membership entry lists every
/// member), so a long-lived cluster must not keep them all.
pub const SNAPSHOT_AFTER_LOGS: u64 = 500;
/// Entries kept behind a snapshot, so a follower a little behind catches
/// up from the log rather than by a snapshot transfer.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;

openraft::declare_raft_types!(
    /// Raft types of a Vajra cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = runtime::RaftRuntime,
);

/// The Raft handle of a peer.
pub type Raft = openraft::Raft<TypeConfig>;

/// What the replicated log carries.
// Almost every entry is a plan: boxing it would cost an allocation per
// entry to save bytes only in the rare stop and end entries.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Adopt a plan: the first epoch of a test, or a later re-split. Build
    /// it with [`Command::set_plan`], which leaves the past epochs out.
    SetPlan(Plan),
    /// Stop the test with this id before its end (a user's `stop`): it
    /// ends as failed.
    StopTest {
        /// The test to stop.
        test_id: String,
    },
    /// End the test with this id after its curve and drain: it completed.
    EndTest {
        /// The test that is over.
        test_id: String,
    },
    /// Lease a peer the next `count` positions of a feeder of the running
    /// test (see [`crate::task::scenario::lease`]): the answer's `leased`.
    LeaseRecords(RecordLease),
}

/// A request for a feeder's next positions, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLease {
    /// The running test.
    pub test_id: String,
    /// The feeder's name in its scenario file.
    pub feeder: String,
    /// Its record count: positions stop there unless `wrap`.
    pub total: u64,
    /// Whether positions go on past `total` (a feeder that recycles).
    pub wrap: bool,
    /// How many positions (1 to [`MAX_LEASE`]).
    pub count: u64,
}

/// Most feeders a test's leases may name (a scenario file carries at most
/// 16 feeder files; the cap bounds what a member's requests can add to the
/// replicated state).
pub const MAX_LEASED_FEEDERS: usize = 64;

impl Command {
    /// The entry adopting `plan`, without the past epochs the plan carries
    /// in memory ([`Plan::without_past`]): the state machine puts them back
    /// from the plan it holds.
    pub fn set_plan(plan: &Plan) -> Self {
        Self::SetPlan(plan.without_past())
    }
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Whether the command changed the state.
    pub accepted: bool,
    /// Why not, when it did not.
    pub message: String,
    /// The positions a [`Command::LeaseRecords`] leased (empty when none
    /// is left).
    #[serde(default)]
    pub leased: Option<std::ops::Range<u64>>,
}

impl CommandResponse {
    fn accepted() -> Self {
        Self {
            accepted: true,
            ..Self::default()
        }
    }

    fn refused(message: String) -> Self {
        Self {
            accepted: false,
            message,
            leased: None,
        }
    }
}

/// Why a command was not committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommitError {
    /// It was committed, and the state machine refused it (say, a stop of
    /// a test that is not running).
    #[error("{0}")]
    Refused(String),
    /// Raft could not commit it (this peer does not lead, or lost its
    /// leadership meanwhile).
    #[error("{0}")]
    Failed(String),
    /// It did not commit in time: a leader cut off in a minority cannot.
    #[error("not committed within {0:?}: is a quorum of voters reachable?")]
    TimedOut(std::time::Duration),
}

/// Commits `command` through `raft` (this peer leading) within `within`:
/// the state machine's answer.
pub async fn commit(
    raft: &Raft,
    command: Command,
    within: std::time::Duration,
) -> Result<CommandResponse, CommitError> {
    match tokio::time::timeout(within, raft.client_write(command)).await {
        Ok(Ok(response)) if response.data.accepted => Ok(response.data),
        Ok(Ok(response)) => Err(CommitError::Refused(response.data.message)),
        Ok(Err(e)) => Err(CommitError::Failed(e.to_string())),
        Err(_) => Err(CommitError::TimedOut(within)),
    }
}

/// What every peer agrees on once entries are applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The plan in force, if a test is running.
    pub plan: Option<Plan>,
    /// Tests that were stopped or ended, most recent last.
    pub stopped: Vec<String>,
    /// How the last test that is over ended.
    #[serde(default)]
    pub finished: Option<FinishedTest>,
    /// The Raft id of the peer that founded this Raft cluster (its first
    /// membership's voter; 0 until that entry is applied): the cluster's
    /// identity, gossiped so a leader never adds a member of another Raft
    /// cluster, which openraft cannot survive.
    #[serde(default)]
    pub founded_by: u64,
    /// The running test's feeders: the next position each one leases.
    #[serde(default)]
    pub leased: BTreeMap<String, u64>,
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedTest {
    /// Its id.
    pub test_id: String,
    /// Whether it ran to its planned end (else it was stopped).
    pub completed: bool,
    /// Its last epoch.
    #[serde(default)]
    pub epoch: u64,
    /// Peers with a share in that epoch.
    #[serde(default)]
    pub peers: usize,
}

impl ClusterState {
    /// Applies one command. Plans only move forward: an epoch that is not
    /// newer than the current one of the same test is refused, so no peer
    /// is ever told to run two epochs at once.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::SetPlan(plan) => match &self.plan {
                Some(current) if current.test_id == plan.test_id && current.epoch >= plan.epoch => {
                    CommandResponse::refused(format!(
                        "epoch {} is not newer than {}",
                        plan.epoch, current.epoch
                    ))
                }
                Some(current) if current.test_id != plan.test_id => CommandResponse::refused(
                    format!("test {} is running; stop it first", current.test_id),
                ),
                // An update or re-split that lost the race with the test's
                // stop or end must not bring it back.
                None if self.stopped.contains(&plan.test_id) => {
                    CommandResponse::refused(format!("test {} is over", plan.test_id))
                }
                _ => {
                    // The entry has no past epochs (or stale ones): the
                    // history is what this machine applied before.
                    self.plan = Some(match &self.plan {
                        Some(current) => current.followed_by(plan),
                        None => {
                            self.leased.clear();
                            plan.clone()
                        }
                    });
                    CommandResponse::accepted()
                }
            },
            Command::LeaseRecords(lease) => self.lease(lease),
            Command::StopTest { test_id } | Command::EndTest { test_id } => match &self.plan {
                Some(current) if &current.test_id == test_id => {
                    self.finished = Some(FinishedTest {
                        test_id: test_id.clone(),
                        completed: matches!(command, Command::EndTest { .. }),
                        epoch: current.epoch,
                        peers: current.shares.len(),
                    });
                    self.plan = None;
                    self.stopped.push(test_id.clone());
                    CommandResponse::accepted()
                }
                _ => CommandResponse::refused(format!("test {test_id} is not running")),
            },
        }
    }

    /// Leases the next positions of a running test's feeder: never one
    /// leased before, none at or past its record count unless it wraps.
    fn lease(&mut self, lease: &RecordLease) -> CommandResponse {
        if self
            .plan
            .as_ref()
            .is_none_or(|p| p.test_id != lease.test_id)
        {
            return CommandResponse::refused(format!("test {} is not running", lease.test_id));
        }
        if !(1..=MAX_LEASE).contains(&lease.count)
            || lease.total == 0
            || lease.feeder.len() > MAX_FEEDER_NAME
        {
            return CommandResponse::refused(format!(
                "a lease is 1 to {MAX_LEASE} positions of a feeder with records, named in at most \
                 {MAX_FEEDER_NAME} bytes"
            ));
        }
        if !self.leased.contains_key(&lease.feeder) && self.leased.len() >= MAX_LEASED_FEEDERS {
            return CommandResponse::refused(format!(
                "a test's leases name at most {MAX_LEASED_FEEDERS} feeders"
            ));
        }
        let next = self.leased.entry(lease.feeder.clone()).or_insert(0);
        let start = *next;
        let end = match lease.wrap {
            true => start.saturating_add(lease.count),
            false => start
                .saturating_add(lease.count)
                .min(lease.total)
                .max(start),
        };
        *next = end;
        CommandResponse {
            leased: Some(start..end),
            ..CommandResponse::accepted()
        }
    }
}

/// A running Raft member: its handle and its state machine.
pub struct RaftNode {
    /// This node's Raft id.
    pub id: u64,
    /// The Raft handle.
    pub raft: Raft,
    /// The applied state, watchable.
    pub machine: store::StateMachine,
}

impl RaftNode {
    /// Starts a Raft member `id` whose RPCs travel over `network`.
    pub async fn start(network: &Network, id: u64) -> anyhow::Result<Self> {
        let node = Self::start_with(
            rpc::QuicRaftNetwork::new(network.clone()),
            id,
            &network.identity().cluster_id,
        )
        .await?;
        rpc::serve(network, node.raft.clone());
        Ok(node)
    }

    /// Starts a Raft member `id` of `cluster_name` whose RPCs go through
    /// `transport` (the QUIC endpoint, or the simulation's in-memory
    /// network); answering incoming RPCs is the transport owner's job.
    pub async fn start_with<N>(transport: N, id: u64, cluster_name: &str) -> anyhow::Result<Self>
    where
        N: openraft::RaftNetworkFactory<TypeConfig>,
    {
        let config = openraft::Config {
            cluster_name: cluster_name.to_owned(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_TIMEOUT_MS.0,
            election_timeout_max: ELECTION_TIMEOUT_MS.1,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_AFTER_LOGS),
            max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
            purge_batch_size: 64,
            // A chunk must fit one message of the peer endpoint.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..openraft::Config::default()
        }
        .validate()?;
        let machine = store::StateMachine::default();
        let raft = Raft::new(
            id,
            Arc::new(config),
            transport,
            store::LogStore::default(),
            machine.clone(),
        )
        .await?;
        Ok(Self { id, raft, machine })
    }
}

/// Bytes of a snapshot sent in one message: half of what a message of the
/// peer endpoint may carry, leaving room for the rest of the request.
const SNAPSHOT_CHUNK_BYTES: u64 = (crate::cluster::endpoint::MAX_MESSAGE / 2) as u64;

/// A peer's Raft node id: derived from its name and generation, so a
/// restarted peer never reuses the id of its former self.
pub fn node_id(name: &str, generation: u64) -> u64 {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{name}/{generation}").as_bytes(),
    );
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn plan(test: &str, epoch: u64) -> Plan {
        Plan {
            test_id: test.into(),
            epoch,
            start_unix_ms: 0,
            shares: BTreeMap::from([("a".to_owned(), 1.0)]).into(),
            definition: Default::default(),
            test_start_unix_ms: 0,
            rate_updates: Vec::new(),
            strategy: "equal".into(),
            past: Vec::new(),
            request_id: String::new(),
            started_by: String::new(),
            departed: Vec::new(),
        }
    }

    #[test]
    fn plans_only_move_forward() {
        let mut state = ClusterState::default();
        assert!(state.apply(&Command::SetPlan(plan("t", 1))).accepted);
        assert!(state.apply(&Command::SetPlan(plan("t", 2))).accepted);
        assert!(
            !state.apply(&Command::SetPlan(plan("t", 2))).accepted,
            "same epoch twice"
        );
        assert!(
            !state.apply(&Command::SetPlan(plan("u", 1))).accepted,
            "a second test while one runs"
        );
        assert!(
            state
                .apply(&Command::StopTest {
                    test_id: "t".into()
                })
                .accepted
        );
        assert!(
            !state
                .apply(&Command::StopTest {
                    test_id: "t".into()
                })
                .accepted
        );
        assert!(state.apply(&Command::SetPlan(plan("u", 1))).accepted);
    }

    #[test]
    fn leases_never_overlap_stop_at_the_record_count_and_end_with_the_test() {
        let mut state = ClusterState::default();
        let lease = |test: &str, count: u64, wrap: bool| {
            Command::LeaseRecords(RecordLease {
                test_id: test.into(),
                feeder: "users".into(),
                total: 10,
                wrap,
                count,
            })
        };
        assert!(!state.apply(&lease("t", 4, false)).accepted, "no test runs");
        assert!(state.apply(&Command::SetPlan(plan("t", 1))).accepted);
        let got: Vec<_> = (0..4)
            .map(|_| state.apply(&lease("t", 4, false)).leased.unwrap())
            .collect();
        assert_eq!(got, [0..4, 4..8, 8..10, 10..10], "disjoint, then none left");
        assert!(!state.apply(&lease("u", 4, false)).accepted, "another test");
        assert!(!state.apply(&lease("t", 0, false)).accepted);
        assert!(!state.apply(&lease("t", MAX_LEASE + 1, false)).accepted);
        assert!(state.apply(&Command::SetPlan(plan("t", 2))).accepted);
        assert_eq!(
            state.apply(&lease("t", 4, true)).leased,
            Some(10..14),
            "a re-split keeps the count; a recycling feeder goes on past it"
        );
        assert!(
            state
                .apply(&Command::EndTest {
                    test_id: "t".into()
                })
                .accepted
        );
        assert!(!state.apply(&lease("t", 4, false)).accepted, "it ended");
        assert!(state.apply(&Command::SetPlan(plan("u", 1))).accepted);
        assert_eq!(state.apply(&lease("u", 4, false)).leased, Some(0..4));
        let named = |feeder: String| {
            Command::LeaseRecords(RecordLease {
                test_id: "u".into(),
                feeder,
                total: 10,
                wrap: false,
                count: 1,
            })
        };
        for i in 1..MAX_LEASED_FEEDERS {
            assert!(state.apply(&named(format!("f{i}"))).accepted);
        }
        assert!(
            !state.apply(&named("one too many".into())).accepted,
            "the feeders a test's leases name are bounded"
        );
        assert!(
            !state
                .apply(&named("x".repeat(MAX_FEEDER_NAME + 1)))
                .accepted
        );
    }

    #[test]
    fn a_test_that_is_over_is_not_brought_back_by_a_late_epoch() {
        for over in [
            Command::StopTest {
                test_id: "t".into(),
            },
            Command::EndTest {
                test_id: "t".into(),
            },
        ] {
            let mut state = ClusterState::default();
            assert!(state.apply(&Command::SetPlan(plan("t", 1))).accepted);
            assert!(state.apply(&over).accepted);
            let late = state.apply(&Command::SetPlan(plan("t", 2)));
            assert!(!late.accepted, "{over:?}");
            assert_eq!(late.message, "test t is over");
            assert_eq!(state.plan, None);
        }
    }

    /// 1000 peers, then one leaves per re-split: the leader's plan in memory
    /// keeps the last epochs, the entry carries only the newest, and every
    /// state machine puts the same history back.
    #[test]
    fn entries_carry_one_epoch_and_apply_restores_the_kept_ones() {
        use crate::cluster::run::plan::{Candidate, Equal, KEPT_EPOCHS};
        let peers: Vec<Candidate> = (0..1000)
            .map(|i| Candidate {
                id: format!("peer-{i:04}"),
                weight: 1.0,
                cores: 2,
                cpu_percent: 0.0,
            })
            .collect();
        let encoded = |command: &Command| {
            bincode::serde::encode_to_vec(command, bincode::config::standard())
                .unwrap()
                .len()
        };
        let mut leader = Plan::first("t", 0, &Equal, &peers, Default::default()).unwrap();
        let mut state = ClusterState::default();
        assert!(state.apply(&Command::set_plan(&leader)).accepted);
        let one_epoch = encoded(&Command::set_plan(&leader));
        for left in 1..=40 {
            leader = leader
                .resplit(left * 1_000, &Equal, &peers[left as usize..])
                .unwrap();
            let entry = Command::set_plan(&leader);
            assert!(state.apply(&entry).accepted);
            assert!(encoded(&entry) <= one_epoch, "epoch {}", leader.epoch);
            assert_eq!(state.plan.as_ref(), Some(&leader), "epoch {}", leader.epoch);
        }
        assert_eq!(leader.past.len(), KEPT_EPOCHS);
        let with_past = encoded(&Command::SetPlan(leader.clone()));
        println!("entry: {one_epoch} bytes; with {KEPT_EPOCHS} past epochs: {with_past} bytes");
        assert!(with_past > 30 * one_epoch, "{with_past} vs {one_epoch}");
    }

    #[test]
    fn a_restart_gets_a_new_node_id() {
        assert_ne!(node_id("p1", 1), node_id("p1", 2));
        assert_eq!(node_id("p1", 1), node_id("p1", 1));
    }
}
