//! The MCP probe across the protocol's two eras, against the official SDKs: 2.x (tests/peers/
//! mcp2_server.py, in its own venv) serving the stateless 2026-07-28 era, the handshake era or
//! both, and 1.x (the legacy tests' venv) serving the handshake era only. Each is healthy, each
//! is body_mismatch when it lacks an expected tool, the era found is the one reported, and it
//! is remembered: the next probe goes to it first. Skips without the venvs.

mod harness;

use std::path::Path;

use agent_health_exporter::probe::{self, FailureReason, Outcome, ProbeResult};
use harness::peers::{agent, python, python_mcp2, Peer};

const MODERN: &str = "2026-07-28";

fn mcp2_peer(test: &str, args: &[&str]) -> Option<Peer> {
    let python = python_mcp2(test, "mcp.server.mcpserver, uvicorn")?;
    Some(Peer::start(&python, "mcp2_server.py", args))
}

fn mcp1_peer(test: &str) -> Option<Peer> {
    let python = python(test, "mcp.server.fastmcp, uvicorn")?;
    Some(Peer::start(&python, "mcp_server.py", &[]))
}

async fn probe_tools(port: u16, tools: &str) -> ProbeResult {
    let yaml = format!(
        "agents:\n  - name: p\n    type: t\n    url: http://127.0.0.1:{port}/mcp\n    \
         timeout: 3s\n    protocol: mcp\n    mcp: {{expect_tools: [{tools}]}}\n"
    );
    probe::run(&agent(&yaml, Path::new("."))).await
}

fn version(result: &ProbeResult) -> &str {
    let info = result.protocol.info.as_ref().expect("protocol info");
    &info.protocol_version
}

fn failed(result: &ProbeResult) -> (FailureReason, &str) {
    match &result.outcome {
        Outcome::Failed { reason, error } => (*reason, error.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Healthy with `add, echo` in the era `era`, body_mismatch without `search`.
async fn both_verdicts(port: u16, era: &str, what: &str) {
    let healthy = probe_tools(port, "add, echo").await;
    assert_eq!(healthy.outcome, Outcome::Healthy, "{what}: {healthy:?}");
    assert_eq!(version(&healthy), era, "{what}");
    let missing = probe_tools(port, "add, search").await;
    assert_eq!(
        failed(&missing),
        (FailureReason::BodyMismatch, "tools/list lacks search"),
        "{what}"
    );
    assert_eq!(version(&missing), era, "{what}");
}

#[tokio::test]
async fn mcp2_modern_only_server_is_healthy_in_the_stateless_era_and_lacks_a_tool_as_body_mismatch()
{
    for args in [&["--era", "modern"][..], &["--era", "modern", "--json"][..]] {
        let Some(server) = mcp2_peer("mcp2_modern_only", args) else {
            return;
        };
        both_verdicts(server.port, MODERN, &format!("{args:?}")).await;
        let info = probe_tools(server.port, "add").await.protocol.info.unwrap();
        assert_eq!(
            (info.server_name.as_str(), info.server_version.as_str()),
            ("peer-tools-2", "2.0.0")
        );
    }
}

#[tokio::test]
async fn mcp2_dual_server_is_probed_in_the_stateless_era() {
    let Some(server) = mcp2_peer("mcp2_dual", &["--era", "dual"]) else {
        return;
    };
    both_verdicts(server.port, MODERN, "dual").await;
}

#[tokio::test]
async fn mcp2_legacy_only_server_is_probed_through_the_handshake() {
    let Some(server) = mcp2_peer("mcp2_legacy_only", &["--era", "legacy"]) else {
        return;
    };
    both_verdicts(server.port, "2025-11-25", "legacy").await;
}

#[tokio::test]
async fn mcp1_server_is_probed_through_the_handshake_after_refusing_discover() {
    let Some(server) = mcp1_peer("mcp1_legacy") else {
        return;
    };
    both_verdicts(server.port, "2025-11-25", "mcp 1.x").await;
}

#[tokio::test]
async fn the_era_found_is_tried_first_on_the_next_probe() {
    let Some(mut modern) = mcp2_peer("mcp2_era_memory_modern", &["--era", "modern"]) else {
        return;
    };
    let Some(mut legacy) = mcp2_peer("mcp2_era_memory_legacy", &["--era", "legacy"]) else {
        return;
    };
    // First probes: discover (+ tools/list) on the modern one; discover refused, then the
    // handshake, ping and tools/list on the legacy one.
    for _ in 0..3 {
        assert_eq!(
            probe_tools(modern.port, "add").await.outcome,
            Outcome::Healthy
        );
        assert_eq!(
            probe_tools(legacy.port, "add").await.outcome,
            Outcome::Healthy
        );
    }
    assert_eq!(modern.command("counts"), "modern=6 legacy=0");
    // One refused discover, then 4 handshake-era POSTs per probe.
    assert_eq!(legacy.command("counts"), "modern=1 legacy=12");
}

#[tokio::test]
async fn a_remembered_legacy_endpoint_that_turns_modern_is_found_again_in_the_same_probe() {
    let Some(legacy) = mcp2_peer("mcp2_era_change", &["--era", "legacy"]) else {
        return;
    };
    let port = legacy.port;
    let first = probe_tools(port, "add").await;
    assert_eq!(version(&first), "2025-11-25");
    drop(legacy);
    // The same URL, now served by a modern-only server: the remembered era's initialize is
    // refused with -32022, and server/discover follows in the same probe.
    let Some(mut modern) = mcp2_peer(
        "mcp2_era_change",
        &["--era", "modern", "--port", &port.to_string()],
    ) else {
        return;
    };
    let second = probe_tools(port, "add").await;
    assert_eq!(second.outcome, Outcome::Healthy, "{second:?}");
    assert_eq!(version(&second), MODERN);
    assert_eq!(modern.command("counts"), "modern=2 legacy=1");
    // Remembered as modern now: no handshake-era request any more.
    assert_eq!(probe_tools(port, "add").await.outcome, Outcome::Healthy);
    assert_eq!(modern.command("counts"), "modern=4 legacy=1");
}
