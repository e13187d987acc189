//! Helpers shared by the integration tests: run the real binary, read its
//! JSON report, serve the built-in target.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod pki;

use std::path::PathBuf;
use std::process::{Command, Output};

use vajra::export::Report;
use vajra::target::{Target, TargetBehaviour};

/// What one `vajra-peer` invocation produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Report>,
}

/// The `vajra-peer` binary under test.
pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vajra-peer"));
    // Keep the tests independent of the caller's environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("VAJRA_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

pub fn finish(output: Output, report_path: Option<&PathBuf>) -> Run {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    let report = report_path.filter(|p| p.exists()).map(|p| {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).expect("report parses")
    });
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        report,
    }
}

/// A one-thread runtime for a server a test runs, and a listener on a
/// free loopback port, bound in it.
pub fn server_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    (runtime, listener)
}

/// Runs `vajra-peer run ARGS --output <tmp>.json --quiet`.
pub fn run(args: &[&str]) -> Run {
    run_with_env(args, &[])
}

/// Like [`run`], with extra environment variables.
pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = binary()
        .arg("run")
        .args(args)
        .arg("--quiet")
        .arg("--output")
        .arg(&report)
        .envs(env.iter().copied())
        .output()
        .expect("binary runs");
    finish(output, Some(&report))
}

/// Runs `vajra-peer ARGS` as given (no report).
pub fn raw(args: &[&str]) -> Run {
    finish(binary().args(args).output().expect("binary runs"), None)
}

/// A built-in target served from a runtime owned by the test.
pub struct TestTarget {
    pub target: Target,
    _runtime: tokio::runtime::Runtime,
}

impl TestTarget {
    pub fn start(behaviour: TargetBehaviour) -> Self {
        Self::start_with(None, behaviour)
    }

    /// A target serving HTTPS with `tls`.
    pub fn start_https(
        behaviour: TargetBehaviour,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) -> Self {
        Self::start_with(Some(tls), behaviour)
    }

    fn start_with(
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        behaviour: TargetBehaviour,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let target = runtime
            .block_on(async {
                match tls {
                    None => Target::start(addr, behaviour).await,
                    Some(tls) => Target::start_https(addr, behaviour, tls).await,
                }
            })
            .unwrap();
        Self {
            target,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        self.target.url()
    }
}

/// What every fault test checks of a merged report of a test that planned
/// `planned` arrivals: the series adds up to `main` (merged and each peer's
/// own), the plan's count is the report's, and what was completed, dropped,
/// missed, or left unsent in a lost peer's degraded window accounts for
/// the plan within `tolerance` (the arrivals in flight at a fault). Prints
/// the totals for the closing note.
pub fn assert_accounts(report: &Report, planned: u64, tolerance: f64, what: &str) {
    let series = |r: &Report| r.series.iter().map(|w| w.success + w.failure).sum::<u64>();
    let completed = |r: &Report| r.main.completed + r.warmup.as_ref().map_or(0, |w| w.completed);
    assert_eq!(
        series(report),
        completed(report),
        "{what}: merged series vs main"
    );
    for (peer, r) in &report.peers {
        assert_eq!(
            series(r),
            completed(r),
            "{what}: {peer}'s series vs its main"
        );
    }
    assert_eq!(report.planned, Some(planned), "{what}: planned");
    let main = &report.main;
    let unsent = report.unsent.unwrap_or(0);
    let accounted = main.completed + main.dropped + main.missed + unsent;
    eprintln!(
        "{what}: planned {planned}, completed {}, dropped {}, missed {}, unsent {unsent}, \
         accounted {accounted} ({:+.2} %), series {}",
        main.completed,
        main.dropped,
        main.missed,
        100.0 * (accounted as f64 - planned as f64) / planned as f64,
        series(report)
    );
    assert!(
        (accounted as f64 - planned as f64).abs() <= tolerance * planned as f64,
        "{what}: {accounted} accounted of {planned} planned"
    );
}
