//! `GET /api/v1/agents/{name}/config` and `--config.check --verbose`: an agent's settings as
//! resolved from defaults, its check, its own keys and, for a discovered agent, its source and
//! relabeling; every secret shown as `<secret>`, never its value nor a key file's contents.

mod harness;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use harness::{binary, fetch, wait_until, Served};
use serde_json::{json, Value};

/// Values that must never leave the exporter.
const SECRETS: &[&str] = &[
    "bearer-SECRET-1",
    "basic-SECRET-2",
    "meta-SECRET-3",
    "hb-SECRET-4",
    "inline-SECRET-5",
    "url-SECRET-6",
    "header-SECRET-7",
    "header-SECRET-8",
    "meta-SECRET-9",
    "query-SECRET-10",
    "query-SECRET-11",
];

const CONFIG: &str = r#"
defaults:
  interval: 20s
  labels: {env: test, team: default}
checks:
  orchestrator:
    interval: 10s
    failure_threshold: 3
    labels: {team: core}
    http: {headers: {X-Probe: "1", Authorization: "Bearer inline-SECRET-5"}}
    expect: {json: {"/status": "ok"}}
agents:
  - name: planner
    type: orchestrator
    url: http://127.0.0.1:9/health
    labels: {tier: gold}
    http:
      bearer_token_file: token
      headers:
        x-extra: "2"
        Ocp-Apim-Subscription-Key: header-SECRET-7
        X-Functions-Key: header-SECRET-8
        Accept: application/json
        User-Agent: probe/1
  - name: basic
    type: t
    url: http://127.0.0.1:9/
    http: {basic_auth: {username: probe, password_file: password}}
  - name: in-url
    type: t
    url: "http://user:url-SECRET-6@127.0.0.1:9/health?api_key=query-SECRET-10&access_token=query-SECRET-11&flag"
  - name: mtls
    type: t
    url: https://127.0.0.1:9/
    http: {tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client.key, server_name: agent.test}}
  - name: grpc
    type: t
    url: grpc://127.0.0.1:9
    grpc: {service: svc, metadata: {x-plain: p, x-access-key: meta-SECRET-9}, metadata_files: {x-token: meta}}
  - name: worker
    type: worker
    heartbeat: {period: 1m, token_file: hb}
discovery:
  - file_sd: {files: [targets.json], refresh_interval: 1h}
    type: retriever
    check: orchestrator
    relabel_configs:
      - {source_labels: [zone], target_label: region}
"#;

const TARGETS: &str =
    r#"[{"targets": ["127.0.0.1:9"], "labels": {"agent": "found-1", "zone": "eu"}}]"#;

/// The secret files and TLS material beside the config; answers the client key's PEM.
fn write_files(dir: &Path) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["client.test".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    let key_pem = key.serialize_pem();
    for (name, content) in [
        ("token", "bearer-SECRET-1\n"),
        ("password", "basic-SECRET-2\n"),
        ("meta", "meta-SECRET-3\n"),
        ("hb", "hb-SECRET-4\n"),
        ("targets.json", TARGETS),
        ("ca.pem", &cert.pem()),
        ("client.pem", &cert.pem()),
        ("client.key", &key_pem),
    ] {
        std::fs::write(dir.join(name), content).expect("writable");
    }
    key_pem
}

/// The inside of a PEM block: what would show if a key file's contents leaked.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

async fn config_of(served: &Served, name: &str) -> (u16, Value, String) {
    let answer = fetch(
        served.addr,
        "GET",
        &format!("/api/v1/agents/{name}/config"),
        &[],
    )
    .await
    .expect("answer");
    let text = answer.text();
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (answer.status, value, text)
}

fn assert_no_secret(text: &str, key_pem: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let body = pem_body(key_pem);
    assert!(
        !text.contains(&body[..40]),
        "the key file's contents leaked: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_endpoint_answers_each_agents_resolved_settings_with_secrets_hidden() {
    let mut key_pem = String::new();
    let served = Served::start_with(CONFIG, |dir, _| key_pem = write_files(dir)).await;
    let discovered = wait_until(Duration::from_secs(10), || {
        served.monitor.agent("found-1").is_some()
    })
    .await;
    assert!(discovered, "the file_sd target became no agent");
    let mut everything = String::new();

    let (status, planner, text) = config_of(&served, "planner").await;
    everything.push_str(&text);
    assert_eq!(status, 200, "{text}");
    // Own keys over the check over the defaults; maps merged key by key.
    assert_eq!(planner["check"], "orchestrator");
    assert_eq!(planner["origin"], "static");
    assert_eq!(planner["interval"], "10s", "from the check");
    assert_eq!(planner["timeout"], "5s", "the built-in default");
    assert_eq!(planner["failure_threshold"], 3);
    assert_eq!(planner["success_threshold"], 1);
    assert_eq!(
        planner["labels"],
        json!({"env": "test", "team": "core", "tier": "gold"})
    );
    assert_eq!(
        planner["http"]["headers"],
        json!({
            "authorization": "<secret>",
            "x-probe": "<secret>",
            "x-extra": "<secret>",
            "ocp-apim-subscription-key": "<secret>",
            "x-functions-key": "<secret>",
            "accept": "application/json",
            "user-agent": "probe/1",
        }),
        "only headers that never carry credentials are shown"
    );
    assert_eq!(planner["http"]["bearer_token"], "<secret>");
    let token_file = served.path("token");
    assert_eq!(
        planner["http"]["bearer_token_file"],
        token_file.display().to_string()
    );
    assert_eq!(planner["expect"]["json"], json!({"/status": "ok"}));
    assert_eq!(planner["expect"]["status"], json!(["2xx"]));

    let (_, basic, text) = config_of(&served, "basic").await;
    everything.push_str(&text);
    assert_eq!(basic["interval"], "20s", "from defaults");
    assert_eq!(basic["check"], Value::Null);
    assert_eq!(basic["labels"], json!({"env": "test", "team": "default"}));
    assert_eq!(basic["http"]["basic_auth"]["username"], "probe");
    assert_eq!(basic["http"]["basic_auth"]["password"], "<secret>");

    let (_, in_url, text) = config_of(&served, "in-url").await;
    everything.push_str(&text);
    assert_eq!(
        in_url["url"],
        "http://127.0.0.1:9/health?api_key=<secret>&access_token=<secret>&<secret>"
    );
    let listed = fetch(served.addr, "GET", "/api/v1/agents/in-url", &[])
        .await
        .expect("answer");
    assert_eq!(
        listed.json()["target"],
        in_url["url"],
        "the agent's view hides the query too"
    );
    everything.push_str(&listed.text());
    assert_eq!(in_url["http"]["basic_auth"]["username"], "user");
    assert_eq!(in_url["http"]["basic_auth"]["password"], "<secret>");

    let (_, mtls, text) = config_of(&served, "mtls").await;
    everything.push_str(&text);
    assert_eq!(
        mtls["http"]["tls"],
        json!({"custom_ca": true, "client_certificate": true, "insecure_skip_verify": false, "server_name": "agent.test"})
    );

    let (_, grpc, text) = config_of(&served, "grpc").await;
    everything.push_str(&text);
    assert_eq!(grpc["grpc"]["service"], "svc");
    assert_eq!(
        grpc["grpc"]["metadata"],
        json!({"x-plain": "<secret>", "x-access-key": "<secret>", "x-token": "<secret>"})
    );
    assert_eq!(
        grpc["grpc"]["metadata_files"]["x-token"],
        served.path("meta").display().to_string()
    );

    let (_, worker, text) = config_of(&served, "worker").await;
    everything.push_str(&text);
    assert_eq!(worker["heartbeat"]["period"], "1m");
    assert_eq!(worker["heartbeat"]["grace"], "12s");
    assert_eq!(worker["heartbeat"]["token"], "<secret>");

    // A discovered agent: type and check from its source, labels from relabeling, then the
    // check's and the defaults'.
    let (_, found, text) = config_of(&served, "found-1").await;
    everything.push_str(&text);
    assert_eq!(found["type"], "retriever");
    assert_eq!(found["check"], "orchestrator");
    assert!(
        found["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with("file_sd/0")),
        "{found}"
    );
    assert_eq!(found["url"], "http://127.0.0.1:9/health");
    assert_eq!(
        found["labels"],
        json!({"env": "test", "team": "core", "zone": "eu", "region": "eu"})
    );
    assert_eq!(found["interval"], "10s");

    assert_no_secret(&everything, &key_pem);

    let (status, _, text) = config_of(&served, "nobody").await;
    assert_eq!(status, 404, "{text}");
    let post = fetch(served.addr, "POST", "/api/v1/agents/planner/config", &[])
        .await
        .expect("answer");
    assert_eq!(post.status, 405);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_verbose_prints_what_the_endpoint_answers() {
    let mut key_pem = String::new();
    let served = Served::start_with(CONFIG, |dir, _| key_pem = write_files(dir)).await;
    let discovered = wait_until(Duration::from_secs(10), || {
        served.monitor.agent("found-1").is_some()
    })
    .await;
    assert!(discovered, "the file_sd target became no agent");
    let out = binary::command()
        .args(["--config.check", "--verbose", "--config.file"])
        .arg(&served.config)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&stdout, &key_pem);
    let printed: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let names: Vec<&str> = printed.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(
        names,
        ["planner", "basic", "in-url", "mtls", "grpc", "worker", "found-1"]
    );
    for agent in &printed {
        let name = agent["name"].as_str().unwrap_or_default();
        let (status, answered, _) = config_of(&served, name).await;
        assert_eq!(status, 200);
        assert_eq!(*agent, answered, "{name}");
    }
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_endpoint_is_behind_the_web_configs_basic_auth() {
    let hash = bcrypt::hash("wonderland", 4).expect("hash");
    let served = Served::start_with(
        "agents: [{name: a, type: t, url: \"http://127.0.0.1:9/\"}]\n",
        |dir, options| {
            let web = dir.join("web.yml");
            std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n"))
                .expect("writable");
            options.web_config_file = Some(web);
        },
    )
    .await;
    let path = "/api/v1/agents/a/config";
    let open = fetch(served.addr, "GET", path, &[]).await.expect("answer");
    assert_eq!(open.status, 401);
    let credentials = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    let header = format!("Basic {credentials}");
    let right = fetch(served.addr, "GET", path, &[("Authorization", &header)])
        .await
        .expect("answer");
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(right.json()["name"], "a");
    served.shutdown().await;
}
