//! Vajra: a coordinated-omission-free load generator with exact open-model
//! pacing, built to run standalone or as a cluster of identical peers.
//!
//! # Layout
//!
//! - [`task`]: the Task SDK (`Task`, `TaskResult`, `TaskFactory`, the
//!   `Context` an execution gets and records its steps in), the built-in
//!   `http`, `scenario` (user journeys from a file), `noop` and `sleep`
//!   tasks, and the trace context a traced execution passes on.
//! - [`load`]: load patterns, the piecewise-linear rate curve they compile
//!   to, and the arrival schedule derived from its integral.
//! - [`engine`]: runs a task under a load model: scheduler thread, workers,
//!   drain, stop signal, the task registry, the spans of a traced run.
//! - [`metrics`]: sharded recording with no global lock, HDR
//!   histograms, the per-second aggregator, CPU self-measurement.
//! - [`threshold`]: pass/fail criteria and their evaluation.
//! - [`export`]: the report model, console output, JSON and CSV files, the
//!   exact merge of peers' reports, and live exporters (the `Exporter` seam,
//!   Prometheus, OpenTelemetry, BlazeMeter).
//! - [`config`]: flags, environment and files layered into a run.
//! - [`cluster`]: identical peers as one cluster: the QUIC endpoint and its
//!   admission, gossip membership (chitchat), discovery, Raft (openraft),
//!   load plans, the runner of a peer's share and the control commands.
//! - [`history`]: finished runs kept in a store (SQLite or PostgreSQL),
//!   compared, and used as the baseline of relative thresholds.
//! - [`web`]: the HTTP API and web UI any peer serves: authentication,
//!   live figures pushed to browsers, results as JSON, CSV and HTML.
//! - [`target`]: a built-in HTTP target for demos, tests and benchmarks.
//! - [`tls`]: TLS pieces the http task and the peer endpoint share.
//! - [`fuzzing`]: an entry point per decoder of wire bytes, for the fuzz
//!   targets and the random-input tests.
//! - [`logging`]: log output, with openraft's expected-event reports at
//!   the level they deserve, and a tap for exporting warnings.
//! - [`cli`]: the `vajra-peer` command line, reusable by user binaries.
//! - [`load_test`]: a test run from Rust code (a builder to a `Report`),
//!   without the command line.
//!
//! The data path from plan to report is described in `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod export;
pub mod fuzzing;
pub mod history;
pub mod load;
pub mod load_test;
pub mod logging;
pub mod metrics;
pub mod target;
pub mod task;
pub mod threshold;
pub mod tls;
pub mod web;
