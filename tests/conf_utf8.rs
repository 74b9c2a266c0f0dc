//! RFC 6455 §5.6 / §8.1 UTF-8 in text messages and close reasons (Autobahn section 6,
//! the Markus Kuhn stress-test set): valid text echoed whole and fragmented at every
//! byte; invalid text failed with 1007, at the fragment that makes it invalid.

mod common;

use common::*;
use std::sync::OnceLock;

static SERVER: OnceLock<ServerProc> = OnceLock::new();

fn server() -> &'static ServerProc {
    shared_server(&SERVER, "echo", &["--no-www"])
}

/// Valid UTF-8 (Autobahn 6.1, 6.2, 6.5-6.7, 6.9, 6.11, 6.22, 6.23).
const VALID: &[&[u8]] = &[
    b"",
    "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", // κόσμε
    // First possible sequence of each length: U+0000, U+0080, U+0800, U+10000.
    b"\x00",
    b"\xc2\x80",
    b"\xe0\xa0\x80",
    b"\xf0\x90\x80\x80",
    // Last possible sequence of each length: U+007F, U+07FF, U+FFFF, U+10FFFF.
    b"\x7f",
    b"\xdf\xbf",
    b"\xef\xbf\xbf",
    b"\xf4\x8f\xbf\xbf",
    // Other boundaries: U+D7FF, U+E000, U+FFFD, U+10FFFF.
    b"\xed\x9f\xbf",
    b"\xee\x80\x80",
    b"\xef\xbf\xbd",
    // Non-characters are valid UTF-8: U+FFFE, U+1FFFE, U+1FFFF, U+10FFFE, U+FDD0, U+FDEF.
    b"\xef\xbf\xbe",
    b"\xf0\x9f\xbf\xbe",
    b"\xf0\x9f\xbf\xbf",
    b"\xf4\x8f\xbf\xbe",
    b"\xef\xb7\x90",
    b"\xef\xb7\xaf",
    // BOM, replacement character, and a mix of everything.
    b"\xef\xbb\xbf",
    "\u{feff}\u{fffd} a\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}€😀".as_bytes(),
];

/// Invalid UTF-8 (Autobahn 6.3, 6.8, 6.10, 6.11.5, 6.12-6.21, and then some).
fn invalid() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "6.3 κόσμε + surrogate",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited".to_vec(),
        ),
        ("5-byte first", b"\xf8\x88\x80\x80\x80".to_vec()),
        ("6-byte first", b"\xfc\x84\x80\x80\x80\x80".to_vec()),
        ("U+1FFFFF", b"\xf7\xbf\xbf\xbf".to_vec()),
        ("5-byte last", b"\xfb\xbf\xbf\xbf\xbf".to_vec()),
        ("6-byte last", b"\xfd\xbf\xbf\xbf\xbf\xbf".to_vec()),
        ("U+110000", b"\xf4\x90\x80\x80".to_vec()),
        ("above U+10FFFF after text", b"ok \xf4\x90\x80\x80 ok".to_vec()),
        // Lone continuation bytes.
        ("lone 0x80", b"\x80".to_vec()),
        ("lone 0xbf", b"\xbf".to_vec()),
        ("continuations 80 bf", b"\x80\xbf".to_vec()),
        ("continuations 80 bf 80", b"\x80\xbf\x80".to_vec()),
        ("continuation after text", b"abc\x80".to_vec()),
        ("all 64 continuation bytes", (0x80..=0xbf).collect()),
        // Lonely start bytes followed by a space.
        (
            "lonely 2-byte starts",
            (0xc0..=0xdf).flat_map(|b| [b, b' ']).collect(),
        ),
        (
            "lonely 3-byte starts",
            (0xe0..=0xef).flat_map(|b| [b, b' ']).collect(),
        ),
        (
            "lonely 4-byte starts",
            (0xf0..=0xf7).flat_map(|b| [b, b' ']).collect(),
        ),
        ("lonely 5/6-byte starts", b"\xf8 \xf9 \xfa \xfb \xfc \xfd ".to_vec()),
        // Sequences with the last continuation byte missing, at the end of the message.
        ("truncated C0", b"\xc0".to_vec()),
        ("truncated E0 80", b"\xe0\x80".to_vec()),
        ("truncated F0 80 80", b"\xf0\x80\x80".to_vec()),
        ("truncated DF", b"\xdf".to_vec()),
        ("truncated EF BF", b"\xef\xbf".to_vec()),
        ("truncated F7 BF BF", b"\xf7\xbf\xbf".to_vec()),
        ("truncated valid C2", b"abc\xc2".to_vec()),
        ("truncated valid E2 82 (euro)", b"price \xe2\x82".to_vec()),
        ("truncated valid F0 9F 98 (emoji)", b"smile \xf0\x9f\x98".to_vec()),
        ("truncated valid F4 8F BF", b"\xf4\x8f\xbf".to_vec()),
        (
            "6.15 concatenated incomplete",
            b"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf".to_vec(),
        ),
        // Impossible bytes.
        ("FE", b"\xfe".to_vec()),
        ("FF", b"\xff".to_vec()),
        ("FE FE FF FF", b"\xfe\xfe\xff\xff".to_vec()),
        // Overlong forms of '/'.
        ("overlong C0 AF", b"\xc0\xaf".to_vec()),
        ("overlong E0 80 AF", b"\xe0\x80\xaf".to_vec()),
        ("overlong F0 80 80 AF", b"\xf0\x80\x80\xaf".to_vec()),
        ("overlong F8 80 80 80 AF", b"\xf8\x80\x80\x80\xaf".to_vec()),
        ("overlong FC 80 80 80 80 AF", b"\xfc\x80\x80\x80\x80\xaf".to_vec()),
        // Maximum overlong sequences.
        ("overlong C1 BF", b"\xc1\xbf".to_vec()),
        ("overlong E0 9F BF", b"\xe0\x9f\xbf".to_vec()),
        ("overlong F0 8F BF BF", b"\xf0\x8f\xbf\xbf".to_vec()),
        // Overlong NUL.
        ("overlong NUL C0 80", b"\xc0\x80".to_vec()),
        ("overlong NUL E0 80 80", b"\xe0\x80\x80".to_vec()),
        ("overlong NUL F0 80 80 80", b"\xf0\x80\x80\x80".to_vec()),
        // Single UTF-16 surrogates.
        ("surrogate D800", b"\xed\xa0\x80".to_vec()),
        ("surrogate DB7F", b"\xed\xad\xbf".to_vec()),
        ("surrogate DB80", b"\xed\xae\x80".to_vec()),
        ("surrogate DBFF", b"\xed\xaf\xbf".to_vec()),
        ("surrogate DC00", b"\xed\xb0\x80".to_vec()),
        ("surrogate DF80", b"\xed\xbe\x80".to_vec()),
        ("surrogate DFFF", b"\xed\xbf\xbf".to_vec()),
        // Paired surrogates (CESU-8).
        ("pair D800 DC00", b"\xed\xa0\x80\xed\xb0\x80".to_vec()),
        ("pair D800 DFFF", b"\xed\xa0\x80\xed\xbf\xbf".to_vec()),
        ("pair DB7F DC00", b"\xed\xad\xbf\xed\xb0\x80".to_vec()),
        ("pair DBFF DFFF", b"\xed\xaf\xbf\xed\xbf\xbf".to_vec()),
        ("surrogate after valid text", "κόσμε".bytes().chain(*b"\xed\xbf\xbf").collect()),
    ];
    // Every lead byte above F4 (code points above U+10FFFF or no code point at all).
    for lead in 0xf5..=0xff_u8 {
        v.push(("lead F5..FF", vec![lead, 0x80, 0x80, 0x80]));
    }
    v
}

/// The shortest prefix after which no continuation can make the text valid: where a
/// fail-fast validator must stop. `None`: only the end of the message makes it invalid.
fn fail_point(bytes: &[u8]) -> Option<usize> {
    (1..=bytes.len())
        .find(|&k| std::str::from_utf8(&bytes[..k]).is_err_and(|e| e.error_len().is_some()))
}

fn close_normally(s: &mut std::net::TcpStream) {
    send(s, &close_frame(Some(1000), b""));
    expect_close(s, Some(1000));
}

#[test]
fn the_case_tables_are_what_they_claim() {
    for v in VALID {
        assert!(std::str::from_utf8(v).is_ok(), "{v:?}");
    }
    for (name, bytes) in invalid() {
        assert!(std::str::from_utf8(&bytes).is_err(), "{name}");
    }
}

#[test]
fn valid_text_is_echoed_in_one_frame() {
    let mut s = raw_ws(server().addr);
    for v in VALID {
        send(&mut s, &text_frame(v));
        expect_message(&mut s, OP_TEXT, v);
    }
    close_normally(&mut s);
}

#[test]
fn valid_text_is_echoed_when_fragmented_at_every_byte() {
    // Every multi-byte sequence is cut by fragment boundaries at every position.
    let mut s = raw_ws(server().addr);
    for v in VALID.iter().filter(|v| !v.is_empty()) {
        let chunks: Vec<&[u8]> = v.chunks(1).collect();
        send(&mut s, &fragments(OP_TEXT, &chunks));
        expect_message(&mut s, OP_TEXT, v);
        // Two fragments, split at every point.
        for split in 0..=v.len() {
            send(&mut s, &fragments(OP_TEXT, &[&v[..split], &v[split..]]));
            expect_message(&mut s, OP_TEXT, v);
        }
    }
    close_normally(&mut s);
}

#[test]
fn invalid_text_in_one_frame_fails_with_1007() {
    for (name, bytes) in invalid() {
        let mut s = raw_ws(server().addr);
        send(&mut s, &text_frame(&bytes));
        let code = read_close(&mut s);
        assert_eq!(code, Some(1007), "case {name}: {bytes:x?}");
        expect_eof(&mut s);
    }
}

#[test]
fn invalid_text_fails_at_the_fragment_that_breaks_it() {
    // One byte per fragment, sent only up to the byte that makes the text invalid and
    // never finished: the 1007 must come without the rest of the message. Truncated
    // sequences are only invalid at the end, so those get their final (empty) fragment.
    for (name, bytes) in invalid() {
        let mut s = raw_ws(server().addr);
        let (upto, finish) = match fail_point(&bytes) {
            Some(k) => (k, false),
            None => (bytes.len(), true),
        };
        let mut f = Vec::new();
        for (i, b) in bytes[..upto].iter().enumerate() {
            let op = if i == 0 { OP_TEXT } else { OP_CONT };
            f.extend(raw_frame(op, std::slice::from_ref(b)));
        }
        if finish {
            f.extend(raw_frame(FIN | OP_CONT, b""));
        }
        send(&mut s, &f);
        let code = read_close(&mut s);
        assert_eq!(
            code,
            Some(1007),
            "case {name}: {bytes:x?} (sent {upto} bytes)"
        );
        expect_eof(&mut s);
    }
}

#[test]
fn invalid_middle_fragment_fails_before_the_final_fragment() {
    // Autobahn 6.4.1/6.4.2: valid first fragment, invalid second, final never sent.
    let cases: &[(&[u8], &[u8])] = &[
        ("κόσμε".as_bytes(), b"\xce\xba\xed\xa0\x80"), // surrogate
        ("κόσμε".as_bytes(), b"\xf4\x90\x80\x80"),     // above U+10FFFF
        (b"hello", b"\xc0\xaf"),                       // overlong
        (b"hello", b"\xff"),                           // impossible byte
        (b"hello", b"\x80"),                           // lone continuation
    ];
    for (first, bad) in cases {
        let mut s = raw_ws(server().addr);
        send(&mut s, &raw_frame(OP_TEXT, first));
        send(&mut s, &raw_frame(OP_CONT, bad));
        // Deliberately no final fragment.
        let code = read_close(&mut s);
        assert_eq!(code, Some(1007), "{first:x?} + {bad:x?}");
        expect_eof(&mut s);
    }
}

#[test]
fn invalid_sequence_split_across_fragments_fails_before_the_end() {
    // The lead byte ends fragment 1, the impossible continuation starts fragment 2.
    let cases: &[(&[u8], &[u8])] = &[
        (b"\xce\xba\xf4", b"\x90\x80\x80"), // F4 90: above U+10FFFF
        (b"ab\xed", b"\xa0\x80"),           // ED A0: surrogate
        (b"ab\xe0", b"\x80\xaf"),           // E0 80: overlong
        (b"ab\xf0\x90", b"\x80\x20"),       // 4-byte sequence cut short by a space
        (b"ab\xc2", b"a"),                  // 2-byte lead followed by ASCII
    ];
    for (first, second) in cases {
        let mut s = raw_ws(server().addr);
        send(&mut s, &raw_frame(OP_TEXT, first));
        send(&mut s, &raw_frame(OP_CONT, second));
        let code = read_close(&mut s);
        assert_eq!(code, Some(1007), "{first:x?} | {second:x?}");
        expect_eof(&mut s);
    }
}

#[test]
fn sequence_unfinished_at_the_final_fragment_fails_with_1007() {
    let mut s = raw_ws(server().addr);
    send(&mut s, &fragments(OP_TEXT, &[b"abc", b"\xe2\x82"]));
    expect_close(&mut s, Some(1007));
    // The final fragment empty, the sequence cut in the one before.
    let mut s = raw_ws(server().addr);
    send(&mut s, &fragments(OP_TEXT, &[b"\xf0\x9f", b"\x98", b""]));
    expect_close(&mut s, Some(1007));
}

#[test]
fn invalid_text_after_valid_messages_fails_after_their_echoes() {
    let mut s = raw_ws(server().addr);
    let mut f = text_frame("κόσμε".as_bytes());
    f.extend(binary_frame(b"\xff\xfe binary is not checked"));
    f.extend(text_frame(b"\xed\xa0\x80"));
    f.extend(text_frame(b"never echoed"));
    send(&mut s, &f);
    expect_message(&mut s, OP_TEXT, "κόσμε".as_bytes());
    expect_message(&mut s, OP_BINARY, b"\xff\xfe binary is not checked");
    expect_close(&mut s, Some(1007));
}

#[test]
fn invalid_text_inside_one_frame_fails_before_the_frame_completes() {
    // Autobahn 6.4.3/6.4.4: one text frame, its payload written in three chunks; the
    // invalid bytes are in the second. The 1007 must come before the third is sent.
    let p1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"; // κόσμε
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (p1, b"\xf4\x90\x80\x80", b"edited"), // 6.4.3
        (
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
            b"\x90",
            b"\x80\x80edited",
        ), // 6.4.4
        (b"hello ", b"\xed\xa0", b"\x80 world"),
        (b"", b"\xc0", b"\xaf"),
    ];
    for (a, b, c) in cases {
        let payload: Vec<u8> = [*a, *b, *c].concat();
        let f = text_frame(&payload);
        let header = f.len() - payload.len();
        let mut s = raw_ws(server().addr);
        send(&mut s, &f[..header + a.len()]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        send(&mut s, &f[header + a.len()..header + a.len() + b.len()]);
        // The rest of the frame is never sent.
        let code = read_close(&mut s);
        assert_eq!(code, Some(1007), "{a:x?} | {b:x?}");
        expect_eof(&mut s);
    }
}

#[test]
fn valid_text_frame_written_in_pieces_is_echoed() {
    // A single text frame, its payload arriving in pieces that cut UTF-8 sequences.
    let text = "κόσμε €😀 ascii \u{10ffff}\u{800}".repeat(8);
    let f = text_frame(text.as_bytes());
    let mut s = raw_ws(server().addr);
    for piece in [1usize, 2, 3, 5, 7, 13] {
        for c in f.chunks(piece) {
            send(&mut s, c);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        expect_message(&mut s, OP_TEXT, text.as_bytes());
    }
    close_normally(&mut s);
}

#[test]
fn close_reason_must_be_utf8() {
    // Autobahn 7.5.1.
    for reason in [
        &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
        b"\xff",
        b"\xc0\xaf",
        b"trunc\xe2\x82",
    ] {
        send_expect_close(server().addr, &close_frame(Some(1000), reason), Some(1007));
    }
    // A valid multi-byte reason is fine.
    let mut s = raw_ws(server().addr);
    send(&mut s, &close_frame(Some(1000), "κόσμε 😀".as_bytes()));
    expect_close(&mut s, Some(1000));
}

#[test]
fn binary_messages_are_not_utf8_checked() {
    let mut s = raw_ws(server().addr);
    for (_, bytes) in invalid().iter().take(20) {
        send(&mut s, &binary_frame(bytes));
        expect_message(&mut s, OP_BINARY, bytes);
    }
    close_normally(&mut s);
}
