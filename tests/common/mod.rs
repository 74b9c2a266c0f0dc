//! Shared by the integration tests: start `wsloop` as a child process on an ephemeral port.
#![allow(dead_code)]

pub mod redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wsloop` child; killed on drop.
pub struct ServerProc {
    pub child: Child,
    pub addr: SocketAddr,
}

/// The address at the end of the start-up line `wsloop <mode> listening on <addr>`.
pub fn startup_addr(line: &str) -> SocketAddr {
    line.trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"))
}

impl ServerProc {
    /// Starts `wsloop <mode> --listen 127.0.0.1:0 <extra...>` and waits for its start-up line.
    pub fn start(mode: &str, extra: &[&str]) -> ServerProc {
        ServerProc::start_wrapped(&[], mode, extra)
    }

    /// [`ServerProc::start`] run through `wrapper` (e.g. `prlimit --nofile=128:128 --`),
    /// which must exec the server so that the child's pid is the server's.
    pub fn start_wrapped(wrapper: &[&str], mode: &str, extra: &[&str]) -> ServerProc {
        let exe = env!("CARGO_BIN_EXE_wsloop");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = cmd
            .arg(mode)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wsloop");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read start-up line");
        ServerProc {
            child,
            addr: startup_addr(&line),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmRSS of the server in KiB.
    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:")
    }

    /// Open file descriptors of the server.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        send_signal(self.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A raw TCP connection with generous timeouts.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid upgrade request head.
pub fn upgrade_request(addr: SocketAddr, extra_headers: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Reads an HTTP response head (up to the blank line).
pub fn read_http_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
        assert!(head.len() < 64 << 10, "response head too long");
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Opens a raw WebSocket connection (101 checked); returns the stream.
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = raw_connect(addr);
    s.write_all(upgrade_request(addr, "").as_bytes()).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads one server frame: (fin, opcode, payload). Panics on timeout.
pub fn read_frame(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[0] & 0x80 != 0, h[0] & 0x0F, p)
}

/// Reads until EOF (or error); true if the peer closed cleanly with FIN (read returned 0).
pub fn reads_to_eof(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let op = wsloop::protocol::OpCode::from_u8(opcode).expect("valid opcode");
    wsloop::protocol::frame::write_client_frame(
        &mut out,
        fin,
        op,
        payload,
        [0x12, 0x34, 0x56, 0x78],
    );
    out
}

// ---------------------------------------------------------------------------------------
// Raw-socket conformance helpers: frames built byte by byte (any opcode, RSV bits, length
// form), frame/close/HTTP readers that assert what they read, and a per-test-file shared
// server.
// ---------------------------------------------------------------------------------------

/// FIN bit of the first header byte.
pub const FIN: u8 = 0x80;
/// RSV bits of the first header byte.
pub const RSV1: u8 = 0x40;
pub const RSV2: u8 = 0x20;
pub const RSV3: u8 = 0x10;
/// Opcodes (as raw nibbles, so reserved ones can be sent too).
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// How the payload length is written in a raw frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenForm {
    /// The shortest form (what RFC 6455 §5.2 requires).
    Minimal,
    /// The 7-bit form (payload must be at most 125 bytes).
    Short,
    /// 126 + 16-bit length.
    Ext16,
    /// 127 + 64-bit length.
    Ext64,
}

static MASK_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A fresh, never all-zero masking key (varies per frame, so masking bugs show).
pub fn next_mask() -> [u8; 4] {
    let n = MASK_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let x = n.wrapping_mul(0x9E37_79B9) | 0x0101_0101;
    x.to_be_bytes()
}

/// Appends a frame header with an arbitrary first byte, declared length and mask.
pub fn push_header(out: &mut Vec<u8>, b0: u8, declared: u64, form: LenForm, mask: Option<[u8; 4]>) {
    out.push(b0);
    let m = if mask.is_some() { 0x80 } else { 0 };
    let form = match form {
        LenForm::Minimal if declared < 126 => LenForm::Short,
        LenForm::Minimal if declared <= 0xFFFF => LenForm::Ext16,
        LenForm::Minimal => LenForm::Ext64,
        f => f,
    };
    match form {
        LenForm::Short => {
            assert!(declared < 126, "7-bit length form holds at most 125");
            out.push(m | declared as u8);
        }
        LenForm::Ext16 => {
            out.push(m | 126);
            out.extend_from_slice(&(declared as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&declared.to_be_bytes());
        }
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

/// A masked client frame with an arbitrary first byte (FIN | RSV | opcode), any length form.
pub fn raw_frame_form(b0: u8, payload: &[u8], form: LenForm) -> Vec<u8> {
    let mask = next_mask();
    let mut out = Vec::with_capacity(payload.len() + 14);
    push_header(&mut out, b0, payload.len() as u64, form, Some(mask));
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A masked client frame with an arbitrary first byte (FIN | RSV | opcode).
pub fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame_form(b0, payload, LenForm::Minimal)
}

/// A masked final text frame.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    raw_frame(FIN | OP_TEXT, payload)
}

/// A masked final binary frame.
pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    raw_frame(FIN | OP_BINARY, payload)
}

/// A masked close frame: `code` (if any) followed by `reason`.
pub fn close_frame(code: Option<u16>, reason: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    if let Some(c) = code {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(reason);
    raw_frame(FIN | OP_CLOSE, &p)
}

/// The fragments of one message: `chunks` as first frame (`opcode`) and continuations.
pub fn fragments(opcode: u8, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { opcode } else { OP_CONT };
        let fin = if i + 1 == chunks.len() { FIN } else { 0 };
        out.extend(raw_frame(fin | op, c));
    }
    out
}

/// A server frame as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    /// Bytes of header (2, 4 or 10: the length form the server chose).
    pub header_len: usize,
    pub payload: Vec<u8>,
}

/// Reads one server frame, asserting it is unmasked. Panics on EOF or timeout.
pub fn read_wire_frame(s: &mut TcpStream) -> WireFrame {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)
        .unwrap_or_else(|e| panic!("expected a frame header from the server: {e}"));
    assert_eq!(h[1] & 0x80, 0, "server frames must be unmasked");
    let (len, header_len) = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("16-bit length");
            (u16::from_be_bytes(b) as u64, 4)
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).expect("64-bit length");
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    assert!(len < 1 << 31, "implausible server frame length {len}");
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)
        .unwrap_or_else(|e| panic!("expected {len} payload bytes: {e}"));
    WireFrame {
        fin: h[0] & 0x80 != 0,
        rsv: (h[0] >> 4) & 7,
        opcode: h[0] & 0x0F,
        header_len,
        payload,
    }
}

/// The header length RFC 6455 §5.2 requires for a payload of `len` bytes (unmasked).
pub fn minimal_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Reads one frame and asserts it is a final, RSV-free, minimally encoded data frame
/// with this opcode and payload.
pub fn expect_message(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let f = read_wire_frame(s);
    assert_eq!(
        (f.fin, f.rsv, f.opcode),
        (true, 0, opcode),
        "expected a final frame with opcode {opcode:#x}, got {f:?}",
        f = Abbrev(&f)
    );
    assert_eq!(
        f.header_len,
        minimal_header_len(f.payload.len()),
        "server length form"
    );
    if f.payload != payload {
        panic!(
            "payload differs: got {} bytes, expected {} (first difference at {:?})",
            f.payload.len(),
            payload.len(),
            f.payload.iter().zip(payload).position(|(a, b)| a != b)
        );
    }
}

/// Debug helper: a frame printed with its payload shortened.
pub struct Abbrev<'a>(pub &'a WireFrame);

impl std::fmt::Debug for Abbrev<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.0.payload;
        write!(
            f,
            "WireFrame {{ fin: {}, rsv: {}, opcode: {:#x}, len: {}, payload: {:?}{} }}",
            self.0.fin,
            self.0.rsv,
            self.0.opcode,
            p.len(),
            String::from_utf8_lossy(&p[..p.len().min(40)]),
            if p.len() > 40 { "..." } else { "" }
        )
    }
}

/// Reads one frame, asserts it is a close frame, and returns its code (None: empty).
pub fn read_close(s: &mut TcpStream) -> Option<u16> {
    let f = read_wire_frame(s);
    assert_eq!(
        (f.fin, f.rsv, f.opcode),
        (true, 0, OP_CLOSE),
        "expected a close frame, got {:?}",
        Abbrev(&f)
    );
    assert_ne!(f.payload.len(), 1, "a close payload of one byte is invalid");
    if f.payload.is_empty() {
        return None;
    }
    assert!(
        std::str::from_utf8(&f.payload[2..]).is_ok(),
        "close reason must be UTF-8"
    );
    Some(u16::from_be_bytes([f.payload[0], f.payload[1]]))
}

/// The next frame is a close with `code`, and then the server closes TCP cleanly (FIN).
pub fn expect_close(s: &mut TcpStream, code: Option<u16>) {
    let got = read_close(s);
    assert_eq!(got, code, "close code");
    assert!(
        reads_to_eof(s),
        "after its close frame the server must close TCP (clean EOF, no reset)"
    );
}

/// Writes `bytes` in one call.
pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write to server");
}

/// Writes `bytes` one byte per write, pausing between writes so they arrive as separate
/// segments (TCP_NODELAY is set by `raw_connect`).
pub fn send_bytewise(s: &mut TcpStream, bytes: &[u8], pause: Duration) {
    for b in bytes {
        s.write_all(std::slice::from_ref(b))
            .expect("write to server");
        s.flush().unwrap();
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Writes `bytes` from another thread (on a clone of the socket), so the caller can read
/// the replies meanwhile: no deadlock however much is pipelined.
pub fn send_in_background(s: &TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = s.try_clone().expect("clone socket");
    std::thread::spawn(move || w.write_all(&bytes).expect("background write to server"))
}

/// After a refusal or a failure: the server sends nothing more and closes TCP.
pub fn expect_eof(s: &mut TcpStream) {
    assert!(
        reads_to_eof(s),
        "expected a clean TCP close (FIN) from the server"
    );
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// How many header lines are called `name`.
    pub fn header_count(&self, name: &str) -> usize {
        self.head
            .split("\r\n")
            .skip(1)
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            })
            .count()
    }
}

/// Reads an HTTP response head and, if it has a `Content-Length`, exactly that much body.
pub fn read_http_response(s: &mut TcpStream) -> HttpResponse {
    let mut r = read_head_response(s);
    if let Some(len) = r.header("content-length") {
        let len: usize = len.parse().expect("numeric Content-Length");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)
            .expect("response body of Content-Length bytes");
        r.body = body;
    }
    r
}

/// Sends `request` on a fresh connection and expects a complete error response with this
/// status: `Content-Length` matching the body, `Connection: close`, then TCP closed.
pub fn expect_http_error(addr: SocketAddr, request: &[u8], status: u16) -> HttpResponse {
    let mut s = raw_connect(addr);
    send(&mut s, request);
    let r = read_http_response(&mut s);
    assert_eq!(
        r.status,
        status,
        "status for {:?}:\n{}",
        String::from_utf8_lossy(&request[..request.len().min(200)]),
        r.head
    );
    assert!(
        r.header("content-length").is_some(),
        "error response without Content-Length:\n{}",
        r.head
    );
    assert_eq!(
        r.header("connection").map(|v| v.to_ascii_lowercase()),
        Some("close".into()),
        "error response must say Connection: close:\n{}",
        r.head
    );
    assert!(
        r.header("sec-websocket-accept").is_none(),
        "refusal must not accept"
    );
    expect_eof(&mut s);
    r
}

/// Pids of shared servers, killed when the test binary exits.
static SHARED_PIDS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_shared_servers() {
    if let Ok(pids) = SHARED_PIDS.lock() {
        for &pid in pids.iter() {
            // SAFETY: kill(2) with a pid we spawned; no memory is touched.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// One server per test binary (per `cell`), started on first use and killed at exit.
pub fn shared_server(
    cell: &'static std::sync::OnceLock<ServerProc>,
    mode: &str,
    extra: &[&str],
) -> &'static ServerProc {
    cell.get_or_init(|| {
        let server = ServerProc::start(mode, extra);
        let mut pids = SHARED_PIDS.lock().unwrap();
        if pids.is_empty() {
            // SAFETY: registers a plain extern "C" function that only calls kill(2).
            unsafe {
                libc::atexit(kill_shared_servers);
            }
        }
        pids.push(server.pid());
        server
    })
}

/// A raw WebSocket connection with a `Sec-WebSocket-Protocol` offer; returns the stream
/// and the 101 head.
pub fn raw_ws_with(addr: SocketAddr, extra_headers: &str) -> (TcpStream, String) {
    let mut s = raw_connect(addr);
    send(&mut s, upgrade_request(addr, extra_headers).as_bytes());
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, head)
}

/// Opens a connection, sends `bytes`, and expects the close `code` (then TCP closed).
pub fn send_expect_close(addr: SocketAddr, bytes: &[u8], code: Option<u16>) {
    let mut s = raw_ws(addr);
    send(&mut s, bytes);
    expect_close(&mut s, code);
}

/// Checks the server still echoes on a fresh connection (after a test broke one).
pub fn assert_alive(addr: SocketAddr) {
    let mut s = raw_ws(addr);
    send(&mut s, &text_frame(b"still alive?"));
    expect_message(&mut s, OP_TEXT, b"still alive?");
    send(&mut s, &close_frame(Some(1000), b""));
    expect_close(&mut s, Some(1000));
}

// ---------------------------------------------------------------------------------------
// Plain-HTTP helpers (hostile_http.rs): HEAD responses, pipelined responses read through a
// buffer, "nothing more before EOF", an RSS tracker with a chosen bound.
// ---------------------------------------------------------------------------------------

/// Reads one response to a HEAD request: the head only (whatever `Content-Length` says,
/// a HEAD response has no body, RFC 9110 §9.3.2).
pub fn read_head_response(s: &mut TcpStream) -> HttpResponse {
    let head = read_http_head(s);
    assert!(
        head.ends_with("\r\n\r\n"),
        "incomplete response head: {head:?}"
    );
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    HttpResponse {
        status,
        head,
        body: Vec::new(),
    }
}

/// Reads until the peer closes. Returns the bytes that came first and whether the close
/// was a clean FIN (false: reset). Panics on a read timeout: the peer kept it open.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "connection still open after the read timeout ({} bytes received): {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got[..got.len().min(200)])
                )
            }
            Err(_) => return (got, false),
        }
    }
}

/// After a response that ends the connection: not one more byte, then a clean FIN.
pub fn expect_nothing_more(s: &mut TcpStream, after: &str) {
    let (rest, fin) = read_until_closed(s);
    assert!(
        rest.is_empty(),
        "after {after}: {} unexpected bytes before the close: {:?}",
        rest.len(),
        String::from_utf8_lossy(&rest[..rest.len().min(300)])
    );
    assert!(
        fin,
        "after {after}: connection reset instead of a clean close"
    );
}

/// One response read from a buffered stream of pipelined responses: status,
/// `Content-Length`, `Connection` value, and the body (left empty for `head_only`).
#[derive(Debug)]
pub struct Piped {
    pub status: u16,
    pub content_length: usize,
    pub connection: String,
    pub body: Vec<u8>,
}

/// Reads the next response from `r`; `Ok(None)` at a clean EOF before any byte of it.
/// Every response must carry `Content-Length` (wsloop never sends chunked responses).
pub fn read_piped<R: BufRead>(r: &mut R, head_only: bool) -> std::io::Result<Option<Piped>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    let status_line = String::from_utf8_lossy(&line).into_owned();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let (mut content_length, mut connection) = (None, String::new());
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            panic!("EOF inside a response head ({status_line:?})");
        }
        if line == b"\r\n" {
            break;
        }
        let l = String::from_utf8_lossy(&line);
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                assert!(content_length.is_none(), "two Content-Length in a response");
                content_length = Some(v.trim().parse::<usize>().expect("numeric length"));
            } else if k.eq_ignore_ascii_case("connection") {
                connection = v.trim().to_ascii_lowercase();
            }
        }
    }
    let content_length = content_length.expect("response without Content-Length");
    let mut body = Vec::new();
    if !head_only {
        body.resize(content_length, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Piped {
        status,
        content_length,
        connection,
        body,
    }))
}

/// Tracks a process's VmRSS: baseline at creation, peak over `sample` calls, which
/// assert the growth stays under `limit_kb`.
pub struct RssBound {
    pub pid: u32,
    pub name: &'static str,
    pub baseline: u64,
    pub peak: u64,
    pub limit_kb: u64,
}

impl RssBound {
    pub fn new(server: &ServerProc, name: &'static str, limit_kb: u64) -> Self {
        let baseline = server.rss_kb();
        assert!(baseline > 0, "cannot read VmRSS of the server");
        RssBound {
            pid: server.pid(),
            name,
            baseline,
            peak: baseline,
            limit_kb,
        }
    }

    pub fn sample(&mut self) -> u64 {
        let now = proc_status_kb(self.pid, "VmRSS:");
        self.peak = self.peak.max(now);
        assert!(
            self.peak - self.baseline < self.limit_kb,
            "{}: server RSS grew from {} KiB to {} KiB (limit +{} KiB)",
            self.name,
            self.baseline,
            self.peak,
            self.limit_kb
        );
        now
    }

    /// Final check; prints the numbers (visible with `--nocapture`).
    pub fn report(mut self) {
        let end = self.sample();
        println!(
            "[{}] server VmRSS: baseline {} KiB, peak {} KiB (+{} KiB), end {} KiB; limit +{} KiB",
            self.name,
            self.baseline,
            self.peak,
            self.peak - self.baseline,
            end,
            self.limit_kb
        );
    }
}

/// A fresh client completes a WebSocket echo round trip and a clean close within
/// `within` (generous: it only shows the loop is not stuck on someone else).
pub fn echo_served_within(addr: SocketAddr, within: Duration) -> Duration {
    let t0 = Instant::now();
    let mut s = raw_ws(addr);
    send(&mut s, &text_frame(b"still served?"));
    expect_message(&mut s, OP_TEXT, b"still served?");
    send(&mut s, &close_frame(Some(1000), b""));
    expect_close(&mut s, Some(1000));
    let took = t0.elapsed();
    assert!(
        took < within,
        "fresh client took {took:?} (bound {within:?})"
    );
    took
}

/// One `/metrics` scrape on a fresh connection (`--metrics` / `Config::metrics`): every
/// sample by its series, e.g. `wsloop_loop_mailbox_bytes{loop="1"}`.
pub fn scrape_metrics(addr: SocketAddr) -> std::collections::HashMap<String, f64> {
    let mut s = TcpStream::connect(addr).expect("connect for /metrics");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A binary payload of `size` bytes (at least 8) that starts with `i`, big-endian: the
/// backpressure tests number their messages this way to check order and loss.
pub fn numbered_payload(i: usize, size: usize) -> Vec<u8> {
    let mut p = vec![7u8; size];
    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
    p
}
