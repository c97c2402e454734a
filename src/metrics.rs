//! The Prometheus side: every fleet series rendered from the monitor's state at scrape time
//! (described once in `families`, walked by `walk` into `fleet_text` or `fleet_protobuf`), and
//! the exporter's own metrics through prometheus-client, in the format `/metrics` negotiated.

pub mod discovery;
mod families;
mod fleet_protobuf;
mod fleet_text;
mod native;
mod process;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
mod walk;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::monitor::Monitor;
use fleet_text::Dialect;
use process::ProcessCollector;

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
    /// Slots skipped because a probe of the agent (scheduled or on demand) was still running,
    /// or because the probing thread woke too late.
    pub probe_slots_missed: Counter,
    /// Scrapes answered 503 at once: `--web.max-requests` were already being answered, or no
    /// room was left for another encoding.
    pub scrapes_refused: Counter,
    /// Bytes of `/metrics` pieces written and not yet sent to every answer that shares them.
    pub scrape_buffered_bytes: Gauge,
    /// Scrape answers cut off because their client stopped reading while others waited.
    pub scrapes_cut: Counter,
    /// Heartbeat reports that did not reach a peer exporter (`--heartbeat.peers`).
    pub heartbeat_forward_failures: Counter,
    pub discovery: discovery::DiscoveryMetrics,
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
            probe_slots_missed: Counter::default(),
            scrapes_refused: Counter::default(),
            scrape_buffered_bytes: Gauge::default(),
            scrapes_cut: Counter::default(),
            heartbeat_forward_failures: Counter::default(),
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

/// The wire format of a scrape; `server::exposition` picks it from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4, the default.
    Text,
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages: the only one that carries
    /// native histograms.
    Protobuf,
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

/// Registers families of the exporter's own with `registry`: one `name, help => metric;`
/// entry each, so that a new one is one entry.
macro_rules! register_own {
    ($registry:expr; $($name:literal, $help:literal => $metric:expr;)*) => {
        $($registry.register($name, $help, $metric);)*
    };
}
pub(crate) use register_own;

/// Label names the exporter sets on an agent's series, sorted, derived from the family table:
/// a family with a new label reserves it. The config refuses them as agent labels and
/// discovery drops them from targets.
pub fn reserved_label_names() -> &'static [&'static str] {
    static NAMES: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(families::reserved_label_names);
    &NAMES
}

/// The registries behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    /// The exporter's own metrics and the process metrics.
    registry: Registry,
    /// Whose state the fleet series show.
    monitor: Arc<Monitor>,
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
        register_own!(registry;
            "agent_exporter_config_last_reload_successful",
            "1 when the last config (re)load succeeded, else 0"
                => exporter.config_last_reload_successful.clone();
            "agent_exporter_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config (re)load"
                => exporter.config_last_reload_success_timestamp.clone();
            "agent_exporter_probes_in_flight",
            "Probes running right now"
                => exporter.probes_in_flight.clone();
            "agent_exporter_probe_start_delay_seconds",
            "How late each probe started against its slot"
                => exporter.probe_start_delay.clone();
            "agent_exporter_probe_slots_missed",
            "Probe slots skipped because a probe of the agent was still running or the slot had passed"
                => exporter.probe_slots_missed.clone();
            "agent_exporter_scrapes_refused",
            "Scrapes answered 503 at once because --web.max-requests were in progress"
                => exporter.scrapes_refused.clone();
            "agent_exporter_scrape_buffered_bytes",
            "Bytes of /metrics answers written and not yet sent to every client that shares them"
                => exporter.scrape_buffered_bytes.clone();
            "agent_exporter_scrapes_cut_off",
            "Scrape answers cut off because their client read nothing for 2 s while the encoding waited for it"
                => exporter.scrapes_cut.clone();
        );
        exporter.discovery.register(&mut registry);
        registry.register_collector(Box::new(ProcessCollector));
        Metrics { registry, monitor }
    }

    /// `agent_exporter_shard_info{index,count}` = 1: which part of the fleet this exporter
    /// probes, so rules and dashboards can name the shard of a dead exporter.
    pub fn register_shard(&mut self, shard: crate::shard::Shard) {
        self.registry.register(
            "agent_exporter_shard",
            "The shard of the fleet this exporter probes; always 1",
            Info::new(vec![
                ("index", shard.index().to_string()),
                ("count", shard.count().to_string()),
            ]),
        );
    }

    /// `agent_exporter_heartbeat_forward_failures_total`, from 0, when `--heartbeat.peers` is
    /// given: without peers nothing is ever forwarded and the series would only mislead.
    pub fn register_forward_failures(&mut self, failures: Counter) {
        self.registry.register(
            "agent_exporter_heartbeat_forward_failures",
            "Heartbeat reports that could not be forwarded to a peer exporter: refused, unanswered within the timeout, unreachable, or dropped with too many forwards under way",
            failures,
        );
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
        self.encode_until(format, &mut |piece| {
            sink(piece);
            true
        })
        .map(drop)
    }

    /// `encode_chunks` that stops as soon as `sink` returns false (nobody wants the rest);
    /// true when the whole exposition was handed over.
    pub fn encode_until(
        &self,
        format: Format,
        sink: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<bool, EncodeError> {
        let subscribers = self.monitor.subscribers();
        let mut going = true;
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
                let rows = walk::rows(&self.monitor, false);
                let mut flush = |out: &mut String| {
                    let full = std::mem::replace(
                        out,
                        String::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
                    );
                    going = going && sink(full.into_bytes());
                    going
                };
                fleet_text::encode(&mut out, &rows, subscribers, dialect, &mut flush);
                drop(rows);
                if going && format == Format::OpenMetrics {
                    prometheus_client::encoding::text::encode_eof(&mut out)?;
                }
                going = going && sink(out.into_bytes());
            }
            Format::Protobuf => {
                // Both are length-delimited streams of families: they concatenate.
                let mut out =
                    prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&self.registry)
                        .map_err(|e| EncodeError::Protobuf(e.to_string()))?;
                let rows = walk::rows(&self.monitor, true);
                let mut flush = |out: &mut Vec<u8>| {
                    going = going && sink(std::mem::replace(out, Vec::with_capacity(CHUNK_BYTES)));
                    going
                };
                fleet_protobuf::encode(&mut out, &rows, subscribers, &mut flush);
                drop(rows);
                going = going && sink(out);
            }
        }
        Ok(going)
    }
}

/// The size of the pieces a scrape is written in: large enough that handing one over costs
/// nothing next to writing it, small enough to stay out of the allocator's fresh-mapping path
/// once the first has been freed.
pub const CHUNK_BYTES: usize = 256 * 1024;
