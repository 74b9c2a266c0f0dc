//! The server against an independent client (the `tungstenite` crate): echo, fragments,
//! ping, close, subprotocols, refusals, many clients, broadcast, backpressure, shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

fn connect_with(server: &ServerProc, protocols: Option<&str>) -> (Ws, Option<String>) {
    let stream = raw_connect(server.addr);
    let mut req = server.url().into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(64 << 20);
    config.max_frame_size = Some(64 << 20);
    let (ws, resp) =
        tungstenite::client::client_with_config(req, stream, Some(config)).expect("handshake");
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, proto)
}

fn connect(server: &ServerProc) -> Ws {
    connect_with(server, None).0
}

/// Next data or close message, skipping pings/pongs.
fn next_msg(ws: &mut Ws) -> Message {
    loop {
        match ws.read().expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

#[test]
fn echo_text_and_binary_at_boundary_sizes() {
    let server = ServerProc::start("echo", &[]);
    let mut ws = connect(&server);
    for size in [0usize, 125, 126, 65535, 65536, 1 << 20] {
        let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(next_msg(&mut ws), Message::text(text), "text {size}");
        let bin: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(next_msg(&mut ws), Message::binary(bin), "binary {size}");
    }
}

#[test]
fn fragmented_messages_are_reassembled() {
    let server = ServerProc::start("echo", &[]);
    let mut ws = connect(&server);
    let parts: [&[u8]; 3] = [b"frag", "mént".as_bytes(), b"ed"];
    for (i, p) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let mut f = Frame::message(p.to_vec(), op, i == parts.len() - 1);
        f.header_mut().is_final = i == parts.len() - 1;
        ws.write(Message::Frame(f)).unwrap();
        if i == 1 {
            // A ping between fragments is answered at once.
            ws.write(Message::Ping(b"mid".to_vec().into())).unwrap();
        }
    }
    ws.flush().unwrap();
    let mut got_pong = false;
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"mid");
                got_pong = true;
            }
            Message::Text(t) => {
                assert_eq!(t.as_str(), "fragménted");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(got_pong, "pong arrives before the reassembled message");
    let _ = FrameHeader::default();
}

#[test]
fn ping_gets_pong_with_payload() {
    let server = ServerProc::start("echo", &[]);
    let mut ws = connect(&server);
    ws.send(Message::Ping(b"are you there?".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there?"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_code_and_reason_round_trip() {
    let server = ServerProc::start("echo", &[]);
    let mut ws = connect(&server);
    ws.close(Some(CloseFrame {
        code: 4321.into(),
        reason: "see you".into(),
    }))
    .unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(cf))) => {
                assert_eq!(u16::from(cf.code), 4321);
                assert_eq!(cf.reason.as_str(), "see you");
            }
            Ok(Message::Close(None)) => panic!("close without code"),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn subprotocol_chosen_or_absent() {
    let server = ServerProc::start("echo", &[]);
    let (_, p) = connect_with(&server, Some("com.kaazing.echo"));
    assert_eq!(p.as_deref(), Some("com.kaazing.echo"));
    let (_, p) = connect_with(&server, Some("nope, echo"));
    assert_eq!(p.as_deref(), Some("echo"));
    let (_, p) = connect_with(&server, None);
    assert_eq!(p, None);
    // Nothing offered matches: 101 without the header (tungstenite's client would refuse
    // that response, so read it raw).
    let mut s = raw_connect(server.addr);
    s.write_all(
        upgrade_request(server.addr, "Sec-WebSocket-Protocol: nope, also-nope\r\n").as_bytes(),
    )
    .unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
}

fn http_status(server: &ServerProc, request: &str) -> (u16, String) {
    let mut s = raw_connect(server.addr);
    let _ = s.write_all(request.as_bytes());
    let head = read_http_head(&mut s);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head)
}

#[test]
fn handshake_refusals_are_http_responses() {
    let server = ServerProc::start("echo", &["--no-www"]);
    let good = upgrade_request(server.addr, "");
    let (s, _) = http_status(&server, &good.replace(KEY, "c2hvcnQ="));
    assert_eq!(s, 400);
    let (s, head) = http_status(&server, &good.replace("Version: 13", "Version: 8"));
    assert_eq!(s, 426);
    assert!(head.contains("Sec-WebSocket-Version: 13"));
    let big = good.replace(
        "\r\n\r\n",
        &format!("\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)),
    );
    assert_eq!(http_status(&server, &big).0, 431);
    // Not an upgrade and no static files: 426.
    assert_eq!(
        http_status(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").0,
        426
    );

    let full = ServerProc::start("echo", &["--max-connections", "2"]);
    let _a = connect(&full);
    let _b = connect(&full);
    let (s, head) = http_status(&full, &upgrade_request(full.addr, ""));
    assert_eq!(s, 503, "{head}");
    assert!(head.contains("Connection: close"));
}

#[test]
fn thousand_concurrent_clients_echo() {
    let server = ServerProc::start("echo", &[]);
    let mut clients: Vec<Ws> = (0..1000).map(|_| connect(&server)).collect();
    for round in 0..3 {
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send(Message::text(format!("client {i} round {round}")))
                .unwrap();
        }
        for (i, ws) in clients.iter_mut().enumerate() {
            assert_eq!(
                next_msg(ws),
                Message::text(format!("client {i} round {round}"))
            );
        }
    }
}

#[test]
fn broadcast_to_200_clients_in_order() {
    // One loop: joins are then in one global order (across loops, order is per publisher).
    let server = ServerProc::start("chat", &["--threads", "1"]);
    let mut clients: Vec<Ws> = Vec::new();
    for _ in 0..200 {
        clients.push(connect(&server));
    }
    // Every client sees the join notices of itself and everyone after it.
    for (i, ws) in clients.iter_mut().enumerate() {
        for j in i..200 {
            assert_eq!(
                next_msg(ws),
                Message::text(format!("user{} come in!", j + 1))
            );
        }
    }
    let senders = [0usize, 57, 199];
    for k in 0..20 {
        let s = senders[k % 3];
        clients[s].send(Message::text(format!("msg {k}"))).unwrap();
    }
    // Each sender's messages arrive in its order, and every client sees the same
    // interleaving (a publish reaches all subscribers in one pass).
    let mut first: Option<Vec<Message>> = None;
    for ws in clients.iter_mut() {
        let got: Vec<Message> = (0..20).map(|_| next_msg(ws)).collect();
        for s in senders {
            let from: Vec<_> = got
                .iter()
                .filter_map(|m| m.to_text().ok())
                .filter(|t| t.starts_with(&format!("user{}: ", s + 1)))
                .map(|t| t.to_owned())
                .collect();
            let expect: Vec<_> = (0..20)
                .filter(|k| senders[k % 3] == s)
                .map(|k| format!("user{}: msg {k}", s + 1))
                .collect();
            assert_eq!(from, expect);
        }
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "all clients see one order"),
        }
    }
    drop(clients.pop());
    for ws in clients.iter_mut().take(3) {
        assert_eq!(next_msg(ws), Message::text("user200 left"));
    }
}

#[test]
fn slow_subscriber_is_closed_with_1008_others_keep_receiving() {
    let server = ServerProc::start("chat", &["--max-backpressure", "65536", "--threads", "1"]);
    let mut slow = raw_ws(server.addr);
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut fast = connect(&server);
    let mut publisher = connect(&server);
    assert_eq!(next_msg(&mut fast), Message::text("user2 come in!"));
    assert_eq!(next_msg(&mut fast), Message::text("user3 come in!"));
    assert_eq!(next_msg(&mut publisher), Message::text("user3 come in!"));
    let rss_before = server.rss_kb();
    let payload = "x".repeat(16 << 10);
    let mut left_seen = 0;
    // 4000 × 16 KiB = 64 MiB for a subscriber that never reads.
    for k in 0..4000 {
        publisher
            .send(Message::text(format!("{k} {payload}")))
            .unwrap();
        // Keep the readers current so only `slow` falls behind.
        let expect = Message::text(format!("user3: {k} {payload}"));
        for ws in [&mut fast, &mut publisher] {
            let mut m = next_msg(ws);
            if m == Message::text("user1 left") {
                left_seen += 1;
                m = next_msg(ws);
            }
            assert_eq!(m, expect);
        }
    }
    assert_eq!(left_seen, 2, "both readers saw the slow subscriber leave");
    let rss_after = server.rss_kb();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "server RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The slow one is closed: after its backlog, a 1008 close (or a reset once the
    // server gave up), then EOF.
    let mut saw_1008 = false;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match slow.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 8 << 20 {
            break;
        }
    }
    // A close frame (0x88, short length) with code 1008 (0x03F0).
    if buf
        .windows(4)
        .any(|w| w[0] == 0x88 && w[1] < 126 && w[2..4] == [0x03, 0xF0])
    {
        saw_1008 = true;
    }
    assert!(
        saw_1008,
        "slow subscriber got {} bytes without a 1008 close",
        buf.len()
    );
}

#[test]
fn abandoned_half_open_handshakes_do_not_stop_new_clients() {
    let server = ServerProc::start("echo", &["--handshake-timeout", "60"]);
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut s = raw_connect(server.addr);
        if i % 2 == 0 {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
        }
        idle.push(s);
    }
    let mut ws = connect(&server);
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(next_msg(&mut ws), Message::text("still here"));
}

#[test]
fn graceful_shutdown_sends_1001_to_every_client() {
    let mut server = ServerProc::start("echo", &[]);
    let mut clients: Vec<Ws> = (0..50).map(|_| connect(&server)).collect();
    let status = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|ws| {
                s.spawn(move || match next_msg(ws) {
                    Message::Close(Some(cf)) => {
                        let code = u16::from(cf.code);
                        // Complete the handshake so the server can exit early.
                        let _ = ws.flush();
                        while ws.read().is_ok() {}
                        code
                    }
                    other => panic!("{other:?}"),
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let status = server.terminate();
        for h in handles {
            assert_eq!(h.join().unwrap(), 1001);
        }
        status
    });
    assert!(status.expect("server exited").success());
}
