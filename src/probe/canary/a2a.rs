//! The A2A canary: reads the agent card for the protocol version and the JSON-RPC endpoint,
//! sends one message (`message/send` for 0.3, `SendMessage` with `A2A-Version: 1.0` for 1.x),
//! blocking, and follows the task (`tasks/get`, `GetTask`) until it ends or stops for input.
//! The endpoint's path is taken from the card but always asked on the agent's own origin: the
//! agent's credentials never go to a host that its card names.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

use super::{message_id, text_parts, CanaryReason, Reply, TaskFailure};
use crate::config::AgentSpec;
use crate::probe::a2a::{card_url, CARD_PATHS};
use crate::probe::agent_text::{self, AGENT_ERROR_CHARS};
use crate::probe::http_session::Session;
use crate::probe::progress::Progress;

/// First wait between two reads of a task that is still working; doubled up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(2);

/// The two JSON-RPC dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// A2A 0.3: `message/send`, `kind` on parts, lower-case states.
    V03,
    /// A2A 1.x: `SendMessage`, ProtoJSON enums (`ROLE_USER`, `TASK_STATE_COMPLETED`).
    V1,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Completed,
    Failed,
    Interrupted,
    Working,
}

pub(super) async fn send(spec: &AgentSpec, base: &Url, text: &str) -> Result<Reply, TaskFailure> {
    let mut session = Session::new(&spec.http, base);
    let mut progress = Progress::default();
    let (dialect, endpoint) = endpoint(&mut session, base, &mut progress).await?;
    let message = match dialect {
        Dialect::V03 => json!({
            "kind": "message",
            "messageId": message_id(),
            "role": "user",
            "parts": [{"kind": "text", "text": text}],
        }),
        Dialect::V1 => json!({
            "messageId": message_id(),
            "role": "ROLE_USER",
            "parts": [{"text": text}],
        }),
    };
    let (method, params) = match dialect {
        Dialect::V03 => (
            "message/send",
            json!({"message": message, "configuration": {"blocking": true}}),
        ),
        // Blocking is the default of 1.x; it names the opposite `returnImmediately`.
        Dialect::V1 => (
            "SendMessage",
            json!({"message": message, "configuration": {"returnImmediately": false}}),
        ),
    };
    let mut result = rpc(
        &mut session,
        &endpoint,
        dialect,
        1,
        method,
        params,
        &mut progress,
    )
    .await?;
    let mut wait = FIRST_POLL;
    let mut id = 1;
    loop {
        id += 1;
        let (state, state_text, task_id) = read_result(&result, dialect)?;
        let reply = reply_text(&result, dialect);
        match state {
            State::Completed => {
                return Ok(Reply {
                    text: reply,
                    ..Reply::default()
                })
            }
            State::Failed | State::Interrupted => {
                let reason = if state == State::Failed {
                    CanaryReason::TaskFailed
                } else {
                    CanaryReason::TaskInterrupted
                };
                return Err(TaskFailure {
                    reason,
                    error: format!("the task ended in state {state_text}"),
                    reply,
                });
            }
            State::Working => {}
        }
        // The agent answered before the task ended (some servers do, blocking or not): read
        // it again until it does; the canary's timeout bounds the wait.
        let Some(task_id) = task_id else {
            return Err(TaskFailure::new(
                CanaryReason::Protocol,
                format!("the task is {state_text} and has no id to follow it by"),
            ));
        };
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_POLL);
        let method = match dialect {
            Dialect::V03 => "tasks/get",
            Dialect::V1 => "GetTask",
        };
        result = rpc(
            &mut session,
            &endpoint,
            dialect,
            id,
            method,
            json!({"id": task_id}),
            &mut progress,
        )
        .await?;
        if dialect == Dialect::V1 {
            // GetTask answers the task itself, SendMessage wraps it.
            result = json!({"task": result});
        }
    }
}

/// The dialect and the JSON-RPC endpoint, from the agent card.
async fn endpoint(
    session: &mut Session,
    base: &Url,
    progress: &mut Progress,
) -> Result<(Dialect, Url), TaskFailure> {
    let accept = [(header::ACCEPT, HeaderValue::from_static("application/json"))];
    for path in CARD_PATHS {
        let reply = session
            .send(
                Method::GET,
                &card_url(base, path),
                &accept,
                Bytes::new(),
                progress,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            continue;
        }
        if !reply.status.is_success() {
            return Err(TaskFailure::new(
                CanaryReason::HttpStatus,
                format!("agent card: HTTP status {}", reply.status.as_u16()),
            ));
        }
        let card: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            TaskFailure::new(
                CanaryReason::Protocol,
                format!("agent card is not JSON ({e})"),
            )
        })?;
        let (dialect, named) = choose_interface(&card).ok_or_else(|| {
            TaskFailure::new(
                CanaryReason::Protocol,
                "the agent card names no JSON-RPC interface",
            )
        })?;
        return Ok((dialect, on_origin(base, named)));
    }
    Err(TaskFailure::new(
        CanaryReason::HttpStatus,
        format!("no agent card at {}", CARD_PATHS.join(" nor ")),
    ))
}

/// The JSON-RPC interface of a card and its URL as the card writes it: a 1.x card's first
/// `JSONRPC` entry of `supportedInterfaces`, else a 0.x card's `url`.
fn choose_interface(card: &Value) -> Option<(Dialect, &str)> {
    let interfaces = card.get("supportedInterfaces").and_then(Value::as_array);
    for interface in interfaces.into_iter().flatten() {
        let binding = interface
            .get("protocolBinding")
            .and_then(Value::as_str)
            .unwrap_or("JSONRPC");
        if !binding.eq_ignore_ascii_case("JSONRPC") {
            continue;
        }
        let Some(url) = interface.get("url").and_then(Value::as_str) else {
            continue;
        };
        let version = interface
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.0");
        let dialect = if version.starts_with("0.") {
            Dialect::V03
        } else {
            Dialect::V1
        };
        return Some((dialect, url));
    }
    let url = card.get("url").and_then(Value::as_str)?;
    Some((Dialect::V03, url))
}

/// The path and query of `named` on `base`'s origin; the base URL itself when `named` is no
/// URL.
fn on_origin(base: &Url, named: &str) -> Url {
    let mut url = base.clone();
    if let Ok(named) = base.join(named) {
        url.set_path(named.path());
        url.set_query(named.query());
    }
    url
}

/// One JSON-RPC call; its `result`. A JSON-RPC error is the agent refusing the task.
async fn rpc(
    session: &mut Session,
    endpoint: &Url,
    dialect: Dialect,
    id: u64,
    method: &str,
    params: Value,
    progress: &mut Progress,
) -> Result<Value, TaskFailure> {
    let mut headers = vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::ACCEPT, HeaderValue::from_static("application/json")),
    ];
    if dialect == Dialect::V1 {
        headers.push((
            HeaderName::from_static("a2a-version"),
            HeaderValue::from_static("1.0"),
        ));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let reply = session
        .send(
            Method::POST,
            endpoint,
            &headers,
            Bytes::from(body.to_string()),
            progress,
        )
        .await?;
    if !reply.status.is_success() {
        return Err(TaskFailure::new(
            CanaryReason::HttpStatus,
            format!("{method}: HTTP status {}", reply.status.as_u16()),
        ));
    }
    let response: Value = serde_json::from_slice(&reply.body).map_err(|e| {
        TaskFailure::new(
            CanaryReason::Protocol,
            format!("{method}: the answer is not JSON ({e})"),
        )
    })?;
    if let Some(error) = response.get("error") {
        return Err(rpc_error(method, error));
    }
    match response.get("result") {
        Some(result) if result.is_object() => Ok(result.clone()),
        _ => Err(TaskFailure::new(
            CanaryReason::Protocol,
            format!("{method}: the answer has neither a result object nor an error"),
        )),
    }
}

/// A JSON-RPC error: the agent refusing the task, in its own words cleaned and bounded.
fn rpc_error(method: &str, error: &Value) -> TaskFailure {
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = agent_text::clean(
        error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        AGENT_ERROR_CHARS,
    );
    TaskFailure::new(
        CanaryReason::TaskFailed,
        format!("{method}: JSON-RPC error {code}: {message}"),
    )
}

/// The task (or message) a result holds: 1.x wraps it in `task` or `message`, 0.3 marks it
/// with `kind`.
fn unwrap_result(result: &Value, dialect: Dialect) -> (Option<&Value>, Option<&Value>) {
    match dialect {
        Dialect::V1 => (result.get("task"), result.get("message")),
        Dialect::V03 => match result.get("kind").and_then(Value::as_str) {
            Some("message") => (None, Some(result)),
            _ => (Some(result), None),
        },
    }
}

/// The task's state, its name as the agent wrote it, and the task's id.
fn read_result(
    result: &Value,
    dialect: Dialect,
) -> Result<(State, String, Option<String>), TaskFailure> {
    let (task, message) = unwrap_result(result, dialect);
    if task.is_none() && message.is_some() {
        // A direct answer: the task is done.
        return Ok((State::Completed, "completed".to_owned(), None));
    }
    let Some(task) = task else {
        return Err(TaskFailure::new(
            CanaryReason::Protocol,
            "the result holds neither a task nor a message",
        ));
    };
    let written = task
        .pointer("/status/state")
        .and_then(Value::as_str)
        .ok_or_else(|| TaskFailure::new(CanaryReason::Protocol, "the task has no status.state"))?;
    let state = state_of(written).ok_or_else(|| {
        TaskFailure::new(
            CanaryReason::Protocol,
            format!(
                "the task is in an unknown state \"{}\"",
                agent_text::clean(written, 40)
            ),
        )
    })?;
    let id = task.get("id").and_then(Value::as_str).map(str::to_owned);
    Ok((state, normalized(written), id))
}

/// `TASK_STATE_INPUT_REQUIRED` (1.x) and `input-required` (0.3) alike as `input-required`.
fn normalized(state: &str) -> String {
    let lower = state.to_ascii_lowercase().replace('_', "-");
    lower
        .strip_prefix("task-state-")
        .unwrap_or(&lower)
        .to_owned()
}

fn state_of(written: &str) -> Option<State> {
    Some(match normalized(written).as_str() {
        "completed" => State::Completed,
        "failed" | "rejected" | "canceled" | "cancelled" => State::Failed,
        "input-required" | "auth-required" => State::Interrupted,
        "submitted" | "working" => State::Working,
        _ => return None,
    })
}

/// All text of the answer: a direct message's parts; a task's artifacts, else its status
/// message, else the agent's last message in its history.
fn reply_text(result: &Value, dialect: Dialect) -> String {
    let (task, message) = unwrap_result(result, dialect);
    if let (None, Some(message)) = (task, message) {
        return text_parts(message.get("parts")).join("\n");
    }
    let Some(task) = task else {
        return String::new();
    };
    let artifacts: Vec<&str> = task
        .get("artifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|a| text_parts(a.get("parts")))
        .collect();
    if !artifacts.is_empty() {
        return artifacts.join("\n");
    }
    let status = text_parts(task.pointer("/status/message/parts"));
    if !status.is_empty() {
        return status.join("\n");
    }
    let from_agent = |m: &&Value| {
        m.get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| r.eq_ignore_ascii_case("agent") || r == "ROLE_AGENT")
    };
    task.get("history")
        .and_then(Value::as_array)
        .and_then(|h| h.iter().rev().find(from_agent))
        .map(|m| text_parts(m.get("parts")).join("\n"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_error_text_is_cleaned_and_bounded() {
        let message = format!("no\u{202E}pe\u{200B}\n{}", "x".repeat(500));
        let failure = rpc_error("message/send", &json!({"code": -32000, "message": message}));
        assert!(
            failure
                .error
                .starts_with("message/send: JSON-RPC error -32000: nope x"),
            "{}",
            failure.error
        );
        assert!(!failure.error.contains('\u{202E}') && !failure.error.contains('\u{200B}'));
        assert!(failure.error.chars().count() < 260, "{}", failure.error);
        let unknown = read_result(
            &json!({"task": {"status": {"state": "odd\u{2066}\u{1b}state"}}}),
            Dialect::V1,
        )
        .unwrap_err();
        assert!(unknown.error.ends_with("\"oddstate\""), "{}", unknown.error);
    }

    #[test]
    fn states_of_both_dialects_read_alike() {
        assert_eq!(state_of("completed"), Some(State::Completed));
        assert_eq!(state_of("TASK_STATE_COMPLETED"), Some(State::Completed));
        for failed in [
            "failed",
            "rejected",
            "canceled",
            "TASK_STATE_CANCELED",
            "TASK_STATE_REJECTED",
        ] {
            assert_eq!(state_of(failed), Some(State::Failed), "{failed}");
        }
        for interrupted in [
            "input-required",
            "auth-required",
            "TASK_STATE_INPUT_REQUIRED",
        ] {
            assert_eq!(
                state_of(interrupted),
                Some(State::Interrupted),
                "{interrupted}"
            );
        }
        assert_eq!(state_of("TASK_STATE_WORKING"), Some(State::Working));
        assert_eq!(state_of("TASK_STATE_UNSPECIFIED"), None);
        assert_eq!(normalized("TASK_STATE_AUTH_REQUIRED"), "auth-required");
    }

    #[test]
    fn the_card_chooses_the_dialect_and_the_path_stays_on_the_agents_origin() {
        let v1 = json!({"supportedInterfaces": [
            {"url": "grpc://x", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
            {"url": "http://elsewhere:9/a2a/v1?x=1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ]});
        let (dialect, named) = choose_interface(&v1).unwrap();
        assert_eq!(dialect, Dialect::V1);
        let base = Url::parse("https://agent.internal:8443/").unwrap();
        assert_eq!(
            on_origin(&base, named).as_str(),
            "https://agent.internal:8443/a2a/v1?x=1"
        );
        let v03 = json!({"url": "http://0.0.0.0:8000/", "protocolVersion": "0.3.0"});
        assert_eq!(
            choose_interface(&v03),
            Some((Dialect::V03, "http://0.0.0.0:8000/"))
        );
        assert_eq!(choose_interface(&json!({})), None);
    }

    #[test]
    fn reply_text_is_the_artifacts_else_the_status_message() {
        let task = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED",
            "message": {"role": "ROLE_AGENT", "parts": [{"text": "status"}]}},
            "artifacts": [{"parts": [{"text": "4"}, {"data": {}}]}, {"parts": [{"text": "more"}]}]}});
        assert_eq!(reply_text(&task, Dialect::V1), "4\nmore");
        let v03 = json!({"kind": "task", "id": "t", "status": {"state": "failed",
            "message": {"kind": "message", "role": "agent", "parts": [{"kind": "text", "text": "no"}]}}});
        assert_eq!(reply_text(&v03, Dialect::V03), "no");
        let (state, text, id) = read_result(&v03, Dialect::V03).unwrap();
        assert_eq!(
            (state, text.as_str(), id.as_deref()),
            (State::Failed, "failed", Some("t"))
        );
        let message = json!({"kind": "message", "parts": [{"kind": "text", "text": "hi"}]});
        assert_eq!(reply_text(&message, Dialect::V03), "hi");
        assert_eq!(
            read_result(&message, Dialect::V03).unwrap().0,
            State::Completed
        );
    }
}
