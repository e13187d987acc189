//! A built-in HTTP target, so a demo or a benchmark needs nothing else;
//! plain, or HTTPS with a given TLS configuration.
//!
//! It answers every request with a small 200 response, optionally after a
//! fixed delay, and can stall periodically (for the last `stall_for` of
//! every `stall_every`) to show what coordinated omission hides.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the target behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TargetBehaviour {
    /// Added to every response.
    pub delay: Duration,
    /// Period of the stalls (none when unset).
    pub stall_every: Option<Duration>,
    /// Length of each stall, at the end of each period.
    pub stall_for: Duration,
}

/// A running target.
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    https: bool,
}

impl Target {
    /// Binds `addr` (port 0 picks a free one) and serves in the background.
    pub async fn start(addr: SocketAddr, behaviour: TargetBehaviour) -> std::io::Result<Self> {
        Self::start_with(addr, behaviour, None).await
    }

    /// As [`start`](Self::start), serving HTTPS with `tls`.
    pub async fn start_https(
        addr: SocketAddr,
        behaviour: TargetBehaviour,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        Self::start_with(addr, behaviour, Some(TlsAcceptor::from(tls))).await
    }

    async fn start_with(
        addr: SocketAddr,
        behaviour: TargetBehaviour,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let https = tls.is_some();
        let task = tokio::spawn(accept_loop(listener, behaviour, tls, Arc::clone(&requests)));
        Ok(Self {
            addr,
            requests,
            task,
            https,
        })
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The URL to load-test it.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    /// Serves until the process ends.
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    behaviour: TargetBehaviour,
    tls: Option<TlsAcceptor>,
    requests: Arc<AtomicU64>,
) {
    let origin = Instant::now();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let requests = Arc::clone(&requests);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream, behaviour, origin, requests).await,
                // A failed handshake (a client that does not trust us) just
                // ends the connection.
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, behaviour, origin, requests).await;
                    }
                }
            }
        });
    }
}

/// Answers the requests of one connection until it closes.
async fn serve<S>(stream: S, behaviour: TargetBehaviour, origin: Instant, requests: Arc<AtomicU64>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
        let requests = Arc::clone(&requests);
        async move {
            respond_after(behaviour, origin).await;
            requests.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn respond_after(behaviour: TargetBehaviour, origin: Instant) {
    if let Some(every) = behaviour.stall_every.filter(|e| !e.is_zero()) {
        let into_period =
            Duration::from_nanos((origin.elapsed().as_nanos() % every.as_nanos()) as u64);
        let stall_starts = every.saturating_sub(behaviour.stall_for);
        if into_period >= stall_starts {
            tokio::time::sleep(every - into_period).await;
        }
    }
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
}
