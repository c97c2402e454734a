//! The live view: JSON API, on-demand probes, the event stream, reload and shutdown, against an
//! in-process exporter serving on loopback and mock agents.

mod harness;

use std::time::{Duration, Instant};

use harness::{agent_yaml, fetch, metric, Behaviour, EventStream, MockAgent, RawAgent, Served};
use serde_json::Value;

/// One request on a fresh connection; status and body.
async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let answer = fetch(addr, method, path, &[]).await.expect("an answer");
    (answer.status, answer.text())
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let answer = fetch(addr, "GET", path, &[]).await.expect("an answer");
    (answer.status, answer.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lists_every_agent_with_status_last_probe_and_window() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let bad = MockAgent::start(Behaviour::Status(500)).await;
    let yaml = format!(
        "defaults: {{interval: 100ms, timeout: 80ms}}\nagents:\n{}{}",
        agent_yaml(
            "good",
            "worker",
            ok.url("/health").as_str(),
            "    labels: {team: core}\n"
        ),
        agent_yaml(
            "bad",
            "orchestrator",
            &format!("http://probe:hunter2@{}/health", bad.addr),
            ""
        )
    );
    let served = Served::start(&yaml).await;
    served.settle(&["good", "bad"]).await;
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
        agent_yaml(
            "a b",
            "worker",
            ok.url("/").as_str(),
            "    interval: 100ms\n    timeout: 80ms\n"
        )
    );
    let served = Served::start(&yaml).await;
    served.settle(&["a b"]).await;
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
        agent_yaml(
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
        agent_yaml("flaky", "worker", flaky.url("/").as_str(), ""),
        agent_yaml("other", "planner", other.url("/").as_str(), "")
    );
    let served = Served::start(&yaml).await;
    served.settle(&["flaky", "other"]).await;
    let mut sse = EventStream::connect(served.addr, "/api/v1/events").await;
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
        agent_yaml("a", "worker", ok.url("/").as_str(), ""),
        agent_yaml("b", "worker", ok.url("/").as_str(), ""),
        agent_yaml("c", "planner", ok.url("/").as_str(), "")
    );
    let served = Served::start(&yaml).await;
    let mut by_agent =
        EventStream::connect(served.addr, "/api/v1/events?agent=a&agent=c&probes=true").await;
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

    let mut by_type = EventStream::connect(served.addr, "/api/v1/events?agent_type=planner").await;
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

/// A fleet of `agents` TCP agents every `interval_ms`, all on one port that accepts (a connect
/// completes in the kernel, so a busy test runtime cannot slow the probes down). Names are
/// padded with zeros to `name_len`: long names make every event large.
fn busy_fleet(port: &RawAgent, agents: usize, interval_ms: u64, name_len: usize) -> String {
    let mut yaml = format!(
        "defaults: {{interval: {interval_ms}ms, timeout: {}ms}}\nagents:\n",
        interval_ms * 4 / 5
    );
    for i in 0..agents {
        yaml.push_str(&agent_yaml(
            &format!("agent-{i:0name_len$}"),
            "worker",
            &format!("tcp://{}", port.addr),
            "",
        ));
    }
    yaml
}

const PROBE_STREAM: &[u8] = b"GET /api/v1/events?probes=true HTTP/1.1\r\nHost: x\r\n\r\n";

fn subscribers(served: &Served) -> Option<f64> {
    metric(&served.scrape(), "agent_exporter_event_subscribers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_that_never_read_do_not_delay_probes_or_a_reading_client() {
    // The kernel buffers a few MB for each client before the server's writes block; reaching
    // that takes the 30 s of the test below. Here the 20 clients hold their streams unread
    // while a 21st reads: it must get the events live, and the probes must start on time.
    let port = RawAgent::start(|_connection| async {}).await;
    let served = Served::start(&busy_fleet(&port, 10, 100, 0)).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(harness::http::never_reading(served.addr, PROBE_STREAM).await);
    }
    let mut reader = EventStream::connect(served.addr, "/api/v1/events?probes=true").await;
    let mut probe_events = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match reader.next(left).await {
            Some(event) if event.event == "probe" => probe_events += 1,
            Some(_) => {}
            None => break,
        }
    }
    let text = served.scrape();
    assert_eq!(
        metric(&text, "agent_exporter_event_subscribers"),
        Some(21.0)
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
    // 10 agents, 10 probes a second each: the reading client gets them as they happen.
    assert!(
        probe_events >= 250,
        "the reading client got {probe_events} probe events in 3 s"
    );
    assert!(served.shutdown().await < Duration::from_secs(5));
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_client_that_never_reads_stops_being_fed_after_30_seconds() {
    let port = RawAgent::start(|_connection| async {}).await;
    let served = Served::start(&busy_fleet(&port, 20, 50, 8000)).await;
    let _stalled = harness::http::never_reading(served.addr, PROBE_STREAM).await;
    assert!(
        harness::wait_until(Duration::from_secs(2), || subscribers(&served) == Some(1.0)).await,
        "the client never subscribed"
    );
    // Its queue is full within a second; 30 s later the server stops feeding it.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(subscribers(&served), Some(1.0), "dropped before 30 s");
    assert!(
        harness::wait_until(Duration::from_secs(25), || subscribers(&served)
            == Some(0.0))
        .await,
        "a client that read nothing for 45 s is still subscribed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_100_open_streams_completes_within_5_seconds() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let yaml = format!(
        "agents:\n{}",
        agent_yaml(
            "a",
            "worker",
            ok.url("/").as_str(),
            "    interval: 100ms\n    timeout: 80ms\n"
        )
    );
    let served = Served::start(&yaml).await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        let mut sse = EventStream::connect(served.addr, "/api/v1/events").await;
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
    let keep = agent_yaml("keep", "worker", ok.url("/").as_str(), "");
    let gone = agent_yaml("gone", "worker", ok.url("/").as_str(), "");
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

    let mut sse = EventStream::connect(served.addr, "/api/v1/events").await;
    sse.next(Duration::from_secs(2)).await.expect("snapshot");

    let added = agent_yaml("new", "planner", ok.url("/").as_str(), "");
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
        agent_yaml(
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
            agent_yaml(
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
        agent_yaml("a", "worker", ok.url("/").as_str(), "")
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
