//! The web UI in a real browser (tests/browser/ui.py: Python playwright
//! driving Debian's chromium) against a three-peer cluster on loopback,
//! and the history pages (tests/browser/history.py) of an orchestrator.
//! Needs chromium and playwright, so it is ignored by default; `.ci/run`
//! installs both and runs it with `--run-ignored only`. Screenshots of
//! every page land in `target/tmp/ui-screenshots`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestTarget;
use common::cluster::{Cluster, free_port};
use vajra::target::TargetBehaviour;

const TOKEN: &str = "operator-token-for-the-browser";

#[test]
#[ignore = "needs Debian's chromium and Python playwright (.ci/run installs them)"]
fn a_person_runs_a_cluster_test_from_the_browser() {
    let target = TestTarget::start(TargetBehaviour::default());
    let mut tokens = tempfile::NamedTempFile::new().unwrap();
    writeln!(tokens, "operator {TOKEN}").unwrap();
    let ui: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let token_path = tokens.path().to_str().unwrap().to_owned();
    let mut cluster = Cluster::new();
    cluster.start_joined(&["ui1", "ui2", "ui3"], |i| {
        if i == 0 {
            vec![
                "--http".into(),
                ui.to_string(),
                "--api-token-file".into(),
                token_path.clone(),
            ]
        } else {
            Vec::new()
        }
    });
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let output = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/ui.py"))
        .args(["--ui", &format!("http://{ui}")])
        .args(["--token", TOKEN])
        .args(["--target", &target.url()])
        .args(["--kill-pid", &cluster.pid("ui3").to_string()])
        .args(["--kill-name", "ui3"])
        .arg("--screenshots")
        .arg(&screenshots)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        cluster.print_logs();
    }
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    let measured: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        measured["report_charts"].as_u64().unwrap() >= 4,
        "{measured}"
    );
    assert_eq!(measured["result_outcome"], "stopped");
}

/// Three runs of one test, the last against a slower target, recorded by
/// an orchestrator: the browser lists, filters, compares and trends them.
#[test]
#[ignore = "needs Debian's chromium and Python playwright (.ci/run installs them)"]
fn a_person_reads_the_history_in_the_browser() {
    let fast = TestTarget::start(TargetBehaviour {
        delay: Duration::from_millis(1),
        ..TargetBehaviour::default()
    });
    let slow = TestTarget::start(TargetBehaviour {
        delay: Duration::from_millis(50),
        ..TargetBehaviour::default()
    });
    let mut tokens = tempfile::NamedTempFile::new().unwrap();
    writeln!(tokens, "operator {TOKEN}").unwrap();
    let store = tempfile::tempdir().unwrap();
    let ui: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cluster = Cluster::new();
    let seed = cluster.start_joined(&["h1", "h2"], |_| Vec::new());
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    let db = store.path().join("history.db");
    cluster.start_as(
        "orchestrator",
        "orch",
        free_port(),
        Some(seed),
        &[
            "--cluster-secret-file",
            &secret,
            "--store",
            db.to_str().unwrap(),
            "--http",
            &ui.to_string(),
            "--api-token-file",
            tokens.path().to_str().unwrap(),
        ],
    );
    for target in [&fast, &fast, &slow] {
        let out = common::binary()
            .args(["start", "--peer", &format!("127.0.0.1:{seed}")])
            .args(["--cluster-secret-file", &secret, "--url", &target.url()])
            .args(["--tps", "100", "--duration", "2s", "--drain-timeout", "1s"])
            .args(["--test-name", "checkout", "--wait", "--quiet"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The next start waits for the cluster to close this test.
        let until = Instant::now() + Duration::from_secs(20);
        while cluster.status("h1").is_none_or(|s| {
            s.test
                .is_some_and(|t| !matches!(t.phase, vajra::cluster::status::TestPhase::Completed))
        }) && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = common::http::request(ui, "GET", "/api/v1/history/runs", Some(TOKEN), None)
            .ok()
            .filter(|a| a.status == 200)
            .map_or(0, |a| a.json()["runs"].as_array().unwrap().len());
        if runs == 3 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the orchestrator recorded {runs} of 3 runs"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/history.py"
        ))
        .args(["--ui", &format!("http://{ui}")])
        .args(["--token", TOKEN, "--name", "checkout", "--runs", "3"])
        .arg("--screenshots")
        .arg(&screenshots)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        cluster.print_logs();
    }
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let measured: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(measured["trend_points"], serde_json::json!([3, 3, 3, 3]));
}
