//! The terminal: live progress while running, the summary table at the end.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::{Outcome, PhaseReport, Report};
use crate::engine::RunObserver;
use crate::metrics::{Aggregator, LatencySummary, Phase, WindowReport};
use crate::threshold::{Metric, Threshold, ThresholdInput, format_ns};

/// Shows one line of progress per second on a terminal (nothing when
/// stderr is not a terminal or `quiet`), and checks abort-on-fail
/// thresholds.
pub struct ConsoleObserver {
    bar: ProgressBar,
    abort_on: Vec<Threshold>,
    warmup_secs: f64,
}

impl ConsoleObserver {
    /// A progress display for a run of `total` (if known). `abort_on` are
    /// thresholds to check every second; rate and count thresholds only
    /// make sense at the end and are skipped.
    pub fn new(
        total: Option<Duration>,
        quiet: bool,
        abort_on: Vec<Threshold>,
        warmup_secs: f64,
    ) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(total.map(|d| d.as_secs().max(1)), target);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:20}] {msg}")
                .expect("constant template")
                .progress_chars("=> "),
        );
        let abort_on = abort_on
            .into_iter()
            .filter(|t| !matches!(t.metric, Metric::Rate | Metric::Count))
            .collect();
        Self {
            bar,
            abort_on,
            warmup_secs,
        }
    }

    /// Removes the progress line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl RunObserver for ConsoleObserver {
    fn on_window(
        &mut self,
        w: &WindowReport,
        target: Option<f64>,
        totals: &Aggregator,
    ) -> Option<String> {
        self.bar.set_position(w.second + 1);
        let target = target.map_or(String::new(), |t| format!("target {t:.0}/s  "));
        let phase = if w.phase == Phase::Warmup {
            "warmup  "
        } else {
            ""
        };
        self.bar.set_message(format!(
            "{phase}{target}achieved {:.0}/s  p50 {}  p99 {}  errors {}  dropped {}{}",
            w.rate,
            format_ns(w.latency.p50_us * 1e3),
            format_ns(w.latency.p99_us * 1e3),
            w.failure,
            w.dropped,
            missed_note(w.missed),
        ));
        if self.abort_on.is_empty() || (w.second as f64) < self.warmup_secs {
            return None;
        }
        let main = totals.phase_total(Phase::Main);
        let input = ThresholdInput {
            latency: &main.latency,
            service: &main.service,
            lag: totals.lag(),
            completed: main.completed(),
            failures: main.failure,
            dropped: main.dropped,
            missed: main.missed,
            rate: 0.0,
        };
        self.abort_on
            .iter()
            .filter(|t| !t.is_relative())
            .map(|t| t.evaluate(&input))
            .find(|r| !r.passed)
            .map(|r| {
                format!(
                    "threshold {} failed ({}) at {}s",
                    r.threshold,
                    r.actual,
                    w.second + 1
                )
            })
    }
}

/// "  missed N" when the generator missed arrivals, nothing otherwise (a
/// healthy run shows no column for a failure it did not have).
fn missed_note(missed: u64) -> String {
    if missed == 0 {
        String::new()
    } else {
        format!("  missed {missed}")
    }
}

fn fmt_us(us: f64) -> String {
    format_ns(us * 1e3)
}

fn latency_row(out: &mut String, name: &str, s: &LatencySummary) {
    let _ = writeln!(
        out,
        "  {name:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        fmt_us(s.min_us),
        fmt_us(s.mean_us),
        fmt_us(s.stddev_us),
        fmt_us(s.p50_us),
        fmt_us(s.p75_us),
        fmt_us(s.p90_us),
        fmt_us(s.p95_us),
        fmt_us(s.p99_us),
        fmt_us(s.p999_us),
        fmt_us(s.max_us),
    );
}

fn phase_block(out: &mut String, title: &str, p: &PhaseReport, target: Option<f64>) {
    let _ = writeln!(
        out,
        "{title}: {} completed in {:.1}s = {:.1}/s{}  ok {}  failed {} ({:.2}%)  dropped {}{}",
        p.completed,
        p.duration_s,
        p.rate,
        target.map_or(String::new(), |t| format!(" (target {t:.1}/s)")),
        p.success,
        p.failure,
        p.error_rate * 100.0,
        p.dropped,
        missed_note(p.missed),
    );
    let _ = writeln!(
        out,
        "  {:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "", "min", "mean", "stddev", "p50", "p75", "p90", "p95", "p99", "p99.9", "max"
    );
    latency_row(out, "latency", &p.latency);
    latency_row(out, "service time", &p.service);
    for e in p.errors.iter().take(10) {
        let _ = writeln!(
            out,
            "  error {:<24} {:>9}  e.g. {}",
            e.kind, e.count, e.example
        );
    }
}

/// The end-of-run summary as text.
pub fn summary(report: &Report, target_rate: Option<f64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nvajra: task '{}', {} model, {} after {:.1}s{}",
        report.task,
        report.model,
        report.outcome,
        report.load_secs,
        report
            .abort_reason
            .as_ref()
            .map_or(String::new(), |r| format!(" ({r})")),
    );
    for event in &report.events {
        let _ = writeln!(out, "event: {event}");
    }
    if report.outcome == Outcome::Interrupted || report.outcome == Outcome::Stopped {
        let _ = writeln!(
            out,
            "INTERRUPTED: the figures cover only the part of the run that happened"
        );
    }
    if let Some(w) = &report.warmup {
        phase_block(&mut out, "warmup (excluded)", w, None);
    }
    phase_block(&mut out, "main", &report.main, target_rate);
    for (tag, p) in &report.tags {
        phase_block(&mut out, &format!("  tag {tag}"), p, None);
    }
    for (step, p) in &report.steps {
        phase_block(&mut out, &format!("  step {step}"), p, None);
    }
    if let Some(lag) = &report.scheduler_lag {
        latency_row(&mut out, "scheduler lag", lag);
    }
    if !report.counters.is_empty() {
        let counts: Vec<String> = report
            .counters
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(out, "events: {}", counts.join(", "));
    }
    for export in &report.exports {
        let _ = writeln!(out, "export {}", export.describe());
    }
    if let Some(planned) = report.planned {
        let unsent = report.unsent.map_or(String::new(), |n| {
            format!(" ({n} not sent: lost peers' degraded windows)")
        });
        let _ = writeln!(
            out,
            "planned arrivals {planned}{unsent}, instances {}, unfinished {}",
            report.instances, report.unfinished
        );
    } else {
        let _ = writeln!(
            out,
            "instances {}, unfinished {}",
            report.instances, report.unfinished
        );
    }
    let check = &report.self_check;
    if check.reliable {
        let _ = writeln!(
            out,
            "self-check: ok (generator CPU mean {:.0}%, max {:.0}%)",
            check.cpu_percent_mean, check.cpu_percent_max
        );
    } else {
        let _ = writeln!(out, "self-check: RESULTS UNRELIABLE");
        for reason in &check.reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    if !report.thresholds.is_empty() {
        let _ = writeln!(out, "thresholds:");
        for t in &report.thresholds {
            let mark = if t.passed { "pass" } else { "FAIL" };
            let baseline = t
                .baseline
                .as_ref()
                .map(|b| format!(", baseline {b}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {mark}  {:<28} actual {}{baseline}",
                t.threshold, t.actual
            );
        }
    }
    out
}
