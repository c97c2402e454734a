//! One refresh of a source, read as agents: every raw target is relabeled, read as an agent's
//! fields and resolved against the config's templates. What each raw target became is kept
//! until the next refresh, which then pays only for the targets that changed, and for a reload,
//! which reads them again through the source's new settings.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::target::{self, Discovered, DropReason};
use crate::config::{AgentFields, BatchResolver, ResolvedAgent, SourceSpec, Templates};
use crate::relabel;

/// A target that became an agent.
pub(super) struct Found {
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
    /// Every raw target of the refresh, its place in it and what it became.
    seen: HashMap<Discovered, (usize, Reading), Seeded>,
    /// How many raw targets the refresh had.
    pub targets: usize,
    /// How many were dropped, by reason (duplicate names are settled later, in `compose`).
    pub drops: Vec<(DropReason, u64)>,
    /// Names of the labels left out as reserved (`DropReason::ReservedLabel`), at most
    /// `SHOWN_RESERVED`, for the refresh's one log line.
    pub reserved: BTreeSet<String>,
    /// Why the first target dropped as `check_not_allowed` was: the refresh logs it once.
    pub refused: Option<Arc<str>>,
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
    /// others are relabeled and resolved. `log` sees every dropped target's reason and error.
    pub fn next(
        &mut self,
        spec: &SourceSpec,
        base: &Templates,
        discovered: Vec<Discovered>,
        mut log: impl FnMut(DropReason, &str),
    ) -> Readings {
        let mut next = Readings {
            agents: Vec::with_capacity(discovered.len()),
            seen: HashMap::with_capacity_and_hasher(discovered.len(), *self.seen.hasher()),
            targets: discovered.len(),
            drops: Vec::new(),
            reserved: BTreeSet::new(),
            refused: None,
        };
        let mut resolver = BatchResolver::new(base);
        // Targets of one file or URL share where they came from: one string for all of them.
        let mut origin: Option<(String, Arc<str>)> = None;
        for target in discovered {
            // One hash of the target for the new map; the last refresh's map is asked only
            // when it has anything (not on a first load).
            let place_in_refresh = next.seen.len();
            let reading = match next.seen.entry(target) {
                Entry::Occupied(same) => same.get().1.clone(),
                Entry::Vacant(place) => {
                    let target = place.key();
                    let known = if self.seen.is_empty() {
                        None
                    } else {
                        self.seen.remove(target).map(|(_, reading)| reading)
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
                        read_target(spec, base, &mut resolver, target, from)
                    });
                    place.insert((place_in_refresh, reading)).1.clone()
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
                        if *reason == DropReason::CheckNotAllowed && next.refused.is_none() {
                            next.refused = Some(error.clone());
                        }
                        log(*reason, error);
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

    /// The same raw targets read anew through `spec` and `base`: after a reload, which may have
    /// changed the source's relabel rules, `type:` or checks, or `defaults` and `checks` (a
    /// target dropped before may be valid now). A restarted source starts from this, so that
    /// its agents stay while its first refresh is pending or failing. Nothing is counted: the
    /// refresh that found the targets was.
    pub fn reread(
        &self,
        spec: &SourceSpec,
        base: &Templates,
        log: impl FnMut(DropReason, &str),
    ) -> Readings {
        let mut raw: Vec<(usize, &Discovered)> = self
            .seen
            .iter()
            .map(|(target, (at, _))| (*at, target))
            .collect();
        raw.sort_unstable_by_key(|(at, _)| *at);
        let raw = raw.into_iter().map(|(_, target)| target.clone()).collect();
        let mut fresh = Readings {
            seen: HashMap::with_hasher(*self.seen.hasher()),
            ..Readings::default()
        };
        let mut read = fresh.next(spec, base, raw, log);
        read.targets = self.targets;
        read
    }
}

/// Relabels one target and resolves it as an agent, if its source allows the check it asks for.
fn read_target(
    spec: &SourceSpec,
    base: &Templates,
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
    if let Some(check) = refused_check(spec, base, &fields) {
        let error = format!(
            "agent {:?}: check {check:?} is not allowed by source {} (fix: add it to the source's allowed_checks, or set the source's check)",
            fields.name, spec.id
        );
        return Err((DropReason::CheckNotAllowed, Some(error.into())));
    }
    let agent = to_agent(resolver, &fields, &origin)
        .map_err(|e| (DropReason::Invalid, Some(Arc::from(e))))?;
    Ok(Arc::new(Found {
        agent,
        origin,
        reserved: target::reserved_labels(labels).map(str::to_owned).collect(),
    }))
}

/// The check a target would use when its source does not allow it: its `__check__` (else the
/// source's `check:`), else the check named like its `agent_type`. A check that does not exist
/// is left to the resolution, which drops the target as invalid; a type that names no check
/// gives `defaults` only, chosen by the operator for every agent, so it is allowed.
fn refused_check<'a>(
    spec: &SourceSpec,
    base: &Templates,
    fields: &'a AgentFields,
) -> Option<&'a str> {
    let check = fields.check.as_deref().unwrap_or(&fields.agent_type);
    (base.has_check(check) && !spec.allows_check(check)).then_some(check)
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
