//! The built-in protocol tasks against real servers: `tcp` against a line
//! server run here, `postgres` against Debian's PostgreSQL (started by
//! `.ci/run`, named by `VAJRA_TEST_POSTGRES`).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::run;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A line server: answers each line `PING N` with `PONG N`, and anything
/// else with `ERR`; counts connections and lines.
struct LineServer {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    lines: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl LineServer {
    fn start() -> Self {
        let (runtime, listener) = common::server_runtime();
        let addr = listener.local_addr().unwrap();
        let (connections, lines) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, l) = (Arc::clone(&connections), Arc::clone(&lines));
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::Relaxed);
                let l = Arc::clone(&l);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read).lines();
                    while let Ok(Some(line)) = reader.next_line().await {
                        l.fetch_add(1, Ordering::Relaxed);
                        let answer = match line.strip_prefix("PING ") {
                            Some(n) => format!("PONG {n}\n"),
                            None => "ERR\n".to_owned(),
                        };
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            lines,
            _runtime: runtime,
        }
    }
}

#[test]
fn the_tcp_task_exchanges_lines_on_kept_connections_at_the_rate() {
    let server = LineServer::start();
    let address = format!("address={}", server.addr);
    let r = run(&[
        "--task",
        "tcp",
        "--param",
        &address,
        "--param",
        r"send=PING 1\n",
        "--param",
        r"until=\n",
        "--param",
        "expect=PONG 1",
        "--tps",
        "200",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 400, "the integral of 200/s over 2 s");
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(server.lines.load(Ordering::Relaxed), 400);
    let connects = report.steps["connect"].completed;
    assert_eq!(
        connects,
        server.connections.load(Ordering::Relaxed),
        "each connect is a step"
    );
    assert!(connects < 400, "connections are kept: {connects}");

    // A reply without the expected text fails as `unexpected_reply`.
    let r = run(&[
        "--task",
        "tcp",
        "--param",
        &address,
        "--param",
        r"send=HELLO\n",
        "--param",
        r"until=\n",
        "--param",
        "expect=PONG",
        "--tps",
        "20",
        "--duration",
        "1s",
    ]);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 20);
    assert_eq!(report.main.errors[0].kind, "unexpected_reply");
    assert!(
        report.main.errors[0].example.contains("ERR"),
        "{:?}",
        report.main.errors
    );

    // Bad options are refused naming the parameter, before any load.
    let r = run(&[
        "--task",
        "tcp",
        "--param",
        "address=nowhere",
        "--tps",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--param address"), "{}", r.stderr);
    let r = run(&[
        "--task",
        "tcp",
        "--param",
        &address,
        "--param",
        "colour=blue",
        "--tps",
        "1",
        "--duration",
        "1s",
    ]);
    assert!(r.stderr.contains("unknown field `colour`"), "{}", r.stderr);
}

fn postgres_url() -> String {
    std::env::var("VAJRA_TEST_POSTGRES")
        .expect("VAJRA_TEST_POSTGRES names the database (.ci/run starts one)")
}

/// Makes table `name` with `rows` rows (id, name) through psql.
fn make_table(url: &str, name: &str, rows: u32) {
    let sql = format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, name text); \
         INSERT INTO {name} SELECT g, 'item ' || g FROM generate_series(1, {rows}) g;"
    );
    let out = std::process::Command::new("psql")
        .args([url, "-qc", &sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs PostgreSQL (VAJRA_TEST_POSTGRES, started by .ci/run)"]
fn the_postgres_task_runs_a_parameterised_query_and_counts_its_rows() {
    let url = postgres_url();
    make_table(&url, "vajra_items", 100);
    let url_param = format!("url={url}");
    let query = |q: &str| format!("query={q}");
    let r = run(&[
        "--task",
        "postgres",
        "--param",
        &url_param,
        "--param",
        &query("SELECT name FROM vajra_items WHERE id <= $1 AND name <> $2"),
        "--param",
        "args=3,none",
        "--param",
        "rows=3",
        "--concurrency",
        "2",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert!(report.main.completed > 100, "{}", report.main.completed);
    assert_eq!(
        report.counters["postgres.rows"],
        3 * report.main.completed,
        "three rows per query, counted"
    );
    assert_eq!(
        report.steps["connect"].completed, 2,
        "a connection per instance"
    );

    // Errors are counted by SQLSTATE, and a wrong row count by its kind.
    let r = run(&[
        "--task",
        "postgres",
        "--param",
        &url_param,
        "--param",
        &query("SELECT 1 FROM vajra_missing"),
        "--tps",
        "10",
        "--duration",
        "1s",
    ]);
    let report = r.report.unwrap();
    assert_eq!(
        report.main.errors[0].kind, "sql_42P01",
        "{:?}",
        report.main.errors
    );
    assert!(report.main.errors[0].example.contains("vajra_missing"));
    let r = run(&[
        "--task",
        "postgres",
        "--param",
        &url_param,
        "--param",
        &query("SELECT id FROM vajra_items WHERE id = $1"),
        "--param",
        "args=not-a-number",
        "--tps",
        "10",
        "--duration",
        "1s",
    ]);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 10, "{:?}", report.main.errors);
    assert!(
        report.main.errors[0]
            .example
            .contains("'not-a-number' is not an integer"),
        "{:?}",
        report.main.errors
    );
    let r = run(&[
        "--task",
        "postgres",
        "--param",
        "url=mysql://nope",
        "--param",
        &query("SELECT 1"),
        "--tps",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--param url"), "{}", r.stderr);
}

fn scenario_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("steps.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_scenario_exchanges_tcp_lines_from_templates() {
    let server = LineServer::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
scenarios:
  - name: ping
    steps:
      - tcp:
          name: ping
          address: {}
          send: "PING ${{vajra.iteration}}\n"
          until: "\n"
          expect: PONG
      - tcp:
          name: again
          address: {}
          send: "PING twice\n"
          read: 11
          expect: "PONG twice\n"
"#,
        server.addr, server.addr
    );
    let r = run(&[
        "--scenario",
        &scenario_file(dir.path(), &text),
        "--tps",
        "50",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 100);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(report.steps["ping"].completed, 100);
    assert_eq!(report.steps["again"].completed, 100);
    assert_eq!(server.lines.load(Ordering::Relaxed), 200);
    assert!(
        server.connections.load(Ordering::Relaxed) < 100,
        "a connection kept per instance and address"
    );

    let bad = text.replace("read: 11", "read: 11\n          until: x");
    let r = run(&[
        "--scenario",
        &scenario_file(dir.path(), &bad),
        "--tps",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("scenarios[0].steps[1].tcp: give one of until and read"),
        "{}",
        r.stderr
    );
    assert_eq!(
        server.lines.load(Ordering::Relaxed),
        200,
        "no load was sent"
    );
}

#[test]
#[ignore = "needs PostgreSQL (VAJRA_TEST_POSTGRES, started by .ci/run)"]
fn a_scenario_queries_postgres_with_each_feeder_record_once() {
    let url = postgres_url();
    make_table(&url, "vajra_catalogue", 200);
    let dir = tempfile::tempdir().unwrap();
    let ids: String = (1..=50).map(|i| format!("{}\n", i * 4)).collect();
    std::fs::write(dir.path().join("ids.csv"), format!("id\n{ids}")).unwrap();
    let text = format!(
        r#"
feeders:
  ids:
    file: ids.csv
    mode: unique
scenarios:
  - name: lookup
    feeder: ids
    steps:
      - postgres:
          name: find
          url: {url}
          query: "SELECT name FROM vajra_catalogue WHERE id = $1 AND name = $2"
          args: ["${{id}}", "item ${{id}}"]
          rows: 1
"#
    );
    let r = run(&[
        "--scenario",
        &scenario_file(dir.path(), &text),
        "--tps",
        "40",
        "--duration",
        "3s",
    ]);
    let report = r.report.expect("a report");
    assert_eq!(
        report.steps["find"].completed, 50,
        "{:?}",
        report.main.errors
    );
    assert_eq!(report.steps["find"].failure, 0, "{:?}", report.main.errors);
    assert_eq!(report.counters["postgres.rows"], 50, "one row per record");
    assert!(
        report
            .abort_reason
            .as_deref()
            .is_some_and(|r| r.contains("feeder 'ids' has no records left")),
        "{:?}",
        report.abort_reason
    );
}

/// A WebSocket server: answers each text message `M` with `news` (an
/// unrelated push) and then `echo: M`; counts upgrades and messages.
struct EchoServer {
    addr: SocketAddr,
    upgrades: Arc<AtomicU64>,
    messages: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl EchoServer {
    fn start() -> Self {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (runtime, listener) = common::server_runtime();
        let addr = listener.local_addr().unwrap();
        let (upgrades, messages) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, m) = (Arc::clone(&upgrades), Arc::clone(&messages));
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (u, m) = (Arc::clone(&u), Arc::clone(&m));
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    u.fetch_add(1, Ordering::Relaxed);
                    while let Some(Ok(message)) = socket.next().await {
                        let Message::Text(text) = message else {
                            continue;
                        };
                        m.fetch_add(1, Ordering::Relaxed);
                        let replies = [
                            Message::text("news"),
                            Message::text(format!("echo: {}", text.as_str())),
                        ];
                        for reply in replies {
                            if socket.send(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            upgrades,
            messages,
            _runtime: runtime,
        }
    }
}

#[test]
fn a_scenario_sends_websocket_messages_built_from_an_earlier_reply() {
    let server = EchoServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The echo server sends "news" before each echo: `expect` passes over
    // it. The second message carries what was extracted from the first
    // reply, and its check fails if that was missing.
    let text = format!(
        r#"
scenarios:
  - name: chat
    steps:
      - websocket:
          name: hello
          url: ws://{addr}/chat
          send: 'hello ${{vajra.iteration}}'
          expect: 'echo: hello'
          check:
            - body_matches: '^echo: hello \d+$'
          extract:
            n: {{regex: 'hello (\d+)'}}
      - think: 5ms
      - websocket:
          name: again
          url: ws://{addr}/chat
          send: 'again ${{n}}'
          expect: 'again ${{n}}'
          check:
            - body_matches: '^echo: again \d+$'
"#,
        addr = server.addr
    );
    let r = run(&[
        "--scenario",
        &scenario_file(dir.path(), &text),
        "--tps",
        "50",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 100);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(report.steps["hello"].completed, 100);
    assert_eq!(report.steps["again"].completed, 100);
    assert_eq!(server.messages.load(Ordering::Relaxed), 200);
    let connects = report.steps["hello connect"].completed;
    assert_eq!(connects, server.upgrades.load(Ordering::Relaxed));
    assert!(connects < 100, "a socket kept per instance: {connects}");

    let upgrades = server.upgrades.load(Ordering::Relaxed);
    for (from, to, needle) in [
        (
            "- body_matches: '^echo: again",
            "- status: 101\n            - body_matches: '^echo: again",
            "steps[2].websocket.check[0]: a message has no status or headers",
        ),
        (
            "url: ws://",
            "url: http://",
            "steps[0].websocket.url: 'http://",
        ),
        (
            "expect: 'echo: hello'",
            "expect: 'echo: hello'\n          no_reply: true",
            "give one of expect and no_reply",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = text.replacen(from, to, 1);
        let r = run(&[
            "--scenario",
            &scenario_file(dir.path(), &bad),
            "--tps",
            "1",
            "--duration",
            "1s",
        ]);
        assert_eq!(r.code, 2, "{to}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{to}: {}", r.stderr);
    }
    assert_eq!(server.upgrades.load(Ordering::Relaxed), upgrades, "no load");
}

#[test]
fn the_websocket_task_waits_for_the_matching_reply_and_reports_connect_apart() {
    let server = EchoServer::start();
    let url = format!("url=ws://{}/echo", server.addr);
    let r = run(&[
        "--task",
        "websocket",
        "--param",
        &url,
        "--param",
        "send=hello",
        "--param",
        "expect=echo: hello",
        "--tps",
        "100",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 200);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(server.messages.load(Ordering::Relaxed), 200);
    assert_eq!(report.steps["message"].completed, 200, "each round trip");
    let connects = report.steps["connect"].completed;
    assert_eq!(connects, server.upgrades.load(Ordering::Relaxed));
    assert!(connects < 200, "sockets are kept: {connects}");

    // Waiting for a reply that never comes is a timeout; the socket is
    // then replaced.
    let r = run(&[
        "--task",
        "websocket",
        "--param",
        &url,
        "--param",
        "send=hi",
        "--param",
        "expect=never",
        "--param",
        "timeout=200ms",
        "--tps",
        "5",
        "--duration",
        "1s",
    ]);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 5, "{:?}", report.main.errors);
    assert_eq!(report.main.errors[0].kind, "timeout");

    let r = run(&[
        "--task",
        "websocket",
        "--param",
        "url=http://x/",
        "--tps",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("must start with ws:// or wss://"),
        "{}",
        r.stderr
    );
}
