//! The one place a discovered target becomes an agent: through the same resolution (and
//! `defaults:`) as an agent written in the config file.

use crate::config::{AgentBase, DiscoveredFields, ResolvedAgent};

/// Resolves one relabeled target; the error says why it is no valid agent.
pub fn to_agent(base: &AgentBase, fields: DiscoveredFields) -> Result<ResolvedAgent, String> {
    base.resolve(fields)
}
