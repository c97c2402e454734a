//! The `protocol:` key and the `mcp:` section: an http(s) agent with `protocol: mcp` is probed
//! as a streamable-HTTP MCP endpoint (`protocol: a2a`: see a2a.rs). Resolved here into
//! `Target::Mcp`/`Target::A2a` from the merged layers (a check may set them), with the `http`
//! section, which applies to both; also where each section may be used (`section_misplaced`).

use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::a2a::A2aTarget;
use super::layer::{HttpLayer, Layer, Protocol};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTarget {
    pub url: url::Url,
    /// Empty: `tools/list` is not called.
    pub expect_tools: Vec<String>,
}

impl Resolver {
    /// The agent's target once its protocol and sections are applied (`protocol: mcp | a2a`
    /// on an http(s) URL, `grpc:` on a grpc(s) one), with the `http` layer its probe uses.
    /// None (with an issue) when `protocol:` does not fit the URL.
    pub(super) fn protocol_target(
        &mut self,
        target: Target,
        merged: &mut Layer,
        what: &str,
    ) -> Option<(Target, HttpLayer)> {
        let protocol = merged.protocol.clone();
        let http = std::mem::take(&mut merged.http);
        match (target, protocol.as_ref().map(|p| p.value)) {
            (Target::Http(url), Some(Protocol::Mcp)) => {
                let expect_tools = merged.expect_tools.clone().unwrap_or_default();
                Some((Target::Mcp(Arc::new(McpTarget { url, expect_tools })), http))
            }
            (Target::Http(url), Some(Protocol::A2a)) => {
                let expect_skills = merged.expect_skills.clone().unwrap_or_default();
                Some((
                    Target::A2a(Arc::new(A2aTarget { url, expect_skills })),
                    http,
                ))
            }
            (target, None | Some(Protocol::Http)) => match target {
                Target::Grpc(bare) => {
                    let grpc = std::mem::take(&mut merged.grpc);
                    self.grpc_target(&bare, grpc, what)
                }
                other => Some((other, http)),
            },
            (_, Some(other)) => {
                let at = protocol.map_or(Location::UNKNOWN, |p| p.at);
                self.issue(
                    at,
                    format!("{what}: protocol {:?} does not fit this URL", other.name()),
                    "protocol applies to http:// and https:// URLs; grpc and tcp come from the URL scheme",
                );
                None
            }
        }
    }
}

/// Why a section written for the agent (or its check) cannot apply to its target, with the
/// fix; None when it applies.
pub(super) fn section_misplaced(section: &str, target: &Target) -> Option<(String, String)> {
    let over_http = matches!(target, Target::Http(_) | Target::Mcp(_) | Target::A2a(_));
    let (fits, problem, fix) = match section {
        "grpc" => (
            matches!(target, Target::Grpc(_)),
            "`grpc` applies only to grpc:// and grpcs:// agents".to_owned(),
            "remove `grpc` or use a grpc://host:port URL".to_owned(),
        ),
        "mcp" | "a2a" => (
            matches!(
                (section, target),
                ("mcp", Target::Mcp(_)) | ("a2a", Target::A2a(_))
            ),
            format!("`{section}` applies only with `protocol: {section}`"),
            format!("add `protocol: {section}` or remove `{section}`"),
        ),
        // An MCP answer has no document of the agent's to read JSON rules on; an a2a agent's
        // are read on its card. Elsewhere `degraded` itself is reported.
        "degraded.json" => (
            !matches!(target, Target::Mcp(_)),
            "`degraded.json` does not apply to `protocol: mcp`: its answers hold no document of the agent's".to_owned(),
            "remove `degraded.json`; `degraded.latency_above` applies to mcp".to_owned(),
        ),
        "expect" if over_http && !matches!(target, Target::Http(_)) => {
            let protocol = if matches!(target, Target::Mcp(_)) {
                "mcp"
            } else {
                "a2a"
            };
            (
                false,
                format!("`expect` does not apply to `protocol: {protocol}`"),
                "remove `expect`; the protocol's own checks apply".to_owned(),
            )
        }
        _ => (
            over_http,
            format!("`{section}` applies only to http:// and https:// agents"),
            format!("remove `{section}` or use an http(s) URL"),
        ),
    };
    (!fits).then_some((problem, fix))
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
        assert!(unknown.contains("use one of: http, mcp, a2a"), "{unknown}");
    }
}
