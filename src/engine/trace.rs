//! Spans the engine reports while a run is traced: each instance's setup
//! and cleanup, and a sample of executions, all children of the run's own
//! span, handed to a [`SpanSink`] (an exporter's, off the hot path).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::task::trace::TraceParent;

/// A finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// What it covers: "setup", "cleanup" or "execute".
    pub name: &'static str,
    /// Its own id.
    pub span_id: [u8; 8],
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// The task instance it ran on.
    pub instance: usize,
    /// The result's tag (executions).
    pub tag: Option<&'static str>,
    /// The error kind if it failed, with its message.
    pub error: Option<(String, String)>,
}

/// Takes finished spans; must not block (drop what it cannot keep).
pub trait SpanSink: Send + Sync {
    /// Takes one finished span of the run.
    fn record(&self, span: SpanRecord);
}

/// How a run is traced.
#[derive(Clone)]
pub struct Tracing {
    /// Where spans go.
    pub sink: Arc<dyn SpanSink>,
    /// The run's span: the parent of every span the engine reports.
    pub parent: TraceParent,
    /// Share of executions traced, 0 to 1.
    pub sample_ratio: f64,
}

impl fmt::Debug for Tracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("parent", &self.parent)
            .field("sample_ratio", &self.sample_ratio)
            .finish_non_exhaustive()
    }
}

impl Tracing {
    /// Whether to trace the next execution.
    #[inline]
    pub fn sample(&self) -> bool {
        self.sample_ratio > 0.0 && fastrand::f64() < self.sample_ratio
    }

    /// A new span id, never all zeros.
    pub fn new_span_id() -> [u8; 8] {
        (fastrand::u64(1..)).to_be_bytes()
    }
}
