//! The engine driven through the library API with user-defined tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vajra::engine::{
    self, EngineConfig, EngineError, LoadModel, NoObserver, Saturation, StopSignal,
};
use vajra::load::{LoadPattern, LoadProfile};
use vajra::metrics::Phase;
use vajra::task::{Context, Task, TaskError, TaskResult};

fn open(rate: f64, secs: u64, max_in_flight: usize) -> EngineConfig {
    let profile = LoadProfile {
        warmup: None,
        pattern: LoadPattern::Constant {
            rate,
            duration: Duration::from_secs(secs),
        },
    }
    .compile()
    .unwrap();
    EngineConfig {
        load: LoadModel::Open {
            profile,
            preallocate: 2,
            max_in_flight,
            saturation: Saturation::Drop,
            dispatch_quantum: vajra::config::DEFAULT_DISPATCH_QUANTUM,
            max_lag: vajra::config::DEFAULT_MAX_LAG,
        },
        thread_strategy: None,
        blocking_threads: 0,
        drain_timeout: Duration::from_secs(5),
        start_at: None,
        tracing: None,
    }
}

/// Panics on every third execution overall, fails every fifth, tags the rest.
struct Flaky {
    executions: Arc<AtomicUsize>,
}

impl Task for Flaky {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        let n = self.executions.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(3) {
            panic!("flaky task blew up");
        }
        if n.is_multiple_of(5) {
            return TaskResult::failure(TaskError::new("flaky", "every fifth")).tagged("write");
        }
        TaskResult::success().tagged("read")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_failures_and_tags_are_reported_apart() {
    let created = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&created);
    let executions = Arc::new(AtomicUsize::new(0));
    let factory = move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Flaky {
            executions: Arc::clone(&executions),
        })
    };
    let outcome = engine::run(
        factory,
        open(200.0, 1, 50),
        &mut NoObserver,
        StopSignal::new(),
    )
    .await
    .unwrap();
    let main = outcome.metrics.phase_total(Phase::Main);
    assert_eq!(main.dispatched + main.dropped, 200);
    assert_eq!(
        main.completed(),
        main.dispatched,
        "a panic never loses an execution"
    );
    let panics = main
        .errors
        .sorted()
        .into_iter()
        .find(|e| e.kind == "panic")
        .unwrap();
    // Every third execution panics, so exactly a third are panics.
    assert_eq!(
        panics.count,
        main.completed() / 3,
        "dropped {}",
        main.dropped
    );
    assert!(panics.example.contains("blew up"));
    assert!(
        created.load(Ordering::Relaxed) as u64 > panics.count,
        "each panicked instance is replaced"
    );
    let tags = outcome.metrics.tagged(Phase::Main);
    let names: Vec<_> = tags.iter().map(|(t, _)| *t).collect();
    assert_eq!(names, ["read", "write"]);
    assert_eq!(tags[1].1.failure, tags[1].1.completed());
}

#[tokio::test]
async fn setup_failure_is_an_error_naming_the_cause() {
    struct NoSetup;
    impl Task for NoSetup {
        async fn setup(&mut self) -> anyhow::Result<()> {
            anyhow::bail!("database unreachable")
        }
        async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
            TaskResult::success()
        }
    }
    let result = engine::run(
        |_| Ok(NoSetup),
        open(10.0, 1, 10),
        &mut NoObserver,
        StopSignal::new(),
    )
    .await;
    match result {
        Err(EngineError::Setup(message)) => {
            assert!(message.contains("database unreachable"), "{message}")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a failed setup must fail the run"),
    }
}

/// Fails the test if an instance is ever executed re-entrantly.
struct Exclusive {
    cleaned: Arc<AtomicUsize>,
}

impl Task for Exclusive {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        tokio::time::sleep(Duration::from_millis(2)).await;
        TaskResult::success()
    }

    async fn cleanup(&mut self) -> anyhow::Result<()> {
        self.cleaned.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_runs_each_instance_alone_and_cleans_up() {
    let cleaned = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&cleaned);
    let factory = move |_| {
        Ok(Exclusive {
            cleaned: Arc::clone(&c),
        })
    };
    let config = EngineConfig {
        load: LoadModel::Closed {
            concurrency: 8,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            busy_poll: false,
        },
        thread_strategy: None,
        blocking_threads: 0,
        drain_timeout: Duration::from_secs(5),
        start_at: None,
        tracing: None,
    };
    let outcome = engine::run(factory, config, &mut NoObserver, StopSignal::new())
        .await
        .unwrap();
    let main = outcome.metrics.phase_total(Phase::Main);
    assert_eq!(main.failure, 0);
    // 8 instances × ~2 ms each over 1 s: a few thousand executions.
    assert!(main.completed() > 1_000, "{}", main.completed());
    assert_eq!(outcome.instances, 8);
    assert_eq!(
        cleaned.load(Ordering::SeqCst),
        8,
        "every instance is cleaned up"
    );
}

/// A task whose every execution outlives any drain timeout.
struct Stuck;

impl Task for Stuck {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        TaskResult::success()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_executions_are_abandoned_after_the_drain_timeout() {
    let mut config = open(20.0, 1, 100);
    config.drain_timeout = Duration::from_millis(300);
    let outcome = engine::run(|_| Ok(Stuck), config, &mut NoObserver, StopSignal::new())
        .await
        .unwrap();
    assert_eq!(
        outcome.unfinished, 20,
        "every stuck execution is accounted for"
    );
    assert_eq!(outcome.metrics.phase_total(Phase::Main).dispatched, 20);
    assert!(outcome.total_secs < 3.0);
}

/// A worker still cleaning up at the drain timeout has no execution left
/// unfinished: `unfinished` counts executions, not workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cleanup_is_not_an_unfinished_execution() {
    struct SlowCleanup;
    impl Task for SlowCleanup {
        async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
            TaskResult::success()
        }
        async fn cleanup(&mut self) -> anyhow::Result<()> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    }
    let mut config = open(500.0, 1, 100);
    config.drain_timeout = Duration::from_millis(300);
    let outcome = engine::run(
        |_| Ok(SlowCleanup),
        config,
        &mut NoObserver,
        StopSignal::new(),
    )
    .await
    .unwrap();
    let main = outcome.metrics.phase_total(Phase::Main);
    assert_eq!(main.completed(), 500, "every execution finished");
    assert_eq!(
        outcome.unfinished, 0,
        "workers still exiting are not executions"
    );
}

/// Arrivals still queued for a busy instance at the drain timeout never
/// start: they are counted as dropped, so completed + unfinished + dropped
/// + missed is the planned count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_arrivals_at_the_drain_timeout_are_counted_not_lost() {
    let mut config = open(20.0, 1, 2);
    if let LoadModel::Open { saturation, .. } = &mut config.load {
        *saturation = Saturation::Wait;
    }
    config.drain_timeout = Duration::from_millis(300);
    let outcome = engine::run(|_| Ok(Stuck), config, &mut NoObserver, StopSignal::new())
        .await
        .unwrap();
    let main = outcome.metrics.phase_total(Phase::Main);
    assert_eq!(outcome.unfinished, 2, "two instances are stuck");
    assert_eq!(
        main.dropped, 18,
        "the other arrivals waited and never started"
    );
    assert_eq!(
        main.completed() + outcome.unfinished + main.dropped + main.missed,
        outcome.planned.unwrap()
    );
}

/// A generator asked for far more than it can send (10 million no-ops in
/// one second) ends about `max_lag` after the curve does, counting what it
/// could not send as missed, instead of running on for many seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_generator_ends_on_time_and_counts_what_it_missed() {
    use vajra::task::noop::Noop;

    let mut config = open(10_000_000.0, 1, 1_000);
    if let LoadModel::Open { max_lag, .. } = &mut config.load {
        *max_lag = Duration::from_millis(200);
    }
    let outcome = engine::run(|_| Ok(Noop), config, &mut NoObserver, StopSignal::new())
        .await
        .unwrap();
    let main = outcome.metrics.phase_total(Phase::Main);
    let planned = outcome.planned.unwrap();
    assert_eq!(planned, 10_000_000);
    assert!(
        outcome.load_secs < 2.0,
        "the load ran {:.2}s for a 1s curve",
        outcome.load_secs
    );
    assert!(main.missed > 0, "one core cannot send 10 M/s");
    assert_eq!(
        main.dispatched + main.dropped + main.missed,
        planned,
        "every planned arrival is sent, dropped or missed"
    );
    let lag_max = outcome.metrics.lag().unwrap().max();
    assert!(
        lag_max <= 200_000_000 + 50_000_000,
        "nothing left more than max-lag late (max {lag_max} ns)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_update_mid_run_follows_the_new_curve_without_burst_or_gap() {
    use vajra::engine::LoadControl;
    use vajra::load::RateCurve;
    use vajra::task::noop::Noop;

    let control = LoadControl::new();
    let updater = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        // From 2 s on: 600/s for 2 s, instead of 200/s.
        updater.update(2.0, RateCurve::constant(600.0, 2.0).unwrap());
    });
    let outcome = engine::run_controlled(
        |_| Ok(Noop),
        open(200.0, 4, 100),
        &mut NoObserver,
        StopSignal::new(),
        control,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.planned,
        Some(1_600),
        "the plan follows the updated curve"
    );
    let per_second: Vec<u64> = outcome
        .metrics
        .series()
        .iter()
        .take(4)
        .map(|w| w.dispatched)
        .collect();
    for (second, (&got, want)) in per_second.iter().zip([200u64, 200, 600, 600]).enumerate() {
        assert!(
            got.abs_diff(want) <= want / 50 + 1,
            "second {second}: {got} dispatched, want {want}"
        );
    }
    assert_eq!(outcome.metrics.phase_total(Phase::Main).completed(), 1_600);
}

/// A 5 ms quantum at 4000/s releases arrivals about 20 at a time: every one
/// is still sent (none lost, none added, every second on target), each is
/// late by the wait for its batch, and that lateness shows as scheduler lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_quantum_batches_arrivals_without_losing_or_adding_any() {
    use vajra::task::noop::Noop;

    let mut config = open(4_000.0, 2, 500);
    let LoadModel::Open {
        dispatch_quantum, ..
    } = &mut config.load
    else {
        unreachable!("open() builds an open model")
    };
    *dispatch_quantum = Duration::from_millis(5);
    let outcome = engine::run(|_| Ok(Noop), config, &mut NoObserver, StopSignal::new())
        .await
        .unwrap();
    let main = outcome.metrics.phase_total(Phase::Main);
    assert_eq!((main.dispatched, main.dropped), (8_000, 0));
    for window in outcome.metrics.series().iter().take(2) {
        assert!(
            window.dispatched.abs_diff(4_000) <= 4_000 / 50 + 1,
            "second {}: {}",
            window.second,
            window.dispatched
        );
    }
    // Batched every 5 ms, an arrival waits 2.5 ms for its batch on average.
    let lag_p50_us = outcome.metrics.lag().unwrap().value_at_quantile(0.5) / 1_000;
    assert!(lag_p50_us >= 1_000, "median lag {lag_p50_us} µs");
}
