//! prometheus-client's own rendering of the fleet's families: the reference that the fast text
//! and protobuf writers are tested against, byte for byte (text) and message for message
//! (protobuf). It reads the same table but walks it with its own loop and encodes through
//! prometheus-client's encoders. Only tests build it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, MetricEncoder,
    NativeHistogram, NativeHistogramBuckets, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::families::{Kind, Sample, Samples, Values, FAMILIES};
use super::native::spans_and_deltas;
use super::walk::{rows, Fleet};
use crate::monitor::{AgentLabels, Monitor, NativeBuckets, NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD};

/// Every fleet family, as prometheus-client encodes it.
#[derive(Debug)]
pub(crate) struct FleetCollector {
    pub(crate) monitor: Arc<Monitor>,
}

/// The agent's labels, one at a time, as prometheus-client asks for them.
struct Labels<'a>(AgentLabels<'a>);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for label in self.0.iter() {
            label.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// One duration histogram, classic and native buckets, through prometheus-client.
pub(crate) fn histogram(
    m: &mut MetricEncoder,
    sum: f64,
    count: u64,
    classic: &[(f64, u64)],
    native: &NativeBuckets,
    created: Option<std::time::SystemTime>,
) -> Result<(), std::fmt::Error> {
    let (spans, deltas) = spans_and_deltas(native);
    m.encode_histogram_with_native::<NoLabelSet>(
        sum,
        count,
        classic,
        None,
        NativeHistogram {
            schema: NATIVE_SCHEMA,
            zero_threshold: NATIVE_ZERO_THRESHOLD,
            zero_count: native.zero_count,
            negative: NativeHistogramBuckets {
                spans: &[],
                deltas: &[],
            },
            positive: NativeHistogramBuckets {
                spans: &spans,
                deltas: &deltas,
            },
            created,
        },
    )
}

fn sample(m: MetricEncoder, kind: Kind, value: Sample) -> Result<(), std::fmt::Error> {
    let mut m = m;
    match (kind, value) {
        (Kind::Counter, Sample::Int(v)) => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
        (Kind::Counter, Sample::Float(v)) => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
        (_, Sample::Int(v)) => m.encode_gauge(&(v as i64)),
        (_, Sample::Float(v)) => m.encode_gauge(&v),
    }
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = rows(&self.monitor, true);
        let fleet = Fleet {
            agents: rows.len(),
            subscribers: self.monitor.subscribers(),
        };
        let mut samples = Samples::default();
        for family in FAMILIES {
            let kind = match family.kind() {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
                Kind::Histogram => MetricType::Histogram,
            };
            let unit = family.unit.map(|u| Unit::Other(u.to_owned()));
            let mut m = encoder.encode_descriptor(family.name, family.help, unit.as_ref(), kind)?;
            let extra = family.extra.map(|e| (e.values)()).unwrap_or_default();
            match family.values {
                Values::FleetGauge(value) => m.encode_gauge(&(value(&fleet) as i64))?,
                Values::Info { labels, values } => {
                    for row in &rows {
                        if let Some(reported) = values(row) {
                            let pairs = Values::info_pairs(labels, reported);
                            let labels = (Labels(row.agent.labels()), pairs);
                            m.encode_family(&labels)?.encode_gauge(&1i64)?;
                        }
                    }
                }
                Values::Gauge(values) | Values::Counter(values) => {
                    for row in &rows {
                        samples.0.clear();
                        values(row, &mut samples);
                        for (n, value) in samples.0.iter().enumerate() {
                            let labels = Labels(row.agent.labels());
                            let kind = family.kind();
                            match (family.extra, extra.get(n)) {
                                (Some(e), Some(v)) => {
                                    let labels = (labels, [(e.key, *v)]);
                                    sample(m.encode_family(&labels)?, kind, *value)?;
                                }
                                _ => sample(m.encode_family(&labels)?, kind, *value)?,
                            }
                        }
                    }
                }
                Values::Histogram { bounds, value } => {
                    for row in &rows {
                        let Some(h) = value(row) else {
                            continue;
                        };
                        let classic: Vec<(f64, u64)> = bounds
                            .iter()
                            .copied()
                            .chain([f64::INFINITY])
                            .zip(h.buckets.iter().copied())
                            .collect();
                        let native = h.native.expect("rows taken with native buckets");
                        histogram(
                            &mut m.encode_family(&Labels(row.agent.labels()))?,
                            h.sum,
                            h.count,
                            &classic,
                            native,
                            Some(native.created),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}
