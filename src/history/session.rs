//! A run's ties to history, for `run` and `start --wait`: the store it is
//! recorded in and the baseline its relative thresholds are judged
//! against, both settled before the run starts (a wrong store or an
//! unknown baseline is known before any load is sent).

use std::sync::Arc;

use super::baseline::{self, Baseline};
use super::store::{Provenance, RecordedRun, Store, StoreError};
use crate::export::Report;
use crate::threshold::Threshold;

/// A run's store and baseline.
pub struct Session {
    store: Option<Arc<dyn Store>>,
    /// Why the store could not be used, if it is away.
    away: Option<String>,
    baseline: Option<RecordedRun>,
    wanted: Option<Baseline>,
}

/// Why a run's history cannot be set up: the run does not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A baseline without a store to find it in.
    #[error("--baseline needs --store: the history to find earlier runs in")]
    NoStore,
    /// The store is wrong (not away): corrupt, newer, a bad URL.
    #[error("{0}")]
    Store(StoreError),
    /// The baseline run named is not in the store.
    #[error("baseline run '{0}' is not in {1}")]
    UnknownRun(String, String),
}

impl Session {
    /// No store, no baseline.
    pub fn none() -> Self {
        Self {
            store: None,
            away: None,
            baseline: None,
            wanted: None,
        }
    }

    /// Opens `store` (if any) and finds the `baseline` run of test `name`
    /// for a run starting about now. A store that is away does not stop
    /// the run: the run is not recorded, and relative thresholds fail
    /// saying why.
    pub async fn open(
        store: Option<&str>,
        baseline: Option<&Baseline>,
        name: &str,
        own_id: &str,
    ) -> Result<Self, SessionError> {
        let Some(url) = store else {
            return match baseline {
                Some(_) => Err(SessionError::NoStore),
                None => Ok(Self::none()),
            };
        };
        let store = match super::open(url).await {
            Ok(store) => store,
            Err(e) if e.is_transient() => {
                return Ok(Self {
                    away: Some(e.to_string()),
                    wanted: baseline.cloned(),
                    ..Self::none()
                });
            }
            Err(e) => return Err(SessionError::Store(e)),
        };
        let now_ms = crate::cluster::wall::unix_now_ms() as i64;
        let mut session = Self {
            store: Some(Arc::clone(&store)),
            wanted: baseline.cloned(),
            ..Self::none()
        };
        if let Some(choice) = baseline {
            match baseline::pick(store.as_ref(), choice, name, now_ms, own_id).await {
                Ok(None) if matches!(choice, Baseline::Run(_)) => {
                    return Err(SessionError::UnknownRun(
                        choice.to_string(),
                        store.describe(),
                    ));
                }
                Ok(found) => session.baseline = found,
                Err(e) if e.is_transient() => session.away = Some(e.to_string()),
                Err(e) => return Err(SessionError::Store(e)),
            }
        }
        Ok(session)
    }

    /// What it says before the run, for the console.
    pub fn describe(&self) -> Option<String> {
        let store = self.store.as_ref().map(|s| s.describe());
        match (&self.away, &self.baseline, &self.wanted) {
            (Some(why), _, _) => Some(format!("history away, the run is not recorded: {why}")),
            (None, Some(run), _) => Some(format!(
                "baseline: run {} ({}, {:.1}/s, p99 {:.2} ms)",
                run.summary.id,
                run.summary.outcome,
                run.summary.rate,
                run.summary.p99_us / 1e3
            )),
            (None, None, Some(choice)) => Some(format!(
                "baseline {choice}: no earlier run of this test in {}",
                store.unwrap_or_default()
            )),
            (None, None, None) => match &self.store {
                Some(s) if !s.records() => {
                    Some(format!("{}: it records the test itself", s.describe()))
                }
                _ => store.map(|s| format!("recording in {s}")),
            },
        }
    }

    /// Judges `report`'s relative thresholds against the baseline, then
    /// records it; a message for the console if recording failed.
    pub async fn conclude(
        &self,
        report: &mut Report,
        thresholds: &[Threshold],
        from: Provenance<'_>,
        target_rate: Option<f64>,
    ) -> Option<String> {
        if let Some(why) = &self.away {
            if self.wanted.is_some() {
                baseline::not_judged(report, thresholds, why);
            }
            return Some(format!("history: not recorded: {why}"));
        }
        let mut problem = None;
        match self.baseline.as_ref().map(|run| (run, run.parsed_report())) {
            Some((run, Ok(parsed))) => {
                baseline::judge(report, thresholds, Some((&run.summary.id, &parsed)));
            }
            Some((_, Err(e))) => {
                baseline::not_judged(report, thresholds, &e.to_string());
                problem = Some(format!("history: relative thresholds not judged: {e}"));
            }
            None => baseline::judge(report, thresholds, None),
        }
        let Some(store) = self.store.as_ref() else {
            return problem;
        };
        let run = RecordedRun::new(from, report, target_rate);
        match store.record(&run).await {
            Ok(true) => problem,
            // An orchestrator's API records nothing itself (its own
            // recorder does); anything else already holds a run of this id.
            Ok(false) if !store.records() => problem,
            Ok(false) => Some(format!(
                "history: {} already holds a run {}; this one is not recorded",
                store.describe(),
                run.summary.id
            )),
            Err(e) => Some(format!("history: run {} not recorded: {e}", run.summary.id)),
        }
    }
}
