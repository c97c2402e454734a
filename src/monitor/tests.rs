use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config;
use crate::probe::Phases;

fn agent(extra: &str) -> (Monitor, Arc<Agent>) {
    let yaml = format!(
        "agents:\n  - name: planner\n    type: orchestrator\n    url: http://127.0.0.1:1/\n{extra}"
    );
    let config = config::parse(&yaml, "t.yaml", Path::new(".")).expect("valid config");
    let monitor = Monitor::new(3);
    let agent = monitor.insert(&config.agents[0]);
    (monitor, agent)
}

fn result(outcome: Outcome) -> ProbeResult {
    ProbeResult {
        ended_at: SystemTime::now(),
        duration: Duration::from_millis(12),
        phases: Phases::default(),
        http_status: Some(200),
        cert_expiry: None,
        protocol: Default::default(),
        outcome,
    }
}

fn fail() -> ProbeResult {
    result(Outcome::Failed {
        reason: FailureReason::Connect,
        error: "connection refused".into(),
    })
}

fn ok() -> ProbeResult {
    result(Outcome::Healthy)
}

#[test]
fn agent_is_unknown_before_its_first_probe() {
    let (_, agent) = agent("");
    assert_eq!(agent.state().status, Status::Unknown);
}

#[test]
fn first_failed_probe_marks_agent_unhealthy_with_default_threshold() {
    let (monitor, agent) = agent("");
    assert_eq!(monitor.record(&agent, ok()), Status::Healthy);
    assert_eq!(monitor.record(&agent, fail()), Status::Unhealthy);
    let state = agent.state();
    assert_eq!(state.consecutive_failures, 1);
    assert_eq!(state.status_changes, 1, "unknown -> healthy is not counted");
}

#[test]
fn failure_threshold_tolerates_fewer_failures_in_a_row() {
    let (monitor, agent) = agent("    failure_threshold: 3\n");
    monitor.record(&agent, ok());
    assert_eq!(monitor.record(&agent, fail()), Status::Healthy);
    assert_eq!(monitor.record(&agent, fail()), Status::Healthy);
    assert_eq!(monitor.record(&agent, ok()), Status::Healthy);
    assert_eq!(monitor.record(&agent, fail()), Status::Healthy);
    assert_eq!(monitor.record(&agent, fail()), Status::Healthy);
    assert_eq!(monitor.record(&agent, fail()), Status::Unhealthy);
}

#[test]
fn success_threshold_delays_recovery_from_unhealthy() {
    let (monitor, agent) = agent("    success_threshold: 2\n");
    monitor.record(&agent, fail());
    assert_eq!(agent.state().status, Status::Unhealthy);
    assert_eq!(monitor.record(&agent, ok()), Status::Unhealthy);
    assert_eq!(monitor.record(&agent, ok()), Status::Healthy);
}

#[test]
fn degraded_outcome_sets_degraded_and_back() {
    let (monitor, agent) = agent("");
    assert_eq!(
        monitor.record(&agent, result(Outcome::Degraded("slow".into()))),
        Status::Degraded
    );
    assert_eq!(monitor.record(&agent, ok()), Status::Healthy);
    assert_eq!(agent.state().status_changes, 1);
}

#[test]
fn counters_count_every_probe_by_result_and_reason() {
    let (monitor, agent) = agent("");
    for _ in 0..4 {
        monitor.record(&agent, ok());
    }
    for _ in 0..2 {
        monitor.record(&agent, fail());
    }
    let state = agent.state();
    assert_eq!(state.probes_success, 4);
    assert_eq!(state.probes_failure, 2);
    assert_eq!(state.failures_by_reason[FailureReason::Connect.index()], 2);
    assert_eq!(state.failures_by_reason.iter().sum::<u64>(), 2);
}

#[test]
fn history_keeps_the_newest_entries_up_to_the_limit() {
    let (monitor, agent) = agent("");
    monitor.record(&agent, ok());
    monitor.record(&agent, fail());
    monitor.record(&agent, ok());
    monitor.record(&agent, fail());
    let state = agent.state();
    assert_eq!(state.history.len(), 3);
    let kinds: Vec<Option<FailureReason>> = state.history.iter().map(|h| h.reason()).collect();
    assert_eq!(
        kinds,
        vec![
            Some(FailureReason::Connect),
            None,
            Some(FailureReason::Connect)
        ]
    );
    assert_eq!(state.history[1].duration(), Duration::from_millis(12));
}

#[test]
fn history_entry_stays_compact() {
    assert_eq!(std::mem::size_of::<HistoryEntry>(), 16);
}

#[tokio::test]
async fn transition_is_sent_to_subscribers_with_reason_and_error() {
    let (monitor, agent) = agent("");
    let mut events = monitor.subscribe(false);
    monitor.record(&agent, fail());
    let mut saw = None;
    while let Ok(event) = events.try_recv() {
        if let Event::Status(t) = event {
            saw = Some(t);
        }
    }
    let t = saw.expect("a status event");
    assert_eq!((t.from, t.to), (Status::Unknown, Status::Unhealthy));
    assert_eq!(t.reason, Some(FailureReason::Connect));
    assert_eq!(t.error.as_deref(), Some("connection refused"));
    assert_eq!(&*t.agent, "planner");
}

#[tokio::test]
async fn status_subscribers_get_transitions_without_the_stream_of_probes() {
    let (monitor, agent) = agent("");
    let mut status_only = monitor.subscribe(false);
    let mut everything = monitor.subscribe(true);
    assert_eq!(monitor.subscribers(), 2);
    // One transition (unknown -> unhealthy), then three probes that change nothing.
    for _ in 0..4 {
        monitor.record(&agent, fail());
    }
    monitor.fleet_changed();
    let kinds = |events: &mut broadcast::Receiver<Event>| {
        let mut kinds = Vec::new();
        while let Ok(event) = events.try_recv() {
            kinds.push(match event {
                Event::Status(_) => "status",
                Event::Probe { .. } => "probe",
                Event::Canary { .. } => "canary",
                Event::FleetChanged => "fleet",
            });
        }
        kinds
    };
    assert_eq!(kinds(&mut status_only), ["status", "fleet"]);
    assert_eq!(
        kinds(&mut everything),
        ["status", "probe", "probe", "probe", "probe", "fleet"]
    );
}

/// The structures every agent has, bounded at their sizes when BENCHMARKS.md ("Memory per
/// agent") was measured, plus one pointer each in Agent, AgentState and AgentSpec for the
/// canary (an agent without one pays only that): a field that grows one of them grows the fleet's memory by the fleet's
/// size, and should say so there. `examples/agent_memory.rs` prints them with the heap beside.
#[cfg(target_pointer_width = "64")]
#[test]
fn per_agent_structures_stay_within_their_measured_sizes() {
    use std::mem::size_of;
    let sizes = [
        ("Agent", size_of::<Agent>(), 696),
        ("AgentState", size_of::<AgentState>(), 600),
        ("ProbeResult", size_of::<ProbeResult>(), 184),
        ("HistoryEntry", size_of::<HistoryEntry>(), 16),
        ("AgentSpec", size_of::<AgentSpec>(), 504),
        ("ResolvedAgent", size_of::<ResolvedAgent>(), 40),
    ];
    let grown: Vec<String> = sizes
        .iter()
        .filter(|(_, size, measured)| size > measured)
        .map(|(name, size, measured)| format!("{name}: {size} bytes, {measured} measured"))
        .collect();
    assert!(grown.is_empty(), "{grown:?}");
}
