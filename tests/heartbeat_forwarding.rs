//! Heartbeats across shards and replicas (`--heartbeat.peers`): six exporters in-process, three
//! shards by two replicas, each shard on its own loopback address (127.0.{shard}.1) and each
//! replica set on its own port, so that one URL template per replica set names them all. A
//! report sent to any of them counts once on both replicas of the owning shard.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::{Format, Metrics};
use agent_health_exporter::shard::{hashmod, Shard};
use harness::{fetch, metric, wait_until, Answer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SHARDS: u64 = 3;
const REPLICAS: usize = 2;

/// One exporter of the set, serving until `stop` is sent or dropped.
struct Member {
    shard: u64,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
}

impl Member {
    fn scrape(&self) -> String {
        String::from_utf8(self.metrics.encode(Format::Text).expect("encode")).expect("utf8")
    }

    fn successes(&self, agent: &str) -> f64 {
        let selector = format!(
            "agent_probes_total{{agent=\"{agent}\",agent_type=\"batch\",result=\"success\"}}"
        );
        metric(&self.scrape(), &selector).unwrap_or(0.0)
    }

    fn forward_failures(&self) -> Option<f64> {
        metric(
            &self.scrape(),
            "agent_exporter_heartbeat_forward_failures_total",
        )
    }
}

/// The set: `members[replica * SHARDS + shard]`, and one heartbeat agent per shard.
struct Set {
    members: Vec<Member>,
    agents: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Set {
    fn member(&self, shard: u64, replica: usize) -> &Member {
        &self.members[replica * SHARDS as usize + shard as usize]
    }

    fn owners(&self, agent: &str) -> Vec<&Member> {
        let shard = hashmod(agent, SHARDS);
        self.members.iter().filter(|m| m.shard == shard).collect()
    }
}

/// The address of shard `shard` in replica set `port`.
fn addr(shard: u64, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, shard as u8, 1], port))
}

/// One port per replica set, free on every shard's address.
async fn bind_set() -> (u16, Vec<TcpListener>) {
    'retry: loop {
        let first = TcpListener::bind(addr(0, 0)).await.expect("bind");
        let port = first.local_addr().expect("addr").port();
        let mut listeners = vec![first];
        for shard in 1..SHARDS {
            match TcpListener::bind(addr(shard, port)).await {
                Ok(listener) => listeners.push(listener),
                Err(_) => continue 'retry,
            }
        }
        return (port, listeners);
    }
}

/// The first name of the form `worker-N` in each shard.
fn one_agent_per_shard() -> Vec<String> {
    (0..SHARDS)
        .map(|shard| {
            (0..)
                .map(|i| format!("worker-{i}"))
                .find(|n| hashmod(n, SHARDS) == shard)
                .expect("a name")
        })
        .collect()
}

fn token(agent: &str) -> String {
    format!("token-of-{agent}")
}

/// Starts the six exporters with peers templates for both replica sets (each exporter's own
/// among them, as in a StatefulSet where every pod gets the same flags).
async fn start_set() -> Set {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = one_agent_per_shard();
    let mut yaml = String::from("agents:\n");
    for agent in &agents {
        std::fs::write(dir.path().join(agent), token(agent)).expect("token");
        yaml.push_str(&format!(
            "  - name: {agent}\n    type: batch\n    heartbeat: {{period: 1h, token_file: {agent}}}\n"
        ));
    }
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).expect("config");
    let mut sets = Vec::new();
    for _ in 0..REPLICAS {
        sets.push(bind_set().await);
    }
    let templates: Vec<String> = sets
        .iter()
        .map(|(port, _)| format!("http://127.0.{{shard}}.1:{port}"))
        .collect();
    let mut members = Vec::new();
    for (_, listeners) in sets {
        for (shard, listener) in listeners.into_iter().enumerate() {
            let options = Options {
                config_file: config.clone(),
                shard: Shard::new(shard as u64, SHARDS).expect("shard"),
                heartbeat_peers: templates.clone(),
                ..Options::default()
            };
            let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
            let (stop, stopped) = oneshot::channel::<()>();
            let metrics = exporter.state.metrics.clone();
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(exporter.serve(listener, async {
                let _ = stopped.await;
            }));
            members.push(Member {
                shard: shard as u64,
                addr,
                metrics,
                stop: Some(stop),
            });
        }
    }
    Set {
        members,
        agents,
        _dir: dir,
    }
}

async fn beat(to: SocketAddr, agent: &str, token: &str, extra: &[(&str, &str)]) -> Answer {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let path = format!("/api/v1/agents/{agent}/heartbeat");
    fetch(to, "POST", &path, &headers).await.expect("answer")
}

/// Waits until every owner of `agent` counted `expected` successes, then a little longer to see
/// that no report arrives twice.
async fn every_owner_counts(set: &Set, agent: &str, expected: f64) {
    let counted = wait_until(Duration::from_secs(10), || {
        set.owners(agent)
            .iter()
            .all(|m| m.successes(agent) >= expected)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts: Vec<f64> = set
        .owners(agent)
        .iter()
        .map(|m| m.successes(agent))
        .collect();
    assert!(
        counted && counts.iter().all(|&c| c == expected),
        "{agent}: owners counted {counts:?}, expected {expected} each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_to_any_exporter_counts_once_on_every_replica_of_the_owning_shard() {
    let set = start_set().await;
    for member in &set.members {
        assert_eq!(member.forward_failures(), Some(0.0), "pre-created at 0");
    }
    for agent in &set.agents {
        for member in &set.members {
            let answer = beat(member.addr, agent, &token(agent), &[]).await;
            let expected = if member.shard == hashmod(agent, SHARDS) {
                200
            } else {
                202
            };
            assert_eq!(
                answer.status,
                expected,
                "{agent} at {}: {}",
                member.addr,
                answer.text()
            );
        }
        // Six reports, each counted once on each of the two owners: neither lost nor looped.
        every_owner_counts(&set, agent, set.members.len() as f64).await;
    }
    for member in &set.members {
        assert_eq!(member.forward_failures(), Some(0.0), "{}", member.addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_and_wrong_token_get_the_same_401_from_every_exporter() {
    let set = start_set().await;
    let agent = &set.agents[1];
    for member in &set.members {
        let wrong = beat(member.addr, agent, "not-the-token", &[]).await;
        assert_eq!(
            wrong.status,
            401,
            "wrong token at {}: {}",
            member.addr,
            wrong.text()
        );
        let unknown = beat(member.addr, "no-such-agent", &token(agent), &[]).await;
        assert_eq!(
            unknown.status,
            401,
            "unknown at {}: {}",
            member.addr,
            unknown.text()
        );
        assert_eq!(wrong.text(), unknown.text());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for member in set.owners(agent) {
        assert_eq!(member.successes(agent), 0.0, "a refused report travelled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_report_is_recorded_where_it_lands_and_never_forwarded_again() {
    let set = start_set().await;
    let agent = &set.agents[2];
    let owner = hashmod(agent, SHARDS);
    let other = (owner + 1) % SHARDS;
    let marked = [("X-Agent-Health-Forwarded", "another-exporter")];
    // At an owner: recorded there, not passed to its peer replica.
    let answer = beat(set.member(owner, 0).addr, agent, &token(agent), &marked).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // At a non-owner: it cannot record it and must not pass it on.
    let answer = beat(set.member(other, 0).addr, agent, &token(agent), &marked).await;
    assert_eq!(answer.status, 401, "{}", answer.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(set.member(owner, 0).successes(agent), 1.0);
    assert_eq!(set.member(owner, 1).successes(agent), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_counts_a_forward_failure_and_the_live_owner_still_counts() {
    let mut set = start_set().await;
    let agent = set.agents[0].clone();
    let owner = hashmod(&agent, SHARDS);
    let sender = (owner + 1) % SHARDS;
    let dead = REPLICAS - 1;
    let index = dead * SHARDS as usize + owner as usize;
    drop(set.members[index].stop.take());
    let gone = set.members[index].addr;
    let closed = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(gone).is_err()
    })
    .await;
    assert!(closed, "the stopped exporter still accepts connections");
    let answer = beat(set.member(sender, 0).addr, &agent, &token(&agent), &[]).await;
    // One owner took it.
    assert_eq!(answer.status, 202, "{}", answer.text());
    let live = set.member(owner, 0);
    assert!(
        wait_until(Duration::from_secs(10), || live.successes(&agent) == 1.0).await,
        "the live owner did not count the report"
    );
    let failures = wait_until(Duration::from_secs(10), || {
        set.member(sender, 0).forward_failures() == Some(1.0)
    })
    .await;
    assert!(
        failures,
        "forward failures: {:?}",
        set.member(sender, 0).forward_failures()
    );
    // Not retried: the count stays at one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(set.member(sender, 0).forward_failures(), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_template_without_shard_is_refused_at_start_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "agents: []\n").expect("config");
    let options = Options {
        config_file: config,
        shard: Shard::new(0, 2).expect("shard"),
        heartbeat_peers: vec!["http://exporter:10056".into()],
        ..Options::default()
    };
    let error = Exporter::start(&options)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("--heartbeat.peers") && error.contains("{shard}"),
        "{error}"
    );
}

/// A peer that accepts connections and never answers; counts how many are open at once.
async fn hanging_peer(listener: TcpListener) -> Arc<std::sync::Mutex<(usize, usize, usize)>> {
    // (open now, most open at once, accepted)
    let seen = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize)));
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            {
                let mut c = counts.lock().expect("lock");
                c.0 += 1;
                c.1 = c.1.max(c.0);
                c.2 += 1;
            }
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
                counts.lock().expect("lock").0 -= 1;
            });
        }
    });
    seen
}

/// The first `n` names of the form `worker-N` in shard `shard` of `shards`.
fn agents_in(shard: u64, shards: u64, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("worker-{i}"))
        .filter(|a| hashmod(a, shards) == shard)
        .take(n)
        .collect()
}

/// A config of heartbeat agents with their token files in `dir`.
fn write_config(dir: &std::path::Path, agents: &[String]) -> std::path::PathBuf {
    let mut yaml = String::from("agents:\n");
    for agent in agents {
        std::fs::write(dir.join(agent), token(agent)).expect("token");
        yaml.push_str(&format!(
            "  - name: {agent}\n    type: batch\n    heartbeat: {{period: 1h, token_file: {agent}}}\n"
        ));
    }
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).expect("config");
    config
}

/// Starts shard `shard` of `shards` on `listener`.
fn serve_shard(
    config: &std::path::Path,
    listener: TcpListener,
    shard: u64,
    shards: u64,
    template: &str,
) -> Member {
    let options = Options {
        config_file: config.to_owned(),
        shard: Shard::new(shard, shards).expect("shard"),
        heartbeat_peers: vec![template.to_owned()],
        ..Options::default()
    };
    let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
    let metrics = exporter.state.metrics.clone();
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(exporter.serve(listener, std::future::pending()));
    Member {
        shard,
        addr,
        metrics,
        stop: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_peer_bounds_forwards_in_flight_and_counts_every_one_not_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Many agents, each within the owner's rate, all owned by the hanging peer.
    let agents = agents_in(1, 2, 200);
    let config = write_config(dir.path(), &agents);
    let (port, mut listeners) = bind_set().await;
    let peer = hanging_peer(listeners.remove(1)).await;
    let template = format!("http://127.0.{{shard}}.1:{port}");
    let member = serve_shard(&config, listeners.remove(0), 0, 2, &template);
    let addr = member.addr;
    let reports: Vec<_> = agents
        .iter()
        .cycle()
        .take(2 * agents.len())
        .cloned()
        .map(|agent| {
            tokio::spawn(async move { beat(addr, &agent, &token(&agent), &[]).await.status })
        })
        .collect();
    let total = reports.len();
    for report in reports {
        // No owner took it: a bad gateway, so that the agent knows to send it again.
        assert_eq!(report.await.expect("report"), 502);
    }
    let all_counted = wait_until(Duration::from_secs(15), || {
        member.forward_failures() == Some(total as f64)
    })
    .await;
    let (open, most, accepted) = *peer.lock().expect("lock");
    assert!(
        all_counted,
        "forward failures {:?} of {total} reports",
        member.forward_failures()
    );
    assert!(
        most <= agent_health_exporter::forward::MAX_IN_FLIGHT_PER_PEER,
        "{most} forwards open at once (accepted {accepted}, open now {open})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_peer_of_one_shard_does_not_stop_forwards_to_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agents = agents_in(1, 3, 400);
    let elsewhere = agents_in(2, 3, 1).remove(0);
    agents.push(elsewhere.clone());
    let config = write_config(dir.path(), &agents);
    agents.pop();
    // Shard 0 takes the reports, shard 1 hangs, shard 2 is a live exporter.
    let (port, mut listeners) = bind_set().await;
    let template = format!("http://127.0.{{shard}}.1:{port}");
    let third = serve_shard(&config, listeners.remove(2), 2, 3, &template);
    let peer = hanging_peer(listeners.remove(1)).await;
    let member = serve_shard(&config, listeners.remove(0), 0, 3, &template);
    let addr = member.addr;
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood: Vec<_> = agents
        .iter()
        .cloned()
        .map(|agent| {
            let flooding = flooding.clone();
            tokio::spawn(async move {
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    beat(addr, &agent, &token(&agent), &[]).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    // The hanging peer is saturated: forwards to it are refused for want of a slot.
    let saturated = wait_until(Duration::from_secs(20), || {
        peer.lock().expect("lock").1 >= 64 && member.forward_failures() > Some(0.0)
    })
    .await;
    assert!(saturated, "the hanging peer never filled its slots");
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(beat(addr, &elsewhere, &token(&elsewhere), &[]).await.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.abort();
    }
    assert_eq!(
        answers,
        vec![202; 5],
        "reports for shard 2 while shard 1 hangs"
    );
    assert_eq!(third.successes(&elsewhere), 5.0);
}

/// Two replicas of one shard (an HA pair), each on its own port of 127.0.0.1, both named in
/// `--heartbeat.peers`; every agent has `max_run_time: 1s`.
async fn start_pair(agents: &[String]) -> (Vec<Member>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from("agents:\n");
    for agent in agents {
        std::fs::write(dir.path().join(agent), token(agent)).expect("token");
        yaml.push_str(&format!(
            "  - name: {agent}\n    type: batch\n    heartbeat: {{period: 1h, max_run_time: 1s, token_file: {agent}}}\n"
        ));
    }
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).expect("config");
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let templates: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().expect("addr")))
        .collect();
    let mut members = Vec::new();
    for listener in listeners {
        let options = Options {
            config_file: config.clone(),
            heartbeat_peers: templates.clone(),
            ..Options::default()
        };
        let exporter = Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = exporter.state.metrics.clone();
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(exporter.serve(listener, async {
            let _ = stopped.await;
        }));
        members.push(Member {
            shard: 0,
            addr,
            metrics,
            stop: Some(stop),
        });
    }
    (members, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_one_replica_then_success_at_the_other_never_times_out_the_run() {
    let agents: Vec<String> = (0..20).map(|i| format!("job-{i}")).collect();
    let (pair, _dir) = start_pair(&agents).await;
    for agent in &agents {
        let auth = format!("Bearer {}", token(agent));
        let headers = [("Authorization", auth.as_str())];
        let start = format!("/api/v1/agents/{agent}/heartbeat/start");
        let answer = fetch(pair[0].addr, "POST", &start, &headers)
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "{}", answer.text());
        // The client's next report, through a proxy that picked the other replica.
        let answer = beat(pair[1].addr, agent, &token(agent), &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // Past max_run_time: a start that reached B after the success left a run open there.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    for (replica, member) in pair.iter().enumerate() {
        let text = member.scrape();
        for agent in &agents {
            let selector = format!(
                "agent_probe_failures_total{{agent=\"{agent}\",agent_type=\"batch\",reason=\"timeout\"}}"
            );
            let timeouts = metric(&text, &selector).unwrap_or(0.0);
            assert_eq!(timeouts, 0.0, "{agent} timed out on replica {replica}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_owner_applies_the_owners_rate_limit_before_forwarding() {
    let set = start_set().await;
    let agent = &set.agents[1];
    let sender = set.member((hashmod(agent, SHARDS) + 1) % SHARDS, 0);
    let burst = agent_health_exporter::heartbeat::RATE_BURST as usize;
    let mut answers = Vec::new();
    for _ in 0..burst + 1 {
        answers.push(beat(sender.addr, agent, &token(agent), &[]).await);
    }
    let last = answers.pop().expect("an answer");
    assert!(answers.iter().all(|a| a.status == 202));
    assert_eq!(last.status, 429, "{}", last.text());
    assert!(last.header("retry-after").is_some(), "no Retry-After");
    // Refused here: it cost no forward, so no owner refused one.
    assert_eq!(sender.forward_failures(), Some(0.0));
    every_owner_counts(&set, agent, burst as f64).await;
}
