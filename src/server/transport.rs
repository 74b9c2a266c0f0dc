//! A connection's byte stream: a plain TCP socket, or TLS (rustls) over one, driven from
//! the same readiness loop without a second thread.
//!
//! Both variants keep the nonblocking-socket contract of `read`/`write`, so the loop's
//! read-until-short and [`WriteBuffer::flush`](super::write_buffer::WriteBuffer::flush)
//! work unchanged. TLS adds two duties for the loop, both about ciphertext rustls could
//! not hand to the kernel yet: see [`Transport::wants_write`] and [`Transport::flush_tls`].
//!
//! # Contract (TLS variant; the plain variant is the socket itself)
//! - `read(buf)`: `Ok(buf.len())` when it stopped because `buf` is full (more may be
//!   pending: read again); `Ok(n < buf.len())` only once the socket said WouldBlock or EOF
//!   (drained, as for a plain short read); `Err(WouldBlock)` when no plaintext came (a
//!   handshake step, or nothing to read). Handshake replies are written from inside
//!   `read`. EOF: `Ok(0)` after the peer's close_notify; `Err(UnexpectedEof)` after a TCP
//!   FIN without close_notify (or mid-record): RFC 8446 §6.1 calls that truncation, but
//!   WebSocket and HTTP/1.1 frame their own messages, so the loop can treat it as EOF.
//!   `Err(InvalidData)` carrying a [`TlsFailure`] when the peer broke TLS (the alert is
//!   already written) or spoke plain HTTP (a 400 is already written and the write side
//!   shut down): close the connection.
//! - `write(buf)`: encrypts what it accepts and writes the records with vectored writes
//!   (one `writev` per up to [`TLS_SEND_LIMIT`] bytes). The count is plaintext accepted;
//!   a short count or `Err(WouldBlock)` means the kernel refused (wait for WRITABLE).
//!   Ciphertext of accepted plaintext may still sit in rustls (at most about
//!   [`TLS_SEND_LIMIT`] bytes): check [`Transport::wants_write`] after a flush that
//!   emptied the write buffer, and call [`Transport::flush_tls`] on WRITABLE.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::{ServerConfig, ServerConnection};

/// Bound on ciphertext rustls holds for the kernel (and on plaintext written before the
/// handshake ends). Above it `write` accepts nothing more until the socket takes some.
pub const TLS_SEND_LIMIT: usize = 64 << 10;

/// Alert descriptions (RFC 8446 §6.2) for the plaintext alerts written when rustls queued none.
const ALERT_DECODE_ERROR: u8 = 50;
const ALERT_HANDSHAKE_FAILURE: u8 = 40;

/// Input read and discarded before answering plain HTTP on a TLS port, so that closing
/// does not reset the connection over unread bytes before the client reads the 400.
const PLAIN_HTTP_DRAIN: usize = 16 << 10;

const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 51\r\n\
Connection: close\r\n\
\r\n\
This port speaks TLS: use https:// or wss:// here.\n";

/// Why a TLS connection must be closed. Carried inside an `io::Error` of kind
/// `InvalidData`; [`TlsFailure::of`] finds it.
#[derive(Debug)]
pub enum TlsFailure {
    /// rustls rejected the peer's records (garbage instead of a ClientHello, a bad MAC,
    /// no common version or ALPN...). The alert rustls chose has been written, best effort.
    Protocol(rustls::Error),
    /// The first byte was an ASCII capital letter: an HTTP request, not a TLS record
    /// (every TLS record starts with a content type 20..=24, RFC 8446 §5.1). A plain
    /// `400` with `Connection: close` has been written and the write side shut down.
    PlainHttp,
}

impl TlsFailure {
    /// The failure inside `e`, if `e` came from TLS.
    pub fn of(e: &io::Error) -> Option<&TlsFailure> {
        e.get_ref()?.downcast_ref()
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::Protocol(e) => write!(f, "TLS: {e}"),
            TlsFailure::PlainHttp => f.write_str("plain HTTP on a TLS port"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// A socket, plain or TLS. 16 bytes: the TLS state lives behind the box, so plain
/// connections pay one tag, and their reads and writes are direct socket calls.
#[derive(Debug)]
pub enum Transport {
    /// A plain TCP socket: reads and writes go straight to it.
    Plain(TcpStream),
    /// TLS over TCP, through rustls.
    Tls(Box<TlsStream>),
}

/// rustls' server state over its socket.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    conn: ServerConnection,
    /// No byte has come in yet: the first one tells TLS from plain HTTP.
    first_read: bool,
}

impl Transport {
    /// Starts a TLS server connection on an accepted socket.
    pub fn tls(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Transport> {
        let mut conn = ServerConnection::new(config).map_err(protocol_error)?;
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Ok(Transport::Tls(Box::new(TlsStream {
            sock,
            conn,
            first_read: true,
        })))
    }

    /// The socket, for registration, `set_nodelay`, `peer_addr` or a plain shutdown.
    #[inline]
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.sock,
        }
    }

    /// The socket, read-only (`peer_addr`, the send-queue ioctl).
    #[inline]
    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    /// Whether this is a TLS connection.
    #[inline]
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// The TLS handshake is not finished (false for plain sockets). Plaintext written
    /// meanwhile is held by rustls (bounded) and sent after the handshake.
    #[inline]
    pub fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.conn.is_handshaking(),
        }
    }

    /// The ALPN protocol agreed on (`Some(b"http/1.1")` or `None` if the client offered
    /// none).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => t.conn.alpn_protocol(),
        }
    }

    /// The TLS version in use, once the handshake has picked one.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => t.conn.protocol_version(),
        }
    }

    /// rustls holds ciphertext the kernel has not taken: keep waiting for WRITABLE and
    /// call [`Transport::flush_tls`] then. Always false for plain sockets.
    #[inline]
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.conn.wants_write(),
        }
    }

    /// Writes the ciphertext rustls holds. `Ok(true)`: none left; `Ok(false)`: the kernel
    /// refused the rest (wait for WRITABLE).
    #[inline]
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.flush_tls(),
        }
    }

    /// Ends our sending side: for TLS a close_notify alert (RFC 8446 §6.1) is queued and
    /// written first. `Ok(false)`: the kernel refused it, call again on WRITABLE (queued
    /// once; calls are idempotent). `Ok(true)`: the TCP write side is shut down.
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        if let Transport::Tls(t) = self {
            t.conn.send_close_notify();
            if !t.flush_tls()? {
                return Ok(false);
            }
        }
        match self.tcp().shutdown(std::net::Shutdown::Write) {
            Ok(()) => Ok(true),
            // The peer is gone already: nothing left to end.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(true),
            Err(e) => Err(e),
        }
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(t) => t.write_vectored(bufs),
        }
    }

    /// Plain: nothing. TLS: writes held ciphertext; `Err(WouldBlock)` if some remains.
    fn flush(&mut self) -> io::Result<()> {
        if self.flush_tls()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl Source for Transport {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp().register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp().reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.tcp().deregister(r)
    }
}

fn protocol_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsFailure::Protocol(e))
}

/// The socket as rustls' writer, remembering whether the kernel took less than offered
/// (its buffer is full: another write would only say WouldBlock).
struct Sink<'a> {
    sock: &'a mut TcpStream,
    short: bool,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sock.write(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.sock.write_vectored(bufs)?;
        self.short = n < bufs.iter().map(|b| b.len()).sum();
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The socket as rustls' reader for the very first read, which looks at the first byte.
struct FirstRead<'a> {
    sock: &'a mut TcpStream,
}

impl Read for FirstRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if n > 0 && buf[0].is_ascii_uppercase() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TlsFailure::PlainHttp,
            ));
        }
        Ok(n)
    }
}

impl TlsStream {
    fn flush_tls(&mut self) -> io::Result<bool> {
        let mut sink = Sink {
            sock: &mut self.sock,
            short: false,
        };
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut sink) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) if sink.short => return Ok(!self.conn.wants_write()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// One socket read into rustls' record buffer (at most a few KiB).
    fn read_tls(&mut self) -> io::Result<usize> {
        if !self.first_read {
            return self.conn.read_tls(&mut self.sock);
        }
        let r = self.conn.read_tls(&mut FirstRead {
            sock: &mut self.sock,
        });
        match &r {
            Ok(_) => self.first_read = false,
            Err(e) if matches!(TlsFailure::of(e), Some(TlsFailure::PlainHttp)) => {
                self.refuse_plain_http();
            }
            Err(_) => {}
        }
        r
    }

    /// Answers an HTTP request on the TLS port in plain text, then ends our side. Best
    /// effort: the connection is closed whatever happens here.
    fn refuse_plain_http(&mut self) {
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < PLAIN_HTTP_DRAIN {
            match self.sock.read(&mut scratch) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // A fresh socket's send buffer has room for these 150 bytes.
        let _ = self.sock.write(PLAIN_HTTP_RESPONSE);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// Decrypts what `read_tls` brought; handshake replies, alerts and KeyUpdate answers
    /// go to the socket at once (what the kernel refuses stays queued: `wants_write`).
    fn process(&mut self) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(_) => {
                if self.conn.wants_write() {
                    self.flush_tls()?;
                }
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Sends the alert for `e` and makes the error the loop sees. rustls queues the alert
    /// for most errors; for the few it does not (a handshake message over its 64 KiB
    /// bound), a plaintext alert is written while no version has been chosen, i.e.
    /// before any key exists (RFC 8446 §6: alerts before ServerHello are in the clear).
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        if !self.conn.wants_write() && self.conn.protocol_version().is_none() {
            let description = match e {
                rustls::Error::InvalidMessage(_) => ALERT_DECODE_ERROR,
                _ => ALERT_HANDSHAKE_FAILURE,
            };
            let _ = self
                .sock
                .write(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
        } else {
            let _ = self.flush_tls();
        }
        protocol_error(e)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut filled = 0;
        loop {
            // Plaintext first: rustls holds at most 16 KiB of it, and `read_tls` refuses
            // to read while that is full.
            match self.conn.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled), // close_notify received
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: hand over what came before it first.
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            match self.read_tls() {
                // EOF: process anyway, so the reader reports close_notify vs truncation.
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // rustls' record buffer refuses to grow (a handshake message over 64 KiB).
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData && TlsFailure::of(&e).is_none() =>
                {
                    return Err(self.fail(rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::HandshakePayloadTooLarge,
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Older ciphertext goes first; while it waits, take nothing new (keeps what rustls
        // holds within the limit, and the caller's buffered count honest).
        if !self.flush_tls()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut taken = 0;
        while taken < buf.len() {
            let n = self.conn.writer().write(&buf[taken..])?;
            taken += n;
            // Each round encrypts up to the limit and writes it with one `writev`.
            if n == 0 || !self.flush_tls()? {
                break;
            }
        }
        if taken == 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(taken)
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flush_tls()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // rustls joins the slices into shared records: a frame header and its payload
        // make one record, not two.
        let mut taken = self.conn.writer().write_vectored(bufs)?;
        if !self.flush_tls()? {
            return if taken == 0 {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(taken)
            };
        }
        // More than the limit was offered: the rest, slice by slice (large payloads).
        let mut skip = taken;
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let n = self.write(&b[skip..]);
            skip = 0;
            match n {
                Ok(n) => {
                    taken += n;
                    if self.conn.wants_write() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if taken == 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(taken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_stays_small() {
        assert!(std::mem::size_of::<Transport>() <= 16);
    }

    #[test]
    fn failure_is_found_in_io_error() {
        let e = io::Error::new(io::ErrorKind::InvalidData, TlsFailure::PlainHttp);
        assert!(matches!(TlsFailure::of(&e), Some(TlsFailure::PlainHttp)));
        let other = io::Error::new(io::ErrorKind::InvalidData, "x");
        assert!(TlsFailure::of(&other).is_none());
        assert!(TlsFailure::of(&io::ErrorKind::WouldBlock.into()).is_none());
    }

    #[test]
    fn plain_http_response_length_is_right() {
        let text = std::str::from_utf8(PLAIN_HTTP_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
    }
}

#[cfg(test)]
mod size_tests {
    /// The boxed TLS state; rustls' heap buffers come on top (measured in
    /// tests/tls_transport.rs).
    #[test]
    fn tls_stream_size() {
        let n = std::mem::size_of::<super::TlsStream>();
        println!("TlsStream is {n} bytes");
        assert!(n < 4096);
    }
}
