//! The shipped `config.example.yaml` is what a newcomer starts from: it must parse, and it must
//! show every key of the schema, in its place.
//!
//! The schema's keys are not listed here: they are read from the config parser itself, which
//! refuses an unknown key with the list of the keys it expects at that place. A key added to
//! the schema is therefore missed by this test until the example shows it.

use std::collections::BTreeSet;
use std::path::Path;

use agent_health_exporter::config::{self, ConfigError, ConfigIssue};
use serde_json::Value;

fn example_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")
}

/// A key no schema has, to make the parser list the keys it expects.
const PROBE_KEY: &str = "zz_not_a_key";

fn issues(yaml: &str) -> Vec<ConfigIssue> {
    match config::parse(yaml, "schema.yaml", Path::new("/nonexistent-dir")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// `{a: [{b: {<inner>}}]}` for the path `a[] . b`: each step a map, or a list of maps.
fn nest(path: &[(String, bool)], inner: &str) -> String {
    path.iter()
        .rev()
        .fold(inner.to_owned(), |inner, (key, list)| {
            if *list {
                format!("{{{key}: [{inner}]}}")
            } else {
                format!("{{{key}: {inner}}}")
            }
        })
}

/// The keys the parser expects in the map at `path`, if it is a map with a fixed set of keys
/// (free-form maps such as `labels` take any key and are leaves here).
fn expected_keys(path: &[(String, bool)]) -> Option<Vec<String>> {
    let yaml = nest(path, &format!("{{{PROBE_KEY}: 1}}"));
    let unknown = format!("unknown field `{PROBE_KEY}`, expected ");
    issues(&yaml).iter().find_map(|issue| {
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

/// Every key of the schema, as dotted paths (`agents.http.tls.ca_file`; list items add no
/// step), found by walking the parser's answers from the top.
fn schema_keys() -> BTreeSet<String> {
    fn walk(path: &mut Vec<(String, bool)>, out: &mut BTreeSet<String>) {
        let Some(keys) = expected_keys(path) else {
            return;
        };
        for key in keys {
            let dotted = path
                .iter()
                .map(|(k, _)| k.as_str())
                .chain([key.as_str()])
                .collect::<Vec<_>>()
                .join(".");
            out.insert(dotted);
            // A map of its own, or a list of maps, or neither (a leaf).
            for list in [false, true] {
                path.push((key.clone(), list));
                let nested = expected_keys(path).is_some();
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
    let mut out = BTreeSet::new();
    walk(&mut Vec::new(), &mut out);
    out
}

/// The example with its commented-out keys put back: a line `# key: value`, whose text after
/// `# ` starts with a lower-case key and a colon, is a key shown but left inactive (those that
/// name files, which the container image does not ship), and so is `# - key: value`, an inactive
/// list item. Prose comments stay comments.
fn example_with_inactive_keys(text: &str) -> String {
    let is_key_line = |rest: &str| {
        rest.split_once(':').is_some_and(|(key, _)| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
    };
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        match trimmed.strip_prefix("# ") {
            Some(rest)
                if is_key_line(
                    rest.trim_start()
                        .strip_prefix("- ")
                        .unwrap_or(rest.trim_start()),
                ) =>
            {
                out.push_str(&format!("{indent}{rest}"))
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Every key path present in a YAML document.
fn yaml_keys(yaml: &str) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(value, &path, out);
                    out.insert(path);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, prefix, out)),
            _ => {}
        }
    }
    let value: Value = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let mut out = BTreeSet::new();
    walk(&value, "", &mut out);
    out
}

#[test]
fn example_config_parses() {
    let config = config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.agents.len() >= 3);
}

#[test]
fn example_config_shows_every_schema_key() {
    let schema = schema_keys();
    // The walk must have reached into the agents' sections, or it proves nothing.
    for anchor in [
        "agents.name",
        "agents.http.tls.ca_file",
        "defaults.interval",
    ] {
        assert!(schema.contains(anchor), "{anchor} not found: {schema:?}");
    }
    let text = std::fs::read_to_string(example_path()).expect("readable");
    let shown = example_with_inactive_keys(&text);
    let present = yaml_keys(&shown);
    let missing: Vec<&String> = schema.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "keys of the schema not shown in config.example.yaml: {missing:?}"
    );
    // The inactive keys are real ones, in their places: the parser knows every one of them.
    let misplaced: Vec<String> = issues(&shown)
        .iter()
        .filter(|i| i.message.contains("unknown field"))
        .map(ToString::to_string)
        .collect();
    assert!(misplaced.is_empty(), "{misplaced:#?}");
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
