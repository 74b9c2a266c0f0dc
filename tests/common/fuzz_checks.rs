//! Checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`), the corpus replay test
//! (`tests/fuzz_corpus_replay.rs`) and the property tests (`tests/protocol_props.rs`).
//!
//! Every check panics on a violated property, so libFuzzer reports it as a crash and the
//! test harness as a failure. They depend on nothing but `wsloop` and std, so the fuzz
//! crate can include this file with `#[path]` as well.
#![allow(dead_code)]

use wsloop::protocol::close;
use wsloop::protocol::decoder::{Decoded, Decoder, Message, Role};
use wsloop::protocol::deflate;
use wsloop::protocol::error::ProtocolError;
use wsloop::protocol::frame::{FrameHeader, HeaderParse};
use wsloop::protocol::handshake;
use wsloop::protocol::http1::{self, HttpError};

/// The `max_message` values the decoder fuzz target picks from (small, so limits are hit).
pub const FUZZ_MAX_MESSAGE: [usize; 4] = [1, 16, 125, 1000];
/// The `max_head` values the handshake fuzz target picks from.
pub const FUZZ_MAX_HEAD: [usize; 4] = [16, 100, 1024, 8192];
/// Subprotocols the handshake check offers to `validate_upgrade`.
pub const SERVER_PROTOCOLS: [&str; 2] = ["chat", "superchat"];

/// An owned record of what one `decode` call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Fragment,
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// A permessage-deflate message: (text, compressed payload).
    Compressed(bool, Vec<u8>),
}

/// How a run over some input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The decoder asked for more bytes, with `pending` unconsumed bytes held.
    NeedMore { pending: usize },
    /// A protocol error, as its close code.
    Error(u16),
}

/// The upper bound on `Decoder::buffered()`: the open message holds at most `max_message`
/// bytes, and `Vec`'s amortised growth at most doubles a capacity that was below that
/// (with a minimum non-zero capacity of 8 bytes).
pub fn buffered_bound(max_message: usize) -> usize {
    (2 * max_message).max(8)
}

pub fn event_of(m: Message<'_>) -> Event {
    match m {
        Message::Text(t) => Event::Text(t.to_owned()),
        Message::Binary(b) => Event::Binary(b.to_vec()),
        Message::Ping(p) => Event::Ping(p.to_vec()),
        Message::Pong(p) => Event::Pong(p.to_vec()),
        Message::Close(c) => Event::Close(c.code, c.reason.to_owned()),
        Message::Compressed { text, data } => Event::Compressed(text, data.to_vec()),
    }
}

fn check_error(e: ProtocolError) -> u16 {
    let code = e.close_code();
    assert!(
        matches!(code, 1002 | 1007 | 1009),
        "{e:?} maps to close code {code}"
    );
    let reason = e.reason();
    assert!(!reason.is_empty() && reason.len() <= 123 && reason.is_ascii());
    code
}

/// After `Incomplete`, the header is untouched and the payload differs from before only
/// in one run of bytes that were unmasked in place (byte i XOR key[i % 4]): the piece of
/// text that arrived since the last call.
fn check_incomplete_changes(before: &[u8], after: &[u8]) {
    assert_eq!(before.len(), after.len());
    let Ok(HeaderParse::Complete(h)) = FrameHeader::parse(before) else {
        assert_eq!(before, after, "Incomplete modified a partial header");
        return;
    };
    assert_eq!(
        &before[..h.header_len],
        &after[..h.header_len],
        "Incomplete modified the header"
    );
    let key = h.mask.unwrap_or([0; 4]);
    let (b, a) = (&before[h.header_len..], &after[h.header_len..]);
    let first = b.iter().zip(a).position(|(x, y)| x != y);
    let last = b.iter().zip(a).rposition(|(x, y)| x != y);
    if let (Some(first), Some(last)) = (first, last) {
        assert!(
            (first..=last).all(|i| a[i] == b[i] ^ key[i % 4]),
            "Incomplete changed payload bytes other than by unmasking them"
        );
    }
}

/// Decodes every whole frame at the start of `pending`, appending events, checking the
/// decoder's contract on every call; returns how many bytes were consumed and the error
/// that stopped decoding, if any.
pub fn decode_available(
    dec: &mut Decoder,
    pending: &mut [u8],
    max_message: usize,
    events: &mut Vec<Event>,
    open: &mut bool,
) -> (usize, Option<u16>) {
    let mut off = 0;
    loop {
        let rest = &mut pending[off..];
        // An independent look at the header: the frame's total length, when known.
        let frame_total = match FrameHeader::parse(rest) {
            Ok(HeaderParse::Complete(h)) => {
                Some((h.header_len as u64).saturating_add(h.payload_len))
            }
            _ => None,
        };
        let whole_frame_present = frame_total.is_some_and(|t| t <= rest.len() as u64);
        // Incomplete touches nothing but a prefix of a text payload, which it may unmask
        // in place (to fail invalid UTF-8 early); keep a copy of the partial frame to check.
        let snapshot = (!whole_frame_present).then(|| rest.to_vec());
        let rest_len = rest.len();
        let deflate_on = dec.permessage_deflate();
        let result = dec.decode(rest, max_message);
        let consumed = match result {
            Err(e) => return (off, Some(check_error(e))),
            Ok(Decoded::Incomplete { need }) => {
                assert!(need >= 1, "Incomplete with need 0");
                let snapshot = snapshot.expect("Incomplete although a whole frame is buffered");
                check_incomplete_changes(&snapshot, &pending[off..]);
                if let Some(t) = frame_total {
                    assert_eq!(rest_len as u64 + need as u64, t, "need mismatch");
                } else {
                    assert!(rest_len + need <= 14, "need {need} for a partial header");
                }
                assert!(dec.buffered() <= buffered_bound(max_message));
                return (off, None);
            }
            Ok(Decoded::Fragment { consumed }) => {
                events.push(Event::Fragment);
                consumed
            }
            Ok(Decoded::Message { consumed, message }) => {
                match message {
                    Message::Text(t) => assert!(t.len() <= max_message),
                    Message::Binary(b) => assert!(b.len() <= max_message),
                    Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                    Message::Close(c) => {
                        assert!(c.code.is_none_or(close::is_valid_code));
                        assert!(c.reason.len() <= 123);
                    }
                    Message::Compressed { data, .. } => {
                        assert!(deflate_on, "compressed without deflate");
                        assert!(data.len() <= max_message);
                    }
                }
                events.push(event_of(message));
                consumed
            }
        };
        assert!(whole_frame_present, "consumed a frame that is not whole");
        assert_eq!(
            Some(consumed as u64),
            frame_total,
            "consumed != frame length"
        );
        assert!(consumed >= 2 && consumed <= rest_len);
        assert!(dec.buffered() <= buffered_bound(max_message));
        // Open after a non-final fragment, closed after a whole message, unchanged by
        // control frames.
        match events.last() {
            Some(Event::Fragment) => *open = true,
            Some(Event::Text(_) | Event::Binary(_) | Event::Compressed(..)) => *open = false,
            _ => {}
        }
        assert_eq!(dec.in_message(), *open, "in_message() disagrees");
        assert!(
            *open || dec.buffered() == 0,
            "buffer held with no message open"
        );
        off += consumed;
    }
}

/// Feeds `input` to a fresh decoder in pieces that end at each of `cuts` (ascending, each
/// ≤ `input.len()`), as a connection does: append the piece to the unconsumed tail, decode
/// what is whole, drop what was consumed.
pub fn run_decoder(
    role: Role,
    input: &[u8],
    cuts: &[usize],
    max_message: usize,
) -> (Vec<Event>, End) {
    run_decoder_deflate(role, input, cuts, max_message, false)
}

/// [`run_decoder`] with permessage-deflate's RSV1 switch set to `deflate`.
pub fn run_decoder_deflate(
    role: Role,
    input: &[u8],
    cuts: &[usize],
    max_message: usize,
    deflate: bool,
) -> (Vec<Event>, End) {
    let mut dec = Decoder::new(role);
    dec.set_permessage_deflate(deflate);
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut open = false;
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        pending.extend_from_slice(&input[start..cut]);
        start = cut;
        let (consumed, error) =
            decode_available(&mut dec, &mut pending, max_message, &mut events, &mut open);
        if let Some(code) = error {
            return (events, End::Error(code));
        }
        pending.drain(..consumed);
    }
    (
        events,
        End::NeedMore {
            pending: pending.len(),
        },
    )
}

/// A deliberately simple reference decoder over a whole buffer: owned copies, bytewise
/// unmasking, `std::str::from_utf8`, rules checked in the order the protocol makes them
/// decidable (first two bytes, whole header, whole payload).
pub fn reference_decode(role: Role, input: &[u8], max_message: usize) -> (Vec<Event>, End) {
    reference_decode_with(role, input, max_message, false)
}

/// [`reference_decode`] with permessage-deflate negotiated or not: then RSV1 (alone) is
/// allowed on a text or binary frame, which starts a compressed message that is neither
/// UTF-8 checked nor inflated (RFC 7692 §6.1).
pub fn reference_decode_with(
    role: Role,
    input: &[u8],
    max_message: usize,
    deflate: bool,
) -> (Vec<Event>, End) {
    let mut events = Vec::new();
    let mut i = 0;
    // (text, compressed, data)
    let mut open: Option<(bool, bool, Vec<u8>)> = None;
    let valid_prefix = |d: &[u8]| match std::str::from_utf8(d) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    loop {
        let rest = &input[i..];
        let need_more = End::NeedMore {
            pending: rest.len(),
        };
        if rest.len() < 2 {
            return (events, need_more);
        }
        let (fin, rsv, op) = (rest[0] & 0x80 != 0, rest[0] & 0x70, rest[0] & 0x0F);
        let (masked, len7) = (rest[1] & 0x80 != 0, rest[1] & 0x7F);
        if !matches!(op, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return (events, End::Error(1002));
        }
        let control = op >= 8;
        if control && (len7 > 125 || !fin) {
            return (events, End::Error(1002));
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let hl = 2 + ext + if masked { 4 } else { 0 };
        if rest.len() < hl {
            return (events, need_more);
        }
        let len = match ext {
            0 => len7 as u64,
            2 => u16::from_be_bytes([rest[2], rest[3]]) as u64,
            _ => u64::from_be_bytes(rest[2..10].try_into().unwrap()),
        };
        if len >> 63 != 0 {
            return (events, End::Error(1002));
        }
        let rsv1_ok = deflate && rsv == 0x40 && (op == 1 || op == 2);
        if masked != (role == Role::Server) || (rsv != 0 && !rsv1_ok) {
            return (events, End::Error(1002));
        }
        let compressed = rsv1_ok || (op == 0 && open.as_ref().is_some_and(|o| o.1));
        match (op, &open) {
            (0, None) | (1 | 2, Some(_)) => return (events, End::Error(1002)),
            _ => {}
        }
        let already = open.as_ref().map_or(0, |(_, _, d)| d.len() as u64);
        if !control && len + already > max_message as u64 {
            return (events, End::Error(1009));
        }
        if ((rest.len() - hl) as u64) < len {
            // Text that is already impossible fails before the frame completes.
            let text = op == 1 || (op == 0 && open.as_ref().is_some_and(|o| o.0));
            if text && !compressed {
                let mut acc = if op == 0 {
                    open.as_ref().map(|(_, _, d)| d.clone()).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let key = if masked {
                    &rest[hl - 4..hl]
                } else {
                    &[0u8; 4][..]
                };
                acc.extend(rest[hl..].iter().enumerate().map(|(j, b)| b ^ key[j % 4]));
                if !valid_prefix(&acc) {
                    return (events, End::Error(1007));
                }
            }
            return (events, need_more);
        }
        let mut payload = rest[hl..hl + len as usize].to_vec();
        if masked {
            let key = &rest[hl - 4..hl];
            for (j, b) in payload.iter_mut().enumerate() {
                *b ^= key[j % 4];
            }
        }
        i += hl + len as usize;
        match op {
            0x9 => events.push(Event::Ping(payload)),
            0xA => events.push(Event::Pong(payload)),
            0x8 => {
                if payload.is_empty() {
                    events.push(Event::Close(None, String::new()));
                } else if payload.len() == 1 {
                    return (events, End::Error(1002));
                } else {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                        return (events, End::Error(1002));
                    }
                    match String::from_utf8(payload[2..].to_vec()) {
                        Ok(r) => events.push(Event::Close(Some(code), r)),
                        Err(_) => return (events, End::Error(1007)),
                    }
                }
            }
            _ => {
                let (text, compressed, mut data) = match op {
                    0x0 => open.take().expect("checked above"),
                    _ => (op == 0x1, compressed, Vec::new()),
                };
                data.extend_from_slice(&payload);
                if text && !compressed && !valid_prefix(&data) {
                    return (events, End::Error(1007));
                }
                if !fin {
                    open = Some((text, compressed, data));
                    events.push(Event::Fragment);
                } else if compressed {
                    events.push(Event::Compressed(text, data));
                } else if text {
                    match String::from_utf8(data) {
                        Ok(s) => events.push(Event::Text(s)),
                        Err(_) => return (events, End::Error(1007)),
                    }
                } else {
                    events.push(Event::Binary(data));
                }
            }
        }
    }
}

/// The decoder fuzz check. Byte 0 picks `max_message`, byte 1 a split point; the rest is
/// the stream. In both roles, with permessage-deflate off and on: fed whole and fed in two
/// pieces, the decoder must produce the same events and end as the reference decoder, and
/// keep its contract on every call.
pub fn check_decoder(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max_message = FUZZ_MAX_MESSAGE[(data[0] & 3) as usize];
    let body = &data[2..];
    let split = (data[1] as usize * (body.len() + 1)) / 256;
    check_decoder_with(body, &[split], max_message);
}

/// [`check_decoder`] with explicit cut points (used by the property tests).
pub fn check_decoder_with(body: &[u8], cuts: &[usize], max_message: usize) {
    for role in [Role::Server, Role::Client] {
        for deflate in [false, true] {
            let expected = reference_decode_with(role, body, max_message, deflate);
            let whole = run_decoder_deflate(role, body, &[], max_message, deflate);
            assert_eq!(
                whole, expected,
                "{role:?} deflate {deflate}: decoder fed whole vs reference"
            );
            let split = run_decoder_deflate(role, body, cuts, max_message, deflate);
            assert_eq!(
                split, expected,
                "{role:?} deflate {deflate}: decoder fed at {cuts:?} vs reference"
            );
        }
    }
}

/// The reference for `find_head_end`: the first LF that ends an empty line, i.e. ends
/// "\n\n" or "\n\r\n" (which covers "\r\n\r\n" and mixed CRLF / bare LF endings).
pub fn reference_head_end(buf: &[u8], max_head: usize) -> Result<Option<usize>, HttpError> {
    let limit = buf.len().min(max_head);
    for nl in 0..limit {
        if buf[nl] != b'\n' {
            continue;
        }
        if (nl >= 1 && buf[nl - 1] == b'\n') || (nl >= 2 && &buf[nl - 2..nl] == b"\n\r") {
            return Ok(Some(nl + 1));
        }
    }
    if buf.len() >= max_head {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

pub fn check_status(e: HttpError) {
    let status = e.status();
    assert!(
        matches!(status, 400 | 405 | 413 | 426 | 431 | 501),
        "{e:?} -> status {status}"
    );
    let mut out = Vec::new();
    e.write_response(&mut out, false);
    let head = format!("HTTP/1.1 {status} ");
    assert!(out.starts_with(head.as_bytes()));
    assert!(out.windows(4).any(|w| w == b"\r\n\r\n"));
}

/// Runs `find_head_end` over `input` fed in pieces of `chunk` bytes (the way a connection
/// calls it: the whole buffer so far each time, with `scanned` carried over).
pub fn head_end_incremental(
    input: &[u8],
    chunk: usize,
    max_head: usize,
) -> Result<Option<usize>, HttpError> {
    let mut scanned = 0;
    let mut n = 0;
    loop {
        n = (n + chunk.max(1)).min(input.len());
        match http1::find_head_end(&input[..n], &mut scanned, max_head)? {
            Some(h) => return Ok(Some(h)),
            None if n == input.len() => return Ok(None),
            None => assert!(scanned <= n),
        }
    }
}

/// The handshake fuzz check. Byte 0 picks `max_head` and a chunk size; the rest is the
/// request bytes.
pub fn check_handshake(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let max_head = FUZZ_MAX_HEAD[(data[0] & 3) as usize];
    let chunk = (data[0] >> 2) as usize + 2;
    check_handshake_with(&data[1..], chunk, max_head);
    check_head_matches_httparse(&data[1..], max_head);
}

/// [`check_handshake`] with an explicit chunk size and head limit.
pub fn check_handshake_with(input: &[u8], chunk: usize, max_head: usize) {
    let expected = reference_head_end(input, max_head);
    let mut scanned = 0;
    let whole = http1::find_head_end(input, &mut scanned, max_head);
    assert_eq!(whole, expected, "find_head_end whole vs reference");
    assert_eq!(
        head_end_incremental(input, 1, max_head),
        expected,
        "byte at a time"
    );
    assert_eq!(
        head_end_incremental(input, chunk, max_head),
        expected,
        "chunks of {chunk}"
    );
    let head_len = match expected {
        Err(e) => {
            assert_eq!(e.status(), 431);
            return check_status(e);
        }
        Ok(None) => return,
        Ok(Some(h)) => h,
    };
    assert!(head_len <= max_head && head_len <= input.len());
    check_request(&input[..head_len]);
}

/// The head framing agrees with the parser: where `httparse` sees a complete head of `n`
/// bytes, `find_head_end` reports exactly `n` (if within the limit), and the head
/// `find_head_end` reports is not one that `httparse` ends elsewhere. Inputs starting with
/// an empty line are left out: httparse skips any number of those, `find_head_end` one.
pub fn check_head_matches_httparse(input: &[u8], max_head: usize) {
    if input.first().is_some_and(|&b| b == b'\r' || b == b'\n') {
        return;
    }
    let mut slots = vec![httparse::EMPTY_HEADER; input.len() / 2 + 1];
    let parsed = httparse::Request::new(&mut slots).parse(input);
    let mut scanned = 0;
    let found = http1::find_head_end(input, &mut scanned, max_head);
    if let Ok(httparse::Status::Complete(n)) = parsed {
        if n <= max_head {
            assert_eq!(found, Ok(Some(n)), "httparse ends the head at {n}");
        }
    }
    if let Ok(Some(h)) = found {
        let mut slots = vec![httparse::EMPTY_HEADER; h / 2 + 1];
        if let Ok(httparse::Status::Complete(n)) =
            httparse::Request::new(&mut slots).parse(&input[..h])
        {
            assert_eq!(n, h, "find_head_end ends the head at {h}, httparse at {n}");
        }
    }
}

/// `parse_request` then `validate_upgrade` on a complete head; no panics, statuses in the
/// documented set, and an accepted upgrade that is consistent with the request.
pub fn check_request(head: &[u8]) {
    let req = match http1::parse_request(head) {
        Ok(r) => r,
        Err(e) => return check_status(e),
    };
    assert!(req.version <= 1);
    assert!(req.headers.len() <= http1::MAX_HEADERS);
    let _ = (
        req.origin(),
        req.host(),
        req.keep_alive(),
        req.wants_websocket(),
    );
    let _ = req.tokens("connection").count();
    match handshake::validate_upgrade(&req, &SERVER_PROTOCOLS) {
        Err(e) => check_status(e),
        Ok(u) => {
            assert_eq!(req.method, "GET");
            assert!(req.version == 1 && req.host().is_some() && req.wants_websocket());
            let key = req
                .header("sec-websocket-key")
                .expect("accepted without a key")
                .trim_ascii();
            assert_eq!(key.len(), 24, "key {key:?}");
            assert_eq!(u.accept, handshake::accept_key(key));
            assert_eq!(u.accept.len(), 28);
            if let Some(i) = u.protocol {
                assert!(req
                    .tokens("sec-websocket-protocol")
                    .any(|t| t == SERVER_PROTOCOLS[i].as_bytes()));
            }
            let mut out = Vec::new();
            handshake::write_accept_response(
                &mut out,
                &u.accept,
                u.protocol.map(|i| SERVER_PROTOCOLS[i]),
                None,
            );
            assert!(out.starts_with(b"HTTP/1.1 101 ") && out.ends_with(b"\r\n\r\n"));
        }
    }
}

/// Server settings the deflate negotiation fuzz check picks from (byte 0).
pub fn fuzz_deflate_config(b: u8) -> deflate::DeflateConfig {
    deflate::DeflateConfig {
        server_max_window_bits: 8 + (b & 7),
        client_max_window_bits: 15 - ((b >> 3) & 7),
        server_no_context_takeover: b & 0x40 != 0,
        client_no_context_takeover: b & 0x80 != 0,
        ..deflate::DeflateConfig::default()
    }
}

/// The permessage-deflate negotiation fuzz check. Byte 0 picks the server's settings; the
/// rest, split at `\n`, are `Sec-WebSocket-Extensions` header values. An agreement must
/// respect the settings, and its response line must itself parse as an acceptable offer
/// that agrees to the same window limits.
pub fn check_deflate_negotiate(data: &[u8]) {
    let Some((&b0, rest)) = data.split_first() else {
        return;
    };
    let cfg = fuzz_deflate_config(b0);
    let values: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    let Some(a) = deflate::negotiate(values.iter().copied(), &cfg) else {
        return;
    };
    // Parameters may have whitespace around `=` (RFC 6455 §9.1's implied *LWS), so look
    // for them in the values with spaces and tabs removed.
    let squeezed: Vec<Vec<u8>> = values
        .iter()
        .map(|v| {
            v.iter()
                .copied()
                .filter(|b| !matches!(b, b' ' | b'\t'))
                .collect()
        })
        .collect();
    let offered = |name: &str| {
        squeezed
            .iter()
            .any(|v| v.windows(name.len()).any(|w| w == name.as_bytes()))
    };
    let (server, client) = (a.server_window_bits(), a.client_window_bits());
    assert!((9..=15).contains(&server) && (8..=15).contains(&client));
    // 8 only echoes a client's own offered limit (§7.1.2.2: never answered above it).
    assert!(
        client > 8
            || offered("client_max_window_bits=8")
            || offered("client_max_window_bits=\"8\"")
    );
    assert!(server <= cfg.server_max_window_bits.max(9));
    if a.client_max_window_bits.is_some() {
        assert!(
            offered("client_max_window_bits"),
            "answered unoffered client bits"
        );
        assert!(client <= cfg.client_max_window_bits.max(9));
    }
    assert!(a.server_no_context_takeover || !cfg.server_no_context_takeover);
    assert!(a.client_no_context_takeover || !cfg.client_no_context_takeover);
    let mut line = Vec::new();
    a.write_response_header(&mut line);
    let value = line
        .strip_prefix(b"Sec-WebSocket-Extensions: ".as_slice())
        .and_then(|v| v.strip_suffix(b"\r\n".as_slice()))
        .expect("response header shape");
    let again = deflate::negotiate([value], &cfg).expect("our own response is an acceptable offer");
    assert_eq!(again.server_window_bits(), server);
    assert!(again.client_window_bits() <= client);
}

/// The inflation fuzz check. Byte 0: bit 0 text, bit 1 shared/dedicated, bits 2-4 the
/// dedicated window, bits 5-6 the limit. The rest is one compressed message: any result is
/// allowed but a panic, errors map to 1002/1007/1009, output stays within the limit plus a
/// chunk, and text comes out valid. Then the same bytes, compressed by our compressor, must
/// inflate back exactly.
pub fn check_deflate_inflate(data: &[u8]) {
    let Some((&b0, body)) = data.split_first() else {
        return;
    };
    let text = b0 & 1 != 0;
    let bits = 9 + ((b0 >> 2) & 7).min(6);
    let max = [0usize, 100, 4096, 1 << 20][usize::from((b0 >> 5) & 3)];
    let mut inf = if b0 & 2 != 0 {
        deflate::Inflater::shared()
    } else {
        deflate::Inflater::dedicated(bits)
    };
    let mut out = Vec::new();
    match inf.inflate(body, text, max, &mut out) {
        Ok(deflate::Inflated::Text(t)) => assert!(text && t.len() <= max),
        Ok(deflate::Inflated::Binary(b)) => assert!(!text && b.len() <= max),
        Err(e) => {
            check_error(e);
            assert!(
                out.len() <= max + deflate::INFLATE_CHUNK,
                "{} bytes out",
                out.len()
            );
        }
    }
    // Round trip through our own compressor with the same window, twice (context kept).
    let cfg = deflate::DeflateConfig {
        min_compress_size: 0,
        ..deflate::DeflateConfig::default()
    };
    let mut c = deflate::Compressor::new(bits, &cfg, b0 & 2 != 0);
    let mut inf = if b0 & 2 != 0 {
        deflate::Inflater::shared()
    } else {
        deflate::Inflater::dedicated(bits)
    };
    for _ in 0..2 {
        let mut z = Vec::new();
        c.compress(body, &mut z);
        assert_eq!(
            inf.inflate(&z, false, body.len(), &mut out),
            Ok(deflate::Inflated::Binary(body))
        );
    }
}
