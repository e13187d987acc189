//! A distribution strategy of the user's own, registered with the peers
//! the way a user binary does (`cli::main_with_strategies`), splits a
//! distributed test; an unknown one is refused by name.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vajra::cluster::endpoint::{StreamKind, client_request, request_status};
use vajra::cluster::run::plan::{Candidate, DistributionStrategy, Strategies};
use vajra::cluster::run::protocol::{ControlReply, ControlRequest, Refusal};
use vajra::cluster::{Admission, ClusterStatus, Peer, PeerConfig};
use vajra::config::RunArgs;
use vajra::engine::TaskRegistry;

/// Gives the first peer (by id) three times the share of any other.
struct FavourFirst;

impl DistributionStrategy for FavourFirst {
    fn name(&self) -> &str {
        "favour-first"
    }

    fn weights(&self, peers: &[Candidate]) -> Vec<f64> {
        (0..peers.len())
            .map(|i| if i == 0 { 3.0 } else { 1.0 })
            .collect()
    }
}

const CLUSTER: &str = "strategy-test";

fn admission() -> Admission {
    Admission::Secret(b"a strategy test secret".to_vec())
}

async fn peer(name: &str, port: u16, seed: Option<u16>) -> Peer {
    let mut strategies = Strategies::with_builtins();
    strategies.register(FavourFirst);
    let config = PeerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        advertise: None,
        seeds: seed.map(|s| format!("127.0.0.1:{s}")).into_iter().collect(),
        cluster_id: CLUSTER.into(),
        node_id: name.into(),
        weight: 1.0,
        admission: admission(),
        gossip_interval: Duration::from_millis(100),
        mdns: false,
        role: Default::default(),
    };
    Peer::start(
        config,
        Arc::new(TaskRegistry::with_builtins()),
        Arc::new(strategies),
        Arc::default(),
    )
    .await
    .expect("the peer starts")
}

async fn control(to: SocketAddr, request: &ControlRequest) -> ControlReply {
    let body = serde_json::to_vec(request).unwrap();
    let answer = client_request(to, CLUSTER, admission(), StreamKind::Control, &body)
        .await
        .expect("the peer answers");
    serde_json::from_slice(&answer).unwrap()
}

fn start(strategy: &str) -> ControlRequest {
    let args = RunArgs {
        task: Some("noop".into()),
        tps: Some(100.0),
        duration: Some("1s".parse().unwrap()),
        ..RunArgs::default()
    };
    ControlRequest::Start {
        run: Box::new(args),
        distribution: strategy.into(),
        request_id: format!("start-{strategy}"),
        started_by: "test:strategy".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_strategy_splits_the_test_and_an_unknown_one_is_named() {
    let first = common::cluster::free_port();
    let one = peer("s1", first, None).await;
    let two = peer("s2", common::cluster::free_port(), Some(first)).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], first));
    let began = Instant::now();
    loop {
        let status: Option<ClusterStatus> = request_status(addr, CLUSTER, admission())
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if status.is_some_and(|s| s.leader.is_some() && s.live_ids() == ["s1", "s2"]) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "no leader over both peers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Gossip may show a leader a moment before the peer asked has heard
    // from it (or after an election on a loaded box): ask again then.
    let mut unknown = control(addr, &start("random")).await;
    while unknown.refusal == Some(vajra::cluster::run::protocol::Refusal::Retry)
        && began.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        unknown = control(addr, &start("random")).await;
    }
    assert!(!unknown.ok);
    assert!(
        unknown.message.contains("unknown strategy 'random'")
            && unknown.message.contains("favour-first"),
        "the refusal names the strategy and the known ones: {}",
        unknown.message
    );

    let mut reply = control(addr, &start("favour-first")).await;
    while !reply.ok && began.elapsed() < Duration::from_secs(15) {
        // The leader may still be confirming its leadership.
        tokio::time::sleep(Duration::from_millis(200)).await;
        reply = control(addr, &start("favour-first")).await;
    }
    assert!(reply.ok, "{}", reply.message);
    let plan = reply.plan.expect("the committed plan");
    assert_eq!(plan.strategy, "favour-first");
    assert!(
        (plan.shares["s1"] - 0.75).abs() < 1e-12,
        "{:?}",
        plan.shares
    );
    assert!(
        (plan.shares["s2"] - 0.25).abs() < 1e-12,
        "{:?}",
        plan.shares
    );
    assert_eq!(unknown.refusal, Some(Refusal::Invalid));
    // A start whose reply was lost is sent again with its request id: it
    // gets the test it started back, where another start is refused.
    let with_id = |id: &str| match start("equal") {
        ControlRequest::Start {
            run, distribution, ..
        } => ControlRequest::Start {
            run,
            distribution,
            request_id: id.into(),
            started_by: "test:strategy".into(),
        },
        _ => unreachable!(),
    };
    let again = control(addr, &start("favour-first")).await;
    assert!(
        again.ok,
        "a retried start is not refused: {}",
        again.message
    );
    assert_eq!(again.plan.unwrap().test_id, plan.test_id, "the same test");
    let other = control(addr, &with_id("second")).await;
    assert!(!other.ok);
    assert_eq!(other.refusal, Some(Refusal::Conflict), "{}", other.message);
    one.shutdown().await;
    two.shutdown().await;
}
