//! The server certificate check of every agent's TLS configuration. It delegates the chain
//! to webpki, then does what Go and OpenSSL do and webpki does not: a served certificate that
//! is itself a configured trust anchor (a self-signed `openssl req -x509` certificate, CA:TRUE,
//! given as `ca_file`) is trusted when it is valid now and names the host. It also notes the
//! earliest `notAfter` of the served chain for the probe, whether or not the check passes.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::ParsedExtension;

tokio::task_local! {
    /// The earliest `notAfter` of the chain served in the handshake running in this task.
    static SERVED_EXPIRY: Cell<Option<SystemTime>>;
}

/// Runs `handshake` and answers, with its output, the earliest `notAfter` of the certificates
/// the server presented, also when the handshake then failed (expired, unknown issuer...).
pub async fn watch_served_chain<F: Future>(handshake: F) -> (F::Output, Option<SystemTime>) {
    SERVED_EXPIRY
        .scope(Cell::new(None), async {
            let output = handshake.await;
            (output, SERVED_EXPIRY.with(Cell::get))
        })
        .await
}

/// The handshake-signature half of a rustls certificate verifier, the same on the agent side
/// (server certificates) and on the exporter's own (client certificates): delegated to the
/// crypto provider's algorithms, in the verifier's field `algorithms`.
macro_rules! provider_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}
pub(crate) use provider_signature_checks;

#[derive(Debug)]
pub(super) struct AgentVerifier {
    /// None for `insecure_skip_verify`: any certificate is accepted.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The certificates of `ca_file`, to recognise one served as the end entity.
    anchors: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AgentVerifier {
    pub(super) fn new(
        webpki: Option<Arc<WebPkiServerVerifier>>,
        anchors: Vec<CertificateDer<'static>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        AgentVerifier {
            webpki,
            anchors,
            algorithms,
        }
    }
}

impl ServerCertVerifier for AgentVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        note_served_chain(end_entity, intermediates);
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let verdict =
            webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verdict {
            Err(_)
                if self
                    .anchors
                    .iter()
                    .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                verify_anchor_as_end_entity(end_entity, server_name, now)
            }
            other => other,
        }
    }

    provider_signature_checks!();
}

/// A served certificate that is byte for byte one of the configured anchors is trusted by
/// configuration, as Go's and OpenSSL's verifiers do; what remains to check is that it is
/// valid now, names the host, and, when it limits its purposes, allows server authentication.
fn verify_anchor_as_end_entity(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
        .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
    let validity = cert.validity();
    let time = now.as_secs();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if i128::from(time) < i128::from(not_before) {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: UnixTime::since_unix_epoch(Duration::from_secs(not_before.unsigned_abs())),
        }
        .into());
    }
    if i128::from(time) > i128::from(not_after) {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(not_after.unsigned_abs())),
        }
        .into());
    }
    for extension in cert.extensions() {
        if let ParsedExtension::ExtendedKeyUsage(eku) = extension.parsed_extension() {
            if !(eku.server_auth || eku.any) {
                return Err(CertificateError::InvalidPurpose.into());
            }
        }
    }
    let parsed = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    Ok(ServerCertVerified::assertion())
}

fn note_served_chain(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
    let chain = std::iter::once(end_entity).chain(intermediates);
    let Some(earliest) = earliest_expiry(chain) else {
        return;
    };
    // Outside `watch_served_chain` nobody asked: nothing to note.
    let _ = SERVED_EXPIRY.try_with(|seen| {
        seen.set(Some(seen.get().map_or(earliest, |s| s.min(earliest))));
    });
}

/// The earliest `notAfter` among `chain`; certificates that do not parse are skipped.
pub fn earliest_expiry<'a>(
    chain: impl Iterator<Item = &'a CertificateDer<'a>>,
) -> Option<SystemTime> {
    chain
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            unix_time(cert.validity().not_after.timestamp())
        })
        .min()
}

fn unix_time(secs: i64) -> Option<SystemTime> {
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_and_positive_unix_times_convert() {
        assert_eq!(unix_time(0), Some(UNIX_EPOCH));
        assert_eq!(
            unix_time(-10),
            UNIX_EPOCH.checked_sub(Duration::from_secs(10))
        );
        assert_eq!(
            unix_time(1_900_000_000),
            Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        );
    }
}
