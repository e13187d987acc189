//! A distributed test across real peer processes: started through any
//! peer, run on everyone's share, merged exactly.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, free_port};
use common::{assert_accounts, binary};
use vajra::cluster::ClusterStatus;
use vajra::cluster::status::TestPhase;
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
    // So are every second's: peers' windows are the test's seconds.
    let mut busy = 0;
    for window in &report.series {
        let mut expected = new_histogram();
        let mut completed = 0;
        for peer in report.peers.values() {
            let Some(w) = peer.series.iter().find(|w| w.second == window.second) else {
                continue;
            };
            completed += w.success + w.failure;
            if let Some(h) = &w.histograms {
                merge(&mut expected, &decode_v2(&h.latency).unwrap());
            }
        }
        assert_eq!(window.success + window.failure, completed);
        assert_eq!(
            window.latency.count,
            expected.len(),
            "second {}",
            window.second
        );
        assert_eq!(
            window.latency.p99_us,
            expected.value_at_quantile(0.99) as f64 / 1e3,
            "second {}",
            window.second
        );
        busy += usize::from(completed > 0);
    }
    assert!(busy >= 20, "20 seconds of load merged: {busy}");
    // `status` on any node merges the same histograms: the same figures.
    let status = cluster.status("d3").expect("status answers");
    let figures = status.figures.expect("status shows the test's figures");
    assert_eq!(figures.reporting, ["d1", "d2", "d3"]);
    assert_eq!(figures.completed, total);
    assert_eq!(figures.latency, report.main.latency);
    assert_eq!(figures.service, report.main.service);
    // Gossip carries each peer's digest, its own figures at a glance.
    let digests_match = |s: &ClusterStatus| {
        s.members.iter().all(|m| {
            let own = &report.peers[&m.id].main;
            m.info.digest.completed == own.completed
                && m.info.digest.p99_us.round() == own.latency.p99_us.round()
        })
    };
    cluster
        .wait_until(&["d3"], Duration::from_secs(3), digests_match)
        .expect("every peer's final digest reaches d3 through gossip");
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
    // Every node shows the test's phase from the replicated state: set up
    // until its start time (1.5 s away), then running.
    let phases: Vec<_> = ["d1", "d2", "d3"]
        .iter()
        .map(|n| cluster.status(n).unwrap().test.unwrap().phase)
        .collect();
    assert!(
        phases
            .iter()
            .all(|p| matches!(p, TestPhase::Distributing | TestPhase::Running)),
        "{phases:?}"
    );
    cluster
        .wait_until(&["d1", "d2", "d3"], Duration::from_secs(5), |s| {
            s.test
                .as_ref()
                .is_some_and(|t| t.phase == TestPhase::Running && t.peers == 3 && t.epoch == 1)
        })
        .expect("the test runs on 3 peers at epoch 1 in everyone's status");
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
    cluster
        .wait_until(&["d1", "d2", "d3"], Duration::from_secs(3), |s| {
            s.test
                .as_ref()
                .is_some_and(|t| t.phase == TestPhase::Stopped)
        })
        .expect("a test stopped before its end shows as failed everywhere");
}

fn start_and_wait(
    cluster: &Cluster,
    via: &str,
    extra: &[&str],
    report: &std::path::Path,
) -> std::process::Child {
    binary()
        .args([
            "start",
            "--peer",
            &format!("127.0.0.1:{}", cluster.port(via)),
        ])
        .args([
            "--cluster-secret-file",
            cluster.secret.path().to_str().unwrap(),
        ])
        .args(extra)
        .args(["--wait", "--output"])
        .arg(report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs 3000/s for 20 s through `via` with `--wait`, calls `during` on the
/// cluster `after` the command was given (the test starts 1.5 s after it),
/// and returns the merged report.
fn run_3000_for_20s(
    cluster: &mut Cluster,
    via: &str,
    after: Duration,
    during: impl FnOnce(&mut Cluster),
) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.json");
    let child = start_and_wait(
        cluster,
        via,
        &["--task", "noop", "--tps", "3000", "--duration", "20s"],
        &path,
    );
    std::thread::sleep(after);
    during(cluster);
    merged_report(child, &path)
}

/// Waits for `start --wait` (`child`) to succeed; its merged report.
fn merged_report(child: std::process::Child, path: &std::path::Path) -> Report {
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The test time an `update` said its epoch starts at: "... from 10.123 s
/// (epoch 2)".
fn update_start(said: &str) -> f64 {
    said.split(" from ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no start in {said:?}"))
}

#[test]
fn a_peer_killed_mid_test_is_re_split_and_its_work_so_far_is_kept() {
    let (mut cluster, _) = three_peers();
    // Kill d3 about 8 s into the test.
    let report = run_3000_for_20s(&mut cluster, "d1", Duration::from_millis(9_500), |c| {
        let status = c.status("d1").unwrap();
        let test = status.test.expect("a test in status");
        assert_eq!(
            (test.phase, test.epoch, test.peers),
            (TestPhase::Running, 1, 3)
        );
        // Peers on one host share a clock: what is measured is the error,
        // at most half a round trip (long on a loaded 2-core box).
        assert!(
            status.clock_skew_ms < 100.0,
            "skew {}",
            status.clock_skew_ms
        );
        assert!(
            status
                .members
                .iter()
                .filter(|m| m.id != "d1")
                .all(|m| m.clock_offset_ms.is_some_and(|o| o.abs() < 100.0)),
            "{:?}",
            status.members
        );
        eprintln!("killing d3 at {:?}", std::time::SystemTime::now());
        c.kill("d3")
    });
    cluster
        .wait_until(&["d1", "d2"], Duration::from_secs(20), |s| {
            s.test
                .as_ref()
                .is_some_and(|t| t.phase == TestPhase::Completed)
        })
        .expect("the test completes in every survivor's status");
    cluster.print_logs();
    let total = report.main.completed;
    eprintln!(
        "with d3 killed: cluster total {total} of 60000 ({:.2} %); events {:?}; per peer {:?}",
        100.0 * total as f64 / 60_000.0,
        report.events,
        report
            .peers
            .iter()
            .map(|(p, r)| (p.clone(), r.main.completed))
            .collect::<Vec<_>>()
    );
    // Measured 97.0-98.0 % on a quiet box (the share is lost for ~0.5 s
    // of detection by probe plus the 0.3 s epoch delay), 95.3 % with both
    // cores saturated by other work; 5 % keeps a loaded CI box green.
    assert!(
        total.abs_diff(60_000) <= 3_000,
        "cluster total {total} not within 5 % of 60000"
    );
    let degraded = report
        .events
        .iter()
        .find(|e| e.contains("peer d3") && e.contains("degraded window"))
        .unwrap_or_else(|| panic!("the lost peer's degraded window: {:?}", report.events));
    // "... degraded window 8.3-9.1 s, until epoch 2 re-split its share"
    let window: Vec<f64> = degraded
        .split("degraded window ")
        .nth(1)
        .and_then(|w| w.split(' ').next())
        .map(|w| w.split('-').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(window.len(), 2, "{degraded}");
    assert!(
        window[0] > 1.0 && window[1] > window[0] && window[1] - window[0] < 3.0,
        "back on target within 3 s of the fault: {degraded}"
    );
    assert_eq!(
        report.peers.values().map(|r| r.main.completed).sum::<u64>(),
        total,
        "nothing counted twice"
    );
    assert!(
        report.unsent.unwrap_or(0) > 0,
        "the degraded window is counted"
    );
    assert_accounts(&report, 60_000, 0.01, "d3 killed");
    let survivors: u64 = ["d1", "d2"]
        .iter()
        .map(|p| report.peers[*p].main.completed)
        .sum();
    assert!(
        survivors > 44_000,
        "the survivors took over d3's share: {survivors}"
    );
}

/// Sends SIGTERM to `leaver` about 8 s into a 3000/s test run through
/// `via`, and checks the hand-over: the leaver exits by itself, the total
/// is within 1 % of the integral with nothing unsent, no second dips, and
/// the report says it left rather than was lost.
fn a_peer_sent_sigterm_hands_its_share_over(leaver: &str, via: &str) {
    let (mut cluster, _) = three_peers();
    let leaver_owned = leaver.to_owned();
    let report = run_3000_for_20s(&mut cluster, via, Duration::ZERO, |c| {
        c.wait_until(&[via], Duration::from_secs(20), |s| {
            s.test
                .as_ref()
                .is_some_and(|t| t.elapsed_secs.is_some_and(|e| e >= 8.0))
        })
        .expect("the test runs 8 s");
        eprintln!(
            "SIGTERM to {leaver_owned} at {:?}",
            std::time::SystemTime::now()
        );
        c.signal(&leaver_owned, libc::SIGTERM);
        let code = c.wait_exit(&leaver_owned, Duration::from_secs(15));
        assert_eq!(code, Some(0), "{}", c.log(&leaver_owned));
    });
    let log = cluster.log(leaver);
    cluster.print_logs();
    assert!(log.contains("left in "), "{log}");
    let total = report.main.completed;
    let seconds: Vec<u64> = report
        .series
        .iter()
        .map(|w| w.success + w.failure)
        .collect();
    eprintln!(
        "{leaver} left: cluster total {total} of 60000 ({:.2} %); events {:?}; per second {seconds:?}",
        100.0 * total as f64 / 60_000.0,
        report.events,
    );
    assert!(
        report
            .events
            .iter()
            .any(|e| e.contains(&format!("{leaver} left"))),
        "the leave is named: {:?}",
        report.events
    );
    assert!(
        !report
            .events
            .iter()
            .any(|e| e.contains("lost") || e.contains("degraded")),
        "a leave is no loss: {:?}",
        report.events
    );
    assert_eq!(report.unsent.unwrap_or(0), 0, "nothing went unsent");
    assert_eq!(
        format!("{:?}", report.peers[leaver].outcome),
        "Completed",
        "the leaver ran its share to the hand-over"
    );
    assert_accounts(&report, 60_000, 0.01, &format!("{leaver} left"));
    // Every whole second but the first and last carries the cluster rate:
    // the hand-over leaves no gap (15 % keeps a loaded box green).
    let inner = &seconds[1..seconds.len().saturating_sub(1)];
    assert!(
        inner.iter().all(|n| *n >= 2_550 && *n <= 3_450),
        "a second off the rate: {seconds:?}"
    );
}

#[test]
fn a_peer_sent_sigterm_mid_test_hands_its_share_over_and_exits() {
    a_peer_sent_sigterm_hands_its_share_over("d3", "d1");
}

#[test]
fn the_leader_sent_sigterm_mid_test_hands_over_its_share_and_its_lead() {
    a_peer_sent_sigterm_hands_its_share_over("d1", "d2");
}

#[test]
fn a_peer_joining_mid_test_takes_a_share() {
    let mut cluster = Cluster::new();
    let first = free_port();
    cluster.start("j1", first, None);
    cluster.start("j2", free_port(), Some(first));
    cluster
        .wait_until(&["j1", "j2"], Duration::from_secs(8), |s| {
            s.leader.is_some() && s.live_ids() == ["j1", "j2"]
        })
        .expect("two peers with a leader");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("joined.json");
    let child = start_and_wait(
        &cluster,
        "j2",
        &["--task", "noop", "--tps", "2000", "--duration", "15s"],
        &path,
    );
    std::thread::sleep(Duration::from_secs(6));
    cluster.start("j3", free_port(), Some(first));
    let report = merged_report(child, &path);
    let total = report.main.completed;
    let joined = report.peers.get("j3").map_or(0, |r| r.main.completed);
    let per_peer: Vec<(&String, u64)> = report
        .peers
        .iter()
        .map(|(name, r)| (name, r.main.completed))
        .collect();
    eprintln!(
        "with j3 joining: cluster total {total} of 30000, j3 ran {joined}; per peer {per_peer:?}; events {:?}",
        report.events
    );
    assert!(joined > 1_000, "the newcomer took a share: {joined}");
    // The newcomer's run clock starts at the test's start too, so its
    // seconds add to the others' where they belong: every full second of
    // the merged series holds the cluster's 2000, none more.
    let per_second: Vec<u64> = report.series.iter().map(|w| w.success).collect();
    let off = per_second[1..14]
        .iter()
        .filter(|&&n| n.abs_diff(2_000) > 100)
        .count();
    assert!(off <= 1, "merged seconds stray from 2000/s: {per_second:?}");
    let newcomer = &report.peers["j3"].series;
    assert!(
        newcomer.iter().take(5).all(|w| w.success == 0),
        "j3 ran nothing before it joined: {:?}",
        newcomer.iter().map(|w| w.success).collect::<Vec<_>>()
    );
    assert!(
        total.abs_diff(30_000) <= 300,
        "cluster total {total} not within 1 % of 30000 (a join loses nothing)"
    );
}

#[test]
fn a_rate_update_mid_test_delivers_the_integral_of_the_new_curve() {
    let (cluster, _) = three_peers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updated.json");
    let child = start_and_wait(
        &cluster,
        "d1",
        &["--task", "noop", "--tps", "3000", "--duration", "20s"],
        &path,
    );
    std::thread::sleep(Duration::from_millis(11_500));
    let (code, said) = update(&cluster, "d3", &["--tps", "6000"]);
    assert_eq!(code, Some(0), "{said}");
    // "test T: 6000/s from 10.123 s (epoch 2)"
    let at = update_start(&said);
    let report = merged_report(child, &path);
    let expected = 3_000.0 * at + 6_000.0 * (20.0 - at);
    let total = report.main.completed as f64;
    eprintln!("update at {at:.3} s: cluster total {total}, integral {expected:.0}");
    assert!(
        (total - expected).abs() <= expected * 0.01,
        "total {total} vs integral {expected}"
    );
}

/// Runs `vajra-peer update ARGS` through `peer`; returns its exit code and
/// what it said.
fn update(cluster: &Cluster, peer: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = binary()
        .arg("update")
        .args(args)
        .args(["--peer", &format!("127.0.0.1:{}", cluster.port(peer))])
        .args([
            "--cluster-secret-file",
            cluster.secret.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_update_to_a_new_pattern_replaces_the_rest_of_the_test() {
    let (cluster, _) = three_peers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repatterned.json");
    let child = start_and_wait(
        &cluster,
        "d1",
        &["--task", "noop", "--tps", "2000", "--duration", "10s"],
        &path,
    );
    std::thread::sleep(Duration::from_millis(5_500));
    let (code, said) = update(&cluster, "d2", &["--steps", "oops"]);
    assert_eq!(
        code,
        Some(2),
        "a bad pattern is refused before sending: {said}"
    );
    assert!(said.contains("steps"), "the error names the flag: {said}");
    let (code, said) = update(&cluster, "d2", &["--steps", "1000:3s,4000:3s"]);
    assert_eq!(code, Some(0), "{said}");
    // "test T: a new pattern for 6.000 s (peak 4000/s) from 4.123 s (epoch 2)"
    let at = update_start(&said);
    let report = merged_report(child, &path);
    let expected = 2_000.0 * at + 1_000.0 * 3.0 + 4_000.0 * 3.0;
    let total = report.main.completed as f64;
    eprintln!("pattern from {at:.3} s: cluster total {total}, integral {expected:.0}");
    assert!(
        (total - expected).abs() <= expected * 0.01,
        "total {total} vs integral {expected}: the test ran the new pattern to its end"
    );
    assert!(
        report.events.iter().any(|e| e.contains("new pattern")),
        "{:?}",
        report.events
    );
}

#[test]
fn the_leader_killed_mid_test_does_not_stop_the_test() {
    let (mut cluster, names) = three_peers();
    let leader = cluster.status("d1").unwrap().leader.unwrap();
    let via = *names.iter().find(|n| **n != leader).unwrap();
    let victim = leader.clone();
    let report = run_3000_for_20s(&mut cluster, via, Duration::from_millis(9_500), move |c| {
        c.kill(&victim)
    });
    let total = report.main.completed;
    eprintln!(
        "with the leader {leader} killed: cluster total {total} of 60000 ({:.2} %)",
        100.0 * total as f64 / 60_000.0
    );
    // A new leader must be elected before the lost share is re-split:
    // about half a second more than losing a follower (measured 96.9-97.3 %,
    // see docs/cluster.md).
    assert!(
        total.abs_diff(60_000) <= 3_600,
        "cluster total {total} not within 6 % of 60000"
    );
    assert!(report.events.iter().any(|e| e.contains(&leader)));
    assert_accounts(&report, 60_000, 0.01, "leader killed");
    let survivors: u64 = names
        .iter()
        .filter(|n| **n != leader)
        .map(|p| report.peers[*p].main.completed)
        .sum();
    assert!(
        survivors > 44_000,
        "a new leader re-split the test onto the survivors: {survivors}"
    );
}

#[test]
fn a_frozen_peer_that_resumes_neither_doubles_nor_loses_load() {
    let (mut cluster, names) = three_peers();
    // Freeze the Raft leader: the harder case, since on resume it still
    // believes it leads.
    let frozen = cluster.status("d1").unwrap().leader.unwrap();
    let via = *names.iter().find(|n| **n != frozen).unwrap();
    let victim = frozen.clone();
    let report = run_3000_for_20s(&mut cluster, via, Duration::from_millis(9_500), move |c| {
        c.signal(&victim, libc::SIGSTOP);
        std::thread::sleep(Duration::from_secs(4));
        c.signal(&victim, libc::SIGCONT);
    });
    let total = report.main.completed;
    eprintln!(
        "with the leader {frozen} frozen 4 s: cluster total {total} of 60000 ({:.2} %), per peer {:?}",
        100.0 * total as f64 / 60_000.0,
        report
            .peers
            .iter()
            .map(|(p, r)| (p.clone(), r.main.completed))
            .collect::<Vec<_>>()
    );
    // While frozen its share moved to the others; on resume it holds,
    // confirms the epoch with the leader, and sends only what it owed from
    // before the re-split: it never runs the moved share twice. When the
    // frozen peer led, a little of its owed load can still go missing
    // (measured 97.9-100 %, docs/cluster.md).
    assert!(total <= 60_600, "load was run twice: {total}");
    // What it owed from before the re-split is seconds late when it wakes:
    // missed (counted), not burst at the target.
    assert_accounts(&report, 60_000, 0.02, "leader frozen 4 s");
    let burst = report.series.iter().map(|w| w.dispatched).max().unwrap();
    assert!(
        burst <= 3_400,
        "{burst} sent in one second of a 3000/s test"
    );
    assert!(
        total + report.main.missed >= 58_200,
        "cluster total {total} + missed {} not within 3 % of 60000",
        report.main.missed
    );
}

/// A peer killed and restarted under its old name and address keeps both
/// incarnations' work: the first one's figures up to its death, the new
/// one's from the epoch that gives it a share; the loss and the rejoin are
/// events, and nothing is counted twice.
#[test]
fn a_peer_restarted_under_its_old_name_keeps_both_incarnations_work() {
    let (mut cluster, _) = three_peers();
    let report = run_3000_for_20s(&mut cluster, "d1", Duration::from_millis(9_500), |c| {
        let port = c.port("d3");
        let seed = c.port("d1");
        c.kill("d3");
        std::thread::sleep(Duration::from_secs(3));
        c.start("d3", port, Some(seed));
    });
    cluster.print_logs();
    let per_peer: Vec<(String, u64)> = report
        .peers
        .iter()
        .map(|(p, r)| (p.clone(), r.main.completed))
        .collect();
    eprintln!("restart: per peer {per_peer:?}; events {:?}", report.events);
    assert!(
        report.peers.contains_key("d3") && report.peers.contains_key("d3#2"),
        "both incarnations of d3 are in the report: {per_peer:?}"
    );
    assert!(
        report.peers["d3"].main.completed > 6_000,
        "the first incarnation's 8 s are kept: {per_peer:?}"
    );
    assert!(
        report.peers["d3#2"].main.completed > 1_000,
        "the new incarnation took a share: {per_peer:?}"
    );
    assert_eq!(
        report.peers.values().map(|r| r.main.completed).sum::<u64>(),
        report.main.completed,
        "nothing counted twice"
    );
    assert!(
        report.events.iter().any(|e| e.contains("peer d3 was lost")),
        "{:?}",
        report.events
    );
    assert!(
        report.events.iter().any(|e| e.contains("d3 rejoined")),
        "{:?}",
        report.events
    );
    assert!(report.main.completed <= 60_600, "load was run twice");
    assert_accounts(&report, 60_000, 0.01, "d3 restarted under its old name");
}

/// A test stopped by `vajra-peer stop` is its own outcome: `start --wait`
/// exits 5 (not 130, which is Ctrl-C's), the report says "stopped" with
/// the target rate of the part that ran, and status keeps the last epoch
/// and its peers.
#[test]
fn a_remote_stop_is_a_stopped_test_not_an_interrupted_one() {
    let (cluster, _) = three_peers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stopped.json");
    let child = start_and_wait(
        &cluster,
        "d2",
        &[
            "--task",
            "noop",
            "--tps",
            "1000",
            "--ramp-up",
            "20s",
            "--duration",
            "20s",
        ],
        &path,
    );
    // The test starts 1.5 s after the command: stop it about 4 s in.
    std::thread::sleep(Duration::from_millis(5_500));
    let stop = binary()
        .args([
            "stop",
            "--peer",
            &format!("127.0.0.1:{}", cluster.port("d1")),
            "--cluster-secret-file",
            cluster.secret.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(stop.status.code(), Some(0));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(report.outcome, vajra::export::Outcome::Stopped);
    // A ramp from 0 to 1000/s over 20 s stopped ~4 s in: its mean target
    // over what ran is ~100/s (25/s per second run; 500/s is the whole
    // ramp's mean).
    let target: f64 = stdout
        .split("(target ")
        .nth(1)
        .and_then(|t| t.split('/').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no target in {stdout}"));
    assert!(
        (40.0..300.0).contains(&target),
        "the target rate is over the part that ran: {target}/s"
    );
    let test = cluster.status("d3").unwrap().test.unwrap();
    assert_eq!(
        (test.phase, test.epoch, test.peers),
        (TestPhase::Stopped, 1, 3),
        "status keeps the stopped test's last epoch and peers"
    );
}

#[test]
fn weighted_distribution_splits_by_peer_weight() {
    let mut cluster = Cluster::new();
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    let first = free_port();
    cluster.start_with(
        "w1",
        first,
        None,
        &["--cluster-secret-file", &secret, "--weight", "1"],
    );
    cluster.start_with(
        "w2",
        free_port(),
        Some(first),
        &["--cluster-secret-file", &secret, "--weight", "3"],
    );
    cluster
        .wait_until(&["w1", "w2"], Duration::from_secs(8), |s| {
            s.leader.is_some() && s.live_ids() == ["w1", "w2"]
        })
        .expect("two peers with a leader");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weighted.json");
    let bad = binary()
        .args([
            "start",
            "--peer",
            &format!("127.0.0.1:{first}"),
            "--cluster-secret-file",
            &secret,
        ])
        .args([
            "--task",
            "noop",
            "--tps",
            "400",
            "--duration",
            "5s",
            "--distribution",
            "random",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown strategy 'random'"));
    let out = start_and_wait(
        &cluster,
        "w1",
        &[
            "--task",
            "noop",
            "--tps",
            "400",
            "--duration",
            "5s",
            "--distribution",
            "weighted",
        ],
        &path,
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (light, heavy) = (
        report.peers["w1"].main.completed,
        report.peers["w2"].main.completed,
    );
    eprintln!("weighted 1:3 -> {light} : {heavy}");
    assert_eq!((light, heavy), (500, 1_500), "shares follow the weights");
}
