//! One HTTP/1.1 connection kept for the few requests of an MCP or A2A probe: resolve, connect
//! and TLS once, then each request's first_byte and transfer summed into the phases. The
//! `http` section applies: headers, auth, TLS, max_body_bytes; heads are read as by the HTTP
//! probe (`http1`).

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use url::{Position, Url};

use super::http1::{self, protocol_failure};
use super::net::{connect, resolve};
use super::progress::Progress;
use super::Failure;
use super::FailureReason;
use crate::config::AgentSpec;

const USER_AGENT: &str = concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION"));

/// One answer, read whole within the body limit.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The connection, polled by a task that ends with the session.
pub(super) struct Session {
    sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
    host: HeaderValue,
    limit: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Session {
    pub(super) async fn open(
        spec: &AgentSpec,
        url: &Url,
        progress: &mut Progress,
    ) -> Result<Session, Failure> {
        let (host, port) = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => (host, port),
            _ => return Err(Failure::new(FailureReason::Dns, "URL has no host")),
        };
        progress.stage = "dns";
        let addrs = resolve(host, port, &mut progress.phases).await?;
        progress.stage = "connect";
        let tcp = connect(&addrs, &mut progress.phases).await?;
        let _ = tcp.set_nodelay(true);
        let host_header = HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort])
            .map_err(|_| Failure::new(FailureReason::Protocol, "URL host is not a valid Host"))?;
        let (sender, conn) = if url.scheme() == "https" {
            progress.stage = "tls";
            let tls = handshake(spec, url, tcp, progress).await?;
            let (sender, conn) = http1::builder()
                .handshake(TokioIo::new(tls))
                .await
                .map_err(protocol_failure)?;
            (sender, tokio::spawn(async move { drop(conn.await) }))
        } else {
            let (sender, conn) = http1::builder()
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(protocol_failure)?;
            (sender, tokio::spawn(async move { drop(conn.await) }))
        };
        Ok(Session {
            sender,
            conn,
            host: host_header,
            limit: spec.http.max_body_bytes,
        })
    }

    /// Sends one request and reads its answer whole; `extra` headers go after the configured ones.
    pub(super) async fn send(
        &mut self,
        spec: &AgentSpec,
        method: Method,
        url: &Url,
        extra: &[(header::HeaderName, HeaderValue)],
        body: Bytes,
        progress: &mut Progress,
    ) -> Result<Reply, Failure> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = url[Position::BeforePath..Position::AfterQuery]
            .parse()
            .map_err(|_| Failure::new(FailureReason::Protocol, "URL path is not a valid target"))?;
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        for (name, value) in &spec.http.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(auth) = &spec.http.auth {
            headers.insert(header::AUTHORIZATION, super::request::auth_header(auth)?);
        }
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        progress.stage = "first_byte";
        let sent = Instant::now();
        self.sender.ready().await.map_err(protocol_failure)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(protocol_failure)?;
        progress.phases.first_byte += sent.elapsed();
        progress.http_status = Some(response.status().as_u16());
        progress.stage = "transfer";
        let started = Instant::now();
        let (head, body) = response.into_parts();
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let read = Limited::new(body, limit).collect().await;
        progress.phases.transfer += started.elapsed();
        let body = read
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Failure::new(
                        FailureReason::BodyTooLarge,
                        format!("body larger than {} bytes", self.limit),
                    )
                } else {
                    Failure::new(FailureReason::Protocol, format!("reading the body: {e}"))
                }
            })?
            .to_bytes();
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
}

async fn handshake(
    spec: &AgentSpec,
    url: &Url,
    tcp: tokio::net::TcpStream,
    progress: &mut Progress,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Failure> {
    let client =
        spec.http.tls.as_ref().ok_or_else(|| {
            Failure::new(FailureReason::Tls, "no TLS setup for an https:// agent")
        })?;
    let name = super::tls::server_name(url, spec.http.server_name.as_deref(), true)?;
    let (stream, expiry) =
        super::tls::handshake(client.config(), name, tcp, &mut progress.phases).await;
    progress.cert_expiry = expiry;
    stream
}
