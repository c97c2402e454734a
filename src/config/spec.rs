//! The resolved, validated form of the config: what the scheduler and the probes consume.
//! Built once by `config::load`; nothing downstream re-checks a value. Equality is derived:
//! two specs are equal when they probe the same way under the same labels, which is what a
//! reload compares (secret values are left out of it: see `secret.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::secret::{Pattern, Secret, TlsClient};

/// One agent, with every default resolved and every file read.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// Unique name; the `agent` label.
    pub name: String,
    /// The `agent_type` label.
    pub agent_type: String,
    /// What to probe.
    pub target: Target,
    /// Time between two slots.
    pub interval: Duration,
    /// Upper bound of one probe, always below `interval`.
    pub timeout: Duration,
    /// Consecutive failures before `unhealthy`.
    pub failure_threshold: u32,
    /// Consecutive successes before `healthy` again.
    pub success_threshold: u32,
    /// Extra labels, sorted by name, defaults merged under the agent's own.
    pub labels: Vec<(String, String)>,
    /// HTTP options; ignored for `tcp://` targets.
    pub http: HttpSpec,
    /// Conditions that must all hold for success (HTTP only).
    pub expect: ExpectSpec,
    /// Conditions under which a successful probe is `degraded`.
    pub degraded: DegradedSpec,
    /// The agent's canary task, run on a cadence of its own (`config/canary.rs`).
    pub canary: Option<Arc<super::canary::CanarySpec>>,
}

/// Where an agent is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://` or `https://`: the full URL. Credentials in the URL were moved into `HttpSpec`.
    Http(url::Url),
    /// `tcp://host:port`.
    Tcp { host: String, port: u16 },
    /// Never probed: the agent reports in (`config/heartbeat.rs`).
    Heartbeat(super::heartbeat::HeartbeatSpec),
    /// `grpc://host:port` or `grpcs://host:port` with its `grpc:` section.
    Grpc(Arc<super::grpc::GrpcTarget>),
    /// An http(s) URL with `protocol: mcp`.
    Mcp(Arc<super::mcp::McpTarget>),
    /// An http(s) URL with `protocol: a2a`.
    A2a(Arc<super::a2a::A2aTarget>),
}

impl Target {
    /// The target as shown to people: the URL without credentials.
    pub fn display(&self) -> String {
        match self {
            Target::Http(url) => url.as_str().to_owned(),
            Target::Tcp { host, port } => format!("tcp://{host}:{port}"),
            Target::Heartbeat(_) => "heartbeat".to_owned(),
            Target::Grpc(grpc) => grpc.display(),
            Target::Mcp(mcp) => mcp.url.as_str().to_owned(),
            Target::A2a(a2a) => a2a.url.as_str().to_owned(),
        }
    }

    /// The heartbeat settings of an agent that reports in.
    pub fn heartbeat(&self) -> Option<&super::heartbeat::HeartbeatSpec> {
        match self {
            Target::Heartbeat(hb) => Some(hb),
            _ => None,
        }
    }
}

/// How the probe authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// HTTP request options.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub method: http::Method,
    /// Extra request headers, in config order.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub auth: Option<Auth>,
    /// The TLS client setup for `https://` targets (None for plain HTTP and TCP).
    pub tls: Option<TlsClient>,
    /// SNI and certificate name to use instead of the URL's host.
    pub server_name: Option<String>,
    pub follow_redirects: bool,
    /// The body is never read past this many bytes.
    pub max_body_bytes: u64,
}

/// Redirect hops followed at most.
pub const MAX_REDIRECTS: usize = 10;

/// One acceptable status: an exact code or a class such as `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    /// The hundreds digit: 2 for `2xx`.
    Class(u16),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match *self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusMatch::Code(c) => write!(f, "{c}"),
            StatusMatch::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// A JSON Pointer (RFC 6901) and the value expected there.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonMatch {
    pub pointer: String,
    pub value: serde_json::Value,
}

/// Conditions for success; all must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectSpec {
    /// Empty means "2xx".
    pub status: Vec<StatusMatch>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Pattern>,
    pub json: Vec<JsonMatch>,
}

impl ExpectSpec {
    /// True when the body must be read to decide.
    pub fn needs_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some() || !self.json.is_empty()
    }
}

/// Conditions under which a successful probe counts as `degraded`; any one suffices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DegradedSpec {
    pub latency_above: Option<Duration>,
    pub json: Vec<JsonMatch>,
}
