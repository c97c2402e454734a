//! The fleet's series as length-delimited `io.prometheus.client.MetricFamily` messages (the
//! protobuf scrape, the only one that carries native histograms): the protobuf sink of `walk`,
//! written straight into the body. prometheus-client's encoder first builds every message as an
//! owned tree, copying each series' labels into fresh strings, and a fleet of 10,000 agents has
//! about 450,000 series: that took most of a second and, at 50,000 agents, more than a
//! gigabyte. Here each agent's labels are encoded once per scrape and copied into its series. A
//! test decodes the result and compares it with what prometheus-client builds from the same
//! state.

use std::time::{SystemTime, UNIX_EPOCH};

use prost::encoding::{encode_varint, encoded_len_varint, key_len, WireType};

use super::families::{Family, HistogramSample, Kind, Sample};
use super::native::spans_and_deltas;
use super::walk::{walk, Row, Sink};
use super::CHUNK_BYTES;
use crate::monitor::{Agent, NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD};

// Field numbers of `io.prometheus.client`'s messages (metrics.proto).
const FAMILY_NAME: u32 = 1;
const FAMILY_HELP: u32 = 2;
const FAMILY_TYPE: u32 = 3;
const FAMILY_METRIC: u32 = 4;
const FAMILY_UNIT: u32 = 5;
const METRIC_LABEL: u32 = 1;
const METRIC_GAUGE: u32 = 2;
const METRIC_COUNTER: u32 = 3;
const METRIC_HISTOGRAM: u32 = 7;
const LABEL_NAME: u32 = 1;
const LABEL_VALUE: u32 = 2;
const VALUE: u32 = 1;
const HISTOGRAM_COUNT: u32 = 1;
const HISTOGRAM_SUM: u32 = 2;
const HISTOGRAM_BUCKET: u32 = 3;
const HISTOGRAM_SCHEMA: u32 = 5;
const HISTOGRAM_ZERO_THRESHOLD: u32 = 6;
const HISTOGRAM_ZERO_COUNT: u32 = 7;
const HISTOGRAM_POSITIVE_SPAN: u32 = 12;
const HISTOGRAM_POSITIVE_DELTA: u32 = 13;
const HISTOGRAM_START: u32 = 15;
const BUCKET_CUMULATIVE_COUNT: u32 = 1;
const BUCKET_UPPER_BOUND: u32 = 2;
const SPAN_OFFSET: u32 = 1;
const SPAN_LENGTH: u32 = 2;
const TIMESTAMP_SECONDS: u32 = 1;
const TIMESTAMP_NANOS: u32 = 2;

/// Appends every fleet family to `out`, handing `out` to `flush` (which takes its contents)
/// whenever it holds `CHUNK_BYTES` or more; stops when `flush` returns false. A family is one
/// message with its length in front: the walk hands each family over twice, first to count
/// its length, then to write it out series by series, so that no family is ever held whole (the
/// failure counters of 100,000 agents are tens of megabytes).
pub(super) fn encode(
    out: &mut Vec<u8>,
    rows: &[Row],
    subscribers: usize,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> bool,
) {
    let mut w = Writer {
        out,
        flush,
        head: Vec::with_capacity(1024),
        unit: None,
        kind: Kind::Gauge,
        metric: Vec::with_capacity(512),
        scratch: Vec::with_capacity(512),
        measuring: false,
        measured: 0,
        stopped: false,
    };
    walk(&mut w, rows, subscribers);
}

fn label_pair(out: &mut Vec<u8>, name: &str, value: &str) {
    let len = string_len(LABEL_NAME, name) + string_len(LABEL_VALUE, value);
    key(out, METRIC_LABEL, WireType::LengthDelimited);
    varint(out, len as u64);
    string(out, LABEL_NAME, name);
    string(out, LABEL_VALUE, value);
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    flush: &'a mut dyn FnMut(&mut Vec<u8>) -> bool,
    /// The family's name, help and type fields.
    head: Vec<u8>,
    /// Written after the series, in field order.
    unit: Option<&'static str>,
    kind: Kind,
    /// The series being written, for the same reason.
    metric: Vec<u8>,
    /// A message nested in a series (a bucket, a span, a timestamp).
    scratch: Vec<u8>,
    /// The family's series are being counted, not written.
    measuring: bool,
    /// Bytes of the `metric` fields of the family counted.
    measured: usize,
    /// `flush` said nobody wants the rest.
    stopped: bool,
}

impl Sink for Writer<'_> {
    /// Encoded `label` fields of a `Metric`, ready to copy into each series.
    type Labels = Vec<u8>;

    fn agent_labels(&self, agent: &Agent) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        for (name, value) in agent.labels().iter() {
            label_pair(&mut out, name, value);
        }
        out
    }

    fn extra_label(&self, key: &str, value: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + value.len() + 6);
        label_pair(&mut out, key, value);
        out
    }

    fn info_labels(&self, pairs: &[(&'static str, &str)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        for (key, value) in pairs {
            label_pair(&mut out, key, value);
        }
        out
    }

    fn measure(&mut self, family: &Family) -> bool {
        self.kind = family.kind();
        self.measuring = true;
        self.measured = 0;
        true
    }

    fn stopped(&self) -> bool {
        self.stopped
    }

    /// Writes the family's length prefix (the head, the series counted by `measure`, the
    /// unit) and its head; the series follow as they come.
    fn begin(&mut self, family: &Family) {
        self.measuring = false;
        self.head.clear();
        self.kind = family.kind();
        self.unit = family.unit;
        let mut name = family.name.to_owned();
        if let Some(unit) = family.unit {
            name.push('_');
            name.push_str(unit);
        }
        if self.kind == Kind::Counter {
            name.push_str("_total");
        }
        string(&mut self.head, FAMILY_NAME, &name);
        string(&mut self.head, FAMILY_HELP, family.help);
        let kind = match self.kind {
            Kind::Counter => 0,
            Kind::Gauge => 1,
            Kind::Histogram => 4,
        };
        uint(&mut self.head, FAMILY_TYPE, kind);
        let unit = self.unit.map_or(0, |u| string_len(FAMILY_UNIT, u));
        varint(self.out, (self.head.len() + self.measured + unit) as u64);
        self.out.extend_from_slice(&self.head);
    }

    fn sample(&mut self, labels: &Vec<u8>, extra: &Vec<u8>, value: Sample) {
        self.metric.clear();
        self.metric.extend_from_slice(labels);
        self.metric.extend_from_slice(extra);
        // A `Gauge` or `Counter` message holding only its value.
        let field = match self.kind {
            Kind::Counter => METRIC_COUNTER,
            _ => METRIC_GAUGE,
        };
        let value = value.as_f64();
        key(&mut self.metric, field, WireType::LengthDelimited);
        varint(&mut self.metric, double_len(VALUE, value) as u64);
        double(&mut self.metric, VALUE, value);
        self.end_series();
    }

    fn histogram(&mut self, labels: &Vec<u8>, bounds: &[f64], row: &HistogramSample) {
        self.metric.clear();
        self.metric.extend_from_slice(labels);
        let mut h = std::mem::take(&mut self.scratch);
        h.clear();
        uint(&mut h, HISTOGRAM_COUNT, row.count);
        double(&mut h, HISTOGRAM_SUM, row.sum);
        let mut cumulative = 0u64;
        let bounds = bounds.iter().copied().chain([f64::INFINITY]);
        for (bound, count) in bounds.zip(row.buckets) {
            cumulative += count;
            // The length is known before the fields: no copy through a scratch buffer.
            let len = uint_len(BUCKET_CUMULATIVE_COUNT, cumulative)
                + double_len(BUCKET_UPPER_BOUND, bound);
            key(&mut h, HISTOGRAM_BUCKET, WireType::LengthDelimited);
            varint(&mut h, len as u64);
            uint(&mut h, BUCKET_CUMULATIVE_COUNT, cumulative);
            double(&mut h, BUCKET_UPPER_BOUND, bound);
        }
        if let Some(native) = row.native {
            sint(&mut h, HISTOGRAM_SCHEMA, i64::from(NATIVE_SCHEMA));
            double(&mut h, HISTOGRAM_ZERO_THRESHOLD, NATIVE_ZERO_THRESHOLD);
            uint(&mut h, HISTOGRAM_ZERO_COUNT, native.zero_count);
            let (spans, deltas) = spans_and_deltas(native);
            let mut span = Vec::with_capacity(16);
            for (offset, length) in spans {
                span.clear();
                sint(&mut span, SPAN_OFFSET, i64::from(offset));
                uint(&mut span, SPAN_LENGTH, u64::from(length));
                bytes(&mut h, HISTOGRAM_POSITIVE_SPAN, &span);
            }
            if !deltas.is_empty() {
                span.clear();
                for delta in deltas {
                    varint(&mut span, zigzag(delta));
                }
                bytes(&mut h, HISTOGRAM_POSITIVE_DELTA, &span);
            }
            if let Some((seconds, nanos)) = timestamp(native.created) {
                span.clear();
                uint(&mut span, TIMESTAMP_SECONDS, seconds);
                uint(&mut span, TIMESTAMP_NANOS, u64::from(nanos));
                bytes(&mut h, HISTOGRAM_START, &span);
            }
        }
        bytes(&mut self.metric, METRIC_HISTOGRAM, &h);
        self.scratch = h;
        self.end_series();
    }

    /// Closes the family with its unit, the field that comes after the series.
    fn end(&mut self) {
        if let Some(unit) = self.unit {
            string(self.out, FAMILY_UNIT, unit);
        }
        self.maybe_flush();
    }
}

impl Writer<'_> {
    /// Closes the series: it becomes one `metric` field of the family, counted or written.
    fn end_series(&mut self) {
        if self.measuring {
            let len = self.metric.len();
            self.measured += key_len(FAMILY_METRIC) + encoded_len_varint(len as u64) + len;
            return;
        }
        bytes(self.out, FAMILY_METRIC, &self.metric);
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.out.len() >= CHUNK_BYTES {
            self.stopped = !(self.flush)(self.out);
        }
    }
}

/// Seconds and nanoseconds since the epoch; None before it, where the field is left out.
fn timestamp(at: SystemTime) -> Option<(u64, u32)> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    Some((since.as_secs(), since.subsec_nanos()))
}

/// `sint64`'s encoding: small magnitudes, of either sign, take few bytes.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// prost's `encode_varint` with the one-byte case written in place: every key here and most
/// lengths and counts are below 128, and through `BufMut` each call was a call of its own with a
/// capacity check per byte, a fifth of a protobuf scrape's instructions (callgrind, 10,000
/// agents; BENCHMARKS.md).
#[inline]
fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

/// prost's `encode_key` through `varint`: one byte for the field numbers below 16 used here.
#[inline]
fn key(out: &mut Vec<u8>, field: u32, wire_type: WireType) {
    varint(out, u64::from((field << 3) | wire_type as u32));
}

// proto3 leaves fields at their default out; so does every writer below, and the `_len`
// helpers count accordingly.

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, WireType::Varint);
        varint(out, v);
    }
}

fn uint_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + encoded_len_varint(v)
    }
}

fn sint(out: &mut Vec<u8>, field: u32, v: i64) {
    uint(out, field, zigzag(v));
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    if v != 0.0 {
        key(out, field, WireType::SixtyFourBit);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn double_len(field: u32, v: f64) -> usize {
    if v == 0.0 {
        0
    } else {
        key_len(field) + 8
    }
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

fn string_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(field) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// A length-delimited field (a string or an embedded message; an empty message is still
/// written, since its presence means something).
fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, WireType::LengthDelimited);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_numbers() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn varints_and_keys_are_the_bytes_prost_writes() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::MAX] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            varint(&mut ours, v);
            encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
        }
        for field in [1, 15, 16, 2_047, 2_048] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            key(&mut ours, field, WireType::LengthDelimited);
            prost::encoding::encode_key(field, WireType::LengthDelimited, &mut theirs);
            assert_eq!(ours, theirs, "{field}");
        }
    }

    #[test]
    fn field_lengths_match_what_is_written() {
        for v in [0u64, 1, 127, 128, 16_384, u64::MAX] {
            let mut out = Vec::new();
            uint(&mut out, HISTOGRAM_BUCKET, v);
            assert_eq!(out.len(), uint_len(HISTOGRAM_BUCKET, v), "{v}");
        }
        for v in [0.0, 1.5, f64::INFINITY] {
            let mut out = Vec::new();
            double(&mut out, BUCKET_UPPER_BOUND, v);
            assert_eq!(out.len(), double_len(BUCKET_UPPER_BOUND, v), "{v}");
        }
        for s in ["", "a", &"x".repeat(300)] {
            let mut out = Vec::new();
            string(&mut out, LABEL_VALUE, s);
            assert_eq!(out.len(), string_len(LABEL_VALUE, s), "{}", s.len());
        }
    }
}
