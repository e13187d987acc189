//! Carrying OTLP to a collector: gRPC (tonic, with the generated clients of
//! the official protocol definitions) or protobuf over HTTP.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::otlp::{OtlpEndpoint, OtlpProtocol};
use crate::export::ExportError;
use crate::export::http::HttpClient;

/// How requests reach the collector.
enum Route {
    /// OTLP/gRPC: a lazily connected channel and the headers as metadata.
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
    },
    /// OTLP/HTTP with protobuf bodies (boxed: the client is large).
    Http {
        client: Box<HttpClient>,
        headers: Vec<(String, String)>,
    },
}

/// A connection to one signal's collector endpoint.
pub struct OtlpSender {
    route: Route,
    /// Where it goes (for HTTP, with the signal's path).
    url: String,
}

impl OtlpSender {
    /// A sender to `endpoint`; it connects lazily, so an unreachable
    /// collector fails exports, never the start.
    pub fn new(
        endpoint: &OtlpEndpoint,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let route = match endpoint.protocol {
            OtlpProtocol::Grpc => {
                let mut channel = Endpoint::from_shared(endpoint.url.clone())?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                if endpoint.url.starts_with("https://") {
                    channel = channel.tls_config(ClientTlsConfig::new().with_webpki_roots())?;
                }
                Route::Grpc {
                    channel: channel.connect_lazy(),
                    metadata: metadata_of(headers)?,
                }
            }
            OtlpProtocol::HttpProtobuf => {
                let mut all = vec![(
                    "content-type".to_owned(),
                    "application/x-protobuf".to_owned(),
                )];
                all.extend(headers.iter().cloned());
                Route::Http {
                    client: Box::new(HttpClient::new(timeout)?),
                    headers: all,
                }
            }
        };
        Ok(Self {
            route,
            url: endpoint.url.clone(),
        })
    }

    /// Sends a metrics request; an error names the collector and the cause.
    pub async fn metrics(&self, request: ExportMetricsServiceRequest) -> Result<(), ExportError> {
        let answer: ExportMetricsServiceResponse = self
            .exchange(request, |channel, call| async move {
                MetricsServiceClient::new(channel).export(call).await
            })
            .await?;
        match answer.partial_success {
            Some(p) if p.rejected_data_points > 0 => Err(self.failed(format!(
                "rejected {} data points: {}",
                p.rejected_data_points, p.error_message
            ))),
            _ => Ok(()),
        }
    }

    /// Sends a logs request.
    pub async fn logs(&self, request: ExportLogsServiceRequest) -> Result<(), ExportError> {
        let answer: ExportLogsServiceResponse = self
            .exchange(request, |channel, call| async move {
                LogsServiceClient::new(channel).export(call).await
            })
            .await?;
        match answer.partial_success {
            Some(p) if p.rejected_log_records > 0 => Err(self.failed(format!(
                "rejected {} log records: {}",
                p.rejected_log_records, p.error_message
            ))),
            _ => Ok(()),
        }
    }

    /// One request and its answer: through `grpc` (the signal's generated
    /// client) on the gRPC route, as a protobuf POST on the HTTP one.
    async fn exchange<Req, Resp, Call, Answer>(
        &self,
        request: Req,
        grpc: Call,
    ) -> Result<Resp, ExportError>
    where
        Req: Message,
        Resp: Message + Default,
        Call: FnOnce(Channel, tonic::Request<Req>) -> Answer,
        Answer: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        match &self.route {
            Route::Grpc { channel, metadata } => {
                grpc(channel.clone(), with_metadata(request, metadata))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| self.failed(status.message()))
            }
            Route::Http { client, headers } => {
                let body = self.post(client, headers, request.encode_to_vec()).await?;
                Resp::decode(body).map_err(|e| self.failed(format!("a bad answer: {e}")))
            }
        }
    }

    /// POSTs `body` with `client`; the answer's body if it succeeded.
    async fn post(
        &self,
        client: &HttpClient,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Bytes, ExportError> {
        let answer = client
            .send(Method::POST, &self.url, headers, Bytes::from(body))
            .await
            .map_err(ExportError::from)?;
        if !answer.status.is_success() {
            return Err(self.failed(format!("HTTP {} {}", answer.status, answer.excerpt(200))));
        }
        Ok(answer.body)
    }

    fn failed(&self, why: impl std::fmt::Display) -> ExportError {
        ExportError::new(format!("{}: {why}", self.url))
    }
}

fn with_metadata<T>(message: T, metadata: &MetadataMap) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request
}

/// `headers` as gRPC metadata (keys lower-cased, as gRPC requires).
pub fn metadata_of(headers: &[(String, String)]) -> anyhow::Result<MetadataMap> {
    let mut metadata = MetadataMap::new();
    for (key, value) in headers {
        let name = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|e| anyhow::anyhow!("header '{key}': {e}"))?;
        let value = MetadataValue::try_from(value.as_str())
            .map_err(|e| anyhow::anyhow!("header '{key}': {e}"))?;
        metadata.insert(name, value);
    }
    Ok(metadata)
}
