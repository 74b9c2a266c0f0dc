//! Timeouts and resource exhaustion: keep-alive ping at half the idle timeout, close when
//! it passes, handshake deadline, and EMFILE back-off without spinning.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn idle_connection_gets_a_ping_then_is_closed_with_1001() {
    let server = ServerProc::start("echo", &["--idle-timeout", "2"]);
    let mut s = raw_ws(server.addr);
    // Nothing sent: a ping comes at about half the idle timeout...
    let (_, op, _) = read_frame(&mut s);
    assert_eq!(op, 0x9, "ping");
    // ...and, unanswered, a close 1001.
    let (_, op, payload) = read_frame(&mut s);
    assert_eq!(op, 0x8, "close");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    // Completing the close handshake ends TCP.
    s.write_all(&client_frame(true, 0x8, &payload[..2]))
        .unwrap();
    assert!(reads_to_eof(&mut s));
}

#[test]
fn answered_pings_keep_the_connection_open() {
    let server = ServerProc::start("echo", &["--idle-timeout", "1"]);
    let mut s = raw_ws(server.addr);
    for _ in 0..4 {
        let (_, op, p) = read_frame(&mut s);
        assert_eq!(op, 0x9);
        s.write_all(&client_frame(true, 0xA, &p)).unwrap();
    }
    s.write_all(&client_frame(true, 0x1, b"alive")).unwrap();
    loop {
        let (_, op, p) = read_frame(&mut s);
        if op == 0x1 {
            assert_eq!(p, b"alive");
            break;
        }
        assert_eq!(op, 0x9, "only pings before the echo");
    }
}

#[test]
fn handshake_deadline_is_not_reset_by_trickling_bytes() {
    let server = ServerProc::start("echo", &["--handshake-timeout", "1"]);
    let mut s = raw_connect(server.addr);
    let start = Instant::now();
    let mut closed = false;
    // One byte every 100 ms would go on for 20 s; the deadline must end it.
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".iter() {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    assert!(closed || reads_to_eof(&mut s), "slow handshake was cut off");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn emfile_backs_off_instead_of_spinning_and_keeps_serving() {
    // A hard limit of 64 descriptors: the raise to the hard limit cannot help.
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=64:64",
            env!("CARGO_BIN_EXE_wsloop"),
            "echo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let pid = child.id();
    let mut first = raw_ws(addr);
    // Exhaust the descriptors: these connect (the kernel's backlog) but cannot be accepted.
    let extra: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // A spinning loop burns ~200 ticks in 2 s; backing off costs next to nothing.
    assert!(
        used < 60,
        "server used {used} clock ticks in 2 s while out of descriptors"
    );
    // The open connection is still served.
    first
        .write_all(&client_frame(true, 0x1, b"served"))
        .unwrap();
    assert_eq!(read_frame(&mut first).2, b"served");
    drop(extra);
    let _ = child.kill();
    let _ = child.wait();
}
