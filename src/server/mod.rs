//! The HTTP server: accepts connections, hands requests to `routes`, and shuts down gracefully.
//! It only reads the monitor and the metrics; probing never waits for it.

mod api;
pub mod auth;
mod deadline;
pub mod events;
mod exposition;
mod heartbeat;
mod respond;
mod routes;
pub mod scrape_cache;
mod scrape_stream;
pub mod snapshots;
pub mod tls;
mod views;
pub mod web_config;
pub mod web_watch;

pub use routes::status_page;
pub use scrape_cache::ScrapeCache;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::reload::Reloader;
use crate::scheduler::Scheduler;
use tokio::sync::watch;

/// The body of every answer.
pub type Body = BoxBody<Bytes, BodyError>;
/// What ends an answer before its end (a scrape cut off): hyper then drops the connection.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take to send its request head: a slow or idle client must not hold a
/// connection open for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted. hyper's read buffer bound alone does not enforce it (a head
/// that arrives in one large read is parsed whole), so the header size is bounded as well.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Connections served at once unless `--web.max-connections` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Scrapes answered at once unless `--web.max-requests` says otherwise, as node_exporter.
pub const DEFAULT_MAX_REQUESTS: usize = 40;
/// A response that makes no progress this long (the client reads nothing) is dropped with its
/// connection: what docs/api.md promises event-stream clients, and what bounds how long a
/// stalled scraper holds its answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body declared in Content-Length that is answered at all. No endpoint reads
/// a body; a larger one is refused with 413 before anything else happens.
pub const MAX_REQUEST_BODY_BYTES: u64 = 64 * 1024;

/// The bounds the server keeps against slow, idle, greedy or too many clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request head, and (hyper starts the same timer when a kept-alive
    /// connection goes idle) the idle keep-alive timeout. Also bounds the TLS handshake.
    pub header_read_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Scrapes of the metrics path waiting or encoding at once; beyond it, 503 at once.
    pub max_requests: usize,
    /// How long a write may make no progress before the connection is dropped.
    pub write_timeout: Duration,
}

/// The endpoints that change state, each off unless its flag turns it on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Endpoints {
    /// `--web.enable-lifecycle`: `POST /-/reload`.
    pub lifecycle: bool,
    /// `--web.enable-probe-api`: `POST /api/v1/agents/{name}/probe`.
    pub probe_api: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests: DEFAULT_MAX_REQUESTS,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}
/// In-flight answers get this long to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// What the routes read.
pub struct ServerState {
    pub monitor: Arc<Monitor>,
    pub metrics: Arc<Metrics>,
    pub reloader: Option<Arc<Reloader>>,
    /// For on-demand probes.
    pub scheduler: Option<Arc<Scheduler>>,
    pub telemetry_path: String,
    /// The rendered status page (see `routes::status_page`).
    pub status_page: Bytes,
    /// Set once the config is loaded and probing has started.
    pub ready: AtomicBool,
    /// Turns true when the server shuts down; open event streams end on it.
    pub shutdown: watch::Sender<bool>,
    /// The fleet snapshot that event streams share.
    pub snapshots: snapshots::SnapshotCache,
    /// Turns on the blocking pool for fleet-sized JSON.
    pub heavy: snapshots::HeavyWork,
    /// The encoded scrapes that `/metrics` answers share.
    pub scrapes: ScrapeCache,
    /// Which state-changing endpoints are on.
    pub endpoints: Endpoints,
    /// Passes heartbeat reports on to the exporters owning their agents (`--heartbeat.peers`).
    pub forwarder: Option<Arc<crate::forward::Forwarder>>,
}

/// Binds `address` in the exporter's notation: `:10056` means every interface.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    if let Some(port) = address.strip_prefix(':') {
        // Dual-stack where IPv6 exists, IPv4 otherwise.
        match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(listener) => return Ok(listener),
            Err(_) => return TcpListener::bind(format!("0.0.0.0:{port}")).await,
        }
    }
    TcpListener::bind(address).await
}

/// Serves until `shutdown` completes, then lets in-flight answers finish for up to
/// `SHUTDOWN_GRACE`, with the web config (TLS, basic auth, headers) kept current by `web` and
/// the given limits.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<ServerState>,
    web: Arc<web_watch::WebWatch>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let watcher_task = web.spawn(state.shutdown.subscribe());
    let mut full_logged = false;
    tokio::pin!(shutdown);
    loop {
        // A slot first, then the connection: past the bound, clients wait in the listen
        // backlog instead of costing a file descriptor and a task each.
        if slots.available_permits() == 0 && !full_logged {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new clients wait until a connection closes"
            );
        }
        full_logged = slots.available_permits() == 0;
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!(error = %e, "accepting a connection failed; retrying in 100ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = Connection {
                    state: state.clone(),
                    web: web.clone(),
                    builder: builder.clone(),
                    watcher: graceful.watcher(),
                    peer,
                    handshake_timeout: limits.header_read_timeout,
                };
                let stream = deadline::WriteDeadline::new(stream, limits.write_timeout);
                tokio::spawn(async move {
                    connection.run(stream).await;
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    // Event streams never end by themselves; without this, shutdown would wait for them.
    state.shutdown.send_replace(true);
    watcher_task.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

/// One accepted connection: TLS when the web config asks for it, then HTTP/1.1.
struct Connection {
    state: Arc<ServerState>,
    web: Arc<web_watch::WebWatch>,
    builder: Arc<http1::Builder>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
    handshake_timeout: Duration,
}

impl Connection {
    async fn run(self, stream: deadline::WriteDeadline<TcpStream>) {
        // The certificate in force when the client connects: a renewed one is used from the
        // next connection on.
        let Some(tls) = self.web.current().tls.clone() else {
            self.http(stream).await;
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.http(stream).await,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
            }
        }
    }

    async fn http<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            state,
            web,
            builder,
            watcher,
            peer,
            ..
        } = self;
        let service = service_fn(move |req| {
            let state = state.clone();
            let web = web.current();
            async move { Ok::<_, Infallible>(guarded(req, state, web, peer).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    }
}

/// What every request goes through before and after its route: the body bound, basic auth,
/// and the configured headers (on refusals too).
async fn guarded<B>(
    req: http::Request<B>,
    state: Arc<ServerState>,
    web: Arc<web_config::WebConfig>,
    peer: SocketAddr,
) -> http::Response<Body>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http::header;
    let report = heartbeat::report_of(req.uri().path()).map(|(n, r)| (n.to_owned(), r));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A heartbeat's body is read, so its connection can stay open.
    let has_body = report.is_none()
        && (declared.is_some_and(|n| n > 0)
            || req.headers().contains_key(header::TRANSFER_ENCODING));
    let mut response = if declared.is_some_and(|n| n > MAX_REQUEST_BODY_BYTES) {
        respond::text(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large; no endpoint takes a body.\n",
        )
    } else if let Some((name, report)) = report {
        // Agents report with their own token, in place of the scrapers' basic auth.
        heartbeat::handle(req, &state, &name, report).await
    } else {
        let allowed = match &web.auth {
            Some(auth) => auth.allows(req.headers().get(header::AUTHORIZATION)).await,
            None => true,
        };
        if allowed {
            routes::handle(req, state, peer).await
        } else {
            let mut refused = respond::text(http::StatusCode::UNAUTHORIZED, "Unauthorized.\n");
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"agent-health-exporter\""),
            );
            refused
        }
    };
    if has_body {
        // The body is never read: closing the connection is what keeps it from being read.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// The address the listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
