//! The sending side: connecting and being admitted, per-destination send
//! queues, one request and its answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::auth::{Hello, PROTOCOL, Role, Welcome, session_ekm};
use super::inbound::serve_streams;
use super::{
    CONNECT_TIMEOUT, Identity, Inner, MAX_HANDSHAKE, MAX_MESSAGE, RETRY_AFTER, StreamKind, tls,
};

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

/// Sends queued messages to `to`, connecting when needed.
pub(super) async fn outbound_loop(
    inner: Arc<Inner>,
    to: SocketAddr,
    mut queue: mpsc::Receiver<Bytes>,
) {
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

pub(super) async fn connection_to(inner: &Arc<Inner>, to: SocketAddr) -> Option<quinn::Connection> {
    if let Some(conn) = inner.connections.lock().get(&to)
        && conn.close_reason().is_none()
    {
        return Some(conn.clone());
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

pub(super) async fn send_uni(
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

/// One request of stream `kind` on `conn` and its whole answer.
pub(super) async fn exchange(
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
