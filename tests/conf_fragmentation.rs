//! RFC 6455 §5.4 fragmentation (Autobahn section 5): reassembly, control frames in
//! between, and every way a fragment sequence can be broken.

mod common;

use common::*;
use std::sync::OnceLock;
use std::time::Duration;

static SERVER: OnceLock<ServerProc> = OnceLock::new();

fn server() -> &'static ServerProc {
    shared_server(&SERVER, "echo", &["--no-www"])
}

fn close_normally(s: &mut std::net::TcpStream) {
    send(s, &close_frame(Some(1000), b""));
    expect_close(s, Some(1000));
}

#[test]
fn text_in_two_to_many_fragments() {
    let msg = "Hello, fragmented wörld! κόσμε".as_bytes();
    let mut s = raw_ws(server().addr);
    for n in [2usize, 3, 5, 10] {
        let size = msg.len().div_ceil(n);
        let chunks: Vec<&[u8]> = msg.chunks(size).collect();
        send(&mut s, &fragments(OP_TEXT, &chunks));
        expect_message(&mut s, OP_TEXT, msg);
    }
    // One byte per fragment: every UTF-8 sequence is cut by fragment boundaries.
    let chunks: Vec<&[u8]> = msg.chunks(1).collect();
    send(&mut s, &fragments(OP_TEXT, &chunks));
    expect_message(&mut s, OP_TEXT, msg);
    close_normally(&mut s);
}

#[test]
fn binary_in_two_to_many_fragments() {
    let msg: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let mut s = raw_ws(server().addr);
    for n in [2usize, 7, 100, 1000] {
        let chunks: Vec<&[u8]> = msg.chunks(msg.len().div_ceil(n)).collect();
        send(&mut s, &fragments(OP_BINARY, &chunks));
        expect_message(&mut s, OP_BINARY, &msg);
    }
    close_normally(&mut s);
}

#[test]
fn fragments_written_one_byte_at_a_time() {
    // Autobahn 5.4/5.5: two fragments, chopped into octets (with pauses).
    let mut s = raw_ws(server().addr);
    let f = fragments(OP_TEXT, &[b"fragment1", b"fragment2"]);
    send_bytewise(&mut s, &f, Duration::from_millis(1));
    expect_message(&mut s, OP_TEXT, b"fragment1fragment2");
    close_normally(&mut s);
}

#[test]
fn empty_fragments() {
    let mut s = raw_ws(server().addr);
    // Empty first, middle and last fragments.
    send(&mut s, &fragments(OP_TEXT, &[b"", b"a", b"", b"b", b""]));
    expect_message(&mut s, OP_TEXT, b"ab");
    // All empty.
    send(&mut s, &fragments(OP_TEXT, &[b"", b"", b""]));
    expect_message(&mut s, OP_TEXT, b"");
    send(&mut s, &fragments(OP_BINARY, &[b"", b""]));
    expect_message(&mut s, OP_BINARY, b"");
    close_normally(&mut s);
}

#[test]
fn control_frames_between_fragments() {
    // Autobahn 5.6-5.8 and 5.19/5.20: pings (and pongs) interleaved with fragments.
    let mut s = raw_ws(server().addr);
    let mut f = raw_frame(OP_TEXT, b"fragment1");
    f.extend(raw_frame(FIN | OP_PING, b"ping1"));
    f.extend(raw_frame(OP_CONT, b"fragment2"));
    f.extend(raw_frame(FIN | OP_PONG, b"pong"));
    f.extend(raw_frame(OP_CONT, b"fragment3"));
    f.extend(raw_frame(FIN | OP_PING, b"ping2"));
    f.extend(raw_frame(FIN | OP_CONT, b"fragment4"));
    send(&mut s, &f);
    expect_message(&mut s, OP_PONG, b"ping1");
    expect_message(&mut s, OP_PONG, b"ping2");
    expect_message(&mut s, OP_TEXT, b"fragment1fragment2fragment3fragment4");
    // Chopped into octets.
    send_bytewise(&mut s, &f, Duration::ZERO);
    expect_message(&mut s, OP_PONG, b"ping1");
    expect_message(&mut s, OP_PONG, b"ping2");
    expect_message(&mut s, OP_TEXT, b"fragment1fragment2fragment3fragment4");
    close_normally(&mut s);
}

#[test]
fn ping_between_fragments_is_answered_before_the_message_ends() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &raw_frame(OP_BINARY, b"\x01\x02"));
    send(&mut s, &raw_frame(FIN | OP_PING, b"now"));
    expect_message(&mut s, OP_PONG, b"now");
    send(&mut s, &raw_frame(FIN | OP_CONT, b"\x03"));
    expect_message(&mut s, OP_BINARY, b"\x01\x02\x03");
    close_normally(&mut s);
}

#[test]
fn continuation_without_a_start_fails_with_1002() {
    // Autobahn 5.9-5.14: FIN and non-FIN continuations, whole or chopped.
    for fin in [FIN, 0] {
        let mut f = raw_frame(fin | OP_CONT, b"non-continuation payload");
        f.extend(text_frame(b"Hello, world!"));
        send_expect_close(server().addr, &f, Some(1002));
        let mut s = raw_ws(server().addr);
        send_bytewise(&mut s, &f, Duration::ZERO);
        expect_close(&mut s, Some(1002));
    }
    // After a complete message, a continuation has nothing to continue.
    let mut s = raw_ws(server().addr);
    let mut f = fragments(OP_TEXT, &[b"a", b"b"]);
    f.extend(raw_frame(FIN | OP_CONT, b"c"));
    send(&mut s, &f);
    expect_message(&mut s, OP_TEXT, b"ab");
    expect_close(&mut s, Some(1002));
}

#[test]
fn new_data_frame_during_a_fragmented_message_fails_with_1002() {
    // Autobahn 5.18: text (FIN=0) then text (FIN=1).
    let mut f = raw_frame(OP_TEXT, b"fragment1");
    f.extend(raw_frame(FIN | OP_TEXT, b"fragment2"));
    send_expect_close(server().addr, &f, Some(1002));
    // Binary inside text, non-final too.
    let mut f = raw_frame(OP_TEXT, b"fragment1");
    f.extend(raw_frame(OP_BINARY, b"fragment2"));
    send_expect_close(server().addr, &f, Some(1002));
    // After a continuation.
    let mut f = raw_frame(OP_BINARY, b"1");
    f.extend(raw_frame(OP_CONT, b"2"));
    f.extend(raw_frame(FIN | OP_TEXT, b"3"));
    send_expect_close(server().addr, &f, Some(1002));
}

#[test]
fn autobahn_5_15_to_5_17_sequences() {
    // 5.15: a complete fragmented message, then continuation (FIN=0), then text.
    let mut s = raw_ws(server().addr);
    let mut f = fragments(OP_TEXT, &[b"fragment1", b"fragment2"]);
    f.extend(raw_frame(OP_CONT, b"fragment3"));
    f.extend(raw_frame(FIN | OP_TEXT, b"fragment4"));
    send(&mut s, &f);
    expect_message(&mut s, OP_TEXT, b"fragment1fragment2");
    expect_close(&mut s, Some(1002));
    // 5.16/5.17: starts with a continuation (FIN=0 or 1).
    for fin in [0, FIN] {
        let mut f = raw_frame(fin | OP_CONT, b"fragment1");
        f.extend(raw_frame(OP_TEXT, b"fragment2"));
        f.extend(raw_frame(FIN | OP_CONT, b"fragment3"));
        send_expect_close(server().addr, &f, Some(1002));
    }
}

#[test]
fn fragmented_ping_pong_and_close_fail_with_1002() {
    // Autobahn 5.1/5.2: control frames must not be fragmented.
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut f = raw_frame(op, b"frag");
        f.extend(raw_frame(FIN | OP_CONT, b"ment"));
        send_expect_close(server().addr, &f, Some(1002));
        // Also inside a fragmented data message.
        let mut f = raw_frame(OP_TEXT, b"data");
        f.extend(raw_frame(op, b""));
        send_expect_close(server().addr, &f, Some(1002));
    }
    // A fragmented close with a valid code is still a protocol error, not a close.
    let mut f = raw_frame(OP_CLOSE, &1000u16.to_be_bytes());
    f.extend(raw_frame(FIN | OP_CONT, b""));
    send_expect_close(server().addr, &f, Some(1002));
}

#[test]
fn close_between_fragments_closes() {
    // Autobahn 7.1.5: text fragment, close, then the continuation (which is dropped).
    let mut s = raw_ws(server().addr);
    let mut f = raw_frame(OP_TEXT, b"fragment1");
    f.extend(close_frame(Some(1000), b""));
    f.extend(raw_frame(FIN | OP_CONT, b"fragment2"));
    send(&mut s, &f);
    expect_close(&mut s, Some(1000));
}

#[test]
fn many_fragmented_messages_back_to_back() {
    let mut s = raw_ws(server().addr);
    let mut all = Vec::new();
    let msgs: Vec<String> = (0..200)
        .map(|i| format!("msg-{i}-{}", "é".repeat(i % 7)))
        .collect();
    for m in &msgs {
        let b = m.as_bytes();
        let mid = b.len() / 2;
        // Split in the middle, possibly inside a two-byte sequence.
        all.extend(fragments(OP_TEXT, &[&b[..mid], &b[mid..]]));
    }
    let w = send_in_background(&s, all);
    for m in &msgs {
        expect_message(&mut s, OP_TEXT, m.as_bytes());
    }
    w.join().unwrap();
    close_normally(&mut s);
}
