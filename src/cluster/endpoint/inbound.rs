//! The serving side: accepting connections, admitting peers and clients,
//! and answering their streams by kind and role.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::auth::{Hello, PROTOCOL, Role, Welcome, session_ekm};
use super::{CONNECT_TIMEOUT, Inner, MAX_HANDSHAKE, MAX_MESSAGE, StreamKind, allowed};

pub(super) async fn accept_loop(inner: Arc<Inner>) {
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

/// Accepts streams on an admitted connection until it closes.
pub(super) async fn serve_streams(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    from: SocketAddr,
    role: Role,
) {
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
