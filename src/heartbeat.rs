//! Heartbeat agents report in instead of being probed. Each report (success, run start,
//! failure) becomes a `ProbeResult` that the monitor records like any probe, and a deadline
//! timer records `missed` when an agent stays silent past `period + grace` and `timeout` when a
//! started run overruns `max_run_time` (while such a run is open, silence alone is no miss), at
//! that moment, not at a scrape.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::monitor::{Agent, Monitor, Status};
use crate::probe::{FailureReason, Outcome, Phases, ProbeKind, ProbeResult};

/// Reports accepted per agent and second, and the burst above that: far above any sane
/// heartbeat rate, low enough that a looping client cannot flood the log and the event stream.
pub const RATE_PER_SECOND: f64 = 10.0;
pub const RATE_BURST: f64 = 10.0;

/// Longest message kept from a report, in characters.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// What an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `…/heartbeat`: alive and well; ends a run under way.
    Success,
    /// `…/heartbeat/start`: a run began; its duration is measured until the next report.
    Start,
    /// `…/heartbeat/fail`: the agent failed (reason `reported`); ends a run under way.
    Fail,
}

/// The optional details of a report.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// The run's duration as the agent measured it; else the time since `/start`.
    pub duration: Option<Duration>,
    pub message: Option<String>,
}

/// Why a report was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No heartbeat agent of that name, or the wrong token: the same to the caller.
    Unauthorized,
    /// Over the agent's rate; retry after this long.
    RateLimited(Duration),
}

/// What a taken report led to.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub status: Status,
    /// When silence will count as missed, or, while a bounded run is open, when it times out.
    pub deadline: SystemTime,
}

/// Every heartbeat agent's deadlines, and the timer that enforces them.
pub struct Heartbeats {
    monitor: Arc<Monitor>,
    inner: Mutex<Inner>,
    /// Wakes the timer when a deadline came earlier (a run started).
    changed: Notify,
    timer: Mutex<Option<AbortHandle>>,
}

#[derive(Default)]
struct Inner {
    beats: HashMap<Arc<str>, Beat>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_generation: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    generation: u64,
    name: Arc<str>,
}

/// One heartbeat agent's clock.
struct Beat {
    agent: Arc<Agent>,
    /// Tells this agent's timers from those of an agent of the same name a reload replaced.
    generation: u64,
    /// Silence until then is fine; while a run bounded by `max_run_time` is open, it waits.
    deadline: Instant,
    /// When the run under way started.
    run: Option<Instant>,
    /// The one timer entry that counts; the others are dropped when they come due. A timer
    /// fires no later than the next deadline, and re-arms itself when that moved later.
    armed: Instant,
    /// Rate limit: tokens left and when they were counted.
    tokens: f64,
    counted: Instant,
}

impl Beat {
    /// When the run under way must end, if one is open and bounded by `max_run_time`.
    fn run_end(&self) -> Option<Instant> {
        self.run
            .zip(self.max_run_time())
            .map(|(started, max)| started + max)
    }

    /// The one deadline that counts: while a bounded run is open, its end (healthchecks.io's
    /// semantics, so that a run may outlast `period + grace`); else the silence deadline.
    fn next_event(&self) -> Instant {
        self.run_end().unwrap_or(self.deadline)
    }

    fn allowed_silence(&self) -> Duration {
        self.agent
            .spec
            .target
            .heartbeat()
            .map_or(Duration::from_secs(60), |hb| hb.allowed_silence())
    }

    fn period(&self) -> Duration {
        self.agent
            .spec
            .target
            .heartbeat()
            .map_or(Duration::from_secs(60), |hb| hb.period)
    }

    fn max_run_time(&self) -> Option<Duration> {
        self.agent
            .spec
            .target
            .heartbeat()
            .and_then(|hb| hb.max_run_time)
    }

    /// Takes a token if one is left; else how long until one is.
    fn take_token(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.counted).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
        self.counted = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / RATE_PER_SECOND,
            ))
        }
    }

    /// Shows the deadline that counts in the agent's state, for the gauge, the API and events.
    fn publish_deadline(&self, now: Instant) -> SystemTime {
        let wall = SystemTime::now() + self.next_event().saturating_duration_since(now);
        self.agent.state().heartbeat_deadline = Some(wall);
        wall
    }
}

impl Heartbeats {
    pub fn new(monitor: Arc<Monitor>) -> Self {
        Heartbeats {
            monitor,
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            timer: Mutex::new(None),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows a reload: agents in `new` start afresh (the heartbeat ones with their first
    /// deadline `period + grace` from now), those in `gone` are dropped. Agents in neither
    /// keep their clock. Starts the timer on the current runtime the first time.
    pub fn apply(self: &Arc<Self>, gone: &[Arc<str>], new: &[Arc<Agent>]) {
        let now = Instant::now();
        let mut inner = self.inner();
        for name in gone {
            inner.beats.remove(name);
        }
        for agent in new {
            let Some(heartbeat) = agent.spec.target.heartbeat() else {
                inner.beats.remove(agent.name());
                continue;
            };
            let generation = inner.next_generation;
            inner.next_generation += 1;
            let deadline = now + heartbeat.allowed_silence();
            let beat = Beat {
                agent: agent.clone(),
                generation,
                deadline,
                run: None,
                armed: deadline,
                tokens: RATE_BURST,
                counted: now,
            };
            beat.publish_deadline(now);
            inner.timers.push(Reverse(Timer {
                at: deadline,
                generation,
                name: agent.shared_name(),
            }));
            inner.beats.insert(agent.shared_name(), beat);
        }
        drop(inner);
        self.changed.notify_one();
        let mut timer = self.timer.lock().unwrap_or_else(PoisonError::into_inner);
        if timer.is_none() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                *timer = Some(handle.spawn(self.clone().run_timer()).abort_handle());
            }
        }
    }

    /// Stops the timer.
    pub fn stop(&self) {
        if let Some(timer) = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            timer.abort();
        }
    }

    /// Takes one report of agent `name` presenting `token`, and records it.
    pub fn receive(
        &self,
        name: &str,
        token: Option<&[u8]>,
        report: Report,
        details: Details,
    ) -> Result<Accepted, Refusal> {
        let agent = self.inner().beats.get(name).map(|b| b.agent.clone());
        // The digest of an unknown agent's "token" is compared too, so that an unknown name
        // costs what a wrong token costs.
        let expected = agent
            .as_ref()
            .and_then(|a| a.spec.target.heartbeat())
            .map(|hb| hb.token.shared())
            .unwrap_or_default();
        let same = token_matches(&expected, token);
        let Some(agent) = agent.filter(|_| same) else {
            return Err(Refusal::Unauthorized);
        };
        let now = Instant::now();
        let (result, deadline) = {
            let mut inner = self.inner();
            let Inner { beats, timers, .. } = &mut *inner;
            let Some(beat) = beats
                .get_mut(name)
                .filter(|b| Arc::ptr_eq(&b.agent, &agent))
            else {
                return Err(Refusal::Unauthorized);
            };
            beat.take_token(now).map_err(Refusal::RateLimited)?;
            let run = match report {
                // A start is no sign of a finished job: it moves no silence deadline, and a
                // start while a run is open keeps that run's end, so that a job that crashes
                // and restarts, only ever starting, times out instead of staying healthy.
                Report::Start => {
                    beat.run.get_or_insert(now);
                    None
                }
                Report::Success | Report::Fail => {
                    beat.deadline = now + beat.allowed_silence();
                    beat.run.take()
                }
            };
            let earliest = beat.next_event();
            if earliest < beat.armed {
                beat.armed = earliest;
                timers.push(Reverse(Timer {
                    at: earliest,
                    generation: beat.generation,
                    name: beat.agent.shared_name(),
                }));
                self.changed.notify_one();
            }
            let deadline = beat.publish_deadline(now);
            let duration = details
                .duration
                .or_else(|| run.map(|started| now.saturating_duration_since(started)));
            let outcome = match report {
                Report::Start => None,
                Report::Success => Some(Outcome::Healthy),
                Report::Fail => Some(Outcome::Failed {
                    reason: FailureReason::Reported,
                    error: details
                        .message
                        .as_deref()
                        .map(short_message)
                        .unwrap_or_else(|| "the agent reported a failure".to_owned()),
                }),
            };
            (
                outcome.map(|o| result(o, duration.unwrap_or_default())),
                deadline,
            )
        };
        let status = match result {
            Some(result) => {
                crate::probe::debug_check_reason(ProbeKind::Heartbeat, &result.outcome);
                self.monitor.record(&agent, result)
            }
            None => agent.state().status,
        };
        Ok(Accepted { status, deadline })
    }

    /// The timer: records what fell due, then sleeps until the next deadline or a change.
    async fn run_timer(self: Arc<Self>) {
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            match self.fire_due() {
                Some(at) => {
                    sleep.as_mut().reset(at);
                    tokio::select! {
                        () = &mut sleep => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }

    /// Records every deadline that passed; answers when the next one is.
    fn fire_due(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut fired = Vec::new();
        let next = {
            let mut inner = self.inner();
            let Inner { beats, timers, .. } = &mut *inner;
            loop {
                let Some(Reverse(timer)) = timers.peek() else {
                    break None;
                };
                if timer.at > now {
                    break Some(timer.at);
                }
                let Some(Reverse(timer)) = timers.pop() else {
                    break None;
                };
                let Some(beat) = beats.get_mut(&timer.name) else {
                    continue;
                };
                if beat.generation != timer.generation || beat.armed != timer.at {
                    continue;
                }
                match beat.run_end() {
                    Some(end) if now >= end => {
                        let started = beat.run.take().unwrap_or(end);
                        let max = end.saturating_duration_since(started);
                        let error = format!(
                            "the run exceeded max_run_time {}",
                            humantime::format_duration(max)
                        );
                        let outcome = Outcome::Failed {
                            reason: FailureReason::Timeout,
                            error,
                        };
                        fired.push((beat.agent.clone(), result(outcome, now - started)));
                        // The run is over; silence counts again, one period on, as after a miss.
                        beat.deadline = now + beat.period();
                        beat.publish_deadline(now);
                    }
                    // A bounded run is open: silence does not count until it ends.
                    Some(_) => {}
                    None if now >= beat.deadline => {
                        let silence = beat.allowed_silence();
                        let error = format!(
                            "no heartbeat within period + grace ({})",
                            humantime::format_duration(silence)
                        );
                        let outcome = Outcome::Failed {
                            reason: FailureReason::Missed,
                            error,
                        };
                        fired.push((beat.agent.clone(), result(outcome, Duration::ZERO)));
                        // Each further period of silence is one more miss, so that thresholds
                        // above 1 count silence as they count failed probes.
                        beat.deadline =
                            (beat.deadline + beat.period()).max(now + Duration::from_millis(1));
                        beat.publish_deadline(now);
                    }
                    None => {}
                }
                beat.armed = beat.next_event();
                timers.push(Reverse(Timer {
                    at: beat.armed,
                    ..timer
                }));
            }
        };
        for (agent, result) in fired {
            crate::probe::debug_check_reason(ProbeKind::Heartbeat, &result.outcome);
            self.monitor.record(&agent, result);
        }
        next
    }
}

/// A report as a probe result.
fn result(outcome: Outcome, duration: Duration) -> ProbeResult {
    ProbeResult {
        ended_at: SystemTime::now(),
        duration,
        phases: Phases::default(),
        http_status: None,
        cert_expiry: None,
        protocol: Default::default(),
        outcome,
    }
}

/// Whether `presented` is the token `expected`, in constant time; an empty expectation (an
/// unknown agent) and a missing token never match, after the same work as a wrong token.
pub fn token_matches(expected: &str, presented: Option<&[u8]>) -> bool {
    let same: bool = subtle::ConstantTimeEq::ct_eq(
        digest(expected.as_bytes()).as_ref(),
        digest(presented.unwrap_or_default()).as_ref(),
    )
    .into();
    same && presented.is_some() && !expected.is_empty()
}

fn digest(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}

/// A message cut to `MAX_MESSAGE_CHARS`, control characters escaped, so that a report cannot
/// forge log lines or flood the history.
pub fn short_message(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_short_and_control_characters_escaped() {
        assert_eq!(short_message("disk\nfull"), "disk\\nfull");
        let long = "x".repeat(1000);
        assert_eq!(short_message(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
