//! The one HTTP client of the tests: a request on a fresh connection with `Connection: close`,
//! read to the end and parsed into an `Answer`. Blocking (`request`, `get`) for tests that drive
//! the built binary from plain threads, async (`fetch`, `exchange`) inside Tokio, and
//! `EventStream` for the Server-Sent-Events endpoint. Written by hand on purpose: the tests
//! send exactly the bytes they mean to, malformed ones included, with no client in between.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// How long a client waits for a whole answer before giving up.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// De-chunked when the answer was chunked.
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of a request head: `Host`, `Connection: close`, the given headers, and
/// `Content-Length: 0` for a POST (the exporter's POSTs carry no body).
pub fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// One request on a fresh connection, blocking.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(ANSWER_WITHIN))?;
    stream.write_all(&request_head(addr, method, path, headers))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_answer(&raw)
}

/// A GET on a fresh connection, blocking.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    request(addr, "GET", path, &[])
}

/// One request on a fresh connection, inside Tokio.
pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    exchange(stream, &request_head(addr, method, path, headers)).await
}

/// Sends `request` on an open stream (plain or TLS) and reads the answer to the end.
pub async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    request: &[u8],
) -> std::io::Result<Answer> {
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(ANSWER_WITHIN, stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no whole answer within 10 s"))??;
    parse_answer(&raw)
}

/// Parses a whole HTTP/1.x answer as read from the wire.
pub fn parse_answer(raw: &[u8]) -> std::io::Result<Answer> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        let stop = (start + size).min(data.len());
        out.extend_from_slice(&data[start..stop]);
        data = &data[(stop + 2).min(data.len())..];
    }
}

/// A client that sends `request` and then reads nothing until the test reads from the stream
/// it returns. The kernel buffers a few MB for it (both ends together) before the server's
/// writes block.
pub async fn never_reading(addr: SocketAddr, request: &[u8]) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    stream
}

/// Reads whatever `stream` has until the peer closes it or `limit` passes; the bytes read and
/// whether it was closed (an end of stream or a reset).
pub async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (raw, true),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => return (raw, false),
        }
    }
}

/// A client of the event stream (Server-Sent Events), over HTTP/1.0 so the stream is not
/// chunked.
pub struct EventStream {
    reader: BufReader<tokio::net::TcpStream>,
}

/// One event of the stream.
#[derive(Debug)]
pub struct Event {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

impl EventStream {
    /// Connects to `path` and reads the head; panics unless it is a 200 `text/event-stream`.
    pub async fn connect(addr: SocketAddr, path: &str) -> EventStream {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        assert!(line.contains(" 200 "), "{line}");
        let mut content_type = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("header");
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type:") {
                content_type = line.clone();
            }
        }
        assert!(content_type.contains("text/event-stream"), "{content_type}");
        EventStream { reader }
    }

    /// The next event (comments and `retry:` skipped), or None after `limit` or at the end.
    pub async fn next(&mut self, limit: Duration) -> Option<Event> {
        tokio::time::timeout(limit, async {
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            let mut line = String::new();
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if !event.is_empty() {
                        let data = serde_json::from_str(&data).expect("event data is JSON");
                        return Some(Event { id, event, data });
                    }
                    continue;
                }
                if let Some(v) = l.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = l.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = l.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// True when the server ends the stream within `limit` (whatever events come first).
    pub async fn ends(&mut self, limit: Duration) -> bool {
        let mut sink = Vec::new();
        matches!(
            tokio::time::timeout(limit, self.reader.read_to_end(&mut sink)).await,
            Ok(Ok(_))
        )
    }

    /// Skips events until one named `name` arrives.
    pub async fn until(&mut self, name: &str, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let event = self.next(left).await?;
            if event.event == name {
                return Some(event);
            }
        }
        None
    }
}
