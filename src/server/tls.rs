//! TLS configuration: the rustls `ServerConfig` the listener uses, certificates loaded from
//! PEM files, and a certificate resolver that a SIGHUP can point at new files without
//! touching established connections.
//!
//! Crypto provider: `ring`. It builds with the C compiler alone (no cmake, no clang, both
//! absent here), compiles in seconds rather than the minutes aws-lc-sys takes on two
//! shared cores, and `rcgen` (the test certificate generator) uses it too, so one crypto
//! library is built, not two.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The only application protocol a WebSocket upgrade (RFC 6455 §4.1) travels over.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why certificates could not be loaded. Startup fails with it; a reload that fails
/// keeps the certificate in use and reports it.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM file could not be read or parsed (the path, and what went wrong).
    Pem(PathBuf, rustls::pki_types::pem::Error),
    /// The certificate file holds no certificate.
    NoCertificate(PathBuf),
    /// The key is unusable with the provider, or does not match the certificate.
    Key(rustls::Error),
    /// rustls refused the configuration (protocol versions vs provider).
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem(p, e) => write!(f, "{}: {e}", p.display()),
            TlsError::NoCertificate(p) => write!(f, "{}: no certificate in file", p.display()),
            TlsError::Key(e) => write!(f, "private key: {e}"),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider every TLS object of wsloop uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1) and checks that the key belongs to the leaf.
pub fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem(cert.to_owned(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(cert.to_owned(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem(key.to_owned(), e))?;
    CertifiedKey::from_der(chain, der, provider).map_err(TlsError::Key)
}

/// Serves the current certificate to every new handshake; [`CertReloader::reload`] swaps
/// it. A handshake takes its own `Arc` of the key, so connections already established (or
/// mid-handshake) keep what they started with.
#[derive(Debug)]
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertReloader {
    /// Loads the files once; fails if they are unusable.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let ck = load_certified_key(cert, key, &provider)?;
        Ok(CertReloader {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Reads the same two paths again. On success new handshakes use the new certificate;
    /// on error the old one stays in service and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        // A poisoned lock only means a panic while swapping an Arc: the value is whole.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        Ok(())
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS listener's configuration: the rustls config handed to each new connection, and
/// the reloader behind it (for SIGHUP) when the certificate came from files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    certs: Option<Arc<CertReloader>>,
}

impl TlsConfig {
    /// TLS 1.3 and 1.2, ALPN `http/1.1`, no client certificates, no TLS 1.3 session
    /// tickets (see [`TlsConfig::with_reloader`]).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let certs = Arc::new(CertReloader::from_pem_files(cert, key, provider.clone())?);
        Self::with_reloader(certs, provider)
    }

    /// Builds the config around an existing resolver.
    ///
    /// `send_tls13_tickets = 0`: with rustls' default (2) every TLS 1.3 handshake writes two
    /// tickets and stores two sessions in the shared server cache; a WebSocket connection
    /// is long-lived, so resumption saves little and the tickets cost bytes and memory.
    pub fn with_reloader(
        certs: Arc<CertReloader>,
        provider: Arc<CryptoProvider>,
    ) -> Result<TlsConfig, TlsError> {
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        server.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        server.send_tls13_tickets = 0;
        Ok(TlsConfig {
            server: Arc::new(server),
            certs: Some(certs),
        })
    }

    /// A library user's own rustls configuration, taken as is (no reload: SIGHUP does
    /// nothing for it). [`Config::validate`](super::Config::validate) checks its ALPN list.
    pub fn from_server_config(server: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig {
            server,
            certs: None,
        }
    }

    /// The config each accepted connection is built from.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// Re-reads the certificate and key files (SIGHUP). Established connections are not
    /// touched; on error the previous certificate stays in use. `Ok(false)`: this config
    /// was not loaded from files, there is nothing to re-read.
    pub fn reload(&self) -> Result<bool, TlsError> {
        match &self.certs {
            Some(c) => c.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The resolver, to inspect the current certificate (`None` for
    /// [`TlsConfig::from_server_config`]).
    pub fn certs(&self) -> Option<&Arc<CertReloader>> {
        self.certs.as_ref()
    }
}
