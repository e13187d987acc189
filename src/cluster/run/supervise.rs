//! The leader's duty while a test runs: a pure decision (given the
//! committed plan, the membership it sees and the time, should it end the
//! test, re-split it, or do nothing?) and the loop that probes suspects and
//! commits what it decides. Peers and the simulation run the same loop;
//! only the [`Prober`], the status and the clock differ.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::cluster::consensus::store::StateMachine;
use crate::cluster::consensus::{self, Command, Raft};
use crate::cluster::run::plan::{Candidate, Equal, Plan, PlanError, Strategies, TestEnd};
use crate::cluster::status::{ClusterStatus, Liveness, MemberStatus, StatusSource};
use crate::cluster::wall::WallClock;

/// How far ahead of now a re-split epoch starts, so every peer has applied
/// it before it takes effect.
pub const RESPLIT_DELAY: Duration = Duration::from_millis(300);
/// How often the leader looks for a duty: a lost share waits at most this
/// long after its holder is declared dead.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// How long the leader waits for a suspected share holder to answer a
/// direct probe before it re-splits the share as lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a member must have been alive, without a break, before the
/// leader gives it a share. A killed peer can look alive for a moment after
/// it was re-split away (a heartbeat of its last seconds reaches this node
/// late through another peer); without this it would be re-added at once.
pub const NEWCOMER_SETTLE: Duration = Duration::from_secs(1);
/// Extra time after a test's curve and drain before the leader ends it.
pub const END_GRACE: Duration = Duration::from_secs(3);

/// What the leader should commit now.
#[derive(Debug, Clone, PartialEq)]
pub enum Duty {
    /// Nothing to do.
    Idle,
    /// The test is over everywhere: commit its end.
    End,
    /// A share holder died or a peer joined: commit this next epoch.
    Resplit(Box<Plan>),
}

/// Share holders gossip shows as suspect (silent for a few intervals but
/// not yet declared dead), with their addresses: the leader probes them
/// directly rather than wait for the failure detector's verdict.
pub fn suspects(plan: &Plan, status: &ClusterStatus) -> Vec<(String, SocketAddr)> {
    status
        .members
        .iter()
        .filter(|m| m.state == Liveness::Suspect && plan.shares.contains_key(&m.id))
        .map(|m| (m.id.clone(), m.address))
        .collect()
}

/// Decides the leader's duty for `plan` (ending at `end`, from
/// [`Plan::end`]) seen through `status` at `now_ms`. A share holder that is
/// dead, or in `unreachable` (a suspect that failed its probe), has lost
/// its share; one that announced it is leaving hands it over (the next
/// epoch names it departed); an alive member without a share is a
/// newcomer.
pub fn duty(
    plan: &Plan,
    strategies: &Strategies,
    end: TestEnd,
    status: &ClusterStatus,
    unreachable: &BTreeSet<String>,
    now_ms: u64,
) -> Result<Duty, PlanError> {
    let (end_ms, drain_ms) = (end.curve_ends_unix_ms, end.drain_ms);
    // Saturating: the plan's figures come from another peer.
    let ended_ms = end_ms
        .saturating_add(drain_ms)
        .saturating_add(END_GRACE.as_millis() as u64);
    if now_ms > ended_ms {
        return Ok(Duty::End);
    }
    let starts_ms = now_ms + RESPLIT_DELAY.as_millis() as u64;
    if starts_ms >= end_ms {
        return Ok(Duty::Idle);
    }
    // Of a peer restarted under its old name only the newest incarnation
    // may take a share (the old one, not yet declared dead, is going).
    let alive: Vec<&MemberStatus> = status
        .members
        .iter()
        .filter(|m| m.state == Liveness::Alive && !unreachable.contains(&m.id))
        .filter(|m| m.info.role.takes_load() && !m.info.leaving)
        .filter(|m| {
            !status
                .members
                .iter()
                .any(|o| o.id == m.id && o.generation > m.generation)
        })
        .collect();
    let holder_lost = plan
        .shares
        .keys()
        .any(|holder| unreachable.contains(holder) || !holds_its_share(holder, plan, status));
    let departed = departing_holders(plan, status);
    let newcomer = alive
        .iter()
        .any(|m| !plan.shares.contains_key(&m.id) || is_later_incarnation(m, plan));
    if !(holder_lost || newcomer || !departed.is_empty()) {
        return Ok(Duty::Idle);
    }
    if alive.is_empty() {
        // The last peers are leaving: nobody to hand their shares to, so
        // they run on until they go (and the test ends with them).
        return Ok(Duty::Idle);
    }
    let strategy = strategies.get(&plan.strategy).unwrap_or_else(|| {
        tracing::warn!(
            "strategy '{}' is unknown here; re-splitting equally",
            plan.strategy
        );
        Arc::new(Equal)
    });
    let next = plan.resplit(starts_ms, strategy.as_ref(), &candidates(&alive))?;
    Ok(Duty::Resplit(Box::new(next.with_departed(departed))))
}

/// This epoch's share holders that announced they are leaving (the
/// incarnation the share was given to, still there).
fn departing_holders(plan: &Plan, status: &ClusterStatus) -> Vec<String> {
    plan.shares
        .keys()
        .filter(|holder| {
            status.members.iter().any(|m| {
                &m.id == *holder
                    && m.info.leaving
                    && m.state != Liveness::Dead
                    && !is_later_incarnation(m, plan)
            })
        })
        .cloned()
        .collect()
}

/// Whether the incarnation of `holder` that this epoch's share was given to
/// is still there (alive or merely suspect). A peer restarted under the
/// same name is another incarnation: it did not exist when the epoch was
/// planned, so it does not hold the share (it runs nothing of this epoch,
/// see `runner`), and its predecessor's share must be re-split.
fn holds_its_share(holder: &str, plan: &Plan, status: &ClusterStatus) -> bool {
    status
        .members
        .iter()
        .any(|m| m.id == holder && m.state != Liveness::Dead && !is_later_incarnation(m, plan))
}

/// Whether `member` started after `plan`'s epoch began (its generation is
/// its start time in Unix ms): an incarnation the epoch knew nothing of.
pub fn is_later_incarnation(member: &MemberStatus, plan: &Plan) -> bool {
    member.generation > plan.start_unix_ms
}

/// Follows how long each member has been alive without a break.
#[derive(Debug, Default)]
pub struct AliveSince {
    since_ms: HashMap<String, u64>,
    primed: bool,
}

impl AliveSince {
    /// Updates from `status` at `now_ms`, then shows members alive for less
    /// than [`NEWCOMER_SETTLE`] as suspect, so [`duty`] neither re-splits
    /// onto them nor counts them as newcomers yet (a share holder among
    /// them keeps its share).
    /// The first call trusts every member alive then (a newly elected
    /// leader must not wait to re-split the share of the one it replaced).
    pub fn settle(&mut self, status: &mut ClusterStatus, now_ms: u64) {
        let first = if self.primed { now_ms } else { 0 };
        self.primed = true;
        self.since_ms.retain(|id, _| {
            status
                .members
                .iter()
                .any(|m| &m.id == id && m.state == Liveness::Alive)
        });
        for member in &mut status.members {
            if member.state != Liveness::Alive {
                continue;
            }
            let since = *self.since_ms.entry(member.id.clone()).or_insert(first);
            if now_ms.saturating_sub(since) < NEWCOMER_SETTLE.as_millis() as u64 {
                member.state = Liveness::Suspect;
            }
        }
    }
}

/// How many probes in a row a suspect must miss before its share is
/// re-split: one missed answer on a starved box is not a death.
pub const PROBE_MISSES: u32 = 2;

/// What the leader remembers between supervision ticks. A tick is
/// [`Supervisor::begin`], probing the suspects it returns (over whatever
/// transport), then [`Supervisor::finish`] with those that did not answer.
#[derive(Debug, Default)]
pub struct Supervisor {
    strategies: Arc<Strategies>,
    alive_since: AliveSince,
    misses: HashMap<String, u32>,
}

/// One supervision tick in progress.
#[derive(Debug)]
pub struct Tick {
    end: TestEnd,
    /// Share holders to probe: node id and address.
    pub suspects: Vec<(String, SocketAddr)>,
}

impl Supervisor {
    /// A supervisor that re-splits with `strategies`.
    pub fn new(strategies: Arc<Strategies>) -> Self {
        Self {
            strategies,
            ..Self::default()
        }
    }

    /// Forgets what a leadership term learned (this peer no longer leads).
    pub fn reset(&mut self) {
        self.alive_since = AliveSince::default();
        self.misses.clear();
    }

    /// Starts a tick for `plan`: settles `status` (see [`AliveSince`]) and
    /// names the suspects to probe; `None` if the plan has no end to keep.
    pub fn begin(&mut self, plan: &Plan, status: &mut ClusterStatus, now_ms: u64) -> Option<Tick> {
        let end = plan.end()?;
        self.alive_since.settle(status, now_ms);
        Some(Tick {
            end,
            suspects: suspects(plan, status),
        })
    }

    /// Ends a tick with the suspects that did not answer (`silent`): the
    /// command the leader should commit, if any.
    pub fn finish(
        &mut self,
        plan: &Plan,
        tick: &Tick,
        status: &ClusterStatus,
        silent: &BTreeSet<String>,
        now_ms: u64,
    ) -> Result<Option<Command>, PlanError> {
        self.misses
            .retain(|id, _| tick.suspects.iter().any(|(s, _)| s == id));
        for (id, _) in &tick.suspects {
            let misses = self.misses.entry(id.clone()).or_default();
            *misses = if silent.contains(id) { *misses + 1 } else { 0 };
        }
        let unreachable: BTreeSet<String> = self
            .misses
            .iter()
            .filter(|(_, m)| **m >= PROBE_MISSES)
            .map(|(id, _)| id.clone())
            .collect();
        Ok(
            match duty(
                plan,
                &self.strategies,
                tick.end,
                status,
                &unreachable,
                now_ms,
            )? {
                Duty::Idle => None,
                Duty::End => Some(Command::EndTest {
                    test_id: plan.test_id.clone(),
                }),
                Duty::Resplit(next) => Some(Command::set_plan(&next)),
            },
        )
    }
}

/// What the distribution strategies know of each live member that takes
/// load (an orchestrator never gets a share, nor a peer that is leaving).
pub fn candidates(alive: &[&MemberStatus]) -> Vec<Candidate> {
    alive
        .iter()
        .filter(|m| m.info.role.takes_load() && !m.info.leaving)
        .map(|m| Candidate {
            id: m.id.clone(),
            weight: m.info.weight,
            cores: m.info.cores,
            cpu_percent: m.info.cpu_percent,
        })
        .collect()
}

/// How the leader reaches a suspect directly.
pub trait Prober: Send + Sync {
    /// Whether the peer at `to` answers a status request within
    /// [`PROBE_TIMEOUT`].
    fn probe(&self, to: SocketAddr) -> BoxFuture<'_, bool>;
}

/// How long a supervision command may take to commit: a leader cut off in
/// a minority cannot commit, and must look again rather than hang.
pub const COMMIT_WITHIN: Duration = Duration::from_secs(5);

/// What the leader's supervision loop works with.
pub struct Supervision {
    /// This peer's Raft handle.
    pub raft: Raft,
    /// Its Raft id.
    pub me: u64,
    /// Its applied Raft state (the plan in force).
    pub machine: StateMachine,
    /// Strategies to re-split with.
    pub strategies: Arc<Strategies>,
    /// Its picture of the cluster.
    pub status: Arc<dyn StatusSource>,
    /// How it probes suspects.
    pub prober: Arc<dyn Prober>,
    /// Wall-clock time.
    pub clock: Arc<dyn WallClock>,
}

impl Supervision {
    /// The leader's duty, every [`SUPERVISE_EVERY`], while this peer leads:
    /// re-split the running test when a share holder is declared dead (or
    /// fails its probe) or a new peer is alive, so the cluster keeps its
    /// total rate, and end the test once every peer is done.
    pub async fn run(self) {
        let mut supervisor = Supervisor::new(Arc::clone(&self.strategies));
        let mut tick = tokio::time::interval(SUPERVISE_EVERY);
        loop {
            tick.tick().await;
            if self.raft.metrics().borrow().current_leader == Some(self.me) {
                self.once(&mut supervisor).await;
            } else {
                supervisor.reset();
            }
        }
    }

    /// Probes each suspect at once; returns those that did not answer.
    async fn probe(&self, suspects: Vec<(String, SocketAddr)>) -> BTreeSet<String> {
        let probes = suspects.into_iter().map(|(id, address)| async move {
            let answered = self.prober.probe(address).await;
            (!answered).then_some(id)
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn once(&self, supervisor: &mut Supervisor) {
        let Some(plan) = self.machine.state().plan else {
            return;
        };
        let Some(mut status) = self.status.status().await else {
            return;
        };
        let Some(tick) = supervisor.begin(&plan, &mut status, self.clock.unix_ms()) else {
            return;
        };
        let silent = self.probe(tick.suspects.clone()).await;
        let now_ms = self.clock.unix_ms();
        let command = match supervisor.finish(&plan, &tick, &status, &silent, now_ms) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("cannot re-split test {}: {e}", plan.test_id);
                return;
            }
        };
        let what = match &command {
            Command::SetPlan(next) => format!(
                "re-split at epoch {} over {:?}",
                next.epoch,
                next.shares.keys().collect::<Vec<_>>()
            ),
            _ => "ended".to_owned(),
        };
        match consensus::commit(&self.raft, command, COMMIT_WITHIN).await {
            Ok(_) => tracing::info!("test {} {what}", plan.test_id),
            Err(e) => tracing::debug!("test {} not {what}: {e}", plan.test_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::status::fixtures::{member, status};

    fn states(s: &ClusterStatus) -> Vec<Liveness> {
        s.members.iter().map(|m| m.state).collect()
    }

    #[test]
    fn a_member_counts_as_alive_once_it_has_been_for_a_second() {
        use Liveness::*;
        let mut since = AliveSince::default();
        let mut first = status(vec![member("a", 1, Alive), member("b", 2, Dead)]);
        since.settle(&mut first, 10_000);
        assert_eq!(states(&first), [Alive, Dead], "the first view is trusted");
        let mut back = status(vec![member("a", 1, Alive), member("b", 2, Alive)]);
        since.settle(&mut back, 10_500);
        assert_eq!(states(&back), [Alive, Suspect], "b just came back");
        let mut later = status(vec![member("a", 1, Alive), member("b", 2, Alive)]);
        since.settle(&mut later, 11_600);
        assert_eq!(states(&later), [Alive, Alive]);
        let mut flicker = status(vec![member("a", 1, Alive), member("b", 2, Suspect)]);
        since.settle(&mut flicker, 11_700);
        let mut again = status(vec![member("a", 1, Alive), member("b", 2, Alive)]);
        since.settle(&mut again, 11_800);
        assert_eq!(states(&again), [Alive, Suspect], "a break starts over");
    }

    /// Twice the share for "a", by name.
    struct FavourA;

    impl crate::cluster::run::plan::DistributionStrategy for FavourA {
        fn name(&self) -> &str {
            "favour-a"
        }

        fn weights(&self, peers: &[Candidate]) -> Vec<f64> {
            peers
                .iter()
                .map(|p| if p.id == "a" { 2.0 } else { 1.0 })
                .collect()
        }
    }

    #[test]
    fn a_lost_share_is_re_split_with_the_tests_own_strategy() {
        use Liveness::*;
        let mut strategies = Strategies::with_builtins();
        strategies.register(FavourA);
        let all = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Alive),
        ]);
        let peers = candidates(&all.members.iter().collect::<Vec<_>>());
        let favour = strategies.get("favour-a").unwrap();
        let plan = Plan::first("t", 0, favour.as_ref(), &peers, Default::default()).unwrap();
        assert_eq!(plan.shares["a"], 0.5);
        let c_dead = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Dead),
        ]);
        let end = TestEnd {
            curve_ends_unix_ms: 60_000,
            drain_ms: 0,
        };
        let none = BTreeSet::new();
        let Duty::Resplit(next) = duty(&plan, &strategies, end, &c_dead, &none, 5_000).unwrap()
        else {
            panic!("c's share is lost");
        };
        assert_eq!(next.strategy, "favour-a");
        assert!(
            (next.shares["a"] - 2.0 / 3.0).abs() < 1e-12,
            "{:?}",
            next.shares
        );
        assert_eq!(next.start_unix_ms, 5_000 + RESPLIT_DELAY.as_millis() as u64);
        let unknown = duty(
            &plan,
            &Strategies::with_builtins(),
            end,
            &c_dead,
            &none,
            5_000,
        );
        let Ok(Duty::Resplit(equal)) = unknown else {
            panic!("a peer without the strategy still re-splits");
        };
        assert_eq!(
            equal.shares["a"], 0.5,
            "equally, where the strategy is unknown"
        );
        let idle = duty(&plan, &strategies, end, &all, &none, 5_000).unwrap();
        assert_eq!(idle, Duty::Idle, "nothing lost, nobody new");
    }

    /// A peer killed and restarted under its old name before it was seen
    /// dead: the new incarnation does not mask the loss of the old one's
    /// share, takes a share of its own at the next epoch, and then holds it.
    #[test]
    fn a_peer_restarted_under_its_old_name_is_a_new_incarnation() {
        use Liveness::*;
        let strategies = Strategies::with_builtins();
        let all = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Alive),
        ]);
        let peers = candidates(&all.members.iter().collect::<Vec<_>>());
        let plan = Plan::first("t", 1_000, &Equal, &peers, Default::default()).unwrap();
        let mut restarted = member("c", 33, Alive);
        restarted.generation = 8_000;
        // The old incarnation is still shown alive: only one c is a candidate.
        let both = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Alive),
            restarted.clone(),
        ]);
        let end = TestEnd {
            curve_ends_unix_ms: 60_000,
            drain_ms: 0,
        };
        let none = BTreeSet::new();
        let Duty::Resplit(next) = duty(&plan, &strategies, end, &both, &none, 9_000).unwrap()
        else {
            panic!("the new incarnation of c is a newcomer");
        };
        assert_eq!(next.shares.len(), 3);
        let sum: f64 = next.shares.values().sum();
        assert!((sum - 1.0).abs() < 1e-12, "no share lost to a duplicate");
        assert!(next.start_unix_ms > restarted.generation);
        // With the old one dead, the new one holds the new epoch's share.
        let settled = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Dead),
            restarted,
        ]);
        let idle = duty(&next, &strategies, end, &settled, &none, 10_000).unwrap();
        assert_eq!(idle, Duty::Idle);
        let still_old = duty(&plan, &strategies, end, &settled, &none, 10_000).unwrap();
        assert!(
            matches!(still_old, Duty::Resplit(_)),
            "the old epoch's c is gone"
        );
    }
}
