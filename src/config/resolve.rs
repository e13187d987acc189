//! Turning layered settings into a runnable plan, checking every field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::ConfigError;
use super::args::{PatternKind, RunArgs};
use super::duration::{HumanDuration, parse_duration};
use super::export::{ExportSettings, resolve_export};
use crate::engine::{EngineConfig, LoadModel, Saturation};
use crate::history::baseline::Baseline;
use crate::load::{LoadPattern, LoadProfile, RatePoint, Step, Warmup};
use crate::metrics::cpu::available_cores;
use crate::task::TaskOptions;
use crate::task::grpc::ProtoSource;
use crate::task::http::{CaCertificates, HttpOptions};
use crate::task::scenario::{ScenarioSource, Scenarios};
use crate::threshold::Threshold;

/// Default task when none is named.
pub const DEFAULT_TASK: &str = "http";
/// The task a `--scenario` runs.
pub const SCENARIO_TASK: &str = "scenario";
/// Default open-model limit on executions in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_000;
/// Default time in-flight work may take to finish.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default scheduler lag (p99) above which results are flagged unreliable.
pub const DEFAULT_RELIABLE_LAG: Duration = Duration::from_millis(10);
/// Default latest an arrival may leave after its due time before it is
/// counted as missed instead of sent. A second covers any hiccup of a
/// loaded machine, while a frozen or overloaded generator neither bursts its
/// backlog at the target nor runs past its end by more than this.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(1);
/// Default shortest time between two wake-ups of the arrival scheduler.
/// Waking for every arrival costs about 25 µs of a core on this project's
/// VM (a sleep and a cross-thread wake-up, mostly in the kernel), which
/// capped one core near 27 000 HTTP arrivals/s; batching what falls due
/// within 100 µs more than doubles that for about 40 µs more median lag
/// (docs/benchmarks.md). wrk2 and k6 pace at millisecond granularity.
pub const DEFAULT_DISPATCH_QUANTUM: Duration = Duration::from_micros(100);
/// Largest dispatch quantum: beyond it arrivals would leave in bursts.
pub const MAX_DISPATCH_QUANTUM: Duration = Duration::from_millis(10);

/// A run, fully resolved and validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Which task, with its options.
    pub task: TaskOptions,
    /// How the engine runs it.
    pub engine: EngineConfig,
    /// Async runtime threads.
    pub threads: usize,
    /// Pass/fail criteria.
    pub thresholds: Vec<Threshold>,
    /// Stop as soon as a threshold fails.
    pub abort_on_fail: bool,
    /// Exit non-zero when results are unreliable.
    pub fail_on_unreliable: bool,
    /// Scheduler-lag p99 limit for the self-check.
    pub reliable_lag: Duration,
    /// Report files to write.
    pub outputs: Vec<PathBuf>,
    /// No live progress.
    pub quiet: bool,
    /// Live exporters.
    pub export: ExportSettings,
    /// The test's name in history.
    pub test_name: String,
    /// The history store named (`run` and `start --wait` only).
    pub store: Option<String>,
    /// The recorded run relative thresholds are judged against.
    pub baseline: Option<Baseline>,
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Whether resolving may read the files settings name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Files {
    /// Settings of this machine's user: `--body-file`, `--https-ca` and a
    /// `--points` file are read here.
    Local,
    /// A test's definition from the wire: it must be self-contained, and
    /// nothing in it makes this process read (or even look for) a file.
    Never,
}

/// Resolves merged settings into a run.
pub fn resolve(args: RunArgs) -> Result<RunSettings, ConfigError> {
    resolve_with(args, Files::Local)
}

/// Resolves settings, reading the files they name only if `files` allows.
pub(crate) fn resolve_with(args: RunArgs, files: Files) -> Result<RunSettings, ConfigError> {
    let task = task_options(&args, files)?;
    let load = load_model(&args, files)?;
    let thresholds = args
        .threshold
        .iter()
        .map(|t| t.parse().map_err(|e| invalid("threshold", e)))
        .collect::<Result<Vec<Threshold>, _>>()?;
    let threads = positive("threads", args.threads)?.unwrap_or_else(available_cores);
    for (field, value) in [("outputs", &args.output)] {
        for path in value {
            match path.extension().and_then(|e| e.to_str()) {
                Some("json" | "csv" | "html") => {}
                _ => {
                    return Err(invalid(
                        field,
                        format!("'{}' must end in .json, .csv or .html", path.display()),
                    ));
                }
            }
        }
    }
    check_capacity(&task, &load)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|b| b.parse::<Baseline>().map_err(|e| invalid("baseline", e)))
        .transpose()?;
    if baseline.is_none()
        && let Some(relative) = thresholds.iter().find(|t| t.is_relative())
    {
        return Err(invalid(
            "threshold",
            format!("'{relative}' is relative to a baseline run: give --baseline"),
        ));
    }
    if let Some(store) = &args.store {
        crate::history::store::StoreUrl::parse(store)
            .map_err(|e| invalid("store", e.to_string()))?;
    }
    let test_name = match args.test_name {
        Some(name) if name.trim().is_empty() || name.len() > MAX_TEST_NAME => {
            return Err(invalid(
                "test-name",
                format!("a name of 1 to {MAX_TEST_NAME} characters"),
            ));
        }
        Some(name) => name,
        None => default_test_name(&task),
    };
    Ok(RunSettings {
        task,
        engine: EngineConfig {
            load,
            thread_strategy: args.thread_strategy,
            blocking_threads: positive("blocking-threads", args.blocking_threads)?.unwrap_or(0),
            drain_timeout: drain_timeout(args.drain_timeout)?,
            start_at: None,
            tracing: None,
        },
        threads,
        thresholds,
        abort_on_fail: args.abort_on_fail,
        fail_on_unreliable: args.fail_on_unreliable,
        reliable_lag: args.reliable_lag.map_or(DEFAULT_RELIABLE_LAG, Into::into),
        outputs: args.output,
        quiet: args.quiet,
        export: resolve_export(args.export)?,
        test_name,
        store: args.store,
        baseline,
    })
}

/// Longest test name.
pub const MAX_TEST_NAME: usize = 200;

/// The longest a run may wait for its last calls once the rate curve ends.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// `--drain-timeout`, or the default; at most [`MAX_DRAIN_TIMEOUT`].
fn drain_timeout(given: Option<HumanDuration>) -> Result<Duration, ConfigError> {
    let drain = given.map_or(DEFAULT_DRAIN_TIMEOUT, Into::into);
    if drain > MAX_DRAIN_TIMEOUT {
        return Err(invalid(
            "drain-timeout",
            format!(
                "{drain:?} is longer than the most a run waits for its last calls, {MAX_DRAIN_TIMEOUT:?}"
            ),
        ));
    }
    Ok(drain)
}

/// A test's name when none is given: its task, and for http its URL, for
/// a scenario file its scenarios' names.
fn default_test_name(task: &TaskOptions) -> String {
    if let Some(scenarios) = &task.scenario {
        let names: Vec<&str> = scenarios.list.iter().map(|s| s.name).collect();
        return format!("scenario {}", names.join("+"));
    }
    match (&task.http.url, task.name.as_str()) {
        (Some(url), "http") => format!("http {url}"),
        (_, name) => name.to_owned(),
    }
}

/// Most task instances one run may hold.
pub const MAX_INSTANCES: usize = 1_000_000;
/// File descriptors kept for the process itself besides the http task's
/// connections (runtime, logs, reports, the peer endpoint).
const SPARE_FDS: u64 = 64;

/// Refuses instance counts this machine cannot hold, before anything is
/// built: `--concurrency 100000000` used to sit silently creating
/// instances. An http instance holds a socket, so the file-descriptor limit
/// caps it.
fn check_capacity(task: &TaskOptions, load: &LoadModel) -> Result<(), ConfigError> {
    let (field, wanted) = match load {
        LoadModel::Closed { concurrency, .. } => ("concurrency", *concurrency),
        LoadModel::Open { max_in_flight, .. } => ("max-in-flight", *max_in_flight),
    };
    if wanted > MAX_INSTANCES {
        return Err(invalid(
            field,
            format!("{wanted} task instances is above the limit of {MAX_INSTANCES}"),
        ));
    }
    if task.name == "http" {
        let limit = open_files_limit();
        if wanted as u64 + SPARE_FDS > limit {
            return Err(invalid(
                field,
                format!(
                    "{wanted} http connections need {} file descriptors, but this process may \
                     open {limit} (raise it with `ulimit -n`, or ask for fewer)",
                    wanted as u64 + SPARE_FDS
                ),
            ));
        }
    }
    Ok(())
}

/// How many file descriptors this process may open, after raising its
/// soft limit to the hard one (as Go's runtime does at start: a load
/// generator needs its sockets, and the usual soft limit of 1024 is below
/// the default in-flight limit).
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return u64::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// Reads the file `path` that setting `field` names, if `files` allows.
fn read_local(files: Files, field: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    match files {
        Files::Local => std::fs::read(path)
            .map_err(|e| invalid(field, format!("cannot read '{}': {e}", path.display()))),
        Files::Never => Err(invalid(
            field,
            format!(
                "names a file ('{}'), but a test's definition must carry its contents: \
                 no peer reads a file named by another process",
                path.display()
            ),
        )),
    }
}

fn positive(field: &str, value: Option<usize>) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(0) => Err(invalid(field, "must be at least 1")),
        other => Ok(other),
    }
}

fn task_options(args: &RunArgs, files: Files) -> Result<TaskOptions, ConfigError> {
    let headers = args
        .header
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| invalid("header", format!("'{h}' must look like 'Name: value'")))
        })
        .collect::<Result<_, _>>()?;
    let params = args
        .param
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| invalid("param", format!("'{p}' must look like KEY=VALUE")))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let body = match (&args.body, &args.body_file, &args.body_base64) {
        (Some(text), None, None) => Bytes::from(text.clone()),
        (None, Some(path), None) => Bytes::from(read_local(files, "body-file", path)?),
        (None, None, Some(encoded)) => Bytes::from(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
                .map_err(|e| invalid("body-base64", format!("is not base64: {e}")))?,
        ),
        (None, None, None) => Bytes::new(),
        _ => {
            return Err(invalid(
                "body",
                "give one of body, body-file and body-base64",
            ));
        }
    };
    let tls_ca = match (&args.https_ca, &args.https_ca_pem) {
        (Some(_), Some(_)) => {
            return Err(invalid("https-ca", "give either https-ca or https-ca-pem"));
        }
        (Some(path), None) => Some(CaCertificates {
            origin: path.display().to_string(),
            pem: read_local(files, "https-ca", path)?,
        }),
        (None, Some(pem)) => Some(CaCertificates {
            origin: "the test's https-ca-pem".to_owned(),
            pem: pem.clone().into_bytes(),
        }),
        (None, None) => None,
    };
    let sleep = args
        .sleep
        .as_deref()
        .map(|s| s.parse().map_err(|e| invalid("sleep", e)))
        .transpose()?;
    let scenario = scenario(args, files)?;
    let proto = proto(args, files)?;
    let default_task = if scenario.is_some() {
        SCENARIO_TASK
    } else {
        DEFAULT_TASK
    };
    Ok(TaskOptions {
        name: args.task.clone().unwrap_or_else(|| default_task.to_owned()),
        scenario,
        peer: None,
        http: HttpOptions {
            url: args.url.clone(),
            method: args.method.clone(),
            headers,
            body,
            expect_status: args.expect_status.clone(),
            timeout: args.timeout.map(Into::into),
            tls_ca,
            tls_skip_verify: args.https_skip_verify,
            http2: args.http2,
            h2_streams: args.h2_streams,
        },
        sleep,
        params,
        proto,
    })
}

/// The services of `--proto` (read here if `files` allows) or of a
/// definition's inlined source.
fn proto(args: &RunArgs, files: Files) -> Result<Option<Arc<ProtoSource>>, ConfigError> {
    match (&args.proto, &args.proto_source) {
        (Some(_), Some(_)) => Err(invalid("proto", "give either proto or proto-source")),
        (Some(_), None) if files == Files::Never => Err(invalid(
            "proto",
            "a test's definition carries the services' text, never a file name",
        )),
        (Some(path), None) => ProtoSource::read(path)
            .map(|source| Some(Arc::new(source)))
            .map_err(|e| invalid("proto", e)),
        (None, source) => Ok(source.clone().map(Arc::new)),
    }
}

/// The compiled scenarios of `--scenario` (read here if `files` allows)
/// or of a definition's inlined source; flags only the `http` task uses
/// are refused beside them.
fn scenario(args: &RunArgs, files: Files) -> Result<Option<Arc<Scenarios>>, ConfigError> {
    let source = match (&args.scenario, &args.scenario_source) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "scenario",
                "give either scenario or scenario-source",
            ));
        }
        (Some(path), None) => {
            if files == Files::Never {
                return Err(invalid(
                    "scenario",
                    "a test's definition carries the scenario's text, never a file name",
                ));
            }
            ScenarioSource::read(path).map_err(|e| invalid("scenario", e.to_string()))?
        }
        (None, Some(source)) => source.clone(),
        (None, None) => return Ok(None),
    };
    if args.task.as_deref().is_some_and(|t| t != SCENARIO_TASK) {
        return Err(invalid(
            "scenario",
            format!(
                "runs the scenario task, not '{}'",
                args.task.as_deref().unwrap_or_default()
            ),
        ));
    }
    let http_only = [
        ("url", args.url.is_some()),
        ("method", args.method.is_some()),
        (
            "body",
            args.body.is_some() || args.body_file.is_some() || args.body_base64.is_some(),
        ),
        ("header", !args.header.is_empty()),
        ("expect-status", !args.expect_status.is_empty()),
        ("http2", args.http2),
        ("h2-streams", args.h2_streams.is_some()),
    ];
    if let Some((flag, _)) = http_only.iter().find(|(_, given)| *given) {
        return Err(invalid(
            flag,
            "is not used with a scenario: each request says its own in the file",
        ));
    }
    let compiled = Scenarios::compile(&source).map_err(|e| invalid("scenario", e.to_string()))?;
    Ok(Some(Arc::new(compiled)))
}

/// The pattern the flags ask for, explicit or inferred.
fn pattern_kind(args: &RunArgs) -> Option<PatternKind> {
    args.pattern.or(if args.steps.is_some() {
        Some(PatternKind::Step)
    } else if args.points.is_some() {
        Some(PatternKind::Custom)
    } else if args.amplitude.is_some() || args.period.is_some() {
        Some(PatternKind::Sine)
    } else if args.spike_tps.is_some()
        || args.spike_every.is_some()
        || args.spike_duration.is_some()
    {
        Some(PatternKind::Spike)
    } else if args.ramp_up.is_some() || args.ramp_down.is_some() {
        Some(PatternKind::Ramp)
    } else if args.tps.is_some() {
        Some(PatternKind::Constant)
    } else {
        None
    })
}

/// Refuses flags that the chosen pattern would silently ignore.
fn check_pattern_flags(args: &RunArgs, kind: PatternKind) -> Result<(), ConfigError> {
    use PatternKind::*;
    let flags: [(&str, bool, &[PatternKind]); 9] = [
        ("steps", args.steps.is_some(), &[Step]),
        ("points", args.points.is_some(), &[Custom]),
        ("amplitude", args.amplitude.is_some(), &[Sine]),
        ("period", args.period.is_some(), &[Sine]),
        ("spike-tps", args.spike_tps.is_some(), &[Spike]),
        ("spike-every", args.spike_every.is_some(), &[Spike]),
        ("spike-duration", args.spike_duration.is_some(), &[Spike]),
        ("ramp-up", args.ramp_up.is_some(), &[Ramp, Constant]),
        ("ramp-down", args.ramp_down.is_some(), &[Ramp, Constant]),
    ];
    for (flag, given, allowed) in flags {
        if given && !allowed.contains(&kind) {
            return Err(invalid(
                flag,
                format!("is not used by the {kind:?} pattern").to_lowercase(),
            ));
        }
    }
    if args.tps.is_some() && matches!(kind, Step | Custom) {
        return Err(invalid(
            "tps",
            format!("is not used by the {kind:?} pattern (its rates come from its own flag)")
                .to_lowercase(),
        ));
    }
    Ok(())
}

fn load_model(args: &RunArgs, files: Files) -> Result<LoadModel, ConfigError> {
    let Some(kind) = pattern_kind(args) else {
        return closed_model(args);
    };
    check_pattern_flags(args, kind)?;
    let pattern = build_pattern(args, kind, files)?;
    let profile = LoadProfile {
        warmup: args.warmup.map(|d| Warmup {
            duration: d.0,
            rate: args.warmup_tps,
        }),
        pattern,
    };
    if args.warmup_tps.is_some() && args.warmup.is_none() {
        return Err(invalid("warmup-tps", "needs --warmup"));
    }
    if let Some(rate) = args.warmup_tps {
        check_rate("warmup-tps", rate)?;
    }
    let compiled = profile
        .compile()
        .map_err(|e| invalid(e.pattern, e.problem))?;
    let cores = available_cores();
    let dispatch_quantum = args
        .dispatch_quantum
        .map_or(DEFAULT_DISPATCH_QUANTUM, Into::into);
    if dispatch_quantum > MAX_DISPATCH_QUANTUM {
        return Err(invalid(
            "dispatch-quantum",
            format!(
                "must be at most {} (arrivals would leave in bursts)",
                HumanDuration(MAX_DISPATCH_QUANTUM)
            ),
        ));
    }
    let max_lag: Duration = args.max_lag.map_or(DEFAULT_MAX_LAG, Into::into);
    if max_lag.is_zero() {
        return Err(invalid(
            "max-lag",
            "must be longer than 0s (every arrival would be missed)",
        ));
    }
    if args.no_busy_poll {
        return Err(invalid(
            "no-busy-poll",
            "only applies to the closed model (--concurrency without --tps or a pattern)",
        ));
    }
    Ok(match args.concurrency {
        Some(0) => return Err(invalid("concurrency", "must be at least 1")),
        Some(n) => {
            if args.max_in_flight.is_some() {
                return Err(invalid(
                    "max-in-flight",
                    "conflicts with --concurrency, which already caps in-flight executions",
                ));
            }
            LoadModel::Open {
                profile: compiled,
                preallocate: n,
                max_in_flight: n,
                saturation: args.on_saturation.unwrap_or(Saturation::Wait),
                dispatch_quantum,
                max_lag,
            }
        }
        None => {
            let max =
                positive("max-in-flight", args.max_in_flight)?.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
            LoadModel::Open {
                profile: compiled,
                preallocate: args.preallocate.unwrap_or(2 * cores).clamp(1, max),
                max_in_flight: max,
                saturation: args.on_saturation.unwrap_or(Saturation::Drop),
                dispatch_quantum,
                max_lag,
            }
        }
    })
}

fn closed_model(args: &RunArgs) -> Result<LoadModel, ConfigError> {
    let Some(concurrency) = args.concurrency else {
        return Err(invalid(
            "tps",
            "no load given: set --tps (open model, a target rate) or --concurrency (closed model)",
        ));
    };
    if concurrency == 0 {
        return Err(invalid("concurrency", "must be at least 1"));
    }
    for (flag, given) in [
        ("warmup-tps", args.warmup_tps.is_some()),
        ("max-in-flight", args.max_in_flight.is_some()),
        ("on-saturation", args.on_saturation.is_some()),
        ("preallocate", args.preallocate.is_some()),
        ("dispatch-quantum", args.dispatch_quantum.is_some()),
        ("max-lag", args.max_lag.is_some()),
    ] {
        if given {
            return Err(invalid(
                flag,
                "only applies to a paced run (with --tps or a pattern)",
            ));
        }
    }
    let duration = required_duration(args)?;
    Ok(LoadModel::Closed {
        concurrency,
        warmup: args.warmup.map_or(Duration::ZERO, Into::into),
        duration,
        busy_poll: !args.no_busy_poll,
    })
}

fn required_duration(args: &RunArgs) -> Result<Duration, ConfigError> {
    match args.duration {
        Some(d) if d.0.is_zero() => Err(invalid("duration", "must be longer than 0s")),
        Some(d) => Ok(d.0),
        None => Err(invalid("duration", "is required (e.g. --duration 30s)")),
    }
}

fn check_rate(field: &str, rate: f64) -> Result<f64, ConfigError> {
    if rate > crate::load::curve::MAX_RATE {
        Err(invalid(
            field,
            format!(
                "{rate:e}/s is above the limit of {:e}/s",
                crate::load::curve::MAX_RATE
            ),
        ))
    } else if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(invalid(field, format!("must be a rate >= 0, got {rate}")))
    }
}

fn required_rate(field: &str, rate: Option<f64>, pattern: &str) -> Result<f64, ConfigError> {
    check_rate(
        field,
        rate.ok_or_else(|| invalid(field, format!("is required by the {pattern} pattern")))?,
    )
}

fn required(
    field: &str,
    d: Option<super::duration::HumanDuration>,
    pattern: &str,
) -> Result<Duration, ConfigError> {
    d.map(|d| d.0)
        .ok_or_else(|| invalid(field, format!("is required by the {pattern} pattern")))
}

fn build_pattern(
    args: &RunArgs,
    kind: PatternKind,
    files: Files,
) -> Result<LoadPattern, ConfigError> {
    Ok(match kind {
        PatternKind::Constant if args.ramp_up.is_none() && args.ramp_down.is_none() => {
            LoadPattern::Constant {
                rate: required_rate("tps", args.tps, "constant")?,
                duration: required_duration(args)?,
            }
        }
        PatternKind::Constant | PatternKind::Ramp => LoadPattern::Ramp {
            rate: required_rate("tps", args.tps, "ramp")?,
            up: args.ramp_up.map_or(Duration::ZERO, Into::into),
            down: args.ramp_down.map_or(Duration::ZERO, Into::into),
            duration: required_duration(args)?,
        },
        PatternKind::Step => {
            let text = args
                .steps
                .as_deref()
                .ok_or_else(|| invalid("steps", "is required by the step pattern"))?;
            let steps = parse_steps(text)?;
            if let Some(d) = args.duration {
                let total: Duration = steps.iter().map(|s| s.duration).sum();
                if d.0 != total {
                    return Err(invalid(
                        "duration",
                        format!(
                            "is {d} but the steps add up to {}",
                            super::duration::HumanDuration(total)
                        ),
                    ));
                }
            }
            LoadPattern::Steps(steps)
        }
        PatternKind::Spike => LoadPattern::Spike {
            base: required_rate("tps", args.tps, "spike")?,
            spike: required_rate("spike-tps", args.spike_tps, "spike")?,
            every: required("spike-every", args.spike_every, "spike")?,
            spike_for: required("spike-duration", args.spike_duration, "spike")?,
            duration: required_duration(args)?,
        },
        PatternKind::Sine => LoadPattern::Sine {
            mean: required_rate("tps", args.tps, "sine")?,
            amplitude: required_rate("amplitude", args.amplitude, "sine")?,
            period: required("period", args.period, "sine")?,
            duration: required_duration(args)?,
        },
        PatternKind::Custom => {
            let spec = args
                .points
                .as_deref()
                .ok_or_else(|| invalid("points", "is required by the custom pattern"))?;
            let points = match files {
                Files::Local => parse_points(spec)?,
                Files::Never => parse_inline_points(spec)?,
            };
            if let Some(d) = args.duration {
                let last = points.last().map_or(0.0, |p| p.at);
                if (d.0.as_secs_f64() - last).abs() > 1e-9 {
                    return Err(invalid(
                        "duration",
                        format!("is {d} but the last point is at {last}s"),
                    ));
                }
            }
            LoadPattern::Points(points)
        }
    })
}

/// Parses `50:10s,150:10s`.
pub fn parse_steps(text: &str) -> Result<Vec<Step>, ConfigError> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (rate, duration) = item.split_once(':').ok_or_else(|| {
                invalid(
                    "steps",
                    format!("'{item}' must look like RATE:DURATION, e.g. 100:30s"),
                )
            })?;
            let rate = rate
                .trim()
                .parse::<f64>()
                .map_err(|_| invalid("steps", format!("'{rate}' in '{item}' is not a rate")))?;
            let duration = parse_duration(duration)
                .map_err(|e| invalid("steps", format!("in '{item}': {e}")))?;
            Ok(Step { rate, duration })
        })
        .collect()
}

/// Parses custom points: a file of `TIME,RATE` lines if `spec` names one,
/// else inline `TIME:RATE,...`. TIME is a duration (`10s`) or plain seconds.
pub fn parse_points(spec: &str) -> Result<Vec<RatePoint>, ConfigError> {
    let path = std::path::Path::new(spec);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("points", format!("cannot read '{spec}': {e}")))?;
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(n, line)| {
                parse_point(line, [',', ':', ' ', '\t'])
                    .map_err(|e| invalid("points", format!("{spec} line {}: {e}", n + 1)))
            })
            .collect();
    }
    if !spec.contains(':') {
        return Err(invalid(
            "points",
            format!("'{spec}' is neither a file nor inline TIME:RATE,... points"),
        ));
    }
    parse_inline_points(spec)
}

/// Parses inline `TIME:RATE,...` points, never taking `spec` for a file.
pub fn parse_inline_points(spec: &str) -> Result<Vec<RatePoint>, ConfigError> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| parse_point(item, [':', ':', ':', ':']).map_err(|e| invalid("points", e)))
        .collect()
}

fn parse_point(item: &str, separators: [char; 4]) -> Result<RatePoint, String> {
    let (time, rate) = item
        .trim()
        .split_once(separators)
        .ok_or_else(|| format!("'{}' must look like TIME,RATE", item.trim()))?;
    let at = match time.trim().parse::<f64>() {
        Ok(secs) => secs,
        Err(_) => parse_duration(time)?.as_secs_f64(),
    };
    let rate = rate
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("'{}' is not a rate", rate.trim()))?;
    Ok(RatePoint { at, rate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse_toml;

    fn resolve_toml(text: &str) -> Result<RunSettings, ConfigError> {
        resolve(parse_toml(text).unwrap())
    }

    #[test]
    fn tps_and_ramp_make_a_ramp() {
        let s = resolve_toml("tps = 100\nduration = \"10s\"\nramp-up = \"2s\"").unwrap();
        let LoadModel::Open {
            profile,
            saturation,
            ..
        } = s.engine.load
        else {
            panic!()
        };
        assert!((profile.curve.total() - (100.0 + 800.0)).abs() < 1e-9);
        assert_eq!(saturation, Saturation::Drop);
    }

    #[test]
    fn concurrency_with_tps_caps_and_queues() {
        let s = resolve_toml("tps = 100\nduration = \"1s\"\nconcurrency = 4").unwrap();
        let LoadModel::Open {
            max_in_flight,
            saturation,
            ..
        } = s.engine.load
        else {
            panic!()
        };
        assert_eq!((max_in_flight, saturation), (4, Saturation::Wait));
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("duration = \"1s\"", "tps"),
            ("tps = 10", "duration"),
            ("tps = -5\nduration = \"1s\"", "tps"),
            ("steps = \"50:1s,oops\"", "steps"),
            ("steps = \"50:1s\"\namplitude = 3.0", "amplitude"),
            (
                "tps = 10\nduration = \"1s\"\nthreshold = [\"p99<<1\"]",
                "threshold",
            ),
            (
                "tps = 10\nduration = \"1s\"\nconcurrency = 0",
                "concurrency",
            ),
            (
                "tps = 10\nduration = \"1s\"\ndrain-timeout = \"2h\"",
                "drain-timeout",
            ),
            (
                "concurrency = 2\nduration = \"1s\"\nmax-in-flight = 3",
                "max-in-flight",
            ),
            (
                "concurrency = 2\nduration = \"1s\"\ndispatch-quantum = \"50us\"",
                "dispatch-quantum",
            ),
            (
                "tps = 10\nduration = \"1s\"\ndispatch-quantum = \"20ms\"",
                "dispatch-quantum",
            ),
            (
                "concurrency = 2\nduration = \"1s\"\nmax-lag = \"2s\"",
                "max-lag",
            ),
            ("tps = 10\nduration = \"1s\"\nmax-lag = \"0s\"", "max-lag"),
            (
                "tps = 10\nduration = \"1s\"\noutput = [\"r.txt\"]",
                "outputs",
            ),
            (
                "tps = 10\namplitude = 20.0\nperiod = \"1s\"\nduration = \"2s\"",
                "sine",
            ),
            (
                "header = [\"novalue\"]\ntps = 1\nduration = \"1s\"",
                "header",
            ),
        ] {
            let e = resolve_toml(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?} gave {e}");
        }
    }

    #[test]
    fn inline_points_and_steps_parse() {
        let p = parse_points("0s:0,10s:1000").unwrap();
        assert_eq!(
            p[1],
            RatePoint {
                at: 10.0,
                rate: 1000.0
            }
        );
        let s = parse_steps("50:10s,150:10s").unwrap();
        assert_eq!(s.len(), 2);
        assert!(parse_points("nonsense").is_err());
    }
}
