//! The RESP3 decoder check shared by the `resp` fuzz target and the corpus replay test
//! (`tests/fuzz_corpus_replay.rs`): a byte stream from "Redis" is run through the
//! backplane's [`Decoder`] fed whole, cut at a fuzzer-chosen point, and (for short inputs)
//! one byte at a time; every delivery must give the same frames and the same ending, the
//! buffer must stay within the limits' bound after every call, and, with limits no small
//! input can reach but depth and element counts, the frames must be those of an
//! independent recursive reference decoder written here (its recursion is bounded by the
//! depth limit, so it is safe on any input).
//!
//! Byte 0 picks the limits, byte 1 the cut point; the rest is the stream.
#![allow(dead_code)]

use wsloop::backplane::resp::{Decoder, Inbound, Limits, MAX_DECLARED_BLOB};

/// The limits the check picks from: small ones (to reach every limit), then the reader's
/// defaults for a small `max_payload`, which only depth and element counts can reach in a
/// fuzz input (the reference is compared under those).
pub fn fuzz_limits(pick: u8) -> (Limits, bool) {
    match pick & 3 {
        0 => (
            Limits {
                max_depth: 2,
                max_elements: 4,
                max_bulk: 8,
                max_frame: 48,
                max_line: 16,
            },
            false,
        ),
        1 => (
            Limits {
                max_depth: 4,
                max_elements: 16,
                max_bulk: 64,
                max_frame: 256,
                max_line: 64,
            },
            false,
        ),
        _ => (Limits::for_bulk(1 << 20), true),
    }
}

/// What a delivery produced: each frame's `Debug`, then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    pub frames: Vec<String>,
    /// `Some(message)` if it ended in a protocol error.
    pub error: Option<String>,
}

/// Feeds `input` cut at `cuts` (ascending offsets) and drains frames after each piece,
/// checking the buffer bound after every call.
pub fn run(input: &[u8], cuts: &[usize], limits: Limits) -> Run {
    let mut d = Decoder::new(limits);
    let mut out = Run {
        frames: Vec::new(),
        error: None,
    };
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(at, input.len());
        let piece = &input[at..cut];
        at = cut;
        d.feed(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.frames.push(format!("{f:?}")),
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e.0);
                    return out;
                }
            }
        }
        // The unfinished frame's kept bytes and a partial line: nothing else stays, however
        // big the piece (a discarded blob is cut out of the buffer at once).
        let bound = limits.max_frame + limits.max_line;
        assert!(
            d.buffered() <= bound,
            "{} bytes buffered, bound {bound}",
            d.buffered()
        );
    }
    out
}

/// The fuzz check (see the module docs).
pub fn check_resp(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (limits, compare) = fuzz_limits(data[0]);
    let body = &data[2..];
    let split = (data[1] as usize * (body.len() + 1)) / 256;
    let whole = run(body, &[], limits);
    let cut = run(body, &[split], limits);
    assert_eq!(cut, whole, "cut at {split} vs whole");
    if body.len() <= 2048 {
        let every: Vec<usize> = (1..body.len()).collect();
        assert_eq!(run(body, &every, limits), whole, "byte at a time vs whole");
    }
    if compare {
        let expected = reference(body, limits);
        assert_eq!(
            whole.frames, expected.frames,
            "decoder vs reference (decoder ended {:?})",
            whole.error
        );
        assert_eq!(
            whole.error.is_some(),
            expected.error.is_some(),
            "error vs reference: {:?} / {:?}",
            whole.error,
            expected.error
        );
    }
}

// ----------------------------------------------------------------- the reference decoder

/// A parsed value. Attributes are parsed and dropped, as RESP3 lets a client do.
#[derive(Debug, Clone)]
enum Value {
    Leaf { kind: u8, body: Vec<u8> },
    Agg { kind: u8, items: Vec<Value> },
}

enum Step {
    Done(Value, usize),
    More,
    Bad(String),
}

/// A header line: its type byte, its body (CRLF excluded), and where the next byte is.
type Line<'a> = (u8, &'a [u8], usize);

fn line(b: &[u8], at: usize) -> Result<Option<Line<'_>>, String> {
    let Some(nl) = b[at..].iter().position(|&c| c == b'\n') else {
        return Ok(None);
    };
    let end = at + nl + 1;
    if end - at < 3 || b[end - 2] != b'\r' {
        return Err("line not ended by CRLF".into());
    }
    Ok(Some((b[at], &b[at + 1..end - 2], end)))
}

fn int(b: &[u8]) -> Option<i64> {
    let d = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn len(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// One value at `at`, `depth` aggregates deep already.
fn parse(b: &[u8], at: usize, depth: usize, lim: &Limits) -> Step {
    let (kind, body, end) = match line(b, at) {
        Ok(Some(l)) => l,
        Ok(None) => return Step::More,
        Err(e) => return Step::Bad(e),
    };
    let body = body.to_vec();
    match kind {
        b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
            let ok = match kind {
                b':' => int(&body).is_some(),
                b'#' => body == b"t" || body == b"f",
                b'_' => body.is_empty(),
                _ => true,
            };
            if !ok {
                return Step::Bad("bad line".into());
            }
            Step::Done(Value::Leaf { kind, body }, end)
        }
        b'$' | b'!' | b'=' => {
            if kind == b'$' && body == b"-1" {
                return Step::Done(
                    Value::Leaf {
                        kind: b'_',
                        body: Vec::new(),
                    },
                    end,
                );
            }
            let n = match len(&body) {
                Some(n) if n <= MAX_DECLARED_BLOB => n as usize,
                _ => return Step::Bad("bad blob length".into()),
            };
            if b.len() < end + n + 2 {
                return Step::More;
            }
            if &b[end + n..end + n + 2] != b"\r\n" {
                return Step::Bad("blob not followed by CRLF".into());
            }
            Step::Done(
                Value::Leaf {
                    kind,
                    body: b[end..end + n].to_vec(),
                },
                end + n + 2,
            )
        }
        b'*' | b'~' | b'%' | b'>' | b'|' => {
            if kind == b'*' && body == b"-1" {
                return Step::Done(
                    Value::Leaf {
                        kind: b'_',
                        body: Vec::new(),
                    },
                    end,
                );
            }
            let Some(mut n) = len(&body) else {
                return Step::Bad("bad aggregate length".into());
            };
            if n > lim.max_elements {
                return Step::Bad("too many elements".into());
            }
            if matches!(kind, b'%' | b'|') {
                n *= 2;
            }
            if n > lim.max_elements {
                return Step::Bad("too many elements".into());
            }
            if n > 0 && depth >= lim.max_depth {
                return Step::Bad("too deep".into());
            }
            let mut items = Vec::new();
            let mut at = end;
            while (items.len() as u64) < n {
                match element(b, at, depth + 1, lim) {
                    Step::Done(v, next) => {
                        items.push(v);
                        at = next;
                    }
                    other => return other,
                }
            }
            if kind == b'|' {
                // The attribute annotates the value that follows it.
                return element(b, at, depth, lim);
            }
            Step::Done(Value::Agg { kind, items }, at)
        }
        _ => Step::Bad("unknown type".into()),
    }
}

/// A value, with any attribute in front of it parsed and dropped.
fn element(b: &[u8], at: usize, depth: usize, lim: &Limits) -> Step {
    parse(b, at, depth, lim)
}

/// What the backplane makes of a value, in `Inbound`'s `Debug` form.
fn meaning(v: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Leaf {
            kind: b'$' | b'+',
            body,
        } => Some(body.clone()),
        _ => None,
    };
    let inbound = match v {
        Value::Agg { kind: b'>', items } if items.len() == 3 => {
            match (text(&items[0]), text(&items[1]), &items[2]) {
                (Some(m), Some(channel), Value::Leaf { kind: b'$', body }) if m == b"message" => {
                    return format!(
                        "{:?}",
                        Inbound::Message {
                            channel: &channel,
                            data: body
                        }
                    )
                }
                (Some(verb), Some(_), Value::Leaf { kind: b':', body })
                    if verb == b"subscribe" || verb == b"unsubscribe" =>
                {
                    return format!(
                        "{:?}",
                        Inbound::Subscribed {
                            unsubscribe: verb == b"unsubscribe",
                            count: int(body).unwrap(),
                        }
                    )
                }
                (Some(m), _, _) if m == b"message" => Inbound::BadMessage,
                _ => Inbound::OtherPush,
            }
        }
        Value::Agg { kind: b'>', items } => match items.first().and_then(text) {
            Some(m) if m == b"message" => Inbound::BadMessage,
            _ => Inbound::OtherPush,
        },
        Value::Leaf {
            kind: b'-' | b'!',
            body,
        } => {
            let cut = &body[..body.len().min(256)];
            Inbound::Error(wsloop::backplane::resp::log_safe(cut))
        }
        _ => Inbound::Reply,
    };
    format!("{inbound:?}")
}

/// Every frame of `input` by the reference, and whether it ended in an error.
fn reference(input: &[u8], lim: Limits) -> Run {
    let mut out = Run {
        frames: Vec::new(),
        error: None,
    };
    let mut at = 0;
    while at < input.len() {
        match element(input, at, 0, &lim) {
            Step::Done(v, next) => {
                out.frames.push(meaning(&v));
                at = next;
            }
            Step::More => break,
            Step::Bad(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    out
}
