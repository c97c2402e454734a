//! The built exporter binary as a user runs it: `command()` for one-shot runs (`--version`,
//! `--config.check`), and `Binary` for a serving exporter on a config of the test's own, started
//! through an optional command prefix (`sh -c 'ulimit …; exec "$@"'`, libfaketime's variables)
//! and killed when dropped, on every path out of the test, a failed assertion included.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::http::get;
use super::wait_for;

/// The built binary, for runs that end by themselves; add the flags and `.output()`.
pub fn command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent-health-exporter"))
}

/// A port that was free a moment ago, for starting the binary on a known address.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// How to start a `Binary`: `Binary::launch(config)`, then any of the setters, then `start()`.
pub struct Launch {
    config: String,
    files: Vec<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    prefix: Vec<String>,
    ready_within: Duration,
}

impl Launch {
    /// Writes another file (a secret, say) beside the config.
    pub fn file(mut self, name: &str, content: &str) -> Self {
        self.files.push((name.to_owned(), content.to_owned()));
        self
    }

    /// Sets an environment variable for the binary (LD_PRELOAD, say).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds flags after `--config.file` and `--web.listen-address`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Runs the binary through this command, which must end by exec'ing its arguments (so the
    /// child's pid is the exporter's): `["sh", "-c", "ulimit -n 64 && exec \"$@\"", "sh"]`.
    pub fn prefix(mut self, prefix: &[&str]) -> Self {
        self.prefix = prefix.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// How long to wait for `/-/ready` (default 10 s).
    pub fn ready_within(mut self, limit: Duration) -> Self {
        self.ready_within = limit;
        self
    }

    /// Writes the files and starts the binary; panics (and kills it) unless it gets ready.
    pub fn start(self) -> Binary {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in &self.files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let port = free_port();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, self.config.replace("{PORT}", &port.to_string()))
            .expect("write config");
        let log = dir.path().join("exporter.log");
        let binary = env!("CARGO_BIN_EXE_agent-health-exporter").to_owned();
        let mut words = self.prefix.iter().chain(std::iter::once(&binary));
        let mut command = Command::new(words.next().expect("a program"));
        command
            .args(words)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = command.spawn().expect("start the exporter");
        // Owned by `Binary` from here on: a panic below kills the child on the way out.
        let binary = Binary {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            log,
        };
        let up = wait_for(self.ready_within, || {
            get(binary.addr, "/-/ready")
                .ok()
                .filter(|a| a.status == 200)
        });
        assert!(
            up.is_some(),
            "the exporter did not become ready within {:?}:\n{}",
            self.ready_within,
            binary.logs()
        );
        binary
    }
}

/// The exporter binary serving on `addr`; its stderr goes to `log`. Killed on drop.
pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Binary {
    /// Writes `config` (with `{PORT}` replaced by the exporter's port) and starts the binary
    /// with `args`; for more, see `launch`.
    pub fn start(config: &str, args: &[&str]) -> Binary {
        Self::launch(config).args(args).start()
    }

    /// A start to set up: files, environment, flags, command prefix.
    pub fn launch(config: &str) -> Launch {
        Launch {
            config: config.to_owned(),
            files: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            prefix: Vec::new(),
            ready_within: Duration::from_secs(10),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the exporter logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name (TERM, HUP, INT) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The exit status, once the exporter ended within `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_for(limit, || self.child.try_wait().ok().flatten())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A scrape of `/metrics` over HTTP.
    pub fn metrics(&self) -> String {
        get(self.addr, "/metrics").expect("scrape").text()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
