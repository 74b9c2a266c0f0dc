//! Hostile HTTP/1.1 clients against the real `wsloop` binary (issue 9): request smuggling
//! through bodies, duplicate singleton headers, pipelining floods (RSS bound, other clients
//! still served), slow and stalled downloads, HEAD responses, invalid configuration, and
//! the open-file limit.
//!
//! Every wait is bounded; timing bounds are generous (2 loaded cores, debug build). The
//! heavy tests (floods, downloads) take a lock so they do not run at the same time.
//! Run with `--nocapture` to see the RSS numbers measured.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A fresh client's echo round trip must complete within this while a hostile one runs.
const SERVED_WITHIN: Duration = Duration::from_secs(10);
/// Server RSS growth allowed during a pipelining flood.
const FLOOD_RSS_LIMIT_KB: u64 = 32 * 1024;
/// A legit request pipelined behind the one under test; answering it shows the stream
/// is still in sync (it is the next request, not body bytes, not a smuggled one).
const NEXT_GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
/// 35 bytes that are a complete request if anyone parses the body as one.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

// ----------------------------------------------------------------------------- helpers

fn www() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/www")
}

fn www_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}", www())).expect("www file")
}

/// The shared server for the cheap, stateless tests.
fn server() -> SocketAddr {
    static CELL: OnceLock<ServerProc> = OnceLock::new();
    shared_server(&CELL, "echo", &["--www", www()]).addr
}

/// Serialises the CPU-heavy tests (floods, timed downloads).
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

fn server_running(server: &mut ServerProc) {
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "server exited: {:?}",
        server.child.try_wait()
    );
}

/// Sends `request` (one request with a body) and [`NEXT_GET`] in one write: the first
/// gets exactly one response with `status`, the second gets `index.html`, then the
/// connection closes with nothing else on it.
fn one_answer_then_next(request: &[u8], status: u16, head_only: bool) {
    let what = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
    let mut s = raw_connect(server());
    send(&mut s, &cat(&[request, NEXT_GET]));
    let first = if head_only {
        read_head_response(&mut s)
    } else {
        read_http_response(&mut s)
    };
    assert_eq!(first.status, status, "{what:?}:\n{}", first.head);
    assert_eq!(
        first.header("connection"),
        Some("keep-alive"),
        "{what:?}:\n{}",
        first.head
    );
    let next = read_http_response(&mut s);
    assert_eq!(
        (next.status, next.body.len()),
        (200, www_file("index.html").len()),
        "after {what:?} the next response must answer GET /index.html \
         (404 = the body was parsed as a request):\n{}",
        next.head
    );
    assert_eq!(next.body, www_file("index.html"));
    expect_nothing_more(&mut s, "Connection: close");
}

/// Sends `request` followed by [`NEXT_GET`]; expects one error response with `status`
/// and `Connection: close`, then the close with nothing else answered.
fn refused_then_closed(request: &[u8], status: u16, head_only: bool) {
    let what = String::from_utf8_lossy(&request[..request.len().min(120)]).into_owned();
    let mut s = raw_connect(server());
    send(&mut s, &cat(&[request, NEXT_GET]));
    let r = if head_only {
        read_head_response(&mut s)
    } else {
        read_http_response(&mut s)
    };
    assert_eq!(r.status, status, "{what:?}:\n{}", r.head);
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "{what:?}:\n{}",
        r.head
    );
    assert!(r.header("sec-websocket-accept").is_none(), "{}", r.head);
    expect_nothing_more(&mut s, &format!("the {status} to {what:?}"));
}

/// A request whose head is fine but whose body turns out bad (`Transfer-Encoding:
/// chunked` with broken framing, or more than the server reads past). The request gets
/// exactly one response: the error (`status`), or its normal answer (`normal`) if it was
/// sent before the body went wrong; either way the connection then closes, with no
/// second response (it would be taken as the answer to the client's next request).
fn bad_body_one_response(request: Vec<u8>, status: u16, normal: u16) {
    let what = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
    let mut s = raw_connect(server());
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        // The server may close before it has everything: a reset here is fine.
        let _ = w.write_all(&cat(&[&request, NEXT_GET]));
    });
    let r = read_http_response(&mut s);
    assert!(
        r.status == status || r.status == normal,
        "{what:?}: expected {status} (or {normal} then a close), got:\n{}",
        r.head
    );
    if r.status == status {
        assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
    }
    let (rest, _) = read_until_closed(&mut s);
    assert!(
        rest.is_empty(),
        "{what:?}: one request got a {} and then a second response: {:?}",
        r.status,
        String::from_utf8_lossy(&rest[..rest.len().min(200)])
    );
    writer.join().unwrap();
}

fn big_pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// A temporary `www` directory, removed on drop.
struct TempWww(PathBuf);

impl TempWww {
    fn new(name: &str, files: &[(&str, &[u8])]) -> Self {
        let dir = std::env::temp_dir().join(format!("wsloop-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (f, data) in files {
            std::fs::write(dir.join(f), data).unwrap();
        }
        TempWww(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempWww {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines the server wrote to stderr so far.
type Log = Arc<Mutex<Vec<String>>>;

/// Spawns `wsloop` with `args` under `prefix` (e.g. `prlimit ...`), `RUST_LOG=info`, and
/// collects its stderr lines. `Err(status)` if it exits before its start-up line.
fn spawn_logged(
    prefix: &[&str],
    args: &[&str],
) -> Result<(ServerProc, Log), std::process::ExitStatus> {
    let bin = env!("CARGO_BIN_EXE_wsloop");
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsloop");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no start-up line within 20 s");
    if line.is_empty() {
        let st = child.wait().expect("wait");
        return Err(st);
    }
    let addr = startup_addr(&line);
    Ok((ServerProc { child, addr }, log))
}

/// `n` pipelined GETs: `/index.html`, every seventh `/favicon.svg` (so the order of the
/// answers can be checked by their lengths); the last says `Connection: close`.
fn pipelined_gets(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 42);
    for i in 0..n {
        let path = if i % 7 == 3 {
            "/favicon.svg"
        } else {
            "/index.html"
        };
        let close = if i + 1 == n {
            "Connection: close\r\n"
        } else {
            ""
        };
        out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: h\r\n{close}\r\n").as_bytes());
    }
    out
}

/// Reads the `n` answers to [`pipelined_gets`]: each complete, in order, correct body;
/// then the close. `progress` counts responses read so far.
fn read_pipelined_gets(s: &TcpStream, n: usize, progress: &AtomicUsize) {
    let (index, favicon) = (www_file("index.html"), www_file("favicon.svg"));
    let mut r = BufReader::with_capacity(256 << 10, s.try_clone().unwrap());
    for i in 0..n {
        let p = read_piped(&mut r, false)
            .unwrap_or_else(|e| panic!("response {i} of {n}: {e}"))
            .unwrap_or_else(|| panic!("connection closed after {i} of {n} responses"));
        let want = if i % 7 == 3 { &favicon } else { &index };
        assert_eq!(p.status, 200, "response {i}");
        assert!(
            p.body == *want,
            "response {i} of {n}: {} bytes, expected {} (out of order or corrupt)",
            p.body.len(),
            want.len()
        );
        progress.store(i + 1, Ordering::Relaxed);
    }
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "{} bytes after the {n} responses: {:?}",
        rest.len(),
        String::from_utf8_lossy(&rest[..rest.len().min(200)])
    );
}

// ------------------------------------------------------------- 1. smuggling through bodies

/// A body declared by `Content-Length` is read past, never parsed as the next request.
#[test]
fn content_length_body_is_read_past_not_parsed() {
    let body_len = format!("Content-Length: {}\r\n", SMUGGLED.len());
    let req = |method: &str| {
        cat(&[
            format!("{method} / HTTP/1.1\r\nHost: h\r\n{body_len}\r\n").as_bytes(),
            SMUGGLED,
        ])
    };
    one_answer_then_next(&req("GET"), 200, false);
    one_answer_then_next(&req("HEAD"), 200, true);
    one_answer_then_next(&req("POST"), 405, false);
    one_answer_then_next(&req("OPTIONS"), 405, false);
    one_answer_then_next(&req("DELETE"), 405, false);
}

/// The same with a chunked body (with an extension and a trailer, which are skipped too).
#[test]
fn chunked_body_is_read_past_not_parsed() {
    let te = "Transfer-Encoding: chunked\r\n";
    for method in ["GET", "HEAD", "POST", "OPTIONS"] {
        let status = if matches!(method, "GET" | "HEAD") {
            200
        } else {
            405
        };
        let head = format!("{method} / HTTP/1.1\r\nHost: h\r\n{te}\r\n");
        one_answer_then_next(
            &cat(&[head.as_bytes(), &chunked(SMUGGLED)]),
            status,
            method == "HEAD",
        );
        // Split over two chunks, with an extension, a trailer field and a coding first.
        let head =
            format!("{method} / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        let body = cat(&[
            b"4;ext=\"a b\"\r\n",
            &SMUGGLED[..4],
            b"\r\n1F\r\n",
            &SMUGGLED[4..],
            b"\r\n0\r\nX-Trailer: GET /smuggled HTTP/1.1\r\n\r\n",
        ]);
        one_answer_then_next(&cat(&[head.as_bytes(), &body]), status, method == "HEAD");
    }
}

/// Framing that two readers could disagree on is refused with 400 and the connection
/// closed; the request pipelined behind is never answered (RFC 9112 §6.1, §6.3).
#[test]
fn ambiguous_framing_is_refused_and_closed() {
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding before Content-Length",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "two different Content-Length",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 35\r\nContent-Length: 0\r\n\r\n",
            400,
        ),
        (
            "Content-Length list",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
            400,
        ),
        (
            "signed Content-Length",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
            400,
        ),
        (
            "chunked not final",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
        (
            "chunked twice",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding over two lines",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "unknown coding",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"GET / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n",
            400,
        ),
    ];
    for (name, req, status) in cases {
        println!("[framing] {name}");
        refused_then_closed(req, *status, false);
    }
    // The same answers for HEAD, without a body.
    refused_then_closed(
        b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        true,
    );
}

/// A declared body larger than the server reads past gets 413 and a close, at once.
#[test]
fn declared_body_over_the_limit_gets_413() {
    let max = wsloop::Config::default().max_request_body;
    for method in ["GET", "POST", "HEAD"] {
        let req = format!(
            "{method} / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            max + 1
        );
        refused_then_closed(req.as_bytes(), 413, method == "HEAD");
    }
    // 19 digits: more than a u64 can be trusted to hold.
    refused_then_closed(
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
        400,
        false,
    );
    // Exactly the limit is read past.
    let body = vec![b'x'; max];
    let head = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {max}\r\n\r\n");
    let mut s = raw_connect(server());
    let w = send_in_background(&s, cat(&[head.as_bytes(), &body, NEXT_GET]));
    assert_eq!(read_http_response(&mut s).status, 405);
    let next = read_http_response(&mut s);
    assert_eq!((next.status, next.body), (200, www_file("index.html")));
    expect_nothing_more(&mut s, "Connection: close");
    w.join().unwrap();
}

/// A chunked body that grows past the limit: one response, then the connection closes.
#[test]
fn chunked_body_over_the_limit_is_cut() {
    let max = wsloop::Config::default().max_request_body;
    let mut body = Vec::new();
    for _ in 0..(max / 0x4000 + 2) {
        body.extend_from_slice(b"4000\r\n");
        body.extend(std::iter::repeat_n(b'a', 0x4000));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    for method in ["GET", "POST"] {
        let normal = if method == "GET" { 200 } else { 405 };
        let head = format!("{method} / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        bad_body_one_response(cat(&[head.as_bytes(), &body]), 413, normal);
    }
}

/// Broken chunk framing: one response, then the connection closes; nothing after it is
/// parsed or answered.
#[test]
fn malformed_chunks_close_the_connection() {
    let cases: &[(&str, &[u8])] = &[
        ("not hex", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("no CRLF after data", b"5\r\nhelloXX0\r\n\r\n"),
        ("bare LF after size", b"5\nhello\r\n0\r\n\r\n"),
        ("negative size", b"-5\r\nhello\r\n0\r\n\r\n"),
        ("size overflows u64", b"1ffffffffffffffff\r\nx\r\n0\r\n\r\n"),
        ("space inside size", b"1 2\r\nx\r\n0\r\n\r\n"),
    ];
    for (name, body) in cases {
        println!("[chunks] {name}");
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        bad_body_one_response(cat(&[head, body]), 400, 200);
    }
}

// ------------------------------------------------------------ 2. duplicate singleton headers

#[test]
fn duplicate_singleton_headers_get_400() {
    let addr = server();
    let upgrade_with = |extra: &str| upgrade_request(addr, extra).into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "two Sec-WebSocket-Key",
            upgrade_with("Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"),
        ),
        (
            "the same Sec-WebSocket-Key twice",
            upgrade_with(&format!("sec-websocket-key: {KEY}\r\n")),
        ),
        (
            "two Sec-WebSocket-Version",
            upgrade_with("Sec-WebSocket-Version: 13\r\n"),
        ),
        ("two Host (upgrade)", upgrade_with("HOST: other\r\n")),
        (
            "two Origin",
            upgrade_with("Origin: http://a.example\r\nOrigin: http://b.example\r\n"),
        ),
        ("two Content-Length", upgrade_with("Content-Length: 0\r\nContent-Length: 0\r\n")),
        (
            "two Host (GET)",
            b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        ),
        (
            "two Content-Length, same value (GET)",
            b"GET /index.html HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc".to_vec(),
        ),
        (
            "two Origin (GET)",
            b"GET /index.html HTTP/1.1\r\nHost: h\r\nOrigin: http://a\r\nOrigin: http://a\r\n\r\n"
                .to_vec(),
        ),
        (
            "no Host in HTTP/1.1 (GET)",
            b"GET /index.html HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "no Host in HTTP/1.1 (upgrade)",
            format!(
                "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "upgrade with a body",
            cat(&[&upgrade_with("Content-Length: 3\r\n"), b"abc"]),
        ),
        (
            "upgrade with a chunked body",
            cat(&[&upgrade_with("Transfer-Encoding: chunked\r\n"), b"0\r\n\r\n"]),
        ),
    ];
    for (name, req) in cases {
        println!("[duplicates] {name}");
        let r = expect_http_error(addr, &req, 400);
        assert!(!r.head.contains("101"), "{name}: {}", r.head);
    }
    // And each of those was refused on its own merits: the same upgrade without the
    // duplicate is accepted.
    raw_ws(addr);
}

// ------------------------------------------------------------------- 3. pipelining floods

/// 20 000 pipelined GETs written in one burst by a client that does not read for a
/// while: bounded server memory, other clients served meanwhile, then every answer, in
/// order.
#[test]
fn pipelined_flood_is_bounded_and_answered_in_order() {
    let _g = heavy();
    let mut server = ServerProc::start("echo", &["--www", www()]);
    let mut mem = RssBound::new(&server, "20 000 pipelined GETs", FLOOD_RSS_LIMIT_KB);
    const N: usize = 20_000;
    let s = raw_connect(server.addr);
    let writer = send_in_background(&s, pipelined_gets(N));
    // Not reading: the server must stop at its backpressure bound, not buffer answers.
    for _ in 0..6 {
        thread::sleep(Duration::from_millis(250));
        mem.sample();
        echo_served_within(server.addr, SERVED_WITHIN);
        mem.sample();
    }
    let progress = Arc::new(AtomicUsize::new(0));
    let (reader_s, p) = (s.try_clone().unwrap(), progress.clone());
    let reader = thread::spawn(move || read_pipelined_gets(&reader_s, N, &p));
    let t0 = Instant::now();
    while !reader.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "flood not read in 60 s"
        );
        mem.sample();
        thread::sleep(Duration::from_millis(100));
    }
    reader.join().expect("reading the answers");
    writer.join().unwrap();
    println!("[flood] {N} answers read in {:?}", t0.elapsed());
    assert_eq!(progress.load(Ordering::Relaxed), N);
    echo_served_within(server.addr, SERVED_WITHIN);
    server_running(&mut server);
    mem.report();
}

/// 513 KB of tiny pipelined requests, answered as fast as the client reads: another
/// client's echo is served while the flood is still being answered.
#[test]
fn pipelined_burst_does_not_stall_other_clients() {
    let _g = heavy();
    let mut server = ServerProc::start("echo", &["--www", www()]);
    let mut mem = RssBound::new(&server, "513 KB burst", FLOOD_RSS_LIMIT_KB);
    // The requests are 37 or 38 bytes: enough of them for 513 KB.
    let n = 513 * 1024 / 37 + 1;
    let burst = pipelined_gets(n);
    assert!(burst.len() >= 513 * 1024, "{}", burst.len());
    let s = raw_connect(server.addr);
    let progress = Arc::new(AtomicUsize::new(0));
    let (reader_s, p) = (s.try_clone().unwrap(), progress.clone());
    let reader = thread::spawn(move || read_pipelined_gets(&reader_s, n, &p));
    let writer = send_in_background(&s, burst);
    let t0 = Instant::now();
    while progress.load(Ordering::Relaxed) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no answer in 20 s");
        thread::sleep(Duration::from_millis(5));
    }
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(echo_served_within(server.addr, SERVED_WITHIN));
        mem.sample();
    }
    let answered = progress.load(Ordering::Relaxed);
    println!("[burst] echo round trips {served:?} while {answered} of {n} answers were read");
    assert!(
        answered < n,
        "the flood ({n} requests) was over before the other client was served"
    );
    reader.join().expect("reading the answers");
    writer.join().unwrap();
    server_running(&mut server);
    mem.report();
}

/// 30 000 pipelined requests (the old code recursed once per request and overflowed
/// its stack at about 27 000).
#[test]
fn thirty_thousand_pipelined_requests_do_not_crash() {
    let _g = heavy();
    let mut server = ServerProc::start("echo", &["--www", www()]);
    let mut mem = RssBound::new(&server, "30 000 pipelined", FLOOD_RSS_LIMIT_KB);
    const N: usize = 30_000;
    let mut reqs = Vec::new();
    for i in 0..N {
        let close = if i + 1 == N {
            "Connection: close\r\n"
        } else {
            ""
        };
        reqs.extend_from_slice(
            format!("GET /favicon.svg HTTP/1.1\r\nHost: h\r\n{close}\r\n").as_bytes(),
        );
    }
    let s = raw_connect(server.addr);
    let writer = send_in_background(&s, reqs);
    let favicon = www_file("favicon.svg");
    let mut r = BufReader::with_capacity(256 << 10, s.try_clone().unwrap());
    for i in 0..N {
        let p = read_piped(&mut r, false)
            .unwrap_or_else(|e| panic!("response {i}: {e}"))
            .unwrap_or_else(|| panic!("closed after {i} responses"));
        assert_eq!((p.status, &p.body), (200, &favicon), "response {i}");
        if i % 5000 == 0 {
            mem.sample();
        }
    }
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} bytes after {N} responses", rest.len());
    writer.join().unwrap();
    server_running(&mut server);
    echo_served_within(server.addr, SERVED_WITHIN);
    mem.report();
}

// ------------------------------------------------------------------------ 4. downloads

/// Reads a `len`-byte body in 32 KiB pieces, `gap` apart, with one 1.3 s pause half-way
/// (longer than the 1 s handshake timeout, shorter than the 2 s idle timeout).
fn read_slowly(s: &mut TcpStream, len: usize, gap: Duration) -> Vec<u8> {
    let t0 = Instant::now();
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; 32 << 10];
    let mut paused = false;
    while got.len() < len {
        let want = (len - got.len()).min(buf.len());
        match s.read(&mut buf[..want]) {
            Ok(0) => panic!(
                "download cut after {} of {len} bytes, {:?}",
                got.len(),
                t0.elapsed()
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("download failed after {} of {len} bytes: {e}", got.len()),
        }
        if !paused && got.len() > len / 2 {
            paused = true;
            thread::sleep(Duration::from_millis(1300));
        } else if got.len() < len {
            thread::sleep(gap);
        }
    }
    let took = t0.elapsed();
    println!("[slow download] {len} bytes in {took:?}");
    assert!(
        took > Duration::from_secs(3),
        "the client read too fast: {took:?}"
    );
    got
}

/// A connection whose receive buffer is small and fixed, so the server's writes follow
/// the client's reads (instead of the whole file sitting in the kernel's buffers).
fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 << 10).unwrap();
    sock.connect(&addr.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Asks for `/slow.bin` and reads the 200 head; returns its `Content-Length`.
fn request_slow_bin(s: &mut TcpStream) -> usize {
    send(s, b"GET /slow.bin HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = read_head_response(s);
    assert_eq!(head.status, 200, "{}", head.head);
    head.header("content-length").unwrap().parse().unwrap()
}

fn slow_download_server(dir: &TempWww) -> ServerProc {
    ServerProc::start(
        "echo",
        &[
            "--www",
            dir.path(),
            "--handshake-timeout",
            "1",
            "--idle-timeout",
            "2",
        ],
    )
}

/// With a 1 s handshake timeout, a steady download of 12 MiB taking several seconds
/// (with one 1.3 s pause) gets the whole file; a request pipelined behind it is
/// answered after it. The client's small receive buffer keeps the server writing the
/// file for seconds, well past the head's deadline.
#[test]
fn slow_download_is_not_cut_by_the_handshake_deadline() {
    let _g = heavy();
    let data = big_pattern(12 << 20);
    let dir = TempWww::new(
        "slow-download",
        &[("slow.bin", &data), ("a.txt", b"after\n")],
    );
    let mut server = slow_download_server(&dir);
    let mut s = connect_small_rcvbuf(server.addr);
    let len = request_slow_bin(&mut s);
    assert_eq!(len, data.len());
    send(
        &mut s,
        b"GET /a.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let got = read_slowly(&mut s, len, Duration::from_millis(10));
    assert!(got == data, "downloaded bytes differ from the file");
    let r = read_http_response(&mut s);
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"after\n"[..]),
        "{}",
        r.head
    );
    expect_nothing_more(&mut s, "Connection: close");
    server_running(&mut server);
}

/// The same download, and the client sends its next request only once it has read the
/// whole file, as a browser does. The next head's deadline must not run while the
/// response is still on its way (in the kernel's socket buffers): the request is served.
#[test]
fn next_request_after_a_slow_download_is_served() {
    let _g = heavy();
    let data = big_pattern(4 << 20);
    let dir = TempWww::new(
        "slow-download-next",
        &[("slow.bin", &data), ("a.txt", b"after\n")],
    );
    let mut server = slow_download_server(&dir);
    let mut s = raw_connect(server.addr);
    let len = request_slow_bin(&mut s);
    let got = read_slowly(&mut s, len, Duration::from_millis(25));
    assert!(got == data, "downloaded bytes differ from the file");
    // At once: the client is not idle, it has only just got the end of the response.
    send(
        &mut s,
        b"GET /a.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let (rest, _) = read_until_closed(&mut s);
    assert!(
        rest.starts_with(b"HTTP/1.1 200 OK\r\n") && rest.ends_with(b"\r\n\r\nafter\n"),
        "the request sent right after the download got {:?} (closed by the head deadline, \
         counted from when the kernel took the last byte, not when the client got it)",
        String::from_utf8_lossy(&rest)
    );
    server_running(&mut server);
}

/// A client that stops reading a download is cut after the idle timeout (no progress),
/// and the server releases its socket and file.
#[test]
fn stalled_download_is_cut_after_the_idle_timeout() {
    let _g = heavy();
    let data = big_pattern(32 << 20);
    let dir = TempWww::new("stalled-download", &[("big.bin", &data)]);
    let mut server = ServerProc::start(
        "echo",
        &[
            "--www",
            dir.path(),
            "--handshake-timeout",
            "1",
            "--idle-timeout",
            "2",
        ],
    );
    let baseline = server.fd_count();
    let mut s = raw_connect(server.addr);
    send(&mut s, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = read_head_response(&mut s);
    assert_eq!(head.status, 200, "{}", head.head);
    assert!(
        server.fd_count() > baseline,
        "the download holds no descriptor?"
    );
    // Stop reading. The server must give up within a bounded time.
    let t0 = Instant::now();
    while server.fd_count() > baseline {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "stalled download still open after 20 s (idle timeout 2 s)"
        );
        echo_served_within(server.addr, SERVED_WITHIN);
        thread::sleep(Duration::from_millis(200));
    }
    println!("[stalled download] released after {:?}", t0.elapsed());
    let (got, _) = read_until_closed(&mut s);
    assert!(
        got.len() < data.len(),
        "the whole file arrived although the client never read"
    );
    server_running(&mut server);
}

// ------------------------------------------------------------------------------- 5. HEAD

/// HEAD answers carry the headers GET would get and no body, so the keep-alive stream
/// stays in sync; pipelined in one write, a stray body would be read as the next head.
#[test]
fn head_responses_have_no_body_and_keep_the_stream_in_sync() {
    let addr = server();
    let mut s = raw_connect(addr);
    send(
        &mut s,
        b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /missing HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /index.html HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /%zz HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /favicon.svg HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let get_404 = read_http_response(&mut s);
    assert_eq!(get_404.status, 404, "{}", get_404.head);
    let head_404 = read_head_response(&mut s);
    assert_eq!(head_404.status, 404, "{}", head_404.head);
    assert_eq!(
        head_404.header("content-length"),
        get_404.header("content-length"),
        "HEAD must announce the GET body's length"
    );
    let get = read_http_response(&mut s);
    assert_eq!(
        (get.status, &get.body),
        (200, &www_file("index.html")),
        "after HEAD /missing: {}",
        get.head
    );
    let head = read_head_response(&mut s);
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(read_head_response(&mut s).status, 400);
    let last = read_http_response(&mut s);
    assert_eq!(
        (last.status, &last.body),
        (200, &www_file("favicon.svg")),
        "{}",
        last.head
    );
    expect_nothing_more(&mut s, "Connection: close");
}

fn head_refusal_has_no_body(name: &str, req: &[u8], status: u16) {
    let mut s = raw_connect(server());
    send(&mut s, req);
    let r = read_head_response(&mut s);
    assert_eq!(r.status, status, "{name}: {}", r.head);
    assert_eq!(r.header("connection"), Some("close"), "{name}: {}", r.head);
    assert!(
        r.header("content-length").is_some_and(|l| l != "0"),
        "{name}: HEAD should announce the GET body's length:\n{}",
        r.head
    );
    expect_nothing_more(&mut s, &format!("{name} ({status})"));
}

/// Refusals of HEAD requests found in the head (400) or its framing (413) have no body.
#[test]
fn head_refusals_have_no_body() {
    head_refusal_has_no_body(
        "HEAD with two Host",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    );
    head_refusal_has_no_body(
        "HEAD with a malformed Content-Length",
        b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
        400,
    );
    head_refusal_has_no_body(
        "HEAD with a body too large",
        b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n",
        413,
    );
}

/// A HEAD upgrade request is refused 405 (an upgrade must be a GET, RFC 6455 §4.1),
/// and, being the answer to a HEAD, without a body.
#[test]
fn head_upgrade_405_has_no_body() {
    let upgrade = upgrade_request(server(), "").replacen("GET", "HEAD", 1);
    head_refusal_has_no_body("HEAD upgrade", upgrade.as_bytes(), 405);
}

/// Without static files, HEAD gets the 426 head only; the same connection then gets the
/// GET's 426 with its body, and then upgrades.
#[test]
fn head_426_keeps_the_stream_in_sync() {
    let server = ServerProc::start("echo", &["--no-www"]);
    let mut s = raw_connect(server.addr);
    send(
        &mut s,
        b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /index.html HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    let head = read_head_response(&mut s);
    assert_eq!(head.status, 426, "{}", head.head);
    assert_eq!(
        head.header("connection"),
        Some("keep-alive"),
        "{}",
        head.head
    );
    let get = read_http_response(&mut s);
    assert_eq!(get.status, 426, "after HEAD: {}", get.head);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(
        get.body.len(),
        get.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
    );
    send(&mut s, upgrade_request(server.addr, "").as_bytes());
    let up = read_http_head(&mut s);
    assert!(up.starts_with("HTTP/1.1 101"), "upgrade after 426s: {up}");
    send(&mut s, &text_frame(b"in sync"));
    expect_message(&mut s, OP_TEXT, b"in sync");
}

// ------------------------------------------------------------- 6, 7. configuration limits

/// `max_backpressure` below `low_watermark` would leave a paused connection stuck
/// forever (drain never fires): `Server::bind` refuses it, naming the field.
#[test]
fn bind_refuses_backpressure_below_low_watermark() {
    let config = wsloop::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_backpressure: 1024,
        low_watermark: 64 << 10,
        ..wsloop::Config::default()
    };
    match wsloop::Server::bind(config, wsloop::apps::echo::Echo::default()) {
        Ok(_) => panic!("Server::bind accepted max_backpressure 1024 < low_watermark 65536"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("low_watermark") || msg.contains("max_backpressure"),
                "the error should name the field: {msg}"
            );
        }
    }
}

/// An idle timeout the timer cannot hold is refused at start-up, or at least does not
/// wrap to a tiny one (it used to ping after 0.1 s and close after 0.2 s).
#[test]
fn huge_idle_timeout_does_not_wrap() {
    match spawn_logged(
        &[],
        &[
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "858993459.4",
        ],
    ) {
        Err(st) => assert!(!st.success(), "refused, but exit status {st}"),
        Ok((server, _log)) => {
            let mut s = raw_ws(server.addr);
            s.set_read_timeout(Some(Duration::from_millis(1200)))
                .unwrap();
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Ok(n) => panic!(
                    "idle-timeout 858993459.4 s: the server sent {:?} within 1.2 s (the timeout wrapped)",
                    &b[..n]
                ),
                Err(e) => panic!("idle-timeout 858993459.4 s: connection failed within 1.2 s: {e}"),
            }
        }
    }
}

// ------------------------------------------------------------------------- 8. fd limit

/// Under a 200-descriptor limit, `max_connections` is lowered (and logged); the clients
/// past it get a 503 at once (not a hang in the backlog), the others keep working, and
/// a freed slot is usable again.
#[test]
fn fd_limit_clamps_connections_and_answers_503() {
    let (mut server, log) = spawn_logged(
        &["prlimit", "--nofile=200:200", "--"],
        &["echo", "--listen", "127.0.0.1:0", "--www", www()],
    )
    .expect("wsloop under prlimit");
    let addr = server.addr;
    let t0 = Instant::now();
    let mut held = Vec::new();
    let refused = loop {
        assert!(
            held.len() < 200,
            "200 connections accepted under a 200-fd limit"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "opening connections took 60 s"
        );
        let mut s = raw_connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        send(&mut s, upgrade_request(addr, "").as_bytes());
        let r = read_http_response(&mut s);
        match r.status {
            101 => held.push(s),
            503 => break (s, r),
            other => panic!("connection {}: unexpected {other}:\n{}", held.len(), r.head),
        }
    };
    let (mut s503, r) = refused;
    assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
    expect_nothing_more(&mut s503, "the 503");
    let n = held.len();
    println!("[fd limit] {n} connections accepted, then 503");
    assert!(n > 0);
    let logged = log.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("max_connections") && l.contains(&format!("lowered to {n}"))),
        "no start-up line saying max_connections was lowered to {n}: {logged:#?}"
    );
    // More clients at the limit, even ones that send nothing: 503 each, promptly.
    for i in 0..30 {
        let mut s = raw_connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if i % 2 == 0 {
            send(&mut s, b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n");
        }
        let r = read_http_response(&mut s);
        assert_eq!(r.status, 503, "client {i} past the limit:\n{}", r.head);
        expect_nothing_more(&mut s, "the 503");
    }
    // The held ones still echo.
    for i in [0, n / 2, n - 1] {
        let s = &mut held[i];
        send(s, &text_frame(b"still here"));
        expect_message(s, OP_TEXT, b"still here");
    }
    // Freeing one slot lets a new client in.
    let mut last = held.pop().unwrap();
    send(&mut last, &close_frame(Some(1000), b""));
    expect_close(&mut last, Some(1000));
    let t0 = Instant::now();
    loop {
        let mut s = raw_connect(addr);
        send(&mut s, upgrade_request(addr, "").as_bytes());
        let r = read_http_response(&mut s);
        if r.status == 101 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.head);
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a freed slot was not reused within 10 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    server_running(&mut server);
}
