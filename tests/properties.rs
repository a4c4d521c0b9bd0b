//! Property tests for the two byte-level building blocks the relay trusts
//! across read boundaries: masking at any offset, and streaming UTF-8.

use proptest::prelude::*;
use wsguard::frame::mask::apply_mask;
use wsguard::frame::utf8::Utf8Validator;

/// RFC 6455 §5.3 written out: byte i of the payload is XORed with key[i % 4].
fn mask_by_definition(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

/// Sorted cut points inside `0..=len` from arbitrary numbers.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    c.sort_unstable();
    c
}

/// Bytes that are often valid UTF-8 and often broken in interesting places:
/// real text, text with bytes flipped or cut, and raw bytes.
fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        (any::<String>(), any::<usize>(), any::<u8>()).prop_map(|(s, at, b)| {
            let mut v = s.into_bytes();
            if !v.is_empty() {
                let i = at % v.len();
                v[i] = b;
            }
            v
        }),
        (any::<String>(), any::<usize>()).prop_map(|(s, cut)| {
            let v = s.into_bytes();
            let n = cut % (v.len() + 1);
            v[..n].to_vec()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(0x80u8..=0xF7, 0..16),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn masking_twice_is_identity(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in 0usize..1 << 20,
    ) {
        let mut buf = data.clone();
        apply_mask(&mut buf, key, offset);
        apply_mask(&mut buf, key, offset);
        prop_assert_eq!(buf, data);
    }

    #[test]
    fn masking_matches_the_definition(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in 0usize..1 << 20,
    ) {
        let mut fast = data.clone();
        let mut slow = data;
        apply_mask(&mut fast, key, offset);
        mask_by_definition(&mut slow, key, offset);
        prop_assert_eq!(fast, slow);
    }

    #[test]
    fn split_masking_equals_whole_masking(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        start in 0usize..1 << 20,
        raw_cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut whole = data.clone();
        apply_mask(&mut whole, key, start);
        let mut split = data;
        let mut from = 0;
        for cut in cuts(split.len(), &raw_cuts).into_iter().chain([split.len()]) {
            apply_mask(&mut split[from..cut], key, start + from);
            from = cut;
        }
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn streaming_utf8_any_split_matches_std(
        bytes in utf8ish(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let expected = std::str::from_utf8(&bytes).is_ok();
        let mut v = Utf8Validator::new();
        let mut from = 0;
        let mut ok = true;
        for cut in cuts(bytes.len(), &raw_cuts).into_iter().chain([bytes.len()]) {
            if v.push(&bytes[from..cut]).is_err() {
                ok = false;
                break;
            }
            from = cut;
        }
        let ok = ok && v.finish().is_ok();
        prop_assert_eq!(ok, expected, "{:x?} cut at {:?}", bytes, cuts(bytes.len(), &raw_cuts));
    }

    #[test]
    fn streaming_utf8_fails_at_the_first_impossible_byte(bytes in utf8ish()) {
        // Byte by byte: the push that fails is the byte after which the
        // prefix can no longer be completed into valid UTF-8.
        let completable = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        };
        let first_bad = (1..=bytes.len()).find(|&k| !completable(&bytes[..k])).map(|k| k - 1);
        let mut v = Utf8Validator::new();
        let failed_at = bytes.iter().position(|b| v.push(&[*b]).is_err());
        prop_assert_eq!(failed_at, first_bad);
    }
}
