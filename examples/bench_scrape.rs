//! The CPU cost of one `/metrics` scrape, counted in instructions so that a loaded machine
//! cannot distort it: fills the state of N agents with varied probe results (failures of several
//! reasons, durations across the histogram's buckets), then encodes one format as the server does
//! (text, OpenMetrics, protobuf, or text compressed with gzip level 1). Run it under callgrind and
//! count only the measured scrapes (see BENCHMARKS.md for the commands):
//!
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_scrapes*' \
//!   target/release/examples/bench_scrape 10000 protobuf 3
//!
//! Instructions per probe result recorded by the monitor: `--toggle-collect='*record_all*'`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_health_exporter::metrics::{BuildInfo, ExporterMetrics, Format, Metrics};
use agent_health_exporter::monitor::Monitor;
use agent_health_exporter::probe::{FailureReason, Outcome, Phases, ProbeResult};
use flate2::write::GzEncoder;
use flate2::Compression;

/// Probe results recorded per agent before the scrapes: enough to fill several buckets.
const PROBES_PER_AGENT: u64 = 8;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_scrape AGENTS text|openmetrics|protobuf|text-gzip [SCRAPES]";
    let (Some(agents), Some(format)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(agents) = agents.parse::<usize>() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (format, gzip) = match format.as_str() {
        "text" => (Format::Text, false),
        "openmetrics" => (Format::OpenMetrics, false),
        "protobuf" => (Format::Protobuf, false),
        "text-gzip" => (Format::Text, true),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let scrapes = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);

    let monitor = fleet(agents);
    let metrics = Metrics::new(
        monitor,
        Arc::new(ExporterMetrics::default()),
        BuildInfo {
            version: "bench",
            revision: "bench",
            rustc: "bench",
        },
    );
    // One scrape outside the count: the first one grows the allocator's pools.
    let (bytes, lines) = first_scrape(&metrics, format, gzip);
    let measured = measured_scrapes(&metrics, format, gzip, scrapes);
    // The process metrics (CPU seconds, memory) change from one scrape to the next: the sizes
    // differ by a few bytes.
    println!(
        "agents {agents} format {} bytes {bytes} lines {lines} then {scrapes} scrapes of {} on average",
        args[2],
        measured / scrapes.max(1)
    );
}

/// A scrape outside the count, with its number of lines (text formats: one per series, plus
/// the comments).
fn first_scrape(metrics: &Metrics, format: Format, gzip: bool) -> (usize, usize) {
    let mut lines = 0;
    if !gzip && format != Format::Protobuf {
        let _ = metrics.encode_chunks(format, &mut |piece| {
            lines += piece.iter().filter(|b| **b == b'\n').count()
        });
    }
    (scrape(metrics, format, gzip), lines)
}

/// The scrapes callgrind counts (`--toggle-collect='*measured_scrapes*'`).
#[inline(never)]
fn measured_scrapes(metrics: &Metrics, format: Format, gzip: bool, scrapes: usize) -> usize {
    (0..scrapes).map(|_| scrape(metrics, format, gzip)).sum()
}

/// One scrape as `server::exposition` writes it, pieces dropped once written (sent, for the
/// server); the number of bytes it would send.
fn scrape(metrics: &Metrics, format: Format, gzip: bool) -> usize {
    let mut bytes = 0;
    if !gzip {
        let written = metrics.encode_chunks(format, &mut |piece| bytes += piece.len());
        if let Err(e) = written {
            eprintln!("encoding failed: {e}");
            std::process::exit(1);
        }
        return bytes;
    }
    // The server's settings: level 1, pieces of 64 KiB.
    const PIECE: usize = 64 * 1024;
    let mut compressor = GzEncoder::new(Vec::with_capacity(2 * PIECE), Compression::fast());
    let written = metrics.encode_chunks(format, &mut |piece| {
        let _ = compressor.write_all(&piece);
        if compressor.get_ref().len() >= PIECE {
            let out = std::mem::replace(compressor.get_mut(), Vec::with_capacity(2 * PIECE));
            bytes += out.len();
        }
    });
    match written.map(|()| compressor.finish()) {
        Ok(Ok(rest)) => bytes + rest.len(),
        _ => {
            eprintln!("encoding failed");
            std::process::exit(1);
        }
    }
}

/// The fleet of `bench/run.sh`: plain http agents with no labels of their own.
fn fleet(agents: usize) -> Arc<Monitor> {
    let mut yaml = String::from("defaults:\n  interval: 30000ms\nagents:\n");
    for i in 0..agents {
        let port = 20_000 + i % 8;
        yaml.push_str(&format!(
            "  - {{name: agent-{i:06}, type: bench, url: 'http://127.0.0.{}:{port}/health'}}\n",
            1 + i % 4
        ));
    }
    let config = match agent_health_exporter::config::parse(&yaml, "bench.yaml", Path::new(".")) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fleet config: {e}");
            std::process::exit(1);
        }
    };
    let monitor = Arc::new(Monitor::new(10));
    let agents: Vec<_> = config.agents.iter().map(|a| monitor.insert(a)).collect();
    record_all(&monitor, &agents);
    monitor
}

/// Records `PROBES_PER_AGENT` results per agent (`--toggle-collect='*record_all*'` counts the
/// monitor's share of a probe). Deterministic: the same fleet state on every run.
#[inline(never)]
fn record_all(monitor: &Monitor, agents: &[Arc<agent_health_exporter::monitor::Agent>]) {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..PROBES_PER_AGENT {
        for (i, agent) in agents.iter().enumerate() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly around a millisecond, now and then far slower.
            let micros = 200 + seed % 1_500 + if seed.is_multiple_of(97) { 400_000 } else { 0 };
            // One agent in twenty fails, the reasons spread; a few answer degraded.
            let outcome = match (i % 20, seed % 4) {
                (0, 0) => Outcome::Failed {
                    reason: FailureReason::Connect,
                    error: "connection refused".into(),
                },
                (0, 1) => Outcome::Failed {
                    reason: FailureReason::Timeout,
                    error: "timed out after 5s".into(),
                },
                (0, _) => Outcome::Failed {
                    reason: FailureReason::HttpStatus,
                    error: "status 503".into(),
                },
                (1, 0) => Outcome::Degraded("status: degraded".into()),
                _ => Outcome::Healthy,
            };
            let http_status = match &outcome {
                Outcome::Failed {
                    reason: FailureReason::HttpStatus,
                    ..
                } => Some(503),
                Outcome::Failed { .. } => None,
                _ => Some(200),
            };
            let result = ProbeResult {
                ended_at: start + Duration::from_secs(30 * round) + Duration::from_millis(i as u64),
                duration: Duration::from_micros(micros),
                phases: Phases {
                    connect: Duration::from_micros(micros / 4),
                    first_byte: Duration::from_micros(micros / 2),
                    transfer: Duration::from_micros(micros / 8),
                    ..Phases::default()
                },
                http_status,
                cert_expiry: None,
                protocol: Default::default(), // protocol: absent before the grpc/mcp/a2a probes
                outcome,
            };
            monitor.record(agent, result);
        }
    }
}
