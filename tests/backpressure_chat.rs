//! Backpressure reaches the producer (issue 19, cases 1 and 2), against `wsloop chat` with
//! its default flags (`--slow-subscriber pace`), with one loop and with two:
//!
//! - a publisher that reads its room slower than it writes is paced, not closed: its input
//!   pauses while its own unsent output is above the high watermark, so it gets every one
//!   of its own broadcasts;
//! - a burst into a room of readers empties nothing: every reader that keeps reading gets
//!   every message in order;
//! - in both, the one client that never reads is the only one closed (its "left" notice
//!   is the event the tests wait for), and the server's memory stays bounded.
//!
//! Verdicts rest on what each client receives and on RSS bounds, never on timing: a
//! slower or busier machine only makes the tests take longer.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// A chat client with long timeouts (the never-reader's close takes
/// `--slow-subscriber-timeout`, 5 s by default, after its buffers fill).
fn client(server: &ServerProc) -> TcpStream {
    let s = raw_ws(server.addr);
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

/// Reads chat frames until `name`'s join notice (every client sees joins after its own).
fn await_join(s: &mut TcpStream, name: &str) {
    let want = format!("{name} come in!");
    loop {
        let (_, op, p) = read_frame(s);
        assert_eq!(op, OP_TEXT, "unexpected frame while waiting for {want}");
        if p == want.as_bytes() {
            return;
        }
    }
}

/// A data message of `size` bytes numbered `i`.
fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("m{i:05} ").into_bytes();
    m.resize(size, b'x');
    m
}

/// What a reader saw: the numbers of `publisher`'s messages in arrival order, and whether
/// `leaver` was announced as gone.
#[derive(Default, Debug)]
struct Seen {
    numbers: Vec<usize>,
    left: bool,
}

/// Handles one frame a reader got: `publisher`'s messages are recorded by number (their
/// size checked), `leaver`'s leave notice noted; a close frame fails the test.
fn take(seen: &mut Seen, frame: (bool, u8, Vec<u8>), publisher: &str, leaver: &str, size: usize) {
    let (_, op, p) = frame;
    if op == 8 {
        let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
        panic!(
            "a reading client was closed ({code:?}) after {} messages",
            seen.numbers.len()
        );
    }
    assert_eq!(op, OP_TEXT);
    let prefix = format!("{publisher}: m");
    if p.starts_with(prefix.as_bytes()) {
        assert_eq!(p.len(), prefix.len() - 1 + size, "message size");
        let digits = &p[prefix.len()..prefix.len() + 5];
        let n: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
        seen.numbers.push(n);
    } else if p == format!("{leaver} left").as_bytes() {
        seen.left = true;
    }
}

/// Case 1: one client sends `n` messages of `size` bytes as fast as it can while its own
/// reader thread reads the room; another never reads.
fn paced_publisher(threads: &str, n: usize, size: usize) {
    let server = ServerProc::start("chat", &["--threads", threads]);
    let mut rss = RssBound::new(&server, "paced publisher", 16 << 10);
    let mut publisher = client(&server);
    await_join(&mut publisher, "user1");
    let mut never = client(&server);
    await_join(&mut publisher, "user2");
    await_join(&mut never, "user2");

    let mut reading = publisher.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Seen::default();
        while seen.numbers.len() < n || !seen.left {
            let frame = read_frame(&mut reading);
            take(&mut seen, frame, "user1", "user2", size);
        }
        seen
    });
    for i in 0..n {
        publisher.write_all(&text_frame(&message(i, size))).unwrap();
        if i % 16 == 0 {
            rss.sample();
        }
    }
    let seen = reader.join().expect("the publisher's reader");
    assert_eq!(
        seen.numbers,
        (0..n).collect::<Vec<_>>(),
        "the publisher gets every one of its broadcasts, in order"
    );
    assert!(seen.left, "the never-reading client was closed");
    rss.report();
    drop(never);
}

#[test]
fn a_publisher_that_reads_slower_than_it_writes_is_paced_one_loop() {
    paced_publisher("1", 400, 60_000);
}

#[test]
fn a_publisher_that_reads_slower_than_it_writes_is_paced_two_loops() {
    paced_publisher("2", 400, 60_000);
}

/// Case 2: `readers` clients read continuously (one thread reads them all, round robin),
/// one sends `n` messages of `size` bytes, one never reads.
fn burst_into_room(threads: &str, readers: usize, n: usize, size: usize) {
    let server = ServerProc::start("chat", &["--threads", threads]);
    let mut rss = RssBound::new(&server, "burst into a room", 24 << 10);
    let mut room: Vec<TcpStream> = Vec::new();
    for k in 1..=readers {
        let mut c = client(&server);
        await_join(&mut c, &format!("user{k}"));
        room.push(c);
    }
    let publisher_name = format!("user{}", readers + 1);
    let mut publisher = client(&server);
    let never_name = format!("user{}", readers + 2);
    let never = client(&server);
    for c in room.iter_mut().chain(std::iter::once(&mut publisher)) {
        await_join(c, &never_name);
    }
    let sender = {
        let mut out = publisher.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0..n {
                out.write_all(&text_frame(&message(i, size))).unwrap();
            }
        })
    };
    // The publisher reads the room too (its own broadcasts), in the same thread.
    room.push(publisher);
    let mut seen: Vec<Seen> = room.iter().map(|_| Seen::default()).collect();
    let mut rounds = 0;
    while seen.iter().any(|s| s.numbers.len() < n || !s.left) {
        for (c, s) in room.iter_mut().zip(seen.iter_mut()) {
            if s.numbers.len() < n || !s.left {
                let frame = read_frame(c);
                take(s, frame, &publisher_name, &never_name, size);
            }
        }
        rounds += 1;
        if rounds % 32 == 0 {
            rss.sample();
        }
    }
    sender.join().expect("sender");
    for (k, s) in seen.iter().enumerate() {
        assert_eq!(
            s.numbers,
            (0..n).collect::<Vec<_>>(),
            "reader {k} gets every message in order"
        );
    }
    rss.report();
    drop(never);
}

#[test]
fn a_burst_does_not_empty_a_room_of_readers_one_loop() {
    burst_into_room("1", 5, 512, 65_000);
}

#[test]
fn a_burst_does_not_empty_a_room_of_readers_two_loops() {
    burst_into_room("2", 5, 512, 65_000);
}
