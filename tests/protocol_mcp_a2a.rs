//! The MCP and A2A probes against their reference implementations: the official MCP SDK
//! (streamable HTTP, JSON and SSE answers), a2a-sdk serving its agent card, and small servers
//! that fail on purpose (tests/peers/). Skips without the peers' venv.

mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use agent_health_exporter::probe::{self, FailureReason, Outcome, ProbeResult};
use harness::peers::{agent, python, python_a2a03, Peer};

fn peer(test: &str, modules: &str, script: &str, args: &[&str]) -> Option<Peer> {
    let python = python(test, modules)?;
    Some(Peer::start(&python, script, args))
}

fn mcp_peer(test: &str, script: &str, args: &[&str]) -> Option<Peer> {
    peer(test, "mcp.server.fastmcp, uvicorn", script, args)
}

fn a2a_peer(test: &str, args: &[&str]) -> Option<Peer> {
    peer(test, "a2a.server.routes, uvicorn", "a2a_server.py", args)
}

async fn probe_yaml(url: &str, protocol: &str, extra: &str) -> ProbeResult {
    probe_within(url, protocol, "2s", extra).await
}

async fn probe_within(url: &str, protocol: &str, timeout: &str, extra: &str) -> ProbeResult {
    let yaml = format!(
        "agents:\n  - name: p\n    type: t\n    url: {url}\n    timeout: {timeout}\n    protocol: {protocol}\n{extra}"
    );
    probe::run(&agent(&yaml, Path::new("."))).await
}

fn failed(result: &ProbeResult) -> (FailureReason, &str) {
    match &result.outcome {
        Outcome::Failed { reason, error } => (*reason, error.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn mcp_sdk_server_passes_the_lifecycle_with_sse_and_with_json_answers() {
    for args in [&[][..], &["--json"][..], &["--stateless", "--json"][..]] {
        let Some(server) = mcp_peer("mcp_sdk_server_passes", "mcp_server.py", args) else {
            return;
        };
        let url = format!("http://127.0.0.1:{}/mcp", server.port);
        let result = probe_yaml(&url, "mcp", "    mcp: {expect_tools: [add, echo]}\n").await;
        assert_eq!(result.outcome, Outcome::Healthy, "{args:?}: {result:?}");
        let info = result.protocol.info.as_ref().expect("server info");
        assert_eq!(info.protocol, "mcp");
        assert_eq!(info.server_name, "peer-tools");
        assert_eq!(info.protocol_version, "2025-11-25", "negotiated version");
        assert!(result.phases.first_byte > std::time::Duration::ZERO);
        assert_eq!(result.http_status, Some(200), "{args:?}");
    }
}

#[tokio::test]
async fn mcp_server_without_an_expected_tool_is_body_mismatch() {
    let Some(server) = mcp_peer("mcp_missing_tool", "mcp_server.py", &[]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let result = probe_yaml(&url, "mcp", "    mcp: {expect_tools: [add, search]}\n").await;
    assert_eq!(
        failed(&result),
        (FailureReason::BodyMismatch, "tools/list lacks search")
    );
}

#[tokio::test]
async fn mcp_json_rpc_error_to_every_request_is_not_serving_with_code_and_message() {
    let Some(server) = mcp_peer(
        "mcp_init_error",
        "mcp_misbehaving.py",
        &["--mode", "init-error"],
    ) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let result = probe_yaml(&url, "mcp", "").await;
    assert_eq!(
        failed(&result),
        (
            FailureReason::NotServing,
            "server/discover: JSON-RPC error -32603: backend database unavailable"
        )
    );
}

#[tokio::test]
async fn mcp_garbage_and_bad_framing_are_protocol_and_a_hang_is_timeout() {
    for (mode, reason) in [
        ("garbage", FailureReason::Protocol),
        ("bad-sse", FailureReason::Protocol),
        ("hang", FailureReason::Timeout),
    ] {
        let Some(server) = mcp_peer("mcp_misbehaving", "mcp_misbehaving.py", &["--mode", mode])
        else {
            return;
        };
        let url = format!("http://127.0.0.1:{}/mcp", server.port);
        let result = probe_yaml(&url, "mcp", "").await;
        assert_eq!(failed(&result).0, reason, "{mode}: {result:?}");
    }
}

#[tokio::test]
async fn mcp_sdk_server_with_an_event_store_opens_its_answers_with_a_priming_event_and_is_healthy()
{
    let Some(server) = mcp_peer("mcp_sdk_priming", "mcp_server.py", &["--event-store"]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let result = probe_yaml(&url, "mcp", "    mcp: {expect_tools: [add, echo]}\n").await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn mcp_modern_server_failing_discover_is_not_serving_not_probed_as_a_legacy_one() {
    // Its handshake still answers: falling back would call a broken server healthy.
    let Some(result) = probe_misbehaving("mcp_broken_modern", "broken-modern", "").await else {
        return;
    };
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::NotServing, "{result:?}");
    assert!(
        error.starts_with("server/discover: JSON-RPC error -32603"),
        "{error}"
    );
}

#[tokio::test]
async fn mcp_server_refusing_the_credentials_is_http_status_on_discover_not_a_legacy_retry() {
    let Some(result) = probe_misbehaving("mcp_unauthorized", "unauthorized", "").await else {
        return;
    };
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::HttpStatus, "{result:?}");
    assert!(
        error.starts_with("server/discover: HTTP status 401"),
        "{error}"
    );
}

/// The misbehaving peer in `mode`, probed with `extra` config lines.
async fn probe_misbehaving(test: &str, mode: &str, extra: &str) -> Option<ProbeResult> {
    let server = mcp_peer(test, "mcp_misbehaving.py", &["--mode", mode])?;
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    Some(probe_yaml(&url, "mcp", extra).await)
}

#[tokio::test]
async fn mcp_sse_answer_after_a_comment_only_event_and_an_empty_priming_event_is_read() {
    let tools = "    mcp: {expect_tools: [echo]}\n";
    let Some(result) = probe_misbehaving("mcp_prime", "prime", tools).await else {
        return;
    };
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn mcp_notifications_and_server_requests_before_the_answer_are_skipped() {
    let tools = "    mcp: {expect_tools: [echo]}\n";
    let Some(result) = probe_misbehaving("mcp_sse_requests", "sse-requests", tools).await else {
        return;
    };
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn mcp_server_answering_ping_with_method_not_found_is_probed_with_tools_list() {
    let Some(result) = probe_misbehaving("mcp_no_ping", "no-ping", "").await else {
        return;
    };
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn mcp_server_closing_the_connection_after_each_answer_is_healthy() {
    let tools = "    mcp: {expect_tools: [echo]}\n";
    let Some(result) = probe_misbehaving("mcp_close", "close", tools).await else {
        return;
    };
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    assert!(
        result.phases.connect > std::time::Duration::ZERO,
        "{result:?}"
    );
    assert!(
        result.phases.first_byte > std::time::Duration::ZERO,
        "{result:?}"
    );
}

/// Asks the sessions peer until every session it opened was deleted; answers its last count.
async fn sessions_after_deletes(server: &mut Peer) -> String {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let count = server.command("sessions");
        if count.starts_with("open=0 ") || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mcp_sessions_are_deleted_after_success_failure_and_timeout() {
    let Some(mut server) = mcp_peer(
        "mcp_sessions_deleted",
        "mcp_misbehaving.py",
        &["--mode", "sessions"],
    ) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let healthy = probe_within(&url, "mcp", "1s", "    mcp: {expect_tools: [echo]}\n").await;
    assert_eq!(healthy.outcome, Outcome::Healthy, "{healthy:?}");
    let lacking = probe_within(&url, "mcp", "1s", "    mcp: {expect_tools: [search]}\n").await;
    assert_eq!(
        failed(&lacking).0,
        FailureReason::BodyMismatch,
        "{lacking:?}"
    );
    for step in ["ping", "initialize-body"] {
        let hang = format!("    http: {{headers: {{X-Hang: {step}}}}}\n");
        let hung = probe_within(&url, "mcp", "1s", &hang).await;
        assert_eq!(failed(&hung).0, FailureReason::Timeout, "{step}: {hung:?}");
    }
    let count = sessions_after_deletes(&mut server).await;
    assert_eq!(
        count, "open=0 deleted=4",
        "every session ends, failed probes' too"
    );
}

#[tokio::test]
async fn mcp_hanging_delete_changes_neither_the_verdict_nor_its_duration() {
    let Some(mut server) = mcp_peer(
        "mcp_hanging_delete",
        "mcp_misbehaving.py",
        &["--mode", "sessions"],
    ) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let hang = "    http: {headers: {X-Hang: delete}}\n    mcp: {expect_tools: [echo]}\n";
    let result = probe_within(&url, "mcp", "2s", hang).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    assert!(
        result.duration < Duration::from_secs(1),
        "the DELETE is not part of the probe: {result:?}"
    );
    let count = sessions_after_deletes(&mut server).await;
    assert_eq!(count, "open=0 deleted=1", "the DELETE was sent");
}

#[tokio::test]
async fn mcp_on_a_path_that_is_no_endpoint_is_http_status() {
    let Some(server) = mcp_peer("mcp_wrong_path", "mcp_server.py", &[]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/nothing", server.port);
    let result = probe_yaml(&url, "mcp", "").await;
    assert_eq!(failed(&result).0, FailureReason::HttpStatus, "{result:?}");
}

#[tokio::test]
async fn a2a_sdk_card_is_healthy_at_the_new_and_the_old_well_known_path() {
    for args in [&[][..], &["--old-path"][..]] {
        let Some(server) = a2a_peer("a2a_sdk_card", args) else {
            return;
        };
        let url = format!("http://127.0.0.1:{}/", server.port);
        let result = probe_yaml(&url, "a2a", "    a2a: {expect_skills: [book-flight]}\n").await;
        assert_eq!(result.outcome, Outcome::Healthy, "{args:?}: {result:?}");
        let info = result.protocol.info.as_ref().expect("card info");
        assert_eq!(
            (
                info.server_name.as_str(),
                info.server_version.as_str(),
                info.protocol_version.as_str()
            ),
            ("Peer Travel Agent", "1.4.2", "1.0")
        );
    }
}

#[tokio::test]
async fn a2a_missing_skill_or_invalid_card_is_body_mismatch_naming_it() {
    let Some(server) = a2a_peer("a2a_missing_skill", &[]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/", server.port);
    let result = probe_yaml(&url, "a2a", "    a2a: {expect_skills: [book-hotel]}\n").await;
    assert_eq!(
        failed(&result),
        (
            FailureReason::BodyMismatch,
            "agent card: `skills` lacks book-hotel"
        )
    );
    let Some(invalid) = a2a_peer("a2a_invalid_card", &["--invalid"]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/", invalid.port);
    let result = probe_yaml(&url, "a2a", "").await;
    assert_eq!(
        failed(&result),
        (
            FailureReason::BodyMismatch,
            "agent card: `skills` is missing or not a list"
        )
    );
}

#[tokio::test]
async fn a2a_without_a_card_is_http_status() {
    let Some(server) = mcp_peer("a2a_without_card", "mcp_server.py", &[]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/", server.port);
    let result = probe_yaml(&url, "a2a", "").await;
    let (reason, error) = failed(&result);
    assert_eq!(reason, FailureReason::HttpStatus);
    assert!(error.starts_with("no agent card at"), "{error}");
}

#[tokio::test]
async fn mcp_and_a2a_successes_slower_than_latency_above_are_degraded() {
    let slow = "    degraded: {latency_above: 1us}\n";
    if let Some(server) = mcp_peer("mcp_degraded_by_latency", "mcp_server.py", &["--json"]) {
        let url = format!("http://127.0.0.1:{}/mcp", server.port);
        let result = probe_yaml(&url, "mcp", slow).await;
        let Outcome::Degraded(why) = &result.outcome else {
            panic!("expected degraded, got {result:?}");
        };
        assert!(why.starts_with("latency "), "{why}");
    }
    if let Some(server) = a2a_peer("a2a_degraded_by_latency", &[]) {
        let url = format!("http://127.0.0.1:{}/", server.port);
        let result = probe_yaml(&url, "a2a", slow).await;
        assert!(
            matches!(&result.outcome, Outcome::Degraded(why) if why.starts_with("latency ")),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn a2a_card_matching_a_degraded_json_rule_is_degraded_naming_it() {
    let Some(server) = a2a_peer("a2a_degraded_by_card", &[]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/", server.port);
    let matching = "    degraded: {json: {/version: '1.4.2'}}\n";
    let result = probe_yaml(&url, "a2a", matching).await;
    assert_eq!(
        result.outcome,
        Outcome::Degraded(r#"JSON at /version is "1.4.2""#.into())
    );
    let other = "    degraded: {json: {/version: '0.9'}}\n";
    let result = probe_yaml(&url, "a2a", other).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

/// Point of the info series: what the agent runs, also while it does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_info_keeps_the_last_reported_server_through_failed_probes() {
    let Some(server) = a2a_peer("a2a_info_kept", &[]) else {
        return;
    };
    let port = server.port;
    let yaml = format!(
        "agents:\n  - {{name: card, type: t, url: 'http://127.0.0.1:{port}/', protocol: a2a, interval: 200ms, timeout: 150ms}}\n"
    );
    let served = harness::Served::start(&yaml).await;
    let info = "agent_protocol_info{agent=\"card\",agent_type=\"t\",protocol=\"a2a\",server_name=\"Peer Travel Agent\",server_version=\"1.4.2\",protocol_version=\"1.0\"}";
    let answered = harness::wait_until(Duration::from_secs(10), || {
        harness::metric(&served.scrape(), info) == Some(1.0)
    })
    .await;
    assert!(answered, "{}", served.scrape());
    drop(server);
    let down = harness::wait_until(Duration::from_secs(10), || {
        harness::metric(
            &served.scrape(),
            "agent_up{agent=\"card\",agent_type=\"t\"}",
        ) == Some(0.0)
    })
    .await;
    assert!(down, "the agent never failed: {}", served.scrape());
    let text = served.scrape();
    assert_eq!(harness::metric(&text, info), Some(1.0), "{text}");
}

#[tokio::test]
async fn mcp_server_refusing_every_version_we_speak_is_protocol_naming_the_versions() {
    let Some(result) = probe_misbehaving("mcp_future", "future", "").await else {
        return;
    };
    assert_eq!(
        failed(&result),
        (
            FailureReason::Protocol,
            "server/discover: the server speaks 2099-01-01, \
             we speak 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26"
        )
    );
}

#[tokio::test]
async fn a2a_sdk_0_3_agent_is_healthy_and_reports_protocol_0_3_0() {
    let Some(python) = python_a2a03("a2a_sdk_0_3", "a2a.server.apps, uvicorn") else {
        return;
    };
    let server = Peer::start(&python, "a2a03_server.py", &[]);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let result = probe_yaml(&url, "a2a", "    a2a: {expect_skills: [book-flight]}\n").await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
    let info = result.protocol.info.as_ref().expect("card info");
    assert_eq!(
        (
            info.server_name.as_str(),
            info.server_version.as_str(),
            info.protocol_version.as_str()
        ),
        ("Peer Travel Agent 0.3", "0.3.9", "0.3.0")
    );
    let missing = probe_yaml(&url, "a2a", "    a2a: {expect_skills: [book-hotel]}\n").await;
    assert_eq!(
        failed(&missing).0,
        FailureReason::BodyMismatch,
        "{missing:?}"
    );
}
