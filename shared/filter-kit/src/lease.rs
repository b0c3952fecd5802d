//! Short leases in shared data, so that of all workers only one makes a
//! given call (an exchange, a refresh) while the others wait for its result.
//!
//! A fixed table of slots, chosen by the key's hash, each holding
//! `(key, until)`. Slots are created empty at start, because Envoy's
//! compare-and-swap cannot create an entry atomically; from then on every
//! acquisition is a compare-and-swap. Two keys sharing a slot do not block
//! each other: the second simply goes ahead without a lease.

use baton_token::TokenHash;

use crate::host::Host;

/// What an acquisition found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This worker holds the lease: make the call.
    Acquired,
    /// Another worker holds a live lease on this key: wait for its result.
    HeldElsewhere,
    /// The slot is busy with another key (or the table is unavailable): make
    /// the call without a lease.
    Unguarded,
}

/// A table of lease slots.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    prefix: String,
    slots: u32,
}

impl LeaseTable {
    /// `slots` leases under keys `<prefix><slot>`.
    pub fn new(prefix: impl Into<String>, slots: u32) -> Self {
        Self { prefix: prefix.into(), slots: slots.max(1) }
    }

    fn slot(&self, key: &TokenHash) -> String {
        format!("{}{}", self.prefix, key.prefix_u64() % u64::from(self.slots))
    }

    /// Creates the slots that do not exist yet (call once per VM at start).
    pub fn init(&self, host: &dyn Host) {
        for slot in 0..self.slots {
            let name = format!("{}{slot}", self.prefix);
            if host.shared_get(&name).is_none() {
                let _ = host.shared_set(&name, &encode(&[0; 32], 0), None);
            }
        }
    }

    /// Tries to hold `key` until `now_ms + duration_ms`.
    pub fn acquire(&self, host: &dyn Host, key: &TokenHash, now_ms: u64, duration_ms: u64) -> Lease {
        let name = self.slot(key);
        let Some((bytes, cas)) = host.shared_get(&name) else {
            return Lease::Unguarded;
        };
        let Some((holder, until)) = decode(&bytes) else {
            return Lease::Unguarded;
        };
        if now_ms < until {
            return if holder == *key.as_bytes() { Lease::HeldElsewhere } else { Lease::Unguarded };
        }
        if cas == 0 {
            return Lease::Unguarded;
        }
        match host.shared_set(&name, &encode(key.as_bytes(), now_ms + duration_ms), Some(cas)) {
            Ok(()) => Lease::Acquired,
            // Another worker took it between our read and write.
            Err(_) => match host.shared_get(&name).and_then(|(bytes, _)| decode(&bytes)) {
                Some((holder, until)) if holder == *key.as_bytes() && now_ms < until => Lease::HeldElsewhere,
                _ => Lease::Unguarded,
            },
        }
    }

    /// Whether a live lease on `key` is held (by anyone).
    pub fn held(&self, host: &dyn Host, key: &TokenHash, now_ms: u64) -> bool {
        host.shared_get(&self.slot(key))
            .and_then(|(bytes, _)| decode(&bytes))
            .is_some_and(|(holder, until)| holder == *key.as_bytes() && now_ms < until)
    }

    /// Ends this worker's lease on `key`, so waiting workers stop waiting.
    pub fn release(&self, host: &dyn Host, key: &TokenHash) {
        let name = self.slot(key);
        if let Some((bytes, cas)) = host.shared_get(&name)
            && decode(&bytes).is_some_and(|(holder, _)| holder == *key.as_bytes())
        {
            let _ = host.shared_set(&name, &encode(&[0; 32], 0), Some(cas));
        }
    }
}

fn encode(key: &[u8; 32], until: u64) -> Vec<u8> {
    let mut entry = Vec::with_capacity(40);
    entry.extend_from_slice(key);
    entry.extend_from_slice(&until.to_be_bytes());
    entry
}

fn decode(entry: &[u8]) -> Option<([u8; 32], u64)> {
    if entry.len() != 40 {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&entry[..32]);
    let mut until = [0u8; 8];
    until.copy_from_slice(&entry[32..]);
    Some((key, u64::from_be_bytes(until)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::TestHost;

    #[test]
    fn one_worker_holds_a_key_until_it_expires_or_is_released() {
        let host = TestHost::new(0);
        let table = LeaseTable::new("l.", 8);
        table.init(&host);
        let key = TokenHash::of(b"exchange");
        assert_eq!(table.acquire(&host, &key, 1000, 500), Lease::Acquired);
        assert_eq!(table.acquire(&host, &key, 1200, 500), Lease::HeldElsewhere);
        assert!(table.held(&host, &key, 1499));
        assert!(!table.held(&host, &key, 1500));
        assert_eq!(table.acquire(&host, &key, 1500, 500), Lease::Acquired, "expired: taken over");
        table.release(&host, &key);
        assert!(!table.held(&host, &key, 1600));
        assert_eq!(table.acquire(&host, &key, 1600, 500), Lease::Acquired);
    }

    #[test]
    fn another_key_in_the_same_slot_goes_ahead_unguarded() {
        let host = TestHost::new(0);
        let table = LeaseTable::new("l.", 1);
        table.init(&host);
        let (a, b) = (TokenHash::of(b"a"), TokenHash::of(b"b"));
        assert_eq!(table.acquire(&host, &a, 0, 1000), Lease::Acquired);
        assert_eq!(table.acquire(&host, &b, 0, 1000), Lease::Unguarded);
        table.release(&host, &b);
        assert!(table.held(&host, &a, 10), "releasing b leaves a's lease alone");
    }

    #[test]
    fn without_initialised_slots_nothing_is_guarded() {
        let host = TestHost::new(0);
        let table = LeaseTable::new("l.", 4);
        assert_eq!(table.acquire(&host, &TokenHash::of(b"a"), 0, 1000), Lease::Unguarded);
    }
}
