//! `agent-health-exporter healthcheck`, the built binary against a real exporter (plain, TLS,
//! basic auth) and against servers that are not healthy: exit 0 only on the exporter's answer,
//! else 1 with one line on stderr saying why.

mod harness;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::binary::command as exporter;
use harness::{free_port, wait_for, Behaviour, Binary, MockAgent};

const SELF_PROBE: &str =
    "agents:\n  - name: self\n    type: exporter\n    url: http://127.0.0.1:{PORT}/-/healthy\n";

fn healthcheck(args: &[&str]) -> Output {
    exporter()
        .arg("healthcheck")
        .args(args)
        .output()
        .expect("run healthcheck")
}

/// Exit code and stderr, for assertions that show both.
fn outcome(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary serving with a web config: the harness' `Binary` waits for a plain, open
/// `/-/ready`, which a TLS or basic-auth exporter does not answer. Killed on drop.
struct WebExporter {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl WebExporter {
    fn start(web_config: &str, files: &[(&str, &str)]) -> WebExporter {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let port = free_port();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, SELF_PROBE.replace("{PORT}", &port.to_string())).unwrap();
        std::fs::write(dir.path().join("web.yml"), web_config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_agent-health-exporter"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--web.config.file={}",
                dir.path().join("web.yml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the exporter");
        let exporter = WebExporter {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let listening = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(exporter.addr).ok()
        });
        assert!(listening.is_some(), "the exporter did not start listening");
        exporter
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn listen_flag(&self) -> String {
        format!("--web.listen-address={}", self.addr)
    }
}

impl Drop for WebExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

/// A self-signed certificate for a name loopback never matches, and its key, in PEM.
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["exporter.example.com".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn healthcheck_exits_0_against_a_running_exporter_on_every_form_of_its_listen_address() {
    let running = Binary::start(SELF_PROBE, &[]);
    let port = running.addr.port();
    for address in [
        format!("127.0.0.1:{port}"),
        format!(":{port}"),
        format!("0.0.0.0:{port}"),
        format!("localhost:{port}"),
    ] {
        let out = healthcheck(&[&format!("--web.listen-address={address}")]);
        assert_eq!(outcome(&out), (Some(0), String::new()), "{address}");
    }
    // The flag also counts when it comes before the subcommand, as the server's flags do.
    let out = exporter()
        .arg(format!("--web.listen-address=:{port}"))
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(outcome(&out), (Some(0), String::new()));
}

#[test]
fn healthcheck_over_tls_trusts_the_exporters_own_certificate_whatever_its_name() {
    let (cert, key) = certificate();
    let web = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
    let running = WebExporter::start(web, &[("cert.pem", &cert), ("key.pem", &key)]);
    let out = healthcheck(&[
        &running.listen_flag(),
        &flag("web.config.file", &running.path("web.yml")),
    ]);
    assert_eq!(outcome(&out), (Some(0), String::new()));

    // Plain HTTP to a TLS port: no 200.
    let out = healthcheck(&[&running.listen_flag()]);
    assert_eq!(out.status.code(), Some(1), "{:?}", outcome(&out));
}

#[test]
fn healthcheck_over_tls_refuses_a_server_with_another_certificate() {
    let (cert, key) = certificate();
    let (other_cert, other_key) = certificate();
    let web = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
    let running = WebExporter::start(
        web,
        &[
            ("cert.pem", &cert),
            ("key.pem", &key),
            ("other.pem", &other_cert),
            ("other-key.pem", &other_key),
            (
                "other-web.yml",
                "tls_server_config:\n  cert_file: other.pem\n  key_file: other-key.pem\n",
            ),
        ],
    );
    let out = healthcheck(&[
        &running.listen_flag(),
        &flag("web.config.file", &running.path("other-web.yml")),
    ]);
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("not the web config's cert_file") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn healthcheck_with_basic_auth_counts_the_exporters_own_challenge_and_says_when_flags_differ() {
    let hash = bcrypt::hash("wonderland", 4).unwrap();
    let web = format!("basic_auth_users:\n  alice: {hash}\n");
    let running = WebExporter::start(&web, &[]);
    let out = healthcheck(&[
        &running.listen_flag(),
        &flag("web.config.file", &running.path("web.yml")),
    ]);
    assert_eq!(outcome(&out), (Some(0), String::new()));

    // Without the web config the 401 is not taken for health: the flags differ from the
    // exporter's, and the line says what to give.
    let out = healthcheck(&[&running.listen_flag()]);
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--web.config.file"), "{stderr}");
}

#[test]
fn healthcheck_exits_1_when_nothing_listens() {
    let port = free_port();
    let out = healthcheck(&[&format!("--web.listen-address=127.0.0.1:{port}")]);
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("healthcheck: cannot connect to 127.0.0.1:")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_1_when_healthy_answers_other_than_200() {
    let agent = MockAgent::start(Behaviour::Status(503)).await;
    let address = format!("--web.listen-address={}", agent.addr);
    let out = tokio::task::spawn_blocking(move || healthcheck(&[&address]))
        .await
        .unwrap();
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("answered 503 Service Unavailable, not 200"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_1_within_its_timeout_when_the_server_never_answers() {
    let agent = MockAgent::start(Behaviour::Hang).await;
    let address = format!("--web.listen-address={}", agent.addr);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || healthcheck(&[&address]))
        .await
        .unwrap();
    let took = started.elapsed();
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no answer within 3s"), "{stderr}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn healthcheck_usage_error_exits_1_not_2_which_docker_reserves() {
    let out = healthcheck(&["--no-such-flag"]);
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    // Help is no error.
    let help = healthcheck(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", outcome(&help).1);
}
