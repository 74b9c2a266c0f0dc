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
//!   `read`; until the handshake is complete `read` takes at most the handshake's bound
//!   of ciphertext ([`Transport::set_handshake_limit`]). EOF: `Ok(0)` once after the
//!   peer's close_notify (also one in the clear mid-handshake), when the plaintext before
//!   it has been handed out; [`Transport::peer_closed`] says so as soon as it is
//!   processed, so a caller that got a short read can come back for it, and answer it
//!   ([`Transport::shutdown_write`], or [`Transport::answer_close_notify`] when dropping
//!   the connection). Later reads drop input until the TCP FIN (`Ok(0)` again).
//!   `Err(UnexpectedEof)` after a TCP FIN without close_notify (or mid-record): RFC 8446
//!   §6.1 calls that truncation, but WebSocket and HTTP/1.1 frame their own messages, so
//!   the loop can treat it as EOF. `Err(InvalidData)` carrying a [`TlsFailure`] when the
//!   peer broke TLS or went past the handshake's bound (the alert is already written;
//!   none in answer to the peer's own alert) or spoke plain HTTP (a 400 is already
//!   written and the write side shut down): close the connection.
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
/// does not reset the connection over unread bytes before the client reads the 400. The
/// same bound applies to input read and dropped after the peer's close_notify.
const PLAIN_HTTP_DRAIN: usize = 16 << 10;

/// Ciphertext a connection may send before its handshake is complete, unless
/// [`Transport::set_handshake_limit`] says otherwise: the default `max_header_size`, the
/// bound a plain connection's request head has.
pub const DEFAULT_HANDSHAKE_LIMIT: usize = 8 << 10;

/// Bytes read from the socket per step while handshaking (rustls' own read size).
const HANDSHAKE_READ: usize = 4096;

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
    /// Ciphertext rustls may take while the handshake is not complete, and what it took.
    /// rustls itself joins a handshake message of up to 64 KiB (and grows its buffer to
    /// match); reading at most this much before the handshake ends keeps what a
    /// half-finished handshake holds within the bound a request head has.
    hs_limit: u32,
    hs_read: u32,
    /// The peer's close_notify has been processed (from rustls' `IoState`).
    peer_closed: bool,
    /// `read` has reported the close_notify (`Ok(0)`) once; later reads drop input until
    /// the TCP FIN, as a plain socket's reads do in the loop's Linger state.
    eof_reported: bool,
    /// Our close_notify in answer was queued by [`Transport::answer_close_notify`].
    answered: bool,
    /// Record boundaries of what the handshake read, to see a close_notify sent in the
    /// clear mid-handshake: rustls ignores one as a TLS 1.2 warning (it only honours
    /// close_notify once application data may flow), which would leave the connection
    /// open until the handshake deadline.
    scan: RecordScan,
}

/// Follows TLS record boundaries (RFC 8446 §5.1) through a byte stream fed in pieces and
/// notes a plaintext close_notify alert: a record of type 21 with the 2 bytes
/// warning(1), close_notify(0). An encrypted alert has type 23 in TLS 1.3 and a longer
/// body in TLS 1.2, so only alerts in the clear match. Cost: linear in the bytes fed,
/// record bodies skipped whole.
#[derive(Debug, Default)]
struct RecordScan {
    /// The current record's header, and for a 2-byte alert its body (7 bytes at most).
    head: [u8; 7],
    have: u8,
    /// Body bytes of the current record still to skip.
    skip: u32,
    close_notify: bool,
}

impl RecordScan {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = data.len().min(self.skip as usize);
                self.skip -= k as u32;
                data = &data[k..];
                continue;
            }
            self.head[self.have as usize] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have == 5 {
                let len = u16::from_be_bytes([self.head[3], self.head[4]]);
                if !(self.head[0] == 0x15 && len == 2) {
                    self.skip = len as u32;
                    self.have = 0;
                }
            } else if self.have == 7 {
                self.close_notify |= self.head[5] == 1 && self.head[6] == 0;
                self.have = 0;
            }
        }
    }
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
            hs_limit: DEFAULT_HANDSHAKE_LIMIT as u32,
            hs_read: 0,
            peer_closed: false,
            eof_reported: false,
            answered: false,
            scan: RecordScan::default(),
        })))
    }

    /// Bounds the ciphertext read before the handshake is complete (the loop passes
    /// `max_header_size`). Past it the connection fails with a `decode_error` alert, as for
    /// a handshake message over rustls' own 64 KiB bound. A client's whole handshake
    /// input (its ClientHello, 0.3 to 2 KiB from browsers and TLS libraries, and its
    /// Finished) must fit. No-op for plain sockets.
    #[inline]
    pub fn set_handshake_limit(&mut self, bytes: usize) {
        if let Transport::Tls(t) = self {
            t.hs_limit = bytes.min(u32::MAX as usize) as u32;
        }
    }

    /// The peer's close_notify has arrived (always false for plain sockets). The
    /// plaintext before it is handed out by `read` first; then `read` says `Ok(0)`.
    #[inline]
    pub fn peer_closed(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.peer_closed,
        }
    }

    /// For a connection dropped after the peer's close_notify with nothing else owed:
    /// answers it with ours (RFC 8446 §6.1) and a FIN, best effort, then reads and drops
    /// (bounded) what the peer sent after its close_notify, so that closing the socket
    /// does not reset the connection over unread bytes before our alert arrives. Does
    /// nothing twice, nor for plain sockets, nor before the peer's close_notify.
    pub fn answer_close_notify(&mut self) {
        let Transport::Tls(t) = self else {
            return;
        };
        if !t.peer_closed || t.answered {
            return;
        }
        t.answered = true;
        t.conn.send_close_notify();
        if t.flush_tls().is_ok() {
            let _ = t.sock.shutdown(std::net::Shutdown::Write);
        }
        let _ = t.drain_input(&mut [0u8; 4096]);
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

/// The socket as rustls' reader while the handshake is not complete: at most `cap` bytes
/// (what is left of the handshake's bound), and on the very first read a look at the
/// first byte.
struct HandshakeRead<'a> {
    sock: &'a mut TcpStream,
    cap: usize,
    first: bool,
}

impl Read for HandshakeRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.cap);
        let n = self.sock.read(&mut buf[..n])?;
        if self.first && n > 0 && buf[0].is_ascii_uppercase() {
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

    /// One socket read into rustls' record buffer (at most a few KiB). While the
    /// handshake is not complete, at most what is left of the handshake's bound; none
    /// left is an `InvalidData` error without a [`TlsFailure`] (as for rustls' own bound),
    /// which `read` answers with an alert.
    fn read_tls(&mut self) -> io::Result<usize> {
        if !self.conn.is_handshaking() {
            return self.conn.read_tls(&mut self.sock);
        }
        let left = self.hs_limit.saturating_sub(self.hs_read) as usize;
        if left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake over its bound",
            ));
        }
        // Through a scratch buffer: rustls grows its record buffer by 4 KiB before every
        // read it is asked to make, also the last one that only finds the socket empty;
        // so only bytes that came are handed to it, and its buffer stays about the size
        // of what the handshake sent (not twice that).
        let mut scratch = [0u8; HANDSHAKE_READ];
        let mut sock = HandshakeRead {
            sock: &mut self.sock,
            cap: left,
            first: self.first_read,
        };
        let n = match sock.read(&mut scratch) {
            Ok(n) => n,
            Err(e) => {
                if matches!(TlsFailure::of(&e), Some(TlsFailure::PlainHttp)) {
                    self.refuse_plain_http();
                }
                return Err(e);
            }
        };
        self.first_read = false;
        self.hs_read += n as u32;
        self.scan.feed(&scratch[..n]);
        let mut rest = &scratch[..n];
        // EOF (n == 0) is handed over too: rustls then tells truncation from close_notify.
        loop {
            // `Ok(0)` with bytes left: rustls takes no more (after a close_notify).
            if self.conn.read_tls(&mut rest)? == 0 || rest.is_empty() {
                return Ok(n);
            }
        }
    }

    /// Reads and drops input, at most [`PLAIN_HTTP_DRAIN`] bytes. `Ok(0)`: the peer's FIN
    /// came; `Err(WouldBlock)`: none left for now, or the bound was reached.
    fn drain_input(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let mut drained = 0;
        while drained < PLAIN_HTTP_DRAIN {
            match self.sock.read(scratch) {
                Ok(0) => return Ok(0),
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
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
            Ok(io) => {
                // rustls processed everything before a close_notify seen mid-handshake
                // without failing: the client ends the handshake (see `RecordScan`).
                self.peer_closed =
                    io.peer_has_closed() || (self.scan.close_notify && self.conn.is_handshaking());
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
    /// bound or over ours), a plaintext alert is written while our records are still in
    /// the clear: before any version is chosen (RFC 8446 §6: alerts before ServerHello
    /// are), or during a TLS 1.2 handshake (keys start with our ChangeCipherSpec, which
    /// follows the client's Finished). An alert received is not answered with one: the
    /// peer has closed (RFC 8446 §6.2).
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        let clear = match self.conn.protocol_version() {
            None => true,
            Some(v) => v == rustls::ProtocolVersion::TLSv1_2 && self.conn.is_handshaking(),
        };
        let received = matches!(e, rustls::Error::AlertReceived(_));
        if !received && !self.conn.wants_write() && clear {
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
        // The connection is closed next: input left unread would make that a reset, on
        // which the peer may discard our alert unread. Bounded, best effort.
        let _ = self.drain_input(&mut [0u8; 4096]);
        protocol_error(e)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.eof_reported {
            // rustls reads nothing after a close_notify: input is dropped here instead,
            // so the peer's FIN is still seen (and a chatty peer cannot fill the socket).
            return self.drain_input(buf);
        }
        let mut filled = 0;
        loop {
            // Plaintext first: rustls holds at most 16 KiB of it, and `read_tls` refuses
            // to read while that is full.
            match self.conn.reader().read(&mut buf[filled..]) {
                // close_notify received, and all plaintext before it handed out. Data
                // first; the loop reads again when `peer_closed` (see tls_loop).
                Ok(0) if filled > 0 => return Ok(filled),
                Ok(0) => {
                    self.eof_reported = true;
                    return Ok(0);
                }
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
                Ok(_) => {
                    self.process()?;
                    // A close_notify in the clear mid-handshake: EOF for the loop, which
                    // answers it (rustls' close_notify is in the clear too, until keys).
                    if self.peer_closed && self.conn.is_handshaking() {
                        self.eof_reported = true;
                        return Ok(0);
                    }
                }
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
    fn record_scan_sees_a_clear_close_notify_however_split() {
        let hello = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00];
        let warning = [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 90];
        let close = [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0];
        // A TLS 1.2 encrypted alert: type 21, a longer body that happens to hold 1, 0.
        let sealed = [0x15, 0x03, 0x03, 0x00, 0x03, 0x01, 0x00, 0x00];
        let stream = [&hello[..], &sealed, &warning, &close].concat();
        for cut in 1..stream.len() {
            let mut s = RecordScan::default();
            for piece in stream.chunks(cut) {
                s.feed(piece);
            }
            assert!(s.close_notify, "split every {cut} bytes");
            let mut s = RecordScan::default();
            for piece in stream[..stream.len() - close.len()].chunks(cut) {
                s.feed(piece);
            }
            assert!(!s.close_notify, "no close_notify, split every {cut} bytes");
        }
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
