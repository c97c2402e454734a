//! Discovery at scale (BENCHMARKS.md, "Discovery at 50,000 targets"): how long 50,000 targets
//! from one file_sd file take to be scheduled, the CPU time of an HTTP SD refresh that returns
//! the same 50,000 targets (the same bytes, or the same targets written differently) or changes
//! 1 % of them, and how late probes start while those refreshes run.
//!
//! CPU time is read per thread from /proc/self/task/*/schedstat (nanoseconds), so other load on
//! the machine does not inflate it. A refresh's CPU is that of the exporter's runtime threads
//! (`tokio-rt-worker`: fetching, parsing, relabeling, resolving and applying to the schedule),
//! divided by the refreshes the SD server answered; the bench's own servers run on a thread of
//! their own and probes on the exporter's `probes` thread, neither counted. Wall times are
//! reported too, and are disturbed by other load. The first loads' CPU is the whole process's
//! (/proc/self/stat, 10 ms ticks): a large load is read on threads that end with it, and a
//! thread's schedstat goes with it.
//!
//! Probe start delay: the last PROBED targets of the HTTP SD document point at a local HTTP
//! server and use a check with a 1 s interval; the rest are probed once an hour, so never during
//! the run. The delay is read from `agent_exporter_probe_start_delay_seconds` (the scheduler's
//! own measure, per window) and, independently, from the time each probe request reaches the
//! server against the agent's slot (which adds the connect time).
//!
//!   cargo run --release --example bench_discovery [-- TARGETS [PROBED]] [--file-sd-only]
//!
//! `--file-sd-only` stops after the file_sd load: quick to repeat, and short enough to count in
//! instructions under callgrind.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::Format;
use agent_health_exporter::scheduler::slot_offset;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Interval of the probed agents.
const PROBED_INTERVAL: Duration = Duration::from_secs(1);
/// Refreshes per measured window, one a second.
const REFRESHES: u64 = 8;

/// CPU time so far of the threads whose name passes `which`.
fn cpu(which: impl Fn(&str) -> bool) -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !which(name.trim()) {
                continue;
            }
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

/// CPU time so far of the whole process, threads that ended included (a large first load is
/// read on threads of its own that end with it), in clock ticks of 10 ms (USER_HZ is 100 on
/// Linux): utime + stime of /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The exporter's runtime threads (`tokio-rt-worker`), where discovery runs.
fn runtime_workers(name: &str) -> bool {
    name.starts_with("tokio-")
}

/// How the document is written: the same targets in either style are the same targets.
#[derive(Clone, Copy)]
enum Style {
    Compact,
    Spaced,
}

/// `count` targets; the last `probed` of them point at `probe_addr` with the `fast` check, the
/// first `changed` move to another port in every generation.
fn document(
    count: usize,
    probed: usize,
    probe_addr: &str,
    generation: usize,
    changed: usize,
    style: Style,
) -> Bytes {
    let sep = match style {
        Style::Compact => ",",
        Style::Spaced => ", ",
    };
    let groups: Vec<String> = (0..count)
        .map(|i| {
            let zone = i % 8;
            if i >= count - probed {
                return format!(
                    r#"{{"targets":["{probe_addr}"],"labels":{{"agent":"w{i}","zone":"z{zone}","__path__":"/h/w{i}","__check__":"fast"}}}}"#
                );
            }
            // Every target has an address of its own (never probed during the run); the first
            // `changed` move to another port in every generation.
            let port = if i < changed {
                60_000 + generation % 5000
            } else {
                10_000 + i % 50_000
            };
            format!(
                r#"{{"targets":["127.0.0.1:{port}"],"labels":{{"agent":"w{i}","zone":"z{zone}"}}}}"#
            )
        })
        .collect();
    Bytes::from(format!("[{}]", groups.join(sep)))
}

/// What the SD server answers: the next queued document if any (it then stays), else the
/// current one; and how many answers it gave.
#[derive(Default)]
struct SdBody {
    current: Bytes,
    queued: VecDeque<Bytes>,
    answered: u64,
}

/// Start delays seen by the probe target server, as arrival - slot in milliseconds: negative
/// when a probe came before its slot.
type Delays = Arc<Mutex<Vec<f64>>>;

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn respond(bytes: Bytes, content_type: &str) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .header("content-type", content_type)
        .body(Full::new(bytes))
        .expect("response")
}

async fn accept_loop<F>(listener: tokio::net::TcpListener, answer: F)
where
    F: Fn(&str) -> http::Response<Full<Bytes>> + Clone + Send + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let response = answer(req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The SD server and the probe target server, on a thread of their own so that their CPU is
/// not the exporter's. Answers their addresses.
fn servers(body: Arc<Mutex<SdBody>>, delays: Delays) -> (String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bench-servers".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let sd = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let probe = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send((
                    sd.local_addr().expect("addr").to_string(),
                    probe.local_addr().expect("addr").to_string(),
                ))
                .expect("send");
                tokio::spawn(accept_loop(sd, move |_| {
                    let mut body = body.lock().expect("lock");
                    if let Some(next) = body.queued.pop_front() {
                        body.current = next;
                    }
                    body.answered += 1;
                    respond(body.current.clone(), "application/json")
                }));
                accept_loop(probe, move |path| {
                    let name = path.trim_start_matches("/h/");
                    let interval = PROBED_INTERVAL.as_nanos();
                    let offset = slot_offset(name, PROBED_INTERVAL).as_nanos();
                    let late = (unix_ns() + interval - offset) % interval;
                    // Within half an interval either side of the slot.
                    let late = if late > interval / 2 {
                        late as f64 - interval as f64
                    } else {
                        late as f64
                    };
                    delays.lock().expect("lock").push(late / 1e6);
                    respond(Bytes::from_static(b"ok"), "text/plain")
                })
                .await;
            });
        })
        .expect("thread");
    rx.recv().expect("addresses")
}

fn start(dir: &std::path::Path, config: &str) -> (Exporter, Instant, Duration) {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).expect("write config");
    let options = Options {
        config_file: path,
        ..Options::default()
    };
    let (t0, c0) = (Instant::now(), process_cpu());
    (Exporter::start(&options).expect("start"), t0, c0)
}

async fn wait_for(exporter: &Exporter, count: usize) {
    while exporter.monitor.len() != count {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Cumulative counts of the start delay histogram's classic buckets: (le, count), +Inf last.
fn start_delay_buckets(exporter: &Exporter) -> Vec<(f64, u64)> {
    let text = exporter.state.metrics.encode(Format::Text).expect("encode");
    let text = String::from_utf8_lossy(&text);
    let prefix = "agent_exporter_probe_start_delay_seconds_bucket{le=\"";
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The bucket bound the window's p99 falls under, and the window's probe count.
fn p99_bucket(before: &[(f64, u64)], after: &[(f64, u64)]) -> (f64, u64) {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|((le, a), (_, b))| (*le, a - b))
        .collect();
    let total = counts.last().map_or(0, |(_, n)| *n);
    let bound = counts
        .iter()
        .find(|(_, n)| *n as f64 >= 0.99 * total as f64)
        .map_or(f64::NAN, |(le, _)| *le);
    (bound, total)
}

/// One measured window: `REFRESHES` refreshes, the queued documents served in turn.
async fn window(
    what: &str,
    exporter: &Exporter,
    body: &Mutex<SdBody>,
    delays: &Delays,
    queue: Vec<Bytes>,
) {
    let (answered0, c0, buckets0) = {
        let mut body = body.lock().expect("lock");
        body.queued = queue.into();
        (
            body.answered,
            cpu(runtime_workers),
            start_delay_buckets(exporter),
        )
    };
    delays.lock().expect("lock").clear();
    tokio::time::sleep(Duration::from_secs(REFRESHES) + Duration::from_millis(500)).await;
    let refreshes = body.lock().expect("lock").answered - answered0;
    // A blocking-pool thread that ended in the window takes its CPU time with it.
    let spent = cpu(runtime_workers).saturating_sub(c0);
    let (bound, probes) = p99_bucket(&buckets0, &start_delay_buckets(exporter));
    let mut seen = std::mem::take(&mut *delays.lock().expect("lock"));
    seen.sort_by(f64::total_cmp);
    let at = |q: f64| {
        seen.get(((seen.len() as f64 * q) as usize).min(seen.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "http_sd: {what}: {:.1} ms CPU per refresh (mean of {refreshes}); probe start delay over {probes} probes: p99 <= {:.0} ms (histogram), at the target (vs. the slot's phase) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        spent.as_secs_f64() * 1e3 / refreshes.max(1) as f64,
        bound * 1e3,
        at(0.5),
        at(0.99),
        seen.last().copied().unwrap_or(f64::NAN),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let file_sd_only = std::env::args().any(|a| a == "--file-sd-only");
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let probed: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(500)
        .min(count);
    let dir = tempfile::tempdir().expect("tempdir");
    // Agents not probed in the run are probed an hour apart: none runs during the benchmark.
    let templates =
        "defaults: {interval: 1h, timeout: 1s}\nchecks:\n  fast: {interval: 1s, timeout: 500ms}\n";

    let file = document(count, 0, "", 0, 0, Style::Compact);
    std::fs::write(dir.path().join("targets.json"), &file).expect("write");
    let config = format!(
        "{templates}discovery:\n  - file_sd: {{files: [targets.json]}}\n    type: worker\n    allowed_checks: [fast]\n"
    );
    let (exporter, t0, c0) = start(dir.path(), &config);
    wait_for(&exporter, count).await;
    println!(
        "file_sd: {count} targets scheduled {:.0} ms after start ({:.0} ms CPU, all threads, 10 ms ticks)",
        t0.elapsed().as_secs_f64() * 1e3,
        (process_cpu() - c0).as_secs_f64() * 1e3
    );
    exporter.scheduler.stop();
    drop(exporter);
    if file_sd_only {
        println!("load average at the end: {}", loadavg());
        return;
    }

    let body = Arc::new(Mutex::new(SdBody::default()));
    let delays: Delays = Arc::default();
    let (sd_addr, probe_addr) = servers(body.clone(), delays.clone());
    let doc = |generation, changed, style| {
        document(count, probed, &probe_addr, generation, changed, style)
    };
    body.lock().expect("lock").current = doc(0, 0, Style::Compact);
    let config = format!(
        "{templates}discovery:\n  - http_sd: {{url: \"http://{sd_addr}/sd\", refresh_interval: 1s}}\n    type: worker\n    allowed_checks: [fast]\n"
    );
    let (exporter, t0, c0) = start(dir.path(), &config);
    wait_for(&exporter, count).await;
    println!(
        "http_sd: first refresh of {count} targets applied in {:.0} ms ({:.0} ms CPU, all threads, 10 ms ticks); {probed} of them probed every second",
        t0.elapsed().as_secs_f64() * 1e3,
        (process_cpu() - c0).as_secs_f64() * 1e3
    );
    // The first probes of the fast agents start within one interval.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    window(
        &format!("the same {count} targets, the same bytes"),
        &exporter,
        &body,
        &delays,
        Vec::new(),
    )
    .await;
    let respelled = (0..REFRESHES)
        .map(|i| {
            let style = if i % 2 == 0 {
                Style::Spaced
            } else {
                Style::Compact
            };
            doc(0, 0, style)
        })
        .collect();
    window(
        &format!("the same {count} targets, written differently each time"),
        &exporter,
        &body,
        &delays,
        respelled,
    )
    .await;
    let changed = count / 100;
    let generations = (1..=REFRESHES as usize + 2)
        .map(|g| doc(g, changed, Style::Compact))
        .collect();
    window(
        &format!("{changed} of {count} targets changed each time"),
        &exporter,
        &body,
        &delays,
        generations,
    )
    .await;
    exporter.scheduler.stop();
    println!("load average at the end: {}", loadavg());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}
