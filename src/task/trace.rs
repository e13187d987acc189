//! The trace context of the execution running now, for tasks that pass it
//! on: a sampled execution of the built-in http task sends it as a W3C
//! `traceparent` header, so the system under test's own traces join the
//! test's trace.

use std::fmt;

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// A span to parent others on: W3C trace context's trace id and span id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace (the same on every peer of one test).
    pub trace_id: [u8; 16],
    /// The span.
    pub span_id: [u8; 8],
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.header())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceParent {
    /// The `traceparent` header value: version 00, sampled.
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }
}

/// The span of the execution running now, if it is traced.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|parent| *parent).ok()
}

/// Runs `future` as the traced execution `span`.
pub async fn within<F: std::future::Future>(span: TraceParent, future: F) -> F::Output {
    CURRENT.scope(span, future).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_header_is_w3c_and_only_seen_inside() {
        let span = TraceParent {
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
        };
        assert_eq!(
            span.header(),
            "00-abababababababababababababababab-0102030405060708-01"
        );
        assert_eq!(current(), None);
        assert_eq!(within(span, async { current() }).await, Some(span));
    }
}
