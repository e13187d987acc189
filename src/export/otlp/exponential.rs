//! Base-2 exponential histograms from HDR histograms, as OTLP carries them.
//!
//! At scale `s` bucket `i` holds the values in (b^i, b^(i+1)] with
//! b = 2^(2^-s). Every peer's buckets sit on the same grid, so a backend
//! adds peers' histograms exactly (after bringing them to the lower of
//! their scales, which only merges neighbouring buckets). The scale is the
//! finest (at most 20) at which the values' range fits in [`MAX_BUCKETS`]
//! buckets, as the OpenTelemetry SDKs choose it; a quantile read as its
//! bucket's upper bound is then at most [`relative_error`] above the truth.

use crate::metrics::LatencyHistogram;

/// The finest scale used.
pub const MAX_SCALE: i32 = 20;
/// Most buckets one histogram holds (the OpenTelemetry SDKs' default).
pub const MAX_BUCKETS: usize = 160;
/// The coarsest scale used (the specification's lowest).
const MIN_SCALE: i32 = -10;

/// The worst relative error of a value read from a bucket at `scale`.
pub fn relative_error(scale: i32) -> f64 {
    2f64.powf(2f64.powi(-scale)) - 1.0
}

/// One exponential histogram of seconds (positive values only).
#[derive(Debug, Clone, PartialEq)]
pub struct Exponential {
    /// The resolution: bucket bounds are powers of 2^(2^-scale).
    pub scale: i32,
    /// Values of exactly zero.
    pub zero_count: u64,
    /// Index of the first bucket in `counts`.
    pub offset: i32,
    /// Counts of consecutive buckets from `offset`.
    pub counts: Vec<u64>,
    /// Number of values.
    pub count: u64,
    /// Sum of the values, seconds.
    pub sum: f64,
    /// Smallest value, seconds.
    pub min: f64,
    /// Largest value, seconds.
    pub max: f64,
}

/// The index at [`MAX_SCALE`] of the bucket holding `seconds` (> 0).
fn finest_index(seconds: f64) -> i64 {
    (seconds.log2() * f64::from(1 << MAX_SCALE)).ceil() as i64 - 1
}

impl Exponential {
    /// The histogram of `hdr` (nanoseconds), each HDR bucket counted at its
    /// highest equivalent value.
    pub fn of(hdr: &LatencyHistogram) -> Self {
        let mut zero_count = 0;
        let mut values = Vec::new();
        let mut sum = 0.0;
        for v in hdr.iter_recorded() {
            let (seconds, n) = (v.value_iterated_to() as f64 / 1e9, v.count_at_value());
            sum += seconds * n as f64;
            if seconds <= 0.0 {
                zero_count += n;
            } else {
                values.push((finest_index(seconds), n));
            }
        }
        let (low, high) = match (values.first(), values.last()) {
            (Some(first), Some(last)) => (first.0, last.0),
            _ => (0, 0),
        };
        let scale = (MIN_SCALE..=MAX_SCALE)
            .rev()
            .find(|scale| {
                let shift = MAX_SCALE - scale;
                (((high >> shift) - (low >> shift)) as usize) < MAX_BUCKETS
            })
            .unwrap_or(MIN_SCALE);
        let shift = MAX_SCALE - scale;
        let offset = low >> shift;
        let mut counts =
            vec![0u64; ((high >> shift) - offset) as usize + usize::from(!values.is_empty())];
        for (index, n) in values {
            counts[((index >> shift) - offset) as usize] += n;
        }
        Self {
            scale,
            zero_count,
            offset: offset as i32,
            counts,
            count: hdr.len(),
            sum,
            min: hdr.min() as f64 / 1e9,
            max: hdr.max() as f64 / 1e9,
        }
    }

    /// The upper bound of bucket `index` at this scale, seconds.
    pub fn upper_bound(&self, index: i32) -> f64 {
        2f64.powf(f64::from(index + 1) * 2f64.powi(-self.scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::{new_histogram, record};

    fn quantile(h: &Exponential, q: f64) -> f64 {
        let rank = (q * h.count as f64).ceil() as u64;
        let mut seen = h.zero_count;
        for (i, n) in h.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return h.upper_bound(h.offset + i as i32);
            }
        }
        h.max
    }

    #[test]
    fn buckets_fit_and_quantiles_are_within_the_scale_error() {
        let mut hdr = new_histogram();
        for i in 0..20_000u64 {
            // 50 µs to 500 ms, log-uniform.
            let ns = 5e4 * 10f64.powf(4.0 * i as f64 / 20_000.0);
            record(&mut hdr, ns as u64);
        }
        let h = Exponential::of(&hdr);
        assert!(h.counts.len() <= MAX_BUCKETS);
        assert_eq!(h.counts.iter().sum::<u64>(), 20_000);
        assert_eq!(h.count, 20_000);
        // 13.3 octaves in 160 buckets: 8 per octave.
        assert_eq!(h.scale, 3);
        for q in [0.5, 0.9, 0.99] {
            let exact = hdr.value_at_quantile(q) as f64 / 1e9;
            let estimate = quantile(&h, q);
            assert!(estimate >= exact * 0.999, "q{q}: {estimate} < {exact}");
            assert!(
                estimate <= exact * (1.0 + relative_error(h.scale)) * 1.001,
                "q{q}: {estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn a_narrow_histogram_gets_the_finest_scale() {
        let mut hdr = new_histogram();
        for _ in 0..10 {
            record(&mut hdr, 1_000_000);
        }
        let h = Exponential::of(&hdr);
        assert_eq!(h.scale, MAX_SCALE);
        assert_eq!((h.zero_count, h.counts.iter().sum::<u64>()), (0, 10));
        let empty = Exponential::of(&new_histogram());
        assert_eq!((empty.count, empty.counts.len()), (0, 0));
    }
}
