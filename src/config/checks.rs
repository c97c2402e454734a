//! Check templates: `defaults` and the named `checks`, validated once, and the choice of the
//! check an agent uses (its `check:`, else the one named like its type, else none). Also the
//! entry point that turns one agent's fields into a spec, for agents found at run time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_saphyr::{Location, Spanned};

use super::error::ConfigIssue;
use super::layer::Layer;
use super::raw::{RawCheck, RawDefaults};
use super::resolve::{Head, ResolvedAgent, Resolver};

/// What every agent inherits: `defaults`, and each named check already stacked on them.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    defaults: Layer,
    checks: BTreeMap<String, Layer>,
    /// The config file and its folder, for messages and relative file names.
    file: String,
    base_dir: PathBuf,
}

/// The check an agent uses, when it uses one.
pub(super) struct Chosen<'a> {
    pub name: Option<String>,
    pub layer: &'a Layer,
}

impl Templates {
    /// The config file the templates were read from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The config file's folder, where relative file names start.
    pub(super) fn base_dir(&self) -> &std::path::Path {
        &self.base_dir
    }

    /// The names of the checks, sorted.
    pub fn check_names(&self) -> impl Iterator<Item = &str> {
        self.checks.keys().map(String::as_str)
    }

    /// Whether a check of this name exists.
    pub fn has_check(&self, name: &str) -> bool {
        self.checks.contains_key(name)
    }

    /// The fix of a reference to check `name`, which does not exist: the checks there are, or
    /// how to add one; `or` is the other way out (e.g. "remove `check`").
    pub(super) fn unknown_check_fix(&self, name: &str, or: &str) -> String {
        let known: Vec<&str> = self.check_names().collect();
        if known.is_empty() {
            format!("add `checks: {{{name}: {{...}}}}` or {or}")
        } else {
            format!("use one of the checks: {}", known.join(", "))
        }
    }

    /// The agent's `check:` when given (`None` with an issue when no such check exists), else
    /// the check named like `agent_type`, else the defaults alone.
    pub(super) fn choose(
        &self,
        resolver: &mut Resolver,
        check: Option<(&str, Location)>,
        agent_type: Option<&str>,
        what: &str,
    ) -> Option<Chosen<'_>> {
        if let Some((name, at)) = check {
            let Some(layer) = self.checks.get(name) else {
                let fix = self.unknown_check_fix(name, "remove `check`");
                resolver.issue(at, format!("{what}: unknown check {name:?}"), fix);
                return None;
            };
            return Some(Chosen {
                name: Some(name.to_owned()),
                layer,
            });
        }
        let by_type = agent_type.and_then(|t| self.checks.get_key_value(t));
        Some(match by_type {
            Some((name, layer)) => Chosen {
                name: Some(name.clone()),
                layer,
            },
            None => Chosen {
                name: None,
                layer: &self.defaults,
            },
        })
    }
}

impl Resolver {
    /// Validates `defaults` and every check, once for the whole fleet.
    pub(super) fn templates(
        &mut self,
        defaults: RawDefaults,
        checks: BTreeMap<String, Spanned<RawCheck>>,
    ) -> Templates {
        let mut defaults = self.layer(RawCheck::from(defaults), "defaults");
        // Cadence alone in `defaults` is what every canary starts from, not a canary.
        defaults.canary.written_at = None;
        let checks = checks
            .into_iter()
            .map(|(name, raw)| {
                let layer = self.layer(raw.value, &format!("check {name:?}"));
                (name, layer.over(&defaults))
            })
            .collect();
        Templates {
            defaults,
            checks,
            file: self.file().to_owned(),
            base_dir: self.base_dir().to_path_buf(),
        }
    }
}

/// One agent as a discovery source describes it. `Eq` and `Hash` let discovery resolve only
/// the targets a refresh has not seen before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AgentFields {
    pub name: String,
    pub agent_type: String,
    /// The check to use; `None` picks the one named like the type, else the defaults.
    pub check: Option<String>,
    pub url: String,
    /// Its own labels, over those of its check and the defaults.
    pub labels: BTreeMap<String, String>,
}

/// Resolves one agent from its fields and the config's templates (`Config::templates`), as a
/// static agent of the same keys would be. `origin` names where the fields came from (a
/// discovery source, a file) and takes the place of the config file in the issues, which have
/// no line. Errors: every problem found, each with its fix.
pub fn resolve_agent(
    fields: &AgentFields,
    templates: &Templates,
    origin: &str,
) -> Result<ResolvedAgent, Vec<ConfigIssue>> {
    let mut resolver = Resolver::new(origin.to_owned(), templates.base_dir.clone());
    let at = Location::UNKNOWN;
    let spanned = |value: &str| Spanned {
        value: value.to_owned(),
        referenced: at,
        defined: at,
    };
    let own = Layer {
        labels: fields.labels.clone(),
        ..Layer::default()
    };
    resolver.check_labels(&spanned_map(&fields.labels, at));
    let head = Head {
        at,
        name: Some(spanned(&fields.name)),
        agent_type: Some(spanned(&fields.agent_type)),
        url: Some(spanned(&fields.url)),
        check: fields.check.as_deref().map(spanned),
    };
    let agent = resolver.agent(head, own, templates, &format!("agent {:?}", fields.name));
    let issues = resolver.into_issues();
    match agent {
        Some(agent) if issues.is_empty() => Ok(agent),
        _ => Err(issues),
    }
}

fn spanned_map(map: &BTreeMap<String, String>, at: Location) -> Spanned<BTreeMap<String, String>> {
    Spanned {
        value: map.clone(),
        referenced: at,
        defined: at,
    }
}
