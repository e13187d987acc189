//! A small simulated cluster (30 peers) through churn and partitions: the
//! invariants hold, killed share holders' shares are re-split, and the
//! cluster's intended count tracks the target integral.

use std::time::Duration;

use vajra_simulation::{Config, Scenario, Summary, report, run};

fn simulate(scenario: Scenario, peers: usize, seed: u64, duration_secs: u64) -> Summary {
    let summary = run(&Config {
        peers,
        seed,
        scenario,
        duration_secs,
        gossip_interval: Duration::from_millis(150),
        rate: 1_000.0,
    })
    .expect("the simulation runs");
    println!("{}", report::render(&summary));
    summary
}

#[test]
fn churn_keeps_the_invariants_and_resplits_killed_shares() {
    let s = simulate(Scenario::Churn, 30, 7, 50);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(s.raft_formed_ms.is_some(), "the cluster formed");
    assert!(
        s.faults.get("kill").copied().unwrap_or(0) >= 2,
        "{:?}",
        s.faults
    );
    assert!(!s.detections.is_empty(), "kills were detected");
    assert!(
        !s.resplits.is_empty(),
        "a killed share holder's share was re-split"
    );
    assert!(
        s.resplits.iter().all(|&ms| ms <= 5_000),
        "re-split within 5 s: {:?}",
        s.resplits
    );
    // A peer killed soon after a freeze is detected later (its heartbeat
    // interval estimate grew); 10 s bounds both.
    assert!(
        s.detections.iter().all(|&ms| ms <= 10_000),
        "{:?}",
        s.detections
    );
    assert!(s.convergence_ms.is_some());
    let c = &s.counts;
    assert!(c.target > 0.0);
    assert!(c.coverage.sent_twice <= c.bounds.sent_twice, "{c:?}");
    assert!(c.coverage.never_sent <= c.bounds.never_sent, "{c:?}");
    // Churn has no partition: only an epoch applied late may overlap, for
    // a fraction of a second: never a share run twice for longer.
    assert!(c.coverage.sent_twice < 1e-3 * c.target, "{c:?}");
    assert_eq!(c.merged_total, c.peer_total);
    assert!(s.epochs >= 3, "re-splits and rate updates made new epochs");
    for invariant in [
        "one-leader-per-term",
        "shares-sum-to-curve",
        "one-epoch-at-a-time",
    ] {
        assert!(
            s.checks.get(invariant).copied().unwrap_or(0) > 0,
            "{invariant} checked"
        );
    }
}

#[test]
fn without_faults_the_intended_count_is_the_integral() {
    let s = simulate(Scenario::Steady, 20, 3, 40);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let c = &s.counts;
    assert!(
        (c.intended - c.target).abs() < 1e-6 * c.target,
        "intended {} vs target {}",
        c.intended,
        c.target
    );
    assert!(
        c.coverage.sent_twice < 1e-6 * c.target && c.coverage.never_sent < 1e-6 * c.target,
        "{:?}",
        c.coverage
    );
    assert_eq!(c.incarnations, 20);
    assert_eq!(s.epochs, 2, "the start and one rate update");
}

#[test]
fn partitions_heal_and_converge() {
    let s = simulate(Scenario::Partition, 20, 11, 40);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(s.faults.get("partition").copied().unwrap_or(0) >= 2);
    assert!(s.net.blocked > 0, "the partition dropped messages");
    assert!(s.convergence_ms.is_some());
}

/// A scale-down on a clean network: peers leave gracefully one after
/// another, two at once and the leader among them, while one joins; the
/// real leader re-splits each share at once and each leaver runs its own
/// to the hand-over, so nothing is sent twice or left unsent.
#[test]
fn graceful_leaves_hand_their_shares_over_exactly() {
    let s = simulate(Scenario::Leaves, 12, 5, 40);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.faults.get("leave").copied(), Some(6), "{:?}", s.faults);
    assert_eq!(s.faults.get("leave cut short"), None, "{:?}", s.faults);
    assert_eq!(s.leaves.len(), 6);
    assert!(
        s.leaves.iter().all(|&ms| ms <= 5_000),
        "free to go within 5 s: {:?}",
        s.leaves
    );
    assert_eq!(s.peers_at_end, 12 - 6 + 1);
    let c = &s.counts;
    assert!(
        c.coverage.sent_twice < 1e-6 * c.target && c.coverage.never_sent < 1e-6 * c.target,
        "{:?}",
        c.coverage
    );
    assert!(
        (c.intended - c.target).abs() < 1e-6 * c.target,
        "intended {} vs target {}",
        c.intended,
        c.target
    );
    assert_eq!(c.merged_total, c.peer_total);
}
