//! The fleet's series in Prometheus text and OpenMetrics: the text sink of `walk`, written
//! straight into the scrape. prometheus-client's generic encoder spends about half a microsecond
//! on each series line, most of it walking the label set one label at a time, and a fleet of
//! 10,000 agents has about 450,000 lines. Here each agent's label set is rendered once per scrape
//! and copied into its lines. The bytes are exactly those prometheus-client writes (a test
//! compares the two).

use super::families::{Family, HistogramSample, Kind, Sample, Values};
use super::walk::{walk, Row, Sink};
use super::CHUNK_BYTES;
use crate::monitor::Agent;

/// The two text dialects; they differ in the names of counter descriptors, the order of a
/// histogram's lines and where and how `le` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Prometheus,
    OpenMetrics,
}

/// Appends every fleet family to `out`, handing `out` to `flush` (which takes its contents)
/// whenever it holds `CHUNK_BYTES` or more; stops when `flush` returns false.
pub(super) fn encode(
    out: &mut String,
    rows: &[Row],
    subscribers: usize,
    dialect: Dialect,
    flush: &mut dyn FnMut(&mut String) -> bool,
) {
    let mut w = Writer {
        out,
        flush,
        dialect,
        float: dtoa::Buffer::new(),
        int: itoa::Buffer::new(),
        name: String::new(),
        le: Vec::new(),
        stopped: false,
    };
    walk(&mut w, rows, subscribers);
}

fn escape_into(s: &mut String, value: &str) {
    // Label values rarely hold these: copied whole, not one character at a time.
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        s.push_str(value);
        return;
    }
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

struct Writer<'a> {
    out: &'a mut String,
    flush: &'a mut dyn FnMut(&mut String) -> bool,
    dialect: Dialect,
    float: dtoa::Buffer,
    int: itoa::Buffer,
    /// The family's name with its unit, as its series lines start (without `_total`).
    name: String,
    /// The family's bucket bounds as `le` values, for a histogram.
    le: Vec<String>,
    /// `flush` said nobody wants the rest.
    stopped: bool,
}

impl Sink for Writer<'_> {
    /// `agent="…",agent_type="…",…` (escaped, without braces), or `,key="value"` for an extra
    /// label.
    type Labels = String;

    fn agent_labels(&self, agent: &Agent) -> String {
        let mut s = String::with_capacity(64);
        for (i, (key, value)) in agent.labels().iter().enumerate() {
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

    fn extra_label(&self, key: &str, value: &str) -> String {
        format!(",{key}=\"{value}\"")
    }

    fn info_labels(&self, pairs: &[(&'static str, &str)]) -> String {
        let mut s = String::with_capacity(96);
        for (key, value) in pairs {
            s.push(',');
            s.push_str(key);
            s.push_str("=\"");
            escape_into(&mut s, value);
            s.push('"');
        }
        s
    }

    fn begin(&mut self, family: &Family) {
        self.name.clear();
        self.name.push_str(family.name);
        if let Some(unit) = family.unit {
            self.name.push('_');
            self.name.push_str(unit);
        }
        let kind = family.kind();
        let total = match (kind, self.dialect) {
            (Kind::Counter, Dialect::Prometheus) => "_total",
            _ => "",
        };
        let type_name = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let name = &self.name;
        // The help texts are constants without backslashes or newlines: nothing to escape.
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push_str(total);
        self.out.push(' ');
        self.out.push_str(family.help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push_str(total);
        self.out.push(' ');
        self.out.push_str(type_name);
        self.out.push('\n');
        if let (Some(unit), Dialect::OpenMetrics) = (family.unit, self.dialect) {
            self.out.push_str("# UNIT ");
            self.out.push_str(name);
            self.out.push(' ');
            self.out.push_str(unit);
            self.out.push('\n');
        }
        if kind == Kind::Counter {
            self.name.push_str("_total");
        }
        self.le.clear();
        if let Values::Histogram { bounds, .. } = family.values {
            let dialect = self.dialect;
            self.le.extend(bounds.iter().map(|b| le_label(*b, dialect)));
            self.le.push("+Inf".to_owned());
        }
    }

    fn sample(&mut self, labels: &String, extra: &String, value: Sample) {
        self.series(labels, extra);
        self.out.push(' ');
        match value {
            Sample::Int(v) => self.out.push_str(self.int.format(v)),
            Sample::Float(v) => self.push_float(v),
        }
        self.out.push('\n');
        // Checked after every line: lines are short, so a piece overshoots its size by little.
        self.maybe_flush();
    }

    fn histogram(&mut self, labels: &String, _bounds: &[f64], h: &HistogramSample) {
        if self.dialect == Dialect::OpenMetrics {
            self.sum_count(labels, h);
        }
        let mut cumulative = 0u64;
        for (bound, count) in self.le.iter().zip(h.buckets) {
            cumulative += count;
            self.out.push_str(&self.name);
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
            self.sum_count(labels, h);
        }
        self.maybe_flush();
    }

    fn end(&mut self) {}

    fn stopped(&self) -> bool {
        self.stopped
    }
}

impl Writer<'_> {
    /// `name{labels,extra}` or bare `name` when there are no labels.
    fn series(&mut self, labels: &str, extra: &str) {
        self.out.push_str(&self.name);
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

    fn sum_count(&mut self, labels: &str, h: &HistogramSample) {
        self.out.push_str(&self.name);
        self.out.push_str("_sum{");
        self.out.push_str(labels);
        self.out.push_str("} ");
        self.push_float(h.sum);
        self.out.push('\n');
        self.out.push_str(&self.name);
        self.out.push_str("_count{");
        self.out.push_str(labels);
        self.out.push_str("} ");
        self.out.push_str(self.int.format(h.count));
        self.out.push('\n');
    }

    fn maybe_flush(&mut self) {
        if self.out.len() >= CHUNK_BYTES {
            self.stopped = !(self.flush)(self.out);
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
}
