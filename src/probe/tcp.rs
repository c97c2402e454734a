//! The TCP probe (`tcp://host:port`): healthy when a connection is accepted in time.
//! Also the two steps every probe starts with, resolving the host and connecting,
//! which the HTTP probe reuses for each hop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;

use super::expect::degraded_by;
use super::{FailureReason, Outcome, Phases, ProbeResult};
use crate::config::AgentSpec;

/// A step of a probe that failed, with the one reason it is counted under.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) reason: FailureReason,
    /// Short, for people; never holds a header value or a credential.
    pub(super) error: String,
}

impl Failure {
    pub(super) fn new(reason: FailureReason, error: impl Into<String>) -> Self {
        Failure {
            reason,
            error: error.into(),
        }
    }

    pub(super) fn into_outcome(self) -> Outcome {
        Outcome::Failed {
            reason: self.reason,
            error: self.error,
        }
    }
}

/// The outcome of a probe cut short by its timeout, naming the phase it was in.
pub(super) fn timed_out(timeout: Duration, stage: &str) -> Outcome {
    Failure::new(
        FailureReason::Timeout,
        format!(
            "timed out after {} during {stage}",
            humantime::format_duration(timeout)
        ),
    )
    .into_outcome()
}

pub(super) async fn probe(spec: &AgentSpec, host: &str, port: u16) -> ProbeResult {
    let started = Instant::now();
    let mut phases = Phases::default();
    let mut stage = "dns";
    let attempt = tokio::time::timeout(spec.timeout, async {
        let addrs = resolve(host, port, &mut phases).await?;
        stage = "connect";
        connect(&addrs, &mut phases).await.map(drop)
    })
    .await;
    let duration = started.elapsed();
    let outcome = match attempt {
        Ok(Ok(())) => match degraded_by(&spec.degraded, duration, None) {
            Some(why) => Outcome::Degraded(why),
            None => Outcome::Healthy,
        },
        Ok(Err(failure)) => failure.into_outcome(),
        Err(_) => timed_out(spec.timeout, stage),
    };
    ProbeResult {
        ended_at: SystemTime::now(),
        duration,
        phases,
        http_status: None,
        cert_expiry: None,
        protocol: Default::default(),
        outcome,
    }
}

/// The addresses of `host`, in resolver order. A literal IP (IPv6 with or without brackets)
/// is used as is: no lookup, and the dns phase stays zero.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    phases: &mut Phases,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Some(ip) = literal_ip(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let started = Instant::now();
    let found = tokio::net::lookup_host((host, port)).await;
    phases.dns += started.elapsed();
    let addrs: Vec<SocketAddr> = found
        .map_err(|e| Failure::new(FailureReason::Dns, format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::new(
            FailureReason::Dns,
            format!("{host} has no addresses"),
        ));
    }
    Ok(addrs)
}

fn literal_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Connects to the first address that accepts, trying them in order: a name that resolves to
/// both ::1 and 127.0.0.1 must still reach an agent listening on only one of them.
pub(super) async fn connect(
    addrs: &[SocketAddr],
    phases: &mut Phases,
) -> Result<TcpStream, Failure> {
    let started = Instant::now();
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                phases.connect += started.elapsed();
                return Ok(stream);
            }
            Err(e) => last_error = Some((*addr, e)),
        }
    }
    phases.connect += started.elapsed();
    Err(match last_error {
        Some((addr, e)) => connect_failure(addr, &e, addrs.len()),
        None => Failure::new(FailureReason::Connect, "no address to connect to"),
    })
}

fn connect_failure(addr: SocketAddr, err: &io::Error, tried: usize) -> Failure {
    let mut error = match err.kind() {
        io::ErrorKind::ConnectionRefused => format!("connection refused by {addr}"),
        _ => format!("cannot connect to {addr}: {err}"),
    };
    if tried > 1 {
        error.push_str(&format!(" (last of {tried} addresses)"));
    }
    Failure::new(FailureReason::Connect, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_ips_are_recognised_with_or_without_brackets() {
        assert_eq!(literal_ip("127.0.0.1"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(literal_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("localhost"), None);
        assert_eq!(literal_ip("[localhost]"), None);
    }

    #[tokio::test]
    async fn literal_ip_is_not_looked_up() {
        let mut phases = Phases::default();
        let addrs = resolve("[::1]", 8080, &mut phases).await.unwrap();
        assert_eq!(addrs, vec!["[::1]:8080".parse().unwrap()]);
        assert_eq!(phases.dns, Duration::ZERO);
    }

    #[test]
    fn refused_connection_names_the_address() {
        let err = io::Error::from(io::ErrorKind::ConnectionRefused);
        let addr = "127.0.0.1:8081".parse().unwrap();
        assert_eq!(
            connect_failure(addr, &err, 1),
            Failure::new(
                FailureReason::Connect,
                "connection refused by 127.0.0.1:8081"
            )
        );
        assert_eq!(
            connect_failure(addr, &err, 2).error,
            "connection refused by 127.0.0.1:8081 (last of 2 addresses)"
        );
    }

    #[test]
    fn timeout_names_the_phase() {
        assert_eq!(
            timed_out(Duration::from_millis(300), "first_byte"),
            Outcome::Failed {
                reason: FailureReason::Timeout,
                error: "timed out after 300ms during first_byte".into()
            }
        );
    }
}
