//! The TLS transport over real loopback sockets: a rustls client against the server side
//! driven through `Transport` in an edge-triggered mio loop (tests/tls_support).

mod tls_support;

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::version::{TLS12, TLS13};
use rustls::ProtocolVersion;
use tls_support::*;
use wsloop::server::tls::TlsConfig;
use wsloop::server::transport::DEFAULT_HANDSHAKE_LIMIT;

#[global_allocator]
static ALLOC: Counting = Counting;

fn setup() -> (Certs, TlsConfig) {
    let certs = Certs::new();
    let cfg = TlsConfig::from_pem_files(&certs.cert_path(), &certs.key_path()).unwrap();
    (certs, cfg)
}

fn handshake_and_echo(version: &'static rustls::SupportedProtocolVersion, want: ProtocolVersion) {
    let (certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), None);
    let mut c = tls_client(server.addr, certs.client_config(&[version]));
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(c.conn.protocol_version(), Some(want));
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut back = [0u8; 18];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"GET / HTTP/1.1\r\n\r\n");
    c.conn.send_close_notify();
    c.flush().unwrap();
    // The server answers close_notify with its own, then FIN: a clean Ok(0) here.
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    let r = server.next_end();
    assert_eq!(r.end, End::CloseNotify);
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(r.version, Some(want));
    assert_eq!(r.bytes_in, 18);
}

#[test]
fn tls13_handshake_alpn_echo_close_notify() {
    handshake_and_echo(&TLS13, ProtocolVersion::TLSv1_3);
}

#[test]
fn tls12_handshake_alpn_echo_close_notify() {
    handshake_and_echo(&TLS12, ProtocolVersion::TLSv1_2);
}

/// 4 MiB each way through a server socket with a tiny send buffer: the server's writes
/// are refused again and again, and every byte must arrive once, in order.
#[test]
fn bulk_both_ways_under_backpressure() {
    let (certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), Some(4096));
    for (i, v) in [&TLS13, &TLS12].into_iter().enumerate() {
        let mut c = tls_client(server.addr, certs.client_config(&[v]));
        for round in 0..4u8 {
            let data = pattern(1 << 20, round ^ i as u8);
            c.write_all(&data).unwrap();
            let mut back = vec![0u8; data.len()];
            c.read_exact(&mut back).unwrap();
            assert!(back == data, "round {round}: echo differs");
        }
        c.conn.send_close_notify();
        c.flush().unwrap();
        assert!(read_all(&mut c).is_empty());
        let r = server.next_end();
        assert_eq!(r.end, End::CloseNotify);
        assert_eq!(r.bytes_in, 4 << 20);
        assert!(r.blocked > 0, "the small send buffer never refused: {r:?}");
    }
}

#[test]
fn garbage_instead_of_client_hello_gets_an_alert() {
    let (_certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), None);
    for garbage in [
        &b"\x16\x03\x01\x00\x08\xff\xff\xff\xff\xff\xff\xff\xff"[..],
        &b"\x00\x01\x02\x03 not tls at all \r\n"[..],
    ] {
        let mut s = raw_client(server.addr);
        write_raw(&mut s, garbage);
        let got = read_all(&mut s);
        let end = server.next_end().end;
        // An alert record (content type 21, RFC 8446 §5.1) of two bytes, then the close.
        assert!(got.len() >= 7, "no alert: {got:?} {end:?}");
        assert_eq!(got[0], 21, "not an alert record: {got:?}");
        assert_eq!(&got[3..5], &[0, 2]);
        assert_eq!(got[5], 2, "alert level fatal");
        match end {
            End::Protocol(_) => {}
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn plain_http_on_tls_port_gets_400() {
    let (_certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), None);
    let mut s = raw_client(server.addr);
    write_raw(
        &mut s,
        b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n",
    );
    let got = String::from_utf8(read_all(&mut s)).unwrap();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    assert!(got.contains("\r\nConnection: close\r\n"), "{got}");
    assert!(got.ends_with("use https:// or wss:// here.\n"), "{got}");
    assert_eq!(server.next_end().end, End::PlainHttp);
}

/// FIN without close_notify after whole records: the data is delivered, then
/// `UnexpectedEof`. FIN in the middle of a record: `UnexpectedEof` too.
#[test]
fn truncation_is_reported_as_unexpected_eof() {
    let (certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), None);

    let mut c = tls_client(server.addr, certs.client_config(&[&TLS13]));
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    c.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let r = server.next_end();
    assert_eq!((r.end, r.bytes_in), (End::Truncated, 5));

    let mut c = tls_client(server.addr, certs.client_config(&[&TLS13]));
    // An application-data record header announcing 64 bytes, then 10 of them.
    write_raw(&mut c.sock, b"\x17\x03\x03\x00\x40");
    write_raw(&mut c.sock, &[7u8; 10]);
    c.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let r = server.next_end();
    assert_eq!((r.end, r.bytes_in), (End::Truncated, 0));
}

/// A client that sends part of a huge ClientHello and stops: the server holds about what
/// came, within the handshake's bound ([`DEFAULT_HANDSHAKE_LIMIT`], 8 KiB, where rustls
/// alone would join 64 KiB), and refuses beyond it with a `decode_error` alert.
#[test]
fn stalled_handshake_costs_bounded_memory() {
    let (_certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), None);
    let before = server.measure();
    let mut s = raw_client(server.addr);
    // ClientHello announcing 60 000 bytes; 6 KiB of it (within the bound) for now.
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xea, 0x60];
    record.resize(5 + 0x4000, 0x41);
    write_raw(&mut s, &record[..6 << 10]);
    // Wait (bounded) until the server has buffered what came, then look at its heap.
    let mut held = 0;
    for _ in 0..500 {
        let m = server.measure();
        held = m.live_heap - before.live_heap;
        if m.handshaking == 1 && held >= 6 << 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!("stalled handshake: server heap {held} bytes");
    assert!(held >= 6 << 10, "the server did not read the ClientHello");
    assert!(
        held <= (DEFAULT_HANDSHAKE_LIMIT + (4 << 10)) as isize,
        "stalled handshake holds {held} bytes"
    );
    // Past the bound the connection is refused, not grown.
    let _ = s.write_all(&record[6 << 10..]);
    let got = read_all(&mut s);
    assert_eq!(&got[..], &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50][..]);
    match server.next_end().end {
        End::Protocol(_) => {}
        e => panic!("{e:?}"),
    }
    let after = server.measure();
    assert_eq!(after.conns, 0);
    // What the closed connection held is gone (the report sent over a channel may keep a
    // channel block of a few hundred bytes allocated on this thread).
    let left = after.live_heap - before.live_heap;
    assert!(left < 4096, "{left} bytes left after close");
}

/// SIGHUP-style reload: new handshakes get the new certificate, an established
/// connection keeps working; a broken file keeps the current certificate.
#[test]
fn reload_serves_new_cert_to_new_connections_only() {
    let (certs, cfg) = setup();
    let server = Server::start(cfg.server_config().clone(), None);
    let client_cfg = certs.client_config(&[&TLS13]);
    let leaf = |c: &rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>| {
        c.conn.peer_certificates().unwrap()[0].clone()
    };
    let echo = |c: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
                m: &[u8]| {
        c.write_all(m).unwrap();
        let mut back = vec![0u8; m.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, m);
    };

    let mut old = tls_client(server.addr, client_cfg.clone());
    let first = leaf(&old);
    assert_eq!(
        first,
        *cfg.certs().unwrap().current().end_entity_cert().unwrap()
    );
    echo(&mut old, b"before");

    let second = certs.write_leaf("leaf B");
    assert_ne!(first, second);
    cfg.reload().unwrap();
    let mut new = tls_client(server.addr, client_cfg.clone());
    assert_eq!(leaf(&new), second);
    echo(&mut new, b"new");
    echo(&mut old, b"old one still works");

    std::fs::write(certs.key_path(), b"not a key").unwrap();
    assert!(cfg.reload().is_err());
    let third = tls_client(server.addr, client_cfg);
    assert_eq!(
        leaf(&third),
        second,
        "a failed reload keeps the current certificate"
    );
}

/// Heap held by the server per idle TLS connection after handshake and one echo, for the
/// settings that matter. Prints the figures (`--nocapture`).
#[test]
fn idle_tls_connection_memory() {
    const N: usize = 200;
    let certs = Certs::new();
    let reloader = Arc::new(
        wsloop::server::tls::CertReloader::from_pem_files(
            &certs.cert_path(),
            &certs.key_path(),
            wsloop::server::tls::provider(),
        )
        .unwrap(),
    );
    let base = TlsConfig::with_reloader(reloader, wsloop::server::tls::provider()).unwrap();
    let mut tickets = (**base.server_config()).clone();
    tickets.send_tls13_tickets = 2; // rustls' default
    let cases: [(
        &str,
        Arc<rustls::ServerConfig>,
        &'static rustls::SupportedProtocolVersion,
    ); 3] = [
        (
            "TLS 1.3, no tickets (wsloop)",
            base.server_config().clone(),
            &TLS13,
        ),
        (
            "TLS 1.3, 2 tickets (rustls default)",
            Arc::new(tickets),
            &TLS13,
        ),
        ("TLS 1.2", base.server_config().clone(), &TLS12),
    ];
    for (name, config, version) in cases {
        let server = Server::start(config, None);
        let m0 = server.measure();
        let client_cfg = certs.client_config(&[version]);
        let mut clients: Vec<_> = (0..N)
            .map(|i| {
                let mut c = tls_client(server.addr, client_cfg.clone());
                let msg = format!("message {i:08}");
                c.write_all(msg.as_bytes()).unwrap();
                let mut back = vec![0u8; msg.len()];
                c.read_exact(&mut back).unwrap();
                c
            })
            .collect();
        let m1 = server.measure();
        assert_eq!((m1.conns, m1.handshaking), (N, 0));
        let per = (m1.live_heap - m0.live_heap) / N as isize;
        println!("idle TLS connection, {name}: {per} bytes of heap each ({N} connections)");
        assert!(per > 0 && per < 64 << 10, "{name}: {per} bytes");
        clients.clear();
    }
}

/// `write_vectored` (a frame header and its payload) through a socket that refuses part
/// of it: the count is honest, the rest goes out on `flush_tls`, the bytes arrive whole.
#[test]
fn write_vectored_counts_plaintext_honestly() {
    use std::io::IoSlice;
    use wsloop::server::transport::Transport;

    let (certs, cfg) = setup();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client_cfg = certs.client_config(&[&TLS13]);
    let payload = pattern(3 << 20, 9);
    let expect: Vec<u8> = [&b"\x82\x7f"[..], &payload].concat();
    let reader = std::thread::spawn(move || {
        let mut c = tls_client(addr, client_cfg);
        // Let the server see the socket refuse writes before reading anything.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut got = vec![0u8; 2 + (3 << 20)];
        c.read_exact(&mut got).unwrap();
        got
    });
    let (s, _) = listener.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let s = mio::net::TcpStream::from_std(s);
    socket2::SockRef::from(&s)
        .set_send_buffer_size(4096)
        .unwrap();
    let mut t = Transport::tls(s, cfg.server_config().clone()).unwrap();
    let mut rbuf = [0u8; 1024];
    // Busy-poll the handshake (no mio here): reads drive it, WouldBlock is normal.
    while t.is_handshaking() {
        match t.read(&mut rbuf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            r => panic!("{r:?}"),
        }
    }
    let mut sent = 0;
    let mut refused = 0;
    while sent < expect.len() {
        let bufs = if sent < 2 {
            vec![IoSlice::new(&expect[sent..2]), IoSlice::new(&payload)]
        } else {
            vec![IoSlice::new(&expect[sent..])]
        };
        match t.write_vectored(&bufs) {
            Ok(n) => {
                assert!(n <= expect.len() - sent);
                sent += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                refused += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
    while !t.flush_tls().unwrap() {
        std::thread::yield_now();
    }
    assert!(refused > 0, "the socket never refused");
    assert!(reader.join().unwrap() == expect);
}
