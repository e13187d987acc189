//! One entry point per decoder of bytes another process sends, for the
//! fuzz targets (`fuzz/`, cargo-fuzz) and the random-input tests
//! (`tests/wire_inputs.rs`). Each runs the real decoder on `bytes` and
//! reports whether it accepted them; none may panic, hang or allocate
//! without bound, whatever the bytes.

use crate::cluster::endpoint::auth::{Hello, Role, Welcome};
use crate::cluster::run::protocol::{ControlReply, ControlRequest};
use crate::cluster::status::ClusterStatus;
use crate::config::RunArgs;

/// Valid inputs of the decoder `name` (one of [`DECODERS`]), encoded as
/// their senders encode them: what the random-input tests mutate and the
/// fuzz targets' seed corpus (`fuzz/src/bin/seeds.rs`) holds.
pub fn samples(name: &str) -> Vec<Vec<u8>> {
    let args = RunArgs {
        task: Some("http".into()),
        url: Some("http://127.0.0.1:9/".into()),
        points: Some("0:0,5:100,10:100".into()),
        body_base64: Some("aGVsbG8=".into()),
        ..RunArgs::default()
    };
    match name {
        "hello" => vec![json(&Hello {
            protocol: crate::cluster::endpoint::auth::PROTOCOL,
            cluster_id: "vajra".into(),
            role: Role::Peer,
            node: "p1".into(),
            advertise: "127.0.0.1:7700".into(),
            proof: "00ff".into(),
        })],
        "welcome" => vec![br#"{"ok":false,"error":"no","proof":""}"#.to_vec()],
        "control-request" => vec![
            json(&ControlRequest::Results {
                test_id: "t1".into(),
                skip: 3,
                generation: Some(7),
                of: Some("p2".into()),
            }),
            json(&ControlRequest::Start {
                run: Box::new(args),
                distribution: "equal".into(),
                request_id: "r".into(),
                started_by: "fuzz".into(),
            }),
        ],
        "control-reply" => vec![json(&ControlReply {
            ok: true,
            report: Some(sample_report()),
            ..ControlReply::default()
        })],
        "status" => vec![json(&sample_status())],
        "raft-request" => crate::cluster::consensus::rpc::samples().0,
        "raft-reply" => crate::cluster::consensus::rpc::samples().1,
        "gossip" => {
            use chitchat::Serializable;
            let mut bytes = Vec::new();
            chitchat::ChitchatMessage::BadCluster.serialize(&mut bytes);
            vec![bytes]
        }
        "histogram" => vec![sample_report().histograms.latency.into_bytes()],
        "definition" => vec![json(&args)],
        _ => Vec::new(),
    }
}

/// A report of 50 executions over 5 s, two phases' worth of histograms.
fn sample_report() -> crate::export::Report {
    use crate::metrics::{Aggregator, MetricsHub, Phase, Tag};
    let hub = MetricsHub::new(1);
    let rec = hub.recorder();
    for i in 0..50 {
        rec.record_execution(
            i / 10,
            (Phase::Main, Some(Tag::Execution("tag"))),
            1_000 * i,
            500 * i,
            None,
        );
    }
    let mut totals = Aggregator::new(hub, 0.0);
    totals.finish(5.0);
    crate::export::Report::snapshot("noop", &totals, 0.0, 5.0)
}

/// A two-member cluster picture.
fn sample_status() -> ClusterStatus {
    use crate::cluster::membership::state::PeerInfo;
    use crate::cluster::status::{Liveness, MemberStatus};
    let member = |id: &str, port: u16| MemberStatus {
        id: id.into(),
        generation: 1,
        address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        state: Liveness::Alive,
        last_heard_ms: 0,
        info: PeerInfo {
            name: id.into(),
            role: Default::default(),
            weight: 1.0,
            cores: 2,
            cpu_percent: 3.0,
            rss_mb: 20.0,
            version: "0".into(),
            status: "idle".into(),
            target_rate: 0.0,
            achieved_rate: 0.0,
            security: "secret".into(),
            raft_id: u64::from(port),
            raft_role: crate::cluster::membership::state::RaftRole::Voter,
            digest: Default::default(),
            founder: false,
            raft_cluster: 7700,
            leaving: false,
        },
        clock_offset_ms: Some(0.2),
    };
    ClusterStatus {
        cluster_id: "vajra".into(),
        node: "p1".into(),
        security: "secret".into(),
        members: vec![member("p1", 7700), member("p2", 7701)],
        leader: Some("p1".into()),
        cluster_target_rate: 0.0,
        cluster_achieved_rate: 0.0,
        counters: Default::default(),
        clock_skew_ms: 0.2,
        test: None,
        figures: None,
    }
}

/// A sample as its sender encodes it: JSON.
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

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
