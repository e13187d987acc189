//! Load patterns as users describe them, and their compilation to a curve.

use std::time::Duration;

use super::curve::{CurveError, RateCurve, RatePoint};

/// One level of a step pattern: hold `rate` for `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Arrivals per second during this step.
    pub rate: f64,
    /// How long the step lasts.
    pub duration: Duration,
}

/// The shape of the target rate over a run.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadPattern {
    /// A fixed rate.
    Constant {
        /// Arrivals per second.
        rate: f64,
        /// Length of the run.
        duration: Duration,
    },
    /// Linear rise from 0 to `rate` over `up`, hold, then linear fall to 0
    /// over `down`; `duration` is the total and includes both ramps.
    Ramp {
        /// Rate reached after the ramp-up.
        rate: f64,
        /// Length of the ramp from 0 to `rate`.
        up: Duration,
        /// Length of the ramp from `rate` back to 0 at the end.
        down: Duration,
        /// Total length, ramps included.
        duration: Duration,
    },
    /// A list of rate levels held one after another, changing instantly.
    Steps(Vec<Step>),
    /// `base` rate, with `spike` rate for the last `spike_for` of every
    /// `every` interval.
    Spike {
        /// Rate between spikes.
        base: f64,
        /// Rate during a spike.
        spike: f64,
        /// Period of the spikes.
        every: Duration,
        /// How long each spike lasts.
        spike_for: Duration,
        /// Length of the run.
        duration: Duration,
    },
    /// `mean + amplitude * sin(2πt / period)`.
    Sine {
        /// Centre rate.
        mean: f64,
        /// Swing above and below the mean; must not exceed it.
        amplitude: f64,
        /// Length of one full wave.
        period: Duration,
        /// Length of the run.
        duration: Duration,
    },
    /// Straight lines between user-given `(time, rate)` points.
    Points(Vec<RatePoint>),
}

/// Why a pattern cannot be run, naming the parameter at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pattern} pattern: {problem}")]
pub struct PatternError {
    /// Which pattern was being built.
    pub pattern: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Segments per sine period: the chord of a 0.5° arc deviates from the wave
/// by under 4e-5 of the amplitude, far below one arrival on any real run.
const SINE_SEGMENTS_PER_PERIOD: f64 = 720.0;
/// Cap on points generated for sampled patterns, to bound memory.
const MAX_SAMPLED_POINTS: f64 = 200_000.0;

impl LoadPattern {
    /// A pattern sampled from a user function `rate(t_seconds)` every
    /// `resolution` (straight lines in between) over `duration`.
    pub fn from_fn(
        duration: Duration,
        resolution: Duration,
        rate: impl Fn(f64) -> f64,
    ) -> Result<Self, PatternError> {
        let total = duration.as_secs_f64();
        let step = resolution.as_secs_f64().max(total / MAX_SAMPLED_POINTS);
        if total <= 0.0 || step <= 0.0 {
            return Err(err("custom", "duration and resolution must be positive"));
        }
        let steps = (total / step).ceil() as usize;
        let points = (0..=steps)
            .map(|i| {
                let at = (i as f64 * step).min(total);
                RatePoint { at, rate: rate(at) }
            })
            .collect();
        Ok(Self::Points(points))
    }

    /// A short name for messages ("constant", "ramp", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant { .. } => "constant",
            Self::Ramp { .. } => "ramp",
            Self::Steps(_) => "step",
            Self::Spike { .. } => "spike",
            Self::Sine { .. } => "sine",
            Self::Points(_) => "custom",
        }
    }

    /// Compiles the pattern to a rate curve, rejecting impossible parameters.
    pub fn to_curve(&self) -> Result<RateCurve, PatternError> {
        let name = self.name();
        let points = match self {
            Self::Constant { rate, duration } => {
                check_rate(name, "rate", *rate)?;
                let d = positive(name, "duration", *duration)?;
                vec![pt(0.0, *rate), pt(d, *rate)]
            }
            Self::Ramp {
                rate,
                up,
                down,
                duration,
            } => ramp_points(*rate, *up, *down, *duration)?,
            Self::Steps(steps) => step_points(steps)?,
            Self::Spike {
                base,
                spike,
                every,
                spike_for,
                duration,
            } => spike_points(*base, *spike, *every, *spike_for, *duration)?,
            Self::Sine {
                mean,
                amplitude,
                period,
                duration,
            } => sine_points(*mean, *amplitude, *period, *duration)?,
            Self::Points(points) => points.clone(),
        };
        RateCurve::new(points).map_err(|e: CurveError| err(name, e.to_string()))
    }
}

fn pt(at: f64, rate: f64) -> RatePoint {
    RatePoint { at, rate }
}

fn err(pattern: &'static str, problem: impl Into<String>) -> PatternError {
    PatternError {
        pattern,
        problem: problem.into(),
    }
}

fn check_rate(pattern: &'static str, field: &str, rate: f64) -> Result<(), PatternError> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(())
    } else {
        Err(err(
            pattern,
            format!("{field} must be a finite rate >= 0, got {rate}"),
        ))
    }
}

fn positive(pattern: &'static str, field: &str, d: Duration) -> Result<f64, PatternError> {
    if d.is_zero() {
        Err(err(pattern, format!("{field} must be longer than 0s")))
    } else {
        Ok(d.as_secs_f64())
    }
}

fn ramp_points(
    rate: f64,
    up: Duration,
    down: Duration,
    duration: Duration,
) -> Result<Vec<RatePoint>, PatternError> {
    check_rate("ramp", "rate", rate)?;
    let total = positive("ramp", "duration", duration)?;
    let (up, down) = (up.as_secs_f64(), down.as_secs_f64());
    if up + down > total {
        return Err(err(
            "ramp",
            format!("ramp-up ({up}s) plus ramp-down ({down}s) exceed the duration ({total}s)"),
        ));
    }
    Ok(vec![
        pt(0.0, if up > 0.0 { 0.0 } else { rate }),
        pt(up, rate),
        pt(total - down, rate),
        pt(total, if down > 0.0 { 0.0 } else { rate }),
    ])
}

fn step_points(steps: &[Step]) -> Result<Vec<RatePoint>, PatternError> {
    if steps.is_empty() {
        return Err(err("step", "needs at least one rate:duration step"));
    }
    let mut points = Vec::with_capacity(steps.len() * 2);
    let mut at = 0.0;
    for (i, step) in steps.iter().enumerate() {
        check_rate("step", &format!("step {} rate", i + 1), step.rate)?;
        let d = positive("step", &format!("step {} duration", i + 1), step.duration)?;
        points.push(pt(at, step.rate));
        at += d;
        points.push(pt(at, step.rate));
    }
    Ok(points)
}

fn spike_points(
    base: f64,
    spike: f64,
    every: Duration,
    spike_for: Duration,
    duration: Duration,
) -> Result<Vec<RatePoint>, PatternError> {
    check_rate("spike", "base rate", base)?;
    check_rate("spike", "spike rate", spike)?;
    let total = positive("spike", "duration", duration)?;
    let every = positive("spike", "spike interval", every)?;
    let spike_for = positive("spike", "spike duration", spike_for)?;
    if spike_for >= every {
        return Err(err(
            "spike",
            format!("spike duration ({spike_for}s) must be shorter than the interval ({every}s)"),
        ));
    }
    if (total / every) > MAX_SAMPLED_POINTS / 4.0 {
        return Err(err("spike", "too many spikes for the duration"));
    }
    let mut points = vec![pt(0.0, base)];
    let mut start = 0.0;
    while start < total {
        let spike_at = (start + every - spike_for).min(total);
        let end = (start + every).min(total);
        points.push(pt(spike_at, base));
        points.push(pt(spike_at, spike));
        points.push(pt(end, spike));
        if end < total {
            points.push(pt(end, base));
        }
        start = end;
    }
    Ok(points)
}

fn sine_points(
    mean: f64,
    amplitude: f64,
    period: Duration,
    duration: Duration,
) -> Result<Vec<RatePoint>, PatternError> {
    check_rate("sine", "mean", mean)?;
    check_rate("sine", "amplitude", amplitude)?;
    if amplitude > mean {
        return Err(err(
            "sine",
            format!(
                "amplitude ({amplitude}) exceeds the mean ({mean}): the rate would go negative"
            ),
        ));
    }
    let period = positive("sine", "period", period)?;
    let total = positive("sine", "duration", duration)?;
    let step = (period / SINE_SEGMENTS_PER_PERIOD).max(total / MAX_SAMPLED_POINTS);
    let n = (total / step).ceil() as usize;
    Ok((0..=n)
        .map(|i| {
            let at = (i as f64 * step).min(total);
            let phase = std::f64::consts::TAU * at / period;
            pt(at, (mean + amplitude * phase.sin()).max(0.0))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ramp_area_counts_both_slopes_once() {
        let c = LoadPattern::Ramp {
            rate: 100.0,
            up: secs(10),
            down: secs(10),
            duration: secs(30),
        }
        .to_curve()
        .unwrap();
        assert!((c.total() - (500.0 + 1000.0 + 500.0)).abs() < 1e-9);
    }

    #[test]
    fn steps_sum_their_levels() {
        let c = LoadPattern::Steps(vec![
            Step {
                rate: 50.0,
                duration: secs(10),
            },
            Step {
                rate: 150.0,
                duration: secs(10),
            },
            Step {
                rate: 300.0,
                duration: secs(10),
            },
        ])
        .to_curve()
        .unwrap();
        assert!((c.total() - 5000.0).abs() < 1e-9);
        assert_eq!(c.rate_at(10.0), 150.0);
    }

    #[test]
    fn spike_adds_extra_area_per_interval() {
        let c = LoadPattern::Spike {
            base: 10.0,
            spike: 110.0,
            every: secs(10),
            spike_for: secs(2),
            duration: secs(30),
        }
        .to_curve()
        .unwrap();
        assert!((c.total() - (300.0 + 3.0 * 200.0)).abs() < 1e-9);
        assert_eq!(c.rate_at(9.0), 110.0);
        assert_eq!(c.rate_at(10.5), 10.0);
    }

    #[test]
    fn sine_over_whole_periods_integrates_to_the_mean() {
        let c = LoadPattern::Sine {
            mean: 100.0,
            amplitude: 80.0,
            period: secs(10),
            duration: secs(30),
        }
        .to_curve()
        .unwrap();
        assert!((c.total() - 3000.0).abs() < 0.01, "{}", c.total());
        assert!((c.rate_at(2.5) - 180.0).abs() < 0.1);
    }

    #[test]
    fn impossible_patterns_name_the_problem() {
        let e = LoadPattern::Sine {
            mean: 10.0,
            amplitude: 20.0,
            period: secs(1),
            duration: secs(1),
        }
        .to_curve()
        .unwrap_err();
        assert!(e.to_string().contains("amplitude"), "{e}");
        let e = LoadPattern::Ramp {
            rate: 1.0,
            up: secs(20),
            down: secs(20),
            duration: secs(30),
        }
        .to_curve()
        .unwrap_err();
        assert!(e.to_string().contains("exceed the duration"), "{e}");
        assert!(
            LoadPattern::Constant {
                rate: f64::NAN,
                duration: secs(1)
            }
            .to_curve()
            .is_err()
        );
    }

    #[test]
    fn user_function_is_sampled_into_lines() {
        let p = LoadPattern::from_fn(secs(10), Duration::from_millis(10), |t| 10.0 * t).unwrap();
        let c = p.to_curve().unwrap();
        assert!((c.total() - 500.0).abs() < 1e-6);
    }
}
