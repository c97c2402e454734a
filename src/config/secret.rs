//! The parts of a spec that change without changing what is probed: secret values and the TLS
//! client key pair. Each lives in a shared cell, so a reload that finds an agent otherwise equal
//! swaps the new value in (`AgentSpec::adopt_secrets`) and the agent keeps its state and series.
//! Their equality compares where a value comes from and whom it names, never the value itself.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, PoisonError, RwLock};

use regex::Regex;
use rustls::ClientConfig;

use super::spec::{AgentSpec, Auth, HttpSpec};

/// A secret value (a token, a password). Its `Debug` and `Display` never show it; clones share
/// one cell, so a rotated value reaches every probe of the agent at once.
#[derive(Clone)]
pub struct Secret {
    /// Where the value comes from (a file's path, or the URL): what equality compares.
    origin: Arc<str>,
    value: Arc<RwLock<Arc<str>>>,
}

impl Secret {
    /// A secret given in place (credentials in the URL, tests).
    pub fn new(value: String) -> Self {
        Secret::from_origin("inline", value)
    }

    /// A secret read from `origin` (a file's path).
    pub fn from_origin(origin: &str, value: String) -> Self {
        Secret {
            origin: Arc::from(origin),
            value: Arc::new(RwLock::new(Arc::from(value))),
        }
    }

    /// The file the value was read from; None for one given in place (URL credentials).
    /// Showing it is safe: it names the secret, it is not the secret.
    pub fn file(&self) -> Option<&str> {
        // A file's origin is "<key> <path>" (`files.rs`); others are one word.
        self.origin.split_once(' ').map(|(_, path)| path)
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> String {
        self.current().to_string()
    }

    /// The value, shared and not copied: what a check against a presented secret reads (the
    /// heartbeat paths, at thousands of reports a second).
    pub fn shared(&self) -> Arc<str> {
        self.current()
    }

    fn current(&self) -> Arc<str> {
        self.value
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes `newer`'s value when it differs; true when it did.
    pub(super) fn adopt(&self, newer: &Secret) -> bool {
        let value = newer.current();
        let mut current = self.value.write().unwrap_or_else(PoisonError::into_inner);
        if **current == *value {
            return false;
        }
        *current = value;
        true
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret from {}>", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// What a TLS client setup trusts and whom it presents itself as: its equality.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsIdentity {
    /// The `ca_file` contents: changing the trust changes how the agent is probed.
    pub ca_pem: Option<Vec<u8>>,
    /// Subject and issuer of the client certificate: a renewed certificate of the same
    /// identity (new key, new validity) is a rotation, not a new agent.
    pub client_certificate: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

/// The TLS client setup of an https agent, swappable in place when its key pair rotates.
#[derive(Clone)]
pub struct TlsClient {
    identity: Arc<TlsIdentity>,
    current: Arc<RwLock<KeyPair>>,
}

/// The built configuration and a digest of the key pair files that built it.
struct KeyPair {
    config: Arc<ClientConfig>,
    material: Vec<u8>,
}

impl TlsClient {
    /// `material` is a digest of the cert and key file contents: what tells a rotation.
    pub fn new(identity: TlsIdentity, config: Arc<ClientConfig>, material: Vec<u8>) -> Self {
        TlsClient {
            identity: Arc::new(identity),
            current: Arc::new(RwLock::new(KeyPair { config, material })),
        }
    }

    /// What the setup trusts and presents, without its key.
    pub fn identity(&self) -> &TlsIdentity {
        &self.identity
    }

    /// The configuration to connect with now.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .clone()
    }

    fn adopt(&self, newer: &TlsClient) -> bool {
        if Arc::ptr_eq(&self.current, &newer.current) {
            return false;
        }
        let (config, material) = {
            let newer = newer.current.read().unwrap_or_else(PoisonError::into_inner);
            (newer.config.clone(), newer.material.clone())
        };
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.material == material {
            return false;
        }
        *current = KeyPair { config, material };
        true
    }
}

impl From<Arc<ClientConfig>> for TlsClient {
    /// A client built outside config loading (tests): it compares equal to any client of the
    /// default identity.
    fn from(config: Arc<ClientConfig>) -> Self {
        TlsClient::new(TlsIdentity::default(), config, Vec::new())
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("custom_ca", &self.identity.ca_pem.is_some())
            .field(
                "client_certificate",
                &self.identity.client_certificate.is_some(),
            )
            .field("insecure_skip_verify", &self.identity.insecure_skip_verify)
            .finish()
    }
}

/// A compiled regular expression that compares by its source text.
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl Deref for Pattern {
    type Target = Regex;
    fn deref(&self) -> &Regex {
        &self.0
    }
}

impl From<Regex> for Pattern {
    fn from(regex: Regex) -> Self {
        Pattern(regex)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl AgentSpec {
    /// Takes the secret values and TLS key pair of `newer`, a spec equal to this one, into
    /// this one's cells; true when any of them changed. A reload calls it on the running agent
    /// so that a rotated token or certificate is used from the next probe on, state kept.
    pub fn adopt_secrets(&self, newer: &AgentSpec) -> bool {
        let http = self.http.adopt_secrets(&newer.http);
        let heartbeat = match (self.target.heartbeat(), newer.target.heartbeat()) {
            (Some(old), Some(new)) => old.token.adopt(&new.token),
            _ => false,
        };
        let grpc = match (&self.target, &newer.target) {
            (super::spec::Target::Grpc(old), super::spec::Target::Grpc(new)) => {
                old.adopt_secrets(new)
            }
            _ => false,
        };
        http | heartbeat | grpc
    }
}

impl HttpSpec {
    /// Takes the secret values and TLS key pair of `newer`, options equal to these, into these
    /// options' cells; true when any of them changed. Also what a kept HTTP SD source uses.
    pub fn adopt_secrets(&self, newer: &HttpSpec) -> bool {
        let auth = match (&self.auth, &newer.auth) {
            (Some(Auth::Bearer(old)), Some(Auth::Bearer(new))) => old.adopt(new),
            (Some(Auth::Basic { password: old, .. }), Some(Auth::Basic { password: new, .. })) => {
                old.adopt(new)
            }
            _ => false,
        };
        let tls = match (&self.tls, &newer.tls) {
            (Some(old), Some(new)) => old.adopt(new),
            _ => false,
        };
        auth | tls
    }
}
