//! The churn scenario for soak runs: worker threads open and end short-lived connections
//! for the whole duration, each a different way, and check every byte:
//!
//! - `clean`: upgrade on the echo path, 1–4 messages of random size and kind, each echo
//!   compared byte for byte, close 1000 answered with 1000, then TCP EOF.
//! - `rst`: upgrade, one verified echo, a second message, then a TCP reset mid-exchange.
//! - `half`: a request head cut at a random byte, then FIN, reset, or abandoned (parked):
//!   a parked socket must be closed by the server within its handshake timeout (+ grace).
//! - `http`: a pipelined GET with a chunked body, HEAD, GET `Connection: close`: three
//!   responses, the same length, HEAD without a body, the two bodies equal, then EOF.
//! - slow readers: chat subscribers with a tiny receive buffer that never read; the server
//!   must drop them (close 1008 when its backpressure limit is passed).
//!
//! With `--burst N` it instead opens N connections at once (past the server's open-file
//! limit, to see it refuse cleanly), holds them, ends them, and checks the server still
//! echoes. Prints one JSON line; exits 1 if anything was broken.

use crate::blocking::{self, content_length, read_body, read_head_from, Fail, Msg, Ws};
use clap::Args;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsloop::protocol::frame::OpCode;

/// Arguments of `wsload churn`.
#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Server base URL (ws://HOST:PORT on loopback); paths come from the options below.
    #[arg(long, default_value = "ws://127.0.0.1:8001/")]
    pub url: String,
    /// Path that echoes every message.
    #[arg(long, default_value = "/echo")]
    pub echo_path: String,
    /// Path of the broadcast chat (slow readers subscribe there).
    #[arg(long, default_value = "/chat")]
    pub chat_path: String,
    /// Path for plain HTTP requests (must answer 200 to GET and HEAD).
    #[arg(long, default_value = "/")]
    pub http_path: String,
    /// Seconds to run.
    #[arg(long, short = 'd', default_value_t = 60.0)]
    pub duration: f64,
    /// Threads, each doing one operation at a time.
    #[arg(long, default_value_t = 4)]
    pub workers: u32,
    /// Pause between one worker's operations, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub pause_ms: u64,
    /// Only this kind of operation (clean, rst, half, http); default: all, in turn.
    #[arg(long, value_parser = ["clean", "rst", "half", "http"])]
    pub only: Option<String>,
    /// Slow readers at a time (0: none).
    #[arg(long, default_value_t = 2)]
    pub slow_readers: u32,
    /// Seconds a slow reader waits, not reading, before checking it was dropped.
    #[arg(long, default_value_t = 30.0)]
    pub slow_hold: f64,
    /// The server's handshake timeout in seconds (parked half-opens must be closed by then).
    #[arg(long, default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Seconds past the handshake timeout a parked half-open may live (a stopped server,
    /// a busy machine) before it counts as kept open.
    #[arg(long, default_value_t = 20.0)]
    pub half_open_grace: f64,
    /// Seconds any single read or write may wait (covers a stopped server).
    #[arg(long, default_value_t = 30.0)]
    pub io_timeout: f64,
    /// Open this many connections at once instead of churning (the fault burst).
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
    /// Seconds the burst's connections are held.
    #[arg(long, default_value_t = 5.0)]
    pub burst_hold: f64,
}

/// Parked half-opens per worker at most.
const MAX_PARKED: usize = 32;

#[derive(Default)]
struct Counts {
    clean: AtomicU64,
    rst: AtomicU64,
    half_fin: AtomicU64,
    half_rst: AtomicU64,
    half_parked: AtomicU64,
    half_closed_by_server: AtomicU64,
    http: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    refused: AtomicU64,
    broken: AtomicU64,
    slow_started: AtomicU64,
    slow_dropped_1008: AtomicU64,
    slow_dropped_other: AtomicU64,
    slow_not_dropped: AtomicU64,
    burst_open: AtomicU64,
    burst_refused: AtomicU64,
}

struct Run {
    addr: SocketAddr,
    host: String,
    a: ChurnArgs,
    io: Duration,
    n: Counts,
    errors: Mutex<Vec<String>>,
    /// The first few refusals, for the record (they are not failures).
    refusals: Mutex<Vec<String>>,
}

impl Run {
    fn outcome(&self, what: &str, r: Result<(), Fail>) {
        match r {
            Ok(()) => {}
            Err(Fail::Refused(m)) => {
                self.n.refused.fetch_add(1, Relaxed);
                let mut r = self.refusals.lock().unwrap();
                if r.len() < 5 {
                    r.push(format!("{what}: {m}"));
                }
            }
            Err(Fail::Broken(m)) => {
                self.n.broken.fetch_add(1, Relaxed);
                let mut e = self.errors.lock().unwrap();
                if e.len() < 20 {
                    e.push(format!("{what}: {m}"));
                }
            }
        }
    }
}

/// xorshift64*: payload sizes, contents and choices, reproducible per worker.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs `wsload churn`; returns the process exit code.
pub fn run(a: &ChurnArgs) -> Result<i32, String> {
    let target = crate::cli::parse_url(&a.url)?;
    let run = Arc::new(Run {
        addr: target.addr,
        host: target.host.clone(),
        io: Duration::from_secs_f64(a.io_timeout.max(0.1)),
        a: a.clone(),
        n: Counts::default(),
        errors: Mutex::new(Vec::new()),
        refusals: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    match a.burst {
        Some(n) => burst(&run, n),
        None => churn(&run),
    }
    let n = &run.n;
    let g = |c: &AtomicU64| c.load(Relaxed);
    let errors = run.errors.lock().unwrap().clone();
    let refusals = run.refusals.lock().unwrap().clone();
    println!(
        "{{\"mode\":\"{}\",\"secs\":{:.1},\"clean\":{},\"rst\":{},\"half_fin\":{},\"half_rst\":{},\
         \"half_parked\":{},\"half_closed_by_server\":{},\"http\":{},\"messages_verified\":{},\
         \"bytes_verified\":{},\"refused\":{},\"broken\":{},\"slow_started\":{},\
         \"slow_dropped_1008\":{},\"slow_dropped_other\":{},\"slow_not_dropped\":{},\
         \"burst_open\":{},\"burst_refused\":{},\"errors\":{:?},\"refusals\":{:?}}}",
        if a.burst.is_some() { "burst" } else { "churn" },
        start.elapsed().as_secs_f64(),
        g(&n.clean),
        g(&n.rst),
        g(&n.half_fin),
        g(&n.half_rst),
        g(&n.half_parked),
        g(&n.half_closed_by_server),
        g(&n.http),
        g(&n.messages),
        g(&n.bytes),
        g(&n.refused),
        g(&n.broken),
        g(&n.slow_started),
        g(&n.slow_dropped_1008),
        g(&n.slow_dropped_other),
        g(&n.slow_not_dropped),
        g(&n.burst_open),
        g(&n.burst_refused),
        errors,
        refusals,
    );
    Ok(if g(&n.broken) > 0 { 1 } else { 0 })
}

fn churn(run: &Arc<Run>) {
    let deadline = Instant::now() + Duration::from_secs_f64(run.a.duration.max(0.0));
    let mut threads = Vec::new();
    for w in 0..run.a.workers {
        let run = run.clone();
        threads.push(std::thread::spawn(move || worker(&run, w, deadline)));
    }
    for s in 0..run.a.slow_readers {
        let run = run.clone();
        threads.push(std::thread::spawn(move || slow_reader(&run, s, deadline)));
    }
    for t in threads {
        t.join().expect("churn thread panicked");
    }
}

fn worker(run: &Run, w: u32, deadline: Instant) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((u64::from(w) + 1) * 0x1000_0001) ^ now_seed());
    let mut parked: Vec<(Instant, TcpStream)> = Vec::new();
    let mut i = 0u64;
    while Instant::now() < deadline {
        let kind = match run.a.only.as_deref() {
            Some("clean") => 0,
            Some("rst") => 1,
            Some("half") => 2,
            Some("http") => 4,
            _ => i % 6,
        };
        let r = match kind {
            0 | 3 => ("clean", clean(run, &mut rng)),
            1 => ("rst", rst(run, &mut rng)),
            2 => ("half", half(run, &mut rng, &mut parked)),
            _ => ("http", http(run)),
        };
        run.outcome(r.0, r.1);
        check_parked(run, &mut parked);
        i += 1;
        std::thread::sleep(Duration::from_millis(run.a.pause_ms));
    }
    // Every abandoned half-open must still be closed by the server.
    while !parked.is_empty() {
        std::thread::sleep(Duration::from_millis(250));
        check_parked(run, &mut parked);
    }
}

fn now_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn payload(rng: &mut Rng) -> (bool, Vec<u8>) {
    let len = match rng.below(10) {
        0 => 0,
        1..=5 => rng.below(126),
        6..=8 => 126 + rng.below(4000),
        _ => 4126 + rng.below(70_000),
    } as usize;
    let text = rng.below(2) == 0;
    let seed = rng.next();
    let bytes = (0..len)
        .map(|i| {
            let v = (seed >> (i % 7 * 8)) as u8 ^ i as u8;
            if text {
                b'a' + v % 26
            } else {
                v
            }
        })
        .collect();
    (text, bytes)
}

fn echo_one(run: &Run, ws: &mut Ws, rng: &mut Rng) -> Result<(), Fail> {
    let (text, p) = payload(rng);
    ws.send(if text { OpCode::Text } else { OpCode::Binary }, &p)?;
    let got = ws.recv()?;
    let ok = match &got {
        Msg::Text(b) => text && *b == p,
        Msg::Binary(b) => !text && *b == p,
        _ => false,
    };
    if !ok {
        return Err(Fail::Broken(format!(
            "echo of a {}-byte {} message differs: {:?}",
            p.len(),
            if text { "text" } else { "binary" },
            short(&got)
        )));
    }
    run.n.messages.fetch_add(1, Relaxed);
    run.n.bytes.fetch_add(p.len() as u64, Relaxed);
    Ok(())
}

fn short(m: &Msg) -> String {
    match m {
        Msg::Text(b) | Msg::Binary(b) => format!("{} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

fn clean(run: &Run, rng: &mut Rng) -> Result<(), Fail> {
    let mut ws = Ws::open(run.addr, &run.host, &run.a.echo_path, rng.next(), run.io)?;
    for _ in 0..1 + rng.below(4) {
        echo_one(run, &mut ws, rng)?;
    }
    ws.close(1000)?;
    run.n.clean.fetch_add(1, Relaxed);
    Ok(())
}

fn rst(run: &Run, rng: &mut Rng) -> Result<(), Fail> {
    let mut ws = Ws::open(run.addr, &run.host, &run.a.echo_path, rng.next(), run.io)?;
    echo_one(run, &mut ws, rng)?;
    let (_, p) = payload(rng);
    ws.send(OpCode::Binary, &p)?;
    blocking::reset(ws.stream);
    run.n.rst.fetch_add(1, Relaxed);
    Ok(())
}

fn half(run: &Run, rng: &mut Rng, parked: &mut Vec<(Instant, TcpStream)>) -> Result<(), Fail> {
    let mut s = blocking::connect(run.addr, run.io)?;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        run.a.echo_path, run.host
    );
    let cut = rng.below(head.len() as u64 - 1) as usize;
    s.write_all(&head.as_bytes()[..cut])
        .map_err(|e| Fail::Refused(format!("half-open write: {e}")))?;
    match rng.below(3) {
        0 => {
            drop(s);
            run.n.half_fin.fetch_add(1, Relaxed);
        }
        1 => {
            blocking::reset(s);
            run.n.half_rst.fetch_add(1, Relaxed);
        }
        _ if parked.len() < MAX_PARKED => {
            s.set_nonblocking(true).ok();
            parked.push((Instant::now(), s));
            run.n.half_parked.fetch_add(1, Relaxed);
        }
        _ => drop(s),
    }
    Ok(())
}

/// Drops parked half-opens the server has closed; a broken promise if one outlives the
/// handshake timeout by more than the grace.
fn check_parked(run: &Run, parked: &mut Vec<(Instant, TcpStream)>) {
    let limit = Duration::from_secs_f64(run.a.handshake_timeout + run.a.half_open_grace);
    parked.retain_mut(|(since, s)| {
        let mut b = [0u8; 4096];
        loop {
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(_) => continue, // a 408 or similar: read on to the EOF
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if since.elapsed() > limit {
                        run.outcome(
                            "half",
                            Err(Fail::Broken(format!(
                                "half-open still open after {:.0} s",
                                since.elapsed().as_secs_f64()
                            ))),
                        );
                        return false;
                    }
                    return true;
                }
                Err(_) => break, // reset: closed too
            }
        }
        run.n.half_closed_by_server.fetch_add(1, Relaxed);
        false
    });
}

fn http(run: &Run) -> Result<(), Fail> {
    let mut s = blocking::connect(run.addr, run.io)?;
    let (p, h) = (&run.a.http_path, &run.host);
    let req = format!(
        "GET {p} HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n\
         HEAD {p} HTTP/1.1\r\nHost: {h}\r\n\r\n\
         GET {p} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| Fail::Refused(format!("http write: {e}")))?;
    let (st1, h1, rest) = read_head_from(&mut s, Vec::new()).map_err(|e| match e {
        Fail::Broken(m) if m.contains("closed") => Fail::Refused(m),
        f => f,
    })?;
    if st1 == 503 {
        return Err(Fail::Refused("503".into()));
    }
    let len = content_length(&h1).ok_or_else(|| Fail::Broken("no Content-Length".into()))?;
    let (body1, rest) = read_body(&mut s, rest, len)?;
    let (st2, h2, rest) = read_head_from(&mut s, rest)?;
    let (st3, h3, rest) = read_head_from(&mut s, rest)?;
    let (body3, rest) = read_body(&mut s, rest, content_length(&h3).unwrap_or(usize::MAX))?;
    if (st1, st2, st3) != (200, 200, 200) {
        return Err(Fail::Broken(format!("statuses {st1} {st2} {st3}")));
    }
    if content_length(&h2) != Some(len) || body1 != body3 || !rest.is_empty() {
        return Err(Fail::Broken("pipelined responses disagree".into()));
    }
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => return Err(Fail::Broken("bytes after Connection: close".into())),
        Err(e) => return Err(Fail::Broken(format!("no EOF after Connection: close: {e}"))),
    }
    run.n.http.fetch_add(1, Relaxed);
    Ok(())
}

fn slow_reader(run: &Run, k: u32, deadline: Instant) {
    let hold = Duration::from_secs_f64(run.a.slow_hold);
    let mut seed = now_seed() ^ u64::from(k);
    while Instant::now() + hold < deadline {
        seed = seed.wrapping_add(0x9e37_79b9);
        let r = slow_once(run, seed, hold);
        run.outcome("slow", r);
    }
}

fn slow_once(run: &Run, seed: u64, hold: Duration) -> Result<(), Fail> {
    let sock = Socket::new(
        Domain::for_address(run.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| Fail::Refused(format!("socket: {e}")))?;
    // Small before connect, so the window stays small and the server's buffer fills.
    sock.set_recv_buffer_size(2048).ok();
    sock.connect_timeout(&run.addr.into(), run.io)
        .map_err(|e| Fail::Refused(format!("connect: {e}")))?;
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    stream.set_write_timeout(Some(run.io)).ok();
    let mut ws = Ws::handshake(stream, &run.host, &run.a.chat_path, seed)?;
    run.n.slow_started.fetch_add(1, Relaxed);
    std::thread::sleep(hold);
    // Now read everything: the server should have given up on us by now.
    let until = Instant::now() + run.io;
    loop {
        match ws.recv() {
            Ok(Msg::Close(Some(1008))) => {
                run.n.slow_dropped_1008.fetch_add(1, Relaxed);
                return Ok(());
            }
            Ok(_) if Instant::now() < until => {}
            Ok(_) => break,
            Err(Fail::Broken(m)) if m.contains("timed out") || m.contains("temporarily") => break,
            Err(_) => {
                run.n.slow_dropped_other.fetch_add(1, Relaxed);
                return Ok(());
            }
        }
    }
    run.n.slow_not_dropped.fetch_add(1, Relaxed);
    let _ = ws.close(1000);
    Ok(())
}

fn burst(run: &Arc<Run>, n: u32) {
    let threads = 8u32;
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for t in 0..threads {
        let (run, held) = (run.clone(), held.clone());
        hs.push(std::thread::spawn(move || {
            for i in (t..n).step_by(threads as usize) {
                match Ws::open(
                    run.addr,
                    &run.host,
                    &run.a.echo_path,
                    u64::from(i) + 1,
                    Duration::from_secs(5),
                ) {
                    Ok(ws) => {
                        run.n.burst_open.fetch_add(1, Relaxed);
                        held.lock().unwrap().push(ws);
                    }
                    Err(Fail::Refused(_)) => {
                        run.n.burst_refused.fetch_add(1, Relaxed);
                    }
                    Err(f) => run.outcome("burst open", Err(f)),
                }
            }
        }));
    }
    for h in hs {
        h.join().expect("burst thread panicked");
    }
    std::thread::sleep(Duration::from_secs_f64(run.a.burst_hold));
    let all = std::mem::take(&mut *held.lock().unwrap());
    for (i, ws) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            blocking::reset(ws.stream);
        } else {
            let _ = ws.close(1000);
        }
    }
    // The server must serve again once the burst is gone.
    let mut rng = Rng(now_seed() | 1);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match clean(run, &mut rng) {
            Ok(()) => return,
            Err(Fail::Refused(_)) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(f) => return run.outcome("after burst", Err(f)),
        }
    }
}
