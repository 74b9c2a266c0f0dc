//! Inflating received permessage-deflate messages (RFC 7692 §7.2.2), bounded while it runs.
//!
//! Output grows in steps of at most [`CHUNK`] and the total is checked after every step, so a small
//! frame that would inflate to gigabytes fails with 1009 after at most `max_message +
//! CHUNK` bytes of output. Text is UTF-8 checked chunk by chunk, so invalid text fails
//! (1007) as soon as it is produced.

use super::TAIL;
use crate::protocol::error::ProtocolError;
use crate::protocol::utf8::{self, Utf8Validator};
use zlib_rs::{Inflate, InflateError, InflateFlush, Status};

/// Output is produced (and counted against the limit) in steps of at most this many bytes.
pub const CHUNK: usize = 32 * 1024;

/// The smallest first output step (a message's first step is 4x its compressed size,
/// within `FIRST_STEP_MIN..=CHUNK`; each later step doubles, up to [`CHUNK`]).
const FIRST_STEP_MIN: usize = 256;

/// A raw-deflate decompressor for one connection's messages or for a whole loop's.
///
/// * [`Inflater::dedicated`]: the client keeps its LZ77 context across messages (no
///   `client_no_context_takeover`), so the inflater is kept per connection, with the agreed
///   client window, and never reset between messages.
/// * [`Inflater::shared`]: the client resets per message (`client_no_context_takeover`
///   agreed); one inflater with a 32 KiB window serves every such connection of a loop and
///   is reset before each message, so connections hold nothing between messages.
pub struct Inflater {
    z: Inflate,
    window_bits: u8,
    /// Reset before each message (shared); otherwise the context carries over.
    reset_each: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("window_bits", &self.window_bits)
            .field("reset_each", &self.reset_each)
            .finish()
    }
}

impl Inflater {
    /// A per-connection inflater for a client with context takeover; `window_bits` is the
    /// agreed `client_max_window_bits` ([`super::Agreed::client_window_bits`]), 8..=15 (8
    /// acts as 9).
    pub fn dedicated(window_bits: u8) -> Self {
        let window_bits = super::usable_window_bits(window_bits);
        Inflater {
            z: Inflate::new(false, window_bits),
            window_bits,
            reset_each: false,
        }
    }

    /// One inflater per loop for every client without context takeover: 32 KiB window
    /// (inflates any window size), reset before each message.
    pub fn shared() -> Self {
        Inflater {
            z: Inflate::new(false, 15),
            window_bits: 15,
            reset_each: true,
        }
    }

    /// Whether this inflater is reset per message ([`Inflater::shared`]).
    pub fn is_shared(&self) -> bool {
        self.reset_each
    }

    /// Inflates one whole compressed message (the payload of [`Message::Compressed`],
    /// without the `00 00 ff ff` tail, which is appended here as §7.2.2 says) into `out`,
    /// which is cleared first. For text, returns the inflated text as UTF-8 checked.
    ///
    /// Errors: more than `max_message` inflated bytes → [`ProtocolError::MessageTooBig`]
    /// (1009), decided after each [`CHUNK`] of output; invalid UTF-8 in text →
    /// [`ProtocolError::InvalidUtf8`] (1007) at the chunk that holds it; data that is not a
    /// deflate stream → [`ProtocolError::InvalidCompressedData`] (1002). After an error the
    /// connection must fail; a dedicated inflater is then in an undefined state (drop it).
    ///
    /// [`Message::Compressed`]: crate::protocol::Message::Compressed
    pub fn inflate<'o>(
        &mut self,
        compressed: &[u8],
        text: bool,
        max_message: usize,
        out: &'o mut Vec<u8>,
    ) -> Result<Inflated<'o>, ProtocolError> {
        out.clear();
        if self.reset_each {
            self.restart();
        }
        let result = self.run(compressed, text, max_message, out);
        if result.is_err() && self.reset_each {
            // Leave the shared state clean for the next connection's message.
            self.restart();
        }
        result?;
        Ok(if text {
            // Checked incrementally already; this pass only converts.
            Inflated::Text(utf8::validate(out).ok_or(ProtocolError::InvalidUtf8)?)
        } else {
            Inflated::Binary(out)
        })
    }

    /// Starts a new deflate stream with the same window.
    fn restart(&mut self) {
        if self.window_bits == 15 {
            // zlib-rs resets to its default window, 15 bits: keep the allocation.
            self.z.reset(false);
        } else {
            self.z = Inflate::new(false, self.window_bits);
        }
    }

    fn run(
        &mut self,
        compressed: &[u8],
        text: bool,
        max_message: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let mut utf8 = Utf8Validator::new();
        // The message, then the tail; each fully consumed before the next.
        let mut inputs = [compressed, &TAIL[..]];
        let mut which = 0;
        // The output room is zero-filled before zlib writes into it, so it starts near
        // what the message likely inflates to (JSON-like text: 3-6x) and doubles up to
        // CHUNK, rather than clearing 32 KiB for every small message.
        let mut step = compressed
            .len()
            .saturating_mul(4)
            .clamp(FIRST_STEP_MIN, CHUNK);
        loop {
            // Room for one more step, but never much past the limit: one byte past it is
            // enough to know the message is too big.
            let room = step.min(max_message.saturating_sub(out.len()).saturating_add(1));
            step = (step * 2).min(CHUNK);
            let start = out.len();
            out.resize(start + room, 0);
            let input = inputs[which];
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, &mut out[start..], InflateFlush::SyncFlush);
            let read = (self.z.total_in() - in0) as usize;
            let wrote = (self.z.total_out() - out0) as usize;
            out.truncate(start + wrote);
            inputs[which] = &input[read..];
            if text {
                utf8.feed(&out[start..])?;
            }
            if out.len() > max_message {
                return Err(ProtocolError::MessageTooBig);
            }
            match status {
                Ok(Status::StreamEnd) => {
                    // The sender ended the stream with a BFINAL block (§7.2.3.4): what
                    // follows (padding, the appended tail) is not part of it and is ignored,
                    // as zlib-based peers do; the next message starts a new stream.
                    self.restart();
                    break;
                }
                Ok(Status::Ok | Status::BufError) => {}
                Err(InflateError::DataError | InflateError::NeedDict { .. }) => {
                    return Err(ProtocolError::InvalidCompressedData)
                }
                Err(InflateError::StreamError | InflateError::MemError) => {
                    return Err(ProtocolError::InvalidCompressedData)
                }
            }
            let output_full = wrote == room;
            if inputs[which].is_empty() && !output_full {
                if which == 1 {
                    break;
                }
                which = 1;
                continue;
            }
            if read == 0 && wrote == 0 {
                // No progress with input and room left: truncated or inconsistent stream.
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
        if text {
            utf8.finish()?;
        }
        Ok(())
    }
}

/// An inflated message, borrowed from the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inflated<'a> {
    /// Inflated text, valid UTF-8.
    Text(&'a str),
    /// Inflated binary data.
    Binary(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw deflate with a sync flush and the tail stripped, by zlib-rs directly.
    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z = zlib_rs::Deflate::new(6, false, 15);
        let mut out = vec![0u8; data.len() * 2 + 64];
        z.compress(data, &mut out, zlib_rs::DeflateFlush::SyncFlush)
            .unwrap();
        out.truncate(z.total_out() as usize);
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn rfc_7692_examples() {
        // §7.2.3.1 "Hello", §7.2.3.3 no compression (stored block), §7.2.3.4 BFINAL set.
        let cases: [&[u8]; 3] = [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        ];
        for (i, c) in cases.iter().enumerate() {
            let mut out = Vec::new();
            for inf in [&mut Inflater::shared(), &mut Inflater::dedicated(15)] {
                assert_eq!(
                    inf.inflate(c, true, 100, &mut out),
                    Ok(Inflated::Text("Hello")),
                    "case {i}"
                );
            }
        }
        // §7.2.3.2: two messages sharing a sliding window.
        let mut inf = Inflater::dedicated(15);
        let mut out = Vec::new();
        let a = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let b = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(
            inf.inflate(&a, false, 100, &mut out),
            Ok(Inflated::Binary(b"Hello"))
        );
        assert_eq!(
            inf.inflate(&b, false, 100, &mut out),
            Ok(Inflated::Binary(b"Hello"))
        );
        // §7.2.3.6: an empty message is a single 0x00 byte.
        assert_eq!(
            Inflater::shared().inflate(&[0], true, 0, &mut out),
            Ok(Inflated::Text(""))
        );
    }

    #[test]
    fn bomb_fails_after_at_most_max_plus_a_chunk() {
        let data = deflate(&vec![b'a'; 4 << 20]);
        assert!(data.len() < 16 * 1024, "{}", data.len());
        let max = 100_000;
        let mut out = Vec::new();
        let mut inf = Inflater::shared();
        assert_eq!(
            inf.inflate(&data, false, max, &mut out),
            Err(ProtocolError::MessageTooBig)
        );
        assert!(out.len() <= max + CHUNK && out.capacity() <= 2 * (max + CHUNK));
        // The shared inflater works for the next message.
        let ok = deflate(b"next");
        assert_eq!(
            inf.inflate(&ok, false, max, &mut out),
            Ok(Inflated::Binary(b"next"))
        );
        // Exactly at the limit is fine, one over is not.
        let exact = deflate(&[7; 1000]);
        assert!(inf.inflate(&exact, false, 1000, &mut out).is_ok());
        assert_eq!(
            inf.inflate(&exact, false, 999, &mut out),
            Err(ProtocolError::MessageTooBig)
        );
    }

    #[test]
    fn corrupt_and_invalid_text() {
        let mut out = Vec::new();
        let mut inf = Inflater::shared();
        // BTYPE 11 is reserved.
        assert_eq!(
            inf.inflate(&[0xff, 0xff], false, 100, &mut out)
                .unwrap_err()
                .close_code(),
            1002
        );
        // Invalid UTF-8 after inflating → 1007; the same bytes as binary are fine.
        let bad = deflate(b"ok \xff");
        assert_eq!(
            inf.inflate(&bad, true, 100, &mut out),
            Err(ProtocolError::InvalidUtf8)
        );
        assert!(inf.inflate(&bad, false, 100, &mut out).is_ok());
        // Text cut in the middle of a sequence.
        let cut = deflate("€".as_bytes().split_at(2).0);
        assert_eq!(
            inf.inflate(&cut, true, 100, &mut out),
            Err(ProtocolError::InvalidUtf8)
        );
        // A truncated stream: a stored block announcing 5 bytes with 2 present.
        assert_eq!(
            inf.inflate(
                &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e'],
                false,
                100,
                &mut out
            ),
            Err(ProtocolError::InvalidCompressedData)
        );
        // After a final block (§7.2.3.4) a dedicated inflater starts a new stream.
        let mut ded = Inflater::dedicated(10);
        let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        for _ in 0..2 {
            assert_eq!(
                ded.inflate(&fin, false, 100, &mut out),
                Ok(Inflated::Binary(b"Hello"))
            );
        }
    }
}
