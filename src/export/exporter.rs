//! The exporter seam: what a live output (OpenTelemetry, Prometheus,
//! BlazeMeter, a user's own) receives from a run.
//!
//! An [`Exporter`] is told the run's metadata once ([`RunInfo`]), then every
//! closed one-second window ([`ExportWindow`]) with everything the engine
//! measured in it, then the final [`Report`]. It runs on its own task behind
//! a bounded queue ([`super::pipeline`]), so however slow or broken it is,
//! the run never waits for it; what it fails to deliver is counted and
//! named in the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::report::Report;
use crate::engine::trace::Tracing;
use crate::load::RateCurve;
use crate::metrics::stats::{OpStats, WindowStats};
use crate::metrics::{Phase, Tag, WindowReport};

/// What an exporter knows about the run it exports.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The test's id: a cluster test's id (the same on every peer), or one
    /// made up for a standalone run.
    pub test_id: String,
    /// This generator's name: the peer's node name, or the host name for
    /// a standalone run.
    pub peer: String,
    /// The task it runs.
    pub task: String,
    /// Labels the user gave the run (`--label KEY=VALUE`).
    pub labels: BTreeMap<String, String>,
    /// This generator's target curve (its share of a cluster test), warmup
    /// included, as planned at the start; windows carry the rate after any
    /// update.
    pub curve: Option<RateCurve>,
    /// Seconds of warmup at the start of the curve.
    pub warmup_secs: f64,
    /// Wall-clock time the run's second 0 starts (a cluster test's shared
    /// start), or the time it was started if not known yet.
    pub starts_at: SystemTime,
}

/// One closed second of the run, with everything measured in it.
#[derive(Debug, Clone)]
pub struct ExportWindow {
    /// The window's summary (counts, rates, percentiles, CPU) as the
    /// report's series holds it.
    pub summary: WindowReport,
    /// Wall-clock time the window starts.
    pub start: SystemTime,
    /// Statistics per phase and tag: counts, error kinds, and both latency
    /// histograms, mergeable across windows and peers.
    pub stats: WindowStats,
    /// Arrivals per second the curve planned for this window (paced runs).
    pub target_rate: Option<f64>,
    /// Executions in flight when the window closed.
    pub in_flight: u64,
    /// Resident memory of the generator process, bytes.
    pub rss_bytes: u64,
    /// How much each event counter (`http.reconnects`, `postgres.rows`, a
    /// user task's own) grew since the window before: the windows' growths
    /// add up to the report's `counters`.
    pub events: BTreeMap<&'static str, u64>,
}

impl ExportWindow {
    /// The window's results per tag (`None`: untagged executions), both
    /// phases folded together: executions' tags in name order, then steps'.
    pub fn by_tag(&self) -> Vec<(Option<Tag>, OpStats)> {
        let mut tags: BTreeMap<Option<Tag>, OpStats> = BTreeMap::new();
        for ((_, tag), stats) in &self.stats.ops {
            tags.entry(*tag).or_default().merge(stats);
        }
        tags.into_iter().collect()
    }

    /// The phase the window starts in.
    pub fn phase(&self) -> Phase {
        self.summary.phase
    }
}

/// Why an exporter could not deliver something: said in the summary next to
/// what was not delivered, so name the cause ("connection refused", "HTTP
/// 401 from https://...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    /// The cause.
    pub message: String,
    /// How many windows' figures this failure lost for good: `None` for
    /// the window the call carried (none for a start or a finish); an
    /// exporter that batches says how many the failed batch held (0 if a
    /// later export carries them, as cumulative figures do).
    pub lost_windows: Option<u64>,
}

impl ExportError {
    /// An error saying `message`, losing the call's own window.
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            lost_windows: None,
        }
    }

    /// The same error, having lost `windows` windows' figures.
    pub fn losing(self, windows: u64) -> Self {
        Self {
            lost_windows: Some(windows),
            ..self
        }
    }
}

impl From<anyhow::Error> for ExportError {
    fn from(e: anyhow::Error) -> Self {
        Self::new(format!("{e:#}"))
    }
}

/// A live output of a run's figures. Each method is awaited on the
/// exporter's own task, one call at a time, in order: `start`, each window,
/// `finish`. An error is counted against what the call carried, and the
/// next call comes all the same.
#[async_trait]
pub trait Exporter: Send {
    /// Before the run starts, on the caller's task: an exporter that takes
    /// the engine's spans says how the run is traced. The default takes
    /// none.
    fn tracing(&mut self, _run: &RunInfo) -> anyhow::Result<Option<Tracing>> {
        Ok(None)
    }

    /// The run starts (before its first window).
    async fn start(&mut self, _run: &RunInfo) -> Result<(), ExportError> {
        Ok(())
    }

    /// A second of the run closed.
    async fn window(&mut self, window: &ExportWindow) -> Result<(), ExportError>;

    /// The run ended with `report` (after its last window).
    async fn finish(&mut self, _report: &Report) -> Result<(), ExportError> {
        Ok(())
    }
}

/// What the pipeline hands each exporter's task.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    Start(Arc<RunInfo>),
    Window(Arc<ExportWindow>),
    Finish(Arc<Report>),
}
