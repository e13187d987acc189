//! BlazeMeter: a run's results in a BlazeMeter report, through the
//! external-results API its public documentation gives third-party tools.
//!
//! - [`client`]: the API calls (session, submissions, stop).
//! - [`labels`]: the submitted bodies: intervals and summaries per label.
//!
//! The session starts with the run; intervals are submitted every
//! `--blazemeter-interval` (30 s by default) and at the end, marked final,
//! before the session is stopped. A submission that fails is not retried
//! (BlazeMeter adds what it takes, so a retry of one it took would count
//! twice): its intervals are counted as not delivered.

pub mod client;
pub mod labels;

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::config::ExportSettings;
use crate::export::http::HttpClient;
use crate::export::{ExportError, ExportWindow, Exporter, Report, RunInfo};
use client::{Account, BlazeMeter, Session, Submitted};
use labels::Labels;

/// The name `--export` gives it.
pub const BLAZEMETER: &str = "blazemeter";

/// BlazeMeter's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BlazeMeterSettings {
    /// Hosts and key.
    pub account: Account,
    /// The external test's name.
    pub test: String,
    /// Its project's name, if not the default project.
    pub project: Option<String>,
    /// Time between two submissions.
    pub interval: Duration,
}

/// One run's BlazeMeter exporter.
pub struct BlazeMeterExporter {
    client: BlazeMeter,
    settings: BlazeMeterSettings,
    session: Option<Session>,
    labels: Labels,
    last_submit: Instant,
    source_id: u64,
    ended: bool,
    /// Why the session could not start, said with everything not delivered.
    start_error: Option<String>,
    /// Windows folded in since the last submission.
    unsent: u64,
}

impl BlazeMeterExporter {
    /// An exporter with `settings`' BlazeMeter settings.
    pub fn new(settings: &ExportSettings) -> anyhow::Result<Self> {
        let bm = settings.blazemeter.clone().ok_or_else(|| {
            anyhow::anyhow!("needs a key: --blazemeter-token-file or BLAZEMETER_API_KEY")
        })?;
        Ok(Self {
            // The final submission and the stop must fit the flush timeout.
            client: BlazeMeter::new(
                HttpClient::new(settings.flush_timeout.mul_f64(0.4))?,
                bm.account.clone(),
            ),
            settings: bm,
            session: None,
            labels: Labels::default(),
            last_submit: Instant::now(),
            source_id: u64::from(fastrand::u32(..)),
            ended: false,
            start_error: None,
            unsent: 0,
        })
    }

    /// Why nothing can be submitted, if so.
    fn unable(&self) -> Option<ExportError> {
        if self.session.is_none() {
            let why = self
                .start_error
                .as_deref()
                .unwrap_or("it was never started");
            return Some(ExportError::new(format!("no BlazeMeter session: {why}")));
        }
        self.ended
            .then(|| ExportError::new("the session was ended on BlazeMeter"))
    }

    /// Submits the pending intervals; a failure loses them (they are not
    /// sent again, see the module's doc).
    async fn submit(&mut self, last: bool) -> Result<(), ExportError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        self.last_submit = Instant::now();
        let held = std::mem::take(&mut self.unsent);
        let body = self.labels.take_body(self.source_id, last);
        let submitted = self.client.submit(session, body).await;
        match submitted.map_err(|e| ExportError::from(e).losing(held))? {
            Submitted::Taken => Ok(()),
            Submitted::SessionEnded => {
                self.ended = true;
                tracing::warn!("BlazeMeter ended the session (stopped from its web UI?)");
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Exporter for BlazeMeterExporter {
    async fn start(&mut self, run: &RunInfo) -> Result<(), ExportError> {
        let minutes = run
            .curve
            .as_ref()
            .map_or(1, |c| (c.duration() / 60.0).ceil() as u64);
        let started = self
            .client
            .start_session(
                &self.settings.test,
                self.settings.project.as_deref(),
                minutes,
            )
            .await;
        let session = started.map_err(|e| {
            let e = ExportError::from(e);
            self.start_error = Some(e.message.clone());
            e
        })?;
        tracing::info!("BlazeMeter report: {}", self.client.report_url(&session));
        self.session = Some(session);
        Ok(())
    }

    async fn window(&mut self, window: &ExportWindow) -> Result<(), ExportError> {
        if let Some(unable) = self.unable() {
            return Err(unable);
        }
        self.labels.fold(window);
        self.unsent += 1;
        if self.last_submit.elapsed() >= self.settings.interval && self.labels.has_pending() {
            self.submit(false).await?;
        }
        Ok(())
    }

    async fn finish(&mut self, _report: &Report) -> Result<(), ExportError> {
        if let Some(unable) = self.unable() {
            return Err(unable);
        }
        self.submit(true).await?;
        if let Some(session) = &self.session {
            self.client.stop(session).await?;
        }
        Ok(())
    }
}
