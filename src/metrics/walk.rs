//! The one walk over `FAMILIES` that every encoder shares: it takes one consistent copy of each
//! agent's state, renders each agent's label set once per scrape in the encoder's own form, and
//! hands the encoder one family after the other, sample by sample.

use std::sync::Arc;

use super::families::{Family, HistogramSample, Sample, Samples, Values, FAMILIES};
use crate::monitor::{Agent, AgentState, Monitor};

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

/// A row per agent, sorted by name; `native` copies the native histogram buckets too (only
/// protobuf carries them).
pub(super) fn rows(monitor: &Monitor, native: bool) -> Vec<Row> {
    monitor
        .agents()
        .into_iter()
        .map(|agent| {
            let mut state = agent.state();
            // Whole-state copy without the large parts nobody reads: they are moved out for the
            // clone and back, under the same lock.
            let history = std::mem::take(&mut state.history);
            let positive = if native {
                Vec::new()
            } else {
                std::mem::take(&mut state.duration_native.positive)
            };
            let copy = state.clone();
            state.history = history;
            if !native {
                state.duration_native.positive = positive;
            }
            drop(state);
            Row { agent, state: copy }
        })
        .collect()
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
}

/// Hands every family of `FAMILIES`, filled from `rows`, to `sink`.
pub(super) fn walk<S: Sink>(sink: &mut S, rows: &[Row], subscribers: usize) {
    let labels: Vec<S::Labels> = rows.iter().map(|r| sink.agent_labels(&r.agent)).collect();
    let none = S::Labels::default();
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
        sink.begin(family);
        match family.values {
            Values::FleetGauge(value) => {
                sink.sample(&none, &none, Sample::Int(value(&fleet)));
            }
            Values::Gauge(values) | Values::Counter(values) => {
                for (row, l) in rows.iter().zip(&labels) {
                    samples.0.clear();
                    values(row, &mut samples);
                    debug_assert!(
                        samples.0.len() <= extra.len().max(1),
                        "{}: more samples than values of the extra label",
                        family.name
                    );
                    for (n, value) in samples.0.iter().enumerate() {
                        sink.sample(l, extra.get(n).unwrap_or(&none), *value);
                    }
                }
            }
            Values::Info {
                labels: names,
                values,
            } => {
                for (row, l) in rows.iter().zip(&labels) {
                    if let Some(reported) = values(row) {
                        let pairs = Values::info_pairs(names, reported);
                        sink.sample(l, &sink.info_labels(&pairs), Sample::Int(1));
                    }
                }
            }
            Values::Histogram { bounds, value } => {
                for (row, l) in rows.iter().zip(&labels) {
                    if let Some(histogram) = value(row) {
                        sink.histogram(l, bounds, &histogram);
                    }
                }
            }
        }
        sink.end();
    }
}
