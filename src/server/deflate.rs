//! permessage-deflate (RFC 7692) on a loop: which connections agreed to it and with what,
//! the loop's shared compressors and inflater, and the per-connection contexts that
//! context takeover needs. The compression itself is sans-IO in
//! [`crate::protocol::deflate`].
//!
//! Memory per connection, by what was agreed:
//! - no context takeover either way (the server's default answer): a 24-byte entry in
//!   [`LoopDeflate::conns`], nothing else. Messages are compressed by the loop's
//!   [`SharedCompressors`] and inflated by its one shared [`Inflater`], both reset per
//!   message;
//! - server context takeover: a dedicated [`Compressor`], made at the connection's first
//!   compressed send (134–371 KiB by window and memory level, see the protocol module);
//! - client context takeover: a dedicated [`Inflater`] (46 KiB), made at the first
//!   compressed message received.
//!
//! A publish compresses at most once per loop and window size for every subscriber
//! without server context takeover (the frame is cached for the duration of the
//! publish); subscribers with context takeover each need their own compression.

use crate::protocol::deflate::{
    negotiate_request, Agreed, Compressor, DeflateConfig, Inflated, Inflater, SharedCompressors,
};
use crate::protocol::error::ProtocolError;
use crate::protocol::frame::{FrameHeader, HeaderParse, OpCode};
use crate::protocol::http1::Request;

/// The inflate output buffer is kept between messages up to this capacity; a bigger one
/// (after a big message) is given back, so one large message does not pin its size.
const KEEP_INFLATED: usize = 256 << 10;

/// What one connection agreed to, and the contexts context takeover needs.
pub(crate) struct ConnDeflate {
    agreed: Agreed,
    /// With server context takeover: made at the first compressed send.
    compressor: Option<Box<Compressor>>,
    /// With client context takeover: made at the first compressed message received.
    inflater: Option<Box<Inflater>>,
}

/// One loop's permessage-deflate state.
pub(crate) struct LoopDeflate {
    cfg: DeflateConfig,
    compressors: SharedCompressors,
    /// Inflates for every connection whose client resets its context per message. Made
    /// at the first such message (46 KiB).
    inflater: Option<Box<Inflater>>,
    /// Inflate output, lent to the handler for one message.
    inflated: Vec<u8>,
    /// Indexed by connection slot; `Some` while an open connection has deflate agreed.
    conns: Vec<Option<ConnDeflate>>,
    /// How many entries of `conns` are `Some`: publishes skip all of this while it is 0.
    pub active: usize,
    /// How many of them agreed context takeover in either direction (may hold contexts).
    takeover: usize,
    /// Past this many, new connections are answered no context takeover both ways.
    max_takeover: usize,
    /// The publish being delivered, compressed by each shared window size (bit `b - 9` of
    /// `cached` set once `cache[b - 9]` holds it).
    cache: [Vec<u8>; 7],
    cached: u8,
}

impl LoopDeflate {
    /// `max_takeover`: this loop's share of `Config::max_deflate_contexts`.
    pub fn new(cfg: DeflateConfig, max_takeover: usize) -> Self {
        LoopDeflate {
            cfg,
            takeover: 0,
            max_takeover,
            compressors: SharedCompressors::new(cfg),
            inflater: None,
            inflated: Vec::new(),
            conns: Vec::new(),
            active: 0,
            cache: Default::default(),
            cached: 0,
        }
    }

    /// The parameters to answer an upgrade request with, if it offers an acceptable
    /// permessage-deflate (RFC 7692 §5). Once the loop has `max_takeover` connections with
    /// context takeover, the answer adds `server_no_context_takeover` and
    /// `client_no_context_takeover` (a server may add both to any accepted offer, §7.1.1),
    /// so the memory contexts cost stays bounded whatever clients offer.
    pub fn negotiate(&self, req: &Request<'_>) -> Option<Agreed> {
        let agreed = negotiate_request(req, &self.cfg)?;
        if !takes_over(&agreed) || self.takeover < self.max_takeover {
            return Some(agreed);
        }
        let shared = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..self.cfg
        };
        negotiate_request(req, &shared)
    }

    /// Records that connection `idx` upgraded with `agreed` in force.
    pub fn open(&mut self, idx: u32, agreed: Agreed) {
        let i = idx as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        if let Some(old) = &self.conns[i] {
            // A slot is released before it is reused; keep the counts right regardless.
            self.takeover -= usize::from(takes_over(&old.agreed));
        } else {
            self.active += 1;
        }
        self.takeover += usize::from(takes_over(&agreed));
        self.conns[i] = Some(ConnDeflate {
            agreed,
            compressor: None,
            inflater: None,
        });
    }

    /// Forgets connection `idx` (released), freeing its contexts.
    pub fn close(&mut self, idx: u32) {
        if let Some(slot) = self.conns.get_mut(idx as usize) {
            if let Some(old) = slot.take() {
                self.active -= 1;
                self.takeover -= usize::from(takes_over(&old.agreed));
            }
        }
    }

    /// Whether connection `idx` has permessage-deflate agreed.
    #[inline]
    pub fn is_on(&self, idx: u32) -> bool {
        matches!(self.conns.get(idx as usize), Some(Some(_)))
    }

    /// Appends one whole frame of a text or binary message for connection `idx`, which
    /// has deflate on: compressed with RSV1 set, or plain when it is shorter than the
    /// threshold (or, without context takeover, does not shrink).
    pub fn write_frame(&mut self, idx: u32, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
        let Some(Some(conn)) = self.conns.get_mut(idx as usize) else {
            crate::protocol::frame::write_server_frame(out, true, opcode, payload);
            return;
        };
        let compressor = if conn.agreed.server_no_context_takeover {
            self.compressors.for_agreed(&conn.agreed)
        } else {
            let (agreed, cfg) = (&conn.agreed, &self.cfg);
            conn.compressor
                .get_or_insert_with(|| Box::new(Compressor::dedicated(agreed, cfg)))
        };
        compressor.write_frame(out, opcode, payload);
    }

    /// Forgets the frame cached for the previous publish.
    #[inline]
    pub fn begin_publish(&mut self) {
        self.cached = 0;
    }

    /// Appends a published frame (`plain`: an unmasked server frame, FIN set, as
    /// `write_server_frame` makes it) for connection `idx`, compressed as it agreed.
    /// Returns `false`, appending nothing, when `idx` has no deflate (send `plain`).
    pub fn write_published(&mut self, idx: u32, plain: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(Some(conn)) = self.conns.get(idx as usize) else {
            return false;
        };
        let bits = conn.agreed.server_window_bits().clamp(9, 15);
        let slot = usize::from(bits - 9);
        let shared = conn.agreed.server_no_context_takeover;
        // Every subscriber after the first of a window size takes the cached frame as is.
        if !shared || self.cached & (1 << slot) == 0 {
            let Some((opcode, payload)) = split_server_frame(plain) else {
                return false;
            };
            if !shared {
                self.write_frame(idx, out, opcode, payload);
                return true;
            }
            let frame = &mut self.cache[slot];
            frame.clear();
            self.compressors
                .get(bits)
                .write_frame(frame, opcode, payload);
            self.cached |= 1 << slot;
        }
        out.extend_from_slice(&self.cache[slot]);
        true
    }

    /// Lends the inflate output buffer (give it back with [`LoopDeflate::put_buffer`]).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inflated)
    }

    /// Takes the inflate output buffer back, dropping it if a big message grew it.
    pub fn put_buffer(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > KEEP_INFLATED {
            buf = Vec::new();
        }
        buf.clear();
        self.inflated = buf;
    }

    /// Inflates one compressed message of connection `idx` into `out` (RFC 7692 §7.2.2),
    /// at most `max_message` bytes of it.
    ///
    /// Errors: past `max_message` → 1009, invalid UTF-8 in text → 1007, not a deflate
    /// stream → 1002 (see [`Inflater::inflate`]); a connection without deflate agreed
    /// never gets here (its decoder refuses RSV1 with 1002).
    pub fn inflate<'o>(
        &mut self,
        idx: u32,
        text: bool,
        data: &[u8],
        max_message: usize,
        out: &'o mut Vec<u8>,
    ) -> Result<Inflated<'o>, ProtocolError> {
        let Some(Some(conn)) = self.conns.get_mut(idx as usize) else {
            return Err(ProtocolError::ReservedBits);
        };
        let inflater = if conn.agreed.client_no_context_takeover {
            self.inflater
                .get_or_insert_with(|| Box::new(Inflater::shared()))
        } else {
            let bits = conn.agreed.client_window_bits();
            conn.inflater
                .get_or_insert_with(|| Box::new(Inflater::dedicated(bits)))
        };
        let result = inflater.inflate(data, text, max_message, out);
        if result.is_err() {
            // The connection fails; a dedicated context is in an undefined state.
            conn.inflater = None;
        }
        result
    }
}

/// Whether `agreed` lets either side keep its context between messages (so the
/// connection may come to hold a dedicated compressor or inflater).
fn takes_over(agreed: &Agreed) -> bool {
    !(agreed.server_no_context_takeover && agreed.client_no_context_takeover)
}

/// The opcode and payload of an unmasked server frame with FIN set, as
/// [`crate::protocol::frame::write_server_frame`] writes it; `None` for anything else.
pub(crate) fn split_server_frame(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    match FrameHeader::parse(frame) {
        Ok(HeaderParse::Complete(h)) if h.fin && h.mask.is_none() && h.rsv == 0 => {
            let payload = frame.get(h.header_len..)?;
            (payload.len() as u64 == h.payload_len).then_some((h.opcode, payload))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::write_server_frame;

    fn agreed(server_nct: bool, client_nct: bool, bits: Option<u8>) -> Agreed {
        Agreed {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: bits,
            client_max_window_bits: None,
        }
    }

    fn inflate_frame(frame: &[u8]) -> Vec<u8> {
        let (_, payload) = match FrameHeader::parse(frame).unwrap() {
            HeaderParse::Complete(h) => {
                assert_eq!(h.rsv, 0b100, "RSV1 set on a compressed frame");
                (h.opcode, &frame[h.header_len..])
            }
            _ => panic!("incomplete"),
        };
        let mut out = Vec::new();
        match Inflater::shared()
            .inflate(payload, false, 1 << 20, &mut out)
            .unwrap()
        {
            Inflated::Binary(b) => b.to_vec(),
            Inflated::Text(_) => unreachable!(),
        }
    }

    #[test]
    fn split_accepts_only_whole_plain_server_frames() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let mut f = Vec::new();
            write_server_frame(&mut f, true, OpCode::Binary, &payload);
            assert_eq!(split_server_frame(&f), Some((OpCode::Binary, &payload[..])));
            f.pop();
            if len > 0 {
                assert_eq!(split_server_frame(&f), None, "truncated, len {len}");
            }
        }
        let mut f = Vec::new();
        write_server_frame(&mut f, false, OpCode::Text, b"x");
        assert_eq!(split_server_frame(&f), None, "FIN clear");
    }

    #[test]
    fn publish_compresses_once_per_window_and_context_takeover_per_connection() {
        let mut z = LoopDeflate::new(DeflateConfig::default(), usize::MAX);
        z.open(0, agreed(true, true, None));
        z.open(1, agreed(true, true, None));
        z.open(2, agreed(true, true, Some(10)));
        z.open(3, agreed(false, true, None));
        assert_eq!(z.active, 4);
        let payload = b"{\"user\":\"alice\",\"text\":\"hello hello hello\"}".repeat(10);
        let mut plain = Vec::new();
        write_server_frame(&mut plain, true, OpCode::Binary, &payload);
        z.begin_publish();
        let mut outs = vec![Vec::new(); 5];
        for (i, out) in outs.iter_mut().enumerate() {
            let on = z.write_published(i as u32, &plain, out);
            assert_eq!(on, i < 4);
        }
        // Two shared windows cached (15 and 10), the dedicated one not.
        assert_eq!(z.cached.count_ones(), 2);
        assert_eq!(outs[0], outs[1]);
        assert!(outs[0].len() < plain.len() / 2);
        for out in &outs[..4] {
            assert_eq!(inflate_frame(out), payload);
        }
        assert!(z.conns[3].as_ref().unwrap().compressor.is_some());
        assert!(z.conns[0].as_ref().unwrap().compressor.is_none());
        z.close(3);
        z.close(3);
        assert_eq!(z.active, 3);
        assert!(!z.is_on(3));
    }

    #[test]
    fn context_takeover_is_refused_past_the_limit_and_counted_back_on_close() {
        use crate::protocol::http1::parse_request;
        let cfg = DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..DeflateConfig::default()
        };
        let mut z = LoopDeflate::new(cfg, 2);
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        let req = parse_request(head).unwrap();
        for idx in 0..2 {
            let a = z.negotiate(&req).unwrap();
            assert!(takes_over(&a), "within the limit: {a:?}");
            z.open(idx, a);
        }
        let a = z.negotiate(&req).unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        z.open(2, a);
        assert_eq!((z.active, z.takeover), (3, 2));
        z.close(0);
        assert_eq!((z.active, z.takeover), (2, 1));
        assert!(takes_over(&z.negotiate(&req).unwrap()));
    }

    #[test]
    fn inflate_errors_drop_a_dedicated_context_and_keep_the_shared_one_usable() {
        let mut z = LoopDeflate::new(DeflateConfig::default(), usize::MAX);
        z.open(0, agreed(true, false, None));
        z.open(1, agreed(true, true, None));
        let mut out = Vec::new();
        assert!(z
            .inflate(0, false, &[0xff, 0xff], 1 << 20, &mut out)
            .is_err());
        assert!(z.conns[0].as_ref().unwrap().inflater.is_none());
        assert!(z
            .inflate(1, false, &[0xff, 0xff], 1 << 20, &mut out)
            .is_err());
        // RFC 7692 §7.2.3.1 "Hello".
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let got = z.inflate(1, true, &hello, 1 << 20, &mut out).unwrap();
        assert_eq!(got, Inflated::Text("Hello"));
        let err = z.inflate(1, true, &hello, 4, &mut out).unwrap_err();
        assert_eq!(err.close_code(), 1009);
    }
}
