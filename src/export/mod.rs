//! Export: turning a finished run into what people and tools read.
//!
//! - [`report`]: the report model (summary, self-check, thresholds, series,
//!   histograms), serialised as JSON.
//! - [`console`]: live progress and the end-of-run summary table.
//! - [`files`]: writing `.json`, `.csv` and `.html` report files.
//! - [`html`]: the self-contained HTML report.
//! - [`merge`]: the exact merge of peers' reports into the cluster's.
//! - [`exporter`]: the [`Exporter`] seam live outputs implement.
//! - [`pipeline`]: exporters on their own tasks behind bounded queues,
//!   and what each delivered.
//! - [`registry`]: exporters by name, built-in and registered.
//! - [`totals`]: the running totals exporters keep.
//! - [`prometheus`]: `/metrics`, with cluster-exact percentiles.
//! - [`otlp`]: OpenTelemetry metrics and traces over gRPC or HTTP.
//! - [`blazemeter`]: BlazeMeter's external results.
//! - [`http`]: the HTTP client exporters share.

pub mod blazemeter;
pub mod console;
pub mod exporter;
pub mod files;
pub mod html;
pub mod http;
pub mod merge;
pub mod otlp;
pub mod pipeline;
pub mod prometheus;
pub mod registry;
pub mod report;
pub mod totals;

pub use exporter::{ExportError, ExportWindow, Exporter, RunInfo};
pub use pipeline::{ExportObserver, ExportOutcome, ExportPipeline};
pub use report::{Outcome, Report};
