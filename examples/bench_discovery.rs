//! Discovery at scale (BENCHMARKS.md, "Discovery at 50,000 targets"): how long 50,000 targets
//! from one file_sd file take to be scheduled, and the CPU time of an HTTP SD refresh that
//! returns the same 50,000 targets, or changes 1 % of them. CPU time is read from
//! /proc/self/task/*/schedstat (nanoseconds, every thread of the process), so other load on
//! the machine does not inflate it; wall times are reported too, and are disturbed by it.
//!
//!   cargo run --release --example bench_discovery [-- TARGETS]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_health_exporter::app::{Exporter, Options};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// CPU time of the whole process so far.
fn cpu() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

fn document(count: usize, generation: usize, changed: usize) -> String {
    let groups: Vec<String> = (0..count)
        .map(|i| {
            // The first `changed` targets move to a new port in every generation.
            let port = if i < changed {
                20_000 + generation % 1000
            } else {
                9
            };
            format!(
                r#"{{"targets":["127.0.0.1:{port}"],"labels":{{"agent":"w{i}","zone":"z{}"}}}}"#,
                i % 8
            )
        })
        .collect();
    format!("[{}]", groups.join(","))
}

async fn serve(body: Arc<Mutex<Bytes>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let bytes = body.lock().expect("lock").clone();
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(bytes))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn start(dir: &std::path::Path, config: &str) -> (Exporter, Instant, Duration) {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).expect("write config");
    let options = Options {
        config_file: path,
        ..Options::default()
    };
    let (t0, c0) = (Instant::now(), cpu());
    (Exporter::start(&options).expect("start"), t0, c0)
}

async fn wait_for(exporter: &Exporter, count: usize) {
    while exporter.monitor.len() != count {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    // Probes are not what is measured: an hour apart, none runs during the benchmark.
    let defaults = "defaults: {interval: 1h, timeout: 1s}\n";

    std::fs::write(dir.path().join("targets.json"), document(count, 0, 0)).expect("write");
    let config =
        format!("{defaults}discovery:\n  - file_sd: {{files: [targets.json]}}\n    type: worker\n");
    let (exporter, t0, c0) = start(dir.path(), &config);
    wait_for(&exporter, count).await;
    println!(
        "file_sd: {count} targets scheduled {:.0} ms after start ({:.0} ms CPU)",
        t0.elapsed().as_secs_f64() * 1e3,
        (cpu() - c0).as_secs_f64() * 1e3
    );
    exporter.scheduler.stop();
    drop(exporter);

    let body = Arc::new(Mutex::new(Bytes::from(document(count, 0, 0))));
    let addr = serve(body.clone()).await;
    let config = format!(
        "{defaults}discovery:\n  - http_sd: {{url: \"http://{addr}/sd\", refresh_interval: 1s}}\n    type: worker\n"
    );
    let (exporter, t0, c0) = start(dir.path(), &config);
    wait_for(&exporter, count).await;
    println!(
        "http_sd: first refresh of {count} targets applied in {:.0} ms ({:.0} ms CPU)",
        t0.elapsed().as_secs_f64() * 1e3,
        (cpu() - c0).as_secs_f64() * 1e3
    );
    // Refreshes are 1 s apart; the process does nothing else meanwhile.
    let refreshes = 8;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c0 = cpu();
    tokio::time::sleep(Duration::from_secs(refreshes)).await;
    println!(
        "http_sd: a refresh returning the same {count} targets: {:.1} ms CPU (mean of {refreshes})",
        (cpu() - c0).as_secs_f64() * 1e3 / refreshes as f64
    );
    let changed = count / 100;
    let c0 = cpu();
    for generation in 1..=refreshes as usize {
        *body.lock().expect("lock") = Bytes::from(document(count, generation, changed));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "http_sd: a refresh changing {changed} of {count} targets: {:.1} ms CPU (mean of {refreshes}, document building included)",
        (cpu() - c0).as_secs_f64() * 1e3 / refreshes as f64
    );
    exporter.scheduler.stop();
}
