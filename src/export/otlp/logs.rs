//! Logs: the warnings and errors the process logs while a run exports,
//! as OTLP log records carrying the test's trace and run span and its id.

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::mpsc;

use super::transport::OtlpSender;
use crate::export::ExportError;
use crate::logging::{self, LogLine};
use crate::task::trace::TraceParent;

/// Lines waiting for export before new ones are dropped.
const QUEUE: usize = 1_024;
/// Longest a line waits for its batch.
const BATCH_EVERY: Duration = Duration::from_secs(1);

/// A run's log export: the tap and the task exporting what it catches.
pub struct RunLogs {
    task: tokio::task::JoinHandle<Result<(), ExportError>>,
}

impl RunLogs {
    /// Taps the process's warnings and errors and exports them to `sender`
    /// as records of `resource`, in `parent`'s trace.
    pub fn start(sender: OtlpSender, resource: Resource, parent: TraceParent) -> Self {
        let lines = logging::tap(QUEUE);
        Self {
            task: tokio::spawn(export(sender, resource, parent, lines)),
        }
    }

    /// Ends the tap and exports what is left.
    pub async fn finish(&mut self) -> Result<(), ExportError> {
        logging::untap();
        (&mut self.task)
            .await
            .unwrap_or_else(|e| Err(ExportError::new(format!("the log export ended: {e}"))))
    }
}

/// Logs dropped unfinished (their exporter was abandoned) stop tapping
/// and exporting.
impl Drop for RunLogs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn export(
    sender: OtlpSender,
    resource: Resource,
    parent: TraceParent,
    mut lines: mpsc::Receiver<LogLine>,
) -> Result<(), ExportError> {
    let mut failure = None;
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        let deadline = tokio::time::Instant::now() + BATCH_EVERY;
        loop {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => batch.push(record(line, parent)),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let count = batch.len();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "vajra".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: batch,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        if let Err(e) = sender.logs(request).await {
            failure = Some(ExportError::new(format!(
                "{count} log records not exported: {e}"
            )));
        }
    }
    failure.map_or(Ok(()), Err)
}

fn record(line: LogLine, parent: TraceParent) -> LogRecord {
    let (number, text) = match line.level {
        tracing::Level::ERROR => (SeverityNumber::Error, "ERROR"),
        _ => (SeverityNumber::Warn, "WARN"),
    };
    let time = line
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: number as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(line.message)),
        }),
        attributes: vec![KeyValue {
            key: "code.namespace".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(line.target)),
            }),
            ..KeyValue::default()
        }],
        trace_id: parent.trace_id.to_vec(),
        span_id: parent.span_id.to_vec(),
        ..LogRecord::default()
    }
}
