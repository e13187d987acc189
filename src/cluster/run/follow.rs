//! Following a distributed test from outside its peers' engines until its
//! merged report: `start --wait` does it from the command line, and a peer
//! serving the web API does it for every test the cluster runs.
//!
//! Every round asks each peer still running for the windows it has not
//! handed out yet (closed windows never change), learns the latest plan
//! from the answers (peers that join at a later epoch are followed too),
//! and keeps each incarnation's figures in a [`Collection`]. The test is
//! over when every peer has sent its final report, or, once the plan's end
//! has passed, every silent one has been silent [`LOST_AFTER`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::cluster::endpoint::{Requester, StreamKind};
use crate::cluster::run::collect::Collection;
use crate::cluster::run::plan::Plan;
use crate::cluster::run::protocol::{ControlReply, ControlRequest};
use crate::config::RunSettings;
use crate::config::definition::{parse_definition, resolve_definition};
use crate::engine::LoadModel;
use crate::export::Report;
use crate::export::merge::merge_reports;
use crate::load::{ArrivalSchedule, RateCurve};

/// A peer silent this long while a test runs is counted as lost.
pub const LOST_AFTER: Duration = Duration::from_secs(4);
/// How long one peer's figures are waited for.
pub const RESULTS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often each running peer is asked for its figures so far (a peer
/// refreshes them every 200 ms; what one holds when it dies is what the
/// report keeps of it).
pub const RESULTS_POLL: Duration = Duration::from_millis(200);
/// How often the others are asked for a silent peer's report.
pub const KEEPERS_EVERY: Duration = Duration::from_secs(1);
/// How long past its planned end and drain a test may take before the
/// follower gives up on the peers that have not finished.
const GRACE: Duration = Duration::from_secs(30);

/// A test being followed.
pub struct Follow {
    collection: Collection,
    addresses: BTreeMap<String, SocketAddr>,
    plan: Plan,
    settings: RunSettings,
    /// When the test's rate curve starts, on this process's clock.
    origin: Instant,
    /// When it ends by the latest plan.
    end: Instant,
    /// When following began (a test that ended long before is given its
    /// peers' answers all the same).
    since: Instant,
    /// Who keeps the report of each peer that left, while its pages come.
    kept_by: BTreeMap<String, SocketAddr>,
    /// The incarnations (name, generation) whose whole report came from a
    /// keeper.
    kept_whole: BTreeSet<(String, Option<u64>)>,
    /// Whether the last round got a page with more to come.
    paging: bool,
    /// When the last such page came (a long series fetched late takes
    /// its time: the deadline waits for it).
    paged_at: Instant,
    /// When the others were last asked for each silent peer's report.
    keepers_asked: BTreeMap<String, Instant>,
}

/// Why following a test stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The plan's definition does not resolve here.
    #[error("the test's definition: {0}")]
    Definition(String),
    /// Some peers never finished.
    #[error("the test did not finish in time on {0:?}")]
    Unfinished(Vec<String>),
    /// The peers' reports do not merge.
    #[error("merging reports: {0}")]
    Merge(String),
}

impl Follow {
    /// Follows the test of `plan`, whose peers are at `peers`, its rate
    /// curve starting at `origin` on this process's clock.
    pub fn new(
        plan: &Plan,
        peers: BTreeMap<String, SocketAddr>,
        origin: Instant,
    ) -> Result<Self, FollowError> {
        let settings = parse_definition(&plan.definition.settings)
            .and_then(resolve_definition)
            .map_err(|e| FollowError::Definition(e.to_string()))?;
        let mut follow = Self {
            // Every holder of every kept epoch: one that left (or was lost)
            // before this plan is still part of the test.
            collection: Collection::new(plan.holders_ever().cloned(), plan.test_start_unix_ms),
            addresses: peers,
            plan: plan.clone(),
            settings,
            origin,
            end: origin,
            since: Instant::now(),
            kept_by: BTreeMap::new(),
            kept_whole: BTreeSet::new(),
            paging: false,
            paged_at: Instant::now(),
            keepers_asked: BTreeMap::new(),
        };
        follow.end = follow.end_of(plan);
        Ok(follow)
    }

    /// The test's id.
    pub fn test_id(&self) -> &str {
        &self.plan.test_id
    }

    /// The latest plan learnt.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The test's settings, as its definition resolves.
    pub fn settings(&self) -> &RunSettings {
        &self.settings
    }

    /// The cluster's rate curve by the latest plan, rate updates applied
    /// (`None` for a definition without one).
    pub fn cluster_curve(&self) -> Option<RateCurve> {
        let LoadModel::Open { profile, .. } = &self.settings.engine.load else {
            return None;
        };
        self.plan
            .cluster_curve(&profile.curve)
            .ok()
            .or_else(|| Some(profile.curve.clone()))
    }

    /// Each incarnation's figures so far without their series.
    pub fn summaries(&mut self) -> Vec<(String, Report)> {
        self.collection.summaries()
    }

    /// The cluster's windows from second `from` on that every running
    /// peer has closed (see [`Collection::closed_from`]).
    pub fn closed_from(&self, from: u64) -> Vec<crate::metrics::WindowReport> {
        self.collection.closed_from(from, LOST_AFTER)
    }

    /// When `plan`'s curve ends on this process's clock (a curve no clock
    /// can hold ends "never", not in a panic: the plan came from a peer).
    fn end_of(&self, plan: &Plan) -> Instant {
        let curve_ms = plan.end().map_or(0, |end| {
            end.curve_ends_unix_ms
                .saturating_sub(plan.test_start_unix_ms)
        });
        self.origin
            .checked_add(Duration::from_millis(curve_ms))
            .unwrap_or(self.origin + Duration::from_secs(100 * 365 * 86_400))
    }

    /// One round: asks every peer not finished for what it has not sent.
    /// The report of one that does not answer is asked of the others,
    /// which may keep it (it left, see [`keep`](super::keep)): a peer
    /// that left during the test at once, any other once the test is over,
    /// each at most every [`KEEPERS_EVERY`]; once one answers, the rest of
    /// that report is asked of it.
    pub async fn poll(&mut self, requester: &dyn Requester) {
        self.paging = false;
        let pending = self.collection.pending();
        let asks = pending.iter().map(|node| {
            let (address, of) = match self.kept_by.get(node) {
                Some(keeper) => (Some(*keeper), Some(node.as_str())),
                None => (self.addresses.get(node).copied(), None),
            };
            let request = self.results_request(node, of);
            async move { ask(requester, address?, &request).await }
        });
        let replies = futures_util::future::join_all(asks).await;
        let mut silent = Vec::new();
        for (node, reply) in pending.into_iter().zip(replies) {
            let keeper = self.kept_by.remove(&node);
            match reply {
                Some(reply) if keeper.is_none() || reply.report.is_some() => {
                    let more = reply.more;
                    self.absorb(&node, reply);
                    if let Some(keeper) = keeper {
                        self.kept(node, keeper, more);
                    }
                }
                // Its keeper went, or no longer holds it: the others are
                // asked again.
                _ => silent.push(node),
            }
        }
        self.ask_keepers(requester, &silent).await;
    }

    /// Learns that `keeper` keeps `node`'s report: the rest of it is asked
    /// of that keeper while `more` comes; once it is all there, of nobody
    /// but `node` itself (a report its leaver handed over still running is
    /// its last word: it counts as lost once silent, as any peer does).
    fn kept(&mut self, node: String, keeper: SocketAddr, more: bool) {
        if more {
            self.kept_by.insert(node, keeper);
        } else {
            let generation = self.collection.ask(&node).generation;
            self.kept_whole.insert((node, generation));
        }
    }

    /// What to ask for `node`'s report, of `of` if it is kept for it.
    fn results_request(&self, node: &str, of: Option<&str>) -> Vec<u8> {
        let ask = self.collection.ask(node);
        serde_json::to_vec(&ControlRequest::Results {
            test_id: self.plan.test_id.clone(),
            skip: ask.skip,
            generation: ask.generation,
            of: of.map(str::to_owned),
        })
        .expect("requests serialise")
    }

    /// Whether the others are to be asked for silent `node`'s report now.
    fn keepers_due(&mut self, node: &str) -> bool {
        let now = Instant::now();
        // Once a report came whole from a keeper, its incarnation has no
        // more to say; a later one under the same name is looked for anew.
        let whole = (node.to_owned(), self.collection.ask(node).generation);
        let may =
            (self.plan.ever_departed(node) || now > self.end) && !self.kept_whole.contains(&whole);
        let due = self
            .keepers_asked
            .get(node)
            .is_none_or(|at| now.duration_since(*at) >= KEEPERS_EVERY);
        if may && due {
            self.keepers_asked.insert(node.to_owned(), now);
        }
        may && due
    }

    /// Asks the others for the reports of the `silent` peers whose turn it
    /// is (every peer at once, each asking every member that was not silent
    /// this round); takes the first each gets, and remembers who kept it.
    async fn ask_keepers(&mut self, requester: &dyn Requester, silent: &[String]) {
        let due: Vec<&String> = silent.iter().filter(|n| self.keepers_due(n)).collect();
        if due.is_empty() {
            return;
        }
        let silent_at: BTreeSet<SocketAddr> = silent
            .iter()
            .filter_map(|n| self.addresses.get(n).copied())
            .collect();
        let keepers: BTreeSet<SocketAddr> = self
            .addresses
            .values()
            .copied()
            .filter(|a| !silent_at.contains(a))
            .collect();
        let asks = due.iter().map(|node| {
            let request = self.results_request(node, Some(node));
            let keepers = &keepers;
            async move {
                let asks = keepers.iter().map(|keeper| {
                    let request = &request;
                    async move { Some((*keeper, ask(requester, *keeper, request).await?)) }
                });
                futures_util::future::join_all(asks)
                    .await
                    .into_iter()
                    .flatten()
                    .find(|(_, reply)| reply.ok && reply.report.is_some())
            }
        });
        let found = futures_util::future::join_all(asks).await;
        for (node, found) in due.into_iter().zip(found) {
            if let Some((keeper, reply)) = found {
                tracing::debug!("the report of {node}, which left, is kept by {keeper}");
                let more = reply.more;
                self.absorb(node, reply);
                self.kept(node.clone(), keeper, more);
            }
        }
    }

    fn absorb(&mut self, node: &str, reply: ControlReply) {
        for (id, address) in reply.peers {
            self.addresses.entry(id).or_insert(address);
        }
        if let Some(plan) = &reply.plan
            && plan.test_id == self.plan.test_id
            && plan.epoch > self.plan.epoch
        {
            // Answers leave the definition out: it never changes.
            let plan = Plan {
                definition: self.plan.definition.clone(),
                ..plan.clone()
            };
            self.end = self.end_of(&plan);
            self.plan = plan;
        }
        for id in reply.plan.iter().flat_map(|p| p.shares.keys()) {
            self.collection.expect(id);
        }
        if let Some(report) = reply.report {
            let held = self.collection.ask(node);
            self.collection
                .absorb(node, reply.generation, report, reply.more);
            // A page that moved the series on: the next follows at once
            // and the deadline waits for it (one that did not is asked
            // again at the next round, the deadline running).
            if reply.more && self.collection.ask(node) != held {
                self.paging = true;
                self.paged_at = Instant::now();
            }
        }
    }

    /// Learns that the cluster has closed the test (it was stopped, or ran
    /// to its end): from now on a silent peer counts as lost once it has
    /// been silent [`LOST_AFTER`], without waiting for the planned end.
    pub fn closed(&mut self) {
        self.end = self.end.min(Instant::now());
    }

    /// Whether every peer has finished, or is lost.
    pub fn is_done(&self) -> bool {
        self.collection
            .is_done(Instant::now() > self.end, LOST_AFTER)
    }

    /// The peers still not finished, once the test is far past its end
    /// (and past the time a silent peer takes to count as lost, counted
    /// from when following began: the test may have ended long before).
    pub fn overdue(&self) -> Option<Vec<String>> {
        let from = self.end.max(self.since + LOST_AFTER).max(self.paged_at);
        let deadline = from
            .checked_add(self.settings.engine.drain_timeout.saturating_add(GRACE))
            .unwrap_or(from);
        (Instant::now() > deadline).then(|| self.collection.pending())
    }

    /// Follows the test to its end, a round every [`RESULTS_POLL`].
    pub async fn to_end(mut self, requester: &dyn Requester) -> Result<Followed, FollowError> {
        loop {
            self.poll(requester).await;
            if self.is_done() {
                return self.finish();
            }
            if let Some(pending) = self.overdue() {
                return Err(FollowError::Unfinished(pending));
            }
            // Pages of a long series follow each other at once.
            if !self.paging {
                tokio::time::sleep(RESULTS_POLL).await;
            }
        }
    }

    /// The merged report of everything collected: thresholds evaluated on
    /// the merged histograms, the plan's events, what lost peers left
    /// unsent.
    pub fn finish(self) -> Result<Followed, FollowError> {
        let curve = self.cluster_curve();
        let collected = self.collection.finish(Some(&self.plan), curve.as_ref());
        let events: Vec<String> = self
            .plan
            .epoch_events()
            .into_iter()
            .chain(collected.rejoined.iter().cloned())
            .chain(collected.lost.iter().map(|l| l.event.clone()))
            .collect();
        let mut report = merge_reports(
            &collected.parts,
            &self.settings.thresholds,
            self.settings.reliable_lag,
        )
        .map_err(|e| FollowError::Merge(format!("{e:#}")))?;
        report.events = events;
        // The test's plan, whatever its peers could tell of it (a lost
        // peer's last figures do not know the plan).
        report.planned = curve
            .as_ref()
            .map(|c| ArrivalSchedule::new(c.clone()).total_arrivals());
        report.unsent =
            (!collected.lost.is_empty()).then(|| collected.lost.iter().map(|l| l.unsent).sum());
        let target_rate = mean_target_rate(&self.settings, curve.as_ref(), &report);
        Ok(Followed {
            report,
            parts: collected.parts,
            target_rate,
            settings: self.settings,
        })
    }
}

/// Sends `request` to `address`: its answer, if one came and parses.
async fn ask(
    requester: &dyn Requester,
    address: SocketAddr,
    request: &[u8],
) -> Option<ControlReply> {
    let answer = requester
        .request(address, StreamKind::Control, request, RESULTS_TIMEOUT)
        .await
        .ok()?;
    serde_json::from_slice(&answer).ok()
}

/// The instant on this process's clock of the wall-clock time
/// `start_unix_ms` (a follower's origin for a test it did not start).
pub fn origin_of(start_unix_ms: u64) -> Instant {
    let now_ms = crate::cluster::wall::unix_now_ms();
    let now = Instant::now();
    if start_unix_ms >= now_ms {
        now + Duration::from_millis(start_unix_ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - start_unix_ms))
            .unwrap_or(now)
    }
}

/// A followed test's end.
pub struct Followed {
    /// The merged report.
    pub report: Report,
    /// Each incarnation's own report.
    pub parts: Vec<(String, Report)>,
    /// The cluster's mean target rate over the measured part of the test.
    pub target_rate: Option<f64>,
    /// The test's settings.
    pub settings: RunSettings,
}

/// The mean of `curve` over the measured part of the test (after the
/// warmup, up to where a stopped test stopped).
fn mean_target_rate(
    settings: &RunSettings,
    curve: Option<&RateCurve>,
    report: &Report,
) -> Option<f64> {
    let LoadModel::Open { profile, .. } = &settings.engine.load else {
        return None;
    };
    let curve = curve?;
    let ran_until = (report.outcome == crate::export::Outcome::Stopped).then_some(report.load_secs);
    let end = ran_until.map_or(curve.duration(), |t| t.min(curve.duration()));
    let main_secs = end - profile.warmup_secs;
    Some(curve.count_between(profile.warmup_secs, end) / main_secs.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::run::plan::{Candidate, Equal, TestDefinition};
    use crate::config::RunArgs;

    /// Peers `a` (gone) and `k`, which keeps `a`'s report: answers as
    /// the control handler gives them, `k`'s own report in pages of two
    /// windows. Counts what is asked of whom.
    struct OneKeeper {
        a_kept: Report,
        k_own: Report,
        asked: parking_lot::Mutex<Vec<(u16, Option<String>)>>,
    }

    impl Requester for OneKeeper {
        fn request<'a>(
            &'a self,
            to: SocketAddr,
            _kind: StreamKind,
            body: &'a [u8],
            _timeout: Duration,
        ) -> futures_util::future::BoxFuture<'a, anyhow::Result<Vec<u8>>> {
            Box::pin(async move {
                let ControlRequest::Results { skip, of, .. } = serde_json::from_slice(body)? else {
                    anyhow::bail!("not a results request");
                };
                self.asked.lock().push((to.port(), of.clone()));
                anyhow::ensure!(to.port() == 2, "nothing answers at {to}");
                let (mut report, generation) = match of.as_deref() {
                    Some("a") => (self.a_kept.clone(), 1),
                    Some(_) => anyhow::bail!("not kept"),
                    None => (self.k_own.clone(), 2),
                };
                let (skip, budget) = if of.is_some() {
                    (0, usize::MAX)
                } else {
                    (skip, 1)
                };
                let page = crate::cluster::run::share::page_of(&mut report, skip, budget);
                Ok(serde_json::to_vec(&ControlReply {
                    ok: true,
                    report: Some(page.report),
                    more: page.more,
                    generation: Some(generation),
                    ..ControlReply::default()
                })?)
            })
        }
    }

    /// A test whose peer `a` left and handed over a report still running
    /// (its leave was cut short): the follower gets it from the keeper,
    /// stops asking the keeper, counts `a` lost once silent with those
    /// figures, and fetches `k`'s paged final report to its last window.
    #[tokio::test]
    async fn a_kept_report_is_fetched_once_and_a_running_one_is_a_loss_with_its_figures() {
        use crate::cluster::run::collect::fixtures::report;
        use crate::export::Outcome;
        let (definition, _) = TestDefinition::compile(&RunArgs {
            task: Some("noop".into()),
            tps: Some(10.0),
            duration: Some("6s".parse().unwrap()),
            ..RunArgs::default()
        })
        .unwrap();
        let peers = crate::cluster::run::plan::fixtures::candidates(&["a", "k"]);
        let start = crate::cluster::wall::unix_now_ms() - 60_000;
        let plan = Plan::first("t1", start, &Equal, &peers, definition).unwrap();
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let addresses = BTreeMap::from([("a".into(), at(1)), ("k".into(), at(2))]);
        let mut follow = Follow::new(&plan, addresses, origin_of(start)).unwrap();
        follow.closed();
        let requester = OneKeeper {
            a_kept: report(&[5, 5, 5], 0, Outcome::Running),
            k_own: report(&[5; 6], 0, Outcome::Completed),
            asked: Default::default(),
        };
        let followed = tokio::time::timeout(Duration::from_secs(20), follow.to_end(&requester))
            .await
            .expect("the follow ends")
            .expect("with a report");
        let asked = requester.asked.lock().clone();
        let of_a_at_k = asked
            .iter()
            .filter(|(port, of)| *port == 2 && of.is_some())
            .count();
        assert_eq!(of_a_at_k, 1, "the keeper is asked once: {asked:?}");
        let own_pages = asked
            .iter()
            .filter(|(port, of)| *port == 2 && of.is_none())
            .count();
        assert_eq!(own_pages, 6, "k's six windows, a page each");
        assert_eq!(
            followed.report.main.completed,
            15 + 30,
            "both peers' figures"
        );
        assert_eq!(followed.report.series.len(), 6);
        assert!(
            followed
                .report
                .events
                .iter()
                .any(|e| e.contains("peer a was lost")),
            "{:?}",
            followed.report.events
        );
    }

    /// A test that ended long before it is followed (an orchestrator back
    /// after an hour) still gets its peers' answers: it is not overdue
    /// before a silent peer has had the time to count as lost.
    #[test]
    fn a_test_that_ended_long_ago_is_not_overdue_at_once() {
        let args = RunArgs {
            task: Some("noop".into()),
            tps: Some(10.0),
            duration: Some("2s".parse().unwrap()),
            ..RunArgs::default()
        };
        let (definition, _) = TestDefinition::compile(&args).unwrap();
        let peer = Candidate {
            id: "a".into(),
            weight: 1.0,
            cores: 1,
            cpu_percent: 0.0,
        };
        let an_hour_ago = crate::cluster::wall::unix_now_ms() - 3_600_000;
        let plan = Plan::first("t1", an_hour_ago, &Equal, &[peer], definition).unwrap();
        let mut follow = Follow::new(&plan, BTreeMap::new(), origin_of(an_hour_ago)).unwrap();
        follow.closed();
        assert!(follow.overdue().is_none(), "given its peers' answers first");
        assert!(!follow.is_done(), "and a silent peer is waited for a while");
    }
}
