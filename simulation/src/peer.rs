//! One simulated peer: real chitchat over the simulated gossip transport, a
//! real openraft node over the in-memory Raft network, and the peer's
//! drivers: the coordinator tick (`coordinator::tick`), the leader's
//! supervision (`supervise::duty`), the runner model ([`crate::follower`])
//! and a watch on Raft's metrics for the leader-per-term invariant.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use chitchat::{Chitchat, ChitchatHandle, ChitchatId, spawn_chitchat};
use openraft::ServerState;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vajra::cluster::coordinator::{self, Settling};
use vajra::cluster::membership::{self, HeardTracker, SUSPECT_AFTER_INTERVALS};
use vajra::cluster::network::CounterSnapshot;
use vajra::cluster::raft::{self, Raft, RaftNode};
use vajra::cluster::runner;
use vajra::cluster::state::{self, PeerInfo};
use vajra::cluster::status::ClusterStatus;
use vajra::cluster::supervise::{PROBE_TIMEOUT, SUPERVISE_EVERY, Supervisor};

use crate::clock::Clock;
use crate::follower::{CutOff, Follower, Reach, follow};
use crate::gossip::SimGossip;
use crate::invariants::Checker;
use crate::ledger::Ledger;
use crate::net::{Net, Verdict};
use crate::raft_net::{Member, Registry, SimRaftNetwork};

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
    heard: Arc<Mutex<HeardTracker>>,
    frozen: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the drivers of one peer read.
#[derive(Clone)]
struct Ctx {
    me: u64,
    addr: SocketAddr,
    raft: Raft,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    heard: Arc<Mutex<HeardTracker>>,
    frozen: watch::Receiver<bool>,
    shared: Arc<Shared>,
    machine: vajra::cluster::raft::store::StateMachine,
}

impl Ctx {
    /// The runner's cut-off rule on this peer's gossip view of its voters.
    async fn cut_off(&self) -> bool {
        let voters = coordinator::view(&self.raft, self.me).voters;
        let chitchat = self.chitchat.lock().await;
        let me = chitchat.self_chitchat_id().clone();
        let dead: std::collections::HashSet<&ChitchatId> = chitchat.dead_nodes().collect();
        let members = chitchat.node_states().iter().filter_map(|(id, node)| {
            let raft_id = node.get(state::RAFT_ID)?.parse().ok()?;
            Some((raft_id, *id != me && dead.contains(id)))
        });
        runner::cut_off_among(members, &voters)
    }

    async fn status(&self) -> ClusterStatus {
        let chitchat = self.chitchat.lock().await;
        membership::cluster_status(
            &chitchat,
            &mut self.heard.lock(),
            self.shared.gossip_interval * SUSPECT_AFTER_INTERVALS,
            CLUSTER_ID,
            "secret",
            CounterSnapshot::default(),
        )
    }

    fn frozen(&self) -> bool {
        *self.frozen.borrow()
    }
}

impl SimPeer {
    /// Starts peer `name` at `addr` as a new incarnation.
    pub async fn start(name: &str, addr: SocketAddr, shared: &Arc<Shared>) -> anyhow::Result<Self> {
        let generation = shared.clock.unix_ms();
        let raft_id = raft::node_id(name, generation);
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
        let (frozen, frozen_rx) = watch::channel(false);
        let heard = Arc::new(Mutex::new(HeardTracker::default()));
        let ctx = Ctx {
            me: raft_id,
            addr,
            raft: node.raft.clone(),
            chitchat: chitchat.chitchat(),
            heard: Arc::clone(&heard),
            frozen: frozen_rx.clone(),
            shared: Arc::clone(shared),
            machine: node.machine.clone(),
        };
        let follower = Follower::new(
            name.to_owned(),
            generation,
            Arc::clone(&shared.ledger),
            Arc::clone(&shared.checker),
            shared.clock,
        );
        let cut_off: CutOff = {
            let ctx = ctx.clone();
            Arc::new(move || {
                let ctx = ctx.clone();
                Box::pin(async move { ctx.cut_off().await })
            })
        };
        let reach = Reach {
            from: addr,
            registry: Arc::clone(&shared.registry),
            net: Arc::clone(&shared.net),
        };
        let tasks = vec![
            tokio::spawn(coordinate(ctx.clone())),
            tokio::spawn(supervise(ctx.clone())),
            tokio::spawn(watch_terms(ctx.clone())),
            tokio::spawn(follow(
                follower,
                node.machine.watch(),
                frozen_rx,
                cut_off,
                reach,
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
            heard,
            frozen,
            tasks,
        })
    }

    /// This peer's chitchat state.
    pub fn chitchat(&self) -> Arc<tokio::sync::Mutex<Chitchat>> {
        self.chitchat.chitchat()
    }

    /// Its current picture of the cluster.
    pub async fn status(&self, shared: &Shared) -> ClusterStatus {
        let chitchat = self.chitchat.chitchat();
        let chitchat = chitchat.lock().await;
        membership::cluster_status(
            &chitchat,
            &mut self.heard.lock(),
            shared.gossip_interval * SUSPECT_AFTER_INTERVALS,
            CLUSTER_ID,
            "secret",
            CounterSnapshot::default(),
        )
    }

    /// Freezes or wakes it: a frozen peer's drivers and messages stop.
    pub fn set_frozen(&self, frozen: bool, net: &Net) {
        if frozen {
            net.isolate(self.addr);
        } else {
            net.reconnect(self.addr);
        }
        self.frozen.send_replace(frozen);
    }

    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        *self.frozen.borrow()
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
        role: "peer".into(),
        weight: 1.0,
        cores: 2,
        cpu_percent: 0.0,
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
    }
}

/// The coordinator, every `coordinator::TICK`. An initialised follower's
/// tick decides nothing (`decide` returns no action for it), so its status
/// is not built: at 1000 peers that picture is the costliest thing here.
async fn coordinate(ctx: Ctx) {
    let mut settling = Settling::new(coordinator::settle_time(ctx.shared.gossip_interval));
    let mut gossiped = state::RaftRole::None;
    let mut gossiped_cluster = 0;
    let mut tick = tokio::time::interval(coordinator::TICK);
    loop {
        tick.tick().await;
        if ctx.frozen() {
            continue;
        }
        // As a real peer does: its Raft cluster, so leaders tell a stale
        // member of their own cluster from a foreign one.
        let cluster = ctx.machine.state().founded_by;
        membership::gossip_changed(
            &ctx.chitchat,
            state::RAFT_CLUSTER,
            &mut gossiped_cluster,
            cluster,
        )
        .await;
        let view = coordinator::view(&ctx.raft, ctx.me);
        let role = if view.initialized && !view.is_leader {
            coordinator::role(&view, ctx.me)
        } else {
            let status = ctx.status().await;
            coordinator::tick(&status, &ctx.raft, ctx.me, ctx.addr, &mut settling).await
        };
        membership::gossip_changed(&ctx.chitchat, state::RAFT_ROLE, &mut gossiped, role).await;
    }
}

/// The leader's supervision, as `Controller::supervise` does it: each tick
/// the real [`Supervisor`] names the suspects, they are probed over the
/// simulated network, and what it decides is committed.
async fn supervise(ctx: Ctx) {
    let mut supervisor = Supervisor::default();
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    loop {
        tick.tick().await;
        if ctx.frozen() {
            continue;
        }
        if ctx.raft.metrics().borrow().current_leader == Some(ctx.me) {
            supervise_once(&ctx, &mut supervisor).await;
        } else {
            supervisor.reset();
        }
    }
}

async fn supervise_once(ctx: &Ctx, supervisor: &mut Supervisor) {
    let Some(member) = ctx.shared.registry.get(ctx.me) else {
        return;
    };
    let Some(plan) = member.machine.state().plan else {
        return;
    };
    let mut status = ctx.status().await;
    let Some(tick) = supervisor.begin(&plan, &mut status, ctx.shared.clock.unix_ms()) else {
        return;
    };
    let silent = probe(ctx, tick.suspects.clone()).await;
    let Ok(Some(command)) =
        supervisor.finish(&plan, &tick, &status, &silent, ctx.shared.clock.unix_ms())
    else {
        return;
    };
    if let Err(e) = ctx.raft.client_write(command).await {
        tracing::debug!("supervision not committed: {e}");
    }
}

/// Probes each suspect as the leader does (a status request, answered
/// within `PROBE_TIMEOUT`); returns those that did not answer.
async fn probe(ctx: &Ctx, suspects: Vec<(String, String)>) -> BTreeSet<String> {
    let mut unreachable = BTreeSet::new();
    for (id, address) in suspects {
        let answered = match address.parse::<SocketAddr>() {
            Ok(to) => tokio::time::timeout(PROBE_TIMEOUT, round_trip(&ctx.shared, ctx.addr, to))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !answered {
            unreachable.insert(id);
        }
    }
    unreachable
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
async fn watch_terms(ctx: Ctx) {
    let mut metrics = ctx.raft.metrics();
    loop {
        let (state, term) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term)
        };
        if state == ServerState::Leader {
            ctx.shared.checker.leader_seen(term, ctx.me);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
