//! The MCP probe (`protocol: mcp`): the lifecycle of the streamable-HTTP transport:
//! initialize, notifications/initialized, ping (tools/list when the server has no ping),
//! tools/list when tools are expected. The session ends after the verdict (see
//! `mcp_transport`); answers may be JSON or SSE-framed; phases are summed.

use std::time::Instant;

use http::header::HeaderValue;
use serde_json::{json, Value};

use super::expect::succeeded;
use super::mcp_transport::{Transport, METHOD_NOT_FOUND};
use super::progress::Progress;
use super::Failure;
use super::{FailureReason, ProbeResult, ProtocolInfo};
use crate::config::{AgentSpec, McpTarget};

/// Protocol versions of the streamable-HTTP transport we speak, newest first; we ask for the
/// first and accept any of them in the answer, as the lifecycle's negotiation prescribes.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// Pages of tools/list followed at most.
const MAX_PAGES: usize = 20;

pub(super) async fn probe(spec: &AgentSpec, mcp: &McpTarget) -> ProbeResult {
    let started = Instant::now();
    let mut progress = Progress::default();
    // Outside the timed exchange: the session it opened is ended whatever became of it.
    let mut talk = Transport::new(&spec.http, &mcp.url);
    let exchange = exchange(&mut talk, mcp, &mut progress);
    let attempt = tokio::time::timeout(spec.timeout, exchange).await;
    // No document to read JSON rules on (the config refuses `degraded.json` here): latency only.
    let result = progress.finish(started, spec.timeout, attempt, |(), duration| {
        succeeded(&spec.degraded, duration, None)
    });
    talk.end();
    result
}

async fn exchange(
    talk: &mut Transport,
    mcp: &McpTarget,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let init = json!({
        "protocolVersion": SUPPORTED_VERSIONS[0],
        "capabilities": {},
        "clientInfo": {"name": "agent-health-exporter", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = talk
        .call(1, "initialize", init, progress)
        .await?
        .map_err(|e| e.failure("initialize"))?;
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let server = result.get("serverInfo");
    let text = |key: &str| {
        server
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    progress.info = Some(ProtocolInfo::reported(
        "mcp",
        &text("name"),
        &text("version"),
        version,
    ));
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!(
                "initialize: the server chose protocol version {version:?}, we speak {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    talk.version = HeaderValue::from_str(version).ok();
    talk.notify("notifications/initialized", progress).await?;
    // ping is required of every server, yet some answer "method not found": such a server is
    // up, and tools/list says whether it serves.
    let without_ping = match talk.call(2, "ping", json!({}), progress).await? {
        Ok(_) => false,
        Err(error) if error.code == METHOD_NOT_FOUND => true,
        Err(error) => return Err(error.failure("ping")),
    };
    if without_ping || !mcp.expect_tools.is_empty() {
        let tools = tools(talk, progress).await?;
        let missing: Vec<&str> = mcp
            .expect_tools
            .iter()
            .filter(|t| !tools.contains(t))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Failure::new(
                FailureReason::BodyMismatch,
                format!("tools/list lacks {}", missing.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Every tool name, following `nextCursor`.
async fn tools(talk: &mut Transport, progress: &mut Progress) -> Result<Vec<String>, Failure> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let result = talk
            .call(3 + page as u64, "tools/list", params, progress)
            .await?
            .map_err(|e| e.failure("tools/list"))?;
        let tools = result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| Failure::new(FailureReason::Protocol, "tools/list: no tools array"))?;
        names.extend(
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_owned),
        );
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(names)
}
