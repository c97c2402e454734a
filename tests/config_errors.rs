//! Every config mistake is reported with file, line, column and a fix; all of them at once.

use std::path::Path;

use agent_health_exporter::config::{self, ConfigError, ConfigIssue};

fn issues(yaml: &str) -> Vec<ConfigIssue> {
    match config::parse(yaml, "fleet.yaml", Path::new("/nonexistent-dir")) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// The single issue of `yaml`, checked for its place and that it carries a fix.
fn one_issue(yaml: &str, line: u64, column: u64, needle: &str) -> ConfigIssue {
    let all = issues(yaml);
    assert_eq!(all.len(), 1, "expected one issue, got {all:#?}");
    let issue = all[0].clone();
    assert_eq!(issue.file, "fleet.yaml");
    assert_eq!((issue.line, issue.column), (line, column), "{issue}");
    assert!(issue.message.contains(needle), "{issue}");
    assert!(!issue.fix.is_empty(), "no fix in {issue}");
    let shown = issue.to_string();
    assert!(
        shown.starts_with(&format!("fleet.yaml:{line}:{column}: ")),
        "{shown}"
    );
    issue
}

const AGENT: &str =
    "agents:\n  - name: planner\n    type: orchestrator\n    url: http://127.0.0.1:8081/health\n";

#[test]
fn unknown_key_is_reported_with_its_place() {
    let yaml = format!("{AGENT}    intervall: 10s\n");
    one_issue(&yaml, 5, 5, "unknown field `intervall`");
}

#[test]
fn unknown_top_level_key_is_reported() {
    one_issue("agent:\n  - name: x\n", 1, 1, "unknown field `agent`");
}

#[test]
fn missing_name_type_and_url_are_each_reported_at_the_agent() {
    let all = issues("agents:\n  - labels: {team: core}\n");
    let messages: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 3, "{messages:#?}");
    for key in ["`name`", "`type`", "`url`"] {
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("fleet.yaml:2:5: ") && m.contains(key)),
            "{key} missing in {messages:#?}"
        );
    }
}

#[test]
fn duplicate_name_points_at_the_second_use_and_names_the_first() {
    let yaml = format!("{AGENT}  - name: planner\n    type: worker\n    url: tcp://10.0.0.1:80\n");
    let issue = one_issue(&yaml, 5, 11, "duplicate agent name");
    assert!(issue.message.contains("line 2"), "{issue}");
}

#[test]
fn unsupported_url_scheme_is_reported() {
    one_issue(
        "agents:\n  - name: a\n    type: t\n    url: ftp://files.internal/health\n",
        4,
        10,
        "unsupported URL scheme",
    );
}

#[test]
fn malformed_url_is_reported() {
    one_issue(
        "agents:\n  - name: a\n    type: t\n    url: not a url\n",
        4,
        10,
        "not a valid URL",
    );
}

#[test]
fn tcp_url_without_port_is_reported() {
    one_issue(
        "agents:\n  - name: a\n    type: t\n    url: tcp://10.0.0.1\n",
        4,
        10,
        "host and a port",
    );
}

#[test]
fn timeout_not_below_interval_is_reported() {
    let yaml = format!("{AGENT}    interval: 10s\n    timeout: 10s\n");
    one_issue(&yaml, 6, 14, "not shorter than interval");
}

#[test]
fn timeout_from_defaults_above_agent_interval_is_reported() {
    let yaml = format!("defaults: {{timeout: 20s}}\n{AGENT}    interval: 10s\n");
    one_issue(&yaml, 6, 15, "not shorter than interval");
}

#[test]
fn zero_duration_is_reported() {
    let yaml = format!("{AGENT}    interval: 0s\n");
    one_issue(&yaml, 5, 15, "longer than zero");
}

#[test]
fn unparsable_duration_is_reported() {
    let yaml = format!("{AGENT}    interval: often\n");
    one_issue(&yaml, 5, 15, "is not a duration");
}

#[test]
fn duration_without_unit_is_reported() {
    let yaml = format!("defaults:\n  interval: 30\n{AGENT}");
    one_issue(&yaml, 2, 13, "is not a duration");
}

#[test]
fn invalid_regex_is_reported() {
    let yaml = format!("{AGENT}    expect:\n      body_regex: \"(unclosed\"\n");
    one_issue(&yaml, 6, 19, "not a valid regular expression");
}

#[test]
fn invalid_json_pointer_is_reported() {
    let yaml = format!("{AGENT}    expect:\n      json: {{\"status\": ok}}\n");
    one_issue(&yaml, 6, 13, "not a JSON Pointer");
}

#[test]
fn unreadable_secret_file_is_reported() {
    let yaml = format!("{AGENT}    http:\n      bearer_token_file: /nonexistent/token\n");
    let issue = one_issue(&yaml, 6, 26, "cannot read /nonexistent/token");
    assert!(issue.message.contains("bearer_token_file"), "{issue}");
}

#[test]
fn unreadable_password_file_is_reported() {
    let yaml =
        format!("{AGENT}    http:\n      basic_auth: {{username: probe, password_file: pw.txt}}\n");
    one_issue(&yaml, 6, 52, "cannot read /nonexistent-dir/pw.txt");
}

#[test]
fn reserved_label_name_is_reported() {
    let yaml = format!("{AGENT}    labels: {{agent_type: x}}\n");
    one_issue(&yaml, 5, 13, "set by the exporter itself");
}

#[test]
fn invalid_status_expectation_is_reported() {
    let yaml = format!("{AGENT}    expect:\n      status: [200, \"9xx\"]\n");
    one_issue(&yaml, 6, 15, "not a status code or class");
}

#[test]
fn http_options_on_a_tcp_agent_are_reported() {
    one_issue(
        "agents:\n  - name: a\n    type: t\n    url: tcp://10.0.0.1:80\n    expect: {status: 200}\n",
        5,
        13,
        "applies only to http",
    );
}

#[test]
fn zero_threshold_is_reported() {
    let yaml = format!("{AGENT}    failure_threshold: 0\n");
    one_issue(&yaml, 5, 24, "at least 1");
}

#[test]
fn yaml_syntax_error_is_reported_with_its_place() {
    let all = issues("agents:\n  - name: a\n    type: t\n    url: \"http://x/\n  - name: b\n");
    assert_eq!(all.len(), 1);
    let issue = &all[0];
    // The quote that never closes opens at line 4, column 10.
    assert_eq!((issue.line, issue.column), (4, 10), "{issue}");
    assert!(issue.message.contains("unclosed quote"), "{issue}");
    assert!(
        !issue.message.contains("line 4"),
        "the place is not repeated: {issue}"
    );
    assert!(issue.fix.contains("YAML syntax"), "{issue}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "agents:\n  - name: a\n    type: t\n    url: ftp://x/\n    interval: 0s\n  - name: a\n    type: t\n    url: http://h/\n";
    let all = issues(yaml);
    assert_eq!(all.len(), 3, "{all:#?}");
}

#[test]
fn missing_config_file_names_the_path_and_the_flag() {
    let err = config::load(Path::new("/nonexistent/fleet.yaml")).expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/fleet.yaml"), "{text}");
    assert!(text.contains("--config.file"), "{text}");
}

#[test]
fn defaults_apply_and_agents_override_them() {
    let yaml = "defaults:\n  interval: 10s\n  timeout: 2s\n  failure_threshold: 3\n  labels: {env: prod, team: x}\nagents:\n  - name: a\n    type: t\n    url: http://h/\n    labels: {team: core}\n  - name: b\n    type: t\n    url: tcp://h:1\n    interval: 1s\n    timeout: 500ms\n";
    let config = config::parse(yaml, "fleet.yaml", Path::new(".")).expect("valid");
    let a = &config.agents[0].spec;
    assert_eq!(a.interval.as_secs(), 10);
    assert_eq!(a.timeout.as_secs(), 2);
    assert_eq!(a.failure_threshold, 3);
    assert_eq!(
        a.labels,
        vec![
            ("env".into(), "prod".into()),
            ("team".into(), "core".into())
        ]
    );
    let b = &config.agents[1].spec;
    assert_eq!(b.interval.as_secs(), 1);
    assert_eq!(b.timeout.as_millis(), 500);
}

#[test]
fn credentials_in_the_url_become_basic_auth_and_leave_the_target() {
    let yaml =
        "agents:\n  - name: a\n    type: t\n    url: http://probe:s3cr%40t@10.0.0.1:8080/health\n";
    let config = config::parse(yaml, "fleet.yaml", Path::new(".")).expect("valid");
    let spec = &config.agents[0].spec;
    assert_eq!(spec.target.display(), "http://10.0.0.1:8080/health");
    match &spec.http.auth {
        Some(config::Auth::Basic { username, password }) => {
            assert_eq!(username, "probe");
            assert_eq!(password.expose(), "s3cr@t");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
}

#[test]
fn secret_files_are_read_relative_to_the_config_file_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok-123\n").expect("write");
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        "agents:\n  - name: a\n    type: t\n    url: http://h/\n    http: {bearer_token_file: token}\n",
    )
    .expect("write");
    let config = config::load(&path).expect("valid");
    match &config.agents[0].spec.http.auth {
        Some(config::Auth::Bearer(token)) => assert_eq!(token.expose(), "tok-123"),
        other => panic!("expected a bearer token, got {other:?}"),
    }
}

#[test]
fn a_rotated_secret_keeps_the_spec_equal_and_is_adopted_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "one").expect("write");
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        "agents:\n  - name: a\n    type: t\n    url: http://h/\n    http: {bearer_token_file: token}\n  - name: b\n    type: t\n    url: http://h/b\n",
    )
    .expect("write");
    let first = config::load(&path).expect("valid");
    let again = config::load(&path).expect("valid");
    assert_eq!(first.agents[0].spec, again.agents[0].spec);
    assert!(!first.agents[0].spec.adopt_secrets(&again.agents[0].spec));
    std::fs::write(&token, "two").expect("write");
    let changed = config::load(&path).expect("valid");
    // Same file, same way of probing: equal, so a reload keeps the agent...
    assert_eq!(first.agents[0].spec, changed.agents[0].spec);
    assert_ne!(first.agents[0].spec, first.agents[1].spec);
    // ...and takes the new value into the running spec's cell.
    assert!(first.agents[0].spec.adopt_secrets(&changed.agents[0].spec));
    match &first.agents[0].spec.http.auth {
        Some(config::Auth::Bearer(token)) => assert_eq!(token.expose(), "two"),
        other => panic!("expected a bearer token, got {other:?}"),
    }
    assert!(!first.agents[1].spec.adopt_secrets(&changed.agents[1].spec));
}

#[test]
fn every_setting_takes_part_in_spec_equality() {
    let spec = |agent_extra: &str| {
        let yaml = format!(
            "agents:\n  - {{name: a, type: t, url: 'https://127.0.0.1:1/'{agent_extra}}}\n"
        );
        config::parse(&yaml, "t.yaml", Path::new("."))
            .unwrap_or_else(|e| panic!("{agent_extra}: {e}"))
            .agents[0]
            .spec
            .clone()
    };
    let variants = [
        "",
        ", interval: 20s",
        ", timeout: 2s",
        ", failure_threshold: 2",
        ", success_threshold: 2",
        ", labels: {team: x}",
        ", http: {method: HEAD}",
        ", http: {headers: {X-A: b}}",
        ", http: {follow_redirects: false}",
        ", http: {max_body_bytes: 10}",
        ", http: {tls: {insecure_skip_verify: true}}",
        ", http: {tls: {server_name: other}}",
        ", expect: {status: 204}",
        ", expect: {status: 2xx}",
        ", expect: {body_contains: ok}",
        ", expect: {body_regex: ok}",
        ", expect: {json: {/a: 1}}",
        ", expect: {json: {/a: '1'}}",
        ", expect: {json: {/b: 1}}",
        ", degraded: {latency_above: 1s}",
        ", degraded: {json: {/a: 1}}",
    ];
    let specs: Vec<_> = variants.iter().map(|v| spec(v)).collect();
    for (i, a) in specs.iter().enumerate() {
        assert_eq!(*a, spec(variants[i]), "stable: {}", variants[i]);
        for (j, b) in specs.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "{} vs {}", variants[i], variants[j]);
        }
    }
}

#[test]
fn url_credentials_beside_a_bearer_token_file_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "t0ken").expect("write");
    let yaml = "agents:\n  - name: a\n    type: t\n    url: http://u:p@h/\n    http: {bearer_token_file: token}\n";
    match config::parse(yaml, "fleet.yaml", dir.path()) {
        Ok(_) => panic!("two ways to authenticate were accepted"),
        Err(ConfigError::Invalid(issues)) => assert!(
            issues.iter().any(|i| i
                .message
                .contains("the url has credentials and `bearer_token_file`")),
            "{issues:#?}"
        ),
        Err(other) => panic!("unexpected error: {other}"),
    }
}
