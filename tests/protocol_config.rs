//! The protocol sections (`grpc:`, `protocol:`, `mcp:`, `a2a:`) behave like every other check
//! key: a check template sets them, an agent's own keys merge over them, reload equality sees
//! them, and a rotated `metadata_files` secret is adopted in place. No peers needed.

use std::path::Path;

use agent_health_exporter::config::{self, ConfigError, Target};

fn parse(yaml: &str) -> config::Config {
    config::parse(yaml, "fleet.yaml", Path::new("/nonexistent-dir"))
        .unwrap_or_else(|e| panic!("config does not load: {e}\n{yaml}"))
}

fn errors(yaml: &str) -> String {
    match config::parse(yaml, "fleet.yaml", Path::new("/nonexistent-dir")) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(ConfigError::Invalid(issues)) => issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_check_sets_the_grpc_section_and_the_agent_merges_over_it_key_by_key() {
    let config = parse(
        "checks:\n  health:\n    timeout: 1s\n    grpc: {service: pkg.Svc, metadata: {x-a: one, x-b: check}, watch: true}\n\
         agents:\n  - name: g\n    type: t\n    check: health\n    url: grpc://127.0.0.1:50051\n    grpc: {metadata: {x-b: own}}\n",
    );
    let spec = &config.agents[0].spec;
    let Target::Grpc(grpc) = &spec.target else {
        panic!("not a grpc target: {:?}", spec.target);
    };
    assert_eq!(grpc.service, "pkg.Svc");
    assert!(grpc.watch);
    let metadata: Vec<(String, String)> = grpc
        .metadata
        .iter()
        .map(|(k, v)| {
            let value = v.value().expect("plain value");
            (k.to_string(), value.to_str().expect("ascii").to_owned())
        })
        .collect();
    assert_eq!(
        metadata,
        [
            ("x-a".to_owned(), "one".to_owned()),
            ("x-b".to_owned(), "own".to_owned())
        ]
    );
}

#[test]
fn a_check_makes_its_http_agents_mcp_or_a2a() {
    let config = parse(
        "checks:\n  tools: {protocol: mcp, mcp: {expect_tools: [search]}}\n  cards: {protocol: a2a, a2a: {expect_skills: [book]}}\n\
         agents:\n  - {name: t, type: tools, url: 'http://127.0.0.1:8000/mcp'}\n  - {name: c, type: cards, url: 'http://127.0.0.1:9999/'}\n",
    );
    match &config.agents[0].spec.target {
        Target::Mcp(mcp) => assert_eq!(mcp.expect_tools, ["search"]),
        other => panic!("not mcp: {other:?}"),
    }
    match &config.agents[1].spec.target {
        Target::A2a(a2a) => assert_eq!(a2a.expect_skills, ["book"]),
        other => panic!("not a2a: {other:?}"),
    }
}

#[test]
fn a_checks_protocol_section_on_an_agent_that_cannot_use_it_is_reported() {
    let grpc_on_http = errors(
        "checks:\n  health: {grpc: {service: x}}\n\
         agents:\n  - {name: h, type: health, url: 'http://127.0.0.1:1/'}\n",
    );
    assert!(
        grpc_on_http.contains("`grpc` applies only to grpc:// and grpcs:// agents"),
        "{grpc_on_http}"
    );
    let mcp_on_grpc = errors(
        "checks:\n  tools: {protocol: mcp}\n\
         agents:\n  - {name: g, type: tools, url: 'grpc://127.0.0.1:1'}\n",
    );
    assert!(
        mcp_on_grpc.contains("protocol \"mcp\" does not fit this URL"),
        "{mcp_on_grpc}"
    );
    let expect_on_a2a = errors(
        "agents:\n  - {name: c, type: t, url: 'http://127.0.0.1:1/', protocol: a2a, expect: {body_contains: ok}}\n",
    );
    assert!(
        expect_on_a2a.contains("`expect` does not apply to `protocol: a2a`"),
        "{expect_on_a2a}"
    );
}

#[test]
fn every_grpc_key_takes_part_in_spec_equality() {
    let spec = |grpc: &str| {
        let yaml = format!(
            "agents:\n  - {{name: g, type: t, url: 'grpc://127.0.0.1:1', grpc: {{{grpc}}}}}\n"
        );
        parse(&yaml).agents[0].spec.clone()
    };
    let base = spec("service: a");
    assert_eq!(base, spec("service: a"));
    for other in [
        "service: b",
        "service: a, metadata: {x-a: one}",
        "service: a, authority: other.internal",
        "service: a, watch: true",
    ] {
        assert_ne!(base, spec(other), "{other}");
    }
}

#[test]
fn a_rotated_metadata_file_keeps_the_spec_equal_and_is_adopted_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("auth");
    std::fs::write(&secret, "Bearer one\n").expect("write");
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        "agents:\n  - name: g\n    type: t\n    url: grpc://127.0.0.1:1\n    grpc: {metadata_files: {authorization: auth}}\n",
    )
    .expect("write");
    let first = config::load(&path).expect("valid");
    std::fs::write(&secret, "Bearer two\n").expect("write");
    let changed = config::load(&path).expect("valid");
    assert_eq!(first.agents[0].spec, changed.agents[0].spec);
    assert!(first.agents[0].spec.adopt_secrets(&changed.agents[0].spec));
    let Target::Grpc(grpc) = &first.agents[0].spec.target else {
        panic!("not a grpc target");
    };
    let value = grpc.metadata[0].1.value().expect("a header value");
    assert!(value.is_sensitive(), "a secret value is never logged");
    assert_eq!(value.to_str().expect("ascii"), "Bearer two");
    assert!(!first.agents[0].spec.adopt_secrets(&changed.agents[0].spec));
}

#[test]
fn degraded_json_on_an_mcp_agent_is_an_error_at_its_place_and_latency_above_is_kept() {
    let json_on_mcp = errors(
        "checks:\n  tools:\n    protocol: mcp\n    degraded:\n      json: {/status: slow}\n\
         agents:\n  - {name: m, type: tools, url: 'http://127.0.0.1:1/mcp'}\n",
    );
    assert!(
        json_on_mcp.contains("fleet.yaml:5:")
            && json_on_mcp.contains("`degraded.json` does not apply to `protocol: mcp`"),
        "{json_on_mcp}"
    );
    for protocol in ["mcp", "a2a"] {
        let config = parse(&format!(
            "agents:\n  - {{name: p, type: t, url: 'http://127.0.0.1:1/', protocol: {protocol}, degraded: {{latency_above: 1s}}}}\n"
        ));
        let spec = &config.agents[0].spec;
        assert_eq!(
            spec.degraded.latency_above,
            Some(std::time::Duration::from_secs(1)),
            "{protocol}"
        );
    }
    let card = parse(
        "agents:\n  - {name: c, type: t, url: 'http://127.0.0.1:1/', protocol: a2a, degraded: {json: {/version: '0.9'}}}\n",
    );
    assert_eq!(
        card.agents[0].spec.degraded.json.len(),
        1,
        "the card's JSON rules stay"
    );
}
