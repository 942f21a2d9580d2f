//! TLS for the admin listener (`--tls-cert FILE --tls-key FILE`): rustls with the *ring*
//! provider (the one `fred` already links), TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
//!
//! [`load`] reads both PEM files at start-up; every way they can be unusable is a [`TlsError`]
//! naming the flag and the file (exit 64). The accept loop (`http::server`) does the handshake
//! per connection, off the accept path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The certificate chain and key files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert`: PEM, the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// `--tls-key`: PEM, PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key.
    pub key: PathBuf,
}

/// Why the TLS files cannot be used. Every message names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The cause is kept in `io`, and said in words in the message (no `os error` numbers).
    #[error("cannot read {flag} {}: {}", .path.display(), crate::settings::io_reason(.io))]
    Read {
        flag: &'static str,
        path: PathBuf,
        io: std::io::Error,
    },
    #[error("{flag} {}: {what}", .path.display())]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        what: String,
    },
    #[error("--tls-cert {} and --tls-key {} cannot be used together: {reason}", .cert.display(), .key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Reads and checks both files and builds the acceptor.
pub fn load(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let read = |flag: &'static str, path: &Path| {
        std::fs::read(path).map_err(|io| TlsError::Read {
            flag,
            path: path.to_owned(),
            io,
        })
    };
    let invalid = |flag: &'static str, path: &Path, what: &str| TlsError::Invalid {
        flag,
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let cert_pem = read("--tls-cert", &files.cert)?;
    let key_pem = read("--tls-key", &files.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("--tls-cert", &files.cert, "is not valid PEM"))?;
    if certs.is_empty() {
        return Err(invalid(
            "--tls-cert",
            &files.cert,
            "holds no certificate (expected PEM with -----BEGIN CERTIFICATE-----)",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        invalid(
            "--tls-key",
            &files.key,
            "holds no private key (expected PEM with -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )
    })?;
    let rejected = |reason: String| TlsError::Rejected {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| rejected(key_reason(&e)))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a rejected certificate/key pair means, in the operator's words.
fn key_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not belong to the certificate".into()
        }
        rustls::Error::General(_) => {
            "the private key is not a usable RSA, ECDSA or Ed25519 key".into()
        }
        other => other.to_string(),
    }
}
