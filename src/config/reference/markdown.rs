//! docs/configuration.md, rendered from the key table: one table per section, a row per key.
//! A test keeps the committed file equal to this rendering.

use std::fmt::Write;

use super::{sections, Key, Place, Section, CHECK, DEFAULTS};

const INTRO: &str = "\
# Configuration reference

<!-- Generated from src/config/reference.rs; do not edit. Rewrite it with
     AHE_REWRITE_REFERENCE=1 cargo test --test config_reference -->

The exporter reads one YAML file (`--config.file`, default `agent-health-exporter.yaml`).
Check it with `agent-health-exporter --config.check` (add `--verbose` to see each agent's
resolved settings, secrets shown as `<secret>`). `agent-health-exporter --config.schema` prints
its JSON Schema (draft 2020-12), also committed as [config.schema.json](config.schema.json):
editors with the YAML language server complete and check a config whose first line names it,
as `config.example.yaml` does: `# yaml-language-server: $schema=docs/config.schema.json` (a
path relative to the config file, or a URL). Unknown keys are errors, as are duplicate agent
names, bad URLs, `timeout >= interval` and unreadable files; each error names the line, the
column and the fix.

**Types.** A *duration* has a unit: `500ms`, `30s`, `1m30s`, `1.5h`. A *size* is a byte count
or a number with a unit: `64KiB`, `1MiB`, `2MB` (`k`, `m`, `g` are binary). A *file* is a path,
relative ones taken from the config file's folder. A *secret file* holds a secret (a trailing
newline is dropped); its contents are never printed, in logs, errors, the API or
`--config.check`, and a changed file is picked up by a reload without resetting the agent.

**Layers.** An agent's settings are its own keys, over those of its check (its `check:`, else
the check named like its `type`), over `defaults`. *Merge* says how a key written in several
layers combines: *replace* (the upper layer's value wins), *merge by key* (maps merge entry by
entry, the upper entry winning), *per key* (a section's keys combine one by one, each by its own
rule), *replace as a whole* (credentials and TLS setups are one setting); `-` marks keys that
are not layered, or that belong to a group replaced as a whole. A discovered target
becomes an agent through its source's `type`, `check` and relabeling, then the same layers.
`GET /api/v1/agents/{name}/config` answers an agent's resolved settings.
";

/// The reference as markdown.
pub fn markdown() -> String {
    let mut out = String::from(INTRO);
    for section in sections() {
        out.push('\n');
        let _ = writeln!(out, "## {}\n", section.title);
        let _ = writeln!(out, "{}\n", section.doc);
        if std::ptr::eq(section, &DEFAULTS) || std::ptr::eq(section, &CHECK) {
            let keys: Vec<String> = section
                .all_keys()
                .map(|k| format!("`{}`", k.name))
                .collect();
            let _ = writeln!(out, "Keys: {}.", keys.join(", "));
            continue;
        }
        out.push_str("| key | type | default | where allowed | merge | description |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for key in section.all_keys() {
            let _ = writeln!(
                out,
                "| `{}`{} | {} | {} | {} | {} | {} |",
                key.name,
                if key.required { " (required)" } else { "" },
                key.ty.text(),
                key.default.text(),
                places(section, key),
                merge(section, key),
                cell(key.doc)
            );
        }
    }
    out
}

/// Where a key may be written: its own places, else those of its section.
fn places(section: &Section, key: &Key) -> String {
    let places = if key.places.is_empty() {
        section.places
    } else {
        key.places
    };
    if places.is_empty() {
        return "top level".into();
    }
    places
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The merge rule, for keys that layers stack; `-` elsewhere.
fn merge(section: &Section, key: &Key) -> &'static str {
    let places = if key.places.is_empty() {
        section.places
    } else {
        key.places
    };
    let layered = places
        .iter()
        .filter(|p| matches!(p, Place::Defaults | Place::Check | Place::Agent))
        .count();
    if layered > 1 {
        key.merge.text()
    } else {
        "-"
    }
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
