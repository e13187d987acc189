//! A set of `vajra-peer join` (and `orchestrator`) processes on loopback
//! for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::binary;
use vajra::cluster::ClusterStatus;

/// A set of peer processes, killed on drop.
pub struct Cluster {
    pub secret: tempfile::NamedTempFile,
    peers: BTreeMap<String, (Child, u16)>,
    /// Each peer's log (`VAJRA_LOG=vajra=info`), shown when a test fails.
    logs: tempfile::TempDir,
}

/// A loopback port (free for UDP and TCP) that no other test, in this
/// process or another, was given.
///
/// Ports come from below the kernel's ephemeral range (32768 and up), so the
/// ephemeral sockets of `status` clients cannot take one between this pick
/// and the peer's own bind. A port handed out is reserved until this test
/// process exits, by an exclusive lock on a file named after it: a peer
/// binds only some time after it is started, and nextest runs every test in
/// a process of its own, so a probe bind alone let two tests take one port.
/// The kernel drops the lock when the process ends, however it ends.
pub fn free_port() -> u16 {
    static HELD: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static LOCKS: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("vajra-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let mut held = HELD.lock().unwrap();
    loop {
        let port = fastrand::u16(20_000..32_000);
        if held.contains(&port) {
            continue;
        }
        let Ok(file) = std::fs::File::create(dir.join(format!("{port}.lock"))) else {
            continue;
        };
        // SAFETY: flock on a file descriptor this process owns.
        let locked = unsafe {
            use std::os::fd::AsRawFd;
            libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
        };
        if locked
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            held.insert(port);
            LOCKS.lock().unwrap().push(file);
            return port;
        }
    }
}

pub fn secret_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{text}").unwrap();
    f
}

impl Cluster {
    pub fn new() -> Self {
        Self {
            secret: secret_file("correct horse battery staple"),
            peers: BTreeMap::new(),
            logs: tempfile::tempdir().unwrap(),
        }
    }

    pub fn start(&mut self, name: &str, port: u16, seed: Option<u16>) {
        let secret = self.secret.path().to_owned();
        self.start_with(
            name,
            port,
            seed,
            &["--cluster-secret-file", secret.to_str().unwrap()],
        );
    }

    pub fn start_with(&mut self, name: &str, port: u16, seed: Option<u16>, extra: &[&str]) {
        self.start_as("join", name, port, seed, extra);
    }

    /// Starts `vajra-peer COMMAND` (`join`, `orchestrator`) as member `name`.
    pub fn start_as(
        &mut self,
        command: &str,
        name: &str,
        port: u16,
        seed: Option<u16>,
        extra: &[&str],
    ) {
        let mut cmd = binary();
        cmd.args([
            command,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            name,
            "--gossip-interval",
            "100ms",
        ]);
        if let Some(seed) = seed {
            cmd.args(["--seed", &format!("127.0.0.1:{seed}")]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.path().join(format!("{name}.log")))
            .unwrap();
        let child = cmd
            .args(extra)
            .env("VAJRA_LOG", "vajra=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.peers.insert(name.to_owned(), (child, port));
    }

    /// Starts `names` as one cluster (the first founds it, the others join
    /// through it), each with the secret and `extra(i)`'s flags, and waits
    /// until all see each other and a leader; the first one's port.
    pub fn start_joined(&mut self, names: &[&str], extra: impl Fn(usize) -> Vec<String>) -> u16 {
        let secret = self.secret.path().to_str().unwrap().to_owned();
        let first = free_port();
        for (i, name) in names.iter().enumerate() {
            let port = if i == 0 { first } else { free_port() };
            let mut flags = vec!["--cluster-secret-file".to_owned(), secret.clone()];
            flags.extend(extra(i));
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            self.start_with(name, port, (i > 0).then_some(first), &flags);
        }
        let mut expected: Vec<&str> = names.to_vec();
        expected.sort();
        self.wait_until(names, Duration::from_secs(10), |s| {
            s.live_ids() == expected && s.leader.is_some()
        })
        .expect("the peers see each other and a leader");
        first
    }

    pub fn port(&self, name: &str) -> u16 {
        self.peers[name].1
    }

    pub fn signal(&self, name: &str, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.peers[name].0.id() as i32, signal) };
    }

    /// The process id of `name`.
    #[allow(dead_code)]
    pub fn pid(&self, name: &str) -> u32 {
        self.peers[name].0.id()
    }

    pub fn kill(&mut self, name: &str) {
        let (mut child, _) = self.peers.remove(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits up to `within` for `name` to exit by itself: its exit code.
    pub fn wait_exit(&mut self, name: &str, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let (child, _) = self.peers.get_mut(name)?;
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// What `name` has written to stderr so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// `name`'s view of the cluster, if it answers.
    pub fn status(&self, name: &str) -> Option<ClusterStatus> {
        self.status_at(self.port(name), self.secret.path().to_str().unwrap())
    }

    pub fn status_at(&self, port: u16, secret: &str) -> Option<ClusterStatus> {
        let out = binary()
            .args([
                "status",
                "--json",
                "--peer",
                &format!("127.0.0.1:{port}"),
                "--cluster-secret-file",
                secret,
            ])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Prints the end of every peer's log, for a failed test.
    pub fn print_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.logs.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {} (last {} lines) ---\n{}",
                entry.file_name().to_string_lossy(),
                tail.len(),
                tail.join("\n")
            );
        }
    }

    /// Polls until every peer in `observers` sees `check` hold, or `limit`.
    pub fn wait_until(
        &self,
        observers: &[&str],
        limit: Duration,
        check: impl Fn(&ClusterStatus) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if observers
                .iter()
                .all(|o| self.status(o).is_some_and(|s| check(&s)))
            {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for (_, (child, _)) in self.peers.iter_mut() {
            // SAFETY: a stopped child must be resumed to die cleanly.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asks the peer on `port` for its status, with `auth` flags.
pub fn status_with(port: u16, auth: &[&str]) -> Option<ClusterStatus> {
    let out = binary()
        .args(["status", "--json", "--peer", &format!("127.0.0.1:{port}")])
        .args(auth)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}
