//! Attacks on issue 19 (backpressure end to end). Each test asserts what a user would
//! expect; a failing test is a finding (see attack/FINDINGS.md).

mod common;

use common::{numbered_payload, scrape_metrics};
use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};
use wsloop::{
    Config, ConnId, Ctx, Handler, Payload, SendStatus, Server, ServerHandle, SlowSubscriber,
    Upgrade, UpgradeRequest,
};

type Ws = WebSocket<TcpStream>;

/// Connections by path, shared with the test.
type Ids = Arc<Mutex<HashMap<String, Vec<ConnId>>>>;

/// Every connection is told `loop:N` and is recorded under its path. Paths:
/// - `/sub`: subscribes to `t`; its messages are published to `t`;
/// - `/pub`: not subscribed; its messages are published to `t`;
/// - `/src`: its messages are `Ctx::send`-forwarded to the first `/dst` connection;
/// - anything else: not subscribed, messages echoed.
#[derive(Clone)]
struct Attack {
    ids: Ids,
}

impl Handler for Attack {
    type Data = String;

    fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<String> {
        Upgrade::Accept(req.path().to_string())
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, path: &mut String) {
        let id = ctx.loop_id();
        ctx.send_text(conn, &format!("loop:{id}"));
        if path == "/sub" {
            ctx.subscribe(conn, "t");
        }
        self.ids
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_default()
            .push(conn);
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, path: &mut String, msg: Payload<'_>) {
        if let Payload::Text("unsub") = msg {
            ctx.unsubscribe(conn, "t");
            return;
        }
        match path.as_str() {
            "/sub" | "/pub" => {
                ctx.publish("t", msg);
            }
            "/src" => {
                let dst = self
                    .ids
                    .lock()
                    .unwrap()
                    .get("/dst")
                    .and_then(|v| v.first().copied());
                if let Some(dst) = dst {
                    ctx.send(dst, msg);
                }
            }
            _ => {
                ctx.send(conn, msg);
            }
        }
    }
}

struct Running {
    addr: SocketAddr,
    handle: ServerHandle,
    ids: Ids,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(config: Config) -> Running {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics: true,
        close_timeout: Duration::from_millis(500),
        ..config
    };
    let ids: Ids = Arc::default();
    let server = Server::bind(config, Attack { ids: ids.clone() }).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let thread = Some(std::thread::spawn(move || server.run().unwrap()));
    Running {
        addr,
        handle,
        ids,
        thread,
    }
}

fn connect_path(addr: SocketAddr, path: &str) -> (Ws, usize) {
    connect_buf(addr, path, None)
}

/// A client whose receive buffer is `rcvbuf` bytes (loopback autotuning otherwise lets the
/// kernel absorb megabytes before the server sees a slow reader).
fn connect_buf(addr: SocketAddr, path: &str, rcvbuf: Option<usize>) -> (Ws, usize) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    sock.connect(&addr.into()).expect("tcp connect");
    let stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = format!("ws://{addr}{path}").into_client_request().unwrap();
    let (mut ws, _) = tungstenite::client::client(req, stream).expect("handshake");
    let first = ws.read().expect("loop notice");
    let text = first.into_text().expect("text");
    let id = text.strip_prefix("loop:").expect("loop:N").parse().unwrap();
    (ws, id)
}

fn connect_on(addr: SocketAddr, path: &str, want: usize) -> Ws {
    connect_on_buf(addr, path, want, None)
}

fn connect_on_buf(addr: SocketAddr, path: &str, want: usize, rcvbuf: Option<usize>) -> Ws {
    let mut spare = Vec::new();
    for _ in 0..200 {
        let (ws, id) = connect_buf(addr, path, rcvbuf);
        if id == want {
            // Close the misplaced ones (they were recorded; harmless).
            drop(spare);
            return ws;
        }
        spare.push(ws);
    }
    panic!("no connection landed on loop {want}");
}

fn sum_metric(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| *v)
        .sum()
}

fn number(m: &Message) -> Option<usize> {
    match m {
        Message::Binary(b) => Some(u64::from_be_bytes(b[..8].try_into().unwrap()) as usize),
        _ => None,
    }
}

fn id_of(ids: &Ids, path: &str, nth: usize) -> ConnId {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(id) = ids
            .lock()
            .unwrap()
            .get(path)
            .and_then(|v| v.get(nth).copied())
        {
            return id;
        }
        assert!(Instant::now() < deadline, "no {path} connection recorded");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Publishes from a handle until the mailbox reports Backpressure (so the never-reading
/// subscriber is congested by mailbox work and the loop holds its mailbox).
fn congest_by_handle(handle: &ServerHandle) {
    for i in 0..10_000 {
        if handle.publish("t", Payload::Binary(&numbered_payload(i, 64 << 10))) != SendStatus::Sent
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the mailbox never reported backpressure");
}

/// Finding A: under `pace`, a subscriber that never reads holds its loop's whole mailbox,
/// so an operator's `ServerHandle::close` of that very subscriber (or of anyone on the
/// loop), `send` to an unrelated connection and `defer` all wait behind it for up to
/// `slow_subscriber_timeout`. Expected: a close or a send to someone else is not held by a
/// congested subscriber of a topic it has nothing to do with.
#[test]
fn handle_close_and_unrelated_send_wait_behind_a_congested_subscriber() {
    let server = start(Config {
        threads: 1,
        slow_subscriber: SlowSubscriber::Pace,
        slow_subscriber_timeout: Duration::from_secs(
            std::env::var("SLOW_TIMEOUT").map_or(20, |v| v.parse().unwrap()),
        ),
        ..Config::default()
    });
    // The slow one: subscribed, never reads.
    let (_dead, _) = connect_path(server.addr, "/sub");
    // An unrelated client that reads.
    let (mut other, _) = connect_path(server.addr, "/other");
    let dead_id = id_of(&server.ids, "/sub", 0);
    let other_id = id_of(&server.ids, "/other", 0);
    congest_by_handle(&server.handle);
    std::thread::sleep(Duration::from_millis(300));
    // The operator kicks the slow subscriber and greets the unrelated client.
    let t0 = Instant::now();
    server.handle.close(dead_id, 4000, "kicked");
    let st = server.handle.send(other_id, Payload::Text("hello"));
    other
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let m = other.read().expect("hello");
    let waited = t0.elapsed();
    assert_eq!(m, Message::Text("hello".into()), "status {st:?}");
    assert!(
        waited < Duration::from_secs(2),
        "a send to an unrelated connection waited {waited:?} behind a congested subscriber \
         of another topic (slow_subscriber_timeout 20 s); status was {st:?}"
    );
}

/// Finding B: "progress" is bytes leaving the server's own buffer, but a congested
/// subscriber's socket is only reported writable once the kernel's send buffer has
/// drained by a large share. A reader that reads steadily at 100 KB/s (a phone on a slow
/// link) is closed 1008 "no progress" after `slow_subscriber_timeout` although it took
/// hundreds of KB meanwhile. Expected under `pace`: it is paced, not closed.
#[test]
#[ignore = "fails about 1 run in 5 (also on a quiet machine): a steady 100 KB/s reader is \
            still sometimes closed as making no progress; an open finding, see attack/FINDINGS.md"]
fn steady_100kbps_reader_is_closed_as_making_no_progress() {
    let server = start(Config {
        threads: 1,
        slow_subscriber: SlowSubscriber::Pace,
        slow_subscriber_timeout: Duration::from_secs(2),
        ..Config::default()
    });
    let (mut slow, _) = connect_buf(server.addr, "/sub", Some(16 << 10));
    let (mut publisher, _) = connect_path(server.addr, "/pub");
    // The reader goes on reading until the scrape below is done: the verdict is read while
    // it still reads, so a scrape delayed on a busy machine cannot see the close that
    // follows once it stops.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop_r = stop.clone();
    let reader = std::thread::spawn(move || {
        let s = slow.get_mut();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = vec![0u8; 10_000];
        let (mut total, t0) = (0usize, Instant::now());
        // 10 KB every 100 ms: 100 KB/s, for 8 s and then until the scrape is done.
        while !stop_r.load(std::sync::atomic::Ordering::Acquire) {
            if t0.elapsed() >= Duration::from_secs(8) {
                let _ = ready_tx.send(total);
            }
            let mut got = 0;
            while got < buf.len() {
                match s.read(&mut buf[got..]) {
                    Ok(0) => return total,
                    Ok(n) => got += n,
                    Err(_) => break,
                }
            }
            total += got;
            std::thread::sleep(Duration::from_millis(100));
        }
        total
    });
    publisher.get_mut().set_nonblocking(false).unwrap();
    let w = std::thread::spawn(move || {
        for i in 0..400 {
            if publisher
                .send(Message::Binary(numbered_payload(i, 32 << 10).into()))
                .is_err()
            {
                break;
            }
        }
        publisher
    });
    let read = ready_rx.recv().expect("the reader read for 8 s");
    let closed = sum_metric(
        &scrape_metrics(server.addr),
        "wsloop_slow_subscribers_closed_total",
    );
    stop.store(true, std::sync::atomic::Ordering::Release);
    reader.join().unwrap();
    drop(w);
    assert_eq!(
        closed, 0.0,
        "a subscriber that read {read} bytes in 8 s (steadily, 100 KB/s) was closed as slow \
         (slow_subscriber_timeout 2 s)"
    );
}

/// Finding C: `Ctx::send` to a connection of the same loop is not paced: a handler that
/// forwards a client's messages to another client (a direct message, a relay) drops
/// messages for a reader that reads, while the same forward to another loop is paced.
/// Expected under `pace`: the forwarding client is held like a publisher.
#[test]
fn ctx_send_on_the_same_loop_is_not_paced() {
    let server = start(Config {
        threads: 1,
        slow_subscriber: SlowSubscriber::Pace,
        ..Config::default()
    });
    let (mut dst, _) = connect_buf(server.addr, "/dst", Some(16 << 10));
    let _ = id_of(&server.ids, "/dst", 0);
    let (mut src, _) = connect_path(server.addr, "/src");
    const N: usize = 1000;
    let w = std::thread::spawn(move || {
        for i in 0..N {
            src.send(Message::Binary(numbered_payload(i, 16 << 10).into()))
                .unwrap();
        }
        src
    });
    // A reader that reads, but starts a little late (a GC pause, a busy tab).
    std::thread::sleep(Duration::from_millis(1500));
    dst.get_mut()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut got = Vec::new();
    while let Ok(m) = dst.read() {
        if let Some(n) = number(&m) {
            got.push(n);
        }
        if got.len() == N {
            break;
        }
    }
    let _src = w.join().unwrap();
    let dropped = sum_metric(&scrape_metrics(server.addr), "wsloop_dropped_sends_total");
    assert_eq!(
        got.len(),
        N,
        "the forwarded-to reader got {} of {N} (wsloop_dropped_sends_total {dropped})",
        got.len()
    );
}

/// Finding D: with two loops, a publisher whose hand-over to a full mailbox is refused
/// (`Dropped`) is not held, so it goes on publishing into the refusal: every reader on the
/// other loop loses messages although it reads. Under `pace` (lossless for readers that
/// read) the publisher should be held instead.
#[test]
fn cross_loop_publishes_are_lost_for_readers_that_read() {
    let server = start(Config {
        threads: 2,
        slow_subscriber: SlowSubscriber::Pace,
        slow_subscriber_timeout: Duration::from_secs(2),
        max_mailbox_bytes: 256 << 10,
        ..Config::default()
    });
    // On loop 1: one subscriber that never reads, one that reads.
    let _dead = connect_on_buf(server.addr, "/sub", 1, Some(16 << 10));
    let mut reader = connect_on(server.addr, "/sub", 1);
    // On loop 0: three publishers (not subscribed).
    const P: usize = 8;
    const N: usize = 30;
    let pubs: Vec<Ws> = (0..P).map(|_| connect_on(server.addr, "/pub", 0)).collect();
    let total = P * N;
    let r = std::thread::spawn(move || {
        reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        let mut got = 0;
        while got < total {
            match reader.read() {
                Ok(m) if number(&m).is_some() => got += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        got
    });
    let writers: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(p, mut ws)| {
            std::thread::spawn(move || {
                for i in 0..N {
                    ws.send(Message::Binary(
                        numbered_payload(p * 1000 + i, 60 << 10).into(),
                    ))
                    .unwrap();
                }
                ws
            })
        })
        .collect();
    let got = r.join().unwrap();
    let _ws: Vec<Ws> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let m = scrape_metrics(server.addr);
    eprintln!(
        "D: got {got}/{total}, dropped {}, paced {}, slow closed {}",
        sum_metric(&m, "wsloop_mailbox_dropped_total"),
        sum_metric(&m, "wsloop_publishers_paced_total"),
        sum_metric(&m, "wsloop_slow_subscribers_closed_total")
    );
    assert_eq!(
        got,
        total,
        "the reading subscriber on loop 1 got {got} of {total} \
         (wsloop_mailbox_dropped_total {})",
        sum_metric(&m, "wsloop_mailbox_dropped_total")
    );
}

/// Stop while a handle thread is held and a subscriber is congested: `run` returns
/// within the close timeout.
#[test]
fn stop_while_held_returns() {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        close_timeout: Duration::from_millis(500),
        slow_subscriber_timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let ids: Ids = Arc::default();
    let server = Server::bind(config, Attack { ids }).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = server.run();
        let _ = tx.send(());
    });
    let (_dead, _) = connect_path(addr, "/sub");
    congest_by_handle(&handle);
    let h2 = handle.clone();
    let waiter = std::thread::spawn(move || h2.wait_for_room(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    handle.stop();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("run returned after stop");
    assert!(waiter.join().unwrap(), "wait_for_room released by stop");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

/// Finding F: a congested subscriber that unsubscribes still holds the topic's
/// publishers until it drains or the timeout passes, and is then closed 1008 "slow
/// subscriber" although it subscribes to nothing. Expected: unsubscribing releases the
/// publishers it held (it gets nothing more from them).
#[test]
fn unsubscribing_while_congested_keeps_holding_the_room() {
    let server = start(Config {
        threads: 1,
        slow_subscriber: SlowSubscriber::Pace,
        slow_subscriber_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    let (mut leaver, _) = connect_buf(server.addr, "/sub", Some(16 << 10));
    let (mut reader, _) = connect_path(server.addr, "/sub");
    let (mut publisher, _) = connect_path(server.addr, "/pub");
    // Enough to congest the leaver (it never reads) and hold the publisher.
    const N: usize = 400;
    let w = std::thread::spawn(move || {
        for i in 0..N {
            if publisher
                .send(Message::Binary(numbered_payload(i, 32 << 10).into()))
                .is_err()
            {
                break;
            }
        }
        publisher
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while sum_metric(
        &scrape_metrics(server.addr),
        "wsloop_publishers_paced_total",
    ) == 0.0
    {
        assert!(Instant::now() < deadline, "the publisher was never held");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The slow one leaves the topic (it can still write).
    leaver.send(Message::Text("unsub".into())).unwrap();
    let t0 = Instant::now();
    reader
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = 0;
    while got < N {
        match reader.read() {
            Ok(m) if number(&m).is_some() => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let took = t0.elapsed();
    let closed = sum_metric(
        &scrape_metrics(server.addr),
        "wsloop_slow_subscribers_closed_total",
    );
    drop(w);
    assert!(
        got == N && took < Duration::from_secs(5) && closed == 0.0,
        "after the slow subscriber unsubscribed, the reader got {got}/{N} in {took:?} \
         (timeout 10 s) and {closed} subscriber(s) were closed as slow"
    );
}

/// Finding G: a `ServerHandle::defer` closure that publishes (the way to publish with a
/// loop's `Ctx`) hands its messages to the other loop through that loop's bounded
/// mailbox. A mailbox command cannot hold its own mailbox on another loop's bytes (two
/// loops feeding each other would wait for each other), so while that loop is behind
/// the closures are carried out one per iteration, their loop waits while the other has
/// a congested subscriber, and the handle is told `Backpressure`; what still meets the
/// bound is dropped and counted. The contract asserted: every message is delivered to
/// the reader or counted in `wsloop_mailbox_dropped_total`, never lost silently (a feed
/// that must lose nothing publishes through `ServerHandle::publish`, charged by size).
#[test]
fn defer_publish_to_another_loop_is_delivered_or_counted() {
    let server = start(Config {
        threads: 2,
        slow_subscriber: SlowSubscriber::Pace,
        slow_subscriber_timeout: Duration::from_secs(2),
        max_mailbox_bytes: 256 << 10,
        ..Config::default()
    });
    let _dead = connect_on_buf(server.addr, "/sub", 1, Some(16 << 10));
    let mut reader = connect_on(server.addr, "/sub", 1);
    const N: usize = 200;
    let r = std::thread::spawn(move || {
        reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        let mut got = 0;
        while got < N {
            match reader.read() {
                Ok(m) if number(&m).is_some() => got += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        got
    });
    for i in 0..N {
        let p = numbered_payload(i, 60 << 10);
        let st = server.handle.defer(0, move |ctx| {
            ctx.publish("t", Payload::Binary(&p));
        });
        match st {
            SendStatus::Sent => {}
            SendStatus::Backpressure => {
                while !server.handle.wait_for_room(Duration::from_secs(1)) {}
            }
            other => panic!("defer {i}: {other:?}"),
        }
    }
    let got = r.join().unwrap();
    let m = scrape_metrics(server.addr);
    let dropped = sum_metric(&m, "wsloop_mailbox_dropped_total") as usize;
    assert_eq!(
        got + dropped,
        N,
        "the reader on loop 1 got {got} of {N} deferred publishes; {dropped} counted as dropped"
    );
}

/// Finding H: the idle timer counts only bytes read, and the core stops reading a
/// connection it pauses (its own output above the high watermark, or held by pacing).
/// A client that is busy the whole time -- sending without pause, and reading its echoes
/// at 50 KB/s -- is closed 1001 "idle timeout" while the server itself keeps its input
/// unread (the keep-alive ping's pong sits behind that input). Expected: a connection
/// the server paused is not idle.
#[test]
fn a_client_paused_by_the_server_is_closed_as_idle() {
    let server = start(Config {
        threads: 1,
        idle_timeout: Duration::from_secs(2),
        ..Config::default()
    });
    let (mut ws, _) = connect_buf(server.addr, "/echo", Some(16 << 10));
    let mut raw = ws.get_ref().try_clone().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // Sends without pause (blocking writes: TCP pushes back while the server is paused).
    let w = std::thread::spawn(move || {
        let mut i = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if ws
                .send(Message::Binary(numbered_payload(i, 8 << 10).into()))
                .is_err()
            {
                break;
            }
            i += 1;
        }
        i
    });
    // Reads the raw stream at 50 KB/s (5 KB per 100 ms) for 12 s.
    raw.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 5_000];
    let (mut total, t0) = (0usize, Instant::now());
    let mut eof = false;
    while t0.elapsed() < Duration::from_secs(12) {
        match raw.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => total += n,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The verdict is scraped while the client still reads: once it stops, the server is
    // right to call it idle, and a scrape delayed on a busy machine would see that.
    let addr = server.addr;
    let scraper = std::thread::spawn(move || scrape_metrics(addr));
    while !eof && !scraper.is_finished() {
        match raw.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => total += n,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = scraper.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(raw);
    let idle_closed: f64 = m
        .iter()
        .filter(|(k, _)| k.as_str() == "wsloop_closed_total{code=\"1001\"}")
        .map(|(_, v)| *v)
        .sum();
    let sent = w.join().unwrap();
    assert!(
        idle_closed == 0.0,
        "a client that kept sending ({sent} messages) and reading ({total} bytes in 12 s, \
         eof {eof}) was closed 1001 ({idle_closed}; idle timeout 2 s)"
    );
}
