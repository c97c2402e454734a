//! Load test, ignored by `cargo test`: the built binary probes a fleet of mock agents while
//! scrapers pull /metrics and clients hold event streams. It reports scrape latency
//! percentiles and fails on a failed scrape, a dropped stream or a missed probe slot.
//!
//! Full run (figures in RELIABILITY.md), about 70 s:
//!   cargo test --release --test load -- --ignored --nocapture
//! CI's shortened run, about 15 s:
//!   LOAD_SECONDS=10 LOAD_SCRAPERS=50 LOAD_STREAMS=200 cargo test --release --test load -- --ignored --nocapture
//! Knobs (environment): LOAD_SECONDS (60), LOAD_SCRAPERS (200), LOAD_STREAMS (1000),
//! LOAD_AGENTS (1000), LOAD_SCRAPE_EVERY_MS (5000: each scraper's own interval).

mod harness;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{fetch, metric, Behaviour, Binary, MockAgent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One scrape on a fresh connection, read to the end; the status.
async fn scrape(addr: SocketAddr) -> std::io::Result<u16> {
    let answer = fetch(addr, "GET", "/metrics", &[]).await?;
    if answer.body.len() < 1000 {
        return Err(std::io::Error::other("short exposition"));
    }
    Ok(answer.status)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: run with --ignored, see the module comment"]
async fn scrapers_and_event_streams_while_probing_a_fleet() {
    let seconds = knob("LOAD_SECONDS", 60);
    let scrapers = knob("LOAD_SCRAPERS", 200) as usize;
    let streams = knob("LOAD_STREAMS", 1000) as usize;
    let agents = knob("LOAD_AGENTS", 1000) as usize;
    let scrape_every = Duration::from_millis(knob("LOAD_SCRAPE_EVERY_MS", 5000));
    let interval = Duration::from_secs(10);

    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let flapping = MockAgent::start(Behaviour::Status(503)).await;
    let mut yaml = format!(
        "defaults: {{interval: {}s, timeout: 2s}}\nagents:\n",
        interval.as_secs()
    );
    for i in 0..agents {
        // One agent in a hundred fails, so the streams carry status events.
        let url = if i % 100 == 0 {
            flapping.url(&format!("/agent/{i}"))
        } else {
            ok.url(&format!("/agent/{i}"))
        };
        yaml.push_str(&format!(
            "  - name: agent-{i:05}\n    type: load\n    url: {url}\n"
        ));
    }
    let exporter = tokio::task::spawn_blocking(move || {
        Binary::launch(&yaml)
            .ready_within(Duration::from_secs(20))
            .start()
    })
    .await
    .expect("the exporter started");
    let addr = exporter.addr;
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);

    // Event-stream clients, connected over the first two seconds, reading everything.
    let stream_bytes = Arc::new(AtomicU64::new(0));
    let streams_dropped = Arc::new(AtomicUsize::new(0));
    let streams_open = Arc::new(AtomicUsize::new(0));
    let mut stream_tasks = Vec::new();
    for i in 0..streams {
        let (bytes, dropped, open) = (
            stream_bytes.clone(),
            streams_dropped.clone(),
            streams_open.clone(),
        );
        let delay = Duration::from_millis((2000 * i / streams.max(1)) as u64);
        stream_tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let request = b"GET /api/v1/events HTTP/1.1\r\nHost: load\r\n\r\n";
            if stream.write_all(request).await.is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, stream.read(&mut buf)).await {
                    Err(_) => return,
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(Ok(n)) => {
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Scrapers, each on its own interval, spread over it.
    let mut scrape_tasks = Vec::new();
    for i in 0..scrapers {
        let phase = scrape_every.mul_f64(i as f64 / scrapers.max(1) as f64);
        scrape_tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut next = tokio::time::Instant::now() + phase;
            loop {
                tokio::time::sleep_until(next).await;
                if Instant::now() >= end {
                    return (latencies, failures);
                }
                let start = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), scrape(addr)).await {
                    Ok(Ok(200)) => latencies.push(start.elapsed()),
                    Ok(Ok(status)) => failures.push(format!("status {status}")),
                    Ok(Err(e)) => failures.push(e.to_string()),
                    Err(_) => failures.push("timed out after 10 s".into()),
                }
                next += scrape_every;
            }
        }));
    }

    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for task in scrape_tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures.extend(f);
    }
    for task in stream_tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let final_metrics =
        tokio::task::spawn_blocking(move || harness::get(addr, "/metrics").map(|a| a.text()))
            .await
            .unwrap()
            .unwrap();
    let logs = exporter.logs();
    drop(exporter);

    latencies.sort();
    let delays_total = metric(
        &final_metrics,
        "agent_exporter_probe_start_delay_seconds_count",
    )
    .expect("the start-delay histogram is exported");
    let delays_on_time = metric(
        &final_metrics,
        "agent_exporter_probe_start_delay_seconds_bucket{le=\"0.1\"}",
    )
    .expect("the start-delay histogram has a 100 ms bucket");
    let missed = logs
        .lines()
        .filter(|l| l.contains("probe slots missed"))
        .count();
    let rss = metric(&final_metrics, "process_resident_memory_bytes").unwrap_or(0.0);
    println!(
        "load: {seconds} s, {agents} agents every {}s, {scrapers} scrapers every {scrape_every:?}, {streams} event streams",
        interval.as_secs()
    );
    println!(
        "scrapes: {} ok, {} failed; latency p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        failures.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "streams: {} opened, {} dropped, {} bytes received",
        streams_open.load(Ordering::Relaxed),
        streams_dropped.load(Ordering::Relaxed),
        stream_bytes.load(Ordering::Relaxed)
    );
    println!(
        "probes: {delays_total} started, {delays_on_time} within 100 ms of their slots, {missed} missed-slot warnings; exporter RSS {:.1} MiB; wall {elapsed:?}",
        rss / 1048576.0
    );

    assert!(
        failures.is_empty(),
        "failed scrapes: {:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(!latencies.is_empty(), "no scrape ran");
    assert_eq!(
        streams_dropped.load(Ordering::Relaxed),
        0,
        "event streams dropped"
    );
    assert_eq!(streams_open.load(Ordering::Relaxed), streams);
    assert!(
        stream_bytes.load(Ordering::Relaxed) >= streams as u64,
        "the event streams carried nothing"
    );
    assert_eq!(missed, 0, "probe slots were missed");
    // Each agent's first slot falls somewhere in its first interval, so a window of whole
    // intervals sees every agent at least that many times less one; a window of one interval
    // (the shortened run) still sees about half of them, whose slots fall early.
    let expected = ((agents as f64) * ((seconds as f64) / interval.as_secs_f64() - 1.0))
        .max(agents as f64 / 2.0);
    assert!(
        delays_total >= expected,
        "{delays_total} probes started, expected at least {expected}"
    );
}
