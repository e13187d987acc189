//! PostgreSQL as the store (`--store postgres://USER@HOST/DB`), through
//! tokio-postgres. The connection is made again when it was lost, so a
//! database that restarts is used again without restarting the recorder.
//!
//! Migrations run under an advisory lock: two orchestrators starting
//! against one database apply each migration once.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use super::schema;
use super::store::{RecordedRun, RunFilter, RunSummary, Store, StoreError};

/// How long connecting may take before the store counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may take: a database that stopped answering
/// (a cut network) must not hold up a run's end.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock migrations hold (any fixed number of our own).
const MIGRATION_LOCK: i64 = 0x0076_616a_7261; // "vajra"

/// A PostgreSQL history.
pub struct PostgresStore {
    url: String,
    /// Where it is, without the password, for messages.
    shown: String,
    /// Connected (and, the first time, migrated) by the first call that
    /// finds it closed: a database down at start is used once it is up.
    client: Mutex<Option<Client>>,
    migrated: std::sync::atomic::AtomicBool,
}

impl PostgresStore {
    /// The database at `url`, not connected yet (`Err` if the URL does not
    /// parse).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::BadUrl {
            url: redact(url),
            detail: format!("{e}"),
        })?;
        Ok(Self {
            url: url.to_owned(),
            shown: shown(&config),
            client: Mutex::new(None),
            migrated: Default::default(),
        })
    }

    /// Connects to `url` and applies the schema's migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::new(url)?;
        drop(store.connected().await?);
        Ok(store)
    }

    /// A new connection, the schema migrated the first time.
    async fn connect(&self) -> Result<Client, StoreError> {
        use std::sync::atomic::Ordering;
        let mut client = self.dial().await?;
        if !self.migrated.load(Ordering::Acquire) {
            migrate(&mut client).await.map_err(|e| match e {
                Migration::Newer(found) => StoreError::NewerSchema {
                    store: self.shown.clone(),
                    found,
                    known: schema::CURRENT,
                },
                Migration::Postgres(e) => classify(&self.shown, &e),
            })?;
            self.migrated.store(true, Ordering::Release);
        }
        Ok(client)
    }

    async fn dial(&self) -> Result<Client, StoreError> {
        let connecting = tokio_postgres::connect(&self.url, NoTls);
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| StoreError::Unreachable {
                store: self.shown.clone(),
                detail: format!("no connection within {CONNECT_TIMEOUT:?}"),
            })?
            .map_err(|e| classify(&self.shown, &e))?;
        let shown = self.shown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("{shown}: connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// The connection, made again if it was lost.
    async fn connected(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect().await?);
        }
        Ok(guard)
    }

    /// `e` as a store error; a connection it shows lost is dropped, to be
    /// made again by the next call.
    fn failed(&self, client: &mut Option<Client>, e: tokio_postgres::Error) -> StoreError {
        if e.is_closed() || e.code().is_none() {
            *client = None;
        }
        classify(&self.shown, &e)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut guard = self.connected().await?;
        let client = guard.as_ref().expect("just connected");
        let rows = tokio::time::timeout(QUERY_TIMEOUT, client.query(sql, params)).await;
        match rows {
            Ok(rows) => rows.map_err(|e| self.failed(&mut guard, e)),
            Err(_) => Err(self.timed_out(&mut guard)),
        }
    }

    /// A statement that did not answer in time: its connection is dropped.
    fn timed_out(&self, client: &mut Option<Client>) -> StoreError {
        *client = None;
        StoreError::Unreachable {
            store: self.shown.clone(),
            detail: format!("no answer within {QUERY_TIMEOUT:?}"),
        }
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let mut guard = self.connected().await?;
        let client = guard.as_ref().expect("just connected");
        let changed = tokio::time::timeout(QUERY_TIMEOUT, client.execute(sql, params)).await;
        match changed {
            Ok(changed) => changed.map_err(|e| self.failed(&mut guard, e)),
            Err(_) => Err(self.timed_out(&mut guard)),
        }
    }
}

/// Why migrating did not finish.
enum Migration {
    Postgres(tokio_postgres::Error),
    Newer(i64),
}

impl From<tokio_postgres::Error> for Migration {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

async fn migrate(client: &mut Client) -> Result<(), Migration> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.execute(schema::VERSION_TABLE, &[]).await?;
    let version: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM vajra_schema", &[])
        .await?
        .get(0);
    if version > schema::CURRENT {
        return Err(Migration::Newer(version));
    }
    for (next, statements) in schema::pending(version) {
        for statement in statements {
            tx.execute(*statement, &[]).await?;
        }
        let now = crate::cluster::wall::unix_now_ms() as i64;
        tx.execute(
            "INSERT INTO vajra_schema (version, applied_ms) VALUES ($1, $2)",
            &[&next, &now],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn classify(store: &str, e: &tokio_postgres::Error) -> StoreError {
    let store = store.to_owned();
    // Its own cause, not the generic "db error" / "error connecting".
    let detail = match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    };
    match e.code() {
        None => StoreError::Unreachable { store, detail },
        Some(code) if code.code().starts_with("08") || code.code().starts_with("57P") => {
            StoreError::Unreachable { store, detail }
        }
        Some(_) => StoreError::Other { store, detail },
    }
}

/// `user@host:port/db` of a configuration, never its password.
fn shown(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// `url` with any password replaced, for an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A row's summary; `Err` if a column is not of the schema's type (a
/// table altered by hand), never a panic.
fn summary(row: &Row) -> Result<RunSummary, tokio_postgres::Error> {
    Ok(RunSummary {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        outcome: row.try_get(2)?,
        passed: row.try_get::<_, i32>(3)? != 0,
        started_ms: row.try_get(4)?,
        recorded_ms: row.try_get(5)?,
        load_secs: row.try_get(6)?,
        peers: row.try_get(7)?,
        target_rate: row.try_get(8)?,
        rate: row.try_get(9)?,
        completed: row.try_get(10)?,
        failures: row.try_get(11)?,
        p50_us: row.try_get(12)?,
        p99_us: row.try_get(13)?,
        service_p99_us: row.try_get(14)?,
        started_by: row.try_get(15)?,
    })
}

fn run_of(row: &Row) -> Result<RecordedRun, tokio_postgres::Error> {
    Ok(RecordedRun {
        summary: summary(row)?,
        definition: row.try_get(16)?,
        report: row.try_get(17)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn record(&self, run: &RecordedRun) -> Result<bool, StoreError> {
        let s = &run.summary;
        let passed = s.passed as i32;
        let inserted = self
            .execute(
                schema::INSERT,
                &[
                    &s.id,
                    &s.name,
                    &s.outcome,
                    &passed,
                    &s.started_ms,
                    &s.recorded_ms,
                    &s.load_secs,
                    &s.peers,
                    &s.target_rate,
                    &s.rate,
                    &s.completed,
                    &s.failures,
                    &s.p50_us,
                    &s.p99_us,
                    &s.service_p99_us,
                    &s.started_by,
                    &run.definition,
                    &run.report,
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let rows = self
            .query("SELECT 1 FROM runs WHERE id = $1", &[&id])
            .await?;
        Ok(!rows.is_empty())
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let rows = self
            .query(
                &schema::list_query(),
                &[
                    &filter.name,
                    &filter.outcome,
                    &filter.since_ms,
                    &filter.before_ms,
                    &filter.rows(),
                ],
            )
            .await?;
        rows.iter()
            .map(summary)
            .collect::<Result<_, _>>()
            .map_err(|e| classify(&self.shown, &e))
    }

    async fn get(&self, id: &str) -> Result<Option<RecordedRun>, StoreError> {
        let rows = self.query(&schema::get_query(), &[&id]).await?;
        rows.first()
            .map(run_of)
            .transpose()
            .map_err(|e| classify(&self.shown, &e))
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .execute("DELETE FROM runs WHERE id = $1", &[&id])
            .await?
            == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://vajra:secret@db:5432/h"),
            "postgres://vajra:***@db:5432/h"
        );
        let config: tokio_postgres::Config = "postgres://vajra:secret@db:6543/h".parse().unwrap();
        assert_eq!(shown(&config), "postgres vajra@db:6543/h");
    }
}
