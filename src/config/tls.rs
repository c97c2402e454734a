//! Turns an agent's `http.tls` files into the rustls client configuration its HTTPS probes use.
//! Called once per agent by config loading, so a bad file is reported at load time with the
//! field to fix, never at probe time.

mod roots;
mod verify;

pub(crate) use verify::provider_signature_checks;

use std::sync::{Arc, OnceLock};

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use roots::{system_roots, RootSource};
use verify::AgentVerifier;
pub use verify::{earliest_expiry, watch_served_chain};

/// The contents of the files named under `http.tls`, already read by config loading.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates to trust instead of the built-in roots (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain, leaf first (`cert_file`).
    pub cert_pem: Option<Vec<u8>>,
    /// PEM private key of the client certificate (`key_file`).
    pub key_pem: Option<Vec<u8>>,
    /// Accept any server certificate (`insecure_skip_verify`).
    pub insecure_skip_verify: bool,
}

/// Why the TLS files of an agent cannot be used; each variant names the field and the fix.
#[derive(thiserror::Error, Debug, Clone)]
pub enum TlsSetupError {
    #[error("ca_file is not valid PEM ({0}); give certificates as PEM blocks starting with -----BEGIN CERTIFICATE----- (convert DER with `openssl x509 -inform der`)")]
    CaNotPem(String),
    #[error("ca_file has no certificate; it must hold at least one block starting with -----BEGIN CERTIFICATE-----")]
    CaNoCertificate,
    #[error("certificate #{index} of ca_file cannot be trusted ({source}); give X.509 CA certificates in ca_file")]
    CaRejected {
        /// Position of the certificate in the file, from 1.
        index: usize,
        source: rustls::Error,
    },
    #[error(
        "{given} is given without {missing}; give cert_file and key_file together, or neither"
    )]
    CertKeyNotPaired {
        given: &'static str,
        missing: &'static str,
    },
    #[error("cert_file is not valid PEM ({0}); give the client certificate chain as PEM blocks starting with -----BEGIN CERTIFICATE-----")]
    CertNotPem(String),
    #[error("cert_file has no certificate; it must hold the client certificate as a block starting with -----BEGIN CERTIFICATE-----")]
    CertNoCertificate,
    // The PEM parser's detail is left out: it may quote a line of the key file.
    #[error(
        "key_file is not valid PEM; give the private key as a PEM block (PKCS#8, PKCS#1 or SEC1)"
    )]
    KeyNotPem,
    #[error(
        "key_file has no private key; it must hold a block such as -----BEGIN PRIVATE KEY-----"
    )]
    KeyNoPrivateKey,
    #[error("cert_file and key_file were rejected ({0}); check that key_file is the private key of cert_file's first certificate")]
    ClientCertRejected(rustls::Error),
    #[error("the TLS protocol versions cannot be set up ({0})")]
    Protocol(rustls::Error),
    #[error("the certificate verifier cannot be set up ({0}); check the certificates of ca_file")]
    Verifier(String),
}

/// Builds the client configuration for one agent.
///
/// Trust: when `ca_pem` is given, its certificates are the ONLY roots trusted, as Prometheus and
/// blackbox_exporter do with `ca_file`: a private CA is then the whole trust, and a public CA
/// cannot vouch for an internal agent. A served certificate that is itself in `ca_file` is
/// trusted too (as Go and OpenSSL do), still checked for its validity period and name.
/// Without `ca_file`, the operating system's store (see `roots`). With `insecure_skip_verify`
/// no certificate is checked (handshake signatures still are).
/// ALPN offers `http/1.1` only: the probe speaks HTTP/1.1.
///
/// Agents without any file share one configuration, built once per process.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsSetupError> {
    if *files == TlsFiles::default() {
        return default_client_config();
    }
    build(files)
}

/// The configuration of every agent without `tls` files, and of http:// agents redirected to
/// https://: the system's trust store, no client certificate. Built on first use, then shared.
pub fn default_client_config() -> Result<Arc<ClientConfig>, TlsSetupError> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, TlsSetupError>> = OnceLock::new();
    DEFAULT.get_or_init(|| build(&TlsFiles::default())).clone()
}

/// The one crypto provider of every client configuration.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

fn build(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocol)?;
    let verifier = if files.insecure_skip_verify {
        AgentVerifier::new(None, Vec::new(), provider.signature_verification_algorithms)
    } else {
        let (roots, anchors) = match files.ca_pem.as_deref() {
            Some(ca_pem) => {
                let anchors = ca_certs(ca_pem)?;
                (Arc::new(root_store(&anchors)?), anchors)
            }
            None => (system_roots().0, Vec::new()),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
        AgentVerifier::new(
            Some(webpki),
            anchors,
            provider.signature_verification_algorithms,
        )
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client_identity(files)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsSetupError::ClientCertRejected)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every probe makes a full handshake, as blackbox_exporter's does: a resumed session would
    // skip the certificate check, so an expired or replaced certificate would go unnoticed.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

fn ca_certs(ca_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = read_certs(ca_pem).map_err(|e| TlsSetupError::CaNotPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsSetupError::CaNoCertificate);
    }
    Ok(certs)
}

fn root_store(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store
            .add(cert.clone())
            .map_err(|source| TlsSetupError::CaRejected {
                index: i + 1,
                source,
            })?;
    }
    Ok(store)
}

type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(files: &TlsFiles) -> Result<Option<ClientIdentity>, TlsSetupError> {
    let (cert_pem, key_pem) = match (&files.cert_pem, &files.key_pem) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(TlsSetupError::CertKeyNotPaired {
                given: "cert_file",
                missing: "key_file",
            })
        }
        (None, Some(_)) => {
            return Err(TlsSetupError::CertKeyNotPaired {
                given: "key_file",
                missing: "cert_file",
            })
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = read_certs(cert_pem).map_err(|e| TlsSetupError::CertNotPem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsSetupError::CertNoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsSetupError::KeyNoPrivateKey,
        _ => TlsSetupError::KeyNotPem,
    })?;
    Ok(Some((chain, key)))
}

/// Every certificate in a PEM file; other kinds of blocks and text between blocks are skipped.
fn read_certs(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_slice_iter(pem_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["agent.test".to_owned()]).unwrap()
    }

    fn files() -> TlsFiles {
        TlsFiles::default()
    }

    #[test]
    fn default_config_offers_http1_only_and_trusts_public_roots() {
        let config = client_config(&files()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(
            Arc::ptr_eq(&config, &client_config(&files()).unwrap()),
            "built once"
        );
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn ca_file_certificates_are_accepted() {
        let ca = self_signed();
        let mut two = ca.cert.pem();
        two.push_str(&self_signed().cert.pem());
        let files = TlsFiles {
            ca_pem: Some(two.into_bytes()),
            ..files()
        };
        assert!(client_config(&files).is_ok());
    }

    #[test]
    fn ca_file_without_certificate_is_rejected() {
        let files = TlsFiles {
            ca_pem: Some(b"just some text\n".to_vec()),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert!(matches!(err, TlsSetupError::CaNoCertificate), "{err}");
        assert!(err.to_string().starts_with("ca_file has no certificate"));
    }

    #[test]
    fn ca_file_with_broken_pem_is_rejected() {
        let files = TlsFiles {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert!(matches!(err, TlsSetupError::CaNotPem(_)), "{err}");
    }

    #[test]
    fn ca_file_with_a_non_certificate_is_rejected() {
        let files = TlsFiles {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert!(
            matches!(err, TlsSetupError::CaRejected { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn cert_file_without_key_file_is_rejected() {
        let id = self_signed();
        let files = TlsFiles {
            cert_pem: Some(id.cert.pem().into_bytes()),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cert_file is given without key_file; give cert_file and key_file together, or neither"
        );
    }

    #[test]
    fn key_file_without_cert_file_is_rejected() {
        let id = self_signed();
        let files = TlsFiles {
            key_pem: Some(id.signing_key.serialize_pem().into_bytes()),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert!(
            matches!(
                err,
                TlsSetupError::CertKeyNotPaired {
                    given: "key_file",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn client_certificate_is_loaded() {
        let id = self_signed();
        let files = TlsFiles {
            cert_pem: Some(id.cert.pem().into_bytes()),
            key_pem: Some(id.signing_key.serialize_pem().into_bytes()),
            ..files()
        };
        let config = client_config(&files).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn key_file_holding_only_a_certificate_is_rejected() {
        let id = self_signed();
        let files = TlsFiles {
            cert_pem: Some(id.cert.pem().into_bytes()),
            key_pem: Some(id.cert.pem().into_bytes()),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert!(matches!(err, TlsSetupError::KeyNoPrivateKey), "{err}");
    }

    #[test]
    fn key_of_another_certificate_is_rejected() {
        let id = self_signed();
        let other = self_signed();
        let files = TlsFiles {
            cert_pem: Some(id.cert.pem().into_bytes()),
            key_pem: Some(other.signing_key.serialize_pem().into_bytes()),
            ..files()
        };
        let err = client_config(&files).unwrap_err();
        assert!(matches!(err, TlsSetupError::ClientCertRejected(_)), "{err}");
    }

    #[test]
    fn insecure_skip_verify_needs_no_roots() {
        let files = TlsFiles {
            insecure_skip_verify: true,
            ..files()
        };
        let config = client_config(&files).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
