//! Load plans: how a target rate is split across peers.
//!
//! A plan names a test, an epoch (it grows every time the split changes:
//! a peer lost or joined, a rate update), the wall-clock instant the epoch
//! starts, and each peer's fraction of the cluster's rate curve. A peer runs
//! its fraction of the curve with the standalone engine, so the fractions
//! summing to one is what keeps the cluster's total on target.
//!
//! The leader will compute plans and replicate them through Raft; this
//! module is the pure part, shared by the peers and the simulation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::load::{CurveError, RateCurve};

/// What a strategy knows about a peer that can take a share.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Node id.
    pub id: String,
    /// Weight it was started with (`--weight`).
    pub weight: f64,
    /// Cores it reports.
    pub cores: u32,
    /// Its current CPU load, percent of its cores.
    pub cpu_percent: f64,
}

/// Decides how much of the load each peer carries.
pub trait DistributionStrategy: Send + Sync {
    /// Short name, shown in status.
    fn name(&self) -> &str;

    /// A non-negative weight per candidate, in the same order; only the
    /// ratios matter.
    fn weights(&self, peers: &[Candidate]) -> Vec<f64>;
}

/// The same share for every peer (the default).
pub struct Equal;

/// Shares proportional to each peer's `--weight`.
pub struct Weighted;

/// Shares proportional to spare capacity: cores × idle fraction, with a
/// floor so a busy peer still gets a little.
pub struct Capacity;

impl DistributionStrategy for Equal {
    fn name(&self) -> &str {
        "equal"
    }

    fn weights(&self, peers: &[Candidate]) -> Vec<f64> {
        vec![1.0; peers.len()]
    }
}

impl DistributionStrategy for Weighted {
    fn name(&self) -> &str {
        "weighted"
    }

    fn weights(&self, peers: &[Candidate]) -> Vec<f64> {
        peers.iter().map(|p| p.weight).collect()
    }
}

/// Smallest idle fraction Capacity assumes, so no live peer gets nothing.
const MIN_IDLE: f64 = 0.05;

impl DistributionStrategy for Capacity {
    fn name(&self) -> &str {
        "capacity"
    }

    fn weights(&self, peers: &[Candidate]) -> Vec<f64> {
        peers
            .iter()
            .map(|p| {
                let idle = (1.0 - p.cpu_percent / 100.0).clamp(MIN_IDLE, 1.0);
                f64::from(p.cores.max(1)) * idle
            })
            .collect()
    }
}

/// A strategy by name: "equal", "weighted" or "capacity".
pub fn strategy(name: &str) -> Option<Box<dyn DistributionStrategy>> {
    match name {
        "equal" => Some(Box::new(Equal)),
        "weighted" => Some(Box::new(Weighted)),
        "capacity" => Some(Box::new(Capacity)),
        _ => None,
    }
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Nobody to run the load.
    #[error("no live peer can take a share")]
    NoPeers,
    /// The strategy gave no usable weight.
    #[error("strategy '{0}' gave every peer a zero or invalid weight")]
    NoWeight(String),
    /// A share's curve could not be built.
    #[error("share curve: {0}")]
    Curve(#[from] CurveError),
}

/// Fractions of the load per node id, summing to exactly 1.
///
/// Invalid weights (negative, NaN, infinite) count as 0. The last node's
/// fraction is `1 - Σ others`, so rounding never loses or adds load.
pub fn split(
    strategy: &dyn DistributionStrategy,
    peers: &[Candidate],
) -> Result<BTreeMap<String, f64>, PlanError> {
    if peers.is_empty() {
        return Err(PlanError::NoPeers);
    }
    let mut sorted = peers.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let weights: Vec<f64> = strategy
        .weights(&sorted)
        .into_iter()
        .map(|w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || weights.len() != sorted.len() {
        return Err(PlanError::NoWeight(strategy.name().to_owned()));
    }
    let mut shares = BTreeMap::new();
    let mut assigned = 0.0;
    let last = weights.iter().rposition(|&w| w > 0.0).expect("total > 0");
    for (i, (peer, w)) in sorted.iter().zip(&weights).enumerate() {
        if *w == 0.0 {
            continue;
        }
        let fraction = if i == last { 1.0 - assigned } else { w / total };
        assigned += fraction;
        shares.insert(peer.id.clone(), fraction);
    }
    Ok(shares)
}

/// One epoch of a distributed test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Test id.
    pub test_id: String,
    /// Grows with every re-split.
    pub epoch: u64,
    /// Wall-clock start of this epoch, Unix milliseconds.
    pub start_unix_ms: u64,
    /// Fraction of the cluster's rate curve per node id (sums to 1).
    pub shares: BTreeMap<String, f64>,
    /// The test's settings (`RunArgs` as JSON), the same for every peer.
    #[serde(default)]
    pub definition: String,
    /// Wall-clock start of the test's first epoch, Unix milliseconds: the
    /// origin of the rate curve every epoch is a part of.
    #[serde(default)]
    pub test_start_unix_ms: u64,
    /// Rate changes ordered while the test runs, oldest first.
    #[serde(default)]
    pub rate_updates: Vec<RateUpdate>,
    /// Name of the distribution strategy, used again at every re-split.
    #[serde(default = "default_strategy")]
    pub strategy: String,
}

fn default_strategy() -> String {
    "equal".to_owned()
}

/// From `at_secs` after the test's start, the cluster targets `tps` until
/// the test's planned end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateUpdate {
    /// Seconds after the test's start.
    pub at_secs: f64,
    /// New cluster rate.
    pub tps: f64,
}

impl Plan {
    /// The first epoch of `test_id`, starting at `start_unix_ms`.
    pub fn first(
        test_id: &str,
        start_unix_ms: u64,
        strategy: &dyn DistributionStrategy,
        peers: &[Candidate],
        definition: String,
    ) -> Result<Self, PlanError> {
        Ok(Self {
            test_id: test_id.to_owned(),
            epoch: 1,
            start_unix_ms,
            shares: split(strategy, peers)?,
            definition,
            test_start_unix_ms: start_unix_ms,
            rate_updates: Vec::new(),
            strategy: strategy.name().to_owned(),
        })
    }

    /// The next epoch over a new set of peers, from `start_unix_ms`.
    pub fn resplit(
        &self,
        start_unix_ms: u64,
        strategy: &dyn DistributionStrategy,
        peers: &[Candidate],
    ) -> Result<Self, PlanError> {
        Ok(Self {
            test_id: self.test_id.clone(),
            epoch: self.epoch + 1,
            start_unix_ms,
            shares: split(strategy, peers)?,
            definition: self.definition.clone(),
            test_start_unix_ms: self.test_start_unix_ms,
            rate_updates: self.rate_updates.clone(),
            strategy: strategy.name().to_owned(),
        })
    }

    /// The cluster's rate curve with every rate update applied: `base` (the
    /// definition's curve) spliced at each update.
    pub fn cluster_curve(&self, base: &RateCurve) -> Result<RateCurve, PlanError> {
        let end = base.duration();
        let mut curve = base.clone();
        for update in &self.rate_updates {
            let rest = (end - update.at_secs).max(0.0);
            curve = curve.splice(update.at_secs, &RateCurve::constant(update.tps, rest)?)?;
        }
        Ok(curve)
    }

    /// The next epoch with the same shares and the rate changed to `tps`
    /// from `start_unix_ms` on.
    pub fn with_rate(&self, start_unix_ms: u64, tps: f64) -> Self {
        let mut next = self.clone();
        next.epoch += 1;
        next.start_unix_ms = start_unix_ms;
        next.rate_updates.push(RateUpdate {
            at_secs: next.epoch_offset_secs(),
            tps,
        });
        next
    }

    /// Seconds from the test's start to this epoch's start.
    pub fn epoch_offset_secs(&self) -> f64 {
        self.start_unix_ms.saturating_sub(self.test_start_unix_ms) as f64 / 1_000.0
    }

    /// `node`'s part of the cluster curve, or `None` if it has no share.
    pub fn share_of(
        &self,
        node: &str,
        cluster_curve: &RateCurve,
    ) -> Result<Option<RateCurve>, PlanError> {
        match self.shares.get(node) {
            Some(&fraction) => Ok(Some(cluster_curve.scaled(fraction)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ArrivalSchedule;

    fn peer(id: &str, weight: f64, cores: u32, cpu: f64) -> Candidate {
        Candidate {
            id: id.into(),
            weight,
            cores,
            cpu_percent: cpu,
        }
    }

    #[test]
    fn shares_always_sum_to_one() {
        let peers: Vec<_> = (0..7)
            .map(|i| {
                peer(
                    &format!("p{i}"),
                    1.0 + i as f64 / 3.0,
                    1 + i,
                    10.0 * i as f64,
                )
            })
            .collect();
        for name in ["equal", "weighted", "capacity"] {
            let shares = split(strategy(name).unwrap().as_ref(), &peers).unwrap();
            assert_eq!(shares.values().sum::<f64>(), 1.0, "{name}");
            assert_eq!(shares.len(), 7);
        }
    }

    #[test]
    fn strategies_split_as_documented() {
        let peers = [peer("a", 1.0, 2, 0.0), peer("b", 3.0, 6, 50.0)];
        let equal = split(&Equal, &peers).unwrap();
        assert_eq!(equal["a"], 0.5);
        let weighted = split(&Weighted, &peers).unwrap();
        assert!((weighted["a"] - 0.25).abs() < 1e-12);
        let capacity = split(&Capacity, &peers).unwrap();
        // a: 2 cores idle = 2; b: 6 cores half idle = 3.
        assert!((capacity["a"] - 0.4).abs() < 1e-12);
    }

    #[test]
    fn no_peers_or_no_weight_is_an_error() {
        assert_eq!(split(&Equal, &[]), Err(PlanError::NoPeers));
        let zero = [peer("a", 0.0, 1, 0.0), peer("b", f64::NAN, 1, 0.0)];
        assert!(matches!(
            split(&Weighted, &zero),
            Err(PlanError::NoWeight(_))
        ));
        let one = split(&Weighted, &[peer("a", 0.0, 1, 0.0), peer("b", 2.0, 1, 0.0)]).unwrap();
        assert_eq!(one.len(), 1, "a zero-weight peer gets no share");
    }

    #[test]
    fn peers_running_their_shares_deliver_the_cluster_total() {
        let cluster = RateCurve::constant(3_000.0, 20.0).unwrap();
        let peers: Vec<_> = ["x", "y", "z"]
            .iter()
            .map(|id| peer(id, 1.0, 2, 0.0))
            .collect();
        let plan = Plan::first("t1", 0, &Equal, &peers, String::new()).unwrap();
        let total: u64 = peers
            .iter()
            .map(|p| {
                ArrivalSchedule::new(plan.share_of(&p.id, &cluster).unwrap().unwrap())
                    .total_arrivals()
            })
            .sum();
        assert!(total.abs_diff(60_000) <= 1, "cluster total {total}");
        let faster = plan.with_rate(5_000, 6_000.0);
        let curve = faster.cluster_curve(&cluster).unwrap();
        assert!((curve.total() - (3_000.0 * 5.0 + 6_000.0 * 15.0)).abs() < 1e-6);
        assert_eq!(faster.epoch, 2);
        let next = plan.resplit(10_000, &Equal, &peers[..2]).unwrap();
        assert_eq!(next.epoch, 2);
        assert_eq!(next.shares["x"], 0.5);
        assert_eq!(next.share_of("z", &cluster).unwrap(), None);
    }
}
