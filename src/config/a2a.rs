//! The `a2a:` section of an agent with `protocol: a2a`: its agent card is fetched from the
//! well-known path under the URL and checked (probe/a2a.rs). Resolution is in mcp.rs, next
//! to the `protocol:` key it depends on.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `a2a:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawA2a {
    /// Skill ids the agent card must list.
    pub expect_skills: Option<Spanned<Vec<String>>>,
}

/// An A2A agent, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2aTarget {
    /// The base URL; the card is at `/.well-known/agent-card.json` (or the older
    /// `/.well-known/agent.json`) under it.
    pub url: url::Url,
    pub expect_skills: Vec<String>,
}
