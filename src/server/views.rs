//! The JSON shapes of the API and the event stream, built from the monitor's state. They are a
//! documented, stable schema (README, "JSON API"): add fields, never rename or remove them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::monitor::CanaryState;
use crate::monitor::{Agent, AgentState, HistoryEntry, Status, Transition};
use crate::probe::{CanaryOutcome, CanaryResult, Outcome, ProbeResult};

/// RFC 3339 with milliseconds, in UTC.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Debug, Serialize)]
pub struct FleetView {
    pub generated_at: String,
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Serialize)]
pub struct AgentView {
    pub name: String,
    #[serde(rename = "type")]
    pub agent_type: String,
    /// The target without credentials.
    pub target: String,
    pub labels: BTreeMap<String, String>,
    /// `static`, or the discovery source and its file, URL or DNS name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub status: &'static str,
    pub since: String,
    pub consecutive_failures: u32,
    pub last_probe: Option<ProbeView>,
    pub last_success: Option<String>,
    pub window: WindowView,
    /// Heartbeat agents only: when silence will count as missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_deadline: Option<String>,
    /// Agents with a canary only: its settings and last result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryView>,
    /// Only in the single-agent answer: newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryView>>,
}

/// An agent's canary: what it is, where it stands, and its last run.
#[derive(Debug, Serialize)]
pub struct CanaryView {
    /// a2a, mcp or openai.
    pub kind: &'static str,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub on_failure: &'static str,
    pub failure_threshold: u32,
    pub consecutive_failures: u32,
    /// Whether the canary holds the agent's status down now.
    pub failing: bool,
    pub last_success: Option<String>,
    pub last: Option<CanaryRunView>,
}

/// One canary run. `reply` is an excerpt (at most 256 characters, no control characters).
#[derive(Debug, Serialize)]
pub struct CanaryRunView {
    pub ended_at: String,
    pub duration_seconds: f64,
    pub result: &'static str,
    pub reason: Option<&'static str>,
    pub error: Option<String>,
    pub reply: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

/// A `canary` event: the run and the agent's status after it.
#[derive(Debug, Serialize)]
pub struct CanaryEventView {
    pub agent: String,
    #[serde(rename = "type")]
    pub agent_type: String,
    pub status: &'static str,
    pub kind: &'static str,
    pub canary: CanaryRunView,
}

#[derive(Debug, Serialize)]
pub struct ProbeView {
    pub ended_at: String,
    pub duration_seconds: f64,
    pub result: &'static str,
    pub degraded: bool,
    pub phases: PhasesView,
    pub http_status: Option<u16>,
    pub reason: Option<&'static str>,
    pub error: Option<String>,
    pub cert_expiry: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PhasesView {
    pub dns: f64,
    pub connect: f64,
    pub tls: f64,
    pub first_byte: f64,
    pub transfer: f64,
}

#[derive(Debug, Serialize)]
pub struct WindowView {
    pub probes: usize,
    pub success_ratio: Option<f64>,
    pub error_ratio: Option<f64>,
    pub latency_seconds: LatencyView,
}

#[derive(Debug, Serialize)]
pub struct LatencyView {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub ended_at: String,
    pub duration_seconds: f64,
    pub result: &'static str,
    pub degraded: bool,
    pub http_status: Option<u16>,
    pub reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct TransitionView {
    pub agent: String,
    #[serde(rename = "type")]
    pub agent_type: String,
    pub from: &'static str,
    pub to: &'static str,
    pub at: String,
    pub reason: Option<&'static str>,
    pub error: Option<String>,
    pub consecutive_failures: u32,
    /// Heartbeat agents only: the deadline after this change (a miss moves it one period on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_deadline: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProbeEventView {
    pub agent: String,
    #[serde(rename = "type")]
    pub agent_type: String,
    pub status: &'static str,
    pub probe: ProbeView,
    /// Heartbeat agents only: the deadline after this report or miss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_deadline: Option<String>,
}

pub fn fleet(agents: &[std::sync::Arc<Agent>]) -> FleetView {
    FleetView {
        generated_at: timestamp(SystemTime::now()),
        agents: agents.iter().map(|a| agent(a, false)).collect(),
    }
}

/// One agent; with `history` the ring is included, newest first.
pub fn agent(agent: &Agent, history: bool) -> AgentView {
    let spec = &agent.spec;
    let state = agent.state();
    AgentView {
        name: spec.name.clone(),
        agent_type: spec.agent_type.clone(),
        target: spec.target.display(),
        labels: spec.labels.iter().cloned().collect(),
        origin: None,
        interval_seconds: spec.interval.as_secs_f64(),
        timeout_seconds: spec.timeout.as_secs_f64(),
        failure_threshold: spec.failure_threshold,
        success_threshold: spec.success_threshold,
        status: state.status.as_str(),
        since: timestamp(state.since),
        consecutive_failures: state.consecutive_failures,
        last_probe: state.last.as_ref().map(probe),
        last_success: state.last_success.map(timestamp),
        window: window(&state),
        heartbeat_deadline: state.heartbeat_deadline.map(timestamp),
        canary: spec
            .canary
            .as_ref()
            .zip(state.canary.as_deref())
            .map(|(spec, state)| canary(spec, state)),
        history: history.then(|| state.history.iter().rev().map(history_entry).collect()),
    }
}

pub fn probe(result: &ProbeResult) -> ProbeView {
    let (result_text, degraded, reason, error) = match &result.outcome {
        Outcome::Healthy => ("success", false, None, None),
        Outcome::Degraded(why) => ("success", true, None, Some(why.clone())),
        Outcome::Failed { reason, error } => {
            ("failure", false, Some(reason.as_str()), Some(error.clone()))
        }
    };
    let p = &result.phases;
    ProbeView {
        ended_at: timestamp(result.ended_at),
        duration_seconds: result.duration.as_secs_f64(),
        result: result_text,
        degraded,
        phases: PhasesView {
            dns: p.dns.as_secs_f64(),
            connect: p.connect.as_secs_f64(),
            tls: p.tls.as_secs_f64(),
            first_byte: p.first_byte.as_secs_f64(),
            transfer: p.transfer.as_secs_f64(),
        },
        http_status: result.http_status,
        reason,
        error,
        cert_expiry: result.cert_expiry.map(timestamp),
    }
}

pub fn transition(t: &Transition) -> TransitionView {
    TransitionView {
        agent: t.agent.to_string(),
        agent_type: t.agent_type.to_string(),
        from: t.from.as_str(),
        to: t.to.as_str(),
        at: timestamp(t.at),
        reason: t
            .reason
            .map(|r| r.as_str())
            .or(t.canary_reason.map(|r| r.as_str())),
        error: t.error.clone(),
        consecutive_failures: t.consecutive_failures,
        heartbeat_deadline: t.heartbeat_deadline.map(timestamp),
    }
}

pub fn probe_event(
    agent: &str,
    agent_type: &str,
    status: Status,
    result: &ProbeResult,
    heartbeat_deadline: Option<SystemTime>,
) -> ProbeEventView {
    ProbeEventView {
        agent: agent.to_owned(),
        agent_type: agent_type.to_owned(),
        status: status.as_str(),
        probe: probe(result),
        heartbeat_deadline: heartbeat_deadline.map(timestamp),
    }
}

fn canary(spec: &crate::config::CanarySpec, state: &CanaryState) -> CanaryView {
    CanaryView {
        kind: spec.task.kind(),
        interval_seconds: spec.interval.as_secs_f64(),
        timeout_seconds: spec.timeout.as_secs_f64(),
        on_failure: spec.on_failure.as_str(),
        failure_threshold: spec.failure_threshold,
        consecutive_failures: state.consecutive_failures,
        failing: state.failing,
        last_success: state.last_success.map(timestamp),
        last: state.last.as_deref().map(canary_run),
    }
}

pub fn canary_run(result: &CanaryResult) -> CanaryRunView {
    let (text, reason, error) = match &result.outcome {
        CanaryOutcome::Success => ("success", None, None),
        CanaryOutcome::Failed { reason, error } => {
            ("failure", Some(reason.as_str()), Some(error.clone()))
        }
    };
    CanaryRunView {
        ended_at: timestamp(result.ended_at),
        duration_seconds: result.duration.as_secs_f64(),
        result: text,
        reason,
        error,
        reply: result.reply.clone(),
        first_token_seconds: result.first_token.map(|d| d.as_secs_f64()),
        prompt_tokens: result.usage.map(|u| u.prompt),
        completion_tokens: result.usage.map(|u| u.completion),
    }
}

pub fn canary_event(
    agent: &str,
    agent_type: &str,
    status: Status,
    result: &CanaryResult,
) -> CanaryEventView {
    CanaryEventView {
        agent: agent.to_owned(),
        agent_type: agent_type.to_owned(),
        status: status.as_str(),
        kind: result.kind,
        canary: canary_run(result),
    }
}

fn history_entry(entry: &HistoryEntry) -> HistoryView {
    HistoryView {
        ended_at: timestamp(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(entry.ended_at_ms),
        ),
        duration_seconds: entry.duration().as_secs_f64(),
        result: if entry.success() {
            "success"
        } else {
            "failure"
        },
        degraded: entry.degraded(),
        http_status: (entry.http_status != 0).then_some(entry.http_status),
        reason: entry.reason().map(|r| r.as_str()),
    }
}

/// Statistics over the history ring: ratios and latency percentiles of every kept probe,
/// failed ones included (as in the duration histogram).
fn window(state: &AgentState) -> WindowView {
    let probes = state.history.len();
    if probes == 0 {
        return WindowView {
            probes,
            success_ratio: None,
            error_ratio: None,
            latency_seconds: LatencyView {
                p50: None,
                p95: None,
                p99: None,
            },
        };
    }
    let successes = state.history.iter().filter(|h| h.success()).count();
    let success_ratio = successes as f64 / probes as f64;
    let mut latencies: Vec<u32> = state.history.iter().map(|h| h.duration_us).collect();
    latencies.sort_unstable();
    WindowView {
        probes,
        success_ratio: Some(success_ratio),
        error_ratio: Some(1.0 - success_ratio),
        latency_seconds: LatencyView {
            p50: Some(nearest_rank(&latencies, 0.50)),
            p95: Some(nearest_rank(&latencies, 0.95)),
            p99: Some(nearest_rank(&latencies, 0.99)),
        },
    }
}

/// The nearest-rank percentile of sorted microseconds, in seconds.
fn nearest_rank(sorted_us: &[u32], q: f64) -> f64 {
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[index]) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_observed_values() {
        let sorted: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(nearest_rank(&sorted, 0.50), 0.050);
        assert_eq!(nearest_rank(&sorted, 0.95), 0.095);
        assert_eq!(nearest_rank(&sorted, 0.99), 0.099);
        assert_eq!(nearest_rank(&[7000], 0.99), 0.007);
    }
}
