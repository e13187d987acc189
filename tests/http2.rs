//! The `http` task over HTTP/2 (`--http2`), against hyper's HTTP/2 server
//! run here: h2c with prior knowledge, and TLS with ALPN `h2`. The server
//! counts connections, requests and the most streams open at once on one
//! connection, and can end each connection with a GOAWAY after a number of
//! requests, as nginx does after `keepalive_requests`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::pki::pki;
use common::run;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// What the server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    requests: AtomicU64,
    /// Streams open now on the busiest connection, and the most ever.
    most_streams: AtomicU64,
    /// Requests that did not say they were HTTP/2.
    not_http2: AtomicU64,
}

/// How the server behaves.
#[derive(Clone, Default)]
struct Behaviour {
    /// Each answer waits this long (so streams overlap).
    delay: Duration,
    /// After this many requests a connection is ended with a GOAWAY.
    goaway_after: Option<u64>,
    /// Serve TLS with this configuration (its ALPN set by the caller).
    tls: Option<Arc<rustls::ServerConfig>>,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(behaviour: Behaviour) -> Self {
        let (runtime, listener) = common::server_runtime();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = Arc::clone(&seen);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream, behaviour.clone(), Arc::clone(&shared)));
            }
        });
        Self {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/item", self.addr.port())
    }

    fn count(&self, which: impl Fn(&Seen) -> &AtomicU64) -> u64 {
        which(&self.seen).load(Ordering::Relaxed)
    }
}

/// Serves one connection (over TLS if the behaviour says so).
async fn serve(stream: TcpStream, behaviour: Behaviour, seen: Arc<Seen>) {
    match behaviour.tls.clone() {
        None => serve_http2(TokioIo::new(stream), behaviour, seen).await,
        Some(config) => {
            let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
                return;
            };
            serve_http2(TokioIo::new(tls), behaviour, seen).await
        }
    }
}

async fn serve_http2<T>(io: T, behaviour: Behaviour, seen: Arc<Seen>)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let on_this = Arc::new(AtomicU64::new(0));
    let open_here = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(tokio::sync::Notify::new());
    let service = {
        let (seen, on_this, ended, delay) = (
            Arc::clone(&seen),
            Arc::clone(&on_this),
            Arc::clone(&ended),
            behaviour.delay,
        );
        let goaway_after = behaviour.goaway_after;
        let open_here = Arc::clone(&open_here);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (seen, on_this, ended, open_here) = (
                Arc::clone(&seen),
                Arc::clone(&on_this),
                Arc::clone(&ended),
                Arc::clone(&open_here),
            );
            async move {
                seen.requests.fetch_add(1, Ordering::Relaxed);
                if request.version() != hyper::Version::HTTP_2 {
                    seen.not_http2.fetch_add(1, Ordering::Relaxed);
                }
                let open = open_here.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_streams.fetch_max(open, Ordering::SeqCst);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                open_here.fetch_sub(1, Ordering::SeqCst);
                let answered = on_this.fetch_add(1, Ordering::SeqCst) + 1;
                if goaway_after.is_some_and(|n| answered == n) {
                    ended.notify_one();
                }
                Ok::<_, Infallible>(answer(&request))
            }
        })
    };
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = ended.notified() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// The answer to `request`: `/login` gives a token (in JSON) and a session
/// cookie; `/private` wants that token and says which cookie came; any
/// other path is `ok`.
fn answer(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned()
    };
    match request.uri().path() {
        "/login" => Response::builder()
            .header("set-cookie", "sid=s1; Path=/")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"token": "t-7"}"#)))
            .unwrap(),
        "/private" => Response::builder()
            .status(if header("authorization") == "Bearer t-7" {
                200
            } else {
                401
            })
            .header("x-seen-cookie", header("cookie"))
            .body(Full::new(Bytes::from_static(b"secret\n")))
            .unwrap(),
        _ => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
    }
}

fn load(url: &str, extra: &[&str]) -> common::Run {
    let mut args = vec!["--url", url, "--http2", "--threads", "1"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn h2c_shares_each_connection_among_h2_streams_instances() {
    let server = Server::start(Behaviour {
        delay: Duration::from_millis(20),
        ..Behaviour::default()
    });
    let r = load(
        &server.url("http"),
        &[
            "--concurrency",
            "8",
            "--h2-streams",
            "4",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert!(report.main.completed > 100, "{}", report.main.completed);
    assert_eq!(
        server.count(|s| &s.connections),
        2,
        "8 instances, 4 a connection"
    );
    assert_eq!(server.count(|s| &s.requests), report.main.completed);
    assert_eq!(server.count(|s| &s.not_http2), 0);
    assert_eq!(
        server.count(|s| &s.most_streams),
        4,
        "the instances of a connection have their requests open at once"
    );
}

#[test]
fn the_open_model_over_h2c_keeps_its_rate_with_a_connection_per_instance() {
    let server = Server::start(Behaviour::default());
    let r = load(&server.url("http"), &["--tps", "400", "--duration", "2s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed + report.main.dropped, 800);
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(server.count(|s| &s.requests), report.main.completed);
    assert_eq!(server.count(|s| &s.most_streams), 1);
}

/// A scenario whose requests speak HTTP/2: a token extracted from the
/// first response authorises the second, the session cookie goes back,
/// over h2c and over TLS with ALPN `h2`, one connection per instance.
#[test]
fn a_scenario_logs_in_and_uses_the_token_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = pki(dir.path());
    let mut h2 = (*tls).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let plain = Server::start(Behaviour::default());
    let secure = Server::start(Behaviour {
        tls: Some(Arc::new(h2)),
        ..Behaviour::default()
    });
    for (server, scheme) in [(&plain, "http"), (&secure, "https")] {
        let origin = format!("{scheme}://127.0.0.1:{}", server.addr.port());
        let text = format!(
            r#"
defaults:
  http2: true
scenarios:
  - name: shop
    steps:
      - request:
          name: login
          method: POST
          url: {origin}/login
          body: '{{"user": "u${{vajra.iteration}}"}}'
          extract:
            token: {{json: /token}}
      - request:
          name: private
          url: {origin}/private
          headers:
            authorization: "Bearer ${{token}}"
          check:
            - status: 200
            - header: x-seen-cookie
              equals: sid=s1
"#
        );
        let file = dir.path().join("h2.yaml");
        std::fs::write(&file, &text).unwrap();
        let file = file.to_str().unwrap();
        let ca = ca.to_str().unwrap();
        let mut args = vec!["--scenario", file, "--tps", "100", "--duration", "2s"];
        if scheme == "https" {
            args.extend(["--https-ca", ca]);
        }
        let r = run(&args);
        assert_eq!(r.code, 0, "{scheme}: {}", r.stderr);
        let report = r.report.unwrap();
        assert_eq!(report.main.completed, 200, "{scheme}");
        assert_eq!(report.main.failure, 0, "{scheme}: {:?}", report.main.errors);
        assert_eq!(report.steps["private"].completed, 200);
        assert_eq!(server.count(|s| &s.requests), 400, "{scheme}");
        assert_eq!(server.count(|s| &s.not_http2), 0, "{scheme}");
        assert!(
            server.count(|s| &s.connections) <= report.instances as u64,
            "{scheme}: a connection per instance and origin"
        );
    }

    // A header HTTP/2 forbids is refused before any load.
    let bad = format!(
        "defaults:\n  http2: true\nscenarios:\n  - name: s\n    steps:\n      - request:\n          \
         url: http://127.0.0.1:{}/\n          headers: {{Connection: close}}\n",
        plain.addr.port()
    );
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, bad).unwrap();
    let r = run(&[
        "--scenario",
        file.to_str().unwrap(),
        "--tps",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("steps[0].request.headers.Connection: 'Connection' is not allowed in HTTP/2"),
        "{}",
        r.stderr
    );
}

/// Whatever the method: a request that crosses the GOAWAY is handed back
/// unsent or refused, and sent again, never a failure.
#[test]
fn connections_ended_by_goaway_are_replaced_without_errors() {
    for method in ["GET", "POST"] {
        goaway_replaced_without_errors(method);
    }
}

fn goaway_replaced_without_errors(method: &str) {
    let server = Server::start(Behaviour {
        goaway_after: Some(50),
        ..Behaviour::default()
    });
    let r = load(
        &server.url("http"),
        &[
            "--method",
            method,
            "--concurrency",
            "6",
            "--h2-streams",
            "3",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    // Enough requests that several connections went away (a loaded
    // machine sends fewer in the second; what matters is the GOAWAYs).
    assert!(report.main.completed >= 300, "{}", report.main.completed);
    // A connection answers its 50 and the streams already open when its
    // GOAWAY goes out (at most 3: its instances).
    let connections = server.count(|s| &s.connections);
    assert!(
        connections >= report.main.completed.div_ceil(53),
        "{connections} connections for {} requests",
        report.main.completed
    );
    let reconnects = report.counters.get("http.reconnects").copied().unwrap_or(0);
    assert_eq!(reconnects, connections - 2, "each replacement is counted");
}

#[test]
fn https_negotiates_h2_by_alpn_and_refuses_a_server_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = pki(dir.path());
    let mut h2 = (*tls).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let server = Server::start(Behaviour {
        tls: Some(Arc::new(h2)),
        ..Behaviour::default()
    });
    let ca = ca.to_str().unwrap();
    let args = ["--https-ca", ca, "--tps", "200", "--duration", "1s"];
    let r = load(&server.url("https"), &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(server.count(|s| &s.requests), report.main.completed);
    assert_eq!(server.count(|s| &s.not_http2), 0);

    let mut http1 = (*tls).clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = Server::start(Behaviour {
        tls: Some(Arc::new(http1)),
        ..Behaviour::default()
    });
    let refused = load(&server.url("https"), &args);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("ALPN"), "{}", refused.stderr);
    assert_eq!(server.count(|s| &s.requests), 0);
}

#[test]
fn http2_settings_out_of_place_are_named() {
    for (args, needle) in [
        (
            &["--url", "http://127.0.0.1:9/", "--h2-streams", "4"][..],
            "--h2-streams needs --http2",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:9/",
                "--http2",
                "--h2-streams",
                "0",
            ][..],
            "at least 1",
        ),
        (
            &[
                "--url",
                "http://127.0.0.1:9/",
                "--http2",
                "-H",
                "Connection: close",
            ][..],
            "not allowed in HTTP/2",
        ),
    ] {
        let mut full = args.to_vec();
        full.extend_from_slice(&["--tps", "1", "--duration", "1s"]);
        let r = run(&full);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}
