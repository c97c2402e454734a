//! The TLS step of an https:// hop: the handshake on the connected socket, the name it checks,
//! the expiry of the chain the agent served (kept even when the handshake fails), and failures
//! worded for the person who has to fix them, never rustls' debug text.

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::{AlertDescription, CertificateError, ClientConfig, OtherError};
use rustls_pki_types::{ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::{excerpt, Failure, FailureReason, Phases};
use crate::config::tls::{earliest_expiry, watch_served_chain};

/// Runs the handshake for `url` and answers it with the earliest `notAfter` the agent served,
/// which is known whenever a certificate was presented, valid or not.
pub(super) async fn handshake(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
    phases: &mut Phases,
) -> (Result<TlsStream<TcpStream>, Failure>, Option<SystemTime>) {
    let host = server_name_text(&name);
    let started = Instant::now();
    let (handshake, expiry) =
        watch_served_chain(TlsConnector::from(config).connect(name, tcp)).await;
    phases.tls += started.elapsed();
    match handshake {
        // The connection's own record of the chain is the surest once it is established.
        Ok(stream) => {
            let served = stream.get_ref().1.peer_certificates().unwrap_or_default();
            let expiry = earliest_expiry(served.iter()).or(expiry);
            (Ok(stream), expiry)
        }
        Err(e) => (Err(handshake_failure(&e, &host)), expiry),
    }
}

/// The name the certificate must hold: `server_name` when configured (and `use_override`,
/// i.e. on the agent's own host), else the URL's host.
pub(super) fn server_name(
    url: &Url,
    configured: Option<&str>,
    use_override: bool,
) -> Result<ServerName<'static>, Failure> {
    let invalid = |name: &str| {
        Failure::new(
            FailureReason::Tls,
            format!(
                "{} is not a valid TLS server name; set tls.server_name to a DNS name",
                excerpt(name)
            ),
        )
    };
    if let (true, Some(name)) = (use_override, configured) {
        return ServerName::try_from(name.to_owned()).map_err(|_| invalid(name));
    }
    match url.host() {
        Some(Host::Domain(domain)) => {
            ServerName::try_from(domain.to_owned()).map_err(|_| invalid(domain))
        }
        Some(Host::Ipv4(ip)) => Ok(ServerName::IpAddress(IpAddr::V4(ip).into())),
        Some(Host::Ipv6(ip)) => Ok(ServerName::IpAddress(IpAddr::V6(ip).into())),
        None => Err(invalid("an empty host")),
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => "the agent".to_owned(),
    }
}

fn handshake_failure(err: &io::Error, host: &str) -> Failure {
    // tokio-rustls wraps the rustls error; without one it is the socket's own error.
    let detail = match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe(tls),
        None => match err.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the agent closed the connection during the handshake; is it serving TLS on this port?"
                    .to_owned()
            }
            _ => format!("{err}"),
        },
    };
    Failure::new(
        FailureReason::Tls,
        format!("TLS handshake with {host} failed: {detail}"),
    )
}

/// A TLS error met after the handshake, while the request and response were exchanged:
/// in TLS 1.3 a server that wants a client certificate says so only then, with an alert.
pub(super) fn failure_after_handshake(err: &(dyn StdError + 'static)) -> Option<Failure> {
    let mut source = Some(err);
    while let Some(cause) = source {
        // An io::Error's `source` skips the error it wraps: look inside it by hand.
        let wrapped = cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(tls) = cause.downcast_ref::<rustls::Error>().or(wrapped) {
            return Some(Failure::new(
                FailureReason::Tls,
                format!("TLS failed after the handshake: {}", describe(tls)),
            ));
        }
        source = cause.source();
    }
    None
}

/// What went wrong, and what to do about it, in words.
pub(super) fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => describe_certificate(cert),
        rustls::Error::AlertReceived(alert) => describe_alert(*alert),
        rustls::Error::NoCertificatesPresented => {
            "the agent presented no certificate; configure one on the agent".to_owned()
        }
        rustls::Error::PeerIncompatible(_) => "the agent offers no TLS version, cipher suite or \
            key exchange this exporter supports (TLS 1.2 or 1.3 with current algorithms); \
            update the agent's TLS settings"
            .to_owned(),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::DecryptError => {
            "the agent did not answer in valid TLS; is this port serving https, not plain http?"
                .to_owned()
        }
        other => format!("{other}"),
    }
}

fn describe_certificate(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => "the certificate is not issued by a trusted CA; \
            give the CA that issued it (or the certificate itself) as tls.ca_file, \
            or make the agent also serve its intermediate certificates"
            .to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "the certificate expired at {}; renew it on the agent",
            rfc3339(*not_after)
        ),
        CertificateError::Expired => {
            "the certificate (or one in its chain) has expired; renew it on the agent".to_owned()
        }
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the certificate is not valid before {}; check the clocks of the agent and of \
             this host",
            rfc3339(*not_before)
        ),
        CertificateError::NotValidYet => "the certificate is not valid yet; check the clocks \
            of the agent and of this host"
            .to_owned(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "the certificate is for {}, not {}; probe a name it holds, set tls.server_name, \
             or reissue it with this name",
            presented_names(presented),
            server_name_text(expected)
        ),
        CertificateError::NotValidForName => "the certificate does not hold the agent's name; \
            probe a name it holds, set tls.server_name, or reissue it with this name"
            .to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the certificate is not for server authentication (its extended key usage lacks \
             serverAuth); reissue it for TLS servers"
                .to_owned()
        }
        CertificateError::Revoked => "the certificate is revoked; replace it".to_owned(),
        CertificateError::BadSignature => "a signature in the certificate chain does not \
            verify; check that the agent serves the chain its CA issued"
            .to_owned(),
        CertificateError::BadEncoding => "the certificate is malformed; reissue it".to_owned(),
        CertificateError::Other(other) => describe_other(other),
        _ => "the certificate uses an algorithm or extension this exporter does not support; \
            reissue it with RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519"
            .to_owned(),
    }
}

fn describe_other(other: &OtherError) -> String {
    match other.0.downcast_ref::<webpki::Error>() {
        Some(webpki::Error::CaUsedAsEndEntity) => "the agent serves a CA certificate \
            (CA:TRUE) as its own; give that certificate as tls.ca_file to trust it directly, \
            or serve a certificate issued by the CA"
            .to_owned(),
        Some(webpki::Error::EndEntityUsedAsCa) => "a certificate in the served chain is not \
            a CA but signed another; serve the chain the CA issued"
            .to_owned(),
        Some(webpki::Error::NameConstraintViolation) => "the certificate's name is outside \
            what its CA may issue for (name constraints); reissue it from a CA allowed to"
            .to_owned(),
        _ => "the certificate chain is not acceptable; check it with \
            `openssl verify -CAfile <ca_file> -untrusted <intermediates> <certificate>`"
            .to_owned(),
    }
}

fn describe_alert(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => "the agent requires a client certificate; \
            give tls.cert_file and tls.key_file"
            .to_owned(),
        AlertDescription::HandshakeFailure => "the agent refused the handshake; it may \
            require a client certificate (tls.cert_file, tls.key_file) or a TLS version or \
            cipher suite this exporter does not offer"
            .to_owned(),
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => {
            "the agent rejected the client certificate; give in tls.cert_file a valid \
             certificate issued by a CA the agent trusts"
                .to_owned()
        }
        AlertDescription::UnrecognisedName => "the agent does not serve this name; set \
            tls.server_name to a name it serves"
            .to_owned(),
        AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity => {
            "the agent accepts no TLS version or cipher suite this exporter offers; allow \
             TLS 1.2 or 1.3 on the agent"
                .to_owned()
        }
        other => format!(
            "the agent ended the handshake with TLS alert {}; see the agent's log",
            u8::from(other)
        ),
    }
}

/// webpki lists the names as `DnsName("a")` / `IpAddress(1.2.3.4)`; people want `a, 1.2.3.4`.
fn presented_names(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no name".to_owned();
    }
    let names: Vec<String> = presented
        .iter()
        .map(|p| {
            let bare = p
                .strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
                .or_else(|| {
                    p.strip_prefix("IpAddress(")
                        .and_then(|n| n.strip_suffix(')'))
                })
                .unwrap_or(p);
            excerpt(bare)
        })
        .collect();
    names.join(", ")
}

fn rfc3339(time: UnixTime) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_message_shows_rust_debug_output() {
        let cases: Vec<rustls::Error> = vec![
            CertificateError::UnknownIssuer.into(),
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(2_000_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_900_000_000)),
            }
            .into(),
            CertificateError::Other(OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity))).into(),
            CertificateError::Other(OtherError(Arc::new(
                webpki::Error::MaximumPathDepthExceeded,
            )))
            .into(),
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("agent.test").unwrap(),
                presented: vec![
                    "DnsName(\"other.test\")".into(),
                    "IpAddress(10.0.0.1)".into(),
                ],
            }
            .into(),
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            rustls::Error::AlertReceived(AlertDescription::Unknown(200)),
        ];
        for err in &cases {
            let text = describe(err);
            for debug in [
                "Other(",
                "OtherError",
                "DnsName",
                "Context",
                "{",
                "Unknown(",
            ] {
                assert!(!text.contains(debug), "{text}");
            }
            assert!(text.contains("; "), "no advice in {text}");
        }
        assert_eq!(
            describe(&cases[1]),
            "the certificate expired at 2030-03-17T17:46:40Z; renew it on the agent"
        );
        assert!(describe(&cases[4])
            .starts_with("the certificate is for other.test, 10.0.0.1, not agent.test;"));
    }
}
