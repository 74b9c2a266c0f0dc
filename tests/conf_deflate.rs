//! permessage-deflate (RFC 7692) against the server binary, in the style of a strict
//! fuzzer's sections 12 and 13: offers of every context-takeover combination with several
//! window sizes, against `echo --deflate` (shared, no context takeover) and `echo --deflate
//! --deflate-context-takeover` (dedicated); messages of several sizes compressed by the
//! system's C zlib (flate2, an implementation independent of ours) with the agreed client
//! window, and echoes inflated by it with the agreed server window, so a server that
//! compresses with a larger window than it answered fails here. Plus the RSV1 rules and a
//! decompression bomb (1009). Python's `websockets` covers the full matrix
//! (`tests/python/test_deflate.py`).

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;

static SHARED: OnceLock<ServerProc> = OnceLock::new();
static DEDICATED: OnceLock<ServerProc> = OnceLock::new();

fn shared() -> SocketAddr {
    shared_server(&SHARED, "echo", &["--no-www", "--deflate"]).addr
}

fn dedicated() -> SocketAddr {
    shared_server(
        &DEDICATED,
        "echo",
        &["--no-www", "--deflate", "--deflate-context-takeover"],
    )
    .addr
}

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// The answered parameters: (name, value).
fn answer(head: &str) -> Option<Vec<(String, Option<String>)>> {
    let line = head.lines().find(|l| {
        l.to_ascii_lowercase()
            .starts_with("sec-websocket-extensions:")
    })?;
    let value = line.split_once(':').unwrap().1;
    let mut parts = value.split(';').map(str::trim);
    assert_eq!(parts.next(), Some("permessage-deflate"), "{line}");
    Some(
        parts
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (p.to_string(), None),
            })
            .collect(),
    )
}

fn has(params: &[(String, Option<String>)], name: &str) -> bool {
    params.iter().any(|(k, _)| k == name)
}

fn bits(params: &[(String, Option<String>)], name: &str) -> Option<u8> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| {
        v.as_deref()
            .expect("window bits with a value")
            .parse()
            .unwrap()
    })
}

/// A client with C zlib contexts for the agreed parameters.
struct Client {
    s: TcpStream,
    compress: Compress,
    reset_compress: bool,
    decompress: Decompress,
    reset_decompress: bool,
}

impl Client {
    fn send(&mut self, opcode: u8, payload: &[u8]) {
        if payload.is_empty() {
            // An empty message is the single byte 00 (RFC 7692 §7.2.3.6); zlib has nothing
            // to flush after an earlier sync flush.
            send(&mut self.s, &raw_frame(FIN | RSV1 | opcode, &[0]));
            return;
        }
        if self.reset_compress {
            self.compress.reset();
        }
        let mut z = Vec::with_capacity(payload.len() + 64);
        let before = self.compress.total_in();
        loop {
            let done = (self.compress.total_in() - before) as usize;
            self.compress
                .compress_vec(&payload[done..], &mut z, FlushCompress::Sync)
                .unwrap();
            if self.compress.total_in() - before == payload.len() as u64 && z.len() < z.capacity() {
                break;
            }
            z.reserve(z.capacity());
        }
        assert!(z.ends_with(&TAIL));
        z.truncate(z.len() - 4);
        send(&mut self.s, &raw_frame(FIN | RSV1 | opcode, &z));
    }

    /// Reads one data frame; returns (opcode, compressed?, inflated payload).
    fn recv(&mut self) -> (u8, bool, Vec<u8>) {
        let f = read_wire_frame(&mut self.s);
        assert!(f.fin, "the echo server sends whole messages");
        if f.rsv == 0 {
            return (f.opcode, false, f.payload);
        }
        assert_eq!(f.rsv, 0b100, "only RSV1");
        if self.reset_decompress {
            self.decompress.reset(false);
        }
        let mut input = f.payload;
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.decompress.total_in();
        loop {
            let read = (self.decompress.total_in() - start) as usize;
            self.decompress
                .decompress_vec(&input[read..], &mut out, FlushDecompress::Sync)
                .expect("the server's deflate data inflates with the agreed window");
            if (self.decompress.total_in() - start) as usize == input.len()
                && out.len() < out.capacity()
            {
                break;
            }
            out.reserve(out.capacity());
        }
        (f.opcode, true, out)
    }
}

/// Upgrades with `offer`; checks the answer against RFC 7692 §7.1 and the server's policy
/// (`dedicated`: context takeover kept when the client allows it).
fn open(addr: SocketAddr, offer: &str, dedicated: bool) -> Client {
    let mut s = raw_connect(addr);
    s.write_all(
        upgrade_request(addr, &format!("Sec-WebSocket-Extensions: {offer}\r\n")).as_bytes(),
    )
    .unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let got = answer(&head).unwrap_or_else(|| panic!("no extension for {offer:?}"));
    let offered = |p: &str| {
        offer
            .split(';')
            .any(|x| x.trim().split('=').next() == Some(p))
    };
    let offered_bits = |p: &str| {
        offer.split(';').find_map(|x| {
            x.trim()
                .strip_prefix(&format!("{p}="))
                .map(|v| v.parse::<u8>().unwrap())
        })
    };
    // No parameter twice.
    for (i, (k, _)) in got.iter().enumerate() {
        assert!(!got[..i].iter().any(|(j, _)| j == k), "{k} twice: {head}");
    }
    let snc = has(&got, "server_no_context_takeover");
    let cnc = has(&got, "client_no_context_takeover");
    assert_eq!(
        snc,
        offered("server_no_context_takeover") || !dedicated,
        "{offer} → {got:?}"
    );
    assert_eq!(
        cnc,
        offered("client_no_context_takeover") || !dedicated,
        "{offer} → {got:?}"
    );
    let smwb = bits(&got, "server_max_window_bits");
    assert_eq!(
        smwb,
        offered_bits("server_max_window_bits"),
        "{offer} → {got:?}"
    );
    let cmwb = bits(&got, "client_max_window_bits");
    if !offered("client_max_window_bits") {
        assert_eq!(cmwb, None, "answered an unoffered client_max_window_bits");
    } else {
        assert_eq!(
            cmwb,
            offered_bits("client_max_window_bits"),
            "{offer} → {got:?}"
        );
    }
    let client_bits = cmwb
        .or(offered_bits("client_max_window_bits"))
        .unwrap_or(15);
    let server_bits = smwb.unwrap_or(15);
    Client {
        s,
        compress: Compress::new_with_window_bits(Compression::new(6), false, client_bits),
        reset_compress: cnc,
        decompress: Decompress::new_with_window_bits(false, server_bits),
        reset_decompress: snc,
    }
}

/// JSON-like text of `n` bytes.
fn json(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"u{}\",\"text\":\"msg {}\"}},",
            i % 7,
            i % 13
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn offers() -> Vec<String> {
    let mut out = Vec::new();
    for snc in [false, true] {
        for cnc in [false, true] {
            for smwb in [None, Some(9), Some(12), Some(15)] {
                for cmwb in [
                    None,
                    Some(None),
                    Some(Some(9)),
                    Some(Some(12)),
                    Some(Some(15)),
                ] {
                    let mut o = String::from("permessage-deflate");
                    if snc {
                        o.push_str("; server_no_context_takeover");
                    }
                    if cnc {
                        o.push_str("; client_no_context_takeover");
                    }
                    if let Some(b) = smwb {
                        o.push_str(&format!("; server_max_window_bits={b}"));
                    }
                    match cmwb {
                        None => {}
                        Some(None) => o.push_str("; client_max_window_bits"),
                        Some(Some(b)) => o.push_str(&format!("; client_max_window_bits={b}")),
                    }
                    out.push(o);
                }
            }
        }
    }
    out
}

fn matrix(addr: SocketAddr, dedicated: bool) {
    let sizes = [0usize, 1, 127, 128, 1000, 65_536];
    for offer in offers() {
        let mut c = open(addr, &offer, dedicated);
        for (i, &n) in sizes.iter().enumerate() {
            let text = json(n);
            c.send(OP_TEXT, &text);
            let (op, z, got) = c.recv();
            assert_eq!((op, got.len()), (OP_TEXT, n), "{offer}: text {n}");
            assert!(got == text, "{offer}: text {n} differs");
            // At least the min size (128) and compressible: compressed.
            assert_eq!(z, n >= 128, "{offer}: text {n} compressed?");
            let bin = noise(n, i as u32 + 1);
            c.send(OP_BINARY, &bin);
            let (op, _, got) = c.recv();
            assert!(op == OP_BINARY && got == bin, "{offer}: binary {n}");
        }
        send(&mut c.s, &close_frame(Some(1000), b""));
        expect_close(&mut c.s, Some(1000));
    }
}

#[test]
fn every_offer_round_trips_through_the_shared_server() {
    matrix(shared(), false);
}

#[test]
fn every_offer_round_trips_through_the_dedicated_server() {
    matrix(dedicated(), true);
}

#[test]
fn fragmented_compressed_message_rsv1_on_the_first_frame_only() {
    for (addr, ded) in [(shared(), false), (dedicated(), true)] {
        let mut c = open(addr, "permessage-deflate; client_no_context_takeover", ded);
        let text = json(5000);
        let mut z = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut out = Vec::with_capacity(8000);
        z.compress_vec(&text, &mut out, FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
        let third = out.len() / 3;
        let mut frames = raw_frame(RSV1 | OP_TEXT, &out[..third]);
        frames.extend(raw_frame(OP_CONT, &out[third..2 * third]));
        // A ping between the fragments is answered.
        frames.extend(raw_frame(FIN | OP_PING, b"mid"));
        frames.extend(raw_frame(FIN | OP_CONT, &out[2 * third..]));
        send(&mut c.s, &frames);
        let pong = read_wire_frame(&mut c.s);
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (OP_PONG, &b"mid"[..])
        );
        let (op, zipped, got) = c.recv();
        assert!(op == OP_TEXT && zipped && got == text);
    }
}

fn offered_ws(addr: SocketAddr) -> TcpStream {
    let mut s = raw_connect(addr);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";
    s.write_all(upgrade_request(addr, offer).as_bytes())
        .unwrap();
    let head = read_http_head(&mut s);
    assert!(head.contains("permessage-deflate"), "{head}");
    s
}

#[test]
fn rsv1_on_control_or_continuation_or_unnegotiated_is_1002() {
    for addr in [shared(), dedicated()] {
        for op in [OP_PING, OP_PONG, OP_CLOSE] {
            let mut s = offered_ws(addr);
            send(&mut s, &raw_frame(FIN | RSV1 | op, b""));
            expect_close(&mut s, Some(1002));
        }
        let mut s = offered_ws(addr);
        let mut f = raw_frame(OP_TEXT, b"plain");
        f.extend(raw_frame(FIN | RSV1 | OP_CONT, b"x"));
        send(&mut s, &f);
        expect_close(&mut s, Some(1002));
        // Not negotiated on this connection (no offer): RSV1 is a reserved bit.
        let mut s = raw_ws(addr);
        send(
            &mut s,
            &raw_frame(
                FIN | RSV1 | OP_TEXT,
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            ),
        );
        expect_close(&mut s, Some(1002));
    }
}

#[test]
fn bomb_is_1009_and_corrupt_data_1002_and_bad_text_1007() {
    // ~16.9 MB of zeros in under 17 KiB: past the default 16 MiB limit.
    let mut z = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = Vec::with_capacity(32 << 10);
    for _ in 0..17 {
        z.compress_vec(&zeros, &mut bomb, FlushCompress::None)
            .unwrap();
    }
    z.compress_vec(&[], &mut bomb, FlushCompress::Sync).unwrap();
    bomb.truncate(bomb.len() - 4);
    assert!(bomb.len() < 17 << 10, "{}", bomb.len());
    let mut bad = Vec::with_capacity(64);
    let mut z = Compress::new_with_window_bits(Compression::new(6), false, 15);
    z.compress_vec(b"fine \xc3\x28 not", &mut bad, FlushCompress::Sync)
        .unwrap();
    bad.truncate(bad.len() - 4);
    for addr in [shared(), dedicated()] {
        let mut s = offered_ws(addr);
        send(&mut s, &raw_frame(FIN | RSV1 | OP_BINARY, &bomb));
        expect_close(&mut s, Some(1009));
        let mut s = offered_ws(addr);
        send(
            &mut s,
            &raw_frame(FIN | RSV1 | OP_BINARY, &[0xff, 0xff, 0xff]),
        );
        expect_close(&mut s, Some(1002));
        let mut s = offered_ws(addr);
        send(&mut s, &raw_frame(FIN | RSV1 | OP_TEXT, &bad));
        expect_close(&mut s, Some(1007));
    }
}

/// Messages that inflate to much more than they cost to read end their connection's turn
/// (one per loop iteration, the rest of the input held for the next): several of them
/// written back to back must still all be echoed, whole and in order.
#[test]
fn big_inflations_back_to_back_are_all_echoed_in_order() {
    let mut c = open(
        shared(),
        "permessage-deflate; client_no_context_takeover",
        false,
    );
    let msgs: Vec<Vec<u8>> = (0..6).map(|i| json((512 << 10) + i * 1000)).collect();
    for m in &msgs {
        c.send(0x1, m);
    }
    for (i, m) in msgs.iter().enumerate() {
        let (opcode, compressed, got) = c.recv();
        assert_eq!(opcode, 0x1);
        assert!(compressed, "message {i} echoed compressed");
        assert_eq!(got.len(), m.len(), "message {i}");
        assert!(got == *m, "message {i} differs");
    }
}
