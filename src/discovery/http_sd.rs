//! `http_sd`: the Prometheus HTTP SD format fetched from a URL every `refresh_interval`, with an
//! agent's `http:` client options (method, headers, bearer token, basic auth, TLS, redirects),
//! a timeout and a response size limit. A non-200 answer, another content type or invalid JSON
//! fails the refresh, and the source keeps its last good targets.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use super::target::{expand_groups, parse_groups};
use super::{bounds, Refresh, Sink};
use crate::config::{Auth, HttpSpec, SourceKind, SourceSpec, MAX_REDIRECTS};

/// Runs the source until its task is aborted.
pub async fn run(spec: Arc<SourceSpec>, sink: Sink) {
    let SourceKind::Http {
        url,
        http,
        timeout,
        max_bytes,
    } = &spec.kind
    else {
        return;
    };
    // The last answer read whole. The same bytes again are the same targets: a large fleet's
    // unchanged answer is then compared, not parsed, relabeled and looked up target by target.
    let mut last: Option<Bytes> = None;
    loop {
        let go_on = match body(url, http, *timeout, *max_bytes).await {
            Ok(body) if last.as_ref() == Some(&body) => match sink.unchanged() {
                Some(true) => true,
                Some(false) => sink.send(parse(&body, url, spec.max_targets)),
                None => false,
            },
            Ok(body) => {
                let refresh = parse(&body, url, spec.max_targets)
                    .and_then(|d| bounds::check(d, spec.max_targets));
                last = refresh.is_ok().then_some(body);
                sink.send(refresh)
            }
            Err(error) => sink.send(Err(error)),
        };
        if !go_on {
            return;
        }
        tokio::time::sleep(spec.refresh_interval).await;
    }
}

/// One refresh: GET the URL, within `timeout` and `max_bytes`.
pub async fn fetch(
    url: &Url,
    http: &HttpSpec,
    timeout: Duration,
    max_bytes: u64,
    max_targets: usize,
) -> Refresh {
    parse(
        &body(url, http, timeout, max_bytes).await?,
        url,
        max_targets,
    )
}

/// The answer's body, within `timeout` and `max_bytes`.
async fn body(
    url: &Url,
    http: &HttpSpec,
    timeout: Duration,
    max_bytes: u64,
) -> Result<Bytes, String> {
    tokio::time::timeout(timeout, follow(url, http, max_bytes))
        .await
        .map_err(|_| {
            format!(
                "no complete answer within {}",
                humantime::format_duration(timeout)
            )
        })?
}

/// The answer's targets.
fn parse(body: &[u8], url: &Url, max_targets: usize) -> Refresh {
    let groups = parse_groups(body, false).map_err(|e| format!("invalid answer: {e}"))?;
    let shown = url.as_str();
    expand_groups(
        groups,
        &[("__meta_url", shown)],
        // Where its agents came from, as logs and the API show it: no token of the query.
        &format!("url={}", crate::config::redacted_url(shown)),
        max_targets,
    )
}

/// What one request got: the body of a 200, or where a redirect points.
enum Hop {
    Body(Bytes),
    Redirect(StatusCode, String),
}

/// Requests the URL and follows redirects as an agent's probe does (`follow_redirects`, at most
/// `MAX_REDIRECTS` hops, 303 and a POST's 301/302 turn into GET); the configured headers and
/// credentials go only to the configured URL's origin.
async fn follow(configured: &Url, http: &HttpSpec, max_bytes: u64) -> Result<Bytes, String> {
    let mut url = configured.clone();
    let mut method = http.method.clone();
    let mut hops = 0;
    loop {
        let own_origin = url.origin() == configured.origin();
        let own_host = url.host() == configured.host();
        let (status, location) =
            match get(&url, &method, http, own_origin, own_host, max_bytes).await? {
                Hop::Body(body) => return Ok(body),
                Hop::Redirect(status, location) => (status, location),
            };
        if !http.follow_redirects {
            return Err(format!(
                "answer status {status}, not 200 (follow_redirects is off; Location {location:?})"
            ));
        }
        if hops == MAX_REDIRECTS {
            return Err(format!("more than {MAX_REDIRECTS} redirects"));
        }
        hops += 1;
        url = url
            .join(&location)
            .map_err(|e| format!("redirect to {location:?}: {e}"))?;
        url.set_fragment(None);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("redirect to {url}: not http or https"));
        }
        method = match status.as_u16() {
            303 => Method::GET,
            301 | 302 if method == Method::POST => Method::GET,
            _ => method,
        };
    }
}

async fn get(
    url: &Url,
    method: &Method,
    http: &HttpSpec,
    own_origin: bool,
    own_host: bool,
    max_bytes: u64,
) -> Result<Hop, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let request = request(url, method, http, own_origin)?;
    if url.scheme() == "https" {
        let config = http.tls.as_ref().map(|client| client.config()).ok_or(
            "redirected to https from the http url of the source: write the https url as `url`",
        )?;
        // `server_name` speaks for the configured host only, as for an agent's probe.
        let name = match &http.server_name {
            Some(name) if own_host => name.clone(),
            _ => host.to_owned(),
        };
        let name = ServerName::try_from(name).map_err(|e| format!("server name: {e}"))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(TokioIo::new(tls), request, max_bytes).await
    } else {
        exchange(TokioIo::new(tcp), request, max_bytes).await
    }
}

fn request(
    url: &Url,
    method: &Method,
    http: &HttpSpec,
    own_origin: bool,
) -> Result<Request<Empty<Bytes>>, String> {
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(if path.is_empty() { "/" } else { path })
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION")),
        );
    if !own_origin {
        // Headers and credentials are the configured origin's, never a redirect target's.
        return builder
            .body(Empty::new())
            .map_err(|e| format!("request: {e}"));
    }
    for (name, value) in &http.headers {
        builder = builder.header(name, value);
    }
    match &http.auth {
        Some(Auth::Bearer(token)) => {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        Some(Auth::Basic { username, password }) => {
            let pair = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let value = HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|e| format!("basic auth: {e}"))?;
            builder = builder.header(header::AUTHORIZATION, value);
        }
        None => {}
    }
    builder
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))
}

async fn exchange<IO>(io: IO, request: Request<Empty<Bytes>>, max_bytes: u64) -> Result<Hop, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            if let Some(location) = response.headers().get(header::LOCATION) {
                let location = location
                    .to_str()
                    .map_err(|_| format!("answer status {status}: Location is not ASCII"))?;
                return Ok(Hop::Redirect(status, location.to_owned()));
            }
        }
        if status != StatusCode::OK {
            return Err(format!("answer status {}, not 200", response.status()));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(format!(
                "content type {content_type:?}, not application/json"
            ));
        }
        read_limited(response.into_body(), max_bytes)
            .await
            .map(Hop::Body)
    }
    .await;
    driver.abort();
    result
}

async fn read_limited(mut body: Incoming, max_bytes: u64) -> Result<Bytes, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if (out.len() + data.len()) as u64 > max_bytes {
                return Err(format!("answer larger than {max_bytes} bytes"));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(out))
}
