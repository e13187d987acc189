//! A run's figures as OTLP metrics: what one export request carries.
//!
//! Windows are folded into running totals (HDR histograms merge exactly);
//! each export turns them into one request: latency and service time as
//! exponential histograms, counters as monotonic sums, the last window's
//! gauges. Attributes are the tag and the error kind only, so a series'
//! cardinality is bounded by the task's code.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exponential::Exponential;
use crate::config::otlp::{OtlpSettings, Temporality};
use crate::export::{ExportWindow, RunInfo};
use crate::metrics::LatencyHistogram;
use crate::metrics::histogram::{merge, new_histogram};

/// The attribute naming a result's tag.
pub const TAG: &str = "vajra.tag";
/// The attribute naming an error's kind (OpenTelemetry's `error.type`).
pub const ERROR_TYPE: &str = "error.type";

/// One tag's results over some span of the run.
#[derive(Debug, Clone)]
struct TagTotals {
    latency: LatencyHistogram,
    service: LatencyHistogram,
    succeeded: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
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

/// Results over some span of the run: since its start, or since the last
/// export.
#[derive(Debug, Clone, Default)]
struct Totals {
    tags: BTreeMap<Option<&'static str>, TagTotals>,
    dispatched: u64,
    dropped: u64,
    missed: u64,
}

impl Totals {
    fn fold(&mut self, window: &ExportWindow) {
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
    }
}

/// The last window's instantaneous figures.
#[derive(Debug, Clone, Copy, Default)]
struct Gauges {
    target_rate: f64,
    in_flight: u64,
    lag_p99_s: f64,
    cpu_ratio: f64,
    rss_bytes: u64,
}

/// A run's metrics, ready to be exported at any time.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    resource: Resource,
    temporality: Temporality,
    started_ns: u64,
    /// Since the start.
    cumulative: Totals,
    /// Since the last successful export (delta temporality).
    pending: Totals,
    pending_since_ns: u64,
    gauges: Gauges,
    /// End of the last window folded in.
    until_ns: u64,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The resource every exported signal of `run` carries: `service.name`,
/// the instance (the peer, so peers' series stay apart), the test id, the
/// host, and the user's attributes and labels.
pub fn resource_of(run: &RunInfo, settings: &OtlpSettings) -> Resource {
    let mut attributes = vec![
        text("service.name", &settings.service_name),
        text("service.instance.id", &run.peer),
        text("vajra.test.id", &run.test_id),
        text("vajra.peer", &run.peer),
        text("vajra.task", &run.task),
    ];
    if let Some(host) = crate::cluster::peer::hostname() {
        attributes.push(text("host.name", &host));
    }
    let given = settings.resource.iter().map(|(k, v)| (k, v));
    for (key, value) in given.chain(&run.labels) {
        attributes.push(text(key, value));
    }
    Resource {
        attributes,
        ..Resource::default()
    }
}

impl RunMetrics {
    /// Empty metrics of `run`.
    pub fn new(run: &RunInfo, settings: &OtlpSettings) -> Self {
        let started_ns = unix_ns(run.starts_at);
        Self {
            resource: resource_of(run, settings),
            temporality: settings.temporality,
            started_ns,
            cumulative: Totals::default(),
            pending: Totals::default(),
            pending_since_ns: started_ns,
            gauges: Gauges::default(),
            until_ns: started_ns,
        }
    }

    /// Adds a closed window.
    pub fn fold(&mut self, window: &ExportWindow) {
        self.cumulative.fold(window);
        if self.temporality == Temporality::Delta {
            self.pending.fold(window);
        }
        let summary = &window.summary;
        self.gauges = Gauges {
            target_rate: window.target_rate.unwrap_or(0.0),
            in_flight: window.in_flight,
            lag_p99_s: summary.lag_p99_us / 1e6,
            cpu_ratio: summary.cpu_percent / 100.0,
            rss_bytes: window.rss_bytes,
        };
        let end = window.start + Duration::from_secs_f64(summary.duration_s);
        self.until_ns = self.until_ns.max(unix_ns(end));
    }

    /// Says an export of everything so far succeeded (a delta run starts
    /// its next span here).
    pub fn exported(&mut self) {
        if self.temporality == Temporality::Delta {
            self.pending = Totals::default();
            self.pending_since_ns = self.until_ns;
        }
    }

    /// The request exporting everything folded in so far.
    pub fn request(&self) -> ExportMetricsServiceRequest {
        let (totals, since, temporality) = match self.temporality {
            Temporality::Cumulative => (
                &self.cumulative,
                self.started_ns,
                AggregationTemporality::Cumulative,
            ),
            Temporality::Delta => (
                &self.pending,
                self.pending_since_ns,
                AggregationTemporality::Delta,
            ),
        };
        let span = Span {
            start: since,
            time: self.until_ns.max(since),
            temporality: temporality as i32,
        };
        let mut metrics = vec![
            span.histogram(
                "vajra.latency",
                "Latency from each execution's intended start (coordinated-omission free)",
                totals,
                |t| &t.latency,
            ),
            span.histogram(
                "vajra.service_time",
                "Service time from each execution's actual start",
                totals,
                |t| &t.service,
            ),
        ];
        metrics.extend(span.execution_sums(totals));
        metrics.extend(span.arrival_sums(totals));
        metrics.extend(self.gauges(span.time));
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "vajra".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }

    fn gauges(&self, time: u64) -> Vec<Metric> {
        let g = self.gauges;
        let gauge =
            |name: &str, description: &str, unit: &str, value: number_data_point::Value| Metric {
                name: name.into(),
                description: description.into(),
                unit: unit.into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: time,
                        value: Some(value),
                        ..NumberDataPoint::default()
                    }],
                })),
                ..Metric::default()
            };
        use number_data_point::Value::{AsDouble, AsInt};
        vec![
            gauge(
                "vajra.target_rate",
                "Arrivals per second this generator is asked for now",
                "{arrival}/s",
                AsDouble(g.target_rate),
            ),
            gauge(
                "vajra.in_flight",
                "Executions in flight",
                "{execution}",
                AsInt(g.in_flight as i64),
            ),
            gauge(
                "vajra.scheduler.lag.p99",
                "99th percentile of the arrival scheduler's lag in the last second",
                "s",
                AsDouble(g.lag_p99_s),
            ),
            gauge(
                "process.cpu.utilization",
                "CPU the generator used in the last second, as a share of its cores",
                "1",
                AsDouble(g.cpu_ratio),
            ),
            gauge(
                "process.memory.usage",
                "Resident memory of the generator process",
                "By",
                AsInt(g.rss_bytes as i64),
            ),
        ]
    }
}

/// The time span and temporality of one request's data points.
struct Span {
    start: u64,
    time: u64,
    temporality: i32,
}

impl Span {
    fn histogram(
        &self,
        name: &str,
        description: &str,
        totals: &Totals,
        which: fn(&TagTotals) -> &LatencyHistogram,
    ) -> Metric {
        let data_points = totals
            .tags
            .iter()
            .map(|(tag, t)| {
                let h = Exponential::of(which(t));
                ExponentialHistogramDataPoint {
                    attributes: tag_attributes(*tag),
                    start_time_unix_nano: self.start,
                    time_unix_nano: self.time,
                    count: h.count,
                    sum: Some(h.sum),
                    scale: h.scale,
                    zero_count: h.zero_count,
                    positive: Some(exponential_histogram_data_point::Buckets {
                        offset: h.offset,
                        bucket_counts: h.counts,
                    }),
                    min: (h.count > 0).then_some(h.min),
                    max: (h.count > 0).then_some(h.max),
                    ..ExponentialHistogramDataPoint::default()
                }
            })
            .collect();
        Metric {
            name: name.into(),
            description: description.into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: self.temporality,
            })),
            ..Metric::default()
        }
    }

    fn sum(
        &self,
        name: &str,
        description: &str,
        unit: &str,
        points: Vec<(Vec<KeyValue>, u64)>,
    ) -> Metric {
        Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points
                    .into_iter()
                    .map(|(attributes, n)| NumberDataPoint {
                        attributes,
                        start_time_unix_nano: self.start,
                        time_unix_nano: self.time,
                        value: Some(number_data_point::Value::AsInt(n as i64)),
                        ..NumberDataPoint::default()
                    })
                    .collect(),
                aggregation_temporality: self.temporality,
                is_monotonic: true,
            })),
            ..Metric::default()
        }
    }

    fn execution_sums(&self, totals: &Totals) -> Vec<Metric> {
        let per_tag = |value: fn(&TagTotals) -> u64| {
            totals
                .tags
                .iter()
                .map(|(tag, t)| (tag_attributes(*tag), value(t)))
                .collect()
        };
        let errors = totals
            .tags
            .iter()
            .flat_map(|(tag, t)| {
                t.errors.iter().map(move |(kind, n)| {
                    let mut attributes = tag_attributes(*tag);
                    attributes.push(text(ERROR_TYPE, kind));
                    (attributes, *n)
                })
            })
            .collect();
        vec![
            self.sum(
                "vajra.executions.completed",
                "Executions completed",
                "{execution}",
                per_tag(|t| t.succeeded + t.failed),
            ),
            self.sum(
                "vajra.executions.succeeded",
                "Executions that succeeded",
                "{execution}",
                per_tag(|t| t.succeeded),
            ),
            self.sum(
                "vajra.executions.failed",
                "Executions that failed, by error kind",
                "{execution}",
                errors,
            ),
        ]
    }

    fn arrival_sums(&self, totals: &Totals) -> Vec<Metric> {
        let one = |n: u64| vec![(Vec::new(), n)];
        vec![
            self.sum(
                "vajra.arrivals.dispatched",
                "Arrivals handed to a task instance",
                "{arrival}",
                one(totals.dispatched),
            ),
            self.sum(
                "vajra.arrivals.dropped",
                "Arrivals dropped at the in-flight limit or at interruption",
                "{arrival}",
                one(totals.dropped),
            ),
            self.sum(
                "vajra.arrivals.missed",
                "Arrivals the generator reached later than --max-lag and did not send",
                "{arrival}",
                one(totals.missed),
            ),
        ]
    }
}

fn tag_attributes(tag: Option<&str>) -> Vec<KeyValue> {
    tag.map(|t| vec![text(TAG, t)]).unwrap_or_default()
}
