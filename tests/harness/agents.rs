//! Mock agents: real HTTP(S) servers on 127.0.0.1 (port 0) that answer well or misbehave on
//! purpose (`MockAgent`, by `Behaviour`), a listener that hands every connection to the test's
//! own code (`RawAgent`), and a builder for the `AgentSpec` that probes them. Well-behaved
//! agents are served by hyper; misbehaving ones write raw bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_health_exporter::config::tls::{client_config, TlsFiles};
use agent_health_exporter::config::{
    AgentSpec, Auth, DegradedSpec, ExpectSpec, HttpSpec, JsonMatch, Secret, StatusMatch, Target,
};
use agent_health_exporter::probe::{FailureReason, Outcome, ProbeResult};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use url::Url;

/// How a mock agent answers every connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with this body.
    Ok(String),
    /// This status, with a short text body.
    Status(u16),
    /// Reads the request, then holds the connection open without answering.
    Hang,
    /// 200 "ok" after this delay.
    Slow(Duration),
    /// 200 with a chunked body that never ends; notes when the prober closes early.
    EndlessBody,
    /// Declares a 10 GB Content-Length, sends 1 KiB, then holds the connection.
    HugeContentLength,
    /// 302 to the requested path, forever.
    RedirectLoop,
    /// `/hop/0` -> `/hop/1` -> ... -> `/hop/{hops}` answers 200 "ok"; every answer comes after
    /// `delay`. Locations alternate between relative paths and absolute URLs.
    RedirectChain { hops: usize, delay: Duration },
    /// 302 to this Location.
    RedirectTo(String),
    /// Sends the head and part of the body, then resets the connection.
    Reset,
    /// Answers bytes that are not HTTP, then closes.
    Garbage,
}

impl Behaviour {
    /// 200 with `body`.
    pub fn ok(body: &str) -> Self {
        Behaviour::Ok(body.to_owned())
    }

    fn is_well_behaved(&self) -> bool {
        matches!(
            self,
            Behaviour::Ok(_)
                | Behaviour::Status(_)
                | Behaviour::Slow(_)
                | Behaviour::RedirectLoop
                | Behaviour::RedirectChain { .. }
                | Behaviour::RedirectTo(_)
        )
    }
}

/// A request as the mock agent received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// Every value of header `name` (any case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

/// A self-signed certificate and its key, for TLS mock agents.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate in PEM, to use as `ca_file`.
    pub cert_pem: String,
    /// The certificate's notAfter.
    pub not_after: SystemTime,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TlsIdentity {
    /// A self-signed certificate for `names` (DNS names or IP addresses), valid from 2020-01-01
    /// until 2040-01-01.
    pub fn self_signed(names: &[&str]) -> Self {
        Self::valid_between(names, (2020, 1, 1), (2040, 1, 1))
    }

    /// A self-signed certificate for `names` that expired on 2021-01-01.
    pub fn expired(names: &[&str]) -> Self {
        Self::valid_between(names, (2020, 1, 1), (2021, 1, 1))
    }

    fn valid_between(names: &[&str], from: (i32, u8, u8), until: (i32, u8, u8)) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let not_after = UNIX_EPOCH
            + Duration::from_secs(u64::try_from(params.not_after.unix_timestamp()).unwrap());
        let cert = params.self_signed(&key).unwrap();
        TlsIdentity {
            cert_pem: cert.pem(),
            not_after,
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// For 127.0.0.1 and localhost.
    pub fn loopback() -> Self {
        Self::self_signed(&["127.0.0.1", "localhost"])
    }

    fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

struct Shared {
    behaviour: Behaviour,
    /// `http://127.0.0.1:port` or `https://...`, for absolute Locations.
    base: String,
    requests: Mutex<Vec<RecordedRequest>>,
    closed_early: AtomicBool,
    closed_early_signal: Notify,
}

impl Shared {
    fn record(&self, request: RecordedRequest) {
        self.requests.lock().unwrap().push(request);
    }

    fn note_closed_early(&self) {
        self.closed_early.store(true, Ordering::SeqCst);
        self.closed_early_signal.notify_waiters();
    }
}

/// A mock agent listening on 127.0.0.1; it stops, and drops its connections, when dropped.
pub struct MockAgent {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

impl MockAgent {
    /// A plain HTTP agent.
    pub async fn start(behaviour: Behaviour) -> MockAgent {
        Self::listen(behaviour, None).await
    }

    /// An HTTPS agent presenting `identity`.
    pub async fn start_tls(behaviour: Behaviour, identity: &TlsIdentity) -> MockAgent {
        Self::listen(behaviour, Some(identity.acceptor())).await
    }

    async fn listen(behaviour: Behaviour, tls: Option<TlsAcceptor>) -> MockAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            behaviour,
            base: format!("{scheme}://{addr}"),
            requests: Mutex::new(Vec::new()),
            closed_early: AtomicBool::new(false),
            closed_early_signal: Notify::new(),
        });
        let accept_loop = tokio::spawn(accept_loop(listener, tls, Arc::clone(&shared)));
        MockAgent {
            addr,
            shared,
            accept_loop,
        }
    }

    /// The agent's URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.shared.base)).unwrap()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// True once the prober closed a connection while the agent was still sending
    /// (`EndlessBody`); waits up to `within` for it.
    pub async fn saw_early_close(&self, within: Duration) -> bool {
        let signalled = self.shared.closed_early_signal.notified();
        if self.shared.closed_early.load(Ordering::SeqCst) {
            return true;
        }
        let _ = tokio::time::timeout(within, signalled).await;
        self.shared.closed_early.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every open connection.
    pub fn shutdown(self) {}
}

impl Drop for MockAgent {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// An address on which nothing listens: a port just released by the OS.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A listener on 127.0.0.1 whose every connection is handed to `serve`, for misbehaviour no
/// `Behaviour` covers; stops, and drops its connections, when dropped.
pub struct RawAgent {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RawAgent {
    pub async fn start<F, Fut>(serve: F) -> RawAgent
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = Arc::new(serve);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(stream));
            }
        });
        RawAgent { addr, task }
    }

    /// `scheme://addr/path`.
    pub fn url(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://{}{path}", self.addr)).unwrap()
    }
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    // Owning the connections here means aborting this task drops them all.
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        while connections.try_join_next().is_some() {}
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                Some(acceptor) => {
                    // A prober that rejects the certificate ends the handshake: nothing to serve.
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(stream, shared).await;
                    }
                }
                None => serve(tcp, shared).await,
            }
        });
    }
}

/// A connection stream that can be reset at the TCP level.
trait AgentIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl AgentIo for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl AgentIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

async fn serve(io: impl AgentIo, shared: Arc<Shared>) {
    if shared.behaviour.is_well_behaved() {
        serve_with_hyper(io, shared).await;
    } else {
        serve_raw(io, shared).await;
    }
}

async fn serve_with_hyper(io: impl AgentIo, shared: Arc<Shared>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            shared.record(RecordedRequest {
                method: request.method().to_string(),
                target: request
                    .uri()
                    .path_and_query()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                headers: request
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
            });
            Ok::<_, Infallible>(answer(&shared, request.uri().path()).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn answer(shared: &Shared, path: &str) -> Response<Full<Bytes>> {
    let respond = |status: u16, location: Option<String>, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(location) = location {
            response
                .headers_mut()
                .insert(http::header::LOCATION, location.parse().unwrap());
        }
        response
    };
    match &shared.behaviour {
        Behaviour::Ok(body) => respond(200, None, body.clone()),
        Behaviour::Status(code) => respond(*code, None, format!("status {code}")),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(*delay).await;
            respond(200, None, "ok".into())
        }
        Behaviour::RedirectLoop => respond(302, Some(path.to_owned()), String::new()),
        Behaviour::RedirectTo(location) => respond(302, Some(location.clone()), String::new()),
        Behaviour::RedirectChain { hops, delay } => {
            tokio::time::sleep(*delay).await;
            let hop: usize = path
                .strip_prefix("/hop/")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if hop >= *hops {
                return respond(200, None, "ok".into());
            }
            let next = format!("/hop/{}", hop + 1);
            let location = if hop.is_multiple_of(2) {
                next
            } else {
                format!("{}{next}", shared.base)
            };
            respond(302, Some(location), String::new())
        }
        other => unreachable!("{other:?} is served raw"),
    }
}

async fn serve_raw(mut io: impl AgentIo, shared: Arc<Shared>) {
    let Some(request) = read_request_head(&mut io).await else {
        return;
    };
    shared.record(request);
    match shared.behaviour {
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::EndlessBody => {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            if io.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut chunk = b"4000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'x', 0x4000));
            chunk.extend_from_slice(b"\r\n");
            loop {
                if io.write_all(&chunk).await.is_err() {
                    shared.note_closed_early();
                    return;
                }
            }
        }
        Behaviour::HugeContentLength => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n";
            let _ = io.write_all(head.as_bytes()).await;
            let _ = io.write_all(&[b'x'; 1024]).await;
            std::future::pending::<()>().await
        }
        Behaviour::Reset => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial bo";
            let _ = io.write_all(head.as_bytes()).await;
            let _ = io.flush().await;
            // Let the prober read the head first, so the reset lands mid-body.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = io.tcp().set_zero_linger();
            drop(io);
        }
        Behaviour::Garbage => {
            let _ = io
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n")
                .await;
            let _ = io.shutdown().await;
        }
        ref other => unreachable!("{other:?} is served by hyper"),
    }
}

/// Reads up to the end of the request head; the probe's requests carry no body.
async fn read_request_head(io: &mut impl AgentIo) -> Option<RecordedRequest> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        let n = io.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(RecordedRequest {
        method,
        target,
        headers,
    })
}

/// The reason of a failed probe; panics with the result when it did not fail.
pub fn reason(result: &ProbeResult) -> FailureReason {
    match &result.outcome {
        Outcome::Failed { reason, .. } => *reason,
        other => panic!("expected a failure, got {other:?} ({result:?})"),
    }
}

/// The error text of a failed probe; panics when it did not fail.
pub fn error(result: &ProbeResult) -> &str {
    match &result.outcome {
        Outcome::Failed { error, .. } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Builds the `AgentSpec` a test probes with; defaults: GET, 1 s timeout, redirects followed,
/// 1 MiB body limit, no expectations beyond 2xx.
pub struct SpecBuilder {
    spec: AgentSpec,
}

/// An HTTP(S) agent at `url`.
pub fn http_agent(url: Url) -> SpecBuilder {
    SpecBuilder::new(Target::Http(url))
}

/// A TCP agent at `host:port`.
pub fn tcp_agent(host: &str, port: u16) -> SpecBuilder {
    SpecBuilder::new(Target::Tcp {
        host: host.to_owned(),
        port,
    })
}

impl SpecBuilder {
    fn new(target: Target) -> Self {
        SpecBuilder {
            spec: AgentSpec {
                name: "test-agent".into(),
                agent_type: "test".into(),
                target,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                failure_threshold: 1,
                success_threshold: 1,
                labels: Vec::new(),
                http: HttpSpec {
                    method: Method::GET,
                    headers: Vec::new(),
                    auth: None,
                    tls: None,
                    server_name: None,
                    follow_redirects: true,
                    max_body_bytes: 1024 * 1024,
                },
                expect: ExpectSpec::default(),
                degraded: DegradedSpec::default(),
                canary: None,
            },
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = timeout;
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.spec.http.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.spec.http.headers.push((
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        ));
        self
    }

    pub fn bearer(mut self, token: &str) -> Self {
        self.spec.http.auth = Some(Auth::Bearer(Secret::new(token.to_owned())));
        self
    }

    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.spec.http.auth = Some(Auth::Basic {
            username: username.to_owned(),
            password: Secret::new(password.to_owned()),
        });
        self
    }

    /// TLS as config loading would set it up from these files.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.spec.http.tls = Some(client_config(&files).unwrap().into());
        self
    }

    /// TLS trusting only `identity`'s certificate, as with `ca_file`.
    pub fn trusting(self, identity: &TlsIdentity) -> Self {
        self.tls(TlsFiles {
            ca_pem: Some(identity.cert_pem.clone().into_bytes()),
            ..TlsFiles::default()
        })
    }

    pub fn server_name(mut self, name: &str) -> Self {
        self.spec.http.server_name = Some(name.to_owned());
        self
    }

    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.spec.http.follow_redirects = follow;
        self
    }

    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.spec.http.max_body_bytes = limit;
        self
    }

    pub fn expect_status(mut self, accepted: &[StatusMatch]) -> Self {
        self.spec.expect.status = accepted.to_vec();
        self
    }

    pub fn body_contains(mut self, needle: &str) -> Self {
        self.spec.expect.body_contains = Some(needle.to_owned());
        self
    }

    pub fn body_regex(mut self, pattern: &str) -> Self {
        self.spec.expect.body_regex = Some(regex::Regex::new(pattern).unwrap().into());
        self
    }

    pub fn expect_json(mut self, pointer: &str, value: serde_json::Value) -> Self {
        self.spec.expect.json.push(JsonMatch {
            pointer: pointer.to_owned(),
            value,
        });
        self
    }

    pub fn degraded_latency_above(mut self, limit: Duration) -> Self {
        self.spec.degraded.latency_above = Some(limit);
        self
    }

    pub fn degraded_json(mut self, pointer: &str, value: serde_json::Value) -> Self {
        self.spec.degraded.json.push(JsonMatch {
            pointer: pointer.to_owned(),
            value,
        });
        self
    }

    pub fn build(self) -> AgentSpec {
        self.spec
    }
}
