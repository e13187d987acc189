//! The store seam: what a recorded run is, and the questions every backend
//! answers about them.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::export::{Outcome, Report};

/// What a run is listed, filtered and trended by: figures taken from its
/// report when it is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The test id (a cluster's) or run id (a standalone run's).
    pub id: String,
    /// The test's name: runs of one name are one test's history.
    pub name: String,
    /// How it ended (`completed`, `stopped`, `interrupted`, `aborted`).
    pub outcome: String,
    /// Whether it completed with every threshold held.
    pub passed: bool,
    /// Its start, Unix milliseconds.
    pub started_ms: i64,
    /// When it was recorded, Unix milliseconds.
    pub recorded_ms: i64,
    /// Seconds of load, warmup included.
    pub load_secs: f64,
    /// Peers whose reports it merges (1 for a standalone run).
    pub peers: i32,
    /// The mean target rate over the measured phase (paced runs).
    pub target_rate: Option<f64>,
    /// Completed per second, measured phase.
    pub rate: f64,
    /// Executions completed, measured phase.
    pub completed: i64,
    /// Of which failed.
    pub failures: i64,
    /// Latency p50, µs.
    pub p50_us: f64,
    /// Latency p99, µs.
    pub p99_us: f64,
    /// Service time p99, µs.
    pub service_p99_us: f64,
    /// Who started it (an API user, `cli:USER@HOST`, `run:USER@HOST`).
    pub started_by: String,
}

impl RunSummary {
    /// failure / completed.
    pub fn error_rate(&self) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            self.failures as f64 / self.completed as f64
        }
    }
}

/// A finished run as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRun {
    /// What it is listed by.
    pub summary: RunSummary,
    /// Its definition (the settings it ran with, as JSON).
    pub definition: String,
    /// Its report as JSON, kept and given back byte for byte: per-second
    /// series, histograms, each peer's own report, events.
    pub report: String,
}

/// Who a run's recorder is, for [`RecordedRun::new`].
pub struct Provenance<'a> {
    /// The run's id.
    pub id: &'a str,
    /// The test's name.
    pub name: &'a str,
    /// Who started it.
    pub started_by: &'a str,
    /// Its definition, JSON.
    pub definition: String,
}

impl RecordedRun {
    /// A run to record: `report` as JSON, its summary taken from it.
    pub fn new(from: Provenance<'_>, report: &Report, target_rate: Option<f64>) -> Self {
        let main = &report.main;
        let summary = RunSummary {
            id: from.id.to_owned(),
            name: from.name.to_owned(),
            outcome: report.outcome.as_str().to_owned(),
            passed: report.outcome == Outcome::Completed && report.thresholds_passed(),
            started_ms: started_ms(&report.started_at),
            recorded_ms: crate::cluster::wall::unix_now_ms() as i64,
            load_secs: report.load_secs,
            peers: report.peers.len().max(1) as i32,
            target_rate,
            rate: main.rate,
            completed: main.completed as i64,
            failures: main.failure as i64,
            p50_us: main.latency.p50_us,
            p99_us: main.latency.p99_us,
            service_p99_us: main.service.p99_us,
            started_by: from.started_by.to_owned(),
        };
        Self {
            summary,
            definition: from.definition,
            report: serde_json::to_string(report).expect("reports serialise"),
        }
    }

    /// Its report, read back.
    pub fn parsed_report(&self) -> Result<Report, StoreError> {
        serde_json::from_str(&self.report).map_err(|e| StoreError::Other {
            store: format!("run {}", self.summary.id),
            detail: format!("its recorded report does not read back: {e}"),
        })
    }
}

/// An RFC 3339 start as Unix milliseconds (0 if it does not parse).
fn started_ms(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Runs of this test name only.
    pub name: Option<String>,
    /// Runs with this outcome, or `passed` / `failed`.
    pub outcome: Option<String>,
    /// Runs started at or after this, Unix ms.
    pub since_ms: Option<i64>,
    /// Runs started before this, Unix ms.
    pub before_ms: Option<i64>,
    /// At most this many (0: [`RunFilter::DEFAULT_LIMIT`]).
    pub limit: usize,
}

impl RunFilter {
    /// How many runs a list holds unless asked for more.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The most a list holds.
    pub const MAX_LIMIT: usize = 10_000;

    /// The outcomes a filter may name.
    pub const OUTCOMES: [&'static str; 6] = [
        "completed",
        "stopped",
        "interrupted",
        "aborted",
        "passed",
        "failed",
    ];

    /// How many rows to return.
    pub fn rows(&self) -> i64 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT as i64,
            n => n.min(Self::MAX_LIMIT) as i64,
        }
    }

    /// `Err` names what is wrong with it.
    pub fn check(&self) -> Result<(), String> {
        match &self.outcome {
            Some(o) if !Self::OUTCOMES.contains(&o.as_str()) => Err(format!(
                "unknown outcome '{o}' (known: {})",
                Self::OUTCOMES.join(", ")
            )),
            _ => Ok(()),
        }
    }
}

/// Why the store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The URL names no store this binary knows.
    #[error("bad store '{url}': {detail}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The file is not a history database, or is damaged.
    #[error("{store}: not a Vajra history database, or damaged ({detail})")]
    Corrupt {
        /// The store.
        store: String,
        /// What SQLite said.
        detail: String,
    },
    /// Another process holds the database locked.
    #[error("{store}: locked by another process, still after waiting ({detail})")]
    Locked {
        /// The store.
        store: String,
        /// What the database said.
        detail: String,
    },
    /// The database server cannot be reached.
    #[error("{store}: unreachable ({detail})")]
    Unreachable {
        /// The store.
        store: String,
        /// What the connection said.
        detail: String,
    },
    /// The store was written by a newer binary.
    #[error(
        "{store}: its schema is version {found}, newer than this binary's {known}; use a newer vajra-peer"
    )]
    NewerSchema {
        /// The store.
        store: String,
        /// The version it holds.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// Anything else the database refused.
    #[error("{store}: {detail}")]
    Other {
        /// The store.
        store: String,
        /// What it said.
        detail: String,
    },
}

impl StoreError {
    /// Whether asking again later may work (the store is away, not wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Locked { .. } | Self::Unreachable { .. })
    }
}

/// Where runs are kept: one trait, an embedded SQLite file or PostgreSQL
/// behind it. Every call may fail with the store away; none panics.
#[async_trait]
pub trait Store: Send + Sync {
    /// What it is, for messages (`sqlite /path`, `postgres host/db`).
    fn describe(&self) -> String;

    /// Whether [`record`](Self::record) keeps runs (an orchestrator's API
    /// does not: its own recorder does).
    fn records(&self) -> bool {
        true
    }

    /// Records `run`; `false` if a run of that id is already recorded (it
    /// is left as it was: a run is recorded once).
    async fn record(&self, run: &RecordedRun) -> Result<bool, StoreError>;

    /// Whether a run of this id is recorded.
    async fn contains(&self, id: &str) -> Result<bool, StoreError>;

    /// The runs `filter` picks, newest first.
    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError>;

    /// The run `id`, if recorded.
    async fn get(&self, id: &str) -> Result<Option<RecordedRun>, StoreError>;

    /// Forgets the run `id`; whether it was recorded.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
}

/// Where a store is.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
    /// An orchestrator's API (read only: the orchestrator records).
    Api(String),
}

impl StoreUrl {
    /// `sqlite:PATH`, `postgres://…` / `postgresql://…`, or a bare path
    /// (an SQLite file).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |detail: &str| StoreError::BadUrl {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Self::Api(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            return Err(bad("no file named"));
        }
        if path.contains("://") {
            return Err(bad(
                "use sqlite:PATH, postgres://USER@HOST/DB, http(s)://ORCHESTRATOR:PORT, or a file path",
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    /// The default store: `$XDG_DATA_HOME/vajra/history.db`, or
    /// `~/.local/share/vajra/history.db`, or `vajra-history.db` here.
    pub fn default_path() -> PathBuf {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        match data {
            Some(dir) => dir.join("vajra").join("history.db"),
            None => PathBuf::from("vajra-history.db"),
        }
    }
}

/// Opens the store at `url`, applying its schema migrations (an API
/// token for an orchestrator's API is read from `VAJRA_API_TOKEN`).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => Arc::new(super::sqlite::SqliteStore::open(&path).await?),
        StoreUrl::Postgres(conn) => Arc::new(super::postgres::PostgresStore::open(&conn).await?),
        StoreUrl::Api(base) => {
            let token = std::env::var("VAJRA_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            Arc::new(super::remote::RemoteStore::new(&base, token)?)
        }
    })
}

/// The store at `url` for a long-running recorder: a store that is away
/// (locked, unreachable) is returned with why, to be used when it is back;
/// `Err` only when it is wrong (a bad URL, a damaged file, a newer schema).
pub async fn open_or_await(url: &str) -> Result<(Arc<dyn Store>, Option<StoreError>), StoreError> {
    let store: Arc<dyn Store> = match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => Arc::new(super::sqlite::SqliteStore::new(&path)),
        StoreUrl::Postgres(conn) => Arc::new(super::postgres::PostgresStore::new(&conn)?),
        StoreUrl::Api(base) => {
            return Err(StoreError::BadUrl {
                url: base,
                detail: "an orchestrator keeps its own store: give it a database".into(),
            });
        }
    };
    match store.contains("").await {
        Ok(_) => Ok((store, None)),
        Err(e) if e.is_transient() => Ok((store, Some(e))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_backend() {
        assert_eq!(
            StoreUrl::parse("sqlite:/tmp/h.db").unwrap(),
            StoreUrl::Sqlite("/tmp/h.db".into())
        );
        assert_eq!(
            StoreUrl::parse("h.db").unwrap(),
            StoreUrl::Sqlite("h.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgresql://u@localhost/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert_eq!(
            StoreUrl::parse("http://orchestrator:7780").unwrap(),
            StoreUrl::Api("http://orchestrator:7780".into())
        );
        for bad in ["", "sqlite:", "mysql://x/y"] {
            assert!(
                matches!(StoreUrl::parse(bad), Err(StoreError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn rfc3339_starts_become_unix_ms() {
        assert_eq!(started_ms("1970-01-01T00:00:01.500Z"), 1500);
        assert_eq!(started_ms("garbage"), 0);
    }

    #[test]
    fn filters_name_known_outcomes() {
        assert!(RunFilter::default().check().is_ok());
        let bad = RunFilter {
            outcome: Some("great".into()),
            ..RunFilter::default()
        };
        assert!(bad.check().unwrap_err().contains("passed"));
        assert_eq!(RunFilter::default().rows(), 100);
    }
}
