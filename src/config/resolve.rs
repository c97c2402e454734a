//! Turns the file as written (`raw.rs`) into validated `AgentSpec`s: each agent's own keys over
//! its check over `defaults` (`layer.rs`, `checks.rs`), then the whole agent checked once more
//! for what spans keys (timeout below interval, sections its URL can use). Every problem is
//! collected with its place, so a user sees all of them at once. The sections themselves are
//! resolved in files of their own: `http.rs`, `expect.rs`, `target.rs`, `files.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::checks::Templates;
use super::error::ConfigIssue;
use super::expect::json_matches;
use super::layer::Layer;
use super::mcp::section_misplaced;
use super::raw::RawConfig;
use super::spec::{AgentSpec, DegradedSpec, ExpectSpec, Target};

/// Defaults that apply when no layer says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// An agent as loaded: its spec and the check it uses.
#[derive(Debug, Clone)]
pub struct ResolvedAgent {
    pub spec: Arc<AgentSpec>,
    /// The check the agent uses, `None` when it has only `defaults`.
    pub check: Option<String>,
    /// Unique to this resolution: tells a replaced agent from the one it replaced where a cheap
    /// number is wanted (cache keys). Whether two agents probe alike is `spec == spec`.
    pub revision: u64,
}

/// A number no resolution had before: `ResolvedAgent::revision`.
pub(super) fn next_revision() -> u64 {
    static REVISION: AtomicU64 = AtomicU64::new(0);
    REVISION.fetch_add(1, Ordering::Relaxed)
}

/// Who an agent is: the keys that are not settings, with their places.
pub(super) struct Head {
    /// The agent's entry, where a missing key is reported.
    pub at: Location,
    pub name: Option<Spanned<String>>,
    pub agent_type: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub check: Option<Spanned<String>>,
}

pub(super) struct Resolver {
    file: String,
    base_dir: PathBuf,
    issues: Vec<ConfigIssue>,
}

impl Resolver {
    pub(super) fn new(file: String, base_dir: PathBuf) -> Self {
        Resolver {
            file,
            base_dir,
            issues: Vec::new(),
        }
    }

    pub(super) fn file(&self) -> &str {
        &self.file
    }

    pub(super) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub(super) fn into_issues(self) -> Vec<ConfigIssue> {
        self.issues
    }

    pub(super) fn issue(
        &mut self,
        at: Location,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.issues
            .push(ConfigIssue::at(&self.file, at, message, fix));
    }

    pub(super) fn resolve(&mut self, raw: RawConfig) -> (Templates, Vec<ResolvedAgent>) {
        let templates = self.templates(raw.defaults, raw.checks);
        let mut seen: HashMap<String, Location> = HashMap::new();
        let mut agents = Vec::with_capacity(raw.agents.len());
        for (index, agent) in raw.agents.into_iter().enumerate() {
            let at = agent.referenced;
            let (head, own) = agent.value.split();
            let what = match &head.name {
                Some(name) => format!("agent {:?}", name.value),
                None => format!("agent #{}", index + 1),
            };
            if let Some(name) = &head.name {
                if let Some(first) = seen.get(&name.value) {
                    let first = *first;
                    self.issue(
                        name.referenced,
                        format!(
                            "duplicate agent name {:?}, first used at line {}",
                            name.value,
                            first.line()
                        ),
                        "give every agent a unique name",
                    );
                } else {
                    seen.insert(name.value.clone(), name.referenced);
                }
            }
            let own = self.layer(own, &what);
            let head = Head {
                at,
                name: head.name,
                agent_type: head.agent_type,
                url: head.url,
                check: head.check,
            };
            if let Some(resolved) = self.agent(head, own, &templates, &what) {
                agents.push(resolved);
            }
        }
        (templates, agents)
    }

    /// One agent: `own` over its check (or the defaults), checked as a whole.
    pub(super) fn agent(
        &mut self,
        head: Head,
        own: Layer,
        templates: &Templates,
        what: &str,
    ) -> Option<ResolvedAgent> {
        let before = self.issues.len();
        let [name, agent_type] = [
            ("name", &head.name, "name: planner"),
            ("type", &head.agent_type, "type: orchestrator"),
        ]
        .map(|(key, value, example)| {
            self.required_text(value.as_ref(), head.at, what, key, example)
        });
        let check = head
            .check
            .as_ref()
            .map(|c| (c.value.as_str(), c.referenced));
        let chosen = templates.choose(self, check, agent_type.as_deref(), what)?;
        let check = chosen.name;
        // A timeout that does not fit is reported at the agent's own key when it has one: that
        // is where the two met.
        let own_at = own.timeout.as_ref().or(own.interval.as_ref()).map(|p| p.at);
        let mut merged = own.over(chosen.layer);
        let timing_at = own_at
            .or_else(|| {
                merged
                    .timeout
                    .as_ref()
                    .or(merged.interval.as_ref())
                    .map(|p| p.at)
            })
            .unwrap_or(head.at);
        let (target, url_auth) = self.url_or_heartbeat(&head, &mut merged, what)?;
        let url_at = head.url.as_ref().map_or(head.at, |u| u.referenced);
        let spec = self.assemble(
            merged,
            target,
            url_auth.map(|a| (a, url_at)),
            what,
            timing_at,
        );
        if self.issues.len() > before {
            return None;
        }
        let mut spec = spec?;
        spec.name = name?;
        spec.agent_type = agent_type?;
        Some(ResolvedAgent {
            spec: Arc::new(spec),
            check,
            revision: next_revision(),
        })
    }

    /// The spec from the merged layers and the target; name and type are filled in by the
    /// caller. A timeout that does not fit the interval is reported at `at` (the agent's
    /// own key), else where a check or the defaults set it.
    fn assemble(
        &mut self,
        mut merged: Layer,
        target: Target,
        url_auth: Option<(super::spec::Auth, Location)>,
        what: &str,
        at: Location,
    ) -> Option<AgentSpec> {
        let interval = merged
            .interval
            .as_ref()
            .map_or(DEFAULT_INTERVAL, |i| i.value);
        let timeout = match &merged.timeout {
            Some(t) => t.value,
            // An agent that only shortens its interval keeps a sensible timeout rather than
            // tripping over the default one.
            None if DEFAULT_TIMEOUT >= interval => interval.mul_f64(0.8),
            None => DEFAULT_TIMEOUT,
        };
        // A heartbeat agent's interval is its period and its timeout its grace (the gauges
        // show them); a grace as long as the period is fine.
        let heartbeat = target.heartbeat().map(|hb| (hb.period, hb.grace));
        let (interval, timeout) = heartbeat.unwrap_or((interval, timeout));
        if heartbeat.is_none() && timeout >= interval {
            self.issue(
                at,
                format!(
                    "{what}: timeout {} is not shorter than interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
                "set timeout below interval, so that a probe ends before the next one is due",
            );
        }
        let (target, http_layer) = self.protocol_target(target, &mut merged, what)?;
        for (section, place) in &merged.sections {
            if let Some((problem, fix)) = section_misplaced(section, &target) {
                self.issue(*place, format!("{what}: {problem}"), fix);
            }
        }
        let is_https = match &target {
            Target::Http(u) => u.scheme() == "https",
            Target::Mcp(m) => m.url.scheme() == "https",
            Target::A2a(a) => a.url.scheme() == "https",
            Target::Grpc(g) => g.secure,
            Target::Tcp { .. } | Target::Heartbeat(_) => false,
        };
        let canary = self.canary_spec(std::mem::take(&mut merged.canary), &target, what);
        let http = self.http_spec(http_layer, url_auth, is_https, what)?;
        Some(AgentSpec {
            name: String::new(),
            agent_type: String::new(),
            target,
            interval,
            timeout,
            failure_threshold: merged.failure_threshold.unwrap_or(1),
            success_threshold: merged.success_threshold.unwrap_or(1),
            labels: merged.labels.into_iter().collect(),
            http,
            expect: ExpectSpec {
                status: merged.expect.status.unwrap_or_default(),
                body_contains: merged.expect.body_contains,
                body_regex: merged.expect.body_regex,
                json: json_matches(merged.expect.json),
            },
            degraded: DegradedSpec {
                latency_above: merged.degraded.latency_above,
                json: json_matches(merged.degraded.json),
            },
            canary,
        })
    }
}
