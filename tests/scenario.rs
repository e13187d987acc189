//! Scenario files end to end: a login-token-fetch journey against a shop
//! served here (which only answers a fetch with the token and the cookie
//! its login gave), step timing from when each step was due, and bad
//! files refused before any request is sent.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{Cluster, free_port};
use common::{binary, run};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the shop saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    logins: AtomicU64,
    authorised: AtomicU64,
    refused: AtomicU64,
    /// The `user` of every login.
    users: parking_lot::Mutex<Vec<String>>,
}

/// A shop: `POST /login` with `{"user": U}` answers `{"token": "tok-N"}`
/// and sets cookie `session=s-N`; `GET /items` and `GET /items/ID` answer
/// only a request bearing `tok-N` and `session=s-N` of the same login
/// (401 otherwise); `GET /slow` answers after 80 ms.
struct Shop {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn login_of(request: &Request<hyper::body::Incoming>) -> Option<(u64, u64)> {
    let header = |name: &str| request.headers().get(name)?.to_str().ok();
    let token: u64 = header("authorization")?
        .strip_prefix("Bearer tok-")?
        .parse()
        .ok()?;
    let session: u64 = header("cookie")?
        .split("; ")
        .find_map(|c| c.strip_prefix("session=s-"))?
        .parse()
        .ok()?;
    Some((token, session))
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path().to_owned();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(80)).await;
        return Ok(reply(StatusCode::OK, "slow".into()));
    }
    if path == "/fast" {
        return Ok(reply(StatusCode::OK, "fast".into()));
    }
    if path == "/login" && request.method() == hyper::Method::POST {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if json["user"].as_str().is_none_or(str::is_empty) {
            return Ok(reply(StatusCode::BAD_REQUEST, "who?".into()));
        }
        seen.users
            .lock()
            .push(json["user"].as_str().unwrap_or_default().to_owned());
        let n = seen.logins.fetch_add(1, Ordering::Relaxed);
        let mut response = reply(StatusCode::OK, format!(r#"{{"token":"tok-{n}"}}"#));
        response.headers_mut().insert(
            "set-cookie",
            format!("session=s-{n}; Path=/; HttpOnly").parse().unwrap(),
        );
        return Ok(response);
    }
    match login_of(&request) {
        Some((token, session)) if token == session => {
            seen.authorised.fetch_add(1, Ordering::Relaxed);
            let body = match path.strip_prefix("/items/") {
                Some(id) => format!(r#"{{"id":{id},"name":"item {id}"}}"#),
                None => format!(
                    r#"{{"owner":{token},"items":[{{"id":{}}},{{"id":2}}]}}"#,
                    token + 100
                ),
            };
            Ok(reply(StatusCode::OK, body))
        }
        _ => {
            seen.refused.fetch_add(1, Ordering::Relaxed);
            Ok(reply(StatusCode::UNAUTHORIZED, "log in first".into()))
        }
    }
}

impl Shop {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Seen::default());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::clone(&seen);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |r| handle(r, Arc::clone(&seen)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn count(&self, which: impl Fn(&Seen) -> &AtomicU64) -> u64 {
        which(&self.seen).load(Ordering::Relaxed)
    }
}

fn file(suffix: &str, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const JOURNEY: &str = r#"
variables:
  shop: http://ADDR
scenarios:
  - name: journey
    steps:
      - request:
          name: login
          method: POST
          url: "${shop}/login"
          headers:
            Content-Type: application/json
          body: '{"user": "u${vajra.iteration}-${vajra.instance}"}'
          check:
            - status: 200
            - header: set-cookie
              contains: session=
          extract:
            token: { json: /token }
      - think: 1ms..3ms
      - request:
          name: list
          url: "${shop}/items"
          headers:
            Authorization: "Bearer ${token}"
          check:
            - json: /items/1/id
              equals: 2
          extract:
            first: { json: /items/0/id }
      - request:
          name: item
          url: "${shop}/items/${first}"
          headers:
            Authorization: "Bearer ${token}"
          check:
            - body_matches: '"name":"item \d+"'
"#;

#[test]
fn a_login_token_fetch_journey_extracts_the_token_and_uses_it() {
    let shop = Shop::start();
    let scenario = file(".yaml", &JOURNEY.replace("ADDR", &shop.addr.to_string()));
    let r = run(&[
        "--scenario",
        scenario.path().to_str().unwrap(),
        "--tps",
        "40",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.task, "scenario");
    assert_eq!(report.main.completed, 80, "one execution per arrival");
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(report.tags["journey"].completed, 80);
    for step in ["login", "list", "item"] {
        let figures = &report.steps[step];
        assert_eq!(figures.completed, 80, "{step}");
        assert_eq!(figures.failure, 0, "{step}: {:?}", figures.errors);
    }
    // The shop answers a fetch only with the token and cookie of one
    // login: 80 logins, then 160 fetches that all carried both.
    assert_eq!(shop.count(|s| &s.logins), 80);
    assert_eq!(shop.count(|s| &s.authorised), 160);
    assert_eq!(shop.count(|s| &s.refused), 0);
}

#[test]
fn without_the_token_the_fetch_fails_and_the_iteration_stops_there() {
    let shop = Shop::start();
    let text = JOURNEY
        .replace("ADDR", &shop.addr.to_string())
        .replace("Bearer ${token}", "Bearer nothing");
    let scenario = file(".yaml", &text);
    let r = run(&[
        "--scenario",
        scenario.path().to_str().unwrap(),
        "--tps",
        "20",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 20);
    assert_eq!(report.main.failure, 20);
    assert_eq!(
        report.main.errors[0].kind, "status_401",
        "{:?}",
        report.main.errors
    );
    assert_eq!(report.steps["list"].failure, 20);
    assert!(
        !report.steps.contains_key("item"),
        "a failed step ends the iteration"
    );
    assert_eq!(shop.count(|s| &s.refused), 20);
}

#[test]
fn each_step_counts_from_when_it_was_due_and_the_iteration_from_its_arrival() {
    let shop = Shop::start();
    let text = format!(
        r#"
[[scenarios]]
name = "two"

[[scenarios.steps]]
request = {{ name = "slow", url = "http://{addr}/slow" }}

[[scenarios.steps]]
think = "20ms"

[[scenarios.steps]]
request = {{ name = "fast", url = "http://{addr}/fast" }}
"#,
        addr = shop.addr
    );
    let scenario = file(".toml", &text);
    let r = run(&[
        "--scenario",
        scenario.path().to_str().unwrap(),
        "--tps",
        "20",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let (slow, fast, whole) = (
        &report.steps["slow"].latency,
        &report.steps["fast"].latency,
        &report.main.latency,
    );
    assert!(slow.p50_us >= 80_000.0, "{slow:?}");
    assert!(
        fast.p50_us < 20_000.0,
        "the fast step is due after the slow one and the think time: {fast:?}"
    );
    assert!(
        whole.p50_us >= 100_000.0,
        "the iteration counts from its arrival, think time included: {whole:?}"
    );
    assert_eq!(report.main.completed, 40);
}

/// Runs a scenario file that must be refused; its error output.
fn refused(suffix: &str, text: &str, shop: &Shop) -> String {
    let scenario = file(suffix, &text.replace("ADDR", &shop.addr.to_string()));
    let r = run(&[
        "--scenario",
        scenario.path().to_str().unwrap(),
        "--tps",
        "10",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let name = scenario.path().display().to_string();
    assert!(r.stderr.contains(&name), "names the file: {}", r.stderr);
    r.stderr
}

#[test]
fn bad_files_are_refused_naming_file_line_and_field_before_any_load() {
    let shop = Shop::start();
    let unknown_kind =
        "scenarios:\n  - name: a\n    steps:\n      - requst:\n          url: http://ADDR/\n";
    let e = refused(".yaml", unknown_kind, &shop);
    assert!(
        e.contains("unknown variant `requst`") && e.contains("line 4"),
        "{e}"
    );

    let never_set = "scenarios:\n  - name: a\n    steps:\n      - request:\n          url: http://ADDR/login\n      - request:\n          url: http://ADDR/items?t=${token}\n";
    let e = refused(".yaml", never_set, &shop);
    assert!(
        e.contains(":7: scenarios[0].steps[1].request.url: variable 'token' is used but never set"),
        "{e}"
    );

    let bad_template = "scenarios:\n  - name: a\n    steps:\n      - request:\n          url: http://ADDR/${token\n";
    let e = refused(".yaml", bad_template, &shop);
    assert!(
        e.contains(":5: scenarios[0].steps[0].request.url") && e.contains("closing"),
        "{e}"
    );

    let zero_weight = "scenarios:\n  - name: a\n    weight: 0\n    steps:\n      - request:\n          url: http://ADDR/\n";
    let e = refused(".yaml", zero_weight, &shop);
    assert!(e.contains(":3: scenarios[0].weight: a weight of 0"), "{e}");

    let bad_regex = "[[scenarios]]\nname = \"a\"\n\n[[scenarios.steps]]\n[scenarios.steps.request]\nurl = \"http://ADDR/\"\ncheck = [{ body_matches = \"(unclosed\" }]\n";
    let e = refused(".toml", bad_regex, &shop);
    assert!(
        e.contains(":7: scenarios[0].steps[0].request.check[0].body_matches: not a valid regular expression"),
        "{e}"
    );

    let never_set_toml = "[[scenarios]]\nname = \"a\"\n\n[[scenarios.steps]]\n[scenarios.steps.request]\nurl = \"http://ADDR/${who}\"\n";
    let e = refused(".toml", never_set_toml, &shop);
    assert!(
        e.contains(":6: scenarios[0].steps[0].request.url: variable 'who'"),
        "{e}"
    );

    let unknown_field = "scenarios:\n  - name: a\n    steps:\n      - request:\n          url: http://ADDR/\n          retries: 3\n";
    let e = refused(".yaml", unknown_field, &shop);
    assert!(
        e.contains("unknown field `retries`") && e.contains("line 6"),
        "{e}"
    );

    assert_eq!(shop.count(|s| &s.requests), 0, "no load was sent");
}

#[test]
fn a_cluster_runs_the_scenario_it_was_sent_and_merges_its_steps() {
    let shop = Shop::start();
    let mut cluster = Cluster::new();
    let first = free_port();
    cluster.start("sc1", first, None);
    cluster.start("sc2", free_port(), Some(first));
    cluster
        .wait_until(&["sc1", "sc2"], Duration::from_secs(8), |s| {
            s.leader.is_some() && s.live_ids() == ["sc1", "sc2"]
        })
        .expect("two peers with a leader");
    // The file is named relative to a directory only `start` runs in: a
    // peer that looked for it would not find it.
    let dir = tempfile::tempdir().unwrap();
    let text = JOURNEY
        .replace("ADDR", &shop.addr.to_string())
        .replace("u${vajra.iteration}", "${vajra.peer}-${vajra.iteration}");
    std::fs::write(dir.path().join("journey.yaml"), text).unwrap();
    let report = dir.path().join("cluster.json");
    let out = binary()
        .current_dir(dir.path())
        .args(["start", "--peer", &format!("127.0.0.1:{first}")])
        .args([
            "--cluster-secret-file",
            cluster.secret.path().to_str().unwrap(),
        ])
        .args([
            "--scenario",
            "journey.yaml",
            "--tps",
            "40",
            "--duration",
            "3s",
        ])
        .args(["--wait", "--output"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: vajra::export::Report =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report.peers.len(), 2);
    assert_eq!(report.main.completed, 120, "the integral of 40/s over 3 s");
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    for step in ["login", "list", "item"] {
        assert_eq!(
            report.steps[step].completed, 120,
            "{step}, merged over the peers"
        );
        let per_peer: u64 = report.peers.values().map(|p| p.steps[step].completed).sum();
        assert_eq!(per_peer, 120, "{step}");
    }
    assert_eq!(shop.count(|s| &s.refused), 0);
    let users = shop.seen.users.lock().clone();
    for peer in ["sc1", "sc2"] {
        assert!(
            users.iter().any(|u| u.starts_with(&format!("{peer}-"))),
            "{peer} ran the scenario: {users:?}"
        );
    }
}

/// The service the guide's gRPC example calls.
const DOCS_SHOP_PROTO: &str = r#"
syntax = "proto3";
package shop;
message ItemRequest { int64 id = 1; }
message Item { int64 id = 1; string name = 2; repeated string tags = 3; }
service Catalog { rpc GetItem (ItemRequest) returns (Item); }
"#;

#[test]
fn the_examples_in_the_guide_compile() {
    use vajra::task::scenario::{Format, ScenarioSource, Scenarios};
    let guide = std::fs::read_to_string("docs/scenarios.md").unwrap();
    let mut compiled = 0;
    for block in guide.split("```").skip(1).step_by(2) {
        let (lang, text) = block.split_once('\n').unwrap();
        let format = match lang.trim() {
            "yaml" => Format::Yaml,
            "toml" => Format::Toml,
            _ => continue,
        };
        let source = ScenarioSource {
            name: "docs/scenarios.md".into(),
            format,
            text: text.to_owned(),
            files: [
                ("users.csv".to_owned(), "user,password\nann,pw\n".to_owned()),
                ("ids.csv".to_owned(), "id\n1\n".to_owned()),
            ]
            .into(),
            protos: [(
                "shop.proto".to_owned(),
                vajra::task::grpc::ProtoSource {
                    name: "shop.proto".into(),
                    text: Some(DOCS_SHOP_PROTO.into()),
                    descriptor_set: None,
                },
            )]
            .into(),
        };
        let scenarios = Scenarios::compile(&source).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!scenarios.list.is_empty());
        compiled += 1;
    }
    assert_eq!(
        compiled, 6,
        "the guide's three examples, the two of protocols and the feeder's"
    );
}

/// A scenario logging in once per iteration as the feeder's user.
fn feeder_file(mode: &str, extra: &str, data_file: &str) -> String {
    format!(
        r#"
feeders:
  users:
    file: {data_file}
    mode: {mode}
{extra}
scenarios:
  - name: login
    feeder: users
    steps:
      - request:
          method: POST
          url: http://ADDR/login
          body: '{{"user": "${{user}}"}}'
"#
    )
}

#[test]
fn a_unique_feeder_gives_each_record_once_then_stops_the_run() {
    let shop = Shop::start();
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = (0..50).map(|i| format!("user{i:02}")).collect();
    std::fs::write(
        dir.path().join("users.csv"),
        format!("user,password\n{}\n", users.join(",pw\n") + ",pw"),
    )
    .unwrap();
    let text = feeder_file("unique", "", "users.csv").replace("ADDR", &shop.addr.to_string());
    std::fs::write(dir.path().join("login.yaml"), text).unwrap();
    let r = run(&[
        "--scenario",
        dir.path().join("login.yaml").to_str().unwrap(),
        "--tps",
        "40",
        "--duration",
        "3s",
    ]);
    let report = r.report.expect("a report");
    assert_eq!(format!("{:?}", report.outcome), "Aborted", "{}", r.stdout);
    assert!(
        report
            .abort_reason
            .as_deref()
            .is_some_and(|r| r.contains("feeder 'users' has no records left")),
        "{:?}",
        report.abort_reason
    );
    let mut seen = shop.seen.users.lock().clone();
    seen.sort();
    assert_eq!(seen, users, "each record exactly once");
    let step = format!("POST http://{}/login", shop.addr);
    assert_eq!(
        report.steps[&step].completed, 50,
        "the default step name is method and URL"
    );
    // The arrivals that found the feeder empty sent nothing: not run, not
    // failed, and the report accounts for every one dispatched.
    assert_eq!(report.main.completed, 50, "{:?}", report.main.errors);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    let not_run = report.counters.get("not_run").copied().unwrap_or(0);
    assert!(
        not_run >= 1,
        "the draw that stopped the run: {:?}",
        report.counters
    );
    assert_eq!(
        report.main.dispatched,
        report.main.completed + not_run + report.unfinished,
        "{:?}",
        report.counters
    );
}

#[test]
fn a_sequential_json_lines_feeder_walks_its_records_and_starts_over() {
    let shop = Shop::start();
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..10)
        .map(|i| format!("{{\"user\": \"u{i}\", \"id\": {i}}}\n"))
        .collect();
    std::fs::write(dir.path().join("users.jsonl"), lines).unwrap();
    let text = feeder_file("sequential", "", "users.jsonl").replace("ADDR", &shop.addr.to_string());
    std::fs::write(dir.path().join("login.yaml"), text).unwrap();
    let r = run(&[
        "--scenario",
        dir.path().join("login.yaml").to_str().unwrap(),
        "--concurrency",
        "1",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    let seen = shop.seen.users.lock().clone();
    assert!(seen.len() > 20, "{}", seen.len());
    for (i, user) in seen.iter().enumerate() {
        assert_eq!(*user, format!("u{}", i % 10), "in file order, then again");
    }
}

#[test]
fn bad_feeders_are_refused_before_any_load_and_a_definition_carries_good_ones() {
    let shop = Shop::start();
    let e = refused(".yaml", &feeder_file("unique", "", "missing.csv"), &shop);
    assert!(
        e.contains("feeder 'users': cannot read") && e.contains("missing.csv"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "user\nann\n").unwrap();
    let write = |text: &str| {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, text.replace("ADDR", &shop.addr.to_string())).unwrap();
        run(&[
            "--scenario",
            path.to_str().unwrap(),
            "--tps",
            "5",
            "--duration",
            "1s",
        ])
    };
    let r = write(&feeder_file(
        "unique",
        "    on_exhausted: recycle",
        "users.csv",
    ));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains(":6: feeders.users.on_exhausted: a unique feeder cannot recycle"),
        "{}",
        r.stderr
    );
    let r = write(
        &feeder_file("sequential", "", "users.csv").replace("feeder: users", "feeder: people"),
    );
    assert!(
        r.stderr
            .contains("scenarios[0].feeder: no feeder named 'people'"),
        "{}",
        r.stderr
    );
    let r = write(&feeder_file("sequential", "", "users.csv").replace("${user}", "${name}"));
    assert!(
        r.stderr.contains("variable 'name' is used but never set"),
        "{}",
        r.stderr
    );
    assert_eq!(shop.count(|s| &s.requests), 0, "no load was sent");

    // A cluster's peers resolve the definition `start` sends, feeder
    // files and all, without the directory they came from.
    std::fs::write(
        dir.path().join("u.yaml"),
        feeder_file("unique", "", "users.csv").replace("ADDR", "127.0.0.1:9"),
    )
    .unwrap();
    let args = vajra::config::RunArgs {
        scenario: Some(dir.path().join("u.yaml")),
        tps: Some(5.0),
        duration: Some("1s".parse().unwrap()),
        ..Default::default()
    };
    let shipped = vajra::config::definition::self_contained(args).unwrap();
    let settings = vajra::config::definition::resolve_definition(shipped).unwrap();
    let scenarios = settings.task.scenario.expect("a scenario");
    assert_eq!(scenarios.feeders[0].records.rows, [["ann"]]);
    assert!(
        scenarios.needs_leases(),
        "a unique feeder leases in a cluster"
    );
}

/// 5000 users over 3 peers at 600/s for 12 s: the records run out at about
/// 8 s. One peer is killed at about 4 s; the leader re-splits its share.
/// Each user logs in at most once; all but the few the dead peer held
/// leased are used.
#[test]
fn a_unique_feeder_over_three_peers_with_one_killed_uses_each_record_at_most_once() {
    let shop = Shop::start();
    let mut cluster = Cluster::new();
    let first = cluster.start_joined(&["uf1", "uf2", "uf3"], |_| Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = (0..5_000).map(|i| format!("user{i:04}")).collect();
    std::fs::write(
        dir.path().join("users.csv"),
        format!("user\n{}\n", users.join("\n")),
    )
    .unwrap();
    let text = feeder_file("unique", "", "users.csv").replace("ADDR", &shop.addr.to_string());
    std::fs::write(dir.path().join("login.yaml"), text).unwrap();
    let report = dir.path().join("cluster.json");
    let start = binary()
        .current_dir(dir.path())
        .args(["start", "--peer", &format!("127.0.0.1:{first}")])
        .args([
            "--cluster-secret-file",
            cluster.secret.path().to_str().unwrap(),
        ])
        .args([
            "--scenario",
            "login.yaml",
            "--tps",
            "600",
            "--duration",
            "12s",
        ])
        .args(["--wait", "--output"])
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The test starts 1.5 s after `start`; kill a peer 2.5 s into it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shop.count(|s| &s.logins) < 1_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_kill = shop.count(|s| &s.logins);
    cluster.kill("uf3");
    let out = start.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut seen = shop.seen.users.lock().clone();
    let logins = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), logins, "a user logged in twice: {stderr}");
    assert!(
        seen.iter().all(|u| users.binary_search(u).is_ok()),
        "only the file's users"
    );
    // The dead peer held at most a lease and a half (a second and a half
    // of its 200/s): those are never handed out again.
    assert!(
        logins >= 5_000 - 400,
        "{logins} of 5000 records used (killed at {at_kill}): {stderr}"
    );
    let report: vajra::export::Report =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default())
            .unwrap_or_else(|e| panic!("no report ({e}): {stderr}"));
    // The survivors' counts are exact; the dead peer's stop at the last
    // figures it gave (a fraction of a second before its death).
    let completed = report.main.completed;
    assert!(
        completed <= logins as u64 && completed + 200 >= logins as u64,
        "the report has {completed} of the shop's {logins} logins: {stderr}"
    );
    println!(
        "{logins} logins, {completed} reported, errors {:?}",
        report.main.errors
    );
    let unavailable = report
        .main
        .errors
        .iter()
        .find(|e| e.kind == "feeder_unavailable");
    assert!(
        unavailable.is_none(),
        "a lease was missing: {unavailable:?}"
    );
    // Running out is the run's end, not its iterations' failure.
    let exhausted = report
        .main
        .errors
        .iter()
        .find(|e| e.kind == "feeder_exhausted");
    assert!(exhausted.is_none(), "counted as failures: {exhausted:?}");
    assert!(
        report.counters.get("not_run").is_some_and(|n| *n >= 1),
        "no peer's draw found the feeder empty: {:?}",
        report.counters
    );
}
