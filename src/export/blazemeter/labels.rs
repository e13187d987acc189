//! BlazeMeter's "labels_bulk" body: per label (each tag, and `ALL`), the
//! one-second intervals since the last submission and the cumulative
//! summary, in milliseconds, as its external-results API takes them.
//!
//! Response time (`t`) is latency from the intended start; BlazeMeter's
//! "latency" (`lt`, time to first byte, never above `t`) carries the
//! service time. Bytes are not measured and are sent as zero.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use serde_json::{Value, json};

use crate::export::ExportWindow;
use crate::metrics::histogram::{merge, new_histogram};
use crate::metrics::stats::OpStats;
use crate::metrics::{LatencyHistogram, Tag};

/// The label of all results together.
pub const ALL: &str = "ALL";
/// Largest response time `hstRt` holds, ms (an hour).
const HST_MAX_MS: u64 = 3_600_000;

/// One label's cumulative results, for its summary.
#[derive(Debug, Clone)]
struct Cumulative {
    first_s: u64,
    last_s: u64,
    hits: u64,
    failed: u64,
    latency: LatencyHistogram,
    service: LatencyHistogram,
    errors: BTreeMap<String, (u64, String)>,
}

impl Cumulative {
    fn new(first_s: u64) -> Self {
        Self {
            first_s,
            last_s: first_s,
            hits: 0,
            failed: 0,
            latency: new_histogram(),
            service: new_histogram(),
            errors: BTreeMap::new(),
        }
    }
}

/// Builds the submissions of one run.
#[derive(Debug, Default)]
pub struct Labels {
    /// Intervals not submitted yet, per label.
    pending: BTreeMap<String, Vec<Value>>,
    totals: BTreeMap<String, Cumulative>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// `{min, max, sum, n, std, avg}` of a histogram, ms.
fn timings(h: &LatencyHistogram) -> Value {
    if h.is_empty() {
        return json!({"min": 0, "max": 0, "sum": 0.0, "n": 0, "std": 0.0, "avg": 0.0});
    }
    json!({
        "min": ms(h.min()).round() as u64,
        "max": ms(h.max()).round() as u64,
        "sum": h.mean() * h.len() as f64 / 1e6,
        "n": h.len(),
        "std": h.stdev() / 1e6,
        "avg": h.mean() / 1e6,
    })
}

/// The response-code key of an error kind: `status_503` → "503".
fn response_code(kind: &str) -> String {
    kind.strip_prefix("status_").unwrap_or(kind).to_owned()
}

/// A latency histogram in whole milliseconds (1 ms to an hour, 3
/// significant digits), compressed HdrHistogram V2 in base64: `hstRt`.
fn hst_rt(h: &LatencyHistogram) -> String {
    let mut in_ms: Histogram<u64> =
        Histogram::new_with_bounds(1, HST_MAX_MS, 3).expect("constant bounds");
    for v in h.iter_recorded() {
        let value = (v.value_iterated_to() / 1_000_000).min(HST_MAX_MS);
        in_ms.saturating_record_n(value, v.count_at_value());
    }
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&in_ms, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Labels {
    /// Adds a closed window: one interval per label with results.
    pub fn fold(&mut self, window: &ExportWindow) {
        let ts = window
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut all = OpStats::default();
        let mut per_label: Vec<(String, OpStats)> = Vec::new();
        for (tag, stats) in window.by_tag() {
            // A step is a label of its own but not a sample of ALL: ALL
            // counts each execution once.
            if !tag.is_some_and(Tag::is_step) {
                all.merge(&stats);
            }
            if let Some(tag) = tag {
                per_label.push((tag.name().to_owned(), stats));
            }
        }
        per_label.push((ALL.to_owned(), all));
        for (label, stats) in per_label {
            if stats.completed() == 0 {
                continue;
            }
            self.pending
                .entry(label.clone())
                .or_default()
                .push(interval(ts, &stats, window.in_flight));
            let total = self
                .totals
                .entry(label)
                .or_insert_with(|| Cumulative::new(ts));
            total.last_s = ts + 1;
            total.hits += stats.completed();
            total.failed += stats.failure;
            merge(&mut total.latency, &stats.latency);
            merge(&mut total.service, &stats.service);
            for e in stats.errors.sorted() {
                let entry = total.errors.entry(e.kind).or_insert((0, e.example));
                entry.0 += e.count;
            }
        }
    }

    /// Whether intervals wait to be submitted.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The next submission's body (taking the pending intervals); `ALL`
    /// first.
    pub fn take_body(&mut self, source_id: u64, last: bool) -> Value {
        let pending = std::mem::take(&mut self.pending);
        let mut names: Vec<&String> = self.totals.keys().collect();
        names.sort_by_key(|n| (n.as_str() != ALL, n.as_str()));
        let labels: Vec<Value> = names
            .into_iter()
            .map(|name| {
                let total = &self.totals[name];
                let intervals = pending.get(name).cloned().unwrap_or_default();
                label(name, total, intervals)
            })
            .collect();
        let mut body = json!({"labels": labels, "sourceID": source_id});
        if last {
            body["final"] = json!(true);
        }
        body
    }
}

fn interval(ts: u64, stats: &OpStats, in_flight: u64) -> Value {
    let mut codes: Vec<Value> = Vec::new();
    if stats.success > 0 {
        codes.push(json!({"n": stats.success, "f": [], "rc": "OK"}));
    }
    for e in stats.errors.sorted() {
        codes.push(json!({"n": e.count, "f": [e.count], "rc": response_code(&e.kind)}));
    }
    let n = stats.completed();
    json!({
        "ts": ts,
        "n": n,
        "na": in_flight,
        "ec": stats.failure,
        "failed": stats.failure,
        "rc": codes,
        "t": timings(&stats.latency),
        "lt": timings(&stats.service),
        "by": {"min": 0, "max": 0, "sum": 0, "n": n, "std": 0, "avg": 0},
        "hstRt": hst_rt(&stats.latency),
    })
}

fn label(name: &str, total: &Cumulative, intervals: Vec<Value>) -> Value {
    let quantile = |q: f64| ms(total.latency.value_at_quantile(q)).round() as u64;
    let errors: Vec<Value> = total
        .errors
        .iter()
        .map(|(kind, (count, example))| {
            json!({"m": example, "rc": response_code(kind), "count": count})
        })
        .collect();
    json!({
        "n": total.hits,
        "name": name,
        "interval": 1,
        "intervals": intervals,
        "samplesNotCounted": 0,
        "assertionsNotCounted": 0,
        "failedEmbeddedResources": [],
        "failedEmbeddedResourcesSpilloverCount": 0,
        "otherErrorsCount": 0,
        "errors": errors,
        "assertions": [],
        "percentileHistogram": [],
        "percentileHistogramLatency": [],
        "percentileHistogramBytes": [],
        "empty": false,
        "summary": {
            "first": total.first_s,
            "last": total.last_s,
            "duration": total.last_s - total.first_s,
            "failed": total.failed,
            "hits": total.hits,
            "avg": (total.latency.mean() / 1e6).round() as u64,
            "min": ms(total.latency.min()).round() as u64,
            "max": ms(total.latency.max()).round() as u64,
            "std": (total.latency.stdev() / 1e6).round() as u64,
            "tp90": quantile(0.90),
            "tp95": quantile(0.95),
            "tp99": quantile(0.99),
            "latencyAvg": (total.service.mean() / 1e6).round() as u64,
            "latencyMax": 0,
            "latencyMin": 0,
            "latencySTD": 0,
            "bytes": 0,
            "bytesMax": 0,
            "bytesMin": 0,
            "bytesAvg": 0,
            "bytesSTD": 0,
            "otherErrorsSpillcount": 0,
        },
    })
}
