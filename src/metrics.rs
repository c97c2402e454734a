//! The Prometheus side: one `Collector` that renders every per-agent series from the monitor's
//! state at scrape time, the exporter's own metrics, and the encodings `/metrics` can answer in.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::monitor::{unix_seconds, Agent, Monitor, Status};
use crate::probe::{FailureReason, Phases};

/// Classic buckets of `agent_exporter_probe_start_delay_seconds`: from "on time" to "a whole
/// default timeout late".
const START_DELAY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The exporter's own instruments that the scheduler and the server update.
#[derive(Debug)]
pub struct ExporterMetrics {
    pub probes_in_flight: Gauge,
    pub probe_start_delay: Histogram,
    pub config_last_reload_successful: Gauge,
    pub config_last_reload_success_timestamp: Gauge<f64, AtomicU64>,
}

impl Default for ExporterMetrics {
    fn default() -> Self {
        ExporterMetrics {
            probes_in_flight: Gauge::default(),
            probe_start_delay: Histogram::new_classic_and_native(
                START_DELAY_BUCKETS,
                NativeHistogramConfig::new(1.1),
            ),
            config_last_reload_successful: Gauge::default(),
            config_last_reload_success_timestamp: Gauge::default(),
        }
    }
}

/// Build facts for `agent_exporter_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc: &'static str,
}

/// The wire format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4, the default.
    Text,
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages: the only one that carries
    /// native histograms.
    Protobuf,
}

impl Format {
    /// Picks the format from an `Accept` header the way Prometheus asks for them.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best = (Format::Text, -1.0f32);
        for part in accept.split(',') {
            let mut fields = part.split(';').map(str::trim);
            let media = fields.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut proto_ok = true;
            for param in fields {
                if let Some(v) = param.strip_prefix("q=") {
                    q = v.parse().unwrap_or(0.0);
                } else if let Some(v) = param.strip_prefix("proto=") {
                    proto_ok = v == "io.prometheus.client.MetricFamily";
                }
            }
            let format = match media.as_str() {
                "application/vnd.google.protobuf" if proto_ok => Format::Protobuf,
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "*/*" | "text/*" => Format::Text,
                _ => continue,
            };
            if q > best.1 {
                best = (format, q);
            }
        }
        best.0
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }
}

/// Why a scrape could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding metrics as text failed")]
    Text(#[from] std::fmt::Error),
    #[error("encoding metrics as protobuf failed: {0}")]
    Protobuf(String),
}

/// The registry behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(monitor: Arc<Monitor>, exporter: Arc<ExporterMetrics>, build: BuildInfo) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "agent_exporter_build",
            "Build facts of the running exporter; always 1.",
            Info::new(vec![
                ("version", build.version),
                ("revision", build.revision),
                ("rustc", build.rustc),
            ]),
        );
        registry.register(
            "agent_exporter_config_last_reload_successful",
            "1 when the last config (re)load succeeded, else 0.",
            exporter.config_last_reload_successful.clone(),
        );
        registry.register(
            "agent_exporter_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config (re)load.",
            exporter.config_last_reload_success_timestamp.clone(),
        );
        registry.register(
            "agent_exporter_probes_in_flight",
            "Probes running right now.",
            exporter.probes_in_flight.clone(),
        );
        registry.register(
            "agent_exporter_probe_start_delay_seconds",
            "How late each probe started against its slot.",
            exporter.probe_start_delay.clone(),
        );
        registry.register_collector(Box::new(FleetCollector { monitor }));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics { registry }
    }

    /// The whole exposition in `format`.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, EncodeError> {
        match format {
            Format::Text => {
                let mut out = String::with_capacity(64 * 1024);
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
                Ok(out.into_bytes())
            }
            Format::OpenMetrics => {
                let mut out = String::with_capacity(64 * 1024);
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
                Ok(out.into_bytes())
            }
            Format::Protobuf => {
                prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&self.registry)
                    .map_err(|e| EncodeError::Protobuf(e.to_string()))
            }
        }
    }
}

/// A consistent copy of one agent's state, taken once per scrape so that all its series agree.
struct Row {
    agent: Arc<Agent>,
    status: Status,
    /// None before the first probe.
    last: Option<LastProbe>,
    last_success: Option<f64>,
    consecutive_failures: u32,
    probes_success: u64,
    probes_failure: u64,
    failures_by_reason: [u64; FailureReason::ALL.len()],
    status_changes: u64,
}

struct LastProbe {
    up: bool,
    ended_at: f64,
    phases: Phases,
    http_status: u16,
    cert_expiry: Option<f64>,
}

/// Every per-agent series, rendered from the monitor at scrape time.
#[derive(Debug)]
struct FleetCollector {
    monitor: Arc<Monitor>,
}

impl FleetCollector {
    fn rows(&self) -> Vec<Row> {
        self.monitor
            .agents()
            .into_iter()
            .map(|agent| {
                let state = agent.state();
                let last = state.last.as_ref().map(|r| LastProbe {
                    up: r.outcome.is_success(),
                    ended_at: unix_seconds(r.ended_at),
                    phases: r.phases,
                    http_status: r.http_status.unwrap_or(0),
                    cert_expiry: r.cert_expiry.map(unix_seconds),
                });
                let row = Row {
                    status: state.status,
                    last,
                    last_success: state.last_success.map(unix_seconds),
                    consecutive_failures: state.consecutive_failures,
                    probes_success: state.probes_success,
                    probes_failure: state.probes_failure,
                    failures_by_reason: state.failures_by_reason,
                    status_changes: state.status_changes,
                    agent: agent.clone(),
                };
                drop(state);
                row
            })
            .collect()
    }
}

/// Writes one family: its descriptor, then one sample per row that has a value.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows();

        let mut m = family(
            &mut encoder,
            "agent_exporter_agents",
            "Agents in the loaded config.",
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(rows.len() as i64))?;
        let mut m = family(
            &mut encoder,
            "agent_exporter_event_subscribers",
            "Clients connected to the event stream.",
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(self.monitor.subscribers() as i64))?;

        let mut m = family(
            &mut encoder,
            "agent_up",
            "1 when the agent's last probe succeeded, else 0.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            if let Some(last) = &row.last {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&i64::from(last.up))?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_health_status",
            "1 for the agent's current status, 0 for the others.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            for status in Status::ALL {
                let labels = (row.agent.labels(), [("status", status.as_str())]);
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(row.status == status))?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_probe_duration_seconds",
            "Duration of every probe, failed ones included.",
            MetricType::Histogram,
        )?;
        for row in &rows {
            row.agent
                .duration_histogram()
                .encode(m.encode_family(&row.agent.labels())?)?;
        }

        let mut m = family(
            &mut encoder,
            "agent_probe_phase_seconds",
            "Time spent in each phase of the agent's last probe.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            if let Some(last) = &row.last {
                for (phase, value) in last.phases.named() {
                    let labels = (row.agent.labels(), [("phase", phase)]);
                    m.encode_family(&labels)?
                        .encode_gauge(&value.as_secs_f64())?;
                }
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_probes",
            "Probes by result.",
            MetricType::Counter,
        )?;
        for row in &rows {
            for (result, value) in [
                ("success", row.probes_success),
                ("failure", row.probes_failure),
            ] {
                let labels = (row.agent.labels(), [("result", result)]);
                m.encode_family(&labels)?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                        &value, None,
                    )?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_probe_failures",
            "Failed probes by reason.",
            MetricType::Counter,
        )?;
        for row in &rows {
            for reason in FailureReason::ALL {
                let labels = (row.agent.labels(), [("reason", reason.as_str())]);
                m.encode_family(&labels)?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                        &row.failures_by_reason[reason.index()],
                        None,
                    )?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_consecutive_failures",
            "Failed probes in a row, up to the last one.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_gauge(&i64::from(row.consecutive_failures))?;
        }

        let mut m = family(
            &mut encoder,
            "agent_status_changes",
            "Transitions between known statuses.",
            MetricType::Counter,
        )?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                    &row.status_changes,
                    None,
                )?;
        }

        let mut m = family(
            &mut encoder,
            "agent_last_probe_timestamp_seconds",
            "End of the agent's last probe.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            if let Some(last) = &row.last {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&last.ended_at)?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_last_success_timestamp_seconds",
            "End of the agent's last successful probe.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            if let Some(ts) = row.last_success {
                m.encode_family(&row.agent.labels())?.encode_gauge(&ts)?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_http_status_code",
            "HTTP status of the agent's last probe, 0 when none was received.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            if let Some(last) = &row.last {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&i64::from(last.http_status))?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_tls_cert_expiry_timestamp_seconds",
            "Earliest expiry among the certificates the agent served.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            if let Some(expiry) = row.last.as_ref().and_then(|l| l.cert_expiry) {
                m.encode_family(&row.agent.labels())?
                    .encode_gauge(&expiry)?;
            }
        }

        let mut m = family(
            &mut encoder,
            "agent_probe_interval_seconds",
            "Configured time between two probes of the agent.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_gauge(&row.agent.spec.interval.as_secs_f64())?;
        }

        let mut m = family(
            &mut encoder,
            "agent_probe_timeout_seconds",
            "Configured upper bound of one probe of the agent.",
            MetricType::Gauge,
        )?;
        for row in &rows {
            m.encode_family(&row.agent.labels())?
                .encode_gauge(&row.agent.spec.timeout.as_secs_f64())?;
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read from the OS at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = metrics_process::collector::collect();
        if let Some(v) = p.cpu_seconds_total {
            encoder
                .encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds.",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                p.virtual_memory_max_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                p.threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&(v as i64))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_protobuf_accept_header_selects_protobuf() {
        let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(accept)), Format::Protobuf);
    }

    #[test]
    fn openmetrics_accept_header_selects_openmetrics() {
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::negotiate(Some(accept)), Format::OpenMetrics);
    }

    #[test]
    fn missing_or_unknown_accept_header_selects_text() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    }
}
