//! Discovered targets resolve like agents of the file: `__check__`, the source's `check:` and
//! a check named like the type select check templates; and a shard probes only its part of
//! the discovered fleet, with every agent's origin in the JSON list.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use agent_health_exporter::config::StatusMatch;
use agent_health_exporter::shard::{hashmod, Shard};
use harness::discovery::{groups, Running};
use harness::metric;

const WAIT: Duration = Duration::from_secs(10);

const CHECKS: &str = r#"
checks:
  deep: {labels: {probe: deep}, expect: {status: [204]}}
  shallow: {labels: {probe: shallow}}
  worker: {labels: {probe: by-type}}
discovery:
  - file_sd: {files: [labelled.json]}
    type: worker
    allowed_checks: [deep]
  - file_sd: {files: [sourced.json]}
    type: indexer
    check: shallow
"#;

fn label(run: &Running, agent: &str, name: &str) -> Option<String> {
    let agent = run.exporter.monitor.agent(agent).expect("agent");
    agent
        .spec
        .labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_targets_pick_checks_by_label_by_source_and_by_type() {
    let labelled = serde_json::json!([
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w-deep", "__check__": "deep"}},
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w-plain"}},
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w-bad", "__check__": "nosuch"}},
    ])
    .to_string();
    let sourced = groups(&[("i-1", "127.0.0.1:9")]);
    let run = Running::start(
        CHECKS,
        &[("labelled.json", &labelled), ("sourced.json", &sourced)],
    )
    .await;
    run.wait_for_fleet(&["i-1", "w-deep", "w-plain"], WAIT)
        .await;

    assert_eq!(label(&run, "w-deep", "probe").as_deref(), Some("deep"));
    let deep = run.exporter.monitor.agent("w-deep").expect("w-deep");
    assert_eq!(deep.spec.expect.status, vec![StatusMatch::Code(204)]);
    // No `__check__`: the check named like the type applies.
    assert_eq!(label(&run, "w-plain", "probe").as_deref(), Some("by-type"));
    assert!(run
        .exporter
        .monitor
        .agent("w-plain")
        .expect("w-plain")
        .spec
        .expect
        .status
        .is_empty());
    // The source's `check:` names the check of targets that set none.
    assert_eq!(label(&run, "i-1", "probe").as_deref(), Some("shallow"));
    // An unknown check makes the target no valid agent: dropped and counted.
    run.wait_for_metrics(WAIT, |text| {
        metric(
            text,
            "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"invalid\"}",
        ) == Some(1.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_probes_only_its_part_of_the_discovered_fleet() {
    let names: Vec<String> = (0..12).map(|i| format!("w{i}")).collect();
    let targets: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "127.0.0.1:9")).collect();
    let config = "agents:\n  - {name: s1, type: planner, url: 'http://127.0.0.1:9/'}\n  - {name: s2, type: planner, url: 'http://127.0.0.1:9/'}\ndiscovery:\n  - file_sd: {files: [t.json]}\n    type: worker\n";
    let shard = Shard::new(1, 2).expect("shard");
    let run = Running::start_sharded(config, &[("t.json", &groups(&targets))], shard).await;
    let all = ["s1", "s2"]
        .into_iter()
        .map(str::to_owned)
        .chain(names.iter().cloned());
    let mine: Vec<String> = all.filter(|n| hashmod(n, 2) == 1).collect();
    assert!(
        !mine.is_empty() && mine.len() < names.len() + 2,
        "the test needs agents on both shards: {mine:?}"
    );
    let want: Vec<&str> = mine.iter().map(String::as_str).collect();
    run.wait_for_fleet(&want, WAIT).await;

    // The JSON list and the event stream's snapshot (which the status page draws from) carry
    // every agent's origin.
    let answer = harness::get(run.addr, "/api/v1/agents").expect("GET");
    let view: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    let origins = |view: &serde_json::Value| -> BTreeSet<(String, String)> {
        view["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .map(|a| {
                let origin = a["origin"].as_str().expect("origin").to_owned();
                (a["name"].as_str().expect("name").to_owned(), origin)
            })
            .collect()
    };
    let listed = origins(&view);
    let mut events = harness::EventStream::connect(run.addr, "/api/v1/events").await;
    let snapshot = events
        .until("snapshot", WAIT)
        .await
        .expect("a snapshot event");
    assert_eq!(origins(&snapshot.data), listed);
    let expected: BTreeSet<(String, String)> = mine
        .iter()
        .map(|n| {
            let origin = if n.starts_with('s') {
                "static".to_owned()
            } else {
                run.origin(n)
            };
            (n.clone(), origin)
        })
        .collect();
    assert_eq!(listed, expected);
    assert!(expected
        .iter()
        .filter(|(n, _)| n.starts_with('w'))
        .all(|(_, o)| o.starts_with("file_sd/0 file=")));
}
