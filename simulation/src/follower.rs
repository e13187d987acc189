//! What a peer's runner would run, epoch by epoch, without the engine.
//!
//! It follows the peer's real Raft state machine and applies the runner's
//! rules (`vajra::cluster::runner`): a plan that gives the peer a share
//! starts it from the epoch's start; a newer epoch of the same test is
//! spliced in at its start, or when it is learnt if that is later (the
//! schedule ran on meanwhile, as a partitioned peer's does); a peer frozen
//! for longer than `STALL_GUARD` holds on waking, takes the leader's
//! (quorum-confirmed) plan, and switches at that epoch's start; a peer that
//! finds itself cut off from the Raft quorum (the runner's own
//! `cut_off` on this peer's gossip view and voters) and gets no leader's
//! confirmation within `CONFIRM_WITHIN` holds its share until a leader (or
//! its own state machine) gives it the epoch: it then owes its old share
//! up to that epoch's start, or up to when it held if that was later; a
//! hold that lasts to the end sends nothing more. A stop ends it. Each
//! interval goes into the [`Ledger`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;
use tokio::sync::watch;
use vajra::cluster::plan::Plan;
use vajra::cluster::raft::ClusterState;
use vajra::cluster::runner::{CONFIRM_WITHIN, STALL_GUARD};

use crate::clock::Clock;
use crate::invariants::{Checker, names};
use crate::ledger::Ledger;
use crate::net::Net;
use crate::raft_net::Registry;

/// One incarnation's runner model.
pub struct Follower {
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
    current: Option<(String, u64)>,
    ran: HashSet<String>,
    last_epoch: Option<(String, u64)>,
    /// When it held its share (cut off), while it does.
    held_at: Option<u64>,
}

impl Follower {
    /// A follower for `me`, generation `generation`.
    pub fn new(
        me: String,
        generation: u64,
        ledger: Arc<Ledger>,
        checker: Arc<Checker>,
        clock: Clock,
    ) -> Self {
        Self {
            me,
            generation,
            ledger,
            checker,
            clock,
            current: None,
            ran: HashSet::new(),
            last_epoch: None,
            held_at: None,
        }
    }

    /// Whether it runs a share and has not held it.
    pub fn sending(&self) -> bool {
        self.current.is_some() && self.held_at.is_none()
    }

    /// Whether it holds its share.
    pub fn holding(&self) -> bool {
        self.held_at.is_some()
    }

    /// It holds its share from now (cut off from the quorum).
    pub fn hold_now(&mut self) {
        if self.sending() {
            self.held_at = Some(self.clock.unix_ms());
        }
    }

    /// Applies the local state machine's plan, or, when `held`, the
    /// leader's (a newer epoch than this runs is spliced in; anything else
    /// is ignored, as the runner does).
    pub fn on_plan(&mut self, plan: Option<&Plan>, held: bool) {
        let now = self.clock.unix_ms();
        if let Some(plan) = plan {
            let seen = (plan.test_id.clone(), plan.epoch);
            if self.last_epoch.as_ref() != Some(&seen) {
                self.checker.plan_applied(plan);
                // The leader's plan may be ahead of the local state
                // machine; only the latter must never go back.
                if !held {
                    self.check_forward(plan);
                }
            }
        }
        match (plan, self.current.clone()) {
            (Some(p), None)
                if p.shares.contains_key(&self.me) && !self.ran.contains(&p.test_id) =>
            {
                self.ran.insert(p.test_id.clone());
                self.hold(p, p.start_unix_ms);
            }
            (Some(p), Some((test, epoch))) if p.test_id == test && p.epoch > epoch => {
                let at = match self.held_at.take() {
                    Some(held_at) => p.start_unix_ms.max(held_at),
                    None if held => p.start_unix_ms,
                    None => p.start_unix_ms.max(now),
                };
                self.ledger.close(&self.me, self.generation, at);
                self.hold(p, at);
            }
            // The leader confirms the epoch it holds: it goes on (and
            // sends what it owes).
            (Some(p), Some((test, epoch))) if held && p.test_id == test && p.epoch == epoch => {
                self.held_at = None;
            }
            (Some(p), Some((test, _))) if p.test_id != test => self.stop(now),
            (None, Some(_)) => self.stop(now),
            _ => {}
        }
    }

    fn hold(&mut self, plan: &Plan, at: u64) {
        let still = self
            .ledger
            .open(&self.me, self.generation, Arc::new(plan.clone()), at);
        self.checker.check(names::ONE_EPOCH, still.is_none(), || {
            format!(
                "{} runs epoch {} while still running epoch {still:?}",
                self.me, plan.epoch
            )
        });
        self.current = Some((plan.test_id.clone(), plan.epoch));
    }

    /// This incarnation ends (stop or kill) at `at`; a share held since
    /// earlier sent nothing after it held.
    pub fn stop(&mut self, at: u64) {
        let at = self.held_at.take().map_or(at, |held_at| held_at.min(at));
        self.ledger.close(&self.me, self.generation, at);
        self.current = None;
    }

    fn check_forward(&mut self, plan: &Plan) {
        if let Some((test, epoch)) = &self.last_epoch {
            if *test == plan.test_id {
                self.checker
                    .check(names::ONE_EPOCH, plan.epoch >= *epoch, || {
                        format!("{} went back from epoch {epoch} to {}", self.me, plan.epoch)
                    });
            }
        }
        self.last_epoch = Some((plan.test_id.clone(), plan.epoch));
    }
}

/// Tells whether this peer is cut off from the Raft quorum (the runner's
/// `cut_off` on the peer's own gossip view and voters).
pub type CutOff = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

/// Runs `follower` on `state` until the state machine goes away. While
/// `frozen` it sees nothing; on waking after more than `STALL_GUARD` it
/// asks the leader first. Every 100 ms it checks whether it is cut off
/// from the quorum, as the runner does.
pub async fn follow(
    mut follower: Follower,
    mut state: watch::Receiver<ClusterState>,
    mut frozen: watch::Receiver<bool>,
    cut_off: CutOff,
    reach: Reach,
) {
    let mut frozen_at = None;
    let mut check = tokio::time::interval(Duration::from_millis(100));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cut_seen = false;
    let mut state_changed = true;
    loop {
        if *frozen.borrow_and_update() {
            frozen_at.get_or_insert(follower.clock.ms());
            if frozen.changed().await.is_err() {
                return;
            }
            state_changed = true;
            continue;
        }
        if let Some(since) = frozen_at.take() {
            let stalled = follower.clock.ms() - since > STALL_GUARD.as_millis() as u64;
            if stalled {
                if let Some(plan) = reach.leader_plan().await {
                    follower.on_plan(plan.as_ref(), true);
                }
            }
        }
        if std::mem::take(&mut state_changed) {
            let plan = state.borrow_and_update().plan.clone();
            follower.on_plan(plan.as_ref(), false);
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                state_changed = true;
            }
            changed = frozen.changed() => if changed.is_err() { return },
            _ = check.tick() => {
                if follower.holding() {
                    if let Some(plan) = reach.leader_plan().await {
                        follower.on_plan(plan.as_ref(), true);
                    }
                } else if follower.sending() {
                    let cut = cut_off().await;
                    if cut && !cut_seen {
                        let confirmed = tokio::time::timeout(CONFIRM_WITHIN, reach.leader_plan())
                            .await
                            .is_ok_and(|answer| answer.is_some());
                        if !confirmed {
                            follower.hold_now();
                        }
                    }
                    cut_seen = cut;
                }
            }
        }
    }
}

/// How a peer reaches the leader: from its own address, over the
/// simulated network (a partition or a freeze cuts it off).
#[derive(Clone)]
pub struct Reach {
    /// The peer's address.
    pub from: SocketAddr,
    /// Raft members.
    pub registry: Arc<Registry>,
    /// The network.
    pub net: Arc<Net>,
}

impl Reach {
    /// The plan of a leader this peer can reach and that can confirm its
    /// leadership with a quorum: `Some(plan or none)` when one answered
    /// within 2 s.
    pub async fn leader_plan(&self) -> Option<Option<Plan>> {
        leader_plan(&self.registry, &self.net, Some(self.from)).await
    }
}

/// The plan of a leader (reachable from `from`, if given) that can confirm
/// its leadership with a quorum: `Some(plan or none)` when one answered
/// within 2 s.
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
