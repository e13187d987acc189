//! The `grpc` task against a tonic server run here (the `grpc_catalog`
//! example's service), written without code generation: its messages are
//! derived with prost by hand and served with the codec generated code
//! uses, so the task's dynamic messages (from the `.proto` file, at run
//! time) are checked against an independent encoding.

mod common;
#[path = "../examples/grpc_catalog/service.rs"]
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::run;
use service::{Catalog, SHOP_PROTO, Seen};

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Self {
        Self::serving(None)
    }

    /// The server, over TLS with `identity` (certificate and key, PEM) if
    /// given.
    fn serving(identity: Option<(String, String)>) -> Self {
        let (runtime, listener) = common::server_runtime();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let catalog = Catalog(Arc::clone(&seen));
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = identity {
            let identity = tonic::transport::Identity::from_pem(cert, key);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        runtime.spawn(
            builder
                .add_service(catalog)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("url=http://{}", self.addr)
    }

    fn count(&self, which: impl Fn(&Seen) -> &AtomicU64) -> u64 {
        which(&self.seen).load(Ordering::Relaxed)
    }
}

fn proto_file(dir: &std::path::Path) -> String {
    let path = dir.join("shop.proto");
    std::fs::write(&path, SHOP_PROTO).unwrap();
    path.display().to_string()
}

/// Runs the grpc task calling `shop.Catalog/GetItem` with `request`, on
/// the services of `proto`, at `url`, with the `load` flags.
fn get_item((proto, url, request): (&str, &str, &str), load: &[&str]) -> common::Run {
    let mut args = vec!["--task", "grpc", "--proto", proto, "-p", url];
    args.extend(["-p", "method=shop.Catalog/GetItem", "-p", request]);
    args.extend_from_slice(load);
    run(&args)
}

#[test]
fn unary_calls_from_a_proto_file_reach_the_server_as_sent_at_the_rate() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let proto = proto_file(dir.path());
    let url = server.url();
    let request = r#"request={"id": "42", "name": "espresso"}"#;
    let r = get_item(
        (&proto, &url, request),
        &["--tps", "300", "--duration", "2s"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed + report.main.dropped, 600);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(server.count(|s| &s.calls), report.main.completed);
    let requests = server.seen.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [((42, "espresso".to_owned()), report.main.completed)].into(),
        "every request decoded by prost as the JSON said"
    );
    let connects = &report.steps["connect"];
    assert_eq!(connects.failure, 0);
    assert!(
        connects.completed >= 1 && connects.completed <= report.instances as u64,
        "a connection per instance: {} for {} instances",
        connects.completed,
        report.instances
    );
}

#[test]
fn calls_over_tls_are_verified_against_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::pki::pki_pem(dir.path());
    let server = Server::serving(Some((cert, key)));
    let proto = proto_file(dir.path());
    let url = format!("url=https://localhost:{}", server.addr.port());
    let call = |trust: &[&str]| {
        let mut load = vec!["--tps", "100", "--duration", "1s"];
        load.extend_from_slice(trust);
        get_item((&proto, &url, r#"request={"id": 7}"#), &load)
    };
    let r = call(&["--https-ca", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    let served = server.count(|s| &s.calls);
    assert_eq!(served, report.main.completed);

    let untrusted = call(&[]);
    let report = untrusted.report.expect("a report");
    assert_eq!(report.main.success, 0);
    assert!(
        report.main.errors.iter().all(|e| e.kind == "connect"),
        "{:?}",
        report.main.errors
    );
    assert_eq!(server.count(|s| &s.calls), served, "no call without trust");
}

#[test]
fn a_scenario_calls_grpc_with_templates_metadata_and_reply_checks() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    proto_file(dir.path());
    // The second call is built from what the first one's reply held: its
    // id (a 64-bit integer, compared as a number) and its name.
    let text = format!(
        r#"
scenarios:
  - name: shop
    steps:
      - grpc:
          name: first
          url: http://{addr}
          proto: shop.proto
          method: shop.Catalog/GetItem
          request: '{{"id": 7, "name": "espresso"}}'
          check:
            - json: /id
              equals: 7
            - json: /tags/0
              equals: hot
          extract:
            id: {{json: /id}}
            name: {{json: /name}}
      - grpc:
          name: second
          url: http://{addr}
          proto: shop.proto
          method: shop.Catalog/GetItem
          request: '{{"id": ${{id}}, "name": "${{name}} again"}}'
          metadata:
            x-user: "${{name}}-${{vajra.iteration}}"
          check:
            - body_contains: again
"#,
        addr = server.addr
    );
    let file = dir.path().join("shop.yaml");
    std::fs::write(&file, &text).unwrap();
    let file = file.display().to_string();
    let r = run(&["--scenario", &file, "--tps", "100", "--duration", "2s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 200);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(report.steps["first"].completed, 200);
    assert_eq!(report.steps["second"].completed, 200);
    let requests = server.seen.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [
            ((7, "espresso".to_owned()), 200),
            ((7, "espresso again".to_owned()), 200)
        ]
        .into(),
        "the second request made from the first reply"
    );
    assert_eq!(server.count(|s| &s.with_user), 200, "metadata on each");
    let users = server.seen.users.lock().unwrap().clone();
    let rendered = regex::Regex::new(r"^espresso-\d+$").unwrap();
    assert!(
        users.iter().all(|u| rendered.is_match(u)),
        "the template rendered with the extracted name: {:?}",
        &users[..users.len().min(5)]
    );
    let connects = report.steps["first connect"].completed;
    assert!(connects >= 1 && connects <= report.instances as u64);
    assert!(
        !report.steps.contains_key("second connect"),
        "one connection per URL serves both steps"
    );

    // The run's HTTPS settings are for https:// servers: an h2c one
    // beside them is called as before.
    let r = run(&[
        "--scenario",
        &file,
        "--https-skip-verify",
        "--tps",
        "20",
        "--duration",
        "1s",
    ]);
    let report = r.report.expect("a report");
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);

    // A check that fails names itself; the run goes on.
    let failing = text.replace("equals: hot", "equals: cold");
    std::fs::write(dir.path().join("shop.yaml"), failing).unwrap();
    let r = run(&["--scenario", &file, "--tps", "20", "--duration", "1s"]);
    let report = r.report.expect("a report");
    assert_eq!(report.main.failure, 20, "{:?}", report.main.errors);
    assert_eq!(report.main.errors[0].kind, "check_json");

    // Bad steps are refused before any call.
    let calls = server.count(|s| &s.calls);
    for (from, to, needle) in [
        (
            "method: shop.Catalog/GetItem\n          request: '{\"id\": 7",
            "method: shop.Catalog/Nope\n          request: '{\"id\": 7",
            "steps[0].grpc.method: service 'shop.Catalog' has no method 'Nope'",
        ),
        (
            "\"name\": \"espresso\"}'",
            "\"nam\": 1}'",
            "steps[0].grpc.request: not a shop.ItemRequest",
        ),
        ("x-user:", "X User:", "not a text metadata key"),
        (
            "- body_contains: again",
            "- status: 200",
            "a message has no status or headers",
        ),
        (
            "proto: shop.proto\n          method: shop.Catalog/GetItem\n          request: '{\"id\": 7",
            "proto: other.proto\n          method: shop.Catalog/GetItem\n          request: '{\"id\": 7",
            "other.proto",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(dir.path().join("shop.yaml"), text.replacen(from, to, 1)).unwrap();
        let r = run(&["--scenario", &file, "--tps", "10", "--duration", "1s"]);
        assert_eq!(r.code, 2, "{to}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{to}: {}", r.stderr);
    }
    assert_eq!(server.count(|s| &s.calls), calls, "no load was sent");
}

#[test]
fn a_status_other_than_ok_fails_the_call_under_its_name() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let proto = proto_file(dir.path());
    let url = server.url();
    let load = ["--tps", "100", "--duration", "1s"];
    let r = get_item((&proto, &url, r#"request={"id": 0}"#), &load);
    let report = r.report.expect("a report");
    assert_eq!(report.main.success, 0);
    assert_eq!(report.main.failure, server.count(|s| &s.calls));
    assert_eq!(report.main.errors.len(), 1, "{:?}", report.main.errors);
    assert_eq!(report.main.errors[0].kind, "grpc_not_found");
}

#[test]
fn bad_grpc_settings_are_refused_before_any_call() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let proto = proto_file(dir.path());
    let url = server.url();
    for (extra, needle) in [
        (vec!["-p", "method=shop.Catalog/Nope"], "no method 'Nope'"),
        (
            vec![
                "-p",
                "method=shop.Catalog/GetItem",
                "-p",
                r#"request={"idd": 1}"#,
            ],
            "not a shop.ItemRequest",
        ),
        (
            vec!["-p", "method=shop.Catalog/GetItem", "-p", "colour=red"],
            "colour",
        ),
    ] {
        let mut args = vec!["--task", "grpc", "--proto", &proto, "-p", &url];
        args.extend(extra);
        args.extend(["--tps", "10", "--duration", "1s"]);
        let r = run(&args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    let missing = run(&[
        "--task",
        "grpc",
        "-p",
        &url,
        "-p",
        "method=shop.Catalog/GetItem",
        "--tps",
        "10",
        "--duration",
        "1s",
    ]);
    assert!(missing.stderr.contains("--proto"), "{}", missing.stderr);
    assert_eq!(server.count(|s| &s.calls), 0);
}
