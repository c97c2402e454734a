//! Discovery: agents found by `file_sd`, `http_sd` and `dns_sd` sources join the agents of the
//! config file. Each source refreshes on its own task; its targets are relabeled, read as agents
//! and merged with the static agents (first in config order wins a name), and the merged fleet
//! goes to the scheduler exactly as a reload's config does.

pub mod dns_sd;
pub mod file_sd;
pub mod http_sd;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use tokio::task::AbortHandle;

use crate::config::{
    resolve_agent, AgentFields, Config, ResolvedAgent, SourceKind, SourceSpec, Templates,
};
use crate::metrics::discovery::{DiscoveryMetrics, DropLabels, SourceLabels};
use crate::monitor::unix_seconds;
use crate::scheduler::{ReloadSummary, Scheduler};
use crate::shard::Shard;
use target::{Discovered, DropReason};

/// What one refresh of a source found, or why it failed.
pub type Refresh = Result<Vec<Discovered>, String>;

/// The static agents, the sources and what each last found; applies their union.
pub struct Discovery {
    scheduler: Arc<Scheduler>,
    metrics: DiscoveryMetrics,
    state: Mutex<State>,
    me: Weak<Discovery>,
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
    origins: HashMap<String, Arc<str>>,
}

struct Source {
    spec: Arc<SourceSpec>,
    generation: u64,
    task: Option<AbortHandle>,
    /// The last good refresh, read as agents, in discovery order.
    agents: Vec<Found>,
    /// Resolved agents by their fields: a refresh resolves only targets it has not seen.
    cache: HashMap<AgentFields, ResolvedAgent>,
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
                    source.cache.clear();
                    let found = std::mem::take(&mut source.agents);
                    let again = found.into_iter().filter_map(|found| {
                        let agent = to_agent(&base, &found.fields, &found.origin).ok()?;
                        source.cache.insert(found.fields.clone(), agent.clone());
                        Some(Found { agent, ..found })
                    });
                    source.agents = again.collect();
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
            agents: Vec::new(),
            cache: HashMap::new(),
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
        let labels = SourceLabels {
            source: id.to_owned(),
        };
        let discovered = match refresh {
            Ok(discovered) => discovered,
            Err(error) => {
                self.metrics.refresh_failures.get_or_create(&labels).inc();
                if source.failing != Some(true) {
                    tracing::warn!(source = id, error = %error, kept_targets = source.agents.len(), "discovery refresh failed; keeping the last good targets");
                }
                source.failing = Some(true);
                return;
            }
        };
        if source.failing == Some(true) {
            tracing::info!(source = id, "discovery refresh succeeded again");
        }
        source.failing = Some(false);
        self.metrics
            .targets
            .get_or_create(&labels)
            .set(discovered.len() as i64);
        self.metrics
            .last_success
            .get_or_create(&labels)
            .set(unix_seconds(SystemTime::now()));
        let spec = source.spec.clone();
        let mut cache = HashMap::with_capacity(discovered.len());
        let mut agents = Vec::with_capacity(discovered.len());
        for target in discovered {
            let outcome = read_target(&spec, &base, target, &mut source.cache, &mut cache);
            match outcome {
                Ok(agent) => agents.push(agent),
                Err((reason, error)) => {
                    if let Some(error) = error {
                        tracing::debug!(source = id, error = %error, "discovered target is no valid agent");
                    }
                    self.metrics
                        .dropped
                        .get_or_create(&DropLabels {
                            source: id.to_owned(),
                            reason: reason.as_str(),
                        })
                        .inc();
                }
            }
        }
        source.cache = cache;
        source.agents = agents;
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

    /// Static agents first, then each source's in order; a name already taken is dropped.
    fn compose(&self, state: &mut State) -> ReloadSummary {
        let Some(base) = state.base.clone() else {
            return ReloadSummary::default();
        };
        let total =
            state.static_agents.len() + state.sources.iter().map(|s| s.agents.len()).sum::<usize>();
        let mut agents: Vec<ResolvedAgent> = Vec::with_capacity(total);
        let mut taken: HashMap<&str, &str> = HashMap::with_capacity(total);
        let mut origins = HashMap::new();
        let mut duplicates = HashSet::new();
        for agent in &state.static_agents {
            taken.insert(agent.spec.name.as_str(), "static");
            agents.push(agent.clone());
        }
        for source in &state.sources {
            for Found {
                agent,
                origin: from,
                ..
            } in &source.agents
            {
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
        agents.retain(|a| shard.owns(&a.spec.name));
        let config = Config {
            agents,
            templates: base,
            discovery: Vec::new(),
        };
        self.scheduler.apply(&config)
    }
}

/// Relabels one target and resolves it, reusing the agent of an earlier refresh when its
/// fields did not change.
fn read_target(
    spec: &SourceSpec,
    base: &Templates,
    target: Discovered,
    previous: &mut HashMap<AgentFields, ResolvedAgent>,
    next: &mut HashMap<AgentFields, ResolvedAgent>,
) -> Result<Found, (DropReason, Option<String>)> {
    let labels =
        crate::relabel::process(target.labels, &spec.relabel).ok_or((DropReason::Relabel, None))?;
    let fields =
        target::fields_from_labels(&labels, spec.agent_type.as_deref(), spec.check.as_deref())
            .map_err(|r| (r, None))?;
    let origin: Arc<str> = format!("{} {}", spec.id, target.from).into();
    let agent = match previous
        .remove(&fields)
        .or_else(|| next.get(&fields).cloned())
    {
        Some(agent) => agent,
        None => to_agent(base, &fields, &origin).map_err(|e| (DropReason::Invalid, Some(e)))?,
    };
    next.insert(fields.clone(), agent.clone());
    Ok(Found {
        fields,
        agent,
        origin,
    })
}

/// Resolves one relabeled target as an agent of the file with these keys would be (its check
/// included); the error says why it is no valid agent.
fn to_agent(base: &Templates, fields: &AgentFields, origin: &str) -> Result<ResolvedAgent, String> {
    resolve_agent(fields, base, origin).map_err(|issues| {
        issues
            .iter()
            .map(|i| i.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// A target that became an agent.
struct Found {
    fields: AgentFields,
    agent: ResolvedAgent,
    origin: Arc<str>,
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
}
