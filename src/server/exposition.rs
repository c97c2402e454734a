//! `GET /metrics`: negotiates the format, encodes off the async threads (a large fleet takes
//! milliseconds to render) and compresses when the client allows it.

use std::io::Write;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};

use super::routes::{full, text};
use super::{Body, ServerState};
use crate::metrics::Format;

/// Bodies smaller than this are sent as they are: compressing them saves nothing.
const GZIP_MIN_BYTES: usize = 1024;

pub(super) async fn metrics<B>(req: &Request<B>, state: &Arc<ServerState>) -> Response<Body> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let gzip = accepts_gzip(
        req.headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let metrics = state.metrics.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let body = metrics.encode(format)?;
        if gzip && body.len() >= GZIP_MIN_BYTES {
            // Compression into memory cannot really fail; if it did, the plain body still serves.
            if let Ok(compressed) = compress(&body) {
                return Ok::<_, crate::metrics::EncodeError>((compressed, true));
            }
        }
        Ok((body, false))
    })
    .await;
    match encoded {
        Ok(Ok((body, compressed))) => {
            let mut response = full(StatusCode::OK, format.content_type(), body);
            if compressed {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response.headers_mut().insert(
                header::VARY,
                HeaderValue::from_static("Accept, Accept-Encoding"),
            );
            response
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "encoding metrics failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"))
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics did not finish");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics did not finish\n",
            )
        }
    }
}

/// gzip level 1: about the same ratio on repetitive exposition text at a fraction of the CPU
/// of the default level.
fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
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

    #[test]
    fn gzip_is_used_only_when_allowed() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }
}
