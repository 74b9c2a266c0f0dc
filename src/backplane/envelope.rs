//! The bytes wsloop puts in a Redis pub/sub message: a fixed 20-byte header, then the payload.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "WL" (drops stray publishes by other programs on a `wsloop:` channel)
//! 2       1     version, 1
//! 3       1     flags: bit 0 = text message (opcode 0x1), clear = binary (0x2); other bits 0
//! 4       8     publishing instance id, big-endian
//! 12      8     per-instance sequence number, big-endian, starts at 1, +1 per message sent
//! 20      ..    the WebSocket message payload, unchanged
//! ```
//!
//! The instance id lets a receiver drop its own messages (Redis sends a publish back to the
//! publisher's own subscription); the sequence number lets it spot exact repeats and count
//! messages older than the last one seen from that publisher. Nothing here is authenticated
//! (anyone who can `PUBLISH` on the Redis can write an envelope), so the receiver never lets a
//! sequence number make it drop a message that is not an exact repeat: see the reader's
//! `Dedup`. A message that does not decode here is counted as malformed and dropped.

/// Length of the header in front of every payload.
pub const HEADER_LEN: usize = 20;
const MAGIC: [u8; 2] = *b"WL";
const VERSION: u8 = 1;
const FLAG_TEXT: u8 = 0x01;

/// The header fields of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Id of the instance that published the message.
    pub instance: u64,
    /// Sequence number of the message among that instance's publishes (1, 2, ...).
    pub seq: u64,
    /// True for a text message, false for binary.
    pub text: bool,
}

/// Why a Redis message is not a wsloop envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Shorter than [`HEADER_LEN`].
    Short,
    /// Wrong magic, an unknown version or unknown flag bits.
    Foreign,
}

impl Header {
    /// Appends the 20 header bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if self.text { FLAG_TEXT } else { 0 });
        out.extend_from_slice(&self.instance.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
    }
}

/// Splits a message into its header and payload.
pub fn decode(message: &[u8]) -> Result<(Header, &[u8]), EnvelopeError> {
    if message.len() < HEADER_LEN {
        return Err(EnvelopeError::Short);
    }
    if message[0..2] != MAGIC || message[2] != VERSION || message[3] & !FLAG_TEXT != 0 {
        return Err(EnvelopeError::Foreign);
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&message[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let header = Header {
        instance: word(4),
        seq: word(12),
        text: message[3] & FLAG_TEXT != 0,
    };
    Ok((header, &message[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for text in [true, false] {
            let h = Header {
                instance: 0x0102_0304_0506_0708,
                seq: u64::MAX - 3,
                text,
            };
            let mut buf = Vec::new();
            h.write_to(&mut buf);
            assert_eq!(buf.len(), HEADER_LEN);
            buf.extend_from_slice(b"payload");
            let (got, payload) = decode(&buf).unwrap();
            assert_eq!(got, h);
            assert_eq!(payload, b"payload");
        }
    }

    #[test]
    fn rejects_short_and_foreign() {
        let mut buf = Vec::new();
        Header {
            instance: 1,
            seq: 1,
            text: false,
        }
        .write_to(&mut buf);
        assert_eq!(decode(&buf[..19]), Err(EnvelopeError::Short));
        for (at, byte) in [(0, b'X'), (2, 2), (3, 0x02)] {
            let mut bad = buf.clone();
            bad[at] = byte;
            assert_eq!(decode(&bad), Err(EnvelopeError::Foreign), "byte {at}");
        }
        assert_eq!(decode(&buf).unwrap().1, b"");
    }
}
