//! Status transitions are logged without empty fields: a transition to healthy has no reason
//! and no error, so the line carries neither key (logfmt and JSON alike).

mod harness;

use std::time::Duration;

use harness::{wait_for, Binary};

const CONFIG: &str = "defaults: {interval: 200ms, timeout: 150ms}\nagents:\n  - {name: self, type: t, url: 'http://127.0.0.1:{PORT}/-/healthy'}\n  - {name: refused, type: t, url: 'tcp://127.0.0.1:1'}\n";

/// The first log line that mentions `needle`, once it is there.
fn line_with(exporter: &Binary, needle: &str) -> String {
    wait_for(Duration::from_secs(10), || {
        exporter
            .logs()
            .lines()
            .find(|l| l.contains("agent status changed") && l.contains(needle))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no transition line with {needle}:\n{}", exporter.logs()))
}

#[test]
fn transition_to_healthy_logs_no_empty_reason_or_error_in_logfmt() {
    let exporter = Binary::start(CONFIG, &[]);
    let healthy = line_with(&exporter, "agent=self");
    assert!(healthy.contains("to=healthy"), "{healthy}");
    assert!(!healthy.contains("reason="), "{healthy}");
    assert!(!healthy.contains("error="), "{healthy}");
    assert!(!healthy.contains("=\"\""), "an empty field: {healthy}");
    // A failure still says why.
    let failed = line_with(&exporter, "agent=refused");
    assert!(failed.contains("reason=connect"), "{failed}");
    assert!(failed.contains("error="), "{failed}");
}

#[test]
fn transition_to_healthy_logs_no_empty_reason_or_error_in_json() {
    let exporter = Binary::start(CONFIG, &["--log.format=json"]);
    let healthy = line_with(&exporter, "\"agent\":\"self\"");
    let line: serde_json::Value = serde_json::from_str(&healthy).expect("a JSON line");
    assert_eq!(line["to"], "healthy", "{healthy}");
    assert!(line.get("reason").is_none(), "{healthy}");
    assert!(line.get("error").is_none(), "{healthy}");
    let failed = line_with(&exporter, "\"agent\":\"refused\"");
    let line: serde_json::Value = serde_json::from_str(&failed).expect("a JSON line");
    assert_eq!(line["reason"], "connect", "{failed}");
}
