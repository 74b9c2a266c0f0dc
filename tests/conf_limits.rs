//! Message size limits (1009), impossible lengths (1002), and volume (Autobahn section 9
//! in a bounded form): big messages in many frames, many small frames pipelined.

mod common;

use common::*;
use std::net::TcpStream;
use std::sync::OnceLock;

/// `--max-message-size 65536`.
static LIMITED: OnceLock<ServerProc> = OnceLock::new();
/// The default limit (16 MiB).
static DEFAULT: OnceLock<ServerProc> = OnceLock::new();

const LIMIT: usize = 65536;

fn limited() -> &'static ServerProc {
    shared_server(
        &LIMITED,
        "echo",
        &["--no-www", "--max-message-size", "65536"],
    )
}

fn default() -> &'static ServerProc {
    shared_server(&DEFAULT, "echo", &["--no-www"])
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn close_normally(s: &mut TcpStream) {
    send(s, &close_frame(Some(1000), b""));
    expect_close(s, Some(1000));
}

#[test]
fn message_at_the_limit_is_echoed() {
    let mut s = raw_ws(limited().addr);
    let p = pattern(LIMIT);
    send(&mut s, &binary_frame(&p));
    expect_message(&mut s, OP_BINARY, &p);
    let t = vec![b'x'; LIMIT];
    send(&mut s, &text_frame(&t));
    expect_message(&mut s, OP_TEXT, &t);
    close_normally(&mut s);
}

#[test]
fn one_byte_over_the_limit_fails_with_1009() {
    send_expect_close(
        limited().addr,
        &binary_frame(&pattern(LIMIT + 1)),
        Some(1009),
    );
    send_expect_close(
        limited().addr,
        &text_frame(&vec![b'x'; LIMIT + 1]),
        Some(1009),
    );
}

#[test]
fn too_big_is_decided_from_the_header_alone() {
    // Only the header of a 65537-byte frame: the server must not wait for the payload.
    let mut h = Vec::new();
    push_header(
        &mut h,
        FIN | OP_BINARY,
        LIMIT as u64 + 1,
        LenForm::Minimal,
        Some(next_mask()),
    );
    send_expect_close(limited().addr, &h, Some(1009));
}

#[test]
fn fragmented_message_at_the_limit_is_echoed() {
    let p = pattern(LIMIT);
    let chunks: Vec<&[u8]> = p.chunks(1000).collect();
    let mut s = raw_ws(limited().addr);
    send(&mut s, &fragments(OP_BINARY, &chunks));
    expect_message(&mut s, OP_BINARY, &p);
    close_normally(&mut s);
}

#[test]
fn fragmented_message_over_the_limit_fails_at_the_crossing_fragment() {
    // 40000 + 30000 bytes: the second fragment crosses the limit. The message is never
    // finished, and no later fragment is sent: the 1009 must come anyway.
    let p = pattern(70000);
    let mut s = raw_ws(limited().addr);
    send(&mut s, &raw_frame(OP_BINARY, &p[..40000]));
    send(&mut s, &raw_frame(OP_CONT, &p[40000..]));
    expect_close(&mut s, Some(1009));
    // The crossing fragment final, by one byte, in small fragments.
    let mut s = raw_ws(limited().addr);
    let p = pattern(LIMIT + 1);
    let chunks: Vec<&[u8]> = p.chunks(4096).collect();
    let mut f = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { OP_BINARY } else { OP_CONT };
        let fin = if i + 1 == chunks.len() { FIN } else { 0 };
        f.extend(raw_frame(fin | op, c));
    }
    send(&mut s, &f);
    expect_close(&mut s, Some(1009));
    // Header of the crossing fragment only: decided from the declared length.
    let mut s = raw_ws(limited().addr);
    send(&mut s, &raw_frame(OP_TEXT, &vec![b'a'; 60000]));
    let mut h = Vec::new();
    push_header(&mut h, OP_CONT, 6000, LenForm::Minimal, Some(next_mask()));
    send(&mut s, &h);
    expect_close(&mut s, Some(1009));
}

#[test]
fn huge_declared_lengths_fail_with_1009_immediately() {
    for declared in [1u64 << 32, 1 << 40, (1 << 63) - 1] {
        for server in [limited(), default()] {
            let mut h = Vec::new();
            push_header(
                &mut h,
                FIN | OP_BINARY,
                declared,
                LenForm::Ext64,
                Some(next_mask()),
            );
            send_expect_close(server.addr, &h, Some(1009));
        }
    }
    // A huge continuation of a fragmented message.
    let mut f = raw_frame(OP_TEXT, b"start");
    push_header(
        &mut f,
        FIN | OP_CONT,
        1 << 40,
        LenForm::Ext64,
        Some(next_mask()),
    );
    send_expect_close(default().addr, &f, Some(1009));
    assert_alive(default().addr);
}

#[test]
fn length_with_the_most_significant_bit_set_fails_with_1002() {
    for declared in [1u64 << 63, u64::MAX, (1 << 63) | 5] {
        let mut h = Vec::new();
        push_header(
            &mut h,
            FIN | OP_BINARY,
            declared,
            LenForm::Ext64,
            Some(next_mask()),
        );
        send_expect_close(default().addr, &h, Some(1002));
    }
}

#[test]
fn control_frames_do_not_count_towards_the_message_limit() {
    // A message at the limit with pings between its fragments.
    let p = pattern(LIMIT);
    let mut f = Vec::new();
    for (i, c) in p.chunks(LIMIT / 4).enumerate() {
        let op = if i == 0 { OP_BINARY } else { OP_CONT };
        let fin = if i == 3 { FIN } else { 0 };
        f.extend(raw_frame(fin | op, c));
        if i < 3 {
            f.extend(raw_frame(FIN | OP_PING, &[0xAB; 125]));
        }
    }
    let mut s = raw_ws(limited().addr);
    send(&mut s, &f);
    for _ in 0..3 {
        expect_message(&mut s, OP_PONG, &[0xAB; 125]);
    }
    expect_message(&mut s, OP_BINARY, &p);
    close_normally(&mut s);
}

#[test]
fn limit_applies_per_message_not_per_connection() {
    let mut s = raw_ws(limited().addr);
    let p = pattern(LIMIT);
    let mut all = Vec::new();
    for _ in 0..8 {
        all.extend(binary_frame(&p));
    }
    let w = send_in_background(&s, all);
    for _ in 0..8 {
        expect_message(&mut s, OP_BINARY, &p);
    }
    w.join().unwrap();
    close_normally(&mut s);
}

#[test]
fn one_mib_in_1000_fragments_is_echoed_intact() {
    let p = pattern(1 << 20);
    let chunks: Vec<&[u8]> = p.chunks((1usize << 20).div_ceil(1000)).collect();
    assert_eq!(chunks.len(), 1000);
    let mut s = raw_ws(default().addr);
    let w = send_in_background(&s, fragments(OP_BINARY, &chunks));
    expect_message(&mut s, OP_BINARY, &p);
    w.join().unwrap();
    // And text (every fragment boundary lands inside a 2-byte sequence half the time).
    let t = "é".repeat(1 << 19).into_bytes();
    let chunks: Vec<&[u8]> = t.chunks(1001).collect();
    let w = send_in_background(&s, fragments(OP_TEXT, &chunks));
    expect_message(&mut s, OP_TEXT, &t);
    w.join().unwrap();
    close_normally(&mut s);
}

#[test]
fn four_mib_message_is_echoed() {
    // Autobahn 9.1.x/9.2.x, bounded: one 4 MiB frame, more than the backpressure limit.
    let p = pattern(4 << 20);
    let mut s = raw_ws(default().addr);
    let w = send_in_background(&s, binary_frame(&p));
    expect_message(&mut s, OP_BINARY, &p);
    w.join().unwrap();
    close_normally(&mut s);
}

#[test]
fn default_limit_is_16_mib_inclusive() {
    // Autobahn 9.1.6/9.2.6 send 16 MiB messages: exactly at the default limit.
    let p = pattern(16 << 20);
    let mut s = raw_ws(default().addr);
    let w = send_in_background(&s, binary_frame(&p));
    expect_message(&mut s, OP_BINARY, &p);
    w.join().unwrap();
    close_normally(&mut s);
    let mut h = Vec::new();
    push_header(
        &mut h,
        FIN | OP_BINARY,
        (16 << 20) + 1,
        LenForm::Minimal,
        Some(next_mask()),
    );
    send_expect_close(default().addr, &h, Some(1009));
}

#[test]
fn ten_thousand_small_frames_pipelined_are_echoed_in_order() {
    let n = 10_000;
    let mut all = Vec::with_capacity(n * 20);
    for i in 0..n {
        all.extend(text_frame(format!("{i}").as_bytes()));
    }
    all.extend(close_frame(Some(1000), b"done"));
    let mut s = raw_ws(default().addr);
    let w = send_in_background(&s, all);
    for i in 0..n {
        expect_message(&mut s, OP_TEXT, format!("{i}").as_bytes());
    }
    expect_close(&mut s, Some(1000));
    w.join().unwrap();
}
