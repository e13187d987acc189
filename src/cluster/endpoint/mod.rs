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
//! - [`client`]: requests from the command line's client-only endpoint.
//! - `inbound`, `outbound`, `counters`: serving, sending, and what is
//!   counted.

pub mod auth;
pub mod client;
pub mod clock;
mod counters;
mod inbound;
mod outbound;
pub mod tls;

pub use client::{Client, client_request, request_status};
pub use counters::{CounterSnapshot, Counters};
use inbound::accept_loop;
pub use outbound::{NoAnswer, Refused, connect};
use outbound::{connection_to, exchange, outbound_loop};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::cluster::endpoint::auth::{Admission, Role};

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

/// Whether a connection admitted as `role` may open a stream of `kind`:
/// a peer may use every kind; a client may only ask for status and send
/// control commands, never gossip, vote or replicate.
pub fn allowed(role: Role, kind: StreamKind) -> bool {
    match role {
        Role::Peer => true,
        Role::Client => matches!(kind, StreamKind::Status | StreamKind::Control),
    }
}

/// What asks peers requests and waits for their answers: a peer's own
/// [`Network`], or a command-line [`Client`].
pub trait Requester: Send + Sync {
    /// Sends a request of stream `kind` to `to` and waits up to `timeout`.
    fn request<'a>(
        &'a self,
        to: SocketAddr,
        kind: StreamKind,
        body: &'a [u8],
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<Vec<u8>>>;
}

impl Requester for Network {
    fn request<'a>(
        &'a self,
        to: SocketAddr,
        kind: StreamKind,
        body: &'a [u8],
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<Vec<u8>>> {
        Box::pin(Network::request(self, to, kind, body, timeout))
    }
}

impl Requester for Client {
    fn request<'a>(
        &'a self,
        to: SocketAddr,
        kind: StreamKind,
        body: &'a [u8],
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<Vec<u8>>> {
        Box::pin(Client::request(self, to, kind, body, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::outbound::send_uni;
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
