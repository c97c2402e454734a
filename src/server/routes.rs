//! Routing: which path answers what. Handlers stay small; the work lives in the modules they call.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};

use super::respond::{full, text};
use super::{api, events, exposition, Body, ServerState};

/// The live status page: one self-contained file, no external assets.
const STATUS_PAGE: &str = include_str!("status_page.html");

/// The status page with its metrics link pointing at `--web.telemetry-path`, rendered once.
pub fn status_page(telemetry_path: &str) -> bytes::Bytes {
    // The page's links are relative, so that it also works behind a path prefix.
    let relative = telemetry_path.trim_start_matches('/');
    let escaped = relative
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    bytes::Bytes::from(STATUS_PAGE.replace("href=\"metrics\"", &format!("href=\"{escaped}\"")))
}

pub(super) async fn handle<B>(
    req: Request<B>,
    state: Arc<ServerState>,
    _peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method().clone();
    if path == state.telemetry_path {
        return match method {
            Method::GET | Method::HEAD => exposition::metrics(&req, &state).await,
            _ => method_not_allowed("GET"),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/v1/agents/") {
        let (name, action) = match rest.split_once('/') {
            Some((name, action)) => (name, Some(action)),
            None => (rest, None),
        };
        let Some(name) = agent_name(name) else {
            return api::error(StatusCode::NOT_FOUND, "agent names are UTF-8");
        };
        return match (method, action) {
            (Method::GET | Method::HEAD, None) => api::one(&state, &name),
            (Method::GET | Method::HEAD, Some("config")) => api::config(&state, &name),
            (Method::POST, Some("probe")) if !state.endpoints.probe_api => api::error(
                StatusCode::FORBIDDEN,
                "the probe API is off; start the exporter with --web.enable-probe-api to probe agents on demand",
            ),
            (Method::POST, Some("probe")) => api::probe_now(&state, &name).await,
            (_, None) => method_not_allowed("GET"),
            (_, Some("probe")) => method_not_allowed("POST"),
            (_, Some("config")) => method_not_allowed("GET"),
            _ => api::error(StatusCode::NOT_FOUND, "no such endpoint"),
        };
    }
    match (method, path) {
        (Method::GET | Method::HEAD, "/") => full(
            StatusCode::OK,
            "text/html; charset=utf-8",
            state.status_page.clone(),
        ),
        (Method::GET | Method::HEAD, "/api/v1/agents") => api::list(&state).await,
        (Method::GET, "/api/v1/events") => events::stream(&state, req.uri().query()),
        (Method::GET | Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy.\n"),
        (Method::GET | Method::HEAD, "/-/ready") => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "Ready.\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Not ready: config not loaded yet.\n",
                )
            }
        }
        (Method::POST | Method::PUT, "/-/reload") if !state.endpoints.lifecycle => text(
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled; start the exporter with --web.enable-lifecycle to reload over HTTP (SIGHUP always reloads).\n",
        ),
        (Method::POST | Method::PUT, "/-/reload") => reload(&state).await,
        (_, "/-/reload") => method_not_allowed("POST"),
        (_, "/" | "/-/healthy" | "/-/ready" | "/api/v1/agents" | "/api/v1/events") => {
            method_not_allowed("GET")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found.\n"),
    }
}

async fn reload(state: &Arc<ServerState>) -> Response<Body> {
    let Some(reloader) = state.reloader.clone() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Reload is not available.\n",
        );
    };
    // Reading files and building TLS setups is blocking work.
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let _runtime = handle.enter();
        reloader.reload()
    })
    .await;
    match outcome {
        Ok(Ok(summary)) => text(
            StatusCode::OK,
            &format!(
                "Config reloaded: {} added, {} changed, {} removed, {} unchanged.\n",
                summary.added.len(),
                summary.changed.len(),
                summary.removed.len(),
                summary.unchanged
            ),
        ),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Config reload failed; the running config is kept.\n{e}\n"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Config reload did not finish: {e}\n"),
        ),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n");
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// An agent name from one path segment: percent-decoded as a path segment (`+` stays `+`, `%26`
/// is `&`, `%2F` is `/`), so every name a config may hold can be addressed. `None` when the
/// bytes are not UTF-8: no agent has such a name.
pub(super) fn agent_name(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}
