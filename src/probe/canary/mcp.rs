//! The MCP canary: one `tools/call` in the agent's era, the one its probe last found (the
//! stateless 2026-07-28 era unless it was found to be of the handshake era); when the server
//! refuses that era, the other. A result with `isError` is a failed task; its text content, or
//! its `structuredContent` as JSON, is the reply. A session the handshake opened is ended
//! after the verdict, whatever it was.

use std::time::Duration;

use http::header::HeaderValue;
use serde_json::{json, Map, Value};
use tokio::time::error::Elapsed;

use super::{text_parts, CanaryReason, Reply, TaskFailure};
use crate::config::{AgentSpec, McpTarget};
use crate::probe::mcp::{remember_era, remembered_legacy, Attempt};
use crate::probe::mcp_legacy;
use crate::probe::mcp_transport::{Transport, METHOD_NOT_FOUND, UNSUPPORTED_VERSION};
use crate::probe::progress::Progress;
use crate::probe::FailureReason;

/// The id of the tool call (the handshake's requests use 1 and below).
const CALL_ID: u64 = 7;

pub(super) async fn call(
    spec: &AgentSpec,
    mcp: &McpTarget,
    tool: &str,
    arguments: &Map<String, Value>,
    timeout: Duration,
) -> Result<Result<Reply, TaskFailure>, Elapsed> {
    // Outside the timed exchange: the session it opened is ended whatever became of it.
    let mut talk = Transport::new(&spec.http, &mcp.url);
    let legacy_first = remembered_legacy(spec, mcp);
    let mut found = None;
    let exchange = both_eras(&mut talk, tool, arguments, legacy_first, &mut found);
    let result = tokio::time::timeout(timeout, exchange).await;
    if let Some(legacy) = found {
        remember_era(spec, mcp, legacy);
    }
    talk.end();
    result
}

/// The remembered era first, then the other when the server refused the first.
async fn both_eras(
    talk: &mut Transport,
    tool: &str,
    arguments: &Map<String, Value>,
    legacy_first: bool,
    found: &mut Option<bool>,
) -> Result<Reply, TaskFailure> {
    let mut progress = Progress::default();
    let mut refused = None;
    for legacy in [legacy_first, !legacy_first] {
        match in_era(talk, tool, arguments, legacy, &mut progress).await {
            Ok(answer) => {
                *found = Some(legacy);
                return judge_result(&answer);
            }
            Err(Attempt::Failed(failure)) => {
                *found = Some(legacy);
                return Err(failure.into());
            }
            Err(Attempt::VersionRefused(failure)) => {
                refused.get_or_insert(failure);
            }
        }
    }
    let first = refused.map_or_else(String::new, |f| f.error);
    Err(TaskFailure::new(
        CanaryReason::Protocol,
        format!("the server refused both protocol eras: {first}"),
    ))
}

/// `tools/call` in one era: `result` of the call, or why the era was refused.
async fn in_era(
    talk: &mut Transport,
    tool: &str,
    arguments: &Map<String, Value>,
    legacy: bool,
    progress: &mut Progress,
) -> Result<Value, Attempt> {
    if legacy {
        mcp_legacy::initialize(talk, progress).await?;
    } else {
        talk.modern = true;
        // The stateless era routes on headers: the tool's name goes in `Mcp-Name` too, and a
        // server refuses a call whose header and body disagree.
        talk.name = HeaderValue::from_str(&header_text(tool)).ok();
    }
    let params = json!({"name": tool, "arguments": arguments});
    progress.http_status = None;
    match talk.call(CALL_ID, "tools/call", params, progress).await {
        Ok(Ok(result)) => Ok(result),
        // A server of the handshake era refuses a sessionless call; one of the stateless era
        // has no session to find: the other era is worth trying.
        Ok(Err(error))
            if !legacy && (error.code == UNSUPPORTED_VERSION || error.code == METHOD_NOT_FOUND) =>
        {
            Err(Attempt::VersionRefused(error.failure("tools/call")))
        }
        // The server answered, and refused the call (an unknown tool, bad arguments): the
        // canary counts it as a failed task.
        Ok(Err(error)) => Err(Attempt::Failed(error.failure("tools/call"))),
        Err(failure)
            if !legacy
                && failure.reason == FailureReason::HttpStatus
                && matches!(progress.http_status, Some(400 | 404 | 405)) =>
        {
            Err(Attempt::VersionRefused(failure))
        }
        Err(failure) => Err(Attempt::Failed(failure)),
    }
}

/// `text` as an `Mcp-Name` value: verbatim when it is printable ASCII without surrounding
/// spaces, else base64 in the `=?base64?…?=` form the 2026-07-28 transport defines.
fn header_text(text: &str) -> String {
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    let sentinel = text.starts_with("=?base64?") && text.ends_with("?=");
    if printable && text.trim() == text && !sentinel {
        return text.to_owned();
    }
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!("=?base64?{encoded}?=")
}

/// The reply of a `tools/call` result, or the failed task it reports.
fn judge_result(result: &Value) -> Result<Reply, TaskFailure> {
    let text = text_parts(result.get("content")).join("\n");
    let structured = result.get("structuredContent").filter(|v| !v.is_null());
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(TaskFailure {
            reason: CanaryReason::TaskFailed,
            error: "the tool answered with isError".to_owned(),
            reply: text,
        });
    }
    let text = match (text.is_empty(), structured) {
        (true, Some(json)) => json.to_string(),
        _ => text,
    };
    Ok(Reply {
        text,
        json: structured.cloned(),
        ..Reply::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_go_in_a_header_verbatim_or_base64_encoded() {
        assert_eq!(header_text("echo"), "echo");
        assert_eq!(header_text("météo"), "=?base64?bcOpdMOpbw==?=");
        assert_eq!(header_text(" echo"), "=?base64?IGVjaG8=?=");
    }

    #[test]
    fn is_error_fails_the_task_and_keeps_its_text() {
        let failed = json!({"content": [{"type": "text", "text": "boom"}], "isError": true});
        let failure = judge_result(&failed).unwrap_err();
        assert_eq!(failure.reason, CanaryReason::TaskFailed);
        assert_eq!(failure.reply, "boom");
    }

    #[test]
    fn text_content_is_the_reply_and_structured_content_its_json() {
        let result = json!({"content": [{"type": "text", "text": "canary"},
            {"type": "image", "data": "x"}, {"type": "text", "text": "two"}]});
        assert_eq!(judge_result(&result).unwrap().text, "canary\ntwo");
        let structured = json!({"content": [], "structuredContent": {"sum": 4}});
        let reply = judge_result(&structured).unwrap();
        assert_eq!(reply.text, "{\"sum\":4}");
        assert_eq!(reply.json, Some(json!({"sum": 4})));
    }
}
