//! Membership across real `vajra-peer join` processes on loopback. Every
//! peer is killed when its test ends; every wait is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::binary;
use common::cluster::{Cluster, free_port, secret_file, status_with};
use vajra::cluster::{ClusterStatus, Liveness};

fn state_of(status: &ClusterStatus, id: &str) -> Option<Liveness> {
    status
        .members
        .iter()
        .rev()
        .find(|m| m.id == id)
        .map(|m| m.state)
}

#[test]
fn five_peers_converge_detect_death_freeze_and_restart() {
    let mut cluster = Cluster::new();
    let names = ["p1", "p2", "p3", "p4", "p5"];
    let first = free_port();
    cluster.start("p1", first, None);
    for name in &names[1..] {
        cluster.start(name, free_port(), Some(first));
    }
    let converged = cluster
        .wait_until(&names, Duration::from_secs(3), |s| s.live_ids() == names)
        .expect("5 peers did not converge within 3 s");
    eprintln!("membership of 5 converged in {converged:?}");
    let elected = cluster
        .wait_until(&names, Duration::from_secs(5), |s| {
            let voters = s
                .members
                .iter()
                .filter(|m| matches!(m.info.raft_role.as_str(), "voter" | "leader"))
                .count();
            s.leader.is_some() && voters == 5
        })
        .expect("no Raft leader with 5 voters");
    eprintln!("Raft bootstrapped with one leader and 5 voters in {elected:?}");
    let leaders: Vec<_> = names
        .iter()
        .filter_map(|n| cluster.status(n).unwrap().leader)
        .collect();
    assert!(
        leaders.windows(2).all(|w| w[0] == w[1]),
        "every node names the same leader: {leaders:?}"
    );

    let p5_generation = cluster
        .status("p5")
        .unwrap()
        .members
        .iter()
        .find(|m| m.id == "p5")
        .unwrap()
        .generation;
    cluster.kill("p5");
    let survivors = ["p1", "p2", "p3", "p4"];
    let detected = cluster
        .wait_until(&survivors, Duration::from_millis(2_500), |s| {
            state_of(s, "p5") == Some(Liveness::Dead)
        })
        .expect("kill -9 not detected within 2.5 s");
    eprintln!("kill -9 detected by all survivors in {detected:?}");
    let resized = cluster
        .wait_until(&survivors, Duration::from_secs(5), |s| {
            let voters = s
                .members
                .iter()
                .filter(|m| {
                    m.state == Liveness::Alive
                        && matches!(m.info.raft_role.as_str(), "voter" | "leader")
                })
                .count();
            s.leader.is_some() && voters == 3
        })
        .expect("Raft voters not resized to 3 of 4 live peers");
    eprintln!("Raft voters resized to 3 in {resized:?}");

    cluster.signal("p4", libc::SIGSTOP);
    let watchers = ["p1", "p2", "p3"];
    let suspected = cluster
        .wait_until(&watchers, Duration::from_secs(3), |s| {
            state_of(s, "p4") != Some(Liveness::Alive)
        })
        .expect("a frozen peer was never suspected");
    eprintln!("SIGSTOP noticed in {suspected:?}");
    cluster.signal("p4", libc::SIGCONT);
    let recovered = cluster
        .wait_until(&survivors, Duration::from_secs(5), |s| {
            state_of(s, "p4") == Some(Liveness::Alive)
        })
        .expect("a resumed peer did not recover");
    eprintln!("SIGCONT recovered in {recovered:?}");

    let port = free_port();
    cluster.start("p5", port, Some(first));
    let rejoined = cluster
        .wait_until(&names, Duration::from_secs(5), |s| {
            s.members
                .iter()
                .any(|m| m.id == "p5" && m.generation > p5_generation && m.state == Liveness::Alive)
        })
        .expect("a restarted peer did not rejoin with a higher generation");
    eprintln!("restart rejoined in {rejoined:?}");
    let view = cluster.status("p1").unwrap();
    let old = view
        .members
        .iter()
        .find(|m| m.id == "p5" && m.generation == p5_generation);
    assert!(
        old.is_none_or(|m| m.state != Liveness::Alive),
        "the old incarnation is not taken for the new one"
    );

    // The Raft leader dies: the others elect a new one.
    let leader = view.leader.expect("a leader before the kill");
    cluster.kill(&leader);
    let rest: Vec<&str> = names.iter().copied().filter(|n| *n != leader).collect();
    let reelected = cluster
        .wait_until(&rest, Duration::from_secs(6), |s| {
            s.leader.as_ref().is_some_and(|l| *l != leader)
        })
        .expect("no new Raft leader after the leader was killed");
    eprintln!("Raft leader {leader} killed; a new leader within {reelected:?}");
}

#[test]
fn a_peer_with_the_wrong_secret_never_appears() {
    let mut cluster = Cluster::new();
    let first = free_port();
    cluster.start("good1", first, None);
    cluster.start("good2", free_port(), Some(first));
    let wrong = secret_file("this is not the cluster secret");
    cluster.start_with(
        "intruder",
        free_port(),
        Some(first),
        &["--cluster-secret-file", wrong.path().to_str().unwrap()],
    );
    cluster
        .wait_until(&["good1", "good2"], Duration::from_secs(3), |s| {
            s.live_ids() == ["good1", "good2"]
        })
        .expect("good peers converge");
    std::thread::sleep(Duration::from_secs(1));
    for good in ["good1", "good2"] {
        let status = cluster.status(good).unwrap();
        assert!(
            status.members.iter().all(|m| m.id != "intruder"),
            "{good} lists the intruder"
        );
    }
    let refused = cluster.status("good1").unwrap().counters.refused_peers;
    assert!(refused > 0, "the intruder's attempts are counted");
    // The intruder learns nobody, says why at error level, and gives up
    // rather than run on alone looking joined.
    let code = cluster.wait_exit("intruder", Duration::from_secs(15));
    let log = cluster.log("intruder");
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("ERROR") && log.contains("refused us"), "{log}");
    assert!(log.contains("refuses this peer"), "{log}");
    assert!(!log.contains("joined cluster"), "{log}");
}

#[test]
fn garbage_and_wrong_protocols_leave_peers_serving() {
    let mut cluster = Cluster::new();
    let first = free_port();
    cluster.start("a", first, None);
    cluster.start("b", free_port(), Some(first));
    cluster
        .wait_until(&["a", "b"], Duration::from_secs(3), |s| {
            s.live_ids() == ["a", "b"]
        })
        .expect("converge");

    let target: SocketAddr = format!("127.0.0.1:{first}").parse().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..3_000 {
        let len = (next() % 1_400) as usize + 1;
        let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 3 == 0 {
            datagram[0] = 0xc0 | (datagram[0] & 0x0f); // looks like a QUIC long header
        }
        let _ = socket.send_to(&datagram, target);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A client speaking another ALPN (protocol version) is refused by TLS.
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"vajra/0".to_vec()];
        endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
        )));
        let attempt = endpoint.connect(target, "vajra-peer").unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(3), attempt).await.map_or(true, |r| r.is_err()));

        // Right ALPN, wrong wire protocol version in the hello: refused.
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(vajra::cluster::endpoint::tls::client_config(&vajra::cluster::Admission::Insecure).unwrap());
        let conn = endpoint.connect(target, "vajra-peer").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = serde_json::json!({"protocol": 99, "cluster_id": "vajra", "role": "peer", "node": "x", "advertise": "127.0.0.1:1", "proof": ""});
        send.write_all(hello.to_string().as_bytes()).await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(16_384).await.unwrap();
        let welcome: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(welcome["ok"], false);
        assert!(welcome["error"].as_str().unwrap().contains("protocol version 99"), "{welcome}");
    });

    let counted = cluster.wait_until(&["a"], Duration::from_secs(2), |s| {
        s.live_ids() == ["a", "b"]
            && s.counters.refused_peers >= 1
            && s.counters.handshake_failures + s.counters.ignored_handshakes >= 1
    });
    let status = cluster
        .status("a")
        .expect("peer a still answers after the garbage");
    assert!(
        counted.is_some(),
        "refusals not counted: {:?}",
        status.counters
    );
    assert_eq!(cluster.status("b").unwrap().live_ids(), ["a", "b"]);
}

#[test]
fn a_peer_without_authentication_is_refused_unless_insecure() {
    let out = binary()
        .args(["join", "--listen", "127.0.0.1:0"])
        .env_remove("VAJRA_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));

    let short = secret_file("short");
    let out = binary()
        .args([
            "join",
            "--listen",
            "127.0.0.1:0",
            "--cluster-secret-file",
            short.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 bytes"));

    let mut cluster = Cluster::new();
    let port = free_port();
    cluster.start_with("dev", port, None, &["--insecure"]);
    let start = Instant::now();
    let text = loop {
        let out = binary()
            .args([
                "status",
                "--peer",
                &format!("127.0.0.1:{port}"),
                "--insecure",
            ])
            .output()
            .unwrap();
        if out.status.success() || start.elapsed() > Duration::from_secs(3) {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("INSECURE"), "{text}");
}

fn flags(set: &[String]) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

/// Writes a CA and `names.len()` peer certificates (each naming
/// "vajra-peer") into `dir`; returns the flag sets for each peer.
fn mtls_identities(dir: &std::path::Path, ca_name: &str, names: &[&str]) -> Vec<Vec<String>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_path = dir.join(format!("{ca_name}.pem"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    names
        .iter()
        .map(|name| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["vajra-peer".to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            let (cert_path, key_path) = (
                dir.join(format!("{name}.crt")),
                dir.join(format!("{name}.key")),
            );
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            [
                ("--tls-ca", &ca_path),
                ("--tls-cert", &cert_path),
                ("--tls-key", &key_path),
            ]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.to_str().unwrap().to_owned()])
            .collect()
        })
        .collect()
}

#[test]
fn mutual_tls_admits_the_cas_peers_only() {
    let dir = tempfile::tempdir().unwrap();
    let ours = mtls_identities(dir.path(), "cluster-ca", &["m1", "m2", "admin"]);
    let theirs = mtls_identities(dir.path(), "rogue-ca", &["rogue"]);
    let mut cluster = Cluster::new();
    let first = free_port();
    cluster.start_with("m1", first, None, &flags(&ours[0]));
    cluster.start_with("m2", free_port(), Some(first), &flags(&ours[1]));
    cluster.start_with("rogue", free_port(), Some(first), &flags(&theirs[0]));
    let admin = flags(&ours[2]);
    let start = Instant::now();
    let mut view = None;
    while start.elapsed() < Duration::from_secs(3) {
        view = status_with(first, &admin).filter(|s| s.live_ids() == ["m1", "m2"]);
        if view.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let view = view.expect("the CA's peers did not converge over mutual TLS");
    assert_eq!(view.security, "mtls");
    std::thread::sleep(Duration::from_secs(1));
    let view = status_with(first, &admin).unwrap();
    assert!(
        view.members.iter().all(|m| m.id != "rogue"),
        "a peer of another CA joined"
    );
    assert!(
        view.counters.handshake_failures > 0,
        "the rogue's handshakes are counted: {:?}",
        view.counters
    );
    assert!(
        status_with(first, &flags(&theirs[0])).is_none(),
        "a rogue certificate cannot read status"
    );
}

/// `status` at an address where nothing listens says so, promptly, instead
/// of quinn's bare "timed out" after its idle timeout.
#[test]
fn status_where_nothing_listens_says_no_peer_answered() {
    let port = free_port();
    let secret = secret_file("correct horse battery staple");
    let began = std::time::Instant::now();
    let out = common::binary()
        .args(["status", "--peer", &format!("127.0.0.1:{port}")])
        .args(["--cluster-secret-file", secret.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("no peer answered at 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "took {:?}",
        began.elapsed()
    );
}

/// `--health-listen`: `/livez` answers at once; `/readyz` only once the peer
/// is a Raft member with its state applied; `vajra-peer health` exits
/// with the verdict. A peer whose seed never answers is alive, not ready.
#[test]
fn health_probes_tell_alive_from_ready() {
    let mut cluster = Cluster::new();
    let (health, lonely_health) = (free_port(), free_port());
    let health_flag = format!("127.0.0.1:{health}");
    cluster.start_joined(&["p1", "p2"], |i| {
        if i == 1 {
            vec!["--health-listen".into(), health_flag.clone()]
        } else {
            Vec::new()
        }
    });
    let addr: SocketAddr = health_flag.parse().unwrap();
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        common::http::get(addr, "/readyz").is_ok_and(|(status, _)| status == 200)
    });
    assert!(ready, "p2 joined, so it becomes ready");
    assert_eq!(common::http::get(addr, "/livez").unwrap().0, 200);
    assert_eq!(common::http::get(addr, "/metrics").unwrap().0, 404);
    let probe = binary().args(["health", &health_flag]).output().unwrap();
    assert_eq!(probe.status.code(), Some(0), "{probe:?}");

    // A seed that is not there: alive, never ready.
    let nowhere = free_port();
    let secret = cluster.secret.path().to_str().unwrap().to_owned();
    cluster.start_with(
        "lonely",
        free_port(),
        Some(nowhere),
        &[
            "--cluster-secret-file",
            &secret,
            "--health-listen",
            &format!("127.0.0.1:{lonely_health}"),
        ],
    );
    let lonely: SocketAddr = format!("127.0.0.1:{lonely_health}").parse().unwrap();
    let alive = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        common::http::get(lonely, "/livez").is_ok_and(|(status, _)| status == 200)
    });
    assert!(alive, "{}", cluster.log("lonely"));
    let (status, body) = common::http::get(lonely, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready"), "{body}");
    let probe = binary()
        .args(["health", &format!("127.0.0.1:{lonely_health}")])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&probe.stderr).contains("not ready"));
}
