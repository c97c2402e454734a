//! `--web.config.file`: the exporter-toolkit web config that Prometheus users already write
//! (TLS, basic auth, extra response headers), parsed and checked once per load. Every problem
//! names the file, line and column, as the main config's do; the server only ever sees a
//! complete, valid `WebConfig`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::auth::BasicAuth;
use super::tls::{self, ClientAuth, ServerTlsFiles, TlsVersion};
use crate::config::{base_dir, ConfigIssue};

/// Response headers the exporter sets itself or that belong to the protocol: a web config
/// must not override them.
const RESERVED_HEADERS: [&str; 18] = [
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "date",
    "keep-alive",
    "proxy-authenticate",
    "retry-after",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "vary",
    "www-authenticate",
    "x-accel-buffering",
];

/// A loaded web config.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for the exporter's own endpoints; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The PEM of `cert_file` as served, for the healthcheck, which trusts exactly this.
    pub tls_cert_pem: Option<Vec<u8>>,
    /// Basic auth in front of every endpoint; open when `None`.
    pub auth: Option<Arc<BasicAuth>>,
    /// Added to every answer, refused ones included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The web config file and every file it names: a change to any of them means a re-read.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes or the key.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &self.auth.as_ref().map(|a| a.users()))
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// Why a web config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {source} (fix: check the path given to --web.config.file and its permissions)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn render(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
    match lines.len() {
        1 => lines[0].clone(),
        n => format!("{n} problems in the web config:\n  {}", lines.join("\n  ")),
    }
}

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<Spanned<RawTlsServer>>,
    http_server_config: Option<Spanned<RawHttpServer>>,
    basic_auth_users: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServer {
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<String>>,
    client_auth_type: Option<Spanned<String>>,
    min_version: Option<Spanned<String>>,
    max_version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpServer {
    headers: Option<Spanned<BTreeMap<String, String>>>,
    /// Accepted for compatibility with existing files; the exporter speaks HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
}

/// Reads and checks the web config at `path`; relative file names in it start at its folder.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config = parse(&text, &path.display().to_string(), &base_dir(path))?;
    config.files.insert(0, path.to_path_buf());
    Ok(config)
}

/// Checks web config text; `file` names it in errors, `base_dir` anchors relative paths.
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<WebConfig, WebConfigError> {
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            WebConfigError::Invalid(vec![ConfigIssue::from_yaml(
                file,
                &e,
                "docs/operations.md lists every key of the web config and its type",
            )])
        })?
    };
    let mut checker = Checker {
        file: file.to_owned(),
        base_dir: base_dir.to_path_buf(),
        issues: Vec::new(),
        files: Vec::new(),
        cert_pem: None,
    };
    let config = checker.check(raw);
    if checker.issues.is_empty() {
        let mut config = config;
        config.files = checker.files;
        Ok(config)
    } else {
        Err(WebConfigError::Invalid(checker.issues))
    }
}

struct Checker {
    file: String,
    base_dir: PathBuf,
    issues: Vec<ConfigIssue>,
    files: Vec<PathBuf>,
    cert_pem: Option<Vec<u8>>,
}

impl Checker {
    fn issue(&mut self, at: Location, message: impl Into<String>, fix: impl Into<String>) {
        self.issues
            .push(ConfigIssue::at(&self.file, at, message, fix));
    }

    fn check(&mut self, raw: RawWebConfig) -> WebConfig {
        let tls = raw.tls_server_config.and_then(|t| self.tls(t));
        let auth = raw.basic_auth_users.and_then(|u| self.users(u));
        let headers = raw
            .http_server_config
            .and_then(|h| h.value.headers)
            .map(|h| self.headers(h))
            .unwrap_or_default();
        WebConfig {
            tls_cert_pem: tls.as_ref().and(self.cert_pem.take()),
            tls,
            auth,
            headers,
            files: Vec::new(),
        }
    }

    fn read(&mut self, file: &Spanned<String>, key: &str) -> Option<Vec<u8>> {
        if file.value.trim().is_empty() {
            self.issue(
                file.referenced,
                format!("{key} is empty"),
                "give the path of a PEM file",
            );
            return None;
        }
        let path = if Path::new(&file.value).is_absolute() {
            PathBuf::from(&file.value)
        } else {
            self.base_dir.join(&file.value)
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                self.files.push(path);
                Some(bytes)
            }
            Err(e) => {
                self.issue(
                    file.referenced,
                    format!("{key}: cannot read {}: {e}", path.display()),
                    "check the path (relative paths start at the web config file's folder) and its permissions",
                );
                None
            }
        }
    }

    fn tls(&mut self, raw: Spanned<RawTlsServer>) -> Option<Arc<rustls::ServerConfig>> {
        let at = raw.referenced;
        let raw = raw.value;
        let (Some(cert_file), Some(key_file)) = (&raw.cert_file, &raw.key_file) else {
            self.issue(
                at,
                "tls_server_config needs both cert_file and key_file",
                "give the server certificate (cert_file) and its private key (key_file) as PEM files",
            );
            return None;
        };
        let cert_pem = self.read(cert_file, "cert_file");
        let key_pem = self.read(key_file, "key_file");
        let client_ca_pem = match &raw.client_ca_file {
            Some(file) => Some(self.read(file, "client_ca_file")?),
            None => None,
        };
        let client_auth = match &raw.client_auth_type {
            None => ClientAuth::NoClientCert,
            Some(kind) => match ClientAuth::parse(&kind.value) {
                Some(kind) => kind,
                None => {
                    self.issue(
                        kind.referenced,
                        format!("client_auth_type {:?} is unknown", kind.value),
                        "use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                    );
                    return None;
                }
            },
        };
        if client_auth.verifies() && raw.client_ca_file.is_none() {
            let place = raw.client_auth_type.as_ref().map_or(at, |k| k.referenced);
            self.issue(
                place,
                format!(
                    "client_auth_type {} needs client_ca_file",
                    client_auth.name()
                ),
                "give the CA that signs the client certificates as client_ca_file",
            );
            return None;
        }
        if let (Some(ca), ClientAuth::NoClientCert) = (&raw.client_ca_file, client_auth) {
            self.issue(
                ca.referenced,
                "client_ca_file is given but client_auth_type asks for no client certificate",
                "set client_auth_type: RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or remove client_ca_file",
            );
            return None;
        }
        let min_version = self.version(raw.min_version.as_ref(), "min_version")?;
        let max_version = self.version(raw.max_version.as_ref(), "max_version")?;
        if let (Some(min), Some(max)) = (min_version, max_version) {
            if min > max {
                let place = raw.max_version.as_ref().map_or(at, |v| v.referenced);
                self.issue(
                    place,
                    "max_version is below min_version",
                    "give a max_version at or above min_version",
                );
                return None;
            }
        }
        let files = ServerTlsFiles {
            cert_pem: cert_pem?,
            key_pem: key_pem?,
            client_ca_pem,
            client_auth,
            min_version,
            max_version,
        };
        match tls::server_config(&files) {
            Ok(config) => {
                self.cert_pem = Some(files.cert_pem);
                Some(config)
            }
            Err(e) => {
                self.issue(at, format!("tls_server_config: {e}"), "");
                None
            }
        }
    }

    fn version(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
    ) -> Option<Option<TlsVersion>> {
        let Some(value) = value else {
            return Some(None);
        };
        match TlsVersion::parse(&value.value) {
            Some(v) => Some(Some(v)),
            None => {
                self.issue(
                    value.referenced,
                    format!("{key} {:?} is not supported", value.value),
                    "use TLS12 or TLS13 (older versions are not offered)",
                );
                None
            }
        }
    }

    fn users(&mut self, raw: Spanned<BTreeMap<String, Spanned<String>>>) -> Option<Arc<BasicAuth>> {
        let mut users = Vec::new();
        for (name, hash) in raw.value {
            if name.is_empty() || name.contains(':') {
                self.issue(
                    hash.referenced,
                    format!("user name {name:?} cannot be used in basic auth"),
                    "give a non-empty user name without ':'",
                );
                continue;
            }
            match hash.value.parse::<bcrypt::HashParts>() {
                Ok(parts) if (4..=31).contains(&parts.get_cost()) => {
                    users.push((name, hash.value));
                }
                // The hash itself is not quoted: it is a secret too.
                _ => self.issue(
                    hash.referenced,
                    format!("the password of user {name:?} is not a bcrypt hash"),
                    "give the hash that `htpasswd -nBC 10 USER` prints after the colon (it starts with $2y$, $2b$ or $2a$)",
                ),
            }
        }
        if users.is_empty() {
            return None;
        }
        Some(Arc::new(BasicAuth::new(users)))
    }

    fn headers(
        &mut self,
        raw: Spanned<BTreeMap<String, String>>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        for (name, value) in raw.value {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                self.issue(
                    raw.referenced,
                    format!("header name {name:?} is not valid"),
                    "use letters, digits and '-' in header names",
                );
                continue;
            };
            if RESERVED_HEADERS.contains(&header.as_str()) {
                self.issue(
                    raw.referenced,
                    format!("header {name} is set by the exporter itself and cannot be configured"),
                    "remove it from http_server_config.headers",
                );
                continue;
            }
            let Ok(value) = HeaderValue::from_str(&value) else {
                self.issue(
                    raw.referenced,
                    format!("the value of header {name} is not valid"),
                    "use visible ASCII in header values",
                );
                continue;
            };
            headers.push((header, value));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(yaml: &str) -> Vec<String> {
        match parse(yaml, "web.yml", Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(WebConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn empty_file_is_an_open_plain_server() {
        let config = parse("", "web.yml", Path::new(".")).expect("valid");
        assert!(config.tls.is_none() && config.auth.is_none() && config.headers.is_empty());
    }

    #[test]
    fn unknown_key_is_reported_with_file_line_and_column() {
        let found = issues("http_server_config:\n  headers: {}\n  bogus: 1\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("web.yml:3:3: "), "{found:?}");
        assert!(found[0].contains("bogus"), "{found:?}");
    }

    #[test]
    fn reserved_header_is_refused() {
        let found = issues("http_server_config:\n  headers:\n    Content-Type: foo\n");
        assert!(
            found[0].contains("Content-Type is set by the exporter"),
            "{found:?}"
        );
        assert!(found[0].starts_with("web.yml:3:"), "{found:?}");
    }

    #[test]
    fn bad_hash_and_client_auth_type_are_reported_without_the_hash() {
        let found = issues(
            "basic_auth_users:\n  alice: not-a-hash-secret\ntls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Sometimes\n",
        );
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("web.yml:2:10:") && i.contains("not a bcrypt hash")),
            "{found:?}"
        );
        assert!(
            found.iter().all(|i| !i.contains("not-a-hash-secret")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.contains("cannot read /nonexistent/c")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|i| i.starts_with("web.yml:6:")
                && i.contains("client_auth_type \"Sometimes\" is unknown")),
            "{found:?}"
        );
    }

    #[test]
    fn custom_headers_and_users_are_taken() {
        let hash = "$2y$04$W6pU9pVZ8xAnBNq7yYzPNuR3DXl6cVi.xRjC4VNQSc9XJ1zNK6Ffe";
        let config = parse(
            &format!("http_server_config:\n  headers:\n    X-Frame-Options: deny\n  http2: false\nbasic_auth_users:\n  alice: {hash}\n"),
            "web.yml",
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(config.headers[0].0.as_str(), "x-frame-options");
        assert_eq!(config.auth.expect("auth").users(), vec!["alice".to_owned()]);
    }
}
