//! The configuration reference (docs/configuration.md) and the JSON Schema
//! (docs/config.schema.json, `--config.schema`) are rendered from the key table in
//! src/config/reference.rs, whose agreement with the parser is proved beside it. Here: the
//! committed files equal the rendering, and every shipped config (the example, the compose demo,
//! the fleet example, the Kubernetes ConfigMap) passes both the schema, under a real validator
//! (Python's jsonschema), and `--config.check`; every exporter config block of the docs (as its
//! fence says, the classification tests/docs_snippets.rs uses to run it with `--config.check`)
//! passes the schema; wrong configs fail both, and configs the parser takes in less common
//! spellings pass both.
//!
//! Rewrite the committed files after changing the table:
//! `AHE_REWRITE_REFERENCE=1 cargo test --test config_reference`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod docs_md;

use agent_health_exporter::config::reference;
use docs_md::{blocks, doc_files, kind, Block, Kind};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_agent-health-exporter")
}

const SCHEMA_FILE: &str = "docs/config.schema.json";
const REFERENCE_FILE: &str = "docs/configuration.md";

fn schema_text() -> String {
    let text = serde_json::to_string_pretty(&reference::schema()).expect("JSON encodes");
    format!("{text}\n")
}

/// Compares a committed file with its rendering, or rewrites it when asked.
fn committed_equals(path: &str, rendered: &str) {
    let file = repo().join(path);
    if std::env::var_os("AHE_REWRITE_REFERENCE").is_some() {
        std::fs::write(&file, rendered).expect("writable");
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == rendered,
        "{path} differs from what src/config/reference.rs renders; rewrite it with \
         AHE_REWRITE_REFERENCE=1 cargo test --test config_reference"
    );
}

#[test]
fn committed_reference_is_the_rendering_of_the_key_table() {
    committed_equals(REFERENCE_FILE, &reference::markdown());
}

#[test]
fn committed_schema_is_what_config_schema_prints() {
    committed_equals(SCHEMA_FILE, &schema_text());
    let out = Command::new(binary())
        .arg("--config.schema")
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), schema_text());
}

#[test]
fn reference_has_a_row_for_every_key_with_its_default() {
    let text = reference::markdown();
    for row in [
        "| `interval` | duration | `30s` | defaults, check, agent | replace |",
        "| `labels` | map of strings |  | defaults, check, agent | merge by key |",
        "| `max_body_bytes` | size > 0 | `1048576` (1MiB) | check, agent | replace |",
        "| `refresh_interval` | duration | `5m` | discovery source | - |",
    ] {
        assert!(text.contains(row), "no row {row}");
    }
}

#[test]
fn shipped_configs_name_the_committed_schema_for_editors() {
    for config in [
        "config.example.yaml",
        "deploy/demo-fleet.yaml",
        "examples/fleet/config.yaml",
    ] {
        let path = repo().join(config);
        let text = std::fs::read_to_string(&path).expect("readable");
        let first = text.lines().next().unwrap_or_default();
        let schema = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{config} does not start by naming its schema: {first}"));
        // The language server takes the path from the config file's folder.
        let named = path.parent().expect("a folder").join(schema);
        assert_eq!(
            named.canonicalize().ok(),
            repo().join(SCHEMA_FILE).canonicalize().ok(),
            "{config} names {schema}"
        );
    }
}

/// Python with jsonschema and PyYAML, or None (the test then skips and says so, unless
/// AHE_REQUIRE_SCHEMA_VALIDATOR is set, as .ci/run sets it).
fn validator(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("AHE_SCHEMA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let imports = Command::new(&python)
        .args(["-c", "import jsonschema, yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(imports, Ok(s) if s.success()) {
        return Some(python);
    }
    let message = format!(
        "SKIPPED {test}: no {} with jsonschema and yaml (apt-get install python3-jsonschema \
         python3-yaml, or set AHE_SCHEMA_PYTHON)",
        python.display()
    );
    assert!(
        std::env::var_os("AHE_REQUIRE_SCHEMA_VALIDATOR").is_none(),
        "{message}"
    );
    eprintln!("{message}");
    println!("{message}");
    None
}

/// The validator's verdict on each file: Ok, or the first error.
fn validate(python: &Path, dir: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, Result<(), String>> {
    let schema = dir.join("config.schema.json");
    std::fs::write(&schema, schema_text()).expect("writable");
    let out = Command::new(python)
        .arg(repo().join("tests/peers/validate_config_schema.py"))
        .arg(&schema)
        .args(files)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the schema is not a valid draft 2020-12 schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let verdicts: BTreeMap<PathBuf, Result<(), String>> = text
        .lines()
        .filter_map(|line| {
            if let Some(file) = line.strip_prefix("ok ") {
                return Some((PathBuf::from(file), Ok(())));
            }
            let rest = line.strip_prefix("invalid ")?;
            let (file, error) = rest.split_once(": ")?;
            Some((PathBuf::from(file), Err(error.to_owned())))
        })
        .collect();
    assert_eq!(verdicts.len(), files.len(), "{text}");
    verdicts
}

/// `--config.check` of one file: exit status and output.
fn config_check(file: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(["--config.check", "--config.file"])
        .arg(file)
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The config of the Kubernetes ConfigMap, with its secrets' mount point moved to `dir`,
/// where a file stands for each secret it names.
fn kubernetes_config(dir: &Path) -> PathBuf {
    const MOUNT: &str = "/etc/agent-health-exporter/secrets/";
    let manifest = std::fs::read_to_string(repo().join("deploy/kubernetes/common/configmap.yaml"))
        .expect("readable");
    let value: serde_json::Value = serde_saphyr::from_str(&manifest).expect("YAML");
    let config = value["data"]["agent-health-exporter.yaml"]
        .as_str()
        .expect("the ConfigMap holds agent-health-exporter.yaml");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("writable");
    for (at, _) in config.match_indices(MOUNT) {
        let name: String = config[at + MOUNT.len()..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',' && *c != '}')
            .collect();
        std::fs::write(secrets.join(name), "token\n").expect("writable");
    }
    let path = dir.join("kubernetes.yaml");
    let moved = config.replace(MOUNT, &format!("{}/", secrets.display()));
    std::fs::write(&path, moved).expect("writable");
    path
}

/// The exporter configs of the docs: every block whose fence says it is one (```yaml with no
/// other word), as tests/docs_snippets.rs classifies them and runs them with `--config.check`.
fn doc_config_blocks() -> Vec<Block> {
    doc_files()
        .iter()
        .flat_map(|file| blocks(file))
        .filter(|block| kind(block) == Ok(Kind::ExporterConfig))
        .collect()
}

#[test]
fn shipped_configs_pass_the_schema_and_the_config_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = vec![
        repo().join("config.example.yaml"),
        repo().join("deploy/demo-fleet.yaml"),
        repo().join("examples/fleet/config.yaml"),
        kubernetes_config(dir.path()),
    ];
    let shipped = files.len();
    // Only the shipped files are checked here: tests/docs_snippets.rs runs every doc block
    // through `--config.check`, with the files it names.
    let checks: Vec<(bool, String)> = std::thread::scope(|scope| {
        // Side by side: the fleet example's check waits for its DNS source to time out.
        let runs: Vec<_> = files
            .iter()
            .map(|file| scope.spawn(move || config_check(file)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("the check ran"))
            .collect()
    });
    for (file, (ok, text)) in files.iter().zip(&checks) {
        assert!(ok, "--config.check refuses {}:\n{text}", file.display());
    }
    let mut places = Vec::new();
    for (index, block) in doc_config_blocks().into_iter().enumerate() {
        let file = dir.path().join(format!("doc-{index}.yaml"));
        std::fs::write(&file, &block.text).expect("writable");
        places.push((file.clone(), block.place()));
        files.push(file);
    }
    let blocks = files.len() - shipped;
    assert!(blocks >= 5, "only {blocks} config blocks found in the docs");
    let Some(python) = validator("shipped_configs_pass_the_schema_and_the_config_check") else {
        return;
    };
    let refused: Vec<String> = validate(&python, dir.path(), &files)
        .into_iter()
        .filter_map(|(file, verdict)| {
            let place = places
                .iter()
                .find(|(f, _)| *f == file)
                .map_or_else(|| file.display().to_string(), |(_, p)| p.clone());
            verdict.err().map(|e| format!("{place}: {e}"))
        })
        .collect();
    assert!(
        refused.is_empty(),
        "the schema refuses shipped configs: {refused:#?}"
    );
}

/// Configs the parser refuses for a reason the schema can see.
const WRONG: &[(&str, &str)] = &[
    (
        "misspelled key",
        "agents: [{name: a, type: t, url: \"http://127.0.0.1:1/\", intervall: 5s}]",
    ),
    ("duration without unit", "defaults: {interval: 30}"),
    ("unknown protocol", "checks: {t: {protocol: soap}}"),
    (
        "status out of range",
        "agents: [{name: a, type: t, url: \"http://127.0.0.1:1/\", expect: {status: 700}}]",
    ),
    ("zero threshold", "defaults: {failure_threshold: 0}"),
    (
        "body limit on an http_sd source",
        "discovery: [{http_sd: {url: \"http://127.0.0.1:1/\", http: {max_body_bytes: 1MiB}}}]",
    ),
    (
        "unknown record type",
        "discovery: [{dns_sd: {names: [a.test], record_type: MX}}]",
    ),
    (
        "agent without a name",
        "agents: [{type: t, url: \"http://127.0.0.1:1/\"}]",
    ),
    (
        "size without a number",
        "checks: {t: {http: {max_body_bytes: lots}}}",
    ),
    ("unknown top-level section", "agent: []"),
    (
        "zero threshold written as text",
        "defaults: {failure_threshold: \"0\"}",
    ),
    (
        "boolean written as a number",
        "checks: {t: {http: {follow_redirects: 1}}}",
    ),
    (
        "integer with a leading zero",
        "defaults: {success_threshold: \"03\"}",
    ),
    (
        "discovery entry without a source",
        "discovery: [{max_targets: 5}]",
    ),
    (
        "discovery entry with two sources",
        "discovery: [{file_sd: {files: [a.json]}, dns_sd: {names: [a.test]}}]",
    ),
    (
        "hashmod with a zero modulus",
        "discovery: [{file_sd: {files: [a.json]}, relabel_configs: \
         [{action: hashmod, modulus: 0, source_labels: [a], target_label: b}]}]",
    ),
    (
        "hashmod without a modulus",
        "discovery: [{file_sd: {files: [a.json]}, relabel_configs: \
         [{action: HashMod, source_labels: [a], target_label: b}]}]",
    ),
    (
        "zero body limit",
        "agents: [{name: a, type: t, url: \"http://127.0.0.1:1/\", http: {max_body_bytes: 0}}]",
    ),
    (
        "zero body limit with a unit",
        "checks: {t: {http: {max_body_bytes: 0KiB}}}",
    ),
];

/// Configs the parser takes, written in spellings a schema could easily miss.
const RIGHT: &[(&str, &str)] = &[
    ("empty file", ""),
    (
        "compound duration, plain byte count, numeric label, class in capitals",
        "defaults: {interval: 1m30s, timeout: 1.5s, labels: {version: 2}}\n\
         agents: [{name: a, type: t, url: \"http://127.0.0.1:1/\", \
         http: {max_body_bytes: 65536, method: post}, expect: {status: \"2XX\"}}]",
    ),
    (
        "empty sections and any-case words",
        "checks:\n  t:\n    http:\n    expect:\n\
         discovery: [{dns_sd: {names: [a.test], record_type: srv}, \
         relabel_configs: [{action: Keep, regex: x, source_labels: [a]}]}]",
    ),
    (
        "padded protocol, spaced size",
        "agents: [{name: a, type: t, url: \"http://127.0.0.1:1/\", protocol: \" mcp \", \
         mcp: {expect_tools: [echo]}, http: {max_body_bytes: 2 MB}}]",
    ),
    (
        "numbers written as text, in other radices, with underscores",
        "defaults: {failure_threshold: \"3\", success_threshold: \" +2 \"}\n\
         checks: {t: {failure_threshold: 0x3, success_threshold: \"0b10\"}, \
         u: {failure_threshold: 1_0, success_threshold: \"0o7\"}}\n\
         discovery: [{file_sd: {files: [a.json]}, max_targets: \"100_000\", relabel_configs: \
         [{action: hashmod, modulus: \"4\", source_labels: [a], target_label: b}, \
         {modulus: 0, source_labels: [a], target_label: c}]}]",
    ),
    (
        "booleans as YAML 1.1 words, quoted or not, in any case",
        "checks: {t: {http: {follow_redirects: yes, tls: {insecure_skip_verify: \"off\"}}}, \
         u: {http: {follow_redirects: \"True\"}}, v: {http: {follow_redirects: Y}}, \
         w: {http: {follow_redirects: \" ON \"}}, x: {http: {follow_redirects: nO}}}",
    ),
    (
        "zero limit of an http_sd answer",
        "discovery: [{http_sd: {url: \"http://127.0.0.1:1/\", max_response_bytes: 0}}]",
    ),
];

#[test]
fn schema_and_config_check_agree_on_wrong_and_unusual_configs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (index, (what, yaml)) in WRONG.iter().chain(RIGHT).enumerate() {
        let file = dir.path().join(format!("{index}.yaml"));
        std::fs::write(&file, yaml).expect("writable");
        let (ok, text) = config_check(&file);
        let expected = index >= WRONG.len();
        assert_eq!(ok, expected, "--config.check on {what}:\n{yaml}\n{text}");
        files.push(file);
    }
    let Some(python) = validator("schema_and_config_check_agree_on_wrong_and_unusual_configs")
    else {
        return;
    };
    let verdicts = validate(&python, dir.path(), &files);
    for (index, (what, yaml)) in WRONG.iter().chain(RIGHT).enumerate() {
        let verdict = &verdicts[&files[index]];
        let expected = index >= WRONG.len();
        assert_eq!(
            verdict.is_ok(),
            expected,
            "the schema on {what}:\n{yaml}\n{verdict:?}"
        );
    }
}
