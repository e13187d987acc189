//! The history endpoints of a node that keeps one (an orchestrator):
//! runs listed and filtered, one run's summary, definition and report, two
//! runs compared, a test's trend across its runs. Transport-free: the
//! server routes to these and turns their answers into responses.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::api::ApiError;
use crate::export::Report;
use crate::history::compare::{Comparison, compare};
use crate::history::recorder::Recorder;
use crate::history::store::{RecordedRun, RunFilter, RunSummary, StoreError};

/// A list of runs, newest first.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunList {
    /// The store they come from.
    pub store: String,
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Runs finished but waiting for the store (it is away).
    #[serde(default)]
    pub waiting: Vec<String>,
}

/// One run without its report.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunDetail {
    /// What it is listed by.
    pub summary: RunSummary,
    /// The settings it ran with.
    pub definition: serde_json::Value,
}

/// A test's runs, oldest first, for its trend.
#[derive(Debug, Serialize, Deserialize)]
pub struct Trend {
    /// The test name.
    pub name: String,
    /// Its runs.
    pub runs: Vec<RunSummary>,
}

/// A node's history, when it keeps one.
pub struct History {
    recorder: Arc<Recorder>,
}

/// Most runs a trend shows.
pub const TREND_RUNS: usize = 200;

impl History {
    /// The history `recorder` writes.
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder }
    }

    /// The runs the query (`name`, `outcome`, `since`, `before`, `limit`)
    /// picks.
    pub async fn runs(&self, query: &str) -> Result<RunList, ApiError> {
        let filter = filter(query)?;
        let store = self.recorder.store();
        Ok(RunList {
            store: store.describe(),
            runs: store.list(&filter).await.map_err(store_error)?,
            waiting: self.recorder.waiting(),
        })
    }

    /// Run `id`'s summary and definition.
    pub async fn run(&self, id: &str) -> Result<RunDetail, ApiError> {
        let run = self.get(id).await?;
        Ok(RunDetail {
            definition: serde_json::from_str(&run.definition)
                .unwrap_or(serde_json::Value::String(run.definition)),
            summary: run.summary,
        })
    }

    /// Run `id` as recorded: its report's JSON byte for byte, and read.
    pub async fn report(&self, id: &str) -> Result<(RecordedRun, Report), ApiError> {
        let run = self.get(id).await?;
        let report = run
            .parsed_report()
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        Ok((run, report))
    }

    /// Forgets run `id`.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        match self.recorder.store().delete(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(unknown_run(id)),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Runs `a` and `b` compared (`?a=ID&b=ID`).
    pub async fn compare(&self, query: &str) -> Result<Comparison, ApiError> {
        let pairs = pairs(query);
        let id = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| ApiError::field(key, format!("give the run to compare as `{key}`")))
        };
        let (a, b) = (id("a")?, id("b")?);
        let (run_a, report_a) = self.report(&a).await?;
        let (run_b, report_b) = self.report(&b).await?;
        Ok(compare(
            (&run_a.summary, &report_a),
            (&run_b.summary, &report_b),
        ))
    }

    /// The runs of test `name`, oldest first (`?name=NAME&limit=N`).
    pub async fn trend(&self, query: &str) -> Result<Trend, ApiError> {
        let mut filter = filter(query)?;
        let Some(name) = filter.name.clone() else {
            return Err(ApiError::field("name", "give the test's `name`"));
        };
        if filter.limit == 0 {
            filter.limit = TREND_RUNS;
        }
        let mut runs = self
            .recorder
            .store()
            .list(&filter)
            .await
            .map_err(store_error)?;
        runs.reverse();
        Ok(Trend { name, runs })
    }

    async fn get(&self, id: &str) -> Result<RecordedRun, ApiError> {
        match self.recorder.store().get(id).await {
            Ok(Some(run)) => Ok(run),
            Ok(None) => Err(unknown_run(id)),
            Err(e) => Err(store_error(e)),
        }
    }
}

fn unknown_run(id: &str) -> ApiError {
    ApiError::new(404, format!("no run `{id}` in the history"))
}

/// A store that is away is a 503 (try again); one that refuses, a 500.
fn store_error(e: StoreError) -> ApiError {
    let status = if e.is_transient() { 503 } else { 500 };
    ApiError::new(status, e.to_string())
}

fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The filter a query string asks for; `Err` names the parameter at fault.
pub fn filter(query: &str) -> Result<RunFilter, ApiError> {
    let mut filter = RunFilter::default();
    for (key, value) in pairs(query) {
        // An empty text is no filter; an empty outcome or limit is not one
        // of their values.
        if value.is_empty() && !matches!(key.as_str(), "outcome" | "limit") {
            continue;
        }
        match key.as_str() {
            "name" => filter.name = Some(value),
            "outcome" => filter.outcome = Some(value),
            "since" => filter.since_ms = Some(instant(&key, &value)?),
            "before" => filter.before_ms = Some(instant(&key, &value)?),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=RunFilter::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::field(
                            "limit",
                            format!("a count of 1 to {}", RunFilter::MAX_LIMIT),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::field(
                    other,
                    format!(
                        "unknown parameter `{other}` (known: name, outcome, since, before, limit)"
                    ),
                ));
            }
        }
    }
    filter.check().map_err(|e| ApiError::field("outcome", e))?;
    Ok(filter)
}

/// An instant as Unix ms: given as ms, an RFC 3339 time, or a date.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| format!("'{text}' is not a date, an RFC 3339 time or Unix milliseconds"))
}

fn instant(key: &str, text: &str) -> Result<i64, ApiError> {
    parse_instant(text).map_err(|e| ApiError::field(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_filters_or_name_what_is_wrong() {
        let f =
            filter("name=http%20http%3A%2F%2Fx&outcome=passed&since=2026-12-01&limit=5").unwrap();
        assert_eq!(f.name.as_deref(), Some("http http://x"));
        assert_eq!(f.outcome.as_deref(), Some("passed"));
        assert_eq!(f.since_ms, Some(1_796_083_200_000));
        assert_eq!(f.limit, 5);
        for (query, field) in [
            ("limit=0", "limit"),
            ("since=yesterday", "since"),
            ("outcome=great", "outcome"),
            ("color=red", "color"),
            ("outcome=", "outcome"),
        ] {
            let e = filter(query).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{query}: {e:?}");
        }
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Ok(1000));
    }
}
