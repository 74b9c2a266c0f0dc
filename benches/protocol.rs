//! Throughput of the sans-IO protocol core, each beside its baseline:
//!
//! * `header_parse`: `FrameHeader::parse` on masked headers with 7-, 16- and 64-bit lengths;
//! * `unmask`: `mask::apply_mask` vs `copy_from_slice` (memcpy) vs the bytewise reference;
//! * `utf8`: `utf8::validate` and `Utf8Validator` (4 KiB chunks) vs `std::str::from_utf8`;
//! * `decoder`: many small masked frames, and one 64 KiB frame;
//! * `handshake`: `find_head_end` + `parse_request` + `validate_upgrade` on a browser request.
//!
//! Run with `nice -n 10 cargo bench --bench protocol`; see BENCHMARKS.md for figures.

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use std::time::Duration;
use wsloop::protocol::decoder::{Decoded, Decoder, Role};
use wsloop::protocol::frame::{write_client_frame, FrameHeader, HeaderParse, OpCode};
use wsloop::protocol::handshake;
use wsloop::protocol::mask;
use wsloop::protocol::utf8::{self, Utf8Validator};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn header_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("header_parse");
    let cases: [(&str, Vec<u8>); 3] = [
        // 2-byte base header (7-bit length) + mask.
        ("len7_masked", vec![0x81, 0x80 | 20, 1, 2, 3, 4]),
        // 16-bit extended length + mask.
        (
            "len16_masked",
            vec![0x82, 0x80 | 126, 0x10, 0x00, 1, 2, 3, 4],
        ),
        // 64-bit extended length + mask.
        (
            "len64_masked",
            vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
        ),
    ];
    for (name, bytes) in &cases {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("FrameHeader::parse", name),
            bytes,
            |b, bytes| {
                b.iter(|| match FrameHeader::parse(black_box(bytes)) {
                    Ok(HeaderParse::Complete(h)) => h.payload_len,
                    _ => unreachable!(),
                })
            },
        );
    }
    g.finish();
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [1usize << 10, 64 << 10, 1 << 20] {
        let src: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut buf = src.clone();
        let mut dst = vec![0u8; size];
        let label = match size {
            s if s >= 1 << 20 => format!("{}MiB", s >> 20),
            s => format!("{}KiB", s >> 10),
        };
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("apply_mask", &label), |b| {
            b.iter(|| mask::apply_mask(black_box(&mut buf[..]), black_box(KEY), 0))
        });
        g.bench_function(BenchmarkId::new("memcpy", &label), |b| {
            b.iter(|| {
                black_box(&mut dst[..]).copy_from_slice(black_box(&src[..]));
            })
        });
        g.bench_function(BenchmarkId::new("bytewise", &label), |b| {
            b.iter(|| mask::apply_mask_bytewise(black_box(&mut buf[..]), black_box(KEY), 0))
        });
    }
    g.finish();
}

/// 64 KiB of text, cut back to a character boundary.
fn text_64k(unit: &str) -> Vec<u8> {
    let mut s = String::new();
    while s.len() < 64 << 10 {
        s.push_str(unit);
    }
    let mut end = 64 << 10;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn utf8_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii =
        text_64k("The quick brown fox jumps over the lazy dog; {\"id\": 12345, \"ok\": true}\n");
    let mixed = text_64k("WebSocket 是一种网络通信协议，提供全双工通信。 hello wörld 🚀🎉 ok! ");
    for (name, bytes) in [("ascii_64KiB", &ascii), ("mixed_64KiB", &mixed)] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("utf8::validate", name),
            bytes,
            |b, bytes| b.iter(|| utf8::validate(black_box(bytes)).is_some()),
        );
        g.bench_with_input(
            BenchmarkId::new("Utf8Validator_4KiB_chunks", name),
            bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for chunk in black_box(bytes).chunks(4096) {
                        v.feed(chunk).unwrap();
                    }
                    v.finish().is_ok()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("std::str::from_utf8", name),
            bytes,
            |b, bytes| b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok()),
        );
    }
    g.finish();
}

/// Decodes every frame in `buf` (server role), returning the number of messages.
fn decode_all(buf: &mut [u8]) -> usize {
    let mut d = Decoder::new(Role::Server);
    let mut off = 0;
    let mut n = 0;
    loop {
        match d.decode(&mut buf[off..], 1 << 20) {
            Ok(Decoded::Message { consumed, .. }) => {
                off += consumed;
                n += 1;
            }
            Ok(Decoded::Fragment { consumed }) => off += consumed,
            Ok(Decoded::Incomplete { .. }) => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

fn decoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("decoder");
    let mut small = Vec::new();
    for i in 0..1000 {
        let payload = format!("message number {i:05}");
        write_client_frame(
            &mut small,
            true,
            OpCode::Text,
            &payload.as_bytes()[..20],
            KEY,
        );
    }
    let mut large = Vec::new();
    let payload: Vec<u8> = (0..64 << 10).map(|i| (i * 13) as u8).collect();
    write_client_frame(&mut large, true, OpCode::Binary, &payload, KEY);
    for (name, input, frames) in [
        ("1000x20B_text_masked", &small, 1000),
        ("1x64KiB_binary_masked", &large, 1),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            // The decoder unmasks in place, so each iteration gets a fresh (untimed) copy.
            b.iter_batched_ref(
                || input.clone(),
                |buf| assert_eq!(decode_all(buf), frames),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

const BROWSER_REQUEST: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
\r\n";

fn handshake_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    g.bench_function("browser_upgrade", |b| {
        b.iter(|| {
            let req = black_box(BROWSER_REQUEST);
            let mut scanned = 0;
            let end = wsloop::protocol::http1::find_head_end(req, &mut scanned, 8192)
                .unwrap()
                .unwrap();
            let parsed = wsloop::protocol::http1::parse_request(&req[..end]).unwrap();
            let up = handshake::validate_upgrade(&parsed, &["chat"]).unwrap();
            black_box(up)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = header_parse, unmask, utf8_validation, decoder, handshake_bench
}
criterion_main!(benches);
