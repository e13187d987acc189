//! Three peers in containers (image built FROM scratch by
//! deploy/docker/build-image.sh) discover each other through the seed service name;
//! one container is stopped and the others report it dead; one is cut off
//! from the network mid-test and the cluster neither doubles nor loses its
//! load. Needs root, Docker, docker-compose and iptables, so it is ignored
//! by default; `.ci/run` runs it with `--run-ignored only`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vajra::cluster::{ClusterStatus, Liveness};
use vajra::export::Report;

const SECRET: &str = "compose test secret of enough length";

struct Compose {
    project: String,
    /// The compose file, under deploy/docker/.
    file: &'static str,
    /// Extra variables its interpolation reads.
    env: Vec<(&'static str, String)>,
    /// Profiles enabled (`orchestrator`).
    profiles: Vec<&'static str>,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(root.join("deploy/docker").join(self.file))
            .args(self.profiles.iter().flat_map(|p| ["--profile", p]))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("VAJRA_CLUSTER_SECRET", SECRET)
            .env("VAJRA_IMAGE", "vajra-peer:test")
            .output()
            .expect("docker-compose installed")
    }

    fn status(&self, service: &str) -> Option<ClusterStatus> {
        let out = self.command(&["exec", "-T", service, "vajra-peer", "status", "--json"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait(
        &self,
        services: &[&str],
        limit: Duration,
        check: impl Fn(&ClusterStatus) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if services
                .iter()
                .all(|s| self.status(s).is_some_and(|st| check(&st)))
            {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Compose {
    /// Builds the image and starts the three peers.
    fn up(name: &str) -> Self {
        build("build-image.sh", "vajra-peer:test");
        let compose = Compose {
            project: format!("vj{name}{}", std::process::id()),
            file: "docker-compose.yml",
            env: Vec::new(),
            profiles: Vec::new(),
        };
        compose.run(&["up", "-d"]);
        compose
    }

    /// Builds the images and starts the scalable cluster with `peers`
    /// peers, Prometheus (on loopback port `prometheus`) and the
    /// orchestrator (its API on loopback port `ui`, with the API tokens in
    /// file `tokens`).
    fn scaled(name: &str, peers: usize, prometheus: u16, ui: u16, tokens: &Path) -> Self {
        build("build-image.sh", "vajra-peer:test");
        build("build-prometheus-image.sh", "vajra-prometheus:test");
        let compose = Compose {
            project: format!("vj{name}{}", std::process::id()),
            file: "docker-compose.scale.yml",
            env: vec![
                ("VAJRA_PROMETHEUS_IMAGE", "vajra-prometheus:test".into()),
                ("VAJRA_PROMETHEUS_PORT", prometheus.to_string()),
                ("VAJRA_UI_PORT", ui.to_string()),
                ("VAJRA_API_TOKENS", tokens.display().to_string()),
            ],
            profiles: vec!["orchestrator"],
        };
        compose.scale(peers);
        compose
    }

    /// `docker-compose ARGS`, which must succeed.
    fn run(&self, args: &[&str]) {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Scales the peers to `peers`, leaving the running ones be (the
    /// removed ones are stopped with SIGTERM).
    fn scale(&self, peers: usize) {
        let scale = format!("peer={peers}");
        self.run(&["up", "-d", "--no-recreate", "--scale", &scale]);
    }

    /// The addresses of every running container of `service`.
    fn addresses(&self, service: &str) -> Vec<String> {
        let ids = self.command(&["ps", "-q", service]);
        String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(|id| {
                let out = Command::new("docker")
                    .args(["inspect", "-f"])
                    .arg("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
                    .arg(id)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            })
            .collect()
    }

    /// `docker inspect -f FORMAT` of a service's container.
    fn inspect(&self, service: &str, format: &str) -> String {
        let id = self.command(&["ps", "-q", service]);
        let id = String::from_utf8_lossy(&id.stdout).trim().to_owned();
        let out = Command::new("docker")
            .args(["inspect", "-f", format, &id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Drops (or, with `heal`, lets through again) every packet in and out
    /// of a service's container, from inside its network namespace.
    fn cut(&self, service: &str, heal: bool) {
        let pid = self.inspect(service, "{{.State.Pid}}");
        let rules: &[&[&str]] = if heal {
            &[&["-F"]]
        } else {
            &[
                &["-A", "INPUT", "-j", "DROP"],
                &["-A", "OUTPUT", "-j", "DROP"],
            ]
        };
        for rule in rules {
            let done = Command::new("nsenter")
                .args(["-t", &pid, "-n", "iptables"])
                .args(*rule)
                .status()
                .unwrap();
            assert!(done.success(), "iptables {rule:?} in {service}");
        }
    }
}

/// Runs `deploy/docker/SCRIPT TAG`, which must succeed.
fn build(script: &str, tag: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let built = Command::new("bash")
        .arg(format!("{root}/deploy/docker/{script}"))
        .arg(tag)
        .status()
        .unwrap();
    assert!(built.success(), "{script} failed");
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-t", "1", "--remove-orphans"]);
    }
}

#[test]
#[ignore = "needs Docker and docker-compose; .ci/run runs it"]
fn three_containers_form_a_cluster_and_see_one_stop() {
    let compose = Compose::up("test");

    let all = ["peer1", "peer2", "peer3"];
    let formed = compose
        .wait(&all, Duration::from_secs(30), |s| s.live_ids() == all)
        .expect("the three containers did not form one cluster");
    eprintln!("compose cluster formed in {formed:?}");

    let stop = compose.command(&["stop", "-t", "1", "peer3"]);
    assert!(stop.status.success());
    let detected = compose
        .wait(&["peer1", "peer2"], Duration::from_secs(10), |s| {
            s.members
                .iter()
                .any(|m| m.id == "peer3" && m.state == Liveness::Dead)
        })
        .expect("the stopped container was not reported dead");
    eprintln!("stopped container reported dead in {detected:?}");
}

#[test]
#[ignore = "needs root, Docker, docker-compose and iptables; .ci/run runs it"]
fn a_peer_cut_off_mid_test_neither_doubles_nor_loses_the_load() {
    let compose = Compose::up("part");
    let all = ["peer1", "peer2", "peer3"];
    compose
        .wait(&all, Duration::from_secs(30), |s| {
            let voters = s
                .members
                .iter()
                .filter(|m| matches!(m.info.raft_role.as_str(), "voter" | "leader"))
                .count();
            s.live_ids() == all && s.leader.is_some() && voters == 3
        })
        .expect("three containers with a Raft leader and 3 voters");
    let peer1 = compose.inspect(
        "peer1",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.json");
    let client = Command::new(env!("CARGO_BIN_EXE_vajra-peer"))
        .args(["start", "--peer", &format!("{peer1}:7700")])
        .args([
            "--task",
            "noop",
            "--tps",
            "3000",
            "--duration",
            "20s",
            "--wait",
        ])
        .arg("--output")
        .arg(&path)
        .env("VAJRA_CLUSTER_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The test starts 1.5 s after the command: cut peer3 off 8 s in, for 3 s.
    std::thread::sleep(Duration::from_millis(9_500));
    compose.cut("peer3", false);
    std::thread::sleep(Duration::from_secs(3));
    compose.cut("peer3", true);
    let out = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let total = report.main.completed;
    eprintln!(
        "peer3 cut off for 3 s: cluster total {total} of 60000 ({:.2} %), events {:?}",
        100.0 * total as f64 / 60_000.0,
        report.events
    );
    // peer3 holds its share once it sees itself without a quorum, before
    // the others take it over; back on the network it sends only what it
    // owed from before the re-split (docs/cluster.md, "Partitions").
    assert!(total <= 60_600, "load was run twice: {total}");
    assert!(total >= 57_000, "load was lost: {total}");
    common::assert_accounts(&report, 60_000, 0.02, "peer3 cut off 3 s");
    assert!(
        report.events.iter().any(|e| e.contains("without peer3")),
        "the summary shows the re-split: {:?}",
        report.events
    );
    assert!(stdout.contains("without peer3"), "and prints it");
}

/// `vajra-peer status --json` asked of the peer at `ip`, from the host.
fn status_at(ip: &str) -> Option<ClusterStatus> {
    let out = Command::new(env!("CARGO_BIN_EXE_vajra-peer"))
        .args(["status", "--json", "--peer", &format!("{ip}:7700")])
        .env("VAJRA_CLUSTER_SECRET", SECRET)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits up to `limit` for `check` on `ip`'s status.
fn wait_at(ip: &str, limit: Duration, check: impl Fn(&ClusterStatus) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if status_at(ip).is_some_and(|s| check(&s)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// How many `vajra` targets the compose file's Prometheus scrapes up.
fn targets_up(prometheus: u16) -> Option<u64> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], prometheus));
    let query = "/api/v1/query?query=count(up%7Bjob%3D%22vajra%22%7D%3D%3D1)";
    let (code, body) = common::http::get(addr, query).ok()?;
    let value: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
    value["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// Waits up to `limit` for Prometheus to scrape `wanted` targets up; the
/// last count it gave.
fn targets_up_within(prometheus: u16, wanted: u64, limit: Duration) -> Option<u64> {
    let deadline = Instant::now() + limit;
    let mut up = None;
    while Instant::now() < deadline && up != Some(wanted) {
        std::thread::sleep(Duration::from_millis(500));
        up = targets_up(prometheus);
    }
    up
}

/// How many peers `events` name as having done `what` (" joined", " left"):
/// the names before it in each part of an event, "a, b joined; c left".
fn named_in(events: &[String], what: &str) -> usize {
    events
        .iter()
        .filter_map(|e| e.split(": ").nth(1))
        .flat_map(|change| change.split("; "))
        .filter_map(|part| part.split_once(what).map(|(names, _)| names))
        .map(|names| names.split(", ").count())
        .sum()
}

/// The seconds of `series` around `at_secs` and what they lack of `rate`,
/// as milliseconds of the rate: a hand-over's gap.
fn gap_ms(seconds: &[u64], at_secs: f64, rate: u64) -> f64 {
    let at = at_secs as usize;
    let around = &seconds[at.saturating_sub(1)..(at + 2).min(seconds.len())];
    let lacking: u64 = around.iter().map(|n| rate.saturating_sub(*n)).sum();
    1_000.0 * lacking as f64 / rate as f64
}

/// The orchestrator's recorded runs, asked of its API on loopback port
/// `ui` with `token`.
fn recorded_runs(ui: u16, token: &str) -> Vec<serde_json::Value> {
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], ui));
    match common::http::request(api, "GET", "/api/v1/history/runs", Some(token), None) {
        Ok(answer) if answer.status == 200 => answer.json()["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The orchestrator's report of run `id`.
fn recorded_report(ui: u16, token: &str, id: &str) -> Report {
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], ui));
    let path = format!("/api/v1/history/runs/{id}/report.json");
    let answer = common::http::request(api, "GET", &path, Some(token), None).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

#[test]
#[ignore = "needs Docker and docker-compose; .ci/run runs it"]
fn a_compose_cluster_scaled_up_and_down_mid_test_keeps_its_rate() {
    let prometheus = common::cluster::free_port();
    let ui = common::cluster::free_port();
    let token = "compose-test-operator-token";
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), format!("operator {token}\n")).unwrap();
    let compose = Compose::scaled("scale", 3, prometheus, ui, tokens.path());
    let peers = compose.addresses("peer");
    assert_eq!(peers.len(), 3, "{peers:?}");
    // Every peer's seed is the service name, which DNS resolves to all;
    // the orchestrator joins by the same name and takes no share.
    let formed = wait_at(&peers[0], Duration::from_secs(40), |s| {
        let voters = s
            .members
            .iter()
            .filter(|m| matches!(m.info.raft_role.as_str(), "voter" | "leader"))
            .count();
        let live = |orchestrator: bool| {
            s.members
                .iter()
                .filter(|m| m.state != Liveness::Dead && m.info.role.takes_load() != orchestrator)
                .count()
        };
        live(false) == 3 && live(true) == 1 && s.leader.is_some() && voters == 3
    });
    assert!(formed, "one cluster of three: {:?}", status_at(&peers[0]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scaled.json");
    let client = Command::new(env!("CARGO_BIN_EXE_vajra-peer"))
        .args(["start", "--peer", &format!("{}:7700", peers[0])])
        .args(["--task", "noop", "--tps", "3000", "--duration", "40s"])
        .args(["--wait", "--output"])
        .arg(&path)
        .env("VAJRA_CLUSTER_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let elapsed_at_least = |secs: f64| {
        wait_at(&peers[0], Duration::from_secs(60), |s| {
            s.test
                .as_ref()
                .is_some_and(|t| t.elapsed_secs.is_some_and(|e| e >= secs))
        })
    };
    assert!(elapsed_at_least(10.0), "the test runs");
    compose.scale(5);
    eprintln!(
        "scaled to 5 at {:?}",
        status_at(&peers[0]).and_then(|s| s.test)
    );
    // Prometheus finds the newcomers by the same name (it looks again
    // every 5 s).
    let up = targets_up_within(prometheus, 5, Duration::from_secs(15));
    assert_eq!(up, Some(5), "Prometheus scrapes all five peers");
    assert!(elapsed_at_least(25.0), "the test runs on");
    let scaling_down = Instant::now();
    compose.scale(2);
    let took = scaling_down.elapsed();
    eprintln!("scaled to 2 in {took:?} (three peers handed their shares over and exited)");
    assert!(
        took < Duration::from_secs(20),
        "the leavers went by themselves, before compose's 30 s: {took:?}"
    );
    let out = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let total = report.main.completed;
    let seconds: Vec<u64> = report
        .series
        .iter()
        .map(|w| w.success + w.failure)
        .collect();
    eprintln!(
        "3 -> 5 -> 2 peers at 3000/s for 40 s: total {total} of 120000 ({:+.3} %); events {:#?}; per second {seconds:?}",
        100.0 * (total as f64 - 120_000.0) / 120_000.0,
        report.events
    );
    common::assert_accounts(&report, 120_000, 0.01, "scaled 3 -> 5 -> 2");
    assert_eq!(report.unsent.unwrap_or(0), 0, "nothing went unsent");
    let joins = named_in(&report.events, " joined");
    let leaves = named_in(&report.events, " left");
    assert_eq!(
        (joins, leaves),
        (2, 3),
        "each join and leave: {:?}",
        report.events
    );
    assert!(
        !report
            .events
            .iter()
            .any(|e| e.contains("lost") || e.contains("degraded") || e.contains("without")),
        "a scale-down loses no peer: {:?}",
        report.events
    );
    for event in &report.events {
        let at: f64 = event
            .split(" from ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        eprintln!("{event}: gap {:.0} ms", gap_ms(&seconds, at, 3_000));
    }
    let inner = &seconds[1..seconds.len().saturating_sub(1)];
    assert!(
        inner.iter().all(|n| (2_550..=3_450).contains(n)),
        "a second off the rate (more than a hand-over's): {seconds:?}"
    );
    // And it lets the removed ones go.
    let up = targets_up_within(prometheus, 2, Duration::from_secs(15));
    assert_eq!(up, Some(2), "Prometheus scrapes the two peers left");
    // The orchestrator recorded the run after the three leavers had gone,
    // whole: they handed it their reports before they went.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut runs = recorded_runs(ui, token);
    while runs.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        runs = recorded_runs(ui, token);
    }
    assert_eq!(runs.len(), 1, "recorded once: {runs:?}");
    assert_eq!(runs[0]["completed"].as_u64(), Some(total), "{}", runs[0]);
    let recorded = recorded_report(ui, token, runs[0]["id"].as_str().unwrap());
    assert_eq!(recorded.peers.len(), 5, "each peer's own report");
    assert!(
        recorded
            .peers
            .values()
            .all(|r| format!("{:?}", r.outcome) == "Completed"),
        "every leaver ran its share to its hand-over"
    );
    assert_eq!(
        (
            named_in(&recorded.events, " joined"),
            named_in(&recorded.events, " left")
        ),
        (2, 3),
        "{:?}",
        recorded.events
    );
    assert!(
        !recorded.events.iter().any(|e| e.contains("lost")),
        "{:?}",
        recorded.events
    );
    eprintln!(
        "the orchestrator recorded {} of {total} with {} peers' reports",
        runs[0]["completed"],
        recorded.peers.len()
    );
}
