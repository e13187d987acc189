//! A run's figures as OTLP metrics: what one export request carries.
//!
//! Windows are folded into running totals (HDR histograms merge exactly);
//! each export turns them into one request: latency and service time as
//! exponential histograms, counters as monotonic sums, the last window's
//! gauges. Attributes are the tag and the error kind only, so a series'
//! cardinality is bounded by the task's code.

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
use crate::export::totals::{Gauges, RunTotals, TagTotals};
use crate::export::{ExportWindow, RunInfo};
use crate::metrics::{LatencyHistogram, Tag};

/// The attribute naming a result's tag.
pub const TAG: &str = "vajra.tag";
/// The attribute naming a step inside an execution.
pub const STEP: &str = "vajra.step";
/// The attribute naming an error's kind (OpenTelemetry's `error.type`).
pub const ERROR_TYPE: &str = "error.type";
/// The attribute naming an event counter.
pub const EVENT: &str = "vajra.event";

/// A run's metrics, ready to be exported at any time.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    resource: Resource,
    temporality: Temporality,
    started_ns: u64,
    /// Since the start.
    cumulative: RunTotals,
    /// Since the last successful export (delta temporality).
    pending: RunTotals,
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

/// The attributes of the resource every exported signal of `run` carries:
/// `service.name`, the instance (the peer, so peers' series stay apart), the
/// test id, the host, and the user's attributes and labels.
pub fn resource_attributes(run: &RunInfo, settings: &OtlpSettings) -> Vec<(String, String)> {
    let mut attributes: Vec<(String, String)> = [
        ("service.name", &settings.service_name),
        ("service.instance.id", &run.peer),
        ("vajra.test.id", &run.test_id),
        ("vajra.peer", &run.peer),
        ("vajra.task", &run.task),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect();
    if let Some(host) = crate::cluster::peer::hostname() {
        attributes.push(("host.name".into(), host));
    }
    attributes.extend(settings.resource.iter().cloned());
    attributes.extend(run.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    attributes
}

/// [`resource_attributes`] as an OTLP resource.
pub fn resource_of(run: &RunInfo, settings: &OtlpSettings) -> Resource {
    Resource {
        attributes: resource_attributes(run, settings)
            .iter()
            .map(|(k, v)| text(k, v))
            .collect(),
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
            cumulative: RunTotals::default(),
            pending: RunTotals::default(),
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
        self.gauges = Gauges::of(window);
        let end = window.start + Duration::from_secs_f64(summary.duration_s);
        self.until_ns = self.until_ns.max(unix_ns(end));
    }

    /// Says an export of everything so far succeeded (a delta run starts
    /// its next span here).
    pub fn exported(&mut self) {
        if self.temporality == Temporality::Delta {
            self.pending = RunTotals::default();
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
        metrics.extend(span.event_sum(totals));
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
        totals: &RunTotals,
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

    fn execution_sums(&self, totals: &RunTotals) -> Vec<Metric> {
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

    /// The event counters, one point each, if any grew.
    fn event_sum(&self, totals: &RunTotals) -> Option<Metric> {
        let points: Vec<_> = totals
            .events
            .iter()
            .map(|(name, n)| (vec![text(EVENT, name)], *n))
            .collect();
        (!points.is_empty()).then(|| {
            self.sum(
                "vajra.events",
                "Events tasks counted besides their executions (reconnects, rows, a task's own), by name",
                "{event}",
                points,
            )
        })
    }

    fn arrival_sums(&self, totals: &RunTotals) -> Vec<Metric> {
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

/// An execution's tag as `vajra.tag`, a step's as `vajra.step`: a sum
/// over the points without `vajra.step` counts each execution once.
fn tag_attributes(tag: Option<Tag>) -> Vec<KeyValue> {
    match tag {
        None => Vec::new(),
        Some(Tag::Execution(name)) => vec![text(TAG, name)],
        Some(Tag::Step(name)) => vec![text(STEP, name)],
    }
}
