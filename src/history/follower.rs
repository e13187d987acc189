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
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::baseline;
use super::recorder::{Recorded, Recorder};
use super::store::{Provenance, RecordedRun};
use crate::cluster::endpoint::{Requester, StreamKind};
use crate::cluster::run::control::Controller;
use crate::cluster::run::follow::{Follow, origin_of};
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
    // Tests that could not be followed (a definition this binary cannot
    // read, peers long gone): not tried again by this process.
    let mut abandoned: BTreeSet<String> = BTreeSet::new();
    let mut store_was_away = false;
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        recorder.flush().await;
        let cluster = status.borrow().clone();
        for plan in ended_tests(&controller, &cluster).await {
            if abandoned.contains(&plan.test_id) {
                continue;
            }
            match recorder.knows(&plan.test_id).await {
                Ok(true) => continue,
                Ok(false) => store_was_away = false,
                Err(e) => {
                    // Nothing is known of what is recorded: try later.
                    if !store_was_away {
                        tracing::warn!("history: {e}; tests are recorded when it is back");
                        store_was_away = true;
                    }
                    break;
                }
            }
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
                Err(why) => {
                    tracing::warn!("history: test {} not recorded: {why}", plan.test_id);
                    abandoned.insert(plan.test_id.clone());
                }
            }
        }
    }
}

/// The tests this node and every live member saw end, each with the
/// latest plan any of them knows, oldest first.
async fn ended_tests(controller: &Controller, cluster: &ClusterStatus) -> Vec<Plan> {
    let request = serde_json::to_vec(&ControlRequest::Ended).expect("requests serialise");
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
                Some(reply.ended)
            }
        });
    let theirs = futures_util::future::join_all(asks).await;
    let mut latest: BTreeMap<String, Plan> = BTreeMap::new();
    for plan in controller
        .ledger
        .ended()
        .into_iter()
        .chain(theirs.into_iter().flatten().flatten())
    {
        match latest.get(&plan.test_id) {
            Some(known) if known.epoch >= plan.epoch => {}
            _ => {
                latest.insert(plan.test_id.clone(), plan);
            }
        }
    }
    let mut plans: Vec<Plan> = latest.into_values().collect();
    plans.sort_by_key(|p| (p.test_start_unix_ms, p.test_id.clone()));
    plans
}

/// Follows the ended test of `plan` to its merged report, as a run to
/// record (judged against its baseline, if it names one).
async fn follow_ended(
    plan: &Plan,
    controller: &Controller,
    cluster: &ClusterStatus,
    recorder: &Recorder,
) -> Result<RecordedRun, String> {
    let peers = cluster
        .members
        .iter()
        .map(|m| (m.id.clone(), m.address))
        .collect();
    let mut follow =
        Follow::new(plan, peers, origin_of(plan.test_start_unix_ms)).map_err(|e| e.to_string())?;
    follow.closed();
    let followed = follow.to_end(controller).await.map_err(|e| e.to_string())?;
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
        Ok(None) => None,
        Err(e) => return baseline::not_judged(report, &settings.thresholds, &e.to_string()),
    };
    baseline::judge(
        report,
        &settings.thresholds,
        parsed.as_ref().map(|(id, r)| (id.as_str(), r)),
    );
}
