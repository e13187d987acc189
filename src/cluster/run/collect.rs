//! What `start --wait` collects from the peers of a distributed test.
//!
//! Each peer hands out its report so far while it runs and its final one
//! when it is done; the client fetches only the windows it lacks. A peer
//! killed and restarted under its old name is a second *incarnation* (a
//! new generation): its figures are kept apart from the first one's, both
//! are merged, and the first counts as lost. A lost incarnation's last
//! figures are kept; the share it held from then until an epoch re-split
//! it is its degraded window, whose planned arrivals were not sent (or not
//! reported).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::run::plan::Plan;
use crate::export::{Outcome, Report};
use crate::load::RateCurve;

/// What to ask a peer for: its series from `skip` on, if it is still the
/// incarnation `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Closed windows already held.
    pub skip: usize,
    /// The incarnation they came from.
    pub generation: Option<u64>,
}

/// One incarnation's figures.
#[derive(Debug, Clone)]
struct Part {
    name: String,
    generation: Option<u64>,
    report: Report,
    /// Its series came only in part (the answer said more follows).
    partial: bool,
}

impl Part {
    /// Whether it is all there: a final report, its series whole.
    fn finished(&self) -> bool {
        self.report.outcome != Outcome::Running && !self.partial
    }
}

/// An incarnation that never sent a final report.
#[derive(Debug, Clone, PartialEq)]
pub struct Lost {
    /// How the merged report labels it.
    pub label: String,
    /// What its events say.
    pub event: String,
    /// Planned arrivals of its share in its degraded window.
    pub unsent: u64,
}

/// Everything collected, ready to merge.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Each incarnation's report, labelled `name` for the first and
    /// `name#2`, `name#3` for later ones.
    pub parts: Vec<(String, Report)>,
    /// Incarnations lost during the test.
    pub lost: Vec<Lost>,
    /// Peers restarted under their old names.
    pub rejoined: Vec<String>,
}

/// The reports of one test's peers, as they arrive.
#[derive(Debug)]
pub struct Collection {
    parts: Vec<Part>,
    /// When each peer (by name) last answered with figures, or was first
    /// named as taking part.
    heard: BTreeMap<String, Instant>,
    test_start_unix_ms: u64,
}

impl Collection {
    /// A collection expecting `names`, for a test that started (or starts)
    /// at `test_start_unix_ms`.
    pub fn new(names: impl IntoIterator<Item = String>, test_start_unix_ms: u64) -> Self {
        let now = Instant::now();
        Self {
            parts: Vec::new(),
            heard: names.into_iter().map(|n| (n, now)).collect(),
            test_start_unix_ms,
        }
    }

    /// Expects figures from `name` too (it joined at a later epoch).
    pub fn expect(&mut self, name: &str) {
        self.heard
            .entry(name.to_owned())
            .or_insert_with(Instant::now);
    }

    fn latest(&self, name: &str) -> Option<&Part> {
        self.parts.iter().rev().find(|p| p.name == name)
    }

    fn is_finished(&self, name: &str) -> bool {
        self.latest(name).is_some_and(Part::finished)
    }

    /// Peers whose latest incarnation has not finished.
    pub fn pending(&self) -> Vec<String> {
        self.heard
            .keys()
            .filter(|n| !self.is_finished(n))
            .cloned()
            .collect()
    }

    /// What to ask `name` for.
    pub fn ask(&self, name: &str) -> Ask {
        match self.latest(name) {
            Some(part) => Ask {
                skip: closed_windows(&part.report.series),
                generation: part.generation,
            },
            None => Ask {
                skip: 0,
                generation: None,
            },
        }
    }

    /// Takes `name`'s answer: a report of incarnation `generation`, its
    /// series from the windows asked for on (or from the first, for a new
    /// incarnation), with `more` of it to come in later answers.
    pub fn absorb(&mut self, name: &str, generation: Option<u64>, mut report: Report, more: bool) {
        self.heard.insert(name.to_owned(), Instant::now());
        let same =
            |p: &&mut Part| p.name == name && (p.generation == generation || generation.is_none());
        match self.parts.iter_mut().rev().find(same) {
            Some(part) => {
                // Open windows were provisional: they come again, closed.
                // An answer is the truth from its first window on (one
                // that starts again from the first, say a kept report
                // asked with another incarnation's windows, replaces them).
                let mut series = std::mem::take(&mut part.report.series);
                series.truncate(closed_windows(&series));
                if let Some(first) = report.series.first().map(|w| w.second) {
                    series.retain(|w| w.second < first);
                }
                series.append(&mut report.series);
                report.series = series;
                part.report = report;
                part.partial = more;
            }
            None => self.parts.push(Part {
                name: name.to_owned(),
                generation,
                report,
                partial: more,
            }),
        }
    }

    /// Whether every peer finished, or (once the test is past its end,
    /// `past_end`) every one not finished has been silent `lost_after`.
    pub fn is_done(&self, past_end: bool, lost_after: Duration) -> bool {
        let unfinished = self.pending();
        unfinished.is_empty()
            || (past_end
                && unfinished
                    .iter()
                    .all(|n| self.heard[n].elapsed() > lost_after))
    }

    /// Each incarnation's label, in order: `name` for the first and
    /// `name#2`, `name#3` for later ones.
    fn labels(&self) -> Vec<String> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        self.parts
            .iter()
            .map(|part| {
                let count = seen.entry(&part.name).or_insert(0);
                *count += 1;
                label_of(&part.name, *count)
            })
            .collect()
    }

    /// Each incarnation's figures so far without their series (cheap to
    /// merge every second), labelled as [`Collection::finish`] labels them.
    pub fn summaries(&mut self) -> Vec<(String, Report)> {
        let labels = self.labels();
        let mut out = Vec::with_capacity(self.parts.len());
        for (part, label) in self.parts.iter_mut().zip(labels) {
            let series = std::mem::take(&mut part.report.series);
            out.push((label, part.report.clone()));
            part.report.series = series;
        }
        out
    }

    /// The cluster's windows from second `from` on, as far as every
    /// incarnation has closed them: one that finished, was followed by a
    /// new one, or has been silent `lost_after` holds nobody up. Each
    /// second adds the incarnations' windows of it.
    pub fn closed_from(
        &self,
        from: u64,
        lost_after: Duration,
    ) -> Vec<crate::metrics::WindowReport> {
        let settled = |i: usize, part: &Part| {
            part.finished()
                || self.parts[i + 1..].iter().any(|p| p.name == part.name)
                || self
                    .heard
                    .get(&part.name)
                    .is_some_and(|h| h.elapsed() > lost_after)
        };
        // Where each incarnation's closed windows end.
        let closed_end = |part: &Part| {
            let series = &part.report.series;
            series[..closed_windows(series)]
                .last()
                .map_or(0, |w| w.second.saturating_add(1))
        };
        // A peer expected but not heard from yet holds every second up
        // until it answers or counts as silent.
        let unheard = self
            .heard
            .iter()
            .any(|(name, heard)| self.latest(name).is_none() && heard.elapsed() <= lost_after);
        let unsettled = self
            .parts
            .iter()
            .enumerate()
            .filter(|(i, part)| !settled(*i, part))
            .map(|(_, part)| closed_end(part))
            .chain(unheard.then_some(from))
            .min();
        // Settled incarnations hold nobody up: their windows are all there.
        let Some(until) = unsettled.or_else(|| self.parts.iter().map(closed_end).max()) else {
            return Vec::new();
        };
        // A peer's garbled second (far ahead) must not make this spin.
        let until = until.min(from.saturating_add(MAX_SECONDS_AT_ONCE));
        let mut merged = Vec::new();
        for second in from..until {
            let windows: Vec<&crate::metrics::WindowReport> = self
                .parts
                .iter()
                .filter_map(|p| {
                    let at = p
                        .report
                        .series
                        .binary_search_by_key(&second, |w| w.second)
                        .ok()?;
                    Some(&p.report.series[at]).filter(|w| !w.open)
                })
                .collect();
            match crate::export::merge::merge_windows(&windows) {
                Ok(Some(window)) => merged.push(window),
                Ok(None) => {}
                // One peer's undecodable histograms: that second without them.
                Err(e) => {
                    tracing::warn!("second {second}: a window does not merge ({e:#}); left out");
                    let sound: Vec<_> = windows
                        .into_iter()
                        .filter(|w| crate::export::merge::merge_windows(&[w]).is_ok())
                        .collect();
                    if let Ok(Some(window)) = crate::export::merge::merge_windows(&sound) {
                        merged.push(window);
                    }
                }
            }
        }
        merged
    }

    /// The parts to merge and what was lost, with `plan` (the latest) and
    /// its cluster curve telling each lost incarnation's degraded window.
    pub fn finish(self, plan: Option<&Plan>, cluster_curve: Option<&RateCurve>) -> Collected {
        let mut parts = Vec::new();
        let mut lost = Vec::new();
        let mut rejoined = Vec::new();
        let labels = self.labels();
        for (i, part) in self.parts.iter().enumerate() {
            let label = labels[i].clone();
            let successor = (i + 1..self.parts.len()).find(|j| self.parts[*j].name == part.name);
            if let Some(j) = successor {
                let next = &self.parts[j];
                rejoined.push(format!(
                    "peer {} rejoined as a new incarnation{}; its figures are {} in the report",
                    part.name,
                    self.secs_of(next.generation)
                        .map_or(String::new(), |s| format!(" at {s:.1} s")),
                    labels[j],
                ));
            }
            if !part.finished() {
                let until = successor.and_then(|j| self.secs_of(self.parts[j].generation));
                lost.push(lost_incarnation(
                    &label,
                    &part.report,
                    plan,
                    cluster_curve,
                    until,
                ));
            }
            parts.push((label, part.report.clone()));
        }
        for name in self.heard.keys() {
            if self.latest(name).is_none() {
                lost.push(Lost {
                    label: name.clone(),
                    event: format!("peer {name} was lost before reporting anything"),
                    unsent: 0,
                });
            }
        }
        Collected {
            parts,
            lost,
            rejoined,
        }
    }

    /// Seconds from the test's start to a generation (a process start).
    fn secs_of(&self, generation: Option<u64>) -> Option<f64> {
        generation
            .filter(|g| *g >= self.test_start_unix_ms && self.test_start_unix_ms > 0)
            .map(|g| (g - self.test_start_unix_ms) as f64 / 1_000.0)
    }
}

/// Most seconds [`Collection::closed_from`] merges in one call.
const MAX_SECONDS_AT_ONCE: u64 = 3_600;

/// How the report labels the `count`th incarnation of `name`.
fn label_of(name: &str, count: usize) -> String {
    if count == 1 {
        name.to_owned()
    } else {
        format!("{name}#{count}")
    }
}

/// How many windows lead a series before the first open one.
fn closed_windows(series: &[crate::metrics::WindowReport]) -> usize {
    series.iter().take_while(|w| !w.open).count()
}

/// What a lost incarnation's last figures say: how far they go, and its
/// degraded window, from there until the first epoch that took its share
/// away (an epoch without it, or one planned after `successor_secs`, when
/// its next incarnation started), whose planned arrivals it did not send.
fn lost_incarnation(
    label: &str,
    last: &Report,
    plan: Option<&Plan>,
    cluster_curve: Option<&RateCurve>,
    successor_secs: Option<f64>,
) -> Lost {
    let name = label.split('#').next().unwrap_or(label);
    let heard_until = last.load_secs;
    let changes = plan.map_or_else(Vec::new, |p| p.share_changes_after(name, 0));
    let share = changes
        .iter()
        .rev()
        .find(|c| c.at_secs <= heard_until)
        .map_or(0.0, |c| c.share);
    let resplit = changes.iter().find(|c| {
        c.at_secs >= heard_until
            && (c.share == 0.0 || successor_secs.is_some_and(|s| c.at_secs >= s))
    });
    let window_end = resplit
        .map(|c| c.at_secs)
        .or(cluster_curve.map(RateCurve::duration))
        .unwrap_or(heard_until);
    let unsent = cluster_curve.map_or(0, |curve| {
        (share * curve.count_between(heard_until, window_end)).round() as u64
    });
    let event = match resplit {
        Some(change) => format!(
            "peer {label} was lost; its figures cover the test up to {heard_until:.1} s; \
             degraded window {heard_until:.1}-{:.1} s, until epoch {} re-split its share \
             ({unsent} planned arrivals not sent)",
            change.at_secs, change.epoch
        ),
        None => format!(
            "peer {label} was lost; its figures cover the test up to {heard_until:.1} s; \
             its share was not re-split (degraded from then to the end: {unsent} planned \
             arrivals not sent)"
        ),
    };
    Lost {
        label: label.to_owned(),
        event,
        unsent,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::export::{Outcome, Report};
    use crate::metrics::{Aggregator, MetricsHub, Phase};

    /// A report whose series has one window per entry of `completed`, the
    /// last `open` of them still open.
    pub fn report(completed: &[u64], open: usize, outcome: Outcome) -> Report {
        let hub = MetricsHub::new(1);
        let rec = hub.recorder();
        for (second, n) in completed.iter().enumerate() {
            for _ in 0..*n {
                rec.record_execution(second as u64, (Phase::Main, None), 1_000, 1_000, None);
            }
        }
        let mut agg = Aggregator::new(hub, 0.0);
        agg.collect((completed.len() - open) as u64);
        let preview = agg.preview();
        let mut report = Report::snapshot("t", &preview, 0.0, completed.len() as f64);
        report.outcome = outcome;
        report
    }

    /// Executions its series counts.
    pub fn series_sum(r: &Report) -> u64 {
        r.series.iter().map(|w| w.success + w.failure).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{report, series_sum};
    use super::*;

    #[test]
    fn open_windows_are_fetched_again_once_closed() {
        let mut c = Collection::new(["a".to_owned()], 0);
        c.absorb(
            "a",
            Some(1),
            report(&[10, 10, 4], 1, Outcome::Running),
            false,
        );
        assert_eq!(
            c.ask("a"),
            Ask {
                skip: 2,
                generation: Some(1)
            }
        );
        // The next answer starts at the window that was open, now closed.
        let mut later = report(&[10, 10, 10, 3], 1, Outcome::Running);
        later.series.drain(..2);
        c.absorb("a", Some(1), later, false);
        let done = c.finish(None, None);
        let (_, a) = &done.parts[0];
        assert_eq!(a.series.len(), 4);
        assert_eq!(series_sum(a), 33);
        assert_eq!(
            series_sum(a),
            a.main.completed,
            "the series adds up to main"
        );
    }

    /// An answer that starts again from the first window (a kept report,
    /// asked with windows it does not know) replaces what was held from
    /// there on: no window twice, the series in order.
    #[test]
    fn an_answer_from_the_first_window_replaces_the_series() {
        let mut c = Collection::new(["a".to_owned()], 0);
        c.absorb("a", Some(1), report(&[5, 5, 5], 0, Outcome::Running), false);
        c.absorb(
            "a",
            Some(1),
            report(&[5, 5, 5, 5], 0, Outcome::Completed),
            false,
        );
        let done = c.finish(None, None);
        let seconds: Vec<u64> = done.parts[0].1.series.iter().map(|w| w.second).collect();
        assert_eq!(seconds, [0, 1, 2, 3]);
        assert_eq!(series_sum(&done.parts[0].1), 20);
    }

    /// A final report too long for one answer comes in pages: the peer is
    /// asked again from each page's end until the last, and the series is
    /// whole and in order.
    #[test]
    fn a_long_final_report_is_asked_for_page_by_page() {
        use crate::cluster::run::share::page_of;
        let mut whole = report(&[7; 50], 0, Outcome::Completed);
        let budget = 4 * serde_json::to_vec(&whole.series[0]).unwrap().len();
        let mut c = Collection::new(["a".to_owned()], 0);
        let mut answers = 0;
        while c.pending() == ["a"] {
            let ask = c.ask("a");
            let page = page_of(&mut whole, ask.skip, budget);
            assert!(
                serde_json::to_vec(&page.report.series).unwrap().len()
                    <= budget + 1 + page.report.series.len(),
                "a page keeps to its budget"
            );
            c.absorb("a", Some(1), page.report, page.more);
            answers += 1;
            assert!(answers < 100, "every page moves on");
        }
        assert!(
            answers >= 10,
            "{answers} answers for 50 windows of 4 a page"
        );
        let done = c.finish(None, None);
        let seconds: Vec<u64> = done.parts[0].1.series.iter().map(|w| w.second).collect();
        assert_eq!(seconds, (0..50).collect::<Vec<u64>>());
        assert_eq!(series_sum(&done.parts[0].1), 350);
        assert!(done.lost.is_empty());
        // A window larger than the budget still makes a page of one.
        let page = page_of(&mut whole, 10, 1);
        assert_eq!((page.report.series.len(), page.more), (1, true));
        let page = page_of(&mut whole, 50, 1);
        assert_eq!((page.report.series.len(), page.more), (0, false));
        assert_eq!(whole.series.len(), 50, "the kept report keeps its series");
    }

    #[test]
    fn a_restarted_peer_is_a_second_incarnation_and_both_count() {
        let mut c = Collection::new(["a".to_owned(), "b".to_owned()], 1_000_000);
        c.absorb(
            "a",
            Some(1),
            report(&[100, 100], 0, Outcome::Running),
            false,
        );
        c.absorb(
            "b",
            Some(1),
            report(&[100, 100, 100], 0, Outcome::Completed),
            false,
        );
        // a was killed and came back: it answers as generation 2, whole.
        assert_eq!(c.ask("a").generation, Some(1));
        c.absorb(
            "a",
            Some(1_005_000),
            report(&[0, 0, 50], 0, Outcome::Completed),
            false,
        );
        assert!(c.is_done(false, Duration::from_secs(3)));
        let done = c.finish(None, None);
        let labels: Vec<&str> = done.parts.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["a", "b", "a#2"]);
        let total: u64 = done.parts.iter().map(|(_, r)| r.main.completed).sum();
        assert_eq!(
            total,
            200 + 300 + 50,
            "the first incarnation's work is kept"
        );
        assert_eq!(done.lost.len(), 1);
        assert_eq!(done.lost[0].label, "a");
        assert!(done.rejoined[0].contains("at 5.0 s"), "{:?}", done.rejoined);
        for (_, r) in &done.parts {
            assert_eq!(series_sum(r), r.main.completed);
        }
    }

    #[test]
    fn a_lost_peer_names_its_degraded_window_and_what_it_left_unsent() {
        use crate::cluster::run::plan::Equal;
        let peers = crate::cluster::run::plan::fixtures::candidates(&["a", "b", "c"]);
        let first = Plan::first("t", 1_000, &Equal, &peers, Default::default()).unwrap();
        let without_c = first.resplit(11_800, &Equal, &peers[..2]).unwrap();
        let plan = first.followed_by(&without_c);
        let curve = RateCurve::constant(3_000.0, 30.0).unwrap();
        let mut last = report(&[1_000; 10], 0, Outcome::Running);
        last.load_secs = 10.0;
        let lost = lost_incarnation("c", &last, Some(&plan), Some(&curve), None);
        // c held a third of 3000/s from 10.0 s until epoch 2 at 10.8 s.
        assert_eq!(lost.unsent, 800);
        assert!(lost.event.contains("10.0-10.8 s"), "{}", lost.event);
        assert!(lost.event.contains("epoch 2"), "{}", lost.event);
    }
}
