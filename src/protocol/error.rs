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

/// A refused HTTP request, carrying the status it is answered with. Every one of these
/// ends the connection after the response (`Connection: close`): after a framing error
/// nothing that follows on the connection can be trusted to start a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not parseable as an HTTP/1.x request head (400).
    Malformed,
    /// A request target that is neither origin form, absolute form, nor `OPTIONS *` (400).
    BadTarget,
    /// An HTTP/1.1 request without `Host`, or with an invalid one (400, RFC 9112 §3.2).
    BadHost,
    /// A header that may appear once appeared twice (400; see
    /// [`SINGLETON_HEADERS`](super::http1::SINGLETON_HEADERS)).
    DuplicateHeader,
    /// `Content-Length` that is not a plain decimal number (400, RFC 9112 §6.3).
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`, or `Transfer-Encoding` in HTTP/1.0
    /// (400, RFC 9112 §6.1, §6.3).
    ConflictingFraming,
    /// `Transfer-Encoding` whose final coding is not `chunked`, or `chunked` twice (400).
    BadTransferEncoding,
    /// A transfer coding wsloop does not know (501, RFC 9112 §6.1).
    UnknownTransferCoding,
    /// A malformed chunked body (400, RFC 9112 §7.1).
    BadChunk,
    /// A request body larger than the server reads past (413).
    BodyTooLarge,
    /// An upgrade that is not a GET, or a static request that is not GET/HEAD (405).
    MethodNotAllowed,
    /// HTTP/1.0 upgrade, `Connection` without `upgrade`, a body on an upgrade request,
    /// and the like (400).
    BadUpgrade,
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64 (400).
    BadKey,
    /// `Sec-WebSocket-Version` other than 13 (426, answered with the supported version).
    UnsupportedVersion,
    /// Head larger than the configured limit (431).
    HeadTooLarge,
    /// More header lines than [`MAX_HEADERS`](super::http1::MAX_HEADERS) (431).
    TooManyHeaders,
}

impl HttpError {
    /// The HTTP status this error is answered with.
    pub fn status(self) -> u16 {
        use HttpError::*;
        match self {
            Malformed | BadTarget | BadHost | DuplicateHeader | BadContentLength
            | ConflictingFraming | BadTransferEncoding | BadChunk | BadUpgrade | BadKey => 400,
            MethodNotAllowed => 405,
            BodyTooLarge => 413,
            UnsupportedVersion => 426,
            HeadTooLarge | TooManyHeaders => 431,
            UnknownTransferCoding => 501,
        }
    }

    /// The plain-text body of the response.
    pub fn body(self) -> &'static str {
        use HttpError::*;
        match self {
            Malformed => "malformed request\n",
            BadTarget => "invalid request target\n",
            BadHost => "missing or invalid Host\n",
            DuplicateHeader => "duplicate header field\n",
            BadContentLength => "invalid Content-Length\n",
            ConflictingFraming => "conflicting message framing\n",
            BadTransferEncoding => "invalid Transfer-Encoding\n",
            UnknownTransferCoding => "unsupported transfer coding\n",
            BadChunk => "malformed chunked body\n",
            BodyTooLarge => "request body too large\n",
            MethodNotAllowed => "method not allowed\n",
            BadUpgrade => "invalid websocket upgrade request\n",
            BadKey => "invalid Sec-WebSocket-Key\n",
            UnsupportedVersion => "unsupported Sec-WebSocket-Version (13 is)\n",
            HeadTooLarge => "request header too large\n",
            TooManyHeaders => "too many request header fields\n",
        }
    }

    /// Extra header lines the response carries.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HttpError::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            HttpError::MethodNotAllowed => &[("Allow", "GET, HEAD")],
            _ => &[],
        }
    }

    /// Appends the complete response (with `Content-Length` and `Connection: close`);
    /// without the body when answering a HEAD request.
    pub fn write_response(self, out: &mut Vec<u8>, head_only: bool) {
        super::http1::write_response(
            out,
            self.status(),
            self.headers(),
            self.body().as_bytes(),
            super::http1::Persist::Close,
            head_only,
        );
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status(), self.body().trim_end())
    }
}

impl std::error::Error for HttpError {}
