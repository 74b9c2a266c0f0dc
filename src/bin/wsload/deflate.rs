//! The client side of permessage-deflate (RFC 7692) for `--deflate`: the offer, checking
//! the server's answer, compressing what we send (masked frames with RSV1) and inflating
//! what we receive, with wsloop's own sans-IO `Compressor` / `Inflater`.
//!
//! Per worker thread: one compressor per client window for connections that agreed
//! `client_no_context_takeover` and one inflater for those that agreed
//! `server_no_context_takeover` (both reset per message); per connection, a dedicated
//! compressor / inflater only for the directions that keep their context.

use wsloop::protocol::deflate::{
    negotiate, Agreed, Compressor, DeflateConfig, Inflated, Inflater, SharedCompressors,
};
use wsloop::protocol::error::ProtocolError;
use wsloop::protocol::frame::{write_client_frame, write_client_frame_rsv1, OpCode};

/// What wsload offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// `permessage-deflate; client_no_context_takeover; server_no_context_takeover`:
    /// nothing kept per connection on either side.
    NoContextTakeover,
    /// `permessage-deflate; client_max_window_bits`: context takeover both ways if the
    /// server allows it.
    ContextTakeover,
}

impl Offer {
    /// The `Sec-WebSocket-Extensions` value.
    pub fn header(self) -> &'static str {
        match self {
            Offer::NoContextTakeover => {
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
            }
            Offer::ContextTakeover => "permessage-deflate; client_max_window_bits",
        }
    }

    /// Checks the server's `Sec-WebSocket-Extensions` answer against this offer and returns
    /// the agreed parameters, or why the answer is unusable (RFC 7692 §7.1: parameters the
    /// offer forbids, malformed or repeated parameters, another extension).
    pub fn check_answer(self, answer: Option<&[u8]>) -> Result<Agreed, String> {
        let Some(value) = answer else {
            return Err("the server declined permessage-deflate".into());
        };
        // The answer has the grammar of an offer; accept exactly what it says.
        let as_is = DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..DeflateConfig::default()
        };
        let bad = || {
            format!(
                "bad permessage-deflate answer {:?}",
                String::from_utf8_lossy(value)
            )
        };
        let agreed = negotiate([value], &as_is).ok_or_else(bad)?;
        let single = !value.contains(&b',');
        let ok = single
            && match self {
                Offer::NoContextTakeover => {
                    agreed.server_no_context_takeover && agreed.client_max_window_bits.is_none()
                }
                Offer::ContextTakeover => true,
            };
        ok.then_some(agreed).ok_or_else(bad)
    }
}

/// A connection's agreed parameters and the contexts it keeps.
struct Conn {
    agreed: Agreed,
    /// Context takeover from us to the server.
    compressor: Option<Compressor>,
    /// Context takeover from the server to us.
    inflater: Option<Inflater>,
}

/// One worker thread's permessage-deflate state; connections are indexed by slab key.
pub struct Thread {
    cfg: DeflateConfig,
    shared_compressors: SharedCompressors,
    shared_inflater: Inflater,
    conns: Vec<Option<Box<Conn>>>,
    scratch: Vec<u8>,
    /// Where received messages are inflated (the driver takes it for each message).
    pub inflated: Vec<u8>,
}

impl Thread {
    /// Level 6, memory level 8, every message compressed (no size threshold: a load
    /// generator shows the server's side of the cost).
    pub fn new() -> Self {
        let cfg = DeflateConfig {
            min_compress_size: 0,
            ..DeflateConfig::default()
        };
        Thread {
            cfg,
            shared_compressors: SharedCompressors::new(cfg),
            shared_inflater: Inflater::shared(),
            conns: Vec::new(),
            scratch: Vec::new(),
            inflated: Vec::new(),
        }
    }

    /// Connection `key` agreed `agreed`.
    pub fn open(&mut self, key: usize, agreed: Agreed) {
        if self.conns.len() <= key {
            self.conns.resize_with(key + 1, || None);
        }
        let compressor = (!agreed.client_no_context_takeover)
            .then(|| Compressor::new(agreed.client_window_bits(), &self.cfg, false));
        let inflater = (!agreed.server_no_context_takeover)
            .then(|| Inflater::dedicated(agreed.server_window_bits()));
        self.conns[key] = Some(Box::new(Conn {
            agreed,
            compressor,
            inflater,
        }));
    }

    /// Connection `key` is gone: drop its contexts.
    pub fn close(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            *c = None;
        }
    }

    /// Whether connection `key` compresses.
    #[inline]
    pub fn on(&self, key: usize) -> bool {
        matches!(self.conns.get(key), Some(Some(_)))
    }

    /// Appends one whole masked data frame: compressed with RSV1 if `key` agreed
    /// permessage-deflate, as it is otherwise.
    pub fn write(
        &mut self,
        key: usize,
        out: &mut Vec<u8>,
        op: OpCode,
        payload: &[u8],
        mask: [u8; 4],
    ) {
        let Some(Some(c)) = self.conns.get_mut(key) else {
            return write_client_frame(out, true, op, payload, mask);
        };
        self.scratch.clear();
        match c.compressor.as_mut() {
            Some(z) => z.compress(payload, &mut self.scratch),
            None => self
                .shared_compressors
                .get(c.agreed.client_window_bits())
                .compress(payload, &mut self.scratch),
        }
        write_client_frame_rsv1(out, true, true, op, &self.scratch, mask);
    }

    /// Inflates a compressed message received on `key` into `out` (at most `max` bytes).
    pub fn inflate<'o>(
        &mut self,
        key: usize,
        text: bool,
        data: &[u8],
        max: usize,
        out: &'o mut Vec<u8>,
    ) -> Result<Inflated<'o>, ProtocolError> {
        let inflater = match self.conns.get_mut(key) {
            Some(Some(c)) => match c.inflater.as_mut() {
                Some(i) => i,
                None => &mut self.shared_inflater,
            },
            // The decoder only yields compressed messages once deflate is agreed.
            _ => return Err(ProtocolError::ReservedBits),
        };
        inflater.inflate(data, text, max, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsloop::protocol::decoder::{Decoded, Decoder, Message, Role};

    #[test]
    fn answers_are_checked_against_the_offer() {
        let no = Offer::NoContextTakeover;
        let a = no
            .check_answer(Some(
                b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ))
            .unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        // server_no_context_takeover was required; client_max_window_bits was not offered.
        assert!(no.check_answer(Some(b"permessage-deflate")).is_err());
        assert!(no
            .check_answer(Some(
                b"permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
            ))
            .is_err());
        assert!(no.check_answer(None).is_err());
        assert!(no.check_answer(Some(b"permessage-deflate; foo")).is_err());
        let t = Offer::ContextTakeover
            .check_answer(Some(
                b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=11",
            ))
            .unwrap();
        assert_eq!((t.server_window_bits(), t.client_window_bits()), (10, 11));
        assert!(!t.server_no_context_takeover);
    }

    /// What we write is what a server's decoder + inflater read back, message after
    /// message, for both kinds of context.
    #[test]
    fn frames_round_trip_through_the_server_side() {
        for answer in [
            &b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"[..],
            b"permessage-deflate; client_max_window_bits=10",
        ] {
            let agreed = Offer::ContextTakeover.check_answer(Some(answer)).unwrap();
            let mut t = Thread::new();
            t.open(3, agreed);
            assert!(t.on(3) && !t.on(2));
            let mut server = Decoder::new(Role::Server);
            server.set_permessage_deflate(true);
            let mut inf = if agreed.client_no_context_takeover {
                Inflater::shared()
            } else {
                Inflater::dedicated(agreed.client_window_bits())
            };
            let mut out = Vec::new();
            for i in 0..5 {
                let msg = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200 * i));
                let mut wire = Vec::new();
                t.write(3, &mut wire, OpCode::Text, msg.as_bytes(), [9, 8, 7, 6]);
                assert_eq!(wire[0], 0xc1, "FIN + RSV1 + text");
                assert!(wire[1] & 0x80 != 0, "masked");
                let Ok(Decoded::Message {
                    message: Message::Compressed { text, data },
                    ..
                }) = server.decode(&mut wire, 1 << 20)
                else {
                    panic!("not a compressed message")
                };
                assert!(text);
                let got = inf.inflate(data, true, 1 << 20, &mut out).unwrap();
                assert_eq!(got, Inflated::Text(&msg));
            }
            // Plain frames for a connection without deflate.
            let mut wire = Vec::new();
            t.write(2, &mut wire, OpCode::Binary, b"abc", [1, 2, 3, 4]);
            assert_eq!(wire[0], 0x82);
            t.close(3);
            assert!(!t.on(3));
        }
    }
}
