//! The OpenAI-compatible canary against chat-completion servers on loopback, written with hyper
//! to the wire format the API documents (JSON answers, server-sent chunks ending in `[DONE]`),
//! including the ways real servers break: a stream that stalls after its headers, one that ends
//! without a `finish_reason`, an error chunk, degenerate output, an oversized reply. The real
//! implementations (LiteLLM's proxy, A2A and MCP SDK servers) are exercised by the real-world
//! tier; these tests need nothing installed.

mod harness;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_health_exporter::config::{self, AgentSpec};
use agent_health_exporter::monitor::Status;
use agent_health_exporter::probe::{run_canary, CanaryOutcome, CanaryReason, CanaryResult};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use harness::{EventStream, Served};

/// How a server answers a chat completion.
#[derive(Clone)]
enum Answer {
    Json(u16, String),
    /// Server-sent events, each after its delay; then the body ends, unless `stall`.
    Events {
        events: Vec<(u64, String)>,
        stall: bool,
    },
}

/// A chat-completion server that answers every POST with `answer`, `GET /health` with 200, and
/// keeps each request (headers and JSON body) for the test to read.
struct ChatServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(http::HeaderMap, Value)>>>,
}

impl ChatServer {
    async fn start(answer: Answer) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (answer, seen) = (answer.clone(), seen.clone());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (answer, seen) = (answer.clone(), seen.clone());
                    async move { Ok::<_, Infallible>(respond(request, answer, seen).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        ChatServer { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn respond(
    request: Request<Incoming>,
    answer: Answer,
    seen: Arc<Mutex<Vec<(http::HeaderMap, Value)>>>,
) -> Response<Body> {
    if request.method() == http::Method::GET {
        return Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
    }
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((headers, body));
    match answer {
        Answer::Json(status, text) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(text)).boxed())
            .unwrap(),
        Answer::Events { events, stall } => {
            let frames = stream::iter(events).then(|(delay, data)| async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: {data}\n\n"))))
            });
            let body: Body = if stall {
                BodyExt::boxed(StreamBody::new(frames.chain(stream::pending())))
            } else {
                BodyExt::boxed(StreamBody::new(frames))
            };
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    }
}

fn chunk(content: &str, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "small",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
    .to_string()
}

fn completion(content: &str) -> String {
    json!({"id": "c", "object": "chat.completion", "model": "small",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}})
    .to_string()
}

/// An agent at `url` whose canary is `openai` (its `{...}` inside), with a bearer token read
/// from a file and a 1 KiB body limit.
fn spec(url: &str, openai: &str, dir: &Path) -> AgentSpec {
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    let yaml = format!(
        "agents:\n  - name: llm\n    type: model\n    url: {url}\n    \
         http: {{bearer_token_file: token, max_body_bytes: 1KiB}}\n    \
         canary: {{timeout: 1s, openai: {{model: small, prompt: \"Say pong.\", {openai}}}}}\n"
    );
    let config = config::parse(&yaml, "t.yaml", dir).unwrap_or_else(|e| panic!("{e}"));
    (*config.agents[0].spec).clone()
}

async fn run(spec: &AgentSpec) -> CanaryResult {
    run_canary(spec, spec.canary.as_ref().expect("a canary")).await
}

fn reason(result: &CanaryResult) -> CanaryReason {
    match &result.outcome {
        CanaryOutcome::Failed { reason, .. } => *reason,
        CanaryOutcome::Success => panic!("succeeded: {result:?}"),
    }
}

#[tokio::test]
async fn streamed_completion_measures_time_to_first_token_and_counts_usage() {
    let server = ChatServer::start(Answer::Events {
        events: vec![
            (0, json!({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]}).to_string()),
            (150, chunk("po", None)),
            (50, chunk("ng", Some("stop"))),
            (0, json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}).to_string()),
            (0, "[DONE]".to_owned()),
        ],
        stall: false,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        &server.url("/health"),
        "stream: true, max_tokens: 8, expect: {regex: \"(?i)pong\"}",
        dir.path(),
    );
    let result = run(&spec).await;
    assert_eq!(result.outcome, CanaryOutcome::Success, "{result:?}");
    assert_eq!(result.reply, "pong");
    let first = result.first_token.expect("time to first token");
    assert!(first >= Duration::from_millis(150), "{first:?}");
    assert!(
        result.duration >= first + Duration::from_millis(50),
        "{result:?}"
    );
    let usage = result.usage.expect("usage");
    assert_eq!((usage.prompt, usage.completion), (9, 2));

    let requests = server.requests.lock().unwrap();
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["model"], "small");
    assert_eq!(body["max_tokens"], 8);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Say pong."}])
    );
}

#[tokio::test]
async fn completion_is_posted_to_the_path_on_the_agents_origin_and_judged() {
    let server = ChatServer::start(Answer::Json(200, completion("The answer is 4."))).await;
    let dir = tempfile::tempdir().unwrap();
    let ok = spec(
        &server.url("/health"),
        "expect: {contains: \"4\"}",
        dir.path(),
    );
    let result = run(&ok).await;
    assert_eq!(result.outcome, CanaryOutcome::Success, "{result:?}");
    assert_eq!(result.first_token, None, "only streams have a first token");
    assert_eq!(result.usage.map(|u| u.completion), Some(3));
    assert!(server.requests.lock().unwrap()[0]
        .1
        .get("stream_options")
        .is_none());

    let wrong = spec(
        &server.url("/health"),
        "expect: {contains: \"5\"}",
        dir.path(),
    );
    let result = run(&wrong).await;
    assert_eq!(reason(&result), CanaryReason::ContentMismatch);
    assert_eq!(
        result.reply, "The answer is 4.",
        "the reply is kept for the API"
    );
}

#[tokio::test]
async fn degenerate_and_empty_output_is_a_content_mismatch() {
    for content in ["////", "", "  \n "] {
        let server = ChatServer::start(Answer::Json(200, completion(content))).await;
        let dir = tempfile::tempdir().unwrap();
        let result = run(&spec(&server.url("/"), "max_tokens: 4", dir.path())).await;
        assert_eq!(
            reason(&result),
            CanaryReason::ContentMismatch,
            "{content:?}"
        );
    }
}

#[tokio::test]
async fn a_stream_that_breaks_off_or_carries_an_error_is_a_failed_task() {
    let cut = vec![(0, chunk("po", None))];
    let with_error = vec![
        (0, chunk("po", None)),
        (
            0,
            json!({"error": {"message": "engine died", "type": "server_error"}}).to_string(),
        ),
    ];
    for events in [cut, with_error] {
        let server = ChatServer::start(Answer::Events {
            events,
            stall: false,
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let result = run(&spec(&server.url("/"), "stream: true", dir.path())).await;
        assert_eq!(reason(&result), CanaryReason::TaskFailed, "{result:?}");
    }
}

#[tokio::test]
async fn a_stream_that_stalls_after_its_headers_times_out_at_the_canary_timeout() {
    let server = ChatServer::start(Answer::Events {
        events: vec![],
        stall: true,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let result = run(&spec(&server.url("/"), "stream: true", dir.path())).await;
    assert_eq!(reason(&result), CanaryReason::Timeout);
    assert!(
        result.duration >= Duration::from_secs(1) && result.duration < Duration::from_secs(3),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_stream_that_finished_but_neither_ends_nor_sends_done_is_complete_not_a_timeout() {
    let server = ChatServer::start(Answer::Events {
        events: vec![(0, chunk("pong", Some("stop")))],
        stall: true,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let result = run(&spec(&server.url("/"), "stream: true", dir.path())).await;
    assert!(
        matches!(result.outcome, CanaryOutcome::Success),
        "{result:?}"
    );
    assert_eq!(result.reply, "pong");
    assert!(result.duration < Duration::from_secs(1), "{result:?}");
}

#[tokio::test]
async fn statuses_refusals_and_oversized_replies_have_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let unavailable = ChatServer::start(Answer::Json(503, "{}".into())).await;
    let result = run(&spec(&unavailable.url("/"), "max_tokens: 4", dir.path())).await;
    assert_eq!(reason(&result), CanaryReason::HttpStatus);
    let error = ChatServer::start(Answer::Json(
        200,
        r#"{"error":{"message":"no such model"}}"#.into(),
    ))
    .await;
    let result = run(&spec(&error.url("/"), "max_tokens: 4", dir.path())).await;
    assert_eq!(reason(&result), CanaryReason::TaskFailed);
    let huge = ChatServer::start(Answer::Json(200, completion(&"x".repeat(4096)))).await;
    let result = run(&spec(&huge.url("/"), "max_tokens: 4", dir.path())).await;
    assert_eq!(
        reason(&result),
        CanaryReason::Protocol,
        "past max_body_bytes"
    );
    let refused = harness::refused_addr().await;
    let result = run(&spec(
        &format!("http://{refused}/"),
        "max_tokens: 4",
        dir.path(),
    ))
    .await;
    assert_eq!(reason(&result), CanaryReason::Connect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_degrades_the_agent_in_metrics_api_and_events() {
    let server = ChatServer::start(Answer::Json(200, completion("////"))).await;
    let yaml = format!(
        "agents:\n  - name: llm\n    type: model\n    url: {}\n    interval: 1s\n    \
         canary: {{interval: 1s, timeout: 800ms, openai: {{model: small, prompt: p}}}}\n  \
         - name: plain\n    type: model\n    url: {}\n    interval: 1s\n",
        server.url("/health"),
        server.url("/health"),
    );
    let served = Served::start(&yaml).await;
    let mut events = EventStream::connect(served.addr, "/api/v1/events?canaries=true").await;
    let event = events
        .until("canary", Duration::from_secs(5))
        .await
        .expect("a canary event within the first interval");
    assert_eq!(event.data["agent"], "llm");
    assert_eq!(event.data["kind"], "openai");
    assert_eq!(event.data["canary"]["reason"], "content_mismatch");
    assert_eq!(event.data["canary"]["reply"], "////");

    // The health probe answers 200, the canary fails: degraded, with the canary's reason.
    harness::wait_for(Duration::from_secs(5), || {
        (served.state("llm").status == Status::Degraded).then_some(())
    })
    .expect("degraded by the canary");
    let text = served.scrape();
    let series = |name: &str| harness::metric(&text, name);
    let labels = "agent=\"llm\",agent_type=\"model\"";
    assert!(
        series(&format!(
            "agent_canary_runs_total{{{labels},result=\"failure\"}}"
        ))
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        series(&format!(
            "agent_canary_runs_total{{{labels},result=\"success\"}}"
        )),
        Some(0.0)
    );
    for reason in CanaryReason::ALL {
        let value = series(&format!(
            "agent_canary_failures_total{{{labels},reason=\"{}\"}}",
            reason.as_str()
        ));
        assert!(value.is_some(), "{reason} pre-initialized:\n{text}");
    }
    assert_eq!(
        series(&format!(
            "agent_canary_tokens_total{{{labels},kind=\"completion\"}}"
        ))
        .map(|v| v >= 3.0),
        Some(true)
    );
    assert!(series(&format!("agent_canary_duration_seconds_count{{{labels}}}")).unwrap() >= 1.0);
    assert!(
        !text.contains("agent_canary_runs_total{agent=\"plain\""),
        "only agents with a canary have canary series"
    );
    assert!(
        !text.contains("agent_canary_first_token_seconds_count"),
        "not streaming"
    );

    let api = harness::fetch(served.addr, "GET", "/api/v1/agents/llm", &[])
        .await
        .unwrap()
        .json();
    assert_eq!(api["status"], "degraded");
    assert_eq!(api["canary"]["kind"], "openai");
    assert_eq!(api["canary"]["failing"], true);
    assert_eq!(api["canary"]["last"]["result"], "failure");
    assert_eq!(api["canary"]["last"]["reason"], "content_mismatch");
    let plain = harness::fetch(served.addr, "GET", "/api/v1/agents/plain", &[])
        .await
        .unwrap()
        .json();
    assert!(plain.get("canary").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_events_go_only_to_clients_that_ask_for_them() {
    let server = ChatServer::start(Answer::Json(200, completion("pong"))).await;
    let yaml = format!(
        "agents:\n  - name: llm\n    type: model\n    url: {}\n    \
         canary: {{interval: 1s, timeout: 800ms, openai: {{model: small, prompt: p}}}}\n",
        server.url("/health"),
    );
    let served = Served::start(&yaml).await;
    let mut plain = EventStream::connect(served.addr, "/api/v1/events?probes=true").await;
    let mut asked = EventStream::connect(served.addr, "/api/v1/events?canaries=true").await;
    let event = asked
        .until("canary", Duration::from_secs(5))
        .await
        .expect("a canary event");
    assert_eq!(event.data["canary"]["result"], "success");
    // A successful canary leaves the status to the probes (unknown until the first one).
    assert!(
        ["healthy", "unknown"].contains(&event.data["status"].as_str().unwrap_or_default()),
        "{:?}",
        event.data
    );
    assert!(
        plain
            .until("canary", Duration::from_millis(1500))
            .await
            .is_none(),
        "no canary event without ?canaries=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_keep_their_interval_and_a_reload_keeps_restarts_or_stops_them() {
    let server = ChatServer::start(Answer::Json(200, completion("pong"))).await;
    let agent = |prompt: &str| {
        format!(
            "agents:\n  - name: llm\n    type: model\n    url: {}\n    \
             canary: {{interval: 1s, timeout: 800ms, openai: {{model: small, prompt: {prompt}}}}}\n",
            server.url("/health")
        )
    };
    let served = Served::start(&agent("one")).await;
    let runs = || {
        served
            .state("llm")
            .canary
            .map_or(0, |c| c.runs_success + c.runs_failure)
    };
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let first = runs();
    // Slots 1 s apart from a phase in [0, 1 s): two to four in 3.3 s, never more.
    assert!((2..=4).contains(&first), "{first} canaries in 3.3 s");
    // One more may be under way: sent, not yet recorded.
    let sent = server.requests.lock().unwrap().len() as u64;
    assert!(
        sent == first || sent == first + 1,
        "{sent} sent, {first} recorded"
    );

    // Rewritten unchanged: state and schedule kept.
    std::fs::write(&served.config, agent("one")).unwrap();
    let summary = served.reloader.reload().expect("reload");
    assert_eq!(summary.unchanged, 1);
    assert!(runs() >= first, "counters kept");

    // A changed prompt is a changed agent: fresh state, the new prompt sent.
    std::fs::write(&served.config, agent("two")).unwrap();
    let summary = served.reloader.reload().expect("reload");
    assert_eq!(summary.changed, ["llm"]);
    assert!(runs() <= 1, "fresh state after the change");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let last = server.requests.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(last["messages"][0]["content"], "two");

    // Without its canary the agent sends no more tasks.
    let plain = format!(
        "agents:\n  - name: llm\n    type: model\n    url: {}\n",
        server.url("/health")
    );
    std::fs::write(&served.config, plain).unwrap();
    served.reloader.reload().expect("reload");
    let before = server.requests.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        server.requests.lock().unwrap().len(),
        before,
        "the canary task stopped"
    );
    assert!(served.state("llm").canary.is_none());
}
