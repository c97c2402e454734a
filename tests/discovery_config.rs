//! The `discovery:` section: mistakes reported with their place and a fix, reloads that add,
//! change and remove sources, and a failing source logged once per change of state.

mod harness;

use std::path::Path;
use std::time::Duration;

use agent_health_exporter::config::{self, ConfigError, ConfigIssue};
use harness::discovery::{groups, Running};
use harness::{wait_for, Binary};

const WAIT: Duration = Duration::from_secs(10);

fn issues(yaml: &str) -> Vec<ConfigIssue> {
    match config::parse(yaml, "fleet.yaml", Path::new("/nonexistent-dir")) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn relabel_and_source_mistakes_are_reported_with_place_and_fix() {
    let yaml = r#"discovery:
  - file_sd: {files: [a.json]}
    relabel_configs:
      - {source_labels: [a], regex: "(", target_label: b}
      - {action: hashmod, target_label: s}
      - {action: explode}
  - http_sd: {url: "http://127.0.0.1:1/sd", refresh_interval: soon}
  - dns_sd: {names: [a.example], record_type: A}
  - file_sd: {files: [a.json]}
    http_sd: {url: "http://127.0.0.1:1/sd"}
"#;
    let all = issues(yaml);
    let found: Vec<(u64, &str)> = all.iter().map(|i| (i.line, i.message.as_str())).collect();
    for (line, needle) in [
        (4, "invalid regex"),
        (5, "non-zero modulus"),
        (6, "unknown relabel action"),
        (7, "not a positive duration"),
        (8, "needs a port"),
        (9, "exactly one of file_sd, http_sd, dns_sd"),
    ] {
        assert!(
            found.iter().any(|(l, m)| *l == line && m.contains(needle)),
            "no issue {needle:?} at line {line}: {all:#?}"
        );
    }
    assert!(all.iter().all(|i| !i.fix.is_empty()), "{all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_changes_and_removes_sources_and_re_resolves_their_agents() {
    let one = groups(&[("w1", "127.0.0.1:9")]);
    let two = groups(&[("v1", "127.0.0.1:9")]);
    let config = "discovery:\n  - file_sd: {files: [one.json]}\n    type: worker\n";
    let run = Running::start(config, &[("one.json", &one), ("two.json", &two)]).await;
    run.wait_for_fleet(&["w1"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").unwrap();

    // A second source joins; the first is unchanged and keeps its agent as it was.
    std::fs::write(
        run.path("config.yaml"),
        format!("{config}  - file_sd: {{files: [two.json]}}\n    type: indexer\n"),
    )
    .unwrap();
    run.exporter.reloader.reload().expect("reload");
    run.wait_for_fleet(&["v1", "w1"], WAIT).await;
    assert!(std::sync::Arc::ptr_eq(
        &w1,
        &run.exporter.monitor.agent("w1").unwrap()
    ));

    // New defaults apply to discovered agents too; the first source is gone.
    std::fs::write(
        run.path("config.yaml"),
        "defaults: {labels: {region: eu}}\ndiscovery:\n  - file_sd: {files: [two.json]}\n    type: indexer\n",
    )
    .unwrap();
    run.exporter.reloader.reload().expect("reload");
    run.wait_for_fleet(&["v1"], WAIT).await;
    let v1 = run.exporter.monitor.agent("v1").unwrap();
    assert!(v1.labels().iter().any(|(k, v)| k == "region" && v == "eu"));
    assert!(
        !run.metrics().contains("source=\"file_sd/1\""),
        "the removed source's series are gone"
    );
}

#[test]
fn a_failing_source_is_logged_once_per_change_of_state() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = refused.local_addr().unwrap().port();
    drop(refused);
    let config = format!(
        "discovery:\n  - http_sd: {{url: \"http://127.0.0.1:{port}/sd\", refresh_interval: 50ms}}\n"
    );
    let exporter = Binary::start(&config, &[]);
    let failures = wait_for(WAIT, || {
        let metrics = exporter.metrics();
        harness::metric(
            &metrics,
            "agent_exporter_discovery_refresh_failures_total{source=\"http_sd/0\"}",
        )
        .filter(|v| *v >= 10.0)
    });
    assert!(failures.is_some(), "the source never failed ten times");
    let logs = exporter.logs();
    assert_eq!(
        logs.matches("discovery refresh failed").count(),
        1,
        "one warning for ten failures:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_example_runs_static_and_file_agents_and_lists_every_source() {
    let path = harness::repo_file("examples/fleet/config.yaml");
    let loaded = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = loaded.discovery.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["file_sd/0", "http_sd/0", "dns_sd/0"]);
    let options = agent_health_exporter::app::Options {
        config_file: path,
        ..Default::default()
    };
    let exporter = agent_health_exporter::app::Exporter::start(&options).unwrap();
    let want = [
        "planner-1",
        "planner-2",
        "retriever-1",
        "retriever-2",
        "retriever-tls",
    ];
    let all = wait_for(WAIT, || {
        let names: Vec<String> = exporter
            .monitor
            .agents()
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        want.iter()
            .all(|w| names.iter().any(|n| n == w))
            .then_some(names)
    });
    assert!(
        all.is_some(),
        "static and file agents of the example are probed"
    );
    let tls = exporter.monitor.agent("retriever-tls").unwrap();
    assert_eq!(tls.spec.target.display(), "https://127.0.0.1:8443/ready");
    assert!(tls
        .labels()
        .iter()
        .any(|(k, v)| k == "agent_type" && v == "retriever"));
    exporter.scheduler.stop();
}
