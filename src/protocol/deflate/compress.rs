//! Compressing messages to send (RFC 7692 §7.2.1): raw deflate, sync flush, the trailing
//! `00 00 ff ff` removed, written as one server frame with RSV1 set.

use super::{usable_window_bits, Agreed, DeflateConfig, TAIL};
use crate::protocol::frame::{encode_header_rsv1, write_server_frame, OpCode, MAX_HEADER_LEN};
use zlib_rs::{Deflate, DeflateFlush, Method, Status, Strategy};

/// The longest server frame header (no mask): 2 + 8 bytes.
const SERVER_MAX_HEADER: usize = 10;

/// A raw-deflate compressor for one connection's messages or for a whole loop's.
///
/// * [`Compressor::shared`] (`server_no_context_takeover` agreed): reset before every
///   message, so one per loop (per window size, see [`SharedCompressors`]) serves every
///   connection, and a broadcast is compressed once for all its subscribers.
/// * [`Compressor::dedicated`] (context takeover): kept per connection; later messages
///   refer back to earlier ones, so every compressed message must reach the peer, in order.
pub struct Compressor {
    z: Deflate,
    window_bits: u8,
    reset_each: bool,
    min_compress_size: usize,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("reset_each", &self.reset_each)
            .field("min_compress_size", &self.min_compress_size)
            .finish()
    }
}

impl Compressor {
    /// A compressor with an LZ77 window of `window_bits` (8..=15, 8 acts as 9) and `cfg`'s
    /// level, memory level and size threshold; `reset_each`: no context takeover.
    pub fn new(window_bits: u8, cfg: &DeflateConfig, reset_each: bool) -> Self {
        let window_bits = usable_window_bits(window_bits);
        let z = Deflate::new_with_config(zlib_rs::DeflateConfig {
            level: i32::from(cfg.level.min(9)),
            method: Method::Deflated,
            // Negative: raw deflate, no zlib header (RFC 7692 §7.2.1).
            window_bits: -i32::from(window_bits),
            mem_level: i32::from(cfg.mem_level.clamp(1, 9)),
            strategy: Strategy::Default,
        });
        Compressor {
            z,
            window_bits,
            reset_each,
            min_compress_size: cfg.min_compress_size,
        }
    }

    /// The per-loop compressor for connections that agreed `server_no_context_takeover`
    /// with this window.
    pub fn shared(window_bits: u8, cfg: &DeflateConfig) -> Self {
        Self::new(window_bits, cfg, true)
    }

    /// A per-connection compressor for a connection that agreed context takeover.
    pub fn dedicated(agreed: &Agreed, cfg: &DeflateConfig) -> Self {
        Self::new(agreed.server_window_bits(), cfg, false)
    }

    /// The window (log2 bytes) this compressor uses.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether this compressor is reset per message (no context takeover).
    pub fn is_shared(&self) -> bool {
        self.reset_each
    }

    /// Appends `payload` compressed as one message's frame payload: raw deflate ending in a
    /// sync flush, with its `00 00 ff ff` tail removed (§7.2.1). An empty payload becomes
    /// the single byte `00` (§7.2.3.6), which leaves the compressor's context untouched.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            out.push(0x00);
            return;
        }
        if self.reset_each {
            self.z.reset();
        }
        let mut input = payload;
        // Deflate output is at most a little larger than its input; grow if not enough.
        let mut room = payload.len() + 64;
        loop {
            let at = out.len();
            out.resize(at + room, 0);
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .compress(input, &mut out[at..], DeflateFlush::SyncFlush);
            let read = (self.z.total_in() - in0) as usize;
            let wrote = (self.z.total_out() - out0) as usize;
            out.truncate(at + wrote);
            input = &input[read..];
            // The configuration is validated at construction and the buffers are ours, so
            // an error is a bug in this loop, not bad input.
            let status = status.expect("deflate with a valid configuration");
            if input.is_empty() && (wrote < room || status == Status::BufError) {
                break;
            }
            room = 4096;
        }
        debug_assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
    }

    /// Appends one whole server frame (FIN set) for a text or binary message: compressed
    /// with RSV1 set, or uncompressed with RSV1 clear when the payload is shorter than
    /// `min_compress_size` — and, for a shared compressor, also when compressing did not
    /// make it smaller (no context to keep in step). Returns whether it was compressed.
    pub fn write_frame(&mut self, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) -> bool {
        if payload.len() < self.min_compress_size || opcode.is_control() {
            write_server_frame(out, true, opcode, payload);
            return false;
        }
        let start = out.len();
        out.resize(start + SERVER_MAX_HEADER, 0);
        self.compress(payload, out);
        let len = out.len() - start - SERVER_MAX_HEADER;
        if self.reset_each && len >= payload.len() {
            out.truncate(start);
            write_server_frame(out, true, opcode, payload);
            return false;
        }
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header_rsv1(&mut h, true, true, opcode, len as u64, None);
        // Slide the payload back over the unused part of the header room.
        out.copy_within(start + SERVER_MAX_HEADER.., start + n);
        out.truncate(start + n + len);
        out[start..start + n].copy_from_slice(&h[..n]);
        true
    }
}

/// The loop's shared compressors, one per window size in use (created on first use), for
/// connections with `server_no_context_takeover`: almost always a single one, since a
/// window below the server's configured one is only used when a client asks for it.
#[derive(Debug)]
pub struct SharedCompressors {
    cfg: DeflateConfig,
    by_bits: [Option<Box<Compressor>>; 7],
}

impl SharedCompressors {
    /// No compressor yet; one per window size is made on first use.
    pub fn new(cfg: DeflateConfig) -> Self {
        SharedCompressors {
            cfg,
            by_bits: Default::default(),
        }
    }

    /// The shared compressor for an agreed server window (9..=15; 8 acts as 9).
    pub fn get(&mut self, window_bits: u8) -> &mut Compressor {
        let bits = usable_window_bits(window_bits);
        let cfg = &self.cfg;
        self.by_bits[usize::from(bits - 9)]
            .get_or_insert_with(|| Box::new(Compressor::shared(bits, cfg)))
    }

    /// The shared compressor for a connection's agreed parameters.
    pub fn for_agreed(&mut self, agreed: &Agreed) -> &mut Compressor {
        self.get(agreed.server_window_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::{Inflated, Inflater};
    use crate::protocol::frame::{FrameHeader, HeaderParse};

    fn cfg(min: usize) -> DeflateConfig {
        DeflateConfig {
            min_compress_size: min,
            ..DeflateConfig::default()
        }
    }

    #[test]
    fn hello_matches_rfc_7692_example() {
        // §7.2.3.1: "Hello" → f2 48 cd c9 c9 07 00 (fixed Huffman; zlib's choice too).
        let mut c = Compressor::shared(15, &cfg(0));
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        out.clear();
        c.compress(b"", &mut out);
        assert_eq!(out, [0x00]);
    }

    #[test]
    fn frames_have_rsv1_and_the_right_length() {
        let mut c = Compressor::shared(15, &cfg(0));
        let mut inf = Inflater::shared();
        let mut buf = Vec::new();
        for len in [0usize, 1, 125, 126, 200, 70_000, 300_000] {
            let payload: Vec<u8> = (0..len).map(|i| b"abcabd"[i % 6]).collect();
            let mut out = vec![9u8; 3]; // frames are appended
            let z = c.write_frame(&mut out, OpCode::Binary, &payload);
            // Tiny payloads grow when compressed, so a shared compressor sends them plain.
            assert_eq!(z, len >= 125, "{len}");
            let HeaderParse::Complete(h) = FrameHeader::parse(&out[3..]).unwrap() else {
                panic!()
            };
            assert!(h.fin && h.mask.is_none());
            assert_eq!(h.rsv, if z { 0b100 } else { 0 });
            assert_eq!(3 + h.header_len + h.payload_len as usize, out.len());
            let body = &out[3 + h.header_len..];
            if h.rsv != 0 {
                assert_eq!(
                    inf.inflate(body, false, usize::MAX, &mut buf),
                    Ok(Inflated::Binary(&payload))
                );
            } else {
                assert_eq!(body, payload);
            }
        }
    }

    #[test]
    fn below_threshold_or_incompressible_goes_plain() {
        let mut c = Compressor::shared(15, &cfg(128));
        let mut out = Vec::new();
        assert!(!c.write_frame(&mut out, OpCode::Text, &[b'a'; 127]));
        assert_eq!(out[0], 0x81);
        out.clear();
        assert!(c.write_frame(&mut out, OpCode::Text, &[b'a'; 128]));
        assert_eq!(out[0], 0xc1);
        // Pseudo-random bytes do not shrink: sent as they are by a shared compressor.
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        out.clear();
        assert!(!c.write_frame(&mut out, OpCode::Binary, &noise));
        assert_eq!(&out[4..], &noise[..]);
        // A dedicated one must send it compressed anyway (its context moved on).
        let agreed = Agreed {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
        };
        let mut d = Compressor::dedicated(&agreed, &cfg(128));
        out.clear();
        assert!(d.write_frame(&mut out, OpCode::Binary, &noise));
    }

    #[test]
    fn shared_compressors_per_window() {
        let mut s = SharedCompressors::new(cfg(0));
        assert_eq!(s.get(8).window_bits(), 9);
        assert_eq!(s.get(12).window_bits(), 12);
        assert!(s.get(15).is_shared());
    }
}
