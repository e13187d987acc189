//! Liveness and readiness for a container platform's probes
//! (`--health-listen ADDR`), answered without the cluster secret and
//! telling nothing but the verdict:
//!
//! - `GET /livez`: 200 while the peer's runtime answers at all;
//! - `GET /readyz`: 200 once the peer knows a Raft leader, is a member of
//!   the Raft cluster and has applied its state, so it can hold a share;
//!   503 with the reason before that (or after it lost them).
//!
//! `vajra-peer health ADDR` asks `/readyz` and exits 0 or 1, for platforms
//! whose probes run a command.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::cluster::consensus::{Raft, RaftNode};
use crate::export::http::HttpClient;
use crate::web::plain::{self, text};

/// What `/readyz` judges: a peer's Raft node.
#[derive(Clone)]
pub struct Readiness {
    raft: Raft,
    me: u64,
}

impl Readiness {
    /// Readiness of the peer whose Raft node is `node`.
    pub fn of(node: &RaftNode) -> Self {
        Self {
            raft: node.raft.clone(),
            me: node.id,
        }
    }

    /// Ready, or why not.
    pub fn check(&self) -> Result<(), &'static str> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader.is_none() {
            return Err("no Raft leader known yet");
        }
        let member = metrics
            .membership_config
            .membership()
            .nodes()
            .any(|(id, _)| *id == self.me);
        if !member {
            return Err("not a member of the Raft cluster yet");
        }
        if metrics.last_applied.is_none() {
            return Err("no Raft state applied yet");
        }
        Ok(())
    }
}

/// A running health endpoint; it stops when dropped.
pub struct HealthServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    /// Listens on `addr` (on the current runtime), judging readiness with
    /// `readiness`.
    pub async fn start(addr: SocketAddr, readiness: Readiness) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(plain::serve(listener, move |request| {
            answer(request, &readiness)
        }));
        Ok(Self { local_addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(request: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "/livez and /readyz only\n".into()),
    }
}

/// How long `vajra-peer health` waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the health endpoint at `addr` whether its peer is ready: `Ok`
/// with the answer's text when it is, `Err` with why not (the endpoint's
/// reason, or why it could not be asked).
pub async fn probe(addr: &str) -> Result<String, String> {
    let client = HttpClient::new(PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    let url = format!("http://{addr}/readyz");
    let answer = client
        .send(Method::GET, &url, &[], Bytes::new())
        .await
        .map_err(|e| format!("cannot ask {e}"))?;
    let said = answer.excerpt(200).trim().to_owned();
    if answer.status == StatusCode::OK {
        Ok(said)
    } else {
        Err(format!("{addr}: {}: {said}", answer.status))
    }
}
