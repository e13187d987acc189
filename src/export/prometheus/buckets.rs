//! The latency bucket layout of the Prometheus histograms, and folding HDR
//! histograms into it.
//!
//! Bucket bounds are powers of 2^(1/16) seconds, from 2^-17 s (7.6 µs) to
//! 2^6 s (64 s): 369 bounds, the same as Prometheus native histograms'
//! schema 4. Each bucket's upper bound is 4.43 % above its lower one, so
//! `histogram_quantile` — which interpolates within the bucket holding the
//! rank — is off by at most 4.43 % of the true value (plus HDR's own 0.1 %
//! quantisation), and since the buckets are counts, summing them across
//! peers before the quantile is exact: the cluster's percentile comes out
//! within 5 % of the merged report's, whatever the peers' shares.

use crate::metrics::LatencyHistogram;

/// Bounds per doubling.
pub const PER_OCTAVE: i32 = 16;
/// The first bound is 2^(LOWEST / 16) seconds.
const LOWEST: i32 = -17 * PER_OCTAVE;
/// The last bound is 2^(HIGHEST / 16) seconds.
const HIGHEST: i32 = 6 * PER_OCTAVE;
/// Number of finite bounds.
pub const BOUNDS: usize = (HIGHEST - LOWEST + 1) as usize;
/// The worst relative error of a quantile read from these buckets.
pub const WORST_RELATIVE_ERROR: f64 = 0.0443;

/// The upper bound of bucket `index`, in seconds.
pub fn bound(index: usize) -> f64 {
    2f64.powf((LOWEST + index as i32) as f64 / PER_OCTAVE as f64)
}

/// The bucket a value of `seconds` counts in: the first whose bound is at
/// least it ([`BOUNDS`] is the +Inf bucket).
pub fn bucket_of(seconds: f64) -> usize {
    if seconds <= bound(0) {
        return 0;
    }
    let exact = (seconds.log2() * PER_OCTAVE as f64).ceil() as i32 - LOWEST;
    // log2 can land a hair off an exact power; settle against the bounds.
    let mut index = exact.clamp(0, BOUNDS as i32) as usize;
    while index < BOUNDS && bound(index) < seconds {
        index += 1;
    }
    while index > 0 && bound(index - 1) >= seconds {
        index -= 1;
    }
    index
}

/// A cumulative histogram in the bucket layout, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// Counts per bucket (not cumulative), the last one +Inf.
    counts: Vec<u64>,
    /// Sum of the values, seconds.
    sum: f64,
    /// Number of values.
    count: u64,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            counts: vec![0; BOUNDS + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Buckets {
    /// The buckets of `hdr` (nanoseconds).
    pub fn of(hdr: &LatencyHistogram) -> Self {
        let mut buckets = Self::default();
        buckets.add(hdr);
        buckets
    }

    /// Adds every value of `hdr` (nanoseconds), each at its HDR bucket's
    /// highest equivalent value.
    pub fn add(&mut self, hdr: &LatencyHistogram) {
        for value in hdr.iter_recorded() {
            let n = value.count_at_value();
            let seconds = value.value_iterated_to() as f64 / 1e9;
            self.counts[bucket_of(seconds)] += n;
            self.sum += seconds * n as f64;
            self.count += n;
        }
    }

    /// (upper bound, count) per bucket, not cumulative — the encoder
    /// accumulates them as it writes — ending with +Inf.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        (0..=BOUNDS)
            .map(|i| {
                let upper = if i == BOUNDS { f64::INFINITY } else { bound(i) };
                (upper, self.counts[i])
            })
            .collect()
    }

    /// Sum of the values, seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::{new_histogram, record};

    #[test]
    fn bounds_grow_by_the_stated_ratio_and_cover_the_range() {
        assert_eq!(BOUNDS, 369);
        assert!((bound(0) - 7.63e-6).abs() < 1e-8);
        assert!((bound(BOUNDS - 1) - 64.0).abs() < 1e-9);
        for i in 1..BOUNDS {
            let ratio = bound(i) / bound(i - 1);
            assert!(ratio - 1.0 <= WORST_RELATIVE_ERROR, "{ratio}");
        }
    }

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        for i in 1..BOUNDS {
            let b = bound(i);
            assert_eq!(bucket_of(b), i, "exactly on the bound");
            assert_eq!(bucket_of(b * 0.999), i, "just below");
            assert_eq!(bucket_of(b * 1.001), i + 1, "just above");
        }
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(1e6), BOUNDS);
    }

    #[test]
    fn interpolated_quantiles_are_within_the_stated_error() {
        let mut hdr = new_histogram();
        // A wide spread: 100 µs to 1 s, log-uniform.
        for i in 0..10_000u64 {
            let ns = 1e5 * 10f64.powf(4.0 * i as f64 / 10_000.0);
            record(&mut hdr, ns as u64);
        }
        let mut buckets = Buckets::default();
        buckets.add(&hdr);
        assert_eq!(buckets.count(), 10_000);
        let mut running = 0;
        let cumulative: Vec<(f64, u64)> = buckets
            .per_bucket()
            .into_iter()
            .map(|(upper, n)| {
                running += n;
                (upper, running)
            })
            .collect();
        assert_eq!(
            cumulative.last(),
            Some(&(f64::INFINITY, 10_000)),
            "+Inf holds them all"
        );
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = hdr.value_at_quantile(q) as f64 / 1e9;
            let estimate = histogram_quantile(q, &cumulative, buckets.count());
            let error = (estimate - exact).abs() / exact;
            assert!(
                error <= WORST_RELATIVE_ERROR + 0.001,
                "q{q}: {estimate} vs {exact}"
            );
        }
    }

    /// Prometheus's histogram_quantile: linear within the bucket of the rank.
    fn histogram_quantile(q: f64, cumulative: &[(f64, u64)], count: u64) -> f64 {
        let rank = q * count as f64;
        let i = cumulative
            .iter()
            .position(|(_, c)| *c as f64 >= rank)
            .unwrap();
        let (lower, below) = if i == 0 { (0.0, 0) } else { cumulative[i - 1] };
        let (upper, upto) = cumulative[i];
        lower + (upper - lower) * (rank - below as f64) / (upto - below) as f64
    }
}
