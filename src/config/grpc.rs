//! The `grpc:` section of a `grpc://` or `grpcs://` agent: which health service to ask, with
//! which metadata, authority and TLS setup, and whether to keep a Watch stream open. Resolved
//! here into `GrpcTarget` (and the TLS setup into the agent's `HttpSpec`), read by probe/grpc.rs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::layer::{HttpLayer, Placed, TlsLayer};
use super::raw::RawTls;
use super::resolve::Resolver;
use super::secret::Secret;
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
/// https, so that both protocols share one TLS setup path; the probe offers h2 in ALPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTarget {
    pub host: String,
    pub port: u16,
    /// `grpcs://`: TLS with ALPN h2.
    pub secure: bool,
    /// The `service` field of the HealthCheckRequest; empty asks about the whole server.
    pub service: String,
    /// Sent with every call, in key order.
    pub metadata: Vec<(http::HeaderName, Metadata)>,
    /// `:authority` instead of `host:port`.
    pub authority: Option<String>,
    /// Keep a Health/Watch stream open between probes.
    pub watch: bool,
}

/// One metadata value: written in the config, or read from a file as a swappable secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    Plain(http::HeaderValue),
    Secret(Secret),
}

impl Metadata {
    /// The value to send; a secret's is marked sensitive so that it is never logged. None when
    /// a rotated secret no longer fits in a header.
    pub fn value(&self) -> Option<http::HeaderValue> {
        match self {
            Metadata::Plain(v) => Some(v.clone()),
            Metadata::Secret(s) => http::HeaderValue::from_str(&s.expose()).ok().map(|mut v| {
                v.set_sensitive(true);
                v
            }),
        }
    }
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

    /// Takes the secret metadata values of `newer`, a target equal to this one; true when any
    /// changed.
    pub(super) fn adopt_secrets(&self, newer: &GrpcTarget) -> bool {
        let mut changed = false;
        for ((_, old), (_, new)) in self.metadata.iter().zip(&newer.metadata) {
            if let (Metadata::Secret(old), Metadata::Secret(new)) = (old, new) {
                changed |= old.adopt(new);
            }
        }
        changed
    }
}

/// `grpc:` of one layer (defaults, a check, an agent), validated; keys merge one by one and
/// metadata entry by entry.
#[derive(Debug, Clone, Default)]
pub(super) struct GrpcLayer {
    pub service: Option<String>,
    pub metadata: BTreeMap<String, (http::HeaderName, Metadata)>,
    pub authority: Option<String>,
    pub watch: Option<bool>,
    pub tls: Option<Placed<TlsLayer>>,
}

impl GrpcLayer {
    pub(super) fn over(self, lower: &GrpcLayer) -> GrpcLayer {
        let mut metadata = lower.metadata.clone();
        metadata.extend(self.metadata);
        GrpcLayer {
            service: self.service.or_else(|| lower.service.clone()),
            metadata,
            authority: self.authority.or_else(|| lower.authority.clone()),
            watch: self.watch.or(lower.watch),
            tls: self.tls.or_else(|| lower.tls.clone()),
        }
    }
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

impl Resolver {
    /// Validates one layer's `grpc:`; a key with a problem is reported and left unset.
    pub(super) fn grpc_layer(&mut self, raw: RawGrpc, what: &str) -> GrpcLayer {
        let mut layer = GrpcLayer {
            service: raw.service.map(|s| s.value),
            watch: raw.watch,
            ..GrpcLayer::default()
        };
        if let Some(metadata) = &raw.metadata {
            for (key, value) in &metadata.value {
                let parsed = http::HeaderValue::from_str(value).ok().map(Metadata::Plain);
                self.metadata_entry(&mut layer, key, parsed, metadata.referenced, what);
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
                let Some(secret) = self.read_secret(&spanned, &key_name) else {
                    continue;
                };
                let parsed = http::HeaderValue::from_str(&secret.expose())
                    .is_ok()
                    .then_some(Metadata::Secret(secret));
                self.metadata_entry(&mut layer, key, parsed, files.referenced, what);
            }
        }
        if let Some(authority) = raw.authority {
            if http::uri::Authority::try_from(authority.value.as_str()).is_err() {
                self.issue(
                    authority.referenced,
                    format!(
                        "{what}: authority {:?} is not a valid authority",
                        authority.value
                    ),
                    "write it as host or host:port",
                );
            } else {
                layer.authority = Some(authority.value);
            }
        }
        if let Some(tls) = &raw.tls {
            layer.tls = self.tls_layer(tls);
        }
        layer
    }

    /// Applies the merged `grpc:` to a grpc target; answers the target and the `http` layer
    /// that carries its TLS setup, or None (with an issue) when `tls` is set on plain grpc://.
    pub(super) fn grpc_target(
        &mut self,
        bare: &GrpcTarget,
        layer: GrpcLayer,
        what: &str,
    ) -> Option<(Target, HttpLayer)> {
        let mut grpc = bare.clone();
        grpc.service = layer.service.unwrap_or_default();
        grpc.metadata = layer.metadata.into_values().collect();
        grpc.authority = layer.authority;
        grpc.watch = layer.watch.unwrap_or(false);
        if let (Some(tls), false) = (&layer.tls, grpc.secure) {
            self.issue(
                tls.at,
                format!("{what}: `grpc.tls` applies only to grpcs:// URLs"),
                "remove `tls` or change the URL to grpcs://",
            );
            return None;
        }
        let http = HttpLayer {
            tls: layer.tls,
            ..HttpLayer::default()
        };
        Some((Target::Grpc(Arc::new(grpc)), http))
    }

    /// Adds one metadata entry; false (with an issue) when its key or value cannot be sent.
    fn metadata_entry(
        &mut self,
        grpc: &mut GrpcLayer,
        key: &str,
        value: Option<Metadata>,
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
                if grpc.metadata.contains_key(name.as_str()) {
                    self.issue(
                        at,
                        format!("{what}: metadata key {key:?} is given twice"),
                        "keep it in either `metadata` or `metadata_files`",
                    );
                    return false;
                }
                grpc.metadata
                    .insert(name.as_str().to_owned(), (name, value));
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
    fn grpcs_gets_a_tls_setup() {
        let config = parse(
            &agent("grpcs://127.0.0.1:443", ""),
            "t.yaml",
            Path::new("."),
        )
        .unwrap();
        assert!(config.agents[0].spec.http.tls.is_some());
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
