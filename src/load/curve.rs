//! A target rate over time as a piecewise-linear curve, and its exact integral.
//!
//! Every load pattern compiles to a [`RateCurve`]: straight segments between
//! `(time, rate)` points, with jumps expressed as two points at the same time.
//! The integral of such a curve and its inverse have closed forms, so the
//! arrival schedule derived from it is exact rather than approximated by ticks.

use std::fmt;

/// One corner of a rate curve: `rate` arrivals per second at `at` seconds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RatePoint {
    /// Seconds since the start of the curve.
    pub at: f64,
    /// Target arrivals per second at that instant.
    pub rate: f64,
}

/// Why a set of points does not describe a usable rate curve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CurveError {
    /// The curve needs a start and an end.
    #[error("a rate curve needs at least two points")]
    TooFewPoints,
    /// The first point must be at time zero.
    #[error("the first point must be at 0s, not {0}s")]
    DoesNotStartAtZero(f64),
    /// Times must never go backwards.
    #[error("point {index} at {at}s goes back in time")]
    TimeGoesBackwards {
        /// Index of the offending point.
        index: usize,
        /// Its time in seconds.
        at: f64,
    },
    /// Rates and times must be finite, rates non-negative.
    #[error(
        "point {index} has an invalid value (time {at}s, rate {rate}/s): rates must be finite and >= 0"
    )]
    InvalidValue {
        /// Index of the offending point.
        index: usize,
        /// Its time in seconds.
        at: f64,
        /// Its rate.
        rate: f64,
    },
    /// A rate above [`MAX_RATE`].
    #[error("point {index} asks for {rate:e}/s, above the limit of {MAX_RATE:e}/s")]
    RateTooHigh {
        /// Index of the offending point.
        index: usize,
        /// Its rate.
        rate: f64,
    },
    /// A curve longer than [`MAX_DURATION_SECS`].
    #[error("the curve lasts {0:.0}s, longer than the limit of 31 days")]
    TooLong(f64),
}

/// Highest rate a curve may ask for, in arrivals per second: above what any
/// cluster sends, low enough that a typo (`1e300`) is an error rather than
/// a test that saturates every peer and plans 2^64 arrivals.
pub const MAX_RATE: f64 = 1e9;
/// Longest a curve may last: 31 days.
pub const MAX_DURATION_SECS: f64 = 31.0 * 86_400.0;

/// A piecewise-linear target rate with a precomputed running integral.
#[derive(Clone, PartialEq)]
pub struct RateCurve {
    points: Vec<RatePoint>,
    /// `cumulative[i]` is the expected arrival count in `[0, points[i].at]`.
    cumulative: Vec<f64>,
}

impl fmt::Debug for RateCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateCurve")
            .field("points", &self.points.len())
            .field("duration_s", &self.duration())
            .field("total", &self.total())
            .finish()
    }
}

impl RateCurve {
    /// Builds a curve from `(seconds, rate)` points, validating them.
    pub fn new(points: Vec<RatePoint>) -> Result<Self, CurveError> {
        if points.len() < 2 {
            return Err(CurveError::TooFewPoints);
        }
        if points[0].at != 0.0 {
            return Err(CurveError::DoesNotStartAtZero(points[0].at));
        }
        for (index, p) in points.iter().enumerate() {
            if !p.at.is_finite() || !p.rate.is_finite() || p.rate < 0.0 {
                return Err(CurveError::InvalidValue {
                    index,
                    at: p.at,
                    rate: p.rate,
                });
            }
            if index > 0 && p.at < points[index - 1].at {
                return Err(CurveError::TimeGoesBackwards { index, at: p.at });
            }
            if p.rate > MAX_RATE {
                return Err(CurveError::RateTooHigh {
                    index,
                    rate: p.rate,
                });
            }
        }
        let duration = points[points.len() - 1].at;
        if duration > MAX_DURATION_SECS {
            return Err(CurveError::TooLong(duration));
        }
        let mut cumulative = Vec::with_capacity(points.len());
        let mut sum = 0.0;
        cumulative.push(0.0);
        for pair in points.windows(2) {
            sum += segment_area(pair[0], pair[1]);
            cumulative.push(sum);
        }
        Ok(Self { points, cumulative })
    }

    /// A constant rate for `seconds`.
    pub fn constant(rate: f64, seconds: f64) -> Result<Self, CurveError> {
        Self::new(vec![
            RatePoint { at: 0.0, rate },
            RatePoint { at: seconds, rate },
        ])
    }

    /// The points this curve was built from.
    pub fn points(&self) -> &[RatePoint] {
        &self.points
    }

    /// Length of the curve in seconds.
    pub fn duration(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.at)
    }

    /// Expected number of arrivals over the whole curve.
    pub fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// The highest rate anywhere on the curve.
    pub fn peak_rate(&self) -> f64 {
        self.points.iter().map(|p| p.rate).fold(0.0, f64::max)
    }

    /// Target rate at `t` seconds (right-continuous at jumps; 0 outside the curve).
    pub fn rate_at(&self, t: f64) -> f64 {
        if t < 0.0 || t >= self.duration() {
            return 0.0;
        }
        // Last point at or before t: at a jump this picks the rate after it.
        let i = self.points.partition_point(|p| p.at <= t) - 1;
        let (a, b) = (self.points[i], self.points[i + 1]);
        a.rate + slope(a, b) * (t - a.at)
    }

    /// Expected arrivals in `[0, t]`: the integral of the rate up to `t`.
    pub fn count_until(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        if t >= self.duration() {
            return self.total();
        }
        let i = self.points.partition_point(|p| p.at <= t) - 1;
        let a = self.points[i];
        let dt = t - a.at;
        self.cumulative[i] + a.rate * dt + 0.5 * slope(a, self.points[i + 1]) * dt * dt
    }

    /// Expected arrivals in `[from, to]`.
    pub fn count_between(&self, from: f64, to: f64) -> f64 {
        self.count_until(to) - self.count_until(from)
    }

    /// The earliest time at which the integral reaches `count`, or `None` when
    /// the curve never gets there.
    pub fn time_of_count(&self, count: f64) -> Option<f64> {
        self.time_of_count_from(count, 0).map(|(t, _)| t)
    }

    /// Like [`time_of_count`](Self::time_of_count), starting the segment search
    /// at `hint` (a segment index returned by an earlier call with a smaller
    /// count). Returns the time and the segment it fell in, so sequential
    /// callers walk the curve once in total.
    pub fn time_of_count_from(&self, count: f64, hint: usize) -> Option<(f64, usize)> {
        if count > self.total() || count < 0.0 {
            return None;
        }
        let mut i = hint.min(self.points.len() - 2);
        if self.cumulative[i] > count {
            i = 0;
        }
        // Advance to the first segment whose integral reaches `count`; this
        // walks past zero-area segments (rate 0, or zero-length jumps).
        while i + 2 < self.points.len() && self.cumulative[i + 1] < count {
            i += 1;
        }
        let (a, b) = (self.points[i], self.points[i + 1]);
        let remaining = count - self.cumulative[i];
        let dt = solve_segment(a.rate, slope(a, b), remaining);
        Some(((a.at + dt).min(b.at), i))
    }

    /// This curve with every rate multiplied by `factor` (used to split a rate
    /// into shares).
    pub fn scaled(&self, factor: f64) -> Result<Self, CurveError> {
        Self::new(
            self.points
                .iter()
                .map(|p| RatePoint {
                    at: p.at,
                    rate: p.rate * factor,
                })
                .collect(),
        )
    }

    /// This curve up to `at` seconds, then `next` (its time 0 placed at
    /// `at`). Before `at` the integral is unchanged, so a schedule that
    /// switches to the spliced curve mid-run neither repeats nor skips an
    /// arrival: the way a rate update takes effect without a burst or a gap.
    /// If `at` lies past the end, the gap is filled with rate 0.
    pub fn splice(&self, at: f64, next: &RateCurve) -> Result<Self, CurveError> {
        if !at.is_finite() || at <= 0.0 {
            return Ok(next.clone());
        }
        let mut points: Vec<RatePoint> =
            self.points.iter().copied().filter(|p| p.at < at).collect();
        let end = self.duration();
        if at <= end {
            let i = self.points.partition_point(|p| p.at < at).max(1) - 1;
            let (a, b) = (self.points[i], self.points[i + 1]);
            points.push(RatePoint {
                at,
                rate: a.rate + slope(a, b) * (at - a.at),
            });
        } else {
            points.push(RatePoint { at: end, rate: 0.0 });
            points.push(RatePoint { at, rate: 0.0 });
        }
        points.extend(next.points.iter().map(|p| RatePoint {
            at: p.at + at,
            rate: p.rate,
        }));
        Self::new(points)
    }

    /// The part of this curve from `at` seconds on, shifted to start at 0
    /// (a single point at rate 0 if `at` is past the end).
    pub fn after(&self, at: f64) -> Result<Self, CurveError> {
        let end = self.duration();
        if at >= end {
            return Self::new(vec![
                RatePoint { at: 0.0, rate: 0.0 },
                RatePoint { at: 0.0, rate: 0.0 },
            ]);
        }
        let at = at.max(0.0);
        let mut points = vec![RatePoint {
            at: 0.0,
            rate: self.rate_at(at),
        }];
        points.extend(self.points.iter().filter(|p| p.at > at).map(|p| RatePoint {
            at: p.at - at,
            rate: p.rate,
        }));
        Self::new(points)
    }

    /// This curve followed by `next`, shifted to start where this one ends.
    pub fn then(&self, next: &RateCurve) -> Result<Self, CurveError> {
        let offset = self.duration();
        let mut points = self.points.clone();
        points.extend(next.points.iter().map(|p| RatePoint {
            at: p.at + offset,
            rate: p.rate,
        }));
        Self::new(points)
    }
}

/// Rate change per second along the segment `a → b` (0 for a jump).
fn slope(a: RatePoint, b: RatePoint) -> f64 {
    let dt = b.at - a.at;
    if dt > 0.0 {
        (b.rate - a.rate) / dt
    } else {
        0.0
    }
}

/// Integral of the rate over the segment `a → b` (trapezoid, exact for lines).
fn segment_area(a: RatePoint, b: RatePoint) -> f64 {
    0.5 * (a.rate + b.rate) * (b.at - a.at)
}

/// Time `dt` into a segment starting at `rate` with `slope` at which the
/// integral reaches `area`: the root of `rate*dt + slope*dt²/2 = area`.
///
/// Written as `2*area / (rate + sqrt(rate² + 2*slope*area))`, which is the
/// same root but stays accurate when `slope` is tiny or negative, and needs
/// no special case for `slope == 0`.
fn solve_segment(rate: f64, slope: f64, area: f64) -> f64 {
    if area <= 0.0 {
        return 0.0;
    }
    let disc = (rate * rate + 2.0 * slope * area).max(0.0);
    let denom = rate + disc.sqrt();
    if denom > 0.0 { 2.0 * area / denom } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64)]) -> RateCurve {
        RateCurve::new(
            points
                .iter()
                .map(|&(at, rate)| RatePoint { at, rate })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn integral_of_a_ramp_is_the_triangle() {
        let ramp = curve(&[(0.0, 0.0), (10.0, 1000.0)]);
        assert!((ramp.total() - 5000.0).abs() < 1e-9);
        assert!((ramp.count_until(5.0) - 1250.0).abs() < 1e-9);
        assert!((ramp.rate_at(2.5) - 250.0).abs() < 1e-9);
    }

    #[test]
    fn inverse_matches_integral_on_every_segment_shape() {
        let c = curve(&[
            (0.0, 0.0),
            (4.0, 400.0),
            (6.0, 400.0),
            (6.0, 50.0),
            (8.0, 0.0),
            (9.0, 0.0),
            (10.0, 30.0),
        ]);
        let mut hint = 0;
        let mut n = 0.5;
        while n < c.total() {
            let (t, seg) = c.time_of_count_from(n, hint).unwrap();
            assert!((c.count_until(t) - n).abs() < 1e-6, "n={n} t={t}");
            assert!(c.time_of_count(n).unwrap() - t < 1e-9);
            hint = seg;
            n += 1.0;
        }
        assert_eq!(c.time_of_count(c.total() + 1.0), None);
    }

    #[test]
    fn zero_rate_gap_gets_no_arrivals() {
        let c = curve(&[
            (0.0, 10.0),
            (1.0, 10.0),
            (1.0, 0.0),
            (5.0, 0.0),
            (5.0, 10.0),
            (6.0, 10.0),
        ]);
        let t = c.time_of_count(10.5).unwrap();
        assert!(
            (t - 5.05).abs() < 1e-9,
            "arrival after the gap lands at {t}"
        );
    }

    #[test]
    fn rejects_bad_points() {
        assert_eq!(
            RateCurve::new(vec![RatePoint { at: 0.0, rate: 1.0 }]),
            Err(CurveError::TooFewPoints)
        );
        assert!(matches!(
            RateCurve::new(vec![
                RatePoint { at: 0.0, rate: 1.0 },
                RatePoint {
                    at: 1.0,
                    rate: -1.0
                }
            ]),
            Err(CurveError::InvalidValue { index: 1, .. })
        ));
        assert!(matches!(
            RateCurve::new(vec![
                RatePoint { at: 0.0, rate: 1.0 },
                RatePoint { at: 2.0, rate: 1.0 },
                RatePoint { at: 1.0, rate: 1.0 }
            ]),
            Err(CurveError::TimeGoesBackwards { index: 2, .. })
        ));
    }

    #[test]
    fn splicing_keeps_the_past_and_replaces_the_future() {
        let ramp = curve(&[(0.0, 0.0), (10.0, 100.0)]);
        let flat = RateCurve::constant(300.0, 5.0).unwrap();
        let spliced = ramp.splice(4.0, &flat).unwrap();
        assert!((spliced.count_until(4.0) - ramp.count_until(4.0)).abs() < 1e-9);
        assert!((spliced.total() - (ramp.count_until(4.0) + 1500.0)).abs() < 1e-9);
        assert!((spliced.duration() - 9.0).abs() < 1e-12);
        assert_eq!(spliced.rate_at(4.0), 300.0);
        let late = RateCurve::constant(10.0, 2.0)
            .unwrap()
            .splice(5.0, &flat)
            .unwrap();
        assert!(
            (late.total() - (20.0 + 1500.0)).abs() < 1e-9,
            "a gap past the end runs at 0"
        );
    }

    #[test]
    fn the_part_after_a_time_keeps_the_rest_of_the_area() {
        let ramp = curve(&[(0.0, 0.0), (10.0, 100.0)]);
        let rest = ramp.after(4.0).unwrap();
        assert!((rest.total() - (ramp.total() - ramp.count_until(4.0))).abs() < 1e-9);
        assert!((rest.duration() - 6.0).abs() < 1e-12);
        assert_eq!(ramp.after(20.0).unwrap().total(), 0.0);
    }

    #[test]
    fn concatenation_and_scaling_preserve_area() {
        let a = RateCurve::constant(100.0, 2.0).unwrap();
        let b = curve(&[(0.0, 0.0), (2.0, 100.0)]);
        let ab = a.then(&b).unwrap();
        assert!((ab.total() - 300.0).abs() < 1e-9);
        assert!((ab.duration() - 4.0).abs() < 1e-12);
        assert!((ab.scaled(0.25).unwrap().total() - 75.0).abs() < 1e-9);
    }
}
