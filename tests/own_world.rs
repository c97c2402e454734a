//! Faults of the exporter's own world, against the built binary: its config file deleted or
//! replaced mid-run, a storm of SIGHUPs, and running out of file descriptors.

mod harness;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{get, metric, wait_for, Binary};

/// The agent names the API lists, sorted.
fn agent_names(addr: SocketAddr) -> Option<Vec<String>> {
    let answer = get(addr, "/api/v1/agents").ok()?;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let mut names: Vec<String> = json["agents"]
        .as_array()?
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

fn fleet(names: &[&str]) -> String {
    let mut yaml = String::from("defaults: {interval: 1s, timeout: 500ms}\nagents:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - name: {name}\n    type: self\n    url: http://127.0.0.1:{{PORT}}/-/healthy\n"
        ));
    }
    yaml
}

fn replace(path: &std::path::Path, text: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

fn reload_ok(exporter: &Binary) -> Option<f64> {
    metric(
        &exporter.metrics(),
        "agent_exporter_config_last_reload_successful",
    )
}

#[test]
fn config_deleted_or_replaced_mid_run_keeps_the_running_one_until_a_good_one_comes() {
    let exporter = Binary::start(&fleet(&["a", "b"]), &[]);
    let port = exporter.addr.port();
    let path = exporter.config_path();
    std::fs::remove_file(&path).unwrap();
    exporter.signal("HUP");
    let failed = wait_for(Duration::from_secs(5), || {
        (reload_ok(&exporter) == Some(0.0)).then_some(())
    });
    assert!(failed.is_some(), "{}", exporter.logs());
    assert_eq!(agent_names(exporter.addr).unwrap(), ["a", "b"]);
    assert!(exporter.logs().contains("keeping the running config"));

    replace(&path, "agents: [ {name: broken\n");
    exporter.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent_names(exporter.addr).unwrap(), ["a", "b"]);
    assert_eq!(reload_ok(&exporter), Some(0.0));

    replace(
        &path,
        &fleet(&["b", "c"]).replace("{PORT}", &port.to_string()),
    );
    exporter.signal("HUP");
    let replaced = wait_for(Duration::from_secs(5), || {
        (agent_names(exporter.addr)? == ["b", "c"]).then_some(())
    });
    assert!(replaced.is_some(), "{}", exporter.logs());
    assert_eq!(reload_ok(&exporter), Some(1.0));
}

#[test]
fn storm_of_200_sighups_leaves_one_consistent_config_and_the_server_up() {
    let exporter = Binary::start(&fleet(&["a", "b"]), &[]);
    let port = exporter.addr.port().to_string();
    let path = exporter.config_path();
    let pid = exporter.pid().to_string();
    let addr = exporter.addr;
    // Scrape the fleet all through the storm: every answer must be one whole config.
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            seen.push(agent_names(addr));
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    });
    let storm = std::thread::spawn(move || {
        for round in 0..4 {
            let names: &[&str] = if round % 2 == 0 {
                &["c", "d", "e"]
            } else {
                &["a", "b"]
            };
            replace(&path, &fleet(names).replace("{PORT}", &port));
            // 50 signals in one burst from one shell.
            let status = Command::new("sh")
                .arg("-c")
                .arg("i=0; while [ $i -lt 50 ]; do kill -HUP \"$1\"; i=$((i+1)); done")
                .arg("storm")
                .arg(&pid)
                .status()
                .unwrap();
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    storm.join().unwrap();
    let seen = watcher.join().unwrap();
    let answered: Vec<Vec<String>> = seen.into_iter().flatten().collect();
    assert!(
        answered.len() > 50,
        "the API stopped answering during the storm"
    );
    for names in &answered {
        assert!(
            names == &["a", "b"] || names == &["c", "d", "e"],
            "a mixed fleet was served: {names:?}"
        );
    }
    // The last file written named a and b.
    let settled = wait_for(Duration::from_secs(5), || {
        (agent_names(exporter.addr)? == ["a", "b"]).then_some(())
    });
    assert!(settled.is_some(), "{}", exporter.logs());
    assert_eq!(get(exporter.addr, "/-/healthy").unwrap().status, 200);
    assert_eq!(reload_ok(&exporter), Some(1.0));
    assert!(!exporter.logs().contains("panicked"), "{}", exporter.logs());
}

#[test]
fn out_of_file_descriptors_is_logged_backed_off_and_recovered_from() {
    // `ulimit` in the shell that execs the binary: 64 descriptors for the whole process.
    let exporter = Binary::launch("agents: []\n")
        .prefix(&["sh", "-c", "ulimit -n 64 && exec \"$@\"", "sh"])
        .start();
    let addr = exporter.addr;
    // Hold more connections than the exporter has descriptors.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            held.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let logs = exporter.logs();
    let errors = logs
        .lines()
        .filter(|l| l.contains("accepting a connection failed"))
        .count();
    assert!(errors >= 1, "no clear error logged:\n{logs}");
    assert!(
        errors <= 40,
        "{errors} accept errors in about 1.5 s: the loop must back off"
    );
    assert!(
        logs.contains("Too many open files") || logs.contains("os error 24"),
        "{logs}"
    );
    let mut exporter = exporter;
    assert!(exporter.is_running(), "the exporter died");
    drop(held);
    let recovered = wait_for(Duration::from_secs(10), || {
        get(addr, "/-/healthy").ok().filter(|a| a.status == 200)
    });
    assert!(
        recovered.is_some(),
        "not serving after the descriptors came back:\n{}",
        exporter.logs()
    );
}
