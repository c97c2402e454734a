//! A discovery source is known by its settings: credentials follow the config and never a label
//! a target sets; a reload that changes a source (its type, check, refresh interval, place in the
//! file) takes effect and keeps its agents with their state, even while the source fails; every
//! per-source series exists from the source's start.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::discovery::{groups, Running};
use harness::sd_server::SdServer;
use harness::{metric, wait_for, Behaviour, Binary, MockAgent};

const WAIT: Duration = Duration::from_secs(10);

fn label(run: &Running, agent: &str, name: &str) -> Option<String> {
    let agent = run.exporter.monitor.agent(agent).expect("agent");
    let value = agent
        .labels()
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string());
    value
}

fn count(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

/// `{"targets": ["evil"], "labels": {"__check__": "billing"}}` must not send the billing check's
/// token to `evil`, nor may `agent_type: billing`: both are dropped, counted and logged once per
/// refresh. A check the source allows, and a type that names no check, are probed.
#[test]
fn an_sd_target_never_gets_the_credentials_of_a_check_its_source_does_not_allow() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (evil, sd) = runtime.block_on(async {
        let evil = MockAgent::start(Behaviour::ok("ok")).await;
        let addr = evil.addr.to_string();
        let answer = serde_json::json!([
            {"targets": [addr], "labels": {"agent": "by-check", "__check__": "billing"}},
            {"targets": [addr], "labels": {"agent": "by-type", "agent_type": "billing"}},
            {"targets": [addr], "labels": {"agent": "allowed", "__check__": "shared"}},
            {"targets": [addr], "labels": {"agent": "plain", "agent_type": "nocheck"}},
        ]);
        let sd = SdServer::start(&answer.to_string()).await;
        (evil, sd)
    });
    let config = format!(
        r#"defaults: {{interval: 200ms, timeout: 150ms}}
checks:
  billing: {{http: {{bearer_token_file: billing-token}}}}
  shared: {{http: {{headers: {{X-Shared: "1"}}}}}}
discovery:
  - http_sd: {{url: "{}", refresh_interval: 200ms}}
    type: worker
    allowed_checks: [shared]
"#,
        sd.url()
    );
    let exporter = Binary::launch(&config)
        .file("billing-token", "billing-s3cret\n")
        .start();
    let probed = wait_for(WAIT, || {
        let text = exporter.metrics();
        let successes = |agent: &str, agent_type: &str| {
            count(
                &text,
                &format!("agent_probes_total{{agent=\"{agent}\",agent_type=\"{agent_type}\",result=\"success\"}}"),
            )
        };
        (successes("allowed", "worker") >= 2.0 && successes("plain", "nocheck") >= 2.0)
            .then_some(())
    });
    assert!(probed.is_some(), "no probes:\n{}", exporter.metrics());
    let requests = evil.requests();
    assert!(
        requests.iter().all(|r| r.header("authorization").is_none()),
        "a credential reached the target: {:?}",
        requests
            .iter()
            .filter_map(|r| r.header("authorization"))
            .collect::<Vec<_>>()
    );
    assert!(requests.iter().any(|r| r.header("x-shared") == Some("1")));
    let dropped = "agent_exporter_discovery_dropped_targets_total{source=\"http_sd/0\",reason=\"check_not_allowed\"}";
    let counted = wait_for(WAIT, || {
        (count(&exporter.metrics(), dropped) >= 6.0).then_some(())
    });
    assert!(
        counted.is_some(),
        "no drops counted:\n{}",
        exporter.metrics()
    );
    let text = exporter.metrics();
    assert!(!text.contains("agent=\"by-check\"") && !text.contains("agent=\"by-type\""));
    assert!(text.contains("agent=\"plain\",agent_type=\"nocheck\""));
    // One line per refresh for both targets, never one per target. A refresh counts its drops
    // before it logs: the counter read after the log has seen every logged refresh.
    let logs = exporter.logs();
    let refreshes = count(&exporter.metrics(), dropped) / 2.0;
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("checks their source does not allow"))
        .collect();
    assert!(
        !lines.is_empty(),
        "the refused checks were not logged:\n{logs}"
    );
    assert!(lines.iter().all(|l| l.contains("dropped=2")), "{lines:#?}");
    assert!(
        lines.len() as f64 <= refreshes,
        "{} lines for {refreshes} refreshes",
        lines.len()
    );
    drop(runtime);
}

/// The source's `type:`, `check:` and `allowed_checks` are settings a reload applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_new_type_check_and_allowed_checks_of_a_source() {
    let targets = serde_json::json!([
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w1"}},
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w2", "__check__": "deep"}},
    ])
    .to_string();
    let checks =
        "checks:\n  shallow: {labels: {probe: shallow}}\n  deep: {labels: {probe: deep}}\n";
    let config =
        format!("{checks}discovery:\n  - file_sd: {{files: [t.json]}}\n    type: worker\n");
    let run = Running::start(&config, &[("t.json", &targets)]).await;
    let joined = harness::wait_until(WAIT, || run.names().contains("w1")).await;
    assert!(joined, "w1 never joined");
    assert_eq!(label(&run, "w1", "agent_type").as_deref(), Some("worker"));

    std::fs::write(
        run.path("config.yaml"),
        format!("{checks}discovery:\n  - file_sd: {{files: [t.json]}}\n    type: indexer\n    check: shallow\n"),
    )
    .expect("write config");
    run.exporter.reloader.reload().expect("reload");
    assert_eq!(label(&run, "w1", "agent_type").as_deref(), Some("indexer"));
    assert_eq!(label(&run, "w1", "probe").as_deref(), Some("shallow"));
    // `__check__: deep` is neither the source's check nor allowed.
    run.wait_for_fleet(&["w1"], WAIT).await;

    std::fs::write(
        run.path("config.yaml"),
        format!("{checks}discovery:\n  - file_sd: {{files: [t.json]}}\n    type: indexer\n    check: shallow\n    allowed_checks: [deep]\n"),
    )
    .expect("write config");
    run.exporter.reloader.reload().expect("reload");
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    assert_eq!(label(&run, "w2", "probe").as_deref(), Some("deep"));
}

fn successes(run: &Running, agent: &str) -> f64 {
    count(
        &run.metrics(),
        &format!(
            "agent_probes_total{{agent=\"{agent}\",agent_type=\"worker\",result=\"success\"}}"
        ),
    )
}

async fn wait_for_successes(run: &Running, agent: &str, at_least: f64) {
    let seen = harness::wait_until(WAIT, || successes(run, agent) >= at_least).await;
    assert!(seen, "{agent} has fewer than {at_least} successful probes");
}

/// A reload that changes the refresh interval restarts the source; its server fails from then
/// on. The agents stay, with their state and counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_source_whose_server_then_fails_keeps_its_agents_and_their_counts() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    let addr = agent.addr.to_string();
    let sd = SdServer::start(&groups(&[("w1", &addr), ("w2", &addr)])).await;
    let config = |refresh: &str| {
        format!(
            "defaults: {{interval: 200ms, timeout: 150ms}}\ndiscovery:\n  - http_sd: {{url: \"{}\", refresh_interval: {refresh}}}\n    type: worker\n",
            sd.url()
        )
    };
    let run = Running::start(&config("100ms"), &[]).await;
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    wait_for_successes(&run, "w1", 2.0).await;
    let w1 = run.exporter.monitor.agent("w1").expect("w1");
    let failures = "agent_exporter_discovery_refresh_failures_total{source=\"http_sd/0\"}";

    sd.fail(503);
    let before = count(&run.metrics(), failures);
    std::fs::write(run.path("config.yaml"), config("150ms")).expect("write config");
    run.exporter.reloader.reload().expect("reload");
    let probed = successes(&run, "w1");
    run.wait_for_metrics(WAIT, |text| count(text, failures) >= before + 2.0)
        .await;
    assert_eq!(run.names().len(), 2, "agents kept: {:?}", run.names());
    assert!(
        Arc::ptr_eq(&w1, &run.exporter.monitor.agent("w1").expect("w1")),
        "w1 was started afresh"
    );
    wait_for_successes(&run, "w1", probed + 1.0).await;
}

/// A source inserted before another gives the other a new id, not a restart: its agents keep
/// their probe counts, and its series move to the new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_inserted_before_another_leaves_the_others_agents_and_counts() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    let addr = agent.addr.to_string();
    let head = "defaults: {interval: 200ms, timeout: 150ms}\ndiscovery:\n";
    let one = "  - file_sd: {files: [one.json]}\n    type: worker\n";
    let two = "  - file_sd: {files: [two.json]}\n    type: worker\n";
    let run = Running::start(
        &format!("{head}{one}"),
        &[
            ("one.json", &groups(&[("w1", &addr)])),
            ("two.json", &groups(&[("v1", &addr)])),
        ],
    )
    .await;
    run.wait_for_fleet(&["w1"], WAIT).await;
    wait_for_successes(&run, "w1", 2.0).await;
    let w1 = run.exporter.monitor.agent("w1").expect("w1");

    std::fs::write(run.path("config.yaml"), format!("{head}{two}{one}")).expect("write config");
    let probed = successes(&run, "w1");
    run.exporter.reloader.reload().expect("reload");
    run.wait_for_fleet(&["v1", "w1"], WAIT).await;
    assert!(
        successes(&run, "w1") >= probed,
        "w1's probe count went back"
    );
    assert!(
        Arc::ptr_eq(&w1, &run.exporter.monitor.agent("w1").expect("w1")),
        "w1 was started afresh"
    );
    assert!(
        run.origin("w1").starts_with("file_sd/1 "),
        "{}",
        run.origin("w1")
    );
    run.wait_for_metrics(WAIT, |text| {
        metric(
            text,
            "agent_exporter_discovery_targets{source=\"file_sd/1\"}",
        ) == Some(1.0)
            && metric(
                text,
                "agent_exporter_discovery_targets{source=\"file_sd/0\"}",
            ) == Some(1.0)
    })
    .await;
}

/// Before any failure or drop, `increase()` needs a series at 0 to see the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_source_series_exists_at_zero_from_the_sources_start() {
    let sd = SdServer::start("[]").await;
    let config = format!(
        "discovery:\n  - http_sd: {{url: \"{}\", refresh_interval: 100ms}}\n    type: worker\n",
        sd.url()
    );
    let run = Running::start(&config, &[]).await;
    let text = run.metrics();
    for series in [
        "agent_exporter_discovery_refresh_failures_total{source=\"http_sd/0\"}",
        "agent_exporter_discovery_targets{source=\"http_sd/0\"}",
        "agent_exporter_discovery_dropped_targets_total{source=\"http_sd/0\",reason=\"check_not_allowed\"}",
        "agent_exporter_discovery_dropped_targets_total{source=\"http_sd/0\",reason=\"invalid\"}",
        "agent_exporter_discovery_dropped_targets_total{source=\"http_sd/0\",reason=\"duplicate_name\"}",
    ] {
        assert_eq!(metric(&text, series), Some(0.0), "{series} in:\n{text}");
    }
}
