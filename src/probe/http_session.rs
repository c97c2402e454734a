//! The HTTP/1.1 connection kept for the few requests of an MCP or A2A probe. The host is
//! resolved once; a connection (TCP, then TLS) is opened when a request needs one: for the
//! first, and again after an answer that ended its connection (`Connection: close`, an
//! HTTP/1.0 answer, a body not read to its end, a server that hung up). Phases are summed over
//! requests and connections. The `http` section applies: headers, auth, TLS, max_body_bytes.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use url::{Position, Url};

use super::http1::{self, protocol_failure};
use super::net::{connect, resolve};
use super::progress::Progress;
use super::Failure;
use super::FailureReason;
use crate::config::HttpSpec;

const USER_AGENT: &str = concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION"));

/// One answer, read whole within the body limit.
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The agent's address and how to talk to it; owns what it needs, so that it can outlive the
/// probe (the MCP session's DELETE is sent after the verdict).
pub(super) struct Session {
    http: HttpSpec,
    url: Url,
    /// Resolved on the first connection, reused by the next ones.
    addrs: Vec<SocketAddr>,
    /// The idle connection, when the last answer left one open.
    idle: Option<Connection>,
}

/// A connection, polled by a task that ends with it.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An answer whose head has arrived. Its connection goes back to the session only once the
/// body was read to its end and the server keeps the connection open.
pub(super) struct Answer<'s> {
    pub head: Parts,
    body: Incoming,
    /// Polled until the answer is dropped, however it ends.
    conn: Option<Connection>,
    /// False when the head said the connection closes after this answer.
    reusable: bool,
    session: &'s mut Session,
    received: u64,
    ended: bool,
}

impl Session {
    /// A session with `url`'s host; nothing is resolved or connected before the first request.
    pub(super) fn new(http: &HttpSpec, url: &Url) -> Session {
        Session {
            http: http.clone(),
            url: url.clone(),
            addrs: Vec::new(),
            idle: None,
        }
    }

    /// Sends one request and reads its answer whole; `extra` headers go after the configured ones.
    pub(super) async fn send(
        &mut self,
        method: Method,
        url: &Url,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
        progress: &mut Progress,
    ) -> Result<Reply, Failure> {
        self.request(method, url, extra, body, progress)
            .await?
            .whole(progress)
            .await
    }

    /// Sends one request and answers once the response head has arrived; the body is read
    /// through the answer. A request that a reused connection could not take (the server
    /// closed it meanwhile) goes out once more on a new connection.
    pub(super) async fn request(
        &mut self,
        method: Method,
        url: &Url,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
        progress: &mut Progress,
    ) -> Result<Answer<'_>, Failure> {
        let mut request = self.build(method, url, extra, body)?;
        let (mut conn, mut reused) = match self.idle.take() {
            Some(idle) if !idle.sender.is_closed() => (idle, true),
            _ => (self.connect(progress).await?, false),
        };
        let response = loop {
            progress.stage = "first_byte";
            let sent = Instant::now();
            let sent_on = match conn.sender.ready().await {
                Ok(()) => conn.sender.try_send_request(request).await,
                Err(err) if reused => {
                    // Closed while idle, before anything was sent.
                    tracing::debug!(error = %err, "kept connection closed; reconnecting");
                    conn = self.connect(progress).await?;
                    reused = false;
                    continue;
                }
                Err(err) => return Err(protocol_failure(err)),
            };
            match sent_on {
                Ok(response) => {
                    progress.phases.first_byte += sent.elapsed();
                    break response;
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        conn = self.connect(progress).await?;
                        reused = false;
                    }
                    _ => return Err(protocol_failure(err.into_error())),
                },
            }
        };
        progress.http_status = Some(response.status().as_u16());
        progress.stage = "transfer";
        let (head, body) = response.into_parts();
        Ok(Answer {
            reusable: keeps_open(&head),
            head,
            body,
            conn: Some(conn),
            session: self,
            received: 0,
            ended: false,
        })
    }

    fn build(
        &self,
        method: Method,
        url: &Url,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = url[Position::BeforePath..Position::AfterQuery]
            .parse()
            .map_err(|_| Failure::new(FailureReason::Protocol, "URL path is not a valid target"))?;
        let host = HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort])
            .map_err(|_| Failure::new(FailureReason::Protocol, "URL host is not a valid Host"))?;
        let headers = request.headers_mut();
        headers.insert(header::HOST, host);
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        for (name, value) in &self.http.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(auth) = &self.http.auth {
            headers.insert(header::AUTHORIZATION, super::request::auth_header(auth)?);
        }
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// A new connection to the agent, its steps timed into the phases.
    async fn connect(&mut self, progress: &mut Progress) -> Result<Connection, Failure> {
        if self.addrs.is_empty() {
            let (host, port) = match (self.url.host_str(), self.url.port_or_known_default()) {
                (Some(host), Some(port)) => (host, port),
                _ => return Err(Failure::new(FailureReason::Dns, "URL has no host")),
            };
            progress.stage = "dns";
            self.addrs = resolve(host, port, &mut progress.phases).await?;
        }
        progress.stage = "connect";
        let tcp = connect(&self.addrs, &mut progress.phases).await?;
        let _ = tcp.set_nodelay(true);
        if self.url.scheme() == "https" {
            progress.stage = "tls";
            let tls = handshake(&self.http, &self.url, tcp, progress).await?;
            start(tls).await
        } else {
            start(tcp).await
        }
    }
}

impl Answer<'_> {
    /// The next piece of the body, None at its end; the body limit counts every piece.
    pub(super) async fn chunk(
        &mut self,
        progress: &mut Progress,
    ) -> Result<Option<Bytes>, Failure> {
        if self.ended {
            return Ok(None);
        }
        let started = Instant::now();
        let next = loop {
            match self.body.frame().await {
                None => break None,
                Some(frame) => match frame.map_err(protocol_failure)?.into_data() {
                    Ok(data) => break Some(data),
                    Err(_trailers) => continue,
                },
            }
        };
        progress.phases.transfer += started.elapsed();
        let Some(data) = next else {
            self.ended = true;
            return Ok(None);
        };
        self.received = self
            .received
            .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        let limit = self.session.http.max_body_bytes;
        if self.received > limit {
            return Err(Failure::new(
                FailureReason::BodyTooLarge,
                format!("body larger than {limit} bytes"),
            ));
        }
        Ok(Some(data))
    }

    /// The whole answer, its body read to the end.
    pub(super) async fn whole(mut self, progress: &mut Progress) -> Result<Reply, Failure> {
        let mut body = BytesMut::new();
        while let Some(data) = self.chunk(progress).await? {
            body.extend_from_slice(&data);
        }
        Ok(Reply {
            status: self.head.status,
            body: body.freeze(),
        })
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        // A body left unread would be the next answer's start: only a finished one frees it.
        if self.ended && self.reusable {
            self.session.idle = self.conn.take();
        }
    }
}

/// Whether the server keeps the connection open after this answer (RFC 9112 §9.3).
fn keeps_open(head: &Parts) -> bool {
    let says = |token: &str| {
        head.headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if says("close") {
        return false;
    }
    head.version != Version::HTTP_10 || says("keep-alive")
}

/// The HTTP/1 handshake over `io`, its connection polled by a task of its own.
async fn start<IO>(io: IO) -> Result<Connection, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::builder()
        .handshake(TokioIo::new(io))
        .await
        .map_err(protocol_failure)?;
    let task = tokio::spawn(async move { drop(conn.await) });
    Ok(Connection { sender, task })
}

async fn handshake(
    http: &HttpSpec,
    url: &Url,
    tcp: tokio::net::TcpStream,
    progress: &mut Progress,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Failure> {
    let client = http
        .tls
        .as_ref()
        .ok_or_else(|| Failure::new(FailureReason::Tls, "no TLS setup for an https:// agent"))?;
    let name = super::tls::server_name(url, http.server_name.as_deref(), true)?;
    let (stream, expiry) =
        super::tls::handshake(client.config(), name, tcp, &mut progress.phases).await;
    progress.cert_expiry = expiry;
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: Version, connection: Option<&'static str>) -> Parts {
        let mut response = http::Response::new(());
        *response.version_mut() = version;
        if let Some(value) = connection {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static(value));
        }
        response.into_parts().0
    }

    #[test]
    fn connection_close_and_plain_http_1_0_end_the_connection() {
        assert!(keeps_open(&head(Version::HTTP_11, None)));
        assert!(!keeps_open(&head(Version::HTTP_11, Some("Close"))));
        assert!(!keeps_open(&head(Version::HTTP_11, Some("upgrade, close"))));
        assert!(!keeps_open(&head(Version::HTTP_10, None)));
        assert!(keeps_open(&head(Version::HTTP_10, Some("keep-alive"))));
    }
}
