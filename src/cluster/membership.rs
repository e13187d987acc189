//! A peer's membership: the endpoint, chitchat on top of it, the state it
//! publishes and the liveness picture it derives.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, spawn_chitchat,
};
use parking_lot::Mutex;

use super::auth::Admission;
use super::clock::{self, Offsets};
use super::control::Controller;
use super::coordinator::{self, Settling};
use super::discovery::MdnsDiscovery;
use super::gossip::QuicGossip;
use super::network::{CounterSnapshot, Identity, Network};
use super::plan::Strategies;
use super::raft::store::StateMachine;
use super::raft::{self, Raft, RaftNode};
use super::runner::{self, Activity, Results, SharedActivity};
use super::state::{self, PeerInfo};
use super::status::{ClusterStatus, Liveness, MemberStatus, TestStatus};
use crate::metrics::cpu::{CpuMeter, available_cores};
use crate::task::TaskRegistry;

/// Default gossip interval. With chitchat's phi-accrual detector at a
/// threshold of 8, a silent peer is declared dead about 8 mean heartbeat
/// intervals after its last heartbeat: ~1.2 s at 150 ms. Shorter intervals
/// detect faster but cost more traffic and flag peers that merely hiccup.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(150);
/// Phi threshold of the failure detector.
pub const PHI_THRESHOLD: f64 = 8.0;
/// A live peer silent for this many gossip intervals is shown as suspect.
pub const SUSPECT_AFTER_INTERVALS: u32 = 4;

/// Everything a peer needs to join.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// Address other peers use; derived when unset (see [`advertise_address`]).
    pub advertise: Option<SocketAddr>,
    /// Seed peers (`host:port`, resolved and re-resolved by chitchat).
    pub seeds: Vec<String>,
    /// Cluster id.
    pub cluster_id: String,
    /// Unique node id (also its display name).
    pub node_id: String,
    /// Share weight.
    pub weight: f64,
    /// Admission mode.
    pub admission: Admission,
    /// Gossip interval.
    pub gossip_interval: Duration,
    /// Also find peers by mDNS on the local network.
    pub mdns: bool,
}

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

/// A running peer.
pub struct Peer {
    handle: Arc<ChitchatHandle>,
    network: Network,
    cluster_id: String,
    gossip_interval: Duration,
    heard: Arc<Mutex<HeardTracker>>,
    status_cache: Arc<Mutex<Vec<u8>>>,
    refresher: tokio::task::JoinHandle<()>,
    coordinator: tokio::task::JoinHandle<()>,
    runner: tokio::task::JoinHandle<()>,
    supervisor: tokio::task::JoinHandle<()>,
    activity: SharedActivity,
    offsets: Offsets,
    machine: StateMachine,
    clock: tokio::task::JoinHandle<()>,
    raft: Option<RaftNode>,
    mdns: Option<(MdnsDiscovery, tokio::task::JoinHandle<()>)>,
}

impl Peer {
    /// Binds the endpoint, starts gossip and begins publishing state; runs
    /// the cluster's tests with the tasks in `registry`, split by
    /// `strategies`.
    pub async fn start(
        config: PeerConfig,
        registry: Arc<TaskRegistry>,
        strategies: Arc<Strategies>,
    ) -> anyhow::Result<Self> {
        let advertise = match config.advertise {
            Some(a) => a,
            None => advertise_address(config.listen, &config.seeds)?,
        };
        let identity = Identity {
            cluster_id: config.cluster_id.clone(),
            node: config.node_id.clone(),
            advertise,
            admission: config.admission.clone(),
        };
        let (network, inbox) = Network::bind(config.listen, identity)?;
        let generation = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let chitchat_id = ChitchatId::new(config.node_id.clone(), generation, advertise);
        let raft_id = raft::node_id(&config.node_id, generation);
        let raft_node = RaftNode::start(&network, raft_id).await?;
        let info = PeerInfo {
            name: config.node_id.clone(),
            role: "peer".into(),
            weight: config.weight,
            cores: available_cores() as u32,
            cpu_percent: 0.0,
            version: env!("CARGO_PKG_VERSION").into(),
            status: "idle".into(),
            target_rate: 0.0,
            achieved_rate: 0.0,
            security: config.admission.mode().into(),
            raft_id,
            raft_role: state::RaftRole::None,
            digest: Default::default(),
            founder: is_founder(&config.seeds, advertise, config.listen),
            raft_cluster: 0,
        };
        let chitchat_config = chitchat_config(
            chitchat_id,
            &config.cluster_id,
            config.gossip_interval,
            network.local_addr()?,
            config.seeds.clone(),
        );
        let transport = QuicGossip::new(network.clone(), inbox);
        let handle =
            Arc::new(spawn_chitchat(chitchat_config, info.key_values(), &transport).await?);
        let mdns = if config.mdns {
            let (discovery, mut found) =
                MdnsDiscovery::start(&config.cluster_id, &config.node_id, advertise)?;
            let chitchat = handle.chitchat();
            let gossip = Arc::clone(&handle);
            let task = tokio::spawn(async move {
                while let Some(addr) = found.recv().await {
                    let known = chitchat
                        .lock()
                        .await
                        .node_states()
                        .keys()
                        .any(|id| id.gossip_advertise_addr == addr);
                    if !known {
                        tracing::info!("mDNS found a peer at {addr}");
                        let _ = gossip.gossip(addr);
                    }
                }
            });
            Some((discovery, task))
        } else {
            None
        };
        let heard = Arc::new(Mutex::new(HeardTracker::default()));
        let status_cache = Arc::new(Mutex::new(Vec::new()));
        let cache = Arc::clone(&status_cache);
        network.serve_status(Arc::new(move || cache.lock().clone()));
        let mut peer = Self {
            handle,
            network,
            cluster_id: config.cluster_id,
            gossip_interval: config.gossip_interval,
            heard,
            status_cache,
            refresher: tokio::spawn(async {}),
            coordinator: tokio::spawn(async {}),
            runner: tokio::spawn(async {}),
            supervisor: tokio::spawn(async {}),
            activity: Arc::default(),
            offsets: Arc::default(),
            machine: raft_node.machine.clone(),
            clock: tokio::spawn(async {}),
            raft: None,
            mdns,
        };
        peer.refresher = tokio::spawn(refresh_loop(peer.view()));
        peer.coordinator = tokio::spawn(coordinate(
            peer.view(),
            raft_node.raft.clone(),
            raft_id,
            advertise,
        ));
        let results: Results = Arc::default();
        let cache = Arc::clone(&peer.status_cache);
        let controller = Controller {
            network: peer.network.clone(),
            raft: raft_node.raft.clone(),
            machine: raft_node.machine.clone(),
            me: raft_id,
            generation,
            registry: Arc::clone(&registry),
            strategies,
            results: Arc::clone(&results),
            status: Arc::new(move || serde_json::from_slice(&cache.lock()).ok()),
        };
        controller.clone().serve();
        clock::serve(&peer.network);
        peer.clock = tokio::spawn(clock::track(
            peer.network.clone(),
            config.node_id.clone(),
            Arc::clone(&controller.status),
            Arc::clone(&peer.offsets),
        ));
        let asking = controller.clone();
        let leader_plan: runner::LeaderPlan = Arc::new(move || {
            let asking = asking.clone();
            Box::pin(async move { asking.leader_plan().await })
        });
        peer.runner = tokio::spawn(runner::run(
            runner::Incarnation {
                name: config.node_id.clone(),
                generation,
            },
            registry,
            raft_node.machine.watch(),
            results,
            Arc::clone(&peer.activity),
            leader_plan,
            runner::QuorumView {
                status: Arc::clone(&controller.status),
                voters: voter_ids(raft_node.raft.clone()),
            },
        ));
        peer.supervisor = tokio::spawn(controller.supervise());
        peer.raft = Some(raft_node);
        Ok(peer)
    }

    fn view(&self) -> View {
        View {
            chitchat: self.handle.chitchat(),
            network: self.network.clone(),
            cluster_id: self.cluster_id.clone(),
            gossip_interval: self.gossip_interval,
            heard: Arc::clone(&self.heard),
            status_cache: Arc::clone(&self.status_cache),
            activity: Arc::clone(&self.activity),
            offsets: Arc::clone(&self.offsets),
            machine: self.machine.clone(),
        }
    }

    /// This node's current picture of the cluster.
    pub async fn status(&self) -> ClusterStatus {
        self.view().status().await
    }

    /// The endpoint's bound address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.network.local_addr()
    }

    /// The addresses that refuse this peer, when every one it tried refused
    /// it `times` times and nobody ever admitted it (see
    /// [`Network::refused_everywhere`]).
    pub fn refused_everywhere(&self, times: u32) -> Option<Vec<(SocketAddr, String)>> {
        self.network.refused_everywhere(times)
    }

    /// This peer's Raft member, once started.
    pub fn raft(&self) -> Option<&RaftNode> {
        self.raft.as_ref()
    }

    /// Leaves: stops gossip and Raft and closes the endpoint.
    pub async fn shutdown(self) {
        self.refresher.abort();
        self.coordinator.abort();
        self.runner.abort();
        self.supervisor.abort();
        self.clock.abort();
        if let Some(node) = &self.raft {
            let _ = node.raft.shutdown().await;
        }
        if let Some((discovery, task)) = self.mdns {
            task.abort();
            drop(discovery);
        }
        let _ = self.handle.initiate_shutdown();
        self.network.close();
    }
}

/// What the refresher and status requests read.
#[derive(Clone)]
struct View {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    network: Network,
    cluster_id: String,
    gossip_interval: Duration,
    heard: Arc<Mutex<HeardTracker>>,
    status_cache: Arc<Mutex<Vec<u8>>>,
    activity: SharedActivity,
    offsets: Offsets,
    machine: StateMachine,
}

impl View {
    async fn status(&self) -> ClusterStatus {
        let mut status = {
            let chitchat = self.chitchat.lock().await;
            let mut heard = self.heard.lock();
            cluster_status(
                &chitchat,
                &mut heard,
                self.gossip_interval * SUSPECT_AFTER_INTERVALS,
                &self.cluster_id,
                self.network.identity().admission.mode(),
                self.network.counters(),
            )
        };
        let offsets = self.offsets.lock();
        for member in &mut status.members {
            member.clock_offset_ms = offsets.get(&member.id).map(|o| o.offset_ms);
        }
        status.clock_skew_ms = clock::spread_ms(offsets.values());
        status.test = TestStatus::of(&self.machine.state(), now_unix_ms());
        status
    }
}

/// This peer's current Raft voter ids, as its membership config has them.
fn voter_ids(raft: Raft) -> Arc<dyn Fn() -> BTreeSet<u64> + Send + Sync> {
    Arc::new(move || {
        raft.metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    })
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
                address: id.gossip_advertise_addr.to_string(),
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

/// Keeps liveness tracking, the CPU figure and the status answer fresh.
async fn refresh_loop(view: View) {
    let mut cpu = CpuMeter::new();
    let mut last_cpu = Instant::now();
    let mut tick = tokio::time::interval(view.gossip_interval / 2);
    let mut published = Activity::default();
    loop {
        tick.tick().await;
        let activity = view.activity.lock().clone();
        if activity != published {
            let mut chitchat = view.chitchat.lock().await;
            let me = chitchat.self_node_state();
            me.set(
                state::STATUS,
                if activity.status.is_empty() {
                    "idle"
                } else {
                    &activity.status
                },
            );
            me.set(state::TARGET_RATE, format!("{:.1}", activity.target_rate));
            me.set(
                state::ACHIEVED_RATE,
                format!("{:.1}", activity.achieved_rate),
            );
            me.set(state::DIGEST, activity.digest.to_text());
            published = activity;
        }
        if last_cpu.elapsed() >= Duration::from_secs(1) {
            last_cpu = Instant::now();
            let load = cpu.sample();
            let mut chitchat = view.chitchat.lock().await;
            chitchat
                .self_node_state()
                .set(state::CPU, format!("{load:.0}"));
        }
        let status = view.status().await;
        *view.status_cache.lock() = serde_json::to_vec(&status).unwrap_or_default();
    }
}

/// Keeps Raft's membership in step with gossip (see [`coordinator`]) and
/// gossips this peer's Raft role.
async fn coordinate(view: View, raft: Raft, me: u64, my_addr: SocketAddr) {
    let mut settling = Settling::new(coordinator::settle_time(view.gossip_interval));
    let mut gossiped_role = state::RaftRole::None;
    let mut gossiped_cluster = 0;
    let mut tick = tokio::time::interval(coordinator::TICK);
    loop {
        tick.tick().await;
        let status = view.status().await;
        let role = coordinator::tick(&status, &raft, me, my_addr, &mut settling).await;
        gossip_changed(&view.chitchat, state::RAFT_ROLE, &mut gossiped_role, role).await;
        let cluster = view.machine.state().founded_by;
        gossip_changed(
            &view.chitchat,
            state::RAFT_CLUSTER,
            &mut gossiped_cluster,
            cluster,
        )
        .await;
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

/// Whether a peer given `seeds` may found the Raft cluster: it has no seed,
/// or every seed is itself (a compose service whose seed is its own name).
/// A seed that does not resolve yet counts as another peer.
pub fn is_founder(seeds: &[String], advertise: SocketAddr, listen: SocketAddr) -> bool {
    seeds.iter().all(|seed| {
        seed.to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.all(|a| a == advertise || a == listen))
    })
}

/// The address peers should use to reach this one: the listen address if
/// it names an interface, else this host's address on the way to a seed,
/// else the address its host name resolves to.
pub fn advertise_address(listen: SocketAddr, seeds: &[String]) -> anyhow::Result<SocketAddr> {
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    let via_seed = seeds.iter().find_map(|seed| {
        let target = seed.to_socket_addrs().ok()?.next()?;
        let probe = std::net::UdpSocket::bind((listen.ip(), 0)).ok()?;
        // Connecting a UDP socket sends nothing; it only picks the route.
        probe.connect(target).ok()?;
        let ip = probe.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    });
    let via_hostname = || -> Option<IpAddr> {
        let host = hostname()?;
        (host.as_str(), 0)
            .to_socket_addrs()
            .ok()?
            .map(|a| a.ip())
            .find(|ip| !ip.is_loopback() && ip.is_ipv4() == listen.is_ipv4())
    };
    via_seed
        .or_else(via_hostname)
        .map(|ip| SocketAddr::new(ip, listen.port()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell which address peers should use for {listen}: pass --advertise"
            )
        })
}

/// This machine's host name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_founder_has_no_seed_but_itself() {
        let me: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        assert!(is_founder(&[], me, me));
        assert!(is_founder(&["127.0.0.1:7700".into()], me, me));
        assert!(!is_founder(&["127.0.0.1:7701".into()], me, me));
        assert!(!is_founder(
            &["127.0.0.1:7700".into(), "127.0.0.1:7701".into()],
            me,
            me
        ));
        assert!(
            !is_founder(&["no-such-host.invalid:7700".into()], me, me),
            "an unresolved seed may be another peer"
        );
    }
}
