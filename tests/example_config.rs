//! The shipped `config.example.yaml` is what a newcomer starts from: it must parse, and it must
//! show every key of the schema.

use std::path::Path;

use agent_health_exporter::config;

/// Every key of the config schema, as documented in the README.
const SCHEMA_KEYS: &[&str] = &[
    "defaults:",
    "interval:",
    "timeout:",
    "failure_threshold:",
    "success_threshold:",
    "labels:",
    "agents:",
    "name:",
    "type:",
    "url:",
    "http:",
    "method:",
    "headers:",
    "bearer_token_file:",
    "basic_auth:",
    "username:",
    "password_file:",
    "tls:",
    "ca_file:",
    "cert_file:",
    "key_file:",
    "server_name:",
    "insecure_skip_verify:",
    "follow_redirects:",
    "max_body_bytes:",
    "expect:",
    "status:",
    "body_contains:",
    "body_regex:",
    "json:",
    "degraded:",
    "latency_above:",
    "grpc:",
    "service:",
    "metadata:",
    "metadata_files:",
    "authority:",
    "watch:",
    "protocol:",
    "mcp:",
    "expect_tools:",
    "a2a:",
    "expect_skills:",
];

fn example_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")
}

#[test]
fn example_config_parses() {
    let config = config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.agents.len() >= 3);
}

#[test]
fn example_config_shows_every_schema_key() {
    let text = std::fs::read_to_string(example_path()).expect("readable");
    let missing: Vec<&&str> = SCHEMA_KEYS
        .iter()
        .filter(|key| !text.contains(&format!("{} ", key)) && !text.contains(&format!("{}\n", key)))
        .filter(|key| !text.contains(&format!("{{{}", key.trim_end_matches(':'))))
        .collect();
    assert!(
        missing.is_empty(),
        "keys not shown in config.example.yaml: {missing:?}"
    );
}

#[test]
fn example_config_probes_the_exporter_itself_and_every_kind_of_target() {
    let config = config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    let targets: Vec<String> = config
        .agents
        .iter()
        .map(|a| a.spec.target.display())
        .collect();
    assert!(
        targets
            .iter()
            .any(|t| t == "http://127.0.0.1:10056/-/healthy"),
        "{targets:?}"
    );
    assert!(
        targets.iter().any(|t| t.starts_with("https://")),
        "{targets:?}"
    );
    assert!(
        targets.iter().any(|t| t.starts_with("tcp://")),
        "{targets:?}"
    );
}
