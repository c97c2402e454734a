//! The health state machine, as a pure function: an agent's health and one probe's verdict,
//! under the agent's thresholds, give the new health and the status change to emit, if any.
//! `Monitor::record` applies it under the agent's lock and does the counting, logging and
//! streaming around it.

use crate::probe::{FailureReason, Outcome};

/// The health of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Unknown,
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Unknown,
        Status::Healthy,
        Status::Degraded,
        Status::Unhealthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one probe says about health, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Degraded,
    Failed(FailureReason),
}

impl Verdict {
    pub fn of(outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Healthy => Verdict::Healthy,
            Outcome::Degraded(_) => Verdict::Degraded,
            Outcome::Failed { reason, .. } => Verdict::Failed(*reason),
        }
    }
}

/// How many probes in a row it takes to change status (both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failures in a row that make an agent `unhealthy`.
    pub failure: u32,
    /// Successes in a row that bring an `unhealthy` agent back.
    pub success: u32,
}

/// The part of an agent's state the machine reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub status: Status,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
}

/// A change of status, to count, log and stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from: Status,
    pub to: Status,
    /// The failure that caused it, for a change made by a failed probe.
    pub reason: Option<FailureReason>,
    /// Whether it counts in `agent_status_changes`: leaving `unknown` does not, so that a
    /// restart does not look like flapping.
    pub counted: bool,
}

/// One step of the machine. A failure makes the agent `unhealthy` once `failure` of them come
/// in a row, and leaves its status alone before that. A success sets `healthy` or `degraded`
/// at once, except from `unhealthy`, which waits for `success` successes in a row.
pub fn step(health: Health, verdict: Verdict, thresholds: Thresholds) -> (Health, Option<Change>) {
    let from = health.status;
    let (next, reason) = match verdict {
        Verdict::Healthy | Verdict::Degraded => {
            let successes = health.consecutive_successes.saturating_add(1);
            let target = if verdict == Verdict::Degraded {
                Status::Degraded
            } else {
                Status::Healthy
            };
            let to = if from == Status::Unhealthy && successes < thresholds.success {
                from
            } else {
                target
            };
            let next = Health {
                status: to,
                consecutive_failures: 0,
                consecutive_successes: successes,
            };
            (next, None)
        }
        Verdict::Failed(reason) => {
            let failures = health.consecutive_failures.saturating_add(1);
            let to = if failures >= thresholds.failure {
                Status::Unhealthy
            } else {
                from
            };
            let next = Health {
                status: to,
                consecutive_failures: failures,
                consecutive_successes: 0,
            };
            (next, Some(reason))
        }
    };
    let change = (next.status != from).then_some(Change {
        from,
        to: next.status,
        reason,
        counted: from != Status::Unknown,
    });
    (next, change)
}

/// A failure the agent pushed between probes (gRPC Watch): `unhealthy` at once, whatever the
/// failure threshold, since the agent itself said so; recovery still waits for `success`
/// successful probes. The failure count is the probes' and stays as it is.
pub fn pushed(health: Health, reason: FailureReason) -> (Health, Option<Change>) {
    let next = Health {
        status: Status::Unhealthy,
        consecutive_failures: health.consecutive_failures,
        consecutive_successes: 0,
    };
    let change = (health.status != Status::Unhealthy).then_some(Change {
        from: health.status,
        to: Status::Unhealthy,
        reason: Some(reason),
        counted: health.status != Status::Unknown,
    });
    (next, change)
}

#[cfg(test)]
mod tests;
