//! TLS as Go and OpenSSL clients do it, against real rustls peers on loopback: a self-signed
//! CA:TRUE certificate given as `ca_file`, chains with and without their intermediate, client
//! certificates, readable failures, and the served certificate's expiry kept when it fails.

mod harness;
mod tls_peer;

use std::time::Duration;

use agent_health_exporter::config::tls::TlsFiles;
use agent_health_exporter::probe::{run, FailureReason, Outcome, ProbeResult};
use harness::{http_agent, Behaviour, MockAgent};
use tls_peer::{self_signed, Ca, Days, PeerTls, TlsPeer, VALID};

fn failure(result: &ProbeResult) -> (FailureReason, &str) {
    match &result.outcome {
        Outcome::Failed { reason, error } => (*reason, error),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn trusting(pem: &str) -> TlsFiles {
    TlsFiles {
        ca_pem: Some(pem.as_bytes().to_vec()),
        ..TlsFiles::default()
    }
}

/// A message fit for a person: no Rust debug output, and advice after a semicolon.
fn assert_readable(error: &str) {
    for debug in [
        "Other(",
        "OtherError",
        "Context {",
        "DnsName(",
        "AlertReceived",
        "Custom {",
    ] {
        assert!(!error.contains(debug), "debug output in: {error}");
    }
    assert!(error.contains("; "), "no advice in: {error}");
}

#[tokio::test]
async fn self_signed_ca_certificate_given_as_ca_file_is_trusted() {
    let identity = self_signed(&["127.0.0.1", "localhost"], true, VALID);
    let peer = TlsPeer::start(PeerTls::serving(&identity)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&identity.pem))
        .build();
    let result = run(&spec).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    assert_eq!(result.cert_expiry, Some(identity.not_after));
}

#[tokio::test]
async fn self_signed_ca_certificate_as_ca_file_is_still_checked_for_its_name() {
    let identity = self_signed(&["agent.internal"], true, VALID);
    let peer = TlsPeer::start(PeerTls::serving(&identity)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&identity.pem))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert!(
        error.contains("the certificate is for agent.internal, not 127.0.0.1; "),
        "{error}"
    );
    assert_readable(error);
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&identity.pem))
        .server_name("agent.internal")
        .build();
    assert_eq!(run(&spec).await.outcome, Outcome::Healthy);
}

#[tokio::test]
async fn expired_self_signed_ca_certificate_fails_with_tls_and_keeps_its_expiry() {
    let identity = self_signed(&["127.0.0.1"], true, Days { from: -30, to: -2 });
    let peer = TlsPeer::start(PeerTls::serving(&identity)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&identity.pem))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert!(error.contains("the certificate expired at "), "{error}");
    assert_readable(error);
    assert_eq!(result.cert_expiry, Some(identity.not_after));
}

#[tokio::test]
async fn not_yet_valid_self_signed_ca_certificate_fails_with_tls() {
    let identity = self_signed(&["127.0.0.1"], true, Days { from: 2, to: 30 });
    let peer = TlsPeer::start(PeerTls::serving(&identity)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&identity.pem))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert!(error.contains("is not valid before"), "{error}");
    assert_readable(error);
}

#[tokio::test]
async fn expired_leaf_keeps_the_earliest_expiry_of_the_served_chain() {
    let ca = Ca::new("Test Root");
    let leaf = ca.leaf(&["127.0.0.1"], Days { from: -30, to: -1 });
    let peer = TlsPeer::start(PeerTls::serving(&leaf)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&ca.pem()))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert!(error.contains("renew it on the agent"), "{error}");
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
}

#[tokio::test]
async fn chain_with_its_intermediate_is_trusted_and_without_it_is_not() {
    let root = Ca::new("Test Root");
    let intermediate = root.intermediate("Test Intermediate");
    let leaf = intermediate.leaf(&["localhost"], VALID);
    let mut full = PeerTls::serving(&leaf);
    full.chain.push(intermediate.der());
    let peer = TlsPeer::start(full).await;
    let spec = http_agent(peer.url("localhost"))
        .tls(trusting(&root.pem()))
        .build();
    assert_eq!(run(&spec).await.outcome, Outcome::Healthy);

    let missing = TlsPeer::start(PeerTls::serving(&leaf)).await;
    let spec = http_agent(missing.url("localhost"))
        .tls(trusting(&root.pem()))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert!(error.contains("not issued by a trusted CA; "), "{error}");
    assert_readable(error);
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
}

#[tokio::test]
async fn ca_certificate_served_but_not_in_ca_file_is_refused_readably() {
    let served = self_signed(&["127.0.0.1"], true, VALID);
    let other = self_signed(&["127.0.0.1"], true, VALID);
    let peer = TlsPeer::start(PeerTls::serving(&served)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&other.pem))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert_readable(error);
}

async fn mtls_peer(tls12_only: bool) -> (TlsPeer, Ca, Ca) {
    let server_ca = Ca::new("Server CA");
    let client_ca = Ca::new("Client CA");
    let leaf = server_ca.leaf(&["127.0.0.1"], VALID);
    let mut tls = PeerTls::serving(&leaf);
    tls.client_ca = Some(client_ca.der());
    tls.tls12_only = tls12_only;
    (TlsPeer::start(tls).await, server_ca, client_ca)
}

#[tokio::test]
async fn client_certificate_required_but_not_given_fails_with_tls_in_tls13() {
    let (peer, server_ca, _) = mtls_peer(false).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&server_ca.pem()))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls, "{error}");
    assert!(
        error.contains("requires a client certificate; give tls.cert_file and tls.key_file"),
        "{error}"
    );
}

#[tokio::test]
async fn client_certificate_required_but_not_given_fails_with_tls_in_tls12() {
    let (peer, server_ca, _) = mtls_peer(true).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&server_ca.pem()))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls, "{error}");
    assert_readable(error);
}

#[tokio::test]
async fn client_certificate_given_is_accepted_by_an_mtls_agent() {
    let (peer, server_ca, client_ca) = mtls_peer(false).await;
    let client = client_ca.leaf(&["probe"], VALID);
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(TlsFiles {
            ca_pem: Some(server_ca.pem().into_bytes()),
            cert_pem: Some(client.pem.into_bytes()),
            key_pem: Some(client.key.serialize_pem().into_bytes()),
            insecure_skip_verify: false,
        })
        .build();
    let result = run(&spec).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn redirect_hop_on_another_host_does_not_set_the_agents_expiry() {
    let elsewhere = self_signed(&["localhost"], false, Days { from: -1, to: 3 });
    let peer = TlsPeer::start(PeerTls::serving(&elsewhere)).await;
    let agent = MockAgent::start(Behaviour::RedirectTo(peer.url("localhost").to_string())).await;
    // The agent itself is plain http; its TLS settings serve the hop.
    let spec = http_agent(agent.url("/health"))
        .tls(trusting(&elsewhere.pem))
        .build();
    let result = run(&spec).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    assert_eq!(
        result.cert_expiry, None,
        "the hop's certificate is not the agent's"
    );
}

#[tokio::test]
async fn plain_http_port_probed_with_https_fails_with_tls_readably() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    let mut url = agent.url("/health");
    url.set_scheme("https").unwrap();
    let spec = http_agent(url)
        .tls(TlsFiles::default())
        .timeout(Duration::from_secs(2))
        .build();
    let result = run(&spec).await;
    let (reason, error) = failure(&result);
    assert_eq!(reason, FailureReason::Tls);
    assert_readable(error);
}

#[tokio::test]
async fn every_probe_makes_a_full_handshake_and_checks_the_certificate() {
    let ca = Ca::new("Test Root");
    let leaf = ca.leaf(&["127.0.0.1"], VALID);
    let peer = TlsPeer::start(PeerTls::serving(&leaf)).await;
    let spec = http_agent(peer.url("127.0.0.1"))
        .tls(trusting(&ca.pem()))
        .build();
    for _ in 0..3 {
        let result = run(&spec).await;
        assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
        assert_eq!(result.cert_expiry, Some(leaf.not_after));
    }
    assert_eq!(peer.handshakes(), 3);
    assert_eq!(
        peer.resumed(),
        0,
        "a resumed session skips the certificate check"
    );
}
