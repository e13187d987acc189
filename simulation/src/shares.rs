//! The engine as the simulation models it: each share the real runner
//! (`vajra::cluster::run::runner`) starts, steers and stops becomes
//! intervals in the [`Ledger`] of what its peer would send. The runner's
//! decisions are the real code; only what the engine would do with them
//! is modelled here:
//!
//! - a share runs its epoch from the epoch's start;
//! - following a later epoch switches at that epoch's start, or now if that
//!   is later (the schedule ran on meanwhile, as a partitioned peer's
//!   does);
//! - a share whose peer was frozen longer than [`STALL_GUARD`] holds from
//!   the freeze, as the engine does when it finds itself that far behind;
//!   the runner holds one cut off from the quorum;
//! - a share that sends again after a hold (released, or following the
//!   leader's epoch) sends late what it owes, except what fell due more
//!   than the test's max lag ago: that is missed;
//! - a stop ends it, at its hold if it held: a hold that lasts to the end
//!   sends nothing more.
//!
//! Apart from the engine model, this module reaches the leader over the
//! simulated network ([`SimQuorum`]) and checks every plan a peer applies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use vajra::cluster::consensus::ClusterState;
use vajra::cluster::run::plan::{Plan, ShareChange};
use vajra::cluster::run::runner::Quorum;
use vajra::cluster::run::share::{STALL_GUARD, Share, ShareEngine};
use vajra::config::RunArgs;
use vajra::engine::LoadModel;
use vajra::load::RateCurve;

use crate::clock::Clock;
use crate::freeze::Freezer;
use crate::invariants::{Checker, names};
use crate::ledger::Ledger;
use crate::net::Net;
use crate::raft_net::Registry;

/// Starts the shares of one peer incarnation.
pub struct SimEngine {
    /// Peer name.
    pub me: String,
    /// Its generation.
    pub generation: u64,
    /// Where intervals go.
    pub ledger: Arc<Ledger>,
    /// Where checks go.
    pub checker: Arc<Checker>,
    /// Virtual time.
    pub clock: Clock,
    /// The peer's freezes.
    pub freezer: Arc<Freezer>,
}

impl ShareEngine for SimEngine {
    fn start(&self, plan: &Plan, _curve: RateCurve) -> Result<Box<dyn Share>, String> {
        let plan = Arc::new(plan.clone());
        let mut share = SimShare {
            me: self.me.clone(),
            generation: self.generation,
            ledger: Arc::clone(&self.ledger),
            checker: Arc::clone(&self.checker),
            clock: self.clock,
            freezer: Arc::clone(&self.freezer),
            max_lag_ms: max_lag(&plan)?.as_millis() as u64,
            started_ms: self.clock.unix_ms(),
            current: Arc::clone(&plan),
            paused_at: None,
            stall_seen_until: 0,
            catch_up: None,
        };
        share.open(plan, share.current.start_unix_ms);
        Ok(Box::new(share))
    }
}

/// The dispatch bound of `plan`'s test: arrivals reached later are missed.
fn max_lag(plan: &Plan) -> Result<Duration, String> {
    let args: RunArgs = vajra::config::definition::parse_definition(&plan.definition.settings)
        .map_err(|e| e.to_string())?;
    let settings =
        vajra::config::definition::resolve_definition(args).map_err(|e| e.to_string())?;
    match settings.engine.load {
        LoadModel::Open { max_lag, .. } => Ok(max_lag),
        LoadModel::Closed { .. } => Err("a distributed test needs a target rate".into()),
    }
}

/// One running share, as intervals in the ledger.
struct SimShare {
    me: String,
    generation: u64,
    ledger: Arc<Ledger>,
    checker: Arc<Checker>,
    clock: Clock,
    freezer: Arc<Freezer>,
    /// Arrivals reached later than this are missed, not sent.
    max_lag_ms: u64,
    started_ms: u64,
    /// The epoch it runs.
    current: Arc<Plan>,
    /// Since when it sends nothing (a hold, or the start of a freeze that
    /// made it fall behind), while it does.
    paused_at: Option<u64>,
    /// The end of the last freeze already accounted for.
    stall_seen_until: u64,
    /// The virtual instant of the runner's last catch-up and the earliest
    /// switch it allowed: every epoch of one catch-up (the runner follows
    /// each in turn, at once) switches by the same rule.
    catch_up: Option<(u64, u64)>,
}

impl SimShare {
    fn open(&mut self, plan: Arc<Plan>, at: u64) {
        let epoch = plan.epoch;
        let still = self
            .ledger
            .open(&self.me, self.generation, Arc::clone(&plan), at);
        self.checker.check(names::ONE_EPOCH, still.is_none(), || {
            format!(
                "{} runs epoch {epoch} while still running epoch {still:?}",
                self.me
            )
        });
        self.current = plan;
    }

    /// Takes in a freeze that ended since last looked: the engine stopped
    /// at the freeze and, behind by more than the guard on waking, holds
    /// by itself, before the runner steers it in any way.
    fn notice_stall(&mut self) {
        if let Some(span) = self.freezer.last()
            && let Some(until) = span.until_ms
            && until > self.stall_seen_until
            && span.from_ms >= self.started_ms
        {
            self.stall_seen_until = until;
            if Duration::from_millis(until - span.from_ms) > STALL_GUARD {
                self.paused_at.get_or_insert(span.from_ms);
            }
        }
    }

    /// Sends again from `now` after a pause: what fell due since the
    /// pause more than the max lag ago is missed, the rest is sent late.
    /// Returns where sending picks up.
    fn resume(&mut self, now: u64) -> u64 {
        let Some(paused_at) = self.paused_at.take() else {
            return now;
        };
        let picks_up = paused_at.max(now.saturating_sub(self.max_lag_ms));
        self.ledger.close(&self.me, self.generation, paused_at);
        self.open(Arc::clone(&self.current), picks_up);
        picks_up
    }

    /// The earliest switch of the catch-up under way at `now`, or of a new
    /// one: where a paused share picks up, or now (a running share's
    /// schedule ran on until it learnt of the epoch).
    fn floor(&mut self, now: u64) -> u64 {
        if let Some((_, floor)) = self.catch_up.filter(|(at, _)| *at == now) {
            return floor;
        }
        let floor = self.resume(now);
        self.catch_up = Some((now, floor));
        floor
    }
}

impl Share for SimShare {
    fn follow(&mut self, plan: &Plan, change: &ShareChange, _tail: RateCurve) {
        self.notice_stall();
        let now = self.clock.unix_ms();
        let at = change.start_unix_ms.max(self.floor(now));
        self.ledger.close(&self.me, self.generation, at);
        // The epoch as this peer follows it: its share from its start.
        let epoch = Plan {
            epoch: change.epoch,
            start_unix_ms: change.start_unix_ms,
            shares: Arc::new(BTreeMap::from([(self.me.clone(), change.share)])),
            past: Vec::new(),
            ..plan.clone()
        };
        self.open(Arc::new(epoch), at);
    }

    fn hold_now(&mut self) {
        self.paused_at.get_or_insert(self.clock.unix_ms());
    }

    fn is_held(&mut self) -> bool {
        self.notice_stall();
        self.paused_at.is_some()
    }

    fn release(&mut self) {
        self.notice_stall();
        let now = self.clock.unix_ms();
        self.resume(now);
    }

    fn stop(&mut self) {
        self.notice_stall();
        let now = self.clock.unix_ms();
        let at = self
            .paused_at
            .take()
            .map_or(now, |paused_at| paused_at.min(now));
        self.ledger.close(&self.me, self.generation, at);
    }

    fn is_over(&self) -> bool {
        false
    }
}

/// How a peer's runner reaches the leader, and tells whether it is cut off.
pub struct SimQuorum {
    /// The peer's address.
    pub from: SocketAddr,
    /// Raft members.
    pub registry: Arc<Registry>,
    /// The network.
    pub net: Arc<Net>,
    /// The runner's cut-off rule on this peer's own gossip view.
    pub cut_off: Box<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
}

impl Quorum for SimQuorum {
    fn cut_off(&self) -> BoxFuture<'_, bool> {
        (self.cut_off)()
    }

    fn leader_plan(&self) -> BoxFuture<'_, Option<Option<Plan>>> {
        Box::pin(leader_plan(&self.registry, &self.net, Some(self.from)))
    }
}

/// The plan of a leader (reachable from `from`, if given) that can confirm
/// its leadership with a quorum, as a peer's control request would get it:
/// `Some(plan or none)` when one answered within 2 s.
pub async fn leader_plan(
    registry: &Registry,
    net: &Net,
    from: Option<SocketAddr>,
) -> Option<Option<Plan>> {
    let leader = registry
        .all()
        .into_iter()
        .filter(|(_, m)| !net.is_isolated(m.addr))
        .filter(|(_, m)| from.is_none_or(|f| net.connected(f, m.addr) && net.connected(m.addr, f)))
        .filter(|(id, m)| m.raft.metrics().borrow().current_leader == Some(*id))
        .max_by_key(|(_, m)| m.raft.metrics().borrow().current_term)?;
    let confirmed =
        tokio::time::timeout(Duration::from_secs(2), leader.1.raft.ensure_linearizable()).await;
    matches!(confirmed, Ok(Ok(_))).then(|| leader.1.machine.state().plan)
}

/// Checks every plan peer `me` applies: the same epoch is the same plan on
/// every peer, and its own state machine never goes back an epoch.
pub async fn check_plans(
    me: String,
    mut state: watch::Receiver<ClusterState>,
    checker: Arc<Checker>,
) {
    let mut last: Option<(String, u64)> = None;
    loop {
        let plan = state.borrow_and_update().plan.clone();
        if let Some(plan) = plan {
            let seen = (plan.test_id.clone(), plan.epoch);
            if last.as_ref() != Some(&seen) {
                checker.plan_applied(&plan);
                if let Some((test, epoch)) = &last
                    && *test == plan.test_id
                {
                    checker.check(names::ONE_EPOCH, plan.epoch >= *epoch, || {
                        format!("{me} went back from epoch {epoch} to {}", plan.epoch)
                    });
                }
                last = Some(seen);
            }
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
