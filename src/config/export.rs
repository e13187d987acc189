//! Export settings: which live exporters a process runs, and theirs.
//!
//! They belong to the process, never to a test: `run` reads them with its
//! other settings (flags, `VAJRA_*`, its file), a peer from `join`'s flags
//! and environment, and a test's definition never carries them, so nothing
//! from the wire makes a peer send its figures somewhere or read a token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::duration::HumanDuration;
use super::otlp::{OtlpSettings, resolve_otlp};
use crate::export::blazemeter::client::Account;
use crate::export::blazemeter::{BLAZEMETER, BlazeMeterSettings};
use crate::export::otlp::OTLP;
use crate::export::pipeline::{DEFAULT_FLUSH_TIMEOUT, DEFAULT_QUEUE};

/// The exporter `--metrics-listen` serves.
pub const PROMETHEUS: &str = "prometheus";
/// Where `--export prometheus` listens without `--metrics-listen`: the
/// port OpenTelemetry's Prometheus exporters use, on loopback.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Longest a label key or value may be.
const MAX_LABEL_LEN: usize = 128;

/// Every export setting, as flags, `VAJRA_*` variables and file keys.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ExportArgs {
    /// Live exporter to feed: otlp, prometheus, blazemeter, or one your
    /// binary registered (repeatable, or comma-separated).
    #[arg(
        long = "export",
        alias = "exports",
        env = "VAJRA_EXPORT",
        value_delimiter = ',',
        value_name = "NAME",
        help_heading = "Export"
    )]
    #[serde(alias = "exports")]
    pub export: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (implies --export
    /// prometheus).
    #[arg(
        long,
        env = "VAJRA_METRICS_LISTEN",
        value_name = "ADDR",
        help_heading = "Export"
    )]
    pub metrics_listen: Option<SocketAddr>,
    /// Label of the run in what exporters send, KEY=VALUE (repeatable).
    #[arg(
        long = "label",
        alias = "labels",
        value_name = "KEY=VALUE",
        help_heading = "Export"
    )]
    #[serde(alias = "labels")]
    pub label: Vec<String>,
    /// Windows an exporter may fall behind by before newer ones are not
    /// delivered to it [default: 120].
    #[arg(long, value_name = "WINDOWS", help_heading = "Export")]
    pub export_queue: Option<usize>,
    /// Time exporters get at the end to deliver what they hold [default: 10s].
    #[arg(long, env = "VAJRA_EXPORT_FLUSH_TIMEOUT", help_heading = "Export")]
    pub export_flush_timeout: Option<HumanDuration>,

    /// OTLP: the collector's URL [default: OTEL_EXPORTER_OTLP_ENDPOINT, or
    /// http://localhost:4318 (gRPC: 4317)].
    #[arg(long, value_name = "URL", help_heading = "Export")]
    pub otlp_endpoint: Option<String>,
    /// OTLP: grpc or http/protobuf [default: OTEL_EXPORTER_OTLP_PROTOCOL,
    /// or http/protobuf].
    #[arg(long, value_name = "PROTOCOL", help_heading = "Export")]
    pub otlp_protocol: Option<String>,
    /// OTLP: a header sent with every export, KEY=VALUE (repeatable)
    /// [default: OTEL_EXPORTER_OTLP_HEADERS].
    #[arg(
        long = "otlp-header",
        alias = "otlp-headers",
        value_name = "KEY=VALUE",
        help_heading = "Export"
    )]
    #[serde(alias = "otlp-headers")]
    pub otlp_header: Vec<String>,
    /// OTLP: longest one export may take [default: OTEL_EXPORTER_OTLP_TIMEOUT, or 10s].
    #[arg(long, help_heading = "Export")]
    pub otlp_timeout: Option<HumanDuration>,
    /// OTLP: time between metric exports [default: OTEL_METRIC_EXPORT_INTERVAL, or 5s].
    #[arg(long, help_heading = "Export")]
    pub otlp_interval: Option<HumanDuration>,
    /// OTLP: share of executions traced, 0 to 1 [default: 0].
    #[arg(long, env = "VAJRA_TRACE_SAMPLE_RATIO", help_heading = "Export")]
    pub trace_sample_ratio: Option<f64>,

    /// BlazeMeter: a file holding the API key (or id:secret)
    /// [default: the BLAZEMETER_API_KEY variable].
    #[arg(
        long,
        env = "VAJRA_BLAZEMETER_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "Export"
    )]
    pub blazemeter_token_file: Option<PathBuf>,
    /// BlazeMeter: the API's base URL [default: `https://a.blazemeter.com`].
    #[arg(
        long,
        env = "VAJRA_BLAZEMETER_API",
        value_name = "URL",
        help_heading = "Export"
    )]
    pub blazemeter_api: Option<String>,
    /// BlazeMeter: the data host's base URL [default: `https://data.blazemeter.com`].
    #[arg(
        long,
        env = "VAJRA_BLAZEMETER_DATA",
        value_name = "URL",
        help_heading = "Export"
    )]
    pub blazemeter_data: Option<String>,
    /// BlazeMeter: the external test to report into, created if missing
    /// [default: "Vajra test"].
    #[arg(long, value_name = "NAME", help_heading = "Export")]
    pub blazemeter_test: Option<String>,
    /// BlazeMeter: the project of that test [default: the user's default project].
    #[arg(long, value_name = "NAME", help_heading = "Export")]
    pub blazemeter_project: Option<String>,
    /// BlazeMeter: time between two submissions [default: 30s].
    #[arg(long, help_heading = "Export")]
    pub blazemeter_interval: Option<HumanDuration>,
}

impl ExportArgs {
    /// These settings with every unset one taken from `lower`.
    pub fn over(self, lower: ExportArgs) -> ExportArgs {
        fn list<T>(upper: Vec<T>, lower: Vec<T>) -> Vec<T> {
            if upper.is_empty() { lower } else { upper }
        }
        ExportArgs {
            export: list(self.export, lower.export),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            label: list(self.label, lower.label),
            export_queue: self.export_queue.or(lower.export_queue),
            export_flush_timeout: self.export_flush_timeout.or(lower.export_flush_timeout),
            otlp_endpoint: self.otlp_endpoint.or(lower.otlp_endpoint),
            otlp_protocol: self.otlp_protocol.or(lower.otlp_protocol),
            otlp_header: list(self.otlp_header, lower.otlp_header),
            otlp_timeout: self.otlp_timeout.or(lower.otlp_timeout),
            otlp_interval: self.otlp_interval.or(lower.otlp_interval),
            trace_sample_ratio: self.trace_sample_ratio.or(lower.trace_sample_ratio),
            blazemeter_token_file: self.blazemeter_token_file.or(lower.blazemeter_token_file),
            blazemeter_api: self.blazemeter_api.or(lower.blazemeter_api),
            blazemeter_data: self.blazemeter_data.or(lower.blazemeter_data),
            blazemeter_test: self.blazemeter_test.or(lower.blazemeter_test),
            blazemeter_project: self.blazemeter_project.or(lower.blazemeter_project),
            blazemeter_interval: self.blazemeter_interval.or(lower.blazemeter_interval),
        }
    }

    /// Whether no export setting is given.
    pub fn is_empty(&self) -> bool {
        *self == ExportArgs::default()
    }
}

/// Export settings, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// Exporters to run, by name, each once, in the order given.
    pub exporters: Vec<String>,
    /// Where the Prometheus endpoint listens, if it runs.
    pub metrics_listen: Option<SocketAddr>,
    /// The run's labels.
    pub labels: BTreeMap<String, String>,
    /// Windows an exporter may fall behind by.
    pub queue: usize,
    /// Time exporters get at the end.
    pub flush_timeout: Duration,
    /// OTLP's settings.
    pub otlp: OtlpSettings,
    /// BlazeMeter's settings, when it is among the exporters.
    pub blazemeter: Option<BlazeMeterSettings>,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            exporters: Vec::new(),
            metrics_listen: None,
            labels: BTreeMap::new(),
            queue: DEFAULT_QUEUE,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            otlp: resolve_otlp(&ExportArgs::default(), &|_| None).expect("the defaults resolve"),
            blazemeter: None,
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Checks `args` into settings, reading the `OTEL_*` variables of this
/// process. Exporter names are checked later, against the registry of the
/// binary that runs them.
pub fn resolve_export(args: ExportArgs) -> Result<ExportSettings, ConfigError> {
    resolve_export_with(args, &|key| std::env::var(key).ok())
}

/// [`resolve_export`], with the environment read through `env`.
pub fn resolve_export_with(
    args: ExportArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExportSettings, ConfigError> {
    // Each exporter's settings (and the variables they read) are checked
    // only when it runs: a stray OTEL_* variable stops no other run.
    let otlp = if args.export.iter().any(|e| e.trim() == OTLP) {
        resolve_otlp(&args, env)?
    } else {
        resolve_otlp(&ExportArgs::default(), &|_| None).expect("the defaults resolve")
    };
    let blazemeter = if args.export.iter().any(|e| e.trim() == BLAZEMETER) {
        Some(resolve_blazemeter(&args, env)?)
    } else {
        None
    };
    let mut exporters: Vec<String> = Vec::new();
    for name in args.export.iter().map(|n| n.trim()) {
        if name.is_empty() {
            return Err(invalid("export", "an empty exporter name"));
        }
        if !exporters.iter().any(|e| e == name) {
            exporters.push(name.to_owned());
        }
    }
    let mut metrics_listen = args.metrics_listen;
    if metrics_listen.is_some() && !exporters.iter().any(|e| e == PROMETHEUS) {
        exporters.push(PROMETHEUS.to_owned());
    }
    if metrics_listen.is_none() && exporters.iter().any(|e| e == PROMETHEUS) {
        metrics_listen = Some(DEFAULT_METRICS_LISTEN.parse().expect("literal address"));
    }
    let mut labels = BTreeMap::new();
    for label in &args.label {
        let (key, value) = parse_label(label)?;
        labels.insert(key, value);
    }
    let queue = args.export_queue.unwrap_or(DEFAULT_QUEUE);
    if queue == 0 {
        return Err(invalid("export-queue", "must be at least 1"));
    }
    Ok(ExportSettings {
        exporters,
        metrics_listen,
        labels,
        queue,
        flush_timeout: args
            .export_flush_timeout
            .map_or(DEFAULT_FLUSH_TIMEOUT, Into::into),
        otlp,
        blazemeter,
    })
}

/// BlazeMeter's settings: its key read from the file named (this
/// machine's own setting) or the `BLAZEMETER_API_KEY` variable.
fn resolve_blazemeter(
    args: &ExportArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BlazeMeterSettings, ConfigError> {
    let token = match (&args.blazemeter_token_file, env("BLAZEMETER_API_KEY")) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| {
                invalid(
                    "blazemeter-token-file",
                    format!("cannot read '{}': {e}", path.display()),
                )
            })?
            .trim()
            .to_owned(),
        (None, Some(key)) => key.trim().to_owned(),
        (None, None) => {
            return Err(invalid(
                "blazemeter-token-file",
                "the blazemeter exporter needs an API key: --blazemeter-token-file FILE or BLAZEMETER_API_KEY",
            ));
        }
    };
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(invalid(
            "blazemeter-token-file",
            "the API key is empty or has spaces in it",
        ));
    }
    let url = |field: &str, given: &Option<String>, default: &str| {
        let url = given.clone().unwrap_or_else(|| default.to_owned());
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(url)
        } else {
            Err(invalid(
                field,
                format!("'{url}' is not an http:// or https:// URL"),
            ))
        }
    };
    let interval = args
        .blazemeter_interval
        .map_or(Duration::from_secs(30), Into::into);
    if interval < Duration::from_secs(1) {
        return Err(invalid("blazemeter-interval", "must be at least 1s"));
    }
    Ok(BlazeMeterSettings {
        account: Account {
            api: url(
                "blazemeter-api",
                &args.blazemeter_api,
                "https://a.blazemeter.com",
            )?,
            data: url(
                "blazemeter-data",
                &args.blazemeter_data,
                "https://data.blazemeter.com",
            )?,
            token,
        },
        test: args
            .blazemeter_test
            .clone()
            .unwrap_or_else(|| "Vajra test".to_owned()),
        project: args.blazemeter_project.clone(),
        interval,
    })
}

/// A `KEY=VALUE` label: the key a name a metrics backend accepts
/// (letters, digits, `_`; not starting with a digit), both bounded.
fn parse_label(label: &str) -> Result<(String, String), ConfigError> {
    let (key, value) = label
        .split_once('=')
        .ok_or_else(|| invalid("label", format!("'{label}' is not KEY=VALUE")))?;
    let key = key.trim();
    let valid_key = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key {
        return Err(invalid(
            "label",
            format!("key '{key}' must be letters, digits and _, not starting with a digit"),
        ));
    }
    if key.len() > MAX_LABEL_LEN || value.len() > MAX_LABEL_LEN {
        return Err(invalid(
            "label",
            format!("'{label}' is longer than {MAX_LABEL_LEN} characters a side"),
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_implies_prometheus_and_prometheus_gets_an_address() {
        let listen = resolve_export(ExportArgs {
            metrics_listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..ExportArgs::default()
        })
        .unwrap();
        assert_eq!(listen.exporters, vec![PROMETHEUS]);
        let named = resolve_export(ExportArgs {
            export: vec!["prometheus".into(), "otlp".into(), "prometheus".into()],
            ..ExportArgs::default()
        })
        .unwrap();
        assert_eq!(named.exporters, vec!["prometheus", "otlp"]);
        assert_eq!(named.metrics_listen.unwrap().port(), 9464);
    }

    #[test]
    fn bad_labels_and_queues_are_named() {
        for label in ["noequals", "1st=x", "a-b=c", "=v"] {
            let e = resolve_export(ExportArgs {
                label: vec![label.into()],
                ..ExportArgs::default()
            })
            .unwrap_err();
            assert!(e.to_string().contains("label"), "{label}: {e}");
        }
        let ok = resolve_export(ExportArgs {
            label: vec!["env=staging".into(), "build=1.2=3".into()],
            ..ExportArgs::default()
        })
        .unwrap();
        assert_eq!(ok.labels["build"], "1.2=3");
        let e = resolve_export(ExportArgs {
            export_queue: Some(0),
            ..ExportArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("export-queue"));
    }
}
