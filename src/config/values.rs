//! Single values of the config: names, durations, thresholds, label names, byte sizes, HTTP
//! statuses and JSON Pointers. Each is checked where it is written and reported with its fix.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::layer::Placed;
use super::raw::{RawSize, RawStatus};
use super::resolve::Resolver;
use super::spec::StatusMatch;

/// Whether the exporter sets label `name` on an agent's series itself (derived from the
/// metric families): a user label of that name would appear twice in a series.
fn reserved_label(name: &str) -> bool {
    crate::metrics::reserved_label_names().contains(&name)
}

/// The longest `interval` or `timeout`: beyond a day a health check is not one, and a typo
/// such as `400000000000y` would otherwise schedule the first probe after the sun is gone.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

impl Resolver {
    /// A required name-like key (`name`, `type`): present, not empty, no surrounding
    /// whitespace (an invisible difference would make two agents look like one).
    pub(super) fn required_text(
        &mut self,
        value: Option<&Spanned<String>>,
        agent_at: Location,
        what: &str,
        key: &str,
        example: &str,
    ) -> Option<String> {
        match value {
            None => {
                self.issue(
                    agent_at,
                    format!("{what}: missing required key `{key}`"),
                    format!("add `{example}` to the agent"),
                );
                None
            }
            Some(v) if v.value.trim().is_empty() => {
                self.issue(
                    v.referenced,
                    format!("{what}: `{key}` is empty"),
                    format!("give a value, e.g. `{example}`"),
                );
                None
            }
            Some(v) if v.value.trim() != v.value => {
                self.issue(
                    v.referenced,
                    format!("{what}: `{key}` has leading or trailing whitespace"),
                    format!("remove it: `{key}: {:?}`", v.value.trim()),
                );
                None
            }
            Some(v) => Some(v.value.clone()),
        }
    }

    pub(super) fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
    ) -> Option<Duration> {
        let value = value?;
        match humantime::parse_duration(value.value.trim()) {
            Ok(d) if d.is_zero() => {
                self.issue(
                    value.referenced,
                    format!("`{key}` must be longer than zero"),
                    "use a positive duration such as 30s or 500ms",
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.issue(
                    value.referenced,
                    format!("`{key}`: {:?} is not a duration ({e})", value.value),
                    "write a duration with a unit, such as 30s, 1m or 500ms",
                );
                None
            }
        }
    }

    /// `interval` and `timeout`: a duration of at most `MAX_PERIOD`, with its place.
    pub(super) fn bounded_duration(
        &mut self,
        value: Option<&Spanned<String>>,
        what: &str,
        key: &str,
    ) -> Option<Placed<Duration>> {
        let at = value?.referenced;
        let duration = self.duration(value, key)?;
        if duration > MAX_PERIOD {
            self.issue(
                at,
                format!(
                    "{what}: `{key}` {} is longer than 24h",
                    humantime::format_duration(duration)
                ),
                format!("set `{key}` to at most 24h"),
            );
            return None;
        }
        Some(Placed::new(duration, at))
    }

    pub(super) fn threshold(&mut self, value: Option<&Spanned<u32>>, key: &str) -> Option<u32> {
        let value = value?;
        if value.value == 0 {
            self.issue(
                value.referenced,
                format!("`{key}` must be at least 1"),
                format!("set `{key}: 1` to react at the first probe"),
            );
            return None;
        }
        Some(value.value)
    }

    pub(super) fn check_labels(&mut self, labels: &Spanned<BTreeMap<String, String>>) {
        for name in labels.value.keys() {
            if !valid_label_name(name) || name.starts_with("__") {
                self.issue(
                    labels.referenced,
                    format!("label name {name:?} is not a valid Prometheus label name"),
                    "use letters, digits and underscores, not starting with a digit or `__`",
                );
            } else if reserved_label(name) {
                self.issue(
                    labels.referenced,
                    format!(
                        "label name {name:?} is set by the exporter itself; a series would carry it twice and Prometheus would reject the whole scrape"
                    ),
                    format!(
                        "rename the label, e.g. to `{name}_label`; the reserved names are {}",
                        crate::metrics::reserved_label_names().join(", ")
                    ),
                );
            }
        }
    }
}

fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

/// Whether an agent may carry label `name`: `check_labels` has no issue with it.
pub(super) fn allowed_label(name: &str) -> bool {
    valid_label_name(name) && !name.starts_with("__") && !reserved_label(name)
}

/// `1024`, `64KiB`, `1MiB`, `1MB`, `1 GiB`.
pub(super) fn parse_size(raw: &RawSize) -> Option<u64> {
    let text = match raw {
        RawSize::Bytes(n) => return Some(*n),
        RawSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

pub(super) fn parse_status(raw: &RawStatus) -> Option<StatusMatch> {
    match raw {
        RawStatus::Code(code) => u16::try_from(*code)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusMatch::Code),
        RawStatus::Text(text) => {
            let text = text.trim().to_ascii_lowercase();
            if let Some(class) = text.strip_suffix("xx") {
                class
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (1..=5).contains(c))
                    .map(StatusMatch::Class)
            } else {
                text.parse::<u64>()
                    .ok()
                    .and_then(|c| parse_status(&RawStatus::Code(c)))
            }
        }
    }
}

pub(super) fn status_text(raw: &RawStatus) -> String {
    match raw {
        RawStatus::Code(c) => c.to_string(),
        RawStatus::Text(t) => format!("{t:?}"),
    }
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` is followed by 0 or 1.
pub(super) fn valid_json_pointer(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    if !pointer.starts_with('/') {
        return false;
    }
    let bytes = pointer.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0') | Some(b'1')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_bytes_and_binary_and_decimal_units() {
        assert_eq!(parse_size(&RawSize::Bytes(10)), Some(10));
        assert_eq!(parse_size(&RawSize::Text("1MiB".into())), Some(1 << 20));
        assert_eq!(parse_size(&RawSize::Text("64 KiB".into())), Some(64 << 10));
        assert_eq!(parse_size(&RawSize::Text("2MB".into())), Some(2_000_000));
        assert_eq!(parse_size(&RawSize::Text("lots".into())), None);
    }

    #[test]
    fn statuses_accept_codes_and_classes() {
        assert_eq!(
            parse_status(&RawStatus::Code(204)),
            Some(StatusMatch::Code(204))
        );
        assert_eq!(
            parse_status(&RawStatus::Text("3xx".into())),
            Some(StatusMatch::Class(3))
        );
        assert_eq!(
            parse_status(&RawStatus::Text("200".into())),
            Some(StatusMatch::Code(200))
        );
        assert_eq!(parse_status(&RawStatus::Code(700)), None);
        assert_eq!(parse_status(&RawStatus::Text("9xx".into())), None);
    }

    #[test]
    fn json_pointers_follow_rfc_6901() {
        assert!(valid_json_pointer(""));
        assert!(valid_json_pointer("/status"));
        assert!(valid_json_pointer("/a~1b/~0c/0"));
        assert!(!valid_json_pointer("status"));
        assert!(!valid_json_pointer("/a~2"));
        assert!(!valid_json_pointer("/a~"));
    }
}
