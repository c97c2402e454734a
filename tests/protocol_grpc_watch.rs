//! gRPC Watch and the grpc agent inside the exporter, against grpcio's health service: a pushed
//! NOT_SERVING makes the agent unhealthy (log line, SSE event) long before its next slot, and
//! the metrics carry the gRPC status code and the new reasons; a stream whose peer goes silent
//! is noticed by HTTP/2 PINGs and opened again; a server without Watch is asked once per
//! interval. Skips without the peers' venv.

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    let first_probe = Instant::now();
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
    // On-demand probes are at least 1 s apart; the stream may be back sooner than that.
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(first_probe.elapsed()));
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

/// A loopback TCP proxy to `upstream` that can stop forwarding bytes, both ways, on every
/// connection, without closing a socket: what a host that went down or a blackholing proxy
/// looks like from the exporter's side.
struct StallingProxy {
    port: u16,
    forwarding: Arc<AtomicBool>,
}

impl StallingProxy {
    fn start(upstream: u16) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let forwarding = Arc::new(AtomicBool::new(true));
        let on = forwarding.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (from, to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let on = on.clone();
                    std::thread::spawn(move || pump(from, to, &on));
                }
            }
        });
        StallingProxy { port, forwarding }
    }

    fn forward(&self, on: bool) {
        self.forwarding.store(on, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` while forwarding is on; while it is off, reads nothing and holds on.
fn pump(mut from: TcpStream, mut to: TcpStream, forwarding: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("read timeout");
    let mut buf = [0u8; 16 * 1024];
    loop {
        if !forwarding.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn watch_up(exporter: &Binary) -> Option<f64> {
    metric(
        &exporter.metrics(),
        "agent_grpc_watch_up{agent=\"g\",agent_type=\"svc\"}",
    )
}

#[test]
fn silently_dead_watch_stream_is_noticed_by_pings_and_opened_again() {
    let Some(python) = python("silently_dead_watch_stream", "grpc, grpc_health.v1.health") else {
        return;
    };
    if !cfg!(debug_assertions) {
        // A release binary keeps the 30 s PINGs whatever the environment says.
        println!("SKIPPED silently_dead_watch_stream: short PINGs need a debug build");
        return;
    }
    let mut server = Peer::start(&python, "grpc_health_server.py", &[]);
    let proxy = StallingProxy::start(server.port);
    let config = format!(
        "defaults: {{interval: 1h, timeout: 1s}}\nagents:\n  - name: g\n    type: svc\n    \
         url: grpc://127.0.0.1:{}\n    grpc: {{watch: true}}\n",
        proxy.port
    );
    // PINGs every 300 ms of quiet, each answered within 300 ms, instead of 30 s and 10 s.
    let exporter = Binary::launch(&config)
        .env("AHE_TEST_GRPC_KEEPALIVE", "300ms,300ms")
        .args(&["--log.level=debug"])
        .start();
    let open = wait_for(Duration::from_secs(5), || {
        (server.command("watchers") == "1").then_some(())
    });
    assert!(open.is_some(), "the Watch stream did not open");
    let up = wait_for(Duration::from_secs(2), || {
        (watch_up(&exporter) == Some(1.0)).then_some(())
    });
    assert!(
        up.is_some(),
        "agent_grpc_watch_up is not 1 with the stream open: {:?}\n{}",
        watch_up(&exporter),
        exporter.logs()
    );

    // The path goes silent: no FIN, no RST, nothing. The server still counts its stream.
    proxy.forward(false);
    let stalled = Instant::now();
    let noticed = wait_for(Duration::from_secs(3), || {
        exporter
            .logs()
            .contains("gRPC Watch stream ended")
            .then_some(())
    });
    let took = stalled.elapsed();
    assert!(
        noticed.is_some(),
        "the silently dead stream was not noticed within 3 s:\n{}",
        exporter.logs()
    );
    println!("silent Watch stream noticed after {took:?} (PING time 300 ms + timeout 300 ms)");
    assert_eq!(
        watch_up(&exporter),
        Some(0.0),
        "agent_grpc_watch_up after the stream broke"
    );

    // The path comes back: a new stream opens (with backoff and jitter) and carries pushes.
    proxy.forward(true);
    let back = wait_for(Duration::from_secs(15), || {
        (watch_up(&exporter) == Some(1.0)).then_some(())
    });
    assert!(
        back.is_some(),
        "the Watch stream did not come back:\n{}",
        exporter.logs()
    );
    assert_eq!(server.command("set - NOT_SERVING"), "ok");
    let pushed = wait_for(Duration::from_secs(3), || {
        let agent = get(exporter.addr, "/api/v1/agents/g").ok()?.text();
        agent.contains("\"status\":\"unhealthy\"").then_some(())
    });
    assert!(
        pushed.is_some(),
        "the reopened stream did not carry the push"
    );
}

#[test]
fn server_without_watch_is_asked_once_per_interval_not_every_backoff() {
    let Some(python) = python("server_without_watch", "grpc, grpc_health.v1.health") else {
        return;
    };
    let mut server = Peer::start(&python, "grpc_health_server.py", &["--no-watch"]);
    let config = format!(
        "defaults: {{interval: 10s, timeout: 2s}}\nagents:\n  - name: g\n    type: svc\n    \
         url: grpc://127.0.0.1:{}\n    grpc: {{watch: true}}\n",
        server.port
    );
    let exporter = Binary::start(&config, &["--log.level=debug"]);
    let asked = wait_for(Duration::from_secs(5), || {
        (server.command("watch_calls") == "1").then_some(())
    });
    assert!(asked.is_some(), "no Watch call came");
    let first = Instant::now();
    // A backoff from 1 s would have asked 3 more times by now; the interval (10 s, less a
    // fifth at most for the jitter) not once.
    std::thread::sleep(Duration::from_secs(7));
    let calls = server.command("watch_calls");
    assert_eq!(
        calls, "1",
        "Watch calls within 7 s of the first, with a 10 s interval"
    );
    assert_eq!(watch_up(&exporter), Some(0.0));
    let again = wait_for(Duration::from_secs(7), || {
        (server.command("watch_calls") == "2").then_some(())
    });
    assert!(
        again.is_some(),
        "no second Watch call {:?} after the first",
        first.elapsed()
    );
    let between = first.elapsed();
    assert!(between >= Duration::from_secs(7), "{between:?}");
    println!("second Watch call {between:?} after the first (interval 10 s, jitter ±20 %)");
    // The Check probes go on meanwhile: the agent is healthy.
    let healthy = wait_for(Duration::from_secs(2), || {
        let agent = get(exporter.addr, "/api/v1/agents/g").ok()?.text();
        agent.contains("\"status\":\"healthy\"").then_some(())
    });
    assert!(healthy.is_some(), "{}", exporter.logs());
}
