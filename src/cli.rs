//! The `vajra-peer` command line, reusable by user binaries via [`main_with`].
//!
//! Exit codes: 0 success; 1 runtime error (task setup failed, report not
//! written); 2 invalid command line or configuration; 3 a threshold failed
//! (or aborted the run); 4 results unreliable with `--fail-on-unreliable`;
//! 5 a cluster's test stopped by `vajra-peer stop` before its end (what
//! `start --wait` returns then); 130 interrupted by Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::plan::Strategies;
use crate::config::duration::HumanDuration;
use crate::config::{self, ConfigError, RunArgs, RunSettings};
use crate::engine::{LoadModel, StopCause, StopSignal};
use crate::export::console::{ConsoleObserver, summary};
use crate::export::{Report, files};
use crate::target::{Target, TargetBehaviour};
use crate::task::TaskRegistry;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run could not be carried out.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad command line or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: a threshold failed.
pub const EXIT_THRESHOLD: u8 = 3;
/// Exit code: the self-check failed and `--fail-on-unreliable` was given.
pub const EXIT_UNRELIABLE: u8 = 4;
/// Exit code: a cluster's test was stopped by a command before its end.
pub const EXIT_STOPPED: u8 = 5;
/// Exit code: interrupted by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(name = "vajra-peer", version, about = "Coordinated-omission-free load generator", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a load test from this process.
    Run(Box<RunArgs>),
    /// Serve the built-in demo target and load-test it (a one-command tour).
    Demo(DemoArgs),
    /// Serve the built-in HTTP target (for demos, tests and benchmarks).
    Serve(ServeArgs),
    /// Join a cluster (or start one) and stay in it until stopped.
    Join(crate::cluster::cli::JoinArgs),
    /// Show the cluster as one of its peers sees it.
    Status(crate::cluster::cli::StatusArgs),
    /// Start a test on the cluster, through any peer (same options as `run`).
    Start(Box<crate::cluster::cli::StartArgs>),
    /// Stop the cluster's running test, through any peer.
    Stop(crate::cluster::cli::StopArgs),
    /// Change the running test's cluster rate at a new epoch, through any peer.
    Update(crate::cluster::cli::UpdateArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Target rate.
    #[arg(long, default_value_t = 2000.0)]
    tps: f64,
    /// Length of the demo run.
    #[arg(long, default_value = "10s")]
    duration: HumanDuration,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Delay added to every response.
    #[arg(long, default_value = "0s")]
    delay: HumanDuration,
    /// Stall periodically: the period.
    #[arg(long)]
    stall_every: Option<HumanDuration>,
    /// Length of each stall.
    #[arg(long, default_value = "1s")]
    stall_for: HumanDuration,
    /// Runtime threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs the `vajra-peer` command line with the tasks in `registry` and the
/// built-in distribution strategies.
pub fn main_with(registry: TaskRegistry) -> ExitCode {
    main_with_strategies(registry, Strategies::with_builtins())
}

/// Runs the `vajra-peer` command line with the tasks in `registry` and the
/// distribution strategies in `strategies` (`start --distribution NAME`).
/// Every peer of a cluster should run the same binary.
pub fn main_with_strategies(registry: TaskRegistry, strategies: Strategies) -> ExitCode {
    init_logging();
    quiet_repeated_panics();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK });
        }
    };
    let code = match cli.command {
        Command::Run(args) => match config::load(*args) {
            Ok(settings) => run_settings(&registry, settings, None),
            Err(e) => config_error(e),
        },
        Command::Demo(demo) => run_demo(&registry, demo),
        Command::Serve(serve) => run_serve(serve),
        Command::Join(join) => crate::cluster::cli::join(
            join,
            std::sync::Arc::new(registry),
            std::sync::Arc::new(strategies),
        ),
        Command::Status(status) => crate::cluster::cli::status(status),
        Command::Start(start) => crate::cluster::cli::start(*start),
        Command::Stop(stop) => crate::cluster::cli::stop(stop),
        Command::Update(update) => crate::cluster::cli::update(update),
    };
    ExitCode::from(code)
}

fn init_logging() {
    crate::logging::init();
}

/// Task panics are caught and counted as failures; print the first few and
/// then keep quiet, so a task that panics on every call cannot flood stderr.
fn quiet_repeated_panics() {
    const SHOWN: usize = 3;
    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let seen = SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if seen < SHOWN {
            default_hook(info);
        } else if seen == SHOWN {
            eprintln!("(further panics not shown; each is counted as a failure of kind 'panic')");
        }
    }));
}

fn config_error(e: ConfigError) -> u8 {
    eprintln!("error: {e}");
    EXIT_CONFIG
}

pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Runs a resolved configuration and prints its summary; `target` is a
/// built-in target to serve alongside (the demo).
fn run_settings(
    registry: &TaskRegistry,
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
        execute(registry, settings).await
    })
}

async fn execute(registry: &TaskRegistry, settings: RunSettings) -> u8 {
    let runnable = match registry.build(&settings.task) {
        Ok(r) => r,
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
    let mut observer = ConsoleObserver::new(total, settings.quiet, abort_on, warmup_secs);
    let outcome = runnable
        .run(settings.engine.clone(), &mut observer, stop)
        .await;
    observer.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_RUNTIME;
        }
    };
    let report = Report::build(
        &settings.task.name,
        &outcome,
        &settings.thresholds,
        settings.reliable_lag,
    );
    print!("{}", summary(&report, target_rate));
    for path in &settings.outputs {
        if let Err(e) = files::write(&report, path) {
            eprintln!("error: {e:#}");
            return EXIT_RUNTIME;
        }
    }
    exit_code(&report, outcome.stop.as_ref(), settings.fail_on_unreliable)
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

fn run_demo(registry: &TaskRegistry, demo: DemoArgs) -> u8 {
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
            registry,
            settings,
            Some(TargetBehaviour {
                delay: Duration::from_millis(1),
                ..TargetBehaviour::default()
            }),
        ),
        Err(e) => config_error(e),
    }
}

fn run_serve(serve: ServeArgs) -> u8 {
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
