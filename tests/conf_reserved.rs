//! RFC 6455 §5.2 reserved bits and opcodes (Autobahn sections 3 and 4): no extension is
//! negotiated, so any RSV bit and any reserved opcode fails the connection with 1002.

mod common;

use common::*;
use std::sync::OnceLock;
use std::time::Duration;

static SERVER: OnceLock<ServerProc> = OnceLock::new();

fn server() -> &'static ServerProc {
    shared_server(&SERVER, "echo", &["--no-www"])
}

const RSV_COMBOS: &[u8] = &[
    RSV1,
    RSV2,
    RSV3,
    RSV1 | RSV2,
    RSV1 | RSV3,
    RSV2 | RSV3,
    RSV1 | RSV2 | RSV3,
];

#[test]
fn rsv_bits_on_text_fail_with_1002() {
    for &rsv in RSV_COMBOS {
        send_expect_close(
            server().addr,
            &raw_frame(FIN | rsv | OP_TEXT, b"Hello, world!"),
            Some(1002),
        );
    }
}

#[test]
fn rsv_bits_on_binary_fail_with_1002() {
    for &rsv in RSV_COMBOS {
        send_expect_close(
            server().addr,
            &raw_frame(FIN | rsv | OP_BINARY, &[0xFF; 10]),
            Some(1002),
        );
    }
}

#[test]
fn rsv_bits_on_ping_fail_with_1002_and_no_pong() {
    for &rsv in RSV_COMBOS {
        send_expect_close(
            server().addr,
            &raw_frame(FIN | rsv | OP_PING, b"ping"),
            Some(1002),
        );
    }
}

#[test]
fn rsv_bits_on_pong_and_close_fail_with_1002() {
    for &rsv in RSV_COMBOS {
        send_expect_close(
            server().addr,
            &raw_frame(FIN | rsv | OP_PONG, b""),
            Some(1002),
        );
        // The close frame is not honoured as a close: the answer is the 1002 failure.
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        send_expect_close(
            server().addr,
            &raw_frame(FIN | rsv | OP_CLOSE, &payload),
            Some(1002),
        );
    }
}

#[test]
fn rsv_bits_on_continuation_fail_with_1002() {
    let mut f = raw_frame(OP_TEXT, b"first ");
    f.extend(raw_frame(FIN | RSV1 | OP_CONT, b"second"));
    send_expect_close(server().addr, &f, Some(1002));
    // Only on the first fragment.
    let mut f = raw_frame(RSV2 | OP_BINARY, b"first ");
    f.extend(raw_frame(FIN | OP_CONT, b"second"));
    send_expect_close(server().addr, &f, Some(1002));
}

#[test]
fn rsv_bits_after_a_valid_echo_fail_after_the_echo() {
    // Autobahn 3.2/3.3: valid text, then the bad frame, then a ping that must not be
    // answered. Whether sent in one write or separately, the echo comes first.
    for &rsv in RSV_COMBOS {
        let mut s = raw_ws(server().addr);
        let mut f = text_frame(b"Hello, world!");
        f.extend(raw_frame(FIN | rsv | OP_TEXT, b"Hello, world!"));
        f.extend(raw_frame(FIN | OP_PING, b""));
        send(&mut s, &f);
        expect_message(&mut s, OP_TEXT, b"Hello, world!");
        expect_close(&mut s, Some(1002));
    }
    // Written one byte at a time (Autobahn 3.4).
    let mut s = raw_ws(server().addr);
    let mut f = text_frame(b"Hello, world!");
    f.extend(raw_frame(FIN | RSV3 | OP_TEXT, b"Hello, world!"));
    f.extend(raw_frame(FIN | OP_PING, b""));
    send_bytewise(&mut s, &f, Duration::from_micros(300));
    expect_message(&mut s, OP_TEXT, b"Hello, world!");
    expect_close(&mut s, Some(1002));
}

const RESERVED_OPCODES: &[u8] = &[3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF];

#[test]
fn reserved_opcodes_fail_with_1002() {
    for &op in RESERVED_OPCODES {
        send_expect_close(server().addr, &raw_frame(FIN | op, b""), Some(1002));
        send_expect_close(
            server().addr,
            &raw_frame(FIN | op, b"reserved opcode payload"),
            Some(1002),
        );
        // Non-final too.
        send_expect_close(server().addr, &raw_frame(op, b"x"), Some(1002));
    }
}

#[test]
fn reserved_opcodes_after_a_valid_echo_fail_after_the_echo() {
    // Autobahn 4.1.3-4.1.5 / 4.2.3-4.2.5: text, reserved frame, ping.
    for &op in RESERVED_OPCODES {
        let mut s = raw_ws(server().addr);
        let mut f = text_frame(b"Hello, world!");
        f.extend(raw_frame(FIN | op, b"reserved"));
        f.extend(raw_frame(FIN | OP_PING, b"unanswered"));
        send(&mut s, &f);
        expect_message(&mut s, OP_TEXT, b"Hello, world!");
        expect_close(&mut s, Some(1002));
    }
    // Separately written: the echo is read before the reserved frame is even sent.
    let mut s = raw_ws(server().addr);
    send(&mut s, &binary_frame(b"\x00\x01"));
    expect_message(&mut s, OP_BINARY, b"\x00\x01");
    send(&mut s, &raw_frame(FIN | 0x5, b""));
    expect_close(&mut s, Some(1002));
}

#[test]
fn reserved_opcode_during_a_fragmented_message_fails_with_1002() {
    let mut s = raw_ws(server().addr);
    let mut f = raw_frame(OP_TEXT, b"part");
    f.extend(raw_frame(FIN | 0xB, b""));
    send(&mut s, &f);
    expect_close(&mut s, Some(1002));
}

#[test]
fn the_server_survives_all_of_the_above() {
    for &op in RESERVED_OPCODES {
        send_expect_close(
            server().addr,
            &raw_frame(FIN | RSV1 | op, b"both"),
            Some(1002),
        );
    }
    assert_alive(server().addr);
}
