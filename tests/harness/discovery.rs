//! The exporter run in-process (`Served`) on a config and files of the test's own, for the
//! discovery tests: who is in the fleet, where each agent came from, the
//! exposition, and waiting for the fleet to change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_health_exporter::metrics::Metrics;
use agent_health_exporter::monitor::Monitor;
use agent_health_exporter::reload::Reloader;
use agent_health_exporter::shard::Shard;
use std::sync::Arc;

use super::Served;

pub struct Running {
    pub exporter: Handles,
    /// The exporter's server on loopback.
    pub addr: std::net::SocketAddr,
    served: Served,
}

/// What the tests look at of the running exporter.
pub struct Handles {
    pub monitor: Arc<Monitor>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
}

impl Running {
    /// Writes `files` and `config.yaml` into a fresh folder and starts the exporter on it.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Running {
        Running::start_sharded(config, files, Shard::default()).await
    }

    /// As `start`, probing only `shard` of the fleet.
    pub async fn start_sharded(config: &str, files: &[(&str, &str)], shard: Shard) -> Running {
        let served = Served::start_with(config, |dir, options| {
            for (name, text) in files {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(path, text).expect("write file");
            }
            options.shard = shard;
        })
        .await;
        Running {
            exporter: Handles {
                monitor: served.monitor.clone(),
                reloader: served.reloader.clone(),
                metrics: served.metrics.clone(),
            },
            addr: served.addr,
            served,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.served.path(name)
    }

    /// The agents being probed now.
    pub fn names(&self) -> BTreeSet<String> {
        self.exporter
            .monitor
            .agents()
            .iter()
            .map(|a| a.name().to_owned())
            .collect()
    }

    pub fn metrics(&self) -> String {
        self.served.scrape()
    }

    /// The `origin` the JSON API shows for `name`.
    pub fn api_origin(&self, name: &str) -> String {
        let answer = super::get(self.addr, &format!("/api/v1/agents/{name}")).expect("GET");
        let view: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
        view["origin"].as_str().unwrap_or_default().to_owned()
    }

    pub fn origin(&self, name: &str) -> String {
        self.exporter.reloader.discovery().origin(name)
    }

    /// Waits (up to `limit`) until the fleet is exactly `names`.
    pub async fn wait_for_fleet(&self, names: &[&str], limit: Duration) {
        let want: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        let start = Instant::now();
        while self.names() != want {
            assert!(
                start.elapsed() < limit,
                "fleet is {:?}, expected {want:?}",
                self.names()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `limit`) until `check` holds on the exposition.
    pub async fn wait_for_metrics(&self, limit: Duration, check: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let text = self.metrics();
            if check(&text) {
                return;
            }
            assert!(start.elapsed() < limit, "metrics never matched:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Replaces `path` atomically: write a sibling, then rename over it.
pub fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A file_sd / http_sd document with one group per `(agent, address)`.
pub fn groups(targets: &[(&str, &str)]) -> String {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|(name, address)| serde_json::json!({"targets": [address], "labels": {"agent": name}}))
        .collect();
    serde_json::Value::Array(groups).to_string()
}
