//! Frame headers (RFC 6455 §5.2): parsing straight from a byte slice and encoding into a
//! caller's buffer. Nothing here copies or allocates.

use super::error::ProtocolError;
use super::mask::apply_mask;

/// The longest header: 2 bytes + 8 bytes of length + 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode (RFC 6455 §5.2); the reserved values are refused when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// A later fragment of a text or binary message (§5.4).
    Continuation = 0x0,
    /// The first (or only) frame of a text message.
    Text = 0x1,
    /// The first (or only) frame of a binary message.
    Binary = 0x2,
    /// Close (§5.5.1).
    Close = 0x8,
    /// Ping (§5.5.2).
    Ping = 0x9,
    /// Pong (§5.5.3).
    Pong = 0xA,
}

impl OpCode {
    /// The opcode of the low 4 bits' value; reserved values (3-7, B-F) are a
    /// protocol error (close 1002).
    #[inline]
    pub fn from_u8(v: u8) -> Result<OpCode, ProtocolError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// Close, ping and pong: control frames, at most 125 bytes and never fragmented.
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header. `payload_len` is the declared length; the payload follows
/// `header_len` bytes after the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1-3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, present on (and only on) client frames (§5.3).
    pub mask: Option<[u8; 4]>,
    /// The declared payload length in bytes.
    pub payload_len: u64,
    /// Bytes of the header itself (2 to [`MAX_HEADER_LEN`]).
    pub header_len: usize,
}

/// The result of looking at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParse {
    /// At least `need` more bytes are required before the header can be read.
    Incomplete {
        /// Bytes still missing.
        need: usize,
    },
    /// The whole header is there.
    Complete(FrameHeader),
}

impl FrameHeader {
    /// Parses a header from the start of `buf`. Only checks that hold for every frame of
    /// any role are done here (reserved opcodes, the 64-bit length's top bit, control-frame
    /// rules); role rules (masking, RSV, fragmentation) belong to the decoder.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<HeaderParse, ProtocolError> {
        if buf.len() < 2 {
            return Ok(HeaderParse::Incomplete {
                need: 2 - buf.len(),
            });
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if opcode.is_control() {
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
        }
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(HeaderParse::Incomplete {
                need: header_len - buf.len(),
            });
        }
        let payload_len = match ext {
            0 => len7 as u64,
            2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
            _ => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let v = u64::from_be_bytes(b);
                if v >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                v
            }
        };
        let mask = if masked {
            let m = &buf[2 + ext..2 + ext + 4];
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(HeaderParse::Complete(FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
            header_len,
        }))
    }
}

/// RSV1 in the first header byte: the permessage-deflate "Per-Message Compressed" bit
/// (RFC 7692 §6), set on the first frame of a compressed message only.
pub const RSV1: u8 = 0x40;

/// Writes a header into `out` and returns its length. Uses the shortest length encoding,
/// as RFC 6455 §5.2 requires.
#[inline]
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    encode_header_rsv1(out, fin, false, opcode, payload_len, mask)
}

/// [`encode_header`] with the RSV1 bit: `rsv1` marks the first frame of a message compressed
/// by permessage-deflate (RFC 7692 §6); only a caller that negotiated it may set it.
#[inline]
pub fn encode_header_rsv1(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = (if fin { 0x80 } else { 0 }) | (if rsv1 { RSV1 } else { 0 }) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= u16::MAX as u64 {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

/// The header length a server frame of `payload_len` bytes needs.
#[inline]
pub fn server_header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Appends an unmasked (server) frame to `out`.
#[inline]
pub fn write_server_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, None);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Appends a masked (client) frame to `out`, masking the copy, not `payload`.
pub fn write_client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: [u8; 4],
) {
    write_client_frame_rsv1(out, fin, false, opcode, payload, mask);
}

/// [`write_client_frame`] with the RSV1 bit (a compressed message's first frame, RFC 7692 §6).
pub fn write_client_frame_rsv1(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: [u8; 4],
) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header_rsv1(&mut h, fin, rsv1, opcode, payload.len() as u64, Some(mask));
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> FrameHeader {
        match FrameHeader::parse(b).unwrap() {
            HeaderParse::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_examples() {
        // §5.7: single-frame unmasked text "Hello".
        let h = parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len, h.mask),
            (true, OpCode::Text, 5, 2, None)
        );
        // Masked "Hello".
        let h = parse(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.header_len, 6);
        // 256 bytes binary in one unmasked frame: 16-bit length.
        let h = parse(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!((h.payload_len, h.header_len), (256, 4));
        // 64 KiB: 64-bit length.
        let h = parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, h.header_len), (65536, 10));
    }

    #[test]
    fn incomplete_reports_need() {
        assert_eq!(
            FrameHeader::parse(&[]).unwrap(),
            HeaderParse::Incomplete { need: 2 }
        );
        assert_eq!(
            FrameHeader::parse(&[0x81]).unwrap(),
            HeaderParse::Incomplete { need: 1 }
        );
        assert_eq!(
            FrameHeader::parse(&[0x81, 0xFE, 0]).unwrap(),
            HeaderParse::Incomplete { need: 5 }
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0xFF]).unwrap(),
            HeaderParse::Incomplete { need: 12 }
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8B, 0x80]),
            Err(ProtocolError::ReservedOpcode(0xB))
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 0xFE]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        let msb = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(FrameHeader::parse(&msb), Err(ProtocolError::LengthMsbSet));
    }

    #[test]
    fn encode_uses_shortest_length() {
        let mut h = [0u8; MAX_HEADER_LEN];
        for (len, hl) in [(0u64, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            assert_eq!(encode_header(&mut h, true, OpCode::Binary, len, None), hl);
            assert_eq!(server_header_len(len as usize), hl);
            assert_eq!(parse(&h[..hl]).payload_len, len);
        }
        assert_eq!(
            encode_header(&mut h, true, OpCode::Text, 5, Some([1, 2, 3, 4])),
            6
        );
    }

    #[test]
    fn client_frame_matches_rfc() {
        let mut out = Vec::new();
        write_client_frame(
            &mut out,
            true,
            OpCode::Text,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        write_server_frame(&mut out, true, OpCode::Ping, b"Hello");
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // RFC 7692 §7.2.3.1: "Hello" compressed, one unmasked frame with RSV1.
        let mut h = [0u8; MAX_HEADER_LEN];
        assert_eq!(
            encode_header_rsv1(&mut h, true, true, OpCode::Text, 7, None),
            2
        );
        assert_eq!(h[..2], [0xc1, 0x07]);
        assert_eq!(parse(&h[..2]).rsv, 0b100);
        out.clear();
        write_client_frame_rsv1(&mut out, false, true, OpCode::Binary, b"", [1, 2, 3, 4]);
        assert_eq!(out, [0x42, 0x80, 1, 2, 3, 4]);
    }
}
