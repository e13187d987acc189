//! The cluster picture `vajra-peer status` shows, from any node.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::network::CounterSnapshot;
use super::state::PeerInfo;

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
    pub address: String,
    /// Liveness.
    pub state: Liveness,
    /// Milliseconds since its heartbeat last advanced (0 for this node).
    pub last_heard_ms: u64,
    /// What it publishes.
    pub info: PeerInfo,
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
            .find(|m| m.state != Liveness::Dead && m.info.raft_role == "leader")
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
            "{:<24} {:<22} {:<8} {:>9} {:<6} {:>6} {:>5} {:>5}  {:<10} {:<8} STATUS",
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
                "{:<24} {:<22} {:<8} {:>7}ms {:<6} {:>6} {:>5} {:>4}%  {:<10} {:<8} {}",
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
                m.info.status,
            );
        }
        if self.cluster_target_rate > 0.0 || self.cluster_achieved_rate > 0.0 {
            let _ = writeln!(
                out,
                "cluster rate: achieved {:.1}/s of target {:.1}/s (per peer: target/achieved)",
                self.cluster_achieved_rate, self.cluster_target_rate
            );
            for m in self.members.iter().filter(|m| m.info.target_rate > 0.0) {
                let _ = writeln!(
                    out,
                    "  {:<24} {:>10.1} {:>10.1}",
                    m.id, m.info.target_rate, m.info.achieved_rate
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
