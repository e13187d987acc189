//! The `/metrics` endpoint: HTTP/1.1, GET only, the OpenMetrics text of
//! the process's [`LiveFigures`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::figures::LiveFigures;
use crate::web::plain::{self, text};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running `/metrics` endpoint.
pub struct MetricsServer {
    figures: Arc<LiveFigures>,
    local_addr: SocketAddr,
    scrapes: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (on the current runtime) until dropped.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let figures = Arc::new(LiveFigures::default());
        let (scrapes, _) = watch::channel(0);
        let (shown, scraped) = (Arc::clone(&figures), scrapes.clone());
        let task = tokio::spawn(plain::serve(listener, move |request| {
            answer(request, &shown, &scraped)
        }));
        Ok(Arc::new(Self {
            figures,
            local_addr,
            scrapes,
            task,
        }))
    }

    /// The figures it shows.
    pub fn figures(&self) -> &LiveFigures {
        &self.figures
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counts the scrapes served so far.
    pub fn scrapes(&self) -> watch::Receiver<u64> {
        self.scrapes.subscribe()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer<B>(
    request: &Request<B>,
    figures: &Arc<LiveFigures>,
    scrapes: &watch::Sender<u64>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    match figures.encode() {
        Ok(text) => {
            if request.method() == Method::GET {
                scrapes.send_modify(|n| *n += 1);
            }
            Response::builder()
                .header("content-type", OPENMETRICS)
                .body(Full::new(Bytes::from(text)))
                .expect("a valid response")
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    async fn fetch(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, request)
            .await
            .unwrap();
        let mut std_stream = stream.into_std().unwrap();
        std_stream.set_nonblocking(false).unwrap();
        tokio::task::spawn_blocking(move || {
            let _ = std_stream.flush();
            let mut text = String::new();
            let _ = std_stream.read_to_string(&mut text);
            text
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn serves_openmetrics_on_get_and_refuses_the_rest() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        let scrapes = server.scrapes();
        let ok = fetch(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.trim_end().ends_with("# EOF"), "{ok}");
        assert_eq!(*scrapes.borrow(), 1);
        let missing = fetch(addr, b"GET /admin HTTP/1.0\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
        let post = fetch(addr, b"POST /metrics HTTP/1.0\r\ncontent-length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.0 405"), "{post}");
        let garbage = fetch(addr, b"\x00\x01 not http at all\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
            "{garbage}"
        );
        // Still serving after all that.
        let again = fetch(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(again.starts_with("HTTP/1.0 200"));
        assert_eq!(*scrapes.borrow(), 2);
    }
}
