//! Carrying OTLP metrics to a collector: gRPC (tonic, with the generated
//! client of the official protocol definitions) or protobuf over HTTP.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::otlp::{OtlpEndpoint, OtlpProtocol};
use crate::export::ExportError;
use crate::export::http::HttpClient;

/// A connection to a collector's metrics service.
pub enum MetricsSender {
    /// OTLP/gRPC.
    Grpc {
        /// The generated client.
        client: MetricsServiceClient<Channel>,
        /// Headers, as gRPC metadata.
        metadata: MetadataMap,
        /// Where it goes, for messages.
        url: String,
    },
    /// OTLP/HTTP with protobuf bodies.
    Http {
        /// The HTTP client.
        client: HttpClient,
        /// The full URL (`.../v1/metrics`).
        url: String,
        /// Headers, content type included.
        headers: Vec<(String, String)>,
    },
}

impl MetricsSender {
    /// A sender to `endpoint`; it connects lazily, so an unreachable
    /// collector fails exports, never the start.
    pub fn new(
        endpoint: &OtlpEndpoint,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        match endpoint.protocol {
            OtlpProtocol::Grpc => {
                let mut channel = Endpoint::from_shared(endpoint.url.clone())?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                if endpoint.url.starts_with("https://") {
                    channel = channel.tls_config(ClientTlsConfig::new().with_webpki_roots())?;
                }
                let mut metadata = MetadataMap::new();
                for (key, value) in headers {
                    let key = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
                        .map_err(|e| anyhow::anyhow!("header '{key}': {e}"))?;
                    let value = MetadataValue::try_from(value.as_str())
                        .map_err(|e| anyhow::anyhow!("header '{key}': {e}"))?;
                    metadata.insert(key, value);
                }
                Ok(Self::Grpc {
                    client: MetricsServiceClient::new(channel.connect_lazy()),
                    metadata,
                    url: endpoint.url.clone(),
                })
            }
            OtlpProtocol::HttpProtobuf => {
                let mut all = vec![(
                    "content-type".to_owned(),
                    "application/x-protobuf".to_owned(),
                )];
                all.extend(headers.iter().cloned());
                Ok(Self::Http {
                    client: HttpClient::new(timeout)?,
                    url: endpoint.url.clone(),
                    headers: all,
                })
            }
        }
    }

    /// Sends `request`; an error names the collector and what went wrong.
    pub async fn send(&mut self, request: ExportMetricsServiceRequest) -> Result<(), ExportError> {
        match self {
            Self::Grpc {
                client,
                metadata,
                url,
            } => {
                let mut call = tonic::Request::new(request);
                *call.metadata_mut() = metadata.clone();
                let answer = client
                    .export(call)
                    .await
                    .map_err(|status| ExportError::new(format!("{url}: {}", status.message())))?;
                partial_success(url, answer.into_inner().partial_success)
            }
            Self::Http {
                client,
                url,
                headers,
            } => {
                let body = Bytes::from(request.encode_to_vec());
                let answer = client
                    .send(Method::POST, url, headers, body)
                    .await
                    .map_err(ExportError::from)?;
                if !answer.status.is_success() {
                    return Err(ExportError::new(format!(
                        "{url}: HTTP {} {}",
                        answer.status,
                        answer.excerpt(200)
                    )));
                }
                let decoded = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(answer.body)
                    .map_err(|e| ExportError::new(format!("{url}: a bad answer: {e}")))?;
                partial_success(url, decoded.partial_success)
            }
        }
    }
}

/// A collector that took the request but refused some points says so in
/// its answer: that is not delivered either.
fn partial_success(
    url: &str,
    partial: Option<
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess,
    >,
) -> Result<(), ExportError> {
    match partial {
        Some(p) if p.rejected_data_points > 0 => Err(ExportError::new(format!(
            "{url} rejected {} data points: {}",
            p.rejected_data_points, p.error_message
        ))),
        _ => Ok(()),
    }
}
