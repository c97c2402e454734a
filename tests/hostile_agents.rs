//! Hostile and broken agents cost only their own probe: each probe ends within its timeout with
//! the right reason, no body is held past `max_body_bytes`, and healthy agents keep starting
//! on their slots while a thousand others hang. (The simpler misbehaviours, a hang, an endless
//! body, a 10 GB Content-Length, a redirect loop, a reset and an unresolvable name, are in
//! `probe_reasons.rs`.)

mod common;
mod harness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::config::tls::TlsFiles;
use agent_health_exporter::metrics::Format;
use agent_health_exporter::monitor::Status;
use agent_health_exporter::probe::{run, FailureReason, Outcome, ProbeResult};
use common::{http_agent, Behaviour, MockAgent};
use harness::metric;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

fn reason(result: &ProbeResult) -> FailureReason {
    match &result.outcome {
        Outcome::Failed { reason, .. } => *reason,
        other => panic!("expected a failure, got {other:?} ({result:?})"),
    }
}

fn error(result: &ProbeResult) -> String {
    match &result.outcome {
        Outcome::Failed { error, .. } => error.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A listener whose every connection is handed to `serve`; stops when dropped.
struct RawAgent {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RawAgent {
    async fn start<F, Fut>(serve: F) -> RawAgent
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = Arc::new(serve);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(stream));
            }
        });
        RawAgent { addr, task }
    }

    fn url(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://{}{path}", self.addr)).unwrap()
    }
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads and drops whatever comes until the prober closes: a hang that frees its descriptor
/// as soon as the probe gives up.
async fn swallow(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_within(result: &ProbeResult, timeout: Duration) {
    assert!(
        result.duration < timeout + Duration::from_millis(250),
        "the probe took {:?}, its timeout is {timeout:?}",
        result.duration
    );
}

#[tokio::test]
async fn response_head_sent_one_byte_at_a_time_times_out() {
    let agent = RawAgent::start(|mut stream| async move {
        read_head(&mut stream).await;
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let timeout = Duration::from_millis(500);
    let result = run(&http_agent(agent.url("http", "/health"))
        .timeout(timeout)
        .build())
    .await;
    assert_eq!(reason(&result), FailureReason::Timeout, "{result:?}");
    assert_within(&result, timeout);
}

#[tokio::test]
async fn stalled_tls_handshake_times_out_during_tls() {
    let agent = RawAgent::start(swallow).await;
    let timeout = Duration::from_millis(400);
    let result = run(&http_agent(agent.url("https", "/health"))
        .timeout(timeout)
        .build())
    .await;
    assert_eq!(reason(&result), FailureReason::Timeout);
    assert!(error(&result).ends_with("during tls"), "{}", error(&result));
    assert_within(&result, timeout);
}

/// A TLS agent presenting `cert` (DER) with `key` (PKCS#8 DER).
async fn tls_agent(cert: rcgen::Certificate, key: rcgen::KeyPair) -> RawAgent {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    RawAgent::start(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(mut tls) = acceptor.accept(stream).await {
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await
}

fn certificate(names: &[&str], expired: bool) -> (rcgen::Certificate, rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    (cert, key, pem)
}

#[tokio::test]
async fn expired_certificate_fails_with_tls_even_when_trusted() {
    let (cert, key, pem) = certificate(&["127.0.0.1"], true);
    let agent = tls_agent(cert, key).await;
    let spec = http_agent(agent.url("https", "/health"))
        .tls(TlsFiles {
            ca_pem: Some(pem.into_bytes()),
            ..TlsFiles::default()
        })
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::Tls);
    assert!(
        error(&result).to_lowercase().contains("expired"),
        "{}",
        error(&result)
    );
}

#[tokio::test]
async fn certificate_for_another_host_fails_with_tls_even_when_trusted() {
    let (cert, key, pem) = certificate(&["other.example"], false);
    let agent = tls_agent(cert, key).await;
    let spec = http_agent(agent.url("https", "/health"))
        .tls(TlsFiles {
            ca_pem: Some(pem.into_bytes()),
            ..TlsFiles::default()
        })
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::Tls);
    assert!(error(&result).contains("certificate"), "{}", error(&result));
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_huge_bodies_keep_memory_bounded_by_max_body_bytes() {
    let endless = MockAgent::start(Behaviour::EndlessBody).await;
    let huge = MockAgent::start(Behaviour::HugeContentLength).await;
    let before = peak_rss_kib();
    let specs = [
        http_agent(endless.url("/"))
            .max_body_bytes(1024 * 1024)
            .body_contains("never")
            .timeout(Duration::from_secs(2))
            .build(),
        http_agent(huge.url("/"))
            .max_body_bytes(1024 * 1024)
            .body_contains("never")
            .timeout(Duration::from_secs(2))
            .build(),
    ];
    for _ in 0..10 {
        let probes = specs.iter().map(run);
        for result in futures_util::future::join_all(probes).await {
            assert_eq!(reason(&result), FailureReason::BodyTooLarge, "{result:?}");
        }
    }
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        // 20 probes of 1 MiB at most each; the endless agent alone could send gigabytes.
        assert!(
            after.saturating_sub(before) < 48 * 1024,
            "peak memory grew by {} KiB",
            after - before
        );
    }
}

/// The open-file limit of this process, from /proc (no unsafe code needed).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_agents_start_on_their_slots_while_a_thousand_agents_hang() {
    // Every hung probe holds a descriptor on each side until its timeout; scale down where the
    // open-file limit is low (1,000 needs about 2,100).
    let limit = open_file_limit().unwrap_or(1024);
    let hanging = 1000.min(limit.saturating_sub(256) as usize / 2);
    eprintln!("open-file limit {limit}: {hanging} hanging agents");
    assert!(
        hanging >= 300,
        "open-file limit {limit} is too low for this test"
    );
    let hang = RawAgent::start(swallow).await;
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let mut yaml = String::from("defaults: {interval: 2s, timeout: 1900ms}\nagents:\n");
    for i in 0..hanging {
        yaml.push_str(&format!(
            "  - name: hung-{i:04}\n    type: hung\n    url: {}\n",
            hang.url("http", &format!("/agent/{i}"))
        ));
    }
    for i in 0..20 {
        yaml.push_str(&format!(
            "  - name: healthy-{i:02}\n    type: healthy\n    url: {}\n",
            ok.url(&format!("/agent/{i}"))
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let options = Options {
        config_file: path,
        ..Options::default()
    };
    let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    exporter.scheduler.stop();
    let text = String::from_utf8(exporter.state.metrics.encode(Format::Text).unwrap()).unwrap();
    let total = metric(&text, "agent_exporter_probe_start_delay_seconds_count").unwrap();
    let on_time = metric(
        &text,
        "agent_exporter_probe_start_delay_seconds_bucket{le=\"0.1\"}",
    )
    .unwrap();
    eprintln!("{total} probes started, {on_time} within 100 ms of their slots");
    assert!(
        total >= (hanging as f64) * 2.0,
        "only {total} probes started"
    );
    assert_eq!(on_time, total, "{} probes started late", total - on_time);
    for i in 0..20 {
        let state = exporter
            .monitor
            .agent(&format!("healthy-{i:02}"))
            .unwrap()
            .state()
            .clone();
        assert_eq!(state.status, Status::Healthy, "healthy-{i:02}");
        assert!(state.probes_success >= 2, "healthy-{i:02}: {state:?}");
    }
    let mut late = 0;
    for i in 0..hanging {
        let state = exporter
            .monitor
            .agent(&format!("hung-{i:04}"))
            .unwrap()
            .state()
            .clone();
        assert_eq!(state.status, Status::Unhealthy, "hung-{i:04}");
        assert_eq!(
            state.failures_by_reason[FailureReason::Timeout.index()],
            state.probes_failure
        );
        late += state
            .history
            .iter()
            .filter(|h| h.duration() > Duration::from_millis(2150))
            .count();
    }
    assert_eq!(late, 0, "hung probes that outlived their timeout by 250 ms");
}
