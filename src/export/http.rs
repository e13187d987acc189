//! The HTTP client exporters share (OTLP over HTTP, BlazeMeter): HTTP/1.1
//! over TCP or TLS (ring, Mozilla's roots), whole bodies in and out, every
//! request bounded by a timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest response body read (an error page, a JSON answer).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// A response: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text, cut to `limit` characters (for error messages).
    pub fn excerpt(&self, limit: usize) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(limit)
            .collect()
    }
}

/// An HTTP(S) client with a timeout per request.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_response: usize,
}

impl HttpClient {
    /// A client whose requests each give up after `timeout`.
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(crate::tls::provider())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            max_response: MAX_RESPONSE,
        })
    }

    /// The same client reading response bodies of up to `bytes` (a
    /// recorded report can be far larger than an exporter's answers).
    pub fn reading_up_to(self, bytes: usize) -> Self {
        Self {
            max_response: bytes,
            ..self
        }
    }

    /// Sends `method url` with `headers` and `body`; any status is an
    /// answer, only a failure to get one is an error (naming the URL).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| anyhow::anyhow!("a bad request to {url}: {e}"))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), self.max_response)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_bytes();
            anyhow::Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(anyhow::anyhow!("{url}: {}", root_cause(&e))),
            Err(_) => Err(anyhow::anyhow!(
                "{url}: no answer within {:?}",
                self.timeout
            )),
        }
    }
}

/// `text` percent-encoded for a URL's query (everything but RFC 3986's
/// unreserved characters).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The innermost cause of `e` ("connection refused"), which is what a user
/// can act on; hyper's outer layers only say "client error (Connect)".
fn root_cause(e: &anyhow::Error) -> String {
    let mut cause: &dyn std::error::Error = e.as_ref();
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
