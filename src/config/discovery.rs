//! The `discovery:` section: its schema, its validation into `SourceSpec`s, and the bridge that
//! resolves a discovered target into an agent through the same path (and `defaults:`) as an
//! agent written in the file. `crate::discovery` runs the sources; nothing here does I/O
//! besides reading the files a source names for its HTTP client.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::error::ConfigIssue;
use super::raw::{RawAgent, RawConfig, RawDefaults, RawHttp, RawSize};
use super::resolve::{ResolvedAgent, Resolver};
use super::spec::{HttpSpec, Target};
use crate::discovery::relabel::{RawRelabel, Rule};

pub const DEFAULT_FILE_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_HTTP_REFRESH: Duration = Duration::from_secs(30);
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
pub const DEFAULT_SD_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP SD answer of 50,000 targets is about 5 MB; this leaves room and still stops a
/// runaway answer.
pub const DEFAULT_SD_MAX_BYTES: u64 = 64 * 1024 * 1024;

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
    #[serde(default)]
    pub relabel_configs: Vec<Spanned<RawRelabel>>,
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
    pub http: Option<Spanned<RawHttp>>,
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
    pub relabel: Vec<Rule>,
    /// Tells a reload whether the source must restart.
    pub fingerprint: u64,
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

/// What a discovered target resolves into an agent with: the file's `defaults:` and its place.
#[derive(Debug, Clone)]
pub struct AgentBase {
    file: String,
    base_dir: PathBuf,
    defaults: RawDefaults,
}

/// A discovered target after relabeling, before resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscoveredFields {
    pub name: String,
    pub agent_type: String,
    pub check: Option<String>,
    pub url: String,
    pub labels: BTreeMap<String, String>,
}

fn spanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

impl AgentBase {
    pub(super) fn new(file: String, base_dir: PathBuf, defaults: RawDefaults) -> Self {
        AgentBase {
            file,
            base_dir,
            defaults,
        }
    }

    /// Resolves one discovered target exactly as an agent of the file with these keys.
    /// `check` is carried for the check templates; until they exist it selects nothing.
    pub fn resolve(&self, fields: DiscoveredFields) -> Result<ResolvedAgent, String> {
        let labels = (!fields.labels.is_empty()).then(|| spanned(fields.labels));
        let agent = RawAgent {
            name: Some(spanned(fields.name)),
            agent_type: Some(spanned(fields.agent_type)),
            url: Some(spanned(fields.url)),
            interval: None,
            timeout: None,
            failure_threshold: None,
            success_threshold: None,
            labels,
            http: None,
            expect: None,
            degraded: None,
        };
        self.resolve_raw(agent)
    }

    fn resolve_raw(&self, agent: RawAgent) -> Result<ResolvedAgent, String> {
        let raw = RawConfig {
            defaults: self.defaults.clone(),
            agents: vec![spanned(agent)],
            discovery: Vec::new(),
        };
        let mut resolver = Resolver::new(self.file.clone(), self.base_dir.clone());
        let mut agents = resolver.resolve(raw);
        let issues = resolver.into_issues();
        match agents.pop() {
            Some(agent) if issues.is_empty() => Ok(agent),
            _ => Err(issues
                .iter()
                .map(|i| i.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }
}

/// Validates `discovery:`; problems go to `issues` with their place.
pub(super) fn resolve_sources(
    raw: Vec<Spanned<RawSource>>,
    base: &AgentBase,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<SourceSpec> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut sources = Vec::new();
    for entry in raw {
        let at = entry.referenced;
        let mut issue = |place: Location, message: String, fix: &str| {
            issues.push(ConfigIssue::at(&base.file, place, message, fix));
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
        let mut relabel = Vec::new();
        for rule in &source.relabel_configs {
            match Rule::compile(&rule.value) {
                Ok(r) => relabel.push(r),
                Err(e) => issue(rule.referenced, format!("relabel_configs: {e}"), &e.fix),
            }
        }
        let mut fingerprint = DefaultHasher::new();
        let (kind_name, kind, refresh) = if let Some(file) = source.file_sd {
            let patterns: Vec<PathBuf> = file.value.files.iter().map(|f| base.path(f)).collect();
            if patterns.is_empty() {
                issue(
                    file.referenced,
                    "file_sd.files is empty".into(),
                    "list at least one file or glob",
                );
            }
            let refresh = duration(&mut issue, file.value.refresh_interval.as_ref())
                .unwrap_or(DEFAULT_FILE_REFRESH);
            ("file_sd", Some(SourceKind::File { patterns }), refresh)
        } else if let Some(http) = source.http_sd {
            let refresh = duration(&mut issue, http.value.refresh_interval.as_ref())
                .unwrap_or(DEFAULT_HTTP_REFRESH);
            let timeout = duration(&mut issue, http.value.timeout.as_ref())
                .unwrap_or(DEFAULT_SD_TIMEOUT.min(refresh));
            let max_bytes = match &http.value.max_response_bytes {
                Some(size) => super::resolve::parse_size(&size.value).unwrap_or_else(|| {
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
            let kind = http_client(base, http.value.url, http.value.http).map_or_else(
                |e| {
                    issue(
                        http.referenced,
                        format!("http_sd: {e}"),
                        "fix the url and http options",
                    );
                    None
                },
                |(url, spec)| {
                    Some(SourceKind::Http {
                        url,
                        http: Box::new(spec),
                        timeout,
                        max_bytes,
                    })
                },
            );
            ("http_sd", kind, refresh)
        } else if let Some(dns) = source.dns_sd {
            let refresh = duration(&mut issue, dns.value.refresh_interval.as_ref())
                .unwrap_or(DEFAULT_DNS_REFRESH);
            let kind = dns_kind(dns, &mut issue);
            ("dns_sd", kind, refresh)
        } else {
            continue;
        };
        let index = counts.entry(kind_name).or_insert(0);
        let id = format!("{kind_name}/{index}");
        *index += 1;
        let Some(kind) = kind else { continue };
        format!("{kind:?}").hash(&mut fingerprint);
        refresh.hash(&mut fingerprint);
        for rule in &source.relabel_configs {
            format!("{:?}", rule.value).hash(&mut fingerprint);
        }
        sources.push(SourceSpec {
            id,
            kind,
            refresh_interval: refresh,
            agent_type: source.agent_type.map(|t| t.value),
            check: source.check.map(|c| c.value),
            relabel,
            fingerprint: fingerprint.finish(),
        });
    }
    sources
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

/// The HTTP SD client takes the same `http:` options as an agent, so they are resolved as an
/// agent's: the SD URL stands in as the agent's URL.
fn http_client(
    base: &AgentBase,
    url: Spanned<String>,
    http: Option<Spanned<RawHttp>>,
) -> Result<(url::Url, HttpSpec), String> {
    let agent = RawAgent {
        name: Some(spanned("http_sd".to_owned())),
        agent_type: Some(spanned("discovery".to_owned())),
        url: Some(url),
        interval: None,
        timeout: None,
        failure_threshold: None,
        success_threshold: None,
        labels: None,
        http,
        expect: None,
        degraded: None,
    };
    let resolved = base.resolve_raw(agent)?;
    match &resolved.spec.target {
        Target::Http(url) => Ok((url.clone(), resolved.spec.http.clone())),
        Target::Tcp { .. } => Err("the url must be http:// or https://".into()),
    }
}

impl AgentBase {
    fn path(&self, file: &str) -> PathBuf {
        let path = PathBuf::from(file);
        if path.is_absolute() {
            path
        } else {
            self.base_dir.join(path)
        }
    }
}
