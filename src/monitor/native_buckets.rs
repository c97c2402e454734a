//! The native (exponential) buckets of `agent_probe_duration_seconds`, kept in the agent's state
//! beside the classic ones so that one lock covers both and the protobuf writer can read them
//! directly. Probe durations are never negative, NaN or infinite, so only the zero bucket and
//! positive buckets exist, and the count of buckets is bounded by the range of durations (about
//! eight per doubling), so no resolution reduction is needed.

use std::time::SystemTime;

/// Resolution of the buckets: each bound is 2^(1/8) (about 9 %) above the previous one. The
/// largest standard growth factor not above 1.1.
pub const NATIVE_SCHEMA: i32 = 3;

/// Durations up to this (2^-128 s) count in the zero bucket, as the native histogram
/// specification recommends.
pub const NATIVE_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Buckets per doubling, 2^schema.
const PER_OCTAVE: usize = 1 << NATIVE_SCHEMA;

/// The buckets that hold at least one probe.
#[derive(Debug, Clone)]
pub struct NativeBuckets {
    pub zero_count: u64,
    /// (bucket index, probes), sorted by index. Bucket `i` holds durations in
    /// (2^((i-1)/8), 2^(i/8)].
    pub positive: Vec<(i32, u64)>,
    /// When counting began: the `start_timestamp` a scraper uses to see resets.
    pub created: SystemTime,
}

impl NativeBuckets {
    pub fn new(created: SystemTime) -> Self {
        NativeBuckets {
            zero_count: 0,
            positive: Vec::new(),
            created,
        }
    }

    pub fn observe(&mut self, seconds: f64) {
        if seconds.is_nan() || seconds <= NATIVE_ZERO_THRESHOLD {
            self.zero_count += 1;
            return;
        }
        let index = bucket_index(seconds);
        match self.positive.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => self.positive[at].1 += 1,
            Err(at) => self.positive.insert(at, (index, 1)),
        }
    }

    /// The positive buckets as spans and count deltas, the form of the exposition: a gap of up
    /// to two empty buckets is cheaper written as zero deltas than as a new span.
    pub fn spans_and_deltas(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::with_capacity(self.positive.len());
        let mut previous = 0i64;
        let mut next_index = 0i32;
        for (n, &(index, count)) in self.positive.iter().enumerate() {
            let gap = index - next_index;
            if n == 0 || gap > 2 {
                spans.push((gap, 0));
            } else {
                for _ in 0..gap {
                    deltas.push(-previous);
                    previous = 0;
                }
                if let Some(span) = spans.last_mut() {
                    span.1 += gap as u32;
                }
            }
            // Counts stay far below i64::MAX: a probe a millisecond for 290 million years.
            let count = count as i64;
            deltas.push(count - previous);
            previous = count;
            if let Some(span) = spans.last_mut() {
                span.1 += 1;
            }
            next_index = index + 1;
        }
        (spans, deltas)
    }
}

/// The index of the bucket holding `v` (> 0, finite): with v = f * 2^e and f in [0.5, 1), the
/// bucket is (e - 1) * 8 plus the number of sub-bounds 2^(j/8) / 2 that lie below f.
fn bucket_index(v: f64) -> i32 {
    let (fraction, exponent) = frexp(v);
    let below = OCTAVE_BOUNDS.iter().take_while(|b| **b < fraction).count();
    below as i32 + (exponent - 1) * PER_OCTAVE as i32
}

/// 2^(j/8) / 2 for j in 0..8, rounded to the nearest f64.
const OCTAVE_BOUNDS: [f64; PER_OCTAVE] = [
    0.5,
    0.545_253_866_332_628_8,
    0.594_603_557_501_360_5,
    0.648_419_777_325_504_8,
    0.707_106_781_186_547_5,
    0.771_105_412_703_970_4,
    0.840_896_415_253_714_5,
    0.917_004_043_204_671_2,
];

/// `v` as (f, e) with v = f * 2^e and f in [0.5, 1), for positive finite `v`.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (f, e) = frexp(v * 2f64.powi(64));
        return (f, e - 64);
    }
    // Keep sign and mantissa, set the exponent so that the value lies in [0.5, 1).
    let fraction = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (fraction, biased - 1022)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octave_bounds_are_the_eighth_roots_of_two_halved() {
        for (j, bound) in OCTAVE_BOUNDS.iter().enumerate() {
            let exact = 0.5 * 2f64.powf(j as f64 / 8.0);
            assert!(
                (bound - exact).abs() <= f64::EPSILON,
                "{j}: {bound} vs {exact}"
            );
        }
        assert_eq!(NATIVE_ZERO_THRESHOLD, 2f64.powi(-128));
    }

    #[test]
    fn frexp_splits_into_a_fraction_in_half_open_unit_half_and_an_exponent() {
        for v in [
            1.0,
            0.5,
            0.75,
            3.0,
            1e-9,
            123_456.789,
            f64::MIN_POSITIVE / 8.0,
        ] {
            let (f, e) = frexp(v);
            assert!((0.5..1.0).contains(&f), "{v}: {f}");
            // In two steps: 2^e alone underflows for subnormal `v`.
            assert_eq!(f * 2f64.powi(e + 64) / 2f64.powi(64), v, "{v}");
        }
    }

    #[test]
    fn bucket_bounds_are_inclusive_above() {
        // 1 s is the upper bound of bucket 0, a hair more is in bucket 1.
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(1.0 + 1e-12), 1);
        assert_eq!(bucket_index(0.5), -8);
        assert_eq!(bucket_index(2.0), 8);
    }

    #[test]
    fn small_gaps_become_zero_deltas_and_large_ones_new_spans() {
        let mut b = NativeBuckets::new(SystemTime::UNIX_EPOCH);
        for v in [1.0, 1.0, 1.2, 2.0, 2.0, 2.0, 100.0] {
            b.observe(v);
        }
        b.observe(0.0);
        assert_eq!(b.zero_count, 1);
        // Buckets 0 (2), 3 (1), 8 (3), 54 (1).
        assert_eq!(b.positive, [(0, 2), (3, 1), (8, 3), (54, 1)]);
        let (spans, deltas) = b.spans_and_deltas();
        assert_eq!(spans, [(0, 4), (4, 1), (45, 1)]);
        assert_eq!(deltas, [2, -2, 0, 1, 2, -2]);
    }

    /// prometheus-client's native histogram, fed the same durations, exports the same buckets:
    /// both are decoded from its protobuf model and compared.
    #[test]
    fn buckets_match_prometheus_clients_native_histogram() {
        use prometheus_client::collector::Collector;
        use prometheus_client::encoding::prometheus_protobuf::encode;
        use prometheus_client::encoding::DescriptorEncoder;
        use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
        use prometheus_client::metrics::MetricType;
        use prometheus_client::registry::Registry;

        #[derive(Debug)]
        struct Ours(NativeBuckets, f64, u64);
        impl Collector for Ours {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                let mut m = encoder.encode_descriptor("d", "h", None, MetricType::Histogram)?;
                crate::metrics::reference::histogram(&mut m, self.1, self.2, &[], &self.0, None)
            }
        }

        // Durations from a nanosecond to minutes, as probes measure them (whole nanoseconds),
        // with the exact bucket bounds 0.5, 1 and 2 s among them.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut durations = vec![0.0, 0.5, 1.0, 2.0, 1e-9];
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let nanos = (state % 300_000_000_000) >> (state % 30);
            durations.push(nanos as f64 / 1e9);
        }

        let theirs = Histogram::new_native(NativeHistogramConfig::new(1.1));
        let mut ours = NativeBuckets::new(SystemTime::UNIX_EPOCH);
        let mut sum = 0.0;
        for (n, v) in durations.iter().enumerate() {
            theirs.observe(*v);
            ours.observe(*v);
            sum += v;
            if n % 4_999 != 0 {
                continue;
            }
            let mut a = Registry::default();
            a.register("d", "h", theirs.clone());
            let mut b = Registry::default();
            b.register_collector(Box::new(Ours(ours.clone(), sum, n as u64 + 1)));
            let mut expected = encode(&a).unwrap()[0].metric[0].histogram.clone().unwrap();
            let got = encode(&b).unwrap()[0].metric[0].histogram.clone().unwrap();
            expected.start_timestamp = None;
            assert_eq!(got, expected, "after {} durations", n + 1);
        }
        assert!(ours.positive.len() > 100, "the durations spread widely");
    }
}
