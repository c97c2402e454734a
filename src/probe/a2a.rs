//! The A2A probe (`protocol: a2a`): fetches the agent card from its well-known path under the
//! agent's base URL (`/.well-known/agent-card.json`, then the older `/.well-known/agent.json`)
//! and checks the fields the specification requires and the skills the config expects.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use serde_json::Value;

use super::expect::succeeded;
use super::http_session::Session;
use super::progress::Progress;
use super::Failure;
use super::{FailureReason, ProbeResult, ProtocolInfo};
use crate::config::{A2aTarget, AgentSpec};

/// Newest first: a2a-sdk moved the card from agent.json to agent-card.json.
pub const CARD_PATHS: [&str; 2] = ["/.well-known/agent-card.json", "/.well-known/agent.json"];

pub(super) async fn probe(spec: &AgentSpec, a2a: &A2aTarget) -> ProbeResult {
    let started = Instant::now();
    let mut progress = Progress::default();
    let exchange = fetch(spec, a2a, &mut progress);
    let attempt = tokio::time::timeout(spec.timeout, exchange).await;
    // `degraded.json` reads the card, as it reads an http agent's body.
    progress.finish(started, spec.timeout, attempt, |card, duration| {
        succeeded(&spec.degraded, duration, Some(&card))
    })
}

/// The card's URL for one well-known path: under the base URL's path, as a2a-sdk resolves it.
pub(super) fn card_url(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// The agent card, once it holds what the specification and the config require.
async fn fetch(
    spec: &AgentSpec,
    a2a: &A2aTarget,
    progress: &mut Progress,
) -> Result<Value, Failure> {
    let mut session = Session::new(&spec.http, &a2a.url);
    let accept = [(header::ACCEPT, HeaderValue::from_static("application/json"))];
    let mut last_status = StatusCode::NOT_FOUND;
    for path in CARD_PATHS {
        let url = card_url(&a2a.url, path);
        let reply = session
            .send(Method::GET, &url, &accept, Bytes::new(), progress)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            last_status = reply.status;
            continue;
        }
        if !reply.status.is_success() {
            return Err(Failure::new(
                FailureReason::HttpStatus,
                format!(
                    "agent card at {path}: HTTP status {}",
                    reply.status.as_u16()
                ),
            ));
        }
        let card: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            Failure::new(
                FailureReason::BodyMismatch,
                format!("agent card is not JSON ({e})"),
            )
        })?;
        let text = |key: &str| card.get(key).and_then(Value::as_str).unwrap_or_default();
        progress.info = Some(ProtocolInfo::reported(
            "a2a",
            text("name"),
            text("version"),
            &protocol_version(&card),
        ));
        check_card(&card, &a2a.expect_skills).map_err(|why| {
            Failure::new(FailureReason::BodyMismatch, format!("agent card: {why}"))
        })?;
        return Ok(card);
    }
    Err(Failure::new(
        FailureReason::HttpStatus,
        format!(
            "no agent card at {} (HTTP status {})",
            CARD_PATHS.join(" nor "),
            last_status.as_u16()
        ),
    ))
}

/// `protocolVersion` of a 0.x card, else that of the first interface of a 1.x card.
fn protocol_version(card: &Value) -> String {
    card.get("protocolVersion")
        .or_else(|| card.pointer("/supportedInterfaces/0/protocolVersion"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The fields the A2A specification requires of an AgentCard, and the expected skills.
pub(super) fn check_card(card: &Value, expect_skills: &[String]) -> Result<(), String> {
    let object = card.as_object().ok_or("not a JSON object")?;
    for key in ["name", "description", "version"] {
        match object.get(key) {
            Some(Value::String(s)) if !s.is_empty() || key == "description" => {}
            Some(_) => return Err(format!("`{key}` is not a non-empty string")),
            None => return Err(format!("`{key}` is missing")),
        }
    }
    // Cards of A2A 0.x give one `url`; 1.x lists `supportedInterfaces`, each with its url.
    let interfaces = object.get("supportedInterfaces").and_then(Value::as_array);
    match (object.get("url"), interfaces) {
        (Some(Value::String(_)), _) => {}
        (None, Some(list)) if !list.is_empty() => {
            if let Some(i) = list
                .iter()
                .position(|x| !x.get("url").is_some_and(Value::is_string))
            {
                return Err(format!(
                    "`supportedInterfaces[{i}].url` is missing or not a string"
                ));
            }
        }
        (Some(_), _) => return Err("`url` is not a string".to_owned()),
        (None, _) => return Err("neither `url` nor `supportedInterfaces` is given".to_owned()),
    }
    if let Some(v) = object.get("protocolVersion") {
        if !v.is_string() {
            return Err("`protocolVersion` is not a string".to_owned());
        }
    }
    if !object.get("capabilities").is_some_and(Value::is_object) {
        return Err("`capabilities` is missing or not an object".to_owned());
    }
    for key in ["defaultInputModes", "defaultOutputModes"] {
        let ok = object
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(|modes| modes.iter().all(Value::is_string));
        if !ok {
            return Err(format!("`{key}` is missing or not a list of media types"));
        }
    }
    let skills = object
        .get("skills")
        .and_then(Value::as_array)
        .ok_or("`skills` is missing or not a list")?;
    let mut ids = Vec::with_capacity(skills.len());
    for (i, skill) in skills.iter().enumerate() {
        for key in ["id", "name", "description"] {
            if !skill.get(key).is_some_and(Value::is_string) {
                return Err(format!("`skills[{i}].{key}` is missing or not a string"));
            }
        }
        if !skill.get("tags").is_some_and(Value::is_array) {
            return Err(format!("`skills[{i}].tags` is missing or not a list"));
        }
        ids.extend(skill.get("id").and_then(Value::as_str));
    }
    let missing: Vec<&str> = expect_skills
        .iter()
        .filter(|s| !ids.contains(&s.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("`skills` lacks {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_paths_sit_under_the_base_path() {
        let base = url::Url::parse("http://127.0.0.1:9999/agents/a/").unwrap();
        assert_eq!(
            card_url(&base, CARD_PATHS[0]).as_str(),
            "http://127.0.0.1:9999/agents/a/.well-known/agent-card.json"
        );
        let root = url::Url::parse("http://127.0.0.1:9999").unwrap();
        assert_eq!(
            card_url(&root, CARD_PATHS[1]).as_str(),
            "http://127.0.0.1:9999/.well-known/agent.json"
        );
    }
}
