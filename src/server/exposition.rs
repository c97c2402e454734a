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
    let encoded = match state
        .scrapes
        .get(format, gzip, move || encode(&metrics, format, gzip))
        .await
    {
        Ok(encoded) => encoded,
        Err(e) if e.is_refusal() => {
            return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"));
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"));
        }
    };
    // The pieces go out one by one from the shared encoding: an answer holds a reference,
    // never a copy.
    let pieces = encoded.pieces.len();
    let body =
        StreamBody::new(stream::iter((0..pieces).map(move |i| {
            Ok::<_, Infallible>(Frame::data(encoded.pieces[i].clone()))
        })));
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

/// The scrape in pieces, compressed when `gzip`; runs on the blocking pool.
fn encode(metrics: &Metrics, format: Format, gzip: bool) -> Result<Vec<Bytes>, EncodeError> {
    let mut pieces = Vec::new();
    let mut send = |mut piece: Vec<u8>| {
        if !piece.is_empty() {
            // Kept while answers send it: no spare capacity.
            piece.shrink_to_fit();
            pieces.push(Bytes::from(piece));
        }
    };
    if !gzip {
        metrics.encode_chunks(format, &mut |piece| send(piece))?;
        return Ok(pieces);
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
    Ok(pieces)
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

    /// Every format, compressed or not, comes out in several pieces that join to the whole.
    #[test]
    fn encoding_comes_out_in_pieces_that_join_to_the_whole() {
        let yaml: String = std::iter::once("agents:\n".to_owned())
            .chain(
                (0..5000)
                    .map(|i| format!("  - {{name: a{i}, type: t, url: 'tcp://127.0.0.1:1'}}\n")),
            )
            .collect();
        let config =
            crate::config::parse(&yaml, "t.yaml", std::path::Path::new(".")).expect("valid config");
        let monitor = Arc::new(crate::monitor::Monitor::new(10));
        for agent in &config.agents {
            monitor.insert(agent);
        }
        let metrics = Metrics::new(
            monitor,
            Arc::new(crate::metrics::ExporterMetrics::default()),
            crate::metrics::BuildInfo {
                version: "1",
                revision: "r",
                rustc: "1",
            },
        );
        for (format, gzip) in [
            (Format::Text, false),
            (Format::Protobuf, false),
            (Format::Text, true),
        ] {
            let pieces = encode(&metrics, format, gzip).expect("encoded");
            assert!(
                pieces.len() > 4,
                "{format:?} gzip={gzip}: {} pieces",
                pieces.len()
            );
            if format == Format::Text && !gzip {
                let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
                let whole = metrics.encode(format).expect("whole");
                // Process metrics change between the two encodings; the fleet does not.
                let fleet = |b: &[u8]| {
                    String::from_utf8_lossy(b)
                        .lines()
                        .filter(|l| l.starts_with("agent_probe_interval_seconds{"))
                        .count()
                };
                assert_eq!(fleet(&joined), fleet(&whole));
                assert_eq!(fleet(&joined), 5000);
            }
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
