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
/// Key of the resident memory, MiB.
pub const RSS: &str = "rss_mb";
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
/// Key of the running test's digest (see [`Digest`]).
pub const DIGEST: &str = "digest";
/// Key present (value "1") on a peer that may found the Raft cluster: it
/// was given no seed but itself (see `coordinator::decide`).
pub const FOUNDER: &str = "founder";
/// Key: the Raft cluster the peer belongs to (its founder's Raft id).
pub const RAFT_CLUSTER: &str = "raft_cluster";
/// Key present (value "1") on a peer that is leaving (it was sent
/// SIGTERM): the leader hands its share to the others at once and takes
/// it out of Raft's voters, before it goes.
pub const LEAVING: &str = "leaving";

/// A few figures of the test a peer runs, small enough for gossip:
/// `status` shows them per peer at a glance. The exact cluster figures
/// come from the peers' histograms over QUIC (`cluster::figures`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// Grows with every new digest of a run (0: none published).
    pub version: u64,
    /// Executions completed in the measured phase.
    pub completed: u64,
    /// Of which failed.
    pub failures: u64,
    /// Median latency from the intended start, µs.
    pub p50_us: f64,
    /// 99th percentile latency from the intended start, µs.
    pub p99_us: f64,
}

impl Digest {
    /// The digest of a report's measured phase.
    pub fn of(main: &crate::export::report::PhaseReport, version: u64) -> Self {
        Self {
            version,
            completed: main.completed,
            failures: main.failure,
            p50_us: main.latency.p50_us,
            p99_us: main.latency.p99_us,
        }
    }

    /// Gossip's text form, `version;completed;failures;p50;p99`.
    pub fn to_text(&self) -> String {
        format!(
            "{};{};{};{:.0};{:.0}",
            self.version, self.completed, self.failures, self.p50_us, self.p99_us
        )
    }

    /// Reads [`to_text`](Self::to_text); `None` if garbled.
    pub fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split(';');
        let mut next = || fields.next();
        let digest = Self {
            version: next()?.parse().ok()?,
            completed: next()?.parse().ok()?,
            failures: next()?.parse().ok()?,
            p50_us: next()?.parse().ok()?,
            p99_us: next()?.parse().ok()?,
        };
        next().is_none().then_some(digest)
    }
}

/// A peer's place in Raft, as it gossips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    /// It leads.
    Leader,
    /// It votes.
    Voter,
    /// It replicates without voting.
    Learner,
    /// It is in no Raft cluster (yet).
    #[default]
    None,
}

impl RaftRole {
    /// How gossip and status name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Voter => "voter",
            Self::Learner => "learner",
            Self::None => "none",
        }
    }

    /// The role gossip names (anything else: none).
    pub fn parse(text: &str) -> Self {
        match text {
            "leader" => Self::Leader,
            "voter" => Self::Voter,
            "learner" => Self::Learner,
            _ => Self::None,
        }
    }

    /// Whether the peer is in a Raft cluster.
    pub fn is_member(self) -> bool {
        self != Self::None
    }
}

impl std::fmt::Display for RaftRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a member is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// It runs shares of the cluster's tests.
    #[default]
    Peer,
    /// It records the cluster's tests and serves their history: never a
    /// share, never a Raft voter.
    Orchestrator,
}

impl MemberRole {
    /// How gossip and status name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Orchestrator => "orchestrator",
        }
    }

    /// The role gossip names; anything else is a peer (what every member
    /// was before roles).
    pub fn parse(text: &str) -> Self {
        match text {
            "orchestrator" => Self::Orchestrator,
            _ => Self::Peer,
        }
    }

    /// Whether it takes shares of tests and may vote in Raft.
    pub fn takes_load(self) -> bool {
        self == Self::Peer
    }
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Display name.
    pub name: String,
    /// A peer, or an orchestrator.
    #[serde(default)]
    pub role: MemberRole,
    /// Share weight for weighted distribution.
    pub weight: f64,
    /// Cores available to it.
    pub cores: u32,
    /// Current CPU load, percent of its cores.
    pub cpu_percent: f64,
    /// Resident memory, MiB (0: not published).
    #[serde(default)]
    pub rss_mb: f64,
    /// Software version.
    pub version: String,
    /// "idle" or "running TEST".
    pub status: String,
    /// Rate it is asked to generate.
    pub target_rate: f64,
    /// Rate it generates.
    pub achieved_rate: f64,
    /// Admission mode it runs with.
    pub security: String,
    /// Its Raft node id (new at every restart).
    pub raft_id: u64,
    /// Its Raft role.
    #[serde(default)]
    pub raft_role: RaftRole,
    /// Figures of the test it runs or ran last (version 0: none).
    #[serde(default)]
    pub digest: Digest,
    /// Whether it was given no seed but itself, so that it, rather than a
    /// peer that was pointed at others, founds the Raft cluster.
    #[serde(default)]
    pub founder: bool,
    /// The Raft cluster it belongs to: its founder's Raft id (0: none yet).
    #[serde(default)]
    pub raft_cluster: u64,
    /// Whether it announced it is leaving: it holds no share from the next
    /// epoch on and gives up its Raft vote.
    #[serde(default)]
    pub leaving: bool,
}

impl PeerInfo {
    /// The key/value pairs gossip carries.
    pub fn key_values(&self) -> Vec<(String, String)> {
        [
            (NAME, self.name.clone()),
            (ROLE, self.role.as_str().to_owned()),
            (WEIGHT, self.weight.to_string()),
            (CORES, self.cores.to_string()),
            (CPU, format!("{:.0}", self.cpu_percent)),
            (RSS, format!("{:.1}", self.rss_mb)),
            (VERSION, self.version.clone()),
            (STATUS, self.status.clone()),
            (TARGET_RATE, format!("{:.1}", self.target_rate)),
            (ACHIEVED_RATE, format!("{:.1}", self.achieved_rate)),
            (SECURITY, self.security.clone()),
            (RAFT_ID, self.raft_id.to_string()),
            (RAFT_ROLE, self.raft_role.as_str().to_owned()),
            (DIGEST, self.digest.to_text()),
        ]
        .into_iter()
        // Published only when set: most peers are not founders.
        .chain(self.founder.then(|| (FOUNDER, "1".to_owned())))
        .chain((self.raft_cluster != 0).then(|| (RAFT_CLUSTER, self.raft_cluster.to_string())))
        .chain(self.leaving.then(|| (LEAVING, "1".to_owned())))
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Reads what a peer published; missing or garbled values get defaults.
    pub fn from_node_state(state: &NodeState) -> Self {
        let text = |key: &str| state.get(key).unwrap_or_default().to_owned();
        let number = |key: &str| state.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        Self {
            name: text(NAME),
            role: MemberRole::parse(state.get(ROLE).unwrap_or_default()),
            weight: number(WEIGHT),
            cores: state.get(CORES).and_then(|v| v.parse().ok()).unwrap_or(0),
            cpu_percent: number(CPU),
            rss_mb: number(RSS),
            version: text(VERSION),
            status: text(STATUS),
            target_rate: number(TARGET_RATE),
            achieved_rate: number(ACHIEVED_RATE),
            security: text(SECURITY),
            raft_id: state.get(RAFT_ID).and_then(|v| v.parse().ok()).unwrap_or(0),
            raft_role: RaftRole::parse(state.get(RAFT_ROLE).unwrap_or_default()),
            digest: state
                .get(DIGEST)
                .and_then(Digest::parse)
                .unwrap_or_default(),
            founder: state.get(FOUNDER) == Some("1"),
            raft_cluster: state
                .get(RAFT_CLUSTER)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            leaving: state.get(LEAVING) == Some("1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_round_trips_and_garbage_is_refused() {
        let digest = Digest {
            version: 7,
            completed: 20_000,
            failures: 3,
            p50_us: 850.0,
            p99_us: 2_100.0,
        };
        assert_eq!(Digest::parse(&digest.to_text()), Some(digest));
        for garbage in ["", "1;2;3", "1;2;3;4;5;6", "a;2;3;4;5", "1;2;3;4;x"] {
            assert_eq!(Digest::parse(garbage), None, "{garbage:?}");
        }
    }
}
