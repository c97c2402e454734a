//! Canary tasks against real servers: the built exporter sends its canaries to a2a-sdk agents
//! of protocol 1.0 and 0.3 (one answers, one fails, one asks for input), to an MCP server of
//! the official SDK (a tool that answers, one that returns `isError`, one that sleeps past the
//! timeout; and the 2.x SDK's server of the 2026-07-28 era) and to LiteLLM's proxy (an OpenAI-compatible server; its models answer with
//! LiteLLM's mock responses, streamed or not), behind a relay that stalls or cuts the answer
//! for the broken-network cases. Every verdict and reason is read where a user reads it: the
//! agent's API answer, /metrics and the event stream.
//!
//! The peers (tests/peers/) run in the venvs of setup-venv.sh and setup-litellm.sh; without
//! them each test skips with a message. Peers are started once per test binary and shared
//! (LiteLLM alone takes most of a minute to import on a busy machine); each ends when this
//! process does, since it serves until its stdin closes.

mod harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use harness::peers::{python, python_a2a03, python_litellm, python_mcp2, Peer};
use harness::{get, wait_for, Binary, EventStream};

/// The bearer token LiteLLM's proxy asks for (its master key, tests/peers/litellm/config.yaml).
const LITELLM_KEY: &str = "sk-canary-peer";
/// How long a test waits for a canary verdict: LiteLLM answers in a few hundred milliseconds
/// on a busy machine, the other peers faster.
const VERDICT_WITHIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Shared peers

/// The port of one shared peer, once it serves.
type Slot = Arc<OnceLock<u16>>;

/// Peers that run for the whole test binary, by what started them.
fn running() -> &'static Mutex<HashMap<String, Slot>> {
    static RUNNING: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Kept alive until the process exits; their stdin closes then and they stop.
fn kept() -> &'static Mutex<Vec<Peer>> {
    static KEPT: OnceLock<Mutex<Vec<Peer>>> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// The port of the peer `script args` run by `python`, started on first use.
fn shared(python: &Path, script: &str, args: &[&str]) -> u16 {
    let key = format!("{} {script} {}", python.display(), args.join(" "));
    let slot = running().lock().unwrap().entry(key).or_default().clone();
    *slot.get_or_init(|| {
        let peer = Peer::start(python, script, args);
        let port = peer.port;
        kept().lock().unwrap().push(peer);
        port
    })
}

/// The venv python resolved once per binary (the import check of LiteLLM alone takes seconds).
fn litellm_python(test: &str) -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| python_litellm("canaries (LiteLLM)"));
    if found.is_none() {
        println!("SKIPPED {test}: no LiteLLM venv (tests/peers/setup-litellm.sh)");
    }
    found.clone()
}

/// Starts LiteLLM's proxy in the background at the first test, so that its import (most of a
/// minute) overlaps the tests of the other peers instead of adding to them.
fn prestart_litellm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| litellm("canaries (LiteLLM started ahead)"));
    });
}

fn a2a10(test: &str, behaviour: &str) -> Option<u16> {
    prestart_litellm();
    let python = python(test, "a2a.server.routes, uvicorn")?;
    Some(shared(
        &python,
        "a2a_canary_server.py",
        &["--behaviour", behaviour],
    ))
}

fn a2a03(test: &str, behaviour: &str) -> Option<u16> {
    prestart_litellm();
    let python = python_a2a03(test, "a2a.server.apps, uvicorn")?;
    Some(shared(
        &python,
        "a2a03_canary_server.py",
        &["--behaviour", behaviour],
    ))
}

fn mcp(test: &str) -> Option<u16> {
    prestart_litellm();
    let python = python(test, "mcp.server.fastmcp, uvicorn")?;
    Some(shared(&python, "mcp_canary_server.py", &[]))
}

/// The MCP SDK 2.x server of tests/peers/mcp2_server.py (tools `add` and `echo`) in `era`.
fn mcp2(test: &str, era: &str) -> Option<u16> {
    prestart_litellm();
    let python = python_mcp2(test, "mcp.server.mcpserver, uvicorn")?;
    Some(shared(&python, "mcp2_server.py", &["--era", era]))
}

fn litellm(test: &str) -> Option<u16> {
    let python = litellm_python(test)?;
    Some(shared(&python, "litellm_server.py", &[]))
}

/// A relay in front of LiteLLM that breaks the answers to POSTs as `mode` says.
fn relay(test: &str, mode: &str) -> Option<u16> {
    let upstream = litellm(test)?.to_string();
    // The relay needs only the standard library: any of the venvs' pythons runs it.
    let python = litellm_python(test)?;
    Some(shared(
        &python,
        "stall_relay.py",
        &["--upstream", &upstream, "--mode", mode],
    ))
}

// ---------------------------------------------------------------------------------------------
// Configs and what the exporter says

/// One agent of the config: its health probe every 2s, its canary every `every`.
fn agent(name: &str, url: &str, head: &str, canary: &str) -> String {
    format!(
        "  - name: {name}\n    type: assistant\n    url: {url}\n    interval: 2s\n    timeout: 1s\n{head}    canary:\n{canary}"
    )
}

fn a2a_agent(name: &str, port: u16, task: &str) -> String {
    agent(
        name,
        &format!("http://127.0.0.1:{port}/"),
        "    protocol: a2a\n",
        &format!("      interval: 2s\n      timeout: 1500ms\n      a2a: {task}\n"),
    )
}

fn mcp_agent(name: &str, port: u16, timeout: &str, task: &str) -> String {
    agent(
        name,
        &format!("http://127.0.0.1:{port}/mcp"),
        "    protocol: mcp\n",
        &format!("      interval: 3s\n      timeout: {timeout}\n      mcp: {task}\n"),
    )
}

/// An OpenAI-compatible agent whose URL is its health path, with LiteLLM's key from a file.
fn openai_agent(name: &str, port: u16, extra: &str, task: &str) -> String {
    agent(
        name,
        &format!("http://127.0.0.1:{port}/health/liveliness"),
        "    http: {bearer_token_file: litellm.key}\n",
        &format!("      interval: 3s\n      timeout: 2500ms\n{extra}      openai: {task}\n"),
    )
}

/// The exporter on these agents, with LiteLLM's key beside the config.
fn exporter(agents: &[String]) -> Binary {
    let config = format!("agents:\n{}", agents.concat());
    Binary::launch(&config)
        .file("litellm.key", LITELLM_KEY)
        .start()
}

/// The agent's API answer.
fn api(exporter: &Binary, agent: &str) -> Value {
    let answer = get(exporter.addr, &format!("/api/v1/agents/{agent}")).expect("API answers");
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// The last canary run of `agent` once there is one (`canary.last` of its API answer).
fn last_run(exporter: &Binary, agent: &str) -> Value {
    wait_for(VERDICT_WITHIN, || {
        let last = api(exporter, agent)["canary"]["last"].clone();
        (!last.is_null()).then_some(last)
    })
    .unwrap_or_else(|| {
        panic!(
            "no canary run of {agent} within {VERDICT_WITHIN:?}: {}\n{}",
            api(exporter, agent),
            exporter.logs()
        )
    })
}

/// Asserts the verdict of `agent`'s first canary run: `success`, or `failure` with `reason`.
fn assert_verdict(exporter: &Binary, agent: &str, reason: Option<&str>) -> Value {
    let run = last_run(exporter, agent);
    match reason {
        None => {
            assert_eq!(run["result"], "success", "{agent}: {run}");
            assert!(run["reason"].is_null(), "{agent}: {run}");
        }
        Some(reason) => {
            assert_eq!(run["result"], "failure", "{agent}: {run}");
            assert_eq!(run["reason"], reason, "{agent}: {run}");
        }
    }
    run
}

/// The sum of the samples of `name` whose labels include all of `labels`; None when none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        {
            let value: f64 = value.parse().expect("a number");
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

const REASONS: [&str; 8] = [
    "timeout",
    "connect",
    "tls",
    "http_status",
    "protocol",
    "task_failed",
    "task_interrupted",
    "content_mismatch",
];

/// Asserts the metrics agree with a verdict: the run counted under its result, a failure under
/// its reason, every reason's series present, the duration observed.
fn assert_counted(exporter: &Binary, agent: &str, reason: Option<&str>) {
    let text = exporter.metrics();
    let result = if reason.is_some() {
        "failure"
    } else {
        "success"
    };
    let runs = sample(
        &text,
        "agent_canary_runs_total",
        &[("agent", agent), ("result", result)],
    );
    assert!(runs >= Some(1.0), "{agent}: runs {result} {runs:?}\n{text}");
    for r in REASONS {
        let failures = sample(
            &text,
            "agent_canary_failures_total",
            &[("agent", agent), ("reason", r)],
        );
        assert!(
            failures.is_some(),
            "{agent}: no series for reason {r}\n{text}"
        );
        if Some(r) == reason {
            assert!(failures >= Some(1.0), "{agent}: {r} not counted\n{text}");
        }
    }
    let observed = sample(
        &text,
        "agent_canary_duration_seconds_count",
        &[("agent", agent)],
    );
    assert!(observed >= Some(1.0), "{agent}: duration {observed:?}");
    let last_success = sample(
        &text,
        "agent_canary_last_success_timestamp_seconds",
        &[("agent", agent)],
    );
    if reason.is_none() {
        assert!(
            last_success > Some(1e9),
            "{agent}: last success {last_success:?}"
        );
    }
}

/// Observations of the time-to-first-token histogram of `agent` (0 when it has none).
fn first_token_count(exporter: &Binary, agent: &str) -> f64 {
    sample(
        &exporter.metrics(),
        "agent_canary_first_token_seconds_count",
        &[("agent", agent)],
    )
    .unwrap_or(0.0)
}

fn status(exporter: &Binary, agent: &str) -> String {
    api(exporter, agent)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `agent` has `status` (the health probe and the canary both had their say).
fn assert_status_becomes(exporter: &Binary, agent: &str, expected: &str) {
    let reached = wait_for(VERDICT_WITHIN, || {
        (status(exporter, agent) == expected).then_some(())
    });
    assert!(
        reached.is_some(),
        "{agent} did not become {expected}: {}",
        api(exporter, agent)
    );
}

// ---------------------------------------------------------------------------------------------
// A2A

const QUESTION: &str =
    r#"{text: "What is 2+2? Answer with the digit only.", expect: {contains: "4", regex: "^4$"}}"#;

#[test]
fn a2a_agents_of_both_protocol_versions_answering_the_question_succeed() {
    let test = "a2a_answer";
    let (Some(v10), Some(v03)) = (a2a10(test, "answer"), a2a03(test, "answer")) else {
        return;
    };
    let exporter = exporter(&[
        a2a_agent("answer-10", v10, QUESTION),
        a2a_agent("answer-03", v03, QUESTION),
    ]);
    for agent in ["answer-10", "answer-03"] {
        let run = assert_verdict(&exporter, agent, None);
        assert_eq!(run["reply"], "4", "{agent}: {run}");
        assert_counted(&exporter, agent, None);
        assert_eq!(
            first_token_count(&exporter, agent),
            0.0,
            "{agent}: only streaming openai measures a first token"
        );
        assert_status_becomes(&exporter, agent, "healthy");
    }
    assert_eq!(api(&exporter, "answer-10")["canary"]["kind"], "a2a");
}

#[test]
fn a2a_failed_and_rejected_tasks_are_task_failed() {
    let test = "a2a_task_failed";
    let (Some(fail10), Some(reject10), Some(fail03)) = (
        a2a10(test, "fail"),
        a2a10(test, "reject"),
        a2a03(test, "fail"),
    ) else {
        return;
    };
    let exporter = exporter(&[
        a2a_agent("fail-10", fail10, QUESTION),
        a2a_agent("reject-10", reject10, QUESTION),
        a2a_agent("fail-03", fail03, QUESTION),
    ]);
    for agent in ["fail-10", "reject-10", "fail-03"] {
        assert_verdict(&exporter, agent, Some("task_failed"));
        assert_counted(&exporter, agent, Some("task_failed"));
    }
}

#[test]
fn a2a_tasks_asking_for_input_or_authorization_are_task_interrupted() {
    let test = "a2a_task_interrupted";
    let (Some(input10), Some(auth10), Some(input03)) = (
        a2a10(test, "input"),
        a2a10(test, "auth"),
        a2a03(test, "input"),
    ) else {
        return;
    };
    let exporter = exporter(&[
        a2a_agent("input-10", input10, QUESTION),
        a2a_agent("auth-10", auth10, QUESTION),
        a2a_agent("input-03", input03, QUESTION),
    ]);
    for agent in ["input-10", "auth-10", "input-03"] {
        assert_verdict(&exporter, agent, Some("task_interrupted"));
        assert_counted(&exporter, agent, Some("task_interrupted"));
    }
}

#[test]
fn a2a_answer_not_matching_contains_or_regex_is_content_mismatch() {
    let test = "a2a_content_mismatch";
    let (Some(v10), Some(v03)) = (a2a10(test, "answer"), a2a03(test, "answer")) else {
        return;
    };
    let exporter = exporter(&[
        a2a_agent(
            "contains-10",
            v10,
            r#"{text: "What is 2+2?", expect: {contains: "5"}}"#,
        ),
        a2a_agent(
            "regex-03",
            v03,
            r#"{text: "What is 2+2?", expect: {regex: "^(five|5)$"}}"#,
        ),
    ]);
    for agent in ["contains-10", "regex-03"] {
        let run = assert_verdict(&exporter, agent, Some("content_mismatch"));
        assert_eq!(
            run["reply"], "4",
            "{agent}: the reply is shown with the failure: {run}"
        );
        assert_counted(&exporter, agent, Some("content_mismatch"));
    }
}

// ---------------------------------------------------------------------------------------------
// MCP

#[test]
fn mcp_tool_answering_succeeds_and_structured_content_is_matched_as_json() {
    let Some(port) = mcp("mcp_answer") else {
        return;
    };
    let exporter = exporter(&[
        mcp_agent(
            "echo",
            port,
            "2s",
            r#"{tool: echo, arguments: {text: "canary 42"}, expect: {contains: "canary", regex: "\\d+"}}"#,
        ),
        mcp_agent(
            "forecast",
            port,
            "2s",
            r#"{tool: forecast, arguments: {city: Oslo}, expect: {json: {"/celsius": 21, "/sky": "clear"}}}"#,
        ),
    ]);
    for agent in ["echo", "forecast"] {
        assert_verdict(&exporter, agent, None);
        assert_counted(&exporter, agent, None);
        assert_eq!(first_token_count(&exporter, agent), 0.0);
    }
    assert_eq!(api(&exporter, "echo")["canary"]["kind"], "mcp");
}

#[test]
fn mcp_tool_call_to_a_server_of_the_2026_era_succeeds_stateless_and_dual() {
    let test = "mcp_2026_era";
    let (Some(modern), Some(dual)) = (mcp2(test, "modern"), mcp2(test, "dual")) else {
        return;
    };
    let echo = r#"{tool: echo, arguments: {text: canary}, expect: {contains: canary}}"#;
    let exporter = exporter(&[
        mcp_agent("modern", modern, "2s", echo),
        mcp_agent("dual", dual, "2s", echo),
    ]);
    for agent in ["modern", "dual"] {
        let run = assert_verdict(&exporter, agent, None);
        assert_eq!(run["reply"], "canary", "{agent}: {run}");
        assert_counted(&exporter, agent, None);
    }
}

#[test]
fn mcp_tool_result_with_is_error_is_task_failed() {
    let Some(port) = mcp("mcp_is_error") else {
        return;
    };
    let exporter = exporter(&[mcp_agent(
        "failing-tool",
        port,
        "2s",
        r#"{tool: fail, arguments: {text: canary}, expect: {contains: canary}}"#,
    )]);
    let run = assert_verdict(&exporter, "failing-tool", Some("task_failed"));
    assert!(
        run["error"]
            .to_string()
            .contains("search backend unavailable")
            || run["reply"]
                .to_string()
                .contains("search backend unavailable"),
        "the tool's own error is shown: {run}"
    );
    assert_counted(&exporter, "failing-tool", Some("task_failed"));
}

#[test]
fn mcp_tool_sleeping_past_the_canary_timeout_is_timeout() {
    let Some(port) = mcp("mcp_timeout") else {
        return;
    };
    let exporter = exporter(&[mcp_agent(
        "sleeper",
        port,
        "1s",
        r#"{tool: sleep, arguments: {seconds: 30}, expect: {contains: awake}}"#,
    )]);
    let run = assert_verdict(&exporter, "sleeper", Some("timeout"));
    let took = run["duration_seconds"].as_f64().expect("a duration");
    assert!(
        (0.9..5.0).contains(&took),
        "a timed-out canary ends at its timeout (1s), took {took}s"
    );
    assert_counted(&exporter, "sleeper", Some("timeout"));
}

#[test]
fn mcp_reply_not_matching_contains_regex_or_json_is_content_mismatch() {
    let Some(port) = mcp("mcp_content_mismatch") else {
        return;
    };
    let exporter = exporter(&[
        mcp_agent(
            "echo-contains",
            port,
            "2s",
            r#"{tool: echo, arguments: {text: canary}, expect: {contains: pong}}"#,
        ),
        mcp_agent(
            "echo-regex",
            port,
            "2s",
            r#"{tool: echo, arguments: {text: canary}, expect: {regex: "^\\d+$"}}"#,
        ),
        mcp_agent(
            "forecast-json",
            port,
            "2s",
            r#"{tool: forecast, arguments: {city: Oslo}, expect: {json: {"/sky": "rain"}}}"#,
        ),
    ]);
    for agent in ["echo-contains", "echo-regex", "forecast-json"] {
        assert_verdict(&exporter, agent, Some("content_mismatch"));
        assert_counted(&exporter, agent, Some("content_mismatch"));
    }
}

#[test]
fn api_canary_block_shows_the_last_run_with_a_short_reply_excerpt_without_control_characters() {
    let Some(port) = mcp("api_canary_block") else {
        return;
    };
    // 400 characters with a bell, an escape sequence, a tab and newlines inside.
    let long = format!(
        "canary\u{7} \u{1b}[31mred\u{1b}[0m\tline\nnext {}",
        "0123456789".repeat(38)
    );
    let task = format!(
        "{{tool: echo, arguments: {{text: {}}}, expect: {{contains: canary}}}}",
        serde_json::to_string(&long).unwrap()
    );
    let exporter = exporter(&[mcp_agent("chatty", port, "2s", &task)]);
    let run = assert_verdict(&exporter, "chatty", None);
    let reply = run["reply"].as_str().expect("a reply excerpt");
    assert!(
        reply.chars().count() <= 256,
        "excerpt of {} characters",
        reply.chars().count()
    );
    assert!(
        !reply.chars().any(char::is_control),
        "control characters in {reply:?}"
    );
    assert!(reply.starts_with("canary"), "{reply:?}");
    let block = &api(&exporter, "chatty")["canary"];
    assert_eq!(block["kind"], "mcp", "{block}");
    assert!(block["last_success"].is_string(), "{block}");
    // The whole list answers the block too.
    let all = get(exporter.addr, "/api/v1/agents").expect("API").json();
    let listed = all
        .as_array()
        .or_else(|| all["agents"].as_array())
        .expect("a list of agents")
        .iter()
        .find(|a| a["name"] == "chatty")
        .cloned()
        .expect("chatty listed");
    assert_eq!(listed["canary"]["kind"], "mcp", "{listed}");
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible chat (LiteLLM's proxy)

const PONG: &str =
    r#"{model: small, prompt: "Say pong.", max_tokens: 8, expect: {regex: "(?i)pong"}}"#;
const PONG_STREAM: &str = r#"{model: small, prompt: "Say pong.", max_tokens: 8, stream: true, path: /v1/chat/completions, expect: {regex: "(?i)pong"}}"#;

#[test]
fn openai_completion_streamed_and_not_succeeds_with_tokens_from_usage_and_first_token_only_when_streamed(
) {
    let Some(port) = litellm("openai_answer") else {
        return;
    };
    let exporter = exporter(&[
        openai_agent("chat", port, "", PONG),
        openai_agent("chat-stream", port, "", PONG_STREAM),
    ]);
    for agent in ["chat", "chat-stream"] {
        let run = assert_verdict(&exporter, agent, None);
        assert_eq!(run["reply"], "pong", "{agent}: {run}");
        assert_counted(&exporter, agent, None);
        assert_status_becomes(&exporter, agent, "healthy");
    }
    assert_eq!(api(&exporter, "chat")["canary"]["kind"], "openai");
    assert_eq!(
        first_token_count(&exporter, "chat"),
        0.0,
        "no first token without streaming"
    );
    assert!(first_token_count(&exporter, "chat-stream") >= 1.0);
    // LiteLLM reports 10 prompt and 20 completion tokens for a mock answer, 10 and 1 for a
    // streamed one (its usage chunk, asked for with stream_options.include_usage).
    let text = exporter.metrics();
    for (agent, prompt, completion) in [("chat", 10.0, 20.0), ("chat-stream", 10.0, 1.0)] {
        let runs = sample(&text, "agent_canary_runs_total", &[("agent", agent)]).unwrap();
        let tokens = |kind| {
            sample(
                &text,
                "agent_canary_tokens_total",
                &[("agent", agent), ("kind", kind)],
            )
        };
        assert_eq!(tokens("prompt"), Some(prompt * runs), "{agent}\n{text}");
        assert_eq!(
            tokens("completion"),
            Some(completion * runs),
            "{agent}\n{text}"
        );
    }
}

#[test]
fn openai_output_of_one_repeated_character_or_only_whitespace_is_content_mismatch() {
    let Some(port) = litellm("openai_degenerate") else {
        return;
    };
    // No expectation at all: degenerate output fails on its own.
    let exporter = exporter(&[
        openai_agent(
            "slashes",
            port,
            "",
            r#"{model: slashes, prompt: "Say pong."}"#,
        ),
        openai_agent(
            "slashes-stream",
            port,
            "",
            r#"{model: slashes, prompt: "Say pong.", stream: true}"#,
        ),
        openai_agent("blank", port, "", r#"{model: blank, prompt: "Say pong."}"#),
    ]);
    for agent in ["slashes", "slashes-stream", "blank"] {
        assert_verdict(&exporter, agent, Some("content_mismatch"));
        assert_counted(&exporter, agent, Some("content_mismatch"));
    }
}

#[test]
fn openai_reply_not_matching_regex_or_json_is_content_mismatch_and_matching_json_succeeds() {
    let Some(port) = litellm("openai_content_mismatch") else {
        return;
    };
    let exporter = exporter(&[
        openai_agent(
            "ping",
            port,
            "",
            r#"{model: small, prompt: "Say pong.", expect: {regex: "(?i)^ping$"}}"#,
        ),
        openai_agent(
            "rain",
            port,
            "",
            r#"{model: weather, prompt: "Weather?", expect: {json: {"/sky": "rain"}}}"#,
        ),
        openai_agent(
            "clear",
            port,
            "",
            r#"{model: weather, prompt: "Weather?", stream: true, expect: {json: {"/sky": "clear", "/celsius": 21}}}"#,
        ),
    ]);
    for agent in ["ping", "rain"] {
        assert_verdict(&exporter, agent, Some("content_mismatch"));
        assert_counted(&exporter, agent, Some("content_mismatch"));
    }
    assert_verdict(&exporter, "clear", None);
}

#[test]
fn openai_with_a_key_the_server_refuses_is_http_status() {
    let Some(port) = litellm("openai_http_status") else {
        return;
    };
    let config = format!(
        "agents:\n{}",
        agent(
            "wrong-key",
            &format!("http://127.0.0.1:{port}/health/liveliness"),
            "    http: {bearer_token_file: wrong.key}\n",
            &format!("      interval: 3s\n      timeout: 2500ms\n      openai: {PONG}\n"),
        )
    );
    let exporter = Binary::launch(&config)
        .file("wrong.key", "sk-not-the-key")
        .start();
    let run = assert_verdict(&exporter, "wrong-key", Some("http_status"));
    assert!(
        !run.to_string().contains("sk-not-the-key"),
        "the key leaked: {run}"
    );
    assert_counted(&exporter, "wrong-key", Some("http_status"));
}

#[test]
fn openai_stream_stalling_after_the_headers_is_timeout() {
    let Some(port) = relay("openai_stall", "stall") else {
        return;
    };
    let task = r#"{model: small, prompt: "Say pong.", stream: true, expect: {regex: "(?i)pong"}}"#;
    let exporter = exporter(&[agent(
        "stalled",
        &format!("http://127.0.0.1:{port}/health/liveliness"),
        "    http: {bearer_token_file: litellm.key}\n",
        &format!("      interval: 3s\n      timeout: 1s\n      openai: {task}\n"),
    )]);
    let run = assert_verdict(&exporter, "stalled", Some("timeout"));
    let took = run["duration_seconds"].as_f64().expect("a duration");
    assert!((0.9..5.0).contains(&took), "took {took}s for a 1s timeout");
    assert_counted(&exporter, "stalled", Some("timeout"));
    // The health endpoint behind the same relay answers: only the task hangs.
    assert_status_becomes(&exporter, "stalled", "degraded");
}

#[test]
fn openai_stream_ending_without_a_finish_reason_is_task_failed() {
    let Some(port) = relay("openai_truncated", "truncate") else {
        return;
    };
    let exporter = exporter(&[openai_agent("truncated", port, "", PONG_STREAM)]);
    let run = assert_verdict(&exporter, "truncated", Some("task_failed"));
    assert_eq!(
        run["reply"], "pon",
        "what came before the end is shown: {run}"
    );
    assert_counted(&exporter, "truncated", Some("task_failed"));
}

#[test]
fn openai_connection_reset_mid_stream_is_protocol() {
    let Some(port) = relay("openai_reset", "reset") else {
        return;
    };
    let exporter = exporter(&[openai_agent("reset", port, "", PONG_STREAM)]);
    assert_verdict(&exporter, "reset", Some("protocol"));
    assert_counted(&exporter, "reset", Some("protocol"));
}

// ---------------------------------------------------------------------------------------------
// What a failed canary does to the agent, and the event stream

#[test]
fn failed_canary_makes_the_agent_degraded_by_default_or_unhealthy_as_on_failure_says() {
    let Some(port) = litellm("on_failure") else {
        return;
    };
    let broken = r#"{model: slashes, prompt: "Say pong."}"#;
    let exporter = exporter(&[
        openai_agent("default", port, "", broken),
        openai_agent("degraded", port, "      on_failure: degraded\n", broken),
        openai_agent("unhealthy", port, "      on_failure: unhealthy\n", broken),
        openai_agent("fine", port, "      on_failure: unhealthy\n", PONG),
    ]);
    assert_status_becomes(&exporter, "default", "degraded");
    assert_status_becomes(&exporter, "degraded", "degraded");
    assert_status_becomes(&exporter, "unhealthy", "unhealthy");
    assert_status_becomes(&exporter, "fine", "healthy");
    let block = &api(&exporter, "unhealthy")["canary"];
    assert_eq!(block["on_failure"], "unhealthy", "{block}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_threshold_of_a_canary_counts_failures_in_a_row_before_the_status_changes() {
    let Some(port) = tokio::task::spawn_blocking(|| litellm("canary_failure_threshold"))
        .await
        .unwrap()
    else {
        return;
    };
    let exporter = tokio::task::spawn_blocking(move || {
        exporter(&[openai_agent(
            "patient",
            port,
            "      failure_threshold: 2\n",
            r#"{model: slashes, prompt: "Say pong."}"#,
        )])
    })
    .await
    .unwrap();
    let mut events = EventStream::connect(exporter.addr, "/api/v1/events?canaries=true").await;
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let event = events
            .until("canary", VERDICT_WITHIN)
            .await
            .expect("canary events");
        assert_eq!(event.data["agent"], "patient", "{:?}", event.data);
        assert_eq!(
            event.data["canary"]["reason"], "content_mismatch",
            "{:?}",
            event.data
        );
        statuses.push(event.data["status"].as_str().unwrap_or_default().to_owned());
    }
    // The health probe may or may not have run before the first canary: the status after one
    // failed canary is whatever the probe made it, never the canary's `degraded`.
    assert_ne!(statuses[0], "degraded", "{statuses:?}");
    assert_eq!(statuses[1], "degraded", "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_events_are_sent_only_to_clients_that_ask_with_canaries_true() {
    let Some(port) = tokio::task::spawn_blocking(|| mcp("canary_events"))
        .await
        .unwrap()
    else {
        return;
    };
    let exporter = tokio::task::spawn_blocking(move || {
        exporter(&[mcp_agent(
            "events",
            port,
            "900ms",
            r#"{tool: echo, arguments: {text: canary}, expect: {contains: canary}}"#,
        )])
    })
    .await
    .unwrap();
    let mut plain = EventStream::connect(exporter.addr, "/api/v1/events?probes=true").await;
    let mut asking = EventStream::connect(exporter.addr, "/api/v1/events?canaries=true").await;
    let mut filtered = EventStream::connect(
        exporter.addr,
        "/api/v1/events?canaries=true&agent=someone-else",
    )
    .await;
    for _ in 0..2 {
        let event = asking
            .until("canary", VERDICT_WITHIN)
            .await
            .expect("a canary event with ?canaries=true");
        assert_eq!(event.data["agent"], "events", "{:?}", event.data);
        assert_eq!(event.data["kind"], "mcp", "{:?}", event.data);
        assert_eq!(
            event.data["canary"]["result"], "success",
            "{:?}",
            event.data
        );
        assert!(event.id.is_some(), "events carry an id");
    }
    // Two canaries ran meanwhile (3s apart): neither reached the other clients.
    while let Some(event) = plain.next(Duration::from_millis(200)).await {
        assert_ne!(
            event.event, "canary",
            "sent without ?canaries=true: {:?}",
            event.data
        );
    }
    while let Some(event) = filtered.next(Duration::from_millis(200)).await {
        assert_ne!(event.event, "canary", "sent past ?agent=: {:?}", event.data);
    }
}
