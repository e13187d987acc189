//! A running peer: the endpoint, chitchat on top of it, Raft, and the loops
//! that keep them in step and run the cluster's tests.
//!
//! Every loop is a task of the peer's [`TaskTracker`], stopped by one
//! [`CancellationToken`] on shutdown; a share the stopped runner let go of
//! stops its engine (which drains on its own thread). The picture of the cluster the loops
//! and status requests read is refreshed by one of them and shared as a
//! typed value on a watch channel.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::{ChitchatHandle, ChitchatId, spawn_chitchat};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::consensus::coordinator::{self, Coordination};
use crate::cluster::consensus::store::StateMachine;
use crate::cluster::consensus::{self, RaftNode};
use crate::cluster::endpoint::auth::Admission;
use crate::cluster::endpoint::clock::{self, Offsets};
use crate::cluster::endpoint::{Identity, Network};
use crate::cluster::leave::{self, Departure};
use crate::cluster::membership::discovery::MdnsDiscovery;
use crate::cluster::membership::gossip::QuicGossip;
use crate::cluster::membership::seeds;
use crate::cluster::membership::state::{self, MemberRole, PeerInfo};
use crate::cluster::membership::{
    HeardTracker, SUSPECT_AFTER_INTERVALS, chitchat_config, cluster_status,
};
use crate::cluster::run::control::Controller;
use crate::cluster::run::keep::{self, Kept, ToHand};
use crate::cluster::run::ledger::{self, Ledger};
use crate::cluster::run::plan::Strategies;
use crate::cluster::run::runner::{self, Incarnation};
use crate::cluster::run::share::{Activity, EngineShares, Results, SharedActivity};
use crate::cluster::run::supervise::Supervision;
use crate::cluster::status::{ClusterStatus, StatusSource, TestStatus};
use crate::cluster::wall::{self, unix_now_ms};
use crate::engine::TaskRegistry;
use crate::export::registry::Exports;
use crate::metrics::cpu::{CpuMeter, available_cores, current_rss_bytes};

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
    /// A peer, or an orchestrator (no share, no vote).
    pub role: MemberRole,
}

/// How long shutdown waits for the peer's loops to end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// A running peer.
pub struct Peer {
    handle: Arc<ChitchatHandle>,
    network: Network,
    view: View,
    raft: RaftNode,
    tasks: TaskTracker,
    cancel: CancellationToken,
    mdns: Option<MdnsDiscovery>,
    controller: Option<Arc<Controller>>,
    published: watch::Receiver<Arc<ClusterStatus>>,
}

impl Peer {
    /// Binds the endpoint, starts gossip and begins publishing state; runs
    /// the cluster's tests with the tasks in `registry`, split by
    /// `strategies`, its share of each fed to `exports`.
    pub async fn start(
        config: PeerConfig,
        registry: Arc<TaskRegistry>,
        strategies: Arc<Strategies>,
        exports: Arc<Exports>,
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
        let generation = unix_now_ms();
        let chitchat_id = ChitchatId::new(config.node_id.clone(), generation, advertise);
        let raft_id = consensus::node_id(&config.node_id, generation);
        let raft = RaftNode::start(&network, raft_id).await?;
        let info = PeerInfo {
            name: config.node_id.clone(),
            role: config.role,
            weight: if config.role.takes_load() {
                config.weight
            } else {
                0.0
            },
            cores: available_cores() as u32,
            cpu_percent: 0.0,
            rss_mb: 0.0,
            version: env!("CARGO_PKG_VERSION").into(),
            status: "idle".into(),
            target_rate: 0.0,
            achieved_rate: 0.0,
            security: config.admission.mode().into(),
            raft_id,
            raft_role: state::RaftRole::None,
            digest: Default::default(),
            founder: config.role.takes_load()
                && is_founder(&config.seeds, advertise, config.listen),
            raft_cluster: 0,
            leaving: false,
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
        let view = View {
            chitchat: handle.chitchat(),
            network: network.clone(),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            heard: Arc::default(),
            activity: Arc::default(),
            offsets: Arc::default(),
            machine: raft.machine.clone(),
        };
        let (published, status) = watch::channel(Arc::new(view.status().await));
        let peer = Self {
            handle,
            network,
            view,
            raft,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            mdns: None,
            controller: None,
            published: status.clone(),
        };
        let mdns = if config.mdns {
            Some(peer.find_by_mdns(&config.cluster_id, &config.node_id, advertise)?)
        } else {
            None
        };
        let names = seeds::names(&config.seeds);
        if !names.is_empty() {
            peer.spawn(seeds::greet_while_alone(
                peer.handle.chitchat(),
                Arc::clone(&peer.handle),
                names,
                vec![advertise, peer.network.local_addr()?],
                Arc::new(seeds::Dns),
            ));
        }
        peer.serve_status(&status);
        peer.spawn(peer.view.clone().refresh(published));
        let status_source: Arc<dyn StatusSource> = Arc::new(Published(status.clone()));
        peer.spawn(
            Coordination {
                raft: peer.raft.raft.clone(),
                me: raft_id,
                address: advertise,
                machine: peer.raft.machine.clone(),
                chitchat: peer.handle.chitchat(),
                status: Arc::clone(&status_source),
                settle: coordinator::settle_time(config.gossip_interval),
            }
            .run(),
        );
        let results: Results = Arc::default();
        let controller = Arc::new(Controller {
            network: peer.network.clone(),
            raft: peer.raft.raft.clone(),
            machine: peer.raft.machine.clone(),
            me: raft_id,
            generation,
            registry: Arc::clone(&registry),
            strategies: Arc::clone(&strategies),
            results: Arc::clone(&results),
            ledger: Ledger::default(),
            kept: Kept::default(),
            status: Arc::clone(&status_source),
        });
        peer.spawn(ledger::keep(
            controller.ledger.clone(),
            peer.raft.machine.watch(),
        ));
        Controller::serve(Arc::clone(&controller));
        clock::serve(&peer.network);
        peer.spawn(clock::track(
            peer.network.clone(),
            config.node_id.clone(),
            Arc::clone(&status_source),
            Arc::clone(&peer.view.offsets),
        ));
        let engine = EngineShares {
            registry,
            exports,
            peer: config.node_id.clone(),
            results,
            activity: Arc::clone(&peer.view.activity),
            control: Some(Arc::clone(&controller)),
        };
        peer.spawn(runner::run(
            Incarnation {
                name: config.node_id.clone(),
                generation,
            },
            Arc::new(engine),
            peer.raft.machine.watch(),
            Arc::clone(&controller) as Arc<dyn runner::Quorum>,
        ));
        peer.spawn(
            Supervision {
                raft: peer.raft.raft.clone(),
                me: raft_id,
                machine: peer.raft.machine.clone(),
                strategies,
                status: status_source,
                prober: Arc::clone(&controller) as Arc<dyn crate::cluster::run::supervise::Prober>,
                clock: wall::system(),
            }
            .run(),
        );
        Ok(Self {
            mdns,
            controller: Some(controller),
            ..peer
        })
    }

    /// This peer's control handler: what its clients' commands reach.
    pub fn controller(&self) -> Arc<Controller> {
        Arc::clone(self.controller.as_ref().expect("set by start"))
    }

    /// This peer's picture of the cluster, refreshed every half gossip
    /// interval.
    pub fn status_updates(&self) -> watch::Receiver<Arc<ClusterStatus>> {
        self.published.clone()
    }

    /// Runs `task` until the peer shuts down.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            cancel.run_until_cancelled(task).await;
        });
    }

    /// Answers status requests on the endpoint with the latest picture.
    fn serve_status(&self, status: &watch::Receiver<Arc<ClusterStatus>>) {
        let latest = status.clone();
        self.network.serve_status(Arc::new(move || {
            serde_json::to_vec(&**latest.borrow()).unwrap_or_default()
        }));
    }

    /// Finds peers by mDNS and tells gossip about those it does not know.
    fn find_by_mdns(
        &self,
        cluster_id: &str,
        node_id: &str,
        advertise: SocketAddr,
    ) -> anyhow::Result<MdnsDiscovery> {
        let (discovery, mut found) = MdnsDiscovery::start(cluster_id, node_id, advertise)?;
        let chitchat = self.handle.chitchat();
        let gossip = Arc::clone(&self.handle);
        self.spawn(async move {
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
        Ok(discovery)
    }

    /// This node's current picture of the cluster, built now.
    pub async fn status(&self) -> ClusterStatus {
        self.view.status().await
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

    /// This peer's Raft member.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// Leaves gracefully, within `within` (see [`crate::cluster::leave`]):
    /// announces it, waits until the leader has handed this peer's share
    /// to the others and its run has ended where the new epoch starts,
    /// and until it votes no more, then lingers for clients to fetch its
    /// final report. [`shutdown`](Self::shutdown) after it.
    pub async fn leave(&self, within: Duration) -> Departure {
        let began = Instant::now();
        self.handle
            .chitchat()
            .lock()
            .await
            .self_node_state()
            .set(state::LEAVING, "1");
        let results = Arc::clone(&self.controller().results);
        let running = || results.lock().values().any(|r| !r.is_over());
        let ran_share = running();
        let kept = loop {
            let plan = self.raft.machine.state().plan;
            let voters = coordinator::view(&self.raft.raft, self.raft.id).voters;
            let status = self.published.borrow().clone();
            let kept = leave::keeps(
                &status.node,
                self.raft.id,
                plan.as_ref(),
                running(),
                &voters,
                &status,
            );
            if kept.is_none() || began.elapsed() >= within {
                break kept;
            }
            tokio::time::sleep(leave::CHECK_EVERY).await;
        };
        // A share may have started after the leave began (the leader had
        // not seen it yet): its report wants fetching too.
        let ran_share = ran_share
            || self
                .raft
                .machine
                .state()
                .plan
                .is_some_and(|p| results.lock().contains_key(&p.test_id));
        let handed_to = self.hand_over_reports().await;
        if kept.is_none() && ran_share {
            let left = within.saturating_sub(began.elapsed());
            tokio::time::sleep(leave::LINGER.min(left)).await;
        }
        Departure {
            kept,
            handed_to,
            took: began.elapsed(),
        }
    }

    /// Hands this peer's reports of the running and the last ended test,
    /// and those it keeps for peers that left before, to members that stay
    /// (see [`keep`]): who took them all.
    async fn hand_over_reports(&self) -> Vec<String> {
        let controller = self.controller();
        let tests: BTreeSet<String> = self
            .raft
            .machine
            .state()
            .plan
            .map(|p| p.test_id)
            .into_iter()
            .chain(controller.ledger.ended().pop().map(|t| t.test_id))
            .collect();
        let status = self.published.borrow().clone();
        let mut reports = Vec::new();
        for test_id in &tests {
            let own = controller
                .results
                .lock()
                .get(test_id)
                .and_then(|r| r.report().cloned());
            if let Some(report) = own {
                reports.push(ToHand {
                    test_id: test_id.clone(),
                    node: status.node.clone(),
                    generation: Some(controller.generation),
                    report,
                });
            }
            for (node, generation, report) in controller.kept.reports(test_id) {
                reports.push(ToHand {
                    test_id: test_id.clone(),
                    node,
                    generation,
                    report,
                });
            }
        }
        let keepers = keep::keepers(&status, &status.node);
        if reports.is_empty() || keepers.is_empty() {
            return Vec::new();
        }
        let handed_to = keep::hand_over(controller.as_ref(), &keepers, &reports).await;
        tracing::info!(
            "handed {} report(s) of test(s) {tests:?} to {handed_to:?}",
            reports.len()
        );
        handed_to
    }

    /// Leaves: stops every loop, Raft and gossip, and closes the endpoint.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!("some of the peer's loops did not end within {SHUTDOWN_WAIT:?}");
        }
        let _ = self.raft.raft.shutdown().await;
        drop(self.mdns);
        let _ = self.handle.initiate_shutdown();
        self.network.close();
    }
}

/// The picture of the cluster the refresher publishes.
struct Published(watch::Receiver<Arc<ClusterStatus>>);

impl StatusSource for Published {
    fn status(&self) -> BoxFuture<'_, Option<ClusterStatus>> {
        let latest = (**self.0.borrow()).clone();
        Box::pin(async move { Some(latest) })
    }
}

/// What the refresher reads to build the picture of the cluster.
#[derive(Clone)]
struct View {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    network: Network,
    cluster_id: String,
    gossip_interval: Duration,
    heard: Arc<Mutex<HeardTracker>>,
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
        status.test = TestStatus::of(&self.machine.state(), unix_now_ms());
        status
    }

    /// Every half gossip interval: publishes this peer's activity and CPU
    /// to gossip and the picture of the cluster to `published`.
    async fn refresh(self, published: watch::Sender<Arc<ClusterStatus>>) {
        let mut cpu = CpuMeter::new();
        let mut last_cpu = Instant::now();
        let mut tick = tokio::time::interval(self.gossip_interval / 2);
        let mut gossiped = Activity::default();
        loop {
            tick.tick().await;
            let activity = self.activity.lock().clone();
            if activity != gossiped {
                self.gossip_activity(&activity).await;
                gossiped = activity;
            }
            if last_cpu.elapsed() >= Duration::from_secs(1) {
                last_cpu = Instant::now();
                let load = cpu.sample();
                let rss_mb = current_rss_bytes() as f64 / (1024.0 * 1024.0);
                let mut chitchat = self.chitchat.lock().await;
                let me = chitchat.self_node_state();
                me.set(state::CPU, format!("{load:.0}"));
                me.set(state::RSS, format!("{rss_mb:.1}"));
            }
            published.send_replace(Arc::new(self.status().await));
        }
    }

    async fn gossip_activity(&self, activity: &Activity) {
        let mut chitchat = self.chitchat.lock().await;
        let me = chitchat.self_node_state();
        let status = if activity.status.is_empty() {
            "idle"
        } else {
            &activity.status
        };
        me.set(state::STATUS, status);
        me.set(state::TARGET_RATE, format!("{:.1}", activity.target_rate));
        me.set(
            state::ACHIEVED_RATE,
            format!("{:.1}", activity.achieved_rate),
        );
        me.set(state::DIGEST, activity.digest.to_text());
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
