use flate2::{Compress, Compression, FlushCompress};

use super::*;

/// Raw DEFLATE of `data` as a permessage-deflate sender writes it: sync
/// flush, trailer removed.
fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&TRAILER));
    out.truncate(out.len() - 4);
    out
}

fn no_takeover() -> Inflater {
    Inflater::new(false)
}

fn inflate_all(i: &mut Inflater, parts: &[&[u8]]) -> Result<Vec<u8>, InflateError> {
    let mut got = Vec::new();
    let mut sink = |b: &[u8]| {
        got.extend_from_slice(b);
        Ok::<_, InflateError>(())
    };
    for p in parts {
        i.push(p, &mut sink)?;
    }
    i.finish(&mut sink)?;
    Ok(got)
}

#[test]
fn inflates_a_message_fed_byte_by_byte() {
    let msg = br#"{"room":"lobby","text":"hello hello hello hello"}"#.repeat(50);
    let z = deflate(&mut Compress::new(Compression::default(), false), &msg);
    let bytes: Vec<&[u8]> = z.chunks(1).collect();
    assert!(inflate_all(&mut no_takeover(), &bytes).unwrap() == msg);
}

#[test]
fn without_takeover_each_message_stands_alone() {
    let mut c = Compress::new(Compression::default(), false);
    let first = deflate(&mut c, b"the same words again");
    // The second message refers back to the first: only valid with context.
    let second = deflate(&mut c, b"the same words again");
    let mut i = no_takeover();
    inflate_all(&mut i, &[&first]).unwrap();
    assert_eq!(inflate_all(&mut i, &[&second]), Err(InflateError::BadData));

    let mut i = Inflater::new(true);
    inflate_all(&mut i, &[&first]).unwrap();
    assert_eq!(
        inflate_all(&mut i, &[&second]).unwrap(),
        b"the same words again"
    );
}

#[test]
fn garbage_is_bad_data() {
    // BTYPE 11 is reserved.
    assert_eq!(
        inflate_all(&mut no_takeover(), &[&[0xff, 0xff, 0xff]]),
        Err(InflateError::BadData)
    );
}

#[test]
fn final_block_then_more_data_is_refused() {
    // "Hello" as one final fixed-Huffman block (RFC 7692 §7.2.3.1).
    let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_all(&mut no_takeover(), &[&fin]).unwrap(), b"Hello");
    let mut more = fin.to_vec();
    more.extend_from_slice(&[0x00, 0x00]);
    assert_eq!(
        inflate_all(&mut no_takeover(), &[&more]),
        Err(InflateError::DataAfterFinalBlock)
    );
    // Across two pushes (two frames) too.
    assert_eq!(
        inflate_all(&mut no_takeover(), &[&fin, &[0x00]]),
        Err(InflateError::DataAfterFinalBlock)
    );
}

#[test]
fn a_bomb_is_handed_out_in_bounded_chunks_and_stops_at_the_sink() {
    let zeros = vec![0u8; 8 << 20];
    let z = deflate(&mut Compress::new(Compression::best(), false), &zeros);
    assert!(z.len() < 16 << 10, "{}", z.len());
    let (mut seen, mut largest) = (0usize, 0usize);
    let mut sink = |b: &[u8]| {
        largest = largest.max(b.len());
        seen += b.len();
        if seen > 1 << 20 {
            return Err(InflateError::BadData);
        }
        Ok(())
    };
    let mut i = no_takeover();
    assert!(i.push(&z, &mut sink).is_err());
    assert!(largest <= OUT_LEN);
    assert!(seen <= (1 << 20) + OUT_LEN);
}

#[test]
fn any_window_is_read() {
    let msg = b"abcabcabc".repeat(100);
    for bits in [9, 12, 15] {
        let mut c = Compress::new_with_window_bits(Compression::best(), false, bits);
        let z = deflate(&mut c, &msg);
        let mut i = Inflater::new(true);
        assert!(inflate_all(&mut i, &[&z]).unwrap() == msg, "{bits} bits");
    }
}

/// Inflates `parts` as one message with a sink that refuses more than `cap`
/// bytes: the verdict (`Ok(None)` when accepted, `Ok(Some(n))` when the sink
/// refused at `n` bytes) and what the sink saw.
fn inflate_capped(parts: &[&[u8]], cap: usize) -> (Result<Option<usize>, InflateError>, Vec<u8>) {
    #[derive(Debug)]
    enum Stop {
        Cap(usize),
        Inflate(InflateError),
    }
    impl From<InflateError> for Stop {
        fn from(e: InflateError) -> Self {
            Stop::Inflate(e)
        }
    }
    let mut got = Vec::new();
    let mut sink = |b: &[u8]| {
        got.extend_from_slice(b);
        if got.len() > cap {
            return Err(Stop::Cap(got.len()));
        }
        Ok(())
    };
    let mut i = no_takeover();
    let result = parts
        .iter()
        .try_for_each(|p| i.push(p, &mut sink))
        .and_then(|()| i.finish(&mut sink));
    let verdict = match result {
        Ok(()) => Ok(None),
        Err(Stop::Cap(n)) => Ok(Some(n)),
        Err(Stop::Inflate(e)) => Err(e),
    };
    (verdict, got)
}

#[test]
fn bytes_inflated_before_bad_data_count_against_the_cap() {
    // A fixed-Huffman block that, with the trailer, inflates to a literal
    // and a 115-byte match, then hits an invalid code (found by the inflate
    // fuzz target).
    let data = [0x3b, 0x3b];
    let (verdict, got) = inflate_capped(&[&data], usize::MAX);
    assert_eq!(verdict, Err(InflateError::BadData));
    assert_eq!(got, [0xcd; 116]);
    // The cap is passed before the data goes bad: that is the verdict, at any split.
    for parts in [vec![&data[..]], data.chunks(1).collect()] {
        assert_eq!(inflate_capped(&parts, 59).0, Ok(Some(116)));
    }
}
