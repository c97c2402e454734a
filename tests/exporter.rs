//! The exporter in-process against mock agents on loopback: scheduling, health and metrics
//! from end to end.

mod harness;

use std::time::{Duration, SystemTime};

use agent_health_exporter::monitor::Status;
use harness::{agent_yaml, metric, wait_until, Behaviour, MockAgent, RawAgent, Served};

/// One agent of type `test`.
fn test_agent(name: &str, url: &str, extra: &str) -> String {
    agent_yaml(name, "test", url, extra)
}

fn status_of(served: &Served, name: &str) -> Status {
    served.state(name).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histogram_count_match_the_number_of_probes() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let failing = MockAgent::start(Behaviour::Status(503)).await;
    let yaml = format!(
        "defaults: {{interval: 100ms, timeout: 80ms}}\nagents:\n{}{}",
        test_agent("good", ok.url("/health").as_str(), ""),
        test_agent("bad", failing.url("/health").as_str(), "")
    );
    let exporter = Served::start(&yaml).await;
    let enough = wait_until(Duration::from_secs(5), || {
        let good = exporter.monitor.agent("good").expect("agent");
        let bad = exporter.monitor.agent("bad").expect("agent");
        let g = good.state().probes_success;
        let b = bad.state().probes_failure;
        g >= 5 && b >= 5
    })
    .await;
    assert!(enough, "agents were not probed 5 times within 5 s");
    exporter.scheduler.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = exporter.scrape();
    let good = exporter
        .monitor
        .agent("good")
        .expect("agent")
        .state()
        .clone();
    let n = good.probes_success as f64;
    let labels = "agent=\"good\",agent_type=\"test\"";
    assert_eq!(
        metric(
            &text,
            &format!("agent_probes_total{{{labels},result=\"success\"}}")
        ),
        Some(n)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probes_total{{{labels},result=\"failure\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probe_duration_seconds_count{{{labels}}}")
        ),
        Some(n)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probe_duration_seconds_bucket{{{labels},le=\"+Inf\"}}")
        ),
        Some(n)
    );
    assert_eq!(metric(&text, &format!("agent_up{{{labels}}}")), Some(1.0));
    assert_eq!(
        metric(&text, &format!("agent_http_status_code{{{labels}}}")),
        Some(200.0)
    );

    let bad = exporter
        .monitor
        .agent("bad")
        .expect("agent")
        .state()
        .clone();
    let m = bad.probes_failure as f64;
    let labels = "agent=\"bad\",agent_type=\"test\"";
    assert_eq!(
        metric(
            &text,
            &format!("agent_probes_total{{{labels},result=\"failure\"}}")
        ),
        Some(m)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probe_failures_total{{{labels},reason=\"http_status\"}}")
        ),
        Some(m)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probe_failures_total{{{labels},reason=\"timeout\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probe_duration_seconds_count{{{labels}}}")
        ),
        Some(m)
    );
    assert_eq!(
        metric(&text, &format!("agent_consecutive_failures{{{labels}}}")),
        Some(m)
    );
    assert_eq!(metric(&text, &format!("agent_up{{{labels}}}")), Some(0.0));
    assert_eq!(
        metric(&text, &format!("agent_http_status_code{{{labels}}}")),
        Some(503.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_health_status{{{labels},status=\"unhealthy\"}}")
        ),
        Some(1.0)
    );
    assert!(metric(
        &text,
        &format!("agent_last_success_timestamp_seconds{{{labels}}}")
    )
    .is_none());
    assert!(metric(
        &text,
        &format!("agent_last_probe_timestamp_seconds{{{labels}}}")
    )
    .is_some());
    assert_eq!(
        metric(&text, &format!("agent_probe_interval_seconds{{{labels}}}")),
        Some(0.1)
    );
    assert_eq!(
        metric(&text, &format!("agent_probe_timeout_seconds{{{labels}}}")),
        Some(0.08)
    );
    assert_eq!(metric(&text, "agent_exporter_agents"), Some(2.0));
    assert_eq!(
        metric(&text, "agent_exporter_config_last_reload_successful"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_agent_is_unhealthy_at_its_first_probe() {
    let addr = harness::refused_addr().await;
    let yaml = format!(
        "agents:\n{}",
        test_agent(
            "gone",
            &format!("http://{addr}/health"),
            "    interval: 200ms\n    timeout: 100ms\n"
        )
    );
    let exporter = Served::start(&yaml).await;
    assert_eq!(status_of(&exporter, "gone"), Status::Unknown);
    // Detection bound for a refusing agent: one interval.
    let unhealthy = wait_until(Duration::from_millis(200 + 100 + 200), || {
        status_of(&exporter, "gone") == Status::Unhealthy
    })
    .await;
    assert!(unhealthy, "not unhealthy within one interval");
    let text = exporter.scrape();
    assert_eq!(
        metric(
            &text,
            "agent_probe_failures_total{agent=\"gone\",agent_type=\"test\",reason=\"connect\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_agent_is_unhealthy_within_interval_plus_timeout() {
    let hang = MockAgent::start(Behaviour::Hang).await;
    let yaml = format!(
        "agents:\n{}",
        test_agent(
            "hung",
            hang.url("/").as_str(),
            "    interval: 300ms\n    timeout: 150ms\n"
        )
    );
    let exporter = Served::start(&yaml).await;
    let unhealthy = wait_until(Duration::from_millis(300 + 150 + 250), || {
        status_of(&exporter, "hung") == Status::Unhealthy
    })
    .await;
    assert!(unhealthy, "not unhealthy within interval + timeout");
    let state = exporter
        .monitor
        .agent("hung")
        .expect("agent")
        .state()
        .clone();
    let last = state.last.expect("a probe");
    assert_eq!(last.outcome.reason().map(|r| r.as_str()), Some("timeout"));
    assert!(last.duration >= Duration::from_millis(150));
    assert!(
        last.duration < Duration::from_millis(300),
        "{:?}",
        last.duration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_agent_is_degraded_by_latency_and_json_agent_by_its_body() {
    let slow = MockAgent::start(Behaviour::Slow(Duration::from_millis(120))).await;
    let json = MockAgent::start(Behaviour::ok(r#"{"status":"degraded"}"#)).await;
    let fine = MockAgent::start(Behaviour::ok(r#"{"status":"ok"}"#)).await;
    let degraded_json = "    degraded:\n      json: {\"/status\": \"degraded\"}\n";
    let yaml = format!(
        "defaults: {{interval: 300ms, timeout: 250ms}}\nagents:\n{}{}{}",
        test_agent(
            "slow",
            slow.url("/").as_str(),
            "    degraded: {latency_above: 50ms}\n"
        ),
        test_agent("json", json.url("/").as_str(), degraded_json),
        test_agent("fine", fine.url("/").as_str(), degraded_json)
    );
    let exporter = Served::start(&yaml).await;
    let settled = wait_until(Duration::from_secs(2), || {
        ["slow", "json", "fine"]
            .iter()
            .all(|n| status_of(&exporter, n) != Status::Unknown)
    })
    .await;
    assert!(settled);
    assert_eq!(status_of(&exporter, "slow"), Status::Degraded);
    assert_eq!(status_of(&exporter, "json"), Status::Degraded);
    assert_eq!(status_of(&exporter, "fine"), Status::Healthy);
    let text = exporter.scrape();
    assert_eq!(
        metric(
            &text,
            "agent_health_status{agent=\"json\",agent_type=\"test\",status=\"degraded\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "agent_up{agent=\"json\",agent_type=\"test\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_agent_is_probed_by_connecting() {
    let port = RawAgent::start(|_connection| async {}).await;
    let addr = port.addr;
    let yaml = format!(
        "agents:\n{}",
        test_agent(
            "port",
            &format!("tcp://{addr}"),
            "    interval: 200ms\n    timeout: 100ms\n"
        )
    );
    let exporter = Served::start(&yaml).await;
    assert!(
        wait_until(Duration::from_secs(1), || status_of(&exporter, "port")
            == Status::Healthy)
        .await
    );
    let text = exporter.scrape();
    assert_eq!(
        metric(
            &text,
            "agent_probe_phase_seconds{agent=\"port\",agent_type=\"test\",phase=\"first_byte\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_of_which_ten_hang_start_every_probe_within_100ms_of_its_slot() {
    let mut mocks = Vec::new();
    let mut yaml = String::from("defaults: {interval: 400ms, timeout: 300ms}\nagents:\n");
    for i in 0..50 {
        let behaviour = if i % 5 == 0 {
            Behaviour::Hang
        } else {
            Behaviour::ok("ok")
        };
        let mock = MockAgent::start(behaviour).await;
        yaml.push_str(&test_agent(
            &format!("agent-{i:02}"),
            mock.url("/health").as_str(),
            "",
        ));
        mocks.push(mock);
    }
    let exporter = Served::start(&yaml).await;
    let started = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Slots up to here had their probes end (timeout 300 ms) before the stop.
    let window_end = SystemTime::now() - Duration::from_millis(300 + 200);
    exporter.scheduler.stop();
    let text = exporter.scrape();
    for i in 0..50 {
        let name = format!("agent-{i:02}");
        let probes = exporter
            .probes_on_every_slot(&name, started, window_end, Duration::from_millis(100))
            .unwrap_or_else(|problem| panic!("{problem}"));
        assert!(probes >= 4, "{name}: only {probes} probes in the window");
    }
    let total = metric(&text, "agent_exporter_probe_start_delay_seconds_count").expect("count");
    let on_time = metric(
        &text,
        "agent_exporter_probe_start_delay_seconds_bucket{le=\"0.1\"}",
    )
    .expect("bucket 0.1");
    assert!(total >= 50.0 * 5.0, "only {total} probes started");
    assert_eq!(
        on_time,
        total,
        "{} of {total} probes started more than 100 ms late",
        total - on_time
    );
    for i in 0..50 {
        let state = exporter
            .monitor
            .agent(&format!("agent-{i:02}"))
            .expect("agent")
            .state()
            .clone();
        let probes = state.probes_success + state.probes_failure;
        assert!(probes >= 5, "agent-{i:02} probed only {probes} times");
        if i % 5 == 0 {
            assert_eq!(state.status, Status::Unhealthy);
            assert_eq!(
                state.failures_by_reason[0], state.probes_failure,
                "all timeouts"
            );
        } else {
            assert_eq!(state.status, Status::Healthy, "agent-{i:02}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_labels_follow_agent_and_agent_type_on_every_series() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let yaml = format!(
        "defaults: {{interval: 200ms, timeout: 100ms, labels: {{env: prod}}}}\nagents:\n{}",
        test_agent("a", ok.url("/").as_str(), "    labels: {team: core}\n")
    );
    let exporter = Served::start(&yaml).await;
    assert!(
        wait_until(Duration::from_secs(1), || status_of(&exporter, "a")
            == Status::Healthy)
        .await
    );
    let text = exporter.scrape();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("agent_") && !l.starts_with("agent_exporter"))
        .collect();
    assert!(series.len() > 30, "{text}");
    for line in series {
        assert!(
            line.contains("{agent=\"a\",agent_type=\"test\",env=\"prod\",team=\"core\""),
            "{line}"
        );
    }
}
