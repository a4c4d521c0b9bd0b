//! Forward auth's decision cache: decisions by a hash of the credentials, kept until a
//! deadline, at most `size` of them; and the single flight that makes concurrent identical
//! requests wait for the one already asking instead of asking again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

/// SHA-256 of what the auth service's answer depends on: the raw credentials are not kept.
pub(super) type Key = [u8; 32];

/// The key of a request: its Cookie, Authorization, Origin and Host values and `uri` (the
/// X-Forwarded-Uri). Every field is prefixed with its number of values and every value with
/// its length, so no two different requests run together into the same bytes.
pub(super) fn key(headers: &HeaderMap, uri: &str) -> Key {
    let mut hash = Sha256::new();
    let mut field = |values: &[&[u8]]| {
        hash.update((values.len() as u64).to_le_bytes());
        for value in values {
            hash.update((value.len() as u64).to_le_bytes());
            hash.update(value);
        }
    };
    for name in [COOKIE, AUTHORIZATION, ORIGIN, HOST] {
        let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        field(&values);
    }
    field(&[uri.as_bytes()]);
    hash.finalize().into()
}

/// The decisions kept and the requests in flight. Lookups are O(1); inserting is O(log n)
/// (the deadline index).
pub(super) struct Cache<V> {
    size: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<Key, Entry<V>>,
    /// Every entry by (deadline, insertion number): the first one is the next to evict.
    by_deadline: BTreeMap<(Instant, u64), Key>,
    inserted: u64,
    /// The answer of each request in flight arrives on its channel (`None` until then).
    in_flight: HashMap<Key, watch::Receiver<Option<V>>>,
}

struct Entry<V> {
    value: V,
    deadline: Instant,
    seq: u64,
}

/// What [`Cache::lookup`] found.
pub(super) enum Lookup<'a, V> {
    Hit(V),
    /// An identical request is in flight: its answer comes on this channel, which closes
    /// without one if that request was abandoned.
    Wait(watch::Receiver<Option<V>>),
    /// Neither: the caller asks, then reports the answer through the flight.
    Lead(Flight<'a, V>),
}

impl<V: Clone> Cache<V> {
    /// A cache of at most `size` values (at least one).
    pub(super) fn new(size: usize) -> Cache<V> {
        Cache {
            size,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                by_deadline: BTreeMap::new(),
                inserted: 0,
                in_flight: HashMap::new(),
            }),
        }
    }

    pub(super) fn lookup(&self, key: Key, now: Instant) -> Lookup<'_, V> {
        let mut inner = self.lock();
        match inner.entries.get(&key) {
            Some(entry) if entry.deadline > now => return Lookup::Hit(entry.value.clone()),
            Some(_) => inner.remove(&key),
            None => {}
        }
        if let Some(answer) = inner.in_flight.get(&key) {
            return Lookup::Wait(answer.clone());
        }
        let (tx, rx) = watch::channel(None);
        inner.in_flight.insert(key, rx);
        Lookup::Lead(Flight {
            cache: self,
            key,
            tx,
        })
    }
}

impl<V> Cache<V> {
    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // The maps are consistent at every unlock, so a poisoned lock holds nothing half-done.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> Inner<V> {
    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_deadline.remove(&(entry.deadline, entry.seq));
        }
    }

    /// Stores `value` until `deadline`. When full, the entry with the earliest deadline
    /// goes: an expired one if there is any, otherwise (one TTL for all) the oldest, unless
    /// a session ends sooner.
    fn insert(&mut self, key: Key, value: V, deadline: Instant, size: usize) {
        self.remove(&key);
        while self.entries.len() >= size {
            let Some((_, victim)) = self.by_deadline.pop_first() else {
                break;
            };
            self.entries.remove(&victim);
        }
        self.inserted += 1;
        let seq = self.inserted;
        self.by_deadline.insert((deadline, seq), key);
        self.entries.insert(
            key,
            Entry {
                value,
                deadline,
                seq,
            },
        );
    }
}

/// The one request in flight for a key. Dropped without [`Flight::finish`] (the caller gave
/// up), it lets the waiting requests go and ask themselves.
pub(super) struct Flight<'a, V> {
    cache: &'a Cache<V>,
    key: Key,
    tx: watch::Sender<Option<V>>,
}

impl<V: Clone> Flight<'_, V> {
    /// Hands `value` to the waiting requests, and keeps it until `keep_until` if given (and
    /// still ahead of `now`).
    pub(super) fn finish(self, value: V, now: Instant, keep_until: Option<Instant>) {
        if let Some(deadline) = keep_until.filter(|d| *d > now) {
            let size = self.cache.size;
            self.cache
                .lock()
                .insert(self.key, value.clone(), deadline, size);
        }
        self.tx.send_replace(Some(value));
    }
}

impl<V> Drop for Flight<'_, V> {
    fn drop(&mut self) {
        self.cache.lock().in_flight.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn key_of(n: u8) -> Key {
        [n; 32]
    }

    /// Stores `value` under `key` until `deadline`, as a leading request does.
    fn store(cache: &Cache<u32>, key: Key, value: u32, now: Instant, deadline: Instant) {
        match cache.lookup(key, now) {
            Lookup::Lead(flight) => flight.finish(value, now, Some(deadline)),
            _ => panic!("expected to lead"),
        }
    }

    fn hit(cache: &Cache<u32>, key: Key, now: Instant) -> Option<u32> {
        match cache.lookup(key, now) {
            Lookup::Hit(v) => Some(v),
            // Dropping the flight unregisters it, as an abandoned request does.
            Lookup::Lead(_) => None,
            Lookup::Wait(_) => panic!("nothing is in flight"),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn keys_separate_fields_and_values() {
        let base = key(&headers(&[("cookie", "ab"), ("origin", "c")]), "/");
        assert_eq!(
            base,
            key(&headers(&[("origin", "c"), ("cookie", "ab")]), "/")
        );
        // The same bytes split differently between fields, or between values of one field.
        assert_ne!(
            base,
            key(&headers(&[("cookie", "a"), ("origin", "bc")]), "/")
        );
        assert_ne!(
            key(&headers(&[("cookie", "ab")]), "/"),
            key(&headers(&[("cookie", "a"), ("cookie", "b")]), "/")
        );
        assert_ne!(
            key(&headers(&[("host", "a")]), "/"),
            key(&headers(&[("authorization", "a")]), "/")
        );
        assert_ne!(
            base,
            key(&headers(&[("cookie", "ab"), ("origin", "c")]), "/x")
        );
        // Headers the answer does not depend on are not part of the key.
        assert_eq!(
            base,
            key(
                &headers(&[("cookie", "ab"), ("origin", "c"), ("user-agent", "x")]),
                "/"
            )
        );
    }

    #[test]
    fn values_are_kept_until_their_deadline() {
        let cache = Cache::new(10);
        let now = Instant::now();
        store(&cache, key_of(1), 7, now, now + SECOND);
        assert_eq!(hit(&cache, key_of(1), now), Some(7));
        assert_eq!(hit(&cache, key_of(1), now + SECOND / 2), Some(7));
        assert_eq!(hit(&cache, key_of(1), now + SECOND), None);
        assert!(cache.lock().entries.is_empty() && cache.lock().by_deadline.is_empty());
    }

    #[test]
    fn a_value_without_a_future_deadline_is_not_kept() {
        let cache = Cache::new(10);
        let now = Instant::now();
        match cache.lookup(key_of(1), now) {
            Lookup::Lead(flight) => flight.finish(1, now, None),
            _ => panic!("expected to lead"),
        }
        assert_eq!(hit(&cache, key_of(1), now), None);
        store(&cache, key_of(2), 2, now, now);
        assert_eq!(hit(&cache, key_of(2), now), None);
    }

    #[test]
    fn when_full_expired_entries_go_first_then_the_oldest() {
        let cache = Cache::new(3);
        let now = Instant::now();
        store(&cache, key_of(1), 1, now, now + 10 * SECOND);
        // Stored later but ends sooner (a session's expiry).
        store(&cache, key_of(2), 2, now, now + SECOND);
        store(&cache, key_of(3), 3, now, now + 10 * SECOND);
        let later = now + 2 * SECOND;
        store(&cache, key_of(4), 4, later, later + 10 * SECOND);
        assert_eq!(hit(&cache, key_of(2), later), None, "the expired one went");
        assert_eq!(hit(&cache, key_of(1), later), Some(1));
        store(&cache, key_of(5), 5, later, later + 10 * SECOND);
        assert_eq!(hit(&cache, key_of(1), later), None, "then the oldest");
        for (k, v) in [(3, 3), (4, 4), (5, 5)] {
            assert_eq!(hit(&cache, key_of(k), later), Some(v));
        }
        assert_eq!(cache.lock().entries.len(), 3);
        assert_eq!(cache.lock().by_deadline.len(), 3);
    }

    #[test]
    fn storing_a_key_again_replaces_it() {
        let cache = Cache::new(2);
        let now = Instant::now();
        store(&cache, key_of(1), 1, now, now + SECOND);
        store(&cache, key_of(1), 2, now + 2 * SECOND, now + 3 * SECOND);
        store(&cache, key_of(2), 3, now + 2 * SECOND, now + 3 * SECOND);
        assert_eq!(hit(&cache, key_of(1), now + 2 * SECOND), Some(2));
        assert_eq!(cache.lock().by_deadline.len(), 2);
    }

    #[tokio::test]
    async fn identical_requests_wait_for_the_one_in_flight() {
        let cache = Cache::new(10);
        let now = Instant::now();
        let Lookup::Lead(flight) = cache.lookup(key_of(1), now) else {
            panic!("expected to lead");
        };
        let Lookup::Wait(mut answer) = cache.lookup(key_of(1), now) else {
            panic!("expected to wait");
        };
        assert!(matches!(cache.lookup(key_of(2), now), Lookup::Lead(_)));
        // An answer not kept (Unavailable) still reaches the waiting requests.
        flight.finish(9, now, None);
        let got = *answer.wait_for(Option::is_some).await.unwrap();
        assert_eq!(got, Some(9));
        assert!(cache.lock().in_flight.is_empty());
        assert!(matches!(cache.lookup(key_of(1), now), Lookup::Lead(_)));
    }

    #[tokio::test]
    async fn an_abandoned_flight_lets_the_waiting_requests_ask() {
        let cache: Cache<u32> = Cache::new(10);
        let now = Instant::now();
        let Lookup::Lead(flight) = cache.lookup(key_of(1), now) else {
            panic!("expected to lead");
        };
        let Lookup::Wait(mut answer) = cache.lookup(key_of(1), now) else {
            panic!("expected to wait");
        };
        drop(flight);
        assert!(answer.wait_for(Option::is_some).await.is_err());
        assert!(matches!(cache.lookup(key_of(1), now), Lookup::Lead(_)));
    }
}
