//! Payload encodings shared by the scenarios. Numbers are written as ASCII digits of six
//! bits each (`'0' + v`, so `0x30..=0x6F`), least significant first: valid UTF-8 for
//! text messages, fixed width, and cheap to check.

/// Writes the low `6 * out.len()` bits of `v`.
#[inline]
pub fn put6(v: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = 0x30 + ((v >> (6 * i)) & 63) as u8;
    }
}

/// Reads a number written by [`put6`]; `None` on a byte outside the alphabet.
#[inline]
pub fn get6(bytes: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        let d = b.wrapping_sub(0x30);
        if d >= 64 {
            return None;
        }
        v |= (d as u64) << (6 * i);
    }
    Some(v)
}

/// Deterministic filler for byte `i` of a payload: letters for text, all byte values
/// (including ones that are not UTF-8) for binary.
#[inline]
pub fn fill_byte(i: usize, binary: bool) -> u8 {
    if binary {
        (i as u8).wrapping_mul(167).wrapping_add(13)
    } else {
        b'a' + (i % 26) as u8
    }
}

/// `len` bytes of JSON-like records (repeated keys, varying values, as chat or telemetry
/// traffic looks), deterministic; the same generator as `benches/deflate.rs`. ASCII.
pub fn json_like(len: usize) -> Vec<u8> {
    let names = ["alice", "bob", "carol", "dave", "eve"];
    let mut s = String::from("[");
    let mut i = 0u32;
    while s.len() < len {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"{}\",\"ts\":{},\"text\":\"message number {} from the room\",\"score\":{}.{}}},",
            i % 100_000,
            names[(i >> 8) as usize % 5],
            1_700_000_000 + (i % 1_000_000),
            i % 977,
            i % 100,
            i % 10
        ));
    }
    let mut v = s.into_bytes();
    v.truncate(len);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_like_is_ascii_of_the_length_asked() {
        for n in [0, 1, 18, 1024, 16 * 1024] {
            let j = json_like(n);
            assert_eq!(j.len(), n);
            assert!(j.is_ascii());
        }
        assert!(json_like(200).starts_with(b"[{\"id\":"));
    }

    #[test]
    fn roundtrip() {
        let mut b = [0u8; 8];
        for v in [0u64, 1, 63, 64, 123_456_789, (1 << 48) - 1] {
            put6(v, &mut b);
            assert!(b.iter().all(|c| c.is_ascii()));
            assert_eq!(get6(&b), Some(v));
        }
        assert_eq!(get6(b"0z"), None);
        assert_eq!(get6(b"\x2f"), None);
    }
}
