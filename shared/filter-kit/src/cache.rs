//! Two-level caches keyed by a hash: each worker keeps decoded values in
//! memory; behind it, proxy-wasm shared data holds encoded entries every
//! worker can read.
//!
//! Shared entries live in a fixed number of slots chosen by the hash, so
//! shared memory stays bounded and a colliding entry replaces the older one.
//! Keys are hashes, never tokens; each entry begins with its full hash, so a
//! slot holding another key is a miss.

use std::collections::{HashMap, VecDeque};

use baton_token::TokenHash;

use crate::host::Host;

/// A bounded map with first-in, first-out eviction.
#[derive(Debug)]
pub struct LocalCache<V> {
    map: HashMap<TokenHash, V>,
    order: VecDeque<TokenHash>,
    capacity: usize,
}

impl<V: Clone> LocalCache<V> {
    /// A cache holding at most `capacity` entries (0: holds nothing).
    pub fn new(capacity: usize) -> Self {
        Self { map: HashMap::with_capacity(capacity.min(256)), order: VecDeque::new(), capacity }
    }

    /// The value for `key`.
    pub fn get(&self, key: &TokenHash) -> Option<V> {
        self.map.get(key).cloned()
    }

    /// Stores a value, evicting the oldest entries beyond the capacity.
    pub fn insert(&mut self, key: TokenHash, value: V) {
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
    pub fn remove(&mut self, key: &TokenHash) {
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
