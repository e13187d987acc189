//! The built-in `postgres` task, and the query the scenario's `postgres`
//! step runs: one parameterised statement per execution on a connection
//! kept per instance (tokio-postgres), its rows counted.
//!
//! `vajra-peer run --task postgres --param url=postgres://u:p@db/app \
//!   --param 'query=SELECT * FROM items WHERE id = $1' --param 'args=42'`
//!
//! Parameters are text (from the command line, a template or a feeder) and
//! are converted to the types the server gives the statement's
//! placeholders: booleans, integers, floats and text; cast others in SQL
//! (`$1::text::uuid`). The statement is prepared once per connection.
//! Rows returned are counted under the counter `postgres.rows`; the connect
//! is reported as the step `connect`. TLS is not offered: use loopback or a
//! private network.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::Deserialize;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use super::{Context, Task, TaskError, TaskResult};
use crate::metrics::events::EventCounter;
use crate::task::options::param_timeout;

/// The counter rows returned are added to.
pub const ROWS: &str = "postgres.rows";
/// A statement's timeout when none is set (connect included).
pub const DEFAULT_PG_TIMEOUT: Duration = Duration::from_secs(10);

/// The `postgres` task's `--param` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresOptions {
    /// The connection URL (`postgres://user:password@host:port/db`).
    pub url: String,
    /// The statement, with `$1`, `$2` ... placeholders.
    #[serde(deserialize_with = "crate::task::options::as_text")]
    pub query: String,
    /// The placeholders' values, comma-separated.
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub args: Option<String>,
    /// The statement must return exactly this many rows.
    pub rows: Option<u64>,
    /// Connect and run within this [default: 10s].
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub timeout: Option<String>,
}

/// A statement's parameter, converted from text to the type the server
/// gave its placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Param<'a> {
    /// `bool`.
    Bool(bool),
    /// `smallint`.
    I16(i16),
    /// `integer`.
    I32(i32),
    /// `bigint`.
    I64(i64),
    /// `real`.
    F32(f32),
    /// `double precision`.
    F64(f64),
    /// Text of any text type (`text`, `varchar`, `char`, `name`).
    Text(&'a str),
}

impl<'a> Param<'a> {
    /// `text` as a value of `ty`; `Err` says why it is not one.
    pub fn convert(text: &'a str, ty: &Type) -> Result<Self, String> {
        let bad = |what: &str| format!("'{text}' is not {what} (for a {ty} parameter)");
        Ok(match *ty {
            Type::BOOL => match text {
                "true" | "t" | "1" => Self::Bool(true),
                "false" | "f" | "0" => Self::Bool(false),
                _ => return Err(bad("a boolean")),
            },
            Type::INT2 => Self::I16(text.parse().map_err(|_| bad("an integer"))?),
            Type::INT4 => Self::I32(text.parse().map_err(|_| bad("an integer"))?),
            Type::INT8 => Self::I64(text.parse().map_err(|_| bad("an integer"))?),
            Type::FLOAT4 => Self::F32(text.parse().map_err(|_| bad("a number"))?),
            Type::FLOAT8 => Self::F64(text.parse().map_err(|_| bad("a number"))?),
            _ if <&str as ToSql>::accepts(ty) => Self::Text(text),
            _ => {
                return Err(format!(
                    "a {ty} parameter cannot be given as text here: cast it in the statement \
                     ($1::text::{ty})"
                ));
            }
        })
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Self::Bool(v) => v.to_sql(ty, out),
            Self::I16(v) => v.to_sql(ty, out),
            Self::I32(v) => v.to_sql(ty, out),
            Self::I64(v) => v.to_sql(ty, out),
            Self::F32(v) => v.to_sql(ty, out),
            Self::F64(v) => v.to_sql(ty, out),
            Self::Text(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::BOOL | Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8
        ) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// A kept connection and the statements prepared on it.
pub struct Connection {
    client: Client,
    prepared: Vec<(String, Statement)>,
}

/// How an error of the server or the connection is counted: `sql_CODE`
/// (the SQLSTATE, `sql_42P01` for a missing table) or `connection`.
fn classify(e: tokio_postgres::Error) -> TaskError {
    match e.as_db_error() {
        Some(db) => {
            // SQLSTATEs are five digits or capitals: anything else from the
            // wire counts under one kind, so kinds stay few.
            let code = db.code().code();
            let well_formed = code.len() == 5
                && code
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
            let kind = if well_formed {
                format!("sql_{code}")
            } else {
                "sql_other".to_owned()
            };
            TaskError::new(kind, format!("{} {code}: {}", db.severity(), db.message()))
        }
        None if e.is_closed() => TaskError::new("connection_closed", e.to_string()),
        None => TaskError::new("postgres", format!("{e:#}")),
    }
}

impl Connection {
    /// Connects to `url`; the connection's driver runs as its own task
    /// until the client is dropped.
    pub async fn open(url: &str) -> Result<Self, TaskError> {
        let (client, driver) =
            tokio_postgres::connect(url, NoTls)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(_) => classify(e),
                    None => TaskError::new("connect", format!("connecting to PostgreSQL: {e}")),
                })?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(Self {
            client,
            prepared: Vec::new(),
        })
    }

    /// Asks the server, in the background, to cancel the statement this
    /// connection is running (one cut off by a timeout), so a slow server's
    /// backends do not pile up behind dropped connections.
    pub fn cancel_in_background(&self) {
        let token = self.client.cancel_token();
        tokio::spawn(async move {
            let _ = token.cancel_query(NoTls).await;
        });
    }

    /// Runs `query` with `args`: the rows it returned.
    pub async fn run(&mut self, query: &str, args: &[&str]) -> Result<u64, TaskError> {
        let statement = match self.prepared.iter().find(|(q, _)| q == query) {
            Some((_, statement)) => statement.clone(),
            None => {
                let statement = self.client.prepare(query).await.map_err(classify)?;
                // Templated queries could grow the cache without end.
                if self.prepared.len() >= 64 {
                    self.prepared.remove(0);
                }
                self.prepared.push((query.to_owned(), statement.clone()));
                statement
            }
        };
        if statement.params().len() != args.len() {
            return Err(TaskError::new(
                "arguments",
                format!(
                    "the statement has {} placeholders and {} arguments were given",
                    statement.params().len(),
                    args.len()
                ),
            ));
        }
        let params = args
            .iter()
            .zip(statement.params())
            .map(|(text, ty)| Param::convert(text, ty))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TaskError::new("arguments", e))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = self
            .client
            .query_raw(&statement, refs)
            .await
            .map_err(classify)?;
        futures_util::pin_mut!(rows);
        let mut count = 0;
        while let Some(row) = futures_util::StreamExt::next(&mut rows).await {
            row.map_err(classify)?;
            count += 1;
        }
        Ok(count)
    }
}

/// Whether an error of `kind` leaves the connection unusable (it is then
/// dropped, and the next execution opens another).
pub fn drops_connection(kind: &str) -> bool {
    matches!(kind, "timeout" | "connection_closed" | "postgres")
}

/// Checks the rows returned against the count expected.
pub fn check_rows(got: u64, expected: Option<u64>) -> Result<(), TaskError> {
    match expected {
        Some(want) if want != got => Err(TaskError::new(
            "unexpected_rows",
            format!("{got} rows returned, {want} expected"),
        )),
        _ => Ok(()),
    }
}

/// The `postgres` task's options, checked.
#[derive(Debug)]
pub struct PostgresPlan {
    url: String,
    query: String,
    args: Vec<String>,
    rows: Option<u64>,
    timeout: Duration,
    counted: EventCounter,
}

impl PostgresPlan {
    /// Checks `options`; `Err` names the bad parameter.
    pub fn new(options: &PostgresOptions) -> anyhow::Result<Self> {
        options
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| anyhow::anyhow!("--param url: {e}"))?;
        if options.query.trim().is_empty() {
            anyhow::bail!("--param query: an empty statement");
        }
        let timeout = param_timeout(options.timeout.as_deref(), DEFAULT_PG_TIMEOUT)?;
        Ok(Self {
            url: options.url.clone(),
            query: options.query.clone(),
            args: options
                .args
                .as_deref()
                .map(|a| a.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            rows: options.rows,
            timeout,
            counted: EventCounter::named(ROWS),
        })
    }
}

/// One instance of the `postgres` task.
pub struct PostgresTask {
    plan: Arc<PostgresPlan>,
    connection: Option<Connection>,
}

impl PostgresTask {
    /// An instance running `plan`'s statement.
    pub fn new(plan: Arc<PostgresPlan>) -> Self {
        Self {
            plan,
            connection: None,
        }
    }

    async fn query(&mut self, ctx: &Context<'_>) -> Result<(), TaskError> {
        let plan = Arc::clone(&self.plan);
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let started = std::time::Instant::now();
                let opened = Connection::open(&plan.url).await;
                ctx.record_step(
                    "connect",
                    ctx.intended_start(),
                    started,
                    opened.as_ref().err(),
                );
                self.connection.insert(opened?)
            }
        };
        let args: Vec<&str> = plan.args.iter().map(String::as_str).collect();
        let rows = connection.run(&plan.query, &args).await?;
        plan.counted.add(rows);
        check_rows(rows, plan.rows)
    }
}

impl Task for PostgresTask {
    async fn execute(&mut self, ctx: &mut Context<'_>) -> TaskResult {
        let timeout = self.plan.timeout;
        let result = match tokio::time::timeout(timeout, self.query(ctx)).await {
            Ok(result) => result,
            Err(_) => Err(TaskError::new(
                "timeout",
                format!("no answer within {timeout:?}"),
            )),
        };
        if let Err(e) = &result
            && drops_connection(e.kind())
        {
            // A statement cut off mid-way leaves the connection unusable.
            if let Some(connection) = self.connection.take()
                && e.kind() == "timeout"
            {
                connection.cancel_in_background();
            }
        }
        result.into()
    }
}
