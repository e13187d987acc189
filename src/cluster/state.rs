//! The small, typed state each peer publishes through gossip.
//!
//! Every value is a short string under its own key, so no single value can
//! approach chitchat's datagram budget (a value too large to fit stalls the
//! gossip of that node's newer state). Large data (histograms) will travel
//! on request over QUIC streams, with only digests here.

use chitchat::NodeState;
use serde::{Deserialize, Serialize};

/// Key of the human-readable name.
pub const NAME: &str = "name";
/// Key of the role.
pub const ROLE: &str = "role";
/// Key of the weight.
pub const WEIGHT: &str = "weight";
/// Key of the core count.
pub const CORES: &str = "cores";
/// Key of the current CPU load, percent of the peer's cores.
pub const CPU: &str = "cpu";
/// Key of the software version.
pub const VERSION: &str = "version";
/// Key of the activity status.
pub const STATUS: &str = "status";
/// Key of the current target rate.
pub const TARGET_RATE: &str = "target_rate";
/// Key of the current achieved rate.
pub const ACHIEVED_RATE: &str = "achieved_rate";
/// Key of the admission mode ("secret", "mtls" or "insecure").
pub const SECURITY: &str = "security";
/// Key of the Raft node id.
pub const RAFT_ID: &str = "raft_id";
/// Key of the Raft role ("leader", "voter", "learner" or "none").
pub const RAFT_ROLE: &str = "raft";

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Display name.
    pub name: String,
    /// "peer" (or "orchestrator" later).
    pub role: String,
    /// Share weight for weighted distribution.
    pub weight: f64,
    /// Cores available to it.
    pub cores: u32,
    /// Current CPU load, percent of its cores.
    pub cpu_percent: f64,
    /// Software version.
    pub version: String,
    /// "idle" or "running <test>".
    pub status: String,
    /// Rate it is asked to generate.
    pub target_rate: f64,
    /// Rate it generates.
    pub achieved_rate: f64,
    /// Admission mode it runs with.
    pub security: String,
    /// Its Raft node id (new at every restart).
    pub raft_id: u64,
    /// Its Raft role: leader, voter, learner or none.
    pub raft_role: String,
}

impl PeerInfo {
    /// The key/value pairs gossip carries.
    pub fn key_values(&self) -> Vec<(String, String)> {
        [
            (NAME, self.name.clone()),
            (ROLE, self.role.clone()),
            (WEIGHT, self.weight.to_string()),
            (CORES, self.cores.to_string()),
            (CPU, format!("{:.0}", self.cpu_percent)),
            (VERSION, self.version.clone()),
            (STATUS, self.status.clone()),
            (TARGET_RATE, format!("{:.1}", self.target_rate)),
            (ACHIEVED_RATE, format!("{:.1}", self.achieved_rate)),
            (SECURITY, self.security.clone()),
            (RAFT_ID, self.raft_id.to_string()),
            (RAFT_ROLE, self.raft_role.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Reads what a peer published; missing or garbled values get defaults.
    pub fn from_node_state(state: &NodeState) -> Self {
        let text = |key: &str| state.get(key).unwrap_or_default().to_owned();
        let number = |key: &str| state.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        Self {
            name: text(NAME),
            role: text(ROLE),
            weight: number(WEIGHT),
            cores: state.get(CORES).and_then(|v| v.parse().ok()).unwrap_or(0),
            cpu_percent: number(CPU),
            version: text(VERSION),
            status: text(STATUS),
            target_rate: number(TARGET_RATE),
            achieved_rate: number(ACHIEVED_RATE),
            security: text(SECURITY),
            raft_id: state.get(RAFT_ID).and_then(|v| v.parse().ok()).unwrap_or(0),
            raft_role: text(RAFT_ROLE),
        }
    }
}
