//! The embedded store: one SQLite file (SQLite bundled into the binary, so
//! no system library is needed), written in WAL mode so readers never wait
//! for the recorder.
//!
//! SQLite calls block, so each runs on tokio's blocking pool, one at a time
//! behind the connection's lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

use super::schema;
use super::store::{RecordedRun, RunFilter, RunSummary, Store, StoreError};

/// How long a call waits for another process's lock before it fails with
/// [`StoreError::Locked`].
pub const BUSY_WAIT: Duration = Duration::from_secs(2);

/// An SQLite history file.
pub struct SqliteStore {
    path: PathBuf,
    /// Opened (and migrated) by the first call that finds it closed: a
    /// file locked at start is used once it is free.
    connection: Arc<Mutex<Option<Connection>>>,
}

impl SqliteStore {
    /// The file at `path`, not opened yet.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            connection: Arc::default(),
        }
    }

    /// Opens (or creates, with its directory) the file at `path` and
    /// applies the schema's migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let store = Self::new(path);
        store.with(|_| Ok(())).await?;
        Ok(store)
    }

    /// Runs `call` on the connection, opening it first if it is not open,
    /// off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, OpenError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        let path = self.path.clone();
        let name = self.describe();
        let answer = tokio::task::spawn_blocking(move || {
            let mut open = connection.lock();
            if open.is_none() {
                *open = Some(open_blocking(&path)?);
            }
            call(open.as_mut().expect("opened above"))
        })
        .await
        .map_err(|e| StoreError::Other {
            store: name.clone(),
            detail: e.to_string(),
        })?;
        answer.map_err(|e| classify(&name, e))
    }
}

fn describe(path: &Path) -> String {
    format!("sqlite {}", path.display())
}

/// What opening or a call can fail with: SQLite's error, or a schema
/// newer than this binary's.
enum OpenError {
    Sqlite(rusqlite::Error),
    Newer(i64),
    Directory(std::io::Error),
    /// Another program's database: tables of its own, no history schema.
    Foreign(String),
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

fn open_blocking(path: &Path) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(OpenError::Directory)?;
    }
    let mut connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_WAIT)?;
    // The first statement that reads the file: a file that is not a
    // database fails here, before anything is written to it.
    let _mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    migrate(&mut connection)?;
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<(), OpenError> {
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !tables.iter().any(|t| t == "vajra_schema")
        && let Some(theirs) = tables.iter().find(|t| !t.starts_with("sqlite_"))
    {
        // Never add the history's tables to someone else's database.
        return Err(OpenError::Foreign(theirs.clone()));
    }
    connection.execute(schema::VERSION_TABLE, [])?;
    let version: i64 = connection.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM vajra_schema",
        [],
        |r| r.get(0),
    )?;
    if version > schema::CURRENT {
        return Err(OpenError::Newer(version));
    }
    for (next, statements) in schema::pending(version) {
        let tx = connection.transaction()?;
        for statement in statements {
            tx.execute(statement, [])?;
        }
        tx.execute(
            "INSERT INTO vajra_schema (version, applied_ms) VALUES (?1, ?2)",
            params![next, crate::cluster::wall::unix_now_ms() as i64],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn classify(store: &str, error: OpenError) -> StoreError {
    let store = store.to_owned();
    let e = match error {
        OpenError::Newer(found) => {
            return StoreError::NewerSchema {
                store,
                found,
                known: schema::CURRENT,
            };
        }
        OpenError::Directory(e) => {
            return StoreError::Other {
                store,
                detail: format!("cannot create its directory: {e}"),
            };
        }
        OpenError::Foreign(table) => {
            return StoreError::Corrupt {
                store,
                detail: format!("another program's database: it holds a table `{table}`"),
            };
        }
        OpenError::Sqlite(e) => e,
    };
    let detail = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { store, detail }
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Locked { store, detail }
        }
        _ => StoreError::Other { store, detail },
    }
}

fn summary(row: &Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: row.get(0)?,
        name: row.get(1)?,
        outcome: row.get(2)?,
        passed: row.get::<_, i32>(3)? != 0,
        started_ms: row.get(4)?,
        recorded_ms: row.get(5)?,
        load_secs: row.get(6)?,
        peers: row.get(7)?,
        target_rate: row.get(8)?,
        rate: row.get(9)?,
        completed: row.get(10)?,
        failures: row.get(11)?,
        p50_us: row.get(12)?,
        p99_us: row.get(13)?,
        service_p99_us: row.get(14)?,
        started_by: row.get(15)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        describe(&self.path)
    }

    async fn record(&self, run: &RecordedRun) -> Result<bool, StoreError> {
        let run = run.clone();
        self.with(move |c| {
            let s = &run.summary;
            let inserted = c.execute(
                &schema::for_sqlite(schema::INSERT),
                params![
                    s.id,
                    s.name,
                    s.outcome,
                    s.passed as i32,
                    s.started_ms,
                    s.recorded_ms,
                    s.load_secs,
                    s.peers,
                    s.target_rate,
                    s.rate,
                    s.completed,
                    s.failures,
                    s.p50_us,
                    s.p99_us,
                    s.service_p99_us,
                    s.started_by,
                    run.definition,
                    run.report,
                ],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let found = c
                .query_row("SELECT 1 FROM runs WHERE id = ?1", params![id], |_| Ok(()))
                .optional()?;
            Ok(found.is_some())
        })
        .await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let filter = filter.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(&schema::for_sqlite(&schema::list_query()))?;
            let rows = statement.query_map(
                params![
                    filter.name,
                    filter.outcome,
                    filter.since_ms,
                    filter.before_ms,
                    filter.rows()
                ],
                summary,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<RecordedRun>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let run = c
                .query_row(
                    &schema::for_sqlite(&schema::get_query()),
                    params![id],
                    |row| {
                        Ok(RecordedRun {
                            summary: summary(row)?,
                            definition: row.get(16)?,
                            report: row.get(17)?,
                        })
                    },
                )
                .optional()?;
            Ok(run)
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| Ok(c.execute("DELETE FROM runs WHERE id = ?1", params![id])? == 1))
            .await
    }
}
