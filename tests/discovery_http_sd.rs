//! http_sd against an in-test hyper server that answers well, fails, stalls, answers too much
//! or answers nonsense: the source keeps its last good targets through every failure, counts
//! it, and follows the next good answer.

mod harness;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harness::discovery::{groups, Running};
use harness::metric;
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
}

#[derive(Clone, Default)]
struct Endpoint {
    answer: Arc<Mutex<Option<Answer>>>,
    authorization: Arc<Mutex<Vec<String>>>,
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
      url: "http://{addr}/sd"
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
        run.origin("w1").contains(&format!("url=http://{addr}/sd")),
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
