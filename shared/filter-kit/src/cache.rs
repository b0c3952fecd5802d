//! Two-level caches: each worker keeps decoded values in memory; behind it,
//! proxy-wasm shared data holds encoded entries every worker can read.
//!
//! In worker memory, [`TokenMemo`] finds an entry by the token itself, so a
//! request whose token was seen before costs no cryptographic hash. Shared
//! entries are keyed by a SHA-256 [`TokenHash`] (computed only on a local
//! miss) and live in a fixed number of slots chosen by the hash, so shared
//! memory stays bounded and a colliding entry replaces the older one. Shared
//! keys are hashes, never tokens; each entry begins with its full hash, so a
//! slot holding another key is a miss.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;

use baton_token::TokenHash;

use crate::host::Host;

/// A bounded map with first-in, first-out eviction.
#[derive(Debug)]
pub struct LocalCache<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V: Clone> LocalCache<K, V> {
    /// A cache holding at most `capacity` entries (0: holds nothing).
    pub fn new(capacity: usize) -> Self {
        Self { map: HashMap::with_capacity(capacity.min(256)), order: VecDeque::new(), capacity }
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    /// Stores a value, evicting the oldest entries beyond the capacity.
    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
        // Removed entries leave stale order slots; keep the queue bounded.
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order.retain(|key| map.contains_key(key));
        }
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// How many trailing bytes of a token pick its bucket: the end of the
/// signature, which differs between any two tokens an issuer signed.
const FINGERPRINT_BYTES: usize = 32;

/// Values remembered by token in one worker's memory: looked up with a hash
/// of the token's length and last bytes (cheap) and confirmed by comparing
/// the whole token, so a token that merely ends like a cached one is a miss.
///
/// Entries live under a `scope` (e.g. a target index) as well, so one memo
/// can hold a value per token and scope. Only tokens that passed
/// verification are inserted, and bucket seeds are random per VM, so
/// crafted tokens can neither read nor crowd out another token's entry.
#[derive(Debug)]
pub struct TokenMemo<V> {
    entries: LocalCache<u64, Rc<MemoEntry<V>>>,
    seeds: RandomState,
}

#[derive(Debug)]
struct MemoEntry<V> {
    scope: u32,
    token: Box<str>,
    value: V,
}

impl<V: Clone> TokenMemo<V> {
    /// A memo of at most `capacity` entries (0: remembers nothing).
    pub fn new(capacity: usize) -> Self {
        Self { entries: LocalCache::new(capacity), seeds: RandomState::new() }
    }

    fn fingerprint(&self, scope: u32, token: &str) -> u64 {
        let tail = &token.as_bytes()[token.len().saturating_sub(FINGERPRINT_BYTES)..];
        self.seeds.hash_one((scope, token.len(), tail))
    }

    /// The value remembered for `token` under `scope`.
    pub fn get(&self, scope: u32, token: &str) -> Option<V> {
        let entry = self.entries.get(&self.fingerprint(scope, token))?;
        (entry.scope == scope && *entry.token == *token).then(|| entry.value.clone())
    }

    /// Remembers `value` for `token` under `scope` (replacing whatever
    /// shared its bucket).
    pub fn insert(&mut self, scope: u32, token: &str, value: V) {
        let entry = MemoEntry { scope, token: token.into(), value };
        self.entries.insert(self.fingerprint(scope, token), Rc::new(entry));
    }

    /// Forgets `token` under `scope`.
    pub fn remove(&mut self, scope: u32, token: &str) {
        let key = self.fingerprint(scope, token);
        if self.entries.get(&key).is_some_and(|entry| entry.scope == scope && *entry.token == *token) {
            self.entries.remove(&key);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Fixed slots in shared data.
#[derive(Debug, Clone)]
pub struct SharedSlots {
    slots: u32,
    prefix: String,
}

impl SharedSlots {
    /// `slots` entries under keys `<prefix><slot>` (0 slots: stores nothing).
    pub fn new(slots: u32, prefix: impl Into<String>) -> Self {
        Self { slots, prefix: prefix.into() }
    }

    /// Whether the slots are disabled.
    pub fn is_disabled(&self) -> bool {
        self.slots == 0
    }

    fn slot_key(&self, key: &TokenHash) -> String {
        format!("{}{}", self.prefix, key.prefix_u64() % u64::from(self.slots.max(1)))
    }

    /// The entry stored for `key`, without its hash prefix.
    pub fn get(&self, key: &TokenHash, host: &dyn Host) -> Option<Vec<u8>> {
        if self.slots == 0 {
            return None;
        }
        let (mut entry, _) = host.shared_get(&self.slot_key(key))?;
        if entry.len() < 32 || entry[..32] != key.as_bytes()[..] {
            return None;
        }
        entry.drain(..32);
        Some(entry)
    }

    /// The entry stored for `key` with its compare-and-swap version, for a
    /// later [`SharedSlots::put_if_unchanged`].
    pub fn get_versioned(&self, key: &TokenHash, host: &dyn Host) -> Option<(Vec<u8>, u32)> {
        if self.slots == 0 {
            return None;
        }
        let (mut entry, cas) = host.shared_get(&self.slot_key(key))?;
        if entry.len() < 32 || entry[..32] != key.as_bytes()[..] {
            return None;
        }
        entry.drain(..32);
        Some((entry, cas))
    }

    /// Replaces the entry for `key` only if it is still the version read:
    /// exactly one of several workers racing for it succeeds.
    pub fn put_if_unchanged(&self, key: &TokenHash, value: &[u8], cas: u32, host: &dyn Host) -> bool {
        if self.slots == 0 || cas == 0 {
            return false;
        }
        let mut entry = Vec::with_capacity(32 + value.len());
        entry.extend_from_slice(key.as_bytes());
        entry.extend_from_slice(value);
        host.shared_set(&self.slot_key(key), &entry, Some(cas)).is_ok()
    }

    /// Stores `value` for `key`. A failed write only costs another worker a
    /// recomputation, so it is not reported.
    pub fn put(&self, key: &TokenHash, value: &[u8], host: &dyn Host) {
        if self.slots == 0 {
            return;
        }
        let mut entry = Vec::with_capacity(32 + value.len());
        entry.extend_from_slice(key.as_bytes());
        entry.extend_from_slice(value);
        let _ = host.shared_set(&self.slot_key(key), &entry, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::TestHost;

    #[test]
    fn local_cache_evicts_oldest_first() {
        let mut cache = LocalCache::new(2);
        let (a, b, c) = (TokenHash::of(b"a"), TokenHash::of(b"b"), TokenHash::of(b"c"));
        cache.insert(a, 1);
        cache.insert(b, 2);
        cache.insert(c, 3);
        assert_eq!((cache.get(&a), cache.get(&b), cache.get(&c)), (None, Some(2), Some(3)));
        cache.remove(&b);
        assert_eq!(cache.len(), 1);
        let mut none = LocalCache::new(0);
        none.insert(a, 1);
        assert!(none.is_empty());
    }

    #[test]
    fn token_memo_confirms_the_whole_token_and_scope() {
        let mut memo = TokenMemo::new(8);
        let signature_end = "x".repeat(40);
        let token = format!("header.payload.{signature_end}");
        let lookalike = format!("header.forged!.{signature_end}");
        memo.insert(0, &token, 1);
        assert_eq!(memo.get(0, &token), Some(1));
        assert_eq!(memo.get(0, &lookalike), None, "same length and tail, another token");
        assert_eq!(memo.get(1, &token), None, "another scope");
        memo.remove(0, &lookalike);
        assert_eq!(memo.get(0, &token), Some(1), "removing a lookalike keeps the entry");
        memo.insert(1, &token, 2);
        assert_eq!((memo.get(0, &token), memo.get(1, &token)), (Some(1), Some(2)));
        memo.remove(0, &token);
        assert_eq!((memo.get(0, &token), memo.len()), (None, 1));
        let mut none = TokenMemo::new(0);
        none.insert(0, "a", 1);
        assert!(none.is_empty());
    }

    #[test]
    fn shared_slots_are_bounded_and_check_the_key() {
        let host = TestHost::new(0);
        let slots = SharedSlots::new(1, "t.");
        let (a, b) = (TokenHash::of(b"a"), TokenHash::of(b"b"));
        slots.put(&a, b"value-a", &host);
        assert_eq!(slots.get(&a, &host).as_deref(), Some(&b"value-a"[..]));
        assert_eq!(slots.get(&b, &host), None);
        slots.put(&b, b"value-b", &host);
        assert_eq!(slots.get(&a, &host), None, "the one slot now belongs to b");
        assert_eq!(host.shared_len(), 1);
        let (_, cas) = slots.get_versioned(&b, &host).unwrap();
        assert!(slots.put_if_unchanged(&b, b"value-b2", cas, &host));
        assert!(!slots.put_if_unchanged(&b, b"value-b3", cas, &host), "the version moved on");
        assert_eq!(slots.get(&b, &host).as_deref(), Some(&b"value-b2"[..]));
        let other_prefix = SharedSlots::new(1, "u.");
        assert_eq!(other_prefix.get(&b, &host), None);
        let disabled = SharedSlots::new(0, "t.");
        disabled.put(&a, b"x", &host);
        assert_eq!(disabled.get(&b, &host), None);
    }
}
