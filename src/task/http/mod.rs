//! The built-in `http` task: one HTTP/1.1 keep-alive connection per instance,
//! plain or over TLS (`https://`), or HTTP/2 with `--http2` ([`http2`]).
//!
//! The request is validated and serialised once per run;
//! each instance owns a [`client::Connection`], re-opened after any error or
//! when the server asks to close. Over HTTP/2, up to `--h2-streams`
//! instances share a connection, their requests multiplexed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};

use super::{Context, Task, TaskError, TaskFactory, TaskResult};
use crate::metrics::events::EventCounter;

pub mod client;
pub mod http2;
pub mod tls;

use client::Connection;
use tls::TlsTarget;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The event counter of connections re-opened after the first one of an
/// instance (the server closed an idle one, asked to close, or a request
/// failed): reported next to the results, never as an error.
pub const RECONNECTS: &str = "http.reconnects";
/// A connection idle at least this long is checked for a close by the
/// server before it is used (one non-blocking peek); one in steady use is
/// not, so a closed-model run pays nothing.
const STALE_CHECK_AFTER: Duration = Duration::from_millis(1);

/// Options of the `http` task.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Target URL (`http://host:port/path?query`).
    pub url: Option<String>,
    /// Request method (GET when unset).
    pub method: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Bytes,
    /// Statuses that count as success; empty means any status below 400.
    pub expect_status: Vec<u16>,
    /// Per-request timeout (connect included); [`DEFAULT_TIMEOUT`] if unset.
    pub timeout: Option<Duration>,
    /// HTTPS: CA certificates (PEM) trusted besides the built-in roots.
    pub tls_ca: Option<CaCertificates>,
    /// HTTPS: accept any server certificate (a test target's self-signed
    /// one); the handshake is still checked.
    pub tls_skip_verify: bool,
    /// Speak HTTP/2 (ALPN `h2` over TLS, h2c with prior knowledge over
    /// plain TCP).
    pub http2: bool,
    /// HTTP/2: instances sharing each connection (1 when unset).
    pub h2_streams: Option<usize>,
}

/// CA certificates given by the user: their PEM text and where it came
/// from (for errors).
#[derive(Debug, Clone)]
pub struct CaCertificates {
    /// Where they came from: a file name, or a test's definition.
    pub origin: String,
    /// The PEM text.
    pub pem: Vec<u8>,
}

/// The request every instance sends, validated and serialised once.
#[derive(Debug)]
struct Prepared {
    address: String,
    tls: Option<TlsTarget>,
    request: Vec<u8>,
    head: bool,
    /// Whether the request may be sent twice (RFC 9110 idempotent methods,
    /// or an `Idempotency-Key` header): only then is it retried after a
    /// reused connection failed before any response byte.
    replayable: bool,
    expect_status: Vec<u16>,
    timeout: Duration,
    reconnects: EventCounter,
    /// The request as hyper sends it over HTTP/2, and the run's shared
    /// connections; `None` for HTTP/1.1.
    http2: Option<Http2Request>,
}

/// The request an HTTP/2 execution sends, and the run's shared
/// connections.
#[derive(Debug)]
struct Http2Request {
    parts: http2::Parts,
    pool: http2::Pool,
}

impl Http2Request {
    /// `method` `uri` with `headers` and `body`, on connections shared by
    /// `streams` instances.
    fn new(
        method: Method,
        uri: &Uri,
        headers: &[(String, String)],
        body: &Bytes,
        streams: usize,
    ) -> anyhow::Result<Self> {
        let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let parts = http2::Parts::new(method, uri.clone(), headers, body.clone())
            .map_err(|e| anyhow::anyhow!("--header {e}"))?;
        Ok(Self {
            parts,
            pool: http2::Pool::new(streams),
        })
    }

    /// The request of one execution, with a W3C `traceparent` header when
    /// it is traced.
    fn request(&self) -> Request<http2::Body> {
        let mut request = self.parts.request();
        if let Some(span) = crate::task::trace::current()
            && let Ok(value) = HeaderValue::from_str(&span.header())
        {
            request.headers_mut().insert("traceparent", value);
        }
        request
    }
}

impl Prepared {
    /// The request, with a W3C `traceparent` header when this execution is
    /// traced (so the target's own spans join the test's trace); the
    /// prepared bytes untouched otherwise.
    fn traced_request(&self) -> std::borrow::Cow<'_, [u8]> {
        let Some(span) = crate::task::trace::current() else {
            return std::borrow::Cow::Borrowed(&self.request);
        };
        // The head ends with an empty line: the header goes before it.
        let blank = self
            .request
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.request.len(), |at| at + 2);
        let header = format!("traceparent: {}\r\n", span.header());
        let mut traced = Vec::with_capacity(self.request.len() + header.len());
        traced.extend_from_slice(&self.request[..blank]);
        traced.extend_from_slice(header.as_bytes());
        traced.extend_from_slice(&self.request[blank..]);
        std::borrow::Cow::Owned(traced)
    }

    fn new(opts: &HttpOptions) -> anyhow::Result<Self> {
        let url = opts
            .url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("needs --url"))?;
        let origin = super::url::Origin::parse(url, super::url::HTTP)
            .map_err(|e| anyhow::anyhow!("--url {e}"))?;
        let (https, address) = (origin.secure, origin.address.clone());
        match opts.h2_streams {
            Some(_) if !opts.http2 => anyhow::bail!("--h2-streams needs --http2"),
            Some(0) => anyhow::bail!("--h2-streams must be at least 1"),
            _ => {}
        }
        let tls = if https {
            let offer = if opts.http2 {
                TlsTarget::http2
            } else {
                TlsTarget::new
            };
            let target = offer(&origin.host, opts.tls_ca.as_ref(), opts.tls_skip_verify)
                .map_err(|e| anyhow::anyhow!("--url '{url}': {e}"))?;
            Some(target)
        } else if opts.tls_ca.is_some() || opts.tls_skip_verify {
            anyhow::bail!("--https-ca and --https-skip-verify need an https:// URL, not '{url}'");
        } else {
            None
        };
        let path = origin.path();
        let method_name = opts.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = Method::from_bytes(method_name.as_bytes())
            .map_err(|_| anyhow::anyhow!("--method '{method_name}' is not a valid HTTP method"))?;
        let request = serialise(&method, path, &origin.authority, &opts.headers, &opts.body)?;
        let http2 = opts
            .http2
            .then(|| {
                let streams = opts.h2_streams.unwrap_or(1);
                Http2Request::new(
                    method.clone(),
                    &origin.uri,
                    &opts.headers,
                    &opts.body,
                    streams,
                )
            })
            .transpose()?;
        let replayable = method.is_idempotent()
            || opts
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"));
        Ok(Self {
            address,
            tls,
            request,
            head: method == Method::HEAD,
            replayable,
            expect_status: opts.expect_status.clone(),
            timeout: opts.timeout.unwrap_or(DEFAULT_TIMEOUT),
            reconnects: EventCounter::named(RECONNECTS),
            http2,
        })
    }

    fn check(&self, status: u16) -> TaskResult {
        let ok = if self.expect_status.is_empty() {
            status < 400
        } else {
            self.expect_status.contains(&status)
        };
        if ok {
            TaskResult::success()
        } else {
            TaskResult::failure(TaskError::new(
                format!("status_{status}"),
                format!("HTTP status {status}"),
            ))
        }
    }
}

/// Writes the request line, headers and body as they go on the wire,
/// validating every header. `Host` and `Content-Length` are added unless
/// the user set them.
pub(crate) fn serialise(
    method: &Method,
    path: &str,
    authority: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
    let mut has_host = false;
    let mut has_length = false;
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| anyhow::anyhow!("--header '{name}' is not a valid header name"))?;
        HeaderValue::from_str(value)
            .map_err(|_| anyhow::anyhow!("--header '{name}' has an invalid value"))?;
        has_host |= header == hyper::header::HOST;
        has_length |= header == hyper::header::CONTENT_LENGTH;
        if header == hyper::header::TRANSFER_ENCODING {
            anyhow::bail!(
                "--header '{name}' is not supported: the body is sent with a Content-Length"
            );
        }
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !has_host {
        out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    let sends_body =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if sends_body && !has_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

/// One instance of the `http` task.
pub struct HttpTask {
    prepared: Arc<Prepared>,
    wire: Wire,
}

/// An instance's connection: its own HTTP/1.1 one (while open), or its
/// place on a shared HTTP/2 one.
enum Wire {
    Http1(Option<Connection>),
    Http2(http2::Client),
}

/// The factory behind the registered `http` task.
pub fn http_factory(
    opts: &HttpOptions,
) -> anyhow::Result<impl TaskFactory<Task = HttpTask> + use<>> {
    let prepared = Arc::new(Prepared::new(opts)?);
    Ok(move |_instance: usize| {
        let wire = match &prepared.http2 {
            Some(http2) => Wire::Http2(http2.pool.join()),
            None => Wire::Http1(None),
        };
        Ok(HttpTask {
            prepared: Arc::clone(&prepared),
            wire,
        })
    })
}

/// How to reach a target: its address and TLS, and the counter of
/// connections re-opened.
pub(crate) struct Dial<'a> {
    /// `host:port`.
    pub address: &'a str,
    /// The TLS target, for HTTPS.
    pub tls: Option<&'a TlsTarget>,
    /// Counts each connection opened in place of one that ended.
    pub reconnects: &'a EventCounter,
}

impl Dial<'_> {
    /// A first connection (not counted).
    pub async fn connect(&self) -> Result<Connection, TaskError> {
        Connection::connect(self.address, self.tls).await
    }

    /// A new connection in place of one that ended, counted.
    async fn reconnect(&self) -> Result<Connection, TaskError> {
        self.reconnects.add(1);
        self.connect().await
    }
}

/// Sends `request` on the connection in `slot` if it is still open, else
/// on a new one, and reads the response (kept in `kept` if given).
///
/// A server may close an idle keep-alive connection at any time (its
/// keep-alive timeout, or to free a slot for a new client). One closed
/// while idle is noticed before use and replaced. One closed just as the
/// request went out fails before any response byte arrives: the server
/// never answered, so a `replayable` request is sent once more on a new
/// connection, as mature HTTP clients do. Its latency still counts from the
/// intended start. A new connection that fails is an error. The slot is
/// emptied when the server asks to close.
pub(crate) async fn send_reusing(
    slot: &mut Option<Connection>,
    dial: &Dial<'_>,
    (request, head, replayable): (&[u8], bool, bool),
    mut kept: Option<&mut client::Kept>,
) -> Result<client::Response, TaskError> {
    let stale = slot
        .as_ref()
        .is_some_and(|c| c.idle_for() >= STALE_CHECK_AFTER && c.closed_by_peer());
    if stale {
        *slot = None;
    }
    let reused = slot.is_some();
    let conn = match slot {
        Some(conn) => conn,
        None => slot.insert(dial.reconnect().await?),
    };
    let response = match conn.exchange(request, head, kept.as_deref_mut()).await {
        Ok(response) => response,
        Err(_) if reused && replayable && !conn.response_started() => {
            let conn = slot.insert(dial.reconnect().await?);
            conn.exchange(request, head, kept).await?
        }
        Err(e) => return Err(e),
    };
    if !response.keep_alive {
        *slot = None;
    }
    Ok(response)
}

impl Prepared {
    fn dial(&self) -> Dial<'_> {
        Dial {
            address: &self.address,
            tls: self.tls.as_ref(),
            reconnects: &self.reconnects,
        }
    }
}

impl HttpTask {
    /// Sends the request (see [`send_reusing`] and [`http2::Client::send`]).
    async fn send(&mut self) -> Result<u16, TaskError> {
        let prepared = &self.prepared;
        let dial = prepared.dial();
        match &mut self.wire {
            Wire::Http1(conn) => {
                let request = prepared.traced_request();
                let sent = (&request[..], prepared.head, prepared.replayable);
                let response = send_reusing(conn, &dial, sent, None).await?;
                Ok(response.status)
            }
            Wire::Http2(client) => {
                let parts = prepared
                    .http2
                    .as_ref()
                    .expect("an HTTP/2 wire has its parts");
                let answer = client
                    .send(&dial, (|| parts.request(), prepared.replayable), None)
                    .await?;
                Ok(answer.status)
            }
        }
    }

    /// Forgets an HTTP/1.1 connection after a failure: its state is
    /// unknown. An HTTP/2 one is shared and judged by its client.
    fn drop_connection(&mut self) {
        if let Wire::Http1(conn) = &mut self.wire {
            *conn = None;
        }
    }
}

impl Task for HttpTask {
    async fn setup(&mut self) -> anyhow::Result<()> {
        let prepared = &self.prepared;
        let opened = match &mut self.wire {
            Wire::Http1(conn) => Connection::connect(&prepared.address, prepared.tls.as_ref())
                .await
                .map(|c| *conn = Some(c)),
            Wire::Http2(client) => client.open(&prepared.dial()).await,
        };
        opened.map_err(|e| anyhow::anyhow!("{}", e.message()))
    }

    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        match tokio::time::timeout(self.prepared.timeout, self.send()).await {
            Ok(Ok(status)) => self.prepared.check(status),
            Ok(Err(error)) => {
                self.drop_connection();
                TaskResult::failure(error)
            }
            Err(_) => {
                self.drop_connection();
                TaskResult::failure(TaskError::new(
                    "timeout",
                    format!("no response within {:?}", self.prepared.timeout),
                ))
            }
        }
    }

    async fn cleanup(&mut self) -> anyhow::Result<()> {
        self.drop_connection();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str) -> HttpOptions {
        HttpOptions {
            url: Some(url.into()),
            ..HttpOptions::default()
        }
    }

    #[test]
    fn bad_urls_and_headers_are_named() {
        for (url, needle) in [
            ("ftp://x/", "must start with http:// or https://"),
            ("localhost:80/x", "scheme"),
            ("http://", "not a valid URL"),
        ] {
            let e = Prepared::new(&opts(url)).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
        let mut bad_header = opts("http://localhost/");
        bad_header.headers.push(("bad header".into(), "v".into()));
        assert!(
            Prepared::new(&bad_header)
                .unwrap_err()
                .to_string()
                .contains("header")
        );
    }

    #[test]
    fn request_is_serialised_once_with_host_and_length() {
        let mut o = opts("http://127.0.0.1:9/a?b=c");
        o.method = Some("post".into());
        o.body = Bytes::from_static(b"{}");
        o.headers.push(("X-Test".into(), "1".into()));
        let p = Prepared::new(&o).unwrap();
        assert_eq!(p.address, "127.0.0.1:9");
        let text = String::from_utf8(p.request).unwrap();
        assert_eq!(
            text,
            "POST /a?b=c HTTP/1.1\r\nX-Test: 1\r\nHost: 127.0.0.1:9\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn status_check_defaults_to_below_400() {
        let p = Prepared::new(&opts("http://127.0.0.1:9/")).unwrap();
        assert_eq!(p.check(204), TaskResult::success());
        assert!(matches!(p.check(503), TaskResult::Failure { .. }));
        let mut o = opts("http://127.0.0.1:9/");
        o.expect_status = vec![503];
        assert_eq!(Prepared::new(&o).unwrap().check(503), TaskResult::success());
    }

    /// How a scripted server ends each connection after its answers.
    #[derive(Clone, Copy)]
    enum Ending {
        /// Closes as soon as the last answer is written (an idle close).
        AtOnce,
        /// Reads the next request, then closes without answering (a close
        /// that crosses a request on the wire).
        OnNextRequest,
    }

    /// A server answering `answers` requests per connection, then ending it
    /// as `ending` says, without ever saying `Connection: close`. Returns
    /// its URL and the count of connections it accepted.
    async fn scripted(
        answers: usize,
        ending: Ending,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        async fn read_request(s: &mut tokio::net::TcpStream) -> bool {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            true
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..answers {
                        if !read_request(&mut s).await {
                            return;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    if let Ending::OnNextRequest = ending {
                        read_request(&mut s).await;
                    }
                });
            }
        });
        (url, accepted)
    }

    async fn task_for(url: &str, method: &str) -> HttpTask {
        let mut o = opts(url);
        o.method = Some(method.into());
        let factory = http_factory(&o).unwrap();
        let mut task = factory.create(0).unwrap();
        task.setup().await.unwrap();
        task
    }

    fn reconnects() -> u64 {
        crate::metrics::events::snapshot()
            .get(RECONNECTS)
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced_before_use() {
        use std::sync::atomic::Ordering;
        let (url, accepted) = scripted(1, Ending::AtOnce).await;
        let before = reconnects();
        // POST is not replayable: it succeeds only because the close is
        // seen before the request is sent.
        let mut task = task_for(&url, "POST").await;
        for _ in 0..5 {
            assert_eq!(
                task.execute(&mut Context::detached(0, 0)).await,
                TaskResult::success()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
        assert!(reconnects() - before >= 4, "each replacement is counted");
    }

    #[tokio::test]
    async fn a_replayable_request_crossing_a_close_is_sent_once_more() {
        use std::sync::atomic::Ordering;
        let (url, accepted) = scripted(1, Ending::OnNextRequest).await;
        let mut task = task_for(&url, "GET").await;
        for _ in 0..4 {
            assert_eq!(
                task.execute(&mut Context::detached(0, 0)).await,
                TaskResult::success()
            );
        }
        // Each connection answers once, then takes a request and closes:
        // the 4 answers needed 4 connections, each failure retried once.
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_post_crossing_a_close_is_not_sent_twice() {
        let (url, _) = scripted(1, Ending::OnNextRequest).await;
        let mut task = task_for(&url, "POST").await;
        assert_eq!(
            task.execute(&mut Context::detached(0, 0)).await,
            TaskResult::success()
        );
        match task.execute(&mut Context::detached(0, 0)).await {
            TaskResult::Failure { error, .. } => assert_eq!(error.kind(), "connection_closed"),
            other => panic!("a POST was retried: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_fresh_connection_that_fails_stays_an_error() {
        use std::sync::atomic::Ordering;
        let (url, accepted) = scripted(0, Ending::OnNextRequest).await;
        let mut task = task_for(&url, "GET").await;
        // The setup's connection was opened before this request: retried
        // once, on a connection of its own, which fails too.
        assert!(matches!(
            task.execute(&mut Context::detached(0, 0)).await,
            TaskResult::Failure { .. }
        ));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // A connection opened for the request is not retried.
        assert!(matches!(
            task.execute(&mut Context::detached(0, 0)).await,
            TaskResult::Failure { .. }
        ));
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}
