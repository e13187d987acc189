//! Finding peers: seed addresses (handled by chitchat, which resolves and
//! re-resolves host names, and by [`super::seeds`] while a peer is alone)
//! and mDNS on the local network.
//!
//! With `--mdns`, a peer announces `_vajra._udp.local.` with its cluster id
//! and node id in the TXT record, and browses for the same service; every
//! instance of the same cluster that resolves is handed to gossip, which
//! then learns the rest of the membership from it. Instances of other
//! clusters are ignored.

use std::net::SocketAddr;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

/// The mDNS service type peers announce.
pub const SERVICE_TYPE: &str = "_vajra._udp.local.";
const TXT_CLUSTER: &str = "cluster";
const TXT_NODE: &str = "node";

/// A running mDNS announcer and browser; stops when dropped.
pub struct MdnsDiscovery {
    daemon: ServiceDaemon,
}

impl MdnsDiscovery {
    /// Announces this peer and reports peers of `cluster_id` found on the
    /// local network through the returned channel.
    pub fn start(
        cluster_id: &str,
        node_id: &str,
        advertise: SocketAddr,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<SocketAddr>)> {
        let daemon = ServiceDaemon::new().map_err(|e| anyhow::anyhow!("cannot start mDNS: {e}"))?;
        let host = format!("{}.local.", sanitize(node_id));
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &sanitize(node_id),
            &host,
            advertise.ip(),
            advertise.port(),
            &[(TXT_CLUSTER, cluster_id), (TXT_NODE, node_id)][..],
        )
        .map_err(|e| anyhow::anyhow!("invalid mDNS announcement: {e}"))?;
        daemon
            .register(info)
            .map_err(|e| anyhow::anyhow!("cannot announce over mDNS: {e}"))?;
        let events = daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| anyhow::anyhow!("cannot browse mDNS: {e}"))?;
        let (found_tx, found_rx) = mpsc::unbounded_channel();
        let (cluster, me) = (cluster_id.to_owned(), node_id.to_owned());
        std::thread::Builder::new()
            .name("vajra-mdns".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    let ServiceEvent::ServiceResolved(service) = event else {
                        continue;
                    };
                    let txt = &service.txt_properties;
                    if txt.get_property_val_str(TXT_CLUSTER) != Some(cluster.as_str())
                        || txt.get_property_val_str(TXT_NODE) == Some(me.as_str())
                    {
                        continue;
                    }
                    for ip in service.addresses.iter().map(|a| a.to_ip_addr()) {
                        if ip.is_ipv4() == advertise.is_ipv4()
                            && found_tx.send(SocketAddr::new(ip, service.port)).is_err()
                        {
                            return;
                        }
                    }
                }
            })?;
        Ok((Self { daemon }, found_rx))
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

/// mDNS instance and host labels: letters, digits and dashes.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
