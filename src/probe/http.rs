//! The HTTP(S) probe: one fresh connection per hop, each phase timed in sequence, redirects
//! followed up to `MAX_REDIRECTS`, the body never read past its limit. Every failure becomes
//! exactly one `FailureReason`; the verdict on a complete response is left to `expect`.
//! The request is built by `request`, the redirect rules are `redirect`'s, the TLS step `tls`'s.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::expect::{check_status, judge_body};
use super::http1::{self, protocol_failure};
use super::net::open;
use super::progress::Progress;
use super::request::build_request;
use super::{redirect, tls, Failure, FailureReason, Outcome, ProbeResult};
use crate::config::tls::default_client_config;
use crate::config::{AgentSpec, MAX_REDIRECTS};

/// One response, as far as it was read.
struct Answer {
    status: u16,
    location: Option<HeaderValue>,
    /// The body, or why it could not be read whole within the limit.
    body: Result<Bytes, Failure>,
}

pub(super) async fn probe(spec: &AgentSpec, url: &Url) -> ProbeResult {
    let started = Instant::now();
    let mut progress = Progress {
        stage: "dns",
        ..Progress::default()
    };
    let attempt = tokio::time::timeout(spec.timeout, follow(spec, url, &mut progress)).await;
    let judge = |answer, duration| judge(spec, answer, duration);
    progress.finish(started, spec.timeout, attempt, judge)
}

fn judge(spec: &AgentSpec, answer: Answer, duration: Duration) -> Outcome {
    // The status is known before the body is read: when it is wrong, it is the finding,
    // whatever then happened to the body.
    if let Err(error) = check_status(&spec.expect.status, answer.status) {
        return Failure::new(FailureReason::HttpStatus, error).into_outcome();
    }
    match answer.body {
        Ok(body) => judge_body(spec, &body, duration),
        Err(failure) => failure.into_outcome(),
    }
}

/// Sends the request, then follows redirects; answers the last response.
async fn follow(spec: &AgentSpec, first: &Url, progress: &mut Progress) -> Result<Answer, Failure> {
    let mut url = first.clone();
    let mut method = spec.http.method.clone();
    let mut redirects = 0;
    loop {
        let answer = hop(spec, &url, &method, first, progress).await?;
        let follow = spec.http.follow_redirects;
        let Some(location) = redirect::location(follow, answer.status, answer.location.as_ref())
        else {
            return Ok(answer);
        };
        if redirects == MAX_REDIRECTS {
            return Err(Failure::new(
                FailureReason::Redirect,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        }
        redirects += 1;
        url = redirect::next_url(&url, location)?;
        method = redirect::next_method(method, answer.status);
    }
}

/// One request and its response, on a fresh connection.
async fn hop(
    spec: &AgentSpec,
    url: &Url,
    method: &Method,
    first: &Url,
    progress: &mut Progress,
) -> Result<Answer, Failure> {
    // Headers and credentials go only where the config sent them; the SNI override and the
    // certificate expiry belong to the agent's own host, not to a host it redirects to.
    let own_host = redirect::same_host(url, first);
    let request = build_request(spec, url, method, redirect::same_origin(url, first))?;
    let (host, port) = match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => (host, port),
        _ => return Err(Failure::new(FailureReason::Dns, "URL has no host")),
    };
    let tcp = open(host, port, &mut progress.phases, &mut progress.stage).await?;
    let policy = BodyPolicy {
        limit: spec.http.max_body_bytes,
        keep: spec.expect.needs_body() || !spec.degraded.json.is_empty(),
    };
    if url.scheme() != "https" {
        return exchange(tcp, request, policy, progress).await;
    }
    progress.stage = "tls";
    let config = match &spec.http.tls {
        Some(client) => client.config(),
        // Reached by an http:// agent redirected to https://.
        None => {
            default_client_config().map_err(|e| Failure::new(FailureReason::Tls, e.to_string()))?
        }
    };
    let name = tls::server_name(url, spec.http.server_name.as_deref(), own_host)?;
    let (stream, served_expiry) = tls::handshake(config, name, tcp, &mut progress.phases).await;
    if let (true, Some(expiry)) = (own_host, served_expiry) {
        progress.cert_expiry = Some(progress.cert_expiry.map_or(expiry, |seen| seen.min(expiry)));
    }
    exchange(stream?, request, policy, progress).await
}

/// How much of a body is read, and whether it is kept for the expectations.
#[derive(Clone, Copy)]
struct BodyPolicy {
    limit: u64,
    /// Without body conditions the bytes are only counted: reading them still measures
    /// transfer and proves the agent finishes its answer.
    keep: bool,
}

/// Sends `request` over `io` and reads the response, timing first_byte and transfer.
async fn exchange<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
    policy: BodyPolicy,
    progress: &mut Progress,
) -> Result<Answer, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    progress.stage = "first_byte";
    let sent = Instant::now();
    let is_head = request.method() == Method::HEAD;
    let (mut sender, conn) = http1::builder()
        .handshake(TokioIo::new(io))
        .await
        .map_err(protocol_failure)?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(protocol_failure)?;
        progress.phases.first_byte += sent.elapsed();
        let status = response.status();
        progress.http_status = Some(status.as_u16());
        progress.stage = "transfer";
        let started = Instant::now();
        let (head, body) = response.into_parts();
        let bodiless =
            is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let body = read_bounded(&head.headers, body, policy, bodiless).await;
        progress.phases.transfer += started.elapsed();
        Ok(Answer {
            status: status.as_u16(),
            location: head.headers.get(header::LOCATION).cloned(),
            body,
        })
    };
    drive(conn, exchange).await
}

/// Polls the connection alongside the exchange, in this task: nothing is spawned, so nothing
/// outlives the probe, and dropping the probe on timeout closes the socket.
async fn drive<C, E, T>(conn: C, exchange: E) -> Result<T, Failure>
where
    C: Future<Output = hyper::Result<()>>,
    E: Future<Output = Result<T, Failure>>,
{
    tokio::pin!(conn, exchange);
    let mut conn_done = false;
    loop {
        tokio::select! {
            answer = &mut exchange => return answer,
            // A connection error also reaches the exchange, which reports it.
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

/// Reads the body, but never more than `limit` bytes: a declared Content-Length above it
/// fails before reading, and reading stops as soon as the bytes received pass it.
async fn read_bounded(
    headers: &HeaderMap,
    mut body: Incoming,
    policy: BodyPolicy,
    bodiless: bool,
) -> Result<Bytes, Failure> {
    let limit = policy.limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(declared), false) = (declared, bodiless) {
        if declared > limit {
            return Err(too_large(format!(
                "Content-Length {declared} is above the {limit}-byte limit"
            )));
        }
    }
    let mut kept = BytesMut::new();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(protocol_failure)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received = received.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if received > limit {
            return Err(too_large(format!("body is above the {limit}-byte limit")));
        }
        if policy.keep {
            kept.extend_from_slice(&data);
        }
    }
    Ok(kept.freeze())
}

fn too_large(error: String) -> Failure {
    Failure::new(FailureReason::BodyTooLarge, error)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::Auth;

    pub(in crate::probe) fn spec() -> AgentSpec {
        AgentSpec {
            name: "planner".into(),
            agent_type: "orchestrator".into(),
            target: crate::config::Target::Http(Url::parse("http://agent/").unwrap()),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            failure_threshold: 1,
            success_threshold: 1,
            labels: Vec::new(),
            http: crate::config::HttpSpec {
                method: Method::GET,
                headers: Vec::new(),
                auth: Some(Auth::Bearer(crate::config::Secret::new("s3cret".into()))),
                tls: None,
                server_name: None,
                follow_redirects: true,
                max_body_bytes: 1024,
            },
            expect: Default::default(),
            degraded: Default::default(),
            canary: None,
        }
    }

    #[test]
    fn wrong_status_wins_over_a_body_that_could_not_be_read() {
        let answer = Answer {
            status: 500,
            location: None,
            body: Err(too_large("body is above the 1024-byte limit".into())),
        };
        assert_eq!(
            judge(&spec(), answer, Duration::ZERO).reason(),
            Some(FailureReason::HttpStatus)
        );
    }

    #[test]
    fn body_failure_counts_when_the_status_is_right() {
        let answer = Answer {
            status: 200,
            location: None,
            body: Err(too_large("body is above the 1024-byte limit".into())),
        };
        assert_eq!(
            judge(&spec(), answer, Duration::ZERO).reason(),
            Some(FailureReason::BodyTooLarge)
        );
    }
}
