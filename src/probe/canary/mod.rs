//! One canary task of one agent: a small real request (an A2A message, an MCP tool call, an
//! OpenAI-compatible chat completion) on the agent's own transports, bounded by the canary's
//! timeout, judged against its `expect`. Like a probe, it always ends in a result, never an
//! error; the scheduler's canary task calls `run`, the monitor records the `CanaryResult`.

mod a2a;
mod expect;
mod mcp;
mod openai;

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{Failure, FailureReason};
use crate::config::{AgentSpec, CanarySpec, CanaryTask, Target};

pub use expect::{degenerate, reply_excerpt, REPLY_EXCERPT_CHARS};

/// Why a canary failed: the closed set of `agent_canary_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanaryReason {
    Timeout,
    Connect,
    Tls,
    HttpStatus,
    /// A malformed answer, a reply past `max_body_bytes`, framing broken mid-exchange.
    Protocol,
    /// The agent answered that the task failed (an A2A task failed, rejected or canceled; an
    /// MCP `isError`; a JSON-RPC error; a stream that broke off or carried an error).
    TaskFailed,
    /// An A2A task that stopped to ask for input or authentication.
    TaskInterrupted,
    /// The reply does not show what `expect` asks, or is empty or degenerate.
    ContentMismatch,
}

impl CanaryReason {
    /// Every reason, in label order: every series exists from the start.
    pub const ALL: [CanaryReason; 8] = [
        CanaryReason::Timeout,
        CanaryReason::Connect,
        CanaryReason::Tls,
        CanaryReason::HttpStatus,
        CanaryReason::Protocol,
        CanaryReason::TaskFailed,
        CanaryReason::TaskInterrupted,
        CanaryReason::ContentMismatch,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryReason::Timeout => "timeout",
            CanaryReason::Connect => "connect",
            CanaryReason::Tls => "tls",
            CanaryReason::HttpStatus => "http_status",
            CanaryReason::Protocol => "protocol",
            CanaryReason::TaskFailed => "task_failed",
            CanaryReason::TaskInterrupted => "task_interrupted",
            CanaryReason::ContentMismatch => "content_mismatch",
        }
    }

    /// Position in `ALL`, for compact per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The canary reason of a transport step that failed. A name that does not resolve is a
    /// failure to connect here: the canary's set has no `dns`, the probe's says which.
    fn of_transport(reason: FailureReason) -> CanaryReason {
        match reason {
            FailureReason::Timeout => CanaryReason::Timeout,
            FailureReason::Dns | FailureReason::Connect => CanaryReason::Connect,
            FailureReason::Tls => CanaryReason::Tls,
            FailureReason::HttpStatus | FailureReason::Redirect => CanaryReason::HttpStatus,
            // The server answered, and said no (a JSON-RPC error).
            FailureReason::NotServing | FailureReason::Reported | FailureReason::GrpcStatus => {
                CanaryReason::TaskFailed
            }
            FailureReason::BodyMismatch
            | FailureReason::BodyTooLarge
            | FailureReason::Protocol
            | FailureReason::Missed => CanaryReason::Protocol,
        }
    }
}

impl fmt::Display for CanaryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens the agent reported as used by the task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

/// How a canary ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryOutcome {
    Success,
    /// `error` is short and for people; it never quotes the prompt.
    Failed {
        reason: CanaryReason,
        error: String,
    },
}

impl CanaryOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, CanaryOutcome::Success)
    }

    pub fn reason(&self) -> Option<CanaryReason> {
        match self {
            CanaryOutcome::Failed { reason, .. } => Some(*reason),
            CanaryOutcome::Success => None,
        }
    }
}

/// Everything one canary task found out.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryResult {
    /// The canary's kind: a2a, mcp or openai.
    pub kind: &'static str,
    pub ended_at: SystemTime,
    /// The whole task, failed ones included.
    pub duration: Duration,
    /// Streaming chat completions: from the request to the first content delta.
    pub first_token: Option<Duration>,
    pub outcome: CanaryOutcome,
    /// The start of the reply, at most `REPLY_EXCERPT_CHARS` characters without control
    /// characters; empty when none came. For the API and debug logs only, never a label.
    pub reply: String,
    pub usage: Option<Usage>,
}

/// What a task that ran to its end answered.
#[derive(Debug, Default)]
struct Reply {
    /// All the text of the answer, joined.
    text: String,
    /// The answer as a JSON document, where the protocol gives one (MCP `structuredContent`).
    json: Option<Value>,
    usage: Option<Usage>,
    first_token: Option<Duration>,
}

/// A task that ended short of a reply to judge, with what it had received by then.
#[derive(Debug)]
struct TaskFailure {
    reason: CanaryReason,
    error: String,
    /// Text the agent sent with its failure (an A2A task's status message), for the excerpt.
    reply: String,
}

impl TaskFailure {
    fn new(reason: CanaryReason, error: impl Into<String>) -> Self {
        TaskFailure {
            reason,
            error: error.into(),
            reply: String::new(),
        }
    }
}

impl From<Failure> for TaskFailure {
    fn from(failure: Failure) -> Self {
        TaskFailure::new(CanaryReason::of_transport(failure.reason), failure.error)
    }
}

/// Runs `canary` against `spec`'s agent once, bounded by the canary's timeout.
pub async fn run(spec: &AgentSpec, canary: &CanarySpec) -> CanaryResult {
    let started = Instant::now();
    let kind = canary.task.kind();
    let attempt = match (&canary.task, &spec.target) {
        (CanaryTask::A2a { text }, Target::A2a(target)) => {
            tokio::time::timeout(canary.timeout, a2a::send(spec, &target.url, text)).await
        }
        (CanaryTask::Mcp { tool, arguments }, Target::Mcp(target)) => {
            mcp::call(spec, target, tool, arguments, canary.timeout).await
        }
        (task @ CanaryTask::OpenAi { .. }, _) => {
            tokio::time::timeout(canary.timeout, openai::complete(spec, task, started)).await
        }
        // The config refuses such a canary; should one get here, it fails saying why.
        _ => Ok(Err(TaskFailure::new(
            CanaryReason::Protocol,
            format!("a canary of kind {kind} does not fit this agent's protocol"),
        ))),
    };
    let duration = started.elapsed();
    let degenerate_check = matches!(canary.task, CanaryTask::OpenAi { .. });
    let (outcome, reply, usage, first_token) = match attempt {
        Err(_) => (
            CanaryOutcome::Failed {
                reason: CanaryReason::Timeout,
                error: format!(
                    "no complete answer within {}",
                    humantime::format_duration(canary.timeout)
                ),
            },
            String::new(),
            None,
            None,
        ),
        Ok(Err(failure)) => (
            CanaryOutcome::Failed {
                reason: failure.reason,
                error: failure.error,
            },
            failure.reply,
            None,
            None,
        ),
        Ok(Ok(reply)) => {
            let outcome = match expect::judge(&canary.expect, &reply, duration, degenerate_check) {
                Ok(()) => CanaryOutcome::Success,
                Err((reason, error)) => CanaryOutcome::Failed { reason, error },
            };
            (outcome, reply.text, reply.usage, reply.first_token)
        }
    };
    CanaryResult {
        kind,
        ended_at: SystemTime::now(),
        duration,
        first_token,
        outcome,
        reply: reply_excerpt(&reply),
        usage,
    }
}

/// A message id no other canary of this process used: the time and a counter, as hex.
fn message_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("canary-{nanos:x}-{n:x}")
}

/// The text parts of an A2A message or artifact, or of MCP content, joined by newlines.
fn text_parts(parts: Option<&Value>) -> Vec<&str> {
    parts
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| {
                    // 0.3 marks the kind, 1.0 has only the `text` field, MCP has `type`.
                    let kind = p
                        .get("kind")
                        .or_else(|| p.get("type"))
                        .and_then(Value::as_str);
                    kind.is_none_or(|k| k == "text")
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}
