//! The 2–14 byte frame header of RFC 6455 §5.2
//! (<https://www.rfc-editor.org/rfc/rfc6455#section-5.2>): parse without consuming on
//! short input, refuse a malformed length field, encode with the minimal length form.

use super::coding::OpCode;
use super::error::Violation;

/// Longest possible header: 2 fixed bytes, 8 length bytes, 4 mask-key bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// One parsed frame header. `payload_len` is as sent; caps are checked by the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

// === impl FrameHeader ===

impl FrameHeader {
    /// A FIN header without reserved bits, as every frame wsguard builds has.
    pub fn fin(opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> Self {
        Self {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Parses a header from the start of `input`.
    ///
    /// Returns `Ok(None)` while the header is incomplete (nothing is consumed), or the
    /// header and its length in bytes. The errors are the length field's own (§5.2),
    /// refused as soon as its bytes are present: a 64-bit length with the most
    /// significant bit set, and a length not in its shortest form.
    pub fn parse(input: &[u8]) -> Result<Option<(Self, usize)>, Violation> {
        let [b0, b1, rest @ ..] = input else {
            return Ok(None);
        };
        let (payload_len, ext) = match b1 & 0x7F {
            126 => match rest.get(..2) {
                Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 2),
                _ => return Ok(None),
            },
            127 => match rest.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                Some(bytes) => {
                    let len = u64::from_be_bytes(bytes);
                    if len >> 63 != 0 {
                        return Err(Violation::LengthMsbSet);
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        // §5.2: "the minimal number of bytes MUST be used to encode the length".
        let shortest = match payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        if ext != shortest {
            let bits = if ext == 2 { 16 } else { 64 };
            return Err(Violation::NonMinimalLength {
                len: payload_len,
                bits,
            });
        }
        let mut used = 2 + ext;
        let mask = if b1 & 0x80 != 0 {
            match input
                .get(used..used + 4)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
            {
                Some(key) => {
                    used += 4;
                    Some(key)
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        let header = Self {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode: OpCode::from_u8(*b0),
            mask,
            payload_len,
        };
        Ok(Some((header, used)))
    }

    /// The header's wire bytes and their count, with the shortest length form
    /// (§5.2 requires it).
    pub fn to_bytes(&self) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut out = [0; MAX_HEADER_LEN];
        out[0] = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut used = match self.payload_len {
            // The match arms bound the value, so the narrowing casts are exact.
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[used..used + 4].copy_from_slice(&key);
            used += 4;
        }
        (out, used)
    }

    /// Appends [`FrameHeader::to_bytes`] to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (bytes, used) = self.to_bytes();
        out.extend_from_slice(&bytes[..used]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_length_forms() {
        let lens = [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, u64::MAX >> 1];
        let expected_sizes = [2, 2, 2, 4, 4, 4, 10, 10];
        for (len, size) in lens.into_iter().zip(expected_sizes) {
            for mask in [None, Some([1, 2, 3, 4])] {
                for opcode in [OpCode::Text, OpCode::Ping, OpCode::Reserved(5)] {
                    let mut h = FrameHeader::fin(opcode, mask, len);
                    h.fin = len % 2 == 0;
                    h.rsv2 = true;
                    let mut out = Vec::new();
                    h.encode(&mut out);
                    let want = size + if mask.is_some() { 4 } else { 0 };
                    assert_eq!(out.len(), want);
                    assert_eq!(FrameHeader::parse(&out), Ok(Some((h, want))));
                    // Every strict prefix is "not yet", never an error or a guess.
                    for cut in 0..want {
                        assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None));
                    }
                }
            }
        }
    }

    #[test]
    fn non_minimal_lengths_are_refused_from_the_length_field_alone() {
        let wide16 = |len: u16| [&[0x82, 0x80 | 126][..], &len.to_be_bytes()].concat();
        let wide64 = |len: u64| [&[0x82, 0x80 | 127][..], &len.to_be_bytes()].concat();
        for len in [0, 1, 125] {
            // The mask key is not there yet: the length field is enough.
            assert_eq!(
                FrameHeader::parse(&wide16(len)),
                Err(Violation::NonMinimalLength {
                    len: u64::from(len),
                    bits: 16
                })
            );
        }
        for len in [0, 125, 126, 0xFFFF] {
            assert_eq!(
                FrameHeader::parse(&wide64(len)),
                Err(Violation::NonMinimalLength { len, bits: 64 })
            );
        }
        // The smallest length each wide form exists for is accepted.
        assert_eq!(FrameHeader::parse(&wide16(126)), Ok(None));
        assert_eq!(FrameHeader::parse(&wide64(0x1_0000)), Ok(None));
    }

    #[test]
    fn msb_of_64_bit_length_is_refused() {
        let mut bytes = vec![0x82, 0xFF];
        bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&bytes), Err(Violation::LengthMsbSet));
    }
}
