//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` in `--database-url`, through rustls.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and no certificate options, so
//! [`split`] takes rtconfig's TLS parameters out of the connection string (pure, table-tested)
//! and [`connector`] builds the rustls client that enforces them:
//!
//! | `sslmode` | encrypted | chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (the default, as libpq) | when the server offers TLS | no | no |
//! | `require` | always | only when `sslrootcert` is given (as libpq) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes (the URL's host against the certificate) |
//!
//! `sslrootcert=FILE` names a PEM file of the CA certificate(s) to trust; without it (or with
//! `sslrootcert=system`) the verifying modes trust Mozilla's root store, compiled into the
//! binary (`webpki-roots`), so an image needs no CA bundle. Client certificates (`sslcert`,
//! `sslkey`) are refused with a clear error rather than ignored.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, PgTlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(PgTlsError::Mode(other.to_owned())),
        })
    }

    /// The mode tokio-postgres is given: whether TLS is tried and whether it is required.
    fn for_client(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// No `sslrootcert`: Mozilla's roots when a mode verifies.
    Unset,
    /// `sslrootcert=system`: Mozilla's roots (compiled in).
    Bundled,
    /// `sslrootcert=FILE`: the PEM certificates in this file, only.
    File(PathBuf),
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Nothing (encryption against passive eavesdroppers only).
    None,
    /// The chain up to a trusted CA, not the host name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS part of a `--database-url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    pub roots: RootCerts,
}

impl TlsParams {
    /// libpq's rules: `require` with an explicit `sslrootcert` behaves like `verify-ca`.
    pub fn verification(&self) -> Verification {
        match (self.mode, &self.roots) {
            (SslMode::Disable | SslMode::Prefer, _) => Verification::None,
            (SslMode::Require, RootCerts::Unset) => Verification::None,
            (SslMode::Require | SslMode::VerifyCa, _) => Verification::Chain,
            (SslMode::VerifyFull, _) => Verification::Full,
        }
    }
}

/// A bad TLS setting in `--database-url`. Never shows the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    #[error(
        "--database-url: sslmode={0:?} is not one of disable, prefer, require, verify-ca, verify-full"
    )]
    Mode(String),
    #[error("--database-url: {0} is given twice")]
    Twice(&'static str),
    #[error(
        "--database-url: {0} is not supported (client certificates are not implemented; authenticate with a password over sslmode=verify-full)"
    )]
    Unsupported(String),
    #[error(
        "invalid --database-url: not a postgres:// URL nor key=value pairs (malformed near {0:?})"
    )]
    Malformed(String),
    #[error("--database-url: sslrootcert {}: cannot read its PEM certificates", .path.display())]
    ReadRoots {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("--database-url: sslrootcert {} holds no certificate", .path.display())]
    NoRoots { path: PathBuf },
    #[error("--database-url: sslrootcert {}: a certificate in it is not a valid CA certificate", .path.display())]
    BadRoot {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot set up TLS for PostgreSQL")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The parameters rtconfig handles itself; tokio-postgres never sees them.
const MODE: &str = "sslmode";
const ROOT: &str = "sslrootcert";
/// libpq TLS parameters refused with a clear error (tokio-postgres would say "unknown option").
const UNSUPPORTED: [&str; 5] = ["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// Splits `url` (a `postgres://` URL or a libpq `key=value` string) into the string
/// tokio-postgres parses (with `sslmode` reduced to what it knows) and the TLS parameters.
pub fn split(url: &str) -> Result<(String, TlsParams), PgTlsError> {
    let mut params = TlsParams {
        mode: SslMode::Prefer,
        roots: RootCerts::Unset,
    };
    let (mut seen_mode, mut seen_root) = (false, false);
    let mut take = |key: &str, value: &str| -> Result<bool, PgTlsError> {
        match key {
            MODE => {
                if std::mem::replace(&mut seen_mode, true) {
                    return Err(PgTlsError::Twice(MODE));
                }
                params.mode = SslMode::parse(value)?;
                Ok(true)
            }
            ROOT => {
                if std::mem::replace(&mut seen_root, true) {
                    return Err(PgTlsError::Twice(ROOT));
                }
                params.roots = match value {
                    "system" => RootCerts::Bundled,
                    "" => RootCerts::Unset,
                    path => RootCerts::File(PathBuf::from(path)),
                };
                Ok(true)
            }
            k if UNSUPPORTED.contains(&k) => Err(PgTlsError::Unsupported(k.to_owned())),
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url_form(url, &mut take)?
    } else {
        split_key_value_form(url, &mut take)?
    };
    let client_mode = params.mode.for_client();
    let out = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{sep}{MODE}={client_mode}")
    } else if rest.is_empty() {
        format!("{MODE}={client_mode}")
    } else {
        format!("{rest} {MODE}={client_mode}")
    };
    Ok((out, params))
}

type Take<'a> = dyn FnMut(&str, &str) -> Result<bool, PgTlsError> + 'a;

/// `postgres://…?a=b&sslmode=…`: the query's pairs, percent-decoded; the rest kept verbatim.
fn split_url_form(url: &str, take: &mut Take<'_>) -> Result<String, PgTlsError> {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let Some((head, query)) = base.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key: String = url::form_urlencoded::parse(format!("{k}=").as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default();
        let value: String = url::form_urlencoded::parse(format!("x={v}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !take(&key, &value)? {
            kept.push(pair);
        }
    }
    let mut out = head.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Ok(out)
}

/// `host=… sslmode=… password='a b'`: libpq's whitespace-separated pairs, values optionally
/// single-quoted with `\'` and `\\` escapes. Pairs that are not ours are re-emitted quoted.
fn split_key_value_form(s: &str, take: &mut Take<'_>) -> Result<String, PgTlsError> {
    let mut kept = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(PgTlsError::Malformed(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(PgTlsError::Malformed(key)),
                    },
                    Some(c) => value.push(c),
                    None => return Err(PgTlsError::Malformed(key)),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if !take(&key, &value)? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(kept.join(" "))
}

/// The rustls connector that enforces `params` (reads `sslrootcert` when one is named).
pub fn connector(params: &TlsParams) -> Result<MakeRustlsConnect, PgTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgTlsError::Setup(Box::new(e)))?;
    let config = match params.verification() {
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification { provider }))
            .with_no_client_auth(),
        Verification::Chain => {
            let roots = Arc::new(root_store(&params.roots)?);
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| PgTlsError::Setup(Box::new(e)))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        Verification::Full => builder
            .with_root_certificates(root_store(&params.roots)?)
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, PgTlsError> {
    match roots {
        RootCerts::Unset | RootCerts::Bundled => Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        RootCerts::File(path) => load_roots(path),
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, PgTlsError> {
    let read_err = |source| PgTlsError::ReadRoots {
        path: path.to_owned(),
        source,
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(read_err)? {
        store
            .add(cert.map_err(read_err)?)
            .map_err(|source| PgTlsError::BadRoot {
                path: path.to_owned(),
                source,
            })?;
    }
    if store.is_empty() {
        return Err(PgTlsError::NoRoots {
            path: path.to_owned(),
        });
    }
    Ok(store)
}

/// `prefer` and bare `require`: encrypt, but accept any certificate (libpq does the same).
/// The handshake signatures are still checked, so the peer holds the certificate's key.
struct NoVerification {
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for NoVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoVerification")
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the whole WebPKI check except the host name.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(mode: SslMode, roots: RootCerts) -> TlsParams {
        TlsParams { mode, roots }
    }

    #[test]
    fn split_takes_the_tls_parameters_out() {
        let file = || RootCerts::File(PathBuf::from("/etc/ca.pem"));
        for (url, want_url, want) in [
            (
                "postgres://u:p@db/rt",
                "postgres://u:p@db/rt?sslmode=prefer",
                p(SslMode::Prefer, RootCerts::Unset),
            ),
            (
                "postgres://u:p@db/rt?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
                "postgres://u:p@db/rt?sslmode=require",
                p(SslMode::VerifyFull, file()),
            ),
            (
                "postgresql://db/rt?application_name=x&sslmode=verify-ca&sslrootcert=/etc/ca.pem&connect_timeout=3",
                "postgresql://db/rt?application_name=x&connect_timeout=3&sslmode=require",
                p(SslMode::VerifyCa, file()),
            ),
            (
                "postgres://db/rt?sslmode=disable",
                "postgres://db/rt?sslmode=disable",
                p(SslMode::Disable, RootCerts::Unset),
            ),
            (
                "postgres://db/rt?sslrootcert=system&sslmode=require",
                "postgres://db/rt?sslmode=require",
                p(SslMode::Require, RootCerts::Bundled),
            ),
            (
                "host=db user=u sslmode=verify-full sslrootcert='/etc/ca.pem' password='a \\'b'",
                "host='db' user='u' password='a \\'b' sslmode=require",
                p(SslMode::VerifyFull, file()),
            ),
            ("", "sslmode=prefer", p(SslMode::Prefer, RootCerts::Unset)),
        ] {
            let (got_url, got) = split(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got_url, want_url, "{url}");
            assert_eq!(got, want, "{url}");
        }
    }

    #[test]
    fn split_refuses_what_it_cannot_honour() {
        for (url, want) in [
            (
                "postgres://db/rt?sslmode=verify",
                "sslmode=\"verify\" is not one of",
            ),
            (
                "postgres://db/rt?sslmode=require&sslmode=disable",
                "sslmode is given twice",
            ),
            (
                "postgres://db/rt?sslcert=/c.pem",
                "sslcert is not supported",
            ),
            ("host=db sslkey=/k.pem", "sslkey is not supported"),
            ("host=db password='open", "malformed near \"password\""),
            ("host", "malformed near \"host\""),
        ] {
            let err = split(url).expect_err(url).to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("db/rt"), "the URL is never echoed: {err}");
        }
    }

    #[test]
    fn verification_follows_libpq() {
        let file = || RootCerts::File(PathBuf::from("/ca.pem"));
        for (params, want) in [
            (p(SslMode::Disable, file()), Verification::None),
            (p(SslMode::Prefer, file()), Verification::None),
            (p(SslMode::Require, RootCerts::Unset), Verification::None),
            (p(SslMode::Require, file()), Verification::Chain),
            (p(SslMode::Require, RootCerts::Bundled), Verification::Chain),
            (p(SslMode::VerifyCa, RootCerts::Unset), Verification::Chain),
            (p(SslMode::VerifyCa, file()), Verification::Chain),
            (p(SslMode::VerifyFull, RootCerts::Unset), Verification::Full),
            (p(SslMode::VerifyFull, file()), Verification::Full),
        ] {
            assert_eq!(params.verification(), want, "{params:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_root_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = connector(&p(SslMode::VerifyFull, RootCerts::File(missing.clone())))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("missing.pem") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = connector(&p(SslMode::VerifyCa, RootCerts::File(empty)))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("empty.pem holds no certificate"), "{err}");
        assert!(connector(&p(SslMode::VerifyFull, RootCerts::Unset)).is_ok());
        assert!(connector(&p(SslMode::Prefer, RootCerts::Unset)).is_ok());
    }
}
