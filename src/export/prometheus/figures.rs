//! What `/metrics` shows: each recent test's cumulative figures on this
//! generator, kept as exporters fold windows in and encoded on each scrape.

use std::borrow::Cow;
use std::collections::VecDeque;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::buckets::Buckets;
use crate::export::totals::{Gauges, RunTotals};
use crate::export::{ExportWindow, RunInfo};
use crate::metrics::{Phase, Tag};

/// Tests whose figures stay on show (the running one and those before).
pub const KEPT_TESTS: usize = 5;

/// A label set: (name, value) pairs.
type Labels = Vec<(Cow<'static, str>, String)>;

/// Where a test is, for `vajra_test_phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestPhase {
    Warmup,
    Main,
    Finished,
}

impl TestPhase {
    const ALL: [TestPhase; 3] = [Self::Warmup, Self::Main, Self::Finished];

    fn name(self) -> &'static str {
        match self {
            Self::Warmup => "warmup",
            Self::Main => "main",
            Self::Finished => "finished",
        }
    }
}

/// One test's cumulative figures on this generator.
#[derive(Debug)]
struct TestFigures {
    run: RunInfo,
    phase: TestPhase,
    totals: RunTotals,
    gauges: Gauges,
}

impl TestFigures {
    fn new(run: RunInfo) -> Self {
        let phase = if run.warmup_secs > 0.0 {
            TestPhase::Warmup
        } else {
            TestPhase::Main
        };
        Self {
            run,
            phase,
            totals: RunTotals::default(),
            gauges: Gauges::default(),
        }
    }

    fn fold(&mut self, window: &ExportWindow) {
        self.totals.fold(window);
        if self.phase != TestPhase::Finished {
            self.phase = match window.summary.phase {
                Phase::Warmup => TestPhase::Warmup,
                Phase::Main => TestPhase::Main,
            };
        }
        self.gauges = Gauges::of(window);
    }

    fn labels(&self) -> Labels {
        vec![
            ("test_id".into(), self.run.test_id.clone()),
            ("peer".into(), self.run.peer.clone()),
        ]
    }

    /// The test's labels, with `tag` naming an execution's tag and `step`
    /// a step's (the other empty), so `{step=""}` selects the executions
    /// and sums over it count each once.
    fn tag_labels(&self, tag: Option<Tag>) -> Labels {
        let (tag, step) = match tag {
            None => ("", ""),
            Some(Tag::Execution(name)) => (name, ""),
            Some(Tag::Step(name)) => ("", name),
        };
        let mut labels = self.labels();
        labels.push(("tag".into(), tag.to_owned()));
        labels.push(("step".into(), step.to_owned()));
        labels
    }
}

/// The recent tests' figures of this process, shared by its Prometheus
/// exporters (which write) and its `/metrics` endpoint (which reads).
#[derive(Debug, Default)]
pub struct LiveFigures {
    tests: Mutex<VecDeque<TestFigures>>,
}

impl LiveFigures {
    /// Starts showing `run` (forgetting the oldest test past
    /// [`KEPT_TESTS`], and any earlier figures of the same test).
    pub fn begin(&self, run: &RunInfo) {
        let mut tests = self.tests.lock();
        tests.retain(|t| t.run.test_id != run.test_id);
        tests.push_back(TestFigures::new(run.clone()));
        while tests.len() > KEPT_TESTS {
            tests.pop_front();
        }
    }

    /// Adds `window` to test `test_id`'s figures.
    pub fn fold(&self, test_id: &str, window: &ExportWindow) {
        if let Some(test) = self.find(&mut self.tests.lock(), test_id) {
            test.fold(window);
        }
    }

    /// Marks test `test_id` finished.
    pub fn end(&self, test_id: &str) {
        if let Some(test) = self.find(&mut self.tests.lock(), test_id) {
            test.phase = TestPhase::Finished;
            test.gauges.in_flight = 0;
            test.gauges.target_rate = 0.0;
        }
    }

    fn find<'a>(
        &self,
        tests: &'a mut VecDeque<TestFigures>,
        test_id: &str,
    ) -> Option<&'a mut TestFigures> {
        tests.iter_mut().find(|t| t.run.test_id == test_id)
    }

    /// The figures in the OpenMetrics text format.
    pub fn encode(self: &std::sync::Arc<Self>) -> Result<String, std::fmt::Error> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(std::sync::Arc::clone(self)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// A metric family's name, help text, unit and type.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    kind: MetricType,
}

impl Family {
    /// Starts the family's samples.
    fn describe<'a>(
        &'a self,
        encoder: &'a mut DescriptorEncoder,
        unit: &'a Option<Unit>,
    ) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
        encoder.encode_descriptor(self.name, self.help, unit.as_ref(), self.kind)
    }

    fn unit(&self) -> Option<Unit> {
        self.unit.map(|u| Unit::Other(u.to_owned()))
    }
}

/// A counter of arrivals, per test.
struct ArrivalCounter {
    family: Family,
    value: fn(&TestFigures) -> u64,
}

/// A gauge, per test.
struct TestGauge {
    family: Family,
    value: fn(&TestFigures) -> f64,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        unit: None,
        kind: MetricType::Counter,
    }
}

const fn gauge(name: &'static str, help: &'static str, unit: Option<&'static str>) -> Family {
    Family {
        name,
        help,
        unit,
        kind: MetricType::Gauge,
    }
}

const ARRIVALS: [ArrivalCounter; 3] = [
    ArrivalCounter {
        family: counter("vajra_dispatched", "Arrivals handed to a task instance"),
        value: |t| t.totals.dispatched,
    },
    ArrivalCounter {
        family: counter(
            "vajra_dropped",
            "Arrivals dropped at the in-flight limit or at interruption",
        ),
        value: |t| t.totals.dropped,
    },
    ArrivalCounter {
        family: counter(
            "vajra_missed",
            "Arrivals the generator reached later than --max-lag and did not send",
        ),
        value: |t| t.totals.missed,
    },
];

const GAUGES: [TestGauge; 5] = [
    TestGauge {
        family: gauge(
            "vajra_target_rate",
            "Arrivals per second this generator is asked for now",
            Some("per_second"),
        ),
        value: |t| t.gauges.target_rate,
    },
    TestGauge {
        family: gauge("vajra_in_flight", "Executions in flight", None),
        value: |t| t.gauges.in_flight as f64,
    },
    TestGauge {
        family: gauge(
            "vajra_scheduler_lag_p99",
            "99th percentile of the arrival scheduler's lag in the last second",
            Some("seconds"),
        ),
        value: |t| t.gauges.lag_p99_s,
    },
    TestGauge {
        family: gauge(
            "vajra_generator_cpu",
            "CPU the generator used in the last second, as a share of its cores",
            Some("ratio"),
        ),
        value: |t| t.gauges.cpu_ratio,
    },
    TestGauge {
        family: gauge(
            "vajra_generator_resident_memory",
            "Resident memory of the generator process",
            Some("bytes"),
        ),
        value: |t| t.gauges.rss_bytes as f64,
    },
];

const LATENCY: Family = Family {
    name: "vajra_latency",
    help: "Latency from each execution's intended start (coordinated-omission free)",
    unit: Some("seconds"),
    kind: MetricType::Histogram,
};
const SERVICE: Family = Family {
    name: "vajra_service_time",
    help: "Service time from each execution's actual start",
    unit: Some("seconds"),
    kind: MetricType::Histogram,
};

impl Collector for LiveFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tests = self.tests.lock();
        for family in [LATENCY, SERVICE] {
            let unit = family.unit();
            let mut metric = family.describe(&mut encoder, &unit)?;
            for test in tests.iter() {
                for (tag, figures) in &test.totals.tags {
                    // Bucketed from the exact HDR totals at each scrape.
                    let buckets = Buckets::of(if family.name == LATENCY.name {
                        &figures.latency
                    } else {
                        &figures.service
                    });
                    let labels = test.tag_labels(*tag);
                    metric.encode_family(&labels)?.encode_histogram::<Labels>(
                        buckets.sum(),
                        buckets.count(),
                        &buckets.per_bucket(),
                        None,
                    )?;
                }
            }
        }
        encode_counters(&mut encoder, &tests)?;
        encode_gauges(&mut encoder, &tests)?;
        Ok(())
    }
}

fn encode_counters(
    encoder: &mut DescriptorEncoder,
    tests: &VecDeque<TestFigures>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        "vajra_executions",
        "Executions completed, by result (success or failure)",
        None,
        MetricType::Counter,
    )?;
    for test in tests {
        for (tag, figures) in &test.totals.tags {
            for (result, n) in [("success", figures.succeeded), ("failure", figures.failed)] {
                let mut labels = test.tag_labels(*tag);
                labels.push(("result".into(), result.to_owned()));
                ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    let mut metric = encoder.encode_descriptor(
        "vajra_errors",
        "Failed executions by error kind",
        None,
        MetricType::Counter,
    )?;
    for test in tests {
        for (tag, figures) in &test.totals.tags {
            for (kind, n) in &figures.errors {
                let mut labels = test.tag_labels(*tag);
                labels.push(("error_kind".into(), kind.clone()));
                ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    let mut metric = encoder.encode_descriptor(
        "vajra_events",
        "Events tasks counted besides their executions (reconnects, rows, a task's own), by name",
        None,
        MetricType::Counter,
    )?;
    for test in tests {
        for (name, n) in &test.totals.events {
            let mut labels = test.labels();
            labels.push(("event".into(), (*name).to_owned()));
            ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
        }
    }
    for counter in &ARRIVALS {
        let unit = counter.family.unit();
        let mut metric = counter.family.describe(encoder, &unit)?;
        for test in tests {
            let value = (counter.value)(test);
            ConstCounter::new(value).encode(metric.encode_family(&test.labels())?)?;
        }
    }
    Ok(())
}

fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    tests: &VecDeque<TestFigures>,
) -> Result<(), std::fmt::Error> {
    for gauge in &GAUGES {
        let unit = gauge.family.unit();
        let mut metric = gauge.family.describe(encoder, &unit)?;
        for test in tests {
            let value = (gauge.value)(test);
            ConstGauge::new(value).encode(metric.encode_family(&test.labels())?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "vajra_test_phase",
        "1 for the phase the test is in on this generator (warmup, main, finished), 0 for the others",
        None,
        MetricType::Gauge,
    )?;
    for test in tests {
        for phase in TestPhase::ALL {
            let mut labels = test.labels();
            labels.push(("phase".into(), phase.name().to_owned()));
            let on = i64::from(test.phase == phase);
            ConstGauge::new(on).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "vajra_test",
        "The test this generator runs or ran: its task and the run's labels",
        None,
        MetricType::Info,
    )?;
    for test in tests {
        let mut labels = test.labels();
        labels.push(("task".into(), test.run.task.clone()));
        for (key, value) in &test.run.labels {
            // Prefixed, so a user label never shadows test_id or peer.
            labels.push((format!("label_{key}").into(), value.clone()));
        }
        metric.encode_info(&labels)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::stats::WindowStats;
    use crate::task::TaskError;

    fn run_info(test_id: &str) -> RunInfo {
        RunInfo {
            test_id: test_id.into(),
            peer: "p1".into(),
            task: "http".into(),
            labels: [("env".to_string(), "ci".to_string())].into(),
            curve: None,
            warmup_secs: 0.0,
            starts_at: std::time::SystemTime::now(),
        }
    }

    fn window(second: u64, ok: u64, failed: u64) -> ExportWindow {
        let mut stats = WindowStats::new(second);
        let login = stats.op((Phase::Main, Some(Tag::Execution("login"))));
        for _ in 0..ok {
            login.record(2_000_000, 1_000_000, None);
        }
        for _ in 0..failed {
            login.record(
                9_000_000,
                8_000_000,
                Some(&TaskError::new("timeout", "slow")),
            );
        }
        let fetch = stats.op((Phase::Main, Some(Tag::Step("fetch"))));
        for _ in 0..ok {
            fetch.record(1_000_000, 500_000, None);
        }
        let hub = crate::metrics::MetricsHub::new(1);
        let mut agg = crate::metrics::Aggregator::new(hub, 0.0);
        let summary = agg.collect(second + 1).last().cloned().unwrap();
        ExportWindow {
            summary,
            start: std::time::SystemTime::now(),
            stats,
            target_rate: Some(100.0),
            in_flight: 3,
            rss_bytes: 1 << 20,
            events: [("http.reconnects", second + 1)].into(),
        }
    }

    /// The value of the sample line starting with `prefix`.
    fn sample(text: &str, prefix: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn windows_add_up_and_old_tests_are_forgotten() {
        let figures = Arc::new(LiveFigures::default());
        figures.begin(&run_info("t1"));
        figures.fold("t1", &window(0, 90, 10));
        figures.fold("t1", &window(1, 50, 0));
        figures.fold("elsewhere", &window(1, 1_000, 0));
        let text = figures.encode().unwrap();
        let labels = r#"{test_id="t1",peer="p1",tag="login",step="""#;
        assert_eq!(
            sample(
                &text,
                r#"vajra_executions_total{test_id="t1",peer="p1",tag="",step="fetch",result="success"}"#
            ),
            140.0,
            "a step is a series of its own"
        );
        assert_eq!(
            sample(&text, &format!("vajra_latency_seconds_count{labels}")),
            150.0
        );
        assert_eq!(
            sample(
                &text,
                r#"vajra_latency_seconds_bucket{le="+Inf",test_id="t1""#
            ),
            150.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("vajra_executions_total{labels},result=\"success\"")
            ),
            140.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("vajra_errors_total{labels},error_kind=\"timeout\"")
            ),
            10.0
        );
        assert_eq!(sample(&text, "vajra_in_flight{"), 3.0);
        assert_eq!(
            sample(
                &text,
                r#"vajra_events_total{test_id="t1",peer="p1",event="http.reconnects"}"#
            ),
            3.0,
            "each window's growth added"
        );
        assert!(
            text.contains(
                r#"vajra_test_info{test_id="t1",peer="p1",task="http",label_env="ci"} 1"#
            )
        );
        assert!(text.contains(r#"phase="main"} 1"#));
        // Bucket counts never fall as the bound rises.
        let mut last = 0.0;
        for line in text
            .lines()
            .filter(|l| l.starts_with("vajra_latency_seconds_bucket") && l.contains("login"))
        {
            let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= last, "{line}");
            last = n;
        }
        figures.end("t1");
        assert!(figures.encode().unwrap().contains(r#"phase="finished"} 1"#));
        for i in 2..=KEPT_TESTS + 1 {
            figures.begin(&run_info(&format!("t{i}")));
        }
        let text = figures.encode().unwrap();
        assert!(
            !text.contains(r#"test_id="t1""#),
            "the oldest test is dropped"
        );
        assert!(text.contains(&format!("test_id=\"t{}\"", KEPT_TESTS + 1)));
    }
}
