//! What a redirect hop receives: the configured headers (often API keys) and credentials go
//! only to the configured URL's origin (scheme, host, port), as curl does without
//! `--location-trusted`; and what an agent's body can put into an error message.

mod harness;

use agent_health_exporter::probe::{run, FailureReason, Outcome};
use harness::{http_agent, Behaviour, MockAgent};
use serde_json::json;

#[tokio::test]
async fn configured_headers_are_not_sent_to_another_origin_after_a_redirect() {
    // Same host, another port: another origin.
    let elsewhere = MockAgent::start(Behaviour::ok("ok")).await;
    let agent = MockAgent::start(Behaviour::RedirectTo(elsewhere.url("/x").to_string())).await;
    let spec = http_agent(agent.url("/health"))
        .header("X-Api-Key", "k3y")
        .header("User-Agent", "custom/2")
        .basic_auth("probe", "hunter2")
        .build();
    assert_eq!(run(&spec).await.outcome, Outcome::Healthy);
    let first = &agent.requests()[0];
    assert_eq!(first.header("x-api-key"), Some("k3y"));
    assert_eq!(first.header("user-agent"), Some("custom/2"));
    assert!(first.header("authorization").is_some());
    let hop = &elsewhere.requests()[0];
    assert_eq!(hop.header("x-api-key"), None, "{hop:?}");
    assert_eq!(hop.header("authorization"), None, "{hop:?}");
    assert_eq!(
        hop.header("user-agent"),
        Some(concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn configured_headers_follow_redirects_on_the_same_origin() {
    let agent = MockAgent::start(Behaviour::RedirectChain {
        hops: 2,
        delay: std::time::Duration::ZERO,
    })
    .await;
    let spec = http_agent(agent.url("/hop/0"))
        .header("X-Api-Key", "k3y")
        .bearer("t0ken")
        .build();
    assert_eq!(run(&spec).await.outcome, Outcome::Healthy);
    let requests = agent.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request.header("x-api-key"), Some("k3y"), "{request:?}");
        assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
    }
}

#[tokio::test]
async fn body_text_reaches_the_error_only_as_a_short_escaped_excerpt() {
    let long = format!("\u{1b}[31m{}\r\nInjected: line", "A".repeat(10_000));
    let body = json!({ "status": long }).to_string();
    let agent = MockAgent::start(Behaviour::ok(&body)).await;
    let spec = http_agent(agent.url("/health"))
        .expect_json("/status", json!("ok"))
        .build();
    let result = run(&spec).await;
    let Outcome::Failed { reason, error } = &result.outcome else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(*reason, FailureReason::BodyMismatch);
    assert!(error.len() < 200, "{} bytes: {error}", error.len());
    assert!(!error.chars().any(char::is_control), "{error:?}");
    assert!(
        error.starts_with(r#"JSON at /status is "\u001b[31mAAA"#),
        "{error}"
    );
}

#[tokio::test]
async fn location_with_a_long_odd_scheme_is_quoted_short() {
    let scheme = format!("x{}", "y".repeat(5_000));
    let agent = MockAgent::start(Behaviour::RedirectTo(format!("{scheme}:/x"))).await;
    let result = run(&http_agent(agent.url("/health")).build()).await;
    let Outcome::Failed { reason, error } = &result.outcome else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(*reason, FailureReason::Redirect);
    assert!(error.len() < 200, "{} bytes", error.len());
}
