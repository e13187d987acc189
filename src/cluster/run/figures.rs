//! A test's cluster-wide figures, exact, from any node: the node asked
//! fetches every participant's report so far (a `Results` request without
//! the series, see `control`), and they are merged here: histograms added,
//! then summarised. Gossip carries only each peer's small [`Digest`]; the
//! percentiles shown here are those of the merged histograms, never an
//! average of the peers' percentiles.
//!
//! [`Digest`]: crate::cluster::membership::state::Digest

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::export::Report;
use crate::export::merge::merge_reports;
use crate::metrics::{ErrorCount, LatencySummary};

/// Error kinds shown.
const TOP_ERRORS: usize = 5;

/// The merged figures of a test's measured phase so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestFigures {
    /// The test.
    pub test_id: String,
    /// Peers whose figures are merged.
    pub reporting: Vec<String>,
    /// Share holders of the current epoch that did not answer in time.
    pub missing: Vec<String>,
    /// Executions completed.
    pub completed: u64,
    /// Of which failed.
    pub failure: u64,
    /// Arrivals dropped at the in-flight limit.
    pub dropped: u64,
    /// Failures over completed.
    pub error_rate: f64,
    /// Latency from the intended start (merged histograms).
    pub latency: LatencySummary,
    /// Service time from the actual start (merged histograms).
    pub service: LatencySummary,
    /// The most frequent error kinds.
    pub errors: Vec<ErrorCount>,
    /// Each reporting peer's own figures, from the same fetch as the
    /// merged ones (so the two always agree).
    #[serde(default)]
    pub peers: Vec<PeerFigures>,
}

/// One peer's part of [`TestFigures`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerFigures {
    /// The peer.
    pub id: String,
    /// Executions it completed.
    pub completed: u64,
    /// Of which failed.
    pub failure: u64,
    /// Its latency p99, µs.
    pub p99_us: f64,
}

impl TestFigures {
    /// The figures of `merged`, the merge of `reporting`'s reports.
    pub fn of(
        test_id: &str,
        merged: &Report,
        reporting: Vec<String>,
        missing: Vec<String>,
    ) -> Self {
        let main = &merged.main;
        let peers = merged
            .peers
            .iter()
            .map(|(id, r)| PeerFigures {
                id: id.clone(),
                completed: r.main.completed,
                failure: r.main.failure,
                p99_us: r.main.latency.p99_us,
            })
            .collect();
        Self {
            test_id: test_id.to_owned(),
            reporting,
            missing,
            completed: main.completed,
            failure: main.failure,
            dropped: main.dropped,
            error_rate: main.error_rate,
            latency: main.latency,
            service: main.service,
            errors: main.errors.iter().take(TOP_ERRORS).cloned().collect(),
            peers,
        }
    }

    /// Lines for `status`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "test {} figures (merged histograms of {} peers{}): {} completed, {} failed ({:.2} %), {} dropped",
            self.test_id,
            self.reporting.len(),
            if self.missing.is_empty() {
                String::new()
            } else {
                format!("; no answer from {}", self.missing.join(", "))
            },
            self.completed,
            self.failure,
            self.error_rate * 100.0,
            self.dropped
        );
        for (name, l) in [("latency", &self.latency), ("service", &self.service)] {
            let _ = writeln!(
                out,
                "  {name:<8} p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
            );
        }
        for e in &self.errors {
            let _ = writeln!(out, "  error {}: {} (e.g. {})", e.kind, e.count, e.example);
        }
        out
    }
}

impl TestFigures {
    /// Merges the reports of `parts` (peer id and report) into `test_id`'s
    /// figures; `holders` are the current epoch's share holders, named as
    /// missing if they have no part.
    pub fn merge(
        test_id: &str,
        mut parts: Vec<(String, Report)>,
        holders: &[String],
    ) -> Result<TestFigures, String> {
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        if parts.is_empty() {
            return Err(format!("no peer has figures of test {test_id} yet"));
        }
        let merged = merge_reports(&parts, &[], Duration::MAX).map_err(|e| e.to_string())?;
        let reporting: Vec<String> = parts.into_iter().map(|(id, _)| id).collect();
        let missing = holders
            .iter()
            .filter(|h| !reporting.contains(h))
            .cloned()
            .collect();
        Ok(TestFigures::of(test_id, &merged, reporting, missing))
    }
}
