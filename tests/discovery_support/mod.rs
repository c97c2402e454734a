//! The exporter run in-process on a config and files of the test's own, for the discovery
//! tests: who is in the fleet, the exposition, and waiting for the fleet to change.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::{Format, Metrics};
use agent_health_exporter::monitor::Monitor;
use agent_health_exporter::reload::Reloader;
use agent_health_exporter::shard::Shard;
use std::sync::Arc;

pub struct Running {
    pub exporter: Handles,
    /// The exporter's server on loopback.
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What the tests look at of the running exporter.
pub struct Handles {
    pub monitor: Arc<Monitor>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
}

impl Running {
    /// Writes `files` and `config.yaml` into a fresh folder and starts the exporter on it.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Running {
        Running::start_sharded(config, files, Shard::default())
    }

    /// As `start`, probing only `shard` of the fleet.
    pub fn start_sharded(config: &str, files: &[(&str, &str)], shard: Shard) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, text).expect("write file");
        }
        let config_file = dir.path().join("config.yaml");
        std::fs::write(&config_file, config).expect("write config");
        let options = Options {
            config_file,
            listen_address: "127.0.0.1:0".into(),
            shard,
            ..Options::default()
        };
        let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
        let handles = Handles {
            monitor: exporter.monitor.clone(),
            reloader: exporter.reloader.clone(),
            metrics: exporter.state.metrics.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(exporter.serve(listener, async {
            let _ = stopped.await;
        }));
        Running {
            exporter: handles,
            addr,
            dir,
            _stop: stop,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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
        let bytes = self.exporter.metrics.encode(Format::Text).expect("encode");
        String::from_utf8(bytes).expect("utf8")
    }

    /// The `origin` the JSON API shows for `name`.
    pub fn api_origin(&self, name: &str) -> String {
        let answer =
            crate::harness::get(self.addr, &format!("/api/v1/agents/{name}")).expect("GET");
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
