//! One simulation run: form the cluster, start a test, play the scenario's
//! faults, watch the invariants, and sum up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use vajra::cluster::run::plan::TestDefinition;
use vajra::cluster::run::supervise::END_GRACE;

use crate::clock::{Clock, UNIX_ORIGIN_MS};
use crate::finish::{self, Counts};
use crate::invariants::{Checker, Violation, names};
use crate::ledger::{Coverage, Ledger};
use crate::measure::{self, Pending};
use crate::net::{Net, NetStats, peer_addr};
use crate::peer::Shared;
use crate::raft_net::Registry;
use crate::scenario::{self, Action, Scenario};
use crate::world::World;

/// How often the driver looks (virtual time).
pub const STEP: Duration = Duration::from_millis(100);
/// Time without faults at the end of a test, for convergence.
pub const QUIET: Duration = Duration::from_secs(25);
/// Faults start this long after the test does.
pub const FAULTS_FROM: Duration = Duration::from_secs(5);
/// Stated bound: after the last fault, membership and plan agree within it.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(20);
/// Stated bound for formation (gossip, leader, every peer in Raft).
pub const FORMATION_BOUND: Duration = Duration::from_secs(300);
/// Stated bound on loss: a share whose holder a fault takes away (killed,
/// frozen, restarted, partitioned, cut off) goes unsent for at most this
/// long: failure detection (about 1.2 s at the default gossip interval,
/// 2.1 s at worst measured), the leader's probes and the re-split's delay.
pub const LOSS_WINDOW: Duration = Duration::from_secs(4);
/// Stated bound on double sends: both sides of a partition (or a one-way
/// cut) run the minority's shares for at most this long, until the
/// minority sees itself cut off and holds.
pub const DOUBLE_WINDOW: Duration = Duration::from_secs(4);
/// How late a peer may apply a new epoch (its log behind on a lossy
/// network), running its old share meanwhile: the slack every re-split and
/// rate update adds to both bounds.
pub const LATE_APPLY: Duration = Duration::from_millis(500);
/// Peers started per step after the seeds (a rollout, not a stampede: a
/// thousand first gossip messages at once overflow the seeds' inboxes).
pub const JOIN_BATCH: usize = 25;
/// How many of the first peers serve as seeds.
pub const SEEDS: usize = 3;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Peers at the start.
    pub peers: usize,
    /// Seed of every random decision the simulation makes.
    pub seed: u64,
    /// Faults to play.
    pub scenario: Scenario,
    /// Length of the test, virtual seconds (at least 35).
    pub duration_secs: u64,
    /// Gossip interval.
    pub gossip_interval: Duration,
    /// Cluster rate at the start of the test.
    pub rate: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Peers at the start.
    pub peers: usize,
    /// Peers running at the end.
    pub peers_at_end: usize,
    /// The seed.
    pub seed: u64,
    /// The scenario's name.
    pub scenario: String,
    /// Virtual seconds simulated.
    pub virtual_secs: f64,
    /// Wall-clock seconds it took.
    pub wall_secs: f64,
    /// The seeds had a leader (virtual ms after start); the other peers
    /// start then.
    pub seeds_led_ms: Option<u64>,
    /// Every peer saw every peer alive (ms after the last peer started).
    pub gossip_formed_ms: Option<u64>,
    /// A leader with every peer in its Raft membership (ms after the last
    /// peer started).
    pub raft_formed_ms: Option<u64>,
    /// Kill → every peer sees it dead (ms), per kill.
    pub detections: Vec<u64>,
    /// Kill → every peer's plan leaves it out (ms), per share holder.
    pub resplits: Vec<u64>,
    /// Leave announced → nothing keeps the leaver (its share handed over,
    /// its vote given up), ms, per leave.
    pub leaves: Vec<u64>,
    /// Last fault → membership, Raft and plan agree (ms).
    pub convergence_ms: Option<u64>,
    /// Faults played, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Counts.
    pub counts: Counts,
    /// Distinct plans (epochs) committed.
    pub epochs: usize,
    /// Distinct Raft terms with a leader.
    pub terms: usize,
    /// Checks done, per invariant.
    pub checks: BTreeMap<&'static str, u64>,
    /// Violations.
    pub violations: Vec<Violation>,
    /// What the network did.
    pub net: NetStats,
    /// Hash of every leader, plan and violation with its virtual time, and
    /// of the end figures: two runs of one seed print the same one.
    pub fingerprint: u64,
}

/// Runs `config` on a paused current-thread runtime.
pub fn run(config: &Config) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        config.duration_secs >= 35,
        "--duration must be at least 35 s"
    );
    anyhow::ensure!(config.peers >= 1, "--peers must be at least 1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let wall = std::time::Instant::now();
    let mut summary = runtime.block_on(simulate(config))?;
    summary.wall_secs = wall.elapsed().as_secs_f64();
    Ok(summary)
}

async fn simulate(config: &Config) -> anyhow::Result<Summary> {
    let clock = Clock::start();
    let checker = Arc::new(Checker::new(config.seed, clock));
    let shared = Arc::new(Shared {
        net: Arc::new(Net::new(config.seed)),
        channel: ChannelTransport::default(),
        registry: Arc::new(Registry::default()),
        clock,
        checker: Arc::clone(&checker),
        ledger: Arc::new(Ledger::default()),
        gossip_interval: config.gossip_interval,
        seeds: (0..SEEDS.min(config.peers))
            .map(|i| peer_addr(i).to_string())
            .collect(),
    });
    let mut driver = Driver::new(World::new(Arc::clone(&shared)), config);
    let mut summary = Summary {
        peers: config.peers,
        seed: config.seed,
        scenario: config.scenario.to_string(),
        ..Summary::default()
    };
    // As docs/cluster.md starts a cluster: the seeds first, then the rest.
    for _ in 0..SEEDS.min(config.peers) {
        driver.world.join().await?;
    }
    while driver.world.leader().is_none() && clock.ms() < FORMATION_BOUND.as_millis() as u64 {
        tokio::time::sleep(STEP).await;
    }
    summary.seeds_led_ms = Some(clock.ms());
    for i in SEEDS..config.peers {
        driver.world.join().await?;
        if (i - SEEDS + 1) % JOIN_BATCH == 0 {
            tokio::time::sleep(STEP).await;
        }
    }
    form(&driver.world, &mut summary).await;
    if summary.raft_formed_ms.is_some() {
        driver.play(config, &mut summary).await;
    }
    summary.peers_at_end = driver.world.peers.len();
    summary.faults = driver.faults.clone();
    summary.leaves = driver.leaves.clone();
    summary.virtual_secs = clock.ms() as f64 / 1_000.0;
    finish::check(&driver.world, &driver.pending, driver.bounds, &mut summary);
    summary.epochs = checker.plans_seen();
    summary.terms = checker.terms_seen();
    summary.checks = checker.checks();
    summary.violations = checker.violations();
    summary.net = shared.net.stats();
    summary.fingerprint = checker.fingerprint(&end_figures(&summary));
    Ok(summary)
}

/// The figures of `summary` that a replay must reproduce, as words.
fn end_figures(summary: &Summary) -> Vec<u64> {
    let c = &summary.counts;
    let mut words = vec![
        summary.peers_at_end as u64,
        c.intended.to_bits(),
        c.target.to_bits(),
        c.peer_total,
        c.merged_total,
        summary.convergence_ms.unwrap_or(u64::MAX),
    ];
    words.extend(&summary.detections);
    words.extend(&summary.resplits);
    words.extend(&summary.leaves);
    words.extend(summary.checks.values());
    words
}

/// Waits for gossip to agree and Raft to take every peer in.
async fn form(world: &World, summary: &mut Summary) {
    let clock = world.shared.clock;
    let started = clock.ms();
    while clock.ms() < started + FORMATION_BOUND.as_millis() as u64 {
        tokio::time::sleep(STEP).await;
        if summary.gossip_formed_ms.is_none() && measure::gossip_agrees(world).await {
            summary.gossip_formed_ms = Some(clock.ms() - started);
        }
        if summary.gossip_formed_ms.is_some() && measure::raft_agrees(world) {
            summary.raft_formed_ms = Some(clock.ms() - started);
            return;
        }
    }
    world.shared.checker.check(names::FORMATION, false, || {
        format!(
            "no formed cluster within {FORMATION_BOUND:?} (gossip {:?})",
            summary.gossip_formed_ms
        )
    });
}

/// Plays a scenario on the world.
struct Driver {
    world: World,
    rng: fastrand::Rng,
    pending: Vec<Pending>,
    bounds: Coverage,
    rate: f64,
    peak_rate: f64,
    minority: Vec<usize>,
    thaws: Vec<(u64, usize)>,
    uncuts: Vec<(u64, Vec<(SocketAddr, SocketAddr)>)>,
    /// The partition in force: since (virtual ms), its minority's size and
    /// the largest share then.
    partitioned: Option<(u64, usize, f64)>,
    /// Peers leaving gracefully: index, name, generation and when they
    /// announced it.
    leaving: Vec<(usize, String, u64, u64)>,
    /// How long each leave took to be free to go, ms.
    leaves: Vec<u64>,
    faults: BTreeMap<&'static str, u64>,
}

impl Driver {
    fn new(world: World, config: &Config) -> Self {
        Self {
            world,
            rng: fastrand::Rng::with_seed(config.seed.rotate_left(17) ^ 0x5151),
            pending: Vec::new(),
            bounds: Coverage::default(),
            rate: config.rate,
            peak_rate: config.rate,
            minority: Vec::new(),
            thaws: Vec::new(),
            uncuts: Vec::new(),
            partitioned: None,
            leaving: Vec::new(),
            leaves: Vec::new(),
            faults: BTreeMap::new(),
        }
    }

    async fn play(&mut self, config: &Config, summary: &mut Summary) {
        let clock = self.world.shared.clock;
        let args: vajra::config::RunArgs = serde_json::from_value(serde_json::json!({
            "task": "noop",
            "tps": config.rate,
            "duration": format!("{}s", config.duration_secs),
            "ramp-up": "5s",
        }))
        .expect("the simulated test's settings parse");
        let (definition, _) = TestDefinition::compile(&args).expect("the simulated test compiles");
        let plan = loop {
            match self.world.start_test(definition.clone()).await {
                Ok(plan) => break plan,
                Err(e) if clock.ms() < FORMATION_BOUND.as_millis() as u64 => {
                    tracing::debug!("start refused: {e}");
                    tokio::time::sleep(STEP).await;
                }
                Err(e) => {
                    self.world
                        .shared
                        .checker
                        .check(names::FORMATION, false, || {
                            format!("the test could not start: {e}")
                        });
                    return;
                }
            }
        };
        let test_start = plan.start_unix_ms - UNIX_ORIGIN_MS;
        let window = (
            FAULTS_FROM.as_millis() as u64,
            (config.duration_secs * 1_000).saturating_sub(QUIET.as_millis() as u64),
        );
        let mut events = scenario::events(config.scenario, window, &mut self.rng).into_iter();
        let mut next = events.next();
        let quiet_from = test_start + window.1;
        // The leader ends the test after its curve, the drain and a grace.
        let (end_unix, drain) = plan.end().map_or((plan.start_unix_ms, 0), |end| {
            (end.curve_ends_unix_ms, end.drain_ms)
        });
        let end = end_unix - UNIX_ORIGIN_MS + drain + END_GRACE.as_millis() as u64 + 3_000;
        let mut last_look = 0;
        while clock.ms() < end {
            let now = clock.ms();
            while let Some(event) = next.as_ref().filter(|e| test_start + e.at_ms <= now) {
                let action = event.action.clone();
                self.apply(action).await;
                next = events.next();
            }
            self.follow_ups(now);
            self.let_leavers_go(now).await;
            measure::poll(&self.world, &mut self.pending, now).await;
            if now >= quiet_from && summary.convergence_ms.is_none() && now >= last_look + 500 {
                last_look = now;
                if measure::gossip_agrees(&self.world).await
                    && measure::raft_agrees(&self.world)
                    && measure::plans_agree(&self.world)
                {
                    summary.convergence_ms = Some(now - quiet_from);
                }
            }
            tokio::time::sleep(STEP).await;
        }
        // A partition the scenario never healed costs its whole windows.
        self.close_partition();
    }

    /// Wakes frozen peers and restores cut links that are due.
    fn follow_ups(&mut self, now: u64) {
        let net = Arc::clone(&self.world.shared.net);
        for (_, index) in self.thaws.iter().filter(|(due, _)| *due <= now) {
            self.world.set_frozen(*index, false);
        }
        self.thaws.retain(|(due, _)| *due > now);
        for (_, links) in self.uncuts.iter().filter(|(due, _)| *due <= now) {
            for (from, to) in links {
                net.uncut(*from, *to);
            }
        }
        self.uncuts.retain(|(due, _)| *due > now);
    }

    /// The largest share of the latest epoch any running peer applied, for
    /// the count bounds (the leader may be gone at the moment of a fault).
    fn max_share(&self) -> f64 {
        self.world
            .peers
            .values()
            .filter_map(|p| p.node.machine.state().plan)
            .max_by_key(|p| p.epoch)
            .map_or(1.0, |p| p.shares.values().copied().fold(0.0, f64::max))
    }

    /// Adds what a fault that takes `peers` share holders away may lose,
    /// or send twice when `both_sides` run them (a partition, a cut), to
    /// the bounds; any re-split adds the late-apply slack to both.
    fn expose(&mut self, peers: usize, both_sides: bool) {
        let per_second = peers as f64 * self.max_share() * self.peak_rate;
        self.bounds.never_sent += per_second * LOSS_WINDOW.as_secs_f64();
        if both_sides {
            self.bounds.sent_twice += per_second * DOUBLE_WINDOW.as_secs_f64();
        }
        self.late_apply_slack(peers);
    }

    /// Adds what cutting `peers` share holders (each at most `share`) off
    /// for `secs` may cost either way: no more than the windows, nor than
    /// the cut's length.
    fn expose_for(&mut self, peers: usize, share: f64, secs: f64) {
        let per_second = peers as f64 * share * self.peak_rate;
        self.bounds.never_sent += per_second * secs.min(LOSS_WINDOW.as_secs_f64());
        self.bounds.sent_twice += per_second * secs.min(DOUBLE_WINDOW.as_secs_f64());
        self.late_apply_slack(peers);
    }

    /// Adds to both bounds what a re-split moving `peers` shares may be
    /// off by while peers apply it late.
    fn late_apply_slack(&mut self, peers: usize) {
        let late = peers as f64 * self.max_share() * self.peak_rate * LATE_APPLY.as_secs_f64();
        self.bounds.never_sent += late;
        self.bounds.sent_twice += late;
    }

    fn count(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    /// Awake running peers other than the seeds, in index order.
    fn candidates(&self) -> Vec<usize> {
        self.world
            .peers
            .iter()
            .filter(|(i, p)| **i >= SEEDS && !p.is_frozen())
            .map(|(i, _)| *i)
            .collect()
    }

    fn pick(&mut self) -> Option<usize> {
        let candidates = self.candidates();
        (!candidates.is_empty()).then(|| candidates[self.rng.usize(..candidates.len())])
    }

    async fn apply(&mut self, action: Action) {
        let now = self.world.shared.clock.ms();
        tracing::info!("t={now} ms: {action:?}");
        match action {
            Action::Conditions { loss, delay_ms } => {
                self.world.shared.net.set_conditions(loss, delay_ms);
            }
            Action::Kill => {
                if let Some(index) = self.pick() {
                    self.kill(index).await;
                }
            }
            Action::KillLeader => {
                if let Some(index) = self.world.leader() {
                    self.kill(index).await;
                }
            }
            Action::Restart => self.restart().await,
            Action::Leave => {
                if let Some(index) = self.pick() {
                    self.leave(index).await;
                }
            }
            Action::LeaveLeader => {
                if let Some(index) = self.world.leader() {
                    self.leave(index).await;
                }
            }
            Action::Join => {
                if self.world.join().await.is_ok() {
                    self.count("join");
                    self.late_apply_slack(1);
                }
            }
            Action::Freeze(ms) => {
                if let Some(index) = self.pick() {
                    self.world.set_frozen(index, true);
                    self.thaws.push((now + ms, index));
                    self.count("freeze");
                    self.expose(1, false);
                }
            }
            Action::Partition {
                fraction,
                with_leader,
                sticky,
            } => self.partition(fraction, with_leader, sticky),
            Action::Heal => self.heal(),
            Action::Asymmetric(k, ms) => self.asymmetric(k, ms, now),
            Action::RateUpdate(factor) => self.update_rate(self.rate * factor).await,
        }
    }

    /// Asks the leader for a new rate, as `vajra-peer update` would,
    /// retrying while no leader commits (e.g. the old one is cut off).
    async fn update_rate(&mut self, tps: f64) {
        for _ in 0..5 {
            match self.world.update_rate(tps).await {
                Ok(_) => {
                    self.count("rate update");
                    let late = (tps - self.rate).abs() * LATE_APPLY.as_secs_f64();
                    self.bounds.never_sent += late;
                    self.bounds.sent_twice += late;
                    self.rate = tps;
                    self.peak_rate = self.peak_rate.max(tps);
                    return;
                }
                Err(e) => tracing::info!("rate update not done: {e}"),
            }
            tokio::time::sleep(STEP).await;
        }
        self.count("rate update refused");
    }

    async fn kill(&mut self, index: usize) {
        let Some(peer) = self.world.peers.get(&index) else {
            return;
        };
        let id = peer.chitchat_id.clone();
        let held_share = peer
            .node
            .machine
            .state()
            .plan
            .is_some_and(|p| p.shares.contains_key(&peer.name));
        self.expose(1, false);
        if self.world.kill(index).await {
            self.count("kill");
            self.pending.push(Pending {
                id,
                at_ms: self.world.shared.clock.ms(),
                detected_ms: None,
                held_share,
                resplit_ms: None,
                cancelled: false,
            });
        }
    }

    /// Has peer `index` announce that it leaves, as SIGTERM makes a peer
    /// do ([`let_leavers_go`](Self::let_leavers_go) lets it go).
    async fn leave(&mut self, index: usize) {
        let Some(peer) = self.world.peers.get(&index) else {
            return;
        };
        if self.leaving.iter().any(|(i, ..)| *i == index) {
            return;
        }
        peer.chitchat()
            .lock()
            .await
            .self_node_state()
            .set(vajra::cluster::membership::state::LEAVING, "1");
        let now = self.world.shared.clock.ms();
        self.leaving
            .push((index, peer.name.clone(), peer.generation, now));
        self.count("leave");
        // The hand-over is exact; only an epoch applied late may be off.
        self.late_apply_slack(1);
    }

    /// Stops each leaving peer that nothing keeps any more (by the real
    /// `cluster::leave::keeps`, told whether its engine model still sends
    /// a share, as a real peer waits for its engine's run to end), or whose
    /// leave took longer than a real peer waits: then its share is lost as
    /// a killed peer's is.
    async fn let_leavers_go(&mut self, now: u64) {
        let mut gone = Vec::new();
        for (index, name, generation, since) in &self.leaving {
            let Some(peer) = self
                .world
                .peers
                .get(index)
                .filter(|p| p.generation == *generation)
            else {
                gone.push((*index, None));
                continue;
            };
            let plan = peer.node.machine.state().plan;
            let unix_now = self.world.shared.clock.unix_ms();
            let share_running = self.world.shared.ledger.sends(name, *generation, unix_now);
            let voters =
                vajra::cluster::consensus::coordinator::view(&peer.node.raft, peer.raft_id).voters;
            let status = peer.status().await;
            let kept = vajra::cluster::leave::keeps(
                name,
                peer.raft_id,
                plan.as_ref(),
                share_running,
                &voters,
                &status,
            );
            let waited = now - since;
            if kept.is_none() || waited >= vajra::cluster::leave::DEFAULT_WITHIN.as_millis() as u64
            {
                gone.push((*index, Some((waited, kept))));
            }
        }
        for (index, left) in gone {
            self.leaving.retain(|(i, ..)| *i != index);
            let Some((waited, kept)) = left else {
                continue;
            };
            if let Some(kept) = kept {
                tracing::info!("peer {index} leaves after {waited} ms although {kept}");
                self.count("leave cut short");
                self.expose(1, false);
            }
            self.leaves.push(waited);
            self.world.kill(index).await;
        }
    }

    async fn restart(&mut self) {
        let down: Vec<usize> = self.world.down.keys().copied().collect();
        if down.is_empty() {
            return;
        }
        let index = down[self.rng.usize(..down.len())];
        let name = crate::world::peer_name(index);
        for p in self.pending.iter_mut().filter(|p| p.id.node_id == name) {
            p.cancelled = true;
        }
        if self.world.restart(index).await.is_ok() {
            self.count("restart");
            self.expose(1, false);
        }
    }

    fn partition(&mut self, fraction: f64, with_leader: bool, sticky: bool) {
        let running: Vec<usize> = self.world.peers.keys().copied().collect();
        let k = ((running.len() as f64 * fraction).round() as usize).clamp(1, running.len() / 2);
        self.minority.retain(|i| self.world.peers.contains_key(i));
        if !sticky || self.minority.is_empty() {
            let mut shuffled = running;
            self.rng.shuffle(&mut shuffled);
            shuffled.truncate(k);
            if let Some(leader) = self.world.leader().filter(|_| with_leader) {
                if !shuffled.contains(&leader) {
                    shuffled[0] = leader;
                }
            }
            self.minority = shuffled;
        }
        self.world
            .shared
            .net
            .partition(&self.world.addrs(&self.minority));
        self.count("partition");
        self.partitioned = Some((
            self.world.shared.clock.ms(),
            self.minority.len(),
            self.max_share(),
        ));
    }

    fn heal(&mut self) {
        self.world.shared.net.heal();
        self.close_partition();
    }

    /// Adds what the partition that ends now may have cost: a partition
    /// shorter than the windows costs at most its length.
    fn close_partition(&mut self) {
        if let Some((since, peers, share)) = self.partitioned.take() {
            let secs = (self.world.shared.clock.ms() - since) as f64 / 1_000.0;
            self.expose_for(peers, share, secs);
        }
    }

    fn asymmetric(&mut self, k: usize, ms: u64, now: u64) {
        let mut chosen = Vec::new();
        for _ in 0..k {
            if let Some(i) = self.pick().filter(|i| !chosen.contains(i)) {
                chosen.push(i);
            }
        }
        let senders = self.world.addrs(&chosen);
        let everyone = self
            .world
            .addrs(&self.world.peers.keys().copied().collect::<Vec<_>>());
        let mut links = Vec::new();
        for from in &senders {
            for to in everyone.iter().filter(|to| *to != from) {
                self.world.shared.net.cut(*from, *to);
                links.push((*from, *to));
            }
        }
        self.uncuts.push((now + ms, links));
        self.count("one-way cut");
        let share = self.max_share();
        self.expose_for(chosen.len(), share, ms as f64 / 1_000.0);
    }
}
