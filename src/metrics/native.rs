//! The native histogram buckets the monitor counts, in the form the exposition writes them:
//! spans of consecutive buckets and the count deltas inside them.

use crate::monitor::NativeBuckets;

/// The positive buckets as spans and count deltas, the form of the exposition: a gap of up
/// to two empty buckets is cheaper written as zero deltas than as a new span.
pub(super) fn spans_and_deltas(buckets: &NativeBuckets) -> (Vec<(i32, u32)>, Vec<i64>) {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::with_capacity(buckets.positive.len());
    let mut previous = 0i64;
    let mut next_index = 0i32;
    for (n, &(index, count)) in buckets.positive.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

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
        let (spans, deltas) = spans_and_deltas(&b);
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
                super::super::reference::histogram(&mut m, self.1, self.2, &[], &self.0, None)
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
