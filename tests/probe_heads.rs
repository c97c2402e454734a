//! Response heads that real servers send and hyper's defaults refuse: more than 100 header
//! lines, a single header line of 64 KiB, heads of nearly 1 MiB, an obsolete folded line
//! (RFC 9112 §5.2), and the limits that still hold (1 MiB in all, 21,845 lines); the same
//! heads for the connection the mcp and a2a probes keep.

mod harness;

use std::time::Duration;

use agent_health_exporter::probe::{run, FailureReason, Outcome, ProbeResult};
use harness::http_agent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// Serves `head` (without the final empty line) and a 2-byte body `ok` to every connection.
async fn raw_agent(head: String) -> (Url, tokio::task::JoinHandle<()>) {
    raw_agent_with_body(head, "ok").await
}

/// Serves `head` (without the final empty line) and `body` to every connection.
async fn raw_agent_with_body(
    head: String,
    body: &'static str,
) -> (Url, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let head = head.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let length = body.len();
                let answer =
                    format!("{head}content-length: {length}\r\nconnection: close\r\n\r\n{body}");
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (Url::parse(&format!("http://{addr}/health")).unwrap(), task)
}

async fn probe(head: String) -> ProbeResult {
    let (url, task) = raw_agent(head).await;
    let spec = http_agent(url)
        .timeout(Duration::from_secs(3))
        .body_contains("ok")
        .build();
    let result = run(&spec).await;
    task.abort();
    result
}

#[tokio::test]
async fn response_with_a_thousand_header_lines_is_accepted() {
    let mut head = "HTTP/1.1 200 OK\r\n".to_owned();
    for i in 0..1000 {
        head.push_str(&format!("x-header-{i}: value {i}\r\n"));
    }
    let result = probe(head).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn obsolete_folded_header_line_is_accepted() {
    let head = "HTTP/1.1 200 OK\r\nx-folded: first part\r\n  second part\r\n\tthird\r\n".to_owned();
    let result = probe(head).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn single_header_line_of_64_kib_is_accepted() {
    let head = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n", "v".repeat(64 * 1024));
    let result = probe(head).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn head_of_900_kib_is_accepted() {
    let mut head = "HTTP/1.1 200 OK\r\n".to_owned();
    for i in 0..900 {
        head.push_str(&format!("x-header-{i:03}: {}\r\n", "v".repeat(1000)));
    }
    let result = probe(head).await;
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}

#[tokio::test]
async fn head_above_the_size_limit_fails_saying_head_too_large() {
    let head = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\n",
        "v".repeat(2 * 1024 * 1024)
    );
    let result = probe(head).await;
    let Outcome::Failed { reason, error } = &result.outcome else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(*reason, FailureReason::Protocol);
    assert!(error.contains("head too large"), "{error}");
}

#[tokio::test]
async fn many_short_lines_above_the_line_limit_also_say_head_too_large() {
    let mut head = "HTTP/1.1 200 OK\r\n".to_owned();
    for _ in 0..30_000 {
        head.push_str("a:\r\n");
    }
    let result = probe(head).await;
    let Outcome::Failed { reason, error } = &result.outcome else {
        panic!("expected a failure, got {result:?}")
    };
    assert_eq!(*reason, FailureReason::Protocol);
    assert!(error.contains("head too large"), "{error}");
    assert!(error.contains("header lines"), "{error}");
}

const CARD: &str = r#"{"name": "Heads", "description": "", "version": "1", "url": "http://x/",
"capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
"skills": []}"#;

#[tokio::test]
async fn a2a_probe_reads_the_same_heads_as_the_http_probe() {
    let mut head = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n", "v".repeat(64 * 1024));
    for i in 0..1000 {
        head.push_str(&format!("x-header-{i}: value {i}\r\n"));
    }
    head.push_str("content-type: application/json\r\n");
    let (url, task) = raw_agent_with_body(head, CARD).await;
    let yaml = format!(
        "agents:\n  - name: p\n    type: t\n    url: {url}\n    timeout: 3s\n    protocol: a2a\n"
    );
    let result = run(&harness::peers::agent(&yaml, std::path::Path::new("."))).await;
    task.abort();
    assert_eq!(result.outcome, Outcome::Healthy, "{result:?}");
}
