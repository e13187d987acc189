//! A node's history through its HTTP API (`vajra-peer history --api URL`):
//! the same questions as a store, asked of an orchestrator.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::store::{RecordedRun, RunFilter, RunSummary, Store, StoreError};
use crate::export::http::HttpClient;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a long test's report).
const MAX_ANSWER: usize = 512 * 1024 * 1024;

/// An orchestrator's history, read through its API.
pub struct RemoteStore {
    base: String,
    token: Option<String>,
    client: HttpClient,
}

#[derive(Deserialize)]
struct RunList {
    runs: Vec<RunSummary>,
}

#[derive(Deserialize)]
struct RunDetail {
    summary: RunSummary,
    definition: serde_json::Value,
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl RemoteStore {
    /// The history of the node whose API is at `base` (`http(s)://HOST:PORT`),
    /// asked with `token` if given.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, StoreError> {
        let bad = |detail: &str| StoreError::BadUrl {
            url: base.to_owned(),
            detail: detail.to_owned(),
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(bad("an API is http://HOST:PORT or https://HOST:PORT"));
        }
        let client = HttpClient::new(TIMEOUT)
            .map_err(|e| bad(&format!("{e:#}")))?
            .reading_up_to(MAX_ANSWER);
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    /// `GET`/`DELETE` of `path` under `/api/v1/history`: its status and
    /// body, or why there was none.
    async fn ask(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes), StoreError> {
        let url = format!("{}/api/v1/history{path}", self.base);
        let headers: Vec<(String, String)> = self
            .token
            .iter()
            .map(|t| ("authorization".to_owned(), format!("Bearer {t}")))
            .collect();
        let answer = self
            .client
            .send(method, &url, &headers, Bytes::new())
            .await
            .map_err(|e| StoreError::Unreachable {
                store: self.describe(),
                detail: format!("{e:#}"),
            })?;
        Ok((answer.status, answer.body))
    }

    /// The body of a 2xx answer; any other status as the error it names.
    async fn expect(&self, method: Method, path: &str) -> Result<Option<Bytes>, StoreError> {
        let (status, body) = self.ask(method, path).await?;
        if status.is_success() {
            return Ok(Some(body));
        }
        if status == StatusCode::NOT_FOUND && path.starts_with("/runs/") {
            return Ok(None);
        }
        let message = serde_json::from_slice::<Envelope>(&body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        let store = self.describe();
        let detail = format!("{status}: {message}");
        Err(match status.as_u16() {
            503 => StoreError::Unreachable { store, detail },
            _ => StoreError::Other { store, detail },
        })
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(body).map_err(|e| StoreError::Other {
            store: self.describe(),
            detail: format!("an answer that does not read: {e}"),
        })
    }
}

/// The query string of `filter` (built apart: the serializer is not
/// `Send`, so it must not live across an await).
fn list_query(filter: &RunFilter) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(name) = &filter.name {
        query.append_pair("name", name);
    }
    if let Some(outcome) = &filter.outcome {
        query.append_pair("outcome", outcome);
    }
    if let Some(since) = filter.since_ms {
        query.append_pair("since", &since.to_string());
    }
    if let Some(before) = filter.before_ms {
        query.append_pair("before", &before.to_string());
    }
    query.append_pair("limit", &filter.rows().to_string());
    query.finish()
}

/// `text` as one path segment.
fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[async_trait]
impl Store for RemoteStore {
    fn describe(&self) -> String {
        format!("the history API at {}", self.base)
    }

    fn records(&self) -> bool {
        false
    }

    /// Records nothing: the orchestrator behind the API records its
    /// cluster's tests itself (a `start --wait` reading its baseline there
    /// leaves the recording to it).
    async fn record(&self, _run: &RecordedRun) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let path = format!("/runs/{}", segment(id));
        Ok(self.expect(Method::GET, &path).await?.is_some())
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let path = format!("/runs?{}", list_query(filter));
        let body = self.expect(Method::GET, &path).await?.unwrap_or_default();
        Ok(self.parse::<RunList>(&body)?.runs)
    }

    async fn get(&self, id: &str) -> Result<Option<RecordedRun>, StoreError> {
        let path = format!("/runs/{}", segment(id));
        let Some(detail) = self.expect(Method::GET, &path).await? else {
            return Ok(None);
        };
        let detail: RunDetail = self.parse(&detail)?;
        let Some(report) = self
            .expect(Method::GET, &format!("{path}/report.json"))
            .await?
        else {
            return Ok(None);
        };
        let report = String::from_utf8(report.to_vec()).map_err(|e| StoreError::Other {
            store: self.describe(),
            detail: format!("a report that is not UTF-8: {e}"),
        })?;
        let definition = match detail.definition {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        };
        Ok(Some(RecordedRun {
            summary: detail.summary,
            definition,
            report,
        }))
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let path = format!("/runs/{}", segment(id));
        Ok(self.expect(Method::DELETE, &path).await?.is_some())
    }
}
