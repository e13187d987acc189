//! Clock offsets between peers. A test starts at a wall-clock instant, so
//! peers whose clocks disagree start (and re-split) that much apart. Every
//! peer asks a few others for their time over QUIC, the way NTP does: the
//! offset is the remote time minus the midpoint of the round trip, and of
//! several tries the one with the shortest round trip is kept (its error
//! is at most half that round trip). `status` shows each member's offset
//! from the answering peer and the spread between them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::cluster::endpoint::{Network, StreamKind};
use crate::cluster::status::{Liveness, StatusSource};

/// How often offsets are measured again.
const ROUND_EVERY: Duration = Duration::from_secs(3);
/// Round trips per peer and round; the shortest one is kept.
const TRIES: usize = 5;
/// Peers measured per round (the closest in id order after this one, so
/// every pair gets measured by someone as membership grows).
const PEERS_PER_ROUND: usize = 8;

/// One peer's clock as this peer measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    /// Its clock minus ours, milliseconds.
    pub offset_ms: f64,
    /// Round trip of the sample, milliseconds (twice the worst error).
    pub rtt_ms: f64,
}

/// Offsets by node id.
pub type Offsets = Arc<Mutex<HashMap<String, Offset>>>;

/// Unix time in nanoseconds.
fn unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The offset a sample gives: `remote_ns` was read between `sent_ns` and
/// `received_ns` on our clock.
pub fn estimate(sent_ns: i128, remote_ns: i128, received_ns: i128) -> Offset {
    // remote_ns comes from another process: saturate, never overflow.
    let midpoint = sent_ns.saturating_add(received_ns.saturating_sub(sent_ns) / 2);
    Offset {
        offset_ms: remote_ns.saturating_sub(midpoint) as f64 / 1e6,
        rtt_ms: (received_ns - sent_ns) as f64 / 1e6,
    }
}

/// The largest difference between two clocks among this peer (offset 0)
/// and the offsets it measured, milliseconds.
pub fn spread_ms<'a>(offsets: impl IntoIterator<Item = &'a Offset>) -> f64 {
    let (low, high) = offsets.into_iter().fold((0.0f64, 0.0f64), |(lo, hi), o| {
        (lo.min(o.offset_ms), hi.max(o.offset_ms))
    });
    high - low
}

/// Answers clock requests on the endpoint with this peer's Unix time.
pub fn serve(network: &Network) {
    network.serve_requests(
        StreamKind::Clock,
        Arc::new(|_body: Bytes| Box::pin(async move { unix_ns().to_le_bytes().to_vec() })),
    );
}

/// Asks the peer at `to` for its time `TRIES` times; the best sample.
async fn measure(network: &Network, to: SocketAddr) -> Option<Offset> {
    let mut best: Option<Offset> = None;
    for _ in 0..TRIES {
        let sent = unix_ns();
        let Ok(answer) = network
            .request(to, StreamKind::Clock, &[], Duration::from_secs(1))
            .await
        else {
            continue;
        };
        let received = unix_ns();
        let Ok(bytes) = <[u8; 16]>::try_from(answer.as_slice()) else {
            continue;
        };
        let sample = estimate(sent, i128::from_le_bytes(bytes), received);
        if best.is_none_or(|b| sample.rtt_ms < b.rtt_ms) {
            best = Some(sample);
        }
    }
    best
}

/// Measures the offsets of live peers every few seconds, forever; `status`
/// gives the current membership.
pub async fn track(network: Network, me: String, status: Arc<dyn StatusSource>, offsets: Offsets) {
    let mut tick = tokio::time::interval(ROUND_EVERY);
    loop {
        tick.tick().await;
        let Some(view) = status.status().await else {
            continue;
        };
        let live: Vec<(String, SocketAddr)> = view
            .members
            .iter()
            .filter(|m| m.state == Liveness::Alive && m.id != me)
            .map(|m| (m.id.clone(), m.address))
            .collect();
        offsets
            .lock()
            .retain(|id, _| live.iter().any(|(l, _)| l == id));
        for (id, addr) in neighbours(&me, &live) {
            if let Some(offset) = measure(&network, addr).await {
                offsets.lock().insert(id, offset);
            }
        }
    }
}

/// Up to `PEERS_PER_ROUND` of `live` following `me` in id order, wrapping.
fn neighbours(me: &str, live: &[(String, SocketAddr)]) -> Vec<(String, SocketAddr)> {
    let mut sorted: Vec<_> = live.iter().filter(|(id, _)| id != me).cloned().collect();
    sorted.sort();
    let start = sorted.partition_point(|(id, _)| id.as_str() < me);
    sorted.rotate_left(start);
    sorted.truncate(PEERS_PER_ROUND);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_the_remote_time_minus_the_round_trip_midpoint() {
        // Sent at 1000, answered with 1600 (remote ahead by 500 ns at the
        // midpoint 1100), received at 1200.
        let o = estimate(1_000_000, 1_600_000, 1_200_000);
        assert!((o.offset_ms - 0.5).abs() < 1e-9, "{o:?}");
        assert!((o.rtt_ms - 0.2).abs() < 1e-9);
        let behind = estimate(0, -3_000_000, 2_000_000);
        assert!((behind.offset_ms + 4.0).abs() < 1e-9);
    }

    #[test]
    fn the_spread_includes_this_peer_at_zero() {
        let o = |ms| Offset {
            offset_ms: ms,
            rtt_ms: 0.1,
        };
        assert_eq!(spread_ms(&[o(3.0), o(-2.0)]), 5.0);
        assert_eq!(spread_ms(&[o(4.0)]), 4.0);
        assert_eq!(spread_ms(&[]), 0.0);
    }

    #[test]
    fn neighbours_follow_this_peer_in_id_order() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let live: Vec<_> = (0..20).map(|i| (format!("p{i:02}"), addr)).collect();
        let picked = neighbours("p17", &live);
        let ids: Vec<_> = picked.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["p18", "p19", "p00", "p01", "p02", "p03", "p04", "p05"]
        );
    }
}
