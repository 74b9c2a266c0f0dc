//! The `wsloop` binary with `--tls-cert/--tls-key` against rustls clients: wss echo through
//! tungstenite, https static pages, plain HTTP on the TLS port, garbage and stalled
//! handshakes, a truncated record, a handshake storm, and certificate reload on SIGHUP.
//! Certificates are made at test time with rcgen (`tls_support::Certs`).

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerProc;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, StreamOwned};
use tls_support::{raw_client, read_all, tls_client, Certs};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type TlsStream = StreamOwned<ClientConnection, std::net::TcpStream>;
type Wss = WebSocket<TlsStream>;

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn start(certs: &Certs, mode: &str, extra: &[&str]) -> ServerProc {
    let (cert, key) = (certs.cert_path(), certs.key_path());
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    ServerProc::start(mode, &args)
}

fn wss(addr: SocketAddr, cfg: Arc<ClientConfig>, path: &str) -> Wss {
    let stream = tls_client(addr, cfg);
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, resp) = tungstenite::client::client(url, stream).expect("wss handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn echo(ws: &mut Wss, msg: Message) {
    ws.send(msg.clone()).unwrap();
    loop {
        match ws.read().expect("read echo") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => {
                assert_eq!(m, msg);
                return;
            }
        }
    }
}

/// A ClientHello from a real rustls client, as the bytes it would put on the wire.
fn client_hello(cfg: Arc<ClientConfig>) -> Vec<u8> {
    let mut c = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    hello
}

/// The connection ends (EOF or reset) rather than running into the read timeout.
fn ends(s: &mut std::net::TcpStream) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: the server kept it open
        }
    }
}

#[test]
fn wss_echo_over_tls13_and_tls12_with_alpn() {
    let certs = Certs::new();
    let server = start(&certs, "echo", &[]);
    for (version, want) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let mut ws = wss(server.addr, certs.client_config(&[version]), "/");
        let conn = &ws.get_ref().conn;
        assert_eq!(conn.protocol_version(), Some(want));
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Sizes around the frame-length forms, one TLS record (16 KiB) and the direct
        // writev path (large payloads), up to 1 MiB (many records, backpressure).
        for size in [0usize, 125, 126, 16 << 10, 65536, 1 << 20] {
            let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            echo(&mut ws, Message::text(text));
            let bin: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            echo(&mut ws, Message::binary(bin));
        }
        ws.close(None).unwrap();
        // The server answers the close and ends TLS with close_notify: a clean end.
        loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("expected a clean close, got {e}"),
            }
        }
    }
}

#[test]
fn https_static_page_and_keep_alive() {
    let certs = Certs::new();
    let server = start(&certs, "demo", &[]);
    let mut s = tls_client(server.addr, certs.client_config(BOTH));
    let req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /style.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let body = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(body.starts_with("HTTP/1.1 200"), "{body:.200}");
    assert!(body.contains("<html"), "index page served");
    assert_eq!(
        body.matches("HTTP/1.1 200").count(),
        2,
        "both requests answered"
    );
    // The demo's echo on the same port, same TLS listener, from a browser page's Origin
    // (no --allow-origin: every Origin may upgrade).
    let stream = tls_client(server.addr, certs.client_config(BOTH));
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let mut req = url.into_client_request().unwrap();
    let origin = format!("https://localhost:{}", server.addr.port());
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    let (mut ws, resp) = tungstenite::client::client(req, stream).expect("wss upgrade");
    assert_eq!(resp.status(), 101);
    echo(&mut ws, Message::text("over wss"));
}

#[test]
fn plain_http_on_tls_port_gets_400_and_close() {
    let certs = Certs::new();
    let server = start(&certs, "demo", &[]);
    let mut s = raw_client(server.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let got = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    assert!(got.contains("https://"), "{got}");
    // The server is fine.
    let mut ws = wss(server.addr, certs.client_config(BOTH), "/echo");
    echo(&mut ws, Message::text("still here"));
}

#[test]
fn garbage_instead_of_client_hello_gets_an_alert_and_others_carry_on() {
    let certs = Certs::new();
    let server = start(&certs, "echo", &[]);
    let mut a = wss(server.addr, certs.client_config(BOTH), "/");
    echo(&mut a, Message::text("before"));
    for garbage in [
        // A handshake record holding nonsense.
        &b"\x16\x03\x01\x00\x08\x01\x00\x00\x04garb"[..],
        // Not a TLS record type at all (lower case, so not taken for HTTP).
        &b"\x00\x01\x02\x03 hello? \xff\xfe"[..],
    ] {
        let mut s = raw_client(server.addr);
        s.write_all(garbage).unwrap();
        let got = read_all(&mut s);
        // An alert record (content type 21), unencrypted: no keys exist yet.
        assert!(got.len() >= 7, "no alert: {got:?}");
        assert_eq!(got[0], 0x15, "alert record expected, got {got:?}");
        assert_eq!(got[5], 2, "fatal alert level");
    }
    echo(&mut a, Message::text("after"));
}

#[test]
fn stalled_handshakes_are_cut_at_the_handshake_timeout() {
    let certs = Certs::new();
    let server = start(&certs, "echo", &["--handshake-timeout", "1"]);
    let mut a = wss(server.addr, certs.client_config(BOTH), "/");
    // One sends nothing, one half a ClientHello, one a whole ClientHello and never its
    // Finished: all three are dropped by the same deadline.
    let mut silent = raw_client(server.addr);
    let mut half = raw_client(server.addr);
    let hello = client_hello(certs.client_config(BOTH));
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    let mut no_finished = raw_client(server.addr);
    no_finished.write_all(&hello).unwrap();
    let started = Instant::now();
    // Meanwhile the open connection keeps echoing.
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        echo(&mut a, Message::text(format!("msg {n}")));
        n += 1;
    }
    assert!(n > 0);
    for (name, s) in [
        ("silent", &mut silent),
        ("half hello", &mut half),
        ("no finished", &mut no_finished),
    ] {
        assert!(ends(s), "{name}: not closed by the handshake timeout");
    }
    echo(&mut a, Message::text("after the cut"));
}

#[test]
fn truncated_record_then_fin_ends_only_that_connection() {
    let certs = Certs::new();
    let server = start(&certs, "echo", &[]);
    let mut a = wss(server.addr, certs.client_config(BOTH), "/");
    let mut b = wss(server.addr, certs.client_config(BOTH), "/");
    echo(&mut b, Message::text("b is open"));
    // Half of one application-data record (a masked text frame), then FIN.
    let stream = b.get_mut();
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    stream.conn.writer().write_all(&frame).unwrap();
    let mut record = Vec::new();
    stream.conn.write_tls(&mut record).unwrap();
    let sock = &mut stream.sock;
    sock.write_all(&record[..record.len() / 2]).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    assert!(
        ends(sock),
        "the server did not close the truncated connection"
    );
    echo(&mut a, Message::text("a is unaffected"));
}

#[test]
fn handshake_storm_completes_while_open_connections_echo() {
    let certs = Certs::new();
    let server = start(&certs, "echo", &[]);
    let mut a = wss(server.addr, certs.client_config(BOTH), "/");
    // More simultaneous ClientHellos than the per-iteration budget (32): some are carried
    // over to later iterations, and each still completes.
    let cfg = certs.client_config(BOTH);
    let mut pending: Vec<(std::net::TcpStream, ClientConnection)> = (0..100)
        .map(|_| {
            let mut sock = raw_client(server.addr);
            let mut conn =
                ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap())
                    .unwrap();
            conn.write_tls(&mut sock).unwrap();
            (sock, conn)
        })
        .collect();
    echo(&mut a, Message::text("during the storm"));
    for (sock, conn) in &mut pending {
        while conn.is_handshaking() {
            conn.complete_io(sock).unwrap();
        }
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    echo(&mut a, Message::text("after the storm"));
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_only() {
    let certs = Certs::new();
    let server = start(&certs, "echo", &[]);
    let cfg = certs.client_config(BOTH);
    let mut old = wss(server.addr, cfg.clone(), "/");
    let first = old.get_ref().conn.peer_certificates().unwrap()[0].clone();
    let second = certs.write_leaf("leaf B");
    assert_ne!(first, second);
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
    };
    hup(server.pid());
    // The signal is handled asynchronously: poll new connections (bounded) for the new
    // certificate.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = tls_client(server.addr, cfg.clone());
        let got = s.conn.peer_certificates().unwrap()[0].clone();
        if got == second {
            break;
        }
        assert_eq!(got, first, "neither certificate");
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection made before the reload keeps working.
    echo(&mut old, Message::text("old connection"));
    // A broken file: the reload fails, the server keeps serving the current certificate.
    std::fs::write(certs.cert_path(), b"not a certificate").unwrap();
    hup(server.pid());
    std::thread::sleep(Duration::from_millis(300));
    let mut fresh = wss(server.addr, cfg, "/");
    assert_eq!(fresh.get_ref().conn.peer_certificates().unwrap()[0], second);
    echo(&mut fresh, Message::text("after a failed reload"));
    echo(&mut old, Message::text("old connection, still"));
}

#[test]
fn cli_needs_both_tls_flags_and_usable_files() {
    let bin = env!("CARGO_BIN_EXE_wsloop");
    let out = std::process::Command::new(bin)
        .args(["echo", "--listen", "127.0.0.1:0", "--tls-cert", "x.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    let certs = Certs::new();
    let cert = certs.cert_path();
    // The certificate given as the key: refused at start-up, naming the problem.
    let out = std::process::Command::new(bin)
        .args(["echo", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
