//! OpenTelemetry: a run's figures as OTLP metrics, over gRPC or HTTP.
//!
//! - [`exponential`]: HDR histograms as base-2 exponential histograms.
//! - [`metrics`]: the run's running totals and the request they export.
//! - [`traces`]: the run's spans, through opentelemetry-otlp.
//! - [`transport`]: gRPC and HTTP/protobuf to the collector.
//!
//! Metrics are built from the engine's own windows rather than through the
//! OpenTelemetry SDK's instruments: those take one value per call, and the
//! windows already hold exact histograms of every execution; converting
//! them costs a few hundred buckets per export, whatever the rate.

pub mod exponential;
pub mod metrics;
pub mod traces;
pub mod transport;

use std::time::Instant;

use async_trait::async_trait;

use crate::config::ExportSettings;
use crate::engine::trace::Tracing;
use crate::export::{ExportError, ExportWindow, Exporter, Report, RunInfo};
use metrics::RunMetrics;
use traces::RunTraces;
use transport::MetricsSender;

/// The name `--export` gives it.
pub const OTLP: &str = "otlp";

/// One run's OTLP exporter.
pub struct OtlpExporter {
    settings: crate::config::otlp::OtlpSettings,
    sender: MetricsSender,
    metrics: Option<RunMetrics>,
    last_export: Instant,
    traces: Option<RunTraces>,
}

impl OtlpExporter {
    /// An exporter with `settings`' OTLP settings.
    pub fn new(settings: &ExportSettings) -> anyhow::Result<Self> {
        let otlp = settings.otlp.clone();
        let sender = MetricsSender::new(&otlp.metrics, &otlp.headers, otlp.timeout)?;
        Ok(Self {
            settings: otlp,
            sender,
            metrics: None,
            last_export: Instant::now(),
            traces: None,
        })
    }

    /// Exports everything folded in so far.
    async fn export(&mut self) -> Result<(), ExportError> {
        let Some(metrics) = self.metrics.as_mut() else {
            return Ok(());
        };
        self.last_export = Instant::now();
        self.sender.send(metrics.request()).await?;
        metrics.exported();
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
        Ok(())
    }

    async fn window(&mut self, window: &ExportWindow) -> Result<(), ExportError> {
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.fold(window);
        }
        if self.last_export.elapsed() >= self.settings.interval {
            self.export().await?;
        }
        Ok(())
    }

    async fn finish(&mut self, report: &Report) -> Result<(), ExportError> {
        let metrics = self.export().await;
        let traces = match self.traces.take() {
            Some(traces) => traces.finish(report.abort_reason.clone()).await,
            None => Ok(()),
        };
        match (metrics, traces) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) => Err(ExportError::new(format!("metrics: {e}"))),
            (Ok(()), Err(e)) => Err(ExportError::new(format!("traces: {e}"))),
            (Err(m), Err(t)) => Err(ExportError::new(format!("metrics: {m}; traces: {t}"))),
        }
    }
}
