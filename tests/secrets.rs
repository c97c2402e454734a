//! Secret values (bearer token, password, credentials in the URL) never leave the process:
//! not in logs at any level, not in /metrics, not in `--config.check`, not in errors.

mod common;
mod harness;

use std::process::Command;
use std::time::Duration;

use common::{Behaviour, MockAgent};
use harness::{get, wait_for, Binary};

const TOKEN: &str = "canary-token-7f3a";
const PASSWORD: &str = "canary-password-91c2";
const URL_PASSWORD: &str = "canary-urlpass-55d0";

fn assert_clean(what: &str, text: &str) {
    for canary in [TOKEN, PASSWORD, URL_PASSWORD] {
        assert!(!text.contains(canary), "{what} leaks {canary}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_log_metric_check_output_or_error() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let failing = MockAgent::start(Behaviour::Status(401)).await;
    let refused = common::refused_addr().await;
    let yaml = format!(
        "defaults: {{interval: 200ms, timeout: 150ms}}\nagents:\n  - name: bearer\n    type: t\n    url: {ok}\n    http: {{bearer_token_file: token}}\n  - name: basic\n    type: t\n    url: {failing}\n    http:\n      basic_auth: {{username: probe, password_file: password}}\n  - name: inline\n    type: t\n    url: http://probe:{URL_PASSWORD}@{refused}/health\n  - name: self\n    type: t\n    url: http://127.0.0.1:{{PORT}}/-/healthy\n",
        ok = ok.url("/health"),
        failing = failing.url("/health"),
    );
    let yaml_for_binary = yaml;
    let (metrics, logs, check_out) = tokio::task::spawn_blocking(move || {
        // Secrets go beside the config, in the binary's own temp dir.
        let exporter = Binary::start_with_files(
            &yaml_for_binary,
            &[("token", &format!("{TOKEN}\n")), ("password", PASSWORD)],
            &["--log.level=debug"],
        );
        let probed = wait_for(Duration::from_secs(3), || {
            let text = exporter.metrics();
            (text.contains("agent_up{agent=\"inline\"")
                && text.contains("agent_up{agent=\"basic\""))
            .then_some(())
        });
        assert!(probed.is_some(), "{}", exporter.logs());
        std::thread::sleep(Duration::from_millis(500));
        let metrics = exporter.metrics()
            + &String::from_utf8_lossy(
                &harness::request(
                    exporter.addr,
                    "GET",
                    "/metrics",
                    &[("Accept", "application/openmetrics-text;version=1.0.0")],
                )
                .expect("scrape")
                .body,
            );
        let landing = get(exporter.addr, "/").expect("get").text();
        let check = Command::new(env!("CARGO_BIN_EXE_agent-health-exporter"))
            .arg(format!(
                "--config.file={}",
                exporter.config_path().display()
            ))
            .arg("--config.check")
            .output()
            .expect("run check");
        let check_out = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        (metrics + &landing, exporter.logs(), check_out)
    })
    .await
    .expect("blocking part");

    // The secrets were really sent, so their absence elsewhere means something.
    let seen = ok.requests();
    assert!(seen
        .iter()
        .any(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}"))));

    assert!(
        logs.contains("probe finished"),
        "debug logs missing:\n{logs}"
    );
    assert!(logs.contains("agent=basic"), "{logs}");
    assert_clean("the log", &logs);
    assert_clean("/metrics", &metrics);
    assert!(check_out.contains("agent=inline"), "{check_out}");
    assert_clean("--config.check", &check_out);
}

#[test]
fn config_errors_do_not_print_secret_file_contents_or_url_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), TOKEN).expect("write");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "agents:\n  - name: a\n    type: t\n    url: http://u:{URL_PASSWORD}@h/\n    http: {{bearer_token_file: token}}\n  - name: a\n    type: t\n    url: ftp://u:{URL_PASSWORD}@h/\n"
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_agent-health-exporter"))
        .arg(format!("--config.file={}", path.display()))
        .arg("--config.check")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("more than one way") || text.contains("duplicate"),
        "{text}"
    );
    assert_clean("config errors", &text);
}
