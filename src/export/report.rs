//! The report of a finished run: what the summary, JSON and CSV show.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::pipeline::ExportOutcome;
use crate::engine::{RunOutcome, StopCause};
use crate::metrics::histogram::encode_v2;
use crate::metrics::{
    Aggregator, ErrorCount, HistogramPair, LatencySummary, OpStats, Phase, WindowReport,
};
use crate::threshold::{Threshold, ThresholdInput, ThresholdResult, format_ns};

/// Version tag of the JSON report layout (see docs/report-schema.md).
pub const SCHEMA: &str = "vajra.report.v1";
/// Mean generator CPU above which results are flagged unreliable.
pub const CPU_LIMIT_PERCENT: f64 = 90.0;

/// How a run ended (or that it is still going), from the least severe to
/// the most: a cluster's report takes its peers' most severe (a lost
/// peer's last figures, still "running", do not change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Still going: a running peer's figures so far.
    Running,
    /// Ran its whole load profile.
    Completed,
    /// Stopped by a command (`vajra-peer stop`) before its end.
    Stopped,
    /// Interrupted by the user (Ctrl-C) before its end.
    Interrupted,
    /// Stopped itself (a threshold failed with `--abort-on-fail`, a task
    /// could not be set up).
    Aborted,
}

impl Outcome {
    /// How the report names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Interrupted => "interrupted",
            Self::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Results of one phase (or one tag within the main phase).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Seconds the phase lasted.
    pub duration_s: f64,
    /// Arrivals handed to workers (paced runs).
    pub dispatched: u64,
    /// Arrivals dropped at the in-flight limit or at interruption.
    pub dropped: u64,
    /// Arrivals not sent because the generator reached them later than
    /// `reliable_lag` (a generator stall, apart from dropped-at-limit).
    #[serde(default)]
    pub missed: u64,
    /// Executions finished.
    pub completed: u64,
    /// Executions that succeeded.
    pub success: u64,
    /// Executions that failed.
    pub failure: u64,
    /// failure / completed.
    pub error_rate: f64,
    /// completed / duration_s.
    pub rate: f64,
    /// Latency from the intended start.
    pub latency: LatencySummary,
    /// Service time from the actual start.
    pub service: LatencySummary,
    /// Failures by kind.
    pub errors: Vec<ErrorCount>,
}

impl PhaseReport {
    fn of(stats: &OpStats, duration_s: f64) -> Self {
        let completed = stats.completed();
        Self {
            duration_s,
            dispatched: stats.dispatched,
            dropped: stats.dropped,
            missed: stats.missed,
            completed,
            success: stats.success,
            failure: stats.failure,
            error_rate: if completed == 0 {
                0.0
            } else {
                stats.failure as f64 / completed as f64
            },
            rate: if duration_s > 0.0 {
                completed as f64 / duration_s
            } else {
                0.0
            },
            latency: LatencySummary::of(&stats.latency),
            service: LatencySummary::of(&stats.service),
            errors: stats.errors.sorted(),
        }
    }
}

/// Whether the generator kept up well enough for the numbers to be trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// True when no problem was found.
    pub reliable: bool,
    /// What was found, in words.
    pub reasons: Vec<String>,
    /// Mean generator CPU over the main phase, percent of available cores.
    pub cpu_percent_mean: f64,
    /// Highest one-second generator CPU.
    pub cpu_percent_max: f64,
    /// Peak resident memory of the generator process, MiB.
    pub peak_rss_mb: f64,
}

/// Cumulative histograms, compressed HdrHistogram V2 (base64), for merging
/// runs later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// Main-phase latency from the intended start.
    pub latency: String,
    /// Main-phase service time.
    pub service: String,
    /// Warmup latency, if there was a warmup.
    pub warmup_latency: Option<String>,
    /// Scheduler lag, for paced runs.
    pub scheduler_lag: Option<String>,
    /// Main-phase histograms per task tag, so tags merge exactly too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, HistogramPair>,
    /// Main-phase histograms per step, so steps merge exactly too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, HistogramPair>,
}

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Layout version.
    pub schema: String,
    /// Task name.
    pub task: String,
    /// "open" or "closed".
    pub model: String,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// Why the run was aborted, if it was.
    pub abort_reason: Option<String>,
    /// Seconds of load (warmup included, drain excluded).
    pub load_secs: f64,
    /// Seconds of warmup.
    pub warmup_secs: f64,
    /// Arrivals the schedule planned in total (paced runs).
    pub planned: Option<u64>,
    /// Of a distributed test's planned arrivals, those its lost peers did
    /// not send (or could not report) in their degraded windows: each lost
    /// peer's share from its last figures until an epoch re-split it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsent: Option<u64>,
    /// Task instances used.
    pub instances: usize,
    /// Executions abandoned at the drain timeout.
    pub unfinished: u64,
    /// The measured phase.
    pub main: PhaseReport,
    /// The warmup phase, if any.
    pub warmup: Option<PhaseReport>,
    /// Main-phase results per task tag.
    pub tags: BTreeMap<String, PhaseReport>,
    /// Main-phase results per step inside the executions (a scenario's
    /// requests): each latency counts from when the step was due. Steps
    /// are not executions: `main` does not count them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, PhaseReport>,
    /// Scheduler lag (paced runs).
    pub scheduler_lag: Option<LatencySummary>,
    /// The generator's self-check.
    pub self_check: SelfCheck,
    /// Threshold verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// One entry per second.
    pub series: Vec<WindowReport>,
    /// Cumulative histograms.
    pub histograms: Histograms,
    /// For a distributed test: each peer's own report, by node id (the
    /// figures above are their exact merge).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<String, Report>,
    /// What happened during a distributed test (peers lost, re-splits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// How often each named event happened (`http.reconnects`, a user
    /// task's own counters, `not_run`: arrivals whose execution did
    /// nothing as the run stopped): not executions, never errors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// What each live exporter (OpenTelemetry, Prometheus, BlazeMeter, a
    /// user's own) delivered of the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportOutcome>,
}

/// What a report needs to know about a run besides its metrics.
struct RunFacts {
    model: &'static str,
    started_at: SystemTime,
    outcome: Outcome,
    abort_reason: Option<String>,
    load_secs: f64,
    warmup_secs: f64,
    planned: Option<u64>,
    instances: usize,
    unfinished: u64,
    counters: BTreeMap<String, u64>,
}

/// Each name's figures over `secs`, and its histograms (so they merge
/// exactly across peers).
fn named_reports(
    named: &[(&'static str, &OpStats)],
    secs: f64,
) -> (
    BTreeMap<String, PhaseReport>,
    BTreeMap<String, HistogramPair>,
) {
    let reports = named
        .iter()
        .map(|(name, stats)| ((*name).to_owned(), PhaseReport::of(stats, secs)))
        .collect();
    let histograms = named
        .iter()
        .map(|(name, stats)| {
            let pair = HistogramPair {
                latency: encode_v2(&stats.latency),
                service: encode_v2(&stats.service),
            };
            ((*name).to_owned(), pair)
        })
        .collect();
    (reports, histograms)
}

impl Report {
    /// Builds the report of `outcome`, evaluating `thresholds` and the
    /// self-check (lag above `reliable_lag` is unreliable).
    pub fn build(
        task: &str,
        outcome: &RunOutcome,
        thresholds: &[Threshold],
        reliable_lag: Duration,
    ) -> Self {
        let (outcome_name, abort_reason) = match &outcome.stop {
            None => (Outcome::Completed, None),
            Some(StopCause::Interrupted) => (Outcome::Interrupted, None),
            Some(StopCause::Stopped) => (Outcome::Stopped, None),
            Some(StopCause::Aborted(reason)) => (Outcome::Aborted, Some(reason.clone())),
        };
        let facts = RunFacts {
            model: if outcome.curve.is_some() {
                "open"
            } else {
                "closed"
            },
            started_at: outcome.started_at,
            outcome: outcome_name,
            abort_reason,
            load_secs: outcome.load_secs,
            warmup_secs: outcome.warmup_secs,
            planned: outcome.planned,
            instances: outcome.instances,
            unfinished: outcome.unfinished,
            counters: outcome.counters.clone(),
        };
        Self::from_metrics(task, &outcome.metrics, &facts, thresholds, reliable_lag)
    }

    /// A report of a run still going (outcome "running"), from its metrics
    /// so far: what a peer hands out before its run ends.
    pub fn snapshot(task: &str, metrics: &Aggregator, warmup_secs: f64, elapsed_secs: f64) -> Self {
        let facts = RunFacts {
            model: "open",
            started_at: SystemTime::now() - Duration::from_secs_f64(elapsed_secs.max(0.0)),
            outcome: Outcome::Running,
            abort_reason: None,
            load_secs: elapsed_secs,
            warmup_secs,
            planned: None,
            instances: 0,
            unfinished: 0,
            counters: BTreeMap::new(),
        };
        Self::from_metrics(task, metrics, &facts, &[], Duration::MAX)
    }

    fn from_metrics(
        task: &str,
        metrics: &Aggregator,
        facts: &RunFacts,
        thresholds: &[Threshold],
        reliable_lag: Duration,
    ) -> Self {
        let main_stats = metrics.phase_total(Phase::Main);
        let main_secs = (facts.load_secs - facts.warmup_secs).max(0.0);
        let main = PhaseReport::of(&main_stats, main_secs);
        let warmup_stats = metrics.phase_total(Phase::Warmup);
        let warmup = (facts.warmup_secs > 0.0)
            .then(|| PhaseReport::of(&warmup_stats, facts.warmup_secs.min(facts.load_secs)));
        let (tags, tag_histograms) = named_reports(&metrics.tagged(Phase::Main), main_secs);
        let (steps, step_histograms) = named_reports(&metrics.steps(Phase::Main), main_secs);
        let lag = metrics.lag().filter(|h| !h.is_empty());
        let input = ThresholdInput {
            latency: &main_stats.latency,
            service: &main_stats.service,
            lag,
            completed: main.completed,
            failures: main.failure,
            dropped: main.dropped,
            missed: main.missed,
            rate: main.rate,
        };
        Self {
            schema: SCHEMA.to_owned(),
            task: task.to_owned(),
            model: facts.model.to_owned(),
            started_at: humantime::format_rfc3339_millis(facts.started_at).to_string(),
            outcome: facts.outcome,
            abort_reason: facts.abort_reason.clone(),
            load_secs: facts.load_secs,
            warmup_secs: facts.warmup_secs,
            planned: facts.planned,
            unsent: None,
            instances: facts.instances,
            unfinished: facts.unfinished,
            self_check: self_check(
                metrics.series(),
                lag,
                reliable_lag,
                facts.warmup_secs,
                main_stats.missed + warmup_stats.missed,
            ),
            thresholds: thresholds
                .iter()
                .filter(|t| !t.is_relative())
                .map(|t| t.evaluate(&input))
                .collect(),
            scheduler_lag: lag.map(LatencySummary::of),
            histograms: Histograms {
                latency: encode_v2(&main_stats.latency),
                service: encode_v2(&main_stats.service),
                warmup_latency: warmup.as_ref().map(|_| encode_v2(&warmup_stats.latency)),
                scheduler_lag: lag.map(encode_v2),
                tags: tag_histograms,
                steps: step_histograms,
            },
            main,
            warmup,
            tags,
            steps,
            series: metrics.series().to_vec(),
            peers: BTreeMap::new(),
            events: Vec::new(),
            counters: facts.counters.clone(),
            exports: Vec::new(),
        }
    }

    /// The report of a run that could not be carried out (`error`), for
    /// exporters to end on: no results, outcome aborted.
    pub fn failed(task: &str, error: &str) -> Self {
        let empty = Aggregator::new(crate::metrics::MetricsHub::new(1), 0.0);
        let mut report = Self::snapshot(task, &empty, 0.0, 0.0);
        report.outcome = Outcome::Aborted;
        report.abort_reason = Some(error.to_owned());
        report
    }

    /// Whether every threshold held.
    pub fn thresholds_passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }
}

fn self_check(
    series: &[WindowReport],
    lag: Option<&crate::metrics::LatencyHistogram>,
    reliable_lag: Duration,
    warmup_secs: f64,
    missed: u64,
) -> SelfCheck {
    let main: Vec<f64> = series
        .iter()
        .filter(|w| w.second as f64 >= warmup_secs && w.duration_s >= 0.999)
        .map(|w| w.cpu_percent)
        .collect();
    let cpu_mean = if main.is_empty() {
        0.0
    } else {
        main.iter().sum::<f64>() / main.len() as f64
    };
    let cpu_max = main.iter().copied().fold(0.0, f64::max);
    let mut reasons = Vec::new();
    if let Some(lag) = lag {
        let p99 = lag.value_at_quantile(0.99);
        if p99 as u128 > reliable_lag.as_nanos() {
            reasons.push(format!(
                "scheduler lag p99 {} exceeds {}: arrivals left late, the generator could not keep the schedule",
                format_ns(p99 as f64),
                format_ns(reliable_lag.as_nanos() as f64)
            ));
        }
    }
    if missed > 0 {
        reasons.push(format!(
            "the generator missed {missed} arrivals: it reached them later than --max-lag (it stalled, was frozen, or could not keep up), so they were not sent"
        ));
    }
    if cpu_mean >= CPU_LIMIT_PERCENT {
        reasons.push(format!(
            "generator CPU averaged {cpu_mean:.0}% of its cores: it may be the bottleneck and its own queueing is in the latencies"
        ));
    }
    SelfCheck {
        reliable: reasons.is_empty(),
        reasons,
        cpu_percent_mean: cpu_mean,
        cpu_percent_max: cpu_max,
        peak_rss_mb: crate::metrics::cpu::peak_rss_bytes() as f64 / (1024.0 * 1024.0),
    }
}
