//! Merging peers' reports into the cluster's: counts add, histograms add
//! exactly (decoded from each report's HDR V2 encoding), and percentiles
//! are computed from the merged histograms, never averaged.

use std::collections::BTreeMap;
use std::time::Duration;

use super::report::{Histograms, PhaseReport, Report, SelfCheck};
use crate::metrics::histogram::{decode_v2, encode_v2, merge, new_histogram};
use crate::metrics::stats::ErrorCounts;
use crate::metrics::{LatencyHistogram, LatencySummary, WindowReport};
use crate::threshold::{Threshold, ThresholdInput};

fn decode_all<'a>(encoded: impl Iterator<Item = &'a str>) -> anyhow::Result<LatencyHistogram> {
    let mut total = new_histogram();
    for text in encoded {
        merge(&mut total, &decode_v2(text)?);
    }
    Ok(total)
}

fn merge_phase(
    parts: &[&PhaseReport],
    latency: &LatencyHistogram,
    service: &LatencyHistogram,
) -> PhaseReport {
    let sum = |f: fn(&PhaseReport) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
    let duration_s = parts.iter().map(|p| p.duration_s).fold(0.0, f64::max);
    let completed = sum(|p| p.completed);
    let failure = sum(|p| p.failure);
    let mut errors = ErrorCounts::default();
    for p in parts {
        for e in &p.errors {
            errors.add(&e.kind, e.count, &e.example);
        }
    }
    PhaseReport {
        duration_s,
        dispatched: sum(|p| p.dispatched),
        dropped: sum(|p| p.dropped),
        completed,
        success: sum(|p| p.success),
        failure,
        error_rate: if completed == 0 {
            0.0
        } else {
            failure as f64 / completed as f64
        },
        rate: if duration_s > 0.0 {
            completed as f64 / duration_s
        } else {
            0.0
        },
        latency: LatencySummary::of(latency),
        service: LatencySummary::of(service),
        errors: errors.sorted(),
    }
}

/// Adds the per-second counts of every peer. Per-second latency needs
/// per-second histograms, which reports do not carry yet: merged windows
/// leave their latency summaries empty rather than average percentiles.
fn merge_series(parts: &[&Report]) -> Vec<WindowReport> {
    let mut by_second: BTreeMap<u64, WindowReport> = BTreeMap::new();
    for report in parts {
        for w in &report.series {
            let entry = by_second.entry(w.second).or_insert_with(|| WindowReport {
                latency: LatencySummary::default(),
                service: LatencySummary::default(),
                dispatched: 0,
                dropped: 0,
                success: 0,
                failure: 0,
                rate: 0.0,
                lag_p99_us: 0.0,
                cpu_percent: 0.0,
                ..w.clone()
            });
            entry.dispatched += w.dispatched;
            entry.dropped += w.dropped;
            entry.success += w.success;
            entry.failure += w.failure;
            entry.rate += w.rate;
            entry.duration_s = entry.duration_s.max(w.duration_s);
            entry.lag_p99_us = entry.lag_p99_us.max(w.lag_p99_us);
            entry.cpu_percent = entry.cpu_percent.max(w.cpu_percent);
        }
    }
    by_second.into_values().collect()
}

/// The cluster's report from its peers' (`(peer, report)` pairs),
/// evaluating `thresholds` on the merged figures.
pub fn merge_reports(
    parts: &[(String, Report)],
    thresholds: &[Threshold],
    max_lag: Duration,
) -> anyhow::Result<Report> {
    let first = &parts
        .first()
        .ok_or_else(|| anyhow::anyhow!("no report to merge"))?
        .1;
    let reports: Vec<&Report> = parts.iter().map(|(_, r)| r).collect();
    let latency = decode_all(reports.iter().map(|r| r.histograms.latency.as_str()))?;
    let service = decode_all(reports.iter().map(|r| r.histograms.service.as_str()))?;
    let lags: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.histograms.scheduler_lag.as_deref())
        .collect();
    let lag = (!lags.is_empty())
        .then(|| decode_all(lags.into_iter()))
        .transpose()?;
    let main = merge_phase(
        &reports.iter().map(|r| &r.main).collect::<Vec<_>>(),
        &latency,
        &service,
    );
    let warmups: Vec<&PhaseReport> = reports.iter().filter_map(|r| r.warmup.as_ref()).collect();
    let warmup_latency = decode_all(
        reports
            .iter()
            .filter_map(|r| r.histograms.warmup_latency.as_deref()),
    )?;
    let warmup =
        (!warmups.is_empty()).then(|| merge_phase(&warmups, &warmup_latency, &new_histogram()));
    let input = ThresholdInput {
        latency: &latency,
        service: &service,
        lag: lag.as_ref(),
        completed: main.completed,
        failures: main.failure,
        dropped: main.dropped,
        rate: main.rate,
    };
    let mut reasons = Vec::new();
    for (peer, r) in parts {
        reasons.extend(
            r.self_check
                .reasons
                .iter()
                .map(|reason| format!("{peer}: {reason}")),
        );
    }
    if let Some(lag) = &lag {
        let p99 = lag.value_at_quantile(0.99) as u128;
        if p99 > max_lag.as_nanos() && reasons.is_empty() {
            reasons.push(format!(
                "cluster scheduler lag p99 {}µs exceeds the limit",
                p99 / 1_000
            ));
        }
    }
    let worst = ["aborted", "interrupted", "completed"]
        .into_iter()
        .find(|o| reports.iter().any(|r| r.outcome == *o))
        .unwrap_or("completed");
    Ok(Report {
        schema: first.schema.clone(),
        task: first.task.clone(),
        model: first.model.clone(),
        started_at: first.started_at.clone(),
        outcome: worst.to_owned(),
        abort_reason: reports.iter().find_map(|r| r.abort_reason.clone()),
        load_secs: reports.iter().map(|r| r.load_secs).fold(0.0, f64::max),
        warmup_secs: first.warmup_secs,
        planned: reports.iter().map(|r| r.planned).sum(),
        instances: reports.iter().map(|r| r.instances).sum(),
        unfinished: reports.iter().map(|r| r.unfinished).sum(),
        tags: BTreeMap::new(),
        scheduler_lag: lag.as_ref().map(LatencySummary::of),
        self_check: SelfCheck {
            reliable: reasons.is_empty(),
            reasons,
            cpu_percent_mean: reports
                .iter()
                .map(|r| r.self_check.cpu_percent_mean)
                .fold(0.0, f64::max),
            cpu_percent_max: reports
                .iter()
                .map(|r| r.self_check.cpu_percent_max)
                .fold(0.0, f64::max),
            peak_rss_mb: reports
                .iter()
                .map(|r| r.self_check.peak_rss_mb)
                .fold(0.0, f64::max),
        },
        thresholds: thresholds.iter().map(|t| t.evaluate(&input)).collect(),
        series: merge_series(&reports),
        histograms: Histograms {
            latency: encode_v2(&latency),
            service: encode_v2(&service),
            warmup_latency: warmup.as_ref().map(|_| encode_v2(&warmup_latency)),
            scheduler_lag: lag.as_ref().map(encode_v2),
        },
        main,
        warmup,
        peers: parts.iter().cloned().collect(),
        events: Vec::new(),
    })
}
