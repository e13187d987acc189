//! Raft over the peers' QUIC endpoints: three members elect a leader,
//! replicate a plan, and survive the loss of the leader.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::BasicNode;
use vajra::cluster::Admission;
use vajra::cluster::consensus::{
    ClusterState, Command, LOGS_KEPT_AFTER_SNAPSHOT, RaftNode, SNAPSHOT_AFTER_LOGS, node_id,
};
use vajra::cluster::endpoint::{Identity, Network};
use vajra::cluster::run::plan::Plan;

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], common::cluster::free_port()))
}

async fn member(name: &str) -> (Network, RaftNode, SocketAddr) {
    let addr = free_addr();
    let identity = Identity {
        cluster_id: "raft-test".into(),
        node: name.into(),
        advertise: addr,
        admission: Admission::Secret(b"raft test secret 0123".to_vec()),
    };
    let (network, _gossip) = Network::bind(addr, identity).unwrap();
    let node = RaftNode::start(&network, node_id(name, 1)).await.unwrap();
    (network, node, addr)
}

async fn leader_of(nodes: &[&RaftNode]) -> u64 {
    let metrics = nodes[0]
        .raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected");
    metrics.current_leader.unwrap()
}

async fn wait_state(node: &RaftNode, check: impl Fn(&ClusterState) -> bool) {
    let mut watch = node.machine.watch();
    tokio::time::timeout(Duration::from_secs(5), watch.wait_for(|s| check(s)))
        .await
        .expect("state applied in time")
        .unwrap();
}

fn plan(epoch: u64) -> Plan {
    Plan {
        test_id: "t1".into(),
        epoch,
        start_unix_ms: 1,
        shares: BTreeMap::from([("a".to_owned(), 0.5), ("b".to_owned(), 0.5)]).into(),
        definition: Default::default(),
        test_start_unix_ms: 1,
        rate_updates: Vec::new(),
        strategy: "equal".into(),
        past: Vec::new(),
        request_id: String::new(),
        started_by: String::new(),
        departed: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_plans_and_survive_the_leader() {
    let mut members = Vec::new();
    for name in ["a", "b", "c"] {
        members.push(member(name).await);
    }
    let voters: BTreeMap<u64, BasicNode> = members
        .iter()
        .map(|(_, node, addr)| {
            (
                node.id,
                BasicNode {
                    addr: addr.to_string(),
                },
            )
        })
        .collect();
    members[0].1.raft.initialize(voters).await.unwrap();
    let nodes: Vec<&RaftNode> = members.iter().map(|(_, n, _)| n).collect();
    let leader_id = leader_of(&nodes).await;
    let leader = nodes.iter().find(|n| n.id == leader_id).unwrap();

    let response = leader
        .raft
        .client_write(Command::SetPlan(plan(1)))
        .await
        .unwrap();
    assert!(response.data.accepted);
    for node in &nodes {
        wait_state(node, |s| s.plan.as_ref().is_some_and(|p| p.epoch == 1)).await;
    }
    let stale = leader
        .raft
        .client_write(Command::SetPlan(plan(1)))
        .await
        .unwrap();
    assert!(!stale.data.accepted, "an epoch is never applied twice");

    // The leader dies: the two others elect a new one and carry on.
    let dead = members
        .iter()
        .position(|(_, n, _)| n.id == leader_id)
        .unwrap();
    let (network, node, _) = members.remove(dead);
    node.raft.shutdown().await.unwrap();
    network.close();
    let survivors: Vec<&RaftNode> = members.iter().map(|(_, n, _)| n).collect();
    let started = std::time::Instant::now();
    let new_leader = loop {
        let metrics = survivors[0].raft.metrics().borrow().clone();
        if let Some(l) = metrics.current_leader.filter(|l| *l != leader_id) {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no new leader after the old one died"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "new leader elected {:?} after the old one died",
        started.elapsed()
    );
    let leader = survivors.iter().find(|n| n.id == new_leader).unwrap();
    let response = leader
        .raft
        .client_write(Command::SetPlan(plan(2)))
        .await
        .unwrap();
    assert!(
        response.data.accepted,
        "the same test carries on at the next epoch"
    );
    for node in &survivors {
        wait_state(node, |s| s.plan.as_ref().is_some_and(|p| p.epoch == 2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_compact_and_a_late_learner_catches_up_from_the_snapshot() {
    let (_network_a, a, _) = member("a").await;
    let (_network_b, b, addr_b) = member("b").await;
    a.raft
        .initialize(BTreeMap::from([(
            a.id,
            BasicNode {
                addr: "127.0.0.1:1".into(),
            },
        )]))
        .await
        .unwrap();
    leader_of(&[&a]).await;
    let entries = SNAPSHOT_AFTER_LOGS + LOGS_KEPT_AFTER_SNAPSHOT + 50;
    for epoch in 1..=entries {
        let response = a
            .raft
            .client_write(Command::SetPlan(plan(epoch)))
            .await
            .unwrap();
        assert!(response.data.accepted);
    }
    let metrics = a
        .raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.purged.is_some(), "a compacted log")
        .await
        .expect("the log is compacted after a snapshot");
    let purged = metrics.purged.unwrap().index;
    assert!(metrics.snapshot.is_some());
    assert!(
        purged + LOGS_KEPT_AFTER_SNAPSHOT <= metrics.last_applied.unwrap().index,
        "purged up to {purged}, keeping {LOGS_KEPT_AFTER_SNAPSHOT} behind the snapshot"
    );
    // A peer joining now cannot get the purged entries: it installs the
    // snapshot, then follows the log.
    a.raft
        .add_learner(
            b.id,
            BasicNode {
                addr: addr_b.to_string(),
            },
            true,
        )
        .await
        .unwrap();
    wait_state(&b, |s| s.plan.as_ref().is_some_and(|p| p.epoch == entries)).await;
    let installed = b.raft.metrics().borrow().snapshot;
    assert!(
        installed.is_some_and(|s| s.index > purged),
        "the learner installed the leader's snapshot: {installed:?}"
    );
    let response = a
        .raft
        .client_write(Command::SetPlan(plan(entries + 1)))
        .await
        .unwrap();
    assert!(response.data.accepted);
    wait_state(&b, |s| {
        s.plan.as_ref().is_some_and(|p| p.epoch == entries + 1)
    })
    .await;
}
