//! Prometheus relabeling for discovered targets: each source's `relabel_configs` turn a
//! target's label set (its `__address__`, group labels and `__meta_*` labels) into the label set
//! that `discovery/target.rs` reads an agent from, or drop the target. Semantics follow
//! Prometheus exactly: anchored regexes, the same defaults, Go's `$1`/`${name}` expansion and
//! md5-based `hashmod`. Parsed by `config` (a source's `relabel_configs`), applied by
//! `discovery`.

use std::collections::BTreeMap;

use crate::shard::hashmod;
use regex::{Captures, Regex};
use serde::Deserialize;

/// A target's labels while it is relabeled; sorted by name, as Prometheus keeps them.
pub type Labels = BTreeMap<String, String>;

/// One entry of `relabel_configs:` as written; every key optional, defaults as Prometheus.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRelabel {
    pub source_labels: Option<Vec<String>>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    LabelMap,
    LabelDrop,
    LabelKeep,
    HashMod,
    Lowercase,
    Uppercase,
}

/// A checked rule, ready to apply.
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    /// The regex as written; `(.*)` when not given.
    regex_text: String,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// Why a rule is invalid, with the fix a user needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub message: String,
    pub fix: String,
}

fn rule_error(message: impl Into<String>, fix: impl Into<String>) -> RuleError {
    RuleError {
        message: message.into(),
        fix: fix.into(),
    }
}

pub(crate) const DEFAULT_REGEX: &str = "(.*)";
pub(crate) const DEFAULT_SEPARATOR: &str = ";";
pub(crate) const DEFAULT_REPLACEMENT: &str = "$1";
pub(crate) const DEFAULT_ACTION: &str = "replace";

impl Rule {
    /// Checks one rule as Prometheus does when it loads its config.
    pub fn compile(raw: &RawRelabel) -> Result<Rule, RuleError> {
        let action_text = raw
            .action
            .as_deref()
            .unwrap_or(DEFAULT_ACTION)
            .to_lowercase();
        let action = match action_text.as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "hashmod" => Action::HashMod,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            other => {
                return Err(rule_error(
                    format!("unknown relabel action {other:?}"),
                    "use one of replace, keep, drop, labelmap, labeldrop, labelkeep, hashmod, \
                     lowercase, uppercase",
                ))
            }
        };
        let regex_text = raw.regex.clone().unwrap_or_else(|| DEFAULT_REGEX.into());
        let regex = compile_regex(&regex_text).map_err(|e| {
            rule_error(
                format!("invalid regex {regex_text:?}: {e}"),
                "write a valid RE2 regular expression; it is matched against the whole value",
            )
        })?;
        let rule = Rule {
            source_labels: raw.source_labels.clone().unwrap_or_default(),
            separator: raw
                .separator
                .clone()
                .unwrap_or_else(|| DEFAULT_SEPARATOR.into()),
            regex,
            regex_text,
            modulus: raw.modulus.unwrap_or(0),
            target_label: raw.target_label.clone().unwrap_or_default(),
            replacement: raw
                .replacement
                .clone()
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.into()),
            action,
        };
        rule.validate(raw)?;
        Ok(rule)
    }

    fn validate(&self, raw: &RawRelabel) -> Result<(), RuleError> {
        use Action::*;
        let name = action_name(self.action);
        if self.action == HashMod && self.modulus == 0 {
            return Err(rule_error(
                "hashmod requires a non-zero modulus",
                "set modulus: N (the number of buckets)",
            ));
        }
        let needs_target = matches!(self.action, Replace | HashMod | Lowercase | Uppercase);
        if needs_target && self.target_label.is_empty() {
            return Err(rule_error(
                format!("the {name} action requires target_label"),
                "set target_label: the label the result is written to",
            ));
        }
        let target_ok = if self.action == Replace && self.target_label.contains('$') {
            valid_target_template(&self.target_label)
        } else {
            !needs_target || valid_label_name(&self.target_label)
        };
        if !target_ok {
            return Err(rule_error(
                format!(
                    "{:?} is an invalid target_label for {name}",
                    self.target_label
                ),
                "use a label name ([a-zA-Z_][a-zA-Z0-9_]*), with $1 or ${name} only for replace",
            ));
        }
        if matches!(self.action, Lowercase | Uppercase) && self.replacement != DEFAULT_REPLACEMENT {
            return Err(rule_error(
                format!("replacement cannot be set for {name}"),
                "remove replacement",
            ));
        }
        if self.action == LabelMap && !valid_target_template(&self.replacement) {
            return Err(rule_error(
                format!(
                    "{:?} is an invalid replacement for labelmap",
                    self.replacement
                ),
                "make replacement a label name, with $1 or ${name} for the captured parts",
            ));
        }
        if matches!(self.action, LabelDrop | LabelKeep)
            && (raw.source_labels.is_some()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(rule_error(
                format!("the {name} action takes only regex"),
                "remove source_labels, target_label, modulus, separator and replacement",
            ));
        }
        Ok(())
    }

    /// The rule's regex as written.
    pub fn regex_text(&self) -> &str {
        &self.regex_text
    }

    /// Applies the rule; false when the target is dropped.
    fn apply(&self, labels: &mut Labels) -> bool {
        let value = self.joined_sources(labels);
        match self.action {
            Action::Drop => return !self.regex.is_match(&value),
            Action::Keep => return self.regex.is_match(&value),
            Action::Replace => {
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let target = expand(&self.regex, &caps, &self.target_label);
                if !valid_label_name(&target) {
                    return true;
                }
                set(
                    labels,
                    target,
                    expand(&self.regex, &caps, &self.replacement),
                );
            }
            Action::Lowercase => set(labels, self.target_label.clone(), value.to_lowercase()),
            Action::Uppercase => set(labels, self.target_label.clone(), value.to_uppercase()),
            Action::HashMod => {
                let bucket = hashmod(&value, self.modulus);
                set(labels, self.target_label.clone(), bucket.to_string());
            }
            Action::LabelMap => {
                // The rule reads the labels as they were before it ran, as Prometheus does.
                let before: Vec<(String, String)> =
                    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for (name, value) in before {
                    if let Some(caps) = self.regex.captures(&name) {
                        let mapped = expand(&self.regex, &caps, &self.replacement);
                        set(labels, mapped, value);
                    }
                }
            }
            Action::LabelDrop => labels.retain(|name, _| !self.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| self.regex.is_match(name)),
        }
        true
    }

    fn joined_sources(&self, labels: &Labels) -> String {
        let mut value = String::new();
        for (i, name) in self.source_labels.iter().enumerate() {
            if i > 0 {
                value.push_str(&self.separator);
            }
            if let Some(v) = labels.get(name) {
                value.push_str(v);
            }
        }
        value
    }
}

/// Runs `rules` in order over `labels`; `None` when a rule drops the target.
pub fn process(mut labels: Labels, rules: &[Rule]) -> Option<Labels> {
    for rule in rules {
        if !rule.apply(&mut labels) {
            return None;
        }
    }
    Some(labels)
}

/// Setting a label to the empty value removes it, as in Prometheus.
fn set(labels: &mut Labels, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Replace => "replace",
        Action::Keep => "keep",
        Action::Drop => "drop",
        Action::LabelMap => "labelmap",
        Action::LabelDrop => "labeldrop",
        Action::LabelKeep => "labelkeep",
        Action::HashMod => "hashmod",
        Action::Lowercase => "lowercase",
        Action::Uppercase => "uppercase",
    }
}

/// A Prometheus (legacy) label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus accepts a templated target label made of name characters and `$name`/`${name}`
/// references only.
fn valid_target_template(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while let Some(c) = rest.chars().next() {
        if c == '$' {
            let after = &rest[1..];
            let (body, skip) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => return false,
                }
            } else {
                let end = after.find(|c: char| !is_word(c)).unwrap_or(after.len());
                (&after[..end], end)
            };
            if body.is_empty() || !body.chars().all(is_word) {
                return false;
            }
            rest = &after[skip..];
        } else if is_word(c) {
            rest = &rest[1..];
        } else {
            return false;
        }
    }
    true
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Compiles a regex anchored at both ends, as Prometheus does. Go's `\d`, `\w`, `\s` and `\b`
/// are ASCII-only while ours are Unicode by default, so they are rewritten to their ASCII
/// classes first: `\d` matching an Arabic-Indic digit would keep a target Prometheus drops.
pub fn compile_regex(text: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{})$", ascii_classes(text)))
}

fn ascii_classes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('s') => out.push_str("[\\t\\n\\f\\r ]"),
            Some('S') => out.push_str("[^\\t\\n\\f\\r ]"),
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Go's `Regexp.Expand`: `$name` takes the longest run of letters, digits and `_` (so `$1x` is
/// the group named `1x`, which is empty); `${name}` delimits; `$$` is a `$`; a number with a
/// leading zero is a name, not an index; a malformed reference is kept as text.
pub fn expand(regex: &Regex, caps: &Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = reference(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        let group = match group_number(name) {
            Some(n) => caps.get(n),
            None => regex
                .capture_names()
                .position(|n| n == Some(name))
                .and_then(|i| caps.get(i)),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
    out
}

/// Splits a reference (`name` or `{name}`) from the text after a `$`.
fn reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(inner) => (true, inner),
        None => (false, text),
    };
    let end = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if braced {
        body[end..].strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, &body[end..]))
    }
}

fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.starts_with('0') && name.len() > 1) {
        return None;
    }
    // Go stops counting at 1e8; such a group never exists.
    name.parse::<usize>().ok().filter(|n| *n < 100_000_000)
}

#[cfg(test)]
mod tests;
