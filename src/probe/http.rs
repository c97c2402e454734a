//! The HTTP(S) probe: one fresh connection per hop, each phase timed in sequence, redirects
//! followed up to `MAX_REDIRECTS`, the body never read past its limit. Every failure becomes
//! exactly one `FailureReason`; the verdict on a complete response is left to `expect`.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};

use super::expect::{check_expectations, check_status};
use super::tcp::{connect, resolve, timed_out, Failure};
use super::{FailureReason, Outcome, Phases, ProbeResult};
use crate::config::tls::{client_config, TlsFiles};
use crate::config::{AgentSpec, Auth, MAX_REDIRECTS};

const USER_AGENT: &str = concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION"));

/// What the probe has learnt so far. It lives outside the timed future, so a probe cut short
/// by its timeout still reports the phases it completed and the last status it saw.
struct Progress {
    phases: Phases,
    /// The phase under way, named when the timeout cuts it short.
    stage: &'static str,
    http_status: Option<u16>,
    /// Earliest `notAfter` over every certificate served on every hop.
    cert_expiry: Option<SystemTime>,
}

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
        phases: Phases::default(),
        stage: "dns",
        http_status: None,
        cert_expiry: None,
    };
    let attempt = tokio::time::timeout(spec.timeout, follow(spec, url, &mut progress)).await;
    let duration = started.elapsed();
    let outcome = match attempt {
        Ok(Ok(answer)) => judge(spec, answer, duration),
        Ok(Err(failure)) => failure.into_outcome(),
        Err(_) => timed_out(spec.timeout, progress.stage),
    };
    ProbeResult {
        ended_at: SystemTime::now(),
        duration,
        phases: progress.phases,
        http_status: progress.http_status,
        cert_expiry: progress.cert_expiry,
        protocol: Default::default(),
        outcome,
    }
}

fn judge(spec: &AgentSpec, answer: Answer, duration: Duration) -> Outcome {
    // The status is known before the body is read: when it is wrong, it is the finding,
    // whatever then happened to the body.
    if let Err(error) = check_status(&spec.expect.status, answer.status) {
        return Failure::new(FailureReason::HttpStatus, error).into_outcome();
    }
    match answer.body {
        Ok(body) => check_expectations(spec, answer.status, &body, duration),
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
        let Some(location) = redirect_location(spec, &answer) else {
            return Ok(answer);
        };
        if redirects == MAX_REDIRECTS {
            return Err(Failure::new(
                FailureReason::Redirect,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        }
        redirects += 1;
        url = next_url(&url, location)?;
        method = redirected_method(method, answer.status);
    }
}

/// The Location to follow, when the answer is a redirect that the agent's config follows.
fn redirect_location<'a>(spec: &AgentSpec, answer: &'a Answer) -> Option<&'a HeaderValue> {
    let is_redirect = matches!(answer.status, 301 | 302 | 303 | 307 | 308);
    if spec.http.follow_redirects && is_redirect {
        answer.location.as_ref()
    } else {
        None
    }
}

fn next_url(current: &Url, location: &HeaderValue) -> Result<Url, Failure> {
    let bad = |why: String| Failure::new(FailureReason::Redirect, format!("bad Location: {why}"));
    let location = location.to_str().map_err(|_| bad("not ASCII".to_owned()))?;
    let mut next = current.join(location).map_err(|e| bad(e.to_string()))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(bad(format!("{}: is not http or https", next.scheme())));
    }
    next.set_fragment(None);
    Ok(next)
}

/// 303 turns any method but HEAD into GET; 301 and 302 turn POST into GET, as browsers do.
fn redirected_method(method: Method, status: u16) -> Method {
    match status {
        303 if method != Method::HEAD => Method::GET,
        301 | 302 if method == Method::POST => Method::GET,
        _ => method,
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
    // Credentials go only where the config sent them: a redirect to another origin must not
    // collect them, and the SNI override only makes sense for the configured host.
    let same_origin = url.origin() == first.origin();
    let same_host = url.host() == first.host();
    let request = build_request(spec, url, method, same_origin)?;
    let (host, port) = match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => (host, port),
        _ => return Err(Failure::new(FailureReason::Dns, "URL has no host")),
    };
    progress.stage = "dns";
    let addrs = resolve(host, port, &mut progress.phases).await?;
    progress.stage = "connect";
    let tcp = connect(&addrs, &mut progress.phases).await?;
    let policy = BodyPolicy {
        limit: spec.http.max_body_bytes,
        keep: spec.expect.needs_body() || !spec.degraded.json.is_empty(),
    };
    if url.scheme() == "https" {
        progress.stage = "tls";
        let tls = tls_handshake(spec, url, same_host, tcp, progress).await?;
        exchange(tls, request, policy, progress).await
    } else {
        exchange(tcp, request, policy, progress).await
    }
}

fn build_request(
    spec: &AgentSpec,
    url: &Url,
    method: &Method,
    send_credentials: bool,
) -> Result<Request<Empty<Bytes>>, Failure> {
    let mut request = Request::new(Empty::new());
    *request.method_mut() = method.clone();
    *request.uri_mut() = url[Position::BeforePath..Position::AfterQuery]
        .parse()
        .map_err(|_| {
            Failure::new(
                FailureReason::Protocol,
                "URL path is not a valid request target",
            )
        })?;
    let host =
        HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort]).map_err(|_| {
            Failure::new(
                FailureReason::Protocol,
                "URL host is not a valid Host header",
            )
        })?;
    let headers = request.headers_mut();
    headers.insert(header::HOST, host);
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    // A configured header replaces a default one of the same name; repeated names all go out.
    let mut seen: Vec<&HeaderName> = Vec::new();
    for (name, value) in &spec.http.headers {
        if seen.contains(&name) {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
            seen.push(name);
        }
    }
    if send_credentials {
        if let Some(auth) = &spec.http.auth {
            headers.insert(header::AUTHORIZATION, auth_header(auth)?);
        }
    }
    // One fresh connection per probe: the agent must not keep it open for us.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

pub(super) fn auth_header(auth: &Auth) -> Result<HeaderValue, Failure> {
    let value = match auth {
        Auth::Bearer(token) => format!("Bearer {}", token.expose()),
        Auth::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            format!("Basic {}", base64(pair.as_bytes()))
        }
    };
    // The message must not quote the value: it is a credential.
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        Failure::new(
            FailureReason::Protocol,
            "the credential has characters not allowed in a header",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Standard base64 with padding (RFC 4648), for Basic auth.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let triple = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (triple >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn tls_handshake(
    spec: &AgentSpec,
    url: &Url,
    use_server_name: bool,
    tcp: TcpStream,
    progress: &mut Progress,
) -> Result<TlsStream<TcpStream>, Failure> {
    let config = match &spec.http.tls {
        Some(config) => Arc::clone(config),
        // Reached by an http:// agent redirected to https://.
        None => default_tls_config()?,
    };
    let name = server_name(spec, url, use_server_name)?;
    let started = Instant::now();
    let handshake = TlsConnector::from(config).connect(name, tcp).await;
    progress.phases.tls += started.elapsed();
    let stream = handshake.map_err(|e| tls_failure(&e, url.host_str().unwrap_or_default()))?;
    let served = stream.get_ref().1.peer_certificates().unwrap_or_default();
    if let Some(expiry) = earliest_expiry(served) {
        progress.cert_expiry = Some(progress.cert_expiry.map_or(expiry, |seen| seen.min(expiry)));
    }
    Ok(stream)
}

fn default_tls_config() -> Result<Arc<ClientConfig>, Failure> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| client_config(&TlsFiles::default()).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Failure::new(FailureReason::Tls, e))
}

fn server_name(
    spec: &AgentSpec,
    url: &Url,
    use_override: bool,
) -> Result<ServerName<'static>, Failure> {
    let invalid = |name: &str| {
        Failure::new(
            FailureReason::Tls,
            format!("{name} is not a valid TLS server name"),
        )
    };
    if let (true, Some(name)) = (use_override, &spec.http.server_name) {
        return ServerName::try_from(name.clone()).map_err(|_| invalid(name));
    }
    match url.host() {
        Some(Host::Domain(domain)) => {
            ServerName::try_from(domain.to_owned()).map_err(|_| invalid(domain))
        }
        Some(Host::Ipv4(ip)) => Ok(ServerName::IpAddress(IpAddr::V4(ip).into())),
        Some(Host::Ipv6(ip)) => Ok(ServerName::IpAddress(IpAddr::V6(ip).into())),
        None => Err(invalid("an empty host")),
    }
}

fn tls_failure(err: &io::Error, host: &str) -> Failure {
    // tokio-rustls wraps the rustls error, whose text says what was wrong with the certificate.
    let detail = match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => err.to_string(),
    };
    Failure::new(
        FailureReason::Tls,
        format!("TLS handshake with {host} failed: {detail}"),
    )
}

pub(super) fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<SystemTime> {
    chain
        .iter()
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            unix_time(cert.validity().not_after.timestamp())
        })
        .min()
}

fn unix_time(secs: i64) -> Option<SystemTime> {
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
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
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
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

/// A malformed, reset or cut-short exchange. hyper's errors name what went wrong and their
/// sources say why (e.g. the OS error); neither quotes header values.
fn protocol_failure(err: hyper::Error) -> Failure {
    let mut error = if err.is_parse() {
        format!("malformed response: {err}")
    } else {
        err.to_string()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        error.push_str(": ");
        error.push_str(&cause.to_string());
        source = cause.source();
    }
    Failure::new(FailureReason::Protocol, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AgentSpec {
        AgentSpec {
            name: "planner".into(),
            agent_type: "orchestrator".into(),
            target: crate::config::Target::Http(url("http://agent/")),
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

    #[test]
    fn credentials_are_marked_sensitive_and_dropped_for_other_origins() {
        let spec = spec();
        let target = url("http://agent/health");
        let request = build_request(&spec, &target, &Method::GET, true).unwrap();
        let auth = request.headers().get(header::AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(format!("{auth:?}"), "Sensitive");
        let request = build_request(&spec, &target, &Method::GET, false).unwrap();
        assert!(request.headers().get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn invalid_bearer_token_is_not_quoted() {
        let mut spec = spec();
        spec.http.auth = Some(Auth::Bearer(crate::config::Secret::new("s3\ncret".into())));
        let failure = build_request(&spec, &url("http://agent/"), &Method::GET, true).unwrap_err();
        assert!(!failure.error.contains("s3"), "{}", failure.error);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn relative_location_resolves_against_the_current_url() {
        let current = url("http://agent:8080/a/b?x=1");
        let next = next_url(&current, &HeaderValue::from_static("../c#frag")).unwrap();
        assert_eq!(next.as_str(), "http://agent:8080/c");
        let next = next_url(&current, &HeaderValue::from_static("https://other/health")).unwrap();
        assert_eq!(next.as_str(), "https://other/health");
    }

    #[test]
    fn location_to_another_scheme_is_a_redirect_failure() {
        let current = url("http://agent/");
        let failure = next_url(&current, &HeaderValue::from_static("ftp://agent/x")).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Redirect);
        assert_eq!(failure.error, "bad Location: ftp: is not http or https");
    }

    #[test]
    fn unparsable_location_is_a_redirect_failure() {
        let current = url("http://agent/");
        let failure = next_url(&current, &HeaderValue::from_static("http://[::1")).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Redirect);
    }

    #[test]
    fn see_other_turns_into_get() {
        assert_eq!(redirected_method(Method::POST, 303), Method::GET);
        assert_eq!(redirected_method(Method::HEAD, 303), Method::HEAD);
        assert_eq!(redirected_method(Method::POST, 302), Method::GET);
        assert_eq!(redirected_method(Method::POST, 307), Method::POST);
        assert_eq!(redirected_method(Method::PUT, 301), Method::PUT);
    }

    #[test]
    fn negative_and_positive_unix_times_convert() {
        assert_eq!(unix_time(0), Some(UNIX_EPOCH));
        assert_eq!(
            unix_time(-10),
            UNIX_EPOCH.checked_sub(Duration::from_secs(10))
        );
        assert_eq!(
            unix_time(1_900_000_000),
            Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        );
    }
}
