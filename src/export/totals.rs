//! Running totals exporters keep over a run: per tag, the executions, the
//! error kinds and both HDR histograms (merged exactly); the arrivals; and
//! the last window's gauges. Each exporter turns them into its own format
//! when it sends (OTLP's exponential buckets, Prometheus's classic ones).

use std::collections::BTreeMap;

use super::ExportWindow;
use crate::metrics::histogram::{merge, new_histogram};
use crate::metrics::{LatencyHistogram, Tag};

/// One tag's results over some span of the run.
#[derive(Debug, Clone)]
pub struct TagTotals {
    /// Latency from the intended start.
    pub latency: LatencyHistogram,
    /// Service time from the actual start.
    pub service: LatencyHistogram,
    /// Executions that succeeded.
    pub succeeded: u64,
    /// Executions that failed.
    pub failed: u64,
    /// Failures by kind, capped as the engine caps them.
    pub errors: BTreeMap<String, u64>,
}

impl Default for TagTotals {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            succeeded: 0,
            failed: 0,
            errors: BTreeMap::new(),
        }
    }
}

/// Results over some span of the run, both phases together.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    /// Per tag (`None`: untagged executions); steps' tags are not
    /// executions and are not counted in `dispatched` and the rest.
    pub tags: BTreeMap<Option<Tag>, TagTotals>,
    /// Arrivals handed to a task instance.
    pub dispatched: u64,
    /// Arrivals dropped at the in-flight limit.
    pub dropped: u64,
    /// Arrivals reached later than `--max-lag` and not sent.
    pub missed: u64,
    /// Event counters, by name.
    pub events: BTreeMap<&'static str, u64>,
}

impl RunTotals {
    /// Adds a closed window.
    pub fn fold(&mut self, window: &ExportWindow) {
        for ((_, tag), stats) in &window.stats.ops {
            let totals = self.tags.entry(*tag).or_default();
            merge(&mut totals.latency, &stats.latency);
            merge(&mut totals.service, &stats.service);
            totals.succeeded += stats.success;
            totals.failed += stats.failure;
            stats.errors.add_into(&mut totals.errors);
            self.dispatched += stats.dispatched;
            self.dropped += stats.dropped;
            self.missed += stats.missed;
        }
        for (name, grown) in &window.events {
            *self.events.entry(name).or_default() += grown;
        }
    }
}

/// A window's instantaneous figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauges {
    /// Arrivals per second asked for.
    pub target_rate: f64,
    /// Executions in flight.
    pub in_flight: u64,
    /// The scheduler's lag, p99, seconds.
    pub lag_p99_s: f64,
    /// Generator CPU, share of its cores.
    pub cpu_ratio: f64,
    /// Generator resident memory, bytes.
    pub rss_bytes: u64,
}

impl Gauges {
    /// `window`'s gauges.
    pub fn of(window: &ExportWindow) -> Self {
        Self {
            target_rate: window.target_rate.unwrap_or(0.0),
            in_flight: window.in_flight,
            lag_p99_s: window.summary.lag_p99_us / 1e6,
            cpu_ratio: window.summary.cpu_percent / 100.0,
            rss_bytes: window.rss_bytes,
        }
    }
}
