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
    /// Ask a peer's health endpoint whether it is ready: exit 0 if so, 1
    /// if not (a container platform's command probe).
    Health(HealthArgs),
    /// Print a shell's completion script for vajra-peer.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one per command into a folder.
    Man(ManArgs),
}

/// Arguments of `vajra-peer health`.
#[derive(clap::Args)]
struct HealthArgs {
    /// The health endpoint, HOST:PORT (a peer's --health-listen).
    #[arg(env = "VAJRA_HEALTH_LISTEN", default_value = "127.0.0.1:7790")]
    addr: String,
}

/// Arguments of `vajra-peer completions`.
#[derive(clap::Args)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Arguments of `vajra-peer man`.
#[derive(clap::Args)]
struct ManArgs {
    /// Write vajra-peer.1 and a page per command (vajra-peer-run.1 ...)
    /// into this folder instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
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
        Command::Health(health) => probe_health(&health),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into memory first: writing to a closed pipe is an error to
            // report, not a panic inside the generator.
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, "vajra-peer", &mut script);
            print_bytes(&script)
        }
        Command::Man(args) => write_manual(args.dir.as_deref()),
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

/// `vajra-peer health`: 0 when the endpoint says ready, 1 otherwise (with
/// why on stderr).
fn probe_health(args: &HealthArgs) -> u8 {
    let Ok(rt) = process::runtime(1) else {
        return EXIT_RUNTIME;
    };
    match rt.block_on(crate::cluster::health::probe(&args.addr)) {
        Ok(said) => {
            println!("{said}");
            EXIT_OK
        }
        Err(why) => {
            eprintln!("not ready: {why}");
            EXIT_RUNTIME
        }
    }
}

/// `vajra-peer man`: the main page on stdout, or every command's page into
/// `dir`.
fn write_manual(dir: Option<&std::path::Path>) -> u8 {
    let command = <Cli as clap::CommandFactory>::command();
    let written = match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map(|()| print_bytes(&page))
        }
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .map(|()| EXIT_OK),
    };
    written.unwrap_or_else(|e| {
        eprintln!("error: cannot write the manual: {e}");
        EXIT_RUNTIME
    })
}

/// Writes `bytes` to stdout: 0, or 1 when it is closed.
fn print_bytes(bytes: &[u8]) -> u8 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(_) => EXIT_RUNTIME,
    }
}
