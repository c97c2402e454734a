//! The gRPC health probe against grpcio's own health service (tests/peers/grpc_health_server.py):
//! every verdict it can reach, on plain, TLS and mTLS connections. Skips without the peers' venv.

mod harness;

use agent_health_exporter::probe::{self, FailureReason, Outcome, ProbeResult};
use harness::peers::{agent, python, settle, write_certificates, Peer};

const MODULES: &str = "grpc, grpc_health.v1.health";

fn peer(test: &str, args: &[&str]) -> Option<Peer> {
    let python = python(test, MODULES)?;
    Some(Peer::start(&python, "grpc_health_server.py", args))
}

async fn probe_yaml(yaml: &str, dir: &std::path::Path) -> ProbeResult {
    probe::run(&agent(yaml, dir)).await
}

fn one(url: &str, extra: &str) -> String {
    format!("agents:\n  - name: g\n    type: svc\n    url: {url}\n    timeout: 3s\n{extra}")
}

fn failed(result: &ProbeResult) -> (FailureReason, &str) {
    match &result.outcome {
        Outcome::Failed { reason, error } => (*reason, error.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn serving_server_is_healthy_with_status_ok_and_phases() {
    let Some(server) = peer("serving_server_is_healthy", &[]) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let result = probe_yaml(&one(&url, ""), std::path::Path::new(".")).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    assert_eq!(result.protocol.grpc_status, Some(0));
    assert!(result.phases.connect > std::time::Duration::ZERO);
    assert!(result.phases.first_byte > std::time::Duration::ZERO);
    assert_eq!(result.http_status, None);
}

#[tokio::test]
async fn service_set_to_not_serving_while_running_is_not_serving_then_recovers() {
    let Some(mut server) = peer(
        "service_set_to_not_serving",
        &["--serving", "billing.Ledger"],
    ) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let yaml = one(&url, "    grpc: {service: billing.Ledger}\n");
    let dir = std::path::Path::new(".");
    assert_eq!(probe_yaml(&yaml, dir).await.outcome, Outcome::Healthy);

    assert_eq!(server.command("set billing.Ledger NOT_SERVING"), "ok");
    settle();
    let result = probe_yaml(&yaml, dir).await;
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::NotServing);
    assert_eq!(error, "service \"billing.Ledger\" reports NOT_SERVING");
    // The call itself succeeded: the status code is OK.
    assert_eq!(result.protocol.grpc_status, Some(0));

    assert_eq!(server.command("set billing.Ledger UNKNOWN"), "ok");
    let result = probe_yaml(&yaml, dir).await;
    assert_eq!(
        failed(&result).1,
        "service \"billing.Ledger\" reports UNKNOWN"
    );

    assert_eq!(server.command("set billing.Ledger SERVING"), "ok");
    assert_eq!(probe_yaml(&yaml, dir).await.outcome, Outcome::Healthy);
}

#[tokio::test]
async fn whole_server_not_serving_is_not_serving() {
    let Some(mut server) = peer("whole_server_not_serving", &[]) else {
        return;
    };
    server.command("set - NOT_SERVING");
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let result = probe_yaml(&one(&url, ""), std::path::Path::new(".")).await;
    assert_eq!(
        failed(&result),
        (FailureReason::NotServing, "the server reports NOT_SERVING")
    );
}

#[tokio::test]
async fn unknown_service_is_grpc_status_not_found_with_a_hint() {
    let Some(server) = peer("unknown_service", &[]) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let dir = std::path::Path::new(".");
    let result = probe_yaml(&one(&url, "    grpc: {service: no.Such}\n"), dir).await;
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::GrpcStatus);
    assert!(
        error.starts_with("Health/Check ended with NOT_FOUND"),
        "{error}"
    );
    assert!(error.contains("does not know this service name"), "{error}");
    assert_eq!(result.protocol.grpc_status, Some(5));

    // The usual mistake: a method path where a service name belongs.
    let yaml = one(&url, "    grpc: {service: /billing.Ledger/Charge}\n");
    let result = probe_yaml(&yaml, dir).await;
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::GrpcStatus);
    assert!(error.contains("not a method path"), "{error}");
}

#[tokio::test]
async fn server_without_health_service_is_grpc_status_unimplemented() {
    let Some(server) = peer("server_without_health_service", &["--no-health"]) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let result = probe_yaml(&one(&url, ""), std::path::Path::new(".")).await;
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::GrpcStatus);
    assert!(
        error.starts_with("Health/Check ended with UNIMPLEMENTED"),
        "{error}"
    );
    assert!(error.contains("no grpc.health.v1.Health"), "{error}");
    assert_eq!(result.protocol.grpc_status, Some(12));
}

#[tokio::test]
async fn stopped_server_is_connect_with_no_status_code() {
    let Some(mut server) = peer("stopped_server", &[]) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    assert_eq!(server.command("stop"), "stopped");
    let result = probe_yaml(&one(&url, ""), std::path::Path::new(".")).await;
    assert_eq!(failed(&result).0, FailureReason::Connect, "{result:?}");
    assert_eq!(result.protocol.grpc_status, Some(-1));
}

#[tokio::test]
async fn metadata_from_the_config_and_from_files_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let Some(server) = peer(
        "metadata_reaches_the_server",
        &[
            "--require-metadata",
            "x-tenant=blue",
            "--require-metadata",
            "authorization=Bearer s3cret",
        ],
    ) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let both = "    grpc:\n      metadata: {x-tenant: blue}\n      metadata_files: {authorization: token}\n";
    let result = probe_yaml(&one(&url, both), dir.path()).await;
    // The token file holds only the credential; the scheme is part of the file's value here.
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::GrpcStatus);
    assert!(error.contains("UNAUTHENTICATED"), "{error}");

    std::fs::write(dir.path().join("token"), "Bearer s3cret\n").unwrap();
    let result = probe_yaml(&one(&url, both), dir.path()).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");

    let only_plain = "    grpc: {metadata: {x-tenant: blue}}\n";
    let result = probe_yaml(&one(&url, only_plain), dir.path()).await;
    assert!(failed(&result).1.contains("UNAUTHENTICATED"));
}

#[tokio::test]
async fn tls_server_is_healthy_with_its_ca_and_a_tls_failure_without() {
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server-key.pem");
    let Some(server) = peer(
        "tls_server",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    let url = format!("grpcs://127.0.0.1:{}", server.port);
    let with_ca = one(&url, "    grpc: {tls: {ca_file: ca.pem}}\n");
    let result = probe_yaml(&with_ca, dir.path()).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    assert!(result.phases.tls > std::time::Duration::ZERO);
    assert!(result.cert_expiry.is_some());

    let result = probe_yaml(&one(&url, ""), dir.path()).await;
    assert_eq!(failed(&result).0, FailureReason::Tls, "{result:?}");
}

#[tokio::test]
async fn mtls_server_wants_a_client_certificate_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let Some(server) = peer(
        "mtls_server",
        &[
            "--cert",
            &path("server.pem"),
            "--key",
            &path("server-key.pem"),
            "--client-ca",
            &path("ca.pem"),
        ],
    ) else {
        return;
    };
    let url = format!("grpcs://127.0.0.1:{}", server.port);
    let without = one(&url, "    grpc: {tls: {ca_file: ca.pem}}\n");
    let result = probe_yaml(&without, dir.path()).await;
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::Tls, "{result:?}");
    assert!(error.contains("wants a client certificate"), "{error}");

    let with = one(
        &url,
        "    grpc: {tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}}\n",
    );
    let result = probe_yaml(&with, dir.path()).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}
