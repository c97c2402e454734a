//! Discovery: agents found by `file_sd`, `http_sd` and `dns_sd` sources join the agents of the
//! config file. Each source refreshes on its own task; its targets are relabeled, read as agents
//! and merged with the static agents (first in config order wins a name), and the merged fleet
//! goes to the scheduler exactly as a reload's config does.

mod bounds;
pub mod check;
pub mod dns_sd;
pub mod file_sd;
pub mod http_sd;
mod pairing;
mod read;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use tokio::task::AbortHandle;

use crate::config::{Config, ResolvedAgent, SourceKind, SourceSpec, Templates};
use crate::forward::Roster;
use crate::metrics::discovery::{DiscoveryMetrics, DropLabels, SourceLabels, SourceSeries};
use crate::monitor::unix_seconds;
use crate::scheduler::{ReloadSummary, Scheduler};
use crate::shard::Shard;
use pairing::Pairing;
use read::{Found, Readings, Seeded};
use target::{Discovered, DropReason};

/// What one refresh of a source found, or why it failed.
pub type Refresh = Result<Vec<Discovered>, String>;

/// The static agents, the sources and what each last found; applies their union.
pub struct Discovery {
    scheduler: Arc<Scheduler>,
    metrics: DiscoveryMetrics,
    state: Mutex<State>,
    me: Weak<Discovery>,
    /// The other shards' heartbeat agents, for checking reports to forward.
    roster: Arc<Roster>,
}

#[derive(Default)]
struct State {
    static_agents: Vec<ResolvedAgent>,
    /// `defaults` and `checks` of the config in force; `None` before the first one.
    base: Option<Arc<Templates>>,
    /// Only this shard's agents reach the scheduler.
    shard: Shard,
    sources: Vec<Source>,
    next_generation: u64,
    /// (source, name) pairs already counted and logged as duplicates.
    duplicates: HashSet<(String, String)>,
    /// Where each discovered agent came from, for the API.
    origins: HashMap<String, Arc<str>, Seeded>,
}

struct Source {
    spec: Arc<SourceSpec>,
    generation: u64,
    task: Option<AbortHandle>,
    /// The last good refresh, read as agents.
    read: Readings,
    /// The next refresh must be read whole, even when its source saw the same answer as last
    /// time: before the first one, and after a reload that may have changed the templates.
    reread: bool,
    /// None before the first refresh; logs go out when this changes.
    failing: Option<bool>,
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

const REASONS: [DropReason; 7] = [
    DropReason::Relabel,
    DropReason::MissingName,
    DropReason::MissingType,
    DropReason::Invalid,
    DropReason::DuplicateName,
    DropReason::ReservedLabel,
    DropReason::CheckNotAllowed,
];

/// A re-read target that is no valid agent: said at debug, as in a refresh.
fn log_dropped(source: &str) -> impl FnMut(DropReason, &str) + '_ {
    move |reason, error| {
        // Refused checks are said once per refresh, at warn (`Discovery::succeeded`).
        if reason != DropReason::CheckNotAllowed {
            tracing::debug!(source, error = %error, "discovered target is no valid agent");
        }
    }
}

impl Discovery {
    pub fn new(scheduler: Arc<Scheduler>, metrics: DiscoveryMetrics) -> Arc<Discovery> {
        Arc::new_cyclic(|me| Discovery {
            scheduler,
            metrics,
            state: Mutex::new(State::default()),
            me: me.clone(),
            roster: Arc::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a freshly loaded config: its static agents, and its sources. A source is known
    /// by its settings (`pairing.rs`): one whose task is unchanged keeps running, one whose task
    /// changed restarts; both keep their last good targets, read through their new settings, so
    /// that their unchanged agents keep their state. Must be called inside a Tokio runtime.
    pub fn apply_config(&self, config: &Config) -> ReloadSummary {
        let mut state = self.state();
        state.static_agents = config.agents.clone();
        let base = config.templates.clone();
        state.base = Some(base.clone());
        let old = std::mem::take(&mut state.sources);
        let pairings = {
            let specs: Vec<&SourceSpec> = old.iter().map(|s| &*s.spec).collect();
            pairing::pair(&specs, &config.discovery)
        };
        let reasons: Vec<&'static str> = REASONS.iter().map(|r| r.as_str()).collect();
        // The series of a source follow it to its new `source` label; those of a removed source
        // go. Taken all before any is restored: two sources may swap places.
        let mut moved: Vec<Option<SourceSeries>> = old.iter().map(|_| None).collect();
        for (i, source) in old.iter().enumerate() {
            let stays = pairings.iter().zip(&config.discovery).any(|(p, spec)| {
                matches!(p, Pairing::Keep(o) | Pairing::Seed(o) if *o == i)
                    && spec.id == source.spec.id
            });
            if !stays {
                moved[i] = Some(self.metrics.take(&source.spec.id, &reasons));
            }
        }
        let mut old: Vec<Option<Source>> = old.into_iter().map(Some).collect();
        for (spec, pairing) in config.discovery.iter().zip(pairings) {
            let new_spec = Arc::new(spec.clone());
            let (source, was) = match pairing {
                Pairing::Keep(i) => match old[i].take() {
                    Some(mut source) => {
                        // A rotated token or key pair of the HTTP SD client is taken into the
                        // running task's cells, as a static agent's is.
                        if let (
                            SourceKind::Http { http: old, .. },
                            SourceKind::Http { http: new, .. },
                        ) = (&source.spec.kind, &spec.kind)
                        {
                            if old.adopt_secrets(new) {
                                tracing::info!(source = %spec.id, "discovery source took its rotated credentials");
                            }
                        }
                        source.read = source.read.reread(spec, &base, log_dropped(&spec.id));
                        source.spec = new_spec;
                        source.reread = true;
                        (source, Some(i))
                    }
                    None => (self.start(new_spec, &mut state.next_generation), None),
                },
                Pairing::Seed(i) => {
                    let mut source = self.start(new_spec, &mut state.next_generation);
                    if let Some(was) = old[i].take() {
                        source.read = was.read.reread(spec, &base, log_dropped(&spec.id));
                        tracing::info!(source = %spec.id, was = %was.spec.id, kept_agents = source.read.agents.len(), "discovery source restarted with new settings; its last good targets are kept until it refreshes");
                    }
                    (source, Some(i))
                }
                Pairing::New => (self.start(new_spec, &mut state.next_generation), None),
            };
            if let Some(series) = was.and_then(|i| moved[i].take()) {
                self.metrics.restore(&spec.id, &series);
            }
            self.metrics.start(&spec.id, &reasons);
            state.sources.push(source);
        }
        drop(old);
        self.compose(&mut state)
    }

    /// Discovered agents, like static ones, reach the scheduler only when `shard` owns them.
    pub fn set_shard(&self, shard: Shard) {
        self.state().shard = shard;
    }

    /// The heartbeat agents of the other shards, kept current with the fleet.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster.clone()
    }

    /// Where agent `name` came from: `static`, or its source and file, URL or DNS name.
    pub fn origin(&self, name: &str) -> String {
        match self.state().origins.get(name) {
            Some(origin) => origin.to_string(),
            None => "static".to_owned(),
        }
    }

    /// The check agent `name` uses, if it uses one: that of the static agent of the name, else
    /// that of the first source's (the one `compose` keeps). A scan of the fleet, for the
    /// per-agent config endpoint, not for hot paths.
    pub fn check(&self, name: &str) -> Option<String> {
        let state = self.state();
        let found = state
            .static_agents
            .iter()
            .chain(
                state
                    .sources
                    .iter()
                    .flat_map(|s| s.read.agents.iter().map(|f| &f.agent)),
            )
            .find(|a| a.spec.name == name)?;
        found.check.clone()
    }

    /// The origins of `names`, in order, under one lock.
    pub fn origins<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<String> {
        let state = self.state();
        names
            .map(|name| match state.origins.get(name) {
                Some(origin) => origin.to_string(),
                None => "static".to_owned(),
            })
            .collect()
    }

    /// Starts a source's task; `generations` numbers the tasks, so that a replaced one's
    /// last refresh is told from its successor's.
    fn start(&self, spec: Arc<SourceSpec>, generations: &mut u64) -> Source {
        *generations += 1;
        let generation = *generations;
        let sink = Sink {
            discovery: self.me.clone(),
            generation,
        };
        let task = match &spec.kind {
            SourceKind::File { .. } => tokio::spawn(file_sd::run(spec.clone(), sink)),
            SourceKind::Http { .. } => tokio::spawn(http_sd::run(spec.clone(), sink)),
            SourceKind::Dns { .. } => tokio::spawn(dns_sd::run(spec.clone(), sink)),
        };
        Source {
            spec,
            generation,
            task: Some(task.abort_handle()),
            read: Readings::default(),
            reread: true,
            failing: None,
        }
    }

    /// Takes one refresh of a source; a failed one keeps the source's last good targets. With
    /// `partly_failed`, the targets (some of them the last good ones of a part that failed)
    /// apply and the refresh counts as failed.
    fn update(&self, generation: u64, refresh: Refresh, partly_failed: Option<String>) {
        let mut state = self.state();
        let Some(base) = state.base.clone() else {
            return;
        };
        let Some(source) = state
            .sources
            .iter_mut()
            .find(|s| s.generation == generation)
        else {
            return;
        };
        let spec = source.spec.clone();
        let id = spec.id.as_str();
        let discovered = match refresh {
            Ok(discovered) => discovered,
            Err(error) => {
                self.failed(source, &error);
                return;
            }
        };
        let read = source.read.next(&spec, &base, discovered, log_dropped(id));
        let same = read.same_agents(&source.read);
        source.read = read;
        source.reread = false;
        match &partly_failed {
            None => self.succeeded(source),
            Some(error) => {
                self.failed(source, error);
                self.counted(source);
            }
        }
        log_reserved(id, &source.read);
        if same {
            // The fleet it makes is the one running.
            return;
        }
        let summary = self.compose(&mut state);
        if !summary.is_noop() {
            tracing::info!(
                source = id,
                added = summary.added.len(),
                changed = summary.changed.len(),
                removed = summary.removed.len(),
                unchanged = summary.unchanged,
                "discovered agents applied"
            );
        }
    }

    /// Takes a refresh whose answer was the same as the source's last good one, unless that
    /// one must be read again (`Source::reread`): then answers false, and the source sends the
    /// refresh whole.
    fn update_unchanged(&self, generation: u64) -> bool {
        let mut state = self.state();
        let Some(source) = state
            .sources
            .iter_mut()
            .find(|s| s.generation == generation)
        else {
            // A source replaced by a reload: its task is being stopped.
            return true;
        };
        if source.reread {
            return false;
        }
        self.succeeded(source);
        log_reserved(source.spec.id.as_str(), &source.read);
        true
    }

    /// A failed refresh: counted, and logged when the source starts failing.
    fn failed(&self, source: &mut Source, error: &str) {
        let id = source.spec.id.as_str();
        let labels = SourceLabels {
            source: id.to_owned(),
        };
        self.metrics.refresh_failures.get_or_create(&labels).inc();
        if source.failing != Some(true) {
            tracing::warn!(source = id, error = %error, kept_targets = source.read.agents.len(), "discovery refresh failed; keeping the last good targets");
        }
        source.failing = Some(true);
    }

    /// A good refresh, read into `source.read`: its metrics, the log line when the source
    /// recovers, and one line for the targets refused a check.
    fn succeeded(&self, source: &mut Source) {
        let id = source.spec.id.as_str();
        if source.failing == Some(true) {
            tracing::info!(source = id, "discovery refresh succeeded again");
        }
        source.failing = Some(false);
        self.metrics
            .last_success
            .get_or_create(&SourceLabels {
                source: id.to_owned(),
            })
            .set(unix_seconds(SystemTime::now()));
        self.counted(source);
    }

    /// The targets and drops of a refresh whose targets were taken, and one line for the
    /// targets refused a check.
    fn counted(&self, source: &Source) {
        let id = source.spec.id.as_str();
        self.metrics
            .targets
            .get_or_create(&SourceLabels {
                source: id.to_owned(),
            })
            .set(source.read.targets as i64);
        for (reason, count) in &source.read.drops {
            self.metrics
                .dropped
                .get_or_create(&DropLabels {
                    source: id.to_owned(),
                    reason: reason.as_str(),
                })
                .inc_by(*count);
            if *reason == DropReason::CheckNotAllowed {
                let example = source.read.refused.as_deref().unwrap_or_default();
                tracing::warn!(source = id, dropped = count, example, "targets asked for checks their source does not allow and were dropped: credentials follow the config, never the targets");
            }
        }
    }

    /// Static agents first, then each source's in order; a name already taken is dropped.
    fn compose(&self, state: &mut State) -> ReloadSummary {
        let Some(base) = state.base.clone() else {
            return ReloadSummary::default();
        };
        let total = state.static_agents.len()
            + state
                .sources
                .iter()
                .map(|s| s.read.agents.len())
                .sum::<usize>();
        let mut agents: Vec<ResolvedAgent> = Vec::with_capacity(total);
        // Two maps of the whole fleet: a fast hash keeps them cheap at 50,000 agents.
        let mut taken: HashMap<&str, &str, Seeded> =
            HashMap::with_capacity_and_hasher(total, Seeded::default());
        let mut origins = HashMap::with_capacity_and_hasher(total, Seeded::default());
        let mut duplicates = HashSet::new();
        for agent in &state.static_agents {
            taken.insert(agent.spec.name.as_str(), "static");
            agents.push(agent.clone());
        }
        for source in &state.sources {
            for found in &source.read.agents {
                let Found {
                    agent,
                    origin: from,
                    ..
                } = &**found;
                let name = agent.spec.name.as_str();
                if let Some(first) = taken.get(name) {
                    let key = (source.spec.id.clone(), name.to_owned());
                    if !state.duplicates.contains(&key) {
                        tracing::warn!(agent = name, kept = *first, dropped = &**from, "two targets resolve to the same agent name; the first in config order is kept");
                        self.metrics
                            .dropped
                            .get_or_create(&DropLabels {
                                source: source.spec.id.clone(),
                                reason: DropReason::DuplicateName.as_str(),
                            })
                            .inc();
                    }
                    duplicates.insert(key);
                    continue;
                }
                taken.insert(name, from);
                origins.insert(name.to_owned(), from.clone());
                agents.push(agent.clone());
            }
        }
        drop(taken);
        state.duplicates = duplicates;
        state.origins = origins;
        // After the duplicates are settled on the whole fleet, so that every shard keeps the
        // same target for a name; a name's shard is the same whichever target carries it.
        let shard = state.shard;
        if shard.count() > 1 {
            self.roster.set(&agents, shard);
        }
        agents.retain(|a| shard.owns(&a.spec.name));
        let config = Config {
            agents,
            templates: base,
            discovery: Vec::new(),
        };
        self.scheduler.apply(&config)
    }
}

/// One line per refresh (not per target) when targets lost labels of reserved names.
fn log_reserved(source: &str, read: &Readings) {
    let cut = read
        .drops
        .iter()
        .find(|(r, _)| *r == DropReason::ReservedLabel)
        .map_or(0, |(_, n)| *n);
    if cut > 0 {
        let names: Vec<&str> = read.reserved.iter().map(String::as_str).collect();
        tracing::warn!(
            source,
            targets = cut,
            labels = %names.join(","),
            "discovered labels named like labels the exporter sets were dropped from their targets; rename them in the source or with relabel_configs"
        );
    }
}

/// How a source task hands its refreshes back.
pub struct Sink {
    discovery: Weak<Discovery>,
    /// Which task this is: a reload may move its source to another id.
    generation: u64,
}

impl Sink {
    /// False once the exporter is gone and the task should end.
    pub fn send(&self, refresh: Refresh) -> bool {
        match self.discovery.upgrade() {
            Some(discovery) => {
                discovery.update(self.generation, refresh, None);
                true
            }
            None => false,
        }
    }

    /// Sends targets of which some are the last good ones of a part that failed with `error`
    /// (a file of a file_sd source that does not parse): they apply, and the refresh counts
    /// as failed. False once the exporter is gone.
    pub fn send_partial(&self, discovered: Vec<Discovered>, error: String) -> bool {
        match self.discovery.upgrade() {
            Some(discovery) => {
                discovery.update(self.generation, Ok(discovered), Some(error));
                true
            }
            None => false,
        }
    }

    /// Tells that the source's answer is the same as its last good one, which then need not
    /// be parsed: `Some(true)` when that was taken, `Some(false)` when the refresh must be
    /// sent whole all the same, `None` once the exporter is gone.
    pub fn unchanged(&self) -> Option<bool> {
        let discovery = self.discovery.upgrade()?;
        Some(discovery.update_unchanged(self.generation))
    }
}
