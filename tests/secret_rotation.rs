//! Rotating a secret file (bearer token, basic auth password, TLS client key pair) and reloading
//! keeps the agent: status, counters, history and series stay, and the next probes carry the
//! new value. Against an in-process exporter and an agent on loopback that checks the token.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::config;
use agent_health_exporter::metrics::Format;
use agent_health_exporter::monitor::Status;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An agent that answers 200 only to an `Authorization` header it currently accepts, and
/// remembers every header it was sent.
struct GuardedAgent {
    url: String,
    accepted: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl GuardedAgent {
    async fn start(accepted: &[&str]) -> GuardedAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        let accepted = Arc::new(Mutex::new(
            accepted.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (accepted2, seen2) = (accepted.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (accepted, seen) = (accepted2.clone(), seen2.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let header = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        seen.lock().unwrap().push(header.clone());
                        let ok = accepted.lock().unwrap().contains(&header);
                        let mut response = Response::new(Full::new(Bytes::from("ok")));
                        if !ok {
                            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                        }
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        GuardedAgent {
            url,
            accepted,
            seen,
        }
    }

    fn accept_only(&self, headers: &[&str]) {
        *self.accepted.lock().unwrap() = headers.iter().map(|s| s.to_string()).collect();
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn probes_total(exporter: &Exporter, agent: &str) -> f64 {
    let text = String::from_utf8(exporter.state.metrics.encode(Format::Text).expect("encode"))
        .expect("utf8");
    let series = format!(
        "agent_probes_total{{agent=\"{agent}\",agent_type=\"worker\",result=\"success\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the agent has `n` successful probes.
async fn successes(exporter: &Exporter, agent: &str, n: u64) {
    for _ in 0..100 {
        if let Some(a) = exporter.monitor.agent(agent) {
            if a.state().probes_success >= n {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{agent} did not reach {n} successful probes");
}

/// Runs `agent` with its secret in `secret_file`, rotates the file from `old` to `new`,
/// reloads, and checks that the agent kept its state and then sent `new_header`.
async fn rotation_keeps_state(
    http: &str,
    secret_file: &str,
    old: &str,
    new: &str,
    headers: [&str; 2],
) {
    let [old_header, new_header] = headers;
    let agent = GuardedAgent::start(&[old_header]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(secret_file), format!("{old}\n")).expect("write");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "agents:\n  - {{name: a, type: worker, url: '{}', interval: 100ms, timeout: 80ms, http: {http}}}\n",
            agent.url
        ),
    )
    .expect("write");
    let options = Options {
        config_file: config,
        history_limit: 1000,
        ..Options::default()
    };
    let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
    successes(&exporter, "a", 3).await;
    let running = exporter.monitor.agent("a").expect("agent");
    let (since, successes_before, history_before) = {
        let state = running.state();
        assert_eq!(state.status, Status::Healthy);
        (state.since, state.probes_success, state.history.len())
    };
    let series_before = probes_total(&exporter, "a");
    assert!(series_before >= 3.0, "{series_before}");

    // The agent accepts both during the rotation, as a real rotation overlaps.
    agent.accept_only(&[old_header, new_header]);
    std::fs::write(dir.path().join(secret_file), format!("{new}\n")).expect("write");
    let summary = exporter.reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.changed.is_empty(), "{summary:?}");
    assert_eq!(summary.unchanged, 1, "{summary:?}");

    // Nothing was reset: same status since the same time, counters and history kept.
    let after = exporter.monitor.agent("a").expect("agent");
    {
        let state = after.state();
        assert_eq!(state.status, Status::Healthy, "status reset by the reload");
        assert_eq!(state.since, since, "status reset by the reload");
        assert!(
            state.probes_success >= successes_before,
            "counter went back from {successes_before} to {}",
            state.probes_success
        );
        assert!(
            state.history.len() >= history_before,
            "history lost: {} < {history_before}",
            state.history.len()
        );
    }
    assert!(
        probes_total(&exporter, "a") >= series_before,
        "series reset"
    );

    // From now on only the new value works, and the agent stays healthy with it.
    agent.accept_only(&[new_header]);
    let seen_before = agent.seen().len();
    let successes_now = after.state().probes_success;
    successes(&exporter, "a", successes_now + 3).await;
    let state = after.state();
    assert_eq!(state.probes_failure, 0, "a probe was refused");
    assert_eq!(state.status, Status::Healthy);
    let later: Vec<String> = agent.seen()[seen_before..].to_vec();
    assert!(!later.is_empty());
    assert!(later.iter().all(|h| h == new_header), "{later:?}");
    exporter.scheduler.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_bearer_token_file_keeps_the_agent_and_is_sent_from_then_on() {
    rotation_keeps_state(
        "{bearer_token_file: token}",
        "token",
        "tok-one",
        "tok-two",
        ["Bearer tok-one", "Bearer tok-two"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_basic_auth_password_file_keeps_the_agent_and_is_sent_from_then_on() {
    // base64("probe:pw-one") and base64("probe:pw-two").
    rotation_keeps_state(
        "{basic_auth: {username: probe, password_file: password}}",
        "password",
        "pw-one",
        "pw-two",
        ["Basic cHJvYmU6cHctb25l", "Basic cHJvYmU6cHctdHdv"],
    )
    .await;
}

/// A client certificate for `subject`, with a fresh key: (cert PEM, key PEM).
fn client_certificate(subject: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![subject.to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject);
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

fn load_with_client_certificate(dir: &Path, cert: &(String, String)) -> config::Config {
    std::fs::write(dir.join("client.pem"), &cert.0).expect("write");
    std::fs::write(dir.join("client.key"), &cert.1).expect("write");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "agents:\n  - {name: a, type: worker, url: 'https://127.0.0.1:1/', http: {tls: {cert_file: client.pem, key_file: client.key}}}\n",
    )
    .expect("write");
    config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn renewed_client_certificate_of_the_same_identity_is_a_rotation_and_another_identity_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = load_with_client_certificate(dir.path(), &client_certificate("probe.example"));
    let running = first.agents[0].spec.clone();
    let tls = running.http.tls.clone().expect("tls");
    let before = tls.config();

    // Same subject and issuer, new key: equal spec, new key pair swapped in.
    let renewed = load_with_client_certificate(dir.path(), &client_certificate("probe.example"));
    assert_eq!(*running, *renewed.agents[0].spec);
    assert!(running.adopt_secrets(&renewed.agents[0].spec));
    assert!(!Arc::ptr_eq(&before, &tls.config()), "key pair not swapped");
    assert!(
        !running.adopt_secrets(&renewed.agents[0].spec),
        "swapped twice"
    );

    // Another subject: another agent as far as a reload is concerned.
    let other = load_with_client_certificate(dir.path(), &client_certificate("other.example"));
    assert_ne!(*running, *other.agents[0].spec);
}

#[test]
fn changed_ca_file_contents_are_a_change_not_a_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "agents:\n  - {name: a, type: worker, url: 'https://127.0.0.1:1/', http: {tls: {ca_file: ca.pem}}}\n",
    )
    .expect("write");
    let load_with_ca = |subject: &str| {
        std::fs::write(dir.path().join("ca.pem"), client_certificate(subject).0).expect("write");
        config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    };
    let first = load_with_ca("ca-one.example");
    let second = load_with_ca("ca-two.example");
    // Trust decides how the agent is probed: another CA is another agent for a reload.
    assert_ne!(*first.agents[0].spec, *second.agents[0].spec);
}
