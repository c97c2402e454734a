//! One layer of settings (`defaults`, a check, an agent's own keys), each value already
//! validated, and how layers stack: the upper layer's keys replace the lower's, and maps of
//! named entries (`labels`, `http.headers`, `expect.json`, `degraded.json`) merge key by key;
//! `canary` merges its cadence key by key and takes its task whole (`canary.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_saphyr::Location;

use super::raw::RawCheck;
use super::resolve::Resolver;
use super::secret::{Pattern, TlsClient};
use super::spec::{Auth, StatusMatch};

/// A value and where it was written, for checks that span several keys.
#[derive(Debug, Clone)]
pub(super) struct Placed<T> {
    pub value: T,
    pub at: Location,
}

impl<T> Placed<T> {
    pub fn new(value: T, at: Location) -> Self {
        Placed { value, at }
    }
}

/// How an http(s) agent is spoken to (TCP and gRPC are chosen by the URL's scheme); a new
/// protocol is a new variant, its name in `Protocol::parse` and its section in a file of its
/// own (`mcp.rs`, `a2a.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Http,
    /// A streamable-HTTP MCP endpoint (`mcp.rs`).
    Mcp,
    /// An A2A agent's card (`a2a.rs`).
    A2a,
}

impl Protocol {
    /// The accepted values of `protocol:`, for error messages.
    pub const NAMES: &'static str = "http, mcp, a2a";

    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "http" => Some(Protocol::Http),
            "mcp" => Some(Protocol::Mcp),
            "a2a" => Some(Protocol::A2a),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Mcp => "mcp",
            Protocol::A2a => "a2a",
        }
    }
}

/// Settings from one layer; `None` and empty maps mean "not set here".
#[derive(Debug, Clone, Default)]
pub(super) struct Layer {
    pub interval: Option<Placed<Duration>>,
    pub timeout: Option<Placed<Duration>>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
    pub protocol: Option<Placed<Protocol>>,
    pub labels: BTreeMap<String, String>,
    pub http: HttpLayer,
    pub expect: ExpectLayer,
    pub degraded: DegradedLayer,
    /// `heartbeat:`, for agents that report in instead of being probed.
    pub heartbeat: Option<Placed<super::heartbeat::HeartbeatLayer>>,
    /// `grpc:`, for grpc(s):// agents (`grpc.rs`).
    pub grpc: super::grpc::GrpcLayer,
    /// `mcp.expect_tools` and `a2a.expect_skills` (`mcp.rs`, `a2a.rs`).
    pub expect_tools: Option<Vec<String>>,
    pub expect_skills: Option<Vec<String>>,
    /// `canary:` (`canary.rs`).
    pub canary: super::canary::CanaryLayer,
    /// Where protocol sections were written, to report them on a target that cannot use them.
    pub sections: Vec<(&'static str, Location)>,
}

/// `http:`; `basic_auth` and `bearer_token_file` are one setting (how to authenticate), and
/// `tls` is one setting: each replaces the lower layer's as a whole.
#[derive(Debug, Clone, Default)]
pub(super) struct HttpLayer {
    pub method: Option<http::Method>,
    /// By lower-cased name, so that `X-Key` in a check and `x-key` in an agent are one header.
    pub headers: BTreeMap<String, (http::HeaderName, http::HeaderValue)>,
    pub auth: Option<Placed<Auth>>,
    pub tls: Option<Placed<TlsLayer>>,
    pub follow_redirects: Option<bool>,
    pub max_body_bytes: Option<u64>,
}

/// `http.tls`, with its files read and the client built.
#[derive(Debug, Clone)]
pub(super) struct TlsLayer {
    pub client: TlsClient,
    pub server_name: Option<String>,
}

/// `expect:`.
#[derive(Debug, Clone, Default)]
pub(super) struct ExpectLayer {
    pub status: Option<Vec<StatusMatch>>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Pattern>,
    pub json: BTreeMap<String, serde_json::Value>,
}

/// `degraded:`.
#[derive(Debug, Clone, Default)]
pub(super) struct DegradedLayer {
    pub latency_above: Option<Duration>,
    pub json: BTreeMap<String, serde_json::Value>,
}

/// The upper map's entries over the lower's.
fn merged<K: Ord + Clone, V: Clone>(
    upper: BTreeMap<K, V>,
    lower: &BTreeMap<K, V>,
) -> BTreeMap<K, V> {
    let mut out = lower.clone();
    out.extend(upper);
    out
}

impl Layer {
    /// This layer over `lower`: every key set here wins, maps merge key by key.
    pub fn over(self, lower: &Layer) -> Layer {
        let mut sections = lower.sections.clone();
        sections.extend(self.sections);
        Layer {
            interval: self.interval.or_else(|| lower.interval.clone()),
            timeout: self.timeout.or_else(|| lower.timeout.clone()),
            failure_threshold: self.failure_threshold.or(lower.failure_threshold),
            success_threshold: self.success_threshold.or(lower.success_threshold),
            protocol: self.protocol.or_else(|| lower.protocol.clone()),
            labels: merged(self.labels, &lower.labels),
            http: self.http.over(&lower.http),
            expect: self.expect.over(&lower.expect),
            degraded: self.degraded.over(&lower.degraded),
            heartbeat: match (self.heartbeat, &lower.heartbeat) {
                (Some(upper), Some(lower)) => {
                    Some(Placed::new(upper.value.over(&lower.value), upper.at))
                }
                (upper, lower) => upper.or_else(|| lower.clone()),
            },
            grpc: self.grpc.over(&lower.grpc),
            expect_tools: self.expect_tools.or_else(|| lower.expect_tools.clone()),
            expect_skills: self.expect_skills.or_else(|| lower.expect_skills.clone()),
            canary: self.canary.over(&lower.canary),
            sections,
        }
    }
}

impl HttpLayer {
    fn over(self, lower: &HttpLayer) -> HttpLayer {
        HttpLayer {
            method: self.method.or_else(|| lower.method.clone()),
            headers: merged(self.headers, &lower.headers),
            auth: self.auth.or_else(|| lower.auth.clone()),
            tls: self.tls.or_else(|| lower.tls.clone()),
            follow_redirects: self.follow_redirects.or(lower.follow_redirects),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
        }
    }
}

impl ExpectLayer {
    fn over(self, lower: &ExpectLayer) -> ExpectLayer {
        ExpectLayer {
            status: self.status.or_else(|| lower.status.clone()),
            body_contains: self.body_contains.or_else(|| lower.body_contains.clone()),
            body_regex: self.body_regex.or_else(|| lower.body_regex.clone()),
            json: merged(self.json, &lower.json),
        }
    }
}

impl DegradedLayer {
    fn over(self, lower: &DegradedLayer) -> DegradedLayer {
        DegradedLayer {
            latency_above: self.latency_above.or(lower.latency_above),
            json: merged(self.json, &lower.json),
        }
    }
}

impl Resolver {
    /// Validates one layer; `what` names it in messages ("agent \"a\"", "check \"planner\"").
    /// A key with a problem is reported and left unset.
    pub(super) fn layer(&mut self, raw: RawCheck, what: &str) -> Layer {
        let mut layer = Layer {
            interval: self.bounded_duration(raw.interval.as_ref(), what, "interval"),
            timeout: self.bounded_duration(raw.timeout.as_ref(), what, "timeout"),
            failure_threshold: self.threshold(raw.failure_threshold.as_ref(), "failure_threshold"),
            success_threshold: self.threshold(raw.success_threshold.as_ref(), "success_threshold"),
            ..Layer::default()
        };
        if let Some(protocol) = &raw.protocol {
            match Protocol::parse(protocol.value.trim()) {
                Some(p) => layer.protocol = Some(Placed::new(p, protocol.referenced)),
                None => self.issue(
                    protocol.referenced,
                    format!("{what}: unknown protocol {:?}", protocol.value),
                    format!("use one of: {}", Protocol::NAMES),
                ),
            }
        }
        if let Some(labels) = &raw.labels {
            self.check_labels(labels);
            layer.labels = labels.value.clone();
        }
        if let Some(http) = raw.http {
            layer.sections.push(("http", http.referenced));
            layer.http = self.http_layer(http, what);
        }
        if let Some(expect) = raw.expect {
            layer.sections.push(("expect", expect.referenced));
            layer.expect = self.expect_layer(expect.value);
        }
        if let Some(degraded) = raw.degraded {
            layer.sections.push(("degraded", degraded.referenced));
            if let Some(json) = &degraded.value.json {
                layer.sections.push(("degraded.json", json.referenced));
            }
            layer.degraded = self.degraded_layer(degraded.value);
        }
        if let Some(heartbeat) = raw.heartbeat {
            layer.heartbeat = Some(self.heartbeat_layer(heartbeat, what));
        }
        if let Some(grpc) = raw.grpc {
            layer.sections.push(("grpc", grpc.referenced));
            layer.grpc = self.grpc_layer(grpc.value, what);
        }
        if let Some(mcp) = raw.mcp {
            layer.sections.push(("mcp", mcp.referenced));
            layer.expect_tools = mcp.value.expect_tools.map(|t| t.value);
        }
        if let Some(a2a) = raw.a2a {
            layer.sections.push(("a2a", a2a.referenced));
            layer.expect_skills = a2a.value.expect_skills.map(|s| s.value);
        }
        if let Some(canary) = raw.canary {
            layer.canary = self.canary_layer(canary, what);
        }
        layer
    }
}
