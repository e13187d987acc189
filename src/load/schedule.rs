//! The arrival schedule: when each arrival of an open-model run is due.
//!
//! Arrival `k` (counting from 0) is due at the instant the integral of the rate
//! curve reaches `k + ½`. Placing arrivals at the midpoints of unit steps of the
//! integral makes the count in any interval differ from the integral over it by
//! less than one, with no bias: nothing fires at `t = 0` before the curve has
//! accumulated any work, and splitting one curve into shares never rounds every
//! share up. The schedule is a pure function of the curve, so a late generator
//! never "catches up" by compressing arrivals and a rate drop never stalls.

use super::curve::RateCurve;

/// Walks a [`RateCurve`] and yields each arrival's due time in seconds.
#[derive(Debug, Clone)]
pub struct ArrivalSchedule {
    curve: RateCurve,
    next_index: u64,
    segment: usize,
    /// Due time of `next_index`, once computed.
    peeked: Option<Option<f64>>,
}

impl ArrivalSchedule {
    /// A schedule over `curve`, starting with its first arrival.
    pub fn new(curve: RateCurve) -> Self {
        Self {
            curve,
            next_index: 0,
            segment: 0,
            peeked: None,
        }
    }

    /// Due time (seconds) of the next arrival, without consuming it.
    pub fn peek(&mut self) -> Option<f64> {
        if let Some(due) = self.peeked {
            return due;
        }
        let target = self.next_index as f64 + 0.5;
        let due = self
            .curve
            .time_of_count_from(target, self.segment)
            .map(|(at, segment)| {
                self.segment = segment;
                at
            });
        self.peeked = Some(due);
        due
    }

    /// Follows `curve` from now on, keeping the count of arrivals already
    /// released. With a curve from [`RateCurve::splice`] at a time not yet
    /// reached, no arrival is repeated or skipped.
    pub fn replace_curve(&mut self, curve: RateCurve) {
        self.curve = curve;
        self.segment = 0;
        self.peeked = None;
    }

    /// The curve this schedule follows.
    pub fn curve(&self) -> &RateCurve {
        &self.curve
    }

    /// How many arrivals the whole schedule holds: the integral rounded to
    /// the nearest whole arrival.
    pub fn total_arrivals(&self) -> u64 {
        (self.curve.total() + 0.5).floor() as u64
    }

    /// Index of the arrival [`next`](Iterator::next) will return.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// How many arrivals are due strictly before `t` seconds: those whose
    /// integral step `k + ½` the curve reaches before `t`.
    pub fn due_before(&self, t: f64) -> u64 {
        let due = (self.curve.count_until(t) + 0.5).ceil() - 1.0;
        (due.max(0.0) as u64).min(self.total_arrivals())
    }

    /// Skips every arrival not yet released that is due before `t` seconds
    /// and returns how many it skipped, without walking them one by one (a
    /// generator that fell seconds behind at millions per second must not
    /// spend more seconds counting what it missed).
    pub fn skip_due_before(&mut self, t: f64) -> u64 {
        let until = self.due_before(t);
        let skipped = until.saturating_sub(self.next_index);
        if skipped > 0 {
            self.next_index = until;
            self.peeked = None;
        }
        skipped
    }
}

impl Iterator for ArrivalSchedule {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        let due = self.peek()?;
        self.peeked = None;
        self.next_index += 1;
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::curve::RatePoint;

    fn counts_per_second(curve: RateCurve) -> Vec<u64> {
        let mut counts = vec![0u64; curve.duration().ceil() as usize];
        for at in ArrivalSchedule::new(curve) {
            counts[at as usize] += 1;
        }
        counts
    }

    #[test]
    fn constant_rate_fills_each_second_exactly() {
        let counts = counts_per_second(RateCurve::constant(50.0, 3.0).unwrap());
        assert_eq!(counts, vec![50, 50, 50]);
    }

    #[test]
    fn linear_ramp_delivers_its_integral_not_double() {
        let ramp = RateCurve::new(vec![
            RatePoint { at: 0.0, rate: 0.0 },
            RatePoint {
                at: 10.0,
                rate: 1000.0,
            },
        ])
        .unwrap();
        let schedule = ArrivalSchedule::new(ramp.clone());
        assert_eq!(schedule.total_arrivals(), 5000);
        let counts = counts_per_second(ramp);
        assert_eq!(counts.iter().sum::<u64>(), 5000);
        for (second, &n) in counts.iter().enumerate() {
            let expected = 100.0 * second as f64 + 50.0;
            assert!((n as f64 - expected).abs() <= 1.0, "second {second}: {n}");
        }
    }

    #[test]
    fn switching_to_a_spliced_curve_mid_run_neither_repeats_nor_skips() {
        let old = RateCurve::constant(100.0, 4.0).unwrap();
        let mut schedule = ArrivalSchedule::new(old.clone());
        let mut times = Vec::new();
        while schedule.peek().is_some_and(|t| t < 2.0) {
            times.extend(schedule.next());
        }
        schedule.replace_curve(
            old.splice(2.0, &RateCurve::constant(300.0, 2.0).unwrap())
                .unwrap(),
        );
        times.extend(schedule);
        assert_eq!(times.len(), 200 + 600);
        assert!(
            times.windows(2).all(|w| w[1] > w[0]),
            "strictly increasing, no duplicates"
        );
        let in_third_second = times.iter().filter(|&&t| (2.0..3.0).contains(&t)).count();
        assert_eq!(in_third_second, 300);
    }

    #[test]
    fn skipping_counts_exactly_what_was_due_before() {
        let curve = RateCurve::constant(1000.0, 10.0).unwrap();
        let mut schedule = ArrivalSchedule::new(curve.clone());
        // Arrival k is due at (k + 0.5) / 1000: 2 500 fall before 2.5 s.
        assert_eq!(schedule.skip_due_before(2.5), 2_500);
        assert_eq!(schedule.skip_due_before(2.0), 0, "never goes back");
        let next = schedule.peek().unwrap();
        assert!((next - 2.5005).abs() < 1e-9, "next due at {next}");
        let rest = schedule.count() as u64;
        assert_eq!(2_500 + rest, 10_000, "skipped + sent = the integral");
        // The cut is exact on an arrival's due time too: it is not before.
        let mut at_due = ArrivalSchedule::new(curve);
        assert_eq!(at_due.skip_due_before(0.0015), 1);
        assert_eq!(at_due.skip_due_before(100.0), 9_999);
    }

    #[test]
    fn arrivals_are_monotonic_and_inside_the_curve() {
        let curve = RateCurve::new(vec![
            RatePoint { at: 0.0, rate: 7.0 },
            RatePoint {
                at: 3.0,
                rate: 700.0,
            },
            RatePoint { at: 3.0, rate: 1.0 },
            RatePoint { at: 9.0, rate: 0.0 },
        ])
        .unwrap();
        let mut last = 0.0;
        let mut n = 0;
        for at in ArrivalSchedule::new(curve.clone()) {
            assert!(at >= last && at <= curve.duration());
            last = at;
            n += 1;
        }
        assert_eq!(n, ArrivalSchedule::new(curve).total_arrivals());
    }
}
