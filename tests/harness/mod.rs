//! The one harness of the integration tests. A test file says `mod harness;` and takes what it
//! needs; every part is real: hyper and raw-socket servers on 127.0.0.1, the exporter in-process
//! or as the built binary, a hand-written HTTP client.
//!
//! - `agents`: mock agents that answer well or misbehave on purpose (`MockAgent`, `RawAgent`),
//!   self-signed TLS identities, and a builder for the `AgentSpec` a probe test runs.
//! - `served`: the exporter in-process, serving on a loopback port, with handles on its monitor,
//!   scheduler, reloader and metrics (`Served`).
//! - `binary`: the built binary, one-shot (`command`) or serving (`Binary`, killed on drop, with
//!   files, environment, flags and a command prefix such as libfaketime or `ulimit`).
//! - `http`: the HTTP client, blocking and async, and an event-stream reader.
//! - `discovery`: the exporter in-process on a config and files of the test's own, for the
//!   discovery tests: who is in the fleet, each agent's origin, waiting for the fleet to change.
//! - `sd_server`: an HTTP SD endpoint whose answer the test changes (`SdServer`).
//! - `peers`: the protocol tests' reference peers (Python gRPC, MCP, A2A servers in the venv of
//!   tests/peers/setup-venv.sh), skipped with a message when the venv is missing.
//!
//! Below: lookups in the text exposition and polling, shared by all of them.
#![allow(dead_code, unused_imports)]

pub mod agents;
pub mod binary;
pub mod discovery;
pub mod http;
pub mod peers;
pub mod sd_server;
pub mod served;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use agents::{
    http_agent, refused_addr, tcp_agent, Behaviour, MockAgent, RawAgent, TlsIdentity,
};
pub use binary::{free_port, Binary};
pub use http::{fetch, get, parse_answer, request, Answer, EventStream};
pub use served::{agent_yaml, Served};

/// The value of the series whose line starts with `selector` (name plus labels, as rendered).
pub fn metric(text: &str, selector: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(selector) && l[selector.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `check` (blocking, every 20 ms) until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` inside Tokio (every 10 ms) until it holds or `limit` passes; whether it held.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// Path of a file in the repository.
pub fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}
