//! One probe of one agent: the scheduler calls `run`, the monitor consumes the `ProbeResult`.
//! A probe never outlives its agent's timeout and always ends in a result, never an error.

mod a2a;
pub(crate) mod agent_text;
mod canary;
mod expect;
mod grpc;
mod grpc_conn;
mod grpc_watch;
mod http;
mod http1;
mod http_session;
mod mcp;
mod mcp_legacy;
mod mcp_transport;
mod net;
mod progress;
mod reasons;
mod redirect;
mod request;
mod sse;
mod tcp;
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::AgentSpec;

pub use canary::{
    degenerate, reply_excerpt, run as run_canary, CanaryOutcome, CanaryReason, CanaryResult, Usage,
    REPLY_EXCERPT_CHARS,
};
pub use expect::{check_expectations, BodyVerdict};
pub use grpc::NO_STATUS as NO_GRPC_STATUS;
pub use grpc_watch::watch as grpc_watch;
pub(crate) use reasons::debug_check as debug_check_reason;
pub use reasons::{ProbeKind, Reasons};

/// Why a probe failed: the closed set of the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    Timeout,
    Dns,
    Connect,
    Tls,
    HttpStatus,
    BodyMismatch,
    BodyTooLarge,
    Redirect,
    Protocol,
    /// A heartbeat agent did not report within `period + grace`.
    Missed,
    /// A heartbeat agent reported a failure itself.
    Reported,
    /// A gRPC call ended with a status other than OK.
    GrpcStatus,
    /// The health service answered, with a status other than SERVING.
    NotServing,
}

impl FailureReason {
    /// Every reason, in label order, so that every series exists from the start.
    pub const ALL: [FailureReason; 13] = [
        FailureReason::Timeout,
        FailureReason::Dns,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::HttpStatus,
        FailureReason::BodyMismatch,
        FailureReason::BodyTooLarge,
        FailureReason::Redirect,
        FailureReason::Protocol,
        FailureReason::Missed,
        FailureReason::Reported,
        FailureReason::GrpcStatus,
        FailureReason::NotServing,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Dns => "dns",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::HttpStatus => "http_status",
            FailureReason::BodyMismatch => "body_mismatch",
            FailureReason::BodyTooLarge => "body_too_large",
            FailureReason::Redirect => "redirect",
            FailureReason::Protocol => "protocol",
            FailureReason::Missed => "missed",
            FailureReason::Reported => "reported",
            FailureReason::GrpcStatus => "grpc_status",
            FailureReason::NotServing => "not_serving",
        }
    }

    /// Position in `ALL`, for compact per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Time spent in each phase of a probe. Phases a probe never reached stay zero;
/// across redirects each phase is the sum over all hops.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    pub dns: Duration,
    pub connect: Duration,
    pub tls: Duration,
    pub first_byte: Duration,
    pub transfer: Duration,
}

impl Phases {
    /// Phase names in label order, paired with their values.
    pub fn named(&self) -> [(&'static str, Duration); 5] {
        [
            ("dns", self.dns),
            ("connect", self.connect),
            ("tls", self.tls),
            ("first_byte", self.first_byte),
            ("transfer", self.transfer),
        ]
    }
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every expectation held and no degraded condition did.
    Healthy,
    /// Every expectation held, but a degraded condition did; the text says which.
    Degraded(String),
    /// The probe failed for `reason`; `error` is a short human-readable message.
    Failed {
        reason: FailureReason,
        error: String,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }

    pub fn reason(&self) -> Option<FailureReason> {
        match self {
            Outcome::Failed { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// Everything one probe found out.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Wall-clock time at which the probe ended.
    pub ended_at: SystemTime,
    /// From the start of the probe to its end, failed probes included.
    pub duration: Duration,
    pub phases: Phases,
    /// The final HTTP status, if a response head was received.
    pub http_status: Option<u16>,
    /// Earliest `notAfter` of the certificates the agent served (https only).
    pub cert_expiry: Option<SystemTime>,
    /// What a grpc, mcp or a2a agent reported beyond the outcome.
    pub protocol: ProtocolReport,
    pub outcome: Outcome,
}

/// A step of a probe that failed, with the one reason it is counted under.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) reason: FailureReason,
    /// Short, for people; never holds a header value or a credential.
    pub(crate) error: String,
}

impl Failure {
    pub(crate) fn new(reason: FailureReason, error: impl Into<String>) -> Self {
        Failure {
            reason,
            error: error.into(),
        }
    }

    pub(crate) fn into_outcome(self) -> Outcome {
        Outcome::Failed {
            reason: self.reason,
            error: self.error,
        }
    }
}

/// Longest excerpt of the agent's own text (a Location, a name) quoted in a message.
const EXCERPT_CHARS: usize = 64;

/// `text` from the agent, escaped (no control characters reach a log line or a label) and
/// cut to `EXCERPT_CHARS` characters.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// The outcome of a probe cut short by its timeout, naming the phase it was in.
pub(crate) fn timed_out(timeout: Duration, stage: &str) -> Outcome {
    Failure::new(
        FailureReason::Timeout,
        format!(
            "timed out after {} during {stage}",
            humantime::format_duration(timeout)
        ),
    )
    .into_outcome()
}

/// Findings of the protocol probes; empty for http and tcp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProtocolReport {
    /// The last gRPC status code of a grpc agent (-1 when the call got none); None otherwise.
    pub grpc_status: Option<i32>,
    /// What the agent said about itself, for `agent_protocol_info`.
    pub info: Option<Arc<ProtocolInfo>>,
}

/// The labels of `agent_protocol_info`; empty where the agent did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolInfo {
    pub protocol: &'static str,
    pub server_name: String,
    pub server_version: String,
    pub protocol_version: String,
}

/// Longest label value taken from what an agent reports, in characters.
pub const MAX_INFO_CHARS: usize = 64;

impl ProtocolInfo {
    /// What the agent reported, each value cut to `MAX_INFO_CHARS` without control characters:
    /// an agent must not be able to blow up the exposition through its self-description.
    pub fn reported(
        protocol: &'static str,
        name: &str,
        version: &str,
        protocol_version: &str,
    ) -> Self {
        let bound = |v: &str| -> String {
            v.chars()
                .filter(|c| !c.is_control())
                .take(MAX_INFO_CHARS)
                .collect()
        };
        ProtocolInfo {
            protocol,
            server_name: bound(name),
            server_version: bound(version),
            protocol_version: bound(protocol_version),
        }
    }

    /// The info series of an agent of `spec`: None for http and tcp agents; otherwise what its
    /// last probe reported, or only the protocol before one did.
    pub fn of(spec: &AgentSpec, last: Option<&ProbeResult>) -> Option<Arc<ProtocolInfo>> {
        let protocol = match &spec.target {
            crate::config::Target::Grpc(_) => "grpc",
            crate::config::Target::Mcp(_) => "mcp",
            crate::config::Target::A2a(_) => "a2a",
            _ => return None,
        };
        let reported = last.and_then(|r| r.protocol.info.clone());
        Some(reported.unwrap_or_else(|| {
            Arc::new(ProtocolInfo {
                protocol,
                ..ProtocolInfo::default()
            })
        }))
    }
}

/// True for agents that keep a gRPC Watch stream open besides their probes.
pub fn wants_watch(spec: &AgentSpec) -> bool {
    matches!(&spec.target, crate::config::Target::Grpc(grpc) if grpc.watch)
}

/// Probe `spec` once, bounded by `spec.timeout`.
pub async fn run(spec: &AgentSpec) -> ProbeResult {
    let result = run_target(spec).await;
    let kind = ProbeKind::of(&spec.target);
    // A heartbeat agent's reasons come from `heartbeat.rs`, which checks them there; the
    // refusal below is no probe of it.
    if kind != ProbeKind::Heartbeat {
        debug_check_reason(kind, &result.outcome);
    }
    result
}

async fn run_target(spec: &AgentSpec) -> ProbeResult {
    match &spec.target {
        crate::config::Target::Http(url) => http::probe(spec, url).await,
        crate::config::Target::Tcp { host, port } => tcp::probe(spec, host, *port).await,
        crate::config::Target::Grpc(grpc) => grpc::probe(spec, grpc).await,
        crate::config::Target::Mcp(mcp) => mcp::probe(spec, mcp).await,
        crate::config::Target::A2a(a2a) => a2a::probe(spec, a2a).await,
        // The scheduler never probes a heartbeat agent and the on-demand endpoint refuses it;
        // should one get here, it is a failure that says why rather than a panic.
        crate::config::Target::Heartbeat(_) => ProbeResult {
            ended_at: SystemTime::now(),
            duration: Duration::ZERO,
            phases: Phases::default(),
            http_status: None,
            cert_expiry: None,
            protocol: ProtocolReport::default(),
            outcome: Outcome::Failed {
                reason: FailureReason::Protocol,
                error: "heartbeat agents report in and are not probed".to_owned(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_cuts_the_agents_text() {
        assert_eq!(excerpt("ok"), "ok");
        assert_eq!(excerpt("a\u{1b}[31m\n"), "a\\u{1b}[31m\\n");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn timeout_names_the_phase() {
        assert_eq!(
            timed_out(Duration::from_millis(300), "first_byte"),
            Outcome::Failed {
                reason: FailureReason::Timeout,
                error: "timed out after 300ms during first_byte".into()
            }
        );
    }
}
