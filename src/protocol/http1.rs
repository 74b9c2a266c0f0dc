//! HTTP/1.1 requests (RFC 9112), sans-IO: finding the end of a request head in one pass,
//! parsing it strictly enough that no two readers can disagree about where it ends, and
//! reading past (discarding) a request body so it is never taken for the next request.
//!
//! The strictness is the point. Request smuggling lives in the gaps between a lenient
//! parser and a proxy in front of it: duplicate `Content-Length`, both `Content-Length`
//! and `Transfer-Encoding`, a transfer coding other than a final `chunked`, a chunk size
//! line that one side reads differently. Each of those is refused here with 400 (or 501 for
//! a coding we do not know) and the connection is closed (RFC 9112 §6.3, §11.2).

use std::io::Write;

pub use super::error::HttpError;

/// Upper bound on header lines, also the size of the parse array on the stack.
pub const MAX_HEADERS: usize = 64;

/// Longest chunk extension (or trailer section) accepted in a chunked body; longer ones
/// are a 400. They carry nothing wsloop uses, and an unbounded one is a slowloris.
pub const MAX_CHUNK_METADATA: u32 = 4096;

/// Header fields that must appear at most once in a request. Two `Host` or
/// `Content-Length` lines are how requests get smuggled (RFC 9112 §3.2, §6.3); two
/// `Sec-WebSocket-Key`/`-Version` lines are forbidden by RFC 6455 §11.3.1/§11.3.5; two
/// `Origin` lines would let an allow-list check one and the application read another
/// (RFC 6454 §7.3); `Transfer-Encoding` may legally be split over lines, but wsloop only
/// accepts one coding list, so a split one is refused rather than re-assembled.
pub const SINGLETON_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "origin",
];

/// Looks for the blank line ending the head. `scanned` is how far a previous call got, so
/// a head arriving a byte at a time is scanned once in total, not once per byte.
/// Returns `Ok(Some(head_len))`, or `Ok(None)` after updating `scanned`; a head not ended
/// within `max_head` bytes is [`HttpError::HeadTooLarge`] (431).
pub fn find_head_end(
    buf: &[u8],
    scanned: &mut usize,
    max_head: usize,
) -> Result<Option<usize>, HttpError> {
    let limit = buf.len().min(max_head);
    // Back up three bytes: the terminator may straddle the previous boundary.
    let mut i = scanned.saturating_sub(3);
    while i < limit {
        match buf[i..limit].iter().position(|&b| b == b'\n') {
            None => break,
            Some(p) => {
                let nl = i + p;
                // "\r\n\r\n", or a bare-LF line followed by an empty CRLF line.
                if nl >= 2 && &buf[nl - 2..=nl] == b"\n\r\n" {
                    return Ok(Some(nl + 1));
                }
                // Tolerate bare LF line endings, as httparse does.
                if nl >= 1 && buf[nl - 1] == b'\n' {
                    return Ok(Some(nl + 1));
                }
                i = nl + 1;
            }
        }
    }
    if buf.len() >= max_head {
        return Err(HttpError::HeadTooLarge);
    }
    *scanned = buf.len();
    Ok(None)
}

/// How the length of a request's body is determined (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body (no `Content-Length`, or `Content-Length: 0`, and no `Transfer-Encoding`).
    None,
    /// `Content-Length: n`, n > 0.
    Length(u64),
    /// `Transfer-Encoding` whose final coding is `chunked`.
    Chunked,
}

/// A parsed request head, borrowing from the receive buffer.
#[derive(Debug)]
pub struct Request<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a str,
    /// The request target's path, e.g. `/chat` (from the origin form, or the path of the
    /// absolute form; `*` for `OPTIONS *`).
    pub path: &'a str,
    /// The part after `?`, if any.
    pub query: Option<&'a str>,
    /// HTTP minor version (0 or 1).
    pub version: u8,
    /// Every header line in order, names as sent, values raw.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Whether and how a body follows the head.
    pub body: BodyLength,
}

impl<'a> Request<'a> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The header as text, if present and UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `Origin` header (RFC 6454), which a browser sends with every WebSocket upgrade.
    pub fn origin(&self) -> Option<&'a str> {
        self.header_str("origin")
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&'a str> {
        self.header_str("host")
    }

    /// Every comma-separated token of every header named `name`, trimmed.
    pub fn tokens<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    }

    /// Whether a header named `name` lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether this request asks for a WebSocket upgrade (it has `Upgrade: websocket`).
    pub fn wants_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket")
    }

    /// Whether the connection may stay open after the response (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`. A request
    /// whose body the client will only send after `100 Continue` is answered and closed,
    /// since after a final response the client may or may not send that body.
    pub fn keep_alive(&self) -> bool {
        let persistent = if self.version == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        };
        let awaits_continue =
            self.body != BodyLength::None && self.has_token("expect", "100-continue");
        persistent && !awaits_continue
    }

    /// Whether the method is `HEAD`, whose responses never carry a body (RFC 9110 §9.3.2).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Parses a complete request head (as delimited by [`find_head_end`]) and checks its
/// framing: errors are the 400/501/431 answers of RFC 9112 §3.2, §6.1 and §6.3, after
/// which the connection must be closed.
pub fn parse_request(head: &[u8]) -> Result<Request<'_>, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed),
    }
    let method = req.method.ok_or(HttpError::Malformed)?;
    let target = req.path.ok_or(HttpError::Malformed)?;
    let version = req.version.ok_or(HttpError::Malformed)?;
    let headers: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    for name in SINGLETON_HEADERS {
        if headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .nth(1)
            .is_some()
        {
            return Err(HttpError::DuplicateHeader);
        }
    }
    let (path, query) = split_target(method, target)?;
    let mut request = Request {
        method,
        path,
        query,
        version,
        headers,
        body: BodyLength::None,
    };
    // RFC 9112 §3.2: exactly one valid Host in HTTP/1.1 (duplicates are refused above).
    match request.header("host") {
        Some(h) if valid_host(h) => {}
        Some(_) => return Err(HttpError::BadHost),
        None if version >= 1 => return Err(HttpError::BadHost),
        None => {}
    }
    request.body = body_length(&request)?;
    Ok(request)
}

/// Origin form `/path?query`, the path of an absolute form (RFC 9112 §3.2.2 says a server
/// must accept it), or `*` for OPTIONS. A fragment never belongs in a request target.
fn split_target<'a>(
    method: &str,
    target: &'a str,
) -> Result<(&'a str, Option<&'a str>), HttpError> {
    if target.contains('#') {
        return Err(HttpError::BadTarget);
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(("*", None))
        } else {
            Err(HttpError::BadTarget)
        };
    }
    let origin_form = if target.starts_with('/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(HttpError::BadTarget)?;
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        if path_start == 0 {
            return Err(HttpError::BadTarget); // no authority
        }
        match &rest[path_start..] {
            "" => "/",
            p if p.starts_with('?') => return Err(HttpError::BadTarget),
            p => p,
        }
    };
    Ok(match origin_form.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin_form, None),
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `uri-host [ ":" port ]` characters (RFC 3986 reg-name, IP literals, port); empty is
/// allowed (RFC 9112 §3.2, a target without authority). Whitespace, `/`, `@` and
/// controls are not.
fn valid_host(h: &[u8]) -> bool {
    h.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// RFC 9112 §6.1 and §6.3.
fn body_length(req: &Request<'_>) -> Result<BodyLength, HttpError> {
    let cl = req.header("content-length");
    let te = req.header("transfer-encoding");
    match (te, cl) {
        (Some(_), Some(_)) => Err(HttpError::ConflictingFraming),
        // An HTTP/1.0 message with Transfer-Encoding has faulty framing (§6.1).
        (Some(_), None) if req.version == 0 => Err(HttpError::ConflictingFraming),
        (Some(te), None) => transfer_coding(te),
        (None, Some(cl)) => match parse_content_length(cl)? {
            0 => Ok(BodyLength::None),
            n => Ok(BodyLength::Length(n)),
        },
        (None, None) => Ok(BodyLength::None),
    }
}

/// `1*DIGIT`, nothing else: no sign, no spaces inside, no list (`5, 5`), at most 18
/// digits so it fits a u64 without overflow.
fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    Ok(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Codings wsloop can skip over: it never reads a request body, only discards it, so any
/// registered content coding applied before the final `chunked` is harmless.
const KNOWN_CODINGS: [&[u8]; 5] = [b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"];

fn transfer_coding(te: &[u8]) -> Result<BodyLength, HttpError> {
    let codings: Vec<&[u8]> = te.split(|&b| b == b',').map(|c| c.trim_ascii()).collect();
    let (last, before) = codings.split_last().ok_or(HttpError::BadTransferEncoding)?;
    // Chunked must be final and applied once (RFC 9112 §6.1, §6.3 item 4).
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(HttpError::BadTransferEncoding);
    }
    for c in before {
        if c.eq_ignore_ascii_case(b"chunked") || c.is_empty() {
            return Err(HttpError::BadTransferEncoding);
        }
        if !KNOWN_CODINGS.iter().any(|k| c.eq_ignore_ascii_case(k)) {
            return Err(HttpError::UnknownTransferCoding);
        }
    }
    Ok(BodyLength::Chunked)
}

/// Where a chunked body's reader is (RFC 9112 §7.1). Strict: CRLF only, hex sizes of at
/// most 15 digits, bounded extensions and trailers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex digits of a chunk size; `digits` so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: optional whitespace, then `;` and extensions (`named`), then CR.
    Ext {
        size: u64,
        len: u32,
        named: bool,
    },
    /// Expecting the LF of the size line.
    SizeLf {
        size: u64,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the CR, then the LF, after chunk data.
    DataCr,
    DataLf,
    /// Inside the trailer section: `line` bytes of the current line, `total` overall.
    Trailer {
        line: u32,
        total: u32,
    },
    /// Expecting the LF ending a trailer line (`empty`: the line was empty, the body ends).
    TrailerLf {
        empty: bool,
        total: u32,
    },
}

/// Reads past a request body without keeping it: the server answers requests it does not
/// read the body of, but the body's bytes must still be consumed so they are never parsed
/// as the next request. Bounded by a byte budget (framing included): past it, 413.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReader {
    state: BodyState,
    /// Bytes the body may still take before it is too large.
    budget: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Length(u64),
    Chunked(Chunk),
    Done,
}

impl BodyReader {
    /// A reader for `len`, or `None` when there is no body. A declared length above
    /// `max_body` is refused at once ([`HttpError::BodyTooLarge`], 413).
    pub fn new(len: BodyLength, max_body: u64) -> Result<Option<Self>, HttpError> {
        let state = match len {
            BodyLength::None => return Ok(None),
            BodyLength::Length(n) if n > max_body => return Err(HttpError::BodyTooLarge),
            BodyLength::Length(n) => BodyState::Length(n),
            BodyLength::Chunked => BodyState::Chunked(Chunk::Size { size: 0, digits: 0 }),
        };
        Ok(Some(BodyReader {
            state,
            budget: max_body,
        }))
    }

    /// Whether the whole body has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// Consumes body bytes from the start of `input`; returns how many were body (the
    /// rest, once [`is_done`](Self::is_done), is the next request).
    pub fn consume(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        match &mut self.state {
            BodyState::Done => Ok(0),
            BodyState::Length(remaining) => {
                let n = (*remaining).min(input.len() as u64);
                *remaining -= n;
                if *remaining == 0 {
                    self.state = BodyState::Done;
                }
                Ok(n as usize)
            }
            BodyState::Chunked(chunk) => {
                let mut chunk = *chunk;
                let mut i = 0;
                while i < input.len() {
                    if let Chunk::Data { remaining } = &mut chunk {
                        let n = (*remaining).min((input.len() - i) as u64);
                        *remaining -= n;
                        i += n as usize;
                        if *remaining == 0 {
                            chunk = Chunk::DataCr;
                        }
                        continue;
                    }
                    // Bytes before a framing error count against the budget first, so
                    // the answer (413 or 400) does not depend on how the input was split.
                    let stepped = match step(chunk, input[i]) {
                        Ok(s) => s,
                        Err(e) => {
                            self.spend(i as u64)?;
                            return Err(e);
                        }
                    };
                    match stepped {
                        Some(next) => chunk = next,
                        None => {
                            i += 1;
                            self.spend(i as u64)?;
                            self.state = BodyState::Done;
                            return Ok(i);
                        }
                    }
                    i += 1;
                }
                self.spend(i as u64)?;
                self.state = BodyState::Chunked(chunk);
                Ok(i)
            }
        }
    }

    fn spend(&mut self, n: u64) -> Result<(), HttpError> {
        self.budget = self.budget.checked_sub(n).ok_or(HttpError::BodyTooLarge)?;
        Ok(())
    }
}

/// One framing byte of a chunked body; `None` when it ended the body.
fn step(chunk: Chunk, b: u8) -> Result<Option<Chunk>, HttpError> {
    use Chunk::*;
    let bad = Err(HttpError::BadChunk);
    Ok(Some(match chunk {
        Size { size, digits } => match (b as char).to_digit(16) {
            Some(d) if digits < 15 => Size {
                size: size << 4 | u64::from(d),
                digits: digits + 1,
            },
            Some(_) => return bad,
            None if digits == 0 => return bad,
            None => match b {
                b'\r' => SizeLf { size },
                b';' => Ext {
                    size,
                    len: 1,
                    named: true,
                },
                b' ' | b'\t' => Ext {
                    size,
                    len: 1,
                    named: false,
                },
                _ => return bad,
            },
        },
        Ext { size, len, named } => match b {
            b'\r' => SizeLf { size },
            b'\n' => return bad,
            _ if len >= MAX_CHUNK_METADATA => return bad,
            // Before the `;` only whitespace (BWS): `1 2` is not a chunk size.
            b';' => Ext {
                size,
                len: len + 1,
                named: true,
            },
            b' ' | b'\t' => Ext {
                size,
                len: len + 1,
                named,
            },
            _ if !named => return bad,
            _ => Ext {
                size,
                len: len + 1,
                named,
            },
        },
        SizeLf { size } => match (b, size) {
            (b'\n', 0) => Trailer { line: 0, total: 0 },
            (b'\n', size) => Data { remaining: size },
            _ => return bad,
        },
        Data { .. } => unreachable!("data bytes are consumed in bulk"),
        DataCr if b == b'\r' => DataLf,
        DataLf if b == b'\n' => Size { size: 0, digits: 0 },
        DataCr | DataLf => return bad,
        Trailer { line, total } => match b {
            b'\r' => TrailerLf {
                empty: line == 0,
                total,
            },
            b'\n' => return bad,
            _ if total >= MAX_CHUNK_METADATA => return bad,
            _ => Trailer {
                line: line + 1,
                total: total + 1,
            },
        },
        TrailerLf { empty, total } => match b {
            b'\n' if empty => return Ok(None),
            b'\n' => Trailer { line: 0, total },
            _ => return bad,
        },
    }))
}

/// The standard reason phrase for the statuses wsloop sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// How a response ends the exchange: keep the connection for the next request, or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// `Connection: keep-alive`.
    KeepAlive,
    /// `Connection: close`; the server closes after the response.
    Close,
}

/// Appends a complete HTTP/1.1 response. For a `HEAD` request (`head_only`) the body is
/// left out but `Content-Length` still says what a GET would have got (RFC 9110 §9.3.2).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    persist: Persist,
    head_only: bool,
) {
    write_response_head(out, status, headers, body.len() as u64, persist);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends the head of an HTTP/1.1 response whose body is `content_length` bytes.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    content_length: u64,
    persist: Persist,
) {
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
    let mut has_type = false;
    for (k, v) in headers {
        has_type |= k.eq_ignore_ascii_case("content-type");
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !has_type {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    let _ = write!(out, "Content-Length: {content_length}\r\n");
    out.extend_from_slice(match persist {
        Persist::Close => b"Connection: close\r\n\r\n",
        Persist::KeepAlive => b"Connection: keep-alive\r\n\r\n",
    });
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
