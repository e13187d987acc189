//! Metrics: recording results without a global lock, and merging them exactly.
//!
//! - [`histogram`]: the one latency-histogram shape, V2 encoding, summaries.
//! - [`stats`]: per-operation counters and histograms within a window.
//! - [`recorder`]: the sharded hot-path recorders workers write into.
//! - [`aggregate`]: the once-a-second sweep into a series and running totals.
//! - [`cpu`]: the generator's own CPU use, for the self-check.
//! - [`events`]: named event counters tasks bump (reconnects, ...).

pub mod aggregate;
pub mod cpu;
pub mod events;
pub mod histogram;
pub mod recorder;
pub mod stats;

pub use aggregate::{Aggregator, HistogramPair, WindowReport};
pub use histogram::{LatencyHistogram, LatencySummary};
pub use recorder::{MetricsHub, Recorder};
pub use stats::{ErrorCount, OpStats, Phase, Tag};
