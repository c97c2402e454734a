//! Canaries on a cadence of their own: each agent with a canary has one task, from the reload
//! that adds it until the one that replaces or removes it, that sleeps until its next slot, runs
//! the canary and hands the result to the monitor. One task per agent runs its canaries one
//! after the other, so a canary still running when the next is due is never doubled; a slot
//! that passed meanwhile is skipped, never made up for. The tasks run on the server's runtime,
//! not on the probing thread, and share no lock with the slot loop: a canary, however slow or
//! heavy, never delays a health probe.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{first_slot_wait, Scheduler};
use crate::monitor::{Agent, Monitor};
use crate::probe;

impl Scheduler {
    /// Starts the agent's canary task, when it has a canary.
    pub(super) fn start_canary(&self, agent: &Arc<Agent>) -> Option<AbortHandle> {
        agent.spec.canary.as_ref()?;
        let handle = Handle::try_current().ok().or_else(|| {
            let probing = self
                .probing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            probing.as_ref().map(|p| p.handle.clone())
        })?;
        let task = canary_loop(agent.clone(), self.shared.monitor.clone());
        Some(handle.spawn(task).abort_handle())
    }
}

/// Runs the agent's canary at its slots until aborted.
async fn canary_loop(agent: Arc<Agent>, monitor: Arc<Monitor>) {
    let Some(canary) = agent.spec.canary.clone() else {
        return;
    };
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // A phase of its own, derived from the name as the probe's is, but not the probe's: the
    // canary and the probe of an agent do not start together.
    let phase_key = format!("{}\0canary", agent.name());
    let mut next = Instant::now() + first_slot_wait(&phase_key, canary.interval, unix_now);
    loop {
        tokio::time::sleep_until(next).await;
        let result = probe::run_canary(&agent.spec, &canary).await;
        monitor.record_canary(&agent, result);
        next = next_slot(next, canary.interval, Instant::now());
    }
}

/// The first slot after `now` on the grid of `slot` and `interval`: a canary that ran past its
/// next slot waits for the one after, so canaries never run back to back.
fn next_slot(slot: Instant, interval: Duration, now: Instant) -> Instant {
    let next = slot + interval;
    if next > now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos();
    let passed = behind / interval.as_nanos().max(1) + 1;
    next + interval * u32::try_from(passed).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_past_its_slot_waits_for_the_next_one_on_the_grid() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(
            next_slot(start, minute, start + Duration::from_secs(5)),
            start + minute
        );
        assert_eq!(
            next_slot(start, minute, start + Duration::from_secs(61)),
            start + 2 * minute
        );
        assert_eq!(
            next_slot(start, minute, start + 2 * minute),
            start + 3 * minute
        );
    }
}
