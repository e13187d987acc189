//! Thresholds against history: `--baseline last|last-passed|RUN_ID` picks
//! a recorded run, and each relative threshold (`p99<+10%`, `rate>-5%`) is
//! judged against that run's figures, measured the same way on both
//! reports (percentiles from their HDR histograms, not their summaries).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::store::{RecordedRun, RunFilter, Store, StoreError};
use crate::export::Report;
use crate::metrics::LatencyHistogram;
use crate::metrics::histogram::decode_v2;
use crate::threshold::{Threshold, ThresholdInput, ThresholdResult};

/// Which recorded run a test is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Baseline {
    /// The latest earlier run of the same test name.
    Last,
    /// The latest earlier run of the same name that passed.
    LastPassed,
    /// This run.
    Run(String),
}

impl FromStr for Baseline {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" => Err("empty baseline (use last, last-passed or a run id)".into()),
            "last" => Ok(Self::Last),
            "last-passed" => Ok(Self::LastPassed),
            id if id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                Ok(Self::Run(id.to_owned()))
            }
            other => Err(format!(
                "'{other}' is not a baseline (use last, last-passed or a run id)"
            )),
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Last => f.write_str("last"),
            Self::LastPassed => f.write_str("last-passed"),
            Self::Run(id) => f.write_str(id),
        }
    }
}

/// The recorded run `choice` picks for a run of test `name` started at
/// `started_ms`: `None` when there is none yet (a first run has nothing
/// to compare with). The run itself (`own_id`) is never its own baseline.
pub async fn pick(
    store: &dyn Store,
    choice: &Baseline,
    name: &str,
    started_ms: i64,
    own_id: &str,
) -> Result<Option<RecordedRun>, StoreError> {
    let candidates = |outcome: Option<&str>| RunFilter {
        name: Some(name.to_owned()),
        outcome: outcome.map(str::to_owned),
        before_ms: Some(started_ms),
        limit: 2,
        ..RunFilter::default()
    };
    let filter = match choice {
        Baseline::Run(id) => return store.get(id).await,
        Baseline::Last => candidates(None),
        Baseline::LastPassed => candidates(Some("passed")),
    };
    let listed = store.list(&filter).await?;
    match listed.into_iter().find(|r| r.id != own_id) {
        Some(summary) => store.get(&summary.id).await,
        None => Ok(None),
    }
}

/// The figures of `report` thresholds read: its main phase, histograms
/// decoded.
pub struct Figures {
    latency: LatencyHistogram,
    service: LatencyHistogram,
    lag: Option<LatencyHistogram>,
    report: Report,
}

impl Figures {
    /// Decodes `report`'s histograms (`Err` names the one that does not).
    pub fn of(report: &Report) -> Result<Self, String> {
        let decode = |what: &str, text: &str| {
            decode_v2(text).map_err(|e| format!("the report's {what} histogram: {e:#}"))
        };
        let h = &report.histograms;
        Ok(Self {
            latency: decode("latency", &h.latency)?,
            service: decode("service", &h.service)?,
            lag: match &h.scheduler_lag {
                Some(lag) => Some(decode("scheduler lag", lag)?),
                None => None,
            },
            report: report.clone(),
        })
    }

    fn input(&self) -> ThresholdInput<'_> {
        let main = &self.report.main;
        ThresholdInput {
            latency: &self.latency,
            service: &self.service,
            lag: self.lag.as_ref(),
            completed: main.completed,
            failures: main.failure,
            dropped: main.dropped,
            missed: main.missed,
            rate: main.rate,
        }
    }
}

/// Judges the relative thresholds among `thresholds` on `report` against
/// `baseline` (its id and report) and adds their verdicts to the report's.
/// With no baseline run, each holds, saying there was none to compare
/// with (a first run cannot regress); a baseline whose figures do not read
/// fails them, saying why.
pub fn judge(report: &mut Report, thresholds: &[Threshold], baseline: Option<(&str, &Report)>) {
    let relative: Vec<&Threshold> = thresholds.iter().filter(|t| t.is_relative()).collect();
    if relative.is_empty() {
        return;
    }
    let verdicts = match (
        Figures::of(report),
        baseline.map(|(id, b)| (id, Figures::of(b))),
    ) {
        (Ok(now), Some((id, Ok(base)))) => relative
            .iter()
            .map(|t| t.evaluate_against(&now.input(), &base.input(), id))
            .collect(),
        (Ok(_), None) => relative
            .iter()
            .map(|t| unjudged(t, true, "no earlier run to compare with".into()))
            .collect(),
        (Err(e), _) | (_, Some((_, Err(e)))) => relative
            .iter()
            .map(|t| unjudged(t, false, e.clone()))
            .collect::<Vec<_>>(),
    };
    report.thresholds.extend(verdicts);
}

/// Fails every relative threshold among `thresholds`, saying why they
/// could not be judged (the store was away, the baseline unreadable): a
/// gate that cannot look does not pass.
pub fn not_judged(report: &mut Report, thresholds: &[Threshold], why: &str) {
    report.thresholds.extend(
        thresholds
            .iter()
            .filter(|t| t.is_relative())
            .map(|t| unjudged(t, false, format!("not judged: {why}"))),
    );
}

fn unjudged(threshold: &Threshold, passed: bool, why: String) -> ThresholdResult {
    ThresholdResult {
        threshold: threshold.expression.clone(),
        actual: "-".into(),
        passed,
        baseline: Some(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_parse() {
        assert_eq!("last".parse::<Baseline>().unwrap(), Baseline::Last);
        assert_eq!(
            "last-passed".parse::<Baseline>().unwrap(),
            Baseline::LastPassed
        );
        assert_eq!(
            "t1764000000000-ab12".parse::<Baseline>().unwrap(),
            Baseline::Run("t1764000000000-ab12".into())
        );
        assert!("".parse::<Baseline>().is_err());
        assert!(
            "a b"
                .parse::<Baseline>()
                .unwrap_err()
                .contains("not a baseline")
        );
    }
}
