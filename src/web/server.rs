//! The HTTP/1.1 server: authenticates each request, routes it to an
//! endpoint of [`Api`], streams live frames as server-sent events, and
//! serves the web UI's embedded files.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::api::{Api, ApiError, StartRequest, UpdateRequest, allow};
use super::assets;
use super::auth::{Caller, Credentials, Providers, Role};
use super::live::LiveFrame;
use crate::export::html;

/// The body of every response.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest request body accepted: what a peer message may carry (a
/// definition's inlined body, up to 256 KiB, fits well within it).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Longest a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle event stream says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// A running web API.
pub struct WebServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
    /// Ends every open connection (event streams too) on drop.
    connections: CancellationToken,
}

impl WebServer {
    /// Serves `api` on `listener` with `auth` (over HTTPS with `tls`)
    /// until dropped, when it also stops `watcher` (the task feeding its
    /// live figures).
    pub fn start(
        listener: TcpListener,
        api: Arc<Api>,
        auth: Arc<Providers>,
        tls: Option<Arc<rustls::ServerConfig>>,
        watcher: tokio::task::JoinHandle<()>,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let connections = CancellationToken::new();
        let task = tokio::spawn(accept(listener, api, auth, tls, connections.clone()));
        Ok(Self {
            local_addr,
            task,
            watcher,
            connections,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
        self.watcher.abort();
        self.connections.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    api: Arc<Api>,
    auth: Arc<Providers>,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (api, auth, acceptor) = (Arc::clone(&api), Arc::clone(&auth), acceptor.clone());
        let cancel = connections.clone();
        tokio::spawn(cancel.run_until_cancelled_owned(async move {
            let Some(acceptor) = acceptor else {
                return serve(TokioIo::new(stream), None, api, auth).await;
            };
            let Ok(Ok(tls)) = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            // The handshake verified it against the client CA.
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| Arc::new(c.to_vec()));
            serve(TokioIo::new(tls), certificate, api, auth).await;
        }));
    }
}

/// Serves one connection's requests; `certificate` is the client
/// certificate its TLS handshake verified.
async fn serve<I>(io: I, certificate: Option<Arc<Vec<u8>>>, api: Arc<Api>, auth: Arc<Providers>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let (api, auth, certificate) = (Arc::clone(&api), Arc::clone(&auth), certificate.clone());
        async move {
            let certificate = certificate.as_deref().map(Vec::as_slice);
            Ok::<_, Infallible>(answer(request, &api, &auth, certificate).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service)
        .await;
}

/// The response to one request.
async fn answer(
    request: Request<Incoming>,
    api: &Api,
    auth: &Providers,
    client_certificate: Option<&[u8]>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if !path.starts_with("/api/") {
        return static_file(&method, &path);
    }
    if auth.is_open() && !names_loopback(&request) {
        // Without authentication the API trusts loopback; a page whose name
        // was re-pointed at 127.0.0.1 (DNS rebinding) must not pass for it.
        return error_response(&ApiError::new(
            403,
            "without authentication this API answers only requests to localhost, \
             127.0.0.1 or [::1]",
        ));
    }
    if path == "/api/v1/openapi.json" {
        return match method {
            Method::GET | Method::HEAD => bytes(200, "application/json", assets::OPENAPI.into()),
            _ => error_response(&not_allowed("GET")),
        };
    }
    if path == "/api/v1/auth" {
        // Before signing in, the UI asks whether it needs a token.
        return match method {
            Method::GET | Method::HEAD => json(200, &auth.describe()),
            _ => error_response(&not_allowed("GET")),
        };
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = match auth.caller(&Credentials {
        bearer,
        client_certificate,
    }) {
        Ok(caller) => caller,
        Err(why) => {
            let mut response = error_response(&ApiError::new(401, why));
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vajra\""),
            );
            return response;
        }
    };
    match route(request, &method, &path, api, &caller).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn route(
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    api: &Api,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    let segments: Vec<&str> = path
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["me"]) => Ok(json(
            200,
            &Me {
                caller,
                history: api.history.is_some(),
            },
        )),
        (&Method::GET, ["cluster"]) => Ok(json(200, &api.cluster().await)),
        (&Method::GET, ["catalog"]) => Ok(json(200, &api.catalog())),
        (&Method::GET, ["live"]) => Ok(event_stream(api)),
        (&Method::GET, ["tests"]) => Ok(json(200, &api.tests())),
        (&Method::POST, ["tests", "validate"]) => {
            let body: StartRequest = read_json(request).await?;
            Ok(json(200, &api.validate(&body)?))
        }
        (&Method::POST, ["tests"]) => {
            allow(caller.role, Role::Operator)?;
            let body: StartRequest = read_json(request).await?;
            let author = format!("api:{} {}", caller.provider, caller.role);
            Ok(json(201, &api.start(body, &author).await?))
        }
        (&Method::PATCH, ["tests", "current"]) => {
            allow(caller.role, Role::Operator)?;
            let body: UpdateRequest = read_json(request).await?;
            Ok(json(200, &api.update(body).await?))
        }
        (&Method::POST, ["tests", "current", "stop"]) => {
            allow(caller.role, Role::Operator)?;
            Ok(json(200, &api.stop().await?))
        }
        // The fixed paths take no other method (before the test-id paths,
        // which would read `current` as an id).
        (_, ["me" | "cluster" | "catalog" | "live"]) => Err(not_allowed("GET")),
        (_, ["tests"]) => Err(not_allowed("GET, POST")),
        (_, ["tests", "validate"]) => Err(not_allowed("POST")),
        (_, ["tests", "current"]) => Err(not_allowed("PATCH")),
        (_, ["tests", "current", "stop"]) => Err(not_allowed("POST")),
        (&Method::DELETE, ["tests", id]) => {
            allow(caller.role, Role::Operator)?;
            if api.live.delete(id) {
                Ok(empty(204))
            } else {
                Err(unknown_test(id))
            }
        }
        (&Method::GET, ["tests", id, file]) => {
            let result = api.live.result(id).ok_or_else(|| unknown_test(id))?;
            report_file(id, file, &result.report, None, result.target_rate)
        }
        (_, ["tests", _]) => Err(not_allowed("DELETE")),
        (_, ["tests", _, _]) => Err(not_allowed("GET")),
        (_, ["history", rest @ ..]) => {
            let query = request.uri().query().unwrap_or("").to_owned();
            history_route(method, rest, &query, api, caller).await
        }
        _ => Err(ApiError::new(404, format!("no endpoint {path}"))),
    }
}

/// Whether the request's `Host` names this machine's loopback.
fn names_loopback<B>(request: &Request<B>) -> bool {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

fn unknown_test(id: &str) -> ApiError {
    ApiError::new(404, format!("this node holds no result of test `{id}`"))
}

fn not_allowed(allowed: &'static str) -> ApiError {
    ApiError::method_not_allowed(allowed)
}

/// Who the caller is, and what this node offers it.
#[derive(Serialize)]
struct Me<'a> {
    #[serde(flatten)]
    caller: &'a Caller,
    /// Whether this node keeps a history (the UI shows its pages).
    history: bool,
}

/// The history endpoints, on a node that keeps a history.
async fn history_route(
    method: &Method,
    segments: &[&str],
    query: &str,
    api: &Api,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    // The path and method first: a method a path does not take is a 405
    // on any node.
    match (method, segments) {
        (&Method::GET, ["runs" | "compare" | "trend"])
        | (&Method::GET | &Method::DELETE, ["runs", _])
        | (&Method::GET, ["runs", _, _]) => {}
        (_, ["runs" | "compare" | "trend"]) => return Err(not_allowed("GET")),
        (_, ["runs", _]) => return Err(not_allowed("GET, DELETE")),
        (_, ["runs", _, _]) => return Err(not_allowed("GET")),
        _ => return Err(ApiError::new(404, "no such history endpoint")),
    }
    let Some(history) = &api.history else {
        return Err(ApiError::new(
            404,
            "this node keeps no history: an orchestrator does (`vajra-peer orchestrator`)",
        ));
    };
    match (method, segments) {
        (&Method::GET, ["runs"]) => Ok(json(200, &history.runs(query).await?)),
        (&Method::GET, ["compare"]) => Ok(json(200, &history.compare(query).await?)),
        (&Method::GET, ["trend"]) => Ok(json(200, &history.trend(query).await?)),
        (&Method::GET, ["runs", id]) => Ok(json(200, &history.run(id).await?)),
        (&Method::DELETE, ["runs", id]) => {
            allow(caller.role, Role::Operator)?;
            history.delete(id).await?;
            Ok(empty(204))
        }
        (&Method::GET, ["runs", id, file]) => {
            let (run, report) = history.report(id).await?;
            let target_rate = run.summary.target_rate;
            report_file(id, file, &report, Some(run.report.into()), target_rate)
        }
        _ => unreachable!("checked above"),
    }
}

/// A test's report as `report.json` (`raw`, the JSON as recorded, when
/// given), `report.csv` or `report.html`.
fn report_file(
    id: &str,
    file: &str,
    report: &crate::export::Report,
    raw: Option<Bytes>,
    target_rate: Option<f64>,
) -> Result<Response<Body>, ApiError> {
    let attachment = |mut response: Response<Body>| {
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{id}-{file}\"")) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
        response
    };
    match file {
        "report.json" => Ok(attachment(match raw {
            Some(raw) => bytes(200, "application/json", raw),
            None => json(200, report),
        })),
        "report.csv" => {
            let csv = crate::export::files::csv_bytes(report)
                .map_err(|e| ApiError::new(500, format!("{e:#}")))?;
            Ok(attachment(bytes(
                200,
                "text/csv; charset=utf-8",
                csv.into(),
            )))
        }
        "report.html" => {
            let page = html::render(report, target_rate);
            Ok(attachment(bytes(
                200,
                "text/html; charset=utf-8",
                page.into(),
            )))
        }
        other => Err(ApiError::new(
            404,
            format!("no file `{other}`: report.json, report.csv or report.html"),
        )),
    }
}

/// The live frames as server-sent events: a snapshot, then each frame.
fn event_stream(api: &Api) -> Response<Body> {
    let (snapshot, frames) = api.live.subscribe();
    let first = snapshot.map(|f| sse("frame", &f));
    let live = Arc::clone(&api.live);
    let after = first.as_ref().map_or(0, |(_, seq)| *seq);
    let state = (frames, live, after);
    let rest = futures_util::stream::unfold(state, |(mut frames, live, mut after)| async move {
        let event = loop {
            match tokio::time::timeout(KEEPALIVE, frames.recv()).await {
                Err(_) => break Bytes::from_static(b": alive\n\n"),
                Ok(Ok(frame)) if frame.seq <= after => continue,
                Ok(Ok(frame)) => {
                    after = frame.seq;
                    break sse("frame", &frame).0;
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Too far behind: start again from a snapshot.
                    if let Some(snapshot) = live.snapshot() {
                        after = snapshot.seq;
                        break sse("frame", &snapshot).0;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        };
        Some((
            Ok::<_, Infallible>(Frame::data(event)),
            (frames, live, after),
        ))
    });
    let head =
        futures_util::stream::iter(first.map(|(event, _)| Ok::<_, Infallible>(Frame::data(event))));
    let body = StreamBody::new(head.chain(rest));
    let mut response = Response::new(BodyExt::boxed_unsync(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One server-sent event of `kind` carrying `frame`, and its sequence.
fn sse(kind: &str, frame: &LiveFrame) -> (Bytes, u64) {
    let data = serde_json::to_string(frame).unwrap_or_else(|_| "{}".into());
    (
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n")),
        frame.seq,
    )
}

/// The embedded UI file at `path`.
fn static_file(method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return error_response(&not_allowed("GET"));
    }
    match assets::file(path) {
        Some((content_type, content)) => {
            let mut response = bytes(200, content_type, Bytes::from_static(content));
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // The UI runs only its own scripts and talks only to this node.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(assets::CONTENT_SECURITY_POLICY),
            );
            response
        }
        None => error_response(&ApiError::new(404, format!("no page {path}"))),
    }
}

/// Reads a JSON body of at most [`MAX_REQUEST_BYTES`].
async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !is_json {
        return Err(ApiError::new(415, "send the body as application/json"));
    }
    let body = Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(413, format!("the body is above {MAX_REQUEST_BYTES} bytes"))
            } else {
                ApiError::new(400, format!("the body could not be read: {e}"))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("the body: {e}")))
}

fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(status, "application/json", body.into()),
        Err(e) => error_response(&ApiError::new(
            500,
            format!("cannot encode the answer: {e}"),
        )),
    }
}

/// The JSON body of an error: `{"error": {"status", "message", "field"}}`.
fn error_response(error: &ApiError) -> Response<Body> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        error: &'a ApiError,
    }
    let body = serde_json::to_vec(&Envelope { error }).unwrap_or_default();
    let mut response = bytes(error.status, "application/json", body.into());
    if error.status == 503 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(allowed) = error.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
    }
    response
}

fn empty(status: u16) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed_unsync(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
}

fn bytes(status: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed_unsync(Full::new(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(host: &str) -> Request<()> {
        Request::builder()
            .uri("/api/v1/me")
            .header(header::HOST, host)
            .body(())
            .unwrap()
    }

    #[test]
    fn an_open_api_answers_only_requests_naming_loopback() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "localhost",
        ] {
            assert!(names_loopback(&to(host)), "{host}");
        }
        for host in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "[::2]:80",
            "",
        ] {
            assert!(!names_loopback(&to(host)), "{host}");
        }
        let no_host = Request::builder().uri("/").body(()).unwrap();
        assert!(!names_loopback(&no_host));
    }
}
