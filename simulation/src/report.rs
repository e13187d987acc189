//! The short summary a run prints.

use std::fmt::Write as _;

use crate::run::Summary;

/// min / median / max of `values` in seconds, or "-".
fn spread(values: &[u64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let s = |ms: u64| ms as f64 / 1_000.0;
    format!(
        "{:.2} / {:.2} / {:.2} s (n={})",
        s(sorted[0]),
        s(sorted[sorted.len() / 2]),
        s(sorted[sorted.len() - 1]),
        sorted.len()
    )
}

fn secs(ms: Option<u64>) -> String {
    ms.map_or("never".into(), |ms| format!("{:.2} s", ms as f64 / 1_000.0))
}

/// The summary as text.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} · {} peers ({} at end) · seed {} · {:.1} virtual s in {:.1} wall s",
        s.scenario, s.peers, s.peers_at_end, s.seed, s.virtual_secs, s.wall_secs
    );
    let _ = writeln!(out, "replay fingerprint: {:016x}", s.fingerprint);
    let _ = writeln!(
        out,
        "formation: seeds led at {} · then gossip converged in {} · Raft with every peer in {}",
        secs(s.seeds_led_ms),
        secs(s.gossip_formed_ms),
        secs(s.raft_formed_ms)
    );
    let faults: Vec<String> = s.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "faults: {}", faults.join(", "));
    let _ = writeln!(
        out,
        "failure detection (min/median/max): {}",
        spread(&s.detections)
    );
    let _ = writeln!(
        out,
        "re-split after a kill (min/median/max): {}",
        spread(&s.resplits)
    );
    let _ = writeln!(
        out,
        "graceful leave, announced to free to go (min/median/max): {}",
        spread(&s.leaves)
    );
    let _ = writeln!(
        out,
        "convergence after the last fault: {}",
        secs(s.convergence_ms)
    );
    let c = &s.counts;
    let off = if c.target > 0.0 {
        100.0 * (c.intended - c.target) / c.target
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "counts: intended {:.1} of target {:.1} ({off:+.3} %) over {} incarnations; histograms merged {} = peers {}",
        c.intended, c.target, c.incarnations, c.merged_total, c.peer_total
    );
    let _ = writeln!(
        out,
        "coverage: {:.1} sent twice (bound {:.1}), {:.1} never sent (bound {:.1})",
        c.coverage.sent_twice, c.bounds.sent_twice, c.coverage.never_sent, c.bounds.never_sent
    );
    let _ = writeln!(
        out,
        "raft: {} epochs committed, {} leader terms · network: {} delivered, {} blocked, {} lost",
        s.epochs, s.terms, s.net.delivered, s.net.blocked, s.net.lost
    );
    let checks: Vec<String> = s.checks.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "invariant checks: {}", checks.join(", "));
    let _ = writeln!(out, "violations: {}", s.violations.len());
    for v in &s.violations {
        let _ = writeln!(out, "  {v}");
    }
    out
}
