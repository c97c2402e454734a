//! Agent names in request paths are percent-decoded as path segments: every character a name
//! may hold reaches the agent of exactly that name, in every endpoint that takes a name.

mod harness;

use harness::{get, request, Binary};

/// Names that a form decoder or a hand-written splitter gets wrong.
const NAMES: [&str; 9] = [
    "a&b",
    "a?b",
    "a#b",
    "a%b",
    "a/b",
    "a b",
    "a+b",
    "ünïcødé-агент",
    "a=b;c",
];

/// The path segment a browser's `encodeURIComponent` (or any URL library) makes of `name`.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn config() -> String {
    // `a` exists too: a name cut at `&` or `?` would wrongly answer for it.
    let mut yaml = String::from("agents:\n  - {name: a, type: t, url: 'tcp://127.0.0.1:1'}\n");
    for name in NAMES {
        let quoted = serde_json::to_string(name).unwrap();
        yaml.push_str(&format!(
            "  - {{name: {quoted}, type: t, url: 'tcp://127.0.0.1:1', interval: 1h, timeout: 1s}}\n"
        ));
    }
    yaml
}

#[test]
fn every_agent_name_reaches_its_own_agent_in_every_endpoint() {
    let exporter = Binary::start(&config(), &["--web.enable-probe-api"]);
    for name in NAMES {
        let path = format!("/api/v1/agents/{}", encode(name));
        let answer = get(exporter.addr, &path).expect("get");
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
        assert_eq!(body["name"], name, "{path}");

        let probe = request(exporter.addr, "POST", &format!("{path}/probe"), &[]).expect("post");
        assert_eq!(probe.status, 200, "{path}/probe: {}", probe.text());
        let body: serde_json::Value = serde_json::from_slice(&probe.body).expect("json");
        assert_eq!(body["agent"], name, "{path}/probe");
    }
}

#[test]
fn a_plus_in_a_path_is_a_plus_and_an_unknown_name_is_404() {
    let exporter = Binary::start(&config(), &[]);
    let answer = get(exporter.addr, "/api/v1/agents/a+b").expect("get");
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(body["name"], "a+b");
    // `a&b` unencoded is still the name `a&b`, never `a`.
    let answer = get(exporter.addr, "/api/v1/agents/a&b").expect("get");
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(body["name"], "a&b");
    let answer = get(exporter.addr, "/api/v1/agents/a%26c").expect("get");
    assert_eq!(answer.status, 404, "{}", answer.text());
    // Bytes that are not UTF-8 name no agent.
    let answer = get(exporter.addr, "/api/v1/agents/a%FF").expect("get");
    assert_eq!(answer.status, 404, "{}", answer.text());
}
