//! One probe of one agent: the scheduler calls `run`, the monitor consumes the `ProbeResult`.
//! A probe never outlives its agent's timeout and always ends in a result, never an error.

mod expect;
mod http;
mod net;
mod redirect;
mod request;
mod tcp;
mod tls;

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::config::AgentSpec;

pub use expect::{check_expectations, BodyVerdict};

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
}

impl FailureReason {
    /// Every reason, in label order, so that every series exists from the start.
    pub const ALL: [FailureReason; 11] = [
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

/// Probe `spec` once, bounded by `spec.timeout`.
pub async fn run(spec: &AgentSpec) -> ProbeResult {
    match &spec.target {
        crate::config::Target::Http(url) => http::probe(spec, url).await,
        crate::config::Target::Tcp { host, port } => tcp::probe(spec, host, *port).await,
        // The scheduler never probes a heartbeat agent and the on-demand endpoint refuses it;
        // should one get here, it is a failure that says why rather than a panic.
        crate::config::Target::Heartbeat(_) => ProbeResult {
            ended_at: SystemTime::now(),
            duration: Duration::ZERO,
            phases: Phases::default(),
            http_status: None,
            cert_expiry: None,
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
