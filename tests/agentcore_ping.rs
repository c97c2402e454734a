//! The `agentcore` check template of config.example.yaml, as shipped, against an agent that
//! answers AgentCore's `GET /ping` contract (`{"status": "Healthy" | "HealthyBusy"}`, an HTTP
//! JSON contract, served here by the mock agent): Healthy is healthy, HealthyBusy degraded,
//! anything else unhealthy.

mod harness;

use std::path::Path;

use agent_health_exporter::probe::{self, Outcome};
use harness::agents::{Behaviour, MockAgent};

/// The example's defaults and checks, with one agent of type `agentcore` at `url`.
fn example_with_agent(url: &str) -> String {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
            .expect("config.example.yaml");
    let (head, _) = example
        .split_once("\nagents:\n")
        .expect("an agents: section");
    format!("{head}\nagents:\n  - name: runtime\n    type: agentcore\n    url: {url}\n")
}

#[tokio::test]
async fn agentcore_ping_template_is_healthy_busy_degraded_and_otherwise_unhealthy() {
    let cases = [
        (
            r#"{"status":"Healthy","time_of_last_update":1765000000}"#,
            "healthy",
        ),
        (
            r#"{"status": "HealthyBusy", "time_of_last_update": 1765000000}"#,
            "degraded",
        ),
        (r#"{"status":"Unhealthy"}"#, "body_mismatch"),
        (r#"{"state":"Healthy"}"#, "body_mismatch"),
        // A nested component's status is not the runtime's.
        (
            r#"{"status":"Unhealthy","dependencies":{"model":{"status":"Healthy"}}}"#,
            "body_mismatch",
        ),
        ("Healthy", "body_mismatch"),
    ];
    for (body, expected) in cases {
        let agent = MockAgent::start(Behaviour::ok(body)).await;
        let yaml = example_with_agent(agent.url("/ping").as_str());
        let config = agent_health_exporter::config::parse(&yaml, "example.yaml", Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = config
            .agents
            .iter()
            .find(|a| a.spec.name == "runtime")
            .expect("the agent")
            .spec
            .clone();
        let result = probe::run(&spec).await;
        let verdict = match &result.outcome {
            Outcome::Healthy => "healthy".to_owned(),
            Outcome::Degraded(_) => "degraded".to_owned(),
            Outcome::Failed { reason, .. } => reason.to_string(),
        };
        assert_eq!(verdict, expected, "{body}: {result:?}");
    }
    let agent = MockAgent::start(Behaviour::Status(500)).await;
    let yaml = example_with_agent(agent.url("/ping").as_str());
    let config = agent_health_exporter::config::parse(&yaml, "example.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = &config
        .agents
        .iter()
        .find(|a| a.spec.name == "runtime")
        .expect("the agent")
        .spec;
    let result = probe::run(spec).await;
    assert!(
        matches!(
            result.outcome,
            Outcome::Failed {
                reason: probe::FailureReason::HttpStatus,
                ..
            }
        ),
        "500: {result:?}"
    );
}
