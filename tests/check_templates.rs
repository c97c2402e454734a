//! Check templates: an agent uses the check named by `check:`, else the one named like its type,
//! else only `defaults`; its own keys beat its check's, which beat `defaults`; maps merge key
//! by key, other keys replace. Also `--config.check` naming each agent's check, and
//! `resolve_agent` resolving a discovered agent the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agent_health_exporter::config::{
    self, AgentFields, AgentSpec, Auth, ConfigError, JsonMatch, StatusMatch,
};
use serde_json::json;

fn load(yaml: &str) -> config::Config {
    config::parse(yaml, "fleet.yaml", Path::new("/nonexistent-dir"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn agent<'a>(config: &'a config::Config, name: &str) -> &'a AgentSpec {
    &config
        .agents
        .iter()
        .find(|a| a.spec.name == name)
        .unwrap_or_else(|| panic!("no agent {name}"))
        .spec
}

fn check_of(config: &config::Config, name: &str) -> Option<String> {
    config
        .agents
        .iter()
        .find(|a| a.spec.name == name)
        .and_then(|a| a.check.clone())
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn headers(spec: &AgentSpec) -> Vec<(String, String)> {
    spec.http
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect()
}

fn json_matches(items: &[(&str, serde_json::Value)]) -> Vec<JsonMatch> {
    items
        .iter()
        .map(|(p, v)| JsonMatch {
            pointer: p.to_string(),
            value: v.clone(),
        })
        .collect()
}

const LAYERS: &str = r#"
defaults:
  interval: 40s
  timeout: 4s
  failure_threshold: 3
  success_threshold: 3
  labels: {env: prod, team: defaults, tier: d}
checks:
  planner:
    interval: 20s
    failure_threshold: 2
    labels: {team: check, zone: a}
    http:
      method: HEAD
      headers: {X-Probe: check, X-Check: "1"}
      follow_redirects: false
      max_body_bytes: 1KiB
    expect:
      status: [204]
      body_contains: from-check
      json: {"/status": "ok", "/version": 1}
    degraded:
      latency_above: 2s
      json: {"/load": "high", "/queue": "full"}
agents:
  - name: own
    type: planner
    url: http://127.0.0.1:1/health
    interval: 10s
    labels: {zone: b, own: "yes"}
    http:
      headers: {x-probe: own, X-Own: "1"}
      max_body_bytes: 2KiB
    expect:
      json: {"/status": "fine", "/extra": true}
    degraded:
      json: {"/queue": "long"}
  - name: plain
    type: planner
    url: http://127.0.0.1:1/health
"#;

#[test]
fn scalars_come_from_the_agent_then_its_check_then_defaults() {
    let config = load(LAYERS);
    let own = agent(&config, "own");
    assert_eq!(own.interval, Duration::from_secs(10), "agent beats check");
    assert_eq!(own.failure_threshold, 2, "check beats defaults");
    assert_eq!(own.success_threshold, 3, "defaults fill the rest");
    assert_eq!(own.timeout, Duration::from_secs(4));
    assert_eq!(own.http.method, http::Method::HEAD);
    assert!(!own.http.follow_redirects);
    assert_eq!(own.http.max_body_bytes, 2048, "agent beats check");
    assert_eq!(own.expect.status, vec![StatusMatch::Code(204)]);
    assert_eq!(own.expect.body_contains.as_deref(), Some("from-check"));
    assert_eq!(own.degraded.latency_above, Some(Duration::from_secs(2)));

    let plain = agent(&config, "plain");
    assert_eq!(
        plain.interval,
        Duration::from_secs(20),
        "check beats defaults"
    );
    assert_eq!(plain.http.max_body_bytes, 1024);
}

#[test]
fn every_map_merges_key_by_key_across_the_three_layers() {
    let config = load(LAYERS);
    let own = agent(&config, "own");
    assert_eq!(
        own.labels,
        pairs(&[
            ("env", "prod"),
            ("own", "yes"),
            ("team", "check"),
            ("tier", "d"),
            ("zone", "b"),
        ])
    );
    // Header names are case-insensitive: the agent's x-probe replaces the check's X-Probe.
    assert_eq!(
        headers(own),
        pairs(&[("x-check", "1"), ("x-own", "1"), ("x-probe", "own")])
    );
    assert_eq!(
        own.expect.json,
        json_matches(&[
            ("/extra", json!(true)),
            ("/status", json!("fine")),
            ("/version", json!(1)),
        ])
    );
    assert_eq!(
        own.degraded.json,
        json_matches(&[("/load", json!("high")), ("/queue", json!("long"))])
    );
}

#[test]
fn check_key_beats_the_check_named_like_the_type_and_no_match_means_defaults() {
    let yaml = "defaults: {interval: 40s}\nchecks:\n  worker: {interval: 20s}\n  strict: {interval: 5s, timeout: 1s}\nagents:\n  - {name: by-type, type: worker, url: 'http://h/'}\n  - {name: by-key, type: worker, check: strict, url: 'http://h/'}\n  - {name: none, type: other, url: 'http://h/'}\n";
    let config = load(yaml);
    assert_eq!(agent(&config, "by-type").interval, Duration::from_secs(20));
    assert_eq!(check_of(&config, "by-type").as_deref(), Some("worker"));
    assert_eq!(agent(&config, "by-key").interval, Duration::from_secs(5));
    assert_eq!(check_of(&config, "by-key").as_deref(), Some("strict"));
    assert_eq!(agent(&config, "none").interval, Duration::from_secs(40));
    assert_eq!(check_of(&config, "none"), None);
}

#[test]
fn auth_and_tls_replace_the_checks_as_a_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok\n").expect("write");
    std::fs::write(dir.path().join("password"), "pw\n").expect("write");
    let yaml = "checks:\n  t:\n    http:\n      bearer_token_file: token\n      tls: {server_name: check.internal, insecure_skip_verify: true}\nagents:\n  - name: a\n    type: t\n    url: https://h/\n    http:\n      basic_auth: {username: u, password_file: password}\n      tls: {server_name: own.internal}\n";
    let config = config::parse(yaml, "fleet.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let spec = &config.agents[0].spec;
    match &spec.http.auth {
        Some(Auth::Basic { username, password }) => {
            assert_eq!(username, "u");
            assert_eq!(password.expose(), "pw");
        }
        other => panic!("expected the agent's basic auth, got {other:?}"),
    }
    assert_eq!(spec.http.server_name.as_deref(), Some("own.internal"));
    // Not mixed with the check's insecure_skip_verify: the agent's tls is the whole setting.
    let secure = load("agents:\n  - {name: a, type: t, url: 'https://h/', http: {tls: {server_name: own.internal}}}\n");
    assert_eq!(spec.http.tls, secure.agents[0].spec.http.tls);
}

#[test]
fn unknown_check_is_reported_at_the_check_key_with_the_known_names() {
    let yaml = "checks:\n  worker: {interval: 20s}\n  planner: {interval: 10s}\nagents:\n  - name: a\n    type: worker\n    check: wroker\n    url: http://h/\n";
    let err = config::parse(yaml, "fleet.yaml", Path::new(".")).expect_err("must fail");
    let ConfigError::Invalid(issues) = err else {
        panic!("{err}")
    };
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(
        issues[0].to_string(),
        "fleet.yaml:7:12: agent \"a\": unknown check \"wroker\" (fix: use one of the checks: planner, worker)"
    );
}

#[test]
fn a_mistake_in_a_check_is_reported_once_at_the_check() {
    let yaml = "checks:\n  worker:\n    interval: soon\nagents:\n  - {name: a, type: worker, url: 'http://h/'}\n  - {name: b, type: worker, url: 'http://h/'}\n";
    let err = config::parse(yaml, "fleet.yaml", Path::new(".")).expect_err("must fail");
    let issues = err.issues();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(
        issues[0].starts_with("fleet.yaml:3:15: `interval`: \"soon\" is not a duration"),
        "{issues:?}"
    );
}

#[test]
fn protocol_accepts_http_and_names_the_choices_otherwise() {
    let config =
        load("checks:\n  t: {protocol: http}\nagents:\n  - {name: a, type: t, url: 'http://h/'}\n");
    assert_eq!(config.agents.len(), 1);
    let err = config::parse(
        "checks:\n  t:\n    protocol: smtp\nagents: []\n",
        "fleet.yaml",
        Path::new("."),
    )
    .expect_err("must fail");
    assert_eq!(
        err.issues(),
        vec!["fleet.yaml:3:15: check \"t\": unknown protocol \"smtp\" (fix: use one of: http, mcp, a2a)"]
    );
}

#[test]
fn discovered_agent_resolves_through_its_types_check_like_a_static_one() {
    let config = load(LAYERS);
    let fields = AgentFields {
        name: "found".into(),
        agent_type: "planner".into(),
        check: None,
        url: "http://127.0.0.1:1/health".into(),
        labels: BTreeMap::from([("zone".to_owned(), "c".to_owned())]),
    };
    let found = config::resolve_agent(&fields, &config.templates, "file_sd targets.json")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(found.check.as_deref(), Some("planner"));
    let plain = agent(&config, "plain");
    assert_eq!(found.spec.interval, plain.interval);
    assert_eq!(found.spec.expect, plain.expect);
    assert_eq!(
        found.spec.labels,
        pairs(&[
            ("env", "prod"),
            ("team", "check"),
            ("tier", "d"),
            ("zone", "c")
        ])
    );

    let unknown = AgentFields {
        check: Some("nope".into()),
        ..fields
    };
    let issues = config::resolve_agent(&unknown, &config.templates, "file_sd targets.json")
        .expect_err("unknown check");
    assert_eq!(
        issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["file_sd targets.json: agent \"found\": unknown check \"nope\" (fix: use one of the checks: planner)"]
    );
}

#[test]
fn config_check_prints_the_check_of_every_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        "checks:\n  worker: {interval: 20s}\n  strict: {interval: 5s, timeout: 1s}\nagents:\n  - {name: by-type, type: worker, url: 'http://h/'}\n  - {name: by-key, type: worker, check: strict, url: 'http://h/'}\n  - {name: none, type: other, url: 'tcp://h:1'}\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_agent-health-exporter"))
        .arg(format!("--config.file={}", path.display()))
        .arg("--config.check")
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("agent=")).collect();
    assert_eq!(
        lines,
        vec![
            "agent=by-type type=worker check=worker target=http://h/ interval=20s timeout=5s",
            "agent=by-key type=worker check=strict target=http://h/ interval=5s timeout=1s",
            "agent=none type=other check=- target=tcp://h:1 interval=30s timeout=5s",
        ],
        "{stdout}"
    );
}
