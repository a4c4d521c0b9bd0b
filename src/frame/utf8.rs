//! Streaming UTF-8 validation for text messages split over frames and reads
//! (RFC 6455 §8.1, <https://www.rfc-editor.org/rfc/rfc6455#section-8.1>): fails at the
//! first impossible byte, carries at most 3 pending bytes between chunks.

/// The bytes so far cannot be UTF-8 (or end mid code point, for `finish`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validator state: the valid prefix of one code point cut off at a chunk end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    len: u8,
}

// === impl Utf8Validator ===

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk. Fails as soon as `chunk` holds a byte after which no
    /// continuation could make the input valid (e.g. `F4` then `90`, across chunks too).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), InvalidUtf8> {
        let mut rest = chunk;
        if self.len > 0 {
            let need = usize::from(sequence_len(self.pending[0]));
            while usize::from(self.len) < need {
                let Some((&b, tail)) = rest.split_first() else {
                    return Ok(());
                };
                if !continuation_ok(self.pending[0], self.len, b) {
                    return Err(InvalidUtf8);
                }
                self.pending[usize::from(self.len)] = b;
                self.len += 1;
                rest = tail;
            }
            self.len = 0;
        }
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            // `error_len() == None` means the tail is a valid but unfinished code point
            // (1–3 bytes); keep it for the next chunk.
            Err(e) if e.error_len().is_none() => {
                let tail = rest.get(e.valid_up_to()..).unwrap_or_default();
                let n = tail.len().min(3);
                self.pending[..n].copy_from_slice(&tail[..n]);
                self.len = n as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the text: fails if a code point is incomplete. Leaves the validator reset.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.len > 0;
        self.len = 0;
        if incomplete {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// Length of the sequence a (valid) lead byte starts.
fn sequence_len(lead: u8) -> u8 {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Whether `b` may follow `lead` at position `pos` (1..=3) of its sequence. The second
/// byte carries the overlong, surrogate and > U+10FFFF exclusions (RFC 3629 §4).
fn continuation_ok(lead: u8, pos: u8, b: u8) -> bool {
    let range = match (pos, lead) {
        (1, 0xE0) => 0xA0..=0xBF,
        (1, 0xED) => 0x80..=0x9F,
        (1, 0xF0) => 0x90..=0xBF,
        (1, 0xF4) => 0x80..=0x8F,
        _ => 0x80..=0xBF,
    };
    range.contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when `bytes` can still be extended into valid UTF-8.
    fn is_valid_prefix(bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            "héllo wörld €𝄞 ok".into(),
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xF4, 0x8F, 0xBF, 0xBF],
            vec![0xED, 0xA0, 0x80],
            vec![0xE0, 0x80, 0xAF],
            vec![0xC0, 0xAF],
            vec![0x80],
            vec![0xF5],
            vec![b'a', 0xE2, 0x82],
            vec![0xF0, 0x9F, 0x98],
            vec![0xE2, 0x82, 0xAC, 0xFF],
        ];
        // A tiny LCG makes many random byte strings biased towards multi-byte leads.
        let mut s: u32 = 12345;
        for _ in 0..400 {
            let mut b = Vec::new();
            for _ in 0..12 {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let r = (s >> 16) as u8;
                b.push(match r % 4 {
                    0 => r & 0x7F,
                    1 => 0x80 | (r & 0x3F),
                    _ => 0xC0 | (r & 0x3F),
                });
            }
            v.push(b);
        }
        v
    }

    #[test]
    fn byte_by_byte_fails_at_first_impossible_byte() {
        for input in samples() {
            let mut val = Utf8Validator::new();
            let mut failed_at = None;
            for (i, b) in input.iter().enumerate() {
                if val.push(&[*b]).is_err() {
                    failed_at = Some(i);
                    break;
                }
            }
            let expected = (1..=input.len()).find(|&k| !is_valid_prefix(&input[..k]));
            assert_eq!(failed_at, expected.map(|k| k - 1), "{input:x?}");
            if failed_at.is_none() {
                let whole_ok = std::str::from_utf8(&input).is_ok();
                assert_eq!(val.finish().is_ok(), whole_ok, "{input:x?}");
            }
        }
    }

    #[test]
    fn every_two_way_split_matches_std() {
        for input in samples() {
            for cut in 0..=input.len() {
                let mut val = Utf8Validator::new();
                let ok = val.push(&input[..cut]).is_ok()
                    && val.push(&input[cut..]).is_ok()
                    && val.finish().is_ok();
                assert_eq!(ok, std::str::from_utf8(&input).is_ok(), "{input:x?} @{cut}");
            }
        }
    }

    #[test]
    fn f4_90_split_fails_on_second_chunk() {
        let mut val = Utf8Validator::new();
        assert_eq!(val.push(&[b'x', 0xF4]), Ok(()));
        assert_eq!(val.push(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn finish_refuses_incomplete_code_point() {
        let mut val = Utf8Validator::new();
        assert_eq!(val.push(&[0xE2, 0x82]), Ok(()));
        assert_eq!(val.finish(), Err(InvalidUtf8));
        assert_eq!(val.finish(), Ok(()));
    }
}
