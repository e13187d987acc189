//! Debian's Prometheus scraping a three-peer cluster under a test: every
//! query of the Grafana dashboard (deploy/grafana) returns data, and the
//! dashboard's whole-test p99, computed by Prometheus from the bucket
//! counts summed across peers, is within 5 % of the merged report's exact
//! p99. Needs the `prometheus` binary, so it is ignored by default;
//! `.ci/run` installs it and runs this with `--run-ignored only`.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary;
use common::cluster::{Cluster, free_port};
use common::http::get;
use serde_json::Value;
use vajra::export::Report;
use vajra::export::http::percent_encode as encode;

/// A Prometheus server on loopback, scraping `targets` every second.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vajra\n    \
                 static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus is installed (apt-get install prometheus)");
        let prometheus = Self {
            child,
            addr,
            _dir: dir,
        };
        let began = Instant::now();
        while !matches!(get(addr, "/-/ready"), Ok((200, _))) {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "prometheus never got ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// The result vector of an instant query at `at` (unix seconds).
    fn query(&self, expr: &str, at: f64) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}&time={at:.3}", encode(expr));
        let (status, body) = get(self.addr, &path).unwrap();
        assert_eq!(status, 200, "{expr}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn label_values(&self, label: &str) -> Vec<String> {
        let (_, body) = get(self.addr, &format!("/api/v1/label/{label}/values")).unwrap();
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["data"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every (panel title, legend, expr) of the dashboard.
fn dashboard_queries() -> Vec<(String, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/vajra-dashboard.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["legendFormat"].as_str().unwrap_or("").to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(queries.len() >= 20, "the dashboard has its panels");
    queries
}

/// A dashboard query with Grafana's variables filled in.
fn fill(expr: &str, test_id: &str, range: &str) -> String {
    expr.replace("$test_id", test_id)
        .replace("$peer", ".*")
        .replace("$__rate_interval", "5s")
        .replace("$__range", range)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
#[ignore = "needs Debian's prometheus (.ci/run installs it)"]
fn prometheus_scrapes_a_cluster_and_every_dashboard_panel_has_data() {
    // A target that stalls 600 ms every 3 s: requests caught in a stall
    // time out at 250 ms, so the errors panel has something to show.
    let target_port = free_port();
    let mut target = binary()
        .args(["serve", "--listen", &format!("127.0.0.1:{target_port}")])
        .args([
            "--stall-every",
            "3s",
            "--stall-for",
            "600ms",
            "--threads",
            "1",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut cluster = Cluster::new();
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    let scraped: Vec<SocketAddr> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .collect();
    let first = cluster.start_joined(&["m1", "m2", "m3"], |i| {
        vec!["--metrics-listen".to_owned(), scraped[i].to_string()]
    });
    let prometheus = Prometheus::start(&scraped);
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("cluster.json");
    let start = binary()
        .args(["start", "--peer", &format!("127.0.0.1:{first}")])
        .args(["--cluster-secret-file", &secret])
        .args(["--url", &format!("http://127.0.0.1:{target_port}/")])
        .args([
            "--tps",
            "300",
            "--duration",
            "20s",
            "--timeout",
            "250ms",
            "--wait",
        ])
        .arg("--output")
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Mid-test, every panel's query has data.
    std::thread::sleep(Duration::from_secs(14));
    let test_ids = prometheus.label_values("test_id");
    assert_eq!(test_ids.len(), 1, "one test scraped: {test_ids:?}");
    let test_id = &test_ids[0];
    let queries = dashboard_queries();
    let deadline = Instant::now() + Duration::from_secs(8);
    for (panel, legend, expr) in &queries {
        let filled = fill(expr, test_id, "60s");
        loop {
            let result = prometheus.query(&filled, unix_now());
            // A series of NaN (a quantile of nothing) is no data either.
            let numbers = result.iter().any(|series| {
                series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(f64::is_finite)
            });
            if numbers {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "panel '{panel}' ({legend}) has no data: {filled}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    let out = start.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert!(
        report.main.failure > 0,
        "the stalls made some requests fail"
    );
    // The peers keep serving the finished test: let Prometheus scrape the
    // final figures, then read the whole-test p99 panel.
    std::thread::sleep(Duration::from_secs(3));
    let (_, _, p99_expr) = queries
        .iter()
        .find(|(panel, legend, _)| panel.starts_with("Whole test: latency") && legend == "p99")
        .expect("the whole-test p99 panel");
    let at = unix_now();
    let result = prometheus.query(&fill(p99_expr, test_id, "120s"), at);
    let panel_p99: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    let exact = report.main.latency.p99_us / 1e6;
    let error = (panel_p99 - exact).abs() / exact;
    eprintln!(
        "p99: dashboard {:.3} ms, merged report {:.3} ms ({:.2} % apart); {} completed, {} failed",
        panel_p99 * 1e3,
        exact * 1e3,
        error * 100.0,
        report.main.completed,
        report.main.failure
    );
    assert!(
        error <= 0.05,
        "the dashboard's p99 is {:.2} % off",
        error * 100.0
    );
    // The exported counts are the report's, exactly.
    let completed = prometheus.query(
        &format!("sum(vajra_executions_total{{test_id=\"{test_id}\"}})"),
        at,
    );
    let exported: f64 = completed[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(exported as u64, report.main.completed);
    for export in &report.exports {
        assert!(export.is_complete(), "{}", export.describe());
    }
    assert_eq!(
        report.exports.len(),
        3,
        "each peer's prometheus exporter is reported"
    );
    let _ = target.kill();
    let _ = target.wait();
}
