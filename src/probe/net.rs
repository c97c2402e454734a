//! The two steps every network probe starts with: resolving the agent's host and connecting
//! to it, each timed into `Phases`. The TCP and HTTP probes use them for every hop; a new
//! protocol's probe (gRPC, MCP, A2A) connects through here too.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::net::TcpStream;

use super::{Failure, FailureReason, Phases};

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

/// Resolves `host` and connects to it: the usual first two steps, with `stage` naming the
/// one under way for a timeout message.
pub(super) async fn open(
    host: &str,
    port: u16,
    phases: &mut Phases,
    stage: &mut &'static str,
) -> Result<TcpStream, Failure> {
    *stage = "dns";
    let addrs = resolve(host, port, phases).await?;
    *stage = "connect";
    connect(&addrs, phases).await
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
    use std::time::Duration;

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
}
