//! Wall-clock steps against the built binary. The exporter runs under Debian's libfaketime with
//! the monotonic clock left alone, so only CLOCK_REALTIME moves, as under an NTP step, a VM
//! resume or `date -s`; the test steps it hours forward, then hours back. The timestamps the
//! exporter reports must follow the stepped clock, and its probes must keep their rhythm.
//!
//! Ignored by `cargo test` because a fresh machine lacks libfaketime; `.ci/run` installs it and
//! runs this file with `--ignored`.

mod harness;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{get, metric, wait_for, Binary};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

const AGENTS: [&str; 3] = ["alpha", "beta", "gamma"];

/// The size of each step, in seconds: far beyond any interval or timeout, so a schedule kept on
/// the wall clock would stall for hours after the step back, or skip thousands of slots after
/// the step forward.
const JUMP_SECONDS: i64 = 3 * 3600;

/// How long the rhythm is watched after each step. At one probe a second an agent should see
/// six probes; 4 to 8 leaves room for a loaded machine and still tells a stall or a burst.
const WINDOW: Duration = Duration::from_secs(6);
const PROBES_PER_WINDOW: std::ops::RangeInclusive<usize> = 4..=8;

/// The longest gap allowed between two probes of one agent with a 1 s interval.
const MAX_GAP: Duration = Duration::from_millis(2500);

/// A loopback HTTP target that notes when each probe arrives, on the test's own monotonic
/// clock: the exporter's clocks are what the test distorts, so they cannot be the witness.
struct Target {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let noted = arrivals.clone();
        // Lives until the test process ends; one thread per probe is plenty at three a second.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let noted = noted.clone();
                std::thread::spawn(move || answer(stream, &noted));
            }
        });
        Target { addr, arrivals }
    }

    /// When each probe of `agent` arrived, in order.
    fn arrivals(&self, agent: &str) -> Vec<Instant> {
        let path = format!("/{agent}");
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, at)| *at)
            .collect()
    }
}

/// Reads one request head, notes its path and arrival, answers 200 and closes.
fn answer(mut stream: TcpStream, noted: &Mutex<Vec<(String, Instant)>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let at = Instant::now();
    let path = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    noted.lock().unwrap().push((path, at));
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

fn fleet(target: SocketAddr) -> String {
    let mut yaml = String::from("defaults: {interval: 1s, timeout: 500ms}\nagents:\n");
    for name in AGENTS {
        yaml.push_str(&format!(
            "  - name: {name}\n    type: worker\n    url: http://{target}/{name}\n"
        ));
    }
    yaml
}

/// Sets the exporter's wall clock to the real time plus `offset_seconds`. libfaketime rereads
/// the file on every clock read, so it is replaced by a rename and never seen half written.
fn set_wall_offset(file: &Path, offset_seconds: i64) {
    let staging = file.with_extension("staging");
    std::fs::write(&staging, format!("{offset_seconds:+}\n")).unwrap();
    std::fs::rename(&staging, file).unwrap();
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn series(family: &str, agent: &str, extra: &str) -> String {
    format!("{family}{{agent=\"{agent}\",agent_type=\"worker\"{extra}}}")
}

/// How far the exporter's wall clock is ahead of the test's, in seconds: the API stamps every
/// answer with the exporter's time, whether or not a probe ran since the step.
fn exporter_clock_skew(exporter: &Binary) -> Option<f64> {
    let answer = get(exporter.addr, "/api/v1/agents").ok()?;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let stamped = humantime::parse_rfc3339(json["generated_at"].as_str()?).ok()?;
    let now = SystemTime::now();
    Some(match stamped.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    })
}

/// Within a minute of `offset_seconds`: far finer than a step, far coarser than the time a
/// scrape or a probe takes.
fn near(skew: f64, offset_seconds: i64) -> bool {
    (skew - offset_seconds as f64).abs() < 60.0
}

/// Waits until the exporter's wall clock is `offset_seconds` from the real time, so that the
/// checks that follow cannot pass on an undisturbed clock.
fn wait_for_exporter_clock(exporter: &Binary, offset_seconds: i64) {
    let seen = wait_for(Duration::from_secs(5), || {
        exporter_clock_skew(exporter).filter(|skew| near(*skew, offset_seconds))
    });
    assert!(
        seen.is_some(),
        "the exporter's clock never came to {offset_seconds:+} s from the real time (last \
         seen: {:?} s); is libfaketime taking effect?\n{}",
        exporter_clock_skew(exporter),
        exporter.logs()
    );
}

/// What the exporter's metrics say at one moment.
struct Snapshot {
    at: Instant,
    unix_now: f64,
    last_probe: BTreeMap<&'static str, f64>,
    successes: BTreeMap<&'static str, f64>,
    failures: BTreeMap<&'static str, f64>,
    started: f64,
    started_within_1s: f64,
}

impl Snapshot {
    fn take(exporter: &Binary) -> Snapshot {
        let at = Instant::now();
        let text = exporter.metrics();
        let value = |selector: &str| metric(&text, selector).unwrap_or(0.0);
        let per_agent = |result: &str| {
            AGENTS
                .iter()
                .map(|agent| {
                    let extra = format!(",result=\"{result}\"");
                    (*agent, value(&series("agent_probes_total", agent, &extra)))
                })
                .collect()
        };
        let last_probe = AGENTS
            .iter()
            .map(|agent| {
                let selector = series("agent_last_probe_timestamp_seconds", agent, "");
                (*agent, value(&selector))
            })
            .collect();
        Snapshot {
            at,
            unix_now: unix_now(),
            last_probe,
            successes: per_agent("success"),
            failures: per_agent("failure"),
            started: value("agent_exporter_probe_start_delay_seconds_count"),
            started_within_1s: value("agent_exporter_probe_start_delay_seconds_bucket{le=\"1\"}"),
        }
    }
}

/// What went wrong between two snapshots, as the target and the exporter saw it.
fn rhythm_problems(
    what: &str,
    offset_seconds: i64,
    target: &Target,
    from: &Snapshot,
    to: &Snapshot,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for agent in AGENTS {
        let arrived = target
            .arrivals(agent)
            .iter()
            .filter(|at| (from.at..to.at).contains(*at))
            .count();
        seen.push(format!("{agent} {arrived}"));
        if !PROBES_PER_WINDOW.contains(&arrived) {
            problems.push(format!(
                "{what}: {agent} was probed {arrived} times in {:.1} s, want {PROBES_PER_WINDOW:?}",
                (to.at - from.at).as_secs_f64()
            ));
        }
        let counted = to.successes[agent] - from.successes[agent];
        if !PROBES_PER_WINDOW.contains(&(counted as usize)) {
            problems.push(format!(
                "{what}: agent_probes_total of {agent} grew by {counted}, want {PROBES_PER_WINDOW:?}"
            ));
        }
        // A probe ends every second, so the last one ended after the step, on its clock.
        let stamped = to.last_probe[agent] - to.unix_now;
        if !near(stamped, offset_seconds) {
            problems.push(format!(
                "{what}: the last probe of {agent} is stamped {stamped:+.0} s from the real \
                 time, want about {offset_seconds:+}: none ended since the step"
            ));
        }
        let failed = to.failures[agent] - from.failures[agent];
        if failed != 0.0 {
            problems.push(format!("{what}: {failed} probes of {agent} failed"));
        }
    }
    // The figures, for a run with --nocapture.
    println!(
        "{what}: probes in {:.1} s: {}",
        (to.at - from.at).as_secs_f64(),
        seen.join(", ")
    );
    let late = (to.started - to.started_within_1s) - (from.started - from.started_within_1s);
    if late != 0.0 {
        problems.push(format!(
            "{what}: {late} probes started more than 1 s after their slot"
        ));
    }
    problems
}

/// Steps the wall clock, waits for the exporter to report it, and watches one window.
fn step_and_watch(
    what: &str,
    exporter: &Binary,
    target: &Target,
    offset_file: &Path,
    offset_seconds: i64,
) -> Vec<String> {
    let before = Snapshot::take(exporter);
    set_wall_offset(offset_file, offset_seconds);
    wait_for_exporter_clock(exporter, offset_seconds);
    std::thread::sleep(WINDOW.saturating_sub(before.at.elapsed()));
    let after = Snapshot::take(exporter);
    rhythm_problems(what, offset_seconds, target, &before, &after)
}

#[test]
#[ignore = "needs Debian's libfaketime; .ci/run installs it and runs it"]
fn wall_clock_steps_of_hours_move_reported_timestamps_but_not_the_probe_rhythm() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: this test steps the exporter's wall clock with Debian's \
         libfaketime; install it (apt-get install libfaketime) or let .ci/run do it"
    );
    let target = Target::start();
    let clock = tempfile::tempdir().unwrap();
    let offset_file = clock.path().join("faketime.rc");
    set_wall_offset(&offset_file, 0);
    let exporter = Binary::launch(&fleet(target.addr))
        .env("LD_PRELOAD", LIBFAKETIME)
        // Only CLOCK_REALTIME steps, as under NTP; the monotonic clock runs on untouched.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_TIMESTAMP_FILE", offset_file.to_str().unwrap())
        // Reread the file on every clock read rather than every 10 s, so a step is at once.
        .env("FAKETIME_NO_CACHE", "1")
        .start();
    let running = wait_for(Duration::from_secs(10), || {
        AGENTS
            .iter()
            .all(|agent| target.arrivals(agent).len() >= 2)
            .then_some(())
    });
    assert!(running.is_some(), "no steady probing:\n{}", exporter.logs());
    wait_for_exporter_clock(&exporter, 0);
    let started = Instant::now();

    let mut problems = step_and_watch(
        "after the step forward",
        &exporter,
        &target,
        &offset_file,
        JUMP_SECONDS,
    );
    // To hours behind the real time: a step back of twice the jump, to before any slot the
    // exporter has yet seen.
    problems.extend(step_and_watch(
        "after the step back",
        &exporter,
        &target,
        &offset_file,
        -JUMP_SECONDS,
    ));

    // From the first step to now, so that a stall at the end counts as much as one between
    // probes.
    let ended = Instant::now();
    for agent in AGENTS {
        let mut times = vec![started];
        times.extend(
            target
                .arrivals(agent)
                .into_iter()
                .filter(|at| *at > started),
        );
        times.push(ended);
        let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        if gap > MAX_GAP {
            problems.push(format!("{agent} went {gap:.1?} without a probe"));
        }
    }
    let logs = exporter.logs();
    if logs.contains("probe slots missed") {
        problems.push("the exporter logged missed probe slots".to_owned());
    }
    assert!(problems.is_empty(), "{}\n\n{logs}", problems.join("\n"));
}
