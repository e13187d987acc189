//! OpenTelemetry: a run's figures as OTLP metrics, over gRPC or HTTP.
//!
//! - [`exponential`]: HDR histograms as base-2 exponential histograms.
//! - [`metrics`]: the run's running totals and the request they export.
//! - [`traces`]: the run's spans, through opentelemetry-otlp.
//! - [`logs`]: the process's warnings and errors while the run exports.
//! - [`transport`]: gRPC and HTTP/protobuf to the collector.
//!
//! Metrics are built from the engine's own windows rather than through the
//! OpenTelemetry SDK's instruments: those take one value per call, and the
//! windows already hold exact histograms of every execution; converting
//! them costs a few hundred buckets per export, whatever the rate.

pub mod exponential;
pub mod logs;
pub mod metrics;
pub mod traces;
pub mod transport;

use std::time::Instant;

use async_trait::async_trait;

use crate::config::ExportSettings;
use crate::engine::trace::Tracing;
use crate::export::{ExportError, ExportWindow, Exporter, Report, RunInfo};
use logs::RunLogs;
use metrics::RunMetrics;
use traces::RunTraces;
use transport::OtlpSender;

/// The name `--export` gives it.
pub const OTLP: &str = "otlp";

/// One run's OTLP exporter.
pub struct OtlpExporter {
    settings: crate::config::otlp::OtlpSettings,
    sender: OtlpSender,
    metrics: Option<RunMetrics>,
    last_export: Instant,
    traces: Option<RunTraces>,
    logs: Option<RunLogs>,
    /// Windows folded in since the last successful export.
    unexported: u64,
}

impl OtlpExporter {
    /// An exporter with `settings`' OTLP settings.
    pub fn new(settings: &ExportSettings) -> anyhow::Result<Self> {
        let otlp = settings.otlp.clone();
        let sender = OtlpSender::new(&otlp.metrics, &otlp.headers, otlp.timeout)?;
        Ok(Self {
            settings: otlp,
            sender,
            metrics: None,
            last_export: Instant::now(),
            traces: None,
            logs: None,
            unexported: 0,
        })
    }

    /// Exports everything folded in so far.
    async fn export(&mut self) -> Result<(), ExportError> {
        let Some(metrics) = self.metrics.as_mut() else {
            return Ok(());
        };
        self.last_export = Instant::now();
        self.sender.metrics(metrics.request()).await?;
        metrics.exported();
        self.unexported = 0;
        Ok(())
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    fn tracing(&mut self, run: &RunInfo) -> anyhow::Result<Option<Tracing>> {
        if !self.settings.traces_enabled {
            return Ok(None);
        }
        let traces = RunTraces::start(run, &self.settings)?;
        let tracing = traces.tracing();
        self.traces = Some(traces);
        Ok(tracing)
    }

    async fn start(&mut self, run: &RunInfo) -> Result<(), ExportError> {
        self.metrics = Some(RunMetrics::new(run, &self.settings));
        if self.settings.logs_enabled {
            let otlp = &self.settings;
            let sender = OtlpSender::new(&otlp.logs, &otlp.headers, otlp.timeout)?;
            let resource = metrics::resource_of(run, otlp);
            self.logs = Some(RunLogs::start(sender, resource, traces::run_parent(run)));
        }
        Ok(())
    }

    async fn window(&mut self, window: &ExportWindow) -> Result<(), ExportError> {
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.fold(window);
            self.unexported += 1;
        }
        if self.last_export.elapsed() >= self.settings.interval {
            // Nothing is lost yet: the next export carries these figures
            // (cumulative totals, or delta totals kept until one succeeds).
            self.export().await.map_err(|e| e.losing(0))?;
        }
        Ok(())
    }

    async fn finish(&mut self, report: &Report) -> Result<(), ExportError> {
        let unexported = self.unexported;
        let metrics = self.export().await;
        let traces = match self.traces.take() {
            Some(mut traces) => traces.finish(report.abort_reason.clone()).await,
            None => Ok(()),
        };
        let logs = match self.logs.take() {
            Some(mut logs) => logs.finish().await,
            None => Ok(()),
        };
        let metrics_failed = metrics.is_err();
        let failures: Vec<String> = [("metrics", metrics), ("traces", traces), ("logs", logs)]
            .into_iter()
            .filter_map(|(signal, result)| result.err().map(|e| format!("{signal}: {e}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            // A failed final export loses what no export carried.
            let lost = if metrics_failed { unexported } else { 0 };
            Err(ExportError::new(failures.join("; ")).losing(lost))
        }
    }
}
