//! Every way a probe can end, against real mock agents on loopback: each test names the
//! behaviour of the agent and the outcome (reason, status, phases) the probe must report.

mod harness;

use std::time::Duration;

use agent_health_exporter::config::tls::TlsFiles;
use agent_health_exporter::config::{StatusMatch, MAX_REDIRECTS};
use agent_health_exporter::probe::{run, FailureReason, Outcome, ProbeResult};
use harness::agents::{error, reason};
use harness::{http_agent, refused_addr, tcp_agent, Behaviour, MockAgent, TlsIdentity};
use serde_json::json;
use url::Url;

fn assert_healthy(result: &ProbeResult) {
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn refused_connection_fails_with_connect() {
    let addr = refused_addr().await;
    let url = Url::parse(&format!("http://{addr}/health")).unwrap();
    let result = run(&http_agent(url).build()).await;
    assert_eq!(reason(&result), FailureReason::Connect);
    assert_eq!(error(&result), format!("connection refused by {addr}"));
    assert_eq!(result.http_status, None);
    assert_eq!(
        result.phases.dns,
        Duration::ZERO,
        "a literal IP is not looked up"
    );
}

#[tokio::test]
async fn hung_agent_times_out_within_the_timeout() {
    let agent = MockAgent::start(Behaviour::Hang).await;
    let timeout = Duration::from_millis(300);
    let result = run(&http_agent(agent.url("/health")).timeout(timeout).build()).await;
    assert_eq!(reason(&result), FailureReason::Timeout);
    assert_eq!(error(&result), "timed out after 300ms during first_byte");
    assert!(result.duration >= timeout, "{:?}", result.duration);
    assert!(
        result.duration < timeout + Duration::from_millis(250),
        "{:?}",
        result.duration
    );
    assert!(
        result.phases.connect > Duration::ZERO,
        "completed phases are kept"
    );
    assert_eq!(result.phases.first_byte, Duration::ZERO);
    assert_eq!(agent.requests().len(), 1);
}

#[tokio::test]
async fn server_error_fails_with_http_status() {
    let agent = MockAgent::start(Behaviour::Status(500)).await;
    let result = run(&http_agent(agent.url("/health")).build()).await;
    assert_eq!(reason(&result), FailureReason::HttpStatus);
    assert_eq!(error(&result), "status 500, expected 2xx");
    assert_eq!(result.http_status, Some(500));
}

#[tokio::test]
async fn configured_status_list_accepts_a_non_2xx_status() {
    let agent = MockAgent::start(Behaviour::Status(418)).await;
    let spec = http_agent(agent.url("/"))
        .expect_status(&[StatusMatch::Code(418)])
        .build();
    let result = run(&spec).await;
    assert_healthy(&result);
    assert_eq!(result.http_status, Some(418));
}

#[tokio::test]
async fn wrong_json_value_fails_with_body_mismatch() {
    let agent = MockAgent::start(Behaviour::ok(r#"{"status":"down"}"#)).await;
    let spec = http_agent(agent.url("/health"))
        .expect_json("/status", json!("ok"))
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::BodyMismatch);
    assert_eq!(
        error(&result),
        r#"JSON at /status is "down", expected "ok""#
    );
    assert_eq!(result.http_status, Some(200));
}

#[tokio::test]
async fn unparsable_json_fails_with_body_mismatch() {
    let agent = MockAgent::start(Behaviour::ok("<html>fine</html>")).await;
    let spec = http_agent(agent.url("/health"))
        .expect_json("/status", json!("ok"))
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::BodyMismatch);
    assert!(
        error(&result).starts_with("body is not JSON"),
        "{}",
        error(&result)
    );
}

#[tokio::test]
async fn self_signed_certificate_without_ca_file_fails_with_tls() {
    let identity = TlsIdentity::loopback();
    let agent = MockAgent::start_tls(Behaviour::ok("ok"), &identity).await;
    let spec = http_agent(agent.url("/health"))
        .tls(TlsFiles::default())
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::Tls);
    assert!(error(&result).contains("certificate"), "{}", error(&result));
    // The served certificate's expiry is known even though it was refused.
    assert_eq!(result.cert_expiry, Some(identity.not_after));
    assert!(agent.requests().is_empty());
}

#[tokio::test]
async fn self_signed_certificate_trusted_by_ca_file_is_healthy_with_its_expiry() {
    let identity = TlsIdentity::loopback();
    let agent = MockAgent::start_tls(Behaviour::ok("ok"), &identity).await;
    let spec = http_agent(agent.url("/health")).trusting(&identity).build();
    let result = run(&spec).await;
    assert_healthy(&result);
    assert_eq!(result.cert_expiry, Some(identity.not_after));
    assert!(result.phases.tls > Duration::ZERO);
}

#[tokio::test]
async fn server_name_overrides_the_name_checked_in_the_certificate() {
    let identity = TlsIdentity::self_signed(&["agent.internal"]);
    let agent = MockAgent::start_tls(Behaviour::ok("ok"), &identity).await;
    let spec = http_agent(agent.url("/health"))
        .trusting(&identity)
        .server_name("agent.internal")
        .build();
    assert_healthy(&run(&spec).await);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_certificate() {
    let identity = TlsIdentity::self_signed(&["somewhere.else"]);
    let agent = MockAgent::start_tls(Behaviour::ok("ok"), &identity).await;
    let spec = http_agent(agent.url("/health"))
        .tls(TlsFiles {
            insecure_skip_verify: true,
            ..TlsFiles::default()
        })
        .build();
    let result = run(&spec).await;
    assert_healthy(&result);
    assert_eq!(result.cert_expiry, Some(identity.not_after));
}

#[tokio::test]
async fn endless_body_fails_with_body_too_large_and_closes_the_connection() {
    let agent = MockAgent::start(Behaviour::EndlessBody).await;
    let spec = http_agent(agent.url("/health"))
        .max_body_bytes(64 * 1024)
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::BodyTooLarge);
    assert_eq!(error(&result), "body is above the 65536-byte limit");
    assert_eq!(result.http_status, Some(200));
    assert!(agent.saw_early_close(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn huge_content_length_fails_with_body_too_large_before_reading() {
    let agent = MockAgent::start(Behaviour::HugeContentLength).await;
    let spec = http_agent(agent.url("/health"))
        .timeout(Duration::from_secs(2))
        .build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::BodyTooLarge);
    assert_eq!(
        error(&result),
        "Content-Length 10737418240 is above the 1048576-byte limit"
    );
    assert!(
        result.duration < Duration::from_secs(1),
        "{:?}",
        result.duration
    );
}

#[tokio::test]
async fn redirect_loop_fails_with_redirect() {
    let agent = MockAgent::start(Behaviour::RedirectLoop).await;
    let result = run(&http_agent(agent.url("/health")).build()).await;
    assert_eq!(reason(&result), FailureReason::Redirect);
    assert_eq!(
        error(&result),
        format!("more than {MAX_REDIRECTS} redirects")
    );
    assert_eq!(agent.requests().len(), MAX_REDIRECTS + 1);
    assert_eq!(result.http_status, Some(302));
}

#[tokio::test]
async fn redirect_chain_of_two_is_healthy_with_phases_summed_over_hops() {
    let delay = Duration::from_millis(60);
    let agent = MockAgent::start(Behaviour::RedirectChain { hops: 2, delay }).await;
    let result = run(&http_agent(agent.url("/hop/0")).build()).await;
    assert_healthy(&result);
    assert_eq!(result.http_status, Some(200));
    let targets: Vec<String> = agent.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/hop/0", "/hop/1", "/hop/2"]);
    assert!(
        result.phases.first_byte >= 3 * delay,
        "first_byte {:?} is the sum over three hops",
        result.phases.first_byte
    );
}

#[tokio::test]
async fn redirect_not_followed_is_judged_by_its_status() {
    let agent = MockAgent::start(Behaviour::RedirectLoop).await;
    let spec = http_agent(agent.url("/health")).follow_redirects(false);
    let result = run(&spec.build()).await;
    assert_eq!(reason(&result), FailureReason::HttpStatus);
    assert_eq!(error(&result), "status 302, expected 2xx");
    let spec = http_agent(agent.url("/health"))
        .follow_redirects(false)
        .expect_status(&[StatusMatch::Class(3)]);
    assert_healthy(&run(&spec.build()).await);
    assert_eq!(agent.requests().len(), 2);
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_origin_after_a_redirect() {
    let elsewhere = MockAgent::start(Behaviour::ok("ok")).await;
    let agent = MockAgent::start(Behaviour::RedirectTo(elsewhere.url("/x").to_string())).await;
    let spec = http_agent(agent.url("/health")).bearer("s3cret").build();
    assert_healthy(&run(&spec).await);
    assert_eq!(
        agent.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );
    assert_eq!(elsewhere.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn unresolvable_name_fails_with_dns() {
    let url = Url::parse("http://nothing.invalid/health").unwrap();
    let result = run(&http_agent(url).timeout(Duration::from_secs(2)).build()).await;
    assert_eq!(reason(&result), FailureReason::Dns);
    assert!(
        error(&result).starts_with("cannot resolve nothing.invalid"),
        "{}",
        error(&result)
    );
    assert_eq!(result.phases.connect, Duration::ZERO);
}

#[tokio::test]
async fn reset_mid_response_fails_with_protocol() {
    let agent = MockAgent::start(Behaviour::Reset).await;
    let result = run(&http_agent(agent.url("/health")).build()).await;
    assert_eq!(reason(&result), FailureReason::Protocol);
}

#[tokio::test]
async fn garbage_instead_of_http_fails_with_protocol() {
    let agent = MockAgent::start(Behaviour::Garbage).await;
    let result = run(&http_agent(agent.url("/health")).build()).await;
    assert_eq!(reason(&result), FailureReason::Protocol);
    assert_eq!(result.http_status, None);
}

#[tokio::test]
async fn slow_agent_is_degraded_by_latency() {
    let agent = MockAgent::start(Behaviour::Slow(Duration::from_millis(150))).await;
    let spec = http_agent(agent.url("/health"))
        .degraded_latency_above(Duration::from_millis(50))
        .build();
    let result = run(&spec).await;
    let Outcome::Degraded(why) = &result.outcome else {
        panic!("expected degraded, got {result:?}")
    };
    assert!(why.starts_with("latency "), "{why}");
    assert!(why.ends_with(" above 0.050s"), "{why}");
    assert!(result.outcome.is_success());
}

#[tokio::test]
async fn json_condition_marks_the_agent_degraded() {
    let agent = MockAgent::start(Behaviour::ok(r#"{"status":"degraded","ok":true}"#)).await;
    let spec = http_agent(agent.url("/health"))
        .expect_json("/ok", json!(true))
        .degraded_json("/status", json!("degraded"))
        .build();
    let result = run(&spec).await;
    assert_eq!(
        result.outcome,
        Outcome::Degraded(r#"JSON at /status is "degraded""#.into())
    );
}

#[tokio::test]
async fn body_contains_and_body_regex_hold_for_a_healthy_agent() {
    let agent = MockAgent::start(Behaviour::ok("status: ok, uptime 1234s")).await;
    let spec = http_agent(agent.url("/health"))
        .body_contains("status: ok")
        .body_regex(r"uptime \d+s")
        .build();
    let result = run(&spec).await;
    assert_healthy(&result);
    assert!(result.phases.first_byte > Duration::ZERO);
    assert!(result.phases.transfer > Duration::ZERO);
    assert!(result.duration >= result.phases.connect + result.phases.first_byte);
}

#[tokio::test]
async fn bearer_token_reaches_the_agent() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    let spec = http_agent(agent.url("/health")).bearer("t0ken").build();
    assert_healthy(&run(&spec).await);
    let requests = agent.requests();
    assert_eq!(requests[0].header_values("authorization"), ["Bearer t0ken"]);
}

#[tokio::test]
async fn basic_auth_reaches_the_agent() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    let spec = http_agent(agent.url("/health"))
        .basic_auth("probe", "hunter2")
        .build();
    assert_healthy(&run(&spec).await);
    assert_eq!(
        agent.requests()[0].header("authorization"),
        Some("Basic cHJvYmU6aHVudGVyMg==")
    );
}

#[tokio::test]
async fn request_carries_host_user_agent_headers_and_asks_to_close() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    let spec = http_agent(agent.url("/health?verbose=1"))
        .method(http::Method::HEAD)
        .header("X-Probe", "1")
        .header("User-Agent", "custom/2")
        .build();
    assert_healthy(&run(&spec).await);
    let request = &agent.requests()[0];
    assert_eq!(request.method, "HEAD");
    assert_eq!(request.target, "/health?verbose=1");
    assert_eq!(
        request.header("host"),
        Some(agent.addr.to_string().as_str())
    );
    assert_eq!(request.header_values("user-agent"), ["custom/2"]);
    assert_eq!(request.header("x-probe"), Some("1"));
    assert_eq!(request.header("connection"), Some("close"));
}

#[tokio::test]
async fn default_user_agent_names_the_exporter() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    assert_healthy(&run(&http_agent(agent.url("/")).build()).await);
    assert_eq!(
        agent.requests()[0].header("user-agent"),
        Some(concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn tcp_agent_accepting_connections_is_healthy() {
    let agent = MockAgent::start(Behaviour::Hang).await;
    let result = run(&tcp_agent("127.0.0.1", agent.addr.port()).build()).await;
    assert_healthy(&result);
    assert!(result.phases.connect > Duration::ZERO);
    assert_eq!(result.http_status, None);
}

#[tokio::test]
async fn tcp_agent_refusing_connections_fails_with_connect() {
    let addr = refused_addr().await;
    let result = run(&tcp_agent("127.0.0.1", addr.port()).build()).await;
    assert_eq!(reason(&result), FailureReason::Connect);
    assert_eq!(error(&result), format!("connection refused by {addr}"));
}

#[tokio::test]
async fn tcp_agent_by_name_is_resolved() {
    let agent = MockAgent::start(Behaviour::Hang).await;
    let result = run(&tcp_agent("localhost", agent.addr.port()).build()).await;
    assert_healthy(&result);
}
