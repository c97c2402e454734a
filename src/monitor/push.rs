//! Failures an agent pushes between probes (a gRPC Watch stream saying NOT_SERVING): the state
//! machine's `pushed` step applied under the agent's lock, with the log line and `status` event
//! of the transition. Not a probe: counters, histogram and history stay the probes'.

use std::time::SystemTime;

use super::state::{pushed, Health};
use super::{log_transition, Agent, Event, Monitor, PendingTransition, Status};
use crate::probe::FailureReason;

impl Monitor {
    /// Makes `agent` unhealthy at once for `reason`; recovery waits for `success_threshold`
    /// scheduled probes. Answers the status after it.
    pub fn record_push(&self, agent: &Agent, reason: FailureReason, error: String) -> Status {
        let transition = {
            let mut state = agent.state();
            let before = state.status;
            let health = Health {
                status: state.probe_status(),
                consecutive_failures: state.consecutive_failures,
                consecutive_successes: state.consecutive_successes,
            };
            let (health, change) = pushed(health, reason);
            state.set_probe_status(health.status);
            state.consecutive_failures = health.consecutive_failures;
            state.consecutive_successes = health.consecutive_successes;
            // Unhealthy is the worst status: a failing canary cannot make it worse, so the
            // agent's change is the machine's, from the agent's own status.
            let Some(change) = change.filter(|_| before != state.status) else {
                return state.status;
            };
            let change = super::state::Change {
                from: before,
                counted: before != Status::Unknown,
                ..change
            };
            if change.counted {
                state.status_changes += 1;
            }
            let at = SystemTime::now();
            state.since = at;
            PendingTransition {
                from: change.from,
                to: change.to,
                at,
                reason: change.reason,
                canary_reason: None,
                error: Some(error),
                consecutive_failures: state.consecutive_failures,
                heartbeat_deadline: state.heartbeat_deadline,
            }
            .named(agent)
        };
        log_transition(&transition);
        self.send_status(Event::Status(transition));
        Status::Unhealthy
    }
}
