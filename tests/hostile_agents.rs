//! Hostile and broken agents cost only their own probe: each probe ends within its timeout with
//! the right reason, no body is held past `max_body_bytes`, and healthy agents keep starting
//! on their slots while a thousand others hang. (The simpler misbehaviours, a hang, an endless
//! body, a 10 GB Content-Length, a redirect loop, a reset and an unresolvable name, are in
//! `probe_reasons.rs`.)

mod harness;

use std::time::{Duration, SystemTime};

use agent_health_exporter::monitor::Status;
use agent_health_exporter::probe::{run, FailureReason, ProbeResult};
use harness::agents::{error, reason};
use harness::{http_agent, metric, Behaviour, MockAgent, RawAgent, Served, TlsIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads and drops whatever comes until the prober closes: a hang that frees its descriptor
/// as soon as the probe gives up.
async fn swallow(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_within(result: &ProbeResult, timeout: Duration) {
    assert!(
        result.duration < timeout + Duration::from_millis(250),
        "the probe took {:?}, its timeout is {timeout:?}",
        result.duration
    );
}

#[tokio::test]
async fn response_head_sent_one_byte_at_a_time_times_out() {
    let agent = RawAgent::start(|mut stream| async move {
        read_head(&mut stream).await;
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let timeout = Duration::from_millis(500);
    let result = run(&http_agent(agent.url("http", "/health"))
        .timeout(timeout)
        .build())
    .await;
    assert_eq!(reason(&result), FailureReason::Timeout, "{result:?}");
    assert_within(&result, timeout);
}

#[tokio::test]
async fn stalled_tls_handshake_times_out_during_tls() {
    let agent = RawAgent::start(swallow).await;
    let timeout = Duration::from_millis(400);
    let result = run(&http_agent(agent.url("https", "/health"))
        .timeout(timeout)
        .build())
    .await;
    assert_eq!(reason(&result), FailureReason::Timeout);
    assert!(error(&result).ends_with("during tls"), "{}", error(&result));
    assert_within(&result, timeout);
}

#[tokio::test]
async fn expired_certificate_fails_with_tls_even_when_trusted() {
    let identity = TlsIdentity::expired(&["127.0.0.1"]);
    let agent = MockAgent::start_tls(Behaviour::ok("ok"), &identity).await;
    let spec = http_agent(agent.url("/health")).trusting(&identity).build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::Tls);
    assert!(
        error(&result).to_lowercase().contains("expired"),
        "{}",
        error(&result)
    );
}

#[tokio::test]
async fn certificate_for_another_host_fails_with_tls_even_when_trusted() {
    let identity = TlsIdentity::self_signed(&["other.example"]);
    let agent = MockAgent::start_tls(Behaviour::ok("ok"), &identity).await;
    let spec = http_agent(agent.url("/health")).trusting(&identity).build();
    let result = run(&spec).await;
    assert_eq!(reason(&result), FailureReason::Tls);
    assert!(error(&result).contains("certificate"), "{}", error(&result));
}

/// The peak resident set of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Set for the process of its own in which the memory test's probes run.
const MEMORY_CHILD: &str = "AHE_TEST_MEMORY_CHILD";
const MEMORY_CHILD_TEST: &str = "endless_and_huge_bodies_probed_in_a_process_of_their_own";
const MEMORY_REPORT: &str = "peak resident memory grew by KiB: ";

#[test]
fn endless_and_huge_bodies_keep_memory_bounded_by_max_body_bytes() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: the peak resident memory is read from /proc, which only Linux has");
        return;
    }
    // The peak is per process, and the other tests of this file run in this one at the same
    // time: the probes run in a process of their own, this test binary with only that test.
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", MEMORY_CHILD_TEST, "--ignored", "--nocapture"])
        .env(MEMORY_CHILD, "1")
        .output()
        .expect("run the test binary");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    let grew: u64 = printed
        .lines()
        .find_map(|l| l.split_once(MEMORY_REPORT))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the child did not measure:\n{printed}"));
    println!("{MEMORY_REPORT}{grew}");
    // 20 probes of 1 MiB at most each; the endless agent alone could send gigabytes.
    assert!(grew < 48 * 1024, "peak resident memory grew by {grew} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a process of its own by endless_and_huge_bodies_keep_memory_bounded_by_max_body_bytes"]
async fn endless_and_huge_bodies_probed_in_a_process_of_their_own() {
    if std::env::var_os(MEMORY_CHILD).is_none() {
        eprintln!("skipped: run alone in a process of its own by the memory test");
        return;
    }
    let endless = MockAgent::start(Behaviour::EndlessBody).await;
    let huge = MockAgent::start(Behaviour::HugeContentLength).await;
    let specs = [
        http_agent(endless.url("/"))
            .max_body_bytes(1024 * 1024)
            .body_contains("never")
            .timeout(Duration::from_secs(2))
            .build(),
        http_agent(huge.url("/"))
            .max_body_bytes(1024 * 1024)
            .body_contains("never")
            .timeout(Duration::from_secs(2))
            .build(),
    ];
    let before = peak_rss_kib();
    for _ in 0..10 {
        let probes = specs.iter().map(run);
        for result in futures_util::future::join_all(probes).await {
            assert_eq!(reason(&result), FailureReason::BodyTooLarge, "{result:?}");
        }
    }
    println!("{MEMORY_REPORT}{}", peak_rss_kib().saturating_sub(before));
}

/// The open-file limit of this process, from /proc (no unsafe code needed).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_agents_start_on_their_slots_while_a_thousand_agents_hang() {
    // Every hung probe holds a descriptor on each side until its timeout; scale down where the
    // open-file limit is low (1,000 needs about 2,100).
    let limit = open_file_limit().unwrap_or(1024);
    let hanging = 1000.min(limit.saturating_sub(256) as usize / 2);
    eprintln!("open-file limit {limit}: {hanging} hanging agents");
    assert!(
        hanging >= 300,
        "open-file limit {limit} is too low for this test"
    );
    let hang = RawAgent::start(swallow).await;
    let ok = MockAgent::start(Behaviour::ok("ok")).await;
    let mut yaml = String::from("defaults: {interval: 2s, timeout: 1900ms}\nagents:\n");
    for i in 0..hanging {
        yaml.push_str(&format!(
            "  - name: hung-{i:04}\n    type: hung\n    url: {}\n",
            hang.url("http", &format!("/agent/{i}"))
        ));
    }
    for i in 0..20 {
        yaml.push_str(&format!(
            "  - name: healthy-{i:02}\n    type: healthy\n    url: {}\n",
            ok.url(&format!("/agent/{i}"))
        ));
    }
    let exporter = Served::start(&yaml).await;
    let started = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(6500)).await;
    // Slots up to here had their probes end (timeout 1.9 s) before the stop.
    let window_end = SystemTime::now() - Duration::from_millis(1900 + 250);
    exporter.scheduler.stop();
    let text = exporter.scrape();
    let names = (0..hanging)
        .map(|i| format!("hung-{i:04}"))
        .chain((0..20).map(|i| format!("healthy-{i:02}")));
    let problems: Vec<String> = names
        .filter_map(|name| {
            exporter
                .probes_on_every_slot(&name, started, window_end, Duration::from_millis(100))
                .err()
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} agents missed slots: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    let total = metric(&text, "agent_exporter_probe_start_delay_seconds_count").unwrap();
    let on_time = metric(
        &text,
        "agent_exporter_probe_start_delay_seconds_bucket{le=\"0.1\"}",
    )
    .unwrap();
    eprintln!("{total} probes started, {on_time} within 100 ms of their slots");
    assert!(
        total >= (hanging as f64) * 2.0,
        "only {total} probes started"
    );
    assert_eq!(on_time, total, "{} probes started late", total - on_time);
    for i in 0..20 {
        let state = exporter
            .monitor
            .agent(&format!("healthy-{i:02}"))
            .unwrap()
            .state()
            .clone();
        assert_eq!(state.status, Status::Healthy, "healthy-{i:02}");
        assert!(state.probes_success >= 2, "healthy-{i:02}: {state:?}");
    }
    let mut late = 0;
    for i in 0..hanging {
        let state = exporter
            .monitor
            .agent(&format!("hung-{i:04}"))
            .unwrap()
            .state()
            .clone();
        assert_eq!(state.status, Status::Unhealthy, "hung-{i:04}");
        assert_eq!(
            state.failures_by_reason[FailureReason::Timeout.index()],
            state.probes_failure
        );
        late += state
            .history
            .iter()
            .filter(|h| h.duration() > Duration::from_millis(2150))
            .count();
    }
    assert_eq!(late, 0, "hung probes that outlived their timeout by 250 ms");
}
