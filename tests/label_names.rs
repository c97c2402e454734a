//! Label names in every scrape. The names the exporter sets itself (`agent`, `agent_type`, each
//! family's own label such as `status` or `protocol`, `le`) are reserved: a config label of such
//! a name is an error with its place, an SD label of such a name is dropped from its target, and
//! no series of any scrape (text 0.0.4, OpenMetrics, protobuf) carries a label name twice.
//! Property test: configs and SD groups with label names drawn from the names a scrape shows,
//! the reserved list and random valid names. With `promtool` and a Python with
//! prometheus_client (AHE_PEERS_PYTHON), the text scrapes are also read by both.
//! `AHE_PROPTEST_CASES` sets the number of cases (default 24).

mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent_health_exporter::config::{self, ConfigError, ResolvedAgent, Target};
use agent_health_exporter::discovery::check::check_sources;
use agent_health_exporter::metrics::{BuildInfo, ExporterMetrics, Format, Metrics};
use agent_health_exporter::monitor::Monitor;
use agent_health_exporter::probe::{Outcome, Phases, ProbeResult, ProtocolInfo, ProtocolReport};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

/// Static agents of every kind: each kind adds its own families (gRPC status, protocol info).
const STATIC_AGENTS: [(&str, &str, &str); 5] = [
    ("s-http", "http://127.0.0.1:9/health", ""),
    ("s-tcp", "tcp://127.0.0.1:9", ""),
    ("s-grpc", "grpc://127.0.0.1:9", ""),
    ("s-mcp", "http://127.0.0.1:9/mcp", "protocol: mcp, "),
    ("s-a2a", "http://127.0.0.1:9/", "protocol: a2a, "),
];

type Labels = Vec<(String, String)>;

/// One generated case: labels at every place a config or an SD group can set them.
#[derive(Debug, Clone)]
struct Case {
    defaults: Labels,
    check: Labels,
    agents: Vec<Labels>,
    /// Groups of the plain source (grpc targets when the flag is set) and of the mcp source.
    plain_groups: Vec<(bool, Labels)>,
    mcp_groups: Vec<Labels>,
    /// A relabel rule of the plain source that writes this label.
    relabel_to: Option<String>,
}

/// Every label name a scrape of a fleet of every kind shows on its per-agent series (the
/// agent's own labels are `agent` and `agent_type` only here).
fn names_a_scrape_shows() -> BTreeSet<String> {
    let (_dir, config) = parse_case(&Case {
        defaults: vec![],
        check: vec![],
        agents: vec![vec![]; STATIC_AGENTS.len()],
        plain_groups: vec![],
        mcp_groups: vec![],
        relabel_to: None,
    })
    .expect("the bare fleet is valid");
    let text = String::from_utf8(scrape(&config.agents, Format::Text)).expect("UTF-8");
    let mut names = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("agent_") && l.contains('{'))
    {
        let labels = label_names(line).expect("a well-formed series line");
        if labels.first().map(String::as_str) == Some("agent") {
            names.extend(labels);
        }
    }
    names
}

/// The names the exporter reserves: what a scrape shows and what the crate declares.
fn reserved() -> BTreeSet<String> {
    let mut names = names_a_scrape_shows();
    names.extend(
        agent_health_exporter::metrics::reserved_label_names()
            .iter()
            .map(|n| n.to_string()),
    );
    names
}

fn case_strategy(pool: Vec<String>) -> impl Strategy<Value = Case> {
    let name = prop_oneof![
        3 => proptest::sample::select(pool),
        1 => "[a-z][a-z0-9_]{0,6}",
    ];
    // Printable ASCII, quotes and backslashes included: the encoders must escape them.
    // One value per name, as a YAML or JSON map has.
    let labels = proptest::collection::vec((name.clone(), "[ -~]{0,6}"), 0..3).prop_map(
        |mut labels: Labels| {
            let mut seen = BTreeSet::new();
            labels.retain(|(k, _)| seen.insert(k.clone()));
            labels
        },
    );
    (
        labels.clone(),
        labels.clone(),
        proptest::collection::vec(labels.clone(), STATIC_AGENTS.len()),
        proptest::collection::vec((any::<bool>(), labels.clone()), 0..4),
        proptest::collection::vec(labels, 0..3),
        proptest::option::of(name),
    )
        .prop_map(
            |(defaults, check, agents, plain_groups, mcp_groups, relabel_to)| Case {
                defaults,
                check,
                agents,
                plain_groups,
                mcp_groups,
                relabel_to,
            },
        )
}

/// A YAML flow map with every key and value quoted (JSON strings are YAML double-quoted ones).
fn flow(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}: {}", json(k), json(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn json(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn yaml(case: &Case) -> String {
    let mut y = format!(
        "defaults:\n  labels: {}\nchecks:\n  c:\n    labels: {}\n  m:\n    protocol: mcp\nagents:\n",
        flow(&case.defaults),
        flow(&case.check)
    );
    for ((name, url, extra), labels) in STATIC_AGENTS.iter().zip(&case.agents) {
        y.push_str(&format!(
            "  - {{name: {name}, type: c, url: {url:?}, {extra}labels: {}}}\n",
            flow(labels)
        ));
    }
    y.push_str("discovery:\n  - file_sd: {files: [plain.json]}\n    type: c\n");
    if let Some(to) = &case.relabel_to {
        y.push_str(&format!(
            "    relabel_configs: [{{target_label: {}, replacement: r}}]\n",
            json(to)
        ));
    }
    y.push_str("  - file_sd: {files: [mcp.json]}\n    type: c\n    check: m\n");
    y
}

/// SD documents of the case: `(file, groups)`, each group named `d…` unless its labels say
/// otherwise.
fn sd_files(case: &Case) -> [(&'static str, serde_json::Value); 2] {
    let group = |name: String, extra: &[(&str, &str)], labels: &Labels| {
        let mut map = serde_json::Map::new();
        map.insert("agent".into(), name.into());
        for (k, v) in extra {
            map.insert((*k).into(), (*v).into());
        }
        for (k, v) in labels {
            map.insert(k.clone(), v.clone().into());
        }
        serde_json::json!({"targets": ["127.0.0.1:9"], "labels": map})
    };
    let plain = case
        .plain_groups
        .iter()
        .enumerate()
        .map(|(i, (grpc, labels))| {
            let extra: &[(&str, &str)] = if *grpc {
                &[("__scheme__", "grpc"), ("__path__", "")]
            } else {
                &[]
            };
            group(format!("d-plain-{i}"), extra, labels)
        })
        .collect();
    let mcp = case
        .mcp_groups
        .iter()
        .enumerate()
        .map(|(i, labels)| group(format!("d-mcp-{i}"), &[], labels))
        .collect();
    [
        ("plain.json", serde_json::Value::Array(plain)),
        ("mcp.json", serde_json::Value::Array(mcp)),
    ]
}

fn parse_case(case: &Case) -> Result<(tempfile::TempDir, config::Config), ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, groups) in sd_files(case) {
        std::fs::write(dir.path().join(file), groups.to_string()).expect("write SD file");
    }
    let config = config::parse(&yaml(case), "case.yaml", dir.path())?;
    Ok((dir, config))
}

/// The case without its config labels of a reserved name; SD labels are left as they are.
fn without_reserved(case: &Case, reserved: &BTreeSet<String>) -> Case {
    let keep = |labels: &Labels| -> Labels {
        labels
            .iter()
            .filter(|(k, _)| !reserved.contains(k))
            .cloned()
            .collect()
    };
    Case {
        defaults: keep(&case.defaults),
        check: keep(&case.check),
        agents: case.agents.iter().map(keep).collect(),
        ..case.clone()
    }
}

/// The discovered agents of `config`, as `--config.check` reads them (the running exporter's
/// reading of a refresh).
fn discovered(config: &config::Config) -> Vec<ResolvedAgent> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let checks = runtime.block_on(check_sources(config));
    let mut agents = Vec::new();
    for check in checks {
        let found = check
            .found
            .unwrap_or_else(|e| panic!("{} failed: {e}", check.source));
        agents.extend(found.agents.into_iter().map(|(agent, _)| agent));
    }
    agents
}

/// A scrape of `agents` in `format`, each agent probed once with everything a probe can report.
fn scrape(agents: &[ResolvedAgent], format: Format) -> Vec<u8> {
    let monitor = Arc::new(Monitor::new(4));
    for resolved in agents {
        let agent = monitor.insert(resolved);
        let protocol = match &resolved.spec.target {
            Target::Grpc(_) => Some("grpc"),
            Target::Mcp(_) => Some("mcp"),
            Target::A2a(_) => Some("a2a"),
            _ => None,
        };
        monitor.record(
            &agent,
            ProbeResult {
                ended_at: SystemTime::now(),
                duration: Duration::from_millis(3),
                phases: Phases::default(),
                http_status: Some(200),
                cert_expiry: None,
                protocol: ProtocolReport {
                    grpc_status: (protocol == Some("grpc")).then_some(0),
                    info: protocol.map(|p| Arc::new(ProtocolInfo::reported(p, "n\"\\", "1", "v"))),
                },
                outcome: Outcome::Healthy,
            },
        );
    }
    let metrics = Metrics::new(
        monitor,
        Arc::new(ExporterMetrics::default()),
        BuildInfo {
            version: "1",
            revision: "r",
            rustc: "1.85",
        },
    );
    metrics.encode(format).expect("encode")
}

/// The label names of one text series line, in order; None when the line is not well formed.
fn label_names(line: &str) -> Option<Vec<String>> {
    let Some(open) = line.find('{') else {
        return Some(Vec::new());
    };
    if line.find(' ').is_some_and(|space| space < open) {
        return Some(Vec::new());
    }
    let mut names = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return after.starts_with(' ').then_some(names);
        }
        let eq = rest.find('=')?;
        names.push(rest[..eq].to_owned());
        rest = rest[eq + 1..].strip_prefix('"')?;
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => {
                    chars.next()?;
                }
                (i, '"') => break i,
                _ => {}
            }
        };
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Every series of a text scrape with a label name twice, or a line that does not parse.
fn text_problems(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| match label_names(line) {
            None => Some(format!("malformed: {line}")),
            Some(names) => {
                let unique: BTreeSet<&String> = names.iter().collect();
                (unique.len() != names.len()).then(|| format!("label name twice: {line}"))
            }
        })
        .collect()
}

fn protobuf_problems(mut bytes: &[u8]) -> Vec<String> {
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily;
    use prost::Message;
    let mut problems = Vec::new();
    while !bytes.is_empty() {
        let family = MetricFamily::decode_length_delimited(&mut bytes).expect("a whole frame");
        for metric in &family.metric {
            let names: Vec<&str> = metric.label.iter().map(|l| l.name.as_str()).collect();
            let unique: BTreeSet<&&str> = names.iter().collect();
            if unique.len() != names.len() {
                problems.push(format!("label name twice in {}: {names:?}", family.name));
            }
        }
    }
    problems
}

/// Checks one case; text and OpenMetrics scrapes go to `keep` for the external parsers.
fn check_case(
    case: &Case,
    reserved: &BTreeSet<String>,
    keep: &Mutex<Vec<(Format, Vec<u8>)>>,
) -> Result<(), TestCaseError> {
    let config_names: Vec<&String> = case
        .defaults
        .iter()
        .chain(&case.check)
        .chain(case.agents.iter().flatten())
        .map(|(k, _)| k)
        .collect();
    let clashing: Vec<&&String> = config_names
        .iter()
        .filter(|k| reserved.contains(k.as_str()))
        .collect();
    match parse_case(case) {
        Ok(_) if !clashing.is_empty() => {
            return Err(TestCaseError::fail(format!(
                "config labels {clashing:?} are reserved, yet the config was accepted:\n{}",
                yaml(case)
            )));
        }
        Err(ConfigError::Invalid(issues)) if !clashing.is_empty() => {
            for name in clashing {
                let named = issues
                    .iter()
                    .find(|i| i.message.contains(&format!("{name:?}")));
                let issue = named.ok_or_else(|| {
                    TestCaseError::fail(format!("no error names {name:?}: {issues:?}"))
                })?;
                prop_assert!(issue.line >= 1 && issue.column >= 1, "{issue}");
                prop_assert_eq!(issue.file.as_str(), "case.yaml");
                prop_assert!(issue.message.contains("set by the exporter"), "{issue}");
                prop_assert!(!issue.fix.is_empty(), "{issue}");
            }
        }
        Err(other) => return Err(TestCaseError::fail(format!("{other}\n{}", yaml(case)))),
        Ok(_) => {}
    }
    let clean = without_reserved(case, reserved);
    let (_dir, config) =
        parse_case(&clean).map_err(|e| TestCaseError::fail(format!("{e}\n{}", yaml(&clean))))?;
    let found = discovered(&config);
    for agent in &found {
        if let Some((k, _)) = agent.spec.labels.iter().find(|(k, _)| reserved.contains(k)) {
            return Err(TestCaseError::fail(format!(
                "discovered agent {} kept the reserved SD label {k:?}",
                agent.spec.name
            )));
        }
    }
    // A target whose name and type no label overrides stays, without its reserved labels.
    let renames = |labels: &Labels| {
        labels
            .iter()
            .any(|(k, _)| k == "agent" || k == "agent_type")
            || matches!(case.relabel_to.as_deref(), Some("agent" | "agent_type"))
    };
    let names: BTreeSet<&str> = found.iter().map(|a| a.spec.name.as_str()).collect();
    for (i, (_, labels)) in case.plain_groups.iter().enumerate() {
        let name = format!("d-plain-{i}");
        prop_assert!(
            renames(labels) || names.contains(name.as_str()),
            "{name} was dropped: {labels:?}"
        );
    }
    for (i, labels) in case.mcp_groups.iter().enumerate() {
        let name = format!("d-mcp-{i}");
        let renamed = labels
            .iter()
            .any(|(k, _)| k == "agent" || k == "agent_type");
        prop_assert!(
            renamed || names.contains(name.as_str()),
            "{name} was dropped: {labels:?}"
        );
    }
    let mut fleet = config.agents.clone();
    fleet.extend(found);
    for format in [Format::Text, Format::OpenMetrics] {
        let bytes = scrape(&fleet, format);
        let text = String::from_utf8(bytes.clone()).expect("UTF-8");
        let problems = text_problems(&text);
        prop_assert!(problems.is_empty(), "{format:?}: {problems:#?}");
        keep.lock().unwrap().push((format, bytes));
    }
    let problems = protobuf_problems(&scrape(&fleet, Format::Protobuf));
    prop_assert!(problems.is_empty(), "protobuf: {problems:#?}");
    Ok(())
}

fn cases() -> u32 {
    std::env::var("AHE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

#[test]
fn no_scrape_repeats_a_label_name_whatever_labels_configs_and_sd_groups_set() {
    let reserved = reserved();
    let mut pool: BTreeSet<String> = reserved.clone();
    pool.extend(["team", "zone", "tier"].map(str::to_owned));
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let keep = Mutex::new(Vec::new());
    let outcome = runner.run(&case_strategy(pool.into_iter().collect()), |case| {
        check_case(&case, &reserved, &keep)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    external_parsers_accept(&keep.into_inner().unwrap());
}

/// Feeds the kept scrapes to `promtool check metrics` (text) and to prometheus_client's
/// parsers (text and OpenMetrics); skips, saying why, what is not installed.
fn external_parsers_accept(scrapes: &[(Format, Vec<u8>)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, (format, bytes)) in scrapes.iter().enumerate() {
        let ext = if *format == Format::Text { "txt" } else { "om" };
        let path = dir.path().join(format!("scrape-{i}.{ext}"));
        std::fs::write(&path, bytes).expect("write scrape");
        files.push(path);
    }
    let texts: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    if Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        for path in &texts {
            let out = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(std::fs::File::open(path).expect("open scrape"))
                .output()
                .expect("run promtool");
            assert!(
                out.status.success(),
                "promtool check metrics rejects {}: {}{}\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(path).unwrap_or_default()
            );
        }
        println!(
            "promtool check metrics accepted {} text scrapes",
            texts.len()
        );
    } else {
        println!("SKIPPED the promtool part: no promtool on PATH");
    }
    let Some(python) =
        harness::peers::python("label_names: prometheus_client", "prometheus_client")
    else {
        return;
    };
    let out = Command::new(&python)
        .arg(repo_path("tests/peers/parse_exposition.py"))
        .args(&files)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "prometheus_client rejects a scrape:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("prometheus_client accepted {} scrapes", files.len());
}

fn repo_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn a_config_label_of_a_reserved_name_is_an_error_at_its_place_with_the_fix() {
    let places = [
        ("defaults:\n  labels: {protocol: grpc}\n", 2),
        ("checks:\n  c:\n    labels: {server_name: x}\n", 3),
        ("checks: {}\n", 0),
    ];
    for (head, line) in places {
        let agent_labels = if line == 0 { "{le: x}" } else { "{}" };
        let yaml = format!(
            "{head}agents:\n  - name: a\n    type: c\n    url: grpc://127.0.0.1:9\n    labels: {agent_labels}\n"
        );
        let line = if line == 0 { 6 } else { line };
        let issues = match config::parse(&yaml, "fleet.yaml", Path::new(".")) {
            Ok(_) => panic!("a reserved label name was accepted:\n{yaml}"),
            Err(ConfigError::Invalid(issues)) => issues,
            Err(other) => panic!("{other}"),
        };
        let issue = issues
            .iter()
            .find(|i| i.message.contains("is set by the exporter itself"))
            .unwrap_or_else(|| panic!("{issues:?}"));
        assert_eq!(
            (issue.file.as_str(), issue.line),
            ("fleet.yaml", line),
            "{issue}"
        );
        assert!(issue.column >= 1, "{issue}");
        assert!(issue.fix.contains("rename the label"), "{issue}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_label_of_a_reserved_name_is_dropped_from_its_target_and_counted() {
    use harness::discovery::Running;
    use harness::metric;
    let config = r#"
checks:
  tools: {protocol: mcp}
discovery:
  - file_sd: {files: [tools.json]}
    type: tools
    relabel_configs:
      - {source_labels: [shard], regex: "(.+)", target_label: server_name}
  - file_sd: {files: [quiet.json]}
    type: worker
"#;
    let tools = serde_json::json!([
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w-mcp", "protocol": "grpc", "status": "x", "zone": "z"}},
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w-sharded", "shard": "3"}},
        {"targets": ["127.0.0.1:9"], "labels": {"agent": "w-plain", "zone": "y"}},
    ])
    .to_string();
    let quiet = harness::discovery::groups(&[("q", "127.0.0.1:9")]);
    let run = Running::start(config, &[("tools.json", &tools), ("quiet.json", &quiet)]).await;
    let wait = Duration::from_secs(10);
    run.wait_for_fleet(&["q", "w-mcp", "w-plain", "w-sharded"], wait)
        .await;
    let labels = |name: &str| {
        run.exporter
            .monitor
            .agent(name)
            .expect(name)
            .spec
            .labels
            .clone()
    };
    assert_eq!(labels("w-mcp"), [("zone".to_owned(), "z".to_owned())]);
    assert_eq!(labels("w-sharded"), [("shard".to_owned(), "3".to_owned())]);
    run.wait_for_metrics(wait, |m| {
        metric(m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"reserved_label\"}") == Some(2.0)
    })
    .await;
    let m = run.metrics();
    assert_eq!(
        metric(&m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/1\",reason=\"reserved_label\"}"),
        Some(0.0),
        "every reason's series exists from the source's start"
    );
    assert!(
        m.contains(
            "agent_protocol_info{agent=\"w-mcp\",agent_type=\"tools\",zone=\"z\",protocol=\"mcp\","
        ),
        "{m}"
    );
    assert!(text_problems(&m).is_empty(), "{:?}", text_problems(&m));
}

#[test]
fn config_guide_lists_exactly_the_reserved_label_names() {
    let guide =
        std::fs::read_to_string(repo_path("docs/config-file.md")).expect("docs/config-file.md");
    let start = "- **Reserved label names** are those the exporter sets on an agent's series: ";
    let at = guide
        .find(start)
        .expect("the reserved names bullet of docs/config-file.md")
        + start.len();
    let listed: Vec<&str> = guide[at..]
        .split(" (")
        .next()
        .unwrap_or_default()
        .split(", ")
        .map(|n| n.trim_matches('`'))
        .collect();
    assert_eq!(
        listed,
        agent_health_exporter::metrics::reserved_label_names(),
        "update the list in docs/config-file.md to the names the families set"
    );
}

#[test]
fn reserved_discovered_labels_are_logged_once_per_refresh_not_once_per_target() {
    use harness::{metric, wait_for, Binary};
    let targets = |n: usize| {
        let groups: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({"targets": ["127.0.0.1:9"], "labels": {"agent": format!("w{i}"), "status": "x", "phase": "y"}}))
            .collect();
        serde_json::Value::Array(groups).to_string()
    };
    let config = "discovery:\n  - file_sd: {files: [t.json]}\n    type: worker\n";
    let exporter = Binary::launch(config).file("t.json", &targets(3)).start();
    let counted = |want: f64| {
        wait_for(Duration::from_secs(10), || {
            let m = exporter.metrics();
            (metric(&m, "agent_exporter_discovery_dropped_targets_total{source=\"file_sd/0\",reason=\"reserved_label\"}") == Some(want)).then_some(())
        })
    };
    counted(3.0).expect("three targets counted");
    let lines = || -> Vec<String> {
        exporter
            .logs()
            .lines()
            .filter(|l| l.contains("dropped from their targets"))
            .map(str::to_owned)
            .collect()
    };
    let first = wait_for(Duration::from_secs(2), || lines().first().cloned()).expect("a log line");
    for field in [
        "level=warn",
        "source=file_sd/0",
        "targets=3",
        "labels=phase,status",
    ] {
        assert!(first.contains(field), "{field} missing in {first}");
    }
    // A new refresh (the file changed) logs again, once.
    let dir = exporter.config_path().parent().expect("dir").to_owned();
    harness::discovery::replace_atomically(&dir.join("t.json"), &targets(4));
    counted(7.0).expect("four more targets counted");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines().len(), 2, "{:?}", lines());
}
