//! Property tests for the sans-IO protocol core (`wsloop::protocol`).
//!
//! Case counts are set per test so the whole file stays well under 30 s in a debug build on
//! a busy 2-core machine. Payload bytes come from a seeded generator rather than from a
//! proptest `Vec<u8>` strategy so that 70 000-byte payloads stay cheap; lengths and seeds
//! still shrink.

#[path = "common/fuzz_checks.rs"]
mod fuzz_checks;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use fuzz_checks::{check_decoder_with, check_handshake_with, run_decoder, End, Event};
use proptest::prelude::*;
use proptest::sample::Index;
use wsloop::protocol::close::{self, CloseFrame};
use wsloop::protocol::decoder::{Decoded, Decoder, Role};
use wsloop::protocol::error::ProtocolError;
use wsloop::protocol::frame::{
    encode_header, server_header_len, write_client_frame, write_server_frame, FrameHeader,
    HeaderParse, OpCode, MAX_HEADER_LEN,
};
use wsloop::protocol::handshake;
use wsloop::protocol::mask::apply_mask_bytewise;
use wsloop::protocol::utf8::{self, Utf8Validator};

const BIG_MAX: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn seeded(seed: u64) -> u64 {
    seed | 1
}

/// `len` pseudo-random bytes.
fn bytes_from(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seeded(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&xorshift(&mut s).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Valid UTF-8 of exactly `len` bytes: ASCII, Greek, CJK and emoji mixed, padded with ASCII.
fn text_from(seed: u64, len: usize) -> String {
    const POOL: [char; 10] = ['a', 'Z', ' ', '0', 'é', 'κ', '中', '€', '😀', '\u{10FFFF}'];
    let mut s = seeded(seed);
    let mut out = String::with_capacity(len);
    while len - out.len() >= 4 {
        out.push(POOL[(xorshift(&mut s) % POOL.len() as u64) as usize]);
    }
    while out.len() < len {
        out.push('x');
    }
    out
}

/// Payload lengths, weighted towards the length-encoding boundaries.
fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..=300,
        2 => 120usize..=131,
        2 => 65_530usize..=65_541,
        1 => 301usize..=70_000,
    ]
}

fn control_len() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=125, 120usize..=125]
}

const VALID_CLOSE_CODES: [u16; 8] = [1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999];

/// A valid close payload: empty, or a code and a UTF-8 reason of at most 123 bytes.
fn close_payload(seed: u64, len: usize) -> Vec<u8> {
    if len < 2 {
        return Vec::new();
    }
    let code = VALID_CLOSE_CODES[(seed % VALID_CLOSE_CODES.len() as u64) as usize];
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(text_from(seed, len - 2).as_bytes());
    p
}

#[derive(Debug, Clone)]
struct FrameSpec {
    fin: bool,
    opcode: OpCode,
    payload: Vec<u8>,
}

/// A single frame that is valid on its own (text is whole UTF-8, close payloads are valid).
fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    let data = (
        prop::sample::select(vec![OpCode::Text, OpCode::Binary, OpCode::Continuation]),
        any::<bool>(),
        payload_len(),
        any::<u64>(),
    )
        .prop_map(|(opcode, fin, len, seed)| FrameSpec {
            fin,
            opcode,
            payload: if opcode == OpCode::Text {
                text_from(seed, len).into_bytes()
            } else {
                bytes_from(seed, len)
            },
        });
    let control = (
        prop::sample::select(vec![OpCode::Ping, OpCode::Pong, OpCode::Close]),
        control_len(),
        any::<u64>(),
    )
        .prop_map(|(opcode, len, seed)| FrameSpec {
            fin: true,
            opcode,
            payload: if opcode == OpCode::Close {
                close_payload(seed, len)
            } else {
                bytes_from(seed, len)
            },
        });
    prop_oneof![3 => data, 1 => control]
}

fn mask_key() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![any::<[u8; 4]>(), Just([0; 4]), Just([0xFF; 4])]
}

fn encode(role: Role, f: &FrameSpec, key: [u8; 4], out: &mut Vec<u8>) {
    match role {
        // A server decodes client frames: masked.
        Role::Server => write_client_frame(out, f.fin, f.opcode, &f.payload, key),
        Role::Client => write_server_frame(out, f.fin, f.opcode, &f.payload),
    }
}

// ---------------------------------------------------------------------------------------
// Reference model for message streams
// ---------------------------------------------------------------------------------------

/// Reassembles fragments and interleaves control frames in order: the events a decoder
/// must report for a valid frame sequence, without `Fragment` markers.
fn model_events(frames: &[FrameSpec]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut open: Option<(OpCode, Vec<u8>)> = None;
    for f in frames {
        match f.opcode {
            OpCode::Ping => out.push(Event::Ping(f.payload.clone())),
            OpCode::Pong => out.push(Event::Pong(f.payload.clone())),
            OpCode::Close => {
                let c = CloseFrame::parse(&f.payload).expect("generated close is valid");
                out.push(Event::Close(c.code, c.reason.to_owned()));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let (kind, mut data) = match f.opcode {
                    OpCode::Continuation => open.take().expect("generated stream is valid"),
                    op => (op, Vec::new()),
                };
                data.extend_from_slice(&f.payload);
                if !f.fin {
                    open = Some((kind, data));
                } else if kind == OpCode::Text {
                    out.push(Event::Text(
                        String::from_utf8(data).expect("generated text"),
                    ));
                } else {
                    out.push(Event::Binary(data));
                }
            }
        }
    }
    assert!(open.is_none(), "generated stream ends inside a message");
    out
}

#[derive(Debug, Clone)]
enum Item {
    /// One data message split at `cuts`, with control frames after some fragments.
    Message {
        text: bool,
        len: usize,
        seed: u64,
        cuts: Vec<Index>,
        controls: Vec<(Index, FrameSpec)>,
    },
    Control(FrameSpec),
}

fn control_frame() -> impl Strategy<Value = FrameSpec> {
    (
        prop::sample::select(vec![OpCode::Ping, OpCode::Pong, OpCode::Close]),
        control_len(),
        any::<u64>(),
    )
        .prop_map(|(opcode, len, seed)| FrameSpec {
            fin: true,
            opcode,
            payload: if opcode == OpCode::Close {
                close_payload(seed, len)
            } else {
                bytes_from(seed, len)
            },
        })
}

fn item(max_len: usize) -> impl Strategy<Value = Item> {
    let message = (
        any::<bool>(),
        prop_oneof![0..=max_len.min(40), 0..=max_len],
        any::<u64>(),
        prop::collection::vec(any::<Index>(), 0..6),
        prop::collection::vec((any::<Index>(), control_frame()), 0..3),
    )
        .prop_map(|(text, len, seed, cuts, controls)| Item::Message {
            text,
            len,
            seed,
            cuts,
            controls,
        });
    prop_oneof![3 => message, 1 => control_frame().prop_map(Item::Control)]
}

/// Lays the items out as frames: messages split at their cut points (text may be split
/// inside a character), controls inserted between fragments.
fn frames_of(items: &[Item]) -> Vec<FrameSpec> {
    let mut frames = Vec::new();
    for it in items {
        match it {
            Item::Control(f) => frames.push(f.clone()),
            Item::Message {
                text,
                len,
                seed,
                cuts,
                controls,
            } => {
                let payload = if *text {
                    text_from(*seed, *len).into_bytes()
                } else {
                    bytes_from(*seed, *len)
                };
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
                points.sort_unstable();
                points.push(*len);
                let mut pieces = Vec::new();
                let mut start = 0;
                for p in points {
                    pieces.push(&payload[start..p]);
                    start = p;
                }
                let k = pieces.len();
                for (i, piece) in pieces.into_iter().enumerate() {
                    let opcode = match (i, *text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    frames.push(FrameSpec {
                        fin: i + 1 == k,
                        opcode,
                        payload: piece.to_vec(),
                    });
                    if i + 1 < k {
                        for (slot, c) in controls {
                            if slot.index(k - 1) == i {
                                frames.push(c.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    frames
}

fn stream_of(role: Role, frames: &[FrameSpec], seed: u64) -> Vec<u8> {
    let mut s = seeded(seed);
    let mut out = Vec::new();
    for f in frames {
        let key = (xorshift(&mut s) as u32).to_le_bytes();
        encode(role, f, key, &mut out);
    }
    out
}

fn cut_points(cuts: &[Index], len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// `encode_header` → `FrameHeader::parse` for any header, including 63-bit lengths;
    /// every strict prefix is `Incomplete` with a consistent `need`.
    #[test]
    fn header_encode_parse_round_trip(
        data in any::<bool>(),
        opcode_i in 0usize..3,
        fin in any::<bool>(),
        len in prop_oneof![
            0u64..=300,
            65_530u64..=65_541,
            (1u64 << 32) - 2..=(1u64 << 32) + 1,
            0u64..(1 << 63),
            Just((1u64 << 63) - 1),
        ],
        control_len in 0u64..=125,
        mask in proptest::option::of(any::<[u8; 4]>()),
    ) {
        let (opcode, fin, len) = if data {
            ([OpCode::Continuation, OpCode::Text, OpCode::Binary][opcode_i], fin, len)
        } else {
            ([OpCode::Close, OpCode::Ping, OpCode::Pong][opcode_i], true, control_len)
        };
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, fin, opcode, len, mask);
        let base = match len {
            0..=125 => 2,
            126..=65_535 => 4,
            _ => 10,
        };
        prop_assert_eq!(n, base + if mask.is_some() { 4 } else { 0 });
        if mask.is_none() && len <= usize::MAX as u64 {
            prop_assert_eq!(server_header_len(len as usize), n);
        }
        let expected = FrameHeader { fin, rsv: 0, opcode, mask, payload_len: len, header_len: n };
        prop_assert_eq!(FrameHeader::parse(&h[..n]), Ok(HeaderParse::Complete(expected)));
        for cut in 0..n {
            match FrameHeader::parse(&h[..cut]) {
                Ok(HeaderParse::Incomplete { need }) => {
                    prop_assert!(need >= 1 && cut + need <= n);
                    if cut >= 2 {
                        prop_assert_eq!(cut + need, n);
                    }
                }
                other => prop_assert!(false, "prefix {} of {:?}: {:?}", cut, &h[..n], other),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any frame survives `write_client_frame`/`write_server_frame` → `FrameHeader::parse`
    /// → `Decoder` in the matching role with identical header fields and payload; the wrong
    /// role rejects it; a frame missing its last byte is `Incomplete { need: 1 }`.
    #[test]
    fn frame_round_trip_both_roles(f in frame_spec(), key in mask_key()) {
        for role in [Role::Server, Role::Client] {
            let mut wire = Vec::new();
            encode(role, &f, key, &mut wire);
            let h = match FrameHeader::parse(&wire) {
                Ok(HeaderParse::Complete(h)) => h,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            let mask = (role == Role::Server).then_some(key);
            prop_assert_eq!(
                (h.fin, h.rsv, h.opcode, h.mask, h.payload_len),
                (f.fin, 0, f.opcode, mask, f.payload.len() as u64)
            );
            prop_assert_eq!(wire.len(), h.header_len + f.payload.len());
            let mut body = wire[h.header_len..].to_vec();
            if let Some(k) = h.mask {
                apply_mask_bytewise(&mut body, k, 0);
            }
            prop_assert!(body == f.payload, "payload differs after unmasking");

            // Truncated by one byte: Incomplete, header untouched (a text payload may be
            // unmasked in place so far). A lone continuation is refused as soon as its
            // header is whole.
            let mut short = wire[..wire.len() - 1].to_vec();
            let before = short.clone();
            let mut dec = Decoder::new(role);
            let want = if f.opcode == OpCode::Continuation && short.len() >= h.header_len {
                Err(ProtocolError::UnexpectedContinuation)
            } else {
                Ok(Decoded::Incomplete { need: 1 })
            };
            prop_assert_eq!(dec.decode(&mut short, BIG_MAX), want);
            if f.opcode == OpCode::Text {
                let n = h.header_len.min(short.len());
                prop_assert!(short[..n] == before[..n]);
            } else {
                prop_assert!(short == before);
            }

            // The wrong role refuses it on masking alone.
            let other = if role == Role::Server { Role::Client } else { Role::Server };
            let mut copy = wire.clone();
            let mut dec = Decoder::new(other);
            let wrong = dec.decode(&mut copy, BIG_MAX);
            let want = if role == Role::Server {
                ProtocolError::MaskedFrame
            } else {
                ProtocolError::UnmaskedFrame
            };
            prop_assert_eq!(wrong, Err(want));

            // Through the decoder: a continuation gets an empty binary opener, a non-final
            // frame an empty final continuation, so the payload comes back as a message.
            let mut frames = Vec::new();
            if f.opcode == OpCode::Continuation {
                frames.push(FrameSpec { fin: false, opcode: OpCode::Binary, payload: vec![] });
            }
            frames.push(f.clone());
            if !f.fin {
                frames.push(FrameSpec { fin: true, opcode: OpCode::Continuation, payload: vec![] });
            }
            let mut stream = Vec::new();
            for fr in &frames {
                encode(role, fr, key, &mut stream);
            }
            let (events, end) = run_decoder(role, &stream, &[], BIG_MAX);
            prop_assert_eq!(end, End::NeedMore { pending: 0 });
            let messages: Vec<Event> =
                events.into_iter().filter(|e| *e != Event::Fragment).collect();
            prop_assert_eq!(messages, model_events(&frames));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Message streams
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random messages in random fragments with control frames interleaved, fed to the
    /// decoder in random pieces (unconsumed tail kept, next piece appended), give the
    /// reference model's message sequence in both roles; the byte-level reference decoder
    /// and the two-feed check agree too.
    #[test]
    fn fragmented_stream_matches_model(
        items in prop::collection::vec(item(3000), 1..8),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let frames = frames_of(&items);
        let expected = model_events(&frames);
        let fragments = frames.iter().filter(|f| !f.fin).count();
        for role in [Role::Server, Role::Client] {
            let stream = stream_of(role, &frames, seed);
            let points = cut_points(&cuts, stream.len());
            let (events, end) = run_decoder(role, &stream, &points, BIG_MAX);
            prop_assert_eq!(end, End::NeedMore { pending: 0 });
            prop_assert_eq!(events.iter().filter(|e| **e == Event::Fragment).count(), fragments);
            let messages: Vec<Event> =
                events.into_iter().filter(|e| *e != Event::Fragment).collect();
            prop_assert_eq!(&messages, &expected);
            check_decoder_with(&stream, &points, BIG_MAX);
        }
    }

    /// The same streams against a small `max_message`: the first message over the limit
    /// fails with 1009 before its payload is buffered, and everything before it is
    /// delivered.
    #[test]
    fn max_message_enforced_on_streams(
        items in prop::collection::vec(item(600), 1..6),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        max in prop_oneof![Just(0usize), 1usize..=64, 100usize..=700],
    ) {
        let frames = frames_of(&items);
        for role in [Role::Server, Role::Client] {
            let stream = stream_of(role, &frames, seed);
            let points = cut_points(&cuts, stream.len());
            // Model: deliver until the first message whose size exceeds `max`.
            let mut model = Vec::new();
            let mut open_len = 0usize;
            let mut too_big = false;
            for f in &frames {
                if f.opcode.is_control() {
                    model.extend(model_events(std::slice::from_ref(f)));
                    continue;
                }
                if f.opcode != OpCode::Continuation {
                    open_len = 0;
                }
                open_len += f.payload.len();
                if open_len > max {
                    too_big = true;
                    break;
                }
                if f.fin {
                    // Re-run the model on this message's frames only.
                    let start = frames
                        .iter()
                        .position(|g| std::ptr::eq(g, f))
                        .unwrap();
                    let first = frames[..=start]
                        .iter()
                        .rposition(|g| g.opcode == OpCode::Text || g.opcode == OpCode::Binary)
                        .unwrap();
                    let data: Vec<FrameSpec> = frames[first..=start]
                        .iter()
                        .filter(|g| !g.opcode.is_control())
                        .cloned()
                        .collect();
                    model.extend(model_events(&data));
                }
            }
            let (events, end) = run_decoder(role, &stream, &points, max);
            let messages: Vec<Event> =
                events.into_iter().filter(|e| *e != Event::Fragment).collect();
            prop_assert_eq!(&messages, &model);
            if too_big {
                prop_assert_eq!(end, End::Error(1009));
            } else {
                prop_assert_eq!(end, End::NeedMore { pending: 0 });
            }
            check_decoder_with(&stream, &points, max);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Arbitrary bytes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Xor(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<Index>(),
            prop::sample::select(vec![0x80u8, 0x40, 0x20, 0x10, 0x0F, 0x7F, 0x01])
        )
            .prop_map(|(i, b)| Mutation::Xor(i, b)),
        (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if v.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(v.len());
                v[i] = *b;
            }
            Mutation::Xor(i, b) => {
                let i = i.index(v.len());
                v[i] ^= *b;
            }
            Mutation::Delete(i, n) => {
                let i = i.index(v.len());
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Mutation::Insert(i, bytes) => {
                let i = i.index(v.len() + 1);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::Truncate(i) => {
                let i = i.index(v.len() + 1);
                v.truncate(i);
            }
        }
    }
    v
}

/// Arbitrary bytes, and valid streams (either role's encoding) with a few mutations.
fn decoder_input() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop::collection::vec(item(200), 1..5),
        any::<u64>(),
        any::<bool>(),
        prop::collection::vec(mutation(), 0..4),
    )
        .prop_map(|(items, seed, server, muts)| {
            let role = if server { Role::Server } else { Role::Client };
            mutate(stream_of(role, &frames_of(&items), seed), &muts)
        });
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..600),
        3 => mutated,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Never panics; every call errors with 1002/1007/1009, asks for more without touching
    /// the buffer, or consumes exactly one whole frame; `buffered()` ≤ max(2·max_message, 8);
    /// fed whole or in pieces, both roles agree with the reference decoder.
    #[test]
    fn decoder_total_on_arbitrary_bytes(
        input in decoder_input(),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
        max in prop::sample::select(vec![0usize, 1, 7, 16, 125, 126, 1000, BIG_MAX]),
    ) {
        let points = cut_points(&cuts, input.len());
        check_decoder_with(&input, &points, max);
        // Byte at a time, the hardest split.
        if input.len() <= 200 {
            let all: Vec<usize> = (0..input.len()).collect();
            check_decoder_with(&input, &all, max);
        }
    }
}

// ---------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------

/// Byte strings that are valid UTF-8 except for a few damaged spots.
fn near_valid_utf8() -> impl Strategy<Value = Vec<u8>> {
    const INSERTS: [&[u8]; 12] = [
        b"\xed\xa0\x80",     // surrogate U+D800
        b"\xed\xbf\xbf",     // surrogate U+DFFF
        b"\xc0\xaf",         // overlong '/'
        b"\xe0\x80\xaf",     // overlong, 3 bytes
        b"\xf0\x80\x80\xaf", // overlong, 4 bytes
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xf8\x88\x80\x80\x80",
        b"\xff",
        b"\xef\xbf\xbf", // U+FFFF: valid
        b"\xf0\x9f\x98", // truncated emoji
        b"\xc2",         // lone lead
        b"\x80",         // lone continuation
    ];
    let damage = prop_oneof![
        (any::<Index>(), 0x80u8..=0xBF).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), 0xC0u8..=0xFF).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), 1usize..3).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), prop::sample::select(INSERTS.to_vec()))
            .prop_map(|(i, s)| Mutation::Insert(i, s.to_vec())),
        any::<Index>().prop_map(Mutation::Truncate),
    ];
    (
        prop_oneof![
            any::<String>(),
            (any::<u64>(), 0usize..200).prop_map(|(s, n)| text_from(s, n))
        ],
        prop::collection::vec(damage, 0..3),
    )
        .prop_map(|(s, muts)| mutate(s.into_bytes(), &muts))
}

/// The index of the first byte after which `bytes` can no longer be the prefix of valid
/// UTF-8, according to std.
fn first_impossible_byte(bytes: &[u8]) -> Option<usize> {
    let e = std::str::from_utf8(bytes).err()?;
    e.error_len()?;
    let start = e.valid_up_to();
    (start..bytes.len())
        .find(|&i| std::str::from_utf8(&bytes[start..=i]).is_err_and(|e| e.error_len().is_some()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// `utf8::validate` and `Utf8Validator` over any split agree with `std::str::from_utf8`;
    /// the incremental validator fails exactly at the chunk holding the first impossible
    /// byte (which is at most three bytes past where the bad sequence starts), never earlier,
    /// and a sequence cut off by the end fails only in `finish`.
    #[test]
    fn utf8_incremental_agrees_with_std(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            near_valid_utf8(),
        ],
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let std_ok = std::str::from_utf8(&bytes).is_ok();
        prop_assert_eq!(utf8::validate(&bytes).is_some(), std_ok);
        let bad = first_impossible_byte(&bytes);
        if let (Some(b), Err(e)) = (bad, std::str::from_utf8(&bytes)) {
            prop_assert!(b <= e.valid_up_to() + 3);
        }
        let points = cut_points(&cuts, bytes.len());
        let mut v = Utf8Validator::new();
        let mut start = 0;
        let mut failed_at = None;
        for &end in points.iter().chain(std::iter::once(&bytes.len())) {
            if v.feed(&bytes[start..end]).is_err() {
                failed_at = Some((start, end));
                break;
            }
            start = end;
        }
        match (bad, failed_at) {
            (Some(b), Some((s, e))) => {
                prop_assert!(s <= b && b < e, "bad byte {} but failed on chunk {}..{}", b, s, e);
            }
            (Some(b), None) => prop_assert!(false, "bad byte {} never rejected", b),
            (None, Some((s, e))) => prop_assert!(false, "rejected chunk {}..{} of a valid prefix", s, e),
            (None, None) => {
                prop_assert_eq!(v.is_complete(), std_ok);
                prop_assert_eq!(v.finish().is_ok(), std_ok);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

const BROWSER_REQUEST: &str = "GET /chat?room=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: superchat, chat\r\n\
\r\n";

fn random_case(s: &str, bits: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if bits >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A valid upgrade request with random header order, name case, optional whitespace,
/// line endings (CRLF, LF or mixed), extra headers and offered subprotocols; returns it with its expected key and protocol.
fn valid_request() -> impl Strategy<Value = (Vec<u8>, String, Option<usize>)> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        prop::sample::select(vec!["", " ", "  ", "\t", " \t"]),
        prop::sample::select(vec![
            "Upgrade",
            "upgrade",
            "keep-alive, Upgrade",
            "Upgrade,keep-alive",
        ]),
        prop::collection::vec(
            prop::sample::select(vec!["chat", "superchat", "other"]),
            0..4,
        ),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..6),
        any::<Index>(),
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
    )
        .prop_map(|(key, case_bits, ws, conn, offered, extra, rot, lf_bits)| {
            let key = BASE64.encode(key);
            let mut headers: Vec<(String, String)> = vec![
                ("Host".into(), "localhost:9001".into()),
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), conn.into()),
                ("Sec-WebSocket-Key".into(), key.clone()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ];
            if !offered.is_empty() {
                headers.push(("Sec-WebSocket-Protocol".into(), offered.join(", ")));
            }
            for (k, v) in extra {
                let lower = k.to_ascii_lowercase();
                if !lower.starts_with("sec-websocket")
                    && !["host", "upgrade", "connection"].contains(&lower.as_str())
                {
                    headers.push((k, v.trim().to_owned()));
                }
            }
            let r = rot.index(headers.len());
            headers.rotate_left(r);
            // CRLF, bare LF, or a mix of the two, line by line.
            let eol = |line: usize| {
                if lf_bits >> (line % 64) & 1 == 1 {
                    "\n"
                } else {
                    "\r\n"
                }
            };
            let mut req = format!("GET /ws HTTP/1.1{}", eol(0));
            for (i, (k, v)) in headers.iter().enumerate() {
                let name = random_case(k, case_bits.rotate_left(i as u32 * 7));
                req.push_str(&format!("{name}:{ws}{v}{ws}{}", eol(i + 1)));
            }
            req.push_str(eol(headers.len() + 1));
            let protocol = ["chat", "superchat"]
                .iter()
                .position(|p| offered.contains(p));
            (req.into_bytes(), key, protocol)
        })
}

fn handshake_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..400),
        3 => prop::collection::vec(mutation(), 1..5)
            .prop_map(|muts| mutate(BROWSER_REQUEST.as_bytes().to_vec(), &muts)),
        2 => (valid_request(), prop::collection::vec(mutation(), 0..3))
            .prop_map(|((req, _, _), muts)| mutate(req, &muts)),
    ]
}

fn sha1_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(sha.digest().bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// `find_head_end` (whole, byte at a time, in chunks) matches a reference scan and never
    /// reports a head over the limit; `parse_request` and `validate_upgrade` never panic and
    /// refuse only with 400/405/426/431.
    #[test]
    fn handshake_total_on_arbitrary_and_mutated_input(
        input in handshake_input(),
        chunk in 1usize..64,
        max_head in prop::sample::select(vec![16usize, 100, 1024, 8192]),
    ) {
        check_handshake_with(&input, chunk, max_head);
        fuzz_checks::check_head_matches_httparse(&input, max_head);
        // Straight to the parser too, whatever find_head_end would say.
        fuzz_checks::check_request(&input);
    }

    /// Valid requests in many shapes are accepted, with the RFC accept key and the server's
    /// preferred offered subprotocol.
    #[test]
    fn valid_requests_are_accepted((req, key, protocol) in valid_request(), chunk in 1usize..64) {
        check_handshake_with(&req, chunk, 8192);
        let end = fuzz_checks::head_end_incremental(&req, chunk, 8192);
        prop_assert_eq!(end, Ok(Some(req.len())));
        let parsed = wsloop::protocol::http1::parse_request(&req).expect("valid request parses");
        let up = handshake::validate_upgrade(&parsed, &fuzz_checks::SERVER_PROTOCOLS)
            .expect("valid request is accepted");
        prop_assert_eq!(&up.accept, &sha1_accept(&key));
        prop_assert_eq!(up.protocol, protocol);
    }
}

/// The browser request used above is itself accepted (guards the mutation base).
#[test]
fn browser_request_is_accepted() {
    let req = BROWSER_REQUEST.as_bytes();
    let mut scanned = 0;
    assert_eq!(
        wsloop::protocol::http1::find_head_end(req, &mut scanned, 8192),
        Ok(Some(req.len()))
    );
    let parsed = wsloop::protocol::http1::parse_request(req).unwrap();
    let up = handshake::validate_upgrade(&parsed, &fuzz_checks::SERVER_PROTOCOLS).unwrap();
    assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(up.protocol, Some(0));
    assert!(close::is_valid_code(1000));
}
