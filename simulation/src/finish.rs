//! The checks made once a run is over: every kill was detected, the test
//! ended everywhere, membership and plan converged within the bound, no
//! arrival was meant to be sent twice nor left unsent beyond what the
//! faults played allow, and merged histograms count what the peers
//! counted.

use vajra::metrics::histogram::{decode_v2, encode_v2, merge, new_histogram};

use crate::invariants::names;
use crate::ledger::Coverage;
use crate::measure::Pending;
use crate::run::{CONVERGENCE_BOUND, Summary};
use crate::world::World;

/// The run's counts.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// The target integral: the final cluster curve's total.
    pub target: f64,
    /// Sum of every incarnation's intended count.
    pub intended: f64,
    /// What the faults played allow of each (see `run::LOSS_WINDOW`,
    /// `run::DOUBLE_WINDOW`).
    pub bounds: Coverage,
    /// Incarnations that ran a share.
    pub incarnations: usize,
    /// Sum of the peers' (rounded) counts.
    pub peer_total: u64,
    /// Count of the merged histogram.
    pub merged_total: u64,
    /// What the shares covered of the cluster curve.
    pub coverage: Coverage,
}

/// Runs the end-of-run checks and fills `summary`'s timings and counts.
pub fn check(world: &World, pending: &[Pending], bounds: Coverage, summary: &mut Summary) {
    let checker = &world.shared.checker;
    for p in pending {
        checker.check(names::CONVERGENCE, p.detected_ms.is_some(), || {
            format!("{} was killed and never seen dead everywhere", p.id.node_id)
        });
        summary.detections.extend(p.detected_ms);
        if p.held_share && !p.cancelled {
            checker.check(names::CONVERGENCE, p.resplit_ms.is_some(), || {
                format!("{}'s share was never re-split", p.id.node_id)
            });
            summary.resplits.extend(p.resplit_ms);
        }
    }
    if summary.raft_formed_ms.is_none() {
        return;
    }
    checker.check(
        names::CONVERGENCE,
        summary
            .convergence_ms
            .is_some_and(|ms| ms <= CONVERGENCE_BOUND.as_millis() as u64),
        || {
            format!(
                "membership and plan converged after {:?} ms (bound {CONVERGENCE_BOUND:?})",
                summary.convergence_ms
            )
        },
    );
    check_ended(world);
    summary.counts = counts(world, bounds);
}

fn check_ended(world: &World) {
    for peer in world.peers.values() {
        let state = peer.node.machine.state();
        world.shared.checker.check(
            names::ENDS,
            state.plan.is_none() && !state.stopped.is_empty(),
            || format!("{} still has a plan after the test's end", peer.name),
        );
    }
}

fn counts(world: &World, bounds: Coverage) -> Counts {
    let checker = &world.shared.checker;
    let segments = world.shared.ledger.segments();
    let Some(latest) = segments.iter().map(|s| &s.plan).max_by_key(|p| p.epoch) else {
        checker.check(names::LOSS, false, || "no peer ran the test".into());
        return Counts::default();
    };
    let Ok(base) = latest.base_curve() else {
        checker.check(names::LOSS, false, || "the test has no rate curve".into());
        return Counts::default();
    };
    let target = latest.cluster_curve(&base).map_or(0.0, |c| c.total());
    let per_peer = world.shared.ledger.intended(&base);
    let coverage = latest
        .cluster_curve(&base)
        .map_or(Coverage::default(), |curve| {
            world
                .shared
                .ledger
                .coverage(&curve, latest.test_start_unix_ms)
        });
    let intended: f64 = per_peer.values().sum();
    // Rounding of the curve's integral over many segments: 1e-6 of it.
    let rounding = 1e-6 * target;
    checker.check(
        names::NO_DOUBLE_SEND,
        coverage.sent_twice <= bounds.sent_twice + rounding,
        || {
            format!(
                "{:.1} arrivals were meant to be sent twice; the faults allow {:.1}",
                coverage.sent_twice, bounds.sent_twice
            )
        },
    );
    checker.check(
        names::LOSS,
        coverage.never_sent <= bounds.never_sent + rounding,
        || {
            format!(
                "{:.1} arrivals were never meant to be sent; the faults allow {:.1}",
                coverage.never_sent, bounds.never_sent
            )
        },
    );
    let (peer_total, merged_total) = merge_histograms(per_peer.values().copied());
    checker.check(names::HISTOGRAMS, peer_total == merged_total, || {
        format!("merged histogram counts {merged_total}, the peers {peer_total}")
    });
    Counts {
        target,
        intended,
        bounds,
        incarnations: per_peer.len(),
        peer_total,
        merged_total,
        coverage,
    }
}

/// Gives each peer a synthetic latency histogram holding its count, sends
/// it through the V2 encoding reports use, and merges them as
/// `export::merge` does: (sum of the peers' counts, merged count).
fn merge_histograms(counts: impl Iterator<Item = f64>) -> (u64, u64) {
    let mut merged = new_histogram();
    let mut total = 0;
    for (i, count) in counts.enumerate() {
        let count = count.round() as u64;
        let mut mine = new_histogram();
        for (k, part) in split(count, 4).into_iter().enumerate() {
            let latency_ns = 1_000_000 * (1 + (i as u64 * 7 + k as u64 * 13) % 50);
            if part > 0 {
                mine.record_n(latency_ns, part)
                    .expect("latency within range");
            }
        }
        total += count;
        let decoded = decode_v2(&encode_v2(&mine)).expect("V2 round trip");
        merge(&mut merged, &decoded);
    }
    (total, merged.len())
}

fn split(count: u64, parts: u64) -> Vec<u64> {
    (0..parts)
        .map(|k| count / parts + u64::from(k < count % parts))
        .collect()
}
