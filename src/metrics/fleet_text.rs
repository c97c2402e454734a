//! The per-agent series in Prometheus text and OpenMetrics, written straight into the scrape.
//! prometheus-client's generic encoder spends about half a microsecond on each series line, most
//! of it walking the label set one label at a time, and a fleet of 10,000 agents has about
//! 450,000 lines. Here each agent's label set is rendered once per scrape and copied into its
//! lines. The bytes are exactly those prometheus-client writes (a test compares the two);
//! `fleet_protobuf` does the same for protobuf.

use std::fmt::Write;

use super::{Row, CHUNK_BYTES, FAMILIES};
use crate::monitor::{Status, DURATION_BUCKETS};
use crate::probe::{FailureReason, Phases};

/// The two text dialects; they differ in the names of counter descriptors, the order of a
/// histogram's lines and where and how `le` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Prometheus,
    OpenMetrics,
}

/// Appends every per-agent family, and the two fleet gauges before them, to `out`, handing
/// `out` to `flush` (which takes its contents) whenever it holds `CHUNK_BYTES` or more.
pub(super) fn encode(
    out: &mut String,
    rows: &[Row],
    subscribers: usize,
    dialect: Dialect,
    flush: &mut dyn FnMut(&mut String),
) {
    let labels: Vec<String> = rows.iter().map(label_set).collect();
    let w = &mut Writer {
        out,
        flush,
        dialect,
        float: dtoa::Buffer::new(),
        int: itoa::Buffer::new(),
    };
    let le: Vec<String> = DURATION_BUCKETS
        .iter()
        .map(|b| le_label(*b, dialect))
        .collect();

    w.descriptor(FAMILIES.agents);
    w.int_line(FAMILIES.agents.name, "", "", rows.len() as u64);
    w.descriptor(FAMILIES.subscribers);
    w.int_line(FAMILIES.subscribers.name, "", "", subscribers as u64);

    let pairs = || rows.iter().zip(labels.iter().map(String::as_str));

    w.descriptor(FAMILIES.up);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            w.int_line(FAMILIES.up.name, l, "", u64::from(last.up));
        }
    }

    // The extra labels are constants: rendered once per scrape, not once per line.
    let statuses = Status::ALL.map(|s| extra("status", s.as_str()));
    let phases = Phases::default().named().map(|(p, _)| extra("phase", p));
    let results = [extra("result", "success"), extra("result", "failure")];
    let reasons = FailureReason::ALL.map(|r| extra("reason", r.as_str()));

    w.descriptor(FAMILIES.health_status);
    for (row, l) in pairs() {
        for (status, extra) in Status::ALL.iter().zip(&statuses) {
            w.int_line(
                FAMILIES.health_status.name,
                l,
                extra,
                u64::from(row.status == *status),
            );
        }
    }

    w.descriptor(FAMILIES.duration);
    for (row, l) in pairs() {
        w.histogram(FAMILIES.duration.name, l, row, &le);
    }

    w.descriptor(FAMILIES.phase);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            for ((_, value), extra) in last.phases.named().iter().zip(&phases) {
                w.float_line(FAMILIES.phase.name, l, extra, value.as_secs_f64());
            }
        }
    }

    w.descriptor(FAMILIES.probes);
    for (row, l) in pairs() {
        for (value, extra) in [row.probes_success, row.probes_failure]
            .iter()
            .zip(&results)
        {
            w.int_line("agent_probes_total", l, extra, *value);
        }
    }

    w.descriptor(FAMILIES.failures);
    for (row, l) in pairs() {
        for reason in FailureReason::ALL {
            w.int_line(
                "agent_probe_failures_total",
                l,
                &reasons[reason.index()],
                row.failures_by_reason[reason.index()],
            );
        }
    }

    w.descriptor(FAMILIES.consecutive_failures);
    for (row, l) in pairs() {
        w.int_line(
            FAMILIES.consecutive_failures.name,
            l,
            "",
            u64::from(row.consecutive_failures),
        );
    }

    w.descriptor(FAMILIES.status_changes);
    for (row, l) in pairs() {
        w.int_line("agent_status_changes_total", l, "", row.status_changes);
    }

    w.descriptor(FAMILIES.last_probe);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            w.float_line(FAMILIES.last_probe.name, l, "", last.ended_at);
        }
    }

    w.descriptor(FAMILIES.last_success);
    for (row, l) in pairs() {
        if let Some(ts) = row.last_success {
            w.float_line(FAMILIES.last_success.name, l, "", ts);
        }
    }

    w.descriptor(FAMILIES.http_status);
    for (row, l) in pairs() {
        if let Some(last) = &row.last {
            w.int_line(
                FAMILIES.http_status.name,
                l,
                "",
                u64::from(last.http_status),
            );
        }
    }

    w.descriptor(FAMILIES.cert_expiry);
    for (row, l) in pairs() {
        if let Some(expiry) = row.last.as_ref().and_then(|last| last.cert_expiry) {
            w.float_line(FAMILIES.cert_expiry.name, l, "", expiry);
        }
    }

    w.descriptor(FAMILIES.grpc_status);
    for (row, l) in pairs() {
        if let Some(code) = row.grpc_status {
            w.float_line(FAMILIES.grpc_status.name, l, "", f64::from(code));
        }
    }

    w.descriptor(FAMILIES.protocol_info);
    for (row, l) in pairs() {
        if let Some(info) = &row.protocol_info {
            let mut extra = String::with_capacity(96);
            for (key, value) in info_labels(info) {
                extra.push(',');
                extra.push_str(key);
                extra.push_str("=\"");
                escape_into(&mut extra, value);
                extra.push('"');
            }
            w.int_line(FAMILIES.protocol_info.name, l, &extra, 1);
        }
    }

    w.descriptor(FAMILIES.interval);
    for (row, l) in pairs() {
        let v = row.agent.spec.interval.as_secs_f64();
        w.float_line(FAMILIES.interval.name, l, "", v);
    }

    w.descriptor(FAMILIES.timeout);
    for (row, l) in pairs() {
        let v = row.agent.spec.timeout.as_secs_f64();
        w.float_line(FAMILIES.timeout.name, l, "", v);
    }
}

/// The labels of `agent_protocol_info`, in order.
fn info_labels(info: &crate::probe::ProtocolInfo) -> [(&'static str, &str); 4] {
    [
        ("protocol", info.protocol),
        ("server_name", &info.server_name),
        ("server_version", &info.server_version),
        ("protocol_version", &info.protocol_version),
    ]
}

/// `,key="value"` for a label whose value needs no escaping (a constant of this crate).
fn extra(key: &str, value: &str) -> String {
    format!(",{key}=\"{value}\"")
}

/// `agent="…",agent_type="…",…`: the agent's labels, escaped, without braces.
fn label_set(row: &Row) -> String {
    let mut s = String::with_capacity(64);
    for (i, (key, value)) in row.agent.labels().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(key);
        s.push_str("=\"");
        escape_into(&mut s, value);
        s.push('"');
    }
    s
}

fn escape_into(s: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
}

/// How each dialect writes a bucket bound: Go's shortest `%g` for Prometheus text (the bounds
/// are whole numbers or lie in [1e-4, 1e6), where it matches Rust's `Display`), the shortest
/// round-trip form with a decimal point for OpenMetrics.
fn le_label(bound: f64, dialect: Dialect) -> String {
    match dialect {
        Dialect::Prometheus if bound.fract() == 0.0 && bound.abs() < 1e6 => {
            format!("{}", bound as i64)
        }
        Dialect::Prometheus => format!("{bound}"),
        Dialect::OpenMetrics => dtoa::Buffer::new().format(bound).to_owned(),
    }
}

/// One family's name, help and type.
#[derive(Debug, Clone, Copy)]
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

struct Writer<'a> {
    out: &'a mut String,
    flush: &'a mut dyn FnMut(&mut String),
    dialect: Dialect,
    float: dtoa::Buffer,
    int: itoa::Buffer,
}

impl Writer<'_> {
    fn descriptor(&mut self, family: Family) {
        let suffix = match (family.kind, self.dialect) {
            (Kind::Counter, Dialect::Prometheus) => "_total",
            _ => "",
        };
        let kind = match family.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        // The help texts are constants without backslashes or newlines: nothing to escape.
        let _ = write!(
            self.out,
            "# HELP {name}{suffix} {help}\n# TYPE {name}{suffix} {kind}\n",
            name = family.name,
            help = family.help,
        );
    }

    /// `name{labels,extra}` or bare `name` when there are no labels.
    fn series(&mut self, name: &str, labels: &str, extra: &str) {
        self.out.push_str(name);
        if labels.is_empty() && extra.is_empty() {
            return;
        }
        self.out.push('{');
        if labels.is_empty() {
            self.out.push_str(&extra[1..]);
        } else {
            self.out.push_str(labels);
            self.out.push_str(extra);
        }
        self.out.push('}');
    }

    fn int_line(&mut self, name: &str, labels: &str, extra: &str, value: u64) {
        self.series(name, labels, extra);
        self.out.push(' ');
        self.out.push_str(self.int.format(value));
        self.out.push('\n');
        self.maybe_flush();
    }

    fn float_line(&mut self, name: &str, labels: &str, extra: &str, value: f64) {
        self.series(name, labels, extra);
        self.out.push(' ');
        self.push_float(value);
        self.out.push('\n');
        self.maybe_flush();
    }

    /// Checked after every line: lines are short, so a piece overshoots its size by little.
    fn maybe_flush(&mut self) {
        if self.out.len() >= CHUNK_BYTES {
            (self.flush)(self.out);
        }
    }

    fn push_float(&mut self, value: f64) {
        if value.is_finite() {
            self.out.push_str(self.float.format_finite(value));
        } else if value.is_nan() {
            self.out.push_str("NaN");
        } else if value > 0.0 {
            self.out.push_str("+Inf");
        } else {
            self.out.push_str("-Inf");
        }
    }

    fn histogram(&mut self, name: &str, labels: &str, row: &Row, le: &[String]) {
        let sum_count = |w: &mut Self| {
            w.series(name, "", "");
            w.out.push_str("_sum{");
            w.out.push_str(labels);
            w.out.push_str("} ");
            w.push_float(row.duration_sum);
            w.out.push('\n');
            w.series(name, "", "");
            w.out.push_str("_count{");
            w.out.push_str(labels);
            w.out.push_str("} ");
            w.out.push_str(w.int.format(row.duration_count));
            w.out.push('\n');
        };
        if self.dialect == Dialect::OpenMetrics {
            sum_count(self);
        }
        let mut cumulative = 0u64;
        let bounds = le.iter().map(String::as_str).chain(["+Inf"]);
        for (bound, count) in bounds.zip(row.duration_buckets.iter()) {
            cumulative += count;
            self.out.push_str(name);
            // prometheus-client puts `le` last in Prometheus text and first in OpenMetrics.
            if self.dialect == Dialect::Prometheus {
                self.out.push_str("_bucket{");
                self.out.push_str(labels);
                self.out.push_str(",le=\"");
                self.out.push_str(bound);
                self.out.push_str("\"} ");
            } else {
                self.out.push_str("_bucket{le=\"");
                self.out.push_str(bound);
                self.out.push_str("\",");
                self.out.push_str(labels);
                self.out.push_str("} ");
            }
            self.out.push_str(self.int.format(cumulative));
            self.out.push('\n');
        }
        if self.dialect == Dialect::Prometheus {
            sum_count(self);
        }
        self.maybe_flush();
    }
}
