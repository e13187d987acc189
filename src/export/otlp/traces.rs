//! Traces: the run's span on this generator, its instances' setups and
//! cleanups, and sampled executions, exported by opentelemetry-otlp's span
//! exporter from a batching task of our own.
//!
//! Every peer derives a test's trace id from the test id, so the spans of
//! all peers of one test land in one trace, and a sampled HTTP execution
//! passes its span on to the system under test (`traceparent`). The
//! engine hands spans over without waiting: a full batch queue drops them,
//! and the summary says how many.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::config::otlp::{OtlpProtocol, OtlpSettings};
use crate::engine::trace::{SpanRecord, SpanSink, Tracing};
use crate::export::http::HttpClient;
use crate::export::{ExportError, RunInfo};
use crate::task::trace::TraceParent;

/// Spans kept waiting for export before new ones are dropped.
const QUEUE: usize = 8_192;
/// Most spans per export.
const BATCH: usize = 512;
/// Longest a span waits for its batch.
const BATCH_EVERY: Duration = Duration::from_secs(1);

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part.as_bytes());
        context.update(&[0]);
    }
    context
        .finish()
        .as_ref()
        .try_into()
        .expect("a SHA-256 digest")
}

/// The trace id of test `test_id`: the same on every peer.
pub fn trace_id_of(test_id: &str) -> [u8; 16] {
    digest(&["vajra trace", test_id])[..16]
        .try_into()
        .expect("16 bytes")
}

/// The span id of `peer`'s share of test `test_id`.
pub fn run_span_of(test_id: &str, peer: &str) -> [u8; 8] {
    digest(&["vajra run span", test_id, peer])[..8]
        .try_into()
        .expect("8 bytes")
}

/// The run's span, as the parent of what the engine reports.
pub fn run_parent(run: &RunInfo) -> TraceParent {
    TraceParent {
        trace_id: trace_id_of(&run.test_id),
        span_id: run_span_of(&run.test_id, &run.peer),
    }
}

/// What the batching task tells the exporter at the end.
#[derive(Debug, Default)]
struct Tally {
    dropped: AtomicU64,
    failed: AtomicU64,
    error: Mutex<Option<String>>,
}

/// The span sink the engine writes to: a bounded queue to the batcher.
struct QueueSink {
    /// Spans, then `None` when the run is over.
    queue: mpsc::Sender<Option<SpanRecord>>,
    tally: Arc<Tally>,
}

impl SpanSink for QueueSink {
    fn record(&self, span: SpanRecord) {
        if self.queue.try_send(Some(span)).is_err() {
            self.tally.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A run's traces: the sink for the engine and the batching task behind it.
pub struct RunTraces {
    sink: Option<Arc<QueueSink>>,
    task: tokio::task::JoinHandle<()>,
    tally: Arc<Tally>,
    run: RunInfo,
    parent: TraceParent,
    sample_ratio: f64,
}

impl RunTraces {
    /// Starts exporting `run`'s spans per `settings`.
    pub fn start(run: &RunInfo, settings: &OtlpSettings) -> anyhow::Result<Self> {
        let mut exporter = span_exporter(settings)?;
        exporter.set_resource(&resource_of(run, settings));
        let (queue, spans) = mpsc::channel(QUEUE);
        let tally = Arc::new(Tally::default());
        let parent = run_parent(run);
        let task = tokio::spawn(batch(exporter, spans, parent, Arc::clone(&tally)));
        Ok(Self {
            sink: Some(Arc::new(QueueSink {
                queue,
                tally: Arc::clone(&tally),
            })),
            task,
            tally,
            run: run.clone(),
            parent,
            sample_ratio: settings.trace_sample_ratio,
        })
    }

    /// How the engine traces the run.
    pub fn tracing(&self) -> Option<Tracing> {
        let sink = self.sink.as_ref()?;
        Some(Tracing {
            sink: Arc::clone(sink) as Arc<dyn SpanSink>,
            parent: self.parent,
            sample_ratio: self.sample_ratio,
        })
    }

    /// Ends the run's span and exports what is left; an error says what
    /// was not delivered.
    pub async fn finish(&mut self, outcome_error: Option<String>) -> Result<(), ExportError> {
        if let Some(sink) = self.sink.take() {
            let run_span = SpanRecord {
                name: "run",
                span_id: self.parent.span_id,
                start: self.run.starts_at,
                end: SystemTime::now(),
                instance: 0,
                tag: None,
                error: outcome_error.map(|e| ("run".to_owned(), e)),
            };
            // The engine's copies of the sink may outlive the run (in a
            // kept configuration): the end is said, not left to the queue
            // closing.
            let _ = sink.queue.send(Some(run_span)).await;
            let _ = sink.queue.send(None).await;
        }
        let _ = (&mut self.task).await;
        let dropped = self.tally.dropped.load(Ordering::Relaxed);
        let failed = self.tally.failed.load(Ordering::Relaxed);
        match (failed, dropped, self.tally.error.lock().clone()) {
            (0, 0, _) => Ok(()),
            (failed, dropped, error) => Err(ExportError::new(format!(
                "{failed} spans not exported ({}), {dropped} dropped at a full queue",
                error.unwrap_or_else(|| "no error".into())
            ))),
        }
    }
}

/// A run's traces dropped unfinished (their exporter was abandoned at the
/// flush timeout) stop exporting.
impl Drop for RunTraces {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn span_exporter(settings: &OtlpSettings) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let endpoint = &settings.traces;
    let exporter = match endpoint.protocol {
        OtlpProtocol::Grpc => {
            let metadata = super::transport::metadata_of(&settings.headers)?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.url.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata);
            if endpoint.url.starts_with("https://") {
                builder = builder
                    .with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
            }
            builder.build()?
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.url.clone())
            .with_timeout(settings.timeout)
            .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>())
            .with_http_client(HttpClient::new(settings.timeout)?)
            .build()?,
    };
    Ok(exporter)
}

fn resource_of(run: &RunInfo, settings: &OtlpSettings) -> Resource {
    let attributes = super::metrics::resource_attributes(run, settings)
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v));
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

/// Takes spans from the queue and exports them in batches until it closes.
async fn batch(
    exporter: opentelemetry_otlp::SpanExporter,
    mut spans: mpsc::Receiver<Option<SpanRecord>>,
    parent: TraceParent,
    tally: Arc<Tally>,
) {
    let scope = InstrumentationScope::builder("vajra")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        let deadline = tokio::time::Instant::now() + BATCH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(Some(span))) => batch.push(span_data(span, parent, &scope)),
                Ok(Some(None) | None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let count = batch.len() as u64;
        if let Err(e) = exporter.export(batch).await {
            tally.failed.fetch_add(count, Ordering::Relaxed);
            *tally.error.lock() = Some(e.to_string());
        }
    }
}

fn span_data(span: SpanRecord, parent: TraceParent, scope: &InstrumentationScope) -> SpanData {
    let trace_id = TraceId::from_bytes(parent.trace_id);
    let is_run = span.span_id == parent.span_id;
    let mut attributes = vec![KeyValue::new("vajra.instance", span.instance as i64)];
    if let Some(tag) = span.tag {
        attributes.push(KeyValue::new(super::metrics::TAG, tag));
    }
    let status = match &span.error {
        Some((kind, message)) => {
            attributes.push(KeyValue::new(super::metrics::ERROR_TYPE, kind.clone()));
            Status::error(message.clone())
        }
        None => Status::Unset,
    };
    SpanData {
        span_context: SpanContext::new(
            trace_id,
            SpanId::from_bytes(span.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: if is_run {
            SpanId::INVALID
        } else {
            SpanId::from_bytes(parent.span_id)
        },
        parent_span_is_remote: false,
        span_kind: if span.name == "execute" {
            SpanKind::Client
        } else {
            SpanKind::Internal
        },
        name: Cow::Borrowed(span.name),
        start_time: span.start,
        end_time: span.end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (head, body) = request.into_parts();
        let headers: Vec<(String, String)> = head
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
            .collect();
        let answer = self
            .send(head.method, &head.uri.to_string(), &headers, body)
            .await
            .map_err(|e| -> opentelemetry_http::HttpError { e.into() })?;
        let mut response = opentelemetry_http::Response::new(answer.body);
        *response.status_mut() = answer.status;
        Ok(response)
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}
