//! `agent-health-exporter healthcheck`: asks the exporter serving on this host for `/-/healthy`
//! and answers with an exit status, for container runtimes (`HEALTHCHECK`, compose's
//! `healthcheck:`) in an image that has no shell and no curl.
//!
//! It dials loopback, so the address it is given is the exporter's listen address: `:PORT`,
//! `0.0.0.0` and `[::]` mean this host. With a web config that serves TLS it speaks https and
//! trusts exactly the certificate of `cert_file` (the server's own, usually self-signed or
//! issued for a name other than loopback's), with the handshake's signature checked, so no CA
//! and no name are involved. With basic auth the server protects `/-/healthy` too and this
//! process holds only bcrypt hashes: the server's own 401 challenge counts as alive.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::server::web_config::{self, WebConfig, WebConfigError};

/// The whole check, connect to answer; a container runtime's own timeout is usually 30 s.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The challenge the exporter answers without credentials (see `server::guarded`).
const OWN_CHALLENGE: &str = "Basic realm=\"agent-health-exporter\"";

const PATH: &str = "/-/healthy";

/// Why the exporter is not known to be healthy. Each is one line for standard error.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error("cert_file of the web config holds no PEM certificate")]
    NoCertificate,
    #[error("cannot set up TLS: {0}")]
    TlsSetup(rustls::Error),
    #[error(
        "{address:?} is not a host:port to ask; give --web.listen-address as the exporter has it"
    )]
    Address { address: String },
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {address}: {source} (is the exporter running, on --web.listen-address={listen}?)")]
    Connect {
        address: String,
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {address} failed: {source}")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("GET {url} answered {status}, not 200")]
    Status { url: String, status: StatusCode },
    #[error("GET {url} answered 401: the exporter asks for basic auth; give healthcheck the exporter's --web.config.file")]
    Unauthorized { url: String },
    #[error("GET {url} got no answer within {}s", TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Checks the exporter listening on `listen_address` (its own flag's value), with the web
/// config it was started with, if any.
pub fn run(listen_address: &str, web_config_file: Option<&Path>) -> Result<(), HealthcheckError> {
    let web = match web_config_file {
        Some(path) => web_config::load(path)?,
        None => WebConfig::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HealthcheckError::Runtime)?;
    runtime.block_on(check(listen_address, &web))
}

async fn check(listen_address: &str, web: &WebConfig) -> Result<(), HealthcheckError> {
    let target = loopback(listen_address);
    let tls = match &web.tls_cert_pem {
        Some(pem) => Some(pinned_client(pem)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{target}{PATH}");
    let attempt = async {
        let tcp = connect(&target, listen_address).await?;
        match tls {
            Some(config) => {
                // The certificate is pinned, so the name is never checked; an IP sends no SNI.
                let ip = tcp
                    .peer_addr()
                    .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::IpAddress(ip.into()), tcp)
                    .await
                    .map_err(|source| HealthcheckError::Tls {
                        address: target.clone(),
                        source,
                    })?;
                get(stream, &target, &url).await
            }
            None => get(tcp, &target, &url).await,
        }
    };
    let answer = tokio::time::timeout(TIMEOUT, attempt)
        .await
        .map_err(|_| HealthcheckError::Timeout { url: url.clone() })??;
    verdict(&answer, web.auth.is_some(), url)
}

/// The answer's status and challenge, all a verdict needs.
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
}

fn verdict(answer: &Answer, basic_auth: bool, url: String) -> Result<(), HealthcheckError> {
    match answer.status {
        StatusCode::OK => Ok(()),
        // Only the exporter's guard answers this challenge, after parsing the request: the
        // server is up. Without basic auth in the given web config, the flags differ from the
        // exporter's, and saying so helps more than a pass.
        StatusCode::UNAUTHORIZED
            if basic_auth && answer.challenge.as_deref() == Some(OWN_CHALLENGE) =>
        {
            Ok(())
        }
        StatusCode::UNAUTHORIZED => Err(HealthcheckError::Unauthorized { url }),
        status => Err(HealthcheckError::Status { url, status }),
    }
}

/// The address to dial for a listen address: the unspecified ones mean every interface of
/// this host, so their loopback (the IPv4 one for `:PORT`, which the exporter serves on both
/// stacks).
fn loopback(listen_address: &str) -> String {
    if let Some(port) = listen_address.strip_prefix(':') {
        return format!("127.0.0.1:{port}");
    }
    match listen_address.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let ip = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(ip, addr.port()).to_string()
        }
        _ => listen_address.to_owned(),
    }
}

async fn connect(target: &str, listen: &str) -> Result<TcpStream, HealthcheckError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target)
        .await
        .map_err(|source| HealthcheckError::Resolve {
            address: target.to_owned(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(HealthcheckError::Connect {
        address: target.to_owned(),
        listen: listen.to_owned(),
        source: last,
    })
}

async fn get<S>(io: S, host: &str, url: &str) -> Result<Answer, HealthcheckError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |source| HealthcheckError::Http {
        url: url.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    let conn = tokio::spawn(conn);
    let request = Request::get(PATH)
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!(
                "agent-health-exporter/",
                env!("CARGO_PKG_VERSION"),
                " healthcheck"
            ),
        )
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let request = request.map_err(|_| HealthcheckError::Address {
        address: host.to_owned(),
    })?;
    let response = sender.send_request(request).await.map_err(failed)?;
    conn.abort();
    Ok(Answer {
        status: response.status(),
        challenge: response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
}

/// A client that trusts exactly the first certificate of `cert_pem`.
fn pinned_client(cert_pem: &[u8]) -> Result<Arc<ClientConfig>, HealthcheckError> {
    let leaf = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .and_then(Result::ok)
        .ok_or(HealthcheckError::NoCertificate)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = OwnCertificate {
        leaf,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HealthcheckError::TlsSetup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts the server's own certificate and no other: the exporter reached on loopback is the
/// one whose web config this process read. Expiry and names do not matter to a liveness check;
/// the handshake signature does, so only the holder of the key passes.
#[derive(Debug)]
struct OwnCertificate {
    leaf: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the web config's cert_file".to_owned(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_dialed_on_loopback() {
        assert_eq!(loopback(":10056"), "127.0.0.1:10056");
        assert_eq!(loopback("0.0.0.0:9"), "127.0.0.1:9");
        assert_eq!(loopback("[::]:9"), "[::1]:9");
        assert_eq!(loopback("192.0.2.1:9"), "192.0.2.1:9");
        assert_eq!(loopback("localhost:9"), "localhost:9");
    }

    #[test]
    fn only_the_exporters_own_challenge_passes_and_only_with_basic_auth_configured() {
        let answer = |status, challenge: Option<&str>| Answer {
            status,
            challenge: challenge.map(str::to_owned),
        };
        let url = || "http://127.0.0.1:1/-/healthy".to_owned();
        let own = answer(StatusCode::UNAUTHORIZED, Some(OWN_CHALLENGE));
        assert!(verdict(&answer(StatusCode::OK, None), false, url()).is_ok());
        assert!(verdict(&own, true, url()).is_ok());
        assert!(verdict(&own, false, url()).is_err());
        let other = answer(StatusCode::UNAUTHORIZED, Some("Basic realm=\"x\""));
        assert!(verdict(&other, true, url()).is_err());
        assert!(verdict(&answer(StatusCode::SERVICE_UNAVAILABLE, None), true, url()).is_err());
    }
}
