//! An agent's effective settings as JSON: what `GET /api/v1/agents/{name}/config` and
//! `--config.check --verbose` show, after defaults, check, discovery and relabeling. Keys are
//! those of the config file (docs/configuration.md), so a reader can compare the two. Secrets
//! are `<secret>`: tokens, passwords, metadata read from files, every header and metadata
//! value but those of `PLAIN_HEADERS`, and every query parameter's value of a URL; the files
//! they come from are named, their contents never.

use serde_json::{json, Map, Value};

use super::canary::{CanarySpec, CanaryTask, OnFailure};
use super::spec::{AgentSpec, Auth, HttpSpec, JsonMatch, Target};
use super::{GrpcMetadata, TlsClient};

/// How a secret value is shown.
pub const REDACTED: &str = "<secret>";

/// Header (and gRPC metadata) names whose values are shown: standard ones that describe the
/// request and never carry credentials. Any other name may (`X-Functions-Key`, `X-Session-Id`,
/// `Ocp-Apim-Subscription-Key`, ...), and no list of credential-looking words catches them
/// all, so every other value is `<secret>`. Listed in the reference (docs/configuration.md).
pub const PLAIN_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-type",
    "host",
    "pragma",
    "te",
    "user-agent",
];

/// The effective settings of `spec`; `check` is the check it uses, `origin` where it came from
/// (`static` or a discovery source) when known.
pub fn effective(spec: &AgentSpec, check: Option<&str>, origin: Option<&str>) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(spec.name));
    out.insert("type".into(), json!(spec.agent_type));
    out.insert("check".into(), json!(check));
    if let Some(origin) = origin {
        // An http_sd origin names its URL, whose query may hold a token.
        let shown: Vec<String> = origin.split(' ').map(redacted_url).collect();
        out.insert("origin".into(), json!(shown.join(" ")));
    }
    let protocol = match &spec.target {
        Target::Http(_) => "http",
        Target::Tcp { .. } => "tcp",
        Target::Heartbeat(_) => "heartbeat",
        Target::Grpc(_) => "grpc",
        Target::Mcp(_) => "mcp",
        Target::A2a(_) => "a2a",
    };
    out.insert("protocol".into(), json!(protocol));
    if spec.target.heartbeat().is_none() {
        out.insert("url".into(), json!(redacted_url(&spec.target.display())));
        out.insert("interval".into(), duration(spec.interval));
        out.insert("timeout".into(), duration(spec.timeout));
    }
    out.insert("failure_threshold".into(), json!(spec.failure_threshold));
    out.insert("success_threshold".into(), json!(spec.success_threshold));
    let labels: Map<String, Value> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    out.insert("labels".into(), Value::Object(labels));
    match &spec.target {
        Target::Http(_) => {
            out.insert("http".into(), http(&spec.http));
            out.insert("expect".into(), expect(spec));
            out.insert("degraded".into(), degraded(spec));
        }
        Target::Mcp(mcp) => {
            out.insert("http".into(), http(&spec.http));
            out.insert("degraded".into(), degraded(spec));
            out.insert("mcp".into(), json!({"expect_tools": mcp.expect_tools}));
        }
        Target::A2a(a2a) => {
            out.insert("http".into(), http(&spec.http));
            out.insert("degraded".into(), degraded(spec));
            out.insert("a2a".into(), json!({"expect_skills": a2a.expect_skills}));
        }
        Target::Grpc(grpc) => {
            let mut metadata = Map::new();
            let mut files = Map::new();
            for (name, value) in &grpc.metadata {
                let shown = match value {
                    GrpcMetadata::Plain(v) => header_value(name.as_str(), v),
                    GrpcMetadata::Secret(s) => {
                        if let Some(file) = s.file() {
                            files.insert(name.as_str().into(), json!(file));
                        }
                        json!(REDACTED)
                    }
                };
                metadata.insert(name.as_str().into(), shown);
            }
            let mut section = Map::new();
            section.insert("service".into(), json!(grpc.service));
            section.insert("metadata".into(), Value::Object(metadata));
            section.insert("metadata_files".into(), Value::Object(files));
            section.insert("authority".into(), json!(grpc.authority));
            section.insert("watch".into(), json!(grpc.watch));
            if let Some(client) = &spec.http.tls {
                section.insert("tls".into(), tls(client, spec.http.server_name.as_deref()));
            }
            out.insert("grpc".into(), Value::Object(section));
            out.insert("degraded".into(), degraded(spec));
        }
        Target::Heartbeat(hb) => {
            let mut section = Map::new();
            section.insert("period".into(), duration(hb.period));
            section.insert("grace".into(), duration(hb.grace));
            section.insert("token_file".into(), json!(hb.token.file()));
            section.insert("token".into(), json!(REDACTED));
            section.insert(
                "max_run_time".into(),
                hb.max_run_time.map_or(Value::Null, duration),
            );
            out.insert("heartbeat".into(), Value::Object(section));
        }
        Target::Tcp { .. } => {
            out.insert("degraded".into(), degraded(spec));
        }
    }
    if let Some(canary) = &spec.canary {
        out.insert("canary".into(), self::canary(canary));
    }
    Value::Object(out)
}

/// The canary as written, resolved: a prompt is configuration, not a secret, so it is shown.
fn canary(canary: &CanarySpec) -> Value {
    let task = match &canary.task {
        CanaryTask::A2a { text } => json!({"text": text}),
        CanaryTask::Mcp { tool, arguments } => json!({"tool": tool, "arguments": arguments}),
        CanaryTask::OpenAi {
            model,
            prompt,
            max_tokens,
            url,
            stream,
        } => json!({
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "path": url.path(),
            "stream": stream,
        }),
    };
    let mut out = Map::new();
    out.insert("interval".into(), duration(canary.interval));
    out.insert("timeout".into(), duration(canary.timeout));
    out.insert(
        "on_failure".into(),
        json!(match canary.on_failure {
            OnFailure::Degraded => "degraded",
            OnFailure::Unhealthy => "unhealthy",
        }),
    );
    out.insert("failure_threshold".into(), json!(canary.failure_threshold));
    out.insert(canary.task.kind().into(), task);
    out.insert(
        "expect".into(),
        json!({
            "contains": canary.expect.contains,
            "regex": canary.expect.regex.as_ref().map(|r| r.as_str()),
            "json": pointers(&canary.expect.json),
            "max_latency": canary.expect.max_latency.map(duration),
        }),
    );
    Value::Object(out)
}

fn duration(d: std::time::Duration) -> Value {
    json!(humantime::format_duration(d).to_string())
}

fn http(spec: &HttpSpec) -> Value {
    let headers: Map<String, Value> = spec
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), header_value(name.as_str(), value)))
        .collect();
    let mut out = Map::new();
    out.insert("method".into(), json!(spec.method.as_str()));
    out.insert("headers".into(), Value::Object(headers));
    match &spec.auth {
        Some(Auth::Bearer(token)) => {
            out.insert("bearer_token".into(), json!(REDACTED));
            out.insert("bearer_token_file".into(), json!(token.file()));
        }
        Some(Auth::Basic { username, password }) => {
            out.insert(
                "basic_auth".into(),
                json!({
                    "username": username,
                    "password": REDACTED,
                    "password_file": password.file(),
                }),
            );
        }
        None => {}
    }
    if let Some(client) = &spec.tls {
        out.insert("tls".into(), tls(client, spec.server_name.as_deref()));
    }
    out.insert("follow_redirects".into(), json!(spec.follow_redirects));
    out.insert("max_body_bytes".into(), json!(spec.max_body_bytes));
    Value::Object(out)
}

/// What a TLS setup trusts and presents; the key never, the CA's contents neither (they are
/// not secret, only long).
fn tls(client: &TlsClient, server_name: Option<&str>) -> Value {
    let identity = client.identity();
    json!({
        "custom_ca": identity.ca_pem.is_some(),
        "client_certificate": identity.client_certificate.is_some(),
        "insecure_skip_verify": identity.insecure_skip_verify,
        "server_name": server_name,
    })
}

/// A header (or metadata) value when its name is one of `PLAIN_HEADERS`, else `<secret>`.
fn header_value(name: &str, value: &http::HeaderValue) -> Value {
    let plain = PLAIN_HEADERS
        .iter()
        .any(|plain| plain.eq_ignore_ascii_case(name));
    if !plain || value.is_sensitive() {
        return json!(REDACTED);
    }
    match value.to_str() {
        Ok(text) => json!(text),
        Err(_) => json!(String::from_utf8_lossy(value.as_bytes())),
    }
}

/// A URL as it may be shown: without user and password, every query parameter's value and
/// the fragment as `<secret>` (keys kept, so a reader sees which parameters are sent), since
/// APIs take tokens there (`?api_key=`, `?access_token=`). Text that is no URL, or one with
/// `url=` before it (an http_sd origin), is handled the same way; other text is unchanged.
pub fn redacted_url(text: &str) -> String {
    let (prefix, rest) = match text.strip_prefix("url=") {
        Some(rest) => ("url=", rest),
        None => ("", text),
    };
    let Ok(mut url) = url::Url::parse(rest) else {
        return text.to_owned();
    };
    if !rest.contains("://") {
        return text.to_owned();
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let query = url.query().map(|query| {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let fragment = url.fragment().is_some();
    url.set_query(None);
    url.set_fragment(None);
    let mut shown = format!("{prefix}{url}");
    if let Some(query) = query {
        shown.push('?');
        shown.push_str(&query);
    }
    if fragment {
        shown.push('#');
        shown.push_str(REDACTED);
    }
    shown
}

fn expect(spec: &AgentSpec) -> Value {
    let status: Vec<String> = if spec.expect.status.is_empty() {
        vec!["2xx".to_owned()]
    } else {
        spec.expect.status.iter().map(ToString::to_string).collect()
    };
    json!({
        "status": status,
        "body_contains": spec.expect.body_contains,
        "body_regex": spec.expect.body_regex.as_ref().map(|r| r.as_str()),
        "json": pointers(&spec.expect.json),
    })
}

fn degraded(spec: &AgentSpec) -> Value {
    json!({
        "latency_above": spec.degraded.latency_above.map(|d| humantime::format_duration(d).to_string()),
        "json": pointers(&spec.degraded.json),
    })
}

fn pointers(matches: &[JsonMatch]) -> Value {
    Value::Object(
        matches
            .iter()
            .map(|m| (m.pointer.clone(), m.value.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn url_query_values_userinfo_and_fragment_are_hidden_keys_kept() {
        assert_eq!(
            redacted_url("https://u:pw@h.test:8443/sd?api_key=QUERYSECRET&access_token=QT2#t=F"),
            "https://h.test:8443/sd?api_key=<secret>&access_token=<secret>#<secret>"
        );
        assert_eq!(
            redacted_url("url=http://h.test/sd?QT3"),
            "url=http://h.test/sd?<secret>"
        );
        assert_eq!(redacted_url("http://h.test/health"), "http://h.test/health");
    }

    #[test]
    fn origins_that_are_no_url_are_shown_as_they_are() {
        for text in ["static", "file_sd/0", "file=targets.json", "name=a.test"] {
            assert_eq!(redacted_url(text), text);
        }
    }
}
