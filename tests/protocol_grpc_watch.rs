//! gRPC Watch and the grpc agent inside the exporter, against grpcio's health service: a pushed
//! NOT_SERVING makes the agent unhealthy (log line, SSE event) long before its next slot, and
//! the metrics carry the gRPC status code and the new reasons. Skips without the peers' venv.

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use harness::peers::{python, Peer};
use harness::{get, metric, request, wait_for, Binary};

/// Reads a `text/event-stream` (asked over HTTP/1.0, so not chunked) until an event named `name` whose data contains `needle`.
fn next_event(reader: &mut BufReader<TcpStream>, name: &str, needle: &str) -> Option<String> {
    let mut current = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(event) = line.strip_prefix("event: ") {
            current = event.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            if current == name && data.contains(needle) {
                return Some(data.trim().to_owned());
            }
        }
    }
}

fn events(addr: SocketAddr, query: &str) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/events?{query} HTTP/1.0\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    BufReader::new(stream)
}

fn probe_now(addr: SocketAddr) -> String {
    let answer = request(addr, "POST", "/api/v1/agents/g/probe", &[]).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.text()
}

#[test]
fn pushed_not_serving_is_unhealthy_within_a_second_with_a_30s_interval() {
    let Some(python) = python(
        "pushed_not_serving_is_unhealthy",
        "grpc, grpc_health.v1.health",
    ) else {
        return;
    };
    let mut server = Peer::start(
        &python,
        "grpc_health_server.py",
        &["--serving", "billing.Ledger"],
    );
    let config = format!(
        "defaults: {{interval: 30s, timeout: 5s}}\nagents:\n  - name: g\n    type: ledger\n    \
         url: grpc://127.0.0.1:{}\n    grpc: {{service: billing.Ledger, watch: true}}\n",
        server.port
    );
    let exporter = Binary::start(&config, &["--log.level=debug", "--web.enable-probe-api"]);
    assert!(probe_now(exporter.addr).contains("\"healthy\""));
    let mut stream = events(exporter.addr, "agent=g");
    next_event(&mut stream, "snapshot", "").expect("snapshot");
    // The stream opened when the config loaded; give it time to be established on a busy machine.
    std::thread::sleep(Duration::from_secs(2));

    let pushed = Instant::now();
    assert_eq!(server.command("set billing.Ledger NOT_SERVING"), "ok");
    let event = next_event(&mut stream, "status", "\"to\":\"unhealthy\"").expect("status event");
    let took = pushed.elapsed();
    println!("pushed NOT_SERVING -> SSE status event in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(event.contains("\"reason\":\"not_serving\""), "{event}");
    assert!(
        event.contains("reports NOT_SERVING (pushed on Watch)"),
        "{event}"
    );
    let logs = wait_for(Duration::from_secs(2), || {
        let logs = exporter.logs();
        logs.contains("reason=not_serving").then_some(logs)
    });
    assert!(
        logs.is_some(),
        "no transition log line:\n{}",
        exporter.logs()
    );

    // A push is not a probe: the probe counters and the histogram are the scheduled probes'.
    let text = exporter.metrics();
    let labels = "{agent=\"g\",agent_type=\"ledger\"";
    assert_eq!(
        metric(
            &text,
            &format!("agent_health_status{labels},status=\"unhealthy\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("agent_probes_total{labels},result=\"failure\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, &format!("agent_grpc_status_code{labels}}}")),
        Some(0.0)
    );
    for reason in ["grpc_status", "not_serving"] {
        let series = format!("agent_probe_failures_total{labels},reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &series), Some(0.0), "{series} missing");
    }

    // SERVING pushed back changes nothing until a probe confirms it.
    assert_eq!(server.command("set billing.Ledger SERVING"), "ok");
    std::thread::sleep(Duration::from_millis(300));
    let agent = get(exporter.addr, "/api/v1/agents/g").unwrap().text();
    assert!(agent.contains("\"status\":\"unhealthy\""), "{agent}");
    assert!(probe_now(exporter.addr).contains("\"healthy\""));
}

#[test]
fn watch_reconnects_after_the_server_comes_back_and_stops_on_reload() {
    let Some(python) = python("watch_reconnects", "grpc, grpc_health.v1.health") else {
        return;
    };
    let server = Peer::start(&python, "grpc_health_server.py", &[]);
    let port = server.port;
    let config = format!(
        "defaults: {{interval: 30s, timeout: 5s}}\nagents:\n  - name: g\n    type: svc\n    \
         url: grpc://127.0.0.1:{port}\n    grpc: {{watch: true}}\n"
    );
    let exporter = Binary::start(&config, &["--log.level=debug", "--web.enable-probe-api"]);
    assert!(probe_now(exporter.addr).contains("\"healthy\""));
    // The server goes away: the stream breaks and is retried with backoff.
    drop(server);
    let ended = wait_for(Duration::from_secs(5), || {
        exporter
            .logs()
            .contains("gRPC Watch stream ended")
            .then_some(())
    });
    assert!(ended.is_some(), "{}", exporter.logs());
    // A new server on the same port: the stream comes back, one per agent however many
    // reconnects came before.
    let mut back = Peer::start(
        &python,
        "grpc_health_server.py",
        &["--port", &port.to_string()],
    );
    let reconnected = wait_for(Duration::from_secs(15), || {
        (back.command("watchers") == "1").then_some(())
    });
    assert!(reconnected.is_some(), "the Watch stream did not come back");
    // The scheduled probe (30 s) may have met the server down: a probe now makes the agent
    // healthy again, so that only the stream can turn it unhealthy within the next second.
    assert!(probe_now(exporter.addr).contains("\"healthy\""));
    assert_eq!(back.command("set - NOT_SERVING"), "ok");
    let unhealthy = wait_for(Duration::from_secs(2), || {
        let agent = get(exporter.addr, "/api/v1/agents/g").ok()?.text();
        agent.contains("\"status\":\"unhealthy\"").then_some(())
    });
    assert!(
        unhealthy.is_some(),
        "the came-back stream did not carry the push"
    );
    assert_eq!(back.command("watchers"), "1");

    // Removed on reload: its stream ends, the server sees no more Watch calls.
    std::fs::write(exporter.config_path(), "agents: []\n").unwrap();
    exporter.signal("HUP");
    let gone = wait_for(Duration::from_secs(5), || {
        (get(exporter.addr, "/api/v1/agents/g").ok()?.status == 404).then_some(())
    });
    assert!(gone.is_some());
    let closed = wait_for(Duration::from_secs(5), || {
        (back.command("watchers") == "0").then_some(())
    });
    assert!(closed.is_some(), "the Watch stream outlived its agent");
}
