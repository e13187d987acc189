//! Three peers in containers (image built FROM scratch by
//! docker/build-image.sh) discover each other through the seed service name;
//! one container is stopped and the others report it dead. Needs Docker and
//! docker-compose, so it is ignored by default; `.ci/run` runs it with
//! `--run-ignored only`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vajra::cluster::{ClusterStatus, Liveness};

const SECRET: &str = "compose test secret of enough length";

struct Compose {
    project: String,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(root.join("docker/docker-compose.yml"))
            .args(args)
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

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-t", "1", "--remove-orphans"]);
    }
}

#[test]
#[ignore = "needs Docker and docker-compose; .ci/run runs it"]
fn three_containers_form_a_cluster_and_see_one_stop() {
    let root = env!("CARGO_MANIFEST_DIR");
    let built = Command::new("bash")
        .arg(format!("{root}/docker/build-image.sh"))
        .arg("vajra-peer:test")
        .status()
        .unwrap();
    assert!(built.success(), "image build failed");
    let compose = Compose {
        project: format!("vjtest{}", std::process::id()),
    };
    let up = compose.command(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

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
