//! The web API of a three-peer cluster, driven as a client would: tokens
//! and roles, a test started, changed and followed over server-sent
//! events while a peer is killed, and its merged result as JSON, CSV and
//! HTML. And the refusals: an unauthenticated API off loopback, a report
//! that is not one.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, free_port};
use common::http::{events, request};
use common::{TestTarget, binary};
use serde_json::Value;
use vajra::target::TargetBehaviour;

const OPERATOR: &str = "operator-token-for-the-web-test";
const VIEWER: &str = "viewer-token-for-the-web-test";

fn token_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# roles\noperator {OPERATOR}\nviewer {VIEWER}").unwrap();
    file
}

/// The last frame of `frames` satisfying `check`, waiting up to `limit`.
fn frame_where(api: SocketAddr, limit: Duration, check: impl Fn(&Value) -> bool) -> Option<Value> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let frames = events(api, "/api/v1/live", VIEWER, Duration::from_millis(1500)).unwrap();
        if let Some(frame) = frames.into_iter().rev().find(|f| check(f)) {
            return Some(frame);
        }
    }
    None
}

#[test]
fn the_api_drives_a_cluster_test_and_serves_its_merged_result() {
    let target = TestTarget::start(TargetBehaviour::default());
    let tokens = token_file();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cluster = Cluster::new();
    let token_path = tokens.path().to_str().unwrap().to_owned();
    cluster.start_joined(&["w1", "w2", "w3"], |i| {
        if i == 0 {
            vec![
                "--http".into(),
                api.to_string(),
                "--api-token-file".into(),
                token_path.clone(),
            ]
        } else {
            Vec::new()
        }
    });

    // Who may do what.
    let anonymous = request(api, "GET", "/api/v1/cluster", None, None).unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.header("www-authenticate").is_some());
    assert!(
        anonymous.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
    let stranger = request(api, "GET", "/api/v1/me", Some("not-a-token-we-know"), None).unwrap();
    assert_eq!(stranger.status, 401);
    let me = request(api, "GET", "/api/v1/me", Some(VIEWER), None).unwrap();
    assert_eq!(me.json()["role"], "viewer");
    let definition = format!(
        r#"{{"test": {{"url": "{}", "tps": 300, "duration": "16s"}}}}"#,
        target.url()
    );
    let by_viewer = request(
        api,
        "POST",
        "/api/v1/tests",
        Some(VIEWER),
        Some(&definition),
    )
    .unwrap();
    assert_eq!(by_viewer.status, 403, "{}", by_viewer.body);

    // A bad definition is refused at its field, before anything runs.
    let bad = request(
        api,
        "POST",
        "/api/v1/tests",
        Some(OPERATOR),
        Some(r#"{"test": {"url": "http://127.0.0.1:1/", "tps": 100, "duration": "forever"}}"#),
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["error"]["field"], "test.duration");
    let preview = request(
        api,
        "POST",
        "/api/v1/tests/validate",
        Some(VIEWER),
        Some(&definition),
    )
    .unwrap();
    assert_eq!(preview.json()["total_arrivals"], 4800, "{}", preview.body);

    let started = request(
        api,
        "POST",
        "/api/v1/tests",
        Some(OPERATOR),
        Some(&definition),
    )
    .unwrap();
    assert_eq!(started.status, 201, "{}", started.body);
    let test_id = started.json()["test_id"].as_str().unwrap().to_owned();
    let again = request(
        api,
        "POST",
        "/api/v1/tests",
        Some(OPERATOR),
        Some(&definition),
    )
    .unwrap();
    assert_eq!(
        again.status, 409,
        "a second test while one runs: {}",
        again.body
    );

    // Live frames: one a second, three peers, seconds of the test gaining.
    let frames = events(api, "/api/v1/live", VIEWER, Duration::from_secs(4)).unwrap();
    assert!(frames.len() >= 3, "{} frames in 4 s", frames.len());
    assert_eq!(frames[0]["snapshot"], true);
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let last = frames.last().unwrap();
    assert_eq!(last["test"]["id"], test_id.as_str());
    assert_eq!(last["cluster"]["members"].as_array().unwrap().len(), 3);
    assert!(!last["test"]["points"].as_array().unwrap().is_empty() || frames.len() > 3);

    // A new rate moves the target line.
    let update = request(
        api,
        "PATCH",
        "/api/v1/tests/current",
        Some(OPERATOR),
        Some(r#"{"tps": 600}"#),
    )
    .unwrap();
    assert_eq!(update.status, 200, "{}", update.body);
    let moved = frame_where(api, Duration::from_secs(6), |f| {
        (f["test"]["target_rate"].as_f64().unwrap_or(0.0) - 600.0).abs() < 1.0
    });
    assert!(moved.is_some(), "the target rate never showed 600/s");

    // A peer killed is marked so, and its share moves to the others.
    cluster.kill("w3");
    let resplit = frame_where(api, Duration::from_secs(10), |f| {
        let w3 = f["cluster"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "w3");
        let shares = f["test"]["shares"].as_object();
        w3.is_some_and(|m| m["state"] != "alive")
            && shares.is_some_and(|s| !s.contains_key("w3") && s.len() == 2)
    });
    if resplit.is_none() {
        cluster.print_logs();
    }
    assert!(
        resplit.is_some(),
        "w3 was never shown lost with its share moved"
    );

    // The merged result, once the test is over.
    let until = Instant::now() + Duration::from_secs(40);
    let report = loop {
        let answer = request(
            api,
            "GET",
            &format!("/api/v1/tests/{test_id}/report.json"),
            Some(VIEWER),
            None,
        )
        .unwrap();
        if answer.status == 200 {
            break answer.json();
        }
        assert_eq!(answer.status, 404, "{}", answer.body);
        assert!(Instant::now() < until, "no result in time");
        std::thread::sleep(Duration::from_millis(500));
    };
    let main = &report["main"];
    let completed = main["completed"].as_u64().unwrap();
    let series_completed: u64 = report["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["success"].as_u64().unwrap() + w["failure"].as_u64().unwrap())
        .sum();
    assert_eq!(
        series_completed, completed,
        "the series adds up to the total"
    );
    let planned = report["planned"].as_u64().unwrap();
    let accounted = main["dispatched"].as_u64().unwrap()
        + main["dropped"].as_u64().unwrap()
        + main["missed"].as_u64().unwrap()
        + report["unsent"].as_u64().unwrap_or(0);
    assert!(planned > 4800, "the rate update raised the plan: {planned}");
    let gap = accounted.abs_diff(planned) as f64 / planned as f64;
    assert!(gap < 0.03, "planned {planned}, accounted {accounted}");
    assert_eq!(report["peers"].as_object().unwrap().len(), 3);
    let events_text = report["events"].to_string();
    assert!(events_text.contains("w3"), "{events_text}");

    let list = request(api, "GET", "/api/v1/tests", Some(VIEWER), None)
        .unwrap()
        .json();
    assert_eq!(list["results"][0]["id"], test_id.as_str());
    assert_eq!(list["results"][0]["completed"], completed);

    let csv = request(
        api,
        "GET",
        &format!("/api/v1/tests/{test_id}/report.csv"),
        Some(VIEWER),
        None,
    )
    .unwrap();
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let rows = csv.body.lines().count();
    assert_eq!(
        rows,
        report["series"].as_array().unwrap().len() + 1,
        "a row a second and the header"
    );
    let html = request(
        api,
        "GET",
        &format!("/api/v1/tests/{test_id}/report.html"),
        Some(VIEWER),
        None,
    )
    .unwrap();
    let start = html.body.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
    let end = start + html.body[start..].find("</script>").unwrap();
    let embedded: Value = serde_json::from_str(&html.body[start..end]).unwrap();
    assert_eq!(embedded["report"]["main"]["completed"], completed);

    // Deleting is an operator's.
    let path = format!("/api/v1/tests/{test_id}");
    assert_eq!(
        request(api, "DELETE", &path, Some(VIEWER), None)
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        request(api, "DELETE", &path, Some(OPERATOR), None)
            .unwrap()
            .status,
        204
    );
    let gone = request(
        api,
        "GET",
        &format!("{path}/report.json"),
        Some(VIEWER),
        None,
    )
    .unwrap();
    assert_eq!(gone.status, 404);
    // Once the cluster has closed the test, there is nothing to stop.
    let until = Instant::now() + Duration::from_secs(20);
    while request(api, "GET", "/api/v1/cluster", Some(VIEWER), None)
        .unwrap()
        .json()["test"]["phase"]
        != "COMPLETED"
    {
        assert!(Instant::now() < until, "the test never showed COMPLETED");
        std::thread::sleep(Duration::from_millis(300));
    }
    let no_test = request(
        api,
        "POST",
        "/api/v1/tests/current/stop",
        Some(OPERATOR),
        None,
    )
    .unwrap();
    assert_eq!(no_test.status, 409, "{}", no_test.body);
}

#[test]
fn an_api_off_loopback_needs_authentication() {
    let output = binary()
        .args([
            "join",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
    let output = binary()
        .args(["join", "--insecure", "--listen", "127.0.0.1:0"])
        .args(["--api-token-file", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs --http"));
}

#[test]
fn a_json_report_converts_to_a_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let html = dir.path().join("run.html");
    let run = binary()
        .args([
            "run",
            "--task",
            "noop",
            "--tps",
            "200",
            "--duration",
            "2s",
            "--quiet",
        ])
        .arg("--output")
        .arg(&json)
        .arg("--output")
        .arg(dir.path().join("direct.html"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let converted = binary()
        .arg("report")
        .arg(&json)
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        converted.status.success(),
        "{}",
        String::from_utf8_lossy(&converted.stderr)
    );
    for page in [html, dir.path().join("direct.html")] {
        let page = std::fs::read_to_string(page).unwrap();
        assert!(page.contains("VajraResult.render"));
        assert!(
            page.contains("\"completed\":400"),
            "the report's data is in the page"
        );
        assert!(
            !page.contains("src=\"http"),
            "nothing is fetched from the network"
        );
    }
    let not_json = dir.path().join("notes.txt");
    std::fs::write(&not_json, "hello").unwrap();
    let refused = binary()
        .arg("report")
        .arg(&not_json)
        .args(["-o", "x.html"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a Vajra JSON report"));
}
