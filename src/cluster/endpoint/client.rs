//! The command-line client: requests from a client-only endpoint, and a
//! client that keeps one admitted connection per peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::auth::{Admission, Role};
use super::outbound::{connect, exchange};
use super::{Identity, StreamKind, tls};

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
    let (endpoint, identity) = client_endpoint(bind, cluster_id, admission)?;
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

/// A client-only endpoint bound at `bind`, and who it says it is.
fn client_endpoint(
    bind: SocketAddr,
    cluster_id: &str,
    admission: Admission,
) -> anyhow::Result<(quinn::Endpoint, Identity)> {
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(tls::client_config(&admission)?);
    let identity = Identity {
        cluster_id: cluster_id.to_owned(),
        node: "status-client".to_owned(),
        advertise: endpoint.local_addr()?,
        admission,
    };
    Ok((endpoint, identity))
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
        let (endpoint, identity) = client_endpoint("0.0.0.0:0".parse()?, cluster_id, admission)?;
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
