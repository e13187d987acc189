//! Latency histograms: one shape everywhere, so any two can be added exactly.
//!
//! Values are nanoseconds, resolved to 1 µs with 3 significant digits from
//! 1 µs to 1 hour; larger values saturate at the top instead of being lost.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Finest distinguishable latency, in nanoseconds.
pub const LOWEST_NS: u64 = 1_000;
/// Largest trackable latency, in nanoseconds (one hour).
pub const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept at every magnitude.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds.
pub type LatencyHistogram = Histogram<u64>;

/// A new, empty latency histogram of the standard shape.
pub fn new_histogram() -> LatencyHistogram {
    Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records `ns`, clamping values beyond the top of the range.
#[inline]
pub fn record(h: &mut LatencyHistogram, ns: u64) {
    h.saturating_record(ns);
}

/// Adds `from` into `into`. Both have the standard shape, so this is exact.
pub fn merge(into: &mut LatencyHistogram, from: &LatencyHistogram) {
    into.add(from)
        .expect("histograms of the standard shape always add");
}

/// Encodes a histogram in the HdrHistogram V2 format, base64-wrapped, as
/// other HDR tools read it.
pub fn encode_v2(h: &LatencyHistogram) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    BASE64.encode(bytes)
}

/// Decodes [`encode_v2`] output back into a histogram of the standard shape.
pub fn decode_v2(text: &str) -> anyhow::Result<LatencyHistogram> {
    let bytes = BASE64.decode(text.trim())?;
    check_v2_header(&bytes)?;
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("not an HDR V2 histogram: {e:?}"))?;
    let mut h = new_histogram();
    h.add(&decoded)
        .map_err(|e| anyhow::anyhow!("histogram does not fit the standard range: {e:?}"))?;
    Ok(h)
}

/// Refuses a V2 header whose shape is beyond the standard one before the
/// decoder allocates its counts: reports come from other processes, and a
/// header claiming 5 significant digits over 2^62 ns would allocate 48 MB
/// for each of a report's per-second histograms.
fn check_v2_header(bytes: &[u8]) -> anyhow::Result<()> {
    let field = |at: usize, len: usize| -> Option<u64> {
        let raw = bytes.get(at..at + len)?;
        Some(raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    let (Some(digits), Some(highest)) = (field(12, 4), field(24, 8)) else {
        anyhow::bail!(
            "not an HDR V2 histogram: {} bytes is no header",
            bytes.len()
        );
    };
    if digits > u64::from(SIGNIFICANT_DIGITS) || highest > 2 * HIGHEST_NS {
        anyhow::bail!(
            "histogram does not fit the standard range ({digits} digits up to {highest} ns)"
        );
    }
    Ok(())
}

/// Descriptive statistics of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value.
    pub min_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Standard deviation.
    pub stddev_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 75th percentile.
    pub p75_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest value.
    pub max_us: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

impl LatencySummary {
    /// Summarises `h`; all zero when it is empty.
    pub fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1_000.0,
            stddev_us: h.stdev() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p75_us: us(h.value_at_quantile(0.75)),
            p90_us: us(h.value_at_quantile(0.90)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_round_trip_is_lossless() {
        let mut h = new_histogram();
        for v in [1_500u64, 2_000_000, 7, 90_000_000_000] {
            record(&mut h, v);
        }
        record(&mut h, u64::MAX);
        let back = decode_v2(&encode_v2(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), 5);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (new_histogram(), new_histogram(), new_histogram());
        for v in 1..5_000u64 {
            let ns = v * 997;
            record(if v % 3 == 0 { &mut a } else { &mut b }, ns);
            record(&mut all, ns);
        }
        merge(&mut a, &b);
        assert_eq!(a, all);
        assert_eq!(LatencySummary::of(&a), LatencySummary::of(&all));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_v2("not base64 !!").is_err());
        assert!(decode_v2(&BASE64.encode([1u8, 2, 3, 4, 5, 6, 7, 8, 9])).is_err());
    }
}
