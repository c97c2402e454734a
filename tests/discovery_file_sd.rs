//! file_sd against real files changed while the exporter runs: atomic renames, in-place
//! writes, broken files (the last good targets stay), relabeling, and name conflicts with
//! static agents.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::discovery::{groups, replace_atomically, Running};
use harness::metric;

const WAIT: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
agents:
  - {name: static-1, type: planner, url: "http://127.0.0.1:9/health"}
discovery:
  - file_sd: {files: ["targets/*.json", "targets/*.yaml"]}
    type: worker
    relabel_configs:
      - {source_labels: [agent], regex: "skip-.*", action: drop}
      - {source_labels: [__meta_filepath], regex: ".*/(.*)\\.(json|yaml)", target_label: file}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_follows_renames_and_in_place_writes_and_keeps_unchanged_agents() {
    let first = groups(&[
        ("w1", "127.0.0.1:9"),
        ("w2", "127.0.0.1:9"),
        ("skip-1", "127.0.0.1:9"),
    ]);
    let run = Running::start(CONFIG, &[("targets/a.json", &first)]).await;
    run.wait_for_fleet(&["static-1", "w1", "w2"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").expect("w1");
    assert!(
        w1.labels().iter().any(|(k, v)| k == "file" && v == "a"),
        "relabeled label present"
    );
    assert!(
        run.origin("w1").starts_with("file_sd/0 file="),
        "{}",
        run.origin("w1")
    );
    assert_eq!(run.origin("static-1"), "static");
    assert_eq!(run.api_origin("static-1"), "static");
    assert_eq!(run.api_origin("w1"), run.origin("w1"));

    // Atomic rename: w2 leaves, w3 arrives, w1 is untouched.
    replace_atomically(
        &run.path("targets/a.json"),
        &groups(&[("w1", "127.0.0.1:9"), ("w3", "127.0.0.1:9")]),
    );
    run.wait_for_fleet(&["static-1", "w1", "w3"], WAIT).await;
    let still = run.exporter.monitor.agent("w1").expect("w1");
    assert!(
        Arc::ptr_eq(&w1, &still),
        "an unchanged agent keeps its state"
    );

    // In-place write of a second file, in YAML.
    std::fs::write(
        run.path("targets/b.yaml"),
        "- targets: ['127.0.0.1:9']\n  labels: {agent: w4, agent_type: indexer}\n",
    )
    .unwrap();
    run.wait_for_fleet(&["static-1", "w1", "w3", "w4"], WAIT)
        .await;
    let w4 = run.exporter.monitor.agent("w4").expect("w4");
    assert_eq!(
        w4.labels()
            .iter()
            .find(|(k, _)| *k == "agent_type")
            .map(|(_, v)| v),
        Some("indexer")
    );

    // A broken file fails the refresh: everything discovered stays.
    std::fs::write(run.path("targets/a.json"), "[{\"targets\": ").unwrap();
    run.wait_for_metrics(WAIT, |m| {
        metric(
            m,
            "agent_exporter_discovery_refresh_failures_total{source=\"file_sd/0\"}",
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(
        run.names().len(),
        4,
        "last good targets kept: {:?}",
        run.names()
    );
    assert!(Arc::ptr_eq(&w1, &run.exporter.monitor.agent("w1").unwrap()));

    // Removing the files empties the source.
    std::fs::remove_file(run.path("targets/a.json")).unwrap();
    std::fs::remove_file(run.path("targets/b.yaml")).unwrap();
    run.wait_for_fleet(&["static-1"], WAIT).await;
    let m = run.metrics();
    assert_eq!(
        metric(&m, "agent_exporter_discovery_targets{source=\"file_sd/0\"}"),
        Some(0.0)
    );
    assert!(metric(
        &m,
        "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"relabel\"}"
    )
    .is_some_and(|v| v >= 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_a_static_agent_or_earlier_source_is_dropped_and_counted() {
    let config = r#"
agents:
  - {name: taken, type: planner, url: "http://127.0.0.1:9/static"}
discovery:
  - file_sd: {files: ["one.json"]}
    type: worker
  - file_sd: {files: ["two.json"]}
    type: worker
"#;
    let one = groups(&[
        ("taken", "127.0.0.1:9"),
        ("shared", "127.0.0.1:9"),
        ("only-one", "127.0.0.1:9"),
    ]);
    let two = groups(&[("shared", "127.0.0.2:9"), ("only-two", "127.0.0.1:9")]);
    let run = Running::start(config, &[("one.json", &one), ("two.json", &two)]).await;
    run.wait_for_fleet(&["only-one", "only-two", "shared", "taken"], WAIT)
        .await;
    run.wait_for_metrics(WAIT, |m| {
        metric(m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/1\",reason=\"duplicate_name\"}") == Some(1.0)
    })
    .await;
    let m = run.metrics();
    assert_eq!(
        metric(&m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"duplicate_name\"}"),
        Some(1.0)
    );
    let taken = run.exporter.monitor.agent("taken").unwrap();
    assert_eq!(
        taken
            .labels()
            .iter()
            .find(|(k, _)| *k == "agent_type")
            .map(|(_, v)| v),
        Some("planner")
    );
    assert_eq!(run.origin("taken"), "static");
    assert!(
        run.origin("shared").starts_with("file_sd/0 "),
        "first source wins: {}",
        run.origin("shared")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_without_a_name_or_type_are_dropped_and_counted() {
    let config = "discovery:\n  - file_sd: {files: [t.json]}\n";
    let doc = r#"[{"targets": ["127.0.0.1:9"], "labels": {"agent": "typed", "agent_type": "w"}},
                 {"targets": ["127.0.0.1:9"], "labels": {"agent": "untyped"}},
                 {"targets": ["127.0.0.1:9"], "labels": {"agent_type": "w"}}]"#;
    let run = Running::start(config, &[("t.json", doc)]).await;
    run.wait_for_fleet(&["typed"], WAIT).await;
    run.wait_for_metrics(WAIT, |m| {
        metric(m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"missing_type\"}") == Some(1.0)
            && metric(m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"missing_name\"}") == Some(1.0)
    })
    .await;
}
