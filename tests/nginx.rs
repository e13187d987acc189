//! The http task against a real, stock nginx (Debian's `nginx-light`), over
//! HTTP/1.1 and HTTP/2 (h2c).
//!
//! Ignored by a plain test run (it needs the nginx binary); CI installs
//! nginx and runs it with `--run-ignored only`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An nginx serving `ok` on a loopback port, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with one worker, `events` as its events block, and
    /// `server` added to its server block (its `listen` options first).
    fn start(events: &str, (listen, server): (&str, &str)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = common::cluster::free_port();
        let conf = dir.path().join("nginx.conf");
        let root = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\nuser root;\npid {root}/nginx.pid;\n\
                 error_log {root}/error.log warn;\nevents {{ {events} }}\n\
                 http {{ access_log off;\n  server {{ listen 127.0.0.1:{port} {listen};\n\
                 {server}\n  location / {{ return 200 \"ok\\n\"; }} }} }}\n"
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (apt-get install nginx-light)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its worker, which
        // would otherwise outlive it.
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// nginx with 512 worker connections and 900 keep-alive clients closes idle
/// connections to make room for new ones. A request that then finds its
/// connection closed is no failure of the target: the client reconnects
/// (counted as an event) and the request succeeds.
#[test]
#[ignore = "needs nginx (CI installs it)"]
fn a_server_closing_idle_keep_alive_connections_causes_no_false_errors() {
    let nginx = Nginx::start("worker_connections 512;", ("", ""));
    let r = common::run(&[
        "--url",
        &nginx.url(),
        "--tps",
        "1000",
        "--duration",
        "6s",
        "--preallocate",
        "900",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = r.report.unwrap();
    assert_eq!(
        report.main.failure, 0,
        "false errors: {:?}",
        report.main.errors
    );
    assert_eq!(report.main.completed, 6_000);
    let reconnects = report.counters.get("http.reconnects").copied().unwrap_or(0);
    assert!(
        reconnects > 0,
        "nginx closed connections, so some were re-opened: {:?}",
        report.counters
    );
}

/// nginx speaking h2c ends each connection with a GOAWAY after
/// `keepalive_requests`: the task replaces it (counted) without one false
/// error, 4 instances multiplexed on each connection.
#[test]
#[ignore = "needs nginx (CI installs it)"]
fn http2_against_nginx_replaces_connections_it_ends_without_errors() {
    let nginx = Nginx::start("", ("http2", "keepalive_requests 100;"));
    let r = common::run(&[
        "--url",
        &nginx.url(),
        "--http2",
        "--h2-streams",
        "4",
        "--tps",
        "2000",
        "--duration",
        "3s",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 0, "{:?}", report.main.errors);
    assert_eq!(report.main.completed, 6_000);
    // A connection serves at most 100 requests, so 6 000 took at least 60
    // connections: the first ones (a connection per 4 instances) and the
    // replacements, each of which is counted. (A loaded machine runs more
    // instances, so more first connections and fewer replacements.)
    let reconnects = report.counters.get("http.reconnects").copied().unwrap_or(0);
    let first = (report.instances as u64).div_ceil(4);
    assert!(
        reconnects + first >= 6_000 / 100,
        "every 100 requests a connection ends: {reconnects} replacements and {first} first \
         connections for {} instances",
        report.instances
    );
}
