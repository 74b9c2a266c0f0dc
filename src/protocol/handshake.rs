//! The opening handshake (RFC 6455 §4.2): finding the end of the request head in one
//! pass, parsing it with `httparse`, validating an upgrade and writing the responses.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::io::Write;

/// RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Upper bound on header lines, also the size of the parse array on the stack.
pub const MAX_HEADERS: usize = 64;

/// A refused request, carrying the HTTP status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not parseable as an HTTP/1.x request head.
    Malformed,
    /// An upgrade that is not a GET, or a static request that is not GET/HEAD.
    MethodNotAllowed,
    /// HTTP/1.0 upgrade, missing Host, `Connection` without `upgrade`, and the like.
    BadUpgrade,
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64.
    BadKey,
    /// `Sec-WebSocket-Version` other than 13 (answered with the supported version).
    UnsupportedVersion,
    /// Head larger than the configured limit.
    HeadTooLarge,
    /// More header lines than [`MAX_HEADERS`].
    TooManyHeaders,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed | HttpError::BadUpgrade | HttpError::BadKey => 400,
            HttpError::MethodNotAllowed => 405,
            HttpError::UnsupportedVersion => 426,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
        }
    }

    fn body(self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed request\n",
            HttpError::MethodNotAllowed => "method not allowed\n",
            HttpError::BadUpgrade => "invalid websocket upgrade request\n",
            HttpError::BadKey => "invalid Sec-WebSocket-Key\n",
            HttpError::UnsupportedVersion => "unsupported Sec-WebSocket-Version (13 is)\n",
            HttpError::HeadTooLarge => "request header too large\n",
            HttpError::TooManyHeaders => "too many request header fields\n",
        }
    }

    /// Appends the complete response (with `Content-Length` and `Connection: close`).
    pub fn write_response(self, out: &mut Vec<u8>) {
        let extra: &[(&str, &str)] = match self {
            HttpError::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            HttpError::MethodNotAllowed => &[("Allow", "GET, HEAD")],
            _ => &[],
        };
        write_response(out, self.status(), extra, self.body().as_bytes(), true);
    }
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
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Appends a complete HTTP/1.1 response. With `close`, it says `Connection: close`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    write_response_head(out, status, headers, body.len() as u64, close);
    out.extend_from_slice(body);
}

/// Appends the head of an HTTP/1.1 response whose body is `content_length` bytes.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    content_length: u64,
    close: bool,
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
    out.extend_from_slice(if close {
        b"Connection: close\r\n\r\n"
    } else {
        b"Connection: keep-alive\r\n\r\n"
    });
}

/// Looks for the blank line ending the head. `scanned` is how far a previous call got, so
/// a head arriving a byte at a time is scanned once in total, not once per byte.
/// Returns `Ok(Some(head_len))`, or `Ok(None)` after updating `scanned`.
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

/// A parsed request head, borrowing from the receive buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target's path, e.g. `/chat`.
    pub path: &'a str,
    /// The part after `?`, if any.
    pub query: Option<&'a str>,
    /// HTTP minor version (0 or 1).
    pub version: u8,
    pub headers: Vec<(&'a str, &'a [u8])>,
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

    pub fn origin(&self) -> Option<&'a str> {
        self.header_str("origin")
    }

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

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether this request asks for a WebSocket upgrade (it has `Upgrade: websocket`).
    pub fn wants_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket")
    }

    /// Whether the connection should stay open after a plain HTTP response.
    pub fn keep_alive(&self) -> bool {
        if self.version == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }
}

/// Parses a complete request head (as delimited by [`find_head_end`]).
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
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers = req.headers.iter().map(|h| (h.name, h.value)).collect();
    Ok(Request {
        method,
        path,
        query,
        version,
        headers,
    })
}

/// A validated upgrade: the accept key and the chosen subprotocol (an index into the
/// server's preference list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub accept: String,
    pub protocol: Option<usize>,
}

/// Validates a WebSocket upgrade request and picks a subprotocol: the first entry of
/// `server_protocols` (in the server's order of preference) that the client offered.
pub fn validate_upgrade(
    req: &Request<'_>,
    server_protocols: &[&str],
) -> Result<Upgrade, HttpError> {
    if req.method != "GET" {
        return Err(HttpError::MethodNotAllowed);
    }
    if req.version < 1
        || req.host().is_none()
        || !req.has_token("connection", "upgrade")
        || !req.wants_websocket()
    {
        return Err(HttpError::BadUpgrade);
    }
    match req.header("sec-websocket-version") {
        Some(v) if v.trim_ascii() == b"13" => {}
        _ => return Err(HttpError::UnsupportedVersion),
    }
    let key = req
        .header("sec-websocket-key")
        .ok_or(HttpError::BadKey)?
        .trim_ascii();
    let mut decoded = [0u8; 18];
    match BASE64.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(HttpError::BadKey),
    }
    let protocol = choose_protocol(req, server_protocols);
    Ok(Upgrade {
        accept: accept_key(key),
        protocol,
    })
}

/// One pass over the offered tokens; cost is linear in the header size.
fn choose_protocol(req: &Request<'_>, server_protocols: &[&str]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for offered in req.tokens("sec-websocket-protocol") {
        if let Some(i) = server_protocols
            .iter()
            .position(|p| p.as_bytes() == offered)
        {
            best = Some(best.map_or(i, |b| b.min(i)));
            if i == 0 {
                break;
            }
        }
    }
    best
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.digest().bytes())
}

/// Appends the 101 response.
pub fn write_accept_response(out: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    if let Some(p) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn upgrade(req: &str, protos: &[&str]) -> Result<Upgrade, HttpError> {
        let mut scanned = 0;
        let end = find_head_end(req.as_bytes(), &mut scanned, 8192)?.ok_or(HttpError::Malformed)?;
        let r = parse_request(&req.as_bytes()[..end])?;
        validate_upgrade(&r, protos)
    }

    #[test]
    fn rfc_accept_vector() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let u = upgrade(GOOD, &["superchat", "chat"]).unwrap();
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(u.protocol, Some(0), "server preference wins");
        assert_eq!(upgrade(GOOD, &["other"]).unwrap().protocol, None);
    }

    #[test]
    fn request_exposes_path_query_origin() {
        let r = parse_request(GOOD.as_bytes()).unwrap();
        assert_eq!(
            (r.path, r.query, r.origin()),
            ("/chat", Some("room=1"), Some("http://example.com"))
        );
        assert_eq!(r.host(), Some("example.com"));
    }

    #[test]
    fn refusals_have_their_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET ", "POST ", 405),
            ("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", 400),
            (
                "Connection: keep-alive, Upgrade",
                "Connection: keep-alive",
                400,
            ),
            ("Host: example.com\r\n", "", 400),
            ("HTTP/1.1", "HTTP/1.0", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64!!", 400),
            ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
            ("Sec-WebSocket-Version: 13\r\n", "", 426),
        ];
        for (from, to, status) in cases {
            let req = GOOD.replacen(from, to, 1);
            assert_eq!(
                upgrade(&req, &[]).unwrap_err().status(),
                *status,
                "{from} -> {to}"
            );
        }
        assert_eq!(
            parse_request(b"\x01\x02 garbage\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn header_limits_give_431() {
        let mut scanned = 0;
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(
            find_head_end(big.as_bytes(), &mut scanned, 8192)
                .unwrap_err()
                .status(),
            431
        );
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(parse_request(req.as_bytes()).unwrap_err().status(), 431);
        let ok: String = (0..63).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(parse_request(format!("GET / HTTP/1.1\r\nHost: a\r\n{ok}\r\n").as_bytes()).is_ok());
    }

    #[test]
    fn head_found_incrementally_and_trailing_bytes_left() {
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let mut scanned = 0;
        for n in 0..GOOD.len() {
            assert_eq!(
                find_head_end(&bytes[..n], &mut scanned, 8192).unwrap(),
                None
            );
        }
        assert_eq!(
            find_head_end(&bytes, &mut scanned, 8192).unwrap(),
            Some(GOOD.len())
        );
    }

    #[test]
    fn mixed_line_endings_end_the_head_where_httparse_does() {
        // httparse ends this head after "\n\r\n" (26 bytes); the rest is the next request.
        let req = b"GET / HTTP/1.1\r\nHost: a\n\r\nXYZ\r\n\r\n";
        let mut scanned = 0;
        assert_eq!(find_head_end(req, &mut scanned, 8192), Ok(Some(26)));
        assert!(parse_request(&req[..26]).is_ok());
    }

    #[test]
    fn error_responses_are_complete() {
        let mut out = Vec::new();
        HttpError::UnsupportedVersion.write_response(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(s.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn many_commas_in_protocol_is_linear() {
        let commas = ",".repeat(7000);
        let req = GOOD.replacen("chat, superchat", &format!("{commas}superchat"), 1);
        assert_eq!(upgrade(&req, &["superchat"]).unwrap().protocol, Some(0));
    }
}
