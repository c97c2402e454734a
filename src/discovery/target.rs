//! Target groups as the Prometheus SD formats carry them (`[{targets, labels}]`), their label
//! sets, and the reading of a relabeled label set as an agent: `agent`, `agent_type`,
//! `__check__`, `__scheme__`, `__address__`, `__path__` and the remaining plain labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::AgentFields;
use crate::relabel::Labels;

/// One group of the file_sd / http_sd format.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A discovered target before relabeling, and where it came from (a file, URL or DNS name).
/// Equal raw targets become equal agents: discovery reads each only once (`read.rs`). Shared,
/// not copied: a file_sd file keeps its last good targets while the source reads them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Discovered {
    pub labels: Arc<Labels>,
    pub from: Arc<str>,
}

/// Why a target did not become an agent; the `reason` label of the dropped-targets counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A `keep` or `drop` rule removed it.
    Relabel,
    /// No `agent` label after relabeling.
    MissingName,
    /// No `agent_type` label and no source `type:`.
    MissingType,
    /// Its fields do not make a valid agent (bad URL, reserved label, …).
    Invalid,
    /// Another agent, earlier in config order, has its name.
    DuplicateName,
    /// Not dropped itself: it lost labels whose names the exporter sets (`status`, …).
    ReservedLabel,
    /// It asked (by `__check__` or `agent_type`) for a check its source does not allow.
    CheckNotAllowed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Relabel => "relabel",
            DropReason::MissingName => "missing_name",
            DropReason::MissingType => "missing_type",
            DropReason::Invalid => "invalid",
            DropReason::DuplicateName => "duplicate_name",
            DropReason::ReservedLabel => "reserved_label",
            DropReason::CheckNotAllowed => "check_not_allowed",
        }
    }
}

/// Parses a file_sd / http_sd document: JSON, or YAML when `yaml` is set.
pub fn parse_groups(bytes: &[u8], yaml: bool) -> Result<Vec<TargetGroup>, String> {
    let groups: Vec<TargetGroup> = if yaml {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?
    };
    for group in &groups {
        if let Some(bad) = group
            .labels
            .keys()
            .find(|k| !crate::relabel::valid_label_name(k))
        {
            return Err(format!("{bad:?} is not a valid label name"));
        }
    }
    Ok(groups)
}

/// The label sets of `groups`: group labels, `__address__` and the source's `meta` labels;
/// none when the groups list more than `max_targets` (each target becomes a label map of its
/// own, so the count is taken first).
pub fn expand_groups(
    groups: Vec<TargetGroup>,
    meta: &[(&str, &str)],
    from: &str,
    max_targets: usize,
) -> Result<Vec<Discovered>, String> {
    let count = groups.iter().map(|g| g.targets.len()).sum();
    super::bounds::check_count(count, max_targets)?;
    let mut out = Vec::with_capacity(count);
    let from: Arc<str> = from.into();
    for mut group in groups {
        let mut targets = group.targets.into_iter().peekable();
        while let Some(target) = targets.next() {
            // The group's own map goes to its last target (often its only one): a copy each
            // for the others.
            let mut labels = if targets.peek().is_some() {
                group.labels.clone()
            } else {
                std::mem::take(&mut group.labels)
            };
            labels.insert("__address__".into(), target);
            for (k, v) in meta {
                labels.insert((*k).into(), (*v).into());
            }
            out.push(Discovered {
                labels: Arc::new(labels),
                from: from.clone(),
            });
        }
    }
    Ok(out)
}

fn reserved(name: &str) -> bool {
    crate::metrics::reserved_label_names().contains(&name)
}

/// The labels of a relabeled label set that `fields_from_labels` leaves out of the agent's
/// because the exporter sets labels of these names itself (`agent` and `agent_type` are read
/// as the name and type instead).
pub fn reserved_labels(labels: &Labels) -> impl Iterator<Item = &str> {
    labels
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "agent" && *k != "agent_type" && reserved(k))
}

/// Reads an agent from a relabeled label set. The source's `type:` and `check:` fill in what
/// the labels leave out.
pub fn fields_from_labels(
    labels: &Labels,
    source_type: Option<&str>,
    source_check: Option<&str>,
) -> Result<AgentFields, DropReason> {
    let name = labels
        .get("agent")
        .filter(|n| !n.is_empty())
        .ok_or(DropReason::MissingName)?;
    let agent_type = labels
        .get("agent_type")
        .map(String::as_str)
        .or(source_type)
        .filter(|t| !t.is_empty())
        .ok_or(DropReason::MissingType)?;
    let address = labels
        .get("__address__")
        .filter(|a| !a.is_empty())
        .ok_or(DropReason::Invalid)?;
    let url = if address.contains("://") {
        address.clone()
    } else {
        let scheme = labels.get("__scheme__").map_or("http", String::as_str);
        // The health path is HTTP's: a grpc, grpcs or tcp URL takes no path.
        let default_path = if matches!(scheme, "http" | "https") {
            "/health"
        } else {
            ""
        };
        let path = labels.get("__path__").map_or(default_path, String::as_str);
        let slash = if path.is_empty() || path.starts_with('/') {
            ""
        } else {
            "/"
        };
        format!("{scheme}://{address}{slash}{path}")
    };
    let check = labels
        .get("__check__")
        .map(String::as_str)
        .or(source_check)
        .map(str::to_owned);
    // A label the exporter sets itself is left out: the agent's series would carry it twice.
    let plain = labels
        .iter()
        .filter(|(k, _)| !k.starts_with("__") && !reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(AgentFields {
        name: name.clone(),
        agent_type: agent_type.to_owned(),
        check,
        url,
        labels: plain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn address_scheme_and_path_make_the_url_with_defaults() {
        let f = fields_from_labels(
            &labels(&[("agent", "a"), ("__address__", "h:1"), ("zone", "z")]),
            Some("worker"),
            None,
        )
        .unwrap();
        assert_eq!(f.url, "http://h:1/health");
        assert_eq!(f.agent_type, "worker");
        assert_eq!(
            f.labels.into_iter().collect::<Vec<_>>(),
            [("zone".into(), "z".into())]
        );
        let f = fields_from_labels(
            &labels(&[
                ("agent", "a"),
                ("agent_type", "t"),
                ("__address__", "h:1"),
                ("__scheme__", "https"),
                ("__path__", "ready"),
            ]),
            Some("ignored"),
            None,
        )
        .unwrap();
        assert_eq!(
            (f.url.as_str(), f.agent_type.as_str()),
            ("https://h:1/ready", "t")
        );
    }

    #[test]
    fn only_http_and_https_get_the_default_path() {
        for (scheme, url) in [
            ("grpc", "grpc://h:1"),
            ("grpcs", "grpcs://h:1"),
            ("tcp", "tcp://h:1"),
            ("https", "https://h:1/health"),
        ] {
            let f = fields_from_labels(
                &labels(&[
                    ("agent", "a"),
                    ("__address__", "h:1"),
                    ("__scheme__", scheme),
                ]),
                Some("t"),
                None,
            )
            .unwrap();
            assert_eq!(f.url, url);
        }
    }

    #[test]
    fn a_whole_url_as_address_is_taken_as_is() {
        let f = fields_from_labels(
            &labels(&[("agent", "a"), ("__address__", "tcp://h:9")]),
            Some("t"),
            None,
        )
        .unwrap();
        assert_eq!(f.url, "tcp://h:9");
    }

    #[test]
    fn targets_without_name_or_type_are_dropped_with_their_reason() {
        let no_name = labels(&[("__address__", "h:1")]);
        assert_eq!(
            fields_from_labels(&no_name, Some("t"), None),
            Err(DropReason::MissingName)
        );
        let no_type = labels(&[("agent", "a"), ("__address__", "h:1")]);
        assert_eq!(
            fields_from_labels(&no_type, None, None),
            Err(DropReason::MissingType)
        );
    }

    #[test]
    fn groups_parse_from_json_and_yaml_and_refuse_bad_label_names() {
        let json = br#"[{"targets": ["a:1", "b:2"], "labels": {"agent_type": "w"}}]"#;
        let yaml = b"- targets: [a:1, b:2]\n  labels: {agent_type: w}\n";
        assert_eq!(
            parse_groups(json, false).unwrap(),
            parse_groups(yaml, true).unwrap()
        );
        assert!(parse_groups(br#"[{"targets": [], "labels": {"a-b": "x"}}]"#, false).is_err());
        let expanded = expand_groups(
            parse_groups(json, false).unwrap(),
            &[("__meta_url", "u")],
            "u",
            2,
        )
        .unwrap();
        assert_eq!(expanded.len(), 2);
        let beyond = expand_groups(parse_groups(json, false).unwrap(), &[], "u", 1);
        assert_eq!(
            beyond.map(|d| d.len()),
            Err("2 targets, more than max_targets 1; raise max_targets or split the source".into())
        );
        assert_eq!(expanded[1].labels["__address__"], "b:2");
        assert_eq!(expanded[1].labels["__meta_url"], "u");
    }
}
