//! RFC 6455 §5.2 framing, byte by byte (Autobahn sections 1, 9 and 10 in a bounded form):
//! every payload length form in both directions, non-minimal lengths, frames split across
//! reads at every byte, and pipelining.

mod common;

use common::*;
use std::sync::OnceLock;
use std::time::Duration;

static SERVER: OnceLock<ServerProc> = OnceLock::new();

fn server() -> &'static ServerProc {
    shared_server(&SERVER, "echo", &["--no-www"])
}

/// Deterministic non-trivial bytes (so a masking or offset bug cannot hide).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

/// ASCII text of `len` bytes.
fn text(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

const LENGTHS: &[usize] = &[0, 1, 125, 126, 127, 128, 65535, 65536, 65537, 1 << 20];

fn close_normally(s: &mut std::net::TcpStream) {
    send(s, &close_frame(Some(1000), b""));
    expect_close(s, Some(1000));
}

#[test]
fn text_echo_at_every_length_boundary() {
    let mut s = raw_ws(server().addr);
    for &len in LENGTHS {
        let p = text(len);
        let w = send_in_background(&s, text_frame(&p));
        expect_message(&mut s, OP_TEXT, &p);
        w.join().unwrap();
    }
    close_normally(&mut s);
}

#[test]
fn binary_echo_at_every_length_boundary() {
    let mut s = raw_ws(server().addr);
    for &len in LENGTHS {
        let p = pattern(len, len as u8);
        let w = send_in_background(&s, binary_frame(&p));
        expect_message(&mut s, OP_BINARY, &p);
        w.join().unwrap();
    }
    close_normally(&mut s);
}

#[test]
fn server_uses_the_minimal_length_form() {
    // expect_message asserts the header length; check the three forms explicitly too.
    let mut s = raw_ws(server().addr);
    for (len, header) in [(125usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
        send(&mut s, &binary_frame(&pattern(len, 7)));
        let f = read_wire_frame(&mut s);
        assert_eq!((f.payload.len(), f.header_len), (len, header));
    }
    close_normally(&mut s);
}

#[test]
fn all_three_client_length_forms_are_accepted() {
    let mut s = raw_ws(server().addr);
    // Each length in its (minimal) form: 7-bit, 16-bit, 64-bit.
    for (len, form) in [
        (125, LenForm::Short),
        (126, LenForm::Ext16),
        (65535, LenForm::Ext16),
        (65536, LenForm::Ext64),
    ] {
        let p = pattern(len, 3);
        send(&mut s, &raw_frame_form(FIN | OP_BINARY, &p, form));
        expect_message(&mut s, OP_BINARY, &p);
    }
    close_normally(&mut s);
}

#[test]
fn non_minimal_length_forms_do_not_break_the_server() {
    // RFC 6455 §5.2 says the minimal form MUST be used; Autobahn does not test it. The
    // server may accept (echo) or refuse (1002); either way it must stay well.
    for (len, form) in [
        (5usize, LenForm::Ext16),
        (5, LenForm::Ext64),
        (0, LenForm::Ext64),
        (300, LenForm::Ext64),
    ] {
        let mut s = raw_ws(server().addr);
        let p = text(len);
        send(&mut s, &raw_frame_form(FIN | OP_TEXT, &p, form));
        let f = read_wire_frame(&mut s);
        match f.opcode {
            OP_TEXT => {
                assert_eq!(f.payload, p);
                close_normally(&mut s);
            }
            OP_CLOSE => {
                assert_eq!(f.payload.get(..2), Some(&1002u16.to_be_bytes()[..]));
                expect_eof(&mut s);
            }
            _ => panic!("unexpected reply {:?}", Abbrev(&f)),
        }
    }
    assert_alive(server().addr);
}

#[test]
fn messages_sent_byte_by_byte_parse_like_whole_ones() {
    let mut s = raw_ws(server().addr);
    let pause = Duration::from_millis(1);
    // Short, 16-bit and fragmented (with a ping in between) messages, one byte per write.
    let small = "héllo wörld".as_bytes();
    send_bytewise(&mut s, &text_frame(small), pause);
    expect_message(&mut s, OP_TEXT, small);
    let mid = pattern(130, 9);
    send_bytewise(&mut s, &binary_frame(&mid), Duration::ZERO);
    expect_message(&mut s, OP_BINARY, &mid);
    let mut stream = raw_frame(OP_TEXT, b"frag");
    stream.extend(raw_frame(FIN | OP_PING, b"p"));
    stream.extend(raw_frame(FIN | OP_CONT, b"ment"));
    send_bytewise(&mut s, &stream, pause);
    expect_message(&mut s, OP_PONG, b"p");
    expect_message(&mut s, OP_TEXT, b"fragment");
    // The close itself byte by byte too.
    send_bytewise(&mut s, &close_frame(Some(1000), b"bye"), pause);
    expect_close(&mut s, Some(1000));
}

#[test]
fn a_two_frame_stream_split_at_every_byte_parses_the_same() {
    // A 16-bit-length binary frame and a short text frame; split in two writes at every
    // point, on one connection (state must carry across reads every time).
    let bin = pattern(130, 1);
    let txt = "κόσμε".as_bytes();
    let mut stream = binary_frame(&bin);
    stream.extend(text_frame(txt));
    let mut s = raw_ws(server().addr);
    for split in 0..=stream.len() {
        send(&mut s, &stream[..split]);
        std::thread::sleep(Duration::from_millis(2));
        send(&mut s, &stream[split..]);
        expect_message(&mut s, OP_BINARY, &bin);
        expect_message(&mut s, OP_TEXT, txt);
    }
    // A 16-bit-length text frame whose payload arrives in two pieces at every point
    // (text is unmasked and validated as it arrives).
    let long = "κόσμε €😀 ".repeat(8).into_bytes();
    assert!(long.len() > 125);
    let stream = text_frame(&long);
    for split in 0..=stream.len() {
        send(&mut s, &stream[..split]);
        std::thread::sleep(Duration::from_millis(1));
        send(&mut s, &stream[split..]);
        expect_message(&mut s, OP_TEXT, &long);
    }
    // And a fragmented text message with a UTF-8 sequence cut by the fragment boundary.
    let mut stream = raw_frame(OP_TEXT, &txt[..3]);
    stream.extend(raw_frame(FIN | OP_CONT, &txt[3..]));
    for split in 0..=stream.len() {
        send(&mut s, &stream[..split]);
        std::thread::sleep(Duration::from_millis(2));
        send(&mut s, &stream[split..]);
        expect_message(&mut s, OP_TEXT, txt);
    }
    close_normally(&mut s);
}

#[test]
fn a_frame_header_split_at_every_byte_with_64_bit_length() {
    // The 14-byte header of a 64-bit-length frame, then its payload, byte by byte.
    let p = pattern(70_000, 5);
    let f = binary_frame(&p);
    let mut s = raw_ws(server().addr);
    send_bytewise(&mut s, &f[..14], Duration::from_millis(1));
    send(&mut s, &f[14..]);
    expect_message(&mut s, OP_BINARY, &p);
    close_normally(&mut s);
}

#[test]
fn many_messages_pipelined_in_one_write_are_echoed_in_order() {
    let mut s = raw_ws(server().addr);
    let mut all = Vec::new();
    let msgs: Vec<Vec<u8>> = (0..500)
        .map(|i| format!("message {i} {}", "x".repeat(i % 200)).into_bytes())
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        all.extend(if i % 2 == 0 {
            text_frame(m)
        } else {
            binary_frame(m)
        });
    }
    all.extend(close_frame(Some(1000), b""));
    let w = send_in_background(&s, all);
    for (i, m) in msgs.iter().enumerate() {
        expect_message(&mut s, if i % 2 == 0 { OP_TEXT } else { OP_BINARY }, m);
    }
    expect_close(&mut s, Some(1000));
    w.join().unwrap();
}

#[test]
fn large_message_auto_fragmented_in_1300_byte_frames() {
    // Autobahn 10.1.1: 65536 bytes in frames of 1300.
    let p = text(65536);
    let chunks: Vec<&[u8]> = p.chunks(1300).collect();
    let mut s = raw_ws(server().addr);
    send(&mut s, &fragments(OP_TEXT, &chunks));
    expect_message(&mut s, OP_TEXT, &p);
    close_normally(&mut s);
}

#[test]
fn large_message_written_in_small_chunks() {
    // Autobahn 1.1.8 / 1.2.8: a 64 KiB frame written 997 bytes at a time.
    let p = pattern(65536, 2);
    let f = binary_frame(&p);
    let mut s = raw_ws(server().addr);
    for c in f.chunks(997) {
        send(&mut s, c);
    }
    expect_message(&mut s, OP_BINARY, &p);
    close_normally(&mut s);
}

#[test]
fn unmasked_client_frame_is_a_protocol_error() {
    // §5.1: a server MUST close on an unmasked frame.
    let mut f = Vec::new();
    push_header(&mut f, FIN | OP_TEXT, 5, LenForm::Minimal, None);
    f.extend_from_slice(b"hello");
    send_expect_close(server().addr, &f, Some(1002));
    // Also after a valid message: the echo comes first.
    let mut s = raw_ws(server().addr);
    let mut both = text_frame(b"ok");
    both.extend(&f);
    send(&mut s, &both);
    expect_message(&mut s, OP_TEXT, b"ok");
    expect_close(&mut s, Some(1002));
}

#[test]
fn all_zero_mask_and_empty_payload_work() {
    let mut s = raw_ws(server().addr);
    let mut f = Vec::new();
    push_header(&mut f, FIN | OP_TEXT, 3, LenForm::Minimal, Some([0; 4]));
    f.extend_from_slice(b"abc");
    send(&mut s, &f);
    expect_message(&mut s, OP_TEXT, b"abc");
    send(&mut s, &binary_frame(b""));
    expect_message(&mut s, OP_BINARY, b"");
    close_normally(&mut s);
}
