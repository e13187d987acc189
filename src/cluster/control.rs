//! Control commands from any node: start and stop a distributed test, and
//! fetch a peer's report. A peer that is not the Raft leader forwards
//! start and stop to the leader, so a client may talk to any peer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::figures::{self, TestFigures};
use super::network::{Network, StreamKind};
use super::plan::{Plan, Strategies};
use super::raft::store::StateMachine;
use super::raft::{Command, Raft};
use super::runner::Results;
use super::status::{ClusterStatus, Liveness};
use super::supervise::{
    PROBE_TIMEOUT, RESPLIT_DELAY, SUPERVISE_EVERY, Supervisor, candidates, test_end,
};
use crate::config::{self, RunArgs};
use crate::engine::LoadModel;
use crate::export::Report;
use crate::load::{RateCurve, RatePoint};
use crate::task::TaskRegistry;

/// How long the leader waits for a command to commit: a leader cut off in
/// a minority cannot commit, and must answer rather than hang.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How far in the future a test starts, so every peer has the plan (and
/// its instances set up) before the first arrival is due.
pub const START_DELAY: Duration = Duration::from_millis(1_500);

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Start a test with these settings, split by the named strategy
    /// ("equal", "weighted" or "capacity").
    Start {
        /// The test's definition (self-contained, see
        /// [`config::definition`]).
        run: Box<RunArgs>,
        /// The distribution strategy.
        distribution: String,
        /// Chosen by the client once per command: a retry after a lost
        /// reply carries the same id and gets the test it started, not a
        /// refusal.
        #[serde(default)]
        request_id: String,
    },
    /// Stop the running test.
    Stop,
    /// Change the running test's cluster rate until its planned end.
    Update(f64),
    /// Replace the rest of the running test with this pattern (a rate
    /// curve whose time 0 is a fraction of a second from now).
    UpdatePattern(Vec<RatePoint>),
    /// This peer's report of a test (figures so far while it runs), its
    /// series without the first `skip` windows: a client polling a long
    /// test asks only for the windows it has not seen (closed windows never
    /// change).
    Results {
        /// The test.
        test_id: String,
        /// Windows of the series the client already has.
        skip: usize,
        /// The incarnation (generation) those windows came from: a peer
        /// restarted since answers its whole series instead.
        #[serde(default)]
        generation: Option<u64>,
    },
    /// The plan the leader has committed (forwarded to the leader).
    CurrentPlan,
    /// The current or last test's cluster-wide figures, merged by the peer
    /// asked (not forwarded).
    Figures,
}

/// Why a control request was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// No leader is known, reachable or confirmed right now, or a commit
    /// did not finish: the same request may be sent again in a moment.
    Retry,
    /// The request itself is wrong (bad settings, unknown strategy).
    Invalid,
    /// It does not fit the cluster's state (a test already running, none
    /// running).
    Conflict,
    /// This peer has nothing to give (no report yet, its run failed).
    Unavailable,
}

/// The answer to a control request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlReply {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
    /// The plan committed by a start.
    pub plan: Option<Plan>,
    /// Peers taking part: node id → endpoint address.
    pub peers: BTreeMap<String, String>,
    /// A report, for `Results`.
    pub report: Option<Report>,
    /// Merged figures, for `Figures`.
    #[serde(default)]
    pub figures: Option<TestFigures>,
    /// Why not, when it was not done.
    #[serde(default)]
    pub refusal: Option<Refusal>,
    /// The answering peer's incarnation (its generation), for `Results`:
    /// a peer restarted under its old name answers with a new one, and its
    /// figures are another incarnation's, kept apart from the first's.
    #[serde(default)]
    pub generation: Option<u64>,
}

impl ControlReply {
    fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            refusal: Some(refusal),
            ..Self::default()
        }
    }
}

/// What the control handler needs.
#[derive(Clone)]
pub struct Controller {
    /// This peer's endpoint.
    pub network: Network,
    /// Its Raft handle.
    pub raft: Raft,
    /// Its applied Raft state.
    pub machine: StateMachine,
    /// Its Raft id.
    pub me: u64,
    /// Its incarnation: when this process started, Unix ms.
    pub generation: u64,
    /// Tasks it can run (to validate a start).
    pub registry: Arc<TaskRegistry>,
    /// Distribution strategies it can split a test with.
    pub strategies: Arc<Strategies>,
    /// Its finished reports.
    pub results: Results,
    /// Its current view of the cluster.
    pub status: Arc<dyn Fn() -> Option<ClusterStatus> + Send + Sync>,
}

impl Controller {
    /// Answers control requests on the endpoint.
    pub fn serve(self) {
        let network = self.network.clone();
        network.serve_requests(
            StreamKind::Control,
            Arc::new(move |body: Bytes| {
                let this = self.clone();
                Box::pin(async move {
                    let reply = match serde_json::from_slice::<ControlRequest>(&body) {
                        Ok(request) => this.handle(request, &body).await,
                        Err(e) => ControlReply::refused(
                            Refusal::Invalid,
                            format!("malformed control request: {e}"),
                        ),
                    };
                    serde_json::to_vec(&reply).expect("replies serialise")
                })
            }),
        );
    }

    /// Asks the leader (through this peer) for the plan it has committed:
    /// `Some(plan or none)` when the leader answered.
    pub async fn leader_plan(&self) -> Option<Option<Plan>> {
        let request = ControlRequest::CurrentPlan;
        let raw = serde_json::to_vec(&request).expect("requests serialise");
        let reply = self.handle(request, &raw).await;
        reply.ok.then_some(reply.plan)
    }

    async fn handle(&self, request: ControlRequest, raw: &[u8]) -> ControlReply {
        if let ControlRequest::Results {
            test_id,
            skip,
            generation,
        } = &request
        {
            // Windows of another incarnation say nothing of this one's.
            let skip = if generation.is_none_or(|g| g == self.generation) {
                *skip
            } else {
                0
            };
            // Also say who runs the test now, so a waiting client learns of
            // peers that joined it at a later epoch.
            let plan = self.machine.state().plan.filter(|p| &p.test_id == test_id);
            let peers = (self.status)()
                .map(|s| s.members.into_iter().map(|m| (m.id, m.address)).collect())
                .unwrap_or_default();
            let answer = self
                .results
                .lock()
                .get_mut(test_id)
                .map(|result| result.report_after(skip));
            let mut reply = match answer {
                Some(Ok(report)) => ControlReply {
                    ok: true,
                    report: Some(report),
                    ..ControlReply::default()
                },
                Some(Err(e)) => ControlReply::refused(
                    Refusal::Unavailable,
                    format!("this peer's run failed: {e}"),
                ),
                None => ControlReply::refused(Refusal::Unavailable, "no report yet"),
            };
            reply.plan = plan;
            reply.peers = peers;
            reply.generation = Some(self.generation);
            return reply;
        }
        if let ControlRequest::Figures = request {
            return self.figures().await;
        }
        let metrics = self.raft.metrics().borrow().clone();
        match metrics.current_leader {
            // A leader answers from its state machine: make sure it has
            // applied every committed entry (a new leader may not have yet)
            // and that a quorum still follows it (a frozen one may have
            // been deposed without knowing).
            Some(leader) if leader == self.me => {
                if let Err(e) = self.raft.ensure_linearizable().await {
                    return ControlReply::refused(
                        Refusal::Retry,
                        format!("leadership not confirmed: {e}; retry in a moment"),
                    );
                }
                self.lead(request).await
            }

            Some(leader) => {
                let addr = metrics
                    .membership_config
                    .membership()
                    .nodes()
                    .find(|(id, _)| **id == leader)
                    .and_then(|(_, node)| node.addr.parse::<SocketAddr>().ok());
                let Some(addr) = addr else {
                    return ControlReply::refused(
                        Refusal::Retry,
                        "the leader's address is unknown; retry",
                    );
                };
                match self
                    .network
                    .request(addr, StreamKind::Control, raw, Duration::from_secs(10))
                    .await
                {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        ControlReply::refused(
                            Refusal::Retry,
                            format!("bad reply from the leader: {e}"),
                        )
                    }),
                    Err(e) => ControlReply::refused(
                        Refusal::Retry,
                        format!("cannot reach the leader: {e:#}"),
                    ),
                }
            }
            None => ControlReply::refused(Refusal::Retry, "no Raft leader yet; retry in a moment"),
        }
    }

    /// Carries out a command as the confirmed leader.
    async fn lead(&self, request: ControlRequest) -> ControlReply {
        match request {
            ControlRequest::Start {
                run,
                distribution,
                request_id,
            } => self.start(*run, &distribution, request_id).await,
            ControlRequest::Stop => self.stop().await,
            ControlRequest::Update(tps) => self.update(RateChange::Constant(tps)).await,
            ControlRequest::UpdatePattern(points) => match RateCurve::new(points) {
                Ok(curve) if curve.duration() > 0.0 => {
                    self.update(RateChange::Pattern(curve)).await
                }
                Ok(_) => ControlReply::refused(Refusal::Invalid, "the new pattern lasts no time"),
                Err(e) => ControlReply::refused(Refusal::Invalid, format!("invalid pattern: {e}")),
            },
            ControlRequest::CurrentPlan => ControlReply {
                ok: true,
                plan: self.machine.state().plan,
                ..ControlReply::default()
            },
            ControlRequest::Results { .. } | ControlRequest::Figures => {
                unreachable!("answered before forwarding")
            }
        }
    }

    /// Merges the figures of the current or last test from every member
    /// that has some.
    async fn figures(&self) -> ControlReply {
        let state = self.machine.state();
        let (test_id, holders) = match (&state.plan, &state.finished) {
            (Some(plan), _) => (plan.test_id.clone(), plan.shares.keys().cloned().collect()),
            (None, Some(finished)) => (finished.test_id.clone(), Vec::new()),
            (None, None) => return ControlReply::refused(Refusal::Unavailable, "no test has run"),
        };
        let Some(status) = (self.status)() else {
            return ControlReply::refused(Refusal::Retry, "membership not known yet; retry");
        };
        let others = status
            .members
            .iter()
            .filter(|m| m.state != Liveness::Dead && m.id != status.node)
            .filter_map(|m| Some((m.id.clone(), m.address.parse().ok()?)))
            .collect();
        let own = self
            .results
            .lock()
            .get_mut(&test_id)
            .and_then(|result| result.report_after(usize::MAX).ok())
            .map(|report| (status.node.clone(), report));
        match figures::gather(&self.network, &test_id, others, own, &holders).await {
            Ok(figures) => ControlReply {
                ok: true,
                figures: Some(figures),
                ..ControlReply::default()
            },
            Err(e) => ControlReply::refused(Refusal::Unavailable, e),
        }
    }

    async fn start(&self, args: RunArgs, strategy_name: &str, request_id: String) -> ControlReply {
        if let Some(plan) = self.machine.state().plan
            && !request_id.is_empty()
            && plan.request_id == request_id
        {
            // A retry of the start that made this test: its answer again.
            return self.started(plan);
        }
        let strategy = match self.strategies.named(strategy_name) {
            Ok(strategy) => strategy,
            Err(e) => return ControlReply::refused(Refusal::Invalid, e),
        };
        let settings = match config::definition::resolve_definition(args.clone()) {
            Ok(s) => s,
            Err(e) => return ControlReply::refused(Refusal::Invalid, e.to_string()),
        };
        if !matches!(settings.engine.load, LoadModel::Open { .. }) {
            return ControlReply::refused(
                Refusal::Invalid,
                "a distributed test needs a target rate (--tps or a pattern)",
            );
        }
        if let Err(e) = self.registry.build(&settings.task) {
            return ControlReply::refused(Refusal::Invalid, format!("{e:#}"));
        }
        let Some(status) = (self.status)() else {
            return ControlReply::refused(Refusal::Retry, "membership not known yet; retry");
        };
        let live: Vec<_> = status
            .members
            .iter()
            .filter(|m| m.state == Liveness::Alive)
            .collect();
        let candidates = candidates(&live);
        let now_ms = now_ms();
        let definition = serde_json::to_string(&args).expect("settings serialise");
        let test_id = format!("t{now_ms}");
        let plan = match Plan::first(
            &test_id,
            now_ms + START_DELAY.as_millis() as u64,
            strategy.as_ref(),
            &candidates,
            definition,
        ) {
            Ok(plan) => Plan { request_id, ..plan },
            Err(e) => return ControlReply::refused(Refusal::Unavailable, e.to_string()),
        };
        match self.commit(Command::set_plan(&plan), "the plan").await {
            Ok(()) => self.started(plan),
            Err(refusal) => refusal,
        }
    }

    /// The answer to a start that made `plan`: the plan and the live peers.
    fn started(&self, plan: Plan) -> ControlReply {
        let peers = (self.status)()
            .map(|s| {
                s.members
                    .into_iter()
                    .filter(|m| m.state == Liveness::Alive)
                    .map(|m| (m.id, m.address))
                    .collect()
            })
            .unwrap_or_default();
        ControlReply {
            ok: true,
            message: format!(
                "test {} starts on {} peers",
                plan.test_id,
                plan.shares.len()
            ),
            peers,
            plan: Some(plan),
            ..ControlReply::default()
        }
    }

    /// Commits `command` within [`COMMIT_TIMEOUT`]; a refusal says why not.
    async fn commit(&self, command: Command, what: &str) -> Result<(), ControlReply> {
        let write = self.raft.client_write(command);
        match tokio::time::timeout(COMMIT_TIMEOUT, write).await {
            Ok(Ok(response)) if response.data.accepted => Ok(()),
            Ok(Ok(response)) => Err(ControlReply::refused(
                Refusal::Conflict,
                response.data.message,
            )),
            Ok(Err(e)) => Err(ControlReply::refused(
                Refusal::Retry,
                format!("could not commit {what}: {e}"),
            )),
            Err(_) => Err(ControlReply::refused(
                Refusal::Retry,
                format!(
                    "could not commit {what} within {COMMIT_TIMEOUT:?}: is a quorum of voters reachable?"
                ),
            )),
        }
    }

    async fn update(&self, change: RateChange) -> ControlReply {
        if let RateChange::Constant(tps) = change
            && !(tps.is_finite() && tps >= 0.0)
        {
            return ControlReply::refused(
                Refusal::Invalid,
                format!("invalid `tps`: must be a rate >= 0, got {tps}"),
            );
        }
        let Some(plan) = self.machine.state().plan else {
            return ControlReply::refused(Refusal::Conflict, "no test is running");
        };
        let at_ms = now_ms() + RESPLIT_DELAY.as_millis() as u64;
        if test_end(&plan).is_none_or(|(end, _)| at_ms >= end) {
            return ControlReply::refused(
                Refusal::Conflict,
                "the test is ending; nothing left to update",
            );
        }
        let (next, what) = match &change {
            RateChange::Constant(tps) => (plan.with_rate(at_ms, *tps), format!("{tps}/s")),
            RateChange::Pattern(curve) => (
                plan.with_pattern(at_ms, curve),
                format!(
                    "a new pattern for {:.3} s (peak {}/s)",
                    curve.duration(),
                    curve.peak_rate()
                ),
            ),
        };
        let at_secs = next.epoch_offset_secs();
        match self.commit(Command::set_plan(&next), "the update").await {
            Ok(()) => ControlReply {
                ok: true,
                message: format!(
                    "test {}: {what} from {at_secs:.3} s (epoch {})",
                    plan.test_id, next.epoch
                ),
                plan: Some(next),
                ..ControlReply::default()
            },
            Err(refusal) => refusal,
        }
    }

    async fn stop(&self) -> ControlReply {
        let Some(plan) = self.machine.state().plan else {
            return ControlReply::refused(Refusal::Conflict, "no test is running");
        };
        let command = Command::StopTest {
            test_id: plan.test_id.clone(),
        };
        match self.commit(command, "the stop").await {
            Ok(()) => ControlReply {
                ok: true,
                message: format!("test {} stopped", plan.test_id),
                plan: Some(plan),
                ..ControlReply::default()
            },
            Err(refusal) => refusal,
        }
    }
}

/// What an update changes the rate to.
enum RateChange {
    /// A constant rate until the test's planned end.
    Constant(f64),
    /// A new pattern replacing the rest of the test.
    Pattern(RateCurve),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Controller {
    /// The leader's duty, every tick: re-split the running test when a
    /// share holder is declared dead or a new peer is alive (the cluster
    /// keeps its total rate), and end the test once every peer is done.
    pub async fn supervise(self) {
        let mut supervisor = Supervisor::new(Arc::clone(&self.strategies));
        let mut tick = tokio::time::interval(SUPERVISE_EVERY);
        loop {
            tick.tick().await;
            if self.raft.metrics().borrow().current_leader == Some(self.me) {
                self.supervise_once(&mut supervisor).await;
            } else {
                supervisor.reset();
            }
        }
    }

    /// Probes each suspect directly; returns those that did not answer.
    async fn probe(&self, suspects: Vec<(String, String)>) -> BTreeSet<String> {
        let probes = suspects.into_iter().map(|(id, address)| async move {
            let answered = match address.parse::<SocketAddr>() {
                Ok(addr) => self
                    .network
                    .request(addr, StreamKind::Status, &[], PROBE_TIMEOUT)
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            (!answered).then_some(id)
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn supervise_once(&self, supervisor: &mut Supervisor) {
        let Some(plan) = self.machine.state().plan else {
            return;
        };
        let Some(mut status) = (self.status)() else {
            return;
        };
        let Some(tick) = supervisor.begin(&plan, &mut status, now_ms()) else {
            return;
        };
        let silent = self.probe(tick.suspects.clone()).await;
        let command = match supervisor.finish(&plan, &tick, &status, &silent, now_ms()) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("cannot re-split test {}: {e}", plan.test_id);
                return;
            }
        };
        let what = match &command {
            Command::SetPlan(next) => format!(
                "re-split at epoch {} over {:?}",
                next.epoch,
                next.shares.keys().collect::<Vec<_>>()
            ),
            _ => "ended".to_owned(),
        };
        match self.commit(command, &what).await {
            Ok(()) => tracing::info!("test {} {what}", plan.test_id),
            Err(refusal) => {
                tracing::debug!("test {} not {what}: {}", plan.test_id, refusal.message)
            }
        }
    }
}
