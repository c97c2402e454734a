//! The heartbeat endpoints, `/api/v1/agents/{name}/heartbeat[/start|/fail]` by GET or POST: the
//! agent's bearer token stands in for the scrapers' basic auth, a small JSON body may carry the
//! run's duration and a message, and the report goes to `heartbeat::Heartbeats`. With
//! `--heartbeat.peers`, a report is also passed on to the other exporters owning the agent
//! (`crate::forward`), and answered once they have it: `202` here when this exporter does not
//! own it and an owner took it, else the owners' refusal or `502`.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::api::{error, json};
use super::{views, Body, ServerState};
use crate::forward::{self, Delivery, FORWARDED_HEADER};
use crate::heartbeat::{Details, Refusal, Report};

/// Largest report body: a duration and a short message need far less.
pub const MAX_REPORT_BYTES: usize = 4096;

/// How long a client may take to send its report body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent name (still percent-encoded) and the report, when `path` is a heartbeat path.
pub(super) fn report_of(path: &str) -> Option<(&str, Report)> {
    let rest = path.strip_prefix("/api/v1/agents/")?;
    let (name, action) = rest.split_once('/')?;
    let report = match action {
        "heartbeat" => Report::Success,
        "heartbeat/start" => Report::Start,
        "heartbeat/fail" => Report::Fail,
        _ => return None,
    };
    (!name.is_empty()).then_some((name, report))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    duration_seconds: Option<f64>,
    message: Option<String>,
}

#[derive(Serialize)]
struct Answer<'a> {
    agent: &'a str,
    status: &'static str,
    deadline: String,
}

/// The answer of an exporter that passed the report on to the agent's owners.
#[derive(Serialize)]
struct Forwarded<'a> {
    agent: &'a str,
    status: &'static str,
}

/// Answers one heartbeat request.
pub(super) async fn handle<B>(
    req: Request<B>,
    state: &ServerState,
    name: &str,
    report: Report,
) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !matches!(*req.method(), Method::GET | Method::POST) {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    // Bytes that are not UTF-8 name no agent: they get the same 401 as any unknown name.
    let name = super::routes::agent_name(name).unwrap_or_default();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
        .map(<[u8]>::to_vec);
    // What forwarding needs of the request, before its body is read.
    let forwarded = req.headers().get(FORWARDED_HEADER).cloned();
    let pass_on = state.forwarder.as_ref().filter(|_| forwarded.is_none());
    let mut report_copy = pass_on.map(|_| forward::Report {
        path: req.uri().path().to_owned(),
        method: req.method().clone(),
        authorization: req.headers().get(header::AUTHORIZATION).cloned(),
        content_type: req.headers().get(header::CONTENT_TYPE).cloned(),
        body: Bytes::new(),
    });
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPORT_BYTES as u64) {
        return too_large();
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_REPORT_BYTES);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(_)) => return error(StatusCode::BAD_REQUEST, "the body could not be read"),
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "the body came too slowly"),
    };
    let body: ReportBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReportBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(body) => body,
            Err(e) => {
                let why = format!(
                    "the body must be JSON such as {{\"duration_seconds\": 1.2, \"message\": \"...\"}} ({e})"
                );
                return error(StatusCode::BAD_REQUEST, &why);
            }
        }
    };
    let duration = match body.duration_seconds {
        None => None,
        Some(s) => match Duration::try_from_secs_f64(s) {
            Ok(d) => Some(d),
            Err(_) => {
                let why = "duration_seconds must be a number of seconds, zero or more";
                return error(StatusCode::BAD_REQUEST, why);
            }
        },
    };
    if let Some(copy) = report_copy.as_mut() {
        copy.body = bytes.clone();
    }
    if let (Some(mark), Some(forwarder)) = (&forwarded, &state.forwarder) {
        if forwarder.is_own_mark(mark) {
            // A peer template names this exporter: the report was recorded when it came in.
            let why = "forwarded by this exporter to itself; recorded once already";
            return error(StatusCode::ALREADY_REPORTED, why);
        }
    }
    let details = Details {
        duration,
        message: body.message,
    };
    let Some(scheduler) = state.scheduler.as_ref() else {
        return unauthorized();
    };
    match scheduler
        .heartbeats
        .receive(&name, token.as_deref(), report, details)
    {
        Ok(accepted) => {
            // Peer replicas of this shard own the agent too; answering only after them keeps
            // the agent's next report from overtaking this one there.
            if let (Some(forwarder), Some(copy)) = (pass_on, report_copy) {
                forwarder.forward(&name, copy).await;
            }
            json(
                StatusCode::OK,
                &Answer {
                    agent: &name,
                    status: accepted.status.as_str(),
                    deadline: views::timestamp(accepted.deadline),
                },
            )
        }
        Err(Refusal::Unauthorized) => match (pass_on, report_copy) {
            // Another shard's agent with its own token: its owners record it.
            (Some(forwarder), Some(copy)) if forwarder.owned_elsewhere(&name, token.as_deref()) => {
                if let Err(wait) = forwarder.admit(&name) {
                    return rate_limited(wait);
                }
                let deliveries = forwarder.forward(&name, copy).await;
                owners_answer(&name, &deliveries)
            }
            _ => unauthorized(),
        },
        Err(Refusal::RateLimited(wait)) => rate_limited(wait),
    }
}

/// A non-owner's answer, from what the owners made of the report: taken when one owner took it,
/// the owners' own refusal when all of them refused it alike, else a bad gateway.
fn owners_answer(name: &str, deliveries: &[Delivery]) -> Response<Body> {
    if deliveries.contains(&Delivery::Taken) {
        return json(
            StatusCode::ACCEPTED,
            &Forwarded {
                agent: name,
                status: "forwarded",
            },
        );
    }
    if !deliveries.is_empty() && deliveries.iter().all(|d| *d == Delivery::Unauthorized) {
        return unauthorized();
    }
    let limited: Vec<&Option<HeaderValue>> = deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::RateLimited(after) => Some(after),
            _ => None,
        })
        .collect();
    if !limited.is_empty() && limited.len() == deliveries.len() {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many reports for this agent; slow down",
        );
        if let Some(after) = limited.iter().find_map(|a| a.as_ref()) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, after.clone());
        }
        return response;
    }
    error(
        StatusCode::BAD_GATEWAY,
        "no exporter owning this agent took the report (counted in agent_exporter_heartbeat_forward_failures_total); send it again",
    )
}

fn rate_limited(wait: Duration) -> Response<Body> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many reports for this agent; slow down",
    );
    let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The token of `Bearer <token>` (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// One answer for an unknown agent, a missing token and a wrong one, so that names cannot be
/// probed for.
fn unauthorized() -> Response<Body> {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"agent-health-exporter\""),
    );
    response
}

fn too_large() -> Response<Body> {
    let why = format!("the body is larger than {MAX_REPORT_BYTES} bytes");
    error(StatusCode::PAYLOAD_TOO_LARGE, &why)
}
