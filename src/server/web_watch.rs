//! Keeps the web config current while serving: every few seconds the web config file and the
//! files it names are looked at (modification time, size, inode), and on a change the whole
//! config is read again, so a renewed certificate or a new user is used without a restart. A
//! new config that does not load is logged and the one in force is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::web_config::{self, WebConfig, WebConfigError};

/// How often the files are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What identifies one version of a file; `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64, u64)>;

/// The web config in force, and how to notice that it changed.
pub struct WebWatch {
    path: PathBuf,
    current: RwLock<Arc<WebConfig>>,
    /// The stamps of `current.files` when it was loaded, or of the last version that failed.
    stamps: Mutex<Vec<(PathBuf, Stamp)>>,
}

impl WebWatch {
    /// Loads the web config at `path`; an error here is fatal at start-up.
    pub fn load(path: &Path) -> Result<WebWatch, WebConfigError> {
        let config = web_config::load(path)?;
        let stamps = stamps(&config.files);
        Ok(WebWatch {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// An open server without a file: no TLS, no auth, no headers.
    pub fn open() -> WebWatch {
        WebWatch {
            path: PathBuf::new(),
            current: RwLock::new(Arc::new(WebConfig::default())),
            stamps: Mutex::new(Vec::new()),
        }
    }

    /// The config in force.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the files when any of them changed; true when a new config took effect.
    /// Blocking: file reads and key parsing.
    pub fn check(&self) -> bool {
        if self.path.as_os_str().is_empty() {
            return false;
        }
        let mut known = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        let paths: Vec<PathBuf> = known.iter().map(|(p, _)| p.clone()).collect();
        if stamps(&paths) == *known {
            return false;
        }
        let old = self.current();
        match web_config::load(&self.path) {
            Ok(config) if config.tls.is_some() != old.tls.is_some() => {
                // A listener does not switch between plain HTTP and TLS under its clients.
                tracing::error!(
                    file = %self.path.display(),
                    "web config changed whether TLS is served; restart the exporter for that, keeping the running web config"
                );
                *known = stamps(&config.files);
                false
            }
            Ok(config) => {
                *known = stamps(&config.files);
                tracing::info!(file = %self.path.display(), tls = config.tls.is_some(), basic_auth = config.auth.is_some(), "web config reloaded");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                true
            }
            Err(e) => {
                // Remember this version, so the error is logged once per change, not every check.
                *known = stamps(&paths);
                tracing::error!(file = %self.path.display(), error = %e, "web config reload failed; keeping the running web config");
                false
            }
        }
    }

    /// Checks every `CHECK_EVERY` until `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let watch = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let watch = watch.clone();
                        let _ = tokio::task::spawn_blocking(move || watch.check()).await;
                    }
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
            }
        })
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<(PathBuf, Stamp)> {
    paths.iter().map(|p| (p.clone(), stamp(p))).collect()
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}
