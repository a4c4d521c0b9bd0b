//! Origin allow-list: entries and header values from fuzz bytes. Besides "no
//! panic": the verdict is the same for the same input, two values are always
//! refused, values with bytes a serialized origin cannot hold are malformed,
//! adding entries never refuses a value that was allowed, and the normalized
//! entries build the same list again.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wsguard::origin::{AllowEntry, AllowList, OriginRefusal};

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Vec<String>,
    more: Vec<String>,
    allow_missing: bool,
    values: Vec<Vec<u8>>,
}

/// The list of `entries`, or `None` if any entry is refused.
fn build<'a>(
    entries: impl IntoIterator<Item = &'a String>,
    allow_missing: bool,
) -> Option<AllowList> {
    let parsed: Result<Vec<AllowEntry>, _> = entries.into_iter().map(|e| e.parse()).collect();
    parsed
        .ok()
        .map(|entries| AllowList::new(entries, allow_missing))
}

fuzz_target!(|input: Input| {
    let Some(list) = build(&input.entries, input.allow_missing) else {
        return;
    };
    assert!(list.entries().count() <= input.entries.len());
    let bigger = build(input.entries.iter().chain(&input.more), input.allow_missing);

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
    // The normalized entries build the same list again (what `wsguard check`
    // prints is what runs).
    let shown: Vec<String> = list.entries().collect();
    assert_eq!(build(&shown, input.allow_missing).as_ref(), Some(&list));
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
