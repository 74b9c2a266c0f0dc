//! The hostile suite's Redis section: Redis as a hostile peer, played by a fake Redis written
//! here (a `TcpListener` thread speaking RESP3, scripted per connection). Issue 20, cases
//! 1-3 and the kinds around them: deep nesting, error replies to every publish, a flapping
//! link, garbage, huge blobs, a dribbling or silent Redis, forged and malformed envelopes,
//! and credentials off the command line.
//!
//! Assertions are on events and bounds: log lines counted (the in-process tests capture the
//! `log` records of the backplane; the binary tests read the server's stderr to its end
//! after stopping it), counters, the fake's own record of connections, and a process still
//! alive and serving. Waits poll for a condition under a generous deadline; the only timing
//! asserted is a lower bound (the back-off never retries sooner than documented), which a
//! loaded machine cannot break.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsloop::backplane::envelope::Header;
use wsloop::backplane::{Backplane, BackplaneConfig, BackplaneStats, Incoming};

const DEADLINE: Duration = Duration::from_secs(30);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ------------------------------------------------------------------------- log capture

/// Every `wsloop` log record at info or above, as "LEVEL message".
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info && m.target().starts_with("wsloop")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}", r.level(), r.args());
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static CAPTURE: Capture = Capture;
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Log lines about the fake on `port` (every backplane line names the Redis address) that
/// contain `needle`. Tests run in parallel; the port keeps them apart.
fn logged(port: u16, needle: &str) -> Vec<String> {
    let addr = format!("127.0.0.1:{port}");
    LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(&addr) && l.contains(needle))
        .cloned()
        .collect()
}

fn all_logged(port: u16) -> Vec<String> {
    logged(port, "")
}

// --------------------------------------------------------------------------- fake Redis

/// One connection to the fake, as its script sees it.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    /// Reads one command (an array of bulk strings); `None` at EOF or on anything else.
    fn command(&mut self) -> Option<Vec<Vec<u8>>> {
        let n: usize = self.line()?.strip_prefix('*')?.parse().ok()?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let len: usize = self.line()?.strip_prefix('$')?.parse().ok()?;
            let mut arg = vec![0u8; len + 2];
            self.r.read_exact(&mut arg).ok()?;
            arg.truncate(len);
            args.push(arg);
        }
        Some(args)
    }

    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end().to_string()),
        }
    }

    /// Writes `b`; false if the client is gone.
    fn send(&mut self, b: &[u8]) -> bool {
        self.w.write_all(b).is_ok()
    }

    /// Reads the HELLO and answers it like Redis 7 (a map); returns its arguments.
    fn hello(&mut self) -> Option<Vec<Vec<u8>>> {
        let args = self.command()?;
        assert_eq!(args[0], b"HELLO", "first command");
        self.send(HELLO_ANSWER).then_some(args)
    }

    /// Answers like Redis until EOF: SUBSCRIBE / UNSUBSCRIBE with a push per channel,
    /// PING with PONG, PUBLISH with whatever `publish` says (given the publish's index on
    /// this connection).
    fn serve(&mut self, mut publish: impl FnMut(usize) -> Vec<u8>) {
        let mut subscribed = 0;
        let mut publishes = 0;
        while let Some(args) = self.command() {
            let reply = match &args[0][..] {
                verb @ (b"SUBSCRIBE" | b"UNSUBSCRIBE") => {
                    let mut out = Vec::new();
                    for ch in &args[1..] {
                        if verb == b"SUBSCRIBE" {
                            subscribed += 1
                        } else {
                            subscribed -= 1
                        }
                        let v = String::from_utf8_lossy(verb).to_lowercase();
                        out.extend(format!(">3\r\n${}\r\n{v}\r\n", v.len()).bytes());
                        out.extend(bulk(ch));
                        out.extend(format!(":{subscribed}\r\n").bytes());
                    }
                    out
                }
                b"PING" => b"+PONG\r\n".to_vec(),
                b"PUBLISH" => {
                    publishes += 1;
                    publish(publishes - 1)
                }
                _ => b"-ERR unknown command\r\n".to_vec(),
            };
            if !self.send(&reply) {
                return;
            }
        }
    }

    /// Reads (and ignores) commands until the client goes.
    fn drain(&mut self) {
        while self.command().is_some() {}
    }
}

const HELLO_ANSWER: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n";

type Script = dyn Fn(usize, &mut Conn) + Send + Sync;

/// A fake Redis on a free loopback port: each connection runs `script(index, conn)` on a
/// thread of its own, then is closed.
struct Fake {
    port: u16,
    /// When each connection was accepted, in order.
    accepted: Arc<Mutex<Vec<Instant>>>,
}

impl Fake {
    fn start(script: impl Fn(usize, &mut Conn) + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Redis");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = accepted.clone();
        std::thread::spawn(move || {
            for (i, s) in listener.incoming().enumerate() {
                let Ok(s) = s else { return };
                log.lock().unwrap().push(Instant::now());
                let script = script.clone();
                std::thread::spawn(move || {
                    let _ = s.set_nodelay(true);
                    let w = s.try_clone().unwrap();
                    let mut conn = Conn {
                        r: BufReader::new(s),
                        w,
                    };
                    script(i, &mut conn);
                    let _ = conn.w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Fake { port, accepted }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// An envelope: the 20-byte header, then `payload`.
fn envelope(instance: u64, seq: u64, text: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        instance,
        seq,
        text,
    }
    .write_to(&mut out);
    out.extend_from_slice(payload);
    out
}

/// A `message` push of `data` on `channel`.
fn message(channel: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b">3\r\n$7\r\nmessage\r\n".to_vec();
    out.extend(bulk(channel.as_bytes()));
    out.extend(bulk(data));
    out
}

// ------------------------------------------------------------------ backplane in-process

fn config(fake: &Fake) -> BackplaneConfig {
    capture_logs();
    BackplaneConfig::from_url(&fake.url()).unwrap()
}

fn start(cfg: BackplaneConfig) -> (Backplane, Receiver<Incoming>) {
    let (tx, rx) = channel();
    let bp = Backplane::start(cfg, move |m| {
        let _ = tx.send(m);
    })
    .expect("start backplane");
    (bp, rx)
}

fn recv(rx: &Receiver<Incoming>, what: &str) -> Incoming {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn wait_stats(bp: &Backplane, what: &str, ok: impl Fn(&BackplaneStats) -> bool) -> BackplaneStats {
    wait_until(what, || ok(&bp.stats()));
    bp.stats()
}

/// A fake that answers HELLO, then sends `pushes` after the first SUBSCRIBE's confirmation,
/// then serves like Redis.
fn fake_pushing(pushes: Vec<u8>) -> Fake {
    Fake::start(move |_, c| {
        if c.hello().is_none() {
            return;
        }
        let args = loop {
            let Some(args) = c.command() else { return };
            match &args[0][..] {
                b"SUBSCRIBE" => break args,
                b"PING" => c.send(b"+PONG\r\n"),
                _ => c.send(b":1\r\n"),
            };
        };
        let mut confirm = b">3\r\n$9\r\nsubscribe\r\n".to_vec();
        confirm.extend(bulk(&args[1]));
        confirm.extend(b":1\r\n");
        if c.send(&confirm) && c.send(&pushes) {
            c.serve(|_| b":1\r\n".to_vec());
        }
    })
}

const A: u64 = 0xA11C_E000_0000_0001;

// ---------------------------------------------------------------- case 2: -NOPERM

#[test]
fn redis_noperm_on_every_publish_is_logged_once_and_counted_dropped() {
    const REFUSED: usize = 2000;
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            c.serve(|i| match i < REFUSED {
                true => b"-NOPERM this user has no permissions to access the channel\r\n".to_vec(),
                false => b":0\r\n".to_vec(),
            });
        }
    });
    let (bp, _rx) = start(config(&fake));
    wait_stats(&bp, "connected", |s| s.connected);
    for i in 0..REFUSED {
        assert!(bp.publish("room", true, format!("m{i}").as_bytes()));
    }
    let s = wait_stats(&bp, "2000 refusals", |s| s.refused_total == REFUSED as u64);
    assert_eq!(
        (s.published_total, s.dropped_total),
        (0, REFUSED as u64),
        "{s:?}"
    );
    assert!(bp.publish("room", true, b"accepted"));
    let s = wait_stats(&bp, "the accepted publish", |s| s.published_total == 1);
    assert_eq!((s.dropped_total, s.refused_total), (2000, 2000), "{s:?}");
    wait_until("the end of refusals logged", || {
        !logged(fake.port, "accepts PUBLISH again").is_empty()
    });
    let start = logged(fake.port, "refuses PUBLISH");
    let end = logged(fake.port, "accepts PUBLISH again");
    assert_eq!(start.len(), 1, "{:#?}", all_logged(fake.port));
    assert!(
        start[0].starts_with("WARN") && start[0].contains("NOPERM"),
        "{start:?}"
    );
    assert_eq!(end.len(), 1, "{end:?}");
    assert!(end[0].contains("2000 publish(es) were refused"), "{end:?}");
    // connected + refusal start + end: nothing per message.
    assert_eq!(
        all_logged(fake.port).len(),
        3,
        "{:#?}",
        all_logged(fake.port)
    );
    assert_eq!(s.connects_total, 1);
}

// ---------------------------------------------------------- case 3: flapping link

#[test]
fn redis_flapping_link_keeps_backing_off_and_logs_once() {
    const FLAPS: usize = 6;
    let fake = Fake::start(|i, c| {
        if c.hello().is_some() && i >= FLAPS {
            // The link finally holds: answer like Redis.
            c.serve(|_| b":1\r\n".to_vec());
        }
        // Otherwise: HELLO answered, then the link drops.
    });
    let mut cfg = config(&fake);
    cfg.stable_after = Duration::from_millis(500);
    // PINGs every 100 ms give the reader something to read, so it notices stability soon.
    cfg.keepalive = Duration::from_millis(100);
    let (min, max) = (cfg.backoff_min, cfg.backoff_max);
    let (bp, _rx) = start(cfg);
    wait_until("the link stable and its recovery logged", || {
        !logged(fake.port, "is back (outage").is_empty()
    });
    let times = fake.accepted.lock().unwrap().clone();
    assert_eq!(times.len(), FLAPS + 1, "one connection per back-off step");
    // Each retry waits at least the documented back-off: 100 ms doubling (to 5 s), not
    // reset by a HELLO that is answered on a link that then drops.
    let mut wait = min;
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= wait,
            "retried after {gap:?}, back-off was {wait:?}: {times:?}"
        );
        wait = (wait * 2).min(max);
    }
    let s = bp.stats();
    assert_eq!(
        (s.connects_total, s.reconnects_total),
        (FLAPS as u64 + 1, FLAPS as u64)
    );
    let lines = all_logged(fake.port);
    assert_eq!(logged(fake.port, "lost Redis").len(), 1, "{lines:#?}");
    let back = logged(fake.port, "is back (outage");
    assert_eq!(back.len(), 1, "{lines:#?}");
    assert!(back[0].contains(&format!("{FLAPS} attempt(s)")), "{back:?}");
    // connected, lost, back.
    assert_eq!(lines.len(), 3, "{lines:#?}");
}

// ------------------------------------------------ case 1 and garbage, in process

#[test]
fn redis_garbage_is_a_protocol_error_then_back_off() {
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            c.send(b"?this is not RESP\r\n");
            c.drain();
        }
    });
    let (bp, _rx) = start(config(&fake));
    wait_until("three connections", || fake.connections() >= 3);
    let s = wait_stats(&bp, "protocol errors counted", |s| {
        s.protocol_errors_total >= 2
    });
    assert!(
        s.protocol_errors_total <= fake.connections() as u64,
        "{s:?}"
    );
    let lost = logged(fake.port, "lost Redis");
    assert_eq!(lost.len(), 1, "{:#?}", all_logged(fake.port));
    assert!(lost[0].contains("unknown type byte 0x3f"), "{lost:?}");
    assert!(logged(fake.port, "is back (outage").is_empty());
}

#[test]
fn redis_deep_nesting_in_process_is_a_protocol_error() {
    let fake = Fake::start(|i, c| {
        if i % 2 == 0 {
            // 8 KB of nesting as the answer to HELLO.
            let _ = c.command();
            c.send(&b">1\r\n".repeat(2048));
        } else if c.hello().is_some() {
            // 1 MiB of it after HELLO.
            c.send(&b">1\r\n".repeat(1 << 18));
        }
        c.drain();
    });
    let (bp, _rx) = start(config(&fake));
    let s = wait_stats(&bp, "four protocol errors", |s| {
        s.protocol_errors_total >= 4
    });
    assert!(s.connects_total >= 2, "{s:?}");
    let lines = all_logged(fake.port);
    let errors: Vec<_> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(errors.len(), 1, "one outage, one line: {lines:#?}");
    assert!(errors[0].contains("nested deeper than 8"), "{errors:?}");
}

// ------------------------------------------------------------------- slow and silent

#[test]
fn redis_dribbling_bytes_still_delivers_everything() {
    let mut pushes = Vec::new();
    for i in 1..=3u64 {
        pushes.extend(message(
            "wsloop:room",
            &envelope(A, i, true, format!("slow {i}").as_bytes()),
        ));
    }
    let fake = Fake::start(move |_, c| {
        let Some(_) = c.command() else { return };
        let dribble = |c: &mut Conn, bytes: &[u8]| bytes.iter().all(|b| c.send(&[*b]));
        if !dribble(c, HELLO_ANSWER) {
            return;
        }
        let Some(args) = c.command() else { return };
        let mut confirm = b">3\r\n$9\r\nsubscribe\r\n".to_vec();
        confirm.extend(bulk(&args[1]));
        confirm.extend(b":1\r\n");
        if dribble(c, &confirm) && dribble(c, &pushes) {
            c.serve(|_| b":1\r\n".to_vec());
        }
    });
    let (bp, rx) = start(config(&fake));
    bp.subscribe("room");
    for i in 1..=3 {
        let m = recv(&rx, "a dribbled message");
        assert_eq!(
            (&m.payload[..], m.from),
            (format!("slow {i}").as_bytes(), A)
        );
    }
    let s = bp.stats();
    assert_eq!(
        (s.connects_total, s.protocol_errors_total, s.malformed_total),
        (1, 0, 0)
    );
    assert_eq!(s.subscriptions, 1);
}

#[test]
fn redis_that_never_answers_is_given_up() {
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            // Reads PINGs and publishes, answers nothing, keeps the link open.
            c.drain();
        }
    });
    let mut cfg = config(&fake);
    cfg.keepalive = Duration::from_millis(100);
    let (bp, _rx) = start(cfg);
    wait_stats(&bp, "connected", |s| s.connected);
    assert!(bp.publish("room", true, b"into the void"));
    wait_until("a second connection", || fake.connections() >= 2);
    let lost = logged(fake.port, "lost Redis");
    assert_eq!(lost.len(), 1, "{:#?}", all_logged(fake.port));
    assert!(
        lost[0].contains("unanswered") || lost[0].contains("nothing from Redis"),
        "{lost:?}"
    );
    // The unanswered publish is counted dropped once the link is given up.
    let s = wait_stats(&bp, "the unanswered publish dropped", |s| {
        s.dropped_total == 1
    });
    assert_eq!(s.published_total, 0);
}

// ------------------------------------------------------------------ huge and malformed

#[test]
fn redis_huge_message_is_dropped_unbuffered_and_the_link_stays() {
    const HUGE: usize = 32 << 20;
    let fake = Fake::start(|_, c| {
        if c.hello().is_none() {
            return;
        }
        let Some(args) = c.command() else { return };
        let mut out = b">3\r\n$9\r\nsubscribe\r\n".to_vec();
        out.extend(bulk(&args[1]));
        out.extend(b":1\r\n");
        let data = envelope(A, 1, false, &[]);
        out.extend(b">3\r\n$7\r\nmessage\r\n$11\r\nwsloop:room\r\n");
        out.extend(format!("${}\r\n", data.len() + HUGE).bytes());
        out.extend(&data);
        if !c.send(&out) {
            return;
        }
        let chunk = vec![0x55u8; 64 << 10];
        for _ in 0..HUGE / chunk.len() {
            if !c.send(&chunk) {
                return;
            }
        }
        c.send(b"\r\n");
        c.send(&message("wsloop:room", &envelope(A, 2, true, b"after")));
        c.serve(|_| b":1\r\n".to_vec());
    });
    let mut cfg = config(&fake);
    cfg.max_payload = 64 << 10;
    let (bp, rx) = start(cfg);
    bp.subscribe("room");
    let m = recv(&rx, "the message after the huge one");
    assert_eq!(&m.payload[..], b"after");
    let s = bp.stats();
    assert_eq!((s.oversize_total, s.received_total), (1, 1), "{s:?}");
    assert_eq!((s.connects_total, s.protocol_errors_total), (1, 0), "{s:?}");
}

#[test]
fn redis_bad_envelopes_are_counted_malformed_and_dropped() {
    let mut bad_magic = envelope(A, 5, true, b"x");
    bad_magic[0] = b'X';
    let mut bad_flags = envelope(A, 6, true, b"x");
    bad_flags[3] = 0x80;
    let mut pushes = Vec::new();
    for data in [
        b"not an envelope at all".to_vec(),
        b"WL".to_vec(),
        bad_magic,
        bad_flags,
        envelope(A, 7, true, b"\xff\xfe not UTF-8"),
        envelope(A, 8, true, b"\xed\xa0\x80 a surrogate"),
    ] {
        pushes.extend(message("wsloop:room", &data));
    }
    // Not our prefix, and a prefix but a topic that is not UTF-8.
    pushes.extend(message("other:room", &envelope(A, 9, true, b"x")));
    let mut raw = b">3\r\n$7\r\nmessage\r\n$9\r\nwsloop:\xff\xff\r\n".to_vec();
    raw.extend(bulk(&envelope(A, 10, true, b"x")));
    pushes.extend(raw);
    // Over this instance's max_payload (1 KiB) but within what the decoder keeps.
    pushes.extend(message(
        "wsloop:room",
        &envelope(A, 11, false, &[0u8; 1025]),
    ));
    // `message` pushes of the wrong shape.
    pushes.extend(b">2\r\n$7\r\nmessage\r\n$11\r\nwsloop:room\r\n");
    pushes.extend(b">3\r\n$7\r\nmessage\r\n$11\r\nwsloop:room\r\n:1\r\n");
    // Binary need not be UTF-8; then the marker.
    pushes.extend(message("wsloop:room", &envelope(A, 12, false, b"\xff")));
    pushes.extend(message("wsloop:room", &envelope(A, 13, true, b"end")));
    let fake = fake_pushing(pushes);
    let mut cfg = config(&fake);
    cfg.max_payload = 1024;
    let (bp, rx) = start(cfg);
    bp.subscribe("room");
    let bin = recv(&rx, "the binary message");
    assert_eq!((&bin.payload[..], bin.text), (&b"\xff"[..], false));
    assert_eq!(&recv(&rx, "the end marker").payload[..], b"end");
    let s = bp.stats();
    assert_eq!((s.malformed_total, s.oversize_total), (10, 1), "{s:?}");
    assert_eq!(
        (s.received_total, s.connects_total, s.protocol_errors_total),
        (2, 1, 0)
    );
}

#[test]
fn redis_forged_sequence_numbers_cannot_silence_an_instance() {
    let mut pushes = Vec::new();
    for (seq, body) in [
        (1, &b"real 1"[..]),
        (u64::MAX, b"forged, huge sequence number"),
        (2, b"real 2"),
        (2, b"real 2"),
        (3, b"real 3"),
    ] {
        pushes.extend(message("wsloop:room", &envelope(A, seq, true, body)));
    }
    let fake = fake_pushing(pushes);
    let (bp, rx) = start(config(&fake));
    bp.subscribe("room");
    let got: Vec<Vec<u8>> = (0..4)
        .map(|_| recv(&rx, "a message").payload.to_vec())
        .collect();
    assert_eq!(
        got,
        [
            &b"real 1"[..],
            b"forged, huge sequence number",
            b"real 2",
            b"real 3"
        ]
    );
    let s = wait_stats(&bp, "the duplicate counted", |s| s.duplicates_total == 1);
    assert_eq!((s.out_of_order_total, s.received_total), (1, 4), "{s:?}");
}

#[test]
fn redis_error_reply_to_no_command_is_a_protocol_error() {
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            c.send(b"-ERR surprise\r\n:7\r\n");
            c.drain();
        }
    });
    let (bp, _rx) = start(config(&fake));
    wait_stats(&bp, "a protocol error", |s| s.protocol_errors_total >= 1);
    wait_until("the loss logged", || {
        !logged(fake.port, "lost Redis").is_empty()
    });
    assert!(logged(fake.port, "lost Redis")[0].contains("no command"));
}

// --------------------------------------------------------------- the real server binary

/// `wsloop <mode>` with captured stderr.
struct Wsloop {
    child: Child,
    addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Wsloop {
    fn start(mode: &str, extra: &[&str], env: &[(&str, &str)]) -> Wsloop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsloop"))
            .arg(mode)
            .args(["--listen", "127.0.0.1:0", "--metrics", "--threads", "2"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove(wsloop::backplane::PASSWORD_ENV)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsloop");
        let err = child.stderr.take().unwrap();
        let stderr =
            std::thread::spawn(move || BufReader::new(err).lines().map_while(Result::ok).collect());
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("start-up line");
        Wsloop {
            child,
            addr: common::startup_addr(&line),
            stderr: Some(stderr),
        }
    }

    fn assert_alive(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "wsloop exited: {:?}",
            self.child.try_wait()
        );
    }

    /// A fresh client gets its echo on `/echo` (demo mode) or `/` (echo mode).
    fn echo(&self) {
        let mut s = common::raw_ws(self.addr);
        s.write_all(&common::client_frame(true, 1, b"still served?"))
            .unwrap();
        let (_, op, p) = common::read_frame(&mut s);
        assert_eq!((op, &p[..]), (1, &b"still served?"[..]));
    }

    fn metrics(&self) -> HashMap<String, f64> {
        let mut s = common::raw_connect(self.addr);
        let host = self.addr;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let r = common::read_http_response(&mut s);
        String::from_utf8(r.body)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    /// SIGTERM, wait, and every stderr line it wrote.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "wsloop ended with {status}");
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Wsloop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// Case 1: 1 MiB of `>1\r\n` after HELLO aborted the server (stack overflow on the reader
/// thread); now one protocol error per connection, one log line, and clients served.
#[test]
fn redis_nested_push_does_not_kill_the_server() {
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            c.send(&b">1\r\n".repeat(1 << 18));
            c.drain();
        }
    });
    let url = fake.url();
    let mut server = Wsloop::start("echo", &["--redis", &url], &[]);
    wait_until("three connections to the fake", || fake.connections() >= 3);
    server.assert_alive();
    server.echo();
    let m = server.metrics();
    assert!(m["wsloop_backplane_protocol_errors_total"] >= 2.0, "{m:?}");
    let lines = server.stop();
    assert_eq!(count(&lines, "lost Redis"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "nested deeper than"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "cannot reach"), 0, "{lines:#?}");
}

/// Case 1, the HELLO variant: 8 KB of nesting as the answer to HELLO killed the server
/// before any client connected.
#[test]
fn redis_nested_hello_answer_does_not_kill_the_server() {
    let fake = Fake::start(|_, c| {
        if c.command().is_some() {
            c.send(&b">1\r\n".repeat(2048));
            c.drain();
        }
    });
    let url = fake.url();
    let mut server = Wsloop::start("echo", &["--redis", &url], &[]);
    wait_until("three connections to the fake", || fake.connections() >= 3);
    server.assert_alive();
    server.echo();
    let lines = server.stop();
    assert_eq!(count(&lines, "cannot reach"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "nested deeper than"), 1, "{lines:#?}");
}

/// A peer instance with a bigger --max-backpressure publishes a message bigger than this
/// instance's readers may buffer: it is dropped here (counted), the room is not emptied.
#[test]
fn redis_peer_with_bigger_limits_cannot_empty_the_room() {
    let mut pushes = message("wsloop:chat", &envelope(A, 1, true, &[b'x'; 100 << 10]));
    pushes.extend(message(
        "wsloop:chat",
        &envelope(A, 2, true, b"peer: hello"),
    ));
    let fake = fake_pushing(pushes);
    let url = fake.url();
    let server = Wsloop::start(
        "chat",
        &["--redis", &url, "--max-backpressure", "64KiB"],
        &[],
    );
    let mut s = common::raw_ws(server.addr);
    let (_, _, join) = common::read_frame(&mut s);
    assert!(
        String::from_utf8_lossy(&join).contains("come in"),
        "{join:?}"
    );
    let (_, op, p) = common::read_frame(&mut s);
    assert_eq!(
        (op, &p[..]),
        (1, &b"peer: hello"[..]),
        "the small one, not the big one"
    );
    let m = server.metrics();
    assert_eq!(m["wsloop_backplane_oversize_total"], 1.0, "{m:?}");
    assert_eq!(m["wsloop_backplane_received_total"], 1.0, "{m:?}");
    // Still in the room: a message of ours comes back.
    s.write_all(&common::client_frame(true, 1, b"me")).unwrap();
    let (_, op, p) = common::read_frame(&mut s);
    assert!(op == 1 && p.ends_with(b": me"), "{p:?}");
}

/// The password from a file or the environment reaches HELLO's AUTH, and never the
/// command line.
#[test]
fn redis_password_from_file_or_environment() {
    let hellos = Arc::new(Mutex::new(Vec::new()));
    let seen = hellos.clone();
    let fake = Fake::start(move |_, c| {
        if let Some(args) = c.hello() {
            seen.lock().unwrap().push(args);
            c.serve(|_| b":1\r\n".to_vec());
        }
    });
    let dir = std::env::temp_dir().join(format!("wsloop-hostile-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let url = fake.url();
    let file_arg = file.to_str().unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 2] = [
        (&["--redis-password-file", file_arg], &[], "from-the-file"),
        (
            &[],
            &[("WSLOOP_REDIS_PASSWORD", "from-the-env")],
            "from-the-env",
        ),
    ];
    for (i, (extra, env, want)) in cases.into_iter().enumerate() {
        let mut args = vec!["--redis", url.as_str()];
        args.extend(extra);
        let server = Wsloop::start("echo", &args, env);
        wait_until("HELLO", || hellos.lock().unwrap().len() > i);
        let hello = hellos.lock().unwrap()[i].clone();
        let words: Vec<String> = hello
            .iter()
            .map(|a| String::from_utf8_lossy(a).into())
            .collect();
        assert_eq!(&words[2..5], ["AUTH", "default", want], "{words:?}");
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(want));
        let lines = server.stop();
        assert_eq!(
            count(&lines, "visible to every local user"),
            0,
            "{lines:#?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    // A password in the URL still works, with a warning.
    let server = Wsloop::start(
        "echo",
        &[
            "--redis",
            &format!("redis://:in-the-url@127.0.0.1:{}", fake.port),
        ],
        &[],
    );
    wait_until("HELLO", || hellos.lock().unwrap().len() > 2);
    let lines = server.stop();
    assert_eq!(
        count(&lines, "visible to every local user"),
        1,
        "{lines:#?}"
    );
}

#[test]
fn redis_unreadable_password_file_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args([
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .args(["--redis-password-file", "/nonexistent/wsloop-password"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/wsloop-password"), "{err}");
}

#[test]
fn redis_counter_families_are_exposed() {
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            c.serve(|_| b":1\r\n".to_vec());
        }
    });
    let url = fake.url();
    let server = Wsloop::start("echo", &["--redis", &url], &[]);
    let m = server.metrics();
    for name in [
        "refused_total",
        "duplicates_total",
        "oversize_total",
        "protocol_errors_total",
        "malformed_total",
    ] {
        assert!(
            m.contains_key(&format!("wsloop_backplane_{name}")),
            "{name}: {m:?}"
        );
    }
    let _ = server.stop();
}

/// Case 2 through the server: a chat client's 2 000 messages (and its join) all refused
/// with `-NOPERM`: one warning, no line per message, every refusal counted as dropped.
#[test]
fn redis_noperm_through_the_chat_logs_once() {
    const N: usize = 2000;
    let fake = Fake::start(|_, c| {
        if c.hello().is_some() {
            c.serve(|_| {
                b"-NOPERM this user has no permissions to access one of the channels\r\n".to_vec()
            });
        }
    });
    let url = fake.url();
    let server = Wsloop::start("chat", &["--redis", &url], &[]);
    wait_until("backplane up", || {
        server.metrics()["wsloop_backplane_up"] == 1.0
    });
    let mut s = common::raw_ws(server.addr);
    let reader = {
        let mut r = s.try_clone().unwrap();
        // The chat sends every line back to its sender: read them so nothing backs up.
        std::thread::spawn(move || (0..=N).for_each(|_| drop(common::read_frame(&mut r))))
    };
    for i in 0..N {
        s.write_all(&common::client_frame(true, 1, format!("m{i}").as_bytes()))
            .unwrap();
    }
    reader.join().unwrap();
    let want = (N + 1) as f64;
    wait_until("every publish refused", || {
        server.metrics()["wsloop_backplane_refused_total"] == want
    });
    let m = server.metrics();
    assert_eq!(m["wsloop_backplane_published_total"], 0.0, "{m:?}");
    assert_eq!(m["wsloop_backplane_dropped_total"], want, "{m:?}");
    drop(s);
    let lines = server.stop();
    assert_eq!(count(&lines, "NOPERM"), 1, "{lines:#?}");
    assert!(lines.len() < 20, "{lines:#?}");
}

/// Case 3 through the server: a Redis that answers HELLO and drops the link, again and
/// again. Retries follow the back-off (never sooner), and the whole outage is one line.
#[test]
fn redis_flapping_through_the_server_logs_once() {
    let fake = Fake::start(|_, c| {
        let _ = c.hello();
    });
    let url = fake.url();
    let mut server = Wsloop::start("echo", &["--redis", &url], &[]);
    wait_until("five connections", || fake.connections() >= 5);
    server.assert_alive();
    server.echo();
    let times = fake.accepted.lock().unwrap().clone();
    let mut wait = Duration::from_millis(100);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= wait, "{times:?}");
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    let lines = server.stop();
    let about: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("wsloop::backplane::reader"))
        .collect();
    assert_eq!(count(&lines, "lost Redis"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "is back (outage"), 0, "{lines:#?}");
    // "connected" once, "lost" once: not a line per attempt.
    assert_eq!(about.len(), 2, "{about:#?}");
}

/// A flapping link under a steady stream of chat messages: the server's own "dropping
/// publishes" line comes once for the outage, not once per flap (each up phase lets some
/// publishes through).
#[test]
fn redis_flapping_under_publishes_logs_drops_once() {
    let fake = Fake::start(|i, c| {
        if c.hello().is_none() {
            return;
        }
        // The first link holds until the test has its client publishing; later ones serve
        // for a moment (some publishes get through), then drop.
        let hold = Duration::from_millis(if i == 0 { 500 } else { 50 });
        let t0 = Instant::now();
        c.w.set_read_timeout(Some(hold)).unwrap();
        while t0.elapsed() < hold {
            let Some(args) = c.command() else { return };
            let reply: &[u8] = match &args[0][..] {
                b"PUBLISH" => b":1\r\n",
                b"PING" => b"+PONG\r\n",
                _ => b">3\r\n$9\r\nsubscribe\r\n$11\r\nwsloop:chat\r\n:1\r\n",
            };
            if !c.send(reply) {
                return;
            }
        }
    });
    let url = fake.url();
    let server = Wsloop::start("chat", &["--redis", &url], &[]);
    wait_until("backplane up", || {
        server.metrics()["wsloop_backplane_up"] == 1.0
    });
    let mut s = common::raw_ws(server.addr);
    let mut r = s.try_clone().unwrap();
    // Drains what the chat sends back (every line to its sender too) until the socket ends.
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut sent = 0u64;
    let end = Instant::now() + DEADLINE;
    while fake.connections() < 5 {
        assert!(
            Instant::now() < end,
            "timed out waiting for five connections"
        );
        s.write_all(&common::client_frame(true, 1, b"tick"))
            .unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let m = server.metrics();
    assert!(m["wsloop_backplane_published_total"] >= 1.0, "{m:?}");
    assert!(m["wsloop_backplane_dropped_total"] >= 1.0, "{m:?}");
    let _ = s.shutdown(std::net::Shutdown::Both);
    drain.join().unwrap();
    let lines = server.stop();
    assert!(sent > 10);
    assert_eq!(count(&lines, "lost Redis"), 1, "{lines:#?}");
    assert!(count(&lines, "dropping publishes") <= 1, "{lines:#?}");
    assert_eq!(count(&lines, "reach Redis again"), 0, "{lines:#?}");
}
