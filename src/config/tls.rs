//! Placeholder until the TLS client setup lands.
use std::sync::Arc;
pub struct TlsFiles {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("tls setup: {0}")]
    Setup(String),
}
pub fn client_config(_files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsSetupError::Setup(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(c))
}
