use std::path::Path;
use std::time::{Duration, SystemTime};

use super::reference::FleetCollector;
use super::walk::rows;
use super::*;
use crate::probe::{FailureReason, Outcome, Phases, ProbeResult};

/// Three agents: one never probed, one healthy (over several buckets, with labels that need
/// escaping), one failing.
fn fleet() -> Arc<Monitor> {
    let yaml = "defaults:\n  labels: {team: \"a\\\\b\\\"c\\nd\"}\nagents:\n\
        - {name: idle, type: t, url: 'http://127.0.0.1:1/'}\n\
        - {name: ok, type: t, url: 'https://127.0.0.1:1/', labels: {zone: x}}\n\
        - {name: down, type: u, url: 'tcp://127.0.0.1:1', interval: 1500ms}\n";
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
    let ok = &duration.metric[2].histogram.as_ref().unwrap();
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
