//! One entry point per decoder of bytes another process sends, for the
//! fuzz targets (`fuzz/`, cargo-fuzz) and the random-input tests
//! (`tests/wire_inputs.rs`). Each runs the real decoder on `bytes` and
//! reports whether it accepted them; none may panic, hang or allocate
//! without bound, whatever the bytes.

use crate::cluster::endpoint::auth::{Hello, Welcome};
use crate::cluster::run::protocol::{ControlReply, ControlRequest};
use crate::cluster::status::ClusterStatus;
use crate::config::RunArgs;

/// A decoder entry point: whether it accepted the bytes.
pub type Decoder = fn(&[u8]) -> bool;

/// The decoders, by name, for harnesses that try them all.
pub const DECODERS: &[(&str, Decoder)] = &[
    ("hello", hello),
    ("welcome", welcome),
    ("control-request", control_request),
    ("control-reply", control_reply),
    ("status", status),
    ("raft-request", raft_request),
    ("raft-reply", raft_reply),
    ("gossip", gossip),
    ("histogram", histogram),
    ("definition", definition),
];

/// The admission hello (JSON).
pub fn hello(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Hello>(bytes).is_ok()
}

/// The admission welcome (JSON).
pub fn welcome(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Welcome>(bytes).is_ok()
}

/// A control request (JSON, stream kind 4).
pub fn control_request(bytes: &[u8]) -> bool {
    serde_json::from_slice::<ControlRequest>(bytes).is_ok()
}

/// A control reply (JSON), with the reports and histograms it carries
/// decoded as a client merging them would.
pub fn control_reply(bytes: &[u8]) -> bool {
    let Ok(reply) = serde_json::from_slice::<ControlReply>(bytes) else {
        return false;
    };
    if let Some(report) = reply.report {
        let parts = [("peer".to_owned(), report)];
        let _ = crate::export::merge::merge_reports(&parts, &[], std::time::Duration::MAX);
    }
    true
}

/// A peer's status (JSON, stream kind 2).
pub fn status(bytes: &[u8]) -> bool {
    serde_json::from_slice::<ClusterStatus>(bytes).is_ok()
}

/// A Raft RPC request (bincode, stream kind 3).
pub fn raft_request(bytes: &[u8]) -> bool {
    crate::cluster::consensus::rpc::decodes_as_request(bytes)
}

/// A Raft RPC reply (bincode).
pub fn raft_reply(bytes: &[u8]) -> bool {
    crate::cluster::consensus::rpc::decodes_as_reply(bytes)
}

/// A chitchat gossip message (stream kind 1).
pub fn gossip(bytes: &[u8]) -> bool {
    use chitchat::Deserializable;
    chitchat::ChitchatMessage::deserialize(&mut &bytes[..]).is_ok()
}

/// An HDR V2 histogram as reports carry it (base64 text).
pub fn histogram(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| crate::metrics::histogram::decode_v2(text).is_ok())
}

/// A test's definition as a plan carries it (JSON settings), resolved as
/// every peer resolves it.
pub fn definition(bytes: &[u8]) -> bool {
    serde_json::from_slice::<RunArgs>(bytes)
        .is_ok_and(|args| crate::config::definition::resolve_definition(args).is_ok())
}
