//! The discovery metrics: per source, how many targets it found, how many it dropped and why,
//! its failed refreshes and its last good one. Registered with the exporter's own metrics;
//! the discovery sources update them.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::register_own;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub source: String,
    pub reason: &'static str,
}

/// Cheap to clone: every family is shared.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryMetrics {
    pub targets: Family<SourceLabels, Gauge>,
    pub dropped: Family<DropLabels, Counter>,
    pub refresh_failures: Family<SourceLabels, Counter>,
    pub last_success: Family<SourceLabels, Gauge<f64, AtomicU64>>,
}

impl DiscoveryMetrics {
    /// Forgets a source a reload removed, so that its series disappear.
    pub fn forget(&self, source: &str, reasons: &[&'static str]) {
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        self.targets.remove(&labels);
        self.refresh_failures.remove(&labels);
        self.last_success.remove(&labels);
        for reason in reasons {
            self.dropped.remove(&DropLabels {
                source: source.to_owned(),
                reason,
            });
        }
    }

    /// Adds the four families to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        register_own!(registry;
            "agent_exporter_discovery_targets",
            "Targets the source found in its last good refresh, before relabeling"
                => self.targets.clone();
            "agent_exporter_discovery_dropped_targets",
            "Targets that did not become agents, by reason"
                => self.dropped.clone();
            "agent_exporter_discovery_refresh_failures",
            "Refreshes of the source that failed; its last good targets were kept"
                => self.refresh_failures.clone();
            "agent_exporter_discovery_last_refresh_success_timestamp_seconds",
            "Time of the source's last successful refresh"
                => self.last_success.clone();
        );
    }
}
