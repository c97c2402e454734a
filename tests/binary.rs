//! The built binary as a user runs it: flags, `--config.check`, serving, signals.

mod harness;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use harness::binary::command as exporter;
use harness::{get, metric, request, wait_for, Binary};

#[test]
fn version_prints_version_revision_and_rustc() {
    let out = exporter().arg("--version").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("revision: "), "{text}");
    assert!(text.contains("rustc: 1."), "{text}");
}

#[test]
fn config_check_prints_one_line_per_agent_and_exits_0() {
    let out = exporter()
        .arg(format!(
            "--config.file={}",
            harness::repo_file("config.example.yaml").display()
        ))
        .arg("--config.check")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let agent_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("agent=")).collect();
    // The example's five HTTP/TCP agents, then its grpc, mcp and a2a ones.
    assert_eq!(agent_lines.len(), 8, "{text}");
    assert!(
        agent_lines[5].contains("target=grpc://127.0.0.1:50051")
            && agent_lines[6].contains("target=http://127.0.0.1:8000/mcp")
            && agent_lines[7].contains("target=http://127.0.0.1:9999/"),
        "{text}"
    );
    assert!(
        agent_lines[0].contains("type=exporter")
            && agent_lines[0].contains("target=http://127.0.0.1:10056/-/healthy")
            && agent_lines[0].contains("interval=15s")
            && agent_lines[0].contains("timeout=5s"),
        "{text}"
    );
}

#[test]
fn config_check_prints_every_error_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "agents:\n  - name: a\n    type: t\n    url: ftp://x/\n  - name: a\n    type: t\n    url: http://h/\n",
    )
    .expect("write");
    let out = exporter()
        .arg(format!("--config.file={}", path.display()))
        .arg("--config.check")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.contains("bad.yaml:4:10:"), "{errors}");
    assert!(errors.contains("bad.yaml:5:11:"), "{errors}");
}

/// Discovered agents are listed too: each source asked once, its agents with their origin, its
/// dropped targets by reason, a failing source with its error; the config is still valid.
#[test]
fn config_check_lists_discovered_agents_with_their_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("targets.json"),
        r#"[{"targets": ["127.0.0.1:9101"], "labels": {"agent": "w1", "zone": "a"}},
            {"targets": ["127.0.0.1:9102"], "labels": {"agent": "planner"}},
            {"targets": ["127.0.0.1:9103"], "labels": {}},
            {"targets": ["127.0.0.1:9104"], "labels": {"agent": "w4", "__check__": "nope"}}]"#,
    )
    .expect("write targets");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = closed.local_addr().expect("addr");
    drop(closed);
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "checks: {{worker: {{interval: 10s}}}}\n\
             agents:\n  - {{name: planner, type: planner, url: \"http://127.0.0.1:9100/health\"}}\n\
             discovery:\n  - file_sd: {{files: [targets.json]}}\n    type: worker\n\
             \x20 - http_sd: {{url: \"http://{refused}/sd\", timeout: 2s}}\n"
        ),
    )
    .expect("write config");
    let out = exporter()
        .arg(format!("--config.file={}", path.display()))
        .arg("--config.check")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let agents: Vec<&&str> = lines.iter().filter(|l| l.starts_with("agent=")).collect();
    assert_eq!(agents.len(), 2, "{text}");
    assert!(agents[0].starts_with("agent=planner "), "{text}");
    assert!(
        agents[1].starts_with(
            "agent=w1 type=worker check=worker target=http://127.0.0.1:9101/health interval=10s"
        ) && agents[1].contains(&format!(
            "origin=\"file_sd/0 file={}\"",
            dir.path().join("targets.json").display()
        )),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("source=file_sd/0 invalid target:") && l.contains("nope")),
        "{text}"
    );
    assert!(
        lines.contains(
            &"source=file_sd/0 targets=4 agents=1 dropped_missing_name=1 dropped_invalid=1 dropped_duplicate_name=1"
        ),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("source=http_sd/0 failed: ")),
        "{text}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("config is valid, 2 agents")),
        "{text}"
    );

    // Each shard lists only its part of the discovered agents: w1 in exactly one of two.
    let listed: usize = (0..2)
        .map(|index| {
            let out = exporter()
                .arg(format!("--config.file={}", path.display()))
                .arg("--config.check")
                .arg("--shard.count=2")
                .arg(format!("--shard.index={index}"))
                .output()
                .expect("run");
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("agent=w1 "))
                .count()
        })
        .sum();
    assert_eq!(listed, 1);
}

#[test]
fn self_probing_agent_is_healthy_within_one_interval() {
    let exporter = Binary::start(
        "agents:\n  - name: self\n    type: exporter\n    url: http://127.0.0.1:{PORT}/-/healthy\n    interval: 1s\n    timeout: 500ms\n",
        &[],
    );
    let healthy = wait_for(Duration::from_millis(2500), || {
        let text = exporter.metrics();
        (metric(
            &text,
            "agent_health_status{agent=\"self\",agent_type=\"exporter\",status=\"healthy\"}",
        ) == Some(1.0))
        .then_some(())
    });
    assert!(healthy.is_some(), "logs:\n{}", exporter.logs());
}

#[test]
fn sigterm_stops_the_exporter_with_exit_0_within_5_seconds() {
    let mut exporter = Binary::start(
        "agents:\n  - name: self\n    type: exporter\n    url: http://127.0.0.1:{PORT}/-/healthy\n    interval: 200ms\n    timeout: 100ms\n",
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    exporter.signal("TERM");
    let status = exporter
        .exited_within(Duration::from_secs(5))
        .expect("exporter still running 5 s after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(exporter.logs().contains("stopped"), "{}", exporter.logs());
}

#[test]
fn sigint_stops_the_exporter_with_exit_0() {
    let mut exporter = Binary::start("agents: []\n", &[]);
    exporter.signal("INT");
    let status = exporter.exited_within(Duration::from_secs(5));
    assert!(status.expect("still running").success());
}

#[test]
fn broken_config_at_start_exits_1_with_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "agents:\n  - name: a\n").expect("write");
    let out = exporter()
        .arg(format!("--config.file={}", path.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("level=error"), "{logs}");
    assert!(logs.contains("missing required key"), "{logs}");
}

#[test]
fn health_ready_and_landing_page_answer() {
    let exporter = Binary::start("agents: []\n", &[]);
    assert_eq!(get(exporter.addr, "/-/healthy").expect("get").status, 200);
    assert_eq!(get(exporter.addr, "/-/ready").expect("get").status, 200);
    let page = get(exporter.addr, "/").expect("get");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("metrics\""), "no link to the metrics");
    assert_eq!(get(exporter.addr, "/nope").expect("get").status, 404);
}

#[test]
fn telemetry_path_flag_moves_the_metrics() {
    let exporter = Binary::start("agents: []\n", &["--web.telemetry-path=/probe-metrics"]);
    let answer = get(exporter.addr, "/probe-metrics").expect("get");
    assert_eq!(answer.status, 200);
    assert!(answer.text().contains("agent_exporter_build_info"));
    assert_eq!(get(exporter.addr, "/metrics").expect("get").status, 404);
    let page = get(exporter.addr, "/").expect("get").text();
    assert!(
        page.contains("href=\"probe-metrics\""),
        "status page links the old path"
    );
}

#[test]
fn metrics_answer_text_openmetrics_protobuf_and_gzip_as_asked() {
    let exporter = Binary::start(
        "agents:\n  - name: self\n    type: exporter\n    url: http://127.0.0.1:{PORT}/-/healthy\n    interval: 200ms\n    timeout: 100ms\n",
        &[],
    );
    std::thread::sleep(Duration::from_millis(500));
    let text = get(exporter.addr, "/metrics").expect("get");
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text
        .text()
        .contains("# TYPE agent_probe_duration_seconds histogram"));

    let om = request(
        exporter.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    )
    .expect("get");
    assert!(om
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/openmetrics-text")));
    assert!(om.text().trim_end().ends_with("# EOF"));

    let pb = request(
        exporter.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
        )],
    )
    .expect("get");
    assert!(pb
        .header("content-type")
        .is_some_and(|c| c.contains("proto=io.prometheus.client.MetricFamily")));
    assert!(pb
        .body
        .windows(28)
        .any(|w| w == b"agent_probe_duration_seconds"));

    let gz = request(
        exporter.addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
    )
    .expect("get");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(gz.body.len() < text.body.len() / 2);
}

#[test]
fn large_scrape_streams_in_pieces_that_hold_every_agent_in_every_format() {
    use std::io::Read;

    // 3,000 agents make a text scrape of about 10 MB: many pieces. They point at a closed
    // port and probe rarely; their configured series exist from the start.
    let closed = harness::free_port();
    let mut config = String::from("defaults: {interval: 1h}\nagents:\n");
    for i in 0..3000 {
        config.push_str(&format!(
            "  - {{name: a{i:04}, type: t, url: 'http://127.0.0.1:{closed}/'}}\n"
        ));
    }
    let exporter = Binary::start(&config, &[]);
    let every_agent = |text: &str| {
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("agent_probe_interval_seconds{"))
            .collect();
        assert_eq!(series.len(), 3000);
        assert!(series
            .iter()
            .all(|l| l.ends_with(" 3600") || l.ends_with(" 3600.0")));
    };

    let text = get(exporter.addr, "/metrics").expect("get");
    assert_eq!(text.header("transfer-encoding"), Some("chunked"));
    assert!(
        text.body.len() > 4 * 256 * 1024,
        "{} bytes",
        text.body.len()
    );
    every_agent(&text.text());

    let om = request(
        exporter.addr,
        "GET",
        "/metrics",
        &[
            ("Accept", "application/openmetrics-text;version=1.0.0"),
            ("Accept-Encoding", "gzip"),
        ],
    )
    .expect("get");
    assert_eq!(om.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(om.body.as_slice())
        .read_to_string(&mut plain)
        .expect("one whole gzip stream");
    assert!(plain.ends_with("# EOF\n"));
    every_agent(&plain);

    let pb = request(
        exporter.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        )],
    )
    .expect("get");
    // Length-delimited frames that must tile the body exactly, and hold every agent.
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily;
    use prost::Message;
    let mut rest = pb.body.as_slice();
    let mut families = Vec::new();
    while !rest.is_empty() {
        families.push(MetricFamily::decode_length_delimited(&mut rest).expect("a whole frame"));
    }
    assert!(families.len() > 16, "{} families", families.len());
    let interval = families
        .iter()
        .find(|f| f.name == "agent_probe_interval_seconds")
        .expect("the interval family");
    assert_eq!(interval.metric.len(), 3000);
    assert!(interval
        .metric
        .iter()
        .all(|m| m.gauge.as_ref().map(|g| g.value) == Some(3600.0)));
}

/// An agent on `port` from now on: answers 200 "ok" to every request, until the test ends.
fn serve_ok_on(port: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the agent's port");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
}

/// An agent probed every 200 ms at a port where nothing listens yet.
fn refused_then_served_fleet(port: u16) -> String {
    format!("agents:\n  - name: flaky\n    type: worker\n    url: http://127.0.0.1:{port}/health\n    interval: 200ms\n    timeout: 100ms\n")
}

fn lines_with(logs: &str, needle: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_transition_is_one_log_line_with_the_contract_fields() {
    let port = harness::free_port();
    let exporter = Binary::start(&refused_then_served_fleet(port), &[]);
    let transitions = || lines_with(&exporter.logs(), "msg=\"agent status changed\"");
    let down = wait_for(Duration::from_secs(2), || transitions().first().cloned())
        .expect("a transition line");
    for field in [
        "level=warn",
        "agent=flaky",
        "agent_type=worker",
        "from=unknown",
        "to=unhealthy",
        "reason=connect",
        "error=\"connection refused",
        "consecutive_failures=1",
    ] {
        assert!(down.contains(field), "{field} missing in {down}");
    }
    assert!(down.starts_with("ts="), "{down}");
    // Refused probes go on failing without changing the status: no more transition lines.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        transitions(),
        std::slice::from_ref(&down),
        "one line for one transition"
    );
    serve_ok_on(port);
    let up = wait_for(Duration::from_secs(2), || transitions().get(1).cloned())
        .expect("a line for the agent coming back");
    for field in [
        "level=info",
        "agent=flaky",
        "agent_type=worker",
        "from=unhealthy",
        "to=healthy",
    ] {
        assert!(up.contains(field), "{field} missing in {up}");
    }
    // Healthy probes after it change nothing either.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(transitions(), [down, up], "two transitions, two lines");
    // No probe lines at the default level.
    assert!(!exporter.logs().contains("probe finished"));
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let port = harness::free_port();
    let exporter = Binary::start(
        &refused_then_served_fleet(port),
        &["--log.format=json", "--log.level=debug"],
    );
    let objects = || -> Vec<serde_json::Value> {
        exporter
            .logs()
            .lines()
            .map(|line| {
                let value: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(value.is_object(), "{line}");
                value
            })
            .collect()
    };
    let with_message = |message: &str| -> Vec<serde_json::Value> {
        objects()
            .into_iter()
            .filter(|v| v["message"] == message)
            .collect()
    };
    let transition = wait_for(Duration::from_secs(2), || {
        with_message("agent status changed").into_iter().next()
    })
    .expect("a transition object with message \"agent status changed\"");
    for (key, value) in [
        ("level", "WARN"),
        ("agent", "flaky"),
        ("agent_type", "worker"),
        ("from", "unknown"),
        ("to", "unhealthy"),
        ("reason", "connect"),
    ] {
        assert_eq!(transition[key], value, "{key} in {transition}");
    }
    assert_eq!(transition["consecutive_failures"], 1, "{transition}");
    assert!(
        transition["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("connection refused")),
        "{transition}"
    );
    assert!(transition["timestamp"].is_string(), "{transition}");
    assert!(transition["target"].is_string(), "{transition}");
    let probe = wait_for(Duration::from_secs(2), || {
        with_message("probe finished").into_iter().next()
    })
    .expect("a probe object at debug");
    assert_eq!(probe["level"], "DEBUG", "{probe}");
    assert_eq!(probe["agent"], "flaky", "{probe}");
    assert_eq!(probe["result"], "failure", "{probe}");
    assert!(probe["duration_seconds"].is_number(), "{probe}");
}

#[test]
fn sighup_reloads_the_config_and_a_broken_one_keeps_the_old() {
    let base = "agents:\n  - name: self\n    type: exporter\n    url: http://127.0.0.1:{PORT}/-/healthy\n    interval: 200ms\n    timeout: 100ms\n";
    let exporter = Binary::start(base, &[]);
    let port = exporter.addr.port().to_string();
    let with_second = format!(
        "{}  - name: second\n    type: exporter\n    url: tcp://127.0.0.1:{port}\n    interval: 200ms\n    timeout: 100ms\n",
        base.replace("{PORT}", &port)
    );
    std::fs::write(exporter.config_path(), with_second).expect("write");
    exporter.signal("HUP");
    let added = wait_for(Duration::from_secs(3), || {
        exporter
            .metrics()
            .contains("agent_probe_interval_seconds{agent=\"second\"")
            .then_some(())
    });
    assert!(added.is_some(), "{}", exporter.logs());

    std::fs::write(exporter.config_path(), "agents: [").expect("write");
    exporter.signal("HUP");
    let failed = wait_for(Duration::from_secs(3), || {
        (metric(
            &exporter.metrics(),
            "agent_exporter_config_last_reload_successful",
        ) == Some(0.0))
        .then_some(())
    });
    assert!(failed.is_some(), "{}", exporter.logs());
    let text = exporter.metrics();
    assert!(
        text.contains("agent=\"second\""),
        "the old config must keep running"
    );
    assert!(exporter.logs().contains("keeping the running config"));
}
