//! Export: turning a finished run into what people and tools read.
//!
//! - [`report`]: the report model (summary, self-check, thresholds, series,
//!   histograms), serialised as JSON.
//! - [`console`]: live progress and the end-of-run summary table.
//! - [`files`]: writing `.json` and `.csv` report files.
//! - [`merge`]: the exact merge of peers' reports into the cluster's.

pub mod console;
pub mod files;
pub mod merge;
pub mod report;

pub use report::{Outcome, Report};
