//! The invariants, checked while the simulation runs. Every violation is
//! kept with the run's seed and the virtual time (step) it was seen at.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use parking_lot::Mutex;
use vajra::cluster::run::plan::Plan;

use crate::clock::Clock;

/// One broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// Virtual milliseconds since the run started.
    pub at_ms: u64,
    /// Which invariant.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VIOLATION {} (seed {}, step t={} ms): {}",
            self.invariant, self.seed, self.at_ms, self.detail
        )
    }
}

/// Invariant names, as reported.
pub mod names {
    /// At most one leader per Raft term.
    pub const ONE_LEADER: &str = "one-leader-per-term";
    /// Every committed plan's shares sum to one, hence to the curve.
    pub const SHARES_SUM: &str = "shares-sum-to-curve";
    /// An epoch means one plan everywhere.
    pub const SAME_PLAN: &str = "one-plan-per-epoch";
    /// Plans only move forward and a peer holds one epoch at a time.
    pub const ONE_EPOCH: &str = "one-epoch-at-a-time";
    /// Membership and plan converge once faults stop.
    pub const CONVERGENCE: &str = "convergence-bound";
    /// No arrival is meant to be sent by two incarnations, beyond what the
    /// partitions and cuts played allow.
    pub const NO_DOUBLE_SEND: &str = "no-double-send";
    /// No arrival is left unsent beyond what the faults played allow.
    pub const LOSS: &str = "loss-within-bound";
    /// Merged histogram counts equal the sum of the peers'.
    pub const HISTOGRAMS: &str = "merged-histogram-counts";
    /// The cluster forms (gossip, a leader, every peer in Raft).
    pub const FORMATION: &str = "formation";
    /// The test ends: every peer applies its stop.
    pub const ENDS: &str = "test-ends";
}

#[derive(Default)]
struct Inner {
    checks: BTreeMap<&'static str, u64>,
    violations: Vec<Violation>,
    /// Every node seen leading each term.
    leaders: HashMap<u64, BTreeSet<u64>>,
    plans: HashMap<(String, u64), Plan>,
    trace: Trace,
}

/// A running hash of what the cluster decided and when (every new leader,
/// every new plan, every violation, at its virtual time): two runs with one
/// fingerprint took the same decisions at the same instants.
#[derive(Debug, Clone, Copy)]
struct Trace(u64);

impl Default for Trace {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Trace {
    /// Folds `bytes` in (FNV-1a: simple, stable across builds and runs).
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn add_words(&mut self, words: &[u64]) {
        for w in words {
            self.add(&w.to_le_bytes());
        }
    }
}

/// Collects checks and violations.
pub struct Checker {
    seed: u64,
    clock: Clock,
    inner: Mutex<Inner>,
}

/// Largest rounding error allowed when shares add up to the curve.
const SUM_EPSILON: f64 = 1e-9;

impl Checker {
    /// A checker for the run with `seed`.
    pub fn new(seed: u64, clock: Clock) -> Self {
        Self {
            seed,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Counts one check of `invariant`; records a violation unless `ok`.
    pub fn check(&self, invariant: &'static str, ok: bool, detail: impl FnOnce() -> String) {
        let mut inner = self.inner.lock();
        *inner.checks.entry(invariant).or_default() += 1;
        if !ok {
            let violation = Violation {
                seed: self.seed,
                at_ms: self.clock.ms(),
                invariant,
                detail: detail(),
            };
            eprintln!("{violation}");
            inner.trace.add(violation.invariant.as_bytes());
            inner.trace.add_words(&[violation.at_ms]);
            inner.violations.push(violation);
        }
    }

    /// Node `id` is leader in `term`.
    ///
    /// openraft (without its `single-term-leader` feature) orders votes
    /// by term, then node id: two candidates of one term may both win, one
    /// after the other, the higher id taking over (its vote outranks the
    /// first's; log ids carry both, so this is safe). What it never allows
    /// is a lower id winning a term a higher one already won: that is the
    /// violation.
    pub fn leader_seen(&self, term: u64, id: u64) {
        let outranked_by = {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            let seen = inner.leaders.entry(term).or_default();
            if seen.contains(&id) {
                None
            } else {
                let higher = seen.last().copied().filter(|&h| h > id);
                seen.insert(id);
                inner.trace.add_words(&[term, id, self.clock.ms()]);
                higher
            }
        };
        self.check(names::ONE_LEADER, outranked_by.is_none(), || {
            format!(
                "term {term}: {id} became leader after {} had, whose vote outranks it",
                outranked_by.unwrap_or_default()
            )
        });
    }

    /// A peer applied `plan`: the same epoch must be the same plan on every
    /// peer, and a plan seen for the first time must split the whole curve.
    pub fn plan_applied(&self, plan: &Plan) {
        let key = (plan.test_id.clone(), plan.epoch);
        let first = {
            let mut inner = self.inner.lock();
            match inner.plans.get(&key) {
                Some(seen) => Some(seen == plan),
                None => {
                    inner.trace.add(plan.test_id.as_bytes());
                    inner.trace.add_words(&[plan.epoch, self.clock.ms()]);
                    for (node, share) in plan.shares.iter() {
                        inner.trace.add(node.as_bytes());
                        inner.trace.add_words(&[share.to_bits()]);
                    }
                    inner.plans.insert(key, plan.clone());
                    None
                }
            }
        };
        match first {
            Some(same) => self.check(names::SAME_PLAN, same, || {
                format!(
                    "epoch {} of {} differs between peers",
                    plan.epoch, plan.test_id
                )
            }),
            None => self.check_split(plan),
        }
    }

    fn check_split(&self, plan: &Plan) {
        let sum: f64 = plan.shares.values().sum();
        let valid = plan.shares.values().all(|s| s.is_finite() && *s >= 0.0);
        self.check(
            names::SHARES_SUM,
            valid && (sum - 1.0).abs() <= SUM_EPSILON,
            || format!("epoch {} shares sum to {sum}", plan.epoch),
        );
        let Some(curve) = plan.base_curve().and_then(|b| plan.cluster_curve(&b)).ok() else {
            self.check(names::SHARES_SUM, false, || {
                format!("epoch {}: no cluster curve", plan.epoch)
            });
            return;
        };
        let (from, to) = (plan.epoch_offset_secs(), curve.duration());
        for i in 0..8 {
            let t = from + (to - from).max(0.0) * f64::from(i) / 7.0;
            let want = curve.rate_at(t);
            let got: f64 = plan
                .shares
                .keys()
                .filter_map(|node| plan.share_of(node, &curve).ok().flatten())
                .map(|share| share.rate_at(t))
                .sum();
            self.check(
                names::SHARES_SUM,
                (got - want).abs() <= SUM_EPSILON * want.max(1.0),
                || {
                    format!(
                        "epoch {} at {t:.3} s: shares give {got}/s of {want}/s",
                        plan.epoch
                    )
                },
            );
        }
    }

    /// Every violation so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.inner.lock().violations.clone()
    }

    /// Checks done so far, per invariant.
    pub fn checks(&self) -> BTreeMap<&'static str, u64> {
        self.inner.lock().checks.clone()
    }

    /// The fingerprint of the run so far, with `extra` (end-of-run figures)
    /// folded in: equal for two runs of one seed, which is what replaying a
    /// seed means.
    pub fn fingerprint(&self, extra: &[u64]) -> u64 {
        let mut trace = self.inner.lock().trace;
        trace.add_words(extra);
        trace.0
    }

    /// Distinct (term, leader) pairs seen.
    pub fn terms_seen(&self) -> usize {
        self.inner.lock().leaders.len()
    }

    /// Distinct plans (test, epoch) seen.
    pub fn plans_seen(&self) -> usize {
        self.inner.lock().plans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two leaders of one term, the higher id second, is openraft taking
    /// the term over; the lower id second is a violation.
    #[tokio::test(start_paused = true)]
    async fn a_higher_id_may_take_a_term_over_a_lower_one_may_not() {
        let checker = Checker::new(1, Clock::start());
        checker.leader_seen(2, 5);
        checker.leader_seen(2, 5);
        checker.leader_seen(2, 9);
        checker.leader_seen(2, 5);
        assert!(
            checker.violations().is_empty(),
            "{:?}",
            checker.violations()
        );
        checker.leader_seen(3, 9);
        checker.leader_seen(3, 4);
        let violations = checker.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0]
                .detail
                .contains("term 3: 4 became leader after 9")
        );
    }
}
