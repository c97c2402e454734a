//! The history ring of an agent: its last probes in 16 bytes each, for the API and the status
//! page. The monitor appends to it; nothing else writes it.

use std::collections::VecDeque;
use std::time::Duration;

use super::unix_millis;
use crate::probe::{FailureReason, Outcome, ProbeResult};

/// One probe as kept in the history ring: 16 bytes, since the ring is multiplied by the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// End of the probe, milliseconds since the Unix epoch.
    pub ended_at_ms: u64,
    /// Duration in microseconds, saturating at about 71 minutes.
    pub duration_us: u32,
    /// 0 when no HTTP status was received.
    pub http_status: u16,
    outcome: u8,
}

const OUTCOME_HEALTHY: u8 = 0;
const OUTCOME_DEGRADED: u8 = 1;
/// Failures are stored as `OUTCOME_FAILED_BASE + reason index`.
const OUTCOME_FAILED_BASE: u8 = 2;

impl HistoryEntry {
    fn from_result(result: &ProbeResult) -> Self {
        let outcome = match &result.outcome {
            Outcome::Healthy => OUTCOME_HEALTHY,
            Outcome::Degraded(_) => OUTCOME_DEGRADED,
            Outcome::Failed { reason, .. } => OUTCOME_FAILED_BASE + reason.index() as u8,
        };
        HistoryEntry {
            ended_at_ms: unix_millis(result.ended_at),
            duration_us: u32::try_from(result.duration.as_micros()).unwrap_or(u32::MAX),
            http_status: result.http_status.unwrap_or(0),
            outcome,
        }
    }

    pub fn success(&self) -> bool {
        self.outcome < OUTCOME_FAILED_BASE
    }

    pub fn degraded(&self) -> bool {
        self.outcome == OUTCOME_DEGRADED
    }

    pub fn reason(&self) -> Option<FailureReason> {
        let index = self.outcome.checked_sub(OUTCOME_FAILED_BASE)?;
        FailureReason::ALL.get(usize::from(index)).copied()
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(u64::from(self.duration_us))
    }
}

/// Room for this many entries when a ring gets its first one: a fleet that has just started
/// holds one or two probes per agent, not `--history.limit`.
const FIRST_ROOM: usize = 4;

/// Appends `result`, dropping the oldest entry once `limit` are kept (none at all for 0). The
/// ring's memory follows what it holds: it doubles as it fills, and never holds room past
/// `limit`.
pub(super) fn push(history: &mut VecDeque<HistoryEntry>, limit: usize, result: &ProbeResult) {
    if limit == 0 {
        return;
    }
    if history.len() >= limit {
        history.pop_front();
    } else if history.len() == history.capacity() {
        // VecDeque would double past the limit: a ring of 300 would hold room for 512.
        let grown = (2 * history.capacity()).max(FIRST_ROOM).min(limit);
        history.reserve_exact(grown - history.len());
    }
    history.push_back(HistoryEntry::from_result(result));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Outcome, Phases};
    use std::time::SystemTime;

    fn result() -> ProbeResult {
        ProbeResult {
            ended_at: SystemTime::now(),
            duration: Duration::from_millis(3),
            phases: Phases::default(),
            http_status: Some(200),
            cert_expiry: None,
            protocol: Default::default(),
            outcome: Outcome::Healthy,
        }
    }

    #[test]
    fn a_ring_holds_room_for_what_it_holds_not_for_its_limit() {
        let mut ring = VecDeque::new();
        assert_eq!(ring.capacity(), 0, "no room before the first probe");
        let mut most_room = 0;
        for n in 1..=250 {
            push(&mut ring, 100, &result());
            assert_eq!(ring.len(), n.min(100));
            assert!(
                ring.capacity() <= (2 * ring.len()).clamp(FIRST_ROOM, 100),
                "{n} probes: room for {}",
                ring.capacity()
            );
            most_room = most_room.max(ring.capacity());
        }
        assert_eq!(most_room, 100, "never room past the limit");
    }
}
