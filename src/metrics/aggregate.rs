//! The aggregator: turns shards' closed windows into the per-second series
//! and the run's cumulative statistics.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cpu::CpuMeter;
use super::histogram::{LatencyHistogram, LatencySummary, encode_v2};
use super::recorder::MetricsHub;
use super::stats::{OpStats, Phase, Tag, WindowStats, counts_in_totals};

/// One second of the run, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Second of the run (0-based, counted from the start of the warmup).
    pub second: u64,
    /// Length of the window in seconds (shorter for the last one).
    pub duration_s: f64,
    /// Phase the window starts in.
    pub phase: Phase,
    /// Arrivals handed to workers.
    pub dispatched: u64,
    /// Arrivals dropped at the in-flight limit.
    pub dropped: u64,
    /// Arrivals the generator reached later than `max_lag` and did not send.
    #[serde(default)]
    pub missed: u64,
    /// Executions that succeeded (by completion time).
    pub success: u64,
    /// Executions that failed (by completion time).
    pub failure: u64,
    /// Completed executions per second.
    pub rate: f64,
    /// Latency from the intended start.
    pub latency: LatencySummary,
    /// Service time from the actual start.
    pub service: LatencySummary,
    /// 99th percentile scheduler lag, in microseconds.
    pub lag_p99_us: f64,
    /// Generator CPU use, percent of available cores.
    pub cpu_percent: f64,
    /// This second's histograms, so windows of several peers merge exactly
    /// (absent for a second without results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<HistogramPair>,
    /// A window still open in a running peer's figures so far: its counts
    /// are provisional and will grow until it closes (absent once closed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

/// Latency and service-time histograms (of a window, or of a tag),
/// compressed HDR V2 in base64 (see [`super::histogram::encode_v2`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramPair {
    /// Latency from the intended start.
    pub latency: String,
    /// Service time from the actual start.
    pub service: String,
}

/// Collects closed windows from a [`MetricsHub`] and keeps running totals.
pub struct Aggregator {
    hub: Arc<MetricsHub>,
    warmup_secs: f64,
    totals: WindowStats,
    series: Vec<WindowReport>,
    collected_before: u64,
    cpu: CpuMeter,
    /// The windows the last [`collect`](Self::collect) or
    /// [`finish`](Self::finish) closed, per operation key.
    closed: Vec<WindowStats>,
}

impl Aggregator {
    /// An aggregator for a run whose first `warmup_secs` are warmup.
    pub fn new(hub: Arc<MetricsHub>, warmup_secs: f64) -> Self {
        Self {
            hub,
            warmup_secs,
            totals: WindowStats::new(0),
            series: Vec::new(),
            collected_before: 0,
            cpu: CpuMeter::new(),
            closed: Vec::new(),
        }
    }

    /// Collects every window below `before` (one entry per second, empty
    /// seconds included) and returns the new reports.
    pub fn collect(&mut self, before: u64) -> &[WindowReport] {
        let windows = self.hub.take_closed(before);
        self.absorb(windows, before, None)
    }

    /// Collects everything left after the run, which lasted `elapsed_s`.
    pub fn finish(&mut self, elapsed_s: f64) -> &[WindowReport] {
        let windows = self.hub.take_all();
        let last = windows.iter().map(|w| w.index + 1).max().unwrap_or(0);
        let until = last.max(elapsed_s.ceil() as u64);
        self.absorb(windows, until, Some(elapsed_s))
    }

    /// The totals so far including results of windows still open, as a
    /// separate aggregator whose series ends with those windows marked
    /// [`open`](WindowReport::open), so the series always adds up to the
    /// totals (a peer lost mid-second leaves that second's results in
    /// both). Nothing is taken from the hub, so the run's own figures are
    /// unchanged.
    pub fn preview(&self) -> Aggregator {
        let mut totals = self.totals.clone();
        let mut by_second: BTreeMap<u64, WindowStats> = BTreeMap::new();
        for w in self.hub.peek_open() {
            totals.merge(&w);
            by_second
                .entry(w.index)
                .or_insert_with(|| WindowStats::new(w.index))
                .merge(&w);
        }
        let mut series = self.series.clone();
        let last_open = by_second.keys().next_back().map_or(0, |s| s + 1);
        for second in self.collected_before..last_open {
            let merged = by_second
                .remove(&second)
                .unwrap_or_else(|| WindowStats::new(second));
            let mut window = self.report(&merged, 1.0, 0.0);
            window.open = true;
            series.push(window);
        }
        Aggregator {
            hub: Arc::clone(&self.hub),
            warmup_secs: self.warmup_secs,
            totals,
            series,
            collected_before: self.collected_before,
            cpu: CpuMeter::new(),
            closed: Vec::new(),
        }
    }

    /// The windows the last [`collect`](Self::collect) or
    /// [`finish`](Self::finish) closed, in the order of the reports it
    /// returned, with every operation key's statistics (tags, error kinds,
    /// histograms) and the scheduler lag: what exporters send.
    pub fn closed_stats(&self) -> &[WindowStats] {
        &self.closed
    }

    /// The windows the last sweep closed, each report with its statistics.
    pub fn last_closed(&self) -> impl Iterator<Item = (&WindowReport, &WindowStats)> {
        let first = self.series.len() - self.closed.len();
        self.series[first..].iter().zip(&self.closed)
    }

    fn absorb(
        &mut self,
        windows: Vec<WindowStats>,
        before: u64,
        end_s: Option<f64>,
    ) -> &[WindowReport] {
        let mut by_second: BTreeMap<u64, WindowStats> = BTreeMap::new();
        for w in windows {
            self.totals.merge(&w);
            by_second
                .entry(w.index)
                .or_insert_with(|| WindowStats::new(w.index))
                .merge(&w);
        }
        let cpu_percent = self.cpu.sample();
        let first_new = self.series.len();
        self.closed.clear();
        for second in self.collected_before..before {
            let merged = by_second
                .remove(&second)
                .unwrap_or_else(|| WindowStats::new(second));
            let duration_s = end_s.map_or(1.0, |end| (end - second as f64).clamp(0.001, 1.0));
            self.series
                .push(self.report(&merged, duration_s, cpu_percent));
            self.closed.push(merged);
        }
        self.collected_before = self.collected_before.max(before);
        &self.series[first_new..]
    }

    fn report(&self, w: &WindowStats, duration_s: f64, cpu_percent: f64) -> WindowReport {
        let total = w.total();
        let phase = if (w.index as f64) < self.warmup_secs {
            Phase::Warmup
        } else {
            Phase::Main
        };
        WindowReport {
            second: w.index,
            duration_s,
            phase,
            dispatched: total.dispatched,
            dropped: total.dropped,
            missed: total.missed,
            success: total.success,
            failure: total.failure,
            rate: total.completed() as f64 / duration_s,
            latency: LatencySummary::of(&total.latency),
            service: LatencySummary::of(&total.service),
            lag_p99_us: w
                .lag
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1_000.0),
            cpu_percent,
            histograms: (total.completed() > 0).then(|| HistogramPair {
                latency: encode_v2(&total.latency),
                service: encode_v2(&total.service),
            }),
            open: false,
        }
    }

    /// The per-second series so far.
    pub fn series(&self) -> &[WindowReport] {
        &self.series
    }

    /// Cumulative statistics of one phase, all executions folded together
    /// (steps are not executions: see [`Tag`]).
    pub fn phase_total(&self, phase: Phase) -> OpStats {
        let mut total = OpStats::default();
        for (key, stats) in &self.totals.ops {
            if key.0 == phase && counts_in_totals(key) {
                total.merge(stats);
            }
        }
        total
    }

    /// Cumulative statistics of one phase per execution tag (untagged
    /// results and steps excluded), by name.
    pub fn tagged(&self, phase: Phase) -> Vec<(&'static str, &OpStats)> {
        self.named(phase, |tag| match tag {
            Tag::Execution(name) => Some(name),
            Tag::Step(_) => None,
        })
    }

    /// Cumulative statistics of one phase per step, by name.
    pub fn steps(&self, phase: Phase) -> Vec<(&'static str, &OpStats)> {
        self.named(phase, |tag| match tag {
            Tag::Step(name) => Some(name),
            Tag::Execution(_) => None,
        })
    }

    fn named(
        &self,
        phase: Phase,
        pick: impl Fn(Tag) -> Option<&'static str>,
    ) -> Vec<(&'static str, &OpStats)> {
        let mut named: Vec<_> = self
            .totals
            .ops
            .iter()
            .filter(|((p, _), _)| *p == phase)
            .filter_map(|((_, tag), stats)| Some((pick((*tag)?)?, stats)))
            .collect();
        named.sort_by_key(|(name, _)| *name);
        named
    }

    /// Cumulative scheduler lag, if the run was paced.
    pub fn lag(&self) -> Option<&LatencyHistogram> {
        self.totals.lag.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_has_one_entry_per_second_and_totals_add_up() {
        let hub = MetricsHub::new(2);
        let (a, b) = (hub.recorder(), hub.recorder());
        a.record_execution(0, (Phase::Warmup, None), 1_000, 1_000, None);
        b.record_execution(
            2,
            (Phase::Main, Some(Tag::Execution("login"))),
            2_000,
            1_000,
            None,
        );
        b.record_dispatch(2, Phase::Main, 500, true);
        let mut agg = Aggregator::new(hub, 1.0);
        assert_eq!(agg.collect(2).len(), 2);
        assert_eq!(agg.closed_stats().len(), 2);
        assert_eq!(agg.closed_stats()[0].total().completed(), 1);
        let rest = agg.finish(2.5);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].dropped, 1);
        assert!((rest[0].duration_s - 0.5).abs() < 1e-9);
        let last = &agg.closed_stats()[0];
        assert_eq!(last.index, 2);
        assert_eq!(last.ops[0].0, (Phase::Main, Some(Tag::Execution("login"))));
        assert_eq!(agg.series()[0].phase, Phase::Warmup);
        assert_eq!(agg.phase_total(Phase::Main).completed(), 1);
        assert_eq!(agg.phase_total(Phase::Warmup).completed(), 1);
        assert_eq!(agg.tagged(Phase::Main)[0].0, "login");
        assert_eq!(agg.lag().unwrap().len(), 1);
    }

    #[test]
    fn a_preview_series_adds_up_to_its_totals() {
        let hub = MetricsHub::new(2);
        let rec = hub.recorder();
        for second in [0, 0, 1, 2, 2, 2] {
            rec.record_execution(second, (Phase::Main, None), 1_000, 1_000, None);
        }
        let mut agg = Aggregator::new(hub, 0.0);
        agg.collect(1);
        let preview = agg.preview();
        let series = preview.series();
        assert_eq!(series.len(), 3);
        assert!(!series[0].open && series[1].open && series[2].open);
        let in_series: u64 = series.iter().map(|w| w.success + w.failure).sum();
        assert_eq!(in_series, preview.phase_total(Phase::Main).completed());
        assert_eq!(in_series, 6);
        assert_eq!(agg.series().len(), 1, "the run's own series is unchanged");
    }
}
