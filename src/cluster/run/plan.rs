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
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{self, RunArgs, RunSettings};
use crate::engine::LoadModel;
use crate::load::{CurveError, RateCurve, RatePoint};

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

/// The distribution strategies a peer knows, by name: the built-in
/// "equal", "weighted" and "capacity", and any a user binary registers.
///
/// Every peer of a cluster should know the same ones: whichever becomes
/// leader re-splits with the test's strategy, and one that does not know it
/// falls back to "equal" (the total stays on target; the split changes).
#[derive(Clone)]
pub struct Strategies {
    by_name: BTreeMap<String, Arc<dyn DistributionStrategy>>,
}

impl std::fmt::Debug for Strategies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Default for Strategies {
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl Strategies {
    /// The built-in strategies.
    pub fn with_builtins() -> Self {
        let mut strategies = Self {
            by_name: BTreeMap::new(),
        };
        strategies.register(Equal);
        strategies.register(Weighted);
        strategies.register(Capacity);
        strategies
    }

    /// Adds `strategy` under its name (replacing one of the same name).
    pub fn register(&mut self, strategy: impl DistributionStrategy + 'static) {
        self.by_name
            .insert(strategy.name().to_owned(), Arc::new(strategy));
    }

    /// The strategy called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn DistributionStrategy>> {
        self.by_name.get(name).cloned()
    }

    /// Every known name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The strategy called `name`, or an error listing the known ones.
    pub fn named(&self, name: &str) -> Result<Arc<dyn DistributionStrategy>, String> {
        self.get(name).ok_or_else(|| {
            format!(
                "invalid `distribution`: unknown strategy '{name}' (expected {})",
                self.names().join(", ")
            )
        })
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

/// Fractions of the cluster's rate curve per node id. Shared rather than
/// copied: a plan's shares live on in the past epochs of every later plan,
/// and a plan is cloned into every log entry, state machine and runner
/// that holds it (with 1000 peers and 32 kept epochs, copies are what
/// filled memory).
pub type Shares = Arc<BTreeMap<String, f64>>;

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
    pub shares: Shares,
    /// The test's settings, the same for every peer.
    #[serde(default)]
    pub definition: TestDefinition,
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
    /// The latest earlier epochs (at most [`KEPT_EPOCHS`]), oldest first, so
    /// a peer that missed some (it was frozen or cut off) follows each one
    /// in turn rather than jump, which would run a moved share twice.
    #[serde(default)]
    pub past: Vec<PastEpoch>,
    /// The id of the `start` request that made the test, so a retried
    /// start gets this test back instead of a refusal.
    #[serde(default)]
    pub request_id: String,
    /// Who started it (see [`ControlRequest::Start`]).
    ///
    /// [`ControlRequest::Start`]: crate::cluster::run::protocol::ControlRequest::Start
    #[serde(default)]
    pub started_by: String,
    /// Share holders of the epoch before that left gracefully (they
    /// announced it), whose shares this epoch hands to the others: each
    /// runs its share until this epoch starts, then ends its run, where a
    /// lost holder's share is simply re-split.
    // Never skipped when empty: plans travel in bincode, which has no
    // field names to tell a skipped field by.
    #[serde(default)]
    pub departed: Vec<String>,
}

/// A test's settings as a plan carries them: resolved, validated and
/// compiled once by the node that accepted the start, so no peer reads a
/// path from the wire, and the test's end is known without parsing them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestDefinition {
    /// The settings (`RunArgs` as JSON, self-contained: see
    /// [`crate::config::definition`]); a share holder resolves them once,
    /// when its share starts.
    pub settings: String,
    /// The corners of the definition's rate curve (origin at the test's
    /// start), bounds-checked.
    pub curve: Vec<RatePoint>,
    /// How long peers may drain after the curve ends, ms.
    pub drain_ms: u64,
}

impl TestDefinition {
    /// Resolves `args` (a self-contained definition) once, as the node that
    /// accepts a start does: the definition plans carry, and the settings it
    /// resolved to. `Err` says what is wrong; a distributed test needs a
    /// target rate.
    pub fn compile(args: &RunArgs) -> Result<(Self, RunSettings), String> {
        let settings =
            config::definition::resolve_definition(args.clone()).map_err(|e| e.to_string())?;
        let LoadModel::Open { profile, .. } = &settings.engine.load else {
            return Err("a distributed test needs a target rate (--tps or a pattern)".into());
        };
        check_corners(profile.curve.points().len())?;
        let definition = TestDefinition {
            settings: serde_json::to_string(args).map_err(|e| e.to_string())?,
            curve: profile.curve.points().to_vec(),
            drain_ms: settings.engine.drain_timeout.as_millis() as u64,
        };
        Ok((definition, settings))
    }
}

/// Most corners a test's rate curve (or a new pattern) may have: a plan
/// rides in every Raft entry and in peer messages, which are bounded
/// (a sine compiles to 72 corners a period).
pub const MAX_CURVE_POINTS: usize = 20_000;

/// Whether a rate curve of `corners` corners may ride in a plan; `Err`
/// says why not.
pub fn check_corners(corners: usize) -> Result<(), String> {
    if corners <= MAX_CURVE_POINTS {
        return Ok(());
    }
    Err(format!(
        "the rate curve has {corners} corners, above the limit of {MAX_CURVE_POINTS} (a plan \
         rides in every Raft entry and peer message): a longer sine period, fewer steps or points"
    ))
}

/// When a test ends, from its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestEnd {
    /// When the cluster's rate curve ends, Unix ms.
    pub curve_ends_unix_ms: u64,
    /// How long its peers may drain after that, ms.
    pub drain_ms: u64,
}

/// How many earlier epochs a plan keeps.
pub const KEPT_EPOCHS: usize = 32;

/// An earlier epoch's start and shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastEpoch {
    /// Its number.
    pub epoch: u64,
    /// Its wall-clock start, Unix milliseconds.
    pub start_unix_ms: u64,
    /// Its shares per node id.
    pub shares: Shares,
    /// Who left gracefully at its start (see [`Plan::departed`]).
    // Never skipped when empty: plans travel in bincode, which has no
    // field names to tell a skipped field by.
    #[serde(default)]
    pub departed: Vec<String>,
}

/// Where one node's share changes: an epoch's start and its fraction then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareChange {
    /// The epoch.
    pub epoch: u64,
    /// Seconds from the test's start.
    pub at_secs: f64,
    /// The epoch's wall-clock start, Unix milliseconds.
    pub start_unix_ms: u64,
    /// The node's fraction of the cluster curve from then on (0 if none).
    pub share: f64,
}

fn default_strategy() -> String {
    "equal".to_owned()
}

/// A change of the cluster's rate from `at_secs` after the test's start:
/// either a constant `tps` until the test's planned end, or a new pattern
/// (`points`) that replaces the rest of the test, which then ends when the
/// pattern does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateUpdate {
    /// Seconds after the test's start.
    pub at_secs: f64,
    /// New constant cluster rate (when `points` is empty); for a pattern,
    /// its peak rate (shown in events).
    pub tps: f64,
    /// The new pattern's curve, its time 0 at `at_secs`; empty for a
    /// constant rate.
    #[serde(default)]
    pub points: Vec<RatePoint>,
}

impl RateUpdate {
    /// The cluster curve from this update on, given the curve so far.
    fn curve_after(&self, so_far: &RateCurve) -> Result<RateCurve, CurveError> {
        if self.points.is_empty() {
            let rest = (so_far.duration() - self.at_secs).max(0.0);
            RateCurve::constant(self.tps, rest)
        } else {
            RateCurve::new(self.points.clone())
        }
    }

    /// How a report's events describe it.
    fn describe(&self) -> String {
        match (self.points.first(), self.points.last()) {
            (Some(first), Some(last)) => format!(
                "new pattern for {:.1} s, peak {}/s",
                last.at - first.at,
                self.tps
            ),
            _ => format!("rate {}/s", self.tps),
        }
    }
}

impl Plan {
    /// The first epoch of `test_id`, starting at `start_unix_ms`.
    pub fn first(
        test_id: &str,
        start_unix_ms: u64,
        strategy: &dyn DistributionStrategy,
        peers: &[Candidate],
        definition: TestDefinition,
    ) -> Result<Self, PlanError> {
        Ok(Self {
            test_id: test_id.to_owned(),
            epoch: 1,
            start_unix_ms,
            shares: Arc::new(split(strategy, peers)?),
            definition,
            test_start_unix_ms: start_unix_ms,
            rate_updates: Vec::new(),
            strategy: strategy.name().to_owned(),
            past: Vec::new(),
            request_id: String::new(),
            started_by: String::new(),
            departed: Vec::new(),
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
            shares: Arc::new(split(strategy, peers)?),
            definition: self.definition.clone(),
            test_start_unix_ms: self.test_start_unix_ms,
            rate_updates: self.rate_updates.clone(),
            strategy: strategy.name().to_owned(),
            past: self.past_with_this(),
            request_id: self.request_id.clone(),
            started_by: self.started_by.clone(),
            departed: Vec::new(),
        })
    }

    /// The same epoch, saying `departed` left gracefully at its start.
    pub fn with_departed(self, departed: Vec<String>) -> Self {
        Self { departed, ..self }
    }

    /// Every node holding a share in this epoch or one it keeps (with
    /// repeats).
    pub fn holders_ever(&self) -> impl Iterator<Item = &String> {
        self.shares
            .keys()
            .chain(self.past.iter().flat_map(|p| p.shares.keys()))
    }

    /// Whether `node` holds a share in this epoch or one it keeps.
    pub fn ever_held(&self, node: &str) -> bool {
        self.holders_ever().any(|n| n == node)
    }

    /// Whether `node` left gracefully at any epoch this plan is or keeps.
    pub fn ever_departed(&self, node: &str) -> bool {
        let named = |departed: &[String]| departed.iter().any(|d| d == node);
        named(&self.departed) || self.past.iter().any(|p| named(&p.departed))
    }

    /// Whether `node` left gracefully at the start of `epoch` (one this
    /// plan is or keeps).
    pub fn departed_at(&self, node: &str, epoch: u64) -> bool {
        let departed = if epoch == self.epoch {
            &self.departed
        } else {
            match self.past.iter().find(|p| p.epoch == epoch) {
                Some(past) => &past.departed,
                None => return false,
            }
        };
        departed.iter().any(|d| d == node)
    }

    /// The definition's rate curve (origin at the test's start).
    pub fn base_curve(&self) -> Result<RateCurve, PlanError> {
        Ok(RateCurve::new(self.definition.curve.clone())?)
    }

    /// When the test ends (rate updates with a new pattern move it);
    /// `None` when its definition has no valid rate curve.
    pub fn end(&self) -> Option<TestEnd> {
        let curve = self.cluster_curve(&self.base_curve().ok()?).ok()?;
        let curve_ms = (curve.duration() * 1_000.0) as u64;
        Some(TestEnd {
            curve_ends_unix_ms: self.test_start_unix_ms.saturating_add(curve_ms),
            drain_ms: self.definition.drain_ms,
        })
    }

    /// The cluster's rate curve with every rate update applied: `base` (the
    /// definition's curve) spliced at each update.
    pub fn cluster_curve(&self, base: &RateCurve) -> Result<RateCurve, PlanError> {
        let mut curve = base.clone();
        for update in &self.rate_updates {
            curve = curve.splice(update.at_secs, &update.curve_after(&curve)?)?;
        }
        Ok(curve)
    }

    /// The next epoch with the same shares and the rate changed to `tps`
    /// from `start_unix_ms` on, until the test's planned end.
    pub fn with_rate(&self, start_unix_ms: u64, tps: f64) -> Self {
        self.with_update(start_unix_ms, tps, Vec::new())
    }

    /// The next epoch with the same shares and `pattern` (its time 0 at
    /// `start_unix_ms`) replacing the rest of the test: the test now ends
    /// when the pattern does.
    pub fn with_pattern(&self, start_unix_ms: u64, pattern: &RateCurve) -> Self {
        self.with_update(
            start_unix_ms,
            pattern.peak_rate(),
            pattern.points().to_vec(),
        )
    }

    fn with_update(&self, start_unix_ms: u64, tps: f64, points: Vec<RatePoint>) -> Self {
        let mut next = self.clone();
        next.past = self.past_with_this();
        next.departed = Vec::new();
        next.epoch += 1;
        next.start_unix_ms = start_unix_ms;
        next.rate_updates.push(RateUpdate {
            at_secs: next.epoch_offset_secs(),
            tps,
            points,
        });
        next
    }

    /// This plan as a Raft entry carries it: without its past epochs. Every
    /// peer holds them already (it applied those epochs, or installed a
    /// snapshot holding them) and puts them back on apply
    /// ([`Plan::followed_by`]); with 1000 peers, 32 kept epochs made every
    /// re-split entry about 1 MB, sent to every member.
    pub fn without_past(&self) -> Plan {
        Plan {
            past: Vec::new(),
            ..self.clone()
        }
    }

    /// `next`, adopted after this plan: its past epochs are this plan's and
    /// this plan itself.
    pub fn followed_by(&self, next: &Plan) -> Plan {
        Plan {
            past: self.past_with_this(),
            ..next.clone()
        }
    }

    fn past_with_this(&self) -> Vec<PastEpoch> {
        let mut past = self.past.clone();
        past.push(PastEpoch {
            epoch: self.epoch,
            start_unix_ms: self.start_unix_ms,
            shares: self.shares.clone(),
            departed: self.departed.clone(),
        });
        let excess = past.len().saturating_sub(KEPT_EPOCHS);
        past.drain(..excess);
        past
    }

    /// `node`'s share at every epoch after `epoch`, up to this one, oldest
    /// first (as far back as the plan keeps).
    pub fn share_changes_after(&self, node: &str, epoch: u64) -> Vec<ShareChange> {
        let change = |e: u64, start_ms: u64, shares: &BTreeMap<String, f64>| ShareChange {
            epoch: e,
            at_secs: start_ms.saturating_sub(self.test_start_unix_ms) as f64 / 1_000.0,
            start_unix_ms: start_ms,
            share: shares.get(node).copied().unwrap_or(0.0),
        };
        self.past
            .iter()
            .filter(|p| p.epoch > epoch)
            .map(|p| change(p.epoch, p.start_unix_ms, &p.shares))
            .chain(
                (self.epoch > epoch).then(|| change(self.epoch, self.start_unix_ms, &self.shares)),
            )
            .collect()
    }

    /// What changed at each epoch after the first that the plan keeps, for
    /// a report's events: who left, who joined, what the rate became.
    pub fn epoch_events(&self) -> Vec<String> {
        type Epoch<'a> = (u64, u64, &'a BTreeMap<String, f64>, &'a [String]);
        let mut epochs: Vec<Epoch> = self
            .past
            .iter()
            .map(|p| (p.epoch, p.start_unix_ms, &*p.shares, &p.departed[..]))
            .collect();
        epochs.push((
            self.epoch,
            self.start_unix_ms,
            &*self.shares,
            &self.departed[..],
        ));
        let secs = |ms: u64| ms.saturating_sub(self.test_start_unix_ms) as f64 / 1_000.0;
        epochs
            .windows(2)
            .map(|pair| {
                let ((_, _, before, _), (epoch, start_ms, after, departed)) = (pair[0], pair[1]);
                let (gone, lost): (Vec<&str>, Vec<&str>) = before
                    .keys()
                    .filter(|id| !after.contains_key(*id))
                    .map(String::as_str)
                    .partition(|id| departed.iter().any(|d| d == id));
                let joined: Vec<&str> = after
                    .keys()
                    .filter(|id| !before.contains_key(*id))
                    .map(String::as_str)
                    .collect();
                let at = secs(start_ms);
                let mut what = Vec::new();
                if !gone.is_empty() {
                    what.push(format!("{} left", gone.join(", ")));
                }
                if !lost.is_empty() {
                    what.push(format!("re-split without {}", lost.join(", ")));
                }
                if !joined.is_empty() {
                    what.push(format!("{} joined", joined.join(", ")));
                }
                if let Some(update) = self
                    .rate_updates
                    .iter()
                    .find(|u| (u.at_secs - at).abs() < 1e-3)
                {
                    what.push(update.describe());
                }
                if what.is_empty() {
                    what.push("shares changed".to_owned());
                }
                format!(
                    "epoch {epoch} from {at:.1} s: {} ({} peers)",
                    what.join("; "),
                    after.len()
                )
            })
            .collect()
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

/// Plans for other modules' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Candidate;

    /// Candidates named `ids`, alike (weight 1, one core, idle).
    pub fn candidates(ids: &[&str]) -> Vec<Candidate> {
        ids.iter()
            .map(|id| Candidate {
                id: (*id).into(),
                weight: 1.0,
                cores: 1,
                cpu_percent: 0.0,
            })
            .collect()
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

    /// Plans travel in Raft entries as bincode, which has no field names:
    /// a field skipped when empty would shift every field after it.
    #[test]
    fn a_plan_with_a_departure_round_trips_through_the_raft_encoding() {
        let peers = [peer("a", 1.0, 1, 0.0), peer("b", 1.0, 1, 0.0)];
        let first = Plan::first("t", 1_000, &Equal, &peers, Default::default()).unwrap();
        let left = first
            .resplit(5_000, &Equal, &peers[..1])
            .unwrap()
            .with_departed(vec!["b".into()]);
        let again = left.resplit(9_000, &Equal, &peers).unwrap();
        for plan in [first, left, again] {
            let bytes = bincode::serde::encode_to_vec(&plan, bincode::config::standard()).unwrap();
            let (back, _): (Plan, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, plan);
        }
    }

    #[test]
    fn a_departure_is_named_as_a_leave_and_a_loss_as_a_re_split() {
        let peers = [
            peer("a", 1.0, 1, 0.0),
            peer("b", 1.0, 1, 0.0),
            peer("c", 1.0, 1, 0.0),
        ];
        let first = Plan::first("t", 0, &Equal, &peers, Default::default()).unwrap();
        let left = first
            .resplit(4_000, &Equal, &peers[..2])
            .unwrap()
            .with_departed(vec!["c".into()]);
        let lost = left.resplit(7_500, &Equal, &peers[..1]).unwrap();
        assert!(lost.departed_at("c", 2) && !lost.departed_at("b", 3));
        assert!(lost.ever_departed("c") && !lost.ever_departed("b"));
        assert_eq!(
            lost.epoch_events(),
            [
                "epoch 2 from 4.0 s: c left (2 peers)",
                "epoch 3 from 7.5 s: re-split without b (1 peers)"
            ]
        );
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
            let shares = split(
                Strategies::with_builtins().get(name).unwrap().as_ref(),
                &peers,
            )
            .unwrap();
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
        let plan = Plan::first("t1", 0, &Equal, &peers, TestDefinition::default()).unwrap();
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

    #[test]
    fn a_new_pattern_replaces_the_rest_of_the_test_and_moves_its_end() {
        let base = RateCurve::constant(1_000.0, 20.0).unwrap();
        let peers = [peer("x", 1.0, 2, 0.0)];
        let plan = Plan::first("t1", 0, &Equal, &peers, TestDefinition::default()).unwrap();
        // At 4 s: a ramp 0 -> 2000/s over 2 s, then 2000/s for 6 s.
        let ramp = RateCurve::new(vec![
            RatePoint { at: 0.0, rate: 0.0 },
            RatePoint {
                at: 2.0,
                rate: 2_000.0,
            },
            RatePoint {
                at: 8.0,
                rate: 2_000.0,
            },
        ])
        .unwrap();
        let ramped = plan.with_pattern(4_000, &ramp);
        let curve = ramped.cluster_curve(&base).unwrap();
        assert!(
            (curve.duration() - 12.0).abs() < 1e-9,
            "ends with the pattern"
        );
        let expected = 1_000.0 * 4.0 + 2_000.0 + 2_000.0 * 6.0;
        assert!((curve.total() - expected).abs() < 1e-6, "{}", curve.total());
        // A later constant update holds until the pattern's end.
        let slower = ramped.with_rate(10_000, 500.0);
        let curve = slower.cluster_curve(&base).unwrap();
        assert!((curve.duration() - 12.0).abs() < 1e-9);
        assert!((curve.total() - (expected - 1_500.0 * 2.0)).abs() < 1e-6);
        let events = slower.epoch_events();
        assert!(
            events[0].contains("new pattern for 8.0 s, peak 2000/s"),
            "{events:?}"
        );
        assert!(events[1].contains("rate 500/s"), "{events:?}");
    }

    #[test]
    fn a_peer_that_missed_epochs_sees_each_of_its_share_changes() {
        let peers: Vec<_> = ["x", "y", "z"]
            .iter()
            .map(|id| peer(id, 1.0, 2, 0.0))
            .collect();
        let first = Plan::first("t1", 1_000, &Equal, &peers, TestDefinition::default()).unwrap();
        // z is lost at 5 s, comes back at 8 s; the rate changes at 12 s.
        let without_z = first.resplit(6_000, &Equal, &peers[..2]).unwrap();
        let with_z = without_z.resplit(9_000, &Equal, &peers).unwrap();
        let faster = with_z.with_rate(13_000, 9_000.0);
        let changes = faster.share_changes_after("z", 1);
        let seen: Vec<_> = changes
            .iter()
            .map(|c| (c.epoch, c.at_secs, (c.share * 3.0).round()))
            .collect();
        assert_eq!(
            seen,
            [(2, 5.0, 0.0), (3, 8.0, 1.0), (4, 12.0, 1.0)],
            "z follows its share to 0 and back, never straight to the latest"
        );
        assert!(faster.share_changes_after("z", 4).is_empty());
        assert_eq!(
            faster.epoch_events(),
            [
                "epoch 2 from 5.0 s: re-split without z (2 peers)",
                "epoch 3 from 8.0 s: z joined (3 peers)",
                "epoch 4 from 12.0 s: rate 9000/s (3 peers)",
            ]
        );
        let mut plan = faster;
        for at in 0..2 * KEPT_EPOCHS as u64 {
            plan = plan.with_rate(20_000 + at, 1_000.0);
        }
        assert_eq!(plan.past.len(), KEPT_EPOCHS, "old epochs are let go");
        assert_eq!(plan.past.last().unwrap().epoch, plan.epoch - 1);
    }
}
