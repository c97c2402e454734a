//! Probing on schedule: every agent has fixed-rate slots `interval` apart, the first at an offset
//! derived from its name, so a fleet is spread evenly over the interval and keeps its phase across
//! restarts. Reloads are applied here as a diff by agent name.
//!
//! One loop owns the fleet's schedule: it sleeps until the next slot and starts every probe due.
//! A probe is a task only while it runs (an idle agent costs a heap entry), and probes due
//! together share one wake-up. Probes run on a one-thread runtime of their own: handing a
//! probe's wake-ups between threads cost more CPU than the probe itself, and the HTTP server
//! keeps the caller's runtime, so a heavy request never delays a slot.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio::{sync::Notify, task::AbortHandle};

use crate::config::Config;
use crate::metrics::ExporterMetrics;
use crate::monitor::{Agent, Monitor};
use crate::probe::{self, ProbeResult};

mod canary;
mod probing;

use probing::probing_thread;

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

/// One agent on the schedule.
struct Scheduled {
    agent: Arc<Agent>,
    /// Tells this agent's heap entries from those of an agent of the same name that a reload
    /// replaced: a stale entry is dropped when it comes due.
    generation: u64,
    /// The scheduled probe under way, if any; cleared by the probe when it ends, since a handle
    /// keeps the whole finished task (kilobytes of probe state) allocated.
    running: Option<AbortHandle>,
    /// When the last on-demand probe of this agent started: the next one waits
    /// `ON_DEMAND_SPACING` from it.
    last_on_demand: Option<Instant>,
    /// The agent's gRPC Watch stream task, when it has one (`scheduler/probing.rs`).
    watch: Option<AbortHandle>,
    /// The agent's canary task, when it has a canary (`scheduler/canary.rs`).
    canary: Option<AbortHandle>,
}

/// Least time between two on-demand probes of one agent: a client looping on the probe endpoint
/// gets 429 instead of probing the agent thousands of times a second.
pub const ON_DEMAND_SPACING: Duration = Duration::from_secs(1);

/// Why an on-demand probe was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OnDemandRefused {
    #[error("a probe of the agent is already running")]
    Running,
    #[error("the agent was probed on demand less than {ON_DEMAND_SPACING:?} ago")]
    TooSoon {
        /// Until the next on-demand probe is allowed.
        retry_after: Duration,
    },
    #[error("the agent is no longer on the schedule")]
    Gone,
}

/// A slot in the heap: the agent's next one.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    generation: u64,
    name: Arc<str>,
}

/// The schedule, shared by `apply` and the slot loop.
#[derive(Default)]
struct Fleet {
    agents: HashMap<Arc<str>, Scheduled>,
    slots: BinaryHeap<Reverse<Due>>,
    next_generation: u64,
}

/// What every probe needs.
struct Shared {
    monitor: Arc<Monitor>,
    exporter: Arc<ExporterMetrics>,
    fleet: Mutex<Fleet>,
    /// Wakes the slot loop after `apply` changed the schedule.
    changed: Notify,
}

impl Shared {
    fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The probing thread's slot loop, and what ends the thread.
struct Probing {
    slot_loop: AbortHandle,
    /// The runtime probes (and Watch streams) run on.
    handle: Handle,
    /// Dropping it ends the thread, and with it every probe under way.
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Owns the schedule and the probing runtime.
pub struct Scheduler {
    shared: Arc<Shared>,
    probing: Mutex<Option<Probing>>,
    /// Heartbeat agents are never probed: their deadlines have a timer of their own.
    pub heartbeats: Arc<crate::heartbeat::Heartbeats>,
}

impl Scheduler {
    pub fn new(monitor: Arc<Monitor>, exporter: Arc<ExporterMetrics>) -> Self {
        Scheduler {
            heartbeats: Arc::new(crate::heartbeat::Heartbeats::new(monitor.clone())),
            shared: Arc::new(Shared {
                monitor,
                exporter,
                fleet: Mutex::new(Fleet::default()),
                changed: Notify::new(),
            }),
            probing: Mutex::new(None),
        }
    }

    /// Makes the running fleet match `config`: unchanged agents keep their schedule and state,
    /// changed ones restart with fresh state, removed ones stop and lose their series at once.
    /// Must be called inside a Tokio runtime (used only if the probing thread cannot start).
    pub fn apply(&self, config: &Config) -> ReloadSummary {
        self.start_probing();
        let mut summary = ReloadSummary::default();
        let mut fleet = self.shared.fleet();
        let wanted: HashMap<&str, _> = config
            .agents
            .iter()
            .map(|a| (a.spec.name.as_str(), a))
            .collect();
        let gone: Vec<Arc<str>> = fleet
            .agents
            .keys()
            .filter(|name| !wanted.contains_key(&***name))
            .cloned()
            .collect();
        for name in &gone {
            if let Some(scheduled) = fleet.agents.remove(name) {
                abort(&scheduled);
            }
            summary.removed.push(name.to_string());
        }
        // The monitor takes the change at once: readers see the old fleet or the new one.
        let mut new_agents = Vec::new();
        // One reading of both clocks: a later wall clock would put slots before their phase.
        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for resolved in &config.agents {
            let name = resolved.spec.name.as_str();
            match fleet.agents.get(name) {
                // The very spec running: discovery hands its unchanged agents back this way.
                Some(running) if Arc::ptr_eq(&running.agent.spec, &resolved.spec) => {
                    summary.unchanged += 1;
                    continue;
                }
                // Equal specs probe alike; a rotated secret is swapped in, state kept.
                Some(running) if running.agent.spec == resolved.spec => {
                    if running.agent.spec.adopt_secrets(&resolved.spec) {
                        tracing::info!(agent = name, "secret rotated; agent state kept");
                    }
                    summary.unchanged += 1;
                    continue;
                }
                Some(running) => {
                    abort(running);
                    summary.changed.push(name.to_owned());
                }
                None => summary.added.push(name.to_owned()),
            }
            let agent = self.shared.monitor.new_agent(resolved);
            new_agents.push(agent.clone());
            let key = agent.shared_name();
            let generation = fleet.next_generation;
            fleet.next_generation += 1;
            if agent.spec.target.heartbeat().is_none() {
                let at = now + first_slot_wait(name, agent.spec.interval, unix_now);
                fleet.slots.push(Reverse(Due {
                    at,
                    generation,
                    name: key.clone(),
                }));
            }
            let watch = self.start_watch(&agent);
            let canary = self.start_canary(&agent);
            fleet.agents.insert(
                key,
                Scheduled {
                    agent,
                    generation,
                    running: None,
                    last_on_demand: None,
                    watch,
                    canary,
                },
            );
        }
        self.shared.monitor.swap(&gone, &new_agents);
        self.heartbeats.apply(&gone, &new_agents);
        // Stale heap entries would otherwise stay until their slots come: drop them now.
        if fleet.slots.len() > 2 * fleet.agents.len() + 64 {
            let Fleet { agents, slots, .. } = &mut *fleet;
            slots.retain(|Reverse(due)| {
                agents
                    .get(&due.name)
                    .is_some_and(|s| s.generation == due.generation)
            });
        }
        drop(fleet);
        self.shared.changed.notify_one();
        if !summary.is_noop() {
            self.shared.monitor.fleet_changed();
        }
        summary
    }

    /// Stops every probe; in-flight probes are dropped.
    pub fn stop(&self) {
        let probing = self
            .probing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(probing) = probing {
            probing.slot_loop.abort();
        }
        let mut fleet = self.shared.fleet();
        for (_, scheduled) in fleet.agents.drain() {
            abort(&scheduled);
        }
        fleet.slots.clear();
        self.heartbeats.stop();
    }

    /// Probes `agent` now, outside its schedule, and records the result like any probe.
    /// Refused while a probe of the agent runs (probes of one agent never overlap) and within
    /// `ON_DEMAND_SPACING` of the previous on-demand probe.
    pub async fn try_probe_now(&self, agent: &Arc<Agent>) -> Result<ProbeResult, OnDemandRefused> {
        let guard = {
            let mut fleet = self.shared.fleet();
            let scheduled = fleet
                .agents
                .get_mut(agent.name())
                .filter(|s| Arc::ptr_eq(&s.agent, agent))
                .ok_or(OnDemandRefused::Gone)?;
            let now = Instant::now();
            if let Some(last) = scheduled.last_on_demand {
                let next = last + ON_DEMAND_SPACING;
                if now < next {
                    return Err(OnDemandRefused::TooSoon {
                        retry_after: next - now,
                    });
                }
            }
            let guard = agent
                .probe_lock
                .try_lock()
                .map_err(|_| OnDemandRefused::Running)?;
            scheduled.last_on_demand = Some(now);
            guard
        };
        Ok(probe_locked(agent, &self.shared.monitor, &self.shared.exporter, guard).await)
    }

    /// Starts the probing thread and the slot loop on it, once.
    fn start_probing(&self) {
        let mut probing = self.probing.lock().unwrap_or_else(PoisonError::into_inner);
        if probing.is_some() {
            return;
        }
        let (handle, stop) = match probing_thread() {
            Ok((handle, stop)) => (handle, Some(stop)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the probing thread; probing on the server's threads");
                (Handle::current(), None)
            }
        };
        let slot_loop = handle.spawn(run_slots(self.shared.clone())).abort_handle();
        *probing = Some(Probing {
            slot_loop,
            handle,
            _stop: stop,
        });
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn abort(scheduled: &Scheduled) {
    if let Some(running) = &scheduled.running {
        running.abort();
    }
    probing::stop_watch(scheduled.watch.as_ref());
    if let Some(canary) = &scheduled.canary {
        canary.abort();
    }
}

/// The slot loop: start what is due, sleep until the next slot or a change of schedule.
async fn run_slots(shared: Arc<Shared>) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let next = start_due(&shared);
        match next {
            Some(at) => {
                sleep.as_mut().reset(at);
                tokio::select! {
                    () = &mut sleep => {}
                    () = shared.changed.notified() => {}
                }
            }
            None => shared.changed.notified().await,
        }
    }
}

/// Starts every probe whose slot has come; answers when the next slot is.
fn start_due(shared: &Arc<Shared>) -> Option<Instant> {
    let now = Instant::now();
    let mut fleet = shared.fleet();
    let Fleet { agents, slots, .. } = &mut *fleet;
    while let Some(Reverse(due)) = slots.peek() {
        if due.at > now {
            return Some(due.at);
        }
        let Some(Reverse(due)) = slots.pop() else {
            break;
        };
        let Some(scheduled) = agents.get_mut(&due.name) else {
            continue;
        };
        if scheduled.generation != due.generation {
            continue;
        }
        let interval = scheduled.agent.spec.interval;
        let mut next = due.at + interval;
        // An on-demand probe holds the agent's probe lock without a scheduled task.
        let busy = scheduled
            .running
            .as_ref()
            .is_some_and(|running| !running.is_finished())
            || scheduled.agent.probe_lock.try_lock().is_err();
        // A slot that has passed is skipped, never made up for: two probes of one agent must
        // not run back to back to "catch up", nor at the same time.
        let mut missed: u64 = u64::from(busy);
        if now >= next {
            let behind = now.duration_since(next);
            let passed = behind.as_nanos() / interval.as_nanos().max(1) + 1;
            next += interval * u32::try_from(passed).unwrap_or(u32::MAX);
            missed += u64::try_from(passed).unwrap_or(u64::MAX);
        }
        if missed > 0 {
            shared.exporter.probe_slots_missed.inc_by(missed);
            tracing::warn!(
                agent = %scheduled.agent.name(),
                missed_slots = missed,
                "probe slots missed: the previous probe or the machine was too slow"
            );
        }
        if !busy {
            let task = tokio::spawn(probe_at(
                scheduled.agent.clone(),
                due.at,
                due.generation,
                shared.clone(),
            ));
            scheduled.running = Some(task.abort_handle());
        }
        slots.push(Reverse(Due { at: next, ..due }));
    }
    None
}

/// One scheduled probe: how late it starts against its slot, then the probe. An on-demand
/// probe that took the agent between the slot loop and this task makes the slot missed: a
/// scheduled probe never waits behind another one after its start delay was measured.
async fn probe_at(agent: Arc<Agent>, slot: Instant, generation: u64, shared: Arc<Shared>) {
    match agent.probe_lock.try_lock() {
        Ok(guard) => {
            let delay = Instant::now().saturating_duration_since(slot);
            shared
                .exporter
                .probe_start_delay
                .observe(delay.as_secs_f64());
            probe_locked(&agent, &shared.monitor, &shared.exporter, guard).await;
        }
        Err(_) => {
            shared.exporter.probe_slots_missed.inc();
            tracing::warn!(
                agent = %agent.name(),
                missed_slots = 1,
                "probe slot missed: an on-demand probe of the agent was running"
            );
        }
    }
    if let Some(scheduled) = shared.fleet().agents.get_mut(agent.name()) {
        if scheduled.generation == generation {
            scheduled.running = None;
        }
    }
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

/// Slots fall on a grid this fine (or 1 % of the interval, when that is finer). Probes that
/// share a grid point start from one wake-up and their answers tend to arrive together, so a
/// fleet pays far fewer wake-ups than probes; the fleet is still spread evenly, only in steps of
/// 250 ms rather than of a nanosecond. A wake-up from idle costs about as much CPU as a probe
/// itself: at 1,000 agents every 30 s, a 10 ms grid cost 495 µs per probe, 100 ms 280 µs and
/// 250 ms 205 µs (BENCHMARKS.md).
const SLOT_GRID: Duration = Duration::from_millis(250);

/// The agent's phase within its interval: a stable hash of its name, in `[0, interval)`, on the
/// slot grid.
pub fn slot_offset(name: &str, interval: Duration) -> Duration {
    let interval_ns = interval.as_nanos().max(1);
    let grid_ns = (interval / 100).min(SLOT_GRID).as_nanos().max(1);
    let offset_ns = u128::from(name_hash(name)) % interval_ns;
    Duration::from_nanos((offset_ns - offset_ns % grid_ns) as u64)
}

/// Time from `now_ns` (Unix time) to the agent's next slot: aligned to the Unix epoch plus the
/// agent's offset, a restarted exporter probes each agent at the same phase.
fn first_slot_wait(name: &str, interval: Duration, now_ns: u128) -> Duration {
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
mod tests;
