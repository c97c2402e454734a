//! One task per agent, probing at fixed-rate slots `interval` apart. The first slot sits at an
//! offset derived from the agent's name, so a fleet is spread evenly over the interval and keeps
//! its phase across restarts. Reloads are applied here as a diff by agent name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;

use crate::config::Config;
use crate::metrics::ExporterMetrics;
use crate::monitor::{Agent, Monitor};
use crate::probe::{self, ProbeResult};

/// What a reload changed, for its log line and the reload endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl ReloadSummary {
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

struct Running {
    fingerprint: u64,
    task: AbortHandle,
}

/// Owns the probing tasks.
pub struct Scheduler {
    monitor: Arc<Monitor>,
    exporter: Arc<ExporterMetrics>,
    tasks: Mutex<HashMap<String, Running>>,
}

impl Scheduler {
    pub fn new(monitor: Arc<Monitor>, exporter: Arc<ExporterMetrics>) -> Self {
        Scheduler {
            monitor,
            exporter,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the running fleet match `config`: unchanged agents keep their schedule and state,
    /// changed ones restart with fresh state, removed ones stop and lose their series at once.
    /// Must be called inside a Tokio runtime.
    pub fn apply(&self, config: &Config) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted: HashMap<&str, _> = config
            .agents
            .iter()
            .map(|a| (a.spec.name.as_str(), a))
            .collect();
        let gone: Vec<String> = tasks
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(running) = tasks.remove(&name) {
                running.task.abort();
            }
            self.monitor.remove(&name);
            summary.removed.push(name);
        }
        for resolved in &config.agents {
            let name = resolved.spec.name.clone();
            match tasks.get(&name) {
                Some(running) if running.fingerprint == resolved.fingerprint => {
                    summary.unchanged += 1;
                    continue;
                }
                Some(running) => {
                    running.task.abort();
                    summary.changed.push(name.clone());
                }
                None => summary.added.push(name.clone()),
            }
            let agent = self.monitor.insert(resolved);
            let task = tokio::spawn(run_agent(
                agent,
                self.monitor.clone(),
                self.exporter.clone(),
            ));
            tasks.insert(
                name,
                Running {
                    fingerprint: resolved.fingerprint,
                    task: task.abort_handle(),
                },
            );
        }
        if !summary.is_noop() {
            self.monitor.fleet_changed();
        }
        summary
    }

    /// Stops every probe; in-flight probes are dropped.
    pub fn stop(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, running) in tasks.drain() {
            running.task.abort();
        }
    }

    /// Probes `agent` now, outside its schedule, and records the result like any probe.
    /// `None` when a probe of the agent is already running: probes of one agent never overlap.
    pub async fn try_probe_now(&self, agent: &Arc<Agent>) -> Option<ProbeResult> {
        let guard = agent.probe_lock.try_lock().ok()?;
        Some(probe_locked(agent, &self.monitor, &self.exporter, guard).await)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The life of one agent: sleep to the slot, probe, record, repeat.
async fn run_agent(agent: Arc<Agent>, monitor: Arc<Monitor>, exporter: Arc<ExporterMetrics>) {
    let interval = agent.spec.interval;
    let mut slot = tokio::time::Instant::now() + first_slot_wait(&agent.spec.name, interval);
    loop {
        tokio::time::sleep_until(slot).await;
        let delay = tokio::time::Instant::now().saturating_duration_since(slot);
        exporter.probe_start_delay.observe(delay.as_secs_f64());
        probe_once(&agent, &monitor, &exporter).await;

        slot += interval;
        let now = tokio::time::Instant::now();
        if now > slot {
            // A slot that has already passed is skipped, never made up for: two probes of one
            // agent must not run back to back to "catch up".
            let behind = now.duration_since(slot);
            let missed = behind.as_nanos() / interval.as_nanos() + 1;
            slot += interval * u32::try_from(missed).unwrap_or(u32::MAX);
            tracing::warn!(
                agent = %agent.name(),
                missed_slots = u64::try_from(missed).unwrap_or(u64::MAX),
                "probe slots missed: the previous probe or the machine was too slow"
            );
        }
    }
}

async fn probe_once(
    agent: &Arc<Agent>,
    monitor: &Monitor,
    exporter: &ExporterMetrics,
) -> ProbeResult {
    let guard = agent.probe_lock.lock().await;
    probe_locked(agent, monitor, exporter, guard).await
}

/// Runs one probe while holding the agent's probe lock, and records it.
async fn probe_locked(
    agent: &Arc<Agent>,
    monitor: &Monitor,
    exporter: &ExporterMetrics,
    _one_at_a_time: tokio::sync::MutexGuard<'_, ()>,
) -> ProbeResult {
    let result = {
        let _in_flight = InFlight::enter(exporter);
        probe::run(&agent.spec).await
    };
    monitor.record(agent, result.clone());
    result
}

/// Counts a probe in `agent_exporter_probes_in_flight` until dropped, also when the task is
/// aborted mid-probe by a reload.
struct InFlight<'a>(&'a ExporterMetrics);

impl<'a> InFlight<'a> {
    fn enter(exporter: &'a ExporterMetrics) -> Self {
        exporter.probes_in_flight.inc();
        InFlight(exporter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.probes_in_flight.dec();
    }
}

/// The agent's phase within its interval: a stable hash of its name, in `[0, interval)`.
pub fn slot_offset(name: &str, interval: Duration) -> Duration {
    let interval_ns = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(name_hash(name)) % interval_ns) as u64)
}

/// Time from now to the agent's next slot. Slots are aligned to the Unix epoch plus the
/// agent's offset, so a restarted exporter probes each agent at the same phase as before.
fn first_slot_wait(name: &str, interval: Duration) -> Duration {
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let interval_ns = interval.as_nanos().max(1);
    let offset_ns = slot_offset(name, interval).as_nanos();
    let phase = (now_ns + interval_ns - offset_ns) % interval_ns;
    let wait = (interval_ns - phase) % interval_ns;
    Duration::from_nanos(wait as u64)
}

/// FNV-1a followed by a 64-bit finaliser: stable across versions and platforms (unlike std's
/// hasher), and well mixed in the low bits that the modulo keeps.
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_offset_is_stable_and_inside_the_interval() {
        let interval = Duration::from_secs(30);
        let a = slot_offset("planner", interval);
        assert_eq!(a, slot_offset("planner", interval));
        assert!(a < interval);
        assert_ne!(a, slot_offset("planner-2", interval));
    }

    #[test]
    fn ten_thousand_agents_spread_evenly_over_the_interval() {
        let interval = Duration::from_secs(30);
        let mut buckets = [0u32; 30];
        for i in 0..10_000 {
            let offset = slot_offset(&format!("agent-{i:05}"), interval);
            buckets[offset.as_secs() as usize] += 1;
        }
        // 333 expected per second; a good hash keeps every second within ±25 %.
        for (second, count) in buckets.iter().enumerate() {
            assert!(
                (250..=417).contains(count),
                "second {second} got {count} of 10000 slots"
            );
        }
    }

    #[test]
    fn first_slot_comes_within_one_interval() {
        let interval = Duration::from_millis(200);
        for name in ["a", "b", "c", "d"] {
            assert!(first_slot_wait(name, interval) < interval);
        }
    }
}
