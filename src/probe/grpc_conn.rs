//! The HTTP/2 connection under the gRPC probe and the Watch stream: our own resolve, connect and
//! TLS steps (timed into the phases), then a hyper HTTP/2 client handed to tonic's generated
//! client as a tower service. The connection future is returned, to be polled by the caller.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::net::{connect, resolve};
use super::{tls, Failure};
use super::{FailureReason, Phases};
use crate::config::{AgentSpec, GrpcTarget};

const USER_AGENT: &str = concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION"));

/// The phases and findings of setting up the connection.
#[derive(Default)]
pub(super) struct Setup {
    pub phases: Phases,
    /// The step under way, named when a timeout cuts it short.
    pub stage: &'static str,
    pub cert_expiry: Option<SystemTime>,
}

/// What the service saw that tonic's `Status` does not carry: when response headers came, and
/// the transport error that ended the exchange, if any.
#[derive(Default)]
pub(super) struct Tap {
    pub headers_at: Option<Instant>,
    pub transport: Option<Failure>,
    /// The peer closed or reset the connection (no TLS alert, no HTTP/2 GOAWAY).
    pub closed_by_peer: bool,
}

impl Tap {
    fn record(&mut self, err: &hyper::Error) {
        if self.transport.is_none() {
            self.transport = Some(transport_failure(err));
            self.closed_by_peer = closed_by_peer(err);
        }
    }
}

pub(super) type SharedTap = Arc<Mutex<Tap>>;

/// A hyper HTTP/2 sender as a tower service, the shape tonic's generated clients take.
#[derive(Clone)]
pub(super) struct H2Service {
    sender: SendRequest<tonic::body::Body>,
    origin: Uri,
    tap: SharedTap,
}

impl H2Service {
    pub(super) fn origin(&self) -> Uri {
        self.origin.clone()
    }
}

impl tower_service::Service<Request<tonic::body::Body>> for H2Service {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        request.headers_mut().insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        let sent = self.sender.send_request(request);
        let tap = Arc::clone(&self.tap);
        Box::pin(async move {
            let answer = sent.await;
            if let Ok(mut tap) = tap.lock() {
                match &answer {
                    Ok(_) => tap.headers_at = Some(Instant::now()),
                    Err(e) => tap.record(e),
                }
            }
            answer
        })
    }
}

/// HTTP/2 PINGs on a long-lived connection: one after `time` without a frame from the peer, and
/// the connection ends when its answer has not come within `timeout`. That is how a peer gone
/// without FIN or RST (host down, a proxy that blackholes) is noticed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeepAlive {
    pub time: Duration,
    pub timeout: Duration,
}

/// The connection future; poll it alongside the calls (see `drive`).
pub(super) type Driver = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// Resolves, connects, shakes hands (TLS with ALPN h2 for grpcs) and opens HTTP/2, with PINGs
/// when `keep_alive` is given (a probe's connection is bounded by its timeout and needs none).
pub(super) async fn open(
    spec: &AgentSpec,
    grpc: &GrpcTarget,
    setup: &mut Setup,
    tap: &SharedTap,
    keep_alive: Option<KeepAlive>,
) -> Result<(H2Service, Driver), Failure> {
    setup.stage = "dns";
    let addrs = resolve(&grpc.host, grpc.port, &mut setup.phases).await?;
    setup.stage = "connect";
    let tcp = connect(&addrs, &mut setup.phases).await?;
    let _ = tcp.set_nodelay(true);
    let scheme = if grpc.secure {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let authority = match &grpc.authority {
        Some(a) => a.clone(),
        None if grpc.host.contains(':') => format!("[{}]:{}", grpc.host, grpc.port),
        None => format!("{}:{}", grpc.host, grpc.port),
    };
    let origin = Uri::builder()
        .scheme(scheme)
        .authority(Authority::try_from(authority.as_str()).map_err(|_| {
            Failure::new(
                FailureReason::Protocol,
                format!("{authority:?} is not a valid authority"),
            )
        })?)
        .path_and_query("/")
        .build()
        .map_err(|e| Failure::new(FailureReason::Protocol, e.to_string()))?;
    if grpc.secure {
        setup.stage = "tls";
        let tls = handshake(spec, grpc, tcp, setup).await?;
        h2(tls, origin, tap, keep_alive).await
    } else {
        h2(tcp, origin, tap, keep_alive).await
    }
}

async fn handshake(
    spec: &AgentSpec,
    grpc: &GrpcTarget,
    tcp: tokio::net::TcpStream,
    setup: &mut Setup,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Failure> {
    let client = spec
        .http
        .tls
        .as_ref()
        .ok_or_else(|| Failure::new(FailureReason::Tls, "no TLS setup for a grpcs:// agent"))?;
    // The shared client configs offer only http/1.1; gRPC is HTTP/2 and servers such as grpcio
    // refuse a TLS connection that did not choose h2 by ALPN.
    let mut config = (*client.config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name_text = spec.http.server_name.as_deref().unwrap_or(&grpc.host);
    let name = ServerName::try_from(name_text.to_owned()).map_err(|_| {
        Failure::new(
            FailureReason::Tls,
            format!(
                "{} is not a valid TLS server name; set tls.server_name to a DNS name",
                super::excerpt(name_text)
            ),
        )
    })?;
    let (stream, expiry) = tls::handshake(Arc::new(config), name, tcp, &mut setup.phases).await;
    setup.cert_expiry = expiry;
    stream
}

async fn h2<IO>(
    io: IO,
    origin: Uri,
    tap: &SharedTap,
    keep_alive: Option<KeepAlive>,
) -> Result<(H2Service, Driver), Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(keep_alive) = keep_alive {
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(keep_alive.time)
            .keep_alive_timeout(keep_alive.timeout)
            .keep_alive_while_idle(true);
    }
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| transport_failure(&e))?;
    let service = H2Service {
        sender,
        origin,
        tap: Arc::clone(tap),
    };
    Ok((service, Box::pin(conn)))
}

/// Polls the connection alongside `call`, in this task, recording a connection error in the
/// tap; answers what `call` answers.
pub(super) async fn drive<F: Future>(driver: &mut Driver, tap: &SharedTap, call: F) -> F::Output {
    tokio::pin!(call);
    let mut conn_done = false;
    loop {
        tokio::select! {
            answer = &mut call => return answer,
            ended = driver.as_mut(), if !conn_done => {
                conn_done = true;
                if let (Err(e), Ok(mut tap)) = (ended, tap.lock()) {
                    tap.record(&e);
                }
                // A finished connection still holds the queue of requests it never took;
                // dropping it answers them with an error instead of leaving them waiting.
                *driver = Box::pin(std::future::pending());
            }
        }
    }
}

/// True when the error chain ends in the peer closing or resetting the connection.
fn closed_by_peer(err: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::UnexpectedEof | K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted
            );
        }
        source = e.source();
    }
    false
}

pub(super) const CLIENT_CERT_HINT: &str =
    " (the server wants a client certificate: set grpc.tls.cert_file and key_file)";

/// Classifies an error under the gRPC call: a TLS error (worded by probe/tls.rs, which names the
/// client certificate when the server's alert asks for one), else a broken HTTP/2 exchange.
pub(super) fn transport_failure(err: &(dyn StdError + 'static)) -> Failure {
    // A TLS alert met on the HTTP/2 exchange (TLS 1.3 servers refuse a missing client
    // certificate only then) is worded as for https.
    tls::failure_after_handshake(err).unwrap_or_else(|| {
        Failure::new(
            FailureReason::Protocol,
            format!("HTTP/2 exchange failed: {err}"),
        )
    })
}
