//! dns_sd against a real DNS server: Debian's dnsmasq on a loopback port, serving SRV records
//! the test chooses and changes by restarting it. Skips with a message when dnsmasq is not
//! installed (`.ci/run` installs it).

mod harness;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use harness::discovery::Running;

const WAIT: Duration = Duration::from_secs(15);

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dnsmasq_path() -> Option<&'static str> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Serves `srv` records (`(name, target, port)`) on 127.0.0.1:`port`, and nothing else.
fn dnsmasq(binary: &str, port: u16, srv: &[(&str, &str, u16)]) -> Dnsmasq {
    let mut command = Command::new(binary);
    command.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--user=root",
        &format!("--port={port}"),
    ]);
    for (name, target, target_port) in srv {
        command.arg(format!("--srv-host={name},{target},{target_port}"));
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    Dnsmasq(child)
}

fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_sd_follows_srv_records_served_by_dnsmasq() {
    let Some(binary) = dnsmasq_path() else {
        eprintln!("SKIPPED dns_sd_follows_srv_records_served_by_dnsmasq: dnsmasq is not installed (apt-get install dnsmasq)");
        return;
    };
    let port = free_udp_port();
    let name = "_health._tcp.fleet.test";
    let server = dnsmasq(
        binary,
        port,
        &[(name, "w1.fleet.test", 8081), (name, "w2.fleet.test", 8082)],
    );
    let config = format!(
        r#"
discovery:
  - dns_sd: {{names: ["{name}"], refresh_interval: 200ms, nameservers: ["127.0.0.1:{port}"]}}
    type: worker
    relabel_configs:
      - {{source_labels: [__meta_dns_srv_record_target], regex: "([^.]+)\\..*", target_label: agent}}
      - {{source_labels: [__meta_dns_srv_record_port], target_label: srv_port}}
"#
    );
    let run = Running::start(&config, &[]).await;
    run.wait_for_fleet(&["w1", "w2"], WAIT).await;
    let w1 = run.exporter.monitor.agent("w1").unwrap();
    assert!(w1
        .labels()
        .iter()
        .any(|(k, v)| k == "srv_port" && v == "8081"));
    assert!(
        run.origin("w1").contains(&format!("name={name}")),
        "{}",
        run.origin("w1")
    );

    // New records: w2 leaves, w3 arrives; w1 keeps its state.
    drop(server);
    let server = dnsmasq(
        binary,
        port,
        &[(name, "w1.fleet.test", 8081), (name, "w3.fleet.test", 8083)],
    );
    run.wait_for_fleet(&["w1", "w3"], WAIT).await;
    assert!(Arc::ptr_eq(&w1, &run.exporter.monitor.agent("w1").unwrap()));

    // The server gone: refreshes fail and the last good targets stay.
    drop(server);
    run.wait_for_metrics(WAIT, |m| {
        m.lines().any(|l| {
            l.starts_with("agent_exporter_discovery_refresh_failures_total{source=\"dns_sd/0\"} ")
                && !l.ends_with(" 0")
        })
    })
    .await;
    assert_eq!(run.names().len(), 2);
}

/// A resolver that cannot be set up (here: a resolv.conf without a name server, which the
/// test points the exporter at through `AGENT_HEALTH_EXPORTER_RESOLV_CONF`) fails the refresh
/// like any other DNS error, and is tried again every `refresh_interval`: the failures keep
/// being counted, and once the file is fixed the source finds its targets (`localhost`, from
/// the hosts file, so that no DNS server is needed).
#[test]
fn dns_sd_retries_a_resolver_that_cannot_be_set_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "# no nameserver yet\n").unwrap();
    let config = r#"
discovery:
  - dns_sd: {names: [localhost], record_type: A, port: 9, refresh_interval: 200ms}
    type: worker
    relabel_configs:
      - {source_labels: [__meta_dns_name], target_label: agent}
"#;
    let exporter = harness::Binary::launch(config)
        .env(
            "AGENT_HEALTH_EXPORTER_RESOLV_CONF",
            resolv.to_str().expect("utf-8 path"),
        )
        .start();
    let series = "agent_exporter_discovery_refresh_failures_total{source=\"dns_sd/0\"}";
    let retried = harness::wait_for(WAIT, || {
        harness::metric(&exporter.metrics(), series).filter(|n| *n >= 3.0)
    });
    assert!(
        retried.is_some(),
        "the source stopped after its first failure: {:?}\n{}",
        harness::metric(&exporter.metrics(), series),
        exporter.logs()
    );
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let found = harness::wait_for(WAIT, || {
        exporter
            .metrics()
            .lines()
            .any(|l| l.starts_with("agent_probes_total{agent=\"localhost\""))
            .then_some(())
    });
    assert!(found.is_some(), "{}", exporter.logs());
}
