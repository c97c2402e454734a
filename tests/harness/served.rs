//! The exporter in-process, serving on a loopback port of its own: for tests that need its
//! server, its scheduler or its monitor but not the binary. The config and any files beside it
//! live in a temporary folder that lasts as long as the `Served`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::{Format, Metrics};
use agent_health_exporter::monitor::{AgentState, Monitor};
use agent_health_exporter::reload::Reloader;
use agent_health_exporter::scheduler::Scheduler;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running in-process exporter; its server task ends with the test's runtime if not stopped.
pub struct Served {
    pub addr: SocketAddr,
    pub monitor: Arc<Monitor>,
    pub scheduler: Arc<Scheduler>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
    /// The config file (rewrite it, then reload through `reloader` or `POST /-/reload`).
    pub config: PathBuf,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Starts on the config `yaml` with default options. Must run inside Tokio.
    pub async fn start(yaml: &str) -> Served {
        Self::start_with(yaml, |_, _| {}).await
    }

    /// Starts on the config `yaml`; `prepare` writes whatever other files the test needs into
    /// the config's folder and sets the options (web config, server limits, ...).
    pub async fn start_with(yaml: &str, prepare: impl FnOnce(&Path, &mut Options)) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let mut options = Options {
            config_file: config.clone(),
            listen_address: "127.0.0.1:0".into(),
            // The API tests drive reloads and on-demand probes; the flags' defaults (off) are
            // proven against the built binary in state_changing_endpoints.rs.
            endpoints: agent_health_exporter::server::Endpoints {
                lifecycle: true,
                probe_api: true,
            },
            ..Options::default()
        };
        prepare(dir.path(), &mut options);
        let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let monitor = exporter.monitor.clone();
        let scheduler = exporter.scheduler.clone();
        let reloader = exporter.reloader.clone();
        let metrics = exporter.state.metrics.clone();
        let task = tokio::spawn(exporter.serve(listener, async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            monitor,
            scheduler,
            reloader,
            metrics,
            config,
            dir,
            stop: Some(stop),
            task,
        }
    }

    /// A file in the config's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The text exposition, encoded directly (no HTTP).
    pub fn scrape(&self) -> String {
        String::from_utf8(self.metrics.encode(Format::Text).expect("encode")).expect("utf8")
    }

    /// A copy of agent `name`'s state; panics when there is no such agent.
    pub fn state(&self, name: &str) -> AgentState {
        self.monitor
            .agent(name)
            .unwrap_or_else(|| panic!("no agent {name}"))
            .state()
            .clone()
    }

    /// Waits (up to 3 s) until every agent in `names` has a result.
    pub async fn settle(&self, names: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if names.iter().all(|n| {
                self.monitor
                    .agent(n)
                    .is_some_and(|a| a.state().last.is_some())
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("agents {names:?} were not probed within 3 s");
    }

    /// Checks agent `name`'s history against its schedule, slot by slot: within `[from, to]`
    /// its probes must have started `interval` apart, give or take `late` (a skipped slot leaves
    /// a gap of two intervals, a make-up probe one of almost none), and the window must hold
    /// no stretch of more than `interval + late` without a probe at either end. Answers the
    /// number of probes that started in the window, or what was wrong. `to` must leave the
    /// probes that started by then time to end: a probe is in the history only once it ended;
    /// and the history (`Options::history_limit`, 100 by default) must hold the whole window.
    pub fn probes_on_every_slot(
        &self,
        name: &str,
        from: SystemTime,
        to: SystemTime,
        late: Duration,
    ) -> Result<usize, String> {
        let agent = self
            .monitor
            .agent(name)
            .unwrap_or_else(|| panic!("no agent {name}"));
        let interval = agent.spec.interval.as_millis() as u64;
        let late = late.as_millis() as u64;
        let (from, to) = (unix_millis(from), unix_millis(to));
        let mut starts: Vec<u64> = agent
            .state()
            .history
            .iter()
            .map(|h| h.ended_at_ms - u64::from(h.duration_us) / 1000)
            .filter(|&start| start + interval + late >= from && start <= to)
            .collect();
        starts.sort_unstable();
        let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
            return Err(format!("{name}: no probe in the window"));
        };
        if first > from + interval + late {
            return Err(format!(
                "{name}: first probe {} ms after the window opened",
                first - from
            ));
        }
        if last + interval + late < to {
            return Err(format!(
                "{name}: last probe {} ms before the window closed",
                to - last
            ));
        }
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            if gap + late < interval || gap > interval + late {
                return Err(format!(
                    "{name}: probes {gap} ms apart, on a {interval} ms interval (starts {starts:?})"
                ));
            }
        }
        Ok(starts.iter().filter(|&&start| start >= from).count())
    }

    /// Shuts the server down gracefully; how long it took. Panics when it takes over 10 s.
    pub async fn shutdown(mut self) -> Duration {
        let start = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server did not stop within 10 s")
            .expect("server task");
        start.elapsed()
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// One agent entry of a config's `agents:` list; `extra` is more indented lines, or "".
pub fn agent_yaml(name: &str, agent_type: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    type: {agent_type}\n    url: {url}\n{extra}")
}
