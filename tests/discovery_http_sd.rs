//! http_sd against an in-test hyper server that answers well, fails, stalls, answers too much
//! or answers nonsense: the source keeps its last good targets through every failure, counts
//! it, and follows the next good answer.

mod harness;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_health_exporter::config;
use agent_health_exporter::discovery::check::check_sources;
use bytes::Bytes;
use harness::discovery::{groups, Running};
use harness::metric;
use harness::{Behaviour, MockAgent, TlsIdentity};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
enum Answer {
    Targets(String),
    Status(u16),
    Slow(Duration, String),
    Oversized,
    NotJson,
    WrongType(String),
    /// 302 from `from` to `to`; any other path answers `body`.
    Moved {
        from: String,
        to: String,
        body: String,
    },
}

#[derive(Clone, Default)]
struct Endpoint {
    answer: Arc<Mutex<Option<Answer>>>,
    authorization: Arc<Mutex<Vec<String>>>,
    /// Method, path and `X-Fleet` header of every request.
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Endpoint {
    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = Some(answer);
    }

    async fn serve(self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let endpoint = self.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let endpoint = endpoint.clone();
                        async move { Ok::<_, Infallible>(endpoint.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(value) = req.headers().get("authorization") {
            self.authorization
                .lock()
                .unwrap()
                .push(value.to_str().unwrap_or("").to_owned());
        }
        self.requests.lock().unwrap().push((
            req.method().to_string(),
            req.uri().path().to_owned(),
            req.headers()
                .get("x-fleet")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        ));
        let answer = self
            .answer
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Answer::Status(404));
        let json = |body: String| {
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        match answer {
            Answer::Targets(body) => json(body),
            Answer::Status(code) => Response::builder()
                .status(code)
                .body(Full::new(Bytes::new()))
                .unwrap(),
            Answer::Slow(delay, body) => {
                tokio::time::sleep(delay).await;
                json(body)
            }
            Answer::Oversized => json(format!("[{{\"targets\": [\"{}\"]}}]", "x".repeat(4096))),
            Answer::NotJson => json("<html>oops</html>".into()),
            Answer::Moved { from, to, .. } if req.uri().path() == from => Response::builder()
                .status(302)
                .header("location", to)
                .body(Full::new(Bytes::new()))
                .unwrap(),
            Answer::Moved { body, .. } => json(body),
            Answer::WrongType(body) => Response::builder()
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        }
    }
}

fn failures(run: &Running) -> f64 {
    metric(
        &run.metrics(),
        "agent_exporter_discovery_refresh_failures_total{source=\"http_sd/0\"}",
    )
    .unwrap_or(0.0)
}

async fn wait_for_more_failures(run: &Running, than: f64) -> f64 {
    run.wait_for_metrics(WAIT, |m| {
        metric(
            m,
            "agent_exporter_discovery_refresh_failures_total{source=\"http_sd/0\"}",
        )
        .is_some_and(|v| v > than)
    })
    .await;
    failures(run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_keeps_the_last_good_targets_through_every_kind_of_failure() {
    let endpoint = Endpoint::default();
    endpoint.set(Answer::Targets(groups(&[
        ("w1", "127.0.0.1:9"),
        ("w2", "127.0.0.1:9"),
    ])));
    let addr = endpoint.clone().serve().await;
    let config = format!(
        r#"
discovery:
  - http_sd:
      url: "http://{addr}/sd?access_token=sd-SECRET"
      refresh_interval: 100ms
      timeout: 300ms
      max_response_bytes: 2KiB
      http: {{bearer_token_file: sd-token}}
    type: worker
"#
    );
    let run = Running::start(&config, &[("sd-token", "s3cret\n")]).await;
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").unwrap();
    assert!(endpoint
        .authorization
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == "Bearer s3cret"));
    assert!(
        run.origin("w1")
            .ends_with(&format!("url=http://{addr}/sd?access_token=<secret>")),
        "{}",
        run.origin("w1")
    );
    assert!(metric(
        &run.metrics(),
        "agent_exporter_discovery_last_refresh_success_timestamp_seconds{source=\"http_sd/0\"}"
    )
    .is_some_and(|t| t > 1.0e9));

    let mut seen = failures(&run);
    let other = groups(&[("never", "127.0.0.1:9")]);
    for answer in [
        Answer::Status(500),
        Answer::Slow(Duration::from_secs(2), other.clone()),
        Answer::Oversized,
        Answer::NotJson,
        Answer::WrongType(other.clone()),
    ] {
        endpoint.set(answer);
        seen = wait_for_more_failures(&run, seen).await;
        assert_eq!(
            run.names().len(),
            2,
            "last good targets kept: {:?}",
            run.names()
        );
    }
    assert!(std::sync::Arc::ptr_eq(
        &w1,
        &run.exporter.monitor.agent("w1").unwrap()
    ));

    endpoint.set(Answer::Targets(groups(&[
        ("w1", "127.0.0.1:9"),
        ("w3", "127.0.0.1:9"),
    ])));
    run.wait_for_fleet(&["w1", "w3"], WAIT).await;
    assert!(std::sync::Arc::ptr_eq(
        &w1,
        &run.exporter.monitor.agent("w1").unwrap()
    ));
    assert_eq!(
        metric(
            &run.metrics(),
            "agent_exporter_discovery_targets{source=\"http_sd/0\"}"
        ),
        Some(2.0)
    );

    // A rotated token file: the reload keeps the source (its settings did not change) and its
    // next requests carry the new token.
    std::fs::write(run.path("sd-token"), "n3w\n").expect("rotate the token");
    run.exporter.reloader.reload().expect("reload");
    endpoint.authorization.lock().unwrap().clear();
    let rotated = harness::wait_until(WAIT, || {
        endpoint
            .authorization
            .lock()
            .unwrap()
            .iter()
            .any(|a| a == "Bearer n3w")
    })
    .await;
    assert!(rotated, "the kept source never sent the rotated token");
    assert!(std::sync::Arc::ptr_eq(
        &w1,
        &run.exporter.monitor.agent("w1").unwrap()
    ));
}

fn counter(run: &Running, series: &str) -> f64 {
    metric(&run.metrics(), series).unwrap_or(0.0)
}

/// The same answer again is not read target by target, yet it is a good refresh like any: its
/// time is recorded and its dropped targets are counted again. A reload that may change what
/// the targets resolve to (here: it adds the check one of them names) has the next answer read
/// whole, so the target that was invalid joins without any change of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_answer_counts_as_a_refresh_and_is_read_again_after_a_reload() {
    let endpoint = Endpoint::default();
    endpoint.set(Answer::Targets(
        serde_json::json!([
            {"targets": ["127.0.0.1:9"], "labels": {"agent": "w1"}},
            {"targets": ["127.0.0.1:9"], "labels": {"agent": "w2", "__check__": "strict"}},
            {"targets": ["127.0.0.1:9"], "labels": {}},
        ])
        .to_string(),
    ));
    let addr = endpoint.clone().serve().await;
    let sources = format!(
        "discovery:\n  - http_sd: {{url: \"http://{addr}/sd\", refresh_interval: 100ms}}\n    type: worker\n"
    );
    let run = Running::start(&sources, &[]).await;
    run.wait_for_fleet(&["w1"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").unwrap();
    let last =
        "agent_exporter_discovery_last_refresh_success_timestamp_seconds{source=\"http_sd/0\"}";
    let nameless = "agent_exporter_discovery_dropped_targets_total{source=\"http_sd/0\",reason=\"missing_name\"}";
    let invalid =
        "agent_exporter_discovery_dropped_targets_total{source=\"http_sd/0\",reason=\"invalid\"}";
    let (first, dropped) = (counter(&run, last), counter(&run, nameless));
    assert!(dropped >= 1.0 && counter(&run, invalid) >= 1.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        counter(&run, last) > first,
        "unchanged refreshes are recorded"
    );
    assert!(
        counter(&run, nameless) >= dropped + 3.0,
        "each unchanged refresh counts its dropped targets again"
    );
    assert!(std::sync::Arc::ptr_eq(
        &w1,
        &run.exporter.monitor.agent("w1").unwrap()
    ));

    std::fs::write(
        run.path("config.yaml"),
        format!(
            "checks: {{strict: {{failure_threshold: 3}}}}\n{sources}    allowed_checks: [strict]\n"
        ),
    )
    .unwrap();
    run.exporter.reloader.reload().expect("reload");
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    assert!(std::sync::Arc::ptr_eq(
        &w1,
        &run.exporter.monitor.agent("w1").unwrap()
    ));
}

/// The `http:` keys of an HTTP SD source each change its request: `method`, `headers` and
/// the credentials go out with it, redirects are followed unless `follow_redirects: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured() {
    let endpoint = Endpoint::default();
    endpoint.set(Answer::Moved {
        from: "/old".into(),
        to: "/sd".into(),
        body: groups(&[("w1", "127.0.0.1:9")]),
    });
    let addr = endpoint.clone().serve().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
    let source = |extra: &str| {
        format!(
            "discovery:\n  - http_sd:\n      url: \"http://{addr}/old\"\n      http: {{method: POST, headers: {{X-Fleet: prod}}, basic_auth: {{username: sd, password_file: pw}}{extra}}}\n    type: worker\n"
        )
    };
    let config = config::parse(&source(""), "fleet.yaml", dir.path()).unwrap();
    let checked = check_sources(&config).await;
    let found = checked[0].found.as_ref().expect("the redirect is followed");
    assert_eq!(found.agents.len(), 1);
    let seen = endpoint.requests.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("POST".into(), "/old".into(), "prod".into()),
            // 302 turns POST into GET, as for an agent's probe; same origin: headers stay.
            ("GET".into(), "/sd".into(), "prod".into()),
        ]
    );
    assert!(endpoint
        .authorization
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.starts_with("Basic ")));

    let config = config::parse(
        &source(", follow_redirects: false"),
        "fleet.yaml",
        dir.path(),
    )
    .unwrap();
    let checked = check_sources(&config).await;
    let error = checked[0]
        .found
        .as_ref()
        .err()
        .expect("a redirect not followed fails");
    assert!(error.contains("302"), "{error}");
}

/// The `tls:` keys of an HTTP SD source: `ca_file` and `server_name` make a self-signed
/// endpoint trusted, `insecure_skip_verify` skips the check; without them TLS fails. (The
/// mock endpoint answers without a JSON content type: getting that far proves the handshake.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_tls_keys_decide_whom_the_source_trusts() {
    let identity = TlsIdentity::self_signed(&["sd.internal"]);
    let endpoint = MockAgent::start_tls(Behaviour::ok("[]"), &identity).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &identity.cert_pem).unwrap();
    let error = |tls: &str| {
        let yaml = format!(
            "discovery:\n  - http_sd: {{url: \"{}\", http: {{tls: {tls}}}}}\n",
            endpoint.url("/sd")
        );
        let config = config::parse(&yaml, "fleet.yaml", dir.path()).unwrap();
        async move {
            check_sources(&config).await[0]
                .found
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_default()
        }
    };
    let handshake_passed = |e: &str| e.contains("content type");
    assert!(!handshake_passed(&error("{}").await));
    assert!(
        !handshake_passed(&error("{ca_file: ca.pem}").await),
        "wrong name"
    );
    assert!(handshake_passed(
        &error("{ca_file: ca.pem, server_name: sd.internal}").await
    ));
    assert!(handshake_passed(
        &error("{insecure_skip_verify: true}").await
    ));
}
