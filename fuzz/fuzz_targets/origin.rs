//! Origin allow-list: entries and header values from fuzz bytes. Besides "no
//! panic": building is all-or-nothing per entry, the verdict is the same for
//! the same input, two values are always refused, values with bytes a
//! serialized origin cannot hold are malformed, and adding entries never
//! refuses a value that was allowed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wsguard::origin::{AllowList, OriginRefusal};

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Vec<String>,
    more: Vec<String>,
    allow_missing: bool,
    values: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let Ok(list) = AllowList::new(&input.entries, input.allow_missing) else {
        return;
    };
    assert!(list.entries().count() <= input.entries.len());
    let bigger: Vec<String> = input.entries.iter().chain(&input.more).cloned().collect();
    let bigger = AllowList::new(&bigger, input.allow_missing).ok();

    assert_eq!(list.check(&[]).is_ok(), input.allow_missing);
    for v in &input.values {
        let verdict = list.check(&[v.as_slice()]);
        assert_eq!(verdict, list.check(&[v.as_slice()]));
        if !v.iter().all(|b| (0x21..=0x7e).contains(b)) {
            assert_eq!(verdict, Err(OriginRefusal::Malformed));
        }
        if verdict.is_ok() {
            if let Some(bigger) = &bigger {
                assert!(
                    bigger.check(&[v.as_slice()]).is_ok(),
                    "more entries refused {v:?}"
                );
            }
        }
        assert_eq!(
            list.check(&[v.as_slice(), v.as_slice()]),
            Err(OriginRefusal::Multiple)
        );
    }
    // Every normalized entry, written back as a header value, is allowed by
    // its own list (wildcards excepted: `*` is not a host).
    for e in list.entries() {
        if !e.contains('*') {
            assert!(
                list.check(&[e.as_bytes()]).is_ok(),
                "entry {e:?} refuses itself"
            );
        }
    }
});
