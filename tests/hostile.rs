//! Hostile peers against the real `wsloop` binary: for each, the RFC's answer, bounded
//! server memory (VmRSS from /proc), and a fresh client still served.
//!
//! Every loop is bounded in count and time; timeouts are generous (a loaded 2-core
//! machine, debug build). Run with `--nocapture` to see the RSS numbers measured.

mod common;

use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use socket2::SockRef;

/// Server memory may grow by at most this much during any one hostile test.
const RSS_GROWTH_LIMIT_KB: u64 = 64 * 1024;
/// A fresh client must get its echo within this (the loop is single-threaded: a server
/// stuck on a hostile peer would miss it).
const SERVED_WITHIN: Duration = Duration::from_secs(10);

// ----------------------------------------------------------------------------- helpers

/// The server's VmRSS tracker with this suite's growth limit.
fn mem_bound(server: &ServerProc, name: &'static str) -> RssBound {
    RssBound::new(server, name, RSS_GROWTH_LIMIT_KB)
}

/// A fresh client completes an echo round trip and a clean close; returns the time taken.
fn echo_round_trip(addr: SocketAddr) -> Duration {
    let t0 = Instant::now();
    let mut s = raw_ws(addr);
    s.write_all(&client_frame(true, 1, b"still served?"))
        .unwrap();
    let (fin, op, p) = read_frame(&mut s);
    assert!(fin && op == 1 && p == b"still served?", "echo: {op} {p:?}");
    s.write_all(&client_frame(true, 8, &1000u16.to_be_bytes()))
        .unwrap();
    let (_, op, p) = read_frame(&mut s);
    assert_eq!((op, &p[..]), (8, &1000u16.to_be_bytes()[..]));
    assert!(
        reads_to_eof(&mut s),
        "no clean TCP close after the close handshake"
    );
    let took = t0.elapsed();
    assert!(took < SERVED_WITHIN, "fresh client took {took:?}");
    took
}

/// The server process is still running.
fn assert_alive(server: &mut ServerProc) {
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "server exited: {:?}",
        server.child.try_wait()
    );
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
    )
}

/// Writes `data`, tolerating the server closing early (EPIPE/ECONNRESET); returns the
/// bytes written.
fn write_tolerant(s: &mut TcpStream, data: &[u8]) -> usize {
    let mut off = 0;
    while off < data.len() {
        match s.write(&data[off..]) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_gone(&e) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    off
}

/// Sends `request` from a thread (the server may answer before it is all sent, and may
/// stop reading) while this thread reads the response head. Returns (head, time to it).
fn request_response(addr: SocketAddr, request: Vec<u8>) -> (String, Duration) {
    let mut s = raw_connect(addr);
    let mut w = s.try_clone().unwrap();
    let t0 = Instant::now();
    let writer = thread::spawn(move || write_tolerant(&mut w, &request));
    let head = read_http_head(&mut s);
    let took = t0.elapsed();
    writer.join().unwrap();
    (head, took)
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"))
}

/// Reads one server frame from any reader.
fn read_frame_from<R: Read>(r: &mut R) -> io::Result<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    r.read_exact(&mut p)?;
    Ok((h[0] & 0x80 != 0, h[0] & 0x0F, p))
}

/// A masked client frame header (for frames whose payload is sent separately).
fn client_header(opcode_byte: u8, len: u64, mask: [u8; 4]) -> Vec<u8> {
    let mut h = vec![opcode_byte];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&mask);
    h
}

/// Writes on a nonblocking socket until done, until the kernel has refused bytes for
/// `stall` straight (TCP pushback), or until `deadline`. Returns (written, stalled).
fn write_until_stalled(
    s: &mut TcpStream,
    data: &[u8],
    stall: Duration,
    deadline: Instant,
) -> (usize, bool) {
    let mut off = 0;
    let mut blocked_since: Option<Instant> = None;
    while off < data.len() && Instant::now() < deadline {
        match s.write(&data[off..]) {
            Ok(n) => {
                off += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall {
                    return (off, true);
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    (off, false)
}

/// Polls until the server's fd count is back to `baseline` (or below); panics after `max`.
fn wait_fds(server: &ServerProc, baseline: usize, max: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let n = server.fd_count();
        if n <= baseline {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < max,
            "server still has {n} fds after {max:?} (baseline {baseline}): fd leak"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn rst_close(s: TcpStream) {
    SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

fn close_code(p: &[u8]) -> u16 {
    assert!(p.len() >= 2, "close frame without a code: {p:?}");
    u16::from_be_bytes([p[0], p[1]])
}

// ----------------------------------------------------------------------------- tests

/// A head sent one header line every 200 ms is cut off at the handshake deadline, which
/// the trickle does not push back; other clients are served meanwhile.
#[test]
fn slowloris_handshake_closed_at_deadline() {
    let mut server = ServerProc::start("echo", &["--handshake-timeout", "2"]);
    let mut mem = mem_bound(&server, "slowloris");
    let mut s = raw_connect(server.addr);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t0 = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut served = 0;
    let mut buf = [0u8; 1024];
    let closed_after = 'outer: {
        for i in 0..75 {
            assert!(
                t0.elapsed() < Duration::from_secs(12),
                "slowloris connection still open after 12 s (handshake timeout 2 s)"
            );
            if write_tolerant(&mut s, format!("X-Slow-{i}: {i}\r\n").as_bytes()) == 0 {
                break 'outer t0.elapsed();
            }
            match s.read(&mut buf) {
                Ok(0) => break 'outer t0.elapsed(),
                Ok(n) => panic!(
                    "unexpected response to an unfinished head: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break 'outer t0.elapsed(),
            }
            if i % 2 == 0 {
                echo_round_trip(server.addr);
                served += 1;
            }
            mem.sample();
        }
        panic!("slowloris connection never closed");
    };
    println!("[slowloris] closed after {closed_after:?}; {served} fresh clients served meanwhile");
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed before the 2 s deadline: {closed_after:?}"
    );
    assert!(served >= 2);
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// Oversized heads are answered 431: one huge value, and 10 000 lines (over the size
/// limit, and over the header-count limit when the size limit is raised).
#[test]
fn header_floods_get_431() {
    let mut server = ServerProc::start("echo", &[]);
    let mut big = ServerProc::start("echo", &["--max-header-size", "1000000"]);
    let mut mem = mem_bound(&server, "header floods (8 KiB limit)");
    let mut mem_big = mem_bound(&big, "header floods (1 MB limit)");

    let huge_value = upgrade_request(
        server.addr,
        &format!("X-Huge: {}\r\n", "a".repeat(100 * 1024)),
    );
    let many_lines: String = (0..10_000).map(|i| format!("X-Line-{i}: v\r\n")).collect();
    let many_lines = upgrade_request(server.addr, &many_lines);
    assert!(many_lines.len() < 1_000_000);

    for (name, srv, req) in [
        ("100 KB value", &server, &huge_value),
        ("10 000 lines", &server, &many_lines),
        ("10 000 lines, 1 MB limit", &big, &many_lines),
    ] {
        let (head, took) = request_response(srv.addr, req.clone().into_bytes());
        println!(
            "[header floods] {name}: {took:?} -> {}",
            head.lines().next().unwrap_or("")
        );
        assert_eq!(status_of(&head), 431, "{name}: {head}");
        assert!(head.contains("Connection: close"), "{head}");
        mem.sample();
        mem_big.sample();
        echo_round_trip(srv.addr);
    }
    // Under a raised limit the same 100 KB value is just a header.
    let (head, _) = request_response(big.addr, huge_value.into_bytes());
    assert_eq!(status_of(&head), 101, "{head}");
    for _ in 0..5 {
        echo_round_trip(server.addr);
        echo_round_trip(big.addr);
    }
    assert_alive(&mut server);
    assert_alive(&mut big);
    mem.report();
    mem_big.report();
}

/// `Sec-WebSocket-Protocol` made of tens of thousands of commas (and a 500 KB one under
/// a raised head limit) is answered quickly, with the right choice.
#[test]
fn pathological_subprotocol_headers_answered_quickly() {
    let mut server = ServerProc::start("echo", &[]);
    let mut big = ServerProc::start("echo", &["--max-header-size", "1000000"]);
    let mut mem = mem_bound(&big, "subprotocol commas (1 MB limit)");
    let cases: Vec<(&ServerProc, String, Option<&str>)> = vec![
        (&server, format!("{}echo", ",".repeat(7800)), Some("echo")),
        (&server, ", ".repeat(3900), None),
        (
            &big,
            format!("{}com.kaazing.echo", ",".repeat(50_000)),
            Some("com.kaazing.echo"),
        ),
        (&big, ",".repeat(500_000), None),
        (&big, ", ,\t,".repeat(100_000), None),
        (
            &big,
            format!("{}echo", "nope,".repeat(100_000)),
            Some("echo"),
        ),
        (&big, "x".repeat(500_000), None),
    ];
    for (srv, value, want) in cases {
        let req = upgrade_request(srv.addr, &format!("Sec-WebSocket-Protocol: {value}\r\n"));
        let (head, took) = request_response(srv.addr, req.into_bytes());
        println!(
            "[subprotocol] {} KB value answered in {took:?}: {}",
            value.len() / 1000,
            head.lines().next().unwrap_or("")
        );
        assert_eq!(status_of(&head), 101, "{head}");
        let got = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Protocol: "));
        assert_eq!(got, want, "{head}");
        // "Well under a second" on an idle machine; 5 s keeps this robust under load.
        assert!(took < Duration::from_secs(5), "took {took:?}");
        mem.sample();
    }
    echo_round_trip(server.addr);
    echo_round_trip(big.addr);
    assert_alive(&mut server);
    assert_alive(&mut big);
    mem.report();
}

/// A frame declaring 2^40 or 2^63−1 bytes gets close 1009 at once, before any payload
/// and without allocating; 2^63 (MSB set) is a protocol error (1002).
#[test]
fn huge_declared_lengths_closed_without_allocating() {
    let mut server = ServerProc::start("echo", &[]);
    echo_round_trip(server.addr); // warm up
    let mut mem = mem_bound(&server, "huge declared length");
    let mask = [1, 2, 3, 4];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("2^40", client_header(0x82, 1 << 40, mask), 1009),
        ("2^63-1", client_header(0x82, (1 << 63) - 1, mask), 1009),
        ("2^40 text", client_header(0x81, 1 << 40, mask), 1009),
        ("2^63 (MSB set)", client_header(0x82, 1 << 63, mask), 1002),
        (
            "continuation of 2^40",
            {
                let mut v = client_frame(false, 2, b"ab");
                v.extend(client_header(0x80, 1 << 40, mask));
                v
            },
            1009,
        ),
    ];
    for (name, bytes, want) in cases {
        let mut s = raw_ws(server.addr);
        let t0 = Instant::now();
        s.write_all(&bytes).unwrap();
        let (_, op, p) = read_frame(&mut s);
        let took = t0.elapsed();
        assert_eq!(op, 8, "{name}: expected a close frame");
        assert_eq!(close_code(&p), want, "{name}");
        assert!(reads_to_eof(&mut s), "{name}: no TCP close");
        assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
        let rss = mem.sample();
        println!("[huge length] {name}: close {want} after {took:?}; server VmRSS {rss} KiB");
        assert!(
            rss < mem.baseline + 4096,
            "{name}: RSS went from {} to {rss} KiB",
            mem.baseline
        );
    }
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// 200 000 pings written as fast as the socket takes them, pongs never read: reading
/// pauses at the write limit, memory stays bounded, others are served, and once the
/// client reads, every complete ping has its pong, in order.
#[test]
fn ping_flood_without_reading_pongs() {
    let mut server = ServerProc::start("echo", &[]);
    echo_round_trip(server.addr);
    let mut mem = mem_bound(&server, "ping flood");
    let mut s = raw_ws(server.addr);
    s.set_nonblocking(true).unwrap();
    const PINGS: u32 = 200_000;
    const PER_CHUNK: u32 = 1000;
    let mask = [0x5a, 0xa5, 0x0f, 0xf0];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0u32; // complete pings written
    let mut stalled = false;
    'flood: for chunk in 0..PINGS / PER_CHUNK {
        let mut buf = Vec::with_capacity((PER_CHUNK * 131) as usize);
        for i in chunk * PER_CHUNK..(chunk + 1) * PER_CHUNK {
            buf.extend(client_header(0x89, 125, mask));
            let mut p = [b'.'; 125];
            p[..4].copy_from_slice(&i.to_be_bytes());
            buf.extend(p.iter().enumerate().map(|(k, b)| b ^ mask[k % 4]));
        }
        let (n, st) = write_until_stalled(&mut s, &buf, Duration::from_secs(2), deadline);
        sent += n as u32 / 131;
        if n < buf.len() {
            // A torn last ping stays torn: only complete pings are owed pongs.
            stalled = st;
            break 'flood;
        }
        if chunk % 20 == 0 {
            mem.sample();
            echo_round_trip(server.addr);
        }
    }
    mem.sample();
    let took = echo_round_trip(server.addr);
    println!(
        "[ping flood] {sent} pings written ({} MB), pushed back: {stalled}; fresh client served in {took:?}",
        sent as u64 * 131 / 1_000_000
    );
    assert!(sent >= 10_000, "only {sent} pings went out");
    // Now read: a pong for every complete ping, in order.
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s.try_clone().unwrap());
    let mut pongs = 0u32;
    let mut last: Option<u32> = None;
    let t0 = Instant::now();
    while last.is_none_or(|l| l + 1 < sent) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "pongs stopped at {last:?} of {sent}"
        );
        let (fin, op, p) = read_frame_from(&mut r).expect("pong");
        assert!(fin && op == 0xA, "expected a pong, got opcode {op}");
        assert_eq!(p.len(), 125);
        let seq = u32::from_be_bytes(p[..4].try_into().unwrap());
        assert!(last.is_none_or(|l| seq > l), "pong {seq} after {last:?}");
        last = Some(seq);
        pongs += 1;
        if pongs.is_multiple_of(20_000) {
            mem.sample();
        }
    }
    // Every complete ping was answered (RFC 6455 §5.5.2), in order.
    println!("[ping flood] read {pongs} pongs for {sent} pings, in order");
    assert_eq!(pongs, sent, "pings left unanswered");
    drop(r);
    rst_close(s);
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// A client writes 64 MiB of 64 KiB messages and never reads: echo stops reading it (TCP
/// pushes back, the client's writes block), memory stays bounded, others are served; once
/// the client reads, every message comes back intact and in order.
#[test]
fn echo_client_that_never_reads() {
    let mut server = ServerProc::start("echo", &[]);
    echo_round_trip(server.addr);
    let mut mem = mem_bound(&server, "echo, client never reads");
    let mut s = raw_ws(server.addr);
    s.set_nonblocking(true).unwrap();
    const MSG: usize = 64 << 10;
    const COUNT: u32 = 1024; // 64 MiB
    let mask = [9, 8, 7, 6];
    let frame = |i: u32| {
        let mut payload = vec![0u8; MSG];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        payload[MSG - 4..].copy_from_slice(&i.to_be_bytes());
        let mut f = client_header(0x82, MSG as u64, mask);
        f.extend(payload.iter().enumerate().map(|(k, b)| b ^ mask[k % 4]));
        f
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut complete = 0u32;
    let mut torn: Option<(Vec<u8>, usize)> = None;
    let mut stalled = false;
    for i in 0..COUNT {
        let f = frame(i);
        let (n, st) = write_until_stalled(&mut s, &f, Duration::from_secs(2), deadline);
        if n == f.len() {
            complete += 1;
        } else {
            stalled = st;
            if n > 0 {
                torn = Some((f, n));
            }
            break;
        }
        if i % 16 == 0 {
            mem.sample();
        }
    }
    let written_mib = (complete as usize * (MSG + 14) + torn.as_ref().map_or(0, |t| t.1)) >> 20;
    mem.sample();
    let took = echo_round_trip(server.addr);
    println!(
        "[echo never reads] writes blocked after {written_mib} MiB ({complete} whole messages); fresh client served in {took:?}"
    );
    assert!(
        stalled,
        "all 64 MiB were taken without reading: no pushback"
    );
    // Now read everything back (finishing the torn message meanwhile).
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let expect = complete + torn.is_some() as u32;
    let reader_stream = s.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 16, reader_stream);
        for i in 0..expect {
            let (fin, op, p) = read_frame_from(&mut r).expect("echo");
            assert!(
                fin && op == 2 && p.len() == MSG,
                "message {i}: op {op} len {}",
                p.len()
            );
            assert_eq!(p[..4], i.to_be_bytes(), "message {i} out of order");
            assert_eq!(p[MSG - 4..], i.to_be_bytes());
        }
    });
    if let Some((f, n)) = torn {
        s.write_all(&f[n..]).unwrap();
    }
    reader.join().expect("every message echoed, in order");
    // And the connection is still in service.
    s.write_all(&client_frame(true, 1, b"resumed")).unwrap();
    let (_, op, p) = read_frame(&mut s);
    assert_eq!((op, &p[..]), (1, &b"resumed"[..]));
    drop(s);
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// Connections reset (RST) mid-frame, mid-handshake and with output pending are
/// released: fds return to the baseline, chat tells the others the user left.
#[test]
fn rst_in_the_middle_of_a_frame() {
    // Long timers: a reset the server missed would hold its fd for a minute or more,
    // well past the 30 s this test waits.
    let mut server = ServerProc::start(
        "echo",
        &[
            "--handshake-timeout",
            "120",
            "--idle-timeout",
            "600",
            "--close-timeout",
            "120",
        ],
    );
    let base_fds = server.fd_count();
    echo_round_trip(server.addr);
    let mut mem = mem_bound(&server, "RST");
    for round in 0..20 {
        // Half of a 1000-byte frame.
        let mut s = raw_ws(server.addr);
        let mut f = client_frame(true, 2, &[7u8; 1000]);
        f.truncate(500);
        s.write_all(&f).unwrap();
        thread::sleep(Duration::from_millis(5));
        rst_close(s);
        // Half of a request head.
        let mut s = raw_connect(server.addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpg").unwrap();
        rst_close(s);
        // With 1 MiB of echo pending on the server (we never read it).
        if round % 5 == 0 {
            let mut s = raw_ws(server.addr);
            s.write_all(&client_frame(true, 2, &vec![1u8; 1 << 20]))
                .unwrap();
            thread::sleep(Duration::from_millis(20));
            rst_close(s);
        }
    }
    let took = wait_fds(&server, base_fds, Duration::from_secs(30));
    println!("[RST] fds back to {base_fds} within {took:?}");
    mem.sample();
    echo_round_trip(server.addr);

    // Chat: a reset mid-frame is a departure (1006 for the handler: "userN left").
    let chat = ServerProc::start("chat", &[]);
    let mut a = raw_ws(chat.addr);
    let (_, _, j) = read_frame(&mut a);
    assert_eq!(j, b"user1 come in!");
    let mut b = raw_ws(chat.addr);
    assert_eq!(read_frame(&mut a).2, b"user2 come in!");
    assert_eq!(read_frame(&mut b).2, b"user2 come in!");
    let mut f = client_frame(true, 1, b"this message is never finished");
    f.truncate(10);
    b.write_all(&f).unwrap();
    thread::sleep(Duration::from_millis(20));
    rst_close(b);
    assert_eq!(read_frame(&mut a).2, b"user2 left");
    a.write_all(&client_frame(true, 1, b"alone")).unwrap();
    assert_eq!(read_frame(&mut a).2, b"user1: alone");
    assert_alive(&mut server);
    mem.report();
}

/// 3 000 connections (mid-handshake, upgraded and idle, upgraded with half a frame) held
/// open, then dropped (half FIN, half RST): new clients are served meanwhile and the
/// server's fd count returns to its baseline.
#[test]
fn thousands_of_abandoned_connections_leak_no_fds() {
    wsloop::server::raise_fd_limit();
    // Mid-handshake connections must outlive the test's slowest phase on a loaded machine.
    let mut server = ServerProc::start(
        "echo",
        &[
            "--handshake-timeout",
            "120",
            "--idle-timeout",
            "600",
            "--close-timeout",
            "120",
        ],
    );
    let base_fds = server.fd_count();
    echo_round_trip(server.addr);
    let mut mem = mem_bound(&server, "3 000 abandoned connections");
    const N: usize = 3000;
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = raw_connect(server.addr);
        match i % 3 {
            0 => s
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-")
                .unwrap(),
            _ => s
                .write_all(upgrade_request(server.addr, "").as_bytes())
                .unwrap(),
        }
        conns.push(s);
    }
    for (i, s) in conns.iter_mut().enumerate() {
        if i % 3 != 0 {
            let head = read_http_head(s);
            assert!(head.starts_with("HTTP/1.1 101"), "{i}: {head}");
            if i % 3 == 2 {
                let mut f = client_frame(true, 2, &[3u8; 300]);
                f.truncate(150);
                s.write_all(&f).unwrap();
            }
        }
    }
    let opened = t0.elapsed();
    // All of them are held by the server now.
    let t1 = Instant::now();
    while server.fd_count() < base_fds + N {
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "server holds {} fds",
            server.fd_count()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let held_rss = mem.sample();
    let took = echo_round_trip(server.addr);
    println!(
        "[abandoned] {N} connections opened in {opened:?}; server fds {}, VmRSS {held_rss} KiB; fresh client served in {took:?}",
        server.fd_count()
    );
    for (i, s) in conns.into_iter().enumerate() {
        if i % 2 == 0 {
            rst_close(s);
        } else {
            drop(s);
        }
    }
    let back = wait_fds(&server, base_fds, Duration::from_secs(60));
    println!("[abandoned] fds back to baseline {base_fds} {back:?} after dropping them");
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// Half-open handshakes (half a request, then silence) do not stop a new client, and the
/// server reaps them at the handshake deadline on its own.
#[test]
fn half_open_handshake_flood() {
    wsloop::server::raise_fd_limit();
    let mut server = ServerProc::start("echo", &["--handshake-timeout", "2"]);
    let base_fds = server.fd_count();
    echo_round_trip(server.addr);
    let mut mem = mem_bound(&server, "half-open handshakes");
    const N: usize = 1000;
    let mut conns = Vec::with_capacity(N);
    let t0 = Instant::now();
    for _ in 0..N {
        let mut s = raw_connect(server.addr);
        s.write_all(b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            .unwrap();
        conns.push(s);
    }
    let opened = t0.elapsed();
    let held = server.fd_count();
    let took = echo_round_trip(server.addr);
    mem.sample();
    println!(
        "[half-open] {N} half requests sent in {opened:?}; server holding {held} fds; fresh client served in {took:?}"
    );
    // Reaped at the deadline (2 s) while we still hold them.
    wait_fds(&server, base_fds, Duration::from_secs(30));
    println!(
        "[half-open] all reaped {:?} after the first was opened",
        t0.elapsed()
    );
    for (i, s) in conns.iter_mut().enumerate() {
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if is_gone(&e) => {}
            other => panic!("half-open connection {i}: {other:?}"),
        }
    }
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// The request head and frames in one write: all are answered, in order. Also a close
/// behind a message that fills the write limit (echo pauses reading, the close is parsed
/// when the output drains): the echo, then the close frame, then TCP close.
#[test]
fn bytes_pipelined_behind_the_handshake() {
    let mut server = ServerProc::start("echo", &[]);
    let mut mem = mem_bound(&server, "pipelined");
    let mut bytes = upgrade_request(server.addr, "Sec-WebSocket-Protocol: echo\r\n").into_bytes();
    bytes.extend(client_frame(true, 1, b"one"));
    bytes.extend(client_frame(false, 2, b"tw"));
    bytes.extend(client_frame(true, 9, b"ping!"));
    bytes.extend(client_frame(true, 0, b"o"));
    bytes.extend(client_frame(true, 1, "three €".as_bytes()));
    let mut s = raw_connect(server.addr);
    s.write_all(&bytes).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: echo\r\n"), "{head}");
    let got: Vec<(u8, Vec<u8>)> = (0..4)
        .map(|_| read_frame(&mut s))
        .map(|(_, o, p)| (o, p))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, b"one".to_vec()),
            (0xA, b"ping!".to_vec()),
            (2, b"two".to_vec()),
            (1, "three €".as_bytes().to_vec()),
        ]
    );
    drop(s);

    for size in [1 << 20, 3 << 20] {
        let mut bytes = upgrade_request(server.addr, "").into_bytes();
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        bytes.extend(client_frame(true, 2, &payload));
        let mut close = 4321u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"pipelined close");
        bytes.extend(client_frame(true, 8, &close));
        let mut s = raw_connect(server.addr);
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || w.write_all(&bytes).unwrap());
        let head = read_http_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (_, op, p) = read_frame(&mut s);
        assert!(
            op == 2 && p == payload,
            "{size}: op {op}, {} bytes",
            p.len()
        );
        let (_, op, p) = read_frame(&mut s);
        assert_eq!(op, 8, "{size}: expected the close frame");
        assert_eq!(p, close, "{size}: close code and reason echoed");
        assert!(
            reads_to_eof(&mut s),
            "{size}: TCP close after the close frame"
        );
        writer.join().unwrap();
        mem.sample();
    }
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
}

/// Collects one client's frames from a thread.
struct Collector {
    rx: mpsc::Receiver<(u8, Vec<u8>)>,
    got: Vec<(u8, Vec<u8>)>,
}

impl Collector {
    fn spawn(s: &TcpStream) -> Collector {
        let (tx, rx) = mpsc::channel();
        let mut r = BufReader::new(s.try_clone().unwrap());
        thread::spawn(move || {
            while let Ok((_, op, p)) = read_frame_from(&mut r) {
                if tx.send((op, p)).is_err() {
                    break;
                }
            }
        });
        Collector {
            rx,
            got: Vec::new(),
        }
    }

    /// Waits (bounded) until at least `n` frames arrived.
    fn wait_for(&mut self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(f) => self.got.push(f),
                Err(_) => panic!("{what}: {} of {n} frames", self.got.len()),
            }
        }
    }

    fn texts(&self) -> Vec<String> {
        self.got
            .iter()
            .map(|(op, p)| {
                assert_eq!(*op, 1, "chat sends text");
                String::from_utf8(p.clone()).unwrap()
            })
            .collect()
    }
}

/// Chat with a subscriber that never reads: it is closed (1008 if it gets to read the
/// close frame; its socket ends either way), the others receive every message in order,
/// memory stays bounded.
#[test]
fn chat_subscriber_that_never_reads_is_closed() {
    // One loop: the test counts exact join notices, which across loops depend on timing.
    let mut server = ServerProc::start("chat", &["--max-backpressure", "65536", "--threads", "1"]);
    let mut mem = mem_bound(&server, "chat slow subscriber");
    // user1: the publisher; user2, user3: readers; user4: never reads.
    let mut publisher = raw_ws(server.addr);
    let mut pc = Collector::spawn(&publisher);
    let r2 = raw_ws(server.addr);
    let mut c2 = Collector::spawn(&r2);
    let r3 = raw_ws(server.addr);
    let mut c3 = Collector::spawn(&r3);
    let slow = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&server.addr.into()).unwrap();
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(upgrade_request(server.addr, "").as_bytes())
            .unwrap();
        let head = read_http_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s
    };
    pc.wait_for(4, "publisher sees the joins");
    c2.wait_for(3, "user2 sees the joins");
    c3.wait_for(2, "user3 sees the joins");
    // Joins from different loops are ordered per loop only (per publisher), not globally.
    assert!(pc.texts().iter().any(|t| t == "user4 come in!"));

    let body = "x".repeat(1000);
    const BATCH: usize = 32;
    const MAX_BATCHES: usize = 2000; // 64 MB: far more than any socket buffers hold
    let left = "user4 left".to_string();
    let saw_left = |c: &Collector| c.texts().contains(&left);
    let mut sent = 0;
    let t0 = Instant::now();
    for _ in 0..MAX_BATCHES {
        let mut buf = Vec::new();
        for _ in 0..BATCH {
            buf.extend(client_frame(
                true,
                1,
                format!("{sent:06} {body}").as_bytes(),
            ));
            sent += 1;
        }
        publisher.write_all(&buf).unwrap();
        // Lockstep with the readers (at most one batch, 32 KB, in flight to each), so
        // only the one that never reads falls behind.
        pc.wait_for(4 + sent, "publisher");
        c2.wait_for(3 + sent, "user2");
        c3.wait_for(2 + sent, "user3");
        mem.sample();
        if saw_left(&pc) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "slow subscriber never closed"
        );
    }
    assert!(
        saw_left(&pc),
        "slow subscriber still open after {sent} messages"
    );
    let closed_after = sent;
    // Once it is gone, a burst bigger than the limit in one write: the subscribers that
    // read are not slow, and keep everything.
    let mut buf = Vec::new();
    for _ in 0..96 {
        buf.extend(client_frame(
            true,
            1,
            format!("{sent:06} {body}").as_bytes(),
        ));
        sent += 1;
    }
    publisher.write_all(&buf).unwrap();
    let total = 1 + sent; // `user4 left` among the messages
    pc.wait_for(4 + total, "publisher, all");
    c2.wait_for(3 + total, "user2, all");
    c3.wait_for(2 + total, "user3, all");
    for (name, c, joins) in [("user1", &pc, 4), ("user2", &c2, 3), ("user3", &c3, 2)] {
        let texts = c.texts();
        assert_eq!(texts.len(), joins + total, "{name}: nothing extra");
        let msgs: Vec<&String> = texts[joins..].iter().filter(|t| **t != left).collect();
        assert_eq!(msgs.len(), sent, "{name}: every message");
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                *m,
                &format!("user1: {i:06} {body}"),
                "{name}: message {i} in order"
            );
        }
    }
    // The slow subscriber: read what it can; it got a prefix in order, then (maybe) 1008,
    // then its connection ends.
    let mut r = BufReader::new(slow);
    let mut next = 0usize;
    let mut code = None;
    let mut joins = 0;
    loop {
        match read_frame_from(&mut r) {
            Ok((_, 1, p)) => {
                let t = String::from_utf8(p).unwrap();
                if t.ends_with(" come in!") {
                    joins += 1;
                    continue;
                }
                assert_eq!(
                    t,
                    format!("user1: {next:06} {body}"),
                    "slow subscriber: in order"
                );
                next += 1;
            }
            Ok((_, 8, p)) => {
                code = Some(close_code(&p));
                break;
            }
            Ok((_, op, _)) => panic!("slow subscriber: unexpected opcode {op}"),
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    ErrorKind::WouldBlock,
                    "slow subscriber still open"
                );
                assert_ne!(e.kind(), ErrorKind::TimedOut, "slow subscriber still open");
                break;
            }
        }
    }
    if code.is_some() {
        // After the close frame, the TCP connection ends too.
        let mut rest = Vec::new();
        let end = r.read_to_end(&mut rest);
        assert!(end.is_ok() || is_gone(end.as_ref().unwrap_err()), "{end:?}");
    }
    assert_eq!(joins, 1, "its own join notice");
    assert!(code.is_none() || code == Some(1008), "close code {code:?}");
    println!(
        "[chat slow subscriber] closed after {closed_after} messages of 1 KB; it read {next} of them, close frame: {code:?}"
    );
    drop(publisher);
    drop(r2);
    drop(r3);
    assert_alive(&mut server);
    mem.report();
}

/// Peers that shut down their sending side right after the request (FIN with the last
/// bytes, like `nc -N`) still get everything they are owed — a streamed file, an error
/// response, the reply to their close frame — and the server releases them without
/// waiting for a timer.
#[test]
fn half_closing_peers_get_what_they_are_owed() {
    let dir = std::env::temp_dir().join(format!("wsloop-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(dir.join("big.bin"), &file).unwrap();
    let mut server = ServerProc::start(
        "echo",
        &[
            "--www",
            dir.to_str().unwrap(),
            "--handshake-timeout",
            "120",
            "--close-timeout",
            "120",
            "--idle-timeout",
            "600",
        ],
    );
    let base_fds = server.fd_count();
    let mem = mem_bound(&server, "half-closing peers");
    let exchange = |request: &[u8]| -> Vec<u8> {
        let mut s = raw_connect(server.addr);
        s.write_all(request).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("response, then FIN");
        got
    };
    let got = exchange(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        got[split..] == file[..],
        "file body: {} of {} bytes",
        got.len() - split,
        file.len()
    );

    let got = exchange(
        upgrade_request(server.addr, &format!("X: {}\r\n", "a".repeat(20_000))).as_bytes(),
    );
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let mut req = upgrade_request(server.addr, "").into_bytes();
    req.extend(client_frame(true, 1, b"hello"));
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    req.extend(client_frame(true, 8, &close));
    let got = exchange(&req);
    let mut want = b"\x81\x05hello\x88\x05".to_vec();
    want.extend_from_slice(&close);
    assert!(
        got.starts_with(b"HTTP/1.1 101") && got.ends_with(&want),
        "{got:?}"
    );

    let took = wait_fds(&server, base_fds, Duration::from_secs(30));
    println!("[half-closing peers] all answered; fds back to baseline in {took:?}");
    echo_round_trip(server.addr);
    assert_alive(&mut server);
    mem.report();
    let _ = std::fs::remove_dir_all(&dir);
}
