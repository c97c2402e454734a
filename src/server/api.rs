//! `GET /api/v1/agents`, `GET /api/v1/agents/{name}`, `GET /api/v1/agents/{name}/config` and
//! `POST /api/v1/agents/{name}/probe`.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::respond::full;
use super::{views, Body, ServerState};
use crate::reload::Reloader;
use crate::scheduler::{OnDemandRefused, ON_DEMAND_SPACING};

/// Every agent: built on the blocking pool, a few at a time (see `snapshots`).
pub(super) async fn list(state: &Arc<ServerState>) -> Response<Body> {
    match super::snapshots::fleet_json(state).await {
        Some(Ok(body)) => full(StatusCode::OK, "application/json", body),
        Some(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {e}"),
        ),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ),
    }
}

pub(super) fn one(state: &ServerState, name: &str) -> Response<Body> {
    match state.monitor.agent(name) {
        Some(agent) => {
            let mut view = [views::agent(&agent, true)];
            with_origins(state.reloader.as_deref(), &mut view);
            json(StatusCode::OK, &view[0])
        }
        None => unknown_agent(name),
    }
}

/// The agent's effective settings, as probed now: after defaults, check, discovery and
/// relabeling; secrets shown as `<secret>` (`config::effective`).
pub(super) fn config(state: &ServerState, name: &str) -> Response<Body> {
    let Some(agent) = state.monitor.agent(name) else {
        return unknown_agent(name);
    };
    let (check, origin) = match state.reloader.as_deref() {
        Some(reloader) => {
            let discovery = reloader.discovery();
            (discovery.check(name), Some(discovery.origin(name)))
        }
        None => (None, None),
    };
    json(
        StatusCode::OK,
        &crate::config::effective(&agent.spec, check.as_deref(), origin.as_deref()),
    )
}

/// Says where each agent came from: `static`, or its discovery source.
pub(super) fn with_origins(reloader: Option<&Reloader>, views: &mut [views::AgentView]) {
    if let Some(reloader) = reloader {
        let origins = reloader
            .discovery()
            .origins(views.iter().map(|v| v.name.as_str()));
        for (view, origin) in views.iter_mut().zip(origins) {
            view.origin = Some(origin);
        }
    }
}

/// Probes now, outside the schedule. At most one probe of an agent runs at a time, and
/// on-demand probes of one agent are at least `ON_DEMAND_SPACING` apart: otherwise the answer is
/// 429 with `Retry-After`, so the endpoint cannot be used to flood an agent.
pub(super) async fn probe_now(state: &Arc<ServerState>, name: &str) -> Response<Body> {
    let Some(agent) = state.monitor.agent(name) else {
        return unknown_agent(name);
    };
    let Some(scheduler) = state.scheduler.as_ref() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "probing is not running");
    };
    if agent.spec.target.heartbeat().is_some() {
        let why = format!("agent {name:?} reports in by heartbeat and is never probed");
        return error(StatusCode::CONFLICT, &why);
    }
    let result = match scheduler.try_probe_now(&agent).await {
        Ok(result) => result,
        Err(refused) => {
            let (message, retry_after) = match refused {
                OnDemandRefused::Running => (
                    format!("a probe of agent {name:?} is already running; try again shortly"),
                    Duration::from_secs(1),
                ),
                OnDemandRefused::TooSoon { retry_after } => (
                    format!(
                        "agent {name:?} was probed on demand less than {}s ago; try again later",
                        ON_DEMAND_SPACING.as_secs()
                    ),
                    retry_after,
                ),
                OnDemandRefused::Gone => return unknown_agent(name),
            };
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, &message);
            // Whole seconds, rounded up: a client that waits that long is let through.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            return response;
        }
    };
    let status = agent.state().status;
    json(
        StatusCode::OK,
        &views::probe_event(
            &agent.spec.name,
            &agent.spec.agent_type,
            status,
            &result,
            None,
        ),
    )
}

fn unknown_agent(name: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, &format!("no agent named {name:?}"))
}

#[derive(Serialize)]
struct ErrorView<'a> {
    error: &'a str,
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &ErrorView { error: message })
}

pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => full(status, "application/json", body),
        Err(e) => full(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode the answer: {e}\n"),
        ),
    }
}
