//! The trust anchors of an agent without `ca_file`: the operating system's store, as Go and
//! curl use, read once per process; the compiled-in Mozilla list only where the system has no
//! usable certificate. Which one is in use is logged once, when it is first needed.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;

/// Where the default trust anchors came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// The operating system's store (or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    System,
    /// webpki-roots' copy of the Mozilla list, because the system store had nothing usable.
    Mozilla,
}

/// The default trust anchors and their source, loaded on first use and then shared.
pub fn system_roots() -> (Arc<RootCertStore>, RootSource) {
    static ROOTS: OnceLock<(Arc<RootCertStore>, RootSource)> = OnceLock::new();
    let (store, source) = ROOTS.get_or_init(load);
    (Arc::clone(store), *source)
}

fn load() -> (Arc<RootCertStore>, RootSource) {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(found.certs);
    // The store's own errors (an unreadable file among many) do not stop the others from
    // being used; they are worth a line, as they may be why a CA is missing.
    for error in &found.errors {
        tracing::warn!(error = %error, "cannot read part of the system trust store");
    }
    if added > 0 {
        tracing::info!(
            certificates = added,
            unusable = ignored,
            "trust store without ca_file: the operating system's"
        );
        return (Arc::new(store), RootSource::System);
    }
    let mozilla = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    tracing::warn!(
        certificates = mozilla.roots.len(),
        "trust store without ca_file: the compiled-in Mozilla list, as the operating system has \
         no usable certificate (install ca-certificates, or set SSL_CERT_FILE)"
    );
    (Arc::new(mozilla), RootSource::Mozilla)
}
