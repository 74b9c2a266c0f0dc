//! permessage-deflate (RFC 7692), sans-IO: negotiation in the handshake, inflating received
//! messages with a bound enforced while inflating, compressing messages to send.
//!
//! * [`negotiate`]: `Sec-WebSocket-Extensions` offers → [`Agreed`] parameters and the response
//!   header line.
//! * [`Inflater`]: a compressed message ([`crate::protocol::Message::Compressed`]) → its bytes,
//!   at most `max_message` of them (1009 past it, decided chunk by chunk), text checked as
//!   UTF-8 (1007), corrupt data 1002.
//! * [`Compressor`]: a payload → a whole server frame with RSV1 set, or plain below a size
//!   threshold.
//!
//! Memory model (what a connection owns): with `client_no_context_takeover` agreed, nothing
//! for inflation between messages (one [`Inflater::shared`] per loop is reset per message);
//! with `server_no_context_takeover`, nothing for compression (one [`SharedCompressors`] per
//! loop, reset per message, so a broadcast is compressed once for every subscriber). Context
//! takeover costs a dedicated [`Inflater`] / [`Compressor`] per connection, sized by the
//! agreed window bits and memory level (measured: `tests/deflate_memory.rs`): a compressor
//! holds 134 KiB (window 9, memLevel 1) to 371 KiB (window 15, memLevel 8), because
//! zlib-rs keeps a fixed 64 Ki-entry hash table (128 KiB); an inflater 46 KiB at any window
//! (zlib-rs allocates the full 32 KiB window).
//!
//! Engine: `zlib-rs`'s safe API, used directly rather than through `flate2`, because
//! `flate2` hard-codes zlib's `memLevel` 8 (its literal buffers alone are ~112 KiB per
//! compressor) while `zlib_rs::DeflateConfig` takes the memory level. zlib-rs (like every
//! zlib) cannot produce a raw deflate stream with an 8-bit window: window bits 8 in our
//! configuration are treated as 9, as zlib ≥ 1.2.9, Python's `websockets` and Node's `ws`
//! do, and a client that *requires* an 8-bit server window is declined (see [`negotiate`]).

mod compress;
mod inflate;
mod negotiate;

pub use compress::{Compressor, SharedCompressors};
pub use inflate::{Inflated, Inflater, CHUNK as INFLATE_CHUNK};
pub use negotiate::{negotiate, negotiate_request, Agreed};

/// The server's permessage-deflate settings (what it accepts and requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Largest LZ77 window the server compresses with, as log2 bytes, 8..=15 (8 acts as 9).
    /// Answered as `server_max_window_bits` when below 15 or when the client asks for less.
    pub server_max_window_bits: u8,
    /// Largest window the server lets the client use, 8..=15 (8 acts as 9). Sent as
    /// `client_max_window_bits` only when the client offered that parameter (RFC 7692
    /// §7.1.2.2); otherwise the client may use 15 and a dedicated inflater needs it.
    pub client_max_window_bits: u8,
    /// Always answer `server_no_context_takeover`: compress every message from a fresh
    /// state, so no compressor is kept per connection (a shared one per loop serves all).
    pub server_no_context_takeover: bool,
    /// Always answer `client_no_context_takeover`: the client compresses every message from
    /// a fresh state, so no inflater is kept per connection between messages.
    pub client_no_context_takeover: bool,
    /// zlib memory level, 1..=9: the size of the compressor's literal buffers
    /// (`4 << (mem_level + 6)` + `3 << (mem_level + 6)` bytes). Lower is smaller and a little
    /// worse at compressing. Out of range values are clamped.
    pub mem_level: u8,
    /// zlib compression level, 0..=9 (1 fastest, 9 best, 6 zlib's default).
    pub level: u8,
    /// Payloads shorter than this are sent uncompressed (RSV1 clear); see
    /// [`DEFAULT_MIN_COMPRESS_SIZE`].
    pub min_compress_size: usize,
}

/// The default [`DeflateConfig::min_compress_size`]: 128 bytes.
///
/// Measured with our compressor (level 6, no context takeover, window 15) on JSON-like
/// records (`tests/deflate_props.rs::small_json_compression_sizes`, average of 20): 16, 32
/// and 48 bytes grow by 2 bytes (-12%, -6%, -4%), 64 bytes saves 2%, 96 bytes 30%, 128 bytes
/// 36%, 256 bytes 58%, 1 KiB 77%. Below ~100 bytes a message has too few repeats for LZ77
/// to pay for the block overhead, so compressing costs CPU on both ends for nothing; 128
/// is the first power of two that saves reliably. (With context takeover, short messages
/// can compress against earlier ones; a dedicated compressor may warrant a lower value.)
pub const DEFAULT_MIN_COMPRESS_SIZE: usize = 128;

impl Default for DeflateConfig {
    /// Cheap per connection: no context takeover either way (shared compressor and
    /// inflater per loop, nothing per connection), full windows (they cost nothing per
    /// connection then), level 6, memory level 8 (one compressor per loop).
    fn default() -> Self {
        DeflateConfig {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            mem_level: 8,
            level: 6,
            min_compress_size: DEFAULT_MIN_COMPRESS_SIZE,
        }
    }
}

/// Window bits as zlib can use them for raw deflate: 9..=15 (8 → 9, see the module docs).
pub(crate) fn usable_window_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// The four bytes a sender strips from each compressed message and the receiver appends
/// before inflating (RFC 7692 §7.2.1, §7.2.2): the end of an empty stored block.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
