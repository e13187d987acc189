//! What an orchestrator does with its store: every test the cluster ends
//! is followed to its merged report and recorded, once.
//!
//! One path for every test: the tests that ended are learnt from the
//! ledgers of this node and of every live member (so tests that ended while
//! the orchestrator was away are found too), each one not yet recorded is
//! followed like `start --wait` follows a test (each peer hands over its
//! final report), judged against its baseline if it names one, and handed
//! to the [`Recorder`]. The store's unique test id makes "once" hold across
//! restarts and several orchestrators.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::baseline;
use super::recorder::{Recorded, Recorder};
use super::store::{Provenance, RecordedRun};
use crate::cluster::endpoint::{Requester, StreamKind};
use crate::cluster::run::control::Controller;
use crate::cluster::run::follow::{Follow, FollowError, origin_of};
use crate::cluster::run::plan::Plan;
use crate::cluster::run::protocol::{ControlReply, ControlRequest};
use crate::cluster::status::{ClusterStatus, Liveness};

/// How often the ledgers are read and waiting runs written.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How long a member's ledger is waited for.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Records every test the cluster ends, until the runtime stops.
pub async fn record_cluster(
    recorder: Arc<Recorder>,
    controller: Arc<Controller>,
    status: watch::Receiver<Arc<ClusterStatus>>,
) {
    // Tests that cannot be recorded (a definition this binary cannot
    // read, no peer left with a report): not tried again by this process.
    let mut abandoned: BTreeSet<String> = BTreeSet::new();
    let mut store_was_away = false;
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        recorder.flush().await;
        let cluster = status.borrow().clone();
        for ended in ended_tests(&controller, &cluster).await {
            if abandoned.contains(&ended.test_id) {
                continue;
            }
            match recorder.knows(&ended.test_id).await {
                Ok(true) => continue,
                Ok(false) => store_was_away = false,
                // Not known to be recorded: followed all the same, and
                // queued until the store is back (the queue and the
                // store's unique id keep it once).
                Err(e) => {
                    if !store_was_away {
                        tracing::warn!("history: {e}; finished tests wait for it");
                        store_was_away = true;
                    }
                }
            }
            let Some(plan) = plan_of(&ended, &controller).await else {
                continue;
            };
            match follow_ended(&plan, &controller, &cluster, &recorder).await {
                Ok(run) => {
                    let id = run.summary.id.clone();
                    match recorder.record(run).await {
                        Recorded::Written => tracing::info!("history: recorded test {id}"),
                        Recorded::AlreadyThere => {}
                        Recorded::Waiting(why) => {
                            tracing::warn!("history: test {id} waits for the store: {why}");
                        }
                        Recorded::Refused(why) => {
                            tracing::warn!("history: test {id} not recorded: {why}");
                            abandoned.insert(id);
                        }
                    }
                }
                Err(Unrecorded::Later(why)) => {
                    tracing::info!("history: test {} not followed yet: {why}", plan.test_id);
                }
                Err(Unrecorded::Never(why)) => {
                    tracing::warn!("history: test {} not recorded: {why}", plan.test_id);
                    abandoned.insert(plan.test_id.clone());
                }
            }
        }
    }
}

/// Why a test was not recorded this time.
enum Unrecorded {
    /// Its peers have not all answered: asked again at the next look.
    Later(String),
    /// It cannot be (its definition does not resolve, nothing merges).
    Never(String),
}

/// A test some member saw end, and who to ask for its plan.
struct Ended {
    test_id: String,
    epoch: u64,
    /// The member that saw its latest epoch (`None`: this node).
    holder: Option<SocketAddr>,
}

/// The tests this node and every live member saw end, each with the
/// member that saw its latest epoch, oldest first.
async fn ended_tests(controller: &Controller, cluster: &ClusterStatus) -> Vec<Ended> {
    let request =
        serde_json::to_vec(&ControlRequest::Ended { test_id: None }).expect("requests serialise");
    let asks = cluster
        .members
        .iter()
        .filter(|m| m.state == Liveness::Alive && m.id != cluster.node)
        .map(|m| {
            let request = &request;
            async move {
                let answer = controller
                    .request(m.address, StreamKind::Control, request, LEDGER_TIMEOUT)
                    .await
                    .ok()?;
                let reply: ControlReply = serde_json::from_slice(&answer).ok()?;
                Some((m.address, reply.ended))
            }
        });
    let theirs = futures_util::future::join_all(asks).await;
    let own = controller.ledger.ended().into_iter().map(|t| (None, t));
    let others = theirs
        .into_iter()
        .flatten()
        .flat_map(|(addr, ended)| ended.into_iter().map(move |t| (Some(addr), t)));
    let mut latest: BTreeMap<String, Ended> = BTreeMap::new();
    for (holder, test) in own.chain(others) {
        match latest.get(&test.test_id) {
            Some(known) if known.epoch >= test.epoch => {}
            _ => {
                latest.insert(
                    test.test_id.clone(),
                    Ended {
                        test_id: test.test_id,
                        epoch: test.epoch,
                        holder,
                    },
                );
            }
        }
    }
    // Test ids are `t` and the start in Unix ms: in id order is oldest first.
    latest.into_values().collect()
}

/// The last plan of `ended`, from this node's ledger or its holder's.
async fn plan_of(ended: &Ended, controller: &Controller) -> Option<Plan> {
    let Some(holder) = ended.holder else {
        return controller.ledger.plan(&ended.test_id);
    };
    let request = serde_json::to_vec(&ControlRequest::Ended {
        test_id: Some(ended.test_id.clone()),
    })
    .expect("requests serialise");
    let answer = controller
        .request(holder, StreamKind::Control, &request, LEDGER_TIMEOUT)
        .await
        .ok()?;
    let reply: ControlReply = serde_json::from_slice(&answer).ok()?;
    reply.plan.filter(|p| p.test_id == ended.test_id)
}

/// Follows the ended test of `plan` to its merged report, as a run to
/// record (judged against its baseline, if it names one).
async fn follow_ended(
    plan: &Plan,
    controller: &Controller,
    cluster: &ClusterStatus,
    recorder: &Recorder,
) -> Result<RecordedRun, Unrecorded> {
    let peers = cluster
        .members
        .iter()
        .map(|m| (m.id.clone(), m.address))
        .collect();
    let mut follow = Follow::new(plan, peers, origin_of(plan.test_start_unix_ms))
        .map_err(|e| Unrecorded::Never(e.to_string()))?;
    follow.closed();
    let followed = follow.to_end(controller).await.map_err(|e| match e {
        FollowError::Unfinished(_) => Unrecorded::Later(e.to_string()),
        e => Unrecorded::Never(e.to_string()),
    })?;
    let settings = &followed.settings;
    let mut report = followed.report;
    if let Some(choice) = &settings.baseline {
        judge_against(&mut report, choice, plan, settings, recorder).await;
    }
    let from = Provenance {
        id: &plan.test_id,
        name: &settings.test_name,
        started_by: &plan.started_by,
        definition: plan.definition.settings.clone(),
    };
    Ok(RecordedRun::new(from, &report, followed.target_rate))
}

/// Judges `report`'s relative thresholds against the `choice` run in the
/// store; a store that cannot answer fails them, saying so.
async fn judge_against(
    report: &mut crate::export::Report,
    choice: &baseline::Baseline,
    plan: &Plan,
    settings: &crate::config::RunSettings,
    recorder: &Recorder,
) {
    let found = baseline::pick(
        recorder.store().as_ref(),
        choice,
        &settings.test_name,
        plan.test_start_unix_ms as i64,
        &plan.test_id,
    )
    .await;
    let parsed = match found {
        Ok(Some(run)) => match run.parsed_report() {
            Ok(parsed) => Some((run.summary.id, parsed)),
            Err(e) => return baseline::not_judged(report, &settings.thresholds, &e.to_string()),
        },
        Ok(None) if matches!(choice, baseline::Baseline::Run(_)) => {
            let why = format!("baseline run '{choice}' is not in the history");
            return baseline::not_judged(report, &settings.thresholds, &why);
        }
        Ok(None) => None,
        Err(e) => return baseline::not_judged(report, &settings.thresholds, &e.to_string()),
    };
    baseline::judge(
        report,
        &settings.thresholds,
        parsed.as_ref().map(|(id, r)| (id.as_str(), r)),
    );
}
