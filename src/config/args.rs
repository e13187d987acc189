//! The settings of a run, as flags, `VAJRA_*` variables and file keys.
//!
//! One struct serves all three sources: clap fills it from the command line
//! and the environment, serde from a TOML or YAML file whose keys are the
//! flag names (`tps = 500`, `ramp-up = "30s"`). Every field is optional so
//! the sources can be layered: command line over environment over file over
//! defaults.

use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::export::ExportArgs;
use crate::engine::Saturation;
use crate::task::ThreadStrategy;

/// Load pattern names for `--pattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternKind {
    /// A fixed rate (`--tps`).
    Constant,
    /// 0 → `--tps` over `--ramp-up`, hold, → 0 over `--ramp-down`.
    Ramp,
    /// Rate levels from `--steps 50:10s,150:10s`.
    Step,
    /// `--tps` with `--spike-tps` for `--spike-duration` every `--spike-every`.
    Spike,
    /// `--tps` ± `--amplitude` over `--period`.
    Sine,
    /// Straight lines between `--points` (inline `0s:0,10s:100` or a file).
    Custom,
}

/// Every setting of `vajra-peer run`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RunArgs {
    /// Read settings from a TOML or YAML file (keys are the flag names);
    /// flags and VAJRA_* variables override it.
    #[arg(long, short = 'c', env = "VAJRA_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Task to run: http, noop, sleep, or one your binary registered.
    #[arg(long, short = 't', env = "VAJRA_TASK", help_heading = "Task")]
    pub task: Option<String>,
    /// Target URL of the http task (http://host:port/path).
    #[arg(long, env = "VAJRA_URL", help_heading = "Task")]
    pub url: Option<String>,
    /// HTTP method [default: GET].
    #[arg(long, env = "VAJRA_METHOD", help_heading = "Task")]
    pub method: Option<String>,
    /// Request header "Name: value" (repeatable).
    #[arg(
        long = "header",
        alias = "headers",
        short = 'H',
        value_name = "NAME: VALUE",
        help_heading = "Task"
    )]
    #[serde(alias = "headers")]
    pub header: Vec<String>,
    /// Request body text.
    #[arg(
        long,
        env = "VAJRA_BODY",
        help_heading = "Task",
        conflicts_with = "body_file"
    )]
    pub body: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "FILE", help_heading = "Task")]
    pub body_file: Option<PathBuf>,
    /// The request body as base64: how a test's definition carries a
    /// `--body-file` (read where `start` runs), so no peer reads a file
    /// named by the wire.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Status codes that count as success, comma-separated [default: any below 400].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "CODES",
        help_heading = "Task"
    )]
    pub expect_status: Vec<u16>,
    /// Per-request timeout of the http task [default: 30s].
    #[arg(long, env = "VAJRA_TIMEOUT", help_heading = "Task")]
    pub timeout: Option<HumanDuration>,
    /// HTTPS: CA certificates (PEM file) to trust besides the built-in
    /// Mozilla roots.
    #[arg(
        long,
        value_name = "FILE",
        env = "VAJRA_HTTPS_CA",
        help_heading = "Task"
    )]
    pub https_ca: Option<PathBuf>,
    /// The PEM text of `--https-ca`, as a test's definition carries it.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_ca_pem: Option<String>,
    /// HTTPS: accept any server certificate (a test target's self-signed
    /// one). The traffic is still encrypted, but the server is not
    /// authenticated.
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Task")]
    pub https_skip_verify: bool,
    /// Speak HTTP/2: ALPN h2 over https://, h2c with prior knowledge over
    /// http:// (the http task).
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Task")]
    pub http2: bool,
    /// HTTP/2: instances sharing each connection, their requests
    /// multiplexed as concurrent streams [default: 1, a connection per
    /// instance].
    #[arg(
        long,
        value_name = "N",
        env = "VAJRA_H2_STREAMS",
        help_heading = "Task"
    )]
    pub h2_streams: Option<usize>,
    /// The grpc task's services: a .proto file (it may import Google's
    /// well-known types) or a compiled descriptor set (protoc -o).
    #[arg(long, value_name = "FILE", env = "VAJRA_PROTO", help_heading = "Task")]
    pub proto: Option<PathBuf>,
    /// The services of `--proto`, as a test's definition carries them.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto_source: Option<crate::task::grpc::ProtoSource>,
    /// Delay of the sleep task: 10ms, or a uniform range 5ms..20ms.
    #[arg(long, env = "VAJRA_SLEEP", help_heading = "Task")]
    pub sleep: Option<String>,
    /// Parameter for user tasks, KEY=VALUE (repeatable).
    #[arg(
        long = "param",
        alias = "params",
        short = 'p',
        value_name = "KEY=VALUE",
        help_heading = "Task"
    )]
    #[serde(alias = "params")]
    pub param: Vec<String>,
    /// Run the user journeys of a scenario file (YAML or TOML; see
    /// docs/scenarios.md): implies --task scenario.
    #[arg(
        long,
        env = "VAJRA_SCENARIO",
        value_name = "FILE",
        help_heading = "Task"
    )]
    pub scenario: Option<PathBuf>,
    /// The scenario file's text, as a test's definition carries it (read
    /// where `start` runs), so no peer reads a file named by the wire.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario_source: Option<crate::task::scenario::ScenarioSource>,

    /// Target rate in executions per second (the open model).
    #[arg(long, env = "VAJRA_TPS", help_heading = "Load")]
    pub tps: Option<f64>,
    /// Length of the run, ramps included, warmup excluded.
    #[arg(long, short = 'd', env = "VAJRA_DURATION", help_heading = "Load")]
    pub duration: Option<HumanDuration>,
    /// Linear ramp from 0 to --tps at the start.
    #[arg(long, env = "VAJRA_RAMP_UP", help_heading = "Load")]
    pub ramp_up: Option<HumanDuration>,
    /// Linear ramp from --tps to 0 at the end.
    #[arg(long, env = "VAJRA_RAMP_DOWN", help_heading = "Load")]
    pub ramp_down: Option<HumanDuration>,
    /// Load pattern [default: inferred from the other load flags].
    #[arg(long, value_enum, env = "VAJRA_PATTERN", help_heading = "Load")]
    pub pattern: Option<PatternKind>,
    /// Step pattern levels, RATE:DURATION,... e.g. 50:10s,150:10s,300:10s.
    #[arg(long, env = "VAJRA_STEPS", help_heading = "Load")]
    pub steps: Option<String>,
    /// Spike pattern: rate during a spike (--tps is the base rate).
    #[arg(long, help_heading = "Load")]
    pub spike_tps: Option<f64>,
    /// Spike pattern: time from one spike to the next.
    #[arg(long, help_heading = "Load")]
    pub spike_every: Option<HumanDuration>,
    /// Spike pattern: how long each spike lasts.
    #[arg(long, help_heading = "Load")]
    pub spike_duration: Option<HumanDuration>,
    /// Sine pattern: swing around --tps.
    #[arg(long, help_heading = "Load")]
    pub amplitude: Option<f64>,
    /// Sine pattern: length of one wave.
    #[arg(long, help_heading = "Load")]
    pub period: Option<HumanDuration>,
    /// Custom pattern: TIME:RATE,... inline, or a file of "TIME,RATE" lines.
    #[arg(long, help_heading = "Load")]
    pub points: Option<String>,
    /// Warmup before the measured run, reported apart and excluded from
    /// thresholds.
    #[arg(long, env = "VAJRA_WARMUP", help_heading = "Load")]
    pub warmup: Option<HumanDuration>,
    /// Rate during the warmup [default: the pattern's starting rate].
    #[arg(long, help_heading = "Load")]
    pub warmup_tps: Option<f64>,
    /// Task instances: alone, a closed model running them back to back;
    /// with --tps, a cap on concurrency (arrivals queue when all are busy).
    #[arg(long, short = 'n', env = "VAJRA_CONCURRENCY", help_heading = "Load")]
    pub concurrency: Option<usize>,
    /// Closed model: let worker threads sleep between responses. By
    /// default they keep polling for I/O while there is work, as wrk does
    /// at full load, so a saturated target does not pay to wake the
    /// generator (the self-check leaves the spinning out of its CPU figure).
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Load")]
    pub no_busy_poll: bool,
    /// Open model: most executions in flight at once [default: 1000].
    #[arg(long, env = "VAJRA_MAX_IN_FLIGHT", help_heading = "Load")]
    pub max_in_flight: Option<usize>,
    /// Open model: instances set up before the start [default: 2 per core].
    #[arg(long, help_heading = "Load")]
    pub preallocate: Option<usize>,
    /// At the in-flight limit: drop (count and skip) or wait (queue)
    /// [default: drop; wait with --concurrency].
    #[arg(long, env = "VAJRA_ON_SATURATION", help_heading = "Load")]
    pub on_saturation: Option<Saturation>,
    /// Open model: shortest time between two wake-ups of the arrival
    /// scheduler; arrivals falling due closer together leave together, each
    /// at most this late, its latency still counted from its due time
    /// [default: 100us; 0s wakes for every arrival; at most 10ms].
    #[arg(long, env = "VAJRA_DISPATCH_QUANTUM", help_heading = "Load")]
    pub dispatch_quantum: Option<HumanDuration>,
    /// Open model: latest an arrival may leave after its due time; what the
    /// generator reaches later (it stalled, was frozen, or cannot keep up)
    /// is not sent but counted as missed [default: 1s].
    #[arg(long, env = "VAJRA_MAX_LAG", help_heading = "Load")]
    pub max_lag: Option<HumanDuration>,

    /// Async runtime threads [default: one per available core].
    #[arg(long, env = "VAJRA_THREADS", help_heading = "Execution")]
    pub threads: Option<usize>,
    /// Where executions run: async (tokio tasks) or blocking (OS threads)
    /// [default: the task's choice].
    #[arg(long, env = "VAJRA_THREAD_STRATEGY", help_heading = "Execution")]
    pub thread_strategy: Option<ThreadStrategy>,
    /// OS threads for the blocking strategy [default: one per core].
    #[arg(long, help_heading = "Execution")]
    pub blocking_threads: Option<usize>,
    /// Time in-flight work may take to finish at the end [default: 10s].
    #[arg(long, env = "VAJRA_DRAIN_TIMEOUT", help_heading = "Execution")]
    pub drain_timeout: Option<HumanDuration>,

    /// Pass/fail criterion, e.g. "p99<250ms", "error_rate<1%", "rate>950"
    /// (repeatable).
    #[arg(
        long = "threshold",
        alias = "thresholds",
        env = "VAJRA_THRESHOLD",
        value_delimiter = ',',
        help_heading = "Checks"
    )]
    #[serde(alias = "thresholds")]
    pub threshold: Vec<String>,
    /// Stop the run as soon as a threshold fails.
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Checks")]
    pub abort_on_fail: bool,
    /// Exit non-zero when the self-check finds the results unreliable.
    #[arg(long, action = ArgAction::SetTrue, help_heading = "Checks")]
    pub fail_on_unreliable: bool,
    /// Scheduler lag (p99) above which results are unreliable [default: 10ms].
    #[arg(long, help_heading = "Checks")]
    pub reliable_lag: Option<HumanDuration>,

    /// Write a report: .json (summary, series, histograms) or .csv (series)
    /// (repeatable).
    #[arg(
        long,
        alias = "outputs",
        short = 'o',
        value_name = "FILE",
        help_heading = "Output"
    )]
    #[serde(alias = "outputs")]
    pub output: Vec<PathBuf>,
    /// No live progress display.
    #[arg(long, short = 'q', action = ArgAction::SetTrue, help_heading = "Output")]
    pub quiet: bool,

    /// The test's name: the runs of one name are its history and its
    /// baselines [default: the task, and the URL for http].
    #[arg(long, env = "VAJRA_TEST_NAME", help_heading = "History")]
    pub test_name: Option<String>,
    /// A history store: sqlite:PATH, postgres://USER@HOST/DB, a file path,
    /// or an orchestrator's API, http(s)://HOST:PORT (token in
    /// VAJRA_API_TOKEN). `run` and `start --wait` record the test there
    /// (an orchestrator records its cluster's itself) and take its
    /// baseline from there; never part of a test's definition.
    #[arg(long, env = "VAJRA_STORE", help_heading = "History")]
    pub store: Option<String>,
    /// Judge relative thresholds ("p99<+10%", "rate>-5%") against this
    /// recorded run of the same test name: last, last-passed or a run id.
    #[arg(long, env = "VAJRA_BASELINE", help_heading = "History")]
    pub baseline: Option<String>,

    /// Live exporters, this process's own: read from flags, environment
    /// and file like the rest, never carried in a test's definition.
    #[command(flatten)]
    #[serde(skip)]
    pub export: ExportArgs,
}

impl RunArgs {
    /// These settings with every unset one taken from `lower`.
    pub fn over(self, lower: RunArgs) -> RunArgs {
        fn list<T>(upper: Vec<T>, lower: Vec<T>) -> Vec<T> {
            if upper.is_empty() { lower } else { upper }
        }
        RunArgs {
            config: self.config.or(lower.config),
            task: self.task.or(lower.task),
            url: self.url.or(lower.url),
            method: self.method.or(lower.method),
            header: list(self.header, lower.header),
            body: self.body.or(lower.body),
            body_file: self.body_file.or(lower.body_file),
            body_base64: self.body_base64.or(lower.body_base64),
            expect_status: list(self.expect_status, lower.expect_status),
            timeout: self.timeout.or(lower.timeout),
            https_ca: self.https_ca.or(lower.https_ca),
            https_ca_pem: self.https_ca_pem.or(lower.https_ca_pem),
            https_skip_verify: self.https_skip_verify || lower.https_skip_verify,
            http2: self.http2 || lower.http2,
            h2_streams: self.h2_streams.or(lower.h2_streams),
            proto: self.proto.or(lower.proto),
            proto_source: self.proto_source.or(lower.proto_source),
            sleep: self.sleep.or(lower.sleep),
            param: list(self.param, lower.param),
            scenario: self.scenario.or(lower.scenario),
            scenario_source: self.scenario_source.or(lower.scenario_source),
            tps: self.tps.or(lower.tps),
            duration: self.duration.or(lower.duration),
            ramp_up: self.ramp_up.or(lower.ramp_up),
            ramp_down: self.ramp_down.or(lower.ramp_down),
            pattern: self.pattern.or(lower.pattern),
            steps: self.steps.or(lower.steps),
            spike_tps: self.spike_tps.or(lower.spike_tps),
            spike_every: self.spike_every.or(lower.spike_every),
            spike_duration: self.spike_duration.or(lower.spike_duration),
            amplitude: self.amplitude.or(lower.amplitude),
            period: self.period.or(lower.period),
            points: self.points.or(lower.points),
            warmup: self.warmup.or(lower.warmup),
            warmup_tps: self.warmup_tps.or(lower.warmup_tps),
            concurrency: self.concurrency.or(lower.concurrency),
            no_busy_poll: self.no_busy_poll || lower.no_busy_poll,
            max_in_flight: self.max_in_flight.or(lower.max_in_flight),
            preallocate: self.preallocate.or(lower.preallocate),
            on_saturation: self.on_saturation.or(lower.on_saturation),
            dispatch_quantum: self.dispatch_quantum.or(lower.dispatch_quantum),
            threads: self.threads.or(lower.threads),
            thread_strategy: self.thread_strategy.or(lower.thread_strategy),
            blocking_threads: self.blocking_threads.or(lower.blocking_threads),
            drain_timeout: self.drain_timeout.or(lower.drain_timeout),
            threshold: list(self.threshold, lower.threshold),
            abort_on_fail: self.abort_on_fail || lower.abort_on_fail,
            fail_on_unreliable: self.fail_on_unreliable || lower.fail_on_unreliable,
            max_lag: self.max_lag.or(lower.max_lag),
            reliable_lag: self.reliable_lag.or(lower.reliable_lag),
            output: list(self.output, lower.output),
            quiet: self.quiet || lower.quiet,
            test_name: self.test_name.or(lower.test_name),
            store: self.store.or(lower.store),
            baseline: self.baseline.or(lower.baseline),
            export: self.export.over(lower.export),
        }
    }
}
