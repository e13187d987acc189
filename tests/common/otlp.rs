//! An OTLP receiver for tests, built from the official protocol
//! definitions (the opentelemetry-proto crate's generated gRPC service and
//! messages): it keeps every metrics request it is sent, over gRPC or
//! protobuf over HTTP, and can be told to refuse or to hang.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogramDataPoint, metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// Every metrics request received, in order.
pub type Received = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;
/// Every span received.
pub type Spans = Arc<Mutex<Vec<Span>>>;
/// Every log record received.
pub type Logs = Arc<Mutex<Vec<LogRecord>>>;

/// A receiver running on its own thread and runtime.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it got.
    pub received: Received,
    /// The spans it got (gRPC).
    pub spans: Spans,
    /// The log records it got (gRPC).
    pub logs: Logs,
    _runtime: tokio::runtime::Runtime,
}

struct LogsReceived(Logs);

#[tonic::async_trait]
impl LogsService for LogsReceived {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let records = request
            .into_inner()
            .resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records);
        self.0.lock().unwrap().extend(records);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

struct Traces(Spans);

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

struct Service(Received);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// An OTLP/gRPC receiver on loopback.
    pub fn grpc() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let received = Received::default();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Spans::default();
        let service = MetricsServiceServer::new(Service(Arc::clone(&received)));
        let traces = TraceServiceServer::new(Traces(Arc::clone(&spans)));
        let logs = Logs::default();
        let logs_service = LogsServiceServer::new(LogsReceived(Arc::clone(&logs)));
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .add_service(traces)
                .add_service(logs_service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            addr,
            received,
            spans,
            logs,
            _runtime: runtime,
        }
    }

    /// An OTLP/HTTP receiver on loopback (POST /v1/metrics, protobuf).
    pub fn http() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let received = Received::default();
        let spans = Spans::default();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let store = (Arc::clone(&received), Arc::clone(&spans));
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move { Ok::<_, Infallible>(answer_http(request, &store).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            spans,
            logs: Logs::default(),
            _runtime: runtime,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.received.lock().unwrap().clone()
    }
}

async fn answer_http(
    request: Request<hyper::body::Incoming>,
    (store, spans): &(Received, Spans),
) -> Response<Full<Bytes>> {
    let status = |code: u16, text: &str| {
        Response::builder()
            .status(code)
            .body(Full::new(Bytes::from(text.to_owned())))
            .unwrap()
    };
    let path = request.uri().path().to_owned();
    if path == "/v1/logs" {
        // Taken and dropped: the gRPC receiver is the one that keeps logs.
        return Response::new(Full::new(Bytes::new()));
    }
    if !matches!(path.as_str(), "/v1/metrics" | "/v1/traces")
        || request.method() != hyper::Method::POST
    {
        return status(404, "not here");
    }
    if request.headers().get("content-type").map(|v| v.as_bytes())
        != Some(b"application/x-protobuf")
    {
        return status(415, "protobuf only");
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    if path == "/v1/traces" {
        return match ExportTraceServiceRequest::decode(body) {
            Ok(decoded) => {
                let got = decoded
                    .resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans);
                spans.lock().unwrap().extend(got.flat_map(|s| s.spans));
                Response::new(Full::new(Bytes::from(
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )))
            }
            Err(e) => status(400, &e.to_string()),
        };
    }
    match ExportMetricsServiceRequest::decode(body) {
        Ok(decoded) => {
            store.lock().unwrap().push(decoded);
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Full::new(Bytes::from(
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )))
                .unwrap()
        }
        Err(e) => status(400, &e.to_string()),
    }
}

/// A resource attribute's text value.
pub fn resource_attribute(request: &ExportMetricsServiceRequest, key: &str) -> Option<String> {
    let resource = request.resource_metrics.first()?.resource.as_ref()?;
    resource
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// The data points of exponential histogram `name` in `request`.
pub fn exponential_points(
    request: &ExportMetricsServiceRequest,
    name: &str,
) -> Vec<ExponentialHistogramDataPoint> {
    metrics_named(request, name)
        .filter_map(|m| match m {
            metric::Data::ExponentialHistogram(h) => Some(h.data_points.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The integer values of sum `name`'s data points in `request`.
pub fn sum_values(request: &ExportMetricsServiceRequest, name: &str) -> Vec<i64> {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    metrics_named(request, name)
        .filter_map(|m| match m {
            metric::Data::Sum(s) => Some(
                s.data_points
                    .iter()
                    .filter_map(|p| match p.value {
                        Some(Value::AsInt(n)) => Some(n),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn metrics_named<'a>(
    request: &'a ExportMetricsServiceRequest,
    name: &'a str,
) -> impl Iterator<Item = &'a metric::Data> + 'a {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(move |m| m.name == name)
        .filter_map(|m| m.data.as_ref())
}

/// Exponential histograms merged as a backend merges them: brought to the
/// lowest scale among them, buckets added. (scale, offset, counts, count).
pub fn merge_exponential(points: &[ExponentialHistogramDataPoint]) -> (i32, i32, Vec<u64>, u64) {
    let scale = points.iter().map(|p| p.scale).min().unwrap();
    let mut buckets: std::collections::BTreeMap<i32, u64> = Default::default();
    let mut count = 0;
    for p in points {
        let shift = p.scale - scale;
        let positive = p.positive.as_ref().unwrap();
        for (i, n) in positive.bucket_counts.iter().enumerate() {
            // Bucket i at scale s is bucket i >> shift at scale s - shift.
            *buckets
                .entry((positive.offset + i as i32) >> shift)
                .or_default() += n;
        }
        count += p.count;
        assert_eq!(p.zero_count, 0, "no zero latencies");
    }
    let offset = *buckets.keys().next().unwrap();
    let last = *buckets.keys().next_back().unwrap();
    let counts = (offset..=last)
        .map(|i| buckets.get(&i).copied().unwrap_or(0))
        .collect();
    (scale, offset, counts, count)
}

/// The upper bound of the bucket holding quantile `q` of a merged
/// exponential histogram.
pub fn exponential_quantile(merged: &(i32, i32, Vec<u64>, u64), q: f64) -> f64 {
    let (scale, offset, counts, count) = merged;
    let rank = (q * *count as f64).ceil() as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return 2f64.powf(f64::from(offset + i as i32 + 1) * 2f64.powi(-scale));
        }
    }
    f64::NAN
}
