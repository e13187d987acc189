//! `run`, `demo` and `serve`: a test from this process, and the built-in target.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::Extensions;
use super::process::{
    EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_STOPPED, EXIT_THRESHOLD,
    EXIT_UNRELIABLE, config_error, runtime,
};
use crate::config::duration::HumanDuration;
use crate::config::{self, RunArgs, RunSettings};
use crate::engine::{EngineConfig, LoadModel, StopCause, StopSignal};
use crate::export::console::{ConsoleObserver, summary};
use crate::export::registry::Exports;
use crate::export::{ExportObserver, Report, RunInfo, files};
use crate::history::session::Session;
use crate::history::store::Provenance;
use crate::target::{Target, TargetBehaviour};

/// `demo`: the built-in target and a test of it.
#[derive(Args)]
pub(super) struct DemoArgs {
    /// Target rate.
    #[arg(long, default_value_t = 2000.0)]
    pub(super) tps: f64,
    /// Length of the demo run.
    #[arg(long, default_value = "10s")]
    pub(super) duration: HumanDuration,
}

/// `serve`: the built-in HTTP target alone.
#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(super) listen: SocketAddr,
    /// Delay added to every response.
    #[arg(long, default_value = "0s")]
    pub(super) delay: HumanDuration,
    /// Stall periodically: the period.
    #[arg(long)]
    pub(super) stall_every: Option<HumanDuration>,
    /// Length of each stall.
    #[arg(long, default_value = "1s")]
    pub(super) stall_for: HumanDuration,
    /// Runtime threads [default: one per core].
    #[arg(long)]
    pub(super) threads: Option<usize>,
}

/// Runs a resolved configuration and prints its summary; `target` is a
/// built-in target to serve alongside (the demo).
pub(super) fn run_settings(
    extensions: &Extensions,
    settings: RunSettings,
    target: Option<TargetBehaviour>,
) -> u8 {
    let runtime = match runtime(settings.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    runtime.block_on(async move {
        let mut settings = settings;
        let _target = match target {
            Some(behaviour) => {
                match Target::start("127.0.0.1:0".parse().expect("literal address"), behaviour)
                    .await
                {
                    Ok(t) => {
                        settings.task.http.url = Some(t.url());
                        eprintln!("demo target listening on {}", t.url());
                        Some(t)
                    }
                    Err(e) => {
                        eprintln!("error: cannot start the demo target: {e}");
                        return EXIT_RUNTIME;
                    }
                }
            }
            None => None,
        };
        execute(extensions, settings).await
    })
}

async fn execute(extensions: &Extensions, settings: RunSettings) -> u8 {
    let runnable = match extensions.tasks.build(&settings.task) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_CONFIG;
        }
    };
    let mut exports = Exports {
        registry: extensions.exporters.clone(),
        settings: settings.export.clone(),
    };
    let _metrics = match exports.serve_metrics(true).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_RUNTIME;
        }
    };
    let info = run_info(&settings);
    let history = match Session::open(
        settings.store.as_deref(),
        settings.baseline.as_ref(),
        &settings.test_name,
        &info.test_id,
    )
    .await
    {
        Ok(history) => history,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    if let Some(line) = history.describe().filter(|_| !settings.quiet) {
        eprintln!("{line}");
    }
    let run_id = info.test_id.clone();
    let pipeline = match exports.start(info) {
        Ok(pipeline) => pipeline,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_CONFIG;
        }
    };
    let stop = StopSignal::new();
    watch_ctrl_c(stop.clone());
    let (total, target_rate) = match &settings.engine.load {
        LoadModel::Open { profile, .. } => {
            let main_secs = profile.curve.duration() - profile.warmup_secs;
            let main = profile
                .curve
                .count_between(profile.warmup_secs, profile.curve.duration());
            (
                Duration::try_from_secs_f64(profile.curve.duration()).ok(),
                Some(main / main_secs.max(1e-9)),
            )
        }
        LoadModel::Closed {
            warmup, duration, ..
        } => (Some(*warmup + *duration), None),
    };
    let warmup_secs = match &settings.engine.load {
        LoadModel::Open { profile, .. } => profile.warmup_secs,
        LoadModel::Closed { warmup, .. } => warmup.as_secs_f64(),
    };
    let abort_on = if settings.abort_on_fail {
        settings.thresholds.clone()
    } else {
        Vec::new()
    };
    let mut console = ConsoleObserver::new(total, settings.quiet, abort_on, warmup_secs);
    let mut observer = ExportObserver::new(&mut console, &pipeline);
    let engine = EngineConfig {
        tracing: pipeline.tracing(),
        ..settings.engine.clone()
    };
    let outcome = runnable.run(engine, &mut observer, stop).await;
    console.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            // Exporters still end: a BlazeMeter session is stopped, the
            // run's span closed with the error.
            let failed = Report::failed(&settings.task.name, &e.to_string());
            for export in pipeline.finish(&failed).await {
                eprintln!("export {}", export.describe());
            }
            return EXIT_RUNTIME;
        }
    };
    let mut report = Report::build(
        &settings.task.name,
        &outcome,
        &settings.thresholds,
        settings.reliable_lag,
    );
    report.exports = pipeline.finish(&report).await;
    let provenance = Provenance {
        id: &run_id,
        name: &settings.test_name,
        started_by: &started_by("run"),
        definition: definition_of(&settings),
    };
    if let Some(problem) = history
        .conclude(&mut report, &settings.thresholds, provenance, target_rate)
        .await
    {
        eprintln!("warning: {problem}");
    }
    print!("{}", summary(&report, target_rate));
    for path in &settings.outputs {
        if let Err(e) = files::write(&report, path) {
            eprintln!("error: {e:#}");
            return EXIT_RUNTIME;
        }
    }
    exit_code(&report, outcome.stop.as_ref(), settings.fail_on_unreliable)
}

/// Who starts a test from this command line: `COMMAND:USER@HOST`.
pub(super) fn started_by(command: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        // SAFETY: getuid cannot fail and has no preconditions.
        .unwrap_or_else(|_| format!("uid{}", unsafe { libc::getuid() }));
    let host = crate::cluster::peer::hostname().unwrap_or_else(|| "local".into());
    format!("{command}:{user}@{host}")
}

/// A standalone run's settings as history keeps them: the test's name,
/// task, load and thresholds (its definition, as a cluster's is kept).
fn definition_of(settings: &RunSettings) -> String {
    serde_json::json!({
        "test-name": settings.test_name,
        "task": settings.task.name,
        "url": settings.task.http.url,
        "threshold": settings.thresholds.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "baseline": settings.baseline.as_ref().map(ToString::to_string),
    })
    .to_string()
}

/// What this process's exporters learn about a standalone run.
fn run_info(settings: &RunSettings) -> RunInfo {
    let (curve, warmup_secs) = match &settings.engine.load {
        LoadModel::Open { profile, .. } => (Some(profile.curve.clone()), profile.warmup_secs),
        LoadModel::Closed { warmup, .. } => (None, warmup.as_secs_f64()),
    };
    RunInfo {
        // The start, and a random part: runs of many machines may share
        // one history.
        test_id: format!(
            "r{}-{:04x}",
            crate::cluster::wall::unix_now_ms(),
            fastrand::u16(..)
        ),
        peer: crate::cluster::peer::hostname().unwrap_or_else(|| "local".into()),
        task: settings.task.name.clone(),
        labels: settings.export.labels.clone(),
        curve,
        warmup_secs,
        starts_at: std::time::SystemTime::now(),
    }
}

fn exit_code(report: &Report, stop: Option<&StopCause>, fail_on_unreliable: bool) -> u8 {
    if stop == Some(&StopCause::Interrupted) {
        EXIT_INTERRUPTED
    } else if stop == Some(&StopCause::Stopped) {
        EXIT_STOPPED
    } else if !report.thresholds_passed() || matches!(stop, Some(StopCause::Aborted(_))) {
        EXIT_THRESHOLD
    } else if fail_on_unreliable && !report.self_check.reliable {
        EXIT_UNRELIABLE
    } else {
        EXIT_OK
    }
}

/// First Ctrl-C: stop arrivals and drain. Second: exit at once.
fn watch_ctrl_c(stop: StopSignal) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "\ninterrupted: stopping arrivals and draining in-flight work (Ctrl-C again to quit now)"
        );
        stop.interrupt();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
    });
}

pub(super) fn run_demo(extensions: &Extensions, demo: DemoArgs) -> u8 {
    let args = RunArgs {
        task: Some("http".into()),
        tps: Some(demo.tps),
        duration: Some(demo.duration),
        ramp_up: Some(HumanDuration(demo.duration.0 / 5)),
        threshold: vec!["p99<100ms".into(), "error_rate<1%".into()],
        ..RunArgs::default()
    };
    match config::resolve(args) {
        Ok(settings) => run_settings(
            extensions,
            settings,
            Some(TargetBehaviour {
                delay: Duration::from_millis(1),
                ..TargetBehaviour::default()
            }),
        ),
        Err(e) => config_error(e),
    }
}

pub(super) fn run_serve(serve: ServeArgs) -> u8 {
    let threads = serve
        .threads
        .unwrap_or_else(crate::metrics::cpu::available_cores);
    let runtime = match runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    runtime.block_on(async move {
        let behaviour = TargetBehaviour {
            delay: serve.delay.0,
            stall_every: serve.stall_every.map(|d| d.0),
            stall_for: serve.stall_for.0,
        };
        match Target::start(serve.listen, behaviour).await {
            Ok(target) => {
                eprintln!("serving on {}", target.url());
                tokio::select! {
                    _ = target.wait() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", serve.listen);
                EXIT_RUNTIME
            }
        }
    })
}
