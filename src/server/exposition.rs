//! `GET /metrics`: negotiates the format (`Accept`) and the compression (`Accept-Encoding`),
//! encodes off the async threads (a large fleet takes tens of milliseconds to render) and
//! compresses when the client allows it. The body streams out in pieces while the rest is still
//! being written.

use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};

use super::respond::text;
use super::scrape_cache::Encode;
use super::{Body, BodyError, ServerState};
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
    let encode: Encode = Box::new(move |sink| encode(&metrics, format, gzip, sink));
    let answer = match state.scrapes.get(format, gzip, encode).await {
        Ok(answer) => answer,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    };
    let body = if req.version() < Version::HTTP_11 {
        // HTTP/1.0 has no chunks: a body of unknown length would end with the connection, so
        // a cut or a failed encoding would look like a whole answer. Such a client gets the
        // whole encoding with its Content-Length, or an error status. This costs one whole
        // encoding in memory per HTTP/1.0 scrape (its pieces are taken as fast as they come,
        // so it never stalls its encoding); Prometheus speaks HTTP/1.1 and never pays it.
        match answer.collect().await {
            Ok(whole) => Full::new(whole.to_bytes())
                .map_err(|e| -> BodyError { match e {} })
                .boxed(),
            Err(e) => {
                let message = format!("the scrape could not be answered whole: {e}\n");
                return text(StatusCode::INTERNAL_SERVER_ERROR, &message);
            }
        }
    } else {
        // The pieces go out as they are written, shared with every answer of the same
        // encoding: an answer holds references, never a copy. An answer cut off mid-way fails
        // its chunked body, so a client never takes a short answer for a whole one.
        answer.map_err(|e| -> BodyError { Box::new(e) }).boxed()
    };
    let mut response = Response::new(body);
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

/// The scrape in pieces, compressed when `gzip`, each handed to `send` as soon as it is
/// written; stops when `send` says nobody wants the rest. Runs on the blocking pool.
fn encode(
    metrics: &Metrics,
    format: Format,
    gzip: bool,
    send: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<(), EncodeError> {
    let mut send = |mut piece: Vec<u8>| {
        // Kept while answers send it: no spare capacity.
        piece.shrink_to_fit();
        send(piece)
    };
    if !gzip {
        metrics.encode_until(format, &mut |piece| send(piece))?;
        return Ok(());
    }
    // gzip level 1: about the same ratio on repetitive exposition text at a fraction of the
    // CPU of the default level.
    let mut compressor = GzEncoder::new(
        Vec::with_capacity(2 * GZIP_PIECE_BYTES),
        Compression::fast(),
    );
    let whole = metrics.encode_until(format, &mut |piece| {
        // Compressing into memory cannot fail.
        let _ = compressor.write_all(&piece);
        if compressor.get_ref().len() < GZIP_PIECE_BYTES {
            return true;
        }
        let out = compressor.get_mut();
        send(std::mem::replace(
            out,
            Vec::with_capacity(2 * GZIP_PIECE_BYTES),
        ))
    })?;
    if whole {
        send(compressor.finish().map_err(EncodeError::Compress)?);
    }
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
            let mut pieces = Vec::new();
            encode(&metrics, format, gzip, &mut |p| {
                pieces.push(p);
                true
            })
            .expect("encoded");
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
