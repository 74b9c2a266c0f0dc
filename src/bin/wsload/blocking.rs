//! A small blocking WebSocket and HTTP/1.1 client over `std::net`, for the churn scenario:
//! one short-lived connection per operation, every byte checked, every wait bounded by a
//! socket timeout. The hot-path scenarios use the mio driver instead.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use socket2::SockRef;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use wsloop::protocol::decoder::{Decoded, Decoder, Message, Role};
use wsloop::protocol::frame::{write_client_frame, OpCode};
use wsloop::protocol::handshake::accept_key;

/// Largest message the churn client accepts from the server.
const MAX_MESSAGE: usize = 1 << 20;
/// Largest response head read.
const MAX_HEAD: usize = 16 << 10;

/// How an operation failed: the server refused it (503, connect refused or reset before
/// the upgrade: expected while at the open-file limit), or something that must not happen.
#[derive(Debug)]
pub enum Fail {
    /// Refused before anything was exchanged; no message was at stake.
    Refused(String),
    /// A broken promise: a wrong echo, a bad response, a connection lost mid-exchange.
    Broken(String),
}

/// A whole message or control frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

/// Connects with a timeout and sets read/write timeouts of `io_timeout`.
pub fn connect(addr: SocketAddr, io_timeout: Duration) -> Result<TcpStream, Fail> {
    let s = TcpStream::connect_timeout(&addr, io_timeout)
        .map_err(|e| Fail::Refused(format!("connect: {e}")))?;
    s.set_read_timeout(Some(io_timeout)).ok();
    s.set_write_timeout(Some(io_timeout)).ok();
    s.set_nodelay(true).ok();
    Ok(s)
}

/// Closes with a TCP reset (SO_LINGER 0) instead of a FIN.
pub fn reset(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// An open WebSocket client connection.
pub struct Ws {
    pub stream: TcpStream,
    dec: Decoder,
    buf: Vec<u8>,
    mask: u32,
}

impl Ws {
    /// TCP connect + RFC 6455 handshake to `path`; `seed` makes the key and masks.
    pub fn open(
        addr: SocketAddr,
        host: &str,
        path: &str,
        seed: u64,
        t: Duration,
    ) -> Result<Ws, Fail> {
        Ws::handshake(connect(addr, t)?, host, path, seed)
    }

    /// The RFC 6455 handshake on a connected stream.
    pub fn handshake(mut stream: TcpStream, host: &str, path: &str, seed: u64) -> Result<Ws, Fail> {
        let key = BASE64.encode(seed.to_le_bytes().repeat(2));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .map_err(|e| Fail::Refused(format!("handshake write: {e}")))?;
        let (status, headers, rest) = read_head(&mut stream).map_err(|e| match e {
            Fail::Broken(m) => Fail::Refused(m),
            f => f,
        })?;
        if status == 503 {
            return Err(Fail::Refused("503".into()));
        }
        if status != 101 {
            return Err(Fail::Broken(format!("handshake answered {status}")));
        }
        let want = accept_key(key.as_bytes());
        let ok = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want);
        if !ok {
            return Err(Fail::Broken("wrong Sec-WebSocket-Accept".into()));
        }
        Ok(Ws {
            stream,
            dec: Decoder::new(Role::Client),
            buf: rest,
            mask: seed as u32 | 1,
        })
    }

    /// Sends one masked frame.
    pub fn send(&mut self, op: OpCode, payload: &[u8]) -> Result<(), Fail> {
        self.mask = self.mask.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut out = Vec::with_capacity(payload.len() + 14);
        write_client_frame(&mut out, true, op, payload, self.mask.to_le_bytes());
        self.stream
            .write_all(&out)
            .map_err(|e| Fail::Broken(format!("write: {e}")))
    }

    /// Receives the next message or control frame.
    pub fn recv(&mut self) -> Result<Msg, Fail> {
        loop {
            let (consumed, msg) = match self.dec.decode(&mut self.buf[..], MAX_MESSAGE) {
                Err(e) => return Err(Fail::Broken(format!("server frame: {e:?}"))),
                Ok(Decoded::Incomplete { .. }) => (0, None),
                Ok(Decoded::Fragment { consumed }) => (consumed, None),
                Ok(Decoded::Message { consumed, message }) => (
                    consumed,
                    Some(match message {
                        Message::Text(t) => Msg::Text(t.as_bytes().to_vec()),
                        Message::Binary(b) => Msg::Binary(b.to_vec()),
                        Message::Ping(p) => Msg::Ping(p.to_vec()),
                        Message::Pong(_) => Msg::Pong,
                        Message::Close(c) => Msg::Close(c.code),
                        Message::Compressed { .. } => {
                            return Err(Fail::Broken("compressed without negotiation".into()))
                        }
                    }),
                ),
            };
            if consumed > 0 {
                self.buf.drain(..consumed);
            }
            match msg {
                Some(Msg::Ping(p)) => self.send(OpCode::Pong, &p)?,
                Some(m) => return Ok(m),
                None if consumed > 0 => {}
                None => fill(&mut self.stream, &mut self.buf)?,
            }
        }
    }

    /// Clean close: our close frame, the server's answer with the same code, then EOF.
    pub fn close(mut self, code: u16) -> Result<(), Fail> {
        self.send(OpCode::Close, &code.to_be_bytes())?;
        loop {
            match self.recv()? {
                Msg::Close(c) if c == Some(code) => break,
                Msg::Close(c) => return Err(Fail::Broken(format!("close answered with {c:?}"))),
                _ => {}
            }
        }
        let mut b = [0u8; 64];
        match self.stream.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Fail::Broken("bytes after the close frame".into())),
            Err(e) => Err(Fail::Broken(format!("no TCP close after close frame: {e}"))),
        }
    }
}

/// Reads more bytes into `buf`; EOF and timeouts are failures.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Fail> {
    let mut chunk = [0u8; 16 << 10];
    match s.read(&mut chunk) {
        Ok(0) => Err(Fail::Broken("connection closed by the server".into())),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(Fail::Broken(format!("read: {e}"))),
    }
}

/// A parsed response head: status, headers, and the bytes read past the head.
pub type Head = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads one response head.
pub fn read_head(s: &mut TcpStream) -> Result<Head, Fail> {
    read_head_from(s, Vec::new())
}

/// Reads one response head, starting with bytes already read (`buf`).
pub fn read_head_from(s: &mut TcpStream, mut buf: Vec<u8>) -> Result<Head, Fail> {
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = r.code.unwrap_or(0);
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return Ok((status, headers, buf.split_off(n)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => fill(s, &mut buf)?,
            Ok(httparse::Status::Partial) => {
                return Err(Fail::Broken("response head too long".into()))
            }
            Err(e) => return Err(Fail::Broken(format!("bad response head: {e}"))),
        }
    }
}

/// The `Content-Length` of a response, if any.
pub fn content_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Reads a body of `len` bytes following a head; returns it and what was read past it.
pub fn read_body(
    s: &mut TcpStream,
    mut buf: Vec<u8>,
    len: usize,
) -> Result<(Vec<u8>, Vec<u8>), Fail> {
    while buf.len() < len {
        fill(s, &mut buf)?;
    }
    let rest = buf.split_off(len);
    Ok((buf, rest))
}
