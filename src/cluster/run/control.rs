//! Control commands from any node: start and stop a distributed test, and
//! fetch a peer's report. A peer that is not the Raft leader forwards
//! start and stop to the leader, so a client may talk to any peer.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::cluster::consensus::store::StateMachine;
use crate::cluster::consensus::{self, Command, CommandResponse, CommitError, Raft, RecordLease};
use crate::cluster::endpoint::{Network, Requester, StreamKind};
use crate::cluster::run::figures::TestFigures;
use crate::cluster::run::keep::{Handover, Kept};
use crate::cluster::run::ledger::Ledger;
use crate::cluster::run::plan::{
    DistributionStrategy, Plan, PlanError, Strategies, TestDefinition, check_corners,
};
use crate::cluster::run::protocol::{ControlReply, ControlRequest, Refusal};
use crate::cluster::run::runner::{self, Quorum};
use crate::cluster::run::share::Results;
use crate::cluster::run::supervise::{PROBE_TIMEOUT, Prober, RESPLIT_DELAY, candidates};
use crate::cluster::status::{ClusterStatus, Liveness, StatusSource};
use crate::cluster::wall::unix_now_ms;
use crate::config::RunArgs;
use crate::engine::TaskRegistry;
use crate::export::Report;
use crate::load::{MAX_RATE, RateCurve};

/// How long the leader waits for a command to commit: a leader cut off in
/// a minority cannot commit, and must answer rather than hang.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How far in the future a test starts, so every peer has the plan (and
/// its instances set up) before the first arrival is due.
pub const START_DELAY: Duration = Duration::from_millis(1_500);

/// Who a start came from: its request id and its author.
struct StartIds {
    request_id: String,
    started_by: String,
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
    /// The tests it saw end.
    pub ledger: Ledger,
    /// The reports it keeps for peers that left.
    pub kept: Kept,
    /// Its current view of the cluster.
    pub status: Arc<dyn StatusSource>,
}

impl Controller {
    /// Answers control requests on the endpoint.
    pub fn serve(self: Arc<Self>) {
        let network = self.network.clone();
        network.serve_requests(
            StreamKind::Control,
            Arc::new(move |body: Bytes| {
                let this = Arc::clone(&self);
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

    /// Answers `request` as this peer answers it on its endpoint
    /// (forwarding to the leader what the leader must do).
    pub async fn answer(&self, request: ControlRequest) -> ControlReply {
        let raw = serde_json::to_vec(&request).expect("requests serialise");
        self.handle(request, &raw).await
    }

    async fn handle(&self, request: ControlRequest, raw: &[u8]) -> ControlReply {
        if let ControlRequest::Results {
            test_id,
            skip,
            generation,
            of,
        } = &request
        {
            return self
                .results(test_id, *skip, *generation, of.as_deref())
                .await;
        }
        if let ControlRequest::Keep(page) = request {
            return self.keep(*page);
        }
        if let ControlRequest::Figures = request {
            return self.figures().await;
        }
        if let ControlRequest::Ended { test_id } = &request {
            return match test_id {
                None => ControlReply {
                    ok: true,
                    ended: self.ledger.ended(),
                    ..ControlReply::default()
                },
                Some(id) => match self.ledger.plan(id) {
                    Some(plan) => ControlReply {
                        ok: true,
                        plan: Some(plan),
                        ..ControlReply::default()
                    },
                    None => ControlReply::refused(
                        Refusal::Unavailable,
                        format!("this peer remembers no ended test {id}"),
                    ),
                },
            };
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
                            Refusal::Uncertain,
                            format!("bad reply from the leader: {e}"),
                        )
                    }),
                    // It may have arrived and been done.
                    Err(e) => ControlReply::refused(
                        Refusal::Uncertain,
                        format!("no answer from the leader: {e:#}"),
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
                started_by,
            } => {
                let ids = StartIds {
                    request_id,
                    started_by,
                };
                self.start(*run, &distribution, ids).await
            }
            ControlRequest::Stop => self.stop().await,
            ControlRequest::Lease(lease) => self.lease(lease).await,
            ControlRequest::Update(tps) => self.update(RateChange::Constant(tps)).await,
            ControlRequest::UpdatePattern(points) => {
                // Checked before the curve is built: its size is the limit.
                let curve = check_corners(points.len())
                    .and_then(|()| RateCurve::new(points).map_err(|e| e.to_string()));
                match curve {
                    Ok(curve) if curve.duration() > 0.0 => {
                        self.update(RateChange::Pattern(curve)).await
                    }
                    Ok(_) => {
                        ControlReply::refused(Refusal::Invalid, "the new pattern lasts no time")
                    }
                    Err(e) => {
                        ControlReply::refused(Refusal::Invalid, format!("invalid pattern: {e}"))
                    }
                }
            }
            ControlRequest::CurrentPlan => ControlReply {
                ok: true,
                plan: self.machine.state().plan,
                ..ControlReply::default()
            },
            ControlRequest::Results { .. }
            | ControlRequest::Keep(_)
            | ControlRequest::Figures
            | ControlRequest::Ended { .. } => {
                unreachable!("answered before forwarding")
            }
        }
    }

    /// A page of this peer's report of `test_id` (or of `of`'s, a peer
    /// that left and handed it here), its series from window `skip` on if
    /// the client holds those of incarnation `generation`.
    async fn results(
        &self,
        test_id: &str,
        skip: usize,
        generation: Option<u64>,
        of: Option<&str>,
    ) -> ControlReply {
        let status = self.status.status().await;
        let me = status.as_ref().map(|s| s.node.as_str());
        let other = of.filter(|node| Some(*node) != me);
        let (answer, incarnation) = match other {
            Some(node) => match self.kept.page(test_id, node, skip, generation) {
                Some(kept) => (Ok(kept.page), kept.generation),
                None => (Err(format!("no report of {node} is kept here")), None),
            },
            None => {
                // Windows of another incarnation say nothing of this one's.
                let skip = if generation.is_none_or(|g| g == self.generation) {
                    skip
                } else {
                    0
                };
                let own = self
                    .results
                    .lock()
                    .get_mut(test_id)
                    .map(|result| result.page_after(skip));
                let answer = match own {
                    Some(Ok(page)) => Ok(page),
                    Some(Err(e)) => Err(format!("this peer's run failed: {e}")),
                    None => Err("no report yet".to_owned()),
                };
                (answer, Some(self.generation))
            }
        };
        let mut reply = match answer {
            Ok(page) => ControlReply {
                ok: true,
                report: Some(page.report),
                more: page.more,
                ..ControlReply::default()
            },
            Err(e) => ControlReply::refused(Refusal::Unavailable, e),
        };
        // Also say who runs the test now, so a waiting client learns of
        // peers that joined it at a later epoch.
        // Its epochs and rate updates, not its definition: the client has
        // that, and a long curve would swell every answer.
        reply.plan = self
            .machine
            .state()
            .plan
            .filter(|p| p.test_id == test_id)
            .map(|mut p| {
                p.definition.curve.clear();
                p.definition.settings.clear();
                p
            });
        reply.peers = status
            .map(|s| s.members.into_iter().map(|m| (m.id, m.address)).collect())
            .unwrap_or_default();
        reply.generation = incarnation;
        reply
    }

    /// Keeps a page of the report of a peer leaving `page.test_id`, a test
    /// it holds or held a share of.
    fn keep(&self, page: Handover) -> ControlReply {
        let plan = self
            .machine
            .state()
            .plan
            .filter(|p| p.test_id == page.test_id)
            .or_else(|| self.ledger.plan(&page.test_id));
        let Some(plan) = plan else {
            return ControlReply::refused(
                Refusal::Invalid,
                format!("this peer knows no test {}", page.test_id),
            );
        };
        if !plan.ever_held(&page.node) {
            return ControlReply::refused(
                Refusal::Invalid,
                format!("{} holds no share of test {}", page.node, page.test_id),
            );
        }
        match self.kept.take(page) {
            Ok(()) => ControlReply {
                ok: true,
                ..ControlReply::default()
            },
            Err(e) => ControlReply::refused(Refusal::Invalid, e),
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
        let Some(status) = self.status.status().await else {
            return ControlReply::refused(Refusal::Retry, "membership not known yet; retry");
        };
        let others: Vec<(String, SocketAddr)> = status
            .members
            .iter()
            .filter(|m| m.state != Liveness::Dead && m.id != status.node)
            .map(|m| (m.id.clone(), m.address))
            .collect();
        let own = self
            .results
            .lock()
            .get_mut(&test_id)
            .and_then(|result| result.page_after(usize::MAX).ok())
            .map(|page| (status.node.clone(), page.report));
        let mut parts = fetch_summaries(&self.network, &test_id, &others, None).await;
        parts.extend(own);
        // Those that held a share and have gone: their reports as handed
        // over, here or on another member.
        let plan = state
            .plan
            .clone()
            .or_else(|| self.ledger.plan(&test_id))
            .filter(|p| p.test_id == test_id);
        let gone: BTreeSet<String> = plan
            .iter()
            .flat_map(Plan::holders_ever)
            .filter(|n| !parts.iter().any(|(id, _)| id == *n))
            .cloned()
            .collect();
        let (here, elsewhere): (Vec<_>, Vec<_>) = gone
            .into_iter()
            .map(|node| {
                let kept = self.kept.page(&test_id, &node, usize::MAX, None);
                (node, kept.map(|kept| kept.page.report))
            })
            .partition(|(_, kept)| kept.is_some());
        parts.extend(
            here.into_iter()
                .filter_map(|(node, kept)| Some((node, kept?))),
        );
        let asks = elsewhere.iter().map(|(node, _)| {
            let others = &others;
            let test_id = &test_id;
            async move {
                let kept = fetch_summaries(&self.network, test_id, others, Some(node)).await;
                Some((node.clone(), kept.into_iter().next()?.1))
            }
        });
        parts.extend(
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flatten(),
        );
        match TestFigures::merge(&test_id, parts, &holders) {
            Ok(figures) => ControlReply {
                ok: true,
                figures: Some(figures),
                ..ControlReply::default()
            },
            Err(e) => ControlReply::refused(Refusal::Unavailable, e),
        }
    }

    async fn start(&self, args: RunArgs, strategy_name: &str, ids: StartIds) -> ControlReply {
        if let Some(plan) = self.machine.state().plan
            && !ids.request_id.is_empty()
            && plan.request_id == ids.request_id
        {
            // A retry of the start that made this test: its answer again.
            return self.started(plan).await;
        }
        let strategy = match self.strategies.named(strategy_name) {
            Ok(strategy) => strategy,
            Err(e) => return ControlReply::refused(Refusal::Invalid, e),
        };
        let (definition, settings) = match TestDefinition::compile(&args) {
            Ok(compiled) => compiled,
            Err(e) => return ControlReply::refused(Refusal::Invalid, e),
        };
        if let Err(e) = self.registry.build(&settings.task) {
            return ControlReply::refused(Refusal::Invalid, format!("{e:#}"));
        }
        let Some(status) = self.status.status().await else {
            return ControlReply::refused(Refusal::Retry, "membership not known yet; retry");
        };
        let plan = match first_epoch(&status, strategy.as_ref(), definition, unix_now_ms()) {
            Ok(plan) => Plan {
                request_id: ids.request_id,
                started_by: ids.started_by,
                ..plan
            },
            Err(e) => return ControlReply::refused(Refusal::Unavailable, e.to_string()),
        };
        match self.commit(Command::set_plan(&plan), "the plan").await {
            Ok(_) => self.started(plan).await,
            Err(refusal) => refusal,
        }
    }

    /// The answer to a start that made `plan`: the plan and the live peers.
    async fn started(&self, plan: Plan) -> ControlReply {
        let peers = self
            .status
            .status()
            .await
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

    /// Commits `command` within [`COMMIT_TIMEOUT`]: the state machine's
    /// answer, or a refusal saying why not.
    async fn commit(&self, command: Command, what: &str) -> Result<CommandResponse, ControlReply> {
        consensus::commit(&self.raft, command, COMMIT_TIMEOUT)
            .await
            .map_err(|e| match e {
                CommitError::Refused(message) => ControlReply::refused(Refusal::Conflict, message),
                // A commit that timed out may still be applied.
                e => ControlReply::refused(
                    Refusal::Uncertain,
                    format!("could not confirm the commit of {what}: {e}"),
                ),
            })
    }

    async fn update(&self, change: RateChange) -> ControlReply {
        if let RateChange::Constant(tps) = change
            && !(tps.is_finite() && (0.0..=MAX_RATE).contains(&tps))
        {
            return ControlReply::refused(
                Refusal::Invalid,
                format!("invalid `tps`: must be a rate from 0 to {MAX_RATE}, got {tps}"),
            );
        }
        let Some(plan) = self.machine.state().plan else {
            return ControlReply::refused(Refusal::Conflict, "no test is running");
        };
        let (next, what) = match next_epoch(&plan, &change, unix_now_ms()) {
            Ok(next) => next,
            Err(e) => return ControlReply::refused(Refusal::Conflict, e),
        };
        let at_secs = next.epoch_offset_secs();
        match self.commit(Command::set_plan(&next), "the update").await {
            Ok(_) => ControlReply {
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

    async fn lease(&self, lease: RecordLease) -> ControlReply {
        match self.commit(Command::LeaseRecords(lease), "the lease").await {
            Ok(answer) => ControlReply {
                ok: true,
                leased: answer.leased,
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
            Ok(_) => ControlReply {
                ok: true,
                message: format!("test {} stopped", plan.test_id),
                plan: Some(plan),
                ..ControlReply::default()
            },
            Err(refusal) => refusal,
        }
    }
}

impl Prober for Controller {
    fn probe(&self, to: SocketAddr) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            self.network
                .request(to, StreamKind::Status, &[], PROBE_TIMEOUT)
                .await
                .is_ok()
        })
    }
}

impl Quorum for Controller {
    fn cut_off(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let voters = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            let status = self.status.status().await;
            status.is_some_and(|status| runner::cut_off(&status, &voters))
        })
    }

    fn leader_plan(&self) -> BoxFuture<'_, Option<Option<Plan>>> {
        Box::pin(Controller::leader_plan(self))
    }
}

/// The first epoch of a test started at `now_ms`: `definition` split by
/// `strategy` over the members `status` shows alive, from [`START_DELAY`]
/// on. The simulation starts its tests with this too.
pub fn first_epoch(
    status: &ClusterStatus,
    strategy: &dyn DistributionStrategy,
    definition: TestDefinition,
    now_ms: u64,
) -> Result<Plan, PlanError> {
    let live: Vec<_> = status
        .members
        .iter()
        .filter(|m| m.state == Liveness::Alive)
        .collect();
    Plan::first(
        &format!("t{now_ms}"),
        now_ms + START_DELAY.as_millis() as u64,
        strategy,
        &candidates(&live),
        definition,
    )
}

/// The epoch after `plan` that makes `change` from [`RESPLIT_DELAY`] after
/// `now_ms`, and how to describe the change; `Err` if the test is ending.
/// The simulation updates its tests' rates with this too.
pub fn next_epoch(plan: &Plan, change: &RateChange, now_ms: u64) -> Result<(Plan, String), String> {
    let at_ms = now_ms + RESPLIT_DELAY.as_millis() as u64;
    if plan.end().is_none_or(|end| at_ms >= end.curve_ends_unix_ms) {
        return Err("the test is ending; nothing left to update".into());
    }
    let (next, what) = match change {
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
    // The curve the update makes must be one every peer can follow: one
    // past the highest rate or the longest test would be committed, then
    // followed by no one, and the test could no longer end.
    let base = next.base_curve().map_err(|e| e.to_string())?;
    let curve = next.cluster_curve(&base).map_err(|e| {
        let e = match e {
            PlanError::Curve(e) => e.to_string(),
            e => e.to_string(),
        };
        format!("the test's rate curve after {what} would be invalid: {e}")
    })?;
    // Every update rides in the plan, so in every Raft entry: their points
    // together are bounded as one curve's are.
    let carried: usize = next.rate_updates.iter().map(|u| u.points.len() + 1).sum();
    check_corners(curve.points().len().max(carried))?;
    Ok((next, what))
}

/// What an update changes the rate to.
pub enum RateChange {
    /// A constant rate until the test's planned end.
    Constant(f64),
    /// A new pattern replacing the rest of the test.
    Pattern(RateCurve),
}

/// How long the answering node waits for each participant's report.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// Fetches `test_id`'s report so far without its series from each of
/// `members` (id and address), or the one each keeps of `of` (a peer that
/// left): what answers, by the id asked.
async fn fetch_summaries(
    network: &Network,
    test_id: &str,
    members: &[(String, SocketAddr)],
    of: Option<&str>,
) -> Vec<(String, Report)> {
    let request = serde_json::to_vec(&ControlRequest::Results {
        test_id: test_id.to_owned(),
        skip: usize::MAX,
        generation: None,
        of: of.map(str::to_owned),
    })
    .expect("requests serialise");
    let asks = members.iter().map(|(id, addr)| {
        let request = &request;
        async move {
            let answer = network
                .request(*addr, StreamKind::Control, request, FETCH_TIMEOUT)
                .await
                .ok()?;
            let reply: ControlReply = serde_json::from_slice(&answer).ok()?;
            Some((id.clone(), reply.report?))
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Requests to this peer itself are answered here, the others sent out
/// (a follower on a peer asks every participant, itself included).
impl Requester for Controller {
    fn request<'a>(
        &'a self,
        to: SocketAddr,
        kind: StreamKind,
        body: &'a [u8],
        timeout: Duration,
    ) -> BoxFuture<'a, anyhow::Result<Vec<u8>>> {
        Box::pin(async move {
            if kind == StreamKind::Control && to == self.network.identity().advertise {
                let request: ControlRequest = serde_json::from_slice(body)?;
                let reply = self.handle(request, body).await;
                return Ok(serde_json::to_vec(&reply)?);
            }
            self.network.request(to, kind, body, timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::run::plan::{Equal, fixtures::candidates};
    use crate::config::RunArgs;

    /// An update is refused, not committed, if the curve it makes is one
    /// no peer could follow.
    #[test]
    fn an_update_making_a_curve_no_peer_can_follow_is_refused() {
        let (definition, _) = TestDefinition::compile(&RunArgs {
            task: Some("noop".into()),
            tps: Some(10.0),
            duration: Some("60s".parse().unwrap()),
            ..RunArgs::default()
        })
        .unwrap();
        let plan = Plan::first("t1", 0, &Equal, &candidates(&["a", "b"]), definition).unwrap();
        let (next, _) = next_epoch(&plan, &RateChange::Constant(20.0), 10_000).unwrap();
        assert_eq!(next.epoch, plan.epoch + 1);
        let too_fast = next_epoch(&plan, &RateChange::Constant(1e300), 10_000).unwrap_err();
        assert!(too_fast.contains("would be invalid"), "{too_fast}");
        let month = RateCurve::constant(5.0, 31.0 * 86_400.0).unwrap();
        let too_long = next_epoch(&plan, &RateChange::Pattern(month), 10_000).unwrap_err();
        assert!(too_long.contains("31 days"), "{too_long}");
        // Every update rides in the plan: two patterns of 15 000 corners
        // each are past the bound on a curve's, though the second cuts
        // the first short.
        let corners = |n: usize| {
            let points = (0..n)
                .map(|i| crate::load::RatePoint {
                    at: i as f64 / 1000.0,
                    rate: (i % 7) as f64,
                })
                .collect();
            RateChange::Pattern(RateCurve::new(points).unwrap())
        };
        let (next, _) = next_epoch(&plan, &corners(15_000), 10_000).unwrap();
        let refused = next_epoch(&next, &corners(15_000), 12_000).unwrap_err();
        assert!(refused.contains("corners"), "{refused}");
    }
}
