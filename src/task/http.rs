//! The built-in `http` task: one HTTP/1.1 keep-alive connection per instance.
//!
//! Each instance owns its connection and drives it inside its own execution
//! (no separate connection task), so a request costs no cross-task wake-ups.
//! A broken connection is dropped and re-opened on the next execution.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Task, TaskError, TaskFactory, TaskResult};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
}

/// The request every instance sends, prepared once.
#[derive(Debug)]
struct Prepared {
    address: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    expect_status: Vec<u16>,
    timeout: Duration,
}

impl Prepared {
    fn new(opts: &HttpOptions) -> anyhow::Result<Self> {
        let url = opts
            .url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("needs --url"))?;
        if !url.contains("://") {
            anyhow::bail!("--url '{url}' needs a scheme, e.g. http://{url}");
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--url '{url}' is not a valid URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                anyhow::bail!("--url '{url}': scheme '{other}' is not supported yet (use http://)")
            }
            None => anyhow::bail!("--url '{url}' needs a scheme, e.g. http://{url}"),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("--url '{url}' has no host"))?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let method_name = opts.method.as_deref().unwrap_or("GET");
        let method = Method::from_bytes(method_name.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("--method '{method_name}' is not a valid HTTP method"))?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        for (name, value) in &opts.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow::anyhow!("--header '{name}' is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| anyhow::anyhow!("--header '{name}' has an invalid value"))?;
            headers.append(header, value);
        }
        Ok(Self {
            address,
            method,
            uri: path.parse()?,
            headers,
            body: opts.body.clone(),
            expect_status: opts.expect_status.clone(),
            timeout: opts.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
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

type Conn = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// One instance of the `http` task.
pub struct HttpTask {
    prepared: Arc<Prepared>,
    conn: Option<(SendRequest<Full<Bytes>>, Conn)>,
}

/// The factory behind the registered `http` task.
pub fn http_factory(
    opts: &HttpOptions,
) -> anyhow::Result<impl TaskFactory<Task = HttpTask> + use<>> {
    let prepared = Arc::new(Prepared::new(opts)?);
    Ok(move |_instance: usize| {
        Ok(HttpTask {
            prepared: Arc::clone(&prepared),
            conn: None,
        })
    })
}

impl HttpTask {
    async fn connect(&mut self) -> Result<(), TaskError> {
        let stream = TcpStream::connect(&self.prepared.address)
            .await
            .map_err(|e| {
                TaskError::new(
                    "connect",
                    format!("connecting to {}: {e}", self.prepared.address),
                )
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TaskError::new("connect", format!("HTTP handshake: {e}")))?;
        self.conn = Some((sender, Box::pin(conn)));
        Ok(())
    }

    async fn send(&mut self) -> Result<u16, TaskError> {
        if self
            .conn
            .as_ref()
            .is_none_or(|(sender, _)| sender.is_closed())
        {
            self.connect().await?;
        }
        let (sender, conn) = self.conn.as_mut().expect("connected above");
        drive(conn, sender.ready()).await?.map_err(http_error)?;
        let response = drive(conn, sender.send_request(self.prepared.request()))
            .await?
            .map_err(http_error)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = drive(conn, body.frame()).await? {
            frame.map_err(http_error)?;
        }
        Ok(status)
    }
}

impl Task for HttpTask {
    async fn setup(&mut self) -> anyhow::Result<()> {
        self.connect()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))
    }

    async fn execute(&mut self) -> TaskResult {
        match tokio::time::timeout(self.prepared.timeout, self.send()).await {
            Ok(Ok(status)) => self.prepared.check(status),
            Ok(Err(error)) => {
                self.conn = None;
                TaskResult::failure(error)
            }
            Err(_) => {
                self.conn = None;
                TaskResult::failure(TaskError::new(
                    "timeout",
                    format!("no response within {:?}", self.prepared.timeout),
                ))
            }
        }
    }

    async fn cleanup(&mut self) -> anyhow::Result<()> {
        self.conn = None;
        Ok(())
    }
}

fn http_error(e: hyper::Error) -> TaskError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        "connection_closed"
    } else if e.is_parse() {
        "protocol"
    } else {
        "http"
    };
    TaskError::new(kind, e.to_string())
}

/// Polls `fut` while also driving the connection that serves it. Fails if
/// the connection ends first.
async fn drive<T>(conn: &mut Conn, fut: impl Future<Output = T>) -> Result<T, TaskError> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match conn.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Err(TaskError::new(
                "connection_closed",
                "server closed the connection",
            ))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(http_error(e))),
        }
    })
    .await
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
    fn bad_urls_are_named() {
        for (url, needle) in [
            ("https://x/", "not supported"),
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
    fn status_check_defaults_to_below_400() {
        let p = Prepared::new(&opts("http://127.0.0.1:9/a?b=c")).unwrap();
        assert_eq!(p.address, "127.0.0.1:9");
        assert_eq!(p.uri, "/a?b=c");
        assert_eq!(p.check(204), TaskResult::success());
        assert!(matches!(p.check(503), TaskResult::Failure { .. }));
    }
}
