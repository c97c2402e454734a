//! Wiring: builds the monitor, metrics, scheduler and server from the flags and runs them until
//! a shutdown signal. `main.rs` only parses the command line and calls `run`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config_watch::ConfigWatch;
use crate::forward::{Forwarder, Peers};
use crate::metrics::{BuildInfo, ExporterMetrics, Metrics};
use crate::monitor::Monitor;
use crate::reload::Reloader;
use crate::scheduler::Scheduler;
use crate::server::web_watch::WebWatch;
use crate::server::{self, Endpoints, Limits, ServerState};
use crate::shard::Shard;
use tokio::net::TcpListener;

/// Version facts, fixed at build time.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("AHE_GIT_REVISION"),
    rustc: env!("AHE_RUSTC_VERSION"),
};

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_file: PathBuf,
    pub listen_address: String,
    pub telemetry_path: String,
    pub history_limit: usize,
    /// `--web.config.file`: TLS, basic auth and headers for the exporter's own endpoints.
    pub web_config_file: Option<PathBuf>,
    /// Bounds on the exporter's own server.
    pub limits: Limits,
    /// The part of the fleet this exporter probes (`--shard.*`); the whole fleet by default.
    pub shard: Shard,
    /// Which state-changing endpoints are on.
    pub endpoints: Endpoints,
    /// `--config.auto-reload-interval`: how often the config's files are checked for a
    /// change; zero (the default) never.
    pub auto_reload_interval: Duration,
    /// `--heartbeat.peers`: one URL template per replica set, `{shard}` for the shard.
    pub heartbeat_peers: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_file: PathBuf::from("agent-health-exporter.yaml"),
            listen_address: ":10056".into(),
            telemetry_path: "/metrics".into(),
            history_limit: 100,
            web_config_file: None,
            limits: Limits::default(),
            shard: Shard::default(),
            endpoints: Endpoints::default(),
            auto_reload_interval: Duration::ZERO,
            heartbeat_peers: Vec::new(),
        }
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    WebConfig(#[from] crate::server::web_config::WebConfigError),
    #[error(
        "cannot listen on {address}: {source} (fix: choose a free port with --web.listen-address)"
    )]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Peers(#[from] crate::forward::PeersError),
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the exporter until SIGTERM or SIGINT; SIGHUP reloads the config.
pub async fn run(options: Options) -> Result<(), StartError> {
    let listener = server::bind(&options.listen_address)
        .await
        .map_err(|source| StartError::Listen {
            address: options.listen_address.clone(),
            source,
        })?;
    let exporter = Exporter::start(&options)?;
    let shutdown = shutdown_signal(exporter.reloader.clone())?;
    exporter.serve(listener, shutdown).await;
    Ok(())
}

/// A started exporter: config loaded, probing running, not yet serving.
pub struct Exporter {
    pub monitor: Arc<Monitor>,
    pub scheduler: Arc<Scheduler>,
    pub reloader: Arc<Reloader>,
    pub state: Arc<ServerState>,
    /// TLS, basic auth and headers; open unless a web config was given.
    pub web: Arc<WebWatch>,
    pub limits: Limits,
}

impl Exporter {
    /// Loads the config and starts probing. Must be called inside a Tokio runtime. A broken
    /// config at start is fatal: there is no old one to keep.
    pub fn start(options: &Options) -> Result<Exporter, StartError> {
        let web = match &options.web_config_file {
            Some(path) => WebWatch::load(path)?,
            None => WebWatch::open(),
        };
        let peers = Peers::parse(&options.heartbeat_peers, options.shard)?;
        let monitor = Arc::new(Monitor::new(options.history_limit));
        let exporter = Arc::new(ExporterMetrics::default());
        let mut metrics = Metrics::new(monitor.clone(), exporter.clone(), BUILD);
        metrics.register_shard(options.shard);
        if !peers.is_empty() {
            metrics.register_forward_failures(exporter.heartbeat_forward_failures.clone());
        }
        let metrics = Arc::new(metrics);
        let scrapes = server::ScrapeCache::new(
            options.limits.max_requests,
            exporter.scrapes_refused.clone(),
            server::scrape_cache::Gauges {
                buffered: exporter.scrape_buffered_bytes.clone(),
                cut: exporter.scrapes_cut.clone(),
            },
        );
        let scheduler = Arc::new(Scheduler::new(monitor.clone(), exporter.clone()));
        let reloader = Arc::new(
            Reloader::new(
                options.config_file.clone(),
                scheduler.clone(),
                exporter.clone(),
            )
            .with_shard(options.shard),
        );
        // Primed before the first load, so a change made during it is not missed.
        let watch = (!options.auto_reload_interval.is_zero())
            .then(|| Arc::new(ConfigWatch::new(reloader.clone())));
        reloader.reload()?;
        let forwarder = (!peers.is_empty()).then(|| {
            Arc::new(Forwarder::new(
                peers,
                options.shard,
                reloader.discovery().roster(),
                exporter.heartbeat_forward_failures.clone(),
            ))
        });
        let state = Arc::new(ServerState {
            monitor: monitor.clone(),
            metrics,
            reloader: Some(reloader.clone()),
            scheduler: Some(scheduler.clone()),
            telemetry_path: options.telemetry_path.clone(),
            status_page: server::status_page(&options.telemetry_path),
            ready: Default::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            snapshots: Default::default(),
            heavy: Default::default(),
            scrapes,
            endpoints: options.endpoints,
            forwarder,
        });
        state.ready.store(true, Ordering::Release);
        if let Some(watch) = watch {
            // Ends when the server sends its shutdown.
            watch.spawn(options.auto_reload_interval, state.shutdown.subscribe());
        }
        Ok(Exporter {
            monitor,
            scheduler,
            reloader,
            state,
            web: Arc::new(web),
            limits: options.limits,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then stops probing.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tracing::info!(
            version = BUILD.version,
            revision = BUILD.revision,
            address = %server::local_addr(&listener).map(|a| a.to_string()).unwrap_or_default(),
            telemetry_path = %self.state.telemetry_path,
            tls = self.web.current().tls.is_some(),
            basic_auth = self.web.current().auth.is_some(),
            max_connections = self.limits.max_connections,
            max_requests = self.limits.max_requests,
            lifecycle = self.state.endpoints.lifecycle,
            probe_api = self.state.endpoints.probe_api,
            "agent-health-exporter started"
        );
        server::serve_with(listener, self.state, self.web, self.limits, shutdown).await;
        self.scheduler.stop();
        tracing::info!("agent-health-exporter stopped");
    }
}

/// Completes on SIGTERM or SIGINT; reloads the config on every SIGHUP meanwhile.
#[cfg(unix)]
fn shutdown_signal(reloader: Arc<Reloader>) -> Result<impl Future<Output = ()>, StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(StartError::Signal)?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    let reloader = reloader.clone();
                    let handle = tokio::runtime::Handle::current();
                    // Errors are logged and counted by the reloader itself.
                    let _ = tokio::task::spawn_blocking(move || {
                        let _runtime = handle.enter();
                        reloader.reload()
                    }).await;
                }
            }
        }
        tracing::info!("shutdown signal received; finishing in-flight answers");
    })
}
