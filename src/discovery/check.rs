//! `--config.check` with discovery: every source of the config is asked once and its targets
//! are read as the running exporter reads them, so the check lists discovered agents with their
//! origin, the targets dropped and why, or why a source failed.

use std::collections::HashSet;
use std::sync::Arc;

use super::read::Readings;
use super::target::DropReason;
use super::{bounds, dns_sd, file_sd, http_sd, Refresh};
use crate::config::{Config, ResolvedAgent, SourceKind, SourceSpec};

/// What one source yielded when asked once.
pub struct SourceCheck {
    /// The source's id, e.g. `http_sd/0`.
    pub source: String,
    pub found: Result<Yield, String>,
}

/// A source's good answer, read.
pub struct Yield {
    pub targets: usize,
    /// The agents it adds to the fleet, with where each came from.
    pub agents: Vec<(ResolvedAgent, Arc<str>)>,
    /// Targets that became no agent, by reason (`duplicate_name`: a name taken by a static
    /// agent or an earlier source, as the running exporter settles it).
    pub dropped: Vec<(&'static str, u64)>,
    /// Why each invalid target is no agent.
    pub invalid: Vec<String>,
}

/// Asks every source of `config` once, in config order.
pub async fn check_sources(config: &Config) -> Vec<SourceCheck> {
    let mut taken: HashSet<String> = config.agents.iter().map(|a| a.spec.name.clone()).collect();
    let mut out = Vec::new();
    for spec in &config.discovery {
        let found = once(spec).await.map(|discovered| {
            let mut invalid = Vec::new();
            let read = Readings::default().next(spec, &config.templates, discovered, |_, error| {
                invalid.push(error.to_owned());
            });
            let mut dropped: Vec<(&'static str, u64)> =
                read.drops.iter().map(|(r, n)| (r.as_str(), *n)).collect();
            let mut duplicates = 0;
            let mut agents = Vec::new();
            for found in &read.agents {
                if taken.insert(found.agent.spec.name.clone()) {
                    agents.push((found.agent.clone(), found.origin.clone()));
                } else {
                    duplicates += 1;
                }
            }
            if duplicates > 0 {
                dropped.push((DropReason::DuplicateName.as_str(), duplicates));
            }
            Yield {
                targets: read.targets,
                agents,
                dropped,
                invalid,
            }
        });
        out.push(SourceCheck {
            source: spec.id.clone(),
            found,
        });
    }
    out
}

/// One refresh, within the source's bounds.
async fn once(spec: &SourceSpec) -> Refresh {
    let found = match &spec.kind {
        SourceKind::File { patterns } => file_sd::read(patterns, spec.max_targets),
        SourceKind::Http {
            url,
            http,
            timeout,
            max_bytes,
        } => http_sd::fetch(url, http, *timeout, *max_bytes, spec.max_targets).await,
        SourceKind::Dns { .. } => dns_sd::once(spec).await,
    };
    found.and_then(|d| bounds::check(d, spec.max_targets))
}
