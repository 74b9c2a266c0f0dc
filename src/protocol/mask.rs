//! XOR masking (RFC 6455 §5.3), applied in place, eight bytes per step.

/// Unmasks (or masks: XOR is its own inverse) `buf` in place with `key`, starting at
/// byte `phase` of the key. Returns the phase for the byte after `buf`, so a payload
/// that arrives in pieces can be unmasked piece by piece.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let phase = phase & 3;
    let rotated = [
        key[phase],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    apply_mask_aligned_key(buf, rotated);
    (phase + buf.len()) & 3
}

/// Masks with the key starting at phase 0. The head of `buf` up to the first 8-byte
/// boundary is done byte by byte, the middle as `u64` words (the compiler vectorises the
/// loop), the tail byte by byte; the key is rotated to line up with the word boundary.
#[inline]
fn apply_mask_aligned_key(buf: &mut [u8], key: [u8; 4]) {
    if buf.len() < 16 {
        return apply_mask_bytewise(buf, key, 0);
    }
    // Split at the first 8-aligned address and use `chunks_exact_mut` with from/to_ne_bytes:
    // aligned word loads the compiler vectorises, with no `unsafe` (unlike `align_to_mut`).
    let head = buf.as_ptr().align_offset(8).min(buf.len());
    let (head_bytes, rest) = buf.split_at_mut(head);
    apply_mask_bytewise(head_bytes, key, 0);
    let k = [
        key[head & 3],
        key[(head + 1) & 3],
        key[(head + 2) & 3],
        key[(head + 3) & 3],
    ];
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = rest.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(<[u8; 8]>::try_from(&*chunk).expect("chunk of 8")) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // chunks of 8 keep the key phase unchanged, so the tail starts at phase 0 of `k`.
    apply_mask_bytewise(chunks.into_remainder(), k, 0);
}

/// The byte-at-a-time reference implementation; also used for short heads and tails.
#[inline]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], phase: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(i + phase) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the test needs no RNG crate.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn matches_bytewise_reference_for_every_length_offset_and_phase() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut backing = vec![0u8; 300 + 16];
        for len in 0..=300usize {
            for offset in 0..8usize {
                for phase in 0..4usize {
                    let key = (xorshift(&mut seed) as u32).to_le_bytes();
                    for b in backing.iter_mut() {
                        *b = xorshift(&mut seed) as u8;
                    }
                    let original = backing[offset..offset + len].to_vec();
                    let mut expected = original.clone();
                    apply_mask_bytewise(&mut expected, key, phase);
                    let next = apply_mask(&mut backing[offset..offset + len], key, phase);
                    assert_eq!(
                        &backing[offset..offset + len],
                        &expected[..],
                        "len {len} off {offset} phase {phase}"
                    );
                    assert_eq!(next, (phase + len) % 4);
                    // XOR twice restores the input.
                    apply_mask(&mut backing[offset..offset + len], key, phase);
                    assert_eq!(&backing[offset..offset + len], &original[..]);
                }
            }
        }
    }

    #[test]
    fn piecewise_masking_equals_whole() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for split in [1usize, 3, 5, 8, 13, 64, 999] {
            let mut pieces = data.clone();
            let mut phase = 0;
            for chunk in pieces.chunks_mut(split) {
                phase = apply_mask(chunk, key, phase);
            }
            assert_eq!(pieces, whole, "split {split}");
        }
    }
}
