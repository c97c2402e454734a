//! The exporter's own server against abusive clients: slow heads, huge heads, idle kept-alive
//! connections, huge bodies and too many connections. Each test fails when its bound is removed.

mod harness;

use std::time::{Duration, Instant};

use agent_health_exporter::server::Limits;
use harness::http::read_until_closed;
use harness::{parse_answer, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The exporter on loopback with an empty fleet and these server limits.
async fn serve(limits: Limits) -> Served {
    Served::start_with(
        "agents: []
",
        |_, options| {
            options.limits = limits;
            // One test posts to /-/reload.
            options.endpoints.lifecycle = true;
        },
    )
    .await
}

fn limits(header_read_timeout: Duration, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout,
        max_connections,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_sent_one_byte_at_a_time_is_cut_at_the_header_read_timeout() {
    let served = serve(limits(Duration::from_millis(600), 16)).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let start = Instant::now();
    let head =
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await
        {
            // Either an error answer or the end of the connection: the server gave up.
            let _ = n;
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the server never gave up on a slow head");
    assert!(
        closed_after < Duration::from_millis(1500),
        "cut after {closed_after:?}, the timeout is 600ms"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_above_64_kib_is_refused() {
    let served = serve(Limits::default()).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let big = "a".repeat(100 * 1024);
    let request = format!("GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let (raw, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed,
        "the connection must be closed: {:?}",
        String::from_utf8_lossy(&raw)
    );
    if let Ok(answer) = parse_answer(&raw) {
        assert_eq!(answer.status, 431, "{}", answer.text());
    }
    // Within the limit, the same request is served.
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let fine = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    stream.write_all(fine.as_bytes()).await.unwrap();
    let (raw, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(parse_answer(&raw).unwrap().status, 200);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_kept_alive_connection_is_closed_after_the_timeout() {
    let served = serve(limits(Duration::from_millis(700), 16)).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let answer = parse_answer(&buf[..n]).unwrap();
    assert_eq!(answer.status, 200);
    assert_ne!(answer.header("connection"), Some("close"), "kept alive");
    let idle_from = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let idle = idle_from.elapsed();
    assert!(closed, "an idle kept-alive connection must be closed");
    assert!(
        idle >= Duration::from_millis(500) && idle < Duration::from_millis(2000),
        "closed after {idle:?} idle, the timeout is 700ms"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_gigabyte_request_body_is_refused_without_being_read() {
    let served = serve(Limits::default()).await;
    for (framing, expected) in [
        ("Content-Length: 10737418240", 413),
        ("Transfer-Encoding: chunked", 200),
    ] {
        let stream = TcpStream::connect(served.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!("POST /-/reload HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
        writer.write_all(head.as_bytes()).await.unwrap();
        // Push body bytes until the server stops taking them, or 256 MiB.
        let pusher = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent: u64 = 0;
            let chunked = framing.starts_with("Transfer");
            while sent < 256 * 1024 * 1024 {
                let write = if chunked {
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    writer.write_all(&framed).await
                } else {
                    writer.write_all(&chunk).await
                };
                match tokio::time::timeout(Duration::from_secs(2), async { write }).await {
                    Ok(Ok(())) => sent += chunk.len() as u64,
                    _ => break,
                }
            }
            sent
        });
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut raw)).await;
        let answer = parse_answer(&raw).expect("an answer");
        assert_eq!(answer.status, expected, "{framing}: {}", answer.text());
        assert_eq!(answer.header("connection"), Some("close"), "{framing}");
        drop(reader);
        let sent = tokio::time::timeout(Duration::from_secs(20), pusher)
            .await
            .expect("the server stopped taking the body")
            .unwrap();
        assert!(
            sent < 64 * 1024 * 1024,
            "{framing}: the server took {sent} bytes of a body it never needs"
        );
    }
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let served = serve(limits(Duration::from_secs(20), 3)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(served.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut waiting = TcpStream::connect(served.addr).await.unwrap();
    waiting
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (raw, _) = read_until_closed(&mut waiting, Duration::from_millis(800)).await;
    assert!(
        raw.is_empty(),
        "a fourth connection must wait while three are open: {}",
        String::from_utf8_lossy(&raw)
    );
    drop(idle.pop());
    let (raw, closed) = read_until_closed(&mut waiting, Duration::from_secs(3)).await;
    assert!(closed, "answered once a slot freed");
    assert_eq!(parse_answer(&raw).unwrap().status, 200);
    served.shutdown().await;
}

/// The `# TYPE` lines of a text exposition: which families it holds.
fn families(body: &str) -> Vec<&str> {
    body.lines().filter(|l| l.starts_with("# TYPE ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_scrape_gets_the_whole_encoding_with_its_content_length() {
    let served = serve(Limits::default()).await;
    // HTTP/1.0 has no chunked bodies: without a Content-Length the answer would end with the
    // connection, and a cut answer would look whole.
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "an HTTP/1.0 answer ends with its connection");
    let old = parse_answer(&raw).expect("an answer");
    assert_eq!(old.status, 200, "{}", old.text());
    let length: usize = old
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length on an HTTP/1.0 scrape: {:?}", old.headers))
        .parse()
        .expect("a number");
    assert_eq!(
        length,
        old.body.len(),
        "Content-Length is the body's length"
    );
    // The same families as an HTTP/1.1 scrape, so nothing was left off.
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (raw, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let new = parse_answer(&raw).expect("an answer");
    assert_eq!(new.status, 200);
    let (old_text, new_text) = (old.text(), new.text());
    assert!(!families(&new_text).is_empty(), "{new_text}");
    assert_eq!(families(&old_text), families(&new_text));
    served.shutdown().await;
}
