//! Discovery: agents found by `file_sd`, `http_sd` and `dns_sd` sources join the agents of the
//! config file. Each source refreshes on its own task; its targets are relabeled, read as agents
//! and merged with the static agents (first in config order wins a name), and the merged fleet
//! goes to the scheduler exactly as a reload's config does.

pub mod check;
pub mod dns_sd;
pub mod file_sd;
pub mod http_sd;
mod read;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use tokio::task::AbortHandle;

use crate::config::{Config, ResolvedAgent, SourceKind, SourceSpec, Templates};
use crate::forward::Roster;
use crate::metrics::discovery::{DiscoveryMetrics, DropLabels, SourceLabels};
use crate::monitor::unix_seconds;
use crate::scheduler::{ReloadSummary, Scheduler};
use crate::shard::Shard;
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

const REASONS: [DropReason; 5] = [
    DropReason::Relabel,
    DropReason::MissingName,
    DropReason::MissingType,
    DropReason::Invalid,
    DropReason::DuplicateName,
];

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

    /// Applies a freshly loaded config: its static agents, and its sources (a source whose
    /// settings did not change keeps running and keeps its targets). Must be called inside a
    /// Tokio runtime.
    pub fn apply_config(&self, config: &Config) -> ReloadSummary {
        let mut state = self.state();
        state.static_agents = config.agents.clone();
        let base = config.templates.clone();
        state.base = Some(base.clone());
        let mut old: HashMap<String, Source> = std::mem::take(&mut state.sources)
            .into_iter()
            .map(|s| (s.spec.id.clone(), s))
            .collect();
        for spec in &config.discovery {
            let kept = old
                .remove(&spec.id)
                .filter(|s| s.spec.fingerprint == spec.fingerprint);
            let source = match kept {
                Some(mut source) => {
                    // Same settings; a rotated token or key pair of the HTTP SD client is taken
                    // into the running source's cells, as a static agent's is.
                    if let (
                        SourceKind::Http { http: old, .. },
                        SourceKind::Http { http: new, .. },
                    ) = (&source.spec.kind, &spec.kind)
                    {
                        if old.adopt_secrets(new) {
                            tracing::info!(source = %spec.id, "discovery source took its rotated credentials");
                        }
                    }
                    // `defaults` and `checks` may have changed: every target resolves again.
                    source.read.resolve_again(&base);
                    source.reread = true;
                    source
                }
                None => {
                    state.next_generation += 1;
                    self.start(Arc::new(spec.clone()), state.next_generation)
                }
            };
            state.sources.push(source);
        }
        let reasons: Vec<&'static str> = REASONS.iter().map(|r| r.as_str()).collect();
        for gone in old.keys() {
            self.metrics.forget(gone, &reasons);
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

    fn start(&self, spec: Arc<SourceSpec>, generation: u64) -> Source {
        let sink = Sink {
            discovery: self.me.clone(),
            id: spec.id.clone(),
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

    /// Takes one refresh of a source; a failed one keeps the source's last good targets.
    fn update(&self, id: &str, generation: u64, refresh: Refresh) {
        let mut state = self.state();
        let Some(base) = state.base.clone() else {
            return;
        };
        let Some(source) = state
            .sources
            .iter_mut()
            .find(|s| s.spec.id == id && s.generation == generation)
        else {
            return;
        };
        let discovered = match refresh {
            Ok(discovered) => discovered,
            Err(error) => {
                let labels = SourceLabels {
                    source: id.to_owned(),
                };
                self.metrics.refresh_failures.get_or_create(&labels).inc();
                if source.failing != Some(true) {
                    tracing::warn!(source = id, error = %error, kept_targets = source.read.agents.len(), "discovery refresh failed; keeping the last good targets");
                }
                source.failing = Some(true);
                return;
            }
        };
        let spec = source.spec.clone();
        let read = source.read.next(&spec, &base, discovered, |error| {
            tracing::debug!(source = id, error = %error, "discovered target is no valid agent");
        });
        self.succeeded(source, read.targets, &read.drops);
        let same = read.same_agents(&source.read);
        source.read = read;
        source.reread = false;
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
    fn update_unchanged(&self, id: &str, generation: u64) -> bool {
        let mut state = self.state();
        let Some(source) = state
            .sources
            .iter_mut()
            .find(|s| s.spec.id == id && s.generation == generation)
        else {
            // A source replaced by a reload: its task is being stopped.
            return true;
        };
        if source.reread {
            return false;
        }
        let (targets, drops) = (source.read.targets, source.read.drops.clone());
        self.succeeded(source, targets, &drops);
        true
    }

    /// A good refresh of `targets` raw targets, of which `drops` were dropped: its metrics, and
    /// the log line when the source recovers.
    fn succeeded(&self, source: &mut Source, targets: usize, drops: &[(DropReason, u64)]) {
        let id = source.spec.id.as_str();
        if source.failing == Some(true) {
            tracing::info!(source = id, "discovery refresh succeeded again");
        }
        source.failing = Some(false);
        let labels = SourceLabels {
            source: id.to_owned(),
        };
        self.metrics
            .targets
            .get_or_create(&labels)
            .set(targets as i64);
        self.metrics
            .last_success
            .get_or_create(&labels)
            .set(unix_seconds(SystemTime::now()));
        for (reason, count) in drops {
            self.metrics
                .dropped
                .get_or_create(&DropLabels {
                    source: id.to_owned(),
                    reason: reason.as_str(),
                })
                .inc_by(*count);
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

/// How a source task hands its refreshes back.
pub struct Sink {
    discovery: Weak<Discovery>,
    id: String,
    generation: u64,
}

impl Sink {
    /// False once the exporter is gone and the task should end.
    pub fn send(&self, refresh: Refresh) -> bool {
        match self.discovery.upgrade() {
            Some(discovery) => {
                discovery.update(&self.id, self.generation, refresh);
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
        Some(discovery.update_unchanged(&self.id, self.generation))
    }
}
