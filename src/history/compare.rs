//! Two recorded runs side by side: each figure of both, and how much the
//! second changed it (rate, error rate, every percentile of latency and
//! service time, overall and per tag), with both per-second series for
//! overlaid charts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::RunSummary;
use crate::export::Report;
use crate::export::report::PhaseReport;
use crate::metrics::LatencySummary;

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// What it is (`rate`, `latency.p99`, `service.p50`, …).
    pub metric: String,
    /// Its unit (`/s`, `%`, `ms`, `count`).
    pub unit: String,
    /// The first run's value.
    pub a: f64,
    /// The second run's value.
    pub b: f64,
    /// `(b - a) / a`, if `a` is not 0.
    pub change: Option<f64>,
}

/// One second of a run, for an overlaid chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Second of the run.
    pub second: u64,
    /// Completed per second.
    pub rate: f64,
    /// Latency p99, ms.
    pub p99_ms: f64,
    /// Failed that second.
    pub failure: u64,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The first (the reference).
    pub a: RunSummary,
    /// The second.
    pub b: RunSummary,
    /// The measured phase's figures.
    pub overall: Vec<Delta>,
    /// The same per task tag either run has.
    pub tags: BTreeMap<String, Vec<Delta>>,
    /// The first run's seconds.
    pub series_a: Vec<SeriesPoint>,
    /// The second run's seconds.
    pub series_b: Vec<SeriesPoint>,
}

/// Compares run `b` with run `a`.
pub fn compare(a: (&RunSummary, &Report), b: (&RunSummary, &Report)) -> Comparison {
    let empty = PhaseReport::default();
    let tags =
        a.1.tags
            .keys()
            .chain(b.1.tags.keys())
            .map(|tag| {
                let phase = |r: &Report| r.tags.get(tag).unwrap_or(&empty).clone();
                (tag.clone(), deltas(&phase(a.1), &phase(b.1)))
            })
            .collect();
    Comparison {
        a: a.0.clone(),
        b: b.0.clone(),
        overall: deltas(&a.1.main, &b.1.main),
        tags,
        series_a: series(a.1),
        series_b: series(b.1),
    }
}

fn deltas(a: &PhaseReport, b: &PhaseReport) -> Vec<Delta> {
    let mut rows = vec![
        delta("rate", "/s", a.rate, b.rate),
        delta(
            "error_rate",
            "%",
            a.error_rate * 100.0,
            b.error_rate * 100.0,
        ),
        delta("completed", "count", a.completed as f64, b.completed as f64),
        delta("failures", "count", a.failure as f64, b.failure as f64),
    ];
    rows.extend(latency_deltas("latency", &a.latency, &b.latency));
    rows.extend(latency_deltas("service", &a.service, &b.service));
    rows
}

fn latency_deltas(kind: &str, a: &LatencySummary, b: &LatencySummary) -> Vec<Delta> {
    let stats = |s: &LatencySummary| {
        [
            ("min", s.min_us),
            ("mean", s.mean_us),
            ("p50", s.p50_us),
            ("p75", s.p75_us),
            ("p90", s.p90_us),
            ("p95", s.p95_us),
            ("p99", s.p99_us),
            ("p99.9", s.p999_us),
            ("max", s.max_us),
        ]
    };
    stats(a)
        .into_iter()
        .zip(stats(b))
        .map(|((name, a), (_, b))| delta(&format!("{kind}.{name}"), "ms", a / 1e3, b / 1e3))
        .collect()
}

fn delta(metric: &str, unit: &str, a: f64, b: f64) -> Delta {
    Delta {
        metric: metric.to_owned(),
        unit: unit.to_owned(),
        a,
        b,
        change: (a != 0.0).then(|| (b - a) / a),
    }
}

/// Shortest window drawn: the drain's tail (a few ms holding what was in
/// flight) would show as a huge rate.
const SHORTEST_WINDOW_S: f64 = 0.5;

fn series(report: &Report) -> Vec<SeriesPoint> {
    report
        .series
        .iter()
        .filter(|w| w.duration_s >= SHORTEST_WINDOW_S)
        .map(|w| SeriesPoint {
            second: w.second,
            rate: w.rate,
            p99_ms: w.latency.p99_us / 1e3,
            failure: w.failure,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_relative_to_the_first_run() {
        let d = delta("rate", "/s", 100.0, 90.0);
        assert!((d.change.unwrap() + 0.1).abs() < 1e-12);
        assert_eq!(delta("failures", "count", 0.0, 3.0).change, None);
    }
}
