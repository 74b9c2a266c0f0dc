//! End-to-end tests: wsload's scenarios against tiny blocking servers built on the same
//! protocol core (one thread per connection), including servers that misbehave on
//! purpose so the verification is shown to catch them.

use crate::cli::{Cli, Command};
use crate::report::Report;
use crate::stats::ErrorKind;
use clap::Parser;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use wsloop::protocol::decoder::{Decoded, Decoder, Message, Role};
use wsloop::protocol::frame::{write_server_frame, OpCode};
use wsloop::protocol::handshake::accept_key;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    /// Echo, but flip one byte of every 50th message.
    CorruptEcho,
    /// Echo, but swap every 40th message with the next.
    ReorderEcho,
    Chat,
}

type Clients = Arc<Mutex<Vec<(u64, TcpStream)>>>;

/// Starts a server on an ephemeral port; returns its address.
fn server(mode: Mode) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let clients: Clients = Arc::default();
    std::thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(s) = s else { continue };
            let clients = clients.clone();
            std::thread::spawn(move || serve(s, mode, n as u64 + 1, clients));
        }
    });
    addr
}

fn broadcast(clients: &Clients, frame: &[u8]) {
    for (_, c) in clients.lock().unwrap().iter_mut() {
        let _ = c.write_all(frame);
    }
}

fn serve(mut s: TcpStream, mode: Mode, user: u64, clients: Clients) {
    s.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let Ok(n) = s.read(&mut buf[filled..]) else {
            return;
        };
        if n == 0 {
            return;
        }
        filled += n;
        if let Some(p) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_string();
            let key = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                })
                .unwrap();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            s.write_all(resp.as_bytes()).unwrap();
            buf.copy_within(p + 4..filled, 0);
            filled -= p + 4;
            break;
        }
    }
    if mode == Mode::Chat {
        clients.lock().unwrap().push((user, s.try_clone().unwrap()));
        let mut f = Vec::new();
        write_server_frame(
            &mut f,
            true,
            OpCode::Text,
            format!("user{user} come in!").as_bytes(),
        );
        broadcast(&clients, &f);
    }
    let mut d = Decoder::new(Role::Server);
    let mut out = Vec::new();
    let mut count = 0u64;
    let mut held: Option<Vec<u8>> = None;
    loop {
        let mut off = 0;
        out.clear();
        let mut close = false;
        loop {
            let message = match d.decode(&mut buf[off..filled], 1 << 24) {
                Ok(Decoded::Incomplete { .. }) | Err(_) => break,
                Ok(Decoded::Fragment { consumed }) => {
                    off += consumed;
                    continue;
                }
                Ok(Decoded::Message { consumed, message }) => {
                    off += consumed;
                    owned(message)
                }
            };
            match message {
                Owned::Data(op, mut data) => {
                    count += 1;
                    match mode {
                        Mode::Echo => write_server_frame(&mut out, true, op, &data),
                        Mode::CorruptEcho => {
                            if count.is_multiple_of(50) {
                                let last = data.len() - 1;
                                data[last] ^= 1;
                            }
                            write_server_frame(&mut out, true, op, &data)
                        }
                        Mode::ReorderEcho => {
                            if count.is_multiple_of(40) {
                                held = Some(data);
                            } else {
                                write_server_frame(&mut out, true, op, &data);
                                if let Some(h) = held.take() {
                                    write_server_frame(&mut out, true, op, &h);
                                }
                            }
                        }
                        Mode::Chat => {
                            let mut f = Vec::new();
                            if op == OpCode::Text {
                                let mut t = format!("user{user}: ").into_bytes();
                                t.extend_from_slice(&data);
                                write_server_frame(&mut f, true, op, &t);
                            } else {
                                write_server_frame(&mut f, true, op, &data);
                            }
                            broadcast(&clients, &f);
                        }
                    }
                }
                Owned::Ping(p) => write_server_frame(&mut out, true, OpCode::Pong, &p),
                Owned::Close(code) => {
                    let p = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
                    write_server_frame(&mut out, true, OpCode::Close, &p);
                    close = true;
                    break;
                }
                Owned::Other => {}
            }
        }
        buf.copy_within(off..filled, 0);
        filled -= off;
        if !out.is_empty() && s.write_all(&out).is_err() {
            return;
        }
        if close {
            if mode == Mode::Chat {
                clients.lock().unwrap().retain(|(u, _)| *u != user);
            }
            return;
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
}

enum Owned {
    Data(OpCode, Vec<u8>),
    Ping(Vec<u8>),
    Close(Option<u16>),
    Other,
}

fn owned(m: Message<'_>) -> Owned {
    match m {
        Message::Text(t) => Owned::Data(OpCode::Text, t.as_bytes().to_vec()),
        Message::Binary(b) => Owned::Data(OpCode::Binary, b.to_vec()),
        Message::Ping(p) => Owned::Ping(p.to_vec()),
        Message::Close(c) => Owned::Close(c.code),
        Message::Pong(_) | Message::Compressed { .. } => Owned::Other,
    }
}

fn run(args: &[&str]) -> Report {
    let mut argv = vec!["wsload"];
    argv.extend_from_slice(args);
    argv.push("--quiet");
    let cli = Cli::try_parse_from(argv).unwrap();
    match &cli.cmd {
        Command::Echo(a) => crate::run_echo(a),
        Command::Broadcast(a) => crate::run_broadcast(a),
        Command::Connect(a) => crate::run_connect(a),
        Command::Churn(_) => unreachable!("churn prints its own result"),
    }
    .unwrap()
}

fn url(addr: &str) -> String {
    format!("ws://{addr}/")
}

#[test]
fn echo_verifies_cleanly() {
    let u = url(&server(Mode::Echo));
    for args in [
        vec![
            "echo", "--url", &u, "-c", "4", "-k", "3", "-d", "0.3", "-w", "0.1",
        ],
        vec![
            "echo", "--url", &u, "-c", "3", "-s", "70000", "--binary", "-n", "60", "-w", "0",
        ],
        vec![
            "echo",
            "--url",
            &u,
            "-c",
            "5",
            "-s",
            "5",
            "-n",
            "500",
            "--threads",
            "2",
            "-w",
            "0",
        ],
    ] {
        let r = run(&args);
        assert_eq!(r.errors(), 0, "{args:?}: {:?}", r.stats.error_samples);
        assert!(r.msgs > 0);
        if args.contains(&"-n") {
            let n: u64 = args[args.iter().position(|a| *a == "-n").unwrap() + 1]
                .parse()
                .unwrap();
            assert_eq!(r.msgs, n, "{args:?}");
        }
        assert_eq!(r.stats.close_codes.get(&1000), Some(&r.connections));
    }
}

#[test]
fn echo_catches_corruption_and_reordering() {
    let u = url(&server(Mode::CorruptEcho));
    // A bounded deadline: a server that corrupts or holds back echoes may never let the
    // count complete, and the test must end either way.
    let r = run(&[
        "echo",
        "--url",
        &u,
        "-c",
        "2",
        "-n",
        "400",
        "-w",
        "0",
        "--deadline",
        "20",
    ]);
    assert!(
        r.stats.errors[ErrorKind::Corrupt as usize] >= 4,
        "{:?}",
        r.stats.errors
    );
    let u = url(&server(Mode::ReorderEcho));
    let r = run(&[
        "echo",
        "--url",
        &u,
        "-c",
        "1",
        "-k",
        "8",
        "-n",
        "400",
        "-w",
        "0",
        "--deadline",
        "20",
    ]);
    assert!(
        r.stats.errors[ErrorKind::Sequence as usize] > 0,
        "{:?}",
        r.stats.errors
    );
}

#[test]
fn broadcast_orders_and_counts() {
    let u = url(&server(Mode::Chat));
    for extra in [vec!["-d", "0.4"], vec!["--binary", "-n", "300"]] {
        let mut args = vec![
            "broadcast",
            "--url",
            &u,
            "--subscribers",
            "6",
            "--publishers",
            "2",
            "-w",
            "0.1",
        ];
        args.extend(extra.iter());
        let r = run(&args);
        assert_eq!(r.errors(), 0, "{args:?}: {:?}", r.stats.error_samples);
        assert!(r.stats.sent > 0 && r.msgs > 0);
        // Every publish reaches all 8 connections.
        if extra.contains(&"-n") {
            assert_eq!(r.stats.sent, 300);
        }
    }
}

#[test]
fn broadcast_detects_missing_deliveries() {
    // An echo server does not broadcast: subscribers never see the publishes.
    let u = url(&server(Mode::Echo));
    let r = run(&[
        "broadcast",
        "--url",
        &u,
        "--subscribers",
        "2",
        "-d",
        "0.2",
        "-w",
        "0",
    ]);
    assert!(r.stats.errors[ErrorKind::Missing as usize] > 0);
}

#[test]
fn connect_and_hold() {
    let u = url(&server(Mode::Echo));
    let r = run(&["connect", "--url", &u, "-c", "50"]);
    assert_eq!((r.errors(), r.msgs), (0, 50), "{:?}", r.stats.error_samples);
    let r = run(&[
        "connect", "--url", &u, "-c", "20", "--hold", "0.2", "--rate", "400",
    ]);
    assert_eq!(
        (r.errors(), r.stats.answered),
        (0, 20),
        "{:?}",
        r.stats.error_samples
    );
}

#[test]
fn refused_connections_are_errors() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let u = url(&addr);
    let r = run(&["echo", "--url", &u, "-c", "3", "-d", "0.1", "-w", "0"]);
    assert_eq!(r.stats.errors[ErrorKind::Connect as usize], 3);
}

#[test]
fn churn_catches_a_corrupted_echo() {
    let u = url(&server(Mode::CorruptEcho));
    let cli = Cli::try_parse_from([
        "wsload",
        "churn",
        "--url",
        &u,
        "-d",
        "1.5",
        "--workers",
        "2",
        "--pause-ms",
        "1",
        "--slow-readers",
        "0",
        "--io-timeout",
        "5",
        "--handshake-timeout",
        "0",
        "--half-open-grace",
        "0.5",
    ])
    .unwrap();
    let Command::Churn(a) = &cli.cmd else {
        unreachable!()
    };
    // The test server answers neither HTTP nor abandoned heads; only the echoes matter:
    // every 50th comes back with a flipped byte, which must be reported.
    assert_eq!(crate::churn::run(a), Ok(1));
}
