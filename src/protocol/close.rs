//! Close codes and the close frame payload (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;
use super::utf8;

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// Endpoint going away (server shutdown).
pub const GOING_AWAY: u16 = 1001;
/// Protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Data of a type the endpoint cannot accept.
pub const UNSUPPORTED: u16 = 1003;
/// Reserved: "no status code present". Never sent on the wire.
pub const NO_STATUS: u16 = 1005;
/// Reserved: "closed abnormally". Never sent on the wire.
pub const ABNORMAL: u16 = 1006;
/// Text that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation (wsloop: subscriber over its backpressure limit).
pub const POLICY: u16 = 1008;
/// Message too big.
pub const TOO_BIG: u16 = 1009;
/// Unexpected server condition.
pub const INTERNAL: u16 = 1011;

/// Whether `code` may appear in a close frame on the wire.
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A decoded close frame: code and UTF-8 reason. An empty payload has no code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code (RFC 6455 §7.4), `None` for an empty payload.
    pub code: Option<u16>,
    /// The UTF-8 reason after the code (at most 123 bytes; empty if none).
    pub reason: &'a str,
}

impl<'a> CloseFrame<'a> {
    /// Parses and validates a close payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        match payload.len() {
            0 => Ok(CloseFrame {
                code: None,
                reason: "",
            }),
            1 => Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !is_valid_code(code) {
                    return Err(ProtocolError::InvalidCloseCode(code));
                }
                let reason = utf8::validate(&payload[2..]).ok_or(ProtocolError::InvalidUtf8)?;
                Ok(CloseFrame {
                    code: Some(code),
                    reason,
                })
            }
        }
    }

    /// The code to report to the application (1005 when the peer sent none).
    pub fn code_or_no_status(&self) -> u16 {
        self.code.unwrap_or(NO_STATUS)
    }
}

/// Writes a close payload (code + reason truncated to fit 125 bytes on a char boundary)
/// into `out`, returning its length. Codes that must not go on the wire produce an
/// empty payload.
pub fn encode_payload(code: u16, reason: &str, out: &mut [u8; 125]) -> usize {
    if !is_valid_code(code) {
        return 0;
    }
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..2].copy_from_slice(&code.to_be_bytes());
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_classified() {
        for code in 0..=u16::MAX {
            let payload = code.to_be_bytes();
            let r = CloseFrame::parse(&payload);
            let valid = (1000..=1003).contains(&code)
                || (1007..=1014).contains(&code)
                || (3000..=4999).contains(&code);
            assert_eq!(r.is_ok(), valid, "code {code}");
            if !valid {
                assert_eq!(r.unwrap_err().close_code(), 1002);
            }
        }
        for never in [1004, 1005, 1006, 1015, 999, 2999, 5000] {
            assert!(!is_valid_code(never));
        }
    }

    #[test]
    fn payload_rules() {
        assert_eq!(CloseFrame::parse(&[]).unwrap().code, None);
        assert_eq!(CloseFrame::parse(&[3]).unwrap_err().close_code(), 1002);
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8\xff").unwrap_err().close_code(),
            1007
        );
        let ok = CloseFrame::parse(b"\x03\xe8bye").unwrap();
        assert_eq!((ok.code, ok.reason), (Some(1000), "bye"));
    }

    #[test]
    fn encode_truncates_on_char_boundary() {
        let mut out = [0u8; 125];
        let reason = "é".repeat(100);
        let n = encode_payload(1000, &reason, &mut out);
        assert!(n <= 125);
        assert!(CloseFrame::parse(&out[..n]).is_ok());
        assert_eq!(encode_payload(1005, "x", &mut out), 0);
    }
}
