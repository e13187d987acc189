//! OTLP metrics against a receiver built from the official protocol
//! definitions: a run's exported counts are the report's; a cluster's
//! exported histograms, merged as a backend merges them, give the merged
//! report's percentiles within the exponential histogram's error; and a
//! receiver that is down or hangs never stops a test, which says what it
//! could not deliver.

mod common;
#[path = "common/otlp.rs"]
mod receiver;

use std::time::{Duration, Instant};

use common::binary;
use common::cluster::{Cluster, free_port};
use receiver::{
    Receiver, exponential_points, exponential_quantile, merge_exponential, resource_attribute,
    sum_values,
};
use vajra::export::Report;
use vajra::export::otlp::exponential::relative_error;

/// Runs `vajra-peer run ARGS --output report.json --quiet`.
fn run(args: &[&str]) -> (i32, String, Report) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let out = binary()
        .arg("run")
        .args(args)
        .arg("--output")
        .arg(&path)
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no report: {stdout}\n{stderr}")),
    )
    .unwrap();
    (out.status.code().unwrap_or(-1), stdout, report)
}

fn latency_count(
    request: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> u64 {
    exponential_points(request, "vajra.latency")
        .iter()
        .map(|p| p.count)
        .sum()
}

#[test]
fn a_runs_exported_counts_are_its_reports_over_grpc_and_http() {
    for (receiver, protocol, endpoint) in [
        (Receiver::grpc(), "grpc", None),
        (Receiver::http(), "http/protobuf", Some("/")),
    ] {
        let url = format!("http://{}{}", receiver.addr, endpoint.unwrap_or(""));
        let (code, stdout, report) = run(&[
            "--task",
            "noop",
            "--tps",
            "1000",
            "--duration",
            "4s",
            "--export",
            "otlp",
            "--otlp-endpoint",
            &url,
            "--otlp-protocol",
            protocol,
            "--otlp-interval",
            "1s",
            "--label",
            "suite=otlp",
        ]);
        assert_eq!(code, 0, "{stdout}");
        let requests = receiver.requests();
        assert!(
            requests.len() >= 3,
            "{protocol}: one export a second, and the last: {}",
            requests.len()
        );
        let last = requests.last().unwrap();
        assert_eq!(
            latency_count(last),
            report.main.completed,
            "{protocol}: the histogram counts"
        );
        assert_eq!(
            sum_values(last, "vajra.executions.completed")
                .iter()
                .sum::<i64>() as u64,
            report.main.completed
        );
        assert_eq!(
            exponential_points(last, "vajra.service_time")
                .iter()
                .map(|p| p.count)
                .sum::<u64>(),
            report.main.completed
        );
        // Cumulative: each export holds at least what the one before did.
        let counts: Vec<u64> = requests.iter().map(latency_count).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(
            resource_attribute(last, "service.name").as_deref(),
            Some("vajra")
        );
        assert_eq!(resource_attribute(last, "suite").as_deref(), Some("otlp"));
        assert!(resource_attribute(last, "vajra.test.id").is_some());
        assert!(
            report.exports[0].is_complete(),
            "{}",
            report.exports[0].describe()
        );
        assert!(stdout.contains("export otlp:"), "{stdout}");
    }
}

#[test]
fn a_clusters_merged_export_gives_the_merged_percentiles() {
    let receiver = Receiver::grpc();
    let endpoint = format!("http://{}", receiver.addr);
    let mut cluster = Cluster::new();
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    let first = cluster.start_joined(&["o1", "o2", "o3"], |_| {
        [
            "--export",
            "otlp",
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "grpc",
        ]
        .map(str::to_owned)
        .to_vec()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.json");
    let out = binary()
        .args(["start", "--peer", &format!("127.0.0.1:{first}")])
        .args(["--cluster-secret-file", &secret])
        .args([
            "--task",
            "sleep",
            "--sleep",
            "1ms..30ms",
            "--tps",
            "600",
            "--duration",
            "8s",
        ])
        .args(["--wait", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Each peer's last export holds its whole share.
    let requests = receiver.requests();
    let mut last_by_peer = std::collections::BTreeMap::new();
    for request in &requests {
        let peer = resource_attribute(request, "service.instance.id").unwrap();
        last_by_peer.insert(peer, request.clone());
    }
    assert_eq!(last_by_peer.len(), 3, "every peer exported");
    let points: Vec<_> = last_by_peer
        .values()
        .flat_map(|r| exponential_points(r, "vajra.latency"))
        .collect();
    let merged = merge_exponential(&points);
    assert_eq!(
        merged.3, report.main.completed,
        "the counts add up to the merged report's"
    );
    let error = relative_error(merged.0);
    for (q, exact_us) in [
        (0.5, report.main.latency.p50_us),
        (0.99, report.main.latency.p99_us),
    ] {
        let exact = exact_us / 1e6;
        let estimate = exponential_quantile(&merged, q);
        eprintln!(
            "p{}: exported {:.3} ms, merged report {:.3} ms (scale {}, stated error {:.2} %)",
            q * 100.0,
            estimate * 1e3,
            exact * 1e3,
            merged.0,
            error * 100.0
        );
        assert!(
            estimate >= exact * 0.999 && estimate <= exact * (1.0 + error) * 1.001,
            "p{q}: {estimate} vs {exact} (scale {})",
            merged.0
        );
    }
    assert_eq!(report.exports.len(), 3);
    assert!(report.exports.iter().all(|e| e.is_complete()));
    // One trace for the test: every peer's run span shares its id.
    let spans = receiver.spans.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(runs.len(), 3, "a run span per peer");
    assert!(
        spans.iter().all(|s| s.trace_id == runs[0].trace_id),
        "one trace across peers"
    );
    let roots: std::collections::BTreeSet<_> = runs.iter().map(|s| s.span_id.clone()).collect();
    assert_eq!(roots.len(), 3, "each peer's run span is its own");
    assert!(
        spans
            .iter()
            .filter(|s| s.name != "run")
            .all(|s| roots.contains(&s.parent_span_id)),
        "every other span hangs under one of the run spans"
    );
}

#[test]
fn a_receiver_that_is_down_or_hangs_never_stops_the_test() {
    // Down: nothing listens on the port.
    let closed = free_port();
    let began = Instant::now();
    let (code, stdout, report) = run(&[
        "--task",
        "noop",
        "--tps",
        "500",
        "--duration",
        "3s",
        "--export",
        "otlp",
        "--otlp-endpoint",
        &format!("http://127.0.0.1:{closed}"),
        "--otlp-interval",
        "1s",
        "--otlp-timeout",
        "500ms",
    ]);
    assert_eq!(code, 0, "an exporter never fails the test: {stdout}");
    assert_eq!(report.main.completed, 1500, "exact counts");
    let otlp = &report.exports[0];
    assert!(otlp.not_delivered > 0 && !otlp.report_delivered, "{otlp:?}");
    assert!(
        otlp.describe().contains("windows not delivered"),
        "{}",
        otlp.describe()
    );
    assert!(
        otlp.error.as_deref().unwrap_or("").contains("refused"),
        "names the cause: {otlp:?}"
    );
    assert!(stdout.contains("export otlp:"), "{stdout}");
    assert!(began.elapsed() < Duration::from_secs(10));

    // Hangs: accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = listener.local_addr().unwrap();
    let began = Instant::now();
    let (code, stdout, report) = run(&[
        "--task",
        "noop",
        "--tps",
        "500",
        "--duration",
        "3s",
        "--export",
        "otlp",
        "--otlp-endpoint",
        &format!("http://{hung}"),
        "--otlp-interval",
        "1s",
        "--otlp-timeout",
        "30s",
        "--export-flush-timeout",
        "2s",
    ]);
    drop(listener);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(report.main.completed, 1500);
    assert!(
        began.elapsed() < Duration::from_secs(3 + 2 + 4),
        "the flush timeout bounds the end: {:?}",
        began.elapsed()
    );
    let otlp = &report.exports[0];
    assert!(!otlp.report_delivered && otlp.not_delivered > 0, "{otlp:?}");
}

/// An HTTP target that closes each connection after its answer, so a
/// keep-alive client reconnects before every request but the first.
fn closing_target() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20_000) {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    addr
}

#[test]
fn event_counters_are_exported_as_a_sum_per_name() {
    let receiver = Receiver::http();
    let target = closing_target();
    let (code, stdout, report) = run(&[
        "--url",
        &format!("http://{target}/"),
        "--tps",
        "200",
        "--duration",
        "2s",
        "--export",
        "otlp",
        "--otlp-endpoint",
        &format!("http://{}/", receiver.addr),
        "--otlp-interval",
        "1s",
    ]);
    assert_eq!(code, 0, "{stdout}");
    let reconnects = report.counters["http.reconnects"];
    assert!(reconnects > 100, "{:?}", report.counters);
    let last = receiver
        .requests()
        .pop()
        .unwrap_or_else(|| panic!("nothing exported: {:?}\n{stdout}", report.exports));
    assert_eq!(
        sum_values(&last, "vajra.events"),
        [reconnects as i64],
        "the one counter, as the report counted it"
    );
}

/// An HTTP target that answers 200 and keeps each request's
/// `traceparent` header (or None).
fn recording_target() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut traceparent = None;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("traceparent:") {
                            traceparent = Some(v.trim().to_owned());
                        }
                    }
                    store.lock().unwrap().push(traceparent);
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (addr, seen)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sampled_executions_are_spans_of_the_run_and_carry_traceparent_to_the_target() {
    let receiver = Receiver::grpc();
    let (target, seen) = recording_target();
    let (code, stdout, report) = run(&[
        "--url",
        &format!("http://{target}/"),
        "--tps",
        "200",
        "--duration",
        "3s",
        "--export",
        "otlp",
        "--otlp-endpoint",
        &format!("http://{}", receiver.addr),
        "--otlp-protocol",
        "grpc",
        "--trace-sample-ratio",
        "0.1",
        "--max-in-flight",
        "8",
        "--preallocate",
        "2",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        report.exports[0].is_complete(),
        "{}",
        report.exports[0].describe()
    );
    let spans = receiver.spans.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(runs.len(), 1, "one span for the run");
    let root = runs[0];
    assert!(root.parent_span_id.is_empty(), "the run's span is the root");
    assert!(
        spans.iter().all(|s| s.trace_id == root.trace_id),
        "one trace"
    );
    let children = |name: &str| -> Vec<_> { spans.iter().filter(|s| s.name == name).collect() };
    for name in ["setup", "cleanup", "execute"] {
        assert!(
            children(name)
                .iter()
                .all(|s| s.parent_span_id == root.span_id),
            "every {name} span is a child of the run's"
        );
    }
    assert_eq!(
        children("setup").len(),
        report.instances,
        "a setup span per instance"
    );
    assert_eq!(children("cleanup").len(), report.instances);
    let executed = children("execute");
    assert!(
        (20..=110).contains(&executed.len()),
        "about a tenth of 600 executions traced: {}",
        executed.len()
    );
    // The target saw each traced execution's own span as its parent.
    let headers: Vec<String> = seen.lock().unwrap().iter().flatten().cloned().collect();
    assert_eq!(
        headers.len(),
        executed.len(),
        "one traceparent per traced execution"
    );
    let trace = hex(&root.trace_id);
    for span in &executed {
        let expected = format!("00-{trace}-{}-01", hex(&span.span_id));
        assert!(headers.contains(&expected), "{expected} reached the target");
    }
    assert_eq!(seen.lock().unwrap().len() as u64, report.main.completed);
}

#[test]
fn the_runs_warnings_go_to_otlp_logs_in_the_tests_trace() {
    let receiver = Receiver::grpc();
    // Executions outlast the drain timeout: the run warns that it
    // abandoned them.
    let (code, stdout, report) = run(&[
        "--task",
        "sleep",
        "--sleep",
        "3s",
        "--tps",
        "4",
        "--duration",
        "1s",
        "--drain-timeout",
        "200ms",
        "--export",
        "otlp",
        "--otlp-endpoint",
        &format!("http://{}", receiver.addr),
        "--otlp-protocol",
        "grpc",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(report.unfinished > 0);
    let logs = receiver.logs.lock().unwrap().clone();
    let warning = logs
        .iter()
        .find(|r| {
            matches!(
                r.body.as_ref().and_then(|b| b.value.as_ref()),
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(m))
                    if m.contains("drain timeout")
            )
        })
        .unwrap_or_else(|| panic!("the drain warning was exported: {logs:?}"));
    assert_eq!(warning.severity_text, "WARN");
    let spans = receiver.spans.lock().unwrap().clone();
    let run_span = spans
        .iter()
        .find(|s| s.name == "run")
        .expect("the run's span");
    assert_eq!(warning.trace_id, run_span.trace_id, "in the test's trace");
    assert_eq!(warning.span_id, run_span.span_id, "under the run's span");
}
