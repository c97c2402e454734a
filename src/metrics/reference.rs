//! prometheus-client's own rendering of the fleet's rows: the reference that the fast text and
//! protobuf writers are tested against, byte for byte (text) and message for message
//! (protobuf). Only tests build it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, MetricEncoder, NativeHistogram, NativeHistogramBuckets, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::fleet_text::{Family, Kind};
use super::{FleetCollector, FAMILIES};
use crate::monitor::{
    NativeBuckets, Status, DURATION_BUCKETS, NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD,
};
use crate::probe::FailureReason;

/// Writes one family's descriptor; its samples follow.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    family: Family,
) -> Result<MetricEncoder<'a>, std::fmt::Error> {
    let kind = match family.kind {
        Kind::Gauge => MetricType::Gauge,
        Kind::Counter => MetricType::Counter,
        Kind::Histogram => MetricType::Histogram,
    };
    encoder.encode_descriptor(family.name, family.help, None, kind)
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
    let (spans, deltas) = native.spans_and_deltas();
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

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows(true);

        let mut m = family(&mut encoder, FAMILIES.agents)?;
        m.encode_gauge(&(rows.len() as i64))?;
        let mut m = family(&mut encoder, FAMILIES.subscribers)?;
        m.encode_gauge(&(self.monitor.subscribers() as i64))?;

        let mut m = family(&mut encoder, FAMILIES.up)?;
        for row in &rows {
            if let Some(last) = &row.last {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&i64::from(last.up))?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.health_status)?;
        for row in &rows {
            for status in Status::ALL {
                let labels = (row.agent.labels(), [("status", status.as_str())]);
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(row.status == status))?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.duration)?;
        let bounds: Vec<f64> = DURATION_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .collect();
        for row in &rows {
            let classic: Vec<(f64, u64)> = bounds
                .iter()
                .copied()
                .zip(row.duration_buckets.iter().copied())
                .collect();
            let native = row.native.as_ref().expect("rows taken with native buckets");
            histogram(
                &mut m.encode_family(&row.agent.labels())?,
                row.duration_sum,
                row.duration_count,
                &classic,
                native,
                Some(native.created),
            )?;
        }

        let mut m = family(&mut encoder, FAMILIES.phase)?;
        for row in &rows {
            if let Some(last) = &row.last {
                for (phase, value) in last.phases.named() {
                    let labels = (row.agent.labels(), [("phase", phase)]);
                    m.encode_family(&labels)?
                        .encode_gauge(&value.as_secs_f64())?;
                }
            }
        }

        let mut m = family(&mut encoder, FAMILIES.probes)?;
        for row in &rows {
            for (result, value) in [
                ("success", row.probes_success),
                ("failure", row.probes_failure),
            ] {
                let labels = (row.agent.labels(), [("result", result)]);
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.failures)?;
        for row in &rows {
            for reason in FailureReason::ALL {
                let labels = (row.agent.labels(), [("reason", reason.as_str())]);
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(
                        &row.failures_by_reason[reason.index()],
                        None,
                    )?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.consecutive_failures)?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_gauge(&i64::from(row.consecutive_failures))?;
        }

        let mut m = family(&mut encoder, FAMILIES.status_changes)?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_counter::<NoLabelSet, _, u64>(&row.status_changes, None)?;
        }

        let mut m = family(&mut encoder, FAMILIES.last_probe)?;
        for row in &rows {
            if let Some(last) = &row.last {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&last.ended_at)?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.last_success)?;
        for row in &rows {
            if let Some(ts) = row.last_success {
                m.encode_family(&row.agent.labels())?.encode_gauge(&ts)?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.http_status)?;
        for row in &rows {
            if let Some(last) = &row.last {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&i64::from(last.http_status))?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.cert_expiry)?;
        for row in &rows {
            if let Some(expiry) = row.last.as_ref().and_then(|l| l.cert_expiry) {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&expiry)?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.grpc_status)?;
        for row in &rows {
            if let Some(code) = row.grpc_status {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&f64::from(code))?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.protocol_info)?;
        for row in &rows {
            if let Some(info) = &row.protocol_info {
                let labels = (
                    row.agent.labels(),
                    [
                        ("protocol", info.protocol),
                        ("server_name", info.server_name.as_str()),
                        ("server_version", info.server_version.as_str()),
                        ("protocol_version", info.protocol_version.as_str()),
                    ],
                );
                m.encode_family(&labels)?.encode_gauge(&1i64)?;
            }
        }

        let mut m = family(&mut encoder, FAMILIES.interval)?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_gauge(&row.agent.spec.interval.as_secs_f64())?;
        }

        let mut m = family(&mut encoder, FAMILIES.timeout)?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_gauge(&row.agent.spec.timeout.as_secs_f64())?;
        }
        Ok(())
    }
}
