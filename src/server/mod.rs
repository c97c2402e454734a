//! The HTTP server: accepts connections, hands requests to `routes`, and shuts down gracefully.
//! It only reads the monitor and the metrics; probing never waits for it.

mod api;
mod events;
mod exposition;
mod routes;

pub use routes::status_page;
mod views;

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
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::reload::Reloader;
use crate::scheduler::Scheduler;
use tokio::sync::watch;

/// The body of every answer.
pub type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take to send its request head: a slow or idle client must not hold a
/// connection open for ever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's buffer).
const MAX_HEADER_BYTES: usize = 64 * 1024;
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
/// `SHUTDOWN_GRACE`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(routes::handle(req, state, peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    // Event streams never end by themselves; without this, shutdown would wait for them.
    state.shutdown.send_replace(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

/// The address the listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
