//! A built-in HTTP target, so a demo or a benchmark needs nothing else.
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
use tokio::net::TcpListener;

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
}

impl Target {
    /// Binds `addr` (port 0 picks a free one) and serves in the background.
    pub async fn start(addr: SocketAddr, behaviour: TargetBehaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, behaviour, Arc::clone(&requests)));
        Ok(Self {
            addr,
            requests,
            task,
        })
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The URL to load-test it.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
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

async fn accept_loop(listener: TcpListener, behaviour: TargetBehaviour, requests: Arc<AtomicU64>) {
    let origin = Instant::now();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
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
        });
    }
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
