//! The built-in `http` task: one HTTP/1.1 keep-alive connection per instance,
//! plain or over TLS (`https://`).
//!
//! The request is validated and serialised once per run;
//! each instance owns a [`client::Connection`], re-opened after any error or
//! when the server asks to close.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};

use super::{Task, TaskError, TaskFactory, TaskResult};

pub mod client;
pub mod tls;

use client::Connection;
use tls::TlsTarget;

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
    /// HTTPS: CA certificates (PEM) trusted besides the built-in roots.
    pub tls_ca: Option<PathBuf>,
    /// HTTPS: accept any server certificate (a test target's self-signed
    /// one); the handshake is still checked.
    pub tls_skip_verify: bool,
}

/// The request every instance sends, validated and serialised once.
#[derive(Debug)]
struct Prepared {
    address: String,
    tls: Option<TlsTarget>,
    request: Vec<u8>,
    head: bool,
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
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                anyhow::bail!(
                    "--url '{url}': scheme '{other}' is not supported (use http:// or https://)"
                )
            }
            None => anyhow::bail!("--url '{url}' needs a scheme, e.g. http://{url}"),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("--url '{url}' has no host"))?;
        let default_port = if https { 443 } else { 80 };
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(default_port)
        );
        let tls = if https {
            let target = TlsTarget::new(
                authority.host(),
                opts.tls_ca.as_deref(),
                opts.tls_skip_verify,
            )
            .map_err(|e| anyhow::anyhow!("--url '{url}': {e}"))?;
            Some(target)
        } else if opts.tls_ca.is_some() || opts.tls_skip_verify {
            anyhow::bail!("--https-ca and --https-skip-verify need an https:// URL, not '{url}'");
        } else {
            None
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let method_name = opts.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = Method::from_bytes(method_name.as_bytes())
            .map_err(|_| anyhow::anyhow!("--method '{method_name}' is not a valid HTTP method"))?;
        let request = serialise(&method, path, authority.as_str(), &opts.headers, &opts.body)?;
        Ok(Self {
            address,
            tls,
            request,
            head: method == Method::HEAD,
            expect_status: opts.expect_status.clone(),
            timeout: opts.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    async fn connect(&self) -> Result<Connection, TaskError> {
        Connection::connect(&self.address, self.tls.as_ref()).await
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
fn serialise(
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
    conn: Option<Connection>,
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
    async fn send(&mut self) -> Result<u16, TaskError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.prepared.connect().await?),
        };
        let response = conn
            .round_trip(&self.prepared.request, self.prepared.head)
            .await?;
        if !response.keep_alive {
            self.conn = None;
        }
        Ok(response.status)
    }
}

impl Task for HttpTask {
    async fn setup(&mut self) -> anyhow::Result<()> {
        let conn = self
            .prepared
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        self.conn = Some(conn);
        Ok(())
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
            ("ftp://x/", "not supported"),
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
}
