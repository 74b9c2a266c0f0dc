//! The byte stream to Redis: plain TCP (`redis://`) or TLS over TCP with rustls
//! (`rediss://`, as managed Redis services require).
//!
//! The reader and the writer are two threads on one connection, so the stream must be
//! full-duplex. For plain TCP that is two handles on one socket. For TLS the rustls
//! connection state is one object that both directions update, so it sits behind a mutex:
//! the reader blocks in the socket's `read` *without* the lock, then takes it to decrypt
//! what arrived; the writer takes it to encrypt and write. A writer blocked in a full socket
//! holds the lock (bounded by [`BackplaneConfig::io_timeout`]); the reader meanwhile keeps
//! draining the socket into its own chunk, so the two directions cannot deadlock each other.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::resp::Decoder;
use super::BackplaneConfig;

/// Ciphertext read from the socket at a time (one TLS record and a bit).
const TLS_READ: usize = 17 << 10;

/// System CA bundles tried, in order, when no CA file is configured (Debian/Ubuntu,
/// Fedora/RHEL, Alpine/macOS-style).
const SYSTEM_CA_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// One connection to Redis, cheap to clone (a handle on the same connection).
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Arc<Tls>),
}

pub(super) struct Tls {
    sock: TcpStream,
    conn: Mutex<rustls::ClientConnection>,
}

impl Tls {
    fn conn(&self) -> MutexGuard<'_, rustls::ClientConnection> {
        // rustls state after a panic elsewhere is not to be trusted, but the next I/O on it
        // reports its error and the link is made again.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rustls client configuration for `rediss://`: the CA file's certificates, or the
/// system bundle's. Errors: unreadable or empty CA file, no system bundle
/// ([`io::ErrorKind::NotFound`]), each naming what it tried.
pub(super) fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    let paths: Vec<&Path> = match ca_file {
        Some(p) => vec![p],
        None => SYSTEM_CA_BUNDLES.iter().map(Path::new).collect(),
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut tried = Vec::new();
    for path in paths {
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            match CertificateDer::pem_file_iter(path) {
                Ok(iter) => iter.collect(),
                Err(e) => {
                    tried.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
        let certs = certs.map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added > 0 {
            break;
        }
        tried.push(format!("{}: no usable CA certificate", path.display()));
    }
    if roots.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no CA certificates for rediss:// ({})", tried.join("; ")),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Stream {
    /// Wraps a connected socket: as is, or after a TLS handshake with `cfg.host` as the
    /// server name (within the socket's time-outs). Errors: a bad server name
    /// ([`io::ErrorKind::InvalidInput`]), the handshake failing (certificate not trusted,
    /// wrong name: [`io::ErrorKind::InvalidData`]), or the socket's.
    pub(super) fn new(
        sock: TcpStream,
        cfg: &BackplaneConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Stream> {
        let Some(tls) = tls else {
            return Ok(Stream::Plain(sock));
        };
        let name = ServerName::try_from(cfg.host.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS server name {}: {e}", cfg.host),
            )
        })?;
        let mut conn = rustls::ClientConnection::new(tls.clone(), name)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        let mut s = &sock;
        // One deadline for the whole handshake: the socket's time-outs bound each read, and a
        // server dribbling its handshake a byte at a time must not stretch it.
        let deadline = std::time::Instant::now() + cfg.io_timeout;
        while conn.is_handshaking() {
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake not done in time",
                ));
            }
            conn.complete_io(&mut s).map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => {
                    io::Error::new(io::ErrorKind::InvalidData, format!("TLS handshake: {e}"))
                }
                _ => e,
            })?;
        }
        Ok(Stream::Tls(Arc::new(Tls {
            sock,
            conn: Mutex::new(conn),
        })))
    }

    /// Another handle on the same connection.
    pub(super) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Plain(s) => Stream::Plain(s.try_clone()?),
            Stream::Tls(t) => Stream::Tls(t.clone()),
        })
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// Shuts the socket down both ways (unblocking the other thread's `read`/`write`).
    pub(super) fn shutdown(&self) {
        let _ = self.sock().shutdown(Shutdown::Both);
    }

    pub(super) fn set_read_timeout(&self, d: Option<std::time::Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(d)
    }

    /// Writes all of `data` (encrypted, for TLS).
    pub(super) fn write_all(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => {
                let mut s = s;
                s.write_all(data)
            }
            Stream::Tls(t) => {
                let mut conn = t.conn();
                let mut sock = &t.sock;
                let mut rest = data;
                while !rest.is_empty() {
                    // rustls buffers a bounded amount of plaintext: hand it what it takes,
                    // flush, repeat.
                    let n = conn.writer().write(rest)?;
                    rest = &rest[n..];
                    while conn.wants_write() {
                        conn.write_tls(&mut sock)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Reads once (blocking, within the socket's read time-out) and appends the plaintext
    /// to `decoder`; `Ok(0)` at the end of the stream (a TCP FIN, or TLS close_notify).
    pub(super) fn read_into(&self, decoder: &mut Decoder) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => {
                let mut s = s;
                decoder.read_with(|b| s.read(b))
            }
            Stream::Tls(t) => t.read_into(decoder),
        }
    }
}

impl Tls {
    fn read_into(&self, decoder: &mut Decoder) -> io::Result<usize> {
        let mut raw = [0u8; TLS_READ];
        let before = decoder.buffered();
        // Plaintext rustls already holds comes first.
        let mut closed = drain_plaintext(&mut self.conn(), decoder)?;
        while decoder.buffered() == before && !closed {
            // Blocks without the lock, so the writer can go on meanwhile.
            let got = (&self.sock).read(&mut raw)?;
            if got == 0 {
                return Ok(0);
            }
            let mut conn = self.conn();
            let mut rest = &raw[..got];
            while !rest.is_empty() {
                conn.read_tls(&mut rest)?;
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
                // Its plaintext buffer is bounded: drain it before feeding more.
                closed |= drain_plaintext(&mut conn, decoder)?;
            }
            // Post-handshake messages to answer (e.g. a key update).
            let mut sock = &self.sock;
            while conn.wants_write() {
                conn.write_tls(&mut sock)?;
            }
        }
        // New bytes first; the close (0) on the next call.
        Ok(decoder.buffered() - before)
    }
}

/// Moves every decrypted byte into `decoder`; true if the peer sent close_notify.
fn drain_plaintext(conn: &mut rustls::ClientConnection, decoder: &mut Decoder) -> io::Result<bool> {
    loop {
        match decoder.read_with(|b| conn.reader().read(b)) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
