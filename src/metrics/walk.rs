//! The one walk over `FAMILIES` that every encoder shares: it takes one consistent copy of each
//! agent's state, renders each agent's label set once per scrape in the encoder's own form, and
//! hands the encoder one family after the other, sample by sample.

use std::sync::Arc;

use super::families::{Family, HistogramSample, Sample, Samples, Values, FAMILIES};
use crate::monitor::{Agent, AgentState, Monitor};
use crate::probe::Outcome;

/// A consistent copy of one agent's state, taken once per scrape so that all its series agree.
pub(super) struct Row {
    pub(super) agent: Arc<Agent>,
    /// Everything but the history ring, which no series reads.
    pub(super) state: AgentState,
}

/// What the fleet-wide series read.
pub(super) struct Fleet {
    pub(super) agents: usize,
    pub(super) subscribers: usize,
}

/// Agents copied per turn of the fleet map's lock.
const AGENTS_PER_BATCH: usize = 256;

/// A row per agent, sorted by name; `native` copies the native histogram buckets too (only
/// protobuf carries them). The fleet's map is locked for a batch of agents at a time and each
/// agent's state for its own copy only: a scrape never holds what probing needs for longer.
pub(super) fn rows(monitor: &Monitor, native: bool) -> Vec<Row> {
    let mut rows = Vec::with_capacity(monitor.len());
    loop {
        let after = rows.last().map(|r: &Row| r.agent.shared_name());
        let batch = monitor.agents_after(after.as_deref(), AGENTS_PER_BATCH);
        if batch.is_empty() {
            return rows;
        }
        rows.extend(batch.into_iter().map(|agent| row(agent, native)));
    }
}

/// One agent's consistent copy, taken under its lock.
fn row(agent: Arc<Agent>, native: bool) -> Row {
    let mut state = agent.state();
    // Whole-state copy without the large parts nobody reads: they are moved out for the clone
    // and back, under the same lock.
    let history = std::mem::take(&mut state.history);
    // The last probe's message is for people (the API), not for any series.
    let message = state.last.as_mut().map(|last| match &mut last.outcome {
        Outcome::Failed { error: text, .. } | Outcome::Degraded(text) => std::mem::take(text),
        Outcome::Healthy => String::new(),
    });
    let positive = if native {
        Vec::new()
    } else {
        std::mem::take(&mut state.duration_native.positive)
    };
    let copy = state.clone();
    state.history = history;
    if let (Some(last), Some(message)) = (state.last.as_mut(), message) {
        match &mut last.outcome {
            Outcome::Failed { error: text, .. } | Outcome::Degraded(text) => *text = message,
            Outcome::Healthy => {}
        }
    }
    if !native {
        state.duration_native.positive = positive;
    }
    drop(state);
    Row { agent, state: copy }
}

/// An output format. The walk calls `begin`, the family's samples, then `end`, family by family.
pub(super) trait Sink {
    /// A label set (the agent's, or one extra label) in the form this format copies into each
    /// of its series.
    type Labels: Default;

    fn agent_labels(&self, agent: &Agent) -> Self::Labels;
    /// `key="value"` for a constant of this crate.
    fn extra_label(&self, key: &str, value: &str) -> Self::Labels;
    /// Labels whose values come from the agent, escaped as the format wants.
    fn info_labels(&self, pairs: &[(&'static str, &str)]) -> Self::Labels;
    fn begin(&mut self, family: &Family);
    fn sample(&mut self, labels: &Self::Labels, extra: &Self::Labels, value: Sample);
    fn histogram(&mut self, labels: &Self::Labels, bounds: &[f64], value: &HistogramSample);
    fn end(&mut self);
    /// Called before `begin`: a format that frames a family with its length in front
    /// (protobuf) returns true and is handed the family's samples once more to count them, so
    /// that it never holds a whole family (at 100,000 agents, tens of megabytes).
    fn measure(&mut self, _family: &Family) -> bool {
        false
    }
    /// True once nobody wants the rest of the output: the walk ends early.
    fn stopped(&self) -> bool {
        false
    }
}

/// Hands every family of `FAMILIES`, filled from `rows`, to `sink`.
pub(super) fn walk<S: Sink>(sink: &mut S, rows: &[Row], subscribers: usize) {
    let labels: Vec<S::Labels> = rows.iter().map(|r| sink.agent_labels(&r.agent)).collect();
    let fleet = Fleet {
        agents: rows.len(),
        subscribers,
    };
    let mut samples = Samples::default();
    for family in FAMILIES {
        // The extra labels are constants: rendered once per scrape, not once per line.
        let extra: Vec<S::Labels> = family
            .extra
            .map(|e| {
                (e.values)()
                    .into_iter()
                    .map(|v| sink.extra_label(e.key, v))
                    .collect()
            })
            .unwrap_or_default();
        if sink.measure(family) {
            samples_of(sink, family, rows, &labels, &extra, &fleet, &mut samples);
        }
        sink.begin(family);
        samples_of(sink, family, rows, &labels, &extra, &fleet, &mut samples);
        sink.end();
        if sink.stopped() {
            return;
        }
    }
}

/// Hands `family`'s samples, filled from `rows`, to `sink`.
fn samples_of<S: Sink>(
    sink: &mut S,
    family: &Family,
    rows: &[Row],
    labels: &[S::Labels],
    extra: &[S::Labels],
    fleet: &Fleet,
    samples: &mut Samples,
) {
    let none = S::Labels::default();
    match family.values {
        Values::FleetGauge(value) => {
            sink.sample(&none, &none, Sample::Int(value(fleet)));
        }
        Values::Gauge(values) | Values::Counter(values) => {
            for (row, l) in rows.iter().zip(labels) {
                if sink.stopped() {
                    return;
                }
                samples.0.clear();
                values(row, samples);
                debug_assert!(
                    samples.0.len() <= extra.len().max(1),
                    "{}: more samples than values of the extra label",
                    family.name
                );
                for (n, value) in samples.given() {
                    sink.sample(l, extra.get(n).unwrap_or(&none), value);
                }
            }
        }
        Values::Info {
            labels: names,
            values,
        } => {
            for (row, l) in rows.iter().zip(labels) {
                if sink.stopped() {
                    return;
                }
                if let Some(reported) = values(row) {
                    let pairs = Values::info_pairs(names, reported);
                    sink.sample(l, &sink.info_labels(&pairs), Sample::Int(1));
                }
            }
        }
        Values::Histogram { bounds, value } => {
            for (row, l) in rows.iter().zip(labels) {
                if sink.stopped() {
                    return;
                }
                if let Some(histogram) = value(row) {
                    sink.histogram(l, bounds, &histogram);
                }
            }
        }
    }
}
