//! The config file exactly as written: the serde schema, with source locations kept so that
//! validation (in `resolve.rs`) can point at the offending line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Settings every agent inherits unless it sets its own.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Named checks: how agents of a type (or that name one by `check:`) are probed.
    #[serde(default)]
    pub checks: BTreeMap<String, Spanned<RawCheck>>,
    /// The fleet.
    #[serde(default)]
    pub agents: Vec<Spanned<RawAgent>>,
    /// Sources of further agents (`discovery.rs`).
    #[serde(default)]
    pub discovery: Vec<Spanned<super::discovery::RawSource>>,
}

/// `defaults:`; every key optional.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<u32>>,
    pub success_threshold: Option<Spanned<u32>>,
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
    /// The cadence of every agent's canary (`canary.rs`); the task itself belongs in a check
    /// or an agent.
    pub canary: Option<Spanned<super::canary::RawCanaryCadence>>,
}

/// Defines a struct with the given keys followed by every key of a check, so that a check
/// and an agent (which may set any key of a check) share one list. A new protocol's section is
/// one more line here.
macro_rules! with_check_keys {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub interval: Option<Spanned<String>>,
            pub timeout: Option<Spanned<String>>,
            pub failure_threshold: Option<Spanned<u32>>,
            pub success_threshold: Option<Spanned<u32>>,
            pub protocol: Option<Spanned<String>>,
            pub labels: Option<Spanned<BTreeMap<String, String>>>,
            pub http: Option<Spanned<RawHttp>>,
            pub expect: Option<Spanned<RawExpect>>,
            pub degraded: Option<Spanned<RawDegraded>>,
            pub heartbeat: Option<Spanned<super::heartbeat::RawHeartbeat>>,
            pub grpc: Option<Spanned<super::grpc::RawGrpc>>,
            pub mcp: Option<Spanned<super::mcp::RawMcp>>,
            pub a2a: Option<Spanned<super::a2a::RawA2a>>,
            pub canary: Option<Spanned<super::canary::RawCanary>>,
        }

        impl $name {
            /// Moves the check keys out, leaving the others.
            #[allow(dead_code)]
            fn take_check_keys(&mut self) -> RawCheck {
                RawCheck {
                    interval: self.interval.take(),
                    timeout: self.timeout.take(),
                    failure_threshold: self.failure_threshold.take(),
                    success_threshold: self.success_threshold.take(),
                    protocol: self.protocol.take(),
                    labels: self.labels.take(),
                    http: self.http.take(),
                    expect: self.expect.take(),
                    degraded: self.degraded.take(),
                    heartbeat: self.heartbeat.take(),
                    grpc: self.grpc.take(),
                    mcp: self.mcp.take(),
                    a2a: self.a2a.take(),
                    canary: self.canary.take(),
                }
            }
        }
    };
}

with_check_keys! {
    /// One entry of `checks:`: everything about how an agent is probed.
    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct RawCheck {}
}

impl From<RawDefaults> for RawCheck {
    fn from(raw: RawDefaults) -> Self {
        RawCheck {
            interval: raw.interval,
            timeout: raw.timeout,
            failure_threshold: raw.failure_threshold,
            success_threshold: raw.success_threshold,
            labels: raw.labels,
            canary: raw.canary.map(|c| Spanned {
                value: c.value.into(),
                referenced: c.referenced,
                defined: c.defined,
            }),
            ..RawCheck::default()
        }
    }
}

with_check_keys! {
    /// One entry of `agents:`: who the agent is, which check it uses, and any key of a check,
    /// which then overrides the check's. Required keys are optional here so that a missing one
    /// is reported with the agent's location and a fix instead of a bare serde message.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawAgent {
        pub name: Option<Spanned<String>>,
        #[serde(rename = "type")]
        pub agent_type: Option<Spanned<String>>,
        pub url: Option<Spanned<String>>,
        pub check: Option<Spanned<String>>,
    }
}

/// Who an agent is, apart from how it is probed.
pub struct RawHead {
    pub name: Option<Spanned<String>>,
    pub agent_type: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub check: Option<Spanned<String>>,
}

impl RawAgent {
    /// Separates who the agent is from its own check keys.
    pub fn split(mut self) -> (RawHead, RawCheck) {
        let own = self.take_check_keys();
        let head = RawHead {
            name: self.name,
            agent_type: self.agent_type,
            url: self.url,
            check: self.check,
        };
        (head, own)
    }
}

/// `http:` of one agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub method: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub tls: Option<Spanned<RawTls>>,
    pub follow_redirects: Option<bool>,
    pub max_body_bytes: Option<Spanned<RawSize>>,
}

/// `basic_auth:`; the password only ever comes from a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: Spanned<String>,
    pub password_file: Option<Spanned<String>>,
}

/// `tls:`; file paths are relative to the config file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A byte size: a plain number of bytes or a string such as `1MiB`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// An expected status: `200` or `"2xx"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawStatus {
    Code(u64),
    Text(String),
}

/// One status or a list of them.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `expect:`; all conditions must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub status: Option<Spanned<OneOrMany<RawStatus>>>,
    pub body_contains: Option<Spanned<String>>,
    pub body_regex: Option<Spanned<String>>,
    pub json: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
}

/// `degraded:`; any condition suffices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDegraded {
    pub latency_above: Option<Spanned<String>>,
    pub json: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
}
