//! `--heartbeat.peers` with `https://` templates, for exporters whose web config serves TLS:
//! the forward is verified against the system trust store, here `SSL_CERT_FILE` naming the
//! exporters' own certificate. Its own test binary, since the trust store is read once per
//! process.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::Format;
use agent_health_exporter::shard::{hashmod, Shard};
use harness::http::exchange;
use harness::{metric, wait_until};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpListener;

const TOKEN: &str = "tls-worker-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_to_a_tls_exporter_of_another_shard_is_forwarded_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "127.0.1.1".to_owned()])
            .expect("params");
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("cert");
    std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).expect("key");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n",
    )
    .expect("web config");
    // Read by the trust store on its first use, which is the first exporter's start below.
    std::env::set_var("SSL_CERT_FILE", dir.path().join("server.pem"));
    let agent = (0..)
        .map(|i| format!("worker-{i}"))
        .find(|n| hashmod(n, 2) == 1)
        .expect("a name");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("agents:\n  - name: {agent}\n    type: batch\n    heartbeat: {{period: 1h, token_file: token}}\n"),
    )
    .expect("config");

    let first = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = first.local_addr().expect("addr").port();
    let second = TcpListener::bind(("127.0.1.1", port)).await.expect("bind");
    let mut exporters = Vec::new();
    for (shard, listener) in [first, second].into_iter().enumerate() {
        let options = Options {
            config_file: config.clone(),
            web_config_file: Some(web.clone()),
            shard: Shard::new(shard as u64, 2).expect("shard"),
            heartbeat_peers: vec![format!("https://127.0.{{shard}}.1:{port}")],
            ..Options::default()
        };
        let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
        exporters.push(exporter.state.metrics.clone());
        tokio::spawn(exporter.serve(listener, std::future::pending()));
    }

    let answer = report(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &cert.der().clone(),
        &agent,
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let owner = exporters[1].clone();
    let successes = move || {
        let text = String::from_utf8(owner.encode(Format::Text).expect("encode")).expect("utf8");
        let selector = format!(
            "agent_probes_total{{agent=\"{agent}\",agent_type=\"batch\",result=\"success\"}}"
        );
        metric(&text, &selector)
    };
    assert!(
        wait_until(Duration::from_secs(10), || successes() == Some(1.0)).await,
        "the owner counted {:?}",
        successes()
    );
    let sender =
        String::from_utf8(exporters[0].encode(Format::Text).expect("encode")).expect("utf8");
    assert_eq!(
        metric(&sender, "agent_exporter_heartbeat_forward_failures_total"),
        Some(0.0)
    );
}

/// One report over TLS, trusting `cert`.
async fn report(addr: SocketAddr, cert: &CertificateDer<'static>, agent: &str) -> harness::Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    let request = format!(
        "POST /api/v1/agents/{agent}/heartbeat HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n"
    );
    exchange(tls, request.as_bytes()).await.expect("answer")
}
