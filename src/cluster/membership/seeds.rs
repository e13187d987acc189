//! Seeds given as host names: a Kubernetes headless Service, a compose
//! service scaled to many containers. Such a name resolves to every peer
//! behind it, and to more of them as they start.
//!
//! chitchat resolves seed names when it starts and then every 60 s. Peers
//! started together (a Deployment's pods) may each resolve the name before
//! DNS lists the others, and would then wait a minute to meet. So a peer
//! that finds itself alone re-resolves its seed names every
//! [`ALONE_EVERY`] and greets each address gossip does not know yet; once
//! it has company, chitchat's own refresh is enough.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatHandle};
use futures_util::future::BoxFuture;

/// How often a peer alone re-resolves its seed names.
pub const ALONE_EVERY: Duration = Duration::from_millis(500);

/// How seed names become addresses (DNS here; a test's own table there).
pub trait Resolver: Send + Sync {
    /// Every address `seed` (`host:port`) resolves to now; none if it does
    /// not resolve.
    fn resolve<'a>(&'a self, seed: &'a str) -> BoxFuture<'a, Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`, through tokio).
pub struct Dns;

impl Resolver for Dns {
    fn resolve<'a>(&'a self, seed: &'a str) -> BoxFuture<'a, Vec<SocketAddr>> {
        Box::pin(async move {
            match tokio::net::lookup_host(seed).await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::debug!("seed {seed} does not resolve yet: {e}");
                    Vec::new()
                }
            }
        })
    }
}

/// The seeds that are names, not `ip:port` literals.
pub fn names(seeds: &[String]) -> Vec<String> {
    seeds
        .iter()
        .filter(|s| s.parse::<SocketAddr>().is_err())
        .cloned()
        .collect()
}

/// Of `resolved`, the addresses to greet: neither this peer's own (`me`)
/// nor one gossip knows (`known`), each once.
pub fn strangers(
    resolved: impl IntoIterator<Item = SocketAddr>,
    known: &HashSet<SocketAddr>,
    me: &[SocketAddr],
) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    resolved
        .into_iter()
        .filter(|a| !me.contains(a) && !known.contains(a) && seen.insert(*a))
        .collect()
}

/// Greets, while this peer is alone in gossip, every address its seed
/// `names` resolve to that gossip does not know; `me` are this peer's own
/// addresses (advertised and bound). Runs until the peer shuts down.
pub async fn greet_while_alone(
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    handle: Arc<ChitchatHandle>,
    names: Vec<String>,
    me: Vec<SocketAddr>,
    resolver: Arc<dyn Resolver>,
) {
    let mut tick = tokio::time::interval(ALONE_EVERY);
    loop {
        tick.tick().await;
        let known: HashSet<SocketAddr> = {
            let chitchat = chitchat.lock().await;
            if chitchat.live_nodes().count() > 1 {
                continue;
            }
            chitchat
                .node_states()
                .keys()
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        let mut resolved = Vec::new();
        for name in &names {
            resolved.extend(resolver.resolve(name).await);
        }
        for addr in strangers(resolved, &known, &me) {
            tracing::info!("seed names resolve to {addr}, not met yet: greeting it");
            let _ = handle.gossip(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn names_are_told_from_literals_and_strangers_from_acquaintances() {
        let seeds = [
            "10.0.0.1:7700".to_owned(),
            "vajra-peers:7700".to_owned(),
            "[::1]:7700".to_owned(),
            "peer:7700".to_owned(),
        ];
        assert_eq!(names(&seeds), ["vajra-peers:7700", "peer:7700"]);
        let known = HashSet::from([addr("10.0.0.2:7700")]);
        let me = [addr("10.0.0.3:7700"), addr("0.0.0.0:7700")];
        let resolved = [
            "10.0.0.2:7700",
            "10.0.0.3:7700",
            "10.0.0.4:7700",
            "10.0.0.5:7700",
            "10.0.0.4:7700",
        ]
        .map(addr);
        assert_eq!(
            strangers(resolved, &known, &me),
            [addr("10.0.0.4:7700"), addr("10.0.0.5:7700")]
        );
    }
}
