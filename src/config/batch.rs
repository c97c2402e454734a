//! Resolving the many agents of one discovery refresh. They mostly differ only in name, labels
//! and address: the first agent of each kind (type, check, http or https) is resolved in full,
//! the others of its kind become copies of its spec with their own name, labels and URL, which
//! is what resolving them in full gives, for a fraction of the cost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_saphyr::Location;

use super::checks::{resolve_agent, AgentFields, Templates};
use super::error::ConfigIssue;
use super::resolve::{next_revision, ResolvedAgent, Resolver};
use super::spec::{AgentSpec, Target};
use super::values::allowed_label;

/// Kinds remembered by one batch; agents of further kinds are resolved in full.
const MAX_KINDS: usize = 32;

/// The first agent of a kind, resolved in full.
struct Kind {
    agent_type: String,
    check: Option<String>,
    scheme: String,
    spec: Arc<AgentSpec>,
    /// The check it uses, as `ResolvedAgent::check`.
    resolved_check: Option<String>,
    /// The labels of its check (or the defaults), under which an agent's own ones go.
    template_labels: BTreeMap<String, String>,
}

/// Resolves agents as `resolve_agent` does, against the same templates.
pub struct BatchResolver<'a> {
    templates: &'a Templates,
    kinds: Vec<Kind>,
}

impl<'a> BatchResolver<'a> {
    pub fn new(templates: &'a Templates) -> Self {
        BatchResolver {
            templates,
            kinds: Vec::new(),
        }
    }

    /// `resolve_agent(fields, templates, origin)`, by copy where a kind allows it.
    pub fn resolve(
        &mut self,
        fields: &AgentFields,
        origin: &str,
    ) -> Result<ResolvedAgent, Vec<ConfigIssue>> {
        if let Some(agent) = self.copy(fields) {
            return Ok(agent);
        }
        let agent = resolve_agent(fields, self.templates, origin)?;
        if let (Target::Http(url), true) = (&agent.spec.target, self.kinds.len() < MAX_KINDS) {
            // The labels of the check `choose` picks, as `Layer::over` merges them.
            let mut resolver = Resolver::new(String::new(), PathBuf::new());
            let check = fields.check.as_deref().map(|c| (c, Location::UNKNOWN));
            let chosen = self
                .templates
                .choose(&mut resolver, check, Some(&fields.agent_type), "");
            if let Some(chosen) = chosen {
                self.kinds.push(Kind {
                    agent_type: fields.agent_type.clone(),
                    check: fields.check.clone(),
                    scheme: url.scheme().to_owned(),
                    spec: agent.spec.clone(),
                    resolved_check: agent.check.clone(),
                    template_labels: chosen.layer.labels.clone(),
                });
            }
        }
        Ok(agent)
    }

    /// The agent as a copy of the first of its kind, when nothing but its name, labels and
    /// URL differ and these are valid as they are (else the full resolution reports them).
    fn copy(&self, fields: &AgentFields) -> Option<ResolvedAgent> {
        let kind = self.kinds.iter().find(|k| {
            k.agent_type == fields.agent_type
                && k.check == fields.check
                && fields
                    .url
                    .strip_prefix(k.scheme.as_str())
                    .is_some_and(|rest| rest.starts_with("://"))
        })?;
        let name = &fields.name;
        if name.is_empty() || name.trim() != name {
            return None;
        }
        if !fields.labels.keys().all(|k| allowed_label(k)) {
            return None;
        }
        // As `Resolver::target` reads an http(s) URL; one with credentials is resolved in full.
        let mut url = url::Url::parse(&fields.url).ok()?;
        let plain = url.scheme() == kind.scheme
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none();
        if !plain {
            return None;
        }
        url.set_fragment(None);
        let mut labels = kind.template_labels.clone();
        labels.extend(fields.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut spec = (*kind.spec).clone();
        spec.name = name.clone();
        spec.target = Target::Http(url);
        spec.labels = labels.into_iter().collect();
        Some(ResolvedAgent {
            spec: Arc::new(spec),
            check: kind.resolved_check.clone(),
            revision: next_revision(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fields(name: &str, agent_type: &str, check: Option<&str>, url: &str) -> AgentFields {
        AgentFields {
            name: name.into(),
            agent_type: agent_type.into(),
            check: check.map(str::to_owned),
            url: url.into(),
            labels: [("zone".to_owned(), format!("z-{name}"))].into(),
        }
    }

    #[test]
    fn copies_equal_what_a_full_resolution_gives() {
        let config = super::super::parse(
            "defaults: {labels: {tier: base, zone: none}}\n\
             checks:\n  worker: {interval: 10s, labels: {tier: work}, http: {headers: {X-A: b}}, expect: {status: [204]}}\n  \
             strict: {failure_threshold: 3, degraded: {latency_above: 1s}}\n  \
             mcp: {protocol: mcp}\n",
            "c.yaml",
            Path::new("."),
        )
        .expect("config");
        let templates = &config.templates;
        let mut batch = BatchResolver::new(templates);
        let mut all = Vec::new();
        for i in 0..3 {
            for (t, c) in [
                ("worker", None),
                ("worker", Some("strict")),
                ("other", None),
            ] {
                for url in ["http://10.0.0.{i}:80/h", "https://h{i}.example:8443/x#f"] {
                    all.push(fields(
                        &format!("a{i}{t}{c:?}{url}"),
                        t,
                        c,
                        &url.replace("{i}", &i.to_string()),
                    ));
                }
            }
            all.push(fields(
                &format!("m{i}"),
                "x",
                Some("mcp"),
                "http://10.0.0.9/mcp",
            ));
            all.push(fields(
                &format!("c{i}"),
                "worker",
                None,
                "http://u:p@10.0.0.9/h",
            ));
            all.push(fields(
                &format!("g{i}"),
                "worker",
                None,
                "grpc://10.0.0.9:50051",
            ));
        }
        let mut bad = fields("bad", "worker", None, "http://10.0.0.1/");
        bad.labels.insert("agent_type".into(), "x".into());
        all.push(bad);
        all.push(fields(" spaced", "worker", None, "http://10.0.0.1/"));
        all.push(fields("nohost", "worker", None, "http:///h"));
        for f in &all {
            let full = resolve_agent(f, templates, "o").map(|a| (a.spec, a.check));
            let batched = batch.resolve(f, "o").map(|a| (a.spec, a.check));
            match (full, batched) {
                (Ok(full), Ok(batched)) => assert_eq!(full, batched, "{}", f.name),
                (Err(full), Err(batched)) => assert_eq!(full.len(), batched.len(), "{}", f.name),
                (full, batched) => panic!("{}: {full:?} vs {batched:?}", f.name),
            }
        }
        assert!(batch.kinds.len() >= 4, "copies were made");
    }
}
