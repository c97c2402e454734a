//! `dns_sd`: targets from SRV records (or A/AAAA records and a fixed port), asked every
//! `refresh_interval` through hickory-resolver with the system's resolver configuration
//! (/etc/resolv.conf), or the `nameservers` the source names. Nothing is cached between
//! refreshes, so a changed record shows at the next one. A resolver that cannot be set up
//! (a broken resolv.conf) fails the refresh like any DNS error and is set up again at the next.

use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::system_conf::parse_resolv_conf;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};

use super::target::Discovered;
use super::{bounds, Refresh, Sink};
use crate::config::{DnsRecord, SourceKind, SourceSpec};

/// The system's resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Names another file to read instead of /etc/resolv.conf: the tests' way to give the
/// exporter a broken one without touching the machine's.
const RESOLV_CONF_ENV: &str = "AGENT_HEALTH_EXPORTER_RESOLV_CONF";

/// Runs the source until its task is aborted.
pub async fn run(spec: Arc<SourceSpec>, sink: Sink) {
    let mut prepared = None;
    loop {
        // Set up again after a failed setup: the file may be fixed by now.
        if prepared.is_none() {
            prepared = match Prepared::from(&spec) {
                Ok(Some(source)) => Some(source),
                Ok(None) => return,
                Err(error) => {
                    if !sink.send(Err(error)) {
                        return;
                    }
                    None
                }
            };
        }
        if let Some(source) = &prepared {
            let refresh = source
                .ask()
                .await
                .and_then(|d| bounds::check(d, spec.max_targets));
            if !sink.send(refresh) {
                return;
            }
        }
        tokio::time::sleep(spec.refresh_interval).await;
    }
}

/// One lookup, for `--config.check`.
pub async fn once(spec: &SourceSpec) -> Refresh {
    match Prepared::from(spec)? {
        Some(source) => source.ask().await,
        None => Ok(Vec::new()),
    }
}

/// A dns_sd source's resolver and what it asks.
struct Prepared<'a> {
    resolver: TokioResolver,
    names: &'a [String],
    record: DnsRecord,
    port: Option<u16>,
}

impl<'a> Prepared<'a> {
    /// None for another kind of source.
    fn from(spec: &'a SourceSpec) -> Result<Option<Prepared<'a>>, String> {
        let SourceKind::Dns {
            names,
            record,
            port,
            nameservers,
        } = &spec.kind
        else {
            return Ok(None);
        };
        let resolver = resolver(nameservers, spec.refresh_interval)
            .map_err(|error| format!("resolver setup: {error}"))?;
        Ok(Some(Prepared {
            resolver,
            names,
            record: *record,
            port: *port,
        }))
    }

    async fn ask(&self) -> Refresh {
        lookup(&self.resolver, self.names, self.record, self.port).await
    }
}

fn resolver(
    nameservers: &[std::net::SocketAddr],
    refresh: Duration,
) -> Result<TokioResolver, ResolveError> {
    let mut builder = if nameservers.is_empty() {
        let path = std::env::var_os(RESOLV_CONF_ENV).unwrap_or_else(|| RESOLV_CONF.into());
        let text = std::fs::read(&path).map_err(|e| {
            ResolveError::from(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", std::path::Path::new(&path).display()),
            ))
        })?;
        let (config, options) = parse_resolv_conf(text)?;
        Resolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(options)
    } else {
        let mut config = ResolverConfig::new();
        for addr in nameservers {
            config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
        }
        Resolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    // A lookup must end before the next refresh is due, or a dead server holds the source
    // silent instead of failing it.
    options.timeout = options.timeout.min(refresh);
    Ok(builder.build())
}

/// One refresh over every name. A name without records adds no targets; any other failure
/// fails the refresh.
pub async fn lookup(
    resolver: &TokioResolver,
    names: &[String],
    record: DnsRecord,
    port: Option<u16>,
) -> Refresh {
    let mut out = Vec::new();
    for name in names {
        let result = match record {
            DnsRecord::Srv => srv(resolver, name).await,
            DnsRecord::A => resolver.ipv4_lookup(name.as_str()).await.map(|l| {
                l.iter()
                    .map(|a| address(name, &a.0.to_string(), port.unwrap_or(0)))
                    .collect()
            }),
            DnsRecord::Aaaa => resolver.ipv6_lookup(name.as_str()).await.map(|l| {
                l.iter()
                    .map(|a| address(name, &format!("[{}]", a.0), port.unwrap_or(0)))
                    .collect()
            }),
        };
        match result {
            Ok(found) => out.extend(found),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {}
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    Ok(out)
}

async fn srv(resolver: &TokioResolver, name: &str) -> Result<Vec<Discovered>, ResolveError> {
    let lookup = resolver.srv_lookup(name).await?;
    Ok(lookup
        .iter()
        .map(|srv| {
            let target = srv.target().to_utf8();
            let host = target.trim_end_matches('.');
            let mut labels = labels(name, host, srv.port());
            labels.insert("__meta_dns_srv_record_target".into(), target.clone());
            labels.insert("__meta_dns_srv_record_port".into(), srv.port().to_string());
            discovered(name, labels)
        })
        .collect())
}

fn address(name: &str, host: &str, port: u16) -> Discovered {
    discovered(name, labels(name, host, port))
}

fn labels(name: &str, host: &str, port: u16) -> crate::relabel::Labels {
    let mut labels = crate::relabel::Labels::new();
    labels.insert("__address__".into(), format!("{host}:{port}"));
    labels.insert("__meta_dns_name".into(), name.to_owned());
    labels
}

fn discovered(name: &str, labels: crate::relabel::Labels) -> Discovered {
    Discovered {
        labels: labels.into(),
        from: format!("name={name}").into(),
    }
}
