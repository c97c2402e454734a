//! The config file: schema (`raw`), validation into typed specs (`resolve`, stacking the layers
//! of `layer` and `checks`, one file per section), TLS client setup (`tls`), the resolved types
//! (`spec`) and their swappable secrets (`secret`). The first step of the data flow; nothing
//! after it re-checks a config value.

mod a2a;
mod batch;
mod canary;
mod checks;
mod discovery;
mod error;
mod expect;
mod files;
mod grpc;
mod heartbeat;
mod http;
mod layer;
mod mcp;
mod raw;
mod resolve;
mod secret;
mod spec;
mod target;
pub mod tls;
mod values;

use std::path::Path;
use std::sync::Arc;

pub use a2a::A2aTarget;
pub use batch::BatchResolver;
pub use canary::{
    CanaryExpect, CanarySpec, CanaryTask, OnFailure, DEFAULT_CANARY_INTERVAL,
    DEFAULT_CANARY_TIMEOUT, DEFAULT_CHAT_PATH, DEFAULT_MAX_TOKENS,
};
pub use checks::{resolve_agent, AgentFields, Templates};
pub use discovery::{DnsRecord, SourceKind, SourceSpec};
pub use error::{base_dir, ConfigError, ConfigIssue};
pub use grpc::{GrpcTarget, Metadata as GrpcMetadata};
pub use heartbeat::{default_grace, HeartbeatSpec};
pub use http::DEFAULT_MAX_BODY_BYTES;
pub use layer::Protocol;
pub use mcp::McpTarget;
pub use resolve::{ResolvedAgent, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
pub use secret::{Pattern, Secret, TlsClient, TlsIdentity};
pub use spec::*;
pub use values::MAX_PERIOD;

/// A loaded, valid config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The agents, in file order.
    pub agents: Vec<ResolvedAgent>,
    /// `defaults` and `checks`, for agents resolved later (`resolve_agent`).
    pub templates: Arc<Templates>,
    /// `discovery:` sources, in file order.
    pub discovery: Vec<SourceSpec>,
}

impl Config {
    /// One line per agent for `--config.check`: name, type, check (`-` when only `defaults`
    /// apply), target, interval, timeout.
    pub fn summary(&self) -> Vec<String> {
        self.agents.iter().map(summary_line).collect()
    }
}

/// The `--config.check` line of one agent (`Config::summary`).
pub fn summary_line(agent: &ResolvedAgent) -> String {
    let s = &agent.spec;
    format!(
        "agent={} type={} check={} target={} interval={} timeout={}",
        s.name,
        s.agent_type,
        agent.check.as_deref().unwrap_or("-"),
        s.target.display(),
        humantime::format_duration(s.interval),
        humantime::format_duration(s.timeout)
    )
}

/// Reads and validates the config file at `path`. Relative file names inside it (secrets, CA
/// files) are taken from the file's own folder, as Prometheus does.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), &base_dir(path))
}

/// Where a user finds the valid keys, for error messages.
const KEYS: &str = "the README lists every key and its type";

/// Validates config text; `file` names it in errors, `base_dir` anchors relative paths.
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = if text.trim().is_empty() {
        raw::RawConfig::default()
    } else {
        serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| ConfigError::Invalid(vec![ConfigIssue::from_yaml(file, &e, KEYS)]))?
    };
    let mut raw = raw;
    let sources = std::mem::take(&mut raw.discovery);
    let mut resolver = resolve::Resolver::new(file.to_owned(), base_dir.to_path_buf());
    let (templates, agents) = resolver.resolve(raw);
    let mut issues = resolver.into_issues();
    let discovery = discovery::resolve_sources(sources, &templates, &mut issues);
    if issues.is_empty() {
        Ok(Config {
            agents,
            templates: Arc::new(templates),
            discovery,
        })
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// serde-saphyr's default budget stops at 250,000 YAML nodes: about 35,000 agents of three keys,
/// fewer with labels. The config is a file its operator wrote, so the budget only has to stop
/// runaway input; this leaves room for about a million plain agents.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_nodes = 10_000_000;
    budget.max_events = 20_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}
