//! The `protocol:` key and the `mcp:` section: an http(s) agent with `protocol: mcp` is probed
//! as a streamable-HTTP MCP endpoint (`protocol: a2a`: see a2a.rs). Resolved here into
//! `Target::Mcp`/`Target::A2a`, after the `http` section, which applies to both.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hash;
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::a2a::{A2aTarget, RawA2a};
use super::resolve::Resolver;
use super::spec::Target;

/// `mcp:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// Tools `tools/list` must name.
    pub expect_tools: Option<Spanned<Vec<String>>>,
}

/// An MCP endpoint, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct McpTarget {
    pub url: url::Url,
    /// Empty: `tools/list` is not called.
    pub expect_tools: Vec<String>,
}

/// The protocol-specific keys of one agent, as written.
pub(super) struct RawProtocol {
    pub protocol: Option<Spanned<String>>,
    pub mcp: Option<Spanned<RawMcp>>,
    pub a2a: Option<Spanned<RawA2a>>,
    /// Where `expect:` is, if given: it has no meaning for mcp and a2a.
    pub expect: Option<Location>,
}

impl Resolver {
    /// Turns an http(s) target into an MCP or A2A one when `protocol:` says so; rejects the
    /// `mcp`/`a2a` sections where they do not apply.
    pub(super) fn protocol_section(
        &mut self,
        target: Target,
        raw: RawProtocol,
        what: &str,
        fingerprint: &mut DefaultHasher,
    ) -> Option<Target> {
        let protocol = raw.protocol.as_ref().map(|p| p.value.as_str());
        let at = raw.protocol.as_ref().map(|p| p.referenced);
        let url = match (&target, protocol) {
            (_, None) => None,
            (Target::Http(url), Some("mcp" | "a2a")) => Some(url.clone()),
            (Target::Http(_), Some("http")) => None,
            (_, Some(other)) => {
                let hint = if matches!(other, "http" | "mcp" | "a2a") {
                    "protocol applies to http:// and https:// URLs; grpc and tcp come from the URL scheme"
                } else {
                    "use http, mcp or a2a"
                };
                self.issue(
                    at.unwrap_or(Location::UNKNOWN),
                    format!("{what}: protocol {other:?} does not fit this URL"),
                    hint,
                );
                return None;
            }
        };
        for (section, place, wanted) in [
            ("mcp", raw.mcp.as_ref().map(|s| s.referenced), "mcp"),
            ("a2a", raw.a2a.as_ref().map(|s| s.referenced), "a2a"),
        ] {
            if let (Some(place), false) = (place, protocol == Some(wanted)) {
                self.issue(
                    place,
                    format!("{what}: `{section}` applies only with `protocol: {wanted}`"),
                    format!("add `protocol: {wanted}` or remove `{section}`"),
                );
                return None;
            }
        }
        let Some(url) = url else {
            return Some(target);
        };
        if let Some(place) = raw.expect {
            self.issue(
                place,
                format!(
                    "{what}: `expect` does not apply to `protocol: {}`",
                    protocol.unwrap_or_default()
                ),
                "remove `expect`; the protocol's own checks apply",
            );
            return None;
        }
        protocol.hash(fingerprint);
        if protocol == Some("mcp") {
            let expect_tools = raw
                .mcp
                .and_then(|m| m.value.expect_tools)
                .map(|t| t.value)
                .unwrap_or_default();
            let mcp = McpTarget { url, expect_tools };
            mcp.hash(fingerprint);
            Some(Target::Mcp(Arc::new(mcp)))
        } else {
            let expect_skills = raw
                .a2a
                .and_then(|a| a.value.expect_skills)
                .map(|s| s.value)
                .unwrap_or_default();
            let a2a = A2aTarget { url, expect_skills };
            a2a.hash(fingerprint);
            Some(Target::A2a(Arc::new(a2a)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, Target};

    fn issues(agent: &str) -> String {
        let yaml = format!("agents:\n  - name: p\n    type: t\n{agent}");
        match parse(&yaml, "t.yaml", Path::new(".")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn protocol_turns_an_http_agent_into_mcp_or_a2a_keeping_its_http_section() {
        let yaml = "agents:\n  - name: p\n    type: t\n    url: https://127.0.0.1:1/mcp\n    \
                    protocol: mcp\n    http: {headers: {X-Probe: \"1\"}}\n    mcp: {expect_tools: [a]}\n";
        let config = parse(yaml, "t.yaml", Path::new(".")).unwrap();
        let spec = &config.agents[0].spec;
        let Target::Mcp(mcp) = &spec.target else {
            panic!("not mcp");
        };
        assert_eq!(mcp.expect_tools, ["a"]);
        assert_eq!(spec.http.headers.len(), 1);
        assert!(spec.http.tls.is_some(), "https keeps its TLS setup");
    }

    #[test]
    fn misplaced_protocol_keys_are_reported() {
        let expect = issues(
            "    url: http://127.0.0.1:1/\n    protocol: a2a\n    expect: {body_contains: ok}\n",
        );
        assert!(
            expect.contains("`expect` does not apply to `protocol: a2a`"),
            "{expect}"
        );
        let section = issues("    url: http://127.0.0.1:1/\n    mcp: {expect_tools: [a]}\n");
        assert!(
            section.contains("`mcp` applies only with `protocol: mcp`"),
            "{section}"
        );
        let grpc = issues("    url: grpc://127.0.0.1:1\n    protocol: mcp\n");
        assert!(
            grpc.contains("protocol \"mcp\" does not fit this URL"),
            "{grpc}"
        );
        let unknown = issues("    url: http://127.0.0.1:1/\n    protocol: soap\n");
        assert!(unknown.contains("use http, mcp or a2a"), "{unknown}");
    }
}
