//! The web UI in a real browser (tests/browser/ui.py: Python playwright
//! driving Debian's chromium) against a three-peer cluster on loopback.
//! Needs chromium and playwright, so it is ignored by default; `.ci/run`
//! installs both and runs it with `--run-ignored only`. Screenshots of
//! every page land in `target/tmp/ui-screenshots`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

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
