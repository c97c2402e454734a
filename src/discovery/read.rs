//! One refresh of a source, read as agents: every raw target is relabeled, read as an agent's
//! fields and resolved against the config's templates. What each raw target became is kept
//! until the next refresh, which then pays only for the targets that changed.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::target::{self, Discovered, DropReason};
use crate::config::{AgentFields, BatchResolver, ResolvedAgent, SourceSpec, Templates};
use crate::relabel;

/// A target that became an agent.
pub(super) struct Found {
    pub fields: AgentFields,
    pub agent: ResolvedAgent,
    pub origin: Arc<str>,
    /// Labels of the target left out of the agent's because the exporter sets them itself.
    pub reserved: Vec<String>,
}

/// What one raw target became: an agent, or why it was dropped (and the error, for the log).
pub(super) type Reading = Result<Arc<Found>, (DropReason, Option<Arc<str>>)>;

/// Raw targets are hashed twice a refresh (looked up in the last one, kept for the next): a
/// fast seeded hash keeps that a small part of an unchanged refresh of a large fleet.
pub(super) type Seeded = foldhash::fast::RandomState;

/// A source's last good refresh, read.
#[derive(Default)]
pub(super) struct Readings {
    /// The agents, in discovery order.
    pub agents: Vec<Arc<Found>>,
    /// Every raw target of the refresh and what it became.
    seen: HashMap<Discovered, Reading, Seeded>,
    /// How many raw targets the refresh had.
    pub targets: usize,
    /// How many were dropped, by reason (duplicate names are settled later, in `compose`).
    pub drops: Vec<(DropReason, u64)>,
    /// Names of the labels left out as reserved (`DropReason::ReservedLabel`), at most
    /// `SHOWN_RESERVED`, for the refresh's one log line.
    pub reserved: BTreeSet<String>,
}

/// Reserved label names a refresh's log line shows at most: the names come from the source.
const SHOWN_RESERVED: usize = 8;

/// Counts one more target dropped (or cut) for `reason`.
fn count(drops: &mut Vec<(DropReason, u64)>, reason: DropReason) {
    match drops.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => drops.push((reason, 1)),
    }
}

impl Readings {
    /// Reads `discovered`: a raw target equal to one of this refresh takes what that one became,
    /// others are relabeled and resolved. `log` sees every dropped target's error.
    pub fn next(
        &mut self,
        spec: &SourceSpec,
        base: &Templates,
        discovered: Vec<Discovered>,
        mut log: impl FnMut(&str),
    ) -> Readings {
        let mut next = Readings {
            agents: Vec::with_capacity(discovered.len()),
            seen: HashMap::with_capacity_and_hasher(discovered.len(), *self.seen.hasher()),
            targets: discovered.len(),
            drops: Vec::new(),
            reserved: BTreeSet::new(),
        };
        let mut resolver = BatchResolver::new(base);
        // Targets of one file or URL share where they came from: one string for all of them.
        let mut origin: Option<(String, Arc<str>)> = None;
        for target in discovered {
            // One hash of the target for the new map; the last refresh's map is asked only
            // when it has anything (not on a first load).
            let reading = match next.seen.entry(target) {
                Entry::Occupied(same) => same.get().clone(),
                Entry::Vacant(place) => {
                    let target = place.key();
                    let known = if self.seen.is_empty() {
                        None
                    } else {
                        self.seen.remove(target)
                    };
                    let reading = known.unwrap_or_else(|| {
                        let from = match &origin {
                            Some((from, shown)) if *from == target.from => shown.clone(),
                            _ => {
                                let shown: Arc<str> = format!("{} {}", spec.id, target.from).into();
                                origin = Some((target.from.clone(), shown.clone()));
                                shown
                            }
                        };
                        read_target(spec, &mut resolver, target, from)
                    });
                    place.insert(reading).clone()
                }
            };
            match &reading {
                Ok(found) => {
                    if !found.reserved.is_empty() {
                        count(&mut next.drops, DropReason::ReservedLabel);
                        for name in &found.reserved {
                            if next.reserved.len() < SHOWN_RESERVED {
                                next.reserved.insert(name.clone());
                            }
                        }
                    }
                    next.agents.push(found.clone());
                }
                Err((reason, error)) => {
                    if let Some(error) = error {
                        log(error);
                    }
                    count(&mut next.drops, *reason);
                }
            }
        }
        next
    }

    /// Whether `other` has the very same agents, in the same order: then the fleet it makes
    /// is the same too.
    pub fn same_agents(&self, other: &Readings) -> bool {
        self.agents.len() == other.agents.len()
            && self
                .agents
                .iter()
                .zip(&other.agents)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Resolves the agents again against `base` (a reload may have changed `defaults` or
    /// `checks`), and forgets the raw targets, so that the next refresh reads every one anew:
    /// a target dropped as invalid may be valid now.
    pub fn resolve_again(&mut self, base: &Templates) {
        let mut resolver = BatchResolver::new(base);
        self.seen = HashMap::with_hasher(*self.seen.hasher());
        self.agents = std::mem::take(&mut self.agents)
            .into_iter()
            .filter_map(|found| {
                let agent = to_agent(&mut resolver, &found.fields, &found.origin).ok()?;
                Some(Arc::new(Found {
                    fields: found.fields.clone(),
                    agent,
                    origin: found.origin.clone(),
                    reserved: found.reserved.clone(),
                }))
            })
            .collect();
    }
}

/// Relabels one target and resolves it as an agent.
fn read_target(
    spec: &SourceSpec,
    resolver: &mut BatchResolver,
    target: &Discovered,
    origin: Arc<str>,
) -> Reading {
    let relabeled;
    let labels = if spec.relabel.is_empty() {
        &target.labels
    } else {
        relabeled = relabel::process(target.labels.clone(), &spec.relabel)
            .ok_or((DropReason::Relabel, None))?;
        &relabeled
    };
    let fields =
        target::fields_from_labels(labels, spec.agent_type.as_deref(), spec.check.as_deref())
            .map_err(|r| (r, None))?;
    let agent = to_agent(resolver, &fields, &origin)
        .map_err(|e| (DropReason::Invalid, Some(Arc::from(e))))?;
    Ok(Arc::new(Found {
        fields,
        agent,
        origin,
        reserved: target::reserved_labels(labels).map(str::to_owned).collect(),
    }))
}

/// Resolves one relabeled target as an agent of the file with these keys would be (its check
/// included); the error says why it is no valid agent.
fn to_agent(
    resolver: &mut BatchResolver,
    fields: &AgentFields,
    origin: &str,
) -> Result<ResolvedAgent, String> {
    resolver.resolve(fields, origin).map_err(|issues| {
        issues
            .iter()
            .map(|i| i.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    })
}
