//! The Prometheus side: every per-agent series rendered from the monitor's state at scrape time
//! (by direct writers, `fleet_text` and `fleet_protobuf`), the exporter's own metrics through
//! prometheus-client, and the encodings `/metrics` can answer in.

mod fleet_protobuf;
mod fleet_text;
#[cfg(test)]
pub(crate) mod reference;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::monitor::{unix_seconds, Agent, Monitor, NativeBuckets, Status, DURATION_BUCKETS};
use crate::probe::{FailureReason, Phases};
use fleet_text::{Dialect, Family, Kind};

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
    pub discovery: crate::discovery::metrics::DiscoveryMetrics,
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
            discovery: Default::default(),
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
    #[error("compressing metrics failed")]
    Compress(#[source] std::io::Error),
}

/// The registries behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    /// The exporter's own metrics and the process metrics.
    registry: Registry,
    /// The per-agent series, rendered by `fleet_text` and `fleet_protobuf`.
    collector: FleetCollector,
}

impl Metrics {
    pub fn new(monitor: Arc<Monitor>, exporter: Arc<ExporterMetrics>, build: BuildInfo) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "agent_exporter_build",
            "Build facts of the running exporter; always 1",
            Info::new(vec![
                ("version", build.version),
                ("revision", build.revision),
                ("rustc", build.rustc),
            ]),
        );
        registry.register(
            "agent_exporter_config_last_reload_successful",
            "1 when the last config (re)load succeeded, else 0",
            exporter.config_last_reload_successful.clone(),
        );
        registry.register(
            "agent_exporter_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config (re)load",
            exporter.config_last_reload_success_timestamp.clone(),
        );
        registry.register(
            "agent_exporter_probes_in_flight",
            "Probes running right now",
            exporter.probes_in_flight.clone(),
        );
        registry.register(
            "agent_exporter_probe_start_delay_seconds",
            "How late each probe started against its slot",
            exporter.probe_start_delay.clone(),
        );
        exporter.discovery.register(&mut registry);
        registry.register_collector(Box::new(ProcessCollector));
        let collector = FleetCollector { monitor };
        Metrics {
            registry,
            collector,
        }
    }

    /// The whole exposition in `format`, in one buffer.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, EncodeError> {
        let mut whole = Vec::new();
        self.encode_chunks(format, &mut |chunk| whole.extend_from_slice(&chunk))?;
        Ok(whole)
    }

    /// The exposition in `format`, handed to `sink` in pieces of about `CHUNK_BYTES`, in
    /// order. A large fleet's scrape is tens of megabytes: in pieces it goes out while the rest
    /// is still being written, and no buffer of its whole size is ever allocated (and
    /// page-faulted in) for it. An error can only come before the first piece.
    pub fn encode_chunks(
        &self,
        format: Format,
        sink: &mut dyn FnMut(Vec<u8>),
    ) -> Result<(), EncodeError> {
        let subscribers = self.collector.monitor.subscribers();
        match format {
            Format::Text | Format::OpenMetrics => {
                let mut out = String::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
                let dialect = if format == Format::Text {
                    prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
                    Dialect::Prometheus
                } else {
                    prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)?;
                    Dialect::OpenMetrics
                };
                let rows = self.collector.rows(false);
                let mut flush = |out: &mut String| {
                    let full = std::mem::replace(
                        out,
                        String::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
                    );
                    sink(full.into_bytes());
                };
                fleet_text::encode(&mut out, &rows, subscribers, dialect, &mut flush);
                if format == Format::OpenMetrics {
                    prometheus_client::encoding::text::encode_eof(&mut out)?;
                }
                sink(out.into_bytes());
            }
            Format::Protobuf => {
                // Both are length-delimited streams of families: they concatenate.
                let mut out =
                    prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&self.registry)
                        .map_err(|e| EncodeError::Protobuf(e.to_string()))?;
                let rows = self.collector.rows(true);
                let mut flush = |out: &mut Vec<u8>| {
                    sink(std::mem::replace(out, Vec::with_capacity(CHUNK_BYTES)));
                };
                fleet_protobuf::encode(&mut out, &rows, subscribers, &mut flush);
                sink(out);
            }
        }
        Ok(())
    }
}

/// The size of the pieces a scrape is written in: large enough that handing one over costs
/// nothing next to writing it, small enough to stay out of the allocator's fresh-mapping path
/// once the first has been freed.
pub const CHUNK_BYTES: usize = 256 * 1024;

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
    duration_sum: f64,
    duration_count: u64,
    duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Only for protobuf scrapes: the text formats have no native histograms.
    native: Option<NativeBuckets>,
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
    /// A row per agent; `native` copies the native histogram buckets too.
    fn rows(&self, native: bool) -> Vec<Row> {
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
                    duration_sum: state.duration_sum,
                    duration_count: state.duration_buckets.iter().sum(),
                    duration_buckets: state.duration_buckets,
                    native: native.then(|| state.duration_native.clone()),
                    agent: agent.clone(),
                };
                drop(state);
                row
            })
            .collect()
    }
}

/// The per-agent families, shared by both encoders so that they cannot disagree on a name.
struct Families {
    agents: Family,
    subscribers: Family,
    up: Family,
    health_status: Family,
    duration: Family,
    phase: Family,
    probes: Family,
    failures: Family,
    consecutive_failures: Family,
    status_changes: Family,
    last_probe: Family,
    last_success: Family,
    http_status: Family,
    cert_expiry: Family,
    interval: Family,
    timeout: Family,
}

const FAMILIES: Families = Families {
    agents: Family {
        name: "agent_exporter_agents",
        help: "Agents in the loaded config.",
        kind: Kind::Gauge,
    },
    subscribers: Family {
        name: "agent_exporter_event_subscribers",
        help: "Clients connected to the event stream.",
        kind: Kind::Gauge,
    },
    up: Family {
        name: "agent_up",
        help: "1 when the agent's last probe succeeded, else 0.",
        kind: Kind::Gauge,
    },
    health_status: Family {
        name: "agent_health_status",
        help: "1 for the agent's current status, 0 for the others.",
        kind: Kind::Gauge,
    },
    duration: Family {
        name: "agent_probe_duration_seconds",
        help: "Duration of every probe, failed ones included.",
        kind: Kind::Histogram,
    },
    phase: Family {
        name: "agent_probe_phase_seconds",
        help: "Time spent in each phase of the agent's last probe.",
        kind: Kind::Gauge,
    },
    probes: Family {
        name: "agent_probes",
        help: "Probes by result.",
        kind: Kind::Counter,
    },
    failures: Family {
        name: "agent_probe_failures",
        help: "Failed probes by reason.",
        kind: Kind::Counter,
    },
    consecutive_failures: Family {
        name: "agent_consecutive_failures",
        help: "Failed probes in a row, up to the last one.",
        kind: Kind::Gauge,
    },
    status_changes: Family {
        name: "agent_status_changes",
        help: "Transitions between known statuses.",
        kind: Kind::Counter,
    },
    last_probe: Family {
        name: "agent_last_probe_timestamp_seconds",
        help: "End of the agent's last probe.",
        kind: Kind::Gauge,
    },
    last_success: Family {
        name: "agent_last_success_timestamp_seconds",
        help: "End of the agent's last successful probe.",
        kind: Kind::Gauge,
    },
    http_status: Family {
        name: "agent_http_status_code",
        help: "HTTP status of the agent's last probe, 0 when none was received.",
        kind: Kind::Gauge,
    },
    cert_expiry: Family {
        name: "agent_tls_cert_expiry_timestamp_seconds",
        help: "Earliest expiry among the certificates the agent served.",
        kind: Kind::Gauge,
    },
    interval: Family {
        name: "agent_probe_interval_seconds",
        help: "Configured time between two probes of the agent.",
        kind: Kind::Gauge,
    },
    timeout: Family {
        name: "agent_probe_timeout_seconds",
        help: "Configured upper bound of one probe of the agent.",
        kind: Kind::Gauge,
    },
};

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
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use crate::probe::{Outcome, ProbeResult};

    /// Three agents: one never probed, one healthy (over several buckets, with labels that need
    /// escaping), one failing.
    fn fleet() -> Arc<Monitor> {
        let yaml = "defaults:\n  labels: {team: \"a\\\\b\\\"c\\nd\"}\nagents:\n\
            - {name: idle, type: t, url: 'http://127.0.0.1:1/'}\n\
            - {name: ok, type: t, url: 'https://127.0.0.1:1/', labels: {zone: x}}\n\
            - {name: down, type: u, url: 'tcp://127.0.0.1:1', interval: 1500ms}\n";
        let config = crate::config::parse(yaml, "t.yaml", Path::new(".")).expect("valid config");
        let monitor = Arc::new(Monitor::new(10));
        let agents: Vec<_> = config.agents.iter().map(|a| monitor.insert(a)).collect();
        let probe = |ms: u64, outcome: Outcome| ProbeResult {
            ended_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123 + ms),
            duration: Duration::from_micros(ms * 997),
            phases: Phases {
                connect: Duration::from_micros(ms * 3),
                first_byte: Duration::from_nanos(3_747),
                ..Phases::default()
            },
            http_status: Some(200),
            cert_expiry: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
            outcome,
        };
        for ms in [0, 1, 2, 3, 40, 600, 12_000] {
            monitor.record(&agents[1], probe(ms, Outcome::Healthy));
        }
        let failed = Outcome::Failed {
            reason: FailureReason::Connect,
            error: "refused".into(),
        };
        monitor.record(&agents[2], probe(5, failed.clone()));
        monitor.record(&agents[2], probe(7, failed));
        monitor
    }

    /// The fleet's families as prometheus-client writes them.
    fn reference(monitor: &Arc<Monitor>, dialect: Dialect) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(FleetCollector {
            monitor: monitor.clone(),
        }));
        let mut out = String::new();
        match dialect {
            Dialect::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Dialect::OpenMetrics => {
                prometheus_client::encoding::text::encode_registry(&mut out, &registry)
            }
        }
        .unwrap();
        out
    }

    #[test]
    fn fast_text_encoding_writes_the_bytes_prometheus_client_writes() {
        let monitor = fleet();
        let collector = FleetCollector {
            monitor: monitor.clone(),
        };
        for dialect in [Dialect::Prometheus, Dialect::OpenMetrics] {
            let mut fast = String::new();
            let mut rest = String::new();
            let mut flush = |piece: &mut String| {
                fast.push_str(piece);
                piece.clear();
            };
            fleet_text::encode(&mut rest, &collector.rows(false), 0, dialect, &mut flush);
            fast.push_str(&rest);
            let expected = reference(&monitor, dialect);
            for (i, (a, b)) in fast.lines().zip(expected.lines()).enumerate() {
                assert_eq!(a, b, "{dialect:?}, line {}", i + 1);
            }
            assert_eq!(fast, expected, "{dialect:?}");
        }
    }

    #[test]
    fn fast_protobuf_encoding_holds_the_messages_prometheus_client_builds() {
        use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily;
        use prost::Message;

        let monitor = fleet();
        let collector = FleetCollector {
            monitor: monitor.clone(),
        };
        let mut fast = Vec::new();
        let mut rest = Vec::new();
        fleet_protobuf::encode(&mut rest, &collector.rows(true), 0, &mut |piece| {
            fast.append(piece)
        });
        fast.append(&mut rest);
        let mut decoded = Vec::new();
        let mut rest = fast.as_slice();
        while !rest.is_empty() {
            decoded.push(MetricFamily::decode_length_delimited(&mut rest).expect("a frame"));
        }

        let mut registry = Registry::default();
        registry.register_collector(Box::new(FleetCollector { monitor }));
        let expected = prometheus_client::encoding::prometheus_protobuf::encode(&registry).unwrap();
        assert_eq!(decoded.len(), expected.len());
        for (a, b) in decoded.iter().zip(&expected) {
            assert_eq!(a, b, "family {}", b.name);
        }
        // The fixture reaches every kind of field: native buckets with a gap, labels that need
        // escaping in text, series that only exist after a probe.
        let duration = &expected[4];
        let ok = &duration.metric[2].histogram.as_ref().unwrap();
        assert_eq!(duration.name, "agent_probe_duration_seconds");
        assert!(ok.positive_span.len() > 1, "{ok:?}");
        assert_eq!(ok.zero_count, 1);
        // And the bytes are what prost writes for the same messages.
        let mut reencoded = Vec::new();
        for family in &expected {
            family.encode_length_delimited(&mut reencoded).unwrap();
        }
        assert_eq!(fast, reencoded);
    }

    #[test]
    fn every_format_holds_the_fleet_and_the_exporters_own_metrics() {
        let metrics = Metrics::new(
            fleet(),
            Arc::new(ExporterMetrics::default()),
            BuildInfo {
                version: "1",
                revision: "r",
                rustc: "1.85",
            },
        );
        for format in [Format::Text, Format::OpenMetrics] {
            let text = String::from_utf8(metrics.encode(format).unwrap()).unwrap();
            assert!(text.contains("agent_exporter_build_info{"), "{format:?}");
            assert!(text.contains("\nagent_up{agent=\"ok\""), "{format:?}");
            assert!(text.contains("\nprocess_"), "{format:?}");
            assert_eq!(
                text.ends_with("# EOF\n"),
                format == Format::OpenMetrics,
                "{format:?}"
            );
        }
        let protobuf = metrics.encode(Format::Protobuf).unwrap();
        let needle = b"agent_probe_duration_seconds";
        assert!(protobuf.windows(needle.len()).any(|w| w == needle));
    }

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
