//! `GET /metrics`: negotiates the format (`Accept`) and the compression (`Accept-Encoding`),
//! encodes off the async threads (a large fleet takes tens of milliseconds to render) and
//! compresses when the client allows it. The body streams out in pieces while the rest is still
//! being written.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::stream;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::respond::text;
use super::{Body, ServerState};
use crate::metrics::{EncodeError, Format, Metrics};

/// Compressed output goes out in pieces of about this size.
const GZIP_PIECE_BYTES: usize = 64 * 1024;

pub(super) async fn metrics<B>(req: &Request<B>, state: &Arc<ServerState>) -> Response<Body> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = negotiate(accept);
    let gzip = accepts_gzip(
        req.headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let metrics = state.metrics.clone();
    // Unbounded on purpose: the encoder runs on the blocking pool and must never wait for a
    // scraper. A client that reads slowly, or not at all, then holds its whole scrape in
    // memory, as a buffered body would; a bounded queue would instead hold a pool thread
    // hostage, and enough such clients would stall every other scrape.
    let (pieces, mut received) = mpsc::unbounded_channel::<Bytes>();
    let encoder = tokio::task::spawn_blocking(move || encode(&metrics, format, gzip, &pieces));
    // Encoding can only fail before its first piece, so the status is known once that comes.
    let Some(first) = received.recv().await else {
        let why = match encoder.await {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => "encoding metrics produced nothing".to_owned(),
            Err(e) => format!("encoding metrics did not finish: {e}"),
        };
        tracing::error!(error = %why, "encoding metrics failed");
        return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{why}\n"));
    };
    let body = StreamBody::new(stream::unfold(
        (Some(first), received),
        |(first, mut received)| async move {
            let piece = match first {
                Some(piece) => piece,
                None => received.recv().await?,
            };
            Some((Ok::<_, Infallible>(Frame::data(piece)), (None, received)))
        },
    ));
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type(format)) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// Writes the scrape into `pieces`, compressed when `gzip`, without ever waiting for the
/// reader. A scraper that went away closes the channel; the rest of its scrape is then written
/// and dropped, which costs one encoding.
fn encode(
    metrics: &Metrics,
    format: Format,
    gzip: bool,
    pieces: &mpsc::UnboundedSender<Bytes>,
) -> Result<(), EncodeError> {
    let send = |piece: Vec<u8>| {
        if !piece.is_empty() {
            let _ = pieces.send(Bytes::from(piece));
        }
    };
    if !gzip {
        return metrics.encode_chunks(format, &mut |piece| send(piece));
    }
    // gzip level 1: about the same ratio on repetitive exposition text at a fraction of the
    // CPU of the default level.
    let mut compressor = GzEncoder::new(
        Vec::with_capacity(2 * GZIP_PIECE_BYTES),
        Compression::fast(),
    );
    metrics.encode_chunks(format, &mut |piece| {
        // Compressing into memory cannot fail.
        let _ = compressor.write_all(&piece);
        if compressor.get_ref().len() >= GZIP_PIECE_BYTES {
            let out = compressor.get_mut();
            send(std::mem::replace(
                out,
                Vec::with_capacity(2 * GZIP_PIECE_BYTES),
            ));
        }
    })?;
    send(compressor.finish().map_err(EncodeError::Compress)?);
    Ok(())
}

/// Picks the format from an `Accept` header the way Prometheus asks for them.
fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best = (Format::Text, -1.0f32);
    for part in accept.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or_default().to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut proto_ok = true;
        for param in fields {
            if let Some(v) = param.strip_prefix("q=") {
                q = v.parse().unwrap_or(0.0);
            } else if let Some(v) = param.strip_prefix("proto=") {
                proto_ok = v == "io.prometheus.client.MetricFamily";
            }
        }
        let format = match media.as_str() {
            "application/vnd.google.protobuf" if proto_ok => Format::Protobuf,
            "application/openmetrics-text" => Format::OpenMetrics,
            "text/plain" | "*/*" | "text/*" => Format::Text,
            _ => continue,
        };
        if q > best.1 {
            best = (format, q);
        }
    }
    best.0
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        Format::Protobuf => {
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        }
    }
}

/// True when `Accept-Encoding` lists gzip (or `*`) with a non-zero quality.
fn accepts_gzip(header: Option<&str>) -> bool {
    let Some(header) = header else { return false };
    header.split(',').any(|part| {
        let mut fields = part.split(';').map(str::trim);
        let coding = fields.next().unwrap_or_default();
        let q_zero = fields.any(|f| {
            f.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scraper that never reads must not keep the encoder (a blocking-pool thread) waiting.
    #[test]
    fn encoding_finishes_while_the_scraper_reads_nothing() {
        let yaml: String = std::iter::once("agents:\n".to_owned())
            .chain(
                (0..3000)
                    .map(|i| format!("  - {{name: a{i}, type: t, url: 'tcp://127.0.0.1:1'}}\n")),
            )
            .collect();
        let config =
            crate::config::parse(&yaml, "t.yaml", std::path::Path::new(".")).expect("valid config");
        let monitor = Arc::new(crate::monitor::Monitor::new(10));
        for agent in &config.agents {
            monitor.insert(agent);
        }
        let metrics = Arc::new(Metrics::new(
            monitor,
            Arc::new(crate::metrics::ExporterMetrics::default()),
            crate::metrics::BuildInfo {
                version: "1",
                revision: "r",
                rustc: "1",
            },
        ));
        for (format, gzip) in [
            (Format::Text, false),
            (Format::Protobuf, false),
            (Format::Text, true),
        ] {
            let (pieces, received) = mpsc::unbounded_channel::<Bytes>();
            let (done, finished) = std::sync::mpsc::channel();
            let m = metrics.clone();
            std::thread::spawn(move || {
                let _ = done.send(encode(&m, format, gzip, &pieces).is_ok());
            });
            let ok = finished
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("the encoder finished without anybody reading");
            assert!(ok);
            // Nothing was read, so every piece is still queued: more than a few of them.
            assert!(
                received.len() > 4,
                "{format:?} gzip={gzip}: {} pieces",
                received.len()
            );
        }
    }

    #[test]
    fn gzip_is_used_only_when_allowed() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn prometheus_protobuf_accept_header_selects_protobuf() {
        let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(negotiate(Some(accept)), Format::Protobuf);
    }

    #[test]
    fn openmetrics_accept_header_selects_openmetrics() {
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(negotiate(Some(accept)), Format::OpenMetrics);
    }

    #[test]
    fn missing_or_unknown_accept_header_selects_text() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("application/json")), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
    }
}
