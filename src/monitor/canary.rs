//! Canary results into state: the canary's counters and histograms, its failure count against
//! its threshold, and the agent's status, which is the probes' status overlaid by a failing
//! canary (`degraded` or `unhealthy`, as its `on_failure` says). Agents without a canary carry
//! one empty pointer for all of this.

use std::sync::Arc;
use std::time::SystemTime;

use super::native_buckets::NativeBuckets;
use super::state::Status;
use super::{log_transition, Agent, AgentState, Event, Monitor, PendingTransition};
use crate::config::OnFailure;
use crate::probe::{CanaryOutcome, CanaryReason, CanaryResult};

/// Classic buckets of `agent_canary_duration_seconds` and `agent_canary_first_token_seconds`:
/// 10 ms to 2 min, where model answers fall.
pub const CANARY_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One histogram of an agent's canary, in both forms.
#[derive(Debug, Clone)]
pub struct CanaryHistogram {
    /// Per classic bucket of `CANARY_BUCKETS`, not cumulative, the last above the largest bound.
    pub buckets: [u64; CANARY_BUCKETS.len() + 1],
    pub native: NativeBuckets,
    pub sum: f64,
}

impl CanaryHistogram {
    fn new(created: SystemTime) -> Self {
        CanaryHistogram {
            buckets: [0; CANARY_BUCKETS.len() + 1],
            native: NativeBuckets::new(created),
            sum: 0.0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        self.native.observe(seconds);
        let bucket = CANARY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(CANARY_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// What the monitor keeps of an agent's canary.
#[derive(Debug, Clone)]
pub struct CanaryState {
    /// The status the probes alone give; the agent's status is this under a failing canary.
    pub probe_status: Status,
    /// What a failing canary does, from the agent's spec.
    pub on_failure: OnFailure,
    pub failure_threshold: u32,
    /// Failed canaries in a row.
    pub consecutive_failures: u32,
    /// Whether `failure_threshold` failures in a row hold the agent's status down.
    pub failing: bool,
    pub runs_success: u64,
    pub runs_failure: u64,
    /// Indexed by `CanaryReason::index`.
    pub failures_by_reason: [u64; CanaryReason::ALL.len()],
    pub duration: CanaryHistogram,
    /// Streaming chat completions only.
    pub first_token: Option<CanaryHistogram>,
    pub last_success: Option<SystemTime>,
    pub tokens_prompt: u64,
    pub tokens_completion: u64,
    pub last: Option<Arc<CanaryResult>>,
}

impl CanaryState {
    pub(super) fn new(
        on_failure: OnFailure,
        failure_threshold: u32,
        streams: bool,
        now: SystemTime,
    ) -> Self {
        CanaryState {
            probe_status: Status::Unknown,
            on_failure,
            failure_threshold,
            consecutive_failures: 0,
            failing: false,
            runs_success: 0,
            runs_failure: 0,
            failures_by_reason: [0; CanaryReason::ALL.len()],
            duration: CanaryHistogram::new(now),
            first_token: streams.then(|| CanaryHistogram::new(now)),
            last_success: None,
            tokens_prompt: 0,
            tokens_completion: 0,
            last: None,
        }
    }

    /// What the canary does to the agent's status now: nothing, or its `on_failure`.
    fn effect(&self) -> Option<OnFailure> {
        self.failing.then_some(self.on_failure)
    }
}

/// The agent's status from the probes' status and a failing canary's effect: the worse of the
/// two, `unhealthy` over `degraded` over `healthy` and `unknown`.
pub fn overlay(probe: Status, canary: Option<OnFailure>) -> Status {
    match (probe, canary) {
        (probe, None) => probe,
        (Status::Unhealthy, _) | (_, Some(OnFailure::Unhealthy)) => Status::Unhealthy,
        (_, Some(OnFailure::Degraded)) => Status::Degraded,
    }
}

impl AgentState {
    /// The status the probes alone give (the status itself for an agent without a canary).
    pub(super) fn probe_status(&self) -> Status {
        self.canary.as_ref().map_or(self.status, |c| c.probe_status)
    }

    /// Sets the probes' status; the agent's status follows, overlaid by a failing canary.
    pub(super) fn set_probe_status(&mut self, status: Status) {
        match self.canary.as_deref_mut() {
            Some(canary) => {
                canary.probe_status = status;
                self.status = overlay(status, canary.effect());
            }
            None => self.status = status,
        }
    }
}

impl Monitor {
    /// Records one canary: its counters and histograms, the agent's status under it, the log
    /// lines and the events. A result for an agent that no longer has a canary (a reload
    /// replaced it meanwhile) is dropped.
    pub fn record_canary(&self, agent: &Agent, result: CanaryResult) -> Status {
        let result = Arc::new(result);
        let (status, transition) = {
            let mut state = agent.state();
            let before = state.status;
            let probe_status = state.probe_status();
            let Some(canary) = state.canary.as_deref_mut() else {
                return before;
            };
            canary.duration.observe(result.duration.as_secs_f64());
            if let (Some(histogram), Some(first)) = (&mut canary.first_token, result.first_token) {
                histogram.observe(first.as_secs_f64());
            }
            if let Some(usage) = result.usage {
                canary.tokens_prompt = canary.tokens_prompt.saturating_add(usage.prompt);
                canary.tokens_completion =
                    canary.tokens_completion.saturating_add(usage.completion);
            }
            match &result.outcome {
                CanaryOutcome::Success => {
                    canary.runs_success += 1;
                    canary.consecutive_failures = 0;
                    canary.failing = false;
                    canary.last_success = Some(result.ended_at);
                }
                CanaryOutcome::Failed { reason, .. } => {
                    canary.runs_failure += 1;
                    canary.failures_by_reason[reason.index()] += 1;
                    canary.consecutive_failures = canary.consecutive_failures.saturating_add(1);
                    canary.failing = canary.consecutive_failures >= canary.failure_threshold;
                }
            }
            canary.last = Some(result.clone());
            // The transition is the canary's: its count of failures in a row, not the probes'.
            let canary_failures = canary.consecutive_failures;
            let after = overlay(probe_status, canary.effect());
            let transition = (after != before).then(|| {
                state.status = after;
                if before != Status::Unknown {
                    state.status_changes += 1;
                }
                state.since = result.ended_at;
                let error = match &result.outcome {
                    CanaryOutcome::Failed { reason, error } => {
                        format!("canary failed ({reason}): {error}")
                    }
                    CanaryOutcome::Success => "canary succeeded again".to_owned(),
                };
                PendingTransition {
                    from: before,
                    to: after,
                    at: result.ended_at,
                    reason: None,
                    canary_reason: result.outcome.reason(),
                    error: Some(error),
                    consecutive_failures: canary_failures,
                    heartbeat_deadline: state.heartbeat_deadline,
                }
                .named(agent)
            });
            (state.status, transition)
        };
        log_canary(agent, &result);
        if let Some(transition) = transition {
            log_transition(&transition);
            self.send_status(Event::Status(transition));
        }
        // Canaries come minutes apart: every subscriber's channel carries them, and the stream
        // sends them only to clients that asked (`?canaries=true`).
        self.send_status(Event::Canary {
            agent: agent.shared_name(),
            agent_type: agent.agent_type.clone(),
            result,
            status,
        });
        status
    }
}

/// A debug line per canary, an info line per failure. The reply goes only into the debug line;
/// the prompt into none.
fn log_canary(agent: &Agent, result: &CanaryResult) {
    match &result.outcome {
        CanaryOutcome::Success => {
            tracing::debug!(
                agent = %agent.name(),
                agent_type = %agent.agent_type,
                kind = result.kind,
                result = "success",
                duration_seconds = result.duration.as_secs_f64(),
                first_token_seconds = result.first_token.map(|d| d.as_secs_f64()),
                reply = %result.reply,
                "canary finished"
            );
        }
        CanaryOutcome::Failed { reason, error } => {
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(
                    agent = %agent.name(),
                    agent_type = %agent.agent_type,
                    kind = result.kind,
                    result = "failure",
                    reason = reason.as_str(),
                    duration_seconds = result.duration.as_secs_f64(),
                    reply = %result.reply,
                    "canary finished"
                );
            }
            tracing::info!(
                agent = %agent.name(),
                agent_type = %agent.agent_type,
                kind = result.kind,
                reason = reason.as_str(),
                error = %error,
                duration_seconds = result.duration.as_secs_f64(),
                "canary failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::probe::{FailureReason, Outcome, Phases, ProbeResult, Usage};

    fn agent(canary: &str) -> (Monitor, Arc<Agent>) {
        let yaml = format!(
            "agents:\n  - name: llm\n    type: model\n    url: http://127.0.0.1:1/health\n    \
             canary: {{{canary}openai: {{model: m, prompt: p, stream: true}}}}\n"
        );
        let config = crate::config::parse(&yaml, "t.yaml", Path::new(".")).expect("valid");
        let monitor = Monitor::new(3);
        let agent = monitor.insert(&config.agents[0]);
        (monitor, agent)
    }

    fn probe(outcome: Outcome) -> ProbeResult {
        ProbeResult {
            ended_at: SystemTime::now(),
            duration: Duration::from_millis(3),
            phases: Phases::default(),
            http_status: Some(200),
            cert_expiry: None,
            protocol: Default::default(),
            outcome,
        }
    }

    fn canary(reason: Option<CanaryReason>) -> CanaryResult {
        CanaryResult {
            kind: "openai",
            ended_at: SystemTime::now(),
            duration: Duration::from_millis(700),
            first_token: Some(Duration::from_millis(120)),
            outcome: match reason {
                None => CanaryOutcome::Success,
                Some(reason) => CanaryOutcome::Failed {
                    reason,
                    error: "x".into(),
                },
            },
            reply: "pong".into(),
            usage: Some(Usage {
                prompt: 9,
                completion: 2,
            }),
        }
    }

    #[test]
    fn failing_canary_degrades_a_healthy_agent_after_its_threshold_and_recovers_at_once() {
        let (monitor, agent) = agent("failure_threshold: 2, ");
        assert_eq!(
            monitor.record(&agent, probe(Outcome::Healthy)),
            Status::Healthy
        );
        let failed = Some(CanaryReason::ContentMismatch);
        assert_eq!(
            monitor.record_canary(&agent, canary(failed)),
            Status::Healthy
        );
        assert_eq!(
            monitor.record_canary(&agent, canary(failed)),
            Status::Degraded
        );
        // A successful probe does not hide the failing canary.
        assert_eq!(
            monitor.record(&agent, probe(Outcome::Healthy)),
            Status::Degraded
        );
        assert_eq!(monitor.record_canary(&agent, canary(None)), Status::Healthy);
        let state = agent.state();
        let c = state.canary.as_deref().unwrap();
        assert_eq!((c.runs_success, c.runs_failure), (1, 2));
        assert_eq!(
            c.failures_by_reason[CanaryReason::ContentMismatch.index()],
            2
        );
        assert_eq!((c.tokens_prompt, c.tokens_completion), (27, 6));
        assert_eq!(c.duration.count(), 3);
        assert_eq!(c.first_token.as_ref().map(CanaryHistogram::count), Some(3));
        assert_eq!(state.status_changes, 2, "healthy -> degraded -> healthy");
    }

    #[test]
    fn unhealthy_on_failure_and_probe_failures_combine_into_the_worse_status() {
        let (monitor, agent) = agent("on_failure: unhealthy, ");
        monitor.record(&agent, probe(Outcome::Healthy));
        assert_eq!(
            monitor.record_canary(&agent, canary(Some(CanaryReason::Timeout))),
            Status::Unhealthy
        );
        let failed = Outcome::Failed {
            reason: FailureReason::Connect,
            error: "refused".into(),
        };
        assert_eq!(monitor.record(&agent, probe(failed)), Status::Unhealthy);
        // The canary recovers; the probes still fail.
        assert_eq!(
            monitor.record_canary(&agent, canary(None)),
            Status::Unhealthy
        );
        assert_eq!(
            monitor.record(&agent, probe(Outcome::Healthy)),
            Status::Healthy
        );
    }

    #[tokio::test]
    async fn a_transition_made_by_the_canary_carries_its_reason_and_a_canary_event_follows() {
        let (monitor, agent) = agent("");
        monitor.record(&agent, probe(Outcome::Healthy));
        let mut events = monitor.subscribe(false);
        monitor.record_canary(&agent, canary(Some(CanaryReason::TaskFailed)));
        let Ok(Event::Status(t)) = events.recv().await else {
            panic!("a status event first");
        };
        assert_eq!((t.from, t.to), (Status::Healthy, Status::Degraded));
        assert_eq!(t.canary_reason, Some(CanaryReason::TaskFailed));
        assert_eq!(t.reason, None);
        let Ok(Event::Canary { result, status, .. }) = events.recv().await else {
            panic!("then the canary event");
        };
        assert_eq!(status, Status::Degraded);
        assert_eq!(result.reply, "pong");
    }

    #[tokio::test]
    async fn a_transition_made_by_the_canary_counts_the_canarys_failures_not_the_probes() {
        let (monitor, agent) = agent("failure_threshold: 2, ");
        monitor.record(&agent, probe(Outcome::Healthy));
        let mut events = monitor.subscribe(false);
        let mut next_transition = async || loop {
            match events.recv().await {
                Ok(Event::Status(t)) => return t,
                Ok(_) => continue,
                Err(e) => panic!("no transition: {e}"),
            }
        };
        monitor.record_canary(&agent, canary(Some(CanaryReason::Timeout)));
        monitor.record_canary(&agent, canary(Some(CanaryReason::Timeout)));
        let t = next_transition().await;
        assert_eq!(t.to, Status::Degraded);
        assert_eq!(
            t.consecutive_failures, 2,
            "the canary failed twice in a row"
        );
        monitor.record_canary(&agent, canary(None));
        let t = next_transition().await;
        assert_eq!((t.to, t.consecutive_failures), (Status::Healthy, 0));
    }

    #[test]
    fn a_failing_canary_makes_the_status_the_worse_of_the_two() {
        use OnFailure::{Degraded, Unhealthy};
        assert_eq!(overlay(Status::Healthy, None), Status::Healthy);
        assert_eq!(overlay(Status::Healthy, Some(Degraded)), Status::Degraded);
        assert_eq!(overlay(Status::Unknown, Some(Degraded)), Status::Degraded);
        assert_eq!(
            overlay(Status::Unhealthy, Some(Degraded)),
            Status::Unhealthy
        );
        assert_eq!(
            overlay(Status::Degraded, Some(Unhealthy)),
            Status::Unhealthy
        );
        assert_eq!(overlay(Status::Degraded, None), Status::Degraded);
    }
}
