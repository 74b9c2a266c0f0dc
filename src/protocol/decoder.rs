//! Message assembly: frames in, whole messages and control frames out.
//!
//! Pull-style and sans-IO: `decode` looks at the start of a byte slice and either asks for
//! more bytes (consuming nothing), consumes one frame, or consumes one frame and returns a
//! message. A message whole in one frame is unmasked in place and handed out as a slice of
//! the input (zero-copy); only fragmented messages are copied, into a buffer that exists
//! while the message is open. An idle decoder owns no heap memory.
//!
//! With permessage-deflate negotiated ([`Decoder::set_permessage_deflate`]), a message whose
//! first frame has RSV1 set is handed out as [`Message::Compressed`]: its payload unmasked
//! and assembled but not inflated, and not UTF-8 checked (that happens on the inflated
//! bytes, `deflate::Inflater`). Its size limit here is on the compressed bytes.

use super::close::CloseFrame;
use super::error::ProtocolError;
use super::frame::{FrameHeader, HeaderParse, OpCode};
use super::mask::apply_mask;
use super::utf8::{self, Utf8Validator};

/// Which side of the connection this decoder is on; decides the masking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decodes client frames: every frame must be masked.
    Server,
    /// Decodes server frames: no frame may be masked.
    Client,
}

/// A message or control frame, borrowed from the input or the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message, UTF-8 validated (RFC 6455 §8.1).
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A ping's payload (at most 125 bytes, §5.5.2).
    Ping(&'a [u8]),
    /// A pong's payload (at most 125 bytes, §5.5.3).
    Pong(&'a [u8]),
    /// A close frame, its code and reason validated (§5.5.1).
    Close(CloseFrame<'a>),
    /// A permessage-deflate message (RFC 7692 §6: RSV1 on its first frame), whole and
    /// unmasked but still compressed, without the `00 00 ff ff` tail (§7.2.2). `text` is its
    /// opcode; UTF-8 is checked after inflating. Only produced after
    /// [`Decoder::set_permessage_deflate`]`(true)`.
    Compressed {
        /// Whether the message is text (validated after inflating, not here).
        text: bool,
        /// The compressed payload, unmasked, fragments joined.
        data: &'a [u8],
    },
}

/// What one call to [`Decoder::decode`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The slice holds no whole frame; at least `need` more bytes are required. Nothing
    /// was consumed or modified.
    Incomplete {
        /// Bytes still missing (a lower bound: the header may reveal more).
        need: usize,
    },
    /// A non-final fragment was consumed into the open message.
    Fragment {
        /// Bytes of the input the fragment took.
        consumed: usize,
    },
    /// A frame was consumed and completed a message or was a control frame.
    Message {
        /// Bytes of the input the frame took.
        consumed: usize,
        /// The message, borrowed from the input or (when fragmented) the decoder.
        message: Message<'a>,
    },
}

/// A fragmented message in progress: the only state that owns heap memory.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    /// RSV1 was set on the first frame: no UTF-8 check here, handed out as `Compressed`.
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8Validator,
}

/// Per-connection decoding state: 24 bytes (permessage-deflate's switch lives in padding),
/// no heap while no fragmented message is open.
///
/// The caller hands `decode` the same unconsumed frame again when more bytes arrive, so a
/// text frame that arrives in pieces is unmasked and validated piece by piece in place:
/// `partial` counts the payload bytes already done, and invalid UTF-8 fails as soon as
/// it arrives rather than when the frame completes.
#[derive(Debug)]
pub struct Decoder {
    open: Option<Box<Fragmented>>,
    /// Payload bytes of the incomplete frame at the start of the input that are already
    /// unmasked (and, for text, validated by `partial_utf8` or the open message).
    partial: u32,
    partial_utf8: Utf8Validator,
    role: Role,
    /// The open message was handed out by the last call; free it on the next one.
    delivered: bool,
    /// permessage-deflate was negotiated: RSV1 on a message's first frame is allowed.
    deflate: bool,
}

// The server keeps one per connection; the deflate switch must not grow it.
const _: () = assert!(std::mem::size_of::<Decoder>() <= 24);

impl Decoder {
    /// A decoder for frames sent to `role` (a server decodes masked client frames).
    pub const fn new(role: Role) -> Self {
        Decoder {
            open: None,
            partial: 0,
            partial_utf8: Utf8Validator::new(),
            role,
            delivered: false,
            deflate: false,
        }
    }

    /// Allows RSV1 on the first frame of a text or binary message, which then comes out as
    /// [`Message::Compressed`] (RFC 7692 §6). Call once permessage-deflate is agreed in the
    /// handshake; without it any RSV bit is a protocol error (RFC 6455 §5.2).
    pub fn set_permessage_deflate(&mut self, on: bool) {
        self.deflate = on;
    }

    /// Whether RSV1 (permessage-deflate) is accepted.
    pub fn permessage_deflate(&self) -> bool {
        self.deflate
    }

    /// Whether a fragmented message is open (the connection holds its buffer).
    pub fn in_message(&self) -> bool {
        self.open.is_some() && !self.delivered
    }

    /// Bytes held for the open fragmented message.
    pub fn buffered(&self) -> usize {
        match &self.open {
            Some(f) if !self.delivered => f.data.capacity(),
            _ => 0,
        }
    }

    /// The validator that text of this frame feeds: the open message's for a
    /// continuation, the decoder's own for a single text frame.
    fn validator(&mut self, opcode: OpCode) -> &mut Utf8Validator {
        match (&mut self.open, opcode) {
            (Some(f), OpCode::Continuation) => &mut f.utf8,
            _ => &mut self.partial_utf8,
        }
    }

    /// Decodes the frame at the start of `buf`, enforcing every RFC 6455 rule for this
    /// role. `max_message` bounds a whole message (all its fragments) and is checked
    /// against the declared length before any payload is buffered.
    ///
    /// After `Incomplete`, call again with the same bytes — as left in `buf`, which may
    /// have been unmasked in part — followed by more; never with other bytes in front.
    pub fn decode<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        max_message: usize,
    ) -> Result<Decoded<'a>, ProtocolError> {
        if self.delivered {
            self.open = None;
            self.delivered = false;
        }
        let h = match FrameHeader::parse(buf)? {
            HeaderParse::Incomplete { need } => return Ok(Decoded::Incomplete { need }),
            HeaderParse::Complete(h) => h,
        };
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // RSV1 belongs to permessage-deflate, and only on a data message's first frame
        // (RFC 7692 §6.1): on a continuation or control frame it stays a protocol error.
        let rsv1 =
            h.rsv == 0b100 && self.deflate && matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv != 0 && !rsv1 {
            return Err(ProtocolError::ReservedBits);
        }
        let already = match (h.opcode, &self.open) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(f)) => f.data.len() as u64,
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => 0,
        };
        if !h.opcode.is_control() && h.payload_len.saturating_add(already) > max_message as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        // Fits in usize: bounded by max_message (data) or 125 (control).
        let total = h.header_len + h.payload_len as usize;
        let text = match h.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.open.as_ref().is_some_and(|f| f.text),
            _ => false,
        };
        let compressed = rsv1
            || (h.opcode == OpCode::Continuation
                && self.open.as_ref().is_some_and(|f| f.compressed));
        // Compressed text is validated after inflating, not here.
        let validate = text && !compressed;
        let done = self.partial as usize;
        if buf.len() < total {
            // Unmask and validate the text that is here, so bad UTF-8 fails now.
            let avail = buf.len().saturating_sub(h.header_len);
            if validate && avail > done {
                let piece = &mut buf[h.header_len + done..h.header_len + avail];
                if let Some(key) = h.mask {
                    apply_mask(piece, key, done);
                }
                self.validator(h.opcode).feed(piece)?;
                self.partial = avail as u32;
            }
            return Ok(Decoded::Incomplete {
                need: total - buf.len(),
            });
        }
        self.partial = 0;
        let payload = &mut buf[h.header_len..total];
        if let Some(key) = h.mask {
            apply_mask(&mut payload[done..], key, done);
        }
        if done > 0 {
            // The frame came in pieces: finish the incremental validation.
            self.validator(h.opcode).feed(&payload[done..])?;
            if h.opcode == OpCode::Text && h.fin {
                self.partial_utf8.finish()?;
            }
        }
        let payload: &'a [u8] = payload;
        let message = match h.opcode {
            OpCode::Ping => Message::Ping(payload),
            OpCode::Pong => Message::Pong(payload),
            OpCode::Close => Message::Close(CloseFrame::parse(payload)?),
            OpCode::Text | OpCode::Binary if h.fin && compressed => Message::Compressed {
                text,
                data: payload,
            },
            OpCode::Text | OpCode::Binary if h.fin => {
                if h.opcode == OpCode::Text {
                    Message::Text(utf8::validate(payload).ok_or(ProtocolError::InvalidUtf8)?)
                } else {
                    Message::Binary(payload)
                }
            }
            OpCode::Text | OpCode::Binary => {
                let mut utf8 = Utf8Validator::new();
                if validate {
                    if done > 0 {
                        utf8 = std::mem::take(&mut self.partial_utf8);
                    } else {
                        utf8.feed(payload)?;
                    }
                }
                self.open = Some(Box::new(Fragmented {
                    text,
                    compressed,
                    data: payload.to_vec(),
                    utf8,
                }));
                return Ok(Decoded::Fragment { consumed: total });
            }
            OpCode::Continuation => {
                let f = self.open.as_mut().expect("checked above");
                if validate && done == 0 {
                    f.utf8.feed(payload)?;
                }
                f.data.extend_from_slice(payload);
                if !h.fin {
                    return Ok(Decoded::Fragment { consumed: total });
                }
                if validate {
                    f.utf8.finish()?;
                }
                self.delivered = true;
                let f = self.open.as_deref().expect("checked above");
                if f.compressed {
                    Message::Compressed {
                        text: f.text,
                        data: &f.data,
                    }
                } else if f.text {
                    // Already validated incrementally; the second pass only converts.
                    Message::Text(utf8::validate(&f.data).ok_or(ProtocolError::InvalidUtf8)?)
                } else {
                    Message::Binary(&f.data)
                }
            }
        };
        Ok(Decoded::Message {
            consumed: total,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::write_client_frame;

    const MAX: usize = 1 << 20;

    fn masked(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_client_frame(&mut v, fin, op, payload, [0x37, 0xfa, 0x21, 0x3d]);
        v
    }

    /// Decodes every frame of `input`, rendering messages as strings.
    fn run(input: &[u8]) -> Result<Vec<String>, ProtocolError> {
        run_with(input, false)
    }

    fn run_with(input: &[u8], deflate: bool) -> Result<Vec<String>, ProtocolError> {
        let mut d = Decoder::new(Role::Server);
        d.set_permessage_deflate(deflate);
        let mut buf = input.to_vec();
        let mut off = 0;
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf[off..], MAX)? {
                Decoded::Incomplete { .. } => return Ok(out),
                Decoded::Fragment { consumed } => off += consumed,
                Decoded::Message { consumed, message } => {
                    off += consumed;
                    out.push(match message {
                        Message::Text(t) => format!("text:{t}"),
                        Message::Binary(b) => format!("binary:{}", b.len()),
                        Message::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                        Message::Pong(p) => format!("pong:{}", String::from_utf8_lossy(p)),
                        Message::Close(c) => format!("close:{:?}:{}", c.code, c.reason),
                        Message::Compressed { text, data } => format!("z:{text}:{data:?}"),
                    });
                }
            }
        }
    }

    #[test]
    fn rfc_5_7_examples() {
        // Masked "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(run(&hello).unwrap(), ["text:Hello"]);
        // Fragmented "Hel" + "lo" (masked as a client must).
        let mut f = masked(false, OpCode::Text, b"Hel");
        f.extend(masked(true, OpCode::Continuation, b"lo"));
        assert_eq!(run(&f).unwrap(), ["text:Hello"]);
        // Ping "Hello".
        assert_eq!(
            run(&masked(true, OpCode::Ping, b"Hello")).unwrap(),
            ["ping:Hello"]
        );
        // 256 bytes and 64 KiB binary.
        assert_eq!(
            run(&masked(true, OpCode::Binary, &[7; 256])).unwrap(),
            ["binary:256"]
        );
        assert_eq!(
            run(&masked(true, OpCode::Binary, &[7; 65536])).unwrap(),
            ["binary:65536"]
        );
    }

    #[test]
    fn client_role_reads_unmasked_hello() {
        let mut d = Decoder::new(Role::Client);
        let mut buf = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        match d.decode(&mut buf, MAX).unwrap() {
            Decoded::Message {
                message: Message::Text(t),
                consumed,
            } => {
                assert_eq!((t, consumed), ("Hello", 7))
            }
            other => panic!("{other:?}"),
        }
        let mut masked_buf = masked(true, OpCode::Text, b"x");
        assert_eq!(
            Decoder::new(Role::Client).decode(&mut masked_buf, MAX),
            Err(ProtocolError::MaskedFrame)
        );
    }

    #[test]
    fn single_frame_message_is_borrowed_from_input() {
        let mut d = Decoder::new(Role::Server);
        let mut buf = masked(true, OpCode::Binary, b"abc");
        let range = buf.as_ptr_range();
        match d.decode(&mut buf, MAX).unwrap() {
            Decoded::Message {
                message: Message::Binary(b),
                ..
            } => {
                assert!(range.contains(&b.as_ptr()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn control_frames_between_fragments_in_order() {
        let mut f = masked(false, OpCode::Text, b"a");
        f.extend(masked(true, OpCode::Ping, b"p"));
        f.extend(masked(false, OpCode::Continuation, b"b"));
        f.extend(masked(true, OpCode::Pong, b"q"));
        f.extend(masked(true, OpCode::Continuation, b"c"));
        f.extend(masked(true, OpCode::Close, b"\x03\xe8done"));
        assert_eq!(
            run(&f).unwrap(),
            ["ping:p", "pong:q", "text:abc", "close:Some(1000):done"]
        );
    }

    #[test]
    fn rule_violations_carry_their_close_codes() {
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(run(&unmasked).unwrap_err().close_code(), 1002);
        let mut rsv = masked(true, OpCode::Text, b"a");
        rsv[0] |= 0x40;
        assert_eq!(run(&rsv), Err(ProtocolError::ReservedBits));
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let mut f = masked(true, OpCode::Binary, b"");
            f[0] = 0x80 | op;
            assert_eq!(run(&f), Err(ProtocolError::ReservedOpcode(op)));
        }
        let mut long_ping = masked(true, OpCode::Binary, &[0; 126]);
        long_ping[0] = 0x89;
        assert_eq!(run(&long_ping), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(
            run(&masked(false, OpCode::Ping, b"")),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            run(&masked(true, OpCode::Continuation, b"x")),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut two = masked(false, OpCode::Text, b"a");
        two.extend(masked(true, OpCode::Text, b"b"));
        assert_eq!(run(&two), Err(ProtocolError::ExpectedContinuation));
        assert_eq!(
            run(&masked(true, OpCode::Text, b"\xff"))
                .unwrap_err()
                .close_code(),
            1007
        );
        assert_eq!(
            run(&masked(true, OpCode::Close, b"\x03"))
                .unwrap_err()
                .close_code(),
            1002
        );
        assert_eq!(
            run(&masked(true, OpCode::Close, b"\x03\xed"))
                .unwrap_err()
                .close_code(),
            1002
        );
        assert_eq!(
            run(&masked(true, OpCode::Close, b"\x03\xe8\xc0"))
                .unwrap_err()
                .close_code(),
            1007
        );
    }

    #[test]
    fn invalid_utf8_fails_at_the_fragment_that_breaks_it() {
        // Second fragment carries an impossible byte; the third would end the message.
        let mut d = Decoder::new(Role::Server);
        let mut f1 = masked(false, OpCode::Text, "κ".as_bytes());
        assert!(matches!(
            d.decode(&mut f1, MAX),
            Ok(Decoded::Fragment { .. })
        ));
        let mut f2 = masked(false, OpCode::Continuation, b"\xce\xba\xf4\x90");
        assert_eq!(d.decode(&mut f2, MAX), Err(ProtocolError::InvalidUtf8));
        // A sequence split across fragments is fine.
        let euro = "€".as_bytes();
        let mut f = masked(false, OpCode::Text, &euro[..1]);
        f.extend(masked(false, OpCode::Continuation, &euro[1..2]));
        f.extend(masked(true, OpCode::Continuation, &euro[2..]));
        assert_eq!(run(&f).unwrap(), ["text:€"]);
        // Unfinished at the end.
        let mut f = masked(false, OpCode::Text, &euro[..1]);
        f.extend(masked(true, OpCode::Continuation, &euro[1..2]));
        assert_eq!(run(&f), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn invalid_utf8_in_a_frame_arriving_in_pieces_fails_before_it_completes() {
        let mut d = Decoder::new(Role::Server);
        let mut payload = "valid start ".repeat(10).into_bytes();
        payload.push(0xFF);
        payload.extend_from_slice(&[b'z'; 200]);
        let frame = masked(true, OpCode::Text, &payload);
        let mut first = frame[..frame.len() - 100].to_vec();
        assert_eq!(d.decode(&mut first, MAX), Err(ProtocolError::InvalidUtf8));
        // Valid text in pieces, split inside a multi-byte character, still decodes.
        let text = "ünïcödé ".repeat(40);
        let frame = masked(true, OpCode::Text, text.as_bytes());
        let mut d = Decoder::new(Role::Server);
        for cut in [7usize, 8, 9, 50, 51, 200] {
            let mut part = frame[..cut].to_vec();
            assert!(matches!(
                d.decode(&mut part, MAX),
                Ok(Decoded::Incomplete { .. })
            ));
            // The caller keeps the (partly unmasked) bytes and appends the rest.
            let mut whole = part;
            whole.extend_from_slice(&frame[cut..]);
            match d.decode(&mut whole, MAX).unwrap() {
                Decoded::Message {
                    message: Message::Text(t),
                    ..
                } => assert_eq!(t, text),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn too_big_is_decided_from_the_declared_length() {
        let mut d = Decoder::new(Role::Server);
        // Header only: declares 2^40 bytes; no payload present.
        let mut h = vec![0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(d.decode(&mut h, MAX), Err(ProtocolError::MessageTooBig));
        // Fragments adding up past the limit.
        let mut d = Decoder::new(Role::Server);
        let mut f1 = masked(false, OpCode::Binary, &[0; 600]);
        assert!(matches!(
            d.decode(&mut f1, 1000),
            Ok(Decoded::Fragment { .. })
        ));
        let mut f2 = masked(true, OpCode::Continuation, &[0; 401])[..14].to_vec();
        assert_eq!(d.decode(&mut f2, 1000).unwrap_err().close_code(), 1009);
    }

    #[test]
    fn every_split_point_parses_the_same() {
        let mut stream = masked(false, OpCode::Text, "héllo ".as_bytes());
        stream.extend(masked(true, OpCode::Ping, b"p"));
        stream.extend(masked(true, OpCode::Continuation, "wörld".as_bytes()));
        stream.extend(masked(true, OpCode::Binary, &[1; 300]));
        let whole = run(&stream).unwrap();
        for split in 0..stream.len() {
            // Feed the prefix, keep the unconsumed tail, append the rest, as a connection does.
            let mut d = Decoder::new(Role::Server);
            let mut pending = stream[..split].to_vec();
            let mut out = Vec::new();
            for step in 0..2 {
                if step == 1 {
                    pending.extend_from_slice(&stream[split..]);
                }
                let mut off = 0;
                loop {
                    match d.decode(&mut pending[off..], MAX).unwrap() {
                        Decoded::Incomplete { .. } => break,
                        Decoded::Fragment { consumed } => off += consumed,
                        Decoded::Message { consumed, message } => {
                            off += consumed;
                            out.push(format!("{message:?}"));
                        }
                    }
                }
                pending.drain(..off);
            }
            assert_eq!(out.len(), whole.len(), "split {split}");
        }
    }

    fn rsv1(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = masked(fin, op, payload);
        f[0] |= 0x40;
        f
    }

    #[test]
    fn rsv1_only_on_the_first_data_frame_and_only_when_negotiated() {
        // Not negotiated: 1002, as before.
        let f = rsv1(true, OpCode::Text, b"\xff");
        assert_eq!(run(&f), Err(ProtocolError::ReservedBits));
        // Negotiated: handed out compressed; not UTF-8 checked (0xff is fine here).
        assert_eq!(run_with(&f, true).unwrap(), ["z:true:[255]"]);
        assert_eq!(
            run_with(&rsv1(true, OpCode::Binary, b""), true).unwrap(),
            ["z:false:[]"]
        );
        // RSV1 on a control frame, a continuation, or RSV2/RSV3: still 1002.
        for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            assert_eq!(
                run_with(&rsv1(true, op, b""), true),
                Err(ProtocolError::ReservedBits)
            );
        }
        let mut cont = rsv1(false, OpCode::Text, b"a");
        cont.extend(rsv1(true, OpCode::Continuation, b"b"));
        assert_eq!(run_with(&cont, true), Err(ProtocolError::ReservedBits));
        let mut cont = masked(false, OpCode::Text, b"a");
        cont.extend(rsv1(true, OpCode::Continuation, b"b"));
        assert_eq!(run_with(&cont, true), Err(ProtocolError::ReservedBits));
        for bits in [0x20u8, 0x10, 0x60, 0x70] {
            let mut f = masked(true, OpCode::Text, b"a");
            f[0] |= bits;
            assert_eq!(run_with(&f, true), Err(ProtocolError::ReservedBits));
        }
    }

    #[test]
    fn fragmented_compressed_message_is_assembled_unvalidated() {
        let mut f = rsv1(false, OpCode::Text, b"\xc3");
        f.extend(masked(true, OpCode::Ping, b"p"));
        f.extend(masked(false, OpCode::Continuation, b"\xff"));
        f.extend(masked(true, OpCode::Continuation, b"\x00"));
        // An uncompressed message after it is validated again.
        f.extend(masked(false, OpCode::Text, b"o"));
        f.extend(masked(true, OpCode::Continuation, b"k"));
        assert_eq!(
            run_with(&f, true).unwrap(),
            ["ping:p", "z:true:[195, 255, 0]", "text:ok"]
        );
        let mut bad = masked(false, OpCode::Text, b"o");
        bad.extend(masked(true, OpCode::Continuation, b"\xff"));
        assert_eq!(run_with(&bad, true), Err(ProtocolError::InvalidUtf8));
        // The compressed size counts against the limit.
        let mut d = Decoder::new(Role::Server);
        d.set_permessage_deflate(true);
        let mut f1 = rsv1(false, OpCode::Binary, &[0; 600]);
        assert!(matches!(
            d.decode(&mut f1, 1000),
            Ok(Decoded::Fragment { .. })
        ));
        let mut f2 = masked(true, OpCode::Continuation, &[0; 401]);
        assert_eq!(d.decode(&mut f2, 1000), Err(ProtocolError::MessageTooBig));
    }

    #[test]
    fn compressed_text_arriving_in_pieces_is_not_validated_early() {
        let payload = [0xffu8; 300];
        let frame = rsv1(true, OpCode::Text, &payload);
        let mut d = Decoder::new(Role::Server);
        d.set_permessage_deflate(true);
        let mut part = frame[..100].to_vec();
        assert!(matches!(
            d.decode(&mut part, MAX),
            Ok(Decoded::Incomplete { .. })
        ));
        assert_eq!(part, frame[..100], "nothing unmasked early");
        let mut whole = part;
        whole.extend_from_slice(&frame[100..]);
        match d.decode(&mut whole, MAX).unwrap() {
            Decoded::Message {
                message: Message::Compressed { text: true, data },
                ..
            } => assert_eq!(data, payload),
            other => panic!("{other:?}"),
        }
    }
}
