//! The client side of MCP's streamable-HTTP transport, for the MCP probe: JSON-RPC requests
//! and notifications POSTed on one `Session`, each answer found in a JSON or SSE body among
//! the server's own requests and notifications, the `Mcp-Session-Id` kept from the first head
//! that carries it, and the session's end (DELETE) sent after the verdict in a task bounded on
//! its own, so that no probe, failed or not, leaves a session behind on the server.
//! Requests of the 2026-07-28 era carry no session: their version and capabilities go in
//! `_meta` and in the `MCP-Protocol-Version` and `Mcp-Method` headers.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use serde_json::{json, Value};

use super::agent_text;
use super::http_session::{Answer, Session};
use super::progress::Progress;
use super::sse::SseParser;
use super::{Failure, FailureReason};
use crate::config::HttpSpec;

/// How long the session's DELETE may take, apart from the probe's timeout.
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(2);
/// JSON-RPC's "method not found".
pub(super) const METHOD_NOT_FOUND: i64 = -32601;
/// MCP's "unsupported protocol version" (2026-07-28), with `data.supported`.
pub(super) const UNSUPPORTED_VERSION: i64 = -32022;
/// MCP's "header mismatch" (2026-07-28): the HTTP headers disagree with the body; a server of
/// that era said it, so it is no reason to try the handshake.
pub(super) const HEADER_MISMATCH: i64 = -32020;
/// The protocol version of the stateless era.
pub(super) const MODERN_VERSION: &str = "2026-07-28";

/// How `server/discover` was answered, short of a transport failure.
#[derive(Debug)]
pub(super) enum Discovery {
    /// Its `result`.
    Result(Value),
    /// A JSON-RPC error, and the HTTP status of the answer that carried it (2xx or 4xx).
    Error(RpcError, u16),
    /// A 4xx answer without a JSON-RPC error in it: the status.
    Refused(u16),
}

/// A JSON-RPC error answer.
#[derive(Debug)]
pub(super) struct RpcError {
    pub code: i64,
    pub message: String,
    /// Its `data`, where -32022 names the versions the server speaks.
    pub data: Option<Value>,
}

impl RpcError {
    fn of(error: &Value) -> RpcError {
        RpcError {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            data: error.get("data").cloned(),
        }
    }
}

impl RpcError {
    /// The failure it is for the probe: the server answered, and said no.
    pub(super) fn failure(&self, method: &str) -> Failure {
        // The server wrote it: cleaned and bounded before it reaches a log line or an event.
        let message = agent_text::clean(&self.message, agent_text::AGENT_ERROR_CHARS);
        Failure::new(
            FailureReason::NotServing,
            format!("{method}: JSON-RPC error {}: {message}", self.code),
        )
    }
}

/// One MCP session over HTTP.
pub(super) struct Transport {
    session: Session,
    url: url::Url,
    /// Set from the first answer head that carries one, before its body is read: a session
    /// the server opened is ended even when the probe fails or times out after.
    session_id: Option<HeaderValue>,
    /// The negotiated protocol version, sent with every request after initialize.
    pub version: Option<HeaderValue>,
    /// Requests of the 2026-07-28 era: `_meta` and the routing headers, no session.
    pub modern: bool,
    /// The `Mcp-Name` routing header of the 2026-07-28 era (the tool a `tools/call` names),
    /// already encoded for a header.
    pub name: Option<HeaderValue>,
}

impl Transport {
    pub(super) fn new(http: &HttpSpec, url: &url::Url) -> Transport {
        Transport {
            session: Session::new(http, url),
            url: url.clone(),
            session_id: None,
            version: None,
            modern: false,
            name: None,
        }
    }

    /// A request; answers the `result` of the response with this `id`, or its JSON-RPC error.
    pub(super) async fn call(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
        progress: &mut Progress,
    ) -> Result<Result<Value, RpcError>, Failure> {
        let body = self.request_body(id, method, params);
        let extra = self.headers(Some(method));
        let mut answer = self
            .session
            .request(
                Method::POST,
                &self.url,
                &extra,
                Bytes::from(body.to_string()),
                progress,
            )
            .await?;
        if self.session_id.is_none() && !self.modern {
            self.session_id = answer.head.headers.get("mcp-session-id").cloned();
        }
        check_status(&answer, method)?;
        let response = read_response(&mut answer, id, progress)
            .await?
            .map_err(|why| Failure::new(FailureReason::Protocol, format!("{method}: {why}")))?;
        if let Some(error) = response.get("error") {
            return Ok(Err(RpcError::of(error)));
        }
        match response.get("result") {
            Some(result) if result.is_object() => Ok(Ok(result.clone())),
            _ => Err(Failure::new(
                FailureReason::Protocol,
                format!("{method}: the response has neither a result object nor an error"),
            )),
        }
    }

    pub(super) async fn notify(
        &mut self,
        method: &str,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let extra = self.headers(Some(method));
        let reply = self
            .session
            .send(
                Method::POST,
                &self.url,
                &extra,
                Bytes::from(body.to_string()),
                progress,
            )
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(status_failure(method, reply.status.as_u16()))
        }
    }

    /// Ends the server's session, when it opened one, in a task of its own bounded by
    /// `SESSION_END_TIMEOUT`: the verdict and the probe's duration are already decided.
    pub(super) fn end(self) {
        if self.session_id.is_none() {
            return;
        }
        let extra = self.headers(None);
        let Transport {
            mut session, url, ..
        } = self;
        tokio::spawn(async move {
            let mut progress = Progress::default();
            let delete = session.send(Method::DELETE, &url, &extra, Bytes::new(), &mut progress);
            match tokio::time::timeout(SESSION_END_TIMEOUT, delete).await {
                Ok(Ok(_)) => {}
                Ok(Err(failure)) => {
                    tracing::debug!(%url, error = %failure.error, "MCP session end failed");
                }
                Err(_) => tracing::debug!(%url, "MCP session end timed out"),
            }
        });
    }

    /// `server/discover` in the 2026-07-28 era. A 4xx answer's body is read for a JSON-RPC
    /// error (whatever its id: servers answer requests they refuse with their own), and no
    /// session id is taken from it: a legacy server may open one even as it refuses.
    pub(super) async fn discover(
        &mut self,
        id: u64,
        progress: &mut Progress,
    ) -> Result<Discovery, Failure> {
        const METHOD: &str = "server/discover";
        let body = self.request_body(id, METHOD, json!({}));
        let extra = self.headers(Some(METHOD));
        let mut answer = self
            .session
            .request(
                Method::POST,
                &self.url,
                &extra,
                Bytes::from(body.to_string()),
                progress,
            )
            .await?;
        let status = answer.head.status;
        if status.is_client_error() {
            let mut body = BytesMut::new();
            while let Some(data) = answer.chunk(progress).await? {
                body.extend_from_slice(&data);
            }
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").filter(|e| e.is_object()).cloned());
            return Ok(match error {
                Some(error) => Discovery::Error(RpcError::of(&error), status.as_u16()),
                None => Discovery::Refused(status.as_u16()),
            });
        }
        check_status(&answer, METHOD)?;
        let response = read_response(&mut answer, id, progress)
            .await?
            .map_err(|why| Failure::new(FailureReason::Protocol, format!("{METHOD}: {why}")))?;
        if let Some(error) = response.get("error") {
            return Ok(Discovery::Error(RpcError::of(error), status.as_u16()));
        }
        match response.get("result") {
            Some(result) if result.is_object() => Ok(Discovery::Result(result.clone())),
            _ => Err(Failure::new(
                FailureReason::Protocol,
                format!("{METHOD}: the response has neither a result object nor an error"),
            )),
        }
    }

    /// A request's JSON; in the 2026-07-28 era its params carry the `_meta` every request
    /// must: the version, the client's capabilities (none: a probe answers no server
    /// request), and who asks.
    fn request_body(&self, id: u64, method: &str, mut params: Value) -> Value {
        if self.modern {
            if let Some(params) = params.as_object_mut() {
                params.insert(
                    "_meta".to_owned(),
                    json!({
                        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                        "io.modelcontextprotocol/clientCapabilities": {},
                        "io.modelcontextprotocol/clientInfo": {
                            "name": "agent-health-exporter",
                            "version": env!("CARGO_PKG_VERSION"),
                        },
                    }),
                );
            }
        }
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    /// The headers of a POST of `method`, or of the session's DELETE (None).
    fn headers(&self, posting: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
        let mut extra = Vec::new();
        if self.modern {
            if let Some(method) = posting.and_then(|m| HeaderValue::from_str(m).ok()) {
                extra.push((
                    header::ACCEPT,
                    HeaderValue::from_static("application/json, text/event-stream"),
                ));
                extra.push((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ));
                extra.push((
                    HeaderName::from_static("mcp-protocol-version"),
                    HeaderValue::from_static(MODERN_VERSION),
                ));
                extra.push((HeaderName::from_static("mcp-method"), method));
                if let Some(name) = &self.name {
                    extra.push((HeaderName::from_static("mcp-name"), name.clone()));
                }
                return extra;
            }
        }
        if posting.is_some() {
            extra.push((
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            ));
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
        extra
    }
}

fn check_status(answer: &Answer<'_>, method: &str) -> Result<(), Failure> {
    if answer.head.status.is_success() {
        Ok(())
    } else {
        Err(status_failure(method, answer.head.status.as_u16()))
    }
}

fn status_failure(method: &str, status: u16) -> Failure {
    Failure::new(
        FailureReason::HttpStatus,
        format!("{method}: HTTP status {status}"),
    )
}

/// The JSON-RPC response with `id` in a JSON body, or in an SSE body's events, read only as
/// far as that response. The outer error is the transport's; the inner says why the body
/// holds no such response.
async fn read_response(
    answer: &mut Answer<'_>,
    id: u64,
    progress: &mut Progress,
) -> Result<Result<Value, String>, Failure> {
    let content_type = answer
        .head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("text/event-stream") {
        return read_sse(answer, id, progress).await;
    }
    if !content_type.starts_with("application/json") {
        return Ok(Err(format!("unexpected Content-Type {content_type:?}")));
    }
    let mut body = BytesMut::new();
    while let Some(data) = answer.chunk(progress).await? {
        body.extend_from_slice(&data);
    }
    let messages = match serde_json::from_slice(&body) {
        Ok(Value::Array(batch)) => batch,
        Ok(one) => vec![one],
        Err(e) => return Ok(Err(format!("the body is not JSON ({e})"))),
    };
    Ok(messages
        .into_iter()
        .find(|m| is_response_to(m, id))
        .ok_or_else(|| format!("no JSON-RPC 2.0 response with id {id}"))
        .and_then(checked))
}

async fn read_sse(
    answer: &mut Answer<'_>,
    id: u64,
    progress: &mut Progress,
) -> Result<Result<Value, String>, Failure> {
    let mut parser = SseParser::default();
    let mut unreadable = None;
    while let Some(data) = answer.chunk(progress).await? {
        for event in parser.push(&data) {
            match serde_json::from_str::<Value>(&event) {
                Ok(message) if is_response_to(&message, id) => {
                    finish_if_ended(answer, progress);
                    return Ok(checked(message));
                }
                // The server's own requests and notifications, answers to other requests.
                Ok(_) => {}
                Err(e) => {
                    unreadable.get_or_insert_with(|| format!("an SSE event is not JSON ({e})"));
                }
            }
        }
    }
    Ok(Err(unreadable.unwrap_or_else(|| {
        format!("no JSON-RPC 2.0 response with id {id}")
    })))
}

/// Reads the end of an SSE body when it has already arrived (servers end the stream after
/// the response), so that the connection can carry the next request; otherwise the
/// connection is left to close and the next request opens another.
fn finish_if_ended(answer: &mut Answer<'_>, progress: &mut Progress) {
    while let Some(Ok(Some(_))) = answer.chunk(progress).now_or_never() {}
}

/// A response (not a request or notification from the server) with our `id`.
fn is_response_to(message: &Value, id: u64) -> bool {
    message.get("method").is_none() && message.get("id").and_then(Value::as_u64) == Some(id)
}

fn checked(message: Value) -> Result<Value, String> {
    if message.get("jsonrpc").and_then(Value::as_str) == Some("2.0") {
        Ok(message)
    } else {
        Err("the response is not JSON-RPC 2.0".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_text_is_cleaned_and_bounded() {
        let error = RpcError::of(&json!({"code": -32602,
            "message": format!("bad\u{202A}\u{200D} tool\r\n{}", "z".repeat(500))}));
        let failure = error.failure("tools/call");
        assert!(
            failure
                .error
                .starts_with("tools/call: JSON-RPC error -32602: bad tool  zz"),
            "{}",
            failure.error
        );
        assert!(failure.error.chars().count() < 260, "{}", failure.error);
    }

    #[test]
    fn server_requests_and_notifications_are_not_the_response() {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"});
        let note = json!({"jsonrpc": "2.0", "method": "notifications/progress"});
        let response = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
        assert!(!is_response_to(&request, 1));
        assert!(!is_response_to(&note, 1));
        assert!(!is_response_to(&response, 2));
        assert!(is_response_to(&response, 1));
    }
}
