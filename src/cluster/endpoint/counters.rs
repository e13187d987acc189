//! What the endpoint counts: refusals, malformed messages, drops.

use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

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
