//! The history's schema, as versioned migrations both backends apply at
//! start, oldest first, each in its own transaction.
//!
//! The SQL is written once for both: types both know (`TEXT`, `BIGINT`,
//! `INTEGER`, `DOUBLE PRECISION`), parameters as `$n` (turned into `?n`
//! for SQLite by [`for_sqlite`]). A store whose version is newer than
//! [`CURRENT`] was written by a newer binary and is refused, not altered.

/// The table that records which migrations were applied.
pub const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS vajra_schema (version BIGINT NOT NULL, applied_ms BIGINT NOT NULL)";

/// The newest schema version this binary knows.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`: its statements.
pub const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        outcome TEXT NOT NULL,
        passed INTEGER NOT NULL,
        started_ms BIGINT NOT NULL,
        recorded_ms BIGINT NOT NULL,
        load_secs DOUBLE PRECISION NOT NULL,
        peers INTEGER NOT NULL,
        target_rate DOUBLE PRECISION,
        rate DOUBLE PRECISION NOT NULL,
        completed BIGINT NOT NULL,
        failures BIGINT NOT NULL,
        p50_us DOUBLE PRECISION NOT NULL,
        p99_us DOUBLE PRECISION NOT NULL,
        service_p99_us DOUBLE PRECISION NOT NULL,
        started_by TEXT NOT NULL,
        definition TEXT NOT NULL,
        report TEXT NOT NULL
    )",
    "CREATE INDEX runs_by_name ON runs (name, started_ms)",
    "CREATE INDEX runs_by_start ON runs (started_ms)",
]];

/// The migrations a store at `version` still needs, with their versions.
pub fn pending(version: i64) -> impl Iterator<Item = (i64, &'static [&'static str])> {
    MIGRATIONS
        .iter()
        .enumerate()
        .map(|(i, statements)| (i as i64 + 1, *statements))
        .filter(move |(v, _)| *v > version)
}

/// The summary columns, in [`crate::history::RunSummary`]'s order.
pub const SUMMARY_COLUMNS: &str = "id, name, outcome, passed, started_ms, recorded_ms, load_secs, \
     peers, target_rate, rate, completed, failures, p50_us, p99_us, service_p99_us, started_by";

/// Inserts a run; a run already recorded is left alone.
pub const INSERT: &str = "INSERT INTO runs (id, name, outcome, passed, started_ms, recorded_ms, \
     load_secs, peers, target_rate, rate, completed, failures, p50_us, p99_us, service_p99_us, \
     started_by, definition, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
     $13, $14, $15, $16, $17, $18) ON CONFLICT (id) DO NOTHING";

/// The runs a filter picks ($1 name, $2 outcome, $3 since, $4 before, $5
/// limit), newest first. Casts type the parameters for PostgreSQL.
pub fn list_query() -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM runs \
         WHERE (CAST($1 AS TEXT) IS NULL OR name = $1) \
         AND (CAST($2 AS TEXT) IS NULL OR outcome = $2 \
              OR ($2 = 'passed' AND passed = 1) OR ($2 = 'failed' AND passed = 0)) \
         AND (CAST($3 AS BIGINT) IS NULL OR started_ms >= $3) \
         AND (CAST($4 AS BIGINT) IS NULL OR started_ms < $4) \
         ORDER BY started_ms DESC, id DESC LIMIT $5"
    )
}

/// One run, summary, definition and report.
pub fn get_query() -> String {
    format!("SELECT {SUMMARY_COLUMNS}, definition, report FROM runs WHERE id = $1")
}

/// `sql` with `$n` parameters as SQLite's `?n`.
pub fn for_sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one() {
        assert_eq!(pending(0).map(|(v, _)| v).collect::<Vec<_>>(), [1]);
        assert_eq!(pending(CURRENT).count(), 0);
        assert_eq!(for_sqlite("a = $1 AND b = $12"), "a = ?1 AND b = ?12");
    }
}
