//! A bounded table in shared data whose live entries are never pushed out
//! by other keys: what a user is owed (a pending authorization, a token kept
//! for a task) stays until it expires or is replaced under its own key.
//!
//! Unlike [`crate::cache::SharedSlots`], where a colliding key simply
//! overwrites (fine for a cache, which can recompute), a key here looks at
//! [`PROBES`] slots chosen by its hash and takes one that is free (never used,
//! released, or expired); when all are live with other keys the insert
//! fails and the caller refuses the new entry rather than evict someone
//! else's. Slots are created at start (Envoy's compare-and-swap cannot
//! create an entry atomically, see [`crate::lease`]); from then on every
//! write is a compare-and-swap, so of two workers racing for one slot, one
//! wins and the other moves on.

use baton_token::TokenHash;

use crate::host::Host;

/// Slots a key may use. Probes follow double hashing over a prime number
/// of slots, so keys that share a first slot part ways at once: with the
/// table half full, all 16 slots of a key are taken about once in 65,000
/// inserts (linear probing clusters, and failed far more often).
pub const PROBES: u32 = 16;

/// Bytes before the payload: the key's hash, `expires_at` (u64 BE), and a
/// flag byte (1: live).
const HEADER: usize = 32 + 8 + 1;

/// Where an entry was found, to write it back with compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    index: u32,
    cas: u32,
}

/// An entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its payload.
    pub payload: Vec<u8>,
    /// Last second it is live (exclusive).
    pub expires_at: u64,
    /// Where it is.
    pub slot: Slot,
}

/// An insert did not happen: every slot the key may use holds another
/// key's live entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// A fixed table of slots under `<prefix><index>`.
#[derive(Debug, Clone)]
pub struct SlotTable {
    slots: u32,
    prefix: String,
}

impl SlotTable {
    /// A table of at least `slots` slots (the next prime).
    pub fn new(slots: u32, prefix: impl Into<String>) -> Self {
        Self { slots: next_prime(slots.max(2)), prefix: prefix.into() }
    }

    /// The number of slots.
    pub fn len(&self) -> u32 {
        self.slots
    }

    /// Never: a table has at least two slots.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Creates the slots that do not exist yet. Every VM calls this before
    /// it serves a request, so a slot is never written before it exists.
    pub fn init(&self, host: &dyn Host) {
        let free = [0u8; HEADER];
        for index in 0..self.slots {
            let name = self.name(index);
            if host.shared_get(&name).is_none() {
                let _ = host.shared_set(&name, &free, None);
            }
        }
    }

    fn name(&self, index: u32) -> String {
        format!("{}{index}", self.prefix)
    }

    fn indexes(&self, key: &TokenHash) -> impl Iterator<Item = u32> {
        let start = key.prefix_u64() % u64::from(self.slots);
        let slots = self.slots;
        (0..PROBES.min(slots))
            .map(move |step| u32::try_from((start + u64::from(step)) % u64::from(slots)).unwrap_or(0))
    }

    fn read(&self, host: &dyn Host, index: u32) -> Option<(Vec<u8>, u32)> {
        host.shared_get(&self.name(index))
    }

    /// The live entry of `key` at `now`.
    pub fn get(&self, host: &dyn Host, key: &TokenHash, now: u64) -> Option<Entry> {
        self.indexes(key).find_map(|index| {
            let (bytes, cas) = self.read(host, index)?;
            let (holder, expires_at, live) = header(&bytes)?;
            (live && holder == key.as_bytes() && now < expires_at).then(|| Entry {
                payload: bytes[HEADER..].to_vec(),
                expires_at,
                slot: Slot { index, cas },
            })
        })
    }

    /// Stores `payload` for `key` until `expires_at`: over its own live
    /// entry, else in a free slot. Never over another key's live entry.
    pub fn insert(
        &self,
        host: &dyn Host,
        key: &TokenHash,
        payload: &[u8],
        expires_at: u64,
        now: u64,
    ) -> Result<(), TableFull> {
        let entry = encode(key, expires_at, true, payload);
        // A few rounds: a slot taken under us by another worker is read again.
        for _ in 0..3 {
            let mut free: Option<(u32, u32)> = None;
            let mut own: Option<(u32, u32)> = None;
            for index in self.indexes(key) {
                let Some((bytes, cas)) = self.read(host, index) else { continue };
                let Some((holder, expires, live)) = header(&bytes) else { continue };
                let usable = !live || now >= expires;
                if holder == key.as_bytes() && !usable {
                    own = Some((index, cas));
                    break;
                }
                if usable && free.is_none() {
                    free = Some((index, cas));
                }
            }
            let Some((index, cas)) = own.or(free) else {
                return Err(TableFull);
            };
            if cas != 0 && host.shared_set(&self.name(index), &entry, Some(cas)).is_ok() {
                return Ok(());
            }
        }
        Err(TableFull)
    }

    /// Replaces the entry read at `slot` (its key `key`) if it is unchanged
    /// since: of two concurrent changes, exactly one succeeds.
    pub fn replace(
        &self,
        host: &dyn Host,
        slot: Slot,
        key: &TokenHash,
        payload: &[u8],
        expires_at: u64,
    ) -> bool {
        slot.cas != 0
            && host
                .shared_set(&self.name(slot.index), &encode(key, expires_at, true, payload), Some(slot.cas))
                .is_ok()
    }

    /// Frees the live entry of `key`, if it is still there.
    pub fn release(&self, host: &dyn Host, key: &TokenHash, now: u64) {
        if let Some(entry) = self.get(host, key, now) {
            let _ = host.shared_set(
                &self.name(entry.slot.index),
                &encode(key, 0, false, &[]),
                Some(entry.slot.cas),
            );
        }
    }
}

/// The smallest prime at least `n` (n ≥ 2; slot counts are at most a few
/// hundred thousand, so trial division is quick).
fn next_prime(n: u32) -> u32 {
    let is_prime =
        |candidate: u32| (2..).take_while(|d: &u32| d * d <= candidate).all(|d| !candidate.is_multiple_of(d));
    (n..).find(|candidate| is_prime(*candidate)).unwrap_or(n)
}

fn encode(key: &TokenHash, expires_at: u64, live: bool, payload: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(HEADER + payload.len());
    entry.extend_from_slice(key.as_bytes());
    entry.extend_from_slice(&expires_at.to_be_bytes());
    entry.push(u8::from(live));
    entry.extend_from_slice(payload);
    entry
}

fn header(bytes: &[u8]) -> Option<(&[u8], u64, bool)> {
    let holder = bytes.get(..32)?;
    let expires = u64::from_be_bytes(bytes.get(32..40)?.try_into().ok()?);
    Some((holder, expires, *bytes.get(40)? == 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::TestHost;

    fn key(n: u32) -> TokenHash {
        TokenHash::of(&n.to_be_bytes())
    }

    #[test]
    fn a_live_entry_is_never_pushed_out_by_another_key() {
        let host = TestHost::new(100);
        let table = SlotTable::new(4, "t.");
        assert_eq!(table.len(), 5, "the next prime");
        table.init(&host);
        for n in 0..5 {
            table.insert(&host, &key(n), b"v", 200, 100).unwrap();
        }
        // Full: a sixth key is refused, the five stay.
        assert_eq!(table.insert(&host, &key(9), b"x", 200, 100), Err(TableFull));
        for n in 0..5 {
            assert_eq!(table.get(&host, &key(n), 100).unwrap().payload, b"v");
        }
        // A key replaces its own entry.
        table.insert(&host, &key(1), b"w", 300, 100).unwrap();
        assert_eq!(table.get(&host, &key(1), 100).unwrap().payload, b"w");
        // Released or expired slots are taken again.
        table.release(&host, &key(2), 100);
        assert!(table.get(&host, &key(2), 100).is_none());
        table.insert(&host, &key(9), b"x", 200, 100).unwrap();
        assert_eq!(table.insert(&host, &key(10), b"y", 200, 150), Err(TableFull));
        assert!(table.get(&host, &key(0), 200).is_none(), "expired at 200");
        table.insert(&host, &key(10), b"y", 400, 200).unwrap();
        assert_eq!(table.get(&host, &key(10), 200).unwrap().payload, b"y");
        assert_eq!(host.shared_len(), 5);
    }

    #[test]
    fn a_half_full_table_takes_every_insert() {
        let host = TestHost::new(100);
        let table = SlotTable::new(2000, "t.");
        table.init(&host);
        let failed = (0..1000).filter(|n| table.insert(&host, &key(*n), b"v", 200, 100).is_err()).count();
        assert_eq!(failed, 0);
        assert!((0..1000).all(|n| table.get(&host, &key(n), 100).is_some()));
        assert!(next_prime(2000) == 2003 && next_prime(2) == 2 && next_prime(9) == 11);
    }

    #[test]
    fn a_worker_racing_for_a_slot_loses_and_moves_on() {
        let host = TestHost::new(100);
        let table = SlotTable::new(64, "t.");
        table.init(&host);
        table.insert(&host, &key(1), b"a", 200, 100).unwrap();
        let read = table.get(&host, &key(1), 100).unwrap();
        // Two changes from the same read: one wins.
        assert!(table.replace(&host, read.slot, &key(1), b"b", 200));
        assert!(!table.replace(&host, read.slot, &key(1), b"c", 200));
        assert_eq!(table.get(&host, &key(1), 100).unwrap().payload, b"b");
        // Slots are created once: init again changes nothing.
        table.init(&host);
        assert_eq!(table.get(&host, &key(1), 100).unwrap().payload, b"b");
    }
}
