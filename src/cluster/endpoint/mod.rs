//! The peer endpoint: one QUIC endpoint (one UDP port) per peer, carrying
//! every kind of peer traffic on streams.
//!
//! A connection is admitted by the hello/welcome exchange of
//! [`crate::cluster::endpoint::auth`] on its first bidirectional stream; nothing else is read
//! or sent before. After that, each message is one stream whose first byte
//! says what it is: gossip envelopes go on unidirectional streams (so
//! messages of chitchat's full size pass, unlike QUIC datagrams), requests
//! such as status on bidirectional ones. Raft RPCs and histogram fetches
//! will be further kinds on the same connections.
//!
//! Sending never blocks the caller: each destination has a small queue
//! drained by its own task, which connects on demand; a dead or frozen peer
//! only costs its own queue, whose overflow is dropped.

//!
//! - [`tls`]: TLS 1.3 configuration of the endpoint.
//! - [`auth`]: the cluster-secret challenge bound to the TLS session.
//! - [`clock`]: clock offsets between peers, measured over the endpoint.

pub mod auth;
pub mod clock;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cluster::endpoint::auth::{Admission, Hello, PROTOCOL, Role, Welcome, session_ekm};

/// What a stream carries, named by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamKind {
    /// One gossip envelope (unidirectional).
    Gossip = 1,
    /// A status request, answered with JSON (bidirectional).
    Status = 2,
    /// A Raft RPC, answered on the same stream (bidirectional).
    Raft = 3,
    /// A control command (start, stop, results), JSON both ways.
    Control = 4,
    /// A peer's clock reading (request/response).
    Clock = 5,
}

impl StreamKind {
    /// The kind a stream's first byte names, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        [
            Self::Gossip,
            Self::Status,
            Self::Raft,
            Self::Control,
            Self::Clock,
        ]
        .into_iter()
        .find(|k| *k as u8 == byte)
    }
}
/// Largest message accepted on a stream.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest hello or welcome.
const MAX_HANDSHAKE: usize = 16 * 1024;
/// Time allowed to connect and be admitted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection attempt, messages to that peer are dropped
/// for this long instead of retrying at every gossip round.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Messages queued per destination before new ones are dropped.
const QUEUE: usize = 64;

/// Who this endpoint is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Cluster id; connections from other clusters are refused.
    pub cluster_id: String,
    /// This node's id.
    pub node: String,
    /// Address other peers reach this endpoint at.
    pub advertise: SocketAddr,
    /// How peers are admitted.
    pub admission: Admission,
}

/// Counts of what the endpoint refused or dropped.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections that failed the TLS/QUIC handshake (wrong ALPN, garbage).
    pub handshake_failures: AtomicU64,
    /// Connections refused at admission (wrong secret, cluster or version).
    pub refused_peers: AtomicU64,
    /// Messages dropped as malformed (bad kind, too large, undecodable).
    pub bad_messages: AtomicU64,
    /// Outgoing messages dropped (queue full or peer unreachable).
    pub dropped_outgoing: AtomicU64,
    /// Streams refused because the connection's role may not open them (a
    /// client gossiping or speaking Raft).
    pub forbidden: AtomicU64,
}

/// A snapshot of [`Counters`] plus quinn's own handshake statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    /// See [`Counters::handshake_failures`].
    pub handshake_failures: u64,
    /// See [`Counters::refused_peers`].
    pub refused_peers: u64,
    /// See [`Counters::bad_messages`].
    pub bad_messages: u64,
    /// See [`Counters::dropped_outgoing`].
    pub dropped_outgoing: u64,
    /// See [`Counters::forbidden`].
    #[serde(default)]
    pub forbidden_streams: u64,
    /// Handshakes quinn refused or ignored (e.g. unparseable initial packets).
    pub ignored_handshakes: u64,
}

/// Produces the answer to a status request.
pub type StatusAnswer = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

/// Answers a request of one stream kind (its body without the kind byte).
pub type RequestHandler = Arc<
    dyn Fn(Bytes) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>>
        + Send
        + Sync,
>;

struct Inner {
    endpoint: quinn::Endpoint,
    identity: Identity,
    connections: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    queues: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    failed_at: Mutex<HashMap<SocketAddr, Instant>>,
    gossip_in: mpsc::Sender<(SocketAddr, Bytes)>,
    status: Mutex<Option<StatusAnswer>>,
    handlers: Mutex<HashMap<StreamKind, RequestHandler>>,
    counters: Counters,
    /// Refusals per address we tried to join through, with the last reason.
    refusals: Mutex<HashMap<SocketAddr, (u32, String)>>,
    /// Peer admissions so far, either way.
    admitted: AtomicU64,
}

/// The running endpoint; cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

/// Incoming gossip: the sender's advertised address and the raw envelope.
pub type GossipInbox = mpsc::Receiver<(SocketAddr, Bytes)>;

impl Network {
    /// Binds `listen` and starts accepting peers.
    pub fn bind(listen: SocketAddr, identity: Identity) -> anyhow::Result<(Self, GossipInbox)> {
        let mut endpoint =
            quinn::Endpoint::server(tls::server_config(&identity.admission)?, listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}/udp: {e}"))?;
        endpoint.set_default_client_config(tls::client_config(&identity.admission)?);
        let (gossip_in, inbox) = mpsc::channel(1024);
        let inner = Arc::new(Inner {
            endpoint,
            identity,
            connections: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            failed_at: Mutex::new(HashMap::new()),
            gossip_in,
            status: Mutex::new(None),
            handlers: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            admitted: AtomicU64::new(0),
            counters: Counters::default(),
        });
        tokio::spawn(accept_loop(Arc::clone(&inner)));
        Ok((Self { inner }, inbox))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// Who this endpoint is.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Answers status requests with what `source` returns.
    pub fn serve_status(&self, source: StatusAnswer) {
        *self.inner.status.lock() = Some(source);
    }

    /// Answers requests of stream `kind` with `handler`.
    pub fn serve_requests(&self, kind: StreamKind, handler: RequestHandler) {
        self.inner.handlers.lock().insert(kind, handler);
    }

    /// Sends a request of stream `kind` to the peer at `to` (connecting and
    /// being admitted if needed) and waits up to `timeout` for the answer.
    pub async fn request(
        &self,
        to: SocketAddr,
        kind: StreamKind,
        body: &[u8],
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let work = async {
            let conn = connection_to(&self.inner, to)
                .await
                .ok_or_else(|| anyhow::anyhow!("peer {to} is unreachable"))?;
            exchange(&conn, kind, body).await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| anyhow::anyhow!("no answer from {to} within {timeout:?}"))?
    }

    /// Queues a gossip envelope for `to`; never waits.
    pub fn send_gossip(&self, to: SocketAddr, payload: Bytes) {
        let queue = {
            let mut queues = self.inner.queues.lock();
            queues
                .entry(to)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(outbound_loop(Arc::clone(&self.inner), to, rx));
                    tx
                })
                .clone()
        };
        if queue.try_send(payload).is_err() {
            self.inner
                .counters
                .dropped_outgoing
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What was refused or dropped so far.
    pub fn counters(&self) -> CounterSnapshot {
        let c = &self.inner.counters;
        let stats = self.inner.endpoint.stats();
        CounterSnapshot {
            handshake_failures: c.handshake_failures.load(Ordering::Relaxed),
            refused_peers: c.refused_peers.load(Ordering::Relaxed),
            bad_messages: c.bad_messages.load(Ordering::Relaxed),
            dropped_outgoing: c.dropped_outgoing.load(Ordering::Relaxed),
            forbidden_streams: c.forbidden.load(Ordering::Relaxed),
            ignored_handshakes: stats.refused_handshakes + stats.ignored_handshakes,
        }
    }

    /// When this peer has never been admitted by anyone (nor admitted a
    /// peer) and every address it tried to join through that answered has
    /// refused it at least `times` times: those addresses and what they
    /// said. A peer with a wrong secret or cluster id would otherwise run
    /// on alone, looking joined.
    pub fn refused_everywhere(&self, times: u32) -> Option<Vec<(SocketAddr, String)>> {
        if self.inner.admitted.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let refusals = self.inner.refusals.lock();
        let all_refused = !refusals.is_empty() && refusals.values().all(|(n, _)| *n >= times);
        all_refused.then(|| {
            let mut said: Vec<_> = refusals
                .iter()
                .map(|(addr, (_, reason))| (*addr, reason.clone()))
                .collect();
            said.sort();
            said
        })
    }

    /// Counts a malformed message found by a layer above.
    pub fn count_bad_message(&self) {
        self.inner
            .counters
            .bad_messages
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"shutting down");
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        tokio::spawn(serve_incoming(Arc::clone(&inner), incoming));
    }
}

async fn serve_incoming(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            inner
                .counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("handshake with {remote} failed: {e}");
            return;
        }
        Err(_) => {
            inner
                .counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, admit(&inner, &conn)).await {
        Ok(Ok(hello)) => {
            // The address a peer claims is believed only on its own IP: an
            // admitted process must not take over the traffic meant for
            // another peer's address.
            let from = hello
                .advertise
                .parse::<SocketAddr>()
                .ok()
                .filter(|a| a.ip() == remote.ip())
                .unwrap_or(remote);
            if hello.role == Role::Peer {
                inner.admitted.fetch_add(1, Ordering::Relaxed);
                inner.connections.lock().insert(from, conn.clone());
            }
            serve_streams(inner, conn, from, hello.role).await;
        }
        Ok(Err(reason)) => {
            inner.counters.refused_peers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("refused connection from {remote}: {reason}");
            // Give the refusal a moment to reach the client before closing.
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.close(1u32.into(), b"refused");
        }
        Err(_) => {
            inner.counters.refused_peers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("refused connection from {remote}: no hello in time");
            conn.close(1u32.into(), b"timeout");
        }
    }
}

/// Server side of admission: read the hello, check it, answer.
async fn admit(inner: &Inner, conn: &quinn::Connection) -> Result<Hello, String> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let bytes = recv
        .read_to_end(MAX_HANDSHAKE)
        .await
        .map_err(|e| e.to_string())?;
    let hello: Hello =
        serde_json::from_slice(&bytes).map_err(|e| format!("malformed hello: {e}"))?;
    let ekm = session_ekm(conn).map_err(|e| e.to_string())?;
    let id = &inner.identity;
    let refusal = if hello.protocol != PROTOCOL {
        Some(format!(
            "protocol version {} (this peer speaks {PROTOCOL})",
            hello.protocol
        ))
    } else if hello.cluster_id != id.cluster_id {
        Some(format!(
            "cluster '{}' (this is '{}')",
            hello.cluster_id, id.cluster_id
        ))
    } else if !id.admission.verify(&ekm, "client", &hello.proof) {
        Some(format!(
            "node '{}' failed the {} admission check",
            hello.node,
            id.admission.mode()
        ))
    } else {
        None
    };
    let welcome = Welcome {
        ok: refusal.is_none(),
        error: refusal.clone(),
        proof: if refusal.is_none() {
            id.admission.proof(&ekm, "server")
        } else {
            String::new()
        },
    };
    let body = serde_json::to_vec(&welcome).expect("welcome serialises");
    let _ = send.write_all(&body).await;
    let _ = send.finish();
    match refusal {
        Some(reason) => Err(reason),
        None => Ok(hello),
    }
}

/// Why the other side did not admit us: it answered, and said no.
#[derive(Debug, thiserror::Error)]
#[error("{to} refused us: {reason}")]
pub struct Refused {
    /// Who refused.
    pub to: SocketAddr,
    /// What it said.
    pub reason: String,
}

/// Nothing answered the QUIC handshake at an address in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "no peer answered at {0} within {CONNECT_TIMEOUT:?} (is vajra-peer listening on that UDP port? a firewall?)"
)]
pub struct NoAnswer(pub SocketAddr);

/// Client side: connect to `to` and be admitted as `role`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    to: SocketAddr,
    role: Role,
) -> anyhow::Result<quinn::Connection> {
    // An address where nothing listens never answers (ICMP is ignored):
    // say so after the connect timeout instead of quinn's idle "timed out".
    let connecting = endpoint.connect(to, tls::SERVER_NAME)?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(quinn::ConnectionError::TimedOut)) | Err(_) => return Err(NoAnswer(to).into()),
        Ok(Err(e)) => return Err(e.into()),
    };
    let ekm = session_ekm(&conn)?;
    let hello = Hello {
        protocol: PROTOCOL,
        cluster_id: identity.cluster_id.clone(),
        role,
        node: identity.node.clone(),
        advertise: identity.advertise.to_string(),
        proof: identity.admission.proof(&ekm, "client"),
    };
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&serde_json::to_vec(&hello)?).await?;
    send.finish()?;
    let bytes = match recv.read_to_end(MAX_HANDSHAKE).await {
        Ok(bytes) => bytes,
        // The refusal's close can overtake its welcome.
        Err(quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::ApplicationClosed(close),
        ))) if &close.reason[..] == b"refused" => {
            return Err(Refused {
                to,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let welcome: Welcome = serde_json::from_slice(&bytes)?;
    if !welcome.ok {
        return Err(Refused {
            to,
            reason: welcome.error.unwrap_or_default(),
        }
        .into());
    }
    if !identity.admission.verify(&ekm, "server", &welcome.proof) {
        conn.close(1u32.into(), b"bad proof");
        anyhow::bail!("{to} did not prove it knows the cluster secret");
    }
    Ok(conn)
}

/// Whether a connection admitted as `role` may open a stream of `kind`:
/// a peer may use every kind; a client may only ask for status and send
/// control commands, never gossip, vote or replicate.
pub fn allowed(role: Role, kind: StreamKind) -> bool {
    match role {
        Role::Peer => true,
        Role::Client => matches!(kind, StreamKind::Status | StreamKind::Control),
    }
}

/// Accepts streams on an admitted connection until it closes.
async fn serve_streams(inner: Arc<Inner>, conn: quinn::Connection, from: SocketAddr, role: Role) {
    loop {
        tokio::select! {
            uni = conn.accept_uni() => match uni {
                Ok(recv) => { tokio::spawn(read_uni(Arc::clone(&inner), recv, from, role)); }
                Err(_) => break,
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => { tokio::spawn(answer_bi(Arc::clone(&inner), send, recv, role)); }
                Err(_) => break,
            },
        }
    }
    let mut connections = inner.connections.lock();
    if connections
        .get(&from)
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        connections.remove(&from);
    }
}

async fn read_uni(inner: Arc<Inner>, mut recv: quinn::RecvStream, from: SocketAddr, role: Role) {
    if !allowed(role, StreamKind::Gossip) {
        inner.counters.forbidden.fetch_add(1, Ordering::Relaxed);
        let _ = recv.stop(2u32.into());
        return;
    }
    let bytes = match recv.read_to_end(MAX_MESSAGE).await {
        Ok(bytes) if bytes.first() == Some(&(StreamKind::Gossip as u8)) => bytes,
        _ => {
            inner.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let payload = Bytes::from(bytes).slice(1..);
    let _ = inner.gossip_in.try_send((from, payload));
}

async fn answer_bi(
    inner: Arc<Inner>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    role: Role,
) {
    let request: Vec<u8> = recv.read_to_end(MAX_MESSAGE).await.unwrap_or_default();
    let kind = request.first().copied().and_then(StreamKind::from_byte);
    if kind.is_some_and(|kind| !allowed(role, kind)) {
        inner.counters.forbidden.fetch_add(1, Ordering::Relaxed);
        let _ = send.reset(2u32.into());
        return;
    }
    let answer = match kind {
        Some(StreamKind::Status) if request.len() == 1 => {
            inner.status.lock().clone().map(|source| source())
        }
        Some(kind) => {
            let handler = inner.handlers.lock().get(&kind).cloned();
            match handler {
                Some(handler) => Some(handler(Bytes::from(request).slice(1..)).await),
                None => None,
            }
        }
        None => None,
    };
    match answer {
        Some(bytes) => {
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
        }
        None => {
            inner.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
            let _ = send.reset(1u32.into());
        }
    }
}

/// Sends queued messages to `to`, connecting when needed.
async fn outbound_loop(inner: Arc<Inner>, to: SocketAddr, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(payload) = queue.recv().await {
        let Some(conn) = connection_to(&inner, to).await else {
            inner
                .counters
                .dropped_outgoing
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if send_uni(&conn, StreamKind::Gossip, &payload).await.is_err() {
            inner
                .counters
                .dropped_outgoing
                .fetch_add(1, Ordering::Relaxed);
            conn.close(0u32.into(), b"send failed");
        }
    }
}

async fn connection_to(inner: &Arc<Inner>, to: SocketAddr) -> Option<quinn::Connection> {
    if let Some(conn) = inner.connections.lock().get(&to) {
        if conn.close_reason().is_none() {
            return Some(conn.clone());
        }
    }
    if inner
        .failed_at
        .lock()
        .get(&to)
        .is_some_and(|t| t.elapsed() < RETRY_AFTER)
    {
        return None;
    }
    let attempt = connect(&inner.endpoint, &inner.identity, to, Role::Peer);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
        Ok(Ok(conn)) => {
            inner.failed_at.lock().remove(&to);
            inner.refusals.lock().remove(&to);
            inner.admitted.fetch_add(1, Ordering::Relaxed);
            inner.connections.lock().insert(to, conn.clone());
            // It proved it knows the secret: it is a peer.
            tokio::spawn(serve_streams(
                Arc::clone(inner),
                conn.clone(),
                to,
                Role::Peer,
            ));
            Some(conn)
        }
        Ok(Err(e)) => {
            match e.downcast_ref::<Refused>() {
                Some(refused) => note_refusal(inner, refused),
                None => tracing::debug!("cannot reach peer {to}: {e:#}"),
            }
            inner.failed_at.lock().insert(to, Instant::now());
            None
        }
        Err(_) => {
            tracing::debug!("peer {to} did not answer within {CONNECT_TIMEOUT:?}");
            inner.failed_at.lock().insert(to, Instant::now());
            None
        }
    }
}

/// Counts a refusal from `refused.to`; the first one from an address is
/// an error in the log (a wrong secret or cluster id is a configuration
/// mistake the user must see), repeats are not.
fn note_refusal(inner: &Inner, refused: &Refused) {
    let mut refusals = inner.refusals.lock();
    let entry = refusals
        .entry(refused.to)
        .or_insert_with(|| (0, refused.reason.clone()));
    entry.0 += 1;
    if entry.0 == 1 {
        tracing::error!("{refused}");
    } else {
        tracing::debug!("{refused}");
    }
}

async fn send_uni(
    conn: &quinn::Connection,
    kind: StreamKind,
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut stream = conn.open_uni().await?;
    stream.write_all(&[kind as u8]).await?;
    stream.write_all(payload).await?;
    stream.finish()?;
    Ok(())
}

/// Asks the peer at `to` for its status, authenticating as a client.
pub async fn request_status(
    to: SocketAddr,
    cluster_id: &str,
    admission: Admission,
) -> anyhow::Result<Vec<u8>> {
    client_request(to, cluster_id, admission, StreamKind::Status, &[]).await
}

/// Sends one request of stream `kind` to the peer at `to`, authenticating
/// as a client, and returns the answer.
pub async fn client_request(
    to: SocketAddr,
    cluster_id: &str,
    admission: Admission,
    kind: StreamKind,
    body: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(tls::client_config(&admission)?);
    let identity = Identity {
        cluster_id: cluster_id.to_owned(),
        node: "status-client".to_owned(),
        advertise: endpoint.local_addr()?,
        admission,
    };
    let work = async {
        let conn = connect(&endpoint, &identity, to, Role::Client).await?;
        let answer = exchange(&conn, kind, body).await?;
        conn.close(0u32.into(), b"done");
        anyhow::Ok(answer)
    };
    let result = tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {to} within 15s"))?;
    let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
    result
}

/// One request of stream `kind` on `conn` and its whole answer.
async fn exchange(
    conn: &quinn::Connection,
    kind: StreamKind,
    body: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[kind as u8]).await?;
    send.write_all(body).await?;
    send.finish()?;
    Ok(recv.read_to_end(MAX_MESSAGE).await?)
}

/// A command-line client that keeps one admitted connection per peer, for
/// commands that ask the same peers again and again (`start --wait`).
pub struct Client {
    endpoint: quinn::Endpoint,
    identity: Identity,
    /// One slot per peer, locked while connecting so a slow or dead peer
    /// holds up only its own requests.
    connections: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Option<quinn::Connection>>>>>,
}

impl Client {
    /// A client of cluster `cluster_id`, admitted with `admission`.
    pub fn new(cluster_id: &str, admission: Admission) -> anyhow::Result<Self> {
        let bind: SocketAddr = "0.0.0.0:0".parse()?;
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(tls::client_config(&admission)?);
        let identity = Identity {
            cluster_id: cluster_id.to_owned(),
            node: "status-client".to_owned(),
            advertise: endpoint.local_addr()?,
            admission,
        };
        Ok(Self {
            endpoint,
            identity,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Sends a request of stream `kind` to `to` and waits up to `timeout`
    /// for the answer, connecting again if the last connection broke.
    pub async fn request(
        &self,
        to: SocketAddr,
        kind: StreamKind,
        body: &[u8],
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let work = async {
            let conn = self.connection(to).await?;
            exchange(&conn, kind, body).await
        };
        let result = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| anyhow::anyhow!("no answer from {to} within {timeout:?}"))
            .and_then(|r| r);
        if result.is_err() {
            self.connections.lock().remove(&to);
        }
        result
    }

    async fn connection(&self, to: SocketAddr) -> anyhow::Result<quinn::Connection> {
        let slot = Arc::clone(self.connections.lock().entry(to).or_default());
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(conn.clone());
        }
        let conn = connect(&self.endpoint, &self.identity, to, Role::Client).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Closes every connection, letting the peers know at once.
    pub async fn close(self) {
        let slots: Vec<_> = self.connections.lock().values().cloned().collect();
        for slot in slots {
            if let Some(conn) = slot.lock().await.as_ref() {
                conn.close(0u32.into(), b"done");
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(port_hint: &str, admission: Admission) -> (SocketAddr, Identity) {
        let addr: SocketAddr = port_hint.parse().unwrap();
        let id = Identity {
            cluster_id: "test".into(),
            node: format!("n{}", addr.port()),
            advertise: addr,
            admission,
        };
        (addr, id)
    }

    fn free_addr() -> String {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_full_size_gossip_message_crosses_intact_and_strangers_do_not() {
        let secret = Admission::Secret(b"0123456789abcdef".to_vec());
        let (a_addr, a_id) = identity(&free_addr(), secret.clone());
        let (b_addr, b_id) = identity(&free_addr(), secret);
        let (a, _a_inbox) = Network::bind(a_addr, a_id).unwrap();
        let (_b, mut b_inbox) = Network::bind(b_addr, b_id).unwrap();
        // chitchat's largest message is just under 64 KiB: far beyond a
        // QUIC datagram, which is why gossip rides on streams.
        let payload: Vec<u8> = (0..65_000u32).map(|i| (i % 251) as u8).collect();
        a.send_gossip(b_addr, Bytes::from(payload.clone()));
        let (from, got) = tokio::time::timeout(Duration::from_secs(5), b_inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, a_addr);
        assert_eq!(got.as_ref(), payload.as_slice());

        let (s_addr, s_id) = identity(
            &free_addr(),
            Admission::Secret(b"not-the-cluster-secret".to_vec()),
        );
        let (stranger, _s_inbox) = Network::bind(s_addr, s_id).unwrap();
        stranger.send_gossip(b_addr, Bytes::from_static(b"let me in"));
        let nothing = tokio::time::timeout(Duration::from_millis(500), b_inbox.recv()).await;
        assert!(nothing.is_err(), "a stranger's message was delivered");
        assert!(stranger.counters().dropped_outgoing >= 1);
    }

    /// A holder of the secret admitted as a client may ask for status and
    /// send control commands, but its gossip and Raft streams are refused.
    #[tokio::test]
    async fn a_client_may_ask_and_command_but_never_gossip_or_vote() {
        let secret = Admission::Secret(b"0123456789abcdef".to_vec());
        let (p_addr, p_id) = identity(&free_addr(), secret.clone());
        let (peer, mut inbox) = Network::bind(p_addr, p_id).unwrap();
        peer.serve_status(Arc::new(|| b"{}".to_vec()));
        peer.serve_requests(
            StreamKind::Raft,
            Arc::new(|_| Box::pin(async { b"voted".to_vec() })),
        );
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut endpoint = endpoint;
        endpoint.set_default_client_config(tls::client_config(&secret).unwrap());
        let (_, client_id) = identity("127.0.0.1:1", secret);
        let conn = connect(&endpoint, &client_id, p_addr, Role::Client)
            .await
            .unwrap();
        assert_eq!(
            exchange(&conn, StreamKind::Status, &[]).await.unwrap(),
            b"{}"
        );
        assert!(
            exchange(&conn, StreamKind::Raft, b"vote for me")
                .await
                .is_err(),
            "a client's Raft request was answered"
        );
        send_uni(&conn, StreamKind::Gossip, b"gossip")
            .await
            .unwrap();
        let nothing = tokio::time::timeout(Duration::from_millis(300), inbox.recv()).await;
        assert!(nothing.is_err(), "a client's gossip was delivered");
        assert!(peer.counters().forbidden_streams >= 2);
        assert!(allowed(Role::Peer, StreamKind::Raft) && !allowed(Role::Client, StreamKind::Clock));
        assert_eq!(StreamKind::from_byte(4), Some(StreamKind::Control));
        assert_eq!(StreamKind::from_byte(9), None);
    }
}
