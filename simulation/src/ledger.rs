//! Which epoch each peer incarnation held, from when to when, and the
//! count it intended to send: the integral of its share of the cluster
//! curve over each interval, computed with the same curve functions the
//! runner uses (`Plan::cluster_curve`, `RateCurve::after`, `scaled`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use vajra::cluster::run::plan::Plan;
use vajra::load::RateCurve;

/// One peer incarnation holding one epoch.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Peer name.
    pub peer: String,
    /// Its generation.
    pub generation: u64,
    /// The plan of the epoch.
    pub plan: Arc<Plan>,
    /// When it started running this epoch (Unix ms).
    pub from_ms: u64,
    /// When it stopped (Unix ms), if it did.
    pub to_ms: Option<u64>,
}

impl Segment {
    /// What this peer intended to send during the segment.
    pub fn intended(&self, base: &RateCurve) -> f64 {
        let share = self.plan.shares.get(&self.peer).copied().unwrap_or(0.0);
        let Ok(curve) = self.plan.cluster_curve(base) else {
            return 0.0;
        };
        let origin = self.plan.test_start_unix_ms;
        let from = self.from_ms.saturating_sub(origin) as f64 / 1_000.0;
        let to = self
            .to_ms
            .map_or(curve.duration(), |t| {
                t.saturating_sub(origin) as f64 / 1_000.0
            })
            .min(curve.duration());
        if share <= 0.0 || to <= from || from >= curve.duration() {
            return 0.0;
        }
        curve
            .after(from)
            .and_then(|rest| rest.scaled(share))
            .map_or(0.0, |mine| mine.count_until(to - from))
    }
}

/// What the peers' shares covered of the cluster curve.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Coverage {
    /// Arrivals two incarnations both intended to send.
    pub sent_twice: f64,
    /// Arrivals no incarnation intended to send.
    pub never_sent: f64,
}

/// Every segment of the run.
#[derive(Default)]
pub struct Ledger {
    segments: Mutex<Vec<Segment>>,
}

impl Ledger {
    /// `peer` (generation `generation`) runs `plan` from `at_ms`; returns
    /// the epoch it still held, if any (which it must have closed first).
    pub fn open(&self, peer: &str, generation: u64, plan: Arc<Plan>, at_ms: u64) -> Option<u64> {
        let mut segments = self.segments.lock();
        let still = segments
            .iter()
            .find(|s| s.peer == peer && s.generation == generation && s.to_ms.is_none())
            .map(|s| s.plan.epoch);
        segments.push(Segment {
            peer: peer.to_owned(),
            generation,
            plan,
            from_ms: at_ms,
            to_ms: None,
        });
        still
    }

    /// `peer` stops running its epoch at `at_ms` (never before it began).
    pub fn close(&self, peer: &str, generation: u64, at_ms: u64) {
        for s in self.segments.lock().iter_mut() {
            if s.peer == peer && s.generation == generation && s.to_ms.is_none() {
                s.to_ms = Some(at_ms.max(s.from_ms));
            }
        }
    }

    /// Whether `peer` (generation `generation`) sends a share at `at_ms`,
    /// as its engine model runs it: a real peer that leaves waits for its
    /// engine to end its run, not for the plan to say it should have.
    pub fn sends(&self, peer: &str, generation: u64, at_ms: u64) -> bool {
        self.segments.lock().iter().any(|s| {
            s.peer == peer
                && s.generation == generation
                && s.from_ms <= at_ms
                && s.to_ms.is_none_or(|to| at_ms < to)
                && s.plan.shares.get(peer).is_some_and(|share| *share > 0.0)
        })
    }

    /// Every segment.
    pub fn segments(&self) -> Vec<Segment> {
        self.segments.lock().clone()
    }

    /// How far what the peers intended strays from the cluster curve, in
    /// arrivals: where the shares held at once sum to more than one, the
    /// excess was sent twice; where to less, the shortfall was never sent.
    /// `curve` is the cluster's curve, its origin at `test_start_ms`.
    pub fn coverage(&self, curve: &RateCurve, test_start_ms: u64) -> Coverage {
        let secs =
            |ms: u64| (ms.saturating_sub(test_start_ms) as f64 / 1_000.0).min(curve.duration());
        // Share changes at each instant: +share at a segment's start, -share
        // at its end.
        let mut steps: Vec<(f64, f64)> = Vec::new();
        for s in self.segments.lock().iter() {
            let share = s.plan.shares.get(&s.peer).copied().unwrap_or(0.0);
            let (from, to) = (secs(s.from_ms), s.to_ms.map_or(curve.duration(), secs));
            if share > 0.0 && to > from {
                steps.push((from, share));
                steps.push((to, -share));
            }
        }
        steps.push((0.0, 0.0));
        steps.push((curve.duration(), 0.0));
        steps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut coverage = Coverage::default();
        let mut held = 0.0;
        for pair in steps.windows(2) {
            held += pair[0].1;
            let arrivals = curve.count_between(pair[0].0, pair[1].0);
            // Shares are fractions summing to one per epoch: a rounding
            // error is not a double send.
            if held > 1.0 + 1e-9 {
                coverage.sent_twice += (held - 1.0) * arrivals;
            } else if held < 1.0 - 1e-9 {
                coverage.never_sent += (1.0 - held.max(0.0)) * arrivals;
            }
        }
        coverage
    }

    /// Intended count per incarnation (name, generation).
    pub fn intended(&self, base: &RateCurve) -> BTreeMap<(String, u64), f64> {
        let mut counts = BTreeMap::new();
        for s in self.segments.lock().iter() {
            *counts.entry((s.peer.clone(), s.generation)).or_insert(0.0) += s.intended(base);
        }
        counts
    }
}
