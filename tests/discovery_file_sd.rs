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

fn file_failures(run: &Running) -> f64 {
    metric(
        &run.metrics(),
        "agent_exporter_discovery_refresh_failures_total{source=\"file_sd/0\"}",
    )
    .unwrap_or(0.0)
}

async fn wait_for_file_failures_above(run: &Running, than: f64) -> f64 {
    run.wait_for_metrics(WAIT, |m| {
        metric(
            m,
            "agent_exporter_discovery_refresh_failures_total{source=\"file_sd/0\"}",
        )
        .is_some_and(|v| v > than)
    })
    .await;
    file_failures(run)
}

const TWO_FILES: &str =
    "discovery:\n  - file_sd: {files: [\"a.yaml\", \"b.json\"]}\n    type: worker\n";

const A_YAML: &str = "- targets: ['127.0.0.1:9']\n  labels: {agent: w1}\n- targets: ['127.0.0.1:9']\n  labels: {agent: w2}\n";

/// A file caught half-written keeps its own last good targets (counted as a failure), while
/// another file of the same source is followed as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_file_keeps_its_own_targets_while_other_files_of_the_source_update() {
    let b = groups(&[("v1", "127.0.0.1:9")]);
    let run = Running::start(TWO_FILES, &[("a.yaml", A_YAML), ("b.json", &b)]).await;
    run.wait_for_fleet(&["v1", "w1", "w2"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").expect("w1");
    let before = file_failures(&run);

    std::fs::write(
        run.path("a.yaml"),
        "- targets: ['127.0.0.1:9']\n  labels: {agent: w1}\n- targets: ['127.0.0.1:9']\n  labels: {agent: w",
    )
    .unwrap();
    replace_atomically(
        &run.path("b.json"),
        &groups(&[("v1", "127.0.0.1:9"), ("v2", "127.0.0.1:9")]),
    );
    run.wait_for_fleet(&["v1", "v2", "w1", "w2"], WAIT).await;
    wait_for_file_failures_above(&run, before).await;
    assert!(
        Arc::ptr_eq(&w1, &run.exporter.monitor.agent("w1").unwrap()),
        "the cut file's agents keep their state"
    );

    // The file written whole again is read as usual.
    replace_atomically(
        &run.path("a.yaml"),
        "- targets: ['127.0.0.1:9']\n  labels: {agent: w1}\n",
    );
    run.wait_for_fleet(&["v1", "v2", "w1"], WAIT).await;
}

/// A file that keeps failing is read again when it changes or at `refresh_interval`, not at
/// every look (once a second), and each failure is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_unchanged_file_is_read_again_on_change_or_at_refresh_interval_only() {
    let config =
        "discovery:\n  - file_sd: {files: [\"a.yaml\"], refresh_interval: 4s}\n    type: worker\n";
    let run = Running::start(config, &[("a.yaml", A_YAML)]).await;
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    std::fs::write(run.path("a.yaml"), "- targets: [").unwrap();
    let failed = wait_for_file_failures_above(&run, 0.0).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        file_failures(&run),
        failed,
        "an unchanged broken file was read again before refresh_interval"
    );
    assert_eq!(run.names().len(), 2, "{:?}", run.names());
    // At refresh_interval it is read again, and fails again.
    wait_for_file_failures_above(&run, failed).await;
}

/// A file emptied by a writer that is about to fill it (an in-place write) keeps its agents:
/// a zero-byte file is read again a moment later before it empties the source. One that stays
/// empty does empty it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_emptied_for_a_moment_keeps_its_agents_and_one_left_empty_loses_them() {
    let run = Running::start(TWO_FILES, &[("a.yaml", A_YAML)]).await;
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").expect("w1");
    let watch = {
        let monitor = run.exporter.monitor.clone();
        tokio::spawn(async move {
            let mut lost = 0;
            for _ in 0..250 {
                if monitor.agent("w1").is_none() {
                    lost += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lost
        })
    };
    // Five in-place writes, each leaving the file empty for 0.6 s: the looks of the file,
    // once a second, catch most of them empty.
    for _ in 0..5 {
        std::fs::write(run.path("a.yaml"), "").unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        std::fs::write(run.path("a.yaml"), A_YAML).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let lost = watch.await.unwrap();
    assert_eq!(lost, 0, "w1 was gone in {lost} of 250 looks");
    assert!(
        Arc::ptr_eq(&w1, &run.exporter.monitor.agent("w1").unwrap()),
        "w1 kept its state"
    );

    std::fs::write(run.path("a.yaml"), "").unwrap();
    run.wait_for_fleet(&[], WAIT).await;
}

/// The default path `/health` belongs to http and https targets: a grpc, grpcs or tcp target
/// needs no `__path__: ""` to become an agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_tcp_targets_get_no_default_path() {
    let doc = r#"[{"targets": ["127.0.0.1:9"], "labels": {"agent": "g", "__scheme__": "grpc"}},
                 {"targets": ["127.0.0.1:9"], "labels": {"agent": "gs", "__scheme__": "grpcs"}},
                 {"targets": ["127.0.0.1:9"], "labels": {"agent": "t", "__scheme__": "tcp"}},
                 {"targets": ["127.0.0.1:9"], "labels": {"agent": "h"}}]"#;
    let run = Running::start(
        "discovery:\n  - file_sd: {files: [t.json]}\n    type: worker\n",
        &[("t.json", doc)],
    )
    .await;
    run.wait_for_fleet(&["g", "gs", "h", "t"], WAIT).await;
    for (name, url) in [
        ("g", "grpc://127.0.0.1:9"),
        ("gs", "grpcs://127.0.0.1:9"),
        ("t", "tcp://127.0.0.1:9"),
        ("h", "http://127.0.0.1:9/health"),
    ] {
        let answer = harness::get(run.addr, &format!("/api/v1/agents/{name}")).unwrap();
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            text.contains(&format!("\"target\":\"{url}\"")),
            "{name}: {text}"
        );
    }
}

/// A source bounds what it holds: more targets than `max_targets`, a label value, a label
/// name or a label count beyond the bounds fail the refresh, which keeps the last good targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_beyond_the_bounds_fails_and_keeps_the_last_good_targets() {
    let config =
        "discovery:\n  - file_sd: {files: [t.json]}\n    type: worker\n    max_targets: 3\n";
    let run = Running::start(config, &[("t.json", &groups(&[("w1", "127.0.0.1:9")]))]).await;
    run.wait_for_fleet(&["w1"], WAIT).await;
    let long_value = "v".repeat(4097);
    let long_name = format!("l{}", "n".repeat(256));
    let many: serde_json::Map<String, serde_json::Value> = (0..70)
        .map(|i| (format!("l{i}"), serde_json::Value::from("x")))
        .chain([("agent".to_owned(), "many".into())])
        .collect();
    let mut seen = file_failures(&run);
    for doc in [
        groups(&[
            ("a", "127.0.0.1:9"),
            ("b", "127.0.0.1:9"),
            ("c", "127.0.0.1:9"),
            ("d", "127.0.0.1:9"),
        ]),
        serde_json::json!([{"targets": ["127.0.0.1:9"], "labels": {"agent": "long", "note": long_value}}]).to_string(),
        serde_json::json!([{"targets": ["127.0.0.1:9"], "labels": {"agent": "name", long_name.clone(): "x"}}]).to_string(),
        serde_json::json!([{"targets": ["127.0.0.1:9"], "labels": many}]).to_string(),
    ] {
        replace_atomically(&run.path("t.json"), &doc);
        seen = wait_for_file_failures_above(&run, seen).await;
        assert_eq!(run.names(), ["w1".to_owned()].into(), "last good targets kept");
    }
    replace_atomically(
        &run.path("t.json"),
        &groups(&[
            ("a", "127.0.0.1:9"),
            ("b", "127.0.0.1:9"),
            ("c", "127.0.0.1:9"),
        ]),
    );
    run.wait_for_fleet(&["a", "b", "c"], WAIT).await;
}
