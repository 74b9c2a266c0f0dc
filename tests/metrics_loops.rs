//! `/metrics` against the real `wsloop` binary running two loops: exact counter moves
//! while traffic flows, a broadcast that crosses loops, and a shutdown that closes the
//! clients of every loop.
//!
//! A scrape sees the loop that answers it as of that moment and every other loop as of
//! the end of its last iteration, so expectations are polled for (bounded) rather than
//! read once; a value that overshoots never matches and fails the test.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long a metric may take to reach its expected value (a loaded 2-core machine).
const SETTLE: Duration = Duration::from_secs(20);

/// One scrape: every sample by its series (`name{labels}`), as sent.
type Samples = HashMap<String, f64>;

/// A keep-alive scraping connection: it stays on one loop, so scraping accepts nothing
/// new, and the bytes it moves are known to the test.
struct Scraper {
    s: TcpStream,
    request: Vec<u8>,
    /// Request bytes sent and response bytes received so far.
    sent: u64,
    received: u64,
    /// Bytes of the last response: written after its counters were read, so not in them.
    last_len: u64,
}

impl Scraper {
    fn new(addr: SocketAddr) -> Self {
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        Scraper {
            s: raw_connect(addr),
            request,
            sent: 0,
            received: 0,
            last_len: 0,
        }
    }

    fn scrape(&mut self) -> Samples {
        self.s.write_all(&self.request).expect("send scrape");
        self.sent += self.request.len() as u64;
        let r = read_http_response(&mut self.s);
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        self.last_len = (r.head.len() + r.body.len()) as u64;
        self.received += self.last_len;
        parse(&String::from_utf8(r.body).expect("UTF-8 exposition"))
    }

    /// Scrapes until `ok` holds for a scrape (bounded by [`SETTLE`]); the last scrape.
    fn until(&mut self, what: &str, mut ok: impl FnMut(&mut Self, &Samples) -> bool) -> Samples {
        let deadline = Instant::now() + SETTLE;
        loop {
            let m = self.scrape();
            if ok(self, &m) {
                return m;
            }
            assert!(Instant::now() < deadline, "never reached: {what}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            let v = value.parse().unwrap_or_else(|_| panic!("value of {l:?}"));
            (series.to_string(), v)
        })
        .collect()
}

fn get(m: &Samples, series: &str) -> u64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series}")) as u64
}

fn per_loop(m: &Samples, name: &str, l: usize) -> u64 {
    get(m, &format!("wsloop_loop_{name}{{loop=\"{l}\"}}"))
}

/// A WebSocket client counting the bytes it moves.
struct Client {
    s: TcpStream,
    sent: u64,
    received: u64,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let mut s = raw_connect(addr);
        let req = upgrade_request(addr, "");
        s.write_all(req.as_bytes()).unwrap();
        let head = read_http_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Client {
            s,
            sent: req.len() as u64,
            received: head.len() as u64,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        self.s.write_all(frame).unwrap();
        self.sent += frame.len() as u64;
    }

    fn read(&mut self) -> WireFrame {
        let f = read_wire_frame(&mut self.s);
        self.received += (f.header_len + f.payload.len()) as u64;
        f
    }
}

#[test]
fn scrape_counts_echo_traffic_exactly() {
    const M: usize = 4;
    const K: usize = 25;
    let server = ServerProc::start("echo", &["--metrics", "--threads", "2"]);
    let addr = server.addr;
    let mut scraper = Scraper::new(addr);
    let before = scraper.scrape();
    // Requests after `before` are in later counters; so are responses from `before` on.
    let (sent0, received0) = (scraper.sent, scraper.received - scraper.last_len);

    let mut clients: Vec<Client> = (0..M).map(|_| Client::connect(addr)).collect();
    for k in 0..K {
        for (i, c) in clients.iter_mut().enumerate() {
            // Lengths across the 7-bit and 16-bit length forms.
            let payload = vec![b'a' + (i as u8); (k * 13 + i) % 300];
            c.send(&client_frame(true, OP_TEXT, &payload));
            let f = c.read();
            assert_eq!((f.opcode, f.payload), (OP_TEXT, payload));
        }
    }
    let ws_sent: u64 = clients.iter().map(|c| c.sent).sum();
    let ws_received: u64 = clients.iter().map(|c| c.received).sum();

    let d = |m: &Samples, s: &str| get(m, s) - get(&before, s);
    let mut last = (0, 0, 0, 0, 0, 0, 0);
    scraper.until("exact traffic counts", |sc, m| {
        // This scrape's request has been read; its response is not written yet.
        let bytes_in = ws_sent + (sc.sent - sent0);
        let bytes_out = ws_received + (sc.received - sc.last_len - received0);
        last = (
            d(m, "wsloop_received_messages_total"),
            d(m, "wsloop_sent_messages_total"),
            d(m, "wsloop_received_bytes_total"),
            d(m, "wsloop_sent_bytes_total"),
            d(m, "wsloop_accepted_total"),
            get(m, "wsloop_connections_open"),
            get(m, "wsloop_buffered_bytes"),
        );
        let want = (
            (M * K) as u64,
            (M * K) as u64,
            bytes_in,
            bytes_out,
            M as u64,
            M as u64 + 1, // the scraper
            0,            // every echo and earlier response was taken by the kernel
        );
        if last != want {
            eprintln!("got {last:?}, want {want:?}");
        }
        last == want
    });
    // The process-wide series is the sum of the per-loop ones.
    let m = scraper.scrape();
    for name in [
        "received_messages_total",
        "accepted_total",
        "sent_bytes_total",
    ] {
        let sum: u64 = (0..2).map(|l| per_loop(&m, name, l)).sum();
        assert_eq!(sum, get(&m, &format!("wsloop_{name}")), "{name}");
    }

    // A clean close with 1000 is counted under its code.
    let closed = |m: &Samples| get(m, "wsloop_closed_total{code=\"1000\"}");
    let closed0 = closed(&m);
    let mut c = clients.pop().unwrap();
    c.send(&close_frame(Some(1000), b""));
    assert_eq!(read_close(&mut c.s), Some(1000));
    expect_eof(&mut c.s);
    scraper.until("closed_total{code=1000} +1", |_, m| {
        closed(m) == closed0 + 1
    });

    // A bad upgrade (no Sec-WebSocket-Key) is a 400 refusal.
    let refused = |m: &Samples| get(m, "wsloop_handshake_refusals_total{status=\"400\"}");
    let refused0 = refused(&scraper.scrape());
    let bad = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    expect_http_error(addr, bad.as_bytes(), 400);
    scraper.until("handshake_refusals_total{status=400} +1", |_, m| {
        refused(m) == refused0 + 1
    });
}

/// Connects clients one at a time until each of the two loops holds at least `each`
/// of them (at most 64 tries); returns each client with its loop, read from which loop's
/// `accepted_total` moved.
fn clients_on_both_loops(
    addr: SocketAddr,
    scraper: &mut Scraper,
    each: usize,
) -> Vec<(Client, usize)> {
    let accepted = |m: &Samples| [0, 1].map(|l| per_loop(m, "accepted_total", l));
    let mut prev = accepted(&scraper.scrape());
    let mut out: Vec<(Client, usize)> = Vec::new();
    for _ in 0..64 {
        let count = |l| out.iter().filter(|(_, x)| *x == l).count();
        if count(0) >= each && count(1) >= each {
            return out;
        }
        let c = Client::connect(addr);
        let m = scraper.until("the new client's accept is published", |_, m| {
            let now = accepted(m);
            now[0] + now[1] == prev[0] + prev[1] + 1
        });
        let now = accepted(&m);
        let l = if now[0] > prev[0] { 0 } else { 1 };
        prev = now;
        out.push((c, l));
    }
    panic!("64 connections never reached both loops ({each} each)");
}

#[test]
fn broadcast_reaches_every_client_on_every_loop_once_in_order() {
    const N: usize = 200;
    let server = ServerProc::start("chat", &["--threads", "2", "--metrics"]);
    let mut scraper = Scraper::new(server.addr);
    let mut clients = clients_on_both_loops(server.addr, &mut scraper, 2);
    let m = scraper.scrape();
    assert!(per_loop(&m, "connections_open", 0) >= 2);
    assert!(per_loop(&m, "connections_open", 1) >= 2);
    // Three publishers spanning both loops: the first two of one loop, the first of the
    // other.
    let first = clients[0].1;
    let mut publishers: Vec<usize> = (0..clients.len())
        .filter(|&i| clients[i].1 == first)
        .take(2)
        .collect();
    publishers.extend((0..clients.len()).find(|&i| clients[i].1 != first));
    assert_eq!(publishers.len(), 3);

    for seq in 0..N {
        for (p, &i) in publishers.iter().enumerate() {
            clients[i].0.send(&client_frame(
                true,
                OP_TEXT,
                format!("p{p} {seq}").as_bytes(),
            ));
        }
    }
    // Each client reads until it has every publisher's N messages; join notices (in no
    // set order across loops) are skipped, anything else fails.
    for (ci, (c, l)) in clients.iter_mut().enumerate() {
        let mut next = [0usize; 3];
        let mut user_of: [Option<String>; 3] = Default::default();
        while next.iter().any(|&n| n < N) {
            let f = c.read();
            assert_eq!(f.opcode, OP_TEXT);
            let text = String::from_utf8(f.payload).unwrap();
            if text.ends_with(" come in!") {
                continue;
            }
            let (user, rest) = text
                .split_once(": ")
                .unwrap_or_else(|| panic!("client {ci} (loop {l}): unexpected {text:?}"));
            let (p, seq) = rest.split_once(' ').expect("p<k> <seq>");
            let p: usize = p[1..].parse().unwrap();
            let seq: usize = seq.parse().unwrap();
            assert_eq!(
                seq, next[p],
                "client {ci} (loop {l}): publisher {p} out of order or repeated"
            );
            let u = user_of[p].get_or_insert_with(|| user.to_string());
            assert_eq!(u, user, "publisher {p} under two names");
            next[p] += 1;
        }
    }
    // The counters agree with the clients: one publish per join notice and per message,
    // each message delivered to every client (join notices to those subscribed by then).
    let clients_n = clients.len() as u64;
    let publishes = (3 * N) as u64 + clients_n;
    scraper.until("publishes and deliveries counted", |_, m| {
        get(m, "wsloop_publishes_total") == publishes
            && get(m, "wsloop_deliveries_total") >= (3 * N) as u64 * clients_n
            && get(m, "wsloop_deliveries_total") <= publishes * clients_n
    });
}

#[test]
fn sigterm_closes_clients_of_every_loop_with_1001() {
    let mut server = ServerProc::start("echo", &["--threads", "2", "--metrics"]);
    let mut scraper = Scraper::new(server.addr);
    let clients = clients_on_both_loops(server.addr, &mut scraper, 2);
    let n = clients.len();
    let waiters: Vec<_> = clients
        .into_iter()
        .map(|(mut c, l)| {
            thread::spawn(move || {
                let code = read_close(&mut c.s);
                // Complete the closing handshake, then the server closes TCP.
                let _ = c.s.write_all(&close_frame(Some(1001), b""));
                expect_eof(&mut c.s);
                (code, l)
            })
        })
        .collect();
    let status = server
        .terminate()
        .expect("server exits within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    for w in waiters {
        let (code, l) = w.join().expect("client thread");
        assert_eq!(code, Some(1001), "client on loop {l}");
    }
    assert!(n >= 4);
}

#[test]
fn without_the_flag_metrics_is_an_ordinary_static_path() {
    let server = ServerProc::start("echo", &["--threads", "1"]);
    let mut s = raw_connect(server.addr);
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    send(&mut s, req.as_bytes());
    let r = read_http_response(&mut s);
    assert_eq!(r.status, 404, "{}", r.head);
    assert!(!String::from_utf8_lossy(&r.body).contains("wsloop_"));
}
