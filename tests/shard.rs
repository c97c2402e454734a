//! Shards: with `--shard.count`/`--shard.index` an exporter loads the whole config but probes,
//! exposes and lists only the agents whose name falls in its shard (Prometheus' `hashmod`),
//! at start and after every reload; `--config.check` prints that shard's agents.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use agent_health_exporter::app::{Exporter, Options};
use agent_health_exporter::metrics::Format;
use agent_health_exporter::shard::{hashmod, Shard};

/// A config of `count` agents on a port nothing listens on, probed once an hour: what is
/// checked here is which agents exist, not their health.
fn fleet_yaml(prefix: &str, count: usize) -> String {
    let mut yaml = String::from("defaults: {interval: 1h, timeout: 1s}\nagents:\n");
    for i in 0..count {
        yaml.push_str(&format!(
            "  - name: {prefix}-{i}\n    type: worker\n    url: http://127.0.0.1:9/health\n"
        ));
    }
    yaml
}

fn names(prefix: &str, count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn start(path: &Path, shard: Shard) -> Exporter {
    let options = Options {
        config_file: path.to_path_buf(),
        listen_address: "127.0.0.1:0".into(),
        shard,
        ..Options::default()
    };
    Exporter::start(&options).unwrap_or_else(|e| panic!("{e}"))
}

fn scrape(exporter: &Exporter) -> String {
    String::from_utf8(exporter.state.metrics.encode(Format::Text).expect("encode")).expect("utf8")
}

/// The agents an exporter knows, as its monitor, its metrics and its API see them.
fn known(exporter: &Exporter, all: &BTreeSet<String>) -> BTreeSet<String> {
    let text = scrape(exporter);
    all.iter()
        .filter(|name| {
            let in_monitor = exporter.monitor.agent(name).is_some();
            let in_metrics = text.contains(&format!("agent=\"{name}\""));
            assert_eq!(
                in_monitor, in_metrics,
                "{name}: monitor and /metrics disagree"
            );
            in_monitor
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_split_the_fleet_by_hashmod_and_keep_it_split_after_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, fleet_yaml("agent", 60)).expect("write");
    let all = names("agent", 60);
    let exporters: Vec<Exporter> = (0..3)
        .map(|i| start(&path, Shard::new(i, 3).expect("shard")))
        .collect();

    let check = |all: &BTreeSet<String>| {
        let mut union = BTreeSet::new();
        for (i, exporter) in exporters.iter().enumerate() {
            let mine = known(exporter, all);
            let expected: BTreeSet<String> = all
                .iter()
                .filter(|n| hashmod(n, 3) == i as u64)
                .cloned()
                .collect();
            assert_eq!(mine, expected, "shard {i}");
            assert!(!mine.is_empty(), "shard {i} got no agent of {}", all.len());
            union.extend(mine);
        }
        assert_eq!(&union, all, "the shards together cover the fleet");
    };
    check(&all);

    // A reload with other names: each shard takes its new part and drops the rest.
    std::fs::write(&path, fleet_yaml("worker", 45)).expect("rewrite");
    for exporter in &exporters {
        exporter.reloader.reload().expect("reload");
    }
    check(&names("worker", 45));
    for exporter in exporters {
        exporter.scheduler.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_info_names_index_and_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, fleet_yaml("agent", 3)).expect("write");
    let exporter = start(&path, Shard::new(1, 4).expect("shard"));
    let text = scrape(&exporter);
    let line = text
        .lines()
        .find(|l| l.starts_with("agent_exporter_shard_info{"))
        .unwrap_or_else(|| panic!("no agent_exporter_shard_info in\n{text}"));
    assert!(
        line.contains("index=\"1\"") && line.contains("count=\"4\"") && line.ends_with(" 1"),
        "{line}"
    );
    let whole = start(&path, Shard::default());
    assert!(
        scrape(&whole).contains("agent_exporter_shard_info{index=\"0\",count=\"1\"} 1"),
        "an exporter without shard flags is shard 0 of 1"
    );
    exporter.scheduler.stop();
    whole.scheduler.stop();
}

fn config_check(path: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_agent-health-exporter"))
        .arg("--config.check")
        .arg("--config.file")
        .arg(path)
        .args(args)
        .output()
        .expect("run the exporter");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_with_shard_flags_prints_only_that_shards_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, fleet_yaml("agent", 30)).expect("write");
    let mut union = BTreeSet::new();
    for i in 0..3u64 {
        let (ok, stdout, stderr) = config_check(
            &path,
            &["--shard.count", "3", "--shard.index", &i.to_string()],
        );
        assert!(ok, "{stderr}");
        let listed: BTreeSet<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("agent=")?.split(' ').next())
            .map(str::to_owned)
            .collect();
        assert!(listed.iter().all(|n| hashmod(n, 3) == i), "{stdout}");
        assert!(
            stdout.contains(&format!(
                "30 agents; shard {i} of 3 probes {} of them",
                listed.len()
            )),
            "{stdout}"
        );
        union.extend(listed);
    }
    assert_eq!(union, names("agent", 30));
}

#[test]
fn bad_shard_flags_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, fleet_yaml("agent", 2)).expect("write");
    let (ok, _, stderr) = config_check(&path, &["--shard.count", "3", "--shard.index", "3"]);
    assert!(!ok);
    assert!(
        stderr.contains("out of range") && stderr.contains("0 to 2"),
        "{stderr}"
    );
    let (ok, _, stderr) = config_check(&path, &["--shard.count", "0"]);
    assert!(!ok);
    assert!(stderr.contains("at least 1"), "{stderr}");
    let (ok, _, stderr) = config_check(&path, &["--shard.index", "two"]);
    assert!(!ok);
    assert!(stderr.contains("auto"), "{stderr}");
}

/// A plain HTTP/1.1 GET over loopback: (status, body). Blocking; run off the runtime.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_other_shards_are_not_in_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, fleet_yaml("agent", 30)).expect("write");
    let shard = Shard::new(2, 3).expect("shard");
    let exporter = start(&path, shard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(exporter.serve(listener, async {
        let _ = stopped.await;
    }));

    let all = names("agent", 30);
    let (mine, theirs): (Vec<String>, Vec<String>) = all.into_iter().partition(|n| shard.owns(n));
    assert!(!mine.is_empty() && !theirs.is_empty());
    let (mine_probe, theirs_probe) = (mine.clone(), theirs.clone());
    tokio::task::spawn_blocking(move || {
        let (status, list) = http_get(addr, "/api/v1/agents");
        assert_eq!(status, 200, "{list}");
        for name in &mine_probe {
            assert!(list.contains(&format!("\"{name}\"")), "{name} missing");
        }
        for name in &theirs_probe {
            assert!(!list.contains(&format!("\"{name}\"")), "{name} listed");
            let (status, _) = http_get(addr, &format!("/api/v1/agents/{name}"));
            assert_eq!(status, 404, "{name} of another shard answered");
        }
        let (status, _) = http_get(addr, &format!("/api/v1/agents/{}", mine_probe[0]));
        assert_eq!(status, 200);
    })
    .await
    .expect("requests");
    let _ = stop.send(());
    let _ = served.await;
}
