//! Heartbeats across shards and replicas (`--heartbeat.peers`): a report may reach any exporter
//! of the set, e.g. through one Service or proxy. The one that takes it forwards it to every
//! exporter that owns the agent: to the owning shard's replicas when it does not own the agent
//! (it still checks the token against the whole fleet's, which every exporter loads), and to its
//! own shard's other replicas when it does. Forwarded reports are marked and never forwarded
//! again. The report is answered once its forwards are done (bounded in time and in number), so
//! that an agent's reports reach its owners in the order it sent them; a forward that fails is
//! counted and logged, never retried.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{ResolvedAgent, Secret};
use crate::shard::{hashmod, Shard};

mod rate;

/// Marks a forwarded report; its value is the forwarding exporter's instance id, so that an
/// exporter can tell a report it forwarded to itself (a template naming its own address).
pub const FORWARDED_HEADER: &str = "x-agent-health-forwarded";

/// A forward that takes longer is a failure: a report is worth its period, not more.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwards under way at once to one peer; beyond it a report is not forwarded to that peer
/// (counted and logged), so that a flood of reports or a hanging peer cannot build an unbounded
/// queue, and a hanging peer holds up only the reports of its own agents.
pub const MAX_IN_FLIGHT_PER_PEER: usize = 64;

/// How often a failing forward is logged; the failures between are counted and summed up.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why `--heartbeat.peers` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeersError {
    #[error("--heartbeat.peers `{template}` has no `{{shard}}` while --shard.count is {count} (fix: put `{{shard}}` where the shard's number goes, e.g. http://agent-health-exporter-{{shard}}.agent-health-exporter:10056)")]
    NoShard { template: String, count: u64 },
    #[error("--heartbeat.peers `{template}` is no http:// or https:// URL of an exporter ({why}) (fix: e.g. http://agent-health-exporter-{{shard}}.agent-health-exporter:10056)")]
    BadUrl { template: String, why: String },
}

/// The peer templates, one per replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    templates: Vec<String>,
    /// Per shard, the rendered origins without repeats.
    origins: Vec<Vec<String>>,
}

impl Peers {
    /// Checks every template with every shard number of `shard`'s set.
    pub fn parse(templates: &[String], shard: Shard) -> Result<Peers, PeersError> {
        let mut origins = vec![Vec::<String>::new(); shard.count() as usize];
        for template in templates {
            if shard.count() > 1 && !template.contains("{shard}") {
                return Err(PeersError::NoShard {
                    template: template.clone(),
                    count: shard.count(),
                });
            }
            for (index, seen) in (0..shard.count()).zip(origins.iter_mut()) {
                let url = render(template, index);
                let bad = |why: String| PeersError::BadUrl {
                    template: template.clone(),
                    why,
                };
                let parsed = url::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad(format!("scheme `{}`", parsed.scheme())));
                }
                if parsed.host_str().is_none() {
                    return Err(bad("no host".into()));
                }
                if parsed.path() != "/" || parsed.query().is_some() {
                    return Err(bad("give the exporter's origin, without a path".into()));
                }
                // Two templates naming the same exporter (a repeated flag, a trailing slash, a
                // default port spelt out) would send it every report twice.
                let origin = parsed.origin().ascii_serialization();
                if !seen.contains(&origin) {
                    seen.push(origin);
                }
            }
        }
        Ok(Peers {
            templates: templates.to_vec(),
            origins,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The origins of shard `index`'s exporters, one per replica set, each once.
    fn origins(&self, index: u64) -> impl Iterator<Item = String> + '_ {
        self.origins
            .get(index as usize)
            .into_iter()
            .flatten()
            .cloned()
    }
}

fn render(template: &str, index: u64) -> String {
    template
        .replace("{shard}", &index.to_string())
        .trim_end_matches('/')
        .to_owned()
}

/// The heartbeat agents of the other shards and their tokens, so that a report for one of them
/// is checked here as its owner would check it: a wrong token and an unknown name get the same
/// 401 from every exporter, and only good reports travel.
#[derive(Default)]
pub struct Roster {
    foreign: RwLock<HashMap<Arc<str>, Secret>>,
    /// The owners' per-agent rate limit, for these agents.
    limits: rate::Limits,
}

impl Roster {
    /// Takes the whole fleet's heartbeat agents that `shard` does not own.
    pub fn set(&self, fleet: &[ResolvedAgent], shard: Shard) {
        let foreign = fleet
            .iter()
            .filter(|a| !shard.owns(&a.spec.name))
            .filter_map(|a| {
                let hb = a.spec.target.heartbeat()?;
                Some((Arc::from(a.spec.name.as_str()), hb.token.clone()))
            })
            .collect::<HashMap<_, _>>();
        self.limits.keep(|name| foreign.contains_key(name));
        *self.foreign.write().unwrap_or_else(PoisonError::into_inner) = foreign;
    }

    /// Whether `token` is that of heartbeat agent `name` of another shard; an unknown name
    /// costs what a wrong token costs.
    pub fn verify(&self, name: &str, token: Option<&[u8]>) -> bool {
        let expected = self
            .foreign
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(Secret::shared)
            .unwrap_or_default();
        crate::heartbeat::token_matches(&expected, token)
    }
}

/// One report to pass on, as the agent sent it.
#[derive(Debug, Clone)]
pub struct Report {
    /// The path as requested (still percent-encoded), e.g. `/api/v1/agents/a/heartbeat/start`.
    pub path: String,
    pub method: Method,
    pub authorization: Option<HeaderValue>,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Sends reports to the exporters that own their agents.
pub struct Forwarder {
    peers: Peers,
    shard: Shard,
    /// This process's id, the value of `FORWARDED_HEADER` it sends.
    instance: HeaderValue,
    roster: Arc<Roster>,
    /// Forwards under way, per peer origin.
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    failures: Counter,
    /// Origins that turned out to be this exporter (they answered 208 to its own id).
    selves: Mutex<HashSet<String>>,
    log: Mutex<LogGate>,
    /// For `https://` peers, trusting the system's store; `None` when no peer uses TLS.
    tls: Option<tokio_rustls::TlsConnector>,
}

/// Failures since the last log line, and when that was.
#[derive(Default)]
struct LogGate {
    last: Option<Instant>,
    unlogged: u64,
}

impl Forwarder {
    pub fn new(peers: Peers, shard: Shard, roster: Arc<Roster>, failures: Counter) -> Forwarder {
        // The trust store is read (and its source logged) only when a peer speaks TLS.
        let tls = peers
            .templates
            .iter()
            .any(|t| t.starts_with("https:"))
            .then(tls_connector)
            .flatten();
        Forwarder {
            peers,
            shard,
            instance: instance_id(),
            roster,
            in_flight: Mutex::default(),
            failures,
            selves: Mutex::default(),
            log: Mutex::default(),
            tls,
        }
    }

    /// Whether a report marked with `mark` came from this very exporter.
    pub fn is_own_mark(&self, mark: &HeaderValue) -> bool {
        mark == self.instance
    }

    /// Whether `name` is a heartbeat agent of another shard presenting its own token.
    pub fn owned_elsewhere(&self, name: &str, token: Option<&[u8]>) -> bool {
        self.roster.verify(name, token)
    }

    /// Applies the owner's rate limit to a report of `name`, an agent of another shard, before
    /// it is forwarded: `Err` with how long to wait when it is over.
    pub fn admit(&self, name: &str) -> Result<(), Duration> {
        self.roster.limits.take(name, Instant::now())
    }

    /// The bound on forwards under way to `origin`.
    fn slots(&self, origin: &str) -> Arc<Semaphore> {
        let mut slots = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = slots.get(origin) {
            return slots.clone();
        }
        let fresh = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_PEER));
        slots.insert(origin.to_owned(), fresh.clone());
        fresh
    }

    /// Passes `report` on to every replica of the shard owning `name` but this exporter, all at
    /// once, each bounded by `FORWARD_TIMEOUT`, and returns what they answered. The caller
    /// answers only then, so that the agent's next report cannot overtake this one.
    pub async fn forward(&self, name: &str, report: Report) -> Vec<Delivery> {
        let shard = hashmod(name, self.shard.count());
        let targets: Vec<String> = {
            let selves = self.selves.lock().unwrap_or_else(PoisonError::into_inner);
            self.peers
                .origins(shard)
                .filter(|origin| !selves.contains(origin))
                .collect()
        };
        let sends = targets
            .into_iter()
            .map(|origin| self.forward_one(name, origin, &report));
        futures_util::future::join_all(sends).await
    }

    async fn forward_one(&self, name: &str, origin: String, report: &Report) -> Delivery {
        let Ok(_permit) = self.slots(&origin).try_acquire_owned() else {
            self.failed(
                name,
                &origin,
                "too many forwards under way; this one is dropped",
            );
            return Delivery::Failed;
        };
        let outcome = tokio::time::timeout(FORWARD_TIMEOUT, self.send(&origin, report)).await;
        match outcome {
            Ok(Ok(Sent::Taken)) => Delivery::Taken,
            Ok(Ok(Sent::ToSelf)) => {
                tracing::debug!(peer = %origin, "this peer URL is this exporter; not forwarding to it again");
                self.selves
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(origin);
                Delivery::ToSelf
            }
            Ok(Ok(Sent::Refused {
                status,
                retry_after,
            })) => {
                self.failed(name, &origin, &format!("answered {status}"));
                match status {
                    401 => Delivery::Unauthorized,
                    429 => Delivery::RateLimited(retry_after),
                    _ => Delivery::Failed,
                }
            }
            Ok(Err(why)) => {
                self.failed(name, &origin, &why);
                Delivery::Failed
            }
            Err(_) => {
                let why = format!(
                    "no answer within {}",
                    humantime::format_duration(FORWARD_TIMEOUT)
                );
                self.failed(name, &origin, &why);
                Delivery::Failed
            }
        }
    }

    async fn send(&self, origin: &str, report: &Report) -> Result<Sent, String> {
        let url = url::Url::parse(origin).map_err(|e| e.to_string())?;
        let host = url.host_str().ok_or("no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut request = Request::builder()
            .method(report.method.clone())
            .uri(&report.path)
            .header(header::HOST, url.authority())
            .header(FORWARDED_HEADER, self.instance.clone())
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(auth) = &report.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        if let Some(kind) = &report.content_type {
            request = request.header(header::CONTENT_TYPE, kind.clone());
        }
        let request = request
            .body(Full::new(report.body.clone()))
            .map_err(|e| e.to_string())?;
        let status = if url.scheme() == "https" {
            let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']))
                .map_err(|e| e.to_string())?
                .to_owned();
            let connector = self.tls.as_ref().ok_or("no TLS client could be set up")?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(TokioIo::new(tls), request).await?
        } else {
            exchange(TokioIo::new(tcp), request).await?
        };
        let (status, retry_after) = status;
        Ok(match status.as_u16() {
            208 => Sent::ToSelf,
            200..=299 => Sent::Taken,
            status => Sent::Refused {
                status,
                retry_after,
            },
        })
    }

    /// Counts a failed forward; logs it unless one was logged in the last `LOG_EVERY`.
    fn failed(&self, agent: &str, origin: &str, why: &str) {
        self.failures.inc();
        let mut gate = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if gate.last.is_some_and(|last| now < last + LOG_EVERY) {
            gate.unlogged += 1;
            return;
        }
        let earlier = std::mem::take(&mut gate.unlogged);
        gate.last = Some(now);
        tracing::warn!(agent, peer = origin, error = why, unlogged_failures_before = earlier, "heartbeat report not forwarded (counted in agent_exporter_heartbeat_forward_failures_total)");
    }
}

fn tls_connector() -> Option<tokio_rustls::TlsConnector> {
    let (roots, _) = crate::config::tls::system_roots();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tracing::error!(error = %e, "no TLS client for https:// heartbeat peers"))
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

enum Sent {
    Taken,
    /// The peer was this exporter.
    ToSelf,
    /// Any other answer, with its `Retry-After` when it has one.
    Refused {
        status: u16,
        retry_after: Option<HeaderValue>,
    },
}

/// What one owner made of a forwarded report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Taken,
    /// The origin is this exporter; nothing was sent.
    ToSelf,
    /// The owner does not know the agent or its token (a config not yet reloaded there).
    Unauthorized,
    /// The owner's rate limit, with its `Retry-After`.
    RateLimited(Option<HeaderValue>),
    /// Not sent, no answer in time, or any other answer.
    Failed,
}

const USER_AGENT: &str = concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION"));

async fn exchange<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Option<HeaderValue>), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let conn = tokio::spawn(conn);
    let answer = sender.send_request(request).await;
    conn.abort();
    answer
        .map(|a| (a.status(), a.headers().get(header::RETRY_AFTER).cloned()))
        .map_err(|e| format!("HTTP: {e}"))
}

/// A random id for this process, in hex.
fn instance_id() -> HeaderValue {
    let mut bytes = [0u8; 12];
    let random = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&random, &mut bytes).is_err() {
        // Without randomness, the process id and start time still tell exporters apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
        bytes[4..].copy_from_slice(&(nanos as u64).to_be_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_need_shard_and_an_origin() {
        let three = Shard::new(0, 3).unwrap();
        let ok = Peers::parse(&["http://e-{shard}.e:10056".into()], three).unwrap();
        assert_eq!(
            ok.origins(2).collect::<Vec<_>>(),
            vec!["http://e-2.e:10056".to_owned()]
        );
        let none = Peers::parse(&["http://e.e:10056".into()], three).unwrap_err();
        assert!(none.to_string().contains("{shard}"), "{none}");
        let path = Peers::parse(&["http://e-{shard}:1/x".into()], three).unwrap_err();
        assert!(path.to_string().contains("without a path"), "{path}");
        let scheme = Peers::parse(&["ftp://e-{shard}".into()], three).unwrap_err();
        assert!(scheme.to_string().contains("ftp"), "{scheme}");
        // One shard (an HA pair): the template may name the exporter without `{shard}`.
        assert!(Peers::parse(&["http://e-a:10056".into()], Shard::default()).is_ok());
    }

    #[test]
    fn same_exporter_named_twice_is_one_peer() {
        let three = Shard::new(0, 3).unwrap();
        // The same exporter named twice is one peer.
        let twice = Peers::parse(
            &[
                "http://e-{shard}.e:10056".into(),
                "http://E-{shard}.e:10056/".into(),
                "http://e-{shard}.e:10056".into(),
            ],
            three,
        )
        .unwrap();
        for shard in 0..3 {
            assert_eq!(
                twice.origins(shard).collect::<Vec<_>>(),
                vec![format!("http://e-{shard}.e:10056")]
            );
        }
    }
}
