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

#[test]
fn http_sd_max_body_bytes_is_refused_in_favour_of_max_response_bytes() {
    let yaml =
        "discovery:\n  - http_sd:\n      url: http://h/sd\n      http: {max_body_bytes: 1MiB}\n";
    let issue = one_issue(no_dir(), yaml);
    assert!(
        issue.starts_with("fleet.yaml:4:")
            && issue.contains("max_body_bytes")
            && issue.contains("max_response_bytes"),
        "{issue}"
    );
}

#[test]
fn http_sd_method_without_an_answer_body_is_refused() {
    let yaml = "discovery:\n  - http_sd:\n      url: http://h/sd\n      http: {method: HEAD}\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:4:22: http_sd: method HEAD gets no targets: its answer has no body (fix: use GET (the default) or POST)"
    );
}

#[test]
fn max_targets_of_zero_is_refused() {
    let yaml = "discovery:\n  - file_sd: {files: [a.json]}\n    max_targets: 0\n";
    assert_eq!(
        one_issue(no_dir(), yaml),
        "fleet.yaml:3:18: `max_targets` 0 would keep every target out (fix: set at least 1, or remove it for the default 100000)"
    );
}

/// Every key a discovery source takes, with the test that shows it changing what the source
/// does. A key added to the parser and missing here fails `every_discovery_key_changes_behaviour_or_is_refused`:
/// a key must do something, or be refused.
const DISCOVERY_KEYS: &[(&str, &str)] = &[
    ("discovery.file_sd", "discovery_file_sd"),
    ("discovery.file_sd.files", "discovery_file_sd::file_sd_follows_renames_and_in_place_writes_and_keeps_unchanged_agents"),
    ("discovery.file_sd.refresh_interval", "discovery_file_sd::a_broken_unchanged_file_is_read_again_on_change_or_at_refresh_interval_only"),
    ("discovery.http_sd", "discovery_http_sd"),
    ("discovery.http_sd.url", "discovery_http_sd::http_sd_keeps_the_last_good_targets_through_every_kind_of_failure"),
    ("discovery.http_sd.refresh_interval", "discovery_http_sd::an_unchanged_answer_counts_as_a_refresh_and_is_read_again_after_a_reload"),
    ("discovery.http_sd.timeout", "discovery_http_sd::http_sd_keeps_the_last_good_targets_through_every_kind_of_failure (Slow)"),
    ("discovery.http_sd.max_response_bytes", "discovery_http_sd::http_sd_keeps_the_last_good_targets_through_every_kind_of_failure (Oversized)"),
    ("discovery.http_sd.http", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured"),
    ("discovery.http_sd.http.method", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured; HEAD: http_sd_method_without_an_answer_body_is_refused"),
    ("discovery.http_sd.http.headers", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured"),
    ("discovery.http_sd.http.follow_redirects", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured"),
    ("discovery.http_sd.http.bearer_token_file", "discovery_http_sd::http_sd_keeps_the_last_good_targets_through_every_kind_of_failure"),
    ("discovery.http_sd.http.basic_auth", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured"),
    ("discovery.http_sd.http.basic_auth.username", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured"),
    ("discovery.http_sd.http.basic_auth.password_file", "discovery_http_sd::http_sd_sends_its_method_and_headers_and_follows_redirects_as_configured"),
    ("discovery.http_sd.http.tls", "discovery_http_sd::http_sd_tls_keys_decide_whom_the_source_trusts"),
    ("discovery.http_sd.http.tls.ca_file", "discovery_http_sd::http_sd_tls_keys_decide_whom_the_source_trusts"),
    ("discovery.http_sd.http.tls.server_name", "discovery_http_sd::http_sd_tls_keys_decide_whom_the_source_trusts"),
    ("discovery.http_sd.http.tls.insecure_skip_verify", "discovery_http_sd::http_sd_tls_keys_decide_whom_the_source_trusts"),
    // The source's TLS client is the agents' (`TlsClient`), whose client certificate the
    // agent probe's tests present to a server that requires one.
    ("discovery.http_sd.http.tls.cert_file", "probe_tls (the same TlsClient)"),
    ("discovery.http_sd.http.tls.key_file", "probe_tls (the same TlsClient)"),
    ("discovery.dns_sd", "discovery_dns_sd"),
    ("discovery.dns_sd.names", "discovery_dns_sd::dns_sd_follows_srv_records_served_by_dnsmasq"),
    ("discovery.dns_sd.record_type", "discovery_dns_sd::dns_sd_retries_a_resolver_that_cannot_be_set_up (A)"),
    ("discovery.dns_sd.port", "discovery_dns_sd::dns_sd_retries_a_resolver_that_cannot_be_set_up"),
    ("discovery.dns_sd.refresh_interval", "discovery_dns_sd::dns_sd_follows_srv_records_served_by_dnsmasq"),
    ("discovery.dns_sd.nameservers", "discovery_dns_sd::dns_sd_follows_srv_records_served_by_dnsmasq"),
    ("discovery.type", "discovery_file_sd::file_sd_follows_renames_and_in_place_writes_and_keeps_unchanged_agents"),
    ("discovery.check", "discovery_checks"),
    ("discovery.allowed_checks", "discovery_sources::an_sd_target_never_gets_the_credentials_of_a_check_its_source_does_not_allow"),
    ("discovery.max_targets", "discovery_file_sd::a_refresh_beyond_the_bounds_fails_and_keeps_the_last_good_targets"),
    ("discovery.relabel_configs", "discovery_file_sd, relabel (unit tests), realworld (against Prometheus)"),
    ("discovery.relabel_configs.source_labels", "relabel"),
    ("discovery.relabel_configs.separator", "relabel"),
    ("discovery.relabel_configs.regex", "relabel"),
    ("discovery.relabel_configs.modulus", "relabel"),
    ("discovery.relabel_configs.target_label", "relabel"),
    ("discovery.relabel_configs.replacement", "relabel"),
    ("discovery.relabel_configs.action", "relabel"),
];

/// The keys the parser takes in the map at `path` (`(key, is_list)` steps), read from its
/// answer to a key it does not know.
fn keys_at(path: &[(&str, bool)]) -> Option<Vec<String>> {
    const PROBE: &str = "zz_not_a_key";
    let yaml = path
        .iter()
        .rev()
        .fold(format!("{{{PROBE}: 1}}"), |inner, (key, list)| {
            if *list {
                format!("{{{key}: [{inner}]}}")
            } else {
                format!("{{{key}: {inner}}}")
            }
        });
    let issues = match config::parse(&yaml, "fleet.yaml", no_dir()) {
        Err(ConfigError::Invalid(issues)) => issues,
        _ => return None,
    };
    let unknown = format!("unknown field `{PROBE}`, expected ");
    issues.iter().find_map(|issue| {
        let list = issue.message.split_once(&unknown)?.1;
        let list = list.strip_prefix("one of ").unwrap_or(list);
        Some(
            list.split(", ")
                .flat_map(|part| part.split(" or "))
                .map(|key| key.trim().trim_matches('`').to_owned())
                .filter(|key| !key.is_empty())
                .collect(),
        )
    })
}

#[test]
fn every_discovery_key_changes_behaviour_or_is_refused() {
    fn walk(path: &mut Vec<(&'static str, bool)>, out: &mut Vec<String>) {
        let Some(keys) = keys_at(path) else { return };
        for key in keys {
            let key: &'static str = Box::leak(key.into_boxed_str());
            let dotted: Vec<&str> = path.iter().map(|(k, _)| *k).chain([key]).collect();
            out.push(dotted.join("."));
            for list in [false, true] {
                path.push((key, list));
                let nested = keys_at(path).is_some();
                if nested {
                    walk(path, out);
                }
                path.pop();
                if nested {
                    break;
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(&mut vec![("discovery", true)], &mut found);
    let listed: Vec<&str> = DISCOVERY_KEYS.iter().map(|(k, _)| *k).collect();
    let unlisted: Vec<&String> = found
        .iter()
        .filter(|k| !listed.contains(&k.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "discovery keys without a test of what they do (add one, or refuse the key): {unlisted:?}"
    );
    let gone: Vec<&&str> = listed
        .iter()
        .filter(|k| !found.iter().any(|f| f == *k))
        .collect();
    assert!(
        gone.is_empty(),
        "listed keys the parser no longer takes: {gone:?}"
    );
}
