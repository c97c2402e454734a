//! Loading the config into the running scheduler: at start, on SIGHUP and on `POST /-/reload`.
//! A config that fails to load changes nothing; the old one keeps running.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::config::{self, ConfigError};
use crate::discovery::Discovery;
use crate::metrics::ExporterMetrics;
use crate::monitor::unix_seconds;
use crate::scheduler::{ReloadSummary, Scheduler};
use crate::shard::Shard;

/// Re-reads the config file and applies it.
pub struct Reloader {
    path: PathBuf,
    exporter: Arc<ExporterMetrics>,
    /// Only this shard's agents reach the scheduler, at start and on every reload.
    shard: Shard,
    /// Joins the config's static agents with discovered ones and hands them to the scheduler.
    discovery: Arc<Discovery>,
    /// Serialises reloads: a storm of SIGHUPs applies one config at a time. Holds whether a
    /// config was ever loaded, so the log says whether an old one keeps running.
    lock: Mutex<bool>,
}

impl Reloader {
    pub fn new(path: PathBuf, scheduler: Arc<Scheduler>, exporter: Arc<ExporterMetrics>) -> Self {
        let discovery = Discovery::new(scheduler, exporter.discovery.clone());
        Reloader {
            path,
            exporter,
            shard: Shard::default(),
            discovery,
            lock: Mutex::new(false),
        }
    }

    /// Probe only the agents of `shard`, static and discovered.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self.discovery.set_shard(shard);
        self
    }

    /// The config file this reloader reads.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Discovered agents and their origins.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// Loads the config file (and the files it names) and applies it. Must be called inside a
    /// Tokio runtime. On error the running config is kept and the failure is recorded in
    /// `agent_exporter_config_last_reload_successful`.
    pub fn reload(&self) -> Result<ReloadSummary, ConfigError> {
        let mut loaded = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        match config::load(&self.path) {
            Ok(config) => {
                // The shard filter sits on the resolved fleet, static and discovered (in
                // `Discovery`): resolution (and its errors) is the same for every shard, so every
                // exporter accepts or rejects a config alike, and settles duplicate names alike.
                let summary = self.discovery.apply_config(&config);
                *loaded = true;
                self.exporter.config_last_reload_successful.set(1);
                self.exporter
                    .config_last_reload_success_timestamp
                    .set(unix_seconds(SystemTime::now()));
                tracing::info!(
                    file = %self.path.display(),
                    agents = config.agents.iter().filter(|a| self.shard.owns(&a.spec.name)).count(),
                    shard = self.shard.index(),
                    shards = self.shard.count(),
                    added = summary.added.len(),
                    changed = summary.changed.len(),
                    removed = summary.removed.len(),
                    unchanged = summary.unchanged,
                    "config loaded"
                );
                Ok(summary)
            }
            Err(e) => {
                self.exporter.config_last_reload_successful.set(0);
                if *loaded {
                    tracing::error!(file = %self.path.display(), error = %e, "config reload failed; keeping the running config");
                } else {
                    tracing::error!(file = %self.path.display(), error = %e, "config load failed");
                }
                Err(e)
            }
        }
    }
}

/// Shared handle, for the signal handler and the server.
pub type SharedReloader = Arc<Reloader>;
