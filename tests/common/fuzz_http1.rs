//! The HTTP/1.1 connection check shared by the `http1` fuzz target and the corpus replay
//! test: a stream of pipelined requests (heads and bodies) is run through the same
//! sans-IO pieces the server uses (`find_head_end` → `parse_request` → `BodyReader`),
//! delivered whole, a byte at a time, and cut at fuzzer-chosen points, and every delivery
//! must give the same requests and the same ending.
//!
//! Depends on `fuzz_checks` (a sibling module included with `#[path]`) for the head and
//! status checks, so the module must be named `fuzz_checks` where this file is included.
#![allow(dead_code)]

use wsloop::protocol::handshake;
use wsloop::protocol::http1::{self, BodyLength, BodyReader, HttpError};

use super::fuzz_checks::{check_head_matches_httparse, check_request, check_status};

/// The `max_request_body` values the check picks from (small, so the 413 path is hit).
pub const FUZZ_MAX_BODY: [u64; 4] = [0, 16, 1000, 64 << 10];
/// The `max_head` values the check picks from.
pub const FUZZ_MAX_HEAD: [usize; 4] = [64, 256, 1024, 8192];
/// The shortest request head `parse_request` can accept (`A / HTTP/1.0\n\n`): a bound on
/// how many requests a stream of n bytes can hold.
pub const MIN_HEAD: usize = 14;
/// Inputs up to this long are also checked cut at every single point.
pub const EXHAUSTIVE_CUTS: usize = 64;

/// One request as the connection saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub head_len: usize,
    pub method: String,
    pub path: String,
    pub body: BodyLength,
    /// Body bytes read past (framing included for chunked).
    pub body_bytes: u64,
    pub keep_alive: bool,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Out of input: waiting for more of a head (`held` bytes buffered) or of a body.
    NeedHead {
        held: usize,
    },
    NeedBody,
    /// Refused with this status; nothing after it is read.
    Refused(u16),
    /// A valid WebSocket upgrade: the bytes after its head (`rest`) are frames.
    Upgraded {
        rest: usize,
    },
}

/// The connection's own state machine, as the server keeps it per connection.
enum Conn {
    Head { scanned: usize },
    Body(BodyReader),
    Over(Ending),
}

/// Runs `input` delivered in the pieces `cuts` makes (sorted offsets), the way the server
/// does: new bytes are appended to what is held; heads are found, parsed and answered;
/// bodies are read past; an upgrade ends HTTP. Checks the per-call contracts on the way.
pub fn run_stream(
    input: &[u8],
    cuts: &[usize],
    max_head: usize,
    max_body: u64,
) -> (Vec<Seen>, Ending) {
    let mut held: Vec<u8> = Vec::new();
    let mut seen = Vec::new();
    let mut conn = Conn::Head { scanned: 0 };
    let mut start = 0;
    let ends = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < input.len())
        .chain([input.len()]);
    for end in ends {
        if end <= start {
            continue;
        }
        let piece = &input[start..end];
        start = end;
        if let Conn::Over(Ending::Upgraded { rest }) = &mut conn {
            *rest += piece.len();
            continue;
        }
        if matches!(conn, Conn::Over(_)) {
            break;
        }
        held.extend_from_slice(piece);
        conn = advance(conn, &mut held, &mut seen, max_head, max_body);
    }
    assert!(
        seen.len() <= input.len() / MIN_HEAD,
        "{} requests from {} bytes",
        seen.len(),
        input.len()
    );
    let ending = match conn {
        Conn::Head { .. } => {
            // Bounded: a head is held only while shorter than the limit.
            assert!(held.len() < max_head, "held {} ≥ {max_head}", held.len());
            Ending::NeedHead { held: held.len() }
        }
        Conn::Body(_) => {
            assert!(held.is_empty(), "a body reader left {} bytes", held.len());
            Ending::NeedBody
        }
        Conn::Over(e) => e,
    };
    (seen, ending)
}

/// Handles everything `held` allows; what is left in `held` is an incomplete head.
fn advance(
    mut conn: Conn,
    held: &mut Vec<u8>,
    seen: &mut Vec<Seen>,
    max_head: usize,
    max_body: u64,
) -> Conn {
    loop {
        conn = match conn {
            Conn::Over(e) => return Conn::Over(e),
            Conn::Body(mut reader) => {
                let before = reader.clone();
                match reader.consume(held) {
                    Err(e) => {
                        assert!(matches!(e, HttpError::BadChunk | HttpError::BodyTooLarge));
                        check_status(e);
                        // How much was read before the error depends on the cuts.
                        seen.last_mut()
                            .expect("a body without a request")
                            .body_bytes = 0;
                        return Conn::Over(Ending::Refused(e.status()));
                    }
                    Ok(n) => {
                        assert!(n <= held.len());
                        assert!(n > 0 || held.is_empty() || before.is_done());
                        let last = seen.last_mut().expect("a body without a request");
                        last.body_bytes += n as u64;
                        if let BodyLength::Length(len) = last.body {
                            assert!(last.body_bytes <= len);
                            assert_eq!(reader.is_done(), last.body_bytes == len);
                        }
                        // Whatever is consumed is within the budget (framing included).
                        assert!(last.body_bytes <= max_body, "read past the budget");
                        held.drain(..n);
                        if !reader.is_done() {
                            assert!(held.is_empty(), "stopped early without finishing");
                            return Conn::Body(reader);
                        }
                        assert_eq!(reader.consume(b"GET").unwrap(), 0, "read past the end");
                        Conn::Head { scanned: 0 }
                    }
                }
            }
            Conn::Head { mut scanned } => {
                if held.is_empty() {
                    return Conn::Head { scanned };
                }
                let head_len = match http1::find_head_end(held, &mut scanned, max_head) {
                    Err(e) => {
                        assert_eq!(e.status(), 431);
                        return Conn::Over(Ending::Refused(431));
                    }
                    Ok(None) => {
                        assert!(scanned <= held.len());
                        return Conn::Head { scanned };
                    }
                    Ok(Some(h)) => h,
                };
                assert!(head_len <= max_head && head_len <= held.len() && head_len > 0);
                let head = &held[..head_len];
                check_request(head);
                check_head_matches_httparse(head, max_head);
                let req = match http1::parse_request(head) {
                    Err(e) => return Conn::Over(Ending::Refused(e.status())),
                    Ok(r) => r,
                };
                if req.wants_websocket() {
                    let status = match handshake::validate_upgrade(&req, &[]) {
                        Ok(_) => {
                            let rest = held.len() - head_len;
                            return Conn::Over(Ending::Upgraded { rest });
                        }
                        Err(e) => e.status(),
                    };
                    return Conn::Over(Ending::Refused(status));
                }
                let reader = match BodyReader::new(req.body, max_body) {
                    Err(e) => {
                        assert_eq!(e.status(), 413);
                        return Conn::Over(Ending::Refused(413));
                    }
                    Ok(r) => r,
                };
                match (req.body, &reader) {
                    (BodyLength::None, None) => {}
                    (BodyLength::Length(n), Some(_)) => assert!(n > 0 && n <= max_body),
                    (BodyLength::Chunked, Some(_)) => {}
                    (b, r) => panic!("{b:?} gave reader {r:?}"),
                }
                seen.push(Seen {
                    head_len,
                    method: req.method.to_owned(),
                    path: req.path.to_owned(),
                    body: req.body,
                    body_bytes: 0,
                    keep_alive: req.keep_alive(),
                });
                held.drain(..head_len);
                match reader {
                    Some(r) => Conn::Body(r),
                    None => Conn::Head { scanned: 0 },
                }
            }
        };
    }
}

/// The http1 fuzz check. Byte 0 picks the head and body limits, byte 1 a cut stride;
/// bytes 2.. up to the first `0xff` are extra cut points (scaled to the input); the rest
/// is the request stream.
pub fn check_http1(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max_head = FUZZ_MAX_HEAD[(data[0] & 3) as usize];
    let max_body = FUZZ_MAX_BODY[((data[0] >> 2) & 3) as usize];
    let stride = data[1] as usize + 1;
    let (cut_bytes, input) = match data[2..].iter().position(|&b| b == 0xff) {
        Some(p) if p <= 16 => (&data[2..2 + p], &data[3 + p..]),
        _ => (&[][..], &data[2..]),
    };
    check_http1_with(input, stride, cut_bytes, max_head, max_body);
}

/// [`check_http1`] with explicit cuts and limits.
pub fn check_http1_with(
    input: &[u8],
    stride: usize,
    cut_bytes: &[u8],
    max_head: usize,
    max_body: u64,
) {
    let expected = run_stream(input, &[], max_head, max_body);
    if let Ending::Refused(s) = expected.1 {
        assert!(matches!(s, 400 | 405 | 413 | 426 | 431 | 501), "status {s}");
    }
    let n = input.len();
    let bytewise: Vec<usize> = (1..n).collect();
    assert_eq!(
        run_stream(input, &bytewise, max_head, max_body),
        expected,
        "byte at a time"
    );
    let strided: Vec<usize> = (1..n).step_by(stride).collect();
    assert_eq!(
        run_stream(input, &strided, max_head, max_body),
        expected,
        "every {stride} bytes"
    );
    let mut cuts: Vec<usize> = cut_bytes.iter().map(|&b| b as usize * n / 255).collect();
    cuts.sort_unstable();
    assert_eq!(
        run_stream(input, &cuts, max_head, max_body),
        expected,
        "cut at {cuts:?}"
    );
    if n <= EXHAUSTIVE_CUTS {
        for cut in 1..n {
            assert_eq!(
                run_stream(input, &[cut], max_head, max_body),
                expected,
                "cut at {cut}"
            );
        }
    }
}
