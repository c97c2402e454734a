//! The live view: JSON API, on-demand probes, the event stream, reload and shutdown, against an
//! in-process exporter serving on loopback and mock agents.

mod common;
mod harness;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::Format;
use agent_health_exporter::monitor::Monitor;
use agent_health_exporter::reload::Reloader;
use agent_health_exporter::scheduler::Scheduler;
use common::{Behaviour, MockAgent};
use harness::metric;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Served {
    addr: std::net::SocketAddr,
    monitor: Arc<Monitor>,
    scheduler: Arc<Scheduler>,
    reloader: Arc<Reloader>,
    metrics: Arc<agent_health_exporter::metrics::Metrics>,
    config: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(yaml: &str) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let options = Options {
            config_file: config.clone(),
            listen_address: "127.0.0.1:0".into(),
            telemetry_path: "/metrics".into(),
            history_limit: 100,
            endpoints: agent_health_exporter::server::Endpoints {
                lifecycle: true,
                probe_api: true,
            },
            ..Options::default()
        };
        let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let monitor = exporter.monitor.clone();
        let scheduler = exporter.scheduler.clone();
        let reloader = exporter.reloader.clone();
        let metrics = exporter.state.metrics.clone();
        let task = tokio::spawn(exporter.serve(listener, async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            monitor,
            scheduler,
            reloader,
            metrics,
            config,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn scrape(&self) -> String {
        String::from_utf8(self.metrics.encode(Format::Text).expect("encode")).expect("utf8")
    }

    async fn shutdown(mut self) -> Duration {
        let start = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server did not stop within 10 s")
            .expect("server task");
        start.elapsed()
    }
}

/// One request on a fresh connection; status and body.
async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let answer = harness::parse_answer(&raw).expect("parse");
    (answer.status, answer.text())
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = call(addr, "GET", path).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

/// A Server-Sent-Events client, over HTTP/1.0 so the stream is not chunked.
struct Sse {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct SseEvent {
    id: Option<u64>,
    event: String,
    data: Value,
}

impl Sse {
    async fn connect(addr: std::net::SocketAddr, path: &str) -> Sse {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        assert!(line.contains(" 200 "), "{line}");
        let mut content_type = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("header");
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type:") {
                content_type = line.clone();
            }
        }
        assert!(content_type.contains("text/event-stream"), "{content_type}");
        Sse { reader }
    }

    /// The next event (comments and `retry:` skipped), or None after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        tokio::time::timeout(limit, async {
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            let mut line = String::new();
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if !event.is_empty() {
                        let data = serde_json::from_str(&data).expect("event data is JSON");
                        return Some(SseEvent { id, event, data });
                    }
                    continue;
                }
                if let Some(v) = l.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = l.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = l.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// True when the server ends the stream within `limit` (whatever events come first).
    async fn ends(&mut self, limit: Duration) -> bool {
        let mut sink = Vec::new();
        matches!(
            tokio::time::timeout(limit, self.reader.read_to_end(&mut sink)).await,
            Ok(Ok(_))
        )
    }

    /// Skips events until one named `name` arrives.
    async fn until(&mut self, name: &str, limit: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let event = self.next(left).await?;
            if event.event == name {
                return Some(event);
            }
        }
        None
    }
}

fn agent(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    type: {kind}\n    url: {url}\n{extra}")
}

async fn settle(monitor: &Monitor, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if names
            .iter()
            .all(|n| monitor.agent(n).is_some_and(|a| a.state().last.is_some()))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("agents {names:?} were not probed within 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lists_every_agent_with_status_last_probe_and_window() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let bad = MockAgent::start(Behaviour::Status(500)).await;
    let yaml = format!(
        "defaults: {{interval: 100ms, timeout: 80ms}}\nagents:\n{}{}",
        agent(
            "good",
            "worker",
            ok.url("/health").as_str(),
            "    labels: {team: core}\n"
        ),
        agent(
            "bad",
            "orchestrator",
            &format!("http://probe:hunter2@{}/health", bad.addr),
            ""
        )
    );
    let served = Served::start(&yaml).await;
    settle(&served.monitor, &["good", "bad"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, body) = get_json(served.addr, "/api/v1/agents").await;
    assert_eq!(status, 200);
    let agents = body["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0]["name"], "bad", "sorted by name");
    let good = &agents[1];
    assert_eq!(good["type"], "worker");
    assert_eq!(good["status"], "healthy");
    assert_eq!(good["labels"]["team"], "core");
    assert_eq!(good["interval_seconds"], 0.1);
    assert_eq!(good["timeout_seconds"], 0.08);
    assert_eq!(good["last_probe"]["result"], "success");
    assert_eq!(good["last_probe"]["http_status"], 200);
    assert!(good["last_probe"]["phases"]["connect"].is_f64());
    assert!(good["window"]["probes"].as_u64().expect("probes") >= 3);
    assert_eq!(good["window"]["success_ratio"], 1.0);
    assert_eq!(good["window"]["error_ratio"], 0.0);
    assert!(
        good["window"]["latency_seconds"]["p99"]
            .as_f64()
            .expect("p99")
            > 0.0
    );
    assert!(
        good.get("history").is_none(),
        "history only in the single-agent answer"
    );

    let bad = &agents[0];
    assert_eq!(bad["status"], "unhealthy");
    assert_eq!(bad["last_probe"]["reason"], "http_status");
    assert!(bad["last_probe"]["error"]
        .as_str()
        .expect("error")
        .contains("500"));
    assert_eq!(bad["window"]["error_ratio"], 1.0);
    assert!(bad["consecutive_failures"].as_u64().expect("n") >= 3);
    let target = bad["target"].as_str().expect("target");
    assert!(
        !target.contains("hunter2") && !target.contains("probe@"),
        "{target}"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_agent_answer_has_history_newest_first_and_unknown_name_is_404() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let yaml = format!(
        "agents:\n{}",
        agent(
            "a b",
            "worker",
            ok.url("/").as_str(),
            "    interval: 100ms\n    timeout: 80ms\n"
        )
    );
    let served = Served::start(&yaml).await;
    settle(&served.monitor, &["a b"]).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = get_json(served.addr, "/api/v1/agents/a%20b").await;
    assert_eq!(status, 200);
    let history = body["history"].as_array().expect("history");
    assert!(history.len() >= 3);
    let times: Vec<&str> = history
        .iter()
        .map(|h| h["ended_at"].as_str().expect("t"))
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    assert_eq!(history[0]["result"], "success");

    let (status, body) = get_json(served.addr, "/api/v1/agents/nobody").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().expect("error").contains("nobody"));
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_probe_answers_the_result_records_it_and_refuses_overlap() {
    let slow = MockAgent::start(Behaviour::Slow(Duration::from_millis(300))).await;
    // A long interval: only the on-demand probes run during the test.
    let yaml = format!(
        "agents:\n{}",
        agent(
            "slow",
            "worker",
            slow.url("/").as_str(),
            "    interval: 1h\n    timeout: 2s\n"
        )
    );
    let served = Served::start(&yaml).await;
    let before = served
        .monitor
        .agent("slow")
        .expect("agent")
        .state()
        .probes_success;
    let addr = served.addr;
    let first = tokio::spawn(async move { call(addr, "POST", "/api/v1/agents/slow/probe").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second_status, second_body) = call(addr, "POST", "/api/v1/agents/slow/probe").await;
    assert_eq!(second_status, 429, "{second_body}");
    let (status, body) = first.await.expect("first call");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["agent"], "slow");
    assert_eq!(answer["status"], "healthy");
    assert_eq!(answer["probe"]["result"], "success");
    assert!(answer["probe"]["duration_seconds"].as_f64().expect("d") >= 0.3);
    let after = served
        .monitor
        .agent("slow")
        .expect("agent")
        .state()
        .probes_success;
    assert_eq!(after, before + 1, "the on-demand probe is recorded");
    assert_eq!(
        call(addr, "POST", "/api/v1/agents/nobody/probe").await.0,
        404
    );
    assert_eq!(call(addr, "GET", "/api/v1/agents/slow/probe").await.0, 405);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_sends_snapshot_then_status_of_an_agent_that_starts_failing() {
    let flaky = MockAgent::start(Behaviour::ok("ok")).await;
    let other = MockAgent::start(Behaviour::ok("ok")).await;
    let (interval, timeout) = (Duration::from_millis(500), Duration::from_millis(200));
    let yaml = format!(
        "defaults: {{interval: 500ms, timeout: 200ms}}\nagents:\n{}{}",
        agent("flaky", "worker", flaky.url("/").as_str(), ""),
        agent("other", "planner", other.url("/").as_str(), "")
    );
    let served = Served::start(&yaml).await;
    settle(&served.monitor, &["flaky", "other"]).await;
    let mut sse = Sse::connect(served.addr, "/api/v1/events").await;
    let snapshot = sse.next(Duration::from_secs(2)).await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["agents"].as_array().expect("agents").len(), 2);
    let first_id = snapshot.id.expect("id");

    // The agent stops answering: connections are refused from now on.
    let failed_at = Instant::now();
    drop(flaky);
    let status = sse
        .until("status", interval + timeout + Duration::from_secs(1))
        .await
        .expect("status event within interval + timeout + 1 s");
    println!("status event {:?} after the failure", failed_at.elapsed());
    assert_eq!(status.data["agent"], "flaky");
    assert_eq!(status.data["from"], "healthy");
    assert_eq!(status.data["to"], "unhealthy");
    assert_eq!(status.data["reason"], "connect");
    assert!(status.id.expect("id") > first_id, "ids increase");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_filters_by_agent_and_type_and_sends_probes_when_asked() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let yaml = format!(
        "defaults: {{interval: 100ms, timeout: 80ms}}\nagents:\n{}{}{}",
        agent("a", "worker", ok.url("/").as_str(), ""),
        agent("b", "worker", ok.url("/").as_str(), ""),
        agent("c", "planner", ok.url("/").as_str(), "")
    );
    let served = Served::start(&yaml).await;
    let mut by_agent =
        Sse::connect(served.addr, "/api/v1/events?agent=a&agent=c&probes=true").await;
    let snapshot = by_agent
        .next(Duration::from_secs(2))
        .await
        .expect("snapshot");
    let names: Vec<&str> = snapshot.data["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["a", "c"]);
    let mut last_id = snapshot.id.expect("id");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let event = by_agent
            .until("probe", Duration::from_secs(2))
            .await
            .expect("probe event");
        let id = event.id.expect("id");
        assert!(id > last_id);
        last_id = id;
        let name = event.data["agent"].as_str().expect("agent").to_owned();
        assert_ne!(name, "b");
        assert_eq!(event.data["probe"]["result"], "success");
        seen.insert(name);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    let mut by_type = Sse::connect(served.addr, "/api/v1/events?agent_type=planner").await;
    let snapshot = by_type
        .next(Duration::from_secs(2))
        .await
        .expect("snapshot");
    assert_eq!(snapshot.data["agents"].as_array().expect("agents").len(), 1);
    // Without ?probes=true no probe events arrive.
    assert!(by_type
        .until("probe", Duration::from_millis(500))
        .await
        .is_none());
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_that_never_read_do_not_delay_probes() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let mut yaml = String::from("defaults: {interval: 100ms, timeout: 80ms}\nagents:\n");
    for i in 0..10 {
        yaml.push_str(&agent(
            &format!("agent-{i}"),
            "worker",
            ok.url("/").as_str(),
            "",
        ));
    }
    let served = Served::start(&yaml).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(served.addr).await.expect("connect");
        stream
            .write_all(b"GET /api/v1/events?probes=true HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        idle.push(stream); // never read
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = served.scrape();
    assert_eq!(
        metric(&text, "agent_exporter_event_subscribers"),
        Some(20.0)
    );
    let total = metric(&text, "agent_exporter_probe_start_delay_seconds_count").expect("count");
    let on_time = metric(
        &text,
        "agent_exporter_probe_start_delay_seconds_bucket{le=\"0.1\"}",
    )
    .expect("le");
    assert!(total >= 10.0 * 25.0, "only {total} probes in 3 s");
    assert_eq!(
        on_time, total,
        "probes started late while clients did not read"
    );
    assert!(served.shutdown().await < Duration::from_secs(5));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_100_open_streams_completes_within_5_seconds() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let yaml = format!(
        "agents:\n{}",
        agent(
            "a",
            "worker",
            ok.url("/").as_str(),
            "    interval: 100ms\n    timeout: 80ms\n"
        )
    );
    let served = Served::start(&yaml).await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        let mut sse = Sse::connect(served.addr, "/api/v1/events").await;
        sse.next(Duration::from_secs(2)).await.expect("snapshot");
        streams.push(sse);
    }
    let took = served.shutdown().await;
    println!("shutdown with 100 open streams took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Every stream was ended by the server.
    for sse in &mut streams {
        assert!(
            sse.ends(Duration::from_secs(1)).await,
            "a stream was left open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_counters_removes_deleted_agents_and_adds_new_ones() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let keep = agent("keep", "worker", ok.url("/").as_str(), "");
    let gone = agent("gone", "worker", ok.url("/").as_str(), "");
    let head = "defaults: {interval: 100ms, timeout: 80ms}\nagents:\n";
    let served = Served::start(&format!("{head}{keep}{gone}")).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let before = served
        .monitor
        .agent("keep")
        .expect("agent")
        .state()
        .probes_success;
    assert!(before >= 2);

    let mut sse = Sse::connect(served.addr, "/api/v1/events").await;
    sse.next(Duration::from_secs(2)).await.expect("snapshot");

    let added = agent("new", "planner", ok.url("/").as_str(), "");
    std::fs::write(&served.config, format!("{head}{keep}{added}")).expect("write");
    let (status, body) = call(served.addr, "POST", "/-/reload").await;
    // Live clients learn of the new fleet at once.
    let resync = sse
        .until("resync", Duration::from_secs(2))
        .await
        .expect("resync after reload");
    let names: Vec<&str> = resync.data["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["keep", "new"]);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 added, 0 changed, 1 removed, 1 unchanged"),
        "{body}"
    );

    let text = served.scrape();
    assert!(
        !text.contains("agent=\"gone\""),
        "removed agent's series remain"
    );
    assert!(text.contains("agent=\"new\""));
    let after = metric(
        &text,
        "agent_probes_total{agent=\"keep\",agent_type=\"worker\",result=\"success\"}",
    )
    .expect("counter");
    assert!(
        after >= before as f64,
        "counter went back from {before} to {after}"
    );
    assert_eq!(metric(&text, "agent_exporter_agents"), Some(2.0));

    // Unchanged content is a no-op.
    let (status, body) = call(served.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("0 added, 0 changed, 0 removed, 2 unchanged"),
        "{body}"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_changed_labels_replaces_the_agents_series() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let head = "defaults: {interval: 100ms, timeout: 80ms}\nagents:\n";
    let served = Served::start(&format!(
        "{head}{}",
        agent(
            "a",
            "worker",
            ok.url("/").as_str(),
            "    labels: {team: x}\n"
        )
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        &served.config,
        format!(
            "{head}{}",
            agent(
                "a",
                "worker",
                ok.url("/").as_str(),
                "    labels: {team: y}\n"
            )
        ),
    )
    .expect("write");
    let summary = served.reloader.reload().expect("reload");
    assert_eq!(summary.changed, vec!["a".to_owned()]);
    let text = served.scrape();
    assert!(!text.contains("team=\"x\""));
    assert!(text.contains("team=\"y\""));
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_on_reload_keeps_the_old_one_running_and_says_why() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let yaml = format!(
        "defaults: {{interval: 100ms, timeout: 80ms}}\nagents:\n{}",
        agent("a", "worker", ok.url("/").as_str(), "")
    );
    let served = Served::start(&yaml).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    std::fs::write(
        &served.config,
        "agents:\n  - name: a\n    type: worker\n    url: ftp://x/\n",
    )
    .expect("write");
    let (status, body) = call(served.addr, "POST", "/-/reload").await;
    assert_eq!(status, 500);
    assert!(body.contains("config.yaml:4:10"), "{body}");
    assert!(body.contains("unsupported URL scheme"), "{body}");
    let text = served.scrape();
    assert_eq!(
        metric(&text, "agent_exporter_config_last_reload_successful"),
        Some(0.0)
    );
    let probes_then = served
        .monitor
        .agent("a")
        .expect("still there")
        .state()
        .probes_success;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes_now = served
        .monitor
        .agent("a")
        .expect("still there")
        .state()
        .probes_success;
    assert!(probes_now > probes_then, "the old config stopped probing");

    // A deleted file is a failed reload too, and a good file recovers.
    std::fs::remove_file(&served.config).expect("remove");
    assert!(served.reloader.reload().is_err());
    std::fs::write(&served.config, &yaml).expect("write");
    assert!(served.reloader.reload().is_ok());
    let text = served.scrape();
    assert_eq!(
        metric(&text, "agent_exporter_config_last_reload_successful"),
        Some(1.0)
    );
    let _ = &served.scheduler;
    served.shutdown().await;
}
