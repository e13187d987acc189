//! What an execution is told about itself, and what it may report besides
//! its result: the steps it went through, each timed from when it was due.
//!
//! The engine makes one [`Context`] per execution. A task that does several
//! things per execution (a scenario's requests, a login then a query)
//! reports each as a step: the step's latency counts from when it was
//! *due* (the execution's intended start for the first, the previous step's
//! end plus any think time after that), its service time from when it
//! actually started, so a late step is never hidden the way a late arrival
//! never is. Steps are reported per name beside the executions and never
//! counted in the run's totals (see [`crate::metrics::Tag`]).

use std::time::Instant;

use super::TaskError;
use crate::metrics::{Phase, Recorder, Tag};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// One execution's context.
pub struct Context<'a> {
    instance: usize,
    iteration: u64,
    phase: Phase,
    intended: Instant,
    started: Instant,
    sink: Option<Sink<'a>>,
}

/// Where steps are recorded: the worker's metrics shard, on the run clock.
struct Sink<'a> {
    recorder: &'a Recorder,
    /// The instant the run clock counts from.
    origin: Instant,
    /// Ends the run.
    stop: &'a dyn StopRun,
}

/// How a task ends the whole run early (its data ran out, say): the
/// engine's stop signal, seen from the task.
pub trait StopRun: Sync {
    /// Stops the run; it ends "aborted" with `reason`.
    fn stop_run(&self, reason: String);
}

impl<'a> Context<'a> {
    /// The context of an execution the engine runs: instance `instance`'s
    /// execution number `iteration`, due at `intended` and started at
    /// `started`, its steps recorded by `recorder` on a run clock that
    /// started at `origin`; `stop` ends the run.
    pub(crate) fn new(
        (instance, iteration): (usize, u64),
        phase: Phase,
        (intended, started): (Instant, Instant),
        (recorder, origin): (&'a Recorder, Instant),
        stop: &'a dyn StopRun,
    ) -> Self {
        Self {
            instance,
            iteration,
            phase,
            intended,
            started,
            sink: Some(Sink {
                recorder,
                origin,
                stop,
            }),
        }
    }

    /// Ends the whole run early, saying why (a detached context ignores
    /// it). Executions in flight finish; no new one starts.
    pub fn stop_run(&self, reason: impl Into<String>) {
        if let Some(sink) = &self.sink {
            sink.stop.stop_run(reason.into());
        }
    }

    /// A context outside any run, for calling a task's `execute` directly
    /// (a unit test of the task): due and started now, steps discarded.
    pub fn detached(instance: usize, iteration: u64) -> Context<'static> {
        let now = Instant::now();
        Context {
            instance,
            iteration,
            phase: Phase::Main,
            intended: now,
            started: now,
            sink: None,
        }
    }

    /// The number of the task instance running it (0, 1, 2, ...).
    pub fn instance(&self) -> usize {
        self.instance
    }

    /// How many executions this instance ran before this one.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Whether it counts in the warmup or in the measured run.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the load model wanted it to start (the arrival's due time; the
    /// actual start in a closed model).
    pub fn intended_start(&self) -> Instant {
        self.intended
    }

    /// When it actually started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records step `name`, which ended now: due at `due`, started at
    /// `started`, and failed with `error` if it did. Step names, like
    /// tags, are `&'static str` so their number stays bounded.
    pub fn record_step(
        &self,
        name: &'static str,
        due: Instant,
        started: Instant,
        error: Option<&TaskError>,
    ) {
        let Some(sink) = &self.sink else {
            return;
        };
        let end = Instant::now();
        let end_ns = end.saturating_duration_since(sink.origin).as_nanos() as u64;
        let latency = end.saturating_duration_since(due).as_nanos() as u64;
        let service = end.saturating_duration_since(started).as_nanos() as u64;
        sink.recorder.record_execution(
            end_ns / NANOS_PER_SEC,
            (self.phase, Some(Tag::Step(name))),
            latency,
            service,
            error,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsHub;
    use std::time::Duration;

    #[test]
    fn a_step_counts_its_latency_from_when_it_was_due() {
        let hub = MetricsHub::new(1);
        let recorder = hub.recorder();
        let origin = Instant::now();
        let due = origin;
        let started = origin + Duration::from_millis(30);
        std::thread::sleep(Duration::from_millis(40));
        struct Never;
        impl StopRun for Never {
            fn stop_run(&self, _: String) {}
        }
        let ctx = Context::new(
            (0, 7),
            Phase::Main,
            (origin, origin),
            (&recorder, origin),
            &Never,
        );
        ctx.record_step("login", due, started, None);
        let windows = hub.take_all();
        let (key, stats) = &windows[0].ops[0];
        assert_eq!(key.1, Some(Tag::Step("login")));
        let (latency, service) = (stats.latency.max(), stats.service.max());
        assert!(latency >= 40_000_000, "from due: {latency}");
        assert!(service < latency && service >= 10_000_000, "{service}");
        assert_eq!(windows[0].total().completed(), 0, "a step is no execution");
        assert_eq!(ctx.iteration(), 7);
    }
}
