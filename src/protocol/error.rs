//! Protocol errors. Each one knows the close code RFC 6455 says to answer it with, so the
//! connection layer never has to map strings to codes.

use std::fmt;

/// A violation of RFC 6455 by the peer, detected while decoding frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the MASK bit (§5.1).
    UnmaskedFrame,
    /// A server-side decoder got a masked frame (only the client role rejects these).
    MaskedFrame,
    /// RSV1-3 set with no extension negotiated that owns them (§5.2).
    ReservedBits,
    /// Opcodes 0x3-0x7 and 0xB-0xF (§5.2).
    ReservedOpcode(u8),
    /// A 64-bit payload length with its most significant bit set (§5.2).
    LengthMsbSet,
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlFrameTooLong,
    /// A control frame with FIN = 0 (§5.5).
    FragmentedControlFrame,
    /// A continuation frame with no fragmented message open (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open (§5.4).
    ExpectedContinuation,
    /// Text (or a close reason) that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// A close frame whose payload is exactly one byte (§5.5.1).
    InvalidClosePayload,
    /// A close code that may not be sent on the wire (§7.4).
    InvalidCloseCode(u16),
    /// A message (or its declared length) above the configured maximum; with
    /// permessage-deflate also a message whose inflated size passes it (RFC 7692 §8.1).
    MessageTooBig,
    /// A permessage-deflate message whose payload is not a valid DEFLATE stream (RFC 7692
    /// §8: the extension fails, so the connection fails). 1002 rather than 1007: the bytes
    /// break the negotiated framing, not the message's data type.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to send the peer before closing the TCP connection.
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::MessageTooBig => 1009,
            _ => 1002,
        }
    }

    /// A short reason suitable for the close frame (ASCII, well under 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrame => "unmasked client frame",
            ProtocolError::MaskedFrame => "masked server frame",
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::LengthMsbSet => "invalid payload length",
            ProtocolError::ControlFrameTooLong => "control frame too long",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::InvalidClosePayload => "invalid close payload",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::InvalidCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for ProtocolError {}
