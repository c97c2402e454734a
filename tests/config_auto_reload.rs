//! `--config.auto-reload-interval`: the binary notices a changed config file, or a changed file
//! the config names, on that interval and reloads, with SIGHUP's keep-the-old-on-error rule.

mod harness;

use std::time::Duration;

use harness::{metric, request, wait_for, Binary};

const EVERY: &str = "--config.auto-reload-interval=500ms";
/// Two intervals, and a second for the reload and the scrape on a busy machine.
const WITHIN: Duration = Duration::from_millis(2000);

const BASE: &str = "agents:\n  - name: self\n    type: exporter\n    url: http://127.0.0.1:{PORT}/-/healthy\n    interval: 200ms\n    timeout: 100ms\n";

fn with_agent(exporter: &Binary, name: &str) -> String {
    let port = exporter.addr.port().to_string();
    format!(
        "{}  - name: {name}\n    type: exporter\n    url: tcp://127.0.0.1:{port}\n    interval: 200ms\n    timeout: 100ms\n",
        BASE.replace("{PORT}", &port)
    )
}

fn has_agent(exporter: &Binary, name: &str) -> bool {
    exporter
        .metrics()
        .contains(&format!("agent_probe_interval_seconds{{agent=\"{name}\""))
}

fn reload_successful(exporter: &Binary) -> Option<f64> {
    metric(
        &exporter.metrics(),
        "agent_exporter_config_last_reload_successful",
    )
}

fn count(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn changed_config_file_is_reloaded_within_two_intervals() {
    let exporter = Binary::start(BASE, &[EVERY]);
    std::fs::write(exporter.config_path(), with_agent(&exporter, "second")).expect("write");
    let added = wait_for(WITHIN, || has_agent(&exporter, "second").then_some(()));
    assert!(added.is_some(), "{}", exporter.logs());
    assert_eq!(reload_successful(&exporter), Some(1.0));
}

#[test]
fn broken_config_keeps_the_old_one_is_logged_once_and_its_fix_is_reloaded() {
    let exporter = Binary::start(BASE, &[EVERY]);
    std::fs::write(exporter.config_path(), with_agent(&exporter, "second")).expect("write");
    let added = wait_for(WITHIN, || has_agent(&exporter, "second").then_some(()));
    assert!(added.is_some(), "{}", exporter.logs());

    std::fs::write(exporter.config_path(), "agents: [").expect("write");
    let failed = wait_for(WITHIN, || {
        (reload_successful(&exporter) == Some(0.0)).then_some(())
    });
    assert!(failed.is_some(), "{}", exporter.logs());
    // Four more intervals: the same broken file is not tried again.
    std::thread::sleep(Duration::from_millis(2000));
    let logs = exporter.logs();
    assert_eq!(count(&logs, "keeping the running config"), 1, "{logs}");
    assert!(
        has_agent(&exporter, "second"),
        "the old config must keep running"
    );
    assert_eq!(reload_successful(&exporter), Some(0.0));

    std::fs::write(exporter.config_path(), with_agent(&exporter, "third")).expect("write");
    let fixed = wait_for(WITHIN, || has_agent(&exporter, "third").then_some(()));
    assert!(fixed.is_some(), "{}", exporter.logs());
    assert_eq!(reload_successful(&exporter), Some(1.0));
    assert!(!has_agent(&exporter, "second"));
}

#[test]
fn the_same_bytes_written_again_is_no_reload() {
    let exporter = Binary::start(BASE, &[EVERY]);
    let text = std::fs::read(exporter.config_path()).expect("read");
    std::fs::write(exporter.config_path(), &text).expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    let logs = exporter.logs();
    assert_eq!(count(&logs, "config loaded"), 1, "{logs}");
}

fn heartbeat(exporter: &Binary, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    request(
        exporter.addr,
        "POST",
        "/api/v1/agents/worker/heartbeat",
        &[("Authorization", &auth)],
    )
    .expect("heartbeat")
    .status
}

#[test]
fn changed_secret_file_is_reloaded() {
    let config = "agents:\n  - name: worker\n    type: batch\n    heartbeat: {period: 1m, token_file: worker.token}\n";
    let exporter = Binary::launch(config)
        .file("worker.token", "old-token\n")
        .args(&[EVERY])
        .start();
    assert!(heartbeat(&exporter, "old-token") < 300);
    assert_eq!(heartbeat(&exporter, "new-token"), 401);
    std::fs::write(exporter.dir.path().join("worker.token"), "new-token\n").expect("write");
    let rotated = wait_for(WITHIN, || {
        (heartbeat(&exporter, "new-token") < 300).then_some(())
    });
    assert!(rotated.is_some(), "{}", exporter.logs());
    assert_eq!(heartbeat(&exporter, "old-token"), 401);
}

#[test]
fn without_the_flag_a_changed_config_is_not_reloaded() {
    let exporter = Binary::start(BASE, &[]);
    std::fs::write(exporter.config_path(), with_agent(&exporter, "second")).expect("write");
    std::thread::sleep(WITHIN);
    assert!(!has_agent(&exporter, "second"), "{}", exporter.logs());
    assert_eq!(count(&exporter.logs(), "config loaded"), 1);
}
