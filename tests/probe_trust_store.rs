//! The trust store of an agent without `ca_file`, through the built binary: the operating
//! system's (here pointed at a test CA with `SSL_CERT_FILE`, which the system store honours as
//! OpenSSL and Go do), and the compiled-in Mozilla list only when the system has nothing. The
//! log says which, once.

mod harness;
mod tls_peer;

use std::time::Duration;

use harness::{metric, wait_for, Binary};
use tls_peer::{Ca, PeerTls, TlsPeer, VALID};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn config(port: u16) -> String {
    format!(
        "agents:\n  - name: store\n    type: test\n    url: https://127.0.0.1:{port}/health\n    interval: 500ms\n    timeout: 400ms\n"
    )
}

fn status(exporter: &Binary, status: &str) -> Option<f64> {
    metric(
        &exporter.metrics(),
        &format!("agent_health_status{{agent=\"store\",agent_type=\"test\",status=\"{status}\"}}"),
    )
}

#[test]
fn ca_installed_in_the_system_store_is_trusted_without_ca_file() {
    let rt = runtime();
    let ca = Ca::new("Company Root");
    let leaf = ca.leaf(&["127.0.0.1"], VALID);
    let peer = rt.block_on(TlsPeer::start(PeerTls::serving(&leaf)));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("company-ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();
    let bundle = bundle.to_string_lossy().into_owned();
    let exporter = Binary::launch(&config(peer.addr.port()))
        .env("SSL_CERT_FILE", &bundle)
        .start();
    let healthy = wait_for(Duration::from_secs(5), || {
        (status(&exporter, "healthy") == Some(1.0)).then_some(())
    });
    let logs = exporter.logs();
    assert!(healthy.is_some(), "not healthy; logs:\n{logs}");
    let mentions: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("trust store without ca_file"))
        .collect();
    assert_eq!(mentions.len(), 1, "{logs}");
    assert!(mentions[0].contains("the operating system's"), "{logs}");
}

#[test]
fn mozilla_list_is_used_only_when_the_system_store_is_empty() {
    let rt = runtime();
    let ca = Ca::new("Company Root");
    let leaf = ca.leaf(&["127.0.0.1"], VALID);
    let peer = rt.block_on(TlsPeer::start(PeerTls::serving(&leaf)));
    let exporter = Binary::launch(&config(peer.addr.port()))
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .env("SSL_CERT_DIR", "/nonexistent")
        .start();
    let unhealthy = wait_for(Duration::from_secs(5), || {
        (status(&exporter, "unhealthy") == Some(1.0)).then_some(())
    });
    let logs = exporter.logs();
    assert!(unhealthy.is_some(), "logs:\n{logs}");
    let mentions: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("trust store without ca_file"))
        .collect();
    assert!(
        mentions
            .iter()
            .any(|l| l.contains("compiled-in Mozilla list")),
        "{logs}"
    );
    assert!(logs.contains("not issued by a trusted CA"), "{logs}");
}
