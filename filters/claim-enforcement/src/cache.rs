//! The verified-token cache: a token seen before is not verified again.
//!
//! Two levels. Each worker keeps parsed results in memory (no copy, no
//! parse). Behind it, proxy-wasm shared data holds entries every worker can
//! read: a fixed number of slots chosen by the token hash, so the shared
//! memory is bounded and a colliding entry simply replaces the older one.
//! Keys are hashes, never tokens; an entry names its full hash, so a slot
//! holding another token is a miss. Expiry is re-checked on every hit.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use baton_token::claims::Claims;
use baton_token::{TokenHash, base64url, json};

use crate::host::Host;

/// Upper bound of the per-worker cache, whatever the shared size.
pub const MAX_LOCAL_ENTRIES: usize = 4096;

/// A token that passed signature and claim validation.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// Index of the provider that issued it.
    pub provider: usize,
    /// The key that verified it.
    pub kid: Option<String>,
    /// Its claims.
    pub claims: Claims,
    /// The payload segment as received (forwarded as is when configured).
    pub payload_segment: String,
}

/// Where a verified token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// This worker's memory.
    HitLocal,
    /// Shared data.
    HitShared,
    /// Verified now.
    Miss,
}

impl CacheOutcome {
    /// Label for audit lines.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::HitLocal => "hit_local",
            CacheOutcome::HitShared => "hit_shared",
            CacheOutcome::Miss => "miss",
        }
    }
}

/// Both cache levels.
#[derive(Debug)]
pub struct TokenCache {
    local: HashMap<TokenHash, Rc<VerifiedToken>>,
    order: VecDeque<TokenHash>,
    local_capacity: usize,
    shared_slots: u32,
    key_prefix: String,
}

impl TokenCache {
    /// A cache with `slots` shared entries (0 disables caching).
    pub fn new(slots: u32, fingerprint: &str) -> Self {
        let local_capacity = (slots as usize).min(MAX_LOCAL_ENTRIES);
        Self {
            local: HashMap::with_capacity(local_capacity.min(256)),
            order: VecDeque::new(),
            local_capacity,
            shared_slots: slots,
            key_prefix: format!("baton.ce.{fingerprint}.vt."),
        }
    }

    /// Looks a token up in this worker, then in shared data.
    pub fn get(&mut self, hash: &TokenHash, host: &dyn Host) -> Option<(Rc<VerifiedToken>, CacheOutcome)> {
        if self.shared_slots == 0 {
            return None;
        }
        if let Some(found) = self.local.get(hash) {
            return Some((Rc::clone(found), CacheOutcome::HitLocal));
        }
        let (bytes, _) = host.shared_get(&self.slot_key(hash))?;
        let token = Rc::new(decode_entry(&bytes, hash)?);
        self.insert_local(*hash, Rc::clone(&token));
        Some((token, CacheOutcome::HitShared))
    }

    /// Stores a freshly verified token in both levels.
    pub fn put(&mut self, hash: TokenHash, token: Rc<VerifiedToken>, host: &dyn Host) {
        if self.shared_slots == 0 {
            return;
        }
        // A failed shared write only costs another worker a verification.
        let _ = host.shared_set(&self.slot_key(&hash), &encode_entry(&hash, &token), None);
        self.insert_local(hash, token);
    }

    /// Forgets a token in this worker (it expired or its key was retired).
    pub fn forget(&mut self, hash: &TokenHash) {
        self.local.remove(hash);
    }

    fn insert_local(&mut self, hash: TokenHash, token: Rc<VerifiedToken>) {
        if self.local_capacity == 0 {
            return;
        }
        if self.local.insert(hash, token).is_none() {
            self.order.push_back(hash);
        }
        while self.local.len() > self.local_capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.local.remove(&oldest);
                }
                None => break,
            }
        }
        // Forgotten entries leave stale order slots; keep the queue bounded.
        if self.order.len() > 2 * self.local_capacity {
            self.order.retain(|hash| self.local.contains_key(hash));
        }
    }

    fn slot_key(&self, hash: &TokenHash) -> String {
        let slot = hash.prefix_u64() % u64::from(self.shared_slots.max(1));
        format!("{}{slot}", self.key_prefix)
    }

    /// Entries held by this worker.
    pub fn local_len(&self) -> usize {
        self.local.len()
    }
}

/// Entry layout: version byte, 32-byte token hash, provider (u16 BE), kid
/// length (u16 BE), kid, then the payload segment. Claims are re-parsed from
/// the payload on a shared hit, which is still far cheaper than a signature.
const ENTRY_VERSION: u8 = 1;

fn encode_entry(hash: &TokenHash, token: &VerifiedToken) -> Vec<u8> {
    let kid = token.kid.as_deref().unwrap_or("");
    let mut entry = Vec::with_capacity(1 + 32 + 4 + kid.len() + token.payload_segment.len());
    entry.push(ENTRY_VERSION);
    entry.extend_from_slice(hash.as_bytes());
    entry.extend_from_slice(&u16::try_from(token.provider).unwrap_or(u16::MAX).to_be_bytes());
    entry.extend_from_slice(&u16::try_from(kid.len()).unwrap_or(0).to_be_bytes());
    if kid.len() <= usize::from(u16::MAX) {
        entry.extend_from_slice(kid.as_bytes());
    }
    entry.extend_from_slice(token.payload_segment.as_bytes());
    entry
}

fn decode_entry(entry: &[u8], expected: &TokenHash) -> Option<VerifiedToken> {
    let (&version, rest) = entry.split_first()?;
    if version != ENTRY_VERSION || rest.len() < 36 {
        return None;
    }
    let (hash, rest) = rest.split_at(32);
    if hash != expected.as_bytes() {
        return None;
    }
    let provider = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let kid_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    let rest = &rest[4..];
    if rest.len() < kid_len {
        return None;
    }
    let (kid, payload) = rest.split_at(kid_len);
    let kid = std::str::from_utf8(kid).ok()?;
    let payload_segment = std::str::from_utf8(payload).ok()?;
    let claims =
        Claims::from_object(json::parse_object(&base64url::decode(payload_segment).ok()?).ok()?).ok()?;
    Some(VerifiedToken {
        provider,
        kid: (!kid.is_empty()).then(|| kid.to_string()),
        claims,
        payload_segment: payload_segment.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::TestHost;

    fn token(sub: &str) -> Rc<VerifiedToken> {
        let payload = format!(r#"{{"sub":"{sub}","exp":2000000000}}"#);
        let payload_segment = base64url::encode(payload.as_bytes());
        let claims = Claims::from_object(json::parse_object(payload.as_bytes()).unwrap()).unwrap();
        Rc::new(VerifiedToken { provider: 1, kid: Some("k1".into()), claims, payload_segment })
    }

    #[test]
    fn a_second_worker_reads_what_the_first_stored() {
        let host = TestHost::new(0);
        let hash = TokenHash::of(b"token-a");
        let mut first = TokenCache::new(100, "fp");
        let mut second = TokenCache::new(100, "fp");
        assert!(first.get(&hash, &host).is_none());
        first.put(hash, token("alice"), &host);
        assert_eq!(first.get(&hash, &host).unwrap().1, CacheOutcome::HitLocal);
        let (found, outcome) = second.get(&hash, &host).unwrap();
        assert_eq!(outcome, CacheOutcome::HitShared);
        assert_eq!(*found, *token("alice"));
        assert_eq!(second.get(&hash, &host).unwrap().1, CacheOutcome::HitLocal);
    }

    #[test]
    fn a_slot_holding_another_token_is_a_miss() {
        let host = TestHost::new(0);
        let mut cache = TokenCache::new(1, "fp");
        let a = TokenHash::of(b"a");
        let b = TokenHash::of(b"b");
        cache.put(a, token("alice"), &host);
        let mut other_worker = TokenCache::new(1, "fp");
        assert!(other_worker.get(&b, &host).is_none());
        cache.put(b, token("bob"), &host);
        assert!(other_worker.get(&a, &host).is_none(), "slot now belongs to b");
        assert_eq!(other_worker.get(&b, &host).unwrap().0.claims.sub.as_deref(), Some("bob"));
    }

    #[test]
    fn other_configurations_do_not_share_entries() {
        let host = TestHost::new(0);
        let hash = TokenHash::of(b"t");
        TokenCache::new(10, "config-a").put(hash, token("alice"), &host);
        assert!(TokenCache::new(10, "config-b").get(&hash, &host).is_none());
    }

    #[test]
    fn local_level_is_bounded() {
        let host = TestHost::new(0);
        let mut cache = TokenCache::new(3, "fp");
        for i in 0..10u8 {
            cache.put(TokenHash::of(&[i]), token("x"), &host);
        }
        assert_eq!(cache.local_len(), 3);
        assert!(host.shared_len() <= 3, "shared entries stay within the slot count");
    }

    #[test]
    fn zero_slots_disable_caching() {
        let host = TestHost::new(0);
        let mut cache = TokenCache::new(0, "fp");
        let hash = TokenHash::of(b"t");
        cache.put(hash, token("alice"), &host);
        assert!(cache.get(&hash, &host).is_none());
        assert_eq!(host.shared_len(), 0);
    }

    #[test]
    fn corrupt_entries_are_misses() {
        let hash = TokenHash::of(b"t");
        let good = encode_entry(&hash, &token("alice"));
        assert!(decode_entry(&good, &hash).is_some());
        assert!(decode_entry(&good[..20], &hash).is_none());
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        assert!(decode_entry(&bad_version, &hash).is_none());
        let mut bad_payload = good.clone();
        let last = bad_payload.len() - 1;
        bad_payload[last] = b'!';
        assert!(decode_entry(&bad_payload, &hash).is_none());
    }
}
