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

/// The values of one source's series, carried to its new `source` label when a reload moves
/// it to another place in the config.
#[derive(Debug, Default)]
pub struct SourceSeries {
    targets: i64,
    refresh_failures: u64,
    last_success: f64,
    dropped: Vec<(&'static str, u64)>,
}

impl DiscoveryMetrics {
    /// Every series of `source` at 0, for `increase()` to see its first failure or drop; series
    /// that exist keep their values.
    pub fn start(&self, source: &str, reasons: &[&'static str]) {
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        let _ = self.targets.get_or_create(&labels);
        let _ = self.refresh_failures.get_or_create(&labels);
        let _ = self.last_success.get_or_create(&labels);
        for reason in reasons {
            let _ = self.dropped.get_or_create(&DropLabels {
                source: source.to_owned(),
                reason,
            });
        }
    }

    /// Removes the series of `source` (a reload removed or moved it) and answers their values.
    pub fn take(&self, source: &str, reasons: &[&'static str]) -> SourceSeries {
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        let mut series = SourceSeries {
            targets: self.targets.get(&labels).map_or(0, |g| g.get()),
            refresh_failures: self.refresh_failures.get(&labels).map_or(0, |c| c.get()),
            last_success: self.last_success.get(&labels).map_or(0.0, |g| g.get()),
            dropped: Vec::new(),
        };
        self.targets.remove(&labels);
        self.refresh_failures.remove(&labels);
        self.last_success.remove(&labels);
        for reason in reasons {
            let labels = DropLabels {
                source: source.to_owned(),
                reason,
            };
            if let Some(count) = self.dropped.get(&labels).map(|c| c.get()) {
                series.dropped.push((reason, count));
            }
            self.dropped.remove(&labels);
        }
        series
    }

    /// Sets the series of `source` to `series` (taken from its old label by `take`).
    pub fn restore(&self, source: &str, series: &SourceSeries) {
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        self.targets.get_or_create(&labels).set(series.targets);
        self.refresh_failures
            .get_or_create(&labels)
            .inc_by(series.refresh_failures);
        self.last_success
            .get_or_create(&labels)
            .set(series.last_success);
        for (reason, count) in &series.dropped {
            self.dropped
                .get_or_create(&DropLabels {
                    source: source.to_owned(),
                    reason,
                })
                .inc_by(*count);
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
