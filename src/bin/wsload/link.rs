//! A client connection's byte stream: plain TCP, or TLS (rustls) over it for `wss://`,
//! both nonblocking and driven by the worker's readiness loop.
//!
//! The TLS side keeps the socket contract the driver relies on: `read` returns
//! `Ok(n < buf.len())` only once the socket is drained, `Err(WouldBlock)` when no
//! plaintext came (a handshake step); `write` takes plaintext (held by rustls until the
//! handshake is done, bounded by [`SEND_LIMIT`]) and writes the records. Ciphertext the
//! kernel refused stays in rustls: [`Link::flush_tls`] on WRITABLE.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// Ciphertext (and pre-handshake plaintext) rustls may hold per connection.
const SEND_LIMIT: usize = 1 << 20;

pub enum Link {
    Plain(TcpStream),
    Tls(Box<(TcpStream, ClientConnection)>),
}

/// What `wss://` needs: the client config (trusting `--tls-ca`) and the name checked
/// against the server's certificate.
#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl TlsTarget {
    /// Trusts the PEM certificates in `ca` (e.g. `scripts/test-cert.sh`'s `ca.pem`);
    /// TLS 1.3 and 1.2, ALPN `http/1.1`.
    pub fn new(ca: &std::path::Path, host: &str) -> Result<TlsTarget, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
            let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let mut config = ClientConfig::builder_with_provider(wsloop::server::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string()).map_err(|e| format!("{host}: {e}"))?;
        Ok(TlsTarget {
            config: Arc::new(config),
            name,
        })
    }
}

impl Link {
    pub fn new(sock: TcpStream, tls: Option<&TlsTarget>) -> io::Result<Link> {
        Ok(match tls {
            None => Link::Plain(sock),
            Some(t) => {
                let mut c = ClientConnection::new(t.config.clone(), t.name.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                c.set_buffer_limit(Some(SEND_LIMIT));
                Link::Tls(Box::new((sock, c)))
            }
        })
    }

    #[inline]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Tls(t) => &t.0,
        }
    }

    /// Writes ciphertext rustls holds (no-op for plain): `Ok(true)` when none is left.
    #[inline]
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        match self {
            Link::Plain(_) => Ok(true),
            Link::Tls(t) => flush(&mut t.0, &mut t.1),
        }
    }
}

fn flush(sock: &mut TcpStream, c: &mut ClientConnection) -> io::Result<bool> {
    while c.wants_write() {
        match c.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn tls_read(sock: &mut TcpStream, c: &mut ClientConnection, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    loop {
        match c.reader().read(&mut buf[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => {
                filled += n;
                if filled == buf.len() {
                    return Ok(filled);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
        }
        match c.read_tls(sock) {
            Ok(_) => {
                c.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if c.wants_write() {
                    flush(sock, c)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if filled > 0 { Ok(filled) } else { Err(e) };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Read for Link {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(t) => tls_read(&mut t.0, &mut t.1, buf),
        }
    }
}

impl Write for Link {
    /// TLS: plaintext accepted; the records go out at once (what the kernel refuses
    /// stays in rustls). Refuses new plaintext while old ciphertext waits.
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(t) => {
                let (sock, c) = (&mut t.0, &mut t.1);
                if !flush(sock, c)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = c.writer().write(buf)?;
                flush(sock, c)?;
                if n == 0 {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Link {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.register(r, t, i),
            Link::Tls(b) => b.0.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.reregister(r, t, i),
            Link::Tls(b) => b.0.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.deregister(r),
            Link::Tls(b) => b.0.deregister(r),
        }
    }
}
