//! The cluster picture `vajra-peer status` shows, from any node.

use std::fmt::Write as _;
use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::cluster::consensus::ClusterState;
use crate::cluster::endpoint::CounterSnapshot;
use crate::cluster::membership::state::{PeerInfo, RaftRole};
use crate::cluster::run::figures::TestFigures;

/// Spread of peer clocks above which `status` warns: peers would start a
/// test, or an epoch, this far apart.
pub const SKEW_WARNING_MS: f64 = 50.0;

/// Where the cluster's loops read this peer's current picture of the
/// cluster: a peer's refreshed status, or the simulation's.
pub trait StatusSource: Send + Sync {
    /// The picture now; `None` before there is one.
    fn status(&self) -> BoxFuture<'_, Option<ClusterStatus>>;
}

/// Liveness of a member as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Heard from recently.
    Alive,
    /// Silent for longer than usual, not yet declared dead.
    Suspect,
    /// Declared dead by the failure detector.
    Dead,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Unique node id.
    pub id: String,
    /// Incarnation: grows each time the node restarts.
    pub generation: u64,
    /// Gossip address.
    pub address: SocketAddr,
    /// Liveness.
    pub state: Liveness,
    /// Milliseconds since its heartbeat last advanced (0 for this node).
    pub last_heard_ms: u64,
    /// What it publishes.
    pub info: PeerInfo,
    /// Its clock minus the answering node's, milliseconds, when measured.
    #[serde(default)]
    pub clock_offset_ms: Option<f64>,
}

/// A node's view of the whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster id.
    pub cluster_id: String,
    /// Id of the node that answered.
    pub node: String,
    /// Its admission mode; "insecure" is a development setting.
    pub security: String,
    /// Every member it knows, itself included, sorted by id.
    pub members: Vec<MemberStatus>,
    /// The live member that gossips being the Raft leader, if any.
    pub leader: Option<String>,
    /// Sum of the live members' target rates.
    #[serde(default)]
    pub cluster_target_rate: f64,
    /// Sum of the live members' achieved rates (last second).
    #[serde(default)]
    pub cluster_achieved_rate: f64,
    /// What its endpoint refused or dropped.
    pub counters: CounterSnapshot,
    /// The largest difference between two members' clocks it measured
    /// (itself included), milliseconds.
    #[serde(default)]
    pub clock_skew_ms: f64,
    /// The current or last test, from the replicated Raft state.
    #[serde(default)]
    pub test: Option<TestStatus>,
    /// That test's merged figures, when `status` asked for them (they are
    /// fetched from the peers on request, not kept in this picture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<TestFigures>,
}

/// Where a distributed test is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TestPhase {
    /// Accepted by the leader, plan not committed yet (the leader's answer
    /// to `start` is the only place this is seen: it lasts one commit).
    Created,
    /// Plan committed; peers set up their instances until the start time.
    Distributing,
    /// Between the start time and the end of the rate curve.
    Running,
    /// The curve is over; peers drain in-flight executions.
    Stopping,
    /// Ran to its planned end.
    Completed,
    /// Stopped before its end by `vajra-peer stop`.
    Stopped,
}

/// The current or last test, as every peer's Raft state has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestStatus {
    /// Test id.
    pub id: String,
    /// Where it is.
    pub phase: TestPhase,
    /// Current epoch (the last one once it is over).
    pub epoch: u64,
    /// Peers with a share in the current (or last) epoch.
    pub peers: usize,
    /// Seconds since its start (negative before), while it runs.
    pub elapsed_secs: Option<f64>,
}

impl TestStatus {
    /// The test in `state` at `now_ms` (Unix milliseconds), if any.
    pub fn of(state: &ClusterState, now_ms: u64) -> Option<Self> {
        let Some(plan) = &state.plan else {
            return state.finished.as_ref().map(|f| TestStatus {
                id: f.test_id.clone(),
                phase: if f.completed {
                    TestPhase::Completed
                } else {
                    TestPhase::Stopped
                },
                epoch: f.epoch,
                peers: f.peers,
                elapsed_secs: None,
            });
        };
        let end_ms = plan.end().map_or(u64::MAX, |end| end.curve_ends_unix_ms);
        let phase = if now_ms < plan.test_start_unix_ms {
            TestPhase::Distributing
        } else if now_ms < end_ms {
            TestPhase::Running
        } else {
            TestPhase::Stopping
        };
        Some(TestStatus {
            id: plan.test_id.clone(),
            phase,
            epoch: plan.epoch,
            peers: plan.shares.len(),
            elapsed_secs: Some((now_ms as f64 - plan.test_start_unix_ms as f64) / 1_000.0),
        })
    }
}

impl ClusterStatus {
    /// Members currently alive (or suspect, which are not yet dead).
    pub fn live_ids(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|m| m.state != Liveness::Dead)
            .map(|m| m.id.as_str())
            .collect()
    }

    /// Sums of the live members' target and achieved rates.
    pub fn cluster_rates(members: &[MemberStatus]) -> (f64, f64) {
        members
            .iter()
            .filter(|m| m.state != Liveness::Dead)
            .fold((0.0, 0.0), |(t, a), m| {
                (t + m.info.target_rate, a + m.info.achieved_rate)
            })
    }

    /// The Raft leader as gossip reports it (live members only).
    pub fn find_leader(members: &[MemberStatus]) -> Option<String> {
        members
            .iter()
            .find(|m| m.state != Liveness::Dead && m.info.raft_role == RaftRole::Leader)
            .map(|m| m.id.clone())
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cluster {} (answered by {}, raft leader {})",
            self.cluster_id,
            self.node,
            self.leader.as_deref().unwrap_or("none yet")
        );
        if self.security == "insecure" {
            let _ = writeln!(
                out,
                "WARNING: INSECURE CLUSTER: any host that can reach a peer can join it (--insecure)"
            );
        }
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<8} {:>9} {:<12} {:>6} {:>5} {:>5}  {:<10} {:<8} STATUS",
            "NODE",
            "ADDRESS",
            "STATE",
            "HEARD",
            "ROLE",
            "WEIGHT",
            "CORES",
            "CPU",
            "SECURITY",
            "RAFT"
        );
        for m in &self.members {
            let _ = writeln!(
                out,
                "{:<24} {:<22} {:<8} {:>7}ms {:<12} {:>6} {:>5} {:>4}%  {:<10} {:<8} {}",
                m.id,
                m.address,
                format!("{:?}", m.state).to_lowercase(),
                m.last_heard_ms,
                m.info.role,
                m.info.weight,
                m.info.cores,
                m.info.cpu_percent,
                m.info.security,
                m.info.raft_role,
                if m.info.leaving {
                    format!("leaving; {}", m.info.status)
                } else {
                    m.info.status.clone()
                },
            );
        }
        if let Some(test) = &self.test {
            let phase = format!("{:?}", test.phase).to_uppercase();
            let _ = write!(out, "test {}: {phase}", test.id);
            if test.epoch > 0 {
                let _ = write!(out, " (epoch {}, {} peers", test.epoch, test.peers);
                if let Some(elapsed) = test.elapsed_secs {
                    let _ = write!(out, ", {elapsed:.1} s since start");
                }
                out.push(')');
            }
            out.push('\n');
        }
        if let Some(figures) = &self.figures {
            out.push_str(&figures.render());
        }
        let _ = write!(out, "clock skew {:.1} ms", self.clock_skew_ms);
        if self.clock_skew_ms > SKEW_WARNING_MS {
            let _ = write!(
                out,
                " -- WARNING: above {} ms, peers start tests that far apart; sync their clocks (NTP)",
                SKEW_WARNING_MS
            );
        }
        out.push('\n');
        if self.cluster_target_rate > 0.0 || self.cluster_achieved_rate > 0.0 {
            let _ = writeln!(
                out,
                "cluster rate: achieved {:.1}/s of target {:.1}/s",
                self.cluster_achieved_rate, self.cluster_target_rate
            );
            // Counts come from the same fetch as the merged figures above
            // when there are some; otherwise from gossip, and say so.
            let source = if self.figures.is_some() {
                "counts: the figures above; rates: gossip, last second"
            } else {
                "gossip digests, as of each peer's last closed second"
            };
            let _ = writeln!(out, "  per peer ({source}):");
            let _ = writeln!(
                out,
                "  {:<24} {:>10} {:>10} {:>10} {:>8} {:>10}",
                "PEER", "TARGET/S", "ACHIEVED/S", "COMPLETED", "FAILED", "P99 µs"
            );
            for m in self.members.iter().filter(|m| m.info.target_rate > 0.0) {
                let d = &m.info.digest;
                let fetched = self
                    .figures
                    .as_ref()
                    .and_then(|f| f.peers.iter().find(|p| p.id == m.id));
                let (completed, failures, p99) = match fetched {
                    Some(p) => (p.completed, p.failure, p.p99_us),
                    None => (d.completed, d.failures, d.p99_us),
                };
                let _ = writeln!(
                    out,
                    "  {:<24} {:>10.1} {:>10.1} {:>10} {:>8} {:>10.0}",
                    m.id, m.info.target_rate, m.info.achieved_rate, completed, failures, p99
                );
            }
        }
        let c = &self.counters;
        let _ = writeln!(
            out,
            "refused peers {}, failed handshakes {}, malformed messages {}, ignored packets {}, dropped outgoing {}",
            c.refused_peers,
            c.handshake_failures,
            c.bad_messages,
            c.ignored_handshakes,
            c.dropped_outgoing
        );
        out
    }
}

/// Members and statuses for unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn member(id: &str, raft_id: u64, state: Liveness) -> MemberStatus {
        MemberStatus {
            id: id.into(),
            generation: 0,
            address: SocketAddr::from(([127, 0, 0, 1], 1)),
            state,
            last_heard_ms: 0,
            info: PeerInfo {
                name: id.into(),
                role: Default::default(),
                weight: 1.0,
                cores: 1,
                cpu_percent: 0.0,
                rss_mb: 0.0,
                version: String::new(),
                status: String::new(),
                target_rate: 0.0,
                achieved_rate: 0.0,
                security: String::new(),
                raft_id,
                raft_role: RaftRole::None,
                digest: Default::default(),
                founder: false,
                raft_cluster: 0,
                leaving: false,
            },
            clock_offset_ms: None,
        }
    }

    pub fn status(members: Vec<MemberStatus>) -> ClusterStatus {
        ClusterStatus {
            cluster_id: "c".into(),
            node: "a".into(),
            security: "secret".into(),
            members,
            leader: None,
            cluster_target_rate: 0.0,
            cluster_achieved_rate: 0.0,
            counters: Default::default(),
            clock_skew_ms: 0.0,
            test: None,
            figures: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{member, status};
    use super::*;
    use crate::cluster::run::figures::PeerFigures;
    use crate::metrics::LatencySummary;

    /// The per-peer table takes its counts from the fetch the merged
    /// figures came from, not from older gossip digests, so the two agree.
    #[test]
    fn the_per_peer_table_agrees_with_the_merged_figures() {
        let mut view = status(vec![
            member("a", 1, Liveness::Alive),
            member("b", 2, Liveness::Alive),
        ]);
        view.cluster_target_rate = 200.0;
        for m in &mut view.members {
            m.info.target_rate = 100.0;
            m.info.digest.completed = 99;
        }
        let gossip_only = view.render();
        assert!(gossip_only.contains("gossip digests"), "{gossip_only}");
        view.figures = Some(TestFigures {
            test_id: "t".into(),
            reporting: vec!["a".into(), "b".into()],
            missing: Vec::new(),
            completed: 481,
            failure: 0,
            dropped: 0,
            error_rate: 0.0,
            latency: LatencySummary::default(),
            service: LatencySummary::default(),
            errors: Vec::new(),
            peers: ["a", "b"]
                .iter()
                .zip([240, 241])
                .map(|(id, completed)| PeerFigures {
                    id: (*id).into(),
                    completed,
                    failure: 0,
                    p99_us: 0.0,
                })
                .collect(),
        });
        let text = view.render();
        assert!(text.contains("481 completed"), "{text}");
        assert!(text.contains(" 240 ") && text.contains(" 241 "), "{text}");
        assert!(!text.contains(" 99 "), "stale gossip counts shown: {text}");
    }
}
