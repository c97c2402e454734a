//! Heartbeat agents against the real server: reports over HTTP on loopback, deadlines enforced
//! by the exporter's own timer (measured on the event stream), tokens, limits and reloads.

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use agent_health_exporter::monitor::Status;
use agent_health_exporter::probe::FailureReason;
use harness::http::exchange;
use harness::{fetch, metric, wait_until, Answer, EventStream, Served};

const TOKEN: &str = "s3cret-worker-token";

/// A config of one heartbeat agent `worker` with the given `heartbeat:` keys (token_file added).
fn config(heartbeat: &str) -> String {
    format!(
        "agents:\n  - name: worker\n    type: batch\n    heartbeat: {{token_file: worker.token, {heartbeat}}}\n"
    )
}

/// Waits (up to 2 s past `within`'s start) for the agent to turn unhealthy, and requires that
/// to come `within` milliseconds after `since`, with `reason`.
async fn turns_unhealthy(
    served: &Served,
    since: Instant,
    within: std::ops::Range<u64>,
    reason: FailureReason,
) {
    let unhealthy = wait_until(Duration::from_millis(within.start + 2000), || {
        served.state("worker").status == Status::Unhealthy
    })
    .await;
    let after = since.elapsed();
    assert!(
        unhealthy,
        "not unhealthy {after:?} after it should be ({reason:?})"
    );
    let ms = after.as_millis() as u64;
    assert!(
        within.contains(&ms),
        "{reason:?} after {after:?}, not within {within:?} ms"
    );
    let state = served.state("worker");
    assert_eq!(state.last.expect("a result").outcome.reason(), Some(reason));
}

async fn start(heartbeat: &str) -> Served {
    Served::start_with(&config(heartbeat), |dir: &Path, _| {
        std::fs::write(dir.join("worker.token"), format!("{TOKEN}\n")).expect("token");
    })
    .await
}

/// One report: `method` on `path` with the bearer `token` and `body` (JSON or empty).
async fn report(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    exchange(stream, head.as_bytes()).await.expect("answer")
}

async fn beat(addr: SocketAddr, action: &str) -> Answer {
    let path = format!("/api/v1/agents/worker/heartbeat{action}");
    report(addr, "POST", &path, Some(TOKEN), "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_makes_the_agent_healthy_and_counts_as_a_successful_probe() {
    let served = start("period: 1m").await;
    assert_eq!(served.state("worker").status, Status::Unknown);
    let answer = beat(served.addr, "").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["status"], "healthy");
    // GET works the same, for environments without a client that can POST.
    let answer = report(
        served.addr,
        "GET",
        "/api/v1/agents/worker/heartbeat",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let state = served.state("worker");
    assert_eq!(state.status, Status::Healthy);
    assert_eq!(state.probes_success, 2);
    let text = served.scrape();
    let success = "agent_probes_total{agent=\"worker\",agent_type=\"batch\",result=\"success\"}";
    assert_eq!(metric(&text, success), Some(2.0), "{text}");
    let interval = "agent_probe_interval_seconds{agent=\"worker\",agent_type=\"batch\"}";
    assert_eq!(metric(&text, interval), Some(60.0), "{text}");
    // The default grace: 20 % of the period.
    let grace = "agent_probe_timeout_seconds{agent=\"worker\",agent_type=\"batch\"}";
    assert_eq!(metric(&text, grace), Some(12.0), "{text}");
    let deadline =
        "agent_heartbeat_deadline_timestamp_seconds{agent=\"worker\",agent_type=\"batch\"}";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let at = metric(&text, deadline).unwrap_or_else(|| panic!("no deadline gauge: {text}"));
    assert!(
        (now + 60.0..now + 73.0).contains(&at),
        "deadline {at}, now {now}"
    );
    let api = harness::get(served.addr, "/api/v1/agents/worker").expect("api");
    assert!(
        api.json()["heartbeat_deadline"].is_string(),
        "{}",
        api.text()
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_turns_unhealthy_missed_within_a_second_of_period_plus_grace() {
    let served = start("period: 1s, grace: 1s").await;
    let mut events = EventStream::connect(served.addr, "/api/v1/events").await;
    events.until("snapshot", Duration::from_secs(2)).await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    let last_beat = Instant::now();
    let healthy = events.until("status", Duration::from_secs(2)).await;
    assert_eq!(healthy.expect("status event").data["to"], "healthy");
    let event = events
        .until("status", Duration::from_secs(4))
        .await
        .expect("a status event for the missed heartbeat");
    let detected = last_beat.elapsed();
    assert_eq!(event.data["to"], "unhealthy", "{:?}", event.data);
    assert_eq!(event.data["reason"], "missed", "{:?}", event.data);
    assert!(
        detected >= Duration::from_millis(1900) && detected <= Duration::from_secs(3),
        "missed after {detected:?}; period + grace is 2 s"
    );
    println!("missed heartbeat detected {detected:?} after the last one (bound: 2 s + 1 s)");
    let state = served.state("worker");
    assert_eq!(state.status, Status::Unhealthy);
    assert_eq!(state.failures_by_reason[FailureReason::Missed.index()], 1);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_that_never_reports_is_unknown_until_period_plus_grace_then_missed() {
    let started = Instant::now();
    let served = start("period: 1s, grace: 1s").await;
    assert_eq!(served.state("worker").status, Status::Unknown);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(served.state("worker").status, Status::Unknown);
    let missed = wait_until(Duration::from_secs(3), || {
        served.state("worker").status == Status::Unhealthy
    })
    .await;
    assert!(
        missed,
        "still {:?} after {:?}",
        served.state("worker").status,
        started.elapsed()
    );
    let last = served.state("worker").last.expect("a result");
    assert_eq!(last.outcome.reason(), Some(FailureReason::Missed));
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_report_is_unhealthy_with_reason_reported_and_the_escaped_message() {
    let served = start("period: 1m").await;
    let body = r#"{"message": "disk full\nforged=line"}"#;
    let answer = report(
        served.addr,
        "POST",
        "/api/v1/agents/worker/heartbeat/fail",
        Some(TOKEN),
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let state = served.state("worker");
    assert_eq!(state.status, Status::Unhealthy);
    let last = state.last.expect("a result");
    assert_eq!(last.outcome.reason(), Some(FailureReason::Reported));
    match last.outcome {
        agent_health_exporter::probe::Outcome::Failed { error, .. } => {
            assert_eq!(error, "disk full\\nforged=line");
        }
        other => panic!("{other:?}"),
    }
    let text = served.scrape();
    assert!(text.contains("reason=\"reported\""), "{text}");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_duration_is_measured_from_start_to_finish_or_taken_from_the_body() {
    let served = start("period: 1m").await;
    assert_eq!(beat(served.addr, "/start").await.status, 200);
    assert_eq!(
        served.state("worker").status,
        Status::Unknown,
        "a start is no verdict"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    let measured = served.state("worker").last.expect("a result").duration;
    assert!(
        measured >= Duration::from_millis(300) && measured < Duration::from_secs(3),
        "{measured:?}"
    );
    let answer = report(
        served.addr,
        "POST",
        "/api/v1/agents/worker/heartbeat",
        Some(TOKEN),
        r#"{"duration_seconds": 1.25}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let state = served.state("worker");
    assert_eq!(
        state.last.expect("a result").duration,
        Duration::from_millis(1250)
    );
    assert!(state.duration_sum >= 1.55, "{}", state.duration_sum);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_that_outlasts_max_run_time_is_a_timeout() {
    let served = start("period: 1m, max_run_time: 1s").await;
    assert_eq!(beat(served.addr, "/start").await.status, 200);
    let started = Instant::now();
    let timed_out = wait_until(Duration::from_secs(3), || {
        served.state("worker").status == Status::Unhealthy
    })
    .await;
    assert!(timed_out, "no timeout after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(950));
    let last = served.state("worker").last.expect("a result");
    assert_eq!(last.outcome.reason(), Some(FailureReason::Timeout));
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_missing_tokens_get_the_same_401_as_an_unknown_agent() {
    let served = start("period: 1m").await;
    let path = "/api/v1/agents/worker/heartbeat";
    let wrong = report(served.addr, "POST", path, Some("guess"), "").await;
    let missing = report(served.addr, "POST", path, None, "").await;
    let unknown = report(
        served.addr,
        "POST",
        "/api/v1/agents/nobody/heartbeat",
        Some(TOKEN),
        "",
    )
    .await;
    for answer in [&wrong, &missing, &unknown] {
        assert_eq!(answer.status, 401, "{}", answer.text());
        assert_eq!(answer.body, wrong.body);
    }
    assert_eq!(served.state("worker").probes_success, 0);
    assert_eq!(served.state("worker").status, Status::Unknown);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_beyond_the_rate_limit_get_429_with_retry_after() {
    let served = start("period: 1m").await;
    let mut refused = None;
    for _ in 0..30 {
        let answer = beat(served.addr, "").await;
        if answer.status == 429 {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let refused = refused.expect("30 reports in a burst were all accepted");
    assert_eq!(refused.header("retry-after"), Some("1"));
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_four_kib_is_refused_with_413() {
    let served = start("period: 1m").await;
    let message = "x".repeat(5000);
    let body = format!(r#"{{"message": "{message}"}}"#);
    let answer = report(
        served.addr,
        "POST",
        "/api/v1/agents/worker/heartbeat",
        Some(TOKEN),
        &body,
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(served.state("worker").probes_success, 0);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_now_refuses_a_heartbeat_agent() {
    let served = start("period: 1m").await;
    let answer = fetch(served.addr, "POST", "/api/v1/agents/worker/probe", &[])
        .await
        .expect("answer");
    assert_eq!(answer.status, 409, "{}", answer.text());
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_only_a_new_token_keeps_the_state_and_takes_the_new_token() {
    let served = start("period: 1m").await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    let since = served.state("worker").since;
    std::fs::write(served.path("worker.token"), "rotated-token\n").expect("token");
    let summary = served.reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.unchanged, 1, "{summary:?}");
    let state = served.state("worker");
    assert_eq!(state.status, Status::Healthy, "state reset by the reload");
    assert_eq!(state.since, since);
    assert_eq!(
        beat(served.addr, "").await.status,
        401,
        "the old token still works"
    );
    let path = "/api/v1/agents/worker/heartbeat";
    let answer = report(served.addr, "POST", path, Some("rotated-token"), "").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(served.state("worker").probes_success, 2);
    served.shutdown().await;
}

/// Parses `yaml` with a token file `worker.token` beside it.
fn parse(yaml: &str) -> Result<agent_health_exporter::config::Config, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("worker.token"), TOKEN).expect("token");
    agent_health_exporter::config::parse(yaml, "config.yaml", dir.path()).map_err(|e| e.to_string())
}

#[test]
fn heartbeat_in_a_check_template_gives_the_period_and_the_agent_its_token() {
    let yaml = "checks:\n  batch:\n    heartbeat: {period: 5m, max_run_time: 1h}\nagents:\n  - name: worker\n    type: batch\n    heartbeat: {token_file: worker.token}\n";
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    let spec = &config.agents[0].spec;
    let heartbeat = spec.target.heartbeat().expect("a heartbeat agent");
    assert_eq!(heartbeat.period, Duration::from_secs(300));
    assert_eq!(
        heartbeat.grace,
        Duration::from_secs(60),
        "20 % of the period"
    );
    assert_eq!(heartbeat.max_run_time, Some(Duration::from_secs(3600)));
    assert_eq!(heartbeat.token.expose(), TOKEN);
    assert_eq!(spec.interval, Duration::from_secs(300));
    assert_eq!(spec.timeout, Duration::from_secs(60));
}

#[test]
fn url_and_heartbeat_together_or_neither_are_errors_with_place_and_fix() {
    let both = "agents:\n  - name: worker\n    type: batch\n    url: http://127.0.0.1:1/\n    heartbeat: {period: 1m, token_file: worker.token}\n";
    let error = parse(both).expect_err("url and heartbeat together");
    assert!(error.contains("both `url` and `heartbeat`"), "{error}");
    assert!(error.contains("config.yaml:4"), "{error}");
    let neither = "agents:\n  - name: worker\n    type: batch\n";
    let error = parse(neither).expect_err("neither url nor heartbeat");
    assert!(
        error.contains("missing required key `url` (or a `heartbeat` section)"),
        "{error}"
    );
    assert!(error.contains("heartbeat: {period: 1m"), "{error}");
    let no_token = "agents:\n  - name: worker\n    type: batch\n    heartbeat: {period: 1m}\n";
    let error = parse(no_token).expect_err("no token_file");
    assert!(error.contains("no `token_file`"), "{error}");
    let no_period =
        "agents:\n  - name: worker\n    type: batch\n    heartbeat: {token_file: worker.token}\n";
    let error = parse(no_period).expect_err("no period");
    assert!(error.contains("no `period`"), "{error}");
    let unknown = "agents:\n  - name: worker\n    type: batch\n    heartbeat: {period: 1m, token_file: worker.token, every: 2m}\n";
    assert!(parse(unknown).is_err(), "an unknown key is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_basic_auth_for_scrapers_the_heartbeat_paths_take_the_agents_token_instead() {
    let hash = bcrypt::hash("wonderland", 4).expect("bcrypt");
    let served = Served::start_with(&config("period: 1m"), |dir: &Path, options| {
        std::fs::write(dir.join("worker.token"), TOKEN).expect("token");
        let web = dir.join("web.yaml");
        std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n")).expect("web");
        options.web_config_file = Some(web);
    })
    .await;
    let scrape = fetch(served.addr, "GET", "/metrics", &[])
        .await
        .expect("answer");
    assert_eq!(scrape.status, 401, "scrapers still need their password");
    assert_eq!(beat(served.addr, "").await.status, 200);
    assert_eq!(served.state("worker").status, Status::Healthy);
    let path = "/api/v1/agents/worker/heartbeat";
    let without = report(served.addr, "POST", path, None, "").await;
    assert_eq!(without.status, 401, "{}", without.text());
    served.shutdown().await;
}

/// Milliseconds between two RFC 3339 times of the API.
fn millis_between(earlier: &serde_json::Value, later: &serde_json::Value) -> i128 {
    let at = |v: &serde_json::Value| {
        let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
        let t = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        t.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i128
    };
    at(later) - at(earlier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_event_stream_show_the_heartbeat_deadline_as_it_moves() {
    // A probed agent beside it (nothing listens on port 1): it has no deadline to show.
    let yaml = format!(
        "{}  - {{name: probed, type: web, url: 'http://127.0.0.1:1/health', interval: 1h}}\n",
        config("period: 1s, grace: 1s")
    );
    let served = Served::start_with(&yaml, |dir: &Path, _| {
        std::fs::write(dir.join("worker.token"), TOKEN).expect("token");
    })
    .await;
    let mut events = EventStream::connect(served.addr, "/api/v1/events?probes=true").await;
    let snapshot = events
        .until("snapshot", Duration::from_secs(2))
        .await
        .expect("a snapshot");
    let in_snapshot = |name: &str| {
        snapshot.data["agents"]
            .as_array()
            .and_then(|agents| agents.iter().find(|a| a["name"] == name))
            .unwrap_or_else(|| panic!("{name} not in {}", snapshot.data))
            .clone()
    };
    // Before any report: period + grace from the config load.
    assert!(in_snapshot("worker")["heartbeat_deadline"].is_string());
    assert!(in_snapshot("probed").get("heartbeat_deadline").is_none());

    let answer = beat(served.addr, "").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let deadline = answer.json()["deadline"].clone();
    // The status event (unknown to healthy) and the probe event, both with the new deadline;
    // the probed agent's first probe may send its own events in between.
    let (mut status, mut probe) = (None, None);
    while status.is_none() || probe.is_none() {
        let event = events
            .next(Duration::from_secs(2))
            .await
            .expect("the heartbeat's status and probe events");
        if event.data["agent"] != "worker" {
            continue;
        }
        match event.event.as_str() {
            "status" => status = Some(event.data),
            "probe" => probe = Some(event.data),
            _ => {}
        }
    }
    let (status, probe) = (status.expect("status"), probe.expect("probe"));
    assert_eq!(status["to"], "healthy", "{status}");
    assert_eq!(status["heartbeat_deadline"], deadline, "{status}");
    assert_eq!(probe["heartbeat_deadline"], deadline, "{probe}");

    let fleet = harness::get(served.addr, "/api/v1/agents").expect("api");
    let agents = fleet.json()["agents"].clone();
    let of = |name: &str| {
        agents
            .as_array()
            .and_then(|all| all.iter().find(|a| a["name"] == name))
            .unwrap_or_else(|| panic!("{name} not in {agents}"))
            .clone()
    };
    assert_eq!(of("worker")["heartbeat_deadline"], deadline);
    assert!(of("probed").get("heartbeat_deadline").is_none(), "{agents}");
    let one = harness::get(served.addr, "/api/v1/agents/worker").expect("api");
    assert_eq!(one.json()["heartbeat_deadline"], deadline);

    // Silence: the miss comes at the deadline, and its event carries the next one, a period on.
    let missed = loop {
        let event = events
            .until("status", Duration::from_secs(4))
            .await
            .expect("the miss's status event");
        if event.data["agent"] == "worker" {
            break event;
        }
    };
    assert_eq!(missed.data["reason"], "missed", "{}", missed.data);
    let moved = millis_between(&deadline, &missed.data["heartbeat_deadline"]);
    assert!(
        (950..=1050).contains(&moved),
        "the deadline moved {moved} ms after the miss; the period is 1 s"
    );
    let one = harness::get(served.addr, "/api/v1/agents/worker").expect("api");
    assert_eq!(
        one.json()["heartbeat_deadline"],
        missed.data["heartbeat_deadline"]
    );
    served.shutdown().await;
}

/// The deadline as the gauge, the API and the report's answer show it, in seconds since 1970.
fn shown_deadline(served: &Served) -> f64 {
    let text = served.scrape();
    let gauge = "agent_heartbeat_deadline_timestamp_seconds{agent=\"worker\",agent_type=\"batch\"}";
    let at = metric(&text, gauge).unwrap_or_else(|| panic!("no deadline gauge: {text}"));
    let api = harness::get(served.addr, "/api/v1/agents/worker").expect("api");
    let text = api.json()["heartbeat_deadline"].clone();
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("no deadline: {}", api.text()));
    let api_at = humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!((at - api_at).abs() < 0.01, "gauge {at}, API {api_at}");
    at
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_longer_than_period_plus_grace_stays_healthy_until_max_run_time_then_times_out() {
    let served = start("period: 300ms, grace: 100ms, max_run_time: 2s").await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    assert_eq!(served.state("worker").status, Status::Healthy);
    let answer = beat(served.addr, "/start").await;
    let started = Instant::now();
    let started_unix = unix_now();
    assert_eq!(answer.status, 200, "{}", answer.text());
    // While the run is open its deadline is start + max_run_time, everywhere it is shown.
    let deadline = shown_deadline(&served);
    assert!(
        (started_unix + 1.9..started_unix + 2.1).contains(&deadline),
        "deadline {:.3} s after the start; max_run_time is 2 s",
        deadline - started_unix
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = served.state("worker");
    assert_eq!(
        state.status,
        Status::Healthy,
        "a run of 1 s is within max_run_time 2 s, though period + grace is 400 ms: {:?}",
        state.last.map(|l| l.outcome)
    );
    assert_eq!(state.failures_by_reason[FailureReason::Missed.index()], 0);
    let timed_out = wait_until(Duration::from_secs(3), || {
        served.state("worker").status == Status::Unhealthy
    })
    .await;
    assert!(
        timed_out,
        "no timeout {:?} after the start",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1950),
        "{:?}",
        started.elapsed()
    );
    let state = served.state("worker");
    assert_eq!(
        state.last.expect("a result").outcome.reason(),
        Some(FailureReason::Timeout)
    );
    assert_eq!(state.failures_by_reason[FailureReason::Missed.index()], 0);
    // After the run, silence counts again: the next miss is due, not the run's deadline.
    assert!(
        shown_deadline(&served) > deadline,
        "the deadline did not move on"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_during_a_run_ends_it_and_silence_counts_from_the_report_again() {
    let served = start("period: 300ms, grace: 100ms, max_run_time: 2s").await;
    assert_eq!(beat(served.addr, "/start").await.status, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        served.state("worker").status,
        Status::Unknown,
        "a run is open"
    );
    assert_eq!(beat(served.addr, "").await.status, 200);
    let ended = Instant::now();
    let state = served.state("worker");
    assert_eq!(state.status, Status::Healthy);
    let run = state.last.expect("a result").duration;
    assert!(run >= Duration::from_millis(800), "run lasted {run:?}");
    // Without a run, silence past period + grace is missed.
    turns_unhealthy(&served, ended, 380..1500, FailureReason::Missed).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_run_time_shorter_than_period_plus_grace_times_the_run_out_at_max_run_time() {
    let served = start("period: 2s, grace: 1s, max_run_time: 400ms").await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    assert_eq!(beat(served.addr, "/start").await.status, 200);
    let started = Instant::now();
    let started_unix = unix_now();
    let deadline = shown_deadline(&served);
    assert!(
        (started_unix + 0.3..started_unix + 0.5).contains(&deadline),
        "deadline {:.3} s after the start; max_run_time is 400 ms",
        deadline - started_unix
    );
    turns_unhealthy(&served, started, 380..1500, FailureReason::Timeout).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_during_an_open_run_keeps_its_end_so_a_job_that_only_starts_times_out() {
    let served = start("period: 300ms, grace: 100ms, max_run_time: 1s").await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    assert_eq!(beat(served.addr, "/start").await.status, 200);
    let first_unix = unix_now();
    let first = Instant::now();
    // A job that crashes and starts again, never finishing: its starts keep coming.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(beat(served.addr, "/start").await.status, 200);
    }
    let deadline = shown_deadline(&served);
    assert!(
        (first_unix + 0.9..first_unix + 1.1).contains(&deadline),
        "deadline {:.3} s after the first start; later starts must not move it",
        deadline - first_unix
    );
    turns_unhealthy(&served, first, 950..3000, FailureReason::Timeout).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_max_run_time_do_not_hold_off_a_missed_heartbeat() {
    let served = start("period: 300ms, grace: 100ms").await;
    assert_eq!(beat(served.addr, "").await.status, 200);
    let last_success = Instant::now();
    // Only starts from here on, for 1.5 s: silence since the last success is what counts, so
    // the agent is unhealthy while the starts are still coming.
    let mut missed_after = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(beat(served.addr, "/start").await.status, 200);
        if missed_after.is_none() && served.state("worker").status == Status::Unhealthy {
            missed_after = Some(last_success.elapsed());
        }
    }
    let after = missed_after.expect("starts alone kept the agent healthy for 1.5 s");
    assert!(
        after < Duration::from_millis(900),
        "missed only {after:?} after the last success"
    );
    let state = served.state("worker");
    assert_eq!(
        state.last.expect("a result").outcome.reason(),
        Some(FailureReason::Missed)
    );
    served.shutdown().await;
}
