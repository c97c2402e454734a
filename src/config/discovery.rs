//! The `discovery:` section: its schema and its validation into `SourceSpec`s. A discovered
//! target becomes an agent through `resolve_agent` (checks.rs), as an agent of the file would;
//! `crate::discovery` runs the sources. Nothing here does I/O besides reading the files a
//! source names for its HTTP client.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::checks::Templates;
use super::error::ConfigIssue;
use super::raw::{RawBasicAuth, RawHttp, RawSize, RawTls};
use super::resolve::Resolver;
use super::spec::{HttpSpec, Target};
use super::values::parse_size;
use crate::relabel::{RawRelabel, Rule};

pub const DEFAULT_FILE_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_HTTP_REFRESH: Duration = Duration::from_secs(30);
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
pub const DEFAULT_SD_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP SD answer of 50,000 targets is about 5 MB; this leaves room and still stops a
/// runaway answer.
pub const DEFAULT_SD_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Targets a source may list at most, unless its `max_targets` says otherwise: twice the
/// largest fleet the benchmarks run, far below what would exhaust memory.
pub const DEFAULT_MAX_TARGETS: usize = 100_000;

/// One entry of `discovery:`: exactly one source key plus what applies to its targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub file_sd: Option<Spanned<RawFileSd>>,
    pub http_sd: Option<Spanned<RawHttpSd>>,
    pub dns_sd: Option<Spanned<RawDnsSd>>,
    #[serde(rename = "type")]
    pub agent_type: Option<Spanned<String>>,
    pub check: Option<Spanned<String>>,
    /// Checks a target may ask for besides `check`: credentials follow the config.
    #[serde(default)]
    pub allowed_checks: Vec<Spanned<String>>,
    #[serde(default)]
    pub relabel_configs: Vec<Spanned<RawRelabel>>,
    /// Targets one refresh may list; beyond, the refresh fails.
    pub max_targets: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSd {
    pub files: Vec<String>,
    pub refresh_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpSd {
    pub url: Spanned<String>,
    pub refresh_interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_response_bytes: Option<Spanned<RawSize>>,
    pub http: Option<Spanned<RawSdHttp>>,
}

/// `http:` of an http_sd source: an agent's `http:` without `max_body_bytes`, since the
/// source's `max_response_bytes` bounds its answer (one bound, one key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSdHttp {
    pub method: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub tls: Option<Spanned<RawTls>>,
    pub follow_redirects: Option<bool>,
}

impl From<RawSdHttp> for RawHttp {
    fn from(raw: RawSdHttp) -> Self {
        RawHttp {
            method: raw.method,
            headers: raw.headers,
            bearer_token_file: raw.bearer_token_file,
            basic_auth: raw.basic_auth,
            tls: raw.tls,
            follow_redirects: raw.follow_redirects,
            max_body_bytes: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsSd {
    pub names: Vec<String>,
    pub record_type: Option<Spanned<String>>,
    /// Required for A and AAAA records, which carry no port.
    pub port: Option<u16>,
    pub refresh_interval: Option<Spanned<String>>,
    /// `host:port` of name servers to ask instead of those of /etc/resolv.conf.
    pub nameservers: Option<Spanned<Vec<String>>>,
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// `file_sd/0`, `http_sd/1`: the kind and its index among sources of that kind.
    pub id: String,
    pub kind: SourceKind,
    pub refresh_interval: Duration,
    /// The `agent_type` of targets that do not set one.
    pub agent_type: Option<String>,
    /// The check of targets that do not set `__check__`.
    pub check: Option<String>,
    /// The other checks its targets may use (`allows_check`).
    pub allowed_checks: Vec<String>,
    pub relabel: Vec<Rule>,
    /// The settings its task runs on (what it asks, how often): a reload that keeps them keeps
    /// the task.
    pub fingerprint: u64,
    /// Targets one refresh may list; beyond, the refresh fails (`discovery::bounds`).
    pub max_targets: usize,
    /// Every setting, the fingerprint's included: tells a reload which old source a new one is.
    pub settings: u64,
}

impl SourceSpec {
    /// Whether a target of this source may use check `name`: the source's `check:` (else the
    /// check named like its `type:`, which its targets use by default) or one of
    /// `allowed_checks`. A target never picks credentials the config did not give its source.
    pub fn allows_check(&self, name: &str) -> bool {
        self.check.as_deref().or(self.agent_type.as_deref()) == Some(name)
            || self.allowed_checks.iter().any(|c| c == name)
    }

    /// What the source asks (its files, URL or DNS names), which a reload that changes its
    /// other settings keeps.
    pub fn locator(&self) -> String {
        match &self.kind {
            SourceKind::File { patterns } => format!("file_sd {patterns:?}"),
            SourceKind::Http { url, .. } => format!("http_sd {url}"),
            SourceKind::Dns { names, .. } => format!("dns_sd {names:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    File {
        /// Glob patterns, relative ones taken from the config file's folder.
        patterns: Vec<PathBuf>,
    },
    Http {
        url: url::Url,
        /// Boxed: it is most of the enum's size, and the other kinds do without it.
        http: Box<HttpSpec>,
        timeout: Duration,
        max_bytes: u64,
    },
    Dns {
        names: Vec<String>,
        record: DnsRecord,
        port: Option<u16>,
        nameservers: Vec<std::net::SocketAddr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsRecord {
    Srv,
    A,
    Aaaa,
}

/// Validates `discovery:`; problems go to `issues` with their place.
pub(super) fn resolve_sources(
    raw: Vec<Spanned<RawSource>>,
    templates: &Templates,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<SourceSpec> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut sources = Vec::new();
    for entry in raw {
        let at = entry.referenced;
        let mut issue = |place: Location, message: String, fix: &str| {
            issues.push(ConfigIssue::at(templates.file(), place, message, fix));
        };
        let source = entry.value;
        let present = [
            source.file_sd.is_some(),
            source.http_sd.is_some(),
            source.dns_sd.is_some(),
        ];
        if present.iter().filter(|p| **p).count() != 1 {
            issue(
                at,
                "a discovery entry needs exactly one of file_sd, http_sd, dns_sd".into(),
                "split it into one entry per source",
            );
            continue;
        }
        let kind_name = if source.file_sd.is_some() {
            "file_sd"
        } else if source.http_sd.is_some() {
            "http_sd"
        } else {
            "dns_sd"
        };
        let index = counts.entry(kind_name).or_insert(0);
        let id = format!("{kind_name}/{index}");
        *index += 1;
        checks_known(templates, &id, &source, &mut issue);
        let mut relabel = Vec::new();
        for rule in &source.relabel_configs {
            match Rule::compile(&rule.value) {
                Ok(r) => relabel.push(r),
                Err(e) => issue(rule.referenced, format!("relabel_configs: {e}"), &e.fix),
            }
        }
        let max_targets = max_targets(&mut issue, source.max_targets.as_ref());
        let mut fingerprint = DefaultHasher::new();
        let (kind, refresh) = if let Some(file) = source.file_sd {
            let patterns: Vec<PathBuf> = file
                .value
                .files
                .iter()
                .map(|f| path(templates, f))
                .collect();
            if patterns.is_empty() {
                issue(
                    file.referenced,
                    "file_sd.files is empty".into(),
                    "list at least one file or glob",
                );
            }
            let refresh = duration(&mut issue, file.value.refresh_interval.as_ref())
                .unwrap_or(DEFAULT_FILE_REFRESH);
            (Some(SourceKind::File { patterns }), refresh)
        } else if let Some(http) = source.http_sd {
            let refresh = duration(&mut issue, http.value.refresh_interval.as_ref())
                .unwrap_or(DEFAULT_HTTP_REFRESH);
            let timeout = duration(&mut issue, http.value.timeout.as_ref())
                .unwrap_or(DEFAULT_SD_TIMEOUT.min(refresh));
            let max_bytes = match &http.value.max_response_bytes {
                Some(size) => parse_size(&size.value).unwrap_or_else(|| {
                    issue(
                        size.referenced,
                        "http_sd.max_response_bytes is not a size".into(),
                        "write a byte count or a size such as 16MiB",
                    );
                    0
                }),
                None => DEFAULT_SD_MAX_BYTES,
            };
            http.value.url.value.hash(&mut fingerprint);
            let kind = match http_client(templates, &http.value.url, http.value.http) {
                Ok((url, spec)) => Some(SourceKind::Http {
                    url,
                    http: Box::new(spec),
                    timeout,
                    max_bytes,
                }),
                Err(found) => {
                    issues.extend(found);
                    None
                }
            };
            (kind, refresh)
        } else if let Some(dns) = source.dns_sd {
            let refresh = duration(&mut issue, dns.value.refresh_interval.as_ref())
                .unwrap_or(DEFAULT_DNS_REFRESH);
            let kind = dns_kind(dns, &mut issue);
            (kind, refresh)
        } else {
            continue;
        };
        let Some(kind) = kind else { continue };
        format!("{kind:?}").hash(&mut fingerprint);
        max_targets.hash(&mut fingerprint);
        refresh.hash(&mut fingerprint);
        let task = fingerprint.finish();
        let agent_type = source.agent_type.map(|t| t.value);
        let check = source.check.map(|c| c.value);
        let allowed_checks: Vec<String> =
            source.allowed_checks.into_iter().map(|c| c.value).collect();
        // How targets are read: a change re-reads them, the task goes on.
        (&agent_type, &check, &allowed_checks).hash(&mut fingerprint);
        for rule in &source.relabel_configs {
            format!("{:?}", rule.value).hash(&mut fingerprint);
        }
        sources.push(SourceSpec {
            id,
            kind,
            refresh_interval: refresh,
            agent_type,
            check,
            allowed_checks,
            relabel,
            fingerprint: task,
            settings: fingerprint.finish(),
            max_targets,
        });
    }
    sources
}

/// A source's `check:` and `allowed_checks` must name checks of the config, as an agent's
/// `check:` must: else the mistake would show only when a target arrives, as a dropped target.
fn checks_known(
    templates: &Templates,
    id: &str,
    source: &RawSource,
    issue: &mut impl FnMut(Location, String, &str),
) {
    if let Some(check) = &source.check {
        if !templates.has_check(&check.value) {
            let fix = templates.unknown_check_fix(&check.value, "remove `check`");
            issue(
                check.referenced,
                format!("discovery source {id}: unknown check {:?}", check.value),
                &fix,
            );
        }
    }
    for check in &source.allowed_checks {
        if !templates.has_check(&check.value) {
            let fix = templates.unknown_check_fix(&check.value, "remove it from `allowed_checks`");
            issue(
                check.referenced,
                format!(
                    "discovery source {id}: allowed_checks: unknown check {:?}",
                    check.value
                ),
                &fix,
            );
        }
    }
}

fn dns_kind(
    dns: Spanned<RawDnsSd>,
    issue: &mut impl FnMut(Location, String, &str),
) -> Option<SourceKind> {
    let record = match dns
        .value
        .record_type
        .as_ref()
        .map(|r| r.value.to_uppercase())
    {
        None => DnsRecord::Srv,
        Some(r) if r == "SRV" => DnsRecord::Srv,
        Some(r) if r == "A" => DnsRecord::A,
        Some(r) if r == "AAAA" => DnsRecord::Aaaa,
        Some(other) => {
            issue(
                dns.referenced,
                format!("dns_sd.record_type {other:?} is not supported"),
                "use SRV, A or AAAA",
            );
            return None;
        }
    };
    if record != DnsRecord::Srv && dns.value.port.is_none() {
        issue(
            dns.referenced,
            "dns_sd with A or AAAA records needs a port".into(),
            "set port: the port every address is probed on",
        );
        return None;
    }
    if dns.value.names.is_empty() {
        issue(
            dns.referenced,
            "dns_sd.names is empty".into(),
            "list at least one name",
        );
        return None;
    }
    let mut nameservers = Vec::new();
    if let Some(servers) = &dns.value.nameservers {
        for text in &servers.value {
            match text.parse() {
                Ok(addr) => nameservers.push(addr),
                Err(_) => issue(
                    servers.referenced,
                    format!("dns_sd.nameservers: {text:?} is not an address with a port"),
                    "write ip:port, such as 127.0.0.1:53 or [::1]:53",
                ),
            }
        }
    }
    Some(SourceKind::Dns {
        names: dns.value.names,
        record,
        port: dns.value.port,
        nameservers,
    })
}

/// `max_targets`, or its default; 0 would make a source that can find nothing.
fn max_targets(
    issue: &mut impl FnMut(Location, String, &str),
    value: Option<&Spanned<u64>>,
) -> usize {
    match value {
        None => DEFAULT_MAX_TARGETS,
        Some(v) if v.value == 0 => {
            issue(
                v.referenced,
                "`max_targets` 0 would keep every target out".into(),
                &format!("set at least 1, or remove it for the default {DEFAULT_MAX_TARGETS}"),
            );
            DEFAULT_MAX_TARGETS
        }
        Some(v) => usize::try_from(v.value).unwrap_or(usize::MAX),
    }
}

fn duration(
    issue: &mut impl FnMut(Location, String, &str),
    value: Option<&Spanned<String>>,
) -> Option<Duration> {
    let value = value?;
    match humantime::parse_duration(&value.value) {
        Ok(d) if !d.is_zero() => Some(d),
        _ => {
            issue(
                value.referenced,
                format!("{:?} is not a positive duration", value.value),
                "write a duration such as 30s or 5m",
            );
            None
        }
    }
}

/// The HTTP SD client takes the same `http:` options as an agent, resolved as an agent's are;
/// the SD URL stands in as the agent's URL. Errors: every problem, at its place in the file.
fn http_client(
    templates: &Templates,
    url: &Spanned<String>,
    http: Option<Spanned<RawSdHttp>>,
) -> Result<(url::Url, HttpSpec), Vec<ConfigIssue>> {
    let mut resolver = Resolver::new(
        templates.file().to_owned(),
        templates.base_dir().to_path_buf(),
    );
    let what = "http_sd";
    let method_at = http
        .as_ref()
        .and_then(|h| h.value.method.as_ref())
        .map(|m| m.referenced);
    let layer = http
        .map(|h| {
            let raw = Spanned::new(RawHttp::from(h.value), h.referenced, h.defined);
            resolver.http_layer(raw, what)
        })
        .unwrap_or_default();
    if let (Some(http::Method::HEAD), Some(at)) = (&layer.method, method_at) {
        resolver.issue(
            at,
            "http_sd: method HEAD gets no targets: its answer has no body",
            "use GET (the default) or POST",
        );
    }
    let target = resolver.target(url.value.trim(), url.referenced, what);
    let spec = match target {
        Some((Target::Http(parsed), auth)) => {
            let is_https = parsed.scheme() == "https";
            let auth = auth.map(|a| (a, url.referenced));
            resolver
                .http_spec(layer, auth, is_https, what)
                .map(|spec| (parsed, spec))
        }
        Some(_) => {
            resolver.issue(
                url.referenced,
                "http_sd: the url must be http:// or https://",
                "write the URL of the HTTP SD endpoint",
            );
            None
        }
        None => None,
    };
    let issues = resolver.into_issues();
    match spec {
        Some(spec) if issues.is_empty() => Ok(spec),
        _ => Err(issues),
    }
}

/// A file name of the config, relative ones taken from the config file's folder.
fn path(templates: &Templates, file: &str) -> PathBuf {
    let path = PathBuf::from(file);
    if path.is_absolute() {
        path
    } else {
        templates.base_dir().join(path)
    }
}
