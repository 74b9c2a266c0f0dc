//! The WebSocket opening handshake (RFC 6455 §4.2) on top of a parsed HTTP/1.1 request
//! ([`super::http1`]): validating an upgrade, choosing a subprotocol, the accept key and
//! the 101 response.

use super::deflate::Agreed;
pub use super::error::HttpError;
use super::http1::{BodyLength, Request};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A validated upgrade: the accept key and the chosen subprotocol (an index into the
/// server's preference list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value (28 bytes of base64).
    pub accept: String,
    /// Index into the server's subprotocol list of the one chosen, if any.
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
    // Bytes after an upgrade request are WebSocket frames: a request body would make
    // them ambiguous, so an upgrade carrying one is refused (RFC 6455 §4.1 sends none).
    if req.version < 1
        || req.body != BodyLength::None
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

/// Appends the 101 response (RFC 6455 §4.2.2): the accept key, the chosen subprotocol if
/// any, and the permessage-deflate parameters in force if it was agreed (RFC 7692 §5).
pub fn write_accept_response(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    deflate: Option<&Agreed>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(agreed) = deflate {
        agreed.write_response_header(out);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http1::{find_head_end, parse_request};

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
    fn error_responses_are_complete() {
        let mut out = Vec::new();
        HttpError::UnsupportedVersion.write_response(&mut out, false);
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
