//! The MCP probe (`protocol: mcp`): the lifecycle of the streamable-HTTP transport on one
//! connection: initialize, notifications/initialized, ping, tools/list when tools are expected,
//! then DELETE of the session. Answers may be JSON or SSE-framed; phases are summed.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use serde_json::{json, Value};

use super::expect::succeeded;
use super::http_session::{Reply, Session};
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
    let exchange = exchange(spec, mcp, &mut progress);
    let attempt = tokio::time::timeout(spec.timeout, exchange).await;
    // No document to read JSON rules on (the config refuses `degraded.json` here): latency only.
    progress.finish(started, spec.timeout, attempt, |(), duration| {
        succeeded(&spec.degraded, duration, None)
    })
}

/// The JSON-RPC conversation over one session.
struct Conversation<'a> {
    spec: &'a AgentSpec,
    url: &'a url::Url,
    session: Session,
    session_id: Option<HeaderValue>,
    version: Option<HeaderValue>,
}

async fn exchange(
    spec: &AgentSpec,
    mcp: &McpTarget,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let session = Session::open(spec, &mcp.url, progress).await?;
    let mut talk = Conversation {
        spec,
        url: &mcp.url,
        session,
        session_id: None,
        version: None,
    };
    let init = json!({
        "protocolVersion": SUPPORTED_VERSIONS[0],
        "capabilities": {},
        "clientInfo": {"name": "agent-health-exporter", "version": env!("CARGO_PKG_VERSION")},
    });
    let (reply, result) = talk.call(1, "initialize", init, progress).await?;
    talk.session_id = reply.headers.get("mcp-session-id").cloned();
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
    let outcome = async {
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
        talk.call(2, "ping", json!({}), progress).await?;
        if !mcp.expect_tools.is_empty() {
            let tools = talk.tools(progress).await?;
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
    .await;
    // The session ends whatever the verdict, so that a probe leaves nothing behind.
    if talk.session_id.is_some() {
        let _ = talk.send(Method::DELETE, Bytes::new(), progress).await;
    }
    outcome
}

impl Conversation<'_> {
    async fn send(
        &mut self,
        method: Method,
        body: Bytes,
        progress: &mut Progress,
    ) -> Result<Reply, Failure> {
        let mut extra = vec![(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        )];
        if !body.is_empty() {
            extra.push((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        if let Some(id) = &self.session_id {
            extra.push((HeaderName::from_static("mcp-session-id"), id.clone()));
        }
        if let Some(version) = &self.version {
            extra.push((
                HeaderName::from_static("mcp-protocol-version"),
                version.clone(),
            ));
        }
        self.session
            .send(self.spec, method, self.url, &extra, body, progress)
            .await
    }

    /// A request; answers the reply and the `result` of the response with this `id`.
    async fn call(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
        progress: &mut Progress,
    ) -> Result<(Reply, Value), Failure> {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let reply = self
            .send(Method::POST, Bytes::from(body.to_string()), progress)
            .await?;
        check_status(&reply, method)?;
        let response = find_response(&reply, id)
            .map_err(|why| Failure::new(FailureReason::Protocol, format!("{method}: {why}")))?;
        if let Some(error) = response.get("error") {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            let message: String = message.chars().take(200).collect();
            return Err(Failure::new(
                FailureReason::NotServing,
                format!("{method}: JSON-RPC error {code}: {message}"),
            ));
        }
        match response.get("result") {
            Some(result) if result.is_object() => Ok((reply, result.clone())),
            _ => Err(Failure::new(
                FailureReason::Protocol,
                format!("{method}: the response has neither a result object nor an error"),
            )),
        }
    }

    async fn notify(&mut self, method: &str, progress: &mut Progress) -> Result<(), Failure> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let reply = self
            .send(Method::POST, Bytes::from(body.to_string()), progress)
            .await?;
        check_status(&reply, method)
    }

    /// Every tool name, following `nextCursor`.
    async fn tools(&mut self, progress: &mut Progress) -> Result<Vec<String>, Failure> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let (_, result) = self
                .call(3 + page as u64, "tools/list", params, progress)
                .await?;
            let tools = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Failure::new(FailureReason::Protocol, "tools/list: no tools array")
                })?;
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
}

fn check_status(reply: &Reply, method: &str) -> Result<(), Failure> {
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(Failure::new(
            FailureReason::HttpStatus,
            format!("{method}: HTTP status {}", reply.status.as_u16()),
        ))
    }
}

/// The JSON-RPC response with `id` in a JSON body or in the `data` of an SSE body's events.
fn find_response(reply: &Reply, id: u64) -> Result<Value, String> {
    let content_type = reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(&reply.body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let messages: Vec<Value> = if content_type.starts_with("text/event-stream") {
        sse_data(text)
            .iter()
            .map(|data| serde_json::from_str(data))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("an SSE event is not JSON ({e})"))?
    } else if content_type.starts_with("application/json") {
        match serde_json::from_str(text).map_err(|e| format!("the body is not JSON ({e})"))? {
            Value::Array(batch) => batch,
            one => vec![one],
        }
    } else {
        return Err(format!("unexpected Content-Type {content_type:?}"));
    };
    messages
        .into_iter()
        .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
        .filter(|m| m.get("jsonrpc").and_then(Value::as_str) == Some("2.0"))
        .ok_or_else(|| format!("no JSON-RPC 2.0 response with id {id}"))
}

/// The `data` of each event in an SSE body, multi-line data joined with newlines.
fn sse_data(text: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let Some(done) = data.take() {
                events.push(done);
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_owned()),
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_on_blank_lines_and_data_lines_joined() {
        let body = "event: message\ndata: {\"a\":\ndata: 1}\n\n: comment\nid: 7\ndata: two\n";
        assert_eq!(
            sse_data(body),
            vec!["{\"a\":\n1}".to_owned(), "two".to_owned()]
        );
    }
}
