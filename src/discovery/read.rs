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
    /// others are relabeled and resolved, on every core when there are many (`read_fresh`).
    /// `log` sees every dropped target's reason and error.
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
        // Each target's place among the distinct targets of this refresh, in discovery order.
        let mut places = Vec::with_capacity(discovered.len());
        // The distinct targets that neither this refresh nor the last one has read yet.
        let mut fresh = Vec::new();
        for target in discovered {
            // One hash of the target for the new map; the last refresh's map is asked only
            // when it has anything (not on a first load).
            let place = next.seen.len();
            match next.seen.entry(target) {
                Entry::Occupied(same) => places.push(same.get().0),
                Entry::Vacant(slot) => {
                    let known = if self.seen.is_empty() {
                        None
                    } else {
                        self.seen.remove(slot.key()).map(|(_, reading)| reading)
                    };
                    let reading = known.unwrap_or_else(|| {
                        fresh.push(place);
                        // Replaced below by what the target becomes.
                        Err((DropReason::Invalid, None))
                    });
                    slot.insert((place, reading));
                    places.push(place);
                }
            }
        }
        let mut by_place: Vec<Option<Reading>> = vec![None; next.seen.len()];
        {
            let mut targets: Vec<(usize, &Discovered)> = Vec::with_capacity(fresh.len());
            for (target, (place, reading)) in &next.seen {
                match fresh.binary_search(place) {
                    Ok(_) => targets.push((*place, target)),
                    Err(_) => by_place[*place] = Some(reading.clone()),
                }
            }
            targets.sort_unstable_by_key(|(place, _)| *place);
            let read = read_fresh(spec, base, &targets);
            for ((place, _), reading) in targets.iter().zip(read) {
                by_place[*place] = Some(reading);
            }
        }
        if !fresh.is_empty() {
            for (place, reading) in next.seen.values_mut() {
                if fresh.binary_search(place).is_ok() {
                    if let Some(read) = &by_place[*place] {
                        *reading = read.clone();
                    }
                }
            }
        }
        for place in places {
            let Some(reading) = &by_place[place] else {
                continue;
            };
            match reading {
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

/// Below this many targets to read, one thread reads them all: starting a thread and waking a
/// second core costs more than it saves.
const PARALLEL_FROM: usize = 4096;

/// What each of `targets` becomes, in their order. Reading a target depends on nothing but the
/// target and the settings, so a large refresh (a first load) is split into one contiguous run
/// per core, each with a resolver of its own; a run resolves the first agent of each kind in
/// full, as one resolver over all of them would.
fn read_fresh(
    spec: &SourceSpec,
    base: &Templates,
    targets: &[(usize, &Discovered)],
) -> Vec<Reading> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = if targets.len() < PARALLEL_FROM {
        1
    } else {
        cores.clamp(1, MAX_THREADS)
    };
    if runs == 1 {
        return read_run(spec, base, targets);
    }
    let size = targets.len().div_ceil(runs);
    let mut chunks = targets.chunks(size);
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks
            .map(|chunk| {
                std::thread::Builder::new()
                    .name("discovery-read".into())
                    .spawn_scoped(scope, move || read_run(spec, base, chunk))
            })
            .collect();
        let mut out = read_run(spec, base, first);
        for (other, chunk) in others.into_iter().zip(targets.chunks(size).skip(1)) {
            // A thread that could not start, or panicked, leaves its run to this one.
            match other.map(|handle| handle.join()) {
                Ok(Ok(read)) => out.extend(read),
                _ => out.extend(read_run(spec, base, chunk)),
            }
        }
        out
    })
}

/// Threads one large refresh is read on, at most.
const MAX_THREADS: usize = 4;

/// Reads a run of targets in order, with one resolver.
fn read_run(spec: &SourceSpec, base: &Templates, targets: &[(usize, &Discovered)]) -> Vec<Reading> {
    let mut resolver = BatchResolver::new(base);
    // Targets of one file or URL share where they came from: one string for all of them.
    let mut origin: Option<(&str, Arc<str>)> = None;
    targets
        .iter()
        .map(|(_, target)| {
            let from = match &origin {
                Some((from, shown)) if **from == *target.from => shown.clone(),
                _ => {
                    let shown: Arc<str> = format!("{} {}", spec.id, target.from).into();
                    origin = Some((&*target.from, shown.clone()));
                    shown
                }
            };
            read_target(spec, base, &mut resolver, target, from)
        })
        .collect()
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
        &*target.labels
    } else {
        relabeled = relabel::process((*target.labels).clone(), &spec.relabel)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::Labels;
    use std::path::Path;

    const CONFIG: &str = r#"
checks:
  fast: {interval: 1s, timeout: 500ms, labels: {tier: fast}}
  secret: {interval: 2s, timeout: 1s}
discovery:
  - file_sd: {files: [t.json]}
    type: worker
    allowed_checks: [fast]
    relabel_configs:
      - {source_labels: [agent], regex: "skip-.*", action: drop}
      - {source_labels: [zone], target_label: region}
"#;

    /// Target `i` of a refresh; every outcome comes up in turn: kinds by type, check and
    /// scheme, relabel drops, missing names, refused checks, invalid URLs, reserved labels, and
    /// raw targets equal to the one before.
    fn target(i: usize) -> Discovered {
        if i % 13 == 11 {
            return target(i - 1);
        }
        let mut labels = Labels::new();
        match i % 13 {
            0 => drop(labels.insert("agent".into(), "skip-me".into())),
            1 => {}
            _ => drop(labels.insert("agent".into(), format!("w{i}"))),
        }
        labels.insert("zone".into(), format!("z{}", i % 5));
        let address = match i % 13 {
            3 => "bad host:1".to_owned(),
            4 => format!("tcp://10.0.{}.{}:7", i / 250 % 250, i % 250),
            _ => format!("10.0.{}.{}:{}", i / 250 % 250, i % 250, 1000 + i % 7),
        };
        labels.insert("__address__".into(), address);
        match i % 13 {
            5 => drop(labels.insert("__check__".into(), "fast".into())),
            6 => drop(labels.insert("__check__".into(), "secret".into())),
            7 => drop(labels.insert("__scheme__".into(), "https".into())),
            8 => drop(labels.insert("status".into(), "reserved".into())),
            9 => drop(labels.insert("agent_type".into(), "planner".into())),
            _ => {}
        }
        Discovered {
            labels: Arc::new(labels),
            from: "file=t.json".into(),
        }
    }

    #[test]
    fn a_large_refresh_read_on_several_threads_equals_one_read_in_order() {
        let config = crate::config::parse(CONFIG, "c.yaml", Path::new(".")).expect("config");
        let spec = &config.discovery[0];
        let base = &config.templates;
        let raw: Vec<Discovered> = (0..3 * PARALLEL_FROM).map(target).collect();
        let mut logged = Vec::new();
        let read = Readings::default().next(spec, base, raw.clone(), |reason, error| {
            logged.push((reason, error.to_owned()))
        });

        // The same targets read one after another on this thread, as before.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<(usize, &Discovered)> =
            raw.iter().filter(|t| seen.insert(*t)).enumerate().collect();
        let one = read_run(spec, base, &distinct);
        let by_target: HashMap<&Discovered, &Reading> =
            distinct.iter().map(|(_, t)| *t).zip(&one).collect();
        let mut agents = Vec::new();
        let mut expected_log = Vec::new();
        for target in &raw {
            match by_target[target] {
                Ok(found) => agents.push(found.clone()),
                Err((reason, Some(error))) => expected_log.push((*reason, error.to_string())),
                Err(_) => {}
            }
        }
        let specs = |agents: &[Arc<Found>]| -> Vec<_> {
            agents
                .iter()
                .map(|f| {
                    (
                        f.agent.spec.clone(),
                        f.agent.check.clone(),
                        f.origin.clone(),
                        f.reserved.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(specs(&read.agents), specs(&agents));
        assert_eq!(logged, expected_log);
        assert_eq!(read.targets, raw.len());
        for reason in [
            DropReason::Relabel,
            DropReason::MissingName,
            DropReason::CheckNotAllowed,
            DropReason::Invalid,
            DropReason::ReservedLabel,
        ] {
            assert!(
                read.drops.iter().any(|(r, n)| *r == reason && *n > 0),
                "{reason:?} in {:?}",
                read.drops
            );
        }

        // A second refresh of the same targets reads none again: every agent is the same one.
        let mut read = read;
        let again = read.next(spec, base, raw, |_, _| {});
        assert!(again.same_agents(&read));
    }
}
