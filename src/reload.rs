//! Loading the config into the running scheduler: at start, on SIGHUP and on `POST /-/reload`.
//! A config that fails to load changes nothing; the old one keeps running.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::config::{self, ConfigError};
use crate::metrics::ExporterMetrics;
use crate::monitor::unix_seconds;
use crate::scheduler::{ReloadSummary, Scheduler};
use crate::shard::Shard;

/// Re-reads the config file and applies it.
pub struct Reloader {
    path: PathBuf,
    scheduler: Arc<Scheduler>,
    exporter: Arc<ExporterMetrics>,
    /// Only this shard's agents reach the scheduler, at start and on every reload.
    shard: Shard,
    /// Serialises reloads: a storm of SIGHUPs applies one config at a time. Holds whether a
    /// config was ever loaded, so the log says whether an old one keeps running.
    lock: Mutex<bool>,
}

impl Reloader {
    pub fn new(path: PathBuf, scheduler: Arc<Scheduler>, exporter: Arc<ExporterMetrics>) -> Self {
        Reloader {
            path,
            scheduler,
            exporter,
            shard: Shard::default(),
            lock: Mutex::new(false),
        }
    }

    /// Probe only the agents of `shard`.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    /// Loads the config file (and the files it names) and applies it. Must be called inside a
    /// Tokio runtime. On error the running config is kept and the failure is recorded in
    /// `agent_exporter_config_last_reload_successful`.
    pub fn reload(&self) -> Result<ReloadSummary, ConfigError> {
        let mut loaded = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        match config::load(&self.path) {
            Ok(mut config) => {
                // The shard filter sits on the resolved list: resolution (and its errors) is
                // the same for every shard, so every exporter accepts or rejects a config alike.
                config.agents.retain(|a| self.shard.owns(&a.spec.name));
                let summary = self.scheduler.apply(&config);
                *loaded = true;
                self.exporter.config_last_reload_successful.set(1);
                self.exporter
                    .config_last_reload_success_timestamp
                    .set(unix_seconds(SystemTime::now()));
                tracing::info!(
                    file = %self.path.display(),
                    agents = config.agents.len(),
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
