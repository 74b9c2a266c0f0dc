//! RFC 6455 §4 the opening handshake: the 101 and its accept value, every refusal as a
//! complete HTTP response followed by a TCP close, subprotocols, and heads that arrive
//! slowly or together with the first frame.

mod common;

use base64::Engine;
use common::*;
use std::net::{Shutdown, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

static SERVER: OnceLock<ServerProc> = OnceLock::new();

fn server() -> &'static ServerProc {
    shared_server(&SERVER, "echo", &["--no-www"])
}

fn addr() -> SocketAddr {
    server().addr
}

/// An upgrade request built from header lines (each without CRLF).
fn request(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("{request_line}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

const GET: &str = "GET / HTTP/1.1";
const HOST: &str = "Host: localhost";
const UPGRADE: &str = "Upgrade: websocket";
const CONNECTION: &str = "Connection: Upgrade";
const KEY_HDR: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
const VERSION: &str = "Sec-WebSocket-Version: 13";

fn standard() -> Vec<&'static str> {
    vec![HOST, UPGRADE, CONNECTION, KEY_HDR, VERSION]
}

/// The same standard headers with `name` replaced by `line` (or removed if None).
fn with(name: &str, line: Option<&'static str>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = standard()
        .into_iter()
        .filter(|h| {
            !h.to_ascii_lowercase()
                .starts_with(&name.to_ascii_lowercase())
        })
        .collect();
    v.extend(line);
    v
}

/// Independent of the server's code: SHA-1 of key + GUID, base64.
fn expected_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Sends `req`, expects a 101 and a working echo on the connection.
fn expect_upgrade(req: &[u8]) -> HttpResponse {
    let mut s = raw_connect(addr());
    send(&mut s, req);
    let r = read_http_response(&mut s);
    assert_eq!(
        r.status,
        101,
        "for {}\n{}",
        String::from_utf8_lossy(req),
        r.head
    );
    assert!(r.body.is_empty());
    send(&mut s, &text_frame(b"echo?"));
    expect_message(&mut s, OP_TEXT, b"echo?");
    send(&mut s, &close_frame(Some(1000), b""));
    expect_close(&mut s, Some(1000));
    r
}

#[test]
fn valid_upgrade_gets_101_with_the_rfc_accept_value() {
    let r = expect_upgrade(&request(GET, &standard()));
    assert!(r.head.starts_with("HTTP/1.1 101 "), "{}", r.head);
    // RFC 6455 §1.3 example.
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        r.header("upgrade").map(str::to_ascii_lowercase),
        Some("websocket".into())
    );
    assert!(r
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    assert_eq!(r.header_count("sec-websocket-accept"), 1);
    // No subprotocol offered, none chosen; no extension is ever negotiated.
    assert!(r.header("sec-websocket-protocol").is_none());
    assert!(r.header("sec-websocket-extensions").is_none());
}

#[test]
fn accept_value_is_computed_from_the_key() {
    for key in [
        "AQIDBAUGBwgJCgsMDQ4PEA==",
        "x3JJHMbDL1EzLkh9GBhXDw==",
        "////////////////////ww==",
    ] {
        let line: &'static str = Box::leak(format!("Sec-WebSocket-Key: {key}").into_boxed_str());
        let r = expect_upgrade(&request(GET, &with("sec-websocket-key", Some(line))));
        assert_eq!(
            r.header("sec-websocket-accept"),
            Some(expected_accept(key).as_str())
        );
    }
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let cases: &[&[&str]] = &[
        &[HOST, "Upgrade: WebSocket", CONNECTION, KEY_HDR, VERSION],
        &[
            HOST,
            "upgrade: WEBSOCKET",
            "connection: upgrade",
            KEY_HDR,
            VERSION,
        ],
        &[
            "HOST: localhost",
            "UPGRADE: websocket",
            "CONNECTION: UPGRADE",
            "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==",
            "SEC-WEBSOCKET-VERSION: 13",
        ],
        // Connection as a token list (what browsers send), in either order and spacing.
        &[
            HOST,
            UPGRADE,
            "Connection: keep-alive, Upgrade",
            KEY_HDR,
            VERSION,
        ],
        &[
            HOST,
            UPGRADE,
            "Connection: Upgrade,keep-alive",
            KEY_HDR,
            VERSION,
        ],
        &[
            HOST,
            UPGRADE,
            "Connection: keep-alive,  upgrade ",
            KEY_HDR,
            VERSION,
        ],
        // Extra headers a browser sends are fine.
        &[
            HOST,
            UPGRADE,
            CONNECTION,
            KEY_HDR,
            VERSION,
            "Origin: http://localhost",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "User-Agent: conf",
        ],
    ];
    for headers in cases {
        let r = expect_upgrade(&request(GET, headers));
        assert_eq!(
            r.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        // The extension offer is declined (not echoed).
        assert!(r.header("sec-websocket-extensions").is_none());
    }
}

#[test]
fn missing_host_is_400() {
    expect_http_error(addr(), &request(GET, &with("host", None)), 400);
}

#[test]
fn missing_or_invalid_key_is_400() {
    for key in [
        None,
        Some("Sec-WebSocket-Key: dGhlIHNhbXBsZQ=="), // 10 bytes, not 16
        Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSEh"), // 17 bytes
        Some("Sec-WebSocket-Key: not base64 at all!!!!"),
        Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), // no padding
        Some("Sec-WebSocket-Key: "),
    ] {
        expect_http_error(addr(), &request(GET, &with("sec-websocket-key", key)), 400);
    }
}

#[test]
fn unsupported_version_is_426_naming_version_13() {
    for v in [
        Some("Sec-WebSocket-Version: 8"),
        Some("Sec-WebSocket-Version: 12"),
        Some("Sec-WebSocket-Version: 14"),
        Some("Sec-WebSocket-Version: abc"),
        None,
    ] {
        let r = expect_http_error(
            addr(),
            &request(GET, &with("sec-websocket-version", v)),
            426,
        );
        assert_eq!(r.header("sec-websocket-version"), Some("13"), "{}", r.head);
    }
}

#[test]
fn missing_connection_upgrade_token_is_400() {
    for c in [
        None,
        Some("Connection: keep-alive"),
        Some("Connection: close"),
        Some("Connection: upgraded"),
    ] {
        expect_http_error(addr(), &request(GET, &with("connection", c)), 400);
    }
}

#[test]
fn wrong_upgrade_token_is_refused() {
    // Upgrade: something else is not a WebSocket request; with --no-www it must still
    // be answered with a complete error response and a close.
    let mut s = raw_connect(addr());
    send(
        &mut s,
        &request(GET, &with("upgrade", Some("Upgrade: h2c"))),
    );
    let r = read_http_response(&mut s);
    assert!(r.status >= 400, "{}", r.head);
    assert!(r.header("sec-websocket-accept").is_none());
}

#[test]
fn post_with_upgrade_is_405() {
    let r = expect_http_error(addr(), &request("POST / HTTP/1.1", &standard()), 405);
    assert!(r.header("allow").is_some(), "{}", r.head);
    expect_http_error(addr(), &request("PUT /x HTTP/1.1", &standard()), 405);
}

#[test]
fn http_1_0_upgrade_is_400() {
    expect_http_error(addr(), &request("GET / HTTP/1.0", &standard()), 400);
}

#[test]
fn request_head_over_8_kib_is_431() {
    let big: &'static str = Box::leak(format!("X-Big: {}", "a".repeat(9000)).into_boxed_str());
    let mut h = standard();
    h.push(big);
    expect_http_error(addr(), &request(GET, &h), 431);
    // Never terminated: refused once 8 KiB are in, not waited on.
    let mut s = raw_connect(addr());
    let mut endless = b"GET / HTTP/1.1\r\nX-Endless: ".to_vec();
    endless.resize(10_000, b'b');
    send(&mut s, &endless);
    let r = read_http_response(&mut s);
    assert_eq!(r.status, 431);
    expect_eof(&mut s);
}

#[test]
fn sixty_five_header_lines_is_431_sixty_four_is_fine() {
    let extra: Vec<&'static str> = (0..60)
        .map(|i| &*Box::leak(format!("X-Extra-{i}: v").into_boxed_str()))
        .collect();
    let mut h = standard();
    h.extend(&extra[..59]);
    assert_eq!(h.len(), 64);
    expect_upgrade(&request(GET, &h));
    h.push(extra[59]);
    assert_eq!(h.len(), 65);
    expect_http_error(addr(), &request(GET, &h), 431);
}

#[test]
fn garbage_is_400() {
    for g in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..], // TLS-ish
        b"HELLO\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: no name\r\n\r\n",
        b"\r\n\r\n",
    ] {
        expect_http_error(addr(), g, 400);
    }
}

#[test]
fn subprotocol_negotiation() {
    let offer = |line: &'static str| {
        let mut h = standard();
        h.push(line);
        expect_upgrade(&request(GET, &h))
    };
    let r = offer("Sec-WebSocket-Protocol: com.kaazing.echo");
    assert_eq!(r.header("sec-websocket-protocol"), Some("com.kaazing.echo"));
    let r = offer("Sec-WebSocket-Protocol: foo, echo");
    assert_eq!(r.header("sec-websocket-protocol"), Some("echo"));
    // Server preference order wins when both are offered.
    let r = offer("Sec-WebSocket-Protocol: echo, com.kaazing.echo");
    assert_eq!(r.header("sec-websocket-protocol"), Some("com.kaazing.echo"));
    // Offer split over two header lines.
    let mut h = standard();
    h.extend([
        "Sec-WebSocket-Protocol: foo",
        "Sec-WebSocket-Protocol: echo",
    ]);
    let r = expect_upgrade(&request(GET, &h));
    assert_eq!(r.header("sec-websocket-protocol"), Some("echo"));
    // Nothing the server speaks: no header at all (not an empty one, not a refusal).
    for line in [
        "Sec-WebSocket-Protocol: foo",
        "Sec-WebSocket-Protocol: ECHO",
        "Sec-WebSocket-Protocol: echo2, xecho",
    ] {
        let r = offer(line);
        assert_eq!(r.header_count("sec-websocket-protocol"), 0, "{}", r.head);
    }
}

#[test]
fn request_head_written_byte_by_byte() {
    let mut s = raw_connect(addr());
    send_bytewise(
        &mut s,
        upgrade_request(addr(), "").as_bytes(),
        Duration::from_micros(500),
    );
    let r = read_http_response(&mut s);
    assert_eq!(r.status, 101);
    send(&mut s, &text_frame(b"slow head"));
    expect_message(&mut s, OP_TEXT, b"slow head");
    send(&mut s, &close_frame(Some(1000), b""));
    expect_close(&mut s, Some(1000));
}

#[test]
fn frames_in_the_same_write_as_the_head_are_processed() {
    let mut all = upgrade_request(addr(), "").into_bytes();
    all.extend(text_frame(b"right behind the head"));
    all.extend(raw_frame(FIN | OP_PING, b"p"));
    all.extend(fragments(OP_BINARY, &[b"a", b"b"]));
    let mut s = raw_connect(addr());
    send(&mut s, &all);
    assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101"));
    expect_message(&mut s, OP_TEXT, b"right behind the head");
    expect_message(&mut s, OP_PONG, b"p");
    expect_message(&mut s, OP_BINARY, b"ab");
    // Even a close in the same write.
    let mut all = upgrade_request(addr(), "").into_bytes();
    all.extend(close_frame(Some(1000), b""));
    let mut s = raw_connect(addr());
    send(&mut s, &all);
    assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101"));
    expect_close(&mut s, Some(1000));
    // A protocol error in the same write: 101, then the close.
    let mut all = upgrade_request(addr(), "").into_bytes();
    all.extend(raw_frame(FIN | RSV1 | OP_TEXT, b"x"));
    let mut s = raw_connect(addr());
    send(&mut s, &all);
    assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101"));
    expect_close(&mut s, Some(1002));
}

#[test]
fn request_sent_with_a_half_close_still_gets_its_response() {
    // The FIN right behind the head: the response must still be written.
    let mut s = raw_connect(addr());
    send(&mut s, upgrade_request(addr(), "").as_bytes());
    s.shutdown(Shutdown::Write).unwrap();
    let r = read_http_response(&mut s);
    assert_eq!(r.status, 101);
    expect_eof(&mut s);
    let mut s = raw_connect(addr());
    send(&mut s, &request("GET / HTTP/1.0", &standard()));
    s.shutdown(Shutdown::Write).unwrap();
    let r = read_http_response(&mut s);
    assert_eq!(r.status, 400);
    expect_eof(&mut s);
}

#[test]
fn error_responses_are_complete_http() {
    // Content-Length matches the body, Connection: close, TCP closed: checked by
    // expect_http_error for each of these; here also the status line and the body.
    for (req, status) in [
        (request(GET, &with("host", None)), 400),
        (
            request(
                GET,
                &with("sec-websocket-version", Some("Sec-WebSocket-Version: 8")),
            ),
            426,
        ),
        (request("POST / HTTP/1.1", &standard()), 405),
        (b"garbage\r\n\r\n".to_vec(), 400),
    ] {
        let r = expect_http_error(addr(), &req, status);
        assert!(
            r.head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{}",
            r.head
        );
        assert_eq!(
            r.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );
    }
    assert_alive(addr());
}
