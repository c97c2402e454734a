//! The per-agent series as length-delimited `io.prometheus.client.MetricFamily` messages (the
//! protobuf scrape, the only one that carries native histograms), written straight into the
//! body. prometheus-client's encoder first builds every message as an owned tree, copying each
//! series' labels into fresh strings, and a fleet of 10,000 agents has about 450,000 series:
//! that took most of a second and, at 50,000 agents, more than a gigabyte. Here each agent's
//! labels are encoded once per scrape and copied into its series. A test decodes the result and
//! compares it with what prometheus-client builds from the same state.

use std::time::{SystemTime, UNIX_EPOCH};

use super::fleet_text::{Family, Kind};
use super::{Row, CHUNK_BYTES, FAMILIES};
use crate::monitor::{Status, DURATION_BUCKETS, NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD};
use crate::probe::FailureReason;

// Field numbers of `io.prometheus.client`'s messages (metrics.proto).
const FAMILY_NAME: u32 = 1;
const FAMILY_HELP: u32 = 2;
const FAMILY_TYPE: u32 = 3;
const FAMILY_METRIC: u32 = 4;
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

// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// Appends every per-agent family, and the two fleet gauges before them, to `out`, handing
/// `out` to `flush` (which takes its contents) after a family when it holds `CHUNK_BYTES` or
/// more. A family is one message with its length in front, so it cannot be split.
pub(super) fn encode(
    out: &mut Vec<u8>,
    rows: &[Row],
    subscribers: usize,
    flush: &mut dyn FnMut(&mut Vec<u8>),
) {
    let labels: Vec<Vec<u8>> = rows.iter().map(label_fields).collect();
    let w = &mut Writer {
        out,
        flush,
        family: Vec::with_capacity(1 << 16),
        metric: Vec::with_capacity(512),
        scratch: Vec::with_capacity(512),
    };
    let pairs = || rows.iter().zip(labels.iter().map(Vec::as_slice));
    let none: &[u8] = &[];

    w.begin(FAMILIES.agents);
    w.gauge(none, none, rows.len() as f64);
    w.end();
    w.begin(FAMILIES.subscribers);
    w.gauge(none, none, subscribers as f64);
    w.end();

    w.begin(FAMILIES.up);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            w.gauge(l, none, f64::from(u8::from(last.up)));
        }
    }
    w.end();

    let statuses = Status::ALL.map(|s| extra_label("status", s.as_str()));
    w.begin(FAMILIES.health_status);
    for (row, l) in pairs() {
        for (status, extra) in Status::ALL.iter().zip(&statuses) {
            w.gauge(l, extra, f64::from(u8::from(row.status == *status)));
        }
    }
    w.end();

    w.begin(FAMILIES.duration);
    for (row, l) in pairs() {
        w.histogram(l, row);
    }
    w.end();

    w.begin(FAMILIES.phase);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            for (phase, value) in last.phases.named() {
                w.gauge(l, &extra_label("phase", phase), value.as_secs_f64());
            }
        }
    }
    w.end();

    let results = [
        extra_label("result", "success"),
        extra_label("result", "failure"),
    ];
    w.begin(FAMILIES.probes);
    for (row, l) in pairs() {
        w.counter(l, &results[0], row.probes_success);
        w.counter(l, &results[1], row.probes_failure);
    }
    w.end();

    let reasons = FailureReason::ALL.map(|r| extra_label("reason", r.as_str()));
    w.begin(FAMILIES.failures);
    for (row, l) in pairs() {
        for reason in FailureReason::ALL {
            let count = row.failures_by_reason[reason.index()];
            w.counter(l, &reasons[reason.index()], count);
        }
    }
    w.end();

    w.begin(FAMILIES.consecutive_failures);
    for (row, l) in pairs() {
        w.gauge(l, none, f64::from(row.consecutive_failures));
    }
    w.end();

    w.begin(FAMILIES.status_changes);
    for (row, l) in pairs() {
        w.counter(l, none, row.status_changes);
    }
    w.end();

    w.begin(FAMILIES.last_probe);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            w.gauge(l, none, last.ended_at);
        }
    }
    w.end();

    w.begin(FAMILIES.last_success);
    for (row, l) in pairs() {
        if let Some(ts) = row.last_success {
            w.gauge(l, none, ts);
        }
    }
    w.end();

    w.begin(FAMILIES.http_status);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            w.gauge(l, none, f64::from(last.http_status));
        }
    }
    w.end();

    w.begin(FAMILIES.cert_expiry);
    for (row, l) in pairs() {
        if let Some(expiry) = row.last.as_ref().and_then(|last| last.cert_expiry) {
            w.gauge(l, none, expiry);
        }
    }
    w.end();

    w.begin(FAMILIES.grpc_status);
    for (row, l) in pairs() {
        if let Some(code) = row.grpc_status {
            w.gauge(l, none, f64::from(code));
        }
    }
    w.end();

    w.begin(FAMILIES.protocol_info);
    for (row, l) in pairs() {
        if let Some(info) = &row.protocol_info {
            let mut extra = Vec::with_capacity(96);
            label_pair(&mut extra, "protocol", info.protocol);
            label_pair(&mut extra, "server_name", &info.server_name);
            label_pair(&mut extra, "server_version", &info.server_version);
            label_pair(&mut extra, "protocol_version", &info.protocol_version);
            w.gauge(l, &extra, 1.0);
        }
    }
    w.end();

    w.begin(FAMILIES.interval);
    for (row, l) in pairs() {
        w.gauge(l, none, row.agent.spec.interval.as_secs_f64());
    }
    w.end();

    w.begin(FAMILIES.timeout);
    for (row, l) in pairs() {
        w.gauge(l, none, row.agent.spec.timeout.as_secs_f64());
    }
    w.end();
}

/// The agent's labels as the `label` fields of a `Metric`, ready to copy into each series.
fn label_fields(row: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    for (name, value) in row.agent.labels().iter() {
        label_pair(&mut out, name, value);
    }
    out
}

/// One more label after the agent's, such as `status="healthy"`.
fn extra_label(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 6);
    label_pair(&mut out, name, value);
    out
}

fn label_pair(out: &mut Vec<u8>, name: &str, value: &str) {
    let len = field_len(LABEL_NAME, name.len()) + field_len(LABEL_VALUE, value.len());
    tag(out, METRIC_LABEL, LEN);
    varint(out, len as u64);
    string(out, LABEL_NAME, name);
    string(out, LABEL_VALUE, value);
}

/// Size of a length-delimited field of `len` bytes, empty ones being left out as proto3 does.
fn field_len(field: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        varint_len(u64::from(field << 3)) + varint_len(len as u64) + len
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    flush: &'a mut dyn FnMut(&mut Vec<u8>),
    /// The family being written; its length prefix is known only at its end.
    family: Vec<u8>,
    /// The series being written, for the same reason.
    metric: Vec<u8>,
    /// A message nested in a series (a bucket, a span, a timestamp).
    scratch: Vec<u8>,
}

impl Writer<'_> {
    fn begin(&mut self, family: Family) {
        self.family.clear();
        let name = match family.kind {
            Kind::Counter => format!("{}_total", family.name),
            _ => family.name.to_owned(),
        };
        string(&mut self.family, FAMILY_NAME, &name);
        string(&mut self.family, FAMILY_HELP, family.help);
        let kind = match family.kind {
            Kind::Counter => 0,
            Kind::Gauge => 1,
            Kind::Histogram => 4,
        };
        uint(&mut self.family, FAMILY_TYPE, kind);
    }

    /// Closes the family: length prefix, then the message, as `encoding=delimited` frames it.
    fn end(&mut self) {
        varint(self.out, self.family.len() as u64);
        if self.family.len() >= CHUNK_BYTES {
            // A large family (the duration histograms) goes out as a piece of its own rather
            // than being copied once more.
            (self.flush)(self.out);
            let mut family = std::mem::replace(&mut self.family, Vec::with_capacity(1 << 16));
            (self.flush)(&mut family);
        } else {
            self.out.extend_from_slice(&self.family);
            if self.out.len() >= CHUNK_BYTES {
                (self.flush)(self.out);
            }
        }
    }

    /// Starts a series with its labels; `value` (field, message) follows.
    fn series(&mut self, labels: &[u8], extra: &[u8]) {
        self.metric.clear();
        self.metric.extend_from_slice(labels);
        self.metric.extend_from_slice(extra);
    }

    /// Closes the series: it becomes one `metric` field of the family.
    fn end_series(&mut self) {
        bytes(&mut self.family, FAMILY_METRIC, &self.metric);
    }

    fn gauge(&mut self, labels: &[u8], extra: &[u8], value: f64) {
        self.series(labels, extra);
        self.value_message(METRIC_GAUGE, value);
        self.end_series();
    }

    fn counter(&mut self, labels: &[u8], extra: &[u8], value: u64) {
        self.series(labels, extra);
        self.value_message(METRIC_COUNTER, value as f64);
        self.end_series();
    }

    /// A `Gauge` or `Counter` message holding only its value.
    fn value_message(&mut self, field: u32, value: f64) {
        tag(&mut self.metric, field, LEN);
        if value == 0.0 {
            varint(&mut self.metric, 0);
        } else {
            varint(&mut self.metric, 9);
            double(&mut self.metric, VALUE, value);
        }
    }

    fn histogram(&mut self, labels: &[u8], row: &Row) {
        self.series(labels, &[]);
        let mut h = std::mem::take(&mut self.scratch);
        h.clear();
        uint(&mut h, HISTOGRAM_COUNT, row.duration_count);
        double(&mut h, HISTOGRAM_SUM, row.duration_sum);
        let mut cumulative = 0u64;
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        for (bound, count) in bounds.zip(row.duration_buckets.iter()) {
            cumulative += count;
            let len = if cumulative == 0 {
                0
            } else {
                1 + varint_len(cumulative)
            } + 9;
            tag(&mut h, HISTOGRAM_BUCKET, LEN);
            varint(&mut h, len as u64);
            uint(&mut h, BUCKET_CUMULATIVE_COUNT, cumulative);
            double(&mut h, BUCKET_UPPER_BOUND, bound);
        }
        if let Some(native) = &row.native {
            sint(&mut h, HISTOGRAM_SCHEMA, i64::from(NATIVE_SCHEMA));
            double(&mut h, HISTOGRAM_ZERO_THRESHOLD, NATIVE_ZERO_THRESHOLD);
            uint(&mut h, HISTOGRAM_ZERO_COUNT, native.zero_count);
            let (spans, deltas) = native.spans_and_deltas();
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
}

/// Seconds and nanoseconds since the epoch; None before it, where the field is left out.
fn timestamp(at: SystemTime) -> Option<(u64, u32)> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    Some((since.as_secs(), since.subsec_nanos()))
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from((field << 3) | wire));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // Each byte carries 7 bits; zero still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// proto3 leaves fields at their default out; so does every writer below.
fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, VARINT);
        varint(out, v);
    }
}

fn sint(out: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        tag(out, field, VARINT);
        varint(out, zigzag(v));
    }
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    if v != 0.0 {
        tag(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

/// A length-delimited field (a string or an embedded message; an empty message is still
/// written, since its presence means something).
fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_take_seven_bits_a_byte() {
        for (v, len) in [
            (0u64, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
            assert_eq!(varint_len(v), len, "{v}");
        }
        assert_eq!(varint_len(u64::MAX), 10);
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(
            out,
            [0xac, 0x02],
            "low seven bits first, high bit set on all but the last"
        );
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_numbers() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }
}
