//! Config mistakes that used to load and lose something without a word: names that differ only
//! by surrounding whitespace, credentials given twice, durations beyond any sensible check.
//! Each is an error with its place and its fix.

use std::path::Path;

use agent_health_exporter::config::{self, ConfigError, ConfigIssue};

/// Every issue of `yaml`, which must be refused; relative files are read from `dir`.
fn issues_in(dir: &Path, yaml: &str) -> Vec<ConfigIssue> {
    match config::parse(yaml, "fleet.yaml", dir) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// The single issue of `yaml`, shown exactly as `--config.check` prints it.
fn one_issue(dir: &Path, yaml: &str) -> String {
    let all = issues_in(dir, yaml);
    assert_eq!(all.len(), 1, "expected one issue, got {all:#?}");
    all[0].to_string()
}

fn no_dir() -> &'static Path {
    Path::new("/nonexistent-dir")
}

#[test]
fn name_with_trailing_space_is_refused_with_the_trimmed_fix() {
    let yaml = "agents:\n  - name: \"a \"\n    type: t\n    url: http://h/\n  - name: a\n    type: t\n    url: http://h/b\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:2:11: agent \"a \": `name` has leading or trailing whitespace (fix: remove it: `name: \"a\"`)"
    );
}

#[test]
fn type_with_leading_space_is_refused() {
    let yaml = "agents:\n  - name: a\n    type: \" worker\"\n    url: http://h/\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:3:11: agent \"a\": `type` has leading or trailing whitespace (fix: remove it: `type: \"worker\"`)"
    );
}

#[test]
fn url_credentials_with_a_bearer_token_file_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok\n").expect("write");
    let yaml = "agents:\n  - name: a\n    type: t\n    url: http://u:p@h/\n    http: {bearer_token_file: token}\n";
    assert_eq!(
        one_issue(dir.path(), yaml),
        "fleet.yaml:4:10: agent \"a\": the url has credentials and `bearer_token_file` (line 5) is set too (fix: keep one: remove the user and password from the url, or `bearer_token_file`)"
    );
}

#[test]
fn url_credentials_with_basic_auth_are_refused() {
    let yaml = "agents:\n  - name: a\n    type: t\n    url: http://u:p@h/\n    http:\n      basic_auth: {username: x}\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:4:10: agent \"a\": the url has credentials and `basic_auth` (line 6) is set too (fix: keep one: remove the user and password from the url, or `basic_auth`)"
    );
}

#[test]
fn url_credentials_with_a_checks_bearer_token_are_refused_at_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok\n").expect("write");
    let yaml = "checks:\n  t:\n    http: {bearer_token_file: token}\nagents:\n  - name: a\n    type: t\n    url: http://u:p@h/\n";
    assert_eq!(
        one_issue(dir.path(), yaml),
        "fleet.yaml:7:10: agent \"a\": the url has credentials and `bearer_token_file` (line 3) is set too (fix: keep one: remove the user and password from the url, or `bearer_token_file`)"
    );
}

#[test]
fn absurd_interval_is_refused_with_the_bound() {
    let yaml =
        "agents:\n  - name: a\n    type: t\n    url: http://h/\n    interval: 400000000000y\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:5:15: agent \"a\": `interval` 400000000000years is longer than 24h (fix: set `interval` to at most 24h)"
    );
}

#[test]
fn timeout_over_a_day_in_defaults_is_refused() {
    let yaml = "defaults: {interval: 24h, timeout: 25h}\nagents: []\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:1:36: defaults: `timeout` 1day 1h is longer than 24h (fix: set `timeout` to at most 24h)"
    );
}

#[test]
fn a_day_exactly_is_accepted() {
    let yaml = "agents:\n  - {name: a, type: t, url: 'http://h/', interval: 24h, timeout: 23h}\n";
    let config = config::parse(yaml, "fleet.yaml", no_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.agents[0].spec.interval.as_secs(), 24 * 3600);
}

#[test]
fn an_unknown_check_of_a_discovery_source_is_refused_with_the_checks_there_are() {
    let yaml = "checks:\n  deep: {}\n  shallow: {}\ndiscovery:\n  - file_sd: {files: [a.json]}\n    check: nosuch\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:6:12: discovery source file_sd/0: unknown check \"nosuch\" (fix: use one of the checks: deep, shallow)"
    );
}

#[test]
fn an_unknown_name_in_allowed_checks_is_refused_at_its_place() {
    let yaml = "checks:\n  deep: {}\ndiscovery:\n  - file_sd: {files: [a.json]}\n  - http_sd: {url: 'http://127.0.0.1:1/sd'}\n    allowed_checks: [deep, billing]\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:6:28: discovery source http_sd/0: allowed_checks: unknown check \"billing\" (fix: use one of the checks: deep)"
    );
    let yaml = "discovery:\n  - file_sd: {files: [a.json]}\n    allowed_checks: [billing]\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:3:22: discovery source file_sd/0: allowed_checks: unknown check \"billing\" (fix: add `checks: {billing: {...}}` or remove it from `allowed_checks`)"
    );
}

#[test]
fn a_sources_known_check_and_allowed_checks_load() {
    let yaml = "checks:\n  deep: {}\n  billing: {}\ndiscovery:\n  - file_sd: {files: [a.json]}\n    check: deep\n    allowed_checks: [billing]\n";
    let config = config::parse(yaml, "fleet.yaml", no_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.discovery.len(), 1);
}
