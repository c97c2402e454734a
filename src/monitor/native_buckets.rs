//! The native (exponential) buckets of `agent_probe_duration_seconds`, kept in the agent's state
//! beside the classic ones so that one lock covers both: plain counts per bucket index, which
//! `metrics/native.rs` turns into the exposition's spans and deltas. Probe durations are never negative, NaN or infinite, so only the zero bucket and
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
    fn each_bucket_counts_its_probes_in_index_order() {
        let mut b = NativeBuckets::new(SystemTime::UNIX_EPOCH);
        for v in [2.0, 0.5, 1e-40, 0.5] {
            b.observe(v);
        }
        assert_eq!(b.zero_count, 1, "at or below the zero threshold");
        assert_eq!(b.positive, [(-8, 2), (8, 1)]);
    }
}
