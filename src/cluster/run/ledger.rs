//! The tests this peer saw end, each with the last plan it saw of it, so an
//! orchestrator that was away when they ended can still record them: it
//! asks the peers ([`ControlRequest::Ended`]), then fetches their reports
//! like any follower.
//!
//! [`ControlRequest::Ended`]: crate::cluster::run::protocol::ControlRequest::Ended

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::cluster::consensus::ClusterState;
use crate::cluster::run::plan::Plan;
use crate::cluster::run::protocol::EndedTest;

/// How many ended tests a peer remembers (their plans; peers keep their
/// own reports of as many, see `share::KEPT_RESULTS`).
pub const KEPT_ENDED: usize = 32;

/// The ended tests a peer remembers, oldest first.
#[derive(Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    /// The plan in force, as last seen.
    current: Option<Plan>,
    ended: VecDeque<Plan>,
}

impl Ledger {
    /// Learns from the state machine's latest state: a plan that is no
    /// longer in force has ended.
    pub fn observe(&self, state: &ClusterState) {
        let mut entries = self.inner.lock();
        let still = match (&entries.current, &state.plan) {
            (Some(seen), Some(now)) => seen.test_id == now.test_id,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !still && let Some(ended) = entries.current.take() {
            entries.ended.retain(|p| p.test_id != ended.test_id);
            entries.ended.push_back(ended);
            if entries.ended.len() > KEPT_ENDED {
                entries.ended.pop_front();
            }
        }
        if let Some(plan) = &state.plan {
            entries.current = Some(plan.clone());
        }
    }

    /// The ended tests, oldest first.
    pub fn ended(&self) -> Vec<EndedTest> {
        self.inner
            .lock()
            .ended
            .iter()
            .map(|p| EndedTest {
                test_id: p.test_id.clone(),
                epoch: p.epoch,
            })
            .collect()
    }

    /// The last plan of ended test `test_id`, if remembered.
    pub fn plan(&self, test_id: &str) -> Option<Plan> {
        let entries = self.inner.lock();
        entries.ended.iter().find(|p| p.test_id == test_id).cloned()
    }
}

/// Keeps `ledger` in step with the state machine until it closes.
pub async fn keep(ledger: Ledger, mut states: watch::Receiver<ClusterState>) {
    loop {
        ledger.observe(&states.borrow_and_update());
        if states.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cluster::run::plan::{Candidate, Equal, TestDefinition};

    fn plan(id: &str, epoch: u64) -> Plan {
        let peer = Candidate {
            id: "a".into(),
            weight: 1.0,
            cores: 1,
            cpu_percent: 0.0,
        };
        let first = Plan::first(id, 0, &Equal, &[peer], TestDefinition::default()).unwrap();
        Plan { epoch, ..first }
    }

    #[test]
    fn a_plan_no_longer_in_force_has_ended_with_its_last_epoch() {
        let ledger = Ledger::default();
        let state = |p: Option<Plan>| ClusterState {
            plan: p,
            ..ClusterState::default()
        };
        ledger.observe(&state(Some(plan("t1", 1))));
        ledger.observe(&state(Some(plan("t1", 2))));
        assert!(ledger.ended().is_empty());
        ledger.observe(&state(Some(plan("t2", 1))));
        ledger.observe(&state(None));
        let ended: Vec<(String, u64)> = ledger
            .ended()
            .into_iter()
            .map(|t| (t.test_id, t.epoch))
            .collect();
        assert_eq!(ended, [("t1".into(), 2), ("t2".into(), 1)]);
        assert_eq!(ledger.plan("t1").map(|p| p.epoch), Some(2));
        assert!(ledger.plan("t9").is_none());
        for i in 0..KEPT_ENDED + 5 {
            ledger.observe(&state(Some(plan(&format!("x{i}"), 1))));
        }
        ledger.observe(&state(None));
        assert_eq!(ledger.ended().len(), KEPT_ENDED);
    }
}
