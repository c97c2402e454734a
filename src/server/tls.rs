//! The server side of TLS for the exporter's own endpoints: builds the rustls server config from
//! the PEM files a web config names, with the client-certificate policy it asks for.

use crate::config::tls::provider_signature_checks;
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DistinguishedName, RootCertStore, ServerConfig};

/// The client-certificate policies of the exporter-toolkit format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// One is asked for; any, or none, is accepted.
    RequestClientCert,
    /// One must be sent; it is not checked against a CA.
    RequireAnyClientCert,
    /// One may be sent; when sent, it must chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// One must be sent and chain to `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Option<ClientAuth> {
        Some(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // The older spelling is still found in existing files.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }

    /// True for the policies that check certificates against `client_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// A TLS protocol version a web config may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn parse(text: &str) -> Option<TlsVersion> {
        match text {
            "TLS12" => Some(TlsVersion::Tls12),
            "TLS13" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

/// The contents of the files a `tls_server_config` names, already read.
pub struct ServerTlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
    pub client_auth: ClientAuth,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
}

/// Why the TLS files cannot be served; each names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("cert_file holds no PEM certificate (fix: give the server certificate chain as PEM blocks starting with -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    // The parser's detail is left out: it may quote a line of the key.
    #[error("key_file holds no usable PEM private key (fix: give the key as a PKCS#8, PKCS#1 or SEC1 PEM block)")]
    NoKey,
    #[error("client_ca_file holds no usable CA certificate (fix: give the CA of the client certificates as PEM)")]
    NoClientCa,
    #[error("the client certificate policy cannot be set up: {0}")]
    Verifier(String),
    #[error("cert_file and key_file do not fit together: {0} (fix: key_file must be the private key of cert_file's first certificate)")]
    Rejected(rustls::Error),
}

/// Builds the server config. ALPN offers `http/1.1`: the server speaks HTTP/1.1 only.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<ServerConfig>, ServerTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| ServerTlsError::NoCertificate)?;
    if chain.is_empty() {
        return Err(ServerTlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key_pem).map_err(|_| ServerTlsError::NoKey)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| files.min_version.is_none_or(|min| *v >= min))
    .filter(|(v, _)| files.max_version.is_none_or(|max| *v <= max))
    .map(|(_, v)| v)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ServerTlsError::Verifier(e.to_string()))?;
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match files.client_auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert => Some(Arc::new(AnyClientCert::new(&provider, false))),
        ClientAuth::RequireAnyClientCert => Some(Arc::new(AnyClientCert::new(&provider, true))),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let roots = client_roots(files.client_ca_pem.as_deref())?;
            let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let builder = if files.client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            Some(
                builder
                    .build()
                    .map_err(|e| ServerTlsError::Verifier(e.to_string()))?,
            )
        }
    };
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(ServerTlsError::Rejected)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_roots(pem_bytes: Option<&[u8]>) -> Result<Arc<RootCertStore>, ServerTlsError> {
    let pem_bytes = pem_bytes.ok_or(ServerTlsError::NoClientCa)?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem_bytes) {
        let cert = cert.map_err(|_| ServerTlsError::NoClientCa)?;
        store.add(cert).map_err(|_| ServerTlsError::NoClientCa)?;
    }
    if store.is_empty() {
        return Err(ServerTlsError::NoClientCa);
    }
    Ok(Arc::new(store))
}

/// Asks for a client certificate and accepts any (RequestClientCert, RequireAnyClientCert).
/// The handshake signature is still checked, so the client holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl AnyClientCert {
    fn new(provider: &CryptoProvider, mandatory: bool) -> Self {
        AnyClientCert {
            algorithms: provider.signature_verification_algorithms,
            mandatory,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    provider_signature_checks!();
}
