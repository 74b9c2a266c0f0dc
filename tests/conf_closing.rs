//! RFC 6455 §5.5.1, §7 the closing handshake (Autobahn section 7): close codes, close
//! payloads, what happens after a close, and how TCP ends.

mod common;

use common::*;
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

static SERVER: OnceLock<ServerProc> = OnceLock::new();

fn server() -> &'static ServerProc {
    shared_server(&SERVER, "echo", &["--no-www"])
}

const VALID_CODES: &[u16] = &[
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];

const INVALID_CODES: &[u16] = &[
    0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
];

#[test]
fn valid_close_codes_are_echoed() {
    // Autobahn 7.7.x.
    for &code in VALID_CODES {
        send_expect_close(server().addr, &close_frame(Some(code), b""), Some(code));
    }
}

#[test]
fn valid_close_codes_with_a_reason_are_echoed() {
    for &code in VALID_CODES {
        let mut s = raw_ws(server().addr);
        send(&mut s, &close_frame(Some(code), b"a reason"));
        let f = read_wire_frame(&mut s);
        assert_eq!(f.opcode, OP_CLOSE, "{:?}", Abbrev(&f));
        assert_eq!(
            f.payload.get(..2),
            Some(&code.to_be_bytes()[..]),
            "code {code}"
        );
        assert!(f.payload.len() <= 125);
        expect_eof(&mut s);
    }
}

#[test]
fn invalid_close_codes_fail_with_1002() {
    // Autobahn 7.9.x, 7.13.x.
    for &code in INVALID_CODES {
        let mut s = raw_ws(server().addr);
        send(&mut s, &close_frame(Some(code), b""));
        assert_eq!(read_close(&mut s), Some(1002), "close code {code}");
        expect_eof(&mut s);
    }
}

#[test]
fn close_without_payload_is_answered_without_payload() {
    // Autobahn 7.3.1: no code received, none echoed (1005 must never go on the wire).
    send_expect_close(server().addr, &close_frame(None, b""), None);
}

#[test]
fn close_payload_of_one_byte_fails_with_1002() {
    // Autobahn 7.3.2.
    send_expect_close(
        server().addr,
        &raw_frame(FIN | OP_CLOSE, b"\x03"),
        Some(1002),
    );
}

#[test]
fn close_with_code_only_and_with_reason() {
    // Autobahn 7.3.3/7.3.4.
    send_expect_close(server().addr, &close_frame(Some(1000), b""), Some(1000));
    send_expect_close(
        server().addr,
        &close_frame(Some(1000), b"Hello World!"),
        Some(1000),
    );
}

#[test]
fn close_with_123_byte_reason_is_echoed() {
    // Autobahn 7.3.5: the largest close payload (2 + 123 = 125 bytes).
    let reason = vec![b'*'; 123];
    let mut s = raw_ws(server().addr);
    send(&mut s, &close_frame(Some(1000), &reason));
    let f = read_wire_frame(&mut s);
    assert_eq!(f.opcode, OP_CLOSE);
    assert_eq!(&f.payload[..2], &1000u16.to_be_bytes());
    assert!(f.payload.len() <= 125);
    expect_eof(&mut s);
}

#[test]
fn close_with_124_byte_reason_fails_with_1002() {
    // Autobahn 7.3.6: a 126-byte close payload is an oversized control frame.
    send_expect_close(
        server().addr,
        &close_frame(Some(1000), &[b'*'; 124]),
        Some(1002),
    );
}

#[test]
fn echo_then_close() {
    // Autobahn 7.1.1.
    let mut s = raw_ws(server().addr);
    send(&mut s, &text_frame(b"Hello World!"));
    expect_message(&mut s, OP_TEXT, b"Hello World!");
    send(&mut s, &close_frame(Some(1000), b""));
    expect_close(&mut s, Some(1000));
}

#[test]
fn second_close_is_ignored() {
    // Autobahn 7.1.2: one close frame back, then TCP closed.
    let mut s = raw_ws(server().addr);
    let mut f = close_frame(Some(1000), b"");
    f.extend(close_frame(Some(1001), b""));
    send(&mut s, &f);
    expect_close(&mut s, Some(1000));
    // Written separately, after the reply arrived.
    let mut s = raw_ws(server().addr);
    send(&mut s, &close_frame(Some(1000), b""));
    assert_eq!(read_close(&mut s), Some(1000));
    send(&mut s, &close_frame(Some(1000), b""));
    expect_eof(&mut s);
}

#[test]
fn data_after_close_is_ignored() {
    // Autobahn 7.1.3/7.1.4: nothing after the close frame is answered or echoed.
    let mut s = raw_ws(server().addr);
    let mut f = close_frame(Some(1000), b"");
    f.extend(text_frame(b"after close"));
    f.extend(raw_frame(FIN | OP_PING, b"after close"));
    f.extend(binary_frame(&[0; 1000]));
    send(&mut s, &f);
    expect_close(&mut s, Some(1000));
    // And invalid frames after the close do not turn it into a 1002.
    let mut s = raw_ws(server().addr);
    let mut f = close_frame(Some(4000), b"");
    f.extend(raw_frame(FIN | 0x3, b"reserved"));
    f.extend(text_frame(b"\xff"));
    send(&mut s, &f);
    expect_close(&mut s, Some(4000));
}

#[test]
fn data_sent_after_the_servers_close_reply_is_ignored() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &close_frame(Some(1000), b""));
    assert_eq!(read_close(&mut s), Some(1000));
    // The server is lingering: our late frames are read and dropped, not answered.
    send(&mut s, &text_frame(b"late"));
    send(&mut s, &raw_frame(FIN | OP_PING, b"late"));
    expect_eof(&mut s);
}

#[test]
fn large_messages_then_close_arrive_in_order() {
    // Autobahn 7.1.6: the close must not overtake the echoes queued before it.
    let big = vec![b'x'; 256 << 10];
    let mut all = Vec::new();
    for _ in 0..4 {
        all.extend(text_frame(&big));
    }
    all.extend(close_frame(Some(1000), b""));
    let mut s = raw_ws(server().addr);
    let w = send_in_background(&s, all);
    for _ in 0..4 {
        expect_message(&mut s, OP_TEXT, &big);
    }
    expect_close(&mut s, Some(1000));
    w.join().unwrap();
}

#[test]
fn close_after_a_message_larger_than_the_backpressure_limit() {
    // The echo (1 MiB + header) is over the default backpressure limit, so reading
    // pauses with the close frame still unread; the close reply must still go out
    // before TCP is closed.
    let big = vec![7u8; 1 << 20];
    let mut all = binary_frame(&big);
    all.extend(close_frame(Some(1000), b""));
    let mut s = raw_ws(server().addr);
    let w = send_in_background(&s, all);
    expect_message(&mut s, OP_BINARY, &big);
    expect_close(&mut s, Some(1000));
    w.join().unwrap();
}

#[test]
fn close_written_byte_by_byte() {
    let mut s = raw_ws(server().addr);
    send_bytewise(
        &mut s,
        &close_frame(Some(3000), b"slow"),
        Duration::from_millis(1),
    );
    expect_close(&mut s, Some(3000));
}

#[test]
fn client_close_then_half_close() {
    // The client sends its close and shuts down its write side at once.
    let mut s = raw_ws(server().addr);
    send(&mut s, &close_frame(Some(1000), b"bye"));
    s.shutdown(Shutdown::Write).unwrap();
    expect_close(&mut s, Some(1000));
}

#[test]
fn tcp_fin_without_close_frame_closes_the_connection() {
    // An abnormal closure (1006 to the application): nothing is sent, TCP is closed.
    let mut s = raw_ws(server().addr);
    send(&mut s, &text_frame(b"hi"));
    expect_message(&mut s, OP_TEXT, b"hi");
    s.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut s);
    // Also with half a frame sent (data and FIN arrive together).
    let mut s = raw_ws(server().addr);
    send(&mut s, &text_frame(b"half a frame")[..5]);
    s.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut s);
    assert_alive(server().addr);
}

#[test]
fn half_closed_client_still_gets_what_was_queued_for_it() {
    // A message and the FIN right behind it: the peer may still read, so the echo is
    // written before the server closes TCP.
    let mut s = raw_ws(server().addr);
    send(&mut s, &text_frame(b"hello"));
    s.shutdown(Shutdown::Write).unwrap();
    expect_message(&mut s, OP_TEXT, b"hello");
    expect_eof(&mut s);
    // A large echo, still being written when the FIN is read.
    let big = vec![3u8; 3 << 20];
    let mut s = raw_ws(server().addr);
    send_in_background(&s, binary_frame(&big)).join().unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    expect_message(&mut s, OP_BINARY, &big);
    expect_eof(&mut s);
}

fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s); // RST
}

#[test]
fn tcp_reset_mid_frame_does_not_affect_other_clients() {
    let mut other = raw_ws(server().addr);
    for cut in [1usize, 2, 6, 100] {
        let mut s = raw_ws(server().addr);
        let f = binary_frame(&[9u8; 1000]);
        send(&mut s, &f[..cut]);
        reset(s);
        // Mid fragmented message.
        let mut s = raw_ws(server().addr);
        send(&mut s, &raw_frame(OP_TEXT, b"open message"));
        send(&mut s, &raw_frame(OP_CONT, &[b'a'; 1000])[..cut]);
        reset(s);
        // With the echo of a large message still being written.
        let mut s = raw_ws(server().addr);
        send(&mut s, &binary_frame(&[1u8; 300 << 10]));
        reset(s);
        send(&mut other, &text_frame(b"still here"));
        expect_message(&mut other, OP_TEXT, b"still here");
    }
    // Reset during the handshake, and right after the 101.
    let mut s = raw_connect(server().addr);
    send(&mut s, &upgrade_request(server().addr, "").as_bytes()[..20]);
    reset(s);
    let s = raw_ws(server().addr);
    reset(s);
    send(&mut other, &close_frame(Some(1000), b""));
    expect_close(&mut other, Some(1000));
    assert_alive(server().addr);
}

#[test]
fn server_initiated_close_on_shutdown_waits_for_the_clients_close() {
    // SIGTERM: the server sends 1001, waits for our close, then closes TCP and exits.
    let mut server = ServerProc::start("echo", &["--no-www"]);
    let mut s = raw_ws(server.addr);
    send(&mut s, &text_frame(b"before"));
    expect_message(&mut s, OP_TEXT, b"before");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(server.pid() as libc::pid_t, libc::SIGTERM);
    }
    assert_eq!(read_close(&mut s), Some(1001));
    // Data we send now (before our close) is not echoed: the server is closing.
    send(&mut s, &text_frame(b"while closing"));
    send(&mut s, &close_frame(Some(1001), b""));
    expect_eof(&mut s);
    let status = server.child.wait().expect("wait for server");
    assert!(status.success(), "server exit status {status}");
}

#[test]
fn idle_connection_is_pinged_and_then_closed_with_1001() {
    // --idle-timeout 4: a ping at half the timeout; our pong keeps the connection; an
    // unanswered ping ends it with 1001, and the server still completes the handshake.
    let server = ServerProc::start("echo", &["--no-www", "--idle-timeout", "4"]);
    let mut s = raw_ws(server.addr);
    let ping = read_wire_frame(&mut s);
    assert_eq!(ping.opcode, OP_PING, "{:?}", Abbrev(&ping));
    send(&mut s, &raw_frame(FIN | OP_PONG, &ping.payload));
    // Still open: an echo works.
    send(&mut s, &text_frame(b"awake"));
    expect_message(&mut s, OP_TEXT, b"awake");
    // Now stay silent: ping, then close 1001.
    let ping = read_wire_frame(&mut s);
    assert_eq!(ping.opcode, OP_PING, "{:?}", Abbrev(&ping));
    assert_eq!(read_close(&mut s), Some(1001));
    send(&mut s, &close_frame(Some(1001), b""));
    expect_eof(&mut s);
}

#[test]
fn unanswered_server_close_ends_with_tcp_close() {
    // The server's close (idle timeout) is never answered: it closes TCP after the
    // close timeout by itself.
    let server = ServerProc::start(
        "echo",
        &["--no-www", "--idle-timeout", "1", "--close-timeout", "1"],
    );
    let mut s = raw_ws(server.addr);
    assert_eq!(read_wire_frame(&mut s).opcode, OP_PING);
    assert_eq!(read_close(&mut s), Some(1001));
    expect_eof(&mut s);
}
