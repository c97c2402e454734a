//! What a fenced block of the docs is, from its info string: the one classification every docs
//! test uses, so a block is an exporter config to all of them or to none.

use super::Block;

/// What a block is, from its info string.
#[derive(Debug, PartialEq)]
pub enum Kind {
    ExporterConfig,
    WebConfig,
    Prometheus,
    Alertmanager,
    Rules,
    /// Checked by tests/realworld/docs_snippets.py (Python renders the rules).
    Slos,
    /// Run by tests/realworld/docs_snippets.py.
    Command,
    /// Output, a diagram or a fragment: nothing to run.
    Skipped,
}

pub fn kind(block: &Block) -> Result<Kind, String> {
    let words: Vec<&str> = block.info.iter().skip(1).map(String::as_str).collect();
    if ["excerpt", "manual", "output", "diagram"]
        .iter()
        .any(|w| block.has(w))
    {
        return Ok(Kind::Skipped);
    }
    match (block.lang(), words.as_slice()) {
        ("yaml", []) => Ok(Kind::ExporterConfig),
        ("yaml", ["web-config"]) => Ok(Kind::WebConfig),
        ("yaml", ["prometheus"]) => Ok(Kind::Prometheus),
        ("yaml", ["alertmanager"]) => Ok(Kind::Alertmanager),
        ("yaml", ["rules"]) => Ok(Kind::Rules),
        ("yaml", ["slos"]) => Ok(Kind::Slos),
        ("sh", []) => Ok(Kind::Command),
        _ => Err(format!(
            "{}: the block's info string {:?} does not say what it is: use `yaml` (an exporter config), \
             `yaml web-config`, `yaml prometheus`, `yaml alertmanager`, `yaml rules`, `yaml slos`, \
             `sh` (run by tests/realworld/docs_snippets.py), or add `excerpt` (a fragment), `manual` (a \
             command that needs what CI lacks: Docker, a cluster, your hosts), `output` or `diagram`",
            block.place(),
            block.info.join(" ")
        )),
    }
}
