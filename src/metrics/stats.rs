//! Counters and histograms for one operation in one window, and their merge.

use serde::{Deserialize, Serialize};

use super::histogram::{LatencyHistogram, merge, new_histogram, record};
use crate::task::TaskError;

/// Most distinct error kinds tracked per operation; the rest count as "other".
pub const MAX_ERROR_KINDS: usize = 32;
/// The kind that absorbs errors past [`MAX_ERROR_KINDS`].
pub const OVERFLOW_KIND: &str = "other";

/// Whether a result belongs to the warmup or to the measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Results excluded from the main statistics.
    Warmup,
    /// The measured run.
    Main,
}

/// What a tag names: a whole execution (the task's own tag), or one step
/// inside an execution (a scenario's request, a task's sub-operation).
///
/// Steps are reported beside executions, never folded into the run's
/// totals: an execution of three steps completes once, not four times, so
/// the totals keep matching the arrivals planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    /// An execution reported under a name.
    Execution(&'static str),
    /// A step inside an execution.
    Step(&'static str),
}

impl Tag {
    /// The name reported.
    pub fn name(self) -> &'static str {
        match self {
            Self::Execution(name) | Self::Step(name) => name,
        }
    }

    /// Whether it names a step (not counted in the totals).
    pub fn is_step(self) -> bool {
        matches!(self, Self::Step(_))
    }
}

/// `name` as a `&'static str` for a tag or step name that is only known at
/// run time (a scenario file's): each distinct name is kept once, for the
/// life of the process, so the names a process ever sees bound the memory.
pub fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(known) = names.get(name) {
        return known;
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(kept);
    kept
}

/// What results are grouped by: phase and an optional tag.
pub type OpKey = (Phase, Option<Tag>);

/// Whether results under `key` are whole executions, which the totals
/// count (untagged or tagged ones), rather than steps.
pub fn counts_in_totals(key: &OpKey) -> bool {
    !key.1.is_some_and(Tag::is_step)
}

/// Error counts by kind, capped at [`MAX_ERROR_KINDS`] kinds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorCounts {
    entries: Vec<ErrorCount>,
}

/// How often one kind of error happened, with one example message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCount {
    /// The error class.
    pub kind: String,
    /// Occurrences.
    pub count: u64,
    /// The first message seen of this kind.
    pub example: String,
}

impl ErrorCounts {
    /// Counts `n` errors of `kind`, keeping `example` if the kind is new.
    pub fn add(&mut self, kind: &str, n: u64, example: &str) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.kind == kind) {
            e.count = e.count.saturating_add(n);
            return;
        }
        if self.entries.len() + 1 >= MAX_ERROR_KINDS && kind != OVERFLOW_KIND {
            return self.add(OVERFLOW_KIND, n, example);
        }
        self.entries.push(ErrorCount {
            kind: kind.to_owned(),
            count: n,
            example: example.chars().take(200).collect(),
        });
    }

    /// Adds all of `other`'s counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for e in &other.entries {
            self.add(&e.kind, e.count, &e.example);
        }
    }

    /// Kinds by descending count.
    pub fn sorted(&self) -> Vec<ErrorCount> {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
        v
    }

    /// Adds these counts into `totals`, by kind, capped as here: past
    /// [`MAX_ERROR_KINDS`] kinds the rest count as [`OVERFLOW_KIND`] (what
    /// exporters keep over a whole run).
    pub fn add_into(&self, totals: &mut std::collections::BTreeMap<String, u64>) {
        for e in &self.entries {
            let fits = totals.len() < MAX_ERROR_KINDS || totals.contains_key(&e.kind);
            let kind = if fits { e.kind.as_str() } else { OVERFLOW_KIND };
            *totals.entry(kind.to_owned()).or_default() += e.count;
        }
    }

    /// Total errors over all kinds.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }
}

/// Everything measured for one operation key over some span of time.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Arrivals handed to a worker.
    pub dispatched: u64,
    /// Arrivals dropped because the in-flight limit was reached.
    pub dropped: u64,
    /// Arrivals not sent because the generator reached them later than
    /// the run's `max_lag` (it was stalled or could not keep up): the
    /// generator's own failure, never the target's.
    pub missed: u64,
    /// Executions that succeeded.
    pub success: u64,
    /// Executions that failed.
    pub failure: u64,
    /// Latency from the intended start (coordinated-omission free).
    pub latency: LatencyHistogram,
    /// Service time, from the actual start.
    pub service: LatencyHistogram,
    /// Failures by kind.
    pub errors: ErrorCounts,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            dispatched: 0,
            dropped: 0,
            missed: 0,
            success: 0,
            failure: 0,
            latency: new_histogram(),
            service: new_histogram(),
            errors: ErrorCounts::default(),
        }
    }
}

impl OpStats {
    /// Records one finished execution.
    #[inline]
    pub fn record(&mut self, latency_ns: u64, service_ns: u64, error: Option<&TaskError>) {
        record(&mut self.latency, latency_ns);
        record(&mut self.service, service_ns);
        match error {
            None => self.success += 1,
            Some(e) => {
                self.failure += 1;
                self.errors.add(e.kind(), 1, e.message());
            }
        }
    }

    /// Finished executions, successful or not.
    pub fn completed(&self) -> u64 {
        self.success + self.failure
    }

    /// Adds `other` into `self` (exact: histogram addition, counter sums).
    pub fn merge(&mut self, other: &OpStats) {
        self.dispatched += other.dispatched;
        self.dropped += other.dropped;
        self.missed += other.missed;
        self.success += other.success;
        self.failure += other.failure;
        merge(&mut self.latency, &other.latency);
        merge(&mut self.service, &other.service);
        self.errors.merge(&other.errors);
    }
}

/// All results recorded in one second of the run, on one shard.
#[derive(Debug, Clone)]
pub struct WindowStats {
    /// Second of the run (0-based) this window covers.
    pub index: u64,
    /// Per-key statistics; usually one or two entries, so a vector.
    pub ops: Vec<(OpKey, OpStats)>,
    /// Dispatch lag of the arrival scheduler (only its shard records it).
    pub lag: Option<LatencyHistogram>,
}

impl WindowStats {
    /// An empty window for second `index`.
    pub fn new(index: u64) -> Self {
        Self {
            index,
            ops: Vec::new(),
            lag: None,
        }
    }

    /// The statistics for `key`, created on first use.
    #[inline]
    pub fn op(&mut self, key: OpKey) -> &mut OpStats {
        let pos = match self.ops.iter().position(|(k, _)| *k == key) {
            Some(pos) => pos,
            None => {
                self.ops.push((key, OpStats::default()));
                self.ops.len() - 1
            }
        };
        &mut self.ops[pos].1
    }

    /// Adds another shard's window for the same second.
    pub fn merge(&mut self, other: &WindowStats) {
        for (key, stats) in &other.ops {
            self.op(*key).merge(stats);
        }
        if let Some(lag) = &other.lag {
            merge(self.lag.get_or_insert_with(new_histogram), lag);
        }
    }

    /// All executions folded into one, phases included (steps are not
    /// executions: see [`Tag`]).
    pub fn total(&self) -> OpStats {
        let mut total = OpStats::default();
        for (_, stats) in self.ops.iter().filter(|(key, _)| counts_in_totals(key)) {
            total.merge(stats);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_capped_and_nothing_is_lost() {
        let mut errors = ErrorCounts::default();
        for i in 0..100 {
            errors.add(&format!("kind{i}"), 2, "boom");
        }
        assert_eq!(errors.total(), 200);
        assert!(errors.sorted().len() <= MAX_ERROR_KINDS);
        assert!(errors.sorted().iter().any(|e| e.kind == OVERFLOW_KIND));
        let mut totals = std::collections::BTreeMap::new();
        errors.add_into(&mut totals);
        let mut more = ErrorCounts::default();
        more.add("never-seen", 5, "late");
        more.add_into(&mut totals);
        assert!(totals.len() <= MAX_ERROR_KINDS);
        assert_eq!(totals.values().sum::<u64>(), 205, "capped, never lost");
    }

    #[test]
    fn op_stats_merge_adds_counts_and_histograms() {
        let mut a = OpStats::default();
        let mut b = OpStats::default();
        a.record(5_000, 1_000, None);
        b.record(9_000, 2_000, Some(&TaskError::new("timeout", "slow")));
        b.dropped = 3;
        a.merge(&b);
        assert_eq!((a.success, a.failure, a.dropped), (1, 1, 3));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.errors.sorted()[0].kind, "timeout");
    }
}
