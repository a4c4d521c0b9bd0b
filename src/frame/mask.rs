//! Payload masking (RFC 6455 §5.3, <https://www.rfc-editor.org/rfc/rfc6455#section-5.3>):
//! XOR with a 4-byte key, starting at any payload offset so partial payloads can be unmasked.

/// XORs `buf` in place with `key`, as if `buf` started at payload position `offset`.
///
/// Works a `u64` at a time in safe code; the compiler vectorises the loop, so no
/// `unsafe` alignment tricks are needed.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = key;
    k.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // chunks_exact_mut(8) always yields 8 bytes; the conversion cannot fail.
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    // 8 is a multiple of 4, so the tail starts at key position 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// Byte-at-a-time reference for the differential test.
#[cfg(test)]
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_matches_naive() {
        let keys = [
            [0, 0, 0, 0],
            [0xFF, 0xFF, 0xFF, 0xFF],
            [0x37, 0xFA, 0x21, 0x3D],
            [1, 2, 3, 4],
            [0x80, 0x00, 0x7F, 0x01],
        ];
        let data: Vec<u8> = (0..70u8)
            .map(|i| i.wrapping_mul(31).wrapping_add(7))
            .collect();
        for key in keys {
            for len in 0..=70 {
                for offset in 0..=7 {
                    let mut fast = data[..len].to_vec();
                    let mut naive = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    apply_mask_naive(&mut naive, key, offset);
                    assert_eq!(fast, naive, "len {len} offset {offset} key {key:?}");
                }
            }
        }
    }

    #[test]
    fn split_masking_equals_whole() {
        let key = [9, 8, 7, 6];
        let mut whole: Vec<u8> = (0..50).collect();
        let mut split = whole.clone();
        apply_mask(&mut whole, key, 0);
        let (a, b) = split.split_at_mut(13);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        assert_eq!(whole, split);
    }
}
