//! Prints what our relabeling makes of label sets, for comparing with Prometheus itself
//! (`tests/realworld/relabel_oracle.py`). Reads `{"rules": [...], "targets": [{...}, ...]}` as
//! JSON on stdin (rules as in `relabel_configs:`); writes one `{"kept", "labels"}` per target.

use std::io::Read;
use std::process::ExitCode;

use agent_health_exporter::relabel::{process, Labels, RawRelabel, Rule};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    rules: Vec<RawRelabel>,
    targets: Vec<Labels>,
}

fn main() -> ExitCode {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let input: Input = match serde_json::from_str(&text) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("invalid input: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rules = Vec::new();
    for (i, raw) in input.rules.iter().enumerate() {
        match Rule::compile(raw) {
            Ok(rule) => rules.push(rule),
            Err(e) => {
                eprintln!("rule {}: {} (fix: {})", i + 1, e.message, e.fix);
                return ExitCode::FAILURE;
            }
        }
    }
    let results: Vec<serde_json::Value> = input
        .targets
        .into_iter()
        .map(|labels| match process(labels, &rules) {
            Some(labels) => serde_json::json!({"kept": true, "labels": labels}),
            None => serde_json::json!({"kept": false, "labels": null}),
        })
        .collect();
    println!("{}", serde_json::Value::Array(results));
    ExitCode::SUCCESS
}
