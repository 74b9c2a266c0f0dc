//! Strict UTF-8 validation, whole or incremental across fragments.
//!
//! Built on `simdutf8`'s std-compatible API: its error tells an impossible byte
//! (`error_len() == Some`) from a sequence cut off by the end of the input (`None`), which is
//! exactly what an incremental validator needs to fail at the first impossible byte while
//! carrying at most three bytes of an unfinished sequence to the next fragment.

use super::error::ProtocolError;
use simdutf8::compat::from_utf8;

/// Validates a complete text payload and returns it as `&str`.
#[inline]
pub fn validate(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Incremental validator for text split over fragments (or over reads).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The start of a sequence cut off at the end of the last chunk.
    partial: [u8; 4],
    partial_len: u8,
}

/// The number of bytes a sequence starting with `lead` occupies (0 if it cannot lead).
#[inline]
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message (no partial character pending).
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Feeds the next chunk. Fails as soon as a byte makes the text invalid, even when
    /// the sequence it breaks started in an earlier chunk.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ProtocolError> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]) - have;
            let take = need.min(chunk.len());
            let mut seq = self.partial;
            seq[have..have + take].copy_from_slice(&chunk[..take]);
            match from_utf8(&seq[..have + take]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the chunk ran out before the sequence ended.
                    self.partial = seq;
                    self.partial_len = (have + take) as u8;
                    return Ok(());
                }
                Err(_) => return Err(ProtocolError::InvalidUtf8),
            }
            chunk = &chunk[take..];
        }
        match from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &chunk[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Ends the text: fails if a sequence was left unfinished.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let complete = self.partial_len == 0;
        *self = Self::new();
        if complete {
            Ok(())
        } else {
            Err(ProtocolError::InvalidUtf8)
        }
    }

    /// True while no unfinished sequence is carried.
    pub fn is_complete(&self) -> bool {
        self.partial_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked_ok(bytes: &[u8], split: usize) -> bool {
        let mut v = Utf8Validator::new();
        for c in bytes.chunks(split.max(1)) {
            if v.feed(c).is_err() {
                return false;
            }
        }
        v.finish().is_ok()
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            "\u{10FFFF}\u{FFFF}\u{7FF}\u{80}".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xf8\x88\x80\x80\x80",
            b"\xce\xba\xe1",
            b"\xff",
            b"abc\xf0\x9f\x98",
            b"\xf0\x9f\x98\x80",
        ];
        for case in cases {
            let expected = std::str::from_utf8(case).is_ok();
            for split in 1..=case.len().max(1) {
                assert_eq!(chunked_ok(case, split), expected, "{case:?} split {split}");
            }
            assert_eq!(validate(case).is_some(), expected);
        }
    }

    #[test]
    fn fails_at_first_impossible_byte_before_the_end() {
        // 0xF4 0x90 can never start a valid sequence (> U+10FFFF): fail on the 0x90.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok\xf4").is_ok());
        assert!(v.feed(b"\x90").is_err());
        // A surrogate lead 0xED 0xA0 fails on the second byte.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xed").is_ok());
        assert!(v.feed(b"\xa0\x80").is_err());
        // An incomplete sequence is only an error at the end.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert!(!v.is_complete());
        assert!(v.finish().is_err());
    }

    #[test]
    fn exhaustive_two_and_three_byte_prefixes_match_std() {
        for a in 0u16..=255 {
            for b in 0u16..=255 {
                let s = [a as u8, b as u8];
                let expected = std::str::from_utf8(&s).is_ok();
                assert_eq!(chunked_ok(&s, 1), expected, "{s:?}");
            }
        }
    }
}
