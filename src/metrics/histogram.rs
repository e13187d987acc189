//! Latency histograms: one shape everywhere, so any two can be added exactly.
//!
//! Values are nanoseconds, resolved to 1 µs with 3 significant digits from
//! 1 µs to 1 hour; larger values saturate at the top instead of being lost.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
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

/// Encodes a histogram in the compressed HdrHistogram V2 format,
/// base64-wrapped: the encoding of HdrHistogram's own log format
/// (`HISTFAAA…`), which other HDR tools read. Compressed, a second's
/// histogram of a real service's latencies takes about half the bytes.
pub fn encode_v2(h: &LatencyHistogram) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    BASE64.encode(bytes)
}

/// Decodes [`encode_v2`] output, or the plain V2 format (reports written
/// before histograms were compressed), back into a histogram of the
/// standard shape.
pub fn decode_v2(text: &str) -> anyhow::Result<LatencyHistogram> {
    let bytes = plain_v2(BASE64.decode(text.trim())?)?;
    check_v2_header(&bytes)?;
    // hdrhistogram 7.5 negates a decoded count without a check: a count of
    // i64::MIN wraps (and is refused) in a release build but panics in a
    // debug one. Caught, it is the same refusal in both.
    let decoding = std::panic::AssertUnwindSafe(|| {
        Deserializer::new().deserialize::<u64, _>(&mut bytes.as_slice())
    });
    let decoded: Histogram<u64> = std::panic::catch_unwind(decoding)
        .map_err(|_| anyhow::anyhow!("not an HDR V2 histogram: a count out of range"))?
        .map_err(|e| anyhow::anyhow!("not an HDR V2 histogram: {e:?}"))?;
    let mut h = new_histogram();
    h.add(&decoded)
        .map_err(|e| anyhow::anyhow!("histogram does not fit the standard range: {e:?}"))?;
    Ok(h)
}

/// The cookie that opens a compressed V2 histogram.
const COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// The most a compressed histogram may inflate to: a plain V2 histogram of
/// the standard shape takes at most a few hundred kilobytes, and a report
/// comes from another process (a small payload that inflates to gigabytes
/// is refused, not inflated).
const MAX_PLAIN_BYTES: u64 = 1 << 20;

/// The plain V2 bytes of `bytes`: as they are, or inflated from the
/// compressed format (cookie, length, zlib of the plain bytes).
fn plain_v2(bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    if bytes.get(..4) != Some(&COMPRESSED_COOKIE.to_be_bytes()[..]) {
        return Ok(bytes);
    }
    let deflated = bytes
        .get(8..)
        .ok_or_else(|| anyhow::anyhow!("a compressed HDR histogram of {} bytes", bytes.len()))?;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(deflated)
        .take(MAX_PLAIN_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(|e| anyhow::anyhow!("not a compressed HDR histogram: {e}"))?;
    anyhow::ensure!(
        plain.len() as u64 <= MAX_PLAIN_BYTES,
        "a compressed HDR histogram inflates past {MAX_PLAIN_BYTES} bytes"
    );
    Ok(plain)
}

/// Bytes of a plain V2 header: cookie, payload length, normalizing offset,
/// significant digits, lowest and highest trackable values, and ratio.
const V2_HEADER_BYTES: usize = 40;

/// Refuses a V2 header whose shape is beyond the standard one before the
/// decoder allocates its counts: reports come from other processes, and a
/// header claiming 5 significant digits over 2^62 ns would allocate 48 MB
/// for each of a report's per-second histograms. Its payload length must
/// be the bytes that follow: the decoder sizes its buffer by the header,
/// so 40 bytes claiming a 4 GiB payload would have it zero 4 GiB.
fn check_v2_header(bytes: &[u8]) -> anyhow::Result<()> {
    let field = |at: usize, len: usize| -> Option<u64> {
        let raw = bytes.get(at..at + len)?;
        Some(raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    let whole = bytes.len() >= V2_HEADER_BYTES;
    let (true, Some(payload), Some(digits), Some(highest)) =
        (whole, field(4, 4), field(12, 4), field(24, 8))
    else {
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
    let follows = (bytes.len() - V2_HEADER_BYTES) as u64;
    if payload > follows {
        anyhow::bail!(
            "not an HDR V2 histogram: its header claims {payload} bytes, {follows} follow"
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
        let mut cookie_only = COMPRESSED_COOKIE.to_be_bytes().to_vec();
        assert!(decode_v2(&BASE64.encode(&cookie_only)).is_err());
        cookie_only.extend([0, 0, 0, 9, 1, 2, 3]);
        assert!(decode_v2(&BASE64.encode(&cookie_only)).is_err());
    }

    /// A plain V2 histogram (a report from before compression, another
    /// tool's) still reads, and the compressed one is the smaller.
    #[test]
    fn plain_v2_still_reads_and_compressed_is_smaller() {
        use hdrhistogram::serialization::V2Serializer;
        let mut h = new_histogram();
        for v in 0..3_000u64 {
            record(&mut h, 100_000 + (v * v * 37) % 50_000_000);
        }
        let mut plain = Vec::new();
        V2Serializer::new().serialize(&h, &mut plain).unwrap();
        let plain = BASE64.encode(plain);
        assert_eq!(decode_v2(&plain).unwrap(), h);
        let compressed = encode_v2(&h);
        assert!(compressed.starts_with("HISTF"), "{}", &compressed[..8]);
        assert!(
            compressed.len() * 10 < plain.len() * 8,
            "compressed {} vs plain {} bytes",
            compressed.len(),
            plain.len()
        );
    }

    /// A small payload that would inflate far past any histogram is
    /// refused without inflating it all.
    #[test]
    fn a_compressed_bomb_is_refused() {
        use std::io::Write as _;
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        zlib.write_all(&vec![0u8; 64 << 20]).unwrap();
        let deflated = zlib.finish().unwrap();
        let mut bytes = COMPRESSED_COOKIE.to_be_bytes().to_vec();
        bytes.extend((deflated.len() as u32).to_be_bytes());
        bytes.extend(deflated);
        let refused = decode_v2(&BASE64.encode(&bytes)).unwrap_err();
        assert!(refused.to_string().contains("inflates past"), "{refused}");
    }

    /// A plain header claiming a payload longer than what follows is
    /// refused before the decoder sizes a buffer by it.
    #[test]
    fn a_header_claiming_more_than_follows_is_refused() {
        let mut plain = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&new_histogram(), &mut plain)
            .unwrap();
        plain[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let refused = decode_v2(&BASE64.encode(&plain)).unwrap_err();
        assert!(
            refused.to_string().contains("claims 4294967295 bytes"),
            "{refused}"
        );
        let short = decode_v2(&BASE64.encode(&plain[..36])).unwrap_err();
        assert!(short.to_string().contains("is no header"), "{short}");
    }

    /// A count the decoder cannot negate (zigzag i64::MIN) is refused, in
    /// a debug build as in a release one.
    #[test]
    fn a_count_out_of_range_is_refused() {
        let mut plain = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&new_histogram(), &mut plain)
            .unwrap();
        plain.truncate(V2_HEADER_BYTES);
        plain[4..8].copy_from_slice(&9u32.to_be_bytes());
        plain.extend([0xFF; 9]);
        assert!(decode_v2(&BASE64.encode(&plain)).is_err());
    }
}
