//! A distributed test across real peer processes: started through any
//! peer, run on everyone's share, merged exactly.

mod common;

use std::time::Duration;

use common::binary;
use common::cluster::{Cluster, free_port};
use vajra::export::Report;
use vajra::metrics::histogram::{decode_v2, merge, new_histogram};

fn three_peers() -> (Cluster, Vec<&'static str>) {
    let mut cluster = Cluster::new();
    let names = vec!["d1", "d2", "d3"];
    let first = free_port();
    cluster.start("d1", first, None);
    for name in &names[1..] {
        cluster.start(name, free_port(), Some(first));
    }
    cluster
        .wait_until(&names, Duration::from_secs(8), |s| {
            let voters = s
                .members
                .iter()
                .filter(|m| matches!(m.info.raft_role.as_str(), "voter" | "leader"))
                .count();
            s.live_ids() == ["d1", "d2", "d3"] && s.leader.is_some() && voters == 3
        })
        .expect("three peers with a Raft leader");
    (cluster, names)
}

#[test]
fn three_peers_run_3000_per_second_for_20_s_and_merge_exactly() {
    let (cluster, _) = three_peers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.json");
    // Ask a peer that is not necessarily the leader: it forwards.
    let out = binary()
        .args([
            "start",
            "--peer",
            &format!("127.0.0.1:{}", cluster.port("d2")),
        ])
        .args([
            "--cluster-secret-file",
            cluster.secret.path().to_str().unwrap(),
        ])
        .args([
            "--task",
            "noop",
            "--tps",
            "3000",
            "--duration",
            "20s",
            "--wait",
            "--threshold",
            "rate>2950",
        ])
        .arg("--output")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let total = report.main.completed;
    eprintln!(
        "cluster total {total} of 60000; per peer {:?}",
        report
            .peers
            .values()
            .map(|r| r.main.completed)
            .collect::<Vec<_>>()
    );
    assert!(
        total.abs_diff(60_000) <= 600,
        "cluster total {total} not within 1 % of 60000"
    );
    assert_eq!(report.peers.len(), 3);
    assert_eq!(
        report.peers.values().map(|r| r.main.completed).sum::<u64>(),
        total,
        "nothing counted twice"
    );
    // Merged percentiles are exactly those of the peers' histograms added.
    let mut expected = new_histogram();
    for peer in report.peers.values() {
        merge(&mut expected, &decode_v2(&peer.histograms.latency).unwrap());
    }
    let merged = decode_v2(&report.histograms.latency).unwrap();
    assert_eq!(merged, expected);
    assert_eq!(
        merged.value_at_quantile(0.99) as f64 / 1e3,
        report.main.latency.p99_us
    );
}

#[test]
fn bad_commands_get_clear_errors_from_any_node() {
    let (cluster, _) = three_peers();
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    let start = |extra: &[&str]| {
        binary()
            .args([
                "start",
                "--peer",
                &format!("127.0.0.1:{}", cluster.port("d3")),
                "--cluster-secret-file",
                &secret,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let unknown = start(&["--task", "nope", "--tps", "10", "--duration", "5s"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown task 'nope'"));
    let closed = start(&["--task", "noop", "--concurrency", "2", "--duration", "5s"]);
    assert_eq!(closed.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&closed.stderr).contains("target rate"),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    let first = start(&["--task", "noop", "--tps", "10", "--duration", "30s"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = start(&["--task", "noop", "--tps", "10", "--duration", "30s"]);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let stop = binary()
        .args([
            "stop",
            "--peer",
            &format!("127.0.0.1:{}", cluster.port("d1")),
            "--cluster-secret-file",
            &secret,
        ])
        .output()
        .unwrap();
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
}
