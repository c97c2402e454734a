//! Turns the file as written (`raw.rs`) into validated `AgentSpec`s: defaults merged, durations
//! and sizes parsed, URLs checked, secret and TLS files read. Every problem is collected with its
//! place, so a user sees all of them at once.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::error::ConfigIssue;
use super::raw::{
    RawAgent, RawConfig, RawDefaults, RawDegraded, RawExpect, RawHttp, RawSize, RawStatus, RawTls,
};
use super::spec::{
    AgentSpec, Auth, DegradedSpec, ExpectSpec, HttpSpec, JsonMatch, Secret, StatusMatch, Target,
};
use super::tls::{client_config, TlsFiles};

/// Defaults that apply when neither `defaults:` nor the agent says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Label names the exporter sets itself; a user label of the same name would clash.
const RESERVED_LABELS: [&str; 7] = [
    "agent",
    "agent_type",
    "status",
    "result",
    "reason",
    "phase",
    "le",
];

/// An agent together with a fingerprint of everything that defines it (secret and TLS file
/// contents included), so that a reload can tell unchanged agents from changed ones.
#[derive(Debug, Clone)]
pub struct ResolvedAgent {
    pub spec: Arc<AgentSpec>,
    pub fingerprint: u64,
}

pub(super) struct Resolver {
    file: String,
    base_dir: PathBuf,
    issues: Vec<ConfigIssue>,
    /// One TLS setup shared by every https agent without a `tls:` section.
    default_tls: Option<Arc<rustls::ClientConfig>>,
}

/// The defaults section, parsed once.
struct Defaults {
    interval: Duration,
    timeout: Duration,
    timeout_set: bool,
    failure_threshold: u32,
    success_threshold: u32,
    labels: BTreeMap<String, String>,
}

impl Resolver {
    pub(super) fn new(file: String, base_dir: PathBuf) -> Self {
        Resolver {
            file,
            base_dir,
            issues: Vec::new(),
            default_tls: None,
        }
    }

    pub(super) fn into_issues(self) -> Vec<ConfigIssue> {
        self.issues
    }

    pub(super) fn issue(
        &mut self,
        at: Location,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.issues
            .push(ConfigIssue::at(&self.file, at, message, fix));
    }

    pub(super) fn resolve(&mut self, raw: RawConfig) -> Vec<ResolvedAgent> {
        let defaults = self.defaults(&raw.defaults);
        let mut seen: HashMap<String, Location> = HashMap::new();
        let mut agents = Vec::with_capacity(raw.agents.len());
        for (index, agent) in raw.agents.into_iter().enumerate() {
            let at = agent.referenced;
            if let Some(name) = &agent.value.name {
                if let Some(first) = seen.get(&name.value) {
                    let first = *first;
                    self.issue(
                        name.referenced,
                        format!(
                            "duplicate agent name {:?}, first used at line {}",
                            name.value,
                            first.line()
                        ),
                        "give every agent a unique name",
                    );
                } else {
                    seen.insert(name.value.clone(), name.referenced);
                }
            }
            if let Some(resolved) = self.agent(index, at, agent.value, &defaults) {
                agents.push(resolved);
            }
        }
        agents
    }

    fn defaults(&mut self, raw: &RawDefaults) -> Defaults {
        let interval = self
            .duration(raw.interval.as_ref(), "defaults.interval")
            .unwrap_or(DEFAULT_INTERVAL);
        let timeout = self.duration(raw.timeout.as_ref(), "defaults.timeout");
        let failure_threshold = self.threshold(raw.failure_threshold.as_ref(), "failure_threshold");
        let success_threshold = self.threshold(raw.success_threshold.as_ref(), "success_threshold");
        let labels = match &raw.labels {
            Some(labels) => {
                self.check_labels(labels);
                labels.value.clone()
            }
            None => BTreeMap::new(),
        };
        Defaults {
            interval,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            timeout_set: timeout.is_some(),
            failure_threshold: failure_threshold.unwrap_or(1),
            success_threshold: success_threshold.unwrap_or(1),
            labels,
        }
    }

    fn agent(
        &mut self,
        index: usize,
        at: Location,
        raw: RawAgent,
        defaults: &Defaults,
    ) -> Option<ResolvedAgent> {
        let before = self.issues.len();
        let what = match &raw.name {
            Some(name) => format!("agent {:?}", name.value),
            None => format!("agent #{}", index + 1),
        };
        let name = self.required_text(raw.name.as_ref(), at, &what, "name", "name: planner");
        let agent_type = self.required_text(
            raw.agent_type.as_ref(),
            at,
            &what,
            "type",
            "type: orchestrator",
        );
        let url = self.required_text(
            raw.url.as_ref(),
            at,
            &what,
            "url",
            "url: http://127.0.0.1:8081/health",
        );

        let interval = self
            .duration(raw.interval.as_ref(), "interval")
            .unwrap_or(defaults.interval);
        let timeout = match self.duration(raw.timeout.as_ref(), "timeout") {
            Some(t) => t,
            // An agent that only shortens its interval keeps a sensible timeout rather than
            // tripping over the default one.
            None if !defaults.timeout_set && DEFAULT_TIMEOUT >= interval => interval.mul_f64(0.8),
            None => defaults.timeout,
        };
        if timeout >= interval {
            let place = raw
                .timeout
                .as_ref()
                .or(raw.interval.as_ref())
                .map(|s| s.referenced)
                .unwrap_or(at);
            self.issue(
                place,
                format!(
                    "{what}: timeout {} is not shorter than interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
                "set timeout below interval, so that a probe ends before the next one is due",
            );
        }
        let failure_threshold = self
            .threshold(raw.failure_threshold.as_ref(), "failure_threshold")
            .unwrap_or(defaults.failure_threshold);
        let success_threshold = self
            .threshold(raw.success_threshold.as_ref(), "success_threshold")
            .unwrap_or(defaults.success_threshold);

        let mut labels = defaults.labels.clone();
        if let Some(own) = &raw.labels {
            self.check_labels(own);
            labels.extend(own.value.clone());
        }

        let mut fingerprint = DefaultHasher::new();
        let (target, url_auth) = match (&url, &raw.url) {
            (Some(text), Some(spanned)) => self.target(text, spanned.referenced, &what)?,
            _ => return None,
        };
        let is_http = matches!(target, Target::Http(_));
        for (section, present) in [
            ("http", raw.http.as_ref().map(|s| s.referenced)),
            ("expect", raw.expect.as_ref().map(|s| s.referenced)),
            ("degraded", raw.degraded.as_ref().map(|s| s.referenced)),
        ] {
            if let (false, Some(place)) = (is_http, present) {
                self.issue(
                    place,
                    format!("{what}: `{section}` applies only to http:// and https:// agents"),
                    format!("remove `{section}` or use an http(s) URL"),
                );
            }
        }
        let is_https = matches!(&target, Target::Http(u) if u.scheme() == "https");
        let http = self.http(raw.http, url_auth, is_https, &what, &mut fingerprint);
        let expect = self.expect(raw.expect);
        let degraded = self.degraded(raw.degraded);

        if self.issues.len() > before {
            return None;
        }
        let spec = AgentSpec {
            name: name?,
            agent_type: agent_type?,
            target,
            interval,
            timeout,
            failure_threshold,
            success_threshold,
            labels: labels.into_iter().collect(),
            http: http?,
            expect,
            degraded,
        };
        fingerprint_spec(&spec, &mut fingerprint);
        Some(ResolvedAgent {
            spec: Arc::new(spec),
            fingerprint: fingerprint.finish(),
        })
    }

    fn required_text(
        &mut self,
        value: Option<&Spanned<String>>,
        agent_at: Location,
        what: &str,
        key: &str,
        example: &str,
    ) -> Option<String> {
        match value {
            None => {
                self.issue(
                    agent_at,
                    format!("{what}: missing required key `{key}`"),
                    format!("add `{example}` to the agent"),
                );
                None
            }
            Some(v) if v.value.trim().is_empty() => {
                self.issue(
                    v.referenced,
                    format!("{what}: `{key}` is empty"),
                    format!("give a value, e.g. `{example}`"),
                );
                None
            }
            Some(v) => Some(v.value.trim().to_owned()),
        }
    }

    fn duration(&mut self, value: Option<&Spanned<String>>, key: &str) -> Option<Duration> {
        let value = value?;
        match humantime::parse_duration(value.value.trim()) {
            Ok(d) if d.is_zero() => {
                self.issue(
                    value.referenced,
                    format!("`{key}` must be longer than zero"),
                    "use a positive duration such as 30s or 500ms",
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.issue(
                    value.referenced,
                    format!("`{key}`: {:?} is not a duration ({e})", value.value),
                    "write a duration with a unit, such as 30s, 1m or 500ms",
                );
                None
            }
        }
    }

    fn threshold(&mut self, value: Option<&Spanned<u32>>, key: &str) -> Option<u32> {
        let value = value?;
        if value.value == 0 {
            self.issue(
                value.referenced,
                format!("`{key}` must be at least 1"),
                format!("set `{key}: 1` to react at the first probe"),
            );
            return None;
        }
        Some(value.value)
    }

    fn check_labels(&mut self, labels: &Spanned<BTreeMap<String, String>>) {
        for name in labels.value.keys() {
            let valid =
                name.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                }) && !name.is_empty();
            if !valid || name.starts_with("__") {
                self.issue(
                    labels.referenced,
                    format!("label name {name:?} is not a valid Prometheus label name"),
                    "use letters, digits and underscores, not starting with a digit or `__`",
                );
            } else if RESERVED_LABELS.contains(&name.as_str()) {
                self.issue(
                    labels.referenced,
                    format!("label name {name:?} is set by the exporter itself"),
                    "rename the label, e.g. to `agent_group`",
                );
            }
        }
    }

    /// Parses and checks the URL; credentials in it come back separately as basic auth.
    fn target(&mut self, text: &str, at: Location, what: &str) -> Option<(Target, Option<Auth>)> {
        let mut url = match url::Url::parse(text) {
            Ok(url) => url,
            Err(e) => {
                self.issue(
                    at,
                    format!("{what}: url is not a valid URL ({e})"),
                    "write a full URL such as http://10.0.0.5:8081/health or tcp://10.0.0.5:9000",
                );
                return None;
            }
        };
        match url.scheme() {
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    self.issue(
                        at,
                        format!("{what}: url has no host"),
                        "add the agent's host",
                    );
                    return None;
                }
                let auth = if url.username().is_empty() {
                    None
                } else {
                    let username = percent_decode(url.username());
                    let password = url.password().map(percent_decode).unwrap_or_default();
                    Some(Auth::Basic {
                        username,
                        password: Secret::new(password),
                    })
                };
                // Credentials must never reach labels, logs or the API: keep them out of the URL.
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_fragment(None);
                Some((Target::Http(url), auth))
            }
            "tcp" => {
                let host = url.host_str().unwrap_or_default().to_owned();
                let path_ok = url.path().is_empty() || url.path() == "/";
                match (host.is_empty(), url.port(), path_ok) {
                    (false, Some(port), true) => {
                        let host = host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned();
                        Some((Target::Tcp { host, port }, None))
                    }
                    _ => {
                        self.issue(
                            at,
                            format!("{what}: a tcp URL needs a host and a port and nothing else"),
                            "write it as tcp://host:port",
                        );
                        None
                    }
                }
            }
            other => {
                self.issue(
                    at,
                    format!("{what}: unsupported URL scheme {other:?}"),
                    "use http://, https:// or tcp://host:port",
                );
                None
            }
        }
    }

    fn http(
        &mut self,
        raw: Option<Spanned<RawHttp>>,
        url_auth: Option<Auth>,
        is_https: bool,
        what: &str,
        fingerprint: &mut DefaultHasher,
    ) -> Option<HttpSpec> {
        let mut spec = HttpSpec {
            method: http::Method::GET,
            headers: Vec::new(),
            auth: url_auth,
            tls: None,
            server_name: None,
            follow_redirects: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        };
        let mut tls_raw: Option<Spanned<RawTls>> = None;
        let mut ok = true;
        if let Some(raw) = raw {
            let raw = raw.value;
            if let Some(method) = &raw.method {
                match http::Method::from_bytes(method.value.trim().to_ascii_uppercase().as_bytes())
                {
                    Ok(m) => spec.method = m,
                    Err(_) => {
                        ok = false;
                        self.issue(
                            method.referenced,
                            format!("{what}: {:?} is not an HTTP method", method.value),
                            "use GET, HEAD or POST",
                        );
                    }
                }
            }
            if let Some(headers) = &raw.headers {
                for (name, value) in &headers.value {
                    match (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        http::HeaderValue::from_str(value),
                    ) {
                        (Ok(n), Ok(v)) => spec.headers.push((n, v)),
                        _ => {
                            ok = false;
                            self.issue(
                                headers.referenced,
                                format!("{what}: header {name:?} has an invalid name or value"),
                                "use a token as header name and visible ASCII as its value",
                            );
                        }
                    }
                }
            }
            if let Some(file) = &raw.bearer_token_file {
                match self.read_secret(file, "bearer_token_file", fingerprint) {
                    Some(token) => spec.auth = Some(Auth::Bearer(token)),
                    None => ok = false,
                }
            }
            if let Some(basic) = &raw.basic_auth {
                if spec.auth.is_some() {
                    ok = false;
                    self.issue(
                        basic.referenced,
                        format!("{what}: more than one way to authenticate is configured"),
                        "keep one of bearer_token_file, basic_auth or credentials in the URL",
                    );
                }
                let password = match &basic.value.password_file {
                    Some(file) => self.read_secret(file, "password_file", fingerprint),
                    None => Some(Secret::new(String::new())),
                };
                match password {
                    Some(password) => {
                        spec.auth = Some(Auth::Basic {
                            username: basic.value.username.value.clone(),
                            password,
                        })
                    }
                    None => ok = false,
                }
            }
            if let Some(follow) = raw.follow_redirects {
                spec.follow_redirects = follow;
            }
            if let Some(size) = &raw.max_body_bytes {
                match parse_size(&size.value) {
                    Some(bytes) if bytes > 0 => spec.max_body_bytes = bytes,
                    _ => {
                        ok = false;
                        self.issue(
                            size.referenced,
                            format!("{what}: max_body_bytes is not a positive size"),
                            "write a number of bytes or a size such as 64KiB or 1MiB",
                        );
                    }
                }
            }
            tls_raw = raw.tls;
        }
        match (tls_raw, is_https) {
            (Some(tls), true) => {
                spec.server_name = tls.value.server_name.as_ref().map(|s| s.value.clone());
                match self.tls(&tls, fingerprint) {
                    Some(config) => spec.tls = Some(config),
                    None => ok = false,
                }
            }
            (Some(tls), false) => {
                ok = false;
                self.issue(
                    tls.referenced,
                    format!("{what}: `tls` applies only to https:// URLs"),
                    "remove `tls` or change the URL to https://",
                );
            }
            (None, true) => spec.tls = self.shared_default_tls(),
            (None, false) => {}
        }
        ok.then_some(spec)
    }

    fn shared_default_tls(&mut self) -> Option<Arc<rustls::ClientConfig>> {
        if self.default_tls.is_none() {
            let files = TlsFiles {
                ca_pem: None,
                cert_pem: None,
                key_pem: None,
                insecure_skip_verify: false,
            };
            match client_config(&files) {
                Ok(config) => self.default_tls = Some(config),
                Err(e) => {
                    self.issue(
                        Location::UNKNOWN,
                        format!("cannot set up TLS: {e}"),
                        "report this as a bug",
                    );
                }
            }
        }
        self.default_tls.clone()
    }

    fn tls(
        &mut self,
        tls: &Spanned<RawTls>,
        fingerprint: &mut DefaultHasher,
    ) -> Option<Arc<rustls::ClientConfig>> {
        let raw = &tls.value;
        let ca_pem = raw
            .ca_file
            .as_ref()
            .map(|f| self.read_file(f, "ca_file", fingerprint));
        let cert_pem = raw
            .cert_file
            .as_ref()
            .map(|f| self.read_file(f, "cert_file", fingerprint));
        let key_pem = raw
            .key_file
            .as_ref()
            .map(|f| self.read_file(f, "key_file", fingerprint));
        raw.insecure_skip_verify.hash(fingerprint);
        if [&ca_pem, &cert_pem, &key_pem]
            .iter()
            .any(|f| matches!(f, Some(None)))
        {
            return None;
        }
        let files = TlsFiles {
            ca_pem: ca_pem.flatten(),
            cert_pem: cert_pem.flatten(),
            key_pem: key_pem.flatten(),
            insecure_skip_verify: raw.insecure_skip_verify,
        };
        match client_config(&files) {
            Ok(config) => Some(config),
            Err(e) => {
                self.issue(tls.referenced, format!("tls: {e}"), "");
                None
            }
        }
    }

    fn expect(&mut self, raw: Option<Spanned<RawExpect>>) -> ExpectSpec {
        let mut spec = ExpectSpec::default();
        let Some(raw) = raw else { return spec };
        let raw = raw.value;
        if let Some(status) = &raw.status {
            for item in status.value.to_vec() {
                match parse_status(&item) {
                    Some(m) => spec.status.push(m),
                    None => self.issue(
                        status.referenced,
                        format!(
                            "expect.status: {} is not a status code or class",
                            status_text(&item)
                        ),
                        "use codes such as 200 or classes such as \"2xx\"",
                    ),
                }
            }
        }
        spec.body_contains = raw.body_contains.map(|s| s.value);
        if let Some(pattern) = &raw.body_regex {
            match regex::Regex::new(&pattern.value) {
                Ok(re) => spec.body_regex = Some(re),
                Err(e) => self.issue(
                    pattern.referenced,
                    format!(
                        "expect.body_regex is not a valid regular expression: {}",
                        e.to_string().lines().last().unwrap_or_default().trim()
                    ),
                    "fix the pattern (Rust regex syntax; no look-around or backreferences)",
                ),
            }
        }
        spec.json = self.json_matches(raw.json.as_ref(), "expect.json");
        spec
    }

    fn degraded(&mut self, raw: Option<Spanned<RawDegraded>>) -> DegradedSpec {
        let mut spec = DegradedSpec::default();
        let Some(raw) = raw else { return spec };
        spec.latency_above =
            self.duration(raw.value.latency_above.as_ref(), "degraded.latency_above");
        spec.json = self.json_matches(raw.value.json.as_ref(), "degraded.json");
        spec
    }

    fn json_matches(
        &mut self,
        raw: Option<&Spanned<BTreeMap<String, serde_json::Value>>>,
        key: &str,
    ) -> Vec<JsonMatch> {
        let Some(raw) = raw else { return Vec::new() };
        let mut out = Vec::new();
        for (pointer, value) in &raw.value {
            if valid_json_pointer(pointer) {
                out.push(JsonMatch {
                    pointer: pointer.clone(),
                    value: value.clone(),
                });
            } else {
                self.issue(
                    raw.referenced,
                    format!("{key}: {pointer:?} is not a JSON Pointer (RFC 6901)"),
                    "start it with / and escape ~ as ~0 and / as ~1, e.g. \"/status\"",
                );
            }
        }
        out
    }

    fn path(&self, file: &str) -> PathBuf {
        let path = Path::new(file);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Reads a file named in the config; `None` (with an issue) when it cannot be read.
    fn read_file(
        &mut self,
        file: &Spanned<String>,
        key: &str,
        fingerprint: &mut DefaultHasher,
    ) -> Option<Vec<u8>> {
        let path = self.path(&file.value);
        match std::fs::read(&path) {
            Ok(bytes) => {
                bytes.hash(fingerprint);
                Some(bytes)
            }
            Err(e) => {
                self.issue(
                    file.referenced,
                    format!("{key}: cannot read {}: {e}", path.display()),
                    "check the path (relative paths start at the config file's folder) and its permissions",
                );
                None
            }
        }
    }

    fn read_secret(
        &mut self,
        file: &Spanned<String>,
        key: &str,
        fingerprint: &mut DefaultHasher,
    ) -> Option<Secret> {
        let bytes = self.read_file(file, key, fingerprint)?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                self.issue(
                    file.referenced,
                    format!("{key}: the file is not UTF-8 text"),
                    "store the secret as plain text",
                );
                return None;
            }
        };
        // A trailing newline is an artefact of editors and `echo`, never part of a secret.
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            self.issue(
                file.referenced,
                format!("{key}: the file is empty"),
                "write the secret into the file",
            );
            return None;
        }
        Some(Secret::new(trimmed.to_owned()))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `1024`, `64KiB`, `1MiB`, `1MB`, `1 GiB`.
pub(super) fn parse_size(raw: &RawSize) -> Option<u64> {
    let text = match raw {
        RawSize::Bytes(n) => return Some(*n),
        RawSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn parse_status(raw: &RawStatus) -> Option<StatusMatch> {
    match raw {
        RawStatus::Code(code) => u16::try_from(*code)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusMatch::Code),
        RawStatus::Text(text) => {
            let text = text.trim().to_ascii_lowercase();
            if let Some(class) = text.strip_suffix("xx") {
                class
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (1..=5).contains(c))
                    .map(StatusMatch::Class)
            } else {
                text.parse::<u64>()
                    .ok()
                    .and_then(|c| parse_status(&RawStatus::Code(c)))
            }
        }
    }
}

fn status_text(raw: &RawStatus) -> String {
    match raw {
        RawStatus::Code(c) => c.to_string(),
        RawStatus::Text(t) => format!("{t:?}"),
    }
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` is followed by 0 or 1.
fn valid_json_pointer(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    if !pointer.starts_with('/') {
        return false;
    }
    let bytes = pointer.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0') | Some(b'1')))
}

/// Everything in the spec that is not a file's content (those were hashed when read).
fn fingerprint_spec(spec: &AgentSpec, hasher: &mut DefaultHasher) {
    spec.name.hash(hasher);
    spec.agent_type.hash(hasher);
    spec.target.display().hash(hasher);
    spec.interval.hash(hasher);
    spec.timeout.hash(hasher);
    spec.failure_threshold.hash(hasher);
    spec.success_threshold.hash(hasher);
    spec.labels.hash(hasher);
    spec.http.method.as_str().hash(hasher);
    for (name, value) in &spec.http.headers {
        name.as_str().hash(hasher);
        value.as_bytes().hash(hasher);
    }
    match &spec.http.auth {
        Some(Auth::Bearer(token)) => ("bearer", token.expose()).hash(hasher),
        Some(Auth::Basic { username, password }) => {
            ("basic", username, password.expose()).hash(hasher)
        }
        None => "none".hash(hasher),
    }
    spec.http.server_name.hash(hasher);
    spec.http.follow_redirects.hash(hasher);
    spec.http.max_body_bytes.hash(hasher);
    // Field by field rather than through a `Debug` rendering, which cost more than the rest of
    // resolving an agent; the empty cases, by far the most common, hash almost nothing.
    let expect = &spec.expect;
    expect.status.len().hash(hasher);
    for status in &expect.status {
        match status {
            StatusMatch::Code(code) => (0u8, *code).hash(hasher),
            StatusMatch::Class(class) => (1u8, *class).hash(hasher),
        }
    }
    expect.body_contains.hash(hasher);
    expect
        .body_regex
        .as_ref()
        .map(regex::Regex::as_str)
        .hash(hasher);
    hash_json(&expect.json, hasher);
    spec.degraded.latency_above.hash(hasher);
    hash_json(&spec.degraded.json, hasher);
}

fn hash_json(matches: &[JsonMatch], hasher: &mut DefaultHasher) {
    matches.len().hash(hasher);
    for m in matches {
        m.pointer.hash(hasher);
        // serde_json's Display is canonical for a parsed value: same value, same text.
        m.value.to_string().hash(hasher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_bytes_and_binary_and_decimal_units() {
        assert_eq!(parse_size(&RawSize::Bytes(10)), Some(10));
        assert_eq!(parse_size(&RawSize::Text("1MiB".into())), Some(1 << 20));
        assert_eq!(parse_size(&RawSize::Text("64 KiB".into())), Some(64 << 10));
        assert_eq!(parse_size(&RawSize::Text("2MB".into())), Some(2_000_000));
        assert_eq!(parse_size(&RawSize::Text("lots".into())), None);
    }

    #[test]
    fn statuses_accept_codes_and_classes() {
        assert_eq!(
            parse_status(&RawStatus::Code(204)),
            Some(StatusMatch::Code(204))
        );
        assert_eq!(
            parse_status(&RawStatus::Text("3xx".into())),
            Some(StatusMatch::Class(3))
        );
        assert_eq!(
            parse_status(&RawStatus::Text("200".into())),
            Some(StatusMatch::Code(200))
        );
        assert_eq!(parse_status(&RawStatus::Code(700)), None);
        assert_eq!(parse_status(&RawStatus::Text("9xx".into())), None);
    }

    #[test]
    fn json_pointers_follow_rfc_6901() {
        assert!(valid_json_pointer(""));
        assert!(valid_json_pointer("/status"));
        assert!(valid_json_pointer("/a~1b/~0c/0"));
        assert!(!valid_json_pointer("status"));
        assert!(!valid_json_pointer("/a~2"));
        assert!(!valid_json_pointer("/a~"));
    }

    #[test]
    fn fingerprint_changes_with_every_expectation_and_only_then() {
        let fingerprint = |agent_extra: &str| {
            let yaml = format!(
                "agents:\n  - {{name: a, type: t, url: 'http://127.0.0.1:1/'{agent_extra}}}\n"
            );
            crate::config::parse(&yaml, "t.yaml", Path::new("."))
                .expect("valid config")
                .agents[0]
                .fingerprint
        };
        let variants = [
            "",
            ", expect: {status: 204}",
            ", expect: {status: 2xx}",
            ", expect: {body_contains: ok}",
            ", expect: {body_regex: ok}",
            ", expect: {json: {/a: 1}}",
            ", expect: {json: {/a: '1'}}",
            ", expect: {json: {/b: 1}}",
            ", degraded: {latency_above: 1s}",
            ", degraded: {json: {/a: 1}}",
        ];
        let prints: Vec<u64> = variants.iter().map(|v| fingerprint(v)).collect();
        for (i, a) in prints.iter().enumerate() {
            assert_eq!(*a, fingerprint(variants[i]), "stable: {}", variants[i]);
            for (j, b) in prints.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} vs {}", variants[i], variants[j]);
            }
        }
    }

    #[test]
    fn percent_encoded_credentials_are_decoded() {
        assert_eq!(percent_decode("p%40ss%2F"), "p@ss/");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
