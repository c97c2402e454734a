//! The exporter served in-process on loopback, for tests that need its server but not the
//! binary: an empty fleet, options of the test's own, a clean stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_health_exporter::app::{Exporter, Options};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct Served {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Starts with an empty config in a fresh folder; `prepare` writes whatever files the test
    /// needs into that folder and sets the options.
    pub async fn start(prepare: impl FnOnce(&Path, &mut Options)) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "agents: []\n").unwrap();
        let mut options = Options {
            config_file: config,
            ..Options::default()
        };
        prepare(dir.path(), &mut options);
        let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(exporter.serve(listener, async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            dir,
            stop: Some(stop),
            task,
        }
    }

    /// A file in the exporter's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Shuts the server down and waits (up to 10 s) for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}
