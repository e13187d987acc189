//! chitchat's transport over the peer endpoint.
//!
//! chitchat asks a `Transport` for a `Socket` that sends and receives whole
//! envelopes. Ours serialises an envelope with chitchat's own encoding and
//! hands it to [`Network::send_gossip`] (one QUIC stream per envelope, so
//! envelopes of chitchat's full size pass); received envelopes come from the
//! endpoint's gossip inbox, tagged with the sender's advertised address.

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use parking_lot::Mutex;

use crate::cluster::endpoint::{GossipInbox, Network};

/// A chitchat [`Transport`] backed by a [`Network`].
pub struct QuicGossip {
    network: Network,
    inbox: Mutex<Option<GossipInbox>>,
}

impl QuicGossip {
    /// Gossip over `network`, reading envelopes from `inbox`.
    pub fn new(network: Network, inbox: GossipInbox) -> Self {
        Self {
            network,
            inbox: Mutex::new(Some(inbox)),
        }
    }
}

#[async_trait]
impl Transport for QuicGossip {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .inbox
            .lock()
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip socket is already open"))?;
        Ok(Box::new(GossipSocket {
            network: self.network.clone(),
            inbox,
        }))
    }
}

struct GossipSocket {
    network: Network,
    inbox: GossipInbox,
}

#[async_trait]
impl Socket for GossipSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(message.serialized_len());
        message.serialize(&mut buf);
        self.network.send_gossip(to, Bytes::from(buf));
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from_addr, bytes) = self
                .inbox
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the peer endpoint has shut down"))?;
            match ChitchatMessage::deserialize(&mut &bytes[..]) {
                Ok(message) => return Ok((from_addr, message)),
                Err(e) => {
                    self.network.count_bad_message();
                    tracing::debug!("undecodable gossip from {from_addr}: {e}");
                }
            }
        }
    }
}
