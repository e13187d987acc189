//! mDNS discovery across network namespaces this test creates (a bridge in
//! a hub namespace, one namespace per peer, addresses in the 198.18.0.0/15
//! benchmarking range). Needs root and iproute2, so it is ignored by
//! default; `.ci/run` runs it with `--run-ignored only`.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vajra::cluster::ClusterStatus;

struct Namespaces {
    prefix: String,
    count: usize,
    peers: Vec<Child>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 installed");
    assert!(status.success(), "ip {args:?} failed");
}

impl Namespaces {
    /// A hub namespace with a bridge and `count` peer namespaces on it.
    fn new(count: usize) -> Self {
        let prefix = format!("vj{}", std::process::id() % 100_000);
        let hub = format!("{prefix}h");
        ip(&["netns", "add", &hub]);
        let this = Self {
            prefix,
            count,
            peers: Vec::new(),
        };
        ip(&[
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 1..=count {
            let ns = this.ns(i);
            let veth = format!("{}v{i}", this.prefix);
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &veth, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("198.18.0.{i}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        this
    }

    fn ns(&self, i: usize) -> String {
        format!("{}p{i}", self.prefix)
    }

    fn spawn(&mut self, i: usize, args: &[&str]) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(i),
                env!("CARGO_BIN_EXE_vajra-peer"),
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.peers.push(child);
    }

    fn status(&self, i: usize, cluster: &str, secret: &str) -> Option<ClusterStatus> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(i),
                env!("CARGO_BIN_EXE_vajra-peer"),
                "status",
                "--json",
            ])
            .args([
                "--peer",
                &format!("198.18.0.{i}:7700"),
                "--cluster",
                cluster,
                "--cluster-secret-file",
                secret,
            ])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for child in &mut self.peers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 1..=self.count {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{}h", self.prefix)])
            .status();
    }
}

#[test]
#[ignore = "needs root and iproute2; .ci/run runs it"]
fn peers_find_each_other_by_mdns_within_their_cluster_only() {
    let mut secret = tempfile::NamedTempFile::new().unwrap();
    writeln!(secret, "mdns test secret, long enough").unwrap();
    let secret = secret.path().to_str().unwrap().to_owned();
    let mut net = Namespaces::new(4);
    for i in 1..=3 {
        let listen = format!("198.18.0.{i}:7700");
        let name = format!("m{i}");
        net.spawn(
            i,
            &[
                "join",
                "--mdns",
                "--listen",
                &listen,
                "--name",
                &name,
                "--cluster-secret-file",
                &secret,
            ],
        );
    }
    // Same secret, other cluster: announces itself but must stay apart.
    net.spawn(
        4,
        &[
            "join",
            "--mdns",
            "--listen",
            "198.18.0.4:7700",
            "--name",
            "other",
            "--cluster",
            "other",
            "--cluster-secret-file",
            &secret,
        ],
    );

    let start = Instant::now();
    let mut converged = None;
    while start.elapsed() < Duration::from_secs(10) {
        let views: Vec<_> = (1..=3).map(|i| net.status(i, "vajra", &secret)).collect();
        if views.iter().all(|v| {
            v.as_ref()
                .is_some_and(|s| s.live_ids() == ["m1", "m2", "m3"])
        }) {
            converged = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = converged.expect("three peers did not find each other by mDNS within 10 s");
    eprintln!("mDNS membership of 3 converged in {converged:?}");
    let other = net
        .status(4, "other", &secret)
        .expect("the other cluster's peer answers");
    assert_eq!(other.live_ids(), ["other"], "clusters stay apart");
}
