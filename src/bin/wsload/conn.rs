//! One client connection: nonblocking socket setup (socket2), the opening handshake and
//! the write path. Frame decoding and the event loop live in `driver.rs`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mio::net::TcpStream;

use crate::link::Link;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use wsloop::protocol::decoder::Decoder;
use wsloop::protocol::decoder::Role;
use wsloop::protocol::handshake::accept_key;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// Request sent, reading the 101 response.
    Handshake,
    Open,
    /// Our close frame is out (or we answered the server's); waiting for its close and EOF.
    Closing,
    /// Done; removed from the slab after the current batch of events.
    Closed,
}

/// A connection's transport and protocol state; `app` is the scenario's own state.
pub struct Conn<S> {
    pub sock: Link,
    pub state: State,
    /// Global connection index (0-based, across threads).
    pub id: u32,
    pub decoder: Decoder,
    /// Handshake: response bytes so far. Open: bytes of an incomplete frame.
    pub partial: Vec<u8>,
    /// Output the kernel did not take yet.
    pub pending: Vec<u8>,
    /// When connect() was called (ns).
    pub started_ns: u64,
    /// Expected `Sec-WebSocket-Accept`.
    pub accept: String,
    /// The server's close frame arrived.
    pub got_close: bool,
    /// We sent a close frame.
    pub sent_close: bool,
    /// The server broke the protocol: drop TCP once our close frame is written.
    pub broken: bool,
    pub app: S,
}

/// Creates a nonblocking TCP socket (TCP_NODELAY, optionally bound to `src`) and starts
/// connecting to `dst`.
pub fn start_connect(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(dst),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = src {
        // Let connect() pick the port per 4-tuple instead of bind() reserving one per
        // address, so each source address serves ~28k connections to the same server.
        let one: libc::c_int = 1;
        // SAFETY: valid fd and a pointer to a live c_int of the size passed.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match sock.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// A 16-byte key from the connection index and a per-run seed, base64-encoded.
pub fn make_key(id: u32, seed: u64) -> String {
    let a = splitmix64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let b = splitmix64(a);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&a.to_le_bytes());
    raw[8..].copy_from_slice(&b.to_le_bytes());
    BASE64.encode(raw)
}

pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Appends the upgrade request, with a `Sec-WebSocket-Extensions` offer if given.
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str, key: &str, ext: Option<&str>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    if let Some(ext) = ext {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(ext.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// What the response bytes so far amount to.
pub enum HandshakeResult {
    /// Need more bytes.
    Partial,
    /// A valid 101; the response head was this many bytes (frames may follow), and its
    /// `Sec-WebSocket-Extensions` value if any (several lines joined with `, `).
    Done(usize, Option<Vec<u8>>),
    Failed(String),
}

/// Checks a response head: 101, `Upgrade: websocket`, `Connection: upgrade` and the accept key.
pub fn check_response(buf: &[u8], accept: &str) -> HandshakeResult {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            return if buf.len() > 16 * 1024 {
                HandshakeResult::Failed("response head over 16 KiB".into())
            } else {
                HandshakeResult::Partial
            };
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => return HandshakeResult::Failed(format!("bad HTTP response: {e}")),
    };
    if resp.code != Some(101) {
        return HandshakeResult::Failed(format!(
            "status {} {}",
            resp.code.unwrap_or(0),
            resp.reason.unwrap_or("")
        ));
    }
    let find = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !find("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return HandshakeResult::Failed("101 without Upgrade: websocket".into());
    }
    if !find("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return HandshakeResult::Failed("101 without Connection: upgrade".into());
    }
    let mut extensions: Option<Vec<u8>> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            let v = extensions.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(h.value);
        }
    }
    match find("sec-websocket-accept") {
        Some(v) if v == accept => HandshakeResult::Done(head_len, extensions),
        Some(v) => {
            HandshakeResult::Failed(format!("Sec-WebSocket-Accept {v:?}, expected {accept:?}"))
        }
        None => HandshakeResult::Failed("101 without Sec-WebSocket-Accept".into()),
    }
}

impl<S> Conn<S> {
    pub fn new(sock: Link, id: u32, seed: u64, started_ns: u64, app: S) -> Self {
        Conn {
            sock,
            state: State::Connecting,
            id,
            decoder: Decoder::new(Role::Client),
            partial: Vec::new(),
            pending: Vec::new(),
            started_ns,
            accept: String::new(),
            got_close: false,
            sent_close: false,
            broken: false,
            app,
        }
        .with_key(seed)
    }

    fn with_key(mut self, seed: u64) -> Self {
        let key = make_key(self.id, seed);
        self.accept = accept_key(key.as_bytes());
        // Keep the key in `partial` until the request is written (it is the handshake buffer).
        self.partial = key.into_bytes();
        self
    }

    /// Sends `data` after whatever is pending. One write attempt: a short write means the
    /// socket buffer is full, and a WRITABLE edge will follow when it drains.
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return Ok(());
        }
        loop {
            match self.sock.write(data) {
                Ok(n) if n == data.len() => return Ok(()),
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.extend_from_slice(&data[n..]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending.extend_from_slice(data);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes pending output on a WRITABLE event.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            match self.sock.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_checks() {
        let key = make_key(7, 42);
        let accept = accept_key(key.as_bytes());
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n\x01\x02hi"
        );
        match check_response(ok.as_bytes(), &accept) {
            HandshakeResult::Done(n, None) => assert_eq!(n, ok.len() - 4),
            _ => panic!(),
        }
        let z = ok.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        match check_response(z.as_bytes(), &accept) {
            HandshakeResult::Done(_, Some(e)) => assert_eq!(e, b"permessage-deflate"),
            _ => panic!(),
        }
        assert!(matches!(
            check_response(&ok.as_bytes()[..20], &accept),
            HandshakeResult::Partial
        ));
        let bad = ok.replace(&accept, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(matches!(
            check_response(bad.as_bytes(), &accept),
            HandshakeResult::Failed(_)
        ));
        let refused = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            check_response(refused.as_bytes(), &accept),
            HandshakeResult::Failed(_)
        ));
        assert_eq!(BASE64.decode(&key).unwrap().len(), 16);
    }
}
