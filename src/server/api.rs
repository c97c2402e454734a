//! `GET /api/v1/agents`, `GET /api/v1/agents/{name}` and `POST /api/v1/agents/{name}/probe`.

use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::routes::full;
use super::{views, Body, ServerState};

pub(super) fn list(state: &ServerState) -> Response<Body> {
    let mut view = views::fleet(&state.monitor.agents());
    with_origins(state, &mut view.agents);
    json(StatusCode::OK, &view)
}

pub(super) fn one(state: &ServerState, name: &str) -> Response<Body> {
    match state.monitor.agent(name) {
        Some(agent) => {
            let mut view = [views::agent(&agent, true)];
            with_origins(state, &mut view);
            json(StatusCode::OK, &view[0])
        }
        None => unknown_agent(name),
    }
}

/// Says where each agent came from: `static`, or its discovery source.
fn with_origins(state: &ServerState, views: &mut [views::AgentView]) {
    if let Some(reloader) = &state.reloader {
        let origins = reloader
            .discovery()
            .origins(views.iter().map(|v| v.name.as_str()));
        for (view, origin) in views.iter_mut().zip(origins) {
            view.origin = Some(origin);
        }
    }
}

/// Probes now, outside the schedule. At most one probe of an agent runs at a time: while one
/// (scheduled or asked for) is under way the answer is 429, so the endpoint cannot be used to
/// flood an agent.
pub(super) async fn probe_now(state: &Arc<ServerState>, name: &str) -> Response<Body> {
    let Some(agent) = state.monitor.agent(name) else {
        return unknown_agent(name);
    };
    let Some(scheduler) = state.scheduler.as_ref() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "probing is not running");
    };
    let Some(result) = scheduler.try_probe_now(&agent).await else {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("a probe of agent {name:?} is already running; try again shortly"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let status = agent.state().status;
    json(
        StatusCode::OK,
        &views::probe_event(&agent.spec.name, &agent.spec.agent_type, status, &result),
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
