//! Probing on schedule: every agent has fixed-rate slots `interval` apart, the first at an offset
//! derived from its name, so a fleet is spread evenly over the interval and keeps its phase across
//! restarts. Reloads are applied here as a diff by agent name.
//!
//! One loop owns the schedule of the whole fleet: it sleeps until the next slot, starts every
//! probe that is due, and sleeps again. A probe is a task only while it runs, so an idle agent
//! costs a heap entry rather than a parked task, and probes that fall due together start from one
//! wake-up. Probes run on a runtime of their own, on one thread: a probe is a few syscalls, and
//! handing its wake-ups between threads (what a work-stealing runtime does) cost more CPU than
//! the probe itself. The HTTP server keeps the caller's runtime, so a heavy request never delays
//! a slot.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

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

/// One agent on the schedule.
struct Scheduled {
    agent: Arc<Agent>,
    fingerprint: u64,
    /// Tells this agent's heap entries from those of an agent of the same name that a reload
    /// replaced: a stale entry is dropped when it comes due.
    generation: u64,
    /// The scheduled probe under way, if any; cleared by the probe when it ends, since a handle
    /// keeps the whole finished task (kilobytes of probe state) allocated.
    running: Option<AbortHandle>,
    /// The agent's gRPC Watch stream task, when it has one.
    watch: Option<AbortHandle>,
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
}

impl Scheduler {
    pub fn new(monitor: Arc<Monitor>, exporter: Arc<ExporterMetrics>) -> Self {
        Scheduler {
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
        // The monitor takes the whole change at once, after the loop: readers (the API, a
        // scrape) see the old fleet or the new one, never a mix.
        let mut new_agents = Vec::new();
        let now = Instant::now();
        for resolved in &config.agents {
            let name = resolved.spec.name.as_str();
            match fleet.agents.get(name) {
                Some(running) if running.fingerprint == resolved.fingerprint => {
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
            let at = now + first_slot_wait(name, agent.spec.interval);
            fleet.slots.push(Reverse(Due {
                at,
                generation,
                name: key.clone(),
            }));
            let watch = self.start_watch(&agent);
            fleet.agents.insert(
                key,
                Scheduled {
                    agent,
                    fingerprint: resolved.fingerprint,
                    generation,
                    running: None,
                    watch,
                },
            );
        }
        self.shared.monitor.swap(&gone, &new_agents);
        // Stale heap entries of removed and changed agents would otherwise stay until their
        // slots come; after a large reload, drop them now.
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
    }

    /// Probes `agent` now, outside its schedule, and records the result like any probe.
    /// `None` when a probe of the agent is already running: probes of one agent never overlap.
    pub async fn try_probe_now(&self, agent: &Arc<Agent>) -> Option<ProbeResult> {
        let guard = agent.probe_lock.try_lock().ok()?;
        Some(probe_locked(agent, &self.shared.monitor, &self.shared.exporter, guard).await)
    }

    /// Opens the agent's gRPC Watch stream on the probing runtime; a pushed failure goes to the
    /// monitor at once.
    fn start_watch(&self, agent: &Arc<Agent>) -> Option<AbortHandle> {
        if !probe::wants_watch(&agent.spec) {
            return None;
        }
        let probing = self.probing.lock().unwrap_or_else(PoisonError::into_inner);
        let handle = probing.as_ref()?.handle.clone();
        let (monitor, pushed) = (self.shared.monitor.clone(), agent.clone());
        let task = probe::grpc_watch(agent.spec.clone(), move |reason, error| {
            monitor.record_push(&pushed, reason, error);
        });
        Some(handle.spawn(task).abort_handle())
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
    if let Some(watch) = &scheduled.watch {
        watch.abort();
    }
}

/// A thread running a single-threaded runtime until the returned sender is dropped; dropping
/// the runtime then drops every task left on it.
fn probing_thread() -> std::io::Result<(Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("probes".to_owned())
        .spawn(move || {
            // Ends when the sender is dropped, or sends.
            let _ = runtime.block_on(stopped);
        })?;
    Ok((handle, stop))
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
        let busy = scheduled
            .running
            .as_ref()
            .is_some_and(|running| !running.is_finished());
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

/// One scheduled probe: how late it starts against its slot, then the probe.
async fn probe_at(agent: Arc<Agent>, slot: Instant, generation: u64, shared: Arc<Shared>) {
    let delay = Instant::now().saturating_duration_since(slot);
    shared
        .exporter
        .probe_start_delay
        .observe(delay.as_secs_f64());
    let guard = agent.probe_lock.lock().await;
    probe_locked(&agent, &shared.monitor, &shared.exporter, guard).await;
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
        assert_eq!(a.as_nanos() % SLOT_GRID.as_nanos(), 0, "on the grid");
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
