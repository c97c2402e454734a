//! Files the config names: secrets (tokens, passwords) and the TLS files, read at load time
//! relative to the config file's folder, so that a missing or bad file is a config error with
//! its place and never a probe failure.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_saphyr::Spanned;

use super::layer::{Placed, TlsLayer};
use super::raw::RawTls;
use super::resolve::Resolver;
use super::secret::{Secret, TlsClient, TlsIdentity};
use super::tls::{client_config, TlsFiles};

impl Resolver {
    fn path(&self, file: &str) -> PathBuf {
        let path = Path::new(file);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir().join(path)
        }
    }

    /// Reads a file named in the config; `None` (with an issue) when it cannot be read.
    fn read_file(&mut self, file: &Spanned<String>, key: &str) -> Option<Vec<u8>> {
        let path = self.path(&file.value);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.issue(
                    file.referenced,
                    format!("{key}: cannot read {}: {e}", path.display()),
                    "check the path (relative paths start at the config file's folder) and its permissions",
                );
                None
            }
        }
    }

    /// A secret file's text without its trailing newline; its path is the secret's identity.
    pub(super) fn read_secret(&mut self, file: &Spanned<String>, key: &str) -> Option<Secret> {
        let bytes = self.read_file(file, key)?;
        let Ok(text) = String::from_utf8(bytes) else {
            self.issue(
                file.referenced,
                format!("{key}: the file is not UTF-8 text"),
                "store the secret as plain text",
            );
            return None;
        };
        // A trailing newline is an artefact of editors and `echo`, never part of a secret.
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            self.issue(
                file.referenced,
                format!("{key}: the file is empty"),
                "write the secret into the file",
            );
            return None;
        }
        let origin = format!("{key} {}", self.path(&file.value).display());
        Some(Secret::from_origin(&origin, trimmed.to_owned()))
    }

    /// A `tls:` section (of `http` or `grpc`) as a layer: its client and server name, placed
    /// where the section was written. None (with an issue) when a file cannot be used.
    pub(super) fn tls_layer(&mut self, tls: &Spanned<RawTls>) -> Option<Placed<TlsLayer>> {
        let client = self.tls_client(tls)?;
        let server_name = tls.value.server_name.as_ref().map(|s| s.value.clone());
        Some(Placed::new(
            TlsLayer {
                client,
                server_name,
            },
            tls.referenced,
        ))
    }

    /// Reads the files of a `tls:` section and builds its client.
    pub(super) fn tls_client(&mut self, tls: &Spanned<RawTls>) -> Option<TlsClient> {
        let raw = &tls.value;
        let mut read = |key: &str, file: Option<&Spanned<String>>| match file {
            Some(file) => self.read_file(file, key).map(Some).ok_or(()),
            None => Ok(None),
        };
        let ca_pem = read("ca_file", raw.ca_file.as_ref());
        let cert_pem = read("cert_file", raw.cert_file.as_ref());
        let key_pem = read("key_file", raw.key_file.as_ref());
        let (Ok(ca_pem), Ok(cert_pem), Ok(key_pem)) = (ca_pem, cert_pem, key_pem) else {
            return None;
        };
        let files = TlsFiles {
            ca_pem,
            cert_pem,
            key_pem,
            insecure_skip_verify: raw.insecure_skip_verify,
        };
        match client_config(&files) {
            Ok(config) => Some(TlsClient::new(
                identity(&files),
                config,
                key_pair_digest(&files),
            )),
            Err(e) => {
                self.issue(tls.referenced, format!("tls: {e}"), "");
                None
            }
        }
    }
}

/// What the files trust and whom they present: the client certificate's subject and issuer,
/// or its whole file when it cannot be read as X.509 (then any change is a new identity).
fn identity(files: &TlsFiles) -> TlsIdentity {
    let client_certificate = files.cert_pem.as_ref().map(|pem| {
        CertificateDer::pem_slice_iter(pem)
            .next()
            .and_then(Result::ok)
            .and_then(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
                let mut id = cert.subject().as_raw().to_vec();
                id.extend_from_slice(cert.issuer().as_raw());
                Some(id)
            })
            .unwrap_or_else(|| pem.clone())
    });
    TlsIdentity {
        ca_pem: files.ca_pem.clone(),
        client_certificate,
        insecure_skip_verify: files.insecure_skip_verify,
    }
}

/// A digest of the client certificate and key files, so that the key itself is not kept.
fn key_pair_digest(files: &TlsFiles) -> Vec<u8> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [&files.cert_pem, &files.key_pem] {
        let bytes = part.as_deref().unwrap_or_default();
        context.update(&(bytes.len() as u64).to_be_bytes());
        context.update(bytes);
    }
    context.finish().as_ref().to_vec()
}

/// The TLS client of https agents without a `tls:` section: built once per process.
pub(super) fn default_tls_client() -> Result<TlsClient, String> {
    static DEFAULT: OnceLock<Result<TlsClient, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let files = TlsFiles::default();
            client_config(&files)
                .map(|config| TlsClient::new(identity(&files), config, Vec::new()))
                .map_err(|e| e.to_string())
        })
        .clone()
}
