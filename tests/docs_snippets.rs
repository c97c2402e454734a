//! Every fenced block of the README and docs/ says what it is, and the blocks that are configs
//! are checked the way a reader would use them: exporter configs with `--config.check`, web
//! configs with `--web.config.file`, and (when Debian's tools are installed) Prometheus configs
//! with `promtool check config`, Alertmanager configs with `amtool check-config` and rule files
//! with `promtool check rules`. Shell commands, and the service level file, are run by
//! tests/realworld/docs_snippets.py, which .ci/run starts. Skipped by name: `excerpt` (a
//! fragment), `manual` (a command that needs Docker, a cluster or the reader's hosts), `output`
//! and `diagram`.

mod docs_md;

use std::path::Path;
use std::process::Command;

use docs_md::{blocks, doc_files, kind, repo, Block, Kind};

const BIN: &str = env!("CARGO_BIN_EXE_agent-health-exporter");

fn all_blocks() -> Vec<Block> {
    doc_files().iter().flat_map(|f| blocks(f)).collect()
}

/// A throwaway self-signed CA certificate and its key, for the TLS files a snippet names (one
/// identity serves as trust root, client and server certificate alike).
fn identity() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// Creates, beside the snippet, every file it names (`*_file` keys and `metadata_files`
/// values): a key or certificate for the TLS keys, a secret otherwise. Paths are relative to
/// the config, as the docs write them.
fn create_named_files(text: &str, dir: &Path) {
    let value: serde_json::Value = serde_saphyr::from_str(text).unwrap_or(serde_json::Value::Null);
    let (cert, key) = identity();
    let mut named = Vec::new();
    collect_files(&value, "", &mut named);
    for (key_name, path) in named {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("folder for a named file");
        }
        let content = match key_name.as_str() {
            "key_file" => key.clone(),
            "cert_file" | "ca_file" | "client_ca_file" => cert.clone(),
            _ => "snippet-secret\n".to_string(),
        };
        std::fs::write(&path, content).expect("named file");
    }
}

fn collect_files(value: &serde_json::Value, parent: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k.ends_with("_file") => {
                        out.push((k.clone(), s.clone()));
                    }
                    serde_json::Value::String(s) if parent == "metadata_files" => {
                        out.push((parent.to_string(), s.clone()));
                    }
                    _ => collect_files(v, k, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_files(v, parent, out);
            }
        }
        _ => {}
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn check(block: &Block, kind: &Kind) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snippet.yml");
    std::fs::write(&file, &block.text).expect("snippet file");
    match kind {
        Kind::ExporterConfig => {
            create_named_files(&block.text, dir.path());
            run(
                Command::new(BIN)
                    .arg("--config.check")
                    .arg(format!("--config.file={}", file.display())),
                &format!("{}: --config.check", block.place()),
            )
        }
        Kind::WebConfig => {
            create_named_files(&block.text, dir.path());
            let config = dir.path().join("config.yaml");
            std::fs::write(&config, "agents: []\n").expect("config");
            run(
                Command::new(BIN)
                    .arg("--config.check")
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!("--web.config.file={}", file.display())),
                &format!("{}: --web.config.file with --config.check", block.place()),
            )
        }
        Kind::Prometheus => {
            let rules = dir.path().join("rules");
            std::fs::create_dir_all(&rules).expect("rules folder");
            for name in ["agent-health.rules.yml", "agent-slo.rules.yml"] {
                std::fs::copy(repo().join("alerts").join(name), rules.join(name))
                    .expect("rule file");
            }
            run(
                Command::new("promtool")
                    .args(["check", "config"])
                    .arg(&file),
                &format!("{}: promtool check config", block.place()),
            )
        }
        Kind::Alertmanager => run(
            Command::new("amtool").arg("check-config").arg(&file),
            &format!("{}: amtool check-config", block.place()),
        ),
        Kind::Rules => run(
            Command::new("promtool").args(["check", "rules"]).arg(&file),
            &format!("{}: promtool check rules", block.place()),
        ),
        Kind::Slos | Kind::Command | Kind::Skipped => Ok(()),
    }
}

#[test]
fn every_block_in_the_docs_says_what_it_is() {
    let problems: Vec<String> = all_blocks().iter().filter_map(|b| kind(b).err()).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_config_block_in_the_docs_passes_config_check() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for block in all_blocks() {
        let Ok(k) = kind(&block) else { continue };
        if matches!(k, Kind::ExporterConfig | Kind::WebConfig) {
            checked += 1;
            if let Err(e) = check(&block, &k) {
                problems.push(e);
            }
        }
    }
    assert!(
        checked >= 5,
        "only {checked} config blocks found: is the docs parser broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    println!("{checked} config blocks pass --config.check");
}

#[test]
fn every_prometheus_and_alertmanager_block_passes_its_tool() {
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    let mut checked = 0;
    for block in all_blocks() {
        let Ok(k) = kind(&block) else { continue };
        let tool = match k {
            Kind::Prometheus | Kind::Rules => "promtool",
            Kind::Alertmanager => "amtool",
            _ => continue,
        };
        if !on_path(tool) {
            skipped.push(format!("{} ({tool} is not installed)", block.place()));
            continue;
        }
        checked += 1;
        if let Err(e) = check(&block, &k) {
            problems.push(e);
        }
    }
    if !skipped.is_empty() {
        println!(
            "SKIPPED {} blocks: {}; .ci/run installs Debian's prometheus and prometheus-alertmanager and runs them",
            skipped.len(),
            skipped.join(", ")
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    println!("{checked} Prometheus, Alertmanager and rule blocks pass their tools");
}

/// The shipped configs set `defaults.timeout: 5s`; the docs (docs/config-file.md, "Timeout
/// default") say what that means for a short interval, and this holds both halves to the binary.
#[test]
fn explicit_default_timeout_makes_a_short_interval_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |text: &str| {
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, text).expect("config");
        Command::new(BIN)
            .arg("--config.check")
            .arg(format!("--config.file={}", file.display()))
            .output()
            .expect("run the binary")
    };
    let agent =
        "agents:\n  - {name: a, type: t, url: \"http://127.0.0.1:1/health\", interval: 2s}\n";
    let implicit = check(agent);
    assert!(
        implicit.status.success(),
        "no timeout anywhere: 80 % of the interval; got {}",
        String::from_utf8_lossy(&implicit.stderr)
    );
    let explicit = check(&format!("defaults: {{timeout: 5s}}\n{agent}"));
    let said = String::from_utf8_lossy(&explicit.stdout).to_string()
        + &String::from_utf8_lossy(&explicit.stderr);
    assert!(
        !explicit.status.success(),
        "defaults.timeout 5s with interval 2s must fail: {said}"
    );
    assert!(
        said.contains("timeout 5s is not shorter than interval 2s"),
        "{said}"
    );
    let own = check(
        "defaults: {timeout: 5s}\nagents:\n  - {name: a, type: t, url: \"http://127.0.0.1:1/health\", interval: 2s, timeout: 1s}\n",
    );
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
}
