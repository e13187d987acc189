//! Pass/fail criteria such as `p99<250ms`, `error_rate<1%`, `rate>950`.
//!
//! Grammar: `METRIC OP VALUE`, with OP one of `<`, `<=`, `>`, `>=`.
//! Latency metrics (`p50`, `p99.9`, `p999`, `min`, `mean`, `max`, `stddev`)
//! refer to latency from the intended start; prefix `service.` for service
//! time, `lag.` for scheduler lag. Their values are durations (a bare number
//! means milliseconds). `error_rate` takes `1%` or `0.01`; `rate` (completed
//! per second, main phase), `count`, `errors`, `dropped` and `missed` take numbers.
//! Thresholds are evaluated on the main phase only, warmup excluded.
//!
//! A signed percentage makes a threshold relative to a baseline run
//! (`--baseline`, see [`crate::history::baseline`]): `p99<+10%` holds when
//! the p99 is under 110 % of the baseline's, `rate>-5%` when the rate is
//! above 95 % of it. A run's own report evaluates only the absolute ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::duration::parse_duration;
use crate::metrics::LatencyHistogram;

/// Which histogram a latency metric reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencySource {
    /// Latency from the intended start.
    Latency,
    /// Service time from the actual start.
    Service,
    /// Scheduler lag.
    Lag,
}

/// A statistic of a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyStat {
    /// A percentile, 0–100.
    Percentile(f64),
    /// Smallest value.
    Min,
    /// Mean.
    Mean,
    /// Largest value.
    Max,
    /// Standard deviation.
    Stddev,
}

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency statistic (value in nanoseconds).
    Latency(LatencySource, LatencyStat),
    /// Failed / completed, 0–1.
    ErrorRate,
    /// Completed executions per second.
    Rate,
    /// Completed executions.
    Count,
    /// Failed executions.
    Errors,
    /// Dropped arrivals.
    Dropped,
    /// Arrivals the generator reached too late to send.
    Missed,
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The text as given.
    pub expression: String,
    /// What it measures.
    pub metric: Metric,
    /// How it compares.
    pub op: Op,
    /// The limit.
    pub limit: Limit,
}

/// What a threshold's value is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// A value in the metric's unit (ns for latencies, 0–1 for rates).
    Absolute(f64),
    /// A change relative to a baseline run's value: 0.10 for `+10%`,
    /// -0.05 for `-5%`.
    Relative(f64),
}

/// The main-phase figures thresholds are checked against.
pub struct ThresholdInput<'a> {
    /// Latency from the intended start.
    pub latency: &'a LatencyHistogram,
    /// Service time.
    pub service: &'a LatencyHistogram,
    /// Scheduler lag (empty for closed runs).
    pub lag: Option<&'a LatencyHistogram>,
    /// Completed executions.
    pub completed: u64,
    /// Failed executions.
    pub failures: u64,
    /// Dropped arrivals.
    pub dropped: u64,
    /// Arrivals missed by the generator (later than `max_lag`).
    pub missed: u64,
    /// Completed per second.
    pub rate: f64,
}

/// A threshold's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    /// The threshold as written.
    pub threshold: String,
    /// The measured value, formatted in the threshold's unit.
    pub actual: String,
    /// Whether it held.
    pub passed: bool,
    /// For a relative threshold: the baseline run's value and id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact
            .find(['<', '>'])
            .ok_or_else(|| format!("threshold '{text}' has no operator (use <, <=, > or >=)"))?;
        let (name, rest) = compact.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let metric = parse_metric(name).map_err(|e| format!("threshold '{text}': {e}"))?;
        let limit = parse_limit(metric, value).map_err(|e| format!("threshold '{text}': {e}"))?;
        Ok(Self {
            expression: text.trim().to_owned(),
            metric,
            op,
            limit,
        })
    }
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    let simple = match name {
        "error_rate" => Some(Metric::ErrorRate),
        "rate" => Some(Metric::Rate),
        "count" => Some(Metric::Count),
        "errors" => Some(Metric::Errors),
        "dropped" => Some(Metric::Dropped),
        "missed" => Some(Metric::Missed),
        _ => None,
    };
    if let Some(m) = simple {
        return Ok(m);
    }
    let (source, stat) = match name.split_once('.') {
        Some(("service", stat)) => (LatencySource::Service, stat),
        Some(("lag", stat)) => (LatencySource::Lag, stat),
        Some(("latency", stat)) => (LatencySource::Latency, stat),
        _ => (LatencySource::Latency, name),
    };
    let stat = match stat {
        "min" => LatencyStat::Min,
        "mean" | "avg" => LatencyStat::Mean,
        "max" => LatencyStat::Max,
        "stddev" => LatencyStat::Stddev,
        p if p.starts_with('p') => LatencyStat::Percentile(parse_percentile(&p[1..])?),
        _ => {
            return Err(format!(
                "unknown metric '{name}' (known: p50, p99.9, min, mean, max, stddev, service.p99, lag.p99, error_rate, rate, count, errors, dropped, missed)"
            ));
        }
    };
    Ok(Metric::Latency(source, stat))
}

/// `99` → 99, `99.9` → 99.9, `999` → 99.9, `9999` → 99.99.
fn parse_percentile(digits: &str) -> Result<f64, String> {
    let value = if digits.contains('.') || digits.len() <= 2 || !digits.starts_with("99") {
        digits.parse::<f64>()
    } else {
        format!("{}.{}", &digits[..2], &digits[2..]).parse::<f64>()
    }
    .map_err(|_| format!("'p{digits}' is not a percentile"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("percentile {value} is outside 0-100"))
    }
}

fn parse_limit(metric: Metric, value: &str) -> Result<Limit, String> {
    let number = |v: &str| {
        v.parse::<f64>()
            .map_err(|_| format!("'{v}' is not a number"))
    };
    if value.starts_with(['+', '-']) {
        let Some(pct) = value.strip_suffix('%') else {
            return Err(format!(
                "'{value}': a signed value is relative to the baseline and needs a % (like +10%)"
            ));
        };
        let change = number(pct)? / 100.0;
        if !change.is_finite() || change <= -1.0 {
            return Err(format!("'{value}' is not a change a value can make"));
        }
        return Ok(Limit::Relative(change));
    }
    let absolute = match metric {
        Metric::Latency(..) => match value.parse::<f64>() {
            Ok(ms) => Ok(ms * 1e6),
            Err(_) => parse_duration(value).map(|d| d.as_nanos() as f64),
        },
        Metric::ErrorRate => match value.strip_suffix('%') {
            Some(pct) => Ok(number(pct)? / 100.0),
            None => number(value),
        },
        _ => number(value),
    }?;
    Ok(Limit::Absolute(absolute))
}

impl Threshold {
    /// Whether it is judged against a baseline run.
    pub fn is_relative(&self) -> bool {
        matches!(self.limit, Limit::Relative(_))
    }

    /// Checks the threshold against `input`; a relative one against
    /// `input` and its baseline's figures, `baseline`
    /// ([`Threshold::evaluate_against`]). Called on a relative one, it
    /// fails, saying that no baseline was given.
    pub fn evaluate(&self, input: &ThresholdInput<'_>) -> ThresholdResult {
        let actual = self.measure(input);
        match self.limit {
            Limit::Absolute(limit) => self.verdict(actual, limit, None),
            Limit::Relative(_) => ThresholdResult {
                threshold: self.expression.clone(),
                actual: self.format(actual),
                passed: false,
                baseline: Some("no baseline run given (--baseline)".into()),
            },
        }
    }

    /// Checks a relative threshold against `input`, the baseline's value
    /// being measured on `baseline` (run `baseline_id`); an absolute one
    /// ignores the baseline.
    pub fn evaluate_against(
        &self,
        input: &ThresholdInput<'_>,
        baseline: &ThresholdInput<'_>,
        baseline_id: &str,
    ) -> ThresholdResult {
        let Limit::Relative(change) = self.limit else {
            return self.evaluate(input);
        };
        let base = self.measure(baseline);
        let actual = self.measure(input);
        let shown = format!("{} in {baseline_id}", self.format(base));
        if base == 0.0 {
            // No share of nothing: against a baseline of 0 (no errors,
            // no drops) the run holds if it moved no further than 0 the
            // wrong way, and `<` reads as "did not grow".
            let passed = match self.op {
                Op::Lt | Op::Le => actual <= 0.0,
                Op::Gt | Op::Ge => actual >= 0.0,
            };
            return ThresholdResult {
                threshold: self.expression.clone(),
                actual: self.format(actual),
                passed,
                baseline: Some(shown),
            };
        }
        self.verdict(actual, base * (1.0 + change), Some(shown))
    }

    fn verdict(&self, actual: f64, limit: f64, baseline: Option<String>) -> ThresholdResult {
        let passed = match self.op {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
        };
        ThresholdResult {
            threshold: self.expression.clone(),
            actual: self.format(actual),
            passed,
            baseline,
        }
    }

    fn measure(&self, input: &ThresholdInput<'_>) -> f64 {
        match self.metric {
            Metric::Latency(source, stat) => {
                let h = match source {
                    LatencySource::Latency => Some(input.latency),
                    LatencySource::Service => Some(input.service),
                    LatencySource::Lag => input.lag,
                };
                h.filter(|h| !h.is_empty()).map_or(0.0, |h| match stat {
                    LatencyStat::Percentile(p) => h.value_at_quantile(p / 100.0) as f64,
                    LatencyStat::Min => h.min() as f64,
                    LatencyStat::Mean => h.mean(),
                    LatencyStat::Max => h.max() as f64,
                    LatencyStat::Stddev => h.stdev(),
                })
            }
            Metric::ErrorRate => {
                if input.completed == 0 {
                    0.0
                } else {
                    input.failures as f64 / input.completed as f64
                }
            }
            Metric::Rate => input.rate,
            Metric::Count => input.completed as f64,
            Metric::Errors => input.failures as f64,
            Metric::Dropped => input.dropped as f64,
            Metric::Missed => input.missed as f64,
        }
    }

    fn format(&self, actual: f64) -> String {
        match self.metric {
            Metric::Latency(..) => format_ns(actual),
            Metric::ErrorRate => format!("{:.3}%", actual * 100.0),
            Metric::Rate => format!("{actual:.1}/s"),
            _ => format!("{actual:.0}"),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

/// A duration in nanoseconds, in the most readable unit.
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.1}µs", ns / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::{new_histogram, record};

    #[test]
    fn parses_the_documented_forms() {
        let t: Threshold = "p99 < 250ms".parse().unwrap();
        assert_eq!(
            t.metric,
            Metric::Latency(LatencySource::Latency, LatencyStat::Percentile(99.0))
        );
        assert_eq!(t.limit, Limit::Absolute(250e6));
        let t: Threshold = "service.p999<=1.5".parse().unwrap();
        assert_eq!(
            t.metric,
            Metric::Latency(LatencySource::Service, LatencyStat::Percentile(99.9))
        );
        assert_eq!(t.limit, Limit::Absolute(1.5e6));
        assert_eq!(
            "error_rate<1%".parse::<Threshold>().unwrap().limit,
            Limit::Absolute(0.01)
        );
        assert_eq!("rate>950".parse::<Threshold>().unwrap().op, Op::Gt);
    }

    #[test]
    fn signed_percentages_are_relative_to_a_baseline() {
        let slower: Threshold = "p99<+10%".parse().unwrap();
        assert_eq!(slower.limit, Limit::Relative(0.10));
        let rate: Threshold = "rate > -5%".parse().unwrap();
        assert_eq!(rate.limit, Limit::Relative(-0.05));
        assert!(rate.is_relative() && !"rate>5".parse::<Threshold>().unwrap().is_relative());
        assert!(
            "p99<+10"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("needs a %")
        );
        assert!("p99<-100%".parse::<Threshold>().is_err());

        let mut base = new_histogram();
        let mut now = new_histogram();
        for _ in 0..100 {
            record(&mut base, 10_000_000);
            record(&mut now, 10_800_000);
        }
        let input = |h| ThresholdInput {
            latency: h,
            service: h,
            lag: None,
            completed: 100,
            failures: 0,
            dropped: 0,
            missed: 0,
            rate: 100.0,
        };
        let verdict = slower.evaluate_against(&input(&now), &input(&base), "r1");
        assert!(
            verdict.passed,
            "{verdict:?}: 10.8 ms is within 10 % of 10 ms"
        );
        assert_eq!(verdict.baseline.as_deref(), Some("10.00ms in r1"));
        let tighter: Threshold = "p99<+5%".parse().unwrap();
        assert!(
            !tighter
                .evaluate_against(&input(&now), &input(&base), "r1")
                .passed
        );
        assert!(
            !slower.evaluate(&input(&now)).passed,
            "no baseline: not held"
        );
        let errors: Threshold = "errors<+10%".parse().unwrap();
        let clean = ThresholdInput {
            failures: 0,
            ..input(&now)
        };
        assert!(
            errors.evaluate_against(&clean, &clean, "r1").passed,
            "no errors against none: held"
        );
        let failing = ThresholdInput {
            failures: 2,
            ..input(&now)
        };
        assert!(!errors.evaluate_against(&failing, &clean, "r1").passed);
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        assert!(
            "p99 250ms"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("operator")
        );
        assert!(
            "latency<5ms"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("unknown metric")
        );
        assert!(
            "p99<fast"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(
            "p101<1s"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            "rate>lots"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn evaluation_compares_the_measured_value() {
        let mut latency = new_histogram();
        for ms in 1..=100u64 {
            record(&mut latency, ms * 1_000_000);
        }
        let service = new_histogram();
        let input = ThresholdInput {
            latency: &latency,
            service: &service,
            lag: None,
            completed: 100,
            failures: 2,
            dropped: 0,
            missed: 0,
            rate: 99.0,
        };
        assert!(
            "p50<60ms"
                .parse::<Threshold>()
                .unwrap()
                .evaluate(&input)
                .passed
        );
        assert!(
            !"p99<90ms"
                .parse::<Threshold>()
                .unwrap()
                .evaluate(&input)
                .passed
        );
        assert!(
            !"error_rate<1%"
                .parse::<Threshold>()
                .unwrap()
                .evaluate(&input)
                .passed
        );
        assert!(
            "error_rate<=2%"
                .parse::<Threshold>()
                .unwrap()
                .evaluate(&input)
                .passed
        );
        assert!(
            !"rate>=100"
                .parse::<Threshold>()
                .unwrap()
                .evaluate(&input)
                .passed
        );
    }
}
