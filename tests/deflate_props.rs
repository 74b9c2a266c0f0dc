//! permessage-deflate (RFC 7692) end to end through the sans-IO core: our compressor → frame
//! → decoder → our inflater for every window size × context takeover and many sizes;
//! fragmented compressed messages; bombs; invalid text; corrupt data; and interop with an
//! independent implementation, the system's C zlib through `flate2` (both directions, its
//! inflater set to the agreed window, so a compressor that exceeds the window fails here).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use wsloop::protocol::decoder::{Decoded, Decoder, Message, Role};
use wsloop::protocol::deflate::{
    Agreed, Compressor, DeflateConfig, Inflated, Inflater, INFLATE_CHUNK, TAIL,
};
use wsloop::protocol::error::ProtocolError;
use wsloop::protocol::frame::{write_client_frame, write_client_frame_rsv1, OpCode};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn cfg() -> DeflateConfig {
    DeflateConfig {
        min_compress_size: 0,
        ..DeflateConfig::default()
    }
}

/// JSON-like text of `len` bytes (repetitive keys, varying values).
fn json_like(len: usize, seed: u32) -> Vec<u8> {
    let mut s = String::new();
    let mut i = seed;
    while s.len() < len {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"u{}\",\"text\":\"hello number {}\"}},",
            i % 100_000,
            (i >> 8) % 50,
            i % 977
        ));
    }
    let mut v = s.into_bytes();
    v.truncate(len);
    v
}

/// Decodes every frame in `input` (fed in `step`-byte pieces), inflating compressed
/// messages; returns (text?, payload) per data message.
fn receive(
    role: Role,
    input: &[u8],
    step: usize,
    inf: &mut Inflater,
    max: usize,
) -> Result<Vec<(bool, Vec<u8>)>, ProtocolError> {
    let mut dec = Decoder::new(role);
    dec.set_permessage_deflate(true);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    let mut got = Vec::new();
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        let mut off = 0;
        loop {
            match dec.decode(&mut pending[off..], max)? {
                Decoded::Incomplete { .. } => break,
                Decoded::Fragment { consumed } => off += consumed,
                Decoded::Message { consumed, message } => {
                    off += consumed;
                    match message {
                        Message::Compressed { text, data } => {
                            match inf.inflate(data, text, max, &mut out)? {
                                Inflated::Text(t) => got.push((true, t.as_bytes().to_vec())),
                                Inflated::Binary(b) => got.push((false, b.to_vec())),
                            }
                        }
                        Message::Text(t) => got.push((true, t.as_bytes().to_vec())),
                        Message::Binary(b) => got.push((false, b.to_vec())),
                        Message::Pong(_) => {}
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        pending.drain(..off);
    }
    Ok(got)
}

fn agreed(bits: u8, takeover: bool) -> Agreed {
    Agreed {
        server_no_context_takeover: !takeover,
        client_no_context_takeover: !takeover,
        server_max_window_bits: Some(bits),
        client_max_window_bits: Some(bits),
    }
}

/// Raw deflate by C zlib, sync flush, tail stripped; empty → `00` (§7.2.3.6).
fn zlib_c_deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return vec![0];
    }
    let start = c.total_in();
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let used = (c.total_in() - start) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(4096);
        }
        c.compress_vec(&data[used..], &mut out, FlushCompress::Sync)
            .unwrap();
        let used = (c.total_in() - start) as usize;
        if used == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// Inflates with C zlib at exactly `bits` of window; `Err` if the stream is invalid for it.
fn zlib_c_inflate(d: &mut Decompress, data: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(cap + 64);
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let start = d.total_in();
    loop {
        let used = (d.total_in() - start) as usize;
        let st = d
            .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .map_err(|e| e.to_string())?;
        let used = (d.total_in() - start) as usize;
        if used == input.len() || st == Status::StreamEnd {
            return Ok(out);
        }
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        } else if st == Status::BufError {
            return Err("stuck".into());
        }
    }
}

const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];

#[test]
fn round_trip_every_window_and_takeover_through_the_decoder() {
    for bits in 9..=15u8 {
        for takeover in [false, true] {
            let a = agreed(bits, takeover);
            // Server → client direction: our compressor, frames decoded in the client role.
            let mut comp = if takeover {
                Compressor::dedicated(&a, &cfg())
            } else {
                Compressor::shared(a.server_window_bits(), &cfg())
            };
            let mut inf = if takeover {
                Inflater::dedicated(a.server_window_bits())
            } else {
                Inflater::shared()
            };
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for (i, &len) in SIZES.iter().enumerate() {
                // Two messages each, the second close to the first: takeover uses the window.
                for k in 0..2 {
                    let text = (i + k) % 2 == 0;
                    let payload = json_like(len, i as u32);
                    let op = if text { OpCode::Text } else { OpCode::Binary };
                    comp.write_frame(&mut wire, op, &payload);
                    sent.push((text, payload));
                }
            }
            let got = receive(Role::Client, &wire, 7919, &mut inf, 2 << 20).unwrap();
            assert!(got == sent, "bits {bits} takeover {takeover}");
        }
    }
}

#[test]
fn our_output_inflates_with_c_zlib_at_the_agreed_window() {
    // C zlib's inflater with exactly `bits` rejects distances beyond the window.
    for bits in 9..=15u8 {
        for takeover in [false, true] {
            let mut comp = Compressor::new(bits, &cfg(), !takeover);
            let mut d = Decompress::new_with_window_bits(false, bits);
            for (i, &len) in SIZES.iter().enumerate() {
                let payload = json_like(len, 7 + i as u32);
                let mut z = Vec::new();
                comp.compress(&payload, &mut z);
                if !takeover {
                    d.reset(false);
                }
                let back = zlib_c_inflate(&mut d, &z, len).unwrap();
                assert!(back == payload, "bits {bits} takeover {takeover} len {len}");
            }
        }
    }
}

#[test]
fn c_zlib_output_inflates_with_ours_fragmented_and_in_pieces() {
    for bits in 9..=15u8 {
        for takeover in [false, true] {
            let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for (i, &len) in SIZES.iter().enumerate() {
                if len > 70_000 {
                    continue; // keep the byte-piece decoding quick; the size is covered above
                }
                if !takeover {
                    c.reset();
                }
                let payload = json_like(len, 99 + i as u32);
                let z = zlib_c_deflate(&mut c, &payload);
                // Fragment the compressed bytes: RSV1 on the first frame only, a ping between.
                let parts: Vec<&[u8]> = if z.len() > 3 {
                    let third = z.len() / 3;
                    vec![&z[..third], &z[third..2 * third], &z[2 * third..]]
                } else {
                    vec![&z[..]]
                };
                for (j, p) in parts.iter().enumerate() {
                    let fin = j + 1 == parts.len();
                    let op = if j == 0 {
                        OpCode::Text
                    } else {
                        OpCode::Continuation
                    };
                    write_client_frame_rsv1(&mut wire, fin, j == 0, op, p, MASK);
                    if j == 0 && !fin {
                        write_client_frame(&mut wire, true, OpCode::Pong, b"x", MASK);
                    }
                }
                sent.push((true, payload));
            }
            let mut inf = if takeover {
                Inflater::dedicated(bits)
            } else {
                Inflater::shared()
            };
            for step in [wire.len(), 1000, 3] {
                let mut inf2 = if takeover {
                    Inflater::dedicated(bits)
                } else {
                    Inflater::shared()
                };
                let inf = if step == wire.len() {
                    &mut inf
                } else {
                    &mut inf2
                };
                let got = receive(Role::Server, &wire, step, inf, 1 << 20).unwrap();
                assert!(got == sent, "bits {bits} takeover {takeover} step {step}");
            }
        }
    }
}

#[test]
fn bomb_fails_with_1009_and_bounded_output() {
    // 1 GiB of zeros deflates to about 1 MiB (deflate's ratio tops out near 1032:1, so a
    // 16 KiB frame can carry at most ~16 MiB; the 1 GiB bomb needs ~1 MiB of frame).
    let mut c = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let zeros = vec![0u8; 1 << 20];
    let mut z = Vec::with_capacity(1_100_000);
    for _ in 0..1024 {
        let before = c.total_in();
        while c.total_in() - before < zeros.len() as u64 {
            let used = (c.total_in() - before) as usize;
            z.reserve(64 * 1024);
            c.compress_vec(&zeros[used..], &mut z, FlushCompress::None)
                .unwrap();
        }
    }
    loop {
        z.reserve(64 * 1024);
        c.compress_vec(&[], &mut z, FlushCompress::Sync).unwrap();
        if z.ends_with(&TAIL) {
            break;
        }
    }
    z.truncate(z.len() - 4);
    assert!(z.len() < 1_200_000, "{}", z.len());
    let max = 16 << 20;
    let mut frame = Vec::new();
    write_client_frame_rsv1(&mut frame, true, true, OpCode::Binary, &z, MASK);
    let mut inf = Inflater::shared();
    let err = receive(Role::Server, &frame, frame.len(), &mut inf, max).unwrap_err();
    assert_eq!(err.close_code(), 1009);
    // Bounded output: the buffer never grew past the limit plus one chunk.
    let mut out = Vec::new();
    assert_eq!(
        inf.inflate(&z, false, max, &mut out),
        Err(ProtocolError::MessageTooBig)
    );
    assert!(
        out.capacity() <= 2 * (max + INFLATE_CHUNK),
        "{}",
        out.capacity()
    );
    // And a 16 KiB frame: at most ~16 MiB, against a 1 MiB limit.
    let mut small = Vec::new();
    let mut c = Compress::new_with_window_bits(Compression::new(9), false, 15);
    small.reserve(20_000);
    c.compress_vec(&vec![b'a'; 16 << 20], &mut small, FlushCompress::Sync)
        .unwrap();
    assert!(small.len() < 17 * 1024, "{}", small.len());
    let mut out = Vec::new();
    assert_eq!(
        Inflater::dedicated(15).inflate(&small[..small.len() - 4], true, 1 << 20, &mut out),
        Err(ProtocolError::MessageTooBig)
    );
    assert!(out.len() <= (1 << 20) + INFLATE_CHUNK);
}

#[test]
fn invalid_utf8_after_inflating_is_1007_and_corrupt_data_1002() {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let bad = zlib_c_deflate(&mut c, b"{\"text\":\"\xc3\x28\"}");
    let mut frame = Vec::new();
    write_client_frame_rsv1(&mut frame, true, true, OpCode::Text, &bad, MASK);
    let mut inf = Inflater::shared();
    assert_eq!(
        receive(Role::Server, &frame, 5, &mut inf, 1000)
            .unwrap_err()
            .close_code(),
        1007
    );
    // The same bytes as binary are fine.
    frame.clear();
    write_client_frame_rsv1(&mut frame, true, true, OpCode::Binary, &bad, MASK);
    assert!(receive(Role::Server, &frame, 5, &mut inf, 1000).is_ok());
    // Corrupt: a reserved block type, and garbage.
    for junk in [&[0x07u8, 0xff, 0x00][..], b"this is not deflate"] {
        frame.clear();
        write_client_frame_rsv1(&mut frame, true, true, OpCode::Binary, junk, MASK);
        let e = receive(Role::Server, &frame, 100, &mut inf, 1000).unwrap_err();
        assert_eq!(e, ProtocolError::InvalidCompressedData);
        assert_eq!(e.close_code(), 1002);
    }
    // RSV1 without negotiation stays 1002 (the decoder's switch is off by default).
    let mut dec = Decoder::new(Role::Server);
    frame.clear();
    write_client_frame_rsv1(&mut frame, true, true, OpCode::Text, &bad, MASK);
    assert_eq!(
        dec.decode(&mut frame, 1000),
        Err(ProtocolError::ReservedBits)
    );
}

/// Prints what deflate does to short JSON-like messages and asserts the threshold's reason:
/// below ~64 bytes nothing is saved, from 128 bytes something is.
#[test]
fn small_json_compression_sizes() {
    let mut comp = Compressor::shared(15, &cfg());
    println!("size  compressed  saved");
    let mut saved_at = Vec::new();
    for len in [16usize, 32, 48, 64, 96, 128, 192, 256, 512, 1024] {
        let mut total = 0;
        let samples = 20;
        for seed in 0..samples {
            let msg = json_like(len, seed);
            let mut z = Vec::new();
            comp.compress(&msg, &mut z);
            total += z.len();
        }
        let avg = total as f64 / samples as f64;
        let saved = 1.0 - avg / len as f64;
        println!("{len:>4}  {avg:>10.1}  {:>5.1}%", saved * 100.0);
        saved_at.push((len, saved));
    }
    for (len, saved) in saved_at {
        if len <= 32 {
            assert!(saved < 0.1, "{len}: {saved}");
        }
        if len >= 128 {
            assert!(saved > 0.1, "{len}: {saved}");
        }
    }
}
