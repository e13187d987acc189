//! Membership: chitchat's view of who is there, the key/values each peer
//! publishes and the liveness picture derived from them.
//!
//! - [`gossip`]: chitchat's transport over the endpoint.
//! - [`discovery`]: finding peers by mDNS (seeds are chitchat's own).
//! - [`seeds`]: seed names (a headless Service) re-resolved while alone.
//! - [`state`]: the typed key/values each peer publishes.

pub mod discovery;
pub mod gossip;
pub mod seeds;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig};

use crate::cluster::endpoint::CounterSnapshot;
use crate::cluster::status::{ClusterStatus, Liveness, MemberStatus};
use state::PeerInfo;

/// Default gossip interval. With chitchat's phi-accrual detector at a
/// threshold of 8, a silent peer is declared dead about 8 mean heartbeat
/// intervals after its last heartbeat: ~1.2 s at 150 ms. Shorter intervals
/// detect faster but cost more traffic and flag peers that merely hiccup.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(150);
/// Phi threshold of the failure detector.
pub const PHI_THRESHOLD: f64 = 8.0;
/// A live peer silent for this many gossip intervals is shown as suspect.
pub const SUSPECT_AFTER_INTERVALS: u32 = 4;

/// Heartbeat intervals the failure detector averages, per member: 30 s of
/// history at the default gossip interval. chitchat allocates the whole
/// window for every member it knows (its default of 1000 costs 8 KB per
/// member per peer: 8 GB across a simulated cluster of 1000), and a
/// shorter history adapts sooner when a loaded box slows everyone's
/// heartbeats.
pub const DETECTOR_WINDOW: usize = 200;

/// chitchat's settings for a peer: gossip every `gossip_interval`, the
/// phi-accrual detector at [`PHI_THRESHOLD`] over [`DETECTOR_WINDOW`]
/// intervals, dead members kept for an hour.
pub fn chitchat_config(
    chitchat_id: ChitchatId,
    cluster_id: &str,
    gossip_interval: Duration,
    listen_addr: SocketAddr,
    seed_nodes: Vec<String>,
) -> ChitchatConfig {
    ChitchatConfig {
        chitchat_id,
        cluster_id: cluster_id.to_owned(),
        gossip_interval,
        listen_addr,
        seed_nodes,
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: PHI_THRESHOLD,
            sampling_window_size: DETECTOR_WINDOW,
            max_interval: Duration::from_secs(10),
            initial_interval: gossip_interval,
            dead_node_grace_period: Duration::from_secs(3_600),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3_600),
        catchup_callback: None,
        extra_liveness_predicate: None,
    }
}

/// When each node's heartbeat last advanced, as seen here (on tokio's
/// clock, which the simulation pauses and advances).
#[derive(Default)]
pub struct HeardTracker {
    last: HashMap<ChitchatId, (u64, tokio::time::Instant)>,
}

impl HeardTracker {
    /// Records `id`'s `heartbeat` seen at `now`; how long it has not moved.
    pub fn observe(
        &mut self,
        id: &ChitchatId,
        heartbeat: u64,
        now: tokio::time::Instant,
    ) -> Duration {
        let entry = self.last.entry(id.clone()).or_insert((heartbeat, now));
        if heartbeat != entry.0 {
            *entry = (heartbeat, now);
        }
        now.duration_since(entry.1)
    }
}

/// The cluster as `chitchat` sees it: every known member's liveness (a live
/// member silent for `suspect_after` is suspect) and what it publishes.
/// `heard` follows heartbeats across calls.
pub fn cluster_status(
    chitchat: &Chitchat,
    heard: &mut HeardTracker,
    suspect_after: Duration,
    cluster_id: &str,
    security: &str,
    counters: CounterSnapshot,
) -> ClusterStatus {
    let me = chitchat.self_chitchat_id().clone();
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let dead: HashSet<&ChitchatId> = chitchat.dead_nodes().collect();
    let now = tokio::time::Instant::now();
    let mut members: Vec<MemberStatus> = chitchat
        .node_states()
        .iter()
        .map(|(id, node)| {
            let silent = heard.observe(id, u64::from(node.heartbeat()), now);
            let state = if *id == me {
                Liveness::Alive
            } else if dead.contains(id) {
                Liveness::Dead
            } else if live.contains(id) && silent < suspect_after {
                Liveness::Alive
            } else {
                Liveness::Suspect
            };
            MemberStatus {
                id: id.node_id.to_string(),
                generation: id.generation_id,
                address: id.gossip_advertise_addr,
                state,
                last_heard_ms: if *id == me {
                    0
                } else {
                    silent.as_millis() as u64
                },
                info: PeerInfo::from_node_state(node),
                clock_offset_ms: None,
            }
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id).then(a.generation.cmp(&b.generation)));
    let (cluster_target_rate, cluster_achieved_rate) = ClusterStatus::cluster_rates(&members);
    ClusterStatus {
        leader: ClusterStatus::find_leader(&members),
        cluster_target_rate,
        cluster_achieved_rate,
        cluster_id: cluster_id.to_owned(),
        node: me.node_id.to_string(),
        security: security.into(),
        members,
        counters,
        clock_skew_ms: 0.0,
        test: None,
        figures: None,
    }
}

/// Sets this peer's gossip `key` to `value` if it differs from what was
/// gossiped last (`gossiped`, updated), so an unchanged value costs no lock
/// and no new version.
pub async fn gossip_changed<T: PartialEq + Copy + std::fmt::Display>(
    chitchat: &tokio::sync::Mutex<Chitchat>,
    key: &str,
    gossiped: &mut T,
    value: T,
) {
    if *gossiped != value {
        *gossiped = value;
        chitchat
            .lock()
            .await
            .self_node_state()
            .set(key, value.to_string());
    }
}
