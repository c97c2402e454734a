use std::path::Path;
use std::time::{Duration, SystemTime};

use super::reference::FleetCollector;
use super::walk::rows;
use super::*;
use crate::probe::{FailureReason, Outcome, Phases, ProbeResult};

/// Six agents: one never probed, one healthy (over several buckets, with labels that need
/// escaping), one failing, a grpc agent never probed (status -1), one with a non-OK gRPC
/// status and an open Watch stream, an MCP agent whose self-description needs escaping, and an
/// agent with a streaming chat canary that ran twice.
fn fleet() -> Arc<Monitor> {
    let yaml = "defaults:\n  labels: {team: \"a\\\\b\\\"c\\nd\"}\nagents:\n\
        - {name: idle, type: t, url: 'http://127.0.0.1:1/'}\n\
        - {name: ok, type: t, url: 'https://127.0.0.1:1/', labels: {zone: x}}\n\
        - {name: down, type: u, url: 'tcp://127.0.0.1:1', interval: 1500ms}\n\
        - {name: rpc, type: g, url: 'grpc://127.0.0.1:1'}\n\
        - {name: rpc2, type: g, url: 'grpc://127.0.0.1:2', grpc: {watch: true}}\n\
        - {name: tools, type: m, url: 'http://127.0.0.1:1/mcp', protocol: mcp}\n\
        - {name: llm, type: l, url: 'http://127.0.0.1:1/health', canary: {openai: {model: m, prompt: p, stream: true}}}\n";
    let config = crate::config::parse(yaml, "t.yaml", Path::new(".")).expect("valid config");
    let monitor = Arc::new(Monitor::new(10));
    let agents: Vec<_> = config.agents.iter().map(|a| monitor.insert(a)).collect();
    let probe = |ms: u64, outcome: Outcome| ProbeResult {
        ended_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123 + ms),
        duration: Duration::from_micros(ms * 997),
        phases: Phases {
            connect: Duration::from_micros(ms * 3),
            first_byte: Duration::from_nanos(3_747),
            ..Phases::default()
        },
        http_status: Some(200),
        cert_expiry: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
        protocol: Default::default(),
        outcome,
    };
    for ms in [0, 1, 2, 3, 40, 600, 12_000] {
        monitor.record(&agents[1], probe(ms, Outcome::Healthy));
    }
    let failed = Outcome::Failed {
        reason: FailureReason::Connect,
        error: "refused".into(),
    };
    monitor.record(&agents[2], probe(5, failed.clone()));
    monitor.record(&agents[2], probe(7, failed));
    let mut unimplemented = probe(8, Outcome::Healthy);
    unimplemented.protocol.grpc_status = Some(12);
    monitor.record(&agents[4], unimplemented);
    agents[4].state().grpc_watch_up = true;
    // What an agent says of itself ends up in labels: quotes and backslashes are escaped.
    let mut reported = probe(9, Outcome::Healthy);
    reported.protocol.info = Some(Arc::new(crate::probe::ProtocolInfo::reported(
        "mcp",
        "tools \"x\"\\y",
        "1.0\nbeta",
        "2025-06-18",
    )));
    monitor.record(&agents[5], reported);
    for (ms, reason) in [
        (800, None),
        (70_000, Some(crate::probe::CanaryReason::Timeout)),
    ] {
        let outcome = match reason {
            None => crate::probe::CanaryOutcome::Success,
            Some(reason) => crate::probe::CanaryOutcome::Failed {
                reason,
                error: "slow".into(),
            },
        };
        monitor.record_canary(
            &agents[6],
            crate::probe::CanaryResult {
                kind: "openai",
                ended_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123 + ms),
                duration: Duration::from_millis(ms),
                first_token: reason.is_none().then(|| Duration::from_millis(ms / 8)),
                outcome,
                reply: "pong".into(),
                usage: reason.is_none().then_some(crate::probe::Usage {
                    prompt: 9,
                    completion: 2,
                }),
            },
        );
    }
    monitor
}

/// The fleet's families as prometheus-client writes them.
fn reference(monitor: &Arc<Monitor>, dialect: Dialect) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FleetCollector {
        monitor: monitor.clone(),
    }));
    let mut out = String::new();
    match dialect {
        Dialect::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Dialect::OpenMetrics => {
            prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        }
    }
    .unwrap();
    out
}

#[test]
fn fast_text_encoding_writes_the_bytes_prometheus_client_writes() {
    let monitor = fleet();
    for dialect in [Dialect::Prometheus, Dialect::OpenMetrics] {
        let mut fast = String::new();
        let mut rest = String::new();
        let mut flush = |piece: &mut String| {
            fast.push_str(piece);
            piece.clear();
        };
        fleet_text::encode(&mut rest, &rows(&monitor, false), 0, dialect, &mut flush);
        fast.push_str(&rest);
        let expected = reference(&monitor, dialect);
        for (i, (a, b)) in fast.lines().zip(expected.lines()).enumerate() {
            assert_eq!(a, b, "{dialect:?}, line {}", i + 1);
        }
        assert_eq!(fast, expected, "{dialect:?}");
    }
}

#[test]
fn fast_protobuf_encoding_holds_the_messages_prometheus_client_builds() {
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily;
    use prost::Message;

    let monitor = fleet();
    let mut fast = Vec::new();
    let mut rest = Vec::new();
    fleet_protobuf::encode(&mut rest, &rows(&monitor, true), 0, &mut |piece| {
        fast.append(piece)
    });
    fast.append(&mut rest);
    let mut decoded = Vec::new();
    let mut rest = fast.as_slice();
    while !rest.is_empty() {
        decoded.push(MetricFamily::decode_length_delimited(&mut rest).expect("a frame"));
    }

    let mut registry = Registry::default();
    registry.register_collector(Box::new(FleetCollector { monitor }));
    let expected = prometheus_client::encoding::prometheus_protobuf::encode(&registry).unwrap();
    assert_eq!(decoded.len(), expected.len());
    for (a, b) in decoded.iter().zip(&expected) {
        assert_eq!(a, b, "family {}", b.name);
    }
    // The fixture reaches every kind of field: native buckets with a gap, labels that need
    // escaping in text, series that only exist after a probe.
    let duration = &expected[4];
    let ok = duration
        .metric
        .iter()
        .find(|m| m.label.iter().any(|l| l.name == "agent" && l.value == "ok"))
        .and_then(|m| m.histogram.as_ref())
        .unwrap();
    assert_eq!(duration.name, "agent_probe_duration_seconds");
    assert!(ok.positive_span.len() > 1, "{ok:?}");
    assert_eq!(ok.zero_count, 1);
    // And the bytes are what prost writes for the same messages.
    let mut reencoded = Vec::new();
    for family in &expected {
        family.encode_length_delimited(&mut reencoded).unwrap();
    }
    assert_eq!(fast, reencoded);
}

#[test]
fn every_format_holds_the_fleet_and_the_exporters_own_metrics() {
    let metrics = Metrics::new(
        fleet(),
        Arc::new(ExporterMetrics::default()),
        BuildInfo {
            version: "1",
            revision: "r",
            rustc: "1.85",
        },
    );
    for format in [Format::Text, Format::OpenMetrics] {
        let text = String::from_utf8(metrics.encode(format).unwrap()).unwrap();
        assert!(text.contains("agent_exporter_build_info{"), "{format:?}");
        assert!(text.contains("\nagent_up{agent=\"ok\""), "{format:?}");
        assert!(text.contains("\nprocess_"), "{format:?}");
        assert_eq!(
            text.ends_with("# EOF\n"),
            format == Format::OpenMetrics,
            "{format:?}"
        );
    }
    let protobuf = metrics.encode(Format::Protobuf).unwrap();
    let needle = b"agent_probe_duration_seconds";
    assert!(protobuf.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn grpc_status_and_protocol_info_show_what_protocol_agents_reported() {
    let monitor = fleet();
    let mut text = String::new();
    fleet_text::encode(
        &mut text,
        &rows(&monitor, false),
        0,
        Dialect::Prometheus,
        &mut |_| {},
    );
    let line = |agent: &str, family: &str| {
        text.lines()
            .find(|l| l.starts_with(family) && l.contains(&format!("agent=\"{agent}\"")))
            .map(str::to_owned)
    };
    let never = line("rpc", "agent_grpc_status_code{").expect("grpc agent has a status");
    assert!(never.ends_with(" -1.0"), "{never}");
    let code = line("rpc2", "agent_grpc_status_code{").expect("grpc agent has a status");
    assert!(code.ends_with(" 12.0"), "{code}");
    assert_eq!(
        line("ok", "agent_grpc_status_code{"),
        None,
        "http agents have none"
    );
    let info = line("tools", "agent_protocol_info{").expect("mcp agent has info");
    assert!(
        info.contains(r#"protocol="mcp",server_name="tools \"x\"\\y",server_version="1.0beta",protocol_version="2025-06-18"} 1"#),
        "{info}"
    );
    let watch = line("rpc2", "agent_grpc_watch_up{").expect("a watching agent has the gauge");
    assert!(watch.ends_with(" 1"), "{watch}");
    assert_eq!(
        line("rpc", "agent_grpc_watch_up{"),
        None,
        "grpc agents without watch have none"
    );
    let bare = line("rpc", "agent_protocol_info{").expect("grpc agent has info");
    assert!(bare.contains(r#"protocol="grpc",server_name="""#), "{bare}");
    assert_eq!(
        line("down", "agent_protocol_info{"),
        None,
        "tcp agents have none"
    );
}

/// The label names of a text series line, in order (values may hold escaped quotes).
fn label_names(line: &str) -> Vec<String> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut rest = &line[open + 1..];
    while let Some(eq) = rest.find("=\"") {
        names.push(rest[..eq].trim_start_matches(',').to_owned());
        rest = &rest[eq + 2..];
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                let quote = *c == '"' && !escaped;
                escaped = *c == '\\' && !escaped;
                quote
            })
            .map_or(rest.len(), |(i, _)| i);
        rest = &rest[(end + 1).min(rest.len())..];
        if rest.starts_with('}') {
            break;
        }
    }
    names
}

#[test]
fn every_label_name_a_family_writes_is_reserved_and_every_reserved_name_is_written() {
    let monitor = fleet();
    let mut text = String::new();
    fleet_text::encode(
        &mut text,
        &rows(&monitor, false),
        0,
        Dialect::OpenMetrics,
        &mut |_| {},
    );
    // The fixture's own labels are the user's, not the exporter's.
    let user = ["team", "zone"];
    let mut written: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(label_names)
        .filter(|n| !user.contains(&n.as_str()))
        .collect();
    written.sort();
    written.dedup();
    assert_eq!(written, reserved_label_names(), "{text}");
    for family in families::FAMILIES {
        for name in family.label_names() {
            assert!(
                reserved_label_names().contains(&name),
                "{}: {name}",
                family.name
            );
        }
    }
}

#[test]
fn protocol_info_keeps_what_the_agent_said_last_through_failed_probes() {
    let monitor = fleet();
    let tools = monitor.agent("tools").expect("the mcp agent");
    monitor.record(
        &tools,
        ProbeResult {
            ended_at: SystemTime::now(),
            duration: Duration::from_millis(5),
            phases: Phases::default(),
            http_status: None,
            cert_expiry: None,
            protocol: Default::default(),
            outcome: Outcome::Failed {
                reason: FailureReason::Connect,
                error: "refused".into(),
            },
        },
    );
    let mut text = String::new();
    fleet_text::encode(
        &mut text,
        &rows(&monitor, false),
        0,
        Dialect::Prometheus,
        &mut |_| {},
    );
    let info = text
        .lines()
        .find(|l| l.starts_with("agent_protocol_info{agent=\"tools\""))
        .expect("the mcp agent's info series");
    assert!(
        info.contains(r#"server_name="tools \"x\"\\y",server_version="1.0beta",protocol_version="2025-06-18"} 1"#),
        "{info}"
    );
    assert!(
        text.contains("agent_up{agent=\"tools\",agent_type=\"m\",team=\"a\\\\b\\\"c\\nd\"} 0"),
        "the failure is recorded"
    );
}
