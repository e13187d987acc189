//! The `vajra-peer` command line, reusable by user binaries via [`main_with`].
//!
//! Exit codes: 0 success; 1 runtime error (task setup failed, report not
//! written); 2 invalid command line or configuration; 3 a threshold failed
//! (or aborted the run); 4 results unreliable with `--fail-on-unreliable`;
//! 5 a cluster's test stopped by `vajra-peer stop` before its end (what
//! `start --wait` returns then); 130 interrupted by Ctrl-C.

pub mod cluster;
mod history;
pub mod orchestrator;
mod process;
mod run;
pub mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use process::config_error;
pub use process::{
    EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_STOPPED, EXIT_THRESHOLD,
    EXIT_UNRELIABLE,
};
use run::{DemoArgs, ServeArgs, run_demo, run_serve, run_settings};

use crate::cluster::run::plan::Strategies;
use crate::config::{self, RunArgs};
use crate::engine::TaskRegistry;
use crate::export::registry::ExporterRegistry;

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
    Join(Box<cluster::JoinArgs>),
    /// Join a cluster as its orchestrator: no load, every test recorded in
    /// a history store, the web UI with history pages.
    Orchestrator(Box<orchestrator::OrchestratorArgs>),
    /// List, show, compare, export or delete recorded runs.
    History(history::HistoryArgs),
    /// Show the cluster as one of its peers sees it.
    Status(cluster::StatusArgs),
    /// Start a test on the cluster, through any peer (same options as `run`).
    Start(Box<cluster::StartArgs>),
    /// Stop the cluster's running test, through any peer.
    Stop(cluster::StopArgs),
    /// Change the running test's cluster rate at a new epoch, through any peer.
    Update(cluster::UpdateArgs),
    /// Convert a JSON report: to a self-contained HTML page, or CSV.
    Report(web::ReportArgs),
}

/// What a user binary adds to the `vajra-peer` command line: its tasks,
/// its distribution strategies, its exporters. Every peer of a cluster
/// should run the same binary.
pub struct Extensions {
    /// Tasks by name (`--task NAME`).
    pub tasks: TaskRegistry,
    /// Distribution strategies by name (`start --distribution NAME`).
    pub strategies: Strategies,
    /// Live exporters by name (`--export NAME`).
    pub exporters: ExporterRegistry,
}

impl Extensions {
    /// The tasks in `tasks`, with the built-in strategies and exporters.
    pub fn new(tasks: TaskRegistry) -> Self {
        Self {
            tasks,
            strategies: Strategies::with_builtins(),
            exporters: ExporterRegistry::with_builtins(),
        }
    }
}

/// Runs the `vajra-peer` command line with the tasks in `registry` and the
/// built-in distribution strategies and exporters.
pub fn main_with(registry: TaskRegistry) -> ExitCode {
    main_with_extensions(Extensions::new(registry))
}

/// Runs the `vajra-peer` command line with the tasks in `registry` and the
/// distribution strategies in `strategies` (`start --distribution NAME`).
pub fn main_with_strategies(registry: TaskRegistry, strategies: Strategies) -> ExitCode {
    main_with_extensions(Extensions {
        strategies,
        ..Extensions::new(registry)
    })
}

/// Runs the `vajra-peer` command line with everything `extensions` adds.
pub fn main_with_extensions(extensions: Extensions) -> ExitCode {
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
            Ok(settings) => run_settings(&extensions, settings, None),
            Err(e) => config_error(e),
        },
        Command::Demo(demo) => run_demo(&extensions, demo),
        Command::Serve(serve) => run_serve(serve),
        Command::Join(join) => cluster::join(*join, extensions),
        Command::Orchestrator(args) => orchestrator::orchestrator(*args, extensions),
        Command::History(args) => history::history(args),
        Command::Status(status) => cluster::status(status),
        Command::Start(start) => cluster::start(*start),
        Command::Stop(stop) => cluster::stop(stop),
        Command::Update(update) => cluster::update(update),
        Command::Report(report) => web::report(report),
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
