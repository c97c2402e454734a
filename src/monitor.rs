//! The one place that turns a probe result into state: the health state machine, counters, the
//! history ring, the log line of a transition and the event for live subscribers. Metrics and
//! the API only read what is kept here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use crate::config::{AgentSpec, ResolvedAgent};
use crate::probe::{CanaryReason, CanaryResult, FailureReason, Outcome, ProbeResult, ProtocolInfo};

mod canary;
mod history;
mod native_buckets;
mod push;
mod state;
pub use canary::{overlay, CanaryHistogram, CanaryState, CANARY_BUCKETS};
pub use history::HistoryEntry;
pub use native_buckets::{NativeBuckets, NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD};
pub use state::{step, Change, Health, Status, Thresholds, Verdict};

/// Classic buckets of `agent_probe_duration_seconds`: 1 ms to 10 s, dense where health checks
/// usually answer.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// History rings up to this many entries (4 KiB) are allocated whole when the agent is added, so
/// a fleet's memory is known at start rather than creeping up over the first hundred probes;
/// longer rings grow as they fill, never past their limit.
const PREALLOCATED_HISTORY: usize = 256;

/// Events kept for slow subscribers before they must resync.
const EVENT_BUFFER: usize = 1024;

/// Everything the monitor knows about one agent.
#[derive(Debug, Clone)]
pub struct AgentState {
    pub status: Status,
    /// When the current status began (the agent's start for `unknown`).
    pub since: SystemTime,
    /// The last probe in full, error text included.
    pub last: Option<ProbeResult>,
    pub last_success: Option<SystemTime>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub probes_success: u64,
    pub probes_failure: u64,
    /// Indexed by `FailureReason::index`.
    pub failures_by_reason: [u64; FailureReason::ALL.len()],
    /// Transitions between known statuses (leaving `unknown` is not counted, so a restart does
    /// not look like flapping).
    pub status_changes: u64,
    /// Probes per classic bucket of `DURATION_BUCKETS`, not cumulative, the last one above the
    /// largest bound.
    pub duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// The same probes in native buckets, for scrapes in protobuf.
    pub duration_native: NativeBuckets,
    /// Sum of every probe's duration in seconds.
    pub duration_sum: f64,
    /// Newest at the back.
    pub history: VecDeque<HistoryEntry>,
    /// Heartbeat agents: when silence will count as missed (kept by `heartbeat.rs`).
    pub heartbeat_deadline: Option<SystemTime>,
    /// gRPC agents with `watch: true`: whether the Watch stream is open (kept by its task).
    pub grpc_watch_up: bool,
    /// What a grpc, mcp or a2a agent last said about itself, kept through failed probes that
    /// learnt nothing: `agent_protocol_info` tells what the agent runs, not whether it answers.
    pub protocol_info: Option<Arc<ProtocolInfo>>,
    /// Agents with a canary: its state (`canary.rs`); boxed, so that the others pay a pointer.
    pub canary: Option<Box<CanaryState>>,
}

/// A change of status, as logged and streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub agent: Arc<str>,
    pub agent_type: Arc<str>,
    pub from: Status,
    pub to: Status,
    pub at: SystemTime,
    pub reason: Option<FailureReason>,
    /// A change made by the agent's canary: its reason (`reason` is then None).
    pub canary_reason: Option<CanaryReason>,
    pub error: Option<String>,
    pub consecutive_failures: u32,
    /// Heartbeat agents: the deadline in force after this change, for the event stream.
    pub heartbeat_deadline: Option<SystemTime>,
}

/// What live subscribers receive.
#[derive(Debug, Clone)]
pub enum Event {
    Status(Transition),
    Probe {
        agent: Arc<str>,
        agent_type: Arc<str>,
        result: Arc<ProbeResult>,
        status: Status,
        /// Heartbeat agents: the deadline in force after this report or miss.
        heartbeat_deadline: Option<SystemTime>,
    },
    /// A canary task ended.
    Canary {
        agent: Arc<str>,
        agent_type: Arc<str>,
        result: Arc<CanaryResult>,
        /// The agent's status after it.
        status: Status,
    },
    /// A reload added, changed or removed agents.
    FleetChanged,
}

/// One agent: its spec, its label set and its state.
#[derive(Debug)]
pub struct Agent {
    pub spec: Arc<AgentSpec>,
    /// See `ResolvedAgent::revision`.
    pub revision: u64,
    name: Arc<str>,
    agent_type: Arc<str>,
    state: Mutex<AgentState>,
    /// Serialises probes of this agent, scheduled and on-demand alike.
    pub probe_lock: tokio::sync::Mutex<()>,
}

impl Agent {
    fn new(resolved: &ResolvedAgent, history_limit: usize) -> Self {
        let spec = resolved.spec.clone();
        let now = SystemTime::now();
        Agent {
            name: Arc::from(spec.name.as_str()),
            agent_type: Arc::from(spec.agent_type.as_str()),
            revision: resolved.revision,
            state: Mutex::new(AgentState {
                status: Status::Unknown,
                since: now,
                last: None,
                last_success: None,
                consecutive_failures: 0,
                consecutive_successes: 0,
                probes_success: 0,
                probes_failure: 0,
                failures_by_reason: [0; FailureReason::ALL.len()],
                status_changes: 0,
                duration_buckets: [0; DURATION_BUCKETS.len() + 1],
                duration_native: NativeBuckets::new(now),
                duration_sum: 0.0,
                history: VecDeque::with_capacity(history_limit.min(PREALLOCATED_HISTORY)),
                heartbeat_deadline: None,
                grpc_watch_up: false,
                protocol_info: None,
                canary: spec.canary.as_ref().map(|c| {
                    let streams = matches!(
                        c.task,
                        crate::config::CanaryTask::OpenAi { stream: true, .. }
                    );
                    Box::new(CanaryState::new(
                        c.on_failure,
                        c.failure_threshold,
                        streams,
                        now,
                    ))
                }),
            }),
            probe_lock: tokio::sync::Mutex::new(()),
            spec,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared rather than copied, for maps keyed by agent.
    pub fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// `agent`, `agent_type`, then the user's labels: the label set of every series. A view
    /// over the spec rather than a copy, since it is multiplied by the fleet.
    pub fn labels(&self) -> AgentLabels<'_> {
        AgentLabels(&self.spec)
    }

    /// The state, locked; a poisoned lock still holds consistent data (updates are plain
    /// assignments), so it is used as is.
    pub fn state(&self) -> MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The labels every series of an agent starts with, before the agent's own.
pub const AGENT_LABEL_NAMES: [&str; 2] = ["agent", "agent_type"];

/// The label set of an agent's series; see `Agent::labels`.
#[derive(Debug, Clone, Copy)]
pub struct AgentLabels<'a>(&'a AgentSpec);

impl<'a> AgentLabels<'a> {
    /// Every label in order, as (name, value).
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let spec = self.0;
        [
            (AGENT_LABEL_NAMES[0], spec.name.as_str()),
            (AGENT_LABEL_NAMES[1], spec.agent_type.as_str()),
        ]
        .into_iter()
        .chain(spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// The fleet's state.
#[derive(Debug)]
pub struct Monitor {
    agents: RwLock<BTreeMap<Arc<str>, Arc<Agent>>>,
    history_limit: usize,
    /// Every event, probes included, for subscribers that asked for probes.
    events: broadcast::Sender<Event>,
    /// Transitions and fleet changes only: most subscribers want just these, and on this
    /// channel they are not woken for each of the fleet's probes.
    status_events: broadcast::Sender<Event>,
}

impl Monitor {
    pub fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (status_events, _) = broadcast::channel(EVENT_BUFFER);
        Monitor {
            agents: RwLock::new(BTreeMap::new()),
            history_limit,
            events,
            status_events,
        }
    }

    /// Every agent, sorted by name.
    pub fn agents(&self) -> Vec<Arc<Agent>> {
        self.read().values().cloned().collect()
    }

    pub fn agent(&self, name: &str) -> Option<Arc<Agent>> {
        self.read().get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Adds an agent with fresh state, replacing any agent of the same name.
    pub fn insert(&self, resolved: &ResolvedAgent) -> Arc<Agent> {
        let agent = self.new_agent(resolved);
        self.swap(&[], std::slice::from_ref(&agent));
        agent
    }

    /// An agent with fresh state, not yet in the fleet: see `swap`.
    pub fn new_agent(&self, resolved: &ResolvedAgent) -> Arc<Agent> {
        Arc::new(Agent::new(resolved, self.history_limit))
    }

    /// Removes the agents named in `gone` and adds (or replaces) those in `new` under one lock,
    /// so that no reader ever sees half of a reload.
    pub fn swap(&self, gone: &[Arc<str>], new: &[Arc<Agent>]) {
        let mut agents = self.write();
        for name in gone {
            agents.remove(name);
        }
        for agent in new {
            agents.insert(agent.name.clone(), agent.clone());
        }
    }

    /// Tells subscribers that agents were added, changed or removed.
    pub fn fleet_changed(&self) {
        self.send_status(Event::FleetChanged);
    }

    /// A receiver of the events from now on: transitions and fleet changes, and every probe
    /// too when `probes`.
    pub fn subscribe(&self, probes: bool) -> broadcast::Receiver<Event> {
        if probes {
            self.events.subscribe()
        } else {
            self.status_events.subscribe()
        }
    }

    pub fn subscribers(&self) -> usize {
        self.events.receiver_count() + self.status_events.receiver_count()
    }

    /// Sending fails only when nobody listens, which is fine.
    fn send_status(&self, event: Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event.clone());
        }
        let _ = self.status_events.send(event);
    }

    /// Records one probe: state, counters, histogram, history, log line and events.
    pub fn record(&self, agent: &Agent, result: ProbeResult) -> Status {
        let result = Arc::new(result);
        let (status, transition, heartbeat_deadline) = {
            let mut state = agent.state();
            let seconds = result.duration.as_secs_f64();
            state.duration_native.observe(seconds);
            // A bound is inclusive (`le`), as in the histogram.
            let bucket = DURATION_BUCKETS
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(DURATION_BUCKETS.len());
            state.duration_buckets[bucket] += 1;
            state.duration_sum += seconds;
            let transition = apply(&agent.spec, &mut state, &result, self.history_limit);
            let deadline = state.heartbeat_deadline;
            (state.status, transition.map(|t| t.named(agent)), deadline)
        };
        log_probe(agent, &result, status);
        if let Some(transition) = transition {
            log_transition(&transition);
            self.send_status(Event::Status(transition));
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Event::Probe {
                agent: agent.name.clone(),
                agent_type: agent.agent_type.clone(),
                result,
                status,
                heartbeat_deadline,
            });
        }
        status
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Arc<str>, Arc<Agent>>> {
        self.agents.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Arc<str>, Arc<Agent>>> {
        self.agents.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A transition found by `apply`, before the agent's names are attached.
struct PendingTransition {
    from: Status,
    to: Status,
    at: SystemTime,
    reason: Option<FailureReason>,
    canary_reason: Option<CanaryReason>,
    error: Option<String>,
    consecutive_failures: u32,
    heartbeat_deadline: Option<SystemTime>,
}

impl PendingTransition {
    fn named(self, agent: &Agent) -> Transition {
        Transition {
            agent: agent.name.clone(),
            agent_type: agent.agent_type.clone(),
            from: self.from,
            to: self.to,
            at: self.at,
            reason: self.reason,
            canary_reason: self.canary_reason,
            error: self.error,
            consecutive_failures: self.consecutive_failures,
            heartbeat_deadline: self.heartbeat_deadline,
        }
    }
}

/// Applies `result` to `state`: the state machine's step, the counters and the history ring;
/// returns the transition, if any.
fn apply(
    spec: &AgentSpec,
    state: &mut AgentState,
    result: &ProbeResult,
    history_limit: usize,
) -> Option<PendingTransition> {
    let health = Health {
        status: state.probe_status(),
        consecutive_failures: state.consecutive_failures,
        consecutive_successes: state.consecutive_successes,
    };
    let thresholds = Thresholds {
        failure: spec.failure_threshold,
        success: spec.success_threshold,
    };
    let before = state.status;
    let (health, change) = step(health, Verdict::of(&result.outcome), thresholds);
    state.set_probe_status(health.status);
    // Under a failing canary the agent's status is not the probes' alone: the change is the
    // one the agent's status made, if any.
    let change = canary_adjusted(change, before, state.status, &result.outcome);
    state.consecutive_failures = health.consecutive_failures;
    state.consecutive_successes = health.consecutive_successes;
    match &result.outcome {
        Outcome::Healthy | Outcome::Degraded(_) => {
            state.probes_success += 1;
            state.last_success = Some(result.ended_at);
        }
        Outcome::Failed { reason, .. } => {
            state.probes_failure += 1;
            state.failures_by_reason[reason.index()] += 1;
        }
    }
    history::push(&mut state.history, history_limit, result);
    if let Some(info) = &result.protocol.info {
        state.protocol_info = Some(info.clone());
    }
    state.last = Some(result.clone());
    let change = change?;
    if change.counted {
        state.status_changes += 1;
    }
    state.since = result.ended_at;
    let error = match &result.outcome {
        Outcome::Failed { error, .. } => Some(error.clone()),
        Outcome::Degraded(why) => Some(why.clone()),
        Outcome::Healthy => None,
    };
    Some(PendingTransition {
        from: change.from,
        to: change.to,
        at: result.ended_at,
        reason: change.reason,
        canary_reason: None,
        error,
        consecutive_failures: state.consecutive_failures,
        heartbeat_deadline: state.heartbeat_deadline,
    })
}

/// The change of the agent's status from `before` to `after` that a probe made; the machine's
/// own change when the agent has no failing canary (then the two agree).
fn canary_adjusted(
    change: Option<Change>,
    before: Status,
    after: Status,
    outcome: &Outcome,
) -> Option<Change> {
    if change.is_some_and(|c| c.from == before && c.to == after)
        || (change.is_none() && before == after)
    {
        return change;
    }
    (before != after).then(|| Change {
        from: before,
        to: after,
        reason: outcome.reason(),
        counted: before != Status::Unknown,
    })
}

fn log_transition(t: &Transition) {
    // tracing needs the level at compile time: one call site per level, same fields.
    macro_rules! transition_line {
        ($level:ident) => {
            tracing::$level!(
                agent = %t.agent,
                agent_type = %t.agent_type,
                from = t.from.as_str(),
                to = t.to.as_str(),
                // `None` records no field: a transition to healthy has neither.
                reason = t
                    .reason
                    .map(FailureReason::as_str)
                    .or(t.canary_reason.map(CanaryReason::as_str)),
                error = t.error.as_deref(),
                consecutive_failures = t.consecutive_failures,
                "agent status changed"
            )
        };
    }
    if t.to == Status::Healthy {
        transition_line!(info);
    } else {
        transition_line!(warn);
    }
}

fn log_probe(agent: &Agent, result: &ProbeResult, status: Status) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let (outcome, reason, error) = match &result.outcome {
        Outcome::Healthy => ("success", None, None),
        Outcome::Degraded(why) => ("success", None, Some(why.as_str())),
        Outcome::Failed { reason, error } => {
            ("failure", Some(reason.as_str()), Some(error.as_str()))
        }
    };
    tracing::debug!(
        agent = %agent.name,
        agent_type = %agent.agent_type,
        result = outcome,
        status = status.as_str(),
        duration_seconds = result.duration.as_secs_f64(),
        http_status = result.http_status.unwrap_or(0),
        reason,
        error,
        "probe finished"
    );
}

/// Milliseconds since the Unix epoch; 0 for times before it.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch as a float, for timestamp gauges.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
