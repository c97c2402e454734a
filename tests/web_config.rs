//! `--web.config.file`: TLS (with client certificates), basic auth, response headers and the
//! re-read of renewed certificates, against an in-process exporter on loopback; a broken file
//! stops the binary at start-up with its place.

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use harness::http::{exchange, request_head};
use harness::{binary, fetch, Answer, Served};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;

/// A certificate and its key, in PEM and DER.
struct Identity {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn self_signed(names: &[&str]) -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// A CA and a client certificate it signed.
fn ca_and_client() -> (Identity, Identity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["scraper".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    let ca_identity = Identity {
        cert_pem: ca.pem(),
        key_pem: String::new(),
        cert_der: ca.der().clone(),
        key_der: Vec::new(),
    };
    let client_identity = Identity {
        cert_pem: client.pem(),
        key_pem: client_key.serialize_pem(),
        cert_der: client.der().clone(),
        key_der: client_key.serialize_der(),
    };
    (ca_identity, client_identity)
}

/// An exporter serving on loopback with the web config `web_yaml` (files beside it).
async fn serve(web_yaml: &str, files: &[(&str, &str)]) -> Served {
    Served::start_with("agents: []\n", |dir, options| {
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        let web = dir.join("web.yml");
        std::fs::write(&web, web_yaml).unwrap();
        options.web_config_file = Some(web);
    })
    .await
}

fn client_config(trusted: &[&Identity], client: Option<&Identity>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for identity in trusted {
        roots.add(identity.cert_der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(id) => builder
            .with_client_auth_cert(
                vec![id.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Headers as the tests build them (`basic` makes a value), as the client takes them.
fn borrowed<'a>(headers: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// One GET over TLS; the answer and the certificate the server presented.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, String)],
) -> std::io::Result<(Answer, CertificateDer<'static>)> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or_else(|| std::io::Error::other("no server certificate"))?;
    let request = request_head(addr, "GET", path, &borrowed(headers));
    Ok((exchange(tls, &request).await?, presented))
}

async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
) -> std::io::Result<Answer> {
    fetch(addr, "GET", path, &borrowed(headers)).await
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("Authorization", format!("Basic {encoded}"))
}

fn tls_yaml(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_with_the_configured_certificate_and_plain_http_is_not() {
    let server = self_signed(&["127.0.0.1", "localhost"]);
    let served = serve(
        &tls_yaml("  min_version: TLS12\n"),
        &[
            ("server.pem", &server.cert_pem),
            ("server-key.pem", &server.key_pem),
        ],
    )
    .await;
    let (answer, presented) = https_get(
        served.addr,
        client_config(&[&server], None),
        "/metrics",
        &[],
    )
    .await
    .expect("TLS scrape");
    assert_eq!(answer.status, 200);
    assert!(answer.text().contains("agent_exporter_build_info"));
    assert_eq!(presented, server.cert_der);
    let plain = http_get(served.addr, "/metrics", &[]).await;
    assert!(
        plain.as_ref().map_or(true, |a| a.status != 200),
        "plain HTTP must not be served: {plain:?}"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_is_required_and_verified_against_the_client_ca() {
    let server = self_signed(&["127.0.0.1"]);
    let (ca, client) = ca_and_client();
    let (_other_ca, stranger) = ca_and_client();
    let served = serve(
        &tls_yaml(
            "  client_ca_file: client-ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n",
        ),
        &[
            ("server.pem", &server.cert_pem),
            ("server-key.pem", &server.key_pem),
            ("client-ca.pem", &ca.cert_pem),
        ],
    )
    .await;
    let with_cert = https_get(
        served.addr,
        client_config(&[&server], Some(&client)),
        "/-/healthy",
        &[],
    )
    .await
    .expect("a client with a certificate of the CA is served");
    assert_eq!(with_cert.0.status, 200);
    for (what, identity) in [("no certificate", None), ("another CA's", Some(&stranger))] {
        let refused = https_get(
            served.addr,
            client_config(&[&server], identity),
            "/-/healthy",
            &[],
        )
        .await;
        assert!(
            refused.is_err(),
            "a client with {what} certificate must not be served: {refused:?}"
        );
    }
    served.shutdown().await;
}

const USERS: &str = "basic_auth_users:\n  alice: {ALICE}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n";

fn users_yaml(cost: u32) -> String {
    USERS.replace("{ALICE}", &bcrypt::hash("wonderland", cost).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_protects_every_endpoint_and_headers_are_on_every_answer() {
    let served = serve(&users_yaml(4), &[]).await;
    for path in ["/metrics", "/-/healthy", "/-/ready", "/api/v1/agents", "/"] {
        let open = http_get(served.addr, path, &[]).await.unwrap();
        assert_eq!(open.status, 401, "{path} without credentials");
        assert!(open
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")));
        assert_eq!(open.header("x-frame-options"), Some("deny"), "{path}");
        let wrong = http_get(served.addr, path, &[basic("alice", "looking-glass")])
            .await
            .unwrap();
        assert_eq!(wrong.status, 401, "{path} with a wrong password");
        let unknown = http_get(served.addr, path, &[basic("bob", "wonderland")])
            .await
            .unwrap();
        assert_eq!(unknown.status, 401, "{path} for an unknown user");
        let right = http_get(served.addr, path, &[basic("alice", "wonderland")])
            .await
            .unwrap();
        assert_eq!(right.status, 200, "{path} with the right password");
        assert_eq!(right.header("x-frame-options"), Some("deny"));
        assert_eq!(
            right.header("strict-transport-security"),
            Some("max-age=31536000")
        );
    }
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_takes_about_as_long_as_a_wrong_password() {
    // Cost 8: long enough to dominate the request, short enough for a test.
    let served = serve(&users_yaml(8), &[]).await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    let mut cached = Vec::new();
    // Warm up the dummy hash, then interleave the two kinds.
    let _ = http_get(served.addr, "/-/healthy", &[basic("nobody", "x")]).await;
    let _ = http_get(served.addr, "/-/healthy", &[basic("alice", "wonderland")]).await;
    for i in 0..9 {
        let start = Instant::now();
        let a = http_get(
            served.addr,
            "/-/healthy",
            &[basic("alice", &format!("no{i}"))],
        )
        .await
        .unwrap();
        wrong.push(start.elapsed());
        let start = Instant::now();
        let b = http_get(
            served.addr,
            "/-/healthy",
            &[basic(&format!("user{i}"), "x")],
        )
        .await
        .unwrap();
        unknown.push(start.elapsed());
        let start = Instant::now();
        let c = http_get(served.addr, "/-/healthy", &[basic("alice", "wonderland")])
            .await
            .unwrap();
        cached.push(start.elapsed());
        assert_eq!((a.status, b.status, c.status), (401, 401, 200));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (wrong, unknown, cached) = (
        median(&mut wrong),
        median(&mut unknown),
        median(&mut cached),
    );
    eprintln!(
        "median: wrong password {wrong:?}, unknown user {unknown:?}, cached success {cached:?}"
    );
    assert!(
        unknown * 2 >= wrong && wrong * 2 >= unknown,
        "an unknown user ({unknown:?}) must cost about what a wrong password costs ({wrong:?})"
    );
    assert!(
        cached * 2 < wrong,
        "a remembered success ({cached:?}) skips bcrypt ({wrong:?})"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_ignored() {
    let first = self_signed(&["127.0.0.1"]);
    let renewed = self_signed(&["127.0.0.1"]);
    let served = serve(
        &tls_yaml(""),
        &[
            ("server.pem", &first.cert_pem),
            ("server-key.pem", &first.key_pem),
        ],
    )
    .await;
    let trust = client_config(&[&first, &renewed], None);
    let (_, presented) = https_get(served.addr, trust.clone(), "/-/healthy", &[])
        .await
        .unwrap();
    assert_eq!(presented, first.cert_der);
    // Replace both files, as a certificate manager does.
    write_atomically(&served.path("server-key.pem"), &renewed.key_pem);
    write_atomically(&served.path("server.pem"), &renewed.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (answer, presented) = https_get(served.addr, trust.clone(), "/-/healthy", &[])
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        if presented == renewed.cert_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "renewed certificate not served within 8 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken key: the renewed certificate stays in force.
    write_atomically(&served.path("server-key.pem"), "not a key\n");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (answer, presented) = https_get(served.addr, trust, "/-/healthy", &[])
        .await
        .expect("still served after a broken renewal");
    assert_eq!((answer.status, presented), (200, renewed.cert_der.clone()));
    served.shutdown().await;
}

fn write_atomically(path: &Path, content: &str) {
    let staging = path.with_extension("new");
    std::fs::write(&staging, content).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

#[test]
fn broken_web_config_stops_the_start_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "agents: []\n").unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "basic_auth_users:\n  alice: plain-text-password\nhttp_server_config:\n  headerz: {}\n",
    )
    .unwrap();
    let port = harness::free_port();
    let output = binary::command()
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:4:3", web.display())) && stderr.contains("headerz"),
        "{stderr}"
    );
    let web_missing = dir.path().join("missing.yml");
    let output = binary::command()
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.config.file={}", web_missing.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--web.config.file"), "{stderr}");
}
