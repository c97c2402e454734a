//! The `http:` section: method, headers, credentials, TLS and body limit of an HTTP(S) probe,
//! first as one layer's settings, then as the agent's `HttpSpec` once its URL is known.

use serde_saphyr::{Location, Spanned};

use super::files::default_tls_client;
use super::layer::{HttpLayer, Placed};
use super::raw::RawHttp;
use super::resolve::Resolver;
use super::secret::Secret;
use super::spec::{Auth, HttpSpec};
use super::values::parse_size;

/// The body is never read past this many bytes unless `max_body_bytes` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

impl Resolver {
    pub(super) fn http_layer(&mut self, raw: Spanned<RawHttp>, what: &str) -> HttpLayer {
        let mut layer = HttpLayer::default();
        let raw = raw.value;
        if let Some(method) = &raw.method {
            match http::Method::from_bytes(method.value.trim().to_ascii_uppercase().as_bytes()) {
                Ok(m) => layer.method = Some(m),
                Err(_) => self.issue(
                    method.referenced,
                    format!("{what}: {:?} is not an HTTP method", method.value),
                    "use GET, HEAD or POST",
                ),
            }
        }
        if let Some(headers) = &raw.headers {
            for (name, value) in &headers.value {
                match (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                ) {
                    (Ok(n), Ok(v)) => {
                        layer.headers.insert(n.as_str().to_owned(), (n, v));
                    }
                    _ => self.issue(
                        headers.referenced,
                        format!("{what}: header {name:?} has an invalid name or value"),
                        "use a token as header name and visible ASCII as its value",
                    ),
                }
            }
        }
        if let Some(file) = &raw.bearer_token_file {
            if let Some(token) = self.read_secret(file, "bearer_token_file") {
                layer.auth = Some(Placed::new(Auth::Bearer(token), file.referenced));
            }
        }
        if let Some(basic) = &raw.basic_auth {
            if raw.bearer_token_file.is_some() {
                self.issue(
                    basic.referenced,
                    format!("{what}: more than one way to authenticate is configured"),
                    "keep one of bearer_token_file, basic_auth or credentials in the URL",
                );
            }
            let password = match &basic.value.password_file {
                Some(file) => self.read_secret(file, "password_file"),
                None => Some(Secret::new(String::new())),
            };
            if let Some(password) = password {
                let auth = Auth::Basic {
                    username: basic.value.username.value.clone(),
                    password,
                };
                layer.auth = Some(Placed::new(auth, basic.referenced));
            }
        }
        layer.follow_redirects = raw.follow_redirects;
        if let Some(size) = &raw.max_body_bytes {
            match parse_size(&size.value) {
                Some(bytes) if bytes > 0 => layer.max_body_bytes = Some(bytes),
                _ => self.issue(
                    size.referenced,
                    format!("{what}: max_body_bytes is not a positive size"),
                    "write a number of bytes or a size such as 64KiB or 1MiB",
                ),
            }
        }
        if let Some(tls) = &raw.tls {
            layer.tls = self.tls_layer(tls);
        }
        layer
    }

    /// The agent's HTTP options from its merged layers and the credentials of its URL.
    pub(super) fn http_spec(
        &mut self,
        layer: HttpLayer,
        url_auth: Option<(Auth, Location)>,
        is_https: bool,
        what: &str,
    ) -> Option<HttpSpec> {
        let mut ok = true;
        let auth = match (url_auth, layer.auth) {
            (Some((_, url_at)), Some(other)) => {
                ok = false;
                let key = match other.value {
                    Auth::Bearer(_) => "bearer_token_file",
                    Auth::Basic { .. } => "basic_auth",
                };
                self.issue(
                    url_at,
                    format!(
                        "{what}: the url has credentials and `{key}` (line {}) is set too",
                        other.at.line()
                    ),
                    format!("keep one: remove the user and password from the url, or `{key}`"),
                );
                None
            }
            (Some((auth, _)), None) => Some(auth),
            (None, other) => other.map(|p| p.value),
        };
        let (tls, server_name) = match (layer.tls, is_https) {
            (Some(tls), true) => (Some(tls.value.client), tls.value.server_name),
            (Some(tls), false) => {
                ok = false;
                self.issue(
                    tls.at,
                    format!("{what}: `tls` applies only to https:// URLs"),
                    "remove `tls` or change the URL to https://",
                );
                (None, None)
            }
            (None, true) => match default_tls_client() {
                Ok(client) => (Some(client), None),
                Err(e) => {
                    ok = false;
                    self.issue(
                        Location::UNKNOWN,
                        format!("cannot set up TLS: {e}"),
                        "report this as a bug",
                    );
                    (None, None)
                }
            },
            (None, false) => (None, None),
        };
        let spec = HttpSpec {
            method: layer.method.unwrap_or(http::Method::GET),
            headers: layer.headers.into_values().collect(),
            auth,
            tls,
            server_name,
            follow_redirects: layer.follow_redirects.unwrap_or(true),
            max_body_bytes: layer.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        };
        ok.then_some(spec)
    }
}
