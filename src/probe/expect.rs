//! Judges a response the HTTP probe received against the agent's `expect` and `degraded`
//! conditions. Pure functions: no I/O, so every rule is unit-tested here and the probes only
//! collect the status, the body and the duration.

use std::time::Duration;

use serde_json::Value;

use super::{FailureReason, Outcome};
use crate::config::{AgentSpec, DegradedSpec, ExpectSpec, JsonMatch, StatusMatch};

/// Longest JSON value quoted in a message; bodies are the agent's, messages go to logs and labels.
const MAX_QUOTED_CHARS: usize = 64;

/// What the body says once the status has matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyVerdict {
    /// Every body expectation held.
    Matches,
    /// One expectation failed; the text says which and why.
    Mismatch(String),
}

/// Judges one final response: status first, then the body, then the degraded conditions.
/// `duration` is the probe's total duration, the one `latency_above` is compared with.
pub fn check_expectations(
    spec: &AgentSpec,
    status: u16,
    body: &[u8],
    duration: Duration,
) -> Outcome {
    if let Err(error) = check_status(&spec.expect.status, status) {
        return Outcome::Failed {
            reason: FailureReason::HttpStatus,
            error,
        };
    }
    judge_body(spec, body, duration)
}

/// Judges the body of a response whose status already matched: the body expectations, then
/// the degraded conditions.
pub(super) fn judge_body(spec: &AgentSpec, body: &[u8], duration: Duration) -> Outcome {
    // Parsed once, only when a pointer needs it: most agents answer small non-JSON bodies.
    let json = if spec.expect.json.is_empty() && spec.degraded.json.is_empty() {
        None
    } else {
        Some(serde_json::from_slice::<Value>(body))
    };
    let parsed = json.as_ref().and_then(|j| j.as_ref().ok());
    let verdict = match &json {
        Some(Err(e)) if !spec.expect.json.is_empty() => {
            BodyVerdict::Mismatch(format!("body is not JSON: {e}"))
        }
        _ => check_body(&spec.expect, body, parsed),
    };
    if let BodyVerdict::Mismatch(error) = verdict {
        return Outcome::Failed {
            reason: FailureReason::BodyMismatch,
            error,
        };
    }
    succeeded(&spec.degraded, duration, parsed)
}

/// The outcome of a probe whose checks all held: `degraded` when a degraded condition holds
/// (`json` is the document the JSON rules read, if the protocol has one), else healthy.
pub(super) fn succeeded(
    degraded: &DegradedSpec,
    duration: Duration,
    json: Option<&Value>,
) -> Outcome {
    match degraded_by(degraded, duration, json) {
        Some(why) => Outcome::Degraded(why),
        None => Outcome::Healthy,
    }
}

/// Ok when `status` is acceptable; an empty list accepts any 2xx.
pub fn check_status(accepted: &[StatusMatch], status: u16) -> Result<(), String> {
    let ok = if accepted.is_empty() {
        StatusMatch::Class(2).matches(status)
    } else {
        accepted.iter().any(|m| m.matches(status))
    };
    if ok {
        return Ok(());
    }
    let expected = if accepted.is_empty() {
        "2xx".to_owned()
    } else {
        accepted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!("status {status}, expected {expected}"))
}

/// Checks `body_contains`, `body_regex` and the JSON pointers, in that order.
/// `json` is the parsed body, required when `expect.json` is not empty.
pub fn check_body(expect: &ExpectSpec, body: &[u8], json: Option<&Value>) -> BodyVerdict {
    if !expect.needs_body() {
        return BodyVerdict::Matches;
    }
    let text = String::from_utf8_lossy(body);
    if let Some(needle) = &expect.body_contains {
        if !text.contains(needle.as_str()) {
            return BodyVerdict::Mismatch(format!("body does not contain {}", quote(needle)));
        }
    }
    if let Some(regex) = &expect.body_regex {
        if !regex.is_match(&text) {
            return BodyVerdict::Mismatch(format!("body does not match /{}/", regex.as_str()));
        }
    }
    if expect.json.is_empty() {
        return BodyVerdict::Matches;
    }
    let Some(json) = json else {
        return BodyVerdict::Mismatch("body is not JSON".to_owned());
    };
    for want in &expect.json {
        if let Some(why) = json_mismatch(json, want) {
            return BodyVerdict::Mismatch(why);
        }
    }
    BodyVerdict::Matches
}

/// The first degraded condition that holds, described; None when the agent is fully healthy.
/// JSON conditions need the parsed body: a body that is not JSON matches none of them.
pub fn degraded_by(
    degraded: &DegradedSpec,
    duration: Duration,
    json: Option<&Value>,
) -> Option<String> {
    if let Some(limit) = degraded.latency_above {
        if duration > limit {
            return Some(format!(
                "latency {:.3}s above {:.3}s",
                duration.as_secs_f64(),
                limit.as_secs_f64()
            ));
        }
    }
    let json = json?;
    degraded.json.iter().find_map(|cond| {
        let found = json.pointer(&cond.pointer)?;
        (*found == cond.value).then(|| format!("JSON at {} is {}", cond.pointer, quote_json(found)))
    })
}

/// Why `json` does not hold `want`, or None when it does.
fn json_mismatch(json: &Value, want: &JsonMatch) -> Option<String> {
    match json.pointer(&want.pointer) {
        Some(found) if *found == want.value => None,
        Some(found) => Some(format!(
            "JSON at {} is {}, expected {}",
            want.pointer,
            quote_json(found),
            quote_json(&want.value)
        )),
        None => Some(format!(
            "JSON has nothing at {}, expected {}",
            want.pointer,
            quote_json(&want.value)
        )),
    }
}

fn quote_json(value: &Value) -> String {
    truncate(value.to_string())
}

fn quote(text: &str) -> String {
    truncate(format!("{text:?}"))
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_QUOTED_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpSpec, Target};
    use regex::Regex;
    use serde_json::json;

    fn spec() -> AgentSpec {
        AgentSpec {
            name: "planner".into(),
            agent_type: "orchestrator".into(),
            target: Target::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            failure_threshold: 1,
            success_threshold: 1,
            labels: Vec::new(),
            http: HttpSpec {
                method: http::Method::GET,
                headers: Vec::new(),
                auth: None,
                tls: None,
                server_name: None,
                follow_redirects: true,
                max_body_bytes: 1024,
            },
            expect: ExpectSpec::default(),
            degraded: DegradedSpec::default(),
            canary: None,
        }
    }

    fn json_match(pointer: &str, value: Value) -> JsonMatch {
        JsonMatch {
            pointer: pointer.into(),
            value,
        }
    }

    const FAST: Duration = Duration::from_millis(10);

    fn failed(reason: FailureReason, error: &str) -> Outcome {
        Outcome::Failed {
            reason,
            error: error.into(),
        }
    }

    #[test]
    fn any_2xx_is_accepted_when_no_status_is_configured() {
        let spec = spec();
        assert_eq!(check_expectations(&spec, 204, b"", FAST), Outcome::Healthy);
        assert_eq!(
            check_expectations(&spec, 500, b"", FAST),
            failed(FailureReason::HttpStatus, "status 500, expected 2xx")
        );
        assert_eq!(
            check_expectations(&spec, 301, b"", FAST),
            failed(FailureReason::HttpStatus, "status 301, expected 2xx")
        );
    }

    #[test]
    fn configured_codes_and_classes_replace_the_default() {
        let mut spec = spec();
        spec.expect.status = vec![StatusMatch::Code(200), StatusMatch::Class(3)];
        assert_eq!(check_expectations(&spec, 302, b"", FAST), Outcome::Healthy);
        assert_eq!(
            check_expectations(&spec, 201, b"", FAST),
            failed(FailureReason::HttpStatus, "status 201, expected 200, 3xx")
        );
    }

    #[test]
    fn status_is_judged_before_the_body() {
        let mut spec = spec();
        spec.expect.body_contains = Some("ok".into());
        assert_eq!(
            check_expectations(&spec, 503, b"down", FAST).reason(),
            Some(FailureReason::HttpStatus)
        );
    }

    #[test]
    fn body_contains_is_a_substring_match() {
        let mut spec = spec();
        spec.expect.body_contains = Some("ok".into());
        assert_eq!(
            check_expectations(&spec, 200, b"all ok here", FAST),
            Outcome::Healthy
        );
        assert_eq!(
            check_expectations(&spec, 200, b"down", FAST),
            failed(FailureReason::BodyMismatch, "body does not contain \"ok\"")
        );
    }

    #[test]
    fn body_regex_runs_on_lossy_utf8() {
        let mut spec = spec();
        spec.expect.body_regex = Some(Regex::new(r"^up \d+").unwrap().into());
        assert_eq!(
            check_expectations(&spec, 200, b"up 42 \xff", FAST),
            Outcome::Healthy
        );
        assert_eq!(
            check_expectations(&spec, 200, b"\xffup 42", FAST),
            failed(
                FailureReason::BodyMismatch,
                r"body does not match /^up \d+/"
            )
        );
    }

    #[test]
    fn json_pointer_must_hold_the_exact_value() {
        let mut spec = spec();
        spec.expect.json = vec![json_match("/status", json!("ok"))];
        assert_eq!(
            check_expectations(&spec, 200, br#"{"status":"ok"}"#, FAST),
            Outcome::Healthy
        );
        assert_eq!(
            check_expectations(&spec, 200, br#"{"status":"down"}"#, FAST),
            failed(
                FailureReason::BodyMismatch,
                r#"JSON at /status is "down", expected "ok""#
            )
        );
    }

    #[test]
    fn json_values_compare_by_type_too() {
        let mut spec = spec();
        spec.expect.json = vec![json_match("/workers/0/ready", json!(true))];
        let body = br#"{"workers":[{"ready":"true"}]}"#;
        assert_eq!(
            check_expectations(&spec, 200, body, FAST),
            failed(
                FailureReason::BodyMismatch,
                r#"JSON at /workers/0/ready is "true", expected true"#
            )
        );
    }

    #[test]
    fn missing_json_pointer_is_a_mismatch() {
        let mut spec = spec();
        spec.expect.json = vec![json_match("/status", json!("ok"))];
        assert_eq!(
            check_expectations(&spec, 200, br#"{"state":"ok"}"#, FAST),
            failed(
                FailureReason::BodyMismatch,
                r#"JSON has nothing at /status, expected "ok""#
            )
        );
    }

    #[test]
    fn unparsable_json_is_a_mismatch() {
        let mut spec = spec();
        spec.expect.json = vec![json_match("/status", json!("ok"))];
        let outcome = check_expectations(&spec, 200, b"<html>ok</html>", FAST);
        assert_eq!(outcome.reason(), Some(FailureReason::BodyMismatch));
        let Outcome::Failed { error, .. } = outcome else {
            unreachable!()
        };
        assert!(error.starts_with("body is not JSON: "), "{error}");
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let mut spec = spec();
        spec.expect.json = vec![json_match("/status", json!("ok"))];
        let long = "x".repeat(500);
        let body = format!(r#"{{"status":"{long}"}}"#);
        let Outcome::Failed { error, .. } = check_expectations(&spec, 200, body.as_bytes(), FAST)
        else {
            panic!("expected a failure")
        };
        assert!(error.len() < 120, "{error}");
        assert!(error.contains('…'), "{error}");
    }

    #[test]
    fn slow_success_is_degraded() {
        let mut spec = spec();
        spec.degraded.latency_above = Some(Duration::from_millis(500));
        assert_eq!(check_expectations(&spec, 200, b"", FAST), Outcome::Healthy);
        assert_eq!(
            check_expectations(&spec, 200, b"", Duration::from_millis(750)),
            Outcome::Degraded("latency 0.750s above 0.500s".into())
        );
    }

    #[test]
    fn degraded_json_condition_names_the_pointer() {
        let mut spec = spec();
        spec.degraded.json = vec![json_match("/status", json!("degraded"))];
        assert_eq!(
            check_expectations(&spec, 200, br#"{"status":"ok"}"#, FAST),
            Outcome::Healthy
        );
        assert_eq!(
            check_expectations(&spec, 200, br#"{"status":"degraded"}"#, FAST),
            Outcome::Degraded(r#"JSON at /status is "degraded""#.into())
        );
    }

    #[test]
    fn degraded_json_on_a_non_json_body_does_not_hold() {
        let mut spec = spec();
        spec.degraded.json = vec![json_match("/status", json!("degraded"))];
        assert_eq!(
            check_expectations(&spec, 200, b"ok", FAST),
            Outcome::Healthy
        );
    }

    #[test]
    fn failed_expectation_wins_over_degraded() {
        let mut spec = spec();
        spec.expect.json = vec![json_match("/status", json!("ok"))];
        spec.degraded.latency_above = Some(Duration::from_millis(1));
        assert_eq!(
            check_expectations(&spec, 200, br#"{"status":"down"}"#, FAST).reason(),
            Some(FailureReason::BodyMismatch)
        );
    }
}
