//! The reports a peer that left handed to the peers that stay.
//!
//! A peer that leaves gracefully hands its report of the running (or last)
//! test to a few staying members before it goes ([`keepers`]), with the
//! reports it keeps for earlier leavers, so whoever comes for the figures
//! after it has gone still finds them: an orchestrator recording the test
//! once it ends, `status` on any node. A follower asks the others for the
//! report of a peer that no longer answers (a `Results` request naming
//! it in `of`). Reports travel in pages of at most
//! [`PAGE_BYTES`] of series, as every answer
//! does; a keeper answers only with a report all of whose pages came.
//! That report is the leaver's last word: a final one if its run ended at
//! the hand-over, its figures so far if its leave was cut short (then a
//! follower counts it lost, with those figures).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::cluster::endpoint::{Requester, StreamKind};
use crate::cluster::run::protocol::{ControlReply, ControlRequest};
use crate::cluster::run::share::{PAGE_BYTES, Page, page_of};
use crate::cluster::status::{ClusterStatus, Liveness};
use crate::export::Report;

/// How many members a leaver hands its reports to (every orchestrator is
/// one of them; peers make up the rest).
pub const KEEPERS: usize = 3;
/// How many tests' reports a keeper holds: the newest ones.
const KEPT_TESTS: usize = 4;
/// Most windows kept of one report: two days of seconds.
const MAX_WINDOWS: usize = 2 * 86_400;
/// Most pages a keeper holds in all: each carries at most a message's
/// worth (1 MiB), [`PAGE_BYTES`] of series as a peer sends them, so this
/// bounds what leavers (or a misbehaving member) make it keep.
const MAX_PAGES: usize = 512;
/// How long one page is waited for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a hand-over may take in all: with the leave's 20 s and its
/// 2 s linger, within Kubernetes' default 30 s grace period.
pub const HAND_OVER_WITHIN: Duration = Duration::from_secs(5);

/// One page of a report handed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handover {
    /// The test.
    pub test_id: String,
    /// The peer whose report it is.
    pub node: String,
    /// Its incarnation.
    pub generation: Option<u64>,
    /// Where in the whole series this page's first window is.
    pub from: usize,
    /// Whether pages follow.
    pub more: bool,
    /// The report, its series cut to the page's windows.
    pub report: Report,
}

/// A report held for a peer that left.
#[derive(Debug, Clone)]
struct Held {
    generation: Option<u64>,
    report: Report,
    /// Every page has come.
    whole: bool,
    /// How many pages it took.
    pages: usize,
}

/// The reports this peer keeps for peers that left: test id → node →
/// report.
#[derive(Clone, Default)]
pub struct Kept {
    tests: Arc<Mutex<BTreeMap<String, BTreeMap<String, Held>>>>,
}

/// A report this peer keeps, as a follower gets it.
#[derive(Debug, Clone)]
pub struct KeptPage {
    /// The leaver's incarnation.
    pub generation: Option<u64>,
    /// The page.
    pub page: Page,
}

impl Kept {
    /// Takes one page of a report. The first page (`from` 0) starts it
    /// anew; each next one must follow the last; a page already taken is
    /// acknowledged again (a retry after a lost answer).
    pub fn take(&self, page: Handover) -> Result<(), String> {
        let mut tests = self.tests.lock();
        let test_id = page.test_id.clone();
        let pages = make_room(&mut tests, &test_id);
        let held = tests.entry(test_id.clone()).or_default();
        let taken = take_into(held, page, pages);
        if held.is_empty() {
            tests.remove(&test_id);
        }
        // Test ids are `t` and their start in Unix ms: the first are the
        // oldest.
        while tests.len() > KEPT_TESTS {
            tests.pop_first();
        }
        taken
    }

    /// A page of `node`'s report of `test_id`, if this peer holds it
    /// whole: its series from window `skip` on if the asker holds those
    /// of incarnation `generation`, from the first if not.
    pub fn page(
        &self,
        test_id: &str,
        node: &str,
        skip: usize,
        generation: Option<u64>,
    ) -> Option<KeptPage> {
        let mut tests = self.tests.lock();
        let held = tests.get_mut(test_id)?.get_mut(node).filter(|h| h.whole)?;
        let skip = if generation.is_none_or(|g| Some(g) == held.generation) {
            skip
        } else {
            0
        };
        Some(KeptPage {
            generation: held.generation,
            page: page_of(&mut held.report, skip, PAGE_BYTES),
        })
    }

    /// Every report of `test_id` held whole: node, incarnation, report.
    pub fn reports(&self, test_id: &str) -> Vec<(String, Option<u64>, Report)> {
        let tests = self.tests.lock();
        tests
            .get(test_id)
            .into_iter()
            .flatten()
            .filter(|(_, h)| h.whole)
            .map(|(node, h)| (node.clone(), h.generation, h.report.clone()))
            .collect()
    }
}

/// Frees pages for a page of `test_id` when the keeper holds
/// [`MAX_PAGES`]: first the reports of other tests that will never be
/// whole (their hand-over was cut short), then the oldest other tests.
/// How many pages it holds then.
fn make_room(tests: &mut BTreeMap<String, BTreeMap<String, Held>>, test_id: &str) -> usize {
    let count = |tests: &BTreeMap<String, BTreeMap<String, Held>>| -> usize {
        tests
            .values()
            .flat_map(BTreeMap::values)
            .map(|h| h.pages)
            .sum()
    };
    if count(tests) < MAX_PAGES {
        return count(tests);
    }
    for (_, held) in tests.iter_mut().filter(|(id, _)| *id != test_id) {
        held.retain(|_, h| h.whole);
    }
    tests.retain(|id, held| id == test_id || !held.is_empty());
    // Test ids are `t` and their start in Unix ms: the first are the
    // oldest.
    while count(tests) >= MAX_PAGES {
        let Some(oldest) = tests.keys().find(|id| *id != test_id).cloned() else {
            break;
        };
        tests.remove(&oldest);
    }
    count(tests)
}

/// Takes `page` into `held`, one test's reports, `pages` being how many
/// this keeper holds in all.
fn take_into(
    held: &mut BTreeMap<String, Held>,
    page: Handover,
    pages: usize,
) -> Result<(), String> {
    let Handover {
        test_id,
        node,
        generation,
        from,
        more,
        mut report,
    } = page;
    if generation.is_none() {
        return Err(format!("a page of {node}'s report names no incarnation"));
    }
    let upto = from.saturating_add(report.series.len());
    let kept_len = held
        .get(&node)
        .filter(|h| h.generation == generation)
        .map(|h| h.report.series.len());
    if kept_len.is_some_and(|len| upto <= len) {
        // Taken already: a retry after a lost answer.
        return Ok(());
    }
    if pages >= MAX_PAGES {
        return Err(format!("this peer keeps {pages} pages already"));
    }
    if upto > MAX_WINDOWS {
        if kept_len.is_some() {
            held.remove(&node);
        }
        return Err(format!(
            "{node}'s report has more than {MAX_WINDOWS} windows"
        ));
    }
    match held.get_mut(&node) {
        Some(h) if kept_len == Some(from) && !h.whole => {
            let mut series = std::mem::take(&mut h.report.series);
            series.append(&mut report.series);
            report.series = series;
            h.report = report;
            h.whole = !more;
            h.pages += 1;
            Ok(())
        }
        _ if from == 0 => {
            held.insert(
                node,
                Held {
                    generation,
                    report,
                    whole: !more,
                    pages: 1,
                },
            );
            Ok(())
        }
        _ => Err(format!(
            "a page from window {from} of {node}'s report of test {test_id} does not follow \
             what is kept; send it from its first page"
        )),
    }
}

/// The members a leaving `me` hands its reports to: every live
/// orchestrator (it records the test), then peers that stay, [`KEEPERS`]
/// in all when there are that many. Peers are taken in an order hashed
/// from both names, so leavers do not all pick the same ones.
pub fn keepers(status: &ClusterStatus, me: &str) -> Vec<(String, SocketAddr)> {
    let mut staying: Vec<_> = status
        .members
        .iter()
        .filter(|m| m.id != me && m.state == Liveness::Alive && !m.info.leaving)
        .map(|m| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (me, &m.id).hash(&mut hasher);
            (m.info.role.takes_load(), hasher.finish(), m)
        })
        .collect();
    staying.sort_by_key(|(takes_load, hash, _)| (*takes_load, *hash));
    let orchestrators = staying
        .iter()
        .filter(|(takes_load, ..)| !takes_load)
        .count();
    staying
        .into_iter()
        .take(KEEPERS.max(orchestrators))
        .map(|(_, _, m)| (m.id.clone(), m.address))
        .collect()
}

/// A report to hand over: whose, which incarnation, which test.
#[derive(Debug, Clone)]
pub struct ToHand {
    /// The test.
    pub test_id: String,
    /// The peer whose report it is.
    pub node: String,
    /// Its incarnation.
    pub generation: Option<u64>,
    /// The report, whole.
    pub report: Report,
}

/// Hands every report of `reports` to each of `keepers`, page by page
/// (keepers at once, each one's pages in turn), within
/// [`HAND_OVER_WITHIN`]; the keepers that took them all.
pub async fn hand_over(
    requester: &dyn Requester,
    keepers: &[(String, SocketAddr)],
    reports: &[ToHand],
) -> Vec<String> {
    let pages: Vec<Vec<u8>> = reports
        .iter()
        .flat_map(pages_of)
        .map(|page| {
            serde_json::to_vec(&ControlRequest::Keep(Box::new(page))).expect("requests serialise")
        })
        .collect();
    let sends = keepers.iter().map(|(id, address)| {
        let pages = &pages;
        async move {
            for page in pages {
                let answer = requester
                    .request(*address, StreamKind::Control, page, PAGE_TIMEOUT)
                    .await;
                let reply = answer.map_err(|e| format!("{e:#}")).and_then(|a| {
                    serde_json::from_slice::<ControlReply>(&a).map_err(|e| e.to_string())
                });
                match reply {
                    Ok(reply) if reply.ok => {}
                    Ok(reply) => {
                        tracing::warn!("{id} did not keep a report: {}", reply.message);
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!("{id} did not keep a report: {e}");
                        return None;
                    }
                }
            }
            Some(id.clone())
        }
    });
    let sends = sends.map(|send| async move {
        tokio::time::timeout(HAND_OVER_WITHIN, send)
            .await
            .ok()
            .flatten()
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The pages of `hand`'s report.
fn pages_of(hand: &ToHand) -> Vec<Handover> {
    let mut report = hand.report.clone();
    let mut pages = Vec::new();
    let mut from = 0;
    loop {
        let page = page_of(&mut report, from, PAGE_BYTES);
        let windows = page.report.series.len();
        pages.push(Handover {
            test_id: hand.test_id.clone(),
            node: hand.node.clone(),
            generation: hand.generation,
            from,
            more: page.more,
            report: page.report,
        });
        if !page.more {
            return pages;
        }
        from += windows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::run::collect::fixtures::{report, series_sum};
    use crate::cluster::status::fixtures::{member, status};
    use crate::export::Outcome;
    use futures_util::future::BoxFuture;

    fn hand(node: &str, windows: usize) -> ToHand {
        ToHand {
            test_id: "t1".into(),
            node: node.into(),
            generation: Some(7),
            report: report(&vec![3; windows], 0, Outcome::Completed),
        }
    }

    /// Keepers answering `Keep` requests on their own [`Kept`], as the
    /// control handler does; the one at port 9 answers nothing.
    struct Keepers(BTreeMap<SocketAddr, Kept>);

    impl Requester for Keepers {
        fn request<'a>(
            &'a self,
            to: SocketAddr,
            _kind: StreamKind,
            body: &'a [u8],
            _timeout: Duration,
        ) -> BoxFuture<'a, anyhow::Result<Vec<u8>>> {
            Box::pin(async move {
                let kept = self
                    .0
                    .get(&to)
                    .ok_or_else(|| anyhow::anyhow!("no answer"))?;
                let ControlRequest::Keep(page) = serde_json::from_slice(body)? else {
                    anyhow::bail!("not a page");
                };
                let reply = match kept.take(*page) {
                    Ok(()) => ControlReply {
                        ok: true,
                        ..ControlReply::default()
                    },
                    Err(e) => {
                        ControlReply::refused(crate::cluster::run::protocol::Refusal::Invalid, e)
                    }
                };
                Ok(serde_json::to_vec(&reply)?)
            })
        }
    }

    #[test]
    fn pages_taken_in_turn_make_the_whole_report_and_one_out_of_turn_is_refused() {
        let whole = hand("c", 2_000);
        let pages = pages_of(&whole);
        assert!(pages.len() > 1, "2000 windows take more than a page");
        let kept = Kept::default();
        for page in &pages[..pages.len() - 1] {
            kept.take(page.clone()).unwrap();
            assert!(
                kept.page("t1", "c", 0, None).is_none(),
                "answered only once whole"
            );
        }
        // A page again (a lost answer's retry) is acknowledged, not added.
        kept.take(pages[1].clone()).unwrap();
        // One that skips ahead is not.
        let mut ahead = pages.last().unwrap().clone();
        ahead.from += 1;
        assert!(kept.take(ahead).unwrap_err().contains("does not follow"));
        kept.take(pages.last().unwrap().clone()).unwrap();
        let (node, generation, held) = kept.reports("t1").pop().unwrap();
        assert_eq!((node.as_str(), generation), ("c", Some(7)));
        assert_eq!(held.series.len(), 2_000);
        assert_eq!(series_sum(&held), 6_000);
        assert_eq!(held.main.completed, whole.report.main.completed);
        // A follower reads it page by page too.
        let first = kept.page("t1", "c", 0, Some(7)).unwrap();
        assert!(first.page.more);
        let last = kept.page("t1", "c", 1_999, Some(7)).unwrap();
        assert_eq!((last.page.report.series.len(), last.page.more), (1, false));
        // One asking with another incarnation's windows gets it from the start.
        let other = kept.page("t1", "c", 1_999, Some(8)).unwrap();
        assert_eq!(other.page.report.series[0].second, 0);
        assert!(kept.page("t1", "d", 0, None).is_none());
        assert!(kept.page("t2", "c", 0, None).is_none());
    }

    #[test]
    fn what_a_keeper_holds_is_bounded_and_a_wild_page_is_refused_not_a_panic() {
        let kept = Kept::default();
        let mut wild = pages_of(&hand("c", 1)).remove(0);
        wild.from = usize::MAX;
        assert!(kept.take(wild).is_err());
        let mut page = pages_of(&hand("c", 1)).remove(0);
        page.more = true;
        kept.take(page.clone()).unwrap();
        for _ in 1..MAX_PAGES {
            page.from += 1;
            kept.take(page.clone()).unwrap();
        }
        page.from += 1;
        let refused = kept.take(page).unwrap_err();
        assert!(refused.contains("pages already"), "{refused}");
        // A newer test's pages make room: the older test's unfinished
        // report (its hand-over never ended) goes first.
        let mut newer = pages_of(&hand("d", 1)).remove(0);
        newer.test_id = "t2".into();
        kept.take(newer).unwrap();
        assert_eq!(kept.reports("t2").len(), 1);
        assert!(kept.reports("t1").is_empty());
        let mut unnamed = pages_of(&hand("e", 1)).remove(0);
        unnamed.generation = None;
        assert!(kept.take(unnamed).unwrap_err().contains("no incarnation"));
    }

    #[test]
    fn a_keeper_holds_the_newest_tests_only() {
        let kept = Kept::default();
        for i in 0..KEPT_TESTS + 2 {
            let mut page = pages_of(&hand("c", 1)).remove(0);
            page.test_id = format!("t{}", 1_000 + i);
            kept.take(page).unwrap();
        }
        assert!(kept.reports("t1000").is_empty());
        assert!(kept.reports("t1001").is_empty());
        assert_eq!(kept.reports(&format!("t{}", 1_001 + KEPT_TESTS)).len(), 1);
    }

    #[test]
    fn a_leaver_hands_its_reports_to_orchestrators_first_then_to_peers_that_stay() {
        let mut members: Vec<_> = ["a", "b", "c", "d", "e", "o"]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut m = member(id, i as u64 + 1, Liveness::Alive);
                m.address = SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16));
                m
            })
            .collect();
        members[5].info.role = crate::cluster::membership::state::MemberRole::Orchestrator;
        members[1].info.leaving = true;
        members[2].state = Liveness::Dead;
        let view = status(members);
        let chosen: Vec<String> = keepers(&view, "a").into_iter().map(|(id, _)| id).collect();
        assert_eq!(chosen.len(), KEEPERS);
        assert_eq!(chosen[0], "o", "the orchestrator first");
        assert!(
            chosen[1..].iter().all(|id| id == "d" || id == "e"),
            "then peers alive and staying: {chosen:?}"
        );
        assert!(keepers(&status(Vec::new()), "a").is_empty());
    }

    #[tokio::test]
    async fn handed_over_reports_are_kept_whole_by_every_keeper_that_answers() {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let keepers_kept: BTreeMap<SocketAddr, Kept> =
            [(at(1), Kept::default()), (at(2), Kept::default())].into();
        let requester = Keepers(keepers_kept.clone());
        let reports = [hand("c", 1_500), hand("x", 3)];
        let to = [
            ("k1".into(), at(1)),
            ("k2".into(), at(2)),
            ("gone".into(), at(9)),
        ];
        let took = hand_over(&requester, &to, &reports).await;
        assert_eq!(took, ["k1", "k2"]);
        for kept in keepers_kept.values() {
            let mut held = kept.reports("t1");
            held.sort_by(|a, b| a.0.cmp(&b.0));
            let sizes: Vec<(String, usize)> = held
                .into_iter()
                .map(|(n, _, r)| (n, r.series.len()))
                .collect();
            assert_eq!(sizes, [("c".to_owned(), 1_500), ("x".to_owned(), 3)]);
        }
    }
}
