//! The web API fuzzed against its own description (docs/openapi.json) by
//! schemathesis (PyPI): thousands of generated requests, valid and not,
//! as an operator and as a viewer; no answer may be a 5xx or stray from
//! the description, and the node must still be serving afterwards. The
//! node fuzzed is an orchestrator (it serves every endpoint a peer does,
//! and the history's), its store holding a recorded run. Needs
//! schemathesis, so it is ignored by default; `.ci/run` installs it and
//! runs this with `--run-ignored only`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use common::cluster::{Cluster, free_port};
use common::http::request;

const OPERATOR: &str = "operator-token-for-the-fuzzer";
const VIEWER: &str = "viewer-token-for-the-fuzzer";

#[test]
#[ignore = "needs schemathesis from PyPI (.ci/run installs it)"]
fn generated_requests_get_answers_the_description_allows() {
    let mut tokens = tempfile::NamedTempFile::new().unwrap();
    writeln!(tokens, "operator {OPERATOR}\nviewer {VIEWER}").unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let token_path = tokens.path().to_str().unwrap().to_owned();
    let store = tempfile::tempdir().unwrap();
    let db = store.path().join("history.db");
    let db = db.to_str().unwrap();
    let recorded = common::raw(&[
        "run",
        "--task",
        "noop",
        "--tps",
        "50",
        "--duration",
        "1s",
        "--quiet",
        "--store",
        db,
    ]);
    assert_eq!(recorded.code, 0, "{}", recorded.stderr);
    let mut cluster = Cluster::new();
    let seed = cluster.start_joined(&["fz1"], |_| Vec::new());
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    let flags = [
        "--cluster-secret-file",
        &secret,
        "--store",
        db,
        "--http",
        &api.to_string(),
        "--api-token-file",
        &token_path,
    ];
    cluster.start_as("orchestrator", "fzo", free_port(), Some(seed), &flags);
    cluster
        .wait_until(&["fz1"], std::time::Duration::from_secs(10), |s| {
            s.live_ids() == ["fz1", "fzo"]
        })
        .expect("the orchestrator joins");
    let reports = tempfile::tempdir().unwrap();
    for (who, token) in [("operator", OPERATOR), ("viewer", VIEWER)] {
        let output = Command::new("schemathesis")
            .arg("run")
            .arg(format!("http://{api}/api/v1/openapi.json"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            // Every check but "schema-valid data is accepted": a test's
            // settings have rules (a rate needs a duration, a URL a scheme)
            // no JSON schema states.
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            // The event stream never ends; tests/web.rs reads it.
            .args(["--exclude-path", "/api/v1/live"])
            .args(["--max-examples", "60", "--workers", "1", "--seed", "42"])
            .arg("--report-dir")
            .arg(reports.path().join(who))
            .output()
            .expect("schemathesis is installed (pip install schemathesis)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            cluster.print_logs();
        }
        assert!(
            output.status.success(),
            "schemathesis as {who} found failures:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = stdout.lines().rev().find(|l| l.contains("generated"));
        println!("{who}: {}", summary.unwrap_or("(no summary)"));
    }
    let me = request(api, "GET", "/api/v1/me", Some(VIEWER), None).unwrap();
    assert_eq!(me.status, 200, "the peer still serves after the fuzzing");
    assert!(cluster.status("fzo").is_some(), "and still answers status");
    // (The recorded run may be gone: the operator's fuzzing follows the
    // list's ids to DELETE.)
    let runs = request(api, "GET", "/api/v1/history/runs", Some(VIEWER), None).unwrap();
    assert_eq!(runs.status, 200, "the history still answers: {}", runs.body);
}
