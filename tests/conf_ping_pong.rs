//! RFC 6455 §5.5.2-5.5.3 ping and pong (Autobahn section 2).

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
fn ping_without_payload_gets_empty_pong() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &raw_frame(FIN | OP_PING, b""));
    expect_message(&mut s, OP_PONG, b"");
    close_normally(&mut s);
}

#[test]
fn ping_with_text_and_binary_payload_gets_identical_pong() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &raw_frame(FIN | OP_PING, b"Hello, world!"));
    expect_message(&mut s, OP_PONG, b"Hello, world!");
    let binary: Vec<u8> = (0..=255u8).rev().take(125).collect();
    send(&mut s, &raw_frame(FIN | OP_PING, &binary));
    expect_message(&mut s, OP_PONG, &binary);
    let low: Vec<u8> = (0..125u8).collect();
    send(&mut s, &raw_frame(FIN | OP_PING, &low));
    expect_message(&mut s, OP_PONG, &low);
    close_normally(&mut s);
}

#[test]
fn ping_with_125_byte_payload_gets_pong() {
    let mut s = raw_ws(server().addr);
    let p = [0xFEu8; 125];
    send(&mut s, &raw_frame(FIN | OP_PING, &p));
    expect_message(&mut s, OP_PONG, &p);
    // The same, written one byte at a time (Autobahn 2.6).
    send_bytewise(
        &mut s,
        &raw_frame(FIN | OP_PING, &p),
        Duration::from_micros(200),
    );
    expect_message(&mut s, OP_PONG, &p);
    close_normally(&mut s);
}

#[test]
fn ping_with_126_byte_payload_is_a_protocol_error() {
    send_expect_close(
        server().addr,
        &raw_frame(FIN | OP_PING, &[0xFE; 126]),
        Some(1002),
    );
    // With the payload never sent: the declared length alone decides.
    let mut h = Vec::new();
    push_header(
        &mut h,
        FIN | OP_PING,
        126,
        LenForm::Ext16,
        Some(next_mask()),
    );
    send_expect_close(server().addr, &h, Some(1002));
    // A 64-bit-form length on a pong.
    let mut h = Vec::new();
    push_header(
        &mut h,
        FIN | OP_PONG,
        1 << 20,
        LenForm::Ext64,
        Some(next_mask()),
    );
    send_expect_close(server().addr, &h, Some(1002));
}

#[test]
fn unsolicited_pong_is_ignored() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &raw_frame(FIN | OP_PONG, b""));
    send(
        &mut s,
        &raw_frame(FIN | OP_PONG, b"unsolicited pong payload"),
    );
    send(&mut s, &text_frame(b"after pongs"));
    // Nothing for the pongs: the echo is the very next frame.
    expect_message(&mut s, OP_TEXT, b"after pongs");
    // Unsolicited pong followed by a ping (Autobahn 2.9): only the ping is answered.
    let mut both = raw_frame(FIN | OP_PONG, b"unsolicited");
    both.extend(raw_frame(FIN | OP_PING, b"solicited"));
    send(&mut s, &both);
    expect_message(&mut s, OP_PONG, b"solicited");
    close_normally(&mut s);
}

#[test]
fn ten_pings_get_ten_pongs_in_order() {
    let mut s = raw_ws(server().addr);
    let mut all = Vec::new();
    for i in 0..10 {
        all.extend(raw_frame(FIN | OP_PING, format!("payload-{i}").as_bytes()));
    }
    send(&mut s, &all);
    for i in 0..10 {
        expect_message(&mut s, OP_PONG, format!("payload-{i}").as_bytes());
    }
    // And the same written one byte at a time (Autobahn 2.11).
    send_bytewise(&mut s, &all, Duration::ZERO);
    for i in 0..10 {
        expect_message(&mut s, OP_PONG, format!("payload-{i}").as_bytes());
    }
    close_normally(&mut s);
}

#[test]
fn ping_between_fragments_is_answered_at_once() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &raw_frame(OP_TEXT, b"fragment1"));
    send(&mut s, &raw_frame(FIN | OP_PING, b"in the middle"));
    // The pong comes before the message is finished.
    expect_message(&mut s, OP_PONG, b"in the middle");
    send(&mut s, &raw_frame(OP_CONT, b"-fragment2"));
    send(&mut s, &raw_frame(FIN | OP_PING, b"again"));
    expect_message(&mut s, OP_PONG, b"again");
    send(&mut s, &raw_frame(FIN | OP_CONT, b"-fragment3"));
    expect_message(&mut s, OP_TEXT, b"fragment1-fragment2-fragment3");
    close_normally(&mut s);
}

#[test]
fn pong_between_fragments_is_ignored() {
    let mut s = raw_ws(server().addr);
    let mut f = raw_frame(OP_BINARY, b"ab");
    f.extend(raw_frame(FIN | OP_PONG, b"x"));
    f.extend(raw_frame(FIN | OP_CONT, b"cd"));
    send(&mut s, &f);
    expect_message(&mut s, OP_BINARY, b"abcd");
    close_normally(&mut s);
}

#[test]
fn ping_after_close_is_not_answered() {
    // Autobahn 7.1.3: after the close frame nothing more is answered.
    let mut s = raw_ws(server().addr);
    let mut f = close_frame(Some(1000), b"");
    f.extend(raw_frame(FIN | OP_PING, b"too late"));
    send(&mut s, &f);
    expect_close(&mut s, Some(1000));
}

#[test]
fn last_ping_is_answered_even_when_output_is_over_the_limit() {
    // RFC 6455 §5.5.2: every ping gets a pong (at least the most recent one). Here an
    // echo brings the unsent output just under the backpressure limit and two pings
    // follow in the same read: the pong for the first pushes the output over the
    // limit, and the second ping must still be answered (once the output drains).
    let server = ServerProc::start("echo", &["--no-www", "--max-backpressure", "4096"]);
    let mut s = raw_ws(server.addr);
    let big = vec![7u8; 4000];
    let mut f = binary_frame(&big);
    f.extend(raw_frame(FIN | OP_PING, &[1u8; 100]));
    f.extend(raw_frame(FIN | OP_PING, b"last"));
    f.extend(text_frame(b"end"));
    send(&mut s, &f);
    expect_message(&mut s, OP_BINARY, &big);
    let mut pongs = Vec::new();
    loop {
        let f = read_wire_frame(&mut s);
        match f.opcode {
            OP_PONG => pongs.push(f.payload),
            OP_TEXT => {
                assert_eq!(f.payload, b"end");
                break;
            }
            _ => panic!("unexpected {:?}", Abbrev(&f)),
        }
    }
    assert_eq!(
        pongs.last().map(Vec::as_slice),
        Some(&b"last"[..]),
        "the most recent ping was not answered (pongs: {:?})",
        pongs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    close_normally(&mut s);
}

#[test]
fn many_pings_with_a_small_backpressure_limit_are_all_answered_in_order() {
    // Pongs queue against the backpressure limit; reading pauses rather than dropping
    // them. Pipeline far more pong bytes than the limit and check none is lost.
    let server = ServerProc::start("echo", &["--no-www", "--max-backpressure", "2048"]);
    let mut s = raw_ws(server.addr);
    let n = 2000;
    let mut all = Vec::new();
    for i in 0..n {
        all.extend(raw_frame(FIN | OP_PING, format!("{i:0>100}").as_bytes()));
    }
    all.extend(text_frame(b"end"));
    let w = send_in_background(&s, all);
    let mut next = 0;
    loop {
        let f = read_wire_frame(&mut s);
        match f.opcode {
            OP_PONG => {
                let i: usize = String::from_utf8(f.payload).unwrap().parse().unwrap();
                assert!(i >= next, "pong {i} after {next}: out of order");
                next = i + 1;
            }
            OP_TEXT => break,
            _ => panic!("unexpected {:?}", Abbrev(&f)),
        }
    }
    assert_eq!(next, n, "the last ping was not answered");
    w.join().unwrap();
    close_normally(&mut s);
}
