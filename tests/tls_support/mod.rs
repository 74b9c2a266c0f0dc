//! Test scaffolding for the TLS transport: certificates made with rcgen, a counting
//! allocator, a small edge-triggered mio echo server driving `Transport` the way the
//! event loop must, and rustls clients.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
// Bounded (array) channels allocate once, on the creating thread: an unbounded channel
// allocates blocks on the sending thread and frees them on the receiving one, which
// would skew the per-thread heap count.
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned};
use wsloop::server::transport::{TlsFailure, Transport};
use wsloop::server::write_buffer::{BufferPool, WriteBuffer};

// ---- per-thread heap accounting ----

/// Counts live heap bytes per thread, so the server thread's figure excludes clients.
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        account(-(l.size() as isize));
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            account(new as isize - l.size() as isize);
        }
        q
    }
}

pub fn live_heap() -> isize {
    LIVE.with(|c| c.get())
}

// ---- certificates ----

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A test CA and a leaf for localhost / 127.0.0.1 written to PEM files in a fresh directory.
pub struct Certs {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = std::env::temp_dir().join(format!(
            "wsloop-tls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wsloop test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let certs = Certs { dir, ca };
        certs.write_leaf("leaf A");
        certs
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// A new key and leaf signed by the CA, written over the PEM files; returns its DER.
    pub fn write_leaf(&self, name: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.cert_path(), cert.pem()).unwrap();
        std::fs::write(self.key_path(), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// Appends copies of the CA certificate to the chain file until it is at least
    /// `bytes` long: a server handshake flight larger than a client's receive window.
    /// (The server sends the chain as given; the client does not get to verify it.)
    pub fn pad_chain(&self, bytes: usize) {
        let mut pem = std::fs::read_to_string(self.cert_path()).unwrap();
        let ca = self.ca.pem();
        while pem.len() < bytes * 4 / 3 {
            pem.push_str(&ca);
        }
        std::fs::write(self.cert_path(), pem).unwrap();
    }

    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut cfg = ClientConfig::builder_with_provider(wsloop::server::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- clients ----

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn raw_client(addr: SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// A rustls client with its handshake completed.
pub fn tls_client(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, std::net::TcpStream> {
    let mut sock = raw_client(addr);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(cfg, name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    StreamOwned::new(conn, sock)
}

// ---- server ----

/// How a server-side connection ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// close_notify received; echo flushed; our close_notify sent and write side shut.
    CloseNotify,
    /// `UnexpectedEof`: FIN without close_notify.
    Truncated,
    /// `TlsFailure::Protocol`: an alert was sent.
    Protocol(String),
    /// `TlsFailure::PlainHttp`: a 400 was sent.
    PlainHttp,
    Other(io::ErrorKind),
}

#[derive(Debug)]
pub struct Report {
    pub alpn: Option<Vec<u8>>,
    pub version: Option<ProtocolVersion>,
    pub bytes_in: u64,
    /// Flushes that left output behind (the kernel refused).
    pub blocked: u32,
    /// Flushes after which everything left was ciphertext inside rustls.
    pub tls_held: u32,
    pub end: End,
}

#[derive(Debug, Clone, Copy)]
pub struct Measure {
    pub live_heap: isize,
    pub conns: usize,
    pub handshaking: usize,
}

enum Cmd {
    Measure(SyncSender<Measure>),
    Stop,
}

pub struct Server {
    pub addr: SocketAddr,
    waker: Arc<Waker>,
    cmds: SyncSender<Cmd>,
    pub ends: Receiver<Report>,
    thread: Option<JoinHandle<()>>,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

struct SConn {
    t: Transport,
    out: WriteBuffer,
    bytes_in: u64,
    blocked: u32,
    tls_held: u32,
    /// close_notify received: finish the echo, then end our side.
    peer_done: bool,
}

impl Server {
    /// An echo server on 127.0.0.1:0. `sndbuf`: SO_SNDBUF for accepted sockets.
    pub fn start(config: Arc<rustls::ServerConfig>, sndbuf: Option<usize>) -> Server {
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let (cmds, cmd_rx) = sync_channel(16);
        let (end_tx, ends) = sync_channel(4096);
        let thread = std::thread::spawn(move || {
            serve(poll, listener, config, sndbuf, cmd_rx, end_tx);
        });
        Server {
            addr,
            waker,
            cmds,
            ends,
            thread: Some(thread),
        }
    }

    pub fn measure(&self) -> Measure {
        let (tx, rx) = sync_channel(1);
        self.cmds.send(Cmd::Measure(tx)).unwrap();
        self.waker.wake().unwrap();
        rx.recv_timeout(TIMEOUT).unwrap()
    }

    /// The next connection to end, as the server saw it.
    pub fn next_end(&self) -> Report {
        self.ends
            .recv_timeout(TIMEOUT)
            .expect("a connection to end")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut poll: Poll,
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    sndbuf: Option<usize>,
    cmds: Receiver<Cmd>,
    ends: SyncSender<Report>,
) {
    let mut events = Events::with_capacity(256);
    let mut conns: Vec<Option<SConn>> = Vec::with_capacity(2048);
    let mut rbuf = vec![0u8; 64 << 10];
    let mut pool = BufferPool::default();
    loop {
        poll.poll(&mut events, None).unwrap();
        for ev in events.iter() {
            match ev.token() {
                WAKER => {
                    while let Ok(cmd) = cmds.try_recv() {
                        match cmd {
                            Cmd::Stop => return,
                            Cmd::Measure(tx) => {
                                pool = BufferPool::default();
                                let live = conns.iter().flatten();
                                let m = Measure {
                                    live_heap: live_heap(),
                                    conns: live.clone().count(),
                                    handshaking: live.filter(|c| c.t.is_handshaking()).count(),
                                };
                                let _ = tx.send(m);
                            }
                        }
                    }
                }
                LISTENER => loop {
                    let (s, _) = match listener.accept() {
                        Ok(x) => x,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    };
                    if let Some(n) = sndbuf {
                        socket2::SockRef::from(&s).set_send_buffer_size(n).unwrap();
                    }
                    let mut t = Transport::tls(s, config.clone()).unwrap();
                    let idx = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(&mut t, Token(idx), Interest::READABLE | Interest::WRITABLE)
                        .unwrap();
                    conns[idx] = Some(SConn {
                        t,
                        out: WriteBuffer::default(),
                        bytes_in: 0,
                        blocked: 0,
                        tls_held: 0,
                        peer_done: false,
                    });
                },
                Token(idx) => {
                    let Some(c) = conns[idx].as_mut() else {
                        continue;
                    };
                    let to_eof = ev.is_read_closed() || ev.is_error();
                    let end = on_event(c, ev.is_readable() || to_eof, to_eof, &mut rbuf, &mut pool);
                    if let Some(end) = end {
                        let mut c = conns[idx].take().unwrap();
                        let _ = poll.registry().deregister(&mut c.t);
                        let _ = ends.send(Report {
                            alpn: c.t.alpn_protocol().map(<[u8]>::to_vec),
                            version: c.t.protocol_version(),
                            bytes_in: c.bytes_in,
                            blocked: c.blocked,
                            tls_held: c.tls_held,
                            end,
                        });
                    }
                }
            }
        }
    }
}

/// What the event loop must do for one readiness event; `Some` ends the connection.
fn on_event(
    c: &mut SConn,
    readable: bool,
    to_eof: bool,
    rbuf: &mut [u8],
    pool: &mut BufferPool,
) -> Option<End> {
    if readable && !c.peer_done {
        loop {
            match c.t.read(rbuf) {
                Ok(0) => {
                    c.peer_done = true;
                    break;
                }
                Ok(n) => {
                    c.bytes_in += n as u64;
                    c.out.append(pool).extend_from_slice(&rbuf[..n]);
                    if n < rbuf.len() && !to_eof {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(classify(e)),
            }
        }
    }
    // WRITABLE or fresh output: ciphertext held by rustls first, then the write buffer;
    // "all out" also needs rustls to hold nothing.
    let all_out = (|| -> io::Result<bool> {
        if !c.t.flush_tls()? || !c.out.flush(&mut c.t, pool)? {
            c.blocked += 1;
            return Ok(false);
        }
        if c.t.wants_write() {
            c.tls_held += 1;
            return Ok(false);
        }
        Ok(true)
    })();
    match all_out {
        Err(e) => Some(classify(e)),
        Ok(true) if c.peer_done => match c.t.shutdown_write() {
            Ok(true) => Some(End::CloseNotify),
            Ok(false) => None,
            Err(e) => Some(classify(e)),
        },
        Ok(_) => None,
    }
}

fn classify(e: io::Error) -> End {
    match TlsFailure::of(&e) {
        Some(TlsFailure::Protocol(p)) => End::Protocol(p.to_string()),
        Some(TlsFailure::PlainHttp) => End::PlainHttp,
        None if e.kind() == io::ErrorKind::UnexpectedEof => End::Truncated,
        None => End::Other(e.kind()),
    }
}

/// Reads until EOF or error; what came before either.
pub fn read_all(s: &mut impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return v,
            Ok(n) => v.extend_from_slice(&b[..n]),
        }
    }
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

pub fn write_raw(s: &mut std::net::TcpStream, b: &[u8]) {
    s.write_all(b).unwrap();
}
