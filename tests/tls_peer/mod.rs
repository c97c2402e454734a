//! A small certificate authority (rcgen) and an HTTPS peer on loopback (rustls) whose chain,
//! client-certificate policy and TLS versions a test chooses: what `common::MockAgent` cannot
//! set up. The peer answers every request with `200 ok` and closes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A certificate with its key and its PEM, as an agent or a client would hold it.
pub struct Identity {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub key: KeyPair,
    pub not_after: SystemTime,
}

impl Identity {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// Validity of a certificate, in whole days around now.
#[derive(Clone, Copy)]
pub struct Days {
    pub from: i64,
    pub to: i64,
}

pub const VALID: Days = Days { from: -1, to: 365 };

fn params(names: &[&str], days: Days) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
    let now = time_now();
    params.not_before = now + time::Duration::days(days.from);
    params.not_after = now + time::Duration::days(days.to);
    // Whole seconds, so that `not_after` compares equal to what a parser reads back.
    params.not_after = params.not_after.replace_nanosecond(0).unwrap();
    params
}

fn time_now() -> time::OffsetDateTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap()
}

fn system_time(at: time::OffsetDateTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(at.unix_timestamp() as u64)
}

/// A self-signed certificate for `names`; `ca` sets CA:TRUE, as `openssl req -x509` does.
pub fn self_signed(names: &[&str], ca: bool, days: Days) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut params = params(names, days);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let not_after = system_time(params.not_after);
    let cert = params.self_signed(&key).unwrap();
    Identity {
        pem: cert.pem(),
        der: cert.der().clone(),
        key,
        not_after,
    }
}

/// A certificate authority that issues leaves and intermediates.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
    pub not_after: SystemTime,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = params(&[], VALID);
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after = system_time(params.not_after);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer, not_after }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let mut params = params(&[], VALID);
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after = system_time(params.not_after);
        let issuer =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.issuer).unwrap();
        Ca { issuer, not_after }
    }

    /// A leaf (CA:FALSE) certificate for `names`.
    pub fn leaf(&self, names: &[&str], days: Days) -> Identity {
        let key = KeyPair::generate().unwrap();
        let params = params(names, days);
        let not_after = system_time(params.not_after);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
            not_after,
        }
    }
}

/// How the peer sets up TLS.
pub struct PeerTls {
    /// The chain served, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Client certificates required, issued by this CA.
    pub client_ca: Option<CertificateDer<'static>>,
    /// TLS 1.2 only (the client-certificate refusal then comes inside the handshake).
    pub tls12_only: bool,
}

impl PeerTls {
    pub fn serving(identity: &Identity) -> PeerTls {
        PeerTls {
            chain: vec![identity.der.clone()],
            key: identity.key_der(),
            client_ca: None,
            tls12_only: false,
        }
    }

    fn config(self) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        builder.with_single_cert(self.chain, self.key).unwrap()
    }
}

/// An HTTPS peer on 127.0.0.1; stops when dropped.
pub struct TlsPeer {
    pub addr: SocketAddr,
    /// Handshakes completed, and how many of them resumed an earlier session.
    handshakes: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl TlsPeer {
    pub async fn start(tls: PeerTls) -> TlsPeer {
        let acceptor = TlsAcceptor::from(Arc::new(tls.config()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let resumed = Arc::new(AtomicUsize::new(0));
        let (counted, counted_resumed) = (Arc::clone(&handshakes), Arc::clone(&resumed));
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (counted, counted_resumed) =
                    (Arc::clone(&counted), Arc::clone(&counted_resumed));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                        counted_resumed.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = tls.write_all(answer).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsPeer {
            addr,
            handshakes,
            resumed,
            accept_loop,
        }
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn resumed(&self) -> usize {
        self.resumed.load(Ordering::SeqCst)
    }

    pub fn url(&self, host: &str) -> url::Url {
        url::Url::parse(&format!("https://{host}:{}/health", self.addr.port())).unwrap()
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}
