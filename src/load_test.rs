//! Running a test from Rust code, without the command line: a builder
//! from a task factory, a load and thresholds to the same [`Report`] `run`
//! writes.
//!
//! ```no_run
//! use std::time::Duration;
//! use vajra::load_test::LoadTest;
//! use vajra::task::{Context, Task, TaskResult};
//!
//! struct Ping;
//! impl Task for Ping {
//!     async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
//!         TaskResult::success()
//!     }
//! }
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let report = LoadTest::new("ping", |_instance: usize| Ok(Ping))
//!     .rate(500.0)
//!     .duration(Duration::from_secs(10))
//!     .threshold("p99<5ms")
//!     .run()
//!     .await?;
//! assert!(report.thresholds.iter().all(|t| t.passed));
//! # Ok(())
//! # }
//! ```
//!
//! The settings go through the same checks as the command line's (a rate
//! without a duration, a threshold that does not parse, are errors naming
//! the setting), and the run through the same engine.

use std::time::Duration;

use crate::config::duration::HumanDuration;
use crate::config::{RunArgs, resolve};
use crate::engine::{LoadControl, NoObserver, StopSignal};
use crate::export::Report;
use crate::task::TaskFactory;

/// A test to run from code: a task and its load.
pub struct LoadTest<F> {
    name: String,
    factory: F,
    args: RunArgs,
}

impl<F: TaskFactory> LoadTest<F> {
    /// A test of the task `factory` makes, reported under `name`.
    pub fn new(name: &str, factory: F) -> Self {
        Self {
            name: name.to_owned(),
            factory,
            args: RunArgs {
                task: Some(name.to_owned()),
                ..RunArgs::default()
            },
        }
    }

    /// Open model at `tps` executions per second.
    pub fn rate(mut self, tps: f64) -> Self {
        self.args.tps = Some(tps);
        self
    }

    /// Closed model with `instances` executing back to back (with a rate
    /// too: at most that rate).
    pub fn concurrency(mut self, instances: usize) -> Self {
        self.args.concurrency = Some(instances);
        self
    }

    /// How long the load lasts, ramps included.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.args.duration = Some(HumanDuration(duration));
        self
    }

    /// A linear ramp from 0 to the rate at the start.
    pub fn ramp_up(mut self, duration: Duration) -> Self {
        self.args.ramp_up = Some(HumanDuration(duration));
        self
    }

    /// A warmup before the measured run, reported apart.
    pub fn warmup(mut self, duration: Duration) -> Self {
        self.args.warmup = Some(HumanDuration(duration));
        self
    }

    /// A pass/fail criterion in the command line's grammar (`p99<250ms`,
    /// `error_rate<1%`).
    pub fn threshold(mut self, threshold: &str) -> Self {
        self.args.threshold.push(threshold.to_owned());
        self
    }

    /// Runtime threads for the executions [default: one per core].
    pub fn threads(mut self, threads: usize) -> Self {
        self.args.threads = Some(threads);
        self
    }

    /// Runs it on the current tokio runtime; the report, or what was wrong
    /// with the settings or the task's setup.
    pub async fn run(self) -> anyhow::Result<Report> {
        let settings = resolve(self.args)?;
        let outcome = crate::engine::run_controlled(
            self.factory,
            settings.engine.clone(),
            &mut NoObserver,
            StopSignal::new(),
            LoadControl::new(),
        )
        .await?;
        Ok(Report::build(
            &self.name,
            &outcome,
            &settings.thresholds,
            settings.reliable_lag,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::noop::Noop;

    #[tokio::test]
    async fn a_test_runs_from_code_and_judges_its_thresholds() {
        let report = LoadTest::new("noop", |_: usize| Ok(Noop))
            .rate(200.0)
            .duration(Duration::from_secs(1))
            .threshold("count>=200")
            .threshold("p99<1ms")
            .run()
            .await
            .unwrap();
        assert_eq!(report.task, "noop");
        assert_eq!(report.main.completed, 200, "the integral of 200/s over 1 s");
        assert_eq!(report.thresholds.len(), 2);
        assert!(report.thresholds[0].passed, "{:?}", report.thresholds);
        let bad = LoadTest::new("noop", |_: usize| Ok(Noop))
            .rate(10.0)
            .duration(Duration::from_secs(1))
            .threshold("p99 under 5")
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(bad.contains("threshold"), "{bad}");
        let endless = LoadTest::new("noop", |_: usize| Ok(Noop))
            .rate(10.0)
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(endless.contains("duration"), "{endless}");
    }

    /// Succeeds, except every third execution (counted across instances),
    /// which does nothing.
    struct EveryThirdNotRun(std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl crate::task::Task for EveryThirdNotRun {
        async fn execute(&mut self, _: &mut crate::task::Context<'_>) -> crate::task::TaskResult {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n % 3 == 2 {
                crate::task::TaskResult::NotRun
            } else {
                crate::task::TaskResult::success()
            }
        }
    }

    #[tokio::test]
    async fn an_execution_not_run_is_counted_apart_from_completions_and_failures() {
        let calls: std::sync::Arc<std::sync::atomic::AtomicU64> = std::sync::Arc::default();
        let report = LoadTest::new("some", move |_: usize| {
            Ok(EveryThirdNotRun(std::sync::Arc::clone(&calls)))
        })
        .rate(300.0)
        .duration(Duration::from_secs(1))
        .run()
        .await
        .unwrap();
        assert_eq!(report.main.dispatched, 300);
        assert_eq!(report.main.completed, 200, "{report:?}");
        assert_eq!(report.main.failure, 0);
        assert_eq!(report.counters.get("not_run"), Some(&100));
        assert_eq!(report.main.latency.count, 200, "no latency for nothing");
    }
}
