//! The `grpc:` section of a `grpc://` or `grpcs://` agent: which health service to ask, with
//! which metadata, authority and TLS setup, and whether to keep a Watch stream open. Resolved
//! here into `GrpcTarget` (and the TLS setup into the agent's `HttpSpec`), read by probe/grpc.rs.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::raw::RawTls;
use super::resolve::Resolver;
use super::spec::Target;

/// `grpc:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    pub service: Option<Spanned<String>>,
    pub metadata: Option<Spanned<BTreeMap<String, String>>>,
    /// Metadata whose values are secrets: key → file holding the value, read like
    /// `bearer_token_file` (trailing newline dropped, never printed).
    pub metadata_files: Option<Spanned<BTreeMap<String, String>>>,
    pub tls: Option<Spanned<RawTls>>,
    pub authority: Option<Spanned<String>>,
    pub watch: Option<bool>,
}

/// A gRPC health target, resolved. TLS (for `grpcs://`) lives in the agent's `HttpSpec`, as for
/// https, so that both protocols share one TLS setup path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrpcTarget {
    pub host: String,
    pub port: u16,
    /// `grpcs://`: TLS with ALPN h2.
    pub secure: bool,
    /// The `service` field of the HealthCheckRequest; empty asks about the whole server.
    pub service: String,
    /// Sent with every call, in key order; values read from files are marked sensitive.
    pub metadata: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `:authority` instead of `host:port`.
    pub authority: Option<String>,
    /// Keep a Health/Watch stream open between probes.
    pub watch: bool,
}

impl GrpcTarget {
    pub fn display(&self) -> String {
        let scheme = if self.secure { "grpcs" } else { "grpc" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The parts of a `grpc:` section that end up outside `GrpcTarget`.
pub(super) struct GrpcTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: Option<String>,
}

/// The target of a `grpc://host:port` URL before its section is applied.
pub(super) fn bare_target(url: &url::Url) -> Option<Target> {
    let host = url.host_str().unwrap_or_default();
    let path_ok = url.path().is_empty() || url.path() == "/";
    match (host.is_empty(), url.port(), path_ok, url.query()) {
        (false, Some(port), true, None) => Some(Target::Grpc(Arc::new(GrpcTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            secure: url.scheme() == "grpcs",
            service: String::new(),
            metadata: Vec::new(),
            authority: None,
            watch: false,
        }))),
        _ => None,
    }
}

/// gRPC speaks HTTP/2 only; over TLS it is chosen by ALPN, which servers such as grpcio require.
fn with_h2_alpn(config: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

impl Resolver {
    /// Applies `grpc:` to a grpc target; rejects it on any other. Answers the TLS setup of a
    /// `grpcs://` target, or None (with an issue) when something is wrong.
    pub(super) fn grpc_section(
        &mut self,
        target: Target,
        raw: Option<Spanned<RawGrpc>>,
        what: &str,
        fingerprint: &mut DefaultHasher,
    ) -> Option<(Target, Option<GrpcTls>)> {
        let Target::Grpc(bare) = target else {
            if let Some(raw) = raw {
                self.issue(
                    raw.referenced,
                    format!("{what}: `grpc` applies only to grpc:// and grpcs:// agents"),
                    "remove `grpc` or use a grpc://host:port URL",
                );
                return None;
            }
            return Some((target, None));
        };
        let mut grpc = (*bare).clone();
        let mut ok = true;
        let mut tls_raw = None;
        if let Some(raw) = raw {
            let raw = raw.value;
            if let Some(service) = raw.service {
                grpc.service = service.value;
            }
            if let Some(metadata) = &raw.metadata {
                for (key, value) in &metadata.value {
                    let parsed = http::HeaderValue::from_str(value).ok();
                    ok &= self.metadata_entry(&mut grpc, key, parsed, metadata.referenced, what);
                }
            }
            if let Some(files) = &raw.metadata_files {
                for (key, file) in &files.value {
                    let spanned = Spanned {
                        value: file.clone(),
                        referenced: files.referenced,
                        defined: files.defined,
                    };
                    let key_name = format!("metadata_files.{key}");
                    let Some(secret) = self.read_secret(&spanned, &key_name, fingerprint) else {
                        ok = false;
                        continue;
                    };
                    let parsed = http::HeaderValue::from_str(secret.expose())
                        .ok()
                        .map(|mut v| {
                            v.set_sensitive(true);
                            v
                        });
                    ok &= self.metadata_entry(&mut grpc, key, parsed, files.referenced, what);
                }
            }
            if let Some(authority) = raw.authority {
                if http::uri::Authority::try_from(authority.value.as_str()).is_err() {
                    ok = false;
                    self.issue(
                        authority.referenced,
                        format!(
                            "{what}: authority {:?} is not a valid authority",
                            authority.value
                        ),
                        "write it as host or host:port",
                    );
                }
                grpc.authority = Some(authority.value);
            }
            grpc.watch = raw.watch.unwrap_or(false);
            tls_raw = raw.tls;
        }
        grpc.metadata.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        grpc.hash(fingerprint);
        let tls = match (tls_raw, grpc.secure) {
            (Some(tls), true) => {
                let server_name = tls.value.server_name.as_ref().map(|s| s.value.clone());
                match self.tls(&tls, fingerprint) {
                    Some(config) => Some(GrpcTls {
                        config: with_h2_alpn(&config),
                        server_name,
                    }),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            (Some(tls), false) => {
                ok = false;
                self.issue(
                    tls.referenced,
                    format!("{what}: `grpc.tls` applies only to grpcs:// URLs"),
                    "remove `tls` or change the URL to grpcs://",
                );
                None
            }
            (None, true) => self.shared_default_tls().map(|config| GrpcTls {
                config: with_h2_alpn(&config),
                server_name: None,
            }),
            (None, false) => None,
        };
        ok.then(|| (Target::Grpc(Arc::new(grpc)), tls))
    }

    /// Adds one metadata entry; false (with an issue) when its key or value cannot be sent.
    fn metadata_entry(
        &mut self,
        grpc: &mut GrpcTarget,
        key: &str,
        value: Option<http::HeaderValue>,
        at: Location,
        what: &str,
    ) -> bool {
        let lower = key.to_ascii_lowercase();
        let name = http::HeaderName::from_bytes(lower.as_bytes()).ok();
        // `grpc-*` keys belong to the protocol, and binary (`-bin`) values would need base64.
        let reserved = lower.starts_with("grpc-")
            || lower.ends_with("-bin")
            || matches!(lower.as_str(), "te" | "content-type" | "user-agent");
        match (name, value, reserved) {
            (Some(name), Some(value), false) => {
                if grpc.metadata.iter().any(|(n, _)| *n == name) {
                    self.issue(
                        at,
                        format!("{what}: metadata key {key:?} is given twice"),
                        "keep it in either `metadata` or `metadata_files`",
                    );
                    return false;
                }
                grpc.metadata.push((name, value));
                true
            }
            (_, _, true) => {
                self.issue(
                    at,
                    format!("{what}: metadata key {key:?} is reserved or binary"),
                    "use an ASCII key that does not start with grpc- nor end with -bin",
                );
                false
            }
            _ => {
                self.issue(
                    at,
                    format!("{what}: metadata {key:?} has an invalid key or value"),
                    "use a lowercase token as key and visible ASCII as value",
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, Target};

    fn issues(yaml: &str) -> String {
        match parse(yaml, "t.yaml", Path::new("/nonexistent")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn agent(url: &str, extra: &str) -> String {
        format!("agents:\n  - name: g\n    type: t\n    url: {url}\n{extra}")
    }

    #[test]
    fn grpc_section_resolves_with_sorted_sensitive_free_metadata() {
        let yaml = agent(
            "grpc://[::1]:50051",
            "    grpc: {service: pkg.Svc, metadata: {x-b: two, X-A: one}, authority: svc.internal, watch: true}\n",
        );
        let config = parse(&yaml, "t.yaml", Path::new(".")).unwrap();
        let Target::Grpc(grpc) = &config.agents[0].spec.target else {
            panic!("not a grpc target");
        };
        assert_eq!(grpc.host, "::1");
        assert_eq!(grpc.display(), "grpc://[::1]:50051");
        assert_eq!(grpc.service, "pkg.Svc");
        let keys: Vec<_> = grpc.metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["x-a", "x-b"]);
        assert_eq!(grpc.authority.as_deref(), Some("svc.internal"));
        assert!(grpc.watch);
        assert!(config.agents[0].spec.http.tls.is_none());
    }

    #[test]
    fn grpcs_gets_a_tls_setup_that_offers_h2() {
        let config = parse(
            &agent("grpcs://127.0.0.1:443", ""),
            "t.yaml",
            Path::new("."),
        )
        .unwrap();
        let tls = config.agents[0].spec.http.tls.clone().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"h2".to_vec()]);
    }

    #[test]
    fn misplaced_or_invalid_grpc_keys_are_reported() {
        let on_http = issues(&agent("http://127.0.0.1/", "    grpc: {service: x}\n"));
        assert!(
            on_http.contains("`grpc` applies only to grpc://"),
            "{on_http}"
        );
        let path = issues(&agent("grpc://127.0.0.1:1/health", ""));
        assert!(
            path.contains("needs a host and a port and nothing else"),
            "{path}"
        );
        let reserved = issues(&agent(
            "grpc://127.0.0.1:1",
            "    grpc: {metadata: {grpc-timeout: 1S}}\n",
        ));
        assert!(reserved.contains("reserved or binary"), "{reserved}");
        let tls = issues(&agent(
            "grpc://127.0.0.1:1",
            "    grpc: {tls: {insecure_skip_verify: true}}\n",
        ));
        assert!(tls.contains("applies only to grpcs://"), "{tls}");
        let file = issues(&agent(
            "grpc://127.0.0.1:1",
            "    grpc: {metadata_files: {authorization: tok}}\n",
        ));
        assert!(
            file.contains("metadata_files.authorization: cannot read"),
            "{file}"
        );
        let http = issues(&agent("grpc://127.0.0.1:1", "    http: {method: GET}\n"));
        assert!(http.contains("`http` applies only to http://"), "{http}");
    }
}
