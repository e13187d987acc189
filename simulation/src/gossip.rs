//! chitchat's in-memory `ChannelTransport` behind the simulated network.
//!
//! Delivery (and the encode/decode round trip of every message) is
//! chitchat's own channel transport; [`SimGossip`] puts [`Net`] in front of
//! it, so each envelope may be dropped (partition, cut, isolation, loss) or
//! delayed. Delayed envelopes wait in a timer task and are handed to the
//! channel by the sender's socket the next time chitchat polls it.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chitchat::ChitchatMessage;
use chitchat::transport::{ChannelTransport, Socket, Transport};
use tokio::sync::mpsc;

use crate::net::{Net, Verdict};

/// A chitchat [`Transport`] over the simulated network.
#[derive(Clone)]
pub struct SimGossip {
    channel: ChannelTransport,
    net: Arc<Net>,
}

impl SimGossip {
    /// Gossip through `channel`, subject to `net`'s faults.
    pub fn new(channel: ChannelTransport, net: Arc<Net>) -> Self {
        Self { channel, net }
    }
}

#[async_trait]
impl Transport for SimGossip {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.channel.open(listen_addr).await?;
        let (delayed_tx, delayed_rx) = mpsc::unbounded_channel();
        Ok(Box::new(SimSocket {
            addr: listen_addr,
            inner,
            net: Arc::clone(&self.net),
            delayed_tx,
            delayed_rx,
        }))
    }
}

type Envelope = (SocketAddr, ChitchatMessage);

struct SimSocket {
    addr: SocketAddr,
    inner: Box<dyn Socket>,
    net: Arc<Net>,
    delayed_tx: mpsc::UnboundedSender<Envelope>,
    delayed_rx: mpsc::UnboundedReceiver<Envelope>,
}

#[async_trait]
impl Socket for SimSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        match self.net.verdict(self.addr, to) {
            Verdict::Drop => Ok(()),
            Verdict::Deliver(delay) if delay.is_zero() => self.inner.send(to, message).await,
            Verdict::Deliver(delay) => {
                let tx = self.delayed_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send((to, message));
                });
                Ok(())
            }
        }
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            tokio::select! {
                received = self.inner.recv() => {
                    let (from, message) = received?;
                    // A frozen peer reads nothing, even what was in flight.
                    if !self.net.is_isolated(self.addr) {
                        return Ok((from, message));
                    }
                }
                Some((to, message)) = self.delayed_rx.recv() => {
                    if self.net.connected(self.addr, to) {
                        self.inner.send(to, message).await?;
                    }
                }
            }
        }
    }
}
