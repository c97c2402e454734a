//! The MCP lifecycle of the handshake era (2025-11-25 and before): initialize,
//! notifications/initialized, ping (tools/list when the server has no ping); the session it
//! opens is ended by the caller after the verdict (see `mcp_transport`).

use http::header::HeaderValue;
use serde_json::{json, Value};

use super::mcp::{check_tools, server_info, Attempt};
use super::mcp_transport::{Transport, METHOD_NOT_FOUND, UNSUPPORTED_VERSION};
use super::progress::Progress;
use super::{Failure, FailureReason};
use crate::config::McpTarget;

/// Protocol versions of the handshake era we speak, newest first; we ask for the first and
/// accept any of them in the answer, as the lifecycle's negotiation prescribes.
pub const HANDSHAKE_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The handshake: `initialize` with a version of this era, then `notifications/initialized`.
/// The canary's tool call follows it on the same session.
pub(super) async fn initialize(
    talk: &mut Transport,
    progress: &mut Progress,
) -> Result<(), Attempt> {
    talk.modern = false;
    let init = json!({
        "protocolVersion": HANDSHAKE_VERSIONS[0],
        "capabilities": {},
        "clientInfo": {"name": "agent-health-exporter", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = match talk.call(1, "initialize", init, progress).await {
        Ok(Ok(result)) => result,
        // A server of the stateless era refuses the handshake with a 400, or a 404/405 or
        // "method not found" for a method it no longer has: the other era is worth trying
        // (also when this agent was remembered as of the handshake era and was upgraded).
        Ok(Err(error)) if error.code == UNSUPPORTED_VERSION || error.code == METHOD_NOT_FOUND => {
            return Err(Attempt::VersionRefused(error.failure("initialize")))
        }
        Ok(Err(error)) => return Err(Attempt::Failed(error.failure("initialize"))),
        Err(failure)
            if failure.reason == FailureReason::HttpStatus
                && matches!(progress.http_status, Some(400 | 404 | 405)) =>
        {
            return Err(Attempt::VersionRefused(failure))
        }
        Err(failure) => return Err(Attempt::Failed(failure)),
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    progress.info = Some(server_info(result.get("serverInfo"), version));
    if !HANDSHAKE_VERSIONS.contains(&version) {
        return Err(Attempt::VersionRefused(Failure::new(
            FailureReason::Protocol,
            format!(
                "initialize: the server chose protocol version {version:?}, we speak {}",
                super::mcp::spoken()
            ),
        )));
    }
    talk.version = HeaderValue::from_str(version).ok();
    talk.notify("notifications/initialized", progress).await?;
    Ok(())
}

pub(super) async fn exchange(
    talk: &mut Transport,
    mcp: &McpTarget,
    progress: &mut Progress,
) -> Result<(), Attempt> {
    initialize(talk, progress).await?;
    // ping is required of every server, yet some answer "method not found": such a server is
    // up, and tools/list says whether it serves.
    let without_ping = match talk.call(2, "ping", json!({}), progress).await? {
        Ok(_) => false,
        Err(error) if error.code == METHOD_NOT_FOUND => true,
        Err(error) => return Err(error.failure("ping").into()),
    };
    if without_ping || !mcp.expect_tools.is_empty() {
        check_tools(talk, mcp, progress).await?;
    }
    Ok(())
}
