//! The HTTP/1 client side that every HTTP-based probe (http, mcp, a2a) shares: hyper's
//! connection builder with our response head limits, and the failure an exchange error
//! becomes. One place, so that the probes read the same heads and say the same things.

use std::error::Error as StdError;

use hyper::client::conn::http1::Builder;

use super::{tls, Failure, FailureReason};

/// Largest response head (status line and header lines) read, as a total: what real servers
/// send (a 64 KiB header line, hundreds of lines) fits, as it does for curl and Go's client;
/// a head that never ends is still cut off within each probe.
pub(super) const MAX_HEAD_BYTES: usize = 1024 * 1024;
/// Header lines read at most: as many three-byte lines (`a:` and a line feed) as 64 KiB holds.
/// hyper sets aside room for this many lines on every response it parses (a debug build
/// spends 5 ms a probe on room for 32,768), so it stays far below the 349,525 that 1 MiB
/// could hold, and far above what servers send (Node.js stops at 2,000, Python at 100).
pub(super) const MAX_HEAD_LINES: usize = 64 * 1024 / 3;

/// A connection builder that reads heads up to `MAX_HEAD_BYTES` and `MAX_HEAD_LINES`.
pub(super) fn builder() -> Builder {
    let mut builder = Builder::new();
    builder
        .max_headers(MAX_HEAD_LINES)
        .max_header_size(MAX_HEAD_BYTES)
        // hyper's read buffer (about 400 KiB by default) must hold a whole head.
        .max_buf_size(MAX_HEAD_BYTES)
        // RFC 9112 5.2: a client replaces an obsolete line fold with a space; hyper does.
        .allow_obsolete_multiline_headers_in_responses(true);
    builder
}

/// A malformed, reset or cut-short exchange. hyper's errors name what went wrong and their
/// sources say why (e.g. the OS error); neither quotes header values. A TLS error underneath
/// (an alert after the handshake, e.g. a client certificate required) is a TLS failure.
pub(super) fn protocol_failure(err: hyper::Error) -> Failure {
    if let Some(failure) = tls::failure_after_handshake(&err) {
        return failure;
    }
    if err.is_parse_too_large() {
        return Failure::new(
            FailureReason::Protocol,
            format!(
                "malformed response: head too large (above {MAX_HEAD_BYTES} bytes \
                 or {MAX_HEAD_LINES} header lines)"
            ),
        );
    }
    let mut error = if err.is_parse() {
        format!("malformed response: {err}")
    } else {
        err.to_string()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        error.push_str(": ");
        error.push_str(&cause.to_string());
        source = cause.source();
    }
    Failure::new(FailureReason::Protocol, error)
}
