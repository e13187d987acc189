//! Merging peers' reports into the cluster's: counts add, histograms add
//! exactly (decoded from each report's HDR V2 encoding), and percentiles
//! are computed from the merged histograms, never averaged.

use std::collections::BTreeMap;
use std::time::Duration;

use super::pipeline::ExportOutcome;
use super::report::{Histograms, Outcome, PhaseReport, Report, SelfCheck};
use crate::metrics::histogram::{decode_v2, encode_v2, merge, new_histogram};
use crate::metrics::stats::ErrorCounts;
use crate::metrics::{HistogramPair, LatencyHistogram, LatencySummary, WindowReport};
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
    // Saturating, here and below: the counts come from other processes.
    let sum = |f: fn(&PhaseReport) -> u64| parts.iter().map(|p| f(p)).fold(0, u64::saturating_add);
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
        missed: sum(|p| p.missed),
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

/// One second of the cluster: the peers' windows of that second added.
struct MergedWindow {
    report: WindowReport,
    latency: LatencyHistogram,
    service: LatencyHistogram,
    /// Whether a peer had results that second but no histograms (a report
    /// of an older version): its percentiles are then unknown.
    incomplete: bool,
}

impl MergedWindow {
    /// Nothing yet of the second `like` is a window of.
    fn empty(like: &WindowReport) -> Self {
        Self {
            report: WindowReport {
                latency: LatencySummary::default(),
                service: LatencySummary::default(),
                dispatched: 0,
                dropped: 0,
                missed: 0,
                success: 0,
                failure: 0,
                rate: 0.0,
                lag_p99_us: 0.0,
                cpu_percent: 0.0,
                histograms: None,
                open: false,
                ..like.clone()
            },
            latency: new_histogram(),
            service: new_histogram(),
            incomplete: false,
        }
    }

    fn add(&mut self, w: &WindowReport) -> anyhow::Result<()> {
        let entry = &mut self.report;
        entry.dispatched = entry.dispatched.saturating_add(w.dispatched);
        entry.dropped = entry.dropped.saturating_add(w.dropped);
        entry.missed = entry.missed.saturating_add(w.missed);
        entry.open |= w.open;
        entry.success = entry.success.saturating_add(w.success);
        entry.failure = entry.failure.saturating_add(w.failure);
        entry.rate += w.rate;
        entry.duration_s = entry.duration_s.max(w.duration_s);
        entry.lag_p99_us = entry.lag_p99_us.max(w.lag_p99_us);
        entry.cpu_percent = entry.cpu_percent.max(w.cpu_percent);
        match &w.histograms {
            Some(h) => {
                merge(&mut self.latency, &decode_v2(&h.latency)?);
                merge(&mut self.service, &decode_v2(&h.service)?);
            }
            None => self.incomplete |= w.success + w.failure > 0,
        }
        Ok(())
    }

    fn finish(mut self) -> WindowReport {
        if !self.incomplete && !self.latency.is_empty() {
            self.report.latency = LatencySummary::of(&self.latency);
            self.report.service = LatencySummary::of(&self.service);
            self.report.histograms = Some(HistogramPair {
                latency: encode_v2(&self.latency),
                service: encode_v2(&self.service),
            });
        }
        self.report
    }
}

/// Adds every peer's windows second by second (peers' run clocks all start
/// at the test's start): counts add, and each second's percentiles come
/// from the sum of that second's histograms, never from averaging.
fn merge_series(parts: &[&Report]) -> anyhow::Result<Vec<WindowReport>> {
    let mut by_second: BTreeMap<u64, MergedWindow> = BTreeMap::new();
    for report in parts {
        for w in &report.series {
            by_second
                .entry(w.second)
                .or_insert_with(|| MergedWindow::empty(w))
                .add(w)?;
        }
    }
    Ok(by_second.into_values().map(MergedWindow::finish).collect())
}

/// The cluster's window of one second from its peers' windows of it
/// (`windows` all of the same second): counts add, percentiles come from
/// the added histograms. `None` for no window.
pub fn merge_windows(windows: &[&WindowReport]) -> anyhow::Result<Option<WindowReport>> {
    let Some(first) = windows.first() else {
        return Ok(None);
    };
    let mut merged = MergedWindow::empty(first);
    for w in windows {
        merged.add(w)?;
    }
    Ok(Some(merged.finish()))
}

/// Which of a report's per-name maps to merge: its tags or its steps.
type Pick<T> = fn(&Report) -> &BTreeMap<String, T>;

/// Each tag's (or step's) merged figures and histograms. A tag some report has
/// without its histograms (an older version's) is left out rather than
/// given wrong percentiles.
fn merge_tags(
    reports: &[&Report],
    (figures, histograms_of): (Pick<PhaseReport>, Pick<HistogramPair>),
) -> anyhow::Result<(
    BTreeMap<String, PhaseReport>,
    BTreeMap<String, HistogramPair>,
)> {
    let names: std::collections::BTreeSet<&String> =
        reports.iter().flat_map(|r| figures(r).keys()).collect();
    let (mut tags, mut histograms) = (BTreeMap::new(), BTreeMap::new());
    for name in names {
        let with_tag: Vec<&Report> = reports
            .iter()
            .copied()
            .filter(|r| figures(r).contains_key(name))
            .collect();
        let pairs: Option<Vec<&HistogramPair>> = with_tag
            .iter()
            .map(|r| histograms_of(r).get(name))
            .collect();
        let Some(pairs) = pairs else { continue };
        let latency = decode_all(pairs.iter().map(|p| p.latency.as_str()))?;
        let service = decode_all(pairs.iter().map(|p| p.service.as_str()))?;
        let parts: Vec<&PhaseReport> = with_tag.iter().map(|r| &figures(r)[name]).collect();
        tags.insert(name.clone(), merge_phase(&parts, &latency, &service));
        let pair = HistogramPair {
            latency: encode_v2(&latency),
            service: encode_v2(&service),
        };
        histograms.insert(name.clone(), pair);
    }
    Ok((tags, histograms))
}

/// Every peer's exporters, each named with its peer.
fn peer_exports(parts: &[(String, Report)]) -> Vec<ExportOutcome> {
    parts
        .iter()
        .flat_map(|(peer, report)| {
            report.exports.iter().map(move |e| ExportOutcome {
                peer: Some(peer.clone()),
                ..e.clone()
            })
        })
        .collect()
}

/// Each named event counter summed over the peers.
fn sum_counters(reports: &[&Report]) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for report in reports {
        for (name, n) in &report.counters {
            let total = sum.entry(name.clone()).or_insert(0u64);
            *total = total.saturating_add(*n);
        }
    }
    sum
}

/// The cluster's report from its peers' (`(peer, report)` pairs),
/// evaluating `thresholds` on the merged figures.
pub fn merge_reports(
    parts: &[(String, Report)],
    thresholds: &[Threshold],
    reliable_lag: Duration,
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
        missed: main.missed,
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
        if p99 > reliable_lag.as_nanos() && reasons.is_empty() {
            reasons.push(format!(
                "cluster scheduler lag p99 {}µs exceeds the limit",
                p99 / 1_000
            ));
        }
    }
    let (tags, tag_histograms) = merge_tags(&reports, (|r| &r.tags, |r| &r.histograms.tags))?;
    let (steps, step_histograms) = merge_tags(&reports, (|r| &r.steps, |r| &r.histograms.steps))?;
    // The most severe outcome wins (Outcome orders them).
    let worst = reports
        .iter()
        .map(|r| r.outcome)
        .max()
        .unwrap_or(Outcome::Completed);
    Ok(Report {
        schema: first.schema.clone(),
        task: first.task.clone(),
        model: first.model.clone(),
        started_at: first.started_at.clone(),
        outcome: worst,
        abort_reason: reports.iter().find_map(|r| r.abort_reason.clone()),
        load_secs: reports.iter().map(|r| r.load_secs).fold(0.0, f64::max),
        warmup_secs: first.warmup_secs,
        planned: reports
            .iter()
            .try_fold(0u64, |sum, r| r.planned.map(|p| sum.saturating_add(p))),
        unsent: None,
        instances: reports.iter().map(|r| r.instances).sum(),
        unfinished: reports.iter().map(|r| r.unfinished).sum(),
        tags,
        steps,
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
        thresholds: thresholds
            .iter()
            .filter(|t| !t.is_relative())
            .map(|t| t.evaluate(&input))
            .collect(),
        series: merge_series(&reports)?,
        histograms: Histograms {
            latency: encode_v2(&latency),
            service: encode_v2(&service),
            warmup_latency: warmup.as_ref().map(|_| encode_v2(&warmup_latency)),
            scheduler_lag: lag.as_ref().map(encode_v2),
            tags: tag_histograms,
            steps: step_histograms,
        },
        main,
        warmup,
        peers: parts.iter().cloned().collect(),
        events: Vec::new(),
        counters: sum_counters(&reports),
        exports: peer_exports(parts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Aggregator, MetricsHub, Phase, Tag};

    /// A peer's report: `n` executions of `latency_us` µs in each of the
    /// seconds given, half of them tagged "login", and as many steps
    /// "fetch" inside them.
    fn peer_report(seconds: &[u64], n: u64, latency_us: u64) -> Report {
        let hub = MetricsHub::new(1);
        let recorder = hub.recorder();
        for &second in seconds {
            for i in 0..n {
                let tag = (i % 2 == 0).then_some(Tag::Execution("login"));
                let ns = (latency_us + i) * 1_000;
                recorder.record_execution(second, (Phase::Main, tag), ns, ns / 2, None);
                let step = (Phase::Main, Some(Tag::Step("fetch")));
                recorder.record_execution(second, step, ns / 2, ns / 4, None);
            }
        }
        let mut metrics = Aggregator::new(hub, 0.0);
        metrics.finish(4.0);
        Report::snapshot("t", &metrics, 0.0, 4.0)
    }

    #[test]
    fn windows_and_tags_merge_as_exactly_as_the_totals() {
        let fast = peer_report(&[0, 1, 2], 100, 100);
        let slow = peer_report(&[1, 2, 3], 50, 5_000);
        let parts = [
            ("a".to_owned(), fast.clone()),
            ("b".to_owned(), slow.clone()),
        ];
        let merged = merge_reports(&parts, &[], Duration::MAX).unwrap();
        assert_eq!(merged.main.completed, 300 + 150, "steps are not executions");
        let fetch = &merged.steps["fetch"];
        assert_eq!(fetch.completed, 300 + 150);
        let expected = decode_all(
            [&fast, &slow]
                .iter()
                .map(|r| r.histograms.steps["fetch"].latency.as_str()),
        )
        .unwrap();
        assert_eq!(fetch.latency, LatencySummary::of(&expected));
        for window in &merged.series {
            let mut expected = new_histogram();
            for report in [&fast, &slow] {
                let w = &report.series[window.second as usize];
                if let Some(h) = &w.histograms {
                    merge(&mut expected, &decode_v2(&h.latency).unwrap());
                }
            }
            assert_eq!(window.latency.count, expected.len());
            assert_eq!(
                window.latency.p99_us,
                expected.value_at_quantile(0.99) as f64 / 1e3
            );
        }
        // Second 1 holds both peers: its p99 is the slow peer's, which no
        // average of the two p99s would give.
        let both = &merged.series[1];
        assert_eq!(both.success, 150);
        assert!(both.latency.p99_us > 5_000.0, "{:?}", both.latency);
        let login = &merged.tags["login"];
        assert_eq!(login.completed, 3 * 50 + 3 * 25);
        let expected = decode_all(
            [&fast, &slow]
                .iter()
                .map(|r| r.histograms.tags["login"].latency.as_str()),
        )
        .unwrap();
        assert_eq!(login.latency, LatencySummary::of(&expected));
        assert_eq!(
            decode_v2(&merged.histograms.tags["login"].latency).unwrap(),
            expected
        );
    }

    /// Counts from other processes near u64::MAX saturate instead of
    /// wrapping (or, in a debug build, panicking).
    #[test]
    fn counts_past_the_largest_saturate() {
        let mut a = peer_report(&[0], 10, 100);
        let b = peer_report(&[0], 10, 100);
        a.main.completed = u64::MAX - 1;
        a.series[0].success = u64::MAX;
        a.counters.insert("reconnects".into(), u64::MAX);
        let mut b = b;
        b.counters.insert("reconnects".into(), 5);
        let parts = [("a".to_owned(), a), ("b".to_owned(), b)];
        let merged = merge_reports(&parts, &[], Duration::MAX).unwrap();
        assert_eq!(merged.main.completed, u64::MAX);
        assert_eq!(merged.series[0].success, u64::MAX);
        assert_eq!(merged.counters["reconnects"], u64::MAX);
    }
}
