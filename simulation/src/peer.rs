//! One simulated peer: real chitchat over the simulated gossip transport, a
//! real openraft node over the in-memory Raft network, and the peer's real
//! loops: the coordinator ([`Coordination`]), the leader's supervision
//! ([`Supervision`]) and the runner (`runner::run`), each given the
//! simulation's side of its seams: the status built from this peer's
//! chitchat, probes and leader requests over the simulated network, the
//! virtual clock, and the engine model of [`crate::shares`]. A watch on
//! Raft's metrics feeds the leader-per-term invariant.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use chitchat::{Chitchat, ChitchatHandle, ChitchatId, spawn_chitchat};
use futures_util::future::BoxFuture;
use openraft::ServerState;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use vajra::cluster::consensus::coordinator::{self, Coordination};
use vajra::cluster::consensus::{self, RaftNode};
use vajra::cluster::endpoint::CounterSnapshot;
use vajra::cluster::membership::state::{self, PeerInfo};
use vajra::cluster::membership::{self, HeardTracker, SUSPECT_AFTER_INTERVALS};
use vajra::cluster::run::plan::Strategies;
use vajra::cluster::run::runner::{self, Incarnation};
use vajra::cluster::run::supervise::{PROBE_TIMEOUT, Prober, Supervision};
use vajra::cluster::status::{ClusterStatus, StatusSource};
use vajra::cluster::wall::WallClock;

use crate::clock::Clock;
use crate::freeze::Freezer;
use crate::gossip::SimGossip;
use crate::invariants::Checker;
use crate::ledger::Ledger;
use crate::net::{Net, Verdict};
use crate::raft_net::{Member, Registry, SimRaftNetwork};
use crate::shares::{SimEngine, SimQuorum, check_plans};

/// Cluster id every simulated peer uses.
pub const CLUSTER_ID: &str = "vajra-sim";

/// What every peer shares.
pub struct Shared {
    /// The network's faults.
    pub net: Arc<Net>,
    /// chitchat's in-memory transport.
    pub channel: ChannelTransport,
    /// Running Raft members.
    pub registry: Arc<Registry>,
    /// Virtual time.
    pub clock: Clock,
    /// Invariant checks.
    pub checker: Arc<Checker>,
    /// What each peer ran.
    pub ledger: Arc<Ledger>,
    /// Gossip interval.
    pub gossip_interval: Duration,
    /// Seed addresses.
    pub seeds: Vec<String>,
}

/// A running peer incarnation.
pub struct SimPeer {
    /// Peer name (node id).
    pub name: String,
    /// Incarnation (virtual Unix ms at start).
    pub generation: u64,
    /// Its address.
    pub addr: SocketAddr,
    /// Its Raft id.
    pub raft_id: u64,
    /// Its chitchat id.
    pub chitchat_id: ChitchatId,
    /// Its Raft node.
    pub node: RaftNode,
    chitchat: ChitchatHandle,
    view: Arc<SimStatus>,
    freezer: Arc<Freezer>,
    tasks: Vec<JoinHandle<()>>,
}

/// A simulated peer's picture of the cluster, built from its chitchat
/// when a loop asks (the real peer refreshes one every half gossip
/// interval; at 1000 simulated peers that would be most of the run's work).
struct SimStatus {
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    heard: Mutex<HeardTracker>,
    suspect_after: Duration,
}

impl SimStatus {
    async fn now(&self) -> ClusterStatus {
        let chitchat = self.chitchat.lock().await;
        membership::cluster_status(
            &chitchat,
            &mut self.heard.lock(),
            self.suspect_after,
            CLUSTER_ID,
            "secret",
            CounterSnapshot::default(),
        )
    }

    /// The runner's cut-off rule on this peer's gossip view of its voters,
    /// read straight from chitchat (building the whole status of 1000
    /// members on every runner check is what the simulation cannot afford).
    async fn cut_off(&self, voters: std::collections::BTreeSet<u64>) -> bool {
        let chitchat = self.chitchat.lock().await;
        let me = chitchat.self_chitchat_id().clone();
        let dead: std::collections::HashSet<&ChitchatId> = chitchat.dead_nodes().collect();
        let members = chitchat.node_states().iter().filter_map(|(id, node)| {
            let raft_id = node.get(state::RAFT_ID)?.parse().ok()?;
            Some((raft_id, *id != me && dead.contains(id)))
        });
        runner::cut_off_among(members, &voters)
    }
}

impl StatusSource for SimStatus {
    fn status(&self) -> BoxFuture<'_, Option<ClusterStatus>> {
        Box::pin(async move { Some(self.now().await) })
    }
}

impl WallClock for Clock {
    fn unix_ms(&self) -> u64 {
        Clock::unix_ms(self)
    }
}

/// Probes over the simulated network, from one peer's address.
struct SimProber {
    from: SocketAddr,
    shared: Arc<Shared>,
}

impl Prober for SimProber {
    fn probe(&self, to: SocketAddr) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            tokio::time::timeout(PROBE_TIMEOUT, round_trip(&self.shared, self.from, to))
                .await
                .is_ok()
        })
    }
}

impl SimPeer {
    /// Starts peer `name` at `addr` as a new incarnation.
    pub async fn start(name: &str, addr: SocketAddr, shared: &Arc<Shared>) -> anyhow::Result<Self> {
        let generation = shared.clock.unix_ms();
        let raft_id = consensus::node_id(name, generation);
        let network =
            SimRaftNetwork::new(addr, Arc::clone(&shared.registry), Arc::clone(&shared.net));
        let node = RaftNode::start_with(network, raft_id, CLUSTER_ID).await?;
        shared.registry.insert(
            raft_id,
            Member {
                raft: node.raft.clone(),
                machine: node.machine.clone(),
                addr,
            },
        );
        let chitchat_id = ChitchatId::new(name.to_owned(), generation, addr);
        let config = membership::chitchat_config(
            chitchat_id.clone(),
            CLUSTER_ID,
            shared.gossip_interval,
            addr,
            shared.seeds.clone(),
        );
        let transport = SimGossip::new(shared.channel.clone(), Arc::clone(&shared.net));
        let chitchat = spawn_chitchat(config, info(name, raft_id).key_values(), &transport).await?;
        let view = Arc::new(SimStatus {
            chitchat: chitchat.chitchat(),
            heard: Mutex::default(),
            suspect_after: shared.gossip_interval * SUSPECT_AFTER_INTERVALS,
        });
        let freezer = Arc::new(Freezer::new(shared.clock));
        let coordination = Coordination {
            raft: node.raft.clone(),
            me: raft_id,
            address: addr,
            machine: node.machine.clone(),
            chitchat: chitchat.chitchat(),
            status: Arc::clone(&view) as Arc<dyn StatusSource>,
            settle: coordinator::settle_time(shared.gossip_interval),
        };
        let supervision = Supervision {
            raft: node.raft.clone(),
            me: raft_id,
            machine: node.machine.clone(),
            strategies: Arc::new(Strategies::with_builtins()),
            status: Arc::clone(&view) as Arc<dyn StatusSource>,
            prober: Arc::new(SimProber {
                from: addr,
                shared: Arc::clone(shared),
            }),
            clock: Arc::new(shared.clock),
        };
        let engine = SimEngine {
            me: name.to_owned(),
            generation,
            ledger: Arc::clone(&shared.ledger),
            checker: Arc::clone(&shared.checker),
            clock: shared.clock,
            freezer: Arc::clone(&freezer),
        };
        let quorum = SimQuorum {
            from: addr,
            registry: Arc::clone(&shared.registry),
            net: Arc::clone(&shared.net),
            cut_off: {
                let (view, raft) = (Arc::clone(&view), node.raft.clone());
                Box::new(move || {
                    let view = Arc::clone(&view);
                    let voters = coordinator::view(&raft, raft_id).voters;
                    Box::pin(async move { view.cut_off(voters).await })
                })
            },
        };
        let runner = runner::run(
            Incarnation {
                name: name.to_owned(),
                generation,
            },
            Arc::new(engine),
            node.machine.watch(),
            Arc::new(quorum),
        );
        let tasks = vec![
            tokio::spawn(freezer.freezable(coordination.run())),
            tokio::spawn(freezer.freezable(supervision.run())),
            tokio::spawn(freezer.freezable(runner)),
            tokio::spawn(check_plans(
                name.to_owned(),
                node.machine.watch(),
                Arc::clone(&shared.checker),
            )),
            tokio::spawn(watch_terms(
                node.raft.clone(),
                raft_id,
                Arc::clone(&shared.checker),
            )),
        ];
        Ok(Self {
            name: name.to_owned(),
            generation,
            addr,
            raft_id,
            chitchat_id,
            node,
            chitchat,
            view,
            freezer,
            tasks,
        })
    }

    /// This peer's chitchat state.
    pub fn chitchat(&self) -> Arc<tokio::sync::Mutex<Chitchat>> {
        self.chitchat.chitchat()
    }

    /// Its current picture of the cluster.
    pub async fn status(&self) -> ClusterStatus {
        self.view.now().await
    }

    /// Freezes or wakes it: a frozen peer's loops and messages stop.
    pub fn set_frozen(&self, frozen: bool, net: &Net) {
        if frozen {
            net.isolate(self.addr);
        } else {
            net.reconnect(self.addr);
        }
        self.freezer.set(frozen);
    }

    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        self.freezer.is_frozen()
    }

    /// Kills it: every task ends and its address is free again.
    pub async fn kill(self, shared: &Shared) {
        self.set_frozen(false, &shared.net);
        shared
            .ledger
            .close(&self.name, self.generation, shared.clock.unix_ms());
        for task in &self.tasks {
            task.abort();
        }
        shared.registry.remove(self.raft_id);
        let _ = self.node.raft.shutdown().await;
        let _ = self.chitchat.shutdown().await;
    }
}

/// What a simulated peer publishes.
fn info(name: &str, raft_id: u64) -> PeerInfo {
    PeerInfo {
        name: name.to_owned(),
        role: Default::default(),
        weight: 1.0,
        cores: 2,
        cpu_percent: 0.0,
        rss_mb: 0.0,
        version: "sim".into(),
        status: "idle".into(),
        target_rate: 0.0,
        achieved_rate: 0.0,
        security: "secret".into(),
        raft_id,
        raft_role: state::RaftRole::None,
        digest: Default::default(),
        founder: false,
        raft_cluster: 0,
        leaving: false,
    }
}

/// A request to `to` and its answer; never completes if either is lost or
/// nothing runs at `to`.
async fn round_trip(shared: &Shared, from: SocketAddr, to: SocketAddr) {
    for (a, b) in [(from, to), (to, from)] {
        match shared.net.verdict(a, b) {
            Verdict::Drop => std::future::pending::<()>().await,
            Verdict::Deliver(delay) => tokio::time::sleep(delay).await,
        }
        if !shared.registry.all().iter().any(|(_, m)| m.addr == to) {
            std::future::pending::<()>().await;
        }
    }
}

/// Reports every (term, leader) this node takes on to the checker.
async fn watch_terms(raft: consensus::Raft, me: u64, checker: Arc<Checker>) {
    let mut metrics = raft.metrics();
    loop {
        let (state, term) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term)
        };
        if state == ServerState::Leader {
            checker.leader_seen(term, me);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
