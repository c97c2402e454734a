//! Secret values (bearer token, password, credentials in the URL, TLS key file contents) never
//! leave the process: not in logs at any level, not in /metrics, not in the API or the status
//! page, not in `--config.check`, not in errors.

mod harness;

use std::time::Duration;

use harness::binary::command;
use harness::{get, refused_addr, wait_for, Behaviour, Binary, MockAgent};

const TOKEN: &str = "canary-token-7f3a";
const PASSWORD: &str = "canary-password-91c2";
const URL_PASSWORD: &str = "canary-urlpass-55d0";

/// Written into a key file that is not a key: it must not be quoted by the error.
const KEY_FILE_CANARY: &str = "Y2FuYXJ5LWtleS1maWxlLTQ0Yjg";

fn assert_clean(what: &str, text: &str) {
    for canary in [TOKEN, PASSWORD, URL_PASSWORD, KEY_FILE_CANARY] {
        assert!(!text.contains(canary), "{what} leaks {canary}:\n{text}");
    }
}

/// A client certificate and key in PEM, and a line from the middle of the key: a piece of
/// the key that no output may contain.
fn client_identity() -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["probe".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_pem = key.serialize_pem();
    let line = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .max_by_key(|l| l.len())
        .unwrap()
        .to_owned();
    (cert.pem(), key_pem, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_log_metric_check_output_or_error() {
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let failing = MockAgent::start(Behaviour::Status(401)).await;
    let refused = refused_addr().await;
    let yaml = format!(
        "defaults: {{interval: 200ms, timeout: 150ms}}\nagents:\n  - name: bearer\n    type: t\n    url: {ok}\n    http: {{bearer_token_file: token}}\n  - name: basic\n    type: t\n    url: {failing}\n    http:\n      basic_auth: {{username: probe, password_file: password}}\n  - name: inline\n    type: t\n    url: http://probe:{URL_PASSWORD}@{refused}/health\n  - name: self\n    type: t\n    url: http://127.0.0.1:{{PORT}}/-/healthy\n  - name: mtls\n    type: t\n    url: https://{refused}/health\n    http:\n      tls: {{cert_file: client.pem, key_file: client-key.pem}}\n",
        ok = ok.url("/health"),
        failing = failing.url("/health"),
    );
    let yaml_for_binary = yaml;
    let (client_cert, client_key, key_line) = client_identity();
    let (metrics, logs, check_out) = tokio::task::spawn_blocking(move || {
        // Secrets go beside the config, in the binary's own temp dir.
        let exporter = Binary::launch(&yaml_for_binary)
            .file("token", &format!("{TOKEN}\n"))
            .file("password", PASSWORD)
            .file("client.pem", &client_cert)
            .file("client-key.pem", &client_key)
            .args(&["--log.level=debug", "--web.enable-probe-api"])
            .start();
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
        let mut api = String::new();
        for path in [
            "/api/v1/agents",
            "/api/v1/agents/basic",
            "/api/v1/agents/inline",
            "/api/v1/agents/mtls",
        ] {
            api.push_str(&get(exporter.addr, path).expect("api").text());
        }
        for name in ["bearer", "basic", "inline", "mtls"] {
            let answer = harness::request(
                exporter.addr,
                "POST",
                &format!("/api/v1/agents/{name}/probe"),
                &[],
            )
            .expect("probe now");
            api.push_str(&answer.text());
        }
        assert!(api.contains("\"name\":\"mtls\""), "{api}");
        let check = command()
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
        (metrics + &landing + &api, exporter.logs(), check_out)
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
    assert_clean("/metrics, the API and the status page", &metrics);
    for (what, text) in [
        ("the log", &logs),
        ("/metrics and the API", &metrics),
        ("--config.check", &check_out),
    ] {
        assert!(
            !text.contains(&key_line),
            "{what} leaks the TLS key:\n{text}"
        );
    }
    assert!(check_out.contains("agent=inline"), "{check_out}");
    assert_clean("--config.check", &check_out);
}

#[test]
fn config_errors_do_not_print_secret_file_contents_or_url_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), TOKEN).expect("write");
    std::fs::write(dir.path().join("password"), PASSWORD).expect("write");
    std::fs::write(
        dir.path().join("key.pem"),
        format!("-----BEGIN PRIVATE KEY-----\n{KEY_FILE_CANARY}\n-----END PRIVATE KEY-----\n"),
    )
    .expect("write");
    std::fs::write(dir.path().join("cert.pem"), client_identity().0).expect("write");
    let path = dir.path().join("config.yaml");
    // One error per agent, each next to a secret: URL credentials beside a password file, a
    // token file beside an unsupported URL with credentials, a second use of a name whose URL
    // has credentials, and a key file that is not a key.
    std::fs::write(
        &path,
        format!(
            "agents:
  - name: a
    type: t
    url: http://u:{URL_PASSWORD}@h/
    http: {{basic_auth: {{username: probe, password_file: password}}}}
  - name: b
    type: t
    url: ftp://u:{URL_PASSWORD}@h/
    http: {{bearer_token_file: token}}
  - name: a
    type: t
    url: http://u:{URL_PASSWORD}@h2/
  - name: k
    type: t
    url: https://h/
    http: {{tls: {{cert_file: cert.pem, key_file: key.pem}}}}
"
        ),
    )
    .expect("write");
    let out = command()
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
    // Each error must really be there, at its place: an error that is not printed cannot
    // show that it would not leak.
    for (place, needle) in [
        ("config.yaml:4:", "the url has credentials and `basic_auth`"),
        ("config.yaml:8:", "unsupported URL scheme \"ftp\""),
        ("config.yaml:10:", "duplicate agent name \"a\""),
        ("config.yaml:16:", "key_file"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(place) && l.contains(needle)),
            "no {needle:?} error at {place}:\n{text}"
        );
    }
    assert_clean("config errors", &text);
}
