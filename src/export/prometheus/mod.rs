//! Prometheus: `/metrics` on `--metrics-listen`, with histograms whose sum
//! across peers gives the cluster's percentiles (see [`buckets`]).
//!
//! - [`buckets`]: the bucket layout and its worst-case error.
//! - [`figures`]: each recent test's cumulative figures, encoded per scrape.
//! - [`server`]: the HTTP endpoint.
//!
//! Prometheus pulls, so the exporter only folds windows into the figures
//! the endpoint shows. A standalone run lingers at its end until the final
//! figures have been scraped once (within the flush timeout); a peer keeps
//! serving, so its exporters never wait.

pub mod buckets;
pub mod figures;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use figures::LiveFigures;
pub use server::MetricsServer;

use super::{ExportError, ExportWindow, Exporter, Report, RunInfo};

/// One run's Prometheus exporter.
pub struct PrometheusExporter {
    server: Arc<MetricsServer>,
    test_id: String,
    /// Wait at the end until the endpoint is scraped, at most this long.
    linger: Option<Duration>,
}

impl PrometheusExporter {
    /// An exporter into `server`'s figures; with `linger`, its `finish`
    /// waits up to that long for a scrape of the final figures.
    pub fn new(server: Arc<MetricsServer>, linger: Option<Duration>) -> Self {
        Self {
            server,
            test_id: String::new(),
            linger,
        }
    }
}

#[async_trait]
impl Exporter for PrometheusExporter {
    async fn start(&mut self, run: &RunInfo) -> Result<(), ExportError> {
        self.test_id = run.test_id.clone();
        self.server.figures().begin(run);
        Ok(())
    }

    async fn window(&mut self, window: &ExportWindow) -> Result<(), ExportError> {
        self.server.figures().fold(&self.test_id, window);
        Ok(())
    }

    async fn finish(&mut self, _report: &Report) -> Result<(), ExportError> {
        self.server.figures().end(&self.test_id);
        let Some(linger) = self.linger else {
            return Ok(());
        };
        let mut scrapes = self.server.scrapes();
        scrapes.borrow_and_update();
        match tokio::time::timeout(linger, scrapes.changed()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ExportError::new(format!(
                "the final figures were not scraped from {} within {linger:?} \
                 (scrape it more often, or raise --export-flush-timeout)",
                self.server.local_addr()
            ))),
        }
    }
}
