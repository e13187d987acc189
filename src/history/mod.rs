//! Run history: every finished test, kept in a store, listed, compared
//! and used as the baseline of relative thresholds.
//!
//! - [`store`]: the [`Store`] seam and what it keeps (a [`RecordedRun`]:
//!   the report's JSON verbatim, a [`RunSummary`] to list and filter by).
//! - [`schema`]: the versioned migrations both backends apply at start.
//! - [`sqlite`]: the embedded default (a bundled SQLite, one file).
//! - [`postgres`]: PostgreSQL (`--store postgres://…`).
//! - [`baseline`]: `--baseline last|last-passed|RUN_ID` and relative
//!   thresholds (`p99<+10%`) judged against the run it picks.
//! - [`compare`]: two runs side by side, with deltas.
//! - [`session`]: a `run`'s or `start --wait`'s store and baseline.
//! - [`follower`]: an orchestrator's loop: every test the cluster ends,
//!   followed to its merged report and recorded once.
//! - [`remote`]: the same questions asked of a node's HTTP API.
//! - [`recorder`]: writes runs as they finish, queueing (bounded) while
//!   the store is away.

pub mod baseline;
pub mod compare;
pub mod follower;
pub mod postgres;
pub mod recorder;
pub mod remote;
pub mod schema;
pub mod session;
pub mod sqlite;
pub mod store;

pub use store::{RecordedRun, RunFilter, RunSummary, Store, StoreError, open};
