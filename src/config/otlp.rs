//! OTLP settings: flags over OpenTelemetry's standard `OTEL_*` variables
//! over the specification's defaults.
//!
//! The variables are the ones every OpenTelemetry SDK reads
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._PROTOCOL`, `..._HEADERS`,
//! `..._TIMEOUT`, their per-signal forms, `OTEL_METRIC_EXPORT_INTERVAL`,
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`), so a collector already
//! set up for other services is pointed at the same way.

use std::time::Duration;

use super::ConfigError;
use super::export::ExportArgs;

/// How OTLP is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// gRPC (port 4317 by default).
    Grpc,
    /// Protobuf over HTTP POST (port 4318 by default).
    HttpProtobuf,
}

/// Whether exported sums and histograms start at the run's start or at the
/// last export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Since the start (what Prometheus-like backends want).
    Cumulative,
    /// Since the last successful export.
    Delta,
}

/// One signal's OTLP destination.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpEndpoint {
    /// The full URL: for HTTP, with the signal's path (`/v1/metrics`).
    pub url: String,
    /// The protocol to speak to it.
    pub protocol: OtlpProtocol,
}

/// OTLP settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// Where metrics go.
    pub metrics: OtlpEndpoint,
    /// Where traces go.
    pub traces: OtlpEndpoint,
    /// Where logs go.
    pub logs: OtlpEndpoint,
    /// Headers sent with every export (authentication, tenancy).
    pub headers: Vec<(String, String)>,
    /// Longest one export may take.
    pub timeout: Duration,
    /// Time between two metric exports.
    pub interval: Duration,
    /// Temporality of sums and histograms.
    pub temporality: Temporality,
    /// `service.name` of the resource.
    pub service_name: String,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Share of executions traced, 0 to 1.
    pub trace_sample_ratio: f64,
    /// Whether spans are exported (`OTEL_TRACES_EXPORTER=none` turns them
    /// off, for a collector with no traces pipeline).
    pub traces_enabled: bool,
    /// Whether the process's warnings and errors are exported
    /// (`OTEL_LOGS_EXPORTER=none` turns them off).
    pub logs_enabled: bool,
}

/// Default time between metric exports: often enough to watch a test live,
/// and cumulative figures lose nothing between two.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The specification's default export timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Resolves the OTLP settings of `args`, reading `OTEL_*` variables
/// through `env` for what no flag gives.
pub fn resolve_otlp(
    args: &ExportArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OtlpSettings, ConfigError> {
    let protocol_text = args
        .otlp_protocol
        .clone()
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let protocol = match protocol_text.as_deref().map(str::trim) {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            return Err(invalid(
                "otlp-protocol",
                format!("'{other}' is not grpc or http/protobuf (http/json is not supported)"),
            ));
        }
    };
    let base = args
        .otlp_endpoint
        .clone()
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let endpoint = |signal: &str, path: &str| -> Result<OtlpEndpoint, ConfigError> {
        let specific = env(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"));
        let url = match (protocol, specific, &base) {
            // A flag beats every variable.
            (OtlpProtocol::HttpProtobuf, _, Some(base)) if args.otlp_endpoint.is_some() => {
                format!("{}/{path}", base.trim_end_matches('/'))
            }
            (OtlpProtocol::Grpc, _, Some(base)) if args.otlp_endpoint.is_some() => base.clone(),
            // A signal's own endpoint variable is used as given.
            (_, Some(url), _) => url,
            (OtlpProtocol::HttpProtobuf, None, Some(base)) => {
                format!("{}/{path}", base.trim_end_matches('/'))
            }
            (OtlpProtocol::Grpc, None, Some(base)) => base.clone(),
            (OtlpProtocol::HttpProtobuf, None, None) => format!("http://localhost:4318/{path}"),
            (OtlpProtocol::Grpc, None, None) => "http://localhost:4317".to_owned(),
        };
        check_url(&url)?;
        Ok(OtlpEndpoint { url, protocol })
    };
    let headers = match (&args.otlp_header[..], env("OTEL_EXPORTER_OTLP_HEADERS")) {
        ([], Some(list)) => parse_pairs("otlp-header", &list)?,
        (given, _) => parse_pairs("otlp-header", &given.join(","))?,
    };
    let timeout = match (args.otlp_timeout, env("OTEL_EXPORTER_OTLP_TIMEOUT")) {
        (Some(t), _) => t.0,
        (None, Some(ms)) => millis("OTEL_EXPORTER_OTLP_TIMEOUT", &ms)?,
        (None, None) => DEFAULT_TIMEOUT,
    };
    let interval = match (args.otlp_interval, env("OTEL_METRIC_EXPORT_INTERVAL")) {
        (Some(t), _) => t.0,
        (None, Some(ms)) => millis("OTEL_METRIC_EXPORT_INTERVAL", &ms)?,
        (None, None) => DEFAULT_INTERVAL,
    };
    if interval < Duration::from_secs(1) {
        return Err(invalid(
            "otlp-interval",
            "must be at least 1s (windows close once a second)",
        ));
    }
    let temporality = match env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("cumulative") => Temporality::Cumulative,
        Some("delta") => Temporality::Delta,
        Some(other) => {
            return Err(invalid(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                format!("'{other}' is not cumulative or delta"),
            ));
        }
    };
    let ratio = args.trace_sample_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(invalid("trace-sample-ratio", "must be between 0 and 1"));
    }
    let mut resource = match env("OTEL_RESOURCE_ATTRIBUTES") {
        Some(list) => parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &list)?,
        None => Vec::new(),
    };
    // service.name is OTEL_SERVICE_NAME, else the attribute, else vajra.
    let named = resource
        .iter()
        .position(|(key, _)| key == "service.name")
        .map(|at| resource.remove(at).1);
    let service_name = env("OTEL_SERVICE_NAME")
        .or(named)
        .unwrap_or_else(|| "vajra".to_owned());
    Ok(OtlpSettings {
        metrics: endpoint("METRICS", "v1/metrics")?,
        traces: endpoint("TRACES", "v1/traces")?,
        logs: endpoint("LOGS", "v1/logs")?,
        headers,
        timeout,
        interval,
        temporality,
        service_name,
        resource,
        trace_sample_ratio: ratio,
        traces_enabled: env("OTEL_TRACES_EXPORTER").is_none_or(|e| e.trim() != "none"),
        logs_enabled: env("OTEL_LOGS_EXPORTER").is_none_or(|e| e.trim() != "none"),
    })
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.parse::<hyper::Uri>().is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "otlp-endpoint",
            format!("'{url}' is not an http:// or https:// URL"),
        ))
    }
}

/// `k=v,k2=v2`, values percent-decoded (the specification's W3C baggage
/// form).
fn parse_pairs(field: &str, list: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| invalid(field, format!("'{item}' is not KEY=VALUE")))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid(field, format!("'{item}' has an empty key")));
        }
        pairs.push((key.to_owned(), percent_decode(value.trim())));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn millis(field: &str, text: &str) -> Result<Duration, ConfigError> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| invalid(field, format!("'{text}' is not a number of milliseconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_specification_defaults_and_variables_apply() {
        let defaults = resolve_otlp(&ExportArgs::default(), &env_of(&[])).unwrap();
        assert_eq!(defaults.metrics.url, "http://localhost:4318/v1/metrics");
        assert_eq!(defaults.metrics.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(defaults.timeout, DEFAULT_TIMEOUT);
        assert_eq!(defaults.service_name, "vajra");
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=se%20cret, tenant=a"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
        ]);
        let set = resolve_otlp(&ExportArgs::default(), &env).unwrap();
        assert_eq!(set.metrics.url, "https://collector:4317");
        assert_eq!(set.traces.url, "http://traces:4317");
        assert_eq!(set.metrics.protocol, OtlpProtocol::Grpc);
        assert_eq!(set.headers[0], ("api-key".into(), "se cret".into()));
        assert_eq!(set.timeout, Duration::from_millis(2500));
        assert_eq!(set.interval, Duration::from_secs(1));
        assert_eq!(set.temporality, Temporality::Delta);
        assert_eq!(set.resource[0].0, "deployment.environment");
        // A flag beats the variable.
        let flagged = ExportArgs {
            otlp_endpoint: Some("http://other:4318".into()),
            otlp_protocol: Some("http/protobuf".into()),
            ..ExportArgs::default()
        };
        let set = resolve_otlp(&flagged, &env).unwrap();
        assert_eq!(set.metrics.url, "http://other:4318/v1/metrics");
        assert_eq!(
            set.traces.url, "http://other:4318/v1/traces",
            "even the signal's own variable"
        );
        let named = resolve_otlp(
            &ExportArgs::default(),
            &env_of(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=shop-load,team=perf",
            )]),
        )
        .unwrap();
        assert_eq!(named.service_name, "shop-load");
        assert_eq!(
            named.resource,
            vec![("team".to_string(), "perf".to_string())]
        );
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        type Case<'a> = (ExportArgs, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                ExportArgs {
                    otlp_protocol: Some("http/json".into()),
                    ..ExportArgs::default()
                },
                &[],
                "otlp-protocol",
            ),
            (
                ExportArgs {
                    otlp_endpoint: Some("collector:4317".into()),
                    ..ExportArgs::default()
                },
                &[],
                "otlp-endpoint",
            ),
            (
                ExportArgs::default(),
                &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                ExportArgs {
                    otlp_header: vec!["novalue".into()],
                    ..ExportArgs::default()
                },
                &[],
                "otlp-header",
            ),
            (
                ExportArgs {
                    trace_sample_ratio: Some(1.5),
                    ..ExportArgs::default()
                },
                &[],
                "trace-sample-ratio",
            ),
        ];
        for (args, vars, field) in cases {
            let e = resolve_otlp(args, &env_of(vars)).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }
}
