//! Routing: which path answers what. Handlers stay small; the work lives in the modules they call.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{exposition, landing, Body, ServerState};

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
    match (method, path) {
        (Method::GET | Method::HEAD, "/") => landing::page(&state.telemetry_path),
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
        (Method::POST | Method::PUT, "/-/reload") => reload(&state).await,
        (_, "/-/reload") => method_not_allowed("POST"),
        (_, "/" | "/-/healthy" | "/-/ready") => method_not_allowed("GET"),
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

/// A complete answer from bytes.
pub(super) fn full(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body.to_owned())
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n");
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}
