//! The Task SDK: what a user implements to generate load.
//!
//! A [`Task`] holds the logic of one operation (an HTTP call, a query, a
//! computation). The engine, not the task, takes timestamps and records
//! latency: `execute` only says whether the operation succeeded. Instances are
//! made by a [`TaskFactory`], as many as the run needs concurrency, and an
//! instance never runs concurrently with itself, so it may own a connection
//! through `&mut self`.
//!
//! - [`context`]: what an execution is told, and the steps it reports.
//! - [`options`]: what a task's builder is configured with.
//! - [`http`], [`scenario`], [`tcp`], [`postgres`], [`websocket`], [`grpc`],
//!   [`noop`], [`sleep`]: the built-in tasks.
//! - [`trace`]: the trace context of a traced execution, to pass on.
//! - [`url`]: where a protocol task's URL points.
//!
//! Nothing here knows the engine: a user binary registers its factories in
//! [`crate::engine::TaskRegistry`], which erases their types for the engine.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

pub mod context;
pub mod grpc;
pub mod http;
pub mod noop;
pub mod options;
pub mod postgres;
pub mod scenario;
pub mod sleep;
pub mod tcp;
pub mod trace;
pub mod url;
pub mod websocket;

pub use context::Context;
pub use options::TaskOptions;

/// Where a task's executions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThreadStrategy {
    /// As tokio tasks on the async runtime: for I/O-bound work (the default).
    Async,
    /// On a dedicated pool of OS threads: for CPU-bound work that would
    /// otherwise starve the runtime's I/O.
    Blocking,
}

impl std::str::FromStr for ThreadStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "async" => Ok(Self::Async),
            "blocking" => Ok(Self::Blocking),
            other => Err(format!(
                "unknown thread strategy '{other}' (expected async or blocking)"
            )),
        }
    }
}

/// A failed execution: a bounded-cardinality `kind` that metrics count by,
/// and a free-form message kept as an example of the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    kind: Cow<'static, str>,
    message: String,
}

impl TaskError {
    /// An error of `kind` (keep the set of kinds small and fixed, e.g.
    /// "timeout", "status_503") with a descriptive `message`.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The class this error is counted under.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The human-readable detail.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<anyhow::Error> for TaskError {
    fn from(e: anyhow::Error) -> Self {
        Self::new("error", format!("{e:#}"))
    }
}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        Self::new(format!("io_{:?}", e.kind()).to_lowercase(), e.to_string())
    }
}

/// What one execution produced. Timing is not part of it: the engine measures.
///
/// The optional `tag` names the operation (for instance "login" or "search"
/// in a task that does several): results are reported per tag. Tags are
/// `&'static str` so their number stays bounded by the code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskResult {
    /// The operation succeeded.
    Success {
        /// Operation name to report under, if any.
        tag: Option<&'static str>,
    },
    /// The operation failed.
    Failure {
        /// Operation name to report under, if any.
        tag: Option<&'static str>,
        /// Why it failed.
        error: TaskError,
    },
    /// Nothing was done: the run was ending and the execution found nothing
    /// to do (a `unique` feeder had run out). It is neither a success nor a
    /// failure and has no latency; the run counts it in its
    /// [`NOT_RUN`](crate::metrics::events::NOT_RUN) counter, so every
    /// arrival dispatched is completed, not run, or unfinished.
    NotRun,
}

impl TaskResult {
    /// An untagged success.
    pub fn success() -> Self {
        Self::Success { tag: None }
    }

    /// An untagged failure.
    pub fn failure(error: impl Into<TaskError>) -> Self {
        Self::Failure {
            tag: None,
            error: error.into(),
        }
    }

    /// The same result, reported under `tag` (an execution not run has no
    /// report to be under).
    pub fn tagged(self, tag: &'static str) -> Self {
        match self {
            Self::Success { .. } => Self::Success { tag: Some(tag) },
            Self::Failure { error, .. } => Self::Failure {
                tag: Some(tag),
                error,
            },
            Self::NotRun => Self::NotRun,
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&'static str> {
        match self {
            Self::Success { tag } | Self::Failure { tag, .. } => *tag,
            Self::NotRun => None,
        }
    }
}

impl<E: Into<TaskError>> From<Result<(), E>> for TaskResult {
    fn from(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Self::success(),
            Err(e) => Self::failure(e),
        }
    }
}

/// One load operation. Implement `execute`; `setup` and `cleanup` run once per
/// instance, before the load starts and after it ends.
///
/// A panic inside `execute` is caught and counted as a failure of kind
/// "panic"; the instance is then replaced by a fresh one from the factory.
pub trait Task: Send + 'static {
    /// Where executions run unless the run's configuration overrides it.
    const THREAD_STRATEGY: ThreadStrategy = ThreadStrategy::Async;

    /// Prepares the instance (open a connection, load data). A failure
    /// aborts the run with its message.
    fn setup(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Performs one operation. `ctx` says which instance and iteration it
    /// is and when it was due, and records the steps it goes through.
    fn execute(&mut self, ctx: &mut Context<'_>) -> impl Future<Output = TaskResult> + Send;

    /// Releases what `setup` acquired. Errors are logged, not fatal.
    fn cleanup(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Makes task instances. Shared read-only data lives in the factory and is
/// handed to each instance it creates.
pub trait TaskFactory: Send + Sync + 'static {
    /// The task type this factory makes.
    type Task: Task;

    /// Creates instance number `instance` (0, 1, 2, ... in creation order).
    fn create(&self, instance: usize) -> anyhow::Result<Self::Task>;
}

impl<T, F> TaskFactory for F
where
    T: Task,
    F: Fn(usize) -> anyhow::Result<T> + Send + Sync + 'static,
{
    type Task = T;

    fn create(&self, instance: usize) -> anyhow::Result<T> {
        self(instance)
    }
}
