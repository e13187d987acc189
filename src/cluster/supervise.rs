//! The leader's duty while a test runs, as a pure decision: given the
//! committed plan, the membership it sees and the time, should it end the
//! test, re-split it, or do nothing? The controller commits what this
//! decides; the simulation drives the same function.

use std::collections::BTreeSet;
use std::time::Duration;

use super::plan::{Candidate, Equal, Plan, PlanError, strategy};
use super::status::{ClusterStatus, Liveness, MemberStatus};
use crate::config::{self, RunArgs};
use crate::engine::LoadModel;

/// How far ahead of now a re-split epoch starts, so every peer has applied
/// it before it takes effect.
pub const RESPLIT_DELAY: Duration = Duration::from_millis(300);
/// How often the leader looks for a duty: a lost share waits at most this
/// long after its holder is declared dead.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// How long the leader waits for a suspected share holder to answer a
/// direct probe before it re-splits the share as lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
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
    Resplit(Plan),
}

/// When a plan's test ends (Unix ms) and how long its peers may drain;
/// `None` when its definition has no rate curve.
pub fn test_end(plan: &Plan) -> Option<(u64, u64)> {
    let args: RunArgs = serde_json::from_str(&plan.definition).ok()?;
    let settings = config::resolve(args).ok()?;
    let LoadModel::Open { profile, .. } = &settings.engine.load else {
        return None;
    };
    let duration_ms = (profile.curve.duration() * 1_000.0) as u64;
    Some((
        plan.test_start_unix_ms + duration_ms,
        settings.engine.drain_timeout.as_millis() as u64,
    ))
}

/// Share holders gossip shows as suspect (silent for a few intervals but
/// not yet declared dead), with their addresses: the leader probes them
/// directly rather than wait for the failure detector's verdict.
pub fn suspects(plan: &Plan, status: &ClusterStatus) -> Vec<(String, String)> {
    status
        .members
        .iter()
        .filter(|m| m.state == Liveness::Suspect && plan.shares.contains_key(&m.id))
        .map(|m| (m.id.clone(), m.address.clone()))
        .collect()
}

/// Decides the leader's duty for `plan` (ending at `end`, from
/// [`test_end`]) seen through `status` at `now_ms`. A share holder that is
/// dead, or in `unreachable` (a suspect that failed its probe), has lost
/// its share; an alive member without a share is a newcomer.
pub fn duty(
    plan: &Plan,
    end: (u64, u64),
    status: &ClusterStatus,
    unreachable: &BTreeSet<String>,
    now_ms: u64,
) -> Result<Duty, PlanError> {
    let (end_ms, drain_ms) = end;
    if now_ms > end_ms + drain_ms + END_GRACE.as_millis() as u64 {
        return Ok(Duty::End);
    }
    let starts_ms = now_ms + RESPLIT_DELAY.as_millis() as u64;
    if starts_ms >= end_ms {
        return Ok(Duty::Idle);
    }
    let alive: Vec<&MemberStatus> = status
        .members
        .iter()
        .filter(|m| m.state == Liveness::Alive && !unreachable.contains(&m.id))
        .collect();
    let holder_lost = plan.shares.keys().any(|holder| {
        unreachable.contains(holder)
            || status
                .members
                .iter()
                .filter(|m| &m.id == holder)
                .all(|m| m.state == Liveness::Dead)
    });
    let newcomer = alive.iter().any(|m| !plan.shares.contains_key(&m.id));
    if !(holder_lost || newcomer) {
        return Ok(Duty::Idle);
    }
    let strategy = strategy(&plan.strategy).unwrap_or_else(|| Box::new(Equal));
    let next = plan.resplit(starts_ms, strategy.as_ref(), &candidates(&alive))?;
    Ok(Duty::Resplit(next))
}

/// What the distribution strategies know of each live member.
pub fn candidates(alive: &[&MemberStatus]) -> Vec<Candidate> {
    alive
        .iter()
        .map(|m| Candidate {
            id: m.id.clone(),
            weight: m.info.weight,
            cores: m.info.cores,
            cpu_percent: m.info.cpu_percent,
        })
        .collect()
}
