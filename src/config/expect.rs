//! The `expect:` and `degraded:` sections: what a response must show to count as success, and
//! what makes a success `degraded`.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::layer::{DegradedLayer, ExpectLayer};
use super::raw::{RawDegraded, RawExpect};
use super::resolve::Resolver;
use super::spec::JsonMatch;
use super::values::{parse_status, status_text, valid_json_pointer};

impl Resolver {
    pub(super) fn expect_layer(&mut self, raw: RawExpect) -> ExpectLayer {
        let mut layer = ExpectLayer::default();
        if let Some(status) = &raw.status {
            let mut accepted = Vec::new();
            for item in status.value.to_vec() {
                match parse_status(&item) {
                    Some(m) => accepted.push(m),
                    None => self.issue(
                        status.referenced,
                        format!(
                            "expect.status: {} is not a status code or class",
                            status_text(&item)
                        ),
                        "use codes such as 200 or classes such as \"2xx\"",
                    ),
                }
            }
            layer.status = Some(accepted);
        }
        layer.body_contains = raw.body_contains.map(|s| s.value);
        if let Some(pattern) = &raw.body_regex {
            match regex::Regex::new(&pattern.value) {
                Ok(re) => layer.body_regex = Some(re.into()),
                Err(e) => self.issue(
                    pattern.referenced,
                    format!(
                        "expect.body_regex is not a valid regular expression: {}",
                        e.to_string().lines().last().unwrap_or_default().trim()
                    ),
                    "fix the pattern (Rust regex syntax; no look-around or backreferences)",
                ),
            }
        }
        layer.json = self.json_pointers(raw.json.as_ref(), "expect.json");
        layer
    }

    pub(super) fn degraded_layer(&mut self, raw: RawDegraded) -> DegradedLayer {
        DegradedLayer {
            latency_above: self.duration(raw.latency_above.as_ref(), "degraded.latency_above"),
            json: self.json_pointers(raw.json.as_ref(), "degraded.json"),
        }
    }

    /// The entries whose key is a valid JSON Pointer; the others are reported.
    pub(super) fn json_pointers(
        &mut self,
        raw: Option<&Spanned<BTreeMap<String, serde_json::Value>>>,
        key: &str,
    ) -> BTreeMap<String, serde_json::Value> {
        let Some(raw) = raw else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (pointer, value) in &raw.value {
            if valid_json_pointer(pointer) {
                out.insert(pointer.clone(), value.clone());
            } else {
                self.issue(
                    raw.referenced,
                    format!("{key}: {pointer:?} is not a JSON Pointer (RFC 6901)"),
                    "start it with / and escape ~ as ~0 and / as ~1, e.g. \"/status\"",
                );
            }
        }
        out
    }
}

/// The merged pointers in pointer order, as the probe checks them.
pub(super) fn json_matches(pointers: BTreeMap<String, serde_json::Value>) -> Vec<JsonMatch> {
    pointers
        .into_iter()
        .map(|(pointer, value)| JsonMatch { pointer, value })
        .collect()
}
