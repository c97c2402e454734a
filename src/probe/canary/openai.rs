//! The OpenAI-compatible canary: one chat completion (`POST` to the canary's path on the
//! agent's origin, with the agent's `http` section), the API that vLLM, llama.cpp, Ollama,
//! LiteLLM and most gateways serve. Streaming (`stream: true`) reads server-sent chunks as they
//! come: the first content delta gives the time to first token, usage is asked for with
//! `stream_options.include_usage`, and a stream that ends without a `finish_reason`, or carries
//! an error, is a failed task.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::Method;
use serde_json::{json, Value};

use super::{CanaryReason, Reply, TaskFailure, Usage};
use crate::config::{AgentSpec, CanaryTask};
use crate::probe::agent_text::{self, AGENT_ERROR_CHARS};
use crate::probe::http_session::Session;
use crate::probe::progress::Progress;
use crate::probe::sse::SseParser;

/// How long a stream whose first choice has finished is read on for its usage chunk and its
/// end; past it the answer counts as complete.
const FINISH_GRACE: Duration = Duration::from_millis(500);

pub(super) async fn complete(
    spec: &AgentSpec,
    task: &CanaryTask,
    started: Instant,
) -> Result<Reply, TaskFailure> {
    let CanaryTask::OpenAi {
        model,
        prompt,
        max_tokens,
        url,
        stream,
    } = task
    else {
        return Err(TaskFailure::new(
            CanaryReason::Protocol,
            "not a chat completion task",
        ));
    };
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": stream,
    });
    if *stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    let accept = if *stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::ACCEPT, HeaderValue::from_static(accept)),
    ];
    let mut session = Session::new(&spec.http, url);
    let mut progress = Progress::default();
    let mut answer = session
        .request(
            Method::POST,
            url,
            &headers,
            Bytes::from(body.to_string()),
            &mut progress,
        )
        .await?;
    let status = answer.head.status;
    let is_sse = answer
        .head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    if !status.is_success() {
        return Err(TaskFailure::new(
            CanaryReason::HttpStatus,
            format!("chat completion: HTTP status {}", status.as_u16()),
        ));
    }
    if is_sse {
        let mut stream = Stream::default();
        let mut parser = SseParser::default();
        // Once the first choice has its finish_reason, the answer is complete: a server that
        // then neither sends `[DONE]` nor closes gets FINISH_GRACE for its usage chunk, and
        // the task ends as complete rather than as a timeout.
        let mut grace_until = None;
        loop {
            let next = match grace_until {
                None => answer.chunk(&mut progress).await?,
                Some(until) => {
                    match tokio::time::timeout_at(until, answer.chunk(&mut progress)).await {
                        Ok(next) => next?,
                        Err(_) => break,
                    }
                }
            };
            let Some(data) = next else { break };
            for event in parser.push(&data) {
                if stream.event(&event, started.elapsed())? == Flow::Done {
                    return stream.finish();
                }
            }
            if grace_until.is_none() && stream.finish_reason.is_some() {
                grace_until = Some(tokio::time::Instant::now() + FINISH_GRACE);
            }
        }
        return stream.finish();
    }
    let mut whole = BytesMut::new();
    while let Some(data) = answer.chunk(&mut progress).await? {
        whole.extend_from_slice(&data);
    }
    whole_answer(&whole)
}

/// A non-streamed completion: the first choice's content, its finish reason and the usage.
fn whole_answer(body: &[u8]) -> Result<Reply, TaskFailure> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| {
        TaskFailure::new(
            CanaryReason::Protocol,
            format!("the completion is not JSON ({e})"),
        )
    })?;
    error_in(&answer)?;
    let choice = answer
        .pointer("/choices/0")
        .ok_or_else(|| TaskFailure::new(CanaryReason::Protocol, "the completion has no choices"))?;
    let text = content_text(choice.pointer("/message/content"));
    if choice.get("finish_reason").and_then(Value::as_str) == Some("error") {
        return Err(TaskFailure {
            reason: CanaryReason::TaskFailed,
            error: "the completion finished with finish_reason \"error\"".to_owned(),
            reply: text,
        });
    }
    Ok(Reply {
        text,
        usage: usage_of(&answer),
        ..Reply::default()
    })
}

/// Fails with the error an answer or a chunk carries, if it carries one.
fn error_in(value: &Value) -> Result<(), TaskFailure> {
    let Some(error) = value.get("error").filter(|e| !e.is_null()) else {
        return Ok(());
    };
    let message = agent_text::clean(
        error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
            .unwrap_or("no message"),
        AGENT_ERROR_CHARS,
    );
    Err(TaskFailure::new(
        CanaryReason::TaskFailed,
        format!("the server reported an error: {message}"),
    ))
}

/// `content` as text: a string, or the text of a list of content parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value.get("usage").filter(|u| u.is_object())?;
    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt: count("prompt_tokens"),
        completion: count("completion_tokens"),
    })
}

/// Whether to read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

/// A streamed completion as far as it came.
#[derive(Debug, Default)]
struct Stream {
    text: String,
    first_token: Option<Duration>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Stream {
    /// Takes one event's data, `elapsed` after the request was sent.
    fn event(&mut self, data: &str, elapsed: Duration) -> Result<Flow, TaskFailure> {
        if data.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            TaskFailure::new(
                CanaryReason::Protocol,
                format!("a stream chunk is not JSON ({e})"),
            )
        })?;
        if let Err(mut failure) = error_in(&chunk) {
            failure.reply = std::mem::take(&mut self.text);
            return Err(failure);
        }
        let usage = usage_of(&chunk);
        let choices = chunk.get("choices").and_then(Value::as_array);
        // Only the first choice (index 0) is the answer: a server that returns several (`n`
        // above 1) interleaves their deltas and finish reasons.
        for (position, choice) in choices.into_iter().flatten().enumerate() {
            let index = choice.get("index").and_then(Value::as_u64);
            if index.unwrap_or(position as u64) != 0 {
                continue;
            }
            // A reasoning model thinks before it answers: its first thought is its first
            // token, but only the answer is the reply.
            let thought = content_text(choice.pointer("/delta/reasoning_content"));
            let delta = content_text(choice.pointer("/delta/content"));
            if !thought.is_empty() || !delta.is_empty() {
                self.first_token.get_or_insert(elapsed);
            }
            self.text.push_str(&delta);
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_owned());
            }
        }
        if let Some(usage) = usage {
            self.usage = Some(usage);
            // Usage comes last (`stream_options.include_usage`): after the finish, it is the end.
            if self.finish_reason.is_some() {
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::More)
    }

    /// The reply of a stream that ended (`[DONE]` or the body's end).
    fn finish(self) -> Result<Reply, TaskFailure> {
        match self.finish_reason.as_deref() {
            None => Err(TaskFailure {
                reason: CanaryReason::TaskFailed,
                error: "the stream ended without a finish_reason".to_owned(),
                reply: self.text,
            }),
            Some("error") => Err(TaskFailure {
                reason: CanaryReason::TaskFailed,
                error: "the stream finished with finish_reason \"error\"".to_owned(),
                reply: self.text,
            }),
            Some(_) => Ok(Reply {
                text: self.text,
                usage: self.usage,
                first_token: self.first_token,
                json: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(events: &[&str]) -> Result<Reply, TaskFailure> {
        let mut stream = Stream::default();
        for (i, data) in events.iter().enumerate() {
            if stream.event(data, Duration::from_millis(10 * (i as u64 + 1)))? == Flow::Done {
                break;
            }
        }
        stream.finish()
    }

    #[test]
    fn stream_collects_deltas_first_token_and_usage() {
        let reply = feed(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"po"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"ng"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            "[DONE]",
            r#"{"never":"read"}"#,
        ])
        .unwrap();
        assert_eq!(reply.text, "pong");
        assert_eq!(reply.first_token, Some(Duration::from_millis(20)));
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt: 9,
                completion: 2
            })
        );
    }

    #[test]
    fn stream_without_finish_reason_is_a_failed_task() {
        let failure = feed(&[r#"{"choices":[{"delta":{"content":"po"}}]}"#]).unwrap_err();
        assert_eq!(failure.reason, CanaryReason::TaskFailed);
        assert_eq!(failure.reply, "po");
        let done_early = feed(&[r#"{"choices":[{"delta":{"content":"po"}}]}"#, "[DONE]"]);
        assert_eq!(done_early.unwrap_err().reason, CanaryReason::TaskFailed);
    }

    #[test]
    fn error_chunk_is_a_failed_task() {
        let failure = feed(&[
            r#"{"choices":[{"delta":{"content":"po"}}]}"#,
            r#"{"error":{"message":"engine dead","type":"internal"}}"#,
        ])
        .unwrap_err();
        assert_eq!(failure.reason, CanaryReason::TaskFailed);
        assert!(failure.error.contains("engine dead"), "{}", failure.error);
    }

    #[test]
    fn server_error_text_is_cleaned_and_bounded() {
        let message = format!("over\u{2028}load\u{FEFF}ed\u{1b}[2J{}", "y".repeat(500));
        let failure = error_in(&json!({"error": {"message": message}})).unwrap_err();
        assert!(
            failure
                .error
                .starts_with("the server reported an error: overloaded[2Jyyy"),
            "{}",
            failure.error
        );
        assert!(failure.error.chars().count() < 260, "{}", failure.error);
    }

    #[test]
    fn only_the_first_choice_is_the_answer() {
        let reply = feed(&[
            r#"{"choices":[{"index":1,"delta":{"content":"other"},"finish_reason":null},{"index":0,"delta":{"content":"po"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"ng"},"finish_reason":null}]}"#,
        ]);
        let failure = reply.unwrap_err();
        assert_eq!(
            failure.reason,
            CanaryReason::TaskFailed,
            "choice 1's finish_reason is not the answer's"
        );
        assert_eq!(
            failure.reply, "pong",
            "choice 1's delta is not the answer's"
        );
    }

    #[test]
    fn reasoning_is_the_first_token_but_not_the_reply() {
        let reply = feed(&[
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"pong"},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(reply.text, "pong");
        assert_eq!(reply.first_token, Some(Duration::from_millis(10)));
    }

    #[test]
    fn usage_after_the_finish_ends_the_stream() {
        let mut stream = Stream::default();
        let finish =
            r#"{"choices":[{"index":0,"delta":{"content":"pong"},"finish_reason":"stop"}]}"#;
        assert_eq!(stream.event(finish, Duration::ZERO).unwrap(), Flow::More);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#;
        assert_eq!(stream.event(usage, Duration::ZERO).unwrap(), Flow::Done);
    }

    #[test]
    fn a_whole_answer_that_finished_with_error_is_a_failed_task() {
        let body =
            br#"{"choices":[{"index":0,"message":{"content":"po"},"finish_reason":"error"}]}"#;
        assert_eq!(
            whole_answer(body).unwrap_err().reason,
            CanaryReason::TaskFailed
        );
    }

    #[test]
    fn unparsable_chunk_is_a_protocol_failure() {
        let failure = feed(&["not json"]).unwrap_err();
        assert_eq!(failure.reason, CanaryReason::Protocol);
    }

    #[test]
    fn whole_answer_reads_content_and_usage() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
        let reply = whole_answer(body).unwrap();
        assert_eq!(reply.text, "pong");
        assert_eq!(reply.usage.map(|u| u.prompt), Some(5));
        assert_eq!(reply.first_token, None);
        let error = whole_answer(br#"{"error":{"message":"no such model"}}"#).unwrap_err();
        assert_eq!(error.reason, CanaryReason::TaskFailed);
        let empty = whole_answer(br#"{"choices":[]}"#).unwrap_err();
        assert_eq!(empty.reason, CanaryReason::Protocol);
    }
}
