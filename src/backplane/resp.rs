//! The RESP3 side of the Redis link: commands out, replies and pushes in.
//!
//! # Decoding: our own small iterative scanner, not `redis-protocol`
//! Every byte from Redis is treated as hostile input, with the frame decoder's standard: a
//! bounded, linear-cost parser. `redis-protocol` v6 (which this module used before) decodes
//! aggregates by recursion with no depth limit, so 8 KB of `>1\r\n` overflowed the reader
//! thread's stack (SIGABRT, the whole server gone); and its `complete` decoder starts again
//! from the first byte of the buffer on every read, so a big frame that arrives in n pieces
//! costs O(n·size). A pre-scan in front of the crate would have to do all of the work below
//! anyway (find where a frame ends, under limits) and then the crate would parse it a second
//! time; the subset of RESP3 the backplane needs (pub/sub pushes, error and integer replies,
//! the `HELLO` map, `PONG`) is small, so [`Decoder`] is a complete RESP3 scanner of its own:
//!
//! - **Iterative**: open aggregates are an explicit stack of "elements still to come",
//!   bounded by [`Limits::max_depth`]; nothing recurses.
//! - **Resumable**: the scan position and the stack survive between reads, so each byte is
//!   looked at once however the frame is split (one byte per read costs the same per byte as
//!   one read for the whole frame). Blob contents are skipped by length, not scanned.
//! - **Bounded**: a line is at most [`Limits::max_line`] bytes, an aggregate declares at most
//!   [`Limits::max_elements`], one frame keeps at most [`Limits::max_frame`] bytes in memory,
//!   a declared blob length over [`MAX_DECLARED_BLOB`] is refused. A blob over
//!   [`Limits::max_bulk`] (a message bigger than this instance accepts) is *not* an error:
//!   it is read and thrown away as it arrives (never buffered) and the frame is reported as
//!   oversize, so a peer instance with a bigger message limit cannot make this one drop its
//!   Redis link.
//! - Only the parts the backplane looks at are kept: the top frame's type and, for an
//!   aggregate, its first three elements (type and content range).
//!
//! Streamed strings and aggregates (`$?`, `*?`) are refused: Redis never sends them.
//! Attributes (`|`) are accepted and skipped. RESP2 nulls (`$-1`, `*-1`) are accepted.
//!
//! Commands are arrays of bulk strings, written here straight into the writer's batch
//! buffer so a publish costs no frame object.
//!
//! Only RESP3 is spoken (`HELLO 3`, Redis 6 or newer): on a RESP3 connection a subscribed
//! client may still run ordinary commands, so one connection carries both the subscriptions
//! and this instance's publishes (one FIFO: order per publisher holds by construction), and
//! pushes (`>`) are told apart from replies by type rather than by guessing.

use std::fmt;
use std::io;

use super::envelope::Header;
/// Appends one command (an array of bulk strings) to `out`.
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_len(out, b'*', args.len());
    for arg in args {
        push_bulk(out, &[arg]);
    }
}

/// Appends `PUBLISH <prefix><topic> <header><payload>` to `out`, the message argument built in
/// place from its parts.
pub fn push_publish(out: &mut Vec<u8>, prefix: &str, topic: &str, header: &Header, payload: &[u8]) {
    push_len(out, b'*', 3);
    push_bulk(out, &[b"PUBLISH"]);
    push_bulk(out, &[prefix.as_bytes(), topic.as_bytes()]);
    push_len(out, b'$', super::envelope::HEADER_LEN + payload.len());
    header.write_to(out);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

fn push_len(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    push_len(out, b'$', parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// A declared blob length over this is a protocol error, not a blob to skip: Redis's own
/// `proto-max-bulk-len` defaults to 512 MiB, and a few GiB of bytes to discard would be a
/// stall, not a message.
pub const MAX_DECLARED_BLOB: u64 = 1 << 32;

/// Bounds on what one frame from Redis may be. Every field is a hard limit: going over it is a
/// [`ProtocolError`], except [`Limits::max_bulk`] (see there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of aggregates (arrays, maps, sets, pushes, attributes), the top one
    /// counting as 1. Default 8: the deepest frame Redis sends us, the `HELLO` map with its
    /// `modules` array of maps, is 3 deep.
    pub max_depth: usize,
    /// Elements one aggregate may declare (a map of n pairs declares 2n). Default 4096:
    /// each of our `SUBSCRIBE`s is answered with one push per channel, and the `HELLO` map
    /// has 7 pairs.
    pub max_elements: u64,
    /// Longest blob (bulk string, blob error, verbatim string) kept, in bytes. A longer one
    /// is read and discarded as it arrives and the frame is reported as oversize
    /// ([`Inbound::OversizeMessage`] for a message). Default 16 MiB + envelope header.
    pub max_bulk: usize,
    /// Bytes of one frame kept in memory at most (headers, lines and blobs up to
    /// `max_bulk`; discarded oversize blobs do not count). Default `max_bulk` + 64 KiB.
    pub max_frame: usize,
    /// Longest line (a type byte's header, simple string, simple error, number), CRLF
    /// included, in bytes. Default 64 KiB.
    pub max_line: usize,
}

impl Limits {
    /// The defaults (see each field), with blobs kept up to `max_bulk` bytes, or 64 KiB if
    /// that is more. The floor keeps discarding cheap (cutting a blob out moves at most one
    /// frame's kept bytes, under twice the blob's own length); a message kept because of it
    /// is still checked against the payload limit by the reader.
    pub fn for_bulk(max_bulk: usize) -> Limits {
        let max_bulk = max_bulk.max(64 << 10);
        Limits {
            max_depth: 8,
            max_elements: 4096,
            max_bulk,
            max_frame: max_bulk.saturating_add(64 << 10),
            max_line: 64 << 10,
        }
    }
}

/// Redis sent bytes that are not RESP3, or a frame over the [`Limits`]. The link is given
/// up (and made again, with back-off): after a framing error nothing later on the byte
/// stream can be trusted to start a frame. Maps to [`io::ErrorKind::InvalidData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error from Redis: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// What one frame from Redis means to the backplane.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A pub/sub message push: `> message <channel> <data>`.
    Message {
        /// Full channel name, prefix included.
        channel: &'a [u8],
        /// The message bytes (an envelope, if a wsloop instance sent it).
        data: &'a [u8],
    },
    /// A message push whose data was longer than [`Limits::max_bulk`]: its bytes were
    /// discarded as they arrived.
    OversizeMessage {
        /// Full channel name, prefix included.
        channel: &'a [u8],
        /// The data's declared length, bytes.
        len: u64,
    },
    /// A `subscribe` / `unsubscribe` confirmation push (one per channel named in the
    /// command); `count` is the number of channels this connection is now subscribed to.
    Subscribed {
        /// True for `unsubscribe`.
        unsubscribe: bool,
        /// Channels subscribed after this one, as Redis counts them.
        count: i64,
    },
    /// A `message` push of the wrong shape (not three elements, or a channel or data that is
    /// not a string): counted as malformed.
    BadMessage,
    /// Any other push (client-tracking invalidations and the like): not a reply.
    OtherPush,
    /// An error reply (`-ERR ...` or a blob error), as text for the log (lossy UTF-8, at
    /// most 256 bytes of it).
    Error(String),
    /// Any other reply: `PUBLISH`'s receiver count, `PONG`, the `HELLO` map.
    Reply,
}

/// Type bytes.
const PUSH: u8 = b'>';
const ATTRIBUTE: u8 = b'|';

/// One open aggregate.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// Elements still to come.
    left: u64,
    /// An attribute: when it ends it does not count as an element of its parent.
    attribute: bool,
}

/// One leaf or aggregate the interpretation may look at.
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    kind: u8,
    /// Content, relative to the frame's first byte.
    from: usize,
    to: usize,
    /// A blob over `max_bulk`: discarded, this is its declared length.
    skipped: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next byte starts a type header line; `searched` bytes of the line were already
    /// looked at for its `\n`.
    Line { searched: usize },
    /// Inside a kept blob: `left` content bytes, then CRLF.
    Blob { left: usize },
    /// Inside a discarded blob: `left` content bytes, then CRLF.
    Skip { left: u64 },
    /// The CRLF after a blob's content.
    BlobEnd,
}

/// A resumable, bounded RESP3 decoder owning its read buffer (see the module docs).
///
/// Feed it with [`Decoder::read_with`] (or [`Decoder::feed`]), then call [`Decoder::next_frame`]
/// until it returns `Ok(None)`. After an `Err` the stream is unusable: [`Decoder::reset`]
/// before a new connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    /// First byte of the frame being scanned.
    start: usize,
    /// Bytes of `buf` before this are scanned.
    pos: usize,
    state: State,
    stack: Vec<Level>,
    /// The top-level frame's header and its first three elements.
    top: Part,
    /// Elements the top aggregate declared.
    top_len: u64,
    parts: [Part; 3],
    nparts: usize,
    /// Bytes of this frame kept (discarded blob content excluded).
    kept: usize,
    /// Set once an error was returned.
    broken: Option<ProtocolError>,
    /// What `read_with` reads into.
    scratch: Vec<u8>,
}

/// Bytes asked of each read into the decoder's buffer.
pub const READ_CHUNK: usize = 64 << 10;

impl Decoder {
    /// An empty decoder with these limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            buf: Vec::new(),
            start: 0,
            pos: 0,
            state: State::Line { searched: 0 },
            stack: Vec::new(),
            top: Part::default(),
            top_len: 0,
            parts: [Part::default(); 3],
            nparts: 0,
            kept: 0,
            broken: None,
            scratch: Vec::new(),
        }
    }

    /// Forgets everything buffered and scanned (for a new connection); keeps the limits.
    pub fn reset(&mut self) {
        let limits = self.limits;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if buf.capacity() > 4 * READ_CHUNK {
            buf = Vec::new();
        }
        let scratch = std::mem::take(&mut self.scratch);
        *self = Decoder::new(limits);
        self.buf = buf;
        self.scratch = scratch;
    }

    /// Bytes held: the unfinished frame's kept bytes plus what is not scanned yet. At most
    /// [`Limits::max_frame`] + [`READ_CHUNK`] after a [`Decoder::next_frame`] that returned
    /// `Ok(None)`.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Drops the frames already returned from the front of the buffer. Cost: the bytes
    /// after them, at most one frame's kept part plus one read (see the module docs).
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.drain(..self.start);
        self.pos -= self.start;
        self.start = 0;
        if self.buf.capacity() > 4 * READ_CHUNK && self.buf.len() < READ_CHUNK {
            // One big message should not pin its buffer for the life of the connection.
            self.buf.shrink_to(2 * READ_CHUNK);
        }
    }

    /// Appends up to [`READ_CHUNK`] bytes that `read` puts in the slice it is given, and
    /// returns how many (0: end of stream). Errors are `read`'s. The slice is a scratch
    /// buffer zeroed once, so a read of a few bytes costs a few bytes, not a chunk's memset.
    pub fn read_with(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.scratch.len() != READ_CHUNK {
            self.scratch = vec![0; READ_CHUNK];
        }
        let n = read(&mut self.scratch)?.min(READ_CHUNK);
        self.compact();
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Appends `bytes` (tests and the fuzz target; the reader uses [`Decoder::read_with`]).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if the bytes so far hold one. Resumes where the previous
    /// call stopped; each byte is scanned once.
    pub fn next_frame(&mut self) -> Result<Option<Inbound<'_>>, ProtocolError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        match self.scan() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                self.broken = Some(e.clone());
                return Err(e);
            }
        }
        let frame = self.start;
        self.start = self.pos;
        let (top, parts, nparts, top_len) = (self.top, self.parts, self.nparts, self.top_len);
        self.kept = 0;
        self.nparts = 0;
        Ok(Some(interpret(
            &self.buf[frame..self.pos],
            top,
            &parts[..nparts],
            top_len,
        )))
    }

    /// Scans on from `pos`; true when a whole frame ends at `pos`.
    fn scan(&mut self) -> Result<bool, ProtocolError> {
        loop {
            match self.state {
                State::Line { searched } => {
                    let from = self.pos + searched;
                    let avail = &self.buf[from..];
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        let searched = self.buf.len() - self.pos;
                        if searched > self.limits.max_line {
                            return Err(bad(format!(
                                "a line longer than {} bytes",
                                self.limits.max_line
                            )));
                        }
                        self.state = State::Line { searched };
                        return Ok(false);
                    };
                    let end = from + nl + 1;
                    if end - self.pos > self.limits.max_line {
                        return Err(bad(format!(
                            "a line longer than {} bytes",
                            self.limits.max_line
                        )));
                    }
                    if end - self.pos < 3 || self.buf[end - 2] != b'\r' {
                        return Err(bad("a line not ended by CRLF".into()));
                    }
                    let line_start = self.pos;
                    self.pos = end;
                    self.state = State::Line { searched: 0 };
                    self.add_kept(end - line_start)?;
                    if self.header(line_start, end - 2)? {
                        return Ok(true);
                    }
                }
                State::Blob { left } => {
                    let n = left.min(self.buf.len() - self.pos);
                    self.pos += n;
                    if n < left {
                        self.state = State::Blob { left: left - n };
                        return Ok(false);
                    }
                    self.state = State::BlobEnd;
                }
                State::Skip { left } => {
                    let avail = self.buf.len() - self.pos;
                    if (avail as u64) < left {
                        // Everything after `pos` is this blob's content: drop it at once,
                        // so a huge blob never sits in memory.
                        self.buf.truncate(self.pos);
                        self.state = State::Skip {
                            left: left - avail as u64,
                        };
                        return Ok(false);
                    }
                    // The rest of it is here, followed by later bytes. Cut it out by moving
                    // this frame's earlier bytes up over it (the frame's kept bytes, at most
                    // `max_frame`, for a blob longer than `max_bulk`: linear overall), so
                    // later bytes never move, nothing skipped stays in memory, and offsets
                    // relative to the frame's start stay valid.
                    let left = left as usize;
                    self.buf
                        .copy_within(self.start..self.pos, self.start + left);
                    self.start += left;
                    self.pos += left;
                    self.state = State::BlobEnd;
                }
                State::BlobEnd => {
                    if self.buf.len() - self.pos < 2 {
                        return Ok(false);
                    }
                    if &self.buf[self.pos..self.pos + 2] != b"\r\n" {
                        return Err(bad("a blob not followed by CRLF".into()));
                    }
                    self.pos += 2;
                    self.state = State::Line { searched: 0 };
                    if self.element_done() {
                        return Ok(true);
                    }
                }
            }
        }
    }

    fn add_kept(&mut self, n: usize) -> Result<(), ProtocolError> {
        self.kept += n;
        if self.kept > self.limits.max_frame {
            return Err(bad(format!("a frame over {} bytes", self.limits.max_frame)));
        }
        Ok(())
    }

    /// Where the next element's `Part` goes, if the interpretation wants it: the top frame,
    /// or one of the top aggregate's first three elements.
    fn slot(&mut self) -> Option<&mut Part> {
        match self.stack.as_slice() {
            [] => Some(&mut self.top),
            [only] if !only.attribute && self.nparts < 3 => {
                self.nparts += 1;
                Some(&mut self.parts[self.nparts - 1])
            }
            _ => None,
        }
    }

    /// Handles one header line `buf[at..end]` (type byte first, CRLF excluded); true when
    /// it completes the frame.
    fn header(&mut self, at: usize, end: usize) -> Result<bool, ProtocolError> {
        let kind = self.buf[at];
        let rel = |p: usize| p - self.start;
        let (from, to) = (rel(at + 1), rel(end));
        match kind {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
                let body = &self.buf[at + 1..end];
                let ok = match kind {
                    b':' => parse_int(body).is_some(),
                    b'#' => body == b"t" || body == b"f",
                    b'_' => body.is_empty(),
                    _ => true,
                };
                if !ok {
                    return Err(bad(format!(
                        "a bad {:?} line",
                        String::from_utf8_lossy(&[kind])
                    )));
                }
                if self.stack.is_empty() {
                    self.nparts = 0;
                }
                if let Some(p) = self.slot() {
                    *p = Part {
                        kind,
                        from,
                        to,
                        skipped: None,
                    };
                }
                Ok(self.element_done())
            }
            b'$' | b'!' | b'=' => {
                let body = &self.buf[at + 1..end];
                if self.stack.is_empty() {
                    self.nparts = 0;
                }
                if kind == b'$' && body == b"-1" {
                    // RESP2 null bulk string.
                    if let Some(p) = self.slot() {
                        *p = Part {
                            kind: b'_',
                            from,
                            to: from,
                            skipped: None,
                        };
                    }
                    return Ok(self.element_done());
                }
                let len = match parse_len(body) {
                    Some(n) if n <= MAX_DECLARED_BLOB => n,
                    Some(n) => return Err(bad(format!("a blob of {n} bytes declared"))),
                    None if body == b"?" => {
                        return Err(bad("a streamed string (never sent by Redis)".into()))
                    }
                    None => return Err(bad("a bad blob length".into())),
                };
                let content = rel(end + 2);
                let fits = len as usize <= self.limits.max_bulk
                    && self.kept + len as usize + 2 <= self.limits.max_frame;
                let skipped = if len as usize > self.limits.max_bulk {
                    // Its CRLF is kept like any blob's (it is scanned where it stands).
                    self.add_kept(2)?;
                    self.state = State::Skip { left: len };
                    Some(len)
                } else if fits {
                    self.add_kept(len as usize + 2)?;
                    self.state = State::Blob { left: len as usize };
                    None
                } else {
                    return Err(bad(format!("a frame over {} bytes", self.limits.max_frame)));
                };
                let to = if skipped.is_some() {
                    content
                } else {
                    content + len as usize
                };
                if let Some(p) = self.slot() {
                    *p = Part {
                        kind,
                        from: content,
                        to,
                        skipped,
                    };
                }
                Ok(false)
            }
            b'*' | b'~' | b'%' | PUSH | ATTRIBUTE => {
                let body = &self.buf[at + 1..end];
                if self.stack.is_empty() {
                    self.nparts = 0;
                }
                if kind == b'*' && body == b"-1" {
                    // RESP2 null array.
                    if let Some(p) = self.slot() {
                        *p = Part {
                            kind: b'_',
                            from,
                            to: from,
                            skipped: None,
                        };
                    }
                    return Ok(self.element_done());
                }
                let n = match parse_len(body) {
                    Some(n) => n,
                    None if body == b"?" => {
                        return Err(bad("a streamed aggregate (never sent by Redis)".into()))
                    }
                    None => return Err(bad("a bad aggregate length".into())),
                };
                if n > self.limits.max_elements {
                    return Err(bad(format!("an aggregate of {n} elements declared")));
                }
                let n = if matches!(kind, b'%' | ATTRIBUTE) {
                    2 * n
                } else {
                    n
                };
                if n > self.limits.max_elements {
                    return Err(bad(format!("an aggregate of {n} elements declared")));
                }
                if kind != ATTRIBUTE {
                    if self.stack.is_empty() {
                        self.top_len = n;
                    }
                    if let Some(p) = self.slot() {
                        *p = Part {
                            kind,
                            from,
                            to: from,
                            skipped: None,
                        };
                    }
                }
                if n == 0 {
                    // An empty attribute is no element at all; an empty aggregate is one.
                    return Ok(kind != ATTRIBUTE && self.element_done());
                }
                if self.stack.len() >= self.limits.max_depth {
                    return Err(bad(format!(
                        "aggregates nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                self.stack.push(Level {
                    left: n,
                    attribute: kind == ATTRIBUTE,
                });
                Ok(false)
            }
            other => Err(bad(format!("unknown type byte 0x{other:02x}"))),
        }
    }

    /// One element (leaf or aggregate) ended: counts it in its parent, closing every
    /// aggregate it completes. True when that completes the top frame.
    fn element_done(&mut self) -> bool {
        while let Some(level) = self.stack.last_mut() {
            level.left -= 1;
            if level.left > 0 {
                return false;
            }
            let attribute = level.attribute;
            self.stack.pop();
            if attribute {
                // The attribute annotates the element that follows: that one still counts.
                return false;
            }
        }
        true
    }
}

fn bad(why: String) -> ProtocolError {
    ProtocolError(why)
}

/// A non-negative decimal length, no sign, no leading junk.
fn parse_len(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A RESP integer: optional sign, decimal digits, fits in i64.
fn parse_int(b: &[u8]) -> Option<i64> {
    let digits = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Longest error text kept for the log.
const ERROR_TEXT: usize = 256;

/// Text from Redis made fit for one log line: lossy UTF-8, control characters (newlines,
/// terminal escapes) escaped, so a hostile error reply cannot forge log lines.
pub fn log_safe(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<char>>(),
            false => vec![c],
        })
        .collect()
}

/// What a complete frame (`frame`, with its recorded parts) means.
fn interpret<'a>(frame: &'a [u8], top: Part, parts: &[Part], top_len: u64) -> Inbound<'a> {
    let text = |p: &Part| match p.kind {
        b'$' | b'+' if p.skipped.is_none() => Some(&frame[p.from..p.to]),
        _ => None,
    };
    match top.kind {
        PUSH => {
            let first = parts.first().and_then(text);
            if top_len != 3 || parts.len() != 3 {
                return match first {
                    Some(b"message") => Inbound::BadMessage,
                    _ => Inbound::OtherPush,
                };
            }
            match (text(&parts[0]), text(&parts[1])) {
                (Some(b"message"), Some(channel)) if parts[2].kind == b'$' => {
                    match parts[2].skipped {
                        Some(len) => Inbound::OversizeMessage { channel, len },
                        None => Inbound::Message {
                            channel,
                            data: &frame[parts[2].from..parts[2].to],
                        },
                    }
                }
                (Some(verb @ (b"subscribe" | b"unsubscribe")), Some(_))
                    if parts[2].kind == b':' =>
                {
                    match parse_int(&frame[parts[2].from..parts[2].to]) {
                        Some(count) => Inbound::Subscribed {
                            unsubscribe: verb == b"unsubscribe",
                            count,
                        },
                        None => Inbound::OtherPush,
                    }
                }
                (Some(b"message"), _) => Inbound::BadMessage,
                _ => Inbound::OtherPush,
            }
        }
        b'-' | b'!' => {
            let body = &frame[top.from..top.to];
            let cut = &body[..body.len().min(ERROR_TEXT)];
            Inbound::Error(log_safe(cut))
        }
        _ => Inbound::Reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::envelope;

    fn limits() -> Limits {
        Limits::for_bulk(1 << 20)
    }

    /// Every frame `input` holds, decoded in one piece, as text.
    fn all(input: &[u8], limits: Limits) -> Vec<String> {
        let mut d = Decoder::new(limits);
        d.feed(input);
        let mut out = Vec::new();
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(format!("{f:?}")),
                Ok(None) => return out,
                Err(e) => {
                    out.push(format!("{e}"));
                    return out;
                }
            }
        }
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        push_command(&mut out, &[b"SUBSCRIBE", b"wsloop:a", b""]);
        assert_eq!(
            out,
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$8\r\nwsloop:a\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn publish_carries_envelope_and_payload() {
        let mut out = Vec::new();
        let h = Header {
            instance: 7,
            seq: 9,
            text: true,
        };
        push_publish(&mut out, "wsloop:", "room", &h, b"hi\r\n");
        let mut expect = b"*3\r\n$7\r\nPUBLISH\r\n$11\r\nwsloop:room\r\n$24\r\n".to_vec();
        h.write_to(&mut expect);
        expect.extend_from_slice(b"hi\r\n\r\n");
        assert_eq!(out, expect);
        // What Redis would push back for it decodes to the same envelope.
        let mut push = b">3\r\n$7\r\nmessage\r\n$11\r\nwsloop:room\r\n$24\r\n".to_vec();
        push.extend_from_slice(&expect[expect.len() - 26..]);
        let mut d = Decoder::new(limits());
        d.feed(&push);
        match d.next_frame().unwrap() {
            Some(Inbound::Message { channel, data }) => {
                assert_eq!(channel, b"wsloop:room");
                assert_eq!(envelope::decode(data).unwrap(), (h, &b"hi\r\n"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn split_anywhere_gives_the_same_frames() {
        let input: &[u8] = b">3\r\n$9\r\nsubscribe\r\n$8\r\nwsloop:a\r\n:2\r\n\
            %2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nmodules\r\n*0\r\n\
            |1\r\n+ttl\r\n:3\r\n:7\r\n-NOPERM no\r\n+PONG\r\n*-1\r\n$-1\r\n_\r\n#t\r\n,1.5\r\n\
            >3\r\n+message\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n";
        let whole = all(input, limits());
        assert_eq!(whole.len(), 11, "{whole:?}");
        assert!(whole.iter().all(|f| !f.contains("error")), "{whole:?}");
        for cut in 0..input.len() {
            let mut d = Decoder::new(limits());
            let mut got = Vec::new();
            for piece in [&input[..cut], &input[cut..]] {
                d.feed(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(format!("{f:?}"));
                }
            }
            assert_eq!(got, whole, "cut at {cut}");
        }
        // One byte at a time.
        let mut d = Decoder::new(limits());
        let mut got = Vec::new();
        for b in input {
            d.feed(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(format!("{f:?}"));
            }
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn errors_replies_and_garbage() {
        let got = all(b"-ERR unknown command 'HELLO'\r\n:1\r\n+PONG\r\n", limits());
        assert_eq!(
            got,
            ["Error(\"ERR unknown command 'HELLO'\")", "Reply", "Reply"]
        );
        for garbage in [
            &b"?what\r\n"[..],
            b"$?\r\n",
            b"*?\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b":12a\r\n",
            b"#x\r\n",
            b"+ok\n",
            b"\r\n",
            b"*99999999999999999999\r\n",
            b"$99999999999\r\n",
        ] {
            let got = all(garbage, limits());
            assert!(
                got.last().is_some_and(|l| l.starts_with("protocol error")),
                "{:?}: {got:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let nested = b">1\r\n".repeat(1 << 18);
        let got = all(&nested, limits());
        assert_eq!(
            got,
            ["protocol error from Redis: aggregates nested deeper than 8"]
        );
        // Depth 8 is fine.
        let mut ok = b"*1\r\n".repeat(7);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(all(&ok, limits()), ["Reply"]);
    }

    #[test]
    fn limits_hold() {
        let l = Limits {
            max_depth: 4,
            max_elements: 10,
            max_bulk: 100,
            max_frame: 300,
            max_line: 32,
        };
        let long_line = [b"+".as_slice(), &[b'a'; 40], b"\r\n"].concat();
        assert!(all(&long_line, l)[0].contains("line longer"));
        // A line that never ends is refused once over the limit, not buffered.
        let mut d = Decoder::new(l);
        d.feed(&[b'+'; 33]);
        assert!(d.next_frame().is_err());
        assert!(all(b"*11\r\n", l)[0].contains("11 elements"));
        assert!(all(b"%6\r\n", l)[0].contains("12 elements"));
        // Three 99-byte blobs are over the frame's 300 bytes.
        let mut big = b"*3\r\n".to_vec();
        for _ in 0..3 {
            big.extend_from_slice(b"$99\r\n");
            big.extend_from_slice(&[b'x'; 99]);
            big.extend_from_slice(b"\r\n");
        }
        assert!(all(&big, l)[0].contains("frame over 300"));
    }

    #[test]
    fn oversize_message_is_skipped_not_buffered() {
        let l = Limits {
            max_bulk: 1000,
            max_frame: 2000,
            ..Limits::for_bulk(0)
        };
        let mut d = Decoder::new(l);
        d.feed(b">3\r\n$7\r\nmessage\r\n$4\r\nwsloop:x\r\n");
        assert!(d.next_frame().is_err(), "4-byte channel given 8 bytes");
        let mut d = Decoder::new(l);
        d.feed(b">3\r\n$7\r\nmessage\r\n$8\r\nwsloop:x\r\n$100000\r\n");
        assert_eq!(d.next_frame().unwrap(), None);
        for _ in 0..100 {
            d.feed(&[7u8; 1000]);
            assert_eq!(d.next_frame().unwrap(), None);
            // The header and at most the last piece fed, never the 100 000 bytes.
            assert!(d.buffered() <= 1000 + 64, "{}", d.buffered());
        }
        d.feed(b"\r\n:5\r\n");
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Inbound::OversizeMessage {
                channel: b"wsloop:x",
                len: 100_000
            })
        );
        assert_eq!(d.next_frame().unwrap(), Some(Inbound::Reply));
        assert_eq!(d.next_frame().unwrap(), None);
        // Whole oversize blobs inside one piece are cut out too, not kept: a frame of many
        // of them stays within the frame limit.
        let mut d = Decoder::new(l);
        let mut many = b"*100\r\n".to_vec();
        for _ in 0..100 {
            many.extend_from_slice(b"$1500\r\n");
            many.extend_from_slice(&[b'y'; 1500]);
            many.extend_from_slice(b"\r\n");
        }
        d.feed(&many);
        assert_eq!(d.next_frame().unwrap(), Some(Inbound::Reply));
        d.feed(&many[..many.len() - 3]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert!(d.buffered() < 2000, "{}", d.buffered());
    }

    #[test]
    fn error_text_cannot_forge_log_lines() {
        let mut d = Decoder::new(limits());
        d.feed(b"!12\r\nERR a\nWARN b\r\n-\x1b[31mred\r\n");
        let Some(Inbound::Error(e)) = d.next_frame().unwrap() else {
            panic!()
        };
        assert_eq!(e, "ERR a\\nWARN b");
        let Some(Inbound::Error(e)) = d.next_frame().unwrap() else {
            panic!()
        };
        assert_eq!(e, "\\u{1b}[31mred");
    }

    #[test]
    fn subscription_pushes() {
        let got = all(
            b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n>2\r\n$4\r\nping\r\n$0\r\n\r\n",
            limits(),
        );
        assert_eq!(
            got,
            [
                "Subscribed { unsubscribe: false, count: 1 }",
                "Subscribed { unsubscribe: true, count: 0 }",
                "OtherPush"
            ]
        );
        assert_eq!(
            all(
                b">2\r\n$7\r\nmessage\r\n$1\r\na\r\n>3\r\n+message\r\n:1\r\n$0\r\n\r\n",
                limits()
            ),
            ["BadMessage", "BadMessage"]
        );
    }
}
