//! The `join` and `status` subcommands.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use std::sync::Arc;

use super::Extensions;
use super::process::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, runtime};
use crate::cluster::endpoint::auth::{Admission, MtlsIdentity};
use crate::cluster::endpoint::{Client, StreamKind, client_request, request_status};
use crate::cluster::health::{HealthServer, Readiness};
use crate::cluster::membership::state::MemberRole;
use crate::cluster::peer::{Peer, PeerConfig, hostname};
use crate::cluster::run::follow::Follow;
use crate::cluster::run::protocol::{ControlReply, ControlRequest};
use crate::cluster::status::ClusterStatus;
use crate::config::duration::HumanDuration;
use crate::config::export::resolve_export;
use crate::config::{ExportArgs, RunArgs};
use crate::export::Outcome;
use crate::export::registry::Exports;
use crate::history::recorder::Recorder;
use crate::history::session::Session;
use crate::history::store::Provenance;

/// Default UDP port of a peer.
pub const DEFAULT_PORT: u16 = 7700;
/// Shortest accepted cluster secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// The placeholder in `deploy/kubernetes/base/secret.yaml`: a secret
/// anyone can read there, refused.
pub const PLACEHOLDER_SECRET: &[u8] = b"replace-me-with-24-random-bytes";

/// How this process proves it belongs to the cluster.
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// Cluster id; peers of other clusters are refused.
    #[arg(long = "cluster", env = "VAJRA_CLUSTER", default_value = "vajra")]
    pub cluster_id: String,
    /// File holding the cluster secret (at least 16 bytes; a trailing newline
    /// is ignored). The secret itself may instead be in VAJRA_CLUSTER_SECRET.
    #[arg(long, env = "VAJRA_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Mutual TLS: PEM file of the CA that signs every peer's certificate.
    #[arg(long, env = "VAJRA_TLS_CA", value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: this peer's PEM certificate (chain); it must name the
    /// DNS name "vajra-peer".
    #[arg(long, env = "VAJRA_TLS_CERT", value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// Mutual TLS: this peer's PEM private key.
    #[arg(long, env = "VAJRA_TLS_KEY", value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// Development only: admit any peer without a secret. Status shows it.
    #[arg(long, action = ArgAction::SetTrue)]
    pub insecure: bool,
}

impl SecurityArgs {
    /// The admission mode these arguments ask for, or why they are invalid.
    pub fn admission(&self) -> Result<Admission, String> {
        let from_env = std::env::var("VAJRA_CLUSTER_SECRET")
            .ok()
            .filter(|s| !s.is_empty());
        let secret = match (&self.cluster_secret_file, from_env) {
            (Some(path), _) => Some(std::fs::read(path).map_err(|e| {
                format!("cannot read --cluster-secret-file {}: {e}", path.display())
            })?),
            (None, Some(text)) => Some(text.into_bytes()),
            (None, None) => None,
        };
        let mtls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(MtlsIdentity::load(ca, cert, key)?),
            _ => None,
        };
        let modes = usize::from(secret.is_some())
            + usize::from(mtls.is_some())
            + usize::from(self.insecure);
        if modes > 1 {
            return Err(
                "give one of a cluster secret, --tls-ca/--tls-cert/--tls-key, or --insecure".into(),
            );
        }
        if let Some(id) = mtls {
            return Ok(Admission::Mtls(Arc::new(id)));
        }
        match secret {
            Some(mut secret) => {
                while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    secret.pop();
                }
                if secret.len() < MIN_SECRET_LEN {
                    return Err(format!(
                        "the cluster secret must be at least {MIN_SECRET_LEN} bytes"
                    ));
                }
                if secret == PLACEHOLDER_SECRET {
                    return Err("the cluster secret is the placeholder of the Kubernetes \
                                manifests: make a random one (docs/kubernetes.md)"
                        .into());
                }
                Ok(Admission::Secret(secret))
            }
            None if self.insecure => Ok(Admission::Insecure),
            None => Err(
                "refusing to run without peer authentication: give --cluster-secret-file FILE \
                 (or VAJRA_CLUSTER_SECRET), --tls-ca/--tls-cert/--tls-key for mutual TLS, \
                 or --insecure for development"
                    .into(),
            ),
        }
    }
}

/// How a member (a peer or an orchestrator) joins the cluster.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// UDP address of this peer's endpoint (gossip and all peer traffic).
    #[arg(long, env = "VAJRA_LISTEN", default_value = "0.0.0.0:7700")]
    pub listen: SocketAddr,
    /// Address other peers should use [default: the listen address, or this
    /// host's address towards the seeds, or its host name's address].
    #[arg(long, env = "VAJRA_ADVERTISE")]
    pub advertise: Option<SocketAddr>,
    /// A peer to join through, HOST:PORT (repeatable; host names are
    /// resolved and re-resolved, so a headless service or compose name works).
    #[arg(long = "seed", env = "VAJRA_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Also discover peers of this cluster by mDNS on the local network.
    #[arg(long, env = "VAJRA_MDNS", action = ArgAction::SetTrue)]
    pub mdns: bool,
    /// Unique node name [default: HOSTNAME-PORT].
    #[arg(long, env = "VAJRA_NAME")]
    pub name: Option<String>,
    /// Gossip interval: shorter detects failures faster for more traffic.
    #[arg(long, default_value = "150ms")]
    pub gossip_interval: HumanDuration,
    /// Serve health probes on this TCP address: GET /livez and /readyz
    /// (ready once in the membership with the Raft state applied), no
    /// authentication and nothing but the verdict.
    #[arg(long, env = "VAJRA_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
    /// Cluster id and peer authentication.
    #[command(flatten)]
    pub security: SecurityArgs,
}

impl MemberArgs {
    /// The peer configuration of a member in `role` with share `weight`.
    pub fn peer_config(&self, role: MemberRole, weight: f64) -> Result<PeerConfig, String> {
        let admission = self.security.admission()?;
        let name = self.name.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                hostname().unwrap_or_else(|| "peer".into()),
                self.listen.port()
            )
        });
        Ok(PeerConfig {
            listen: self.listen,
            advertise: self.advertise,
            seeds: self.seeds.clone(),
            cluster_id: self.security.cluster_id.clone(),
            node_id: name,
            weight,
            admission,
            gossip_interval: self.gossip_interval.0.max(Duration::from_millis(10)),
            mdns: self.mdns,
            role,
        })
    }
}

/// Arguments of `vajra-peer join`.
#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// Where it listens, whom it joins through, how it is admitted.
    #[command(flatten)]
    pub member: MemberArgs,
    /// Weight of this peer's share under weighted distribution.
    #[arg(long, env = "VAJRA_WEIGHT", default_value_t = 1.0)]
    pub weight: f64,
    /// This peer's live exporters, fed its share of every test.
    #[command(flatten)]
    pub export: ExportArgs,
    /// This peer's web UI and API.
    #[command(flatten)]
    pub web: super::web::WebArgs,
}

/// Arguments of `vajra-peer status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Peer to ask, HOST:PORT.
    #[arg(long, env = "VAJRA_PEER", default_value = "127.0.0.1:7700")]
    pub peer: String,
    /// Print JSON instead of a table.
    #[arg(long, action = ArgAction::SetTrue)]
    pub json: bool,
    /// Cluster id and peer authentication.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Runs `vajra-peer join` until SIGINT or SIGTERM, running the cluster's
/// tests with the tasks, strategies and exporters of `extensions`.
pub fn join(args: JoinArgs, extensions: Extensions) -> u8 {
    let exports = match peer_exports(&args, &extensions) {
        Ok(exports) => exports,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_CONFIG;
        }
    };
    let (registry, strategies) = (Arc::new(extensions.tasks), Arc::new(extensions.strategies));
    if !(args.weight.is_finite() && args.weight > 0.0) {
        eprintln!("error: invalid `weight`: must be a positive number");
        return EXIT_CONFIG;
    }
    let (config, web) = match (
        args.member.peer_config(MemberRole::Peer, args.weight),
        args.web.resolve(),
    ) {
        (Ok(config), Ok(web)) => (config, web),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let Ok(rt) = runtime(2) else {
        return EXIT_RUNTIME;
    };
    rt.block_on(async move {
        let mut exports = exports;
        let _metrics = match exports.serve_metrics(false).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("error: {e:#}");
                return EXIT_RUNTIME;
            }
        };
        // Built once here, so a bad setting stops the peer at once
        // instead of at every test.
        if let Err(e) = exports.registry.build(&exports.settings) {
            eprintln!("error: {e:#}");
            return EXIT_CONFIG;
        }
        let member = Member {
            config,
            web,
            history: None,
            health: args.member.health_listen,
        };
        member.run(registry, strategies, Arc::new(exports)).await
    })
}

/// A member to run until SIGINT or SIGTERM: `join`'s peer or the
/// orchestrator.
pub(super) struct Member {
    /// How it joins.
    pub(super) config: PeerConfig,
    /// Its web UI and API, if served.
    pub(super) web: Option<super::web::WebSettings>,
    /// Where it records the cluster's tests (an orchestrator).
    pub(super) history: Option<Arc<Recorder>>,
    /// Where it serves its health probes, if anywhere.
    pub(super) health: Option<SocketAddr>,
}

impl Member {
    /// Starts it and runs it until a shutdown signal, or until every peer
    /// it tried refuses it; the exit code.
    pub(super) async fn run(
        self,
        registry: Arc<crate::engine::TaskRegistry>,
        strategies: Arc<crate::cluster::run::plan::Strategies>,
        exports: Arc<Exports>,
    ) -> u8 {
        let config = self.config;
        let peer = match Peer::start(config.clone(), registry, strategies, exports).await {
            Ok(peer) => peer,
            Err(e) => {
                eprintln!("error: {e:#}");
                return EXIT_RUNTIME;
            }
        };
        let _health = match self.health {
            Some(addr) => match HealthServer::start(addr, Readiness::of(peer.raft())).await {
                Ok(server) => {
                    eprintln!(
                        "health probes on http://{}/livez and /readyz",
                        server.local_addr()
                    );
                    Some(server)
                }
                Err(e) => {
                    eprintln!("error: cannot serve health probes on {addr}: {e}");
                    peer.shutdown().await;
                    return EXIT_CONFIG;
                }
            },
            None => None,
        };
        let _web = match self.web {
            Some(web) => match serve_web(web, &peer, self.history.clone()).await {
                Ok(server) => Some(server),
                Err(e) => {
                    eprintln!("error: {e}");
                    peer.shutdown().await;
                    return EXIT_CONFIG;
                }
            },
            None => None,
        };
        let _recording = self.history.map(|recorder| {
            tokio::spawn(crate::history::follower::record_cluster(
                recorder,
                peer.controller(),
                peer.status_updates(),
            ))
        });
        if matches!(config.admission, Admission::Insecure) {
            eprintln!(
                "WARNING: running an INSECURE peer: anyone who can reach {} can join",
                config.listen
            );
        }
        let seeds = if config.seeds.is_empty() {
            String::new()
        } else {
            format!(", joining through {}", config.seeds.join(", "))
        };
        eprintln!(
            "{} {} of cluster '{}' listening on {}{seeds}",
            config.role,
            config.node_id,
            config.cluster_id,
            peer.local_addr()
                .map_or_else(|_| config.listen.to_string(), |a| a.to_string())
        );
        let code = tokio::select! {
            _ = wait_for_shutdown_signal() => {
                leave(&peer).await;
                EXIT_OK
            }
            refusals = refused_by_every_seed(&peer) => {
                for (addr, reason) in refusals {
                    eprintln!("error: {addr} refuses this peer: {reason}");
                }
                eprintln!(
                    "error: every peer this one tried refuses it (check --cluster-secret-file, \
                     --cluster-id and the versions); giving up"
                );
                EXIT_CONFIG
            }
        };
        if let Some(task) = _recording {
            task.abort();
        }
        peer.shutdown().await;
        code
    }
}

/// Serves `peer`'s web API as `web` asks.
async fn serve_web(
    mut web: super::web::WebSettings,
    peer: &Peer,
    history: Option<Arc<Recorder>>,
) -> Result<crate::web::WebServer, String> {
    let open = web.is_open();
    let auth = web.providers().await?;
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    let server = crate::web::serve(
        web.listen,
        auth,
        web.tls.clone(),
        peer.controller(),
        peer.status_updates(),
        history,
    )
    .await
    .map_err(|e| format!("cannot serve the API on {}: {e}", web.listen))?;
    eprintln!(
        "web UI and API on {scheme}://{}/{}",
        server.local_addr(),
        if open {
            " (no authentication: loopback only)"
        } else {
            ""
        }
    );
    Ok(server)
}

/// The exporters `join`'s flags ask for, their names checked.
fn peer_exports(args: &JoinArgs, extensions: &Extensions) -> anyhow::Result<Exports> {
    let settings = resolve_export(args.export.clone())?;
    extensions.exporters.check(&settings)?;
    Ok(Exports {
        registry: extensions.exporters.clone(),
        settings,
    })
}

/// How many times each address must refuse a peer that nobody admits
/// before it gives up (about 3 s of retries).
const REFUSALS_BEFORE_GIVING_UP: u32 = 5;

/// Resolves when every address this peer tried refused it
/// [`REFUSALS_BEFORE_GIVING_UP`] times and nobody admitted it: a wrong
/// secret or cluster id, which would otherwise leave it running alone.
async fn refused_by_every_seed(peer: &Peer) -> Vec<(SocketAddr, String)> {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(refusals) = peer.refused_everywhere(REFUSALS_BEFORE_GIVING_UP) {
            return refusals;
        }
    }
}

/// Leaves the cluster gracefully (a second signal cuts it short), saying
/// how it went.
async fn leave(peer: &Peer) {
    eprintln!("leaving: handing this peer's share over (a second signal stops at once)");
    tokio::select! {
        departure = peer.leave(crate::cluster::leave::DEFAULT_WITHIN) => {
            match departure.kept {
                None => eprintln!("left in {:.1} s", departure.took.as_secs_f64()),
                Some(kept) => eprintln!(
                    "warning: leaving after {:.1} s although {kept}",
                    departure.took.as_secs_f64()
                ),
            }
            if !departure.handed_to.is_empty() {
                eprintln!("its reports are kept by {}", departure.handed_to.join(", "));
            }
        }
        _ = wait_for_shutdown_signal() => eprintln!("leaving at once"),
    }
}

async fn wait_for_shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Runs `vajra-peer status`.
pub fn status(args: StatusArgs) -> u8 {
    let admission = match args.security.admission() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let Some(peer) = args.peer.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        eprintln!("error: cannot resolve --peer {}", args.peer);
        return EXIT_CONFIG;
    };
    let Ok(rt) = runtime(1) else {
        return EXIT_RUNTIME;
    };
    let body = rt.block_on(request_status(
        peer,
        &args.security.cluster_id,
        admission.clone(),
    ));
    let mut status: ClusterStatus = match body.and_then(|b| Ok(serde_json::from_slice(&b)?)) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("error: status from {peer}: {e:#}");
            return EXIT_RUNTIME;
        }
    };
    if status.test.is_some() {
        // The peer merges every participant's histograms for us.
        let reply = rt.block_on(control(
            peer,
            &args.security,
            admission,
            &ControlRequest::Figures,
        ));
        status.figures = reply.ok().and_then(|r| r.figures);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serialises")
        );
    } else {
        print!("{}", status.render());
    }
    EXIT_OK
}

/// Arguments of `vajra-peer start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The test, with the same options as `run`.
    #[command(flatten)]
    pub run: RunArgs,
    /// Any peer of the cluster, HOST:PORT.
    #[arg(long, env = "VAJRA_PEER", default_value = "127.0.0.1:7700")]
    pub peer: String,
    /// Wait for the end, then print the merged summary and exit with the
    /// thresholds' verdict, as `run` does.
    #[arg(long, action = ArgAction::SetTrue)]
    pub wait: bool,
    /// How the rate is split: equal, weighted (by each peer's --weight),
    /// capacity (by cores and idle CPU), or one the peers' binary registered
    /// (the leader checks the name).
    #[arg(long, env = "VAJRA_DISTRIBUTION", default_value = "equal")]
    pub distribution: String,
    /// Cluster id and peer authentication.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Arguments of `vajra-peer stop`.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Any peer of the cluster, HOST:PORT.
    #[arg(long, env = "VAJRA_PEER", default_value = "127.0.0.1:7700")]
    pub peer: String,
    /// Cluster id and peer authentication.
    #[command(flatten)]
    pub security: SecurityArgs,
}

fn resolve_peer(peer: &str) -> Result<SocketAddr, String> {
    peer.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve --peer {peer}"))
}

async fn control(
    peer: SocketAddr,
    security: &SecurityArgs,
    admission: Admission,
    request: &ControlRequest,
) -> anyhow::Result<ControlReply> {
    let body = serde_json::to_vec(request)?;
    let answer = client_request(
        peer,
        &security.cluster_id,
        admission,
        StreamKind::Control,
        &body,
    )
    .await?;
    Ok(serde_json::from_slice(&answer)?)
}

/// Like [`control`], retrying for a few seconds while the cluster has no
/// Raft leader yet (it is forming or electing).
async fn control_until_led(
    peer: SocketAddr,
    security: &SecurityArgs,
    admission: Admission,
    request: &ControlRequest,
) -> anyhow::Result<ControlReply> {
    // A refusal to retry (no leader yet, a commit that did not finish) and
    // a lost reply are asked again; a start carries a request id, so a
    // retry of one that did start gets that test back.
    for _ in 0..20 {
        match control(peer, security, admission.clone(), request).await {
            Ok(reply) if !reply.worth_retrying(request) => return Ok(reply),
            Ok(_) => {}
            Err(e)
                if e.downcast_ref::<crate::cluster::endpoint::NoAnswer>()
                    .is_some() =>
            {
                return Err(e);
            }
            Err(e) => tracing::debug!("asking {peer} again after: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    control(peer, security, admission, request).await
}

/// Runs `vajra-peer start`.
pub fn start(args: StartArgs) -> u8 {
    let (admission, peer) = match (args.security.admission(), resolve_peer(&args.peer)) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let mut run = match &args.run.config {
        Some(path) => match crate::config::file::load(path) {
            Ok(file) => args.run.clone().over(file),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_CONFIG;
            }
        },
        None => args.run.clone(),
    };
    run.config = None;
    if !run.export.is_empty() {
        // Not refused: the same VAJRA_EXPORT may be set for the peers in
        // the shell that starts tests.
        eprintln!(
            "warning: ignoring the export settings: exporters belong to each peer, not to a \
             test (give --export, --metrics-listen and the like to `join`)"
        );
        run.export = Default::default();
    }
    let settings = match crate::config::resolve(run.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    // The files the settings name are read here and travel in the
    // definition: no peer reads a file named by the wire.
    let run = match crate::config::definition::self_contained(run) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let Ok(rt) = runtime(1) else {
        return EXIT_RUNTIME;
    };
    rt.block_on(async move {
        if !args.wait && (settings.store.is_some() || settings.baseline.is_some()) {
            eprintln!(
                "warning: --store and --baseline take effect with --wait (an orchestrator \
                 records the test and judges its baseline itself)"
            );
        }
        let history = if args.wait {
            match Session::open(
                settings.store.as_deref(),
                settings.baseline.as_ref(),
                &settings.test_name,
                "",
            )
            .await
            {
                Ok(history) => history,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_CONFIG;
                }
            }
        } else {
            Session::none()
        };
        if let Some(line) = history.describe().filter(|_| !settings.quiet) {
            eprintln!("{line}");
        }
        let request = ControlRequest::Start {
            run: Box::new(run),
            distribution: args.distribution.clone(),
            request_id: format!("{:016x}", fastrand::u64(..)),
            started_by: super::run::started_by("start"),
        };
        let reply = match control_until_led(peer, &args.security, admission.clone(), &request).await
        {
            Ok(reply) => reply,
            Err(e) => {
                eprintln!("error: {peer}: {e:#}");
                return EXIT_RUNTIME;
            }
        };
        if !reply.ok {
            eprintln!("error: {}", reply.message);
            return EXIT_CONFIG;
        }
        let Some(plan) = reply.plan.clone() else {
            eprintln!("error: {peer} reported the test started but sent no plan");
            return EXIT_RUNTIME;
        };
        eprintln!("{}", reply.message);
        if !args.wait {
            return EXIT_OK;
        }
        let test = StartedTest {
            plan: &plan,
            peers: &reply.peers,
            settings: &settings,
            history: &history,
        };
        wait_and_report(&args.security, admission, test).await
    })
}

/// A test `start` started, to wait for.
struct StartedTest<'a> {
    plan: &'a crate::cluster::run::plan::Plan,
    peers: &'a std::collections::BTreeMap<String, SocketAddr>,
    settings: &'a crate::config::RunSettings,
    history: &'a Session,
}

/// Follows the started test to its end, then judges it against its
/// baseline, records it, prints and writes the merged report.
async fn wait_and_report(
    security: &SecurityArgs,
    admission: Admission,
    test: StartedTest<'_>,
) -> u8 {
    let StartedTest {
        plan,
        peers,
        settings,
        history,
    } = test;
    // The test starts START_DELAY after the command, on this client's
    // clock (the leader's clock may differ from this one; lengths carry
    // over, instants do not).
    let origin = std::time::Instant::now() + crate::cluster::run::control::START_DELAY;
    let follow = match Follow::new(plan, peers.clone(), origin) {
        Ok(follow) => follow,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_RUNTIME;
        }
    };
    let client = match Client::new(&security.cluster_id, admission) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_RUNTIME;
        }
    };
    let followed = follow.to_end(&client).await;
    client.close().await;
    let followed = match followed {
        Ok(followed) => followed,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_RUNTIME;
        }
    };
    let mut merged = followed.report;
    let provenance = Provenance {
        id: &plan.test_id,
        name: &settings.test_name,
        started_by: &plan.started_by,
        definition: plan.definition.settings.clone(),
    };
    if let Some(problem) = history
        .conclude(
            &mut merged,
            &settings.thresholds,
            provenance,
            followed.target_rate,
        )
        .await
    {
        eprintln!("warning: {problem}");
    }
    let merged = &merged;
    print!(
        "{}",
        crate::export::console::summary(merged, followed.target_rate)
    );
    for (node, report) in &followed.parts {
        println!(
            "  peer {node}: {} completed, {} dropped",
            report.main.completed, report.main.dropped
        );
    }
    for path in &settings.outputs {
        if let Err(e) = crate::export::files::write(merged, path) {
            eprintln!("error: {e:#}");
            return EXIT_RUNTIME;
        }
    }
    if merged.outcome == Outcome::Interrupted {
        super::process::EXIT_INTERRUPTED
    } else if merged.outcome == Outcome::Stopped {
        super::process::EXIT_STOPPED
    } else if !merged.thresholds_passed() || merged.outcome == Outcome::Aborted {
        super::process::EXIT_THRESHOLD
    } else if settings.fail_on_unreliable && !merged.self_check.reliable {
        super::process::EXIT_UNRELIABLE
    } else {
        EXIT_OK
    }
}

/// Arguments of `vajra-peer update`: `--tps` alone changes the rate until
/// the test's planned end; any pattern flag replaces the rest of the test
/// with that pattern (the same flags as `run`), and the test then ends when
/// the pattern does.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// New cluster rate per second (with no pattern flag: from a fraction
    /// of a second from now until the test's planned end).
    #[arg(long)]
    pub tps: Option<f64>,
    /// New pattern, from now on [default: inferred from the other flags].
    #[arg(long, value_enum)]
    pub pattern: Option<crate::config::args::PatternKind>,
    /// Length of the new pattern: the test ends this long from now.
    #[arg(long, short = 'd')]
    pub duration: Option<HumanDuration>,
    /// Linear ramp from 0 to --tps at the pattern's start.
    #[arg(long)]
    pub ramp_up: Option<HumanDuration>,
    /// Linear ramp from --tps to 0 at the pattern's end.
    #[arg(long)]
    pub ramp_down: Option<HumanDuration>,
    /// Step levels, RATE:DURATION,... e.g. 50:10s,150:10s.
    #[arg(long)]
    pub steps: Option<String>,
    /// Spike pattern: rate during a spike (--tps is the base rate).
    #[arg(long)]
    pub spike_tps: Option<f64>,
    /// Spike pattern: time from one spike to the next.
    #[arg(long)]
    pub spike_every: Option<HumanDuration>,
    /// Spike pattern: how long each spike lasts.
    #[arg(long)]
    pub spike_duration: Option<HumanDuration>,
    /// Sine pattern: swing around --tps.
    #[arg(long)]
    pub amplitude: Option<f64>,
    /// Sine pattern: length of one wave.
    #[arg(long)]
    pub period: Option<HumanDuration>,
    /// Custom pattern: TIME:RATE,... inline, or a file of "TIME,RATE" lines.
    #[arg(long)]
    pub points: Option<String>,
    /// Any peer of the cluster, HOST:PORT.
    #[arg(long, env = "VAJRA_PEER", default_value = "127.0.0.1:7700")]
    pub peer: String,
    /// Cluster id and peer authentication.
    #[command(flatten)]
    pub security: SecurityArgs,
}

impl UpdateArgs {
    /// The control request these flags ask for, or what is wrong with them.
    /// A pattern is compiled here, where its `--points` file is, and sent
    /// as a rate curve.
    pub fn request(&self) -> Result<ControlRequest, String> {
        let pattern = RunArgs {
            task: Some("noop".into()),
            tps: self.tps,
            pattern: self.pattern,
            duration: self.duration,
            ramp_up: self.ramp_up,
            ramp_down: self.ramp_down,
            steps: self.steps.clone(),
            spike_tps: self.spike_tps,
            spike_every: self.spike_every,
            spike_duration: self.spike_duration,
            amplitude: self.amplitude,
            period: self.period,
            points: self.points.clone(),
            ..RunArgs::default()
        };
        let pattern_flags = [
            self.pattern.is_some(),
            self.duration.is_some(),
            self.ramp_up.is_some(),
            self.ramp_down.is_some(),
            self.steps.is_some(),
            self.spike_tps.is_some(),
            self.spike_every.is_some(),
            self.spike_duration.is_some(),
            self.amplitude.is_some(),
            self.period.is_some(),
            self.points.is_some(),
        ];
        if !pattern_flags.contains(&true) {
            return match self.tps {
                Some(tps) => Ok(ControlRequest::Update(tps)),
                None => Err("give --tps or a new pattern (see --help)".into()),
            };
        }
        let settings = crate::config::resolve(pattern).map_err(|e| e.to_string())?;
        match settings.engine.load {
            crate::engine::LoadModel::Open { profile, .. } => Ok(ControlRequest::UpdatePattern(
                profile.curve.points().to_vec(),
            )),
            crate::engine::LoadModel::Closed { .. } => {
                Err("an update needs a rate (--tps or a pattern)".into())
            }
        }
    }
}

/// Runs `vajra-peer update`.
pub fn update(args: UpdateArgs) -> u8 {
    match args.request() {
        Ok(request) => simple_command(&args.peer, &args.security, request),
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_CONFIG
        }
    }
}

/// Runs `vajra-peer stop`.
pub fn stop(args: StopArgs) -> u8 {
    simple_command(&args.peer, &args.security, ControlRequest::Stop)
}

/// Sends one control command and prints its answer.
fn simple_command(peer: &str, security: &SecurityArgs, request: ControlRequest) -> u8 {
    let (admission, peer) = match (security.admission(), resolve_peer(peer)) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let Ok(rt) = runtime(1) else {
        return EXIT_RUNTIME;
    };
    match rt.block_on(control_until_led(peer, security, admission, &request)) {
        Ok(reply) if reply.ok => {
            eprintln!("{}", reply.message);
            EXIT_OK
        }
        Ok(reply) => {
            eprintln!("error: {}", reply.message);
            EXIT_CONFIG
        }
        Err(e) => {
            eprintln!("error: {peer}: {e:#}");
            EXIT_RUNTIME
        }
    }
}
